/*
 * test_mta_dsn.c: delivery status notifications. Who is told (RFC 3461
 * NOTIFY, the null sender, double bounces), and what they get: the
 * output is parsed back here (headers, MIME parts, the RFC 3464 fields
 * with exact strings), every line is CRLF and at most 998 octets, and
 * Debian's Python email package parses it independently.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "mta/mta_dsn.h"

#define T_ARRIVAL 1764158400000000ull  /* Wed, 26 Nov 2025 12:00:00 */
#define T_ATTEMPT 1764158520000000ull  /* Wed, 26 Nov 2025 12:02:00 */
#define T_NOW 1764162000000000ull      /* Wed, 26 Nov 2025 13:00:00 */
#define T_UNTIL 1764590400000000ull    /* Mon, 1 Dec 2025 12:00:00 */

static const char orig_headers[] =
	"Received: from client.test (client.test [198.18.0.1])\r\n"
	"\tby mx.dpmail.test (dpmail) with ESMTP id 0123456789ABCD\r\n"
	"From: Alice <alice@example.org>\r\n"
	"To: Bob <bob@example.net>\r\n"
	"Subject: lunch\r\n"
	"Message-ID: <m1@example.org>\r\n";
static const char orig_text[] = "Shall we?\r\n-- \r\nAlice\r\n";

static struct mta_dsn_conf conf(void)
{
	struct mta_dsn_conf c = {
		.reporting_mta = "mx.dpmail.test",
		.double_bounce_to = "",
		.delay_by_default = false,
		.full_max = 0,
		.now_us = T_NOW,
	};
	return c;
}

static struct envelope *mkenv(const char *from, const char *body)
{
	struct envelope *e = envelope_new();

	cr_assert_not_null(e);
	memcpy(e->qid, "0123456789ABCD", ENV_QID_LEN + 1);
	cr_assert_eq(envelope_set_str(&e->mail_from, from, SIZE_MAX), 0);
	e->arrival_us = T_ARRIVAL;
	if (body == NULL) {
		cr_assert_eq(envelope_body_append(e, orig_headers,
						  strlen(orig_headers)), 0);
		cr_assert_eq(envelope_body_append(e, "\r\n", 2), 0);
		cr_assert_eq(envelope_body_append(e, orig_text,
						  strlen(orig_text)), 0);
	} else {
		cr_assert_eq(envelope_body_append(e, body, strlen(body)), 0);
	}
	return e;
}

static void add(struct envelope *e, const char *addr, const char *orcpt,
		uint8_t notify)
{
	cr_assert_eq(envelope_add_rcpt(e, addr, orcpt, notify), 0);
}

/* ---- a small parser of the output ----------------------------------- */

struct part {
	char *hdr;     /* header block, each line CRLF-terminated */
	char *content; /* up to the CRLF that belongs to the next boundary */
};

struct parsed {
	char *all;
	char *hdr;
	char boundary[128];
	char *preamble;
	struct part p[4];
	int np;
};

static char *dupn(const char *s, size_t n)
{
	char *o = malloc(n + 1);

	cr_assert_not_null(o);
	memcpy(o, s, n);
	o[n] = '\0';
	return o;
}

/* Every line ends CRLF, none over 998 octets, no NUL. */
static void check_lines(const uint8_t *p, size_t n)
{
	size_t col = 0;

	cr_assert(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n',
		  "must end with CRLF");
	for (size_t i = 0; i < n; i++) {
		cr_assert_neq(p[i], 0, "NUL at %zu", i);
		if (p[i] == '\r') {
			cr_assert(i + 1 < n && p[i + 1] == '\n',
				  "bare CR at %zu", i);
			continue;
		}
		if (p[i] == '\n') {
			cr_assert(i > 0 && p[i - 1] == '\r',
				  "bare LF at %zu", i);
			col = 0;
			continue;
		}
		col++;
		cr_assert_leq(col, 998, "line over 998 octets at %zu", i);
	}
}

/* The unfolded value of the first field called name in a header block
 * (RFC 5322 2.2.3: remove the CRLF before WSP), malloc'd, or NULL. */
static char *field(const char *block, const char *name)
{
	size_t nl = strlen(name);
	const char *l = block;

	while (l != NULL && *l != '\0') {
		if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
			const char *v = l + nl + 1, *e;
			char *o = malloc(strlen(v) + 1);
			size_t j = 0;

			cr_assert_not_null(o);
			while (*v == ' ' || *v == '\t')
				v++;
			for (;;) {
				e = strstr(v, "\r\n");
				if (e == NULL)
					e = v + strlen(v);
				memcpy(o + j, v, (size_t)(e - v));
				j += (size_t)(e - v);
				if (e[0] == '\r' && (e[2] == ' ' || e[2] == '\t'))
					v = e + 2;
				else
					break;
			}
			o[j] = '\0';
			return o;
		}
		l = strstr(l, "\r\n");
		if (l != NULL)
			l += 2;
	}
	return NULL;
}

static void expect_field(const char *block, const char *name,
			 const char *want)
{
	char *v = field(block, name);

	if (want == NULL) {
		cr_expect_null(v, "%s should be absent, is \"%s\"", name,
			       v ? v : "");
	} else {
		cr_assert_not_null(v, "%s missing in:\n%s", name, block);
		cr_expect_str_eq(v, want, "%s", name);
	}
	free(v);
}

