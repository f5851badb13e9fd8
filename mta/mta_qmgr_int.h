/*
 * mta_qmgr_int.h: internal to the queue manager; not for other modules
 * (the contract is mta_qmgr.h). What its files share: the message,
 * recipient, destination, entry and spool request records, the queue
 * manager itself, and the functions one file calls in another:
 *
 *   mta_qmgr.c          the core: messages, bodies in memory, spool
 *                       requests, destinations, deferral, admission,
 *                       the loop, entry points, life
 *   mta_qmgr_report.c   bounce, delay and success reports (DSNs)
 *   mta_qmgr_jobs.c     remote jobs: built, sent to workers, finished
 *   mta_qmgr_local.c    the local delivery thread and its batches
 *   mta_qmgr_ctl.c      control requests (dpmailctl) and reconf
 *   mta_qmgr_recover.c  the live queue read back from the spool
 *
 * Everything declared here runs on the queue manager's thread, except
 * qmgr_kick (any thread) and qmgr_local_main (the local delivery
 * thread).
 */
#ifndef DPMAIL_MTA_MTA_QMGR_INT_H
#define DPMAIL_MTA_MTA_QMGR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ratelimit.h"
#include "mta/mta_dsn.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"
#include "store/spool.h"

#define DEST_BUCKETS 1024
#define DIAG_MAX 320

/* per-recipient flags */
#define RF_FAIL 0x01     /* failed, waiting for its bounce to be queued */
#define RF_BOUNCING 0x02 /* its bounce is on the way to the spool */
#define RF_WARNED 0x04   /* a delay report went out */
#define RF_ACTIVE 0x08   /* in a job or a mailbox batch now */

struct dest;

struct qrcpt {
	uint8_t state;       /* enum spool_rcpt_state */
	uint8_t flags;
	struct dest *d;      /* where it goes (NULL: final or unrouted) */
	char *mailbox;       /* local recipients */
	uint64_t next_try_s;
	char status[16];     /* the last outcome, for reports */
	char diag[DIAG_MAX];
	char remote[MTA_HOST_MAX + 1];
	uint64_t last_us;
};

struct qmsg {
	struct qmsg *prev, *next;
	struct envelope *env;
	struct qrcpt *r;
	uint32_t open;       /* recipients not final */
	uint32_t refs;       /* entries, jobs, batches, spool requests */
	uint32_t attempts;
	bool bouncing;       /* a bounce request is in flight */
	bool held;           /* dpmailctl queue hold */
	/* the body in memory ([mta] memory_mb): pins are the jobs, mailbox
	 * batches and reports using it; unpinned and in memory, it is on
	 * the LRU list, from which bodies are let go (body_out) */
	bool body_out, on_lru;
	uint32_t pins;
	struct qmsg *lprev, *lnext;
};

struct dest;

struct qentry {
	struct qentry *next;
	struct qmsg *m;
	struct dest *d;
	uint64_t due_ms;
	uint32_t n;
	uint32_t idx[];
};

struct dest {
	struct dest *hnext;
	struct dest *wnext;
	bool on_work, local, suspended;
	uint32_t ndeferred;      /* entries of it on the deferred list */
	char key[MTA_HOST_MAX + 24];
	struct mta_nexthop nh;
	struct qentry *head, *tail;
	uint32_t nready, active, fail_streak;
	uint64_t backoff_until_ms;
	char why[256];
	struct ratelimit rl;
};

enum qreq_kind { QR_STATE = 1, QR_BOUNCE, QR_REPORT };

struct qreq {
	struct spool_req r;
	struct qreq *next;
	enum qreq_kind kind;
	struct qmsg *m;          /* STATE, BOUNCE: the message it is about */
	struct envelope *dsn;    /* BOUNCE, REPORT: the new message */
	uint32_t n;              /* BOUNCE: recipients to mark bounced */
	uint32_t *idx;
	uint64_t retry_ms;
};

struct local {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct mailbox_store *ms;
	struct mailbox_item *items;
	struct qentry **ents;    /* per item */
	uint32_t *idx;           /* per item */
	size_t n, cap;
	int phase;               /* 0 idle, 1 handed over, 2 done */
	bool stop, started;
	struct mta_qmgr *q;      /* to kick it when a batch is done */
};

struct mta_qmgr {
	struct mta_qmgr_conf c;
	const struct mta_route *route;   /* a reference; swapped by reconf */
	struct spool *sp;
	unsigned nworkers, me;   /* me: our spool completion ring */
	struct rte_ring *in;
	struct rte_ring **to_worker;
	struct rte_ring *back;
	unsigned rr;
	pthread_t th;
	_Atomic bool stop;
	bool started;
	/* Idle for a while, the thread sleeps in poll() on wake_fd with
	 * sleeping set; whoever hands it work then writes the eventfd
	 * (a syscall only while it sleeps). */
	int wake_fd;
	int sleeping;            /* atomic */

