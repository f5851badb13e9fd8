/*
 * test_steer_fault.c: software steering's classifier and flow ownership
 * (dp_steer.h), ownership by deterministic RSS (dp_rss.h: no NIC here, so
 * the Toeplitz against the published vectors and the owner function with
 * the key and RETA dp_rss_setup programs), and the fault-injecting queue
 * wrapper (dp_fault.h) over the fake port. Every test ends with the mbuf pool full.
 */
#include <string.h>

#include <criterion/criterion.h>

#include <rte_dev.h>
#include <rte_ethdev.h>

#include "dataplane/dp.h"
#include "dataplane/dp_fault.h"
#include "dataplane/dp_rss.h"
#include "dataplane/dp_steer.h"
#include "tcpstack/tcp.h"
#include "tcpstack/udp.h"
#include "tests/unit/ut_helpers.h"

#define SEED 0xc0ffee11u

/* A TCP or UDP frame src:sport -> dst:dport (no payload). */
static size_t build_l4(uint8_t *f, uint8_t proto, uint32_t src, uint16_t sport,
		       uint32_t dst, uint16_t dport)
{
	uint8_t l4[20] = { 0 };
	struct ut_ip_spec sp;

	ut_put16(l4, sport);
	ut_put16(l4 + 2, dport);
	if (proto == IPPROTO_TCP)
		l4[12] = 5 << 4;
	else
		ut_put16(l4 + 4, 8);
	ut_ip_spec_default(&sp);
	sp.proto = proto;
	sp.src = src;
	sp.dst = dst;
	return ut_build_ipv4(f, &sp, l4, proto == IPPROTO_TCP ? 20 : 8);
}

static unsigned classify(const uint8_t *f, size_t len, unsigned nw)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(ut.pool);
	unsigned r;

	cr_assert_not_null(m);
	cr_assert_not_null(rte_pktmbuf_append(m, (uint16_t)len));
	memcpy(rte_pktmbuf_mtod(m, uint8_t *), f, len);
	r = dp_steer_classify(m, SEED, nw);
	rte_pktmbuf_free(m);
	return r;
}

UT_TEST(steer, tcp_udp_by_owner, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX];

	for (unsigned nw = 1; nw <= 8; nw++)
		for (uint16_t p = 40000; p < 40064; p++) {
			size_t n = build_l4(f, IPPROTO_TCP, UT_PEER_IP, p,
					    UT_OUR_IP, 25);
			unsigned want = dp_steer_owner(SEED, nw, UT_PEER_IP, p,
						       UT_OUR_IP, 25);
			cr_assert_lt(want, nw);
			cr_assert_eq(classify(f, n, nw), want);
			n = build_l4(f, IPPROTO_UDP, UT_PEER_IP, 53, UT_OUR_IP, p);
			cr_assert_eq(classify(f, n, nw),
				     dp_steer_owner(SEED, nw, UT_PEER_IP, 53,
						    UT_OUR_IP, p));
		}
}

/* Consecutive local ports go round the workers: what makes an active
 * open's port choice possible. */
UT_TEST(steer, local_port_steps_workers, ut_setup_env)
{
	for (unsigned nw = 2; nw <= 8; nw++) {
		unsigned o = dp_steer_owner(SEED, nw, UT_PEER_IP, 25, UT_OUR_IP,
					    40000);
		for (uint16_t p = 40001; p < 40000 + 3 * nw; p++) {
			o = (o + 1) % nw;
			cr_assert_eq(dp_steer_owner(SEED, nw, UT_PEER_IP, 25,
						    UT_OUR_IP, p), o);
		}
	}
}

UT_TEST(steer, arp_to_all, ut_setup_env)
{
	uint8_t f[64];
	size_t n = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac,
				&ut_peer_mac, UT_PEER_IP, &ut_zero_mac,
				UT_OUR_IP);

	cr_assert_eq(classify(f, n, 4), DP_STEER_ALL);
}

