/*
 * mta_qmgr_local.c: local delivery for the queue manager. The queue
 * manager's thread gathers ready entries of the local destination into
 * one batch (qmgr_local_dispatch) and hands it to the local delivery
 * thread (qmgr_local_main), which runs mailbox_deliver on it and nothing
 * else; back on the queue manager's thread, qmgr_local_collect records
 * each recipient's outcome: delivered, bounced, or deferred again.
 *
 * Owns the batch (struct local, in struct mta_qmgr): its items, the
 * entry and recipient of each, and the phase, which is handed over
 * under its mutex (0 idle, 1 with the delivery thread, 2 done).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mta/mta_dsn.h"
#include "mta/mta_qmgr_int.h"
#include "store/mailbox.h"

/* ---- local delivery ------------------------------------------------- */

void *qmgr_local_main(void *arg)
{
	struct local *l = arg;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (l->phase != 1 && !l->stop)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->stop)
			break;
		pthread_mutex_unlock(&l->mu);
		mailbox_deliver(l->ms, l->items, l->n);
		pthread_mutex_lock(&l->mu);
		l->phase = 2;
		qmgr_kick(l->q);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

int qmgr_local_phase(struct local *l)
{
	int p;

	pthread_mutex_lock(&l->mu);
	p = l->phase;
	pthread_mutex_unlock(&l->mu);
	return p;
}

unsigned qmgr_local_dispatch(struct mta_qmgr *q)
{
	struct local *l = &q->loc;
	struct dest *d = q->local_dest;
	size_t n = 0;

	if (d->nready == 0 || qmgr_local_phase(l) != 0)
		return 0;
	while (d->head != NULL &&
	       (n == 0 || n + d->head->n <= q->c.local_batch)) {
		struct qentry *e = qmgr_dest_pop(d);
		struct envelope *env = e->m->env;
		int rc;

		if (n + e->n > l->cap) {
			size_t cap = (n + e->n) * 2;
			void *a = realloc(l->items, cap * sizeof(*l->items));
			if (a != NULL)
				l->items = a;
			void *b = realloc(l->ents, cap * sizeof(*l->ents));
			if (b != NULL)
				l->ents = b;
			void *c = realloc(l->idx, cap * sizeof(*l->idx));
			if (c != NULL)
				l->idx = c;
			if (a == NULL || b == NULL || c == NULL) {
				qmgr_dest_push(q, d, e);
				break;
			}
			l->cap = cap;
		}
		rc = qmgr_body_pin(q, e->m);
		if (rc != 0) {
			qmgr_defer_unreadable(q, e, rc);
			continue;
		}
		for (uint32_t i = 0; i < e->n; i++) {
			struct mailbox_item *it = &l->items[n];
			uint32_t idx = e->idx[i];

			memset(it, 0, sizeof(*it));
			e->m->r[idx].flags |= RF_ACTIVE;
			it->mailbox = e->m->r[idx].mailbox;
			it->return_path = env->mail_from;
			it->delivered_to = env->rcpt[idx].addr;
			it->body = env->body;
			it->body_len = env->body_len;
			it->arrival_us = env->arrival_us;
			l->ents[n] = i == 0 ? e : NULL; /* the entry, once */
			l->idx[n] = idx;
			n++;
		}
	}
	if (n == 0)
		return 0;
	l->n = n;
	CNT(q, local_batches);
	pthread_mutex_lock(&l->mu);
	l->phase = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return 1;
}

