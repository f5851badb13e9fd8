/*
 * test_mta_route.c: routing decisions from config tables (local users,
 * transport map, relay host, MX, address literals), alias expansion,
 * load errors naming file:line, Received: counting and retry arithmetic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "mta/mta_retry.h"
#include "mta/mta_route.h"

static char dir[64];
static struct mta_route *rt;

static void write_file(const char *name, const char *text, char *path,
		       size_t len)
{
	FILE *f;

	cr_assert(dir[0] == '/', "no temporary directory");
	snprintf(path, len, "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert(f != NULL);
	fputs(text, f);
	fclose(f);
}

static void rm_dir(void)
{
	static const char *const names[] = { "users", "aliases", "transport" };
	char p[128];

	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* Loads a route from the given texts (NULL: no such file). */
static int load(struct mta_route **out, const char *domains,
		const char *users, const char *aliases, const char *transport,
		const char *relayhost, char *err, size_t errlen)
{
	struct mta_route_conf c;

	mta_route_conf_defaults(&c);
	snprintf(c.local_domains, sizeof(c.local_domains), "%s", domains);
	if (users != NULL)
		write_file("users", users, c.users_file, sizeof(c.users_file));
	if (aliases != NULL)
		write_file("aliases", aliases, c.aliases_file,
			   sizeof(c.aliases_file));
	if (transport != NULL)
		write_file("transport", transport, c.transport_file,
			   sizeof(c.transport_file));
	if (relayhost != NULL)
		snprintf(c.relayhost, sizeof(c.relayhost), "%s", relayhost);
	return mta_route_load(out, &c, err, errlen);
}

static const char users_txt[] =
	"# users\n"
	"alice\n"
	"Bob\n"
	"carol@other.test\n"
	"dave@dpmail.test\n"
	"root\n";

static const char aliases_txt[] =
	"# aliases\n"
	"postmaster: root\n"
	"sales: alice, bob\n"
	"support: sales, help@remote.example\n"
	"team@other.test: carol, alice@dpmail.test\n"
	"all: sales,\n"
	"   support ,\n"
	"\troot\n"
	"selfish: selfish, alice\n"
	"alice+lists: bob\n"
	"ping: pong\n"
	"pong: ping\n"
	"loop1: loop2, alice\n"
	"loop2: loop1\n"
	"dup: alice, ALICE, alice@dpmail.test, sales\n"
	"@catch.test: bob@dpmail.test\n"
	"big: b1, b2, b3\n"
	"b1: x1@r.example, x2@r.example\n"
	"b2: x3@r.example, x4@r.example\n"
	"b3: x5@r.example\n";

static const char transport_txt[] =
	"# transport\n"
	"exact.example      [198.18.0.10]:2525\n"
	".exact.example     relay.example.net\n"
	".example.org       smtp:mx.example.org:2526\n"
	".deep.example.org  [gw.example.net]\n"
	"deep.example.org   198.18.0.11\n"
	"partner.example    local\n"
	"blocked.example    reject 554 5.7.2 we do not talk to them\n"
	"plain.example      reject\n"
	"Upper.Example      [198.18.0.12]\n";

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ut-route-XXXXXX");
	cr_assert(mkdtemp(dir) != NULL);
}

static void setup(void)
{
	char err[256] = "";

	make_dir();
	cr_assert_eq(load(&rt, "dpmail.test, other.test catch.test", users_txt,
			  aliases_txt, transport_txt, NULL, err, sizeof(err)),
		     0, "%s", err);
}

static void teardown(void)
{
	mta_route_free(rt);
	rm_dir();
}

TestSuite(mta_route, .init = setup, .fini = teardown);
TestSuite(mta_received);
TestSuite(mta_retry);

static void expect_local(const struct mta_route *r, const char *addr,
			 const char *mailbox)
{
	struct mta_route_result res;

	mta_route_rcpt(r, addr, &res);
	cr_expect_eq(res.kind, MTA_ROUTE_LOCAL, "%s: kind %d (%u %s)", addr,
		     res.kind, res.code, res.text);
	cr_expect_str_eq(res.mailbox, mailbox, "%s", addr);
}