/* Frames without a flow, and anything too short to read: LOCAL. */
UT_TEST(steer, malformed_and_portless_local, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX];
	size_t n;

	n = ut_build_ping(f, 1, 8);
	cr_assert_eq(classify(f, n, 4), DP_STEER_LOCAL, "echo request");
	cr_assert_eq(classify(f, 10, 4), DP_STEER_LOCAL, "short Ethernet");
	n = build_l4(f, IPPROTO_TCP, UT_PEER_IP, 40000, UT_OUR_IP, 25);
	cr_assert_eq(classify(f, UT_ETH_LEN + 19, 4), DP_STEER_LOCAL,
		     "short IP header");
	cr_assert_eq(classify(f, UT_L4_OFF + 3, 4), DP_STEER_LOCAL,
		     "ports cut off");
	f[UT_IP_OFF + 6] = 0x20; /* MF: a first fragment */
	ut_ip_fix_cksum(f);
	cr_assert_eq(classify(f, n, 4), DP_STEER_LOCAL, "fragment");
	n = build_l4(f, IPPROTO_TCP, UT_PEER_IP, 40000, UT_OUR_IP, 25);
	f[UT_IP_OFF] = 0x44; /* IHL 4: bad */
	cr_assert_eq(classify(f, n, 4), DP_STEER_LOCAL, "IHL < 5");
	n = build_l4(f, 47, UT_PEER_IP, 40000, UT_OUR_IP, 25);
	cr_assert_eq(classify(f, n, 4), DP_STEER_LOCAL, "GRE");
	n = build_l4(f, IPPROTO_TCP, UT_PEER_IP, 40000, UT_OUR_IP, 25);
	ut_put16(f + 12, RTE_ETHER_TYPE_IPV6);
	cr_assert_eq(classify(f, n, 4), DP_STEER_LOCAL, "IPv6");
}

/* An ICMP error goes to the owner of the flow it quotes (ours, so the
 * quote's source is our side), as the replies of that flow do. */
UT_TEST(steer, icmp_error_by_quoted_flow, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX], icmp[8 + 20 + 8], q[UT_FRAME_MAX];
	struct ut_ip_spec sp;

	for (unsigned nw = 2; nw <= 8; nw++)
		for (uint16_t p = 50000; p < 50016; p++) {
			size_t qn = build_l4(q, IPPROTO_TCP, UT_OUR_IP, p,
					     UT_PEER_IP, 25);
			size_t rn = build_l4(f, IPPROTO_TCP, UT_PEER_IP, 25,
					     UT_OUR_IP, p);
			unsigned want = classify(f, rn, nw), n;

			(void)qn;
			memset(icmp, 0, sizeof(icmp));
			icmp[0] = 3;
			icmp[1] = 3;
			memcpy(icmp + 8, q + UT_IP_OFF, 28);
			ut_put16(icmp + 2, ut_cksum(icmp, sizeof(icmp)));
			ut_ip_spec_default(&sp);
			n = (unsigned)ut_build_ipv4(f, &sp, icmp, sizeof(icmp));
			cr_assert_eq(classify(f, n, nw), want, "nw %u port %u",
				     nw, p);
			/* a quote cut short of the ports: LOCAL */
			cr_assert_eq(classify(f, n - 5, nw), DP_STEER_LOCAL);
		}
}

UT_TEST(steer, one_worker_owns_all, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX];
	size_t n = build_l4(f, IPPROTO_TCP, UT_PEER_IP, 1, UT_OUR_IP, 2);

	cr_assert_eq(dp_steer_owner(SEED, 1, 1, 2, 3, 4), 0);
	cr_assert_eq(classify(f, n, 1), 0);
}

static const struct tcp_callbacks no_cb;

/* For 2..8 workers, every port tcp_connect picks on stack k maps back to
 * k: the SYN-ACK for it is classified to k. */
