/*
 * eth.c: Ethernet II input classification and output framing.
 *
 * Accepts frames addressed to our MAC or to broadcast; everything else
 * (other unicast, multicast we never joined) is counted and dropped.
 * VLAN tags and IPv6 are not served yet and get counters of their own so
 * an operator can tell them from garbage.
 */
#include "tcpstack/eth.h"

#include <errno.h>

#include "tcpstack/arp.h"
#include "tcpstack/ipv4.h"
#include "tcpstack/stack.h"

void eth_input(struct stack *s, struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eh;

	s->cnt.eth_rx++;
	if (rte_pktmbuf_data_len(m) < sizeof(*eh)) {
		s->cnt.eth_truncated++;
		rte_pktmbuf_free(m);
		return;
	}
	eh = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	if (!rte_is_same_ether_addr(&eh->dst_addr, &s->mac) &&
	    !rte_is_broadcast_ether_addr(&eh->dst_addr)) {
		s->cnt.eth_not_for_us++;
		rte_pktmbuf_free(m);
		return;
	}
	switch (eh->ether_type) {
	case RTE_BE16(RTE_ETHER_TYPE_IPV4):
		ipv4_input(s, m);
		return;
	case RTE_BE16(RTE_ETHER_TYPE_ARP):
		arp_input(s, m);
		return;
	case RTE_BE16(RTE_ETHER_TYPE_IPV6):
		s->cnt.eth_ipv6++;
		break;
	case RTE_BE16(RTE_ETHER_TYPE_VLAN):
	case RTE_BE16(RTE_ETHER_TYPE_QINQ):
		s->cnt.eth_vlan++;
		break;
	default:
		s->cnt.eth_unknown_type++;
		break;
	}
	rte_pktmbuf_free(m);
}

int eth_output(struct stack *s, struct rte_mbuf *m,
	       const struct rte_ether_addr *dst, uint16_t ether_type)
{
	struct rte_ether_hdr *eh;

	eh = (struct rte_ether_hdr *)rte_pktmbuf_prepend(m, sizeof(*eh));
	if (eh == NULL) {
		s->cnt.port_tx_dropped++;
		rte_pktmbuf_free(m);
		return -ENOSPC;
	}
	rte_ether_addr_copy(dst, &eh->dst_addr);
	rte_ether_addr_copy(&s->mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(ether_type);
	m->l2_len = sizeof(*eh);
	stack_xmit(s, m);
	return 0;
}
