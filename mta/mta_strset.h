/*
 * mta_strset.h: the small sorted sets of lower-case strings that the
 * relay policy (mta_policy.c) and the router (mta_route.c) load their
 * lists into, and the checks both make on those lists' items.
 *
 * A set is filled with mta_strset_add(), then sealed (sorted, duplicates
 * dropped) once; after that it is read-only and searched with bsearch,
 * so any number of threads may share it.
 */
#ifndef DPMAIL_MTA_STRSET_H
#define DPMAIL_MTA_STRSET_H

#include <stdbool.h>
#include <stddef.h>

struct mta_strset {
	char **v;
	size_t n, cap;
};

/* s lower-cased in place (ASCII). */
void mta_lower(char *s);

/* Adds a lower-case copy of v[0..len). 0, or -ENOMEM. */
int mta_strset_add(struct mta_strset *s, const char *v, size_t len);
/* Sorts the set and drops duplicates: call once, after the last add. */
void mta_strset_seal(struct mta_strset *s);
/* key (lower case) is in the sealed set. */
bool mta_strset_has(const struct mta_strset *s, const char *key);
void mta_strset_free(struct mta_strset *s);

/* d[0..len) is a domain name: RFC 1035 letters-digits-hyphen labels, dot
 * separated; with lead_dot, a leading dot is allowed (".example.org",
 * the subdomains form). */
bool mta_domain_ok(const char *d, size_t len, bool lead_dot);

/* Calls fn for each item of list: items are separated by any of seps;
 * commas and blanks (isspace) before an item are skipped. Stops at the
 * first non-zero fn return, and returns it; else 0. */
int mta_for_items(const char *list, const char *seps,
		  int (*fn)(void *arg, const char *item, size_t len,
			    char *why, size_t whylen),
		  void *arg, char *why, size_t whylen);

#endif
