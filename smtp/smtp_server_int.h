/*
 * smtp_server_int.h: the SMTP session as the engine's files share it
 * (smtp_server.c: input, replies, life cycle; smtp_cmd.c: the command
 * table; smtp_data.c: DATA/BDAT bytes; smtp_received.c: our header).
 * Private to smtp/: nothing outside includes it.
 *
 * Two kinds of state, kept apart (STYLE point 4): the byte state `rx`
 * says how the next input byte is read (command line, skipping an
 * overlong line, DATA text, BDAT chunk); the protocol state (helo, txn,
 * pending, closing) says what a command may do now.
 */
#ifndef DPMAIL_SMTP_SMTP_SERVER_INT_H
#define DPMAIL_SMTP_SMTP_SERVER_INT_H

#include <stdarg.h>

#include "smtp/smtp_server.h"

/* RFC 5321 4.5.3.1: the minimums the conf is clamped to */
#define SMTP_MIN_CMD_LINE 512
#define SMTP_MIN_TEXT_LINE 1000
#define SMTP_MIN_RECIPIENTS 100
/* Longest single reply line we build (addresses are bounded by the
 * command line, which may be configured up to this). */
#define SMTP_REPLY_MAX 4096
#define SMTP_MAX_CMD_LINE_CAP (SMTP_REPLY_MAX - 256)
/* Pipelined input kept while a message is pending, beyond which the
 * caller is not honouring smtp_server_blocked(): 421 and close. */
#define SMTP_BACKLOG_SLACK (1u << 20)
/* ... taken as the message size when that is unlimited (0) */
#define SMTP_BACKLOG_UNLIMITED (32u << 20)

/* SASL limits (RFC 4616 2: authcid and passwd up to 255 octets) */
#define SMTP_AUTH_MAX_ID 255
#define SMTP_AUTH_MAX_PASS 255

enum smtp_auth_step {
	SMTP_AUTH_NONE = 0,
	SMTP_AUTH_PLAIN_RESP,  /* "334 " sent, waiting for the PLAIN response */
	SMTP_AUTH_LOGIN_USER,  /* "334 VXNlcm5hbWU6" sent */
	SMTP_AUTH_LOGIN_PASS,  /* "334 UGFzc3dvcmQ6" sent */
};

enum smtp_rx {
	SMTP_RX_CMD,      /* collecting a command line up to LF */
	SMTP_RX_CMD_SKIP, /* command line too long: discarding to LF */
	SMTP_RX_DATA,     /* DATA text up to CRLF "." CRLF */
	SMTP_RX_BDAT,     /* raw BDAT chunk bytes */
};

/* Where DATA end detection stands; see smtp_data.c. */
enum smtp_dot {
	SMTP_D_BOL,    /* just after CRLF (or the DATA command) */
	SMTP_D_TEXT,   /* inside a line */
	SMTP_D_CR,     /* CR seen inside a line, not yet emitted */
	SMTP_D_DOT,    /* "." at the beginning of a line, held back */
	SMTP_D_DOT_CR, /* "." CR at the beginning of a line, held back */
};

/* Counts Received: fields in the header section of the client's data. */
struct smtp_hdrscan {
	bool done;       /* the empty line ending the header section was seen */
	bool at_start;   /* next byte starts a line */
	bool matching;   /* this line still matches "received:" so far */
	bool nonempty;   /* this line has had a byte other than CR */
	uint8_t matched;
	uint32_t received;
};

/* One message's content as it arrives (DATA text or all BDAT chunks). */
struct smtp_msg {
	enum smtp_dot dot;
	uint32_t line_len;  /* octets of the current line so far (wire form) */
	uint64_t size;      /* content octets so far, our Received: included */
	bool bare;          /* a bare CR or LF was seen */
	bool too_long;      /* a text line over max_text_line */
	bool oversize;      /* over max_message_size */
	bool nomem;         /* an append failed */
	struct smtp_hdrscan hs;
};

struct smtp_server {
	struct smtp_server_conf conf;
	struct smtp_server_ops ops;
	void *user;
	char *hostname, *greeting;
	struct envelope *env;

