/*
 * ctl_stats.c: one snapshot of every counter, for `dpmailctl stats` and
 * the metrics endpoint alike (so that the two always agree).
 *
 * Reads per-worker counters that only their worker writes, with relaxed
 * loads: a figure may be a moment stale, never torn (64-bit, x86-64).
 * Besides what ctl_verbs.h lists, each worker (and "total") has
 * "tcp_states" (connections by state, tcp_state_label names) and
 * "listeners" (per listening port: {"25": {"open", "accepted", ...}}).
 */
#include "mgmt/ctl_verbs.h"

#include <string.h>

#include "mgmt/smtpd.h"
#include "mta/mta_out.h"
#include "mta/mta_qmgr.h"
#include "store/spool.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"

#define RD(p) __atomic_load_n(&(p), __ATOMIC_RELAXED)

static void put(json_t *o, const char *k, uint64_t v)
{
	json_object_set_new(o, k, json_integer((json_int_t)v));
}

/* total.section.k += v */
static void add(json_t *total, const char *section, const char *k,
		uint64_t v)
{
	json_t *s = json_object_get(total, section);
	json_t *cur;

	if (s == NULL) {
		s = json_object();
		json_object_set_new(total, section, s);
	}
	cur = json_object_get(s, k);
	put(s, k, (cur ? (uint64_t)json_integer_value(cur) : 0) + v);
}

/* {"listen": n, "syn_received": n, ...}: connections by state (not
 * CLOSED: those are gone by the end of the worker's current event) */
static json_t *tcp_states(const struct stack *st, json_t *total)
{
	uint32_t n[TCP_NSTATES];
	json_t *o = json_object();

	tcp_state_counts(st, n);
	for (unsigned i = 1; i < TCP_NSTATES; i++) {
		put(o, tcp_state_label(i), n[i]);
		add(total, "tcp_states", tcp_state_label(i), n[i]);
	}
	return o;
}

/* {"25": {"listening", "open", "syn_pending", "accepted", "refused",
 * "over_limit", "syncookies"}, ...}: one object per listening port; the
 * totals sum the workers' (so "listening" counts workers) */
static json_t *listeners(const struct stack *st, json_t *total)
{
	struct tcp_listener_stats ls;
	json_t *o = json_object(), *tl = json_object_get(total, "listeners");

	if (tl == NULL) {
		tl = json_object();
		json_object_set_new(total, "listeners", tl);
	}
	for (unsigned i = 0; tcp_listener_get_stats(st, i, &ls); i++) {
		json_t *x = json_object();
		char port[8];

		snprintf(port, sizeof(port), "%u", ls.port);
#define LS(f) do { put(x, #f, ls.f); add(tl, port, #f, ls.f); } while (0)
		LS(listening);
		LS(open);
		LS(syn_pending);
		LS(accepted);
		LS(refused);
		LS(over_limit);
		LS(syncookies);
#undef LS
		json_object_set_new(o, port, x);
	}
	return o;
}

