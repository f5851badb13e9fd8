/*
 * test_mta_policy.c: the RCPT-time relay decisions. Never an open relay:
 * every classic relay probe from an untrusted address is refused, local
 * users are found, and bad lists and users files are refused with a
 * reason.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "mta/mta_policy.h"
#include "mta/mta_route.h"

static char users_path[64];
static struct mta_policy *pol;

static uint32_t ip(const char *s)
{
	struct in_addr a;

	cr_assert_eq(inet_pton(AF_INET, s, &a), 1);
	return a.s_addr;
}

static void setup(void)
{
	struct mta_policy_conf c = { 0 };
	char err[256] = "";
	FILE *f;
	int fd;

	snprintf(users_path, sizeof(users_path), "/tmp/ut-users-XXXXXX");
	fd = mkstemp(users_path);
	cr_assert(fd >= 0);
	f = fdopen(fd, "w");
	fputs("# users\nalice\n  Bob  # trailing comment\n\n"
	      "carol@other.test\n", f);
	fclose(f);
	snprintf(c.local_domains, sizeof(c.local_domains),
		 "dpmail.test, other.test");
	snprintf(c.relay_domains, sizeof(c.relay_domains),
		 "partner.example .sub.example");
	snprintf(c.trusted_networks, sizeof(c.trusted_networks),
		 "10.1.0.0/16 192.0.2.7");
	snprintf(c.users_file, sizeof(c.users_file), "%s", users_path);
	cr_assert_eq(mta_policy_load(&pol, &c, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	mta_policy_free(pol);
	unlink(users_path);
}

#define UNTRUSTED ip("198.18.0.1")

TestSuite(mta_policy, .init = setup, .fini = teardown);

Test(mta_policy, local_users)
{
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice@dpmail.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "ALICE@DPMail.Test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice+tag@dpmail.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "bob@other.test"), MTA_LOCAL);
	/* carol only exists in other.test */
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "carol@other.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "carol@dpmail.test"), MTA_NO_USER);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "mallory@dpmail.test"), MTA_NO_USER);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "+@dpmail.test"), MTA_NO_USER);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "postmaster@dpmail.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "Postmaster"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice"), MTA_RELAY_DENIED);
}

Test(mta_policy, relay_probes_refused)
{
	static const char *const probes[] = {
		"user@remote.example",
		"user%remote.example@dpmail.test",
		"user!remote.example@dpmail.test",
		"remote.example!user@dpmail.test",
		"\"user@remote.example\"@dpmail.test",
		"\"user%remote.example\"@dpmail.test",
		"user@remote.example@dpmail.test",
		"alice@[198.18.0.2]",
		"user@dpmail.test.remote.example",
		"user@xpartner.example",
		"",
	};
	for (size_t i = 0; i < sizeof(probes) / sizeof(*probes); i++)
		cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, probes[i]),
			     MTA_RELAY_DENIED, "probe %s", probes[i]);
}

Test(mta_policy, relay_domains_and_trusted)
{
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "x@partner.example"), MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "x@Partner.Example"), MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "x@a.sub.example"), MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "x@sub.example"), MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.1.200.3"), "x@remote.example"), MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.2.0.1"), "x@remote.example"), MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt(pol, ip("192.0.2.7"), "x@[203.0.113.1]"), MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt(pol, ip("192.0.2.8"), "x@remote.example"), MTA_RELAY_DENIED);
	/* trust does not bypass routing tricks or unknown local users */
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.1.0.1"), "u%r.example@dpmail.test"),
		     MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.1.0.1"), "nobody@dpmail.test"),
		     MTA_NO_USER);
}

static int load_with(const char *local, const char *relay, const char *nets,
		     const char *users_text, char *err, size_t errlen)
{
	struct mta_policy_conf c = { 0 };
	struct mta_policy *p = NULL;
	char path[64] = "";
	int rc;

	snprintf(c.local_domains, sizeof(c.local_domains), "%s", local);
	snprintf(c.relay_domains, sizeof(c.relay_domains), "%s", relay);
	snprintf(c.trusted_networks, sizeof(c.trusted_networks), "%s", nets);
	if (users_text != NULL) {
		FILE *f;
		int fd;
		snprintf(path, sizeof(path), "/tmp/ut-users-XXXXXX");
		fd = mkstemp(path);
		f = fdopen(fd, "w");
		fputs(users_text, f);
		fclose(f);
		snprintf(c.users_file, sizeof(c.users_file), "%s", path);
	}
	rc = mta_policy_load(&p, &c, err, errlen);
	mta_policy_free(p);
	if (path[0] != '\0')
		unlink(path);
	return rc;
}

Test(mta_policy_load, bad_input_refused_with_reason)
{
	char err[256];

	cr_expect_neq(load_with("bad_domain!", "", "", NULL, err, sizeof(err)), 0);
	cr_expect(strstr(err, "bad_domain!") != NULL, "%s", err);
	cr_expect_neq(load_with("ok.test", "-bad.example", "", NULL, err, sizeof(err)), 0);
	cr_expect_neq(load_with("ok.test", "", "10.0.0.0/33", NULL, err, sizeof(err)), 0);
	cr_expect(strstr(err, "10.0.0.0/33") != NULL, "%s", err);
	cr_expect_neq(load_with("ok.test", "", "300.1.1.1", NULL, err, sizeof(err)), 0);
	cr_expect_neq(load_with("ok.test", "", "", "alice\nbad user\n", err,
				sizeof(err)), 0);
	cr_expect(strstr(err, ":2:") != NULL, "%s", err);
	cr_expect_neq(load_with("ok.test", "", "", "a@b@c\n", err, sizeof(err)), 0);
	cr_expect_neq(load_with("ok.test", "", "", "\"q\"\n", err, sizeof(err)), 0);
	cr_expect_eq(load_with("ok.test", ".sub.ok", "0.0.0.0/0", "a\n", err,
			       sizeof(err)), 0, "%s", err);
	{
		struct mta_policy_conf c = { 0 };
		struct mta_policy *p = NULL;
		snprintf(c.users_file, sizeof(c.users_file), "/nonexistent/users");
		cr_expect_neq(mta_policy_load(&p, &c, err, sizeof(err)), 0);
		cr_expect(strstr(err, "/nonexistent/users") != NULL, "%s", err);
	}
}

