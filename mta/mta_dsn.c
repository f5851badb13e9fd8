/*
 * mta_dsn.c: renders delivery status notifications (see mta_dsn.h for
 * the contract: who is told, what the bounce looks like).
 *
 * Builds each MIME part into its own buffer first, so that the boundary
 * can be checked against every octet it will enclose, then joins them.
 * Never reads a clock or a file: "now" comes from the caller.
 */
#include "mta/mta_dsn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* RFC 5322 2.1.1: lines "MUST be no more than 998 characters, and
 * SHOULD be no more than 78 characters, excluding the CRLF". */
#define DSN_LINE_MAX 998
#define DSN_LINE_SOFT 78
/* the human-readable part wraps a little earlier, for quoting */
#define DSN_TEXT_WRAP 76

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sbuf *b, const void *d, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* only short fixed-size fields go through here */
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = true;
		return;
	}
	sb_put(b, tmp, (size_t)n);
}

static bool is_empty(const char *s)
{
	return s == NULL || *s == '\0';
}

static bool has_8bit(const void *d, size_t n)
{
	const unsigned char *p = d;

	for (size_t i = 0; i < n; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

/* One line of text for a header field or the text part: controls
 * (CR, LF, TAB included) become spaces, runs of spaces collapse, ends are
 * trimmed; octets over 0x7f become '?' unless utf8. malloc'd, NULL on
 * ENOMEM. */
static char *clean(const char *s, bool utf8)
{
	size_t n = s ? strlen(s) : 0, j = 0;
	char *o = malloc(n + 1);

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			c = ' ';
		else if (c >= 0x80 && !utf8)
			c = '?';
		if (c == ' ' && (j == 0 || o[j - 1] == ' '))
			continue;
		o[j++] = (char)c;
	}
	while (j > 0 && o[j - 1] == ' ')
		j--;
	o[j] = '\0';
	return o;
}

/* Appends words (single-space separated, as clean() leaves them) to a
 * line already col octets long, breaking before a word that would pass
 * soft columns with brk (CRLF + the continuation indent). A word too long
 * for even a line of its own is cut at DSN_LINE_MAX: the last resort
 * that keeps the message legal. */
static void put_words(struct sbuf *b, size_t col, const char *s,
		      const char *brk, size_t soft)
{
	size_t indent = strlen(brk) - 2;
	bool fresh = true; /* nothing on this line after its prefix */

	while (*s != '\0') {
		const char *e = strchr(s, ' ');
		size_t wl = e ? (size_t)(e - s) : strlen(s);

		if (!fresh) {
			if (col + 1 + wl > soft) {
				sb_str(b, brk);
				col = indent;
			} else {
				sb_put(b, " ", 1);
				col++;
			}
		}
		while (col + wl > DSN_LINE_MAX) {
			size_t room = DSN_LINE_MAX - col;

			sb_put(b, s, room);
			s += room;
			wl -= room;
			sb_str(b, brk);
			col = indent;
		}
		sb_put(b, s, wl);
		col += wl;
		fresh = false;
		s += wl;
		if (*s == ' ')
			s++;
	}
}

/* "Name: value" CRLF, folded (RFC 5322 2.2.3) with CRLF SP, so that
 * unfolding gives the value back. */
static void put_field(struct sbuf *b, const char *name, const char *value,
		      bool utf8)
{
	char *v = clean(value, utf8);

	if (v == NULL) {
		b->oom = true;
		return;
	}
	sb_str(b, name);
	sb_str(b, ": ");
	put_words(b, strlen(name) + 2, v, "\r\n ", DSN_LINE_SOFT);
	sb_str(b, "\r\n");
	free(v);
}

/* A paragraph of the text part: first line after prefix (already written,
 * col octets), continuation lines indented by indent spaces. */
static void put_para(struct sbuf *b, size_t col, const char *text,
		     size_t indent, bool utf8)
{
	char brk[16] = "\r\n";
	char *v = clean(text, utf8);

	if (v == NULL) {
		b->oom = true;
		return;
	}
	if (indent > sizeof(brk) - 3)
		indent = sizeof(brk) - 3;
	memset(brk + 2, ' ', indent);
	brk[2 + indent] = '\0';
	put_words(b, col, v, brk, DSN_TEXT_WRAP);
	sb_str(b, "\r\n");
	free(v);
}

/* RFC 5322 3.3 date-time in UTC; no locale (strftime's %a is one). */
static void fmt_date(char *out, size_t len, uint64_t us)
{
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
					  "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May",
					  "Jun", "Jul", "Aug", "Sep", "Oct",
					  "Nov", "Dec" };
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(out, len, "Thu, 1 Jan 1970 00:00:00 +0000");
		return;
	}
	snprintf(out, len, "%s, %d %s %04d %02d:%02d:%02d +0000",
		 wd[tm.tm_wday % 7], tm.tm_mday, mo[tm.tm_mon % 12],
		 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void put_date_field(struct sbuf *b, const char *name, uint64_t us)
{
	char d[64];

	fmt_date(d, sizeof(d), us);
	put_field(b, name, d, false);
}

/* ---- statuses ---------------------------------------------------- */

/* Parses class.subject.detail at s; returns its length, 0 if none. */
static size_t status_len(const char *s)
{
	size_t i = 0;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	i = 1;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;

		if (s[i] != '.')
			return 0;
		i++;
		while (s[i] >= '0' && s[i] <= '9' && d < 4) {
			i++;
			d++;
		}
		if (d == 0 || d > 3)
			return 0;
	}
	return i;
}

