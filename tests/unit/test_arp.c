/*
 * test_arp.c: ARP (RFC 826) and the neighbour table: replies, learning per
 * the merge rule, malformed frames, resolution with retries and hold
 * queues, expiry, gratuitous ARP and announcements.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "tests/unit/ut_helpers.h"

static const struct rte_ether_addr mac9 = {
	.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x09 } };
#define IP9 UT_IP(198, 18, 0, 9)

static size_t arp_request_for_us(uint8_t *f)
{
	return ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &ut_peer_mac,
			    UT_PEER_IP, &ut_zero_mac, UT_OUR_IP);
}

static void check_mac_eq(const struct rte_ether_addr *got,
			 const struct rte_ether_addr *want)
{
	cr_assert(rte_is_same_ether_addr(got, want),
		  "entry MAC %02x:..:%02x, want %02x:..:%02x",
		  got->addr_bytes[0], got->addr_bytes[5],
		  want->addr_bytes[0], want->addr_bytes[5]);
}

/* "?Do I have the hardware type in ar$hrd? ... ?Am I the target protocol
 * address? ... Swap hardware and protocol fields, putting the local
 * hardware and protocol addresses in the sender fields. Set the ar$op
 * field to ares_op$REPLY. Send the packet to the (new) target hardware
 * address" (RFC 826). */
UT_TEST(arp, request_for_us_gets_reply, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	const struct arp_entry *e;
	int n;

	ut_input(f, arp_request_for_us(f));

	cr_assert_eq(ut_tx_pending(), 1, "want exactly one frame out, got %u",
		     ut_tx_pending());
	n = ut_take(f, sizeof(f));
	ut_check_arp(f, n, &ut_peer_mac, RTE_ARP_OP_REPLY, &ut_our_mac,
		     UT_OUR_IP, &ut_peer_mac, UT_PEER_IP);

	cr_expect_eq(ut_ctr("eth.rx"), 1);
	cr_expect_eq(ut_ctr("arp.rx"), 1);
	cr_expect_eq(ut_ctr("arp.rx_request"), 1);
	cr_expect_eq(ut_ctr("arp.tx_reply"), 1);
	cr_expect_eq(ut_ctr("arp.learned"), 1);
	cr_expect_eq(ut_ctr("port.tx_packets"), 1);
	cr_expect_eq(ut_ctr("arp.malformed"), 0);

	e = arp_lookup(&ut.s, UT_PEER_IP);
	cr_assert_not_null(e, "requester for us must be learned");
	cr_expect_eq(e->state, ARP_RESOLVED);
	check_mac_eq(&e->mac, &ut_peer_mac);
}

/* A request answered by unicast (as Linux does when re-validating) is
 * answered just the same. */
UT_TEST(arp, unicast_request_for_us_gets_reply, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_our_mac,
				  &ut_peer_mac, UT_PEER_IP, &ut_our_mac,
				  UT_OUR_IP);
	int n;

	ut_input(f, len);
	cr_assert_eq(ut_tx_pending(), 1);
	n = ut_take(f, sizeof(f));
	ut_check_arp(f, n, &ut_peer_mac, RTE_ARP_OP_REPLY, &ut_our_mac,
		     UT_OUR_IP, &ut_peer_mac, UT_PEER_IP);
}

/* A request padded to the Ethernet minimum (60 bytes) is fine. */
UT_TEST(arp, padded_request_gets_reply, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = arp_request_for_us(f);

	memset(f + len, 0xa5, 60 - len);
	ut_input(f, 60);
	cr_assert_eq(ut_tx_pending(), 1);
	cr_expect_eq(ut_ctr("arp.tx_reply"), 1);
	cr_expect_eq(ut_ctr("arp.malformed"), 0);
}

