/*
 * test_mailbox.c: Maildir delivery (store/mailbox.c): files are the two
 * headers plus the body byte for byte, names never repeat, the index
 * agrees with new/ and survives a reopen and a torn tail, quota refuses
 * without writing, bad mailbox names never touch the disk, one bad item
 * never costs the others, I/O errors leave nothing behind, and a batch
 * costs a fixed number of syncs. Each test has its own mkdtemp directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/mailbox.h"

static char tdir[64];
static bool mounted;

static void setup(void)
{
	snprintf(tdir, sizeof(tdir), "/tmp/dpm-mbox-XXXXXX");
	cr_assert_not_null(mkdtemp(tdir));
}

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static void teardown(void)
{
	if (mounted)
		umount2(tdir, MNT_DETACH);
	mounted = false;
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(mailbox, .init = setup, .fini = teardown, .timeout = 60);

static void conf(struct mailbox_conf *c, bool sync)
{
	mailbox_conf_defaults(c);
	snprintf(c->dir, sizeof(c->dir), "%s/mail", tdir);
	snprintf(c->hostname, sizeof(c->hostname), "mx1.example:2/x");
	c->fsync = sync;
}

static struct mailbox_store *open_store(const struct mailbox_conf *c)
{
	struct mailbox_store *ms;
	char err[256] = "";

	cr_assert_eq(mailbox_open(&ms, c, err, sizeof(err)), 0, "%s", err);
	return ms;
}

static void item(struct mailbox_item *it, const char *mbox, const char *from,
		 const char *body)
{
	memset(it, 0, sizeof(*it));
	it->mailbox = mbox;
	it->return_path = from;
	it->delivered_to = mbox;
	it->body = (const uint8_t *)body;
	it->body_len = strlen(body);
	it->arrival_us = 1764000000123456ull;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* entries in DIR/mail/<rel>/<sub>, not counting . and .. */
static size_t count(const char *rel, const char *sub)
{
	char p[8400];
	size_t n = 0;
	struct dirent *d;
	DIR *dh;

	snprintf(p, sizeof(p), "%s/mail/%s/%s", tdir, rel, sub);
	dh = opendir(p);
	if (dh == NULL)
		return 0;
	while ((d = readdir(dh)) != NULL)
		n += strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
	closedir(dh);
	return n;
}

/* The index agrees with new/: UIDs increase, every entry is a file of
 * its size there, and nothing else is. */
static void check_index(const struct mailbox_conf *c, const char *mbox,
			const char *rel, size_t want)
{
	struct mailbox_index ix;
	char p[8400];

	cr_assert_eq(mailbox_index_load(c, mbox, &ix), 0);
	cr_assert_eq(ix.n, want, "%zu entries, want %zu", ix.n, want);
	cr_assert_eq(count(rel, "new"), want);
	cr_assert_eq(count(rel, "tmp"), 0);
	for (size_t i = 0; i < ix.n; i++) {
		struct stat sb;

		if (i > 0)
			cr_assert_gt(ix.e[i].uid, ix.e[i - 1].uid);
		cr_assert_lt(ix.e[i].uid, ix.next_uid);
		snprintf(p, sizeof(p), "%s/%s/new/%s", c->dir, rel,
			 ix.e[i].name);
		cr_assert_eq(stat(p, &sb), 0, "%s", p);
		cr_assert_eq((uint64_t)sb.st_size, ix.e[i].size);
		char s[40];

		snprintf(s, sizeof(s), ",S=%" PRIu64, ix.e[i].size);
		cr_assert_not_null(strstr(ix.e[i].name, s));
	}
	mailbox_index_free(&ix);
}

