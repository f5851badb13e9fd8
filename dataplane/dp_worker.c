/*
 * dp_worker.c: the worker lcore loop (the l2fwd shape) with idle back-off.
 *
 * Each iteration: burst RX, hand the frames to the stack, flush TX, tick
 * timers once per millisecond. When bursts keep coming back empty the loop
 * spins a little, then pauses, then sleeps for doubling intervals up to
 * idle_sleep_max_us, and spins again as soon as a burst brings traffic.
 * An idle daemon so costs well under 5% of a core, and a busy one never
 * sleeps. The worker never blocks on anything but that sleep.
 *
 * PMD readiness signals (net_tap queues one real-time signal per frame
 * and only reads its fds when its handler has run since) stay blocked in
 * every thread: delivering each one costs a signal frame, a handler and
 * rt_sigreturn. A worker instead reads them from a non-blocking signalfd,
 * many per read(), after a burst short of full, and then runs the PMD's
 * handler once itself; the back-off sleep is a ppoll() on that signalfd,
 * so a frame still wakes an idle worker at once. The signals are
 * process-directed: any worker may drain them, and the handler's trigger
 * is global, so the drainer wakes any other worker asleep (its eventfd).
 * With no PMD handler installed (af_packet) the loop is as before.
 */
#include "dataplane/dp.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_launch.h>
#include <rte_pause.h>

#include <rte_ring.h>

#include "common/log.h"
#include "dataplane/dp_steer.h"

#define IDLE_SLEEP_MIN_US 16
#define SIG_BATCH 64 /* signalfd_siginfo per read (8 KiB) */
#define SIG_IDLE_GAP_US 20 /* see worker_main */

/* A worker's view of the PMD signals: its signalfd and the handlers the
 * PMDs installed (fd < 0: none did, nothing to read). */
struct sigwake {
	int fd;
	uint64_t known; /* bit sig-1: handler[sig] is the PMD's */
	struct sigaction handler[_NSIG];
};

static void sigwake_open(struct sigwake *sw)
{
	sigset_t set;

	sw->fd = -1;
	sw->known = 0;
	dp_worker_signals(&set);
	for (int sig = 1; sig <= SIGRTMAX; sig++) {
		struct sigaction *a = &sw->handler[sig];
		if (!sigismember(&set, sig) || sigaction(sig, NULL, a) != 0)
			continue;
		if ((a->sa_flags & SA_SIGINFO) ? a->sa_sigaction != NULL :
		    (a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN))
			sw->known |= 1ULL << (sig - 1);
	}
	if (sw->known == 0)
		return;
	sw->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sw->fd < 0) {
		/* fall back to taking them as signals */
		LOG(LOG_WARNING, "dataplane: signalfd: %s", strerror(errno));
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	}
}

static void sigwake_call(struct sigwake *sw, int sig,
			 const struct signalfd_siginfo *si)
{
	struct sigaction *a = &sw->handler[sig];

	if (a->sa_flags & SA_SIGINFO) {
		siginfo_t info;
		memset(&info, 0, sizeof(info));
		info.si_signo = (int)si->ssi_signo;
		info.si_errno = si->ssi_errno;
		info.si_code = si->ssi_code;
		info.si_band = si->ssi_band;
		info.si_fd = si->ssi_fd;
		a->sa_sigaction(sig, &info, NULL);
	} else {
		a->sa_handler(sig);
	}
}

/*
 * Reads every queued PMD signal and runs each one's handler once. A
 * signal with no known handler (SIGIO: the kernel's fallback when the
 * real-time queue is full) runs them all. Returns true if any came.
 */
static bool sigwake_drain(struct sigwake *sw)
{
	struct signalfd_siginfo buf[SIG_BATCH];
	uint64_t done = 0;
	bool all = false, any = false;
	ssize_t r;

	do {
		r = read(sw->fd, buf, sizeof(buf));
		if (r < (ssize_t)sizeof(buf[0]))
			break;
		any = true;
		for (size_t i = 0; i < (size_t)r / sizeof(buf[0]); i++) {
			int sig = (int)buf[i].ssi_signo;
			uint64_t bit;
			if (sig < 1 || sig > SIGRTMAX) {
				all = true;
				continue;
			}
			bit = 1ULL << (sig - 1);
			if (!(sw->known & bit)) {
				all = true;
			} else if (!(done & bit)) {
				done |= bit;
				sigwake_call(sw, sig, &buf[i]);
			}
		}
	} while (r == (ssize_t)sizeof(buf));
	if (all) {
		struct signalfd_siginfo none;
		memset(&none, 0, sizeof(none));
		for (int sig = 1; sig <= SIGRTMAX; sig++) {
			uint64_t bit = 1ULL << (sig - 1);
			if ((sw->known & bit) && !(done & bit)) {
				none.ssi_signo = (uint32_t)sig;
				sigwake_call(sw, sig, &none);
			}
		}
	}
	return any;
}

