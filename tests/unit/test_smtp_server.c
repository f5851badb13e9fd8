/*
 * test_smtp_server.c: the SMTP server engine (smtp/), as transcripts:
 * client bytes in, the exact reply bytes out, and the exact envelopes
 * and bodies handed to ops->message.
 *
 * Every transcript runs in 3 x 10 ways: its input whole, byte by byte,
 * and at 8 seeded random split points; and the message answered (a)
 * from inside ops->message, (b) after each input call, (c) only after
 * all input (so everything after the dot waits in the engine's backlog).
 * All 30 must give the same bytes. The sanitizer build runs all of it
 * (LSan: every envelope and session is freed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "smtp/smtp_server.h"

/* the tables name only the fields that matter to each case */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define DATE "Tue, 14 Nov 2023 22:13:20 +0000"

/* ---------------------------------------------------------------- harness */

enum qmode { Q_SYNC, Q_AFTER_INPUT, Q_AT_END, Q_MODES };
enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };
#define RANDOM_RUNS 8

struct harness {
	struct smtp_server *s;
	struct smtp_server_conf conf;
	struct smtp_server_ops ops;
	char *out;
	size_t out_len, out_cap;
	int closed;
	bool write_after_close;
	unsigned qid;
	enum qmode qmode;
	struct envelope *msgs[64];
	int nmsgs;
	int answered; /* msgs[0 .. answered) got smtp_server_queued */
	int starttls_rc, auth_rc, starttls_calls;
	char auth_seen[128];
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

static void h_close(void *u)
{
	((struct harness *)u)->closed++;
}

/* Policy by the local part's first word, so every test reads alike. */
static enum smtp_verdict h_mail(void *u, struct envelope *e)
{
	struct harness *h = u;

	snprintf(e->qid, sizeof(e->qid), "QID%011u", ++h->qid);
	if (strncmp(e->mail_from, "bad", 3) == 0)
		return SMTP_REJECT_POLICY;
	if (strncmp(e->mail_from, "tempsender", 10) == 0)
		return SMTP_TEMPFAIL;
	return SMTP_OK;
}

static enum smtp_verdict h_rcpt(void *u, const struct envelope *e,
				const char *addr)
{
	(void)u;
	(void)e;
	if (strncmp(addr, "unknown", 7) == 0)
		return SMTP_REJECT_NO_USER;
	if (strncmp(addr, "relay", 5) == 0)
		return SMTP_REJECT_RELAY;
	if (strncmp(addr, "policy", 6) == 0)
		return SMTP_REJECT_POLICY;
	if (strncmp(addr, "temp", 4) == 0)
		return SMTP_TEMPFAIL;
	if (strncmp(addr, "full", 4) == 0)
		return SMTP_TEMPFAIL_STORAGE;
	return SMTP_OK;
}

/* The queue's answer is chosen by the sender, so it is the same in
 * every mode. */
static int q_status(const struct envelope *e)
{
	if (strncmp(e->mail_from, "enospc", 6) == 0)
		return -ENOSPC;
	if (strncmp(e->mail_from, "eio", 3) == 0)
		return -EIO;
	return 0;
}

static void answer_one(struct harness *h)
{
	struct envelope *e = h->msgs[h->answered++];

	smtp_server_queued(h->s, q_status(e), NULL);
}

static void h_message(void *u, struct envelope *e)
{
	struct harness *h = u;

	cr_assert_lt(h->nmsgs, 64);
	cr_assert(smtp_server_blocked(h->s));
	cr_assert_eq(smtp_server_phase(h->s), SMTP_PHASE_PENDING);
	h->msgs[h->nmsgs++] = e;
	if (h->qmode == Q_SYNC)
		answer_one(h);
}

static time_t h_now(void *u)
{
	(void)u;
	return NOW;
}

static int h_starttls(void *u)
{
	struct harness *h = u;

	h->starttls_calls++;
	return h->starttls_rc;
}

static int h_auth(void *u, const char *authzid, const char *authcid,
		  const char *pass)
{
	struct harness *h = u;

	snprintf(h->auth_seen, sizeof(h->auth_seen), "%s|%s|%s", authzid,
		 authcid, pass);
	return h->auth_rc;
}

typedef void tweak_fn(struct harness *h);

static void h_init(struct harness *h, tweak_fn *tweak, enum qmode qm)
{
	memset(h, 0, sizeof(*h));
	smtp_server_conf_defaults(&h->conf);
	h->conf.hostname = "mx.test";
	h->ops.write = h_write;
	h->ops.close = h_close;
	h->ops.mail = h_mail;
	h->ops.rcpt = h_rcpt;
	h->ops.message = h_message;
	h->ops.now = h_now;
	h->qmode = qm;
	if (tweak)
		tweak(h);
	h->s = smtp_server_new(&h->conf, &h->ops, h, "198.18.0.1", 40000, 25);
	cr_assert_not_null(h->s);
	smtp_server_start(h->s);
}

static void answer_pending(struct harness *h)
{
	while (h->answered < h->nmsgs && smtp_server_blocked(h->s))
		answer_one(h);
}

static void h_feed(struct harness *h, const char *in, size_t len)
{
	smtp_server_input(h->s, (const uint8_t *)in, len);
	if (h->qmode == Q_AFTER_INPUT)
		answer_pending(h);
}

static void h_free(struct harness *h)
{
	for (int i = 0; i < h->nmsgs; i++)
		envelope_free(h->msgs[i]);
	smtp_server_free(h->s);
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
		h_feed(h, in + i, n);
		i += n;
	}
	if (h->qmode == Q_AT_END)
		answer_pending(h);
	answer_pending(h);
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
	if (glen != wlen || memcmp(got, want, wlen) != 0) {
		char *g = esc(got, glen), *w = esc(want, wlen);

		cr_log_error("%s: got\n%s\nwant\n%s", what, g, w);
		free(g);
		free(w);
		cr_assert_fail("%s: reply bytes differ", what);
	}
}

/* ------------------------------------------------------------ transcripts */

#define GREET "220 mx.test ESMTP dpmail\r\n"
#define EHLO "EHLO client.test\r\n"
#define EHLO_R "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n" \
	"250-SMTPUTF8\r\n250 CHUNKING\r\n"
#define MAIL_OK "250 2.1.0 Ok\r\n"
#define RCPT_OK "250 2.1.5 Ok\r\n"
#define GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED(n) "250 2.0.0 Ok: queued as QID0000000000" #n "\r\n"
#define BYE "221 2.0.0 Bye\r\n"
#define OK "250 2.0.0 Ok\r\n"
#define UNKNOWN "502 5.5.2 Error: command not recognized\r\n"
#define SEQ_HELO "503 5.5.1 Error: send HELO/EHLO first\r\n"
#define SEQ_MAIL "503 5.5.1 Error: need MAIL command\r\n"
#define NESTED "503 5.5.1 Error: nested MAIL command\r\n"
#define BAD_SENDER "501 5.1.7 Bad sender address syntax\r\n"
#define BAD_RCPT "501 5.1.3 Bad recipient address syntax\r\n"
#define NO_RCPTS "554 5.5.1 Error: no valid recipients\r\n"
#define TOO_BIG "552 5.3.4 Message size exceeds fixed limit\r\n"
#define BARE "550 5.6.11 Error: bare <CR> or <LF> received\r\n"
#define NEED_UTF8 "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n"
/* the usual opening: EHLO, one sender, one recipient */
#define TXN_IN EHLO "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test>\r\n"
#define TXN_OUT GREET EHLO_R MAIL_OK RCPT_OK

#define RCVD_FOR(helo, proto, n, rcpt) \
	"Received: from " helo " (198.18.0.1 [198.18.0.1])\r\n" \
	"\tby mx.test (dpmail) with " proto " id QID0000000000" #n "\r\n" \
	"\tfor <" rcpt ">; " DATE "\r\n"
#define RCVD_MANY(helo, proto, n) \
	"Received: from " helo " (198.18.0.1 [198.18.0.1])\r\n" \
	"\tby mx.test (dpmail) with " proto " id QID0000000000" #n ";\r\n" \
	"\t" DATE "\r\n"
#define RCVD1(n) RCVD_FOR("client.test", "ESMTP", n, "u@d.test")

