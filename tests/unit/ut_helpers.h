/*
 * ut_helpers.h: the shared fixture and frame tools of the stack's unit tests.
 *
 * Each Criterion test runs in its own process, so the fixture is one
 * file-scope struct (ut): DPDK's EAL in memory, an exact-count mbuf pool
 * (no per-lcore cache), a dp_fakeport and one stack on it. UT_TEST() wraps a
 * test body so that it ends with ut_end(), which stops the stack and the
 * port and asserts that every mbuf is back in the pool (an assertion in a
 * Criterion .fini is only logged, never fails the test, so the drain check
 * has to live in the body).
 *
 * Frames are built byte by byte in wire order (not through DPDK's structs)
 * so that a test reads like the RFC's diagrams; checksums are computed here,
 * independently of the stack, and each builder's output can be mutated and
 * re-checksummed with ut_ip_fix_cksum() / ut_icmp_fix_cksum().
 *
 * Addresses: UT_OUR_IP is 198.18.0.2/24 with MAC 02:00:00:00:00:02, the peer
 * (and gateway) is 198.18.0.1 with MAC 02:00:00:00:00:01. All IPv4
 * addresses in this API are in network byte order.
 */
#ifndef DPMAIL_TESTS_UT_HELPERS_H
#define DPMAIL_TESTS_UT_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include <criterion/criterion.h>
#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dataplane/dp_fakeport.h"
#include "tcpstack/arp.h"
#include "tcpstack/stack.h"

#define UT_POOL_SIZE 511
#define UT_T0 10000ULL /* stack time at start, ms */
#define UT_FRAME_MAX 2048

