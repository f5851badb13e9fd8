/*
 * test_spool_util.h: shared helpers of the spool unit tests: a private
 * spool directory per test, deterministic envelopes, submit-and-wait
 * that proves every request comes back, and envelope comparison.
 * No EAL: the spool builds its rings without it.
 */
#ifndef DPMAIL_TESTS_TEST_SPOOL_UTIL_H
#define DPMAIL_TESTS_TEST_SPOOL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"
#include "store/spool.h"

/* A fresh directory under /tmp, removed by tsu_cleanup (and tmpfs
 * unmounted there if tsu_mount_tmpfs mounted one). */
const char *tsu_dir(void);
void tsu_cleanup(void);
/* 0, or -1 (with a message) when mounting is not possible here. */
int tsu_mount_tmpfs(const char *size);

void tsu_conf(struct spool_conf *c, unsigned writers);

/* An envelope with every field set from seed; nrcpt recipients; body of
 * body_len deterministic bytes. qid from the spool (worker) or given. */
struct envelope *tsu_env(struct spool *sp, unsigned worker, uint32_t seed,
			 uint32_t nrcpt, size_t body_len);
void tsu_env_eq(const struct envelope *a, const struct envelope *b);

/* Submits n requests from worker (retrying -ENOBUFS while polling) and
 * waits until all n come back (asserts within 20 s). Returns the number
 * with status 0. */
unsigned tsu_run(struct spool *sp, unsigned worker, struct spool_req **r,
		 unsigned n);
/* One message / one state change, synchronously; returns the status. */
int tsu_put_msg(struct spool *sp, struct envelope *e);
int tsu_put_state(struct spool *sp, const char *qid, uint32_t rcpt,
		  uint8_t state, uint64_t next_try_s);

/* Every MSG record found by spool_scan, copied, in scan order; and the
 * counts of state and bad records. */
struct tsu_scan {
	struct envelope **msgs;
	size_t nmsgs, nstates, nbad;
};
int tsu_scan(const char *dir, struct tsu_scan *s);
void tsu_scan_free(struct tsu_scan *s);
const struct envelope *tsu_scan_find(const struct tsu_scan *s,
				     const char *qid);

/* Segment files in dir, and the path of the n-th one (sorted). */
unsigned tsu_count_segments(const char *dir);
int tsu_segment_path(const char *dir, unsigned n, char *out, size_t len);

#endif
