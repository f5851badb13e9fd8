/*
 * spool.c: the spool's public face: open (recovery, then the writers),
 * close, submit, completions, queue IDs, stats; and the segment registry.
 *
 * Owns: struct spool, the rings (built without DPDK's EAL:
 * aligned_alloc + rte_ring_init, so tools and unit tests need no EAL),
 * the per-worker queue-ID generators.
 * Must never: block a worker. spool_submit and spool_completions are a
 * ring operation each, plus a futex wake only when the writer sleeps.
 */
#include "store/spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

void spool_conf_defaults(struct spool_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "var/spool");
	c->writers = 1;
	c->segment_bytes = 64u << 20;
	c->batch_max_bytes = 4u << 20;
	c->batch_max_delay_us = 1000;
	c->ring_size = 1024;
	c->retry_ms = 1000;
	c->preallocate = true;
}

uint64_t spool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- rings without EAL ---- */

struct rte_ring *spool_ring_new(const char *name, unsigned count)
{
	ssize_t sz = rte_ring_get_memsize(count);
	struct rte_ring *r;

	if (sz < 0)
		return NULL;
	sz = (sz + RTE_CACHE_LINE_SIZE - 1) & ~(ssize_t)(RTE_CACHE_LINE_SIZE - 1);
	r = aligned_alloc(RTE_CACHE_LINE_SIZE, (size_t)sz);
	if (r == NULL)
		return NULL;
	if (rte_ring_init(r, name, count, RING_F_SC_DEQ) != 0) {
		free(r);
		return NULL;
	}
	return r;
}

static unsigned pow2_at_least(uint64_t n)
{
	unsigned p = 2;

	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

/* ---- segment registry ---- */

struct spool_seg *spool_seg_register(struct spool *sp, const char *name,
				     unsigned writer, uint64_t seq,
				     uint32_t refs)
{
	struct spool_seg *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->writer = writer;
	s->seq = seq;
	atomic_init(&s->refs, refs);
	pthread_mutex_lock(&sp->seg_lock);
	s->next = sp->segs;
	sp->segs = s;
	pthread_mutex_unlock(&sp->seg_lock);
	atomic_fetch_add(&sp->nsegs, 1);
	return s;
}

bool spool_seg_unref(struct spool_seg *s)
{
	return atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1;
}

void spool_seg_delete(struct spool *sp, struct spool_seg *s)
{
	struct spool_seg **pp;

	if (unlinkat(sp->dirfd, s->name, 0) != 0 && errno != ENOENT)
		LOG(LOG_WARNING, "spool: cannot delete %s/%s: %s",
		    sp->conf.dir, s->name, strerror(errno));
	else
		LOG(LOG_DEBUG, "spool: deleted dead segment %s", s->name);
	pthread_mutex_lock(&sp->seg_lock);
	for (pp = &sp->segs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&sp->seg_lock);
	atomic_fetch_sub(&sp->nsegs, 1);
	free(s);
}

void spool_seg_dead_push(struct spool *sp, struct spool_seg *s,
		      struct spool_seg ***dead, unsigned *ndead,
		      unsigned *cap)
{
	if (*ndead == *cap) {
		unsigned nc = *cap ? *cap * 2 : 8;
		struct spool_seg **n = realloc(*dead, nc * sizeof(*n));

		if (n == NULL) {
			spool_seg_delete(sp, s);
			return;
		}
		*dead = n;
		*cap = nc;
	}
	(*dead)[(*ndead)++] = s;
}

void spool_live_release(struct spool *sp, struct spool_live *m,
			struct spool_seg ***dead, unsigned *ndead,
			unsigned *cap)
{
	if (m->msg_seg != NULL && spool_seg_unref(m->msg_seg))
		spool_seg_dead_push(sp, m->msg_seg, dead, ndead, cap);
	m->msg_seg = NULL;
	for (uint32_t i = 0; i < m->nstate_segs; i++)
		if (spool_seg_unref(m->state_segs[i]))
			spool_seg_dead_push(sp, m->state_segs[i], dead, ndead, cap);
	m->nstate_segs = 0;
}

int spool_fsync_dir(struct spool *sp)
{
	return fsync(sp->dirfd) == 0 ? 0 : -errno;
}

uint64_t spool_qid_hwm(struct spool *sp)
{
	uint64_t t = sp->qid_floor_t;

	for (unsigned i = 0; i < sp->nworkers; i++) {
		uint64_t g = atomic_load_explicit(&sp->gen[i].g.last_t,
						  memory_order_relaxed);
		if (g > t)
			t = g;
	}
	return t;
}

/* ---- open / close ---- */

static int mkdir_p(const char *dir)
{
	char p[sizeof(((struct spool_conf *)0)->dir)];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(p))
		return -EINVAL;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0750) != 0 && errno != EEXIST)
			return -errno;
		p[i] = i == n ? '\0' : '/';
	}
	return 0;
}