/* Another worker may be asleep past the signal this one drained (or a
 * frame handed to its ring): wake it. Pairs with idle_sleep's check. */
static void wake(struct dp_worker *o)
{
	uint64_t one = 1;
	ssize_t r;

	/* what we published (ring tail, trigger) before we look */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&o->sleeping, __ATOMIC_RELAXED))
		return;
	r = write(o->wake_fd, &one, sizeof(one));
	(void)r;
}

static void wake_others(struct dp_worker *w)
{
	struct dp *dp = w->dp;

	for (unsigned j = 0; j < dp->nworkers; j++)
		if (j != w->index)
			wake(&dp->workers[j]);
}

static void idle_sleep(struct dp_worker *w, const struct sigwake *sw,
		       uint32_t us, uint32_t gen_seen)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (long)(us % 1000000) * 1000 };
	struct dp *dp = w->dp;
	struct pollfd pfd[2];
	nfds_t n = 0;

	if (sw->fd < 0) {
		nanosleep(&ts, NULL);
		return;
	}
	pfd[n++] = (struct pollfd){ .fd = sw->fd, .events = POLLIN };
	if (dp->nworkers > 1) {
		__atomic_store_n(&w->sleeping, 1, __ATOMIC_SEQ_CST);
		/* a trigger another worker advanced after our last burst,
		 * or frames it handed us: look again rather than sleep */
		if (__atomic_load_n(&dp->sig_gen, __ATOMIC_SEQ_CST) !=
		    gen_seen || (dp->steer_ring[w->index] != NULL &&
		    rte_ring_count(dp->steer_ring[w->index]) != 0)) {
			__atomic_store_n(&w->sleeping, 0, __ATOMIC_RELAXED);
			return;
		}
		pfd[n++] = (struct pollfd){ .fd = w->wake_fd,
					    .events = POLLIN };
	}
	if (ppoll(pfd, n, &ts, NULL) > 0 && n > 1 && pfd[1].revents) {
		uint64_t v;
		ssize_t r = read(w->wake_fd, &v, sizeof(v));
		(void)r;
	}
	if (n > 1)
		__atomic_store_n(&w->sleeping, 0, __ATOMIC_RELAXED);
}

/*
 * Deterministic RSS (dp_rss.h): the NIC's hash and queue of the first
 * DP_RSS_CHECK TCP frames must be those the software Toeplitz gives. On
 * a mismatch, every worker steers in software from then on (the owner
 * function stays the same, so no flow changes hands). False then.
 */
static bool rss_check(struct dp_worker *w, const struct rte_mbuf *m,
		      uint32_t rip, uint16_t rport, uint32_t lip, uint16_t lport)
{
	const struct dp_rss *r = dp_rss_active;
	struct dp *dp = w->dp;
	bool has = (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) != 0;
	uint32_t h;
	unsigned o;

	w->rss_checked++;
	if (r == NULL)
		return true;
	h = dp_rss_hash(r, rip, rport, lip, lport);
	o = dp_rss_owner_of_hash(r, h);
	if ((!has || m->hash.rss == h) && o == w->index)
		return true;
	__atomic_store_n(&dp->steering, true, __ATOMIC_RELEASE);
	if (__atomic_exchange_n(&dp->rss_failed, 1, __ATOMIC_ACQ_REL) == 0)
		LOG(LOG_WARNING, "dataplane: NIC RSS does not match the software "
		    "Toeplitz: worker %u got a frame with %s %#x (expected "
		    "%#x, owner %u): software steering from now on", w->index,
		    has ? "hash" : "no hash, software", has ? m->hash.rss : h,
		    h, o);
	return false;
}

/* The worker frame m goes to (or DP_STEER_LOCAL / DP_STEER_ALL). */
static unsigned owner_of(struct dp_worker *w, const struct rte_mbuf *m,
			 bool steering)
{
	struct dp *dp = w->dp;
	uint32_t rip, lip;
	uint16_t rport, lport;
	unsigned proto;

	if (!steering) {
		/* RSS delivered the flow to its owner's queue */
		proto = dp_steer_l4(m, &rip, &rport, &lip, &lport);
		if (proto != 0 &&
		    (proto != IPPROTO_TCP || w->rss_checked >= DP_RSS_CHECK ||
		     rss_check(w, m, rip, rport, lip, lport)))
			return DP_STEER_LOCAL;
	}
	return dp_steer_classify(m, dp->steer_seed, dp->nworkers);
}

