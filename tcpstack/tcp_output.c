/*
 * tcp_output.c: building and sending segments, and deciding what to send.
 *
 * tcp_output() is the one place that decides: it sends what the windows
 * (the peer's and cwnd) allow, applies sender-side silly window avoidance
 * and Nagle where enabled, appends the FIN after the last byte, and falls
 * back to a pure ACK when one is owed. Segments copy their payload out of
 * the send queue (a chain of mbufs holding the unacknowledged bytes), so
 * the queue stays intact for retransmission.
 */
#include <string.h>

#include <rte_ethdev.h>

#include "tcpstack/ipv4.h"
#include "tcpstack/tcp_internal.h"

#define TCP_MAXWIN 65535u

uint32_t tcp_rcv_window(const struct tcp_conn *c)
{
	uint32_t used = c->rq_len + c->ooo_bytes;
	uint32_t buf = c->s->conf.tcp_rcvbuf;
	uint32_t win = used >= buf ? 0 : buf - used;
	uint32_t max = TCP_MAXWIN << c->rcv_wscale;

	return win > max ? max : win;
}

/* The window to advertise now: never shrink the right edge (RFC 9293
 * 3.8.6.2.2), and grow it only in worthwhile steps (RFC 1122 4.2.3.3). */
static uint32_t adv_window(struct tcp_conn *c)
{
	uint32_t win = tcp_rcv_window(c);
	uint32_t cur = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	uint32_t step = c->s->conf.tcp_rcvbuf / 2 < c->mss ?
				c->s->conf.tcp_rcvbuf / 2 : c->mss;

	if (win < cur)
		return cur;
	if (win - cur < step && win < c->s->conf.tcp_rcvbuf)
		return cur;
	return win;
}

static void sq_copy(const struct tcp_conn *c, uint32_t off, uint8_t *dst,
		    uint32_t len)
{
	const struct rte_mbuf *m = c->sq_head;

	off += c->sq_off;
	while (m != NULL && off >= m->data_len) {
		off -= m->data_len;
		m = m->next;
	}
	while (len > 0 && m != NULL) {
		uint32_t n = m->data_len - off;
		if (n > len)
			n = len;
		memcpy(dst, rte_pktmbuf_mtod_offset(m, const uint8_t *, off), n);
		dst += n;
		len -= n;
		off = 0;
		m = m->next;
	}
}

void tcp_set_sq_budget(struct stack *s, unsigned nworkers)
{
	uint64_t n = (uint64_t)s->q->pool->size * s->conf.tcp_sndbuf_pool_pct /
		     100 / (nworkers ? nworkers : 1);

	s->tcp->sq_budget = n > 0 ? (uint32_t)n : 1;
	/* a quarter of the pool more, for queues of a few mbufs only */
	s->tcp->sq_hard = s->tcp->sq_budget +
		(uint32_t)(s->q->pool->size / 4 / (nworkers ? nworkers : 1));
}

static void wake_blocked(struct tcp_stack *t)
{
	while (t->blocked != NULL && tcp_sq_room(t->blocked) > 0) {
		struct tcp_conn *w = t->blocked;
		t->blocked = w->bnext;
		w->bnext = NULL;
		w->flags &= ~TF_BLOCKED;
		tcp_conn_want_output(w); /* on_writable from tcp_output */
	}
}

/* Send mbufs came back: let waiting writers try again. */
static void sq_released(struct stack *s, uint32_t n)
{
	s->tcp->sq_mbufs -= n;
	wake_blocked(s->tcp);
}

void tcp_tick(struct stack *s)
{
	/* writers that met a dry pool (not the budget) retry now and then */
	if (s->tcp != NULL && s->tcp->blocked != NULL &&
	    s->now_ms - s->tcp->last_wake_ms >= 10) {
		s->tcp->last_wake_ms = s->now_ms;
		wake_blocked(s->tcp);
	}
}

void tcp_sq_drop_acked(struct tcp_conn *c, uint32_t acked)
{
	uint32_t freed = 0;

	if (acked > c->sq_len)
		acked = c->sq_len;
	c->sq_len -= acked;
	while (acked > 0 && c->sq_head != NULL) {
		struct rte_mbuf *m = c->sq_head;
		uint32_t avail = m->data_len - c->sq_off;
		if (acked < avail) {
			c->sq_off += acked;
			break;
		}
		acked -= avail;
		c->sq_off = 0;
		c->sq_head = m->next;
		if (c->sq_head == NULL)
			c->sq_tail = NULL;
		m->next = NULL;
		rte_pktmbuf_free_seg(m);
		freed++;
	}
	c->sq_nmb = (uint16_t)(c->sq_nmb - freed);
	/* a fully drained queue costs nothing (lazy buffers) */
	if (c->sq_head == NULL)
		c->sq_off = 0;
	if (freed > 0)
		sq_released(c->s, freed);
}