struct exp_rcpt {
	const char *addr, *orcpt;
	uint8_t notify;
};

struct exp_msg {
	const char *from;
	struct exp_rcpt rcpt[4];
	const char *body;   /* whole body, our Received: included */
	const char *body_has; /* or: only a substring to find */
	const char *envid;
	uint8_t ret, body_type;
	bool smtputf8, helo_only;
	uint64_t size;
	uint32_t nrcpt; /* when more than the four listed */
};

struct transcript {
	const char *name;
	tweak_fn *tweak;
	const char *in;
	const char *out;
	bool closes;
	int nmsg;
	struct exp_msg msg[4];
	int errors; /* -1: not checked */
};

static void check_msg(const char *what, const struct exp_msg *x,
		      const struct envelope *e)
{
	int n = 0;

	while (n < 4 && x->rcpt[n].addr != NULL)
		n++;
	cr_assert_str_eq(e->mail_from, x->from, "%s: mail_from", what);
	cr_assert_eq(e->nrcpt, x->nrcpt ? x->nrcpt : (uint32_t)n,
		     "%s: nrcpt %u want %d", what, e->nrcpt, n);
	for (int i = 0; i < n; i++) {
		cr_assert_str_eq(e->rcpt[i].addr, x->rcpt[i].addr, "%s", what);
		cr_assert_str_eq(e->rcpt[i].orcpt,
				 x->rcpt[i].orcpt ? x->rcpt[i].orcpt : "",
				 "%s", what);
		cr_assert_eq(e->rcpt[i].notify, x->rcpt[i].notify, "%s", what);
	}
	cr_assert_str_eq(e->envid, x->envid ? x->envid : "", "%s", what);
	cr_assert_eq(e->ret, x->ret, "%s: ret", what);
	cr_assert_eq(e->body_type, x->body_type, "%s: body", what);
	cr_assert_eq(e->smtputf8, x->smtputf8, "%s: smtputf8", what);
	cr_assert_eq(e->esmtp, !x->helo_only, "%s: esmtp", what);
	cr_assert_eq(e->declared_size, x->size, "%s: size", what);
	cr_assert_str_eq(e->client_addr, "198.18.0.1", "%s", what);
	cr_assert_eq(e->client_port, 40000);
	cr_assert_eq(e->local_port, 25);
	cr_assert_eq(e->arrival_us, (uint64_t)NOW * 1000000u, "%s", what);
	if (x->body != NULL)
		assert_bytes(what, (const char *)e->body, e->body_len, x->body,
			     strlen(x->body));
	if (x->body_has != NULL) {
		cr_assert(e->body_len >= strlen(x->body_has), "%s", what);
		cr_assert_not_null(memmem(e->body, e->body_len, x->body_has,
					  strlen(x->body_has)),
				   "%s: body lacks \"%s\"", what, x->body_has);
	}
}

static void run_one(const struct transcript *t, enum qmode qm, enum split sp,
		    uint32_t seed)
{
	struct harness h;
	char what[160];

	snprintf(what, sizeof(what), "%s [q%d split%d seed%u]", t->name, qm,
		 sp, seed);
	h_init(&h, t->tweak, qm);
	feed_split(&h, t->in, strlen(t->in), sp, seed);
	assert_bytes(what, h.out, h.out_len, t->out, strlen(t->out));
	cr_assert_eq(h.closed, t->closes ? 1 : 0, "%s: closed %d", what,
		     h.closed);
	cr_assert_not(h.write_after_close, "%s: wrote after close", what);
	cr_assert_eq(h.nmsgs, t->nmsg, "%s: %d messages", what, h.nmsgs);
	cr_assert_eq(h.answered, h.nmsgs, "%s", what);
	cr_assert_not(smtp_server_blocked(h.s), "%s", what);
	for (int i = 0; i < t->nmsg; i++)
		check_msg(what, &t->msg[i], h.msgs[i]);
	if (t->errors >= 0)
		cr_assert_eq(smtp_server_get_stats(h.s)->errors,
			     (uint32_t)t->errors, "%s: errors %u", what,
			     smtp_server_get_stats(h.s)->errors);
	h_free(&h);
}

static unsigned runs_whole, runs_split;

static void run_all(const struct transcript *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (int qm = 0; qm < Q_MODES; qm++) {
			run_one(&t[i], qm, SPLIT_WHOLE, 0);
			run_one(&t[i], qm, SPLIT_BYTES, 0);
			for (uint32_t seed = 1; seed <= RANDOM_RUNS; seed++)
				run_one(&t[i], qm, SPLIT_RANDOM,
					seed * 2654435761u);
			runs_whole++;
			runs_split += 1 + RANDOM_RUNS;
		}
	}
}

#define RUN(table) run_all(table, sizeof(table) / sizeof(table[0]))

/* ------------------------------------------------------------- the tables */

static const struct transcript basic[] = {
	{ "simple message", NULL,
	  TXN_IN "DATA\r\nSubject: x\r\n\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n",
	  TXN_OUT GO QUEUED(1) BYE, true, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "Subject: x\r\n\r\nhello\r\n.dot\r\n" } }, 0 },
	{ "a recipient given twice is kept once, with its first parameters", NULL,
	  TXN_IN "RCPT TO:<U@D.test> NOTIFY=NEVER\r\nRCPT TO:<v@d.test>\r\n"
	  "RCPT TO:<u@d.test>\r\nDATA\r\nx\r\n.\r\n",
	  TXN_OUT RCPT_OK RCPT_OK RCPT_OK GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 }, { "v@d.test", NULL, 0 } },
	      RCVD_MANY("client.test", "ESMTP", 1) "x\r\n" } }, 0 },
	{ "empty message", NULL,
	  TXN_IN "DATA\r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) } }, 0 },
	{ "lower case commands", NULL,
	  "ehlo client.test\r\nmail from:<a@b.test>\r\nrcpt to:<u@d.test>\r\n"
	  "data\r\nx\r\n.\r\nquit\r\n",
	  TXN_OUT GO QUEUED(1) BYE, true, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "x\r\n" } }, 0 },
	{ "bare LF ends commands", NULL,
	  "EHLO client.test\nMAIL FROM:<a@b.test>\nRCPT TO:<u@d.test>\n"
	  "DATA\nx\r\n.\r\nNOOP\n",
	  TXN_OUT GO QUEUED(1) OK, false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "x\r\n" } }, 0 },
	{ "HELO: SMTP, no extensions", NULL,
	  "HELO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test>\r\n"
	  "DATA\r\nx\r\n.\r\n",
	  GREET "250 mx.test\r\n" MAIL_OK RCPT_OK GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD_FOR("client.test", "SMTP", 1, "u@d.test") "x\r\n",
	      .helo_only = true } }, 0 },
	{ "HELO: ESMTP parameters refused", NULL,
	  "HELO client.test\r\nMAIL FROM:<a@b.test> SIZE=10\r\n",
	  GREET "250 mx.test\r\n555 5.5.4 Unsupported option: SIZE\r\n",
	  false, 0, { { 0 } }, 1 },
	{ "two recipients, null sender, no 'for'", NULL,
	  EHLO "MAIL FROM:<>\r\nRCPT TO:<u@d.test>\r\nRCPT TO:<v@d.test>\r\n"
	  "DATA\r\nbody\r\n.\r\n",
	  GREET EHLO_R MAIL_OK RCPT_OK RCPT_OK GO QUEUED(1), false, 1,
	  { { "", { { "u@d.test", NULL, 0 }, { "v@d.test", NULL, 0 } },
	      RCVD_MANY("client.test", "ESMTP", 1) "body\r\n" } }, 0 },
	{ "pipelined: two transactions and QUIT in one segment", NULL,
	  TXN_IN "DATA\r\none\r\n.\r\nMAIL FROM:<c@b.test>\r\n"
	  "RCPT TO:<v@d.test>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n",
	  TXN_OUT GO QUEUED(1) MAIL_OK RCPT_OK GO QUEUED(2) BYE, true, 2,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "one\r\n" },
	    { "c@b.test", { { "v@d.test", NULL, 0 } },
	      RCVD_FOR("client.test", "ESMTP", 2, "v@d.test") "two\r\n" } },
	  0 },
	{ "RSET, NOOP, HELP", NULL,
	  TXN_IN "RSET\r\nRCPT TO:<u@d.test>\r\nNOOP\r\nNOOP hello there\r\n"
	  "HELP\r\nHELP MAIL\r\nRSET x\r\n",
	  TXN_OUT OK SEQ_MAIL OK OK
	  "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT "
	  "VRFY EXPN HELP\r\n214 2.0.0 End of HELP info\r\n"
	  "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT "
	  "VRFY EXPN HELP\r\n214 2.0.0 End of HELP info\r\n"
	  "501 5.5.4 Syntax: RSET\r\n", false, 0, { { 0 } }, 2 },
	{ "EHLO resets the transaction", NULL,
	  TXN_IN EHLO "DATA\r\n",
	  TXN_OUT EHLO_R SEQ_MAIL, false, 0, { { 0 } }, 1 },
	{ "VRFY and EXPN never tell", NULL,
	  "VRFY root\r\nEXPN staff\r\nVRFY\r\nEXPN \r\n",
	  GREET "252 2.0.0 Cannot VRFY user, but will accept message and "
	  "attempt delivery\r\n252 2.0.0 Cannot EXPN list, but will accept "
	  "message and attempt delivery\r\n501 5.5.4 Syntax: VRFY address\r\n"
	  "501 5.5.4 Syntax: EXPN address\r\n", false, 0, { { 0 } }, 2 },
	{ "QUIT: later input ignored", NULL,
	  EHLO "QUIT\r\nNOOP\r\nMAIL FROM:<a@b.test>\r\n",
	  GREET EHLO_R BYE, true, 0, { { 0 } }, 0 },
	{ "QUIT inside a transaction", NULL,
	  TXN_IN "QUIT\r\n", TXN_OUT BYE, true, 0, { { 0 } }, 0 },
};