UT_TEST(steer, connect_ports_owned, ut_setup_env)
{
	struct stack_conf c;

	ut_default_conf(&c);
	c.arp_timeout_ms = 3600 * 1000;
	for (unsigned nw = 2; nw <= 8; nw++)
		for (unsigned k = 0; k < nw; k++) {
			cr_assert_eq(stack_init(&ut.s, k, &c, &ut.fp.q, false,
						UT_T0), 0);
			ut.stack_up = true;
			stack_set_steering(&ut.s, nw, SEED);
			ut_learn_peer();
			for (int i = 0; i < 12; i++) {
				struct tcp_conn *conn;
				uint8_t f[UT_FRAME_MAX], r[UT_FRAME_MAX];
				uint16_t lport;
				size_t rn;
				int n;

				cr_assert_eq(tcp_connect(&ut.s, UT_PEER_IP, 25,
							 &no_cb, NULL, &conn), 0);
				stack_flush(&ut.s);
				n = ut_take(f, sizeof(f));
				cr_assert_gt(n, UT_L4_OFF + 4, "no SYN");
				lport = ut_get16(f + UT_L4_OFF);
				cr_assert_eq(dp_steer_owner(SEED, nw, UT_PEER_IP,
							    25, UT_OUR_IP,
							    lport), k);
				rn = build_l4(r, IPPROTO_TCP, UT_PEER_IP, 25,
					      UT_OUR_IP, lport);
				cr_assert_eq(classify(r, rn, nw), k,
					     "nw %u stack %u port %u", nw, k,
					     lport);
			}
			stack_fini(&ut.s);
			ut.stack_up = false;
			ut_drain_tx();
		}
}

/* ------------------------------------------------------------------ */
/* dp_rss                                                              */

#define IP4(a, b, c, d) UT_IP(a, b, c, d)

/* The Microsoft RSS verification suite ("Verifying the RSS Hash
 * Calculation"), as DPDK's test_thash.c carries it: the standard 40-byte
 * key, and for each packet source -> destination the IPv4-only hash and
 * the IPv4/TCP hash. */
static const uint8_t ms_key[40] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
	0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
	0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
	0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

static const struct {
	uint32_t src, dst; /* host order */
	uint16_t sport, dport;
	uint32_t l3, l3l4;
} ms_vec[] = {
	{ RTE_IPV4(66, 9, 149, 187), RTE_IPV4(161, 142, 100, 80), 2794, 1766,
	  0x323e8fc2, 0x51ccc178 },
	{ RTE_IPV4(199, 92, 111, 2), RTE_IPV4(65, 69, 140, 83), 14230, 4739,
	  0xd718262a, 0xc626b0ea },
	{ RTE_IPV4(24, 19, 198, 95), RTE_IPV4(12, 22, 207, 184), 12898, 38024,
	  0xd2d0a5de, 0x5c2b394a },
	{ RTE_IPV4(38, 27, 205, 30), RTE_IPV4(209, 142, 163, 6), 48228, 2217,
	  0x82989176, 0xafc7327f },
	{ RTE_IPV4(153, 39, 163, 191), RTE_IPV4(202, 188, 127, 2), 44251, 1303,
	  0x5d1809c5, 0x10e828a2 },
};

UT_TEST(rss, toeplitz_microsoft_vectors, ut_setup_env)
{
	struct dp_rss r;

	dp_rss_table_init(&r, 40, 128, 2);
	memcpy(r.key, ms_key, sizeof(ms_key));
	for (size_t i = 0; i < sizeof(ms_vec) / sizeof(ms_vec[0]); i++) {
		uint32_t src = rte_cpu_to_be_32(ms_vec[i].src);
		uint32_t dst = rte_cpu_to_be_32(ms_vec[i].dst);
		uint32_t t[3] = { ms_vec[i].src, ms_vec[i].dst,
				  (uint32_t)ms_vec[i].sport << 16 |
					  ms_vec[i].dport };

		cr_assert_eq(rte_softrss(t, 2, ms_key), ms_vec[i].l3,
			     "vector %zu IPv4", i);
		cr_assert_eq(rte_softrss(t, 3, ms_key), ms_vec[i].l3l4,
			     "vector %zu IPv4/TCP", i);
		/* our tuple as received: remote = source */
		cr_assert_eq(dp_rss_hash(&r, src, ms_vec[i].sport, dst,
					 ms_vec[i].dport),
			     ms_vec[i].l3l4, "vector %zu dp_rss_hash", i);
		cr_assert_eq(dp_rss_owner(&r, src, ms_vec[i].sport, dst,
					  ms_vec[i].dport),
			     (ms_vec[i].l3l4 & 127) % 2);
	}
}

static void on_udp(struct stack *s, void *user, uint32_t src_ip,
		   uint16_t src_port, uint16_t dst_port, const uint8_t *data,
		   uint16_t len)
{
	(void)s, (void)user, (void)src_ip, (void)src_port, (void)dst_port;
	(void)data, (void)len;
}

