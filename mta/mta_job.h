/*
 * mta_job.h: one outbound delivery job, as the queue manager hands it to
 * a worker and the worker hands it back.
 *
 * A job is one destination (a next hop) and up to msgs_per_conn messages
 * for it, each with the recipients that go there. The worker resolves the
 * next hop (MX, A, or a literal address), connects to the hosts in order,
 * runs the SMTP client engine over one connection for all the messages
 * (connection reuse), and fills every recipient's result. The job then
 * goes back to the queue manager on its return ring.
 *
 * Ownership: the queue manager allocates and frees jobs. While a job is
 * with a worker, the worker may read the envelopes and write the results
 * and the job's own result fields; the queue manager touches nothing of
 * it. Envelopes stay unchanged meanwhile (the queue manager never edits a
 * message that is in a job).
 */
#ifndef DPMAIL_MTA_MTA_JOB_H
#define DPMAIL_MTA_MTA_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "common/envelope.h"
#include "smtp/smtp_client.h"

#define MTA_HOST_MAX 255

enum mta_nexthop_kind {
	MTA_NH_MX = 0,  /* host is a mail domain: MX records, else its A */
	MTA_NH_HOST,    /* host is a host name: its A records, no MX */
	MTA_NH_IP,      /* host is a dotted IPv4 address */
};

struct mta_nexthop {
	enum mta_nexthop_kind kind;
	char host[MTA_HOST_MAX + 1];
	uint16_t port;  /* 25 unless the route says otherwise */
};

/* One recipient's outcome, filled by the worker. */
struct mta_job_rcpt {
	uint32_t idx;                     /* into env->rcpt */
	enum smtp_client_status status;   /* DELIVERED / DEFERRED / BOUNCED */
	struct smtp_client_reply reply;   /* what decided it */
};

struct mta_job_msg {
	const struct envelope *env;
	void *qmsg;                       /* the queue manager's */
	uint32_t nrcpt;
	struct mta_job_rcpt *rcpt;        /* [nrcpt], idx set by qmgr */
	bool attempted;                   /* a host saw MAIL FROM for it */
};

struct mta_job {
	struct mta_job *next;             /* the queue manager's lists */
	void *dest;                       /* the queue manager's */
	struct mta_nexthop nh;
	uint32_t nmsg;
	struct mta_job_msg *msg;          /* [nmsg] */
	uint64_t queued_ms;               /* when qmgr handed it over */
	/* filled by the worker */
	char remote_mta[MTA_HOST_MAX + 1]; /* the host that answered last */
	uint32_t remote_ip;               /* network order, 0: none */
	/* No host could be reached or every one refused us (connect
	 * failed, greeting 4xx/5xx, a timeout before any message): the
	 * destination is in trouble; the queue manager backs it off. */
	bool host_failed;
	/* The next hop does not take mail at all (NXDOMAIN, null MX):
	 * every recipient is bounced with reply (set by the worker). */
	bool perm_failed;
	char why[256];                    /* for logs: the host failure */
};

#endif
