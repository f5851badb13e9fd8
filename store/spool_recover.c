/*
 * spool_recover.c: spool_open's recovery, before any writer runs.
 *
 * Scans every segment in (writer, seq) order, verifies each record,
 * skips a corrupt region that has good records after it (counted, the
 * file left alone: acknowledged messages after a bad sector or bit rot
 * are not lost), cuts a torn tail (ftruncate + fsync), rebuilds the live
 * index from message records and replays state records over it, seeds
 * the queue-ID floor past every ID seen, opens a fresh segment per
 * writer (so the floor is on disk before anything is deleted), then
 * deletes the segments nothing live needs.
 *
 * State records are applied after all message records, with a rule that
 * does not depend on file order (the writer count may differ between
 * runs, so a message's records can sit in several writers' segments):
 * a final state (delivered, bounced) wins over deferred, the first final
 * state wins over a later one, and a deferral keeps the latest next try.
 *
 * Must never: delete a segment before the new ones are durable, or
 * trust anything read from disk.
 */
#include "store/spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

struct rstate {
	char qid[ENV_QID_LEN + 1];
	uint32_t rcpt;
	uint8_t state;
	uint64_t next_try_s;
	struct spool_seg *seg;
};

struct rctx {
	struct spool *sp;
	struct spool_recovery *rep;
	struct rstate *st;
	size_t nst, stcap;
	uint64_t max_t;
	uint64_t *next_seq; /* per writer index seen, grown as needed */
	unsigned nnext;
	uint64_t dup_msgs;
};

static void see_qid(struct rctx *x, const char *qid)
{
	uint64_t t;
	unsigned wk, c;

	if (spool_qid_decode(qid, &t, &wk, &c) == 0 && t > x->max_t)
		x->max_t = t;
}

