/*
 * test_spool.c: the spool's core promises: records round-trip byte for
 * byte, group commit answers every request, recovery brings back every
 * acknowledged message (through spool_scan and through a reopen), state
 * records replay, dead segments go, queue IDs never repeat, and an idle
 * writer sleeps. No EAL anywhere.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/spool.h"
#include "store/spool_qid.h"
#include "store/spool_record.h"
#include "tests/unit/test_spool_util.h"

TestSuite(spool, .fini = tsu_cleanup, .timeout = 60);

Test(spool, crc32c_is_standard_and_chains)
{
	const char *v = "123456789";
	uint32_t c = spool_crc32c(0, v, 9);

	cr_assert_eq(c, 0xE3069283u, "crc32c(123456789) = %08x", c);
	cr_assert_eq(spool_crc32c(spool_crc32c(0, v, 4), v + 4, 5), c);
	cr_assert_eq(spool_crc32c(0, "", 0), 0);
}

Test(spool, record_roundtrip_and_every_truncation_refused)
{
	struct spool_conf c;
	struct spool *sp;
	struct spool_buf b = { 0 };
	struct spool_msg_info info;
	size_t off, head;
	uint64_t size;

	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	struct envelope *e = tsu_env(sp, 0, 7, 5, 3000);

	cr_assert_eq(spool_rec_encode_msg(&b, e, &off, &head, &size), 0);
	/* flatten: head + body (the padding stays zero) */
	uint8_t *rec = calloc(1, size);

	memcpy(rec, b.data + off, head);
	memcpy(rec + head, e->body, e->body_len);
	struct spool_rec_hdr h;

	spool_rec_hdr_get(rec, &h);
	cr_assert_eq(spool_rec_hdr_check(&h), 0);
	cr_assert_eq(spool_rec_size(h.len), size);
	cr_assert(spool_rec_crc_ok(rec, rec + SPOOL_REC_HDR_LEN, h.len));

	struct envelope *d = envelope_new();

	cr_assert_eq(spool_rec_decode_msg(rec + SPOOL_REC_HDR_LEN, h.len,
					  &info, d), 0);
	tsu_env_eq(e, d);
	envelope_free(d);
	/* every shorter payload is refused, never read past */
	for (uint32_t n = 0; n < h.len; n += n < 400 ? 1 : 97) {
		uint8_t *cut = malloc(n ? n : 1);

		memcpy(cut, rec + SPOOL_REC_HDR_LEN, n);
		d = envelope_new();
		cr_assert_eq(spool_rec_decode_msg(cut, n, &info, d), -EBADMSG,
			     "length %u", n);
		envelope_free(d);
		free(cut);
	}
	/* random byte changes: CRC catches them; the decoder, given the
	 * changed payload anyway, never crashes */
	srand(1);
	for (int i = 0; i < 2000; i++) {
		uint8_t *m = malloc(h.len);
		uint32_t at = (uint32_t)rand() % (h.len < 600 ? h.len : 600);

		memcpy(m, rec + SPOOL_REC_HDR_LEN, h.len);
		m[at] ^= (uint8_t)(1 + rand() % 255);
		cr_assert_not(spool_rec_crc_ok(rec, m, h.len));
		d = envelope_new();
		(void)spool_rec_decode_msg(m, h.len, &info, d);
		envelope_free(d);
		free(m);
	}
	free(rec);
	spool_buf_free(&b);
	envelope_free(e);
	spool_close(sp);
}

Test(spool, write_complete_scan_reopen_byte_exact)
{
	enum { N = 60 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[N];
	struct spool_req req[N], *rp[N];
	struct spool_stats st;
	struct tsu_scan s;

	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, 0);
	for (int i = 0; i < N; i++) {
		e[i] = tsu_env(sp, 0, (uint32_t)i, 1 + (uint32_t)i % 4,
			       (size_t)(i * 97) % 20000);
		req[i] = (struct spool_req){ .type = SPOOL_REQ_MSG,
					     .env = e[i] };
		rp[i] = &req[i];
	}
	cr_assert_eq(tsu_run(sp, 0, rp, N), N);
	spool_get_stats(sp, &st);
	cr_assert_eq(st.records, N);
	cr_assert_eq(st.msgs_live, N);
	cr_assert_leq(st.batches, N);
	cr_assert_geq(st.fsyncs, st.batches);
	cr_assert_eq(st.errors, 0);
	cr_assert_not(spool_degraded(sp));
	spool_close(sp);

	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, N);
	cr_assert_eq(s.nbad, 0);
	for (int i = 0; i < N; i++) {
		const struct envelope *g = tsu_scan_find(&s, e[i]->qid);

		cr_assert_not_null(g, "%s missing", e[i]->qid);
		tsu_env_eq(e[i], g);
	}
	tsu_scan_free(&s);

	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N);
	cr_assert_eq(rep.torn_bytes, 0);
	cr_assert_eq(rep.bad_records, 0);
	spool_get_stats(sp, &st);
	cr_assert_eq(st.msgs_live, N);
	spool_close(sp);
	/* and again: the reopen lost nothing */
	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, N);
	for (int i = 0; i < N; i++) {
		tsu_env_eq(e[i], tsu_scan_find(&s, e[i]->qid));
		envelope_free(e[i]);
	}
	tsu_scan_free(&s);
}