bool mta_dsn_status_valid(const char *s)
{
	size_t n;

	if (s == NULL)
		return false;
	n = status_len(s);
	return n > 0 && s[n] == '\0';
}

int mta_dsn_status_from_reply(int code, const char *text, char *out,
			      size_t outlen)
{
	char cls;
	size_t n;

	if (code < 200 || code > 599 || (code >= 300 && code < 400))
		return -EINVAL;
	cls = (char)('0' + code / 100);
	if (text != NULL) {
		/* "550 5.1.1 ...", "550-5.1.1 ...", or "5.1.1 ..." */
		if (text[0] >= '2' && text[0] <= '5' && text[1] >= '0' &&
		    text[1] <= '9' && text[2] >= '0' && text[2] <= '9' &&
		    (text[3] == ' ' || text[3] == '-'))
			text += 4;
		n = status_len(text);
		if (n > 0 && text[0] == cls &&
		    (text[n] == '\0' || text[n] == ' ') && n < outlen) {
			memcpy(out, text, n);
			out[n] = '\0';
			return 0;
		}
	}
	if (outlen < 6)
		return -EINVAL;
	snprintf(out, outlen, "%c.0.0", cls);
	return 0;
}

/* RFC 3463 section 3, the codes an operator meets most. */
static const struct {
	const char *code; /* "x.y" or "x.y.z" (x: '*' any class) */
	const char *text;
} status_texts[] = {
	{ "*.1.0", "Other address status" },
	{ "*.1.1", "Bad destination mailbox address" },
	{ "*.1.2", "Bad destination system address" },
	{ "*.1.3", "Bad destination mailbox address syntax" },
	{ "*.1.6", "Destination mailbox has moved" },
	{ "*.1.7", "Bad sender's mailbox address syntax" },
	{ "*.1.8", "Bad sender's system address" },
	{ "*.2.0", "Other or undefined mailbox status" },
	{ "*.2.1", "Mailbox disabled, not accepting messages" },
	{ "*.2.2", "Mailbox full" },
	{ "*.2.3", "Message length exceeds administrative limit" },
	{ "*.3.0", "Other or undefined mail system status" },
	{ "*.3.1", "Mail system full" },
	{ "*.3.4", "Message too big for system" },
	{ "*.4.0", "Other or undefined network or routing status" },
	{ "*.4.1", "No answer from host" },
	{ "*.4.2", "Bad connection" },
	{ "*.4.3", "Directory server failure" },
	{ "*.4.4", "Unable to route" },
	{ "*.4.6", "Routing loop detected" },
	{ "*.4.7", "Delivery time expired" },
	{ "*.5.0", "Other or undefined protocol status" },
	{ "*.6.0", "Other or undefined media error" },
	{ "*.7.0", "Other or undefined security status" },
	{ "*.7.1", "Delivery not authorized, message refused" },
	{ "*.1", "Addressing status" },
	{ "*.2", "Mailbox status" },
	{ "*.3", "Mail system status" },
	{ "*.4", "Network and routing status" },
	{ "*.5", "Mail delivery protocol status" },
	{ "*.6", "Message content or media status" },
	{ "*.7", "Security or policy status" },
};

