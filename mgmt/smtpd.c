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
 * flight (the writer is reading the envelope), or a password check (the
 * verifier thread holds the request), or a failed AUTH waits out its
 * delay: it is freed when all are over. Never blocks, never touches the
 * disk, never hashes a password.
 *
 * TLS (tls/ over the stream): on an implicit-TLS listener the session's
 * tls_conn exists from accept; with STARTTLS it is created by the
 * engine's starttls hook, right after "220 Ready to start TLS" was
 * written (those bytes still leave in clear: out_raw counts them).
 * Then every received byte goes to tls_conn_feed and the plaintext it
 * yields to the engine; the engine's replies (s->out) go through
 * tls_conn_write, and the encrypted bytes leave from the tls_conn's own
 * buffer. The handshake runs inside the feed on this worker: its cost
 * is OpenSSL's (one ECDHE and one signature, well under a millisecond),
 * counted in tls_handshake_us; a handshake not done within
 * TLS_HANDSHAKE_MS is reset.
 */
#include "mgmt/smtpd.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/parse.h"
#include "mgmt/smtpd_tls.h"
#include "mta/mta_policy.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"
#include "store/spool.h"
#include "store/users.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "tls/tls.h"

/* Replies held while the client does not read them; past this the
 * session stops reading its commands (pipelining without reading). */
#define OUT_HIGH (64 * 1024)
/* A closing session whose replies cannot leave, or whose client does not
 * close after our FIN, is reset after this. */
#define CLOSING_LINGER_MS 5000
#define SWEEP_MS 1000
#define PER_CLIENT_SLOTS 4096
/* A TLS handshake (implicit, or after STARTTLS) must finish within this */
#define TLS_HANDSHAKE_MS 10000
/* Plaintext read out of the tls_conn per call */
#define TLS_READ_CHUNK 4096

/* What a reload may change under running sessions: the limits, the
 * recipient policy, the alias tables and the TLS context (certificates
 * re-read). Each session keeps the generation it started with until it
 * ends; new ones take the current.
 * Holders: the shared state while it is current, each worker (its
 * copy, swapped in smtpd_tick), each session. */
struct smtpd_gen {
	uint32_t refs;                       /* atomic */
	struct smtpd_conf conf;
	struct smtp_server_conf eng;
	struct mta_policy *policy;
	bool own_policy;                     /* a reload's: freed with it */
	const struct mta_route *route;       /* a reference, or NULL */
	struct tls_ctx *tls;                 /* owned; NULL: no TLS */
};

struct smtpd_shared {
	/* as started: listeners, TLS and the users file (restart only) */
	struct smtpd_conf conf;
	struct smtpd_gen *cur;               /* atomic pointer */
	uint32_t gen_seq;                    /* atomic: bumped per reload */
	pthread_mutex_t gen_mu;              /* one reload at a time */
	struct smtpd_worker *workers[SMTPD_MAX_WORKERS]; /* atomic */
	struct spool *sp;
	struct mta_qmgr *qmgr;               /* NULL: accept only */
	uint32_t conns;                      /* atomic */
	uint32_t per_client[PER_CLIENT_SLOTS]; /* atomic, by address hash */
	uint32_t draining;                   /* atomic: shutdown --drain */
	struct smtp_server_ops ops;          /* starttls/auth when enabled */
	bool tls_on;                         /* TLS set up at start */
	struct users_db *users;              /* NULL: no AUTH */
	/* AUTH failures per address hash in the current window */
	uint32_t auth_fail[PER_CLIENT_SLOTS];       /* atomic */
	uint32_t auth_fail_epoch[PER_CLIENT_SLOTS]; /* atomic */
};

struct sess;

struct listener_ctx {
	struct smtpd_worker *w;
	uint16_t port;
	bool implicit, tls_required, auth_required;
};

struct smtpd_worker {
	struct smtpd_shared *sh;
	struct smtpd_gen *gen;   /* for new sessions */
	uint32_t gen_seen;       /* atomic: sh->gen_seq when gen was taken */
	struct stack *st;
	unsigned index;
	struct tcp_listener *l[SMTPD_MAX_LISTEN];
	struct listener_ctx lctx[SMTPD_MAX_LISTEN];
	struct sess *head;       /* every live session */
	struct sess *failed;     /* submissions refused, answered on poll */
	struct sess *reap;       /* finished sessions, freed on poll */
	struct sess *adelay;     /* failed AUTHs waiting out their delay */
	uint64_t last_sweep_ms;
	/* queued messages the queue manager's ring could not take yet */
	struct envelope **backlog;
	size_t nbacklog, capbacklog;
	struct smtpd_counters cnt;
};

