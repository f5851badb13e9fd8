/*
 * test_tls.c: the sans-I/O TLS layer (tls/), a client tls_conn against a
 * server tls_conn purely in memory. Certificates (EC P-256, a CA, two
 * server certificates, a client certificate, an untrusted one) come from
 * tls_test_certs.c, made anew before each test.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "tests/unit/tls_test_certs.h"
#include "tls/tls.h"

#define P tls_test_path

TestSuite(tls, .init = tls_test_certs_setup,
	  .fini = tls_test_certs_teardown, .timeout = 60);

/* ------------------------------------------------------------------ */
/* contexts and pumping                                                 */

static struct tls_cert_conf srv_certs[2];

static struct tls_ctx *server_ctx(enum tls_version max, enum tls_verify v,
				  size_t n_certs)
{
	struct tls_ctx_conf c;
	struct tls_ctx *ctx;
	char err[256];

	tls_ctx_conf_defaults(&c);
	srv_certs[0] = (struct tls_cert_conf){ P("s1.pem"), P("s1.key") };
	srv_certs[1] = (struct tls_cert_conf){ P("s2both.pem"), NULL };
	c.certs = srv_certs;
	c.n_certs = n_certs;
	c.max_version = max;
	c.verify = v;
	c.ca_file = v != TLS_VERIFY_NONE ? P("ca.pem") : NULL;
	cr_assert_eq(tls_ctx_new(&c, &ctx, err, sizeof(err)), 0, "%s", err);
	return ctx;
}

static struct tls_ctx *client_ctx(enum tls_version max, enum tls_verify v,
				  const char *ca, const char *cert,
				  const char *key)
{
	struct tls_ctx_conf c;
	struct tls_cert_conf cc = { cert, key };
	struct tls_ctx *ctx;
	char err[256];

	tls_ctx_conf_defaults(&c);
	c.role = TLS_CLIENT;
	c.max_version = max;
	c.verify = v;
	c.ca_file = ca;
	c.certs = cert ? &cc : NULL;
	c.n_certs = cert ? 1 : 0;
	cr_assert_eq(tls_ctx_new(&c, &ctx, err, sizeof(err)), 0, "%s", err);
	return ctx;
}

/* Moves from's output into to, chunk bytes at a time (0 = whole). */
static size_t move(struct tls_conn *from, struct tls_conn *to, size_t chunk)
{
	size_t total = 0, n;
	const uint8_t *p;

	while ((p = tls_conn_out_peek(from, &n)) != NULL) {
		size_t k = chunk && chunk < n ? chunk : n;

		tls_conn_feed(to, p, k);
		tls_conn_out_consume(from, k);
		total += k;
		if (tls_conn_failed(to))
			break;
	}
	return total;
}

/* Reads everything available (discarding it); returns the count. */
static size_t drain(struct tls_conn *c)
{
	uint8_t buf[4096];
	size_t total = 0;
	ssize_t r;

	while ((r = tls_conn_read(c, buf, sizeof(buf))) > 0)
		total += (size_t)r;
	return total;
}

/* Runs the handshake; true when both ends finished. */
static bool handshake(struct tls_conn *cli, struct tls_conn *srv, size_t chunk)
{
	cr_assert_eq(tls_conn_start(cli), 0);
	for (int i = 0; i < 50; i++) {
		size_t m = move(cli, srv, chunk);

		m += move(srv, cli, chunk);
		if (tls_conn_handshake_done(cli) && tls_conn_handshake_done(srv)) {
			/* tickets and the like travel after the handshake */
			drain(cli);
			drain(srv);
			move(srv, cli, chunk);
			move(cli, srv, chunk);
			drain(cli);
			return !tls_conn_failed(cli) && !tls_conn_failed(srv);
		}
		if (tls_conn_failed(cli) || tls_conn_failed(srv)) {
			/* deliver the alert */
			move(srv, cli, 0);
			move(cli, srv, 0);
			drain(cli);
			drain(srv);
			return false;
		}
		if (m == 0) {
			drain(cli);
			drain(srv);
			if (tls_conn_pending_out(cli) == 0 &&
			    tls_conn_pending_out(srv) == 0)
				return false;
		}
	}
	return false;
}

