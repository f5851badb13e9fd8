/*
 * test_spool_corrupt.c: a corrupt record in the middle of a segment (bit
 * rot, a bad sector) costs that record only: recovery and spool_scan skip
 * to the next record that verifies, count the region exactly, recover
 * everything after it byte for byte and leave the file as it is; only a
 * bad record with nothing valid after it is a torn tail and cut. A fake
 * magic inside a body never brings garbage back (the CRC must verify).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/spool.h"
#include "store/spool_record.h"
#include "tests/unit/test_spool_util.h"

TestSuite(spool_corrupt, .fini = tsu_cleanup, .timeout = 60);

/* ---- helpers ---- */

/* One writer, one segment: n messages with 2 recipients each, written
 * and closed cleanly (so the segment ends with a floor record). */
static struct envelope **fill(struct spool_conf *c, unsigned n, size_t body)
{
	struct envelope **e = calloc(n, sizeof(*e));
	struct spool *sp;

	tsu_conf(c, 1);
	cr_assert_eq(spool_open(&sp, c, 1, NULL), 0);
	for (unsigned i = 0; i < n; i++) {
		e[i] = tsu_env(sp, 0, i, 2, body + i * 8 + i % 5);
		cr_assert_eq(tsu_put_msg(sp, e[i]), 0);
	}
	spool_close(sp);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 1);
	return e;
}

static void free_envs(struct envelope **e, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		envelope_free(e[i]);
	free(e);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	p = malloc(*len ? *len : 1);
	cr_assert_eq(pread(fd, p, *len, 0), (ssize_t)*len);
	close(fd);
	return p;
}

static off_t file_size(const char *p)
{
	struct stat st;

	cr_assert_eq(stat(p, &st), 0);
	return st.st_size;
}

/* The records of an intact segment: offset, size on disk, type. */
struct rec {
	uint64_t off, size;
	uint8_t type;
};

static unsigned walk(const char *path, struct rec *v, unsigned max)
{
	size_t len;
	uint8_t *p = slurp(path, &len);
	uint64_t off = 0;
	unsigned n = 0;

	while (off + SPOOL_REC_HDR_LEN <= len && p[off] != 0) {
		struct spool_rec_hdr h;

		spool_rec_hdr_get(p + off, &h);
		cr_assert_eq(spool_rec_hdr_check(&h), 0, "record at %lu",
			     (unsigned long)off);
		cr_assert_lt(n, max);
		v[n].off = off;
		v[n].size = spool_rec_size(h.len);
		v[n].type = h.type;
		off += v[n++].size;
	}
	free(p);
	return n;
}

/* The index in v of message record i (v[0] is the segment header). */
static const struct rec *msg_rec(const struct rec *v, unsigned n, unsigned i)
{
	for (unsigned k = 0; k < n; k++)
		if (v[k].type == SPOOL_REC_MSG && i-- == 0)
			return &v[k];
	cr_assert_fail("no message record %u", i);
	return NULL;
}

static void xor_at(const char *path, uint64_t at, uint8_t x)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, (off_t)at), 1);
	b ^= x;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1);
	close(fd);
}

static void put32_at(const char *path, uint64_t at, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };
	int fd = open(path, O_RDWR);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, b, 4, (off_t)at), 4);
	close(fd);
}

/* What spool_scan reports: the messages (tsu_scan) and the bad ones. */
struct bad {
	uint64_t off, len;
	bool torn;
};
struct bads {
	struct bad v[16];
	unsigned n;
	char seg[64];
};

static int bad_cb(void *arg, const struct spool_scan_rec *r)
{
	struct bads *b = arg;

	if (!r->bad)
		return 0;
	cr_assert_lt(b->n, 16);
	cr_assert_not_null(r->why);
	cr_assert_str_eq(r->qid, "");
	b->v[b->n++] = (struct bad){ r->offset, r->length, r->torn };
	snprintf(b->seg, sizeof(b->seg), "%s", r->segment);
	return 0;
}

static void scan_bads(struct bads *b)
{
	memset(b, 0, sizeof(*b));
	cr_assert_eq(spool_scan(tsu_dir(), bad_cb, b), 0);
}

/* Exactly the messages of e not in lost[] are in the spool directory,
 * byte for byte. */