void tcp_sq_free(struct tcp_conn *c)
{
	struct tcp_stack *t = c->s->tcp;
	uint32_t freed = 0;

	while (c->sq_head != NULL) {
		struct rte_mbuf *m = c->sq_head;
		c->sq_head = m->next;
		m->next = NULL;
		rte_pktmbuf_free_seg(m);
		freed++;
	}
	c->sq_tail = NULL;
	c->sq_off = c->sq_len = 0;
	c->sq_nmb = 0;
	if (c->flags & TF_BLOCKED) {
		/* off the waiting list before the slot is reused */
		for (struct tcp_conn **pp = &t->blocked; *pp != NULL;
		     pp = &(*pp)->bnext)
			if (*pp == c) {
				*pp = c->bnext;
				break;
			}
		c->bnext = NULL;
		c->flags &= ~TF_BLOCKED;
	}
	if (freed > 0)
		sq_released(c->s, freed);
}

/* Checksums, IP header, and off to ipv4_output(). */
static void finish(struct stack *s, struct rte_mbuf *m, uint32_t dst,
		   uint16_t l4_len)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod(m, struct rte_ipv4_hdr *);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);

	ipv4_fill_header(s, ip, dst, IPPROTO_TCP,
			 (uint16_t)(sizeof(*ip) + l4_len));
	ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
	th->cksum = 0;
	if (s->tx_l4_cksum) {
		m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM;
		m->l2_len = sizeof(struct rte_ether_hdr);
		m->l3_len = sizeof(*ip);
		m->l4_len = (uint64_t)(th->data_off >> 4) * 4;
		th->cksum = rte_ipv4_phdr_cksum(ip, m->ol_flags);
	} else {
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	}
	s->cnt.tcp_tx++;
	ipv4_output(s, m);
}

/*
 * SACK blocks (RFC 2018 4): the out-of-order queue's contiguous runs, the
 * one holding the latest arrival first, then the others in sequence order.
 */
static uint8_t *put_sack_blocks(const struct tcp_conn *c, uint8_t *o,
				unsigned max)
{
	uint32_t run[8][2];
	unsigned n = 0, first = 0, out = 0;
	const struct rte_mbuf *m;

	for (m = c->ooo; m != NULL; m = m->next) {
		uint32_t a = m->hash.usr, b = a + rte_pktmbuf_data_len(m);
		if (a == b)
			continue; /* a bare FIN marker */
		if (n > 0 && SEQ_LEQ(a, run[n - 1][1])) {
			if (SEQ_GT(b, run[n - 1][1]))
				run[n - 1][1] = b;
			continue;
		}
		if (n == 8)
			break;
		run[n][0] = a;
		run[n][1] = b;
		n++;
	}
	if (n == 0)
		return o;
	for (unsigned i = 0; i < n; i++)
		if (SEQ_GEQ(c->sack_recent, run[i][0]) &&
		    SEQ_LT(c->sack_recent, run[i][1]))
			first = i;
	if (max > n)
		max = n;
	*o++ = TCPOPT_NOP;
	*o++ = TCPOPT_NOP;
	*o++ = TCPOPT_SACK;
	*o++ = (uint8_t)(2 + 8 * max);
	for (unsigned k = 0; k <= n && out < max; k++) {
		/* k == 0: the latest run; then every other run in order */
		unsigned i = k == 0 ? first : k - 1;
		uint32_t a, b;

		if (k > 0 && i == first)
			continue;
		a = rte_cpu_to_be_32(run[i][0]);
		b = rte_cpu_to_be_32(run[i][1]);
		memcpy(o, &a, 4);
		memcpy(o + 4, &b, 4);
		o += 8;
		out++;
	}
	return o;
}

