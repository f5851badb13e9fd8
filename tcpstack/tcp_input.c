/*
 * tcp_input.c: segment arrival (RFC 9293 3.10.7), with RFC 7323 (PAWS,
 * timestamps, window scale), RFC 5961 (challenge ACKs for in-window RST and
 * SYN, ACK range check), RFC 5681/6582 (fast retransmit, NewReno recovery)
 * and RFC 1122 delayed ACKs.
 *
 * The checks run in the RFC's order: header and checksum, connection or
 * listener, then for a connection: sequence acceptability (after PAWS),
 * RST, SYN, ACK, data, FIN. Every drop is counted. Callbacks into the
 * application may close or abort the connection; after each one the code
 * checks TF_ZOMBIE before touching the connection's state again.
 */
#include <string.h>

#include "common/log.h"
#include "tcpstack/ipv4.h"
#include "tcpstack/tcp_internal.h"

#define TCP_OOO_MAX 256            /* segments held out of order */
#define PAWS_IDLE_MS (24ull * 24 * 3600 * 1000) /* RFC 7323 5.5 */
#define FIN_MARK RTE_PTYPE_L4_FRAG /* packet_type bit reused: "FIN here" */

struct tcp_opts {
	bool mss_ok, ws_ok, sack_ok, ts_ok;
	uint16_t mss;
	uint8_t ws;
	uint8_t nsack;
	uint32_t tsval, tsecr;
	uint32_t sack[4][2];
};

struct seg {
	bool reopen;              /* TIME-WAIT ended by a new SYN: redo */
	const struct rte_tcp_hdr *th;
	uint32_t seq, ack, wnd;
	uint8_t flags;
	const uint8_t *data;
	uint32_t dlen;
	struct tcp_opts o;
};

/* Option TLVs (RFC 9293 3.1): 0 ok, -1 malformed (a length below 2 or
 * running past the header). Known kinds with a wrong length are ignored,
 * as Linux and BSD do. */
static int parse_options(const uint8_t *p, uint32_t len, struct tcp_opts *o)
{
	uint32_t i = 0;

	memset(o, 0, sizeof(*o));
	while (i < len) {
		uint8_t kind = p[i], olen;

		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= len)
			return -1;
		olen = p[i + 1];
		if (olen < 2 || i + olen > len)
			return -1;
		switch (kind) {
		case TCPOPT_MSS:
			if (olen == 4) {
				o->mss_ok = true;
				o->mss = (uint16_t)(p[i + 2] << 8 | p[i + 3]);
			}
			break;
		case TCPOPT_WS:
			if (olen == 3) {
				o->ws_ok = true;
				o->ws = p[i + 2] > 14 ? 14 : p[i + 2];
			}
			break;
		case TCPOPT_SACKOK:
			if (olen == 2)
				o->sack_ok = true;
			break;
		case TCPOPT_SACK:
			if ((olen - 2) % 8 == 0) {
				for (uint32_t b = i + 2; b + 8 <= i + olen &&
				     o->nsack < 4; b += 8, o->nsack++) {
					o->sack[o->nsack][0] =
						(uint32_t)p[b] << 24 |
						(uint32_t)p[b + 1] << 16 |
						(uint32_t)p[b + 2] << 8 | p[b + 3];
					o->sack[o->nsack][1] =
						(uint32_t)p[b + 4] << 24 |
						(uint32_t)p[b + 5] << 16 |
						(uint32_t)p[b + 6] << 8 | p[b + 7];
				}
			}
			break;
		case TCPOPT_TS:
			if (olen == 10) {
				o->ts_ok = true;
				o->tsval = (uint32_t)p[i + 2] << 24 |
					   (uint32_t)p[i + 3] << 16 |
					   (uint32_t)p[i + 4] << 8 | p[i + 5];
				o->tsecr = (uint32_t)p[i + 6] << 24 |
					   (uint32_t)p[i + 7] << 16 |
					   (uint32_t)p[i + 8] << 8 | p[i + 9];
			}
			break;
		default:
			break;
		}
		i += olen;
	}
	return 0;
}

static struct tcp_listener *find_listener(struct stack *s, uint16_t port)
{
	for (struct tcp_listener *l = s->tcp->listeners; l != NULL; l = l->next)
		if (l->o.port == port)
			return l;
	return NULL;
}

/* Options of a SYN (ours and the peer's) fix MSS, scaling, SACK, TS. */
static void negotiate(struct tcp_conn *c, const struct tcp_opts *o)
{
	const struct stack_conf *cf = &c->s->conf;
	uint32_t mss = o->mss_ok ? o->mss : 536;
	uint32_t ours = c->s->q->mtu - 40u;

	if (mss > ours)
		mss = ours;
	if (mss < 64)
		mss = 64; /* a peer claiming less is lying; do not amplify */
	if (o->ws_ok && cf->tcp_wscale) {
		c->flags |= TF_WS;
		c->snd_wscale = o->ws;
		c->rcv_wscale = tcp_rcv_wscale(c->s);
	} else {
		/* RFC 7323 2.2: without the option in both SYNs, neither
		 * side scales (tcp_connect chose a shift for our SYN) */
		c->snd_wscale = 0;
		c->rcv_wscale = 0;
	}
	if (o->sack_ok && cf->tcp_sack)
		c->flags |= TF_SACK;
	if (o->ts_ok && cf->tcp_timestamps) {
		c->flags |= TF_TS;
		c->ts_recent = o->tsval;
		c->ts_recent_age = c->s->now_ms;
		mss -= 12;
	}
	c->mss = (uint16_t)mss;
}

