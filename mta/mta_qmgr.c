/*
 * mta_qmgr.c: the queue manager's thread: admission (routing every
 * recipient), per-destination queues and jobs, the deferred list, bounce
 * and delay reports, state records to the spool, and the local delivery
 * thread.
 *
 * Everything here runs on the queue manager's thread except the ring
 * entry points (mta_qmgr_submit, _worker_jobs, _job_done: workers) and
 * the local delivery thread (mailbox_deliver only; it shares nothing but
 * its batch, handed over under a mutex). No lock on any worker path: a
 * worker only enqueues or dequeues on rings.
 *
 * Must never: mark a recipient delivered or bounced before the delivery
 * (or the bounce) is durable; free a message while a job, a batch or a
 * spool request still points at it; block a worker.
 *
 * The core is here; the local delivery thread is in mta_qmgr_local.c,
 * remote jobs in mta_qmgr_jobs.c, bounce and delay reports in
 * mta_qmgr_report.c, control requests (dpmailctl) in mta_qmgr_ctl.c, the
 * queue read back at start-up in mta_qmgr_recover.c. What they share:
 * mta_qmgr_int.h.
 */
#include "mta/mta_qmgr.h"
#include "mta/mta_qmgr_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <rte_ring.h>

#include "common/log.h"
#include "common/ratelimit.h"
#include "mta/mta_dsn.h"
#include "mta/mta_route.h"
#include "store/spool.h"

#define IN_RING (1u << 16)
#define JOB_RING (1u << 12)
#define SCAN_MS 250
#define SPOOL_RETRY_MS 1000

uint64_t qmgr_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void mta_qmgr_conf_defaults(struct mta_qmgr_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->hostname, sizeof(c->hostname), "localhost");
	snprintf(c->spool_dir, sizeof(c->spool_dir), "var/spool");
	c->dest_concurrency = 10;
	c->dest_msgs_per_conn = 100;
	c->dest_rate = 0;
	c->dest_backoff_s = 60;
	c->delay_warning_s = 14400;
	c->max_received = 50;
	c->local_batch = 256;
	c->memory_mb = 256;
	mta_retry_conf_defaults(&c->retry);
	mailbox_conf_defaults(&c->mailbox);
}

/* ---- messages ------------------------------------------------------- */

static void body_account(struct mta_qmgr *q, int64_t delta)
{
	q->body_bytes += (uint64_t)delta;
	GAUGE(q, body_bytes, q->body_bytes);
}

static struct qmsg *qmsg_new(struct mta_qmgr *q, struct envelope *env)
{
	struct qmsg *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->r = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*m->r));
	if (m->r == NULL) {
		free(m);
		return NULL;
	}
	m->env = env;
	m->open = env->nrcpt;
	body_account(q, (int64_t)env->body_len);
	m->next = q->live;
	if (q->live != NULL)
		q->live->prev = m;
	q->live = m;
	__atomic_fetch_add(&q->st.msgs_live, 1, __ATOMIC_RELAXED);
	return m;
}

static void lru_unlink(struct mta_qmgr *q, struct qmsg *m)
{
	if (!m->on_lru)
		return;
	if (m->lprev != NULL)
		m->lprev->lnext = m->lnext;
	else
		q->lru_head = m->lnext;
	if (m->lnext != NULL)
		m->lnext->lprev = m->lprev;
	else
		q->lru_tail = m->lprev;
	m->lprev = m->lnext = NULL;
	m->on_lru = false;
}

static void qmsg_free(struct mta_qmgr *q, struct qmsg *m)
{
	lru_unlink(q, m);
	if (!m->body_out)
		body_account(q, -(int64_t)m->env->body_len);
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		q->live = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	for (uint32_t i = 0; i < m->env->nrcpt; i++)
		free(m->r[i].mailbox);
	free(m->r);
	envelope_free(m->env);
	free(m);
	__atomic_fetch_sub(&q->st.msgs_live, 1, __ATOMIC_RELAXED);
}

void qmsg_unref(struct mta_qmgr *q, struct qmsg *m)
{
	if (--m->refs == 0 && m->open == 0) {
		LOG(LOG_INFO, "qmgr: %s: removed", m->env->qid);
		qmsg_free(q, m);
	}
}

/* ---- bodies in memory ([mta] memory_mb) ------------------------------
 * Every body stays in memory while it fits, and past the cap the bodies
 * of messages nothing is using (on the LRU list, least recently used
 * first) are let go: a deferred queue of millions costs its envelopes,
 * not its bodies. A job, a mailbox batch or a report pins the body,
 * read back first from the spool (spool_read_body: the record, CRC
 * checked) if it was let go. A message the spool cannot place (no
 * location: never the case for what came through it) keeps its body. */

