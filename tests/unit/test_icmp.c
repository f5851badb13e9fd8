/*
 * test_icmp.c: ICMP (RFC 792, RFC 1122 3.2.2): echo replies, bad and
 * ignored messages, protocol unreachable with its rate limit, and replies
 * dropped on a full TX ring.
 */
#include <limits.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/unit/ut_helpers.h"

/* ------------------------------------------------------------------ */
/* Echo                                                                */

/* "The data received in the echo message must be returned in the echo
 * reply message" (RFC 792), with source and destination reversed. */
static void echo_roundtrip(size_t dlen)
{
	uint8_t req[UT_FRAME_MAX], f[UT_FRAME_MAX];
	size_t len;
	unsigned tot;
	int n;

	ut_learn_peer();
	len = ut_build_ping(req, 7, dlen);
	ut_input(req, len);

	cr_assert_eq(ut_tx_pending(), 1, "want exactly one reply, got %u",
		     ut_tx_pending());
	n = ut_take(f, sizeof(f));
	/* eth dst = the requester, src = us; IP src/dst swapped, TTL 64 */
	tot = ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_ICMP);
	cr_assert_eq(tot, 20 + 8 + dlen, "total length %u, want %zu", tot,
		     20 + 8 + dlen);
	cr_expect_eq(n, (int)len, "reply frame %d bytes, request %zu", n, len);
	cr_expect_eq(f[UT_L4_OFF], 0, "type %u", f[UT_L4_OFF]);
	cr_expect_eq(f[UT_L4_OFF + 1], 0, "code %u", f[UT_L4_OFF + 1]);
	cr_expect_eq(ut_get16(f + UT_L4_OFF + 4), 0x1234, "identifier");
	cr_expect_eq(ut_get16(f + UT_L4_OFF + 6), 7, "sequence");
	cr_expect(memcmp(f + UT_L4_OFF + 8, req + UT_L4_OFF + 8, dlen) == 0,
		  "payload differs");
	cr_expect_eq(ut_cksum(f + UT_L4_OFF, 8 + dlen), 0,
		     "ICMP checksum 0x%04x invalid",
		     ut_get16(f + UT_L4_OFF + 2));

	cr_expect_eq(ut_ctr("icmp.rx"), 1);
	cr_expect_eq(ut_ctr("icmp.rx_echo_request"), 1);
	cr_expect_eq(ut_ctr("icmp.tx_echo_reply"), 1);
	cr_expect_eq(ut_ctr("ip.rx"), 1);
	cr_expect_eq(ut_ctr("ip.tx"), 1);
	cr_expect_eq(ut_ctr("icmp.bad_checksum"), 0);
}

UT_TEST(icmp, echo_56, ut_setup)
{
	echo_roundtrip(56);
}

UT_TEST(icmp, echo_odd_57, ut_setup)
{
	echo_roundtrip(57);
}

UT_TEST(icmp, echo_1, ut_setup)
{
	echo_roundtrip(1);
}

UT_TEST(icmp, echo_empty, ut_setup)
{
	echo_roundtrip(0);
}

UT_TEST(icmp, echo_1472_full_mtu, ut_setup)
{
	echo_roundtrip(1472);
}

/* The reply checksum is right for every payload length and content,
 * including ones whose sum folds to 0xffff. */
UT_TEST(icmp, echo_many_lengths, ut_setup)
{
	uint8_t req[UT_FRAME_MAX], f[UT_FRAME_MAX];

	ut_learn_peer();
	for (size_t dlen = 0; dlen <= 300; dlen += 13) {
		size_t len = ut_build_ping(req, (uint16_t)dlen, dlen);
		int n;

		ut_input(req, len);
		cr_assert_eq(ut_tx_pending(), 1, "dlen %zu", dlen);
		n = ut_take(f, sizeof(f));
		ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_ICMP);
		cr_assert_eq(ut_cksum(f + UT_L4_OFF, 8 + dlen), 0,
			     "dlen %zu: bad ICMP checksum", dlen);
		cr_assert(memcmp(f + UT_L4_OFF + 4, req + UT_L4_OFF + 4,
				 4 + dlen) == 0, "dlen %zu: data", dlen);
	}
}