const char *mta_dsn_status_text(const char *status)
{
	const char *sub;
	size_t full, subj;

	if (!mta_dsn_status_valid(status))
		return "Unknown status";
	if (status[0] == '2')
		return "Success";
	sub = status + 1; /* ".y.z" */
	full = strlen(sub);
	subj = (size_t)(strchr(sub + 1, '.') - sub);
	for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]);
	     i++) {
		const char *c = status_texts[i].code + 1;

		if (strlen(c) == full && memcmp(c, sub, full) == 0)
			return status_texts[i].text;
	}
	for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]);
	     i++) {
		const char *c = status_texts[i].code + 1;

		if (strlen(c) == subj && memcmp(c, sub, subj) == 0)
			return status_texts[i].text;
	}
	return status[0] == '4' ? "Persistent transient failure"
				: "Permanent failure";
}

static const char *default_status(enum mta_dsn_action a)
{
	switch (a) {
	case MTA_DSN_FAILED:
		return "5.0.0";
	case MTA_DSN_DELAYED:
		return "4.0.0";
	default:
		return "2.0.0";
	}
}

static bool status_fits(enum mta_dsn_action a, const char *s)
{
	switch (a) {
	case MTA_DSN_FAILED:
		return s[0] == '5' || s[0] == '4';
	case MTA_DSN_DELAYED:
		return s[0] == '4';
	case MTA_DSN_DELIVERED:
	case MTA_DSN_RELAYED:
	case MTA_DSN_EXPANDED:
		return s[0] == '2';
	}
	return false;
}

static const char *action_name(enum mta_dsn_action a)
{
	static const char *const n[] = { "failed", "delayed", "delivered",
					 "relayed", "expanded" };

	return (unsigned)a < 5 ? n[a] : "failed";
}

/* ---- who is told --------------------------------------------------- */

bool mta_dsn_wanted(const struct mta_dsn_conf *c, const struct env_rcpt *r,
		    enum mta_dsn_action a)
{
	uint8_t nf = r->notify;

	if (nf & ENV_NOTIFY_NEVER)
		return false;
	if (nf == 0) /* RFC 3461 6.1: as if NOTIFY=FAILURE (,DELAY) */
		return a == MTA_DSN_FAILED ||
		       (a == MTA_DSN_DELAYED && c->delay_by_default);
	switch (a) {
	case MTA_DSN_FAILED:
		return nf & ENV_NOTIFY_FAILURE;
	case MTA_DSN_DELAYED:
		return nf & ENV_NOTIFY_DELAY;
	case MTA_DSN_DELIVERED:
	case MTA_DSN_RELAYED:
	case MTA_DSN_EXPANDED:
		return nf & ENV_NOTIFY_SUCCESS;
	}
	return false;
}

/* ---- the original message ----------------------------------------- */

/* Length of the header block up to and including the line end of its
 * last line (not the empty line that ends it); the whole message when
 * there is no empty line. An empty line is "CRLF", or a bare "LF" that a
 * BINARYMIME body could hold. */
static size_t header_block_len(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		size_t e = lf ? (size_t)(lf - p) : n;

		if (e == i || (e == i + 1 && p[i] == '\r'))
			return i; /* the empty line */
		if (lf == NULL)
			break;
		i = e + 1;
	}
	return n;
}

/* Header lines, every line ending made CRLF, NUL and stray CR made
 * spaces, lines cut at DSN_LINE_MAX. */
static void put_headers(struct sbuf *b, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t e = i, col = 0;

		while (e < n && p[e] != '\n')
			e++;
		for (size_t k = i; k < e; k++) {
			char c = (char)p[k];

			if (c == '\r' && k + 1 == e && e < n)
				break; /* the CR of CRLF */
			if (c == '\0' || c == '\r')
				c = ' ';
			if (col < DSN_LINE_MAX) {
				sb_put(b, &c, 1);
				col++;
			}
		}
		sb_str(b, "\r\n");
		i = e + 1;
	}
}

