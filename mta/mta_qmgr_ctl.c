/*
 * mta_qmgr_ctl.c: control requests (dpmailctl) for the queue manager:
 * list, hold, release, flush, delete and bounce messages, suspend and
 * resume destinations, list destinations, and a reloaded configuration.
 *
 * The public calls (mta_qmgr_ctl, _dests, _reconf) run on the caller's
 * thread: each queues one request (struct ctl_req, one at a time, under
 * ctl_mu), kicks the queue manager and waits for it, bounded. The work
 * itself is done on the queue manager's thread (qmgr_ctl_poll, from the
 * loop), so nothing here takes a lock on the queue's own records.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "common/ratelimit.h"
#include "mta/mta_qmgr_int.h"
#include "mta/mta_route.h"

/* ---- control requests (dpmailctl) ----------------------------------- */

struct ctl_req {
	int kind;                /* 0 mta_qmgr_ctl, 1 mta_qmgr_dests,
				  * 2 mta_qmgr_reconf */
	const struct mta_qmgr_conf *conf;   /* reconf */
	const struct mta_route *route;      /* reconf: a reference */
	enum mta_qctl_op op;
	const struct mta_qctl_filter *f;
	mta_qctl_cb cb;
	mta_qctl_dest_cb dcb;
	void *arg;
	int phase;               /* 0 queued, 1 running, 2 done */
	int result;
};

static bool domain_is(const char *addr, const char *dom)
{
	const char *at = strrchr(addr, '@');

	return at != NULL && strcasecmp(at + 1, dom) == 0;
}

static int msg_state(const struct qmsg *m)
{
	if (m->held)
		return MTA_QS_HELD;
	for (uint32_t i = 0; i < m->env->nrcpt; i++)
		if (m->r[i].state == SPOOL_RCPT_DEFERRED &&
		    !(m->r[i].flags & RF_ACTIVE))
			return MTA_QS_DEFERRED;
	return MTA_QS_ACTIVE;
}

static bool msg_match(const struct qmsg *m, const struct mta_qctl_filter *f,
		      uint64_t now_ms)
{
	const struct envelope *env = m->env;

	if (f == NULL)
		return true;
	if (f->nids > 0) {
		bool hit = false;
		for (size_t i = 0; i < f->nids && !hit; i++)
			hit = strcmp(f->ids[i], env->qid) == 0;
		if (!hit)
			return false;
	}
	if (f->sender != NULL && strcasecmp(f->sender, env->mail_from) != 0)
		return false;
	if (f->state != MTA_QS_ANY && msg_state(m) != f->state)
		return false;
	if (f->older_than_s != 0 &&
	    qmgr_msg_delay_ms(m, now_ms) < f->older_than_s * 1000u)
		return false;
	if (f->domain != NULL) {
		bool hit = false;
		for (uint32_t i = 0; i < env->nrcpt && !hit; i++)
			hit = domain_is(env->rcpt[i].addr, f->domain);
		if (!hit)
			return false;
	}
	return true;
}

static void msg_report(const struct qmsg *m, mta_qctl_cb cb, void *arg)
{
	struct mta_qctl_rcpt *rr;
	struct mta_qctl_msg out;

	if (cb == NULL)
		return;
	rr = calloc(m->env->nrcpt ? m->env->nrcpt : 1, sizeof(*rr));
	if (rr == NULL)
		return;
	for (uint32_t i = 0; i < m->env->nrcpt; i++) {
		const struct qrcpt *r = &m->r[i];
		static const char *const names[] = {
			[SPOOL_RCPT_PENDING] = "pending",
			[SPOOL_RCPT_DELIVERED] = "delivered",
			[SPOOL_RCPT_DEFERRED] = "deferred",
			[SPOOL_RCPT_BOUNCED] = "bounced",
		};
		bool open = r->state == SPOOL_RCPT_PENDING ||
			    r->state == SPOOL_RCPT_DEFERRED;

		rr[i].addr = m->env->rcpt[i].addr;
		rr[i].state = (r->flags & RF_ACTIVE) ? "active"
			      : r->state <= SPOOL_RCPT_BOUNCED ? names[r->state]
							       : "?";
		rr[i].dest = open && r->d != NULL ? r->d->key : "";
		rr[i].next_try_s = r->state == SPOOL_RCPT_DEFERRED ?
				   r->next_try_s : 0;
		rr[i].last = r->diag;
	}
	out.qid = m->env->qid;
	out.sender = m->env->mail_from;
	out.size = m->env->body_len;
	out.arrival_us = m->env->arrival_us;
	out.attempts = m->attempts;
	out.held = m->held;
	out.nrcpt = m->env->nrcpt;
	out.rcpt = rr;
	cb(arg, &out);
	free(rr);
}

