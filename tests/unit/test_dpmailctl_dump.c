/*
 * test_dpmailctl_dump.c: `dpmailctl spool dump` end to end: a spool is
 * built with the spool API in a private directory, then the built
 * dpmailctl binary (DPMAILCTL, from meson) runs on it. Checked: the table
 * (queue IDs, senders, recipients with their states, the finished mark,
 * the summary), --json (valid JSON, checked field by field by python3),
 * --body (text and JSON, UTF-8 and base64), bad records (a corrupt region
 * skipped with the messages after it listed, a torn tail), errors (a
 * missing directory, usage) and the help texts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/spool.h"
#include "store/spool_record.h"
#include "tests/unit/test_spool_util.h"

#ifndef DPMAILCTL
#error "DPMAILCTL (the path of the built dpmailctl) comes from meson"
#endif

TestSuite(dpmailctl_dump, .fini = tsu_cleanup, .timeout = 60);

/* ---- running things ---- */

struct res {
	int status; /* exit code, or -1 when it did not exit */
	char *out, *err;
	size_t outlen;
};

static char *slurp(const char *path, size_t *len)
{
	struct stat st;
	char *p;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	cr_assert_eq(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	p[st.st_size] = '\0';
	close(fd);
	if (len)
		*len = (size_t)st.st_size;
	return p;
}

/* Runs argv (argv[0] a path), stdin from in (or /dev/null); stdout and
 * stderr are kept in files beside the spool (not segment names, so the
 * spool ignores them). */
static struct res run(char *const argv[], const char *in)
{
	char opath[512], epath[512];
	struct res r = { .status = -1 };
	int status;
	pid_t pid;

	snprintf(opath, sizeof(opath), "%s/stdout.txt", tsu_dir());
	snprintf(epath, sizeof(epath), "%s/stderr.txt", tsu_dir());
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int i = open(in ? in : "/dev/null", O_RDONLY);
		int o = open(opath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
		int e = open(epath, O_CREAT | O_TRUNC | O_WRONLY, 0600);

		if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 ||
		    dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status))
		r.status = WEXITSTATUS(status);
	cr_assert_neq(r.status, 127, "cannot run %s", argv[0]);
	r.out = slurp(opath, &r.outlen);
	r.err = slurp(epath, NULL);
	return r;
}

static void res_free(struct res *r)
{
	free(r->out);
	free(r->err);
}

/* dpmailctl spool dump DIR [a] [b] */
static struct res dump(const char *a, const char *b)
{
	char *argv[] = { DPMAILCTL, "spool", "dump", (char *)tsu_dir(),
			 (char *)a, (char *)b, NULL };

	return run(argv, NULL);
}

static struct res ctl(const char *a, const char *b, const char *c)
{
	char *argv[] = { DPMAILCTL, (char *)a, (char *)b, (char *)c, NULL };

	return run(argv, NULL);
}

/*
 * Feeds the JSON on r->out to python3, which parses it (any syntax error
 * fails) and runs check (python statements on `d`, the parsed dump, and
 * `exp`, parsed from the JSON string exp). Skipped without python3.
 */
static void json_check(const struct res *r, const char *exp,
		       const char *check)
{
	char in[512], prog[8192];
	struct res p;

	if (access("/usr/bin/python3", X_OK) != 0) {
		cr_log_warn("no /usr/bin/python3: JSON not checked");
		return;
	}
	snprintf(in, sizeof(in), "%s/dump.json", tsu_dir());
	FILE *f = fopen(in, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(r->out, 1, r->outlen, f), r->outlen);
	fclose(f);
	snprintf(prog, sizeof(prog),
		 "import json, sys, base64\n"
		 "d = json.load(sys.stdin)\n"
		 "exp = json.loads(sys.argv[1])\n"
		 "%s\n"
		 "print('ok')\n", check);
	char *argv[] = { "/usr/bin/python3", "-c", prog, (char *)exp, NULL };

	p = run(argv, in);
	cr_assert_eq(p.status, 0, "python3 says:\n%s\n%s\non:\n%s", p.out,
		     p.err, r->out);
	cr_assert_str_eq(p.out, "ok\n");
	res_free(&p);
}

/* The line of text holding needle (a copy, "" when none). */
static char *line_with(const char *text, const char *needle)
{
	const char *p = strstr(text, needle), *s, *e;

	if (p == NULL)
		return strdup("");
	for (s = p; s > text && s[-1] != '\n'; s--)
		;
	e = strchr(p, '\n');
	if (e == NULL)
		e = p + strlen(p);
	return strndup(s, (size_t)(e - s));
}

