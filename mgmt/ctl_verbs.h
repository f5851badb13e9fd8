/*
 * ctl_verbs.h: what the control socket and the metrics endpoint may see
 * of the running daemon, and the verbs dpmailctl sends.
 *
 * struct mgmt_view is filled by daemon.c once the workers run and stays
 * valid until ctl_close/metrics_stop return. Everything read through it
 * from the control or metrics thread is either immutable after start-up
 * (config, port info, pointers) or a counter read relaxed ("mgmt sums
 * them on read"); queue state comes from the queue manager's own thread
 * (mta_qmgr_ctl). The only things written back are the request flags
 * below, which the main loop acts on.
 */
#ifndef DPMAIL_MGMT_CTL_VERBS_H
#define DPMAIL_MGMT_CTL_VERBS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dataplane/dp.h"
#include "mgmt/ctl.h"

struct dpmail_conf;
struct stack;
struct smtpd_worker;
struct smtpd_shared;
struct mta_out;
struct mta_qmgr;
struct spool;

struct mgmt_view {
	const struct dpmail_conf *conf;
	const struct dp *dp;
	unsigned nworkers;
	struct stack *stacks[DP_MAX_WORKERS];
	struct smtpd_worker *smtp[DP_MAX_WORKERS];
	struct mta_out *out[DP_MAX_WORKERS];
	struct smtpd_shared *smtp_sh;
	struct spool *spool;
	struct mta_qmgr *qmgr;
	uint64_t start_wall_s;
	uint64_t start_mono_ms;
	/* the last configuration reload applied (the control thread's;
	 * the daemon frees it after ctl_close); NULL: conf */
	struct dpmail_conf *applied;
	/* requests for the main loop (ctl thread -> main thread) */
	atomic_int shutdown_req;     /* 1: stop */
	atomic_uint drain_s;         /* with shutdown_req: drain this long */
};

/* The verbs (NULL-terminated), with a struct mgmt_view as their arg. */
extern const struct ctl_verb ctl_daemon_verbs[];

/* Counters now: {"workers": [{"worker", "lcore", "stack": {...},
 * "smtp": {...}, "dataplane": {...}, "out": {...}}, ...], "total": {same
 * sections summed}, "spool": {..., "fdatasync_us": {"le": [...],
 * "count": [...], "sum_us"}}, "qmgr": {...}}. worker >= 0: that worker
 * only in "workers" (totals stay whole). NULL when out of memory. */
json_t *mgmt_stats(const struct mgmt_view *v, int worker);

/* A counter that is a level now, not a running total (for metrics). */
bool mgmt_stat_is_gauge(const char *section, const char *name);

#endif