static void parse(const struct envelope *b, struct parsed *m)
{
	const char *s, *end, *q;
	char *ct, *bp, delim[160], close[160];

	memset(m, 0, sizeof(*m));
	check_lines(b->body, b->body_len);
	cr_assert_eq(memchr(b->body, 0, b->body_len), NULL);
	m->all = dupn((const char *)b->body, b->body_len);
	s = strstr(m->all, "\r\n\r\n");
	cr_assert_not_null(s);
	m->hdr = dupn(m->all, (size_t)(s - m->all) + 2);
	ct = field(m->hdr, "Content-Type");
	cr_assert_not_null(ct);
	cr_assert(strncmp(ct, "multipart/report;", 17) == 0, "%s", ct);
	cr_assert_not_null(strstr(ct, "report-type=delivery-status"));
	bp = strstr(ct, "boundary=\"");
	cr_assert_not_null(bp);
	bp += 10;
	q = strchr(bp, '"');
	cr_assert_not_null(q);
	cr_assert_lt((size_t)(q - bp), sizeof(m->boundary));
	memcpy(m->boundary, bp, (size_t)(q - bp));
	m->boundary[q - bp] = '\0';
	cr_assert_leq(strlen(m->boundary), 70); /* RFC 2046 5.1.1 */
	free(ct);

	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", m->boundary);
	snprintf(close, sizeof(close), "\r\n--%s--\r\n", m->boundary);
	s += 2; /* the body starts after the empty line's CRLF ... */
	q = strstr(s, delim);
	cr_assert_not_null(q);
	m->preamble = dupn(s + 2, (size_t)(q - s - 2));
	end = strstr(s, close);
	cr_assert_not_null(end, "no close delimiter");
	cr_assert_eq(end + strlen(close), m->all + b->body_len,
		     "close delimiter must end the message");
	while (q != NULL && q < end) {
		const char *ph = q + strlen(delim), *hb, *nx;

		cr_assert_lt(m->np, 4);
		nx = strstr(ph, delim);
		if (nx == NULL || nx > end)
			nx = end;
		hb = strstr(ph, "\r\n\r\n");
		cr_assert(hb != NULL && hb < nx);
		m->p[m->np].hdr = dupn(ph, (size_t)(hb - ph) + 2);
		m->p[m->np].content = dupn(hb + 4, (size_t)(nx - hb - 4));
		m->np++;
		q = nx == end ? NULL : nx;
	}
	/* the boundary occurs only as delimiters */
	{
		size_t count = 0;

		for (const char *z = strstr(m->all, m->boundary); z != NULL;
		     z = strstr(z + 1, m->boundary))
			count++;
		/* Content-Type, every delimiter, the close delimiter */
		cr_assert_eq(count, (size_t)m->np + 2);
	}
}

static void parsed_free(struct parsed *m)
{
	free(m->all);
	free(m->hdr);
	free(m->preamble);
	for (int i = 0; i < m->np; i++) {
		free(m->p[i].hdr);
		free(m->p[i].content);
	}
}

/* message/delivery-status blocks: [0] per-message, then recipients */
static int ds_blocks(const char *content, char **blk, int max)
{
	const char *s = content;
	int n = 0;

	while (*s != '\0') {
		const char *e = strstr(s, "\r\n\r\n");

		cr_assert_lt(n, max);
		if (e == NULL) {
			blk[n++] = dupn(s, strlen(s));
			break;
		}
		blk[n++] = dupn(s, (size_t)(e - s) + 2);
		s = e + 4;
	}
	return n;
}

static void blocks_free(char **blk, int n)
{
	for (int i = 0; i < n; i++)
		free(blk[i]);
}

/* Debian's Python parses the message on its own and prints what it saw:
 * "<content-type> <parts> <part types...> <recipient blocks> <defects>".
 * Skipped (passes) where /usr/bin/python3 is missing. */
static const char py_check[] =
	"import sys, email\n"
	"from email import policy\n"
	"raw = open(sys.argv[1], 'rb').read()\n"
	"m = email.message_from_bytes(raw, policy=policy.compat32)\n"
	"d = len(m.defects)\n"
	"parts = m.get_payload()\n"
	"out = [m.get_content_type(), m.get_param('report-type'),"
	" str(len(parts))]\n"
	"for p in parts:\n"
	"    out.append(p.get_content_type())\n"
	"    d += len(p.defects)\n"
	"ds = parts[1]\n"
	"if ds.get_content_type() == 'message/delivery-status':\n"
	"    blocks = ds.get_payload()\n"
	"    assert blocks[0]['Reporting-MTA'] == 'dns; mx.dpmail.test'\n"
	"    for b in blocks[1:]:\n"
	"        assert b['Action'] in ('failed', 'delayed', 'delivered',"
	" 'relayed', 'expanded'), b['Action']\n"
	"        assert b['Final-Recipient'].startswith('rfc822;')\n"
	"        assert b['Status'][0] in '245'\n"
	"    out.append(str(len(blocks) - 1))\n"
	"if parts[2].get_content_type() == 'message/rfc822':\n"
	"    inner = parts[2].get_payload()[0]\n"
	"    out.append(inner['Received'].split()[1])\n"
	"out.append('defects=%d' % d)\n"
	"print(' '.join(out))\n";

