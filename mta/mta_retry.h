/*
 * mta_retry.h: when to try a deferred recipient again, and when to give
 * up on it. Pure arithmetic on seconds; the queue manager owns the
 * clock and the queue.
 *
 * After the n-th failed attempt the next one is due first_s * 2^(n-1)
 * seconds later (exponential back-off), never more than max_interval_s
 * later, and never after arrival + lifetime_s: at that point the message
 * has been in the queue long enough, and mta_retry_expired() says to
 * bounce it (RFC 5321 4.5.4.1: give up after 4-5 days).
 */
#ifndef DPMAIL_MTA_MTA_RETRY_H
#define DPMAIL_MTA_MTA_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct mta_retry_conf {
	uint32_t first_s;         /* default 1200 (20 minutes) */
	uint32_t max_interval_s;  /* default 14400 (4 hours) */
	uint32_t lifetime_s;      /* default 432000 (5 days) */
};

void mta_retry_conf_defaults(struct mta_retry_conf *c);

/* The time (same clock as arrival_s and now_s) of the next attempt after
 * `attempts` failed ones (1 = after the first failure; 0 = now):
 * now_s + min(first_s * 2^(attempts-1), max_interval_s), but at most
 * arrival_s + lifetime_s. Saturates instead of overflowing, for any
 * attempts and any times. */
uint64_t mta_retry_next(const struct mta_retry_conf *c, uint64_t arrival_s,
			uint32_t attempts, uint64_t now_s);

/* How many failed attempts the schedule above fits into age_s (the
 * spool keeps each recipient's next try, not its count): after a
 * restart, a message deferred for a day goes on at the long intervals
 * it had reached, as Postfix derives its back-off from the time in the
 * queue. 0 for age 0. */
uint32_t mta_retry_attempts_for_age(const struct mta_retry_conf *c,
				    uint64_t age_s);

/* true once now_s >= arrival_s + lifetime_s: bounce, do not retry. */
bool mta_retry_expired(const struct mta_retry_conf *c, uint64_t arrival_s,
		       uint64_t now_s);

#endif
