/*
 * ut_helpers.c: fixture, frame builders and frame checks for the stack's
 * unit tests (see ut_helpers.h).
 */
#include "tests/unit/ut_helpers.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_mempool.h>

#include "tcpstack/stack_counters.h"

const struct rte_ether_addr ut_our_mac = {
	.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 } };
const struct rte_ether_addr ut_peer_mac = {
	.addr_bytes = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 } };
const struct rte_ether_addr ut_bcast_mac = {
	.addr_bytes = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } };
const struct rte_ether_addr ut_zero_mac = { .addr_bytes = { 0 } };

struct ut_env ut;

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

void ut_setup_env(void)
{
	char prefix[64];
	char *argv[] = {
		"ut", "--no-huge", "--no-pci", "--no-shconf", "-m", "64",
		"--no-telemetry", "-l", "0", "--log-level=lib.eal:error",
		prefix, NULL,
	};
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;

	memset(&ut, 0, sizeof(ut));
	snprintf(prefix, sizeof(prefix), "--file-prefix=ut%d", (int)getpid());
	cr_assert_geq(rte_eal_init(argc, argv), 0, "rte_eal_init failed");
	ut.eal_up = true;
	/* cache 0: every mbuf is in the ring, so avail counts are exact */
	ut.pool = rte_pktmbuf_pool_create("ut_pool", UT_POOL_SIZE, 0, 0,
					  RTE_MBUF_DEFAULT_BUF_SIZE,
					  SOCKET_ID_ANY);
	cr_assert_not_null(ut.pool, "mbuf pool");
	dp_fake_init(&ut.fp, ut.pool, &ut_our_mac, 1500);
	ut.port_up = true;
	ut.now = UT_T0;
}

void ut_default_conf(struct stack_conf *c)
{
	stack_conf_defaults(c);
	c->addr = UT_OUR_IP;
	c->prefix_len = 24;
	c->gateway = UT_PEER_IP;
}

void ut_stack_start(const struct stack_conf *c, bool announce)
{
	int rc = stack_init(&ut.s, 0, c, &ut.fp.q, announce, UT_T0);

	cr_assert_eq(rc, 0, "stack_init: %d", rc);
	ut.stack_up = true;
	ut.now = UT_T0;
}

void ut_setup(void)
{
	struct stack_conf c;

	ut_setup_env();
	ut_default_conf(&c);
	ut_stack_start(&c, false);
}

static void ut_stop(void)
{
	if (ut.stack_up) {
		ut.stack_up = false;
		stack_fini(&ut.s);
	}
	if (ut.port_up) {
		ut.port_up = false;
		dp_fake_fini(&ut.fp);
	}
}

void ut_end(void)
{
	ut_stop();
	/* STYLE point 8: every mbuf is back once stack and port are gone */
	cr_assert_eq(rte_mempool_avail_count(ut.pool), UT_POOL_SIZE,
		     "mbuf leak: %u of %u in the pool",
		     rte_mempool_avail_count(ut.pool), UT_POOL_SIZE);
}

void ut_teardown(void)
{
	bool leak = false;

	ut_stop();
	if (ut.pool != NULL) {
		unsigned avail = rte_mempool_avail_count(ut.pool);

		if (avail != UT_POOL_SIZE) {
			cr_log_error("mbuf leak: %u of %u in the pool", avail,
				     UT_POOL_SIZE);
			leak = true;
		}
		rte_mempool_free(ut.pool);
		ut.pool = NULL;
	}
	if (ut.eal_up) {
		char dir[PATH_MAX];

		ut.eal_up = false;
		snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
		rte_eal_cleanup();
		/* --no-shconf leaves the per-prefix runtime dir empty; one
		 * per test process would pile up */
		rmdir(dir);
	}
	if (leak)
		exit(1); /* Criterion ignores assertions here; fail the run */
}

/* ------------------------------------------------------------------ */
/* Driving the stack                                                   */

void ut_inject(const void *frame, size_t len)
{
	int rc = dp_fake_inject(&ut.fp, frame, len);

	cr_assert_eq(rc, 0, "dp_fake_inject(%zu bytes): %d", len, rc);
}

