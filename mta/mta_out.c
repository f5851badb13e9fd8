/*
 * mta_out.c: outbound delivery on a worker (the contract is in mta_out.h).
 *
 * Three kinds of object:
 *   dlv   one job being delivered: its addresses, which recipients are
 *         still to do, the message in flight. Freed when the job is
 *         handed back.
 *   conn  one outbound TCP connection and its SMTP client engine;
 *         attached to a dlv, idle in the cache, or quitting. Freed (reaped)
 *         at the start of the next poll or tick once its TCP handle is
 *         gone, never inside a callback of the stack or the engine.
 *   the kick list: deliveries that have a next step to take (DNS answer
 *         in, a connection failed); processed from poll and tick, so that
 *         no step runs inside a callback of the stack or of mta_dns.
 */
#include "mta/mta_out.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "tcpstack/udp.h"

#define ADDRS_MAX 32          /* addresses tried per job */
#define QUIT_WAIT_MS 10000    /* for the reply to QUIT (the engine: 5 min) */
#define KEY_MAX (MTA_HOST_MAX + 16)
#define NOMEM_MAX 64

struct dlv;

struct conn {
	struct mta_out *o;
	struct conn *next, *prev;       /* o->conns: every live conn */
	struct conn *inext, *iprev;     /* o->idle: LRU, oldest first */
	struct tcp_conn *tc;            /* NULL once closed or aborted */
	struct smtp_client *cl;
	struct dlv *d;                  /* NULL when idle or quitting */
	uint8_t *out;
	size_t out_len, out_cap;
	uint64_t deadline;              /* connect or engine timer, 0: none */
	uint64_t idle_until;
	uint32_t ip;
	uint16_t port;
	bool connecting, idle, quitting, dead, reaping;
	char key[KEY_MAX];
	char relay[MTA_HOST_MAX + 32];  /* "name[a.b.c.d]:port" */
};

enum dlv_state {
	D_WAITING = 0,   /* in the FIFO */
	D_RESOLVE,       /* to resolve (kicked) */
	D_DNS,           /* a lookup in flight */
	D_NEXT_ADDR,     /* to connect to the next address (kicked) */
	D_CONN,          /* a connection is attached */
	D_RESOLVE_BUSY,  /* mta_dns had no lookup slot: again at a tick */
	D_FINISH,        /* to finish (kicked) */
	D_DONE,          /* on the done list */
};

struct dlv_addr {
	uint32_t ip;
	char name[MTA_DNS_NAME_MAX + 1];
};

struct dlv {
	struct mta_out *o;
	struct mta_job *j;
	struct dlv *next, *prev;        /* o->active */
	struct dlv *qnext;              /* o->waiting, o->done */
	struct dlv *knext;              /* o->kick */
	enum dlv_state state;
	bool kicked, reused, any_reply;
	struct conn *c;
	unsigned n_addrs, next_addr;
	struct dlv_addr *addrs;         /* [ADDRS_MAX] */
	uint32_t *off;                  /* [nmsg]: first of msg i in pend */
	uint8_t *pend;                  /* [sum nrcpt]: 1 still to do */
	uint32_t *idx, *map;            /* [max nrcpt]: scratch for send */
	uint32_t next_msg, inflight, inflight_n;
	char key[KEY_MAX];
};

struct mta_out {
	struct stack *st;
	unsigned worker;
	struct mta_out_conf conf;
	char *helo;
	mta_out_done_fn done;
	void *user;
	struct mta_dns *dns;
	int udp_port[MTA_DNS_RESOLVERS_MAX];
	uint64_t now;
	struct conn *conns;
	struct conn *idle_head, *idle_tail;
	uint32_t n_idle;
	struct dlv *active;
	uint32_t n_active;
	struct dlv *wait_head, *wait_tail;
	struct dlv *done_head, *done_tail;
	struct dlv *kick;
	/* jobs that got no dlv (out of memory), handed back by poll */
	struct mta_job *nomem[NOMEM_MAX];
	unsigned n_nomem;
	bool stopped;
	struct mta_out_stats st_;
};

static const struct tcp_callbacks conn_cb;
static const struct smtp_client_ops client_ops;

static uint64_t now_ms(const struct mta_out *o)
{
	return o->st->now_ms > o->now ? o->st->now_ms : o->now;
}