/* a.b.c.d in network byte order */
#define UT_IP(a, b, c, d)                                                      \
	rte_cpu_to_be_32(((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) |     \
			 ((uint32_t)(c) << 8) | (uint32_t)(d))
#define UT_OUR_IP UT_IP(198, 18, 0, 2)
#define UT_PEER_IP UT_IP(198, 18, 0, 1)
#define UT_BCAST_IP UT_IP(198, 18, 0, 255)

extern const struct rte_ether_addr ut_our_mac;   /* 02:00:00:00:00:02 */
extern const struct rte_ether_addr ut_peer_mac;  /* 02:00:00:00:00:01 */
extern const struct rte_ether_addr ut_bcast_mac; /* ff:ff:ff:ff:ff:ff */
extern const struct rte_ether_addr ut_zero_mac;

struct ut_env {
	struct rte_mempool *pool;
	struct dp_fakeport fp;
	struct stack s;
	bool eal_up;
	bool port_up;
	bool stack_up;
	uint64_t now;
};

extern struct ut_env ut;

/* Criterion .init: EAL, pool, fake port and a stack with ut_default_conf. */
void ut_setup(void);
/* Criterion .init: EAL, pool and fake port; the test calls ut_stack_start. */
void ut_setup_env(void);
/* stack_conf_defaults, 198.18.0.2/24, gateway 198.18.0.1. */
void ut_default_conf(struct stack_conf *c);
/* stack_init at UT_T0; asserts it returns 0. */
void ut_stack_start(const struct stack_conf *c, bool announce);
/* Stops stack and port, asserts the pool is full. Called by UT_TEST. */
void ut_end(void);
/* Criterion .fini: whatever ut_end did not; exits 1 on a leak. */
void ut_teardown(void);

/* Test whose body ends with the drain check. init: ut_setup/ut_setup_env. */
#define UT_TEST(suite, name, init_fn, ...)                                     \
	static void suite##_##name##_body(void);                              \
	Test(suite, name, .init = init_fn, .fini = ut_teardown, ##__VA_ARGS__) \
	{                                                                     \
		suite##_##name##_body();                                      \
		ut_end();                                                     \
	}                                                                     \
	static void suite##_##name##_body(void)

/* Queues one frame for RX (asserts the fake took it). */
void ut_inject(const void *frame, size_t len);
/* Polls everything queued into stack_input, then stack_flush. */
void ut_poll(void);
/* ut_inject + ut_poll. */
void ut_input(const void *frame, size_t len);
/* stack_tick(now) + stack_flush; ut.now = now. */
void ut_tick(uint64_t now);
/* Copies the next TX frame into buf and frees it; -1 if there is none. */
int ut_take(uint8_t *buf, size_t cap);
/* Frames waiting on the fake port's TX side. */
unsigned ut_tx_pending(void);
/* Frees every waiting TX frame; returns how many there were. */
unsigned ut_drain_tx(void);
/* Counter by "layer.name"; asserts the name exists. */
uint64_t ut_ctr(const char *name);
/* Zeroes every counter of the stack. */
void ut_zero_counters(void);
/* Peer sends an ARP request for us; the reply is dropped, counters zeroed. */
void ut_learn_peer(void);

/* Wire helpers. */
uint16_t ut_get16(const uint8_t *p);
uint32_t ut_get32(const uint8_t *p); /* raw, i.e. network order */
void ut_put16(uint8_t *p, uint16_t v);
void ut_put32(uint8_t *p, uint32_t v_be);
/* Internet checksum (RFC 1071): 0 over data that carries a valid one. */
uint16_t ut_cksum(const void *p, size_t n);
void ut_fill_payload(uint8_t *p, size_t n, unsigned seed);

/* Ethernet II header; returns 14. */
size_t ut_build_eth(uint8_t *f, const struct rte_ether_addr *dst,
		    const struct rte_ether_addr *src, uint16_t type);
/* Ethernet + ARP (RFC 826) for IPv4 over Ethernet; eth src = sha. 42. */
size_t ut_build_arp(uint8_t *f, uint16_t op, const struct rte_ether_addr *dst,
		    const struct rte_ether_addr *sha, uint32_t spa,
		    const struct rte_ether_addr *tha, uint32_t tpa);

struct ut_ip_spec {
	struct rte_ether_addr eth_dst, eth_src;
	uint32_t src, dst;
	uint8_t proto, ttl, tos;
	uint16_t id;
	uint16_t frag;      /* flags + fragment offset field, host order */
	uint8_t opts[40];   /* IP options, optlen bytes, multiple of 4 */
	uint8_t optlen;
};

/* Peer -> us, our MAC, TTL 64, ICMP, no options. */
void ut_ip_spec_default(struct ut_ip_spec *sp);
/* Ethernet + IPv4 + payload with a correct header checksum. */
size_t ut_build_ipv4(uint8_t *f, const struct ut_ip_spec *sp,
		     const void *payload, size_t plen);
/* Ethernet + IPv4 + ICMP echo (type 8 or 0) with data, checksums right. */
size_t ut_build_echo(uint8_t *f, const struct ut_ip_spec *sp, uint8_t type,
		     uint16_t id, uint16_t seq, const void *data, size_t dlen);
/* Default echo request peer -> us: id 0x1234, seq, dlen payload bytes. */
size_t ut_build_ping(uint8_t *f, uint16_t seq, size_t dlen);
/* Recomputes the IPv4 header checksum of frame f (IHL as in the header). */
void ut_ip_fix_cksum(uint8_t *f);
/* Recomputes the ICMP checksum over IP total length - IHL*4. */
void ut_icmp_fix_cksum(uint8_t *f);

/* Asserts an ARP frame (42 bytes, or 60 padded) with these fields. */
void ut_check_arp(const uint8_t *f, int len, const struct rte_ether_addr *dst,
		  uint16_t op, const struct rte_ether_addr *sha, uint32_t spa,
		  const struct rte_ether_addr *tha, uint32_t tpa);
/*
 * Asserts an IPv4 frame from us (our MAC, version 4, IHL 5, TTL 64, not a
 * fragment, valid header checksum, total length matching the frame up to
 * Ethernet padding) to eth_dst/dst with proto. Returns the total length.
 */
unsigned ut_check_ipv4(const uint8_t *f, int len,
		       const struct rte_ether_addr *eth_dst, uint32_t dst,
		       uint8_t proto);

#define UT_ETH_LEN 14
#define UT_IP_OFF UT_ETH_LEN
#define UT_L4_OFF (UT_ETH_LEN + 20) /* for IHL 5 */

#endif
