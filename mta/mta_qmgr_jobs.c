/*
 * mta_qmgr_jobs.c: remote delivery jobs for the queue manager. A job is
 * up to dest_msgs_per_conn ready entries of one destination
 * (qmgr_job_build), handed to a worker over its ring (qmgr_job_send);
 * the worker delivers it and gives it back, and qmgr_drain_jobs records
 * each recipient's outcome: delivered (with a success report if asked),
 * bounced, or deferred again, and the destination's back-off when all
 * its hosts failed. qmgr_suspend_ready defers a backed-off
 * destination's ready entries without counting an attempt.
 *
 * Runs on the queue manager's thread. Owns a job (struct mta_job) from
 * qmgr_job_build until it is sent and again from its return until
 * qmgr_job_free; the entries in it stay pinned (RF_ACTIVE, the body in
 * memory) meanwhile.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ring.h>

#include "common/log.h"
#include "common/ratelimit.h"
#include "mta/mta_dsn.h"
#include "mta/mta_qmgr_int.h"

/* ---- remote jobs ---------------------------------------------------- */

void qmgr_job_free(struct mta_job *j)
{
	for (uint32_t i = 0; i < j->nmsg; i++)
		free(j->msg[i].rcpt);
	free(j->msg);
	free(j);
}

bool qmgr_job_send(struct mta_qmgr *q, struct mta_job *j)
{
	for (unsigned k = 0; k < q->nworkers; k++) {
		unsigned w = (q->rr + k) % q->nworkers;

		if (rte_ring_mp_enqueue(q->to_worker[w], j) == 0) {
			q->rr = w + 1;
			return true;
		}
	}
	return false;
}

struct mta_job *qmgr_job_build(struct mta_qmgr *q, struct dest *d,
			       uint64_t now)
{
	uint32_t max = q->c.dest_msgs_per_conn ? q->c.dest_msgs_per_conn : 1;
	struct mta_job *j;
	uint32_t n = 0;
	int rc;

	if (max > d->nready)
		max = d->nready;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	j->msg = calloc(max, sizeof(*j->msg));
	if (j->msg == NULL) {
		free(j);
		return NULL;
	}
	while (n < max) {
		struct qentry *e;
		struct mta_job_msg *jm = &j->msg[n];

		if (q->c.dest_rate != 0 && !ratelimit_allow(&d->rl, now))
			break;
		e = qmgr_dest_pop(d);
		if (e == NULL)
			break;
		jm->rcpt = calloc(e->n, sizeof(*jm->rcpt));
		if (jm->rcpt == NULL) {
			/* back at the tail; tried later */
			qmgr_dest_push(q, d, e);
			break;
		}
		rc = qmgr_body_pin(q, e->m);
		if (rc != 0) {
			free(jm->rcpt);
			jm->rcpt = NULL;
			qmgr_defer_unreadable(q, e, rc);
			continue;
		}
		jm->env = e->m->env;
		jm->qmsg = e;
		jm->nrcpt = e->n;
		for (uint32_t i = 0; i < e->n; i++) {
			jm->rcpt[i].idx = e->idx[i];
			e->m->r[e->idx[i]].flags |= RF_ACTIVE;
		}
		n++;
	}
	if (n == 0) {
		free(j->msg);
		free(j);
		return NULL;
	}
	j->nmsg = n;
	j->dest = d;
	j->nh = d->nh;
	j->queued_ms = now;
	return j;
}

static void reply_diag(const struct smtp_client_reply *rp, char *out,
		       size_t len, char *status)
{
	char st[16];

	if (mta_dsn_status_from_reply(rp->code, rp->enh[0] ? rp->enh : rp->text,
				      st, sizeof(st)) != 0)
		snprintf(st, sizeof(st), "%c.0.0",
			 rp->code >= 500 ? '5' : rp->code >= 400 ? '4' : '2');
	if (rp->enh[0] != '\0' && mta_dsn_status_valid(rp->enh) &&
	    rp->enh[0] == st[0])
		snprintf(st, sizeof(st), "%s", rp->enh);
	snprintf(status, 16, "%s", st);
	snprintf(out, len, "%s; %u %s %s", rp->local ? "x-local" : "smtp",
		 rp->code, rp->enh, rp->text);
}