/* Merge rule: a request for someone else adds no entry. */
UT_TEST(arp, request_for_other_ip_not_answered, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac,
				  &ut_peer_mac, UT_PEER_IP, &ut_zero_mac,
				  UT_IP(198, 18, 0, 3));

	ut_input(f, len);
	cr_assert_eq(ut_tx_pending(), 0, "no reply for another IP");
	cr_expect_eq(ut_ctr("arp.rx"), 1);
	cr_expect_eq(ut_ctr("arp.not_for_us"), 1);
	cr_expect_eq(ut_ctr("arp.tx_reply"), 0);
	cr_expect_eq(ut_ctr("arp.learned"), 0);
	cr_expect_null(arp_lookup(&ut.s, UT_PEER_IP),
		       "sender of a request for someone else must not be "
		       "learned");
}

/* Merge rule: "If the pair <protocol type, sender protocol address> is
 * already in my translation table, update the sender hardware address
 * field" - even when the packet is not for us. */
UT_TEST(arp, known_sender_updated_by_request_for_other, ut_setup)
{
	static const struct rte_ether_addr newmac = {
		.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b } };
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &newmac,
			   UT_PEER_IP, &ut_zero_mac, UT_IP(198, 18, 0, 3));
	ut_input(f, len);
	cr_assert_eq(ut_tx_pending(), 0);
	cr_assert_not_null(arp_lookup(&ut.s, UT_PEER_IP));
	check_mac_eq(&arp_lookup(&ut.s, UT_PEER_IP)->mac, &newmac);
}

/* A reply for us from a known neighbour updates its entry. */
UT_TEST(arp, reply_updates_known_entry, ut_setup)
{
	static const struct rte_ether_addr newmac = {
		.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x0c } };
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_arp(f, RTE_ARP_OP_REPLY, &ut_our_mac, &newmac,
			   UT_PEER_IP, &ut_our_mac, UT_OUR_IP);
	ut_input(f, len);
	cr_assert_eq(ut_tx_pending(), 0, "a reply is never answered");
	cr_expect_eq(ut_ctr("arp.rx_reply"), 1);
	cr_assert_not_null(arp_lookup(&ut.s, UT_PEER_IP));
	check_mac_eq(&arp_lookup(&ut.s, UT_PEER_IP)->mac, &newmac);
}

/* ------------------------------------------------------------------ */
/* Malformed and suspicious frames                                     */

struct arp_bad_case {
	char name[24];
	int field;      /* offset inside the ARP packet to overwrite */
	int width;      /* 1 or 2 bytes; 0 = truncate to `value` bytes */
	unsigned value;
	char counter[24];
};

static struct arp_bad_case arp_bad_cases[] = {
	{ "truncated_27", 0, 0, 27, "arp.malformed" },
	{ "truncated_8", 0, 0, 8, "arp.malformed" },
	{ "truncated_0", 0, 0, 0, "arp.malformed" },
	{ "htype_6", 0, 2, 6, "arp.malformed" },
	{ "htype_0", 0, 2, 0, "arp.malformed" },
	{ "ptype_ipv6", 2, 2, 0x86dd, "arp.malformed" },
	{ "hlen_8", 4, 1, 8, "arp.malformed" },
	{ "hlen_0", 4, 1, 0, "arp.malformed" },
	{ "plen_6", 5, 1, 6, "arp.malformed" },
	{ "plen_16", 5, 1, 16, "arp.malformed" },
	{ "op_0", 6, 2, 0, "arp.malformed" },
	{ "op_3", 6, 2, 3, "arp.malformed" },
	{ "op_9", 6, 2, 9, "arp.malformed" },
	{ "op_ffff", 6, 2, 0xffff, "arp.malformed" },
};

ParameterizedTestParameters(arp, bad_frame)
{
	return cr_make_param_array(struct arp_bad_case, arp_bad_cases,
				   sizeof(arp_bad_cases) /
					   sizeof(arp_bad_cases[0]));
}

