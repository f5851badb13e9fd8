/*
 * icmp.h: ICMP (RFC 792, RFC 1122 3.2.2) for one stack: echo replies and
 * rate-limited destination-unreachable errors.
 */
#ifndef DPMAIL_TCPSTACK_ICMP_H
#define DPMAIL_TCPSTACK_ICMP_H

#include <stdint.h>

#include <rte_ip.h>
#include <rte_mbuf.h>

struct stack;

/* IP protocol handler for ICMP; m's data starts at the Ethernet header. */
void icmp_input(struct stack *s, struct rte_mbuf *m,
		const struct rte_ipv4_hdr *ip, uint16_t l4_off,
		uint16_t l4_len);
/*
 * Sends a destination unreachable with code (RFC 792) about the datagram
 * whose IP header is ip (l3_len bytes of it available). Does not consume
 * the original. Rate-limited and never sent about broadcasts, ICMP errors
 * or non-initial fragments.
 */
void icmp_send_unreach(struct stack *s, const struct rte_ipv4_hdr *ip,
		       uint16_t l3_len, uint8_t code);

#endif