/* Can the whole original travel unchanged as an 8bit MIME part? */
static bool full_ok(const struct mta_dsn_conf *c, const struct envelope *e)
{
	const uint8_t *p = e->body;
	size_t col = 0;

	if (e->body_type == ENV_BODY_BINARYMIME)
		return false;
	if (c->full_max != 0 && e->body_len > c->full_max)
		return false;
	for (size_t i = 0; i < e->body_len; i++) {
		if (p[i] == '\0')
			return false;
		if (p[i] == '\r') {
			if (i + 1 >= e->body_len || p[i + 1] != '\n')
				return false;
			continue;
		}
		if (p[i] == '\n') {
			if (i == 0 || p[i - 1] != '\r')
				return false;
			col = 0;
			continue;
		}
		if (++col > DSN_LINE_MAX)
			return false;
	}
	return true;
}

/* ---- rendering ------------------------------------------------------- */

struct dsn_ctx {
	const struct mta_dsn_conf *c;
	const struct envelope *orig;
	const struct mta_dsn_rcpt **sel; /* the reported outcomes */
	size_t nsel;
	bool utf8;          /* RFC 6533 global types */
	bool dbl;           /* double bounce to the postmaster */
	bool any_failed, any_delayed, any_success;
	bool full;          /* the whole original goes back */
	bool full_refused;  /* FULL was asked but could not be honoured */
	const char *to;     /* the bounce's recipient */
};

static const char *status_of(const struct mta_dsn_rcpt *o)
{
	return is_empty(o->status) ? default_status(o->action) : o->status;
}

/* "type; text": RFC 3464 2.3.6 diagnostic-type; text */
static char *diagnostic_of(const char *d)
{
	size_t i = 0, n = strlen(d);
	char *o;

	while ((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= 'A' && d[i] <= 'Z') ||
	       (d[i] >= '0' && d[i] <= '9') || d[i] == '-')
		i++;
	if (i > 0 && d[i] == ';')
		return strdup(d);
	o = malloc(n + 7);
	if (o != NULL) {
		memcpy(o, "smtp; ", 6);
		memcpy(o + 6, d, n + 1);
	}
	return o;
}

static bool is_ascii(const char *s)
{
	return !has_8bit(s, strlen(s));
}

static void render_text(struct sbuf *b, const struct dsn_ctx *x)
{
	bool u = x->utf8;

	struct sbuf hi = { 0 };

	sb_str(&hi, "This is the mail system at host ");
	sb_str(&hi, x->c->reporting_mta);
	sb_str(&hi, ".");
	if (hi.oom) {
		b->oom = true;
		return;
	}
	put_para(b, 0, hi.p, 4, u);
	free(hi.p);
	sb_str(b, "\r\n");
	if (x->dbl) {
		put_para(b, 0,
			 "A message from the null sender <> (usually a "
			 "delivery status notification itself) could not be "
			 "delivered, and there is no sender to return it to. "
			 "It is reported to the postmaster instead.", 0, u);
		sb_str(b, "\r\n");
	} else if (x->any_failed) {
		put_para(b, 0,
			 "I'm sorry to have to inform you that your message "
			 "could not be delivered to one or more recipients.",
			 0, u);
		sb_str(b, "\r\n");
	}
	if (x->any_delayed) {
		put_para(b, 0,
			 "Delivery to one or more recipients has been "
			 "delayed. The mail system will keep trying; you do "
			 "not need to send the message again.", 0, u);
		sb_str(b, "\r\n");
	}
	if (x->any_success) {
		put_para(b, 0,
			 "Your message was delivered to the recipients "
			 "listed below, as you asked.", 0, u);
		sb_str(b, "\r\n");
	}
	if (x->full)
		put_para(b, 0, "The message is attached below.", 0, u);
	else if (x->full_refused)
		put_para(b, 0,
			 "Its headers are attached below; the whole message "
			 "could not be returned unchanged.", 0, u);
	else
		put_para(b, 0, "The message's headers are attached below.",
			 0, u);
	sb_str(b, "\r\n");

	for (size_t i = 0; i < x->nsel; i++) {
		const struct mta_dsn_rcpt *o = x->sel[i];
		const char *addr = x->orig->rcpt[o->rcpt].addr;
		static const char *const what[] = {
			"could not be delivered",
			"not yet delivered, still trying",
			"delivered",
			"relayed to a system that does not report delivery",
			"delivered to a list or alias and passed on",
		};
		const char *st = status_of(o);
		char line[160];
		char *a = clean(addr, u);
		size_t al;

		if (a == NULL) {
			b->oom = true;
			return;
		}
		/* "<addr>: what" */
		al = strlen(a);
		if (al > 900) {
			a[900] = '\0';
			al = 900;
		}
		sb_put(b, "<", 1);
		sb_put(b, a, al);
		sb_str(b, ">: ");
		put_para(b, al + 4, what[o->action % 5], 4, u);
		free(a);
		snprintf(line, sizeof(line), "Status: %s (%s)", st,
			 mta_dsn_status_text(st));
		sb_str(b, "    ");
		put_para(b, 4, line, 8, u);
		if (!is_empty(o->remote_mta)) {
			sb_str(b, "    Remote MTA: ");
			put_para(b, 16, o->remote_mta, 8, u);
		}
		if (!is_empty(o->diagnostic)) {
			sb_str(b, "    Diagnostic: ");
			put_para(b, 16, o->diagnostic, 8, u);
		}
		if (o->action == MTA_DSN_DELAYED && o->retry_until_us != 0) {
			char d[64];

			fmt_date(d, sizeof(d), o->retry_until_us);
			sb_str(b, "    Will retry until: ");
			sb_str(b, d);
			sb_str(b, "\r\n");
		}
		if (i + 1 < x->nsel)
			sb_str(b, "\r\n");
	}
}