	struct qmsg *live;
	struct dest *buckets[DEST_BUCKETS];
	struct dest *work;       /* dests with ready entries */
	struct dest *local_dest;
	struct qentry *deferred;
	struct qentry *held;     /* entries of held messages */
	pthread_mutex_t ctl_mu;
	pthread_cond_t ctl_cv;
	struct ctl_req *ctl;
	_Atomic bool ctl_pending;
	struct mta_job *unsent;  /* jobs a full worker ring refused */
	struct qreq *retry;      /* spool requests to submit again */
	uint64_t next_scan_ms;
	uint64_t reqs_out;       /* spool requests in flight */
	struct local loc;
	struct qmsg *lru_head, *lru_tail; /* least recently used first */
	uint64_t body_bytes;     /* bodies in memory (st.body_bytes: a copy) */
	struct mta_qmgr_stats st;
};

#define CNT(q, f) __atomic_fetch_add(&(q)->st.f, 1, __ATOMIC_RELAXED)
#define GAUGE(q, f, v) __atomic_store_n(&(q)->st.f, (v), __ATOMIC_RELAXED)

/* mta_qmgr.c */
uint64_t qmgr_wall_ms(void);
void qmsg_unref(struct mta_qmgr *q, struct qmsg *m);
void qmgr_body_trim(struct mta_qmgr *q);
int qmgr_body_pin(struct mta_qmgr *q, struct qmsg *m);
void qmgr_body_unpin(struct mta_qmgr *q, struct qmsg *m);
void qmgr_defer_unreadable(struct mta_qmgr *q, struct qentry *e, int err);
uint64_t qmgr_msg_delay_ms(const struct qmsg *m, uint64_t now);
void qmgr_req_submit(struct mta_qmgr *q, struct qreq *x);
void qmgr_rcpt_final(struct mta_qmgr *q, struct qmsg *m, uint32_t idx,
		     uint8_t state);
void qmgr_rcpt_fail(struct mta_qmgr *q, struct qmsg *m, uint32_t idx,
		    const char *status, const char *diag,
		    const char *remote);
uint32_t qmgr_key_hash(const char *s);
struct dest *qmgr_dest_get(struct mta_qmgr *q, const char *key,
			   const struct mta_nexthop *nh, bool local);
void qmgr_dest_push(struct mta_qmgr *q, struct dest *d, struct qentry *e);
struct qentry *qmgr_dest_pop(struct dest *d);
struct qentry *qmgr_entry_new(struct qmsg *m, uint32_t n);
void qmgr_entry_free(struct mta_qmgr *q, struct qentry *e);
void qmgr_defer_push(struct mta_qmgr *q, struct qentry *e);
void qmgr_defer_entry(struct mta_qmgr *q, struct qentry *e, bool count,
		      uint64_t not_before_ms);
void qmgr_admit(struct mta_qmgr *q, struct envelope *env,
		const uint8_t *state, const uint64_t *next_try_s);
void qmgr_kick(struct mta_qmgr *q);

/* mta_qmgr_report.c */
void qmgr_dsn_conf(const struct mta_qmgr *q, struct mta_dsn_conf *dc);
void qmgr_fill_outcome(const struct qmsg *m, uint32_t idx,
		       enum mta_dsn_action a, struct mta_dsn_rcpt *o);
void qmgr_send_report(struct mta_qmgr *q, struct qmsg *m,
		      const struct mta_dsn_rcpt *o, size_t n);
void qmgr_maybe_bounce(struct mta_qmgr *q, struct qmsg *m);

/* mta_qmgr_jobs.c */
void qmgr_job_free(struct mta_job *j);
bool qmgr_job_send(struct mta_qmgr *q, struct mta_job *j);
struct mta_job *qmgr_job_build(struct mta_qmgr *q, struct dest *d,
			       uint64_t now);
unsigned qmgr_drain_jobs(struct mta_qmgr *q);
void qmgr_suspend_ready(struct mta_qmgr *q, struct dest *d);

/* mta_qmgr_local.c */
void *qmgr_local_main(void *arg);
int qmgr_local_phase(struct local *l);
unsigned qmgr_local_dispatch(struct mta_qmgr *q);
unsigned qmgr_local_collect(struct mta_qmgr *q);

/* mta_qmgr_ctl.c */
unsigned qmgr_ctl_poll(struct mta_qmgr *q);

/* mta_qmgr_recover.c */
int qmgr_recover(struct mta_qmgr *q, struct mta_qmgr_recovery *rep);

#endif
