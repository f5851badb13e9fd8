/*
 * smtpd.c: SMTP sessions over the TCP stream API, glued to the spool.
 *
 * A session is a TCP connection, an SMTP engine and a reply buffer. The
 * engine's replies go to tcp_send; what the send buffer cannot take waits
 * in the session's buffer and leaves on on_writable. A finished message
 * goes to the spool on its writer's ring; the session's reading is paused
 * until the completion comes back on this worker's ring, and only then
 * does the engine say 250 (DESIGN.md, "Durability promise").
 *
 * A session outlives its connection while a spool request of its is in
 * flight (the writer is reading the envelope): it is freed when both are
 * over. Never blocks, never touches the disk.
 */
#include "mgmt/smtpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/parse.h"
#include "mta/mta_policy.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"
#include "store/spool.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"

/* Replies held while the client does not read them; past this the
 * session stops reading its commands (pipelining without reading). */
#define OUT_HIGH (64 * 1024)
/* A closing session whose replies cannot leave, or whose client does not
 * close after our FIN, is reset after this. */
#define CLOSING_LINGER_MS 5000
#define SWEEP_MS 1000
#define PER_CLIENT_SLOTS 4096

struct smtpd_shared {
	struct smtpd_conf conf;
	struct smtp_server_conf eng;
	const struct mta_policy *policy;
	struct spool *sp;
	struct mta_qmgr *qmgr;               /* NULL: accept only */
	const struct mta_route *route;       /* alias rewrite; may be NULL */
	uint32_t conns;                      /* atomic */
	uint32_t per_client[PER_CLIENT_SLOTS]; /* atomic, by address hash */
	uint32_t draining;                   /* atomic: shutdown --drain */
};

struct sess;

struct listener_ctx {
	struct smtpd_worker *w;
	uint16_t port;
};

struct smtpd_worker {
	struct smtpd_shared *sh;
	struct stack *st;
	unsigned index;
	struct tcp_listener *l[SMTPD_MAX_LISTEN];
	struct listener_ctx lctx[SMTPD_MAX_LISTEN];
	struct sess *head;       /* every live session */
	struct sess *failed;     /* submissions refused, answered on poll */
	struct sess *reap;       /* finished sessions, freed on poll */
	uint64_t last_sweep_ms;
	/* queued messages the queue manager's ring could not take yet */
	struct envelope **backlog;
	size_t nbacklog, capbacklog;
	struct smtpd_counters cnt;
};

struct sess {
	struct smtpd_worker *w;
	struct tcp_conn *c;          /* NULL once the connection is over */
	struct smtp_server *eng;
	struct sess *prev, *next;
	struct sess *fnext;          /* on w->failed */
	struct sess *rnext;          /* on w->reap */
	uint8_t *out;
	size_t out_len, out_cap;
	uint32_t client_ip;          /* network order */
	uint32_t slot;               /* per_client index */
	uint64_t last_ms, data_start_ms, data_bytes, close_ms;
	bool close_wanted, paused, req_busy, in_accept, in_data, peer_closed;
	bool reaping, lingering;
	struct spool_req req;
	char client[24];             /* "a.b.c.d[port]" for logs */
};

static const struct tcp_callbacks sess_cb;

static uint32_t client_slot(uint32_t ip)
{
	return (uint32_t)(((uint64_t)ip * 0x9E3779B97F4A7C15ull) >> 52) %
	       PER_CLIENT_SLOTS;
}

static uint64_t now_ms(const struct smtpd_worker *w)
{
	return w->st->now_ms;
}

static void sess_free(struct sess *s)
{
	struct smtpd_worker *w = s->w;

	__atomic_fetch_sub(&w->sh->conns, 1, __ATOMIC_RELAXED);
	__atomic_fetch_sub(&w->sh->per_client[s->slot], 1, __ATOMIC_RELAXED);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		w->head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	w->cnt.sessions_live--;
	{
		const struct smtp_server_stats *st = smtp_server_get_stats(s->eng);
		w->cnt.commands += st->commands;
		w->cnt.command_errors += st->errors;
	}
	smtp_server_free(s->eng);
	free(s->out);
	free(s);
}

