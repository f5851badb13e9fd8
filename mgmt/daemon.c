/*
 * daemon.c: start-up, the main lcore's wait, and clean shutdown.
 *
 * The main lcore never touches packets: it sleeps, wakes on signals
 * (SIGTERM/SIGINT stop, SIGUSR1 prints the counters) and reads the
 * workers' counters without locks (plain 64-bit loads of values only
 * their worker writes; a sum may be a moment stale, never torn on x86-64).
 * Signals are blocked before EAL starts its threads, so every signal is
 * delivered here, to the one thread that unblocks them.
 */
#include "mgmt/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_malloc.h>

#include "common/log.h"
#include "common/parse.h"
#include "dataplane/dp.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "mgmt/ctl.h"
#include "mgmt/ctl_verbs.h"
#include "mgmt/diag.h"
#include "mgmt/metrics.h"
#include "mgmt/smtpd.h"
#include "mta/mta_out.h"
#include "mta/mta_policy.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"
#include "store/spool.h"

static volatile sig_atomic_t got_stop, got_dump;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_dump = 1;
	else
		got_stop = sig;
}

/* What one worker lcore runs: its stack and the services on it. */
struct wctx {
	struct stack *st;
	struct smtpd_worker *smtp;
	struct mta_out *out;       /* outbound delivery, with a queue manager */
	unsigned index;
};

static struct mta_qmgr *the_qmgr;

static void job_done(void *user, struct mta_job *j)
{
	(void)user;
	mta_qmgr_job_done(the_qmgr, j);
}

static void w_input(void *ctx, struct rte_mbuf **pkts, uint16_t n)
{
	stack_input(((struct wctx *)ctx)->st, pkts, n);
}

static void w_tick(void *ctx, uint64_t now_ms)
{
	struct wctx *w = ctx;

	stack_tick(w->st, now_ms);
	if (w->smtp != NULL)
		smtpd_tick(w->smtp, now_ms);
	if (w->out != NULL)
		mta_out_tick(w->out, now_ms);
}

static void w_flush(void *ctx)
{
	stack_flush(((struct wctx *)ctx)->st);
}

static bool w_poll(void *ctx)
{
	struct wctx *w = ctx;
	bool busy = w->smtp != NULL && smtpd_poll(w->smtp);

	if (w->out != NULL) {
		struct mta_job *jobs[16];
		unsigned n = mta_qmgr_worker_jobs(the_qmgr, w->index, jobs, 16);

		for (unsigned i = 0; i < n; i++)
			mta_out_submit(w->out, jobs[i]);
		busy |= n > 0;
		busy |= mta_out_poll(w->out);
	}
	return busy;
}

static const struct dp_worker_ops stack_worker_ops = {
	.input = w_input,
	.tick = w_tick,
	.flush = w_flush,
	.poll = w_poll,
};

static struct wctx wctx[DP_MAX_WORKERS];
_Static_assert(SMTPD_MAX_WORKERS >= DP_MAX_WORKERS,
	       "smtpd tracks every worker for reloads");
static struct spool *the_spool;
static struct mgmt_view view;    /* what dpmailctl and metrics see */

/* dpmailctl shutdown --drain: new connections get 421 while the sessions
 * in flight finish, up to drain_s; SIGTERM still stops at once. */
static void drain_sessions(struct smtpd_shared *sh, unsigned n)
{
	unsigned secs = atomic_load(&view.drain_s);
	uint64_t live = 0;

	if (sh == NULL || secs == 0)
		return;
	smtpd_shared_set_draining(sh);
	LOG(LOG_NOTICE, "dpmaild: draining: new connections refused, "
	    "waiting up to %u s for the sessions", secs);
	for (unsigned t = 0; t < secs * 10 && !got_stop; t++) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000000L };
		live = 0;
		for (unsigned w = 0; w < n; w++)
			if (wctx[w].smtp != NULL)
				live += __atomic_load_n(&smtpd_get_counters(
					wctx[w].smtp)->sessions_live,
					__ATOMIC_RELAXED);
		if (live == 0)
			break;
		nanosleep(&ts, NULL);
	}
	LOG(LOG_NOTICE, "dpmaild: drained (%llu session%s still open)",
	    (unsigned long long)live, live == 1 ? "" : "s");
}

