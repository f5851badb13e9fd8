/*
 * spool_qid.c: queue-ID generation, encoding and parsing (see
 * spool_qid.h for the layout and the uniqueness argument).
 */
#include "store/spool_qid.h"

#include <errno.h>
#include <time.h>

#include "store/spool.h"

static const char crockford[32] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static int crockford_val(char c)
{
	for (int i = 0; i < 32; i++)
		if (crockford[i] == c)
			return i;
	return -1;
}

static uint64_t (*_Atomic test_clock)(void);

void spool_test_set_clock(uint64_t (*now_us)(void))
{
	atomic_store(&test_clock, now_us);
}

uint64_t spool_clock_us(void)
{
	uint64_t (*fn)(void) = atomic_load_explicit(&test_clock,
						    memory_order_relaxed);
	struct timespec ts;

	if (fn != NULL)
		return fn();
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool spool_qid_valid(const char *s)
{
	for (int i = 0; i < ENV_QID_LEN; i++) {
		if (crockford_val(s[i]) < 0)
			return false;
	}
	return s[ENV_QID_LEN] == '\0';
}

void spool_qid_encode(uint64_t t_us, unsigned worker, unsigned counter,
		      char out[ENV_QID_LEN + 1])
{
	unsigned __int128 v;

	v = (unsigned __int128)(t_us & SPOOL_QID_TIME_MAX)
		<< (SPOOL_QID_WORKER_BITS + SPOOL_QID_COUNTER_BITS);
	v |= (unsigned __int128)((worker & ((1u << SPOOL_QID_WORKER_BITS) - 1))
				 << SPOOL_QID_COUNTER_BITS);
	v |= counter & SPOOL_QID_COUNTER_MAX;
	for (int i = ENV_QID_LEN - 1; i >= 0; i--) {
		out[i] = crockford[(unsigned)(v & 31)];
		v >>= 5;
	}
	out[ENV_QID_LEN] = '\0';
}

int spool_qid_decode(const char *s, uint64_t *t_us, unsigned *worker,
		     unsigned *counter)
{
	unsigned __int128 v = 0;

	if (!spool_qid_valid(s))
		return -EINVAL;
	for (int i = 0; i < ENV_QID_LEN; i++)
		v = (v << 5) | (unsigned)crockford_val(s[i]);
	*counter = (unsigned)(v & SPOOL_QID_COUNTER_MAX);
	v >>= SPOOL_QID_COUNTER_BITS;
	*worker = (unsigned)(v & ((1u << SPOOL_QID_WORKER_BITS) - 1));
	v >>= SPOOL_QID_WORKER_BITS;
	*t_us = (uint64_t)v;
	return 0;
}

void spool_qidgen_init(struct spool_qidgen *g, unsigned worker,
		       uint64_t floor_t)
{
	atomic_store_explicit(&g->last_t, floor_t, memory_order_relaxed);
	g->counter = SPOOL_QID_COUNTER_MAX; /* next ID: past floor_t */
	g->worker = worker;
}

void spool_qidgen_next(struct spool_qidgen *g, uint64_t now_us,
		       char out[ENV_QID_LEN + 1])
{
	uint64_t last = atomic_load_explicit(&g->last_t, memory_order_relaxed);

	if (now_us > last) {
		last = now_us;
		g->counter = 0;
	} else if (g->counter < SPOOL_QID_COUNTER_MAX) {
		g->counter++;
	} else {
		/* same microsecond used up, or the clock went back: borrow
		 * the next microsecond rather than repeat an ID */
		last++;
		g->counter = 0;
	}
	atomic_store_explicit(&g->last_t, last, memory_order_relaxed);
	spool_qid_encode(last, g->worker, g->counter, out);
}
