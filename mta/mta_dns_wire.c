/*
 * mta_dns_wire.c: section walking and name checks for mta_dns.c (see
 * mta_dns_wire.h). Names are expanded by c-ares (ares_expand_name), which
 * refuses compression loops and pointers out of the packet.
 */
#include "mta/mta_dns_wire.h"

#include <ares.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#define T_A MTA_DNSW_T_A
#define T_SOA MTA_DNSW_T_SOA
#define C_IN MTA_DNSW_C_IN

bool mta_dnsw_name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la && a[la - 1] == '.')
		la--;
	if (lb && b[lb - 1] == '.')
		lb--;
	return la == lb && !strncasecmp(a, b, la);
}

bool mta_dnsw_in_bailiwick(const char *host, const char *domain)
{
	size_t lh = strlen(host), ld = strlen(domain);

	if (mta_dnsw_name_eq(host, domain))
		return true;
	if (lh && host[lh - 1] == '.')
		lh--;
	return lh > ld + 1 && host[lh - ld - 1] == '.' &&
	       !strncasecmp(host + lh - ld, domain, ld);
}

bool mta_dnsw_domain_ok(const char *s, size_t *len)
{
	size_t n = strlen(s), lab = 0;

	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '.') {
			if (lab == 0)
				return false;
			lab = 0;
			continue;
		}
		if (!isalnum(ch) && ch != '-' && ch != '_')
			return false;
		if (++lab > 63)
			return false;
	}
	*len = n;
	return true;
}

/* The SOA's MINIMUM, bounded by the record's TTL (RFC 2308 5). */
static bool read_soa(const uint8_t *pkt, size_t len, size_t rd, size_t rdlen,
		     uint32_t ttl, uint32_t *out)
{
	size_t off = rd;

	for (int i = 0; i < 2; i++) {
		char *n = NULL;
		long enc = 0;

		if (ares_expand_name(pkt + off, pkt, (int)len, &n, &enc) !=
		    ARES_SUCCESS)
			return false;
		ares_free_string(n);
		off += (size_t)enc;
		if (off > rd + rdlen)
			return false;
	}
	if (off + 20 > rd + rdlen)
		return false;
	*out = mta_dnsw_get32(pkt + off + 16);
	if (ttl < *out)
		*out = ttl;
	return true;
}

bool mta_dnsw_walk(const uint8_t *pkt, size_t len, size_t off,
		   struct mta_dnsw_walk *w)
{
	unsigned cnt[3] = { mta_dnsw_get16(pkt + 6), mta_dnsw_get16(pkt + 8),
			    mta_dnsw_get16(pkt + 10) };

	w->ans_min_ttl = UINT32_MAX;
	for (int sec = 0; sec < 3; sec++) {
		for (unsigned i = 0; i < cnt[sec]; i++) {
			char *name = NULL;
			long enc = 0;
			uint16_t type, cls, rdlen;
			uint32_t ttl;

			if (off >= len ||
			    ares_expand_name(pkt + off, pkt, (int)len, &name,
					     &enc) != ARES_SUCCESS)
				return false;
			off += (size_t)enc;
			if (off + 10 > len) {
				ares_free_string(name);
				return false;
			}
			type = mta_dnsw_get16(pkt + off);
			cls = mta_dnsw_get16(pkt + off + 2);
			ttl = mta_dnsw_get32(pkt + off + 4);
			rdlen = mta_dnsw_get16(pkt + off + 8);
			off += 10;
			if (off + rdlen > len) {
				ares_free_string(name);
				return false;
			}
			if (cls != C_IN)
				w->wrong_class++;
			if (ttl > INT32_MAX)   /* RFC 2181 8: treat as 0 */
				ttl = 0;
			if (cls == C_IN && sec == 0 && ttl < w->ans_min_ttl)
				w->ans_min_ttl = ttl;
			if (cls == C_IN && sec == 1 && type == T_SOA &&
			    !w->has_soa)
				w->has_soa = read_soa(pkt, len, off, rdlen,
						      ttl, &w->soa_ttl);
			if (cls == C_IN && sec == 2 && type == T_A &&
			    rdlen == 4 && w->glue_for &&
			    mta_dnsw_name_eq(name, w->glue_for) &&
			    w->n_glue < MTA_DNS_ADDRS_MAX) {
				memcpy(&w->glue[w->n_glue++], pkt + off, 4);
				if (w->n_glue == 1 || ttl < w->glue_ttl)
					w->glue_ttl = ttl;
			}
			ares_free_string(name);
			off += rdlen;
		}
	}
	return true;
}