ParameterizedTest(struct arp_bad_case *c, arp, bad_frame, .init = ut_setup,
		  .fini = ut_teardown)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = arp_request_for_us(f);
	uint8_t *a = f + UT_ETH_LEN;

	cr_log_info("case %s", c->name);
	if (c->width == 0)
		len = UT_ETH_LEN + c->value;
	else if (c->width == 1)
		a[c->field] = (uint8_t)c->value;
	else
		ut_put16(a + c->field, (uint16_t)c->value);
	ut_input(f, len);

	cr_expect_eq(ut_tx_pending(), 0, "%s: nothing may be sent", c->name);
	cr_expect_eq(ut_ctr(c->counter), 1, "%s: %s is %lu", c->name,
		     c->counter, (unsigned long)ut_ctr(c->counter));
	cr_expect_eq(ut_ctr("arp.tx_reply"), 0, "%s", c->name);
	cr_expect_eq(ut_ctr("arp.learned"), 0, "%s", c->name);
	cr_expect_null(arp_lookup(&ut.s, UT_PEER_IP), "%s: learned", c->name);
	ut_end();
}

static void bad_sender(const struct rte_ether_addr *sha)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, sha,
				  UT_PEER_IP, &ut_zero_mac, UT_OUR_IP);

	/* Ethernet source stays a sane unicast; only ar$sha is bad */
	memcpy(f + 6, ut_peer_mac.addr_bytes, 6);
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0, "no reply to a bad sender");
	cr_expect_eq(ut_ctr("arp.bad_sender"), 1);
	cr_expect_eq(ut_ctr("arp.learned"), 0);
	cr_expect_null(arp_lookup(&ut.s, UT_PEER_IP));
}

UT_TEST(arp, sender_mac_broadcast, ut_setup)
{
	bad_sender(&ut_bcast_mac);
}

UT_TEST(arp, sender_mac_multicast, ut_setup)
{
	static const struct rte_ether_addr mc = {
		.addr_bytes = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 } };

	bad_sender(&mc);
}

/* Someone else claims our address: count it, learn nothing. */
UT_TEST(arp, sender_claims_our_ip, ut_setup)
{
	static const struct rte_ether_addr other = {
		.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x66 } };
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	/* as a request for us */
	len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &other,
			   UT_OUR_IP, &ut_zero_mac, UT_OUR_IP);
	ut_input(f, len);
	cr_expect_eq(ut_ctr("arp.conflict"), 1);
	cr_expect_eq(ut_ctr("arp.learned"), 0);
	cr_expect_null(arp_lookup(&ut.s, UT_OUR_IP));
	ut_drain_tx(); /* a defence (RFC 5227) is allowed, not required */

	/* as a reply */
	len = ut_build_arp(f, RTE_ARP_OP_REPLY, &ut_our_mac, &other,
			   UT_OUR_IP, &ut_our_mac, UT_OUR_IP);
	ut_input(f, len);
	cr_expect_eq(ut_ctr("arp.conflict"), 2);
	cr_expect_eq(ut_ctr("arp.learned"), 0);
	cr_expect_null(arp_lookup(&ut.s, UT_OUR_IP));
	ut_drain_tx();
}

/* ------------------------------------------------------------------ */
/* Resolution                                                          */

static void ping_from_9(uint16_t seq)
{
	uint8_t f[UT_FRAME_MAX];
	uint8_t data[8];
	struct ut_ip_spec sp;
	size_t len;

	ut_ip_spec_default(&sp);
	sp.eth_src = mac9;
	sp.src = IP9;
	ut_fill_payload(data, sizeof(data), seq);
	len = ut_build_echo(f, &sp, 8, 0x1234, seq, data, sizeof(data));
	ut_input(f, len);
}

static void take_request_for_9(void)
{
	uint8_t f[UT_FRAME_MAX];
	int n = ut_take(f, sizeof(f));

	cr_assert_geq(n, 0, "expected an ARP request for 198.18.0.9");
	ut_check_arp(f, n, &ut_bcast_mac, RTE_ARP_OP_REQUEST, &ut_our_mac,
		     UT_OUR_IP, &ut_zero_mac, IP9);
}

