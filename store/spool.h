/*
 * spool.h: the durable message spool. Group commit behind lock-free rings.
 *
 * Owns: the spool directory, its segment files, the MDA writer threads
 * (pthreads), one submit ring per writer (rte_ring, multi-producer: every
 * worker enqueues) and one completion ring per worker (multi-producer:
 * every writer answers), the queue-ID generators, and the in-memory index
 * of live messages (which recipients are still to be delivered).
 *
 * The promise (DESIGN.md "Durability promise"): a request comes back on its
 * worker's completion ring with status 0 only after the record holding it
 * is on stable storage (fdatasync returned, the segment's directory entry
 * synced when the segment was created). Many requests share one
 * fdatasync: a writer takes requests off its ring and closes the batch
 * when the ring is empty, when batch_max_bytes is reached, or when
 * batch_max_delay_us has passed since the batch's first request.
 *
 * On disk: DIR/seg-<writer>-<seq>.dps, records appended one after another:
 *   record = header { magic, type, length, crc32c } + payload
 * A message record holds the queue ID, the whole envelope (with DSN
 * parameters) and the body; a state record holds a queue ID, a recipient
 * index and its new state (delivered, deferred with next try, bounced).
 * CRC32C (Castagnoli) covers header and payload. See spool_record.h.
 *
 * Recovery (spool_open): every segment is scanned; records are verified.
 * A bad record (bad magic, header, length, CRC, structure) followed by a
 * record that verifies is a corrupt region (a bad sector, bit rot): it is
 * skipped and counted, and everything after it is recovered; the segment
 * is left as it is (writers never append to a segment from before a
 * restart). A bad record with nothing valid after it (up to the end of
 * the file, or only zeros) is a torn tail: cut off (ftruncate) and
 * counted. State records are replayed over their messages; the live
 * queue is rebuilt; segments with nothing live are deleted.
 *
 * Errors: a failed write or fdatasync fails every request of its batch
 * (status -ENOSPC or -EIO ...), is logged, and sets spool_degraded(); the
 * writer keeps retrying (new batches, and a probe every retry_ms when no
 * requests come) and clears it once a write is durable again. Nothing that
 * was acknowledged with status 0 is ever lost or rewritten.
 *
 * Threads: spool_open/spool_close on the main thread; spool_submit,
 * spool_completions and spool_qid_next from worker w only for its own w;
 * the writers are internal.
 */
#ifndef DPMAIL_STORE_SPOOL_H
#define DPMAIL_STORE_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/envelope.h"

struct spool;

#define SPOOL_MAX_WRITERS 16
#define SPOOL_MAX_WORKERS 64

struct spool_conf {
	char dir[4096];              /* created if missing */
	uint32_t writers;            /* MDA writer threads, 1..SPOOL_MAX_WRITERS */
	uint64_t segment_bytes;      /* roll to a new segment past this */
	uint32_t batch_max_bytes;    /* close a batch at this many bytes */
	uint32_t batch_max_delay_us; /* ... or this long after its first request */
	uint32_t ring_size;          /* per writer and per worker; power of 2 */
	uint32_t retry_ms;           /* probe interval while degraded */
	bool preallocate;            /* fallocate segments (fewer metadata syncs) */
};
void spool_conf_defaults(struct spool_conf *c);

enum spool_req_type { SPOOL_REQ_MSG = 1, SPOOL_REQ_STATE };

enum spool_rcpt_state {
	SPOOL_RCPT_PENDING = 0,
	SPOOL_RCPT_DELIVERED,
	SPOOL_RCPT_DEFERRED,  /* still live; next_try_s says when */
	SPOOL_RCPT_BOUNCED,
};

struct spool_req {
	enum spool_req_type type;
	unsigned worker;        /* completion goes to this worker's ring */
	/* SPOOL_REQ_MSG: the message (env->qid set). Read by the writer
	 * thread until the completion; the caller must not touch or free it
	 * meanwhile. The spool never frees it. */
	struct envelope *env;
	/* SPOOL_REQ_STATE */
	char qid[ENV_QID_LEN + 1];
	uint32_t rcpt;
	uint8_t state;          /* enum spool_rcpt_state */
	uint64_t next_try_s;
	/* completion */
	int status;             /* 0 durable; negative errno */
	uint64_t submit_ns, done_ns; /* CLOCK_MONOTONIC, for latency figures */
	void *user;             /* the caller's */
};

struct spool_recovery {
	uint32_t segments, segments_deleted;
	uint64_t records, messages_live, rcpts_live, state_records;
	uint64_t torn_bytes;      /* cut off the tails of segments */
	uint32_t bad_records;     /* CRC or structure failures: corrupt
				   * regions plus torn tails */
	uint32_t corrupt_regions; /* bad regions skipped inside segments
				   * (good records after them recovered) */
	uint64_t corrupt_bytes;   /* their bytes (left in the file) */
	double seconds;
};

/* Recovers DIR, starts the writers. nworkers completion rings.
 * Returns 0 or a negative errno (logged; -EBUSY: another process has DIR
 * open, held with flock until spool_close). rep may be NULL. */
int spool_open(struct spool **out, const struct spool_conf *c,
	       unsigned nworkers, struct spool_recovery *rep);
/* Waits until every submitted request was written and answered, stops
 * the writers, frees everything. Completions not yet polled are dropped
 * (their envelopes are the caller's to free: call spool_completions
 * first). */