static void assert_line(const char *text, const char *needle,
			const char *also)
{
	char *l = line_with(text, needle);

	cr_assert(l[0] != '\0', "no line with '%s' in:\n%s", needle, text);
	cr_assert_not_null(strstr(l, also), "'%s' not on the line '%s'",
			   also, l);
	free(l);
}

/* ---- the spool ---- */

enum { NMSG = 4 };
#define NEXT_TRY 1900000000ull /* 2030-03-17T17:46:40Z */

struct fixture {
	struct envelope *e[NMSG];
	size_t bytes;
};

static const char *body0 = "Subject: first\r\n\r\nHello from message zero.\r\n";
static const char *body1 = "Subject: second\r\n\r\nGr\xc3\xbc\xc3\x9f"
			   "e \"quoted\" \\ back\ttab\r\n";
static const char *sender3 = "we\"ird\\\x01\xff@example.org";

/*
 * m0 <>, 1 rcpt delivered: finished. m1, 2 rcpts: delivered, deferred.
 * m2, 3 rcpts: pending, pending, bounced; a binary body. m3, a hostile
 * sender, 1 rcpt pending. All in seg-0-1.dps.
 */
static void build(struct fixture *f)
{
	struct spool_conf c;
	struct spool *sp;
	uint8_t bin[300];

	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	f->e[0] = tsu_env(sp, 0, 0, 1, 0);
	envelope_body_append(f->e[0], body0, strlen(body0));
	f->e[1] = tsu_env(sp, 0, 1, 2, 0);
	envelope_body_append(f->e[1], body1, strlen(body1));
	f->e[2] = tsu_env(sp, 0, 2, 3, 0);
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(0x80 + i * 13);
	envelope_body_append(f->e[2], bin, sizeof(bin));
	f->e[3] = tsu_env(sp, 0, 4, 1, 0);
	cr_assert_eq(envelope_set_str(&f->e[3]->mail_from, sender3, SIZE_MAX),
		     0);
	envelope_body_append(f->e[3], "x", 1);
	f->bytes = 0;
	for (int i = 0; i < NMSG; i++) {
		f->e[i]->declared_size = f->e[i]->body_len;
		f->bytes += f->e[i]->body_len;
		cr_assert_eq(tsu_put_msg(sp, f->e[i]), 0);
	}
	cr_assert_eq(tsu_put_state(sp, f->e[0]->qid, 0, SPOOL_RCPT_DELIVERED,
				   0), 0);
	cr_assert_eq(tsu_put_state(sp, f->e[1]->qid, 0, SPOOL_RCPT_DELIVERED,
				   0), 0);
	cr_assert_eq(tsu_put_state(sp, f->e[1]->qid, 1, SPOOL_RCPT_DEFERRED,
				   NEXT_TRY), 0);
	cr_assert_eq(tsu_put_state(sp, f->e[2]->qid, 2, SPOOL_RCPT_BOUNCED,
				   0), 0);
	spool_close(sp);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 1);
}

static void fixture_free(struct fixture *f)
{
	for (int i = 0; i < NMSG; i++)
		envelope_free(f->e[i]);
}

/* exp for the JSON checks: queue IDs in order */
static void exp_json(const struct fixture *f, char *out, size_t len)
{
	snprintf(out, len, "{\"qids\": [\"%s\", \"%s\", \"%s\", \"%s\"], "
		 "\"bytes\": %zu, \"next_try\": %llu}", f->e[0]->qid,
		 f->e[1]->qid, f->e[2]->qid, f->e[3]->qid, f->bytes,
		 NEXT_TRY);
}

/* The walk of an intact segment: offset and size of message i. */
static void msg_at(const char *path, unsigned i, uint64_t *off,
		   uint64_t *size)
{
	size_t len;
	uint8_t *p = (uint8_t *)slurp(path, &len);
	uint64_t o = 0;

	while (o + SPOOL_REC_HDR_LEN <= len) {
		struct spool_rec_hdr h;

		spool_rec_hdr_get(p + o, &h);
		cr_assert_eq(spool_rec_hdr_check(&h), 0);
		if (h.type == SPOOL_REC_MSG && i-- == 0) {
			*off = o;
			*size = spool_rec_size(h.len);
			free(p);
			return;
		}
		o += spool_rec_size(h.len);
	}
	cr_assert_fail("no message %u", i);
}

