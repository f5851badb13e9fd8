/*
 * test_spool_fault.c: the spool when things go wrong: torn segment
 * tails, a corrupt record in the middle, write and fdatasync failures (the fault hook), a real
 * full filesystem (a 2 MB tmpfs), and hostile segment files. In every
 * case every request comes back, nothing acknowledged is lost, and
 * service resumes.
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

TestSuite(spool_fault, .fini = tsu_cleanup, .timeout = 60);

/* Writes n messages with one writer into one segment; returns them. */
static struct envelope **fill(struct spool_conf *c, unsigned n, size_t body)
{
	struct envelope **e = calloc(n, sizeof(*e));
	struct spool *sp;

	cr_assert_eq(spool_open(&sp, c, 1, NULL), 0);
	for (unsigned i = 0; i < n; i++) {
		e[i] = tsu_env(sp, 0, i, 2, body);
		cr_assert_eq(tsu_put_msg(sp, e[i]), 0);
	}
	spool_close(sp);
	return e;
}

static void free_envs(struct envelope **e, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		envelope_free(e[i]);
	free(e);
}

/* The first n messages of e are in dir, byte for byte; the others not. */
static void expect_prefix(struct envelope **e, unsigned total, unsigned n)
{
	struct tsu_scan s;

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, n, "%zu messages, want %u", s.nmsgs, n);
	cr_assert_eq(s.nbad, 0);
	for (unsigned i = 0; i < total; i++) {
		const struct envelope *g = tsu_scan_find(&s, e[i]->qid);

		if (i < n)
			tsu_env_eq(e[i], g);
		else
			cr_assert_null(g);
	}
	tsu_scan_free(&s);
}

static off_t file_size(const char *p)
{
	struct stat st;

	cr_assert_eq(stat(p, &st), 0);
	return st.st_size;
}

Test(spool_fault, torn_tail_truncated_mid_record)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	char path[512];
	struct envelope **e;

	tsu_conf(&c, 1);
	e = fill(&c, 20, 1000);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 1);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	off_t sz = file_size(path);

	cr_assert_eq(truncate(path, sz - 300), 0); /* inside message 20 */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_gt(rep.torn_bytes, 700);
	cr_assert_lt(rep.torn_bytes, 1200);
	cr_assert_eq(rep.messages_live, 19);
	spool_close(sp);
	expect_prefix(e, 20, 19);
	/* the tail was cut for good: a second recovery finds nothing */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.bad_records, 0);
	cr_assert_eq(rep.torn_bytes, 0);
	cr_assert_eq(rep.messages_live, 19);
	spool_close(sp);
	free_envs(e, 20);
}

Test(spool_fault, garbage_appended)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	char path[512], junk[777];
	struct envelope **e;
	int fd;

	tsu_conf(&c, 1);
	e = fill(&c, 10, 500);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	off_t sz = file_size(path);

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 37 + 1);
	fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.torn_bytes, sizeof(junk));
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_eq(rep.messages_live, 10);
	spool_close(sp);
	cr_assert_eq(file_size(path), sz);
	expect_prefix(e, 10, 10);
	free_envs(e, 10);
}

