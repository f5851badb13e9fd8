/*
 * test_smtp_client.c: the SMTP client engine (smtp/smtp_client*), as
 * transcripts: the server's bytes in, the exact bytes the client writes,
 * every recipient's result (status, code, enhanced code, text) and how
 * the connection ends.
 *
 * Every transcript runs 10 ways: the server's bytes whole, byte by byte
 * and at 8 seeded random split points; all must give the same bytes and
 * results. The harness hands the transcript's messages one by one from
 * ops->ready and quits after the last (unless the case says idle).
 * The sanitizer build runs all of it (LSan: sessions and results freed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "smtp/smtp_client.h"
#include "smtp/smtp_server.h"

/* the tables name only the fields that matter to each case */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* ------------------------------------------------------------ messages */

struct mrcpt {
	const char *addr, *orcpt;
	uint8_t notify;
};

struct mspec {
	const char *from;
	struct mrcpt rcpt[4];
	const char *body;
	uint8_t body_type, ret;
	bool smtputf8;
	const char *envid;
	uint32_t idx[4], nidx; /* nidx 0: every recipient in order */
};

static struct envelope *mk_env(const struct mspec *m)
{
	struct envelope *e = envelope_new();

	cr_assert_not_null(e);
	cr_assert_eq(envelope_set_str(&e->mail_from, m->from, SIZE_MAX), 0);
	for (int i = 0; i < 4 && m->rcpt[i].addr != NULL; i++)
		cr_assert_eq(envelope_add_rcpt(e, m->rcpt[i].addr,
					       m->rcpt[i].orcpt ?
					       m->rcpt[i].orcpt : "",
					       m->rcpt[i].notify), 0);
	/* (envelope_body_append of 0 octets to no body trips UBSan's
	 * memcpy(NULL) in common/envelope.c: not asked here) */
	if (m->body != NULL && m->body[0] != '\0')
		cr_assert_eq(envelope_body_append(e, m->body,
						  strlen(m->body)), 0);
	if (m->envid != NULL)
		cr_assert_eq(envelope_set_str(&e->envid, m->envid, SIZE_MAX), 0);
	e->body_type = m->body_type;
	e->ret = m->ret;
	e->smtputf8 = m->smtputf8;
	return e;
}

#define BODY "Subject: x\r\n\r\nhi\r\n" /* 18 octets */

static const struct mspec M1 = {
	"a@b.test", { { "u@d.test" } }, BODY };
static const struct mspec M3 = {
	"a@b.test", { { "u@d.test" }, { "v@d.test" }, { "w@d.test" } }, BODY };
static const struct mspec M2 = {
	"c@b.test", { { "x@d.test" }, { "y@d.test" } }, "two\r\n" };
static const struct mspec M_NULL = {
	"", { { "u@d.test" } }, "" };
static const struct mspec M_DOTS = {
	"a@b.test", { { "u@d.test" } },
	".lead\r\n..two\r\nmid.dot\r\n.\r\n\r\n. sp\r\nlast line" };
static const struct mspec M_8BIT = {
	"a@b.test", { { "u@d.test" } }, "caf\xc3\xa9\r\n",
	.body_type = ENV_BODY_8BITMIME };
static const struct mspec M_8BIT_UNDECLARED = {
	"a@b.test", { { "u@d.test" } }, "caf\xc3\xa9\r\n" };
static const struct mspec M_7BIT_DECLARED_8 = {
	"a@b.test", { { "u@d.test" } }, "plain\r\n",
	.body_type = ENV_BODY_8BITMIME };
static const struct mspec M_7BIT = {
	"a@b.test", { { "u@d.test" } }, "plain\r\n",
	.body_type = ENV_BODY_7BIT };
static const struct mspec M_BINARY = {
	"a@b.test", { { "u@d.test" } }, "plain\r\n",
	.body_type = ENV_BODY_BINARYMIME };
static const struct mspec M_UTF8 = {
	"j\xc3\xb6rg@b.test", { { "u@d.test" } }, "x\r\n",
	.body_type = ENV_BODY_8BITMIME, .smtputf8 = true };
static const struct mspec M_DSN = {
	"a@b.test",
	{ { "u@d.test", "rfc822;u+1=x@d.test",
	    ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE },
	  { "v@d.test", NULL, ENV_NOTIFY_NEVER },
	  { "w@d.test", NULL, ENV_NOTIFY_DELAY } },
	"x\r\n", .ret = ENV_RET_HDRS, .envid = "id 1+2=3" };
static const struct mspec M_BIG = { /* 1001 octets */
	"a@b.test", { { "u@d.test" } },
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"0123456789012345678901234567890123456789012345678901234567890123456789"
	"012345678901234567890" };
static const struct mspec M_INJECT = {
	"a@b.test", { { "u@d.test" }, { "v@d.test>\r\nRSET\r\nRCPT TO:<w" } },
	BODY };
static const struct mspec M_SUBSET = {
	"a@b.test", { { "u@d.test" }, { "v@d.test" }, { "w@d.test" } }, BODY,
	.idx = { 2, 0 }, .nidx = 2 };

/* ------------------------------------------------------------- harness */

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };
#define RANDOM_RUNS 8

struct harness {
	struct smtp_client *c;
	struct smtp_client_conf conf;
	struct smtp_client_ops ops;
	char *out;
	size_t out_len, out_cap;
	char res[4096];     /* the results, rendered */
	size_t res_len;
	int closed, readies;
	enum smtp_client_end end;
	struct smtp_client_reply why;
	bool write_after_close, idle;
	struct envelope *env[4];
	const struct mspec *msg[4];
	int nmsg, next;
	int send_rc[4];
};

static void h_write(void *u, const void *d, size_t n)
{
	struct harness *h = u;

	if (h->closed)
		h->write_after_close = true;
	if (h->out_len + n + 1 > h->out_cap) {
		h->out_cap = (h->out_len + n + 1) * 2;
		h->out = realloc(h->out, h->out_cap);
		cr_assert_not_null(h->out);
	}
	memcpy(h->out + h->out_len, d, n);
	h->out_len += n;
	h->out[h->out_len] = '\0';
}

static const char status_ch[] = { 'D', 'T', 'B' };

static void h_done(void *u, const struct smtp_client_msg *m)
{
	struct harness *h = u;
	uint32_t d = 0, t = 0, b = 0;

	for (uint32_t i = 0; i < m->nrcpt; i++) {
		const struct smtp_client_rcpt *r = &m->rcpt[i];

		h->res_len += (size_t)snprintf(h->res + h->res_len,
			sizeof(h->res) - h->res_len, "%u %c %u %s %s%s\n",
			r->idx, status_ch[r->status], r->reply.code,
			r->reply.enh, r->reply.text,
			r->reply.local ? " [local]" : "");
		cr_assert_lt(h->res_len, sizeof(h->res));
		d += r->status == SMTP_RCPT_DELIVERED;
		t += r->status == SMTP_RCPT_DEFERRED;
		b += r->status == SMTP_RCPT_BOUNCED;
	}
	cr_assert_eq(d, m->delivered);
	cr_assert_eq(t, m->deferred);
	cr_assert_eq(b, m->bounced);
	h->res_len += (size_t)snprintf(h->res + h->res_len,
				       sizeof(h->res) - h->res_len, "=\n");
}