static void reply_from_9(void)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = ut_build_arp(f, RTE_ARP_OP_REPLY, &ut_our_mac, &mac9,
				  IP9, &ut_our_mac, UT_OUR_IP);

	ut_input(f, len);
}

UT_TEST(arp, resolves_unknown_neighbour, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	const struct arp_entry *e;
	unsigned tot;
	int n;

	ping_from_9(1);
	cr_assert_eq(ut_tx_pending(), 1, "one ARP request, reply held; got %u",
		     ut_tx_pending());
	take_request_for_9();
	cr_expect_eq(ut_ctr("arp.tx_request"), 1);
	cr_expect_null(arp_lookup(&ut.s, IP9), "unresolved is not a lookup hit");

	reply_from_9();
	cr_expect_eq(ut_ctr("arp.rx_reply"), 1);
	cr_assert_eq(ut_tx_pending(), 1, "held echo reply must go out");
	n = ut_take(f, sizeof(f));
	tot = ut_check_ipv4(f, n, &mac9, IP9, IPPROTO_ICMP);
	cr_expect_eq(tot, 20 + 8 + 8);
	cr_expect_eq(f[UT_L4_OFF], 0, "ICMP type echo reply");
	cr_expect_eq(ut_cksum(f + UT_L4_OFF, tot - 20), 0, "ICMP checksum");
	cr_expect_eq(ut_ctr("icmp.tx_echo_reply"), 1);

	e = arp_lookup(&ut.s, IP9);
	cr_assert_not_null(e);
	check_mac_eq(&e->mac, &mac9);

	/* resolved now: the next reply goes straight out */
	ping_from_9(2);
	cr_assert_eq(ut_tx_pending(), 1);
	n = ut_take(f, sizeof(f));
	ut_check_ipv4(f, n, &mac9, IP9, IPPROTO_ICMP);
	cr_expect_eq(ut_ctr("arp.tx_request"), 1, "no second request");
}

UT_TEST(arp, retries_then_gives_up, ut_setup)
{
	uint32_t retry = ut.s.conf.arp_retry_ms;
	uint32_t tries = ut.s.conf.arp_retries;

	cr_assert_gt(tries, 1, "defaults: arp_retries %u", tries);
	ping_from_9(1);
	take_request_for_9();
	for (uint32_t i = 1; i < tries; i++) {
		ut_tick(UT_T0 + (uint64_t)i * retry);
		cr_assert_eq(ut_tx_pending(), 1,
			     "retry %u at +%u ms: %u frames", i, i * retry,
			     ut_tx_pending());
		take_request_for_9();
		cr_expect_eq(ut_ctr("arp.tx_request"), i + 1);
		cr_expect_eq(ut_ctr("arp.resolve_timeout"), 0);
	}
	ut_tick(UT_T0 + (uint64_t)tries * retry);
	cr_expect_eq(ut_tx_pending(), 0, "no request after %u tries", tries);
	cr_expect_eq(ut_ctr("arp.tx_request"), tries);
	cr_expect_eq(ut_ctr("arp.resolve_timeout"), 1);
	/* the held packet is freed now, not at stack_fini */
	cr_expect_eq(rte_mempool_avail_count(ut.pool), UT_POOL_SIZE,
		     "held packets not freed on timeout: %u of %u",
		     rte_mempool_avail_count(ut.pool), UT_POOL_SIZE);
	ut_tick(UT_T0 + (uint64_t)(tries + 5) * retry);
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("arp.tx_request"), tries);
	cr_expect_null(arp_lookup(&ut.s, IP9));

	/* a late reply after the give-up sends nothing (whether it is
	 * learned is left to the implementation) */
	reply_from_9();
	cr_expect_eq(ut_tx_pending(), 0);
}

