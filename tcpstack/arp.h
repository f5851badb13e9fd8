/*
 * arp.h: the neighbour table and ARP (RFC 826) for one stack.
 *
 * Answers requests for our address, learns senders per RFC 826's merge
 * rule (update an entry we have; add one only when the request is for us),
 * resolves next hops with a bounded number of retries, holds a few packets
 * per unresolved next hop, and expires entries that are not refreshed.
 */
#ifndef DPMAIL_TCPSTACK_ARP_H
#define DPMAIL_TCPSTACK_ARP_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

struct stack;
struct rte_hash;

enum arp_state {
	ARP_FREE = 0,
	ARP_INCOMPLETE, /* request sent, waiting for a reply */
	ARP_RESOLVED,
};

struct arp_entry {
	uint32_t ip;             /* network order */
	uint8_t state;
	uint8_t tries;           /* requests sent so far */
	uint8_t nhold;
	struct rte_ether_addr mac;
	uint64_t deadline_ms;    /* expiry (resolved) or next retry (incomplete) */
	struct rte_mbuf *hold[16]; /* ARP_HOLD_MAX */
};

struct arp_table {
	struct rte_hash *h;      /* ip -> index into entries */
	struct arp_entry *entries;
	uint32_t cap;            /* entries allowed (arp_entries) */
	uint32_t slots;          /* size of entries[] (hash capacity) */
	uint32_t used;
	uint64_t next_scan_ms;
};

int arp_init(struct stack *s);
void arp_fini(struct stack *s);

/* An ARP frame arrived (eth header still in front). Consumes m. */
void arp_input(struct stack *s, struct rte_mbuf *m);
/*
 * Sends m (an IPv4 packet with room for an Ethernet header in front, i.e.
 * m's data starts at the IP header) to next hop nh. Consumes m: sent now,
 * held until resolution, or dropped and counted.
 */
void arp_output(struct stack *s, struct rte_mbuf *m, uint32_t nh);
/* Retries, timeouts and expiry. */
void arp_tick(struct stack *s);
/* Broadcasts a gratuitous ARP announcing our address. */
void arp_announce(struct stack *s);
/* Looks up a resolved entry; NULL if none. For tests and mgmt. */
const struct arp_entry *arp_lookup(const struct stack *s, uint32_t ip);

#endif