static uint8_t *put_syn_options(const struct tcp_conn *c, uint8_t *o,
				bool ts, bool sack, bool ws)
{
	uint16_t mss = (uint16_t)(c->s->q->mtu - 40);

	*o++ = TCPOPT_MSS;
	*o++ = 4;
	*o++ = (uint8_t)(mss >> 8);
	*o++ = (uint8_t)mss;
	if (sack && ts) {
		*o++ = TCPOPT_SACKOK;
		*o++ = 2;
	} else if (sack) {
		*o++ = TCPOPT_NOP;
		*o++ = TCPOPT_NOP;
		*o++ = TCPOPT_SACKOK;
		*o++ = 2;
	}
	if (ts) {
		uint32_t v = rte_cpu_to_be_32(ts_now(c));
		uint32_t e = rte_cpu_to_be_32(c->ts_recent);
		if (!sack) {
			*o++ = TCPOPT_NOP;
			*o++ = TCPOPT_NOP;
		}
		*o++ = TCPOPT_TS;
		*o++ = 10;
		memcpy(o, &v, 4);
		memcpy(o + 4, &e, 4);
		o += 8;
	}
	if (ws) {
		*o++ = TCPOPT_NOP;
		*o++ = TCPOPT_WS;
		*o++ = 3;
		*o++ = c->rcv_wscale;
	}
	return o;
}

int tcp_send_segment(struct tcp_conn *c, uint32_t seq, uint32_t len,
		     uint8_t flags)
{
	struct stack *s = c->s;
	struct rte_mbuf *m;
	struct rte_tcp_hdr *th;
	uint8_t opts[40], *o = opts;
	uint32_t optlen, end, win;
	bool syn = flags & RTE_TCP_SYN_FLAG;

	if (syn) {
		bool synack = flags & RTE_TCP_ACK_FLAG;
		/* on a SYN-ACK, echo only what the peer offered */
		bool ts = synack ? (c->flags & TF_TS) : s->conf.tcp_timestamps;
		bool sack = synack ? (c->flags & TF_SACK) : s->conf.tcp_sack;
		bool ws = synack ? (c->flags & TF_WS) : s->conf.tcp_wscale;
		o = put_syn_options(c, o, ts, sack, ws);
	} else {
		if (c->flags & TF_TS) {
			uint32_t v = rte_cpu_to_be_32(ts_now(c));
			uint32_t e = rte_cpu_to_be_32(c->ts_recent);
			*o++ = TCPOPT_NOP;
			*o++ = TCPOPT_NOP;
			*o++ = TCPOPT_TS;
			*o++ = 10;
			memcpy(o, &v, 4);
			memcpy(o + 4, &e, 4);
			o += 8;
		}
		if ((c->flags & TF_SACK) && c->ooo != NULL &&
		    (flags & RTE_TCP_ACK_FLAG))
			o = put_sack_blocks(c, o, (c->flags & TF_TS) ? 3 : 4);
	}
	optlen = (uint32_t)(o - opts);
	/* options (SACK blocks above all) eat into the MSS: the frame must
	 * still fit the MTU, so carry less data, and no FIN if cut short */
	if (len > s->q->mtu - sizeof(struct rte_ipv4_hdr) - sizeof(*th) - optlen) {
		len = s->q->mtu - (uint32_t)sizeof(struct rte_ipv4_hdr) -
		      (uint32_t)sizeof(*th) - optlen;
		flags &= (uint8_t)~RTE_TCP_FIN_FLAG;
	}

	m = rte_pktmbuf_alloc(s->q->pool);
	if (m == NULL) {
		s->cnt.port_alloc_failed++;
		return -ENOMEM;
	}
	{
		char *p = rte_pktmbuf_append(m, (uint16_t)(sizeof(struct rte_ipv4_hdr) +
						      sizeof(*th) + optlen + len));
		if (p == NULL) {
			rte_pktmbuf_free(m);
			s->cnt.port_alloc_failed++;
			return -EMSGSIZE;
		}
		th = (struct rte_tcp_hdr *)(p + sizeof(struct rte_ipv4_hdr));
	}
	th->src_port = rte_cpu_to_be_16(c->lport);
	th->dst_port = rte_cpu_to_be_16(c->rport);
	th->sent_seq = rte_cpu_to_be_32(seq);
	th->data_off = (uint8_t)(((sizeof(*th) + optlen) / 4) << 4);
	th->tcp_urp = 0;
	memcpy(th + 1, opts, optlen);
	if (len > 0)
		sq_copy(c, seq - c->snd_una, (uint8_t *)(th + 1) + optlen, len);

	if (flags & RTE_TCP_ACK_FLAG) {
		win = syn ? tcp_rcv_window(c) : adv_window(c);
		/* the window in a SYN is never scaled (RFC 7323 2.2): the
		 * right edge is what the peer is told, not our buffer */
		if (syn && win > TCP_MAXWIN)
			win = TCP_MAXWIN;
		th->recv_ack = rte_cpu_to_be_32(c->rcv_nxt);
		c->last_ack_sent = c->rcv_nxt;
		c->rcv_adv = c->rcv_nxt + win;
		win = syn ? win : win >> c->rcv_wscale;
		th->rx_win = rte_cpu_to_be_16((uint16_t)(win > TCP_MAXWIN ?
							 TCP_MAXWIN : win));
		c->flags &= ~(TF_ACKNOW | TF_DELACK);
		c->unacked_segs = 0;
		tw_cancel(&s->tw, &c->t_delack);
	} else {
		th->recv_ack = 0;
		win = tcp_rcv_window(c);
		th->rx_win = rte_cpu_to_be_16((uint16_t)(win > TCP_MAXWIN ?
							 TCP_MAXWIN : win));
	}
	th->tcp_flags = flags;

	end = seq + len + (syn ? 1 : 0) + ((flags & RTE_TCP_FIN_FLAG) ? 1 : 0);
	if (end != seq) {
		if (SEQ_LT(seq, c->snd_max)) {
			c->retransmits++;
			s->cnt.tcp_retransmits++;
		} else if (!(c->flags & (TF_TS | TF_RTT_TIMING))) {
			/* Karn: time only new data */
			c->flags |= TF_RTT_TIMING;
			c->rtt_seq = seq;
			c->rtt_start = s->now_ms;
		}
		if (SEQ_GT(end, c->snd_max))
			c->snd_max = end;
		if (!tw_armed(&c->t_rtx))
			tcp_arm_rtx(c);
	}
	c->bytes_out += len;
	s->cnt.tcp_tx_bytes += len;
	finish(s, m, c->rip, (uint16_t)(sizeof(*th) + optlen + len));
	return (int)len;
}

