/*
 * tcp_conn.c: connection pool, 4-tuple table, lifetimes, and the end of
 * event work (pending output, deferred frees).
 *
 * The pool is one array sized from [tcp] max_conns, handed out with a bump
 * pointer and a free list, so pages never used stay untouched. The table
 * is a power-of-two array of chains keyed by a SipHash of the 4-tuple: a
 * peer cannot aim collisions at one chain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_random.h>

#include "common/log.h"
#include "common/siphash.h"
#include "tcpstack/tcp_internal.h"

const char *const tcp_state_names[TCPS_COUNT] = {
	[TCPS_CLOSED] = "CLOSED",
	[TCPS_LISTEN] = "LISTEN",
	[TCPS_SYN_SENT] = "SYN-SENT",
	[TCPS_SYN_RECEIVED] = "SYN-RECEIVED",
	[TCPS_ESTABLISHED] = "ESTABLISHED",
	[TCPS_CLOSE_WAIT] = "CLOSE-WAIT",
	[TCPS_FIN_WAIT_1] = "FIN-WAIT-1",
	[TCPS_CLOSING] = "CLOSING",
	[TCPS_LAST_ACK] = "LAST-ACK",
	[TCPS_FIN_WAIT_2] = "FIN-WAIT-2",
	[TCPS_TIME_WAIT] = "TIME-WAIT",
};

static const char *const state_labels[TCPS_COUNT] = {
	[TCPS_CLOSED] = "closed",
	[TCPS_LISTEN] = "listen",
	[TCPS_SYN_SENT] = "syn_sent",
	[TCPS_SYN_RECEIVED] = "syn_received",
	[TCPS_ESTABLISHED] = "established",
	[TCPS_CLOSE_WAIT] = "close_wait",
	[TCPS_FIN_WAIT_1] = "fin_wait_1",
	[TCPS_CLOSING] = "closing",
	[TCPS_LAST_ACK] = "last_ack",
	[TCPS_FIN_WAIT_2] = "fin_wait_2",
	[TCPS_TIME_WAIT] = "time_wait",
};

const char *tcp_state_label(unsigned st)
{
	return st < TCPS_COUNT ? state_labels[st] : "?";
}

const char *tcp_close_reason_str(enum tcp_close_reason r)
{
	switch (r) {
	case TCP_CLOSE_RESET: return "reset by peer";
	case TCP_CLOSE_TIMEOUT: return "timed out";
	case TCP_CLOSE_REFUSED: return "refused";
	case TCP_CLOSE_UNREACHABLE: return "unreachable";
	case TCP_CLOSE_SHUTDOWN: return "stack shutting down";
	case TCP_CLOSE_DONE: return "closed";
	}
	return "?";
}

int tcp_stack_init(struct stack *s)
{
	struct tcp_stack *t;
	uint32_t nb = 1;

	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->max_conns = s->conf.tcp_max_conns;
	/* calloc'd pages are mapped on first touch: an unused pool is free */
	t->pool = calloc(t->max_conns, sizeof(*t->pool));
	while (nb < t->max_conns && nb < (1u << 30))
		nb <<= 1;
	t->bucket = calloc(nb, sizeof(*t->bucket));
	if (t->pool == NULL || t->bucket == NULL) {
		free(t->pool);
		free(t->bucket);
		free(t);
		return -ENOMEM;
	}
	t->hmask = nb - 1;
	for (unsigned i = 0; i < sizeof(t->secret); i += 8) {
		uint64_t r = rte_rand();
		memcpy(t->secret + i, &r, 8);
	}
	t->eph_next = (uint16_t)(STACK_EPH_LO +
				 rte_rand() % (STACK_EPH_HI - STACK_EPH_LO + 1));
	s->tcp = t;
	tcp_set_sq_budget(s, 1);
	ratelimit_init(&t->challenge_rl, s->conf.tcp_challenge_ack_limit,
		       s->conf.tcp_challenge_ack_limit, s->now_ms);
	return 0;
}

static uint32_t tuple_hash(const struct tcp_stack *t, uint32_t rip,
			   uint16_t rport, uint32_t lip, uint16_t lport)
{
	uint32_t k[3] = { rip, lip, (uint32_t)rport << 16 | lport };

	return (uint32_t)siphash24(t->secret, k, sizeof(k));
}