static int conf_check(const struct spool_conf *c, unsigned nworkers)
{
	if (c->writers < 1 || c->writers > SPOOL_MAX_WRITERS ||
	    nworkers < 1 || nworkers > SPOOL_MAX_WORKERS ||
	    c->ring_size < 2 || (c->ring_size & (c->ring_size - 1)) != 0 ||
	    c->ring_size > (1u << 24) || c->segment_bytes < 4096 ||
	    c->batch_max_bytes < 1 || c->dir[0] == '\0')
		return -EINVAL;
	return 0;
}

static void spool_free(struct spool *sp)
{
	struct spool_seg *s, *next;

	for (unsigned i = 0; sp->w != NULL && i < sp->nwriters; i++)
		spool_writer_fini(&sp->w[i]);
	free(sp->w);
	for (unsigned i = 0; sp->cring != NULL && i < sp->nworkers; i++)
		free(sp->cring[i]);
	free(sp->cring);
	free(sp->gen);
	for (s = sp->segs; s != NULL; s = next) {
		next = s->next;
		free(s);
	}
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_mutex_destroy(&sp->seg_lock);
	free(sp);
}

int spool_open(struct spool **out, const struct spool_conf *c,
	       unsigned nworkers, struct spool_recovery *rep)
{
	struct spool_recovery dummy;
	struct spool *sp;
	unsigned csize;
	int rc;

	*out = NULL;
	if (rep == NULL)
		rep = &dummy;
	memset(rep, 0, sizeof(*rep));
	rc = conf_check(c, nworkers);
	if (rc != 0) {
		LOG(LOG_ERR, "spool: bad configuration");
		return rc;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	sp->conf = *c;
	sp->nworkers = nworkers;
	sp->nwriters = c->writers;
	sp->dirfd = -1;
	pthread_mutex_init(&sp->seg_lock, NULL);

	rc = mkdir_p(c->dir);
	if (rc == 0) {
		sp->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sp->dirfd < 0)
			rc = -errno;
	}
	/* one spool per directory: a second daemon's recovery would cut
	 * the first one's segments */
	if (rc == 0 && flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0)
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (rc != 0) {
		LOG(LOG_ERR, "spool: cannot open %s: %s", c->dir,
		    rc == -EBUSY ? "in use by another process" : strerror(-rc));
		goto fail;
	}
	rc = -ENOMEM;
	sp->w = aligned_alloc(RTE_CACHE_LINE_SIZE,
			      sizeof(*sp->w) * sp->nwriters);
	sp->cring = calloc(nworkers, sizeof(*sp->cring));
	sp->gen = aligned_alloc(RTE_CACHE_LINE_SIZE,
				sizeof(*sp->gen) * nworkers);
	if (sp->w == NULL || sp->cring == NULL || sp->gen == NULL) {
		free(sp->w);
		sp->w = NULL;
		goto fail;
	}
	memset(sp->w, 0, sizeof(*sp->w) * sp->nwriters);
	memset(sp->gen, 0, sizeof(*sp->gen) * nworkers);
	for (unsigned i = 0; i < sp->nwriters; i++) {
		rc = spool_writer_init(&sp->w[i], sp, i);
		if (rc != 0) {
			/* the ones after i are zeroed: fini copes */
			for (unsigned j = i; j < sp->nwriters; j++)
				sp->w[j].fd = -1;
			goto fail;
		}
	}
	/* a writer answers at most its ring plus one batch per worker
	 * before the worker polls; beyond that it waits (never drops) */
	csize = pow2_at_least((uint64_t)c->ring_size * sp->nwriters * 2);
	for (unsigned i = 0; i < nworkers; i++) {
		char name[32];

		snprintf(name, sizeof(name), "spool_cq%u", i);
		sp->cring[i] = spool_ring_new(name, csize);
		if (sp->cring[i] == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}

	rc = spool_recover(sp, rep);
	if (rc != 0)
		goto fail;
	for (unsigned i = 0; i < sp->nwriters; i++) {
		rc = pthread_create(&sp->w[i].th, NULL, spool_writer_main,
				    &sp->w[i]);
		if (rc != 0) {
			rc = -rc;
			LOG(LOG_ERR, "spool: cannot start writer %u: %s", i,
			    strerror(-rc));
			atomic_store(&sp->stop, true);
			for (unsigned j = 0; j < i; j++) {
				spool_writer_wake(&sp->w[j]);
				pthread_join(sp->w[j].th, NULL);
				sp->w[j].started = false;
			}
			goto fail;
		}
		sp->w[i].started = true;
	}
	*out = sp;
	return 0;
fail:
	spool_free(sp);
	return rc;
}

void spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	atomic_store(&sp->stop, true);
	for (unsigned i = 0; i < sp->nwriters; i++) {
		if (!sp->w[i].started)
			continue;
		spool_writer_wake(&sp->w[i]);
		pthread_join(sp->w[i].th, NULL);
		sp->w[i].started = false;
	}
	spool_free(sp);
}

