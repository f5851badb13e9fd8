/*
 * tcp_diag.c: echo, discard and chargen over the stream API.
 *
 * Echo honours backpressure end to end: when the send buffer is full it
 * keeps the bytes it could not send, pauses receiving (so the peer's
 * window closes), and resumes once on_writable says there is room.
 */
#include "tcpstack/tcp_diag.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tcpstack/tcp.h"

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

int diag_start(struct stack *s, const struct diag_conf *dc)
{
	struct tcp_listen_opts o = { 0 };
	int rc;

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
