/*
 * smtp_server.h: the ESMTP server engine, sans-I/O. Bytes in, bytes out,
 * events up. It never includes DPDK or socket headers, never blocks and
 * never touches the disk: what it needs from outside (recipient policy,
 * a queue ID, making a message durable) it asks through smtp_server_ops
 * and, for the message, waits for an answer (smtp_server_queued).
 *
 * One struct smtp_server is one SMTP session (RFC 5321) on one
 * connection. The caller (mgmt/smtpd.c over the TCP stream API, or a
 * unit test) feeds every received byte to smtp_server_input() in any
 * split, sends whatever ops->write hands it, and closes the connection
 * when ops->close says so (after sending what was written before it).
 *
 * Extensions: PIPELINING (RFC 2920), SIZE (1870), 8BITMIME (6152),
 * ENHANCEDSTATUSCODES (2034/3463; every reply after the greeting carries
 * one), SMTPUTF8 (6531), CHUNKING/BDAT (3030), DSN (3461), STARTTLS
 * (3207) and AUTH PLAIN/LOGIN (4954, 4616): advertised only when the
 * caller sets ops->starttls / ops->auth; the caller does the TLS and
 * checks the passwords, the engine runs the SASL exchange.
 *
 * Input is always consumed whole. While a message waits for
 * smtp_server_queued() the engine keeps later bytes (pipelined commands)
 * in its own backlog and processes them once the answer came; the caller
 * should pause reading while smtp_server_blocked() is true so the backlog
 * stays small.
 *
 * Threads: none; a session is used by one thread (its worker).
 */
#ifndef DPMAIL_SMTP_SMTP_SERVER_H
#define DPMAIL_SMTP_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/envelope.h"

struct smtp_server;

/* What DATA does with a bare LF or bare CR (not part of CRLF). Either
 * way the end of data is only CRLF "." CRLF, so the 2023 smuggling
 * family (<LF>.<CR><LF>, <CR>.<CR>, ...) never ends a message early. */
enum smtp_bare_policy {
	SMTP_BARE_REJECT = 0, /* read on to the real end, then 550 5.6.11 */
	SMTP_BARE_NORMALIZE,  /* store bare LF / bare CR as CRLF */
};

/* VRFY and EXPN: 252 "cannot verify" (default) or 502 (disabled). */
enum smtp_vrfy_policy { SMTP_VRFY_252 = 0, SMTP_VRFY_502 };

struct smtp_server_conf {
	const char *hostname;       /* greeting, EHLO, Received: */
	const char *greeting_text;  /* after "220 <hostname> "; default "ESMTP dpmail" */
	uint32_t max_cmd_line;      /* octets incl. CRLF; >= 512 (RFC 5321 4.5.3.1.4) */
	uint32_t max_text_line;     /* octets incl. CRLF in DATA; >= 1000 (4.5.3.1.6) */
	uint64_t max_message_size;  /* body octets incl. our Received:; SIZE advertises it */
	uint32_t max_recipients;    /* >= 100 (4.5.3.1.8); 452 4.5.3 past it */
	uint32_t max_errors;        /* bad commands before 421 and close */
	uint32_t max_received;      /* Received: headers before 554 5.4.6 (loop); 0 = off */
	enum smtp_bare_policy bare_lf;
	enum smtp_vrfy_policy vrfy;
	bool smtputf8, eightbitmime, chunking, dsn, pipelining;
	/* RFC 3030 BODY=BINARYMIME (needs chunking). Off by default: such
	 * a message cannot be relayed to a server without it. */
	bool binarymime;
	/* The EHLO "AUTH" line's mechanisms when ops->auth is set;
	 * default "PLAIN LOGIN". */
	const char *auth_mechs;
};

/* Fills conf with the defaults above (512, 1000, 36 MiB, 1000, 20, 50,
 * reject, 252, every extension on but BINARYMIME). hostname must still
 * be set. smtp_server_new clamps limits below the RFC 5321 minimums up
 * to them. */