unsigned qmgr_local_collect(struct mta_qmgr *q)
{
	struct local *l = &q->loc;
	uint64_t now = qmgr_wall_ms();
	struct qentry *e = NULL, *rest = NULL;
	struct mta_dsn_conf dc;

	if (qmgr_local_phase(l) != 2)
		return 0;
	qmgr_dsn_conf(q, &dc);
	for (size_t k = 0; k <= l->n; k++) {
		if (k == l->n || l->ents[k] != NULL) {
			/* the previous entry is complete */
			if (e != NULL) {
				struct qmsg *m = e->m;

				if (rest != NULL)
					qmgr_defer_entry(q, rest, true, 0);
				qmgr_maybe_bounce(q, m);
				qmgr_body_unpin(q, m);
				qmgr_entry_free(q, e);
			}
			if (k == l->n)
				break;
			e = l->ents[k];
			rest = NULL;
		}
		struct qmsg *m = e->m;
		uint32_t idx = l->idx[k];
		struct qrcpt *r = &m->r[idx];
		struct mailbox_item *it = &l->items[k];
		uint64_t delay = qmgr_msg_delay_ms(m, now);

		r->flags &= (uint8_t)~RF_ACTIVE;
		snprintf(r->remote, sizeof(r->remote), "local");
		r->last_us = now * 1000u;
		if (it->status == 0) {
			LOG(LOG_INFO, "local: %s: to=<%s>, relay=local, "
			    "delay=%" PRIu64 ".%02" PRIu64 ", dsn=2.0.0, "
			    "status=sent (delivered to maildir %s uid %u)",
			    m->env->qid, it->delivered_to, delay / 1000u,
			    (delay % 1000u) / 10u, it->mailbox, it->uid);
			CNT(q, delivered_local);
			qmgr_rcpt_final(q, m, idx, SPOOL_RCPT_DELIVERED);
			if (m->env->mail_from[0] != '\0' &&
			    mta_dsn_wanted(&dc, &m->env->rcpt[idx],
					   MTA_DSN_DELIVERED)) {
				struct mta_dsn_rcpt o;
				snprintf(r->status, sizeof(r->status), "2.0.0");
				snprintf(r->diag, sizeof(r->diag),
					 "x-local; 250 2.0.0 delivered to "
					 "mailbox");
				qmgr_fill_outcome(m, idx, MTA_DSN_DELIVERED,
						  &o);
				qmgr_send_report(q, m, &o, 1);
			}
			continue;
		}
		if (it->status == -EINVAL) {
			snprintf(r->diag, sizeof(r->diag), "x-local; 550 5.3.0 "
				 "cannot deliver to mailbox %s", it->mailbox);
			LOG(LOG_INFO, "local: %s: to=<%s>, relay=local, "
			    "delay=%" PRIu64 ".%02" PRIu64 ", dsn=5.3.0, "
			    "status=bounced (%s)", m->env->qid,
			    it->delivered_to, delay / 1000u,
			    (delay % 1000u) / 10u, r->diag + 9);
			qmgr_rcpt_fail(q, m, idx, "5.3.0", r->diag, "local");
		} else {
			if (it->status == -EDQUOT) {
				snprintf(r->status, sizeof(r->status), "4.2.2");
				snprintf(r->diag, sizeof(r->diag),
					 "x-local; 452 4.2.2 mailbox %s is "
					 "over quota", it->mailbox);
			} else {
				snprintf(r->status, sizeof(r->status), "4.3.0");
				snprintf(r->diag, sizeof(r->diag),
					 "x-local; 451 4.3.0 mailbox %s: %s",
					 it->mailbox, strerror(-it->status));
			}
			LOG(LOG_INFO, "local: %s: to=<%s>, relay=local, "
			    "delay=%" PRIu64 ".%02" PRIu64 ", dsn=%s, "
			    "status=deferred (%s)", m->env->qid,
			    it->delivered_to, delay / 1000u,
			    (delay % 1000u) / 10u, r->status, r->diag + 9);
			if (rest == NULL)
				rest = qmgr_entry_new(m, e->n);
			if (rest != NULL) {
				rest->d = q->local_dest;
				rest->idx[rest->n++] = idx;
			}
		}
	}
	pthread_mutex_lock(&l->mu);
	l->phase = 0;
	pthread_mutex_unlock(&l->mu);
	return 1;
}
