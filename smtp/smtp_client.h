/*
 * smtp_client.h: the outbound ESMTP client engine, sans-I/O. Bytes in
 * (the server's replies, any split), bytes out (commands and the
 * dot-stuffed message through ops->write), events up (per-recipient
 * results, the connection ready for another message, or done).
 *
 * One struct smtp_client is one SMTP client session (RFC 5321) on one
 * connection the caller has opened (mta/ over the TCP stream API, or a
 * unit test). It never includes DPDK or socket headers, never blocks,
 * never reads a clock and never touches the disk. The caller owns the
 * timers: it arms smtp_client_timeout_ms() after each call into the
 * engine and calls smtp_client_timeout() when that runs out.
 *
 * Life of a connection:
 *   new -> (greeting 220) -> EHLO (HELO when EHLO gets 5xx)
 *   -> ops->ready: the caller hands one message with smtp_client_send()
 *      or ends with smtp_client_quit()
 *   -> MAIL, RCPT..., DATA, body, "." -> ops->done with every recipient's
 *      result -> (RSET when the transaction was left open) -> ops->ready
 *   ... -> QUIT, 221 -> ops->close(SMTP_CLIENT_END_QUIT).
 * A failure of the host (greeting or HELO refused, 421 at any time, a
 * timeout, a garbled reply, the connection lost) ends with ops->close
 * and a class telling the MTA whether to try the next MX; recipients of
 * a message in flight then get ops->done first, every one not yet final
 * deferred.
 *
 * Extensions used when the server offers them: PIPELINING (RFC 2920:
 * MAIL, every RCPT and DATA in one write), SIZE (1870), 8BITMIME (6152),
 * SMTPUTF8 (6531), DSN (3461: RET, ENVID, NOTIFY, ORCPT, xtext encoded),
 * ENHANCEDSTATUSCODES (2034), STARTTLS (3207: when the caller asks,
 * smtp_client_starttls). CHUNKING and AUTH are only recorded
 * (smtp_client_caps).
 *
 * Decided here, before anything is sent (every recipient of the message
 * bounced, reply.local set, the connection stays ready):
 *   a sender or recipient with a control character, '<' or '>' (it
 *     would break the command line)   -> 553 5.1.3
 *   env->smtputf8 and no SMTPUTF8 offered  -> 553 5.6.7
 *   8-bit octets in the body and no 8BITMIME offered (RFC 6152 3: no
 *     downgrade to 7 bit here)             -> 554 5.6.3
 *   BODY=BINARYMIME (this engine has no BDAT) -> 554 5.6.3
 *   the body larger than the server's SIZE -> 552 5.3.4
 *
 * Reply handling: 2xx to RCPT is provisional; the reply to the end of
 * data makes every accepted recipient delivered (2xx), deferred (4xx)
 * or bounced (5xx). A 4xx/5xx to MAIL or DATA applies to every
 * recipient still pending. 421 at any stage: every pending recipient
 * deferred, the connection done. A reply that is not "3DIGIT [SP / -
 * text]", that mixes codes over its lines, has a line of more than
 * SMTP_CLIENT_MAX_LINE octets before its LF (CR counted) or more than
 * SMTP_CLIENT_MAX_LINES lines,
 * has a code the stage never expects (354 to MAIL), or comes when none
 * is due, is a protocol error: pending recipients deferred with a local
 * "451 4.5.0", the connection closed without QUIT.
 *
 * Memory: the session, a fixed line buffer, the results of the message
 * in flight (freed after ops->done) and one data block. Never more.
 *
 * Threads: none; a session is used by one thread (its worker).
 * ops->ready may call smtp_client_send() or smtp_client_quit(); no
 * callback may call smtp_client_input(), _timeout(), _lost(),
 * _drained() or _free().
 */
#ifndef DPMAIL_SMTP_SMTP_CLIENT_H
#define DPMAIL_SMTP_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

/* RFC 5321 4.5.3.1.5 says 512 octets per reply line; servers send longer
 * ones (long EHLO lists), so we allow eight times that, then give up. */
#define SMTP_CLIENT_MAX_LINE (512 * 8)
/* Lines in one multi-line reply before it counts as garbage. */
#define SMTP_CLIENT_MAX_LINES 256
/* Reply text kept per result (joined lines, truncated), NUL included. */
#define SMTP_CLIENT_TEXT_MAX 256
/* The AUTH mechanisms kept from EHLO, NUL included. */
#define SMTP_CLIENT_AUTH_MAX 128