static void print_services(char *buf, size_t *lenp, size_t size, unsigned n)
{
	size_t len = *lenp;
	struct smtpd_counters t = { 0 };
	bool any = false;

	for (unsigned w = 0; w < n; w++) {
		const struct smtpd_counters *c;
		if (wctx[w].smtp == NULL)
			continue;
		any = true;
		c = smtpd_get_counters(wctx[w].smtp);
#define X(f) t.f += c->f;
		SMTPD_COUNTERS(X)
#undef X
	}
	if (any) {
#define X(f) len += (size_t)snprintf(buf + len, size - len, "  %-30s %llu\n", \
				     "smtp." #f, (unsigned long long)t.f);
		SMTPD_COUNTERS(X)
#undef X
	}
	if (the_spool != NULL) {
		struct spool_stats st;
		spool_get_stats(the_spool, &st);
		len += (size_t)snprintf(buf + len, size - len,
			"  %-30s %llu\n  %-30s %llu\n  %-30s %llu\n"
			"  %-30s %llu\n  %-30s %llu\n  %-30s %llu\n"
			"  %-30s %llu\n",
			"spool.batches", (unsigned long long)st.batches,
			"spool.records", (unsigned long long)st.records,
			"spool.bytes", (unsigned long long)st.bytes,
			"spool.fsyncs", (unsigned long long)st.fsyncs,
			"spool.errors", (unsigned long long)st.errors,
			"spool.msgs_live", (unsigned long long)st.msgs_live,
			"spool.segments", (unsigned long long)st.segments);
	}
	if (len > size)
		len = size;
	*lenp = len;
}

