/*
 * dp_fakeport.h: an in-memory port for unit tests and benchmarks.
 *
 * Frames injected with dp_fake_inject() come out of dp_rx(); frames the
 * stack sends with dp_tx() are kept in order until the test takes them
 * with dp_fake_take_tx(). tx_room limits how many more frames dp_tx
 * accepts, to simulate a full TX ring. Owns every mbuf it holds; 
 * dp_fake_fini() frees them.
 */
#ifndef DPMAIL_DATAPLANE_DP_FAKEPORT_H
#define DPMAIL_DATAPLANE_DP_FAKEPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/dp_port.h"

#define DP_FAKE_QLEN 1024

struct dp_fakeport {
	struct dp_queue q;
	struct rte_mbuf *rxq[DP_FAKE_QLEN];
	unsigned rx_head, rx_tail;
	struct rte_mbuf *txq[DP_FAKE_QLEN];
	unsigned tx_head, tx_tail;
	unsigned tx_room; /* frames dp_tx may still accept; UINT_MAX = any */
	uint64_t tx_total;
};

/* Sets up the fake with a MAC and an mbuf pool; rx/tx offloads none. */
void dp_fake_init(struct dp_fakeport *fp, struct rte_mempool *pool,
		  const struct rte_ether_addr *mac, uint16_t mtu);
/* Copies a frame into a fresh mbuf and queues it for RX. 0 or -ENOMEM. */
int dp_fake_inject(struct dp_fakeport *fp, const void *frame, size_t len);
/* Next transmitted frame (caller frees it), or NULL. */
struct rte_mbuf *dp_fake_take_tx(struct dp_fakeport *fp);
/* Frames waiting to be taken. */
unsigned dp_fake_tx_pending(const struct dp_fakeport *fp);
void dp_fake_fini(struct dp_fakeport *fp);

#endif