/* Takes every queued (not active) entry of m off the ready queues, the
 * deferred list and the held list, into *out. */
static void pull_entries(struct mta_qmgr *q, struct qmsg *m,
			 struct qentry **out)
{
	struct qentry **pp;

	for (unsigned b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *d = q->buckets[b]; d != NULL; d = d->hnext) {
			struct qentry *prev = NULL, *e = d->head, *n;

			for (; e != NULL; e = n) {
				n = e->next;
				if (e->m != m) {
					prev = e;
					continue;
				}
				if (prev != NULL)
					prev->next = n;
				else
					d->head = n;
				if (d->tail == e)
					d->tail = prev;
				d->nready--;
				e->next = *out;
				*out = e;
			}
		}
	for (pp = &q->deferred; *pp != NULL;) {
		struct qentry *e = *pp;
		if (e->m == m) {
			*pp = e->next;
			e->d->ndeferred--;
			e->next = *out;
			*out = e;
		} else {
			pp = &e->next;
		}
	}
	for (pp = &q->held; *pp != NULL;) {
		struct qentry *e = *pp;
		if (e->m == m) {
			*pp = e->next;
			e->next = *out;
			*out = e;
		} else {
			pp = &e->next;
		}
	}
}

static void ctl_apply(struct mta_qmgr *q, struct qmsg *m, enum mta_qctl_op op)
{
	struct qentry *list = NULL, *e;
	uint64_t now = qmgr_wall_ms();

	switch (op) {
	case MTA_QCTL_LIST:
	case MTA_QCTL_SUSPEND:
	case MTA_QCTL_RESUME:
		return;
	case MTA_QCTL_HOLD:
		if (m->held)
			return;
		pull_entries(q, m, &list);
		m->held = true;
		LOG(LOG_INFO, "qmgr: %s: held by the administrator",
		    m->env->qid);
		break;
	case MTA_QCTL_RELEASE:
	case MTA_QCTL_FLUSH:
		if (op == MTA_QCTL_RELEASE && !m->held)
			return;
		/* a held message stays held: flush is not release */
		if (op == MTA_QCTL_FLUSH && m->held)
			return;
		pull_entries(q, m, &list);
		if (op == MTA_QCTL_RELEASE)
			LOG(LOG_INFO, "qmgr: %s: released", m->env->qid);
		m->held = false;
		while ((e = list) != NULL) {
			list = e->next;
			if (op == MTA_QCTL_FLUSH) {
				e->d->backoff_until_ms = 0;
				e->due_ms = 0;
			}
			if (e->due_ms > now)
				qmgr_defer_push(q, e);
			else
				qmgr_dest_push(q, e->d, e);
		}
		return;
	case MTA_QCTL_DELETE:
	case MTA_QCTL_BOUNCE:
		pull_entries(q, m, &list);
		m->refs++;
		while ((e = list) != NULL) {
			list = e->next;
			for (uint32_t i = 0; i < e->n; i++) {
				uint32_t idx = e->idx[i];
				if (op == MTA_QCTL_DELETE) {
					qmgr_rcpt_final(q, m, idx,
							SPOOL_RCPT_BOUNCED);
				} else {
					qmgr_rcpt_fail(q, m, idx, "5.0.0",
						"x-local; 550 5.0.0 message "
						"deleted from the queue by "
						"the administrator", NULL);
				}
			}
			qmgr_entry_free(q, e);
		}
		LOG(LOG_INFO, "qmgr: %s: %s by the administrator",
		    m->env->qid, op == MTA_QCTL_DELETE ? "deleted" : "bounced");
		if (op == MTA_QCTL_BOUNCE)
			qmgr_maybe_bounce(q, m);
		qmsg_unref(q, m);
		return;
	}
	/* HOLD: the entries wait on the held list */
	while ((e = list) != NULL) {
		list = e->next;
		e->next = q->held;
		q->held = e;
	}
}

