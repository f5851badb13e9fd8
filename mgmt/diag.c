/*
 * diag.c: echo, discard and chargen over the stream API, and a client
 * that exercises active opens.
 *
 * Echo honours backpressure end to end: when the send buffer is full it
 * keeps the bytes it could not send, pauses receiving (so the peer's
 * window closes), and resumes once on_writable says there is room.
 */
#include "mgmt/diag.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/log.h"
#include "common/parse.h"
#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "tcpstack/timer_wheel.h"
#include "tcpstack/udp.h"

/* Per connection state, allocated only while echo has bytes pending. */
struct echo_pend {
	size_t len;
	uint8_t data[];
};

static void echo_data(struct tcp_conn *c, void *user, const uint8_t *d,
		      size_t len);

static bool echo_flush(struct tcp_conn *c, struct echo_pend **pp)
{
	struct echo_pend *p = *pp;
	ssize_t n;

	if (p == NULL)
		return true;
	n = tcp_send(c, p->data, p->len);
	if (n < 0)
		n = 0;
	if ((size_t)n < p->len) {
		memmove(p->data, p->data + n, p->len - (size_t)n);
		p->len -= (size_t)n;
		return false;
	}
	free(p);
	*pp = NULL;
	return true;
}

static void echo_writable(struct tcp_conn *c, void *user);
static void echo_peer_closed(struct tcp_conn *c, void *user);
static void echo_closed(struct tcp_conn *c, void *user,
			enum tcp_close_reason r);

static const struct tcp_callbacks echo_cb = {
	.on_data = echo_data,
	.on_writable = echo_writable,
	.on_peer_closed = echo_peer_closed,
	.on_closed = echo_closed,
};

struct echo_conn {
	struct echo_pend *pend;
	bool peer_closed;
};

static void echo_data(struct tcp_conn *c, void *user, const uint8_t *d,
		      size_t len)
{
	struct echo_conn *e = user;
	ssize_t n = 0;

	if (e->pend == NULL) {
		n = tcp_send(c, d, len);
		if (n < 0)
			n = 0;
		if ((size_t)n == len)
			return;
		d += n;
		len -= (size_t)n;
		e->pend = malloc(sizeof(*e->pend) + len);
		if (e->pend == NULL) {
			tcp_abort(c);
			free(e);
			return;
		}
		e->pend->len = 0;
	} else {
		struct echo_pend *p = realloc(e->pend,
					      sizeof(*p) + e->pend->len + len);
		if (p == NULL) {
			tcp_abort(c);
			free(e->pend);
			free(e);
			return;
		}
		e->pend = p;
	}
	memcpy(e->pend->data + e->pend->len, d, len);
	e->pend->len += len;
	tcp_recv_pause(c, true);
}

static void echo_writable(struct tcp_conn *c, void *user)
{
	struct echo_conn *e = user;

	if (!echo_flush(c, &e->pend))
		return;
	if (e->peer_closed) {
		tcp_close(c);
		free(e);
		return;
	}
	tcp_recv_pause(c, false);
}

static void echo_peer_closed(struct tcp_conn *c, void *user)
{
	struct echo_conn *e = user;

	e->peer_closed = true;
	if (e->pend == NULL) {
		tcp_close(c);
		free(e);
	}
}

static void echo_closed(struct tcp_conn *c, void *user,
			enum tcp_close_reason r)
{
	struct echo_conn *e = user;

	(void)c;
	(void)r;
	free(e->pend);
	free(e);
}

static int echo_accept(struct tcp_conn *c, void *lu,
		       const struct tcp_callbacks **cb, void **user)
{
	struct echo_conn *e = calloc(1, sizeof(*e));

	(void)c;
	(void)lu;
	if (e == NULL)
		return -ENOMEM;
	*cb = &echo_cb;
	*user = e;
	return 0;
}

/* discard: read and forget; close when the peer does */
static void discard_data(struct tcp_conn *c, void *user, const uint8_t *d,
			 size_t len)
{
	(void)c;
	(void)user;
	(void)d;
	(void)len;
}

