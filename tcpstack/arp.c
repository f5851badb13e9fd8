/*
 * arp.c: ARP (RFC 826) and the neighbour table of one stack.
 *
 * The table is an rte_hash (ip -> slot) over a flat array of entries, both
 * allocated at start on the worker's socket; the packet path never
 * allocates except mbufs. A periodic scan (at most every 100 ms of stack
 * time) drives retries and expiry.
 */
#include "tcpstack/arp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include "common/log.h"
#include "common/parse.h"
#include "dataplane/dp_steer.h"
#include "tcpstack/eth.h"
#include "tcpstack/stack.h"

#define ARP_FRAME_LEN (sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr))
#define ARP_SCAN_MS 100

int arp_init(struct stack *s)
{
	static uint32_t instance;
	struct arp_table *t = &s->arp;
	char name[RTE_HASH_NAMESIZE];
	/* rte_hash may refuse a key before it is full; leave it slack */
	uint32_t slots = s->conf.arp_entries * 2 < 64 ? 64 : s->conf.arp_entries * 2;
	struct rte_hash_parameters hp = {
		.name = name,
		.entries = slots,
		.key_len = sizeof(uint32_t),
		.hash_func = rte_hash_crc,
		.socket_id = (int)rte_socket_id(),
	};

	snprintf(name, sizeof(name), "arp%u_%u", s->id,
		 __atomic_fetch_add(&instance, 1, __ATOMIC_RELAXED));
	memset(t, 0, sizeof(*t));
	t->h = rte_hash_create(&hp);
	if (t->h == NULL)
		return -ENOMEM;
	t->entries = rte_zmalloc_socket("arp", sizeof(*t->entries) * slots, 0,
					 hp.socket_id);
	if (t->entries == NULL) {
		rte_hash_free(t->h);
		t->h = NULL;
		return -ENOMEM;
	}
	t->cap = s->conf.arp_entries;
	t->slots = slots;
	return 0;
}

static void entry_drop_held(struct arp_entry *e)
{
	for (uint8_t i = 0; i < e->nhold; i++)
		rte_pktmbuf_free(e->hold[i]);
	e->nhold = 0;
}

static void entry_remove(struct stack *s, struct arp_entry *e)
{
	entry_drop_held(e);
	rte_hash_del_key(s->arp.h, &e->ip);
	e->state = ARP_FREE;
	s->arp.used--;
}

void arp_fini(struct stack *s)
{
	struct arp_table *t = &s->arp;

	if (t->entries != NULL) {
		for (uint32_t i = 0; i < t->slots; i++)
			if (t->entries[i].state != ARP_FREE)
				entry_drop_held(&t->entries[i]);
		rte_free(t->entries);
	}
	rte_hash_free(t->h);
	memset(t, 0, sizeof(*t));
}

static struct arp_entry *entry_find(const struct stack *s, uint32_t ip)
{
	int32_t pos = rte_hash_lookup(s->arp.h, &ip);

	if (pos < 0 || (uint32_t)pos >= s->arp.slots)
		return NULL;
	return &s->arp.entries[pos];
}

const struct arp_entry *arp_lookup(const struct stack *s, uint32_t ip)
{
	const struct arp_entry *e = entry_find(s, ip);

	return e != NULL && e->state == ARP_RESOLVED ? e : NULL;
}

static struct arp_entry *entry_add(struct stack *s, uint32_t ip)
{
	int32_t pos;
	struct arp_entry *e;

	if (s->arp.used >= s->arp.cap) {
		s->cnt.arp_table_full++;
		return NULL;
	}
	pos = rte_hash_add_key(s->arp.h, &ip);
	if (pos < 0 || (uint32_t)pos >= s->arp.slots) {
		s->cnt.arp_table_full++;
		return NULL;
	}
	e = &s->arp.entries[pos];
	memset(e, 0, sizeof(*e));
	e->ip = ip;
	s->arp.used++;
	return e;
}

