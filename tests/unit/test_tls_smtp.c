/*
 * test_tls_smtp.c: the SMTP server engine over tls/, in memory, glued the
 * way a worker will glue them: STARTTLS (RFC 3207) with plaintext
 * injected after the command (CVE-2011-0411), and implicit TLS (a
 * submissions listener, RFC 8314) where the greeting is written before
 * the handshake.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/envelope.h"
#include "smtp/smtp_server.h"
#include "tests/unit/tls_test_certs.h"
#include "tls/tls.h"

#define P tls_test_path

TestSuite(tls_smtp, .init = tls_test_certs_setup,
	  .fini = tls_test_certs_teardown, .timeout = 60);

struct bytes {
	char *p;
	size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *d, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* The worker's side: a session, maybe a tls_conn, the wire to the client. */
struct glue {
	struct smtp_server *s;
	struct tls_ctx *ctx;
	struct tls_conn *t;  /* NULL while the stream is plaintext */
	struct bytes wire;   /* to the client */
	bool closed;
	struct envelope *msg;
};

static void flush_tls(struct glue *g)
{
	size_t n;
	const uint8_t *p = tls_conn_out_peek(g->t, &n);

	if (p != NULL) {
		bytes_add(&g->wire, p, n);
		tls_conn_out_consume(g->t, n);
	}
}

static void g_write(void *u, const void *d, size_t n)
{
	struct glue *g = u;

	if (g->t == NULL) {
		bytes_add(&g->wire, d, n);
		return;
	}
	cr_assert_eq(tls_conn_write(g->t, d, n), (ssize_t)n);
	flush_tls(g);
}

static void g_close(void *u)
{
	struct glue *g = u;

	g->closed = true;
	if (g->t != NULL && tls_conn_shutdown(g->t) == 0)
		flush_tls(g);
}

static enum smtp_verdict g_mail(void *u, struct envelope *e)
{
	(void)u;
	snprintf(e->qid, sizeof(e->qid), "QTLS1");
	return SMTP_OK;
}

static enum smtp_verdict g_rcpt(void *u, const struct envelope *e,
				const char *addr)
{
	(void)u;
	(void)e;
	(void)addr;
	return SMTP_OK;
}

static void g_message(void *u, struct envelope *e)
{
	struct glue *g = u;

	g->msg = e;
	smtp_server_queued(g->s, 0, e->qid);
}

/* After "220 Ready to start TLS" was written: from now on the stream is
 * TLS. What followed STARTTLS in the same read was plaintext; the engine
 * dropped it, and it never reaches the tls_conn. */
static int g_starttls(void *u)
{
	struct glue *g = u;

	g->t = tls_conn_new(g->ctx, NULL);
	return g->t ? 0 : -ENOMEM;
}

/* Bytes from the network. */
static void g_input(struct glue *g, const void *d, size_t n)
{
	uint8_t buf[4096];
	ssize_t r;

	if (g->t == NULL) {
		smtp_server_input(g->s, d, n);
		return;
	}
	tls_conn_feed(g->t, d, n);
	while ((r = tls_conn_read(g->t, buf, sizeof(buf))) > 0)
		smtp_server_input(g->s, buf, (size_t)r);
	flush_tls(g);
}

static const struct smtp_server_ops ops = {
	.write = g_write, .close = g_close, .mail = g_mail, .rcpt = g_rcpt,
	.message = g_message, .starttls = g_starttls,
};

static void glue_init(struct glue *g)
{
	struct tls_ctx_conf c;
	struct tls_cert_conf cert = { P("s1.pem"), P("s1.key") };
	struct smtp_server_conf sc;
	char err[256];

	memset(g, 0, sizeof(*g));
	tls_ctx_conf_defaults(&c);
	c.certs = &cert;
	c.n_certs = 1;
	cr_assert_eq(tls_ctx_new(&c, &g->ctx, err, sizeof(err)), 0, "%s", err);
	smtp_server_conf_defaults(&sc);
	sc.hostname = "mail.example.com";
	g->s = smtp_server_new(&sc, &ops, g, "198.18.0.1", 40000, 25);
	cr_assert_not_null(g->s);
}

static void glue_free(struct glue *g)
{
	smtp_server_free(g->s);
	tls_conn_free(g->t);
	tls_ctx_free(g->ctx);
	if (g->msg)
		envelope_free(g->msg);
	free(g->wire.p);
}

/* The client: a tls_conn over the same wire, byte-at-a-time delivery. */
struct client {
	struct tls_ctx *ctx;
	struct tls_conn *t;
	struct bytes got;  /* plaintext from the server */
};

static void client_init(struct client *c)
{
	struct tls_ctx_conf conf;
	char err[256];

	memset(c, 0, sizeof(*c));
	tls_ctx_conf_defaults(&conf);
	conf.role = TLS_CLIENT;
	conf.verify = TLS_VERIFY_REQUIRED;
	conf.ca_file = P("ca.pem");
	cr_assert_eq(tls_ctx_new(&conf, &c->ctx, err, sizeof(err)), 0, "%s", err);
	c->t = tls_conn_new(c->ctx, "mail.example.com");
	cr_assert_not_null(c->t);
}

