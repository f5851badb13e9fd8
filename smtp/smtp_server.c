/*
 * smtp_server.c: one SMTP server session's life cycle: creation, the
 * input loop that hands bytes to the command reader or the DATA/BDAT
 * machine, the backlog of pipelined input kept while a message is
 * pending, replies, errors, timeouts and close.
 *
 * Owns: the session, its envelope until ops->message takes it, its line
 * buffers and backlog. Never does I/O itself: every reply goes through
 * ops->write, the end through ops->close.
 */
#include "smtp/smtp_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void smtp_server_conf_defaults(struct smtp_server_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->greeting_text = "ESMTP dpmail";
	c->max_cmd_line = 512;
	c->max_text_line = 1000;
	c->max_message_size = 36u << 20;
	c->max_recipients = 1000;
	c->max_errors = 20;
	c->max_received = 50;
	c->bare_lf = SMTP_BARE_REJECT;
	c->vrfy = SMTP_VRFY_252;
	c->smtputf8 = c->eightbitmime = c->chunking = c->dsn = true;
	c->pipelining = true;
	c->binarymime = false;
	c->auth_mechs = "PLAIN LOGIN";
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

struct smtp_server *smtp_server_new(const struct smtp_server_conf *conf,
				    const struct smtp_server_ops *ops,
				    void *user, const char *client_addr,
				    uint16_t client_port, uint16_t local_port)
{
	struct smtp_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->conf = *conf;
	s->ops = *ops;
	s->user = user;
	/* RFC 5321 4.5.3.1: never below the minimums every client may use */
	if (s->conf.max_cmd_line < SMTP_MIN_CMD_LINE)
		s->conf.max_cmd_line = SMTP_MIN_CMD_LINE;
	if (s->conf.max_cmd_line > SMTP_MAX_CMD_LINE_CAP)
		s->conf.max_cmd_line = SMTP_MAX_CMD_LINE_CAP;
	if (s->conf.max_text_line < SMTP_MIN_TEXT_LINE)
		s->conf.max_text_line = SMTP_MIN_TEXT_LINE;
	if (s->conf.max_recipients < SMTP_MIN_RECIPIENTS)
		s->conf.max_recipients = SMTP_MIN_RECIPIENTS;
	if (!s->conf.chunking)
		s->conf.binarymime = false;
	s->hostname = dup_str(conf->hostname ? conf->hostname : "localhost");
	s->greeting = dup_str(conf->greeting_text ? conf->greeting_text
						  : "ESMTP dpmail");
	s->line = malloc(s->conf.max_cmd_line);
	s->scratch = malloc(s->conf.max_cmd_line + 1u);
	s->env = envelope_new();
	if (s->hostname == NULL || s->greeting == NULL || s->line == NULL ||
	    s->scratch == NULL || s->env == NULL)
		goto fail;
	s->conf.hostname = s->hostname;
	s->conf.greeting_text = s->greeting;
	if (envelope_set_str(&s->env->client_addr,
			     client_addr ? client_addr : "", SIZE_MAX) != 0)
		goto fail;
	s->env->client_port = client_port;
	s->env->local_port = local_port;
	s->rx = SMTP_RX_CMD;
	return s;
fail:
	smtp_server_free(s);
	return NULL;
}

void smtp_server_free(struct smtp_server *s)
{
	if (s == NULL)
		return;
	envelope_free(s->env);
	free(s->hostname);
	free(s->greeting);
	free(s->line);
	free(s->scratch);
	free(s->bl);
	free(s);
}

static void vreply(struct smtp_server *s, const char *fmt, va_list ap)
{
	char buf[SMTP_REPLY_MAX];
	int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 3)
		n = (int)(sizeof(buf) - 3);
	buf[n++] = '\r';
	buf[n++] = '\n';
	s->ops.write(s->user, buf, (size_t)n);
}