Test(spool_fault, bad_crc_in_the_middle_costs_that_record_only)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	char path[512];
	struct envelope **e;
	uint64_t rec = spool_rec_size(0);
	int fd;

	tsu_conf(&c, 1);
	e = fill(&c, 20, 4000);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	off_t sz = file_size(path);

	/* walk the records to the 11th message */
	uint8_t hdr[SPOOL_REC_HDR_LEN];
	struct spool_rec_hdr h;
	uint64_t pos = 0;

	fd = open(path, O_RDWR);
	for (int i = 0; i < 11; i++) {
		cr_assert_eq(pread(fd, hdr, sizeof(hdr), (off_t)pos),
			     (ssize_t)sizeof(hdr));
		spool_rec_hdr_get(hdr, &h);
		cr_assert_eq(h.type, i == 0 ? SPOOL_REC_SEGHDR : SPOOL_REC_MSG);
		pos += spool_rec_size(h.len);
	}
	cr_assert_eq(pread(fd, hdr, sizeof(hdr), (off_t)pos),
		     (ssize_t)sizeof(hdr));
	spool_rec_hdr_get(hdr, &h);
	rec = spool_rec_size(h.len);
	off_t at = (off_t)(pos + rec / 2);
	uint8_t x;

	cr_assert_eq(pread(fd, &x, 1, at), 1);
	x ^= 0x40;
	cr_assert_eq(pwrite(fd, &x, 1, at), 1);
	close(fd);

	/* the records after it are not lost (test_spool_corrupt.c has
	 * the details) */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.corrupt_bytes, rec);
	cr_assert_eq(rep.torn_bytes, 0);
	cr_assert_eq(rep.messages_live, 19);
	spool_close(sp);
	cr_assert_eq(file_size(path), sz, "not truncated");
	struct tsu_scan s;

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, 19);
	cr_assert_eq(s.nbad, 1);
	for (unsigned i = 0; i < 20; i++) {
		const struct envelope *g = tsu_scan_find(&s, e[i]->qid);

		if (i == 10)
			cr_assert_null(g);
		else
			tsu_env_eq(e[i], g);
	}
	tsu_scan_free(&s);
	free_envs(e, 20);
}

Test(spool_fault, hook_enospc_fails_batches_then_resumes)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool_stats st;
	struct spool *sp;
	struct envelope *e[6];

	tsu_conf(&c, 1);
	c.retry_ms = 60000; /* no idle probe clears degraded early */
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	for (int i = 0; i < 6; i++)
		e[i] = tsu_env(sp, 0, (uint32_t)i, 1, 5000);
	cr_assert_eq(tsu_put_msg(sp, e[0]), 0);
	cr_assert_eq(tsu_put_msg(sp, e[1]), 0);
	spool_test_fail_next(sp, 0, -ENOSPC, 2);
	cr_assert_eq(tsu_put_msg(sp, e[2]), -ENOSPC);
	cr_assert(spool_degraded(sp));
	/* a state change is refused like anything else */
	cr_assert_eq(tsu_put_state(sp, e[0]->qid, 0, SPOOL_RCPT_DELIVERED, 0),
		     -ENOSPC);
	cr_assert(spool_degraded(sp));
	spool_get_stats(sp, &st);
	cr_assert_eq(st.last_error, -ENOSPC);
	cr_assert_eq(st.errors, 2);
	/* the failure is over: service resumes in the same segment */
	cr_assert_eq(tsu_put_msg(sp, e[3]), 0);
	cr_assert_not(spool_degraded(sp));
	cr_assert_eq(tsu_put_msg(sp, e[2]), 0); /* the client's retry */
	spool_close(sp);

	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.bad_records, 0, "the torn write was cut back");
	cr_assert_eq(rep.messages_live, 4);
	spool_close(sp);
	struct tsu_scan s;

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, 4);
	for (int i = 0; i < 4; i++)
		tsu_env_eq(e[i], tsu_scan_find(&s, e[i]->qid));
	tsu_scan_free(&s);
	for (int i = 0; i < 6; i++)
		envelope_free(e[i]);
}

Test(spool_fault, hook_fsync_eio_abandons_the_segment)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[4];
	unsigned before;

	tsu_conf(&c, 1);
	c.retry_ms = 60000; /* no idle probe clears degraded early */
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	for (int i = 0; i < 4; i++)
		e[i] = tsu_env(sp, 0, (uint32_t)i, 1, 3000);
	cr_assert_eq(tsu_put_msg(sp, e[0]), 0);
	before = tsu_count_segments(tsu_dir());
	spool_test_fail_fsync_next(sp, 0, -EIO, 1);
	cr_assert_eq(tsu_put_msg(sp, e[1]), -EIO);
	cr_assert(spool_degraded(sp));
	cr_assert_eq(tsu_put_msg(sp, e[2]), 0);
	cr_assert_not(spool_degraded(sp));
	cr_assert_eq(tsu_count_segments(tsu_dir()), before + 1,
		     "a new segment after a failed fdatasync");
	spool_close(sp);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	/* e[1] was written but its fdatasync "failed": it may come back
	 * (at least once), e[0] and e[2] must */
	cr_assert_geq(rep.messages_live, 2);
	spool_close(sp);
	struct tsu_scan s;

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	tsu_env_eq(e[0], tsu_scan_find(&s, e[0]->qid));
	tsu_env_eq(e[2], tsu_scan_find(&s, e[2]->qid));
	tsu_scan_free(&s);
	for (int i = 0; i < 4; i++)
		envelope_free(e[i]);
}

