/*
 * smtp_data.c: message content. DATA text (RFC 5321 4.1.1.4, 4.5.2):
 * dot-unstuffing, the end marker, bare CR / bare LF, the text line
 * limit; BDAT chunks (RFC 3030), taken raw; the size limit and the
 * Received: count for both; the hand-off of a finished message.
 *
 * The end of DATA is CRLF "." CRLF and nothing else: a line begins only
 * after a real CRLF (or the DATA command), so no bare-LF / bare-CR
 * variant (<LF>.<CR><LF>, <CR><LF>.<LF>, <CR>.<CR>, ...: the 2023 "SMTP
 * smuggling" family) can end a message early or start a command. A bare
 * CR or LF ends a line for storage (NORMALIZE writes CRLF) and for the
 * line limit, never for the end marker or dot-unstuffing.
 *
 * Byte state lives in s->msg so any split of the input gives the same
 * result; the bytes a state holds back (".", CR, "." CR) are emitted
 * only once the next byte says what they were.
 */
#include "smtp/smtp_server_int.h"

#include <string.h>

/* Output staged before it goes to the envelope and the header scanner. */
struct stage {
	struct smtp_server *s;
	size_t n;
	uint8_t buf[2048];
};

static bool keeping(const struct smtp_server *s)
{
	const struct smtp_msg *m = &s->msg;

	return !s->bdat_skip && !m->oversize && !m->too_long && !m->nomem &&
	       !(m->bare && s->conf.bare_lf == SMTP_BARE_REJECT);
}

/* Counts "Received:" at the start of header lines until the empty line
 * that ends the header section (RFC 5322 2.1). Continuation lines start
 * with WSP and never match. */
static void hdr_scan(struct smtp_hdrscan *h, const uint8_t *p, size_t n)
{
	static const char pat[] = "received:";

	for (size_t i = 0; i < n && !h->done; i++) {
		int c = p[i];

		if (h->at_start) {
			h->at_start = false;
			h->matching = true;
			h->matched = 0;
			h->nonempty = false;
		}
		if (c == '\n') {
			if (!h->nonempty)
				h->done = true;
			h->at_start = true;
			continue;
		}
		if (c != '\r')
			h->nonempty = true;
		if (!h->matching)
			continue;
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != pat[h->matched]) {
			h->matching = false;
		} else if (++h->matched == sizeof(pat) - 1) {
			h->received++;
			h->matching = false;
		}
	}
}

/* Content as stored: counted against the size limit, scanned, kept. */
static void store(struct smtp_server *s, const uint8_t *p, size_t n)
{
	struct smtp_msg *m = &s->msg;
	struct envelope *e = s->env;

	if (n == 0 || s->bdat_skip)
		return;
	hdr_scan(&m->hs, p, n);
	m->size += n;
	if (s->conf.max_message_size != 0 && m->size > s->conf.max_message_size)
		m->oversize = true; /* read on to the end, answer 552 then */
	if (keeping(s) && envelope_body_append(e, p, n) != 0)
		m->nomem = true;
}

static void stage_flush(struct stage *st)
{
	store(st->s, st->buf, st->n);
	st->n = 0;
}

static inline void emit(struct stage *st, uint8_t c)
{
	st->buf[st->n++] = c;
	if (st->n == sizeof(st->buf))
		stage_flush(st);
}

static inline void emit_crlf(struct stage *st)
{
	emit(st, '\r');
	emit(st, '\n');
}

/* More wire octets on the current line (RFC 5321 4.5.3.1.6); the
 * count saturates just past the limit. */
static inline void line_octets(struct smtp_server *s, size_t n)
{
	uint64_t len = (uint64_t)s->msg.line_len + n;

	if (len > s->conf.max_text_line) {
		s->msg.too_long = true;
		len = (uint64_t)s->conf.max_text_line + 1;
	}
	s->msg.line_len = (uint32_t)len;
}

static inline void line_octet(struct smtp_server *s)
{
	line_octets(s, 1);
}

void smtp_msg_begin(struct smtp_server *s)
{
	struct smtp_msg *m = &s->msg;
	time_t t = s->ops.now ? s->ops.now(s->user) : time(NULL);
	char hdr[2048];
	size_t n;

	memset(m, 0, sizeof(*m));
	m->dot = SMTP_D_BOL;
	m->hs.at_start = true;
	s->env->arrival_us = (uint64_t)t * 1000000u;
	n = smtp_received_format(s, t, hdr, sizeof(hdr));
	m->size = n;
	if (s->conf.max_message_size != 0 && n > s->conf.max_message_size)
		m->oversize = true;
	else if (envelope_body_append(s->env, hdr, n) != 0)
		m->nomem = true;
}

/* The message is complete: refuse it with the first limit it broke, or
 * hand it to the caller and wait for smtp_server_queued. */