static void lru_push(struct mta_qmgr *q, struct qmsg *m)
{
	if (m->on_lru || m->pins > 0 || m->body_out ||
	    !m->env->spool_at.set)
		return;
	m->lprev = q->lru_tail;
	m->lnext = NULL;
	if (q->lru_tail != NULL)
		q->lru_tail->lnext = m;
	else
		q->lru_head = m;
	q->lru_tail = m;
	m->on_lru = true;
}

void qmgr_body_trim(struct mta_qmgr *q)
{
	uint64_t cap = (uint64_t)q->c.memory_mb << 20;

	while (q->body_bytes > cap && q->lru_head != NULL) {
		struct qmsg *m = q->lru_head;

		lru_unlink(q, m);
		body_account(q, -(int64_t)m->env->body_len);
		free(m->env->body);
		m->env->body = NULL;
		m->env->body_cap = 0;
		m->body_out = true;
		CNT(q, bodies_dropped);
	}
}

/* The body in memory, pinned, before something reads it. 0, or the
 * spool's error (logged, counted): the caller defers or does without. */
int qmgr_body_pin(struct mta_qmgr *q, struct qmsg *m)
{
	if (m->body_out) {
		int rc = spool_read_body(q->sp, m->env);

		if (rc != 0) {
			CNT(q, body_read_errors);
			LOG_RL(LOG_ERR, "qmgr: %s: cannot read the message "
			       "back from the spool: %s", m->env->qid,
			       strerror(-rc));
			return rc;
		}
		m->body_out = false;
		body_account(q, (int64_t)m->env->body_len);
		CNT(q, bodies_read);
	}
	lru_unlink(q, m);
	m->pins++;
	return 0;
}

void qmgr_body_unpin(struct mta_qmgr *q, struct qmsg *m)
{
	if (--m->pins == 0) {
		lru_push(q, m);
		qmgr_body_trim(q);
	}
}

/* An entry whose body could not be read: its recipients wait for the
 * next try (the spool may be back by then). */
void qmgr_defer_unreadable(struct mta_qmgr *q, struct qentry *e, int err)
{
	for (uint32_t i = 0; i < e->n; i++) {
		struct qrcpt *r = &e->m->r[e->idx[i]];

		snprintf(r->status, sizeof(r->status), "4.3.0");
		snprintf(r->diag, sizeof(r->diag), "x-local; 451 4.3.0 cannot "
			 "read the message back from the spool: %s",
			 strerror(-err));
	}
	qmgr_defer_entry(q, e, true, 0);
}

uint64_t qmgr_msg_delay_ms(const struct qmsg *m, uint64_t now)
{
	uint64_t a = m->env->arrival_us / 1000u;

	return now > a ? now - a : 0;
}

/* ---- spool requests ------------------------------------------------- */

void qmgr_req_submit(struct mta_qmgr *q, struct qreq *x)
{
	int rc;

	x->r.worker = q->me;
	x->r.user = x;
	x->r.status = 0;
	rc = spool_submit(q->sp, &x->r);
	if (rc == 0) {
		q->reqs_out++;
		return;
	}
	x->retry_ms = qmgr_wall_ms() + 10;
	x->next = q->retry;
	q->retry = x;
	CNT(q, spool_retries);
}

static void state_write(struct mta_qmgr *q, struct qmsg *m, uint32_t idx,
			uint8_t state, uint64_t next_try_s)
{
	struct qreq *x = calloc(1, sizeof(*x));

	if (x == NULL) {
		/* the record is lost; the recipient is delivered again
		 * after a restart (at least once, never lost) */
		LOG(LOG_ERR, "qmgr: %s: out of memory for a state record",
		    m->env->qid);
		return;
	}
	x->kind = QR_STATE;
	x->m = m;
	x->r.type = SPOOL_REQ_STATE;
	memcpy(x->r.qid, m->env->qid, sizeof(x->r.qid));
	x->r.rcpt = idx;
	x->r.state = state;
	x->r.next_try_s = next_try_s;
	m->refs++;
	CNT(q, state_records);
	qmgr_req_submit(q, x);
}

void qmgr_rcpt_final(struct mta_qmgr *q, struct qmsg *m, uint32_t idx,
		     uint8_t state)
{
	struct qrcpt *r = &m->r[idx];

	if (r->state == SPOOL_RCPT_DELIVERED || r->state == SPOOL_RCPT_BOUNCED)
		return;
	r->state = state;
	r->flags &= (uint8_t)~(RF_FAIL | RF_BOUNCING);
	m->open--;
	state_write(q, m, idx, state, 0);
}

void qmgr_rcpt_fail(struct mta_qmgr *q, struct qmsg *m, uint32_t idx,
		    const char *status, const char *diag,
		    const char *remote)
{
	struct qrcpt *r = &m->r[idx];

	r->flags |= RF_FAIL;
	/* the caller may pass the recipient's own fields */
	if (status != r->status)
		snprintf(r->status, sizeof(r->status), "%s", status);
	if (diag != r->diag)
		snprintf(r->diag, sizeof(r->diag), "%s", diag);
	if (remote != r->remote)
		snprintf(r->remote, sizeof(r->remote), "%s",
			 remote ? remote : "");
	r->last_us = qmgr_wall_ms() * 1000u;
	CNT(q, bounced);
}