/* RFC 6928 initial window: 10 segments, at most 14600 bytes-ish. */
static void init_cwnd(struct tcp_conn *c)
{
	tcp_cc_init(c);
	/* RFC 6582 3.2 (1): "recover" starts at the ISS; left at 0 it
	 * would be "ahead" of snd_una for half of all ISNs and forbid
	 * fast retransmit */
	c->recover = c->iss;
}

static void challenge_ack(struct tcp_conn *c)
{
	struct stack *s = c->s;

	/* RFC 5961 7: bounded, so challenges cannot be turned into a flood
	 * (per worker, not global: no cross-connection side channel) */
	if (!ratelimit_allow(&s->tcp->challenge_rl, s->now_ms)) {
		s->cnt.tcp_challenge_acks_limited++;
		return;
	}
	s->cnt.tcp_challenge_acks++;
	tcp_send_ack_now(c);
}

/* ---------------------------------------------------------------- */
/* Receiving data                                                     */

/* Strips m down to [off, off+len) of its data. */
static void mbuf_to_payload(struct rte_mbuf *m, uint32_t off, uint32_t len)
{
	rte_pktmbuf_adj(m, (uint16_t)off);
	if (rte_pktmbuf_data_len(m) > len)
		rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_data_len(m) - len));
}

/* Hands in-order payload (an mbuf holding only it) to the app, or keeps it
 * while the app has paused. Consumes m. */
