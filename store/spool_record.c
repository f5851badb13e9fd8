/*
 * spool_record.c: encoding, CRC and bounds-checked decoding of spool
 * records (layout in spool_record.h).
 *
 * Must never: trust a length read from disk, or read past the payload it
 * was given. Every decoder walks a cursor that fails closed.
 */
#include "store/spool_record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_hash_crc.h>

#include "store/spool_qid.h"

uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* rte_hash_crc is the raw CRC32C register update (no final xor):
	 * the standard value is ~rte_hash_crc(buf, len, ~0), so chaining
	 * re-inverts the previous result */
	crc = ~crc;
	/* rte_hash_crc loads 8, 4, 2 bytes at a time: give it an aligned
	 * start (unaligned loads are fine on x86 but undefined in C) */
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = rte_hash_crc_1byte(*p++, crc);
		len--;
	}
	while (len > 0) {
		uint32_t n = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;

		crc = rte_hash_crc(p, n, crc);
		p += n;
		len -= n;
	}
	return ~crc;
}

/* ---- little-endian helpers ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- buffer ---- */

int spool_buf_reserve(struct spool_buf *b, size_t more)
{
	size_t cap;
	uint8_t *n;

	if (b->cap - b->len >= more)
		return 0;
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < more) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	n = realloc(b->data, cap);
	if (n == NULL)
		return -ENOMEM;
	b->data = n;
	b->cap = cap;
	return 0;
}

