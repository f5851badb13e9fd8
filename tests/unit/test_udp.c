/*
 * test_udp.c: UDP (RFC 768) on the fake port: binding (fixed and
 * ephemeral ports, the latter owned by this worker under steering),
 * output (length, checksum, MTU limit) and input validation, and the ICMP
 * port unreachable for unbound ports (RFC 1122 3.2.2.1).
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dataplane/dp_steer.h"
#include "tcpstack/udp.h"
#include "tests/unit/ut_helpers.h"

static struct {
	int calls;
	uint32_t src_ip;
	uint16_t src_port, dst_port, len;
	uint8_t data[2048];
} rx;

static void on_rx(struct stack *s, void *user, uint32_t src_ip,
		  uint16_t src_port, uint16_t dst_port, const uint8_t *data,
		  uint16_t len)
{
	(void)s;
	cr_assert_eq(user, &rx);
	rx.calls++;
	rx.src_ip = src_ip;
	rx.src_port = src_port;
	rx.dst_port = dst_port;
	rx.len = len;
	memcpy(rx.data, data, len);
}

/* Peer -> us UDP datagram with a correct checksum; returns frame length. */
static size_t build_udp(uint8_t *f, uint32_t dst, uint16_t sport,
			uint16_t dport, const uint8_t *data, size_t dlen)
{
	uint8_t u[UT_FRAME_MAX], ph[12];
	struct ut_ip_spec sp;
	uint32_t sum;

	ut_put16(u, sport);
	ut_put16(u + 2, dport);
	ut_put16(u + 4, (uint16_t)(8 + dlen));
	ut_put16(u + 6, 0);
	memcpy(u + 8, data, dlen);
	ut_put32(ph, UT_PEER_IP);
	ut_put32(ph + 4, dst);
	ph[8] = 0;
	ph[9] = IPPROTO_UDP;
	ut_put16(ph + 10, (uint16_t)(8 + dlen));
	sum = (uint16_t)~ut_cksum(ph, 12);
	sum += (uint16_t)~ut_cksum(u, 8 + dlen);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = (uint16_t)~sum;
	ut_put16(u + 6, sum == 0 ? 0xffff : (uint16_t)sum);
	ut_ip_spec_default(&sp);
	sp.proto = IPPROTO_UDP;
	sp.dst = dst;
	if (dst == UT_BCAST_IP)
		sp.eth_dst = ut_bcast_mac;
	return ut_build_ipv4(f, &sp, u, 8 + dlen);
}

/* UDP checksum over the pseudo-header of a frame we sent: 0 if right. */
static uint16_t udp_verify(const uint8_t *f, unsigned tot)
{
	const uint8_t *ip = f + UT_IP_OFF;
	uint8_t ph[12];
	uint32_t sum;

	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = IPPROTO_UDP;
	ut_put16(ph + 10, (uint16_t)(tot - 20));
	sum = (uint16_t)~ut_cksum(ph, 12);
	sum += (uint16_t)~ut_cksum(ip + 20, tot - 20);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void setup_learned(void)
{
	ut_setup();
	ut_learn_peer();
	memset(&rx, 0, sizeof(rx));
}

UT_TEST(udp, bind_and_receive, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], d[100];
	size_t n;

	ut_fill_payload(d, sizeof(d), 1);
	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), 5353);
	n = build_udp(f, UT_OUR_IP, 53, 5353, d, sizeof(d));
	ut_input(f, n);
	cr_assert_eq(rx.calls, 1);
	cr_assert_eq(rx.src_ip, UT_PEER_IP);
	cr_assert_eq(rx.src_port, 53);
	cr_assert_eq(rx.dst_port, 5353);
	cr_assert_eq(rx.len, sizeof(d));
	cr_assert_arr_eq(rx.data, d, sizeof(d));
	cr_assert_eq(ut_ctr("udp.rx"), 1);
	cr_assert_eq(ut_tx_pending(), 0);
}

UT_TEST(udp, bind_twice_in_use, setup_learned)
{
	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), 5353);
	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), -EADDRINUSE);
	cr_assert_eq(udp_bind(&ut.s, 5354, 0, 0, NULL, &rx), -EINVAL);
	udp_unbind(&ut.s, 5353);
	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), 5353);
}

