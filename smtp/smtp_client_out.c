/*
 * smtp_client_out.c: what the client says: MAIL and RCPT with the ESMTP
 * parameters the server offered, and the message as DATA text, dot
 * stuffed, one data block at a time.
 *
 * Owns nothing but the growable command buffer it fills; the body is
 * read from the caller's envelope and copied into the session's single
 * block buffer, never whole.
 */
#include "smtp/smtp_client_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int smtp_cbuf_add(struct smtp_cbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (p == NULL)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int add_str(struct smtp_cbuf *b, const char *s)
{
	return smtp_cbuf_add(b, s, strlen(s));
}

/* xtext = *( xchar / hexchar ); xchar = %d33-42 / %d44-60 / %d62-126;
 * hexchar = "+" 2(%x30-39 / %x41-46)   (RFC 3461 4) */
static int add_xtext(struct smtp_cbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		char hex[4];
		int rc;

		if (ch >= 33 && ch <= 126 && ch != '+' && ch != '=') {
			rc = smtp_cbuf_add(b, s, 1);
		} else {
			snprintf(hex, sizeof(hex), "+%02X", ch);
			rc = smtp_cbuf_add(b, hex, 3);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

bool smtp_client_body_8bit(const struct envelope *env)
{
	for (size_t i = 0; i < env->body_len; i++)
		if (env->body[i] & 0x80)
			return true;
	return false;
}

/* MAIL FROM:<reverse-path> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8]
 *           [RET=FULL|HDRS] [ENVID=xtext] CRLF */
int smtp_client_fmt_mail(const struct smtp_client *c, struct smtp_cbuf *b)
{
	const struct envelope *e = c->env;
	uint32_t f = c->caps.flags;
	char num[32];
	int rc = 0;

	rc |= add_str(b, "MAIL FROM:<");
	rc |= add_str(b, e->mail_from);
	rc |= add_str(b, ">");
	if (f & SMTP_CAP_SIZE) {
		snprintf(num, sizeof(num), " SIZE=%zu", e->body_len);
		rc |= add_str(b, num);
	}
	if (f & SMTP_CAP_8BITMIME) {
		if (e->body_type == ENV_BODY_8BITMIME)
			rc |= add_str(b, " BODY=8BITMIME");
		else if (e->body_type == ENV_BODY_7BIT)
			rc |= add_str(b, " BODY=7BIT");
	}
	if (e->smtputf8 && (f & SMTP_CAP_SMTPUTF8))
		rc |= add_str(b, " SMTPUTF8");
	if (f & SMTP_CAP_DSN) {
		if (e->ret == ENV_RET_FULL)
			rc |= add_str(b, " RET=FULL");
		else if (e->ret == ENV_RET_HDRS)
			rc |= add_str(b, " RET=HDRS");
		if (e->envid[0] != '\0') {
			rc |= add_str(b, " ENVID=");
			rc |= add_xtext(b, e->envid);
		}
	}
	rc |= add_str(b, "\r\n");
	return rc < 0 ? -ENOMEM : 0;
}

/* RCPT TO:<forward-path> [NOTIFY=...] [ORCPT=addr-type;xtext] CRLF */
int smtp_client_fmt_rcpt(const struct smtp_client *c, uint32_t i,
			 struct smtp_cbuf *b)
{
	const struct env_rcpt *r = &c->env->rcpt[c->res[i].idx];
	int rc = 0;

	rc |= add_str(b, "RCPT TO:<");
	rc |= add_str(b, r->addr);
	rc |= add_str(b, ">");
	if (c->caps.flags & SMTP_CAP_DSN) {
		if (r->notify & ENV_NOTIFY_NEVER) {
			rc |= add_str(b, " NOTIFY=NEVER");
		} else if (r->notify != 0) {
			const char *sep = " NOTIFY=";

			if (r->notify & ENV_NOTIFY_SUCCESS) {
				rc |= add_str(b, sep);
				rc |= add_str(b, "SUCCESS");
				sep = ",";
			}
			if (r->notify & ENV_NOTIFY_FAILURE) {
				rc |= add_str(b, sep);
				rc |= add_str(b, "FAILURE");
				sep = ",";
			}
			if (r->notify & ENV_NOTIFY_DELAY) {
				rc |= add_str(b, sep);
				rc |= add_str(b, "DELAY");
			}
		}
		/* stored decoded as "rfc822;user@host": the addr-type goes
		 * as it is, the address xtext encoded */
		if (r->orcpt[0] != '\0') {
			const char *semi = strchr(r->orcpt, ';');

			if (semi != NULL && semi != r->orcpt) {
				rc |= add_str(b, " ORCPT=");
				rc |= smtp_cbuf_add(b, r->orcpt,
						    (size_t)(semi - r->orcpt) + 1);
				rc |= add_xtext(b, semi + 1);
			}
		}
	}
	rc |= add_str(b, "\r\n");
	return rc < 0 ? -ENOMEM : 0;
}

/*
 * RFC 5321 4.5.2: "Before sending a line of mail text, the SMTP client
 * checks the first character of the line. If it is a period, one
 * additional period is inserted at the beginning of the line." Lines
 * start after LF (the envelope's lines end CRLF). A body that does not
 * end in CRLF gets one before the "." CRLF (4.1.1.4).
 */
bool smtp_client_body_block(struct smtp_client *c)
{
	const struct envelope *e = c->env;
	uint32_t cap = c->conf.data_block;
	size_t o = 0;

	while (c->body_pos < e->body_len && o + 2 <= cap) {
		uint8_t ch = e->body[c->body_pos++];

		if (c->body_bol && ch == '.')
			c->block[o++] = '.';
		c->block[o++] = ch;
		c->body_bol = ch == '\n';
	}
	if (c->body_pos < e->body_len) {
		smtp_client_write(c, c->block, o);
		return false;
	}
	if (!c->body_bol && e->body_len > 0) {
		c->block[o++] = '\r';
		c->block[o++] = '\n';
	}
	memcpy(c->block + o, ".\r\n", 3);
	o += 3;
	smtp_client_write(c, c->block, o);
	c->body_done = true;
	return true;
}
