/*
 * mta_dsn.h: delivery status notifications (RFC 3464 message format,
 * RFC 3461 who gets one, RFC 6522 multipart/report, RFC 3463 status
 * codes, RFC 6533 for SMTPUTF8 messages). Rendering only: the caller
 * decides when, queues the result and marks the recipients reported.
 *
 * Owns: nothing between calls. mta_dsn_render builds a new envelope
 * (the bounce) that the caller owns and frees with envelope_free; it
 * never changes the original. No I/O, no clock: the caller passes "now",
 * so the output is a pure function of its inputs (tests compare bytes).
 *
 * Who is reported (RFC 3461 4.1, 6.2), per recipient, mta_dsn_wanted:
 *  - NOTIFY=NEVER: never.
 *  - no NOTIFY: failed always; delayed only with conf->delay_by_default;
 *    delivered/relayed/expanded never.
 *  - NOTIFY given: failed iff FAILURE, delayed iff DELAY,
 *    delivered/relayed/expanded iff SUCCESS.
 * A DSN is never sent for a message whose sender was the null sender
 * "<>" (RFC 5321 4.5.5, RFC 3461 6.2): render returns 0 ("no report"),
 * unless conf->double_bounce_to names a postmaster address: then the
 * failed recipients (never delays or successes) are reported to it, a
 * "double bounce". A message that was itself sent from <> to that
 * postmaster address is never reported again, which ends the loop.
 *
 * The bounce (*out): mail_from "" (MAIL FROM:<>), one recipient (the
 * original sender, or the postmaster), no NOTIFY, no ORCPT, qid "" (the
 * spool assigns one), arrival_us = conf->now_us, body_type 8BITMIME when
 * the body holds 8-bit octets, smtputf8 as the original. The body is the
 * whole message, headers and body, CRLF line endings only, no line over
 * 998 octets (headers folded, long diagnostics folded and wrapped):
 *
 *   From: "Mail Delivery System" <MAILER-DAEMON@reporting_mta>
 *   To, Subject, Date (RFC 5322, UTC), Message-ID,
 *   Auto-Submitted: auto-replied (RFC 3834), MIME-Version: 1.0,
 *   Content-Type: multipart/report; report-type=delivery-status;
 *     boundary="..." (checked against every byte of every part)
 *   1. text/plain: what happened, per recipient address and diagnostic.
 *   2. message/delivery-status: Reporting-MTA, Original-Envelope-Id
 *      (ENVID), Arrival-Date; per recipient Original-Recipient (ORCPT as
 *      given), Final-Recipient, Action, Status, Remote-MTA,
 *      Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until (delayed).
 *   3. the original: text/rfc822-headers (its headers, our Received:
 *      first) or, with RET=FULL and at least one failure, message/rfc822
 *      (the whole message; Content-Transfer-Encoding: 8bit when it has
 *      8-bit octets). RET absent means headers (smaller; RFC 3461 4.3
 *      leaves it to us). A report without failures returns headers only
 *      (RFC 3461 4.3). FULL falls back to headers when the original
 *      cannot travel as 8bit MIME unchanged: a line over 998 octets, a
 *      bare CR or LF, a NUL, BODY=BINARYMIME, or more than conf->full_max
 *      octets; the text part says so. Header lines over 998 octets are
 *      cut (the part is informational).
 * SMTPUTF8 originals (RFC 6533): message/global-delivery-status,
 * message/global, message/global-headers, UTF-8 allowed in the report,
 * "utf-8;" as the Final-Recipient type of a non-ASCII address, and the
 * bounce itself needs SMTPUTF8 (out->smtputf8). Otherwise the generated
 * text is ASCII: other octets become '?' (a non-ASCII ORCPT is not
 * xtext-encoded into a "utf-8" type; such an ORCPT needs SMTPUTF8 anyway).
 * Every caller string is made one line: controls (CR, LF included)
 * become spaces, so no outcome text can inject a header.
 * Recipients are reported in the order of the outcomes array; a mixed
 * report's Subject names the worst (failed, then delayed, then success).
 */
#ifndef DPMAIL_MTA_MTA_DSN_H
#define DPMAIL_MTA_MTA_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

/* RFC 3464 2.3.3 action-value */
enum mta_dsn_action {
	MTA_DSN_FAILED = 0,
	MTA_DSN_DELAYED,
	MTA_DSN_DELIVERED,
	MTA_DSN_RELAYED,
	MTA_DSN_EXPANDED,
};

/* One recipient's outcome. Strings may be NULL or "" for absent. */
struct mta_dsn_rcpt {
	uint32_t rcpt;              /* index into the original's rcpt[] */
	enum mta_dsn_action action;
	/* RFC 3463 "5.1.1"; NULL: 5.0.0 / 4.0.0 / 2.0.0 by action. The class
	 * must fit the action: failed 4 or 5 (4 when retries ran out),
	 * delayed 4, the others 2. */
	const char *status;
	const char *remote_mta;     /* "mx.example.org" (dns type implied) */
	/* "smtp; 550 5.1.1 <bob@x>: no such user"; without a "type;" prefix
	 * "smtp; " is added. */
	const char *diagnostic;
	uint64_t last_attempt_us;   /* 0: no Last-Attempt-Date */
	uint64_t retry_until_us;    /* delayed only; 0: no Will-Retry-Until */
};

struct mta_dsn_conf {
	const char *reporting_mta;  /* our host name, required */
	/* "" or NULL: a message from <> gets no report; otherwise the
	 * postmaster address that gets double bounces. */
	const char *double_bounce_to;
	bool delay_by_default;      /* report delays when NOTIFY was absent */
	size_t full_max;            /* RET=FULL size cap, 0: none */
	uint64_t now_us;            /* Date:, Message-ID, the bounce's arrival */
};

/* RFC 3461 rules above for one recipient (ignores the null sender). */
bool mta_dsn_wanted(const struct mta_dsn_conf *c, const struct env_rcpt *r,
		    enum mta_dsn_action a);

/* Builds the bounce for orig from n outcomes. Returns the number of
 * recipients reported (> 0) with *out set; 0 with *out NULL when nobody
 * is to be told (all filtered out, or the null sender without a
 * double-bounce address); -EINVAL for a bad argument (rcpt index out of
 * range, a malformed status or one whose class does not fit the action,
 * no reporting_mta); -ENOMEM. */
int mta_dsn_render(const struct mta_dsn_conf *c, const struct envelope *orig,
		   const struct mta_dsn_rcpt *o, size_t n, struct envelope **out);

/* RFC 3463 status for an SMTP reply: the enhanced code when the text
 * starts with one of the reply's class ("550 5.1.1 ..." -> "5.1.1"),
 * else the class alone (550 -> "5.0.0", 451 -> "4.0.0", 250 ->
 * "2.0.0"). text may be NULL (reply code only) and may start with the
 * code ("550 5.1.1 x" or "5.1.1 x"). out gets at least 12 bytes
 * ("5.123.123"). 0, or -EINVAL for a code outside 2xx/4xx/5xx. */
int mta_dsn_status_from_reply(int code, const char *text, char *out,
			      size_t outlen);

/* Is s a syntactically valid RFC 3463 status: class "." subject "."
 * detail, class 2, 4 or 5, subject and detail 1*3digit? */
bool mta_dsn_status_valid(const char *s);

/* A short English description of a status for the human-readable part
 * ("5.1.1" -> "Bad destination mailbox address"), by subject.detail, or
 * by subject, or by class. Never NULL. */
const char *mta_dsn_status_text(const char *status);

#endif
