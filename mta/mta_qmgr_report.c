/*
 * mta_qmgr_report.c: the queue manager's delivery status notifications
 * (RFC 3464): bounces for recipients that failed (qmgr_maybe_bounce),
 * and delay and success reports (qmgr_send_report), each rendered by
 * mta_dsn_render with the original message's body and queued through
 * the spool as a message of its own, which is admitted like any other
 * once durable (the spool request's completion, in mta_qmgr.c).
 *
 * A bounce changes its recipients' state: they are marked bounced only
 * once the bounce is durable. Delay and success reports change none:
 * fire and forget. Runs on the queue manager's thread; owns nothing
 * past a call but the spool requests it submits (struct qreq).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mta/mta_dsn.h"
#include "mta/mta_qmgr_int.h"
#include "store/spool.h"

/* ---- bounce, delay and success reports ------------------------------ */

void qmgr_dsn_conf(const struct mta_qmgr *q, struct mta_dsn_conf *dc)
{
	memset(dc, 0, sizeof(*dc));
	dc->reporting_mta = q->c.hostname;
	dc->double_bounce_to = q->c.double_bounce_to;
	dc->now_us = qmgr_wall_ms() * 1000u;
}

/* A report (bounce, delay or success) made into a message of its own. */
static struct envelope *report_env(struct mta_qmgr *q, struct envelope *b)
{
	spool_qid_next(q->sp, q->me, b->qid);
	if (envelope_set_str(&b->helo, q->c.hostname, SIZE_MAX) != 0 ||
	    envelope_set_str(&b->client_addr, "127.0.0.1", SIZE_MAX) != 0) {
		envelope_free(b);
		return NULL;
	}
	return b;
}

void qmgr_fill_outcome(const struct qmsg *m, uint32_t idx,
		       enum mta_dsn_action a, struct mta_dsn_rcpt *o)
{
	const struct qrcpt *r = &m->r[idx];

	memset(o, 0, sizeof(*o));
	o->rcpt = idx;
	o->action = a;
	o->status = mta_dsn_status_valid(r->status) ? r->status : NULL;
	if (o->status != NULL) {
		char cls = r->status[0];
		bool ok = (a == MTA_DSN_FAILED && (cls == '4' || cls == '5')) ||
			  (a == MTA_DSN_DELAYED && cls == '4') ||
			  (a >= MTA_DSN_DELIVERED && cls == '2');
		if (!ok)
			o->status = NULL;
	}
	o->remote_mta = r->remote[0] && strcmp(r->remote, "local") != 0 ?
			r->remote : NULL;
	o->diagnostic = r->diag[0] ? r->diag : NULL;
	o->last_attempt_us = r->last_us;
}

/* Reports for recipients that do not change state (delays, successes):
 * fire and forget; the report is queued like any message. */
/* mta_dsn_render with the body in memory; a body the spool cannot give
 * back leaves the report without the original message (it still says
 * what became of each recipient). */
static int render_report(struct mta_qmgr *q, struct qmsg *m,
			 const struct mta_dsn_conf *dc,
			 const struct mta_dsn_rcpt *o, size_t n,
			 struct envelope **b)
{
	bool pinned = qmgr_body_pin(q, m) == 0;
	size_t len = m->env->body_len;
	int rc;

	if (!pinned)
		m->env->body_len = 0;
	rc = mta_dsn_render(dc, m->env, o, n, b);
	if (pinned)
		qmgr_body_unpin(q, m);
	else
		m->env->body_len = len;
	return rc;
}

void qmgr_send_report(struct mta_qmgr *q, struct qmsg *m,
		      const struct mta_dsn_rcpt *o, size_t n)
{
	struct mta_dsn_conf dc;
	struct envelope *b = NULL;
	struct qreq *x;
	int rc;

	qmgr_dsn_conf(q, &dc);
	rc = render_report(q, m, &dc, o, n, &b);
	if (rc <= 0) {
		if (rc < 0)
			LOG(LOG_ERR, "qmgr: %s: cannot render a report: %s",
			    m->env->qid, strerror(-rc));
		return;
	}
	b = report_env(q, b);
	x = b != NULL ? calloc(1, sizeof(*x)) : NULL;
	if (x == NULL) {
		envelope_free(b);
		LOG(LOG_ERR, "qmgr: %s: out of memory for a report",
		    m->env->qid);
		return;
	}
	x->kind = QR_REPORT;
	x->dsn = b;
	x->r.type = SPOOL_REQ_MSG;
	x->r.env = b;
	LOG(LOG_INFO, "qmgr: %s: sender %s notification: %s",
	    m->env->qid, o[0].action == MTA_DSN_DELAYED ? "delay" : "delivery",
	    b->qid);
	CNT(q, dsn_sent);
	qmgr_req_submit(q, x);
}

/* Every recipient marked RF_FAIL and not yet on the way gets one bounce;
 * they are marked bounced once it is durable. */
void qmgr_maybe_bounce(struct mta_qmgr *q, struct qmsg *m)
{
	struct mta_dsn_rcpt *o;
	struct mta_dsn_conf dc;
	struct envelope *b = NULL;
	struct qreq *x;
	uint32_t n = 0, *idx;
	int rc;

	for (uint32_t i = 0; i < m->env->nrcpt; i++)
		if ((m->r[i].flags & (RF_FAIL | RF_BOUNCING)) == RF_FAIL)
			n++;
	if (n == 0)
		return;
	o = calloc(n, sizeof(*o));
	idx = calloc(n, sizeof(*idx));
	x = calloc(1, sizeof(*x));
	if (o == NULL || idx == NULL || x == NULL)
		goto nomem;
	n = 0;
	for (uint32_t i = 0; i < m->env->nrcpt; i++)
		if ((m->r[i].flags & (RF_FAIL | RF_BOUNCING)) == RF_FAIL) {
			qmgr_fill_outcome(m, i, MTA_DSN_FAILED, &o[n]);
			idx[n++] = i;
		}
	qmgr_dsn_conf(q, &dc);
	rc = render_report(q, m, &dc, o, n, &b);
	free(o);
	o = NULL;
	if (rc < 0) {
		LOG(LOG_ERR, "qmgr: %s: cannot render a bounce: %s",
		    m->env->qid, strerror(-rc));
	}
	if (rc <= 0) {
		/* nobody to tell (the null sender) */
		if (rc == 0)
			LOG(LOG_INFO, "qmgr: %s: no bounce: null sender",
			    m->env->qid);
		for (uint32_t i = 0; i < n; i++)
			qmgr_rcpt_final(q, m, idx[i], SPOOL_RCPT_BOUNCED);
		free(idx);
		free(x);
		return;
	}
	b = report_env(q, b);
	if (b == NULL)
		goto nomem;
	for (uint32_t i = 0; i < n; i++)
		m->r[idx[i]].flags |= RF_BOUNCING;
	x->kind = QR_BOUNCE;
	x->m = m;
	x->dsn = b;
	x->n = n;
	x->idx = idx;
	x->r.type = SPOOL_REQ_MSG;
	x->r.env = b;
	m->refs++;
	LOG(LOG_INFO, "qmgr: %s: sender non-delivery notification: %s",
	    m->env->qid, b->qid);
	CNT(q, dsn_sent);
	qmgr_req_submit(q, x);
	return;
nomem:
	LOG(LOG_ERR, "qmgr: %s: out of memory for a bounce; retried later",
	    m->env->qid);
	free(o);
	free(idx);
	free(x);
}
