/*
 * test_smtp_auth.c: the engine's AUTH (RFC 4954) with PLAIN (4616) and
 * LOGIN, and the per-listener TLS/AUTH policy: every SASL reply code,
 * bad base64, empty and oversized input, "*" cancel, the asynchronous
 * answer (smtp_server_auth_done) with commands pipelined behind it,
 * 538 before TLS, 530 where TLS or AUTH is required, and the STARTTLS
 * reset (RFC 3207 4.2: HELO and AUTH forgotten, pipelined plaintext
 * dropped). Each script also runs split at every byte.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/envelope.h"
#include "smtp/smtp_server.h"

struct h {
	struct smtp_server *s;
	char out[65536];
	size_t len;
	char seen[1024];
	int rc;               /* what op_auth returns */
	int calls, starttls;
	bool closed;
	struct envelope *msg;
};

static void w(void *u, const void *d, size_t n)
{
	struct h *h = u;

	cr_assert_lt(h->len + n, sizeof(h->out));
	memcpy(h->out + h->len, d, n);
	h->len += n;
	h->out[h->len] = '\0';
}

static void cl(void *u)
{
	((struct h *)u)->closed = true;
}

static int auth(void *u, const char *zid, const char *cid, const char *pw)
{
	struct h *h = u;

	h->calls++;
	snprintf(h->seen, sizeof(h->seen), "%s|%s|%s", zid, cid, pw);
	return h->rc;
}

static int stls(void *u)
{
	((struct h *)u)->starttls++;
	return 0;
}

static void msg(void *u, struct envelope *e)
{
	struct h *h = u;

	envelope_free(h->msg);
	h->msg = e;
	smtp_server_queued(h->s, 0, "Q1");
}

static const struct smtp_server_ops ops = {
	.write = w, .close = cl, .auth = auth, .starttls = stls,
	.message = msg,
};

static void h_new(struct h *h, bool tls, const struct smtp_session_policy *p)
{
	struct smtp_server_conf c;

	memset(h, 0, sizeof(*h));
	smtp_server_conf_defaults(&c);
	c.hostname = "mx.test";
	h->s = smtp_server_new(&c, &ops, h, "198.18.0.1", 40000, 587);
	cr_assert_not_null(h->s);
	if (p != NULL)
		smtp_server_set_policy(h->s, p);
	if (tls)
		smtp_server_set_tls(h->s);
	smtp_server_start(h->s);
	h->len = 0;
	h->out[0] = '\0';
}

static void h_free(struct h *h)
{
	smtp_server_free(h->s);
	envelope_free(h->msg);
}

