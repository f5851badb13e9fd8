/*
 * ipv4.h: IPv4 input validation and dispatch, and output with routing.
 */
#ifndef DPMAIL_TCPSTACK_IPV4_H
#define DPMAIL_TCPSTACK_IPV4_H

#include <stdint.h>

#include <rte_ip.h>
#include <rte_mbuf.h>

struct stack;

/* An IPv4 frame arrived (eth header still in front). Consumes m. */
void ipv4_input(struct stack *s, struct rte_mbuf *m);
/*
 * Sends m, whose data starts at a complete IPv4 header with every field
 * but the checksum filled in. Picks the next hop, resolves it and frames
 * it. Consumes m.
 */
void ipv4_output(struct stack *s, struct rte_mbuf *m);
/* Fills a fresh IPv4 header from us to dst (checksum left to output). */
void ipv4_fill_header(struct stack *s, struct rte_ipv4_hdr *ip, uint32_t dst,
		      uint8_t proto, uint16_t total_len);
/* True if addr (network order) is a broadcast address for our subnet. */
bool ipv4_is_broadcast(const struct stack *s, uint32_t addr);

#endif
