/*
 * mta_dns_cache.h: the resolver's TTL cache (internal to mta_dns.c).
 *
 * Owns: at most cap entries keyed by (lower-cased name, type), each an
 * opaque blob or a negative kind, with an absolute expiry. Full: clock
 * eviction (expired entries first, then the first one not read since the
 * hand last passed). One per resolver, no locks.
 */
#ifndef DPMAIL_MTA_MTA_DNS_CACHE_H
#define DPMAIL_MTA_MTA_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct mta_dnsc;

enum mta_dnsc_kind {
	MTA_DNSC_POS = 0,
	MTA_DNSC_NXDOMAIN,
	MTA_DNSC_NODATA,
};

struct mta_dnsc_hit {
	enum mta_dnsc_kind kind;
	const void *data;
	size_t len;
};

/* cap 0 gives a cache that holds nothing. 0 or -ENOMEM. */
int mta_dnsc_new(struct mta_dnsc **out, unsigned cap);
void mta_dnsc_free(struct mta_dnsc *c);
/* 1 and *hit (valid until the next put) if a live entry is there, else 0
 * (an expired entry is dropped). name: any case, optional trailing dot. */
int mta_dnsc_get(struct mta_dnsc *c, const char *name, uint16_t type,
		 uint64_t now_ms, struct mta_dnsc_hit *hit);
/* Replaces any entry for (name, type). 0, -ENOMEM, -ENAMETOOLONG. */
int mta_dnsc_put(struct mta_dnsc *c, const char *name, uint16_t type,
		 enum mta_dnsc_kind kind, const void *data, size_t len,
		 uint64_t expire_ms, uint64_t now_ms);
unsigned mta_dnsc_used(const struct mta_dnsc *c);
uint64_t mta_dnsc_evictions(const struct mta_dnsc *c);

#endif