static void python_check(const struct envelope *b, const char *want)
{
	char path[] = "/tmp/ut-dsn-XXXXXX", cmd[8192], got[4096] = "";
	size_t gl;
	FILE *f, *pp;
	int fd, st;

	if (access("/usr/bin/python3", X_OK) != 0)
		return;
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, b->body, b->body_len), (ssize_t)b->body_len);
	close(fd);
	f = fopen("/tmp/ut-dsn-py-check.py", "w");
	cr_assert_not_null(f);
	fputs(py_check, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 /tmp/ut-dsn-py-check.py %s 2>&1", path);
	pp = popen(cmd, "r");
	cr_assert_not_null(pp);
	gl = fread(got, 1, sizeof(got) - 1, pp);
	got[gl] = '\0';
	st = pclose(pp);
	unlink(path);
	cr_expect_eq(st, 0, "python: %s", got);
	got[strcspn(got, "\n")] = '\0';
	cr_expect_str_eq(got, want);
}

static struct mta_dsn_rcpt failed_outcome(uint32_t idx)
{
	struct mta_dsn_rcpt o = {
		.rcpt = idx,
		.action = MTA_DSN_FAILED,
		.status = "5.1.1",
		.remote_mta = "mx1.example.net",
		.diagnostic = "smtp; 550 5.1.1 <bob@example.net>: "
			      "Recipient address rejected: User unknown",
		.last_attempt_us = T_ATTEMPT,
	};
	return o;
}

/* ---- who is told -------------------------------------------------- */

Test(mta_dsn, failed_one_recipient_exact_fields)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;
	char *blk[8];
	int nb;

	add(e, "bob@example.net", "rfc822;Bob@Example.NET", 0);
	cr_assert_eq(envelope_set_str(&e->envid, "QQ314159", SIZE_MAX), 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);

	/* the bounce's envelope: MAIL FROM:<>, RCPT TO:<sender> */
	cr_assert_str_eq(b->mail_from, "");
	cr_assert_eq(b->nrcpt, 1);
	cr_assert_str_eq(b->rcpt[0].addr, "alice@example.org");
	cr_assert_str_eq(b->rcpt[0].orcpt, "");
	cr_assert_eq(b->rcpt[0].notify, 0);
	cr_assert_str_eq(b->qid, "");
	cr_assert_eq(b->arrival_us, T_NOW);
	cr_assert_eq(b->body_type, ENV_BODY_NONE);
	cr_assert_eq(b->smtputf8, false);

	parse(b, &m);
	expect_field(m.hdr, "From",
		     "\"Mail Delivery System\" <MAILER-DAEMON@mx.dpmail.test>");
	expect_field(m.hdr, "To", "<alice@example.org>");
	expect_field(m.hdr, "Subject", "Undelivered Mail Returned to Sender");
	expect_field(m.hdr, "Date", "Wed, 26 Nov 2025 13:00:00 +0000");
	expect_field(m.hdr, "Message-ID",
		     "<1764162000000000.F.0123456789ABCD@mx.dpmail.test>");
	expect_field(m.hdr, "Auto-Submitted", "auto-replied");
	expect_field(m.hdr, "MIME-Version", "1.0");
	expect_field(m.hdr, "Content-Transfer-Encoding", NULL);
	cr_assert_eq(m.np, 3);

	/* 1: the human part names the recipient and the diagnostic */
	expect_field(m.p[0].hdr, "Content-Type", "text/plain; charset=us-ascii");
	cr_expect_not_null(strstr(m.p[0].content, "<bob@example.net>: could "
					      "not be delivered"));
	cr_expect_not_null(strstr(m.p[0].content,
				  "Status: 5.1.1 (Bad destination mailbox "
				  "address)"));
	cr_expect_not_null(strstr(m.p[0].content, "Recipient address"));

	/* 2: RFC 3464 section 2 */
	expect_field(m.p[1].hdr, "Content-Type", "message/delivery-status");
	nb = ds_blocks(m.p[1].content, blk, 8);
	cr_assert_eq(nb, 2, "%s", m.p[1].content);
	cr_expect_str_eq(blk[0],
			 "Reporting-MTA: dns; mx.dpmail.test\r\n"
			 "Original-Envelope-Id: QQ314159\r\n"
			 "Arrival-Date: Wed, 26 Nov 2025 12:00:00 +0000\r\n");
	expect_field(blk[1], "Original-Recipient", "rfc822;Bob@Example.NET");
	expect_field(blk[1], "Final-Recipient", "rfc822;bob@example.net");
	expect_field(blk[1], "Action", "failed");
	expect_field(blk[1], "Status", "5.1.1");
	expect_field(blk[1], "Remote-MTA", "dns; mx1.example.net");
	expect_field(blk[1], "Diagnostic-Code",
		     "smtp; 550 5.1.1 <bob@example.net>: Recipient address "
		     "rejected: User unknown");
	expect_field(blk[1], "Last-Attempt-Date",
		     "Wed, 26 Nov 2025 12:02:00 +0000");
	expect_field(blk[1], "Will-Retry-Until", NULL);
	blocks_free(blk, nb);
	/* the whole part, byte for byte (RFC 3464 2.1: per-message fields,
	 * then each recipient's after an empty line) */
	cr_expect_str_eq(m.p[1].content,
			 "Reporting-MTA: dns; mx.dpmail.test\r\n"
			 "Original-Envelope-Id: QQ314159\r\n"
			 "Arrival-Date: Wed, 26 Nov 2025 12:00:00 +0000\r\n"
			 "\r\n"
			 "Original-Recipient: rfc822;Bob@Example.NET\r\n"
			 "Final-Recipient: rfc822;bob@example.net\r\n"
			 "Action: failed\r\n"
			 "Status: 5.1.1\r\n"
			 "Remote-MTA: dns; mx1.example.net\r\n"
			 "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: "
			 "Recipient address\r\n"
			 " rejected: User unknown\r\n"
			 "Last-Attempt-Date: Wed, 26 Nov 2025 12:02:00 +0000\r\n");

	/* 3: RET absent -> headers only, exactly the original's */
	expect_field(m.p[2].hdr, "Content-Type", "text/rfc822-headers");
	cr_expect_str_eq(m.p[2].content, orig_headers);
	cr_expect_null(strstr(m.all, "Shall we?"));

	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status text/rfc822-headers 1 "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, notify_never_gets_nothing)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);

	add(e, "bob@example.net", "", ENV_NOTIFY_NEVER);
	b = (struct envelope *)&c; /* must be cleared */
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 0);
	cr_assert_null(b);
	envelope_free(e);
}