static void expect_all_but(struct envelope **e, unsigned n,
			   const unsigned *lost, unsigned nlost)
{
	struct tsu_scan s;

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, n - nlost, "%zu messages, want %u", s.nmsgs,
		     n - nlost);
	for (unsigned i = 0; i < n; i++) {
		const struct envelope *g = tsu_scan_find(&s, e[i]->qid);
		bool gone = false;

		for (unsigned k = 0; k < nlost; k++)
			gone |= lost[k] == i;
		if (gone)
			cr_assert_null(g, "message %u came back", i);
		else
			tsu_env_eq(e[i], g);
	}
	tsu_scan_free(&s);
}

/* ---- tests ---- */

Test(spool_corrupt, one_bad_byte_in_the_middle_costs_one_message)
{
	enum { N = 15, M = 5 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct rec v[64];
	struct bads b;
	char path[512];
	struct envelope **e = fill(&c, N, 3000), *more[M];
	unsigned nrec, lost = N / 2;
	size_t len0, len1;

	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	nrec = walk(path, v, 64);
	cr_assert_eq(nrec, N + 2); /* segment header, N messages, floor */
	const struct rec *r = msg_rec(v, nrec, lost);

	xor_at(path, r->off + r->size / 2, 0x10); /* inside the body */
	uint8_t *before = slurp(path, &len0);

	/* the offline scan: one bad region, exactly that record */
	scan_bads(&b);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.v[0].off, r->off);
	cr_assert_eq(b.v[0].len, r->size);
	cr_assert_not(b.v[0].torn);
	expect_all_but(e, N, &lost, 1);

	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N - 1);
	cr_assert_eq(rep.rcpts_live, 2 * (N - 1));
	cr_assert_eq(rep.records, N + 1); /* N - 1 messages, 2 headers */
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.corrupt_bytes, r->size);
	cr_assert_eq(rep.torn_bytes, 0);
	/* not truncated, not changed */
	uint8_t *after = slurp(path, &len1);

	cr_assert_eq(len1, len0);
	cr_assert(memcmp(before, after, len0) == 0);
	free(after);
	/* appends go to a new segment; the old one is never written */
	for (unsigned i = 0; i < M; i++) {
		more[i] = tsu_env(sp, 0, 100 + i, 1, 500);
		cr_assert_eq(tsu_put_msg(sp, more[i]), 0);
	}
	spool_close(sp);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 2);
	after = slurp(path, &len1);
	cr_assert_eq(len1, len0);
	cr_assert(memcmp(before, after, len0) == 0);
	free(after);

	/* a second recovery: the same region, the same messages, and the
	 * new ones */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N - 1 + M);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.corrupt_bytes, r->size);
	cr_assert_eq(rep.torn_bytes, 0);
	/* deliver everything: the damaged segment then goes like any
	 * other dead one */
	for (unsigned i = 0; i < N; i++)
		for (uint32_t k = 0; i != lost && k < 2; k++)
			cr_assert_eq(tsu_put_state(sp, e[i]->qid, k,
						   SPOOL_RCPT_DELIVERED, 0), 0);
	/* the lost message is not live: nothing to change */
	cr_assert_eq(tsu_put_state(sp, e[lost]->qid, 0,
				   SPOOL_RCPT_DELIVERED, 0), -ENOENT);
	for (unsigned i = 0; i < M; i++)
		cr_assert_eq(tsu_put_state(sp, more[i]->qid, 0,
					   SPOOL_RCPT_BOUNCED, 0), 0);
	spool_close(sp);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, 0);
	cr_assert_geq(rep.segments_deleted, 1);
	spool_close(sp);
	cr_assert_eq(access(path, F_OK), -1, "the damaged segment is gone");
	cr_assert_eq(errno, ENOENT);
	free(before);
	for (unsigned i = 0; i < M; i++)
		envelope_free(more[i]);
	free_envs(e, N);
}