static const struct transcript sequence[] = {
	{ "commands out of order", NULL,
	  "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\n" EHLO
	  "RCPT TO:<u@d.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\n"
	  "MAIL FROM:<a@b.test>\r\nDATA\r\nDATA x\r\n",
	  GREET SEQ_HELO SEQ_MAIL SEQ_MAIL EHLO_R SEQ_MAIL SEQ_MAIL MAIL_OK
	  NESTED NO_RCPTS "501 5.5.4 Syntax: DATA\r\n", false, 0, { { 0 } },
	  7 },
	{ "unknown commands, empty line, STARTTLS and AUTH without hooks", NULL,
	  "FOO\r\n\r\nMAILX\r\nSTARTTLS\r\nAUTH PLAIN\r\n" EHLO "AUTH PLAIN\r\n"
	  "TURN\r\nETRN x\r\n",
	  GREET UNKNOWN "500 5.5.2 Error: bad syntax\r\n" UNKNOWN
	  "502 5.5.1 Error: command not implemented\r\n" SEQ_HELO EHLO_R
	  "503 5.5.1 Error: authentication not enabled\r\n" UNKNOWN UNKNOWN,
	  false, 0, { { 0 } }, 8 },
	{ "HELO and EHLO need an argument", NULL,
	  "HELO\r\nEHLO \r\nEHLO a\x01\r\n",
	  GREET "501 5.5.4 Syntax: HELO hostname\r\n"
	  "501 5.5.4 Syntax: EHLO hostname\r\n"
	  "501 5.5.4 Syntax: EHLO hostname\r\n", false, 0, { { 0 } }, 3 },
	{ "DATA with only rejected recipients", NULL,
	  EHLO "MAIL FROM:<a@b.test>\r\nRCPT TO:<unknown@d.test>\r\n"
	  "RCPT TO:<relay@x.test>\r\nRCPT TO:<policy@d.test>\r\n"
	  "RCPT TO:<temp@d.test>\r\nRCPT TO:<full@d.test>\r\nDATA\r\n"
	  "RCPT TO:<u@d.test>\r\nDATA\r\nx\r\n.\r\n",
	  GREET EHLO_R MAIL_OK
	  "550 5.1.1 <unknown@d.test>: Recipient address rejected: User "
	  "unknown\r\n554 5.7.1 <relay@x.test>: Relay access denied\r\n"
	  "550 5.7.1 <policy@d.test>: Recipient address rejected by "
	  "policy\r\n451 4.3.0 <temp@d.test>: Temporary lookup failure\r\n"
	  "452 4.3.1 Insufficient system storage\r\n" NO_RCPTS RCPT_OK GO
	  QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "x\r\n" } }, 0 },
	{ "sender rejected by policy, then accepted", NULL,
	  EHLO "MAIL FROM:<bad@b.test>\r\nRCPT TO:<u@d.test>\r\n"
	  "MAIL FROM:<tempsender@b.test>\r\nMAIL FROM:<a@b.test>\r\n"
	  "RCPT TO:<u@d.test>\r\nDATA\r\nx\r\n.\r\n",
	  GREET EHLO_R
	  "550 5.7.1 <bad@b.test>: Sender address rejected by policy\r\n"
	  SEQ_MAIL "451 4.3.0 <tempsender@b.test>: Temporary lookup "
	  "failure\r\n" MAIL_OK RCPT_OK GO QUEUED(3), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(3) "x\r\n" } }, 1 },
	{ "queue answers: ENOSPC and EIO", NULL,
	  EHLO "MAIL FROM:<enospc@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\n"
	  "x\r\n.\r\nMAIL FROM:<eio@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\n"
	  "y\r\n.\r\nNOOP\r\n",
	  GREET EHLO_R MAIL_OK RCPT_OK GO
	  "452 4.3.1 Insufficient system storage\r\n" MAIL_OK RCPT_OK GO
	  "451 4.3.0 Error: queue file write error\r\n" OK, false, 2,
	  { { "enospc@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "x\r\n" },
	    { "eio@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(2) "y\r\n" } },
	  0 },
};

static const struct transcript paths[] = {
	{ "space after FROM: and TO: tolerated", NULL,
	  EHLO "MAIL FROM: <a@b.test>\r\nRCPT TO:  <u@d.test>\r\nDATA\r\n"
	  ".\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) } }, 0 },
	{ "RFC 5321 paths", NULL,
	  EHLO "MAIL FROM:<@a.test,@b.test:a@b.test>\r\n"
	  "RCPT TO:<\"user@remote\"@local>\r\nRCPT TO:<user%remote@local>\r\n"
	  "RCPT TO:<@local:user@remote>\r\nRCPT TO:<Postmaster>\r\n"
	  "DATA\r\n.\r\n",
	  GREET EHLO_R MAIL_OK RCPT_OK RCPT_OK RCPT_OK RCPT_OK GO QUEUED(1),
	  false, 1,
	  { { "a@b.test", { { "\"user@remote\"@local", NULL, 0 },
			    { "user%remote@local", NULL, 0 },
			    { "user@remote", NULL, 0 },
			    { "Postmaster", NULL, 0 } },
	      RCVD_MANY("client.test", "ESMTP", 1) } }, 0 },
	{ "address literals", NULL,
	  EHLO "MAIL FROM:<a@[198.18.0.1]>\r\nRCPT TO:<u@[IPv6:2001:db8::2]>\r\n"
	  "RCPT TO:<u@[300.0.0.1]>\r\nDATA\r\n.\r\n",
	  GREET EHLO_R MAIL_OK RCPT_OK BAD_RCPT GO QUEUED(1), false, 1,
	  { { "a@[198.18.0.1]", { { "u@[IPv6:2001:db8::2]", NULL, 0 } },
	      RCVD_FOR("client.test", "ESMTP", 1, "u@[IPv6:2001:db8::2]") } },
	  1 },
	{ "bad senders", NULL,
	  EHLO "MAIL FROM:a@b.test\r\nMAIL TO:<a@b.test>\r\nMAIL\r\n"
	  "MAIL FROM:<a@b@c.test>\r\nMAIL FROM:<postmaster>\r\n"
	  "MAIL FROM:<a@b.test\r\nMAIL FROM:<a@b.test>x\r\n"
	  "MAIL FROM:<a..b@c.test>\r\nMAIL FROM:<a@-c.test>\r\n",
	  GREET EHLO_R "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	  "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	  "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" BAD_SENDER BAD_SENDER
	  BAD_SENDER BAD_SENDER BAD_SENDER BAD_SENDER, false, 0, { { 0 } }, 9 },
	{ "bad recipients", NULL,
	  EHLO "MAIL FROM:<a@b.test>\r\nRCPT TO:<>\r\nRCPT TO:<user@remote@local>\r\n"
	  "RCPT TO:u@d.test\r\nRCPT FROM:<u@d.test>\r\nRCPT TO:<u>\r\n"
	  "RCPT TO:<u@d.test.>\r\nRCPT TO:<\"u@d.test>\r\nRCPT TO:<u@d\x01.test>\r\n",
	  GREET EHLO_R MAIL_OK BAD_RCPT BAD_RCPT
	  "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	  "501 5.5.4 Syntax: RCPT TO:<address>\r\n" BAD_RCPT BAD_RCPT BAD_RCPT
	  BAD_RCPT, false, 0, { { 0 } }, 8 },
};

static void tweak_max_errors(struct harness *h)
{
	h->conf.max_errors = 3;
}

static void tweak_vrfy_502(struct harness *h)
{
	h->conf.vrfy = SMTP_VRFY_502;
}

static void tweak_small(struct harness *h)
{
	h->conf.max_message_size = 400;
	h->conf.max_received = 2;
}

static void tweak_normalize(struct harness *h)
{
	h->conf.bare_lf = SMTP_BARE_NORMALIZE;
}

static void tweak_no_ext(struct harness *h)
{
	h->conf.smtputf8 = h->conf.eightbitmime = h->conf.chunking = false;
	h->conf.dsn = h->conf.pipelining = false;
	h->conf.max_message_size = 0;
}

static void tweak_binary(struct harness *h)
{
	h->conf.binarymime = true;
}

static const struct transcript limits[] = {
	{ "too many errors: 421 and close", tweak_max_errors,
	  "FOO\r\nMAIL FROM:<a@b.test>\r\nBAR\r\nNOOP\r\n",
	  GREET UNKNOWN SEQ_HELO UNKNOWN
	  "421 4.7.0 mx.test Error: too many errors\r\n", true, 0, { { 0 } },
	  3 },
	{ "VRFY/EXPN disabled: 502", tweak_vrfy_502,
	  "VRFY root\r\nEXPN x\r\n",
	  GREET "502 5.5.1 VRFY command is disabled\r\n"
	  "502 5.5.1 EXPN command is disabled\r\n", false, 0, { { 0 } }, 0 },
	{ "SIZE= over the limit, at the limit", tweak_small,
	  EHLO "MAIL FROM:<a@b.test> SIZE=401\r\nMAIL FROM:<a@b.test> SIZE=400\r\n",
	  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 400\r\n"
	  "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	  "250-SMTPUTF8\r\n250 CHUNKING\r\n" TOO_BIG MAIL_OK, false, 0,
	  { { 0 } }, 0 },
	{ "message over the limit: read to the end, then 552", tweak_small,
	  TXN_IN "DATA\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123\r\n"
	  ".\r\nRCPT TO:<u@d.test>\r\n",
	  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 400\r\n"
	  "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	  "250-SMTPUTF8\r\n250 CHUNKING\r\n" MAIL_OK RCPT_OK GO TOO_BIG SEQ_MAIL,
	  false, 0, { { 0 } }, 1 },
	{ "Received: loop: header section only", tweak_small,
	  TXN_IN "DATA\r\nReceived: a\r\nreceived: b\r\nX: y\r\n"
	  " Received: folded\r\n\r\nReceived: in body\r\n.\r\n"
	  "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\n"
	  "Received: a\r\nReceived: b\r\nRECEIVED: c\r\n\r\n.\r\n",
	  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 400\r\n"
	  "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	  "250-SMTPUTF8\r\n250 CHUNKING\r\n" MAIL_OK RCPT_OK GO QUEUED(1)
	  MAIL_OK RCPT_OK GO "554 5.4.6 Too many hops: mail loop detected\r\n",
	  false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "Received: a\r\nreceived: b\r\nX: y\r\n"
	      " Received: folded\r\n\r\nReceived: in body\r\n" } }, 0 },
	{ "extensions off", tweak_no_ext,
	  EHLO "MAIL FROM:<a@b.test> BODY=8BITMIME\r\n"
	  "MAIL FROM:<a@b.test> SMTPUTF8\r\nMAIL FROM:<a@b.test> RET=FULL\r\n"
	  "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test> NOTIFY=NEVER\r\n"
	  "BDAT 3\r\nabc\r\n",
	  GREET "250-mx.test\r\n250-SIZE\r\n250 ENHANCEDSTATUSCODES\r\n"
	  "555 5.5.4 Unsupported option: BODY\r\n"
	  "555 5.5.4 Unsupported option: SMTPUTF8\r\n"
	  "555 5.5.4 Unsupported option: RET\r\n" MAIL_OK
	  "555 5.5.4 Unsupported option: NOTIFY\r\n" UNKNOWN UNKNOWN,
	  false, 0, { { 0 } }, 6 },
};

static const struct transcript ext[] = {
	{ "8BITMIME and SIZE recorded", NULL,
	  EHLO "MAIL FROM:<a@b.test> BODY=8BITMIME SIZE=1234\r\n"
	  "RCPT TO:<u@d.test>\r\nDATA\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "\xc3\xa9t\xc3\xa9\r\n", .body_type = ENV_BODY_8BITMIME,
	      .size = 1234 } }, 0 },
	{ "bad and duplicate MAIL parameters", NULL,
	  EHLO "MAIL FROM:<a@b.test> BODY=9BIT\r\nMAIL FROM:<a@b.test> SIZE=x\r\n"
	  "MAIL FROM:<a@b.test> SIZE\r\nMAIL FROM:<a@b.test> FOO=bar\r\n"
	  "MAIL FROM:<a@b.test> SIZE=1 SIZE=2\r\nMAIL FROM:<a@b.test> RET=ALL\r\n"
	  "MAIL FROM:<a@b.test> BODY=BINARYMIME\r\nMAIL FROM:<a@b.test> =x\r\n"
	  "MAIL FROM:<a@b.test> SMTPUTF8=yes\r\nMAIL FROM:<a@b.test> AUTH=<>\r\n",
	  GREET EHLO_R "555 5.5.4 Bad BODY parameter\r\n"
	  "555 5.5.4 Bad SIZE parameter\r\n555 5.5.4 Bad SIZE parameter\r\n"
	  "555 5.5.4 Unsupported option: FOO\r\n"
	  "555 5.5.4 Duplicate SIZE parameter\r\n"
	  "555 5.5.4 Bad RET parameter\r\n555 5.5.4 Bad BODY parameter\r\n"
	  "555 5.5.4 Invalid parameter syntax\r\n"
	  "555 5.5.4 Bad SMTPUTF8 parameter\r\n"
	  "555 5.5.4 Unsupported option: AUTH\r\n", false, 0, { { 0 } }, 10 },
	{ "DSN: RET, ENVID, NOTIFY, ORCPT with xtext", NULL,
	  EHLO "MAIL FROM:<a@b.test> RET=HDRS ENVID=QQ+2Bx+3D1\r\n"
	  "RCPT TO:<u@d.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+2Bx@d.test\r\n"
	  "RCPT TO:<v@d.test> notify=never\r\n"
	  "RCPT TO:<w@d.test> ORCPT=rfc822;w@d.test NOTIFY=DELAY\r\n"
	  "DATA\r\n.\r\n",
	  GREET EHLO_R MAIL_OK RCPT_OK RCPT_OK RCPT_OK GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", "rfc822;u+x@d.test", 6 },
			    { "v@d.test", NULL, ENV_NOTIFY_NEVER },
			    { "w@d.test", "rfc822;w@d.test", ENV_NOTIFY_DELAY } },
	      RCVD_MANY("client.test", "ESMTP", 1), .envid = "QQ+x=1",
	      .ret = ENV_RET_HDRS } }, 0 },
	{ "DSN: bad values", NULL,
	  EHLO "MAIL FROM:<a@b.test> ENVID=a+0D+0Ab\r\n"
	  "MAIL FROM:<a@b.test> RET=FULL RET=HDRS\r\nMAIL FROM:<a@b.test>\r\n"
	  "RCPT TO:<u@d.test> NOTIFY=NEVER,DELAY\r\n"
	  "RCPT TO:<u@d.test> NOTIFY=SOMETIMES\r\n"
	  "RCPT TO:<u@d.test> ORCPT=u@d.test\r\n"
	  "RCPT TO:<u@d.test> ORCPT=;u@d.test\r\n"
	  "RCPT TO:<u@d.test> ORCPT=rfc822;\r\n"
	  "RCPT TO:<u@d.test> ORCPT=rfc822;a+0Ab\r\n"
	  "RCPT TO:<u@d.test> NOTIFY=DELAY NOTIFY=DELAY\r\n"
	  "RCPT TO:<u@d.test> XFOO\r\n",
	  GREET EHLO_R "555 5.5.4 Bad ENVID parameter\r\n"
	  "555 5.5.4 Duplicate RET parameter\r\n" MAIL_OK
	  "555 5.5.4 Bad NOTIFY parameter\r\n555 5.5.4 Bad NOTIFY parameter\r\n"
	  "555 5.5.4 Bad ORCPT parameter\r\n555 5.5.4 Bad ORCPT parameter\r\n"
	  "555 5.5.4 Bad ORCPT parameter\r\n555 5.5.4 Bad ORCPT parameter\r\n"
	  "555 5.5.4 Duplicate NOTIFY parameter\r\n"
	  "555 5.5.4 Unsupported option: XFOO\r\n", false, 0, { { 0 } }, 10 },
	{ "SMTPUTF8: declared", NULL,
	  EHLO "MAIL FROM:<\xc3\xbc@b.test> SMTPUTF8\r\n"
	  "RCPT TO:<\xe7\x94\xa8@\xe4\xbe\x8b.test>\r\n"
	  "DATA\r\nSubject: \xc3\xbc\r\n.\r\n",
	  GREET EHLO_R MAIL_OK RCPT_OK GO QUEUED(1), false, 1,
	  { { "\xc3\xbc@b.test", { { "\xe7\x94\xa8@\xe4\xbe\x8b.test", NULL, 0 } },
	      RCVD_FOR("client.test", "UTF8SMTP", 1,
		       "\xe7\x94\xa8@\xe4\xbe\x8b.test") "Subject: \xc3\xbc\r\n",
	      .smtputf8 = true } }, 0 },
	{ "SMTPUTF8: not declared, or bad UTF-8", NULL,
	  EHLO "MAIL FROM:<\xc3\xbc@b.test>\r\nMAIL FROM:<\xc3\x28@b.test> SMTPUTF8\r\n"
	  "MAIL FROM:<a@b.test>\r\nRCPT TO:<\xc3\xbc@d.test>\r\n"
	  "RCPT TO:<u@d.test> ORCPT=utf-8;\xc3\xbc@d.test\r\n",
	  GREET EHLO_R NEED_UTF8 BAD_SENDER MAIL_OK NEED_UTF8
	  "555 5.5.4 Bad ORCPT parameter\r\n", false, 0, { { 0 } }, 4 },
	{ "SMTPUTF8: UTF-8 ORCPT when declared", NULL,
	  EHLO "MAIL FROM:<a@b.test> SMTPUTF8\r\n"
	  "RCPT TO:<u@d.test> ORCPT=utf-8;\xc3\xbc@d.test\r\nDATA\r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", "utf-8;\xc3\xbc@d.test", 0 } },
	      RCVD_FOR("client.test", "UTF8SMTP", 1, "u@d.test"),
	      .smtputf8 = true } }, 0 },
	{ "BINARYMIME: advertised when on, needs BDAT", tweak_binary,
	  "EHLO c\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\n"
	  "RCPT TO:<u@d.test>\r\nDATA\r\nBDAT 3 LAST\r\n\xff\x01\n",
	  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n"
	  "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-BINARYMIME\r\n"
	  "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n" MAIL_OK RCPT_OK
	  "503 5.5.1 Error: BINARYMIME requires BDAT\r\n" QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      .body_has = "ESMTP id QID00000000001\r\n",
	      .body_type = ENV_BODY_BINARYMIME } }, 1 },
};