/* Where the session stands; also which timeout applies. */
enum smtp_client_stage {
	SMTP_CLIENT_GREETING = 0, /* waiting for 220: 5 min */
	SMTP_CLIENT_EHLO,        /* 5 min (as MAIL) */
	SMTP_CLIENT_HELO,        /* 5 min */
	SMTP_CLIENT_READY,       /* idle, the caller's turn: no timer */
	SMTP_CLIENT_MAIL,        /* 5 min */
	SMTP_CLIENT_RCPT,        /* 5 min */
	SMTP_CLIENT_DATA,        /* waiting for 354: 2 min */
	SMTP_CLIENT_DATA_BLOCK,  /* waiting for smtp_client_drained: 3 min */
	SMTP_CLIENT_DATA_END,    /* waiting for the reply to ".": 10 min */
	SMTP_CLIENT_RSET,        /* 5 min */
	SMTP_CLIENT_QUIT,        /* waiting for 221: 5 min */
	SMTP_CLIENT_CLOSED,      /* ops->close was called: no timer */
	SMTP_CLIENT_STARTTLS,    /* waiting for 220, then the caller's TLS
				    handshake (smtp_client_tls_up): 5 min */
};

/* EHLO keywords seen (smtp_client_caps). */
enum smtp_client_cap {
	SMTP_CAP_PIPELINING = 1u << 0,
	SMTP_CAP_SIZE = 1u << 1,
	SMTP_CAP_8BITMIME = 1u << 2,
	SMTP_CAP_SMTPUTF8 = 1u << 3,
	SMTP_CAP_DSN = 1u << 4,
	SMTP_CAP_CHUNKING = 1u << 5,
	SMTP_CAP_ENHANCEDSTATUSCODES = 1u << 6,
	SMTP_CAP_STARTTLS = 1u << 7,
	SMTP_CAP_AUTH = 1u << 8,
};

struct smtp_client_caps {
	uint32_t flags;      /* enum smtp_client_cap bits; 0 after HELO */
	uint64_t size;       /* SIZE's limit; 0: none given (no fixed limit) */
	char auth[SMTP_CLIENT_AUTH_MAX]; /* AUTH's mechanisms as sent */
};

/* One reply as it is kept for a result. */
struct smtp_client_reply {
	uint16_t code;   /* 250, 451, 550 ... */
	/* The server's enhanced status code when its first line had one
	 * of the reply's class, else one derived from stage and code
	 * (X.0.0; 2.1.0 MAIL, 2.1.5 RCPT, 2.6.0 end of data; 552 X.3.4;
	 * 550/553 to RCPT 5.1.1). */
	char enh[16];
	/* The text after code and enhanced code, lines joined by one
	 * space, cut at SMTP_CLIENT_TEXT_MAX - 1 octets. */
	char text[SMTP_CLIENT_TEXT_MAX];
	enum smtp_client_stage stage; /* the command it answered */
	bool local;      /* made up here (timeout, protocol error, a
			  * decision before sending): no server said it */
};

enum smtp_client_status {
	SMTP_RCPT_DELIVERED = 0, /* 2xx to the end of data */
	SMTP_RCPT_DEFERRED,      /* 4xx, or the connection failed: retry */
	SMTP_RCPT_BOUNCED,       /* 5xx: permanent, send a DSN */
};

struct smtp_client_rcpt {
	uint32_t idx;                   /* into env->rcpt */
	enum smtp_client_status status;
	struct smtp_client_reply reply; /* what decided it */
};

/* What ops->done gets: the message handed to smtp_client_send. */
struct smtp_client_msg {
	const struct envelope *env;
	uint32_t nrcpt;
	const struct smtp_client_rcpt *rcpt; /* in the order given */
	uint32_t delivered, deferred, bounced;
};

/* Why the connection ends (ops->close). */
enum smtp_client_end {
	SMTP_CLIENT_END_QUIT = 0,  /* we quit (221 or any reply to QUIT) */
	/* This host cannot take mail now: greeting 4xx (421 included),
	 * EHLO 4xx, HELO 4xx, 421 at any time, a timeout, a protocol
	 * error, the connection lost. Try the next MX or later. */
	SMTP_CLIENT_END_HOST_TEMP,
	/* This host refuses us: greeting 5xx (RFC 5321 3.1: 554 means
	 * "no SMTP service here"), HELO 5xx after EHLO 5xx. Its
	 * recipients are not bounced for it; try the next MX. */
	SMTP_CLIENT_END_HOST_PERM,
};

struct smtp_client_conf {
	const char *helo_name;  /* our name for EHLO/HELO */
	/* Octets of dot-stuffed body per ops->write before waiting for
	 * smtp_client_drained (the data block of RFC 5321 4.5.3.2.5).
	 * 0: default 64 KiB. */
	uint32_t data_block;
	bool no_pipelining;     /* never pipeline, even when offered */
};

