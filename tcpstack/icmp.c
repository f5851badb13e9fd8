/*
 * icmp.c: ICMP echo (RFC 792) and destination unreachable errors.
 *
 * Echo requests are answered in place in the same mbuf. Errors are
 * limited by a token bucket per stack (RFC 1812 4.3.2.8) and are never
 * sent about broadcasts or other ICMP errors (RFC 1122 3.2.2).
 */
#include "tcpstack/icmp.h"

#include <string.h>

#include <rte_icmp.h>

#include "tcpstack/ipv4.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp_internal.h"

#define ETH_LEN ((uint16_t)sizeof(struct rte_ether_hdr))
#define ICMP_ERR_MAX_IP 576 /* RFC 1812 4.3.2.3: error datagrams fit 576 */

static bool icmp_type_is_error(uint8_t type)
{
	/* 3 unreachable, 4 source quench, 5 redirect, 11 time exceeded,
	 * 12 parameter problem */
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

static void echo_reply(struct stack *s, struct rte_mbuf *m,
		       const struct rte_ipv4_hdr *req, uint16_t l4_len)
{
	uint16_t ihl = rte_ipv4_hdr_len(req);
	uint32_t peer = req->src_addr;
	uint8_t tos = req->type_of_service;
	struct rte_ipv4_hdr *ip;
	struct rte_icmp_hdr *ic;

	/* Drop the Ethernet header and any IP options: the reply carries a
	 * plain 20-byte header in front of the unchanged ICMP message. */
	rte_pktmbuf_adj(m, (uint16_t)(ETH_LEN + ihl - sizeof(*ip)));
	ip = rte_pktmbuf_mtod(m, struct rte_ipv4_hdr *);
	ipv4_fill_header(s, ip, peer, IPPROTO_ICMP,
			 (uint16_t)(sizeof(*ip) + l4_len));
	ip->type_of_service = tos;
	ic = (struct rte_icmp_hdr *)(ip + 1);
	ic->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	ic->icmp_code = 0;
	ic->icmp_cksum = 0;
	ic->icmp_cksum = (uint16_t)~rte_raw_cksum(ic, l4_len);
	m->ol_flags = 0;
	s->cnt.icmp_tx_echo_reply++;
	ipv4_output(s, m);
}

void icmp_input(struct stack *s, struct rte_mbuf *m,
		const struct rte_ipv4_hdr *ip, uint16_t l4_off, uint16_t l4_len)
{
	const struct rte_icmp_hdr *ic;

	s->cnt.icmp_rx++;
	if (l4_len < sizeof(*ic)) {
		s->cnt.icmp_truncated++;
		goto drop;
	}
	ic = rte_pktmbuf_mtod_offset(m, const struct rte_icmp_hdr *, l4_off);
	if (rte_raw_cksum(ic, l4_len) != 0xffff) {
		s->cnt.icmp_bad_checksum++;
		goto drop;
	}
	if (icmp_type_is_error(ic->icmp_type) && l4_len >= sizeof(*ic) + 20) {
		const struct rte_ipv4_hdr *in =
			(const struct rte_ipv4_hdr *)(ic + 1);
		uint16_t in_len = (uint16_t)(l4_len - sizeof(*ic));
		s->cnt.icmp_rx_other++; /* every type but echo request */
		s->cnt.icmp_rx_error++;
		if ((in->version_ihl >> 4) == 4 &&
		    rte_ipv4_hdr_len(in) >= sizeof(*in) &&
		    in->next_proto_id == IPPROTO_TCP)
			tcp_icmp_error(s, in, in_len, ic->icmp_type,
				       ic->icmp_code,
				       rte_be_to_cpu_16(ic->icmp_seq_nb));
		goto drop;
	}
	if (ic->icmp_type != RTE_IP_ICMP_ECHO_REQUEST) {
		s->cnt.icmp_rx_other++;
		goto drop;
	}
	s->cnt.icmp_rx_echo_request++;
	if (ipv4_is_broadcast(s, ip->dst_addr)) {
		/* smurf amplification: like Linux's icmp_echo_ignore_broadcasts */
		s->cnt.icmp_echo_broadcast_ignored++;
		goto drop;
	}
	echo_reply(s, m, ip, l4_len);
	return;
drop:
	rte_pktmbuf_free(m);
}

void icmp_send_unreach(struct stack *s, const struct rte_ipv4_hdr *orig,
		       uint16_t l3_len, uint8_t code)
{
	uint16_t ihl = rte_ipv4_hdr_len(orig), quote;
	struct rte_ipv4_hdr *ip;
	struct rte_icmp_hdr *ic;
	struct rte_mbuf *m;

	if (ipv4_is_broadcast(s, orig->dst_addr) ||
	    (orig->fragment_offset & RTE_BE16(RTE_IPV4_HDR_OFFSET_MASK)))
		return;
	if (orig->next_proto_id == IPPROTO_ICMP && l3_len > ihl &&
	    icmp_type_is_error(((const uint8_t *)orig)[ihl]))
		return;
	if (!ratelimit_allow(&s->icmp_rl, s->now_ms)) {
		s->cnt.icmp_ratelimited++;
		return;
	}
	m = rte_pktmbuf_alloc(s->q->pool);
	if (m == NULL) {
		s->cnt.port_alloc_failed++;
		return;
	}
	/* RFC 1812 4.3.2.3: quote as much as fits in 576 bytes */
	quote = l3_len;
	if (quote > ICMP_ERR_MAX_IP - sizeof(*ip) - sizeof(*ic))
		quote = ICMP_ERR_MAX_IP - sizeof(*ip) - sizeof(*ic);
	ip = (struct rte_ipv4_hdr *)rte_pktmbuf_append(
		m, (uint16_t)(sizeof(*ip) + sizeof(*ic) + quote));
	if (ip == NULL) {
		s->cnt.port_alloc_failed++;
		rte_pktmbuf_free(m);
		return;
	}
	ipv4_fill_header(s, ip, orig->src_addr, IPPROTO_ICMP,
			 (uint16_t)(sizeof(*ip) + sizeof(*ic) + quote));
	ic = (struct rte_icmp_hdr *)(ip + 1);
	ic->icmp_type = 3;
	ic->icmp_code = code;
	ic->icmp_cksum = 0;
	ic->icmp_ident = 0; /* "unused" word; next-hop MTU for code 4 */
	ic->icmp_seq_nb = 0;
	memcpy(ic + 1, orig, quote);
	ic->icmp_cksum = (uint16_t)~rte_raw_cksum(ic, sizeof(*ic) + quote);
	s->cnt.icmp_tx_unreach++;
	ipv4_output(s, m);
}