/* ---- worker side ---- */

void spool_writer_wake(struct spool_writer *w)
{
	atomic_fetch_add(&w->wake_seq, 1);
	syscall(SYS_futex, &w->wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
		0);
}

int spool_submit(struct spool *sp, struct spool_req *r)
{
	const char *qid;
	struct spool_writer *w;

	if (r->worker >= sp->nworkers)
		return -EINVAL;
	if (r->type == SPOOL_REQ_MSG) {
		if (r->env == NULL)
			return -EINVAL;
		qid = r->env->qid;
	} else if (r->type == SPOOL_REQ_STATE) {
		qid = r->qid;
	} else {
		return -EINVAL;
	}
	w = &sp->w[spool_writer_of(sp, qid)];
	r->status = 0;
	r->done_ns = 0;
	r->submit_ns = spool_now_ns();
	if (rte_ring_mp_enqueue(w->ring, r) != 0)
		return -ENOBUFS;
	/* pairs with the fence in writer_sleep(): either the writer sees
	 * the request, or we see it asleep and wake it */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&w->sleeping, memory_order_relaxed))
		spool_writer_wake(w);
	return 0;
}

unsigned spool_completions(struct spool *sp, unsigned worker,
			   struct spool_req **out, unsigned max)
{
	if (worker >= sp->nworkers)
		return 0;
	return rte_ring_sc_dequeue_burst(sp->cring[worker], (void **)out, max,
					 NULL);
}

void spool_qid_next(struct spool *sp, unsigned worker,
		    char out[ENV_QID_LEN + 1])
{
	spool_qidgen_next(&sp->gen[worker].g, spool_clock_us(), out);
}

bool spool_degraded(const struct spool *sp)
{
	for (unsigned i = 0; i < sp->nwriters; i++)
		if (atomic_load_explicit(&sp->w[i].degraded,
					 memory_order_relaxed))
			return true;
	return false;
}

