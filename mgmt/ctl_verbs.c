/*
 * ctl_verbs.c: the control socket's verbs (dpmailctl status, stats,
 * queue ..., domain ..., log level, reload, shutdown).
 *
 * Runs on the control thread. Reads counters relaxed; queue state comes
 * from the queue manager's thread through mta_qmgr_ctl (never by reading
 * the spool); shutdown only sets a flag the main loop acts on.
 *
 * reload applies what can change under running sessions: the log level,
 * [smtp] limits, [policy] and the [tls] certificates for new sessions
 * (smtpd_reconf_*: open sessions keep theirs), the routing tables (users, aliases, transport,
 * relay host) at smtpd and the queue manager, and the queue manager's
 * settings (mta_qmgr_reconf); the reply lists every changed section
 * that needs a restart.
 */
#include "mgmt/ctl_verbs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <rte_ethdev.h>

#include "common/log.h"
#include "common/parse.h"
#include "mgmt/config.h"
#include "mgmt/smtpd.h"
#include "mta/mta_policy.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"

#define CTL_QMGR_TIMEOUT_MS 5000
#define CTL_MAX_DRAIN_S 3600

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- status ---------------------------------------------------------- */

static json_t *offloads(uint64_t bits, bool rx)
{
	json_t *a = json_array();

	for (unsigned b = 0; b < 64; b++) {
		uint64_t bit = 1ULL << b;
		if ((bits & bit) == 0)
			continue;
		json_array_append_new(a, json_string(
			rx ? rte_eth_dev_rx_offload_name(bit)
			   : rte_eth_dev_tx_offload_name(bit)));
	}
	return a;
}

static int v_status(void *arg, const json_t *req, json_t *r, char *err,
		    size_t errlen)
{
	struct mgmt_view *v = arg;
	const struct dpmail_conf *c = v->conf;
	const struct dp *dp = v->dp;
	struct rte_ether_addr mac;
	struct rte_eth_link link;
	char macs[RTE_ETHER_ADDR_FMT_SIZE], a[16];
	json_t *ws = json_array(), *port = json_object(), *ls = json_array();

	(void)req;
	(void)err;
	(void)errlen;
	json_object_set_new(r, "version", json_string(DPMAIL_VERSION));
	json_object_set_new(r, "pid", json_integer(getpid()));
	json_object_set_new(r, "uptime_s", json_integer(
		(json_int_t)((mono_ms() - v->start_mono_ms) / 1000)));
	json_object_set_new(r, "started", json_integer(
		(json_int_t)v->start_wall_s));
	json_object_set_new(r, "config", json_string(c->path));
	json_object_set_new(r, "log_level", json_string(
		log_level_name(log_get_level())));
	json_object_set_new(r, "address", json_sprintf("%s/%u",
		format_ipv4(c->stack.addr, a), c->stack.prefix_len));
	json_object_set_new(r, "lcores", json_string(c->dp.lcores));
	for (unsigned w = 0; w < v->nworkers; w++)
		json_array_append_new(ws, json_pack("{s:i, s:i}", "worker",
			(json_int_t)w, "lcore",
			(json_int_t)dp->workers[w].lcore_id));
	json_object_set_new(r, "workers", ws);
	rte_eth_macaddr_get(dp->port_id, &mac);
	rte_ether_format_addr(macs, sizeof(macs), &mac);
	memset(&link, 0, sizeof(link));
	rte_eth_link_get_nowait(dp->port_id, &link);
	json_object_set_new(port, "id", json_integer(dp->port_id));
	json_object_set_new(port, "driver", json_string(
		dp->info.driver_name ? dp->info.driver_name : "?"));
	json_object_set_new(port, "devargs", json_string(c->dp.devargs));
	json_object_set_new(port, "mac", json_string(macs));
	json_object_set_new(port, "link_up", json_boolean(link.link_status));
	json_object_set_new(port, "link_speed_mbps", json_integer(
		link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0
		: (json_int_t)link.link_speed));
	json_object_set_new(port, "queues", json_integer(dp->nqueues));
	json_object_set_new(port, "rx_offloads", offloads(dp->rx_offloads,
							 true));
	json_object_set_new(port, "tx_offloads", offloads(dp->tx_offloads,
							 false));
	json_object_set_new(port, "steering", json_boolean(dp->steering));
	json_object_set_new(r, "port", port);
	for (uint32_t i = 0; i < c->smtpd.nlisten; i++)
		json_array_append_new(ls, json_pack("{s:s, s:i}", "proto",
			"smtp", "port", (json_int_t)c->smtpd.listen[i]));
	if (c->diag.echo_port)
		json_array_append_new(ls, json_pack("{s:s, s:i}", "proto",
			"echo", "port", (json_int_t)c->diag.echo_port));
	if (c->diag.discard_port)
		json_array_append_new(ls, json_pack("{s:s, s:i}", "proto",
			"discard", "port", (json_int_t)c->diag.discard_port));
	if (c->diag.chargen_port)
		json_array_append_new(ls, json_pack("{s:s, s:i}", "proto",
			"chargen", "port", (json_int_t)c->diag.chargen_port));
	json_object_set_new(r, "listeners", ls);
	json_object_set_new(r, "control_socket", json_string(c->ctl_socket));
	json_object_set_new(r, "metrics", json_string(
		c->metrics_listen[0] ? c->metrics_listen : "off"));
	json_object_set_new(r, "draining", json_boolean(
		atomic_load(&v->shutdown_req) != 0));
	return 0;
}

