/*
 * test_mta_dns.c: the sans-I/O DNS stub resolver core. Every answer is
 * built here byte by byte and fed back as if from the resolver; the
 * "network" is two arrays: datagrams the module sent, results it handed
 * back. No socket is opened.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <criterion/criterion.h>

#include "mta/mta_dns.h"

#define T_A 1
#define T_CNAME 5
#define T_SOA 6
#define T_MX 15

#define AA 0x04
#define TC 0x02

/* ---- the fake network ---- */

struct sent {
	uint32_t ip;
	uint16_t port;
	size_t len;
	uint8_t b[512];
};

static struct sent sent[64];
static unsigned n_sent;
static struct mta_dns_result res[16];
static void *res_user[16];
static unsigned n_res;
static uint64_t rstate;
static struct mta_dns *d;
static struct mta_dns_conf conf;

static void on_send(void *user, uint32_t ip, uint16_t port,
		    const uint8_t *pkt, size_t len)
{
	(void)user;
	cr_assert_lt(n_sent, 64);
	cr_assert_leq(len, sizeof(sent[0].b));
	sent[n_sent].ip = ip;
	sent[n_sent].port = port;
	sent[n_sent].len = len;
	memcpy(sent[n_sent].b, pkt, len);
	n_sent++;
}

static void on_done(void *user, const struct mta_dns_result *r)
{
	cr_assert_lt(n_res, 16);
	res_user[n_res] = user;
	res[n_res++] = *r;
}

static int test_rand(void *user, void *buf, size_t len)
{
	uint8_t *p = buf;

	(void)user;
	for (size_t i = 0; i < len; i++) {
		rstate ^= rstate << 13;
		rstate ^= rstate >> 7;
		rstate ^= rstate << 17;
		p[i] = (uint8_t)rstate;
	}
	return 0;
}

static uint32_t ip(const char *s)
{
	struct in_addr a;

	cr_assert_eq(inet_pton(AF_INET, s, &a), 1);
	return a.s_addr;
}

static void make(void)
{
	cr_assert_eq(mta_dns_new(&d, &conf), 0);
}

static void setup(void)
{
	n_sent = 0;
	n_res = 0;
	rstate = 0x9e3779b97f4a7c15ull;
	mta_dns_conf_defaults(&conf);
	conf.n_resolvers = 3;
	conf.resolvers[0].ip = ip("10.0.0.1");
	conf.resolvers[1].ip = ip("10.0.0.2");
	conf.resolvers[2].ip = ip("10.0.0.3");
	conf.send = on_send;
	conf.rand = test_rand;
	make();
}

static void teardown(void)
{
	mta_dns_free(d);
	d = NULL;
}

TestSuite(mta_dns, .init = setup, .fini = teardown);

/* ---- building answers ---- */

struct pb {
	uint8_t b[2048];
	size_t n;
	uint16_t cnt[3];
};

static void pb_name(struct pb *p, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		p->b[p->n++] = (uint8_t)l;
		memcpy(p->b + p->n, name, l);
		p->n += l;
		name += l;
		if (*name == '.')
			name++;
	}
	p->b[p->n++] = 0;
}

static void pb_16(struct pb *p, uint16_t v)
{
	p->b[p->n++] = (uint8_t)(v >> 8);
	p->b[p->n++] = (uint8_t)v;
}

static void pb_32(struct pb *p, uint32_t v)
{
	pb_16(p, (uint16_t)(v >> 16));
	pb_16(p, (uint16_t)v);
}

/* A response header and question; flags: AA, TC. */
static void pb_init(struct pb *p, uint16_t id, uint8_t flags, int rcode,
		    const char *qname, uint16_t qtype)
{
	memset(p, 0, sizeof(*p));
	pb_16(p, id);
	p->b[p->n++] = (uint8_t)(0x80 | 0x01 | flags);  /* QR, RD */
	p->b[p->n++] = (uint8_t)(0x80 | rcode);         /* RA */
	pb_16(p, 1);
	p->n += 6;
	pb_name(p, qname);
	pb_16(p, qtype);
	pb_16(p, 1);
}

static void pb_rr_head(struct pb *p, int sec, const char *owner,
		       uint16_t type, uint32_t ttl)
{
	p->cnt[sec]++;
	if (owner)
		pb_name(p, owner);
	else
		pb_16(p, 0xc00c);       /* the question's name */
	pb_16(p, type);
	pb_16(p, 1);
	pb_32(p, ttl);
}

static void pb_mx(struct pb *p, const char *owner, uint32_t ttl,
		  uint16_t pref, const char *exch)
{
	size_t at;

	pb_rr_head(p, 0, owner, T_MX, ttl);
	at = p->n;
	p->n += 2;
	pb_16(p, pref);
	pb_name(p, exch);
	p->b[at] = (uint8_t)((p->n - at - 2) >> 8);
	p->b[at + 1] = (uint8_t)(p->n - at - 2);
}

