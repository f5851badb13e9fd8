/*
 * test_mta_qmgr.c: the queue manager (mta/mta_qmgr.h) against a real
 * spool, real Maildirs and real routing tables, the test playing the one
 * worker: it makes each message durable as the SMTP path does (a
 * SPOOL_REQ_MSG from worker 0, then mta_qmgr_submit), takes the outbound
 * jobs off its ring, answers every recipient and hands the jobs back.
 *
 * Outcomes are checked where they land: files in DIR/mail/<user>/new and
 * the mailbox index, the state records in the spool (spool_scan), and
 * the live queue after a restart (spool_live_foreach). Reports are
 * parsed far enough to check the RFC 3464 fields that matter.
 *
 * Retry settings are seconds (the smallest the contract allows), so a
 * few cases wait a second or two; everything waits with a bound.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "common/envelope.h"
#include "mta/mta_job.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"
#include "store/mailbox.h"
#include "store/spool.h"
#include "tests/unit/test_spool_util.h"

#define REMOTE_MTA "mx.test[198.18.0.10]:2525"
#define WAIT_MS 10000

struct fx {
	struct spool_conf sc;
	struct spool *sp;
	struct mta_route *route;
	struct mta_qmgr_conf qc;
	struct mta_qmgr *q;
	struct mta_qmgr_recovery rep;
	char mail[512];
};
static struct fx F;

/* ---- clocks and waiting --------------------------------------------- */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Retry times are whole seconds of the wall clock: start a timed step
 * just after a second begins, so "first_s later" means at least 0.9 s. */
static void align_to_second(void)
{
	while (wall_us() % 1000000u > 50000u)
		sleep_ms(5);
}

static struct mta_qmgr_stats stats(void)
{
	struct mta_qmgr_stats s;

	mta_qmgr_get_stats(F.q, &s);
	return s;
}

/* The queue is empty and nothing is in flight: no live message, no job
 * out, and it stays so for a moment (a report on its way to the spool is
 * not a live message yet). */
static void settle(void)
{
	uint64_t end = mono_ms() + WAIT_MS;
	unsigned quiet = 0;

	while (quiet < 3) {
		struct mta_qmgr_stats s = stats();

		cr_assert_lt(mono_ms(), end, "queue never settled: %lu live, "
			     "%lu jobs", (unsigned long)s.msgs_live,
			     (unsigned long)s.jobs_active);
		if (s.msgs_live == 0 && s.jobs_active == 0)
			quiet++;
		else
			quiet = 0;
		sleep_ms(100);
	}
}

/* ---- fixture -------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fputs(text, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
}

/* A spool under the test directory (DIR/spool), users, routes; the
 * queue manager's configuration set to small times, for the test to
 * adjust before qmgr_start. */
static void setup_with(const char *users)
{
	struct mta_route_conf rc;
	char path[600], err[512];
	int rc2;

	mta_route_free(F.route); /* a test that sets up again */
	memset(&F, 0, sizeof(F));
	tsu_conf(&F.sc, 1);
	snprintf(F.sc.dir, sizeof(F.sc.dir), "%s/spool", tsu_dir());
	snprintf(F.mail, sizeof(F.mail), "%s/mail", tsu_dir());
	snprintf(path, sizeof(path), "%s/users", tsu_dir());
	write_file(path, users);

	mta_route_conf_defaults(&rc);
	snprintf(rc.local_domains, sizeof(rc.local_domains), "dpmail.test");
	snprintf(rc.users_file, sizeof(rc.users_file), "%s", path);
	snprintf(rc.relayhost, sizeof(rc.relayhost), "[198.18.0.10]:2525");
	rc2 = mta_route_load(&F.route, &rc, err, sizeof(err));
	cr_assert_eq(rc2, 0, "route: %s", err);

	mta_qmgr_conf_defaults(&F.qc);
	snprintf(F.qc.hostname, sizeof(F.qc.hostname), "mx.dpmail.test");
	snprintf(F.qc.spool_dir, sizeof(F.qc.spool_dir), "%s", F.sc.dir);
	snprintf(F.qc.double_bounce_to, sizeof(F.qc.double_bounce_to),
		 "postmaster@dpmail.test");
	snprintf(F.qc.mailbox.dir, sizeof(F.qc.mailbox.dir), "%s", F.mail);
	snprintf(F.qc.mailbox.hostname, sizeof(F.qc.mailbox.hostname),
		 "mx.dpmail.test");
	F.qc.mailbox.fsync = false;
	F.qc.retry.first_s = 1;
	F.qc.retry.max_interval_s = 2;
	F.qc.dest_backoff_s = 1;
}

static void setup(void)
{
	setup_with("alice\nbob\npostmaster\n");
}

static void spool_start(void)
{
	cr_assert_eq(spool_open(&F.sp, &F.sc, 2, NULL), 0);
}

static void qmgr_start(void)
{
	char err[512] = "";
	int rc;

	if (F.sp == NULL)
		spool_start();
	rc = mta_qmgr_new(&F.q, &F.qc, F.route, F.sp, 1, &F.rep, err,
			  sizeof(err));
	cr_assert_eq(rc, 0, "mta_qmgr_new: %d %s", rc, err);
	cr_assert_not_null(F.q);
}

/* The workers stopped (the test holds no job): queue manager, then
 * spool. */
static void qmgr_stop(void)
{
	mta_qmgr_free(F.q);
	F.q = NULL;
	spool_close(F.sp);
	F.sp = NULL;
}

static void teardown(void)
{
	if (F.q != NULL)
		mta_qmgr_free(F.q);
	if (F.sp != NULL)
		spool_close(F.sp);
	mta_route_free(F.route);
	memset(&F, 0, sizeof(F));
	tsu_cleanup();
}

TestSuite(mta_qmgr, .init = setup, .fini = teardown, .timeout = 60);

/* ---- messages ------------------------------------------------------- */

#define BODY_TAIL "Subject: qmgr test\r\n" \
		  "Message-ID: <qmgr-test@client.test>\r\n" \
		  "\r\n" \
		  "Hello from the queue manager test.\r\n" \
		  ".leading dot stays as it is\r\n"
#define RECEIVED "Received: from client.test ([198.18.0.1])\r\n" \
		 "\tby mx.dpmail.test with ESMTP; Thu, 1 Jan 2026 00:00:00 " \
		 "+0000\r\n"

/* A message as the SMTP path leaves it: qid from worker 0, arrival now,
 * nreceived Received: fields on top. Not yet durable. */