Test(mta_dsn, notify_success_delay_without_failure_skips_failures)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);

	add(e, "bob@example.net", "", ENV_NOTIFY_SUCCESS | ENV_NOTIFY_DELAY);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 0);
	cr_assert_null(b);
	envelope_free(e);
}

Test(mta_dsn, wanted_table)
{
	struct mta_dsn_conf c = conf();
	struct env_rcpt r = { .addr = (char *)"x@y", .orcpt = (char *)"" };
	static const struct {
		uint8_t notify;
		bool delay_default;
		bool want[5]; /* failed delayed delivered relayed expanded */
	} t[] = {
		{ 0, false, { true, false, false, false, false } },
		{ 0, true, { true, true, false, false, false } },
		{ ENV_NOTIFY_NEVER, true,
		  { false, false, false, false, false } },
		{ ENV_NOTIFY_FAILURE, true,
		  { true, false, false, false, false } },
		{ ENV_NOTIFY_DELAY, false,
		  { false, true, false, false, false } },
		{ ENV_NOTIFY_SUCCESS, false,
		  { false, false, true, true, true } },
		{ ENV_NOTIFY_SUCCESS | ENV_NOTIFY_DELAY, false,
		  { false, true, true, true, true } },
		{ ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE | ENV_NOTIFY_DELAY,
		  false, { true, true, true, true, true } },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		r.notify = t[i].notify;
		c.delay_by_default = t[i].delay_default;
		for (int a = 0; a < 5; a++)
			cr_expect_eq(mta_dsn_wanted(&c, &r,
						    (enum mta_dsn_action)a),
				     t[i].want[a], "row %zu action %d", i, a);
	}
}

