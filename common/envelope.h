/*
 * envelope.h: one message as the SMTP server took it in and the spool
 * keeps it: the envelope (sender, recipients, ESMTP and DSN parameters,
 * where it came from) and the body.
 *
 * Owns: every string and the body it points to (heap, freed together by
 * envelope_free). Shared by smtp/ (which fills it), store/ (which writes
 * and reads it) and mta/ (which routes it); it knows none of them.
 *
 * Strings are NUL-terminated UTF-8 (SMTPUTF8 addresses allowed), never
 * NULL where the field says "" for absent. Addresses are stored without
 * the angle brackets; the null reverse-path is "".
 */
#ifndef DPMAIL_COMMON_ENVELOPE_H
#define DPMAIL_COMMON_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Queue IDs: 14 characters of Crockford base32, unique across writers,
 * workers and restarts (see store/spool_qid.c). */
#define ENV_QID_LEN 14

/* RFC 3461 NOTIFY: 0 means the client gave none. */
enum env_notify {
	ENV_NOTIFY_NEVER = 1,
	ENV_NOTIFY_SUCCESS = 2,
	ENV_NOTIFY_FAILURE = 4,
	ENV_NOTIFY_DELAY = 8,
};

enum env_ret { ENV_RET_NONE = 0, ENV_RET_FULL, ENV_RET_HDRS };

/* RFC 1652/6152 BODY= */
enum env_body { ENV_BODY_NONE = 0, ENV_BODY_7BIT, ENV_BODY_8BITMIME,
		ENV_BODY_BINARYMIME };

struct env_rcpt {
	char *addr;     /* forward-path without <> */
	char *orcpt;    /* RFC 3461 ORCPT as given ("rfc822;user@host",
			 * xtext decoded), "" when absent */
	uint8_t notify; /* enum env_notify bits, 0 = not given */
};

struct envelope {
	char qid[ENV_QID_LEN + 1];
	char *mail_from;   /* "" = null reverse-path <> */
	char *envid;       /* RFC 3461 ENVID (xtext decoded), "" when absent */
	char *helo;        /* the client's HELO/EHLO argument */
	char *client_addr; /* "198.18.0.1" */
	uint16_t client_port;
	uint16_t local_port;   /* the listener that took it (25, 587, ...) */
	uint8_t ret;       /* enum env_ret */
	uint8_t body_type; /* enum env_body */
	bool smtputf8;
	bool esmtp;        /* EHLO rather than HELO */
	uint64_t arrival_us;   /* wall clock, microseconds since the epoch */
	uint64_t declared_size; /* MAIL ... SIZE=, 0 when absent */

	uint32_t nrcpt, rcpt_cap;
	struct env_rcpt *rcpt;

	/* The message as it will be delivered: our Received: header first,
	 * then the client's data, dot-unstuffed, lines ending CRLF. */
	uint8_t *body;
	size_t body_len, body_cap;

	/* Where the spool holds the message record, set by the spool once
	 * it is durable and by spool_scan: the queue manager may let a
	 * waiting body go and read it back (spool_read_body). */
	struct env_spool_at {
		uint64_t seq, off;
		uint32_t writer;
		bool set;
	} spool_at;
};

struct envelope *envelope_new(void);
void envelope_free(struct envelope *e);
/* A deep copy (strings and body). NULL on -ENOMEM. */
struct envelope *envelope_dup(const struct envelope *src);
/* Replaces *dst with a copy of src[0..len) (len SIZE_MAX: strlen).
 * Returns 0 or -ENOMEM. */
int envelope_set_str(char **dst, const char *src, size_t len);
/* Appends a recipient (addr and orcpt copied). Returns 0 or -ENOMEM. */
int envelope_add_rcpt(struct envelope *e, const char *addr,
		      const char *orcpt, uint8_t notify);
/* Appends to the body, growing it geometrically. 0 or -ENOMEM. */
int envelope_body_append(struct envelope *e, const void *data, size_t len);
/* Drops the transaction part (sender, recipients, body, parameters) and
 * keeps the session part (helo, client, ports), as RSET does. */
void envelope_reset_txn(struct envelope *e);

#endif