static void exchange_small(struct tls_conn *a, struct tls_conn *b)
{
	char buf[64];
	ssize_t r;

	cr_assert_eq(tls_conn_write(a, "hello\r\n", 7), 7);
	move(a, b, 0);
	r = tls_conn_read(b, buf, sizeof(buf));
	cr_assert_eq(r, 7);
	cr_assert(memcmp(buf, "hello\r\n", 7) == 0);
}

/* ------------------------------------------------------------------ */

Test(tls, handshake_tls13)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_REQUIRED,
					P("ca.pem"), NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, "mail.example.com");
	char d[256];

	cr_assert(handshake(cli, srv, 0), "%s | %s", tls_conn_error(cli),
		  tls_conn_error(srv));
	cr_assert_str_eq(tls_conn_version(srv), "TLSv1.3");
	cr_assert_str_eq(tls_conn_version(cli), "TLSv1.3");
	cr_assert_not_null(tls_conn_cipher(srv));
	cr_assert_gt(tls_conn_cipher_bits(srv), 127);
	cr_assert_str_eq(tls_conn_sni(srv), "mail.example.com");
	cr_assert(tls_conn_peer_verified(cli));
	cr_assert_not(tls_conn_has_peer_cert(srv));
	cr_assert_not(tls_conn_session_reused(cli));
	tls_conn_describe(srv, d, sizeof(d));
	cr_assert(strstr(d, "TLSv1.3 with cipher TLS_") == d, "%s", d);
	tls_conn_peer_subject(cli, d, sizeof(d));
	cr_assert(strstr(d, "CN=mail.example.com") != NULL, "%s", d);
	exchange_small(cli, srv);
	exchange_small(srv, cli);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

