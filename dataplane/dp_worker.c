/*
 * dp_worker.c: the worker lcore loop (the l2fwd shape) with idle back-off.
 *
 * Each iteration: burst RX, hand the frames to the stack, flush TX, tick
 * timers once per millisecond. When bursts keep coming back empty the loop
 * spins a little, then pauses, then sleeps for doubling intervals up to
 * idle_sleep_max_us, and spins again as soon as a burst brings traffic.
 * An idle daemon so costs well under 5% of a core, and a busy one never
 * sleeps. The worker never blocks on anything but that sleep.
 */
#include "dataplane/dp.h"

#include <errno.h>
#include <sys/prctl.h>
#include <time.h>

#include <rte_launch.h>
#include <rte_pause.h>

#include "common/log.h"

#define IDLE_SLEEP_MIN_US 16

static void idle_sleep(uint32_t us)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static int worker_main(void *arg)
{
	struct dp_worker *w = arg;
	const struct dp_conf *c = w->conf;
	struct rte_mbuf *pkts[DP_MAX_BURST];
	uint16_t burst = (uint16_t)c->burst;
	uint32_t idle = 0, sleep_us = IDLE_SLEEP_MIN_US;
	uint32_t spin_end = c->idle_spin_polls;
	uint32_t pause_end = c->idle_spin_polls + c->idle_pause_polls;
	uint64_t last_ms = 0;

	/* default timer slack (50 us) would stretch every short sleep */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	LOG(LOG_INFO, "dataplane: worker %u polling queue %u on lcore %u",
	    w->index, w->q.queue_id, w->lcore_id);

	while (!__atomic_load_n(w->stop, __ATOMIC_RELAXED)) {
		uint16_t n = dp_rx(&w->q, pkts, burst);
		uint64_t now = dp_now_ms();

		w->stats.polls++;
		if (now != last_ms) {
			w->ops->tick(w->ctx, now);
			last_ms = now;
		}
		if (n > 0) {
			w->stats.busy_polls++;
			w->ops->input(w->ctx, pkts, n);
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
		idle_sleep(sleep_us);
		if (sleep_us < c->idle_sleep_max_us) {
			sleep_us *= 2;
			if (sleep_us > c->idle_sleep_max_us)
				sleep_us = c->idle_sleep_max_us;
		}
	}
	w->ops->flush(w->ctx);
	LOG(LOG_INFO, "dataplane: worker %u stopped", w->index);
	return 0;
}

int dp_launch(struct dp *dp, const struct dp_worker_ops *ops, void **ctx)
{
	__atomic_store_n(&dp->stop, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < dp->nworkers; i++) {
		struct dp_worker *w = &dp->workers[i];
		int rc;

		w->ops = ops;
		w->ctx = ctx[i];
		w->conf = &dp->conf;
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
}