static struct envelope *msg_new(const char *from, const char *const *to,
				const uint8_t *notify, unsigned nrcpt,
				unsigned nreceived)
{
	struct envelope *e = envelope_new();

	cr_assert_not_null(e);
	spool_qid_next(F.sp, 0, e->qid);
	cr_assert_eq(envelope_set_str(&e->mail_from, from, SIZE_MAX), 0);
	cr_assert_eq(envelope_set_str(&e->helo, "client.test", SIZE_MAX), 0);
	cr_assert_eq(envelope_set_str(&e->client_addr, "198.18.0.1",
				      SIZE_MAX), 0);
	e->client_port = 40000;
	e->local_port = 25;
	e->esmtp = true;
	e->arrival_us = wall_us();
	for (unsigned i = 0; i < nrcpt; i++)
		cr_assert_eq(envelope_add_rcpt(e, to[i], "",
					       notify ? notify[i] : 0), 0);
	for (unsigned i = 0; i < nreceived; i++)
		cr_assert_eq(envelope_body_append(e, RECEIVED,
						  strlen(RECEIVED)), 0);
	cr_assert_eq(envelope_body_append(e, BODY_TAIL, strlen(BODY_TAIL)),
		     0);
	return e;
}

/* Durable first (the 250 waits for it), then to the queue manager,
 * which owns it from then on. Returns it, to compare pointers only. */
static const struct envelope *submit(struct envelope *e)
{
	cr_assert_eq(tsu_put_msg(F.sp, e), 0, "%s not durable", e->qid);
	cr_assert_eq(mta_qmgr_submit(F.q, 0, e), 0);
	return e;
}

static const struct envelope *send_msg(const char *from, const char *to,
				       uint8_t notify, char *qid)
{
	struct envelope *e = msg_new(from, &to, &notify, 1, 1);

	if (qid != NULL)
		memcpy(qid, e->qid, ENV_QID_LEN + 1);
	return submit(e);
}

/* ---- the worker ----------------------------------------------------- */

static struct mta_job *job_poll(unsigned ms)
{
	uint64_t end = mono_ms() + ms;
	struct mta_job *j;

	for (;;) {
		if (mta_qmgr_worker_jobs(F.q, 0, &j, 1) == 1)
			return j;
		if (mono_ms() >= end)
			return NULL;
		sleep_ms(2);
	}
}

static struct mta_job *job_wait(void)
{
	struct mta_job *j = job_poll(WAIT_MS);

	cr_assert_not_null(j, "no job came");
	return j;
}

static void rcpt_set(struct mta_job_rcpt *r, enum smtp_client_status st,
		     uint16_t code, const char *enh, const char *text)
{
	r->status = st;
	memset(&r->reply, 0, sizeof(r->reply));
	r->reply.code = code;
	snprintf(r->reply.enh, sizeof(r->reply.enh), "%s", enh);
	snprintf(r->reply.text, sizeof(r->reply.text), "%s", text);
	r->reply.stage = st == SMTP_RCPT_DELIVERED ? SMTP_CLIENT_DATA_END
						   : SMTP_CLIENT_RCPT;
}

static void job_remote(struct mta_job *j)
{
	snprintf(j->remote_mta, sizeof(j->remote_mta), "%s", REMOTE_MTA);
	j->remote_ip = htonl(0xc612000au) /* 198.18.0.10 */;
}

/* Every recipient of every message the same answer; back to the qmgr. */
static void job_answer(struct mta_job *j, enum smtp_client_status st,
		       uint16_t code, const char *enh, const char *text)
{
	job_remote(j);
	for (uint32_t i = 0; i < j->nmsg; i++) {
		j->msg[i].attempted = true;
		for (uint32_t k = 0; k < j->msg[i].nrcpt; k++)
			rcpt_set(&j->msg[i].rcpt[k], st, code, enh, text);
	}
	mta_qmgr_job_done(F.q, j);
}

static void job_ok(struct mta_job *j)
{
	job_answer(j, SMTP_RCPT_DELIVERED, 250, "2.0.0", "Ok: queued as X");
}

/* A message alice -> x@example.org (its id into qid), deferred at its
 * first attempt (451 4.3.0 text) just after a second starts: returns
 * when (mono_ms). */
static uint64_t send_deferred(char *qid, const char *text)
{
	struct mta_job *j;
	uint64_t t0;

	send_msg("alice@dpmail.test", "x@example.org", 0, qid);
	j = job_wait();
	align_to_second();
	t0 = mono_ms();
	job_answer(j, SMTP_RCPT_DEFERRED, 451, "4.3.0", text);
	return t0;
}

/* n messages alice -> user<i>@example.org into e (their ids into qid
 * unless NULL): all durable first, then handed over together. */
static void send_to_users(struct envelope **e, char (*qid)[ENV_QID_LEN + 1],
			  unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char to[64];
		const char *tp = to;

		snprintf(to, sizeof(to), "user%u@example.org", i);
		e[i] = msg_new("alice@dpmail.test", &tp, NULL, 1, 1);
		if (qid != NULL)
			memcpy(qid[i], e[i]->qid, sizeof(qid[i]));
		cr_assert_eq(tsu_put_msg(F.sp, e[i]), 0);
	}
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(mta_qmgr_submit(F.q, 0, e[i]), 0);
}

/* ---- Maildirs ------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files in DIR/mail/<user>/new, sorted (freed by names_free). */
static unsigned md_list(const char *user, char ***out)
{
	char path[1024];
	DIR *d;
	struct dirent *de;
	char **v = NULL;
	unsigned n = 0;

	snprintf(path, sizeof(path), "%s/%s/new", F.mail, user);
	d = opendir(path);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			v = realloc(v, (n + 1) * sizeof(*v));
			cr_assert_not_null(v);
			v[n++] = strdup(de->d_name);
		}
		closedir(d);
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	return n;
}

static void names_free(char **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static unsigned md_count(const char *user)
{
	char **v;
	unsigned n = md_list(user, &v);

	names_free(v, n);
	return n;
}

static void md_wait(const char *user, unsigned n)
{
	uint64_t end = mono_ms() + WAIT_MS;

	while (md_count(user) < n) {
		cr_assert_lt(mono_ms(), end, "%s: %u of %u messages", user,
			     md_count(user), n);
		sleep_ms(10);
	}
}

/* The i-th file of the user's new/, NUL-terminated; *len its size. */
static char *md_read(const char *user, unsigned i, size_t *len)
{
	char **v, path[1200];
	unsigned n = md_list(user, &v);
	FILE *f;
	char *buf;
	long sz;

	cr_assert_lt(i, n, "%s: no message %u", user, i);
	snprintf(path, sizeof(path), "%s/%s/new/%s", F.mail, user, v[i]);
	names_free(v, n);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	sz = ftell(f);
	rewind(f);
	buf = malloc((size_t)sz + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)sz, f), (size_t)sz);
	buf[sz] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)sz;
	return buf;
}