static void pb_a(struct pb *p, int sec, const char *owner, uint32_t ttl,
		 const char *addr)
{
	uint32_t a = ip(addr);

	pb_rr_head(p, sec, owner, T_A, ttl);
	pb_16(p, 4);
	memcpy(p->b + p->n, &a, 4);
	p->n += 4;
}

static void pb_cname(struct pb *p, const char *owner, uint32_t ttl,
		     const char *target)
{
	size_t at;

	pb_rr_head(p, 0, owner, T_CNAME, ttl);
	at = p->n;
	p->n += 2;
	pb_name(p, target);
	p->b[at] = (uint8_t)((p->n - at - 2) >> 8);
	p->b[at + 1] = (uint8_t)(p->n - at - 2);
}

static void pb_soa(struct pb *p, const char *owner, uint32_t ttl,
		   uint32_t minimum)
{
	size_t at;

	pb_rr_head(p, 1, owner, T_SOA, ttl);
	at = p->n;
	p->n += 2;
	pb_name(p, "ns.example.org");
	pb_name(p, "hostmaster.example.org");
	pb_32(p, 1);
	pb_32(p, 3600);
	pb_32(p, 600);
	pb_32(p, 86400);
	pb_32(p, minimum);
	p->b[at] = (uint8_t)((p->n - at - 2) >> 8);
	p->b[at + 1] = (uint8_t)(p->n - at - 2);
}

static void pb_fin(struct pb *p)
{
	for (int i = 0; i < 3; i++) {
		p->b[6 + 2 * i] = (uint8_t)(p->cnt[i] >> 8);
		p->b[7 + 2 * i] = (uint8_t)p->cnt[i];
	}
}

/* The sent query's ID, name (case kept) and type. */
static uint16_t q_id(unsigned i)
{
	return (uint16_t)(sent[i].b[0] << 8 | sent[i].b[1]);
}

static void q_name(unsigned i, char *out)
{
	const uint8_t *p = sent[i].b + 12;
	size_t o = 0;

	while (*p) {
		if (o)
			out[o++] = '.';
		memcpy(out + o, p + 1, *p);
		o += *p;
		p += *p + 1;
	}
	out[o] = '\0';
}

static uint16_t q_type(unsigned i)
{
	char n[300];

	q_name(i, n);
	return (uint16_t)(sent[i].b[12 + strlen(n) + 2] << 8 |
			  sent[i].b[12 + strlen(n) + 3]);
}

/* An answer to sent query i, from the resolver it went to. */
static void reply_init(struct pb *p, unsigned i, uint8_t flags, int rcode)
{
	char n[300];

	q_name(i, n);
	pb_init(p, q_id(i), flags, rcode, n, q_type(i));
}

static void feed(unsigned i, struct pb *p, uint64_t now)
{
	pb_fin(p);
	mta_dns_input(d, now, sent[i].ip, sent[i].port, p->b, p->n);
}

static const struct mta_dns_stats *st(void)
{
	return mta_dns_stats(d);
}

static unsigned find_query(const char *name, uint16_t type)
{
	char n[300];

	for (unsigned i = 0; i < n_sent; i++) {
		q_name(i, n);
		if (!strcasecmp(n, name) && q_type(i) == type)
			return i;
	}
	cr_assert_fail("no query for %s type %u", name, type);
	return 0;
}

/* ---- resolution ---- */

Test(mta_dns, query_shape)
{
	cr_assert_eq(mta_dns_resolve_mx(d, "Example.ORG.", 0, on_done, NULL),
		     0);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(sent[0].ip, ip("10.0.0.1"));
	cr_assert_eq(sent[0].port, 53);
	cr_assert(sent[0].b[2] & 0x01, "RD set");
	cr_assert_eq(sent[0].b[2] & 0x80, 0, "a query");
	char n[300];

	q_name(0, n);
	cr_assert_str_eq(n, "Example.ORG", "case kept");
	cr_assert_eq(q_type(0), T_MX);
	cr_assert_eq(mta_dns_inflight(d), 1);
	cr_assert_eq(mta_dns_resolve_mx(d, "bad..name", 0, on_done, NULL),
		     -EINVAL);
	cr_assert_eq(mta_dns_resolve_mx(d, "[192.0.2.1]", 0, on_done, NULL),
		     -EINVAL);
	cr_assert_eq(mta_dns_resolve_mx(d, "", 0, on_done, NULL), -EINVAL);
}

static void mx_with_glue(struct pb *p, unsigned i, uint8_t flags)
{
	reply_init(p, i, flags, 0);
	pb_mx(p, NULL, 300, 10, "mx1.example.org");
	pb_mx(p, NULL, 300, 20, "mx3.example.org");
	pb_mx(p, NULL, 300, 10, "mx2.example.org");
	pb_mx(p, NULL, 300, 5, "mx0.example.org");
	pb_a(p, 2, "mx0.example.org", 300, "192.0.2.10");
	pb_a(p, 2, "mx1.example.org", 300, "192.0.2.11");
	pb_a(p, 2, "mx1.example.org", 300, "192.0.2.12");
	pb_a(p, 2, "mx2.example.org", 300, "192.0.2.20");
	pb_a(p, 2, "MX3.example.org", 300, "192.0.2.30");
}