/* Once nothing refers to the session any more (no connection, no spool
 * request), it is freed at the start of the next poll: never inside a
 * callback of the engine or the stack that may still use it. */
static void sess_maybe_free(struct sess *s)
{
	if (s->c == NULL && !s->req_busy && !s->reaping) {
		s->reaping = true;
		s->rnext = s->w->reap;
		s->w->reap = s;
	}
}

static void reap(struct smtpd_worker *w)
{
	while (w->reap != NULL) {
		struct sess *s = w->reap;
		w->reap = s->rnext;
		sess_free(s);
	}
}

static void set_paused(struct sess *s, bool p)
{
	if (s->c == NULL || s->paused == p)
		return;
	s->paused = p;
	tcp_recv_pause(s->c, p);
}

/* Reading goes on only while the engine can take input and the client
 * reads its replies. */
static void update_pause(struct sess *s)
{
	set_paused(s, smtp_server_blocked(s->eng) || s->out_len > OUT_HIGH);
}

/* Sends what waits; closes once everything is out and close was asked. */
static void flush_out(struct sess *s)
{
	if (s->c == NULL)
		return;
	if (s->out_len > 0) {
		ssize_t n = tcp_send(s->c, s->out, s->out_len);
		if (n > 0) {
			memmove(s->out, s->out + n, s->out_len - (size_t)n);
			s->out_len -= (size_t)n;
		} else if (n < 0) {
			s->out_len = 0; /* the connection cannot send any more */
		}
	}
	if (s->close_wanted && s->out_len == 0 && !s->in_accept) {
		if (s->peer_closed) {
			tcp_close(s->c);
			s->c = NULL;
			sess_maybe_free(s);
			return;
		}
		/* Lingering close: FIN after the last reply, then read and
		 * drop whatever the client still sends until it closes (or
		 * CLOSING_LINGER_MS). Closing at once with its pipelined
		 * commands unread would answer them with a RST, and a RST
		 * makes the client's stack throw away our 421 unread. */
		if (!s->lingering) {
			s->lingering = true;
			tcp_shutdown(s->c);
		}
		set_paused(s, false);
		return;
	}
	update_pause(s);
}

/* ---- the engine's ops ---------------------------------------------- */

static void op_write(void *user, const void *data, size_t len)
{
	struct sess *s = user;
	ssize_t n = 0;

	if (s->c == NULL)
		return;
	if (s->out_len == 0 && !s->in_accept) {
		n = tcp_send(s->c, data, len);
		if (n < 0)
			return;
	}
	len -= (size_t)n;
	if (len == 0)
		return;
	if (s->out_cap - s->out_len < len) {
		size_t cap = s->out_cap ? s->out_cap : 1024;
		uint8_t *o;
		while (cap - s->out_len < len)
			cap *= 2;
		o = realloc(s->out, cap);
		if (o == NULL) {
			LOG_RL(LOG_WARNING, "smtpd: %s: out of memory for "
			       "replies; resetting", s->client);
			tcp_abort(s->c);
			s->c = NULL;
			sess_maybe_free(s);
			return;
		}
		s->out = o;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, (const uint8_t *)data + n, len);
	s->out_len += len;
	if (s->in_accept)
		tcp_want_writable(s->c);
}

static void op_close(void *user)
{
	struct sess *s = user;

	s->close_wanted = true;
	s->close_ms = now_ms(s->w);
	if (s->in_accept) {
		if (s->c != NULL)
			tcp_want_writable(s->c);
		return;
	}
	flush_out(s);
}

static enum smtp_verdict op_mail(void *user, struct envelope *env)
{
	struct sess *s = user;

	if (spool_degraded(s->w->sh->sp))
		return SMTP_TEMPFAIL_STORAGE;
	spool_qid_next(s->w->sh->sp, s->w->index, env->qid);
	LOG(LOG_DEBUG, "smtpd: %s: client=%s, from=<%s>", env->qid, s->client,
	    env->mail_from);
	return SMTP_OK;
}