void smtp_server_conf_defaults(struct smtp_server_conf *c);

/* The caller's answer to RCPT TO (and MAIL FROM). Each maps to one reply. */
enum smtp_verdict {
	SMTP_OK = 0,
	SMTP_REJECT_NO_USER,   /* 550 5.1.1 <addr>: Recipient address rejected: User unknown */
	SMTP_REJECT_RELAY,     /* 554 5.7.1 <addr>: Relay access denied */
	SMTP_REJECT_POLICY,    /* 550 5.7.1 ... rejected by policy */
	SMTP_TEMPFAIL,         /* 451 4.3.0 temporary failure, try later */
	SMTP_TEMPFAIL_STORAGE, /* 452 4.3.1 Insufficient system storage */
	/* "CODE X.Y.Z <addr>: text" as set with smtp_server_set_reject()
	 * just before returning it (policy 550 5.7.1 if none was set) */
	SMTP_REJECT_CUSTOM,
};

struct smtp_server_ops {
	/* Reply bytes to send, in order. Must take them all (buffer them). */
	void (*write)(void *user, const void *data, size_t len);
	/* Close the connection once what was written is sent (QUIT, 421). */
	void (*close)(void *user);
	/* A transaction begins (MAIL accepted syntactically): write a new
	 * queue ID into env->qid (the Received: header and the 250 name
	 * it) and decide. NULL: accept, qid stays "". */
	enum smtp_verdict (*mail)(void *user, struct envelope *env);
	/* Decide on one recipient; addr is the parsed forward-path without
	 * <> (not yet added to env). */
	enum smtp_verdict (*rcpt)(void *user, const struct envelope *env,
				  const char *addr);
	/* The message is complete (end of DATA or BDAT LAST) and within
	 * every limit. The caller now owns env and must answer with
	 * smtp_server_queued() (now or later); the engine starts a fresh
	 * envelope for the next transaction. */
	void (*message)(void *user, struct envelope *env);
	/* Wall clock for the Received: header; NULL = time(NULL). */
	time_t (*now)(void *user);
	/* STARTTLS and AUTH; NULL = not offered (STARTTLS then gets
	 * 502 5.5.1, AUTH 503 5.5.1).
	 * starttls: called right after "220 2.0.0 Ready to start TLS" was
	 * written; the caller starts the handshake once that is sent and
	 * feeds decrypted bytes from then on. The engine drops whatever
	 * plaintext followed the command and forgets HELO (RFC 3207 4.2).
	 * Negative: the session closes (the client is already in TLS).
	 * auth: the engine ran the SASL exchange (PLAIN or LOGIN, see
	 * smtp_auth.c) and asks whether authcid/password are good (authzid
	 * "" when none). 0 = "235 2.7.0"; -EINPROGRESS = the answer comes
	 * later through smtp_server_auth_done() (the session waits,
	 * blocked, as for a queued message); -EACCES/-EPERM = "535 5.7.8";
	 * -EAGAIN = "454 4.7.0" (too many failures, try later); other
	 * negative = "454 4.7.0" temporary failure. */
	int (*starttls)(void *user);
	int (*auth)(void *user, const char *authzid, const char *authcid,
		    const char *password);
};

/*
 * Per-session policy (per listener), set before smtp_server_start:
 *  tls_required: until TLS is on, every command but EHLO, HELO,
 *    STARTTLS, NOOP, RSET and QUIT gets "530 5.7.0 Must issue a
 *    STARTTLS command first" (RFC 3207 4).
 *  auth_required: MAIL before a successful AUTH gets "530 5.7.0
 *    Authentication required" (RFC 4954 6, submission: RFC 6409).
 *  auth_plaintext: AUTH is offered and accepted without TLS; otherwise
 *    it is advertised only after TLS and refused before it with
 *    "538 5.7.11 Encryption required for requested authentication
 *    mechanism" (RFC 4954 4, 6).
 */
