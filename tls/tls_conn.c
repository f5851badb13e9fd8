/*
 * tls_conn.c: one TLS connection, sans-I/O. Network bytes in
 * (tls_conn_feed), records out (tls_conn_out_peek), plaintext both ways,
 * every OpenSSL WANT_READ turned into "nothing yet" (WANT_WRITE cannot
 * happen: the BIO under it always takes what is written).
 *
 * Owns: the SSL object, its input, output and early plaintext queues, the
 * client's latest session. Used by one thread. Never blocks, never
 * touches a socket, never leaves an OpenSSL error on the thread's queue
 * (another connection on the same worker would read it as its own).
 */
#include "tls/tls_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

static void set_error(struct tls_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_error(struct tls_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (!c->failed) {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		va_end(ap);
	}
	c->failed = true;
	ERR_clear_error();
}

/*
 * After an OpenSSL call returned ret <= 0: 0 when it only waits for input
 * (or saw close_notify), else -EPROTO with the connection failed. The
 * fatal alert, if OpenSSL made one, is already in c->out.
 */
static int ssl_outcome(struct tls_conn *c, int ret, const char *during)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long q;
	const char *reason;

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		c->peer_closed = true;
		ERR_clear_error();
		return 0;
	default:
		break;
	}
	q = ERR_peek_last_error();
	reason = q ? ERR_reason_error_string(q) : NULL;
	if (reason == NULL)
		reason = e == SSL_ERROR_SYSCALL ? "I/O error" : "protocol error";
	if (q != 0 && ERR_GET_REASON(q) == SSL_R_CERTIFICATE_VERIFY_FAILED)
		set_error(c, "%s: %s (%s)", during, reason,
			  X509_verify_cert_error_string(
				  SSL_get_verify_result(c->ssl)));
	else
		set_error(c, "%s: %s", during, reason);
	return -EPROTO;
}

static bool is_ip_literal(const char *s)
{
	if (strchr(s, ':') != NULL)
		return true;
	for (; *s; s++)
		if ((*s < '0' || *s > '9') && *s != '.')
			return false;
	return true;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *server_name)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	BIO *bio;

	if (c == NULL)
		return NULL;
	c->ctx = ctx;
	ERR_clear_error();
	c->ssl = SSL_new(ctx->ssl);
	bio = c->ssl ? tls_bio_new(ctx->bio_meth, c) : NULL;
	if (bio == NULL)
		goto bad;
	SSL_set_bio(c->ssl, bio, bio);  /* one reference, both ways */
	if (!SSL_set_app_data(c->ssl, c))
		goto bad;
	if (ctx->role == TLS_SERVER) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		/* RFC 6066 3: no IP literals in SNI */
		if (server_name != NULL && !is_ip_literal(server_name) &&
		    !SSL_set_tlsext_host_name(c->ssl, server_name))
			goto bad;
		if (server_name != NULL && ctx->verify != TLS_VERIFY_NONE &&
		    (is_ip_literal(server_name) ?
		     !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), server_name) :
		     !SSL_set1_host(c->ssl, server_name)))
			goto bad;
	}
	return c;
bad:
	ERR_clear_error();
	tls_conn_free(c);
	return NULL;
}

void tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	SSL_SESSION_free(c->session);
	tls_buf_free(&c->in);
	tls_buf_free(&c->out);
	tls_buf_free(&c->plain);
	free(c);
}

/* Sends what was written before the handshake finished. */
static int flush_plain(struct tls_conn *c)
{
	size_t w;
	int r;

	if (c->plain.len == 0)
		return 0;
	ERR_clear_error();
	r = SSL_write_ex(c->ssl, c->plain.data + c->plain.off, c->plain.len, &w);
	if (r != 1)
		return ssl_outcome(c, r, "write");
	tls_buf_consume(&c->plain, w);
	return 0;
}

static int advance_handshake(struct tls_conn *c)
{
	int r;

	if (c->failed)
		return -EPROTO;
	if (c->hs_done)
		return 0;
	c->started = true;
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1)
		return ssl_outcome(c, r, "handshake");
	c->hs_done = true;
	return flush_plain(c);
}

int tls_conn_start(struct tls_conn *c)
{
	if (c->started || c->hs_done)
		return c->failed ? -EPROTO : 0;
	return advance_handshake(c);
}

int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len)
{
	if (c->failed)
		return -EPROTO;
	if (len > c->ctx->max_in - c->in.len) {
		set_error(c, "more than %zu bytes of undecrypted input",
			  c->ctx->max_in);
		return -ENOBUFS;
	}
	if (tls_buf_append(&c->in, data, len) < 0) {
		set_error(c, "out of memory");
		return -ENOMEM;
	}
	return advance_handshake(c);
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t cap)
{
	size_t n;
	int r;

	if (c->failed)
		return -EPROTO;
	if (!c->hs_done) {
		if (!c->started || c->in.len == 0)
			return 0;
		r = advance_handshake(c);
		if (r < 0 || !c->hs_done)
			return r;
	}
	if (c->peer_closed || cap == 0)
		return 0;
	ERR_clear_error();
	r = SSL_read_ex(c->ssl, buf, cap, &n);
	if (r == 1)
		return (ssize_t)n;
	return ssl_outcome(c, r, "read");
}

size_t tls_conn_write_space(const struct tls_conn *c)
{
	if (c->failed || c->shut_sent)
		return 0;
	if (!c->hs_done)
		return c->ctx->max_plain - c->plain.len;
	if (c->out.len >= c->ctx->out_highwater)
		return 0;
	return c->ctx->out_highwater - c->out.len;
}

