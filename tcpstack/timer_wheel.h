/*
 * timer_wheel.h: a hierarchical timing wheel, one per worker.
 *
 * Owns nothing but its slot lists: timers are intrusive (embedded in the
 * connection that owns them), so arming never allocates. Arm, re-arm and
 * cancel are O(1); advancing costs O(expired timers) plus an occasional
 * cascade of one slot from a coarser level. Time is in milliseconds and is
 * passed in by the caller (the worker's clock, or a test's fake clock).
 *
 * Guarantees:
 *  - a timer never fires before its expiry time: it fires during the first
 *    tw_advance() whose now_ms >= expires;
 *  - expiries in the past or now fire on the next tw_advance();
 *  - any expiry up to TW_MAX_DELAY_MS ahead is exact to the millisecond;
 *    later ones are clamped to TW_MAX_DELAY_MS (and fire then);
 *  - a fired timer is disarmed before its callback runs; the callback may
 *    re-arm it, arm or cancel any other timer, or free the timer's owner
 *    (after which the wheel never touches that timer again);
 *  - one tw_advance() fires timers in non-decreasing order of expires
 *    (those armed already due fire first, sorted); timers with the same
 *    expires fire in no particular order;
 *  - while a callback runs, tw->now is the ms being processed (the fired
 *    timer's expires, or the previous now for timers armed already due),
 *    which may be less than the now_ms passed to tw_advance(); arming at
 *    or before tw->now from a callback fires on the next tw_advance(),
 *    arming later fires in this one if now_ms reaches it.
 * Not thread-safe: one wheel belongs to one worker; callbacks must not call
 * tw_advance() on their own wheel.
 */
#ifndef DPMAIL_TCPSTACK_TIMER_WHEEL_H
#define DPMAIL_TCPSTACK_TIMER_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TW_LEVELS 4
#define TW_SLOTS_BITS 8
#define TW_SLOTS (1u << TW_SLOTS_BITS)
/* 2^(8*4) ms, about 49.7 days */
#define TW_MAX_DELAY_MS ((1ULL << (TW_SLOTS_BITS * TW_LEVELS)) - 1)

struct tw_timer;
typedef void (*tw_fn)(struct tw_timer *t, void *ctx);

struct tw_timer {
	struct tw_timer *next;
	struct tw_timer **pprev; /* NULL while not armed */
	uint64_t expires;        /* ms */
	tw_fn fn;
};

struct timer_wheel {
	uint64_t now;            /* last time advanced to, ms */
	uint64_t armed;          /* timers currently armed */
	void *ctx;               /* passed to every callback */
	struct tw_timer *slot[TW_LEVELS][TW_SLOTS];
	/* private to timer_wheel.c */
	struct tw_timer *due;    /* armed at or before now: fire next advance */
	uint64_t used[TW_LEVELS][TW_SLOTS / 64]; /* bitmap of non-empty slots */
	uint64_t steps;          /* ms tw_advance stopped at (tests, stats) */
};

/* Empties the wheel and sets its clock. */
void tw_init(struct timer_wheel *tw, uint64_t now_ms, void *ctx);
/* Prepares a timer (not armed) that will call fn when it fires. */
void tw_timer_init(struct tw_timer *t, tw_fn fn);
/* Arms t to fire at expires_ms (absolute); re-arms if already armed. */
void tw_arm(struct timer_wheel *tw, struct tw_timer *t, uint64_t expires_ms);
/* Disarms t; harmless if it is not armed. */
void tw_cancel(struct timer_wheel *tw, struct tw_timer *t);
/* Fires every timer due at or before now_ms (now_ms never goes back). */
void tw_advance(struct timer_wheel *tw, uint64_t now_ms);

static inline bool tw_armed(const struct tw_timer *t)
{
	return t->pprev != NULL;
}

#endif