/* Port 0: an ephemeral port, different each time, that this worker owns
 * for the given peer (dp_steer_owner) under every worker count. */
UT_TEST(udp, ephemeral_port_owned_by_worker, setup_learned)
{
	for (unsigned nw = 1; nw <= 8; nw++) {
		stack_set_steering(&ut.s, nw, 0x5eed1234u + nw);
		for (int i = 0; i < 16; i++) {
			int p = udp_bind(&ut.s, 0, UT_PEER_IP, 53, on_rx, &rx);
			cr_assert_geq(p, 32768);
			cr_assert_leq(p, 60999);
			cr_assert_eq(dp_steer_owner(0x5eed1234u + nw, nw,
						    UT_PEER_IP, 53, UT_OUR_IP,
						    (uint16_t)p),
				     ut.s.id, "nw %u port %d", nw, p);
			/* bound now: a second datagram reaches it */
			cr_assert_eq(udp_bind(&ut.s, (uint16_t)p, 0, 0, on_rx,
					      &rx), -EADDRINUSE);
		}
	}
}

UT_TEST(udp, sendto_builds_datagram, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], d[333];
	unsigned tot;
	int n;

	ut_fill_payload(d, sizeof(d), 7);
	cr_assert_eq(udp_sendto(&ut.s, 40000, UT_PEER_IP, 53, d, sizeof(d)), 0);
	stack_flush(&ut.s);
	n = ut_take(f, sizeof(f));
	cr_assert_gt(n, 0);
	tot = ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_UDP);
	cr_assert_eq(tot, 20 + 8 + sizeof(d));
	cr_assert_eq(ut_get16(f + UT_L4_OFF), 40000);
	cr_assert_eq(ut_get16(f + UT_L4_OFF + 2), 53);
	cr_assert_eq(ut_get16(f + UT_L4_OFF + 4), 8 + sizeof(d));
	cr_assert_neq(ut_get16(f + UT_L4_OFF + 6), 0, "checksum computed");
	cr_assert_eq(udp_verify(f, tot), 0, "UDP checksum");
	cr_assert_arr_eq(f + UT_L4_OFF + 8, d, sizeof(d));
	cr_assert_eq(ut_ctr("udp.tx"), 1);
}

/* We never fragment: 1472 bytes fill a 1500 MTU, 1473 do not. */
UT_TEST(udp, sendto_beyond_mtu, setup_learned)
{
	static uint8_t d[1473];

	cr_assert_eq(udp_sendto(&ut.s, 40000, UT_PEER_IP, 53, d, 1473),
		     -EMSGSIZE);
	cr_assert_eq(ut_ctr("udp.tx_too_big"), 1);
	cr_assert_eq(ut_tx_pending(), 0);
	cr_assert_eq(udp_sendto(&ut.s, 40000, UT_PEER_IP, 53, d, 1472), 0);
	stack_flush(&ut.s);
	cr_assert_eq(ut_drain_tx(), 1);
	cr_assert_eq(ut_ctr("udp.tx"), 1);
}

/* RFC 768: the UDP length must agree with IP's payload length. */
UT_TEST(udp, length_mismatch_dropped, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], d[20] = { 0 };
	size_t n;

	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), 5353);
	n = build_udp(f, UT_OUR_IP, 53, 5353, d, sizeof(d));
	ut_put16(f + UT_L4_OFF + 4, 8 + 10); /* shorter than IP says */
	ut_put16(f + UT_L4_OFF + 6, 0);      /* no checksum */
	ut_input(f, n);
	n = build_udp(f, UT_OUR_IP, 53, 5353, d, sizeof(d));
	ut_put16(f + UT_L4_OFF + 4, 8 + 30); /* longer */
	ut_put16(f + UT_L4_OFF + 6, 0);
	ut_input(f, n);
	n = build_udp(f, UT_OUR_IP, 53, 5353, d, sizeof(d));
	ut_put16(f + UT_L4_OFF + 4, 7); /* shorter than its header */
	ut_put16(f + UT_L4_OFF + 6, 0);
	ut_input(f, n);
	cr_assert_eq(rx.calls, 0);
	cr_assert_eq(ut_ctr("udp.bad_length"), 3);
	cr_assert_eq(ut_tx_pending(), 0);
}