void spool_buf_free(struct spool_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- header ---- */

void spool_rec_hdr_put(uint8_t out[SPOOL_REC_HDR_LEN],
		       const struct spool_rec_hdr *h)
{
	put32(out, h->magic);
	out[4] = h->type;
	out[5] = h->version;
	put16(out + 6, 0);
	put32(out + 8, h->len);
	put32(out + 12, h->crc);
}

void spool_rec_hdr_get(const uint8_t in[SPOOL_REC_HDR_LEN],
		       struct spool_rec_hdr *h)
{
	h->magic = get32(in);
	h->type = in[4];
	h->version = in[5];
	h->len = get32(in + 8);
	h->crc = get32(in + 12);
	/* reserved bytes are checked by spool_rec_hdr_check via the CRC */
}

int spool_rec_hdr_check(const struct spool_rec_hdr *h)
{
	if (h->magic != SPOOL_REC_MAGIC || h->version != SPOOL_REC_VERSION)
		return -EBADMSG;
	switch (h->type) {
	case SPOOL_REC_MSG:
		return h->len <= SPOOL_REC_PAYLOAD_MAX ? 0 : -EBADMSG;
	case SPOOL_REC_STATE:
		return h->len == SPOOL_STATE_PAYLOAD_LEN ? 0 : -EBADMSG;
	case SPOOL_REC_SEGHDR:
		return h->len == SPOOL_SEGHDR_PAYLOAD_LEN ? 0 : -EBADMSG;
	default:
		return -EBADMSG;
	}
}

bool spool_rec_crc_ok(const uint8_t hdr[SPOOL_REC_HDR_LEN],
		      const uint8_t *payload, uint32_t len)
{
	uint8_t h[SPOOL_REC_HDR_LEN];
	uint32_t crc;

	memcpy(h, hdr, sizeof(h));
	memset(h + 12, 0, 4);
	crc = spool_crc32c(0, h, sizeof(h));
	crc = spool_crc32c(crc, payload, len);
	return crc == get32(hdr + 12);
}

/* ---- encoders ---- */

static uint8_t *grab(struct spool_buf *b, size_t n)
{
	uint8_t *p = b->data + b->len;

	b->len += n;
	return p;
}

static void put_str(struct spool_buf *b, const char *s, size_t n)
{
	put32(grab(b, 4), (uint32_t)n);
	memcpy(grab(b, n), s, n);
}

static void put_pad(struct spool_buf *b, uint64_t rec_size, size_t hdr_off,
		    uint64_t body_len)
{
	size_t pad = (size_t)(rec_size - (b->len - hdr_off) - body_len);

	memset(grab(b, pad), 0, pad);
}

int spool_rec_encode_msg(struct spool_buf *b, const struct envelope *e,
			 size_t *hdr_off, size_t *head_len,
			 uint64_t *rec_size)
{
	size_t lens[4], meta, off;
	const char *strs[4] = { e->client_addr, e->helo, e->mail_from,
				e->envid };
	struct spool_rec_hdr h;
	uint64_t payload;
	uint32_t crc;
	int rc;

	if (!spool_qid_valid(e->qid) || e->nrcpt > SPOOL_REC_RCPT_MAX)
		return -EINVAL;
	meta = ENV_QID_LEN + 8 + 2 + 2 + 1 + 1 + 1 + 8 + 4 + 8;
	for (int i = 0; i < 4; i++) {
		lens[i] = strlen(strs[i]);
		if (lens[i] > SPOOL_REC_STR_MAX)
			return -EINVAL;
		meta += 4 + lens[i];
	}
	for (uint32_t i = 0; i < e->nrcpt; i++) {
		size_t a = strlen(e->rcpt[i].addr), o = strlen(e->rcpt[i].orcpt);

		if (a > SPOOL_REC_STR_MAX || o > SPOOL_REC_STR_MAX)
			return -EINVAL;
		meta += 4 + a + 4 + o + 1;
	}
	payload = meta + e->body_len;
	if (payload > SPOOL_REC_PAYLOAD_MAX)
		return -E2BIG;
	*rec_size = spool_rec_size(payload);
	/* header + meta, and the padding that follows the body */
	rc = spool_buf_reserve(b, SPOOL_REC_HDR_LEN + meta + SPOOL_REC_ALIGN);
	if (rc != 0)
		return rc;
	off = b->len;
	h = (struct spool_rec_hdr){ .magic = SPOOL_REC_MAGIC,
				    .type = SPOOL_REC_MSG,
				    .version = SPOOL_REC_VERSION,
				    .len = (uint32_t)payload, .crc = 0 };
	spool_rec_hdr_put(grab(b, SPOOL_REC_HDR_LEN), &h);
	memcpy(grab(b, ENV_QID_LEN), e->qid, ENV_QID_LEN);
	put64(grab(b, 8), e->arrival_us);
	put_str(b, strs[0], lens[0]);
	put16(grab(b, 2), e->client_port);
	put16(grab(b, 2), e->local_port);
	put_str(b, strs[1], lens[1]);
	put_str(b, strs[2], lens[2]);
	put_str(b, strs[3], lens[3]);
	*grab(b, 1) = e->ret;
	*grab(b, 1) = e->body_type;
	*grab(b, 1) = (uint8_t)((e->smtputf8 ? 1 : 0) | (e->esmtp ? 2 : 0));
	put64(grab(b, 8), e->declared_size);
	put32(grab(b, 4), e->nrcpt);
	for (uint32_t i = 0; i < e->nrcpt; i++) {
		put_str(b, e->rcpt[i].addr, strlen(e->rcpt[i].addr));
		put_str(b, e->rcpt[i].orcpt, strlen(e->rcpt[i].orcpt));
		*grab(b, 1) = e->rcpt[i].notify;
	}
	put64(grab(b, 8), e->body_len);
	crc = spool_crc32c(0, b->data + off, b->len - off);
	crc = spool_crc32c(crc, e->body, e->body_len);
	put32(b->data + off + 12, crc);
	*head_len = b->len - off;
	/* the padding lives in b after the header+meta; the caller writes
	 * it after the body */
	put_pad(b, *rec_size, off, e->body_len);
	*hdr_off = off;
	return 0;
}

static int encode_small(struct spool_buf *b, uint8_t type, uint32_t plen,
			uint8_t **payload, size_t *off)
{
	struct spool_rec_hdr h = { .magic = SPOOL_REC_MAGIC, .type = type,
				   .version = SPOOL_REC_VERSION, .len = plen };
	uint64_t size = spool_rec_size(plen);
	int rc = spool_buf_reserve(b, (size_t)size);

	if (rc != 0)
		return rc;
	*off = b->len;
	memset(b->data + b->len, 0, (size_t)size);
	spool_rec_hdr_put(b->data + b->len, &h);
	*payload = b->data + b->len + SPOOL_REC_HDR_LEN;
	b->len += (size_t)size;
	return 0;
}

static void finish_small(struct spool_buf *b, size_t off, uint32_t plen)
{
	put32(b->data + off + 12,
	      spool_crc32c(0, b->data + off, SPOOL_REC_HDR_LEN + plen));
}

int spool_rec_encode_state(struct spool_buf *b, const char *qid,
			   uint32_t rcpt, uint8_t state, uint64_t next_try_s)
{
	uint8_t *p;
	size_t off;
	int rc;

	if (!spool_qid_valid(qid))
		return -EINVAL;
	rc = encode_small(b, SPOOL_REC_STATE, SPOOL_STATE_PAYLOAD_LEN, &p,
			  &off);
	if (rc != 0)
		return rc;
	memcpy(p, qid, ENV_QID_LEN);
	put32(p + ENV_QID_LEN, rcpt);
	p[ENV_QID_LEN + 4] = state;
	put64(p + ENV_QID_LEN + 5, next_try_s);
	finish_small(b, off, SPOOL_STATE_PAYLOAD_LEN);
	return 0;
}

int spool_rec_encode_seghdr(struct spool_buf *b, uint32_t writer,
			    uint64_t seq, uint64_t created_us,
			    const char *qid_floor)
{
	uint8_t *p;
	size_t off;
	int rc;

	if (!spool_qid_valid(qid_floor))
		return -EINVAL;
	rc = encode_small(b, SPOOL_REC_SEGHDR, SPOOL_SEGHDR_PAYLOAD_LEN, &p,
			  &off);
	if (rc != 0)
		return rc;
	put32(p, writer);
	put64(p + 4, seq);
	put64(p + 12, created_us);
	memcpy(p + 20, qid_floor, ENV_QID_LEN);
	finish_small(b, off, SPOOL_SEGHDR_PAYLOAD_LEN);
	return 0;
}

/* ---- decoders ---- */

struct cur {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *take(struct cur *c, size_t n)
{
	const uint8_t *p = c->p;

	if (c->bad || n > c->left) {
		c->bad = true;
		return NULL;
	}
	c->p += n;
	c->left -= n;
	return p;
}

static uint8_t take8(struct cur *c)
{
	const uint8_t *p = take(c, 1);

	return p ? p[0] : 0;
}

static uint16_t take16(struct cur *c)
{
	const uint8_t *p = take(c, 2);

	return p ? get16(p) : 0;
}

static uint32_t take32(struct cur *c)
{
	const uint8_t *p = take(c, 4);

	return p ? get32(p) : 0;
}

static uint64_t take64(struct cur *c)
{
	const uint8_t *p = take(c, 8);

	return p ? get64(p) : 0;
}

/* A string field: bounded, no NUL inside. *s points into the payload. */
static void take_str(struct cur *c, const char **s, size_t *n)
{
	uint32_t len = take32(c);
	const uint8_t *p;

	*s = "";
	*n = 0;
	if (c->bad)
		return;
	if (len > SPOOL_REC_STR_MAX) {
		c->bad = true;
		return;
	}
	p = take(c, len);
	if (p == NULL)
		return;
	if (memchr(p, '\0', len) != NULL) {
		c->bad = true;
		return;
	}
	*s = (const char *)p;
	*n = len;
}

static bool take_qid(struct cur *c, char out[ENV_QID_LEN + 1])
{
	const uint8_t *p = take(c, ENV_QID_LEN);

	if (p == NULL)
		return false;
	memcpy(out, p, ENV_QID_LEN);
	out[ENV_QID_LEN] = '\0';
	if (!spool_qid_valid(out)) {
		c->bad = true;
		return false;
	}
	return true;
}

static int set_str(struct envelope *env, char **dst, const char *s,
		   size_t n)
{
	if (env == NULL)
		return 0;
	return envelope_set_str(dst, s, n);
}

int spool_rec_decode_msg(const uint8_t *p, size_t len,
			 struct spool_msg_info *info, struct envelope *env)
{
	struct cur c = { .p = p, .left = len };
	const char *s;
	size_t n;
	uint8_t flags;
	uint64_t arrival, declared, body_len;
	uint16_t cport, lport;
	uint8_t ret, body_type;
	int rc = 0;

	if (!take_qid(&c, info->qid))
		return -EBADMSG;
	arrival = take64(&c);
	take_str(&c, &s, &n);
	if (!c.bad && env)
		rc |= set_str(env, &env->client_addr, s, n);
	cport = take16(&c);
	lport = take16(&c);
	take_str(&c, &s, &n);
	if (!c.bad && env)
		rc |= set_str(env, &env->helo, s, n);
	take_str(&c, &s, &n);
	if (!c.bad && env)
		rc |= set_str(env, &env->mail_from, s, n);
	take_str(&c, &s, &n);
	if (!c.bad && env)
		rc |= set_str(env, &env->envid, s, n);
	ret = take8(&c);
	body_type = take8(&c);
	flags = take8(&c);
	declared = take64(&c);
	info->nrcpt = take32(&c);
	if (c.bad || rc != 0)
		return c.bad ? -EBADMSG : -ENOMEM;
	/* each recipient takes at least 9 bytes: no huge counts */
	if (info->nrcpt > SPOOL_REC_RCPT_MAX || info->nrcpt > c.left / 9 ||
	    ret > ENV_RET_HDRS || body_type > ENV_BODY_BINARYMIME ||
	    (flags & ~3u) != 0)
		return -EBADMSG;
	for (uint32_t i = 0; i < info->nrcpt; i++) {
		const char *a, *o;
		size_t an, on;
		uint8_t notify;

		take_str(&c, &a, &an);
		take_str(&c, &o, &on);
		notify = take8(&c);
		if (c.bad)
			return -EBADMSG;
		if (notify & ~0x0fu)
			return -EBADMSG;
		if (env != NULL) {
			char *ab = strndup(a, an), *ob = strndup(o, on);

			rc = (ab && ob) ? envelope_add_rcpt(env, ab, ob, notify)
					: -ENOMEM;
			free(ab);
			free(ob);
			if (rc != 0)
				return rc;
		}
	}
	body_len = take64(&c);
	if (c.bad || body_len != c.left)
		return -EBADMSG;
	info->body_len = body_len;
	if (env != NULL) {
		memcpy(env->qid, info->qid, sizeof(env->qid));
		env->arrival_us = arrival;
		env->client_port = cport;
		env->local_port = lport;
		env->ret = ret;
		env->body_type = body_type;
		env->smtputf8 = flags & 1;
		env->esmtp = (flags & 2) != 0;
		env->declared_size = declared;
		if (body_len > 0 &&
		    envelope_body_append(env, c.p, (size_t)body_len) != 0)
			return -ENOMEM;
	}
	return 0;
}

int spool_rec_decode_state(const uint8_t *p, size_t len,
			   char qid[ENV_QID_LEN + 1], uint32_t *rcpt,
			   uint8_t *state, uint64_t *next_try_s)
{
	struct cur c = { .p = p, .left = len };

	if (len != SPOOL_STATE_PAYLOAD_LEN || !take_qid(&c, qid))
		return -EBADMSG;
	*rcpt = take32(&c);
	*state = take8(&c);
	*next_try_s = take64(&c);
	/* PENDING is never written: a state record is a change */
	if (c.bad || *state < 1 || *state > 3)
		return -EBADMSG;
	return 0;
}

int spool_rec_decode_seghdr(const uint8_t *p, size_t len, uint32_t *writer,
			    uint64_t *seq, uint64_t *created_us,
			    char qid_floor[ENV_QID_LEN + 1])
{
	struct cur c = { .p = p, .left = len };

	if (len != SPOOL_SEGHDR_PAYLOAD_LEN)
		return -EBADMSG;
	*writer = take32(&c);
	*seq = take64(&c);
	*created_us = take64(&c);
	if (!take_qid(&c, qid_floor) || c.bad)
		return -EBADMSG;
	return 0;
}