Test(mailbox, content_is_two_headers_then_the_body_byte_for_byte)
{
	struct mailbox_conf c;
	struct mailbox_item it[2];
	char p[8400], want[256];
	const char *body = "Subject: hi\r\n\r\nline 1\r\n.dot\r\n\0x\r\n";
	size_t len;

	conf(&c, true);
	struct mailbox_store *ms = open_store(&c);

	item(&it[0], "alice", "s@x.org", body);
	item(&it[1], "bob@example.org", "", body);
	it[1].delivered_to = "Bob@Example.ORG";
	cr_assert_eq(mailbox_deliver(ms, it, 2), 2);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(it[i].status, 0);
		cr_assert_eq(it[i].uid, 1);
		cr_assert_null(strchr(it[i].name, '/'));
		cr_assert_null(strchr(it[i].name, ':'));
		cr_assert_not_null(strstr(it[i].name, "1764000000.M123456P"));
		cr_assert_not_null(strstr(it[i].name, ".mx1.example\\0722\\057x,S="));
	}
	snprintf(p, sizeof(p), "%s/alice/new/%s", c.dir, it[0].name);
	char *got = slurp(p, &len);
	int hl = snprintf(want, sizeof(want),
			  "Return-Path: <s@x.org>\r\nDelivered-To: alice\r\n");

	cr_assert_eq(len, (size_t)hl + strlen(body));
	cr_assert_eq(memcmp(got, want, (size_t)hl), 0);
	cr_assert_eq(memcmp(got + hl, body, strlen(body)), 0);
	free(got);
	/* null sender; user@domain under @domain/ */
	snprintf(p, sizeof(p), "%s/@example.org/bob/new/%s", c.dir,
		 it[1].name);
	got = slurp(p, &len);
	hl = snprintf(want, sizeof(want),
		      "Return-Path: <>\r\nDelivered-To: Bob@Example.ORG\r\n");
	cr_assert_eq(len, (size_t)hl + strlen(body));
	cr_assert_eq(memcmp(got, want, (size_t)hl), 0);
	cr_assert_eq(memcmp(got + hl, body, strlen(body)), 0);
	free(got);
	check_index(&c, "alice", "alice", 1);
	check_index(&c, "bob@example.org", "@example.org/bob", 1);
	cr_assert_eq(count("alice", "cur"), 0);
	mailbox_close(ms);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(mailbox, names_unique_over_1000_in_a_batch_and_across_batches)
{
	struct mailbox_conf c;
	enum { N = 1000 };
	struct mailbox_item *it = calloc(N, sizeof(*it));
	char **names = calloc(3 * N, sizeof(*names));

	conf(&c, false);
	struct mailbox_store *ms = open_store(&c);

	for (int b = 0; b < 2; b++) {
		for (int i = 0; i < N; i++)
			item(&it[i], "carol", "s@x", "same arrival time\r\n");
		cr_assert_eq(mailbox_deliver(ms, it, N), N);
		for (int i = 0; i < N; i++) {
			cr_assert_eq(it[i].uid, (uint32_t)(b * N + i + 1));
			names[b * N + i] = strdup(it[i].name);
		}
	}
	/* a second store in the same process, the same microsecond */
	struct mailbox_store *ms2 = open_store(&c);

	for (int i = 0; i < N; i++)
		item(&it[i], "carol", "s@x", "same arrival time\r\n");
	cr_assert_eq(mailbox_deliver(ms2, it, N), N);
	for (int i = 0; i < N; i++)
		names[2 * N + i] = strdup(it[i].name);
	mailbox_close(ms2);
	qsort(names, 3 * N, sizeof(*names), cmp_str);
	for (int i = 1; i < 3 * N; i++)
		cr_assert_str_neq(names[i - 1], names[i]);
	check_index(&c, "carol", "carol", 3 * N);
	for (int i = 0; i < 3 * N; i++)
		free(names[i]);
	free(names);
	free(it);
	mailbox_close(ms);
}