Test(mta_dns, mx_sorted_with_additional_a)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done,
					(void *)1), 0);
	mx_with_glue(&p, 0, 0);
	feed(0, &p, 10);
	cr_assert_eq(n_sent, 1, "glue in bailiwick: no A query");
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res_user[0], (void *)1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_eq(res[0].n_hosts, 4);
	cr_assert_eq(res[0].hosts[0].pref, 5);
	cr_assert_str_eq(res[0].hosts[0].name, "mx0.example.org");
	cr_assert_eq(res[0].hosts[1].pref, 10);
	cr_assert_eq(res[0].hosts[2].pref, 10);
	cr_assert_eq(res[0].hosts[3].pref, 20);
	cr_assert_eq(res[0].hosts[3].addrs[0], ip("192.0.2.30"));
	for (unsigned i = 0; i < 4; i++)
		cr_assert(res[0].hosts[i].flags & MTA_DNS_H_GLUE);
	for (unsigned i = 1; i < 3; i++)
		if (!strcmp(res[0].hosts[i].name, "mx1.example.org"))
			cr_assert_eq(res[0].hosts[i].n_addrs, 2);
	cr_assert_eq(st()->answers, 1);
	cr_assert_eq(st()->lookups_ok, 1);
	cr_assert_eq(mta_dns_inflight(d), 0);
}

Test(mta_dns, equal_preferences_in_random_order)
{
	unsigned first_mx1 = 0, runs = 40;

	teardown();
	conf.cache_entries = 0;
	make();
	for (unsigned r = 0; r < runs; r++) {
		struct pb p;

		n_sent = n_res = 0;
		cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done,
						NULL), 0);
		mx_with_glue(&p, 0, 0);
		feed(0, &p, 1);
		cr_assert_eq(n_res, 1);
		cr_assert_eq(res[0].hosts[0].pref, 5);
		cr_assert_eq(res[0].hosts[3].pref, 20);
		first_mx1 += !strcmp(res[0].hosts[1].name, "mx1.example.org");
	}
	cr_assert(first_mx1 > 0 && first_mx1 < runs, "%u of %u", first_mx1,
		  runs);
}

Test(mta_dns, mx_without_additional_queries_a)
{
	struct pb p;
	unsigned qa, qb;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "mail.other.net");
	pb_mx(&p, NULL, 300, 20, "Mail2.example.org");
	/* out of bailiwick, not AA: ignored */
	pb_a(&p, 2, "mail.other.net", 300, "203.0.113.66");
	feed(0, &p, 5);
	cr_assert_eq(n_res, 0);
	cr_assert_eq(n_sent, 3);
	qa = find_query("mail.other.net", T_A);
	qb = find_query("mail2.example.org", T_A);
	char n[300];

	q_name(qb, n);
	cr_assert_str_eq(n, "Mail2.example.org", "exchange's case kept");
	reply_init(&p, qa, 0, 0);
	pb_a(&p, 0, NULL, 600, "198.51.100.1");
	pb_a(&p, 0, NULL, 600, "198.51.100.2");
	feed(qa, &p, 6);
	cr_assert_eq(n_res, 0);
	reply_init(&p, qb, 0, 0);
	pb_a(&p, 0, NULL, 600, "198.51.100.3");
	feed(qb, &p, 7);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_eq(res[0].n_hosts, 2);
	cr_assert_str_eq(res[0].hosts[0].name, "mail.other.net");
	cr_assert_eq(res[0].hosts[0].n_addrs, 2);
	cr_assert_eq(res[0].hosts[0].addrs[1], ip("198.51.100.2"));
	cr_assert_eq(res[0].hosts[0].flags, 0);
	cr_assert_eq(res[0].hosts[1].addrs[0], ip("198.51.100.3"));
	cr_assert_eq(st()->answers, 3);
}

Test(mta_dns, aa_answer_trusts_out_of_bailiwick_glue)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, AA, 0);
	pb_mx(&p, NULL, 300, 10, "mail.other.net");
	pb_a(&p, 2, "mail.other.net", 300, "203.0.113.66");
	feed(0, &p, 5);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].hosts[0].addrs[0], ip("203.0.113.66"));
}

Test(mta_dns, implicit_mx)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "host.example.org", 0, on_done,
					NULL), 0);
	reply_init(&p, 0, 0, 0);                 /* NOERROR, no MX */
	pb_soa(&p, "example.org", 3600, 300);
	feed(0, &p, 1);
	cr_assert_eq(n_sent, 2);
	cr_assert_eq(q_type(1), T_A);
	reply_init(&p, 1, 0, 0);
	pb_a(&p, 0, NULL, 60, "192.0.2.99");
	feed(1, &p, 2);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert(res[0].flags & MTA_DNS_R_IMPLICIT);
	cr_assert_eq(res[0].n_hosts, 1);
	cr_assert_eq(res[0].hosts[0].pref, 0);
	cr_assert_str_eq(res[0].hosts[0].name, "host.example.org");
	cr_assert_eq(res[0].hosts[0].addrs[0], ip("192.0.2.99"));
}

