/*
 * tcp_api.c: the stream API of tcp.h: listen, connect, send, shutdown,
 * close, abort, pause. See tcp.h for the contract.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_steer.h"
#include "tcpstack/tcp_internal.h"

/* The stats slot of port: its old one, a new one, or the spare. */
static struct tcp_listener_stats *listener_slot(struct tcp_stack *t,
						uint16_t port)
{
	struct tcp_listener_stats *st;

	for (uint32_t i = 0; i < t->nlst; i++)
		if (t->lst[i].port == port)
			return &t->lst[i];
	if (t->nlst == TCP_LISTENER_SLOTS)
		return &t->lst_spare;
	st = &t->lst[t->nlst];
	st->port = port;
	/* mgmt reads the slot's port once it sees the new count */
	__atomic_store_n(&t->nlst, t->nlst + 1, __ATOMIC_RELEASE);
	return st;
}

int tcp_listen(struct stack *s, const struct tcp_listen_opts *o,
	       tcp_accept_fn accept, void *listen_user,
	       struct tcp_listener **out)
{
	struct tcp_listener *l;

	if (o->port == 0 || accept == NULL)
		return -EINVAL;
	for (l = s->tcp->listeners; l != NULL; l = l->next)
		if (l->o.port == o->port)
			return -EADDRINUSE;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->o = *o;
	l->accept = accept;
	l->user = listen_user;
	l->st = listener_slot(s->tcp, o->port);
	l->st->listening = true;
	l->next = s->tcp->listeners;
	s->tcp->listeners = l;
	s->tcp->nstate[TCPS_LISTEN]++;
	if (out != NULL)
		*out = l;
	return 0;
}