static void expect_relay(const struct mta_route *r, const char *addr,
			 enum mta_nexthop_kind kind, const char *host,
			 uint16_t port, const char *dest)
{
	struct mta_route_result res;

	mta_route_rcpt(r, addr, &res);
	cr_expect_eq(res.kind, MTA_ROUTE_RELAY, "%s: kind %d (%u %s)", addr,
		     res.kind, res.code, res.text);
	cr_expect_eq(res.nh.kind, kind, "%s: nh kind %d", addr, res.nh.kind);
	cr_expect_str_eq(res.nh.host, host, "%s", addr);
	cr_expect_eq(res.nh.port, port, "%s: port %u", addr, res.nh.port);
	cr_expect_str_eq(res.dest, dest, "%s", addr);
}

static void expect_reject(const struct mta_route *r, const char *addr,
			  uint16_t code, const char *enh, const char *text)
{
	struct mta_route_result res;

	mta_route_rcpt(r, addr, &res);
	cr_expect_eq(res.kind, MTA_ROUTE_REJECT, "%s: kind %d", addr,
		     res.kind);
	cr_expect_eq(res.code, code, "%s: %u", addr, res.code);
	cr_expect_str_eq(res.enh, enh, "%s", addr);
	if (text != NULL)
		cr_expect_str_eq(res.text, text, "%s", addr);
}

Test(mta_route, local_users)
{
	expect_local(rt, "alice@dpmail.test", "alice");
	expect_local(rt, "ALICE@DPMail.TEST", "alice");
	expect_local(rt, "bob@other.test", "bob");
	expect_local(rt, "carol@other.test", "carol@other.test");
	expect_local(rt, "dave@dpmail.test", "dave@dpmail.test");
	expect_local(rt, "alice+foo@dpmail.test", "alice");
	expect_local(rt, "Dave+X+Y@dpmail.test", "dave@dpmail.test");
	/* the first local domain is postmaster's when none is given; here
	 * postmaster is an alias (expanded before routing), no mailbox */
	expect_reject(rt, "postmaster", 550, "5.1.1", NULL);
	expect_reject(rt, "root", 553, "5.1.3", NULL);
	expect_reject(rt, "carol@dpmail.test", 550, "5.1.1", "user unknown");
	expect_reject(rt, "dave@other.test", 550, "5.1.1", NULL);
	expect_reject(rt, "mallory@dpmail.test", 550, "5.1.1", NULL);
	expect_reject(rt, "+alice@dpmail.test", 550, "5.1.1", NULL);
	/* aliases are expanded before routing: an alias is no mailbox */
	expect_reject(rt, "sales@dpmail.test", 550, "5.1.1", NULL);
	/* partner.example is local by the transport map */
	expect_local(rt, "alice@partner.example", "alice");
	expect_reject(rt, "carol@partner.example", 550, "5.1.1", NULL);
}

Test(mta_route, delimiter_off_and_set)
{
	struct mta_route_conf c;
	struct mta_route *r;
	char err[256] = "", users[128];

	mta_route_conf_defaults(&c);
	snprintf(c.local_domains, sizeof(c.local_domains), "dpmail.test");
	write_file("users", users_txt, users, sizeof(users));
	snprintf(c.users_file, sizeof(c.users_file), "%s", users);
	c.recipient_delimiter[0] = '\0';
	cr_assert_eq(mta_route_load(&r, &c, err, sizeof(err)), 0, "%s", err);
	expect_reject(r, "alice+foo@dpmail.test", 550, "5.1.1", NULL);
	mta_route_free(r);
	snprintf(c.recipient_delimiter, sizeof(c.recipient_delimiter), "+-");
	cr_assert_eq(mta_route_load(&r, &c, err, sizeof(err)), 0, "%s", err);
	expect_local(r, "alice-foo@dpmail.test", "alice");
	expect_local(r, "alice+foo@dpmail.test", "alice");
	mta_route_free(r);
	snprintf(c.recipient_delimiter, sizeof(c.recipient_delimiter), "@");
	cr_expect_eq(mta_route_load(&r, &c, err, sizeof(err)), -EINVAL);
}

