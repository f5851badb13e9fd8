/*
 * test_mta_out.c: outbound delivery on one worker's stack (fake port).
 *
 * The peer side is played here, frame by frame: a DNS resolver at
 * 198.18.0.1:53 answering the queries we send over UDP, and SMTP servers
 * at 192.0.2.x (off-link, through the gateway 198.18.0.1) speaking raw
 * TCP segments (a minimal handshake, immediate ACKs, no options but MSS)
 * and SMTP lines. Time moves 1 ms a step; every step runs the stack,
 * mta_out_tick and mta_out_poll, as a worker loop would.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "common/envelope.h"
#include "mta/mta_out.h"
#include "tcpstack/tcp.h"
#include "tests/unit/ut_helpers.h"

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

static struct mta_out *o;
static struct mta_job *back[8];
static unsigned n_back;

static void on_done(void *user, struct mta_job *j)
{
	cr_assert_eq(user, &n_back);
	cr_assert_lt(n_back, 8);
	back[n_back++] = j;
}

static uint32_t ip(const char *s)
{
	struct in_addr a;

	cr_assert_eq(inet_pton(AF_INET, s, &a), 1);
	return a.s_addr;
}

/* ---- frames we sent ---------------------------------------------------- */

struct seg {
	uint32_t src, dst;
	uint8_t proto;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint8_t data[UT_FRAME_MAX];
	size_t len;
};

/* Runs one worker loop iteration of 1 ms. */
static void step(void)
{
	ut_poll();
	ut_tick(ut.now + 1);
	mta_out_tick(o, ut.now);
	mta_out_poll(o);
	stack_flush(&ut.s);
}

/* Segments read while waiting for another connection's, in order. */
static struct seg stash[8];
static unsigned n_stash;

static void unread(const struct seg *s)
{
	cr_assert_lt(n_stash, 8);
	stash[n_stash++] = *s;
}

static bool take_stash(struct seg *s, uint32_t dst, uint16_t sport)
{
	for (unsigned i = 0; i < n_stash; i++) {
		if (dst && (stash[i].dst != dst || stash[i].sport != sport))
			continue;
		*s = stash[i];
		memmove(stash + i, stash + i + 1,
			(n_stash - i - 1) * sizeof(stash[0]));
		n_stash--;
		return true;
	}
	return false;
}

/* The next IPv4 frame we sent, within max_ms steps; false if none.
 * raw: not from the stash. */
static bool read_seg(struct seg *s, unsigned max_ms, bool raw)
{
	uint8_t f[UT_FRAME_MAX];
	int n;

	if (!raw && take_stash(s, 0, 0))
		return true;
	for (unsigned t = 0;; t++) {
		n = ut_take(f, sizeof(f));
		if (n >= 0)
			break;
		if (t >= max_ms)
			return false;
		step();
	}
	cr_assert_geq(n, UT_L4_OFF);
	cr_assert_eq(ut_get16(f + 12), 0x0800, "not IPv4");
	{
		const uint8_t *iph = f + UT_IP_OFF;
		unsigned ihl = (iph[0] & 15u) * 4u, tot = ut_get16(iph + 2);
		const uint8_t *l4 = iph + ihl;

		memset(s, 0, sizeof(*s));
		s->src = ut_get32(iph + 12);
		s->dst = ut_get32(iph + 16);
		s->proto = iph[9];
		s->sport = ut_get16(l4);
		s->dport = ut_get16(l4 + 2);
		if (s->proto == IPPROTO_TCP) {
			unsigned doff = (l4[12] >> 4) * 4u;

			s->seq = rte_be_to_cpu_32(ut_get32(l4 + 4));
			s->ack = rte_be_to_cpu_32(ut_get32(l4 + 8));
			s->flags = l4[13];
			s->len = tot - ihl - doff;
			memcpy(s->data, l4 + doff, s->len);
		} else if (s->proto == IPPROTO_UDP) {
			s->len = ut_get16(l4 + 4) - 8u;
			memcpy(s->data, l4 + 8, s->len);
		}
	}
	return true;
}

static bool next_seg(struct seg *s, unsigned max_ms)
{
	return read_seg(s, max_ms, false);
}

/* ---- building what the peers send ------------------------------------- */

