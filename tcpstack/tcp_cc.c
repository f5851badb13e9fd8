/*
 * tcp_cc.c: congestion control: NewReno (RFC 5681) and CUBIC (RFC 9438),
 * chosen per connection (listener option, or [tcp] congestion_control for
 * active opens). Fast recovery itself (RFC 6582) lives in tcp_input.c;
 * these hooks decide how the window grows and how far it falls.
 *
 * Windows are in bytes; CUBIC's own arithmetic is in segments and seconds
 * as the RFC writes it, in doubles (a few flops per ACK).
 */
#include <math.h>

#include "tcpstack/tcp_internal.h"

#define CUBIC_C 0.4
#define CUBIC_BETA 0.7

static uint32_t max_u32(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

void tcp_cc_init(struct tcp_conn *c)
{
	c->cwnd = 10u * c->mss; /* RFC 6928 */
	c->ssthresh = UINT32_MAX / 2;
	c->cc_wmax = 0;
	c->cc_k = 0;
	c->cc_epoch = 0;
}

/* ssthresh after a loss: RFC 5681 (4) for NewReno, beta * cwnd for CUBIC
 * (RFC 9438 4.6), with fast convergence (4.7). */
static void on_loss(struct tcp_conn *c)
{
	uint32_t flight = c->snd_max - c->snd_una;

	if (c->cc == TCP_CC_NEWRENO) {
		c->ssthresh = max_u32(flight / 2, 2u * c->mss);
		return;
	}
	{
		double w = (double)c->cwnd / c->mss;
		if (w < c->cc_wmax)
			c->cc_wmax = w * (1.0 + CUBIC_BETA) / 2.0;
		else
			c->cc_wmax = w;
		c->ssthresh = max_u32((uint32_t)(c->cwnd * CUBIC_BETA),
				      2u * c->mss);
		c->cc_epoch = 0; /* a new epoch starts at the next ACK */
	}
}

void tcp_cc_fast_retransmit(struct tcp_conn *c)
{
	on_loss(c);
}

void tcp_cc_timeout(struct tcp_conn *c)
{
	on_loss(c);
	c->cwnd = c->mss; /* loss window */
}

static void cubic_avoid(struct tcp_conn *c, uint32_t acked)
{
	double now = (double)c->s->now_ms / 1000.0;
	double rtt = c->srtt8 ? (double)(c->srtt8 >> 3) / 1000.0 : 0.001;
	double w = (double)c->cwnd / c->mss, t, target;

	if (rtt <= 0)
		rtt = 0.001;
	if (c->cc_epoch == 0) {
		c->cc_epoch = c->s->now_ms ? c->s->now_ms : 1;
		if (c->cc_wmax < w)
			c->cc_wmax = w; /* no loss yet: start on the plateau */
		c->cc_k = cbrt(c->cc_wmax * (1.0 - CUBIC_BETA) / CUBIC_C);
		c->cc_west = w;
	}
	t = now - (double)c->cc_epoch / 1000.0;
	/* W_cubic(t + RTT): where the window should be one RTT from now */
	target = CUBIC_C * pow(t + rtt - c->cc_k, 3) + c->cc_wmax;
	if (target > 1.5 * w)
		target = 1.5 * w;
	/* the Reno-friendly estimate (RFC 9438 4.3), grown per ACK */
	c->cc_west += 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA) *
		      ((double)acked / c->mss) / w;
	if (c->cc_west > target)
		target = c->cc_west;
	if (target > w) {
		double inc = (target - w) / w * c->mss;
		c->cwnd += inc < 1.0 ? 1 : (uint32_t)inc;
	} else {
		/* plateau: creep (RFC 9438 4.4 allows cwnd unchanged) */
		c->cwnd += c->mss / 100 ? c->mss / 100 : 1;
	}
}

void tcp_cc_ack(struct tcp_conn *c, uint32_t acked)
{
	if (c->cwnd < c->ssthresh) {
		/* slow start with ABC, L = 1 SMSS (RFC 3465) */
		c->cwnd += acked < c->mss ? acked : c->mss;
	} else if (c->cc == TCP_CC_NEWRENO) {
		uint32_t inc = c->mss * c->mss / c->cwnd;
		c->cwnd += inc > 0 ? inc : 1;
	} else {
		cubic_avoid(c, acked);
	}
	if (c->cwnd > 64u * 1024 * 1024)
		c->cwnd = 64u * 1024 * 1024;
}