Test(mta_dns, no_mx_no_a_is_permanent)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	feed(0, &p, 1);
	reply_init(&p, 1, 0, 0);
	feed(1, &p, 2);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_PERM);
	cr_assert(strstr(res[0].reason, "no MX and no A"), "%s",
		  res[0].reason);
	cr_assert_eq(mta_dns_cache_used(d), 0, "NODATA without an SOA is "
		     "not cached (RFC 2308 5)");
}

Test(mta_dns, null_mx)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 0, "");
	feed(0, &p, 1);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_NULL_MX);
	cr_assert(strstr(res[0].reason, "null MX"));
	cr_assert_eq(st()->lookups_null_mx, 1);
	/* and from the cache */
	n_res = 0;
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 2, on_done, NULL),
		     0);
	mta_dns_tick(d, 3);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(res[0].status, MTA_DNS_NULL_MX);
}

Test(mta_dns, null_mx_among_others_is_dropped)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 0, "");
	pb_mx(&p, NULL, 300, 10, "mx.example.org");
	pb_a(&p, 2, "mx.example.org", 300, "192.0.2.1");
	feed(0, &p, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_eq(res[0].n_hosts, 1);
}

Test(mta_dns, nxdomain_and_negative_cache)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "nope.example.org", 0, on_done,
					NULL), 0);
	reply_init(&p, 0, 0, 3);
	pb_soa(&p, "example.org", 3600, 120);
	feed(0, &p, 1000);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_PERM);
	cr_assert(strstr(res[0].reason, "NXDOMAIN"));
	cr_assert_eq(st()->nxdomain, 1);
	/* within the SOA minimum (120 s): no query */
	n_res = 0;
	cr_assert_eq(mta_dns_resolve_mx(d, "NOPE.example.org", 100000,
					on_done, NULL), 0);
	cr_assert_eq(n_res, 0, "never from resolve_mx");
	mta_dns_tick(d, 100000);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_PERM);
	cr_assert(res[0].flags & MTA_DNS_R_CACHED);
	/* after it: asked again */
	cr_assert_eq(mta_dns_resolve_mx(d, "nope.example.org", 121001,
					on_done, NULL), 0);
	cr_assert_eq(n_sent, 2);
}

Test(mta_dns, servfail_is_temporary)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 2);
	feed(0, &p, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_TEMP);
	cr_assert(strstr(res[0].reason, "SERVFAIL"));
	cr_assert_eq(st()->servfail, 1);
	cr_assert_eq(mta_dns_cache_used(d), 0);
}

Test(mta_dns, refused_asks_the_next_resolver)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 5);
	feed(0, &p, 1);
	cr_assert_eq(n_res, 0);
	cr_assert_eq(n_sent, 2);
	cr_assert_eq(sent[1].ip, ip("10.0.0.2"));
	cr_assert_eq(st()->refused, 1);
}

Test(mta_dns, timeout_retry_rotation_then_failure)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	cr_assert_eq(mta_dns_next_deadline(d), 2000);
	mta_dns_tick(d, 1999);
	cr_assert_eq(n_sent, 1);
	mta_dns_tick(d, 2000);
	cr_assert_eq(n_sent, 2);
	cr_assert_eq(sent[1].ip, ip("10.0.0.2"));
	cr_assert_neq(q_id(1), q_id(0), "a fresh ID per try");
	mta_dns_tick(d, 4000);
	cr_assert_eq(n_sent, 3);
	cr_assert_eq(sent[2].ip, ip("10.0.0.3"));
	cr_assert_eq(st()->retries, 2);
	/* a late answer to the first try is no longer wanted */
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "mx.example.org");
	feed(0, &p, 4500);
	cr_assert_eq(st()->unmatched_id, 1);
	/* so is one from the wrong resolver */
	reply_init(&p, 2, 0, 0);
	pb_mx(&p, NULL, 300, 10, "mx.example.org");
	pb_fin(&p);
	mta_dns_input(d, 4600, ip("10.0.0.1"), 53, p.b, p.n);
	cr_assert_eq(st()->wrong_source, 1);
	cr_assert_eq(n_res, 0);
	mta_dns_tick(d, 6000);
	cr_assert_eq(n_sent, 3);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_TEMP);
	cr_assert(strstr(res[0].reason, "timed out"));
	cr_assert_eq(st()->timeouts, 1);
	cr_assert_eq(mta_dns_inflight(d), 0);
	cr_assert_eq(mta_dns_next_deadline(d), UINT64_MAX);
}