Test(tls, handshake_tls12_forced)
{
	struct tls_ctx *sc = server_ctx(TLS_V1_2, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, "mail.example.com");

	cr_assert(handshake(cli, srv, 0), "%s | %s", tls_conn_error(cli),
		  tls_conn_error(srv));
	cr_assert_str_eq(tls_conn_version(srv), "TLSv1.2");
	cr_assert_str_eq(tls_conn_version(cli), "TLSv1.2");
	cr_assert(strstr(tls_conn_cipher(srv), "GCM") ||
		  strstr(tls_conn_cipher(srv), "CHACHA"), "%s",
		  tls_conn_cipher(srv));
	exchange_small(cli, srv);
	exchange_small(srv, cli);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

/* Every split of the network bytes, one byte at a time included. */
static void split_every_size(enum tls_version v)
{
	struct tls_ctx *sc = server_ctx(v, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_REQUIRED,
					P("ca.pem"), NULL, NULL);

	size_t max_flight = 0;

	/* the largest single flight, measured on a whole handshake */
	{
		struct tls_conn *srv = tls_conn_new(sc, NULL);
		struct tls_conn *cli = tls_conn_new(cc, "mx.example.com");

		cr_assert_eq(tls_conn_start(cli), 0);
		for (int i = 0; i < 4; i++) {
			if (tls_conn_pending_out(cli) > max_flight)
				max_flight = tls_conn_pending_out(cli);
			move(cli, srv, 0);
			if (tls_conn_pending_out(srv) > max_flight)
				max_flight = tls_conn_pending_out(srv);
			move(srv, cli, 0);
		}
		cr_assert(tls_conn_handshake_done(srv));
		cr_assert_gt(max_flight, 500);
		tls_conn_free(cli);
		tls_conn_free(srv);
	}
	for (size_t chunk = 1; chunk <= max_flight + 1; chunk++) {
		struct tls_conn *srv = tls_conn_new(sc, NULL);
		struct tls_conn *cli = tls_conn_new(cc, "mx.example.com");

		cr_assert(handshake(cli, srv, chunk), "chunk %zu: %s | %s",
			  chunk, tls_conn_error(cli), tls_conn_error(srv));
		exchange_small(cli, srv);
		exchange_small(srv, cli);
		tls_conn_free(cli);
		tls_conn_free(srv);
	}
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

Test(tls, handshake_split_tls13) { split_every_size(TLS_V_DEFAULT); }
Test(tls, handshake_split_tls12) { split_every_size(TLS_V1_2); }

/* 1 MiB each way, random chunk sizes everywhere, byte-exact. */
static void bulk(enum tls_version v)
{
	struct tls_ctx *sc = server_ctx(v, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, NULL);
	const size_t N = 1u << 20;
	uint8_t *src[2], *dst[2];
	size_t sent[2] = { 0, 0 }, got[2] = { 0, 0 };
	struct tls_conn *ends[2] = { cli, srv };
	bool backpressure = false;

	cr_assert(handshake(cli, srv, 0));
	for (int d = 0; d < 2; d++) {
		src[d] = malloc(N);
		dst[d] = malloc(N);
		for (size_t i = 0; i < N; i++)
			src[d][i] = (uint8_t)rand();
	}
	for (int iter = 0; got[0] < N || got[1] < N; iter++) {
		cr_assert_lt(iter, 1000000);
		for (int d = 0; d < 2; d++) {
			struct tls_conn *w = ends[d], *r = ends[!d];
			size_t want = 1 + (size_t)rand() % 40000;
			ssize_t k;

			if (want > N - sent[d])
				want = N - sent[d];
			k = tls_conn_write(w, src[d] + sent[d], want);
			cr_assert_geq(k, 0);
			if ((size_t)k < want)
				backpressure = true;
			sent[d] += (size_t)k;
			/* the network moves a random amount */
			size_t budget = (size_t)rand() % 50000, n;
			const uint8_t *p = tls_conn_out_peek(w, &n);
			if (p && budget) {
				size_t moved = 0;
				while (moved < budget && moved < n) {
					size_t c = 1 + (size_t)rand() % 3000;
					if (c > n - moved)
						c = n - moved;
					cr_assert_eq(tls_conn_feed(r, p + moved, c), 0,
						     "%s", tls_conn_error(r));
					moved += c;
				}
				tls_conn_out_consume(w, moved);
			}
			for (;;) {
				size_t cap = 1 + (size_t)rand() % 20000;
				ssize_t m;

				if (cap > N - got[d])
					cap = N - got[d];
				if (cap == 0)
					break;
				m = tls_conn_read(r, dst[d] + got[d], cap);
				cr_assert_geq(m, 0, "%s", tls_conn_error(r));
				if (m == 0)
					break;
				got[d] += (size_t)m;
			}
			cr_assert_leq(tls_conn_pending_out(w), 64u * 1024 + 40000 + 1024);
		}
	}
	cr_assert(backpressure, "the high-water mark never held back");
	for (int d = 0; d < 2; d++) {
		cr_assert(memcmp(src[d], dst[d], N) == 0, "direction %d differs", d);
		free(src[d]);
		free(dst[d]);
	}
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

Test(tls, bulk_1mib_tls13) { bulk(TLS_V_DEFAULT); }
Test(tls, bulk_1mib_tls12) { bulk(TLS_V1_2); }

Test(tls, close_notify_both_ways)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, NULL);
	char buf[64];

	cr_assert(handshake(cli, srv, 0));
	cr_assert_eq(tls_conn_write(cli, "QUIT\r\n", 6), 6);
	cr_assert_eq(tls_conn_shutdown(cli), 0);
	cr_assert_eq(tls_conn_shutdown(cli), 0);  /* once */
	cr_assert_eq(tls_conn_write(cli, "x", 1), -EPIPE);
	move(cli, srv, 1);
	cr_assert_eq(tls_conn_read(srv, buf, sizeof(buf)), 6);
	cr_assert_eq(tls_conn_read(srv, buf, sizeof(buf)), 0);
	cr_assert(tls_conn_peer_closed(srv));
	cr_assert_not(tls_conn_failed(srv));
	/* the server may still answer, then closes too */
	cr_assert_eq(tls_conn_write(srv, "221 bye\r\n", 9), 9);
	cr_assert_eq(tls_conn_shutdown(srv), 0);
	move(srv, cli, 0);
	cr_assert_eq(tls_conn_read(cli, buf, sizeof(buf)), 9);
	cr_assert_eq(tls_conn_read(cli, buf, sizeof(buf)), 0);
	cr_assert(tls_conn_peer_closed(cli));
	cr_assert_not(tls_conn_failed(cli));
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

static void sni_case(struct tls_ctx *sc, struct tls_ctx *cc, const char *name,
		     const char *want_cn)
{
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, name);
	char subj[256];

	cr_assert(handshake(cli, srv, 0), "%s: %s | %s", name ? name : "-",
		  tls_conn_error(cli), tls_conn_error(srv));
	tls_conn_peer_subject(cli, subj, sizeof(subj));
	cr_assert(strstr(subj, want_cn) != NULL, "%s -> %s", name ? name : "-",
		  subj);
	if (name)
		cr_assert_str_eq(tls_conn_sni(srv), name);
	tls_conn_free(cli);
	tls_conn_free(srv);
}

Test(tls, sni_selects_certificate)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 2);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_ctx *cc12 = client_ctx(TLS_V1_2, TLS_VERIFY_NONE, NULL,
					  NULL, NULL);

	sni_case(sc, cc, "mail.example.com", "CN=mail.example.com");
	sni_case(sc, cc, "MX.Example.COM", "CN=mail.example.com");
	sni_case(sc, cc, "smtp.example.org", "CN=*.example.org");
	sni_case(sc, cc12, "smtp.example.org", "CN=*.example.org");
	sni_case(sc, cc, "a.b.example.org", "CN=mail.example.com");
	sni_case(sc, cc, "example.org", "CN=mail.example.com");
	sni_case(sc, cc, "unknown.test", "CN=mail.example.com");
	sni_case(sc, cc, NULL, "CN=mail.example.com");

	/* RFC 6066 3: an address is not sent as SNI */
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, "192.0.2.7");
	cr_assert(handshake(cli, srv, 0));
	cr_assert_null(tls_conn_sni(srv));
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(cc12);
	tls_ctx_free(sc);
}

