/*
 * mta_dns.h: the DNS stub resolver's core for MX routing, sans-I/O.
 *
 * Owns: the outstanding lookups and their queries, one TTL cache, the
 * counters. No sockets, no clock, no blocking: the caller (a worker, over
 * udp.h) sends the datagrams handed to conf.send to the resolver named
 * with each, feeds back every datagram it receives with mta_dns_input(),
 * and calls mta_dns_tick() with the time. One per worker, shared by
 * nothing, no locks. The wire format (query building, MX and A answer
 * parsing, name decompression) is c-ares'; this module walks the
 * sections only to bound-check the whole packet and read TTLs, SOA
 * minimums and additional A records.
 *
 * Resolution of a domain for mail (RFC 5321 5.1, RFC 7505):
 *  - MX records sorted by preference, random order among equal ones.
 *  - Each exchange resolved to A records: from the answer's additional
 *    section when the answer is authoritative (AA) or the exchange is in
 *    the queried domain's bailiwick, else from the cache, else queried.
 *    An exchange that is an IPv4 literal is taken as given
 *    (MTA_DNS_H_IP_LITERAL); one that is a CNAME is followed as c-ares
 *    does and noted (MTA_DNS_H_CNAME). A "." exchange among other MX
 *    records is dropped.
 *  - No MX but A records: implicit MX, the domain itself, preference 0
 *    (MTA_DNS_R_IMPLICIT).
 *  - A single MX with "." as exchange: MTA_DNS_NULL_MX.
 *  - NXDOMAIN, or neither MX nor A: MTA_DNS_PERM.
 *  - SERVFAIL, timeout after every try, TC bit set: MTA_DNS_TEMP. A
 *    truncated (TC) answer is not retried over TCP yet: the TCP fallback
 *    comes with the TCP client.
 *  - REFUSED, FORMERR, NOTIMP: the next resolver is tried at once.
 *  - An exchange that has no address is left out of the result; when
 *    none has one, the failure is TEMP if any exchange failed
 *    temporarily, else PERM.
 *
 * Matching: an answer is taken only if its ID is an outstanding query's,
 * it comes from the address and port that query went to, its question
 * is that query's (name compared case-insensitively, type, class IN),
 * and the whole packet parses. Anything else is counted and dropped, and
 * the query goes on waiting. Each try uses a fresh random ID and the
 * next resolver in the list; queries keep the name's case and set RD.
 * The 16-bit ID is all the entropy this module adds (RFC 5452): the
 * caller should send from an unpredictable source port (udp_bind with
 * port 0) and may hand the module answers from any local port.
 *
 * Cache: positive and negative (NXDOMAIN, NODATA with an SOA in the
 * authority section, RFC 2308) answers to MX and A queries, the TTL
 * clamped to [ttl_min_s, ttl_max_s] (negatives to neg_ttl_max_s), at
 * most cache_entries entries, clock eviction.
 *
 * Addresses are in network byte order, ports in host order.
 */
#ifndef DPMAIL_MTA_MTA_DNS_H
#define DPMAIL_MTA_MTA_DNS_H

#include <stddef.h>
#include <stdint.h>

struct mta_dns;

#define MTA_DNS_RESOLVERS_MAX 3
#define MTA_DNS_NAME_MAX 255  /* presentation form, no trailing dot */
#define MTA_DNS_MX_MAX 16     /* exchanges kept per domain */
#define MTA_DNS_ADDRS_MAX 8   /* addresses kept per exchange */

enum mta_dns_status {
	MTA_DNS_OK = 0,   /* hosts[] in try order */
	MTA_DNS_TEMP,     /* try again later (4xx) */
	MTA_DNS_PERM,     /* the domain does not resolve (5xx) */
	MTA_DNS_NULL_MX,  /* RFC 7505: the domain accepts no mail (5xx) */
};

/* mta_dns_host.flags */
#define MTA_DNS_H_GLUE 0x1       /* addresses from the additional section */
#define MTA_DNS_H_CACHED 0x2     /* addresses from the cache */
#define MTA_DNS_H_IP_LITERAL 0x4 /* the exchange was an IPv4 literal */
#define MTA_DNS_H_CNAME 0x8      /* the exchange was a CNAME (RFC 5321 5.1
				    says it should not be) */

/* mta_dns_result.flags */
#define MTA_DNS_R_IMPLICIT 0x1   /* no MX: the domain's own A records */
#define MTA_DNS_R_CACHED 0x2     /* the MX answer came from the cache */

struct mta_dns_host {
	uint16_t pref;
	uint16_t flags;
	char name[MTA_DNS_NAME_MAX + 1];
	unsigned n_addrs;
	uint32_t addrs[MTA_DNS_ADDRS_MAX];
};

struct mta_dns_result {
	enum mta_dns_status status;
	unsigned flags;
	char reason[384];          /* for logs and DSNs; "" when OK */
	unsigned n_hosts;
	struct mta_dns_host hosts[MTA_DNS_MX_MAX];
};

/* Sends one query datagram to ip:port. Called from mta_dns_resolve_mx,
 * mta_dns_input and mta_dns_tick; must not call back into the module. */
