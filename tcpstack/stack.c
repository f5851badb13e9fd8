/*
 * stack.c: one stack instance: set-up, the input burst, the TX burst and
 * the timer tick. The layers live in eth.c, arp.c, ipv4.c and icmp.c.
 */
#include "tcpstack/stack.h"

#include <errno.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ethdev.h>

#include "tcpstack/eth.h"
#include "tcpstack/icmp.h"
#include "tcpstack/tcp_internal.h"
#include "tcpstack/udp.h"

void stack_conf_defaults(struct stack_conf *c)
{
	memset(c, 0, sizeof(*c));
	/* 198.18.0.2; RTE_IPV4 shifts a signed int, which UBSan rejects */
	c->addr = rte_cpu_to_be_32(198u << 24 | 18u << 16 | 2u);
	c->prefix_len = 24;
	c->arp_entries = 1024;
	c->arp_timeout_ms = 60000;
	c->arp_retry_ms = 1000;
	c->arp_retries = 3;
	c->arp_hold = 4;
	c->icmp_rate = 100;
	c->icmp_burst = 50;
	c->tcp_max_conns = 65536;
	c->tcp_sndbuf = 256 * 1024;
	c->tcp_rcvbuf = 256 * 1024;
	c->tcp_syn_backlog = 1024;
	c->tcp_msl_ms = 30000;
	c->tcp_rto_min_ms = 200;
	c->tcp_rto_max_ms = 120000;
	c->tcp_rto_init_ms = 1000;
	c->tcp_retries = 15;
	c->tcp_syn_retries = 6;
	c->tcp_delack_ms = 40;
	c->tcp_fin_timeout_ms = 60000;
	c->tcp_timestamps = true;
	c->tcp_sack = true;
	c->tcp_wscale = true;
	c->tcp_keepalive = false;
	c->tcp_keepalive_idle_ms = 7200 * 1000;
	c->tcp_keepalive_intvl_ms = 75 * 1000;
	c->tcp_keepalive_probes = 9;
	c->tcp_max_timewait = 32768;
	c->tcp_challenge_ack_limit = 1000;
	c->tcp_sndbuf_pool_pct = 50;
}

int stack_init(struct stack *s, unsigned id, const struct stack_conf *conf,
	       struct dp_queue *q, bool announce, uint64_t now_ms)
{
	int rc;

	if (conf->arp_hold > ARP_HOLD_MAX || conf->arp_entries == 0 ||
	    conf->arp_retries == 0 || conf->arp_retries > 255 ||
	    conf->prefix_len > 32)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->conf = *conf;
	s->id = id;
	s->nworkers = 1;
	s->q = q;
	s->mac = q->mac;
	s->now_ms = now_ms;
	s->netmask = conf->prefix_len == 0 ? 0 :
		rte_cpu_to_be_32(~0u << (32 - conf->prefix_len));
	s->tx_ip_cksum = (q->tx_offloads & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
	s->tx_l4_cksum = (q->tx_offloads & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) != 0;
	s->rx_l4_cksum = (q->rx_offloads & RTE_ETH_RX_OFFLOAD_TCP_CKSUM) != 0;
	s->ip_id = (uint16_t)(rte_rand() & 0xffff);
	ratelimit_init(&s->icmp_rl, conf->icmp_rate, conf->icmp_burst, now_ms);
	s->proto[IPPROTO_ICMP] = icmp_input;
	s->proto[IPPROTO_TCP] = tcp_input;
	s->proto[IPPROTO_UDP] = udp_input;
	tw_init(&s->tw, now_ms, s);
	rc = arp_init(s);
	if (rc != 0)
		return rc;
	rc = tcp_stack_init(s);
	if (rc != 0) {
		arp_fini(s);
		return rc;
	}
	if (announce) {
		s->garp_left = 3; /* like arping -U -c 3 after an address change */
		s->garp_next_ms = now_ms;
	}
	return 0;
}

void stack_set_steering(struct stack *s, unsigned nworkers, uint32_t seed)
{
	s->nworkers = nworkers;
	s->steer_seed = seed;
	if (s->tcp != NULL)
		tcp_set_sq_budget(s, nworkers);
}

void stack_fini(struct stack *s)
{
	tcp_stack_fini(s);
	udp_fini(s);
	for (uint16_t i = 0; i < s->ntx; i++)
		rte_pktmbuf_free(s->tx[i]);
	s->ntx = 0;
	arp_fini(s);
}

void stack_input(struct stack *s, struct rte_mbuf **pkts, uint16_t n)
{
	s->cnt.port_rx_packets += n;
	for (uint16_t i = 0; i < n; i++) {
		if (i + 1 < n)
			rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
		eth_input(s, pkts[i]);
	}
}

void stack_flush(struct stack *s)
{
	uint16_t sent;

	tcp_flush(s);
	if (s->ntx == 0)
		return;
	sent = dp_tx(s->q, s->tx, s->ntx);
	s->cnt.port_tx_packets += sent;
	if (sent < s->ntx) {
		/* a full TX ring: drop rather than stall the worker */
		s->cnt.port_tx_dropped += s->ntx - sent;
		rte_pktmbuf_free_bulk(&s->tx[sent], s->ntx - sent);
	}
	s->ntx = 0;
}

void stack_xmit(struct stack *s, struct rte_mbuf *m)
{
	if (s->ntx == STACK_TX_BURST)
		stack_flush(s);
	s->tx[s->ntx++] = m;
}

void stack_tick(struct stack *s, uint64_t now_ms)
{
	s->now_ms = now_ms;
	if (s->garp_left > 0 && now_ms >= s->garp_next_ms) {
		arp_announce(s);
		s->garp_left--;
		s->garp_next_ms = now_ms + 1000;
	}
	arp_tick(s);
	tw_advance(&s->tw, now_ms);
	tcp_tick(s);
}
