/*
 * smtp_cmd.c: the SMTP commands (RFC 5321 4.1.1 and the ESMTP
 * extensions), one handler each, wired through one table that says
 * before which protocol state each command may run. Parsing of the
 * arguments is smtp_parse.c's; this file decides the replies.
 *
 * Every bad command (syntax, sequence, unknown) goes through
 * smtp_reply_err so it counts towards max_errors; policy answers
 * (rejected recipients, SIZE too big) do not.
 */
#include "smtp/smtp_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_parse.h"

/* At most this many esmtp-params on one MAIL or RCPT. */
#define SMTP_MAX_PARAMS 16

typedef void smtp_cmd_fn(struct smtp_server *s, const char *arg, size_t len);

enum {
	CMD_NEED_HELO = 1u << 0, /* 503 before HELO/EHLO */
	CMD_NO_ARG = 1u << 1,    /* "VERB" CRLF only, else 501 */
	CMD_CHUNKING = 1u << 2,  /* unknown unless CHUNKING is on */
	CMD_PRE_TLS = 1u << 3,   /* allowed before TLS where it is required */
};

struct smtp_cmd_def {
	const char *name;
	unsigned flags;
	smtp_cmd_fn *fn;
};

static void reply_nomem(struct smtp_server *s)
{
	smtp_reply(s, "452 4.3.1 Insufficient system storage");
}