static uint16_t l4_cksum(uint32_t src, uint8_t proto, const uint8_t *l4,
			 size_t len)
{
	uint8_t ph[12];
	uint32_t sum;

	ut_put32(ph, src);
	ut_put32(ph + 4, UT_OUR_IP);
	ph[8] = 0;
	ph[9] = proto;
	ut_put16(ph + 10, (uint16_t)len);
	sum = (uint16_t)~ut_cksum(ph, 12);
	sum += (uint16_t)~ut_cksum(l4, len);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void inject_l4(uint32_t src, uint8_t proto, const uint8_t *l4,
		      size_t len)
{
	uint8_t f[UT_FRAME_MAX];
	struct ut_ip_spec sp;

	ut_ip_spec_default(&sp);
	sp.proto = proto;
	sp.src = src;
	ut_inject(f, ut_build_ipv4(f, &sp, l4, len));
}

static void send_udp(uint32_t src, uint16_t sport, uint16_t dport,
		     const uint8_t *data, size_t len)
{
	uint8_t u[UT_FRAME_MAX];
	uint16_t c;

	ut_put16(u, sport);
	ut_put16(u + 2, dport);
	ut_put16(u + 4, (uint16_t)(8 + len));
	ut_put16(u + 6, 0);
	memcpy(u + 8, data, len);
	c = l4_cksum(src, IPPROTO_UDP, u, 8 + len);
	ut_put16(u + 6, c == 0 ? 0xffff : c);
	inject_l4(src, IPPROTO_UDP, u, 8 + len);
}

/* ---- an SMTP server as raw TCP ------------------------------------------ */

struct srv {
	uint32_t ip;
	uint16_t port, cport;
	uint32_t irs, rcv_nxt;  /* the client's */
	uint32_t snd_nxt;       /* ours */
	char rx[16384];
	size_t rx_len, rx_seen;
	bool fin, rst;
};

static void srv_seg(struct srv *s, uint8_t flags, uint32_t seq, uint32_t ack,
		    const void *data, size_t len, bool mss)
{
	uint8_t t[UT_FRAME_MAX];
	size_t hl = mss ? 24 : 20;

	memset(t, 0, hl);
	ut_put16(t, s->port);
	ut_put16(t + 2, s->cport);
	ut_put32(t + 4, rte_cpu_to_be_32(seq));
	ut_put32(t + 8, rte_cpu_to_be_32(ack));
	t[12] = (uint8_t)((hl / 4) << 4);
	t[13] = flags;
	ut_put16(t + 14, 65535);
	if (mss) {
		t[20] = 2;
		t[21] = 4;
		ut_put16(t + 22, 1460);
	}
	if (len)
		memcpy(t + hl, data, len);
	ut_put16(t + 16, l4_cksum(s->ip, IPPROTO_TCP, t, hl + len));
	inject_l4(s->ip, IPPROTO_TCP, t, hl + len);
}

/* Our SYN to ip:port comes within max_ms. */
static void expect_syn(struct srv *s, const char *addr, uint16_t port,
		       unsigned max_ms)
{
	struct seg g;

	memset(s, 0, sizeof(*s));
	/* what an earlier connection still sends (ACK, FIN) is skipped */
	do
		cr_assert(next_seg(&g, max_ms), "no SYN to %s", addr);
	while (g.proto == IPPROTO_TCP && !(g.flags & (F_SYN | F_RST)));
	cr_assert_eq(g.proto, IPPROTO_TCP);
	cr_assert_eq(g.flags & (F_SYN | F_ACK), F_SYN, "flags %#x", g.flags);
	cr_assert_eq(g.dst, ip(addr), "SYN to the wrong address");
	cr_assert_eq(g.dport, port);
	s->ip = g.dst;
	s->port = port;
	s->cport = g.sport;
	s->irs = g.seq;
	s->rcv_nxt = g.seq + 1;
	s->snd_nxt = 70000;
}

static void srv_accept(struct srv *s)
{
	srv_seg(s, F_SYN | F_ACK, s->snd_nxt, s->rcv_nxt, NULL, 0, true);
	s->snd_nxt++;
	step();
}

static void srv_refuse(struct srv *s)
{
	srv_seg(s, F_RST | F_ACK, 0, s->rcv_nxt, NULL, 0, false);
	step();
}

static void srv_say(struct srv *s, const char *text)
{
	size_t n = strlen(text);

	srv_seg(s, F_PSH | F_ACK, s->snd_nxt, s->rcv_nxt, text, n, false);
	s->snd_nxt += (uint32_t)n;
	step();
}

/* Reads what the client sends on s until needle shows among the bytes
 * not seen yet (or a FIN/RST); ACKs every segment. */
static bool srv_read(struct srv *s, const char *needle, unsigned max_ms)
{
	struct seg g;

	for (;;) {
		char *hit;

		s->rx[s->rx_len] = '\0';
		hit = strstr(s->rx + s->rx_seen, needle);
		if (hit) {
			s->rx_seen = (size_t)(hit - s->rx) + strlen(needle);
			return true;
		}
		if (s->fin || s->rst)
			return false;
		if (!take_stash(&g, s->ip, s->cport) &&
		    !read_seg(&g, max_ms, true))
			return false;
		if (g.proto != IPPROTO_TCP || g.sport != s->cport ||
		    g.dst != s->ip) {
			unread(&g);
			if (n_stash > 4)
				return false;
			continue;
		}
		if (g.flags & F_RST) {
			s->rst = true;
			continue;
		}
		if (g.seq == s->rcv_nxt && g.len) {
			if (s->rx_len + g.len >= sizeof(s->rx)) {
				/* keep the last 4 KiB of a long stream */
				size_t cut = s->rx_len - 4096;

				memmove(s->rx, s->rx + cut, 4096);
				s->rx_len = 4096;
				s->rx_seen = s->rx_seen > cut ?
					     s->rx_seen - cut : 0;
			}
			memcpy(s->rx + s->rx_len, g.data, g.len);
			s->rx_len += g.len;
			s->rcv_nxt += (uint32_t)g.len;
		}
		if ((g.flags & F_FIN) && g.seq + g.len == s->rcv_nxt) {
			s->rcv_nxt++;
			s->fin = true;
		}
		if (g.len || (g.flags & F_FIN))
			srv_seg(s, F_ACK, s->snd_nxt, s->rcv_nxt, NULL, 0,
				false);
	}
}

#define EXPECT(s, needle)                                                     \
	cr_assert(srv_read((s), (needle), 3000), "client never sent %s; "    \
		  "got: %s", (needle), (s)->rx)

/* ---- a DNS resolver ------------------------------------------------------ */

struct dq {
	uint16_t sport;
	uint8_t q[512];
	size_t qlen;
};

static void expect_dns(struct dq *q, const char *qname, uint16_t qtype)
{
	struct seg g;
	char name[300];
	size_t p = 12, n = 0;

	cr_assert(next_seg(&g, 100), "no DNS query");
	cr_assert_eq(g.proto, IPPROTO_UDP);
	cr_assert_eq(g.dst, UT_PEER_IP);
	cr_assert_eq(g.dport, 53);
	cr_assert_geq(g.sport, STACK_EPH_LO);
	while (g.data[p]) {
		if (n)
			name[n++] = '.';
		memcpy(name + n, g.data + p + 1, g.data[p]);
		n += g.data[p];
		p += g.data[p] + 1u;
	}
	name[n] = '\0';
	cr_assert_str_eq(name, qname);
	cr_assert_eq(ut_get16(g.data + p + 1), qtype);
	q->sport = g.sport;
	q->qlen = p + 5;
	memcpy(q->q, g.data, q->qlen);
}

struct ans {
	uint8_t b[1024];
	size_t n;
};

static void ans_init(struct ans *a, const struct dq *q, int rcode,
		     uint16_t an, uint16_t ar)
{
	memcpy(a->b, q->q, q->qlen);
	a->n = q->qlen;
	a->b[2] = 0x85; /* QR, AA, RD */
	a->b[3] = (uint8_t)(0x80 | rcode);
	ut_put16(a->b + 6, an);
	ut_put16(a->b + 8, 0);
	ut_put16(a->b + 10, ar);
}

static void ans_name(struct ans *a, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		a->b[a->n++] = (uint8_t)l;
		memcpy(a->b + a->n, name, l);
		a->n += l;
		name += l + (dot ? 1 : 0);
	}
	a->b[a->n++] = 0;
}