void smtp_reply(struct smtp_server *s, const char *fmt, ...)
{
	va_list ap;

	if (s->closing)
		return;
	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

void smtp_close(struct smtp_server *s, const char *fmt, ...)
{
	va_list ap;

	if (s->closing)
		return;
	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	s->closing = true;
	s->ops.close(s->user);
}

void smtp_count_error(struct smtp_server *s)
{
	s->stats.errors++;
	if (s->conf.max_errors != 0 && s->stats.errors >= s->conf.max_errors)
		smtp_close(s, "421 4.7.0 %s Error: too many errors",
			   s->hostname);
}

void smtp_reply_err(struct smtp_server *s, const char *fmt, ...)
{
	va_list ap;

	if (s->closing)
		return;
	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	smtp_count_error(s);
}

void smtp_txn_reset(struct smtp_server *s)
{
	envelope_reset_txn(s->env);
	s->txn = s->bdat_used = false;
	memset(&s->msg, 0, sizeof(s->msg));
}

void smtp_server_start(struct smtp_server *s)
{
	if (s->started || s->closing)
		return;
	s->started = true;
	/* RFC 2034 3: the greeting carries no enhanced status code */
	smtp_reply(s, "220 %s %s", s->hostname, s->greeting);
}

void smtp_server_refuse(struct smtp_server *s, const char *text)
{
	s->started = true;
	smtp_close(s, "421 4.7.0 %s %s", s->hostname,
		   text ? text : "Service not available, closing channel");
}

void smtp_server_timeout(struct smtp_server *s, const char *text)
{
	smtp_close(s, "421 4.4.2 %s %s", s->hostname,
		   text ? text : "Error: timeout exceeded");
}

/* Reads one command line; returns the octets used. */
static size_t cmd_input(struct smtp_server *s, const uint8_t *p, size_t n)
{
	const uint8_t *lf = memchr(p, '\n', n);
	size_t chunk = lf ? (size_t)(lf - p) : n;
	size_t len;

	/* max_cmd_line counts the terminator (RFC 5321 4.5.3.1.4) */
	if ((size_t)s->line_len + chunk + 1 > s->conf.max_cmd_line) {
		s->rx = SMTP_RX_CMD_SKIP;
		s->line_len = 0;
		return 0;
	}
	memcpy(s->line + s->line_len, p, chunk);
	s->line_len += (uint32_t)chunk;
	if (lf == NULL)
		return n;
	/* CRLF ends a command; a bare LF too (lenient, as Postfix is) */
	len = s->line_len;
	if (len > 0 && s->line[len - 1] == '\r')
		len--;
	s->line_len = 0;
	s->stats.commands++;
	if (s->auth_step != SMTP_AUTH_NONE)
		smtp_auth_line(s, s->line, len);
	else
		smtp_command(s, s->line, len);
	return chunk + 1;
}

static size_t skip_input(struct smtp_server *s, const uint8_t *p, size_t n)
{
	const uint8_t *lf = memchr(p, '\n', n);

	if (lf == NULL)
		return n;
	s->rx = SMTP_RX_CMD;
	s->stats.commands++;
	if (s->auth_step != SMTP_AUTH_NONE)
		smtp_auth_abort(s);
	else
		smtp_reply_err(s, "500 5.5.0 Line too long");
	return (size_t)(lf - p) + 1;
}

/* Runs input through the byte machines until it is used up or the
 * session must stop reading (pending, closing, STARTTLS). */
static size_t process(struct smtp_server *s, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && !s->pending && !s->auth_pending && !s->closing &&
	       !s->stop) {
		switch (s->rx) {
		case SMTP_RX_CMD:
			i += cmd_input(s, p + i, n - i);
			break;
		case SMTP_RX_CMD_SKIP:
			i += skip_input(s, p + i, n - i);
			break;
		case SMTP_RX_DATA:
			i += smtp_data_input(s, p + i, n - i);
			break;
		case SMTP_RX_BDAT:
			i += smtp_bdat_input(s, p + i, n - i);
			break;
		}
	}
	return i;
}

static void backlog_clear(struct smtp_server *s)
{
	free(s->bl);
	s->bl = NULL;
	s->bl_len = s->bl_cap = 0;
}

/* Inserts p[0..n) at the front (front) or the back of the backlog. */
static void backlog_add(struct smtp_server *s, const uint8_t *p, size_t n,
			bool front)
{
	uint64_t base = s->conf.max_message_size ? s->conf.max_message_size
						 : SMTP_BACKLOG_UNLIMITED;
	uint64_t limit = base > UINT64_MAX / 4 ? UINT64_MAX
					       : 2 * base + SMTP_BACKLOG_SLACK;

	if (n == 0 || s->closing)
		return;
	if (s->bl_len + n > limit) {
		LOG_RL(LOG_NOTICE, "smtp: %s: pipelined input over %llu octets "
		       "while blocked", s->env->client_addr,
		       (unsigned long long)limit);
		backlog_clear(s);
		smtp_close(s, "421 4.7.0 %s Error: too much pipelined input",
			   s->hostname);
		return;
	}
	if (s->bl_len + n > s->bl_cap) {
		size_t cap = s->bl_cap ? s->bl_cap : 4096;
		uint8_t *nb;

		while (cap < s->bl_len + n)
			cap *= 2;
		nb = realloc(s->bl, cap);
		if (nb == NULL) {
			backlog_clear(s);
			smtp_close(s, "421 4.3.0 %s Error: out of memory",
				   s->hostname);
			return;
		}
		s->bl = nb;
		s->bl_cap = cap;
	}
	if (front) {
		memmove(s->bl + n, s->bl, s->bl_len);
		memcpy(s->bl, p, n);
	} else {
		memcpy(s->bl + s->bl_len, p, n);
	}
	s->bl_len += n;
}