static uint32_t rand_ip(void)
{
	return rte_cpu_to_be_32((uint32_t)rte_rand());
}

static uint16_t rand_port(void)
{
	return (uint16_t)(1 + rte_rand() % 65535);
}

/* The key dp_rss_setup programs (0x6d5a repeated, 40 or 52 bytes): the
 * same hash both ways; dp_steer_owner follows the RETA while RSS is
 * active, and every worker owns a share of the flows. */
UT_TEST(rss, symmetric_key_and_owner, ut_setup_env)
{
	static struct dp_rss r;

	for (uint16_t klen = 40; klen <= 52; klen += 12)
		for (unsigned nw = 2; nw <= 8; nw++) {
			unsigned seen[8] = { 0 };

			dp_rss_table_init(&r, klen, 512, nw);
			cr_assert_eq(r.key[0], 0x6d);
			cr_assert_eq(r.key[1], 0x5a);
			cr_assert_eq(r.key[klen - 1], 0x5a);
			cr_assert_eq(r.reta[nw], 0);
			cr_assert_eq(r.reta[511], 511 % nw);
			dp_rss_active = &r;
			for (int i = 0; i < 2000; i++) {
				uint32_t a = rand_ip(), b = rand_ip();
				uint16_t pa = rand_port(), pb = rand_port();
				uint32_t h = dp_rss_hash(&r, a, pa, b, pb);
				unsigned o = dp_steer_owner(SEED, nw, a, pa, b,
							    pb);

				cr_assert_eq(dp_rss_hash(&r, b, pb, a, pa), h);
				cr_assert_eq(o, r.reta[h % 512]);
				cr_assert_eq(o, (h & 511) % nw);
				cr_assert_eq(dp_steer_owner(SEED + 1, nw, a, pa,
							    b, pb), o,
					     "the seed plays no part");
				seen[o]++;
			}
			for (unsigned k = 0; k < nw; k++)
				cr_assert_gt(seen[k], 2000 / nw / 2,
					     "klen %u nw %u worker %u: %u", klen,
					     nw, k, seen[k]);
			/* the classifier (software steering after a failed
			 * runtime check) uses the same owner */
			for (int i = 0; i < 64; i++) {
				uint8_t f[UT_FRAME_MAX];
				uint16_t pa = rand_port(), pb = rand_port();
				size_t n = build_l4(f, i & 1 ? IPPROTO_UDP :
							       IPPROTO_TCP,
						    UT_PEER_IP, pa, UT_OUR_IP,
						    pb);
				cr_assert_eq(classify(f, n, nw),
					     dp_rss_owner(&r, UT_PEER_IP, pa,
							  UT_OUR_IP, pb));
			}
			dp_rss_active = NULL;
		}
}

/* dp_steer_l4: the tuple as received, for TCP and UDP only. */
UT_TEST(rss, l4_tuple, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX];
	struct rte_mbuf *m = rte_pktmbuf_alloc(ut.pool);
	uint32_t rip = 0, lip = 0;
	uint16_t rport = 0, lport = 0;
	size_t n;

	cr_assert_not_null(m);
	n = build_l4(f, IPPROTO_TCP, UT_PEER_IP, 40000, UT_OUR_IP, 25);
	memcpy(rte_pktmbuf_append(m, (uint16_t)n), f, n);
	cr_assert_eq(dp_steer_l4(m, &rip, &rport, &lip, &lport), IPPROTO_TCP);
	cr_assert_eq(rip, UT_PEER_IP);
	cr_assert_eq(lip, UT_OUR_IP);
	cr_assert_eq(rport, 40000);
	cr_assert_eq(lport, 25);
	rte_pktmbuf_reset(m);
	n = build_l4(f, IPPROTO_UDP, UT_PEER_IP, 53, UT_OUR_IP, 40001);
	memcpy(rte_pktmbuf_append(m, (uint16_t)n), f, n);
	cr_assert_eq(dp_steer_l4(m, &rip, &rport, &lip, &lport), IPPROTO_UDP);
	cr_assert_eq(rport, 53);
	cr_assert_eq(lport, 40001);
	f[UT_IP_OFF + 6] = 0x20; /* MF */
	memcpy(rte_pktmbuf_mtod(m, uint8_t *), f, n);
	cr_assert_eq(dp_steer_l4(m, &rip, &rport, &lip, &lport), 0);
	rte_pktmbuf_reset(m);
	n = ut_build_ping(f, 1, 8);
	memcpy(rte_pktmbuf_append(m, (uint16_t)n), f, n);
	cr_assert_eq(dp_steer_l4(m, &rip, &rport, &lip, &lport), 0);
	rte_pktmbuf_free(m);
}

