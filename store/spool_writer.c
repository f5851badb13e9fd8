/*
 * spool_writer.c: an MDA writer thread: takes requests off its ring,
 * appends them to its segment as one batch, makes the batch durable with
 * one fdatasync (group commit), updates the live index, answers.
 *
 * Owns: its segment file and offset, its batch buffers, its index.
 * I/O: one pwritev per batch (header+envelope from a staging buffer, the
 * body straight from the envelope: no copy), then fdatasync. A batch
 * closes when the ring is empty, at batch_max_bytes, or batch_max_delay_us
 * after its first request.
 * Errors: a failed write is cut back (ftruncate to the batch start) and
 * fails the batch; a failed fdatasync abandons the segment (its state is
 * unknown) and fails the batch; both set the writer degraded until a
 * write or a probe (a new segment, every retry_ms while idle) is durable.
 * Must never: answer status 0 before fdatasync (and, for a new segment,
 * the directory fsync) returned; touch a worker's memory except the
 * request it was handed.
 */
#include "store/spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rte_pause.h>

#include "common/log.h"

/* idle: spin this long on the ring before sleeping on the futex */
#define SPOOL_SPIN_NS 20000u

int spool_writer_init(struct spool_writer *w, struct spool *sp,
		      unsigned idx)
{
	char name[32];

	w->sp = sp;
	w->idx = idx;
	w->fd = -1;
	w->next_seq = 1;
	snprintf(name, sizeof(name), "spool_w%u", idx);
	w->ring = spool_ring_new(name, sp->conf.ring_size);
	if (w->ring == NULL)
		return -ENOMEM;
	return spool_index_init(&w->ix);
}

void spool_writer_fini(struct spool_writer *w)
{
	if (w->fd >= 0) {
		if (w->preallocated)
			(void)!ftruncate(w->fd, (off_t)w->off);
		close(w->fd);
		w->fd = -1;
	}
	/* the segments themselves belong to the registry */
	spool_index_free(&w->ix);
	free(w->ring);
	free(w->b);
	free(w->iov);
	free(w->dead);
	spool_buf_free(&w->stage);
}

/* ---- segments ---- */

static void set_degraded(struct spool_writer *w, int err)
{
	atomic_store(&w->sp->last_error, err);
	w->next_probe_ns = spool_now_ns() +
			   (uint64_t)w->sp->conf.retry_ms * 1000000u;
	if (!atomic_exchange(&w->degraded, true))
		LOG(LOG_ERR, "spool: writer %u degraded: %s; retrying", w->idx,
		    strerror(-err));
}

static void clear_degraded(struct spool_writer *w)
{
	if (atomic_exchange(&w->degraded, false))
		LOG(LOG_NOTICE, "spool: writer %u: writes are durable again",
		    w->idx);
}

/* Stops appending to the current segment. abandoned: its last
 * fdatasync failed; leave it exactly as it is. */
