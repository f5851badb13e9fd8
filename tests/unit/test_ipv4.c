/*
 * test_ipv4.c: Ethernet II dispatch, IPv4 input validation (RFC 791,
 * RFC 1122 3.2.1), options, Ethernet padding, routing of replies, and a
 * seeded garbage/mutation run that must neither crash nor leak.
 */
#include <limits.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "tests/unit/ut_helpers.h"

/* ------------------------------------------------------------------ */
/* Ethernet                                                            */

struct eth_case {
	char name[24];
	int len;          /* frame length, -1 = the whole ping */
	uint8_t dst[6];   /* all zero = keep our MAC */
	bool set_type;    /* else keep 0x0800 */
	uint16_t type;
	char counter[24];
};

static struct eth_case eth_cases[] = {
	{ "short_13", 13, { 0 }, false, 0, "eth.truncated" },
	{ "short_1", 1, { 0 }, false, 0, "eth.truncated" },
	{ "empty", 0, { 0 }, false, 0, "eth.truncated" },
	{ "dst_other_unicast", -1, { 0x02, 0, 0, 0, 0, 0x77 }, false, 0,
	  "eth.not_for_us" },
	{ "type_88b5", -1, { 0 }, true, 0x88b5, "eth.unknown_type" },
	{ "type_0800_as_len", -1, { 0 }, true, 0x0042, "eth.unknown_type" },
	{ "type_ipv6", -1, { 0 }, true, 0x86dd, "eth.ipv6" },
	{ "type_vlan", -1, { 0 }, true, 0x8100, "eth.vlan" },
};

ParameterizedTestParameters(eth, dropped)
{
	return cr_make_param_array(struct eth_case, eth_cases,
				   sizeof(eth_cases) / sizeof(eth_cases[0]));
}

ParameterizedTest(struct eth_case *c, eth, dropped, .init = ut_setup,
		  .fini = ut_teardown)
{
	static const uint8_t zero[6];
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 1, 56);
	if (memcmp(c->dst, zero, 6) != 0)
		memcpy(f, c->dst, 6);
	if (c->set_type)
		ut_put16(f + 12, c->type);
	if (c->len >= 0)
		len = (size_t)c->len;
	ut_input(f, len);

	cr_expect_eq(ut_ctr(c->counter), 1, "%s: %s = %lu", c->name,
		     c->counter, (unsigned long)ut_ctr(c->counter));
	cr_expect_eq(ut_tx_pending(), 0, "%s: nothing may be sent", c->name);
	cr_expect_eq(ut_ctr("ip.rx"), 0, "%s: reached IPv4", c->name);
	cr_expect_eq(ut_ctr("icmp.rx"), 0, "%s: reached ICMP", c->name);
	ut_end();
}

/* ------------------------------------------------------------------ */
/* IPv4 header validation                                              */

enum mut { M_NONE, M_SET, M_XOR };

struct ip_case {
	char name[24];
	uint16_t dlen;      /* echo payload bytes */
	uint8_t opts[12];   /* options the request is built with */
	uint8_t optlen;
	enum mut mut;       /* change at IP header offset off */
	uint8_t off, width; /* width 1, 2 or 4 bytes (big endian) */
	uint32_t val;
	bool keep_cksum;    /* do not recompute the header checksum */
	int ip_len;         /* >= 0: cut the frame to 14 + ip_len bytes */
	char ctr[2][24];    /* counter that must rise (either of two) */
};