static enum smtp_verdict op_rcpt(void *user, const struct envelope *env,
				 const char *addr)
{
	struct sess *s = user;
	struct mta_policy_reply rep;
	enum mta_verdict v = mta_policy_rcpt_reply(s->w->sh->policy,
						   s->client_ip, addr, &rep);

	switch (v) {
	case MTA_LOCAL:
	case MTA_RELAY:
		s->w->cnt.rcpt_accepted++;
		return SMTP_OK;
	case MTA_NO_USER:
		s->w->cnt.rcpt_rejected++;
		LOG_RL(LOG_INFO, "smtpd: %s: reject: RCPT from %s: 550 5.1.1 "
		       "<%s>: user unknown; from=<%s>", env->qid, s->client,
		       addr, env->mail_from);
		return SMTP_REJECT_NO_USER;
	case MTA_RELAY_DENIED:
		break;
	}
	s->w->cnt.rcpt_rejected++;
	LOG_RL(LOG_INFO, "smtpd: %s: reject: RCPT from %s: %u %s <%s>: %s; "
	       "from=<%s>", env->qid, s->client, rep.code, rep.enh, addr,
	       rep.text, env->mail_from);
	if (rep.code == 554 && strcmp(rep.enh, "5.7.1") == 0 &&
	    strcmp(rep.text, "relay access denied") == 0)
		return SMTP_REJECT_RELAY;
	/* the transport map's own reply */
	smtp_server_set_reject(s->eng, rep.code, rep.enh, rep.text);
	return SMTP_REJECT_CUSTOM;
}

/*
 * The envelope rewrite before the spool (Postfix's virtual aliases): an
 * alias or a catch-all recipient becomes its targets, each remembering
 * the address the client gave as its ORCPT, so the spool, the state
 * records and the DSNs only ever see final recipients. A recipient whose
 * expansion fails stays as given (routing then bounces it).
 */
static void expand_aliases(const struct mta_route *route, struct envelope *env,
			   const char *client)
{
	struct envelope *tmp = NULL;

	for (uint32_t i = 0; i < env->nrcpt; i++) {
		char **v = NULL;
		int n = mta_route_expand(route, env->rcpt[i].addr, &v);

		if (n <= 0 && tmp == NULL) {
			if (n < 0)
				LOG_RL(LOG_WARNING, "smtpd: %s: %s: alias "
				       "expansion of <%s> failed: %s; kept as "
				       "given", env->qid, client,
				       env->rcpt[i].addr, strerror(-n));
			continue;
		}
		if (tmp == NULL) {
			tmp = envelope_new();
			if (tmp == NULL) {
				mta_route_expand_free(v, n);
				return;
			}
			for (uint32_t k = 0; k < i; k++)
				if (envelope_add_rcpt(tmp, env->rcpt[k].addr,
						      env->rcpt[k].orcpt,
						      env->rcpt[k].notify) != 0)
					goto nomem;
		}
		if (n <= 0) {
			if (envelope_add_rcpt(tmp, env->rcpt[i].addr,
					      env->rcpt[i].orcpt,
					      env->rcpt[i].notify) != 0)
				goto nomem;
			continue;
		}
		for (int k = 0; k < n; k++) {
			char orcpt[600];
			bool dup = false;

			for (uint32_t d = 0; d < tmp->nrcpt && !dup; d++)
				dup = strcmp(tmp->rcpt[d].addr, v[k]) == 0;
			if (dup)
				continue;
			if (env->rcpt[i].orcpt[0] != '\0')
				snprintf(orcpt, sizeof(orcpt), "%s",
					 env->rcpt[i].orcpt);
			else
				snprintf(orcpt, sizeof(orcpt), "rfc822;%s",
					 env->rcpt[i].addr);
			if (envelope_add_rcpt(tmp, v[k], orcpt,
					      env->rcpt[i].notify) != 0) {
				mta_route_expand_free(v, n);
				goto nomem;
			}
		}
		LOG(LOG_INFO, "smtpd: %s: <%s> expanded to %d address%s",
		    env->qid, env->rcpt[i].addr, n, n == 1 ? "" : "es");
		mta_route_expand_free(v, n);
	}
	if (tmp != NULL) {
		struct env_rcpt *r = env->rcpt;
		uint32_t nr = env->nrcpt, cap = env->rcpt_cap;

		env->rcpt = tmp->rcpt;
		env->nrcpt = tmp->nrcpt;
		env->rcpt_cap = tmp->rcpt_cap;
		tmp->rcpt = r;
		tmp->nrcpt = nr;
		tmp->rcpt_cap = cap;
		envelope_free(tmp);
	}
	return;
nomem:
	/* out of memory: deliver to the addresses as given */
	envelope_free(tmp);
}