static const struct transcript bdat[] = {
	{ "BDAT: chunks, raw bytes, LAST", NULL,
	  TXN_IN "BDAT 7\r\nHi\r\n.\r\nBDAT 5 LAST\r\n..x\r\nNOOP\r\n",
	  TXN_OUT "250 2.0.0 Ok: 7 octets\r\n" QUEUED(1) OK, false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "Hi\r\n.\r\n..x\r\n" } }, 0 },
	{ "BDAT 0 LAST", NULL,
	  TXN_IN "BDAT 3\r\nabcBDAT 0 LAST\r\n",
	  TXN_OUT "250 2.0.0 Ok: 3 octets\r\n" QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "abc" } }, 0 },
	{ "BDAT: only BDAT 0 LAST, lower case", NULL,
	  TXN_IN "bdat 0 last\r\n",
	  TXN_OUT QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) } }, 0 },
	{ "BDAT: refused chunks are read and skipped", NULL,
	  EHLO "BDAT 6\r\nQUIT\r\nMAIL FROM:<a@b.test>\r\nBDAT 4 LAST\r\nRSET"
	  "BDAT x\r\nNOOP\r\n",
	  GREET EHLO_R SEQ_MAIL MAIL_OK NO_RCPTS
	  "501 5.5.4 Syntax: BDAT count [LAST]\r\n" OK, false, 0, { { 0 } }, 2 },
	{ "BDAT and DATA never mix", NULL,
	  TXN_IN "BDAT 2\r\nabDATA\r\nBDAT 1 LAST\r\nc",
	  TXN_OUT "250 2.0.0 Ok: 2 octets\r\n"
	  "503 5.5.1 Error: DATA after BDAT\r\n" QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } }, RCVD1(1) "abc" } }, 1 },
	{ "BDAT over the size limit fails the transaction", tweak_small,
	  TXN_IN "BDAT 300\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789"
	  "BDAT 2 LAST\r\nxyNOOP\r\n",
	  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 400\r\n"
	  "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	  "250-SMTPUTF8\r\n250 CHUNKING\r\n" MAIL_OK RCPT_OK TOO_BIG SEQ_MAIL OK,
	  false, 0, { { 0 } }, 1 },
	{ "BDAT LAST: Received: loop check", tweak_small,
	  TXN_IN "BDAT 41 LAST\r\nReceived: 1\r\nReceived: 2\r\nReceived: 3\r\n\r\n",
	  GREET "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 400\r\n"
	  "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	  "250-SMTPUTF8\r\n250 CHUNKING\r\n" MAIL_OK RCPT_OK
	  "554 5.4.6 Too many hops: mail loop detected\r\n", false, 0,
	  { { 0 } }, 0 },
};