#define A(a, b, c, d)                                                          \
	(((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | \
	 (uint32_t)(d))

static struct ip_case ip_cases[] = {
	{ .name = "short_19", .ip_len = 19, .ctr = { "ip.truncated" } },
	{ .name = "short_0", .ip_len = 0, .ctr = { "ip.truncated" } },
	{ .name = "version_6", .mut = M_SET, .off = 0, .width = 1,
	  .val = 0x65, .ip_len = -1, .ctr = { "ip.bad_version" } },
	{ .name = "version_0", .mut = M_SET, .off = 0, .width = 1,
	  .val = 0x05, .ip_len = -1, .ctr = { "ip.bad_version" } },
	{ .name = "ihl_4", .mut = M_SET, .off = 0, .width = 1, .val = 0x44,
	  .ip_len = -1, .ctr = { "ip.bad_ihl" } },
	{ .name = "ihl_0", .mut = M_SET, .off = 0, .width = 1, .val = 0x40,
	  .ip_len = -1, .ctr = { "ip.bad_ihl" } },
	{ .name = "ihl_15_past_frame", .dlen = 0, .mut = M_SET, .off = 0,
	  .width = 1, .val = 0x4f, .ip_len = -1,
	  .ctr = { "ip.truncated", "ip.bad_length" } },
	{ .name = "totlen_past_frame", .dlen = 56, .mut = M_SET, .off = 2,
	  .width = 2, .val = 20 + 8 + 56 + 1, .ip_len = -1,
	  .ctr = { "ip.bad_length" } },
	{ .name = "totlen_1500", .dlen = 56, .mut = M_SET, .off = 2,
	  .width = 2, .val = 1500, .ip_len = -1, .ctr = { "ip.bad_length" } },
	{ .name = "totlen_19", .mut = M_SET, .off = 2, .width = 2, .val = 19,
	  .ip_len = -1, .ctr = { "ip.bad_length" } },
	{ .name = "totlen_0", .mut = M_SET, .off = 2, .width = 2, .val = 0,
	  .ip_len = -1, .ctr = { "ip.bad_length" } },
	{ .name = "totlen_below_ihl", .opts = { 1, 1, 1, 0 }, .optlen = 4,
	  .mut = M_SET, .off = 2, .width = 2, .val = 20, .ip_len = -1,
	  .ctr = { "ip.bad_length" } },
	{ .name = "bad_checksum", .mut = M_XOR, .off = 10, .width = 2,
	  .val = 0x0101, .keep_cksum = true, .ip_len = -1,
	  .ctr = { "ip.bad_checksum" } },
	{ .name = "bad_checksum_field", .mut = M_XOR, .off = 8, .width = 1,
	  .val = 0x01, .keep_cksum = true, .ip_len = -1,
	  .ctr = { "ip.bad_checksum" } },
	{ .name = "ttl_0", .mut = M_SET, .off = 8, .width = 1, .val = 0,
	  .ip_len = -1, .ctr = { "ip.ttl_zero" } },
	{ .name = "more_fragments", .mut = M_SET, .off = 6, .width = 2,
	  .val = 0x2000, .ip_len = -1, .ctr = { "ip.fragment" } },
	{ .name = "frag_offset_1", .mut = M_SET, .off = 6, .width = 2,
	  .val = 0x0001, .ip_len = -1, .ctr = { "ip.fragment" } },
	{ .name = "frag_last", .mut = M_SET, .off = 6, .width = 2,
	  .val = 0x00b9, .ip_len = -1, .ctr = { "ip.fragment" } },
	{ .name = "frag_df_mf", .mut = M_SET, .off = 6, .width = 2,
	  .val = 0x6000, .ip_len = -1, .ctr = { "ip.fragment" } },
	{ .name = "dst_other_host", .mut = M_SET, .off = 16, .width = 4,
	  .val = A(198, 18, 0, 3), .ip_len = -1, .ctr = { "ip.not_for_us" } },
	{ .name = "dst_off_link", .mut = M_SET, .off = 16, .width = 4,
	  .val = A(8, 8, 8, 8), .ip_len = -1, .ctr = { "ip.not_for_us" } },
	{ .name = "src_limited_bcast", .mut = M_SET, .off = 12, .width = 4,
	  .val = A(255, 255, 255, 255), .ip_len = -1,
	  .ctr = { "ip.bad_source" } },
	{ .name = "src_multicast", .mut = M_SET, .off = 12, .width = 4,
	  .val = A(224, 0, 0, 1), .ip_len = -1, .ctr = { "ip.bad_source" } },
	{ .name = "src_multicast_239", .mut = M_SET, .off = 12, .width = 4,
	  .val = A(239, 1, 2, 3), .ip_len = -1, .ctr = { "ip.bad_source" } },
	{ .name = "src_zero", .mut = M_SET, .off = 12, .width = 4, .val = 0,
	  .ip_len = -1, .ctr = { "ip.bad_source" } },
	{ .name = "src_loopback", .mut = M_SET, .off = 12, .width = 4,
	  .val = A(127, 0, 0, 1), .ip_len = -1, .ctr = { "ip.bad_source" } },
	{ .name = "src_subnet_bcast", .mut = M_SET, .off = 12, .width = 4,
	  .val = A(198, 18, 0, 255), .ip_len = -1,
	  .ctr = { "ip.bad_source" } },
	{ .name = "src_our_address", .mut = M_SET, .off = 12, .width = 4,
	  .val = A(198, 18, 0, 2), .ip_len = -1, .ctr = { "ip.bad_source" } },
	{ .name = "opt_len_0", .opts = { 7, 0, 4, 0 }, .optlen = 4,
	  .ip_len = -1, .ctr = { "ip.bad_options" } },
	{ .name = "opt_len_1", .opts = { 7, 1, 0, 0 }, .optlen = 4,
	  .ip_len = -1, .ctr = { "ip.bad_options" } },
	{ .name = "opt_past_header", .opts = { 7, 39, 4, 0 }, .optlen = 4,
	  .ip_len = -1, .ctr = { "ip.bad_options" } },
	{ .name = "opt_len_5_of_4", .opts = { 1, 7, 5, 4 }, .optlen = 4,
	  .ip_len = -1, .ctr = { "ip.bad_options" } },
	{ .name = "opt_no_len_byte", .opts = { 1, 1, 1, 7 }, .optlen = 4,
	  .ip_len = -1, .ctr = { "ip.bad_options" } },
};

ParameterizedTestParameters(ipv4, dropped)
{
	return cr_make_param_array(struct ip_case, ip_cases,
				   sizeof(ip_cases) / sizeof(ip_cases[0]));
}

static void apply_mut(uint8_t *ip, const struct ip_case *c)
{
	uint32_t v = c->val;

	for (int i = c->width - 1; i >= 0; i--) {
		if (c->mut == M_SET)
			ip[c->off + i] = (uint8_t)v;
		else
			ip[c->off + i] ^= (uint8_t)v;
		v >>= 8;
	}
}

ParameterizedTest(struct ip_case *c, ipv4, dropped, .init = ut_setup,
		  .fini = ut_teardown)
{
	uint8_t f[UT_FRAME_MAX] = { 0 };
	uint8_t data[UT_FRAME_MAX];
	struct ut_ip_spec sp;
	size_t len;
	uint64_t rose;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	memcpy(sp.opts, c->opts, sizeof(c->opts));
	sp.optlen = c->optlen;
	ut_fill_payload(data, c->dlen, 3);
	len = ut_build_echo(f, &sp, 8, 0x1234, 1, data, c->dlen);
	if (c->mut != M_NONE)
		apply_mut(f + UT_IP_OFF, c);
	if (!c->keep_cksum)
		ut_ip_fix_cksum(f);
	if (c->ip_len >= 0)
		len = UT_ETH_LEN + (size_t)c->ip_len;
	ut_input(f, len);

	rose = ut_ctr(c->ctr[0]);
	if (c->ctr[1][0] != '\0')
		rose += ut_ctr(c->ctr[1]);
	cr_expect_eq(rose, 1, "%s: %s%s%s rose by %lu, want 1", c->name,
		     c->ctr[0], c->ctr[1][0] ? " + " : "", c->ctr[1],
		     (unsigned long)rose);
	cr_expect_eq(ut_tx_pending(), 0, "%s: nothing may be sent", c->name);
	cr_expect_eq(ut_ctr("icmp.rx"), 0, "%s: reached ICMP", c->name);
	cr_expect_eq(ut_ctr("icmp.tx_echo_reply"), 0, "%s", c->name);
	cr_expect_eq(ut_ctr("icmp.tx_unreach"), 0, "%s", c->name);
	ut_end();
}

/* ------------------------------------------------------------------ */
/* Accepted variants                                                   */

/* Sends the echo request in f (len bytes, data of dlen bytes) and checks
 * that a plain reply (IHL 5) with the same id/seq/data comes back. */
static void expect_echo_reply(const uint8_t *req, size_t len, size_t dlen)
{
	uint8_t f[UT_FRAME_MAX];
	const uint8_t *rq_ip = req + UT_IP_OFF;
	const uint8_t *rq_icmp = rq_ip + (rq_ip[0] & 0x0f) * 4;
	unsigned tot;
	int n;

	ut_input(req, len);
	cr_assert_eq(ut_tx_pending(), 1, "want one echo reply, got %u frames",
		     ut_tx_pending());
	n = ut_take(f, sizeof(f));
	tot = ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_ICMP);
	cr_assert_eq(tot, 20 + 8 + dlen, "reply total length %u, want %zu",
		     tot, 20 + 8 + dlen);
	cr_expect_eq(f[UT_L4_OFF], 0, "type");
	cr_expect_eq(f[UT_L4_OFF + 1], 0, "code");
	cr_expect(memcmp(f + UT_L4_OFF + 4, rq_icmp + 4, 4 + dlen) == 0,
		  "id/seq/data differ");
	cr_expect_eq(ut_cksum(f + UT_L4_OFF, 8 + dlen), 0, "ICMP checksum");
}

UT_TEST(ipv4, options_nop_eol_accepted, ut_setup)
{
	uint8_t f[UT_FRAME_MAX], data[32];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	sp.opts[0] = 1;
	sp.opts[1] = 1;
	sp.opts[2] = 1;
	sp.opts[3] = 0;
	sp.optlen = 4;
	ut_fill_payload(data, sizeof(data), 5);
	len = ut_build_echo(f, &sp, 8, 0x1234, 9, data, sizeof(data));
	expect_echo_reply(f, len, sizeof(data));
	cr_expect_eq(ut_ctr("ip.options"), 1);
	cr_expect_eq(ut_ctr("ip.bad_options"), 0);
	cr_expect_eq(ut_ctr("icmp.rx_echo_request"), 1);
}

/* RFC 791 Record Route: type 7, length, pointer 4, then empty slots. */
UT_TEST(ipv4, options_record_route_accepted, ut_setup)
{
	static const uint8_t rr[12] = { 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	uint8_t f[UT_FRAME_MAX], data[20];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	memcpy(sp.opts, rr, sizeof(rr));
	sp.optlen = sizeof(rr);
	ut_fill_payload(data, sizeof(data), 6);
	len = ut_build_echo(f, &sp, 8, 0x1234, 10, data, sizeof(data));
	expect_echo_reply(f, len, sizeof(data));
	cr_expect_eq(ut_ctr("ip.options"), 1);
	cr_expect_eq(ut_ctr("ip.bad_options"), 0);
}

/* 40 bytes of options (IHL 15), all NOPs. */
UT_TEST(ipv4, options_max_ihl_accepted, ut_setup)
{
	uint8_t f[UT_FRAME_MAX], data[8];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	memset(sp.opts, 1, 40);
	sp.optlen = 40;
	ut_fill_payload(data, sizeof(data), 7);
	len = ut_build_echo(f, &sp, 8, 0x1234, 11, data, sizeof(data));
	expect_echo_reply(f, len, sizeof(data));
	cr_expect_eq(ut_ctr("ip.options"), 1);
}

/* RFC 894: a 42-byte frame is padded to 60; the IP total length, not the
 * frame, says where the datagram ends. */
UT_TEST(ipv4, ethernet_padding_trimmed, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 3, 0);
	cr_assert_eq(len, 42);
	memset(f + len, 0xaa, 60 - len); /* non-zero: must not be summed */
	expect_echo_reply(f, 60, 0);
	cr_expect_eq(ut_ctr("ip.bad_length"), 0);
	cr_expect_eq(ut_ctr("icmp.bad_checksum"), 0);
}

/* Trailing bytes after the datagram in a full-size frame are ignored too. */
UT_TEST(ipv4, trailing_bytes_trimmed, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 4, 56);
	memset(f + len, 0x5c, 100);
	expect_echo_reply(f, len + 100, 56);
}