/* ---- tests ---- */

Test(dpmailctl_dump, table)
{
	struct fixture f;
	char want[512], *l;

	build(&f);
	struct res r = dump(NULL, NULL);

	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_str_eq(r.err, "");
	const char *head = "-Queue ID-      --Size-- ----Arrival Time---- "
			   "-Sender/Recipient-------\n";

	cr_assert(strncmp(r.out, head, strlen(head)) == 0, "%s", r.out);
	/* one line per message: queue ID ('-': finished), size, sender */
	snprintf(want, sizeof(want), "%s-", f.e[0]->qid);
	l = line_with(r.out, want);
	cr_assert(strncmp(l, want, strlen(want)) == 0, "%s", r.out);
	cr_assert(strlen(l) > 3 && strcmp(l + strlen(l) - 3, " <>") == 0,
		  "'%s'", l);
	snprintf(want, sizeof(want), " %8zu ", f.e[0]->body_len);
	cr_assert_not_null(strstr(l, want), "'%s'", l);
	free(l);
	for (int i = 1; i < NMSG; i++) {
		snprintf(want, sizeof(want), "%s ", f.e[i]->qid);
		l = line_with(r.out, want);
		cr_assert(strncmp(l, want, strlen(want)) == 0,
			  "live message %d: '%s'", i, l);
		free(l);
	}
	assert_line(r.out, f.e[1]->qid, "sender1@example.org");
	assert_line(r.out, f.e[2]->qid, "sender2@example.org");
	/* the recipients with their states */
	assert_line(r.out, "rcpt0.0@example.com", "(delivered)");
	assert_line(r.out, "rcpt1.0@example.com", "(delivered)");
	assert_line(r.out, "rcpt1.1@example.com",
		    "(deferred, next try 2030-03-17T17:46:40Z)");
	assert_line(r.out, "rcpt2.0@example.com", "(pending)");
	assert_line(r.out, "rcpt2.1@example.com", "(pending)");
	assert_line(r.out, "rcpt2.2@example.com", "(bounced)");
	assert_line(r.out, "rcpt4.0@example.com", "(pending)");
	/* no body without --body */
	cr_assert_null(strstr(r.out, "Hello from message zero"));
	cr_assert_null(strstr(r.out, "MESSAGE CONTENTS"));
	snprintf(want, sizeof(want), "-- %zu Kbytes in 4 messages (3 live); "
		 "recipients: 3 pending, 1 deferred, 2 delivered, 1 bounced; "
		 "4 state records, 0 bad records in 1 segments.\n",
		 (f.bytes + 1023) / 1024);
	cr_assert(strlen(r.out) > strlen(want) &&
		  strcmp(r.out + strlen(r.out) - strlen(want), want) == 0,
		  "summary: want '%s' in:\n%s", want, r.out);
	res_free(&r);
	fixture_free(&f);
}

Test(dpmailctl_dump, json)
{
	struct fixture f;
	char exp[1024];

	build(&f);
	exp_json(&f, exp, sizeof(exp));
	struct res r = dump("--json", NULL);

	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	json_check(&r, exp,
		   "m = d['messages']\n"
		   "assert [x['queue_id'] for x in m] == exp['qids'], m\n"
		   "assert [x['live'] for x in m] == [False, True, True, True]\n"
		   "assert [x['segment'] for x in m] == ['seg-0-1.dps'] * 4\n"
		   "assert m[0]['sender'] == '' and m[1]['sender'] == "
		   "'sender1@example.org'\n"
		   "assert m[3]['sender'] == 'we\"ird\\\\\\x01\\ufffd@example.org',"
		   " repr(m[3]['sender'])\n"
		   "st = [[r['state'] for r in x['recipients']] for x in m]\n"
		   "assert st == [['delivered'], ['delivered', 'deferred'], "
		   "['pending', 'pending', 'bounced'], ['pending']], st\n"
		   "assert m[1]['recipients'][1]['next_try_s'] == exp['next_try']\n"
		   "assert m[1]['recipients'][1]['addr'] == 'rcpt1.1@example.com'\n"
		   "assert m[1]['recipients'][1]['orcpt'] == "
		   "'rfc822;orig1@example.com'\n"
		   "assert m[2]['helo'] == 'client2.example.net'\n"
		   "assert m[2]['envid'] == 'envid-2'\n"
		   "assert all('body' not in x and 'body_base64' not in x "
		   "for x in m)\n"
		   "assert all(x['offset'] % 8 == 0 and len(x['crc32c']) == 8 "
		   "for x in m)\n"
		   "assert d['bad_records'] == []\n"
		   "s = d['summary']\n"
		   "assert (s['messages'], s['live'], s['bytes'], s['segments'], "
		   "s['state_records'], s['bad_records']) == "
		   "(4, 3, exp['bytes'], 1, 4, 0), s\n"
		   "assert s['recipients'] == {'pending': 3, 'delivered': 2, "
		   "'deferred': 1, 'bounced': 1}, s\n");
	res_free(&r);
	fixture_free(&f);
}