static void on_req_done(struct mta_qmgr *q, struct qreq *x)
{
	struct qmsg *m = x->m;

	q->reqs_out--;
	if (x->r.status != 0 && x->r.status != -EALREADY &&
	    x->r.status != -ENOENT && x->r.status != -EEXIST &&
	    x->r.status != -EINVAL && x->r.status != -E2BIG) {
		/* not durable (disk full, I/O error): again later */
		x->retry_ms = qmgr_wall_ms() + SPOOL_RETRY_MS;
		x->next = q->retry;
		q->retry = x;
		CNT(q, spool_retries);
		return;
	}
	if (x->r.status != 0)
		LOG(LOG_ERR, "qmgr: %s: spool refused a request: %s",
		    x->kind == QR_STATE ? x->r.qid : x->dsn->qid,
		    strerror(-x->r.status));
	switch (x->kind) {
	case QR_STATE:
		qmsg_unref(q, m);
		break;
	case QR_BOUNCE:
		for (uint32_t i = 0; i < x->n; i++)
			qmgr_rcpt_final(q, m, x->idx[i], SPOOL_RCPT_BOUNCED);
		if (x->r.status == 0)
			qmgr_admit(q, x->dsn, NULL, NULL);
		else
			envelope_free(x->dsn);
		qmsg_unref(q, m);
		free(x->idx);
		break;
	case QR_REPORT:
		if (x->r.status == 0)
			qmgr_admit(q, x->dsn, NULL, NULL);
		else
			envelope_free(x->dsn);
		break;
	}
	free(x);
}

static unsigned drain_spool(struct mta_qmgr *q)
{
	struct spool_req *done[64];
	unsigned n, total = 0;

	do {
		n = spool_completions(q->sp, q->me, done, 64);
		for (unsigned i = 0; i < n; i++)
			on_req_done(q, done[i]->user);
		total += n;
	} while (n == 64);
	return total;
}

static unsigned retry_reqs(struct mta_qmgr *q, uint64_t now)
{
	struct qreq *list = q->retry, *x;
	unsigned n = 0;

	q->retry = NULL;
	while (list != NULL) {
		x = list;
		list = x->next;
		if (x->retry_ms > now) {
			x->next = q->retry;
			q->retry = x;
			continue;
		}
		qmgr_req_submit(q, x);
		n++;
	}
	return n;
}

/* ---- destinations --------------------------------------------------- */

uint32_t qmgr_key_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

struct dest *qmgr_dest_get(struct mta_qmgr *q, const char *key,
			   const struct mta_nexthop *nh, bool local)
{
	uint32_t b = qmgr_key_hash(key) % DEST_BUCKETS;
	struct dest *d;

	for (d = q->buckets[b]; d != NULL; d = d->hnext)
		if (strcmp(d->key, key) == 0)
			return d;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	snprintf(d->key, sizeof(d->key), "%s", key);
	if (nh != NULL)
		d->nh = *nh;
	d->local = local;
	ratelimit_init(&d->rl, q->c.dest_rate, q->c.dest_rate ? q->c.dest_rate : 1,
		       qmgr_wall_ms());
	d->hnext = q->buckets[b];
	q->buckets[b] = d;
	__atomic_fetch_add(&q->st.dests, 1, __ATOMIC_RELAXED);
	return d;
}

void qmgr_dest_push(struct mta_qmgr *q, struct dest *d, struct qentry *e)
{
	e->d = d;
	if (e->m->held) {
		e->next = q->held;
		q->held = e;
		return;
	}
	e->next = NULL;
	if (d->tail != NULL)
		d->tail->next = e;
	else
		d->head = e;
	d->tail = e;
	d->nready++;
	if (!d->on_work) {
		d->on_work = true;
		d->wnext = q->work;
		q->work = d;
	}
}

struct qentry *qmgr_dest_pop(struct dest *d)
{
	struct qentry *e = d->head;

	if (e != NULL) {
		d->head = e->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->nready--;
		e->next = NULL;
	}
	return e;
}

struct qentry *qmgr_entry_new(struct qmsg *m, uint32_t n)
{
	struct qentry *e = calloc(1, sizeof(*e) + n * sizeof(uint32_t));

	if (e != NULL) {
		e->m = m;
		m->refs++;
	}
	return e;
}

void qmgr_entry_free(struct mta_qmgr *q, struct qentry *e)
{
	struct qmsg *m = e->m;

	free(e);
	qmsg_unref(q, m);
}

/* ---- deferral ------------------------------------------------------- */