/* A client checks the server: the name, the CA. */
Test(tls, client_verifies_server)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *req = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_REQUIRED,
					 P("ca.pem"), NULL, NULL);
	struct tls_ctx *rogue = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_REQUIRED,
					   P("rca.pem"), NULL, NULL);
	struct tls_ctx *opt = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_OPTIONAL,
					 P("ca.pem"), NULL, NULL);
	struct tls_conn *srv, *cli;

	srv = tls_conn_new(sc, NULL);
	cli = tls_conn_new(req, "other.example.com");
	cr_assert_not(handshake(cli, srv, 0));
	cr_assert(tls_conn_failed(cli));
	cr_assert(strstr(tls_conn_error(cli), "certificate verify failed") &&
		  strstr(tls_conn_error(cli), "mismatch"), "%s",
		  tls_conn_error(cli));
	cr_assert(tls_conn_failed(srv));  /* it got the alert */
	tls_conn_free(cli);
	tls_conn_free(srv);

	srv = tls_conn_new(sc, NULL);
	cli = tls_conn_new(rogue, "mail.example.com");
	cr_assert_not(handshake(cli, srv, 0));
	cr_assert(strstr(tls_conn_error(cli), "certificate verify failed"),
		  "%s", tls_conn_error(cli));
	tls_conn_free(cli);
	tls_conn_free(srv);

	srv = tls_conn_new(sc, NULL);
	cli = tls_conn_new(opt, "other.example.com");
	cr_assert(handshake(cli, srv, 0), "%s", tls_conn_error(cli));
	cr_assert(tls_conn_has_peer_cert(cli));
	cr_assert_not(tls_conn_peer_verified(cli));
	tls_conn_free(cli);
	tls_conn_free(srv);

	tls_ctx_free(req);
	tls_ctx_free(rogue);
	tls_ctx_free(opt);
	tls_ctx_free(sc);
}