struct smtp_session_policy {
	bool tls_required, auth_required, auth_plaintext;
};
void smtp_server_set_policy(struct smtp_server *s,
			    const struct smtp_session_policy *p);

/* The answer to an ops->auth that returned -EINPROGRESS: the same codes
 * as its return value. Processes pipelined input before it returns. */
void smtp_server_auth_done(struct smtp_server *s, int status);
/* The authenticated identity (authcid), "" when none. */
const char *smtp_server_auth_user(const struct smtp_server *s);

/* client_addr (text form) goes into Received: and env->client_addr.
 * Returns NULL on -ENOMEM. Nothing is written until smtp_server_start. */
struct smtp_server *smtp_server_new(const struct smtp_server_conf *conf,
				    const struct smtp_server_ops *ops,
				    void *user, const char *client_addr,
				    uint16_t client_port, uint16_t local_port);
void smtp_server_free(struct smtp_server *s);

/* Writes the 220 greeting. */
void smtp_server_start(struct smtp_server *s);
/* Refuses the session at connect: "421 4.7.0 <host> <text>", then close. */
void smtp_server_refuse(struct smtp_server *s, const char *text);

/* Feeds received bytes (any split). Always consumes all of them.
 * Callbacks must not call smtp_server_input or smtp_server_free; only
 * ops->message may call smtp_server_queued (then or later). If the
 * caller feeds on while blocked, more than 2 * max_message_size + 1 MiB
 * (65 MiB when the size is unlimited) of backlog gets "421 4.7.0 ...
 * too much pipelined input". */
void smtp_server_input(struct smtp_server *s, const uint8_t *data, size_t len);

/* The answer to ops->message: status 0 = durable ("250 2.0.0 Ok: queued
 * as <qid>"), -ENOSPC = "452 4.3.1 Insufficient system storage", any
 * other negative errno = "451 4.3.0 Error: queue file write error".
 * Processes the backlog of pipelined input before it returns. */
/* The reply of the next SMTP_REJECT_CUSTOM verdict: code 4xx or 5xx,
 * enh a status of the same class ("5.7.1"), text one line (controls
 * become spaces, cut at 200 octets). From the mail/rcpt callback. */
void smtp_server_set_reject(struct smtp_server *s, unsigned code,
			    const char *enh, const char *text);
void smtp_server_queued(struct smtp_server *s, int status, const char *qid);

/* The connection is already TLS (implicit TLS listener, or after the
 * starttls hook's handshake): STARTTLS is no longer offered and
 * Received: says ESMTPS. */
void smtp_server_set_tls(struct smtp_server *s);

/* The caller's timer fired: "421 4.4.2 <host> Error: timeout exceeded",
 * then close. Also used for a too slow data rate (text given). */
void smtp_server_timeout(struct smtp_server *s, const char *text);

enum smtp_phase {
	SMTP_PHASE_COMMAND,  /* waiting for a command (timeout: command) */
	SMTP_PHASE_DATA,     /* inside DATA or a BDAT chunk (timeout: data) */
	SMTP_PHASE_PENDING,  /* waiting for smtp_server_queued */
	SMTP_PHASE_CLOSING,  /* QUIT or 421 sent; input ignored */
};
enum smtp_phase smtp_server_phase(const struct smtp_server *s);
/* True while input would only pile up in the backlog. */
bool smtp_server_blocked(const struct smtp_server *s);

/* Per-session tallies the caller may add to its counters. commands:
 * command lines read; errors: bad commands (syntax, sequence, unknown,
 * too long); messages: answered 250 by smtp_server_queued;
 * rejected_msgs: refused at the end of data (limits, bare CR/LF, loop)
 * or by a failed queue write; rejected_rcpts: RCPT refused by ops->rcpt. */
struct smtp_server_stats {
	uint32_t commands, errors, messages, rejected_rcpts, rejected_msgs;
};
const struct smtp_server_stats *smtp_server_get_stats(const struct smtp_server *s);

#endif