void qmgr_defer_push(struct mta_qmgr *q, struct qentry *e)
{
	e->next = q->deferred;
	q->deferred = e;
	e->d->ndeferred++;
}

/*
 * The recipients of e failed temporarily (their status and diag are
 * set). count: whether this was an attempt (back-off grows) or the
 * destination is only suspended. Expired ones fail; the rest wait.
 */
void qmgr_defer_entry(struct mta_qmgr *q, struct qentry *e, bool count,
		      uint64_t not_before_ms)
{
	struct qmsg *m = e->m;
	/* Whole seconds, rounded so that nothing comes early: a retry
	 * is scheduled from now rounded up; expiry and delay warnings
	 * compare now rounded down with the arrival rounded up (the last
	 * retry, capped at arrival + lifetime, then finds it expired). */
	uint64_t now = qmgr_wall_ms(), now_up = (now + 999u) / 1000u;
	uint64_t now_s = now / 1000u;
	uint64_t arrival_s = (m->env->arrival_us + 999999u) / 1000000u;
	uint64_t next_s;
	struct mta_dsn_rcpt *warn = NULL;
	size_t nwarn = 0;
	struct mta_dsn_conf dc;

	if (count)
		m->attempts++;
	if (mta_retry_expired(&q->c.retry, arrival_s, now_s)) {
		for (uint32_t i = 0; i < e->n; i++) {
			struct qrcpt *r = &m->r[e->idx[i]];
			char diag[DIAG_MAX];

			uint64_t dl = qmgr_msg_delay_ms(m, now);

			snprintf(diag, sizeof(diag), "%s", r->diag);
			LOG(LOG_INFO, "qmgr: %s: to=<%s>, relay=%s, delay=%"
			    PRIu64 ".%02" PRIu64 ", dsn=4.4.7, status=expired, "
			    "returned to sender (%s)", m->env->qid,
			    m->env->rcpt[e->idx[i]].addr,
			    r->remote[0] ? r->remote : "none", dl / 1000u,
			    dl % 1000u / 10u, diag);
			/* RFC 3463 4.4.7: delivery time expired; the last
			 * reply stays the Diagnostic-Code */
			qmgr_rcpt_fail(q, m, e->idx[i], "4.4.7", diag,
				       r->remote);
			CNT(q, expired);
		}
		qmgr_maybe_bounce(q, m);
		qmgr_entry_free(q, e);
		return;
	}
	if (!count && not_before_ms != 0) {
		/* no attempt was made (its destination rests): it goes
		 * with the destination's next try, not a retry interval
		 * later */
		next_s = (not_before_ms + 999u) / 1000u;
		e->due_ms = not_before_ms;
	} else {
		/* the interval counts from now itself, so that recipients
		 * of a destination that failed as a whole come due with its
		 * next try (not_before), not a rounding later */
		uint64_t due;

		next_s = mta_retry_next(&q->c.retry, arrival_s,
					m->attempts ? m->attempts : 1, now_up);
		due = now + (next_s > now_up ? (next_s - now_up) * 1000u : 0);
		/* capped at the lifetime's end, less than a second away: the
		 * last try is at that end, not one every scan until then */
		if (next_s <= now_up && next_s * 1000u > now)
			due = next_s * 1000u;
		if (due < not_before_ms)
			due = not_before_ms;
		e->due_ms = due;
		next_s = (due + 999u) / 1000u;
	}
	qmgr_dsn_conf(q, &dc);
	dc.delay_by_default = false;
	for (uint32_t i = 0; i < e->n; i++) {
		uint32_t idx = e->idx[i];
		struct qrcpt *r = &m->r[idx];

		r->state = SPOOL_RCPT_DEFERRED;
		r->next_try_s = next_s;
		CNT(q, deferred);
		if (count)
			state_write(q, m, idx, SPOOL_RCPT_DEFERRED, next_s);
		if (q->c.delay_warning_s != 0 && !(r->flags & RF_WARNED) &&
		    now_s >= arrival_s + q->c.delay_warning_s &&
		    m->env->mail_from[0] != '\0' &&
		    mta_dsn_wanted(&dc, &m->env->rcpt[idx], MTA_DSN_DELAYED)) {
			if (warn == NULL)
				warn = calloc(e->n, sizeof(*warn));
			if (warn != NULL) {
				qmgr_fill_outcome(m, idx, MTA_DSN_DELAYED,
						  &warn[nwarn]);
				warn[nwarn].retry_until_us =
					(arrival_s + q->c.retry.lifetime_s) *
					1000000u;
				nwarn++;
				r->flags |= RF_WARNED;
			}
		}
	}
	if (nwarn > 0)
		qmgr_send_report(q, m, warn, nwarn);
	free(warn);
	qmgr_defer_push(q, e);
}