static void rcv_enqueue(struct tcp_conn *c, struct rte_mbuf *m)
{
	uint32_t len = rte_pktmbuf_data_len(m);

	if (len == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	c->bytes_in += len;
	c->s->cnt.tcp_rx_bytes += len;
	if ((c->flags & TF_PAUSED) || c->rq_head != NULL ||
	    (c->flags & TF_APP_CLOSED) || c->cb == NULL ||
	    c->cb->on_data == NULL) {
		if (c->flags & TF_APP_CLOSED) {
			rte_pktmbuf_free(m);
			return;
		}
		m->next = NULL;
		if (c->rq_tail != NULL)
			c->rq_tail->next = m;
		else
			c->rq_head = m;
		c->rq_tail = m;
		c->rq_len += len;
		return;
	}
	c->cb->on_data(c, c->user, rte_pktmbuf_mtod(m, const uint8_t *), len);
	rte_pktmbuf_free(m);
}

static void peer_closed_notify(struct tcp_conn *c)
{
	if ((c->flags & (TF_APP_CLOSED | TF_ZOMBIE)) || c->rq_head != NULL ||
	    !(c->flags & TF_APP_OWNED))
		return;
	if (c->cb != NULL && c->cb->on_peer_closed != NULL)
		c->cb->on_peer_closed(c, c->user);
}

void tcp_deliver(struct tcp_conn *c)
{
	while (c->rq_head != NULL && !(c->flags & (TF_PAUSED | TF_ZOMBIE |
						    TF_APP_CLOSED))) {
		struct rte_mbuf *m = c->rq_head;
		uint32_t len = rte_pktmbuf_data_len(m);

		c->rq_head = m->next;
		if (c->rq_head == NULL)
			c->rq_tail = NULL;
		m->next = NULL;
		c->rq_len -= len;
		if (c->cb != NULL && c->cb->on_data != NULL)
			c->cb->on_data(c, c->user,
				       rte_pktmbuf_mtod(m, const uint8_t *), len);
		rte_pktmbuf_free(m);
	}
	if (c->rq_head == NULL && (c->flags & TF_PEER_FIN))
		peer_closed_notify(c);
}

/* Inserts a future segment, sorted, trimming overlaps. Consumes m. */
static void ooo_insert(struct tcp_conn *c, struct rte_mbuf *m, uint32_t seq,
		       bool fin)
{
	struct rte_mbuf **pp = &c->ooo, *n;
	uint32_t len = rte_pktmbuf_data_len(m);

	if (c->ooo_cnt >= TCP_OOO_MAX) {
		c->s->cnt.tcp_ooo_dropped++;
		rte_pktmbuf_free(m);
		return;
	}
	while (*pp != NULL && SEQ_LT((*pp)->hash.usr, seq))
		pp = &(*pp)->next;
	/* drop what an earlier segment already covers */
	if (pp != &c->ooo) {
		struct rte_mbuf *prev = c->ooo;
		while (prev->next != *pp)
			prev = prev->next;
		uint32_t pend = prev->hash.usr + rte_pktmbuf_data_len(prev);
		if (SEQ_GEQ(pend, seq + len) && !fin) {
			rte_pktmbuf_free(m);
			return;
		}
		if (SEQ_GT(pend, seq)) {
			uint32_t cut = pend - seq;
			if (cut > len)
				cut = len;
			rte_pktmbuf_adj(m, (uint16_t)cut);
			seq += cut;
			len -= cut;
		}
	}
	/* drop later segments this one covers entirely */
	while (*pp != NULL && SEQ_LEQ((*pp)->hash.usr + rte_pktmbuf_data_len(*pp),
				      seq + len) &&
	       !((*pp)->packet_type & FIN_MARK)) {
		n = *pp;
		*pp = n->next;
		c->ooo_bytes -= rte_pktmbuf_data_len(n);
		c->ooo_cnt--;
		n->next = NULL;
		rte_pktmbuf_free(n);
	}
	if (*pp != NULL && SEQ_GT(seq + len, (*pp)->hash.usr)) {
		uint32_t cut = seq + len - (*pp)->hash.usr;
		rte_pktmbuf_trim(m, (uint16_t)cut);
		len -= cut;
		fin = false;
	}
	m->hash.usr = seq;
	c->sack_recent = seq;
	m->packet_type = fin ? FIN_MARK : 0;
	m->next = *pp;
	*pp = m;
	c->ooo_bytes += len;
	c->ooo_cnt++;
	c->s->cnt.tcp_ooo_segments++;
}

/* Moves now-contiguous segments from the OOO queue; true if a FIN came. */
static bool ooo_pull(struct tcp_conn *c)
{
	while (c->ooo != NULL && SEQ_LEQ(c->ooo->hash.usr, c->rcv_nxt)) {
		struct rte_mbuf *m = c->ooo;
		uint32_t seq = m->hash.usr, len = rte_pktmbuf_data_len(m);
		bool fin = m->packet_type & FIN_MARK;

		c->ooo = m->next;
		m->next = NULL;
		c->ooo_bytes -= len;
		c->ooo_cnt--;
		if (SEQ_LEQ(seq + len, c->rcv_nxt) && !fin) {
			rte_pktmbuf_free(m); /* all old */
			continue;
		}
		if (SEQ_LT(seq, c->rcv_nxt)) {
			uint32_t cut = c->rcv_nxt - seq;
			if (cut > len)
				cut = len;
			rte_pktmbuf_adj(m, (uint16_t)cut);
			len -= cut;
		}
		c->rcv_nxt += len;
		rcv_enqueue(c, m);
		if (fin)
			return true;
		if (c->flags & TF_ZOMBIE)
			return false;
	}
	return false;
}

/* ---------------------------------------------------------------- */
/* Passive open                                                       */

/* A connection from a valid cookie in the final ACK: state SYN-RECEIVED
 * as if we had kept it, so the normal path completes the handshake. */
static struct tcp_conn *cookie_conn(struct stack *s, struct tcp_listener *l,
				    const struct rte_ipv4_hdr *ip,
				    const struct seg *g)
{
	uint16_t mss;
	struct tcp_conn *c;

	if (tcp_cookie_check(s, ip->src_addr, rte_be_to_cpu_16(g->th->src_port),
			     ip->dst_addr, rte_be_to_cpu_16(g->th->dst_port),
			     g->seq - 1, g->ack - 1, &mss) != 0) {
		s->cnt.tcp_syncookies_failed++;
		return NULL;
	}
	c = tcp_conn_new(s, ip->src_addr, rte_be_to_cpu_16(g->th->src_port),
			 ip->dst_addr, rte_be_to_cpu_16(g->th->dst_port));
	if (c == NULL)
		return NULL;
	s->cnt.tcp_syncookies_ok++;
	c->listener = l;
	c->cc = (uint8_t)l->o.cc;
	l->syn_pending++;
	l->st->syn_pending++;
	tcp_set_state(c, TCPS_SYN_RECEIVED);
	c->irs = g->seq - 1;
	c->rcv_nxt = g->seq;
	c->rcv_adv = c->rcv_nxt + tcp_rcv_window(c);
	c->last_ack_sent = c->rcv_nxt;
	c->mss = mss;
	if (l->o.nagle)
		c->flags |= TF_NAGLE;
	c->iss = g->ack - 1;
	c->snd_una = c->iss;
	c->snd_nxt = c->iss + 1;
	c->snd_max = c->iss + 1;
	c->snd_wl1 = g->seq;
	c->snd_wl2 = g->ack;
	return c;
}

/* No connection for this segment: a listener's business, or a RST.
 * Returns a connection when a SYN cookie completes one, for the caller to
 * process the segment on. */
static struct tcp_conn *listen_input(struct stack *s,
				     const struct rte_ipv4_hdr *ip,
				     const struct seg *g)
{
	struct tcp_listener *l = find_listener(s, rte_be_to_cpu_16(g->th->dst_port));
	uint32_t seglen = g->dlen + !!(g->flags & RTE_TCP_SYN_FLAG) +
			  !!(g->flags & RTE_TCP_FIN_FLAG);
	struct tcp_conn *c;

	if (g->flags & RTE_TCP_RST_FLAG)
		return NULL;
	/* a stray ACK is checked as a cookie only while cookies may be about
	 * (valid for two 64 s periods; checked, and counted when stale, for
	 * four), not for every late segment of a closed connection */
	if (l != NULL && (g->flags & RTE_TCP_ACK_FLAG) &&
	    !(g->flags & RTE_TCP_SYN_FLAG) && s->tcp->last_cookie_ms != 0 &&
	    s->now_ms - s->tcp->last_cookie_ms <= 4 * 64000) {
		c = cookie_conn(s, l, ip, g);
		if (c != NULL)
			return c;
	}
	if (l == NULL || (g->flags & RTE_TCP_ACK_FLAG) ||
	    !(g->flags & RTE_TCP_SYN_FLAG)) {
		if (l == NULL)
			s->cnt.tcp_no_listener++;
		tcp_send_reset_reply(s, ip, g->th, seglen);
		return NULL;
	}
	s->cnt.tcp_syn_rx++;
	if (l->o.max_conns != 0 && l->conns >= l->o.max_conns) {
		s->cnt.tcp_syn_backlog_full++;
		l->st->over_limit++;
		tcp_send_reset_reply(s, ip, g->th, seglen);
		return NULL;
	}
	if (l->syn_pending >= (l->o.syn_backlog ? l->o.syn_backlog :
						  s->conf.tcp_syn_backlog)) {
		/* the SYN queue is full: answer statelessly (RFC 4987) */
		uint16_t mss;
		uint32_t iss = tcp_cookie_make(s, ip->src_addr,
				rte_be_to_cpu_16(g->th->src_port), ip->dst_addr,
				rte_be_to_cpu_16(g->th->dst_port), g->seq,
				g->o.mss_ok ? g->o.mss : 536, &mss);
		s->cnt.tcp_syn_backlog_full++;
		s->cnt.tcp_syncookies_sent++;
		l->st->syncookies++;
		s->tcp->last_cookie_ms = s->now_ms ? s->now_ms : 1;
		tcp_send_cookie_synack(s, ip, g->th, iss, mss);
		return NULL;
	}
	c = tcp_conn_new(s, ip->src_addr, rte_be_to_cpu_16(g->th->src_port),
			 ip->dst_addr, rte_be_to_cpu_16(g->th->dst_port));
	if (c == NULL)
		return NULL;
	c->listener = l;
	c->cc = (uint8_t)l->o.cc;
	l->syn_pending++;
	l->st->syn_pending++;
	tcp_set_state(c, TCPS_SYN_RECEIVED);
	c->irs = g->seq;
	c->rcv_nxt = g->seq + 1;
	negotiate(c, &g->o);
	if (l->o.nagle)
		c->flags |= TF_NAGLE;
	c->iss = tcp_isn(s, c);
	c->snd_una = c->iss;
	c->snd_nxt = c->iss + 1;
	c->snd_max = c->iss;
	c->snd_wnd = g->wnd; /* unscaled in a SYN */
	c->max_sndwnd = c->snd_wnd;
	c->snd_wl1 = g->seq;
	c->snd_wl2 = c->iss;
	tcp_send_segment(c, c->iss, 0, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
	return NULL;
}

/* The handshake's final ACK arrived: hand the connection to the app. */
static bool passive_established(struct tcp_conn *c)
{
	struct tcp_listener *l = c->listener;
	struct stack *s = c->s;
	const struct tcp_callbacks *cb = NULL;
	void *user = NULL;

	tcp_set_state(c, TCPS_ESTABLISHED);
	l->syn_pending--;
	l->st->syn_pending--;
	tcp_timer_idle(c);
	c->rxt_shift = 0;
	init_cwnd(c);
	if (l->closed || l->accept(c, l->user, &cb, &user) != 0) {
		s->cnt.tcp_refused_by_app++;
		l->st->refused++;
		c->listener = NULL;
		if (l->closed && l->syn_pending == 0 && l->conns == 0)
			free(l);
		tcp_send_segment(c, c->snd_nxt, 0, RTE_TCP_RST_FLAG);
		s->cnt.tcp_rst_tx++;
		tcp_conn_drop(c, 0);
		return false;
	}
	c->cb = cb;
	c->user = user;
	c->flags |= TF_APP_OWNED;
	l->conns++;
	l->st->open++;
	l->st->accepted++;
	s->cnt.tcp_accepted++;
	s->cnt.tcp_opened++;
	return true;
}

/* ---------------------------------------------------------------- */
/* Active open: SYN-SENT (RFC 9293 3.10.7.3)                          */

static void syn_sent_input(struct tcp_conn *c, const struct rte_ipv4_hdr *ip,
			   const struct seg *g)
{
	struct stack *s = c->s;
	bool ack = g->flags & RTE_TCP_ACK_FLAG;

	if (ack && (SEQ_LEQ(g->ack, c->iss) || SEQ_GT(g->ack, c->snd_max))) {
		tcp_send_reset_reply(s, ip, g->th, g->dlen);
		return;
	}
	if (g->flags & RTE_TCP_RST_FLAG) {
		if (ack) {
			s->cnt.tcp_rst_rx++;
			s->cnt.tcp_connect_failed++;
			tcp_conn_drop(c, TCP_CLOSE_REFUSED);
		}
		return;
	}
	if (!(g->flags & RTE_TCP_SYN_FLAG))
		return;
	c->irs = g->seq;
	c->rcv_nxt = g->seq + 1;
	negotiate(c, &g->o);
	if (!ack) {
		/* simultaneous open: both sent SYN */
		tcp_set_state(c, TCPS_SYN_RECEIVED);
		c->snd_wnd = g->wnd;
		tcp_send_segment(c, c->iss, 0, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
		return;
	}
	if (c->flags & TF_TS) {
		if (g->o.tsecr != 0)
			tcp_rtt_sample(c, ts_now(c) - g->o.tsecr);
	} else if (c->flags & TF_RTT_TIMING) {
		tcp_rtt_sample(c, (uint32_t)(s->now_ms - c->rtt_start));
	}
	c->flags &= ~TF_RTT_TIMING;
	c->snd_una = g->ack;
	if (SEQ_LT(c->snd_nxt, c->snd_una))
		c->snd_nxt = c->snd_una;
	c->snd_wnd = g->wnd;
	c->max_sndwnd = c->snd_wnd;
	c->snd_wl1 = g->seq;
	c->snd_wl2 = g->ack;
	tcp_set_state(c, TCPS_ESTABLISHED);
	c->rxt_shift = 0;
	tcp_timer_idle(c);
	init_cwnd(c);
	s->cnt.tcp_opened++;
	c->flags |= TF_ACKNOW;
	tcp_conn_want_output(c);
	if (c->cb != NULL && c->cb->on_connected != NULL &&
	    !(c->flags & TF_APP_CLOSED))
		c->cb->on_connected(c, c->user);
}

/* ---------------------------------------------------------------- */
/* ACK processing                                                     */

static void ack_advance(struct tcp_conn *c, const struct seg *g)
{
	struct stack *s = c->s;
	uint32_t acked = g->ack - c->snd_una;
	uint32_t data_acked = acked > c->sq_len ? c->sq_len : acked;

	if ((c->flags & TF_TS) && g->o.ts_ok && g->o.tsecr != 0) {
		tcp_rtt_sample(c, ts_now(c) - g->o.tsecr);
	} else if ((c->flags & TF_RTT_TIMING) && SEQ_GT(g->ack, c->rtt_seq)) {
		tcp_rtt_sample(c, (uint32_t)(s->now_ms - c->rtt_start));
		c->flags &= ~TF_RTT_TIMING;
	}
	tcp_sq_drop_acked(c, data_acked);
	c->snd_una = g->ack;
	if (SEQ_LT(c->snd_nxt, c->snd_una))
		c->snd_nxt = c->snd_una;
	tcp_sack_prune(c);

	if (c->flags & TF_RECOVERY) {
		if (SEQ_GEQ(g->ack, c->recover)) {
			/* RFC 6582 3.2 (3) / RFC 6675 5: full acknowledgment */
			uint32_t flight = c->snd_max - c->snd_una;
			if (c->flags & TF_SACK)
				c->cwnd = c->ssthresh;
			else
				c->cwnd = c->ssthresh < flight + c->mss ?
						  c->ssthresh : flight + c->mss;
			c->flags &= ~(TF_RECOVERY | TF_RTO_RECOVERY);
			c->dupacks = 0;
		} else if (c->flags & TF_RTO_RECOVERY) {
			tcp_cc_ack(c, acked); /* slow start after a timeout */
		} else if (c->flags & TF_SACK) {
			/* the pipe decides; tcp_output retransmits holes */
		} else {
			/* partial acknowledgment: resend the next hole,
			 * deflate by what was acked, add one segment back */
			uint32_t len = c->sq_len < c->mss ? c->sq_len : c->mss;
			if (len > 0)
				tcp_send_segment(c, c->snd_una, len,
						 RTE_TCP_ACK_FLAG);
			c->cwnd = c->cwnd > acked ? c->cwnd - acked : c->mss;
			c->cwnd += c->mss;
		}
	} else {
		c->dupacks = 0;
		tcp_cc_ack(c, acked);
	}
	c->rxt_shift = 0;
	c->persist_shift = 0;
	if (c->snd_una == c->snd_max)
		tcp_timer_idle(c);
	else
		tcp_arm_rtx(c); /* RFC 6298 5.3: restart on new ACK */
	tcp_conn_want_output(c); /* sends more, and calls on_writable */
}

/* RFC 5681 3.2 / RFC 6582 / RFC 6675 5: fast retransmit, recovery. */
static void enter_recovery(struct tcp_conn *c)
{
	struct stack *s = c->s;

	s->cnt.tcp_fast_retransmits++;
	tcp_cc_fast_retransmit(c);
	c->recover = c->snd_max;
	c->flags |= TF_RECOVERY;
	c->flags &= ~TF_RTT_TIMING;
	if (c->flags & TF_SACK) {
		/* RFC 6675 5 (4.3): the first hole goes at once, whatever
		 * the pipe says; the rest as the pipe drains */
		uint32_t len = c->sq_len < c->mss ? c->sq_len : c->mss;
		c->cwnd = c->ssthresh;
		c->high_rxt = c->snd_una;
		if (len > 0) {
			int n = tcp_send_segment(c, c->snd_una, len,
						 RTE_TCP_ACK_FLAG);
			if (n > 0)
				c->high_rxt = c->snd_una + (uint32_t)n;
		}
		tcp_conn_want_output(c);
	} else {
		uint32_t len = c->sq_len < c->mss ? c->sq_len : c->mss;
		if (len > 0)
			tcp_send_segment(c, c->snd_una, len, RTE_TCP_ACK_FLAG);
		c->cwnd = c->ssthresh + 3u * c->mss;
	}
	tcp_arm_rtx(c);
}

static void dup_ack(struct tcp_conn *c)
{
	struct stack *s = c->s;

	s->cnt.tcp_dup_acks++;
	c->dupacks++;
	/* RFC 6582's "recover" gate keeps NewReno from a second fast
	 * retransmit for one window; SACK knows better (RFC 6675 5) */
	if (c->dupacks == 3 && !(c->flags & TF_RECOVERY) &&
	    ((c->flags & TF_SACK) || SEQ_GEQ(c->snd_una, c->recover))) {
		enter_recovery(c);
	} else if (c->dupacks > 3 && (c->flags & TF_RECOVERY)) {
		if (!(c->flags & TF_SACK))
			c->cwnd += c->mss; /* inflate: a segment left */
		tcp_conn_want_output(c);
	}
}

/* Our FIN is acknowledged when everything up to snd_max is, FIN included. */
static bool our_fin_acked(const struct tcp_conn *c)
{
	return (c->flags & TF_FIN_SENT) && c->snd_una == c->snd_max &&
	       c->sq_len == 0;
}

/* ---------------------------------------------------------------- */
/* Synchronized states and SYN-RECEIVED (RFC 9293 3.10.7.4)           */

/*
 * A duplicate ACK overtaken by a later one carries an older timestamp but
 * is no replay: it repeats the cumulative ACK, moves no window, and is
 * recent. Dropping it would lose a duplicate ACK (and its SACK blocks)
 * that loss recovery counts on; Linux makes the same exception.
 */
static bool disordered_ack(const struct tcp_conn *c, const struct seg *g)
{
	return (g->flags & RTE_TCP_ACK_FLAG) && g->dlen == 0 &&
	       !(g->flags & (RTE_TCP_SYN_FLAG | RTE_TCP_FIN_FLAG)) &&
	       g->seq == c->rcv_nxt && g->ack == c->snd_una &&
	       (g->wnd << c->snd_wscale) == c->snd_wnd &&
	       c->ts_recent - g->o.tsval <= c->rto;
}

static bool seq_acceptable(const struct tcp_conn *c, const struct seg *g)
{
	uint32_t wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	uint32_t seglen = g->dlen + !!(g->flags & RTE_TCP_SYN_FLAG) +
			  !!(g->flags & RTE_TCP_FIN_FLAG);

	if (wnd == 0)
		wnd = 1; /* accept the exact next sequence (window probes) */
	if (seglen == 0)
		return SEQ_GEQ(g->seq, c->rcv_nxt) &&
		       SEQ_LT(g->seq, c->rcv_nxt + wnd);
	return (SEQ_GEQ(g->seq, c->rcv_nxt) && SEQ_LT(g->seq, c->rcv_nxt + wnd)) ||
	       (SEQ_GEQ(g->seq + seglen - 1, c->rcv_nxt) &&
		SEQ_LT(g->seq + seglen - 1, c->rcv_nxt + wnd));
}

/* Returns true if m was kept (queued out of order or for the app). */
static bool conn_input(struct tcp_conn *c, struct rte_mbuf *m,
		       const struct rte_ipv4_hdr *ip, struct seg *g,
		       uint32_t data_off)
{
	struct stack *s = c->s;
	bool fin, kept = false;

	if (c->state == TCPS_SYN_SENT) {
		syn_sent_input(c, ip, g);
		return false;
	}
	c->last_rcv_ms = s->now_ms;
	c->ka_probes = 0;

	/* RFC 6191: a new SYN may end TIME-WAIT early when its timestamp (or,
	 * without timestamps, its sequence number) shows it is no old one */
	if (c->state == TCPS_TIME_WAIT &&
	    (g->flags & (RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG | RTE_TCP_RST_FLAG)) ==
		    RTE_TCP_SYN_FLAG &&
	    (((c->flags & TF_TS) && g->o.ts_ok &&
	      (int32_t)(g->o.tsval - c->ts_recent) > 0) ||
	     (!(c->flags & TF_TS) && SEQ_GT(g->seq, c->rcv_nxt)))) {
		s->cnt.tcp_timewait_reused++;
		tcp_conn_drop(c, TCP_CLOSE_DONE);
		g->reopen = true;
		return false;
	}

	/* RFC 7323 5.3 PAWS: an old timestamp means an old duplicate */
	if ((c->flags & TF_TS) && g->o.ts_ok && !(g->flags & RTE_TCP_RST_FLAG) &&
	    (int32_t)(g->o.tsval - c->ts_recent) < 0 &&
	    s->now_ms - c->ts_recent_age < PAWS_IDLE_MS &&
	    !disordered_ack(c, g)) {
		s->cnt.tcp_paws_dropped++;
		if (g->dlen > 0 || (g->flags & (RTE_TCP_SYN_FLAG |
						RTE_TCP_FIN_FLAG))) {
			c->flags |= TF_ACKNOW;
			tcp_conn_want_output(c);
		}
		return false;
	}

	if (!seq_acceptable(c, g)) {
		s->cnt.tcp_out_of_window++;
		if (!(g->flags & RTE_TCP_RST_FLAG)) {
			c->flags |= TF_ACKNOW;
			tcp_conn_want_output(c);
		}
		return false;
	}

	/* trim what we already have at the front, and what is past the
	 * window at the back */
	if (SEQ_LT(g->seq, c->rcv_nxt)) {
		uint32_t skip = c->rcv_nxt - g->seq;
		if (g->flags & RTE_TCP_SYN_FLAG) {
			g->flags &= (uint8_t)~RTE_TCP_SYN_FLAG;
			skip--;
			g->seq++;
		}
		if (skip > g->dlen)
			skip = g->dlen;
		g->seq += skip;
		g->data += skip;
		data_off += skip;
		g->dlen -= skip;
		c->flags |= TF_ACKNOW; /* a duplicate: tell the peer */
	}
	{
		uint32_t wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ?
			c->rcv_adv - c->rcv_nxt : 0;
		uint32_t room = c->rcv_nxt + wnd - g->seq;
		if (SEQ_GT(g->seq + g->dlen, c->rcv_nxt + wnd)) {
			g->dlen = (int32_t)room > 0 ? room : 0;
			g->flags &= (uint8_t)~RTE_TCP_FIN_FLAG;
			/* RFC 9293 3.8.6.1: a probe of our zero window (or
			 * anything past its edge) is answered with an ACK
			 * even when no byte of it is kept */
			c->flags |= TF_ACKNOW;
			tcp_conn_want_output(c);
		}
	}

	/* RFC 5961 3.2: only an exact RST resets; others get a challenge */
	if (g->flags & RTE_TCP_RST_FLAG) {
		if (g->seq != c->rcv_nxt) {
			challenge_ack(c);
			return false;
		}
		s->cnt.tcp_rst_rx++;
		if (c->state == TCPS_SYN_RECEIVED && !(c->flags & TF_ACTIVE)) {
			tcp_conn_drop(c, 0);
		} else if (c->state == TCPS_SYN_RECEIVED) {
			s->cnt.tcp_connect_failed++;
			tcp_conn_drop(c, TCP_CLOSE_REFUSED);
		} else {
			tcp_conn_drop(c, TCP_CLOSE_RESET);
		}
		return false;
	}

	/* RFC 5961 4.2: a SYN on a synchronized connection is challenged */
	if (g->flags & RTE_TCP_SYN_FLAG) {
		if (c->state == TCPS_SYN_RECEIVED && g->seq == c->irs) {
			/* our SYN-ACK was lost: send it again */
			tcp_send_segment(c, c->iss, 0,
					 RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
			return false;
		}
		challenge_ack(c);
		return false;
	}

	if (!(g->flags & RTE_TCP_ACK_FLAG))
		return false;

	if (c->state == TCPS_SYN_RECEIVED) {
		if (SEQ_LEQ(g->ack, c->snd_una) || SEQ_GT(g->ack, c->snd_max)) {
			tcp_send_reset_reply(s, ip, g->th, g->dlen);
			return false;
		}
		c->snd_una = c->iss + 1; /* our SYN is acknowledged */
		c->snd_wnd = g->wnd << c->snd_wscale;
		c->max_sndwnd = c->snd_wnd;
		c->snd_wl1 = g->seq;
		c->snd_wl2 = g->ack;
		if (c->flags & TF_ACTIVE) {
			tcp_set_state(c, TCPS_ESTABLISHED);
			tcp_timer_idle(c);
			init_cwnd(c);
			s->cnt.tcp_opened++;
			if (c->cb != NULL && c->cb->on_connected != NULL)
				c->cb->on_connected(c, c->user);
		} else if (!passive_established(c)) {
			return false;
		}
		if (c->flags & TF_ZOMBIE)
			return false;
	}

	/* RFC 5961 5.2: the ACK must be within what we sent */
	if (SEQ_GT(g->ack, c->snd_max)) {
		s->cnt.tcp_ack_too_new++;
		c->flags |= TF_ACKNOW;
		tcp_conn_want_output(c);
		return false;
	}
	if (SEQ_LT(g->ack, c->snd_una - c->max_sndwnd)) {
		challenge_ack(c);
		return false;
	}

	/* RFC 7323 4.3: remember the timestamp to echo */
	if ((c->flags & TF_TS) && g->o.ts_ok &&
	    SEQ_LEQ(g->seq, c->last_ack_sent)) {
		c->ts_recent = g->o.tsval;
		c->ts_recent_age = s->now_ms;
	}

	if ((c->flags & TF_SACK) && g->o.nsack > 0)
		tcp_sack_update(c, (const uint32_t (*)[2])g->o.sack, g->o.nsack);
	if (SEQ_GT(g->ack, c->snd_una)) {
		ack_advance(c, g);
		if (c->flags & TF_ZOMBIE)
			return false;
	} else if (g->ack == c->snd_una && g->dlen == 0 &&
		   !(g->flags & RTE_TCP_FIN_FLAG) &&
		   (g->wnd << c->snd_wscale) == c->snd_wnd &&
		   c->snd_wnd != 0 && c->snd_una != c->snd_max) {
		/* against a zero window the outstanding byte is a persist
		 * probe, and its ACKs say "still closed", not "lost" (as
		 * BSD: no dup ACKs while persisting) */
		dup_ack(c);
	}
	/* RFC 6675: enough SACKed above a hole starts recovery, whatever
	 * the duplicate ACK count (windows and data make ACKs "not dup") */
	if (!(c->flags & TF_RECOVERY) && c->snd_una != c->snd_max &&
	    tcp_sack_should_recover(c))
		enter_recovery(c);

	/* window update (RFC 9293 3.10.7.4, fifth, ESTABLISHED) */
	if (SEQ_LT(c->snd_wl1, g->seq) ||
	    (c->snd_wl1 == g->seq && SEQ_LEQ(c->snd_wl2, g->ack))) {
		uint32_t old = c->snd_wnd;
		c->snd_wnd = g->wnd << c->snd_wscale;
		c->snd_wl1 = g->seq;
		c->snd_wl2 = g->ack;
		if (c->snd_wnd > c->max_sndwnd)
			c->max_sndwnd = c->snd_wnd;
		if (c->snd_wnd > old) {
			c->persist_shift = 0;
			if (old == 0 && c->snd_una == c->snd_max)
				tcp_timer_idle(c);
			tcp_conn_want_output(c);
		}
	}

	/* our FIN acknowledged */
	if (our_fin_acked(c) && (c->flags & TF_FIN_QUEUED)) {
		c->flags &= ~TF_FIN_QUEUED;
		switch (c->state) {
		case TCPS_FIN_WAIT_1:
			tcp_set_state(c, TCPS_FIN_WAIT_2);
			if (c->flags & TF_APP_CLOSED)
				tw_arm(&s->tw, &c->t_rtx,
				       s->now_ms + s->conf.tcp_fin_timeout_ms);
			break;
		case TCPS_CLOSING:
			tcp_enter_timewait(c);
			break;
		case TCPS_LAST_ACK:
			tcp_conn_drop(c, TCP_CLOSE_DONE);
			return false;
		default:
			break;
		}
	}

	/* segment text */
	fin = g->flags & RTE_TCP_FIN_FLAG;
	if (g->dlen > 0 || fin) {
		switch (c->state) {
		case TCPS_ESTABLISHED:
		case TCPS_FIN_WAIT_1:
		case TCPS_FIN_WAIT_2:
			break;
		default:
			/* CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer
			 * already sent its FIN; only a retransmitted FIN */
			if (fin && c->state == TCPS_TIME_WAIT)
				tcp_arm_timewait(c);
			c->flags |= TF_ACKNOW;
			tcp_conn_want_output(c);
			return false;
		}
	}
	if (g->dlen > 0 && (c->flags & TF_APP_CLOSED)) {
		/* nobody will read this: reset, as a kernel does on a closed
		 * socket (RFC 9293 3.10.4, RFC 1122 4.2.2.13) */
		s->cnt.tcp_data_after_close++;
		tcp_send_segment(c, c->snd_nxt, 0,
				 RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG);
		s->cnt.tcp_rst_tx++;
		tcp_conn_drop(c, 0);
		return false;
	}
	if (g->dlen > 0 || fin) {
		if (g->seq == c->rcv_nxt) {
			bool had_ooo = c->ooo != NULL;
			if (g->dlen > 0) {
				mbuf_to_payload(m, data_off, g->dlen);
				c->rcv_nxt += g->dlen;
				kept = true;
				rcv_enqueue(c, m);
				if (c->flags & TF_ZOMBIE)
					return kept;
			}
			if (had_ooo) {
				if (ooo_pull(c))
					fin = true;
				if (c->flags & TF_ZOMBIE)
					return kept;
				c->flags |= TF_ACKNOW; /* a hole was filled */
			}
			if (g->dlen >= c->mss)
				c->unacked_segs++;
			if (c->unacked_segs >= 2 || c->ooo != NULL)
				c->flags |= TF_ACKNOW;
			else if (!(c->flags & TF_ACKNOW) && g->dlen > 0 && !fin) {
				c->flags |= TF_DELACK;
				if (!tw_armed(&c->t_delack))
					tw_arm(&s->tw, &c->t_delack,
					       s->now_ms + s->conf.tcp_delack_ms);
			}
		} else {
			/* a future segment: keep it, ACK at once (dup ACK) so
			 * the sender's fast retransmit can start */
			if (g->dlen > 0 || fin) {
				mbuf_to_payload(m, data_off, g->dlen);
				kept = true;
				ooo_insert(c, m, g->seq, fin);
			}
			fin = false;
			c->flags |= TF_ACKNOW;
		}
		tcp_conn_want_output(c);
	}

	if (fin) {
		c->rcv_nxt++;
		c->flags |= TF_ACKNOW | TF_PEER_FIN;
		tcp_conn_want_output(c);
		switch (c->state) {
		case TCPS_ESTABLISHED:
			tcp_set_state(c, TCPS_CLOSE_WAIT);
			peer_closed_notify(c);
			break;
		case TCPS_FIN_WAIT_1:
			if (our_fin_acked(c)) {
				tcp_enter_timewait(c);
			} else {
				tcp_set_state(c, TCPS_CLOSING);
			}
			break;
		case TCPS_FIN_WAIT_2:
			tcp_enter_timewait(c);
			break;
		default:
			break;
		}
		/* after a shutdown() the app still reads: tell it too */
		if (c->state != TCPS_CLOSE_WAIT)
			peer_closed_notify(c);
	}
	return kept;
}

void tcp_input(struct stack *s, struct rte_mbuf *m,
	       const struct rte_ipv4_hdr *ip, uint16_t l4_off, uint16_t l4_len)
{
	struct seg g;
	struct tcp_conn *c;
	uint32_t thl;
	uint64_t ck;

	s->cnt.tcp_rx++;
	if (l4_len < sizeof(struct rte_tcp_hdr)) {
		s->cnt.tcp_truncated++;
		goto drop;
	}
	g.th = rte_pktmbuf_mtod_offset(m, const struct rte_tcp_hdr *, l4_off);
	thl = (uint32_t)(g.th->data_off >> 4) * 4;
	if (thl < sizeof(struct rte_tcp_hdr) || thl > l4_len) {
		s->cnt.tcp_bad_offset++;
		goto drop;
	}
	/* a correct segment sums to 0xffff, so the computed checksum is 0 */
	ck = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
	if (ck == RTE_MBUF_F_RX_L4_CKSUM_BAD ||
	    (ck != RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
	     rte_ipv4_udptcp_cksum(ip, g.th) != 0)) {
		s->cnt.tcp_bad_checksum++;
		goto drop;
	}
	if (ipv4_is_broadcast(s, ip->dst_addr)) {
		s->cnt.ip_not_for_us++; /* TCP is unicast only */
		goto drop;
	}
	if (parse_options((const uint8_t *)(g.th + 1),
			  thl - (uint32_t)sizeof(struct rte_tcp_hdr), &g.o) != 0) {
		s->cnt.tcp_bad_options++;
		goto drop;
	}
	g.flags = g.th->tcp_flags;
	if ((g.flags & RTE_TCP_SYN_FLAG) &&
	    (g.flags & (RTE_TCP_FIN_FLAG | RTE_TCP_RST_FLAG))) {
		s->cnt.tcp_bad_flags++;
		goto drop;
	}
	g.seq = rte_be_to_cpu_32(g.th->sent_seq);
	g.ack = rte_be_to_cpu_32(g.th->recv_ack);
	g.wnd = rte_be_to_cpu_16(g.th->rx_win);
	g.dlen = l4_len - thl;
	g.data = (const uint8_t *)g.th + thl;

	c = tcp_conn_lookup(s, ip->src_addr, rte_be_to_cpu_16(g.th->src_port),
			    ip->dst_addr, rte_be_to_cpu_16(g.th->dst_port));
	if (c == NULL || (c->flags & TF_ZOMBIE)) {
		c = listen_input(s, ip, &g);
		if (c == NULL)
			goto drop;
	}
	g.reopen = false;
	if (conn_input(c, m, ip, &g, l4_off + thl))
		return;
	if (g.reopen) {
		c = listen_input(s, ip, &g);
		if (c != NULL && conn_input(c, m, ip, &g, l4_off + thl))
			return;
	}
drop:
	rte_pktmbuf_free(m);
}