static void op_message(void *user, struct envelope *env)
{
	struct sess *s = user;
	struct smtpd_worker *w = s->w;
	int rc;

	if (w->sh->route != NULL)
		expand_aliases(w->sh->route, env, s->client);

	memset(&s->req, 0, sizeof(s->req));
	s->req.type = SPOOL_REQ_MSG;
	s->req.worker = w->index;
	s->req.env = env;
	s->req.user = s;
	s->req_busy = true;
	rc = spool_submit(w->sh->sp, &s->req);
	if (rc != 0) {
		/* answered from smtpd_poll, outside the engine's call */
		s->req.status = rc;
		s->fnext = w->failed;
		w->failed = s;
	}
	set_paused(s, true);
}

static const struct smtp_server_ops sess_ops = {
	.write = op_write,
	.close = op_close,
	.mail = op_mail,
	.rcpt = op_rcpt,
	.message = op_message,
};

/* ---- the stream's callbacks ---------------------------------------- */

static void on_data(struct tcp_conn *c, void *user, const uint8_t *d,
		    size_t len)
{
	struct sess *s = user;
	uint64_t now = now_ms(s->w);

	(void)c;
	if (s->lingering)
		return; /* read and dropped */
	s->last_ms = now;
	if (s->in_data)
		s->data_bytes += len;
	smtp_server_input(s->eng, d, len);
	if (smtp_server_phase(s->eng) == SMTP_PHASE_DATA) {
		if (!s->in_data) {
			s->in_data = true;
			s->data_start_ms = now;
			s->data_bytes = 0;
		}
	} else {
		s->in_data = false;
	}
	flush_out(s);
}

static void on_writable(struct tcp_conn *c, void *user)
{
	(void)c;
	flush_out(user);
}

static void on_peer_closed(struct tcp_conn *c, void *user)
{
	struct sess *s = user;

	(void)c;
	s->peer_closed = true;
	if (s->lingering) {
		flush_out(s);
		return;
	}
	/* The client sends no more. A reply it may still wait for (250
	 * after the spool answers) is sent before we close. */
	if (!s->req_busy) {
		s->close_wanted = true;
		s->close_ms = now_ms(s->w);
		flush_out(s);
	}
}

static void on_closed(struct tcp_conn *c, void *user,
		      enum tcp_close_reason r)
{
	struct sess *s = user;

	(void)c;
	LOG(LOG_DEBUG, "smtpd: %s: connection closed: %s", s->client,
	    tcp_close_reason_str(r));
	s->c = NULL;
	sess_maybe_free(s);
}

static const struct tcp_callbacks sess_cb = {
	.on_data = on_data,
	.on_writable = on_writable,
	.on_peer_closed = on_peer_closed,
	.on_closed = on_closed,
};