struct tcp_conn *tcp_conn_lookup(struct stack *s, uint32_t rip, uint16_t rport,
				 uint32_t lip, uint16_t lport)
{
	struct tcp_stack *t = s->tcp;
	struct tcp_conn *c = t->bucket[tuple_hash(t, rip, rport, lip, lport) &
				       t->hmask];

	for (; c != NULL; c = c->hnext)
		if (c->rip == rip && c->rport == rport && c->lport == lport &&
		    c->lip == lip)
			return c;
	return NULL;
}

uint32_t tcp_isn(const struct stack *s, const struct tcp_conn *c)
{
	/* RFC 6528: ISN = M + F(4-tuple, secret), M a 4 us clock; the
	 * stack's clock is in ms, so M = ms * 250 */
	uint32_t k[4] = { c->lip, c->rip, (uint32_t)c->lport << 16 | c->rport,
			  0x15 };

	return (uint32_t)(s->now_ms * 250) +
	       (uint32_t)siphash24(s->tcp->secret, k, sizeof(k));
}

struct tcp_conn *tcp_conn_new(struct stack *s, uint32_t rip, uint16_t rport,
			      uint32_t lip, uint16_t lport)
{
	struct tcp_stack *t = s->tcp;
	struct tcp_conn *c;
	uint32_t h, k[4];

	if (t->free != NULL) {
		c = t->free;
		t->free = c->hnext;
	} else if (t->pool_used < t->max_conns) {
		c = &t->pool[t->pool_used++];
	} else {
		s->cnt.tcp_conn_table_full++;
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->rip = rip;
	c->rport = rport;
	c->lip = lip;
	c->lport = lport;
	c->state = TCPS_CLOSED;
	t->nstate[TCPS_CLOSED]++;
	c->rto = s->conf.tcp_rto_init_ms;
	c->mss = 536; /* RFC 9293 3.7.1 default until the peer says more */
	c->last_rcv_ms = s->now_ms;
	if (s->conf.tcp_keepalive)
		c->flags |= TF_KEEPALIVE;
	k[0] = lip;
	k[1] = rip;
	k[2] = (uint32_t)lport << 16 | rport;
	k[3] = 0x75;
	c->ts_offset = (uint32_t)siphash24(t->secret, k, sizeof(k));
	tw_timer_init(&c->t_rtx, tcp_timer_rtx_fire);
	tw_timer_init(&c->t_delack, tcp_timer_delack_fire);
	h = tuple_hash(t, rip, rport, lip, lport) & t->hmask;
	c->hnext = t->bucket[h];
	t->bucket[h] = c;
	t->nconns++;
	return c;
}

static void unhash(struct tcp_stack *t, struct tcp_conn *c)
{
	struct tcp_conn **pp = &t->bucket[tuple_hash(t, c->rip, c->rport,
						      c->lip, c->lport) &
					   t->hmask];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			return;
		}
}

static void free_mbuf_list(struct rte_mbuf *m)
{
	while (m != NULL) {
		struct rte_mbuf *n = m->next;
		m->next = NULL;
		rte_pktmbuf_free(m);
		m = n;
	}
}

void tcp_conn_drop(struct tcp_conn *c, enum tcp_close_reason reason)
{
	struct stack *s = c->s;

	if (c->flags & TF_ZOMBIE)
		return;
	if (c->listener != NULL) {
		struct tcp_listener *l = c->listener;
		if (c->state == TCPS_SYN_RECEIVED) {
			l->syn_pending--;
			l->st->syn_pending--;
		} else if (c->flags & TF_APP_OWNED) {
			l->conns--;
			l->st->open--;
		}
		/* an unlistened listener lives until its last connection */
		if (l->closed && l->syn_pending == 0 && l->conns == 0)
			free(l);
		c->listener = NULL;
	}
	tcp_set_state(c, TCPS_CLOSED);
	c->flags |= TF_ZOMBIE;
	tw_cancel(&s->tw, &c->t_rtx);
	tw_cancel(&s->tw, &c->t_delack);
	c->znext = s->tcp->zombies;
	s->tcp->zombies = c;
	s->cnt.tcp_closed++;
	if ((c->flags & (TF_APP_OWNED | TF_APP_CLOSED)) == TF_APP_OWNED &&
	    reason != 0 && c->cb != NULL && c->cb->on_closed != NULL) {
		c->flags |= TF_APP_CLOSED;
		c->cb->on_closed(c, c->user, reason);
	}
	c->flags |= TF_APP_CLOSED;
}