Test(spool_fault, real_enospc_on_a_small_tmpfs)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[64];
	unsigned n = 0, ok = 0;
	char filler[512];
	int rc = 0;

	if (tsu_mount_tmpfs("2m") != 0)
		cr_skip_test("mount tmpfs failed (not root?)");
	tsu_conf(&c, 1);
	c.segment_bytes = 256 << 10;
	c.preallocate = true; /* falls back when it cannot */
	/* leave about 1 MB free */
	snprintf(filler, sizeof(filler), "%s/filler", tsu_dir());
	int fd = open(filler, O_CREAT | O_WRONLY, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(posix_fallocate(fd, 0, 1 << 20), 0);
	close(fd);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	while (n < 64) {
		e[n] = tsu_env(sp, 0, n, 1, 100000);
		rc = tsu_put_msg(sp, e[n]);
		n++;
		if (rc != 0)
			break;
		ok++;
	}
	cr_assert_eq(rc, -ENOSPC, "rc %d after %u messages", rc, ok);
	cr_assert_gt(ok, 3);
	struct spool_stats st;

	spool_get_stats(sp, &st);
	cr_assert_eq(st.last_error, -ENOSPC);
	cr_assert_geq(st.errors, 1);
	/* (degraded may already have flipped back: an idle probe needs
	 * only a page for a new segment; this message needs 25) */
	cr_assert_eq(tsu_put_msg(sp, e[n - 1]), -ENOSPC);
	/* space comes back: the idle probe clears degraded by itself */
	cr_assert_eq(unlink(filler), 0);
	for (int i = 0; i < 200 && spool_degraded(sp); i++)
		usleep(10000);
	cr_assert_not(spool_degraded(sp));
	cr_assert_eq(tsu_put_msg(sp, e[n - 1]), 0);
	ok++;
	spool_close(sp);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, ok);
	cr_assert_eq(rep.bad_records, 0);
	spool_close(sp);
	struct tsu_scan s;

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, ok);
	for (unsigned i = 0; i < n; i++) {
		if (i < ok - 1 || i == n - 1)
			tsu_env_eq(e[i], tsu_scan_find(&s, e[i]->qid));
		envelope_free(e[i]);
	}
	tsu_scan_free(&s);
}

static void write_file(const char *name, const void *p, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tsu_dir(), name);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	if (len)
		cr_assert_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static int count_cb(void *arg, const struct spool_scan_rec *r)
{
	(void)r;
	(*(unsigned *)arg)++;
	return 0;
}

static void hdr_at(uint8_t *p, uint8_t type, uint32_t len)
{
	struct spool_rec_hdr h = { .magic = SPOOL_REC_MAGIC, .type = type,
				   .version = SPOOL_REC_VERSION, .len = len };

	spool_rec_hdr_put(p, &h);
}