/* TTL 1 is fine for a host (RFC 1122 3.2.1.7: MUST NOT discard just
 * because TTL < 2). */
UT_TEST(ipv4, ttl_1_accepted, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 5, 16);
	f[UT_IP_OFF + 8] = 1;
	ut_ip_fix_cksum(f);
	expect_echo_reply(f, len, 16);
}

/* DF alone is not a fragment. */
UT_TEST(ipv4, df_accepted, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 6, 16);
	ut_put16(f + UT_IP_OFF + 6, 0x4000);
	ut_ip_fix_cksum(f);
	expect_echo_reply(f, len, 16);
	cr_expect_eq(ut_ctr("ip.fragment"), 0);
}

UT_TEST(ipv4, counts_rx_and_tx, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 7, 56);
	expect_echo_reply(f, len, 56);
	cr_expect_eq(ut_ctr("port.rx_packets"), 1);
	cr_expect_eq(ut_ctr("eth.rx"), 1);
	cr_expect_eq(ut_ctr("ip.rx"), 1);
	cr_expect_eq(ut_ctr("ip.tx"), 1);
	cr_expect_eq(ut_ctr("port.tx_packets"), 1);
}

/* ------------------------------------------------------------------ */
/* Routing of replies                                                  */

static size_t ping_from(uint8_t *f, uint32_t src, uint16_t seq)
{
	struct ut_ip_spec sp;
	uint8_t data[16];

	ut_ip_spec_default(&sp);
	sp.src = src;
	ut_fill_payload(data, sizeof(data), seq);
	return ut_build_echo(f, &sp, 8, 0x1234, seq, data, sizeof(data));
}

