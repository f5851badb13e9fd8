/*
 * stack_counters.h: every counter one stack instance (one worker) keeps.
 *
 * One X-macro list so that the struct, the names printed at shutdown and
 * the names tests look up never drift apart. Each worker writes only its
 * own struct with plain increments (no atomics); mgmt sums on read.
 */
#ifndef DPMAIL_TCPSTACK_STACK_COUNTERS_H
#define DPMAIL_TCPSTACK_STACK_COUNTERS_H

#include <stdint.h>

#define STACK_COUNTERS(X)                                                     \
	X(port, rx_packets)                                                   \
	X(port, tx_packets)                                                   \
	X(port, tx_dropped)                                                   \
	X(port, alloc_failed)                                                 \
	X(eth, rx)                                                            \
	X(eth, truncated)                                                     \
	X(eth, not_for_us)                                                    \
	X(eth, unknown_type)                                                  \
	X(eth, ipv6)                                                          \
	X(eth, vlan)                                                          \
	X(arp, rx)                                                            \
	X(arp, malformed)                                                     \
	X(arp, bad_sender)                                                    \
	X(arp, conflict)                                                      \
	X(arp, rx_request)                                                    \
	X(arp, rx_reply)                                                      \
	X(arp, tx_request)                                                    \
	X(arp, tx_reply)                                                      \
	X(arp, not_for_us)                                                    \
	X(arp, learned)                                                       \
	X(arp, expired)                                                       \
	X(arp, resolve_timeout)                                               \
	X(arp, hold_dropped)                                                  \
	X(arp, table_full)                                                    \
	X(arp, tx_gratuitous)                                                 \
	X(ip, rx)                                                             \
	X(ip, tx)                                                             \
	X(ip, truncated)                                                      \
	X(ip, bad_version)                                                    \
	X(ip, bad_ihl)                                                        \
	X(ip, bad_length)                                                     \
	X(ip, bad_checksum)                                                   \
	X(ip, ttl_zero)                                                       \
	X(ip, fragment)                                                       \
	X(ip, options)                                                        \
	X(ip, bad_options)                                                    \
	X(ip, not_for_us)                                                     \
	X(ip, bad_source)                                                     \
	X(ip, unknown_proto)                                                  \
	X(ip, no_route)                                                       \
	X(icmp, rx)                                                           \
	X(icmp, truncated)                                                    \
	X(icmp, bad_checksum)                                                 \
	X(icmp, rx_echo_request)                                              \
	X(icmp, tx_echo_reply)                                                \
	X(icmp, rx_other)                                                     \
	X(icmp, tx_unreach)                                                   \
	X(icmp, ratelimited)                                                  \
	X(icmp, echo_broadcast_ignored)

struct stack_counters {
#define STACK_COUNTER_FIELD(layer, name) uint64_t layer##_##name;
	STACK_COUNTERS(STACK_COUNTER_FIELD)
#undef STACK_COUNTER_FIELD
};

enum {
#define STACK_COUNTER_ENUM(layer, name) STACK_CTR_##layer##_##name,
	STACK_COUNTERS(STACK_COUNTER_ENUM)
#undef STACK_COUNTER_ENUM
	STACK_CTR_COUNT
};

/* "layer.name" of counter i, i < STACK_CTR_COUNT. */
const char *stack_counter_name(unsigned i);
/* Value of counter i in c. */
uint64_t stack_counter_get(const struct stack_counters *c, unsigned i);
/* Looks a counter up by "layer.name"; -1 if there is none. */
int stack_counter_index(const char *name);

#endif
