/*
 * ratelimit.c: token bucket with millisecond refill. Tokens are kept
 * scaled by 1000 so that rates below 1000/s refill smoothly.
 */
#include "common/ratelimit.h"

#include <time.h>

void ratelimit_init(struct ratelimit *rl, uint32_t rate, uint32_t burst,
		    uint64_t now_ms)
{
	rl->rate = rate;
	rl->burst = burst;
	rl->tokens = (uint64_t)burst * 1000;
	rl->last_ms = now_ms;
}

bool ratelimit_allow(struct ratelimit *rl, uint64_t now_ms)
{
	uint64_t cap = (uint64_t)rl->burst * 1000;

	if (now_ms > rl->last_ms) {
		/* rate tokens/s == rate milli-tokens/ms, in scaled units */
		uint64_t add = (now_ms - rl->last_ms) * rl->rate;
		rl->tokens = rl->tokens + add > cap ? cap : rl->tokens + add;
		rl->last_ms = now_ms;
	}
	if (rl->tokens < 1000)
		return false;
	rl->tokens -= 1000;
	return true;
}

uint64_t ratelimit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
