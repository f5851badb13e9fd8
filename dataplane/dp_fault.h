/*
 * dp_fault.h: fault injection on a worker's queue, for tests and for
 * operators reproducing a bad network: drop, corrupt, duplicate and
 * reorder frames in either direction, with fixed per-million rates and a
 * seeded generator. Off unless [fault] sets a rate. (The kernel's netem
 * does this on the far side of the link where it exists; this does it on
 * our side, where it always exists.)
 */
#ifndef DPMAIL_DATAPLANE_DP_FAULT_H
#define DPMAIL_DATAPLANE_DP_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_port.h"

struct dp_fault_conf {
	uint32_t rx_loss_ppm, rx_corrupt_ppm, rx_duplicate_ppm, rx_reorder_ppm;
	uint32_t tx_loss_ppm, tx_corrupt_ppm, tx_duplicate_ppm;
	uint64_t seed;
};

struct dp_fault_stats {
	uint64_t rx_dropped, rx_corrupted, rx_duplicated, rx_reordered;
	uint64_t tx_dropped, tx_corrupted, tx_duplicated;
};

struct dp_fault {
	const struct dp_queue_ops *inner;
	void *inner_priv;           /* q->priv the inner ops expect */
	const struct dp_fault_conf *conf;
	uint64_t rng;
	struct rte_mbuf *held;      /* one frame held back to reorder */
	uint32_t held_polls;        /* empty polls since it was held */
	struct dp_fault_stats stats;
};

static inline bool dp_fault_enabled(const struct dp_fault_conf *c)
{
	return c->rx_loss_ppm || c->rx_corrupt_ppm || c->rx_duplicate_ppm ||
	       c->rx_reorder_ppm || c->tx_loss_ppm || c->tx_corrupt_ppm ||
	       c->tx_duplicate_ppm;
}

/* Wraps q's ops with fault injection; f must outlive q's use. */
void dp_fault_wrap(struct dp_queue *q, struct dp_fault *f,
		   const struct dp_fault_conf *conf, unsigned worker);
/* Frees a held frame (at shutdown). */
void dp_fault_fini(struct dp_fault *f);

#endif