/*
 * With a route attached, RCPT accepts exactly what routing delivers
 * locally: users, user+detail, aliases, catch-all; the transport map's
 * "local" domains too, and its "reject" domains are refused with its
 * reply. Relaying stays the policy's.
 */
static char rdir[64];
static struct mta_route *route;

static void rwrite(const char *name, const char *text, char *path,
		   size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/%s", rdir, name);
	f = fopen(path, "w");
	cr_assert(f != NULL);
	fputs(text, f);
	fclose(f);
}

static void route_setup(void)
{
	struct mta_route_conf rc;
	char err[256] = "";

	setup();
	snprintf(rdir, sizeof(rdir), "/tmp/ut-polroute-XXXXXX");
	cr_assert(mkdtemp(rdir) != NULL);
	mta_route_conf_defaults(&rc);
	snprintf(rc.local_domains, sizeof(rc.local_domains),
		 "dpmail.test, other.test, catch.test");
	snprintf(rc.users_file, sizeof(rc.users_file), "%s", users_path);
	snprintf(rc.recipient_delimiter, sizeof(rc.recipient_delimiter),
		 "+-");
	rwrite("aliases", "sales: alice, bob\n"
	       "info@other.test: carol\n"
	       "@catch.test: alice@dpmail.test\n", rc.aliases_file,
	       sizeof(rc.aliases_file));
	rwrite("transport", "partner.test local\n"
	       "blocked.example reject 550 5.7.2 not here\n"
	       "partner.example [198.18.0.10]\n"
	       "routed.example [198.18.0.11]\n", rc.transport_file,
	       sizeof(rc.transport_file));
	cr_assert_eq(mta_route_load(&route, &rc, err, sizeof(err)), 0, "%s",
		     err);
	mta_policy_set_route(pol, route);
}

static void route_teardown(void)
{
	char p[128];

	teardown();
	mta_route_free(route);
	snprintf(p, sizeof(p), "%s/aliases", rdir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/transport", rdir);
	unlink(p);
	rmdir(rdir);
}

TestSuite(mta_policy_route, .init = route_setup, .fini = route_teardown);

Test(mta_policy_route, accepts_what_routing_delivers)
{
	struct mta_policy_reply r;

	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice@dpmail.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "ALICE+x@DPMail.Test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice-x@dpmail.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "sales@dpmail.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "sales+q3@other.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "info@other.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "info@dpmail.test"), MTA_NO_USER);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "anyone@catch.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "bob@partner.test"), MTA_LOCAL);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "zed@partner.test"), MTA_NO_USER);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "mallory@dpmail.test"), MTA_NO_USER);
	/* postmaster is only what the tables make it */
	cr_expect_eq(mta_policy_rcpt_reply(pol, UNTRUSTED,
					   "postmaster@dpmail.test", &r),
		     MTA_NO_USER);
	cr_expect_eq(r.code, 550);
	cr_expect_str_eq(r.enh, "5.1.1");
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "postmaster"), MTA_NO_USER);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice"), MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt_reply(pol, UNTRUSTED, "bob@other.test",
					   &r), MTA_LOCAL);
	cr_expect_eq(r.code, 250);
}

Test(mta_policy_route, transport_reject_and_relay_rules)
{
	struct mta_policy_reply r;

	/* refused for everyone, with the map's reply */
	cr_expect_eq(mta_policy_rcpt_reply(pol, ip("10.1.0.1"),
					   "x@blocked.example", &r),
		     MTA_RELAY_DENIED);
	cr_expect_eq(r.code, 550);
	cr_expect_str_eq(r.enh, "5.7.2");
	cr_expect_str_eq(r.text, "not here");
	/* a transport entry grants no relaying; relay_domains do */
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "x@routed.example"),
		     MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.1.0.1"), "x@routed.example"),
		     MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt_reply(pol, UNTRUSTED, "x@partner.example",
					   &r), MTA_RELAY);
	cr_expect_eq(mta_policy_rcpt_reply(pol, UNTRUSTED, "x@remote.example",
					   &r), MTA_RELAY_DENIED);
	cr_expect_eq(r.code, 554);
	cr_expect_str_eq(r.text, "relay access denied");
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.1.0.1"), "x@remote.example"),
		     MTA_RELAY);
	/* routing tricks stay refused, even to an alias */
	cr_expect_eq(mta_policy_rcpt(pol, ip("10.1.0.1"),
				     "sales%remote.example@dpmail.test"),
		     MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "x%y@catch.test"),
		     MTA_RELAY_DENIED);
	/* relay probes from the original suite, route attached */
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED, "alice@[198.18.0.2]"),
		     MTA_RELAY_DENIED);
	cr_expect_eq(mta_policy_rcpt(pol, UNTRUSTED,
				     "\"user@remote.example\"@dpmail.test"),
		     MTA_RELAY_DENIED);
}