UT_TEST(arp, no_early_retry, ut_setup)
{
	uint32_t retry = ut.s.conf.arp_retry_ms;

	ping_from_9(1);
	take_request_for_9();
	ut_tick(UT_T0 + retry - 1);
	cr_expect_eq(ut_tx_pending(), 0, "retry before arp_retry_ms");
	ut_tick(UT_T0 + retry + 1000);
	cr_expect_eq(ut_tx_pending(), 1, "retry after arp_retry_ms + 1 s");
	ut_drain_tx();
}

UT_TEST(arp, hold_limit, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	uint32_t hold = ut.s.conf.arp_hold;
	unsigned extra = 3;

	cr_assert(hold >= 1 && hold <= ARP_HOLD_MAX);
	for (unsigned i = 0; i < hold + extra; i++)
		ping_from_9((uint16_t)(i + 1));
	cr_assert_eq(ut_tx_pending(), 1, "one ARP request for %u packets: %u",
		     hold + extra, ut_tx_pending());
	take_request_for_9();
	cr_expect_eq(ut_ctr("arp.tx_request"), 1);
	cr_expect_eq(ut_ctr("arp.hold_dropped"), extra);
	cr_expect_eq(rte_mempool_avail_count(ut.pool), UT_POOL_SIZE - hold,
		     "pool %u, want %u in use", rte_mempool_avail_count(ut.pool),
		     hold);

	reply_from_9();
	cr_assert_eq(ut_tx_pending(), hold, "held replies out: %u, want %u",
		     ut_tx_pending(), hold);
	for (unsigned i = 0; i < hold; i++) {
		int n = ut_take(f, sizeof(f));

		ut_check_ipv4(f, n, &mac9, IP9, IPPROTO_ICMP);
	}
}

UT_TEST(arp, entry_expires, ut_setup)
{
	uint32_t tmo = ut.s.conf.arp_timeout_ms;
	uint8_t f[UT_FRAME_MAX];

	cr_assert_gt(tmo, 1000);
	ut_input(f, arp_request_for_us(f));
	ut_drain_tx();
	cr_assert_not_null(arp_lookup(&ut.s, UT_PEER_IP));

	ut_tick(UT_T0 + tmo - 1000);
	cr_expect_not_null(arp_lookup(&ut.s, UT_PEER_IP), "expired early");
	cr_expect_eq(ut_ctr("arp.expired"), 0);

	/* past the timeout, plus one scan interval (at most a second) */
	ut_tick(UT_T0 + tmo + 1001);
	cr_expect_null(arp_lookup(&ut.s, UT_PEER_IP), "entry not expired");
	cr_expect_eq(ut_ctr("arp.expired"), 1);
	ut_drain_tx(); /* an implementation may re-probe before expiry */
}

/* Refreshing an entry (a new request from it) pushes its expiry out. */
UT_TEST(arp, refresh_delays_expiry, ut_setup)
{
	uint32_t tmo = ut.s.conf.arp_timeout_ms;
	uint8_t f[UT_FRAME_MAX];

	ut_input(f, arp_request_for_us(f));
	ut_drain_tx();
	ut_tick(UT_T0 + tmo / 2);
	ut_input(f, arp_request_for_us(f));
	ut_drain_tx();
	ut_tick(UT_T0 + tmo + 1001);
	cr_expect_not_null(arp_lookup(&ut.s, UT_PEER_IP),
			   "refreshed at +%u ms, gone at +%u ms", tmo / 2,
			   tmo + 1001);
	ut_tick(UT_T0 + tmo / 2 + tmo + 1001);
	cr_expect_null(arp_lookup(&ut.s, UT_PEER_IP));
	ut_drain_tx();
}

/* ------------------------------------------------------------------ */
/* Gratuitous ARP                                                      */

