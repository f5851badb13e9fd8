/*
 * smtp_received.c: the trace field the server puts on top of every
 * message it takes (RFC 5321 4.4, RFC 5322 3.6.7):
 *
 *   Received: from HELO (ADDR [ADDR])
 *   	by HOSTNAME (dpmail) with PROTO id QID
 *   	for <RCPT>; DATE
 *
 * "for" only with exactly one recipient (naming more would leak the
 * Bcc list). PROTO is SMTP / ESMTP / UTF8SMTP with S (TLS) and A (auth)
 * suffixes (RFC 3848, RFC 6531 3.7.3). Client-chosen text is cut and
 * made printable ASCII so every line stays far below 998 octets and no
 * header can be injected. The date is always UTC and never depends on
 * the locale.
 */
#include "smtp/smtp_server_int.h"

#include <stdio.h>
#include <string.h>

/* Longest client-chosen word copied into the header. */
#define RCVD_MAX_WORD 255
#define RCVD_MAX_RCPT 512

size_t smtp_date_format(time_t t, char *buf, size_t cap)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	int n;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	/* date-time = [ day-of-week "," ] date time, zone "+0000" */
	n = snprintf(buf, cap, "%s, %d %s %04d %02d:%02d:%02d +0000",
		     days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
		     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}

/* Copies at most max octets of src, printable ASCII only ('?' else). */
static void safe_word(char *dst, const char *src, size_t max)
{
	size_t i;

	for (i = 0; i < max && src[i] != '\0'; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

static const char *protocol(const struct smtp_server *s, char *buf)
{
	const struct envelope *e = s->env;

	if (!e->esmtp)
		return "SMTP";
	snprintf(buf, 16, "%s%s%s", e->smtputf8 ? "UTF8SMTP" : "ESMTP",
		 s->tls ? "S" : "", s->authed ? "A" : "");
	return buf;
}

size_t smtp_received_format(const struct smtp_server *s, time_t t,
			    char *buf, size_t cap)
{
	const struct envelope *e = s->env;
	char helo[RCVD_MAX_WORD + 1], addr[RCVD_MAX_WORD + 1];
	char host[RCVD_MAX_WORD + 1], proto[16], date[64];
	char user[RCVD_MAX_WORD + 1];
	bool one = e->nrcpt == 1 && strlen(e->rcpt[0].addr) <= RCVD_MAX_RCPT;
	int n;

	safe_word(helo, e->helo, RCVD_MAX_WORD);
	safe_word(addr, e->client_addr, 64);
	safe_word(host, s->hostname, RCVD_MAX_WORD);
	smtp_date_format(t, date, sizeof(date));
	if (s->authed)
		safe_word(user, s->auth_user, RCVD_MAX_WORD);
	/* RFC 4954 7: the authenticated identity, as Postfix writes it */
	n = snprintf(buf, cap,
		     "Received: from %s (%s [%s%s])\r\n"
		     "%s%s%s"
		     "\tby %s (dpmail) with %s%s%s%s\r\n"
		     "\t%s%s%s%s\r\n",
		     helo, addr, strchr(addr, ':') ? "IPv6:" : "", addr,
		     s->authed ? "\t(Authenticated sender: " : "",
		     s->authed ? user : "", s->authed ? ")\r\n" : "",
		     host, protocol(s, proto),
		     e->qid[0] ? " id " : "", e->qid, one ? "" : ";",
		     one ? "for <" : "", one ? e->rcpt[0].addr : "",
		     one ? ">; " : "", date);
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
