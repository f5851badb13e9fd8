/*
 * tcp_timer.c: the two timers of a connection on the worker's wheel.
 *
 * t_rtx serves whichever of these the state calls for, decided when it
 * fires: handshake retransmission, data retransmission (RFC 6298, with
 * exponential back-off and a retry limit), zero-window probing (persist),
 * FIN-WAIT-2 after the application closed, and TIME-WAIT (2 MSL).
 * t_delack sends a delayed ACK. Both run inside stack_tick(); what they
 * send and free is finished by the stack_flush() that follows every tick.
 */
#include <stddef.h>

#include "common/log.h"
#include "common/parse.h"
#include "tcpstack/tcp_internal.h"

#define conn_of(t, field)                                                     \
	((struct tcp_conn *)((char *)(t) - offsetof(struct tcp_conn, field)))

static uint32_t backed_off(const struct tcp_conn *c, uint8_t shift)
{
	uint64_t v = (uint64_t)c->rto << (shift > 16 ? 16 : shift);
	uint32_t max = c->s->conf.tcp_rto_max_ms;

	return v > max ? max : (uint32_t)v;
}

void tcp_arm_rtx(struct tcp_conn *c)
{
	tw_arm(&c->s->tw, &c->t_rtx, c->s->now_ms + backed_off(c, c->rxt_shift));
}

void tcp_arm_persist(struct tcp_conn *c)
{
	uint32_t t = backed_off(c, c->persist_shift);

	/* RFC 1122 4.2.2.17: probe at RTO intervals, backed off, 5 s .. 60 s
	 * in BSD; keep it within our own bounds */
	if (t < c->s->conf.tcp_rto_min_ms)
		t = c->s->conf.tcp_rto_min_ms;
	tw_arm(&c->s->tw, &c->t_rtx, c->s->now_ms + t);
}

void tcp_arm_timewait(struct tcp_conn *c)
{
	tw_arm(&c->s->tw, &c->t_rtx,
	       c->s->now_ms + 2ull * c->s->conf.tcp_msl_ms);
}

void tcp_enter_timewait(struct tcp_conn *c)
{
	struct stack *s = c->s;

	if (s->tcp->nstate[TCPS_TIME_WAIT] >= s->conf.tcp_max_timewait) {
		/* like Linux's "time wait bucket table overflow": close now,
		 * but first ACK the peer's FIN as TIME-WAIT would have (RFC
		 * 9293 3.10.7.4: "acknowledge it"), or it retransmits the FIN
		 * into a RST instead of closing cleanly */
		s->cnt.tcp_timewait_overflow++;
		if (c->flags & TF_ACKNOW)
			tcp_send_ack_now(c);
		tcp_conn_drop(c, TCP_CLOSE_DONE);
		return;
	}
	tcp_set_state(c, TCPS_TIME_WAIT);
	tcp_arm_timewait(c);
}

void tcp_timer_idle(struct tcp_conn *c)
{
	struct stack *s = c->s;

	if ((c->flags & TF_KEEPALIVE) && (c->state == TCPS_ESTABLISHED ||
					  c->state == TCPS_CLOSE_WAIT))
		tw_arm(&s->tw, &c->t_rtx,
		       c->last_rcv_ms + s->conf.tcp_keepalive_idle_ms);
	else
		tw_cancel(&s->tw, &c->t_rtx);
}

/* RFC 1122 4.2.3.6: an idle connection is probed with a segment the peer
 * must answer (one sequence number below the window), idle_ms after the
 * last thing heard, then every intvl_ms, and given up after probes. */
static void keepalive(struct tcp_conn *c)
{
	struct stack *s = c->s;
	uint64_t due;

	if (!(c->flags & TF_KEEPALIVE))
		return;
	due = c->last_rcv_ms + s->conf.tcp_keepalive_idle_ms +
	      (uint64_t)c->ka_probes * s->conf.tcp_keepalive_intvl_ms;
	if (s->now_ms < due) {
		tw_arm(&s->tw, &c->t_rtx, due);
		return;
	}
	if (c->ka_probes >= s->conf.tcp_keepalive_probes) {
		s->cnt.tcp_drop_timeout++;
		tcp_conn_drop(c, TCP_CLOSE_TIMEOUT);
		return;
	}
	c->ka_probes++;
	s->cnt.tcp_keepalive_probes++;
	tcp_send_segment(c, c->snd_una - 1, 0, RTE_TCP_ACK_FLAG);
	tw_arm(&s->tw, &c->t_rtx, s->now_ms + s->conf.tcp_keepalive_intvl_ms);
}

void tcp_rtt_sample(struct tcp_conn *c, uint32_t rtt)
{
	uint32_t rto;

	/* RFC 6298 2.2 / 2.3, in ms with srtt x8 and rttvar x4 */
	if (c->srtt8 == 0) {
		c->srtt8 = rtt << 3;
		c->rttvar4 = rtt << 1;
	} else {
		int32_t delta = (int32_t)rtt - (int32_t)(c->srtt8 >> 3);
		c->srtt8 = (uint32_t)((int32_t)c->srtt8 + delta);
		if (delta < 0)
			delta = -delta;
		c->rttvar4 = (uint32_t)((int32_t)c->rttvar4 +
					(delta - (int32_t)(c->rttvar4 >> 2)));
		if (c->srtt8 == 0)
			c->srtt8 = 1;
	}
	rto = (c->srtt8 >> 3) + (c->rttvar4 > 1 ? c->rttvar4 : 1);
	if (rto < c->s->conf.tcp_rto_min_ms)
		rto = c->s->conf.tcp_rto_min_ms;
	if (rto > c->s->conf.tcp_rto_max_ms)
		rto = c->s->conf.tcp_rto_max_ms;
	c->rto = rto;
}