/* An address and where it is relayed to. */
struct relay_case {
	const char *addr;
	enum mta_nexthop_kind kind;
	const char *host;
	uint16_t port;
	const char *dest;
};

static void expect_relays(const struct mta_route *r,
			  const struct relay_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		expect_relay(r, cases[i].addr, cases[i].kind, cases[i].host,
			     cases[i].port, cases[i].dest);
}

Test(mta_route, transport_map)
{
	static const struct relay_case cases[] = {
		/* exact */
		{ "x@exact.example", MTA_NH_IP, "198.18.0.10", 2525,
		  "[198.18.0.10]:2525" },
		{ "x@EXACT.Example", MTA_NH_IP, "198.18.0.10", 2525,
		  "[198.18.0.10]:2525" },
		/* .sub matches subdomains only */
		{ "x@a.exact.example", MTA_NH_MX, "relay.example.net", 25,
		  "relay.example.net" },
		{ "x@a.b.exact.example", MTA_NH_MX, "relay.example.net", 25,
		  "relay.example.net" },
		{ "x@example.org", MTA_NH_MX, "example.org", 25,
		  "example.org" },
		{ "x@www.example.org", MTA_NH_MX, "mx.example.org", 2526,
		  "mx.example.org:2526" },
		/* longest dot match, and exact beats dot */
		{ "x@a.deep.example.org", MTA_NH_HOST, "gw.example.net", 25,
		  "[gw.example.net]" },
		{ "x@deep.example.org", MTA_NH_IP, "198.18.0.11", 25,
		  "[198.18.0.11]" },
		{ "x@upper.example", MTA_NH_IP, "198.18.0.12", 25,
		  "[198.18.0.12]" },
	};
	static const struct relay_case no_entry[] = {
		/* no entry, no relay host: MX of the domain */
		{ "x@Remote.Example", MTA_NH_MX, "remote.example", 25,
		  "remote.example" },
	};

	expect_relays(rt, cases, sizeof(cases) / sizeof(*cases));
	/* reject with a reply, and the default one */
	expect_reject(rt, "x@blocked.example", 554, "5.7.2",
		      "we do not talk to them");
	expect_reject(rt, "x@plain.example", 550, "5.7.1",
		      "relay not permitted");
	expect_relays(rt, no_entry, 1);
}

Test(mta_route, address_literals_and_bad_domains)
{
	static const char *const bad[] = {
		"x@[IPv6:2001:db8::1]", "x@[300.1.1.1]", "x@[198.18.0.2",
		"x@bad_domain", "x@-bad.example", "x@", "@remote.example",
		"nodomain", "",
	};

	expect_relay(rt, "x@[198.18.0.2]", MTA_NH_IP, "198.18.0.2", 25,
		     "[198.18.0.2]");
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		expect_reject(rt, bad[i], 553, "5.1.3", NULL);
}