Test(spool_corrupt, bad_length_fields_skip_exactly_one_record)
{
	enum { N = 9 };
	/* past the end of the file; over the largest payload (header);
	 * zero, 3 bytes short and a state record's length (CRC) */
	enum { SHORT = 1 };
	const uint32_t lens[] = { (1u << 30) - 64, 0xfffffff0u, 0, SHORT,
				  SPOOL_STATE_PAYLOAD_LEN };

	for (unsigned t = 0; t < sizeof(lens) / sizeof(lens[0]); t++) {
		struct spool_conf c;
		struct spool_recovery rep;
		struct spool *sp;
		struct rec v[32];
		struct bads b;
		char path[512];
		struct envelope **e = fill(&c, N, 2000);
		unsigned lost = 1 + t % (N - 2);

		cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path,
					      sizeof(path)), 0);
		unsigned nrec = walk(path, v, 32);
		const struct rec *r = msg_rec(v, nrec, lost);
		off_t sz = file_size(path);
		uint32_t len = lens[t] == SHORT ? (uint32_t)(r->size - 16 - 3)
					    : lens[t];

		put32_at(path, r->off + 8, len);
		scan_bads(&b);
		cr_assert_eq(b.n, 1, "case %u", t);
		cr_assert_eq(b.v[0].off, r->off);
		cr_assert_eq(b.v[0].len, r->size);
		cr_assert_not(b.v[0].torn);
		expect_all_but(e, N, &lost, 1);
		cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
		cr_assert_eq(rep.messages_live, N - 1, "case %u", t);
		cr_assert_eq(rep.bad_records, 1);
		cr_assert_eq(rep.corrupt_regions, 1);
		cr_assert_eq(rep.corrupt_bytes, r->size);
		cr_assert_eq(rep.torn_bytes, 0);
		spool_close(sp);
		cr_assert_eq(file_size(path), sz);
		expect_all_but(e, N, &lost, 1);
		free_envs(e, N);
		tsu_cleanup();
	}
}

Test(spool_corrupt, two_regions_and_adjacent_records_merge)
{
	enum { N = 16 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct rec v[64];
	struct bads b;
	char path[512];
	struct envelope **e = fill(&c, N, 1500);
	const unsigned lost[] = { 3, 9, 10 };

	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	unsigned nrec = walk(path, v, 64);
	const struct rec *r3 = msg_rec(v, nrec, 3), *r9 = msg_rec(v, nrec, 9),
			 *r10 = msg_rec(v, nrec, 10);

	xor_at(path, r3->off + 13, 0x01);           /* the CRC field */
	xor_at(path, r9->off, 0xff);                /* the magic */
	xor_at(path, r10->off + r10->size - 9, 0x80); /* the last body byte */
	scan_bads(&b);
	cr_assert_eq(b.n, 2);
	cr_assert_eq(b.v[0].off, r3->off);
	cr_assert_eq(b.v[0].len, r3->size);
	cr_assert_eq(b.v[1].off, r9->off);
	cr_assert_eq(b.v[1].len, r9->size + r10->size);
	cr_assert_not(b.v[0].torn || b.v[1].torn);
	expect_all_but(e, N, lost, 3);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N - 3);
	cr_assert_eq(rep.records, N - 3 + 2);
	cr_assert_eq(rep.bad_records, 2);
	cr_assert_eq(rep.corrupt_regions, 2);
	cr_assert_eq(rep.corrupt_bytes, r3->size + r9->size + r10->size);
	cr_assert_eq(rep.torn_bytes, 0);
	spool_close(sp);
	expect_all_but(e, N, lost, 3);
	free_envs(e, N);
}

Test(spool_corrupt, a_bad_last_record_is_a_torn_tail)
{
	enum { N = 8 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct rec v[32];
	struct bads b;
	char path[512];
	struct envelope **e = fill(&c, N, 2500);
	unsigned lost = N - 1;

	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	unsigned nrec = walk(path, v, 32);
	const struct rec *last = msg_rec(v, nrec, N - 1);

	/* as after a crash: no floor record after the last message */
	cr_assert_eq(v[nrec - 1].type, SPOOL_REC_SEGHDR);
	cr_assert_eq(truncate(path, (off_t)v[nrec - 1].off), 0);
	xor_at(path, last->off + 100, 0x04);
	scan_bads(&b);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.v[0].off, last->off);
	cr_assert_eq(b.v[0].len, last->size);
	cr_assert(b.v[0].torn);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N - 1);
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_eq(rep.corrupt_regions, 0);
	cr_assert_eq(rep.corrupt_bytes, 0);
	cr_assert_eq(rep.torn_bytes, last->size);
	spool_close(sp);
	cr_assert_eq(file_size(path), (off_t)last->off, "cut there");
	expect_all_but(e, N, &lost, 1);
	/* cut for good */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.bad_records, 0);
	cr_assert_eq(rep.torn_bytes, 0);
	cr_assert_eq(rep.messages_live, N - 1);
	spool_close(sp);
	free_envs(e, N);
	tsu_cleanup();

	/* a bad floor record (the last one of a cleanly closed segment)
	 * is a torn tail too; no message is lost */
	e = fill(&c, N, 2500);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	nrec = walk(path, v, 32);
	xor_at(path, v[nrec - 1].off + 20, 0x01);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N);
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_eq(rep.corrupt_regions, 0);
	cr_assert_eq(rep.torn_bytes, v[nrec - 1].size);
	spool_close(sp);
	cr_assert_eq(file_size(path), (off_t)v[nrec - 1].off);
	expect_all_but(e, N, NULL, 0);
	free_envs(e, N);
}