void ut_poll(void)
{
	struct rte_mbuf *pkts[32];
	uint16_t n;

	while ((n = dp_rx(&ut.fp.q, pkts, 32)) > 0)
		stack_input(&ut.s, pkts, n);
	stack_flush(&ut.s);
}

void ut_input(const void *frame, size_t len)
{
	ut_inject(frame, len);
	ut_poll();
}

void ut_tick(uint64_t now)
{
	ut.now = now;
	stack_tick(&ut.s, now);
	stack_flush(&ut.s);
}

int ut_take(uint8_t *buf, size_t cap)
{
	struct rte_mbuf *m = dp_fake_take_tx(&ut.fp);
	const void *p;
	uint32_t len, segsum = 0;

	if (m == NULL)
		return -1;
	len = rte_pktmbuf_pkt_len(m);
	for (const struct rte_mbuf *seg = m; seg != NULL; seg = seg->next)
		segsum += rte_pktmbuf_data_len(seg);
	if (len > cap || segsum != len) {
		rte_pktmbuf_free(m);
		cr_assert_fail("TX frame: pkt_len %u, segments %u, cap %zu",
			       len, segsum, cap);
	}
	p = rte_pktmbuf_read(m, 0, len, buf);
	if (p != NULL && p != buf)
		memcpy(buf, p, len);
	rte_pktmbuf_free(m);
	return (int)len;
}

unsigned ut_tx_pending(void)
{
	return dp_fake_tx_pending(&ut.fp);
}

unsigned ut_drain_tx(void)
{
	struct rte_mbuf *m;
	unsigned n = 0;

	while ((m = dp_fake_take_tx(&ut.fp)) != NULL) {
		rte_pktmbuf_free(m);
		n++;
	}
	return n;
}

uint64_t ut_ctr(const char *name)
{
	int i = stack_counter_index(name);

	cr_assert_geq(i, 0, "no counter named %s", name);
	return stack_counter_get(&ut.s.cnt, (unsigned)i);
}

void ut_zero_counters(void)
{
	memset(&ut.s.cnt, 0, sizeof(ut.s.cnt));
}

void ut_learn_peer(void)
{
	uint8_t f[64];
	size_t n = ut_build_arp(f, RTE_ARP_OP_REQUEST, &ut_bcast_mac,
				&ut_peer_mac, UT_PEER_IP, &ut_zero_mac,
				UT_OUR_IP);

	ut_input(f, n);
	ut_drain_tx();
	cr_assert_not_null(arp_lookup(&ut.s, UT_PEER_IP),
			   "peer not learned from its request for us");
	ut_zero_counters();
}

/* ------------------------------------------------------------------ */
/* Wire helpers                                                        */

uint16_t ut_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t ut_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

void ut_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void ut_put32(uint8_t *p, uint32_t v_be)
{
	memcpy(p, &v_be, 4);
}

uint16_t ut_cksum(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)((p[i] << 8) | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8; /* pad the odd byte with 0 */
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

void ut_fill_payload(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed * 13 + 1);
}

size_t ut_build_eth(uint8_t *f, const struct rte_ether_addr *dst,
		    const struct rte_ether_addr *src, uint16_t type)
{
	memcpy(f, dst->addr_bytes, 6);
	memcpy(f + 6, src->addr_bytes, 6);
	ut_put16(f + 12, type);
	return UT_ETH_LEN;
}

/*
 * RFC 826 packet: ar$hrd(16) ar$pro(16) ar$hln(8) ar$pln(8) ar$op(16)
 * ar$sha(6) ar$spa(4) ar$tha(6) ar$tpa(4).
 */
size_t ut_build_arp(uint8_t *f, uint16_t op, const struct rte_ether_addr *dst,
		    const struct rte_ether_addr *sha, uint32_t spa,
		    const struct rte_ether_addr *tha, uint32_t tpa)
{
	uint8_t *a = f + ut_build_eth(f, dst, sha, RTE_ETHER_TYPE_ARP);

	ut_put16(a, 1);
	ut_put16(a + 2, RTE_ETHER_TYPE_IPV4);
	a[4] = 6;
	a[5] = 4;
	ut_put16(a + 6, op);
	memcpy(a + 8, sha->addr_bytes, 6);
	ut_put32(a + 14, spa);
	memcpy(a + 18, tha->addr_bytes, 6);
	ut_put32(a + 24, tpa);
	return UT_ETH_LEN + 28;
}

