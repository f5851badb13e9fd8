/*
 * smtp_client.c: one outbound SMTP session's life cycle and protocol
 * state machine: greeting, EHLO (HELO fallback), one message at a time
 * (MAIL, RCPT..., DATA, body, end of data; pipelined when offered),
 * RSET when a failed transaction was left open, QUIT, and every way a
 * connection fails.
 *
 * Owns: the session, the results of the message in flight (until
 * ops->done returns) and one data block buffer. The envelope is the
 * caller's. Never does I/O itself: bytes go out through ops->write, the
 * end through ops->close.
 */
#include "smtp/smtp_client_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 5321 4.5.3.2, in ms */
#define MIN_MS (60u * 1000u)

struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf,
				    const struct smtp_client_ops *ops,
				    void *user)
{
	struct smtp_client *c;

	if (conf->helo_name == NULL || conf->helo_name[0] == '\0')
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->conf = *conf;
	c->ops = *ops;
	c->user = user;
	if (c->conf.data_block < 16)
		c->conf.data_block = c->conf.data_block == 0 ?
			SMTP_CLIENT_DEFAULT_BLOCK : 16;
	c->helo_name = strdup(conf->helo_name);
	/* the block plus the CRLF and "." CRLF that may follow it */
	c->block = malloc(c->conf.data_block + 8);
	if (c->helo_name == NULL || c->block == NULL) {
		smtp_client_free(c);
		return NULL;
	}
	c->conf.helo_name = c->helo_name;
	c->stage = SMTP_CLIENT_GREETING;
	return c;
}

static void msg_free(struct smtp_client *c)
{
	free(c->res);
	free(c->rstate);
	c->res = NULL;
	c->rstate = NULL;
	c->nres = 0;
	c->env = NULL;
}

void smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	msg_free(c);
	free(c->block);
	free(c->helo_name);
	free(c);
}

void smtp_client_write(struct smtp_client *c, const void *p, size_t n)
{
	if (c->stage == SMTP_CLIENT_CLOSED || n == 0)
		return;
	c->stats.bytes_out += n;
	c->ops.write(c->user, p, n);
}

static void write_str(struct smtp_client *c, const char *s)
{
	smtp_client_write(c, s, strlen(s));
}

static void write_helo(struct smtp_client *c, const char *verb)
{
	char line[SMTP_CLIENT_MAX_LINE];
	int n = snprintf(line, sizeof(line), "%s %s\r\n", verb, c->helo_name);

	if (n > 0 && (size_t)n < sizeof(line))
		smtp_client_write(c, line, (size_t)n);
}

/* ------------------------------------------------------------- results */

static void set_final(struct smtp_client *c, uint32_t i,
		      const struct smtp_client_reply *r)
{
	unsigned cls = r->code / 100;

	c->res[i].reply = *r;
	c->res[i].status = cls == 2 ? SMTP_RCPT_DELIVERED :
		cls == 5 ? SMTP_RCPT_BOUNCED : SMTP_RCPT_DEFERRED;
	c->rstate[i] = SMTP_CR_FINAL;
}

/* Every recipient not yet final takes r. */
static void final_pending(struct smtp_client *c,
			  const struct smtp_client_reply *r)
{
	for (uint32_t i = 0; i < c->nres; i++)
		if (c->rstate[i] != SMTP_CR_FINAL)
			set_final(c, i, r);
}

static bool any_accepted(const struct smtp_client *c)
{
	for (uint32_t i = 0; i < c->nres; i++)
		if (c->rstate[i] == SMTP_CR_ACCEPTED)
			return true;
	return false;
}

/* Hands the results up and forgets the message. */
static void msg_done(struct smtp_client *c)
{
	struct smtp_client_msg m = {
		.env = c->env, .nrcpt = c->nres, .rcpt = c->res,
	};

	for (uint32_t i = 0; i < c->nres; i++) {
		assert(c->rstate[i] == SMTP_CR_FINAL);
		switch (c->res[i].status) {
		case SMTP_RCPT_DELIVERED:
			m.delivered++;
			break;
		case SMTP_RCPT_DEFERRED:
			m.deferred++;
			break;
		case SMTP_RCPT_BOUNCED:
			m.bounced++;
			break;
		}
	}
	c->stats.delivered += m.delivered;
	c->stats.deferred += m.deferred;
	c->stats.bounced += m.bounced;
	if (c->ops.done != NULL)
		c->ops.done(c->user, &m);
	msg_free(c);
}

