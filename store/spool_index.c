/*
 * spool_index.c: chained hash table of live messages keyed by queue ID.
 */
#include "store/spool_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint32_t spool_qid_hash(const char *qid)
{
	uint32_t h = 2166136261u; /* FNV-1a: stable across runs */

	for (int i = 0; i < ENV_QID_LEN && qid[i]; i++) {
		h ^= (uint8_t)qid[i];
		h *= 16777619u;
	}
	return h;
}

int spool_index_init(struct spool_index *ix)
{
	ix->nb = 1024;
	ix->n = 0;
	ix->b = calloc(ix->nb, sizeof(*ix->b));
	return ix->b ? 0 : -ENOMEM;
}

void spool_index_free(struct spool_index *ix)
{
	for (size_t i = 0; i < ix->nb && ix->b; i++) {
		struct spool_live *m = ix->b[i], *next;

		for (; m != NULL; m = next) {
			next = m->next;
			spool_live_free(m);
		}
	}
	free(ix->b);
	ix->b = NULL;
	ix->nb = ix->n = 0;
}

struct spool_live *spool_live_new(const char *qid, uint32_t nrcpt)
{
	size_t extra = (size_t)nrcpt * (sizeof(uint64_t) + 1);
	struct spool_live *m = calloc(1, sizeof(*m) + extra);

	if (m == NULL)
		return NULL;
	memcpy(m->qid, qid, ENV_QID_LEN);
	m->nrcpt = m->pending = nrcpt;
	m->next_try_s = (uint64_t *)(m + 1);
	m->state = (uint8_t *)(m->next_try_s + nrcpt);
	return m;
}

void spool_live_free(struct spool_live *m)
{
	if (m == NULL)
		return;
	free(m->state_segs);
	free(m);
}

int spool_live_add_state_seg(struct spool_live *m, struct spool_seg *seg)
{
	if (seg == m->msg_seg)
		return 0; /* the message record's reference covers it */
	for (uint32_t i = 0; i < m->nstate_segs; i++)
		if (m->state_segs[i] == seg)
			return 0;
	if (m->nstate_segs == m->state_segs_cap) {
		uint32_t cap = m->state_segs_cap ? m->state_segs_cap * 2 : 2;
		struct spool_seg **n = realloc(m->state_segs,
					       cap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		m->state_segs = n;
		m->state_segs_cap = cap;
	}
	m->state_segs[m->nstate_segs++] = seg;
	return 1;
}

struct spool_live *spool_index_find(const struct spool_index *ix,
				    const char *qid)
{
	struct spool_live *m = ix->b[spool_qid_hash(qid) & (ix->nb - 1)];

	for (; m != NULL; m = m->next)
		if (memcmp(m->qid, qid, ENV_QID_LEN) == 0)
			return m;
	return NULL;
}

static void grow(struct spool_index *ix)
{
	size_t nb = ix->nb * 2;
	struct spool_live **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return; /* keep the longer chains */
	for (size_t i = 0; i < ix->nb; i++) {
		struct spool_live *m = ix->b[i], *next;

		for (; m != NULL; m = next) {
			size_t h = spool_qid_hash(m->qid) & (nb - 1);

			next = m->next;
			m->next = b[h];
			b[h] = m;
		}
	}
	free(ix->b);
	ix->b = b;
	ix->nb = nb;
}

int spool_index_insert(struct spool_index *ix, struct spool_live *m)
{
	size_t h;

	if (ix->n >= ix->nb)
		grow(ix);
	h = spool_qid_hash(m->qid) & (ix->nb - 1);
	m->next = ix->b[h];
	ix->b[h] = m;
	ix->n++;
	return 0;
}

void spool_index_remove(struct spool_index *ix, struct spool_live *m)
{
	struct spool_live **pp = &ix->b[spool_qid_hash(m->qid) & (ix->nb - 1)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			ix->n--;
			return;
		}
}