/* ---- stats ------------------------------------------------------------ */

static int v_stats(void *arg, const json_t *req, json_t *r, char *err,
		   size_t errlen)
{
	struct mgmt_view *v = arg;
	uint64_t w = 0;
	int has = ctl_arg_uint(req, "worker", &w, err, errlen);
	json_t *s;

	if (has < 0)
		return -1;
	if (has && w >= v->nworkers) {
		snprintf(err, errlen, "no worker %llu (there %s %u)",
			 (unsigned long long)w, v->nworkers == 1 ? "is" : "are",
			 v->nworkers);
		return -1;
	}
	s = mgmt_stats(v, has ? (int)w : -1);
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_object_update(r, s);
	json_decref(s);
	json_object_set_new(r, "uptime_ms", json_integer(
		(json_int_t)(mono_ms() - v->start_mono_ms)));
	return 0;
}

/* ---- queue -------------------------------------------------------------- */

static json_t *msg_json(const struct mta_qctl_msg *m)
{
	json_t *o = json_object(), *rs = json_array();

	json_object_set_new(o, "id", json_string(m->qid));
	json_object_set_new(o, "sender", json_string(m->sender));
	json_object_set_new(o, "size", json_integer((json_int_t)m->size));
	json_object_set_new(o, "arrival", json_integer(
		(json_int_t)(m->arrival_us / 1000000u)));
	json_object_set_new(o, "attempts", json_integer(m->attempts));
	json_object_set_new(o, "held", json_boolean(m->held));
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		const struct mta_qctl_rcpt *rc = &m->rcpt[i];
		json_array_append_new(rs, json_pack(
			"{s:s, s:s, s:s, s:I, s:s}", "addr", rc->addr,
			"state", rc->state, "dest", rc->dest ? rc->dest : "",
			"next_try", (json_int_t)rc->next_try_s, "last",
			rc->last ? rc->last : ""));
	}
	json_object_set_new(o, "rcpts", rs);
	return o;
}

/* Messages a queue reply lists unless the request says "limit" (0:
 * all): the callback runs on the queue manager's thread, and a queue of
 * millions must neither stall it nor make a reply of gigabytes. */
#define QUEUE_LIST_DEFAULT 1000

struct collect {
	json_t *msgs;
	uint64_t limit;          /* 0: all */
};

