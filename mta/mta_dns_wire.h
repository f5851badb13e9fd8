/*
 * mta_dns_wire.h: the few DNS wire-format reads mta_dns.c does itself
 * (internal). c-ares builds queries and parses MX and A answers; this
 * walks the sections c-ares' parsers skip, with c-ares' name expander,
 * and bound-checks the whole packet.
 */
#ifndef DPMAIL_MTA_MTA_DNS_WIRE_H
#define DPMAIL_MTA_MTA_DNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/mta_dns.h"

#define MTA_DNSW_T_A 1
#define MTA_DNSW_T_SOA 6
#define MTA_DNSW_T_MX 15
#define MTA_DNSW_C_IN 1
#define MTA_DNSW_HDR_LEN 12

static inline uint16_t mta_dnsw_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t mta_dnsw_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

struct mta_dnsw_walk {
	/* in */
	const char *glue_for;       /* collect additional A for this name */
	/* out */
	uint32_t ans_min_ttl;
	bool has_soa;
	uint32_t soa_ttl;
	unsigned n_glue;
	uint32_t glue[MTA_DNS_ADDRS_MAX];
	uint32_t glue_ttl;          /* the lowest */
	unsigned wrong_class;       /* records not of class IN */
};

/*
 * Walks every record of every section after the question (which ends
 * at off), bound-checking each: false on any overrun, a bad name or a
 * count that lies. Fills w with the answer section's lowest TTL, the
 * authority section's SOA (RFC 2308 5) and the additional A records of
 * w->glue_for.
 */
bool mta_dnsw_walk(const uint8_t *pkt, size_t len, size_t off,
		   struct mta_dnsw_walk *w);
/* Case-insensitive, ignoring one trailing dot on either side. */
bool mta_dnsw_name_eq(const char *a, const char *b);
/* host is domain or below it. */
bool mta_dnsw_in_bailiwick(const char *host, const char *domain);
/* An ASCII domain: 1..63-byte labels of letters, digits, '-', '_';
 * at most 253 bytes without the trailing dot, whose length goes to len. */
bool mta_dnsw_domain_ok(const char *s, size_t *len);

#endif