static void h_ready(void *u)
{
	struct harness *h = u;

	h->readies++;
	if (h->idle)
		return;
	while (h->next < h->nmsg) {
		const struct mspec *m = h->msg[h->next];
		uint32_t all[4], n = 0;
		int i = h->next++;

		for (; n < 4 && m->rcpt[n].addr != NULL; n++)
			all[n] = n;
		h->send_rc[i] = m->nidx ?
			smtp_client_send(h->c, h->env[i], m->idx, m->nidx) :
			smtp_client_send(h->c, h->env[i], all, n);
		cr_assert(h->send_rc[i] == 0 || h->send_rc[i] == 1,
			  "send: %d", h->send_rc[i]);
		if (h->send_rc[i] == 0)
			return;
		cr_assert_eq(smtp_client_stage(h->c), SMTP_CLIENT_READY);
	}
	cr_assert_eq(smtp_client_quit(h->c), 0);
}

static void h_close(void *u, enum smtp_client_end end,
		    const struct smtp_client_reply *why)
{
	struct harness *h = u;

	h->closed++;
	h->end = end;
	h->why = *why;
}

typedef void tweak_fn(struct harness *h);

static void h_init(struct harness *h, tweak_fn *tweak,
		   const struct mspec *const *msgs)
{
	memset(h, 0, sizeof(*h));
	h->conf.helo_name = "client.test";
	h->ops.write = h_write;
	h->ops.ready = h_ready;
	h->ops.done = h_done;
	h->ops.close = h_close;
	for (int i = 0; i < 4 && msgs != NULL && msgs[i] != NULL; i++) {
		h->msg[i] = msgs[i];
		h->env[i] = mk_env(msgs[i]);
		h->nmsg++;
	}
	if (tweak)
		tweak(h);
	h->c = smtp_client_new(&h->conf, &h->ops, h);
	cr_assert_not_null(h->c);
}

static void h_free(struct harness *h)
{
	smtp_client_free(h->c);
	for (int i = 0; i < h->nmsg; i++)
		envelope_free(h->env[i]);
	free(h->out);
}

static uint32_t xorshift(uint32_t *st)
{
	uint32_t x = *st;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *st = x;
}

static void feed_split(struct harness *h, const char *in, size_t len,
		       enum split sp, uint32_t seed)
{
	size_t i = 0;

	while (i < len) {
		size_t n = len - i;

		if (sp == SPLIT_BYTES)
			n = 1;
		else if (sp == SPLIT_RANDOM) {
			size_t r = 1 + xorshift(&seed) % 23;

			n = r < n ? r : n;
		}
		smtp_client_input(h->c, (const uint8_t *)in + i, n);
		i += n;
	}
}

static void feed_str(struct harness *h, const char *s)
{
	smtp_client_input(h->c, (const uint8_t *)s, strlen(s));
}

/* Printable form of protocol bytes for failure messages. */
static char *esc(const char *s, size_t n)
{
	char *o = malloc(n * 4 + 1), *p = o;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r') {
			*p++ = '\\';
			*p++ = 'r';
		} else if (c == '\n') {
			*p++ = '\\';
			*p++ = 'n';
			*p++ = '\n';
		} else if (c < 0x20 || c >= 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p = '\0';
	return o;
}

static void assert_bytes(const char *what, const char *got, size_t glen,
			 const char *want, size_t wlen)
{
	if (glen != wlen || (wlen > 0 && memcmp(got, want, wlen) != 0)) {
		char *g = esc(got, glen), *w = esc(want, wlen);

		cr_log_error("%s: got\n%s\nwant\n%s", what, g, w);
		free(g);
		free(w);
		cr_assert_fail("%s: bytes differ", what);
	}
}

/* ----------------------------------------------------------- transcripts */

/* how the connection must end */
enum xend { X_OPEN = 0, X_QUIT, X_TEMP, X_PERM };

struct transcript {
	const char *name;
	tweak_fn *tweak;
	const struct mspec *msgs[4];
	const char *in;   /* the server */
	const char *out;  /* the client, exactly */
	const char *res;  /* the results, rendered by h_done */
	enum xend end;
	uint16_t why_code;
	bool idle;        /* hand nothing, do not quit */
};

static void run_one(const struct transcript *t, enum split sp, uint32_t seed)
{
	static const enum smtp_client_end ends[] = {
		[X_QUIT] = SMTP_CLIENT_END_QUIT,
		[X_TEMP] = SMTP_CLIENT_END_HOST_TEMP,
		[X_PERM] = SMTP_CLIENT_END_HOST_PERM,
	};
	struct harness h;
	char what[200];

	snprintf(what, sizeof(what), "%s [split%d seed%u]", t->name, sp, seed);
	h_init(&h, t->tweak, t->msgs);
	h.idle = t->idle;
	feed_split(&h, t->in, strlen(t->in), sp, seed);
	assert_bytes(what, h.out, h.out_len, t->out, strlen(t->out));
	assert_bytes(what, h.res, h.res_len, t->res ? t->res : "",
		     t->res ? strlen(t->res) : 0);
	cr_assert_not(h.write_after_close, "%s: wrote after close", what);
	if (t->end == X_OPEN) {
		cr_assert_eq(h.closed, 0, "%s: closed", what);
	} else {
		cr_assert_eq(h.closed, 1, "%s: closed %d", what, h.closed);
		cr_assert_eq(h.end, ends[t->end], "%s: end %d", what, h.end);
		cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_CLOSED);
		if (t->why_code)
			cr_assert_eq(h.why.code, t->why_code,
				     "%s: why %u", what, h.why.code);
	}
	h_free(&h);
}

static void run_all(const struct transcript *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		run_one(&t[i], SPLIT_WHOLE, 0);
		run_one(&t[i], SPLIT_BYTES, 0);
		for (uint32_t seed = 1; seed <= RANDOM_RUNS; seed++)
			run_one(&t[i], SPLIT_RANDOM, seed * 2654435761u);
	}
}

#define RUN(table) run_all(table, sizeof(table) / sizeof(table[0]))

#define GREET "220 mx.test ESMTP\r\n"
#define EHLO "EHLO client.test\r\n"
#define HELO "HELO client.test\r\n"
/* everything: pipelined */
#define EHLO_ALL "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n" \
	"250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n" \
	"250-STARTTLS\r\n250 CHUNKING\r\n"
