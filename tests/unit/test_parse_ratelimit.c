/*
 * test_parse_ratelimit.c: common/parse (strict config value parsers) and
 * common/ratelimit (token bucket), and the stack counter name table. No
 * DPDK EAL needed.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "common/parse.h"
#include "common/ratelimit.h"
#include "tcpstack/stack_counters.h"

/* ------------------------------------------------------------------ */
/* parse_u64 / parse_u32                                               */

struct u64_case {
	char in[32];
	uint64_t min, max;
	int rc;       /* 0, or the error sign: -1 = any negative */
	uint64_t want;
};

static struct u64_case u64_cases[] = {
	{ "0", 0, 10, 0, 0 },
	{ "10", 0, 10, 0, 10 },
	{ "7", 7, 7, 0, 7 },
	{ "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
	{ "18446744073709551616", 0, UINT64_MAX, -ERANGE, 0 },
	{ "99999999999999999999999", 0, UINT64_MAX, -ERANGE, 0 },
	{ "11", 0, 10, -ERANGE, 0 },
	{ "4", 5, 10, -ERANGE, 0 },
	{ "", 0, 10, -EINVAL, 0 },
	{ "-1", 0, UINT64_MAX, -EINVAL, 0 },
	{ "-0", 0, 10, -EINVAL, 0 },
	{ "+1", 0, 10, -EINVAL, 0 },
	{ "12x", 0, 100, -EINVAL, 0 },
	{ "x12", 0, 100, -EINVAL, 0 },
	{ " 1", 0, 10, -EINVAL, 0 },
	{ "1 ", 0, 10, -EINVAL, 0 },
	{ "0x10", 0, 100, -EINVAL, 0 },
	{ "1.5", 0, 10, -EINVAL, 0 },
	{ "1e3", 0, 10000, -EINVAL, 0 },
};

ParameterizedTestParameters(parse, u64)
{
	return cr_make_param_array(struct u64_case, u64_cases,
				   sizeof(u64_cases) / sizeof(u64_cases[0]));
}

ParameterizedTest(struct u64_case *c, parse, u64)
{
	uint64_t out = 0xdeadbeefULL;
	int rc = parse_u64(c->in, c->min, c->max, &out);

	cr_assert_eq(rc, c->rc, "parse_u64(\"%s\", %llu, %llu) = %d, want %d",
		     c->in, (unsigned long long)c->min,
		     (unsigned long long)c->max, rc, c->rc);
	if (rc == 0)
		cr_assert_eq(out, c->want, "\"%s\" -> %llu", c->in,
			     (unsigned long long)out);
	else
		cr_assert_eq(out, 0xdeadbeefULL, "output touched on error");
}

Test(parse, u64_null)
{
	uint64_t out = 3;

	cr_assert_eq(parse_u64(NULL, 0, 10, &out), -EINVAL);
	cr_assert_eq(out, 3);
}

Test(parse, u32_ranges)
{
	uint32_t out = 77;

	cr_assert_eq(parse_u32("4294967295", 0, UINT32_MAX, &out), 0);
	cr_assert_eq(out, UINT32_MAX);
	out = 77;
	cr_assert_eq(parse_u32("4294967296", 0, UINT32_MAX, &out), -ERANGE);
	cr_assert_eq(out, 77, "output touched on error");
	cr_assert_eq(parse_u32("18446744073709551615", 0, UINT32_MAX, &out),
		     -ERANGE);
	cr_assert_eq(parse_u32("0", 1, 10, &out), -ERANGE);
	cr_assert_eq(parse_u32("", 0, 10, &out), -EINVAL);
	cr_assert_eq(parse_u32("-1", 0, UINT32_MAX, &out), -EINVAL);
	cr_assert_eq(parse_u32("12x", 0, 100, &out), -EINVAL);
	cr_assert_eq(out, 77);
	cr_assert_eq(parse_u32("65535", 0, 65535, &out), 0);
	cr_assert_eq(out, 65535);
}

/* ------------------------------------------------------------------ */
/* parse_bool                                                          */

Test(parse, bool_values)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES",
					   "True" };
	static const char *const no[] = { "no", "false", "off", "0", "NO",
					  "Off" };
	static const char *const bad[] = { "", "2", "y", "n", "yess", "on ",
					   " off", "10", "enable", "-1" };
	bool b;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		cr_assert_eq(parse_bool(yes[i], &b), 0, "\"%s\"", yes[i]);
		cr_assert(b, "\"%s\" is true", yes[i]);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		cr_assert_eq(parse_bool(no[i], &b), 0, "\"%s\"", no[i]);
		cr_assert(!b, "\"%s\" is false", no[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = true;
		cr_assert_eq(parse_bool(bad[i], &b), -EINVAL, "\"%s\"", bad[i]);
		cr_assert(b, "\"%s\": output touched", bad[i]);
	}
}