static unsigned scan_deferred(struct mta_qmgr *q, uint64_t now)
{
	struct qentry *list = q->deferred, *e;
	unsigned n = 0;
	uint64_t cnt = 0;

	q->deferred = NULL;
	while (list != NULL) {
		e = list;
		list = e->next;
		if (e->due_ms > now) {
			cnt += e->n;
			e->next = q->deferred;
			q->deferred = e;
			continue;
		}
		e->d->ndeferred--;
		qmgr_dest_push(q, e->d, e);
		n++;
	}
	GAUGE(q, rcpts_deferred_now, cnt);
	return n;
}

/* ---- admission: routing --------------------------------------------- */

void qmgr_admit(struct mta_qmgr *q, struct envelope *env,
		const uint8_t *state, const uint64_t *next_try_s)
{
	struct qmsg *m = qmsg_new(q, env);
	struct dest **rd;
	unsigned nrec;
	uint64_t now = qmgr_wall_ms(), delay;

	if (m == NULL) {
		LOG(LOG_ERR, "qmgr: %s: out of memory; left in the spool "
		    "until the next start", env->qid);
		envelope_free(env);
		return;
	}
	CNT(q, received);
	LOG(LOG_INFO, "qmgr: %s: from=<%s>, size=%zu, nrcpt=%u (queue active)",
	    env->qid, env->mail_from, env->body_len, env->nrcpt);
	m->refs++; /* held while admitting */
	delay = qmgr_msg_delay_ms(m, now);
	if (state != NULL) {
		/* back from the spool: the spool keeps each recipient's next
		 * try, not the count of tries; the back-off goes on from the
		 * count its time in the queue implies */
		for (uint32_t i = 0; i < env->nrcpt; i++)
			if (state[i] == SPOOL_RCPT_DEFERRED) {
				m->attempts = mta_retry_attempts_for_age(
					&q->c.retry, delay / 1000u);
				break;
			}
	}
	rd = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*rd));
	nrec = mta_count_received(env->body, env->body_len);
	for (uint32_t i = 0; i < env->nrcpt; i++) {
		struct mta_route_result res;
		struct qrcpt *r = &m->r[i];

		if (state != NULL) {
			r->state = state[i];
			r->next_try_s = next_try_s[i];
			if (state[i] == SPOOL_RCPT_DELIVERED ||
			    state[i] == SPOOL_RCPT_BOUNCED) {
				m->open--;
				continue;
			}
		}
		if (rd == NULL) {
			LOG(LOG_ERR, "qmgr: %s: out of memory", env->qid);
			continue; /* stays in the spool for the next start */
		}
		if (q->c.max_received != 0 && nrec > q->c.max_received) {
			char diag[DIAG_MAX];

			snprintf(diag, sizeof(diag), "smtp; 554 5.4.6 mail "
				 "forwarding loop for %s (%u Received: "
				 "headers)", env->rcpt[i].addr, nrec);
			LOG(LOG_INFO, "qmgr: %s: to=<%s>, relay=none, delay=%"
			    PRIu64 ".%02" PRIu64 ", dsn=5.4.6, status=bounced "
			    "(mail forwarding loop: %u Received: headers, more "
			    "than %u)", env->qid, env->rcpt[i].addr,
			    delay / 1000u, delay % 1000u / 10u, nrec,
			    q->c.max_received);
			qmgr_rcpt_fail(q, m, i, "5.4.6", diag, NULL);
			CNT(q, loops);
			continue;
		}
		mta_route_rcpt(q->route, env->rcpt[i].addr, &res);
		switch (res.kind) {
		case MTA_ROUTE_LOCAL:
			r->mailbox = strdup(res.mailbox);
			if (r->mailbox != NULL)
				rd[i] = q->local_dest;
			break;
		case MTA_ROUTE_RELAY:
			rd[i] = qmgr_dest_get(q, res.dest, &res.nh, false);
			break;
		case MTA_ROUTE_REJECT: {
			char diag[DIAG_MAX];

			snprintf(diag, sizeof(diag), "smtp; %u %s %s",
				 res.code, res.enh, res.text);
			LOG(LOG_INFO, "qmgr: %s: to=<%s>, relay=none, delay=%"
			    PRIu64 ".%02" PRIu64 ", dsn=%s, status=bounced "
			    "(%u %s %s)", env->qid, env->rcpt[i].addr,
			    delay / 1000u, delay % 1000u / 10u, res.enh,
			    res.code, res.enh, res.text);
			qmgr_rcpt_fail(q, m, i, res.enh, diag, NULL);
			break;
		}
		}
	}
	for (uint32_t i = 0; rd != NULL && i < env->nrcpt; i++)
		m->r[i].d = rd[i];
	/* one entry per destination, recipients in order */
	for (uint32_t i = 0; rd != NULL && i < env->nrcpt; i++) {
		struct dest *d = rd[i];
		struct qentry *e;
		uint32_t n = 0;
		uint64_t due = 0;

		if (d == NULL)
			continue;
		for (uint32_t j = i; j < env->nrcpt; j++)
			if (rd[j] == d)
				n++;
		e = qmgr_entry_new(m, n);
		if (e == NULL) {
			LOG(LOG_ERR, "qmgr: %s: out of memory", env->qid);
			break;
		}
		for (uint32_t j = i; j < env->nrcpt; j++)
			if (rd[j] == d) {
				e->idx[e->n++] = j;
				if (m->r[j].next_try_s * 1000u > due)
					due = m->r[j].next_try_s * 1000u;
				if (j != i)
					rd[j] = NULL;
			}
		e->d = d;
		if (due > now) {
			e->due_ms = due;
			qmgr_defer_push(q, e);
		} else {
			qmgr_dest_push(q, d, e);
		}
	}
	free(rd);
	qmgr_maybe_bounce(q, m);
	lru_push(q, m);
	qmsg_unref(q, m);
	qmgr_body_trim(q);
}