Test(mta_dns, a_timeout_leaves_other_exchanges)
{
	struct pb p;

	teardown();
	conf.retries = 0;
	make();
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "a.other.net");
	pb_mx(&p, NULL, 300, 20, "b.other.net");
	feed(0, &p, 1);
	cr_assert_eq(n_sent, 3);
	unsigned qb = find_query("b.other.net", T_A);

	reply_init(&p, qb, 0, 0);
	pb_a(&p, 0, NULL, 300, "192.0.2.2");
	feed(qb, &p, 2);
	mta_dns_tick(d, 5000);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_eq(res[0].n_hosts, 1);
	cr_assert_str_eq(res[0].hosts[0].name, "b.other.net");
}

Test(mta_dns, all_exchanges_fail_temporarily)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "a.other.net");
	pb_mx(&p, NULL, 300, 20, "b.other.net");
	feed(0, &p, 1);
	reply_init(&p, 1, 0, 3);
	feed(1, &p, 2);
	reply_init(&p, 2, 0, 2);
	feed(2, &p, 2);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_TEMP, "%s", res[0].reason);
}

Test(mta_dns, cache_hit_within_ttl_miss_after)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "mx.other.net");
	feed(0, &p, 0);
	reply_init(&p, 1, 0, 0);
	pb_a(&p, 0, NULL, 100, "192.0.2.7");
	feed(1, &p, 0);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(mta_dns_cache_used(d), 2);
	/* both within TTL */
	cr_assert_eq(mta_dns_resolve_mx(d, "EXAMPLE.org", 50000, on_done,
					NULL), 0);
	cr_assert_eq(mta_dns_next_deadline(d), 0);
	mta_dns_tick(d, 50000);
	cr_assert_eq(n_sent, 2);
	cr_assert_eq(n_res, 2);
	cr_assert_eq(res[1].status, MTA_DNS_OK);
	cr_assert(res[1].flags & MTA_DNS_R_CACHED);
	cr_assert(res[1].hosts[0].flags & MTA_DNS_H_CACHED);
	cr_assert_eq(res[1].hosts[0].addrs[0], ip("192.0.2.7"));
	/* the A record expired (100 s), the MX set not (300 s) */
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 100000, on_done,
					NULL), 0);
	cr_assert_eq(n_sent, 3);
	cr_assert_eq(q_type(2), T_A);
	/* and after 300 s, the MX set too */
	mta_dns_cancel(d, NULL);
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 300000, on_done,
					NULL), 0);
	cr_assert_eq(n_sent, 4);
	cr_assert_eq(q_type(3), T_MX);
	cr_assert_geq(st()->cache_hits, 3);
}

Test(mta_dns, ttl_floor_and_ceiling)
{
	struct pb p;

	teardown();
	conf.ttl_min_s = 60;
	conf.ttl_max_s = 120;
	make();
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 0, 10, "mx.example.org");       /* TTL 0: floor */
	pb_a(&p, 2, "mx.example.org", 999999, "192.0.2.1");
	feed(0, &p, 0);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 59000, on_done,
					NULL), 0);
	cr_assert_eq(n_sent, 1, "floor: still cached");
	mta_dns_tick(d, 59000);
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 60000, on_done,
					NULL), 0);
	cr_assert_eq(n_sent, 2, "floor reached");
}

Test(mta_dns, cache_is_bounded)
{
	struct pb p;
	char name[64];

	teardown();
	conf.cache_entries = 4;
	make();
	for (unsigned i = 0; i < 20; i++) {
		n_sent = 0;
		snprintf(name, sizeof(name), "d%u.example.org", i);
		cr_assert_eq(mta_dns_resolve_mx(d, name, i, on_done, NULL), 0);
		reply_init(&p, 0, 0, 0);
		pb_mx(&p, NULL, 300, 10, "mx.example.org");
		pb_a(&p, 2, "mx.example.org", 300, "192.0.2.1");
		feed(0, &p, i);
		n_res = 0;
		cr_assert_leq(mta_dns_cache_used(d), 4);
	}
	cr_assert_eq(st()->cache_evictions, 16);
}

Test(mta_dns, ip_literal_and_cname_exchanges)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "192.0.2.55");
	pb_mx(&p, NULL, 300, 20, "alias.other.net");
	feed(0, &p, 0);
	cr_assert_eq(n_sent, 2);
	reply_init(&p, 1, 0, 0);
	pb_cname(&p, NULL, 300, "real.other.net");
	pb_a(&p, 0, "real.other.net", 300, "192.0.2.56");
	feed(1, &p, 0);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].n_hosts, 2);
	cr_assert(res[0].hosts[0].flags & MTA_DNS_H_IP_LITERAL);
	cr_assert_eq(res[0].hosts[0].addrs[0], ip("192.0.2.55"));
	cr_assert(res[0].hosts[1].flags & MTA_DNS_H_CNAME);
	cr_assert_eq(res[0].hosts[1].addrs[0], ip("192.0.2.56"));
}

Test(mta_dns, tc_bit_is_temporary)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, TC, 0);
	feed(0, &p, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_TEMP);
	cr_assert(strstr(res[0].reason, "TC"));
	cr_assert_eq(st()->truncated_tc, 1);
}