/* Under RSS, every port tcp_connect picks on stack k, for many random
 * destinations, hashes (as the NIC would hash the SYN-ACK) to a RETA
 * entry of worker k; and so does each ephemeral UDP port. */
UT_TEST(rss, connect_ports_owned, ut_setup_env)
{
	static struct dp_rss r;
	struct stack_conf c;

	ut_default_conf(&c);
	c.arp_timeout_ms = 3600 * 1000;
	for (unsigned nw = 2; nw <= 8; nw += 3) {
		dp_rss_table_init(&r, nw == 5 ? 52 : 40, 128, nw);
		dp_rss_active = &r;
		for (unsigned k = 0; k < nw; k++) {
			cr_assert_eq(stack_init(&ut.s, k, &c, &ut.fp.q, false,
						UT_T0), 0);
			ut.stack_up = true;
			stack_set_steering(&ut.s, nw, SEED);
			ut_learn_peer();
			for (int i = 0; i < 48; i++) {
				struct tcp_conn *conn;
				uint8_t f[UT_FRAME_MAX];
				uint32_t dst = IP4(10, (unsigned)rte_rand() % 256,
						   (unsigned)rte_rand() % 256,
						   1 + (unsigned)rte_rand() % 254);
				uint16_t dport = rand_port(), lport;
				int n, up;

				cr_assert_eq(tcp_connect(&ut.s, dst, dport,
							 &no_cb, NULL, &conn), 0);
				stack_flush(&ut.s);
				n = ut_take(f, sizeof(f));
				cr_assert_gt(n, UT_L4_OFF + 4, "no SYN");
				cr_assert_eq(ut_get16(f + UT_L4_OFF + 2), dport);
				lport = ut_get16(f + UT_L4_OFF);
				cr_assert_eq(dp_rss_owner(&r, dst, dport,
							  UT_OUR_IP, lport), k,
					     "nw %u stack %u port %u", nw, k,
					     lport);
				/* the hash of our SYN is that of its reply */
				cr_assert_eq(dp_rss_hash(&r, UT_OUR_IP, lport,
							 dst, dport),
					     dp_rss_hash(&r, dst, dport,
							 UT_OUR_IP, lport));
				up = udp_bind(&ut.s, 0, dst, dport, on_udp,
					      NULL);
				cr_assert_gt(up, 0);
				cr_assert_eq(dp_rss_owner(&r, dst, dport,
							  UT_OUR_IP,
							  (uint16_t)up), k);
				udp_unbind(&ut.s, (uint16_t)up);
			}
			stack_fini(&ut.s);
			ut.stack_up = false;
			ut_drain_tx();
		}
		dp_rss_active = NULL;
	}
}

/* dp_rss_setup against a PMD that keeps a software key and RETA
 * (net_null, loaded as an EAL plugin): programs, reads back, and makes
 * dp_steer_owner follow the RETA. (net_tap reports no RETA and takes
 * the software steering path; no real NIC here.) */
