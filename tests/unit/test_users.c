/*
 * test_users.c: the user directory (store/users.c): yescrypt hashes,
 * the file's atomic rewrite and its parser, sender ownership, and the
 * verifier thread answering on a worker's completion ring, reloading
 * the file when it changes.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/users.h"

TestSuite(users, .timeout = 120);

static void tmpname(char *buf, size_t cap)
{
	snprintf(buf, cap, "/tmp/dpmail-ut-users-%d-%ld", (int)getpid(),
		 (long)random());
}

Test(users, hash_and_check)
{
	char h[USERS_HASH_MAX + 1];

	cr_assert_eq(users_hash("s3cret", h, sizeof(h)), 0);
	cr_assert_eq(strncmp(h, "$y$", 3), 0, "%s", h);
	cr_assert(users_hash_ok(h, "s3cret"));
	cr_assert(!users_hash_ok(h, "s3creT"));
	cr_assert(!users_hash_ok(h, ""));
	cr_assert(!users_hash_ok("plaintext", "plaintext"));
	cr_assert_eq(users_hash("", h, sizeof(h)), -EINVAL);
}

Test(users, file_roundtrip_and_bad_lines)
{
	struct users_entry e[2] = { 0 }, *v;
	char path[128], err[128];
	size_t n;
	FILE *f;

	tmpname(path, sizeof(path));
	cr_assert_eq(users_file_read(path, &v, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0);
	snprintf(e[0].name, sizeof(e[0].name), "alice@example.org");
	cr_assert_eq(users_hash("pw1", e[0].hash, sizeof(e[0].hash)), 0);
	snprintf(e[1].name, sizeof(e[1].name), "bob");
	cr_assert_eq(users_hash("pw2", e[1].hash, sizeof(e[1].hash)), 0);
	snprintf(e[1].addrs, sizeof(e[1].addrs), "bob@x.test,@y.test");
	cr_assert_eq(users_file_write(path, e, 2), 0);
	cr_assert_eq(users_file_read(path, &v, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[1].name, "bob");
	cr_assert_str_eq(v[1].addrs, "bob@x.test,@y.test");
	cr_assert(users_hash_ok(v[0].hash, "pw1"));
	free(v);
	f = fopen(path, "a");
	fprintf(f, "carol:plaintextpassword\n");
	fclose(f);
	cr_assert_eq(users_file_read(path, &v, &n, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "4:"), "%s", err);
	unlink(path);
	cr_assert(!users_name_valid("a:b"));
	cr_assert(!users_name_valid("a b"));
	cr_assert(!users_name_valid(""));
	cr_assert(users_name_valid("a@b.c"));
}

Test(users, sender_ok)
{
	cr_assert(users_sender_ok("alice@a.test", "", "alice@a.test"));
	cr_assert(users_sender_ok("alice@a.test", "", "ALICE@a.test"));
	cr_assert(!users_sender_ok("alice@a.test", "", "bob@a.test"));
	cr_assert(users_sender_ok("alice@a.test", "", ""));
	cr_assert(users_sender_ok("bob", "", "bob@any.test"));
	cr_assert(!users_sender_ok("bob", "", "bobby@any.test"));
	cr_assert(users_sender_ok("bob", "x@y.test,@z.test", "x@y.test"));
	cr_assert(users_sender_ok("bob", "x@y.test,@z.test", "anyone@z.test"));
	cr_assert(!users_sender_ok("bob", "x@y.test,@z.test", "x@z.test.evil"));
}

static struct users_req *wait_one(struct users_db *db)
{
	struct users_req *r;

	for (int i = 0; i < 20000; i++) {
		if (users_completions(db, 1, &r, 1) == 1)
			return r;
		usleep(1000);
	}
	cr_assert_fail("no answer from the verifier");
	return NULL;
}

Test(users, verifier_thread_and_reload)
{
	struct users_entry e = { 0 };
	struct users_req r = { 0 }, *got;
	struct users_db *db;
	char path[128];

	tmpname(path, sizeof(path));
	snprintf(e.name, sizeof(e.name), "alice");
	cr_assert_eq(users_hash("good", e.hash, sizeof(e.hash)), 0);
	cr_assert_eq(users_file_write(path, &e, 1), 0);
	cr_assert_eq(users_start(path, 2, &db), 0);
	cr_assert_eq(users_count(db), 1);

	snprintf(r.user, sizeof(r.user), "alice");
	snprintf(r.pass, sizeof(r.pass), "good");
	r.worker = 1;
	cr_assert_eq(users_submit(db, &r), 0);
	got = wait_one(db);
	cr_assert_eq(got, &r);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.pass[0], '\0'); /* wiped */

	snprintf(r.pass, sizeof(r.pass), "bad");
	cr_assert_eq(users_submit(db, &r), 0);
	cr_assert_eq(wait_one(db)->status, -EACCES);

	snprintf(r.user, sizeof(r.user), "nobody");
	snprintf(r.pass, sizeof(r.pass), "good");
	cr_assert_eq(users_submit(db, &r), 0);
	cr_assert_eq(wait_one(db)->status, -EACCES);

	/* a new password takes effect without a restart */
	cr_assert_eq(users_hash("better", e.hash, sizeof(e.hash)), 0);
	cr_assert_eq(users_file_write(path, &e, 1), 0);
	for (int i = 0; i < 50; i++) {
		snprintf(r.user, sizeof(r.user), "alice");
		snprintf(r.pass, sizeof(r.pass), "better");
		cr_assert_eq(users_submit(db, &r), 0);
		if (wait_one(db)->status == 0)
			break;
		usleep(100 * 1000);
	}
	cr_assert_eq(r.status, 0);
	users_stop(db);
	unlink(path);
}