typedef void (*mta_dns_send_fn)(void *user, uint32_t ip, uint16_t port,
				const uint8_t *pkt, size_t len);
/* A lookup is finished. Called from mta_dns_input and mta_dns_tick only
 * (never from mta_dns_resolve_mx: a cache hit is handed back at the next
 * tick); r is valid during the call. May call mta_dns_resolve_mx. */
typedef void (*mta_dns_done_fn)(void *user, const struct mta_dns_result *r);
/* Fills buf with len random bytes; 0 or a negative errno. */
typedef int (*mta_dns_rand_fn)(void *user, void *buf, size_t len);

struct mta_dns_resolver {
	uint32_t ip;
	uint16_t port;
};

struct mta_dns_conf {
	struct mta_dns_resolver resolvers[MTA_DNS_RESOLVERS_MAX];
	unsigned n_resolvers;      /* 1..3 */
	uint32_t timeout_ms;       /* per try */
	unsigned retries;          /* tries after the first, next resolver */
	uint32_t ttl_min_s;        /* cache TTL floor */
	uint32_t ttl_max_s;        /* cache TTL ceiling, positive answers */
	uint32_t neg_ttl_max_s;    /* cache TTL ceiling, negative answers */
	unsigned cache_entries;    /* 0: no cache */
	unsigned max_lookups;      /* lookups in flight */
	mta_dns_send_fn send;
	void *send_user;
	mta_dns_rand_fn rand;      /* NULL: getrandom() */
	void *rand_user;
};

struct mta_dns_stats {
	uint64_t lookups, lookups_ok, lookups_temp, lookups_perm,
		lookups_null_mx;
	uint64_t queries_sent;     /* first tries and retries */
	uint64_t retries;          /* tries after a timeout or a REFUSED */
	uint64_t timeouts;         /* queries out of tries */
	uint64_t answers;          /* accepted answers */
	/* dropped datagrams, by kind */
	uint64_t short_packets;    /* under 12 bytes */
	uint64_t not_response;     /* QR clear */
	uint64_t unmatched_id;     /* no outstanding query has that ID */
	uint64_t wrong_source;     /* not from the resolver asked */
	uint64_t wrong_question;   /* QDCOUNT, name, type or class differ */
	uint64_t malformed;        /* truncated, lying counts, bad names */
	/* accepted but unusable */
	uint64_t truncated_tc;     /* TC set: temporary for now */
	uint64_t servfail, nxdomain, refused;
	uint64_t bad_records;      /* exchanges too long or unusable */
	uint64_t wrong_class;      /* records not of class IN, skipped */
	uint64_t cache_hits, cache_misses, cache_evictions;
};

/* Fills c with the defaults: port 53, 2 s, 2 retries, TTLs clamped to
 * [5 s, 1 day], negatives to 1 h, 1024 cache entries, 64 lookups. The
 * resolvers and callbacks are left for the caller. */
void mta_dns_conf_defaults(struct mta_dns_conf *c);
/* 0, -EINVAL (no resolver, no send callback, zero timeout or lookups,
 * ttl_min_s above a ceiling), -ENOMEM. */
int mta_dns_new(struct mta_dns **out, const struct mta_dns_conf *c);
void mta_dns_free(struct mta_dns *d);

/*
 * Starts resolving domain (an ASCII domain, optional trailing dot) for
 * mail. done is called once with the result, unless the lookup is
 * cancelled. 0, -EINVAL (not a domain name; address literals are the
 * caller's), -EBUSY (max_lookups in flight). A random source that fails
 * gives a TEMP result.
 */
int mta_dns_resolve_mx(struct mta_dns *d, const char *domain,
		       uint64_t now_ms, mta_dns_done_fn done, void *user);
/*
 * Resolves host (a host name, not a mail domain) to its A records only,
 * no MX query: the result has one host, the name itself, when OK. A
 * cached answer or an IPv4 literal is handed back at the next tick.
 * NXDOMAIN or no A record: MTA_DNS_PERM. Returns as mta_dns_resolve_mx.
 */
int mta_dns_resolve_a(struct mta_dns *d, const char *host, uint64_t now_ms,
		      mta_dns_done_fn done, void *user);
/* Drops every lookup started with user; their done is never called.
 * Returns how many. */
unsigned mta_dns_cancel(struct mta_dns *d, void *user);

/* A datagram received from src_ip:src_port. Never fails: whatever does
 * not match is counted in the stats and dropped. */
void mta_dns_input(struct mta_dns *d, uint64_t now_ms, uint32_t src_ip,
		   uint16_t src_port, const uint8_t *pkt, size_t len);
/* Retries and fails the queries whose time is up, and hands back the
 * lookups that are done. Call it every few ms. */
void mta_dns_tick(struct mta_dns *d, uint64_t now_ms);
/* The earliest time a tick has work, or UINT64_MAX. */
uint64_t mta_dns_next_deadline(const struct mta_dns *d);

const struct mta_dns_stats *mta_dns_stats(struct mta_dns *d);
/* Lookups in flight, and cache entries in use (for tests). */
unsigned mta_dns_inflight(const struct mta_dns *d);
unsigned mta_dns_cache_used(const struct mta_dns *d);

#endif