void tcp_unlisten(struct stack *s, struct tcp_listener *l)
{
	struct tcp_listener **pp;

	for (pp = &s->tcp->listeners; *pp != NULL; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	if (!l->closed) {
		l->st->listening = false;
		s->tcp->nstate[TCPS_LISTEN]--;
	}
	l->closed = true;
	if (l->syn_pending == 0 && l->conns == 0)
		free(l);
}

int tcp_connect(struct stack *s, uint32_t dst_ip, uint16_t dst_port,
		const struct tcp_callbacks *cb, void *user,
		struct tcp_conn **out)
{
	struct tcp_stack *t = s->tcp;
	struct tcp_conn *c = NULL;
	uint32_t n = STACK_EPH_HI - STACK_EPH_LO + 1;

	for (uint32_t i = 0; i < n; i++) {
		uint16_t port = t->eph_next;
		t->eph_next = port >= STACK_EPH_HI ? (uint16_t)STACK_EPH_LO :
						    (uint16_t)(port + 1);
		/* the reply must reach this worker: only ports it owns */
		if (dp_steer_owner(s->steer_seed, s->nworkers, dst_ip, dst_port,
				   s->conf.addr, port) != s->id)
			continue;
		if (tcp_conn_lookup(s, dst_ip, dst_port, s->conf.addr, port) ==
		    NULL) {
			c = tcp_conn_new(s, dst_ip, dst_port, s->conf.addr, port);
			if (c == NULL)
				return -ENOMEM;
			break;
		}
	}
	if (c == NULL)
		return -EADDRNOTAVAIL;
	c->cb = cb;
	c->user = user;
	c->flags |= TF_ACTIVE | TF_APP_OWNED;
	c->cc = s->conf.tcp_cc;
	tcp_set_state(c, TCPS_SYN_SENT);
	c->iss = tcp_isn(s, c);
	c->snd_una = c->iss;
	c->snd_max = c->iss;
	c->snd_nxt = c->iss + 1;
	/* our SYN's options decide what we can use; the SYN-ACK confirms */
	if (s->conf.tcp_wscale)
		c->rcv_wscale = tcp_rcv_wscale(s);
	s->cnt.tcp_connects++;
	tcp_send_segment(c, c->iss, 0, RTE_TCP_SYN_FLAG);
	if (out != NULL)
		*out = c;
	return 0;
}

size_t tcp_send_space(const struct tcp_conn *c)
{
	uint32_t buf = c->s->conf.tcp_sndbuf;
	size_t space = c->sq_len >= buf ? 0 : buf - c->sq_len;
	size_t pooled = c->sq_tail != NULL ? rte_pktmbuf_tailroom(c->sq_tail) : 0;

	/* and what the worker's send mbuf budget still allows */
	pooled += (size_t)tcp_sq_room(c) *
		  rte_pktmbuf_data_room_size(c->s->q->pool);
	return space < pooled ? space : pooled;
}

/* Queues c to be woken when send mbufs come back (tcp_output.c). */
static void block_on_pool(struct tcp_conn *c)
{
	struct tcp_stack *t = c->s->tcp;

	c->flags |= TF_WANT_WRITABLE;
	if (c->flags & TF_BLOCKED)
		return;
	c->flags |= TF_BLOCKED;
	c->bnext = t->blocked;
	t->blocked = c;
}

/* True when the worker's send mbuf budget, not c's own buffer, is what
 * leaves c less than the low-water mark of room. */
static bool pool_limited(const struct tcp_conn *c)
{
	uint32_t buf = c->s->conf.tcp_sndbuf;
	size_t own = c->sq_len >= buf ? 0 : buf - c->sq_len;

	return tcp_send_space(c) < own && tcp_send_space(c) < tcp_send_lowat(c);
}

size_t tcp_send_lowat(const struct tcp_conn *c)
{
	size_t q = c->s->conf.tcp_sndbuf / 4;

	return q < TCP_SEND_LOWAT ? q : TCP_SEND_LOWAT;
}

size_t tcp_send_queued(const struct tcp_conn *c)
{
	return c->sq_len;
}

ssize_t tcp_send(struct tcp_conn *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t space, done = 0;

	if (c->flags & (TF_FIN_QUEUED | TF_APP_CLOSED | TF_ZOMBIE))
		return -EPIPE;
	switch (c->state) {
	case TCPS_SYN_SENT:
	case TCPS_SYN_RECEIVED:
	case TCPS_ESTABLISHED:
	case TCPS_CLOSE_WAIT:
		break;
	default:
		return -ENOTCONN;
	}
	space = tcp_send_space(c);
	if (len > space) {
		len = space;
		c->flags |= TF_WANT_WRITABLE;
		if (pool_limited(c))
			block_on_pool(c);
	}
	while (done < len) {
		struct rte_mbuf *m = c->sq_tail;
		uint16_t room = m != NULL ? rte_pktmbuf_tailroom(m) : 0;
		size_t n;

		if (room == 0) {
			struct tcp_stack *t = c->s->tcp;
			if (tcp_sq_room(c) == 0) {
				c->s->cnt.tcp_sndbuf_pool_full++;
				block_on_pool(c);
				break;
			}
			m = rte_pktmbuf_alloc(c->s->q->pool);
			if (m == NULL) {
				/* the pool itself is dry: wait like a writer
				 * over budget (tcp_tick retries) */
				c->s->cnt.port_alloc_failed++;
				block_on_pool(c);
				break;
			}
			t->sq_mbufs++;
			c->sq_nmb++;
			/* the send queue holds payload only: no headroom */
			m->data_off = 0;
			if (c->sq_tail != NULL)
				c->sq_tail->next = m;
			else
				c->sq_head = m;
			c->sq_tail = m;
			room = rte_pktmbuf_tailroom(m);
		}
		n = len - done < room ? len - done : room;
		memcpy(rte_pktmbuf_mtod_offset(m, uint8_t *, m->data_len),
		       p + done, n);
		m->data_len = (uint16_t)(m->data_len + n);
		m->pkt_len = m->data_len; /* each is its own segment list */
		done += n;
	}
	c->sq_len += (uint32_t)done;
	if (done > 0)
		tcp_conn_want_output(c);
	if (done == 0 && len > 0)
		return -ENOBUFS;
	return (ssize_t)done;
}

int tcp_shutdown(struct tcp_conn *c)
{
	if (c->flags & (TF_FIN_QUEUED | TF_ZOMBIE))
		return 0;
	switch (c->state) {
	case TCPS_SYN_SENT:
		tcp_conn_drop(c, 0);
		return 0;
	case TCPS_SYN_RECEIVED:
	case TCPS_ESTABLISHED:
		tcp_set_state(c, TCPS_FIN_WAIT_1);
		break;
	case TCPS_CLOSE_WAIT:
		tcp_set_state(c, TCPS_LAST_ACK);
		break;
	default:
		return -ENOTCONN;
	}
	c->flags |= TF_FIN_QUEUED;
	tcp_conn_want_output(c);
	return 0;
}

void tcp_abort(struct tcp_conn *c)
{
	if (c->flags & TF_ZOMBIE)
		return;
	c->flags |= TF_APP_CLOSED;
	if (c->state != TCPS_SYN_SENT && c->state != TCPS_TIME_WAIT &&
	    c->state != TCPS_CLOSED) {
		/* <SEQ=SND.NXT><CTL=RST> (RFC 9293 3.10.5) */
		tcp_send_segment(c, c->snd_nxt, 0,
				 RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG);
		c->s->cnt.tcp_rst_tx++;
	}
	tcp_conn_drop(c, 0);
}

void tcp_close(struct tcp_conn *c)
{
	if (c->flags & TF_ZOMBIE)
		return;
	if (c->rq_len > 0) {
		/* unread data: RFC 2525 2.17, reset rather than pretend */
		tcp_abort(c);
		return;
	}
	c->flags |= TF_APP_CLOSED;
	c->flags &= ~TF_WANT_WRITABLE;
	switch (c->state) {
	case TCPS_SYN_SENT:
		tcp_conn_drop(c, 0);
		return;
	case TCPS_FIN_WAIT_2:
		tw_arm(&c->s->tw, &c->t_rtx,
		       c->s->now_ms + c->s->conf.tcp_fin_timeout_ms);
		return;
	case TCPS_TIME_WAIT:
	case TCPS_CLOSING:
	case TCPS_LAST_ACK:
	case TCPS_FIN_WAIT_1:
		return;
	default:
		tcp_shutdown(c);
		return;
	}
}

void tcp_recv_pause(struct tcp_conn *c, bool paused)
{
	if (paused) {
		c->flags |= TF_PAUSED;
		return;
	}
	if (!(c->flags & TF_PAUSED))
		return;
	c->flags &= ~TF_PAUSED;
	tcp_deliver(c);
	/* the window reopened: say so */
	c->flags |= TF_ACKNOW;
	tcp_conn_want_output(c);
}

void tcp_want_writable(struct tcp_conn *c)
{
	c->flags |= TF_WANT_WRITABLE;
	/* at once only if there is worthwhile room now; otherwise the ACK
	 * or the mbufs that make room will call back */
	if (pool_limited(c)) {
		c->s->cnt.tcp_sndbuf_pool_full++;
		block_on_pool(c);
	} else if (!(c->flags & TF_BLOCKED) &&
		   tcp_send_space(c) >= tcp_send_lowat(c)) {
		tcp_conn_want_output(c);
	}
}

void tcp_set_user(struct tcp_conn *c, void *user)
{
	c->user = user;
}

void tcp_set_nagle(struct tcp_conn *c, bool on)
{
	if (on)
		c->flags |= TF_NAGLE;
	else
		c->flags &= ~TF_NAGLE;
}

void tcp_conn_get_info(const struct tcp_conn *c, struct tcp_conn_info *i)
{
	memset(i, 0, sizeof(*i));
	i->local_ip = c->lip;
	i->remote_ip = c->rip;
	i->local_port = c->lport;
	i->remote_port = c->rport;
	i->state = tcp_state_names[c->state];
	i->srtt_us = (c->srtt8 >> 3) * 1000;
	i->rto_ms = c->rto;
	i->cwnd = c->cwnd;
	i->mss = c->mss;
	i->bytes_in = c->bytes_in;
	i->bytes_out = c->bytes_out;
	i->retransmits = c->retransmits;
}
