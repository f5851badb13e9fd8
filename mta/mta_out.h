/*
 * mta_out.h: outbound delivery on a worker: a job (mta_job.h) in, the
 * same job back with every recipient's result.
 *
 * Owns, per worker: the DNS resolver core (mta_dns, one cache per worker)
 * over UDP sockets of the worker's stack (one ephemeral, randomly chosen
 * port per configured resolver), the outbound TCP connections, one SMTP
 * client engine (smtp_client.h) per connection, a small cache of idle
 * connections keyed by next hop, the FIFO of jobs waiting for a
 * connection slot, and the counters. Never blocks, never reads the disk;
 * every call on the stack's worker.
 *
 * A job's life:
 *   mta_out_submit -> waits in the FIFO while max_conns jobs are active
 *   -> an idle cached connection to the same next hop (kind, host, port)
 *      is reused, or the next hop is resolved:
 *        MTA_NH_IP    the literal address
 *        MTA_NH_MX    mta_dns_resolve_mx (MX by preference, implicit MX)
 *        MTA_NH_HOST  mta_dns_resolve_a (A records only)
 *   -> addresses tried in order (every address of the first MX, then the
 *      next MX): tcp_connect with connect_timeout_ms; refused,
 *      unreachable, timeout, or a greeting/EHLO refusal moves on to the
 *      next address
 *   -> the messages one after the other on one connection; a connection
 *      lost mid-job takes what is left (messages not sent, recipients of
 *      the message in flight deferred locally) to the next address
 *   -> the connection is cached for conn_cache_ms (or QUIT), and the job
 *      goes back through done() from the next mta_out_poll.
 *
 * Results (job->msg[i].rcpt[k].status and .reply):
 *   the server's reply to the end of data, RCPT, MAIL or DATA, or one
 *   the engine made up (reply.local); when no host took the message:
 *     DNS TEMP                     DEFERRED 451 4.4.3, host_failed
 *     NXDOMAIN / no address        BOUNCED  550 5.1.2, perm_failed
 *     null MX (RFC 7505)           BOUNCED  556 5.1.10, perm_failed
 *     every host failed            DEFERRED 451 4.4.1 "<why>", host_failed
 *     no resolver configured, bad next hop  DEFERRED 451 4.3.5
 *     mta_out_stop                 DEFERRED 451 4.3.2 system shutting down
 *   A recipient deferred locally by a lost session keeps that reply when
 *   no other host is left. job->why lists the host failures; remote_mta
 *   ("name[a.b.c.d]:port") and remote_ip name the last host that answered.
 *   host_failed: recipients are left deferred and no host gave a reply to
 *   any message of the job (the destination is in trouble).
 *
 * Logs: one LOG_INFO line per recipient per attempt, Postfix style:
 *   "mta_out: QID: to=<rcpt>, relay=name[ip]:port, dsn=X.Y.Z,
 *    status=sent|deferred|bounced (reply)".
 *
 * The caller (the worker loop): mta_out_poll once per loop iteration (it
 * starts waiting jobs, moves deliveries on and hands finished jobs back),
 * mta_out_tick every few ms (timers: DNS retries, connect timeouts, the
 * SMTP engine's timeouts, idle cache expiry). To stop: mta_out_stop while
 * the stack is still alive (every job comes back through done()), then
 * mta_out_free, then the stack's own teardown.
 *
 * Limits: max_conns bounds the jobs being delivered at once (each holds
 * at most one connection); idle cached connections are counted apart, at
 * most cache_max, and a connection quitting after use lives until the
 * server answers QUIT (10 s at most). Each DNS query (and each retry
 * of it) leaves from a port of its own, random among the ephemeral ports
 * that steer to this worker, closed by the first answer from its
 * resolver or after dns_timeout_ms (RFC 5452: with the 16-bit ID, a
 * spoofer must guess both); at most MO_DNS_PORTS_MAX in flight.
 * A job that finds no memory to be tracked comes back deferred (451
 * 4.3.0) from the next poll; only when 64 such jobs wait already is
 * done() called inside mta_out_submit.
 */