static unsigned drain_in(struct mta_qmgr *q)
{
	struct envelope *envs[64];
	unsigned n, total = 0;

	do {
		n = rte_ring_sc_dequeue_burst(q->in, (void **)envs, 64, NULL);
		for (unsigned i = 0; i < n; i++)
			qmgr_admit(q, envs[i], NULL, NULL);
		total += n;
	} while (n == 64 && total < 4096);
	return total;
}

/* ---- the loop ------------------------------------------------------- */

void qmgr_kick(struct mta_qmgr *q)
{
	uint64_t one = 1;

	if (q->wake_fd >= 0 &&
	    __atomic_load_n(&q->sleeping, __ATOMIC_SEQ_CST) != 0) {
		ssize_t r = write(q->wake_fd, &one, sizeof(one));
		(void)r; /* EAGAIN: the counter is full, it wakes anyway */
	}
}

/* Sleeps until kicked or timeout_ms, unless work arrived meanwhile. Only
 * when no spool request is out: the spool's writers do not kick. */
static void deep_sleep(struct mta_qmgr *q, int timeout_ms)
{
	struct pollfd pfd = { .fd = q->wake_fd, .events = POLLIN };
	uint64_t v;

	__atomic_store_n(&q->sleeping, 1, __ATOMIC_SEQ_CST);
	if (rte_ring_count(q->in) == 0 && rte_ring_count(q->back) == 0 &&
	    !__atomic_load_n(&q->ctl_pending, __ATOMIC_SEQ_CST) &&
	    qmgr_local_phase(&q->loc) != 2 &&
	    !__atomic_load_n(&q->stop, __ATOMIC_SEQ_CST)) {
		if (poll(&pfd, 1, timeout_ms) > 0) {
			ssize_t r = read(q->wake_fd, &v, sizeof(v));
			(void)r;
		}
	}
	__atomic_store_n(&q->sleeping, 0, __ATOMIC_SEQ_CST);
}

static unsigned dispatch(struct mta_qmgr *q, uint64_t now)
{
	struct dest *list = q->work, *d;
	unsigned n = 0;

	q->work = NULL;
	while ((d = list) != NULL) {
		list = d->wnext;
		d->on_work = false;
		if (d->nready == 0)
			continue;
		if (d->suspended) {
			/* dpmailctl domain suspend: wait */
		} else if (d->local) {
			n += qmgr_local_dispatch(q);
		} else if (d->backoff_until_ms > now) {
			qmgr_suspend_ready(q, d);
			n++;
		} else {
			while (d->nready > 0 &&
			       d->active < q->c.dest_concurrency) {
				struct mta_job *j;

				if (q->unsent != NULL)
					break;
				j = qmgr_job_build(q, d, now);
				if (j == NULL)
					break;
				d->active++;
				__atomic_fetch_add(&q->st.jobs_active, 1,
						   __ATOMIC_RELAXED);
				CNT(q, jobs);
				if (!qmgr_job_send(q, j)) {
					j->next = q->unsent;
					q->unsent = j;
				}
				n++;
			}
		}
		if (d->nready > 0 && !d->on_work) {
			d->on_work = true;
			d->wnext = q->work;
			q->work = d;
		}
	}
	return n;
}

static unsigned resend(struct mta_qmgr *q)
{
	unsigned n = 0;

	while (q->unsent != NULL) {
		struct mta_job *j = q->unsent;

		if (!qmgr_job_send(q, j))
			break;
		q->unsent = j->next;
		n++;
	}
	return n;
}