static void feed(struct h *h, const char *in, bool bytewise)
{
	size_t n = strlen(in);

	if (!bytewise) {
		smtp_server_input(h->s, (const uint8_t *)in, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		smtp_server_input(h->s, (const uint8_t *)in + i, 1);
}

#define EHLO "EHLO c.test\r\n"

struct auth_case {
	const char *script, *want, *seen;
	int rc;
};

/* base64: "\0alice\0secret" = AGFsaWNlAHNlY3JldA==,
 * "alice" = YWxpY2U=, "secret" = c2VjcmV0,
 * "zed\0alice\0secret" = emVkAGFsaWNlAHNlY3JldA== */
static const struct auth_case cases[] = {
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "235 2.7.0 Authentication successful\r\n", "|alice|secret", 0 },
	{ "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
	  "334 \r\n235 2.7.0 Authentication successful\r\n", "|alice|secret", 0 },
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "535 5.7.8 Error: authentication failed\r\n", "|alice|secret", -EACCES },
	{ "AUTH PLAIN emVkAGFsaWNlAHNlY3JldA==\r\n",
	  "235 2.7.0 Authentication successful\r\n", "zed|alice|secret", 0 },
	{ "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
	  "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	  "235 2.7.0 Authentication successful\r\n", "|alice|secret", 0 },
	{ "AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
	  "334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
	  "|alice|secret", 0 },
	{ "AUTH login YWxpY2U=\r\nc2VjcmV0\r\n",
	  "334 UGFzc3dvcmQ6\r\n535 5.7.8 Error: authentication failed\r\n",
	  "|alice|secret", -EPERM },
	/* bad base64 */
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA=\r\n",
	  "501 5.5.2 Cannot decode response\r\n", "", 0 },
	{ "AUTH PLAIN !!!!\r\n", "501 5.5.2 Cannot decode response\r\n", "", 0 },
	{ "AUTH PLAIN\r\nAG=sa\r\n",
	  "334 \r\n501 5.5.2 Cannot decode response\r\n", "", 0 },
	{ "AUTH LOGIN\r\nYW=xpY2U\r\n",
	  "334 VXNlcm5hbWU6\r\n501 5.5.2 Cannot decode response\r\n", "", 0 },
	/* empty: "=" initial response, empty line, fields empty */
	{ "AUTH PLAIN =\r\n",
	  "501 5.5.2 Invalid authentication message\r\n", "", 0 },
	{ "AUTH PLAIN\r\n\r\n",
	  "334 \r\n501 5.5.2 Invalid authentication message\r\n", "", 0 },
	{ "AUTH PLAIN AAA=\r\n", /* "\0\0" */
	  "501 5.5.2 Invalid authentication message\r\n", "", 0 },
	{ "AUTH PLAIN AGFsaWNlAA==\r\n", /* "\0alice\0" no password */
	  "501 5.5.2 Invalid authentication message\r\n", "", 0 },
	{ "AUTH PLAIN YWxpY2U=\r\n", /* no NUL at all */
	  "501 5.5.2 Invalid authentication message\r\n", "", 0 },
	{ "AUTH LOGIN\r\n\r\n",
	  "334 VXNlcm5hbWU6\r\n501 5.5.2 Invalid user name\r\n", "", 0 },
	{ "AUTH LOGIN YWxpY2U=\r\n\r\n",
	  "334 UGFzc3dvcmQ6\r\n501 5.5.2 Invalid password\r\n", "", 0 },
	/* cancel */
	{ "AUTH PLAIN\r\n*\r\n",
	  "334 \r\n501 5.0.0 Authentication cancelled\r\n", "", 0 },
	{ "AUTH LOGIN\r\nYWxpY2U=\r\n*\r\nNOOP\r\n",
	  "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	  "501 5.0.0 Authentication cancelled\r\n250 2.0.0 Ok\r\n", "", 0 },
	/* mechanism and syntax */
	{ "AUTH CRAM-MD5\r\n",
	  "504 5.5.4 Unsupported authentication mechanism\r\n", "", 0 },
	{ "AUTH\r\n", "501 5.5.4 Syntax: AUTH mechanism\r\n", "", 0 },
	{ "AUTH ABCDEFGHIJKLMNOPQRSTU\r\n",
	  "501 5.5.4 Syntax: AUTH mechanism\r\n", "", 0 },
	/* temporary failure and lock-out */
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "454 4.7.0 Temporary authentication failure\r\n", "|alice|secret", -EIO },
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "454 4.7.0 Error: too many authentication failures, try again "
	  "later\r\n", "|alice|secret", -EAGAIN },
	/* sequence */
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "235 2.7.0 Authentication successful\r\n"
	  "503 5.5.1 Error: already authenticated\r\n", "|alice|secret", 0 },
	{ "MAIL FROM:<a@b.test>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "250 2.1.0 Ok\r\n503 5.5.1 Error: MAIL transaction in progress\r\n",
	  "", 0 },
};

Test(smtp_auth, cases_whole)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct h h;

		h_new(&h, true, NULL);
		h.rc = cases[i].rc;
		feed(&h, EHLO, false);
		h.len = 0;
		h.out[0] = '\0';
		feed(&h, cases[i].script, false);
		cr_assert_str_eq(h.out, cases[i].want, "case %zu", i);
		cr_assert_str_eq(h.seen, cases[i].seen, "case %zu", i);
		h_free(&h);
	}
}