Test(mta_dsn, delayed_report)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = {
		.rcpt = 0,
		.action = MTA_DSN_DELAYED,
		.status = "4.4.1",
		.remote_mta = "",
		.diagnostic = "X-Dpmail; connect to mx1.example.net: timed out",
		.last_attempt_us = T_ATTEMPT,
		.retry_until_us = T_UNTIL,
	};
	struct parsed m;
	char *blk[4];
	int nb;

	/* no NOTIFY: delays only when the policy says so */
	add(e, "bob@example.net", "", 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 0);
	c.delay_by_default = true;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);

	parse(b, &m);
	expect_field(m.hdr, "Subject", "Delayed Mail (still being retried)");
	expect_field(m.hdr, "Message-ID",
		     "<1764162000000000.D.0123456789ABCD@mx.dpmail.test>");
	nb = ds_blocks(m.p[1].content, blk, 4);
	cr_assert_eq(nb, 2);
	expect_field(blk[0], "Original-Envelope-Id", NULL);
	expect_field(blk[1], "Original-Recipient", NULL);
	expect_field(blk[1], "Action", "delayed");
	expect_field(blk[1], "Status", "4.4.1");
	expect_field(blk[1], "Remote-MTA", NULL);
	/* a diagnostic-type the caller gave is kept */
	expect_field(blk[1], "Diagnostic-Code",
		     "X-Dpmail; connect to mx1.example.net: timed out");
	expect_field(blk[1], "Will-Retry-Until",
		     "Mon, 1 Dec 2025 12:00:00 +0000");
	cr_expect_not_null(strstr(m.p[0].content,
				  "Will retry until: Mon, 1 Dec 2025"));
	expect_field(m.p[2].hdr, "Content-Type", "text/rfc822-headers");
	blocks_free(blk, nb);
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status text/rfc822-headers 1 "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, delivered_report_only_when_asked_and_headers_only)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o[2] = {
		{ .rcpt = 0, .action = MTA_DSN_DELIVERED, .status = "2.0.0",
		  .remote_mta = "mx1.example.net",
		  .diagnostic = "smtp; 250 2.0.0 Ok: queued as 4FD1",
		  .last_attempt_us = T_ATTEMPT },
		{ .rcpt = 1, .action = MTA_DSN_DELIVERED },
	};
	struct parsed m;
	char *blk[4];
	int nb;

	add(e, "bob@example.net", "", ENV_NOTIFY_SUCCESS);
	add(e, "carol@example.net", "", 0); /* not asked */
	e->ret = ENV_RET_FULL; /* no failure: headers only (RFC 3461 4.3) */
	cr_assert_eq(mta_dsn_render(&c, e, o, 2, &b), 1);
	parse(b, &m);
	expect_field(m.hdr, "Subject", "Successful Mail Delivery Report");
	nb = ds_blocks(m.p[1].content, blk, 4);
	cr_assert_eq(nb, 2);
	expect_field(blk[1], "Final-Recipient", "rfc822;bob@example.net");
	expect_field(blk[1], "Action", "delivered");
	expect_field(blk[1], "Status", "2.0.0");
	expect_field(m.p[2].hdr, "Content-Type", "text/rfc822-headers");
	cr_expect_null(strstr(m.all, "carol@"));
	blocks_free(blk, nb);
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status text/rfc822-headers 1 "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, mixed_recipients_in_order)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o[5] = {
		failed_outcome(0),
		{ .rcpt = 1, .action = MTA_DSN_DELAYED, .status = "4.2.2",
		  .diagnostic = "452 4.2.2 mailbox full",
		  .retry_until_us = T_UNTIL },
		{ .rcpt = 2, .action = MTA_DSN_DELIVERED },
		failed_outcome(3), /* NOTIFY=NEVER */
		{ .rcpt = 4, .action = MTA_DSN_RELAYED, .status = "2.0.0",
		  .remote_mta = "old.example.net" },
	};
	static const char *const want_rcpt[] = {
		"rfc822;bob@example.net", "rfc822;dave@example.net",
		"rfc822;erin@example.net", "rfc822;gina@example.net" };
	static const char *const want_action[] = {
		"failed", "delayed", "delivered", "relayed" };
	static const char *const want_status[] = {
		"5.1.1", "4.2.2", "2.0.0", "2.0.0" };
	struct parsed m;
	char *blk[8];
	int nb;

	add(e, "bob@example.net", "", 0);
	add(e, "dave@example.net", "", ENV_NOTIFY_DELAY | ENV_NOTIFY_FAILURE);
	add(e, "erin@example.net", "", ENV_NOTIFY_SUCCESS);
	add(e, "fred@example.net", "", ENV_NOTIFY_NEVER);
	add(e, "gina@example.net", "", ENV_NOTIFY_SUCCESS);
	cr_assert_eq(mta_dsn_render(&c, e, o, 5, &b), 4);
	parse(b, &m);
	expect_field(m.hdr, "Subject", "Undelivered Mail Returned to Sender");
	nb = ds_blocks(m.p[1].content, blk, 8);
	cr_assert_eq(nb, 5);
	for (int i = 0; i < 4; i++) {
		expect_field(blk[i + 1], "Final-Recipient", want_rcpt[i]);
		expect_field(blk[i + 1], "Action", want_action[i]);
		expect_field(blk[i + 1], "Status", want_status[i]);
	}
	/* "smtp; " added where the caller gave no diagnostic-type */
	expect_field(blk[2], "Diagnostic-Code", "smtp; 452 4.2.2 mailbox full");
	expect_field(blk[3], "Remote-MTA", NULL);
	expect_field(blk[3], "Diagnostic-Code", NULL);
	expect_field(blk[4], "Remote-MTA", "dns; old.example.net");
	cr_expect_null(strstr(m.all, "fred@"));
	cr_expect_not_null(strstr(m.p[0].content, "<dave@example.net>: not "
					      "yet delivered"));
	cr_expect_not_null(strstr(m.p[0].content, "<erin@example.net>: "
					      "delivered"));
	blocks_free(blk, nb);
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status text/rfc822-headers 4 "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

/* ---- the null sender -------------------------------------------------- */

Test(mta_dsn, null_sender_gets_no_report)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);

	add(e, "bob@example.net", "", 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 0);
	cr_assert_null(b);
	c.double_bounce_to = NULL;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 0);
	cr_assert_null(b);
	envelope_free(e);
}

Test(mta_dsn, double_bounce_to_postmaster)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("", NULL), *b;
	struct mta_dsn_rcpt o[3] = {
		failed_outcome(0),
		{ .rcpt = 1, .action = MTA_DSN_DELAYED,
		  .retry_until_us = T_UNTIL },
		failed_outcome(2),
	};
	struct parsed m;
	char *blk[4];
	int nb;

	add(e, "bob@example.net", "", 0);
	add(e, "dave@example.net", "", ENV_NOTIFY_DELAY);
	add(e, "carol@example.net", "", ENV_NOTIFY_NEVER);
	c.double_bounce_to = "postmaster@dpmail.test";
	c.delay_by_default = true;
	cr_assert_eq(mta_dsn_render(&c, e, o, 3, &b), 1);
	cr_assert_str_eq(b->mail_from, "");
	cr_assert_eq(b->nrcpt, 1);
	cr_assert_str_eq(b->rcpt[0].addr, "postmaster@dpmail.test");
	parse(b, &m);
	expect_field(m.hdr, "To", "<postmaster@dpmail.test>");
	expect_field(m.hdr, "Subject", "Undelivered Mail (double bounce)");
	expect_field(m.hdr, "Auto-Submitted", "auto-replied");
	nb = ds_blocks(m.p[1].content, blk, 4);
	cr_assert_eq(nb, 2); /* only the failure; no delays to postmaster */
	expect_field(blk[1], "Final-Recipient", "rfc822;bob@example.net");
	cr_expect_not_null(strstr(m.p[0].content, "null sender"));
	blocks_free(blk, nb);
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status text/rfc822-headers 1 "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, double_bounce_to_postmaster_never_loops)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);

	add(e, "Postmaster@DPMAIL.test", "", 0);
	c.double_bounce_to = "postmaster@dpmail.test";
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 0);
	cr_assert_null(b);
	envelope_free(e);
}

