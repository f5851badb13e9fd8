/*
 * mta_out_conn.c: one outbound connection of mta_out (mta_out.h): the TCP
 * stream, the SMTP client engine over it, the write buffer and timers.
 *
 * A conn is attached to a delivery (c->d), idle in the cache, or
 * quitting. It is marked dead once its TCP handle is closed, aborted or
 * ended by on_closed, and freed by mo_reap() at the start of the next
 * poll or tick, never inside a callback of the stack or the engine.
 *
 * STARTTLS (RFC 3207): when the destination's policy is not "none" and
 * the server offers it, the first ops->ready sends STARTTLS; on its 220
 * a tls_conn (client, SNI = the host's name) takes over the stream and
 * the engine says EHLO again once the handshake is done. "may" goes on
 * in clear when STARTTLS is not offered or refused, and when the
 * handshake fails it connects to the same address again at once without
 * STARTTLS (as Postfix and KumoMTA do); "encrypt" and
 * "verify" end the session instead (the recipients are deferred), and
 * "verify" also ends it when the certificate does not chain to the CA
 * file or does not name the host. The handshake runs on this worker.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "mta/mta_out_int.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "tls/tls.h"

#define TLS_READ_CHUNK 4096
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

static const struct smtp_client_ops client_ops;

void mo_idle_unlink(struct conn *c)
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

void mo_idle_push(struct conn *c)
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

/* Marks a conn whose TCP handle is gone; freed by mo_reap(). */
void mo_conn_dead(struct conn *c)
{
	mo_idle_unlink(c);
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
	tls_conn_free(c->tls);
	free(c->out);
	free(c);
}

void mo_reap(struct mta_out *o)
{
	struct conn *c = o->conns, *n;

	for (; c != NULL; c = n) {
		n = c->next;
		if (c->dead && c->tc == NULL)
			conn_free(c);
	}
}

void mo_conn_abort(struct conn *c)
{
	if (c->tc) {
		tcp_abort(c->tc);
		c->tc = NULL;
	}
	mo_conn_dead(c);
}

/* TLS: plaintext into the tls_conn, its records onto the stream. */
static void tls_flush(struct conn *c)
{
	for (;;) {
		bool moved = false;
		const uint8_t *p;
		size_t n;

		if (c->out_len > 0 && !tls_conn_failed(c->tls)) {
			ssize_t k = tls_conn_write(c->tls, c->out, c->out_len);
			if (k > 0) {
				memmove(c->out, c->out + k, c->out_len - (size_t)k);
				c->out_len -= (size_t)k;
				moved = true;
			} else if (k < 0) {
				c->out_len = 0;
			}
		}
		p = tls_conn_out_peek(c->tls, &n);
		if (p != NULL && n > 0) {
			ssize_t k = tcp_send(c->tc, p, n);
			if (k < 0) {
				c->out_len = 0;
				return;
			}
			if (k > 0) {
				tls_conn_out_consume(c->tls, (size_t)k);
				moved = true;
			}
		}
		if (!moved)
			return;
	}
}

