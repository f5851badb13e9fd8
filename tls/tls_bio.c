/*
 * tls_bio.c: the memory "socket" under OpenSSL. A custom BIO method over
 * two byte queues owned by the tls_conn: reads take from the input queue
 * (an empty queue is "retry", never EOF: the stream's end is the
 * caller's business), writes append to the output queue and always
 * succeed, so OpenSSL never returns WANT_WRITE. The caller hands the
 * output queue to the stream in place (tls_conn_out_peek).
 *
 * Never: blocks, or frees a queue (tls_conn owns them).
 */
#include "tls/tls_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* An idle connection keeps no buffer bigger than this. */
#define TLS_BUF_KEEP (16u << 10)

int tls_buf_append(struct tls_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (b->off + b->len + n > b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (d == NULL)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

void tls_buf_consume(struct tls_buf *b, size_t n)
{
	if (n > b->len)
		n = b->len;
	b->off += n;
	b->len -= n;
	if (b->len == 0) {
		b->off = 0;
		if (b->cap > TLS_BUF_KEEP)
			tls_buf_free(b);
	}
}

void tls_buf_free(struct tls_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

static int bio_write(BIO *bio, const char *data, size_t len, size_t *written)
{
	struct tls_conn *c = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	if (tls_buf_append(&c->out, data, len) < 0) {
		*written = 0;
		return 0;
	}
	*written = len;
	return 1;
}

static int bio_read(BIO *bio, char *data, size_t len, size_t *readbytes)
{
	struct tls_conn *c = BIO_get_data(bio);
	size_t n = len < c->in.len ? len : c->in.len;

	BIO_clear_retry_flags(bio);
	if (n == 0) {
		*readbytes = 0;
		BIO_set_retry_read(bio);
		return 0;
	}
	memcpy(data, c->in.data + c->in.off, n);
	tls_buf_consume(&c->in, n);
	*readbytes = n;
	return 1;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(bio);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return (long)c->in.len;
	case BIO_CTRL_WPENDING:
		return (long)c->out.len;
	default:
		return 0;
	}
}

static int bio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static int bio_destroy(BIO *bio)
{
	BIO_set_data(bio, NULL);
	return 1;
}

BIO_METHOD *tls_bio_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "dpmail stream");

	if (m == NULL)
		return NULL;
	if (!BIO_meth_set_write_ex(m, bio_write) ||
	    !BIO_meth_set_read_ex(m, bio_read) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) ||
	    !BIO_meth_set_create(m, bio_create) ||
	    !BIO_meth_set_destroy(m, bio_destroy)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

BIO *tls_bio_new(BIO_METHOD *m, struct tls_conn *c)
{
	BIO *b = BIO_new(m);

	if (b != NULL)
		BIO_set_data(b, c);
	return b;
}