/*
 * Software steering: keep what this worker owns, hand the rest to its
 * owner's ring, copy ARP to everyone, then take what others handed here.
 * With deterministic RSS and not steering, TCP and UDP frames stay where
 * the NIC put them and only the rest (ARP, ICMP errors) is classified.
 * Returns the frames this worker must process, in pkts[].
 */
static uint16_t steer(struct dp_worker *w, struct rte_mbuf **pkts, uint16_t n,
		      uint16_t cap)
{
	struct dp *dp = w->dp;
	struct rte_mbuf *out[DP_MAX_WORKERS][DP_MAX_BURST];
	struct rte_mbuf *keep[DP_MAX_BURST];
	uint16_t nout[DP_MAX_WORKERS] = { 0 };
	uint16_t nkeep = 0, got;
	bool steering = __atomic_load_n(&dp->steering, __ATOMIC_ACQUIRE);

	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		unsigned o = owner_of(w, m, steering);

		if (o == DP_STEER_ALL) {
			for (unsigned j = 0; j < dp->nworkers; j++) {
				struct rte_mbuf *c;
				if (j == w->index)
					continue;
				c = rte_pktmbuf_copy(m, w->q.pool, 0, UINT32_MAX);
				if (c == NULL) {
					w->stats.steer_dropped++;
					continue;
				}
				c->ol_flags |= dp_steer_copy_flag;
				out[j][nout[j]++] = c;
			}
			o = w->index;
		}
		if (o == DP_STEER_LOCAL || o == w->index)
			keep[nkeep++] = m;
		else
			out[o][nout[o]++] = m;
	}
	for (unsigned j = 0; j < dp->nworkers; j++) {
		unsigned sent;
		if (nout[j] == 0)
			continue;
		sent = rte_ring_mp_enqueue_burst(dp->steer_ring[j],
						 (void **)out[j], nout[j], NULL);
		w->stats.steered_out += sent;
		if (sent > 0)
			wake(&dp->workers[j]);
		if (sent < nout[j]) {
			w->stats.steer_dropped += nout[j] - sent;
			rte_pktmbuf_free_bulk(&out[j][sent], nout[j] - sent);
		}
	}
	/* frames handed over by others were received earlier than the ones
	 * just polled: process them first to keep each flow in order */
	got = (uint16_t)rte_ring_sc_dequeue_burst(dp->steer_ring[w->index],
			(void **)pkts, (unsigned)(cap - nkeep), NULL);
	w->stats.steered_in += got;
	memcpy(&pkts[got], keep, sizeof(keep[0]) * nkeep);
	return (uint16_t)(got + nkeep);
}

void dp_worker_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGIO);
	for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
		sigaddset(set, sig);
}