UT_TEST(arp, gratuitous_updates_entry, ut_setup)
{
	static const struct rte_ether_addr newmac = {
		.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a } };
	uint8_t f[UT_FRAME_MAX];
	size_t len;

	ut_learn_peer();
	len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &newmac,
			   UT_PEER_IP, &ut_zero_mac, UT_PEER_IP);
	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0, "a gratuitous ARP is not answered");
	cr_assert_not_null(arp_lookup(&ut.s, UT_PEER_IP));
	check_mac_eq(&arp_lookup(&ut.s, UT_PEER_IP)->mac, &newmac);
}

UT_TEST(arp, gratuitous_from_unknown_not_learned, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &mac9,
				  IP9, &ut_zero_mac, IP9);

	ut_input(f, len);
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_null(arp_lookup(&ut.s, IP9));
	cr_expect_eq(ut_ctr("arp.learned"), 0);
}

UT_TEST(arp, announce_on_start, ut_setup_env)
{
	struct stack_conf c;
	uint8_t f[UT_FRAME_MAX];
	int n;

	ut_default_conf(&c);
	ut_stack_start(&c, true);
	ut_tick(UT_T0);
	cr_assert_geq(ut_tx_pending(), 1, "no gratuitous ARP after start");
	n = ut_take(f, sizeof(f));
	/* RFC 5227 announcement: a request, spa == tpa == our address */
	ut_check_arp(f, n, &ut_bcast_mac, RTE_ARP_OP_REQUEST, &ut_our_mac,
		     UT_OUR_IP, NULL, UT_OUR_IP);
	cr_expect_geq(ut_ctr("arp.tx_gratuitous"), 1);
	ut_drain_tx();

	/* announcements stop: a minute later nothing more is sent */
	for (uint64_t t = UT_T0; t <= UT_T0 + 60000; t += 500)
		ut_tick(t);
	ut_drain_tx();
	ut_tick(UT_T0 + 120000);
	cr_expect_eq(ut_tx_pending(), 0, "announcements never stop");
}

UT_TEST(arp, no_announce_when_not_asked, ut_setup)
{
	for (uint64_t t = UT_T0; t <= UT_T0 + 5000; t += 250)
		ut_tick(t);
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("arp.tx_gratuitous"), 0);
}

/* RFC 5227 probe (spa 0.0.0.0) for our address: answered (that is our
 * defence), nothing learned. */
UT_TEST(arp, probe_for_us_answered_not_learned, ut_setup)
{
	uint8_t f[UT_FRAME_MAX];
	size_t len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac,
				  &ut_peer_mac, 0, &ut_zero_mac, UT_OUR_IP);
	int n;

	ut_input(f, len);
	cr_assert_eq(ut_tx_pending(), 1, "probe for our address unanswered");
	n = ut_take(f, sizeof(f));
	ut_check_arp(f, n, &ut_peer_mac, RTE_ARP_OP_REPLY, &ut_our_mac,
		     UT_OUR_IP, &ut_peer_mac, 0);
	cr_expect_eq(ut_ctr("arp.learned"), 0);
	cr_expect_null(arp_lookup(&ut.s, 0));
}

/* ------------------------------------------------------------------ */
/* Table limits and configuration                                      */

UT_TEST(arp, table_full_still_replies, ut_setup_env)
{
	struct stack_conf c;
	uint8_t f[UT_FRAME_MAX];

	ut_default_conf(&c);
	c.arp_entries = 2;
	ut_stack_start(&c, false);
	for (uint8_t h = 1; h <= 3; h++) {
		struct rte_ether_addr mac = ut_peer_mac;
		size_t len;

		mac.addr_bytes[5] = (uint8_t)(0x10 + h);
		len = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac, &mac,
				   UT_IP(198, 18, 0, 10 + h), &ut_zero_mac,
				   UT_OUR_IP);
		ut_input(f, len);
		cr_expect_eq(ut_tx_pending(), 1, "host %u not answered", h);
		ut_drain_tx();
	}
	cr_expect_eq(ut_ctr("arp.learned"), 2);
	cr_expect_eq(ut_ctr("arp.table_full"), 1);
	cr_expect_not_null(arp_lookup(&ut.s, UT_IP(198, 18, 0, 11)));
	cr_expect_not_null(arp_lookup(&ut.s, UT_IP(198, 18, 0, 12)));
	cr_expect_null(arp_lookup(&ut.s, UT_IP(198, 18, 0, 13)));
}

