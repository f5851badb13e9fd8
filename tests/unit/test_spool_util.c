/*
 * test_spool_util.c: helpers of the spool unit tests (see the header).
 */
#include "tests/unit/test_spool_util.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

static char dir[256];
static bool mounted;

const char *tsu_dir(void)
{
	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/tmp/dpmail-ut-spool-XXXXXX");
		cr_assert_not_null(mkdtemp(dir));
	}
	return dir;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tsu_cleanup(void)
{
	if (dir[0] == '\0')
		return;
	if (mounted)
		umount2(dir, MNT_DETACH);
	mounted = false;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

int tsu_mount_tmpfs(const char *size)
{
	char opts[64];

	snprintf(opts, sizeof(opts), "size=%s", size);
	/* in a mount namespace of our own, the tmpfs goes with this test
	 * process even if it crashes */
	if (unshare(CLONE_NEWNS) == 0)
		mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (mount("tmpfs", tsu_dir(), "tmpfs", 0, opts) != 0) {
		cr_log_warn("cannot mount a tmpfs (%s): skipping",
			    strerror(errno));
		return -1;
	}
	mounted = true;
	return 0;
}

void tsu_conf(struct spool_conf *c, unsigned writers)
{
	spool_conf_defaults(c);
	snprintf(c->dir, sizeof(c->dir), "%s", tsu_dir());
	c->writers = writers;
	c->segment_bytes = 1u << 20;
	c->ring_size = 256;
	c->retry_ms = 20;
	c->preallocate = false;
}

static char *fmt(char *buf, size_t len, const char *f, uint32_t seed)
	__attribute__((format(printf, 3, 0)));
static char *fmt(char *buf, size_t len, const char *f, uint32_t seed)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(buf, len, f, seed);
#pragma GCC diagnostic pop
	return buf;
}

struct envelope *tsu_env(struct spool *sp, unsigned worker, uint32_t seed,
			 uint32_t nrcpt, size_t body_len)
{
	struct envelope *e = envelope_new();
	char b[128];

	cr_assert_not_null(e);
	spool_qid_next(sp, worker, e->qid);
	cr_assert_eq(envelope_set_str(&e->mail_from,
				      fmt(b, sizeof(b), "sender%u@example.org",
					  seed), SIZE_MAX), 0);
	if (seed % 3 == 0)
		envelope_set_str(&e->mail_from, "", SIZE_MAX); /* <> */
	envelope_set_str(&e->envid, fmt(b, sizeof(b), "envid-%u", seed),
			 SIZE_MAX);
	envelope_set_str(&e->helo, fmt(b, sizeof(b), "client%u.example.net",
				       seed), SIZE_MAX);
	envelope_set_str(&e->client_addr, "198.18.0.1", SIZE_MAX);
	e->client_port = (uint16_t)(1024 + seed);
	e->local_port = 25;
	e->ret = (uint8_t)(seed % 3);
	e->body_type = (uint8_t)(seed % 4);
	e->smtputf8 = seed & 1;
	e->esmtp = true;
	e->arrival_us = 1700000000000000ull + seed;
	e->declared_size = body_len;
	for (uint32_t i = 0; i < nrcpt; i++) {
		char o[128];

		snprintf(b, sizeof(b), "rcpt%u.%u@example.com", seed, i);
		if (i % 2)
			snprintf(o, sizeof(o), "rfc822;orig%u@example.com", i);
		else
			o[0] = '\0';
		cr_assert_eq(envelope_add_rcpt(e, b, o, (uint8_t)(i % 16)), 0);
	}
	for (size_t i = 0; i < body_len; i++) {
		uint8_t c = (uint8_t)((seed * 131 + i * 7) & 0xff);

		cr_assert_eq(envelope_body_append(e, &c, 1), 0);
	}
	return e;
}

