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
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include <rte_launch.h>
#include <rte_pause.h>

#include <rte_ring.h>

#include "common/log.h"
#include "dataplane/dp_steer.h"

#define IDLE_SLEEP_MIN_US 16

static void idle_sleep(uint32_t us)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/*
 * Software steering: keep what this worker owns, hand the rest to its
 * owner's ring, copy ARP to everyone, then take what others handed here.
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

	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		unsigned o = dp_steer_classify(m, dp->steer_seed, dp->nworkers);

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
	/* room for a burst and as much again from other workers */
	struct rte_mbuf *pkts[2 * DP_MAX_BURST];
	uint16_t burst = (uint16_t)c->burst;
	uint32_t idle = 0, sleep_us = IDLE_SLEEP_MIN_US;
	uint32_t spin_end = c->idle_spin_polls;
	uint32_t pause_end = c->idle_spin_polls + c->idle_pause_polls;
	uint64_t last_ms = 0;

	/* default timer slack (50 us) would stretch every short sleep */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	{
		/* PMD readiness signals are for the workers: the daemon
		 * blocks them everywhere else */
		sigset_t io;
		dp_worker_signals(&io);
		pthread_sigmask(SIG_UNBLOCK, &io, NULL);
	}
	LOG(LOG_INFO, "dataplane: worker %u polling queue %u on lcore %u",
	    w->index, w->q.queue_id, w->lcore_id);

	while (!__atomic_load_n(w->stop, __ATOMIC_RELAXED)) {
		uint16_t n = dp_rx(&w->q, pkts, burst);
		uint64_t now = dp_now_ms();

		if (w->dp->steering)
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
}
