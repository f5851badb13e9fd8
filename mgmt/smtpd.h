/*
 * smtpd.h: the SMTP service: listeners on each worker's stack, one SMTP
 * engine (smtp/) per connection, messages handed to the spool (store/)
 * and answered from its completion ring.
 *
 * Owns: the sessions (one per connection, freed when both the connection
 * and any spool request of theirs are finished), the listeners, the
 * connection limits (total and per client address, shared by all workers
 * through atomic counters), and the timeouts and minimum data rate
 * (checked once a second from the worker's tick).
 *
 * Threads: smtpd_start/smtpd_stop on the main thread while workers are
 * stopped; everything else on the owning worker.
 */
#ifndef DPMAIL_MGMT_SMTPD_H
#define DPMAIL_MGMT_SMTPD_H

#include <stdbool.h>
#include <stdint.h>

#include "smtp/smtp_server.h"

struct stack;
struct spool;
struct mta_policy;

#define SMTPD_MAX_LISTEN 8
#define SMTPD_MAX_WORKERS 64

struct smtpd_conf {
	char hostname[256];
	uint16_t listen[SMTPD_MAX_LISTEN];
	uint32_t nlisten;
	uint64_t max_message_size;
	uint32_t max_recipients, max_errors, max_line, max_text_line;
	uint32_t max_received;
	uint32_t bare_lf;           /* enum smtp_bare_policy */
	uint32_t vrfy;              /* enum smtp_vrfy_policy */
	uint32_t command_timeout_ms, data_timeout_ms;
	uint32_t min_data_rate;     /* bytes/s in DATA; 0 = off */
	uint32_t data_rate_grace_ms;
	uint32_t max_conns, max_conns_per_client;
	/* per-listener TLS and AUTH policy: port lists "465, 587" */
	char tls_implicit[64];      /* TLS from the first byte (RFC 8314) */
	char tls_required[64];      /* 530 5.7.0 until STARTTLS */
	char auth_required[64];     /* 530 5.7.0 before AUTH (submission) */
	struct smtpd_tls_conf {
		char cert_file[512], key_file[512];
		/* more certificates for SNI: "cert.pem:key.pem, ..." */
		char sni_certs[1024];
		uint32_t min_version;   /* 0 = TLS 1.2, 1 = TLS 1.3 */
		char ciphers[512], ciphersuites[512];
		bool session_tickets;
	} tls;
	struct smtpd_auth_conf {
		char users_file[512];   /* "" = AUTH not offered */
		uint32_t plaintext;     /* 0 no, 1 trusted networks, 2 yes */
		uint32_t fail_delay_ms; /* before each 535 */
		uint32_t max_failures;  /* per connection, then 421 */
		uint32_t client_max_failures; /* per address and window */
		uint32_t client_window_ms;
		bool sender_login_match; /* MAIL FROM must be the user's */
	} auth;
};
void smtpd_conf_defaults(struct smtpd_conf *c);
/* Checks the per-listener port lists; returns the offending key (with
 * why) or NULL. */
const char *smtpd_conf_check(const struct smtpd_conf *c, char *why,
			     size_t len);

/* Counters one worker keeps (summed by mgmt). */
#define SMTPD_COUNTERS(X) \
	X(connections) X(refused_total) X(refused_per_client) \
	X(messages_queued) X(messages_tempfailed) X(bytes_queued) \
	X(rcpt_accepted) X(rcpt_rejected) X(timeouts) X(slow_data) \
	X(commands) X(command_errors) X(sessions_live) \
	X(tls_handshakes) X(tls_failed) X(tls_resumed) X(tls_handshake_us) \
	X(auth_ok) X(auth_failed) X(auth_refused) X(auth_hash_us)

struct smtpd_counters {
#define X(n) uint64_t n;
	SMTPD_COUNTERS(X)
#undef X
};

struct smtpd_shared; /* limits shared by all workers */

/* True when a and b differ only in what a reload applies live
 * (everything but the listeners, TLS on/off and [auth] users_file). */
bool smtpd_conf_restart_same(const struct smtpd_conf *a,
			     const struct smtpd_conf *b);

/* Shared state for nworkers; NULL on -ENOMEM. */
struct smtpd_shared *smtpd_shared_new(const struct smtpd_conf *c,
				      const struct mta_policy *policy,
				      struct spool *sp);
/* Accepted messages go on to the queue manager (after their 250), with
 * aliases expanded by route before the spool. Before smtpd_start. */
struct mta_qmgr;
struct mta_route;
void smtpd_shared_set_mta(struct smtpd_shared *sh, struct mta_qmgr *q,
			  const struct mta_route *route);
void smtpd_shared_free(struct smtpd_shared *sh);
/* dpmailctl reload, from the control thread, in two steps so that the
 * caller can apply it with others all or nothing.
 * prepare: a new generation from c's limits (its listeners and users
 * file are ignored, and so is TLS switched on or off: those need a
 * restart; certificates and TLS settings are re-read), policy (owned by
 * the generation on success) and route (a reference is taken; NULL
 * keeps the current tables). 0, or -EINVAL (a certificate or key does
 * not load) / -ENOMEM with why; then nothing changed.
 * commit: sessions accepted from now on take it; those already open
 * keep what they started with. Waits up to timeout_ms for every worker
 * to take it (each looks once a tick). abort: drop a prepared one. */
struct mta_policy;
struct smtpd_gen;
int smtpd_reconf_prepare(struct smtpd_shared *sh, const struct smtpd_conf *c,
			 struct mta_policy *policy,
			 const struct mta_route *route, struct smtpd_gen **out,
			 char *why, size_t len);
void smtpd_reconf_commit(struct smtpd_shared *sh, struct smtpd_gen *g,
			 uint32_t timeout_ms);
void smtpd_reconf_abort(struct smtpd_gen *g);
/* Any thread (dpmailctl shutdown --drain): new connections get 421 from
 * now on; sessions already open go on. */
void smtpd_shared_set_draining(struct smtpd_shared *sh);
/* TLS and AUTH: builds the TLS context from conf.tls (no cert_file: no
 * TLS, logged; STARTTLS not offered, implicit listeners refused) and
 * starts the password verifier for conf.auth.users_file for nworkers.
 * Before smtpd_start. 0, or -1 with a reason in why. */
int smtpd_shared_tls_auth(struct smtpd_shared *sh, unsigned nworkers,
			  char *why, size_t len);

struct smtpd_worker;
/* Opens the listeners on this worker's stack. 0 or negative errno. */
int smtpd_start(struct smtpd_shared *sh, struct stack *st, unsigned worker,
		struct smtpd_worker **out);
/* Once per loop: spool completions. True if any came. */
bool smtpd_poll(struct smtpd_worker *w);
/* From the worker's tick: timeouts, once a second. */
void smtpd_tick(struct smtpd_worker *w, uint64_t now_ms);
/* After the stack has closed every connection (workers stopped): waits
 * for the spool's answers to sessions still waiting, frees the sessions. */
void smtpd_drain(struct smtpd_worker *w);
/* Drains, then frees the worker's part (counters included). */
void smtpd_free(struct smtpd_worker *w);
const struct smtpd_counters *smtpd_get_counters(const struct smtpd_worker *w);

#endif