static void client_cert_case(enum tls_version v)
{
	struct tls_ctx *sreq = server_ctx(v, TLS_VERIFY_REQUIRED, 1);
	struct tls_ctx *sopt = server_ctx(v, TLS_VERIFY_OPTIONAL, 1);
	struct tls_ctx *good = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					  P("cl.pem"), P("cl.key"));
	struct tls_ctx *none = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					  NULL, NULL);
	struct tls_ctx *bad = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					 P("rcl.pem"), P("rcl.key"));
	struct tls_conn *srv, *cli;
	char subj[256];

	/* required, and verified */
	srv = tls_conn_new(sreq, NULL);
	cli = tls_conn_new(good, "mail.example.com");
	cr_assert(handshake(cli, srv, 0), "%s | %s", tls_conn_error(cli),
		  tls_conn_error(srv));
	cr_assert(tls_conn_peer_verified(srv));
	tls_conn_peer_subject(srv, subj, sizeof(subj));
	cr_assert(strstr(subj, "CN=client.example.net"), "%s", subj);
	exchange_small(cli, srv);
	tls_conn_free(cli);
	tls_conn_free(srv);

	/* required, none sent */
	srv = tls_conn_new(sreq, NULL);
	cli = tls_conn_new(none, "mail.example.com");
	cr_assert_not(handshake(cli, srv, 0));
	cr_assert(tls_conn_failed(srv));
	cr_assert(strstr(tls_conn_error(srv), "did not return a certificate"),
		  "%s", tls_conn_error(srv));
	tls_conn_free(cli);
	tls_conn_free(srv);

	/* required, untrusted */
	srv = tls_conn_new(sreq, NULL);
	cli = tls_conn_new(bad, "mail.example.com");
	cr_assert_not(handshake(cli, srv, 0));
	cr_assert(strstr(tls_conn_error(srv), "certificate verify failed"),
		  "%s", tls_conn_error(srv));
	tls_conn_free(cli);
	tls_conn_free(srv);

	/* optional: none, then untrusted, both let in and reported */
	srv = tls_conn_new(sopt, NULL);
	cli = tls_conn_new(none, "mail.example.com");
	cr_assert(handshake(cli, srv, 0), "%s", tls_conn_error(srv));
	cr_assert_not(tls_conn_has_peer_cert(srv));
	tls_conn_free(cli);
	tls_conn_free(srv);
	srv = tls_conn_new(sopt, NULL);
	cli = tls_conn_new(bad, "mail.example.com");
	cr_assert(handshake(cli, srv, 0), "%s", tls_conn_error(srv));
	cr_assert(tls_conn_has_peer_cert(srv));
	cr_assert_not(tls_conn_peer_verified(srv));
	tls_conn_free(cli);
	tls_conn_free(srv);

	tls_ctx_free(sreq);
	tls_ctx_free(sopt);
	tls_ctx_free(good);
	tls_ctx_free(none);
	tls_ctx_free(bad);
}

Test(tls, client_cert_tls13) { client_cert_case(TLS_V_DEFAULT); }
Test(tls, client_cert_tls12) { client_cert_case(TLS_V1_2); }

/* A server on s1 alone, up to version v, tickets on or off. */
static struct tls_ctx *s1_ctx(enum tls_version v, bool tickets)
{
	struct tls_ctx_conf c;
	struct tls_ctx *sc;
	struct tls_cert_conf cert = { P("s1.pem"), P("s1.key") };
	char err[256];

	tls_ctx_conf_defaults(&c);
	c.certs = &cert;
	c.n_certs = 1;
	c.max_version = v;
	c.session_tickets = tickets;
	cr_assert_eq(tls_ctx_new(&c, &sc, err, sizeof(err)), 0, "%s", err);
	return sc;
}

/* A first full handshake of cc with sc: the session the client keeps
 * (NULL without tickets). */
static struct tls_session *first_session(struct tls_ctx *sc,
					 struct tls_ctx *cc)
{
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, "mail.example.com");
	struct tls_session *sess;

	cr_assert(handshake(cli, srv, 0));
	exchange_small(srv, cli);
	sess = tls_conn_session_get(cli);
	cr_assert_not(tls_conn_session_reused(srv));
	tls_conn_free(cli);
	tls_conn_free(srv);
	return sess;
}

static void resumption(enum tls_version v, bool tickets)
{
	struct tls_ctx *sc = s1_ctx(v, tickets), *cc;
	struct tls_conn *srv, *cli;
	struct tls_session *sess;

	cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL, NULL, NULL);
	sess = first_session(sc, cc);
	if (tickets)
		cr_assert_not_null(sess);
	srv = tls_conn_new(sc, NULL);
	cli = tls_conn_new(cc, "mail.example.com");
	if (sess)
		cr_assert_eq(tls_conn_session_set(cli, sess), 0);
	cr_assert(handshake(cli, srv, 0));
	cr_assert_eq(tls_conn_session_reused(cli), tickets);
	cr_assert_eq(tls_conn_session_reused(srv), tickets);
	cr_assert_str_eq(tls_conn_version(srv),
			 v == TLS_V1_2 ? "TLSv1.2" : "TLSv1.3");
	exchange_small(cli, srv);
	tls_session_free(sess);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

Test(tls, resumption_ticket_tls13) { resumption(TLS_V_DEFAULT, true); }
Test(tls, resumption_ticket_tls12) { resumption(TLS_V1_2, true); }
Test(tls, resumption_off_tls13) { resumption(TLS_V_DEFAULT, false); }
Test(tls, resumption_off_tls12) { resumption(TLS_V1_2, false); }