UT_TEST(icmp, bad_checksum_dropped, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 1, 56);
	f[UT_L4_OFF + 2] ^= 0x01;
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("icmp.bad_checksum"), 1);
	cr_expect_eq(ut_ctr("icmp.tx_echo_reply"), 0);
}

UT_TEST(icmp, bad_checksum_in_payload_dropped, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_ping(f, 1, 57);
	f[len - 1] ^= 0x80; /* the odd last byte */
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("icmp.bad_checksum"), 1);
}

static void short_icmp(size_t icmp_len)
{
	static const uint8_t body[8] = { 8, 0, 0xf7, 0xff, 0, 0, 0, 0 };
	uint8_t f[UT_FRAME_MAX];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	len = ut_build_ipv4(f, &sp, body, icmp_len);
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0, "%zu-byte ICMP answered", icmp_len);
	cr_expect_eq(ut_ctr("icmp.truncated"), 1, "%zu-byte ICMP", icmp_len);
	cr_expect_eq(ut_ctr("icmp.tx_echo_reply"), 0);
}

UT_TEST(icmp, truncated_4, ut_setup)
{
	short_icmp(4);
}

UT_TEST(icmp, truncated_7, ut_setup)
{
	short_icmp(7);
}

UT_TEST(icmp, truncated_0, ut_setup)
{
	short_icmp(0);
}

/* RFC 1122 3.2.2.6: an echo to a broadcast address MAY be silently
 * discarded; we do (smurf amplification). */
static void echo_to_broadcast(uint32_t dst)
{
	uint8_t f[UT_FRAME_MAX], data[56];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	sp.dst = dst;
	sp.eth_dst = ut_bcast_mac;
	ut_fill_payload(data, sizeof(data), 1);
	len = ut_build_echo(f, &sp, 8, 0x1234, 1, data, sizeof(data));
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0, "echo to a broadcast answered");
	cr_expect_eq(ut_ctr("icmp.echo_broadcast_ignored"), 1);
	cr_expect_eq(ut_ctr("icmp.tx_echo_reply"), 0);
}

UT_TEST(icmp, echo_subnet_broadcast_ignored, ut_setup)
{
	echo_to_broadcast(UT_BCAST_IP);
}

UT_TEST(icmp, echo_limited_broadcast_ignored, ut_setup)
{
	echo_to_broadcast(UT_IP(255, 255, 255, 255));
}

static void other_type(uint8_t type, uint8_t code)
{
	uint8_t f[UT_FRAME_MAX], body[8 + 28];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	memset(body, 0, sizeof(body));
	body[0] = type;
	body[1] = code;
	/* a plausible quoted header: us -> peer, UDP */
	body[8] = 0x45;
	body[8 + 9] = IPPROTO_UDP;
	ut_put32(body + 8 + 12, UT_OUR_IP);
	ut_put32(body + 8 + 16, UT_PEER_IP);
	ut_put16(body + 2, ut_cksum(body, sizeof(body)));
	ut_ip_spec_default(&sp);
	len = ut_build_ipv4(f, &sp, body, sizeof(body));
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0, "type %u answered", type);
	cr_expect_eq(ut_ctr("icmp.rx_other"), 1, "type %u", type);
	cr_expect_eq(ut_ctr("icmp.bad_checksum"), 0);
	cr_expect_eq(ut_ctr("icmp.tx_unreach"), 0, "error about an error");
}

UT_TEST(icmp, dest_unreachable_counted_as_other, ut_setup)
{
	other_type(3, 3);
}

UT_TEST(icmp, timestamp_counted_as_other, ut_setup)
{
	other_type(13, 0);
}

UT_TEST(icmp, echo_reply_counted_as_other, ut_setup)
{
	other_type(0, 0);
}