/* ---- RET ---------------------------------------------------------- */

Test(mta_dsn, ret_full_returns_the_whole_message_8bit)
{
	static const char body8[] =
		"Received: from client.test by mx.dpmail.test\r\n"
		"Subject: caf\xc3\xa9\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9\x65\r\n";
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", body8), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;

	add(e, "bob@example.net", "", ENV_NOTIFY_FAILURE);
	e->ret = ENV_RET_FULL;
	e->body_type = ENV_BODY_8BITMIME;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	cr_assert_eq(b->body_type, ENV_BODY_8BITMIME);
	parse(b, &m);
	expect_field(m.hdr, "Content-Transfer-Encoding", "8bit");
	expect_field(m.p[2].hdr, "Content-Type", "message/rfc822");
	expect_field(m.p[2].hdr, "Content-Transfer-Encoding", "8bit");
	cr_expect_str_eq(m.p[2].content, body8);
	/* the generated parts stay 7-bit */
	expect_field(m.p[0].hdr, "Content-Transfer-Encoding", NULL);
	expect_field(m.p[1].hdr, "Content-Transfer-Encoding", NULL);
	cr_expect_not_null(strstr(m.p[0].content, "attached below"));
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status message/rfc822 1 "
			"client.test defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, ret_full_falls_back_to_headers)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;
	char *longline = malloc(1200);

	cr_assert_not_null(longline);
	add(e, "bob@example.net", "", 0);
	e->ret = ENV_RET_FULL;

	/* over the size cap */
	c.full_max = 16;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m);
	expect_field(m.p[2].hdr, "Content-Type", "text/rfc822-headers");
	cr_expect_str_eq(m.p[2].content, orig_headers);
	cr_expect_not_null(strstr(m.p[0].content, "could not be returned"));
	parsed_free(&m);
	envelope_free(b);

	/* a body line over 998 octets cannot travel unchanged */
	c.full_max = 0;
	memset(longline, 'x', 1100);
	memcpy(longline + 1100, "\r\n", 3);
	cr_assert_eq(envelope_body_append(e, longline, strlen(longline)), 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m);
	expect_field(m.p[2].hdr, "Content-Type", "text/rfc822-headers");
	parsed_free(&m);
	envelope_free(b);

	/* BODY=BINARYMIME neither */
	e->body_len -= strlen(longline);
	e->body_type = ENV_BODY_BINARYMIME;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m);
	expect_field(m.p[2].hdr, "Content-Type", "text/rfc822-headers");
	parsed_free(&m);
	envelope_free(b);

	/* and without those, FULL is honoured */
	e->body_type = ENV_BODY_NONE;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m);
	expect_field(m.p[2].hdr, "Content-Type", "message/rfc822");
	expect_field(m.p[2].hdr, "Content-Transfer-Encoding", NULL);
	cr_expect_not_null(strstr(m.p[2].content, "Shall we?"));
	parsed_free(&m);
	envelope_free(b);
	free(longline);
	envelope_free(e);
}

Test(mta_dsn, long_header_lines_in_original_are_cut)
{
	struct mta_dsn_conf c = conf();
	char *body = malloc(3000);
	struct envelope *e, *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;

	cr_assert_not_null(body);
	strcpy(body, "X-Long: ");
	memset(body + 8, 'y', 2000);
	strcpy(body + 2008, "\nBare-LF: yes\r\n\nbody\r\n");
	e = mkenv("alice@example.org", body);
	add(e, "bob@example.net", "", 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m); /* checks every line */
	cr_expect_not_null(strstr(m.p[2].content, "\r\nBare-LF: yes\r\n"));
	cr_expect_null(strstr(m.p[2].content, "body"));
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
	free(body);
}

/* ---- the boundary, folding, hostile text ---------------------------- */

Test(mta_dsn, boundary_never_in_content)
{
	struct mta_dsn_conf c = conf();
	/* the first two candidates the renderer would pick */
	static const char body[] =
		"Subject: trap\r\n"
		"X-A: =_dpmail_0123456789ABCD_6447ef9561400_0\r\n"
		"\r\n"
		"--=_dpmail_0123456789ABCD_6447ef9561400_1\r\n";
	struct envelope *e = mkenv("alice@example.org", body), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;

	add(e, "bob@example.net", "", 0);
	e->ret = ENV_RET_FULL;
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m); /* asserts the boundary occurs only as delimiters */
	cr_expect_str_eq(m.boundary, "=_dpmail_0123456789ABCD_6447ef9561400_2");
	cr_expect_str_eq(m.p[2].content, body);
	cr_assert_eq(m.np, 3);
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, long_diagnostic_is_folded)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	char *diag = malloc(8000), *want = malloc(8000), *v;
	struct parsed m;
	char *blk[4];
	int nb;
	size_t n;

	cr_assert_not_null(diag);
	cr_assert_not_null(want);
	n = (size_t)sprintf(diag, "smtp; 550 5.7.1");
	for (int i = 0; i < 300; i++)
		n += (size_t)sprintf(diag + n, " word%d", i);
	strcpy(want, diag);
	/* and a single 2000-octet word: cut, the only way to stay legal */
	diag[n++] = ' ';
	memset(diag + n, 'z', 2000);
	diag[n + 2000] = '\0';
	o.diagnostic = diag;
	add(e, "bob@example.net", "", 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m);
	nb = ds_blocks(m.p[1].content, blk, 4);
	cr_assert_eq(nb, 2);
	v = field(blk[1], "Diagnostic-Code");
	cr_assert_not_null(v);
	/* unfolding gives the words back */
	cr_expect_eq(strncmp(v, want, strlen(want)), 0);
	/* folded at the soft limit where words allow it */
	cr_expect_not_null(strstr(m.p[1].content, "\r\n word"));
	cr_expect_not_null(strstr(m.p[0].content, "\r\n        word"));
	free(v);
	blocks_free(blk, nb);
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/delivery-status text/rfc822-headers 1 "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
	free(diag);
	free(want);
}

