/*
 * spool_index.h: the in-memory index of live messages.
 *
 * Owns: one entry per live message (a recipient still PENDING or
 * DEFERRED): its recipients' states and the segments that hold its
 * records (the message record and its state records), on which it holds
 * a reference each. One index per writer thread; a queue ID always maps
 * to the same writer, so an index is touched by its writer only (and by
 * the main thread before the writers start / after they stop).
 */
#ifndef DPMAIL_STORE_SPOOL_INDEX_H
#define DPMAIL_STORE_SPOOL_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

struct spool_seg;

struct spool_live {
	struct spool_live *next;     /* hash chain */
	char qid[ENV_QID_LEN + 1];
	uint32_t nrcpt, pending;     /* pending: PENDING or DEFERRED */
	struct spool_seg *msg_seg;
	struct spool_seg **state_segs;
	uint32_t nstate_segs, state_segs_cap;
	uint64_t *next_try_s;        /* [nrcpt] */
	uint8_t *state;              /* [nrcpt], enum spool_rcpt_state */
};

struct spool_index {
	struct spool_live **b;
	size_t nb, n;
};

int spool_index_init(struct spool_index *ix);
/* Frees the entries (not the segments they point to) and the table. */
void spool_index_free(struct spool_index *ix);

uint32_t spool_qid_hash(const char *qid);

/* A new entry, every recipient PENDING, not yet in any index. */
struct spool_live *spool_live_new(const char *qid, uint32_t nrcpt);
void spool_live_free(struct spool_live *m);
/* Remembers that seg holds a state record of m (once per segment).
 * 1 if added (the caller takes a reference), 0 if known, -ENOMEM. */
int spool_live_add_state_seg(struct spool_live *m, struct spool_seg *seg);

struct spool_live *spool_index_find(const struct spool_index *ix,
				    const char *qid);
int spool_index_insert(struct spool_index *ix, struct spool_live *m);
void spool_index_remove(struct spool_index *ix, struct spool_live *m);

#endif