static int note_seq(struct rctx *x, unsigned writer, uint64_t seq)
{
	if (writer >= x->nnext) {
		unsigned n = writer + 1;
		uint64_t *v = realloc(x->next_seq, n * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		memset(v + x->nnext, 0, (n - x->nnext) * sizeof(*v));
		x->next_seq = v;
		x->nnext = n;
	}
	if (seq + 1 > x->next_seq[writer])
		x->next_seq[writer] = seq + 1;
	return 0;
}

static int on_msg(struct rctx *x, struct spool_seg *seg, const uint8_t *p,
		  uint32_t len)
{
	struct spool_msg_info info;
	struct spool_index *ix;
	struct spool_live *m;
	int rc = spool_rec_decode_msg(p, len, &info, NULL);

	if (rc != 0)
		return rc;
	see_qid(x, info.qid);
	if (info.nrcpt == 0)
		return 0;
	ix = &x->sp->w[spool_qid_hash(info.qid) % x->sp->nwriters].ix;
	if (spool_index_find(ix, info.qid) != NULL) {
		/* the same ID twice: a batch that failed after all, then
		 * accepted again. The first copy stands. */
		x->dup_msgs++;
		return 0;
	}
	m = spool_live_new(info.qid, info.nrcpt);
	if (m == NULL)
		return -ENOMEM;
	m->msg_seg = seg;
	spool_index_insert(ix, m);
	return 0;
}

static int on_state(struct rctx *x, struct spool_seg *seg,
		    const uint8_t *p, uint32_t len)
{
	struct rstate s;
	int rc = spool_rec_decode_state(p, len, s.qid, &s.rcpt, &s.state,
					&s.next_try_s);

	if (rc != 0)
		return rc;
	see_qid(x, s.qid);
	s.seg = seg;
	if (x->nst == x->stcap) {
		size_t cap = x->stcap ? x->stcap * 2 : 1024;
		struct rstate *v = realloc(x->st, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		x->st = v;
		x->stcap = cap;
	}
	x->st[x->nst++] = s;
	return 0;
}

static int on_seghdr(struct rctx *x, const uint8_t *p, uint32_t len)
{
	char floor[ENV_QID_LEN + 1];
	uint64_t seq, created;
	uint32_t writer;
	int rc = spool_rec_decode_seghdr(p, len, &writer, &seq, &created,
					 floor);

	if (rc == 0)
		see_qid(x, floor);
	return rc;
}

/* Cuts the segment at r->off, the end of its good data: a torn tail of
 * torn bytes (0: only the unused zeros of a preallocated segment). */
static int cut_tail(struct rctx *x, const char *name, int fd,
		    struct spool_seg_reader *r, uint64_t torn,
		    const char *why)
{
	if (torn > 0) {
		x->rep->bad_records++;
		x->rep->torn_bytes += torn;
		LOG(LOG_WARNING, "spool: %s/%s: %s at offset %" PRIu64
		    " and no good record after it; cutting the torn tail (%"
		    PRIu64 " bytes)", x->sp->conf.dir, name,
		    why ? why : "bad record", r->off, torn);
	}
	if (r->off == r->size)
		return 0;
	/* also drops the unused zeros of a preallocated segment */
	if (ftruncate(fd, (off_t)r->off) != 0 || fsync(fd) != 0)
		return -errno;
	return 0;
}

static int on_record(struct rctx *x, struct spool_seg *seg,
		     const struct spool_rec_hdr *h, const uint8_t *p)
{
	if (h->type == SPOOL_REC_MSG)
		return on_msg(x, seg, p, h->len);
	if (h->type == SPOOL_REC_STATE)
		return on_state(x, seg, p, h->len);
	return on_seghdr(x, p, h->len);
}

/*
 * Reads every record of one open segment. A bad record (torn, CRC,
 * header, structure) with a good record somewhere after it is a corrupt
 * region: skipped and counted, the segment left as it is, every record
 * after it recovered. With nothing good after it, it is a torn tail: cut.
 */
static int read_segment(struct rctx *x, const char *name, int fd,
			struct spool_seg *seg, struct spool_seg_reader *r)
{
	struct spool_rec_hdr h;
	const uint8_t *p;
	uint64_t off, len;
	const char *why;
	int rc;

	for (;;) {
		rc = spool_seg_next(r, &h, &p, &off);
		if (rc == 1) {
			rc = on_record(x, seg, &h, p);
			if (rc == 0) {
				x->rep->records++;
				continue;
			}
			if (rc != -EBADMSG)
				return rc;
			/* CRC good, structure bad: corrupt all the same */
			r->off = off;
			r->why = "bad record structure";
		}
		if (rc == 0)
			return cut_tail(x, name, fd, r, 0, NULL);
		if (rc != -EBADMSG)
			return rc;
		why = r->why;
		off = r->off;
		rc = spool_seg_skip_bad(r, &len);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return cut_tail(x, name, fd, r, len, why);
		x->rep->bad_records++;
		x->rep->corrupt_regions++;
		x->rep->corrupt_bytes += len;
		LOG(LOG_WARNING, "spool: %s/%s: %s at offset %" PRIu64
		    "; skipping a corrupt region of %" PRIu64 " bytes to the "
		    "next good record at offset %" PRIu64 " (the segment is "
		    "kept as it is)", x->sp->conf.dir, name, why ? why :
		    "bad record", off, len, r->off);
	}
}

static int scan_segment(struct rctx *x, const struct spool_seg_ent *e)
{
	struct spool *sp = x->sp;
	struct spool_seg_reader r;
	struct spool_seg *seg;
	struct stat st;
	int fd, rc;

	fd = openat(sp->dirfd, e->name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ELOOP) {
		LOG(LOG_WARNING, "spool: %s/%s is a symbolic link; ignored",
		    sp->conf.dir, e->name);
		return 0;
	}
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		LOG(LOG_ERR, "spool: cannot open %s/%s: %s", sp->conf.dir,
		    e->name, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		LOG(LOG_WARNING, "spool: %s/%s is not a file; ignored",
		    sp->conf.dir, e->name);
		return 0;
	}
	/* never appended to again: the writers start new segments past
	 * every sequence number seen here (note_seq) */
	seg = spool_seg_register(sp, e->name, e->writer, e->seq, 0);
	rc = seg ? note_seq(x, e->writer, e->seq) : -ENOMEM;
	if (rc != 0) {
		close(fd);
		return rc;
	}
	x->rep->segments++;
	spool_seg_reader_init(&r, fd, (uint64_t)st.st_size);
	rc = read_segment(x, e->name, fd, seg, &r);
	if (rc != 0)
		LOG(LOG_ERR, "spool: reading %s/%s: %s", sp->conf.dir, e->name,
		    strerror(-rc));
	spool_seg_reader_free(&r);
	close(fd);
	return rc;
}

static void replay_states(struct rctx *x)
{
	for (size_t i = 0; i < x->nst; i++) {
		const struct rstate *s = &x->st[i];
		struct spool_index *ix =
			&x->sp->w[spool_qid_hash(s->qid) % x->sp->nwriters].ix;
		struct spool_live *m = spool_index_find(ix, s->qid);
		uint8_t old;

		x->rep->state_records++;
		if (m == NULL || s->rcpt >= m->nrcpt)
			continue; /* its message is gone: finished earlier */
		old = m->state[s->rcpt];
		if (old == SPOOL_RCPT_DELIVERED || old == SPOOL_RCPT_BOUNCED)
			continue;
		if (s->state == SPOOL_RCPT_DEFERRED) {
			m->state[s->rcpt] = SPOOL_RCPT_DEFERRED;
			if (s->next_try_s > m->next_try_s[s->rcpt])
				m->next_try_s[s->rcpt] = s->next_try_s;
		} else {
			m->state[s->rcpt] = s->state;
			m->next_try_s[s->rcpt] = 0;
			m->pending--;
		}
		/* remember the segment; references are taken below for
		 * the messages that stay live. A failure here only means
		 * that segment might go early: redelivery, not loss. */
		(void)spool_live_add_state_seg(m, s->seg);
	}
}

/* Drops finished messages from the indexes; takes the references of the
 * live ones. */
static void settle(struct rctx *x)
{
	struct spool *sp = x->sp;

	for (unsigned w = 0; w < sp->nwriters; w++) {
		struct spool_index *ix = &sp->w[w].ix;

		for (size_t b = 0; b < ix->nb; b++) {
			struct spool_live **pp = &ix->b[b];

			while (*pp != NULL) {
				struct spool_live *m = *pp;

				if (m->pending == 0) {
					*pp = m->next;
					ix->n--;
					spool_live_free(m);
					continue;
				}
				atomic_fetch_add(&m->msg_seg->refs, 1);
				for (uint32_t i = 0; i < m->nstate_segs; i++)
					atomic_fetch_add(&m->state_segs[i]->refs,
							 1);
				x->rep->messages_live++;
				x->rep->rcpts_live += m->pending;
				pp = &m->next;
			}
		}
	}
	atomic_store(&sp->msgs_live, x->rep->messages_live);
}

int spool_recover(struct spool *sp, struct spool_recovery *rep)
{
	struct rctx x = { .sp = sp, .rep = rep };
	struct spool_seg_list l;
	struct spool_seg *s, *next;
	uint64_t t0 = spool_now_ns();
	int rc;

	rc = spool_seg_list(sp->dirfd, &l);
	if (rc != 0) {
		LOG(LOG_ERR, "spool: cannot list %s: %s", sp->conf.dir,
		    strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < l.n && rc == 0; i++)
		rc = scan_segment(&x, &l.v[i]);
	spool_seg_list_free(&l);
	if (rc != 0)
		goto out;
	replay_states(&x);
	settle(&x);
	if (x.dup_msgs)
		LOG(LOG_WARNING, "spool: %" PRIu64 " duplicate message records "
		    "ignored", x.dup_msgs);

	/* queue IDs continue past everything seen, even if the clock is
	 * behind it now */
	sp->qid_floor_t = x.max_t;
	for (unsigned w = 0; w < sp->nwriters; w++) {
		if (w < x.nnext && x.next_seq[w] > sp->w[w].next_seq)
			sp->w[w].next_seq = x.next_seq[w];
	}
	/* the queue-ID floor of the new segments must be on disk before
	 * the old segments that held it go */
	for (unsigned i = 0; i < sp->nworkers; i++)
		spool_qidgen_init(&sp->gen[i].g, i, sp->qid_floor_t);
	bool fresh = true;

	for (unsigned w = 0; w < sp->nwriters; w++) {
		int e = spool_writer_seg_open(&sp->w[w]);

		if (e != 0) {
			LOG(LOG_ERR, "spool: writer %u cannot create a segment "
			    "in %s: %s; starting degraded", w, sp->conf.dir,
			    strerror(-e));
			atomic_store(&sp->w[w].degraded, true);
			atomic_store(&sp->last_error, e);
			sp->w[w].next_probe_ns = spool_now_ns() +
				(uint64_t)sp->conf.retry_ms * 1000000u;
			fresh = false;
		}
	}
	for (s = sp->segs; fresh && s != NULL; s = next) {
		next = s->next;
		if (atomic_load(&s->refs) == 0) {
			spool_seg_delete(sp, s);
			rep->segments_deleted++;
		}
	}
	if (rep->segments_deleted > 0)
		(void)spool_fsync_dir(sp);
	rep->seconds = (double)(spool_now_ns() - t0) / 1e9;
	LOG(LOG_NOTICE, "spool: recovered %s: %u segments (%u deleted), "
	    "%" PRIu64 " records, %" PRIu64 " live messages (%" PRIu64
	    " recipients), %" PRIu64 " state records, %u bad records, %"
	    PRIu64 " torn bytes, %u corrupt regions (%" PRIu64 " bytes "
	    "skipped), %.3f s", sp->conf.dir, rep->segments,
	    rep->segments_deleted, rep->records, rep->messages_live,
	    rep->rcpts_live, rep->state_records, rep->bad_records,
	    rep->torn_bytes, rep->corrupt_regions, rep->corrupt_bytes,
	    rep->seconds);
out:
	free(x.st);
	free(x.next_seq);
	return rc;
}