Test(mta_dsn, no_header_injection)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;

	o.diagnostic = "smtp; 550 no\r\nBcc: victim@example.com\r\n\r\nx";
	o.remote_mta = "evil\r\nX-Injected: 1";
	add(e, "bob@example.net", "rfc822;b\r\nX-Orcpt: 1", 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	parse(b, &m);
	cr_expect_null(strstr(m.all, "\r\nBcc:"));
	cr_expect_null(strstr(m.all, "\r\nX-Injected:"));
	cr_expect_null(strstr(m.all, "\r\nX-Orcpt:"));
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

/* ---- SMTPUTF8 (RFC 6533) --------------------------------------------- */

Test(mta_dsn, smtputf8_uses_global_types)
{
	static const char body[] =
		"Subject: =?utf-8?q?x?=\r\nFrom: j\xc3\xb6rg@b\xc3\xbc"
		"cher.example\r\n\r\nhi\r\n";
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("j\xc3\xb6rg@b\xc3\xbc" "cher.example",
				   body), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;
	char *blk[4];
	int nb;

	e->smtputf8 = true;
	add(e, "\xc3\xa5sa@example.se", "utf-8;\xc3\xa5sa@example.se", 0);
	add(e, "plain@example.se", "", 0);
	struct mta_dsn_rcpt os[2] = { o, failed_outcome(1) };
	cr_assert_eq(mta_dsn_render(&c, e, os, 2, &b), 2);
	cr_assert(b->smtputf8);
	cr_assert_eq(b->body_type, ENV_BODY_8BITMIME);
	cr_assert_str_eq(b->rcpt[0].addr,
			 "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
	parse(b, &m);
	expect_field(m.hdr, "To", "<j\xc3\xb6rg@b\xc3\xbc" "cher.example>");
	expect_field(m.p[1].hdr, "Content-Type",
		     "message/global-delivery-status");
	expect_field(m.p[2].hdr, "Content-Type", "message/global-headers");
	nb = ds_blocks(m.p[1].content, blk, 4);
	cr_assert_eq(nb, 3);
	expect_field(blk[1], "Original-Recipient",
		     "utf-8;\xc3\xa5sa@example.se");
	expect_field(blk[1], "Final-Recipient", "utf-8;\xc3\xa5sa@example.se");
	expect_field(blk[2], "Final-Recipient", "rfc822;plain@example.se");
	blocks_free(blk, nb);

	parsed_free(&m);
	envelope_free(b);
	e->ret = ENV_RET_FULL;
	cr_assert_eq(mta_dsn_render(&c, e, os, 2, &b), 2);
	parse(b, &m);
	expect_field(m.p[2].hdr, "Content-Type", "message/global");
	expect_field(m.p[2].hdr, "Content-Transfer-Encoding", "8bit");
	cr_expect_str_eq(m.p[2].content, body);
	python_check(b, "multipart/report delivery-status 3 text/plain "
			"message/global-delivery-status message/global "
			"defects=0");
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

Test(mta_dsn, non_ascii_in_ascii_report_is_replaced)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);
	struct parsed m;

	o.diagnostic = "smtp; 550 caf\xc3\xa9";
	add(e, "bob@example.net", "", 0);
	cr_assert_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	cr_assert_eq(b->body_type, ENV_BODY_NONE);
	parse(b, &m);
	cr_expect_not_null(strstr(m.p[1].content, "smtp; 550 caf??"));
	parsed_free(&m);
	envelope_free(b);
	envelope_free(e);
}

/* ---- arguments and statuses ---------------------------------------- */

Test(mta_dsn, bad_arguments)
{
	struct mta_dsn_conf c = conf();
	struct envelope *e = mkenv("alice@example.org", NULL), *b;
	struct mta_dsn_rcpt o = failed_outcome(0);

	add(e, "bob@example.net", "", 0);
	o.rcpt = 1;
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), -EINVAL);
	o.rcpt = 0;
	o.status = "5.1";
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), -EINVAL);
	o.status = "2.0.0"; /* does not fit "failed" */
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), -EINVAL);
	o.status = "4.4.7"; /* retries ran out: failed with a 4 is fine */
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	envelope_free(b);
	o.action = MTA_DSN_DELAYED;
	o.status = "5.1.1";
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), -EINVAL);
	o.status = NULL; /* default 4.0.0 */
	c.delay_by_default = true;
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), 1);
	cr_expect_not_null(memmem(b->body, b->body_len, "Status: 4.0.0\r\n",
				  15));
	envelope_free(b);
	c.reporting_mta = "";
	cr_expect_eq(mta_dsn_render(&c, e, &o, 1, &b), -EINVAL);
	cr_expect_null(b);
	envelope_free(e);
}

