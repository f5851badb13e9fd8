/*
 * tcp_icmp.c: ICMP errors about our TCP connections (RFC 1122 4.2.3.9,
 * RFC 5927, RFC 1191).
 *
 * An error is believed only if the TCP header it quotes belongs to a
 * connection of ours and its sequence number is one we have sent and not
 * yet seen acknowledged (RFC 5927 4.1); anything else is counted and
 * ignored, so blind ICMP cannot reset or slow a connection. Unreachables
 * are hard errors only while connecting; on an established connection
 * they are soft, as in Linux. "Fragmentation needed" lowers the MSS.
 */
#include <rte_icmp.h>
#include <rte_tcp.h>

#include "tcpstack/tcp_internal.h"

#define ICMP_UNREACH_NEEDFRAG 4
#define MIN_PMTU_MSS 536u

void tcp_icmp_error(struct stack *s, const struct rte_ipv4_hdr *inner,
		    uint16_t inner_len, uint8_t type, uint8_t code,
		    uint16_t mtu)
{
	uint16_t ihl = rte_ipv4_hdr_len(inner);
	const uint8_t *p = (const uint8_t *)inner + ihl;
	struct tcp_conn *c;
	uint32_t seq;

	if (inner_len < ihl + 8u || inner->src_addr != s->conf.addr) {
		s->cnt.tcp_icmp_ignored++;
		return;
	}
	/* the quoted segment is one we sent: its source is our side */
	c = tcp_conn_lookup(s, inner->dst_addr, (uint16_t)(p[2] << 8 | p[3]),
			    inner->src_addr, (uint16_t)(p[0] << 8 | p[1]));
	seq = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 |
	      (uint32_t)p[6] << 8 | p[7];
	if (c == NULL || (c->flags & TF_ZOMBIE) ||
	    SEQ_LT(seq, c->snd_una) || SEQ_GEQ(seq, c->snd_max)) {
		s->cnt.tcp_icmp_ignored++;
		return;
	}
	s->cnt.tcp_icmp_errors++;
	if (type != 3)
		return; /* time exceeded, parameter problem: soft */
	if (code == ICMP_UNREACH_NEEDFRAG) {
		uint32_t mss;
		if (mtu < 68 || mtu >= s->q->mtu)
			return;
		mss = (uint32_t)mtu - 40u - ((c->flags & TF_TS) ? 12u : 0u);
		if (mss < MIN_PMTU_MSS)
			mss = MIN_PMTU_MSS;
		if (mss < c->mss) {
			s->cnt.tcp_pmtu_updates++;
			c->mss = (uint16_t)mss;
			/* resend what did not fit, now in smaller pieces */
			c->snd_nxt = c->snd_una;
			tcp_conn_want_output(c);
		}
		return;
	}
	if (c->state == TCPS_SYN_SENT) {
		s->cnt.tcp_connect_failed++;
		tcp_conn_drop(c, TCP_CLOSE_UNREACHABLE);
	}
}
