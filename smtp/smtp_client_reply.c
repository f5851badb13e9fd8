/*
 * smtp_client_reply.c: reads the server's replies, resumably over any
 * split of the input (STYLE point 3), and keeps from each what a result
 * needs: the code, the enhanced status code (RFC 3463), the text; from
 * EHLO's reply the keywords.
 *
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                Reply-code [ SP textstring ] CRLF        (RFC 5321 4.2)
 *   Reply-code = %x32-35 %x30-35 %x30-39
 *
 * A bare LF ends a line too (some servers); the CR before it is dropped.
 * Never buffers more than one line (SMTP_CLIENT_MAX_LINE).
 */
#include "smtp/smtp_client_int.h"

#include <stdio.h>
#include <string.h>

#include "smtp/smtp_parse.h"

const char *smtp_client_stage_name(enum smtp_client_stage s)
{
	static const char *const names[] = {
		[SMTP_CLIENT_GREETING] = "greeting",
		[SMTP_CLIENT_EHLO] = "EHLO",
		[SMTP_CLIENT_HELO] = "HELO",
		[SMTP_CLIENT_READY] = "idle",
		[SMTP_CLIENT_MAIL] = "MAIL FROM",
		[SMTP_CLIENT_RCPT] = "RCPT TO",
		[SMTP_CLIENT_DATA] = "DATA",
		[SMTP_CLIENT_DATA_BLOCK] = "message data",
		[SMTP_CLIENT_DATA_END] = "end of data",
		[SMTP_CLIENT_RSET] = "RSET",
		[SMTP_CLIENT_QUIT] = "QUIT",
		[SMTP_CLIENT_CLOSED] = "closed",
		[SMTP_CLIENT_STARTTLS] = "STARTTLS",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void smtp_client_default_enh(struct smtp_client_reply *r)
{
	unsigned cls = r->code / 100;
	unsigned sub = 0, det = 0;

	if (cls == 2) {
		if (r->stage == SMTP_CLIENT_MAIL)
			sub = 1, det = 0;
		else if (r->stage == SMTP_CLIENT_RCPT)
			sub = 1, det = 5;
		else if (r->stage == SMTP_CLIENT_DATA_END)
			sub = 6, det = 0;
	} else if (r->code == 552) {
		sub = 3, det = 4; /* RFC 1870: exceeded storage allocation */
	} else if (r->stage == SMTP_CLIENT_RCPT &&
		   (r->code == 550 || r->code == 553)) {
		sub = 1, det = 1; /* bad destination mailbox address */
	}
	if (cls < 2 || cls > 5)
		cls = 4;
	snprintf(r->enh, sizeof(r->enh), "%u.%u.%u", cls, sub, det);
}

void smtp_client_local_reply(struct smtp_client_reply *r,
			     enum smtp_client_stage stage, uint16_t code,
			     const char *enh, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->code = code;
	r->stage = stage;
	r->local = true;
	snprintf(r->enh, sizeof(r->enh), "%s", enh);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

/* status-code = class "." subject "." detail; class 2/4/5, subject and
 * detail 1*3digit (RFC 3463 2), followed by SP or the end. Returns the
 * octets it takes (SP included), 0 when there is none. */
static size_t parse_enh(const char *s, size_t n, char cls, char *out,
			size_t outsz)
{
	size_t i = 0;

	if (n < 5 || s[0] != cls)
		return 0;
	i = 1;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;

		if (i >= n || s[i] != '.')
			return 0;
		i++;
		while (i < n && s[i] >= '0' && s[i] <= '9' && d < 4)
			i++, d++;
		if (d < 1 || d > 3)
			return 0;
	}
	if (i < n && s[i] != ' ')
		return 0;
	if (out != NULL && i < outsz) {
		memcpy(out, s, i);
		out[i] = '\0';
	}
	return i < n ? i + 1 : i;
}

static void add_text(struct smtp_crx *rx, const char *s, size_t n)
{
	size_t room = sizeof(rx->r.text) - 1 - rx->text_len;

	if (rx->text_len > 0 && room > 0 && n > 0) {
		rx->r.text[rx->text_len++] = ' ';
		room--;
	}
	if (n > room)
		n = room;
	memcpy(rx->r.text + rx->text_len, s, n);
	rx->text_len += n;
	rx->r.text[rx->text_len] = '\0';
}

/* One EHLO keyword line: ehlo-line = ehlo-keyword *( SP ehlo-param ) */
static void ehlo_keyword(struct smtp_client *c, const char *s, size_t n)
{
	static const struct {
		const char *kw;
		uint32_t bit;
	} kws[] = {
		{ "PIPELINING", SMTP_CAP_PIPELINING },
		{ "SIZE", SMTP_CAP_SIZE },
		{ "8BITMIME", SMTP_CAP_8BITMIME },
		{ "SMTPUTF8", SMTP_CAP_SMTPUTF8 },
		{ "DSN", SMTP_CAP_DSN },
		{ "CHUNKING", SMTP_CAP_CHUNKING },
		{ "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES },
		{ "STARTTLS", SMTP_CAP_STARTTLS },
		{ "AUTH", SMTP_CAP_AUTH },
	};
	size_t kl = 0, p;

	while (kl < n && s[kl] != ' ')
		kl++;
	p = kl;
	while (p < n && s[p] == ' ')
		p++;
	for (size_t i = 0; i < sizeof(kws) / sizeof(kws[0]); i++) {
		if (!smtp_word_eq(s, kl, kws[i].kw))
			continue;
		c->caps.flags |= kws[i].bit;
		if (kws[i].bit == SMTP_CAP_SIZE) {
			size_t e = p;
			uint64_t v = 0;

			while (e < n && s[e] != ' ')
				e++;
			/* "SIZE" alone or a bad number: no fixed limit */
			if (e > p && smtp_parse_size(s + p, e - p, &v) == 0)
				c->caps.size = v;
		} else if (kws[i].bit == SMTP_CAP_AUTH) {
			size_t m = n - p;

			if (m >= sizeof(c->caps.auth))
				m = sizeof(c->caps.auth) - 1;
			memcpy(c->caps.auth, s + p, m);
			c->caps.auth[m] = '\0';
		}
		return;
	}
}

/* One complete line (no CR/LF). Returns false on garbage. */
static bool reply_line(struct smtp_client *c, const char *s, size_t n)
{
	struct smtp_crx *rx = &c->rx;
	uint16_t code;
	bool last;
	size_t t;

	if (n < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' ||
	    s[2] < '0' || s[2] > '9')
		return false;
	if (n > 3 && s[3] != ' ' && s[3] != '-')
		return false;
	code = (uint16_t)((s[0] - '0') * 100 + (s[1] - '0') * 10 +
			  (s[2] - '0'));
	last = n == 3 || s[3] == ' ';
	if (rx->lines == 0) {
		memset(&rx->r, 0, sizeof(rx->r));
		rx->r.code = code;
		rx->r.stage = c->stage;
		rx->text_len = 0;
		rx->enh_given = false;
	} else if (code != rx->r.code) {
		return false;
	}
	if (++rx->lines > SMTP_CLIENT_MAX_LINES)
		return false;
	s += n > 3 ? 4 : 3;
	n -= n > 3 ? 4 : 3;
	/* The first line's enhanced code counts; the same one repeated on
	 * later lines is not text. */
	if (rx->lines == 1) {
		t = parse_enh(s, n, (char)('0' + code / 100), rx->r.enh,
			      sizeof(rx->r.enh));
		rx->enh_given = t > 0;
	} else {
		t = parse_enh(s, n, (char)('0' + code / 100), NULL, 0);
	}
	if (c->stage == SMTP_CLIENT_EHLO && rx->lines > 1)
		ehlo_keyword(c, s, n);
	add_text(rx, s + t, n - t);
	if (last) {
		if (!rx->enh_given)
			smtp_client_default_enh(&rx->r);
		rx->lines = 0;
		c->stats.replies++;
		smtp_client_reply_done(c);
	}
	return true;
}

void smtp_client_rx(struct smtp_client *c, const uint8_t *p, size_t n)
{
	struct smtp_crx *rx = &c->rx;

	for (size_t i = 0; i < n && c->stage != SMTP_CLIENT_CLOSED; i++) {
		size_t len;

		if (p[i] != '\n') {
			if (rx->line_len >= sizeof(rx->line)) {
				smtp_client_protocol_error(c, "reply line too long");
				return;
			}
			rx->line[rx->line_len++] = (char)p[i];
			continue;
		}
		len = rx->line_len;
		if (len > 0 && rx->line[len - 1] == '\r')
			len--;
		rx->line_len = 0;
		if (!reply_line(c, rx->line, len)) {
			smtp_client_protocol_error(c, "garbled reply");
			return;
		}
	}
}