Test(dpmailctl_dump, body_text_and_json)
{
	struct fixture f;
	char want[256], exp[1024];

	build(&f);
	struct res r = dump("--body", NULL);

	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	for (int i = 0; i < NMSG; i++) {
		snprintf(want, sizeof(want), "*** MESSAGE CONTENTS %s ***\n",
			 f.e[i]->qid);
		const char *p = memmem(r.out, r.outlen, want, strlen(want));

		cr_assert_not_null(p, "no contents of %d:\n%s", i, r.out);
		p += strlen(want);
		/* the body bytes, exactly */
		cr_assert((size_t)(r.out + r.outlen - p) >= f.e[i]->body_len);
		cr_assert(memcmp(p, f.e[i]->body, f.e[i]->body_len) == 0,
			  "body %d", i);
		/* (the binary body holds a NUL: no str* past it) */
		p += f.e[i]->body_len;
		cr_assert(strncmp(p, "\n*** END OF MESSAGE ***\n", 24) == 0 ||
			  strncmp(p, "*** END OF MESSAGE ***\n", 23) == 0,
			  "after body %d: '%.40s'", i, p);
	}
	res_free(&r);

	exp_json(&f, exp, sizeof(exp));
	r = dump("--body", "--json");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	json_check(&r, exp,
		   "m = d['messages']\n"
		   "assert m[0]['body'] == 'Subject: first\\r\\n\\r\\nHello from "
		   "message zero.\\r\\n', repr(m[0]['body'])\n"
		   "assert m[1]['body'] == 'Subject: second\\r\\n\\r\\n"
		   "Gr\\u00fc\\u00dfe \"quoted\" \\\\ back\\ttab\\r\\n', "
		   "repr(m[1]['body'])\n"
		   "assert 'body' not in m[2]\n"
		   "b = base64.b64decode(m[2]['body_base64'])\n"
		   "assert b == bytes((0x80 + i * 13) & 0xff for i in range(300))\n"
		   "assert m[3]['body'] == 'x'\n"
		   "assert [x['size'] for x in m] == [len(m[0]['body'].encode()),"
		   " len(m[1]['body'].encode()), 300, 1]\n");
	res_free(&r);
	fixture_free(&f);
}