/* Builds and queues one ARP frame; op in host order. */
static void arp_send(struct stack *s, uint16_t op,
		     const struct rte_ether_addr *eth_dst,
		     const struct rte_ether_addr *tha, uint32_t tip)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(s->q->pool);
	struct rte_arp_hdr *ah;

	if (m == NULL) {
		s->cnt.port_alloc_failed++;
		return;
	}
	ah = (struct rte_arp_hdr *)rte_pktmbuf_append(m, sizeof(*ah));
	ah->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
	ah->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	ah->arp_hlen = RTE_ETHER_ADDR_LEN;
	ah->arp_plen = sizeof(uint32_t);
	ah->arp_opcode = rte_cpu_to_be_16(op);
	rte_ether_addr_copy(&s->mac, &ah->arp_data.arp_sha);
	ah->arp_data.arp_sip = s->conf.addr;
	rte_ether_addr_copy(tha, &ah->arp_data.arp_tha);
	ah->arp_data.arp_tip = tip;
	eth_output(s, m, eth_dst, RTE_ETHER_TYPE_ARP);
}

static const struct rte_ether_addr bcast_mac = {
	.addr_bytes = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }
};
static const struct rte_ether_addr zero_mac;

static void send_request(struct stack *s, uint32_t tip)
{
	s->cnt.arp_tx_request++;
	arp_send(s, RTE_ARP_OP_REQUEST, &bcast_mac, &zero_mac, tip);
}

void arp_announce(struct stack *s)
{
	/* RFC 5227 2.4: an announcement is a request with spa == tpa */
	s->cnt.arp_tx_gratuitous++;
	arp_send(s, RTE_ARP_OP_REQUEST, &bcast_mac, &zero_mac, s->conf.addr);
}

static void entry_resolved(struct stack *s, struct arp_entry *e,
			   const struct rte_ether_addr *mac)
{
	uint8_t n = e->nhold;

	rte_ether_addr_copy(mac, &e->mac);
	e->state = ARP_RESOLVED;
	e->tries = 0;
	e->deadline_ms = s->now_ms + s->conf.arp_timeout_ms;
	e->nhold = 0;
	for (uint8_t i = 0; i < n; i++)
		eth_output(s, e->hold[i], &e->mac, RTE_ETHER_TYPE_IPV4);
}

void arp_input(struct stack *s, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *ah = (struct rte_arp_hdr *)(eh + 1);
	struct arp_entry *e;
	uint32_t spa, tpa;
	uint16_t op;
	bool merged = false;

	/* a copy another worker received: learn from it, answer nothing */
	bool shared = (m->ol_flags & dp_steer_copy_flag) != 0 &&
		      dp_steer_copy_flag != 0;

	if (shared)
		s->cnt.arp_rx_shared++;
	else
		s->cnt.arp_rx++;
	if (rte_pktmbuf_data_len(m) < ARP_FRAME_LEN ||
	    ah->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
	    ah->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
	    ah->arp_hlen != RTE_ETHER_ADDR_LEN ||
	    ah->arp_plen != sizeof(uint32_t)) {
		if (!shared)
			s->cnt.arp_malformed++;
		goto drop;
	}
	op = rte_be_to_cpu_16(ah->arp_opcode);
	if (op != RTE_ARP_OP_REQUEST && op != RTE_ARP_OP_REPLY) {
		if (!shared)
			s->cnt.arp_malformed++;
		goto drop;
	}
	if (!shared && op == RTE_ARP_OP_REQUEST)
		s->cnt.arp_rx_request++;
	else if (!shared)
		s->cnt.arp_rx_reply++;
	if (!rte_is_unicast_ether_addr(&ah->arp_data.arp_sha) ||
	    rte_is_zero_ether_addr(&ah->arp_data.arp_sha)) {
		if (!shared)
			s->cnt.arp_bad_sender++;
		goto drop;
	}
	spa = ah->arp_data.arp_sip;
	tpa = ah->arp_data.arp_tip;
	if (spa == s->conf.addr) {
		if (shared)
			goto drop;
		/* someone else claims our address (or our own frame looped) */
		s->cnt.arp_conflict++;
		if (!rte_is_same_ether_addr(&ah->arp_data.arp_sha, &s->mac)) {
			char a[16];
			LOG_RL(LOG_WARNING,
			       "arp: address conflict: %s claimed by "
			       RTE_ETHER_ADDR_PRT_FMT,
			       format_ipv4(spa, a),
			       RTE_ETHER_ADDR_BYTES(&ah->arp_data.arp_sha));
		}
		goto drop;
	}

	/* RFC 826 merge: refresh a neighbour we already know */
	if (spa != 0) {
		e = entry_find(s, spa);
		if (e != NULL) {
			entry_resolved(s, e, &ah->arp_data.arp_sha);
			merged = true;
		}
	}
	if (tpa != s->conf.addr) {
		if (!shared)
			s->cnt.arp_not_for_us++;
		goto drop;
	}
	/* spa 0 is an RFC 5227 probe: answer it, learn nothing */
	if (!merged && spa != 0) {
		e = entry_add(s, spa);
		if (e != NULL) {
			s->cnt.arp_learned++;
			entry_resolved(s, e, &ah->arp_data.arp_sha);
		}
	}
	if (op != RTE_ARP_OP_REQUEST || shared)
		goto drop;

	/* Answer in place: the request becomes the reply */
	ah->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
	rte_ether_addr_copy(&ah->arp_data.arp_sha, &ah->arp_data.arp_tha);
	ah->arp_data.arp_tip = spa;
	rte_ether_addr_copy(&s->mac, &ah->arp_data.arp_sha);
	ah->arp_data.arp_sip = s->conf.addr;
	rte_ether_addr_copy(&ah->arp_data.arp_tha, &eh->dst_addr);
	rte_ether_addr_copy(&s->mac, &eh->src_addr);
	rte_pktmbuf_trim(m, rte_pktmbuf_pkt_len(m) - ARP_FRAME_LEN);
	m->ol_flags = 0;
	s->cnt.arp_tx_reply++;
	stack_xmit(s, m);
	return;
drop:
	rte_pktmbuf_free(m);
}

