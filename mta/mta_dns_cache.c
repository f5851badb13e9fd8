/*
 * mta_dns_cache.c: the resolver's TTL cache: a chained hash over a fixed
 * slot array swept by a clock hand (see mta_dns_cache.h).
 */
#include "mta/mta_dns_cache.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mta/mta_dns.h"

struct ent {
	struct ent *next;          /* hash chain */
	uint64_t expire_ms;
	uint32_t hash;
	uint32_t slot;
	uint16_t type;
	uint8_t kind;
	uint8_t ref;               /* read since the hand last passed */
	size_t len;
	char name[MTA_DNS_NAME_MAX + 1];
	unsigned char data[];
};

struct mta_dnsc {
	unsigned cap, used, hand, nbuckets;
	struct ent **slots;        /* cap */
	struct ent **buckets;      /* nbuckets, a power of two */
	uint32_t *free;            /* free slot indices */
	unsigned nfree;
	uint64_t evictions;
};

/* Lower-cases name into out without a trailing dot; -ENAMETOOLONG. */
static int canon(const char *name, char out[MTA_DNS_NAME_MAX + 1])
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n > MTA_DNS_NAME_MAX)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[n] = '\0';
	return 0;
}

static uint32_t hash(const char *s, uint16_t type)
{
	uint32_t h = 2166136261u ^ type;      /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

int mta_dnsc_new(struct mta_dnsc **out, unsigned cap)
{
	struct mta_dnsc *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->cap = cap;
	c->nbuckets = 16;
	while (c->nbuckets < 2 * cap)
		c->nbuckets *= 2;
	c->slots = calloc(cap ? cap : 1, sizeof(*c->slots));
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	c->free = calloc(cap ? cap : 1, sizeof(*c->free));
	if (!c->slots || !c->buckets || !c->free) {
		mta_dnsc_free(c);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < cap; i++)
		c->free[c->nfree++] = cap - 1 - i;
	*out = c;
	return 0;
}

void mta_dnsc_free(struct mta_dnsc *c)
{
	if (!c)
		return;
	for (unsigned i = 0; c->slots && i < c->cap; i++)
		free(c->slots[i]);
	free(c->slots);
	free(c->buckets);
	free(c->free);
	free(c);
}

static void drop(struct mta_dnsc *c, struct ent *e)
{
	struct ent **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	c->slots[e->slot] = NULL;
	c->free[c->nfree++] = e->slot;
	c->used--;
	free(e);
}

static struct ent *find(struct mta_dnsc *c, const char *key, uint16_t type,
			uint32_t h)
{
	struct ent *e = c->buckets[h & (c->nbuckets - 1)];

	for (; e; e = e->next)
		if (e->hash == h && e->type == type && !strcmp(e->name, key))
			return e;
	return NULL;
}

int mta_dnsc_get(struct mta_dnsc *c, const char *name, uint16_t type,
		 uint64_t now_ms, struct mta_dnsc_hit *hit)
{
	char key[MTA_DNS_NAME_MAX + 1];
	struct ent *e;

	if (canon(name, key) < 0)
		return 0;
	e = find(c, key, type, hash(key, type));
	if (!e)
		return 0;
	if (e->expire_ms <= now_ms) {
		drop(c, e);
		return 0;
	}
	e->ref = 1;
	hit->kind = (enum mta_dnsc_kind)e->kind;
	hit->data = e->data;
	hit->len = e->len;
	return 1;
}

/* The clock: the first expired or unreferenced entry from the hand. */
static void evict_one(struct mta_dnsc *c, uint64_t now_ms)
{
	for (unsigned n = 0; n < 2 * c->cap + 1; n++) {
		struct ent *e = c->slots[c->hand];

		c->hand = (c->hand + 1) % c->cap;
		if (!e)
			continue;
		if (e->expire_ms <= now_ms || !e->ref) {
			drop(c, e);
			c->evictions++;
			return;
		}
		e->ref = 0;
	}
}

int mta_dnsc_put(struct mta_dnsc *c, const char *name, uint16_t type,
		 enum mta_dnsc_kind kind, const void *data, size_t len,
		 uint64_t expire_ms, uint64_t now_ms)
{
	char key[MTA_DNS_NAME_MAX + 1];
	struct ent *e, *old;
	uint32_t h;

	if (c->cap == 0)
		return 0;
	if (canon(name, key) < 0)
		return -ENAMETOOLONG;
	h = hash(key, type);
	old = find(c, key, type, h);
	if (old)
		drop(c, old);
	if (c->used == c->cap)
		evict_one(c, now_ms);
	if (c->nfree == 0)
		return -ENOMEM;       /* not reached: evict_one always drops */
	e = malloc(sizeof(*e) + len);
	if (!e)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	e->expire_ms = expire_ms;
	e->hash = h;
	e->type = type;
	e->kind = (uint8_t)kind;
	e->len = len;
	memcpy(e->name, key, strlen(key) + 1);
	if (len)
		memcpy(e->data, data, len);
	e->slot = c->free[--c->nfree];
	c->slots[e->slot] = e;
	e->next = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	c->used++;
	return 0;
}

unsigned mta_dnsc_used(const struct mta_dnsc *c)
{
	return c->used;
}

uint64_t mta_dnsc_evictions(const struct mta_dnsc *c)
{
	return c->evictions;
}