static void ans_rr(struct ans *a, const char *owner, uint16_t type,
		   uint16_t rdlen)
{
	if (owner == NULL) {
		a->b[a->n++] = 0xc0; /* the question's name */
		a->b[a->n++] = 12;
	} else {
		ans_name(a, owner);
	}
	ut_put16(a->b + a->n, type);
	ut_put16(a->b + a->n + 2, 1);
	ut_put32(a->b + a->n + 4, rte_cpu_to_be_32(300));
	ut_put16(a->b + a->n + 8, rdlen);
	a->n += 10;
}

static void ans_mx(struct ans *a, uint16_t pref, const char *exch)
{
	size_t at;

	ans_rr(a, NULL, 15, 0);
	at = a->n;
	ut_put16(a->b + a->n, pref);
	a->n += 2;
	ans_name(a, exch);
	ut_put16(a->b + at - 2, (uint16_t)(a->n - at));
}

static void ans_a(struct ans *a, const char *owner, const char *addr)
{
	ans_rr(a, owner, 1, 4);
	ut_put32(a->b + a->n, ip(addr));
	a->n += 4;
}

static void dns_reply(const struct dq *q, const struct ans *a)
{
	send_udp(UT_PEER_IP, 53, q->sport, a->b, a->n);
	step();
}

/* ---- jobs ----------------------------------------------------------------- */

struct tjob {
	struct mta_job j;
	struct mta_job_msg m;
	struct mta_job_rcpt r[2];
	struct envelope *env;
};

static void tjob_init(struct tjob *t, enum mta_nexthop_kind kind,
		      const char *host)
{
	static const char body[] = "Subject: t\r\n\r\nhello\r\n";

	memset(t, 0, sizeof(*t));
	t->env = envelope_new();
	cr_assert_not_null(t->env);
	memcpy(t->env->qid, "TESTQID0000001", ENV_QID_LEN + 1);
	cr_assert_eq(envelope_set_str(&t->env->mail_from, "s@example.net",
				      SIZE_MAX), 0);
	cr_assert_eq(envelope_add_rcpt(t->env, "a@example.org", "", 0), 0);
	cr_assert_eq(envelope_add_rcpt(t->env, "b@example.org", "", 0), 0);
	cr_assert_eq(envelope_body_append(t->env, body, sizeof(body) - 1), 0);
	t->j.nh.kind = kind;
	snprintf(t->j.nh.host, sizeof(t->j.nh.host), "%s", host);
	t->j.nh.port = 25;
	t->j.nmsg = 1;
	t->j.msg = &t->m;
	t->m.env = t->env;
	t->m.nrcpt = 2;
	t->m.rcpt = t->r;
	t->r[0].idx = 0;
	t->r[1].idx = 1;
}

static void tjob_fini(struct tjob *t)
{
	envelope_free(t->env);
}

static void start(struct mta_out_conf *c)
{
	struct mta_out_conf def;

	if (c == NULL) {
		mta_out_conf_defaults(&def);
		def.helo_name = "mx.test.example";
		def.n_resolvers = 1;
		def.resolvers[0].ip = UT_PEER_IP;
		def.resolvers[0].port = 53;
		c = &def;
	}
	ut_learn_peer();
	n_back = 0;
	n_stash = 0;
	o = mta_out_new(&ut.s, 0, c, on_done, &n_back);
	cr_assert_not_null(o);
}