void spool_get_stats(const struct spool *sp, struct spool_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < sp->nwriters; i++) {
		const struct spool_writer *w = &sp->w[i];

		st->batches += atomic_load_explicit(&w->batches,
						    memory_order_relaxed);
		st->records += atomic_load_explicit(&w->records,
						    memory_order_relaxed);
		st->bytes += atomic_load_explicit(&w->bytes,
						  memory_order_relaxed);
		st->fsyncs += atomic_load_explicit(&w->fsyncs,
						   memory_order_relaxed);
		st->errors += atomic_load_explicit(&w->errors,
						   memory_order_relaxed);
		for (unsigned b = 0; b <= SPOOL_SYNC_BUCKETS; b++)
			st->sync_hist[b] += atomic_load_explicit(
				&w->sync_hist[b], memory_order_relaxed);
		st->sync_us_sum += atomic_load_explicit(&w->sync_us_sum,
							memory_order_relaxed);
	}
	st->msgs_live = atomic_load_explicit(&sp->msgs_live,
					     memory_order_relaxed);
	st->segments = atomic_load_explicit(&sp->nsegs, memory_order_relaxed);
	st->last_error = atomic_load_explicit(&sp->last_error,
					      memory_order_relaxed);
}

int spool_live_foreach(struct spool *sp, spool_live_cb cb, void *arg)
{
	for (unsigned i = 0; i < sp->nwriters; i++) {
		struct spool_index *ix = &sp->w[i].ix;

		for (size_t b = 0; b < ix->nb; b++)
			for (struct spool_live *m = ix->b[b]; m; m = m->next) {
				int rc = cb(arg, m->qid, m->nrcpt, m->state,
					    m->next_try_s);

				if (rc != 0)
					return rc;
			}
	}
	return 0;
}

void spool_test_fail_next(struct spool *sp, unsigned writer, int err,
			  unsigned n)
{
	struct spool_writer *w = &sp->w[writer % sp->nwriters];

	atomic_store(&w->fail_write_err, err);
	atomic_store(&w->fail_write_n, n);
}

void spool_test_fail_fsync_next(struct spool *sp, unsigned writer, int err,
				unsigned n)
{
	struct spool_writer *w = &sp->w[writer % sp->nwriters];

	atomic_store(&w->fail_fsync_err, err);
	atomic_store(&w->fail_fsync_n, n);
}

unsigned spool_writer_of(const struct spool *sp, const char *qid)
{
	return spool_qid_hash(qid) % sp->nwriters;
}

/* ---- reading a body back --------------------------------------------- */

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t k = pread(fd, p, len, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EBADMSG; /* the file ends inside the record */
		p += k;
		len -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

int spool_read_body(struct spool *sp, struct envelope *env)
{
	char name[SPOOL_SEG_NAME_MAX];
	uint8_t hdr[SPOOL_REC_HDR_LEN], *p = NULL;
	struct spool_rec_hdr h;
	struct spool_msg_info info;
	struct envelope *tmp = NULL;
	int fd, rc;

	if (!env->spool_at.set || env->body != NULL)
		return env->body != NULL ? -EINVAL : -ENOENT;
	spool_seg_name(name, env->spool_at.writer, env->spool_at.seq);
	fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	rc = pread_all(fd, hdr, sizeof(hdr), env->spool_at.off);
	if (rc == 0) {
		spool_rec_hdr_get(hdr, &h);
		if (spool_rec_hdr_check(&h) != 0 || h.type != SPOOL_REC_MSG)
			rc = -EBADMSG;
	}
	if (rc == 0 && (p = malloc(h.len ? h.len : 1)) == NULL)
		rc = -ENOMEM;
	if (rc == 0)
		rc = pread_all(fd, p, h.len, env->spool_at.off + sizeof(hdr));
	close(fd);
	if (rc == 0 && !spool_rec_crc_ok(hdr, p, h.len))
		rc = -EBADMSG;
	if (rc == 0 && (tmp = envelope_new()) == NULL)
		rc = -ENOMEM;
	if (rc == 0)
		rc = spool_rec_decode_msg(p, h.len, &info, tmp);
	free(p);
	if (rc == 0 && (strcmp(tmp->qid, env->qid) != 0 ||
			tmp->body_len != env->body_len))
		rc = -EBADMSG;
	if (rc == 0) {
		/* the body moves over; the rest of the copy goes */
		env->body = tmp->body;
		env->body_cap = tmp->body_cap;
		tmp->body = NULL;
		tmp->body_len = tmp->body_cap = 0;
	}
	envelope_free(tmp);
	return rc;
}