static int on_accept(struct tcp_conn *c, void *lu,
		     const struct tcp_callbacks **cb, void **user)
{
	struct listener_ctx *lc = lu;
	struct smtpd_worker *w = lc->w;
	struct smtpd_shared *sh = w->sh;
	struct tcp_conn_info ci;
	struct sess *s;
	uint32_t total, per;
	char addr[16];

	tcp_conn_get_info(c, &ci);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	format_ipv4(ci.remote_ip, addr);
	s->eng = smtp_server_new(&sh->eng, &sess_ops, s, addr, ci.remote_port,
				 lc->port);
	if (s->eng == NULL) {
		free(s);
		return -ENOMEM;
	}
	snprintf(s->client, sizeof(s->client), "%s[%u]", addr,
		 ci.remote_port);
	s->w = w;
	s->c = c;
	s->client_ip = ci.remote_ip;
	s->slot = client_slot(ci.remote_ip);
	s->last_ms = now_ms(w);
	s->next = w->head;
	if (w->head != NULL)
		w->head->prev = s;
	w->head = s;
	w->cnt.sessions_live++;
	w->cnt.connections++;
	total = __atomic_add_fetch(&sh->conns, 1, __ATOMIC_RELAXED);
	per = __atomic_add_fetch(&sh->per_client[s->slot], 1, __ATOMIC_RELAXED);
	*cb = &sess_cb;
	*user = s;
	s->in_accept = true;
	if (__atomic_load_n(&sh->draining, __ATOMIC_RELAXED)) {
		w->cnt.refused_total++;
		smtp_server_refuse(s->eng, "Service shutting down");
	} else if (total > sh->conf.max_conns) {
		w->cnt.refused_total++;
		LOG_RL(LOG_WARNING, "smtpd: %s: refused: %u connections (the "
		       "limit, [smtp] max_conns)", s->client, total - 1);
		smtp_server_refuse(s->eng, "Error: too many connections");
	} else if (per > sh->conf.max_conns_per_client) {
		w->cnt.refused_per_client++;
		LOG_RL(LOG_WARNING, "smtpd: %s: refused: %u connections from "
		       "this address (the limit, [smtp] max_conns_per_client)",
		       s->client, per - 1);
		smtp_server_refuse(s->eng, "Error: too many connections from "
				   "your address");
	} else {
		LOG(LOG_DEBUG, "smtpd: connect from %s to port %u", s->client,
		    lc->port);
		smtp_server_start(s->eng);
	}
	s->in_accept = false;
	return 0;
}

/* ---- completions and timers ---------------------------------------- */

/* An accepted message goes on to the queue manager; when its ring is
 * full the message waits here (it is safe in the spool meanwhile). */
static void to_qmgr(struct smtpd_worker *w, struct envelope *env)
{
	if (w->nbacklog == 0 &&
	    mta_qmgr_submit(w->sh->qmgr, w->index, env) == 0)
		return;
	if (w->nbacklog == w->capbacklog) {
		size_t cap = w->capbacklog ? w->capbacklog * 2 : 64;
		struct envelope **b = realloc(w->backlog, cap * sizeof(*b));

		if (b == NULL) {
			/* it stays in the spool: delivered after a restart */
			LOG(LOG_ERR, "smtpd: %s: out of memory handing it to "
			    "the queue manager", env->qid);
			envelope_free(env);
			return;
		}
		w->backlog = b;
		w->capbacklog = cap;
	}
	w->backlog[w->nbacklog++] = env;
}

static bool backlog_flush(struct smtpd_worker *w)
{
	size_t i = 0;

	while (i < w->nbacklog &&
	       mta_qmgr_submit(w->sh->qmgr, w->index, w->backlog[i]) == 0)
		i++;
	if (i > 0) {
		memmove(w->backlog, w->backlog + i,
			(w->nbacklog - i) * sizeof(*w->backlog));
		w->nbacklog -= i;
	}
	return i > 0;
}