static void finish(void)
{
	mta_out_free(o);
	o = NULL;
	ut_poll();
	ut_drain_tx();
}

/* Runs steps until n_back reaches n (max_ms at most). */
static void wait_back(unsigned n, unsigned max_ms)
{
	for (unsigned t = 0; t < max_ms && n_back < n; t++)
		step();
	cr_assert_eq(n_back, n, "jobs back: %u, want %u", n_back, n);
}

/* Greeting, EHLO: the session is ready for MAIL. */
static void srv_greet(struct srv *s)
{
	srv_accept(s);
	srv_say(s, "220 mx1.example.org ESMTP\r\n");
	EXPECT(s, "EHLO mx.test.example\r\n");
	srv_say(s, "250-mx1.example.org\r\n250 ENHANCEDSTATUSCODES\r\n");
}

/* One message, a@ accepted, b@ refused, the data taken with the
 * final reply done. */
static void srv_transaction_done(struct srv *s, const char *done)
{
	EXPECT(s, "MAIL FROM:<s@example.net>");
	srv_say(s, "250 2.1.0 ok\r\n");
	EXPECT(s, "RCPT TO:<a@example.org>");
	srv_say(s, "250 2.1.5 ok\r\n");
	EXPECT(s, "RCPT TO:<b@example.org>");
	srv_say(s, "550 5.1.1 no such user\r\n");
	EXPECT(s, "DATA\r\n");
	srv_say(s, "354 go ahead\r\n");
	EXPECT(s, "hello\r\n.\r\n");
	srv_say(s, done);
}

static void srv_transaction(struct srv *s)
{
	srv_transaction_done(s, "250 2.0.0 queued as X\r\n");
}

static void check_250_550(const struct tjob *t)
{
	cr_assert_eq(t->r[0].status, SMTP_RCPT_DELIVERED);
	cr_assert_eq(t->r[0].reply.code, 250);
	cr_assert_eq(t->r[1].status, SMTP_RCPT_BOUNCED);
	cr_assert_eq(t->r[1].reply.code, 550);
	cr_assert_str_eq(t->r[1].reply.enh, "5.1.1");
	cr_assert(!t->r[1].reply.local);
	cr_assert(t->m.attempted);
	cr_assert(!t->j.host_failed);
	cr_assert(!t->j.perm_failed);
}

/* The MX query for example.org answered: mx1 (pref 10, 192.0.2.10) and
 * mx2 (pref 20, 192.0.2.20), listed mx2 first where mx2_first. */
static void answer_two_mx(bool mx2_first)
{
	struct dq q;
	struct ans a;

	expect_dns(&q, "example.org", 15);
	ans_init(&a, &q, 0, 2, 2);
	if (mx2_first) {
		ans_mx(&a, 20, "mx2.example.org");
		ans_mx(&a, 10, "mx1.example.org");
	} else {
		ans_mx(&a, 10, "mx1.example.org");
		ans_mx(&a, 20, "mx2.example.org");
	}
	ans_a(&a, "mx1.example.org", "192.0.2.10");
	ans_a(&a, "mx2.example.org", "192.0.2.20");
	dns_reply(&q, &a);
}

/* A default mta_out, a job for example.org, its MX query answered with
 * mx1 and mx2, in order: s is the connection to mx1 (192.0.2.10). */
static void start_two_mx(struct tjob *t, struct srv *s)
{
	start(NULL);
	tjob_init(t, MTA_NH_MX, "example.org");
	mta_out_submit(o, &t->j);
	answer_two_mx(false);
	expect_syn(s, "192.0.2.10", 25, 100);
}

/* A connection to addr taken (within syn_ms), the session ready and one
 * transaction done: t is the n-th job back, a@ delivered, b@ bounced. */
static void srv_deliver(struct srv *s, const char *addr, unsigned syn_ms,
			const struct tjob *t, unsigned n)
{
	expect_syn(s, addr, 25, syn_ms);
	srv_greet(s);
	srv_transaction(s);
	wait_back(n, 100);
	check_250_550(t);
}

/* One job delivered; the connection stays in the idle cache. */
static void deliver_first(struct tjob *t, struct srv *s)
{
	tjob_init(t, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t->j);
	srv_deliver(s, "192.0.2.10", 10, t, 1);
}

/* ---- the cases -------------------------------------------------------------- */

UT_TEST(mta_out, mx_query_then_first_mx_refused_then_second, ut_setup)
{
	struct tjob t;
	struct srv s;
	struct mta_out_stats st;

	start(NULL);
	tjob_init(&t, MTA_NH_MX, "example.org");
	mta_out_submit(o, &t.j);
	cr_assert_eq(n_back, 0);
	answer_two_mx(true);
	expect_syn(&s, "192.0.2.10", 25, 100);
	srv_refuse(&s);
	expect_syn(&s, "192.0.2.20", 25, 100);
	srv_refuse(&s);
	wait_back(1, 100);
	cr_assert(t.j.host_failed);
	cr_assert(strstr(t.j.why, "connect to mx1.example.org[192.0.2.10]:25: "
			 "refused"), "%s", t.j.why);
	cr_assert(strstr(t.j.why, "mx2.example.org[192.0.2.20]:25: refused"),
		  "%s", t.j.why);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(t.r[i].status, SMTP_RCPT_DEFERRED);
		cr_assert_eq(t.r[i].reply.code, 451);
		cr_assert_str_eq(t.r[i].reply.enh, "4.4.1");
		cr_assert(t.r[i].reply.local);
		cr_assert(strstr(t.r[i].reply.text, "refused"));
	}
	cr_assert(!t.m.attempted);
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.connects, 2);
	cr_assert_eq(st.connect_failures, 2);
	cr_assert_eq(st.dns_lookups, 1);
	cr_assert_eq(st.rcpt_deferred, 2);
	finish();
	tjob_fini(&t);
}