/* ---------------------------------------------------------- transitions */

static void become_ready(struct smtp_client *c)
{
	c->stage = SMTP_CLIENT_READY;
	if (c->ops.ready != NULL)
		c->ops.ready(c->user);
}

static void finish_close(struct smtp_client *c, enum smtp_client_end end,
			 const struct smtp_client_reply *why)
{
	struct smtp_client_reply w = *why;

	c->stage = SMTP_CLIENT_CLOSED;
	if (c->ops.close != NULL)
		c->ops.close(c->user, end, &w);
}

/* After the message (if any) is reported: a host that still talks gets
 * QUIT (RFC 5321 3.1 after a 554 greeting); one that said 421, timed
 * out or talks garbage is just closed. */
static void host_fail(struct smtp_client *c, enum smtp_client_end end,
		      const struct smtp_client_reply *r, bool quit)
{
	if (c->env != NULL) {
		struct smtp_client_reply d = *r;

		/* not this recipient's fault: retry, maybe elsewhere */
		if (d.code / 100 != 4) {
			d.code = 451;
			d.enh[0] = '4';
		}
		final_pending(c, &d);
		msg_done(c);
	}
	if (quit) {
		c->end = end;
		c->end_why = *r;
		c->stage = SMTP_CLIENT_QUIT;
		write_str(c, "QUIT\r\n");
	} else {
		finish_close(c, end, r);
	}
}

void smtp_client_protocol_error(struct smtp_client *c, const char *what)
{
	struct smtp_client_reply r;
	char text[128];

	c->stats.protocol_errors++;
	snprintf(text, sizeof(text), "protocol error: %s (%s)", what,
		 smtp_client_stage_name(c->stage));
	smtp_client_local_reply(&r, c->stage, 451, "4.5.0", text);
	if (c->stage == SMTP_CLIENT_QUIT)
		finish_close(c, c->end, c->end == SMTP_CLIENT_END_QUIT ?
			     &r : &c->end_why);
	else
		host_fail(c, SMTP_CLIENT_END_HOST_TEMP, &r, false);
}

/* Transaction over with nothing open on the server: ready again; or
 * with MAIL accepted and no end of data: RSET first. */
static void txn_over(struct smtp_client *c, bool rset)
{
	msg_done(c);
	if (rset) {
		c->stats.rsets++;
		c->stage = SMTP_CLIENT_RSET;
		write_str(c, "RSET\r\n");
	} else {
		become_ready(c);
	}
}

static void send_rcpt(struct smtp_client *c)
{
	struct smtp_cbuf b = { 0 };

	if (smtp_client_fmt_rcpt(c, c->rcpt_sent, &b) < 0) {
		struct smtp_client_reply r;

		free(b.p);
		smtp_client_local_reply(&r, SMTP_CLIENT_RCPT, 451, "4.3.0",
					"out of memory");
		host_fail(c, SMTP_CLIENT_END_HOST_TEMP, &r, true);
		return;
	}
	c->rcpt_sent++;
	smtp_client_write(c, b.p, b.len);
	free(b.p);
}

static void start_body(struct smtp_client *c)
{
	if (smtp_client_body_block(c))
		c->stage = SMTP_CLIENT_DATA_END;
	else
		c->stage = SMTP_CLIENT_DATA_BLOCK;
}

/* ---------------------------------------------------------- the replies */

static void on_rcpt(struct smtp_client *c, const struct smtp_client_reply *r)
{
	uint32_t i = c->rcpt_replied++;
	unsigned cls = r->code / 100;

	if (cls == 3) {
		smtp_client_protocol_error(c, "unexpected reply");
		return;
	}
	/* after a refused MAIL the RCPT replies (503) say nothing new */
	if (!c->mail_failed) {
		if (cls == 2)
			c->rstate[i] = SMTP_CR_ACCEPTED;
		else
			set_final(c, i, r);
	}
	if (c->rcpt_replied < c->nres) {
		if (!c->pipelining)
			send_rcpt(c);
		return;
	}
	if (c->pipelining) {
		c->stage = SMTP_CLIENT_DATA; /* DATA went with the RCPTs */
	} else if (any_accepted(c)) {
		c->stage = SMTP_CLIENT_DATA;
		write_str(c, "DATA\r\n");
	} else {
		txn_over(c, true);
	}
}