/* No slot for a new next hop: the packet is dropped (and counted), not
 * leaked. */
UT_TEST(arp, table_full_drops_unresolvable, ut_setup_env)
{
	struct stack_conf c;

	ut_default_conf(&c);
	c.arp_entries = 1;
	ut_stack_start(&c, false);
	ut_learn_peer();
	ping_from_9(1);
	cr_expect_eq(ut_tx_pending(), 0);
	cr_expect_eq(ut_ctr("arp.table_full"), 1);
	cr_expect_eq(ut_ctr("arp.tx_request"), 0);
	cr_expect_eq(rte_mempool_avail_count(ut.pool), UT_POOL_SIZE);
}

/* Expired entries free their slot for new neighbours. */
UT_TEST(arp, expiry_frees_slot, ut_setup_env)
{
	struct stack_conf c;
		ut_default_conf(&c);
	c.arp_entries = 1;
	ut_stack_start(&c, false);
	ut_learn_peer();
	ut_tick(UT_T0 + c.arp_timeout_ms + 1001);
	cr_assert_null(arp_lookup(&ut.s, UT_PEER_IP));
	ut_drain_tx();
	ping_from_9(1);
	cr_expect_eq(ut_ctr("arp.table_full"), 0);
	cr_assert_eq(ut_tx_pending(), 1);
	take_request_for_9();
	reply_from_9();
	cr_expect_eq(ut_tx_pending(), 1);
	cr_expect_not_null(arp_lookup(&ut.s, IP9));
	ut_drain_tx();
}

struct conf_case {
	char name[24];
	uint32_t arp_hold;
	uint8_t prefix_len;
	uint32_t arp_entries;
	uint32_t arp_retries;
};

static struct conf_case conf_cases[] = {
	{ "arp_hold_over_max", ARP_HOLD_MAX + 1, 24, 1024, 3 },
	{ "prefix_33", 4, 33, 1024, 3 },
	{ "arp_entries_0", 4, 24, 0, 3 },
	{ "arp_retries_0", 4, 24, 1024, 0 },
};

ParameterizedTestParameters(stack, init_rejects_bad_conf)
{
	return cr_make_param_array(struct conf_case, conf_cases,
				   sizeof(conf_cases) / sizeof(conf_cases[0]));
}

ParameterizedTest(struct conf_case *cc, stack, init_rejects_bad_conf,
		  .init = ut_setup_env, .fini = ut_teardown)
{
	struct stack_conf c;
	int rc;

	ut_default_conf(&c);
	c.arp_hold = cc->arp_hold;
	c.prefix_len = cc->prefix_len;
	c.arp_entries = cc->arp_entries;
	c.arp_retries = cc->arp_retries;
	rc = stack_init(&ut.s, 0, &c, &ut.fp.q, false, UT_T0);
	cr_expect_eq(rc, -EINVAL, "%s: stack_init = %d, want -EINVAL",
		     cc->name, rc);
	if (rc == 0)
		ut.stack_up = true;
	ut_end();
}

UT_TEST(stack, init_accepts_hold_max, ut_setup_env)
{
	struct stack_conf c;

	ut_default_conf(&c);
	c.arp_hold = ARP_HOLD_MAX;
	ut_stack_start(&c, false);
	for (unsigned i = 0; i < ARP_HOLD_MAX + 2; i++)
		ping_from_9((uint16_t)i);
	cr_expect_eq(ut_ctr("arp.hold_dropped"), 2);
	take_request_for_9();
	reply_from_9();
	cr_expect_eq(ut_drain_tx(), ARP_HOLD_MAX);
}
