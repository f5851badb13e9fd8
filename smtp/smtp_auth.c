/*
 * smtp_auth.c: the AUTH command (RFC 4954) and its SASL exchange for
 * PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), server side.
 *
 * Owns the exchange only: base64, the message formats, the limits and
 * the replies. Whether a password is right is the caller's question
 * (ops->auth), which may answer later (smtp_server_auth_done) so that
 * hashing never runs on the worker that owns the session.
 *
 * Replies (RFC 4954 4, 6):
 *   235 2.7.0  success
 *   334 ...    next SASL step
 *   500 5.5.6  an exchange line or a decoded field over its limit
 *   501 5.0.0  cancelled by the client ("*")
 *   501 5.5.2  not base64, or not a PLAIN message (NULs, empty fields)
 *   503 5.5.1  already authenticated, in a transaction, not enabled
 *   504 5.5.4  unknown mechanism
 *   535 5.7.8  wrong credentials
 *   538 5.7.11 AUTH before TLS where TLS is required for it
 *   454 4.7.0  temporary failure, or too many failures from the address
 * Never keeps a password beyond the call that checks it: every buffer
 * that held one is wiped.
 */
#include "smtp/smtp_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_parse.h"

/* "Username:" and "Password:" in base64 (LOGIN's challenges) */
#define LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define LOGIN_PASS_CHALLENGE "UGFzc3dvcmQ6"

static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n--)
		*v++ = 0;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* base64 = *(4base64-char) [base64-terminal] (RFC 4954 4: padded) */
long smtp_base64_decode(const char *in, size_t len, char *buf, size_t cap)
{
	size_t o = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];

			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[k] = b64_val(c)) < 0)
				return -1;
		}
		if (o + 3 - (size_t)pad + 1 > cap)
			return -1;
		buf[o++] = (char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			buf[o++] = (char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			buf[o++] = (char)((v[2] & 3) << 6 | v[3]);
	}
	if (cap == 0)
		return -1;
	buf[o] = '\0';
	return (long)o;
}