Test(spool_fault, hostile_segment_files_never_crash)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	uint8_t buf[8192];
	unsigned cnt;

	/* fsync is what takes time here, not the point: tmpfs if we can */
	(void)tsu_mount_tmpfs("64m");
	tsu_conf(&c, 2);
	srand(42);
	for (int round = 0; round < 25; round++) {
		size_t len = (size_t)rand() % sizeof(buf);

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		/* sometimes a plausible header in front, with a CRC that
		 * matches or a length past the end of the file */
		if (len >= 16 && round % 3 == 0)
			hdr_at(buf, (uint8_t)(1 + round % 3),
			       round % 2 ? 0xfffffff0u : (uint32_t)len);
		if (len >= 16 && round % 5 == 0) {
			uint32_t pl = (uint32_t)(len - 16) & ~7u;
			uint32_t crc;

			hdr_at(buf, SPOOL_REC_MSG, pl);
			crc = spool_crc32c(0, buf, 16);
			crc = spool_crc32c(crc, buf + 16, pl);
			buf[12] = (uint8_t)crc;
			buf[13] = (uint8_t)(crc >> 8);
			buf[14] = (uint8_t)(crc >> 16);
			buf[15] = (uint8_t)(crc >> 24);
		}
		write_file("seg-0-1.dps", buf, len);
		write_file("seg-1-7.dps", buf, len / 2);
		write_file("seg-5-3.dps", "", 0);
		write_file("seg-x-1.dps", buf, len); /* not a segment name */
		cnt = 0;
		cr_assert_eq(spool_scan(tsu_dir(), count_cb, &cnt), 0);
		cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0,
			     "round %d", round);
		cr_assert_eq(rep.messages_live, 0);
		spool_close(sp);
	}
	/* a real segment, mutated: flipped bytes, cut anywhere */
	struct envelope **e;
	char seg[512];
	uint8_t *orig;
	off_t osz;
	int fd;

	tsu_cleanup();
	(void)tsu_mount_tmpfs("64m");
	tsu_conf(&c, 1);
	e = fill(&c, 6, 700);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, seg, sizeof(seg)), 0);
	osz = file_size(seg);
	orig = malloc((size_t)osz);
	fd = open(seg, O_RDONLY);
	cr_assert_eq(read(fd, orig, (size_t)osz), (ssize_t)osz);
	close(fd);
	for (int round = 0; round < 25; round++) {
		uint8_t *m = malloc((size_t)osz);
		size_t len = (size_t)osz;

		memcpy(m, orig, len);
		for (int k = 0; k < 1 + round % 4; k++)
			m[(size_t)rand() % len] ^= (uint8_t)(1 + rand() % 255);
		if (round % 2)
			len = (size_t)rand() % len;
		/* an old segment number: recovery may delete it */
		write_file("seg-0-1.dps", m, len);
		free(m);
		cnt = 0;
		cr_assert_eq(spool_scan(tsu_dir(), count_cb, &cnt), 0);
		cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
		cr_assert_leq(rep.messages_live, 6);
		spool_close(sp);
	}
	free(orig);
	free_envs(e, 6);
	/* the non-segment file is left alone */
	char path[512];

	write_file("seg-x-1.dps", "x", 1);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	spool_close(sp);
	snprintf(path, sizeof(path), "%s/seg-x-1.dps", tsu_dir());
	cr_assert_eq(access(path, F_OK), 0);
}

Test(spool_fault, crash_with_preallocated_segments)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct tsu_scan s;
	char path[512];
	int status;
	pid_t pid;

	tsu_conf(&c, 1);
	c.preallocate = true;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* write, then die without spool_close: the writer threads
		 * vanish as in kill -9 */
		if (spool_open(&sp, &c, 1, NULL) != 0)
			_exit(3);
		for (unsigned i = 0; i < 10; i++) {
			struct envelope *e = tsu_env(sp, 0, i, 2, 3000);

			if (tsu_put_msg(sp, e) != 0)
				_exit(4);
			if (i == 0 && tsu_put_state(sp, e->qid, 0,
						    SPOOL_RCPT_DELIVERED, 0))
				_exit(5);
		}
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child status %d", status);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	cr_assert_eq(file_size(path), (off_t)c.segment_bytes,
		     "preallocated");
	/* zeros after the last record are the end of data, not damage */
	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, 10);
	cr_assert_eq(s.nstates, 1);
	cr_assert_eq(s.nbad, 0);
	tsu_scan_free(&s);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.bad_records, 0);
	cr_assert_eq(rep.torn_bytes, 0);
	cr_assert_eq(rep.messages_live, 10);
	cr_assert_eq(rep.rcpts_live, 19);
	/* a second spool on the same directory is refused */
	struct spool *sp2;

	cr_assert_eq(spool_open(&sp2, &c, 1, NULL), -EBUSY);
	spool_close(sp);
	cr_assert_lt(file_size(path), (off_t)c.segment_bytes,
		     "the unused zeros were cut");
}
