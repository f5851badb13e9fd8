/*
 * spool_internal.h: what spool.c, spool_writer.c and spool_recover.c
 * share. Not for use outside store/.
 *
 * Segments (struct spool_seg) are shared between writers: a message
 * written by writer A may get its state records from writer B after a
 * restart with another writer count. Each holds an atomic reference
 * count: one per live message whose record it holds, one per live
 * message with a state record in it, and one while a writer appends to
 * it. Whoever drops the last reference deletes the file; references are
 * only ever taken on a segment that already holds one (or during
 * recovery, before any thread runs), so a count never comes back from
 * zero. The registry list is behind a mutex, touched only when a segment
 * is created or deleted, never per record.
 */
#ifndef DPMAIL_STORE_SPOOL_INTERNAL_H
#define DPMAIL_STORE_SPOOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <rte_common.h>
#include <rte_ring.h>

#include "store/spool.h"
#include "store/spool_index.h"
#include "store/spool_qid.h"
#include "store/spool_record.h"
#include "store/spool_segment.h"

#define SPOOL_BURST 64

struct spool_seg {
	struct spool_seg *next; /* registry */
	char name[SPOOL_SEG_NAME_MAX];
	unsigned writer;
	uint64_t seq;
	_Atomic uint32_t refs;
};

/* One request of the batch being built. */
struct spool_wreq {
	struct spool_req *r;
	int status;        /* < 0: refused before writing */
	size_t off;        /* in the stage buffer */
	uint32_t head_len; /* header + payload bytes before the body */
	uint32_t tail_len; /* padding after the body */
	uint64_t size;     /* whole record on disk */
};

struct spool_writer {
	struct spool *sp;
	unsigned idx;
	pthread_t th;
	bool started;
	struct rte_ring *ring; /* submit ring: MP enqueue, SC dequeue */

	/* sleep/wake: see writer_sleep() and spool_submit() */
	_Atomic uint32_t wake_seq;
	_Atomic uint32_t sleeping;

	/* the segment being appended to */
	int fd;
	struct spool_seg *seg;
	uint64_t off;
	uint64_t next_seq;
	bool preallocated;

	/* the batch */
	struct spool_wreq *b;
	unsigned nb, bcap;
	struct spool_req *carry[SPOOL_BURST];
	unsigned ncarry, carry_pos;
	struct spool_buf stage;
	struct iovec *iov;
	unsigned iov_cap;
	struct spool_seg **dead;
	unsigned ndead, dead_cap;

	struct spool_index ix;

	_Atomic bool degraded;
	uint64_t next_probe_ns;

	/* test fault injection: the next n writes / fdatasyncs fail */
	_Atomic int fail_write_err, fail_fsync_err;
	_Atomic uint32_t fail_write_n, fail_fsync_n;

	_Atomic uint64_t batches, records, bytes, fsyncs, errors;
	/* fdatasync latency (spool_stats.sync_hist), this writer only */
	_Atomic uint64_t sync_hist[SPOOL_SYNC_BUCKETS + 1], sync_us_sum;
} __rte_cache_aligned;

struct spool_qidslot {
	struct spool_qidgen g;
} __rte_cache_aligned;

struct spool {
	struct spool_conf conf;
	unsigned nworkers, nwriters;
	int dirfd;
	struct spool_writer *w;
	struct rte_ring **cring;  /* per worker: MP enqueue, SC dequeue */
	struct spool_qidslot *gen; /* per worker */
	uint64_t qid_floor_t;     /* from recovery */

	pthread_mutex_t seg_lock;
	struct spool_seg *segs;
	_Atomic uint64_t nsegs;

	_Atomic uint64_t msgs_live;
	_Atomic uint64_t cq_full_waits, cq_dropped;
	_Atomic int last_error;
	_Atomic bool stop;
};

uint64_t spool_now_ns(void);
/* Segment registry (spool.c). */
struct spool_seg *spool_seg_register(struct spool *sp, const char *name,
				     unsigned writer, uint64_t seq,
				     uint32_t refs);
/* True when that was the last reference: the caller deletes it. */
bool spool_seg_unref(struct spool_seg *s);
/* Unlinks and frees a segment with no references (no directory sync). */
void spool_seg_delete(struct spool *sp, struct spool_seg *s);
/* Adds s to a list of segments to delete (deletes at once when the
 * list cannot grow). */
void spool_seg_dead_push(struct spool *sp, struct spool_seg *s,
			 struct spool_seg ***dead, unsigned *ndead,
			 unsigned *cap);
/* Drops every reference m holds, appending segments that died to
 * (*dead, *ndead, *cap). */
void spool_live_release(struct spool *sp, struct spool_live *m,
			struct spool_seg ***dead, unsigned *ndead,
			unsigned *cap);
/* Highest queue-ID time part issued or seen so far. */
uint64_t spool_qid_hwm(struct spool *sp);
int spool_fsync_dir(struct spool *sp);

/* Writer (spool_writer.c). */
int spool_writer_init(struct spool_writer *w, struct spool *sp,
		      unsigned idx);
void spool_writer_fini(struct spool_writer *w);
/* Creates and syncs the writer's next segment and makes it current. */
int spool_writer_seg_open(struct spool_writer *w);
void *spool_writer_main(void *arg);
void spool_writer_wake(struct spool_writer *w);

/* Recovery (spool_recover.c): before the writers start. */
int spool_recover(struct spool *sp, struct spool_recovery *rep);

#endif