static int worker_main(void *arg)
{
	struct dp_worker *w = arg;
	const struct dp_conf *c = w->conf;
	struct dp *dp = w->dp;
	/* room for a burst and as much again from other workers */
	struct rte_mbuf *pkts[2 * DP_MAX_BURST];
	uint16_t burst = (uint16_t)c->burst;
	uint32_t idle = 0, sleep_us = IDLE_SLEEP_MIN_US;
	uint32_t spin_end = c->idle_spin_polls;
	uint32_t pause_end = c->idle_spin_polls + c->idle_pause_polls;
	uint32_t gen_seen = 0;
	uint64_t last_ms = 0;
	uint16_t last_rx = 0;
	struct sigwake sw;
	/* after a read of the signalfd that found nothing, the next one
	 * waits this long (in TSC cycles): a read is a syscall, and a
	 * spinning worker would otherwise make one per poll (68 per
	 * relayed message, measured) */
	uint64_t sig_gap = rte_get_tsc_hz() / (1000000 / SIG_IDLE_GAP_US);
	uint64_t sig_next = 0;
	bool sig_hot = true;

	/* default timer slack (50 us) would stretch every short sleep */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	sigwake_open(&sw);
	LOG(LOG_INFO, "dataplane: worker %u polling queue %u on lcore %u%s",
	    w->index, w->q.queue_id, w->lcore_id,
	    sw.fd >= 0 ? " (PMD signals by signalfd)" : "");

	while (!__atomic_load_n(w->stop, __ATOMIC_RELAXED)) {
		uint16_t n;
		uint64_t now;

		/* after a burst short of full the PMD reads nothing more
		 * until its handler runs: drain the signals that say so.
		 * (Draining only after an empty burst, an iteration
		 * later, measured 10-15% fewer messages/s.) */
		if (sw.fd >= 0 && last_rx < burst &&
		    (sig_hot || rte_rdtsc() >= sig_next)) {
			sig_hot = sigwake_drain(&sw);
			if (!sig_hot)
				sig_next = rte_rdtsc() + sig_gap;
			else if (dp->nworkers > 1) {
				__atomic_add_fetch(&dp->sig_gen, 1,
						   __ATOMIC_SEQ_CST);
				wake_others(w);
			}
		}
		if (dp->nworkers > 1)
			gen_seen = __atomic_load_n(&dp->sig_gen,
						   __ATOMIC_SEQ_CST);
		n = dp_rx(&w->q, pkts, burst);
		last_rx = n;
		now = dp_now_ms();

		if (dp->nworkers > 1)
			n = steer(w, pkts, n, (uint16_t)(2 * burst));

		w->stats.polls++;
		if (now != last_ms) {
			w->ops->tick(w->ctx, now);
			last_ms = now;
		}
		if (n > 0) {
			w->stats.busy_polls++;
			w->ops->input(w->ctx, pkts, n);
			if (w->ops->poll != NULL)
				w->ops->poll(w->ctx);
			w->ops->flush(w->ctx);
			idle = 0;
			sleep_us = IDLE_SLEEP_MIN_US;
			continue;
		}
		if (w->ops->poll != NULL && w->ops->poll(w->ctx)) {
			w->ops->flush(w->ctx);
			idle = 0;
			sleep_us = IDLE_SLEEP_MIN_US;
			continue;
		}
		w->ops->flush(w->ctx); /* timers may have queued frames */
		if (++idle <= spin_end)
			continue;
		if (idle <= pause_end) {
			rte_pause();
			continue;
		}
		w->stats.idle_sleeps++;
		idle_sleep(w, &sw, sleep_us, gen_seen);
		sig_hot = true; /* woken: by a signal, maybe */
		if (sleep_us < c->idle_sleep_max_us) {
			sleep_us *= 2;
			if (sleep_us > c->idle_sleep_max_us)
				sleep_us = c->idle_sleep_max_us;
		}
	}
	w->ops->flush(w->ctx);
	if (sw.fd >= 0)
		close(sw.fd);
	LOG(LOG_INFO, "dataplane: worker %u stopped", w->index);
	return 0;
}

static void close_wake_fds(struct dp *dp)
{
	for (unsigned i = 0; i < dp->nworkers; i++) {
		if (dp->workers[i].wake_fd >= 0)
			close(dp->workers[i].wake_fd);
		dp->workers[i].wake_fd = -1;
	}
}

int dp_launch(struct dp *dp, const struct dp_worker_ops *ops, void **ctx)
{
	__atomic_store_n(&dp->stop, 0, __ATOMIC_RELEASE);
	/* before any worker runs: others write them while it sleeps */
	for (unsigned i = 0; i < dp->nworkers; i++) {
		dp->workers[i].sleeping = 0;
		dp->workers[i].wake_fd = -1;
		/* fault injection corrupts frames after the NIC hashed
		 * them: no runtime RSS check then */
		dp->workers[i].rss_checked =
			dp_fault_enabled(&dp->conf.fault) ? DP_RSS_CHECK : 0;
		if (dp->nworkers > 1) {
			dp->workers[i].wake_fd =
				eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			if (dp->workers[i].wake_fd < 0) {
				int rc = -errno;
				LOG(LOG_ERR, "dataplane: eventfd: %s",
				    strerror(errno));
				close_wake_fds(dp);
				return rc;
			}
		}
	}
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = &dp->workers[i];
		int rc;

		w->ops = ops;
		w->ctx = ctx[i];
		w->conf = &dp->conf;
		w->dp = dp;
		w->stop = &dp->stop;
		rc = rte_eal_remote_launch(worker_main, w, w->lcore_id);
		if (rc != 0) {
			LOG(LOG_ERR, "dataplane: cannot launch worker %u on "
			    "lcore %u: %s", i, w->lcore_id, rte_strerror(-rc));
			dp_stop_workers(dp);
			return rc;
		}
	}
	return 0;
}

void dp_stop_workers(struct dp *dp)
{
	__atomic_store_n(&dp->stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < dp->nworkers; i++)
		rte_eal_wait_lcore(dp->workers[i].lcore_id);
	close_wake_fds(dp);
}
