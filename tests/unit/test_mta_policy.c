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