static void on_mail(struct smtp_client *c, const struct smtp_client_reply *r)
{
	unsigned cls = r->code / 100;

	if (cls == 3) {
		smtp_client_protocol_error(c, "unexpected reply");
		return;
	}
	if (cls == 2) {
		c->mail_ok = true;
	} else {
		c->mail_failed = true;
		final_pending(c, r);
		if (!c->pipelining) {
			txn_over(c, false);
			return;
		}
	}
	c->stage = SMTP_CLIENT_RCPT;
	if (!c->pipelining)
		send_rcpt(c);
}

static void on_data(struct smtp_client *c, const struct smtp_client_reply *r)
{
	unsigned cls = r->code / 100;

	if (cls == 2) {
		smtp_client_protocol_error(c, "unexpected reply");
	} else if (cls == 3) {
		if (any_accepted(c)) {
			start_body(c);
		} else {
			/* RFC 2920 3.1: a 354 with no recipient accepted
			 * gets an empty message, whose reply means nothing */
			c->empty_data = true;
			c->stage = SMTP_CLIENT_DATA_END;
			write_str(c, ".\r\n");
		}
	} else {
		final_pending(c, r);
		txn_over(c, c->mail_ok);
	}
}

static void on_data_end(struct smtp_client *c,
			const struct smtp_client_reply *r)
{
	if (r->code / 100 == 3) {
		smtp_client_protocol_error(c, "unexpected reply");
		return;
	}
	if (!c->empty_data)
		final_pending(c, r);
	txn_over(c, false);
}

void smtp_client_reply_done(struct smtp_client *c)
{
	const struct smtp_client_reply *r = &c->rx.r;
	unsigned cls = r->code / 100;

	/* RFC 3207 4.2 (the client side of CVE-2011-0411): cleartext
	 * after "220 Ready to start TLS" is never believed */
	if (c->stage == SMTP_CLIENT_STARTTLS && c->tls_wait)
		return;
	if (c->stage == SMTP_CLIENT_QUIT) {
		if (c->end == SMTP_CLIENT_END_QUIT)
			finish_close(c, SMTP_CLIENT_END_QUIT, r);
		else
			finish_close(c, c->end, &c->end_why);
		return;
	}
	/* RFC 5321 3.8: 421 may come in answer to anything */
	if (r->code == 421) {
		host_fail(c, SMTP_CLIENT_END_HOST_TEMP, r, false);
		return;
	}
	switch (c->stage) {
	case SMTP_CLIENT_GREETING:
		if (cls == 2) {
			c->stage = SMTP_CLIENT_EHLO;
			write_helo(c, "EHLO");
		} else if (cls == 3) {
			smtp_client_protocol_error(c, "unexpected reply");
		} else {
			host_fail(c, cls == 5 ? SMTP_CLIENT_END_HOST_PERM :
				  SMTP_CLIENT_END_HOST_TEMP, r, true);
		}
		break;
	case SMTP_CLIENT_EHLO:
		if (cls == 2) {
			c->esmtp = true;
			become_ready(c);
			break;
		}
		memset(&c->caps, 0, sizeof(c->caps));
		if (cls == 5) {
			c->stats.helo_fallbacks++;
			c->stage = SMTP_CLIENT_HELO;
			write_helo(c, "HELO");
		} else if (cls == 3) {
			smtp_client_protocol_error(c, "unexpected reply");
		} else {
			host_fail(c, SMTP_CLIENT_END_HOST_TEMP, r, true);
		}
		break;
	case SMTP_CLIENT_HELO:
		if (cls == 2)
			become_ready(c);
		else if (cls == 3)
			smtp_client_protocol_error(c, "unexpected reply");
		else
			host_fail(c, cls == 5 ? SMTP_CLIENT_END_HOST_PERM :
				  SMTP_CLIENT_END_HOST_TEMP, r, true);
		break;
	case SMTP_CLIENT_MAIL:
		on_mail(c, r);
		break;
	case SMTP_CLIENT_RCPT:
		on_rcpt(c, r);
		break;
	case SMTP_CLIENT_DATA:
		on_data(c, r);
		break;
	case SMTP_CLIENT_DATA_END:
		on_data_end(c, r);
		break;
	case SMTP_CLIENT_RSET:
		if (cls == 2) {
			become_ready(c);
		} else {
			c->stats.protocol_errors++;
			host_fail(c, SMTP_CLIENT_END_HOST_TEMP, r, true);
		}
		break;
	case SMTP_CLIENT_STARTTLS:
		if (r->code == 220) {
			c->tls_wait = true;
			c->ops.starttls(c->user, r);
		} else if (cls == 3 || cls == 2) {
			smtp_client_protocol_error(c, "unexpected reply");
		} else {
			c->ops.starttls(c->user, r);
			if (c->stage == SMTP_CLIENT_STARTTLS)
				become_ready(c);
		}
		break;
	case SMTP_CLIENT_READY:
	case SMTP_CLIENT_DATA_BLOCK:
		smtp_client_protocol_error(c, "reply not due");
		break;
	case SMTP_CLIENT_QUIT:
	case SMTP_CLIENT_CLOSED:
		break;
	}
}