void ut_ip_spec_default(struct ut_ip_spec *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->eth_dst = ut_our_mac;
	sp->eth_src = ut_peer_mac;
	sp->src = UT_PEER_IP;
	sp->dst = UT_OUR_IP;
	sp->proto = IPPROTO_ICMP;
	sp->ttl = 64;
	sp->id = 0x4242;
}

void ut_ip_fix_cksum(uint8_t *f)
{
	uint8_t *ip = f + UT_IP_OFF;
	size_t hl = (size_t)(ip[0] & 0x0f) * 4;

	ut_put16(ip + 10, 0);
	ut_put16(ip + 10, ut_cksum(ip, hl));
}

size_t ut_build_ipv4(uint8_t *f, const struct ut_ip_spec *sp,
		     const void *payload, size_t plen)
{
	uint8_t *ip = f + ut_build_eth(f, &sp->eth_dst, &sp->eth_src,
				       RTE_ETHER_TYPE_IPV4);
	size_t hl = 20 + sp->optlen;

	cr_assert(sp->optlen % 4 == 0 && sp->optlen <= 40);
	cr_assert(UT_ETH_LEN + hl + plen <= UT_FRAME_MAX);
	ip[0] = (uint8_t)(0x40 | (hl / 4));
	ip[1] = sp->tos;
	ut_put16(ip + 2, (uint16_t)(hl + plen));
	ut_put16(ip + 4, sp->id);
	ut_put16(ip + 6, sp->frag);
	ip[8] = sp->ttl;
	ip[9] = sp->proto;
	ut_put32(ip + 12, sp->src);
	ut_put32(ip + 16, sp->dst);
	memcpy(ip + 20, sp->opts, sp->optlen);
	if (plen > 0)
		memcpy(ip + hl, payload, plen);
	ut_ip_fix_cksum(f);
	return UT_ETH_LEN + hl + plen;
}

void ut_icmp_fix_cksum(uint8_t *f)
{
	uint8_t *ip = f + UT_IP_OFF;
	size_t hl = (size_t)(ip[0] & 0x0f) * 4;
	size_t tot = ut_get16(ip + 2);
	uint8_t *icmp = ip + hl;

	ut_put16(icmp + 2, 0);
	ut_put16(icmp + 2, ut_cksum(icmp, tot - hl));
}

/* RFC 792 echo: type(8) code(8) checksum(16) identifier(16) seq(16) data */
size_t ut_build_echo(uint8_t *f, const struct ut_ip_spec *sp, uint8_t type,
		     uint16_t id, uint16_t seq, const void *data, size_t dlen)
{
	uint8_t icmp[UT_FRAME_MAX];
	struct ut_ip_spec s2 = *sp;

	cr_assert(dlen + 8 <= sizeof(icmp));
	icmp[0] = type;
	icmp[1] = 0;
	ut_put16(icmp + 2, 0);
	ut_put16(icmp + 4, id);
	ut_put16(icmp + 6, seq);
	if (dlen > 0)
		memcpy(icmp + 8, data, dlen);
	ut_put16(icmp + 2, ut_cksum(icmp, dlen + 8));
	s2.proto = IPPROTO_ICMP;
	return ut_build_ipv4(f, &s2, icmp, dlen + 8);
}

size_t ut_build_ping(uint8_t *f, uint16_t seq, size_t dlen)
{
	struct ut_ip_spec sp;
	uint8_t data[UT_FRAME_MAX];

	ut_ip_spec_default(&sp);
	ut_fill_payload(data, dlen, seq);
	return ut_build_echo(f, &sp, 8, 0x1234, seq, data, dlen);
}

/* ------------------------------------------------------------------ */
/* Frame checks                                                        */