static void msg_finish(struct smtp_server *s)
{
	struct smtp_msg *m = &s->msg;
	struct envelope *e = s->env, *next;

	s->rx = SMTP_RX_CMD;
	if (m->oversize) {
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
	} else if (m->too_long) {
		smtp_reply(s, "500 5.5.0 Error: text line too long");
	} else if (m->bare && s->conf.bare_lf == SMTP_BARE_REJECT) {
		smtp_reply(s, "550 5.6.11 Error: bare <CR> or <LF> received");
	} else if (s->conf.max_received != 0 &&
		   m->hs.received > s->conf.max_received) {
		smtp_reply(s, "554 5.4.6 Too many hops: mail loop detected");
	} else if (m->nomem || (next = envelope_new()) == NULL) {
		smtp_reply(s, "452 4.3.1 Insufficient system storage");
	} else if (envelope_set_str(&next->helo, e->helo, SIZE_MAX) != 0 ||
		   envelope_set_str(&next->client_addr, e->client_addr,
				    SIZE_MAX) != 0) {
		envelope_free(next);
		smtp_reply(s, "452 4.3.1 Insufficient system storage");
	} else {
		next->client_port = e->client_port;
		next->local_port = e->local_port;
		next->esmtp = e->esmtp;
		s->env = next;
		memcpy(s->pending_qid, e->qid, sizeof(s->pending_qid));
		s->pending_qid[ENV_QID_LEN] = '\0';
		smtp_txn_reset(s);
		s->pending = true;
		/* the caller owns e now; it may answer before returning */
		if (s->ops.message != NULL) {
			s->ops.message(s->user, e);
		} else {
			envelope_free(e);
			smtp_server_queued(s, 0, NULL);
		}
		return;
	}
	s->stats.rejected_msgs++;
	smtp_txn_reset(s);
}

size_t smtp_data_input(struct smtp_server *s, const uint8_t *p, size_t n)
{
	struct smtp_msg *m = &s->msg;
	struct stage st;
	size_t i;

	st.s = s;
	st.n = 0;
	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		switch (m->dot) {
		case SMTP_D_DOT_CR:
			if (c == '\n') {
				/* CRLF "." CRLF: the end */
				stage_flush(&st);
				msg_finish(s);
				return i + 1;
			}
			/* ".<CR>x": the dot is dropped, the CR is bare */
			m->dot = SMTP_D_CR;
			/* fallthrough */
		case SMTP_D_CR:
			if (c == '\n') {
				line_octet(s);
				emit_crlf(&st);
				m->line_len = 0;
				m->dot = SMTP_D_BOL;
				continue;
			}
			/* a bare CR ends a line, but starts none */
			m->bare = true;
			emit_crlf(&st);
			m->line_len = 0;
			break;
		case SMTP_D_BOL:
			if (c == '.') {
				line_octet(s);
				m->dot = SMTP_D_DOT;
				continue;
			}
			break;
		case SMTP_D_DOT:
			if (c == '\r') {
				line_octet(s);
				m->dot = SMTP_D_DOT_CR;
				continue;
			}
			/* RFC 5321 4.5.2: a leading period with more on the
			 * line is deleted (".." -> ".") */
			break;
		case SMTP_D_TEXT:
			break;
		}
		/* inside a line */
		if (c != '\r' && c != '\n') {
			/* the common case: a run of text, stored in one go */
			size_t j = i + 1;

			while (j < n && p[j] != '\r' && p[j] != '\n')
				j++;
			line_octets(s, j - i);
			stage_flush(&st);
			store(s, p + i, j - i);
			m->dot = SMTP_D_TEXT;
			i = j - 1;
			continue;
		}
		line_octet(s);
		m->dot = SMTP_D_TEXT;
		if (c == '\r') {
			m->dot = SMTP_D_CR;
		} else {
			/* a bare LF ends a line, but starts none */
			m->bare = true;
			emit_crlf(&st);
			m->line_len = 0;
		}
	}
	stage_flush(&st);
	return n;
}

void smtp_bdat_chunk_end(struct smtp_server *s)
{
	struct smtp_msg *m = &s->msg;

	s->rx = SMTP_RX_CMD;
	if (s->bdat_skip) {
		s->bdat_skip = false;
		if (s->bdat_err_counts)
			smtp_reply_err(s, "%s", s->bdat_err);
		else
			smtp_reply(s, "%s", s->bdat_err);
		return;
	}
	if (s->bdat_last) {
		msg_finish(s);
		return;
	}
	/* RFC 3030 4: a failed chunk fails the transaction; later chunks
	 * already in the pipe get 503 (need MAIL) and are skipped too */
	if (m->oversize || m->nomem) {
		if (m->oversize)
			smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		else
			smtp_reply(s, "452 4.3.1 Insufficient system storage");
		s->stats.rejected_msgs++;
		smtp_txn_reset(s);
		return;
	}
	smtp_reply(s, "250 2.0.0 Ok: %llu octets",
		   (unsigned long long)s->bdat_size);
}

size_t smtp_bdat_input(struct smtp_server *s, const uint8_t *p, size_t n)
{
	size_t k = n < s->bdat_left ? n : (size_t)s->bdat_left;

	/* RFC 3030 3: chunk octets are taken as they are: no dot-stuffing,
	 * no end marker, no line rules */
	store(s, p, k);
	s->bdat_left -= k;
	if (s->bdat_left == 0)
		smtp_bdat_chunk_end(s);
	return k;
}