static void conn_free(struct stack *s, struct tcp_conn *c)
{
	struct tcp_stack *t = s->tcp;

	unhash(t, c);
	tcp_sq_free(c);
	free_mbuf_list(c->ooo);
	free_mbuf_list(c->rq_head);
	c->ooo = c->rq_head = c->rq_tail = NULL;
	c->hnext = t->free;
	t->free = c;
	t->nconns--;
	t->nstate[TCPS_CLOSED]--;
}

void tcp_conn_want_output(struct tcp_conn *c)
{
	if (c->flags & (TF_OUTQ | TF_ZOMBIE))
		return;
	c->flags |= TF_OUTQ;
	c->onext = c->s->tcp->outq;
	c->s->tcp->outq = c;
}

void tcp_flush(struct stack *s)
{
	struct tcp_stack *t = s->tcp;

	if (t == NULL)
		return;
	/* output may queue more output (callbacks): loop until quiet */
	while (t->outq != NULL) {
		struct tcp_conn *c = t->outq;
		t->outq = c->onext;
		c->flags &= ~TF_OUTQ;
		if (!(c->flags & TF_ZOMBIE))
			tcp_output(c);
	}
	while (t->zombies != NULL) {
		struct tcp_conn *c = t->zombies;
		t->zombies = c->znext;
		conn_free(s, c);
	}
}

void tcp_stack_fini(struct stack *s)
{
	struct tcp_stack *t = s->tcp;
	struct tcp_listener *l, *ln;

	if (t == NULL)
		return;
	for (uint32_t i = 0; i < t->pool_used; i++) {
		struct tcp_conn *c = &t->pool[i];
		if (c->s == s && c->state != TCPS_CLOSED &&
		    !(c->flags & TF_ZOMBIE))
			tcp_conn_drop(c, TCP_CLOSE_SHUTDOWN);
	}
	t->outq = NULL; /* no output while shutting down */
	while (t->zombies != NULL) {
		struct tcp_conn *c = t->zombies;
		t->zombies = c->znext;
		conn_free(s, c);
	}
	for (l = t->listeners; l != NULL; l = ln) {
		ln = l->next;
		free(l);
	}
	free(t->pool);
	free(t->bucket);
	free(t);
	s->tcp = NULL;
}

uint32_t tcp_live_conns(const struct stack *s)
{
	return s->tcp != NULL ? s->tcp->nconns : 0;
}

#define RD(p) __atomic_load_n(&(p), __ATOMIC_RELAXED)

void tcp_state_counts(const struct stack *s, uint32_t out[TCP_NSTATES])
{
	const struct tcp_stack *t = s->tcp;

	for (unsigned i = 0; i < TCP_NSTATES; i++)
		out[i] = t != NULL ? RD(t->nstate[i]) : 0;
}

unsigned tcp_listener_count(const struct stack *s)
{
	return s->tcp != NULL ? __atomic_load_n(&s->tcp->nlst,
						__ATOMIC_ACQUIRE) : 0;
}

bool tcp_listener_get_stats(const struct stack *s, unsigned i,
			    struct tcp_listener_stats *out)
{
	const struct tcp_listener_stats *l;

	if (i >= tcp_listener_count(s))
		return false;
	l = &s->tcp->lst[i];
	out->port = l->port; /* set before nlst was published */
	out->listening = RD(l->listening);
	out->open = RD(l->open);
	out->syn_pending = RD(l->syn_pending);
	out->accepted = RD(l->accepted);
	out->refused = RD(l->refused);
	out->over_limit = RD(l->over_limit);
	out->syncookies = RD(l->syncookies);
	return true;
}