Test(dpmailctl_dump, bad_records_reported_and_skipped)
{
	struct fixture f;
	char path[512], want[512], exp[1024];
	uint64_t off, size;
	uint8_t x;
	int fd;

	build(&f);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	/* one flipped byte in message 1's body: a corrupt region */
	msg_at(path, 1, &off, &size);
	fd = open(path, O_RDWR);
	cr_assert_eq(pread(fd, &x, 1, (off_t)(off + size - 12)), 1);
	x ^= 0x01;
	cr_assert_eq(pwrite(fd, &x, 1, (off_t)(off + size - 12)), 1);
	/* and junk after the end: a torn tail */
	off_t end = lseek(fd, 0, SEEK_END);

	cr_assert_eq(pwrite(fd, "DPSR\x01\x01\x00\x00garbage!", 16, end), 16);
	close(fd);

	struct res r = dump(NULL, NULL);

	cr_assert_eq(r.status, 1, "bad records: exit 1, not %d", r.status);
	snprintf(want, sizeof(want), "!! corrupt region in seg-0-1.dps at "
		 "offset %llu, %llu bytes (CRC mismatch): skipped, the records "
		 "after it were read\n", (unsigned long long)off,
		 (unsigned long long)size);
	cr_assert_not_null(strstr(r.out, want), "want '%s' in:\n%s", want,
			   r.out);
	snprintf(want, sizeof(want), "!! torn tail in seg-0-1.dps at offset "
		 "%llu, 16 bytes (", (unsigned long long)end);
	cr_assert_not_null(strstr(r.out, want), "want '%s' in:\n%s", want,
			   r.out);
	/* the messages after the bad one are there; it is not */
	cr_assert_null(strstr(r.out, f.e[1]->qid), "%s", r.out);
	cr_assert_not_null(strstr(r.out, f.e[2]->qid));
	cr_assert_not_null(strstr(r.out, f.e[3]->qid));
	cr_assert_not_null(strstr(r.out, " in 3 messages (2 live);"));
	cr_assert_not_null(strstr(r.out, "2 bad records in 1 segments.\n"));
	res_free(&r);

	snprintf(exp, sizeof(exp), "{\"off\": %llu, \"size\": %llu, "
		 "\"end\": %llu, \"qids\": [\"%s\", \"%s\", \"%s\"]}",
		 (unsigned long long)off, (unsigned long long)size,
		 (unsigned long long)end, f.e[0]->qid, f.e[2]->qid,
		 f.e[3]->qid);
	r = dump("--json", NULL);
	cr_assert_eq(r.status, 1);
	json_check(&r, exp,
		   "assert [x['queue_id'] for x in d['messages']] == exp['qids']\n"
		   "b = d['bad_records']\n"
		   "assert b[0] == {'segment': 'seg-0-1.dps', 'offset': exp['off'],"
		   " 'length': exp['size'], 'torn': False, 'why': 'CRC mismatch'},"
		   " b\n"
		   "assert b[1]['offset'] == exp['end'] and b[1]['length'] == 16 "
		   "and b[1]['torn'] is True, b\n"
		   "assert len(b) == 2 and d['summary']['bad_records'] == 2\n");
	res_free(&r);
	fixture_free(&f);
}

Test(dpmailctl_dump, empty_missing_and_usage)
{
	struct res r;

	/* an empty directory: nothing, exit 0 */
	r = dump(NULL, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_not_null(strstr(r.out, "-- 0 Kbytes in 0 messages (0 live);"));
	res_free(&r);
	r = dump("--json", NULL);
	cr_assert_eq(r.status, 0);
	json_check(&r, "{}", "assert d['messages'] == [] and "
		   "d['summary']['messages'] == 0\n");
	res_free(&r);

	/* a missing directory: exit 1, says which and why */
	char *argv[] = { DPMAILCTL, "spool", "dump",
			 "/nonexistent/dpmail-spool", NULL };

	r = run(argv, NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_not_null(strstr(r.err, "dpmailctl: spool dump "
				  "/nonexistent/dpmail-spool: No such file "
				  "or directory"), "stderr: %s", r.err);
	res_free(&r);
	/* a file, not a directory */
	char file[512];

	snprintf(file, sizeof(file), "%s/plain", tsu_dir());
	close(open(file, O_CREAT | O_WRONLY, 0600));
	argv[3] = file;
	r = run(argv, NULL);
	cr_assert_eq(r.status, 1);
	cr_assert_not_null(strstr(r.err, "Not a directory"), "%s", r.err);
	res_free(&r);

	/* usage errors: exit 2 */
	r = ctl("spool", "dump", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "needs a directory"), "%s", r.err);
	res_free(&r);
	r = dump("--frobnicate", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "unexpected '--frobnicate'"));
	res_free(&r);
	r = dump("another-dir", NULL);
	cr_assert_eq(r.status, 2);
	res_free(&r);
}

Test(dpmailctl_dump, help)
{
	struct res r = ctl("--help", NULL, NULL);

	cr_assert_eq(r.status, 0);
	cr_assert_not_null(strstr(r.out, "spool dump DIR [--json] [--body]"),
			   "%s", r.out);
	cr_assert_not_null(strstr(r.out, "Usage: dpmailctl"));
	res_free(&r);
	r = ctl("spool", "dump", "--help");
	cr_assert_eq(r.status, 0);
	cr_assert(strncmp(r.out, "Usage: dpmailctl spool dump DIR", 31) == 0,
		  "%s", r.out);
	cr_assert_not_null(strstr(r.out, "--json"));
	cr_assert_not_null(strstr(r.out, "--body"));
	cr_assert_str_eq(r.err, "");
	res_free(&r);
	/* no verb: usage on stderr, exit 2 */
	r = ctl(NULL, NULL, NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "spool dump"));
	res_free(&r);
}