UT_TEST(route, off_link_reply_via_gateway, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	uint32_t far = UT_IP(203, 0, 113, 7);
	int n;

	ut_learn_peer(); /* the gateway */
	ut_input(f, ping_from(f, far, 1));
	cr_assert_eq(ut_tx_pending(), 1);
	n = ut_take(f, sizeof(f));
	ut_check_ipv4(f, n, &ut_peer_mac, far, IPPROTO_ICMP);
	cr_expect_eq(ut_ctr("ip.no_route"), 0);
}

UT_TEST(route, off_link_resolves_gateway_not_destination, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	uint32_t far = UT_IP(203, 0, 113, 7);
	int n;

	ut_input(f, ping_from(f, far, 1));
	cr_assert_eq(ut_tx_pending(), 1, "want an ARP request for the gateway");
	n = ut_take(f, sizeof(f));
	ut_check_arp(f, n, &ut_bcast_mac, RTE_ARP_OP_REQUEST, &ut_our_mac,
		     UT_OUR_IP, &ut_zero_mac, UT_PEER_IP);
	/* the gateway answers; the held reply leaves through it */
	n = (int)ut_build_arp(f, RTE_ARP_OP_REPLY, &ut_our_mac, &ut_peer_mac,
			      UT_PEER_IP, &ut_our_mac, UT_OUR_IP);
	ut_input(f, (size_t)n);
	cr_assert_eq(ut_tx_pending(), 1);
	n = ut_take(f, sizeof(f));
	ut_check_ipv4(f, n, &ut_peer_mac, far, IPPROTO_ICMP);
}