/* nothing: one command at a time */
#define EHLO_NONE "250 mx.test\r\n"
#define EHLO_PIPE "250-mx.test\r\n250 PIPELINING\r\n"
#define MAIL_OK "250 2.1.0 Ok\r\n"
#define RCPT_OK "250 2.1.5 Ok\r\n"
#define GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 Ok: queued as X\r\n"
#define BYE "221 2.0.0 Bye\r\n"
#define QUIT "QUIT\r\n"
#define RSET "RSET\r\n"
#define DATA "DATA\r\n"
#define MAIL_A "MAIL FROM:<a@b.test>\r\n"
#define MAIL_A_SZ "MAIL FROM:<a@b.test> SIZE=18\r\n"
#define RCPT_U "RCPT TO:<u@d.test>\r\n"
#define RCPT_V "RCPT TO:<v@d.test>\r\n"
#define RCPT_W "RCPT TO:<w@d.test>\r\n"
#define SENT_BODY BODY ".\r\n"
#define R_DELIVERED(i) #i " D 250 2.0.0 Ok: queued as X\n"

static const struct transcript basic[] = {
	{ "pipelined: MAIL, RCPT, DATA in one write", NULL, { &M1 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT, 221 },
	{ "no PIPELINING: one command at a time", NULL, { &M3 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK
	  "550 5.1.1 <v@d.test>: Recipient address rejected\r\n"
	  RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U RCPT_V RCPT_W DATA SENT_BODY QUIT,
	  R_DELIVERED(0)
	  "1 B 550 5.1.1 <v@d.test>: Recipient address rejected\n"
	  R_DELIVERED(2) "=\n", X_QUIT },
	{ "PIPELINING offered, conf says no", NULL, { &M1 },
	  GREET EHLO_PIPE MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
	{ "null sender, empty body", NULL, { &M_NULL },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO "MAIL FROM:<> SIZE=0\r\n" RCPT_U DATA ".\r\n" QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
	{ "recipient subset in the order given", NULL, { &M_SUBSET },
	  GREET EHLO_ALL MAIL_OK RCPT_OK "451 4.2.0 later\r\n" GO QUEUED BYE,
	  EHLO MAIL_A_SZ RCPT_W RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(2) "0 T 451 4.2.0 later\n=\n", X_QUIT },
	{ "dot-stuffing; a last line without CRLF gets one", NULL,
	  { &M_DOTS },
	  GREET EHLO_PIPE MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U DATA
	  "..lead\r\n...two\r\nmid.dot\r\n..\r\n\r\n.. sp\r\nlast line\r\n"
	  ".\r\n" QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
	{ "two messages on one connection", NULL, { &M1, &M2 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED
	  MAIL_OK RCPT_OK RCPT_OK GO "250 2.0.0 Ok: queued as Y\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA SENT_BODY
	  "MAIL FROM:<c@b.test> SIZE=5\r\nRCPT TO:<x@d.test>\r\n"
	  "RCPT TO:<y@d.test>\r\n" DATA "two\r\n.\r\n" QUIT,
	  R_DELIVERED(0) "=\n0 D 250 2.0.0 Ok: queued as Y\n"
	  "1 D 250 2.0.0 Ok: queued as Y\n=\n", X_QUIT },
	{ "reuse after a refused transaction: RSET between", NULL,
	  { &M1, &M2 },
	  GREET EHLO_NONE MAIL_OK "550 5.1.1 no\r\n" "250 2.0.0 Ok\r\n"
	  MAIL_OK RCPT_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U RSET "MAIL FROM:<c@b.test>\r\n"
	  "RCPT TO:<x@d.test>\r\nRCPT TO:<y@d.test>\r\n" DATA "two\r\n.\r\n"
	  QUIT,
	  "0 B 550 5.1.1 no\n=\n" R_DELIVERED(0) R_DELIVERED(1) "=\n", X_QUIT },
	{ "bare LF line ends, a bare code, no enhanced codes", NULL, { &M1 },
	  "220 mx\n250 mx\n250\n250 ok\n354 go\n250 queued\n221\n",
	  EHLO MAIL_A RCPT_U DATA SENT_BODY QUIT,
	  "0 D 250 2.6.0 queued\n=\n", X_QUIT },
};

static const struct transcript stages[] = {
	/* greeting */
	{ "greeting 554: QUIT, host refused", NULL, { &M1 },
	  "554 5.3.2 mx.test no service\r\n" BYE,
	  QUIT, NULL, X_PERM, 554 },
	{ "greeting 421: closed at once", NULL, { &M1 },
	  "421 4.3.2 busy\r\n", "", NULL, X_TEMP, 421 },
	{ "greeting 450: QUIT, temporary", NULL, { &M1 },
	  "450 busy\r\n" BYE, QUIT, NULL, X_TEMP, 450 },
	{ "greeting 354: protocol error", NULL, { &M1 },
	  "354 what\r\n", "", NULL, X_TEMP, 451 },
	/* EHLO / HELO */
	{ "EHLO 502: HELO, then plain SMTP", NULL, { &M1 },
	  GREET "502 5.5.2 command not recognized\r\n250 mx.test\r\n"
	  MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO HELO MAIL_A RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
	{ "EHLO 500 multi-line, HELO 550: host refused", NULL, { &M1 },
	  GREET "500-no\r\n500 really\r\n550 go away\r\n" BYE,
	  EHLO HELO QUIT, NULL, X_PERM, 550 },
	{ "EHLO 451: QUIT, temporary", NULL, { &M1 },
	  GREET "451 4.3.0 later\r\n" BYE, EHLO QUIT, NULL, X_TEMP, 451 },
	{ "HELO 421: closed", NULL, { &M1 },
	  GREET "500 no\r\n421 4.3.2 bye\r\n", EHLO HELO, NULL, X_TEMP, 421 },
	{ "HELO 450: QUIT, temporary", NULL, { &M1 },
	  GREET "500 no\r\n450 no\r\n" BYE, EHLO HELO QUIT, NULL, X_TEMP,
	  450 },
	/* MAIL */
	{ "MAIL 451, one at a time: all deferred, no RSET", NULL, { &M3 },
	  GREET EHLO_NONE "451 4.3.0 try later\r\n" BYE,
	  EHLO MAIL_A QUIT,
	  "0 T 451 4.3.0 try later\n1 T 451 4.3.0 try later\n"
	  "2 T 451 4.3.0 try later\n=\n", X_QUIT },
	{ "MAIL 553 pipelined: RCPT and DATA replies skipped", NULL, { &M3 },
	  GREET EHLO_ALL "553 5.1.8 bad sender\r\n"
	  "503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
	  "503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U RCPT_V RCPT_W DATA QUIT,
	  "0 B 553 5.1.8 bad sender\n1 B 553 5.1.8 bad sender\n"
	  "2 B 553 5.1.8 bad sender\n=\n", X_QUIT },
	{ "MAIL 553 pipelined, buggy 354: empty message", NULL, { &M1 },
	  GREET EHLO_ALL "553 5.1.8 bad sender\r\n503 need MAIL\r\n"
	  GO "554 no valid recipients\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA ".\r\n" QUIT,
	  "0 B 553 5.1.8 bad sender\n=\n", X_QUIT },
	{ "MAIL 354: protocol error", NULL, { &M1 },
	  GREET EHLO_NONE GO, EHLO MAIL_A,
	  "0 T 451 4.5.0 protocol error: unexpected reply (MAIL FROM) "
	  "[local]\n=\n", X_TEMP, 451 },
	/* RCPT */
	{ "RCPT 250, 451, 550 pipelined", NULL, { &M3 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK "451 4.7.1 greylisted\r\n"
	  "550 5.1.1 unknown\r\n" GO QUEUED BYE,
	  EHLO MAIL_A_SZ RCPT_U RCPT_V RCPT_W DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "1 T 451 4.7.1 greylisted\n2 B 550 5.1.1 unknown\n=\n",
	  X_QUIT },
	{ "all RCPT refused pipelined: DATA 554, RSET", NULL, { &M3 },
	  GREET EHLO_ALL MAIL_OK "550 5.1.1 a\r\n452 4.5.3 b\r\n"
	  "550 5.7.1 c\r\n" "554 5.5.1 no valid recipients\r\n"
	  "250 2.0.0 Ok\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U RCPT_V RCPT_W DATA RSET QUIT,
	  "0 B 550 5.1.1 a\n1 T 452 4.5.3 b\n2 B 550 5.7.1 c\n=\n", X_QUIT },
	{ "all RCPT refused pipelined, buggy 354: empty message", NULL,
	  { &M1 },
	  GREET EHLO_ALL MAIL_OK "550 5.1.1 a\r\n" GO "554 5.5.1 none\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA ".\r\n" QUIT,
	  "0 B 550 5.1.1 a\n=\n", X_QUIT },
	{ "all RCPT refused one at a time: RSET, no DATA", NULL, { &M1 },
	  GREET EHLO_NONE MAIL_OK "550 no such user\r\n" "250 Ok\r\n" BYE,
	  EHLO MAIL_A RCPT_U RSET QUIT,
	  "0 B 550 5.1.1 no such user\n=\n", X_QUIT },
	{ "RSET refused: QUIT, temporary", NULL, { &M1 },
	  GREET EHLO_NONE MAIL_OK "550 no\r\n" "500 what\r\n" BYE,
	  EHLO MAIL_A RCPT_U RSET QUIT,
	  "0 B 550 5.1.1 no\n=\n", X_TEMP, 500 },
	/* DATA */
	{ "DATA 451 one at a time: accepted deferred, RSET", NULL, { &M3 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK "550 5.1.1 no\r\n" RCPT_OK
	  "451 4.3.0 not now\r\n" "250 Ok\r\n" BYE,
	  EHLO MAIL_A RCPT_U RCPT_V RCPT_W DATA RSET QUIT,
	  "0 T 451 4.3.0 not now\n1 B 550 5.1.1 no\n2 T 451 4.3.0 not now\n=\n",
	  X_QUIT },
	{ "DATA 554 pipelined: accepted bounced, RSET", NULL, { &M1 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK "554 5.7.0 go away\r\n" "250 Ok\r\n"
	  BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA RSET QUIT,
	  "0 B 554 5.7.0 go away\n=\n", X_QUIT },
	{ "DATA 250: protocol error", NULL, { &M1 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK "250 what\r\n",
	  EHLO MAIL_A_SZ RCPT_U DATA,
	  "0 T 451 4.5.0 protocol error: unexpected reply (DATA) [local]\n=\n",
	  X_TEMP },
	/* end of data */
	{ "end of data 452: deferred", NULL, { &M3 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK RCPT_OK "550 5.1.1 x\r\n" GO
	  "452 4.3.1 Insufficient system storage\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U RCPT_V RCPT_W DATA SENT_BODY QUIT,
	  "0 T 452 4.3.1 Insufficient system storage\n"
	  "1 T 452 4.3.1 Insufficient system storage\n2 B 550 5.1.1 x\n=\n",
	  X_QUIT },
	{ "end of data 552 without enhanced code: bounced, 5.3.4", NULL,
	  { &M1 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK GO "552 too big\r\n" BYE,
	  EHLO MAIL_A RCPT_U DATA SENT_BODY QUIT,
	  "0 B 552 5.3.4 too big\n=\n", X_QUIT },
	{ "end of data 354: protocol error", NULL, { &M1 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK GO GO,
	  EHLO MAIL_A RCPT_U DATA SENT_BODY,
	  "0 T 451 4.5.0 protocol error: unexpected reply (end of data) "
	  "[local]\n=\n", X_TEMP },
	/* QUIT */
	{ "QUIT 500: closed all the same", NULL, { &M1 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK GO QUEUED "500 what\r\n",
	  EHLO MAIL_A RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT, 500 },
	{ "QUIT 421: closed, still a quit", NULL, { 0 },
	  GREET EHLO_NONE "421 bye\r\n", EHLO QUIT, NULL, X_QUIT, 421 },
	{ "input after close is ignored", NULL, { 0 },
	  GREET EHLO_NONE BYE "250 more\r\n", EHLO QUIT, NULL, X_QUIT, 221 },
};

static const struct transcript multi[] = {
	{ "multi-line replies: text joined, repeated codes dropped", NULL,
	  { &M3 },
	  GREET EHLO_ALL "250-2.1.0 first\r\n250 2.1.0 second\r\n" RCPT_OK
	  "550-5.1.1 no such\r\n550-5.1.1 user\r\n550 5.1.1 here\r\n"
	  "451-4.7.1 one\r\n451 two\r\n" GO
	  "250-2.0.0 queued\r\n250 as Z\r\n" BYE,
	  EHLO MAIL_A_SZ RCPT_U RCPT_V RCPT_W DATA SENT_BODY QUIT,
	  "0 D 250 2.0.0 queued as Z\n1 B 550 5.1.1 no such user here\n"
	  "2 T 451 4.7.1 one two\n=\n", X_QUIT },
	{ "an enhanced code of the wrong class is text; defaults", NULL,
	  { &M3 },
	  GREET EHLO_NONE "250 sender ok\r\n" "250 recipient ok\r\n"
	  "550 2.1.1 odd\r\n" "553 4.1.1 odder\r\n" GO "250 9.9.9 done\r\n" BYE,
	  EHLO MAIL_A RCPT_U RCPT_V RCPT_W DATA SENT_BODY QUIT,
	  "0 D 250 2.6.0 9.9.9 done\n1 B 550 5.1.1 2.1.1 odd\n"
	  "2 B 553 5.1.1 4.1.1 odder\n=\n", X_QUIT },
	{ "421 mid-transaction (pipelined): everything pending deferred",
	  NULL, { &M3 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK "550 5.1.1 no\r\n"
	  "421 4.3.2 shutting down\r\n" RCPT_OK,
	  EHLO MAIL_A_SZ RCPT_U RCPT_V RCPT_W DATA,
	  "0 T 421 4.3.2 shutting down\n1 B 550 5.1.1 no\n"
	  "2 T 421 4.3.2 shutting down\n=\n", X_TEMP, 421 },
	{ "421 after the data: deferred", NULL, { &M1 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK GO "421-4.4.2 timeout\r\n421 bye\r\n",
	  EHLO MAIL_A RCPT_U DATA SENT_BODY,
	  "0 T 421 4.4.2 timeout bye\n=\n", X_TEMP, 421 },
	{ "421 while idle", NULL, { 0 },
	  GREET EHLO_NONE "421 4.4.2 idle too long\r\n", EHLO, NULL, X_TEMP,
	  421, true },
	{ "unsolicited reply while idle: protocol error", NULL, { 0 },
	  GREET EHLO_NONE "250 hello?\r\n", EHLO, NULL, X_TEMP, 451, true },
	{ "garbage: letters for a code", NULL, { &M1 },
	  GREET EHLO_NONE MAIL_OK "2x0 hm\r\n", EHLO MAIL_A RCPT_U,
	  "0 T 451 4.5.0 protocol error: garbled reply (RCPT TO) [local]\n=\n",
	  X_TEMP, 451 },
	{ "garbage: mixed codes in one reply", NULL, { &M1 },
	  GREET EHLO_NONE "250-ok\r\n251 ok\r\n", EHLO MAIL_A,
	  "0 T 451 4.5.0 protocol error: garbled reply (MAIL FROM) [local]\n"
	  "=\n", X_TEMP, 451 },
	{ "garbage: no SP or - after the code", NULL, { 0 },
	  "220mx\r\n", "", NULL, X_TEMP, 451 },
	{ "garbage: code out of range", NULL, { 0 },
	  "620 mx\r\n", "", NULL, X_TEMP, 451 },
	{ "garbage: a short line", NULL, { 0 },
	  GREET "25\r\n", EHLO, NULL, X_TEMP, 451 },
};

/* ----------------------------------------------------- capabilities */

static void tweak_no_pipe(struct harness *h)
{
	h->conf.no_pipelining = true;
}

static const struct transcript caps[] = {
	{ "8BITMIME offered: BODY=8BITMIME", NULL, { &M_8BIT },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO "MAIL FROM:<a@b.test> SIZE=7 BODY=8BITMIME\r\n" RCPT_U DATA
	  "caf\xc3\xa9\r\n.\r\n" QUIT, R_DELIVERED(0) "=\n", X_QUIT },
	{ "BODY=7BIT passed on", NULL, { &M_7BIT },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO "MAIL FROM:<a@b.test> SIZE=7 BODY=7BIT\r\n" RCPT_U DATA
	  "plain\r\n.\r\n" QUIT, R_DELIVERED(0) "=\n", X_QUIT },
	{ "8-bit body, no 8BITMIME: bounced 5.6.3 unsent", NULL, { &M_8BIT },
	  GREET EHLO_PIPE BYE, EHLO QUIT,
	  "0 B 554 5.6.3 8-bit message, but 8BITMIME was not offered by the "
	  "host [local]\n=\n", X_QUIT },
	{ "undeclared 8-bit body, no 8BITMIME: bounced too", NULL,
	  { &M_8BIT_UNDECLARED, &M1 },
	  GREET EHLO_PIPE MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U DATA SENT_BODY QUIT,
	  "0 B 554 5.6.3 8-bit message, but 8BITMIME was not offered by the "
	  "host [local]\n=\n" R_DELIVERED(0) "=\n", X_QUIT },
	{ "declared 8BITMIME but 7-bit, no 8BITMIME: sent plain", NULL,
	  { &M_7BIT_DECLARED_8 },
	  GREET EHLO_NONE MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U DATA "plain\r\n.\r\n" QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
	{ "BINARYMIME: bounced unsent", NULL, { &M_BINARY },
	  GREET EHLO_ALL BYE, EHLO QUIT,
	  "0 B 554 5.6.3 BINARYMIME message cannot be relayed by this client "
	  "[local]\n=\n", X_QUIT },
	{ "SMTPUTF8 offered and needed", NULL, { &M_UTF8 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO "MAIL FROM:<j\xc3\xb6rg@b.test> SIZE=3 BODY=8BITMIME SMTPUTF8\r\n"
	  RCPT_U DATA "x\r\n.\r\n" QUIT, R_DELIVERED(0) "=\n", X_QUIT },
	{ "SMTPUTF8 needed, not offered: bounced 5.6.7 unsent", NULL,
	  { &M_UTF8 },
	  GREET "250-mx\r\n250 8BITMIME\r\n" BYE, EHLO QUIT,
	  "0 B 553 5.6.7 SMTPUTF8 is required, but was not offered by the "
	  "host [local]\n=\n", X_QUIT },
	{ "SIZE limit exceeded: bounced 5.3.4 unsent", NULL, { &M_BIG },
	  GREET EHLO_ALL BYE, EHLO QUIT,
	  "0 B 552 5.3.4 message size exceeds the host's fixed limit "
	  "[local]\n=\n", X_QUIT },
	{ "SIZE without a limit: SIZE= given, anything goes", NULL, { &M1 },
	  GREET "250-mx\r\n250 size\r\n" MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
	{ "DSN offered: RET, ENVID, NOTIFY, ORCPT, xtext", NULL, { &M_DSN },
	  GREET EHLO_ALL MAIL_OK RCPT_OK RCPT_OK RCPT_OK GO QUEUED BYE,
	  EHLO "MAIL FROM:<a@b.test> SIZE=3 RET=HDRS ENVID=id+201+2B2+3D3\r\n"
	  "RCPT TO:<u@d.test> NOTIFY=SUCCESS,FAILURE "
	  "ORCPT=rfc822;u+2B1+3Dx@d.test\r\n"
	  "RCPT TO:<v@d.test> NOTIFY=NEVER\r\nRCPT TO:<w@d.test> NOTIFY=DELAY\r\n"
	  DATA "x\r\n.\r\n" QUIT,
	  R_DELIVERED(0) R_DELIVERED(1) R_DELIVERED(2) "=\n", X_QUIT },
	{ "DSN not offered: no DSN parameters", NULL, { &M_DSN },
	  GREET EHLO_PIPE MAIL_OK RCPT_OK RCPT_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A RCPT_U RCPT_V RCPT_W DATA "x\r\n.\r\n" QUIT,
	  R_DELIVERED(0) R_DELIVERED(1) R_DELIVERED(2) "=\n", X_QUIT },
	{ "CR LF in an address: bounced unsent, nothing injected", NULL,
	  { &M_INJECT, &M1 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA SENT_BODY QUIT,
	  "0 B 553 5.1.3 address with control characters or angle brackets "
	  "[local]\n1 B 553 5.1.3 address with control characters or angle "
	  "brackets [local]\n=\n" R_DELIVERED(0) "=\n", X_QUIT },
	{ "no_pipelining conf", tweak_no_pipe, { &M1 },
	  GREET EHLO_ALL MAIL_OK RCPT_OK GO QUEUED BYE,
	  EHLO MAIL_A_SZ RCPT_U DATA SENT_BODY QUIT,
	  R_DELIVERED(0) "=\n", X_QUIT },
};

Test(smtp_client, basic) { RUN(basic); }
Test(smtp_client, every_stage) { RUN(stages); }
Test(smtp_client, multiline_421_garbage) { RUN(multi); }
Test(smtp_client, capabilities) { RUN(caps); }

/* ---------------------------------------------------------- one-offs */

Test(smtp_client, ehlo_keywords_recorded)
{
	struct harness h;
	const struct smtp_client_caps *cp;

	h_init(&h, NULL, NULL);
	h.idle = true;
	feed_str(&h, GREET EHLO_ALL);
	cp = smtp_client_caps(h.c);
	cr_assert_eq(cp->flags, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE |
		     SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 | SMTP_CAP_DSN |
		     SMTP_CAP_ENHANCEDSTATUSCODES | SMTP_CAP_AUTH |
		     SMTP_CAP_STARTTLS | SMTP_CAP_CHUNKING);
	cr_assert_eq(cp->size, 1000);
	cr_assert_str_eq(cp->auth, "PLAIN LOGIN");
	cr_assert_eq(h.readies, 1);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_READY);
	h_free(&h);

	/* a refused EHLO forgets whatever its lines said */
	h_init(&h, NULL, NULL);
	h.idle = true;
	feed_str(&h, GREET "502-PIPELINING\r\n502 SIZE 5\r\n250 mx\r\n");
	cr_assert_eq(smtp_client_caps(h.c)->flags, 0);
	cr_assert_eq(smtp_client_get_stats(h.c)->helo_fallbacks, 1);
	assert_bytes("helo", h.out, h.out_len, EHLO HELO, strlen(EHLO HELO));
	h_free(&h);
}

Test(smtp_client, timeouts_per_stage)
{
	struct harness h;

	h_init(&h, NULL, (const struct mspec *[]){ &M1, NULL });
	cr_assert_eq(smtp_client_timeout_ms(h.c), 300000); /* 220 */
	feed_str(&h, GREET);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 300000); /* EHLO */
	feed_str(&h, EHLO_NONE);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_MAIL);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 300000);
	feed_str(&h, MAIL_OK);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_RCPT);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 300000);
	feed_str(&h, RCPT_OK);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_DATA);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 120000);
	feed_str(&h, GO);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_DATA_END);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 600000);
	feed_str(&h, QUEUED);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_QUIT);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 300000);
	/* the QUIT times out: closed, still a quit */
	smtp_client_timeout(h.c);
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(h.end, SMTP_CLIENT_END_QUIT);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 0);
	smtp_client_timeout(h.c); /* no-op */
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(smtp_client_get_stats(h.c)->timeouts, 1);
	h_free(&h);
}

static const char *const timeout_at[] = {
	"", GREET, GREET EHLO_NONE, GREET EHLO_NONE MAIL_OK,
	GREET EHLO_NONE MAIL_OK RCPT_OK, GREET EHLO_NONE MAIL_OK RCPT_OK GO,
};
static const char *const timeout_res[] = {
	"", "",
	"0 T 451 4.4.2 timeout (MAIL FROM) [local]\n=\n",
	"0 T 451 4.4.2 timeout (RCPT TO) [local]\n=\n",
	"0 T 451 4.4.2 timeout (DATA) [local]\n=\n",
	"0 T 451 4.4.2 timeout (end of data) [local]\n=\n",
};

Test(smtp_client, timeout_fails_the_stage)
{
	for (size_t i = 0; i < sizeof(timeout_at) / sizeof(timeout_at[0]);
	     i++) {
		struct harness h;
		size_t before;

		h_init(&h, NULL, (const struct mspec *[]){ &M1, NULL });
		feed_str(&h, timeout_at[i]);
		before = h.out_len;
		smtp_client_timeout(h.c);
		cr_assert_eq(h.closed, 1, "%zu", i);
		cr_assert_eq(h.end, SMTP_CLIENT_END_HOST_TEMP, "%zu", i);
		cr_assert_eq(h.why.code, 451);
		cr_assert_str_eq(h.why.enh, "4.4.2");
		cr_assert(h.why.local);
		cr_assert_eq(h.out_len, before, "%zu: wrote", i);
		assert_bytes("timeout results", h.res, h.res_len,
			     timeout_res[i], strlen(timeout_res[i]));
		/* what comes late is ignored */
		feed_str(&h, RCPT_OK);
		cr_assert_eq(h.out_len, before);
		h_free(&h);
	}
}

Test(smtp_client, timeout_and_loss_when_idle)
{
	struct harness h;

	h_init(&h, NULL, NULL);
	h.idle = true;
	feed_str(&h, GREET EHLO_NONE);
	cr_assert_eq(smtp_client_timeout_ms(h.c), 0);
	smtp_client_timeout(h.c);
	cr_assert_eq(h.closed, 0);
	smtp_client_lost(h.c);
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(h.end, SMTP_CLIENT_END_HOST_TEMP);
	h_free(&h);

	h_init(&h, NULL, (const struct mspec *[]){ &M3, NULL });
	feed_str(&h, GREET EHLO_ALL MAIL_OK RCPT_OK);
	smtp_client_lost(h.c);
	assert_bytes("lost", h.res, h.res_len,
		     "0 T 451 4.4.2 lost connection (RCPT TO) [local]\n"
		     "1 T 451 4.4.2 lost connection (RCPT TO) [local]\n"
		     "2 T 451 4.4.2 lost connection (RCPT TO) [local]\n=\n",
		     strlen("0 T 451 4.4.2 lost connection (RCPT TO) [local]\n"
			    "1 T 451 4.4.2 lost connection (RCPT TO) [local]\n"
			    "2 T 451 4.4.2 lost connection (RCPT TO) [local]\n=\n"));
	cr_assert_eq(smtp_client_get_stats(h.c)->timeouts, 0);
	h_free(&h);
}

Test(smtp_client, overlong_reply_line)
{
	struct harness h;
	char *line = malloc(SMTP_CLIENT_MAX_LINE + 8);

	cr_assert_not_null(line);
	/* exactly the limit (CR included) is fine */
	memcpy(line, "220 ", 4);
	memset(line + 4, 'x', SMTP_CLIENT_MAX_LINE - 5);
	memcpy(line + SMTP_CLIENT_MAX_LINE - 1, "\r\n", 3);
	h_init(&h, NULL, NULL);
	h.idle = true;
	feed_split(&h, line, strlen(line), SPLIT_BYTES, 0);
	cr_assert_eq(h.closed, 0);
	assert_bytes("limit", h.out, h.out_len, EHLO, strlen(EHLO));
	h_free(&h);

	/* one more octet is a protocol error, before the LF comes */
	memset(line + 4, 'x', SMTP_CLIENT_MAX_LINE - 3);
	h_init(&h, NULL, NULL);
	feed_split(&h, line, SMTP_CLIENT_MAX_LINE + 1, SPLIT_RANDOM, 7);
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(h.end, SMTP_CLIENT_END_HOST_TEMP);
	cr_assert_str_eq(h.why.text, "protocol error: reply line too long "
			 "(greeting)");
	cr_assert_eq(h.out_len, 0);
	cr_assert_eq(smtp_client_get_stats(h.c)->protocol_errors, 1);
	h_free(&h);
	free(line);
}

Test(smtp_client, too_many_reply_lines)
{
	struct harness h;

	h_init(&h, NULL, NULL);
	for (int i = 0; i < SMTP_CLIENT_MAX_LINES - 1; i++)
		feed_str(&h, "220-hello\r\n");
	feed_str(&h, "220 last\r\n");
	cr_assert_eq(h.closed, 0);
	h_free(&h);

	h_init(&h, NULL, NULL);
	for (int i = 0; i <= SMTP_CLIENT_MAX_LINES; i++)
		feed_str(&h, "220-hello\r\n");
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(h.end, SMTP_CLIENT_END_HOST_TEMP);
	h_free(&h);
}

static void tweak_block16(struct harness *h)
{
	h->conf.data_block = 16;
}

/* The body in blocks of 16 octets, one per smtp_client_drained(), gives
 * the same bytes as one block: stuffing survives every block edge. */
Test(smtp_client, data_blocks)
{
	static const char want_body[] =
		"..lead\r\n...two\r\nmid.dot\r\n..\r\n\r\n.. sp\r\nlast line"
		"\r\n.\r\n";
	struct harness h;
	size_t start;
	int blocks = 0;

	h_init(&h, tweak_block16, (const struct mspec *[]){ &M_DOTS, NULL });
	feed_str(&h, GREET EHLO_PIPE MAIL_OK RCPT_OK);
	start = h.out_len; /* DATA went with MAIL and RCPT */
	feed_str(&h, GO);
	while (smtp_client_stage(h.c) == SMTP_CLIENT_DATA_BLOCK) {
		cr_assert_eq(smtp_client_timeout_ms(h.c), 180000);
		cr_assert_leq(h.out_len - start, (size_t)16 * (blocks + 1));
		smtp_client_drained(h.c);
		blocks++;
	}
	cr_assert_geq(blocks, 3);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_DATA_END);
	smtp_client_drained(h.c); /* no-op now */
	assert_bytes("blocks", h.out + start, h.out_len - start, want_body,
		     strlen(want_body));
	feed_str(&h, QUEUED BYE);
	cr_assert_eq(h.end, SMTP_CLIENT_END_QUIT);
	h_free(&h);

	/* a reply while the data is still going out is a protocol error */
	h_init(&h, tweak_block16, (const struct mspec *[]){ &M_DOTS, NULL });
	feed_str(&h, GREET EHLO_PIPE MAIL_OK RCPT_OK GO);
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_DATA_BLOCK);
	feed_str(&h, "554 stop\r\n");
	cr_assert_eq(h.end, SMTP_CLIENT_END_HOST_TEMP);
	assert_bytes("early", h.res, h.res_len,
		     "0 T 451 4.5.0 protocol error: reply not due (message data) "
		     "[local]\n=\n",
		     strlen("0 T 451 4.5.0 protocol error: reply not due (message "
			    "data) [local]\n=\n"));
	h_free(&h);
}

Test(smtp_client, send_and_quit_refused_out_of_turn)
{
	struct harness h;
	struct envelope *e;
	uint32_t bad = 5, ok = 0;

	h_init(&h, NULL, NULL);
	h.idle = true;
	e = mk_env(&M1);
	cr_assert_eq(smtp_client_send(h.c, e, &ok, 1), -EBUSY);
	cr_assert_eq(smtp_client_quit(h.c), -EBUSY);
	feed_str(&h, GREET EHLO_ALL);
	cr_assert_eq(smtp_client_send(h.c, e, &ok, 0), -EINVAL);
	cr_assert_eq(smtp_client_send(h.c, e, &bad, 1), -EINVAL);
	cr_assert_eq(smtp_client_send(h.c, e, &ok, 1), 0);
	cr_assert_eq(smtp_client_send(h.c, e, &ok, 1), -EBUSY);
	cr_assert_eq(smtp_client_quit(h.c), -EBUSY);
	h_free(&h); /* freed with a message in flight: no leak */
	envelope_free(e);

	cr_assert_null(smtp_client_new(&(struct smtp_client_conf){ 0 },
				       &h.ops, NULL));
}

Test(smtp_client, stats)
{
	struct harness h;
	const struct smtp_client_stats *st;

	h_init(&h, NULL, (const struct mspec *[]){ &M3, &M_BIG, &M1, NULL });
	feed_str(&h, GREET EHLO_ALL MAIL_OK RCPT_OK "451 no\r\n550 no\r\n" GO
		 QUEUED MAIL_OK "550 no\r\n" "554 none\r\n" "250 ok\r\n" BYE);
	st = smtp_client_get_stats(h.c);
	cr_assert_eq(st->messages, 3);
	cr_assert_eq(st->delivered, 1);
	cr_assert_eq(st->deferred, 1);
	cr_assert_eq(st->bounced, 3);
	cr_assert_eq(st->rsets, 1);
	cr_assert_eq(st->replies, 13);
	cr_assert_eq(st->protocol_errors, 0);
	cr_assert_eq(st->bytes_out, h.out_len);
	cr_assert_eq(h.end, SMTP_CLIENT_END_QUIT);
	h_free(&h);
}

/* Random replies in every stage (mostly well-formed, often not): the
 * engine never asserts, never writes after close, closes at most once,
 * and reports every message handed to it exactly once. */
static const char *const frags[] = {
	"220 x\r\n", "250 ok\r\n", "250-PIPELINING\r\n", "250-SIZE 10\r\n",
	"250-8BITMIME\r\n", "354 go\r\n", "421 bye\r\n", "451 4.3.0 t\r\n",
	"550 5.1.1 n\r\n", "554 no\r\n", "221 bye\r\n", "500 ?\r\n",
	"2", "5", "0", "-", " ", "\r", "\n", "x", "25", "250 ",
};

Test(smtp_client, random_replies)
{
	for (uint32_t seed = 1; seed <= 400; seed++) {
		struct harness h;
		uint32_t st = seed * 2654435761u;
		int dones = 0;

		h_init(&h, seed & 1 ? tweak_block16 : NULL,
		       (const struct mspec *[]){ &M3, &M_DOTS, &M1, NULL });
		for (int i = 0; i < 300 && !h.closed; i++) {
			const char *f = frags[xorshift(&st) %
					      (sizeof(frags) / sizeof(frags[0]))];

			feed_str(&h, f);
			switch (xorshift(&st) % 64) {
			case 0:
				smtp_client_timeout(h.c);
				break;
			case 1:
			case 2:
			case 3:
				smtp_client_drained(h.c);
				break;
			default:
				break;
			}
		}
		smtp_client_lost(h.c);
		cr_assert_eq(h.closed, 1, "seed %u", seed);
		cr_assert_not(h.write_after_close, "seed %u", seed);
		for (size_t i = 0; i < h.res_len; i++)
			dones += h.res[i] == '=';
		cr_assert_eq(dones, h.next, "seed %u: %d done, %d sent", seed,
			     dones, h.next);
		h_free(&h);
	}
}

/* ------------------------------------------- against our own server */

/* The client engine talking to the server engine (smtp_server.c) in
 * memory: what the server stores is what the client was given. */
struct loop {
	struct harness h;       /* the client side */
	struct smtp_server *s;
	char *s2c;              /* server bytes not yet fed to the client */
	size_t s2c_len, s2c_cap;
	size_t c2s_off;         /* client bytes (h.out) fed to the server */
	struct envelope *got[4];
	int ngot, s_closed;
};

static void l_swrite(void *u, const void *d, size_t n)
{
	struct loop *l = u;

	if (l->s2c_len + n > l->s2c_cap) {
		l->s2c_cap = (l->s2c_len + n) * 2;
		l->s2c = realloc(l->s2c, l->s2c_cap);
		cr_assert_not_null(l->s2c);
	}
	memcpy(l->s2c + l->s2c_len, d, n);
	l->s2c_len += n;
}

static void l_sclose(void *u)
{
	((struct loop *)u)->s_closed++;
}

static enum smtp_verdict l_srcpt(void *u, const struct envelope *e,
				 const char *addr)
{
	(void)u;
	(void)e;
	return strncmp(addr, "nobody", 6) == 0 ? SMTP_REJECT_NO_USER : SMTP_OK;
}

static void l_smessage(void *u, struct envelope *e)
{
	struct loop *l = u;

	cr_assert_lt(l->ngot, 4);
	l->got[l->ngot++] = e;
	smtp_server_queued(l->s, 0, "QUEUEID");
}

static const struct mspec M_LOOP1 = {
	"a@b.test",
	{ { "u@d.test", "rfc822;u+1=x@d.test",
	    ENV_NOTIFY_SUCCESS | ENV_NOTIFY_DELAY },
	  { "nobody@d.test" }, { "v@d.test", NULL, ENV_NOTIFY_NEVER } },
	"Subject: caf\xc3\xa9\r\n\r\n.one\r\n..two\r\n.\r\nend.\r\n.",
	.body_type = ENV_BODY_8BITMIME, .ret = ENV_RET_FULL,
	.envid = "id 1+2=3" };
static const struct mspec M_LOOP2 = {
	"", { { "w@d.test" } }, "" };

static void l_pump(struct loop *l)
{
	for (int rounds = 0; rounds < 10000; rounds++) {
		bool moved = false;

		if (l->c2s_off < l->h.out_len && !l->s_closed) {
			size_t n = l->h.out_len - l->c2s_off;

			smtp_server_input(l->s, (const uint8_t *)l->h.out +
					  l->c2s_off, n);
			l->c2s_off += n;
			moved = true;
		}
		if (l->s2c_len > 0) {
			char *buf = l->s2c;
			size_t n = l->s2c_len;

			l->s2c = NULL;
			l->s2c_len = l->s2c_cap = 0;
			smtp_client_input(l->h.c, (const uint8_t *)buf, n);
			free(buf);
			moved = true;
		}
		if (smtp_client_stage(l->h.c) == SMTP_CLIENT_DATA_BLOCK) {
			smtp_client_drained(l->h.c);
			moved = true;
		}
		if (!moved)
			return;
	}
	cr_assert_fail("the loop never settles");
}

static void check_loop(tweak_fn *tweak)
{
	struct smtp_server_conf sc;
	struct smtp_server_ops so = {
		.write = l_swrite, .close = l_sclose, .rcpt = l_srcpt,
		.message = l_smessage,
	};
	struct loop l;
	const struct envelope *e;
	const char *want = "Subject: caf\xc3\xa9\r\n\r\n.one\r\n..two\r\n.\r\n"
		"end.\r\n.\r\n";

	memset(&l, 0, sizeof(l));
	h_init(&l.h, tweak, (const struct mspec *[]){ &M_LOOP1, &M_LOOP2,
						      NULL });
	smtp_server_conf_defaults(&sc);
	sc.hostname = "mx.test";
	l.s = smtp_server_new(&sc, &so, &l, "198.18.0.2", 40000, 25);
	cr_assert_not_null(l.s);
	smtp_server_start(l.s);
	l_pump(&l);

	cr_assert_eq(l.h.closed, 1);
	cr_assert_eq(l.h.end, SMTP_CLIENT_END_QUIT);
	cr_assert_eq(l.s_closed, 1);
	assert_bytes("loop results", l.h.res, l.h.res_len,
		     "0 D 250 2.0.0 Ok: queued as QUEUEID\n"
		     "1 B 550 5.1.1 <nobody@d.test>: Recipient address "
		     "rejected: User unknown\n"
		     "2 D 250 2.0.0 Ok: queued as QUEUEID\n=\n"
		     "0 D 250 2.0.0 Ok: queued as QUEUEID\n=\n",
		     strlen("0 D 250 2.0.0 Ok: queued as QUEUEID\n"
			    "1 B 550 5.1.1 <nobody@d.test>: Recipient address "
			    "rejected: User unknown\n"
			    "2 D 250 2.0.0 Ok: queued as QUEUEID\n=\n"
			    "0 D 250 2.0.0 Ok: queued as QUEUEID\n=\n"));
	cr_assert_eq(l.ngot, 2);
	e = l.got[0];
	cr_assert_str_eq(e->mail_from, "a@b.test");
	cr_assert_eq(e->nrcpt, 2);
	cr_assert_str_eq(e->rcpt[0].addr, "u@d.test");
	cr_assert_str_eq(e->rcpt[0].orcpt, "rfc822;u+1=x@d.test");
	cr_assert_eq(e->rcpt[0].notify, ENV_NOTIFY_SUCCESS | ENV_NOTIFY_DELAY);
	cr_assert_str_eq(e->rcpt[1].addr, "v@d.test");
	cr_assert_eq(e->rcpt[1].notify, ENV_NOTIFY_NEVER);
	cr_assert_str_eq(e->envid, "id 1+2=3");
	cr_assert_eq(e->ret, ENV_RET_FULL);
	cr_assert_eq(e->body_type, ENV_BODY_8BITMIME);
	cr_assert_eq(e->declared_size, strlen(M_LOOP1.body));
	/* after the server's own Received: comes exactly our body */
	cr_assert_geq(e->body_len, strlen(want));
	assert_bytes("loop body", (const char *)e->body + e->body_len -
		     strlen(want), strlen(want), want, strlen(want));
	cr_assert_str_eq(l.got[1]->mail_from, "");
	cr_assert_eq(l.got[1]->nrcpt, 1);
	for (int i = 0; i < l.ngot; i++)
		envelope_free(l.got[i]);
	smtp_server_free(l.s);
	free(l.s2c);
	h_free(&l.h);
}

Test(smtp_client, against_our_server)
{
	check_loop(NULL);
	check_loop(tweak_block16);
	check_loop(tweak_no_pipe);
}