Test(mta_route, relayhost_forms)
{
	static const struct {
		const char *relayhost;
		enum mta_nexthop_kind kind;
		const char *host;
		uint16_t port;
		const char *dest;
	} cases[] = {
		{ "smarthost.example", MTA_NH_MX, "smarthost.example", 25,
		  "smarthost.example" },
		{ "smarthost.example:587", MTA_NH_MX, "smarthost.example", 587,
		  "smarthost.example:587" },
		{ "[Smarthost.Example]", MTA_NH_HOST, "smarthost.example", 25,
		  "[smarthost.example]" },
		{ "[smarthost.example]:2525", MTA_NH_HOST, "smarthost.example",
		  2525, "[smarthost.example]:2525" },
		{ "[198.18.0.9]", MTA_NH_IP, "198.18.0.9", 25, "[198.18.0.9]" },
		{ "[198.18.0.9]:26", MTA_NH_IP, "198.18.0.9", 26,
		  "[198.18.0.9]:26" },
	};
	static const char *const bad[] = {
		"[198.18.0.9", "[198.18.0.9]x", "host:0", "host:65536",
		"bad_host", "[]", "host:", "a b",
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct mta_route *r;

		cr_assert_eq(load(&r, "dpmail.test", users_txt, NULL,
				  "exact.example [198.18.0.10]\n",
				  cases[i].relayhost, err, sizeof(err)), 0,
			     "%s: %s", cases[i].relayhost, err);
		expect_relay(r, "x@remote.example", cases[i].kind,
			     cases[i].host, cases[i].port, cases[i].dest);
		/* the transport map and local domains come first */
		expect_relay(r, "x@exact.example", MTA_NH_IP, "198.18.0.10",
			     25, "[198.18.0.10]");
		expect_local(r, "alice@dpmail.test", "alice");
		/* literals go where they say */
		expect_relay(r, "x@[198.18.0.3]", MTA_NH_IP, "198.18.0.3", 25,
			     "[198.18.0.3]");
		mta_route_free(r);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct mta_route *r = NULL;

		cr_expect_eq(load(&r, "dpmail.test", NULL, NULL, NULL, bad[i],
				  err, sizeof(err)), -EINVAL, "%s", bad[i]);
		cr_expect(strstr(err, "relayhost") != NULL, "%s", err);
		cr_expect_null(r);
	}
}

/* Expands addr and checks the sorted result against want (NULL-ended). */
static void expect_expand(const char *addr, const char *const *want)
{
	char **v, got[1024] = "", exp[1024] = "";
	int n = mta_route_expand(rt, addr, &v), nwant = 0;

	while (want[nwant] != NULL) {
		strcat(exp, want[nwant++]);
		strcat(exp, " ");
	}
	cr_assert_eq(n, nwant, "%s: %d addresses, want %d", addr, n, nwant);
	for (int i = 0; i < n; i++) {
		/* order is expansion order: compare as given */
		strcat(got, v[i]);
		strcat(got, " ");
	}
	cr_expect_str_eq(got, exp, "%s", addr);
	mta_route_expand_free(v, n);
}

#define EXPAND(addr, ...) \
	expect_expand(addr, (const char *const[]){ __VA_ARGS__, NULL })

Test(mta_route, expand_aliases)
{
	char **v = NULL;

	/* not aliases: deliver as they are */
	cr_expect_eq(mta_route_expand(rt, "alice@dpmail.test", &v), 0);
	cr_expect_null(v);
	cr_expect_eq(mta_route_expand(rt, "alice+foo@dpmail.test", &v), 0);
	cr_expect_eq(mta_route_expand(rt, "x@remote.example", &v), 0);
	cr_expect_eq(mta_route_expand(rt, "nobody@dpmail.test", &v), 0);
	cr_expect_eq(mta_route_expand(rt, "x@[198.18.0.2]", &v), 0);
	/* multiple targets in the address's own domain */
	EXPAND("sales@dpmail.test", "alice@dpmail.test", "bob@dpmail.test");
	EXPAND("Sales@Other.Test", "alice@other.test", "bob@other.test");
	/* recursion, remote targets */
	EXPAND("support@dpmail.test", "alice@dpmail.test", "bob@dpmail.test",
	       "help@remote.example");
	/* a full-address name, only in its domain */
	EXPAND("team@other.test", "carol@other.test", "alice@dpmail.test");
	cr_expect_eq(mta_route_expand(rt, "team@dpmail.test", &v), 0);
	/* continuation lines, duplicates removed */
	EXPAND("all@dpmail.test", "alice@dpmail.test", "bob@dpmail.test",
	       "help@remote.example", "root@dpmail.test");
	EXPAND("dup@dpmail.test", "alice@dpmail.test", "bob@dpmail.test");
	/* a name that lists itself keeps its mailbox */
	EXPAND("selfish@dpmail.test", "selfish@dpmail.test",
	       "alice@dpmail.test");
	/* postmaster without a domain: the first local domain's */
	EXPAND("postmaster", "root@dpmail.test");
	EXPAND("PostMaster@other.test", "root@other.test");
	/* +detail: the detailed name first, then the plain one */
	EXPAND("alice+lists@dpmail.test", "bob@dpmail.test");
	EXPAND("sales+q3@dpmail.test", "alice@dpmail.test", "bob@dpmail.test");
}