static void flush_out(struct conn *c)
{
	ssize_t n;

	if (c->tc != NULL && c->tls != NULL) {
		tls_flush(c);
		return;
	}
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
void mo_conn_pump(struct conn *c)
{
	uint32_t ms;

	/* the handle was reset under the engine (no memory for a write):
	 * the session is lost, now that no engine call is running */
	if (!c->dead && c->tc == NULL && !c->connecting && c->cl &&
	    smtp_client_stage(c->cl) != SMTP_CLIENT_CLOSED)
		smtp_client_lost(c->cl);
	while (c->cl && c->tc && !c->dead && c->out_len == 0 &&
	       (c->tls == NULL || tls_conn_pending_out(c->tls) == 0) &&
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
	c->deadline = ms ? mo_now_ms(c->o) + ms : 0;
}

struct conn *mo_conn_new(struct mta_out *o, const char *name,
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
	mo_strfmt(c->name, sizeof(c->name), "%s", name);
	mo_strfmt(c->key, sizeof(c->key), "%s", key);
	mo_ip_str(ip, a, sizeof(a));
	mo_strfmt(c->relay, sizeof(c->relay), "%s[%s]:%u", name, a,
		 (unsigned)port);
	c->next = o->conns;
	if (o->conns)
		o->conns->prev = c;
	o->conns = c;
	o->st_.conns_live++;
	return c;
}

/* ---- the engine's ops ------------------------------------------------ */

static void op_write(void *user, const void *data, size_t len)
{
	struct conn *c = user;
	ssize_t n = 0;

	if (c->tc == NULL)
		return;
	if (c->out_len == 0 && c->tls == NULL) {
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
			return; /* the engine times out; mo_conn_dead then */
		}
		c->out = b;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, (const uint8_t *)data + n, len);
	c->out_len += len;
	if (c->tls != NULL)
		tls_flush(c);
}

/* The policy for host: tls_policy_map's entry ("host:level, ..."),
 * else the default. */
static uint8_t tls_policy_for(const struct mta_out *o, const char *host)
{
	static const char *const names[] = { "none", "may", "encrypt",
					     "verify" };
	const char *p = o->conf.tls_policy_map;
	size_t hl = strlen(host);

	while (*p != '\0') {
		const char *end = strchr(p, ','), *colon;
		size_t l;

		while (*p == ' ')
			p++;
		l = end ? (size_t)(end - p) : strlen(p);
		colon = memchr(p, ':', l);
		if (colon != NULL && (size_t)(colon - p) == hl &&
		    strncasecmp(p, host, hl) == 0) {
			const char *v = colon + 1;
			size_t vl = l - hl - 1;

			while (vl > 0 && v[vl - 1] == ' ')
				vl--;
			for (uint8_t i = 0; i < 4; i++)
				if (strlen(names[i]) == vl &&
				    strncmp(names[i], v, vl) == 0)
					return i;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return (uint8_t)o->conf.tls_policy;
}

/* TLS demanded and not to be had: the session ends, the recipients wait
 * (maybe for another MX). */
static void tls_give_up(struct conn *c, const char *why)
{
	if (c->d)
		mo_why_add(c->d->j, "%s: TLS is required (%s): %s", c->relay,
			   c->tls_policy == MTA_TLS_VERIFY ? "verify" :
			   "encrypt", why);
	LOG_RL(LOG_NOTICE, "mta_out: %s: TLS required: %s", c->relay, why);
	if (smtp_client_stage(c->cl) == SMTP_CLIENT_READY)
		smtp_client_quit(c->cl);
	else
		smtp_client_lost(c->cl);
}

static void op_ready(void *user)
{
	struct conn *c = user;

	if (c->d == NULL || c->dead)
		return;
	if (!c->tls_decided) {
		c->tls_decided = true;
		c->tls_policy = c->o->tls ? tls_policy_for(c->o, c->d->j->nh.host)
					  : MTA_TLS_NONE;
		if (c->tls_policy != MTA_TLS_NONE &&
		    smtp_client_starttls(c->cl) == 0)
			return; /* ops->starttls answers */
		if (c->tls_policy >= MTA_TLS_ENCRYPT) {
			tls_give_up(c, "STARTTLS not offered");
			return;
		}
	}
	if (c->tls_refused && c->tls_policy >= MTA_TLS_ENCRYPT) {
		tls_give_up(c, "STARTTLS refused");
		return;
	}
	mo_dlv_send_next(c->d);
}

static void op_starttls(void *user, const struct smtp_client_reply *r)
{
	struct conn *c = user;

	if (r->code != 220) {
		c->tls_refused = true;
		LOG_RL(LOG_INFO, "mta_out: %s: STARTTLS refused: %u %s",
		       c->relay, r->code, r->text);
		return; /* op_ready follows */
	}
	c->tls = tls_conn_new(c->o->tls, c->name);
	if (c->tls == NULL || tls_conn_start(c->tls) != 0) {
		LOG_RL(LOG_WARNING, "mta_out: %s: no memory for TLS",
		       c->relay);
		if (c->tc) {
			tcp_abort(c->tc);
			c->tc = NULL;
		}
		return; /* the engine is lost at the next pump */
	}
	c->out_len = 0; /* nothing in clear follows STARTTLS */
	tls_flush(c);
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
		mo_log_rcpt(m, r, c->relay);
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
			mo_why_add(d->j, "%s: %s: %u %s %s", c->relay, what,
				why->code, why->enh, why->text);
		else if (d && why)
			mo_why_add(d->j, "host %s said: %u %s %s", c->relay,
				why->code, why->enh, why->text);
		if (d == NULL)
			LOG_RL(LOG_INFO, "mta_out: %s: cached connection "
			       "ended: %u %s", c->relay, why ? why->code : 0,
			       why ? why->text : "");
	} else if (d && why && mo_dlv_pending(d)) {
		mo_why_add(d->j, "%s: session ended: %u %s %s", c->relay,
			why->code, why->enh, why->text);
	}
	flush_out(c);
	if (c->tc) {
		tcp_close(c->tc);
		c->tc = NULL;
	}
	mo_conn_dead(c);
	if (d)
		mo_dlv_conn_lost(d);
}

static const struct smtp_client_ops client_ops = {
	.write = op_write,
	.ready = op_ready,
	.done = op_done,
	.close = op_close,
	.starttls = op_starttls,
};

/* ---- the stream's callbacks ------------------------------------------ */

static void on_connected(struct tcp_conn *tc, void *user)
{
	struct conn *c = user;

	(void)tc;
	c->connecting = false;
	if (c->d)
		mo_dlv_set_remote(c->d, c);
	LOG(LOG_DEBUG, "mta_out: connected to %s", c->relay);
	mo_conn_pump(c); /* the greeting's timer */
}

/* Network bytes into the tls_conn; once its handshake is done (and the
 * policy is met) the engine says EHLO again; plaintext to the engine. */
static void tls_input(struct conn *c, const uint8_t *data, size_t len)
{
	uint8_t buf[TLS_READ_CHUNK];
	ssize_t r;

	if (tls_conn_feed(c->tls, data, len) != 0 || tls_conn_failed(c->tls)) {
		/* opportunistic TLS must not make mail undeliverable: the
		 * same address again at once, in clear (mo_dlv_conn_lost) */
		bool plain = c->tls_policy == MTA_TLS_MAY && !c->tls_done &&
			     c->d != NULL;

		LOG_RL(LOG_INFO, "mta_out: %s: TLS failed: %s%s", c->relay,
		       tls_conn_error(c->tls), plain ? "; retrying in clear "
		       "(tls_policy may)" : "");
		if (c->d)
			mo_why_add(c->d->j, "%s: TLS failed: %s", c->relay,
				   tls_conn_error(c->tls));
		if (plain) {
			c->d->plain_pending = true;
			c->d->plain_ip = c->ip;
		}
		tls_flush(c); /* the alert */
		smtp_client_lost(c->cl);
		return;
	}
	if (!c->tls_done && tls_conn_handshake_done(c->tls)) {
		char desc[160];

		c->tls_done = true;
		tls_conn_describe(c->tls, desc, sizeof(desc));
		if (c->tls_policy == MTA_TLS_VERIFY &&
		    !tls_conn_peer_verified(c->tls)) {
			tls_give_up(c, "the certificate is not trusted or does "
				    "not name the host");
			return;
		}
		LOG(LOG_INFO, "mta_out: %s: TLS %s: %s", c->relay,
		    tls_conn_peer_verified(c->tls) ? "verified" : "unverified",
		    desc);
		smtp_client_tls_up(c->cl);
	}
	while ((r = tls_conn_read(c->tls, buf, sizeof(buf))) > 0 && !c->dead)
		smtp_client_input(c->cl, buf, (size_t)r);
	tls_flush(c);
}

static void on_data(struct tcp_conn *tc, void *user, const uint8_t *data,
		    size_t len)
{
	struct conn *c = user;

	(void)tc;
	if (c->dead)
		return;
	if (c->tls != NULL)
		tls_input(c, data, len);
	else
		smtp_client_input(c->cl, data, len);
	mo_conn_pump(c);
}

static void on_writable(struct tcp_conn *tc, void *user)
{
	struct conn *c = user;

	(void)tc;
	flush_out(c);
	mo_conn_pump(c);
}

static void on_peer_closed(struct tcp_conn *tc, void *user)
{
	struct conn *c = user;

	(void)tc;
	if (c->dead)
		return;
	smtp_client_lost(c->cl); /* ops->close: tcp_close */
	mo_conn_pump(c);
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
			mo_why_add(d->j, "connect to %s: %s", c->relay,
				r == TCP_CLOSE_REFUSED ? "refused" :
				r == TCP_CLOSE_TIMEOUT ? "timed out" :
				r == TCP_CLOSE_UNREACHABLE ? "unreachable" :
				tcp_close_reason_str(r));
		}
		mo_conn_dead(c);
		if (d)
			mo_dlv_conn_lost(d);
		return;
	}
	LOG_RL(LOG_INFO, "mta_out: %s: connection closed: %s", c->relay,
	       tcp_close_reason_str(r));
	smtp_client_lost(c->cl);
	if (!c->dead)
		mo_conn_dead(c);
}