static void answer(struct smtpd_worker *w, struct sess *s)
{
	struct envelope *env = s->req.env;
	int st = s->req.status;

	s->req_busy = false;
	if (st == 0) {
		w->cnt.messages_queued++;
		w->cnt.bytes_queued += env->body_len;
		LOG(LOG_INFO, "smtpd: %s: client=%s, from=<%s>, nrcpt=%u, "
		    "size=%zu: queued", env->qid, s->client, env->mail_from,
		    env->nrcpt, env->body_len);
	} else {
		w->cnt.messages_tempfailed++;
		LOG_RL(LOG_WARNING, "smtpd: %s: client=%s: not queued: %s",
		       env->qid, s->client, strerror(-st));
	}
	/* the answer may run pipelined commands that start the next
	 * message (and its request) at once: this one is done first */
	s->req.env = NULL;
	if (s->c != NULL) {
		smtp_server_queued(s->eng, st, env->qid);
		s->last_ms = now_ms(w);
	}
	if (st == 0 && w->sh->qmgr != NULL)
		to_qmgr(w, env);
	else
		envelope_free(env);
	if (s->c != NULL) {
		if (s->peer_closed && !s->close_wanted) {
			s->close_wanted = true;
			s->close_ms = now_ms(w);
		}
		flush_out(s);
	}
	if (s->c == NULL)
		sess_maybe_free(s);
}

bool smtpd_poll(struct smtpd_worker *w)
{
	struct spool_req *done[32];
	unsigned n, total = 0;

	reap(w);
	if (w->nbacklog > 0 && backlog_flush(w))
		total++;
	while (w->failed != NULL) {
		struct sess *s = w->failed;
		w->failed = s->fnext;
		answer(w, s);
		total++;
	}
	do {
		n = spool_completions(w->sh->sp, w->index, done, 32);
		for (unsigned i = 0; i < n; i++)
			answer(w, done[i]->user);
		total += n;
	} while (n == 32);
	return total > 0;
}

void smtpd_tick(struct smtpd_worker *w, uint64_t now)
{
	const struct smtpd_conf *c = &w->sh->conf;
	struct sess *s, *next;

	if (now - w->last_sweep_ms < SWEEP_MS)
		return;
	w->last_sweep_ms = now;
	for (s = w->head; s != NULL; s = next) {
		uint64_t idle = now - s->last_ms;

		next = s->next;
		if (s->c == NULL)
			continue;
		if (s->close_wanted) {
			if (now - s->close_ms > CLOSING_LINGER_MS) {
				tcp_abort(s->c);
				s->c = NULL;
				sess_maybe_free(s);
			}
			continue;
		}
		switch (smtp_server_phase(s->eng)) {
		case SMTP_PHASE_COMMAND:
			if (idle >= c->command_timeout_ms) {
				w->cnt.timeouts++;
				LOG_RL(LOG_INFO, "smtpd: %s: timeout after "
				       "%llu s waiting for a command", s->client,
				       (unsigned long long)idle / 1000);
				smtp_server_timeout(s->eng, NULL);
			}
			break;
		case SMTP_PHASE_DATA: {
			uint64_t t = now - s->data_start_ms;
			if (idle >= c->data_timeout_ms) {
				w->cnt.timeouts++;
				LOG_RL(LOG_INFO, "smtpd: %s: timeout after "
				       "%llu s in DATA", s->client,
				       (unsigned long long)idle / 1000);
				smtp_server_timeout(s->eng, NULL);
			} else if (c->min_data_rate != 0 && s->in_data &&
				   t >= c->data_rate_grace_ms &&
				   s->data_bytes * 1000 / t < c->min_data_rate) {
				w->cnt.slow_data++;
				LOG_RL(LOG_INFO, "smtpd: %s: data rate %llu B/s "
				       "below [smtp] min_data_rate %u",
				       s->client, (unsigned long long)
				       (s->data_bytes * 1000 / t),
				       c->min_data_rate);
				smtp_server_timeout(s->eng, "Error: data rate "
						    "too low");
			}
			break;
		}
		case SMTP_PHASE_PENDING:
		case SMTP_PHASE_CLOSING:
			break;
		}
	}
}

/* ---- set-up --------------------------------------------------------- */

