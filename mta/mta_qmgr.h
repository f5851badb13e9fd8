/*
 * mta_qmgr.h: the queue manager. Every accepted message comes here after
 * its 250; every recipient leaves as delivered, bounced (with a DSN to
 * the sender) or, while it keeps failing temporarily, deferred with a
 * retry time written to the spool.
 *
 * Owns: one thread (the queue manager; ordinary pthread, never a worker),
 * the live messages (envelope and body in memory, per-recipient state),
 * the per-destination queues with their concurrency, connection reuse,
 * rate and back-off, the retry schedule, bounce generation, and the local
 * delivery thread (store/mailbox.h: Maildir writes and their fsyncs
 * happen there, never on a worker or on the queue manager's thread).
 *
 * Talks to the others only through rings:
 *   workers  -> qmgr: accepted envelopes (mta_qmgr_submit; ownership
 *                     passes), finished jobs (mta_qmgr_job_done)
 *   qmgr -> workers:  outbound jobs (mta_qmgr_worker_jobs), round robin;
 *                     the worker runs them with mta_out
 *   qmgr <-> spool:   state records and bounce messages on the spool's
 *                     completion ring number nworkers (spool_open must
 *                     have been given nworkers + 1 rings)
 * Durability: a recipient is marked delivered in the spool only after the
 * next hop said 250 or the mailbox write was fsynced; a bounce message is
 * durable in the spool before its recipients are marked bounced. A crash
 * in between delivers again (at least once), never loses.
 *
 * Start-up: mta_qmgr_new runs on the main thread right after spool_open
 * and before any spool_submit: it reads the live messages back
 * (spool_live_foreach + spool_scan) and schedules them.
 */
#ifndef DPMAIL_MTA_MTA_QMGR_H
#define DPMAIL_MTA_MTA_QMGR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/envelope.h"
#include "mta/mta_job.h"
#include "mta/mta_retry.h"
#include "store/mailbox.h"

struct mta_qmgr;
struct mta_route;
struct spool;

struct mta_qmgr_conf {
	char hostname[256];          /* Reporting-MTA, MAILER-DAEMON@ */
	char double_bounce_to[320];  /* "" = drop double bounces */
	char spool_dir[4096];        /* for reading messages back at start */
	uint32_t dest_concurrency;   /* jobs (connections) per destination */
	uint32_t dest_msgs_per_conn; /* messages per job */
	uint32_t dest_rate;          /* messages/s per destination, 0 = any */
	uint32_t dest_backoff_s;     /* first back-off of a failing destination */
	uint32_t delay_warning_s;    /* DELAY DSN after this long, 0 = never */
	uint32_t max_received;       /* mail loop: more Received: bounce 5.4.6 */
	uint32_t local_batch;        /* recipients per mailbox batch */
	/* Bodies kept in memory, MiB in all; past it the least recently
	 * used bodies of messages not in a job or batch are let go and
	 * read back from the spool when needed. */
	uint32_t memory_mb;
	/* Accept and keep, deliver nothing (maintenance; tests of the
	 * accept path that need every message to stay in the spool). */
	bool hold;
	struct mta_retry_conf retry;
	struct mailbox_conf mailbox;
};
void mta_qmgr_conf_defaults(struct mta_qmgr_conf *c);

struct mta_qmgr_recovery {
	uint64_t messages, rcpts_pending, rcpts_deferred;
	uint64_t unreadable;         /* live in the index, not found whole */
};

/* Reads the live queue back and starts the threads. 0 or a negative
 * errno, with the reason in err. It keeps a reference on route; sp must
 * outlive it. */
int mta_qmgr_new(struct mta_qmgr **out, const struct mta_qmgr_conf *c,
		 const struct mta_route *route, struct spool *sp,
		 unsigned nworkers, struct mta_qmgr_recovery *rep, char *err,
		 size_t errlen);
/* Stops the thread. Call after the workers stopped and gave back every
 * job (mta_out_stop); what is still queued stays in the spool for the
 * next start. Frees everything. */
void mta_qmgr_free(struct mta_qmgr *q);

/* Worker w: an accepted message, after its 250. Ownership passes on 0;
 * -ENOBUFS: the ring is full, keep it and try again later. */
int mta_qmgr_submit(struct mta_qmgr *q, unsigned worker,
		    struct envelope *env);
/* Worker w: jobs for it (at most max). */
unsigned mta_qmgr_worker_jobs(struct mta_qmgr *q, unsigned worker,
			      struct mta_job **out, unsigned max);
/* Any worker: a job is finished (mta_out's done callback). */
void mta_qmgr_job_done(struct mta_qmgr *q, struct mta_job *j);

/* ---- control: dpmailctl queue ... / domain ... --------------------- */

