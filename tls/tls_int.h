/*
 * tls_int.h: what tls_ctx.c, tls_bio.c and tls_conn.c share: the
 * context and connection structs, the byte buffer that stands in for a
 * socket, and the BIO method that reads and writes it. Not for callers.
 */
#ifndef DPMAIL_TLS_TLS_INT_H
#define DPMAIL_TLS_TLS_INT_H

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"

/* A linear byte queue: [off, off + len) of data[cap]. */
struct tls_buf {
	uint8_t *data;
	size_t off, len, cap;
};

int tls_buf_append(struct tls_buf *b, const void *p, size_t n);
void tls_buf_consume(struct tls_buf *b, size_t n);
void tls_buf_free(struct tls_buf *b);

/* One server certificate: chain, key and the DNS names it answers for
 * (lower case; "*.x" for wildcards). */
struct tls_cert {
	X509 *leaf;
	EVP_PKEY *key;
	STACK_OF(X509) *chain;
	char **names;
	size_t n_names;
};

struct tls_ctx {
	SSL_CTX *ssl;
	BIO_METHOD *bio_meth;
	enum tls_role role;
	enum tls_verify verify;
	struct tls_cert *certs;
	size_t n_certs;
	size_t out_highwater, max_in, max_plain;
};

struct tls_conn {
	struct tls_ctx *ctx;
	SSL *ssl;
	struct tls_buf in;     /* network bytes not yet taken by OpenSSL */
	struct tls_buf out;    /* records OpenSSL wrote, not yet sent */
	struct tls_buf plain;  /* written before the handshake finished */
	SSL_SESSION *session;  /* client: the latest one the server gave */
	bool started, hs_done, peer_closed, shut_sent, failed;
	char err[200];
};

/* The BIO under every SSL: reads c->in, writes c->out, never blocks. */
BIO_METHOD *tls_bio_method_new(void);
BIO *tls_bio_new(BIO_METHOD *m, struct tls_conn *c);

/* Index of a certificate for an SNI name: exact, then wildcard, else 0. */
size_t tls_ctx_pick_cert(const struct tls_ctx *ctx, const char *name);

#endif