/* A reloaded context (a new one from the same or a renewed certificate)
 * resumes the old one's tickets only once it has its keys. */
static void reload_resume(bool copy)
{
	struct tls_ctx *old = s1_ctx(TLS_V_DEFAULT, true);
	struct tls_ctx *new = s1_ctx(TLS_V_DEFAULT, true), *cc;
	struct tls_conn *srv, *cli;
	struct tls_session *sess;

	cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL, NULL, NULL);
	sess = first_session(old, cc);
	cr_assert_not_null(sess);
	if (copy)
		tls_ctx_copy_ticket_keys(new, old);
	tls_ctx_free(old);
	srv = tls_conn_new(new, NULL);
	cli = tls_conn_new(cc, "mail.example.com");
	cr_assert_eq(tls_conn_session_set(cli, sess), 0);
	cr_assert(handshake(cli, srv, 0));
	cr_assert_eq(tls_conn_session_reused(srv), copy);
	exchange_small(cli, srv);
	tls_session_free(sess);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_copy_ticket_keys(cc, new);   /* a client: nothing happens */
	tls_ctx_copy_ticket_keys(new, NULL);
	tls_ctx_free(cc);
	tls_ctx_free(new);
}

Test(tls, reload_keeps_ticket_keys) { reload_resume(true); }
Test(tls, new_context_has_new_ticket_keys) { reload_resume(false); }

/* TLS 1.2: a client asking to renegotiate gets no_renegotiation. */
Test(tls, renegotiation_refused)
{
	struct tls_ctx *sc = server_ctx(TLS_V1_2, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V1_2, TLS_VERIFY_NONE, NULL, NULL,
					NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, NULL);
	SSL *cs = tls_conn_ssl(cli);
	char buf[64];

	cr_assert(handshake(cli, srv, 0));
	SSL_clear_options(cs, SSL_OP_NO_RENEGOTIATION);
	cr_assert_eq(SSL_renegotiate(cs), 1);
	SSL_do_handshake(cs);
	cr_assert_gt(tls_conn_pending_out(cli), 0);
	move(cli, srv, 0);
	cr_assert_eq(tls_conn_read(srv, buf, sizeof(buf)), 0);  /* refused */
	cr_assert_not(tls_conn_failed(srv), "%s", tls_conn_error(srv));
	move(srv, cli, 0);
	cr_assert_lt(tls_conn_read(cli, buf, sizeof(buf)), 0);
	cr_assert(strstr(tls_conn_error(cli), "no renegotiation"), "%s",
		  tls_conn_error(cli));
	move(cli, srv, 0);
	cr_assert_lt(tls_conn_read(srv, buf, sizeof(buf)), 0);
	cr_assert_eq(SSL_num_renegotiations(tls_conn_ssl(srv)), 0);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

/* Moves a raw SSL client's memory BIO output into srv and back. */
static void raw_pump(SSL *ssl, BIO *to_srv, BIO *from_srv, struct tls_conn *srv)
{
	uint8_t buf[8192];
	int n;

	for (int i = 0; i < 10; i++) {
		SSL_do_handshake(ssl);
		while ((n = BIO_read(to_srv, buf, sizeof(buf))) > 0)
			tls_conn_feed(srv, buf, (size_t)n);
		size_t k;
		while ((k = tls_conn_take_out(srv, buf, sizeof(buf))) > 0)
			BIO_write(from_srv, buf, (int)k);
		if (tls_conn_failed(srv))
			break;
	}
	SSL_do_handshake(ssl);
}

Test(tls, tls11_client_refused)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	BIO *to_srv = BIO_new(BIO_s_mem()), *from_srv = BIO_new(BIO_s_mem());

	cr_assert(SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION));
	cr_assert(SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION));
	cr_assert(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"));
	ssl = SSL_new(cctx);
	SSL_set_bio(ssl, from_srv, to_srv);
	SSL_set_connect_state(ssl);
	raw_pump(ssl, to_srv, from_srv, srv);
	cr_assert(tls_conn_failed(srv));
	cr_assert_not(tls_conn_handshake_done(srv));
	cr_assert(strstr(tls_conn_error(srv), "unsupported protocol"), "%s",
		  tls_conn_error(srv));
	SSL_free(ssl);
	SSL_CTX_free(cctx);
	tls_conn_free(srv);
	tls_ctx_free(sc);
}