Test(mta_dns, cancel)
{
	int a, b;

	cr_assert_eq(mta_dns_resolve_mx(d, "a.example.org", 0, on_done, &a),
		     0);
	cr_assert_eq(mta_dns_resolve_mx(d, "b.example.org", 0, on_done, &b),
		     0);
	cr_assert_eq(mta_dns_cancel(d, &a), 1);
	cr_assert_eq(mta_dns_inflight(d), 1);
	for (uint64_t t = 0; t <= 6000; t += 500)
		mta_dns_tick(d, t);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res_user[0], &b);
}

Test(mta_dns, busy)
{
	teardown();
	conf.max_lookups = 2;
	make();
	cr_assert_eq(mta_dns_resolve_mx(d, "a.org", 0, on_done, NULL), 0);
	cr_assert_eq(mta_dns_resolve_mx(d, "b.org", 0, on_done, NULL), 0);
	cr_assert_eq(mta_dns_resolve_mx(d, "c.org", 0, on_done, NULL), -EBUSY);
}

Test(mta_dns, bad_conf)
{
	struct mta_dns *x;
	struct mta_dns_conf c = conf;

	c.n_resolvers = 0;
	cr_assert_eq(mta_dns_new(&x, &c), -EINVAL);
	c = conf;
	c.send = NULL;
	cr_assert_eq(mta_dns_new(&x, &c), -EINVAL);
	c = conf;
	c.ttl_min_s = c.ttl_max_s + 1;
	cr_assert_eq(mta_dns_new(&x, &c), -EINVAL);
}

/* ---- hostile answers ---- */

Test(mta_dns, truncated_at_every_offset)
{
	struct pb p;
	const struct mta_dns_stats *s = st();

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	mx_with_glue(&p, 0, 0);
	pb_fin(&p);
	for (size_t k = 0; k < p.n; k++) {
		uint8_t *cut = malloc(k ? k : 1);

		memcpy(cut, p.b, k);
		mta_dns_input(d, 1, sent[0].ip, sent[0].port, cut, k);
		free(cut);
	}
	cr_assert_eq(n_res, 0);
	cr_assert_eq(s->short_packets, 12);
	cr_assert_eq(s->malformed, p.n - 12);
	cr_assert_eq(s->answers, 0);
	/* the query waited through it all */
	mta_dns_input(d, 1, sent[0].ip, sent[0].port, p.b, p.n);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_eq(res[0].n_hosts, 4);
}

Test(mta_dns, compression_loops)
{
	struct pb p;
	const struct mta_dns_stats *s = st();

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	/* the question name points at itself */
	memset(&p, 0, sizeof(p));
	pb_16(&p, q_id(0));
	p.b[p.n++] = 0x81;
	p.b[p.n++] = 0x80;
	pb_16(&p, 1);
	p.n += 6;
	pb_16(&p, 0xc00c);
	pb_16(&p, T_MX);
	pb_16(&p, 1);
	mta_dns_input(d, 1, sent[0].ip, sent[0].port, p.b, p.n);
	cr_assert_eq(s->malformed, 1);
	/* an MX exchange pointing at itself */
	reply_init(&p, 0, 0, 0);
	pb_rr_head(&p, 0, NULL, T_MX, 300);
	pb_16(&p, 4);
	pb_16(&p, 10);
	pb_16(&p, (uint16_t)(0xc000 | (p.n - 0)));
	/* two pointers at each other in the additional section */
	p.cnt[2]++;
	size_t at = p.n;

	pb_16(&p, (uint16_t)(0xc000 | (at + 2)));
	pb_16(&p, (uint16_t)(0xc000 | at));
	pb_16(&p, T_A);
	pb_16(&p, 1);
	pb_32(&p, 1);
	pb_16(&p, 4);
	pb_32(&p, 0);
	feed(0, &p, 1);
	cr_assert_eq(s->malformed, 2);
	cr_assert_eq(n_res, 0);
	cr_assert_eq(mta_dns_inflight(d), 1);
}

Test(mta_dns, counts_larger_than_the_packet)
{
	struct pb p;
	const struct mta_dns_stats *s = st();

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	for (int sec = 0; sec < 3; sec++) {
		mx_with_glue(&p, 0, 0);
		pb_fin(&p);
		p.b[7 + 2 * sec] = (uint8_t)(p.b[7 + 2 * sec] + 50);
		mta_dns_input(d, 1, sent[0].ip, sent[0].port, p.b, p.n);
	}
	mx_with_glue(&p, 0, 0);
	pb_fin(&p);
	p.b[6] = 0xff;
	p.b[7] = 0xff;
	mta_dns_input(d, 1, sent[0].ip, sent[0].port, p.b, p.n);
	cr_assert_eq(s->malformed, 4);
	/* a record whose RDLENGTH runs past the end */
	reply_init(&p, 0, 0, 0);
	pb_rr_head(&p, 0, NULL, T_MX, 300);
	pb_16(&p, 400);
	pb_16(&p, 10);
	pb_name(&p, "mx.example.org");
	feed(0, &p, 1);
	cr_assert_eq(s->malformed, 5);
	cr_assert_eq(n_res, 0);
}

