/*
 * smtp_client_int.h: the SMTP client session as its files share it
 * (smtp_client.c: life cycle and the protocol state machine;
 * smtp_client_reply.c: the reply reader, enhanced codes, EHLO keywords;
 * smtp_client_out.c: commands, parameters, the dot-stuffed body).
 * Private to smtp/.
 *
 * Byte state (the reply being read: rx) is kept apart from protocol
 * state (stage, the message in flight), STYLE point 4.
 */
#ifndef DPMAIL_SMTP_SMTP_CLIENT_INT_H
#define DPMAIL_SMTP_SMTP_CLIENT_INT_H

#include "smtp/smtp_client.h"

#define SMTP_CLIENT_DEFAULT_BLOCK (64u << 10)

/* A recipient while its message is in flight: RCPT's 2xx is not final. */
enum smtp_crcpt {
	SMTP_CR_PENDING = 0, /* no reply yet */
	SMTP_CR_ACCEPTED,    /* 2xx to RCPT, waits for the end of data */
	SMTP_CR_FINAL,       /* status and reply set */
};

/* The reply being read. */
struct smtp_crx {
	char line[SMTP_CLIENT_MAX_LINE];
	uint32_t line_len;
	uint32_t lines;   /* complete lines of this reply so far */
	struct smtp_client_reply r; /* code, enh, text so far */
	size_t text_len;
	bool enh_given;   /* the server gave the enhanced code */
};

struct smtp_client {
	struct smtp_client_conf conf;
	struct smtp_client_ops ops;
	void *user;
	char *helo_name;

	struct smtp_crx rx;

	enum smtp_client_stage stage;
	struct smtp_client_caps caps;
	bool esmtp;        /* EHLO accepted */
	bool pipelining;   /* this message's commands went in one write */
	bool in_input;     /* inside smtp_client_input */
	bool tls;          /* smtp_client_tls_up was called */
	bool tls_wait;     /* 220 to STARTTLS read: the handshake runs */

	/* the message in flight */
	const struct envelope *env;
	struct smtp_client_rcpt *res;
	uint8_t *rstate;   /* enum smtp_crcpt per result */
	uint32_t nres;
	uint32_t rcpt_sent;   /* RCPT commands written */
	uint32_t rcpt_replied; /* RCPT replies read */
	bool mail_ok;      /* MAIL got 2xx: the transaction is open */
	bool mail_failed;  /* MAIL got 4xx/5xx (pipelined: skip RCPT replies) */
	bool data_sent;    /* DATA was written (pipelined) */
	bool empty_data;   /* 354 with nobody accepted: "." only, reply ignored */
	size_t body_pos;   /* next body octet to stuff */
	bool body_bol;     /* the next body octet starts a line */
	bool body_done;    /* "." CRLF written */
	uint8_t *block;    /* one data block */

	/* how the connection ends when the QUIT after a failure is answered */
	enum smtp_client_end end;
	struct smtp_client_reply end_why;

	struct smtp_client_stats stats;
};

/* smtp_client.c */
void smtp_client_write(struct smtp_client *c, const void *p, size_t n);
/* A complete reply in c->rx.r: what it means in the current stage. */
void smtp_client_reply_done(struct smtp_client *c);
/* A garbled reply or one not due: defer, close. what: for the text. */
void smtp_client_protocol_error(struct smtp_client *c, const char *what);

/* smtp_client_reply.c */
/* Consumes reply bytes until close; calls smtp_client_reply_done per
 * complete reply and smtp_client_protocol_error on garbage. */
void smtp_client_rx(struct smtp_client *c, const uint8_t *p, size_t n);
/* Fills r->enh with the default for stage and code. */
void smtp_client_default_enh(struct smtp_client_reply *r);
/* A local reply: code, enh, text. */
void smtp_client_local_reply(struct smtp_client_reply *r,
			     enum smtp_client_stage stage, uint16_t code,
			     const char *enh, const char *text);
const char *smtp_client_stage_name(enum smtp_client_stage s);

/* smtp_client_out.c */
/* MAIL FROM for c->env with the parameters the server takes; into buf
 * (a growable string). Returns 0 or -ENOMEM. */
struct smtp_cbuf {
	char *p;
	size_t len, cap;
};
int smtp_cbuf_add(struct smtp_cbuf *b, const char *s, size_t n);
int smtp_client_fmt_mail(const struct smtp_client *c, struct smtp_cbuf *b);
int smtp_client_fmt_rcpt(const struct smtp_client *c, uint32_t i,
			 struct smtp_cbuf *b);
/* Writes the next data block (dot-stuffed), and "." CRLF after the
 * last octet. Returns true when the end was written. */
bool smtp_client_body_block(struct smtp_client *c);
/* Whether the body has an octet above 127. */
bool smtp_client_body_8bit(const struct envelope *env);

#endif