void spool_close(struct spool *sp);

/* Worker side. 0, or -ENOBUFS when the writer's ring is full. */
int spool_submit(struct spool *sp, struct spool_req *r);
/* Up to max finished requests for this worker; never blocks. */
unsigned spool_completions(struct spool *sp, unsigned worker,
			   struct spool_req **out, unsigned max);
/* A new queue ID for this worker: unique across workers, writers and
 * restarts (time-ordered, seeded past every ID recovery saw). */
void spool_qid_next(struct spool *sp, unsigned worker,
		    char out[ENV_QID_LEN + 1]);
/* True while writes are failing (disk full, I/O error). */
bool spool_degraded(const struct spool *sp);

/* fdatasync latency histogram: upper bounds in microseconds; one more
 * bucket (the last) counts the slower ones. */
#define SPOOL_SYNC_BOUNDS_US 50, 100, 250, 500, 1000, 2500, 5000, 10000, \
	25000, 50000, 100000, 250000, 1000000
#define SPOOL_SYNC_BUCKETS 13
struct spool_stats {
	uint64_t batches, records, bytes, fsyncs, errors;
	uint64_t msgs_live, segments;
	uint64_t sync_hist[SPOOL_SYNC_BUCKETS + 1]; /* not cumulative */
	uint64_t sync_us_sum;
	int last_error;            /* negative errno, 0 = none */
};
void spool_get_stats(const struct spool *sp, struct spool_stats *st);

/* Offline reading (dpmailctl spool dump): calls cb for every record of
 * every segment in DIR in order, without changing anything. A bad region
 * is reported as one record with bad set; the good records after it are
 * read as recovery would. Returns 0 or a negative errno (or cb's first
 * non-zero). */
struct spool_scan_rec {
	const char *segment;       /* file name */
	uint64_t offset;
	enum spool_req_type type;
	const struct envelope *env; /* SPOOL_REQ_MSG: decoded, body included */
	const char *qid;
	uint32_t rcpt;             /* SPOOL_REQ_STATE */
	uint8_t state;
	uint64_t next_try_s;
	uint32_t crc;
	uint64_t length;           /* bytes on disk (padding included) */
	bool bad;                  /* CRC or structure failure: offset and
				    * length are the bad region's; reading
				    * goes on at the next good record */
	bool torn;                 /* bad, and nothing valid follows in this
				    * segment: a torn tail (recovery cuts
				    * it off); the last record of it */
	const char *why;           /* bad: what was wrong first */
};
int spool_scan(const char *dir,
	       int (*cb)(void *arg, const struct spool_scan_rec *r),
	       void *arg);

/* ---- Additions to the contract (store/ owner) ---- */

/* Statuses besides the I/O errors (-ENOSPC, -EIO, ...), nothing written:
 *   -EEXIST   SPOOL_REQ_MSG with the queue ID of a live message
 *   -EINVAL   a bad queue ID, a string over 64 KiB, rcpt out of range,
 *             state PENDING or unknown
 *   -E2BIG    the record would pass 1 GiB
 *   -ENOENT   SPOOL_REQ_STATE for no live message (submit state changes
 *             only after the message's own completion came back)
 *   -EALREADY that recipient is already delivered or bounced
 * A message with no recipients is written but never live. */

/* Reads env's body back from its message record (env->spool_at), for a
 * queue manager that let a waiting body go: any thread, one pread of the
 * record, CRC and queue ID checked. env->body must be NULL; on success it
 * holds body_len bytes again. 0, or -ENOENT (no location, or the segment
 * is gone), -EBADMSG (the record does not verify, or is another
 * message's), -ENOMEM, or the read's errno. */
int spool_read_body(struct spool *sp, struct envelope *env);

/* Every live message as recovery left it: queue ID, its recipients'
 * states (enum spool_rcpt_state) and, for DEFERRED ones, the next try.
 * For the MTA to schedule after a restart. Main thread, right after
 * spool_open and before the first spool_submit (the writers own the
 * index once requests flow). Stops at and returns cb's first non-zero. */
typedef int (*spool_live_cb)(void *arg, const char *qid, uint32_t nrcpt,
			     const uint8_t *state, const uint64_t *next_try_s);
int spool_live_foreach(struct spool *sp, spool_live_cb cb, void *arg);

/* A ring built without the EAL (aligned_alloc + rte_ring_init; free()
 * it): multi-producer enqueue, single-consumer dequeue; count a power of
 * two. For the MTA's rings beside the spool's own. */
struct rte_ring;
struct rte_ring *spool_ring_new(const char *name, unsigned count);

/* The writer that owns a queue ID (hash(qid) % writers). */
unsigned spool_writer_of(const struct spool *sp, const char *qid);

/* Test-only fault injection. The next n batch writes of that writer
 * fail with err (negative errno) after writing half their bytes (so the
 * cut-back path runs); the _fsync_ variant fails the next n fdatasyncs
 * of batches (the segment is then abandoned, as after a real one). */
void spool_test_fail_next(struct spool *sp, unsigned writer, int err,
			  unsigned n);
void spool_test_fail_fsync_next(struct spool *sp, unsigned writer, int err,
				unsigned n);
/* Test-only: replaces the wall clock behind queue IDs (NULL restores
 * CLOCK_REALTIME). Process-wide. */
void spool_test_set_clock(uint64_t (*now_us)(void));

#endif