Test(mta_dns, oversized_names)
{
	struct pb p;
	const struct mta_dns_stats *s = st();
	char lab[64], big[300];

	memset(lab, 'a', 63);
	lab[63] = '\0';
	snprintf(big, sizeof(big), "%s.%s.%s.%s", lab, lab, lab, lab);
	cr_assert_eq(mta_dns_resolve_mx(d, big, 0, on_done, NULL), -EINVAL);
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	/* an exchange of 4 x 63-byte labels, then one more by pointer */
	reply_init(&p, 0, 0, 0);
	pb_rr_head(&p, 0, NULL, T_MX, 300);
	size_t at = p.n;

	p.n += 2;
	pb_16(&p, 10);
	for (int i = 0; i < 4; i++) {
		p.b[p.n++] = 63;
		memcpy(p.b + p.n, lab, 63);
		p.n += 63;
	}
	pb_16(&p, 0xc00c);
	p.b[at] = (uint8_t)((p.n - at - 2) >> 8);
	p.b[at + 1] = (uint8_t)(p.n - at - 2);
	feed(0, &p, 1);
	/* c-ares refuses it (malformed) or we do (bad record) */
	cr_assert_eq(s->malformed + s->bad_records, 1);
	if (s->bad_records) {
		cr_assert_eq(n_res, 1);
		cr_assert_eq(res[0].status, MTA_DNS_PERM);
	}
}

Test(mta_dns, mismatches_are_counted_and_ignored)
{
	struct pb p;
	const struct mta_dns_stats *s = st();

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	/* wrong ID */
	reply_init(&p, 0, 0, 0);
	pb_fin(&p);
	p.b[0] ^= 0x55;
	mta_dns_input(d, 1, sent[0].ip, 53, p.b, p.n);
	cr_assert_eq(s->unmatched_id, 1);
	/* wrong source address, wrong source port */
	reply_init(&p, 0, 0, 0);
	pb_fin(&p);
	mta_dns_input(d, 1, ip("10.9.9.9"), 53, p.b, p.n);
	mta_dns_input(d, 1, sent[0].ip, 5353, p.b, p.n);
	cr_assert_eq(s->wrong_source, 2);
	/* wrong name, wrong type, wrong class, two questions */
	pb_init(&p, q_id(0), 0, 0, "example.net", T_MX);
	feed(0, &p, 1);
	pb_init(&p, q_id(0), 0, 0, "example.org", T_A);
	feed(0, &p, 1);
	reply_init(&p, 0, 0, 0);
	p.b[p.n - 1] = 3;                       /* CH */
	feed(0, &p, 1);
	reply_init(&p, 0, 0, 0);
	pb_fin(&p);
	p.b[5] = 2;
	mta_dns_input(d, 1, sent[0].ip, 53, p.b, p.n);
	cr_assert_eq(s->wrong_question, 4);
	/* a query, not a response */
	reply_init(&p, 0, 0, 0);
	pb_fin(&p);
	p.b[2] &= 0x7f;
	mta_dns_input(d, 1, sent[0].ip, 53, p.b, p.n);
	cr_assert_eq(s->not_response, 1);
	/* the case of the name does not matter */
	pb_init(&p, q_id(0), 0, 0, "EXAMPLE.ORG", T_MX);
	pb_mx(&p, NULL, 300, 0, "");
	feed(0, &p, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_NULL_MX);
	cr_assert_eq(s->answers, 1);
	cr_assert_eq(s->malformed, 0);
}

Test(mta_dns, wrong_class_records_are_skipped)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "mx.example.org");
	pb_a(&p, 2, "mx.example.org", 300, "192.0.2.1");
	p.b[p.n - 4 - 2 - 4 - 2] = 3;           /* the A record's class: CH */
	feed(0, &p, 1);
	cr_assert_eq(n_res, 0, "CH glue ignored");
	cr_assert_eq(n_sent, 2);
	cr_assert_eq(st()->wrong_class, 1);
}

Test(mta_dns, random_mutations_never_crash)
{
	struct pb p, m;

	teardown();
	conf.cache_entries = 8;
	make();
	for (unsigned r = 0; r < 3000; r++) {
		n_sent = 0;
		n_res = 0;
		mta_dns_cancel(d, NULL);
		cr_assert_eq(mta_dns_resolve_mx(d, "example.org", r, on_done,
						NULL), 0);
		if (n_sent == 0) {
			mta_dns_tick(d, r);
			continue;
		}
		mx_with_glue(&p, 0, r % 2 ? AA : 0);
		pb_fin(&p);
		m = p;
		for (int k = 0; k < 1 + (int)(r % 6); k++) {
			uint32_t v;

			test_rand(NULL, &v, sizeof(v));
			/* keep the ID so the mutants get parsed */
			m.b[2 + v % (m.n - 2)] = (uint8_t)(v >> 16);
		}
		mta_dns_input(d, r, sent[0].ip, sent[0].port, m.b,
			      m.n - (r % 3 == 0 ? r % m.n : 0));
		mta_dns_tick(d, r + 1000000);
	}
	cr_assert_geq(st()->malformed + st()->answers + st()->wrong_question,
		      1);
}