UT_TEST(mta_out, delivers_250_550_and_reuses_the_connection, ut_setup)
{
	struct tjob t, t2;
	struct srv s;
	struct mta_out_stats st;
	struct seg g;

	start(NULL);
	deliver_first(&t, &s);
	cr_assert_str_eq(t.j.remote_mta, "192.0.2.10[192.0.2.10]:25");
	cr_assert_eq(t.j.remote_ip, ip("192.0.2.10"));
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.conns_live, 1, "kept in the cache");
	cr_assert_eq(st.rcpt_delivered, 1);
	cr_assert_eq(st.rcpt_bounced, 1);

	/* the same next hop within conn_cache_ms: no DNS, no SYN */
	tjob_init(&t2, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t2.j);
	srv_transaction_done(&s, "250 2.0.0 queued as Y\r\n");
	wait_back(2, 100);
	check_250_550(&t2);
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.conns_reused, 1);
	cr_assert_eq(st.connects, 1);
	cr_assert_eq(st.messages, 2);

	/* idle past conn_cache_ms (2 s): QUIT, 221, both sides close */
	EXPECT(&s, "QUIT\r\n");
	srv_say(&s, "221 bye\r\n");
	cr_assert(srv_read(&s, "\xff", 200) == false && s.fin,
		  "no FIN after 221");
	srv_seg(&s, F_FIN | F_ACK, s.snd_nxt, s.rcv_nxt, NULL, 0, false);
	s.snd_nxt++;
	step();
	while (next_seg(&g, 5))
		;
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.conns_live, 0);
	finish();
	tjob_fini(&t);
	tjob_fini(&t2);
}

UT_TEST(mta_out, connect_timeout_then_deferred, ut_setup)
{
	struct mta_out_conf c;
	struct tjob t;
	struct srv s;

	mta_out_conf_defaults(&c);
	c.helo_name = "mx.test.example";
	c.connect_timeout_ms = 500;
	start(&c);
	tjob_init(&t, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t.j);
	expect_syn(&s, "192.0.2.10", 25, 10);
	for (int i = 0; i < 480; i++)
		step();
	cr_assert_eq(n_back, 0);
	wait_back(1, 40);
	cr_assert(t.j.host_failed);
	cr_assert(strstr(t.j.why, "192.0.2.10[192.0.2.10]:25: timed out"),
		  "%s", t.j.why);
	cr_assert_eq(t.r[0].status, SMTP_RCPT_DEFERRED);
	cr_assert_str_eq(t.r[0].reply.enh, "4.4.1");
	cr_assert_eq(tcp_live_conns(&ut.s), 0, "aborted");
	finish();
	tjob_fini(&t);
}

UT_TEST(mta_out, greeting_554_moves_to_the_next_mx, ut_setup)
{
	struct tjob t;
	struct srv s;

	start_two_mx(&t, &s);
	srv_accept(&s);
	srv_say(&s, "554 5.7.1 go away\r\n");
	EXPECT(&s, "QUIT\r\n");
	srv_say(&s, "221 bye\r\n");
	srv_deliver(&s, "192.0.2.20", 100, &t, 1);
	cr_assert(strstr(t.j.why, "554 5.7.1 go away"), "%s", t.j.why);
	cr_assert_str_eq(t.j.remote_mta, "mx2.example.org[192.0.2.20]:25");
	finish();
	tjob_fini(&t);
}

UT_TEST(mta_out, null_mx_and_nxdomain_bounce, ut_setup)
{
	struct tjob t, t2;
	struct dq q;
	struct ans a;

	start(NULL);
	tjob_init(&t, MTA_NH_MX, "example.org");
	mta_out_submit(o, &t.j);
	expect_dns(&q, "example.org", 15);
	ans_init(&a, &q, 0, 1, 0);
	ans_mx(&a, 0, "");
	dns_reply(&q, &a);
	wait_back(1, 10);
	cr_assert(t.j.perm_failed);
	cr_assert_eq(t.r[0].status, SMTP_RCPT_BOUNCED);
	cr_assert_eq(t.r[0].reply.code, 556);
	cr_assert_str_eq(t.r[1].reply.enh, "5.1.10");

	tjob_init(&t2, MTA_NH_MX, "nope.example.org");
	mta_out_submit(o, &t2.j);
	expect_dns(&q, "nope.example.org", 15);
	ans_init(&a, &q, 3, 0, 0);
	dns_reply(&q, &a);
	wait_back(2, 10);
	cr_assert(t2.j.perm_failed);
	cr_assert_eq(t2.r[1].status, SMTP_RCPT_BOUNCED);
	cr_assert_eq(t2.r[1].reply.code, 550);
	cr_assert_str_eq(t2.r[1].reply.enh, "5.1.2");
	finish();
	tjob_fini(&t);
	tjob_fini(&t2);
}

