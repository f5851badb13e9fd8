/*
 * spool_qid.h: queue IDs.
 *
 * A queue ID is 14 characters of Crockford base32 (0-9 A-Z without
 * I L O U) holding 70 bits, most significant first, so that IDs sort
 * as strings in time order:
 *
 *   52 bits  microseconds since the epoch (good until 2112)
 *    6 bits  worker index (SPOOL_MAX_WORKERS = 64)
 *   12 bits  counter within one microsecond
 *
 * Owns: one generator per worker, used only by that worker (no locks).
 * Unique across workers (the worker bits) and restarts: recovery seeds
 * every generator past the highest ID it found, and when the clock is
 * at or behind the last ID used the generator borrows from the future
 * (counter first, then the next microsecond) rather than repeat one.
 */
#ifndef DPMAIL_STORE_SPOOL_QID_H
#define DPMAIL_STORE_SPOOL_QID_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/envelope.h"

#define SPOOL_QID_WORKER_BITS 6
#define SPOOL_QID_COUNTER_BITS 12
#define SPOOL_QID_COUNTER_MAX ((1u << SPOOL_QID_COUNTER_BITS) - 1)
#define SPOOL_QID_TIME_MAX ((UINT64_C(1) << 52) - 1)

struct spool_qidgen {
	/* written by the owning worker only; read (relaxed) by writers that
	 * record the high-water mark in new segment headers */
	_Atomic uint64_t last_t;
	uint32_t counter;
	uint32_t worker;
};

/* True for 14 characters of the upper-case Crockford alphabet. */
bool spool_qid_valid(const char *s);
void spool_qid_encode(uint64_t t_us, unsigned worker, unsigned counter,
		      char out[ENV_QID_LEN + 1]);
/* 0 or -EINVAL. */
int spool_qid_decode(const char *s, uint64_t *t_us, unsigned *worker,
		     unsigned *counter);

/* floor_t: the time part of the highest ID seen; the first ID issued
 * will be above it. */
void spool_qidgen_init(struct spool_qidgen *g, unsigned worker,
		       uint64_t floor_t);
void spool_qidgen_next(struct spool_qidgen *g, uint64_t now_us,
		       char out[ENV_QID_LEN + 1]);

/* Wall clock in microseconds (CLOCK_REALTIME), or the test clock set
 * with spool_test_set_clock(). */
uint64_t spool_clock_us(void);

#endif