static struct dest *dest_find(struct mta_qmgr *q, const char *key)
{
	for (struct dest *d = q->buckets[qmgr_key_hash(key) % DEST_BUCKETS];
	     d != NULL; d = d->hnext)
		if (strcasecmp(d->key, key) == 0)
			return d;
	return NULL;
}

/* On the queue manager's thread: a reloaded configuration. What the
 * mailbox thread reads (mailbox) and where the spool is stay as they
 * started; messages already routed keep their destination. */
static void reconf_apply(struct mta_qmgr *q, const struct mta_qmgr_conf *c,
			 const struct mta_route *route)
{
	struct mta_qmgr_conf n = *c;
	bool rate = n.dest_rate != q->c.dest_rate;

	memcpy(n.spool_dir, q->c.spool_dir, sizeof(n.spool_dir));
	n.mailbox = q->c.mailbox;
	if (n.dest_concurrency == 0)
		n.dest_concurrency = 1;
	if (n.local_batch == 0)
		n.local_batch = 1;
	q->c = n;
	if (route != NULL) {
		mta_route_free(q->route);
		q->route = route;
	}
	for (unsigned b = 0; rate && b < DEST_BUCKETS; b++)
		for (struct dest *d = q->buckets[b]; d != NULL; d = d->hnext)
			ratelimit_init(&d->rl, q->c.dest_rate,
				       q->c.dest_rate ? q->c.dest_rate : 1,
				       qmgr_wall_ms());
	qmgr_body_trim(q); /* memory_mb may be smaller now */
	LOG(LOG_INFO, "qmgr: configuration reloaded%s%s",
	    route != NULL ? " (new routing tables)" : "",
	    q->c.hold ? "; holding every message" : "");
}

static int ctl_run(struct mta_qmgr *q, struct ctl_req *c)
{
	uint64_t now = qmgr_wall_ms();
	int n = 0;

	if (c->kind == 2) {
		reconf_apply(q, c->conf, c->route);
		return 0;
	}
	if (c->kind == 1) {
		for (unsigned b = 0; b < DEST_BUCKETS; b++)
			for (struct dest *d = q->buckets[b]; d != NULL;
			     d = d->hnext) {
				struct mta_qctl_dest o = {
					.key = d->key, .ready = d->nready,
					.deferred = d->ndeferred,
					.active_jobs = d->active,
					.suspended = d->suspended,
					.backoff_until_s =
						d->backoff_until_ms > now ?
						d->backoff_until_ms / 1000u : 0,
					.why = d->why,
				};
				if (c->dcb != NULL)
					c->dcb(c->arg, &o);
				n++;
			}
		return n;
	}
	if (c->op == MTA_QCTL_SUSPEND || c->op == MTA_QCTL_RESUME) {
		struct dest *d;

		if (c->f == NULL || c->f->domain == NULL)
			return -EINVAL;
		d = dest_find(q, c->f->domain);
		if (d == NULL && c->op == MTA_QCTL_SUSPEND) {
			struct mta_nexthop nh = { .kind = MTA_NH_MX, .port = 25 };
			snprintf(nh.host, sizeof(nh.host), "%s", c->f->domain);
			d = qmgr_dest_get(q, c->f->domain, &nh, false);
		}
		if (d == NULL)
			return 0;
		d->suspended = c->op == MTA_QCTL_SUSPEND;
		LOG(LOG_INFO, "qmgr: destination %s: %s by the administrator",
		    d->key, d->suspended ? "suspended" : "resumed");
		if (!d->suspended) {
			d->backoff_until_ms = 0;
			if (d->nready > 0 && !d->on_work) {
				d->on_work = true;
				d->wnext = q->work;
				q->work = d;
			}
		}
		return 1;
	}
	if ((unsigned)c->op > MTA_QCTL_RESUME)
		return -EINVAL;
	for (struct qmsg *m = q->live, *next; m != NULL; m = next) {
		next = m->next;
		if (m->open == 0 || !msg_match(m, c->f, now))
			continue;
		n++;
		m->refs++; /* the callback and the change may finish it */
		msg_report(m, c->cb, c->arg);
		ctl_apply(q, m, c->op);
		next = m->next;
		qmsg_unref(q, m);
	}
	return n;
}