/* ------------------------------------------------------------------ */
/* Protocol unreachable                                                */

static size_t proto_253(uint8_t *f, uint16_t id)
{
	struct ut_ip_spec sp;
	uint8_t data[24];

	ut_ip_spec_default(&sp);
	sp.proto = 253;
	sp.id = id;
	ut_fill_payload(data, sizeof(data), id);
	return ut_build_ipv4(f, &sp, data, sizeof(data));
}

/* RFC 1122 3.2.2.1: a host SHOULD generate Destination Unreachable
 * messages with code 2 (Protocol Unreachable) when the designated
 * transport protocol is not supported. RFC 792: the data is the internet
 * header plus the first 64 bits of the original datagram's data. */
UT_TEST(icmp, unknown_protocol_unreachable, ut_setup)
{
	uint8_t req[UT_FRAME_MAX], f[UT_FRAME_MAX];
	size_t len, quoted, orig = 20 + 24;
	unsigned tot;
	int n;

	ut_learn_peer();
	len = proto_253(req, 0x0abc);
	ut_input(req, len);
	cr_expect_eq(ut_ctr("ip.unknown_proto"), 1);
	cr_assert_eq(ut_tx_pending(), 1, "want one unreachable, got %u",
		     ut_tx_pending());
	n = ut_take(f, sizeof(f));
	tot = ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_ICMP);
	cr_assert_geq(tot, 20 + 8 + 20 + 8, "quote too short: total %u", tot);
	cr_expect_eq(f[UT_L4_OFF], 3, "type %u", f[UT_L4_OFF]);
	cr_expect_eq(f[UT_L4_OFF + 1], 2, "code %u", f[UT_L4_OFF + 1]);
	cr_expect_eq(ut_get32(f + UT_L4_OFF + 4), 0, "unused field not 0");
	quoted = tot - 20 - 8;
	cr_expect_leq(quoted, orig, "quotes %zu bytes of a %zu-byte datagram",
		      quoted, orig);
	cr_expect(memcmp(f + UT_L4_OFF + 8, req + UT_IP_OFF,
			 quoted < orig ? quoted : orig) == 0,
		  "quoted datagram differs from the original");
	cr_expect_eq(ut_cksum(f + UT_L4_OFF, tot - 20), 0, "ICMP checksum");
	cr_expect_eq(ut_ctr("icmp.tx_unreach"), 1);
}

/* A large datagram is quoted in part only; the error fits the MTU. */
UT_TEST(icmp, unreachable_quote_bounded, ut_setup)
{
	uint8_t req[UT_FRAME_MAX], f[UT_FRAME_MAX], data[1480];
	struct ut_ip_spec sp;
	size_t len;
	unsigned tot;
	int n;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	sp.proto = 253;
	ut_fill_payload(data, sizeof(data), 2);
	len = ut_build_ipv4(req, &sp, data, sizeof(data));
	ut_input(req, len);
	cr_assert_eq(ut_tx_pending(), 1);
	n = ut_take(f, sizeof(f));
	tot = ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_ICMP);
	cr_expect_leq(tot, 576, "RFC 1812 4.3.2.3: at most 576 bytes, got %u",
		      tot);
	cr_expect_eq(ut_cksum(f + UT_L4_OFF, tot - 20), 0, "ICMP checksum");
	cr_expect(memcmp(f + UT_L4_OFF + 8, req + UT_IP_OFF, 28) == 0);
}

/* RFC 1122 3.2.2: never an error about a datagram to a broadcast. */
UT_TEST(icmp, no_unreachable_for_broadcast, ut_setup)
{
	uint8_t f[UT_FRAME_MAX], data[16];
	struct ut_ip_spec sp;
	size_t len;

	ut_learn_peer();
	ut_ip_spec_default(&sp);
	sp.proto = 253;
	sp.dst = UT_BCAST_IP;
	sp.eth_dst = ut_bcast_mac;
	ut_fill_payload(data, sizeof(data), 2);
	len = ut_build_ipv4(f, &sp, data, sizeof(data));
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0, "unreachable about a broadcast");
	cr_expect_eq(ut_ctr("icmp.tx_unreach"), 0);
}