static bool has_ctl(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/* ehlo = "EHLO" SP ( Domain / address-literal ) CRLF; any word is taken
 * (as Postfix does), but it must be there and free of control bytes. */
static bool helo_common(struct smtp_server *s, const char *arg, size_t len,
			const char *verb, bool esmtp)
{
	if (len == 0 || has_ctl(arg, len)) {
		smtp_reply_err(s, "501 5.5.4 Syntax: %s hostname", verb);
		return false;
	}
	/* RFC 5321 4.1.4: EHLO/HELO clear the transaction and buffers */
	smtp_txn_reset(s);
	if (envelope_set_str(&s->env->helo, arg, len) != 0) {
		reply_nomem(s);
		return false;
	}
	s->helo = true;
	s->env->esmtp = esmtp;
	return true;
}

static void cmd_helo(struct smtp_server *s, const char *arg, size_t len)
{
	/* RFC 2034 3: no enhanced code on the HELO/EHLO response */
	if (helo_common(s, arg, len, "HELO", false))
		smtp_reply(s, "250 %s", s->hostname);
}

static void cmd_ehlo(struct smtp_server *s, const char *arg, size_t len)
{
	char lines[12][96];
	int n = 0;

	if (!helo_common(s, arg, len, "EHLO", true))
		return;
	snprintf(lines[n++], sizeof(lines[0]), "%.90s", s->hostname);
	if (s->conf.pipelining)
		snprintf(lines[n++], sizeof(lines[0]), "PIPELINING");
	if (s->conf.max_message_size != 0)
		snprintf(lines[n++], sizeof(lines[0]), "SIZE %llu",
			 (unsigned long long)s->conf.max_message_size);
	else
		snprintf(lines[n++], sizeof(lines[0]), "SIZE");
	if (s->ops.starttls != NULL && !s->tls)
		snprintf(lines[n++], sizeof(lines[0]), "STARTTLS");
	if (s->ops.auth != NULL && !s->authed &&
	    (s->tls || s->pol.auth_plaintext))
		snprintf(lines[n++], sizeof(lines[0]), "AUTH %.80s",
			 s->conf.auth_mechs ? s->conf.auth_mechs : "PLAIN");
	snprintf(lines[n++], sizeof(lines[0]), "ENHANCEDSTATUSCODES");
	if (s->conf.eightbitmime)
		snprintf(lines[n++], sizeof(lines[0]), "8BITMIME");
	if (s->conf.binarymime)
		snprintf(lines[n++], sizeof(lines[0]), "BINARYMIME");
	if (s->conf.dsn)
		snprintf(lines[n++], sizeof(lines[0]), "DSN");
	if (s->conf.smtputf8)
		snprintf(lines[n++], sizeof(lines[0]), "SMTPUTF8");
	if (s->conf.chunking)
		snprintf(lines[n++], sizeof(lines[0]), "CHUNKING");
	for (int i = 0; i < n; i++)
		smtp_reply(s, "250%c%s", i + 1 < n ? '-' : ' ', lines[i]);
}

/* "FROM:" / "TO:" then the path; a space after the colon is a common
 * client bug that Postfix accepts, so do we. */
static bool path_prefix(const char **arg, size_t *len, const char *kw)
{
	size_t k = strlen(kw);

	if (*len < k || !smtp_word_eq(*arg, k, kw))
		return false;
	*arg += k;
	*len -= k;
	while (*len > 0 && **arg == ' ') {
		(*arg)++;
		(*len)--;
	}
	return true;
}

static void reply_verdict(struct smtp_server *s, enum smtp_verdict v,
			  const char *addr, bool sender)
{
	const char *who = sender ? "Sender" : "Recipient";

	switch (v) {
	case SMTP_OK:
		break;
	case SMTP_REJECT_NO_USER:
		smtp_reply(s, "550 %s <%s>: %s address rejected: User unknown",
			   sender ? "5.1.0" : "5.1.1", addr, who);
		break;
	case SMTP_REJECT_RELAY:
		smtp_reply(s, "554 5.7.1 <%s>: Relay access denied", addr);
		break;
	case SMTP_REJECT_POLICY:
		smtp_reply(s, "550 5.7.1 <%s>: %s address rejected by policy",
			   addr, who);
		break;
	case SMTP_TEMPFAIL:
		smtp_reply(s, "451 4.3.0 <%s>: Temporary lookup failure", addr);
		break;
	case SMTP_REJECT_CUSTOM:
		if (s->custom_code >= 400 && s->custom_code < 600)
			smtp_reply(s, "%u %s <%s>: %s", s->custom_code,
				   s->custom_enh, addr, s->custom_text);
		else
			smtp_reply(s, "550 5.7.1 <%s>: %s address rejected "
				   "by policy", addr, who);
		s->custom_code = 0;
		break;
	case SMTP_TEMPFAIL_STORAGE:
	default:
		reply_nomem(s);
		break;
	}
}

struct mail_params {
	uint64_t size;
	uint8_t body, ret;
	bool utf8;
	char envid[SMTP_MAX_ENVID + 1];
};

static bool bad_param(struct smtp_server *s, const struct smtp_param *pm,
		      const char *what)
{
	smtp_reply_err(s, "555 5.5.4 %s %.*s parameter", what,
		       (int)pm->key_len, pm->key);
	return false;
}

static bool unsupported(struct smtp_server *s, const struct smtp_param *pm)
{
	smtp_reply_err(s, "555 5.5.4 Unsupported option: %.*s",
		       (int)pm->key_len, pm->key);
	return false;
}

/* Mail-parameters: SIZE (1870), BODY (6152, 3030), SMTPUTF8 (6531),
 * RET and ENVID (3461), AUTH (4954, accepted and ignored). */
static bool mail_params(struct smtp_server *s, const struct smtp_param *pm,
			int n, struct mail_params *mp)
{
	unsigned seen = 0;

	memset(mp, 0, sizeof(*mp));
	for (int i = 0; i < n; i++, pm++) {
		const char *k = pm->key, *v = pm->val;
		size_t kl = pm->key_len, vl = pm->val_len;
		unsigned bit;

		if (!s->env->esmtp)
			return unsupported(s, pm);
		if (smtp_word_eq(k, kl, "SIZE")) {
			bit = 1;
			if (!pm->has_val || smtp_parse_size(v, vl, &mp->size) != 0)
				return bad_param(s, pm, "Bad");
		} else if (smtp_word_eq(k, kl, "BODY") && s->conf.eightbitmime) {
			bit = 2;
			if (pm->has_val && smtp_word_eq(v, vl, "7BIT"))
				mp->body = ENV_BODY_7BIT;
			else if (pm->has_val && smtp_word_eq(v, vl, "8BITMIME"))
				mp->body = ENV_BODY_8BITMIME;
			else if (pm->has_val && s->conf.binarymime &&
				 smtp_word_eq(v, vl, "BINARYMIME"))
				mp->body = ENV_BODY_BINARYMIME;
			else
				return bad_param(s, pm, "Bad");
		} else if (smtp_word_eq(k, kl, "SMTPUTF8") && s->conf.smtputf8) {
			bit = 4;
			if (pm->has_val)
				return bad_param(s, pm, "Bad");
			mp->utf8 = true;
		} else if (smtp_word_eq(k, kl, "RET") && s->conf.dsn) {
			bit = 8;
			if (pm->has_val && smtp_word_eq(v, vl, "FULL"))
				mp->ret = ENV_RET_FULL;
			else if (pm->has_val && smtp_word_eq(v, vl, "HDRS"))
				mp->ret = ENV_RET_HDRS;
			else
				return bad_param(s, pm, "Bad");
		} else if (smtp_word_eq(k, kl, "ENVID") && s->conf.dsn) {
			bit = 16;
			if (!pm->has_val || vl > SMTP_MAX_ENVID ||
			    smtp_xtext_decode(v, vl, mp->envid,
					      sizeof(mp->envid), false) < 0)
				return bad_param(s, pm, "Bad");
		} else if (smtp_word_eq(k, kl, "AUTH") && s->ops.auth != NULL) {
			bit = 32;
			if (!pm->has_val || smtp_xtext_decode(v, vl, s->scratch,
					s->conf.max_cmd_line + 1u, true) < 0)
				return bad_param(s, pm, "Bad");
		} else {
			return unsupported(s, pm);
		}
		if (seen & bit)
			return bad_param(s, pm, "Duplicate");
		seen |= bit;
	}
	return true;
}

/* mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF */
static void cmd_mail(struct smtp_server *s, const char *arg, size_t len)
{
	struct smtp_param pm[SMTP_MAX_PARAMS];
	struct mail_params mp;
	struct smtp_path path;
	struct envelope *e = s->env;
	enum smtp_verdict v = SMTP_OK;
	const char *rest;
	int rc, n;

	if (s->txn) {
		smtp_reply_err(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	/* RFC 4954 6, RFC 6409 4.3: submission needs AUTH first */
	if (s->pol.auth_required && !s->authed) {
		smtp_reply_err(s, "530 5.7.0 Authentication required");
		return;
	}
	if (!path_prefix(&arg, &len, "FROM:") ||
	    (rc = smtp_parse_path(arg, len, &path)) == SMTP_PARSE_SYNTAX) {
		smtp_reply_err(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	rest = arg + path.end;
	if (rc != SMTP_PARSE_OK || path.postmaster ||
	    (path.end < len && *rest != ' ')) {
		smtp_reply_err(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	n = smtp_parse_params(rest, len - path.end, pm, SMTP_MAX_PARAMS);
	if (n < 0) {
		smtp_reply_err(s, "555 5.5.4 Invalid parameter syntax");
		return;
	}
	if (!mail_params(s, pm, n, &mp))
		return;
	/* RFC 6531 3.4: UTF-8 addresses only with SMTPUTF8 */
	if (path.utf8 && !mp.utf8) {
		smtp_reply_err(s, "553 5.6.7 Must declare SMTPUTF8 to send "
			       "unicode address");
		return;
	}
	/* RFC 1870 6: a declared size over the limit is refused up front */
	if (s->conf.max_message_size != 0 && mp.size > s->conf.max_message_size) {
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (envelope_set_str(&e->mail_from, arg + path.addr_off,
			     path.addr_len) != 0 ||
	    envelope_set_str(&e->envid, mp.envid, SIZE_MAX) != 0) {
		envelope_reset_txn(e);
		reply_nomem(s);
		return;
	}
	e->declared_size = mp.size;
	e->body_type = mp.body;
	e->ret = mp.ret;
	e->smtputf8 = mp.utf8;
	if (s->ops.mail != NULL)
		v = s->ops.mail(s->user, e);
	if (v != SMTP_OK) {
		reply_verdict(s, v, e->mail_from, true);
		envelope_reset_txn(e);
		return;
	}
	s->txn = true;
	smtp_reply(s, "250 2.1.0 Ok");
}

/* RCPT parameters: NOTIFY and ORCPT (RFC 3461 4.1, 4.2). The decoded
 * ORCPT is left in s->scratch. */
static bool rcpt_params(struct smtp_server *s, const struct smtp_param *pm,
			int n, uint8_t *notify, bool *orcpt)
{
	*notify = 0;
	*orcpt = false;
	for (int i = 0; i < n; i++, pm++) {
		const char *v = pm->val, *semi;
		size_t vl = pm->val_len, tl;

		if (!s->env->esmtp)
			return unsupported(s, pm);
		if (smtp_word_eq(pm->key, pm->key_len, "NOTIFY") && s->conf.dsn) {
			if (*notify != 0)
				return bad_param(s, pm, "Duplicate");
			if (!pm->has_val || smtp_parse_notify(v, vl, notify) != 0)
				return bad_param(s, pm, "Bad");
		} else if (smtp_word_eq(pm->key, pm->key_len, "ORCPT") &&
			   s->conf.dsn) {
			/* orcpt-parameter = "ORCPT=" addr-type ";" xtext */
			if (*orcpt)
				return bad_param(s, pm, "Duplicate");
			if (!pm->has_val || vl > SMTP_MAX_ORCPT ||
			    (semi = memchr(v, ';', vl)) == NULL)
				return bad_param(s, pm, "Bad");
			tl = (size_t)(semi - v);
			if (tl == 0 || !smtp_domain_valid(v, tl, false) ||
			    memchr(v, '.', tl) != NULL)
				return bad_param(s, pm, "Bad");
			memcpy(s->scratch, v, tl + 1);
			if (smtp_xtext_decode(semi + 1, vl - tl - 1,
					      s->scratch + tl + 1,
					      s->conf.max_cmd_line - tl,
					      s->env->smtputf8) <= 0)
				return bad_param(s, pm, "Bad");
			*orcpt = true;
		} else {
			return unsupported(s, pm);
		}
	}
	return true;
}

/* rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
 *        Forward-path ) [SP Rcpt-parameters] CRLF */
static void cmd_rcpt(struct smtp_server *s, const char *arg, size_t len)
{
	struct smtp_param pm[SMTP_MAX_PARAMS];
	struct smtp_path path;
	struct envelope *e = s->env;
	char addr[SMTP_MAX_CMD_LINE_CAP + 1];
	enum smtp_verdict v = SMTP_OK;
	const char *rest;
	uint8_t notify;
	bool orcpt;
	int rc, n;

	if (!s->txn) {
		smtp_reply_err(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (!path_prefix(&arg, &len, "TO:") ||
	    (rc = smtp_parse_path(arg, len, &path)) == SMTP_PARSE_SYNTAX) {
		smtp_reply_err(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	rest = arg + path.end;
	if (rc != SMTP_PARSE_OK || path.null_path ||
	    (path.end < len && *rest != ' ')) {
		smtp_reply_err(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	n = smtp_parse_params(rest, len - path.end, pm, SMTP_MAX_PARAMS);
	if (n < 0) {
		smtp_reply_err(s, "555 5.5.4 Invalid parameter syntax");
		return;
	}
	if (path.utf8 && !e->smtputf8) {
		smtp_reply_err(s, "553 5.6.7 Must declare SMTPUTF8 to send "
			       "unicode address");
		return;
	}
	if (!rcpt_params(s, pm, n, &notify, &orcpt))
		return;
	memcpy(addr, arg + path.addr_off, path.addr_len);
	addr[path.addr_len] = '\0';
	/* A recipient given twice is delivered once (as Postfix's cleanup
	 * does); the first one's DSN parameters stand. */
	for (uint32_t i = 0; i < e->nrcpt; i++)
		if (strcasecmp(e->rcpt[i].addr, addr) == 0) {
			smtp_reply(s, "250 2.1.5 Ok");
			return;
		}
	/* RFC 5321 4.5.3.1.8: 452 past the limit; the client retries them */
	if (e->nrcpt >= s->conf.max_recipients) {
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (s->ops.rcpt != NULL)
		v = s->ops.rcpt(s->user, e, addr);
	if (v != SMTP_OK) {
		s->stats.rejected_rcpts++;
		reply_verdict(s, v, addr, false);
		return;
	}
	if (envelope_add_rcpt(e, addr, orcpt ? s->scratch : NULL, notify) != 0) {
		reply_nomem(s);
		return;
	}
	smtp_reply(s, "250 2.1.5 Ok");
}

/* data = "DATA" CRLF */
static void cmd_data(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	if (!s->txn) {
		smtp_reply_err(s, "503 5.5.1 Error: need MAIL command");
	} else if (s->bdat_used) {
		/* RFC 3030 2: DATA and BDAT are not mixed in a transaction */
		smtp_reply_err(s, "503 5.5.1 Error: DATA after BDAT");
	} else if (s->env->nrcpt == 0) {
		smtp_reply(s, "554 5.5.1 Error: no valid recipients");
	} else if (s->env->body_type == ENV_BODY_BINARYMIME) {
		smtp_reply_err(s, "503 5.5.1 Error: BINARYMIME requires BDAT");
	} else {
		smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
		smtp_msg_begin(s);
		s->rx = SMTP_RX_DATA;
	}
}

static void bdat_fail(struct smtp_server *s, bool counts, const char *text)
{
	s->bdat_skip = true;
	s->bdat_err_counts = counts;
	snprintf(s->bdat_err, sizeof(s->bdat_err), "%s", text);
}

/* bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF. The chunk is
 * read even when refused: it is not commands (RFC 3030 4). */
static void cmd_bdat(struct smtp_server *s, const char *arg, size_t len)
{
	uint64_t size;
	bool last;

	if (smtp_parse_bdat(arg, len, &size, &last) != 0) {
		smtp_reply_err(s, "501 5.5.4 Syntax: BDAT count [LAST]");
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_skip = false;
	s->rx = SMTP_RX_BDAT;
	if (!s->txn) {
		bdat_fail(s, true, "503 5.5.1 Error: need MAIL command");
	} else if (s->env->nrcpt == 0) {
		bdat_fail(s, false, "554 5.5.1 Error: no valid recipients");
	} else if (!s->bdat_used) {
		s->bdat_used = true;
		smtp_msg_begin(s);
	}
	s->bdat_size = size;
	if (size == 0)
		smtp_bdat_chunk_end(s);
}

/* rset = "RSET" CRLF */
static void cmd_rset(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	smtp_txn_reset(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

/* noop = "NOOP" [ SP String ] CRLF */
static void cmd_noop(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	smtp_reply(s, "250 2.0.0 Ok");
}

/* quit = "QUIT" CRLF; arguments tolerated: the client is leaving */
static void cmd_quit(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	smtp_close(s, "221 2.0.0 Bye");
}

/* vrfy = "VRFY" SP String CRLF; expn likewise. Never tells who exists
 * (RFC 5321 3.5.3: 252). */
static void vrfy_expn(struct smtp_server *s, size_t len, const char *verb,
		      const char *what)
{
	if (len == 0)
		smtp_reply_err(s, "501 5.5.4 Syntax: %s address", verb);
	else if (s->conf.vrfy == SMTP_VRFY_502)
		smtp_reply(s, "502 5.5.1 %s command is disabled", verb);
	else
		smtp_reply(s, "252 2.0.0 Cannot %s %s, but will accept message "
			   "and attempt delivery", verb, what);
}

static void cmd_vrfy(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	vrfy_expn(s, len, "VRFY", "user");
}

static void cmd_expn(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	vrfy_expn(s, len, "EXPN", "list");
}

/* help = "HELP" [ SP String ] CRLF */
static void cmd_help(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	smtp_reply(s, "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA%s RSET "
		   "NOOP QUIT VRFY EXPN HELP%s%s",
		   s->conf.chunking ? " BDAT" : "",
		   s->ops.starttls ? " STARTTLS" : "",
		   s->ops.auth ? " AUTH" : "");
	smtp_reply(s, "214 2.0.0 End of HELP info");
}

/* STARTTLS = "STARTTLS" CRLF (RFC 3207 4). */
static void cmd_starttls(struct smtp_server *s, const char *arg, size_t len)
{
	(void)arg;
	(void)len;
	if (s->ops.starttls == NULL) {
		smtp_reply_err(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->tls) {
		smtp_reply_err(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (s->txn) {
		smtp_reply_err(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	if (s->ops.starttls(s->user) < 0) {
		/* the client now speaks TLS; nothing sensible can follow */
		s->closing = true;
		s->ops.close(s->user);
		return;
	}
	/* RFC 3207 4.2: forget everything learnt before TLS, including
	 * plaintext pipelined after the command (CVE-2011-0411) */
	smtp_txn_reset(s);
	envelope_set_str(&s->env->helo, "", 0);
	s->env->esmtp = false;
	s->helo = s->authed = false;
	s->auth_user[0] = '\0';
	s->tls = true;
	s->stop = true;
}

/* auth = "AUTH" SP sasl-mech [SP initial-response] CRLF: smtp_auth.c */
static void cmd_auth(struct smtp_server *s, const char *arg, size_t len)
{
	smtp_auth_command(s, arg, len);
}

static const struct smtp_cmd_def smtp_cmds[] = {
	{ "HELO", CMD_PRE_TLS, cmd_helo },
	{ "EHLO", CMD_PRE_TLS, cmd_ehlo },
	{ "MAIL", CMD_NEED_HELO, cmd_mail },
	{ "RCPT", 0, cmd_rcpt },
	{ "DATA", CMD_NO_ARG, cmd_data },
	{ "BDAT", CMD_CHUNKING, cmd_bdat },
	{ "RSET", CMD_NO_ARG | CMD_PRE_TLS, cmd_rset },
	{ "NOOP", CMD_PRE_TLS, cmd_noop },
	{ "QUIT", CMD_PRE_TLS, cmd_quit },
	{ "VRFY", 0, cmd_vrfy },
	{ "EXPN", 0, cmd_expn },
	{ "HELP", 0, cmd_help },
	{ "STARTTLS", CMD_NO_ARG | CMD_PRE_TLS, cmd_starttls },
	{ "AUTH", CMD_NEED_HELO, cmd_auth },
};

void smtp_command(struct smtp_server *s, const char *line, size_t len)
{
	const struct smtp_cmd_def *c = NULL;
	const char *sp = memchr(line, ' ', len);
	size_t vl = sp ? (size_t)(sp - line) : len;
	const char *arg = line + vl;
	size_t al = len - vl;

	if (len == 0) {
		smtp_reply_err(s, "500 5.5.2 Error: bad syntax");
		return;
	}
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		if (smtp_word_eq(line, vl, smtp_cmds[i].name)) {
			c = &smtp_cmds[i];
			break;
		}
	}
	if (c == NULL || ((c->flags & CMD_CHUNKING) && !s->conf.chunking)) {
		smtp_reply_err(s, "502 5.5.2 Error: command not recognized");
		return;
	}
	while (al > 0 && *arg == ' ') {
		arg++;
		al--;
	}
	while (al > 0 && arg[al - 1] == ' ')
		al--;
	if ((c->flags & CMD_NO_ARG) && al > 0) {
		smtp_reply_err(s, "501 5.5.4 Syntax: %s", c->name);
		return;
	}
	/* RFC 3207 4: where TLS is required, 530 until it is on */
	if (s->pol.tls_required && !s->tls && !(c->flags & CMD_PRE_TLS)) {
		smtp_reply_err(s, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	if ((c->flags & CMD_NEED_HELO) && !s->helo) {
		smtp_reply_err(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	c->fn(s, arg, al);
}
