/*
 * udp.c: UDP input validation and demultiplexing, and output.
 */
#include "tcpstack/udp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_udp.h>

#include "dataplane/dp_steer.h"
#include "tcpstack/icmp.h"
#include "tcpstack/ipv4.h"
#include "tcpstack/stack.h"

struct udp_sock {
	struct udp_sock *next;
	uint16_t port;
	udp_recv_fn fn;
	void *user;
};

static struct udp_sock *find(const struct stack *s, uint16_t port)
{
	for (struct udp_sock *u = s->udp; u != NULL; u = u->next)
		if (u->port == port)
			return u;
	return NULL;
}

int udp_bind(struct stack *s, uint16_t port, uint32_t peer_ip,
	     uint16_t peer_port, udp_recv_fn fn, void *user)
{
	struct udp_sock *u;

	if (fn == NULL)
		return -EINVAL;
	if (port == 0) {
		uint32_t span = STACK_EPH_HI - STACK_EPH_LO + 1;
		uint32_t start = rte_rand() % span;
		for (uint32_t i = 0; i < span && port == 0; i++) {
			uint16_t p = (uint16_t)(STACK_EPH_LO + (start + i) % span);
			if (find(s, p) == NULL &&
			    dp_steer_owner(s->steer_seed, s->nworkers, peer_ip,
					   peer_port, s->conf.addr, p) == s->id)
				port = p;
		}
		if (port == 0)
			return -EADDRNOTAVAIL;
	} else if (find(s, port) != NULL) {
		return -EADDRINUSE;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->port = port;
	u->fn = fn;
	u->user = user;
	u->next = s->udp;
	s->udp = u;
	return port;
}

void udp_unbind(struct stack *s, uint16_t port)
{
	for (struct udp_sock **pp = &s->udp; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->port == port) {
			struct udp_sock *u = *pp;
			*pp = u->next;
			free(u);
			return;
		}
}

void udp_fini(struct stack *s)
{
	while (s->udp != NULL) {
		struct udp_sock *u = s->udp;
		s->udp = u->next;
		free(u);
	}
}

void udp_input(struct stack *s, struct rte_mbuf *m,
	       const struct rte_ipv4_hdr *ip, uint16_t l4_off, uint16_t l4_len)
{
	const struct rte_udp_hdr *uh;
	struct udp_sock *u;
	uint16_t ulen;
	uint64_t ck;

	s->cnt.udp_rx++;
	if (l4_len < sizeof(*uh)) {
		s->cnt.udp_truncated++;
		goto drop;
	}
	uh = rte_pktmbuf_mtod_offset(m, const struct rte_udp_hdr *, l4_off);
	ulen = rte_be_to_cpu_16(uh->dgram_len);
	/* the UDP length must say what IP says (RFC 768); anything else is a
	 * lie one of them tells */
	if (ulen < sizeof(*uh) || ulen != l4_len) {
		s->cnt.udp_bad_length++;
		goto drop;
	}
	/* a zero checksum means "none" in IPv4 (RFC 768) */
	ck = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
	if (uh->dgram_cksum != 0 &&
	    (ck == RTE_MBUF_F_RX_L4_CKSUM_BAD ||
	     (ck != RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
	      rte_ipv4_udptcp_cksum(ip, uh) != 0xffff &&
	      rte_ipv4_udptcp_cksum(ip, uh) != 0))) {
		s->cnt.udp_bad_checksum++;
		goto drop;
	}
	u = find(s, rte_be_to_cpu_16(uh->dst_port));
	if (u == NULL) {
		s->cnt.udp_no_port++;
		if (!ipv4_is_broadcast(s, ip->dst_addr))
			icmp_send_unreach(s, ip, rte_be_to_cpu_16(ip->total_length),
					  3 /* port unreachable */);
		goto drop;
	}
	u->fn(s, u->user, ip->src_addr, rte_be_to_cpu_16(uh->src_port),
	      u->port, (const uint8_t *)(uh + 1),
	      (uint16_t)(ulen - sizeof(*uh)));
drop:
	rte_pktmbuf_free(m);
}

int udp_sendto(struct stack *s, uint16_t src_port, uint32_t dst_ip,
	       uint16_t dst_port, const void *data, uint16_t len)
{
	struct rte_ipv4_hdr *ip;
	struct rte_udp_hdr *uh;
	struct rte_mbuf *m;
	uint16_t tot = (uint16_t)(sizeof(*ip) + sizeof(*uh) + len);

	if ((uint32_t)len + sizeof(*ip) + sizeof(*uh) > s->q->mtu) {
		s->cnt.udp_tx_too_big++;
		return -EMSGSIZE; /* we never fragment */
	}
	m = rte_pktmbuf_alloc(s->q->pool);
	if (m == NULL) {
		s->cnt.port_alloc_failed++;
		return -ENOMEM;
	}
	ip = (struct rte_ipv4_hdr *)rte_pktmbuf_append(m, tot);
	if (ip == NULL) {
		rte_pktmbuf_free(m);
		return -ENOMEM;
	}
	ipv4_fill_header(s, ip, dst_ip, IPPROTO_UDP, tot);
	uh = (struct rte_udp_hdr *)(ip + 1);
	uh->src_port = rte_cpu_to_be_16(src_port);
	uh->dst_port = rte_cpu_to_be_16(dst_port);
	uh->dgram_len = rte_cpu_to_be_16((uint16_t)(sizeof(*uh) + len));
	uh->dgram_cksum = 0;
	memcpy(uh + 1, data, len);
	if (s->tx_l4_cksum) {
		m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_UDP_CKSUM;
		m->l2_len = sizeof(struct rte_ether_hdr);
		m->l3_len = sizeof(*ip);
		uh->dgram_cksum = rte_ipv4_phdr_cksum(ip, m->ol_flags);
	} else {
		uh->dgram_cksum = rte_ipv4_udptcp_cksum(ip, uh);
	}
	s->cnt.udp_tx++;
	ipv4_output(s, m);
	return 0;
}