static void collect_msg(void *arg, const struct mta_qctl_msg *m)
{
	struct collect *c = arg;

	if (c->limit == 0 || json_array_size(c->msgs) < c->limit)
		json_array_append_new(c->msgs, msg_json(m));
}

static const char *const op_names[] = {
	[MTA_QCTL_LIST] = "list", [MTA_QCTL_FLUSH] = "flush",
	[MTA_QCTL_HOLD] = "hold", [MTA_QCTL_RELEASE] = "release",
	[MTA_QCTL_DELETE] = "delete", [MTA_QCTL_BOUNCE] = "bounce",
	[MTA_QCTL_SUSPEND] = "suspend", [MTA_QCTL_RESUME] = "resume",
};

static int qctl_error(int rc, char *err, size_t errlen)
{
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "the queue manager did not answer in "
			 "%u ms", CTL_QMGR_TIMEOUT_MS);
	else if (rc == -EBUSY)
		snprintf(err, errlen, "another queue request is running; "
			 "try again");
	else
		snprintf(err, errlen, "queue manager: %s", strerror(-rc));
	return -1;
}

/* Filters from the request: ids, domain, sender, state, older_than. */
static int parse_filter(const json_t *req, struct mta_qctl_filter *f,
			const char ***ids, bool *any, char *err, size_t errlen)
{
	const char *state = NULL;
	int rc;

	memset(f, 0, sizeof(*f));
	f->state = MTA_QS_ANY;
	*ids = NULL;
	if ((rc = ctl_arg_strs(req, "ids", ids, &f->nids, err, errlen)) < 0)
		return -1;
	f->ids = *ids;
	if (ctl_arg_str(req, "domain", &f->domain, err, errlen) < 0 ||
	    ctl_arg_str(req, "sender", &f->sender, err, errlen) < 0 ||
	    ctl_arg_str(req, "state", &state, err, errlen) < 0 ||
	    ctl_arg_uint(req, "older_than", &f->older_than_s, err,
			 errlen) < 0)
		goto bad;
	if (state != NULL) {
		if (strcmp(state, "active") == 0)
			f->state = MTA_QS_ACTIVE;
		else if (strcmp(state, "deferred") == 0)
			f->state = MTA_QS_DEFERRED;
		else if (strcmp(state, "held") == 0)
			f->state = MTA_QS_HELD;
		else {
			snprintf(err, errlen, "\"state\" is one of active, "
				 "deferred, held");
			goto bad;
		}
	}
	*any = f->nids > 0 || f->domain != NULL || f->sender != NULL ||
	       state != NULL || f->older_than_s > 0;
	return 0;
bad:
	free(*ids);
	*ids = NULL;
	return -1;
}

static int queue_op(struct mgmt_view *v, enum mta_qctl_op op,
		    const json_t *req, json_t *r, char *err, size_t errlen)
{
	struct mta_qctl_filter f;
	const char **ids;
	bool any, all = false;
	struct collect c = { .limit = QUEUE_LIST_DEFAULT };
	int rc;

	if (v->qmgr == NULL) {
		snprintf(err, errlen, "no queue manager (no [smtp] listen)");
		return -1;
	}
	if (parse_filter(req, &f, &ids, &any, err, errlen) != 0)
		return -1;
	if (ctl_arg_bool(req, "all", &all, err, errlen) < 0 ||
	    ctl_arg_uint(req, "limit", &c.limit, err, errlen) < 0) {
		free(ids);
		return -1;
	}
	/* a change to every message must be asked for by name */
	if (!any && !all && op != MTA_QCTL_LIST && op != MTA_QCTL_FLUSH) {
		free(ids);
		snprintf(err, errlen, "queue %s needs IDs, a filter, or "
			 "\"all\": true", op_names[op]);
		return -1;
	}
	c.msgs = json_array();
	rc = mta_qmgr_ctl(v->qmgr, op, &f, collect_msg, &c,
			  CTL_QMGR_TIMEOUT_MS);
	free(ids);
	if (rc < 0) {
		json_decref(c.msgs);
		return qctl_error(rc, err, errlen);
	}
	json_object_set_new(r, "matched", json_integer(rc));
	json_object_set_new(r, "truncated", json_boolean(
		(size_t)rc > json_array_size(c.msgs)));
	json_object_set_new(r, "messages", c.msgs);
	if (op != MTA_QCTL_LIST)
		LOG(LOG_NOTICE, "ctl: queue %s: %d message%s", op_names[op],
		    rc, rc == 1 ? "" : "s");
	return 0;
}

