/*
 * udp.h: UDP (RFC 768) for one stack, for the DNS resolver and the like.
 *
 * A socket is a local port bound with a receive callback; every callback
 * runs on the stack's worker, and the data pointer is valid only during
 * the call. With several workers, a datagram reaches the worker that owns
 * its flow (dp_steer.h), so a socket that talks to one peer should be
 * bound with port 0 and that peer: the stack then picks a port whose
 * replies come back to this worker. Datagrams to unbound ports draw an
 * ICMP port unreachable (rate-limited), as RFC 1122 3.2.2.1 asks.
 */
#ifndef DPMAIL_TCPSTACK_UDP_H
#define DPMAIL_TCPSTACK_UDP_H

#include <stdint.h>

#include <rte_ip.h>
#include <rte_mbuf.h>

struct stack;

typedef void (*udp_recv_fn)(struct stack *s, void *user, uint32_t src_ip,
			    uint16_t src_port, uint16_t dst_port,
			    const uint8_t *data, uint16_t len);

/*
 * Binds port (host order) on s. port 0 picks a free ephemeral port that
 * this worker owns for traffic with peer_ip:peer_port. Returns the port
 * (> 0), or -EADDRINUSE, -EADDRNOTAVAIL, -ENOMEM.
 */
int udp_bind(struct stack *s, uint16_t port, uint32_t peer_ip,
	     uint16_t peer_port, udp_recv_fn fn, void *user);
void udp_unbind(struct stack *s, uint16_t port);
/* Sends one datagram. 0, -EMSGSIZE (beyond the MTU), -ENOMEM. */
int udp_sendto(struct stack *s, uint16_t src_port, uint32_t dst_ip,
	       uint16_t dst_port, const void *data, uint16_t len);

/* Stack internals: the IP protocol handler and teardown. */
void udp_input(struct stack *s, struct rte_mbuf *m,
	       const struct rte_ipv4_hdr *ip, uint16_t l4_off, uint16_t l4_len);
void udp_fini(struct stack *s);

#endif