UT_TEST(mta_out, host_next_hop_asks_for_a_only, ut_setup)
{
	struct tjob t;
	struct dq q;
	struct ans a;
	struct srv s;

	start(NULL);
	tjob_init(&t, MTA_NH_HOST, "relay.example.org");
	mta_out_submit(o, &t.j);
	expect_dns(&q, "relay.example.org", 1);
	ans_init(&a, &q, 0, 1, 0);
	ans_a(&a, NULL, "192.0.2.30");
	dns_reply(&q, &a);
	expect_syn(&s, "192.0.2.30", 25, 100);
	srv_refuse(&s);
	wait_back(1, 10);
	cr_assert(t.j.host_failed);
	finish();
	tjob_fini(&t);
}

UT_TEST(mta_out, no_resolver_and_dns_timeout_defer, ut_setup)
{
	struct mta_out_conf c;
	struct tjob t;
	struct dq q;

	mta_out_conf_defaults(&c);
	c.helo_name = "mx.test.example";
	start(&c);
	tjob_init(&t, MTA_NH_MX, "example.org");
	mta_out_submit(o, &t.j);
	cr_assert_eq(n_back, 0, "never inside submit");
	wait_back(1, 5);
	cr_assert(t.j.host_failed);
	cr_assert_eq(t.r[0].status, SMTP_RCPT_DEFERRED);
	cr_assert(strstr(t.r[0].reply.text, "no DNS resolver"));
	finish();
	tjob_fini(&t);

	c.n_resolvers = 1;
	c.resolvers[0].ip = UT_PEER_IP;
	c.resolvers[0].port = 53;
	c.dns_timeout_ms = 100;
	c.dns_retries = 1;
	n_back = 0;
	o = mta_out_new(&ut.s, 0, &c, on_done, &n_back);
	cr_assert_not_null(o);
	tjob_init(&t, MTA_NH_MX, "example.org");
	mta_out_submit(o, &t.j);
	expect_dns(&q, "example.org", 15);
	expect_dns(&q, "example.org", 15); /* the retry */
	wait_back(1, 300);
	cr_assert(t.j.host_failed);
	cr_assert_eq(t.r[1].status, SMTP_RCPT_DEFERRED);
	cr_assert_str_eq(t.r[1].reply.enh, "4.4.3");
	finish();
	tjob_fini(&t);
}

/* RFC 5452: each query, retries too, from a port of its own; a datagram
 * from anyone but the resolver leaves the port open for the real answer,
 * which closes it; an expired try's port is closed too. */
UT_TEST(mta_out, each_dns_query_from_its_own_port, ut_setup)
{
	struct mta_out_conf c;
	struct tjob t;
	struct srv s;
	struct dq q1, q2;
	struct ans a;
	uint64_t np;

	mta_out_conf_defaults(&c);
	c.helo_name = "mx.test.example";
	c.n_resolvers = 1;
	c.resolvers[0].ip = UT_PEER_IP;
	c.resolvers[0].port = 53;
	c.dns_timeout_ms = 100;
	c.dns_retries = 2;
	start(&c);
	tjob_init(&t, MTA_NH_MX, "example.org");
	mta_out_submit(o, &t.j);
	expect_dns(&q1, "example.org", 15);
	expect_dns(&q2, "example.org", 15); /* the retry, 100 ms on */
	cr_assert_neq(q1.sport, q2.sport, "the retry left from port %u too",
		      q1.sport);
	np = ut_ctr("udp.no_port");
	/* an answer to the first try: its port is closed */
	ans_init(&a, &q1, 0, 1, 1);
	ans_mx(&a, 10, "mx1.example.org");
	ans_a(&a, "mx1.example.org", "192.0.2.10");
	dns_reply(&q1, &a);
	cr_assert_eq(ut_ctr("udp.no_port"), np + 1);
	ut_drain_tx(); /* our ICMP port unreachable */
	/* the same answer to the retry's port from another source port:
	 * ignored, and the port stays open */
	ans_init(&a, &q2, 0, 1, 1);
	ans_mx(&a, 10, "mx1.example.org");
	ans_a(&a, "mx1.example.org", "192.0.2.10");
	send_udp(UT_PEER_IP, 5353, q2.sport, a.b, a.n);
	step();
	cr_assert_eq(ut_ctr("udp.no_port"), np + 1);
	/* the resolver's: taken, and the port closes behind it */
	dns_reply(&q2, &a);
	expect_syn(&s, "192.0.2.10", 25, 100);
	dns_reply(&q2, &a);
	cr_assert_eq(ut_ctr("udp.no_port"), np + 2);
	ut_drain_tx();
	srv_greet(&s);
	srv_transaction(&s);
	wait_back(1, 100);
	check_250_550(&t);
	finish();
	tjob_fini(&t);
}