#define QVERB(name, op) \
	static int v_queue_##name(void *arg, const json_t *req, json_t *r, \
				  char *err, size_t errlen) \
	{ return queue_op(arg, op, req, r, err, errlen); }
QVERB(list, MTA_QCTL_LIST)
QVERB(flush, MTA_QCTL_FLUSH)
QVERB(hold, MTA_QCTL_HOLD)
QVERB(release, MTA_QCTL_RELEASE)
QVERB(delete, MTA_QCTL_DELETE)
QVERB(bounce, MTA_QCTL_BOUNCE)
#undef QVERB

/* queue summary: destinations now, and open recipients by domain and age
 * (qshape's buckets, in minutes) */
static const unsigned age_edges_min[] = { 5, 10, 20, 40, 80, 160, 320,
					  640, 1280 };
#define NAGE (sizeof(age_edges_min) / sizeof(*age_edges_min) + 1)

static void collect_dest(void *arg, const struct mta_qctl_dest *d)
{
	json_array_append_new(arg, json_pack(
		"{s:s, s:i, s:i, s:i, s:b, s:I, s:s}", "dest", d->key,
		"ready", (json_int_t)d->ready, "deferred",
		(json_int_t)d->deferred, "active_jobs",
		(json_int_t)d->active_jobs, "suspended", d->suspended,
		"backoff_until", (json_int_t)d->backoff_until_s, "why",
		d->why ? d->why : ""));
}

struct shape {
	json_t *domains; /* domain -> [NAGE counts] */
	uint64_t now_s;
};

static void collect_shape(void *arg, const struct mta_qctl_msg *m)
{
	struct shape *sh = arg;
	uint64_t age_min = sh->now_s > m->arrival_us / 1000000u ?
		(sh->now_s - m->arrival_us / 1000000u) / 60 : 0;
	unsigned b = 0;

	while (b < NAGE - 1 && age_min >= age_edges_min[b])
		b++;
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		const struct mta_qctl_rcpt *rc = &m->rcpt[i];
		const char *at;
		char dom[256];
		json_t *row;

		if (strcmp(rc->state, "delivered") == 0 ||
		    strcmp(rc->state, "bounced") == 0)
			continue;
		at = strrchr(rc->addr, '@');
		snprintf(dom, sizeof(dom), "%s", at ? at + 1 : rc->addr);
		for (char *p = dom; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		row = json_object_get(sh->domains, dom);
		if (row == NULL) {
			row = json_array();
			for (unsigned k = 0; k < NAGE; k++)
				json_array_append_new(row, json_integer(0));
			json_object_set_new(sh->domains, dom, row);
		}
		json_array_set_new(row, b, json_integer(
			json_integer_value(json_array_get(row, b)) + 1));
	}
}

