/*
 * spool_bench.c: the spool alone, no network: producer threads stand in
 * for workers, each running its share of --sessions SMTP sessions with
 * one message outstanding at a time (submit, wait for the completion,
 * submit the next), until --count messages or --seconds.
 *
 *   --mode group   the real writer threads with group commit
 *   --mode single  the same writers with batch_max_bytes = 1: every
 *                  record gets its own fdatasync (the no-batching
 *                  baseline, same code path otherwise)
 *
 * Prints one JSON object on its last line: messages, seconds, msgs/s,
 * MB/s (10^6 bytes of body per second), fdatasyncs, batches, and the
 * p50/p99/max submit-to-durable latency in microseconds. Plain files
 * and pthreads; no EAL.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "store/spool.h"

struct opts {
	const char *dir, *mode;
	unsigned sessions, producers, writers, count;
	size_t size;
	double seconds;
	bool keep, prealloc;
};

struct session {
	struct envelope *e;
	struct spool_req req;
	bool busy;
};

struct producer {
	pthread_t th;
	unsigned worker, nsess;
	struct session *s;
	uint64_t *lat;
	size_t nlat, cap;
	uint64_t errors;
};

static struct spool *sp;
static const struct opts *o;
static _Atomic unsigned submitted;
static _Atomic bool stop_submitting;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	unsigned busy = 0;

	for (;;) {
		struct spool_req *done[64];
		unsigned n;

		for (unsigned i = 0; i < p->nsess; i++) {
			struct session *s = &p->s[i];

			if (s->busy || atomic_load(&stop_submitting))
				continue;
			if (atomic_fetch_add(&submitted, 1) >= o->count) {
				atomic_store(&stop_submitting, true);
				continue;
			}
			spool_qid_next(sp, p->worker, s->e->qid);
			s->e->arrival_us = wall_us();
			s->req = (struct spool_req){ .type = SPOOL_REQ_MSG,
						     .worker = p->worker,
						     .env = s->e, .user = s };
			if (spool_submit(sp, &s->req) != 0) {
				atomic_fetch_sub(&submitted, 1);
				continue;
			}
			s->busy = true;
			busy++;
		}
		n = spool_completions(sp, p->worker, done, 64);
		for (unsigned i = 0; i < n; i++) {
			struct session *s = done[i]->user;

			if (done[i]->status != 0)
				p->errors++;
			else if (p->nlat < p->cap)
				p->lat[p->nlat++] =
					done[i]->done_ns - done[i]->submit_ns;
			s->busy = false;
			busy--;
		}
		if (busy == 0 && atomic_load(&stop_submitting))
			break;
		if (n == 0) {
			/* a worker would poll; here the cores are shared
			 * with the writers, so nap briefly */
			struct timespec ts = { 0, 20000 };

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	return ftw->level > 0 ? remove(path) : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: spool_bench --dir DIR [--mode group|single] "
		"[--sessions 32]\n"
		"       [--producers 2] [--writers 1] [--size 2048] "
		"[--count 2000]\n"
		"       [--seconds 5] [--no-prealloc] [--keep]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct opts op = { .mode = "group", .sessions = 32,
				  .producers = 2, .writers = 1, .count = 2000,
				  .size = 2048, .seconds = 5, .prealloc = true };
	static const struct option lo[] = {
		{ "dir", 1, 0, 'd' }, { "mode", 1, 0, 'm' },
		{ "sessions", 1, 0, 's' }, { "producers", 1, 0, 'p' },
		{ "writers", 1, 0, 'w' }, { "size", 1, 0, 'z' },
		{ "count", 1, 0, 'c' }, { "seconds", 1, 0, 't' },
		{ "no-prealloc", 0, 0, 'n' }, { "keep", 0, 0, 'k' },
		{ 0, 0, 0, 0 } };
	struct spool_conf c;
	struct spool_stats st;
	struct producer *pr;
	uint64_t t0, t1, nlat = 0, *all, errors = 0;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'd': op.dir = optarg; break;
		case 'm': op.mode = optarg; break;
		case 's': op.sessions = (unsigned)atoi(optarg); break;
		case 'p': op.producers = (unsigned)atoi(optarg); break;
		case 'w': op.writers = (unsigned)atoi(optarg); break;
		case 'z': op.size = (size_t)atol(optarg); break;
		case 'c': op.count = (unsigned)atoi(optarg); break;
		case 't': op.seconds = atof(optarg); break;
		case 'n': op.prealloc = false; break;
		case 'k': op.keep = true; break;
		default: usage();
		}
	}
	if (op.dir == NULL || op.sessions < 1 || op.producers < 1 ||
	    op.producers > op.sessions || op.producers > SPOOL_MAX_WORKERS ||
	    (strcmp(op.mode, "group") && strcmp(op.mode, "single")))
		usage();
	o = &op;
	log_set_level(LOG_WARNING);
	spool_conf_defaults(&c);
	snprintf(c.dir, sizeof(c.dir), "%s", op.dir);
	c.writers = op.writers;
	c.preallocate = op.prealloc;
	if (strcmp(op.mode, "single") == 0)
		c.batch_max_bytes = 1; /* every record its own fdatasync */
	rc = spool_open(&sp, &c, op.producers, NULL);
	if (rc != 0) {
		fprintf(stderr, "spool_open %s: %s\n", op.dir, strerror(-rc));
		return 1;
	}
	pr = calloc(op.producers, sizeof(*pr));
	for (unsigned i = 0; i < op.producers; i++) {
		struct producer *p = &pr[i];

		p->worker = i;
		p->nsess = op.sessions / op.producers +
			   (i < op.sessions % op.producers);
		p->s = calloc(p->nsess, sizeof(*p->s));
		p->cap = op.count;
		p->lat = malloc(p->cap * sizeof(*p->lat));
		for (unsigned j = 0; j < p->nsess; j++) {
			struct envelope *e = envelope_new();
			uint8_t *body = malloc(op.size + 1);

			for (size_t k = 0; k < op.size; k++)
				body[k] = (k % 78 == 77) ? '\n' :
					  (uint8_t)('a' + (k + j) % 26);
			envelope_set_str(&e->mail_from, "bench@example.org",
					 SIZE_MAX);
			envelope_set_str(&e->helo, "bench.example.org",
					 SIZE_MAX);
			envelope_set_str(&e->client_addr, "198.18.0.1",
					 SIZE_MAX);
			envelope_add_rcpt(e, "user@example.com", "", 0);
			envelope_body_append(e, body, op.size);
			free(body);
			p->s[j].e = e;
		}
	}
	t0 = now_ns();
	for (unsigned i = 0; i < op.producers; i++)
		pthread_create(&pr[i].th, NULL, producer_main, &pr[i]);
	while (!atomic_load(&stop_submitting) &&
	       (double)(now_ns() - t0) / 1e9 < op.seconds)
		usleep(2000);
	atomic_store(&stop_submitting, true);
	for (unsigned i = 0; i < op.producers; i++)
		pthread_join(pr[i].th, NULL);
	t1 = now_ns();
	spool_get_stats(sp, &st);
	spool_close(sp);

	for (unsigned i = 0; i < op.producers; i++)
		nlat += pr[i].nlat;
	all = malloc((nlat + 1) * sizeof(*all));
	nlat = 0;
	for (unsigned i = 0; i < op.producers; i++) {
		memcpy(all + nlat, pr[i].lat, pr[i].nlat * sizeof(*all));
		nlat += pr[i].nlat;
		errors += pr[i].errors;
		for (unsigned j = 0; j < pr[i].nsess; j++)
			envelope_free(pr[i].s[j].e);
		free(pr[i].s);
		free(pr[i].lat);
	}
	free(pr);
	qsort(all, nlat, sizeof(*all), u64_cmp);
	double secs = (double)(t1 - t0) / 1e9;
	double p50 = nlat ? (double)all[nlat / 2] / 1e3 : 0;
	double p99 = nlat ? (double)all[(nlat * 99) / 100] / 1e3 : 0;
	double mx = nlat ? (double)all[nlat - 1] / 1e3 : 0;

	free(all);
	if (!op.keep)
		nftw(op.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	printf("{\"mode\": \"%s\", \"size\": %zu, \"sessions\": %u, "
	       "\"producers\": %u, \"writers\": %u, \"messages\": %llu, "
	       "\"errors\": %llu, \"seconds\": %.4f, \"msgs_per_s\": %.1f, "
	       "\"mb_per_s\": %.3f, \"fsyncs\": %llu, \"batches\": %llu, "
	       "\"records_per_batch\": %.2f, \"p50_us\": %.1f, "
	       "\"p99_us\": %.1f, \"max_us\": %.1f}\n",
	       op.mode, op.size, op.sessions, op.producers, op.writers,
	       (unsigned long long)nlat, (unsigned long long)errors, secs,
	       (double)nlat / secs, (double)nlat * (double)op.size / secs / 1e6,
	       (unsigned long long)st.fsyncs, (unsigned long long)st.batches,
	       st.batches ? (double)st.records / (double)st.batches : 0, p50,
	       p99, mx);
	return errors ? 1 : 0;
}