	/* byte state */
	enum smtp_rx rx;
	char *line;         /* max_cmd_line octets */
	uint32_t line_len;
	char *scratch;      /* max_cmd_line + 1: C strings cut from a line */
	/* SMTP_REJECT_CUSTOM: the reply the caller set for this verdict */
	uint16_t custom_code;
	char custom_enh[16];
	char custom_text[256];
	uint64_t bdat_left; /* chunk octets still to read */
	uint64_t bdat_size; /* the chunk's size, for the reply */
	bool bdat_last;
	bool bdat_skip;     /* read the chunk, store nothing, then bdat_err */
	char bdat_err[160];
	bool bdat_err_counts;
	struct smtp_msg msg;

	/* protocol state */
	bool started, helo, tls, authed;
	bool txn;           /* MAIL accepted */
	bool bdat_used;     /* this transaction uses BDAT, not DATA */
	bool pending;       /* waiting for smtp_server_queued */
	bool closing;       /* QUIT or 421 sent, close requested */
	bool stop;          /* drop the rest of the current input (STARTTLS) */
	struct smtp_session_policy pol;
	/* AUTH (smtp_auth.c): the SASL step a client line answers, and
	 * the identity once authenticated */
	uint8_t auth_step;  /* enum smtp_auth_step */
	bool auth_pending;  /* waiting for smtp_server_auth_done */
	char auth_login_user[SMTP_AUTH_MAX_ID + 1]; /* LOGIN: between steps */
	char auth_try[SMTP_AUTH_MAX_ID + 1];        /* the one being checked */
	char auth_user[SMTP_AUTH_MAX_ID + 1];       /* authenticated */
	bool busy;          /* inside smtp_server_input / the backlog */
	char pending_qid[ENV_QID_LEN + 1];

	/* pipelined input kept while pending */
	uint8_t *bl;
	size_t bl_len, bl_cap;

	struct smtp_server_stats stats;
};

/* smtp_server.c */
void smtp_reply(struct smtp_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A reply to a bad command: counts it; past max_errors, 421 and close. */
void smtp_reply_err(struct smtp_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void smtp_close(struct smtp_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void smtp_count_error(struct smtp_server *s);
/* Forgets the transaction (RSET, HELO, after a message). */
void smtp_txn_reset(struct smtp_server *s);

/* smtp_auth.c: AUTH (RFC 4954) with PLAIN (4616) and LOGIN */
void smtp_auth_command(struct smtp_server *s, const char *arg, size_t len);
/* A client line while a SASL step waits for it (s->auth_step). */
void smtp_auth_line(struct smtp_server *s, const char *line, size_t len);
/* Replies to the answer of ops->auth (or of smtp_server_auth_done). */
void smtp_auth_result(struct smtp_server *s, int rc);
/* The command line was too long for a SASL answer: cancels the step. */
void smtp_auth_abort(struct smtp_server *s);
/* RFC 4648 base64 with padding; returns the decoded length, or -1 on
 * bad input or when it would not fit in cap (buf gets a final NUL). */
long smtp_base64_decode(const char *in, size_t len, char *buf, size_t cap);

/* smtp_cmd.c: one complete command line without its CRLF / LF */
void smtp_command(struct smtp_server *s, const char *line, size_t len);

/* smtp_data.c */
/* Starts message content: resets the byte machine, puts our Received:
 * first. */
void smtp_msg_begin(struct smtp_server *s);
/* Consumes DATA text; returns the octets used (stops after the end). */
size_t smtp_data_input(struct smtp_server *s, const uint8_t *p, size_t n);
/* Consumes BDAT chunk octets; returns the octets used. */
size_t smtp_bdat_input(struct smtp_server *s, const uint8_t *p, size_t n);
/* All of a BDAT chunk is in: reply, or finish the message on LAST. */
void smtp_bdat_chunk_end(struct smtp_server *s);

/* smtp_received.c: our trace field (RFC 5321 4.4) for s->env at time t;
 * returns its length (< cap) with the text in buf. */
size_t smtp_received_format(const struct smtp_server *s, time_t t,
			    char *buf, size_t cap);
/* "Tue, 14 Nov 2023 22:13:20 +0000" (RFC 5322 3.3) */
size_t smtp_date_format(time_t t, char *buf, size_t cap);

#endif