/* ------------------------------------------------------------------ */
/* parse_ipv4 / parse_ipv4_prefix / format_ipv4                        */

Test(parse, ipv4_good)
{
	uint32_t a = 0;
	const uint8_t *p = (const uint8_t *)&a;

	cr_assert_eq(parse_ipv4("198.18.0.2", &a), 0);
	cr_assert(p[0] == 198 && p[1] == 18 && p[2] == 0 && p[3] == 2,
		  "not network order: %u.%u.%u.%u", p[0], p[1], p[2], p[3]);
	cr_assert_eq(parse_ipv4("0.0.0.0", &a), 0);
	cr_assert_eq(a, 0);
	cr_assert_eq(parse_ipv4("255.255.255.255", &a), 0);
	cr_assert_eq(a, 0xffffffffu);
}

Test(parse, ipv4_bad)
{
	static const char *const bad[] = {
		"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.256",
		"a.b.c.d", " 1.2.3.4", "1.2.3.4 ", "1..2.3", "1.2.3.",
		"1.2.3.4/24", "-1.2.3.4", "::1", "1.2.3.4x",
	};
	uint32_t a = 0x01020304;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_lt(parse_ipv4(bad[i], &a), 0, "\"%s\" accepted",
			     bad[i]);
		cr_assert_eq(a, 0x01020304, "\"%s\": output touched", bad[i]);
	}
}

Test(parse, ipv4_prefix_good)
{
	uint32_t a = 0;
	uint8_t len = 99;

	cr_assert_eq(parse_ipv4_prefix("198.18.0.2/24", &a, &len), 0);
	cr_assert_eq(a, htonl(0xc6120002));
	cr_assert_eq(len, 24);
	cr_assert_eq(parse_ipv4_prefix("0.0.0.0/0", &a, &len), 0);
	cr_assert_eq(a, 0);
	cr_assert_eq(len, 0);
	cr_assert_eq(parse_ipv4_prefix("10.1.2.3/32", &a, &len), 0);
	cr_assert_eq(a, htonl(0x0a010203));
	cr_assert_eq(len, 32);
}

Test(parse, ipv4_prefix_bad)
{
	static const char *const bad[] = {
		"1.2.3.4/33", "1.2.3.4/", "1.2.3/24", "1.2.3.4", "/24",
		"1.2.3.4/-1", "1.2.3.4/2x", "1.2.3.4/ 24", "1.2.3.4/24 ",
		"1.2.3.4//24", "1.2.3.4/24/1", "", "1.2.3.4/100000000000000000000",
		"300.2.3.4/8",
	};
	uint32_t a = 0x01020304;
	uint8_t len = 99;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_lt(parse_ipv4_prefix(bad[i], &a, &len), 0,
			     "\"%s\" accepted", bad[i]);
		cr_assert(a == 0x01020304 && len == 99,
			  "\"%s\": output touched", bad[i]);
	}
}

Test(parse, format_ipv4_roundtrip)
{
	static const char *const addrs[] = { "198.18.0.2", "0.0.0.0",
					     "255.255.255.255", "10.0.0.1" };
	char buf[16];
	uint32_t a;

	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		cr_assert_eq(parse_ipv4(addrs[i], &a), 0);
		cr_assert_str_eq(format_ipv4(a, buf), addrs[i]);
	}
}

/* ------------------------------------------------------------------ */
/* ratelimit                                                           */

static unsigned drain_bucket(struct ratelimit *rl, uint64_t now)
{
	unsigned n = 0;

	while (n < 100000 && ratelimit_allow(rl, now))
		n++;
	return n;
}

