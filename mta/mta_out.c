/*
 * mta_out.c: outbound delivery on a worker (the contract is in mta_out.h).
 *
 * Three kinds of object:
 *   dlv   one job being delivered: its addresses, which recipients are
 *         still to do, the message in flight. Freed when the job is
 *         handed back.
 *   conn  one outbound TCP connection and its SMTP client engine
 *         (mta_out_conn.c).
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
#include <time.h>

#include "common/log.h"
#include "mta/mta_out_int.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "tcpstack/udp.h"

/* ---- helpers --------------------------------------------------------- */

uint64_t mo_now_ms(const struct mta_out *o)
{
	return o->st->now_ms > o->now ? o->st->now_ms : o->now;
}

void mo_ip_str(uint32_t ip, char *buf, size_t len)
{
	struct in_addr a = { .s_addr = ip };

	if (inet_ntop(AF_INET, &a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/* snprintf that cuts silently: log and reply texts are bounded. */
void mo_strfmt(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

/* Appends "; text" (or text) to job->why, cut at its size. */
void mo_why_add(struct mta_job *j, const char *fmt, ...)
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

void mo_set_reply(struct smtp_client_reply *r, uint16_t code,
		      const char *enh, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->code = code;
	mo_strfmt(r->enh, sizeof(r->enh), "%s", enh);
	mo_strfmt(r->text, sizeof(r->text), "%s", text);
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

void mo_log_rcpt(const struct mta_job_msg *m, const struct mta_job_rcpt *r,
		     const char *relay)
{
	const char *addr = "?";
	uint64_t now_us, delay_ms = 0;
	struct timespec ts;

	if (LOG_INFO > log_get_level())
		return;
	if (m->env && r->idx < m->env->nrcpt)
		addr = m->env->rcpt[r->idx].addr;
	/* delay= as Postfix's: since the message arrived (wall clock, as
	 * the envelope's arrival; the vDSO reads it without a syscall) */
	clock_gettime(CLOCK_REALTIME, &ts);
	now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (m->env && m->env->arrival_us != 0 && now_us > m->env->arrival_us)
		delay_ms = (now_us - m->env->arrival_us) / 1000u;
	LOG(LOG_INFO, "mta_out: %s: to=<%s>, relay=%s, delay=%llu.%02llu, "
	    "dsn=%s, status=%s (%s%u %s %s)", m->env ? m->env->qid : "?", addr,
	    relay, (unsigned long long)(delay_ms / 1000u),
	    (unsigned long long)(delay_ms % 1000u / 10u), r->reply.enh,
	    status_str(r->status), r->reply.local ? "local: " : "",
	    r->reply.code, r->reply.enh, r->reply.text);
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

/* ---- deliveries ------------------------------------------------------ */

static void dlv_finish(struct dlv *d);

bool mo_dlv_pending(const struct dlv *d)
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
				mo_set_reply(&m->rcpt[k].reply, code, enh, text);
			}
			d->pend[d->off[i] + k] = 0;
			mo_log_rcpt(m, &m->rcpt[k], "none");
		}
	}
}

/* d first on the active list. */
static void dlv_link_active(struct dlv *d)
{
	struct mta_out *o = d->o;

	d->next = o->active;
	if (o->active)
		o->active->prev = d;
	d->prev = NULL;
	o->active = d;
	o->n_active++;
}

/* d last on the queue *head..*tail (the wait or the done list). */
static void q_push(struct dlv **head, struct dlv **tail, struct dlv *d)
{
	d->qnext = NULL;
	if (*tail)
		(*tail)->qnext = d;
	else
		*head = d;
	*tail = d;
}

/* The first of the queue *head..*tail (not empty), taken off it. */
static struct dlv *q_pop(struct dlv **head, struct dlv **tail)
{
	struct dlv *d = *head;

	*head = d->qnext;
	if (*head == NULL)
		*tail = NULL;
	d->qnext = NULL;
	return d;
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
	q_push(&o->done_head, &o->done_tail, d);
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
	if (mo_dlv_pending(d)) {
		char text[SMTP_CLIENT_TEXT_MAX];

		if (!d->any_reply)
			j->host_failed = true;
		mo_strfmt(text, sizeof(text), "%s",
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

void mo_dlv_set_remote(struct dlv *d, const struct conn *c)
{
	mo_strfmt(d->j->remote_mta, sizeof(d->j->remote_mta), "%s", c->relay);
	d->j->remote_ip = c->ip;
}

/* Connects to the next address; the job is over when none is left. */
static void dlv_connect_next(struct dlv *d)
{
	struct mta_out *o = d->o;

	if (!mo_dlv_pending(d)) {
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

			mo_idle_unlink(old);
			old->quitting = true;
			if (smtp_client_quit(old->cl) == 0)
				mo_conn_pump(old);
			else
				mo_conn_abort(old);
		}
		c = mo_conn_new(o, a->name, a->ip, d->j->nh.port, d->key);
		if (c == NULL) {
			mo_why_add(d->j, "%s: out of memory", a->name);
			continue;
		}
		if (d->plain_pending && a->ip == d->plain_ip) {
			/* its TLS failed a moment ago (policy may) */
			d->plain_pending = false;
			c->tls_decided = true;
			c->tls_policy = MTA_TLS_NONE;
		}
		c->connecting = true;
		c->d = d;
		d->c = c;
		d->state = D_CONN;
		o->st_.connects++;
		rc = tcp_connect(o->st, a->ip, d->j->nh.port, &mo_conn_cb, c,
				 &c->tc);
		if (rc == 0) {
			if (c->dead) /* on_closed came inside tcp_connect */
				c->tc = NULL;
			else
				c->deadline = mo_now_ms(o) +
					      o->conf.connect_timeout_ms;
			return;
		}
		c->tc = NULL;
		o->st_.connect_failures++;
		mo_why_add(d->j, "connect to %s: %s", c->relay,
			rc == -EADDRNOTAVAIL ? "no local port" : strerror(-rc));
		mo_conn_dead(c);
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
				mo_strfmt(a->name, sizeof(a->name), "%s",
					 r->hosts[h].name);
			}
		kick(d, D_NEXT_ADDR);
		return;
	case MTA_DNS_TEMP:
		d->o->st_.dns_failures++;
		j->host_failed = true;
		mo_why_add(j, "%s", r->reason[0] ? r->reason : "DNS failure");
		mo_strfmt(text, sizeof(text), "DNS lookup of %s failed: %s",
			 j->nh.host, r->reason);
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.4.3", text, true);
		break;
	case MTA_DNS_PERM:
		d->o->st_.dns_failures++;
		j->perm_failed = true;
		mo_why_add(j, "%s", r->reason[0] ? r->reason : "not found");
		mo_strfmt(text, sizeof(text), "domain not found: %s",
			 r->reason[0] ? r->reason : j->nh.host);
		dlv_fail_all(d, SMTP_RCPT_BOUNCED, 550, "5.1.2", text, true);
		break;
	case MTA_DNS_NULL_MX:
		d->o->st_.dns_failures++;
		j->perm_failed = true;
		mo_why_add(j, "%s: null MX", j->nh.host);
		mo_strfmt(text, sizeof(text),
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
			mo_why_add(j, "bad next-hop address %s", j->nh.host);
			dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.5",
				     "bad next-hop address", true);
			dlv_finish(d);
			return;
		}
		d->addrs[0].ip = a.s_addr;
		mo_strfmt(d->addrs[0].name, sizeof(d->addrs[0].name), "%s",
			 j->nh.host);
		d->n_addrs = 1;
		d->next_addr = 0;
		dlv_connect_next(d);
		return;
	}
	if (o->dns == NULL) {
		j->host_failed = true;
		mo_why_add(j, "no DNS resolver configured");
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.5",
			     "no DNS resolver configured", true);
		dlv_finish(d);
		return;
	}
	if (j->nh.kind == MTA_NH_HOST)
		rc = mta_dns_resolve_a(o->dns, j->nh.host, mo_now_ms(o), dns_done,
				       d);
	else
		rc = mta_dns_resolve_mx(o->dns, j->nh.host, mo_now_ms(o),
					dns_done, d);
	if (rc == -EBUSY) {
		kick(d, D_RESOLVE_BUSY); /* again at the next tick */
		return;
	}
	if (rc != 0) {
		j->host_failed = true;
		mo_why_add(j, "bad next-hop name %s", j->nh.host);
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

	dlv_link_active(d);
	for (c = o->idle_head; c != NULL; c = c->inext)
		if (strcmp(c->key, d->key) == 0)
			break;
	if (c == NULL || o->conf.conn_cache_ms == 0) {
		dlv_resolve(d);
		return;
	}
	mo_idle_unlink(c);
	c->d = d;
	d->c = c;
	d->reused = true;
	d->state = D_CONN;
	o->st_.conns_reused++;
	mo_dlv_set_remote(d, c);
	mo_dlv_send_next(d);
	if (c->cl)
		mo_conn_pump(c);
}

/* The session on c is over (ops->close) or never began: what is left
 * goes to the next address, or to a fresh resolution after a reused
 * connection. */
void mo_dlv_conn_lost(struct dlv *d)
{
	d->c = NULL;
	if (!mo_dlv_pending(d)) {
		dlv_finish(d);
		return;
	}
	d->next_msg = 0;
	if (d->reused) {
		d->reused = false;
		kick(d, D_RESOLVE);
		return;
	}
	if (d->plain_pending && d->next_addr > 0 &&
	    d->addrs[d->next_addr - 1].ip == d->plain_ip)
		d->next_addr--; /* the same address, in clear */
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
			c->idle_until = mo_now_ms(o) + o->conf.conn_cache_ms;
			mo_idle_push(c);
		} else {
			c->quitting = true;
			if (smtp_client_quit(c->cl) != 0)
				mo_conn_abort(c);
		}
	}
	dlv_finish(d);
}