/* ------------------------------------------------------------- the API */

void smtp_client_input(struct smtp_client *c, const uint8_t *data,
		       size_t len)
{
	if (c->stage == SMTP_CLIENT_CLOSED)
		return;
	smtp_client_rx(c, data, len);
}

/* An address that would break the command line it goes on (the
 * server's parser never lets one in; this guards other sources). */
static bool addr_unsafe(const char *a)
{
	for (; *a != '\0'; a++)
		if ((unsigned char)*a < 0x20 || *a == 0x7f || *a == '<' ||
		    *a == '>')
			return true;
	return false;
}

static bool any_addr_unsafe(const struct smtp_client *c)
{
	if (addr_unsafe(c->env->mail_from))
		return true;
	for (uint32_t i = 0; i < c->nres; i++)
		if (addr_unsafe(c->env->rcpt[c->res[i].idx].addr))
			return true;
	return false;
}

/* What this engine decides before saying anything (see the header). */
static bool refuse_locally(struct smtp_client *c)
{
	const struct envelope *e = c->env;
	struct smtp_client_reply r;
	uint32_t f = c->caps.flags;

	if (any_addr_unsafe(c))
		smtp_client_local_reply(&r, SMTP_CLIENT_MAIL, 553, "5.1.3",
			"address with control characters or angle brackets");
	else if (e->smtputf8 && !(f & SMTP_CAP_SMTPUTF8))
		smtp_client_local_reply(&r, SMTP_CLIENT_MAIL, 553, "5.6.7",
			"SMTPUTF8 is required, but was not offered by the host");
	else if (e->body_type == ENV_BODY_BINARYMIME)
		smtp_client_local_reply(&r, SMTP_CLIENT_MAIL, 554, "5.6.3",
			"BINARYMIME message cannot be relayed by this client");
	else if (!(f & SMTP_CAP_8BITMIME) && smtp_client_body_8bit(e))
		smtp_client_local_reply(&r, SMTP_CLIENT_MAIL, 554, "5.6.3",
			"8-bit message, but 8BITMIME was not offered by the host");
	else if ((f & SMTP_CAP_SIZE) && c->caps.size > 0 &&
		 e->body_len > c->caps.size)
		smtp_client_local_reply(&r, SMTP_CLIENT_MAIL, 552, "5.3.4",
			"message size exceeds the host's fixed limit");
	else
		return false;
	final_pending(c, &r);
	msg_done(c);
	return true;
}

int smtp_client_send(struct smtp_client *c, const struct envelope *env,
		     const uint32_t *idx, uint32_t n)
{
	struct smtp_cbuf b = { 0 };
	int rc = 0;

	if (c->stage != SMTP_CLIENT_READY)
		return -EBUSY;
	if (n == 0)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (idx[i] >= env->nrcpt)
			return -EINVAL;
	c->res = calloc(n, sizeof(*c->res));
	c->rstate = calloc(n, sizeof(*c->rstate));
	if (c->res == NULL || c->rstate == NULL) {
		msg_free(c);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++)
		c->res[i].idx = idx[i];
	c->env = env;
	c->nres = n;
	c->rcpt_sent = c->rcpt_replied = 0;
	c->mail_ok = c->mail_failed = c->data_sent = false;
	c->empty_data = c->body_done = false;
	c->body_pos = 0;
	c->body_bol = true;
	c->pipelining = (c->caps.flags & SMTP_CAP_PIPELINING) &&
		!c->conf.no_pipelining;
	c->stats.messages++;
	if (refuse_locally(c))
		return 1;

	rc = smtp_client_fmt_mail(c, &b);
	/* RFC 2920 3.1: MAIL, every RCPT and DATA in one group */
	for (uint32_t i = 0; c->pipelining && rc == 0 && i < n; i++) {
		rc = smtp_client_fmt_rcpt(c, i, &b);
		c->rcpt_sent++;
	}
	if (c->pipelining && rc == 0) {
		rc = smtp_cbuf_add(&b, "DATA\r\n", 6);
		c->data_sent = true;
	}
	if (rc < 0) {
		free(b.p);
		msg_free(c);
		c->stats.messages--;
		return -ENOMEM;
	}
	c->stage = SMTP_CLIENT_MAIL;
	smtp_client_write(c, b.p, b.len);
	free(b.p);
	return 0;
}