UT_TEST(mta_out, lost_mid_message_goes_to_the_next_mx, ut_setup)
{
	struct tjob t;
	struct srv s;

	start_two_mx(&t, &s);
	srv_greet(&s);
	EXPECT(&s, "MAIL FROM:<s@example.net>");
	srv_say(&s, "250 2.1.0 ok\r\n");
	EXPECT(&s, "RCPT TO:<a@example.org>");
	/* reset before the reply: a@ deferred locally, tried again */
	srv_seg(&s, F_RST | F_ACK, s.snd_nxt, s.rcv_nxt, NULL, 0, false);
	step();
	srv_deliver(&s, "192.0.2.20", 100, &t, 1);
	finish();
	tjob_fini(&t);
}

UT_TEST(mta_out, stop_defers_a_job_in_flight, ut_setup)
{
	struct tjob t;
	struct srv s;

	start(NULL);
	tjob_init(&t, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t.j);
	expect_syn(&s, "192.0.2.10", 25, 10);
	srv_greet(&s);
	EXPECT(&s, "MAIL FROM:<s@example.net>");
	mta_out_stop(o);
	cr_assert_eq(n_back, 1);
	ut_tick(ut.now + 1);
	cr_assert_eq(t.r[0].status, SMTP_RCPT_DEFERRED);
	cr_assert_str_eq(t.r[0].reply.enh, "4.3.2");
	cr_assert_eq(tcp_live_conns(&ut.s), 0, "aborted");
	finish();
	cr_assert_eq(n_back, 1, "done() once");
	tjob_fini(&t);
}

UT_TEST(mta_out, cached_connection_closed_by_the_server_is_dropped, ut_setup)
{
	struct tjob t, t2;
	struct srv s, s2;
	struct mta_out_stats st;

	start(NULL);
	deliver_first(&t, &s);
	srv_seg(&s, F_FIN | F_ACK, s.snd_nxt, s.rcv_nxt, NULL, 0, false);
	s.snd_nxt++;
	step();
	step();
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.conns_live, 0, "dropped from the cache");
	tjob_init(&t2, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t2.j);
	expect_syn(&s2, "192.0.2.10", 25, 10);
	cr_assert_neq(s2.cport, s.cport);
	srv_greet(&s2);
	srv_transaction(&s2);
	wait_back(2, 100);
	check_250_550(&t2);
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.conns_reused, 0);
	cr_assert_eq(st.connects, 2);
	finish();
	tjob_fini(&t);
	tjob_fini(&t2);
}

UT_TEST(mta_out, reuse_reset_before_anything_falls_back_to_connect, ut_setup)
{
	struct tjob t, t2;
	struct srv s, s2;
	struct mta_out_stats st;

	start(NULL);
	deliver_first(&t, &s);
	tjob_init(&t2, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t2.j);
	EXPECT(&s, "MAIL FROM:<s@example.net>");
	srv_seg(&s, F_RST | F_ACK, s.snd_nxt, s.rcv_nxt, NULL, 0, false);
	step();
	srv_deliver(&s2, "192.0.2.10", 10, &t2, 2);
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.conns_reused, 1);
	cr_assert_eq(st.connects, 2);
	cr_assert_eq(st.messages, 3, "sent twice for the second job");
	finish();
	tjob_fini(&t);
	tjob_fini(&t2);
}

UT_TEST(mta_out, max_conns_keeps_jobs_waiting_in_order, ut_setup)
{
	struct mta_out_conf c;
	struct tjob a, b;
	struct srv s;
	struct mta_out_stats st;

	mta_out_conf_defaults(&c);
	c.helo_name = "mx.test.example";
	c.max_conns = 1;
	c.conn_cache_ms = 0;
	start(&c);
	tjob_init(&a, MTA_NH_IP, "192.0.2.10");
	tjob_init(&b, MTA_NH_IP, "192.0.2.20");
	mta_out_submit(o, &a.j);
	mta_out_submit(o, &b.j);
	expect_syn(&s, "192.0.2.10", 25, 10);
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.jobs_waiting, 1);
	cr_assert_eq(st.jobs, 2);
	srv_refuse(&s);
	expect_syn(&s, "192.0.2.20", 25, 10);
	cr_assert_eq(n_back, 1);
	cr_assert_eq(back[0], &a.j);
	srv_refuse(&s);
	wait_back(2, 10);
	cr_assert_eq(back[1], &b.j);
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.jobs_waiting, 0);
	finish();
	tjob_fini(&a);
	tjob_fini(&b);
}

UT_TEST(mta_out, rejects_a_bad_conf, ut_setup)
{
	struct mta_out_conf c;

	mta_out_conf_defaults(&c);
	cr_assert_null(mta_out_new(&ut.s, 0, &c, on_done, NULL), "no helo");
	c.helo_name = "x";
	c.max_conns = 0;
	cr_assert_null(mta_out_new(&ut.s, 0, &c, on_done, NULL));
	c.max_conns = 1;
	c.n_resolvers = 1; /* port 0 */
	c.resolvers[0].ip = UT_PEER_IP;
	cr_assert_null(mta_out_new(&ut.s, 0, &c, on_done, NULL));
}

/* A body of several data blocks: the send buffer fills, on_writable and
 * smtp_client_drained take it on, every octet arrives in order. */