/* RFC 3464 2.1: per-message fields, then one block per recipient, each
 * block preceded by an empty line. */
static void render_status(struct sbuf *b, const struct dsn_ctx *x)
{
	const struct envelope *e = x->orig;
	bool u = x->utf8;
	struct sbuf v = { 0 };

	sb_str(&v, "dns; ");
	sb_str(&v, x->c->reporting_mta);
	put_field(b, "Reporting-MTA", v.oom ? "" : v.p, u);
	free(v.p);
	if (!is_empty(e->envid))
		put_field(b, "Original-Envelope-Id", e->envid, u);
	if (e->arrival_us != 0)
		put_date_field(b, "Arrival-Date", e->arrival_us);

	for (size_t i = 0; i < x->nsel; i++) {
		const struct mta_dsn_rcpt *o = x->sel[i];
		const struct env_rcpt *r = &e->rcpt[o->rcpt];

		sb_str(b, "\r\n");
		if (!is_empty(r->orcpt)) {
			/* address-type ";" generic-address, as given */
			struct sbuf oc = { 0 };

			if (strchr(r->orcpt, ';') == NULL)
				sb_str(&oc, "rfc822;");
			sb_str(&oc, r->orcpt);
			put_field(b, "Original-Recipient", oc.oom ? "" : oc.p,
				  u);
			free(oc.p);
		}
		memset(&v, 0, sizeof(v));
		/* RFC 6533 3.2: "utf-8" for an address that needs it */
		sb_str(&v, u && !is_ascii(r->addr) ? "utf-8;" : "rfc822;");
		sb_str(&v, r->addr);
		put_field(b, "Final-Recipient", v.oom ? "" : v.p, u);
		free(v.p);
		put_field(b, "Action", action_name(o->action), u);
		put_field(b, "Status", status_of(o), u);
		if (!is_empty(o->remote_mta)) {
			memset(&v, 0, sizeof(v));
			sb_str(&v, "dns; ");
			sb_str(&v, o->remote_mta);
			put_field(b, "Remote-MTA", v.oom ? "" : v.p, u);
			free(v.p);
		}
		if (!is_empty(o->diagnostic)) {
			char *d = diagnostic_of(o->diagnostic);

			if (d == NULL) {
				b->oom = true;
				return;
			}
			put_field(b, "Diagnostic-Code", d, u);
			free(d);
		}
		if (o->last_attempt_us != 0)
			put_date_field(b, "Last-Attempt-Date",
				       o->last_attempt_us);
		if (o->action == MTA_DSN_DELAYED && o->retry_until_us != 0)
			put_date_field(b, "Will-Retry-Until",
				       o->retry_until_us);
	}
}

