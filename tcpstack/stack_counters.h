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
	X(arp, rx_shared)                                                     \
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
	X(icmp, rx_error)                                                     \
	X(icmp, tx_unreach)                                                   \
	X(icmp, ratelimited)                                                  \
	X(icmp, echo_broadcast_ignored)                                       \
	X(udp, rx)                                                            \
	X(udp, tx)                                                            \
	X(udp, truncated)                                                     \
	X(udp, bad_length)                                                    \
	X(udp, bad_checksum)                                                  \
	X(udp, no_port)                                                       \
	X(udp, tx_too_big)                                                    \
	X(tcp, rx)                                                            \
	X(tcp, tx)                                                            \
	X(tcp, truncated)                                                     \
	X(tcp, bad_checksum)                                                  \
	X(tcp, bad_offset)                                                    \
	X(tcp, bad_options)                                                   \
	X(tcp, bad_flags)                                                     \
	X(tcp, no_listener)                                                   \
	X(tcp, rst_rx)                                                        \
	X(tcp, rst_tx)                                                        \
	X(tcp, syn_rx)                                                        \
	X(tcp, syn_backlog_full)                                              \
	X(tcp, syncookies_sent)                                               \
	X(tcp, syncookies_ok)                                                 \
	X(tcp, syncookies_failed)                                             \
	X(tcp, conn_table_full)                                               \
	X(tcp, accepted)                                                      \
	X(tcp, refused_by_app)                                                \
	X(tcp, connects)                                                      \
	X(tcp, connect_failed)                                                \
	X(tcp, opened)                                                        \
	X(tcp, closed)                                                        \
	X(tcp, retransmits)                                                   \
	X(tcp, rto_timeouts)                                                  \
	X(tcp, fast_retransmits)                                              \
	X(tcp, dup_acks)                                                      \
	X(tcp, ooo_segments)                                                  \
	X(tcp, ooo_dropped)                                                   \
	X(tcp, out_of_window)                                                 \
	X(tcp, challenge_acks)                                                \
	X(tcp, paws_dropped)                                                  \
	X(tcp, ack_too_new)                                                   \
	X(tcp, delayed_acks)                                                  \
	X(tcp, persist_probes)                                                \
	X(tcp, data_after_close)                                              \
	X(tcp, timewait_reused)                                               \
	X(tcp, timewait_overflow)                                             \
	X(tcp, sndbuf_pool_full)                                              \
	X(tcp, challenge_acks_limited)                                        \
	X(tcp, keepalive_probes)                                              \
	X(tcp, drop_timeout)                                                  \
	X(tcp, icmp_errors)                                                   \
	X(tcp, icmp_ignored)                                                  \
	X(tcp, pmtu_updates)                                                  \
	X(tcp, rx_bytes)                                                      \
	X(tcp, tx_bytes)

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