static int v_queue_summary(void *arg, const json_t *req, json_t *r,
			   char *err, size_t errlen)
{
	struct mgmt_view *v = arg;
	struct mta_qctl_filter f;
	struct shape sh;
	json_t *dests, *edges;
	int rc;

	(void)req;
	if (v->qmgr == NULL) {
		snprintf(err, errlen, "no queue manager (no [smtp] listen)");
		return -1;
	}
	dests = json_array();
	rc = mta_qmgr_dests(v->qmgr, collect_dest, dests, CTL_QMGR_TIMEOUT_MS);
	if (rc < 0) {
		json_decref(dests);
		return qctl_error(rc, err, errlen);
	}
	json_object_set_new(r, "dests", dests);
	memset(&f, 0, sizeof(f));
	f.state = MTA_QS_ANY;
	sh.domains = json_object();
	sh.now_s = (uint64_t)time(NULL);
	rc = mta_qmgr_ctl(v->qmgr, MTA_QCTL_LIST, &f, collect_shape, &sh,
			  CTL_QMGR_TIMEOUT_MS);
	if (rc < 0) {
		json_decref(sh.domains);
		return qctl_error(rc, err, errlen);
	}
	edges = json_array();
	for (unsigned k = 0; k < NAGE - 1; k++)
		json_array_append_new(edges, json_integer(age_edges_min[k]));
	json_object_set_new(r, "age_edges_min", edges);
	json_object_set_new(r, "domains", sh.domains);
	json_object_set_new(r, "messages", json_integer(rc));
	return 0;
}

static int domain_op(struct mgmt_view *v, enum mta_qctl_op op,
		     const json_t *req, json_t *r, char *err, size_t errlen)
{
	struct mta_qctl_filter f;
	int rc;

	if (v->qmgr == NULL) {
		snprintf(err, errlen, "no queue manager (no [smtp] listen)");
		return -1;
	}
	memset(&f, 0, sizeof(f));
	f.state = MTA_QS_ANY;
	if ((rc = ctl_arg_str(req, "domain", &f.domain, err, errlen)) <= 0) {
		if (rc == 0)
			snprintf(err, errlen, "\"domain\" (a string) is "
				 "required");
		return -1;
	}
	rc = mta_qmgr_ctl(v->qmgr, op, &f, NULL, NULL, CTL_QMGR_TIMEOUT_MS);
	if (rc < 0)
		return qctl_error(rc, err, errlen);
	json_object_set_new(r, "domain", json_string(f.domain));
	json_object_set_new(r, "suspended", json_boolean(
		op == MTA_QCTL_SUSPEND));
	LOG(LOG_NOTICE, "ctl: domain %s: %s", f.domain, op_names[op]);
	return 0;
}

static int v_domain_suspend(void *arg, const json_t *req, json_t *r,
			    char *err, size_t errlen)
{
	return domain_op(arg, MTA_QCTL_SUSPEND, req, r, err, errlen);
}

static int v_domain_resume(void *arg, const json_t *req, json_t *r,
			   char *err, size_t errlen)
{
	return domain_op(arg, MTA_QCTL_RESUME, req, r, err, errlen);
}

/* ---- log, reload, shutdown -------------------------------------------- */

static int v_log_level(void *arg, const json_t *req, json_t *r, char *err,
		       size_t errlen)
{
	const char *name = NULL;
	int rc = ctl_arg_str(req, "level", &name, err, errlen);
	enum log_level old = log_get_level();

	(void)arg;
	if (rc < 0)
		return -1;
	if (rc > 0) {
		int l = log_level_parse(name);
		if (l < 0) {
			snprintf(err, errlen, "'%.32s' is not one of error, "
				 "warning, notice, info, debug", name);
			return -1;
		}
		log_set_level((enum log_level)l);
		if ((enum log_level)l != old)
			log_msg(LOG_NOTICE, "ctl: log level %s (was %s)",
				log_level_name((enum log_level)l),
				log_level_name(old));
	}
	json_object_set_new(r, "level", json_string(
		log_level_name(log_get_level())));
	json_object_set_new(r, "was", json_string(log_level_name(old)));
	return 0;
}

#define SAME(f) (memcmp(&a->f, &b->f, sizeof(a->f)) == 0)