/* One write for the whole table so it never interleaves with logs. */
static void print_counters(struct stack **stacks, unsigned n,
			   const struct dp *dp)
{
	static char buf[16384];
	size_t len = 0;
	uint64_t polls = 0, busy = 0, sleeps = 0, sout = 0, sin = 0, sdrop = 0;

	len += (size_t)snprintf(buf + len, sizeof(buf) - len,
				"dpmaild: counters (sum of %u worker%s)\n", n,
				n == 1 ? "" : "s");
	for (unsigned i = 0; i < STACK_CTR_COUNT; i++) {
		uint64_t v = 0;
		for (unsigned w = 0; w < n; w++)
			v += stack_counter_get(&stacks[w]->cnt, i);
		len += (size_t)snprintf(buf + len, sizeof(buf) - len,
					"  %-30s %llu\n", stack_counter_name(i),
					(unsigned long long)v);
	}
	for (unsigned w = 0; w < dp->nworkers; w++) {
		polls += dp->workers[w].stats.polls;
		busy += dp->workers[w].stats.busy_polls;
		sleeps += dp->workers[w].stats.idle_sleeps;
		sout += dp->workers[w].stats.steered_out;
		sin += dp->workers[w].stats.steered_in;
		sdrop += dp->workers[w].stats.steer_dropped;
	}
	{
		uint64_t live = 0;
		for (unsigned w = 0; w < n; w++)
			live += tcp_live_conns(stacks[w]);
		len += (size_t)snprintf(buf + len, sizeof(buf) - len,
					"  %-30s %llu\n", "tcp.live_conns",
					(unsigned long long)live);
	}
	len += (size_t)snprintf(buf + len, sizeof(buf) - len,
		"  %-30s %llu\n  %-30s %llu\n  %-30s %llu\n",
		"worker.polls", (unsigned long long)polls,
		"worker.busy_polls", (unsigned long long)busy,
		"worker.idle_sleeps", (unsigned long long)sleeps);
	len += (size_t)snprintf(buf + len, sizeof(buf) - len,
		"  %-30s %llu\n  %-30s %llu\n  %-30s %llu\n",
		"worker.steered_out", (unsigned long long)sout,
		"worker.steered_in", (unsigned long long)sin,
		"worker.steer_dropped", (unsigned long long)sdrop);
	/* with several workers, how the load spread: a few per-worker lines
	 * (w<N>.<layer>_<name>) */
	if (n > 1) {
		static const char *const per_worker[] = {
			"tcp.accepted", "tcp.connects", "tcp.opened",
			"tcp.rx_bytes", "tcp.tx_bytes", "udp.rx",
		};
		for (unsigned w = 0; w < n; w++) {
			for (size_t k = 0; k < sizeof(per_worker) / sizeof(*per_worker);
			     k++) {
				int i = stack_counter_index(per_worker[k]);
				char name[48], *dot;
				/* "w0.tcp_accepted": one dot, like the others */
				snprintf(name, sizeof(name), "w%u.%s", w,
					 per_worker[k]);
				dot = strchr(strchr(name, '.') + 1, '.');
				if (dot != NULL)
					*dot = '_';
				len += (size_t)snprintf(buf + len, sizeof(buf) - len,
					"  %-30s %llu\n", name,
					(unsigned long long)stack_counter_get(
						&stacks[w]->cnt, (unsigned)i));
			}
			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
				"  w%u.%-27s %llu\n", w, "steered_in",
				(unsigned long long)dp->workers[w].stats.steered_in);
		}
	}
	print_services(buf, &len, sizeof(buf), n);
	if (dp_fault_enabled(&dp->conf.fault)) {
		struct dp_fault_stats t = { 0 };
		for (unsigned w = 0; w < dp->nworkers; w++) {
			const struct dp_fault_stats *f = &dp->workers[w].fault.stats;
			t.rx_dropped += f->rx_dropped;
			t.rx_corrupted += f->rx_corrupted;
			t.rx_duplicated += f->rx_duplicated;
			t.rx_reordered += f->rx_reordered;
			t.tx_dropped += f->tx_dropped;
			t.tx_corrupted += f->tx_corrupted;
			t.tx_duplicated += f->tx_duplicated;
		}
#define FAULT_LINE(name, v) \
	len += (size_t)snprintf(buf + len, sizeof(buf) - len, "  %-30s %llu\n", \
				"fault." name, (unsigned long long)(v))
		FAULT_LINE("rx_dropped", t.rx_dropped);
		FAULT_LINE("rx_corrupted", t.rx_corrupted);
		FAULT_LINE("rx_duplicated", t.rx_duplicated);
		FAULT_LINE("rx_reordered", t.rx_reordered);
		FAULT_LINE("tx_dropped", t.tx_dropped);
		FAULT_LINE("tx_corrupted", t.tx_corrupted);
		FAULT_LINE("tx_duplicated", t.tx_duplicated);
#undef FAULT_LINE
	}
	if (len > sizeof(buf))
		len = sizeof(buf);
	ssize_t r = write(STDERR_FILENO, buf, len);
	(void)r;
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: wake the sleep */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int daemon_run(const struct dpmail_conf *conf, const char *prog)
{
	static struct dp dp;
	struct stack *stacks[DP_MAX_WORKERS] = { 0 };
	void *ctx[DP_MAX_WORKERS];
	struct mta_policy *policy = NULL;
	struct mta_route *route = NULL;
	struct mta_qmgr_recovery qrec;
	struct smtpd_shared *smtp_sh = NULL;
	struct spool_recovery rec;
	struct ctl *ctl = NULL;
	struct metrics *metrics = NULL;
	struct timespec t0;
	char err[512];
	sigset_t sigs, old, io;
	unsigned nstacks = 0, leaked;
	int rc, exit_code = 1;
	char a[16];

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	install_signals();
	/* EAL's threads and the workers inherit this mask */
	pthread_sigmask(SIG_BLOCK, &sigs, &old);
	/* net_tap raises a signal (the first free real-time one) for every
	 * frame it has for us. Taken by this sleeping thread, each one
	 * costs a wake-up (a third of a core under load); blocked in every
	 * thread, workers included (dp_worker_signals), the workers read
	 * them in batches from a signalfd, which also wakes an idle one. */
	dp_worker_signals(&io);
	pthread_sigmask(SIG_BLOCK, &io, NULL);
	sigorset(&old, &old, &io);

	if (conf->smtpd.nlisten > 0) {
		size_t nd, nu, nr, nn;
		rc = mta_policy_load(&policy, &conf->policy, err, sizeof(err));
		if (rc != 0) {
			LOG(LOG_ERR, "policy: %s", err);
			return 1;
		}
		rc = mta_route_load(&route, &conf->route, err, sizeof(err));
		if (rc != 0) {
			LOG(LOG_ERR, "routing: %s", err);
			mta_policy_free(policy);
			return 1;
		}
		{
			char miss[256];
			if (mta_route_missing_postmaster(route, miss,
							 sizeof(miss)) > 0)
				LOG(LOG_WARNING, "routing: no postmaster in %s "
				    "(RFC 5321 4.5.1: add a user or an alias "
				    "named postmaster)", miss);
		}
		/* RCPT accepts exactly what routing can deliver locally */
		mta_policy_set_route(policy, route);
		mta_policy_describe(policy, &nd, &nu, &nr, &nn);
		LOG(LOG_INFO, "policy: %zu local domain%s (%s), %zu user%s, "
		    "%zu relay domain%s, %zu trusted network%s", nd,
		    nd == 1 ? "" : "s", conf->policy.local_domains, nu,
		    nu == 1 ? "" : "s", nr, nr == 1 ? "" : "s", nn,
		    nn == 1 ? "" : "s");
	}
	if (route != NULL) {
		size_t nd, nu, na, nt;
		mta_route_describe(route, &nd, &nu, &na, &nt);
		LOG(LOG_INFO, "routing: %zu alias%s, %zu transport entr%s, "
		    "relayhost %s, %u DNS resolver%s", na, na == 1 ? "" : "es",
		    nt, nt == 1 ? "y" : "ies",
		    conf->route.relayhost[0] ? conf->route.relayhost : "none",
		    conf->out.n_resolvers, conf->out.n_resolvers == 1 ? "" : "s");
	}
	/* before any thread starts (the bind sets the umask), and before
	 * EAL: a second daemon on the same socket stops here */
	if (ctl_open(&ctl, conf->ctl_socket, err, sizeof(err)) != 0) {
		LOG(LOG_ERR, "%s", err);
		mta_policy_free(policy);
		mta_route_free(route);
		return 1;
	}
	if (dp_eal_init(&conf->dp, prog) != 0) {
		ctl_close(ctl);
		mta_policy_free(policy);
		mta_route_free(route);
		return 1;
	}
	rc = dp_open(&dp, &conf->dp);
	if (rc != 0)
		goto out;
	dp_describe(&dp);
	if (policy != NULL) {
		/* one completion ring per worker, and the queue manager's */
		rc = spool_open(&the_spool, &conf->spool, dp.nworkers + 1, &rec);
		if (rc != 0) {
			LOG(LOG_ERR, "spool: cannot open %s: %s",
			    conf->spool.dir, strerror(-rc));
			goto out;
		}
		rc = mta_qmgr_new(&the_qmgr, &conf->qmgr, route, the_spool,
				  dp.nworkers, &qrec, err, sizeof(err));
		if (rc != 0) {
			LOG(LOG_ERR, "qmgr: %s", err);
			goto out;
		}
		LOG(LOG_INFO, "qmgr: %llu message%s in the queue (%llu "
		    "recipient%s pending, %llu deferred); mailboxes in %s",
		    (unsigned long long)qrec.messages,
		    qrec.messages == 1 ? "" : "s",
		    (unsigned long long)qrec.rcpts_pending,
		    qrec.rcpts_pending == 1 ? "" : "s",
		    (unsigned long long)qrec.rcpts_deferred,
		    conf->qmgr.mailbox.dir);
		smtp_sh = smtpd_shared_new(&conf->smtpd, policy, the_spool);
		if (smtp_sh == NULL) {
			LOG(LOG_ERR, "smtpd: out of memory");
			goto out;
		}
		smtpd_shared_set_mta(smtp_sh, the_qmgr, route);
		if (smtpd_shared_tls_auth(smtp_sh, dp.nworkers, err,
					  sizeof(err)) != 0) {
			LOG(LOG_ERR, "smtpd: %s", err);
			goto out;
		}
	}

	for (unsigned i = 0; i < dp.nworkers; i++) {
		struct dp_worker *w = &dp.workers[i];
		stacks[i] = rte_zmalloc_socket("stack", sizeof(struct stack),
				RTE_CACHE_LINE_SIZE,
				(int)rte_lcore_to_socket_id(w->lcore_id));
		if (stacks[i] == NULL) {
			LOG(LOG_ERR, "daemon: out of memory for stack %u", i);
			goto out;
		}
		/* the first worker announces our address for the port */
		rc = stack_init(stacks[i], i, &conf->stack, &w->q, i == 0,
				dp_now_ms());
		if (rc != 0) {
			LOG(LOG_ERR, "daemon: stack %u: %s", i, strerror(-rc));
			rte_free(stacks[i]);
			stacks[i] = NULL;
			goto out;
		}
		nstacks++;
		wctx[i].st = stacks[i];
		ctx[i] = &wctx[i];
		stack_set_steering(stacks[i], dp.nworkers, dp.steer_seed);
		rc = diag_start(stacks[i], &conf->diag);
		if (rc != 0) {
			LOG(LOG_ERR, "daemon: diagnostic listeners: %s",
			    strerror(-rc));
			goto out;
		}
		if (smtp_sh != NULL) {
			rc = smtpd_start(smtp_sh, stacks[i], i, &wctx[i].smtp);
			if (rc != 0)
				goto out;
		}
		wctx[i].index = i;
		if (the_qmgr != NULL) {
			wctx[i].out = mta_out_new(stacks[i], i, &conf->out,
						  job_done, NULL);
			if (wctx[i].out == NULL) {
				LOG(LOG_ERR, "daemon: outbound delivery on "
				    "worker %u: cannot start", i);
				goto out;
			}
		}
	}
	if (smtp_sh != NULL) {
		char ports[64] = "";
		for (uint32_t i = 0; i < conf->smtpd.nlisten; i++)
			snprintf(ports + strlen(ports), sizeof(ports) -
				 strlen(ports), "%s%u", i ? ", " : "",
				 conf->smtpd.listen[i]);
		LOG(LOG_INFO, "smtpd: listening on port%s %s as %s",
		    conf->smtpd.nlisten == 1 ? "" : "s", ports,
		    conf->smtpd.hostname);
	}
	if (dp_launch(&dp, &stack_worker_ops, ctx) != 0)
		goto out;
	LOG(LOG_NOTICE, "dpmaild: ready: %s/%u on port %u, %u worker%s "
	    "(config %s)", format_ipv4(conf->stack.addr, a),
	    conf->stack.prefix_len, dp.port_id, dp.nworkers,
	    dp.nworkers == 1 ? "" : "s", conf->path);

	view.conf = conf;
	view.dp = &dp;
	view.nworkers = nstacks;
	for (unsigned i = 0; i < nstacks; i++) {
		view.stacks[i] = stacks[i];
		view.smtp[i] = wctx[i].smtp;
		view.out[i] = wctx[i].out;
	}
	view.smtp_sh = smtp_sh;
	view.spool = the_spool;
	view.qmgr = the_qmgr;
	view.start_wall_s = (uint64_t)time(NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	view.start_mono_ms = (uint64_t)t0.tv_sec * 1000u +
			     (uint64_t)t0.tv_nsec / 1000000u;
	/* both threads inherit the blocked signals */
	if (ctl_start(ctl, ctl_daemon_verbs, &view) != 0) {
		LOG(LOG_ERR, "ctl: cannot start its thread");
		dp_stop_workers(&dp);
		goto out;
	}
	LOG(LOG_INFO, "ctl: control socket %s", conf->ctl_socket);
	if (conf->metrics_listen[0] != '\0') {
		if (metrics_start(&metrics, conf->metrics_listen, &view, err,
				  sizeof(err)) != 0)
			LOG(LOG_WARNING, "metrics: %s; running without "
			    "metrics", err);
		else
			LOG(LOG_INFO, "metrics: http://%s/metrics",
			    conf->metrics_listen);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	while (!got_stop && !atomic_load(&view.shutdown_req)) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000000L };
		nanosleep(&ts, NULL);
		if (got_dump) {
			got_dump = 0;
			print_counters(stacks, nstacks, &dp);
		}
	}
	if (!got_stop)
		drain_sessions(smtp_sh, nstacks);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	LOG(LOG_NOTICE, "dpmaild: %s, shutting down",
	    !got_stop ? "dpmailctl shutdown" : got_stop == SIGINT ?
	    "SIGINT received" : "SIGTERM received");
	dp_stop_workers(&dp);
	exit_code = 0;
out:
	/* first: both read what is freed below */
	metrics_stop(metrics);
	ctl_close(ctl);
	ctl = NULL;
	free(view.applied);
	view.applied = NULL;
	/* jobs in flight go back to the queue manager (their recipients
	 * deferred) while the stacks can still abort their connections */
	for (unsigned i = 0; i < DP_MAX_WORKERS; i++)
		if (wctx[i].out != NULL)
			mta_out_stop(wctx[i].out);
	/* stop RX first, then give every held mbuf back */
	dp_close(&dp);
	for (unsigned i = 0; i < nstacks; i++) {
		/* connections close first: their callbacks still use diag */
		stack_fini(stacks[i]);
		diag_stop(stacks[i]);
	}
	/* sessions still waiting for the spool get their answer */
	for (unsigned i = 0; i < DP_MAX_WORKERS; i++)
		smtpd_drain(wctx[i].smtp);
	if (nstacks > 0)
		print_counters(stacks, nstacks, &dp);
	/* after the sessions: the last accepted messages reach it; what is
	 * still queued stays in the spool for the next start */
	mta_qmgr_free(the_qmgr);
	the_qmgr = NULL;
	for (unsigned i = 0; i < DP_MAX_WORKERS; i++) {
		mta_out_free(wctx[i].out);
		wctx[i].out = NULL;
	}
	for (unsigned i = 0; i < DP_MAX_WORKERS; i++) {
		smtpd_free(wctx[i].smtp);
		wctx[i].smtp = NULL;
	}
	if (the_spool != NULL) {
		spool_close(the_spool);
		the_spool = NULL;
	}
	smtpd_shared_free(smtp_sh);
	mta_policy_free(policy);
	mta_route_free(route);
	for (unsigned i = 0; i < nstacks; i++)
		rte_free(stacks[i]);
	leaked = dp_mbufs_in_use(&dp);
	if (leaked != 0) {
		LOG(LOG_ERR, "dpmaild: %u mbufs not returned at exit", leaked);
		exit_code = 1;
	} else if (exit_code == 0) {
		LOG(LOG_INFO, "dpmaild: all mbufs returned to their pools");
	}
	dp_free_pools(&dp);
	rte_eal_cleanup();
	if (exit_code == 0)
		LOG(LOG_NOTICE, "dpmaild: stopped");
	return exit_code;
}