#ifndef DPMAIL_MTA_MTA_OUT_H
#define DPMAIL_MTA_MTA_OUT_H

#include <stdbool.h>
#include <stdint.h>

#include "mta/mta_dns.h"
#include "mta/mta_job.h"

struct stack;
struct mta_out;

struct mta_out_conf {
	const char *helo_name;           /* required */
	struct mta_dns_resolver resolvers[MTA_DNS_RESOLVERS_MAX];
	unsigned n_resolvers;            /* 0: MX/HOST next hops fail TEMP
					    with "no DNS resolver configured" */
	uint32_t dns_timeout_ms;         /* per try, default 2000 */
	unsigned dns_retries;            /* default 2 */
	uint32_t connect_timeout_ms;     /* default 30000 */
	uint32_t conn_cache_ms;          /* default 2000, 0 = no reuse across
					    jobs */
	uint32_t cache_max;              /* default 64 */
	uint32_t max_conns;              /* outbound connections on this
					    worker at once, default 256; jobs
					    beyond wait in a FIFO */
	uint32_t data_block;             /* passed to smtp_client_conf */
	/* Outbound STARTTLS (RFC 3207), per destination (the next hop's
	 * host): none (never), may (when offered; default), encrypt
	 * (TLS or defer), verify (TLS with a certificate that chains to
	 * tls_ca_file and names the MX host, or defer). tls_policy_map
	 * overrides the default per host: "example.org:verify, x.test:none". */
	uint32_t tls_policy;             /* enum mta_tls_policy */
	char tls_ca_file[512];           /* "" = the system's bundle */
	char tls_policy_map[1024];
};

enum mta_tls_policy {
	MTA_TLS_NONE = 0, MTA_TLS_MAY, MTA_TLS_ENCRYPT, MTA_TLS_VERIFY,
};

/* The defaults above; no resolver, helo_name NULL. */
void mta_out_conf_defaults(struct mta_out_conf *c);

/* A job is finished; j is the queue manager's again. Called from
 * mta_out_poll and mta_out_stop only, once per job. */
typedef void (*mta_out_done_fn)(void *user, struct mta_job *j);

/* conf is copied (helo_name too). Binds the UDP ports for the resolvers
 * on st. NULL on a bad conf (no helo_name, a zero timeout or max_conns,
 * a resolver with port 0) or when memory or ports run out. */
struct mta_out *mta_out_new(struct stack *st, unsigned worker,
			    const struct mta_out_conf *c, mta_out_done_fn done,
			    void *user);

/* Takes the job (on the worker). Its result fields and every
 * recipient's status and reply are reset here; done() comes later, from
 * mta_out_poll, never from inside this call. */
void mta_out_submit(struct mta_out *o, struct mta_job *j);

/* Once per worker loop iteration: starts waiting jobs, advances
 * deliveries, hands back finished jobs. true if it did anything. */
bool mta_out_poll(struct mta_out *o);

/* From the worker's tick (every ~1-10 ms); now_ms as the stack's clock. */
void mta_out_tick(struct mta_out *o, uint64_t now_ms);

/* The worker is stopping (the stack still alive): every job not
 * finished is completed with its remaining recipients DEFERRED (local
 * 451 4.3.2 "system shutting down"), done() is called for each,
 * connections are aborted, the UDP ports unbound. Later submits come
 * back the same way from the next poll. */
void mta_out_stop(struct mta_out *o);

/* Frees everything; calls mta_out_stop first if it was not (which needs
 * the stack). NULL is fine. */
void mta_out_free(struct mta_out *o);

struct mta_out_stats {
	uint64_t jobs, connects, connect_failures, conns_reused, messages,
		rcpt_delivered, rcpt_deferred, rcpt_bounced, dns_lookups,
		dns_failures;
	uint32_t conns_live, jobs_waiting;
};

void mta_out_get_stats(const struct mta_out *o, struct mta_out_stats *s);

/* The DNS resolver core, for tests and mgmt's counters; NULL when no
 * resolver is configured. */
struct mta_dns *mta_out_dns(struct mta_out *o);

#endif