UT_TEST(route, off_link_without_gateway_no_route, ut_setup_env)
{
	struct stack_conf c;
	uint8_t f[UT_FRAME_MAX];

	ut_default_conf(&c);
	c.gateway = 0;
	ut_stack_start(&c, false);
	ut_learn_peer();
	ut_input(f, ping_from(f, UT_IP(203, 0, 113, 7), 1));
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("ip.no_route"), 1);
	cr_expect_eq(ut_ctr("icmp.rx_echo_request"), 1);
}

/* The gateway setting does not capture on-link destinations. */
UT_TEST(route, on_link_goes_direct, ut_setup)
{
	static const struct rte_ether_addr mac5 = {
		.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x05 } };
	uint32_t ip5 = UT_IP(198, 18, 0, 5);
	uint8_t f[UT_FRAME_MAX];
	int n;

	ut_learn_peer();
	n = (int)ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &mac5,
			      ip5, &ut_zero_mac, UT_OUR_IP);
	ut_input(f, (size_t)n);
	ut_drain_tx();
	ut_input(f, ping_from(f, ip5, 1));
	cr_assert_eq(ut_tx_pending(), 1);
	n = ut_take(f, sizeof(f));
	ut_check_ipv4(f, n, &mac5, ip5, IPPROTO_ICMP);
}