/* ---- bodies read back from their records ---- */

struct at_scan {
	const char *qid;
	struct env_spool_at at;
};

static int at_cb(void *arg, const struct spool_scan_rec *r)
{
	struct at_scan *a = arg;

	if (!r->bad && r->type == SPOOL_REQ_MSG && strcmp(r->qid, a->qid) == 0)
		a->at = r->env->spool_at;
	return 0;
}

/* Drops e's body (as the queue manager does) and reads it back. */
static void reread(struct spool *sp, struct envelope *e)
{
	uint8_t *keep = e->body;

	e->body = NULL;
	e->body_cap = 0;
	cr_assert_eq(spool_read_body(sp, e), 0, "%s", e->qid);
	cr_assert(e->body_len == 0 || memcmp(e->body, keep, e->body_len) == 0);
	free(keep);
}

Test(spool, bodies_read_back_from_their_records)
{
	enum { N = 40 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool *sp;
	struct envelope *e[N], *x;
	struct spool_req req[N], *rp[N];
	struct at_scan a;
	char path[4200];
	FILE *f;

	tsu_conf(&c, 2);
	c.segment_bytes = 256 * 1024; /* several segments */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	for (int i = 0; i < N; i++) {
		e[i] = tsu_env(sp, 0, (uint32_t)i, 1 + (uint32_t)i % 3,
			       i == 0 ? 0 : (size_t)(i * 7919) % 70000);
		cr_assert_not(e[i]->spool_at.set);
		req[i] = (struct spool_req){ .type = SPOOL_REQ_MSG,
					     .env = e[i] };
		rp[i] = &req[i];
	}
	cr_assert_eq(tsu_run(sp, 0, rp, N), N);
	for (int i = 0; i < N; i++) {
		cr_assert(e[i]->spool_at.set);
		reread(sp, e[i]);
	}
	/* a body still there, no location, another message's record */
	cr_assert_eq(spool_read_body(sp, e[1]), -EINVAL);
	x = envelope_dup(e[2]);
	free(x->body);
	x->body = NULL;
	x->body_cap = 0;
	x->spool_at.set = false;
	cr_assert_eq(spool_read_body(sp, x), -ENOENT);
	x->spool_at = e[3]->spool_at;
	cr_assert_eq(spool_read_body(sp, x), -EBADMSG);
	x->spool_at = e[2]->spool_at;
	x->spool_at.seq += 1000;
	cr_assert_eq(spool_read_body(sp, x), -ENOENT);
	spool_close(sp);

	/* after a restart: where spool_scan says it is */
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, N);
	for (int i = 0; i < N; i += 7) {
		a = (struct at_scan){ .qid = e[i]->qid };
		cr_assert_eq(spool_scan(tsu_dir(), at_cb, &a), 0);
		cr_assert(a.at.set);
		cr_assert_eq(a.at.off, e[i]->spool_at.off);
		cr_assert_eq(a.at.seq, e[i]->spool_at.seq);
		cr_assert_eq(a.at.writer, e[i]->spool_at.writer);
		reread(sp, e[i]);
	}
	/* a flipped byte in a body on disk: refused, never returned */
	snprintf(path, sizeof(path), "%s/seg-%u-%llu.dps", tsu_dir(),
		 e[5]->spool_at.writer,
		 (unsigned long long)e[5]->spool_at.seq);
	f = fopen(path, "r+b");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fseek(f, (long)(e[5]->spool_at.off +
				     SPOOL_REC_HDR_LEN + 200), SEEK_SET), 0);
	cr_assert_eq(fputc(0x5a ^ e[5]->body[100], f), 0x5a ^ e[5]->body[100]);
	fclose(f);
	free(x->body);
	envelope_free(x);
	x = envelope_dup(e[5]);
	free(x->body);
	x->body = NULL;
	x->body_cap = 0;
	cr_assert_eq(spool_read_body(sp, x), -EBADMSG);
	cr_assert_null(x->body);
	envelope_free(x);
	spool_close(sp);
	for (int i = 0; i < N; i++)
		envelope_free(e[i]);
}