static void job_finish(struct mta_qmgr *q, struct mta_job *j)
{
	struct dest *d = j->dest;
	uint64_t now = qmgr_wall_ms();
	char remote_name[MTA_HOST_MAX + 1];
	/* "mx.example.org[198.18.0.10]:25" in logs; the name in reports */
	const char *remote = remote_name;

	snprintf(remote_name, sizeof(remote_name), "%.*s",
		 (int)strcspn(j->remote_mta, "["), j->remote_mta);

	d->active--;
	__atomic_fetch_sub(&q->st.jobs_active, 1, __ATOMIC_RELAXED);
	if (j->host_failed) {
		uint64_t b = (uint64_t)q->c.dest_backoff_s * 1000u;

		for (uint32_t s = 0; s < d->fail_streak && s < 16; s++)
			b *= 2;
		if (b > (uint64_t)q->c.retry.max_interval_s * 1000u)
			b = (uint64_t)q->c.retry.max_interval_s * 1000u;
		if (d->fail_streak < 64)
			d->fail_streak++;
		d->backoff_until_ms = now + b;
		snprintf(d->why, sizeof(d->why), "%s", j->why);
		LOG(LOG_INFO, "qmgr: destination %s: delivery suspended for "
		    "%" PRIu64 " s: %s", d->key, b / 1000u, j->why);
	} else {
		d->fail_streak = 0;
		d->backoff_until_ms = 0;
	}
	for (uint32_t i = 0; i < j->nmsg; i++) {
		struct mta_job_msg *jm = &j->msg[i];
		struct qentry *e = jm->qmsg;
		struct qmsg *m = e->m;
		struct qentry *rest = NULL;
		struct mta_dsn_rcpt *succ = NULL;
		size_t nsucc = 0;
		struct mta_dsn_conf dc;

		qmgr_dsn_conf(q, &dc);
		for (uint32_t k = 0; k < jm->nrcpt; k++) {
			struct mta_job_rcpt *jr = &jm->rcpt[k];
			struct qrcpt *r = &m->r[jr->idx];

			r->flags &= (uint8_t)~RF_ACTIVE;
			reply_diag(&jr->reply, r->diag, sizeof(r->diag),
				   r->status);
			snprintf(r->remote, sizeof(r->remote), "%s",
				 remote ? remote : "");
			r->last_us = now * 1000u;
			switch (jr->status) {
			case SMTP_RCPT_DELIVERED:
				CNT(q, delivered_remote);
				qmgr_rcpt_final(q, m, jr->idx,
						SPOOL_RCPT_DELIVERED);
				if (m->env->mail_from[0] != '\0' &&
				    mta_dsn_wanted(&dc, &m->env->rcpt[jr->idx],
						   MTA_DSN_RELAYED)) {
					if (succ == NULL)
						succ = calloc(jm->nrcpt,
							      sizeof(*succ));
					if (succ != NULL)
						qmgr_fill_outcome(m, jr->idx,
							MTA_DSN_RELAYED,
							&succ[nsucc++]);
				}
				break;
			case SMTP_RCPT_BOUNCED:
				qmgr_rcpt_fail(q, m, jr->idx, r->status,
					       r->diag, remote);
				break;
			case SMTP_RCPT_DEFERRED:
			default:
				if (rest == NULL)
					rest = qmgr_entry_new(m, e->n);
				if (rest == NULL) {
					LOG(LOG_ERR, "qmgr: %s: out of memory",
					    m->env->qid);
					break;
				}
				rest->d = d;
				rest->idx[rest->n++] = jr->idx;
				break;
			}
		}
		if (nsucc > 0)
			qmgr_send_report(q, m, succ, nsucc);
		free(succ);
		if (rest != NULL)
			qmgr_defer_entry(q, rest, true, j->host_failed ?
					 d->backoff_until_ms : 0);
		qmgr_maybe_bounce(q, m);
		qmgr_body_unpin(q, m);
		qmgr_entry_free(q, e);
	}
	qmgr_job_free(j);
}

unsigned qmgr_drain_jobs(struct mta_qmgr *q)
{
	struct mta_job *jobs[32];
	unsigned n, total = 0;

	do {
		n = rte_ring_sc_dequeue_burst(q->back, (void **)jobs, 32, NULL);
		for (unsigned i = 0; i < n; i++)
			job_finish(q, jobs[i]);
		total += n;
	} while (n == 32);
	return total;
}

/* A destination whose hosts all failed a moment ago: its recipients
 * wait for the back-off without an attempt being counted. */
void qmgr_suspend_ready(struct mta_qmgr *q, struct dest *d)
{
	struct qentry *e;

	while ((e = qmgr_dest_pop(d)) != NULL) {
		for (uint32_t i = 0; i < e->n; i++) {
			struct qrcpt *r = &e->m->r[e->idx[i]];

			snprintf(r->status, sizeof(r->status), "4.4.1");
			snprintf(r->diag, sizeof(r->diag),
				 "x-local; 451 4.4.1 delivery temporarily "
				 "suspended: %s", d->why);
		}
		qmgr_defer_entry(q, e, false, d->backoff_until_ms);
	}
}