Test(mta_dns, getrandom_ids)
{
	teardown();
	conf.rand = NULL;
	make();
	for (unsigned i = 0; i < 8; i++) {
		char name[32];

		snprintf(name, sizeof(name), "d%u.example.org", i);
		cr_assert_eq(mta_dns_resolve_mx(d, name, 0, on_done, NULL), 0);
	}
	cr_assert_eq(n_sent, 8);
	for (unsigned i = 1; i < 8; i++)
		cr_assert_neq(q_id(i), q_id(0));
}

Test(mta_dns, cname_chain_in_the_mx_answer)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_cname(&p, NULL, 300, "mail.hoster.net");
	pb_mx(&p, "mail.hoster.net", 300, 10, "mx.hoster.net");
	feed(0, &p, 1);
	cr_assert_eq(n_sent, 2, "hoster.net is out of bailiwick: A query");
	reply_init(&p, 1, 0, 0);
	pb_a(&p, 0, NULL, 300, "192.0.2.77");
	feed(1, &p, 2);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_str_eq(res[0].hosts[0].name, "mx.hoster.net");
}

Test(mta_dns, exchange_negative_cache)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 0, on_done, NULL),
		     0);
	reply_init(&p, 0, 0, 0);
	pb_mx(&p, NULL, 300, 10, "gone.other.net");
	pb_mx(&p, NULL, 300, 20, "cname-only.other.net");
	feed(0, &p, 1);
	cr_assert_eq(n_sent, 3);
	unsigned qg = find_query("gone.other.net", T_A);
	unsigned qc = find_query("cname-only.other.net", T_A);

	reply_init(&p, qg, 0, 3);
	pb_soa(&p, "other.net", 600, 600);
	feed(qg, &p, 2);
	/* a CNAME whose target has no A: no address */
	reply_init(&p, qc, 0, 0);
	pb_cname(&p, NULL, 300, "nowhere.other.net");
	feed(qc, &p, 3);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_PERM, "%s", res[0].reason);
	cr_assert(strstr(res[0].reason, "gone.other.net"), "%s",
		  res[0].reason);
	/* again: the MX set and the NXDOMAIN from the cache, one query */
	cr_assert_eq(mta_dns_resolve_mx(d, "example.org", 10000, on_done,
					NULL), 0);
	cr_assert_eq(n_sent, 4);
	cr_assert_eq(q_type(3), T_A);
	reply_init(&p, 3, 0, 0);
	pb_a(&p, 0, NULL, 300, "192.0.2.5");
	feed(3, &p, 10001);
	cr_assert_eq(n_res, 2);
	cr_assert_eq(res[1].status, MTA_DNS_OK);
	cr_assert_eq(res[1].n_hosts, 1);
	cr_assert_str_eq(res[1].hosts[0].name, "cname-only.other.net");
}

/* ---- A records only (next hop is a host, not a mail domain) ---- */

Test(mta_dns, resolve_a_queries_only_a)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_a(d, "relay.example.org", 0, on_done,
				       NULL), 0);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(q_type(0), T_A, "no MX query for a host");
	reply_init(&p, 0, 0, 0);
	pb_a(&p, 0, NULL, 60, "192.0.2.7");
	pb_a(&p, 0, NULL, 60, "192.0.2.8");
	feed(0, &p, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_OK);
	cr_assert_eq(res[0].flags & MTA_DNS_R_IMPLICIT, 0);
	cr_assert_eq(res[0].n_hosts, 1);
	cr_assert_str_eq(res[0].hosts[0].name, "relay.example.org");
	cr_assert_eq(res[0].hosts[0].n_addrs, 2);
	cr_assert_eq(res[0].hosts[0].addrs[1], ip("192.0.2.8"));
	/* cached: no query, handed back at the next tick */
	n_res = 0;
	cr_assert_eq(mta_dns_resolve_a(d, "relay.example.org", 10, on_done,
				       NULL), 0);
	cr_assert_eq(n_sent, 1);
	cr_assert_eq(n_res, 0);
	mta_dns_tick(d, 10);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].hosts[0].addrs[0], ip("192.0.2.7"));
}

Test(mta_dns, resolve_a_nodata_is_permanent)
{
	struct pb p;

	cr_assert_eq(mta_dns_resolve_a(d, "relay.example.org", 0, on_done,
				       NULL), 0);
	reply_init(&p, 0, 0, 0);
	feed(0, &p, 1);
	cr_assert_eq(n_res, 1);
	cr_assert_eq(res[0].status, MTA_DNS_PERM);
	cr_assert(strstr(res[0].reason, "relay.example.org"), "%s",
		  res[0].reason);
	cr_assert_eq(mta_dns_resolve_a(d, "not a name!", 0, on_done, NULL),
		     -EINVAL);
}