static void client_free(struct client *c)
{
	tls_conn_free(c->t);
	tls_ctx_free(c->ctx);
	free(c->got.p);
}

/* Moves bytes both ways, one byte at a time, until neither side has any. */
static void pump(struct glue *g, struct client *c)
{
	for (int i = 0; i < 100; i++) {
		size_t n, moved = 0;
		const uint8_t *p;
		uint8_t buf[4096];
		ssize_t r;

		while ((p = tls_conn_out_peek(c->t, &n)) != NULL) {
			g_input(g, p, 1);
			tls_conn_out_consume(c->t, 1);
			moved++;
		}
		for (size_t k = 0; k < g->wire.len; k++)
			tls_conn_feed(c->t, (const uint8_t *)g->wire.p + k, 1);
		moved += g->wire.len;
		g->wire.len = 0;
		while ((r = tls_conn_read(c->t, buf, sizeof(buf))) > 0)
			bytes_add(&c->got, buf, (size_t)r);
		cr_assert_not(tls_conn_failed(c->t), "%s", tls_conn_error(c->t));
		if (moved == 0 && tls_conn_pending_out(c->t) == 0)
			return;
	}
	cr_assert_fail("pump did not settle");
}

static void client_says(struct glue *g, struct client *c, const char *line)
{
	cr_assert_eq(tls_conn_write(c->t, line, strlen(line)),
		     (ssize_t)strlen(line));
	pump(g, c);
}

static void transaction(struct glue *g, struct client *c)
{
	client_says(g, c, "MAIL FROM:<a@client.example.net>\r\n"
			  "RCPT TO:<b@mail.example.com>\r\nDATA\r\n");
	client_says(g, c, "Subject: over TLS\r\n\r\nhello\r\n.\r\n");
	cr_assert(strstr(c->got.p, "250 2.0.0 Ok: queued as QTLS1"), "%s",
		  c->got.p);
	cr_assert_not_null(g->msg);
	cr_assert(memmem(g->msg->body, g->msg->body_len, "with ESMTPS", 11),
		  "%.*s", (int)g->msg->body_len, (const char *)g->msg->body);
	client_says(g, c, "QUIT\r\n");
	cr_assert(strstr(c->got.p, "221 "), "%s", c->got.p);
	cr_assert(g->closed);
	cr_assert(tls_conn_peer_closed(c->t));  /* close_notify came */
}

Test(tls_smtp, starttls_with_injection)
{
	struct glue g;
	struct client c;

	glue_init(&g);
	client_init(&c);
	smtp_server_start(g.s);
	cr_assert(strncmp(g.wire.p, "220 mail.example.com", 20) == 0);
	g.wire.len = 0;
	g_input(&g, "EHLO client.example.net\r\n", 25);
	cr_assert(strstr(g.wire.p, "250-STARTTLS\r\n"), "%s", g.wire.p);
	g.wire.len = 0;
	/* a pipelined RSET that a man in the middle could have added */
	g_input(&g, "STARTTLS\r\nRSET\r\n", 16);
	cr_assert_str_eq(g.wire.p, "220 2.0.0 Ready to start TLS\r\n");
	cr_assert_not_null(g.t);
	g.wire.len = 0;

	cr_assert_eq(tls_conn_start(c.t), 0);
	pump(&g, &c);
	cr_assert(tls_conn_handshake_done(c.t) && tls_conn_handshake_done(g.t));
	cr_assert(tls_conn_peer_verified(c.t));
	cr_assert_eq(c.got.len, 0, "the injected RSET was answered: %s", c.got.p);

	client_says(&g, &c, "EHLO client.example.net\r\n");
	cr_assert(strncmp(c.got.p, "250-mail.example.com", 20) == 0, "%s",
		  c.got.p);
	cr_assert_null(strstr(c.got.p, "STARTTLS"), "%s", c.got.p);
	transaction(&g, &c);
	client_free(&c);
	glue_free(&g);
}

Test(tls_smtp, implicit_tls)
{
	struct glue g;
	struct client c;

	glue_init(&g);
	client_init(&c);
	g.t = tls_conn_new(g.ctx, NULL);  /* at accept */
	smtp_server_set_tls(g.s);
	smtp_server_start(g.s);  /* the greeting waits for the handshake */
	cr_assert_eq(g.wire.len, 0);
	cr_assert_eq(tls_conn_start(c.t), 0);
	pump(&g, &c);
	cr_assert(strncmp(c.got.p, "220 mail.example.com", 20) == 0, "%s",
		  c.got.p);
	c.got.len = 0;
	client_says(&g, &c, "EHLO client.example.net\r\n");
	cr_assert_null(strstr(c.got.p, "STARTTLS"), "%s", c.got.p);
	client_says(&g, &c, "STARTTLS\r\n");
	cr_assert(strstr(c.got.p, "554 5.5.1"), "%s", c.got.p);
	transaction(&g, &c);
	client_free(&c);
	glue_free(&g);
}