UT_TEST(rss, setup_on_net_null, ut_setup_env)
{
	static struct dp dp;
	struct rte_eth_conf pc;
	uint16_t port;
	int rc;

	if (rte_eal_hotplug_add("vdev", "net_null_rss", "size=64") != 0 ||
	    rte_eth_dev_get_port_by_name("net_null_rss", &port) != 0) {
		cr_log_warn("net_null not available: test skipped");
		return;
	}
	memset(&dp, 0, sizeof(dp));
	dp.port_id = port;
	dp.nworkers = 2;
	dp.nqueues = 2;
	cr_assert_eq(rte_eth_dev_info_get(port, &dp.info), 0);
	memset(&pc, 0, sizeof(pc));
	pc.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
	pc.rx_adv_conf.rss_conf.rss_hf = dp.info.flow_type_rss_offloads &
		(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
	cr_assert_eq(rte_eth_dev_configure(port, 2, 2, &pc), 0);
	for (uint16_t q = 0; q < 2; q++) {
		cr_assert_eq(rte_eth_rx_queue_setup(port, q, 64, 0, NULL,
						    ut.pool), 0);
		cr_assert_eq(rte_eth_tx_queue_setup(port, q, 64, 0, NULL), 0);
	}
	cr_assert_eq(rte_eth_dev_start(port), 0);
	rc = dp_rss_setup(&dp);
	cr_assert_eq(rc, 0, "dp_rss_setup on %s (reta %u key %u hf %#llx): %d",
		     dp.info.driver_name, dp.info.reta_size,
		     dp.info.hash_key_size,
		     (unsigned long long)dp.info.flow_type_rss_offloads, rc);
	cr_assert_eq(dp_rss_active, &dp.rss);
	cr_assert_eq(dp.rss.reta_size, dp.info.reta_size);
	cr_assert_eq(dp.rss.key_len, dp.info.hash_key_size ?
				     dp.info.hash_key_size : 40);
	for (int i = 0; i < 256; i++) {
		uint32_t a = rand_ip();
		uint16_t pa = rand_port(), pb = rand_port();
		uint32_t h = dp_rss_hash(&dp.rss, a, pa, UT_OUR_IP, pb);

		cr_assert_eq(dp_steer_owner(SEED, 2, a, pa, UT_OUR_IP, pb),
			     (h % dp.rss.reta_size) % 2);
	}
	/* one worker: nothing to program */
	dp.nworkers = 1;
	cr_assert_neq(dp_rss_setup(&dp), 0);
	cr_assert_null(dp_rss_active);
	cr_assert_eq(rte_eth_dev_stop(port), 0);
	rte_eth_dev_close(port);
}

/* ------------------------------------------------------------------ */
/* dp_fault                                                            */

static struct dp_fault fault;
static struct dp_fault_conf fconf;

static void wrap(void)
{
	dp_fault_wrap(&ut.fp.q, &fault, &fconf, 0);
}

static void inject_n(unsigned n)
{
	uint8_t f[UT_FRAME_MAX];

	for (unsigned i = 0; i < n; i++) {
		size_t len = ut_build_ping(f, (uint16_t)i, 32);
		ut_inject(f, len);
	}
}

static unsigned rx_all(struct rte_mbuf **pkts, unsigned cap)
{
	return dp_rx(&ut.fp.q, pkts, (uint16_t)cap);
}

static void free_n(struct rte_mbuf **pkts, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		rte_pktmbuf_free(pkts[i]);
}

UT_TEST(fault, rx_loss_all_dropped, ut_setup_env)
{
	struct rte_mbuf *p[64];

	memset(&fconf, 0, sizeof(fconf));
	fconf.rx_loss_ppm = 1000000;
	wrap();
	inject_n(20);
	cr_assert_eq(rx_all(p, 64), 0);
	cr_assert_eq(fault.stats.rx_dropped, 20);
	dp_fault_fini(&fault);
}

UT_TEST(fault, rx_duplicate_doubles, ut_setup_env)
{
	struct rte_mbuf *p[64];
	unsigned n;

	memset(&fconf, 0, sizeof(fconf));
	fconf.rx_duplicate_ppm = 1000000;
	wrap();
	inject_n(10);
	n = rx_all(p, 64);
	cr_assert_eq(n, 20);
	cr_assert_eq(fault.stats.rx_duplicated, 10);
	for (unsigned i = 0; i < n; i += 2) {
		cr_assert_eq(rte_pktmbuf_pkt_len(p[i]),
			     rte_pktmbuf_pkt_len(p[i + 1]));
		cr_assert_arr_eq(rte_pktmbuf_mtod(p[i], uint8_t *),
				 rte_pktmbuf_mtod(p[i + 1], uint8_t *),
				 rte_pktmbuf_pkt_len(p[i]));
		cr_assert_neq(p[i], p[i + 1]);
	}
	free_n(p, n);
	/* no room for the copies: never more than asked for, and the
	 * originals still all come through */
	inject_n(4);
	n = rx_all(p, 4);
	cr_assert_eq(n, 4);
	cr_assert_eq(fault.stats.rx_duplicated, 10);
	free_n(p, n);
	inject_n(4);
	n = rx_all(p, 5);
	cr_assert_eq(n, 5);
	cr_assert_eq(fault.stats.rx_duplicated, 11);
	free_n(p, n);
	dp_fault_fini(&fault);
}

/* One bit flipped past the Ethernet header; what the port verified is
 * forgotten, so the stack checks the sums itself. */
UT_TEST(fault, rx_corrupt_flips_one_bit, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX];
	struct rte_mbuf *p[8];
	size_t len = ut_build_ping(f, 1, 64);
	unsigned diff = 0;
	const uint8_t *g;

	memset(&fconf, 0, sizeof(fconf));
	fconf.rx_corrupt_ppm = 1000000;
	wrap();
	ut_inject(f, len);
	ut.fp.rxq[ut.fp.rx_head % DP_FAKE_QLEN]->ol_flags |=
		RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD;
	cr_assert_eq(rx_all(p, 8), 1);
	cr_assert_eq(fault.stats.rx_corrupted, 1);
	cr_assert_eq(p[0]->ol_flags & (RTE_MBUF_F_RX_IP_CKSUM_MASK |
				       RTE_MBUF_F_RX_L4_CKSUM_MASK), 0);
	g = rte_pktmbuf_mtod(p[0], const uint8_t *);
	cr_assert_eq(rte_pktmbuf_pkt_len(p[0]), len);
	cr_assert_arr_eq(g, f, UT_ETH_LEN, "Ethernet header untouched");
	for (size_t i = UT_ETH_LEN; i < len; i++)
		diff += (unsigned)__builtin_popcount(g[i] ^ f[i]);
	cr_assert_eq(diff, 1);
	free_n(p, 1);
	dp_fault_fini(&fault);
}