static void render_original(struct sbuf *b, const struct dsn_ctx *x)
{
	const struct envelope *e = x->orig;

	if (x->full) {
		sb_put(b, e->body, e->body_len);
		if (e->body_len < 2 || e->body[e->body_len - 2] != '\r' ||
		    e->body[e->body_len - 1] != '\n')
			sb_str(b, "\r\n");
	} else {
		put_headers(b, e->body, header_block_len(e->body, e->body_len));
	}
}

static bool contains(const struct sbuf *b, const char *s)
{
	return b->len > 0 && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

static void put_part_head(struct sbuf *m, const char *bnd, const char *type,
			  const char *desc, bool eight)
{
	sb_str(m, "\r\n--");
	sb_str(m, bnd);
	sb_str(m, "\r\nContent-Type: ");
	sb_str(m, type);
	sb_str(m, "\r\nContent-Description: ");
	sb_str(m, desc);
	sb_str(m, "\r\n");
	if (eight)
		sb_str(m, "Content-Transfer-Encoding: 8bit\r\n");
	sb_str(m, "\r\n");
}

static int assemble(const struct dsn_ctx *x, struct sbuf *m)
{
	struct sbuf text = { 0 }, st = { 0 }, org = { 0 }, v = { 0 };
	const struct envelope *e = x->orig;
	const char *subject, *host = x->c->reporting_mta;
	char bnd[96], date[64], kind;
	bool t8, s8, o8;
	int rc = -ENOMEM;

	render_text(&text, x);
	render_status(&st, x);
	render_original(&org, x);
	if (text.oom || st.oom || org.oom)
		goto out;
	t8 = has_8bit(text.p, text.len);
	s8 = has_8bit(st.p, st.len);
	o8 = has_8bit(org.p, org.len);

	/* RFC 2046 5.1.1: the boundary must not appear in any part. The
	 * candidates differ, and a finite body holds finitely many. */
	for (unsigned long k = 0;; k++) {
		snprintf(bnd, sizeof(bnd), "=_dpmail_%s_%llx_%lu",
			 e->qid[0] ? e->qid : "dsn",
			 (unsigned long long)x->c->now_us, k);
		if (!contains(&text, bnd) && !contains(&st, bnd) &&
		    !contains(&org, bnd))
			break;
	}

	if (x->dbl) {
		subject = "Undelivered Mail (double bounce)";
		kind = 'B';
	} else if (x->any_failed) {
		subject = "Undelivered Mail Returned to Sender";
		kind = 'F';
	} else if (x->any_delayed) {
		subject = "Delayed Mail (still being retried)";
		kind = 'D';
	} else {
		subject = "Successful Mail Delivery Report";
		kind = 'S';
	}

	sb_str(&v, "\"Mail Delivery System\" <MAILER-DAEMON@");
	sb_str(&v, host);
	sb_str(&v, ">");
	put_field(m, "From", v.oom ? "" : v.p, x->utf8);
	v.len = 0;
	sb_str(&v, "<");
	sb_str(&v, x->to);
	sb_str(&v, ">");
	put_field(m, "To", v.oom ? "" : v.p, x->utf8);
	put_field(m, "Subject", subject, false);
	fmt_date(date, sizeof(date), x->c->now_us);
	put_field(m, "Date", date, false);
	v.len = 0;
	sb_printf(&v, "<%llu.%c.%s@", (unsigned long long)x->c->now_us, kind,
		  e->qid[0] ? e->qid : "dsn");
	sb_str(&v, host);
	sb_str(&v, ">");
	put_field(m, "Message-ID", v.oom ? "" : v.p, x->utf8);
	put_field(m, "Auto-Submitted", "auto-replied", false);
	put_field(m, "MIME-Version", "1.0", false);
	sb_str(m, "Content-Type: multipart/report; "
		  "report-type=delivery-status;\r\n\tboundary=\"");
	sb_str(m, bnd);
	sb_str(m, "\"\r\n");
	if (t8 || s8 || o8)
		sb_str(m, "Content-Transfer-Encoding: 8bit\r\n");
	sb_str(m, "\r\nThis is a MIME-encapsulated message.\r\n");

	put_part_head(m, bnd, t8 ? "text/plain; charset=utf-8"
				 : "text/plain; charset=us-ascii",
		      "Notification", t8);
	sb_put(m, text.p, text.len);
	put_part_head(m, bnd, x->utf8 ? "message/global-delivery-status"
				      : "message/delivery-status",
		      "Delivery report", s8);
	sb_put(m, st.p, st.len);
	if (x->full)
		put_part_head(m, bnd, x->utf8 ? "message/global"
					      : "message/rfc822",
			      x->any_failed ? "Undelivered Message"
					    : "Message", o8);
	else
		put_part_head(m, bnd, x->utf8 ? "message/global-headers"
					      : "text/rfc822-headers",
			      x->any_failed ? "Undelivered Message Headers"
					    : "Message Headers", o8);
	sb_put(m, org.p, org.len);
	sb_str(m, "\r\n--");
	sb_str(m, bnd);
	sb_str(m, "--\r\n");
	rc = m->oom ? -ENOMEM : 0;
out:
	free(text.p);
	free(st.p);
	free(org.p);
	free(v.p);
	return rc;
}

int mta_dsn_render(const struct mta_dsn_conf *c, const struct envelope *orig,
		   const struct mta_dsn_rcpt *o, size_t n, struct envelope **out)
{
	struct dsn_ctx x = { .c = c, .orig = orig };
	struct sbuf m = { 0 };
	struct envelope *b;
	int rc;

	*out = NULL;
	if (c == NULL || is_empty(c->reporting_mta) || orig == NULL ||
	    (n > 0 && o == NULL))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (o[i].rcpt >= orig->nrcpt || (unsigned)o[i].action > 4)
			return -EINVAL;
		if (!is_empty(o[i].status) &&
		    !(mta_dsn_status_valid(o[i].status) &&
		      status_fits(o[i].action, o[i].status)))
			return -EINVAL;
	}

	if (orig->mail_from[0] == '\0') {
		/* RFC 5321 4.5.5: never a DSN to the null sender */
		if (is_empty(c->double_bounce_to))
			return 0;
		x.dbl = true;
		x.to = c->double_bounce_to;
	} else {
		x.to = orig->mail_from;
	}

	x.sel = calloc(n ? n : 1, sizeof(*x.sel));
	if (x.sel == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct env_rcpt *r = &orig->rcpt[o[i].rcpt];

		if (!mta_dsn_wanted(c, r, o[i].action))
			continue;
		if (x.dbl && (o[i].action != MTA_DSN_FAILED ||
			      strcasecmp(r->addr, x.to) == 0))
			continue; /* no loop through the postmaster */
		x.sel[x.nsel++] = &o[i];
		if (o[i].action == MTA_DSN_FAILED)
			x.any_failed = true;
		else if (o[i].action == MTA_DSN_DELAYED)
			x.any_delayed = true;
		else
			x.any_success = true;
	}
	if (x.nsel == 0) {
		free(x.sel);
		return 0;
	}

	x.utf8 = orig->smtputf8;
	/* RFC 3461 4.3: RET applies only to reports with a failure */
	if (orig->ret == ENV_RET_FULL && x.any_failed) {
		x.full = full_ok(c, orig);
		x.full_refused = !x.full;
	}

	rc = assemble(&x, &m);
	free(x.sel);
	if (rc < 0) {
		free(m.p);
		return rc;
	}
	b = envelope_new();
	if (b == NULL ||
	    envelope_add_rcpt(b, x.to, NULL, 0) != 0) {
		envelope_free(b);
		free(m.p);
		return -ENOMEM;
	}
	/* the body is ours: hand the buffer over rather than copy it */
	b->body = (uint8_t *)m.p;
	b->body_len = m.len;
	b->body_cap = m.cap;
	b->arrival_us = c->now_us;
	b->smtputf8 = orig->smtputf8;
	b->body_type = has_8bit(m.p, m.len) ? ENV_BODY_8BITMIME
					    : ENV_BODY_NONE;
	b->ret = ENV_RET_NONE;
	*out = b;
	return (int)x.nsel;
}