Test(mta_dsn, status_from_reply)
{
	static const struct {
		int code;
		const char *text, *want;
	} t[] = {
		{ 550, NULL, "5.0.0" },
		{ 450, "mailbox busy", "4.0.0" },
		{ 451, "451 4.3.0 try later", "4.3.0" },
		{ 550, "5.1.1 <bob@x>: unknown", "5.1.1" },
		{ 550, "550-5.7.1 policy", "5.7.1" },
		{ 552, "552 5.123.456", "5.123.456" },
		{ 550, "4.1.1 class mismatch", "5.0.0" },
		{ 550, "5.1.1000 too long", "5.0.0" },
		{ 550, "5.1.1x", "5.0.0" },
		{ 250, "2.0.0 Ok", "2.0.0" },
		{ 221, NULL, "2.0.0" },
	};
	char out[16];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_assert_eq(mta_dsn_status_from_reply(t[i].code, t[i].text,
						       out, sizeof(out)), 0);
		cr_expect_str_eq(out, t[i].want, "row %zu", i);
	}
	cr_expect_eq(mta_dsn_status_from_reply(354, NULL, out, sizeof(out)),
		     -EINVAL);
	cr_expect_eq(mta_dsn_status_from_reply(99, NULL, out, sizeof(out)),
		     -EINVAL);
	cr_expect_eq(mta_dsn_status_from_reply(600, NULL, out, sizeof(out)),
		     -EINVAL);
}

Test(mta_dsn, status_valid_and_text)
{
	cr_expect(mta_dsn_status_valid("5.1.1"));
	cr_expect(mta_dsn_status_valid("4.123.999"));
	cr_expect_not(mta_dsn_status_valid("3.1.1"));
	cr_expect_not(mta_dsn_status_valid("5.1"));
	cr_expect_not(mta_dsn_status_valid("5.1.1 "));
	cr_expect_not(mta_dsn_status_valid("5..1"));
	cr_expect_not(mta_dsn_status_valid("5.1234.1"));
	cr_expect_not(mta_dsn_status_valid(NULL));
	cr_expect_str_eq(mta_dsn_status_text("5.1.1"),
			 "Bad destination mailbox address");
	cr_expect_str_eq(mta_dsn_status_text("4.2.2"), "Mailbox full");
	cr_expect_str_eq(mta_dsn_status_text("5.7.99"),
			 "Security or policy status");
	cr_expect_str_eq(mta_dsn_status_text("5.9.9"), "Permanent failure");
	cr_expect_str_eq(mta_dsn_status_text("2.0.0"), "Success");
	cr_expect_str_eq(mta_dsn_status_text("x"), "Unknown status");
}

/* ---- hostile input, many times -------------------------------------- */

static char *rnd_str(unsigned *seed, size_t max)
{
	static const char alpha[] = "ab @;.:<>\"\\\r\n\t-=_\x80\xc3\xa9\x01z";
	size_t n = (size_t)rand_r(seed) % max;
	char *s = malloc(n + 1);

	cr_assert_not_null(s);
	for (size_t i = 0; i < n; i++) {
		s[i] = alpha[(size_t)rand_r(seed) % (sizeof(alpha) - 1)];
		if (rand_r(seed) % 50 == 0) /* long runs without spaces */
			s[i] = 'q';
	}
	s[n] = '\0';
	return s;
}

Test(mta_dsn, random_fields_stay_well_formed)
{
	unsigned seed = 20251126;

	for (int round = 0; round < 300; round++) {
		struct mta_dsn_conf c = conf();
		char *from = rnd_str(&seed, 40), *addr = rnd_str(&seed, 1500);
		char *orcpt = rnd_str(&seed, 60), *diag = rnd_str(&seed, 3000);
		char *rmta = rnd_str(&seed, 1200), *envid = rnd_str(&seed, 90);
		char *body = rnd_str(&seed, 4000);
		struct envelope *e, *b;
		struct mta_dsn_rcpt o = {
			.rcpt = 0,
			.action = (enum mta_dsn_action)(rand_r(&seed) % 5),
			.diagnostic = diag,
			.remote_mta = rmta,
			.last_attempt_us = T_ATTEMPT,
			.retry_until_us = T_UNTIL,
		};
		struct parsed m;
		int rc;

		if (from[0] == '\0') { /* not the null sender */
			free(from);
			from = strdup("f");
			cr_assert_not_null(from);
		}
		e = mkenv(from, body);
		e->smtputf8 = rand_r(&seed) % 2;
		e->ret = (uint8_t)(rand_r(&seed) % 3);
		cr_assert_eq(envelope_set_str(&e->envid, envid, SIZE_MAX), 0);
		add(e, addr, orcpt, ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE |
			ENV_NOTIFY_DELAY);
		rc = mta_dsn_render(&c, e, &o, 1, &b);
		cr_assert_eq(rc, 1, "round %d", round);
		parse(b, &m);
		cr_assert_eq(m.np, 3);
		parsed_free(&m);
		envelope_free(b);
		envelope_free(e);
		free(from);
		free(addr);
		free(orcpt);
		free(diag);
		free(rmta);
		free(envid);
		free(body);
	}
}
