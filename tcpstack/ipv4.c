/*
 * ipv4.c: IPv4 input (RFC 791, RFC 1122 3.2.1) and output.
 *
 * Input validates every header field a peer controls before anything
 * reads past it, drops and counts what fails, and hands good datagrams to
 * the protocol handler registered in s->proto[]. Fragments are dropped:
 * TCP with MSS never needs them, and reassembly is an attack surface.
 */
#include "tcpstack/ipv4.h"

#include <string.h>

#include <rte_ethdev.h>

#include "tcpstack/arp.h"
#include "tcpstack/eth.h"
#include "tcpstack/icmp.h"
#include "tcpstack/stack.h"

#define ETH_LEN ((uint16_t)sizeof(struct rte_ether_hdr))
#define IPOPT_EOL 0
#define IPOPT_NOP 1

bool ipv4_is_broadcast(const struct stack *s, uint32_t addr)
{
	if (addr == RTE_BE32(0xffffffffu))
		return true;
	/* subnet-directed broadcast; a /31 or /32 has none (RFC 3021) */
	return s->conf.prefix_len < 31 &&
	       addr == ((s->conf.addr & s->netmask) | ~s->netmask);
}

/* RFC 1122 3.2.1.3: sources a host must discard. */
static bool bad_source(const struct stack *s, uint32_t src)
{
	uint32_t h = rte_be_to_cpu_32(src);

	return h == 0 || (h >> 24) == 127 || (h & 0xf0000000u) >= 0xe0000000u ||
	       ipv4_is_broadcast(s, src) || src == s->conf.addr;
}

/* Option TLVs (RFC 791 3.1): every length must stay inside the header. */
static bool options_valid(const uint8_t *opt, unsigned len)
{
	unsigned i = 0;

	while (i < len) {
		if (opt[i] == IPOPT_EOL)
			return true;
		if (opt[i] == IPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= len || opt[i + 1] < 2 || i + opt[i + 1] > len)
			return false;
		i += opt[i + 1];
	}
	return true;
}

void ipv4_input(struct stack *s, struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip;
	uint16_t len, ihl, tot;
	uint64_t ck;
	stack_proto_handler h;

	s->cnt.ip_rx++;
	if (!rte_pktmbuf_is_contiguous(m) && rte_pktmbuf_linearize(m) != 0) {
		s->cnt.ip_bad_length++;
		goto drop;
	}
	len = rte_pktmbuf_data_len(m);
	if (len < ETH_LEN + sizeof(*ip)) {
		s->cnt.ip_truncated++;
		goto drop;
	}
	ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, ETH_LEN);
	if ((ip->version_ihl >> 4) != 4) {
		s->cnt.ip_bad_version++;
		goto drop;
	}
	ihl = (uint16_t)((ip->version_ihl & 0x0f) * 4);
	if (ihl < sizeof(*ip)) {
		s->cnt.ip_bad_ihl++;
		goto drop;
	}
	if (ETH_LEN + ihl > len) {
		s->cnt.ip_truncated++;
		goto drop;
	}
	tot = rte_be_to_cpu_16(ip->total_length);
	if (tot < ihl || ETH_LEN + tot > len) {
		s->cnt.ip_bad_length++;
		goto drop;
	}
	ck = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
	if (ck == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
	    (ck != RTE_MBUF_F_RX_IP_CKSUM_GOOD &&
	     rte_raw_cksum(ip, ihl) != 0xffff)) {
		s->cnt.ip_bad_checksum++;
		goto drop;
	}
	/*
	 * RFC 1122 3.2.1.7 lets a host accept TTL 1, but no conforming router
	 * or host emits TTL 0 (RFC 791, 1812): such a datagram is forged.
	 */
	if (ip->time_to_live == 0) {
		s->cnt.ip_ttl_zero++;
		goto drop;
	}
	if (ip->fragment_offset &
	    RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
		s->cnt.ip_fragment++;
		goto drop;
	}
	if (bad_source(s, ip->src_addr)) {
		s->cnt.ip_bad_source++;
		goto drop;
	}
	if (ip->dst_addr != s->conf.addr && !ipv4_is_broadcast(s, ip->dst_addr)) {
		/* includes multicast: we join no group */
		s->cnt.ip_not_for_us++;
		goto drop;
	}
	if (ihl > sizeof(*ip)) {
		if (!options_valid((const uint8_t *)(ip + 1),
				   ihl - (unsigned)sizeof(*ip))) {
			s->cnt.ip_bad_options++;
			goto drop;
		}
		/* valid options are accepted and ignored (RFC 1122 3.2.1.8) */
		s->cnt.ip_options++;
	}
	/* Ethernet pads short frames: the IP length is the truth */
	if (ETH_LEN + tot < len)
		rte_pktmbuf_trim(m, (uint16_t)(len - ETH_LEN - tot));

	h = s->proto[ip->next_proto_id];
	if (h != NULL) {
		h(s, m, ip, (uint16_t)(ETH_LEN + ihl), (uint16_t)(tot - ihl));
		return;
	}
	s->cnt.ip_unknown_proto++;
	if (!ipv4_is_broadcast(s, ip->dst_addr))
		icmp_send_unreach(s, ip, tot, 2 /* protocol unreachable */);
drop:
	rte_pktmbuf_free(m);
}

void ipv4_fill_header(struct stack *s, struct rte_ipv4_hdr *ip, uint32_t dst,
		      uint8_t proto, uint16_t total_len)
{
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16(total_len);
	ip->packet_id = rte_cpu_to_be_16(s->ip_id++);
	ip->fragment_offset = 0;
	ip->time_to_live = 64;
	ip->next_proto_id = proto;
	ip->hdr_checksum = 0;
	ip->src_addr = s->conf.addr;
	ip->dst_addr = dst;
}

void ipv4_output(struct stack *s, struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod(m, struct rte_ipv4_hdr *);
	uint32_t dst = ip->dst_addr, nh;

	ip->hdr_checksum = 0;
	if (s->tx_ip_cksum) {
		m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
		m->l2_len = ETH_LEN;
		m->l3_len = rte_ipv4_hdr_len(ip);
	} else {
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	}
	if (ipv4_is_broadcast(s, dst)) {
		static const struct rte_ether_addr bcast = {
			.addr_bytes = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }
		};
		s->cnt.ip_tx++;
		eth_output(s, m, &bcast, RTE_ETHER_TYPE_IPV4);
		return;
	}
	if ((dst & s->netmask) == (s->conf.addr & s->netmask)) {
		nh = dst;
	} else if (s->conf.gateway != 0) {
		nh = s->conf.gateway;
	} else {
		s->cnt.ip_no_route++;
		rte_pktmbuf_free(m);
		return;
	}
	s->cnt.ip_tx++;
	arp_output(s, m, nh);
}