/* Hands the engine the next message that has recipients to do. */
void mo_dlv_send_next(struct dlv *d)
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
			mo_set_reply(&r->reply, 451, "4.3.0",
				  rc == -ENOMEM ? "local error: out of memory"
						: "local error: bad message");
			d->pend[d->off[i] + d->map[x]] = 0;
			mo_log_rcpt(m, r, d->c->relay);
		}
	}
}

/* ---- DNS over UDP ---------------------------------------------------- */

static void dns_recv(struct stack *s, void *user, uint32_t src_ip,
		     uint16_t src_port, uint16_t dst_port, const uint8_t *data,
		     uint16_t len);

static void dns_port_close(struct mta_out *o, unsigned i)
{
	udp_unbind(o->st, o->dns_ports[i].port);
	o->dns_ports[i] = o->dns_ports[--o->n_dns_ports];
}

/* Each query from a fresh random port (RFC 5452 section 9.2). */
static void dns_send(void *user, uint32_t ip, uint16_t port,
		     const uint8_t *pkt, size_t len)
{
	struct mta_out *o = user;
	struct mo_dns_port *p;
	int sp;

	if (len > UINT16_MAX || o->n_dns_ports == MO_DNS_PORTS_MAX) {
		LOG_RL(LOG_WARNING, "mta_out: DNS query not sent (%s)",
		       len > UINT16_MAX ? "too long" : "too many in flight");
		return; /* mta_dns retries, then fails the lookup */
	}
	sp = udp_bind(o->st, 0, ip, port, dns_recv, o);
	if (sp <= 0) {
		LOG_RL(LOG_WARNING, "mta_out: DNS query not sent (no port: "
		       "%s)", strerror(-sp));
		return;
	}
	p = &o->dns_ports[o->n_dns_ports++];
	*p = (struct mo_dns_port){ .port = (uint16_t)sp, .rip = ip,
				   .rport = port,
				   .until = mo_now_ms(o) +
					    o->conf.dns_timeout_ms };
	if (udp_sendto(o->st, p->port, ip, port, pkt, (uint16_t)len) != 0) {
		LOG_RL(LOG_WARNING, "mta_out: DNS query not sent");
		dns_port_close(o, o->n_dns_ports - 1);
	}
}