void smtpd_conf_defaults(struct smtpd_conf *c)
{
	struct smtp_server_conf e;

	smtp_server_conf_defaults(&e);
	memset(c, 0, sizeof(*c));
	snprintf(c->hostname, sizeof(c->hostname), "mx.dpmail.test");
	c->listen[0] = 25;
	c->listen[1] = 587;
	c->nlisten = 2;
	c->max_message_size = e.max_message_size;
	c->max_recipients = e.max_recipients;
	c->max_errors = e.max_errors;
	c->max_line = e.max_cmd_line;
	c->max_text_line = e.max_text_line;
	c->max_received = e.max_received;
	c->bare_lf = e.bare_lf;
	c->vrfy = e.vrfy;
	c->command_timeout_ms = 300 * 1000; /* RFC 5321 4.5.3.2.7 */
	c->data_timeout_ms = 180 * 1000;    /* 4.5.3.2.5, data block */
	c->min_data_rate = 64;
	c->data_rate_grace_ms = 30 * 1000;
	c->max_conns = 10000;
	c->max_conns_per_client = 100;
}

struct smtpd_shared *smtpd_shared_new(const struct smtpd_conf *c,
				      const struct mta_policy *policy,
				      struct spool *sp)
{
	struct smtpd_shared *sh = calloc(1, sizeof(*sh));

	if (sh == NULL)
		return NULL;
	sh->conf = *c;
	sh->policy = policy;
	sh->sp = sp;
	smtp_server_conf_defaults(&sh->eng);
	sh->eng.hostname = sh->conf.hostname;
	sh->eng.max_cmd_line = c->max_line;
	sh->eng.max_text_line = c->max_text_line;
	sh->eng.max_message_size = c->max_message_size;
	sh->eng.max_recipients = c->max_recipients;
	sh->eng.max_errors = c->max_errors;
	sh->eng.max_received = c->max_received;
	sh->eng.bare_lf = (enum smtp_bare_policy)c->bare_lf;
	sh->eng.vrfy = (enum smtp_vrfy_policy)c->vrfy;
	return sh;
}

void smtpd_shared_set_mta(struct smtpd_shared *sh, struct mta_qmgr *q,
			  const struct mta_route *route)
{
	sh->qmgr = q;
	sh->route = route;
}

void smtpd_shared_set_draining(struct smtpd_shared *sh)
{
	__atomic_store_n(&sh->draining, 1, __ATOMIC_RELAXED);
}

void smtpd_shared_free(struct smtpd_shared *sh)
{
	free(sh);
}

int smtpd_start(struct smtpd_shared *sh, struct stack *st, unsigned worker,
		struct smtpd_worker **out)
{
	struct smtpd_worker *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL)
		return -ENOMEM;
	w->sh = sh;
	w->st = st;
	w->index = worker;
	for (uint32_t i = 0; i < sh->conf.nlisten; i++) {
		struct tcp_listen_opts o = {
			.port = sh->conf.listen[i],
			.cc = TCP_CC_CUBIC,
		};
		w->lctx[i].w = w;
		w->lctx[i].port = sh->conf.listen[i];
		rc = tcp_listen(st, &o, on_accept, &w->lctx[i], &w->l[i]);
		if (rc != 0) {
			LOG(LOG_ERR, "smtpd: cannot listen on port %u: %s",
			    o.port, strerror(-rc));
			free(w);
			return rc;
		}
	}
	*out = w;
	return 0;
}

void smtpd_drain(struct smtpd_worker *w)
{
	if (w == NULL)
		return;
	/* the stack is gone: every session left waits for the spool */
	for (;;) {
		struct sess *s;

		reap(w);
		if (w->head == NULL)
			break;
		s = w->head;
		if (!s->req_busy) {
			if (!s->reaping) {
				s->c = NULL;
				sess_free(s);
			}
			continue;
		}
		if (!smtpd_poll(w)) {
			struct timespec ts = { 0, 200 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
}

void smtpd_free(struct smtpd_worker *w)
{
	if (w == NULL)
		return;
	smtpd_drain(w);
	/* what the queue manager never took stays in the spool */
	for (size_t i = 0; i < w->nbacklog; i++)
		envelope_free(w->backlog[i]);
	free(w->backlog);
	free(w);
}

const struct smtpd_counters *smtpd_get_counters(const struct smtpd_worker *w)
{
	return &w->cnt;
}