/* ------------------------------------------------------------------ */
/* Robustness: garbage and mutations                                   */

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Every frame the stack emits is ours and fits the MTU. */
static unsigned take_and_check_all(void)
{
	uint8_t f[UT_FRAME_MAX];
	unsigned n = 0;
	int len;

	while ((len = ut_take(f, sizeof(f))) >= 0) {
		n++;
		cr_assert_geq(len, UT_ETH_LEN + 28, "runt frame out: %d", len);
		cr_assert_leq(len, UT_ETH_LEN + 1500, "jumbo frame out: %d",
			      len);
		cr_assert(memcmp(f + 6, ut_our_mac.addr_bytes, 6) == 0,
			  "frame out with a foreign source MAC");
		if (ut_get16(f + 12) == RTE_ETHER_TYPE_IPV4) {
			cr_assert_eq(ut_cksum(f + UT_IP_OFF,
					      (f[UT_IP_OFF] & 0x0f) * 4u), 0,
				     "IPv4 frame out with a bad checksum");
			cr_assert_eq(ut_get32(f + UT_IP_OFF + 12), UT_OUR_IP,
				     "IPv4 frame out from another address");
		}
	}
	return n;
}

static size_t garbage_frame(uint8_t *f)
{
	size_t len = rng() % 1601;
	unsigned kind = rng() % 6;

	for (size_t i = 0; i < len; i++)
		f[i] = (uint8_t)rng();
	if (kind == 0 || len < UT_ETH_LEN)
		return len; /* pure noise */
	/* plausible Ethernet header, random body */
	memcpy(f, (rng() & 1) ? ut_our_mac.addr_bytes : ut_bcast_mac.addr_bytes,
	       6);
	ut_put16(f + 12, (rng() % 3) ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_ARP);
	if (ut_get16(f + 12) == RTE_ETHER_TYPE_IPV4 && len >= UT_L4_OFF) {
		f[UT_IP_OFF] = (uint8_t)(0x40 | (5 + rng() % 11));
		if (rng() & 1)
			ut_put16(f + UT_IP_OFF + 2,
				 (uint16_t)(len - UT_ETH_LEN));
		if (rng() & 1) {
			f[UT_IP_OFF + 16] = 198;
			f[UT_IP_OFF + 17] = 18;
			f[UT_IP_OFF + 18] = 0;
			f[UT_IP_OFF + 19] = (uint8_t)((rng() & 1) ? 2 : 255);
		}
		if ((f[UT_IP_OFF] & 0x0f) * 4u <= len - UT_ETH_LEN &&
		    (rng() & 3))
			ut_ip_fix_cksum(f);
	}
	return len;
}

