/*
 * mta_retry.c: exponential back-off with a cap and a lifetime (see
 * mta_retry.h).
 */
#include "mta/mta_retry.h"

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void mta_retry_conf_defaults(struct mta_retry_conf *c)
{
	c->first_s = 1200;
	c->max_interval_s = 14400;
	c->lifetime_s = 432000;
}

uint64_t mta_retry_next(const struct mta_retry_conf *c, uint64_t arrival_s,
			uint32_t attempts, uint64_t now_s)
{
	uint64_t deadline = sat_add(arrival_s, c->lifetime_s);
	uint64_t iv = 0, next;

	if (attempts > 0) {
		uint32_t k = attempts - 1;

		/* first_s < 2^32, so first_s << k fits while k < 32 */
		iv = k < 32 ? (uint64_t)c->first_s << k : UINT64_MAX;
		if (c->first_s == 0)
			iv = 0;
		if (iv > c->max_interval_s)
			iv = c->max_interval_s;
	}
	next = sat_add(now_s, iv);
	return next > deadline ? deadline : next;
}

uint32_t mta_retry_attempts_for_age(const struct mta_retry_conf *c,
				    uint64_t age_s)
{
	uint64_t t = 0;
	uint32_t n = 0;

	/* the first attempt at 0, the n+1-th one interval(n) after the
	 * n-th: count those at or before age_s */
	if (age_s == 0)
		return 0;
	while (n < 100000) {
		uint64_t iv = mta_retry_next(c, 0, n + 1, t) - t;

		n++;
		if (iv == 0 || t + iv > age_s)
			break;
		t += iv;
	}
	return n;
}

bool mta_retry_expired(const struct mta_retry_conf *c, uint64_t arrival_s,
		       uint64_t now_s)
{
	return now_s >= sat_add(arrival_s, c->lifetime_s);
}