UT_TEST(icmp, unreachable_rate_limited, ut_setup_env)
{
	struct stack_conf c;
	uint8_t f[UT_FRAME_MAX];
	unsigned sent;

	ut_default_conf(&c);
	c.icmp_rate = 10;
	c.icmp_burst = 5;
	ut_stack_start(&c, false);
	ut_learn_peer();

	for (uint16_t i = 0; i < 20; i++)
		ut_inject(f, proto_253(f, i));
	ut_poll();
	cr_expect_eq(ut_ctr("ip.unknown_proto"), 20);
	sent = ut_drain_tx();
	cr_expect_eq(sent, 5, "burst 5: %u unreachables sent", sent);
	cr_expect_eq(ut_ctr("icmp.tx_unreach"), 5);
	cr_expect_eq(ut_ctr("icmp.ratelimited"), 15);

	/* a second later the bucket is full again (5, not 10) */
	ut_tick(UT_T0 + 1000);
	for (uint16_t i = 0; i < 20; i++)
		ut_inject(f, proto_253(f, (uint16_t)(100 + i)));
	ut_poll();
	sent = ut_drain_tx();
	cr_expect_eq(sent, 5, "after 1 s: %u unreachables sent", sent);
	cr_expect_eq(ut_ctr("icmp.ratelimited"), 30);

	/* 100 ms at 10/s is one token */
	ut_tick(UT_T0 + 1100);
	for (uint16_t i = 0; i < 3; i++)
		ut_inject(f, proto_253(f, (uint16_t)(200 + i)));
	ut_poll();
	sent = ut_drain_tx();
	cr_expect_eq(sent, 1, "after 100 ms: %u unreachables sent", sent);

	/* echo replies are not errors: not limited */
	for (uint16_t i = 0; i < 10; i++)
		ut_inject(f, ut_build_ping(f, i, 8));
	ut_poll();
	sent = ut_drain_tx();
	cr_expect_eq(sent, 10, "echo replies limited: %u of 10", sent);
}

/* ------------------------------------------------------------------ */
/* TX ring full                                                        */

UT_TEST(icmp, tx_full_drops_replies, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];

	ut_learn_peer();
	ut.fp.tx_room = 0;
	ut_input(f, ut_build_ping(f, 1, 56));
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("port.tx_dropped"), 1);

	for (uint16_t i = 0; i < 10; i++)
		ut_inject(f, ut_build_ping(f, i, 56));
	ut_poll();
	cr_expect_eq(ut_ctr("port.tx_dropped"), 11);
	cr_expect_eq(ut_tx_pending(), 0);
	/* the refused frames were freed, not kept */
	cr_expect_eq(rte_mempool_avail_count(ut.pool), UT_POOL_SIZE,
		     "%u mbufs still out after dropped TX",
		     UT_POOL_SIZE - rte_mempool_avail_count(ut.pool));

	/* room again: replies flow */
	ut.fp.tx_room = UINT_MAX;
	ut_input(f, ut_build_ping(f, 20, 56));
	cr_expect_eq(ut_tx_pending(), 1);
	cr_expect_eq(ut_ctr("port.tx_dropped"), 11);
	ut_drain_tx();
}

UT_TEST(icmp, tx_partly_full, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];

	ut_learn_peer();
	ut.fp.tx_room = 3;
	for (uint16_t i = 0; i < 5; i++)
		ut_inject(f, ut_build_ping(f, i, 56));
	ut_poll();
	cr_expect_eq(ut_tx_pending(), 3);
	cr_expect_eq(ut_ctr("port.tx_dropped"), 2);
	cr_expect_eq(ut_ctr("port.tx_packets"), 3);
	ut_drain_tx();
}