static void ip_str(uint32_t ip, char *buf, size_t len)
{
	struct in_addr a = { .s_addr = ip };

	if (inet_ntop(AF_INET, &a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/* snprintf that cuts silently: log and reply texts are bounded. */
static void strfmt(char *dst, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void strfmt(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

/* Appends "; text" (or text) to job->why, cut at its size. */
static void why_add(struct mta_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void why_add(struct mta_job *j, const char *fmt, ...)
{
	size_t n = strlen(j->why);
	va_list ap;

	if (n + 3 >= sizeof(j->why))
		return;
	if (n) {
		memcpy(j->why + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(j->why + n, sizeof(j->why) - n, fmt, ap);
	va_end(ap);
}

static void set_reply(struct smtp_client_reply *r, uint16_t code,
		      const char *enh, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->code = code;
	strfmt(r->enh, sizeof(r->enh), "%s", enh);
	strfmt(r->text, sizeof(r->text), "%s", text);
	r->stage = SMTP_CLIENT_CLOSED;
	r->local = true;
}

static const char *status_str(enum smtp_client_status s)
{
	switch (s) {
	case SMTP_RCPT_DELIVERED:
		return "sent";
	case SMTP_RCPT_BOUNCED:
		return "bounced";
	default:
		return "deferred";
	}
}

static void log_rcpt(const struct mta_job_msg *m, const struct mta_job_rcpt *r,
		     const char *relay)
{
	const char *addr = "?";

	if (m->env && r->idx < m->env->nrcpt)
		addr = m->env->rcpt[r->idx].addr;
	LOG(LOG_INFO, "mta_out: %s: to=<%s>, relay=%s, dsn=%s, status=%s "
	    "(%s%u %s %s)", m->env ? m->env->qid : "?", addr, relay,
	    r->reply.enh, status_str(r->status),
	    r->reply.local ? "local: " : "", r->reply.code, r->reply.enh,
	    r->reply.text);
}

/* ---- the kick list --------------------------------------------------- */

static void kick(struct dlv *d, enum dlv_state s)
{
	d->state = s;
	if (d->kicked)
		return;
	d->kicked = true;
	d->knext = d->o->kick;
	d->o->kick = d;
}

static void unkick(struct dlv *d)
{
	struct dlv **pp = &d->o->kick;

	if (!d->kicked)
		return;
	while (*pp != NULL && *pp != d)
		pp = &(*pp)->knext;
	if (*pp == d)
		*pp = d->knext;
	d->kicked = false;
}

/* ---- connections ----------------------------------------------------- */

static void idle_unlink(struct conn *c)
{
	struct mta_out *o = c->o;

	if (!c->idle)
		return;
	if (c->iprev)
		c->iprev->inext = c->inext;
	else
		o->idle_head = c->inext;
	if (c->inext)
		c->inext->iprev = c->iprev;
	else
		o->idle_tail = c->iprev;
	c->inext = c->iprev = NULL;
	c->idle = false;
	o->n_idle--;
}

static void idle_push(struct conn *c)
{
	struct mta_out *o = c->o;

	c->idle = true;
	c->iprev = o->idle_tail;
	c->inext = NULL;
	if (o->idle_tail)
		o->idle_tail->inext = c;
	else
		o->idle_head = c;
	o->idle_tail = c;
	o->n_idle++;
}

/* Marks a conn whose TCP handle is gone; freed by reap(). */
static void conn_dead(struct conn *c)
{
	idle_unlink(c);
	if (c->d && c->d->c == c)
		c->d->c = NULL;
	c->d = NULL;
	c->dead = true;
}

static void conn_free(struct conn *c)
{
	struct mta_out *o = c->o;

	if (c->prev)
		c->prev->next = c->next;
	else
		o->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	o->st_.conns_live--;
	smtp_client_free(c->cl);
	free(c->out);
	free(c);
}

static void reap(struct mta_out *o)
{
	struct conn *c = o->conns, *n;

	for (; c != NULL; c = n) {
		n = c->next;
		if (c->dead && c->tc == NULL)
			conn_free(c);
	}
}

static void conn_abort(struct conn *c)
{
	if (c->tc) {
		tcp_abort(c->tc);
		c->tc = NULL;
	}
	conn_dead(c);
}

static void flush_out(struct conn *c)
{
	ssize_t n;

	if (c->tc == NULL || c->out_len == 0)
		return;
	n = tcp_send(c->tc, c->out, c->out_len);
	if (n > 0) {
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	} else if (n < 0) {
		c->out_len = 0;
	}
}

/* After every call into the engine: the next data block while the send
 * buffer has room, and the engine's timer. */
static void conn_pump(struct conn *c)
{
	uint32_t ms;

	while (c->cl && c->tc && !c->dead && c->out_len == 0 &&
	       smtp_client_stage(c->cl) == SMTP_CLIENT_DATA_BLOCK) {
		/* a block waits for real room, not a few bytes */
		if (tcp_send_space(c->tc) < tcp_send_lowat(c->tc)) {
			tcp_want_writable(c->tc);
			break;
		}
		smtp_client_drained(c->cl);
	}
	if (c->dead || c->cl == NULL) {
		c->deadline = 0;
		return;
	}
	ms = smtp_client_timeout_ms(c->cl);
	/* a job waits on a refused greeting's QUIT: not for minutes */
	if ((c->quitting || smtp_client_stage(c->cl) == SMTP_CLIENT_QUIT) &&
	    (ms == 0 || ms > QUIT_WAIT_MS))
		ms = QUIT_WAIT_MS;
	c->deadline = ms ? now_ms(c->o) + ms : 0;
}

static struct conn *conn_new(struct mta_out *o, const char *name,
			     uint32_t ip, uint16_t port, const char *key)
{
	struct smtp_client_conf cc = {
		.helo_name = o->helo,
		.data_block = o->conf.data_block,
	};
	struct conn *c = calloc(1, sizeof(*c));
	char a[INET_ADDRSTRLEN];

	if (c == NULL)
		return NULL;
	c->o = o;
	c->cl = smtp_client_new(&cc, &client_ops, c);
	if (c->cl == NULL) {
		free(c);
		return NULL;
	}
	c->ip = ip;
	c->port = port;
	strfmt(c->key, sizeof(c->key), "%s", key);
	ip_str(ip, a, sizeof(a));
	strfmt(c->relay, sizeof(c->relay), "%s[%s]:%u", name, a,
		 (unsigned)port);
	c->next = o->conns;
	if (o->conns)
		o->conns->prev = c;
	o->conns = c;
	o->st_.conns_live++;
	return c;
}

/* ---- deliveries ------------------------------------------------------ */

static void dlv_finish(struct dlv *d);
static void dlv_send_next(struct dlv *d);

static bool dlv_pending(const struct dlv *d)
{
	const struct mta_job *j = d->j;

	for (uint32_t i = 0; i < j->nmsg; i++)
		for (uint32_t k = 0; k < j->msg[i].nrcpt; k++)
			if (d->pend[d->off[i] + k])
				return true;
	return false;
}

/* Every recipient still to do gets status and reply (when it has none
 * of its own yet, or force). */
static void dlv_fail_all(struct dlv *d, enum smtp_client_status st,
			 uint16_t code, const char *enh, const char *text,
			 bool force)
{
	struct mta_job *j = d->j;

	for (uint32_t i = 0; i < j->nmsg; i++) {
		struct mta_job_msg *m = &j->msg[i];

		for (uint32_t k = 0; k < m->nrcpt; k++) {
			if (!d->pend[d->off[i] + k])
				continue;
			if (force || m->rcpt[k].reply.code == 0 ||
			    st != SMTP_RCPT_DEFERRED) {
				m->rcpt[k].status = st;
				set_reply(&m->rcpt[k].reply, code, enh, text);
			}
			d->pend[d->off[i] + k] = 0;
			log_rcpt(m, &m->rcpt[k], "none");
		}
	}
}

static void dlv_unlink_active(struct dlv *d)
{
	struct mta_out *o = d->o;

	if (d->prev)
		d->prev->next = d->next;
	else
		o->active = d->next;
	if (d->next)
		d->next->prev = d->prev;
	d->next = d->prev = NULL;
	o->n_active--;
}

static void done_push(struct dlv *d)
{
	struct mta_out *o = d->o;

	d->state = D_DONE;
	d->qnext = NULL;
	if (o->done_tail)
		o->done_tail->qnext = d;
	else
		o->done_head = d;
	o->done_tail = d;
}

/* The job is over: the rest deferred with why, counters, done list. */
static void dlv_finish(struct dlv *d)
{
	struct mta_out *o = d->o;
	struct mta_job *j = d->j;

	if (d->state == D_DONE)
		return;
	if (o->dns)
		(void)mta_dns_cancel(o->dns, d);
	if (d->c) {
		d->c->d = NULL;
		d->c = NULL;
	}
	if (dlv_pending(d)) {
		char text[SMTP_CLIENT_TEXT_MAX];

		if (!d->any_reply)
			j->host_failed = true;
		strfmt(text, sizeof(text), "%s",
			 j->why[0] ? j->why : "no host could be reached");
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.4.1", text, false);
	}
	for (uint32_t i = 0; i < j->nmsg; i++)
		for (uint32_t k = 0; k < j->msg[i].nrcpt; k++) {
			switch (j->msg[i].rcpt[k].status) {
			case SMTP_RCPT_DELIVERED:
				o->st_.rcpt_delivered++;
				break;
			case SMTP_RCPT_BOUNCED:
				o->st_.rcpt_bounced++;
				break;
			default:
				o->st_.rcpt_deferred++;
			}
		}
	unkick(d);
	dlv_unlink_active(d);
	done_push(d);
}

static void dlv_free(struct dlv *d)
{
	free(d->addrs);
	free(d->off);
	free(d->pend);
	free(d->idx);
	free(d->map);
	free(d);
}

static void dlv_set_remote(struct dlv *d, const struct conn *c)
{
	strfmt(d->j->remote_mta, sizeof(d->j->remote_mta), "%s", c->relay);
	d->j->remote_ip = c->ip;
}

/* Connects to the next address; the job is over when none is left. */
static void dlv_connect_next(struct dlv *d)
{
	struct mta_out *o = d->o;

	if (!dlv_pending(d)) {
		dlv_finish(d);
		return;
	}
	while (d->next_addr < d->n_addrs) {
		struct dlv_addr *a = &d->addrs[d->next_addr++];
		struct conn *c;
		int rc;

		/* a fresh connection while the idle cache fills the
		 * worker's slots: the oldest idle one goes */
		if (o->st_.conns_live >= o->conf.max_conns && o->idle_head) {
			struct conn *old = o->idle_head;

			idle_unlink(old);
			old->quitting = true;
			if (smtp_client_quit(old->cl) == 0)
				conn_pump(old);
			else
				conn_abort(old);
		}
		c = conn_new(o, a->name, a->ip, d->j->nh.port, d->key);
		if (c == NULL) {
			why_add(d->j, "%s: out of memory", a->name);
			continue;
		}
		c->connecting = true;
		c->d = d;
		d->c = c;
		d->state = D_CONN;
		o->st_.connects++;
		rc = tcp_connect(o->st, a->ip, d->j->nh.port, &conn_cb, c,
				 &c->tc);
		if (rc == 0) {
			if (c->dead) /* on_closed came inside tcp_connect */
				c->tc = NULL;
			else
				c->deadline = now_ms(o) +
					      o->conf.connect_timeout_ms;
			return;
		}
		c->tc = NULL;
		o->st_.connect_failures++;
		why_add(d->j, "connect to %s: %s", c->relay,
			rc == -EADDRNOTAVAIL ? "no local port" : strerror(-rc));
		conn_dead(c);
	}
	dlv_finish(d);
}

static void dns_done(void *user, const struct mta_dns_result *r)
{
	struct dlv *d = user;
	struct mta_job *j = d->j;
	char text[SMTP_CLIENT_TEXT_MAX];

	switch (r->status) {
	case MTA_DNS_OK:
		d->n_addrs = 0;
		d->next_addr = 0;
		for (unsigned h = 0; h < r->n_hosts; h++)
			for (unsigned i = 0; i < r->hosts[h].n_addrs &&
			     d->n_addrs < ADDRS_MAX; i++) {
				struct dlv_addr *a = &d->addrs[d->n_addrs++];

				a->ip = r->hosts[h].addrs[i];
				strfmt(a->name, sizeof(a->name), "%s",
					 r->hosts[h].name);
			}
		kick(d, D_NEXT_ADDR);
		return;
	case MTA_DNS_TEMP:
		d->o->st_.dns_failures++;
		j->host_failed = true;
		why_add(j, "%s", r->reason[0] ? r->reason : "DNS failure");
		strfmt(text, sizeof(text), "DNS lookup of %s failed: %s",
			 j->nh.host, r->reason);
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.4.3", text, true);
		break;
	case MTA_DNS_PERM:
		d->o->st_.dns_failures++;
		j->perm_failed = true;
		why_add(j, "%s", r->reason[0] ? r->reason : "not found");
		strfmt(text, sizeof(text), "domain not found: %s",
			 r->reason[0] ? r->reason : j->nh.host);
		dlv_fail_all(d, SMTP_RCPT_BOUNCED, 550, "5.1.2", text, true);
		break;
	case MTA_DNS_NULL_MX:
		d->o->st_.dns_failures++;
		j->perm_failed = true;
		why_add(j, "%s: null MX", j->nh.host);
		strfmt(text, sizeof(text),
			 "Domain %s does not accept mail (null MX)",
			 j->nh.host);
		dlv_fail_all(d, SMTP_RCPT_BOUNCED, 556, "5.1.10", text, true);
		break;
	}
	/* finished from the kick list: mta_dns_cancel is not for its
	 * own done callback */
	kick(d, D_FINISH);
}

static void dlv_resolve(struct dlv *d)
{
	struct mta_out *o = d->o;
	struct mta_job *j = d->j;
	struct in_addr a;
	int rc;

	d->state = D_RESOLVE;
	if (j->nh.kind == MTA_NH_IP) {
		if (inet_pton(AF_INET, j->nh.host, &a) != 1) {
			j->host_failed = true;
			why_add(j, "bad next-hop address %s", j->nh.host);
			dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.5",
				     "bad next-hop address", true);
			dlv_finish(d);
			return;
		}
		d->addrs[0].ip = a.s_addr;
		strfmt(d->addrs[0].name, sizeof(d->addrs[0].name), "%s",
			 j->nh.host);
		d->n_addrs = 1;
		d->next_addr = 0;
		dlv_connect_next(d);
		return;
	}
	if (o->dns == NULL) {
		j->host_failed = true;
		why_add(j, "no DNS resolver configured");
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.5",
			     "no DNS resolver configured", true);
		dlv_finish(d);
		return;
	}
	if (j->nh.kind == MTA_NH_HOST)
		rc = mta_dns_resolve_a(o->dns, j->nh.host, now_ms(o), dns_done,
				       d);
	else
		rc = mta_dns_resolve_mx(o->dns, j->nh.host, now_ms(o),
					dns_done, d);
	if (rc == -EBUSY) {
		kick(d, D_RESOLVE_BUSY); /* again at the next tick */
		return;
	}
	if (rc != 0) {
		j->host_failed = true;
		why_add(j, "bad next-hop name %s", j->nh.host);
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.5",
			     "bad next-hop name", true);
		dlv_finish(d);
		return;
	}
	o->st_.dns_lookups++;
	d->state = D_DNS;
}

/* A waiting job gets its turn: a cached connection or a resolution. */
static void dlv_start(struct dlv *d)
{
	struct mta_out *o = d->o;
	struct conn *c;

	d->next = o->active;
	if (o->active)
		o->active->prev = d;
	d->prev = NULL;
	o->active = d;
	o->n_active++;
	for (c = o->idle_head; c != NULL; c = c->inext)
		if (strcmp(c->key, d->key) == 0)
			break;
	if (c == NULL || o->conf.conn_cache_ms == 0) {
		dlv_resolve(d);
		return;
	}
	idle_unlink(c);
	c->d = d;
	d->c = c;
	d->reused = true;
	d->state = D_CONN;
	o->st_.conns_reused++;
	dlv_set_remote(d, c);
	dlv_send_next(d);
	if (c->cl)
		conn_pump(c);
}

/* The session on c is over (ops->close) or never began: what is left
 * goes to the next address, or to a fresh resolution after a reused
 * connection. */
static void dlv_conn_lost(struct dlv *d)
{
	d->c = NULL;
	if (!dlv_pending(d)) {
		dlv_finish(d);
		return;
	}
	d->next_msg = 0;
	if (d->reused) {
		d->reused = false;
		kick(d, D_RESOLVE);
		return;
	}
	kick(d, D_NEXT_ADDR);
}

/* This session has carried every message: cache it or QUIT. */
static void dlv_session_complete(struct dlv *d)
{
	struct mta_out *o = d->o;
	struct conn *c = d->c;

	if (c) {
		c->d = NULL;
		d->c = NULL;
		if (o->conf.conn_cache_ms > 0 && !o->stopped &&
		    o->n_idle < o->conf.cache_max && c->tc &&
		    smtp_client_stage(c->cl) == SMTP_CLIENT_READY) {
			c->idle_until = now_ms(o) + o->conf.conn_cache_ms;
			idle_push(c);
		} else {
			c->quitting = true;
			if (smtp_client_quit(c->cl) != 0)
				conn_abort(c);
		}
	}
	dlv_finish(d);
}

/* Hands the engine the next message that has recipients to do. */
static void dlv_send_next(struct dlv *d)
{
	struct mta_job *j = d->j;

	while (d->c != NULL && d->state == D_CONN) {
		uint32_t i = d->next_msg, n = 0;
		struct mta_job_msg *m;
		int rc;

		while (i < j->nmsg) {
			for (uint32_t k = 0; k < j->msg[i].nrcpt; k++)
				if (d->pend[d->off[i] + k])
					n++;
			if (n)
				break;
			i++;
		}
		if (i >= j->nmsg) {
			dlv_session_complete(d);
			return;
		}
		m = &j->msg[i];
		n = 0;
		for (uint32_t k = 0; k < m->nrcpt; k++)
			if (d->pend[d->off[i] + k]) {
				d->idx[n] = m->rcpt[k].idx;
				d->map[n] = k;
				n++;
			}
		d->next_msg = i + 1;
		d->inflight = i;
		d->inflight_n = n;
		rc = smtp_client_send(d->c->cl, m->env, d->idx, n);
		if (rc == 0) {
			m->attempted = true;
			d->o->st_.messages++;
			return;
		}
		if (rc == 1)
			continue; /* decided here; ops->done has it */
		for (uint32_t x = 0; x < n; x++) {
			struct mta_job_rcpt *r = &m->rcpt[d->map[x]];

			r->status = SMTP_RCPT_DEFERRED;
			set_reply(&r->reply, 451, "4.3.0",
				  rc == -ENOMEM ? "local error: out of memory"
						: "local error: bad message");
			d->pend[d->off[i] + d->map[x]] = 0;
			log_rcpt(m, r, d->c->relay);
		}
	}
}

/* ---- the engine's ops ------------------------------------------------ */

static void op_write(void *user, const void *data, size_t len)
{
	struct conn *c = user;
	ssize_t n = 0;

	if (c->tc == NULL)
		return;
	if (c->out_len == 0) {
		n = tcp_send(c->tc, data, len);
		if (n < 0)
			return;
	}
	len -= (size_t)n;
	if (len == 0)
		return;
	if (c->out_cap - c->out_len < len) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		uint8_t *b;

		while (cap - c->out_len < len)
			cap *= 2;
		b = realloc(c->out, cap);
		if (b == NULL) {
			LOG_RL(LOG_WARNING, "mta_out: %s: out of memory for "
			       "commands; resetting", c->relay);
			tcp_abort(c->tc);
			c->tc = NULL;
			return; /* the engine times out; conn_dead then */
		}
		c->out = b;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, (const uint8_t *)data + n, len);
	c->out_len += len;
}

static void op_ready(void *user)
{
	struct conn *c = user;

	if (c->d == NULL || c->dead)
		return;
	dlv_send_next(c->d);
}

static void op_done(void *user, const struct smtp_client_msg *sm)
{
	struct conn *c = user;
	struct dlv *d = c->d;
	struct mta_job_msg *m;

	if (d == NULL)
		return;
	m = &d->j->msg[d->inflight];
	for (uint32_t x = 0; x < sm->nrcpt && x < d->inflight_n; x++) {
		const struct smtp_client_rcpt *sr = &sm->rcpt[x];
		uint32_t k = d->map[x];
		struct mta_job_rcpt *r = &m->rcpt[k];

		r->status = sr->status;
		r->reply = sr->reply;
		if (!sr->reply.local)
			d->any_reply = true;
		/* deferred by a failure of this session: the next host */
		if (!(sr->status == SMTP_RCPT_DEFERRED && sr->reply.local))
			d->pend[d->off[d->inflight] + k] = 0;
		log_rcpt(m, r, c->relay);
	}
}

static void op_close(void *user, enum smtp_client_end end,
		     const struct smtp_client_reply *why)
{
	struct conn *c = user;
	struct dlv *d = c->d;

	if (end != SMTP_CLIENT_END_QUIT) {
		const char *what = end == SMTP_CLIENT_END_HOST_PERM ?
				   "refused us" : "failed";

		if (d && why && why->local)
			why_add(d->j, "%s: %s: %u %s %s", c->relay, what,
				why->code, why->enh, why->text);
		else if (d && why)
			why_add(d->j, "host %s said: %u %s %s", c->relay,
				why->code, why->enh, why->text);
		if (d == NULL)
			LOG_RL(LOG_INFO, "mta_out: %s: cached connection "
			       "ended: %u %s", c->relay, why ? why->code : 0,
			       why ? why->text : "");
	} else if (d && why && dlv_pending(d)) {
		why_add(d->j, "%s: session ended: %u %s %s", c->relay,
			why->code, why->enh, why->text);
	}
	flush_out(c);
	if (c->tc) {
		tcp_close(c->tc);
		c->tc = NULL;
	}
	conn_dead(c);
	if (d)
		dlv_conn_lost(d);
}

static const struct smtp_client_ops client_ops = {
	.write = op_write,
	.ready = op_ready,
	.done = op_done,
	.close = op_close,
};

/* ---- the stream's callbacks ------------------------------------------ */

static void on_connected(struct tcp_conn *tc, void *user)
{
	struct conn *c = user;

	(void)tc;
	c->connecting = false;
	if (c->d)
		dlv_set_remote(c->d, c);
	LOG(LOG_DEBUG, "mta_out: connected to %s", c->relay);
	conn_pump(c); /* the greeting's timer */
}

static void on_data(struct tcp_conn *tc, void *user, const uint8_t *data,
		    size_t len)
{
	struct conn *c = user;

	(void)tc;
	if (c->dead)
		return;
	smtp_client_input(c->cl, data, len);
	conn_pump(c);
}

static void on_writable(struct tcp_conn *tc, void *user)
{
	struct conn *c = user;

	(void)tc;
	flush_out(c);
	conn_pump(c);
}

static void on_peer_closed(struct tcp_conn *tc, void *user)
{
	struct conn *c = user;

	(void)tc;
	if (c->dead)
		return;
	smtp_client_lost(c->cl); /* ops->close: tcp_close */
	conn_pump(c);
}

static void on_closed(struct tcp_conn *tc, void *user,
		      enum tcp_close_reason r)
{
	struct conn *c = user;
	struct dlv *d = c->d;

	(void)tc;
	c->tc = NULL;
	if (c->dead)
		return;
	if (c->connecting) {
		struct mta_out *o = c->o;

		o->st_.connect_failures++;
		c->connecting = false;
		if (d) {
			why_add(d->j, "connect to %s: %s", c->relay,
				r == TCP_CLOSE_REFUSED ? "refused" :
				r == TCP_CLOSE_TIMEOUT ? "timed out" :
				r == TCP_CLOSE_UNREACHABLE ? "unreachable" :
				tcp_close_reason_str(r));
		}
		conn_dead(c);
		if (d)
			dlv_conn_lost(d);
		return;
	}
	LOG_RL(LOG_INFO, "mta_out: %s: connection closed: %s", c->relay,
	       tcp_close_reason_str(r));
	smtp_client_lost(c->cl);
	if (!c->dead)
		conn_dead(c);
}

static const struct tcp_callbacks conn_cb = {
	.on_connected = on_connected,
	.on_data = on_data,
	.on_writable = on_writable,
	.on_peer_closed = on_peer_closed,
	.on_closed = on_closed,
};

/* ---- DNS over UDP ---------------------------------------------------- */

static void dns_send(void *user, uint32_t ip, uint16_t port,
		     const uint8_t *pkt, size_t len)
{
	struct mta_out *o = user;

	for (unsigned i = 0; i < o->conf.n_resolvers; i++) {
		if (o->conf.resolvers[i].ip != ip ||
		    o->conf.resolvers[i].port != port || o->udp_port[i] <= 0)
			continue;
		if (len > UINT16_MAX ||
		    udp_sendto(o->st, (uint16_t)o->udp_port[i], ip, port, pkt,
			       (uint16_t)len) != 0)
			LOG_RL(LOG_WARNING, "mta_out: DNS query not sent");
		return;
	}
}

static void dns_recv(struct stack *s, void *user, uint32_t src_ip,
		     uint16_t src_port, uint16_t dst_port, const uint8_t *data,
		     uint16_t len)
{
	struct mta_out *o = user;

	(void)s;
	(void)dst_port;
	if (o->dns)
		mta_dns_input(o->dns, now_ms(o), src_ip, src_port, data, len);
}

/* ---- the API --------------------------------------------------------- */

void mta_out_conf_defaults(struct mta_out_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->dns_timeout_ms = 2000;
	c->dns_retries = 2;
	c->connect_timeout_ms = 30000;
	c->conn_cache_ms = 2000;
	c->cache_max = 64;
	c->max_conns = 256;
}

struct mta_out *mta_out_new(struct stack *st, unsigned worker,
			    const struct mta_out_conf *c, mta_out_done_fn done,
			    void *user)
{
	struct mta_out *o;

	if (st == NULL || c == NULL || done == NULL || c->helo_name == NULL ||
	    c->helo_name[0] == '\0' || c->connect_timeout_ms == 0 ||
	    c->max_conns == 0 || c->n_resolvers > MTA_DNS_RESOLVERS_MAX ||
	    (c->n_resolvers && c->dns_timeout_ms == 0))
		return NULL;
	for (unsigned i = 0; i < c->n_resolvers; i++)
		if (c->resolvers[i].port == 0 || c->resolvers[i].ip == 0)
			return NULL;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return NULL;
	o->st = st;
	o->worker = worker;
	o->conf = *c;
	o->done = done;
	o->user = user;
	o->now = st->now_ms;
	o->helo = strdup(c->helo_name);
	if (o->helo == NULL)
		goto fail;
	o->conf.helo_name = o->helo;
	if (c->n_resolvers) {
		struct mta_dns_conf dc;

		mta_dns_conf_defaults(&dc);
		memcpy(dc.resolvers, c->resolvers, sizeof(dc.resolvers));
		dc.n_resolvers = c->n_resolvers;
		dc.timeout_ms = c->dns_timeout_ms;
		dc.retries = c->dns_retries;
		dc.send = dns_send;
		dc.send_user = o;
		if (mta_dns_new(&o->dns, &dc) != 0)
			goto fail;
		for (unsigned i = 0; i < c->n_resolvers; i++) {
			o->udp_port[i] = udp_bind(st, 0, c->resolvers[i].ip,
						  c->resolvers[i].port,
						  dns_recv, o);
			if (o->udp_port[i] <= 0)
				goto fail;
		}
	}
	return o;
fail:
	for (unsigned i = 0; i < MTA_DNS_RESOLVERS_MAX; i++)
		if (o->udp_port[i] > 0)
			udp_unbind(st, (uint16_t)o->udp_port[i]);
	mta_dns_free(o->dns);
	free(o->helo);
	free(o);
	return NULL;
}

static struct dlv *dlv_new(struct mta_out *o, struct mta_job *j)
{
	struct dlv *d = calloc(1, sizeof(*d));
	uint32_t total = 0, maxr = 1;

	if (d == NULL)
		return NULL;
	d->o = o;
	d->j = j;
	for (uint32_t i = 0; i < j->nmsg; i++) {
		total += j->msg[i].nrcpt;
		if (j->msg[i].nrcpt > maxr)
			maxr = j->msg[i].nrcpt;
	}
	d->addrs = calloc(ADDRS_MAX, sizeof(*d->addrs));
	d->off = calloc(j->nmsg ? j->nmsg : 1, sizeof(*d->off));
	d->pend = calloc(total ? total : 1, 1);
	d->idx = calloc(maxr, sizeof(*d->idx));
	d->map = calloc(maxr, sizeof(*d->map));
	if (!d->addrs || !d->off || !d->pend || !d->idx || !d->map) {
		dlv_free(d);
		return NULL;
	}
	total = 0;
	for (uint32_t i = 0; i < j->nmsg; i++) {
		d->off[i] = total;
		for (uint32_t k = 0; k < j->msg[i].nrcpt; k++)
			d->pend[total + k] = j->msg[i].env != NULL;
		total += j->msg[i].nrcpt;
	}
	strfmt(d->key, sizeof(d->key), "%d:%s:%u", (int)j->nh.kind,
		 j->nh.host, (unsigned)j->nh.port);
	return d;
}

static void job_reset(struct mta_job *j)
{
	j->remote_mta[0] = '\0';
	j->remote_ip = 0;
	j->host_failed = false;
	j->perm_failed = false;
	j->why[0] = '\0';
	for (uint32_t i = 0; i < j->nmsg; i++) {
		j->msg[i].attempted = false;
		for (uint32_t k = 0; k < j->msg[i].nrcpt; k++) {
			j->msg[i].rcpt[k].status = SMTP_RCPT_DEFERRED;
			memset(&j->msg[i].rcpt[k].reply, 0,
			       sizeof(j->msg[i].rcpt[k].reply));
		}
	}
}

void mta_out_submit(struct mta_out *o, struct mta_job *j)
{
	struct dlv *d;

	job_reset(j);
	o->st_.jobs++;
	d = dlv_new(o, j);
	if (d == NULL) {
		/* nothing can be tracked: deferred now, handed back by the
		 * next poll like any other */
		LOG_RL(LOG_WARNING, "mta_out: out of memory for a job to %s",
		       j->nh.host);
		for (uint32_t i = 0; i < j->nmsg; i++)
			for (uint32_t k = 0; k < j->msg[i].nrcpt; k++) {
				j->msg[i].rcpt[k].status = SMTP_RCPT_DEFERRED;
				set_reply(&j->msg[i].rcpt[k].reply, 451,
					  "4.3.0", "local error: out of memory");
			}
		strfmt(j->why, sizeof(j->why), "out of memory");
		if (o->n_nomem < NOMEM_MAX) {
			o->nomem[o->n_nomem++] = j;
			return;
		}
		/* the one case where done() runs inside submit: no memory
		 * to keep the job anywhere */
		o->done(o->user, j);
		return;
	}
	if (o->stopped) {
		o->n_active++; /* dlv_finish unlinks it from active */
		d->next = o->active;
		if (o->active)
			o->active->prev = d;
		o->active = d;
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.2",
			     "system shutting down", true);
		dlv_finish(d);
		return;
	}
	d->state = D_WAITING;
	if (o->wait_tail)
		o->wait_tail->qnext = d;
	else
		o->wait_head = d;
	o->wait_tail = d;
	o->st_.jobs_waiting++;
}

static bool run_kicks(struct mta_out *o, bool from_tick)
{
	struct dlv *list = o->kick, *d;
	bool did = false;

	o->kick = NULL;
	while (list != NULL) {
		d = list;
		list = d->knext;
		d->kicked = false;
		if (d->state == D_RESOLVE_BUSY && !from_tick) {
			kick(d, D_RESOLVE_BUSY);
			continue;
		}
		did = true;
		switch (d->state) {
		case D_RESOLVE:
		case D_RESOLVE_BUSY:
			dlv_resolve(d);
			break;
		case D_FINISH:
			dlv_finish(d);
			break;
		case D_NEXT_ADDR:
			dlv_connect_next(d);
			break;
		default:
			break;
		}
	}
	return did;
}

static bool hand_back(struct mta_out *o)
{
	bool did = false;

	for (unsigned i = 0; i < o->n_nomem; i++) {
		o->done(o->user, o->nomem[i]);
		did = true;
	}
	o->n_nomem = 0;
	while (o->done_head != NULL) {
		struct dlv *d = o->done_head;
		struct mta_job *j = d->j;

		o->done_head = d->qnext;
		if (o->done_head == NULL)
			o->done_tail = NULL;
		dlv_free(d);
		o->done(o->user, j);
		did = true;
	}
	return did;
}

bool mta_out_poll(struct mta_out *o)
{
	bool did = false;

	reap(o);
	while (o->wait_head != NULL && o->n_active < o->conf.max_conns &&
	       !o->stopped) {
		struct dlv *d = o->wait_head;

		o->wait_head = d->qnext;
		if (o->wait_head == NULL)
			o->wait_tail = NULL;
		d->qnext = NULL;
		o->st_.jobs_waiting--;
		dlv_start(d);
		did = true;
	}
	did |= run_kicks(o, false);
	did |= hand_back(o);
	return did;
}

void mta_out_tick(struct mta_out *o, uint64_t now)
{
	struct conn *c;

	if (now > o->now)
		o->now = now;
	now = now_ms(o);
	reap(o);
	if (o->dns)
		mta_dns_tick(o->dns, now);
	for (c = o->conns; c != NULL; c = c->next) {
		if (c->dead)
			continue;
		if (c->connecting) {
			if (c->deadline && now >= c->deadline) {
				struct dlv *d = c->d;

				o->st_.connect_failures++;
				if (d)
					why_add(d->j, "connect to %s: timed "
						"out", c->relay);
				c->connecting = false;
				conn_abort(c);
				if (d)
					dlv_conn_lost(d);
			}
			continue;
		}
		if (c->idle && now >= c->idle_until) {
			idle_unlink(c);
			c->quitting = true;
			if (smtp_client_quit(c->cl) != 0)
				conn_abort(c);
			else
				conn_pump(c);
			continue;
		}
		if (c->deadline && now >= c->deadline) {
			smtp_client_timeout(c->cl);
			if (c->quitting && !c->dead) {
				/* the engine's QUIT timer is longer */
				if (c->tc) {
					tcp_abort(c->tc);
					c->tc = NULL;
				}
				conn_dead(c);
			}
			conn_pump(c);
		}
	}
	(void)run_kicks(o, true);
}

void mta_out_stop(struct mta_out *o)
{
	struct conn *c;

	if (o->stopped)
		return;
	o->stopped = true;
	/* waiting jobs become active, so that one path finishes all */
	while (o->wait_head != NULL) {
		struct dlv *d = o->wait_head;

		o->wait_head = d->qnext;
		d->qnext = NULL;
		o->st_.jobs_waiting--;
		d->next = o->active;
		if (o->active)
			o->active->prev = d;
		d->prev = NULL;
		o->active = d;
		o->n_active++;
	}
	o->wait_tail = NULL;
	for (c = o->conns; c != NULL; c = c->next)
		conn_abort(c);
	while (o->active != NULL) {
		struct dlv *d = o->active;

		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.2",
			     "system shutting down", true);
		dlv_finish(d);
	}
	o->kick = NULL;
	for (unsigned i = 0; i < MTA_DNS_RESOLVERS_MAX; i++)
		if (o->udp_port[i] > 0) {
			udp_unbind(o->st, (uint16_t)o->udp_port[i]);
			o->udp_port[i] = 0;
		}
	reap(o);
	(void)hand_back(o);
}

void mta_out_free(struct mta_out *o)
{
	if (o == NULL)
		return;
	mta_out_stop(o);
	reap(o);
	mta_dns_free(o->dns);
	free(o->helo);
	free(o);
}

void mta_out_get_stats(const struct mta_out *o, struct mta_out_stats *s)
{
	*s = o->st_;
	s->conns_live = o->st_.conns_live;
}

struct mta_dns *mta_out_dns(struct mta_out *o)
{
	return o->dns;
}