ssize_t tls_conn_write(struct tls_conn *c, const void *data, size_t len)
{
	size_t room, w;
	int r;

	if (c->failed)
		return -EPROTO;
	if (c->shut_sent)
		return -EPIPE;
	room = tls_conn_write_space(c);
	if (len > room)
		len = room;
	if (len == 0)
		return 0;
	if (!c->hs_done) {
		if (tls_buf_append(&c->plain, data, len) < 0)
			return -ENOMEM;
		return (ssize_t)len;
	}
	ERR_clear_error();
	r = SSL_write_ex(c->ssl, data, len, &w);
	if (r == 1)
		return (ssize_t)w;
	r = ssl_outcome(c, r, "write");
	return r < 0 ? r : 0;
}

size_t tls_conn_pending_out(const struct tls_conn *c)
{
	return c->out.len;
}

const uint8_t *tls_conn_out_peek(const struct tls_conn *c, size_t *len)
{
	*len = c->out.len;
	return c->out.len ? c->out.data + c->out.off : NULL;
}

void tls_conn_out_consume(struct tls_conn *c, size_t n)
{
	tls_buf_consume(&c->out, n);
}

size_t tls_conn_take_out(struct tls_conn *c, void *buf, size_t cap)
{
	size_t n = cap < c->out.len ? cap : c->out.len;

	if (n > 0) {
		memcpy(buf, c->out.data + c->out.off, n);
		tls_buf_consume(&c->out, n);
	}
	return n;
}

size_t tls_conn_in_buffered(const struct tls_conn *c)
{
	return c->in.len;
}

int tls_conn_shutdown(struct tls_conn *c)
{
	int r;

	if (c->failed)
		return -EPROTO;
	if (c->shut_sent)
		return 0;
	if (!c->hs_done)
		return -ENOTCONN;
	c->shut_sent = true;
	ERR_clear_error();
	r = SSL_shutdown(c->ssl);
	if (r >= 0)
		return 0;
	return ssl_outcome(c, r, "shutdown");
}

bool tls_conn_handshake_done(const struct tls_conn *c)
{
	return c->hs_done;
}

bool tls_conn_peer_closed(const struct tls_conn *c)
{
	return c->peer_closed;
}

bool tls_conn_failed(const struct tls_conn *c)
{
	return c->failed;
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->err;
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return c->hs_done ? SSL_get_version(c->ssl) : NULL;
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	const SSL_CIPHER *ci = c->hs_done ? SSL_get_current_cipher(c->ssl) : NULL;

	return ci ? SSL_CIPHER_get_name(ci) : NULL;
}

int tls_conn_cipher_bits(const struct tls_conn *c)
{
	const SSL_CIPHER *ci = c->hs_done ? SSL_get_current_cipher(c->ssl) : NULL;

	return ci ? SSL_CIPHER_get_bits(ci, NULL) : 0;
}

const char *tls_conn_sni(const struct tls_conn *c)
{
	return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

bool tls_conn_session_reused(const struct tls_conn *c)
{
	return c->hs_done && SSL_session_reused(c->ssl) == 1;
}

bool tls_conn_has_peer_cert(const struct tls_conn *c)
{
	return SSL_get0_peer_certificate(c->ssl) != NULL;
}

bool tls_conn_peer_verified(const struct tls_conn *c)
{
	return c->hs_done && SSL_get0_peer_certificate(c->ssl) != NULL &&
	       SSL_get_verify_result(c->ssl) == X509_V_OK;
}

size_t tls_conn_peer_subject(const struct tls_conn *c, char *buf, size_t cap)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);
	BIO *mem;
	int n;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	if (x == NULL)
		return 0;
	mem = BIO_new(BIO_s_mem());
	if (mem == NULL)
		return 0;
	if (X509_NAME_print_ex(mem, X509_get_subject_name(x), 0,
			       XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(mem, buf, (int)(cap - 1 > 4096 ? 4096 : cap - 1));
		buf[n > 0 ? n : 0] = '\0';
	}
	BIO_free(mem);
	ERR_clear_error();
	return strlen(buf);
}

int tls_conn_describe(const struct tls_conn *c, char *buf, size_t cap)
{
	const SSL_CIPHER *ci = c->hs_done ? SSL_get_current_cipher(c->ssl) : NULL;
	int alg = 0, bits;

	if (ci == NULL)
		return snprintf(buf, cap, "no TLS");
	bits = SSL_CIPHER_get_bits(ci, &alg);
	return snprintf(buf, cap, "%s with cipher %s (%d/%d bits)",
			SSL_get_version(c->ssl), SSL_CIPHER_get_name(ci),
			bits, alg);
}

struct tls_session *tls_conn_session_get(struct tls_conn *c)
{
	SSL_SESSION *s = c->session;

	/* A copy: SSL_free marks the connection's own session unresumable
	 * when the peer never sent close_notify, an SSLv3 rule that TLS 1.1
	 * dropped (RFC 4346 F.1.4); an MTA should still resume. */
	if (s == NULL || !SSL_SESSION_is_resumable(s))
		return NULL;
	s = SSL_SESSION_dup(s);
	ERR_clear_error();
	return (struct tls_session *)s;
}

int tls_conn_session_set(struct tls_conn *c, struct tls_session *s)
{
	if (c->started || c->ctx->role != TLS_CLIENT)
		return -EINVAL;
	if (!SSL_set_session(c->ssl, (SSL_SESSION *)s)) {
		ERR_clear_error();
		return -EINVAL;
	}
	return 0;
}

void tls_session_free(struct tls_session *s)
{
	SSL_SESSION_free((SSL_SESSION *)s);
}

void *tls_conn_ssl(struct tls_conn *c)
{
	return c->ssl;
}