Test(spool_corrupt, zeros_after_the_data_are_the_end_of_it)
{
	enum { N = 6 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct rec v[32];
	struct bads b;
	char path[512];
	struct envelope **e = fill(&c, N, 1000);
	unsigned lost = 2;

	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	unsigned nrec = walk(path, v, 32);
	off_t sz = file_size(path);
	const struct rec *r = msg_rec(v, nrec, lost);

	/* preallocated space after the data: not damage */
	cr_assert_eq(truncate(path, sz + (256 << 10)), 0);
	scan_bads(&b);
	cr_assert_eq(b.n, 0);
	expect_all_but(e, N, NULL, 0);
	/* a corrupt region before such zeros is still skipped, and the
	 * zeros are still the end of the data, not a torn tail */
	xor_at(path, r->off + 40, 0x20);
	scan_bads(&b);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.v[0].len, r->size);
	cr_assert_not(b.v[0].torn);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N - 1);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.corrupt_bytes, r->size);
	cr_assert_eq(rep.torn_bytes, 0);
	spool_close(sp);
	cr_assert_eq(file_size(path), sz, "the unused zeros were cut");
	expect_all_but(e, N, &lost, 1);

	/* half a record, then zeros: a torn tail of that half only */
	cr_assert_eq(truncate(path, sz + 1000), 0);
	{
		uint8_t half[300];
		int fd = open(path, O_RDWR);

		memset(half, 0x5a, sizeof(half));
		memcpy(half, "DPSR", 4);
		cr_assert_eq(pwrite(fd, half, sizeof(half), sz), 300);
		close(fd);
	}
	scan_bads(&b);
	cr_assert_eq(b.n, 2);
	cr_assert_eq(b.v[1].off, (uint64_t)sz);
	cr_assert_eq(b.v[1].len, 304); /* rounded up to the alignment */
	cr_assert(b.v[1].torn);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N - 1);
	cr_assert_eq(rep.bad_records, 2);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.torn_bytes, 304);
	spool_close(sp);
	cr_assert_eq(file_size(path), sz);
	free_envs(e, N);
}

/* A body full of record headers that look right but whose CRC is not. */
static void fake_body(struct envelope *e, unsigned shift, size_t len)
{
	uint8_t *b = calloc(1, len);

	for (size_t i = shift; i + 16 <= len; i += 16) {
		struct spool_rec_hdr h = { .magic = SPOOL_REC_MAGIC,
					   .version = SPOOL_REC_VERSION };

		switch ((i / 16) % 3) {
		case 0: /* a small message record that fits */
			h.type = SPOOL_REC_MSG;
			h.len = 64;
			break;
		case 1: /* a state record */
			h.type = SPOOL_REC_STATE;
			h.len = SPOOL_STATE_PAYLOAD_LEN;
			break;
		default: /* one as long as the rest of the file */
			h.type = SPOOL_REC_MSG;
			h.len = (uint32_t)(len - i - 16);
			break;
		}
		h.crc = 0x12345678u + (uint32_t)i;
		spool_rec_hdr_put(b + i, &h);
	}
	cr_assert_eq(envelope_body_append(e, b, len), 0);
	e->declared_size = len;
	free(b);
}