/* ---- many producers, several writers, segment rolls ---- */

struct prod {
	struct spool *sp;
	unsigned worker, n, ok;
	size_t body;
	struct envelope **e;
};

static void *producer(void *arg)
{
	struct prod *p = arg;
	struct spool_req *req = calloc(p->n, sizeof(*req));
	struct spool_req **rp = calloc(p->n, sizeof(*rp));

	p->e = calloc(p->n, sizeof(*p->e));
	for (unsigned i = 0; i < p->n; i++) {
		p->e[i] = tsu_env(p->sp, p->worker, p->worker * 100000 + i, 2,
				  p->body + (i % 7) * 333);
		req[i] = (struct spool_req){ .type = SPOOL_REQ_MSG,
					     .env = p->e[i] };
		rp[i] = &req[i];
	}
	p->ok = tsu_run(p->sp, p->worker, rp, p->n);
	free(req);
	free(rp);
	return NULL;
}

Test(spool, many_producers_writers_and_rolls)
{
	enum { W = 4, P = 4, N = 400 };
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool_stats st;
	struct spool *sp;
	struct prod p[P];
	pthread_t th[P];
	struct tsu_scan s;

	tsu_conf(&c, W);
	c.segment_bytes = 256 << 10; /* many rolls */
	c.ring_size = 64;            /* and full rings */
	cr_assert_eq(spool_open(&sp, &c, P, NULL), 0);
	for (unsigned i = 0; i < P; i++) {
		p[i] = (struct prod){ .sp = sp, .worker = i, .n = N,
				      .body = 2000 };
		pthread_create(&th[i], NULL, producer, &p[i]);
	}
	for (unsigned i = 0; i < P; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(p[i].ok, N);
	}
	spool_get_stats(sp, &st);
	cr_assert_eq(st.records, P * N);
	cr_assert_eq(st.msgs_live, P * N);
	cr_assert_gt(st.segments, W + 2, "segments %lu", st.segments);
	cr_assert_lt(st.batches, P * N, "no batching at all?");
	spool_close(sp);

	cr_assert_eq(spool_open(&sp, &c, P, &rep), 0);
	cr_assert_eq(rep.messages_live, P * N);
	cr_assert_eq(rep.rcpts_live, P * N * 2);
	cr_assert_eq(rep.bad_records, 0);
	spool_close(sp);
	cr_assert_eq(tsu_scan(tsu_dir(), &s), 0);
	cr_assert_eq(s.nmsgs, P * N);
	for (unsigned i = 0; i < P; i++)
		for (unsigned j = 0; j < N; j++) {
			tsu_env_eq(p[i].e[j], tsu_scan_find(&s, p[i].e[j]->qid));
			envelope_free(p[i].e[j]);
		}
	for (unsigned i = 0; i < P; i++)
		free(p[i].e);
	tsu_scan_free(&s);
}

/* ---- state records ---- */

/* Dead segments are deleted right after the batch is answered. */
static uint64_t segments_soon(struct spool *sp, uint64_t want)
{
	struct spool_stats st;

	for (int i = 0; i < 1000; i++) {
		spool_get_stats(sp, &st);
		if (st.segments == want)
			break;
		usleep(1000);
	}
	return st.segments;
}

struct live_seen {
	char qid[4][ENV_QID_LEN + 1];
	uint8_t state[4][4];
	uint64_t next[4][4];
	unsigned n;
};

static int live_cb(void *arg, const char *qid, uint32_t nrcpt,
		   const uint8_t *state, const uint64_t *next_try_s)
{
	struct live_seen *ls = arg;

	cr_assert_lt(ls->n, 4);
	cr_assert_leq(nrcpt, 4);
	strcpy(ls->qid[ls->n], qid);
	memcpy(ls->state[ls->n], state, nrcpt);
	memcpy(ls->next[ls->n], next_try_s, nrcpt * sizeof(uint64_t));
	ls->n++;
	return 0;
}