static json_t *worker_stats(const struct mgmt_view *v, unsigned w,
			    json_t *total)
{
	json_t *o = json_object(), *st = json_object(), *dpo = json_object();
	const struct dp_worker *dw = &v->dp->workers[w];

	put(o, "worker", w);
	put(o, "lcore", dw->lcore_id);
	for (unsigned i = 0; i < STACK_CTR_COUNT; i++) {
		uint64_t c = stack_counter_get(&v->stacks[w]->cnt, i);
		put(st, stack_counter_name(i), c);
		add(total, "stack", stack_counter_name(i), c);
	}
	{
		uint64_t live = tcp_live_conns(v->stacks[w]);
		put(st, "tcp.live_conns", live);
		add(total, "stack", "tcp.live_conns", live);
	}
	json_object_set_new(o, "stack", st);
	json_object_set_new(o, "tcp_states", tcp_states(v->stacks[w], total));
	json_object_set_new(o, "listeners", listeners(v->stacks[w], total));
#define DPS(f) do { uint64_t x_ = RD(dw->stats.f); put(dpo, #f, x_); \
		add(total, "dataplane", #f, x_); } while (0)
	DPS(polls);
	DPS(busy_polls);
	DPS(idle_sleeps);
	DPS(steered_out);
	DPS(steered_in);
	DPS(steer_dropped);
#undef DPS
	json_object_set_new(o, "dataplane", dpo);
	if (v->smtp[w] != NULL) {
		const struct smtpd_counters *c = smtpd_get_counters(v->smtp[w]);
		json_t *so = json_object();
#define X(f) { uint64_t x_ = RD(c->f); put(so, #f, x_); \
		add(total, "smtp", #f, x_); }
		SMTPD_COUNTERS(X)
#undef X
		json_object_set_new(o, "smtp", so);
	}
	if (v->out[w] != NULL) {
		struct mta_out_stats s;
		json_t *oo = json_object();
		mta_out_get_stats(v->out[w], &s);
#define OS(f) do { put(oo, #f, s.f); add(total, "out", #f, s.f); } while (0)
		OS(jobs);
		OS(connects);
		OS(connect_failures);
		OS(conns_reused);
		OS(messages);
		OS(rcpt_delivered);
		OS(rcpt_deferred);
		OS(rcpt_bounced);
		OS(dns_lookups);
		OS(dns_failures);
		OS(conns_live);
		OS(jobs_waiting);
#undef OS
		json_object_set_new(o, "out", oo);
	}
	return o;
}

json_t *mgmt_stats(const struct mgmt_view *v, int worker)
{
	json_t *r = json_object(), *ws = json_array(), *total = json_object();

	if (r == NULL || ws == NULL || total == NULL) {
		json_decref(r);
		json_decref(ws);
		json_decref(total);
		return NULL;
	}
	for (unsigned w = 0; w < v->nworkers; w++) {
		json_t *o = worker_stats(v, w, total);
		if (worker < 0 || (unsigned)worker == w)
			json_array_append_new(ws, o);
		else
			json_decref(o);
	}
	json_object_set_new(r, "workers", ws);
	json_object_set_new(r, "total", total);
	if (v->spool != NULL) {
		static const uint64_t bounds[SPOOL_SYNC_BUCKETS] = {
			SPOOL_SYNC_BOUNDS_US };
		struct spool_stats s;
		json_t *so = json_object(), *h = json_object();
		json_t *le = json_array(), *cnt = json_array();

		spool_get_stats(v->spool, &s);
		put(so, "batches", s.batches);
		put(so, "records", s.records);
		put(so, "bytes", s.bytes);
		put(so, "fsyncs", s.fsyncs);
		put(so, "errors", s.errors);
		put(so, "msgs_live", s.msgs_live);
		put(so, "segments", s.segments);
		for (unsigned b = 0; b < SPOOL_SYNC_BUCKETS; b++) {
			json_array_append_new(le, json_integer(
				(json_int_t)bounds[b]));
			json_array_append_new(cnt, json_integer(
				(json_int_t)s.sync_hist[b]));
		}
		json_array_append_new(cnt, json_integer(
			(json_int_t)s.sync_hist[SPOOL_SYNC_BUCKETS]));
		json_object_set_new(h, "le_us", le);
		json_object_set_new(h, "count", cnt);
		put(h, "sum_us", s.sync_us_sum);
		json_object_set_new(so, "fdatasync_us", h);
		json_object_set_new(r, "spool", so);
	}
	if (v->qmgr != NULL) {
		struct mta_qmgr_stats s;
		json_t *qo = json_object();

		mta_qmgr_get_stats(v->qmgr, &s);
#define X(f) put(qo, #f, s.f);
		MTA_QMGR_COUNTERS(X)
#undef X
		put(qo, "msgs_live", s.msgs_live);
		put(qo, "rcpts_deferred_now", s.rcpts_deferred_now);
		put(qo, "dests", s.dests);
		put(qo, "jobs_active", s.jobs_active);
		put(qo, "body_bytes", s.body_bytes);
		json_object_set_new(r, "qmgr", qo);
	}
	return r;
}

bool mgmt_stat_is_gauge(const char *section, const char *name)
{
	static const char *const gauges[] = {
		"stack.tcp.live_conns", "smtp.sessions_live",
		"out.conns_live", "out.jobs_waiting", "spool.msgs_live",
		"spool.segments", "qmgr.msgs_live", "qmgr.rcpts_deferred_now",
		"qmgr.dests", "qmgr.jobs_active", "qmgr.body_bytes",
		"listener.listening",
		"listener.open", "listener.syn_pending",
	};
	char full[128];

	snprintf(full, sizeof(full), "%s.%s", section, name);
	for (size_t i = 0; i < sizeof(gauges) / sizeof(*gauges); i++)
		if (strcmp(full, gauges[i]) == 0)
			return true;
	return false;
}
