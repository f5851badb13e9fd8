/*
 * eth.h: Ethernet II framing for one stack.
 */
#ifndef DPMAIL_TCPSTACK_ETH_H
#define DPMAIL_TCPSTACK_ETH_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

struct stack;

/* Classifies one received frame and hands it to ARP or IPv4. Consumes m. */
void eth_input(struct stack *s, struct rte_mbuf *m);
/*
 * Prepends an Ethernet header (our MAC as source) and queues m for TX.
 * Returns 0, or -ENOSPC (no headroom; m freed and counted).
 */
int eth_output(struct stack *s, struct rte_mbuf *m,
	       const struct rte_ether_addr *dst, uint16_t ether_type);

#endif