void tsu_env_eq(const struct envelope *a, const struct envelope *b)
{
	cr_assert_str_eq(a->qid, b->qid);
	cr_assert_str_eq(a->mail_from, b->mail_from);
	cr_assert_str_eq(a->envid, b->envid);
	cr_assert_str_eq(a->helo, b->helo);
	cr_assert_str_eq(a->client_addr, b->client_addr);
	cr_assert_eq(a->client_port, b->client_port);
	cr_assert_eq(a->local_port, b->local_port);
	cr_assert_eq(a->ret, b->ret);
	cr_assert_eq(a->body_type, b->body_type);
	cr_assert_eq(a->smtputf8, b->smtputf8);
	cr_assert_eq(a->esmtp, b->esmtp);
	cr_assert_eq(a->arrival_us, b->arrival_us);
	cr_assert_eq(a->declared_size, b->declared_size);
	cr_assert_eq(a->nrcpt, b->nrcpt);
	for (uint32_t i = 0; i < a->nrcpt; i++) {
		cr_assert_str_eq(a->rcpt[i].addr, b->rcpt[i].addr);
		cr_assert_str_eq(a->rcpt[i].orcpt, b->rcpt[i].orcpt);
		cr_assert_eq(a->rcpt[i].notify, b->rcpt[i].notify);
	}
	cr_assert_eq(a->body_len, b->body_len);
	if (a->body_len)
		cr_assert(memcmp(a->body, b->body, a->body_len) == 0,
			  "body differs for %s", a->qid);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned tsu_run(struct spool *sp, unsigned worker, struct spool_req **r,
		 unsigned n)
{
	unsigned sent = 0, back = 0, ok = 0;
	uint64_t deadline = now_ms() + 20000;

	for (unsigned i = 0; i < n; i++)
		r[i]->worker = worker;
	while (back < n) {
		struct spool_req *done[64];
		unsigned k;

		while (sent < n) {
			int rc = spool_submit(sp, r[sent]);

			if (rc == -ENOBUFS)
				break;
			cr_assert_eq(rc, 0, "submit: %d", rc);
			sent++;
		}
		k = spool_completions(sp, worker, done, 64);
		for (unsigned i = 0; i < k; i++) {
			ok += done[i]->status == 0;
			cr_assert_geq(done[i]->done_ns, done[i]->submit_ns);
		}
		back += k;
		cr_assert_leq(back, sent);
		if (k == 0) {
			cr_assert_lt(now_ms(), deadline,
				     "only %u of %u requests came back", back,
				     n);
			usleep(100);
		}
	}
	return ok;
}

int tsu_put_msg(struct spool *sp, struct envelope *e)
{
	struct spool_req r = { .type = SPOOL_REQ_MSG, .env = e };
	struct spool_req *p = &r;

	tsu_run(sp, 0, &p, 1);
	return r.status;
}

int tsu_put_state(struct spool *sp, const char *qid, uint32_t rcpt,
		  uint8_t state, uint64_t next_try_s)
{
	struct spool_req r = { .type = SPOOL_REQ_STATE, .rcpt = rcpt,
			       .state = state, .next_try_s = next_try_s };
	struct spool_req *p = &r;

	snprintf(r.qid, sizeof(r.qid), "%s", qid);
	tsu_run(sp, 0, &p, 1);
	return r.status;
}

static int scan_cb(void *arg, const struct spool_scan_rec *r)
{
	struct tsu_scan *s = arg;

	if (r->bad) {
		s->nbad++;
		return 0;
	}
	if (r->type == SPOOL_REQ_STATE) {
		s->nstates++;
		return 0;
	}
	s->msgs = realloc(s->msgs, (s->nmsgs + 1) * sizeof(*s->msgs));
	cr_assert_not_null(s->msgs);
	s->msgs[s->nmsgs] = envelope_dup(r->env);
	cr_assert_not_null(s->msgs[s->nmsgs]);
	s->nmsgs++;
	return 0;
}

int tsu_scan(const char *d, struct tsu_scan *s)
{
	memset(s, 0, sizeof(*s));
	return spool_scan(d, scan_cb, s);
}

void tsu_scan_free(struct tsu_scan *s)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		envelope_free(s->msgs[i]);
	free(s->msgs);
	memset(s, 0, sizeof(*s));
}

const struct envelope *tsu_scan_find(const struct tsu_scan *s,
				     const char *qid)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		if (strcmp(s->msgs[i]->qid, qid) == 0)
			return s->msgs[i];
	return NULL;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned list(const char *d, char **names, unsigned max)
{
	DIR *dp = opendir(d);
	struct dirent *de;
	unsigned n = 0;

	cr_assert_not_null(dp);
	while ((de = readdir(dp)) != NULL)
		if (strncmp(de->d_name, "seg-", 4) == 0) {
			if (names != NULL && n < max)
				names[n] = strdup(de->d_name);
			n++;
		}
	closedir(dp);
	return n;
}

unsigned tsu_count_segments(const char *d)
{
	return list(d, NULL, 0);
}

int tsu_segment_path(const char *d, unsigned idx, char *out, size_t len)
{
	char *names[256];
	unsigned n = list(d, names, 256);

	if (n > 256)
		n = 256;
	qsort(names, n, sizeof(*names), name_cmp);
	if (idx < n)
		snprintf(out, len, "%s/%s", d, names[idx]);
	for (unsigned i = 0; i < n; i++)
		free(names[i]);
	return idx < n ? 0 : -1;
}