UT_TEST(mta_out, large_body_in_blocks, ut_setup)
{
	struct mta_out_conf c;
	struct tjob t;
	struct srv s;
	static char line[80];
	size_t total = 0;

	mta_out_conf_defaults(&c);
	c.helo_name = "mx.test.example";
	c.data_block = 16384;
	start(&c);
	tjob_init(&t, MTA_NH_IP, "192.0.2.10");
	t.env->body_len = 0;
	memset(line, 'x', 77);
	line[77] = '\r';
	line[78] = '\n';
	while (total < 300000) {
		cr_assert_eq(envelope_body_append(t.env, line, 79), 0);
		total += 79;
	}
	cr_assert_eq(envelope_body_append(t.env, "end\r\n", 5), 0);
	mta_out_submit(o, &t.j);
	expect_syn(&s, "192.0.2.10", 25, 10);
	srv_greet(&s);
	EXPECT(&s, "MAIL FROM:<s@example.net>");
	srv_say(&s, "250 2.1.0 ok\r\n");
	EXPECT(&s, "RCPT TO:<a@example.org>");
	srv_say(&s, "250 2.1.5 ok\r\n");
	EXPECT(&s, "RCPT TO:<b@example.org>");
	srv_say(&s, "250 2.1.5 ok\r\n");
	EXPECT(&s, "DATA\r\n");
	srv_say(&s, "354 go ahead\r\n");
	{
		uint32_t start_seq = s.rcv_nxt;

		EXPECT(&s, "xxxx\r\nend\r\n.\r\n");
		cr_assert_eq(s.rcv_nxt - start_seq, total + 5 + 3,
			     "every octet once: %u",
			     s.rcv_nxt - start_seq);
	}
	srv_say(&s, "250 2.0.0 queued\r\n");
	wait_back(1, 100);
	cr_assert_eq(t.r[0].status, SMTP_RCPT_DELIVERED);
	cr_assert_eq(t.r[1].status, SMTP_RCPT_DELIVERED);
	finish();
	tjob_fini(&t);
}

/* No greeting: the engine's 5 min timer, run from mta_out_tick, ends the
 * session; with no other host the job comes back deferred. */
UT_TEST(mta_out, greeting_timeout_from_tick, ut_setup)
{
	struct tjob t;
	struct srv s;

	start(NULL);
	tjob_init(&t, MTA_NH_IP, "192.0.2.10");
	mta_out_submit(o, &t.j);
	expect_syn(&s, "192.0.2.10", 25, 10);
	srv_accept(&s);
	for (int i = 0; i < 10; i++)
		step();
	ut_tick(ut.now + 299990);
	mta_out_tick(o, ut.now);
	cr_assert_eq(n_back, 0, "not before 5 min");
	ut_tick(ut.now + 20);
	mta_out_tick(o, ut.now);
	wait_back(1, 10);
	cr_assert(t.j.host_failed);
	cr_assert(strstr(t.j.why, "192.0.2.10[192.0.2.10]:25"), "%s",
		  t.j.why);
	cr_assert_eq(t.r[0].status, SMTP_RCPT_DEFERRED);
	cr_assert_eq(t.r[0].reply.code, 451);
	cr_assert(!t.m.attempted);
	finish();
	tjob_fini(&t);
}

/* Two messages in one job over one pipelined session; no cache: QUIT at
 * once after the last. */
UT_TEST(mta_out, two_messages_pipelined_then_quit, ut_setup)
{
	struct mta_out_conf c;
	struct tjob t, t2;
	struct mta_job_msg m[2];
	struct srv s;
	struct mta_out_stats st;

	mta_out_conf_defaults(&c);
	c.helo_name = "mx.test.example";
	c.conn_cache_ms = 0;
	start(&c);
	tjob_init(&t, MTA_NH_IP, "192.0.2.10");
	tjob_init(&t2, MTA_NH_IP, "192.0.2.10");
	memcpy(t2.env->qid, "TESTQID0000002", ENV_QID_LEN + 1);
	m[0] = t.m;
	m[1] = t2.m;
	t.j.msg = m;
	t.j.nmsg = 2;
	mta_out_submit(o, &t.j);
	expect_syn(&s, "192.0.2.10", 25, 10);
	srv_accept(&s);
	srv_say(&s, "220 mx1.example.org ESMTP\r\n");
	EXPECT(&s, "EHLO mx.test.example\r\n");
	srv_say(&s, "250-mx1.example.org\r\n250-PIPELINING\r\n"
		"250 ENHANCEDSTATUSCODES\r\n");
	for (int i = 0; i < 2; i++) {
		EXPECT(&s, "RCPT TO:<b@example.org>\r\nDATA\r\n");
		srv_say(&s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n"
			"550 5.1.1 no such user\r\n354 go ahead\r\n");
		EXPECT(&s, "hello\r\n.\r\n");
		srv_say(&s, "250 2.0.0 queued\r\n");
	}
	EXPECT(&s, "QUIT\r\n");
	wait_back(1, 10);
	for (int i = 0; i < 2; i++) {
		cr_assert(m[i].attempted);
		cr_assert_eq(m[i].rcpt[0].status, SMTP_RCPT_DELIVERED);
		cr_assert_eq(m[i].rcpt[1].status, SMTP_RCPT_BOUNCED);
	}
	mta_out_get_stats(o, &st);
	cr_assert_eq(st.messages, 2);
	cr_assert_eq(st.rcpt_delivered, 2);
	cr_assert_eq(st.rcpt_bounced, 2);
	srv_say(&s, "221 bye\r\n");
	step();
	finish();
	tjob_fini(&t);
	tjob_fini(&t2);
}