Test(ratelimit, burst_then_refill)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 10, 5, 1000);
	cr_assert_eq(drain_bucket(&rl, 1000), 5, "starts full");
	cr_assert(!ratelimit_allow(&rl, 1000));
	/* 10/s: one token per 100 ms */
	cr_assert(!ratelimit_allow(&rl, 1099), "token before 100 ms");
	cr_assert(ratelimit_allow(&rl, 1100), "no token after 100 ms");
	cr_assert(!ratelimit_allow(&rl, 1100));
	cr_assert_eq(drain_bucket(&rl, 1300), 2);
	/* a long pause refills only to the burst */
	cr_assert_eq(drain_bucket(&rl, 1000000), 5, "capped at the burst");
}

Test(ratelimit, partial_refills_accumulate)
{
	struct ratelimit rl;
	unsigned got = 0;

	ratelimit_init(&rl, 3, 1, 0);
	cr_assert_eq(drain_bucket(&rl, 0), 1);
	/* 3/s in 10 ms steps over 10 s: about 30 tokens, none lost to
	 * rounding */
	for (uint64_t t = 10; t <= 10000; t += 10)
		got += drain_bucket(&rl, t);
	cr_assert(got >= 29 && got <= 30, "got %u tokens, want 30", got);
}

Test(ratelimit, fast_rate)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 100000, 1000, 0);
	cr_assert_eq(drain_bucket(&rl, 0), 1000);
	cr_assert_eq(drain_bucket(&rl, 1), 100, "100 per ms at 100000/s");
}

Test(ratelimit, zero_rate_never_refills)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 0, 2, 0);
	cr_assert_eq(drain_bucket(&rl, 0), 2);
	cr_assert_eq(drain_bucket(&rl, 100000000), 0);
}

Test(ratelimit, zero_burst_never_allows)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 1000, 0, 0);
	cr_assert_eq(drain_bucket(&rl, 0), 0);
	cr_assert_eq(drain_bucket(&rl, 5000), 0);
}

Test(ratelimit, time_going_back_is_harmless)
{
	struct ratelimit rl;

	ratelimit_init(&rl, 10, 2, 5000);
	cr_assert_eq(drain_bucket(&rl, 5000), 2);
	cr_assert_eq(drain_bucket(&rl, 1000), 0, "refilled on a clock step back");
	cr_assert_eq(drain_bucket(&rl, 5100), 1);
}

Test(ratelimit, static_initializer)
{
	struct ratelimit rl = RATELIMIT_INIT(1, 3);

	cr_assert_eq(drain_bucket(&rl, 0), 3);
	cr_assert_eq(drain_bucket(&rl, 999), 0);
	cr_assert_eq(drain_bucket(&rl, 1000), 1);
}

Test(ratelimit, now_is_monotonic)
{
	uint64_t a = ratelimit_now_ms(), b = ratelimit_now_ms();

	cr_assert_geq(b, a);
	cr_assert_gt(a, 0);
}

/* ------------------------------------------------------------------ */
/* Counter names (tcpstack/stack_counters.h)                           */

Test(counters, names_roundtrip)
{
	for (unsigned i = 0; i < STACK_CTR_COUNT; i++) {
		const char *n = stack_counter_name(i);

		cr_assert_not_null(n, "counter %u has no name", i);
		cr_assert_not_null(strchr(n, '.'), "\"%s\" is not layer.name",
				   n);
		cr_assert_eq(stack_counter_index(n), (int)i, "\"%s\"", n);
	}
	cr_assert_eq(stack_counter_index("ip.no_such"), -1);
	cr_assert_eq(stack_counter_index(""), -1);
	cr_assert_eq(stack_counter_index("ip"), -1);
	cr_assert_str_eq(stack_counter_name(STACK_CTR_ip_bad_checksum),
			 "ip.bad_checksum");
}

Test(counters, get_reads_the_field)
{
	struct stack_counters c;

	memset(&c, 0, sizeof(c));
	c.icmp_ratelimited = 42;
	c.port_rx_packets = 7;
	cr_assert_eq(stack_counter_get(&c, STACK_CTR_icmp_ratelimited), 42);
	cr_assert_eq(stack_counter_get(&c, STACK_CTR_port_rx_packets), 7);
	cr_assert_eq(stack_counter_get(&c, STACK_CTR_ip_rx), 0);
}
