/*
 * mta_qmgr_recover.c: the queue manager's start-up: the live queue read
 * back from the spool. The spool index names every live message and the
 * state of each recipient; one scan of the spool's records finds each
 * message, and every one found is admitted again (qmgr_admit) with its
 * recipients' states. A message the index names but the scan does not
 * find is counted unreadable and logged.
 *
 * Runs once, in mta_qmgr_new, before the queue manager's threads start.
 * Owns only its own scratch (struct recov), freed before it returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mta/mta_qmgr_int.h"
#include "store/spool.h"

/* ---- start-up: the live queue back from the spool ------------------- */

struct rec {
	char qid[ENV_QID_LEN + 1];
	uint32_t nrcpt;
	uint8_t *state;
	uint64_t *next_try_s;
	bool found;
};

struct recov {
	struct mta_qmgr *q;
	struct rec *v;
	size_t n, cap;
	size_t *tab;     /* open addressing: index + 1, 0 = empty */
	size_t tabn;
	struct mta_qmgr_recovery *rep;
	int err;
};

static int live_cb(void *arg, const char *qid, uint32_t nrcpt,
		   const uint8_t *state, const uint64_t *next_try_s)
{
	struct recov *rc = arg;
	struct rec *r;

	if (rc->n == rc->cap) {
		size_t cap = rc->cap ? rc->cap * 2 : 256;
		struct rec *v = realloc(rc->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		rc->v = v;
		rc->cap = cap;
	}
	r = &rc->v[rc->n];
	memset(r, 0, sizeof(*r));
	snprintf(r->qid, sizeof(r->qid), "%s", qid);
	r->nrcpt = nrcpt;
	r->state = malloc(nrcpt ? nrcpt : 1);
	r->next_try_s = malloc((nrcpt ? nrcpt : 1) * sizeof(uint64_t));
	if (r->state == NULL || r->next_try_s == NULL) {
		free(r->state);
		free(r->next_try_s);
		return -ENOMEM;
	}
	memcpy(r->state, state, nrcpt);
	memcpy(r->next_try_s, next_try_s, nrcpt * sizeof(uint64_t));
	rc->n++;
	return 0;
}

static struct rec *rec_find(struct recov *rc, const char *qid)
{
	size_t h = qmgr_key_hash(qid) % rc->tabn;

	while (rc->tab[h] != 0) {
		struct rec *r = &rc->v[rc->tab[h] - 1];

		if (strcmp(r->qid, qid) == 0)
			return r;
		h = (h + 1) % rc->tabn;
	}
	return NULL;
}

static int scan_cb(void *arg, const struct spool_scan_rec *sr)
{
	struct recov *rc = arg;
	struct rec *r;
	struct envelope *env;

	if (sr->bad || sr->type != SPOOL_REQ_MSG || sr->env == NULL)
		return 0;
	r = rec_find(rc, sr->env->qid);
	if (r == NULL || r->found || r->nrcpt != sr->env->nrcpt)
		return 0;
	env = envelope_dup(sr->env);
	if (env == NULL)
		return -ENOMEM;
	r->found = true;
	rc->rep->messages++;
	for (uint32_t i = 0; i < r->nrcpt; i++) {
		if (r->state[i] == SPOOL_RCPT_PENDING)
			rc->rep->rcpts_pending++;
		else if (r->state[i] == SPOOL_RCPT_DEFERRED)
			rc->rep->rcpts_deferred++;
	}
	qmgr_admit(rc->q, env, r->state, r->next_try_s);
	return 0;
}

int qmgr_recover(struct mta_qmgr *q, struct mta_qmgr_recovery *rep)
{
	struct recov rc = { .q = q, .rep = rep };
	int err;

	err = spool_live_foreach(q->sp, live_cb, &rc);
	if (err == 0 && rc.n > 0) {
		rc.tabn = rc.n * 2 + 1;
		rc.tab = calloc(rc.tabn, sizeof(*rc.tab));
		if (rc.tab == NULL) {
			err = -ENOMEM;
		} else {
			for (size_t i = 0; i < rc.n; i++) {
				size_t h = qmgr_key_hash(rc.v[i].qid) % rc.tabn;
				while (rc.tab[h] != 0)
					h = (h + 1) % rc.tabn;
				rc.tab[h] = i + 1;
			}
			err = spool_scan(q->c.spool_dir, scan_cb, &rc);
		}
	}
	for (size_t i = 0; i < rc.n; i++) {
		if (!rc.v[i].found && err == 0) {
			rep->unreadable++;
			LOG(LOG_ERR, "qmgr: %s: live in the spool index but its "
			    "message record was not found", rc.v[i].qid);
		}
		free(rc.v[i].state);
		free(rc.v[i].next_try_s);
	}
	free(rc.v);
	free(rc.tab);
	return err;
}