Test(smtp_auth, cases_bytewise)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct h h;

		h_new(&h, true, NULL);
		h.rc = cases[i].rc;
		feed(&h, EHLO, true);
		h.len = 0;
		h.out[0] = '\0';
		feed(&h, cases[i].script, true);
		cr_assert_str_eq(h.out, cases[i].want, "case %zu", i);
		h_free(&h);
	}
}

Test(smtp_auth, oversized)
{
	struct h h;
	char line[8192];
	size_t n;

	/* a response line over max_cmd_line (512) while a step waits */
	h_new(&h, true, NULL);
	feed(&h, EHLO, false);
	h.len = 0;
	memset(line, 'A', sizeof(line));
	memcpy(line + 2000, "\r\nNOOP\r\n", 9);
	feed(&h, "AUTH PLAIN\r\n", false);
	feed(&h, line, false);
	cr_assert_str_eq(h.out, "334 \r\n500 5.5.6 Authentication Exchange "
			 "line is too long\r\n250 2.0.0 Ok\r\n");
	cr_assert_eq(h.calls, 0);
	h_free(&h);

	/* fits the line, but a decoded field is over 255 octets:
	 * "\0" + 300 x 'a' + "\0p" */
	h_new(&h, true, NULL);
	feed(&h, EHLO, false);
	h.len = 0;
	{
		static const char b64[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789+/";
		unsigned char raw[303];
		char enc[512];
		size_t o = 0;

		raw[0] = 0;
		memset(raw + 1, 'a', 300);
		raw[301] = 0;
		raw[302] = 'p';
		for (size_t i = 0; i < sizeof(raw); i += 3) {
			unsigned v = (unsigned)raw[i] << 16 |
				     (unsigned)raw[i + 1] << 8 | raw[i + 2];
			enc[o++] = b64[v >> 18 & 63];
			enc[o++] = b64[v >> 12 & 63];
			enc[o++] = b64[v >> 6 & 63];
			enc[o++] = b64[v & 63];
		}
		enc[o] = '\0';
		n = (size_t)snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", enc);
		cr_assert_lt(n, 512);
	}
	feed(&h, line, false);
	cr_assert_str_eq(h.out, "500 5.5.6 Authentication Exchange line is "
			 "too long\r\n");
	cr_assert_eq(h.calls, 0);
	h_free(&h);
}

Test(smtp_auth, async_answer_with_pipelined_commands)
{
	struct h h;

	h_new(&h, true, NULL);
	h.rc = -EINPROGRESS;
	feed(&h, EHLO "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.test>\r\n"
	     "RCPT TO:<c@d.test>\r\n", false);
	cr_assert(smtp_server_blocked(h.s));
	cr_assert_null(strstr(h.out, "235"));
	cr_assert_null(strstr(h.out, "250 2.1.0"));
	smtp_server_auth_done(h.s, 0);
	cr_assert(!smtp_server_blocked(h.s));
	cr_assert_not_null(strstr(h.out, "235 2.7.0 Authentication successful"
				  "\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"));
	cr_assert_str_eq(smtp_server_auth_user(h.s), "alice");
	feed(&h, "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n", false);
	cr_assert_not_null(h.msg);
	cr_assert_not_null(strstr((const char *)h.msg->body,
				  "(Authenticated sender: alice)"));
	cr_assert_not_null(strstr((const char *)h.msg->body, "with ESMTPSA"));
	h_free(&h);

	/* a failed asynchronous check, then the right one */
	h_new(&h, true, NULL);
	h.rc = -EINPROGRESS;
	feed(&h, EHLO "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nNOOP\r\n", false);
	smtp_server_auth_done(h.s, -EACCES);
	cr_assert_not_null(strstr(h.out, "535 5.7.8 Error: authentication "
				  "failed\r\n250 2.0.0 Ok\r\n"));
	cr_assert_str_eq(smtp_server_auth_user(h.s), "");
	h_free(&h);
}

Test(smtp_auth, not_before_tls)
{
	struct h h;
	struct smtp_session_policy p = { 0 };

	/* AUTH is neither advertised nor accepted in clear */
	h_new(&h, false, &p);
	feed(&h, EHLO, false);
	cr_assert_null(strstr(h.out, "AUTH"));
	cr_assert_not_null(strstr(h.out, "250-STARTTLS\r\n"));
	h.len = 0;
	feed(&h, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", false);
	cr_assert_str_eq(h.out, "538 5.7.11 Encryption required for "
			 "requested authentication mechanism\r\n");
	cr_assert_eq(h.calls, 0);
	h_free(&h);

	/* unless plaintext AUTH is allowed for this client */
	p.auth_plaintext = true;
	h_new(&h, false, &p);
	feed(&h, EHLO, false);
	cr_assert_not_null(strstr(h.out, "250-AUTH PLAIN LOGIN\r\n"));
	h.len = 0;
	feed(&h, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", false);
	cr_assert_str_eq(h.out, "235 2.7.0 Authentication successful\r\n");
	h_free(&h);
}

Test(smtp_auth, tls_required_and_auth_required)
{
	struct h h;
	struct smtp_session_policy p = { .tls_required = true,
					 .auth_required = true };

	h_new(&h, false, &p);
	feed(&h, EHLO "MAIL FROM:<a@b.test>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
	     "VRFY x\r\nNOOP\r\n", false);
	cr_assert_not_null(strstr(h.out, "250 CHUNKING\r\n"
		"530 5.7.0 Must issue a STARTTLS command first\r\n"
		"530 5.7.0 Must issue a STARTTLS command first\r\n"
		"530 5.7.0 Must issue a STARTTLS command first\r\n"
		"250 2.0.0 Ok\r\n"), "%s", h.out);
	h.len = 0;
	feed(&h, "STARTTLS\r\n", false);
	cr_assert_str_eq(h.out, "220 2.0.0 Ready to start TLS\r\n");
	/* now in TLS: MAIL still needs AUTH */
	h.len = 0;
	feed(&h, EHLO "MAIL FROM:<a@b.test>\r\n", false);
	cr_assert_not_null(strstr(h.out, "250-AUTH PLAIN LOGIN\r\n"));
	cr_assert_null(strstr(h.out, "STARTTLS"));
	cr_assert_not_null(strstr(h.out, "530 5.7.0 Authentication required\r\n"));
	h.len = 0;
	feed(&h, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.test>\r\n",
	     false);
	cr_assert_str_eq(h.out, "235 2.7.0 Authentication successful\r\n"
			 "250 2.1.0 Ok\r\n");
	h_free(&h);
}

Test(smtp_auth, starttls_resets_and_drops_injection)
{
	struct h h;
	struct smtp_session_policy p = { .auth_plaintext = true };

	/* authenticated in clear (trusted network), then STARTTLS with a
	 * command injected behind it in the same read */
	h_new(&h, false, &p);
	feed(&h, EHLO "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", false);
	cr_assert_str_eq(smtp_server_auth_user(h.s), "alice");
	h.len = 0;
	feed(&h, "STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\n",
	     false);
	cr_assert_str_eq(h.out, "220 2.0.0 Ready to start TLS\r\n");
	cr_assert_eq(h.starttls, 1);
	/* the identity and the HELO are forgotten (RFC 3207 4.2) */
	cr_assert_str_eq(smtp_server_auth_user(h.s), "");
	h.len = 0;
	feed(&h, "MAIL FROM:<a@b.test>\r\n", false);
	cr_assert_str_eq(h.out, "503 5.5.1 Error: send HELO/EHLO first\r\n");
	h.len = 0;
	feed(&h, EHLO, false);
	cr_assert_not_null(strstr(h.out, "250-AUTH PLAIN LOGIN\r\n"));
	cr_assert_null(strstr(h.out, "STARTTLS"));
	h.len = 0;
	feed(&h, "STARTTLS\r\n", false);
	cr_assert_str_eq(h.out, "554 5.5.1 Error: TLS already active\r\n");
	h_free(&h);
}