void arp_output(struct stack *s, struct rte_mbuf *m, uint32_t nh)
{
	struct arp_entry *e = entry_find(s, nh);

	if (e != NULL && e->state == ARP_RESOLVED) {
		eth_output(s, m, &e->mac, RTE_ETHER_TYPE_IPV4);
		return;
	}
	if (e == NULL) {
		e = entry_add(s, nh);
		if (e == NULL) {
			rte_pktmbuf_free(m);
			return;
		}
		e->state = ARP_INCOMPLETE;
		e->tries = 1;
		e->deadline_ms = s->now_ms + s->conf.arp_retry_ms;
		send_request(s, nh);
	}
	if (e->nhold >= s->conf.arp_hold) {
		/* keep the newest packets, as Linux's unresolved queue does */
		s->cnt.arp_hold_dropped++;
		if (e->nhold == 0) {
			rte_pktmbuf_free(m);
			return;
		}
		rte_pktmbuf_free(e->hold[0]);
		memmove(&e->hold[0], &e->hold[1],
			sizeof(e->hold[0]) * (size_t)(e->nhold - 1));
		e->nhold--;
	}
	e->hold[e->nhold++] = m;
}

void arp_tick(struct stack *s)
{
	struct arp_table *t = &s->arp;
	uint32_t scan_ms;

	if (s->now_ms < t->next_scan_ms || t->used == 0)
		return;
	scan_ms = s->conf.arp_retry_ms < ARP_SCAN_MS ? s->conf.arp_retry_ms :
						       ARP_SCAN_MS;
	t->next_scan_ms = s->now_ms + (scan_ms ? scan_ms : 1);
	for (uint32_t i = 0; i < t->slots; i++) {
		struct arp_entry *e = &t->entries[i];

		if (e->state == ARP_FREE || s->now_ms < e->deadline_ms)
			continue;
		if (e->state == ARP_RESOLVED) {
			s->cnt.arp_expired++;
			entry_remove(s, e);
		} else if (e->tries >= s->conf.arp_retries) {
			char a[16];
			s->cnt.arp_resolve_timeout++;
			LOG_RL(LOG_INFO, "arp: %s did not answer %u requests",
			       format_ipv4(e->ip, a), e->tries);
			entry_remove(s, e);
		} else {
			e->tries++;
			e->deadline_ms = s->now_ms + s->conf.arp_retry_ms;
			send_request(s, e->ip);
		}
	}
}