Test(spool_corrupt, a_fake_magic_in_a_body_brings_nothing_back)
{
	enum { N = 10 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[N];
	struct rec v[32];
	struct bads b;
	char path[512];
	size_t len;

	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	for (unsigned i = 0; i < N; i++) {
		e[i] = tsu_env(sp, 0, i, 1, 0);
		if (i >= 1 && i <= 8)
			fake_body(e[i], i - 1, 4096); /* every shift */
		else
			cr_assert_eq(envelope_body_append(e[i], "hello\r\n",
							  7), 0);
		cr_assert_eq(tsu_put_msg(sp, e[i]), 0);
	}
	spool_close(sp);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	unsigned nrec = walk(path, v, 32);
	uint8_t *p = slurp(path, &len);
	unsigned fakes = 0;

	/* the test means something: fake magics on the alignment, inside
	 * the bodies */
	for (uint64_t off = 0; off + 16 <= len; off += SPOOL_REC_ALIGN) {
		bool real = false;

		for (unsigned k = 0; k < nrec; k++)
			real |= v[k].off == off;
		fakes += !real && memcmp(p + off, "DPSR", 4) == 0;
	}
	free(p);
	cr_assert_gt(fakes, 100, "%u fake headers on the alignment", fakes);

	/* break the magic of every message with fake headers: one region
	 * from message 1 to message 9 */
	const unsigned lost[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	uint64_t span = 0;

	for (unsigned i = 1; i <= 8; i++) {
		const struct rec *r = msg_rec(v, nrec, i);

		xor_at(path, r->off + 1, 0x01);
		span += r->size;
	}
	scan_bads(&b);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.v[0].off, msg_rec(v, nrec, 1)->off);
	cr_assert_eq(b.v[0].len, span);
	expect_all_but(e, N, lost, 8);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, 2);
	cr_assert_eq(rep.records, 4);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.corrupt_bytes, span);
	cr_assert_eq(rep.torn_bytes, 0);
	spool_close(sp);
	for (unsigned i = 0; i < N; i++)
		envelope_free(e[i]);
}

Test(spool_corrupt, a_fake_magic_in_a_torn_tail_is_not_a_record)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[2];
	struct rec v[8];
	struct bads b;
	char path[512];

	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	e[0] = tsu_env(sp, 0, 1, 1, 100);
	e[1] = tsu_env(sp, 0, 2, 1, 0);
	fake_body(e[1], 0, 8192);
	fake_body(e[1], 4, 8192);
	cr_assert_eq(tsu_put_msg(sp, e[0]), 0);
	cr_assert_eq(tsu_put_msg(sp, e[1]), 0);
	spool_close(sp);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	unsigned nrec = walk(path, v, 8);

	cr_assert_eq(nrec, 4);
	/* no floor, and the last message torn in its middle: everything
	 * after its start is a tail full of fake headers */
	cr_assert_eq(truncate(path, (off_t)(v[2].off + v[2].size - 1000)), 0);
	scan_bads(&b);
	cr_assert_eq(b.n, 1);
	cr_assert(b.v[0].torn);
	cr_assert_eq(b.v[0].off, v[2].off);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, 1);
	cr_assert_eq(rep.corrupt_regions, 0);
	cr_assert_eq(rep.bad_records, 1);
	cr_assert_gt(rep.torn_bytes, 15000);
	spool_close(sp);
	cr_assert_eq(file_size(path), (off_t)v[2].off);
	envelope_free(e[0]);
	envelope_free(e[1]);
}

Test(spool_corrupt, a_corrupt_state_record_costs_that_state_only)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[3];
	struct rec v[16];
	char path[512];

	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	for (unsigned i = 0; i < 3; i++) {
		e[i] = tsu_env(sp, 0, i, 2, 300);
		cr_assert_eq(tsu_put_msg(sp, e[i]), 0);
	}
	cr_assert_eq(tsu_put_state(sp, e[0]->qid, 0, SPOOL_RCPT_DELIVERED, 0),
		     0);
	cr_assert_eq(tsu_put_state(sp, e[1]->qid, 1, SPOOL_RCPT_BOUNCED, 0),
		     0);
	struct envelope *late = tsu_env(sp, 0, 9, 1, 300);

	cr_assert_eq(tsu_put_msg(sp, late), 0);
	spool_close(sp);
	cr_assert_eq(tsu_segment_path(tsu_dir(), 0, path, sizeof(path)), 0);
	unsigned nrec = walk(path, v, 16);

	cr_assert_eq(nrec, 8);
	cr_assert_eq(v[4].type, SPOOL_REC_STATE);
	xor_at(path, v[4].off + 20, 0x02); /* e[0]'s delivery */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	/* e[0] has both recipients pending again (redelivery, never
	 * loss); e[1] one; the message after the damage is there */
	cr_assert_eq(rep.messages_live, 4);
	cr_assert_eq(rep.rcpts_live, 2 + 1 + 2 + 1);
	cr_assert_eq(rep.state_records, 1);
	cr_assert_eq(rep.corrupt_regions, 1);
	cr_assert_eq(rep.corrupt_bytes, v[4].size);
	spool_close(sp);
	for (unsigned i = 0; i < 3; i++)
		envelope_free(e[i]);
	envelope_free(late);
}