static void dns_recv(struct stack *s, void *user, uint32_t src_ip,
		     uint16_t src_port, uint16_t dst_port, const uint8_t *data,
		     uint16_t len)
{
	struct mta_out *o = user;

	(void)s;
	if (o->dns)
		mta_dns_input(o->dns, mo_now_ms(o), src_ip, src_port, data, len);
	/* one answer per port: from its resolver, the port is done (a
	 * datagram from anyone else leaves it open for the real one) */
	for (unsigned i = 0; i < o->n_dns_ports; i++)
		if (o->dns_ports[i].port == dst_port) {
			if (o->dns_ports[i].rip == src_ip &&
			    o->dns_ports[i].rport == src_port)
				dns_port_close(o, i);
			break;
		}
}

static void dns_ports_expire(struct mta_out *o, uint64_t now, bool all)
{
	for (unsigned i = 0; i < o->n_dns_ports;)
		if (all || now >= o->dns_ports[i].until)
			dns_port_close(o, i);
		else
			i++;
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
	c->tls_policy = MTA_TLS_MAY;
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
	if (mo_tls_init(o) != 0)
		goto fail;
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
	}
	return o;
fail:
	mta_dns_free(o->dns);
	mo_tls_free(o);
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
	mo_strfmt(d->key, sizeof(d->key), "%d:%s:%u", (int)j->nh.kind,
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
				mo_set_reply(&j->msg[i].rcpt[k].reply, 451,
					  "4.3.0", "local error: out of memory");
			}
		mo_strfmt(j->why, sizeof(j->why), "out of memory");
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
		dlv_link_active(d); /* dlv_finish unlinks it from active */
		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.2",
			     "system shutting down", true);
		dlv_finish(d);
		return;
	}
	d->state = D_WAITING;
	q_push(&o->wait_head, &o->wait_tail, d);
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
		struct dlv *d = q_pop(&o->done_head, &o->done_tail);
		struct mta_job *j = d->j;

		dlv_free(d);
		o->done(o->user, j);
		did = true;
	}
	return did;
}

