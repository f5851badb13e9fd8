/*
 * mta_strset.c: sorted string sets and list items, shared by mta_policy
 * and mta_route (see mta_strset.h).
 */
#include "mta/mta_strset.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void mta_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mta_strset_add(struct mta_strset *s, const char *v, size_t len)
{
	char *c;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **n = realloc(s->v, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		s->v = n;
		s->cap = cap;
	}
	c = strndup(v, len);
	if (c == NULL)
		return -ENOMEM;
	mta_lower(c);
	s->v[s->n++] = c;
	return 0;
}

void mta_strset_seal(struct mta_strset *s)
{
	size_t o = 0;

	if (s->n == 0)
		return;
	qsort(s->v, s->n, sizeof(*s->v), cmp_str);
	for (size_t i = 1; i < s->n; i++) {
		if (strcmp(s->v[i], s->v[o]) == 0)
			free(s->v[i]);
		else
			s->v[++o] = s->v[i];
	}
	s->n = o + 1;
}

bool mta_strset_has(const struct mta_strset *s, const char *key)
{
	return s->n != 0 &&
	       bsearch(&key, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

void mta_strset_free(struct mta_strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

bool mta_domain_ok(const char *d, size_t len, bool lead_dot)
{
	size_t label = 0;

	if (lead_dot && len > 0 && d[0] == '.') {
		d++;
		len--;
	}
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)d[i];
		if (ch == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(ch) || (ch == '-' && label > 0)) || ++label > 63)
			return false;
	}
	return label > 0 && d[len - 1] != '-';
}

int mta_for_items(const char *list, const char *seps,
		  int (*fn)(void *arg, const char *item, size_t len,
			    char *why, size_t whylen),
		  void *arg, char *why, size_t whylen)
{
	const char *p = list;

	while (*p != '\0') {
		size_t len;
		int rc;

		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		len = strcspn(p, seps);
		if (len == 0)
			break;
		rc = fn(arg, p, len, why, whylen);
		if (rc != 0)
			return rc;
		p += len;
	}
	return 0;
}