static void handshake_timeout(struct tcp_conn *c)
{
	struct stack *s = c->s;

	if (c->rxt_shift >= s->conf.tcp_syn_retries) {
		s->cnt.tcp_drop_timeout++;
		if (c->state == TCPS_SYN_SENT)
			s->cnt.tcp_connect_failed++;
		tcp_conn_drop(c, TCP_CLOSE_TIMEOUT);
		return;
	}
	c->rxt_shift++;
	s->cnt.tcp_rto_timeouts++;
	tcp_send_segment(c, c->iss, 0,
			 c->state == TCPS_SYN_SENT ?
				 RTE_TCP_SYN_FLAG :
				 RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
	tcp_arm_rtx(c);
}

static void persist_probe(struct tcp_conn *c)
{
	struct stack *s = c->s;

	if (c->persist_shift >= s->conf.tcp_retries) {
		s->cnt.tcp_drop_timeout++;
		tcp_conn_drop(c, TCP_CLOSE_TIMEOUT);
		return;
	}
	/* one byte beyond the closed window: the peer must answer with its
	 * current window (RFC 9293 3.8.6.1) */
	s->cnt.tcp_persist_probes++;
	c->persist_shift++;
	tcp_send_segment(c, c->snd_una, 1, RTE_TCP_ACK_FLAG);
	tcp_arm_persist(c);
}

static void retransmit_timeout(struct tcp_conn *c)
{
	struct stack *s = c->s;

	if (c->rxt_shift >= s->conf.tcp_retries) {
		char a[16];
		s->cnt.tcp_drop_timeout++;
		LOG_RL(LOG_INFO, "tcp: %s:%u: no ACK after %u retransmissions, "
		       "giving up", format_ipv4(c->rip, a), c->rport,
		       c->rxt_shift);
		tcp_conn_drop(c, TCP_CLOSE_TIMEOUT);
		return;
	}
	c->rxt_shift++;
	s->cnt.tcp_rto_timeouts++;
	LOG_RL(LOG_DEBUG, "tcp: rto port %u: una %u nxt +%u max +%u wnd %u "
	       "cwnd %u ssth %u sq %u nsb %u pipe %u flags %#x shift %u rto %u",
	       c->lport, c->snd_una, c->snd_nxt - c->snd_una,
	       c->snd_max - c->snd_una, c->snd_wnd, c->cwnd, c->ssthresh,
	       c->sq_len, c->nsb, tcp_sack_pipe(c), c->flags, c->rxt_shift,
	       c->rto);
	/* RFC 5681 (4): loss window; RFC 6298 5.5-5.6: back off, go back */
	tcp_cc_timeout(c);
	c->dupacks = 0;
	c->flags &= ~(TF_RECOVERY | TF_RTT_TIMING);
	c->recover = c->snd_max;
	if (c->flags & TF_SACK) {
		/* RFC 6675 5.1: keep what the peer SACKed, count everything
		 * else sent so far as lost, and resend the holes as the
		 * window (slow start from one segment) allows */
		c->flags |= TF_RECOVERY | TF_RTO_RECOVERY;
		c->high_rxt = c->snd_una;
	} else {
		c->snd_nxt = c->snd_una; /* go back N */
	}
	tcp_arm_rtx(c);
	tcp_output(c);
}

void tcp_timer_rtx_fire(struct tw_timer *t, void *ctx)
{
	struct tcp_conn *c = conn_of(t, t_rtx);
	struct stack *s = ctx;

	switch (c->state) {
	case TCPS_SYN_SENT:
	case TCPS_SYN_RECEIVED:
		handshake_timeout(c);
		break;
	case TCPS_TIME_WAIT:
		tcp_conn_drop(c, TCP_CLOSE_DONE);
		break;
	case TCPS_FIN_WAIT_2:
		/* the app closed and the peer never sent its FIN */
		s->cnt.tcp_drop_timeout++;
		tcp_conn_drop(c, TCP_CLOSE_TIMEOUT);
		break;
	default:
		if (c->snd_wnd == 0 && c->sq_len > 0 &&
		    SEQ_LEQ(c->snd_nxt, c->snd_una + 1))
			persist_probe(c);
		else if (c->snd_una != c->snd_max)
			retransmit_timeout(c);
		else
			keepalive(c);
		break;
	}
	/* output and frees happen in stack_flush(), after the tick */
}

void tcp_timer_delack_fire(struct tw_timer *t, void *ctx)
{
	struct tcp_conn *c = conn_of(t, t_delack);
	struct stack *s = ctx;

	if (c->flags & TF_DELACK) {
		s->cnt.tcp_delayed_acks++;
		c->flags |= TF_ACKNOW;
		tcp_conn_want_output(c);
	}
}