/* [mta] outbound settings; helo_name points into each struct */
static bool out_same(const struct dpmail_conf *a, const struct dpmail_conf *b)
{
	struct mta_out_conf x = a->out, y = b->out;

	x.helo_name = y.helo_name = NULL;
	return memcmp(&x, &y, sizeof(x)) == 0 &&
	       strcmp(a->out.helo_name ? a->out.helo_name : "",
		      b->out.helo_name ? b->out.helo_name : "") == 0 &&
	       SAME(mta_resolvers);
}

/* What a reload found changed that only a restart applies (a: the
 * configuration the daemon started with). */
static void restart_sections(const struct dpmail_conf *a,
			     const struct dpmail_conf *b, json_t *out)
{
	struct { const char *name; bool same; } s[] = {
		{ "eal/port/dataplane/fault", SAME(dp) },
		{ "net/stack/tcp", SAME(stack) },
		{ "diag", SAME(diag) },
		{ "smtp (listeners/TLS/users file)",
		  smtpd_conf_restart_same(&a->smtpd, &b->smtpd) },
		{ "spool", SAME(spool) },
		{ "mailbox", SAME(qmgr.mailbox) },
		{ "mta (outbound)", out_same(a, b) },
		{ "control", SAME(ctl_socket) },
		{ "metrics", SAME(metrics_listen) },
		{ "log (format/output)", SAME(log_format) && SAME(log_output) },
	};

	for (size_t i = 0; i < sizeof(s) / sizeof(*s); i++)
		if (!s[i].same)
			json_array_append_new(out, json_string(s[i].name));
}

/* The queue manager's live part: all but spool_dir and mailbox. */
static bool qmgr_live_same(const struct dpmail_conf *a,
			   const struct dpmail_conf *b)
{
	struct mta_qmgr_conf x = a->qmgr, y = b->qmgr;

	memset(x.spool_dir, 0, sizeof(x.spool_dir));
	memset(y.spool_dir, 0, sizeof(y.spool_dir));
	memset(&x.mailbox, 0, sizeof(x.mailbox));
	memset(&y.mailbox, 0, sizeof(y.mailbox));
	return memcmp(&x, &y, sizeof(x)) == 0;
}

/* Queue manager and smtpd wait at most this for their threads. */
#define RELOAD_WAIT_MS 5000

/*
 * Re-reads the file, and the tables it names, whole; anything wrong and
 * nothing changes. Then, without dropping a session: the log level; the
 * queue manager's settings and routing tables (for messages routed from
 * now on); smtpd's limits, policy and alias tables (for sessions
 * accepted from now on; open ones keep theirs). What only a restart can
 * change is named in "restart_needed".
 */