bool mta_out_poll(struct mta_out *o)
{
	bool did = false;

	mo_reap(o);
	while (o->wait_head != NULL && o->n_active < o->conf.max_conns &&
	       !o->stopped) {
		struct dlv *d = q_pop(&o->wait_head, &o->wait_tail);

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
	now = mo_now_ms(o);
	mo_reap(o);
	dns_ports_expire(o, now, false);
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
					mo_why_add(d->j, "connect to %s: timed "
						"out", c->relay);
				c->connecting = false;
				mo_conn_abort(c);
				if (d)
					mo_dlv_conn_lost(d);
			}
			continue;
		}
		if (c->idle && now >= c->idle_until) {
			mo_idle_unlink(c);
			c->quitting = true;
			if (smtp_client_quit(c->cl) != 0)
				mo_conn_abort(c);
			else
				mo_conn_pump(c);
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
				mo_conn_dead(c);
			}
			mo_conn_pump(c);
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
		struct dlv *d = q_pop(&o->wait_head, &o->wait_tail);

		o->st_.jobs_waiting--;
		dlv_link_active(d);
	}
	for (c = o->conns; c != NULL; c = c->next)
		mo_conn_abort(c);
	while (o->active != NULL) {
		struct dlv *d = o->active;

		dlv_fail_all(d, SMTP_RCPT_DEFERRED, 451, "4.3.2",
			     "system shutting down", true);
		dlv_finish(d);
	}
	o->kick = NULL;
	dns_ports_expire(o, 0, true);
	mo_reap(o);
	(void)hand_back(o);
}

void mta_out_free(struct mta_out *o)
{
	if (o == NULL)
		return;
	mta_out_stop(o);
	mo_reap(o);
	mta_dns_free(o->dns);
	mo_tls_free(o);
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