UT_TEST(udp, bad_checksum_dropped_zero_accepted, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], d[20] = { 1, 2, 3 };
	size_t n;

	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), 5353);
	n = build_udp(f, UT_OUR_IP, 53, 5353, d, sizeof(d));
	f[n - 1] ^= 0x01;
	ut_input(f, n);
	cr_assert_eq(rx.calls, 0);
	cr_assert_eq(ut_ctr("udp.bad_checksum"), 1);
	/* the same damage without a checksum goes through (RFC 768) */
	ut_put16(f + UT_L4_OFF + 6, 0);
	ut_input(f, n);
	cr_assert_eq(rx.calls, 1);
	cr_assert_eq(rx.len, sizeof(d));
	cr_assert_eq(rx.data[sizeof(d) - 1], 0x01);
}

/* Fewer than 8 bytes of UDP header in the IP payload: truncated. */
UT_TEST(udp, truncated_header_dropped, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], u[6] = { 0, 53, 0x14, 0xe9, 0, 6 };
	struct ut_ip_spec sp;
	size_t n;

	cr_assert_eq(udp_bind(&ut.s, 5353, 0, 0, on_rx, &rx), 5353);
	ut_ip_spec_default(&sp);
	sp.proto = IPPROTO_UDP;
	n = ut_build_ipv4(f, &sp, u, sizeof(u));
	ut_input(f, n);
	cr_assert_eq(rx.calls, 0);
	cr_assert_eq(ut_ctr("udp.truncated"), 1);
	cr_assert_eq(ut_tx_pending(), 0);
}

/* An unbound port: ICMP port unreachable (3/3) quoting the datagram. */
UT_TEST(udp, unbound_port_icmp_unreachable, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], r[UT_FRAME_MAX], d[16];
	unsigned tot;
	size_t n;
	int rn;

	ut_fill_payload(d, sizeof(d), 3);
	n = build_udp(f, UT_OUR_IP, 1234, 9999, d, sizeof(d));
	ut_input(f, n);
	cr_assert_eq(ut_ctr("udp.no_port"), 1);
	rn = ut_take(r, sizeof(r));
	cr_assert_gt(rn, 0, "no ICMP error sent");
	tot = ut_check_ipv4(r, rn, &ut_peer_mac, UT_PEER_IP, IPPROTO_ICMP);
	cr_assert_eq(r[UT_L4_OFF], 3, "type");
	cr_assert_eq(r[UT_L4_OFF + 1], 3, "code");
	cr_assert_eq(ut_cksum(r + UT_L4_OFF, tot - 20), 0, "ICMP checksum");
	/* the quote: the original IP header and its payload */
	cr_assert_eq(tot, 20 + 8 + n - UT_ETH_LEN);
	cr_assert_arr_eq(r + UT_L4_OFF + 8, f + UT_IP_OFF, n - UT_ETH_LEN);
	cr_assert_eq(ut_tx_pending(), 0);
}

/* ...but not for a broadcast (RFC 1122 3.2.2). */
UT_TEST(udp, unbound_port_broadcast_silent, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], d[16] = { 0 };
	size_t n = build_udp(f, UT_BCAST_IP, 1234, 9999, d, sizeof(d));

	ut_input(f, n);
	cr_assert_eq(ut_ctr("udp.no_port"), 1);
	cr_assert_eq(ut_tx_pending(), 0);
}

/* A bound socket gets its own datagrams back over loopback-free paths:
 * two ports, each sees only its own. */
UT_TEST(udp, demux_by_port, setup_learned)
{
	uint8_t f[UT_FRAME_MAX], d[4] = { 9, 9, 9, 9 };
	size_t n;

	cr_assert_eq(udp_bind(&ut.s, 1000, 0, 0, on_rx, &rx), 1000);
	cr_assert_eq(udp_bind(&ut.s, 2000, 0, 0, on_rx, &rx), 2000);
	n = build_udp(f, UT_OUR_IP, 53, 2000, d, sizeof(d));
	ut_input(f, n);
	cr_assert_eq(rx.calls, 1);
	cr_assert_eq(rx.dst_port, 2000);
	udp_unbind(&ut.s, 2000);
	ut_input(f, n);
	cr_assert_eq(rx.calls, 1);
	cr_assert_eq(ut_ctr("udp.no_port"), 1);
	cr_assert_eq(ut_drain_tx(), 1); /* the port unreachable */
}