static int v_reload(void *arg, const json_t *req, json_t *r, char *err,
		    size_t errlen)
{
	struct mgmt_view *v = arg;
	const struct dpmail_conf *was = v->applied ? v->applied : v->conf;
	struct dpmail_conf *nc = malloc(sizeof(*nc));
	struct mta_policy *policy = NULL;
	struct mta_route *route = NULL;
	struct smtpd_gen *gen = NULL;
	json_t *applied = json_array(), *restart = json_array();
	const char *path = v->conf->path;
	char e[512];
	int rc;

	(void)req;
	if (nc == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (config_load(nc, path, err, errlen) != 0)
		goto refused;
	/* the tables must load too, or the file is refused */
	if (v->smtp_sh != NULL) {
		if (mta_policy_load(&policy, &nc->policy, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "%s: policy: %s", path, e);
			goto refused;
		}
		if (mta_route_load(&route, &nc->route, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "%s: routing: %s", path, e);
			goto refused;
		}
		mta_policy_set_route(policy, route);
		/* certificates too: all of it loads, or nothing applies */
		if (smtpd_reconf_prepare(v->smtp_sh, &nc->smtpd, policy, route,
					 &gen, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "%s: [tls]: %s", path, e);
			goto refused;
		}
		policy = NULL; /* the generation's now */
	}
	/* the queue manager first: it alone can still say no (busy) */
	if (v->qmgr != NULL) {
		rc = mta_qmgr_reconf(v->qmgr, &nc->qmgr, route, RELOAD_WAIT_MS);
		if (rc < 0) {
			snprintf(err, errlen, "the queue manager did not take "
				 "the new configuration (%s); nothing changed",
				 strerror(-rc));
			goto refused;
		}
		if (!qmgr_live_same(was, nc))
			json_array_append_new(applied, json_string("queue"));
		json_array_append_new(applied, json_string("routing"));
	}
	if (gen != NULL) {
		smtpd_reconf_commit(v->smtp_sh, gen, RELOAD_WAIT_MS);
		gen = NULL;
		if (memcmp(&was->smtpd, &nc->smtpd, sizeof(nc->smtpd)) != 0)
			json_array_append_new(applied, json_string("smtp"));
		json_array_append_new(applied, json_string("policy"));
		if (nc->smtpd.tls.cert_file[0] != '\0' &&
		    v->conf->smtpd.tls.cert_file[0] != '\0')
			json_array_append_new(applied, json_string("tls"));
	}
	if (nc->log_level != log_get_level()) {
		log_set_level(nc->log_level);
		json_array_append_new(applied, json_string("log.level"));
	}
	restart_sections(v->conf, nc, restart);
	LOG(LOG_NOTICE, "ctl: reloaded %s: %zu part%s applied, %zu "
	    "section%s need a restart", path, json_array_size(applied),
	    json_array_size(applied) == 1 ? "" : "s", json_array_size(restart),
	    json_array_size(restart) == 1 ? "" : "s");
	json_object_set_new(r, "config", json_string(path));
	json_object_set_new(r, "applied", applied);
	json_object_set_new(r, "restart_needed", restart);
	mta_route_free(route);  /* the holders took their references */
	free(v->applied);
	v->applied = nc;
	return 0;
refused:
	LOG(LOG_WARNING, "ctl: reload refused: %s", err);
fail:
	smtpd_reconf_abort(gen);
	mta_policy_free(policy);
	mta_route_free(route);
	json_decref(applied);
	json_decref(restart);
	free(nc);
	return -1;
}

static int v_shutdown(void *arg, const json_t *req, json_t *r, char *err,
		      size_t errlen)
{
	struct mgmt_view *v = arg;
	uint64_t drain = 0;

	if (ctl_arg_uint(req, "drain", &drain, err, errlen) < 0)
		return -1;
	if (drain > CTL_MAX_DRAIN_S) {
		snprintf(err, errlen, "\"drain\" is at most %u seconds",
			 CTL_MAX_DRAIN_S);
		return -1;
	}
	atomic_store(&v->drain_s, (unsigned)drain);
	atomic_store(&v->shutdown_req, 1);
	LOG(LOG_NOTICE, "ctl: shutdown requested (drain %llu s)",
	    (unsigned long long)drain);
	json_object_set_new(r, "drain", json_integer((json_int_t)drain));
	return 0;
}

static int v_ping(void *arg, const json_t *req, json_t *r, char *err,
		  size_t errlen)
{
	(void)arg;
	(void)req;
	(void)err;
	(void)errlen;
	json_object_set_new(r, "pong", json_true());
	return 0;
}

const struct ctl_verb ctl_daemon_verbs[] = {
	{ "ping", v_ping },
	{ "status", v_status },
	{ "stats", v_stats },
	{ "queue.list", v_queue_list },
	{ "queue.show", v_queue_list },
	{ "queue.flush", v_queue_flush },
	{ "queue.hold", v_queue_hold },
	{ "queue.release", v_queue_release },
	{ "queue.delete", v_queue_delete },
	{ "queue.bounce", v_queue_bounce },
	{ "queue.summary", v_queue_summary },
	{ "domain.suspend", v_domain_suspend },
	{ "domain.resume", v_domain_resume },
	{ "log.level", v_log_level },
	{ "reload", v_reload },
	{ "shutdown", v_shutdown },
	{ NULL, NULL },
};