/* A frame held back comes after the next one; the last held frame is
 * freed by dp_fault_fini. */
UT_TEST(fault, rx_reorder_swaps, ut_setup_env)
{
	struct rte_mbuf *p[8];
	unsigned n;

	memset(&fconf, 0, sizeof(fconf));
	fconf.rx_reorder_ppm = 1000000;
	wrap();
	inject_n(3);
	n = rx_all(p, 8);
	cr_assert_eq(n, 2);
	/* ping seq is at ICMP offset 6 */
	cr_assert_eq(ut_get16(rte_pktmbuf_mtod(p[0], uint8_t *) + UT_L4_OFF + 6), 1);
	cr_assert_eq(ut_get16(rte_pktmbuf_mtod(p[1], uint8_t *) + UT_L4_OFF + 6), 0);
	cr_assert_not_null(fault.held);
	cr_assert_eq(fault.stats.rx_reordered, 2);
	free_n(p, n);
	dp_fault_fini(&fault);
	cr_assert_null(fault.held);
}

/* With a frame held from an earlier call, a burst never returns more
 * than asked for (the worker's pkts array), at any rate. */
UT_TEST(fault, rx_never_overfills_burst, ut_setup_env)
{
	struct rte_mbuf *p[9];
	unsigned total = 0, n;

	memset(&fconf, 0, sizeof(fconf));
	fconf.rx_reorder_ppm = 500000;
	fconf.rx_duplicate_ppm = 500000;
	fconf.seed = 42;
	wrap();
	for (unsigned round = 0; round < 40; round++) {
		unsigned cap = 1 + round % 8;
		inject_n(cap);
		p[cap] = (struct rte_mbuf *)0x1; /* canary */
		n = rx_all(p, cap);
		cr_assert_leq(n, cap, "round %u", round);
		cr_assert_eq(p[cap], (struct rte_mbuf *)0x1);
		total += n;
		free_n(p, n);
	}
	/* drain what is still queued or held */
	while ((n = rx_all(p, 8)) > 0) {
		total += n;
		free_n(p, n);
	}
	/* every frame came out once, plus its copies, but one still held */
	cr_assert_eq(total + (fault.held != NULL), 180 + fault.stats.rx_duplicated);
	dp_fault_fini(&fault);
	/* with room to spare, copies are made */
	inject_n(4);
	n = rx_all(p, 8);
	cr_assert_gt(fault.stats.rx_duplicated, 0);
	free_n(p, n);
	dp_fault_fini(&fault);
}