static void seg_close(struct spool_writer *w, bool abandoned)
{
	if (w->fd < 0)
		return;
	if (w->preallocated && !abandoned)
		(void)!ftruncate(w->fd, (off_t)w->off); /* tidy, not synced */
	close(w->fd);
	w->fd = -1;
	if (spool_seg_unref(w->seg))
		spool_seg_dead_push(w->sp, w->seg, &w->dead, &w->ndead,
				    &w->dead_cap);
	w->seg = NULL;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int spool_writer_seg_open(struct spool_writer *w)
{
	struct spool *sp = w->sp;
	char name[SPOOL_SEG_NAME_MAX], floor[ENV_QID_LEN + 1];
	struct spool_buf hb = { 0 };
	bool prealloc = false;
	uint64_t seq = 0;
	int fd = -1, rc;

	for (int tries = 0; tries < 1000 && fd < 0; tries++) {
		seq = w->next_seq++;
		spool_seg_name(name, w->idx, seq);
		fd = openat(sp->dirfd, name,
			    O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	if (sp->conf.preallocate) {
		if (fallocate(fd, 0, 0, (off_t)sp->conf.segment_bytes) == 0) {
			prealloc = true;
		} else {
			/* not supported, or not that much room: go on
			 * without; writes will say if space is short */
			LOG_RL(LOG_NOTICE, "spool: %s not preallocated: %s",
			       name, strerror(errno));
			(void)!ftruncate(fd, 0);
		}
	}
	spool_qid_encode(spool_qid_hwm(sp), 0, 0, floor);
	rc = spool_rec_encode_seghdr(&hb, w->idx, seq, spool_clock_us(),
				     floor);
	if (rc == 0)
		rc = write_all(fd, hb.data, hb.len, 0);
	if (rc == 0) {
		atomic_fetch_add_explicit(&w->fsyncs, 1, memory_order_relaxed);
		if (fdatasync(fd) != 0)
			rc = -errno;
	}
	/* the new name must be durable before any record in it is
	 * acknowledged */
	if (rc == 0)
		rc = spool_fsync_dir(sp);
	if (rc != 0) {
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		spool_buf_free(&hb);
		return rc;
	}
	struct spool_seg *seg = spool_seg_register(sp, name, w->idx, seq, 1);

	if (seg == NULL) {
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		spool_buf_free(&hb);
		return -ENOMEM;
	}
	seg_close(w, false);
	w->fd = fd;
	w->seg = seg;
	w->off = hb.len;
	w->preallocated = prealloc;
	spool_buf_free(&hb);
	LOG(LOG_DEBUG, "spool: writer %u now appends to %s", w->idx, name);
	return 0;
}

/* ---- the batch ---- */

static struct spool_req *next_req(struct spool_writer *w)
{
	if (w->carry_pos == w->ncarry) {
		w->ncarry = rte_ring_sc_dequeue_burst(w->ring,
						      (void **)w->carry,
						      SPOOL_BURST, NULL);
		w->carry_pos = 0;
		if (w->ncarry == 0)
			return NULL;
	}
	return w->carry[w->carry_pos++];
}

static int check_state(struct spool_writer *w, const struct spool_req *r)
{
	const struct spool_live *m;

	if (!spool_qid_valid(r->qid))
		return -EINVAL;
	m = spool_index_find(&w->ix, r->qid);
	if (m == NULL)
		return -ENOENT;
	if (r->rcpt >= m->nrcpt || r->state < SPOOL_RCPT_DELIVERED ||
	    r->state > SPOOL_RCPT_BOUNCED)
		return -EINVAL;
	if (m->state[r->rcpt] == SPOOL_RCPT_DELIVERED ||
	    m->state[r->rcpt] == SPOOL_RCPT_BOUNCED)
		return -EALREADY;
	return 0;
}

/* Adds r to the batch; returns the bytes it will take on disk. */
static uint64_t batch_add(struct spool_writer *w, struct spool_req *r)
{
	struct spool_wreq *wr;
	size_t head = 0;
	int rc;

	if (w->nb == w->bcap) {
		unsigned cap = w->bcap ? w->bcap * 2 : 256;
		struct spool_wreq *n = realloc(w->b, cap * sizeof(*n));

		if (n == NULL) {
			/* answer it alone, now, rather than lose it */
			r->status = -ENOMEM;
			r->done_ns = spool_now_ns();
			while (rte_ring_mp_enqueue(w->sp->cring[r->worker],
						   r) != 0)
				sched_yield();
			return 0;
		}
		w->b = n;
		w->bcap = cap;
	}
	wr = &w->b[w->nb++];
	memset(wr, 0, sizeof(*wr));
	wr->r = r;
	wr->off = w->stage.len;
	if (r->type == SPOOL_REQ_MSG) {
		if (spool_index_find(&w->ix, r->env->qid) != NULL)
			rc = -EEXIST;
		else
			rc = spool_rec_encode_msg(&w->stage, r->env, &wr->off,
						  &head, &wr->size);
		wr->head_len = (uint32_t)head;
		wr->tail_len = (uint32_t)(w->stage.len - wr->off - head);
	} else {
		rc = check_state(w, r);
		if (rc == 0)
			rc = spool_rec_encode_state(&w->stage, r->qid, r->rcpt,
						    r->state, r->next_try_s);
		wr->size = w->stage.len - wr->off;
		wr->head_len = (uint32_t)wr->size;
	}
	if (rc != 0) {
		w->stage.len = wr->off;
		wr->status = rc;
		wr->size = 0;
	}
	return wr->size;
}

static unsigned collect_batch(struct spool_writer *w, uint64_t *bytes)
{
	const struct spool_conf *c = &w->sp->conf;
	struct spool_req *r = next_req(w);
	uint64_t t0, delay = (uint64_t)c->batch_max_delay_us * 1000u;

	w->nb = 0;
	w->stage.len = 0;
	*bytes = 0;
	if (r == NULL)
		return 0;
	t0 = spool_now_ns();
	for (;;) {
		*bytes += batch_add(w, r);
		if (*bytes >= c->batch_max_bytes ||
		    spool_now_ns() - t0 >= delay)
			break;
		r = next_req(w);
		if (r == NULL)
			break; /* the ring is empty: close the batch */
	}
	return w->nb;
}

static int iov_push(struct spool_writer *w, unsigned *n, const void *base,
		    size_t len)
{
	if (len == 0)
		return 0;
	if (*n > 0 && (const uint8_t *)w->iov[*n - 1].iov_base +
				      w->iov[*n - 1].iov_len == base) {
		w->iov[*n - 1].iov_len += len; /* adjacent in the stage */
		return 0;
	}
	if (*n == w->iov_cap) {
		unsigned cap = w->iov_cap ? w->iov_cap * 2 : 512;
		struct iovec *v = realloc(w->iov, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		w->iov = v;
		w->iov_cap = cap;
	}
	w->iov[*n].iov_base = (void *)base;
	w->iov[*n].iov_len = len;
	(*n)++;
	return 0;
}

static int writev_all(int fd, struct iovec *iov, unsigned n, uint64_t off)
{
	while (n > 0) {
		ssize_t k = pwritev(fd, iov, n < IOV_MAX ? (int)n : IOV_MAX,
				    (off_t)off);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EIO;
		off += (uint64_t)k;
		while (n > 0 && (size_t)k >= iov->iov_len) {
			k -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + k;
			iov->iov_len -= (size_t)k;
		}
	}
	return 0;
}

static bool fault(_Atomic uint32_t *n)
{
	uint32_t v = atomic_load_explicit(n, memory_order_relaxed);

	while (v > 0)
		if (atomic_compare_exchange_weak(n, &v, v - 1))
			return true;
	return false;
}

static int batch_write(struct spool_writer *w)
{
	unsigned n = 0;
	int rc;

	for (unsigned i = 0; i < w->nb; i++) {
		const struct spool_wreq *wr = &w->b[i];
		const uint8_t *st = w->stage.data + wr->off;

		if (wr->status != 0)
			continue;
		rc = iov_push(w, &n, st, wr->head_len);
		if (rc == 0 && wr->r->type == SPOOL_REQ_MSG)
			rc = iov_push(w, &n, wr->r->env->body,
				      wr->r->env->body_len);
		if (rc == 0)
			rc = iov_push(w, &n, st + wr->head_len, wr->tail_len);
		if (rc != 0)
			return rc;
	}
	if (fault(&w->fail_write_n)) {
		/* a torn write: part of the first record, then the error */
		(void)!pwrite(w->fd, w->iov[0].iov_base,
			      w->iov[0].iov_len / 2 + 1, (off_t)w->off);
		return atomic_load(&w->fail_write_err);
	}
	return writev_all(w->fd, w->iov, n, w->off);
}

static int batch_sync(struct spool_writer *w)
{
	static const uint64_t bounds[SPOOL_SYNC_BUCKETS] = {
		SPOOL_SYNC_BOUNDS_US };
	struct timespec t0, t1;
	uint64_t us;
	unsigned b = 0;
	int rc;

	atomic_fetch_add_explicit(&w->fsyncs, 1, memory_order_relaxed);
	if (fault(&w->fail_fsync_n))
		return atomic_load(&w->fail_fsync_err);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = fdatasync(w->fd) == 0 ? 0 : -errno;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* signed: the nanoseconds part alone may go down */
	us = (uint64_t)(((int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 +
			 (t1.tv_nsec - t0.tv_nsec)) / 1000);
	/* only this thread writes them: a relaxed add is a plain add */
	while (b < SPOOL_SYNC_BUCKETS && us > bounds[b])
		b++;
	atomic_fetch_add_explicit(&w->sync_hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->sync_us_sum, us, memory_order_relaxed);
	return rc;
}

static void apply_msg(struct spool_writer *w, const struct envelope *e)
{
	struct spool_live *m;

	if (e->nrcpt == 0)
		return; /* nothing to deliver: never live */
	m = spool_live_new(e->qid, e->nrcpt);
	if (m == NULL) {
		LOG_RL(LOG_ERR, "spool: %s is durable but out of memory to "
		       "index it; a restart will pick it up", e->qid);
		return;
	}
	m->msg_seg = w->seg;
	atomic_fetch_add_explicit(&w->seg->refs, 1, memory_order_relaxed);
	spool_index_insert(&w->ix, m);
	atomic_fetch_add_explicit(&w->sp->msgs_live, 1, memory_order_relaxed);
}

static void apply_state(struct spool_writer *w, const struct spool_req *r)
{
	struct spool_live *m = spool_index_find(&w->ix, r->qid);
	uint8_t old;

	if (m == NULL)
		return; /* finished earlier in this batch */
	old = m->state[r->rcpt];
	if (old == SPOOL_RCPT_DELIVERED || old == SPOOL_RCPT_BOUNCED)
		return;
	m->state[r->rcpt] = r->state;
	m->next_try_s[r->rcpt] = r->state == SPOOL_RCPT_DEFERRED ?
						 r->next_try_s : 0;
	if (r->state != SPOOL_RCPT_DEFERRED)
		m->pending--;
	if (m->pending == 0) {
		spool_live_release(w->sp, m, &w->dead, &w->ndead,
				   &w->dead_cap);
		spool_index_remove(&w->ix, m);
		spool_live_free(m);
		atomic_fetch_sub_explicit(&w->sp->msgs_live, 1,
					  memory_order_relaxed);
		return;
	}
	int rc = spool_live_add_state_seg(m, w->seg);

	if (rc == 1)
		atomic_fetch_add_explicit(&w->seg->refs, 1,
					  memory_order_relaxed);
	else if (rc < 0)
		/* the segment may go while the record is needed: a
		 * restart would then redeliver, never lose */
		LOG_RL(LOG_WARNING, "spool: out of memory tracking %s",
		       r->qid);
}

static void complete(struct spool_writer *w)
{
	struct spool *sp = w->sp;
	uint64_t now = spool_now_ns();

	for (unsigned i = 0; i < w->nb; i++) {
		struct spool_req *r = w->b[i].r;

		r->status = w->b[i].status;
		r->done_ns = now;
		while (rte_ring_mp_enqueue(sp->cring[r->worker], r) != 0) {
			/* the worker is behind on polling; never drop an
			 * answer while it runs */
			struct timespec nap = { 0, 50000 };

			atomic_fetch_add(&sp->cq_full_waits, 1);
			if (atomic_load(&sp->stop)) {
				atomic_fetch_add(&sp->cq_dropped, 1);
				break;
			}
			nanosleep(&nap, NULL); /* leave the core to the worker */
		}
	}
	w->nb = 0;
}

static void fail_batch(struct spool_writer *w, int err, const char *what)
{
	unsigned n = 0;

	for (unsigned i = 0; i < w->nb; i++)
		if (w->b[i].status == 0) {
			w->b[i].status = err;
			n++;
		}
	atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
	LOG_RL(LOG_ERR, "spool: writer %u: %s failed: %s; %u requests "
	       "refused", w->idx, what, strerror(-err), n);
	set_degraded(w, err);
}

static void flush_dead(struct spool_writer *w)
{
	if (w->ndead == 0)
		return;
	for (unsigned i = 0; i < w->ndead; i++)
		spool_seg_delete(w->sp, w->dead[i]);
	w->ndead = 0;
	/* not needed for safety (a dead segment that comes back is
	 * deleted by recovery), but keeps the directory tidy */
	(void)spool_fsync_dir(w->sp);
}

static void batch_commit(struct spool_writer *w, uint64_t bytes)
{
	struct spool *sp = w->sp;
	unsigned nrec = 0;
	int rc;

	for (unsigned i = 0; i < w->nb; i++)
		nrec += w->b[i].status == 0;
	if (nrec == 0)
		goto answer;
	if (w->fd < 0) {
		rc = spool_writer_seg_open(w);
		if (rc != 0) {
			fail_batch(w, rc, "creating a segment");
			goto answer;
		}
	}
	rc = batch_write(w);
	if (rc != 0) {
		/* cut the partial write back so that the segment ends
		 * with the last durable record; if that fails too, leave
		 * it (recovery cuts a torn tail) and use a new one */
		if (ftruncate(w->fd, (off_t)w->off) != 0)
			seg_close(w, true);
		else if (w->preallocated)
			w->preallocated = false; /* the file ends here now */
		fail_batch(w, rc, "write");
		goto answer;
	}
	rc = batch_sync(w);
	if (rc != 0) {
		/* after a failed fdatasync the kernel may have dropped the
		 * dirty pages: what is on disk is unknown. Never write to
		 * this segment again (fsyncgate). */
		seg_close(w, true);
		fail_batch(w, rc, "fdatasync");
		goto answer;
	}
	{
		/* where each message record now is, for reading it back */
		uint64_t at = w->off;

		for (unsigned i = 0; i < w->nb; i++) {
			struct spool_wreq *wr = &w->b[i];

			if (wr->status != 0)
				continue;
			if (wr->r->type == SPOOL_REQ_MSG)
				wr->r->env->spool_at = (struct env_spool_at){
					.seq = w->seg->seq, .off = at,
					.writer = w->idx, .set = true };
			at += wr->size;
		}
	}
	w->off += bytes;
	atomic_fetch_add_explicit(&w->batches, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->records, nrec, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->bytes, bytes, memory_order_relaxed);
	for (unsigned i = 0; i < w->nb; i++) {
		const struct spool_wreq *wr = &w->b[i];

		if (wr->status != 0)
			continue;
		if (wr->r->type == SPOOL_REQ_MSG)
			apply_msg(w, wr->r->env);
		else
			apply_state(w, wr->r);
	}
	clear_degraded(w);
answer:
	complete(w);
	if (w->fd >= 0 && w->off >= sp->conf.segment_bytes) {
		seg_close(w, false);
		rc = spool_writer_seg_open(w);
		if (rc != 0)
			set_degraded(w, rc);
	}
	flush_dead(w);
}

/* ---- idle ---- */

static void writer_sleep(struct spool_writer *w)
{
	struct spool *sp = w->sp;
	struct timespec ts = { .tv_sec = 1 };
	uint32_t v;

	if (atomic_load(&w->degraded)) {
		uint64_t now = spool_now_ns(), d;

		d = w->next_probe_ns > now ? w->next_probe_ns - now : 0;
		ts.tv_sec = (time_t)(d / 1000000000u);
		ts.tv_nsec = (long)(d % 1000000000u);
	}
	atomic_store(&w->sleeping, 1);
	atomic_thread_fence(memory_order_seq_cst);
	v = atomic_load(&w->wake_seq);
	if (rte_ring_count(w->ring) == 0 && !atomic_load(&sp->stop))
		syscall(SYS_futex, &w->wake_seq, FUTEX_WAIT_PRIVATE, v, &ts,
			NULL, 0);
	atomic_store(&w->sleeping, 0);
}

static void probe(struct spool_writer *w)
{
	int rc = spool_writer_seg_open(w);

	if (rc == 0) {
		clear_degraded(w);
	} else {
		atomic_store(&w->sp->last_error, rc);
		w->next_probe_ns = spool_now_ns() +
				   (uint64_t)w->sp->conf.retry_ms * 1000000u;
		LOG_RL(LOG_WARNING, "spool: writer %u: probe failed: %s",
		       w->idx, strerror(-rc));
	}
	flush_dead(w);
}

static void write_floor(struct spool_writer *w)
{
	char floor[ENV_QID_LEN + 1];
	struct spool_buf hb = { 0 };

	spool_qid_encode(spool_qid_hwm(w->sp), 0, 0, floor);
	if (spool_rec_encode_seghdr(&hb, w->idx, w->seg->seq, spool_clock_us(),
				    floor) == 0 &&
	    write_all(w->fd, hb.data, hb.len, w->off) == 0 &&
	    fdatasync(w->fd) == 0)
		w->off += hb.len;
	else
		(void)!ftruncate(w->fd, (off_t)w->off);
	spool_buf_free(&hb);
}

void *spool_writer_main(void *arg)
{
	struct spool_writer *w = arg;
	struct spool *sp = w->sp;
	uint64_t idle_since = 0, bytes;

	for (;;) {
		if (collect_batch(w, &bytes) > 0) {
			batch_commit(w, bytes);
			idle_since = 0;
			continue;
		}
		if (atomic_load(&sp->stop))
			break; /* the ring is empty and nobody may submit */
		if (atomic_load(&w->degraded) &&
		    spool_now_ns() >= w->next_probe_ns) {
			probe(w);
			continue;
		}
		if (idle_since == 0)
			idle_since = spool_now_ns();
		if (spool_now_ns() - idle_since < SPOOL_SPIN_NS) {
			rte_pause();
			continue;
		}
		writer_sleep(w);
	}
	/* keep the current segment (not unreferenced) and end it with a
	 * floor record: it carries the queue-ID high-water mark (IDs
	 * issued, written or not) to the next start, whose recovery
	 * deletes it when nothing in it is live */
	if (w->fd >= 0 && !atomic_load(&w->degraded))
		write_floor(w);
	if (w->fd >= 0) {
		if (w->preallocated)
			(void)!ftruncate(w->fd, (off_t)w->off);
		close(w->fd);
		w->fd = -1;
	}
	flush_dead(w);
	return NULL;
}