Test(mailbox, index_uids_increase_and_match_new_across_mailboxes)
{
	struct mailbox_conf c;
	struct mailbox_item it[30];
	const char *mb[3] = { "dave", "erin@a.example", "frank@b.example" };
	const char *rel[3] = { "dave", "@a.example/erin", "@b.example/frank" };
	struct mailbox_index ix;

	conf(&c, false);
	struct mailbox_store *ms = open_store(&c);

	for (int i = 0; i < 30; i++)
		item(&it[i], mb[i % 3], "s@x", i % 2 ? "odd\r\n" : "even!\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 30), 30);
	for (int k = 0; k < 3; k++) {
		check_index(&c, mb[k], rel[k], 10);
		cr_assert_eq(mailbox_index_load(&c, mb[k], &ix), 0);
		for (int i = k, j = 0; i < 30; i += 3, j++) {
			cr_assert_eq(it[i].uid, ix.e[j].uid);
			cr_assert_str_eq(it[i].name, ix.e[j].name);
		}
		cr_assert_eq(ix.next_uid, 11);
		uint64_t bytes, sum = 0;
		uint32_t msgs;

		for (size_t j = 0; j < ix.n; j++)
			sum += ix.e[j].size;
		cr_assert_eq(mailbox_usage(ms, mb[k], &bytes, &msgs), 0);
		cr_assert_eq(bytes, sum);
		cr_assert_eq(msgs, 10);
		mailbox_index_free(&ix);
	}
	cr_assert_eq(mailbox_index_load(&c, "nobody", &ix), -ENOENT);
	mailbox_close(ms);
}

Test(mailbox, index_survives_reopen)
{
	struct mailbox_conf c;
	struct mailbox_item it[5];
	struct mailbox_index a, b;
	uint64_t bytes;
	uint32_t msgs;

	conf(&c, true);
	struct mailbox_store *ms = open_store(&c);

	for (int i = 0; i < 5; i++)
		item(&it[i], "gina", "s@x", "first\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 5), 5);
	cr_assert_eq(mailbox_index_load(&c, "gina", &a), 0);
	mailbox_close(ms);
	sleep(1); /* a new UIDVALIDITY would show */
	ms = open_store(&c);
	cr_assert_eq(mailbox_usage(ms, "gina", &bytes, &msgs), 0);
	cr_assert_eq(msgs, 5);
	cr_assert_eq(bytes, 5 * a.e[0].size);
	for (int i = 0; i < 5; i++)
		item(&it[i], "gina", "s@x", "second\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 5), 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(it[i].uid, (uint32_t)(6 + i));
	cr_assert_eq(mailbox_index_load(&c, "gina", &b), 0);
	cr_assert_eq(b.uidvalidity, a.uidvalidity);
	cr_assert_eq(b.next_uid, 11);
	check_index(&c, "gina", "gina", 10);
	mailbox_index_free(&a);
	mailbox_index_free(&b);
	mailbox_close(ms);
}

Test(mailbox, torn_index_tail_ignored_then_cut)
{
	struct mailbox_conf c;
	struct mailbox_item it[3];
	struct mailbox_index ix;
	char p[8400];

	conf(&c, false);
	struct mailbox_store *ms = open_store(&c);

	for (int i = 0; i < 3; i++)
		item(&it[i], "hal", "s@x", "x\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 3), 3);
	mailbox_close(ms);
	/* a crash in the middle of an append */
	snprintf(p, sizeof(p), "%s/hal/%s", c.dir, MAILBOX_INDEX_FILE);
	FILE *f = fopen(p, "a");

	fputs("4 1764000000.M1P1Q9.h,S=", f);
	fclose(f);
	cr_assert_eq(mailbox_index_load(&c, "hal", &ix), 0);
	cr_assert_eq(ix.n, 3);
	cr_assert_eq(ix.next_uid, 4);
	mailbox_index_free(&ix);
	ms = open_store(&c);
	item(&it[0], "hal", "s@x", "after\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 1), 1);
	cr_assert_eq(it[0].uid, 4);
	check_index(&c, "hal", "hal", 4);
	size_t len;
	char *s = slurp(p, &len);

	cr_assert_eq(s[len - 1], '\n');
	cr_assert_null(strstr(s, "Q9.h"));
	free(s);
	mailbox_close(ms);
	/* a header torn before anything was appended: a fresh index */
	snprintf(p, sizeof(p), "%s/ivy", c.dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/ivy/%s", c.dir, MAILBOX_INDEX_FILE);
	f = fopen(p, "w");
	fputs("dpmail-ind", f);
	fclose(f);
	ms = open_store(&c);
	item(&it[0], "ivy", "s@x", "y\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 1), 1);
	cr_assert_eq(it[0].uid, 1);
	check_index(&c, "ivy", "ivy", 1);
	mailbox_close(ms);
}

/* A crash after the rename, before the index line: the file in new/ gets
 * a UID on the next first touch; tmp/ debris older than 36 h goes. */
Test(mailbox, unindexed_file_in_new_adopted_and_old_tmp_swept)
{
	struct mailbox_conf c;
	struct mailbox_item it[2];
	struct mailbox_stats st;
	struct mailbox_index ix;
	char p[8400], q[8400];
	struct timespec old[2];

	conf(&c, false);
	struct mailbox_store *ms = open_store(&c);

	item(&it[0], "quinn", "s@x", "one\r\n");
	item(&it[1], "quinn", "s@x", "two\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 2), 2);
	mailbox_close(ms);
	/* "renamed, not indexed": a copy under a later name */
	snprintf(p, sizeof(p), "%s/quinn/new/%s", c.dir, it[1].name);
	char adopted[MAILBOX_FILE_NAME_MAX];

	snprintf(adopted, sizeof(adopted), "1764000001.M1P1Q1.h%s",
		 strstr(it[1].name, ",S="));
	snprintf(q, sizeof(q), "%s/quinn/new/%s", c.dir, adopted);
	cr_assert_eq(link(p, q), 0);
	snprintf(q, sizeof(q), "%s/quinn/tmp/1600000000.M1P1Q1.h,S=1", c.dir);
	FILE *f = fopen(q, "w");

	fputs("x", f);
	fclose(f);
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 37 * 3600;
	old[0].tv_nsec = old[1].tv_nsec = 0;
	cr_assert_eq(utimensat(AT_FDCWD, q, old, 0), 0);
	ms = open_store(&c);
	item(&it[0], "quinn", "s@x", "three\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 1), 1);
	cr_assert_eq(it[0].uid, 4);
	check_index(&c, "quinn", "quinn", 4);
	cr_assert_eq(mailbox_index_load(&c, "quinn", &ix), 0);
	cr_assert_str_eq(ix.e[2].name, adopted);
	cr_assert_eq(ix.e[2].uid, 3);
	mailbox_index_free(&ix);
	mailbox_get_stats(ms, &st);
	cr_assert_eq(st.adopted, 1);
	mailbox_close(ms);
}

Test(mailbox, quota_refuses_without_writing)
{
	struct mailbox_conf c;
	struct mailbox_item it[3];
	struct mailbox_stats st;
	uint64_t bytes;
	uint32_t msgs;
	/* "Return-Path: <s@x>\r\nDelivered-To: jo\r\n" is 38 bytes */
	const char *body = "0123456789\r\n";
	const uint64_t one = 38 + 12;

	conf(&c, false);
	c.quota_bytes = 2 * one + 40;
	struct mailbox_store *ms = open_store(&c);

	for (int i = 0; i < 3; i++)
		item(&it[i], "jo", "s@x", body);
	cr_assert_eq(mailbox_deliver(ms, it, 3), 2);
	cr_assert_eq(it[0].status, 0);
	cr_assert_eq(it[1].status, 0);
	cr_assert_eq(it[2].status, -EDQUOT);
	cr_assert_eq(it[2].name[0], '\0');
	check_index(&c, "jo", "jo", 2);
	cr_assert_eq(mailbox_usage(ms, "jo", &bytes, &msgs), 0);
	cr_assert_eq(bytes, 2 * one);
	cr_assert_eq(msgs, 2);
	/* a smaller one still fits */
	item(&it[0], "jo", "s@x", "");
	cr_assert_eq(mailbox_deliver(ms, it, 1), 1);
	mailbox_get_stats(ms, &st);
	cr_assert_eq(st.quota_refused, 1);
	cr_assert_eq(st.errors, 0);
	mailbox_close(ms);

	/* messages, across batches and a reopen */
	c.quota_bytes = 0;
	c.quota_messages = 2;
	ms = open_store(&c);
	item(&it[0], "kim", "s@x", body);
	cr_assert_eq(mailbox_deliver(ms, it, 1), 1);
	mailbox_close(ms);
	ms = open_store(&c);
	item(&it[0], "kim", "s@x", body);
	item(&it[1], "kim", "s@x", body);
	item(&it[2], "lee", "s@x", body);
	cr_assert_eq(mailbox_deliver(ms, it, 3), 2);
	cr_assert_eq(it[1].status, -EDQUOT);
	cr_assert_eq(it[2].status, 0);
	check_index(&c, "kim", "kim", 2);
	mailbox_close(ms);
}

Test(mailbox, bad_names_refused_and_nothing_created)
{
	static const char *const bad[] = {
		"", "/", ".", "..", "../etc", "a/b", "/abs", ".hidden",
		"a@.x", "a@..", "a@", "@x", "a@b@c", "a\nb", "a\rb", "a b",
		"a\tb", "a\\b", "x@../..", "x@a/b", "..@x", "a\x7f",
		"x@/", "\x01",
	};
	struct mailbox_conf c;
	struct mailbox_item it;
	struct mailbox_index ix;
	char longname[300], rel[MAILBOX_NAME_MAX + 2];

	conf(&c, false);
	struct mailbox_store *ms = open_store(&c);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		item(&it, bad[i], "s@x", "x\r\n");
		cr_assert_eq(mailbox_deliver(ms, &it, 1), 0, "[%zu]", i);
		cr_assert_eq(it.status, -EINVAL, "[%zu] %d", i, it.status);
		cr_assert_eq(mailbox_index_load(&c, bad[i], &ix), -EINVAL);
	}
	memset(longname, 'a', sizeof(longname));
	longname[256] = '\0';
	item(&it, longname, "s@x", "x\r\n");
	cr_assert_eq(mailbox_deliver(ms, &it, 1), 0);
	cr_assert_eq(it.status, -EINVAL);
	it.mailbox = NULL;
	cr_assert_eq(mailbox_deliver(ms, &it, 1), 0);
	cr_assert_eq(it.status, -EINVAL);
	cr_assert_eq(count("", ""), 0, "something was created");
	cr_assert_eq(count("..", ""), 1, "outside the root");
	/* at the limit, and folded to lower case */
	longname[255] = '\0';
	item(&it, longname, "s@x", "x\r\n");
	cr_assert_eq(mailbox_deliver(ms, &it, 1), 1);
	cr_assert_eq(mailbox_path("Bob@Example.ORG", rel, sizeof(rel)), 0);
	cr_assert_str_eq(rel, "@example.org/bob");
	cr_assert_eq(mailbox_path("a.b-c+d@x", rel, sizeof(rel)), 0);
	cr_assert_str_eq(rel, "@x/a.b-c+d");
	mailbox_close(ms);
}

Test(mailbox, mixed_batch_one_bad_item_costs_only_itself)
{
	struct mailbox_conf c;
	struct mailbox_item it[6];

	conf(&c, true);
	struct mailbox_store *ms = open_store(&c);

	item(&it[0], "mia", "s@x", "a\r\n");
	item(&it[1], "../mia", "s@x", "b\r\n");
	item(&it[2], "mia", "s@x", "c\r\n");
	item(&it[3], "ned@x.example", "evil>\r\nX-Injected: 1", "d\r\n");
	item(&it[4], "ned@x.example", "", "e\r\n");
	item(&it[5], "mia", "s@x", "f\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 6), 4);
	cr_assert_eq(it[1].status, -EINVAL);
	cr_assert_eq(it[3].status, -EINVAL);
	cr_assert_eq(it[0].uid, 1);
	cr_assert_eq(it[2].uid, 2);
	cr_assert_eq(it[5].uid, 3);
	cr_assert_eq(it[4].uid, 1);
	check_index(&c, "mia", "mia", 3);
	check_index(&c, "ned@x.example", "@x.example/ned", 1);
	mailbox_close(ms);
}

static int n_calls, fail_at, fail_rc;
static const char *fail_step;

static int hook(void *arg, const char *step)
{
	(void)arg;
	if (strcmp(step, fail_step) != 0)
		return 0;
	return ++n_calls == fail_at || fail_at == 0 ? fail_rc : 0;
}

Test(mailbox, io_errors_fail_their_items_and_leave_nothing)
{
	struct mailbox_conf c;
	struct mailbox_item it[4];
	struct mailbox_stats st;
	uint64_t bytes;
	uint32_t msgs;

	conf(&c, true);
	struct mailbox_store *ms = open_store(&c);

	mailbox_set_fault_hook(ms, hook, NULL);
	/* the second write runs out of space */
	fail_step = "write";
	fail_at = 2;
	fail_rc = -ENOSPC;
	n_calls = 0;
	for (int i = 0; i < 4; i++)
		item(&it[i], "oli", "s@x", "m\r\n");
	cr_assert_eq(mailbox_deliver(ms, it, 4), 3);
	cr_assert_eq(it[1].status, -ENOSPC);
	cr_assert_eq(it[2].uid, 2);
	check_index(&c, "oli", "oli", 3);
	/* the data sync fails: the whole batch, nothing in new/ */
	fail_step = "sync";
	fail_at = 1;
	fail_rc = -EIO;
	n_calls = 0;
	cr_assert_eq(mailbox_deliver(ms, it, 4), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(it[i].status, -EIO);
	check_index(&c, "oli", "oli", 3);
	/* the index append fails: the files leave new/ again */
	fail_step = "index";
	fail_at = 0;
	n_calls = 0;
	cr_assert_eq(mailbox_deliver(ms, it, 4), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(it[i].status, -EIO);
	check_index(&c, "oli", "oli", 3);
	cr_assert_eq(mailbox_usage(ms, "oli", &bytes, &msgs), 0);
	cr_assert_eq(msgs, 3);
	mailbox_get_stats(ms, &st);
	cr_assert_eq(st.errors, 9);
	cr_assert_eq(st.last_error, -EIO);
	/* and then it works again, UIDs still increasing */
	mailbox_set_fault_hook(ms, NULL, NULL);
	cr_assert_eq(mailbox_deliver(ms, it, 4), 4);
	cr_assert_gt(it[0].uid, 3);
	check_index(&c, "oli", "oli", 7);
	mailbox_close(ms);
}

Test(mailbox, real_enospc_on_a_small_tmpfs)
{
	struct mailbox_conf c;
	enum { N = 12 };
	struct mailbox_item it[N];
	size_t blen = 48 << 10, ok;
	char *body = malloc(blen + 1);

	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", tdir, "tmpfs", 0, "size=256k") != 0)
		cr_skip_test("cannot mount a tmpfs here (not root?)");
	mounted = true;
	memset(body, 'z', blen);
	body[blen] = '\0';
	conf(&c, true);
	struct mailbox_store *ms = open_store(&c);

	for (int i = 0; i < N; i++)
		item(&it[i], "pat", "s@x", body);
	ok = mailbox_deliver(ms, it, N);
	cr_assert_gt(ok, 0);
	cr_assert_lt(ok, N);
	for (size_t i = 0; i < N; i++)
		cr_assert(it[i].status == 0 || it[i].status == -ENOSPC,
			  "[%zu] %d", i, it[i].status);
	check_index(&c, "pat", "pat", ok);
	mailbox_close(ms);
	free(body);
}

static double batch_ms(struct mailbox_store *ms, struct mailbox_item *it,
		       size_t n, uint64_t *syncs)
{
	struct mailbox_stats a, b;
	struct timespec t0, t1;

	mailbox_get_stats(ms, &a);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(mailbox_deliver(ms, it, n), n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	mailbox_get_stats(ms, &b);
	*syncs = b.syncs - a.syncs;
	return (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		(double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
}

/* Not a timed assertion: the count is the promise, times are printed. */
Test(mailbox, a_batch_costs_two_syncs_not_one_per_message)
{
	struct mailbox_conf c;
	enum { N = 200, M = 10 };
	struct mailbox_item it[N];
	char names[M][32], body[2048];
	uint64_t syncs;
	double ms_fs[3], ms_pf[3];

	memset(body, 'b', sizeof(body) - 3);
	memcpy(body + sizeof(body) - 3, "\r\n", 3);
	for (int k = 0; k < M; k++)
		snprintf(names[k], sizeof(names[k]), "u%d@sync.example", k);
	conf(&c, true);
	struct mailbox_store *ms = open_store(&c);

	for (int r = 0; r < 3; r++) {
		for (int i = 0; i < N; i++)
			item(&it[i], names[i % M], "s@x", body);
		ms_fs[r] = batch_ms(ms, it, N, &syncs);
		cr_assert_eq(syncs, 2, "syncfs mode: %" PRIu64 " syncs", syncs);
	}
	mailbox_close(ms);
	/* the per-file way, for comparison */
	c.sync_per_file = true;
	ms = open_store(&c);
	for (int r = 0; r < 3; r++) {
		for (int i = 0; i < N; i++)
			item(&it[i], names[i % M], "s@x", body);
		ms_pf[r] = batch_ms(ms, it, N, &syncs);
		cr_assert_eq(syncs, N + 2 * M);
	}
	mailbox_close(ms);
	cr_log_info("200 messages over 10 mailboxes, 3 batches: syncfs 2 syncs "
		    "%.1f %.1f %.1f ms; per file %d syncs %.1f %.1f %.1f ms",
		    ms_fs[0], ms_fs[1], ms_fs[2], N + 2 * M, ms_pf[0],
		    ms_pf[1], ms_pf[2]);
	fprintf(stderr, "mailbox sync cost: syncfs 2 syncs/batch %.1f %.1f "
		"%.1f ms; per-file %d syncs/batch %.1f %.1f %.1f ms\n",
		ms_fs[0], ms_fs[1], ms_fs[2], N + 2 * M, ms_pf[0], ms_pf[1],
		ms_pf[2]);
}