static void close_on_peer_close(struct tcp_conn *c, void *user)
{
	(void)user;
	tcp_close(c);
}

static void nothing_closed(struct tcp_conn *c, void *user,
			   enum tcp_close_reason r)
{
	(void)c;
	(void)user;
	(void)r;
}

static const struct tcp_callbacks discard_cb = {
	.on_data = discard_data,
	.on_peer_closed = close_on_peer_close,
	.on_closed = nothing_closed,
};

static int discard_accept(struct tcp_conn *c, void *lu,
			  const struct tcp_callbacks **cb, void **user)
{
	(void)c;
	(void)lu;
	*cb = &discard_cb;
	*user = NULL;
	return 0;
}

/* chargen: RFC 864's rotating 72-character lines, as fast as the peer
 * takes them; user holds the position in the pattern */
#define CG_LINE 72
#define CG_CHARS 95

static void chargen_fill(struct tcp_conn *c, void *user)
{
	uintptr_t pos = (uintptr_t)user;
	uint8_t buf[CG_LINE + 2];

	while (tcp_send_space(c) >= sizeof(buf)) {
		for (unsigned i = 0; i < CG_LINE; i++)
			buf[i] = (uint8_t)(' ' + (pos + i) % CG_CHARS);
		buf[CG_LINE] = '\r';
		buf[CG_LINE + 1] = '\n';
		if (tcp_send(c, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			break;
		pos = (pos + 1) % CG_CHARS;
	}
	tcp_set_user(c, (void *)pos);
	tcp_want_writable(c); /* call again when there is room */
}

static const struct tcp_callbacks chargen_cb = {
	.on_data = discard_data,
	.on_writable = chargen_fill,
	.on_peer_closed = close_on_peer_close,
	.on_closed = nothing_closed,
};

static int chargen_accept(struct tcp_conn *c, void *lu,
			  const struct tcp_callbacks **cb, void **user)
{
	(void)lu;
	*cb = &chargen_cb;
	*user = NULL;
	tcp_want_writable(c);
	return 0;
}

/* ---- UDP echo ---- */

static void udp_echo(struct stack *s, void *user, uint32_t src_ip,
		     uint16_t src_port, uint16_t dst_port, const uint8_t *data,
		     uint16_t len)
{
	(void)user;
	udp_sendto(s, dst_port, src_ip, src_port, data, len);
}

/* ---- client ---- */

struct diag_client;

struct diag_state {               /* one per stack */
	struct tw_timer start;
	struct stack *s;
	const struct diag_conf *conf;
	unsigned active;
};

struct diag_client {
	struct diag_state *st;
	uint64_t sent, rcvd;
	uint32_t crc;
	uint16_t lport;
	bool peer_closed;
	bool shut;                /* all sent and our FIN queued */
};

static struct diag_state *diag_states[64];

static void client_finish(struct tcp_conn *c, struct diag_client *k)
{
	char a[16];

	LOG(LOG_NOTICE, "diag: client worker=%u lport=%u to %s:%u done: "
	    "sent=%llu received=%llu crc32=%08x", k->st->s->id, k->lport,
	    format_ipv4(k->st->conf->connect_ip, a), k->st->conf->connect_port,
	    (unsigned long long)k->sent, (unsigned long long)k->rcvd, k->crc);
	k->st->active--;
	tcp_close(c);
	free(k);
}

static void client_fill(struct tcp_conn *c, void *user)
{
	struct diag_client *k = user;
	uint64_t total = k->st->conf->connect_bytes;
	uint8_t buf[251 * 8];

	while (k->sent < total) {
		size_t n = sizeof(buf), off = (size_t)(k->sent % 251);
		ssize_t w;
		if (total - k->sent < n)
			n = (size_t)(total - k->sent);
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)((off + i) % 251);
		w = tcp_send(c, buf, n);
		if (w <= 0)
			return; /* on_writable comes back */
		k->sent += (uint64_t)w;
	}
	if (!k->shut) {
		tcp_shutdown(c);
		k->shut = true;
	}
	if (k->peer_closed)
		client_finish(c, k);
}

static void client_connected(struct tcp_conn *c, void *user)
{
	struct diag_client *k = user;
	struct tcp_conn_info ci;

	tcp_conn_get_info(c, &ci);
	k->lport = ci.local_port;
	LOG(LOG_NOTICE, "diag: client worker=%u lport=%u connected",
	    k->st->s->id, k->lport);
	client_fill(c, k);
}

static void client_data(struct tcp_conn *c, void *user, const uint8_t *d,
			size_t len)
{
	struct diag_client *k = user;

	(void)c;
	k->crc = (uint32_t)crc32(k->crc, d, (uInt)len);
	k->rcvd += len;
}

static void client_peer_closed(struct tcp_conn *c, void *user)
{
	struct diag_client *k = user;

	k->peer_closed = true;
	if (k->shut)
		client_finish(c, k);
}

static void client_closed(struct tcp_conn *c, void *user,
			  enum tcp_close_reason r)
{
	struct diag_client *k = user;

	(void)c;
	LOG(LOG_WARNING, "diag: client worker=%u lport=%u failed: %s "
	    "(sent=%llu received=%llu)", k->st->s->id, k->lport,
	    tcp_close_reason_str(r), (unsigned long long)k->sent,
	    (unsigned long long)k->rcvd);
	k->st->active--;
	free(k);
}

static const struct tcp_callbacks client_cb = {
	.on_connected = client_connected,
	.on_data = client_data,
	.on_writable = client_fill,
	.on_peer_closed = client_peer_closed,
	.on_closed = client_closed,
};

static void client_start(struct tw_timer *t, void *ctx)
{
	struct stack *s = ctx;
	struct diag_state *st = diag_states[s->id];

	(void)t;
	for (uint32_t i = 0; i < st->conf->connect_per_worker; i++) {
		struct diag_client *k = calloc(1, sizeof(*k));
		int rc;

		if (k == NULL)
			return;
		k->st = st;
		rc = tcp_connect(s, st->conf->connect_ip, st->conf->connect_port,
				 &client_cb, k, NULL);
		if (rc != 0) {
			LOG(LOG_WARNING, "diag: connect failed: %s",
			    strerror(-rc));
			free(k);
			continue;
		}
		st->active++;
	}
}

void diag_stop(struct stack *s)
{
	if (s->id < 64 && diag_states[s->id] != NULL) {
		tw_cancel(&s->tw, &diag_states[s->id]->start);
		free(diag_states[s->id]);
		diag_states[s->id] = NULL;
	}
}

int diag_start(struct stack *s, const struct diag_conf *dc)
{
	struct tcp_listen_opts o = { 0 };
	int rc;

	if (dc->connect_ip != 0 && dc->connect_port != 0 && s->id < 64) {
		struct diag_state *st = calloc(1, sizeof(*st));
		if (st == NULL)
			return -ENOMEM;
		st->s = s;
		st->conf = dc;
		diag_states[s->id] = st;
		tw_timer_init(&st->start, client_start);
		tw_arm(&s->tw, &st->start, s->now_ms + dc->connect_delay_ms);
	}

	if (dc->udp_echo_port) {
		rc = udp_bind(s, dc->udp_echo_port, 0, 0, udp_echo, NULL);
		if (rc < 0)
			return rc;
	}
	if (dc->echo_port) {
		o.port = dc->echo_port;
		rc = tcp_listen(s, &o, echo_accept, NULL, NULL);
		if (rc != 0)
			return rc;
	}
	if (dc->discard_port) {
		o.port = dc->discard_port;
		rc = tcp_listen(s, &o, discard_accept, NULL, NULL);
		if (rc != 0)
			return rc;
	}
	if (dc->chargen_port) {
		o.port = dc->chargen_port;
		rc = tcp_listen(s, &o, chargen_accept, NULL, NULL);
		if (rc != 0)
			return rc;
	}
	return 0;
}