/* Garbage from the network: an alert, the error state, no crash. */
Test(tls, garbage_input)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv, *cli;
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint8_t buf[4096];

	srv = tls_conn_new(sc, NULL);
	cr_assert_eq(tls_conn_feed(srv, (const uint8_t *)http, sizeof(http) - 1),
		     -EPROTO);
	cr_assert(tls_conn_failed(srv));
	cr_assert_neq(tls_conn_error(srv)[0], '\0');
	cr_assert_eq(tls_conn_feed(srv, (const uint8_t *)"x", 1), -EPROTO);
	cr_assert_eq(tls_conn_read(srv, buf, sizeof(buf)), -EPROTO);
	cr_assert_eq(tls_conn_write(srv, "x", 1), -EPROTO);
	tls_conn_free(srv);

	/* random bytes, many times, on both sides of a fresh handshake */
	for (int t = 0; t < 200; t++) {
		size_t n = 1 + (size_t)rand() % sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rand();
		if (t % 2)
			buf[0] = 22, buf[1] = 3, buf[2] = 1;  /* looks like a record */
		srv = tls_conn_new(sc, NULL);
		tls_conn_feed(srv, buf, n);
		drain(srv);
		cr_assert_not(tls_conn_handshake_done(srv), "t %d", t);
		tls_conn_free(srv);
		cli = tls_conn_new(cc, NULL);
		tls_conn_start(cli);
		tls_conn_feed(cli, buf, n);
		drain(cli);
		tls_conn_free(cli);
	}

	/* a flipped bit after the handshake: bad record MAC, alert out */
	srv = tls_conn_new(sc, NULL);
	cli = tls_conn_new(cc, NULL);
	cr_assert(handshake(cli, srv, 0));
	cr_assert_eq(tls_conn_write(cli, "hello", 5), 5);
	size_t n = tls_conn_take_out(cli, buf, sizeof(buf));
	buf[n - 3] ^= 0x40;
	cr_assert_eq(tls_conn_feed(srv, buf, n), 0);
	cr_assert_eq(tls_conn_read(srv, buf, sizeof(buf)), -EPROTO);
	cr_assert(strstr(tls_conn_error(srv), "bad record mac") ||
		  strstr(tls_conn_error(srv), "decrypt"), "%s",
		  tls_conn_error(srv));
	cr_assert_gt(tls_conn_pending_out(srv), 0);  /* the alert */
	move(srv, cli, 0);
	cr_assert_lt(tls_conn_read(cli, buf, sizeof(buf)), 0);
	cr_assert(strstr(tls_conn_error(cli), "alert"), "%s", tls_conn_error(cli));
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

/* Output not taken: writes stop at the high-water mark; input not read:
 * a limit, then an error. */
Test(tls, limits)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, NULL);
	static uint8_t big[300000];
	size_t total = 0;
	ssize_t k;

	cr_assert(handshake(cli, srv, 0));
	while ((k = tls_conn_write(srv, big, sizeof(big))) > 0)
		total += (size_t)k;
	cr_assert_eq(k, 0);
	cr_assert_eq(tls_conn_write_space(srv), 0);
	cr_assert_geq(tls_conn_pending_out(srv), TLS_DEFAULT_OUT_HIGHWATER);
	cr_assert_lt(tls_conn_pending_out(srv), TLS_DEFAULT_OUT_HIGHWATER + 1024);
	move(srv, cli, 0);
	cr_assert_gt(tls_conn_write_space(srv), 0);
	/* the client never reads: its input piles up to the limit */
	for (int i = 0; i < 10 && !tls_conn_failed(cli); i++) {
		while (tls_conn_write(srv, big, sizeof(big)) > 0)
			;
		move(srv, cli, 0);
	}
	cr_assert(tls_conn_failed(cli));
	cr_assert(strstr(tls_conn_error(cli), "undecrypted"), "%s",
		  tls_conn_error(cli));
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

/* Implicit TLS: the server writes its greeting at accept, before the
 * handshake; it goes out right after it. */