enum mta_qctl_op {
	MTA_QCTL_LIST = 0, /* report matching messages, change nothing */
	MTA_QCTL_FLUSH,    /* deferred recipients: try now (back-off reset) */
	MTA_QCTL_HOLD,     /* keep in the queue, deliver nothing */
	MTA_QCTL_RELEASE,  /* undo HOLD */
	MTA_QCTL_DELETE,   /* drop without a report (recipients bounced
			    * in the spool, no DSN) */
	MTA_QCTL_BOUNCE,   /* fail every open recipient with a DSN to the
			    * sender (5.0.0 "deleted by the administrator") */
	MTA_QCTL_SUSPEND,  /* domain only: no deliveries to it */
	MTA_QCTL_RESUME,   /* domain only: undo SUSPEND (and try now) */
};

enum mta_qctl_state { MTA_QS_ANY = -1, MTA_QS_ACTIVE = 0, MTA_QS_DEFERRED,
		      MTA_QS_HELD };

struct mta_qctl_filter {
	const char *const *ids;  /* queue IDs; nids == 0: every message */
	size_t nids;
	const char *domain;      /* a recipient in this domain (exact,
				  * case-insensitive); NULL: any */
	const char *sender;      /* exact envelope sender ("" = <>); NULL */
	int state;               /* enum mta_qctl_state */
	uint64_t older_than_s;   /* in the queue at least this long; 0 */
};

struct mta_qctl_rcpt {
	const char *addr;
	const char *state;       /* "pending" "deferred" "delivered"
				  * "bounced" "active" (in a job now) */
	const char *dest;        /* next hop key, "local", "" when final */
	uint64_t next_try_s;     /* deferred: wall clock seconds */
	const char *last;        /* the last reply or reason, "" */
};

struct mta_qctl_msg {
	const char *qid, *sender;
	uint64_t size, arrival_us;
	uint32_t attempts;
	bool held;
	uint32_t nrcpt;
	const struct mta_qctl_rcpt *rcpt;
};

/* Called on the queue manager's thread for each matching message, before
 * the operation changes it; m lives only during the call. Keep it short
 * (copy what you need). */
typedef void (*mta_qctl_cb)(void *arg, const struct mta_qctl_msg *m);

/* Runs op on the queue manager's thread while the caller (the control
 * thread, never a worker) waits up to timeout_ms. Returns how many
 * messages matched (SUSPEND/RESUME: 0 or 1), -ETIMEDOUT (the queue
 * manager did not answer in time; the request is withdrawn), -EINVAL
 * (a bad op, SUSPEND/RESUME without domain), -EBUSY (another control
 * request is running). cb may be NULL. */
int mta_qmgr_ctl(struct mta_qmgr *q, enum mta_qctl_op op,
		 const struct mta_qctl_filter *f, mta_qctl_cb cb, void *arg,
		 uint32_t timeout_ms);

/* Destinations now (queue summary). Same threading as mta_qmgr_ctl. */
struct mta_qctl_dest {
	const char *key;         /* "example.org", "[198.18.0.10]:2525",
				  * "local" */
	uint32_t ready, deferred, active_jobs;
	bool suspended;          /* by SUSPEND */
	uint64_t backoff_until_s;/* 0: not backed off */
	const char *why;         /* the last host failure, "" */
};
typedef void (*mta_qctl_dest_cb)(void *arg, const struct mta_qctl_dest *d);
int mta_qmgr_dests(struct mta_qmgr *q, mta_qctl_dest_cb cb, void *arg,
		   uint32_t timeout_ms);

/* dpmailctl reload: applies c (all but spool_dir and mailbox, which
 * need a restart) and, when route is not NULL, makes it the routing
 * tables for messages routed from now on (a reference is taken; the
 * old tables' is dropped on the queue manager's thread). Same threading
 * and return values as mta_qmgr_ctl (0 when applied). */
int mta_qmgr_reconf(struct mta_qmgr *q, const struct mta_qmgr_conf *c,
		    const struct mta_route *route, uint32_t timeout_ms);

#define MTA_QMGR_COUNTERS(X) \
	X(received) X(delivered_local) X(delivered_remote) X(deferred) \
	X(bounced) X(expired) X(dsn_sent) X(jobs) X(local_batches) \
	X(loops) X(state_records) X(spool_retries) \
	X(bodies_dropped) X(bodies_read) X(body_read_errors)

struct mta_qmgr_stats {
#define X(n) uint64_t n;
	MTA_QMGR_COUNTERS(X)
#undef X
	uint64_t msgs_live, rcpts_deferred_now, dests, jobs_active;
	uint64_t body_bytes;         /* bodies in memory now */
};
/* Any thread; figures are relaxed reads. */
void mta_qmgr_get_stats(const struct mta_qmgr *q, struct mta_qmgr_stats *s);

#endif