int smtp_client_starttls(struct smtp_client *c)
{
	if (c->stage != SMTP_CLIENT_READY)
		return -EBUSY;
	if (c->tls || c->ops.starttls == NULL ||
	    !(c->caps.flags & SMTP_CAP_STARTTLS))
		return -EOPNOTSUPP;
	c->stage = SMTP_CLIENT_STARTTLS;
	write_str(c, "STARTTLS\r\n");
	return 0;
}

void smtp_client_tls_up(struct smtp_client *c)
{
	if (c->stage != SMTP_CLIENT_STARTTLS || !c->tls_wait)
		return;
	c->tls_wait = false;
	c->tls = true;
	c->esmtp = false;
	memset(&c->caps, 0, sizeof(c->caps));
	c->stage = SMTP_CLIENT_EHLO;
	write_helo(c, "EHLO");
}

bool smtp_client_tls_on(const struct smtp_client *c)
{
	return c->tls;
}

int smtp_client_quit(struct smtp_client *c)
{
	if (c->stage != SMTP_CLIENT_READY)
		return -EBUSY;
	c->end = SMTP_CLIENT_END_QUIT;
	c->stage = SMTP_CLIENT_QUIT;
	write_str(c, "QUIT\r\n");
	return 0;
}

uint32_t smtp_client_timeout_ms(const struct smtp_client *c)
{
	switch (c->stage) {
	case SMTP_CLIENT_DATA:
		return 2 * MIN_MS;
	case SMTP_CLIENT_DATA_BLOCK:
		return 3 * MIN_MS;
	case SMTP_CLIENT_DATA_END:
		return 10 * MIN_MS;
	case SMTP_CLIENT_READY:
	case SMTP_CLIENT_CLOSED:
		return 0;
	default:
		return 5 * MIN_MS;
	}
}

static void fail_now(struct smtp_client *c, const char *what)
{
	struct smtp_client_reply r;
	char text[96];

	if (c->stage == SMTP_CLIENT_QUIT && c->end != SMTP_CLIENT_END_QUIT) {
		finish_close(c, c->end, &c->end_why);
		return;
	}
	snprintf(text, sizeof(text), "%s (%s)", what,
		 smtp_client_stage_name(c->stage));
	smtp_client_local_reply(&r, c->stage, 451, "4.4.2", text);
	if (c->stage == SMTP_CLIENT_QUIT)
		finish_close(c, SMTP_CLIENT_END_QUIT, &r);
	else
		host_fail(c, SMTP_CLIENT_END_HOST_TEMP, &r, false);
}

void smtp_client_timeout(struct smtp_client *c)
{
	if (c->stage == SMTP_CLIENT_READY || c->stage == SMTP_CLIENT_CLOSED)
		return;
	c->stats.timeouts++;
	fail_now(c, "timeout");
}

void smtp_client_lost(struct smtp_client *c)
{
	if (c->stage == SMTP_CLIENT_CLOSED)
		return;
	if (c->stage == SMTP_CLIENT_READY) {
		struct smtp_client_reply r;

		smtp_client_local_reply(&r, c->stage, 451, "4.4.2",
					"lost connection (idle)");
		finish_close(c, SMTP_CLIENT_END_HOST_TEMP, &r);
		return;
	}
	fail_now(c, "lost connection");
}

void smtp_client_drained(struct smtp_client *c)
{
	if (c->stage == SMTP_CLIENT_DATA_BLOCK && smtp_client_body_block(c))
		c->stage = SMTP_CLIENT_DATA_END;
}

enum smtp_client_stage smtp_client_stage(const struct smtp_client *c)
{
	return c->stage;
}

const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c)
{
	return &c->caps;
}

const struct smtp_client_stats *smtp_client_get_stats(const struct smtp_client *c)
{
	return &c->stats;
}