UT_TEST(fault, tx_loss_and_duplicate, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX];
	struct rte_mbuf *m[4];
	size_t len = ut_build_ping(f, 1, 16);

	memset(&fconf, 0, sizeof(fconf));
	fconf.tx_loss_ppm = 1000000;
	wrap();
	for (int i = 0; i < 4; i++) {
		m[i] = rte_pktmbuf_alloc(ut.pool);
		cr_assert_not_null(m[i]);
		memcpy(rte_pktmbuf_append(m[i], (uint16_t)len), f, len);
	}
	cr_assert_eq(dp_tx(&ut.fp.q, m, 4), 4);
	cr_assert_eq(ut_tx_pending(), 0);
	cr_assert_eq(fault.stats.tx_dropped, 4);
	fconf.tx_loss_ppm = 0;
	fconf.tx_duplicate_ppm = 1000000;
	for (int i = 0; i < 3; i++) {
		m[i] = rte_pktmbuf_alloc(ut.pool);
		cr_assert_not_null(m[i]);
		memcpy(rte_pktmbuf_append(m[i], (uint16_t)len), f, len);
	}
	cr_assert_eq(dp_tx(&ut.fp.q, m, 3), 3);
	cr_assert_eq(ut_tx_pending(), 6);
	cr_assert_eq(fault.stats.tx_duplicated, 3);
	cr_assert_eq(ut_drain_tx(), 6);
	dp_fault_fini(&fault);
}

/* TX corruption first computes the sums the NIC would have: the damage
 * is then caught by the receiver's checksum. */
UT_TEST(fault, tx_corrupt_after_offloaded_checksums, ut_setup_env)
{
	uint8_t f[UT_FRAME_MAX], g[UT_FRAME_MAX];
	struct rte_mbuf *m;
	size_t len = build_l4(f, IPPROTO_UDP, UT_OUR_IP, 1000, UT_PEER_IP, 53);
	int n;

	memset(&fconf, 0, sizeof(fconf));
	fconf.tx_corrupt_ppm = 1000000;
	wrap();
	m = rte_pktmbuf_alloc(ut.pool);
	cr_assert_not_null(m);
	memcpy(rte_pktmbuf_append(m, (uint16_t)len), f, len);
	/* as the stack leaves it for the NIC: IP sum 0, UDP pseudo sum */
	ut_put16(rte_pktmbuf_mtod(m, uint8_t *) + UT_IP_OFF + 10, 0);
	m->ol_flags = RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM |
		      RTE_MBUF_F_TX_UDP_CKSUM;
	m->l2_len = UT_ETH_LEN;
	m->l3_len = 20;
	cr_assert_eq(dp_tx(&ut.fp.q, &m, 1), 1);
	cr_assert_eq(fault.stats.tx_corrupted, 1);
	n = ut_take(g, sizeof(g));
	cr_assert_eq(n, (int)len);
	/* exactly one bit differs from the frame with correct sums, and
	 * it is past the Ethernet header */
	{
		unsigned diff = 0;
		uint8_t ph[12];
		uint32_t sum;
		/* the correct UDP sum of f */
		memcpy(ph, f + UT_IP_OFF + 12, 8);
		ph[8] = 0;
		ph[9] = IPPROTO_UDP;
		ut_put16(ph + 10, 8);
		ut_put16(f + UT_L4_OFF + 6, 0);
		sum = (uint16_t)~ut_cksum(ph, 12);
		sum += (uint16_t)~ut_cksum(f + UT_L4_OFF, 8);
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		ut_put16(f + UT_L4_OFF + 6, (uint16_t)~sum);
		for (size_t i = 0; i < len; i++)
			diff += (unsigned)__builtin_popcount(g[i] ^ f[i]);
		cr_assert_eq(diff, 1);
		cr_assert_arr_eq(g, f, UT_ETH_LEN);
	}
	dp_fault_fini(&fault);
}