Test(tls, write_before_handshake)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, NULL);
	char buf[64];
	ssize_t r;

	cr_assert_eq(tls_conn_write(srv, "220 hi\r\n", 8), 8);
	cr_assert_eq(tls_conn_pending_out(srv), 0);
	cr_assert_eq(tls_conn_shutdown(srv), -ENOTCONN);
	cr_assert_eq(tls_conn_start(cli), 0);
	for (int i = 0; i < 4; i++) {
		move(cli, srv, 0);
		move(srv, cli, 0);
	}
	cr_assert(tls_conn_handshake_done(cli) && tls_conn_handshake_done(srv));
	r = tls_conn_read(cli, buf, sizeof(buf));
	cr_assert_eq(r, 8);
	cr_assert(memcmp(buf, "220 hi\r\n", 8) == 0);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

static void bad_conf(const char *cert, const char *key, const char *ciphers,
		     const char *want1, const char *want2)
{
	struct tls_ctx_conf c;
	struct tls_cert_conf cc = { cert, key };
	struct tls_ctx *ctx = (struct tls_ctx *)1;
	char err[512];

	tls_ctx_conf_defaults(&c);
	c.certs = cert ? &cc : NULL;
	c.n_certs = cert ? 1 : 0;
	c.ciphers = ciphers;
	cr_assert_eq(tls_ctx_new(&c, &ctx, err, sizeof(err)), -EINVAL);
	cr_assert_null(ctx);
	cr_assert(strstr(err, want1) && strstr(err, want2), "%s", err);
}

Test(tls, bad_config)
{
	char missing[160];

	snprintf(missing, sizeof(missing), "%s/nope.pem", tls_test_dir);
	bad_conf(missing, P("s1.key"), NULL, missing, "No such file");
	bad_conf(P("s1.pem"), missing, NULL, missing, "No such file");
	bad_conf(P("s1.pem"), P("s2.key"), NULL, "s2.key", "does not match");
	bad_conf(P("garbage.pem"), P("s1.key"), NULL, "garbage.pem",
		 "no PEM certificate");
	bad_conf(P("empty.pem"), P("s1.key"), NULL, "empty.pem",
		 "no certificate block");
	bad_conf(P("s1.pem"), P("s1.pem"), NULL, "s1.pem", "no private key block");
	bad_conf(P("s1.pem"), P("s1enc.key"), NULL, "s1enc.key", "encrypted");
	bad_conf(P("s1.pem"), P("garbage.pem"), NULL, "garbage.pem",
		 "no usable PEM private key");
	bad_conf(P("s1.pem"), P("s1.key"), "NOT-A-CIPHER", "NOT-A-CIPHER",
		 "no cipher match");
	bad_conf(NULL, NULL, NULL, "needs a certificate", "");

	/* verification without a CA file; a missing CA file */
	struct tls_ctx_conf c;
	struct tls_ctx *ctx;
	char err[512];

	tls_ctx_conf_defaults(&c);
	c.role = TLS_CLIENT;
	c.verify = TLS_VERIFY_REQUIRED;
	cr_assert_eq(tls_ctx_new(&c, &ctx, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ca_file"), "%s", err);
	c.ca_file = missing;
	cr_assert_eq(tls_ctx_new(&c, &ctx, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, missing) && strstr(err, "No such file"), "%s", err);
}

/* TLS 1.3 post-handshake messages: a KeyUpdate asking for one back is
 * read in tls_conn_read and answered before the next data (OpenSSL's
 * way, RFC 8446 4.6.3), and data goes on both ways. */
Test(tls, key_update)
{
	struct tls_ctx *sc = server_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, 1);
	struct tls_ctx *cc = client_ctx(TLS_V_DEFAULT, TLS_VERIFY_NONE, NULL,
					NULL, NULL);
	struct tls_conn *srv = tls_conn_new(sc, NULL);
	struct tls_conn *cli = tls_conn_new(cc, NULL);
	char buf[64];

	cr_assert(handshake(cli, srv, 0));
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(SSL_key_update(tls_conn_ssl(cli),
					    SSL_KEY_UPDATE_REQUESTED), 1);
		exchange_small(cli, srv);
		exchange_small(srv, cli);
		move(cli, srv, 1);
		cr_assert_eq(tls_conn_read(srv, buf, sizeof(buf)), 0);
		cr_assert_not(tls_conn_failed(srv));
		cr_assert_not(tls_conn_failed(cli));
	}
	cr_assert_eq(tls_conn_session_set(srv, NULL), -EINVAL);
	tls_conn_free(cli);
	tls_conn_free(srv);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}