unsigned qmgr_ctl_poll(struct mta_qmgr *q)
{
	struct ctl_req *c;

	if (!__atomic_load_n(&q->ctl_pending, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&q->ctl_mu);
	c = q->ctl;
	if (c == NULL || c->phase != 0) {
		pthread_mutex_unlock(&q->ctl_mu);
		return 0;
	}
	c->phase = 1;
	pthread_mutex_unlock(&q->ctl_mu);
	c->result = ctl_run(q, c);
	pthread_mutex_lock(&q->ctl_mu);
	c->phase = 2;
	q->ctl = NULL;
	__atomic_store_n(&q->ctl_pending, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&q->ctl_cv);
	pthread_mutex_unlock(&q->ctl_mu);
	return 1;
}

static int ctl_call(struct mta_qmgr *q, struct ctl_req *c, uint32_t timeout_ms)
{
	struct timespec dl;
	int rc;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000u;
	dl.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->ctl_mu);
	if (q->ctl != NULL) {
		pthread_mutex_unlock(&q->ctl_mu);
		return -EBUSY;
	}
	q->ctl = c;
	__atomic_store_n(&q->ctl_pending, true, __ATOMIC_SEQ_CST);
	qmgr_kick(q);
	while (c->phase != 2) {
		rc = pthread_cond_timedwait(&q->ctl_cv, &q->ctl_mu, &dl);
		if (rc == ETIMEDOUT && c->phase == 0) {
			/* not started: withdraw it */
			q->ctl = NULL;
			__atomic_store_n(&q->ctl_pending, false,
					 __ATOMIC_RELEASE);
			pthread_mutex_unlock(&q->ctl_mu);
			return -ETIMEDOUT;
		}
	}
	pthread_mutex_unlock(&q->ctl_mu);
	return c->result;
}

int mta_qmgr_ctl(struct mta_qmgr *q, enum mta_qctl_op op,
		 const struct mta_qctl_filter *f, mta_qctl_cb cb, void *arg,
		 uint32_t timeout_ms)
{
	struct ctl_req c = { .kind = 0, .op = op, .f = f, .cb = cb,
			     .arg = arg };

	if ((unsigned)op > MTA_QCTL_RESUME)
		return -EINVAL;
	return ctl_call(q, &c, timeout_ms);
}

int mta_qmgr_dests(struct mta_qmgr *q, mta_qctl_dest_cb cb, void *arg,
		   uint32_t timeout_ms)
{
	struct ctl_req c = { .kind = 1, .dcb = cb, .arg = arg };

	return ctl_call(q, &c, timeout_ms);
}

int mta_qmgr_reconf(struct mta_qmgr *q, const struct mta_qmgr_conf *conf,
		    const struct mta_route *route, uint32_t timeout_ms)
{
	struct ctl_req c = { .kind = 2, .conf = conf,
			     .route = route ? mta_route_ref(route) : NULL };
	int rc = ctl_call(q, &c, timeout_ms);

	if (rc < 0)
		mta_route_free(c.route); /* withdrawn: not taken */
	return rc;
}