const struct tcp_callbacks mo_conn_cb = {
	.on_connected = on_connected,
	.on_data = on_data,
	.on_writable = on_writable,
	.on_peer_closed = on_peer_closed,
	.on_closed = on_closed,
};

/* ---- the client TLS context ------------------------------------------ */

int mo_tls_init(struct mta_out *o)
{
	struct tls_ctx_conf tc;
	char err[256];
	bool verify = o->conf.tls_policy == MTA_TLS_VERIFY ||
		      strstr(o->conf.tls_policy_map, ":verify") != NULL;

	if (o->conf.tls_policy == MTA_TLS_NONE &&
	    o->conf.tls_policy_map[0] == '\0')
		return 0;
	tls_ctx_conf_defaults(&tc);
	tc.role = TLS_CLIENT;
	/* OPTIONAL: the handshake goes on; "verify" checks the result */
	tc.ca_file = o->conf.tls_ca_file[0] ? o->conf.tls_ca_file
					    : SYSTEM_CA_FILE;
	tc.verify = TLS_VERIFY_OPTIONAL;
	if (tls_ctx_new(&tc, &o->tls, err, sizeof(err)) == 0)
		return 0;
	if (verify) {
		LOG(LOG_ERR, "mta_out: TLS: %s", err);
		return -1;
	}
	/* "may" without a CA bundle: encrypt, never verify */
	tc.ca_file = NULL;
	tc.verify = TLS_VERIFY_NONE;
	if (tls_ctx_new(&tc, &o->tls, err, sizeof(err)) != 0) {
		LOG(LOG_ERR, "mta_out: TLS: %s", err);
		return -1;
	}
	return 0;
}

void mo_tls_free(struct mta_out *o)
{
	tls_ctx_free(o->tls);
	o->tls = NULL;
}