Test(spool, state_records_replay_and_dead_segments_go)
{
	struct spool_conf c;
	struct spool_recovery rep;
	struct spool_stats st;
	struct spool *sp;
	struct live_seen ls = { 0 };

	tsu_conf(&c, 1);
	c.segment_bytes = 8192; /* every message rolls the segment */
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	struct envelope *a = tsu_env(sp, 0, 1, 3, 9000);
	struct envelope *b = tsu_env(sp, 0, 2, 2, 9000);

	cr_assert_eq(tsu_put_msg(sp, a), 0);
	cr_assert_eq(tsu_put_msg(sp, b), 0);
	/* refused changes */
	cr_assert_eq(tsu_put_state(sp, "00000000000000", 0, 1, 0), -ENOENT);
	cr_assert_eq(tsu_put_state(sp, a->qid, 3, 1, 0), -EINVAL);
	cr_assert_eq(tsu_put_state(sp, a->qid, 0, 0, 0), -EINVAL);
	cr_assert_eq(tsu_put_msg(sp, a), -EEXIST);
	/* a: delivered, deferred twice, bounced... */
	cr_assert_eq(tsu_put_state(sp, a->qid, 0, SPOOL_RCPT_DELIVERED, 0), 0);
	cr_assert_eq(tsu_put_state(sp, a->qid, 0, SPOOL_RCPT_BOUNCED, 0),
		     -EALREADY);
	cr_assert_eq(tsu_put_state(sp, a->qid, 1, SPOOL_RCPT_DEFERRED, 100), 0);
	cr_assert_eq(tsu_put_state(sp, a->qid, 1, SPOOL_RCPT_DEFERRED, 200), 0);
	/* b: finished, its segment becomes dead */
	cr_assert_eq(tsu_put_state(sp, b->qid, 0, SPOOL_RCPT_DELIVERED, 0), 0);
	cr_assert_eq(tsu_put_state(sp, b->qid, 1, SPOOL_RCPT_BOUNCED, 0), 0);
	spool_get_stats(sp, &st);
	cr_assert_eq(st.msgs_live, 1);
	/* b's segment went at once; a's and the current one stay */
	cr_assert_eq(segments_soon(sp, 2), 2);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 2);
	spool_close(sp);

	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, 1);
	cr_assert_eq(rep.rcpts_live, 2);
	cr_assert_eq(rep.state_records, 5);
	cr_assert_eq(rep.segments_deleted, 0);
	cr_assert_eq(spool_live_foreach(sp, live_cb, &ls), 0);
	cr_assert_eq(ls.n, 1);
	cr_assert_str_eq(ls.qid[0], a->qid);
	cr_assert_eq(ls.state[0][0], SPOOL_RCPT_DELIVERED);
	cr_assert_eq(ls.state[0][1], SPOOL_RCPT_DEFERRED);
	cr_assert_eq(ls.next[0][1], 200);
	cr_assert_eq(ls.state[0][2], SPOOL_RCPT_PENDING);
	/* finish a at runtime: every segment but the current one goes */
	cr_assert_eq(tsu_put_state(sp, a->qid, 1, SPOOL_RCPT_DELIVERED, 0), 0);
	cr_assert_eq(tsu_put_state(sp, a->qid, 2, SPOOL_RCPT_DELIVERED, 0), 0);
	spool_get_stats(sp, &st);
	cr_assert_eq(st.msgs_live, 0);
	cr_assert_eq(segments_soon(sp, 1), 1);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 1);
	spool_close(sp);
	cr_assert_eq(spool_open(&sp, &c, 1, &rep), 0);
	cr_assert_eq(rep.messages_live, 0);
	spool_close(sp);
	cr_assert_eq(tsu_count_segments(tsu_dir()), 1);
	envelope_free(a);
	envelope_free(b);
}

/* ---- queue IDs ---- */

struct qthr {
	struct spool *sp;
	unsigned worker, n;
	char (*ids)[ENV_QID_LEN + 1];
};

static void *qid_thread(void *arg)
{
	struct qthr *q = arg;

	for (unsigned i = 0; i < q->n; i++)
		spool_qid_next(q->sp, q->worker, q->ids[i]);
	return NULL;
}

static int qid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, ENV_QID_LEN);
}