/* What process() left: kept while pending, dropped otherwise (closing,
 * or plaintext pipelined after STARTTLS: RFC 3207 5, CVE-2011-0411). */
static void leftover(struct smtp_server *s, const uint8_t *p, size_t n)
{
	if (s->stop || s->closing) {
		backlog_clear(s);
		return;
	}
	backlog_add(s, p, n, true);
}

/* process() and what it leaves */
static void run(struct smtp_server *s, const uint8_t *p, size_t n)
{
	size_t k = process(s, p, n);

	if (k < n)
		leftover(s, p + k, n - k);
	s->stop = false;
}

static void drain(struct smtp_server *s)
{
	s->busy = true;
	while (s->bl_len > 0 && !s->pending && !s->auth_pending &&
	       !s->closing) {
		uint8_t *buf = s->bl;
		size_t len = s->bl_len;

		/* take the buffer: process() may call back into us */
		s->bl = NULL;
		s->bl_len = s->bl_cap = 0;
		run(s, buf, len);
		free(buf);
	}
	if (s->closing)
		backlog_clear(s);
	s->busy = false;
}

void smtp_server_input(struct smtp_server *s, const uint8_t *data, size_t len)
{
	if (s->closing || len == 0)
		return;
	if (s->busy || s->pending || s->auth_pending || s->bl_len > 0) {
		backlog_add(s, data, len, false);
		if (!s->busy && !s->pending && !s->auth_pending)
			drain(s);
		return;
	}
	s->busy = true;
	run(s, data, len);
	s->busy = false;
	drain(s);
}

void smtp_server_set_reject(struct smtp_server *s, unsigned code,
			    const char *enh, const char *text)
{
	size_t n;

	s->custom_code = 0;
	if (code < 400 || code > 599 || enh == NULL || text == NULL ||
	    enh[0] != (char)('0' + code / 100) || strlen(enh) >= 12)
		return;
	for (const char *p = enh; *p; p++)
		if ((*p < '0' || *p > '9') && *p != '.')
			return;
	s->custom_code = (uint16_t)code;
	snprintf(s->custom_enh, sizeof(s->custom_enh), "%s", enh);
	n = strlen(text);
	if (n > 200)
		n = 200;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		s->custom_text[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	s->custom_text[n] = '\0';
}

void smtp_server_queued(struct smtp_server *s, int status, const char *qid)
{
	if (!s->pending)
		return;
	s->pending = false;
	if (s->closing)
		return;
	if (qid == NULL || qid[0] == '\0')
		qid = s->pending_qid;
	if (status == 0) {
		s->stats.messages++;
		if (qid[0] != '\0')
			smtp_reply(s, "250 2.0.0 Ok: queued as %s", qid);
		else
			smtp_reply(s, "250 2.0.0 Ok: queued");
	} else {
		s->stats.rejected_msgs++;
		if (status == -ENOSPC)
			smtp_reply(s, "452 4.3.1 Insufficient system storage");
		else
			smtp_reply(s, "451 4.3.0 Error: queue file write error");
	}
	if (!s->busy)
		drain(s);
}

enum smtp_phase smtp_server_phase(const struct smtp_server *s)
{
	if (s->closing)
		return SMTP_PHASE_CLOSING;
	if (s->pending || s->auth_pending)
		return SMTP_PHASE_PENDING;
	if (s->rx == SMTP_RX_DATA || s->rx == SMTP_RX_BDAT)
		return SMTP_PHASE_DATA;
	return SMTP_PHASE_COMMAND;
}

bool smtp_server_blocked(const struct smtp_server *s)
{
	return (s->pending || s->auth_pending) && !s->closing;
}

const struct smtp_server_stats *smtp_server_get_stats(const struct smtp_server *s)
{
	return &s->stats;
}

void smtp_server_set_tls(struct smtp_server *s)
{
	s->tls = true;
}

void smtp_server_set_policy(struct smtp_server *s,
			    const struct smtp_session_policy *p)
{
	s->pol = *p;
}

void smtp_server_auth_done(struct smtp_server *s, int status)
{
	if (!s->auth_pending)
		return;
	s->auth_pending = false;
	if (s->closing)
		return;
	smtp_auth_result(s, status);
	if (!s->busy)
		drain(s);
}

const char *smtp_server_auth_user(const struct smtp_server *s)
{
	return s->authed ? s->auth_user : "";
}
