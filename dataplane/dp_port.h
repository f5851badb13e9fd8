/*
 * dp_port.h: the seam between the stack and the NIC.
 *
 * A dp_queue is one RX/TX queue pair a worker owns. The stack only ever
 * calls dp_rx()/dp_tx() on it, so the same stack code runs over a DPDK
 * ethdev queue (dp_ethdev.c) or an in-memory fake (dp_fakeport.c) in unit
 * tests and benchmarks. Ownership: dp_tx() takes the mbufs it accepts; the
 * caller still owns (and must free or retry) the ones it did not.
 */
#ifndef DPMAIL_DATAPLANE_DP_PORT_H
#define DPMAIL_DATAPLANE_DP_PORT_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

struct dp_queue;

struct dp_queue_ops {
	uint16_t (*rx)(struct dp_queue *q, struct rte_mbuf **pkts, uint16_t n);
	uint16_t (*tx)(struct dp_queue *q, struct rte_mbuf **pkts, uint16_t n);
};

struct dp_queue {
	const struct dp_queue_ops *ops;
	void *priv;               /* the fake port, or NULL for ethdev */
	uint16_t port_id;
	uint16_t queue_id;
	uint64_t tx_offloads;     /* RTE_ETH_TX_OFFLOAD_* enabled on the port */
	uint64_t rx_offloads;     /* RTE_ETH_RX_OFFLOAD_* enabled on the port */
	struct rte_ether_addr mac;
	uint16_t mtu;
	struct rte_mempool *pool; /* where this queue's worker allocates */
};

static inline uint16_t dp_rx(struct dp_queue *q, struct rte_mbuf **pkts,
			     uint16_t n)
{
	return q->ops->rx(q, pkts, n);
}

static inline uint16_t dp_tx(struct dp_queue *q, struct rte_mbuf **pkts,
			     uint16_t n)
{
	return q->ops->tx(q, pkts, n);
}

#endif