Test(spool, qids_unique_across_threads_and_ordered)
{
	enum { T = 8, N = 20000 };
	struct spool_conf c;
	struct spool *sp;
	struct qthr q[T];
	pthread_t th[T];
	char (*all)[ENV_QID_LEN + 1] = calloc(T * N, ENV_QID_LEN + 1);

	tsu_conf(&c, 2);
	cr_assert_eq(spool_open(&sp, &c, T, NULL), 0);
	for (unsigned i = 0; i < T; i++) {
		q[i] = (struct qthr){ .sp = sp, .worker = i, .n = N,
				      .ids = all + i * N };
		pthread_create(&th[i], NULL, qid_thread, &q[i]);
	}
	for (unsigned i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < T; i++)
		for (unsigned j = 0; j < N; j++) {
			cr_assert(spool_qid_valid(q[i].ids[j]));
			if (j > 0) /* time-ordered per worker */
				cr_assert_lt(strcmp(q[i].ids[j - 1],
						    q[i].ids[j]), 0);
		}
	qsort(all, T * N, ENV_QID_LEN + 1, qid_cmp);
	for (unsigned i = 1; i < T * N; i++)
		cr_assert_neq(qid_cmp(all[i - 1], all[i]), 0, "dup %s",
			      all[i]);
	free(all);
	spool_close(sp);
}

static uint64_t fake_now;

static uint64_t fake_clock(void)
{
	return fake_now;
}

Test(spool, qids_survive_a_clock_step_back_across_reopen)
{
	struct spool_conf c;
	struct spool *sp;
	char last[ENV_QID_LEN + 1] = "", id[ENV_QID_LEN + 1];
	uint64_t t;
	unsigned w, k;

	fake_now = 1800000000000000ull;
	spool_test_set_clock(fake_clock);
	tsu_conf(&c, 1);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	for (int i = 0; i < 5; i++) {
		struct envelope *e = tsu_env(sp, 0, (uint32_t)i, 1, 10);

		cr_assert_eq(tsu_put_msg(sp, e), 0);
		cr_assert_eq(tsu_put_state(sp, e->qid, 0, SPOOL_RCPT_DELIVERED,
					   0), 0);
		strcpy(last, e->qid);
		envelope_free(e);
		fake_now += 10;
	}
	/* the same microsecond 5000 times: the counter, then borrowing */
	for (int i = 0; i < 5000; i++) {
		spool_qid_next(sp, 0, id);
		cr_assert_gt(strcmp(id, last), 0);
		strcpy(last, id);
	}
	spool_close(sp);
	/* everything delivered, and the clock an hour back */
	fake_now -= 3600ull * 1000000;
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(spool_open(&sp, &c, 2, NULL), 0);
		for (unsigned wk = 0; wk < 2; wk++) {
			spool_qid_next(sp, wk, id);
			cr_assert_gt(strcmp(id, last), 0, "%s <= %s", id, last);
		}
		cr_assert_eq(spool_qid_decode(id, &t, &w, &k), 0);
		cr_assert_eq(w, 1);
		spool_close(sp);
	}
	spool_test_set_clock(NULL);
}

Test(spool, idle_writers_use_no_cpu)
{
	struct spool_conf c;
	struct spool *sp;
	struct rusage a, b;
	long us;

	tsu_conf(&c, 4);
	cr_assert_eq(spool_open(&sp, &c, 1, NULL), 0);
	struct envelope *e = tsu_env(sp, 0, 1, 1, 100);

	cr_assert_eq(tsu_put_msg(sp, e), 0);
	usleep(50000);
	getrusage(RUSAGE_SELF, &a);
	usleep(400000);
	getrusage(RUSAGE_SELF, &b);
	us = (b.ru_utime.tv_sec - a.ru_utime.tv_sec) * 1000000L +
	     (b.ru_utime.tv_usec - a.ru_utime.tv_usec) +
	     (b.ru_stime.tv_sec - a.ru_stime.tv_sec) * 1000000L +
	     (b.ru_stime.tv_usec - a.ru_stime.tv_usec);
	cr_assert_lt(us, 20000, "4 idle writers used %ld us of CPU in 400 ms",
		     us);
	/* and a sleeping writer still answers at once */
	cr_assert_eq(tsu_put_state(sp, e->qid, 0, SPOOL_RCPT_DELIVERED, 0), 0);
	envelope_free(e);
	spool_close(sp);
}