static void check_pad(const uint8_t *f, int len, int used)
{
	/* RFC 894: frames under 60 bytes are padded (with zeros) */
	cr_assert(len == used || (used < 60 && len == 60),
		  "frame length %d for %d bytes of content", len, used);
	for (int i = used; i < len; i++)
		cr_expect_eq(f[i], 0, "padding byte %d is 0x%02x", i, f[i]);
}

static void check_mac(const uint8_t *p, const struct rte_ether_addr *want,
		      const char *what)
{
	cr_assert(memcmp(p, want->addr_bytes, 6) == 0,
		  "%s is %02x:%02x:%02x:%02x:%02x:%02x, want "
		  "%02x:%02x:%02x:%02x:%02x:%02x",
		  what, p[0], p[1], p[2], p[3], p[4], p[5],
		  want->addr_bytes[0], want->addr_bytes[1],
		  want->addr_bytes[2], want->addr_bytes[3],
		  want->addr_bytes[4], want->addr_bytes[5]);
}

static void check_ip_addr(uint32_t got, uint32_t want, const char *what)
{
	cr_assert_eq(got, want, "%s is 0x%08x, want 0x%08x (network order)",
		     what, rte_be_to_cpu_32(got), rte_be_to_cpu_32(want));
}

void ut_check_arp(const uint8_t *f, int len, const struct rte_ether_addr *dst,
		  uint16_t op, const struct rte_ether_addr *sha, uint32_t spa,
		  const struct rte_ether_addr *tha, uint32_t tpa)
{
	const uint8_t *a = f + UT_ETH_LEN;

	cr_assert_geq(len, UT_ETH_LEN + 28, "ARP frame of %d bytes", len);
	check_pad(f, len, UT_ETH_LEN + 28);
	check_mac(f, dst, "eth dst");
	check_mac(f + 6, &ut_our_mac, "eth src");
	cr_assert_eq(ut_get16(f + 12), RTE_ETHER_TYPE_ARP, "ethertype 0x%04x",
		     ut_get16(f + 12));
	cr_assert_eq(ut_get16(a), 1, "htype");
	cr_assert_eq(ut_get16(a + 2), RTE_ETHER_TYPE_IPV4, "ptype");
	cr_assert_eq(a[4], 6, "hlen");
	cr_assert_eq(a[5], 4, "plen");
	cr_assert_eq(ut_get16(a + 6), op, "op %u, want %u", ut_get16(a + 6),
		     op);
	check_mac(a + 8, sha, "sha");
	check_ip_addr(ut_get32(a + 14), spa, "spa");
	if (tha != NULL)
		check_mac(a + 18, tha, "tha");
	check_ip_addr(ut_get32(a + 24), tpa, "tpa");
}

unsigned ut_check_ipv4(const uint8_t *f, int len,
		       const struct rte_ether_addr *eth_dst, uint32_t dst,
		       uint8_t proto)
{
	const uint8_t *ip = f + UT_IP_OFF;
	unsigned tot;

	cr_assert_geq(len, UT_ETH_LEN + 20, "IPv4 frame of %d bytes", len);
	check_mac(f, eth_dst, "eth dst");
	check_mac(f + 6, &ut_our_mac, "eth src");
	cr_assert_eq(ut_get16(f + 12), RTE_ETHER_TYPE_IPV4, "ethertype 0x%04x",
		     ut_get16(f + 12));
	cr_assert_eq(ip[0], 0x45, "version/IHL 0x%02x, want 0x45", ip[0]);
	tot = ut_get16(ip + 2);
	check_pad(f, len, (int)(UT_ETH_LEN + tot));
	cr_assert_eq(ut_get16(ip + 6) & 0x3fff, 0,
		     "MF/fragment offset set: 0x%04x", ut_get16(ip + 6));
	cr_assert_eq(ip[8], 64, "TTL %u, want 64", ip[8]);
	cr_assert_eq(ip[9], proto, "protocol %u, want %u", ip[9], proto);
	check_ip_addr(ut_get32(ip + 12), UT_OUR_IP, "ip src");
	check_ip_addr(ut_get32(ip + 16), dst, "ip dst");
	cr_assert_eq(ut_cksum(ip, 20), 0, "bad IPv4 header checksum 0x%04x",
		     ut_get16(ip + 10));
	return tot;
}