void tcp_send_ack_now(struct tcp_conn *c)
{
	tcp_send_segment(c, c->snd_nxt, 0, RTE_TCP_ACK_FLAG);
}

void tcp_send_reset_reply(struct stack *s, const struct rte_ipv4_hdr *ip,
			  const struct rte_tcp_hdr *th, uint32_t seg_len)
{
	struct rte_mbuf *m;
	struct rte_tcp_hdr *r;
	char *p;

	if (th->tcp_flags & RTE_TCP_RST_FLAG)
		return; /* never answer a RST */
	m = rte_pktmbuf_alloc(s->q->pool);
	if (m == NULL) {
		s->cnt.port_alloc_failed++;
		return;
	}
	p = rte_pktmbuf_append(m, (uint16_t)(sizeof(struct rte_ipv4_hdr) +
					     sizeof(*r)));
	if (p == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	memset(p, 0, sizeof(struct rte_ipv4_hdr) + sizeof(*r));
	r = (struct rte_tcp_hdr *)(p + sizeof(struct rte_ipv4_hdr));
	r->src_port = th->dst_port;
	r->dst_port = th->src_port;
	r->data_off = (sizeof(*r) / 4) << 4;
	if (th->tcp_flags & RTE_TCP_ACK_FLAG) {
		/* <SEQ=SEG.ACK><CTL=RST> */
		r->sent_seq = th->recv_ack;
		r->tcp_flags = RTE_TCP_RST_FLAG;
	} else {
		/* <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> */
		r->recv_ack = rte_cpu_to_be_32(rte_be_to_cpu_32(th->sent_seq) +
					       seg_len);
		r->tcp_flags = RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG;
	}
	s->cnt.tcp_rst_tx++;
	finish(s, m, ip->src_addr, sizeof(*r));
}

void tcp_send_cookie_synack(struct stack *s, const struct rte_ipv4_hdr *ip,
			    const struct rte_tcp_hdr *th, uint32_t iss,
			    uint16_t mss)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(s->q->pool);
	struct rte_tcp_hdr *r;
	uint8_t *o;
	char *p;

	if (m == NULL) {
		s->cnt.port_alloc_failed++;
		return;
	}
	p = rte_pktmbuf_append(m, (uint16_t)(sizeof(struct rte_ipv4_hdr) +
					     sizeof(*r) + 4));
	if (p == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	memset(p, 0, sizeof(struct rte_ipv4_hdr) + sizeof(*r) + 4);
	r = (struct rte_tcp_hdr *)(p + sizeof(struct rte_ipv4_hdr));
	r->src_port = th->dst_port;
	r->dst_port = th->src_port;
	r->sent_seq = rte_cpu_to_be_32(iss);
	r->recv_ack = rte_cpu_to_be_32(rte_be_to_cpu_32(th->sent_seq) + 1);
	r->data_off = ((sizeof(*r) + 4) / 4) << 4;
	r->tcp_flags = RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG;
	r->rx_win = RTE_BE16(TCP_MAXWIN);
	o = (uint8_t *)(r + 1);
	o[0] = TCPOPT_MSS;
	o[1] = 4;
	o[2] = (uint8_t)(mss >> 8);
	o[3] = (uint8_t)mss;
	finish(s, m, ip->src_addr, sizeof(*r) + 4);
}

/* The sequence number of our FIN once queued: right after the data. */
static inline uint32_t fin_seq(const struct tcp_conn *c)
{
	return c->snd_una + c->sq_len;
}

void tcp_output(struct tcp_conn *c)
{
	struct stack *s = c->s;
	bool sent = false;

	if (!tcps_synced(c->state)) {
		if ((c->flags & TF_ACKNOW) && c->state == TCPS_SYN_RECEIVED)
			tcp_send_segment(c, c->iss, 0,
					 RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
		return;
	}
	if ((c->flags & (TF_RECOVERY | TF_SACK)) == (TF_RECOVERY | TF_SACK))
		tcp_sack_output(c);
	for (;;) {
		uint32_t off = c->snd_nxt - c->snd_una;
		uint32_t avail = c->sq_len > off ? c->sq_len - off : 0;
		uint32_t wnd = c->snd_wnd < c->cwnd ? c->snd_wnd : c->cwnd;
		uint32_t inflight = c->snd_nxt - c->snd_una;
		uint32_t usable = wnd > inflight ? wnd - inflight : 0;

		if ((c->flags & (TF_RECOVERY | TF_SACK)) ==
		    (TF_RECOVERY | TF_SACK)) {
			/* RFC 6675 5 (C): new data only while the pipe and
			 * the peer's window allow */
			uint32_t pipe = tcp_sack_pipe(c);
			uint32_t byc = c->cwnd > pipe ? c->cwnd - pipe : 0;
			uint32_t byw = c->snd_wnd > inflight ?
					       c->snd_wnd - inflight : 0;
			usable = byc < byw ? byc : byw;
		}
		uint32_t len = avail;
		bool fin = false;
		uint8_t fl = RTE_TCP_ACK_FLAG;

		if (len > c->mss)
			len = c->mss;
		if (len > usable)
			len = usable;
		if (len > 0 && len < c->mss && len < avail &&
		    len < c->max_sndwnd / 2)
			len = 0; /* sender SWS avoidance (RFC 9293 3.8.6.2.1) */
		if (len > 0 && len == avail && len < c->mss &&
		    (c->flags & TF_NAGLE) && inflight > 0)
			len = 0; /* Nagle: one small segment in flight */
		if ((c->flags & TF_FIN_QUEUED) && off + len == c->sq_len &&
		    SEQ_LEQ(c->snd_nxt + len, fin_seq(c)) &&
		    (len > 0 || c->snd_nxt == fin_seq(c)))
			fin = true;
		if (len == 0 && !fin) {
			if (avail > 0 && inflight == 0 && c->snd_wnd == 0 &&
			    !tw_armed(&c->t_rtx))
				tcp_arm_persist(c);
			break;
		}
		if (fin)
			fl |= RTE_TCP_FIN_FLAG;
		if (len > 0 && len == avail)
			fl |= RTE_TCP_PSH_FLAG;
		{
			int n = tcp_send_segment(c, c->snd_nxt, len, fl);
			if (n < 0)
				break;
			if ((uint32_t)n < len) {
				len = (uint32_t)n; /* options took room */
				fin = false;
			}
		}
		sent = true;
		c->snd_nxt += len + (fin ? 1 : 0);
		if (fin) {
			c->flags |= TF_FIN_SENT;
			break;
		}
	}
	if (!sent && (c->flags & TF_ACKNOW))
		tcp_send_ack_now(c);
	/* room in the send buffer for a writer that was turned away; what it
	 * writes now is sent by the next pass of tcp_flush() */
	/* edge, not level: only when a worthwhile amount of room exists,
	 * so a writer that wants more than there is cannot spin us here */
	if ((c->flags & (TF_WANT_WRITABLE | TF_BLOCKED)) == TF_WANT_WRITABLE &&
	    tcp_send_space(c) >= tcp_send_lowat(c) &&
	    !(c->flags & (TF_APP_CLOSED | TF_ZOMBIE)) && c->cb != NULL &&
	    c->cb->on_writable != NULL && tcps_synced(c->state)) {
		c->flags &= ~TF_WANT_WRITABLE;
		c->cb->on_writable(c, c->user);
	}
	(void)s;
}