Test(smtp_server, basic) { RUN(basic); }
Test(smtp_server, sequence) { RUN(sequence); }
Test(smtp_server, paths) { RUN(paths); }
Test(smtp_server, limits) { RUN(limits); }
Test(smtp_server, extensions) { RUN(ext); }
Test(smtp_server, bdat) { RUN(bdat); }

/* ------------------------------------------------- DATA: bare CR and LF */

static const struct transcript bare[] = {
	{ "dot-unstuffing: leading dot deleted", NULL,
	  TXN_IN "DATA\r\n.x\r\n..\r\n...\r\n. \r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "x\r\n.\r\n..\r\n \r\n" } }, 0 },
	{ "bare CR/LF rejected after the real end", NULL,
	  TXN_IN "DATA\r\na\nb\rc\r\n..d\n..e\r\n.\r\nNOOP\r\n",
	  TXN_OUT GO BARE OK, false, 0, { { 0 } }, 0 },
	{ "bare CR/LF normalized; no unstuffing after a bare LF",
	  tweak_normalize,
	  TXN_IN "DATA\r\na\nb\rc\r\n..d\n..e\r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "a\r\nb\r\nc\r\n.d\r\n..e\r\n" } }, 0 },
	{ "CR CR LF: one bare CR, then a line end", tweak_normalize,
	  TXN_IN "DATA\r\na\r\r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "a\r\n\r\n" } }, 0 },
	{ "bare LF after DATA's own CRLF", tweak_normalize,
	  TXN_IN "DATA\r\n\n.\r\n.\r\n",
	  TXN_OUT GO QUEUED(1), false, 1,
	  { { "a@b.test", { { "u@d.test", NULL, 0 } },
	      RCVD1(1) "\r\n.\r\n" } }, 0 },
};

Test(smtp_server, bare_cr_lf) { RUN(bare); }

/* The SMTP smuggling family: none of these may end the message. The
 * server that does would take the MAIL/RCPT/DATA after it as a second,
 * forged message. */
static const char *const smuggle_seq[] = {
	"\n.\r\n", "\n.\n", "\r\n.\n", "\r.\r", "\n.\r", "\r.\r\n",
	"\r\n.\r", "\r.\n", "\n..\r\n", "\r\n.\r\r\n", "\r\n.\r\r",
	"\r\n .\r\n", "\r\n.\x0b\r\n", "\r\r\n..\r\n", "\n\n.\n\n",
};

#define SMUGGLED "MAIL FROM:<evil@x.test>\r\nRCPT TO:<evil@d.test>\r\n" \
	"DATA\r\nevil\r\n"

Test(smtp_server, smuggling_never_ends_data)
{
	for (size_t i = 0; i < sizeof(smuggle_seq) / sizeof(smuggle_seq[0]); i++) {
		for (int pol = 0; pol < 2; pol++) {
			char in[512], name[64];
			struct transcript t = { 0 };

			snprintf(in, sizeof(in), TXN_IN "DATA\r\nSubject: s\r\n"
				 "\r\nA%s" SMUGGLED ".\r\nQUIT\r\n",
				 smuggle_seq[i]);
			snprintf(name, sizeof(name), "smuggle %zu policy %d", i,
				 pol);
			t.name = name;
			t.in = in;
			t.closes = true;
			t.errors = 0;
			if (pol == 0 && i != 11 && i != 12) {
				t.out = TXN_OUT GO BARE BYE;
			} else {
				t.out = TXN_OUT GO QUEUED(1) BYE;
				t.nmsg = 1;
				t.msg[0].from = "a@b.test";
				t.msg[0].rcpt[0].addr = "u@d.test";
				t.msg[0].body_has = SMUGGLED;
				if (pol == 1)
					t.tweak = tweak_normalize;
			}
			run_all(&t, 1);
		}
	}
}

Test(smtp_server, smuggling_normalized_body)
{
	struct transcript t = {
		"smuggle normalized body", tweak_normalize,
		TXN_IN "DATA\r\nA\n.\r\n" SMUGGLED ".\r\n",
		TXN_OUT GO QUEUED(1), false, 1,
		{ { "a@b.test", { { "u@d.test", NULL, 0 } },
		    RCVD1(1) "A\r\n.\r\n" SMUGGLED } }, 0,
	};

	run_all(&t, 1);
}

/* ------------------------------------------------------- built transcripts */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_rep(struct sbuf *b, char c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sb_add(b, &c, 1);
}

Test(smtp_server, command_line_limit)
{
	struct sbuf in = { 0 };
	struct transcript t = { "command line limit", tweak_max_errors };

	/* 512 octets with CRLF: fine; 513: too long; a bare LF counts one */
	sb_str(&in, "NOOP ");
	sb_rep(&in, 'x', 505);
	sb_str(&in, "\r\nNOOP ");
	sb_rep(&in, 'x', 506);
	sb_str(&in, "\r\nNOOP ");
	sb_rep(&in, 'x', 506);
	sb_str(&in, "\nMAIL FROM:<");
	sb_rep(&in, 'y', 3000);
	sb_str(&in, "@b.test>\r\nNOOP\r\nX");
	sb_rep(&in, 'x', 600);
	sb_str(&in, "\r\nNOOP\r\n");
	t.in = in.p;
	t.out = GREET OK "500 5.5.0 Line too long\r\n" OK
		"500 5.5.0 Line too long\r\n" OK "500 5.5.0 Line too long\r\n"
		"421 4.7.0 mx.test Error: too many errors\r\n";
	t.closes = true;
	t.errors = 3;
	run_all(&t, 1);
	free(in.p);
}

Test(smtp_server, text_line_limit)
{
	struct sbuf in = { 0 }, body = { 0 };
	struct transcript t = { "text line limit" };

	/* 998 + CRLF = 1000: fine (dot-stuffed: counted on the wire) */
	sb_str(&in, TXN_IN "DATA\r\n");
	sb_rep(&in, 'a', 998);
	sb_str(&in, "\r\n.");
	sb_rep(&in, 'b', 997);
	sb_str(&in, "\r\n.\r\n");
	sb_str(&body, RCVD1(1));
	sb_rep(&body, 'a', 998);
	sb_str(&body, "\r\n");
	sb_rep(&body, 'b', 997);
	sb_str(&body, "\r\n");
	/* 999 + CRLF: refused once the message is read */
	sb_str(&in, "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\n");
	sb_rep(&in, 'c', 999);
	sb_str(&in, "\r\nmore\r\n.\r\nNOOP\r\n");
	t.in = in.p;
	t.out = TXN_OUT GO QUEUED(1) MAIL_OK RCPT_OK GO
		"500 5.5.0 Error: text line too long\r\n" OK;
	t.nmsg = 1;
	t.msg[0].from = "a@b.test";
	t.msg[0].rcpt[0].addr = "u@d.test";
	t.msg[0].body = body.p;
	t.errors = 0;
	run_all(&t, 1);
	free(in.p);
	free(body.p);
}

static void tweak_100_rcpts(struct harness *h)
{
	h->conf.max_recipients = 10; /* clamped up to RFC 5321's 100 */
}

Test(smtp_server, recipient_limit)
{
	struct sbuf in = { 0 }, out = { 0 };
	struct transcript t = { "recipient limit", tweak_100_rcpts };
	char line[64];
	struct harness h;

	sb_str(&in, EHLO "MAIL FROM:<a@b.test>\r\n");
	sb_str(&out, GREET EHLO_R MAIL_OK);
	for (int i = 0; i < 102; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<r%d@d.test>\r\n", i);
		sb_str(&in, line);
		sb_str(&out, i < 100 ? RCPT_OK
			     : "452 4.5.3 Error: too many recipients\r\n");
	}
	sb_str(&in, "DATA\r\n.\r\n");
	sb_str(&out, GO QUEUED(1));
	t.in = in.p;
	t.out = out.p;
	t.nmsg = 1;
	t.msg[0].from = "a@b.test";
	t.msg[0].rcpt[0].addr = "r0@d.test";
	t.msg[0].rcpt[1].addr = "r1@d.test";
	t.msg[0].rcpt[2].addr = "r2@d.test";
	t.msg[0].rcpt[3].addr = "r3@d.test";
	t.msg[0].nrcpt = 100;
	t.msg[0].body = RCVD_MANY("client.test", "ESMTP", 1);
	t.errors = 0;
	/* check_msg compares the first four; the last one here */
	h_init(&h, tweak_100_rcpts, Q_SYNC);
	feed_split(&h, in.p, in.len, SPLIT_WHOLE, 0);
	cr_assert_eq(h.nmsgs, 1);
	cr_assert_eq(h.msgs[0]->nrcpt, 100);
	cr_assert_str_eq(h.msgs[0]->rcpt[99].addr, "r99@d.test");
	h_free(&h);
	run_all(&t, 1);
	free(in.p);
	free(out.p);
}

Test(smtp_server, big_message_any_split)
{
	struct sbuf in = { 0 }, body = { 0 };
	struct transcript t = { "big message" };
	char line[96];

	sb_str(&in, TXN_IN "DATA\r\n");
	sb_str(&body, RCVD1(1));
	for (int i = 0; i < 1500; i++) {
		snprintf(line, sizeof(line), "%sline %05d: the quick brown fox "
			 "jumps over the lazy dog\r\n", i % 7 ? "" : ".", i);
		sb_str(&in, line);
		/* a line starting with "." was stuffed: one dot goes */
		sb_str(&body, line + (i % 7 ? 0 : 1));
	}
	sb_str(&in, ".\r\nQUIT\r\n");
	t.in = in.p;
	t.out = TXN_OUT GO QUEUED(1) BYE;
	t.closes = true;
	t.nmsg = 1;
	t.msg[0].from = "a@b.test";
	t.msg[0].rcpt[0].addr = "u@d.test";
	t.msg[0].body = body.p;
	t.errors = 0;
	run_all(&t, 1);
	free(in.p);
	free(body.p);
}

/* ------------------------------------------------- pending and the backlog */

static void feed_str(struct harness *h, const char *s)
{
	smtp_server_input(h->s, (const uint8_t *)s, strlen(s));
}

Test(smtp_server, pending_backlog_then_queued)
{
	struct harness h;

	h_init(&h, NULL, Q_AT_END);
	cr_assert_eq(smtp_server_phase(h.s), SMTP_PHASE_COMMAND);
	feed_str(&h, TXN_IN "DATA\r\nx\r\n");
	cr_assert_eq(smtp_server_phase(h.s), SMTP_PHASE_DATA);
	feed_str(&h, ".\r\nNOOP\r\nMAIL FROM:<c@b.test>\r\n");
	assert_bytes("pending", h.out, h.out_len, TXN_OUT GO,
		     strlen(TXN_OUT GO));
	cr_assert(smtp_server_blocked(h.s));
	cr_assert_eq(smtp_server_phase(h.s), SMTP_PHASE_PENDING);
	cr_assert_eq(h.nmsgs, 1);
	/* more input while pending only piles up */
	feed_str(&h, "RCPT TO:<v@d.test>\r\nDATA\r\ny\r\n.\r\nNOOP\r\n");
	assert_bytes("still pending", h.out, h.out_len, TXN_OUT GO,
		     strlen(TXN_OUT GO));
	/* the answer runs the backlog up to the next message */
	smtp_server_queued(h.s, 0, "QIDX");
	assert_bytes("after queued", h.out, h.out_len,
		     TXN_OUT GO "250 2.0.0 Ok: queued as QIDX\r\n" OK MAIL_OK
		     RCPT_OK GO,
		     strlen(TXN_OUT GO "250 2.0.0 Ok: queued as QIDX\r\n" OK
			    MAIL_OK RCPT_OK GO));
	cr_assert(smtp_server_blocked(h.s));
	cr_assert_eq(h.nmsgs, 2);
	cr_assert_str_eq(h.msgs[1]->mail_from, "c@b.test");
	/* no qid given: the one from ops->mail */
	smtp_server_queued(h.s, 0, NULL);
	cr_assert_not(smtp_server_blocked(h.s));
	cr_assert_eq(smtp_server_phase(h.s), SMTP_PHASE_COMMAND);
	cr_assert_str_eq(h.out + h.out_len - strlen(QUEUED(2) OK), QUEUED(2) OK);
	/* a second answer is ignored */
	smtp_server_queued(h.s, 0, NULL);
	cr_assert_str_eq(h.out + h.out_len - strlen(QUEUED(2) OK), QUEUED(2) OK);
	cr_assert_eq(smtp_server_get_stats(h.s)->messages, 2);
	h.answered = h.nmsgs;
	h_free(&h);
}

Test(smtp_server, timeout_while_pending)
{
	struct harness h;

	h_init(&h, NULL, Q_AT_END);
	feed_str(&h, TXN_IN "DATA\r\nx\r\n.\r\nNOOP\r\n");
	cr_assert(smtp_server_blocked(h.s));
	smtp_server_timeout(h.s, NULL);
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(smtp_server_phase(h.s), SMTP_PHASE_CLOSING);
	cr_assert_not(smtp_server_blocked(h.s));
	/* the late answer writes nothing; nor does later input */
	smtp_server_queued(h.s, 0, NULL);
	feed_str(&h, "NOOP\r\n");
	smtp_server_timeout(h.s, NULL);
	assert_bytes("timeout", h.out, h.out_len,
		     TXN_OUT GO "421 4.4.2 mx.test Error: timeout exceeded\r\n",
		     strlen(TXN_OUT GO "421 4.4.2 mx.test Error: timeout "
			    "exceeded\r\n"));
	cr_assert_eq(h.closed, 1);
	h.answered = h.nmsgs;
	h_free(&h);
}

Test(smtp_server, timeout_text_and_refuse)
{
	struct harness h;

	h_init(&h, NULL, Q_SYNC);
	feed_str(&h, TXN_IN "DATA\r\nabc");
	smtp_server_timeout(h.s, "Error: data rate too slow");
	assert_bytes("slow", h.out, h.out_len,
		     TXN_OUT GO "421 4.4.2 mx.test Error: data rate too slow\r\n",
		     strlen(TXN_OUT GO "421 4.4.2 mx.test Error: data rate too "
			    "slow\r\n"));
	cr_assert_eq(h.closed, 1);
	cr_assert_eq(h.nmsgs, 0);
	h_free(&h);

	memset(&h, 0, sizeof(h));
	smtp_server_conf_defaults(&h.conf);
	h.conf.hostname = "mx.test";
	h.ops.write = h_write;
	h.ops.close = h_close;
	h.s = smtp_server_new(&h.conf, &h.ops, &h, "198.18.0.1", 1, 25);
	smtp_server_refuse(h.s, "Error: too many connections from you");
	feed_str(&h, "EHLO x\r\n");
	assert_bytes("refuse", h.out, h.out_len,
		     "421 4.7.0 mx.test Error: too many connections from you\r\n",
		     strlen("421 4.7.0 mx.test Error: too many connections from "
			    "you\r\n"));
	cr_assert_eq(h.closed, 1);
	h_free(&h);
}

static void tweak_tiny(struct harness *h)
{
	h->conf.max_message_size = 1000;
}

Test(smtp_server, backlog_limit)
{
	struct harness h;
	static char junk[64 * 1024];

	h_init(&h, tweak_tiny, Q_AT_END);
	feed_str(&h, TXN_IN "DATA\r\nx\r\n.\r\n");
	cr_assert(smtp_server_blocked(h.s));
	for (size_t i = 0; i < sizeof(junk); i += 6)
		memcpy(junk + i, "NOOP\r\n", 6 < sizeof(junk) - i ? 6 : sizeof(junk) - i);
	for (int i = 0; i < 17 && !h.closed; i++)
		smtp_server_input(h.s, (const uint8_t *)junk, sizeof(junk));
	cr_assert_eq(h.closed, 1);
	cr_assert_str_eq(h.out + h.out_len - strlen("421 4.7.0 mx.test Error: "
						    "too much pipelined input\r\n"),
			 "421 4.7.0 mx.test Error: too much pipelined input\r\n");
	h.answered = h.nmsgs;
	h_free(&h);
}

/* --------------------------------------------------------- STARTTLS, AUTH */

static void tweak_tls(struct harness *h)
{
	h->ops.starttls = h_starttls;
}

#define EHLO_TLS_R "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n" \
	"250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n" \
	"250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"

Test(smtp_server, starttls)
{
	struct harness h;
	const char *want;

	h_init(&h, tweak_tls, Q_SYNC);
	feed_str(&h, "STARTTLS x\r\n" EHLO "MAIL FROM:<a@b.test>\r\nSTARTTLS\r\n"
		 "RSET\r\n");
	/* plaintext pipelined after STARTTLS is dropped (CVE-2011-0411) */
	feed_str(&h, "STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
	cr_assert_eq(h.starttls_calls, 1);
	/* after the handshake: HELO forgotten, STARTTLS gone */
	feed_str(&h, "MAIL FROM:<a@b.test>\r\n" EHLO "STARTTLS\r\n" TXN_IN
		 "DATA\r\n.\r\n");
	want = GREET "501 5.5.4 Syntax: STARTTLS\r\n" EHLO_TLS_R MAIL_OK
		"503 5.5.1 Error: MAIL transaction in progress\r\n" OK
		"220 2.0.0 Ready to start TLS\r\n" SEQ_HELO EHLO_R
		"554 5.5.1 Error: TLS already active\r\n" EHLO_R MAIL_OK RCPT_OK
		GO QUEUED(2);
	assert_bytes("starttls", h.out, h.out_len, want, strlen(want));
	cr_assert_eq(h.nmsgs, 1);
	cr_assert_str_eq(h.msgs[0]->helo, "client.test");
	cr_assert_not_null(strstr((const char *)h.msgs[0]->body,
				  "with ESMTPS id QID00000000002\r\n"));
	h_free(&h);

	/* STARTTLS last in the backlog: what comes after the handshake is
	 * read again */
	h_init(&h, tweak_tls, Q_AT_END);
	feed_str(&h, TXN_IN "DATA\r\n.\r\nSTARTTLS\r\n");
	smtp_server_queued(h.s, 0, NULL);
	h.answered = 1;
	feed_str(&h, EHLO);
	want = GREET EHLO_TLS_R MAIL_OK RCPT_OK GO QUEUED(1)
		"220 2.0.0 Ready to start TLS\r\n" EHLO_R;
	assert_bytes("starttls in backlog", h.out, h.out_len, want,
		     strlen(want));
	h_free(&h);

	/* a hook that fails after the 220: the session ends */
	h_init(&h, tweak_tls, Q_SYNC);
	h.starttls_rc = -EIO;
	feed_str(&h, EHLO "STARTTLS\r\nNOOP\r\n");
	want = GREET EHLO_TLS_R "220 2.0.0 Ready to start TLS\r\n";
	assert_bytes("starttls fails", h.out, h.out_len, want, strlen(want));
	cr_assert_eq(h.closed, 1);
	h_free(&h);
}

static void tweak_implicit_tls(struct harness *h)
{
	h->ops.starttls = h_starttls;
	h->ops.auth = h_auth;
	h->conf.auth_mechs = "PLAIN";
}

Test(smtp_server, implicit_tls_and_auth)
{
	struct harness h;
	const char *ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n"
		"250-AUTH PLAIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
		"250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
	struct sbuf want = { 0 };

	h_init(&h, tweak_implicit_tls, Q_SYNC);
	smtp_server_set_tls(h.s);
	feed_str(&h, "AUTH PLAIN\r\n" EHLO "AUTH\r\n");
	h.auth_rc = -EACCES;
	feed_str(&h, "AUTH PLAIN AGZvbwBiYXI=\r\n");
	cr_assert_str_eq(h.auth_seen, "|foo|bar");
	h.auth_seen[0] = '\0';
	feed_str(&h, "AUTH CRAM-MD5\r\n");
	cr_assert_str_eq(h.auth_seen, "");
	h.auth_rc = -EIO;
	feed_str(&h, "AUTH PLAIN AGZvbwBiYXI=\r\n");
	h.auth_rc = 0;
	feed_str(&h, "MAIL FROM:<a@b.test>\r\nAUTH PLAIN x\r\nRSET\r\n"
		 "AUTH PLAIN AGZvbwBiYXI=\r\nAUTH PLAIN x\r\n"
		 "MAIL FROM:<a@b.test> AUTH=<a+40b.test>\r\n"
		 "RCPT TO:<u@d.test>\r\nDATA\r\n.\r\n");
	sb_str(&want, GREET SEQ_HELO);
	sb_str(&want, ehlo);
	sb_str(&want, "501 5.5.4 Syntax: AUTH mechanism\r\n"
	       "535 5.7.8 Error: authentication failed\r\n"
	       "504 5.5.4 Unsupported authentication mechanism\r\n"
	       "454 4.7.0 Temporary authentication failure\r\n" MAIL_OK
	       "503 5.5.1 Error: MAIL transaction in progress\r\n" OK
	       "235 2.7.0 Authentication successful\r\n"
	       "503 5.5.1 Error: already authenticated\r\n" MAIL_OK RCPT_OK GO
	       QUEUED(2));
	assert_bytes("auth", h.out, h.out_len, want.p, want.len);
	cr_assert_eq(h.nmsgs, 1);
	cr_assert_not_null(strstr((const char *)h.msgs[0]->body,
				  "with ESMTPSA id QID00000000002\r\n"));
	cr_assert_eq(smtp_server_get_stats(h.s)->errors, 5);
	h_free(&h);
	free(want.p);
}

/* ------------------------------------------------------------ Received: */

Test(smtp_server, received_ipv6_and_unsafe_helo)
{
	struct harness h;
	const char *want = "Received: from a(b)??? (2001:db8::1 [IPv6:2001:db8::1])\r\n"
		"\tby mx.test (dpmail) with ESMTP id QID00000000001\r\n"
		"\tfor <u@d.test>; " DATE "\r\nx\r\n";

	memset(&h, 0, sizeof(h));
	smtp_server_conf_defaults(&h.conf);
	h.conf.hostname = "mx.test";
	h.ops.write = h_write;
	h.ops.close = h_close;
	h.ops.mail = h_mail;
	h.ops.message = h_message;
	h.ops.now = h_now;
	h.s = smtp_server_new(&h.conf, &h.ops, &h, "2001:db8::1", 1, 587);
	smtp_server_start(h.s);
	feed_str(&h, "EHLO a(b)\xc3\xbc\xff\r\nMAIL FROM:<a@b.test>\r\n"
		 "RCPT TO:<u@d.test>\r\nDATA\r\nx\r\n.\r\n");
	cr_assert_eq(h.nmsgs, 1);
	assert_bytes("received", (const char *)h.msgs[0]->body,
		     h.msgs[0]->body_len, want, strlen(want));
	cr_assert_eq(h.msgs[0]->local_port, 587);
	h_free(&h);
}

static void tweak_long_lines(struct harness *h)
{
	h->conf.max_cmd_line = 3500;
}

Test(smtp_server, received_lines_stay_short)
{
	struct sbuf in = { 0 };
	struct harness h;
	const uint8_t *b, *end;

	h_init(&h, tweak_long_lines, Q_SYNC);
	sb_str(&in, "EHLO ");
	sb_rep(&in, 'h', 3000);
	sb_str(&in, "\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<");
	sb_rep(&in, 'u', 2000);
	sb_str(&in, "@d.test>\r\nDATA\r\n.\r\n");
	feed_str(&h, in.p);
	cr_assert_eq(h.nmsgs, 1);
	b = h.msgs[0]->body;
	end = b + h.msgs[0]->body_len;
	/* every line well under 998 octets; no "for" with such an address */
	for (const uint8_t *p = b; p < end;) {
		const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));

		cr_assert_not_null(lf);
		cr_assert_lt(lf - p, 998);
		p = lf + 1;
	}
	cr_assert_null(memmem(b, (size_t)(end - b), "for <", 5));
	cr_assert_not_null(memmem(b, (size_t)(end - b), "QID00000000001;\r\n\t"
				  DATE "\r\n", strlen("QID00000000001;\r\n\t"
						      DATE "\r\n")));
	h_free(&h);
	free(in.p);
}

/* -------------------------------------------------------------- counters */

Test(smtp_server, stats)
{
	struct harness h;
	const struct smtp_server_stats *st;

	h_init(&h, NULL, Q_SYNC);
	feed_str(&h, "FOO\r\n" EHLO "MAIL FROM:<a@b.test>\r\nRCPT TO:<unknown@d>\r\n"
		 "RCPT TO:<u@d.test>\r\nDATA\r\nx\r\n.\r\n"
		 "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\nx\ry\r\n.\r\n"
		 "MAIL FROM:<eio@b.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\n.\r\n");
	st = smtp_server_get_stats(h.s);
	cr_assert_eq(st->commands, 12);
	cr_assert_eq(st->errors, 1);
	cr_assert_eq(st->messages, 1);
	cr_assert_eq(st->rejected_rcpts, 1);
	cr_assert_eq(st->rejected_msgs, 2);
	h_free(&h);
}

Test(smtp_server, conf_defaults)
{
	struct smtp_server_conf c;

	smtp_server_conf_defaults(&c);
	cr_assert_eq(c.max_cmd_line, 512);
	cr_assert_eq(c.max_text_line, 1000);
	cr_assert_eq(c.max_message_size, 36u << 20);
	cr_assert_eq(c.max_recipients, 1000);
	cr_assert_eq(c.max_errors, 20);
	cr_assert_eq(c.max_received, 50);
	cr_assert_eq(c.bare_lf, SMTP_BARE_REJECT);
	cr_assert_eq(c.vrfy, SMTP_VRFY_252);
	cr_assert(c.smtputf8 && c.eightbitmime && c.chunking && c.dsn &&
		  c.pipelining);
	cr_assert_not(c.binarymime);
	cr_assert_str_eq(c.greeting_text, "ESMTP dpmail");
}