static void *qmgr_main(void *arg)
{
	struct mta_qmgr *q = arg;
	unsigned idle = 0;

	while (!__atomic_load_n(&q->stop, __ATOMIC_ACQUIRE)) {
		uint64_t now = qmgr_wall_ms();
		unsigned did = 0;

		did += drain_in(q);
		did += qmgr_drain_jobs(q);
		did += qmgr_local_collect(q);
		did += drain_spool(q);
		if (q->retry != NULL)
			did += retry_reqs(q, now);
		if (now >= q->next_scan_ms) {
			did += scan_deferred(q, now);
			q->next_scan_ms = now + SCAN_MS;
		}
		did += resend(q);
		did += qmgr_ctl_poll(q);
		if (q->work != NULL && !q->c.hold)
			did += dispatch(q, now);
		if (did != 0) {
			idle = 0;
			continue;
		}
		/* back off when idle: two cores are shared with the workers.
		 * Straight to 1 ms: a wake-up costs a context switch (dear
		 * in a VM), and a millisecond more per message is nothing
		 * next to a delivery; each wake drains every ring. */
		if (++idle > 32) {
			struct timespec ts = { 0, 1000000 };
			/* a second without work and nothing owed by the
			 * spool: sleep until kicked (or the next scan) */
			if (idle > 1000 && q->wake_fd >= 0 &&
			    q->reqs_out == 0 && q->retry == NULL)
				deep_sleep(q, SCAN_MS);
			else
				nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* ---- entry points from workers ------------------------------------- */

int mta_qmgr_submit(struct mta_qmgr *q, unsigned worker, struct envelope *env)
{
	(void)worker;
	if (rte_ring_mp_enqueue(q->in, env) != 0)
		return -ENOBUFS;
	qmgr_kick(q);
	return 0;
}

unsigned mta_qmgr_worker_jobs(struct mta_qmgr *q, unsigned worker,
			      struct mta_job **out, unsigned max)
{
	return rte_ring_sc_dequeue_burst(q->to_worker[worker], (void **)out,
					 max, NULL);
}

void mta_qmgr_job_done(struct mta_qmgr *q, struct mta_job *j)
{
	/* the ring holds every job there can be (JOB_RING per worker);
	 * spin only if it is momentarily full */
	while (rte_ring_mp_enqueue(q->back, j) != 0)
		;
	qmgr_kick(q);
}

void mta_qmgr_get_stats(const struct mta_qmgr *q, struct mta_qmgr_stats *s)
{
#define X(n) s->n = __atomic_load_n(&q->st.n, __ATOMIC_RELAXED);
	MTA_QMGR_COUNTERS(X)
#undef X
	s->msgs_live = __atomic_load_n(&q->st.msgs_live, __ATOMIC_RELAXED);
	s->rcpts_deferred_now =
		__atomic_load_n(&q->st.rcpts_deferred_now, __ATOMIC_RELAXED);
	s->dests = __atomic_load_n(&q->st.dests, __ATOMIC_RELAXED);
	s->jobs_active = __atomic_load_n(&q->st.jobs_active, __ATOMIC_RELAXED);
	s->body_bytes = __atomic_load_n(&q->st.body_bytes, __ATOMIC_RELAXED);
}

/* ---- life ----------------------------------------------------------- */

int mta_qmgr_new(struct mta_qmgr **out, const struct mta_qmgr_conf *c,
		 const struct mta_route *route, struct spool *sp,
		 unsigned nworkers, struct mta_qmgr_recovery *rep, char *err,
		 size_t errlen)
{
	struct mta_qmgr_recovery dummy;
	struct mta_qmgr *q = calloc(1, sizeof(*q));
	char name[32];
	int rc;

	if (rep == NULL)
		rep = &dummy;
	memset(rep, 0, sizeof(*rep));
	*out = NULL;
	if (q == NULL || nworkers == 0) {
		free(q);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	q->c = *c;
	q->loc.q = q;
	q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->wake_fd < 0)
		LOG(LOG_WARNING, "qmgr: eventfd: %s; polling instead",
		    strerror(errno));
	if (q->c.dest_concurrency == 0)
		q->c.dest_concurrency = 1;
	if (q->c.local_batch == 0)
		q->c.local_batch = 1;
	q->route = route ? mta_route_ref(route) : NULL;
	q->sp = sp;
	q->nworkers = nworkers;
	q->me = nworkers;
	q->in = spool_ring_new("qmgr_in", IN_RING);
	q->back = spool_ring_new("qmgr_back", JOB_RING * 4);
	q->to_worker = calloc(nworkers, sizeof(*q->to_worker));
	if (q->in == NULL || q->back == NULL || q->to_worker == NULL)
		goto nomem;
	for (unsigned w = 0; w < nworkers; w++) {
		snprintf(name, sizeof(name), "qmgr_w%u", w);
		q->to_worker[w] = spool_ring_new(name, JOB_RING);
		if (q->to_worker[w] == NULL)
			goto nomem;
	}
	q->local_dest = qmgr_dest_get(q, "local", NULL, true);
	if (q->local_dest == NULL)
		goto nomem;
	pthread_mutex_init(&q->loc.mu, NULL);
	pthread_cond_init(&q->loc.cv, NULL);
	pthread_mutex_init(&q->ctl_mu, NULL);
	pthread_cond_init(&q->ctl_cv, NULL);
	rc = mailbox_open(&q->loc.ms, &c->mailbox, err, errlen);
	if (rc != 0) {
		mta_qmgr_free(q);
		return rc;
	}
	rc = qmgr_recover(q, rep);
	if (rc != 0) {
		snprintf(err, errlen, "reading the queue back from %s: %s",
			 c->spool_dir, strerror(-rc));
		mta_qmgr_free(q);
		return rc;
	}
	rc = pthread_create(&q->loc.th, NULL, qmgr_local_main, &q->loc);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the delivery thread: %s",
			 strerror(rc));
		mta_qmgr_free(q);
		return -rc;
	}
	q->loc.started = true;
	rc = pthread_create(&q->th, NULL, qmgr_main, q);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the queue manager: %s",
			 strerror(rc));
		mta_qmgr_free(q);
		return -rc;
	}
	q->started = true;
	pthread_setname_np(q->th, "dpmail-qmgr");
	pthread_setname_np(q->loc.th, "dpmail-local");
	*out = q;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	mta_qmgr_free(q);
	return -ENOMEM;
}

