/*
 * stack.h: one userspace network stack instance, owned by one worker.
 *
 * Owns: the worker's ARP table, its pending-TX burst, its counters and its
 * ICMP error rate limiter. Frames arrive through stack_input() (the worker
 * polled them from its dp_queue) and leave through dp_tx() on the same
 * queue. Nothing here blocks, locks or allocates outside the mbuf pool and
 * start-up; time is passed in by the caller (milliseconds, monotonic) so
 * tests can drive every timer.
 *
 * Layers: eth.c (Ethernet II dispatch), arp.c, ipv4.c, icmp.c.
 */
#ifndef DPMAIL_TCPSTACK_STACK_H
#define DPMAIL_TCPSTACK_STACK_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ip.h>
#include <rte_mbuf.h>

#include "dataplane/dp_port.h"
#include "tcpstack/arp.h"
#include "tcpstack/stack_counters.h"
#include "tcpstack/timer_wheel.h"
#include "common/ratelimit.h"

#define STACK_TX_BURST 64
/* Ephemeral ports for TCP and UDP, as Linux's default range. */
#define STACK_EPH_LO 32768u
#define STACK_EPH_HI 60999u
#define ARP_HOLD_MAX 16

/* Settings ([net] and [stack] in the config), read-only after start. */
struct stack_conf {
	uint32_t addr;          /* our IPv4 address, network order */
	uint8_t prefix_len;     /* on-link prefix length */
	uint32_t gateway;       /* next hop for off-link, network order; 0 = none */
	uint32_t arp_entries;   /* neighbour table capacity */
	uint32_t arp_timeout_ms;/* a resolved entry lives this long unrefreshed */
	uint32_t arp_retry_ms;  /* interval between unanswered requests */
	uint32_t arp_retries;   /* requests sent before giving up */
	uint32_t arp_hold;      /* packets held per unresolved next hop */
	uint32_t icmp_rate;     /* ICMP errors per second */
	uint32_t icmp_burst;
	/* TCP ([tcp] section) */
	uint32_t tcp_max_conns;   /* connections per worker, all states */
	uint32_t tcp_sndbuf;      /* send buffer per connection, bytes */
	uint32_t tcp_rcvbuf;      /* receive window per connection, bytes */
	uint32_t tcp_syn_backlog; /* default half-open limit per listener */
	uint32_t tcp_msl_ms;      /* TIME-WAIT lasts 2 x MSL */
	uint32_t tcp_rto_min_ms, tcp_rto_max_ms, tcp_rto_init_ms;
	uint32_t tcp_retries;     /* data retransmissions before giving up */
	uint32_t tcp_syn_retries;
	uint32_t tcp_delack_ms;
	uint32_t tcp_fin_timeout_ms; /* FIN-WAIT-2 after the app closed */
	bool tcp_timestamps, tcp_sack, tcp_wscale;
	uint8_t tcp_cc;           /* enum tcp_cc, for active opens */
	bool tcp_keepalive;       /* probe idle connections */
	uint32_t tcp_keepalive_idle_ms, tcp_keepalive_intvl_ms;
	uint32_t tcp_keepalive_probes;
	uint32_t tcp_max_timewait; /* TIME-WAIT connections per worker */
	uint32_t tcp_challenge_ack_limit; /* per second per worker */
	uint32_t tcp_sndbuf_pool_pct; /* share of the mbuf pool send queues
				       * may hold, split between workers */
};

void stack_conf_defaults(struct stack_conf *c);

struct stack;

typedef void (*stack_proto_handler)(struct stack *s, struct rte_mbuf *m,
				    const struct rte_ipv4_hdr *ip,
				    uint16_t l4_off, uint16_t l4_len);

struct stack {
	struct stack_conf conf;
	unsigned id;              /* worker index */
	struct dp_queue *q;
	struct rte_ether_addr mac;
	uint32_t netmask;         /* network order, from prefix_len */
	uint64_t now_ms;
	struct stack_counters cnt;
	struct arp_table arp;
	struct ratelimit icmp_rl;
	struct timer_wheel tw;
	struct tcp_stack *tcp;
	struct udp_sock *udp;     /* bound UDP ports (few: a list) */
	bool tx_l4_cksum;         /* the port computes TCP/UDP checksums */
	unsigned nworkers;        /* flow ownership (dp_steer.h): workers, */
	uint32_t steer_seed;      /* and the seed every worker shares */
	bool rx_l4_cksum;         /* the port verifies TCP/UDP checksums */
	uint16_t ip_id;
	uint8_t garp_left;        /* gratuitous ARPs still to send */
	uint64_t garp_next_ms;
	bool tx_ip_cksum;         /* the port computes IPv4 header checksums */
	uint16_t ntx;
	struct rte_mbuf *tx[STACK_TX_BURST];
	/* Upper-layer handlers by IP protocol; NULL = protocol unreachable. */
	stack_proto_handler proto[256];
};

/*
 * Prepares a stack on queue q. Returns 0, -ENOMEM (tables) or -EINVAL
 * (conf out of range). announce: send gratuitous ARPs from stack_tick().
 */
int stack_init(struct stack *s, unsigned id, const struct stack_conf *conf,
	       struct dp_queue *q, bool announce, uint64_t now_ms);
/* Tells the stack how flows are spread over workers (dp_steer_owner), so
 * that active opens choose local ports whose replies come back here. */
void stack_set_steering(struct stack *s, unsigned nworkers, uint32_t seed);
/* Frees every mbuf the stack still holds (ARP queues, TX burst). */
void stack_fini(struct stack *s);

/* Consumes n received frames: each is answered, queued, or freed. */
void stack_input(struct stack *s, struct rte_mbuf **pkts, uint16_t n);
/* Advances time: ARP retries and expiry, gratuitous ARP. */
void stack_tick(struct stack *s, uint64_t now_ms);
/* Sends the pending TX burst; frames the port refuses are dropped. */
void stack_flush(struct stack *s);

/* Queues a complete frame for TX (flushed when the burst fills). */
void stack_xmit(struct stack *s, struct rte_mbuf *m);

#endif