Test(mta_route, expand_loops_catchall_limit)
{
	char **v = NULL;

	/* a loop with nothing else */
	cr_expect_eq(mta_route_expand(rt, "ping@dpmail.test", &v), -ELOOP);
	cr_expect_null(v);
	/* a loop cut where it closes, the rest kept */
	EXPAND("loop1@dpmail.test", "alice@dpmail.test");
	EXPAND("loop2@dpmail.test", "alice@dpmail.test");
	/* catch-all: unknown users only */
	EXPAND("anyone@catch.test", "bob@dpmail.test");
	EXPAND("Any+thing@CATCH.test", "bob@dpmail.test");
	cr_expect_eq(mta_route_expand(rt, "alice@catch.test", &v), 0);
	cr_expect_eq(mta_route_expand(rt, "alice+x@catch.test", &v), 0);
	cr_expect_eq(mta_route_expand(rt, "nobody@dpmail.test", &v), 0);
	EXPAND("big@dpmail.test", "x1@r.example", "x2@r.example",
	       "x3@r.example", "x4@r.example", "x5@r.example");
}

Test(mta_route, expand_limit)
{
	struct mta_route_conf c;
	struct mta_route *r;
	char err[256] = "", **v;

	mta_route_conf_defaults(&c);
	snprintf(c.local_domains, sizeof(c.local_domains), "dpmail.test");
	write_file("aliases", "big: b1, b2, b3\n"
		   "b1: x1@r.example, x2@r.example\n"
		   "b2: x3@r.example, x4@r.example\n"
		   "b3: x5@r.example\n", c.aliases_file,
		   sizeof(c.aliases_file));
	c.max_expansion = 4;
	cr_assert_eq(mta_route_load(&r, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(mta_route_expand(r, "big@dpmail.test", &v), -E2BIG);
	cr_expect_eq(mta_route_expand(r, "b1@dpmail.test", &v), 2);
	mta_route_expand_free(v, 2);
	mta_route_free(r);

	/* a long chain is cut, not a stack overflow */
	{
		char text[8192] = "", line[64];
		for (int i = 0; i < 100; i++) {
			snprintf(line, sizeof(line), "c%d: c%d\n", i, i + 1);
			strcat(text, line);
		}
		write_file("aliases", text, c.aliases_file,
			   sizeof(c.aliases_file));
		c.max_expansion = 1000;
		cr_assert_eq(mta_route_load(&r, &c, err, sizeof(err)), 0,
			     "%s", err);
		cr_expect_eq(mta_route_expand(r, "c0@dpmail.test", &v), -ELOOP);
		cr_expect_eq(mta_route_expand(r, "c90@dpmail.test", &v), 1);
		cr_expect_str_eq(v[0], "c100@dpmail.test");
		mta_route_expand_free(v, 1);
		mta_route_free(r);
	}
}

Test(mta_route, missing_postmaster)
{
	struct mta_route *r;
	char err[256] = "", buf[64];

	/* postmaster is an alias (any domain), catch.test has a catch-all */
	cr_expect_eq(mta_route_missing_postmaster(rt, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "");
	cr_assert_eq(load(&r, "b.test a.test c.test", "postmaster@b.test\n",
			  "postmaster@c.test: x@remote.example\n", NULL, NULL,
			  err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(mta_route_missing_postmaster(r, buf, sizeof(buf)), 1);
	cr_expect_str_eq(buf, "a.test");
	cr_expect_eq(mta_route_missing_postmaster(r, buf, 3), 1);
	cr_expect_str_eq(buf, "a.");
	mta_route_free(r);
}

/* mta_route_check_rcpt(rt, addr) gives want (the result into *res). */
static void expect_check(const char *addr, enum mta_route_check want,
			 struct mta_route_result *res)
{
	cr_expect_eq(mta_route_check_rcpt(rt, addr, res), want, "%s", addr);
}

Test(mta_route, check_rcpt_for_policy)
{
	static const char *const local_ok[] = {
		"alice@dpmail.test", "alice+x@dpmail.test",
		"sales@dpmail.test", "sales+x@dpmail.test",
		"whoever@catch.test", "postmaster", "alice@partner.example",
	};
	static const char *const not_local[] = {
		"x@remote.example", "x@exact.example", "x@[198.18.0.2]",
		"alice",
	};
	struct mta_route_result res;

	for (size_t i = 0; i < sizeof(local_ok) / sizeof(*local_ok); i++)
		expect_check(local_ok[i], MTA_RCHK_LOCAL_OK, &res);
	expect_check("nobody@dpmail.test", MTA_RCHK_NO_USER, &res);
	cr_expect_eq(res.code, 550);
	expect_check("carol@partner.example", MTA_RCHK_NO_USER, &res);
	expect_check("x@blocked.example", MTA_RCHK_REJECT, &res);
	cr_expect_eq(res.code, 554);
	cr_expect_str_eq(res.enh, "5.7.2");
	cr_expect_str_eq(res.text, "we do not talk to them");
	for (size_t i = 0; i < sizeof(not_local) / sizeof(*not_local); i++)
		expect_check(not_local[i], MTA_RCHK_NOT_LOCAL, &res);
}

TestSuite(mta_route_load, .init = make_dir, .fini = rm_dir);

/* Each bad file is refused, naming file:line. */
Test(mta_route_load, bad_files_name_file_and_line)
{
	static const struct {
		const char *users, *aliases, *transport, *want;
	} cases[] = {
		{ "alice\nbad user\n", NULL, NULL, "users:2:" },
		{ "alice\na@b_c\n", NULL, NULL, "users:2:" },
		{ NULL, "a: b\nnocolon\n", NULL, "aliases:2:" },
		{ NULL, "# c\n  b\n", NULL, "aliases:2:" },
		{ NULL, "a: b\n\nbad name: c\n", NULL, "aliases:3:" },
		{ NULL, "a:\n", NULL, "aliases:1:" },
		{ NULL, "a: b,,c\n", NULL, "aliases:1:" },
		{ NULL, "a: |/bin/sh\n", NULL, "aliases:1:" },
		{ NULL, "a: /var/mail/x\n", NULL, "aliases:1:" },
		{ NULL, "a: :include:/etc/list\n", NULL, "aliases:1:" },
		{ NULL, "a: b\nx: y\nA: c\n", NULL, "aliases:3:" },
		{ NULL, "x@remote.example: b\n", NULL, "aliases:1:" },
		{ NULL, "@remote.example: b\n", NULL, "aliases:1:" },
		{ NULL, "a: b\n   c@bad_domain\n", NULL, "aliases:1:" },
		{ NULL, "a: \"b c\"@x.example\n", NULL, "aliases:1:" },
		{ NULL, NULL, "x.example\n", "transport:1:" },
		{ NULL, NULL, "# c\nx.example [1.2.3.4\n", "transport:2:" },
		{ NULL, NULL, "x.example h:99999\n", "transport:1:" },
		{ NULL, NULL, "bad_domain h\n", "transport:1:" },
		{ NULL, NULL, "x.example h1 h2\n", "transport:1:" },
		{ NULL, NULL, "x.example reject 250 2.0.0 ok\n",
		  "transport:1:" },
		{ NULL, NULL, "x.example reject 550 4.7.1 x\n",
		  "transport:1:" },
		{ NULL, NULL, "x.example reject 550\n", "transport:1:" },
		{ NULL, NULL, "x.example h\nX.example h2\n", "transport:2:" },
		{ NULL, NULL, "dpmail.test [198.18.0.1]\n", "transport:1:" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct mta_route *r = NULL;
		int rc = load(&r, "dpmail.test", cases[i].users,
			      cases[i].aliases, cases[i].transport, NULL, err,
			      sizeof(err));

		cr_expect_eq(rc, -EINVAL, "case %zu: rc %d", i, rc);
		cr_expect(strstr(err, cases[i].want) != NULL,
			  "case %zu: '%s' lacks '%s'", i, err, cases[i].want);
		cr_expect(strstr(err, dir) != NULL, "case %zu: %s", i, err);
		cr_expect_null(r);
		mta_route_free(r);
		rm_dir();
		cr_assert(mkdir(dir, 0700) == 0);
	}
}

Test(mta_route_load, good_edge_cases_and_missing_files)
{
	struct mta_route *r = NULL;
	struct mta_route_conf c;
	char err[256];

	/* a local domain may be keyed "local"; trailing comma; comments */
	cr_expect_eq(load(&r, "dpmail.test", "alice # the boss\nbob#too\n",
			  "a: alice, # who\n", "dpmail.test local\n", NULL, err,
			  sizeof(err)), 0, "%s", err);
	expect_local(r, "bob@dpmail.test", "bob");
	mta_route_free(r);
	/* errors name the configuration key too */
	cr_expect_eq(load(&r, "dpmail.test", NULL, "a b: c\n", NULL, NULL,
			  err, sizeof(err)), -EINVAL);
	cr_expect(strncmp(err, "aliases_file /tmp/", 18) == 0, "%s", err);
	cr_expect_eq(load(&r, "dpmail.test", NULL, "x: y\nb: c\nX: c\n",
			  NULL, NULL, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "aliases:3: 'x' is listed twice (first on "
			 "line 1)") != NULL, "%s", err);
	/* aliases in a domain made local by the transport map */
	cr_expect_eq(load(&r, "dpmail.test", "alice\n",
			  "@partner.example: alice@dpmail.test\n",
			  "partner.example local\n", NULL, err, sizeof(err)),
		     0, "%s", err);
	mta_route_free(r);
	cr_expect_eq(load(&r, "bad_domain!", NULL, NULL, NULL, NULL, err,
			  sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "bad_domain!") != NULL, "%s", err);
	mta_route_conf_defaults(&c);
	snprintf(c.aliases_file, sizeof(c.aliases_file), "/nonexistent/al");
	cr_expect_eq(mta_route_load(&r, &c, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, "/nonexistent/al") != NULL, "%s", err);
	mta_route_conf_defaults(&c);
	snprintf(c.transport_file, sizeof(c.transport_file), "/nonexistent/t");
	cr_expect_eq(mta_route_load(&r, &c, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, "/nonexistent/t") != NULL, "%s", err);
	cr_expect_null(r);
}

static unsigned count(const char *s)
{
	return mta_count_received((const uint8_t *)s, strlen(s));
}

Test(mta_received, counting)
{
	cr_expect_eq(count(""), 0);
	cr_expect_eq(count("Received: a\r\n\r\nbody\r\n"), 1);
	cr_expect_eq(count("Received: a\r\nreceived: b\r\nRECEIVED:c\r\n"
			   "Subject: x\r\n\r\n"), 3);
	/* folded lines are one field; a folded line mentioning it is not */
	cr_expect_eq(count("Received: from a\r\n by b\r\n"
			   "\tReceived: not a field\r\n"
			   "Received: c\r\n\r\n"), 2);
	/* names that only start the same, or lack the colon */
	cr_expect_eq(count("Received-SPF: pass\r\nReceivedx: y\r\n"
			   "Received\r\nReceived : obs\r\n\r\n"), 1);
	/* the body does not count */
	cr_expect_eq(count("Subject: x\r\n\r\nReceived: in body\r\n"), 0);
	cr_expect_eq(count("Received: a\n\nReceived: b\n"), 1);
	/* no header end: every line is header */
	cr_expect_eq(count("Received: a\r\nReceived: b"), 2);
	cr_expect_eq(count("Received:"), 1);
	/* an empty first line: no header at all */
	cr_expect_eq(count("\r\nReceived: a\r\n"), 0);
}

Test(mta_retry, arithmetic)
{
	struct mta_retry_conf c;
	const uint64_t t0 = 1700000000, now = t0 + 100;

	mta_retry_conf_defaults(&c);
	cr_expect_eq(c.first_s, 1200);
	cr_expect_eq(c.max_interval_s, 14400);
	cr_expect_eq(c.lifetime_s, 432000);
	/* doubling */
	cr_expect_eq(mta_retry_next(&c, t0, 1, now), now + 1200);
	cr_expect_eq(mta_retry_next(&c, t0, 2, now), now + 2400);
	cr_expect_eq(mta_retry_next(&c, t0, 3, now), now + 4800);
	cr_expect_eq(mta_retry_next(&c, t0, 4, now), now + 9600);
	/* cap */
	cr_expect_eq(mta_retry_next(&c, t0, 5, now), now + 14400);
	cr_expect_eq(mta_retry_next(&c, t0, 6, now), now + 14400);
	/* overflow: huge attempts, huge times */
	cr_expect_eq(mta_retry_next(&c, t0, 33, now), now + 14400);
	cr_expect_eq(mta_retry_next(&c, t0, 64, now), now + 14400);
	cr_expect_eq(mta_retry_next(&c, t0, UINT32_MAX, now), now + 14400);
	cr_expect_eq(mta_retry_next(&c, UINT64_MAX - 10, 3, UINT64_MAX - 5),
		     UINT64_MAX);
	c.max_interval_s = UINT32_MAX;
	c.first_s = UINT32_MAX;
	c.lifetime_s = UINT32_MAX;
	cr_expect_eq(mta_retry_next(&c, t0, 40, t0), t0 + UINT32_MAX);
	mta_retry_conf_defaults(&c);
	/* lifetime */
	cr_expect_eq(mta_retry_next(&c, t0, 6, t0 + 432000 - 1000),
		     t0 + 432000);
	cr_expect_eq(mta_retry_next(&c, t0, 1, t0 + 500000), t0 + 432000);
	cr_expect(!mta_retry_expired(&c, t0, t0 + 431999));
	cr_expect(mta_retry_expired(&c, t0, t0 + 432000));
	cr_expect(!mta_retry_expired(&c, UINT64_MAX - 5, UINT64_MAX - 1));
	/* no failure yet: now */
	cr_expect_eq(mta_retry_next(&c, t0, 0, now), now);
	/* attempts that fit an age (tries at 0, 1200, 3600, 8400, 18000,
	 * 32400, then every 14400 s) */
	cr_expect_eq(mta_retry_attempts_for_age(&c, 0), 0);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 1), 1);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 1199), 1);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 1200), 2);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 3599), 2);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 3600), 3);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 18000), 5);
	cr_expect_eq(mta_retry_attempts_for_age(&c, 32400 + 14400 * 2), 8);
	/* the next try after a restart is then as far off as it was */
	cr_expect_eq(mta_retry_next(&c, t0, mta_retry_attempts_for_age(
			&c, 86400), t0 + 86400), t0 + 86400 + 14400);
	cr_expect_eq(mta_retry_attempts_for_age(&c, UINT64_MAX),
		     mta_retry_attempts_for_age(&c, 432000));
	c.first_s = 0;
	cr_expect_eq(mta_retry_attempts_for_age(&c, 1000), 1);
}
