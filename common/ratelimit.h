/*
 * ratelimit.h: a token bucket.
 *
 * Used for ICMP errors (per worker) and for peer-triggered log lines.
 * The caller passes the time, so tests can drive it deterministically.
 */
#ifndef DPMAIL_COMMON_RATELIMIT_H
#define DPMAIL_COMMON_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
	uint32_t rate;    /* tokens added per second */
	uint32_t burst;   /* bucket size */
	uint64_t tokens;  /* current tokens, scaled by 1000 */
	uint64_t last_ms; /* time of the last refill */
};

#define RATELIMIT_INIT(rate_, burst_)                                          \
	{ .rate = (rate_), .burst = (burst_), .tokens = (uint64_t)(burst_)*1000, \
	  .last_ms = 0 }

void ratelimit_init(struct ratelimit *rl, uint32_t rate, uint32_t burst,
		    uint64_t now_ms);
/* Takes one token if there is one; false means "suppress". */
bool ratelimit_allow(struct ratelimit *rl, uint64_t now_ms);
/* Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t ratelimit_now_ms(void);

#endif