void mta_qmgr_free(struct mta_qmgr *q)
{
	if (q == NULL)
		return;
	if (q->started) {
		__atomic_store_n(&q->stop, true, __ATOMIC_SEQ_CST);
		qmgr_kick(q);
		pthread_join(q->th, NULL);
	}
	if (q->loc.started) {
		/* a batch in flight finishes; its results are recorded */
		while (qmgr_local_phase(&q->loc) == 1) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		qmgr_local_collect(q);
		pthread_mutex_lock(&q->loc.mu);
		q->loc.stop = true;
		pthread_cond_signal(&q->loc.cv);
		pthread_mutex_unlock(&q->loc.mu);
		pthread_join(q->loc.th, NULL);
	}
	if (q->started || q->reqs_out > 0 || q->retry != NULL) {
		/* jobs given back by stopped workers, then our own spool
		 * requests: wait for them (bounded) so nothing points at a
		 * freed message */
		uint64_t deadline = qmgr_wall_ms() + 10000;

		qmgr_drain_jobs(q);
		while ((q->reqs_out > 0 || q->retry != NULL) &&
		       qmgr_wall_ms() < deadline) {
			drain_spool(q);
			if (q->retry != NULL)
				retry_reqs(q, UINT64_MAX);
			if (q->reqs_out > 0) {
				struct timespec ts = { 0, 1000000 };
				nanosleep(&ts, NULL);
			}
		}
		if (q->reqs_out > 0)
			LOG(LOG_WARNING, "qmgr: %" PRIu64 " spool requests "
			    "unanswered at exit", q->reqs_out);
	}
	/* what is queued stays in the spool for the next start */
	if (q->in != NULL) {
		struct envelope *env;
		while (rte_ring_sc_dequeue(q->in, (void **)&env) == 0)
			envelope_free(env);
	}
	while (q->unsent != NULL) {
		struct mta_job *j = q->unsent;
		q->unsent = j->next;
		qmgr_job_free(j);
	}
	for (struct qentry *e = q->deferred, *n; e != NULL; e = n) {
		n = e->next;
		free(e);
	}
	for (struct qentry *e = q->held, *n; e != NULL; e = n) {
		n = e->next;
		free(e);
	}
	for (unsigned b = 0; b < DEST_BUCKETS; b++) {
		for (struct dest *d = q->buckets[b], *n; d != NULL; d = n) {
			n = d->hnext;
			for (struct qentry *e = d->head, *en; e != NULL; e = en) {
				en = e->next;
				free(e);
			}
			free(d);
		}
	}
	while (q->live != NULL) {
		q->live->refs = 0;
		qmsg_free(q, q->live);
	}
	if (q->reqs_out == 0) {
		while (q->retry != NULL) {
			struct qreq *x = q->retry;
			q->retry = x->next;
			if (x->kind != QR_STATE)
				envelope_free(x->dsn);
			free(x->idx);
			free(x);
		}
	}
	if (q->loc.ms != NULL)
		mailbox_close(q->loc.ms);
	mta_route_free(q->route);
	if (q->local_dest != NULL) { /* the mutexes were made just after it */
		pthread_mutex_destroy(&q->loc.mu);
		pthread_cond_destroy(&q->loc.cv);
		pthread_mutex_destroy(&q->ctl_mu);
		pthread_cond_destroy(&q->ctl_cv);
	}
	free(q->loc.items);
	free(q->loc.ents);
	free(q->loc.idx);
	if (q->to_worker != NULL)
		for (unsigned w = 0; w < q->nworkers; w++)
			free(q->to_worker[w]);
	free(q->to_worker);
	free(q->in);
	free(q->back);
	if (q->wake_fd >= 0)
		close(q->wake_fd);
	free(q);
}