static void md_index_is(const char *user, size_t n)
{
	struct mailbox_index ix;
	int rc = mailbox_index_load(&F.qc.mailbox, user, &ix);

	if (n == 0) {
		cr_assert(rc == -ENOENT || (rc == 0 && ix.n == 0),
			  "%s: index %d", user, rc);
		if (rc == 0)
			mailbox_index_free(&ix);
		return;
	}
	cr_assert_eq(rc, 0, "%s: index: %d", user, rc);
	cr_assert_eq(ix.n, n, "%s: %zu indexed, %zu expected", user, ix.n, n);
	mailbox_index_free(&ix);
}

/* ---- reports -------------------------------------------------------- */

/* A report as it lands in the sender's Maildir: from <>, to rcpt, a
 * multipart/report of report-type delivery-status. Returns the
 * message/delivery-status part (malloc'ed, up to its closing boundary). */
static char *report_part(const char *file, const char *rcpt)
{
	char head[400];
	const char *p, *end;
	char *part;

	snprintf(head, sizeof(head),
		 "Return-Path: <>\r\nDelivered-To: %s\r\n", rcpt);
	cr_assert_eq(strncmp(file, head, strlen(head)), 0,
		     "not a report to %s: %.200s", rcpt, file);
	cr_assert_not_null(strstr(file, "MAILER-DAEMON@mx.dpmail.test"));
	cr_assert_not_null(strstr(file, "Content-Type: multipart/report;"));
	cr_assert_not_null(strstr(file, "report-type=delivery-status"));
	cr_assert_not_null(strstr(file, "Auto-Submitted: auto-replied"));
	p = strstr(file, "Content-Type: message/delivery-status");
	cr_assert_not_null(p, "no delivery-status part: %s", file);
	cr_assert_not_null(strstr(file, "Reporting-MTA: dns; mx.dpmail.test"),
			   "%s", file);
	end = strstr(p, "\r\n--");
	cr_assert_not_null(end);
	part = strndup(p, (size_t)(end - p));
	cr_assert_not_null(part);
	return part;
}

static void has(const char *s, const char *what)
{
	cr_assert_not_null(strstr(s, what), "no '%s' in:\n%s", what, s);
}

static void lacks(const char *s, const char *what)
{
	cr_assert_null(strstr(s, what), "'%s' should not be in:\n%s", what,
		       s);
}

/* The first mail in user's Maildir into *file, and its report's part
 * for rcpt, returned: that part names final with action. Both to free. */
static char *report_of(const char *user, const char *rcpt, char **file,
		       const char *final, const char *action)
{
	char want[256];
	char *part;

	*file = md_read(user, 0, NULL);
	part = report_part(*file, rcpt);
	snprintf(want, sizeof(want), "Final-Recipient: rfc822;%s", final);
	has(part, want);
	snprintf(want, sizeof(want), "Action: %s\r\n", action);
	has(part, want);
	return part;
}

/* ---- the spool ------------------------------------------------------ */

struct qstate {
	const char *qid;
	uint32_t nrcpt;
	uint8_t st[16];        /* last state record per recipient */
	unsigned deferred;     /* DEFERRED records seen */
	unsigned msgs;         /* its MSG records */
};

static int qstate_cb(void *arg, const struct spool_scan_rec *r)
{
	struct qstate *s = arg;

	if (r->bad)
		return 0;
	if (r->type == SPOOL_REQ_MSG) {
		if (strcmp(r->env->qid, s->qid) == 0) {
			s->msgs++;
			s->nrcpt = r->env->nrcpt;
		}
		return 0;
	}
	if (strcmp(r->qid, s->qid) != 0)
		return 0;
	cr_assert_lt(r->rcpt, 16u);
	s->st[r->rcpt] = r->state;
	if (r->state == SPOOL_RCPT_DEFERRED)
		s->deferred++;
	return 0;
}

/* The state records of one message, in the segments still there (a
 * segment from before a restart goes once nothing in it is live: then
 * the message record may be gone while the later states remain). */
static struct qstate spool_states_any(const char *qid)
{
	struct qstate s = { .qid = qid };

	cr_assert_eq(spool_scan(F.sc.dir, qstate_cb, &s), 0);
	return s;
}

static struct qstate spool_states(const char *qid)
{
	struct qstate s = spool_states_any(qid);

	cr_assert_eq(s.msgs, 1u, "%s: %u message records", qid, s.msgs);
	return s;
}

/* After qmgr_stop: the spool reopened holds nothing live. */
static int live_cb(void *arg, const char *qid, uint32_t nrcpt,
		   const uint8_t *state, const uint64_t *next_try_s)
{
	(void)qid;
	(void)nrcpt;
	(void)state;
	(void)next_try_s;
	(*(unsigned *)arg)++;
	return 0;
}

static unsigned spool_live_count(void)
{
	struct spool *sp;
	unsigned n = 0;

	cr_assert_eq(spool_open(&sp, &F.sc, 2, NULL), 0);
	cr_assert_eq(spool_live_foreach(sp, live_cb, &n), 0);
	spool_close(sp);
	return n;
}

/* The reports found in the spool: messages from <> to `to`. */
static unsigned spool_reports_to(const char *to)
{
	struct tsu_scan s;
	unsigned n = 0;

	cr_assert_eq(tsu_scan(F.sc.dir, &s), 0);
	for (size_t i = 0; i < s.nmsgs; i++)
		if (s.msgs[i]->mail_from[0] == '\0' &&
		    s.msgs[i]->nrcpt == 1 &&
		    strcmp(s.msgs[i]->rcpt[0].addr, to) == 0)
			n++;
	tsu_scan_free(&s);
	return n;
}

/* ---- 1. local delivery ---------------------------------------------- */