struct sess {
	struct smtpd_worker *w;
	struct smtpd_gen *gen;       /* limits and tables it started with */
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
	/* TLS */
	struct tls_conn *tls;
	size_t out_raw;              /* s->out bytes that leave in clear */
	bool tls_notify_sent, tls_done, tls_failed;
	uint64_t tls_start_ms;
	/* AUTH */
	struct users_req *areq;      /* owned by the verifier while auth_busy */
	bool auth_busy, auth_delayed, trusted;
	uint32_t auth_failures;
	uint64_t auth_delay_until;
	struct sess *anext;          /* on w->adelay */
	char auth_addrs[USERS_ADDRS_MAX + 1];
	struct spool_req req;
	char client[24];             /* "a.b.c.d[port]" for logs */
};

static const struct tcp_callbacks sess_cb;

static uint32_t client_slot(uint32_t ip)
{
	return (uint32_t)(((uint64_t)ip * 0x9E3779B97F4A7C15ull) >> 52) %
	       PER_CLIENT_SLOTS;
}

/* ---- generations (reload) ------------------------------------------- */

static struct smtpd_gen *gen_new(const struct smtpd_conf *c,
				 struct mta_policy *policy, bool own_policy,
				 const struct mta_route *route)
{
	struct smtpd_gen *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->refs = 1;
	g->conf = *c;
	g->policy = policy;
	g->own_policy = own_policy;
	g->route = route != NULL ? mta_route_ref(route) : NULL;
	smtp_server_conf_defaults(&g->eng);
	g->eng.hostname = g->conf.hostname;
	g->eng.max_cmd_line = c->max_line;
	g->eng.max_text_line = c->max_text_line;
	g->eng.max_message_size = c->max_message_size;
	g->eng.max_recipients = c->max_recipients;
	g->eng.max_errors = c->max_errors;
	g->eng.max_received = c->max_received;
	g->eng.bare_lf = (enum smtp_bare_policy)c->bare_lf;
	g->eng.vrfy = (enum smtp_vrfy_policy)c->vrfy;
	return g;
}

static struct smtpd_gen *gen_ref(struct smtpd_gen *g)
{
	__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	return g;
}

static void gen_unref(struct smtpd_gen *g)
{
	if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (g->own_policy)
		mta_policy_free(g->policy);
	mta_route_free(g->route);
	tls_ctx_free(g->tls);
	free(g);
}

/* Once per tick: a reload published a new generation. The reloader
 * keeps the current one alive until every worker has said (gen_seen)
 * that it holds its own reference, so the load below is safe. */
static void gen_check(struct smtpd_worker *w)
{
	struct smtpd_shared *sh = w->sh;
	uint32_t seq = __atomic_load_n(&sh->gen_seq, __ATOMIC_ACQUIRE);
	struct smtpd_gen *old;

	if (seq == w->gen_seen)
		return;
	old = w->gen;
	w->gen = gen_ref(__atomic_load_n(&sh->cur, __ATOMIC_ACQUIRE));
	__atomic_store_n(&w->gen_seen, seq, __ATOMIC_RELEASE);
	gen_unref(old);
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
		LOG_RLN(LOG_INFO, 1000, 2000, "smtpd: disconnect from %s "
			"commands=%u errors=%u messages=%u rcpt_rejected=%u",
			s->client, st->commands, st->errors, st->messages,
			st->rejected_rcpts);
	}
	gen_unref(s->gen);
	smtp_server_free(s->eng);
	tls_conn_free(s->tls);
	free(s->areq);
	free(s->out);
	free(s);
}

/* Once nothing refers to the session any more (no connection, no spool
 * request), it is freed at the start of the next poll: never inside a
 * callback of the engine or the stack that may still use it. */
