/*
 * dp_fault.c: the fault-injecting dp_queue wrapper.
 */
#include "dataplane/dp_fault.h"

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

/* A wire corrupts frames after the checksums were computed: compute any
 * the port would have offloaded now, so the damage stays detectable. */
static void finalize_checksums(struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip;

	if (!(m->ol_flags & (RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_L4_MASK)) ||
	    rte_pktmbuf_data_len(m) < m->l2_len + m->l3_len + 8)
		return;
	ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, m->l2_len);
	if (m->ol_flags & RTE_MBUF_F_TX_IP_CKSUM) {
		ip->hdr_checksum = 0;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	}
	if ((m->ol_flags & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_TCP_CKSUM) {
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)
			((uint8_t *)ip + m->l3_len);
		th->cksum = 0;
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	} else if ((m->ol_flags & RTE_MBUF_F_TX_L4_MASK) ==
		   RTE_MBUF_F_TX_UDP_CKSUM) {
		struct rte_udp_hdr *uh = (struct rte_udp_hdr *)
			((uint8_t *)ip + m->l3_len);
		uh->dgram_cksum = 0;
		uh->dgram_cksum = rte_ipv4_udptcp_cksum(ip, uh);
	}
	m->ol_flags &= ~(RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_L4_MASK);
}

static uint32_t rnd(struct dp_fault *f)
{
	/* xorshift64*: cheap, seeded, reproducible per worker */
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return (uint32_t)((f->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static bool chance(struct dp_fault *f, uint32_t ppm)
{
	return ppm != 0 && rnd(f) % 1000000u < ppm;
}

/* Flips one bit past the Ethernet header, so the frame still reaches IP
 * or TCP and must be caught by a checksum. */
static void corrupt(struct dp_fault *f, struct rte_mbuf *m)
{
	uint32_t len = rte_pktmbuf_data_len(m);
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);

	if (len <= RTE_ETHER_HDR_LEN)
		return;
	p[RTE_ETHER_HDR_LEN + rnd(f) % (len - RTE_ETHER_HDR_LEN)] ^=
		(uint8_t)(1u << (rnd(f) % 8));
}

/* The inner ops run with the q->priv they were given (the fake port
 * keeps itself there), not ours. */
static uint16_t inner_rx(struct dp_queue *q, struct dp_fault *f,
			 struct rte_mbuf **pkts, uint16_t n)
{
	uint16_t r;

	q->priv = f->inner_priv;
	r = f->inner->rx(q, pkts, n);
	q->priv = f;
	return r;
}

static uint16_t inner_tx(struct dp_queue *q, struct dp_fault *f,
			 struct rte_mbuf **pkts, uint16_t n)
{
	uint16_t r;

	q->priv = f->inner_priv;
	r = f->inner->tx(q, pkts, n);
	q->priv = f;
	return r;
}

static uint16_t fault_rx(struct dp_queue *q, struct rte_mbuf **pkts,
			 uint16_t n)
{
	struct dp_fault *f = q->priv;
	const struct dp_fault_conf *c = f->conf;
	uint16_t got, out = 0, room = n;
	struct rte_mbuf *tmp[128];

	/* pkts holds n: every frame read, plus one held from an earlier
	 * call, must fit, so a held frame takes a place, and a duplicate is
	 * made only while what is still to come fits after it */
	if (f->held != NULL) {
		if (room == 0)
			return 0;
		room--;
	}
	if (room > 128)
		room = 128;
	got = room > 0 ? inner_rx(q, f, tmp, room) : 0;
	/* n == 1 with a frame held, or a quiet link: let the held frame go
	 * (after a while, so that it is still overtaken when traffic flows) */
	if (got == 0 && f->held != NULL && n > 0 &&
	    (room == 0 || ++f->held_polls >= 64)) {
		pkts[0] = f->held;
		f->held = NULL;
		return 1;
	}
	for (uint16_t i = 0; i < got; i++) {
		struct rte_mbuf *m = tmp[i];

		if (chance(f, c->rx_loss_ppm)) {
			f->stats.rx_dropped++;
			rte_pktmbuf_free(m);
			continue;
		}
		if (chance(f, c->rx_corrupt_ppm)) {
			f->stats.rx_corrupted++;
			corrupt(f, m);
			/* whatever the port verified no longer holds */
			m->ol_flags &= ~(RTE_MBUF_F_RX_IP_CKSUM_MASK |
					 RTE_MBUF_F_RX_L4_CKSUM_MASK);
		}
		if (f->held == NULL && chance(f, c->rx_reorder_ppm)) {
			f->stats.rx_reordered++;
			f->held = m; /* delivered after a later frame */
			f->held_polls = 0;
			continue;
		}
		pkts[out++] = m;
		if (out + (got - 1u - i) + (f->held != NULL) < n &&
		    chance(f, c->rx_duplicate_ppm)) {
			struct rte_mbuf *d = rte_pktmbuf_copy(m, m->pool, 0,
							      UINT32_MAX);
			if (d != NULL) {
				f->stats.rx_duplicated++;
				pkts[out++] = d;
			}
		}
		if (f->held != NULL && out < n) {
			pkts[out++] = f->held;
			f->held = NULL;
		}
	}
	return out;
}

static uint16_t fault_tx(struct dp_queue *q, struct rte_mbuf **pkts,
			 uint16_t n)
{
	struct dp_fault *f = q->priv;
	const struct dp_fault_conf *c = f->conf;
	struct rte_mbuf *keep[512];
	uint16_t nk = 0, sent;

	if (n > 256)
		n = 256;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];

		if (chance(f, c->tx_loss_ppm)) {
			f->stats.tx_dropped++;
			rte_pktmbuf_free(m); /* "sent", and lost on the wire */
			continue;
		}
		if (chance(f, c->tx_corrupt_ppm)) {
			f->stats.tx_corrupted++;
			finalize_checksums(m);
			corrupt(f, m);
		}
		keep[nk++] = m;
		if (chance(f, c->tx_duplicate_ppm)) {
			struct rte_mbuf *d = rte_pktmbuf_copy(m, m->pool, 0,
							      UINT32_MAX);
			if (d != NULL) {
				f->stats.tx_duplicated++;
				keep[nk++] = d;
			}
		}
	}
	sent = inner_tx(q, f, keep, nk);
	if (sent < nk)
		rte_pktmbuf_free_bulk(&keep[sent], nk - sent);
	return n; /* the caller's frames are all accounted for */
}

static const struct dp_queue_ops fault_ops = {
	.rx = fault_rx,
	.tx = fault_tx,
};

void dp_fault_wrap(struct dp_queue *q, struct dp_fault *f,
		   const struct dp_fault_conf *conf, unsigned worker)
{
	f->inner = q->ops;
	f->inner_priv = q->priv;
	f->conf = conf;
	f->rng = (conf->seed ? conf->seed : 0x9E3779B97F4A7C15ULL) +
		 0x1000193ULL * (worker + 1);
	f->held = NULL;
	q->ops = &fault_ops;
	q->priv = f;
}

void dp_fault_fini(struct dp_fault *f)
{
	if (f->held != NULL) {
		rte_pktmbuf_free(f->held);
		f->held = NULL;
	}
}