struct smtp_client_ops {
	/* Bytes to send, in order. Must take them all. */
	void (*write)(void *user, const void *data, size_t len);
	/* Idle and ready for smtp_client_send or smtp_client_quit. */
	void (*ready)(void *user);
	/* A message is finished: every recipient has its final result.
	 * m and what it points to live only during the call; env is the
	 * caller's again. */
	void (*done)(void *user, const struct smtp_client_msg *m);
	/* Close the connection once what was written is sent. why: the
	 * reply that ended it (the 221, the 554 greeting, a local one for
	 * timeouts and protocol errors). Nothing is written after it. */
	void (*close)(void *user, enum smtp_client_end end,
		      const struct smtp_client_reply *why);
	/* The answer to smtp_client_starttls (RFC 3207): 220 = the caller
	 * starts the TLS handshake on the stream now (bytes the server
	 * sent after the 220 in clear are dropped here) and calls
	 * smtp_client_tls_up() once it is done; any other reply = STARTTLS
	 * refused, the session goes on in clear (ops->ready follows) and
	 * the caller decides. NULL: STARTTLS is never sent. */
	void (*starttls)(void *user, const struct smtp_client_reply *r);
};

struct smtp_client_stats {
	uint32_t replies;        /* complete replies read */
	uint32_t messages;       /* handed to smtp_client_send */
	uint32_t delivered, deferred, bounced; /* recipients */
	uint32_t protocol_errors, timeouts;
	uint32_t helo_fallbacks; /* EHLO 5xx, HELO sent */
	uint32_t rsets;
	uint64_t bytes_out;      /* everything given to ops->write */
};

/* Copies conf (helo_name too). NULL on -ENOMEM or a conf without
 * helo_name. Nothing is written: the engine waits for the greeting. */
struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf,
				    const struct smtp_client_ops *ops,
				    void *user);
void smtp_client_free(struct smtp_client *c);

/* Feeds received bytes (any split). Always consumes all of them;
 * ignores them after close. */
void smtp_client_input(struct smtp_client *c, const uint8_t *data,
		       size_t len);

/*
 * Hands one message for the recipients env->rcpt[idx[0..n)] (n >= 1);
 * env must stay unchanged until ops->done. Only in SMTP_CLIENT_READY.
 * Returns 0 (sent, results come with ops->done), 1 (decided locally
 * before sending, see above: ops->done was already called and the
 * connection is still ready), -EBUSY (not ready), -EINVAL (n == 0 or
 * an index out of range), -ENOMEM.
 */
int smtp_client_send(struct smtp_client *c, const struct envelope *env,
		     const uint32_t *idx, uint32_t n);

/* STARTTLS (when the server offered it and TLS is not on yet). Only in
 * READY: 0, -EBUSY (not ready), -EOPNOTSUPP (not offered, already TLS,
 * or no ops->starttls). */
int smtp_client_starttls(struct smtp_client *c);
/* The caller's handshake after the 220 is done: the engine forgets
 * what EHLO told it (RFC 3207 4.2) and sends EHLO again. */
void smtp_client_tls_up(struct smtp_client *c);
/* TLS is on (smtp_client_tls_up was called). */
bool smtp_client_tls_on(const struct smtp_client *c);

/* QUIT, then ops->close(END_QUIT) at its reply. Only in READY:
 * returns 0 or -EBUSY. */
int smtp_client_quit(struct smtp_client *c);

/* The timeout (RFC 5321 4.5.3.2) for the current stage in ms; 0 when
 * none runs (READY, CLOSED). Read it again after every call. */
uint32_t smtp_client_timeout_ms(const struct smtp_client *c);

/* That timeout ran out: the stage fails with a local "451 4.4.2",
 * pending recipients are deferred, the connection closes (HOST_TEMP;
 * END_QUIT when it was the QUIT). No-op in READY and CLOSED. */
void smtp_client_timeout(struct smtp_client *c);

/* The peer closed or reset the connection: as a timeout, but with
 * "lost connection" and no timeout counted. No-op after close. */
void smtp_client_lost(struct smtp_client *c);

/* The caller's send buffer has room again: in DATA_BLOCK, writes the
 * next block (and the final "." when it is the last). */
void smtp_client_drained(struct smtp_client *c);

enum smtp_client_stage smtp_client_stage(const struct smtp_client *c);
const struct smtp_client_caps *smtp_client_caps(const struct smtp_client *c);
const struct smtp_client_stats *smtp_client_get_stats(const struct smtp_client *c);

#endif