static void sess_maybe_free(struct sess *s)
{
	if (s->c == NULL && !s->req_busy && !s->auth_busy &&
	    !s->auth_delayed && !s->reaping) {
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
static size_t out_waiting(const struct sess *s)
{
	return s->out_len + (s->tls ? tls_conn_pending_out(s->tls) : 0);
}

static void update_pause(struct sess *s)
{
	set_paused(s, smtp_server_blocked(s->eng) || out_waiting(s) > OUT_HIGH);
}

static void out_consume(struct sess *s, size_t n)
{
	memmove(s->out, s->out + n, s->out_len - n);
	s->out_len -= n;
	s->out_raw = s->out_raw > n ? s->out_raw - n : 0;
}

/* Plaintext replies into the tls_conn, its records onto the stream.
 * False when the connection cannot send any more. */
static bool tls_pump(struct sess *s)
{
	for (;;) {
		bool moved = false;
		const uint8_t *p;
		size_t n;

		if (s->out_len > s->out_raw && !s->tls_failed) {
			ssize_t k = tls_conn_write(s->tls, s->out + s->out_raw,
						   s->out_len - s->out_raw);
			if (k > 0) {
				memmove(s->out + s->out_raw,
					s->out + s->out_raw + k,
					s->out_len - s->out_raw - (size_t)k);
				s->out_len -= (size_t)k;
				moved = true;
			} else if (k < 0) {
				s->out_len = s->out_raw; /* nothing more to say */
			}
		}
		p = tls_conn_out_peek(s->tls, &n);
		if (p != NULL && n > 0) {
			ssize_t k = tcp_send(s->c, p, n);
			if (k < 0)
				return false;
			if (k > 0) {
				tls_conn_out_consume(s->tls, (size_t)k);
				moved = true;
			}
		}
		if (!moved)
			return true;
	}
}

/* Sends what waits; closes once everything is out and close was asked. */
static void flush_out(struct sess *s)
{
	if (s->c == NULL)
		return;
	if (s->out_raw > 0 && !s->in_accept) {
		/* clear bytes before TLS ("220 Ready to start TLS") */
		ssize_t n = tcp_send(s->c, s->out, s->out_raw);
		if (n > 0)
			out_consume(s, (size_t)n);
		else if (n < 0)
			s->out_len = s->out_raw = 0;
	}
	if (s->tls != NULL && s->out_raw == 0 && !s->in_accept) {
		if (s->close_wanted && !s->tls_notify_sent && s->out_len == 0 &&
		    !s->tls_failed) {
			s->tls_notify_sent = true;
			(void)tls_conn_shutdown(s->tls);
		}
		if (!tls_pump(s))
			s->out_len = 0;
		if (s->tls_failed)
			s->out_len = 0;
	} else if (s->tls == NULL && s->out_len > 0 && !s->in_accept) {
		ssize_t n = tcp_send(s->c, s->out, s->out_len);
		if (n > 0) {
			out_consume(s, (size_t)n);
		} else if (n < 0) {
			s->out_len = 0; /* the connection cannot send any more */
		}
	}
	if (s->close_wanted && out_waiting(s) == 0 && !s->in_accept &&
	    (s->tls == NULL || s->tls_notify_sent || s->tls_failed)) {
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
	if (s->out_len == 0 && !s->in_accept && s->tls == NULL) {
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
	else if (s->tls != NULL)
		flush_out(s);
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
	if (s->gen->conf.auth.sender_login_match &&
	    smtp_server_auth_user(s->eng)[0] != '\0' &&
	    !users_sender_ok(smtp_server_auth_user(s->eng), s->auth_addrs,
			     env->mail_from)) {
		LOG_RL(LOG_INFO, "smtpd: %s: reject: MAIL from %s: <%s> not "
		       "owned by user %s", s->client, s->client,
		       env->mail_from, smtp_server_auth_user(s->eng));
		smtp_server_set_reject(s->eng, 553, "5.7.1", "Sender address "
				       "rejected: not owned by user");
		return SMTP_REJECT_CUSTOM;
	}
	spool_qid_next(s->w->sh->sp, s->w->index, env->qid);
	LOG(LOG_DEBUG, "smtpd: %s: client=%s, from=<%s>", env->qid, s->client,
	    env->mail_from);
	return SMTP_OK;
}

/* "user%remote@local", "user!remote@local", "\"a@b\"@local" */
static bool routing_trick(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t ll = at ? (size_t)(at - addr) : strlen(addr);

	for (size_t i = 0; i < ll; i++)
		if (addr[i] == '%' || addr[i] == '!' || addr[i] == '@' ||
		    addr[i] == '"')
			return true;
	return at == NULL;
}

static enum smtp_verdict op_rcpt(void *user, const struct envelope *env,
				 const char *addr)
{
	struct sess *s = user;
	struct mta_policy_reply rep;
	enum mta_verdict v = mta_policy_rcpt_reply(s->gen->policy,
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
		/* RFC 4954 / 6409: an authenticated client may relay, but
		 * never through the routing tricks rule 1 refuses */
		if (smtp_server_auth_user(s->eng)[0] != '\0' &&
		    strcmp(rep.text, "relay access denied") == 0 &&
		    !routing_trick(addr)) {
			s->w->cnt.rcpt_accepted++;
			return SMTP_OK;
		}
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

	if (s->gen->route != NULL)
		expand_aliases(s->gen->route, env, s->client);

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

/* After "220 2.0.0 Ready to start TLS" was written: what follows on
 * the stream is the client's ClientHello. */
static int op_starttls(void *user)
{
	struct sess *s = user;

	if (s->gen->tls == NULL || s->tls != NULL)
		return -EPROTO;
	s->tls = tls_conn_new(s->gen->tls, NULL);
	if (s->tls == NULL)
		return -ENOMEM;
	s->out_raw = s->out_len;
	s->tls_start_ms = now_ms(s->w);
	return 0;
}

static uint32_t auth_epoch(const struct smtpd_worker *w)
{
	return (uint32_t)(now_ms(w) / w->gen->conf.auth.client_window_ms) + 1;
}

static bool client_locked(struct sess *s)
{
	struct smtpd_shared *sh = s->w->sh;

	return __atomic_load_n(&sh->auth_fail_epoch[s->slot],
			       __ATOMIC_RELAXED) == auth_epoch(s->w) &&
	       __atomic_load_n(&sh->auth_fail[s->slot], __ATOMIC_RELAXED) >=
		       s->gen->conf.auth.client_max_failures;
}

static void client_failed(struct sess *s)
{
	struct smtpd_shared *sh = s->w->sh;
	uint32_t e = auth_epoch(s->w);

	if (__atomic_exchange_n(&sh->auth_fail_epoch[s->slot], e,
				__ATOMIC_RELAXED) != e)
		__atomic_store_n(&sh->auth_fail[s->slot], 0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&sh->auth_fail[s->slot], 1, __ATOMIC_RELAXED);
}

/* The engine's SASL exchange is done: the verifier thread checks the
 * password; the session waits (blocked) for its answer. */
static int op_auth(void *user, const char *authzid, const char *authcid,
		   const char *pass)
{
	struct sess *s = user;
	struct smtpd_worker *w = s->w;
	struct users_req *r;
	int rc;

	if (client_locked(s)) {
		w->cnt.auth_refused++;
		LOG_RL(LOG_NOTICE, "smtpd: %s: AUTH refused: too many "
		       "failures from this address", s->client);
		return -EAGAIN;
	}
	r = s->areq ? s->areq : calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	s->areq = r;
	memset(r, 0, sizeof(*r));
	snprintf(r->user, sizeof(r->user), "%s", authcid);
	/* proxy authorization is not offered: a different authzid
	 * fails like a wrong password (same cost, same delay) */
	snprintf(r->pass, sizeof(r->pass), "%s",
		 authzid[0] == '\0' || strcmp(authzid, authcid) == 0 ? pass
								   : "");
	r->worker = w->index;
	r->cookie = s;
	rc = users_submit(w->sh->users, r);
	if (rc != 0) {
		memset(r->pass, 0, sizeof(r->pass));
		return rc;
	}
	s->auth_busy = true;
	return -EINPROGRESS;
}

static const struct smtp_server_ops sess_ops = {
	.write = op_write,
	.close = op_close,
	.mail = op_mail,
	.rcpt = op_rcpt,
	.message = op_message,
};

/* ---- the stream's callbacks ---------------------------------------- */

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/* Network bytes into the tls_conn, its plaintext into the engine. */
static void tls_input(struct sess *s, const uint8_t *d, size_t len)
{
	struct smtpd_worker *w = s->w;
	uint8_t buf[TLS_READ_CHUNK];
	bool was_done = s->tls_done;
	uint64_t t0 = was_done ? 0 : mono_us();
	ssize_t r;
	int rc;

	if (s->tls_failed)
		return;
	rc = tls_conn_feed(s->tls, d, len);
	if (!was_done)
		w->cnt.tls_handshake_us += mono_us() - t0;
	if (rc == 0 && !was_done && tls_conn_handshake_done(s->tls)) {
		char desc[160];

		s->tls_done = true;
		w->cnt.tls_handshakes++;
		if (tls_conn_session_reused(s->tls))
			w->cnt.tls_resumed++;
		tls_conn_describe(s->tls, desc, sizeof(desc));
		LOG_RLN(LOG_INFO, 1000, 2000, "smtpd: %s: TLS established: "
			"%s%s%s%s", s->client, desc,
			tls_conn_session_reused(s->tls) ? " (resumed)" : "",
			tls_conn_sni(s->tls) ? ", SNI " : "",
			tls_conn_sni(s->tls) ? tls_conn_sni(s->tls) : "");
	}
	while (rc == 0 &&
	       (r = tls_conn_read(s->tls, buf, sizeof(buf))) > 0) {
		smtp_server_input(s->eng, buf, (size_t)r);
		if (s->c == NULL || s->tls_failed)
			return;
	}
	if (rc != 0 || tls_conn_failed(s->tls)) {
		s->tls_failed = true;
		w->cnt.tls_failed++;
		LOG_RL(LOG_INFO, "smtpd: %s: TLS %s failed: %s", s->client,
		       s->tls_done ? "session" : "handshake",
		       tls_conn_error(s->tls));
		/* the alert OpenSSL queued goes out, then the close */
		s->close_wanted = true;
		s->close_ms = now_ms(w);
		s->out_len = s->out_raw = 0;
	}
	flush_out(s);
}

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
	if (s->tls != NULL)
		tls_input(s, d, len);
	else
		smtp_server_input(s->eng, d, len);
	if (s->c == NULL)
		return;
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
	struct smtpd_gen *g = w->gen;
	struct tcp_conn_info ci;
	struct sess *s;
	uint32_t total, per;
	char addr[16];

	tcp_conn_get_info(c, &ci);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	format_ipv4(ci.remote_ip, addr);
	s->eng = smtp_server_new(&g->eng, &sh->ops, s, addr, ci.remote_port,
				 lc->port);
	if (s->eng == NULL) {
		free(s);
		return -ENOMEM;
	}
	snprintf(s->client, sizeof(s->client), "%s[%u]", addr,
		 ci.remote_port);
	s->w = w;
	s->gen = gen_ref(g);
	s->c = c;
	s->client_ip = ci.remote_ip;
	{
		struct smtp_session_policy pol = {
			.tls_required = lc->tls_required && g->tls != NULL,
			.auth_required = lc->auth_required,
		};
		uint32_t pt = g->conf.auth.plaintext;

		s->trusted = mta_policy_rcpt(g->policy, ci.remote_ip,
					     "postmaster@[192.0.2.1]") ==
			     MTA_RELAY;
		pol.auth_plaintext = pt == 2 || (pt == 1 && s->trusted);
		smtp_server_set_policy(s->eng, &pol);
	}
	if (lc->implicit) {
		s->tls = tls_conn_new(g->tls, NULL);
		if (s->tls == NULL) {
			gen_unref(s->gen);
			smtp_server_free(s->eng);
			free(s);
			return -ENOMEM;
		}
		s->tls_start_ms = now_ms(w);
		smtp_server_set_tls(s->eng);
	}
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
	} else if (total > g->conf.max_conns) {
		w->cnt.refused_total++;
		LOG_RL(LOG_WARNING, "smtpd: %s: refused: %u connections (the "
		       "limit, [smtp] max_conns)", s->client, total - 1);
		smtp_server_refuse(s->eng, "Error: too many connections");
	} else if (per > g->conf.max_conns_per_client) {
		w->cnt.refused_per_client++;
		LOG_RL(LOG_WARNING, "smtpd: %s: refused: %u connections from "
		       "this address (the limit, [smtp] max_conns_per_client)",
		       s->client, per - 1);
		smtp_server_refuse(s->eng, "Error: too many connections from "
				   "your address");
	} else {
		LOG_RLN(LOG_INFO, 1000, 2000, "smtpd: connect from %s to "
			"port %u", s->client, lc->port);
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
		    "size=%zu%s%s%s: queued", env->qid, s->client,
		    env->mail_from, env->nrcpt, env->body_len,
		    s->tls ? ", tls" : "",
		    smtp_server_auth_user(s->eng)[0] ? ", sasl_username=" : "",
		    smtp_server_auth_user(s->eng));
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

/* The verifier's answer to op_auth. A failure is answered only after
 * [auth] fail_delay_ms (the session stays blocked meanwhile), and the
 * max_failures-th one closes the session. */
static void auth_answer(struct smtpd_worker *w, struct users_req *r)
{
	struct sess *s = r->cookie;

	s->auth_busy = false;
	w->cnt.auth_hash_us += r->hash_us;
	if (s->c == NULL) {
		sess_maybe_free(s);
		return;
	}
	if (r->status == 0) {
		w->cnt.auth_ok++;
		snprintf(s->auth_addrs, sizeof(s->auth_addrs), "%s", r->addrs);
		LOG(LOG_INFO, "smtpd: %s: AUTH ok: sasl_username=%s%s",
		    s->client, r->user, s->tls ? "" : " (no TLS)");
		smtp_server_auth_done(s->eng, 0);
		s->last_ms = now_ms(w);
		flush_out(s);
		return;
	}
	w->cnt.auth_failed++;
	s->auth_failures++;
	client_failed(s);
	LOG_RL(LOG_NOTICE, "smtpd: %s: AUTH failed: sasl_username=%s (%u on "
	       "this connection)", s->client, r->user, s->auth_failures);
	s->areq->status = r->status == -EIO ? -EIO : -EACCES;
	s->auth_delayed = true;
	s->auth_delay_until = now_ms(w) + s->gen->conf.auth.fail_delay_ms;
	s->anext = w->adelay;
	w->adelay = s;
}

static bool auth_delays(struct smtpd_worker *w)
{
	struct sess **pp = &w->adelay;
	uint64_t now = now_ms(w);
	bool any = false;

	while (*pp != NULL) {
		struct sess *s = *pp;

		if (s->c != NULL && now < s->auth_delay_until) {
			pp = &s->anext;
			continue;
		}
		*pp = s->anext;
		s->auth_delayed = false;
		any = true;
		if (s->c == NULL) {
			sess_maybe_free(s);
			continue;
		}
		smtp_server_auth_done(s->eng, s->areq->status);
		if (s->auth_failures >= s->gen->conf.auth.max_failures)
			smtp_server_refuse(s->eng, "Error: too many "
					   "authentication failures");
		s->last_ms = now;
		flush_out(s);
	}
	return any;
}

bool smtpd_poll(struct smtpd_worker *w)
{
	struct spool_req *done[32];
	unsigned n, total = 0;

	reap(w);
	if (w->sh->users != NULL) {
		struct users_req *ar[16];

		n = users_completions(w->sh->users, w->index, ar, 16);
		for (unsigned i = 0; i < n; i++)
			auth_answer(w, ar[i]);
		total += n;
		if (w->adelay != NULL && auth_delays(w))
			total++;
	}
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
	struct sess *s, *next;

	gen_check(w);
	if (now - w->last_sweep_ms < SWEEP_MS)
		return;
	w->last_sweep_ms = now;
	for (s = w->head; s != NULL; s = next) {
		uint64_t idle = now - s->last_ms;
		const struct smtpd_conf *c = &s->gen->conf;

		next = s->next;
		if (s->c == NULL)
			continue;
		if (s->tls != NULL && !s->tls_done && !s->close_wanted &&
		    now - s->tls_start_ms >= TLS_HANDSHAKE_MS) {
			/* an abandoned handshake holds no more than this */
			w->cnt.tls_failed++;
			LOG_RL(LOG_INFO, "smtpd: %s: TLS handshake not done "
			       "after %u s; reset", s->client,
			       TLS_HANDSHAKE_MS / 1000);
			tcp_abort(s->c);
			s->c = NULL;
			sess_maybe_free(s);
			continue;
		}
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
	c->tls.session_tickets = true;
	c->auth.fail_delay_ms = 1000;
	c->auth.max_failures = 3;
	c->auth.client_max_failures = 20;
	c->auth.client_window_ms = 300 * 1000;
}

struct smtpd_shared *smtpd_shared_new(const struct smtpd_conf *c,
				      const struct mta_policy *policy,
				      struct spool *sp)
{
	struct smtpd_shared *sh = calloc(1, sizeof(*sh));

	if (sh == NULL)
		return NULL;
	sh->conf = *c;
	/* the first generation's policy stays the caller's */
	sh->cur = gen_new(c, (struct mta_policy *)policy, false, NULL);
	if (sh->cur == NULL) {
		free(sh);
		return NULL;
	}
	pthread_mutex_init(&sh->gen_mu, NULL);
	sh->sp = sp;
	sh->ops = sess_ops;
	return sh;
}

void smtpd_shared_set_mta(struct smtpd_shared *sh, struct mta_qmgr *q,
			  const struct mta_route *route)
{
	sh->qmgr = q;
	mta_route_free(sh->cur->route);
	sh->cur->route = route != NULL ? mta_route_ref(route) : NULL;
}

/* The live parts of b over a: all but the listeners, TLS and the users
 * file, which the listeners and the verifier were built from. */
static void conf_live(struct smtpd_conf *out, const struct smtpd_conf *a,
		      const struct smtpd_conf *b)
{
	*out = *b;
	memcpy(out->listen, a->listen, sizeof(out->listen));
	out->nlisten = a->nlisten;
	memcpy(out->tls_implicit, a->tls_implicit, sizeof(out->tls_implicit));
	memcpy(out->tls_required, a->tls_required, sizeof(out->tls_required));
	memcpy(out->auth_required, a->auth_required,
	       sizeof(out->auth_required));
	/* certificates and TLS settings are live; TLS on or off is not
	 * (the listeners and STARTTLS were set up for it) */
	if ((a->tls.cert_file[0] != '\0') != (b->tls.cert_file[0] != '\0'))
		out->tls = a->tls;
	memcpy(out->auth.users_file, a->auth.users_file,
	       sizeof(out->auth.users_file));
}

bool smtpd_conf_restart_same(const struct smtpd_conf *a,
			     const struct smtpd_conf *b)
{
	struct smtpd_conf x;

	conf_live(&x, a, b);
	return memcmp(&x, b, sizeof(x)) == 0;
}

int smtpd_reconf_prepare(struct smtpd_shared *sh, const struct smtpd_conf *c,
			 struct mta_policy *policy,
			 const struct mta_route *route, struct smtpd_gen **out,
			 char *why, size_t len)
{
	struct smtpd_conf live;
	struct smtpd_gen *g;

	conf_live(&live, &sh->conf, c);
	pthread_mutex_lock(&sh->gen_mu);
	g = gen_new(&live, policy, true,
		    route != NULL ? route : sh->cur->route);
	if (g != NULL && sh->tls_on) {
		/* the certificates re-read; tickets issued under the old
		 * context stay good */
		if (smtpd_tls_ctx_build(&live.tls, &g->tls, why, len) != 0) {
			g->own_policy = false; /* still the caller's */
			gen_unref(g);
			pthread_mutex_unlock(&sh->gen_mu);
			return -EINVAL;
		}
		tls_ctx_copy_ticket_keys(g->tls, sh->cur->tls);
	}
	pthread_mutex_unlock(&sh->gen_mu);
	if (g == NULL) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	*out = g;
	return 0;
}

void smtpd_reconf_abort(struct smtpd_gen *g)
{
	gen_unref(g);
}

void smtpd_reconf_commit(struct smtpd_shared *sh, struct smtpd_gen *g,
			 uint32_t timeout_ms)
{
	struct smtpd_gen *old;
	uint32_t seq, waited = 0;
	bool all;

	pthread_mutex_lock(&sh->gen_mu);
	old = sh->cur;
	__atomic_store_n(&sh->cur, g, __ATOMIC_RELEASE);
	seq = __atomic_add_fetch(&sh->gen_seq, 1, __ATOMIC_ACQ_REL);
	/* grace period: the old generation's "current" reference goes
	 * once every worker holds the new one (each looks every tick) */
	for (;;) {
		all = true;
		for (unsigned i = 0; i < SMTPD_MAX_WORKERS; i++) {
			struct smtpd_worker *w = __atomic_load_n(
				&sh->workers[i], __ATOMIC_ACQUIRE);
			if (w != NULL && (int32_t)(__atomic_load_n(
				&w->gen_seen, __ATOMIC_ACQUIRE) - seq) < 0)
				all = false;
		}
		if (all || waited >= timeout_ms)
			break;
		usleep(1000);
		waited++;
	}
	if (all)
		gen_unref(old);
	else
		LOG(LOG_WARNING, "smtpd: reload: a worker did not take the "
		    "new limits within %u ms; the old ones are kept in memory",
		    timeout_ms);
	pthread_mutex_unlock(&sh->gen_mu);
}

void smtpd_shared_set_draining(struct smtpd_shared *sh)
{
	__atomic_store_n(&sh->draining, 1, __ATOMIC_RELAXED);
}

void smtpd_shared_free(struct smtpd_shared *sh)
{
	if (sh == NULL)
		return;
	users_stop(sh->users);
	gen_unref(sh->cur);
	pthread_mutex_destroy(&sh->gen_mu);
	free(sh);
}

int smtpd_shared_tls_auth(struct smtpd_shared *sh, unsigned nworkers,
			  char *why, size_t len)
{
	const struct smtpd_conf *c = &sh->conf;
	int rc;

	/* before the workers start: the first generation is still private */
	if (smtpd_tls_ctx_build(&c->tls, &sh->cur->tls, why, len) != 0)
		return -1;
	sh->tls_on = sh->cur->tls != NULL;
	if (sh->tls_on) {
		sh->ops.starttls = op_starttls;
		LOG(LOG_INFO, "smtpd: TLS with %s%s%s; STARTTLS offered%s%s%s%s",
		    c->tls.cert_file, c->tls.sni_certs[0] ? " and " : "",
		    c->tls.sni_certs, c->tls_implicit[0] ? ", implicit TLS on " : "",
		    c->tls_implicit, c->tls_required[0] ?
		    ", required on " : "", c->tls_required);
	} else {
		LOG(LOG_NOTICE, "smtpd: no [tls] cert_file: STARTTLS not "
		    "offered%s", c->tls_implicit[0] ? ", implicit TLS ports "
		    "not opened" : "");
	}
	if (c->auth.users_file[0] != '\0') {
		rc = users_start(c->auth.users_file, nworkers, &sh->users);
		if (rc != 0) {
			snprintf(why, len, "[auth] users_file %s: %s",
				 c->auth.users_file, strerror(-rc));
			return -1;
		}
		sh->ops.auth = op_auth;
		LOG(LOG_INFO, "smtpd: AUTH PLAIN LOGIN with %zu users from %s%s",
		    users_count(sh->users), c->auth.users_file,
		    c->auth.plaintext == 2 ? " (also without TLS)" :
		    c->auth.plaintext == 1 ? " (without TLS from trusted "
		    "networks)" : " (after TLS only)");
	} else if (c->auth_required[0] != '\0') {
		snprintf(why, len, "[smtp] auth_required is set but [auth] "
			 "users_file is not: nobody could send");
		return -1;
	}
	return 0;
}

int smtpd_start(struct smtpd_shared *sh, struct stack *st, unsigned worker,
		struct smtpd_worker **out)
{
	struct smtpd_worker *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL)
		return -ENOMEM;
	if (worker >= SMTPD_MAX_WORKERS) {
		free(w);
		return -EINVAL;
	}
	w->sh = sh;
	w->st = st;
	w->index = worker;
	uint16_t ports[SMTPD_MAX_LISTEN];
	char why[128];
	int nimpl = !sh->tls_on ? 0 :
		smtpd_ports_parse(sh->conf.tls_implicit, ports + sh->conf.nlisten,
				  SMTPD_MAX_LISTEN - sh->conf.nlisten, why,
				  sizeof(why));
	uint32_t nports;

	if (nimpl < 0)
		nimpl = 0; /* refused by config_load before */
	memcpy(ports, sh->conf.listen, sh->conf.nlisten * sizeof(*ports));
	nports = sh->conf.nlisten + (uint32_t)nimpl;
	for (uint32_t i = 0; i < nports; i++) {
		struct tcp_listen_opts o = {
			.port = ports[i],
			.cc = TCP_CC_CUBIC,
		};
		w->lctx[i].w = w;
		w->lctx[i].port = ports[i];
		w->lctx[i].implicit = i >= sh->conf.nlisten;
		w->lctx[i].tls_required =
			smtpd_ports_has(sh->conf.tls_required, ports[i]);
		w->lctx[i].auth_required =
			smtpd_ports_has(sh->conf.auth_required, ports[i]);
		rc = tcp_listen(st, &o, on_accept, &w->lctx[i], &w->l[i]);
		if (rc != 0) {
			LOG(LOG_ERR, "smtpd: cannot listen on port %u: %s",
			    o.port, strerror(-rc));
			free(w);
			return rc;
		}
	}
	/* under the reload lock: the generation and the sequence agree */
	pthread_mutex_lock(&sh->gen_mu);
	w->gen = gen_ref(sh->cur);
	w->gen_seen = __atomic_load_n(&sh->gen_seq, __ATOMIC_ACQUIRE);
	__atomic_store_n(&sh->workers[worker], w, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&sh->gen_mu);
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
		if (w->adelay != NULL) {
			/* nobody waits for these answers any more */
			for (struct sess *d = w->adelay; d != NULL; d = d->anext)
				d->auth_delayed = false;
			w->adelay = NULL;
		}
		if (!s->req_busy && !s->auth_busy) {
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
	if (w->sh->workers[w->index] == w)
		__atomic_store_n(&w->sh->workers[w->index], NULL,
				 __ATOMIC_RELEASE);
	gen_unref(w->gen);
	free(w);
}

const struct smtpd_counters *smtpd_get_counters(const struct smtpd_worker *w)
{
	return &w->cnt;
}