Test(mta_qmgr, local_delivery_to_two_maildirs)
{
	const char *to[] = { "alice@dpmail.test", "Bob@dpmail.test" };
	const char *mb[] = { "alice", "bob" };
	struct envelope *e;
	char qid[ENV_QID_LEN + 1];
	struct qstate s;

	qmgr_start();
	cr_assert_eq(F.rep.messages, 0u);
	e = msg_new("carol@example.net", to, NULL, 2, 1);
	memcpy(qid, e->qid, sizeof(qid));
	submit(e);
	for (unsigned i = 0; i < 2; i++)
		md_wait(mb[i], 1);
	settle();
	cr_assert_null(job_poll(0), "a local message made a remote job");
	for (unsigned i = 0; i < 2; i++) {
		char want[2048];
		size_t len, wl;
		char *got = md_read(mb[i], 0, &len);

		wl = (size_t)snprintf(want, sizeof(want),
				      "Return-Path: <carol@example.net>\r\n"
				      "Delivered-To: %s\r\n%s%s", to[i],
				      RECEIVED, BODY_TAIL);
		cr_assert_eq(len, wl, "%s: %zu bytes, %zu expected", mb[i],
			     len, wl);
		cr_assert_eq(memcmp(got, want, wl), 0, "%s:\n%s", mb[i], got);
		free(got);
		cr_assert_eq(md_count(mb[i]), 1u);
		md_index_is(mb[i], 1);
	}
	cr_assert_eq(md_count("postmaster"), 0u);
	struct mta_qmgr_stats st = stats();
	cr_assert_eq(st.received, 1u);
	cr_assert_eq(st.delivered_local, 2u);
	cr_assert_eq(st.dsn_sent, 0u);
	qmgr_stop();
	s = spool_states(qid);
	cr_assert_eq(s.st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(s.st[1], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 2. remote, delivered ------------------------------------------- */

Test(mta_qmgr, remote_job_to_the_relayhost_then_delivered)
{
	char qid[ENV_QID_LEN + 1];
	const struct envelope *e;
	struct mta_job *j;
	struct qstate s;

	qmgr_start();
	e = send_msg("alice@dpmail.test", "x@example.org", 0, qid);
	j = job_wait();
	cr_assert_eq(j->nh.kind, MTA_NH_IP);
	cr_assert_str_eq(j->nh.host, "198.18.0.10");
	cr_assert_eq(j->nh.port, 2525);
	cr_assert_eq(j->nmsg, 1u);
	cr_assert_eq(j->msg[0].env, e);
	cr_assert_str_eq(j->msg[0].env->qid, qid);
	cr_assert_eq(j->msg[0].nrcpt, 1u);
	cr_assert_eq(j->msg[0].rcpt[0].idx, 0u);
	cr_assert_eq(stats().jobs_active, 1u);
	job_ok(j);
	settle();
	cr_assert_null(job_poll(200));
	cr_assert_eq(stats().delivered_remote, 1u);
	cr_assert_eq(stats().dsn_sent, 0u);
	cr_assert_eq(md_count("alice"), 0u);
	qmgr_stop();
	s = spool_states(qid);
	cr_assert_eq(s.st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 3. remote, one delivered and one bounced ----------------------- */

Test(mta_qmgr, remote_mixed_bounces_only_the_failed_one)
{
	const char *to[] = { "good@example.org", "gone@example.org" };
	struct envelope *e;
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	struct qstate s;
	char *file, *part;

	qmgr_start();
	e = msg_new("alice@dpmail.test", to, NULL, 2, 1);
	memcpy(qid, e->qid, sizeof(qid));
	submit(e);
	j = job_wait();
	cr_assert_eq(j->nmsg, 1u);
	cr_assert_eq(j->msg[0].nrcpt, 2u, "one destination, one job");
	job_remote(j);
	j->msg[0].attempted = true;
	for (uint32_t k = 0; k < 2; k++) {
		if (j->msg[0].rcpt[k].idx == 0)
			rcpt_set(&j->msg[0].rcpt[k], SMTP_RCPT_DELIVERED, 250,
				 "2.0.0", "Ok");
		else
			rcpt_set(&j->msg[0].rcpt[k], SMTP_RCPT_BOUNCED, 550,
				 "5.1.1", "<gone@example.org>: no such user");
	}
	mta_qmgr_job_done(F.q, j);
	md_wait("alice", 1);
	settle();
	cr_assert_eq(md_count("alice"), 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "gone@example.org", "failed");
	has(part, "Status: 5.1.1\r\n");
	has(part, "Remote-MTA: dns; mx.test\r\n");
	has(part, "550 5.1.1");
	lacks(part, "good@example.org");
	lacks(part, "Action: relayed");
	lacks(file, "good@example.org");
	has(file, "Subject: qmgr test"); /* the original's headers */
	free(part);
	free(file);
	cr_assert_eq(stats().dsn_sent, 1u);
	cr_assert_eq(stats().bounced, 1u);
	qmgr_stop();
	s = spool_states(qid);
	cr_assert_eq(s.st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(s.st[1], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_reports_to("alice@dpmail.test"), 1u);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 4. deferral and retry ------------------------------------------ */

Test(mta_qmgr, deferred_then_retried_after_first_s)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	struct qstate s;
	uint64_t t0, dt;

	qmgr_start();
	t0 = send_deferred(qid, "try again later");
	cr_assert_null(job_poll(500), "retried before first_s");
	cr_assert_eq(stats().deferred, 1u);
	cr_assert_eq(stats().msgs_live, 1u);
	j = job_poll(3000);
	cr_assert_not_null(j, "never retried");
	dt = mono_ms() - t0;
	cr_assert_geq(dt, 800u, "retried after %lu ms", (unsigned long)dt);
	cr_assert_eq(j->msg[0].nrcpt, 1u);
	cr_assert_str_eq(j->msg[0].env->qid, qid);
	job_ok(j);
	settle();
	cr_assert_eq(stats().delivered_remote, 1u);
	cr_assert_eq(stats().dsn_sent, 0u, "no delay report by default");
	cr_assert_eq(md_count("alice"), 0u);
	qmgr_stop();
	s = spool_states(qid);
	cr_assert_geq(s.deferred, 1u, "no DEFERRED state record");
	cr_assert_eq(s.st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 5. a failing destination is backed off ------------------------- */

Test(mta_qmgr, host_failure_suspends_the_destination)
{
	char q1[ENV_QID_LEN + 1], q2[ENV_QID_LEN + 1];
	struct mta_job *j;
	unsigned got = 0;
	uint64_t t0, end;

	F.qc.retry.first_s = 1;
	F.qc.dest_backoff_s = 1;
	qmgr_start();
	send_msg("alice@dpmail.test", "x@example.org", 0, q1);
	j = job_wait();
	j->host_failed = true;
	snprintf(j->why, sizeof(j->why), "connect to 198.18.0.10:2525: "
		 "connection refused");
	align_to_second();
	t0 = mono_ms();
	job_answer(j, SMTP_RCPT_DEFERRED, 421, "4.4.1",
		   "connection refused");
	/* a new message for the same destination waits for the back-off
	 * without an attempt */
	send_msg("alice@dpmail.test", "y@example.org", 0, q2);
	cr_assert_null(job_poll(500), "a suspended destination got a job");
	cr_assert_geq(stats().deferred, 2u, "the second was not suspended");
	cr_assert_eq(stats().jobs, 1u);
	/* after the back-off, both go */
	end = mono_ms() + 5000;
	while (got < 2 && mono_ms() < end) {
		j = job_poll(100);
		if (j == NULL)
			continue;
		cr_assert_geq(mono_ms() - t0, 800u);
		got += j->nmsg;
		job_ok(j);
	}
	cr_assert_eq(got, 2u, "%u of 2 messages retried", got);
	settle();
	cr_assert_eq(stats().delivered_remote, 2u);
	cr_assert_eq(md_count("alice"), 0u);
	qmgr_stop();
	cr_assert_eq(spool_states(q1).st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_states(q2).st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 6. expiry ------------------------------------------------------ */

Test(mta_qmgr, lifetime_ends_in_a_bounce_with_the_temporary_status)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	unsigned tries = 0;
	uint64_t end;
	char *file, *part;

	F.qc.retry.lifetime_s = 1;
	qmgr_start();
	send_msg("alice@dpmail.test", "slow@example.org", 0, qid);
	end = mono_ms() + 8000;
	while (md_count("alice") == 0) {
		cr_assert_lt(mono_ms(), end, "never expired (%u tries)",
			     tries);
		j = job_poll(50);
		if (j == NULL)
			continue;
		tries++;
		job_answer(j, SMTP_RCPT_DEFERRED, 451, "4.3.0",
			   "mailbox busy");
	}
	settle();
	cr_assert_geq(tries, 1u);
	cr_assert_eq(stats().expired, 1u);
	cr_assert_eq(md_count("alice"), 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "slow@example.org", "failed");
	/* a failed report with a persistent transient status (RFC 3464
	 * 2.3.4): 4.4.7 "delivery time expired", or the last reply's own */
	has(part, "\r\nStatus: 4.");
	lacks(part, "\r\nStatus: 5.");
	has(part, "Diagnostic-Code: smtp; 451 4.3.0 mailbox busy");
	lacks(part, "Will-Retry-Until");
	free(part);
	free(file);
	qmgr_stop();
	cr_assert_eq(spool_states(qid).st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 7. the null sender --------------------------------------------- */

Test(mta_qmgr, null_sender_failure_goes_to_postmaster_once)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	char *file, *part;

	qmgr_start();
	send_msg("", "x@example.org", 0, qid);
	j = job_wait();
	job_answer(j, SMTP_RCPT_BOUNCED, 550, "5.1.1", "no such user");
	md_wait("postmaster", 1);
	settle();
	cr_assert_null(job_poll(0));
	cr_assert_eq(md_count("postmaster"), 1u);
	cr_assert_eq(md_count("alice"), 0u);
	part = report_of("postmaster", "postmaster@dpmail.test", &file,
			  "x@example.org", "failed");
	has(part, "Status: 5.1.1\r\n");
	free(part);
	free(file);
	cr_assert_eq(stats().dsn_sent, 1u);
	qmgr_stop();
	cr_assert_eq(spool_states(qid).st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_reports_to("postmaster@dpmail.test"), 1u);
	cr_assert_eq(spool_live_count(), 0u);
}

/* Without a postmaster mailbox the double bounce itself fails (550
 * 5.1.1 at routing): it came from <> to the double-bounce address, so it
 * is never reported again; nor is a failed message from <> to it. */
Test(mta_qmgr, null_sender_to_postmaster_never_loops)
{
	char q1[ENV_QID_LEN + 1], q2[ENV_QID_LEN + 1];
	struct mta_job *j;

	setup_with("alice\nbob\n");
	qmgr_start();
	send_msg("", "postmaster@dpmail.test", 0, q2);
	send_msg("", "x@example.org", 0, q1);
	j = job_wait();
	job_answer(j, SMTP_RCPT_BOUNCED, 550, "5.1.1", "no such user");
	settle();
	sleep_ms(300);
	settle();
	cr_assert_null(job_poll(0));
	/* one double bounce (for q1), none for q2 nor for itself */
	cr_assert_eq(stats().dsn_sent, 1u, "%lu reports",
		     (unsigned long)stats().dsn_sent);
	cr_assert_eq(stats().received, 3u);
	cr_assert_eq(stats().bounced, 3u);
	cr_assert_eq(md_count("alice"), 0u);
	cr_assert_eq(md_count("postmaster"), 0u);
	qmgr_stop();
	cr_assert_eq(spool_states(q1).st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_states(q2).st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_reports_to("postmaster@dpmail.test"), 2u,
		     "q2 itself and q1's double bounce only");
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 8. restart ----------------------------------------------------- */

Test(mta_qmgr, deferred_message_survives_a_restart)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	struct qstate s;
	uint64_t t0, end;

	qmgr_start();
	t0 = send_deferred(qid, "later");
	end = mono_ms() + WAIT_MS;
	while (stats().deferred < 1) {
		cr_assert_lt(mono_ms(), end);
		sleep_ms(1);
	}
	cr_assert_null(job_poll(100));
	qmgr_stop();
	s = spool_states(qid);
	cr_assert_eq(s.deferred, 1u);
	cr_assert_eq(s.st[0], SPOOL_RCPT_DEFERRED);

	qmgr_start();
	cr_assert_eq(F.rep.messages, 1u);
	cr_assert_eq(F.rep.rcpts_deferred, 1u);
	cr_assert_eq(F.rep.rcpts_pending, 0u);
	cr_assert_eq(F.rep.unreadable, 0u);
	cr_assert_eq(stats().msgs_live, 1u);
	j = job_poll(4000);
	cr_assert_not_null(j, "not retried after the restart");
	cr_assert_geq(mono_ms() - t0, 800u, "retried before its time");
	cr_assert_eq(j->nmsg, 1u);
	cr_assert_str_eq(j->msg[0].env->qid, qid);
	cr_assert_str_eq(j->msg[0].env->mail_from, "alice@dpmail.test");
	cr_assert_eq(j->nh.port, 2525);
	job_ok(j);
	settle();
	cr_assert_eq(stats().delivered_remote, 1u);
	qmgr_stop();
	cr_assert_eq(spool_states_any(qid).st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 9. mail loop --------------------------------------------------- */

Test(mta_qmgr, too_many_received_fields_bounce_5_4_6)
{
	const char *to = "x@example.org";
	char qid[ENV_QID_LEN + 1];
	struct envelope *e;
	char *file, *part;

	qmgr_start();
	e = msg_new("alice@dpmail.test", &to, NULL, 1, 51);
	cr_assert_eq(mta_count_received(e->body, e->body_len), 51u);
	memcpy(qid, e->qid, sizeof(qid));
	submit(e);
	md_wait("alice", 1);
	settle();
	cr_assert_null(job_poll(0), "a looping message was sent on");
	cr_assert_eq(stats().jobs, 0u);
	cr_assert_eq(stats().loops, 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "x@example.org", "failed");
	has(part, "Status: 5.4.6\r\n");
	free(part);
	free(file);
	qmgr_stop();
	cr_assert_eq(spool_states(qid).st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* Exactly max_received is not a loop. */
Test(mta_qmgr, max_received_fields_still_go)
{
	const char *to = "x@example.org";
	struct mta_job *j;

	qmgr_start();
	submit(msg_new("alice@dpmail.test", &to, NULL, 1, 50));
	j = job_wait();
	job_ok(j);
	settle();
	cr_assert_eq(stats().loops, 0u);
	cr_assert_eq(md_count("alice"), 0u);
}

/* ---- 10. unknown local user ----------------------------------------- */

Test(mta_qmgr, unknown_local_user_bounces_5_1_1)
{
	const char *to[] = { "zed@dpmail.test", "bob@dpmail.test" };
	char qid[ENV_QID_LEN + 1];
	struct envelope *e;
	char *file, *part;
	struct qstate s;

	qmgr_start();
	e = msg_new("alice@dpmail.test", to, NULL, 2, 1);
	memcpy(qid, e->qid, sizeof(qid));
	submit(e);
	md_wait("alice", 1);
	md_wait("bob", 1);
	settle();
	cr_assert_null(job_poll(0));
	cr_assert_eq(md_count("alice"), 1u);
	cr_assert_eq(md_count("bob"), 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "zed@dpmail.test", "failed");
	has(part, "Status: 5.1.1\r\n");
	lacks(part, "bob@dpmail.test");
	lacks(part, "Remote-MTA");
	free(part);
	free(file);
	qmgr_stop();
	s = spool_states(qid);
	cr_assert_eq(s.st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(s.st[1], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 11. NOTIFY ----------------------------------------------------- */

Test(mta_qmgr, notify_success_reports_relayed)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	char *file, *part;

	qmgr_start();
	send_msg("alice@dpmail.test", "x@example.org", ENV_NOTIFY_SUCCESS,
		 qid);
	j = job_wait();
	job_ok(j);
	md_wait("alice", 1);
	settle();
	cr_assert_eq(md_count("alice"), 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "x@example.org", "relayed");
	has(part, "Status: 2.0.0\r\n");
	lacks(part, "Action: failed");
	free(part);
	free(file);
	qmgr_stop();
	cr_assert_eq(spool_states(qid).st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

Test(mta_qmgr, notify_never_suppresses_the_bounce)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;

	qmgr_start();
	send_msg("alice@dpmail.test", "x@example.org", ENV_NOTIFY_NEVER, qid);
	j = job_wait();
	job_answer(j, SMTP_RCPT_BOUNCED, 550, "5.1.1", "no such user");
	settle();
	cr_assert_eq(stats().bounced, 1u);
	cr_assert_eq(stats().dsn_sent, 0u);
	cr_assert_eq(md_count("alice"), 0u);
	cr_assert_eq(md_count("postmaster"), 0u);
	qmgr_stop();
	cr_assert_eq(spool_states(qid).st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_reports_to("alice@dpmail.test"), 0u);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- 12. per-destination concurrency and connection reuse ---------- */

Test(mta_qmgr, destination_concurrency_and_messages_per_connection)
{
	enum { N = 10 };
	struct envelope *e[N];
	char qid[N][ENV_QID_LEN + 1];
	struct mta_job *held[4];
	unsigned nheld = 0, done = 0, maxmsg = 0, njobs = 0;
	uint64_t end = mono_ms() + 20000;

	F.qc.dest_concurrency = 2;
	F.qc.dest_msgs_per_conn = 3;
	qmgr_start();
	send_to_users(e, qid, N);
	while (done < N) {
		struct mta_job *j;

		cr_assert_lt(mono_ms(), end, "%u of %u delivered", done, N);
		j = job_poll(nheld == 2 ? 300 : 100);
		if (j != NULL) {
			cr_assert_lt(nheld, 2u, "a third job at once");
			cr_assert_leq(j->nmsg, 3u);
			cr_assert_geq(j->nmsg, 1u);
			cr_assert_str_eq(j->nh.host, "198.18.0.10");
			if (j->nmsg > maxmsg)
				maxmsg = j->nmsg;
			held[nheld++] = j;
			njobs++;
			cr_assert_leq(stats().jobs_active, 2u);
			continue;
		}
		if (nheld == 0)
			continue;
		/* the oldest connection finishes */
		done += held[0]->nmsg;
		job_ok(held[0]);
		held[0] = held[1];
		nheld--;
	}
	settle();
	cr_assert_eq(done, (unsigned)N);
	cr_assert_eq(maxmsg, 3u, "no connection carried 3 messages");
	cr_assert_geq(njobs, 4u);
	cr_assert_eq(stats().delivered_remote, (uint64_t)N);
	cr_assert_eq(stats().jobs, njobs);
	cr_assert_null(job_poll(0));
	qmgr_stop();
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(spool_states(qid[i]).st[0],
			     SPOOL_RCPT_DELIVERED, "%s", qid[i]);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- beyond the list: local success, delay reports, recovery -------- */

Test(mta_qmgr, notify_success_on_local_delivery_reports_delivered)
{
	qmgr_start();
	send_msg("bob@dpmail.test", "alice@dpmail.test",
		 ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE, NULL);
	md_wait("alice", 1);
	md_wait("bob", 1);
	settle();
	cr_assert_eq(md_count("alice"), 1u);
	cr_assert_eq(md_count("bob"), 1u);
	char *file;
	char *part = report_of("bob", "bob@dpmail.test", &file,
			       "alice@dpmail.test", "delivered");

	has(part, "Status: 2.0.0\r\n");
	lacks(part, "Remote-MTA");
	free(part);
	free(file);
}

/* NOTIFY=DELAY: one delay report once delay_warning_s has passed, not
 * one per retry; the recipient stays queued and is delivered later. */
Test(mta_qmgr, delay_report_once_then_delivered)
{
	const char *to = "x@example.org";
	uint8_t nf = ENV_NOTIFY_DELAY | ENV_NOTIFY_FAILURE;
	struct envelope *e;
	struct mta_job *j;
	char *file, *part;

	F.qc.delay_warning_s = 1;
	qmgr_start();
	e = msg_new("alice@dpmail.test", &to, &nf, 1, 1);
	e->arrival_us -= 3000000u; /* in the queue for 3 s already */
	submit(e);
	for (unsigned i = 0; i < 2; i++) {
		j = job_poll(4000);
		cr_assert_not_null(j, "attempt %u never came", i + 1);
		job_answer(j, SMTP_RCPT_DEFERRED, 451, "4.3.0", "busy");
	}
	j = job_poll(4000);
	cr_assert_not_null(j, "attempt 3 never came");
	job_ok(j);
	settle();
	cr_assert_eq(stats().dsn_sent, 1u, "%lu reports",
		     (unsigned long)stats().dsn_sent);
	cr_assert_eq(md_count("alice"), 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "x@example.org", "delayed");
	has(part, "Status: 4.3.0\r\n");
	has(part, "Will-Retry-Until: ");
	free(part);
	free(file);
	cr_assert_eq(stats().delivered_remote, 1u);
}

/* Durable (the client had its 250) but the process stopped before the
 * queue manager took it: the next start finds it pending and delivers. */
Test(mta_qmgr, accepted_but_never_handed_over_goes_after_a_restart)
{
	const char *to[] = { "x@example.org", "alice@dpmail.test" };
	char qid[ENV_QID_LEN + 1];
	struct envelope *e;
	struct mta_job *j;
	struct qstate s;

	spool_start();
	e = msg_new("carol@example.net", to, NULL, 2, 1);
	memcpy(qid, e->qid, sizeof(qid));
	cr_assert_eq(tsu_put_msg(F.sp, e), 0);
	envelope_free(e);
	spool_close(F.sp);
	F.sp = NULL;

	qmgr_start();
	cr_assert_eq(F.rep.messages, 1u);
	cr_assert_eq(F.rep.rcpts_pending, 2u);
	cr_assert_eq(F.rep.rcpts_deferred, 0u);
	j = job_wait();
	cr_assert_str_eq(j->msg[0].env->qid, qid);
	cr_assert_eq(j->msg[0].nrcpt, 1u);
	cr_assert_eq(j->msg[0].rcpt[0].idx, 0u);
	job_ok(j);
	md_wait("alice", 1);
	settle();
	qmgr_stop();
	s = spool_states_any(qid);
	cr_assert_eq(s.st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(s.st[1], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* A full mailbox is a temporary failure (452 4.2.2): deferred with a
 * state record, retried, and returned once the lifetime is over. */
Test(mta_qmgr, local_over_quota_is_deferred_then_returned)
{
	char q2[ENV_QID_LEN + 1];
	uint64_t end;
	char *file, *part;
	struct qstate s;

	F.qc.mailbox.quota_messages = 1;
	F.qc.retry.lifetime_s = 2;
	qmgr_start();
	send_msg("carol@example.net", "bob@dpmail.test", 0, NULL);
	md_wait("bob", 1);
	send_msg("alice@dpmail.test", "bob@dpmail.test", 0, q2);
	end = mono_ms() + WAIT_MS;
	while (stats().deferred < 1) {
		cr_assert_lt(mono_ms(), end, "never deferred");
		sleep_ms(5);
	}
	md_wait("alice", 1);
	settle();
	cr_assert_null(job_poll(0));
	cr_assert_eq(md_count("bob"), 1u);
	cr_assert_eq(md_count("alice"), 1u);
	cr_assert_eq(stats().expired, 1u);
	part = report_of("alice", "alice@dpmail.test", &file,
			  "bob@dpmail.test", "failed");
	has(part, "\r\nStatus: 4.");
	has(part, "452 4.2.2");
	lacks(part, "Remote-MTA");
	free(part);
	free(file);
	qmgr_stop();
	s = spool_states(q2);
	cr_assert_geq(s.deferred, 1u);
	cr_assert_eq(s.st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* dest_rate: messages per second to one destination, whatever the
 * concurrency: a burst of rate, then one every 1/rate s. */
Test(mta_qmgr, destination_rate_limits_messages)
{
	enum { N = 6 };
	struct envelope *e[N];
	unsigned got = 0;
	uint64_t first = 0, last = 0, end = mono_ms() + 15000;

	F.qc.dest_rate = 2;
	qmgr_start();
	send_to_users(e, NULL, N);
	while (got < N) {
		struct mta_job *j;

		cr_assert_lt(mono_ms(), end, "%u of %u messages", got, N);
		j = job_poll(100);
		if (j == NULL)
			continue;
		if (got == 0)
			first = mono_ms();
		last = mono_ms();
		cr_assert_leq(j->nmsg, 2u, "%u messages at once", j->nmsg);
		got += j->nmsg;
		job_ok(j);
	}
	/* 2 at once, then 4 more at 2/s */
	cr_assert_geq(last - first, 1500u, "6 messages in %lu ms",
		      (unsigned long)(last - first));
	settle();
	cr_assert_eq(stats().delivered_remote, (uint64_t)N);
}

/* The spool fails the write that holds the bounce (-EIO): the queue
 * manager writes it again later; the sender gets exactly one bounce and
 * the recipient is marked bounced only after it is durable. */
Test(mta_qmgr, bounce_write_failure_is_retried)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;
	struct qstate s;

	qmgr_start();
	send_msg("alice@dpmail.test", "x@example.org", 0, qid);
	j = job_wait();
	spool_test_fail_next(F.sp, 0, -EIO, 1);
	job_answer(j, SMTP_RCPT_BOUNCED, 550, "5.1.1", "no such user");
	md_wait("alice", 1);
	settle();
	cr_assert_geq(stats().spool_retries, 1u);
	cr_assert_eq(stats().dsn_sent, 1u);
	cr_assert_eq(md_count("alice"), 1u);
	qmgr_stop();
	s = spool_states_any(qid); /* the failed segment went */
	cr_assert_eq(s.st[0], SPOOL_RCPT_BOUNCED);
	cr_assert_eq(spool_reports_to("alice@dpmail.test"), 1u);
	cr_assert_eq(spool_live_count(), 0u);
}

/* The same for a state record: DELIVERED reaches the spool in the end. */
Test(mta_qmgr, state_write_failure_is_retried)
{
	char qid[ENV_QID_LEN + 1];
	struct mta_job *j;

	qmgr_start();
	send_msg("alice@dpmail.test", "x@example.org", 0, qid);
	j = job_wait();
	spool_test_fail_next(F.sp, 0, -EIO, 1);
	job_ok(j);
	settle();
	cr_assert_geq(stats().spool_retries, 1u);
	qmgr_stop();
	cr_assert_eq(spool_states_any(qid).st[0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(spool_live_count(), 0u);
}

/* ---- bodies past [mta] memory_mb: let go, read back ------------------- */

#define BIG_N 24
#define BIG_LINES 1400  /* ~100 KB a message */

/* A local message to alice whose body is ~100 KB of numbered lines. */
static struct envelope *big_msg(unsigned i)
{
	const char *to = "alice@dpmail.test";
	struct envelope *e = msg_new("carol@example.net", &to, NULL, 1, 1);
	char line[96];

	for (unsigned k = 0; k < BIG_LINES; k++) {
		int n = snprintf(line, sizeof(line), "msg %02u line %04u "
				 "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"
				 "GHIJKLMNOPQRSTUVWXYZ\r\n", i, k);
		cr_assert_eq(envelope_body_append(e, line, (size_t)n), 0);
	}
	return e;
}

/* alice's Maildir holds exactly the BIG_N messages, byte for byte. */
static void big_delivered(uint8_t **bodies, const size_t *lens)
{
	bool seen[BIG_N] = { false };

	md_wait("alice", BIG_N);
	cr_assert_eq(md_count("alice"), BIG_N);
	for (unsigned f = 0; f < BIG_N; f++) {
		static const char hdr[] = "Return-Path: <carol@example.net>\r\n"
					  "Delivered-To: alice@dpmail.test\r\n";
		size_t len;
		char *got = md_read("alice", f, &len);
		char *mark = strstr(got, "msg ");
		unsigned i;

		cr_assert_not_null(mark);
		i = (unsigned)atoi(mark + 4);
		cr_assert_lt(i, BIG_N);
		cr_assert_not(seen[i], "message %u twice", i);
		seen[i] = true;
		cr_assert_eq(len, sizeof(hdr) - 1 + lens[i], "message %u: %zu "
			     "bytes", i, len);
		cr_assert_eq(memcmp(got, hdr, sizeof(hdr) - 1), 0);
		cr_assert_eq(memcmp(got + sizeof(hdr) - 1, bodies[i], lens[i]),
			     0, "message %u differs", i);
		free(got);
	}
}

Test(mta_qmgr, bodies_past_memory_mb_are_read_back_from_the_spool)
{
	uint8_t *bodies[BIG_N];
	size_t lens[BIG_N];
	struct mta_qmgr_stats st;
	struct mta_qmgr_conf go;

	F.qc.memory_mb = 1;
	F.qc.hold = true; /* every message waits: their bodies must go */
	qmgr_start();
	for (unsigned i = 0; i < BIG_N; i++) {
		struct envelope *e = big_msg(i);

		lens[i] = e->body_len;
		bodies[i] = malloc(e->body_len);
		cr_assert_not_null(bodies[i]);
		memcpy(bodies[i], e->body, e->body_len);
		submit(e);
	}
	/* admitted (counted first), then trimmed: wait for both */
	for (uint64_t end = mono_ms() + WAIT_MS;
	     stats().received < BIG_N ||
	     stats().bodies_dropped < BIG_N - 1024 * 1024 / lens[0];)
		cr_assert_lt(mono_ms(), end, "not all received and trimmed");
	sleep_ms(50);
	st = stats();
	cr_assert_leq(st.body_bytes, (1u << 20) + lens[0] + 1024,
		      "%lu bytes of bodies in memory",
		      (unsigned long)st.body_bytes);
	cr_assert_eq(md_count("alice"), 0u);

	/* a restart with the cap: recovery keeps at most 1 MiB too */
	qmgr_stop();
	qmgr_start();
	cr_assert_eq(F.rep.messages, BIG_N);
	st = stats();
	cr_assert_leq(st.body_bytes, (1u << 20) + lens[0] + 1024);
	cr_assert_gt(st.bodies_dropped, 0u);

	/* released (a reload): each body is read back for its batch */
	go = F.qc;
	go.hold = false;
	cr_assert_eq(mta_qmgr_reconf(F.q, &go, NULL, 5000), 0);
	big_delivered(bodies, lens);
	settle();
	st = stats();
	cr_assert_geq(st.bodies_read, st.bodies_dropped > 0 ? 1u : 0u);
	cr_assert_gt(st.bodies_read, 0u);
	cr_assert_eq(st.body_read_errors, 0u);
	cr_assert_eq(st.body_bytes, 0u, "%lu bytes left",
		     (unsigned long)st.body_bytes);
	cr_assert_eq(st.delivered_local, BIG_N);
	qmgr_stop();
	cr_assert_eq(spool_live_count(), 0u);
	for (unsigned i = 0; i < BIG_N; i++)
		free(bodies[i]);
}

/* A body that no longer reads back (a corrupted record): its recipient
 * is deferred with 4.3.0, counted, never delivered empty or wrong. */
Test(mta_qmgr, a_body_that_does_not_read_back_is_deferred)
{
	struct envelope *e;
	struct mta_qmgr_conf go;
	struct mta_qmgr_stats st;
	char path[4300];
	struct env_spool_at at;
	FILE *f;

	F.qc.memory_mb = 1;
	F.qc.hold = true;
	qmgr_start();
	e = big_msg(0);
	cr_assert_eq(tsu_put_msg(F.sp, e), 0);
	at = e->spool_at; /* before the queue manager owns it */
	cr_assert(at.set);
	cr_assert_eq(mta_qmgr_submit(F.q, 0, e), 0);
	for (unsigned i = 1; i < BIG_N; i++)
		submit(big_msg(i));
	for (uint64_t end = mono_ms() + WAIT_MS;
	     stats().received < BIG_N || stats().bodies_dropped == 0;)
		cr_assert_lt(mono_ms(), end, "not all received and trimmed");
	/* the first one's body went first (least recently used) */
	snprintf(path, sizeof(path), "%s/seg-%u-%llu.dps", F.sc.dir,
		 at.writer, (unsigned long long)at.seq);
	f = fopen(path, "r+b");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fseek(f, (long)(at.off + 4096), SEEK_SET), 0);
	cr_assert_neq(fputc('#', f), EOF);
	fclose(f);
	go = F.qc;
	go.hold = false;
	cr_assert_eq(mta_qmgr_reconf(F.q, &go, NULL, 5000), 0);
	md_wait("alice", BIG_N - 1);
	for (uint64_t end = mono_ms() + WAIT_MS;
	     stats().body_read_errors == 0;)
		cr_assert_lt(mono_ms(), end, "the bad record went unnoticed");
	sleep_ms(300);
	st = stats();
	cr_assert_eq(md_count("alice"), BIG_N - 1);
	cr_assert_eq(st.delivered_local, BIG_N - 1);
	cr_assert_geq(st.deferred, 1u);
	cr_assert_eq(st.msgs_live, 1u);
	for (unsigned f2 = 0; f2 < BIG_N - 1; f2++) {
		char *got = md_read("alice", f2, NULL);

		cr_assert_null(strstr(got, "msg 00 "), "the bad one arrived");
		free(got);
	}
	qmgr_stop();
}