static size_t mutated_frame(uint8_t *f)
{
	size_t len;
	unsigned flips = 1 + rng() % 4;

	if (rng() % 4 == 0) {
		static const struct rte_ether_addr someone = {
			.addr_bytes = { 0x02, 0, 0, 0, 0, 0x30 } };
		len = ut_build_arp(f, (uint16_t)(1 + rng() % 2),
				   (rng() & 1) ? &ut_bcast_mac : &ut_our_mac,
				   &someone,
				   UT_IP(198, 18, 0, (uint8_t)(rng() % 256)),
				   &ut_zero_mac,
				   (rng() & 1) ? UT_OUR_IP
					       : UT_IP(198, 18, 0,
						       (uint8_t)rng()));
	} else {
		len = ut_build_ping(f, (uint16_t)rng(), rng() % 1473);
		/* some come from other on-link or off-link hosts */
		if (rng() % 3 == 0) {
			f[UT_IP_OFF + 12] = (rng() & 1) ? 198 : 203;
			f[UT_IP_OFF + 13] = 18;
			f[UT_IP_OFF + 15] = (uint8_t)rng();
			ut_ip_fix_cksum(f);
			ut_icmp_fix_cksum(f);
		}
	}
	for (unsigned i = 0; i < flips; i++) {
		size_t pos = (rng() & 1) ? rng() % 60 : rng() % len;

		if (pos < len)
			f[pos] ^= (uint8_t)(1u << (rng() % 8));
	}
	if (rng() % 4 == 0)
		len = rng() % (len + 1);
	if (len >= UT_L4_OFF && (rng() & 1) &&
	    ut_get16(f + 12) == RTE_ETHER_TYPE_IPV4) {
		size_t hl = (f[UT_IP_OFF] & 0x0f) * 4u;
		size_t tot = ut_get16(f + UT_IP_OFF + 2);

		if (hl >= 20 && hl <= len - UT_ETH_LEN) {
			ut_ip_fix_cksum(f);
			if (tot >= hl + 4 && tot <= len - UT_ETH_LEN &&
			    (rng() & 1))
				ut_icmp_fix_cksum(f);
		}
	}
	return len;
}

static void fuzz_run(uint64_t seed, unsigned iterations)
{
	uint8_t f[UT_FRAME_MAX];
	unsigned injected = 0, refused = 0;

	rng_state = seed;
	ut_learn_peer();
	for (unsigned i = 0; i < iterations; i++) {
		size_t len = (rng() & 1) ? garbage_frame(f) : mutated_frame(f);

		if (dp_fake_inject(&ut.fp, f, len) == 0)
			injected++;
		else
			refused++; /* pool empty: the stack holds too much */
		if (rng() % 8 == 0)
			ut_poll();
		if (rng() % 16 == 0)
			ut_tick(ut.now + rng() % 300);
		if (rng() % 64 == 0)
			ut.fp.tx_room = (rng() & 1) ? 0 : UINT_MAX;
		if (rng() % 4 == 0)
			take_and_check_all();
	}
	ut_poll();
	ut.fp.tx_room = UINT_MAX;
	take_and_check_all();
	cr_log_info("seed %llu: %u frames in, %u refused; eth.rx %lu arp.rx %lu "
		    "ip.rx %lu icmp.rx %lu echo replies %lu unreach %lu "
		    "arp.tx_request %lu tx_dropped %lu",
		    (unsigned long long)seed, injected, refused,
		    (unsigned long)ut_ctr("eth.rx"),
		    (unsigned long)ut_ctr("arp.rx"),
		    (unsigned long)ut_ctr("ip.rx"),
		    (unsigned long)ut_ctr("icmp.rx"),
		    (unsigned long)ut_ctr("icmp.tx_echo_reply"),
		    (unsigned long)ut_ctr("icmp.tx_unreach"),
		    (unsigned long)ut_ctr("arp.tx_request"),
		    (unsigned long)ut_ctr("port.tx_dropped"));
	cr_expect_eq(ut_ctr("port.rx_packets"), injected,
		     "port.rx_packets %lu, injected %u",
		     (unsigned long)ut_ctr("port.rx_packets"), injected);

	/* let every ARP retry run out: the stack then holds no mbuf */
	for (int k = 1; k <= 20; k++)
		ut_tick(ut.now + 1000);
	take_and_check_all();
	cr_expect_eq(rte_mempool_avail_count(ut.pool), UT_POOL_SIZE,
		     "stack still holds %u mbufs after all timers ran",
		     UT_POOL_SIZE - rte_mempool_avail_count(ut.pool));
}

UT_TEST(robustness, garbage_and_mutations_seed_1, ut_setup)
{
	fuzz_run(1, 4000);
}

UT_TEST(robustness, garbage_and_mutations_seed_2, ut_setup)
{
	fuzz_run(0x9e3779b97f4a7c15ULL, 4000);
}

UT_TEST(robustness, garbage_and_mutations_seed_3, ut_setup)
{
	fuzz_run(20240611, 4000);
}
