/*
 * test_smtp_client_tls.c: STARTTLS in the SMTP client engine (RFC 3207):
 * sent only when offered and asked for, the 220 handed to the caller,
 * cleartext the server pipelines after the 220 never believed, EHLO
 * again after the handshake with the capabilities forgotten, and a
 * refusal leaving the session usable in clear.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "smtp/smtp_client.h"

struct h {
	struct smtp_client *c;
	char out[4096];
	size_t len;
	int ready, starttls, closed;
	unsigned code;
};

static void w(void *u, const void *d, size_t n)
{
	struct h *h = u;

	cr_assert_lt(h->len + n, sizeof(h->out));
	memcpy(h->out + h->len, d, n);
	h->len += n;
	h->out[h->len] = '\0';
}

static void rdy(void *u)
{
	((struct h *)u)->ready++;
}

static void cls(void *u, enum smtp_client_end e,
		const struct smtp_client_reply *r)
{
	(void)e;
	(void)r;
	((struct h *)u)->closed++;
}

static void stls(void *u, const struct smtp_client_reply *r)
{
	struct h *h = u;

	h->starttls++;
	h->code = r->code;
}

static const struct smtp_client_ops ops = {
	.write = w, .ready = rdy, .close = cls, .starttls = stls,
};

static void in(struct h *h, const char *s)
{
	smtp_client_input(h->c, (const uint8_t *)s, strlen(s));
}

static void start(struct h *h, bool offer)
{
	struct smtp_client_conf cc = { .helo_name = "me.test" };

	memset(h, 0, sizeof(*h));
	h->c = smtp_client_new(&cc, &ops, h);
	cr_assert_not_null(h->c);
	in(h, "220 mx ESMTP\r\n");
	cr_assert_str_eq(h->out, "EHLO me.test\r\n");
	in(h, offer ? "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
		    : "250-mx\r\n250 PIPELINING\r\n");
	cr_assert_eq(h->ready, 1);
	h->len = 0;
	h->out[0] = '\0';
}

Test(smtp_client_tls, starttls_then_ehlo_again_injection_ignored)
{
	struct h h;

	start(&h, true);
	cr_assert_eq(smtp_client_starttls(h.c), 0);
	cr_assert_str_eq(h.out, "STARTTLS\r\n");
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_STARTTLS);
	/* a reply pipelined in clear behind the 220: never believed */
	in(&h, "220 2.0.0 go\r\n421 4.7.0 injected\r\n250 injected\r\n");
	cr_assert_eq(h.starttls, 1);
	cr_assert_eq(h.code, 220);
	cr_assert_eq(h.closed, 0);
	cr_assert_eq(h.ready, 1);
	h.len = 0;
	smtp_client_tls_up(h.c);
	cr_assert_str_eq(h.out, "EHLO me.test\r\n");
	cr_assert(smtp_client_tls_on(h.c));
	cr_assert_eq(smtp_client_caps(h.c)->flags, 0); /* forgotten */
	in(&h, "250-mx\r\n250 8BITMIME\r\n");
	cr_assert_eq(h.ready, 2);
	cr_assert_eq(smtp_client_starttls(h.c), -EOPNOTSUPP);
	smtp_client_free(h.c);
}

Test(smtp_client_tls, not_offered_or_refused)
{
	struct h h;

	start(&h, false);
	cr_assert_eq(smtp_client_starttls(h.c), -EOPNOTSUPP);
	cr_assert_eq(h.len, 0);
	smtp_client_free(h.c);

	start(&h, true);
	cr_assert_eq(smtp_client_starttls(h.c), 0);
	in(&h, "454 4.7.0 TLS not available\r\n");
	cr_assert_eq(h.starttls, 1);
	cr_assert_eq(h.code, 454);
	cr_assert_eq(h.ready, 2);   /* usable in clear */
	cr_assert_eq(smtp_client_stage(h.c), SMTP_CLIENT_READY);
	cr_assert(!smtp_client_tls_on(h.c));
	smtp_client_free(h.c);
}