static bool has_ctl_or_nul(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

/* Asks the caller about authcid/password; the reply comes from
 * smtp_auth_result now or after smtp_server_auth_done. */
static void check(struct smtp_server *s, const char *authzid,
		  const char *authcid, const char *pass)
{
	int rc;

	s->auth_step = SMTP_AUTH_NONE;
	snprintf(s->auth_try, sizeof(s->auth_try), "%s", authcid);
	rc = s->ops.auth(s->user, authzid, authcid, pass);
	if (rc == -EINPROGRESS) {
		s->auth_pending = true;
		return;
	}
	smtp_auth_result(s, rc);
}

void smtp_auth_result(struct smtp_server *s, int rc)
{
	if (rc == 0) {
		s->authed = true;
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", s->auth_try);
		smtp_reply(s, "235 2.7.0 Authentication successful");
	} else if (rc == -EACCES || rc == -EPERM) {
		smtp_reply(s, "535 5.7.8 Error: authentication failed");
	} else if (rc == -EAGAIN) {
		smtp_reply(s, "454 4.7.0 Error: too many authentication "
			   "failures, try again later");
	} else {
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
	}
	wipe(s->auth_try, sizeof(s->auth_try));
}

/* Decodes one client answer; on failure the reply is sent and the
 * exchange is over. Returns the decoded length or -1. */
static long decode(struct smtp_server *s, const char *in, size_t len,
		   char *buf, size_t cap)
{
	long n;

	if (len == 1 && in[0] == '*') {
		s->auth_step = SMTP_AUTH_NONE;
		smtp_reply_err(s, "501 5.0.0 Authentication cancelled");
		return -1;
	}
	/* RFC 4954 4: "=" is an empty initial response */
	if (len == 1 && in[0] == '=')
		len = 0;
	if (len / 4 * 3 >= cap) {
		s->auth_step = SMTP_AUTH_NONE;
		smtp_reply_err(s, "500 5.5.6 Authentication Exchange line is "
			       "too long");
		return -1;
	}
	n = smtp_base64_decode(in, len, buf, cap);
	if (n < 0) {
		s->auth_step = SMTP_AUTH_NONE;
		smtp_reply_err(s, "501 5.5.2 Cannot decode response");
	}
	return n;
}

/* message = [authzid] UTF8NUL authcid UTF8NUL passwd (RFC 4616 2) */
static void plain_response(struct smtp_server *s, const char *in, size_t len)
{
	char buf[3 * (SMTP_AUTH_MAX_ID + 1) + 4];
	const char *zid, *cid, *pw, *nul1, *nul2;
	size_t zl, cl, pl;
	long n;

	s->auth_step = SMTP_AUTH_NONE;
	n = decode(s, in, len, buf, sizeof(buf));
	if (n < 0)
		goto out;
	nul1 = memchr(buf, '\0', (size_t)n);
	nul2 = nul1 ? memchr(nul1 + 1, '\0', (size_t)(buf + n - nul1 - 1))
		    : NULL;
	if (nul1 == NULL || nul2 == NULL) {
		smtp_reply_err(s, "501 5.5.2 Invalid authentication message");
		goto out;
	}
	zid = buf;
	zl = (size_t)(nul1 - buf);
	cid = nul1 + 1;
	cl = (size_t)(nul2 - cid);
	pw = nul2 + 1;
	pl = (size_t)(buf + n - pw);
	if (zl > SMTP_AUTH_MAX_ID || cl > SMTP_AUTH_MAX_ID ||
	    pl > SMTP_AUTH_MAX_PASS) {
		smtp_reply_err(s, "500 5.5.6 Authentication Exchange line is "
			       "too long");
		goto out;
	}
	if (cl == 0 || pl == 0 || memchr(pw, '\0', pl) != NULL ||
	    has_ctl_or_nul(cid, cl) || has_ctl_or_nul(zid, zl)) {
		smtp_reply_err(s, "501 5.5.2 Invalid authentication message");
		goto out;
	}
	check(s, zid, cid, pw);
out:
	wipe(buf, sizeof(buf));
}

static void login_user(struct smtp_server *s, const char *in, size_t len)
{
	char buf[3 * (SMTP_AUTH_MAX_ID + 1)];
	long n = decode(s, in, len, buf, sizeof(buf));

	if (n < 0)
		return;
	if (n == 0 || (size_t)n > SMTP_AUTH_MAX_ID ||
	    has_ctl_or_nul(buf, (size_t)n)) {
		s->auth_step = SMTP_AUTH_NONE;
		if ((size_t)n > SMTP_AUTH_MAX_ID)
			smtp_reply_err(s, "500 5.5.6 Authentication Exchange "
				       "line is too long");
		else
			smtp_reply_err(s, "501 5.5.2 Invalid user name");
		return;
	}
	memcpy(s->auth_login_user, buf, (size_t)n + 1);
	s->auth_step = SMTP_AUTH_LOGIN_PASS;
	smtp_reply(s, "334 " LOGIN_PASS_CHALLENGE);
}

static void login_pass(struct smtp_server *s, const char *in, size_t len)
{
	char buf[3 * (SMTP_AUTH_MAX_PASS + 1)];
	long n = decode(s, in, len, buf, sizeof(buf));

	if (n >= 0) {
		s->auth_step = SMTP_AUTH_NONE;
		if ((size_t)n > SMTP_AUTH_MAX_PASS)
			smtp_reply_err(s, "500 5.5.6 Authentication Exchange "
				       "line is too long");
		else if (n == 0 || memchr(buf, '\0', (size_t)n) != NULL)
			smtp_reply_err(s, "501 5.5.2 Invalid password");
		else
			check(s, "", s->auth_login_user, buf);
	}
	wipe(buf, sizeof(buf));
	wipe(s->auth_login_user, sizeof(s->auth_login_user));
}

void smtp_auth_line(struct smtp_server *s, const char *line, size_t len)
{
	switch ((enum smtp_auth_step)s->auth_step) {
	case SMTP_AUTH_PLAIN_RESP:
		plain_response(s, line, len);
		break;
	case SMTP_AUTH_LOGIN_USER:
		login_user(s, line, len);
		break;
	case SMTP_AUTH_LOGIN_PASS:
		login_pass(s, line, len);
		break;
	case SMTP_AUTH_NONE:
		break;
	}
}

void smtp_auth_abort(struct smtp_server *s)
{
	s->auth_step = SMTP_AUTH_NONE;
	wipe(s->auth_login_user, sizeof(s->auth_login_user));
	smtp_reply_err(s, "500 5.5.6 Authentication Exchange line is too long");
}

/* auth = "AUTH" SP sasl-mech [SP initial-response] CRLF (RFC 4954 4)
 * sasl-mech = 1*20(UPPER-ALPHA / DIGIT / "-" / "_") */
void smtp_auth_command(struct smtp_server *s, const char *arg, size_t len)
{
	const char *sp = memchr(arg, ' ', len);
	size_t ml = sp ? (size_t)(sp - arg) : len;
	const char *ir = sp ? sp + 1 : NULL;
	size_t il = sp ? len - ml - 1 : 0;

	if (s->ops.auth == NULL) {
		smtp_reply_err(s, "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (!s->tls && !s->pol.auth_plaintext) {
		smtp_reply_err(s, "538 5.7.11 Encryption required for "
			       "requested authentication mechanism");
		return;
	}
	if (s->authed) {
		smtp_reply_err(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (s->txn) {
		smtp_reply_err(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (ml == 0 || ml > 20 || (sp != NULL && il == 0)) {
		smtp_reply_err(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	if (smtp_word_eq(arg, ml, "PLAIN")) {
		s->auth_step = SMTP_AUTH_PLAIN_RESP;
		if (ir != NULL)
			plain_response(s, ir, il);
		else
			smtp_reply(s, "334 ");
	} else if (smtp_word_eq(arg, ml, "LOGIN")) {
		s->auth_step = SMTP_AUTH_LOGIN_USER;
		if (ir != NULL)
			login_user(s, ir, il);
		else
			smtp_reply(s, "334 " LOGIN_USER_CHALLENGE);
	} else {
		smtp_reply_err(s, "504 5.5.4 Unsupported authentication "
			       "mechanism");
	}
}
