/*
 * test_smtp_parse.c: the pure SMTP argument parsers (smtp/smtp_parse.c):
 * paths per RFC 5321 4.1.2 with RFC 6531 UTF-8, address literals,
 * ESMTP parameters, xtext, NOTIFY, SIZE, BDAT arguments. Table driven;
 * every accepted path is also checked for the exact mailbox it yields.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "common/envelope.h"
#include "smtp/smtp_parse.h"

struct path_case {
	const char *in;
	int rc;
	const char *addr;   /* expected mailbox when rc == OK */
	bool null_path, postmaster, utf8;
	size_t end;         /* 0: strlen(in) */
};

static const struct path_case path_cases[] = {
	{ "<a@b.test>", SMTP_PARSE_OK, "a@b.test", false, false, false, 0 },
	{ "<>", SMTP_PARSE_OK, "", true, false, false, 0 },
	{ "<> SIZE=10", SMTP_PARSE_OK, "", true, false, false, 2 },
	{ "<a@b.test> BODY=8BITMIME", SMTP_PARSE_OK, "a@b.test", false, false,
	  false, 10 },
	{ "<postmaster>", SMTP_PARSE_OK, "postmaster", false, true, false, 0 },
	{ "<PostMaster>", SMTP_PARSE_OK, "PostMaster", false, true, false, 0 },
	{ "<postmaster@d.test>", SMTP_PARSE_OK, "postmaster@d.test", false,
	  false, false, 0 },
	{ "<\"user@remote\"@local>", SMTP_PARSE_OK, "\"user@remote\"@local",
	  false, false, false, 0 },
	{ "<\"a b\\\"c\"@d.test>", SMTP_PARSE_OK, "\"a b\\\"c\"@d.test",
	  false, false, false, 0 },
	{ "<\"\"@d.test>", SMTP_PARSE_OK, "\"\"@d.test", false, false, false, 0 },
	{ "<\"a>b\"@d.test>", SMTP_PARSE_OK, "\"a>b\"@d.test", false, false,
	  false, 0 },
	{ "<user%remote@local>", SMTP_PARSE_OK, "user%remote@local", false,
	  false, false, 0 },
	{ "<@local:user@remote>", SMTP_PARSE_OK, "user@remote", false, false,
	  false, 0 },
	{ "<@a.test,@b.test:user@dom.test>", SMTP_PARSE_OK, "user@dom.test",
	  false, false, false, 0 },
	{ "<@[1.2.3.4]:u@d.test>", SMTP_PARSE_OK, "u@d.test", false, false,
	  false, 0 },
	{ "<first.last+tag@sub-1.example.co>", SMTP_PARSE_OK,
	  "first.last+tag@sub-1.example.co", false, false, false, 0 },
	{ "<!#$%&'*+-/=?^_`{|}~@d.test>", SMTP_PARSE_OK,
	  "!#$%&'*+-/=?^_`{|}~@d.test", false, false, false, 0 },
	{ "<u@[198.18.0.2]>", SMTP_PARSE_OK, "u@[198.18.0.2]", false, false,
	  false, 0 },
	{ "<u@[IPv6:2001:db8::1]>", SMTP_PARSE_OK, "u@[IPv6:2001:db8::1]",
	  false, false, false, 0 },
	{ "<u@[ipv6:::ffff:1.2.3.4]>", SMTP_PARSE_OK, "u@[ipv6:::ffff:1.2.3.4]",
	  false, false, false, 0 },
	{ "<u@[IPv6:1:2:3:4:5:6:7:8]>", SMTP_PARSE_OK,
	  "u@[IPv6:1:2:3:4:5:6:7:8]", false, false, false, 0 },
	{ "<u@[x-tag:abc]>", SMTP_PARSE_OK, "u@[x-tag:abc]", false, false,
	  false, 0 },
	{ "<u@localhost>", SMTP_PARSE_OK, "u@localhost", false, false, false, 0 },
	{ "<\xc3\xbc@b.test>", SMTP_PARSE_OK, "\xc3\xbc@b.test", false, false,
	  true, 0 },
	{ "<u@\xe4\xbe\x8b\xe5\xad\x90.test>", SMTP_PARSE_OK,
	  "u@\xe4\xbe\x8b\xe5\xad\x90.test", false, false, true, 0 },
	{ "<\"\xc3\xbc\"@b.test>", SMTP_PARSE_OK, "\"\xc3\xbc\"@b.test", false,
	  false, true, 0 },
	{ "<\xf0\x9f\x98\x80@b.test>", SMTP_PARSE_OK, "\xf0\x9f\x98\x80@b.test",
	  false, false, true, 0 },
	/* not a path at all */
	{ "", SMTP_PARSE_SYNTAX, NULL, false, false, false, 0 },
	{ "a@b.test", SMTP_PARSE_SYNTAX, NULL, false, false, false, 0 },
	{ " <a@b.test>", SMTP_PARSE_SYNTAX, NULL, false, false, false, 0 },
	/* bad mailboxes */
	{ "<", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@b.test", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<user@remote@local>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<user>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<.a@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a.@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a..b@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a b@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a(b)@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@d.test.>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@.d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@d..test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@-d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@d-.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@d_e.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[300.1.1.1]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[1.2.3]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[1.2.3.4.5]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[IPv6:1::2::3]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[IPv6:12345::1]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[IPv6:1:2:3:4:5:6:7]>", SMTP_PARSE_ADDR, NULL, false, false,
	  false, 0 },
	{ "<a@[IPv6:1:2:3:4:5:6:7:8:9]>", SMTP_PARSE_ADDR, NULL, false, false,
	  false, 0 },
	{ "<a@[IPv6:1:]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[tag:]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<a@[1.2.3.4>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\"abc@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\"a\x01\"@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\"a\\\x01\"@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<@a.test:>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<@a.test,b.test:u@d.test>", SMTP_PARSE_ADDR, NULL, false, false,
	  false, 0 },
	{ "<@a.test u@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<@:u@d.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	/* invalid UTF-8: stray continuation, overlong, surrogate, > U+10FFFF,
	 * truncated */
	{ "<\x80@b.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\xc0\xaf@b.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\xe0\x80\xaf@b.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\xed\xa0\x80@b.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<\xf4\x90\x80\x80@b.test>", SMTP_PARSE_ADDR, NULL, false, false,
	  false, 0 },
	{ "<\xc3@b.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<u@b\xff.test>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
	{ "<u@[1.2.3.4\xc3\xbc]>", SMTP_PARSE_ADDR, NULL, false, false, false, 0 },
};

Test(smtp_parse, paths)
{
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		struct smtp_path p;
		size_t len = strlen(c->in);
		int rc = smtp_parse_path(c->in, len, &p);

		cr_assert_eq(rc, c->rc, "case %zu \"%s\": rc %d want %d", i,
			     c->in, rc, c->rc);
		if (rc != SMTP_PARSE_OK)
			continue;
		cr_assert_eq(p.addr_len, strlen(c->addr), "case %zu \"%s\"", i,
			     c->in);
		cr_assert_eq(memcmp(c->in + p.addr_off, c->addr, p.addr_len), 0,
			     "case %zu \"%s\"", i, c->in);
		cr_assert_eq(p.null_path, c->null_path, "case %zu", i);
		cr_assert_eq(p.postmaster, c->postmaster, "case %zu", i);
		cr_assert_eq(p.utf8, c->utf8, "case %zu", i);
		cr_assert_eq(p.end, c->end ? c->end : len, "case %zu \"%s\"", i,
			     c->in);
	}
}

Test(smtp_parse, path_never_reads_past_len)
{
	/* the same bytes, cut short: must not find the '>' beyond len */
	const char *s = "<a@b.test>";
	struct smtp_path p;

	for (size_t len = 0; len < strlen(s); len++)
		cr_assert_neq(smtp_parse_path(s, len, &p), SMTP_PARSE_OK,
			      "len %zu", len);
}

Test(smtp_parse, domains)
{
	char label63[64], label64[65], longdom[300];

	memset(label63, 'a', 63);
	label63[63] = '\0';
	memset(label64, 'a', 64);
	label64[64] = '\0';
	cr_assert(smtp_domain_valid(label63, 63, false));
	cr_assert_not(smtp_domain_valid(label64, 64, false));
	/* 4 * 63 + 3 dots = 255 octets: the most there can be */
	snprintf(longdom, sizeof(longdom), "%s.%s.%s.%s", label63, label63,
		 label63, label63);
	cr_assert(smtp_domain_valid(longdom, 255, false));
	snprintf(longdom, sizeof(longdom), "%s.%s.%s.%s.b", label63, label63,
		 label63, label63);
	cr_assert_not(smtp_domain_valid(longdom, strlen(longdom), false));
	cr_assert(smtp_domain_valid("a-b.c", 5, false));
	cr_assert(smtp_domain_valid("1.2", 3, false));
	cr_assert_not(smtp_domain_valid("", 0, false));
	cr_assert_not(smtp_domain_valid("a-.b", 4, false));
	cr_assert_not(smtp_domain_valid("\xc3\xbc.de", 5, false));
	cr_assert(smtp_domain_valid("\xc3\xbc.de", 5, true));
}

Test(smtp_parse, address_literals)
{
	static const char *good[] = {
		"[0.0.0.0]", "[255.255.255.255]", "[IPv6:::]", "[IPv6:::1]",
		"[IPv6:1::]", "[IPv6:fe80::1:2]", "[IPv6:1:2:3:4:5:6:1.2.3.4]",
		"[IPv6:::1.2.3.4]", "[IPv6:ABCD:ef01::]", "[x:!]",
	};
	static const char *bad[] = {
		"[]", "[256.0.0.0]", "[1.2.3.04444]", "[1..2.3]", "[IPv6:]",
		"[IPv6::1]", "[IPv6:1:2:3:4:5:6:7:1.2.3.4]", "[IPv6:g::1]",
		"[IPv6:1:2:3:4:5:6:7:8::]", "[-x:a]", "[a.b:c]", "[x:a b]",
		"[x:[]", "1.2.3.4", "[1.2.3.4",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(smtp_addr_literal_valid(good[i], strlen(good[i])),
			  "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(smtp_addr_literal_valid(bad[i], strlen(bad[i])),
			      "%s", bad[i]);
}

Test(smtp_parse, utf8)
{
	cr_assert(smtp_utf8_valid("plain", 5));
	cr_assert(smtp_utf8_valid("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf"
				  "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 18));
	cr_assert_not(smtp_utf8_valid("\xc1\xbf", 2));     /* overlong */
	cr_assert_not(smtp_utf8_valid("\xe0\x9f\xbf", 3)); /* overlong */
	cr_assert_not(smtp_utf8_valid("\xf0\x8f\xbf\xbf", 4));
	cr_assert_not(smtp_utf8_valid("\xed\xbf\xbf", 3)); /* surrogate */
	cr_assert_not(smtp_utf8_valid("\xf5\x80\x80\x80", 4));
	cr_assert_not(smtp_utf8_valid("\xe2\x82", 2));     /* truncated */
	cr_assert_not(smtp_utf8_valid("\xe2\x28\xa1", 3));
	cr_assert_not(smtp_utf8_valid("\xfe", 1));
}

Test(smtp_parse, params)
{
	struct smtp_param pm[4];
	const char *s = " SIZE=100  BODY=8BITMIME SMTPUTF8 ";
	int n = smtp_parse_params(s, strlen(s), pm, 4);

	cr_assert_eq(n, 3);
	cr_assert_eq(pm[0].key_len, 4);
	cr_assert_eq(memcmp(pm[0].key, "SIZE", 4), 0);
	cr_assert(pm[0].has_val);
	cr_assert_eq(pm[0].val_len, 3);
	cr_assert_eq(memcmp(pm[0].val, "100", 3), 0);
	cr_assert_eq(memcmp(pm[1].val, "8BITMIME", 8), 0);
	cr_assert_not(pm[2].has_val);
	cr_assert_eq(pm[2].key_len, 8);
	cr_assert_eq(smtp_parse_params("", 0, pm, 4), 0);
	cr_assert_eq(smtp_parse_params("   ", 3, pm, 4), 0);
	cr_assert_eq(smtp_parse_params("A=\xc3\xbc", 4, pm, 4), 1);
	cr_assert_eq(smtp_parse_params("X-Y-1=a", 7, pm, 4), 1);
	/* esmtp-keyword starts with a letter or digit; values are never
	 * empty, never hold '=', controls or bad UTF-8 */
	cr_assert_eq(smtp_parse_params("-X=1", 4, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X=", 2, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X==1", 4, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X=a=b", 5, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X_Y=1", 5, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X=\x01", 3, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X=\xc3", 3, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("X=\x7f", 3, pm, 4), -1);
	cr_assert_eq(smtp_parse_params("A B C D E", 9, pm, 4), -1);
}

Test(smtp_parse, xtext)
{
	char out[64];

	cr_assert_eq(smtp_xtext_decode("abc", 3, out, sizeof(out), false), 3);
	cr_assert_str_eq(out, "abc");
	cr_assert_eq(smtp_xtext_decode("a+2Bb+3Dc", 9, out, sizeof(out), false), 5);
	cr_assert_str_eq(out, "a+b=c");
	cr_assert_eq(smtp_xtext_decode("+2b", 3, out, sizeof(out), false), 1);
	cr_assert_str_eq(out, "+");
	cr_assert_eq(smtp_xtext_decode("", 0, out, sizeof(out), false), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(smtp_xtext_decode("a+", 2, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("a+2", 3, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("+GG", 3, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("a=b", 3, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("a b", 3, out, sizeof(out), false), -1);
	/* no decoded controls: they would land in DSN header fields */
	cr_assert_eq(smtp_xtext_decode("+0D+0A", 6, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("+00", 3, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("+7F", 3, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("+20", 3, out, sizeof(out), false), 1);
	/* raw UTF-8 only when allowed */
	cr_assert_eq(smtp_xtext_decode("\xc3\xbc", 2, out, sizeof(out), false), -1);
	cr_assert_eq(smtp_xtext_decode("\xc3\xbc", 2, out, sizeof(out), true), 2);
	cr_assert_str_eq(out, "\xc3\xbc");
	cr_assert_eq(smtp_xtext_decode("\xc3", 1, out, sizeof(out), true), -1);
	/* the output must have room */
	cr_assert_eq(smtp_xtext_decode("abc", 3, out, 3, false), -1);
}

Test(smtp_parse, size_notify_bdat)
{
	uint64_t v;
	uint8_t b;
	bool last;

	cr_assert_eq(smtp_parse_size("0", 1, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(smtp_parse_size("18446744073709551615", 20, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(smtp_parse_size("99999999999999999999", 20, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(smtp_parse_size("123456789012345678901", 21, &v), -1);
	cr_assert_eq(smtp_parse_size("", 0, &v), -1);
	cr_assert_eq(smtp_parse_size("12a", 3, &v), -1);
	cr_assert_eq(smtp_parse_size("-1", 2, &v), -1);

	cr_assert_eq(smtp_parse_notify("NEVER", 5, &b), 0);
	cr_assert_eq(b, ENV_NOTIFY_NEVER);
	cr_assert_eq(smtp_parse_notify("success,Failure,DELAY", 21, &b), 0);
	cr_assert_eq(b, ENV_NOTIFY_SUCCESS | ENV_NOTIFY_FAILURE |
			ENV_NOTIFY_DELAY);
	cr_assert_eq(smtp_parse_notify("FAILURE", 7, &b), 0);
	cr_assert_eq(b, ENV_NOTIFY_FAILURE);
	cr_assert_eq(smtp_parse_notify("NEVER,SUCCESS", 13, &b), -1);
	cr_assert_eq(smtp_parse_notify("SUCCESS,SUCCESS", 15, &b), -1);
	cr_assert_eq(smtp_parse_notify("SUCCESS,", 8, &b), -1);
	cr_assert_eq(smtp_parse_notify(",SUCCESS", 8, &b), -1);
	cr_assert_eq(smtp_parse_notify("", 0, &b), -1);
	cr_assert_eq(smtp_parse_notify("SOMETIMES", 9, &b), -1);

	cr_assert_eq(smtp_parse_bdat("10", 2, &v, &last), 0);
	cr_assert_eq(v, 10);
	cr_assert_not(last);
	cr_assert_eq(smtp_parse_bdat("0 LAST", 6, &v, &last), 0);
	cr_assert_eq(v, 0);
	cr_assert(last);
	cr_assert_eq(smtp_parse_bdat("7 last", 6, &v, &last), 0);
	cr_assert(last);
	cr_assert_eq(smtp_parse_bdat("", 0, &v, &last), -1);
	cr_assert_eq(smtp_parse_bdat("x", 1, &v, &last), -1);
	cr_assert_eq(smtp_parse_bdat("1 FIRST", 7, &v, &last), -1);
	cr_assert_eq(smtp_parse_bdat("1 LAST X", 8, &v, &last), -1);
	cr_assert_eq(smtp_parse_bdat("-1", 2, &v, &last), -1);
	cr_assert_eq(smtp_parse_bdat("99999999999999999999", 20, &v, &last), -1);
}

Test(smtp_parse, word_eq)
{
	cr_assert(smtp_word_eq("mAiL", 4, "MAIL"));
	cr_assert_not(smtp_word_eq("MAI", 3, "MAIL"));
	cr_assert_not(smtp_word_eq("MAILX", 5, "MAIL"));
	cr_assert_not(smtp_word_eq("M\0IL", 4, "MAIL"));
}
