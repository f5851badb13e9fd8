/*
 * mta_dns.c: the DNS stub resolver's core for MX routing (see mta_dns.h
 * for the contract).
 *
 * A lookup owns up to 1 + MTA_DNS_MX_MAX query slots: slot 0 is the MX
 * query for the domain, slot 1 + i the A query for exchange i (for an
 * implicit MX, exchange 0 is the domain). A 64 Ki table maps each
 * outstanding query ID to its lookup and slot, so an answer is matched
 * in O(1) and a second query never reuses a live ID.
 *
 * c-ares builds the queries and parses the MX and A answers; mta_dnsw_walk()
 * bound-checks every section first (c-ares' parsers read only the answer
 * section) and reads what c-ares does not give: TTLs of MX answers, the
 * SOA for negative caching (RFC 2308 5), additional A records.
 */
#include "mta/mta_dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "mta/mta_dns_cache.h"
#include "mta/mta_dns_wire.h"

#define T_A MTA_DNSW_T_A
#define T_MX MTA_DNSW_T_MX
#define C_IN MTA_DNSW_C_IN
#define HDR_LEN MTA_DNSW_HDR_LEN
#define MX_COLLECT_MAX 64   /* MX records looked at before the cut */
#define MX_PACKED_MAX (MX_COLLECT_MAX * (3 + MTA_DNS_NAME_MAX))

struct mx_ent {
	uint16_t pref;
	uint32_t key;               /* random, orders equal preferences */
	char name[MTA_DNS_NAME_MAX + 1];
};

enum { L_FREE = 0, L_MX, L_HOSTS, L_DONE, L_DELIVERING };
enum { H_WAIT = 0, H_OK, H_TEMP, H_PERM };

struct query {
	uint64_t deadline;
	uint16_t id;
	uint8_t active;
	uint8_t resolver;   /* index into conf.resolvers */
	uint8_t tries;
};

struct lookup {
	uint8_t state;
	uint8_t hstate[MTA_DNS_MX_MAX];
	mta_dns_done_fn done;
	void *user;
	char domain[MTA_DNS_NAME_MAX + 1];
	bool a_only;        /* mta_dns_resolve_a: no MX query */
	struct query q[1 + MTA_DNS_MX_MAX];
	struct mta_dns_result res;  /* res.hosts: the exchanges, then the
				       result */
};

struct mta_dns {
	struct mta_dns_conf c;
	struct lookup *lk;
	uint32_t *idmap;            /* id -> lookup * 32 + slot + 1; 0 free */
	struct mta_dnsc *cache;
	struct mta_dns_stats st;
	unsigned inflight;
	struct mx_ent *mx;          /* MX_COLLECT_MAX, scratch */
	uint8_t *mx_packed;         /* MX_PACKED_MAX, scratch */
};

/* ---- helpers ---- */

static int rnd(struct mta_dns *d, void *buf, size_t len)
{
	ssize_t n;

	if (d->c.rand)
		return d->c.rand(d->c.rand_user, buf, len);
	n = getrandom(buf, len, GRND_NONBLOCK);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EAGAIN;
}

static uint64_t ttl_expire(const struct mta_dns *d, uint64_t now_ms,
			   uint32_t ttl, bool negative)
{
	uint32_t hi = negative ? d->c.neg_ttl_max_s : d->c.ttl_max_s;

	if (ttl > hi)
		ttl = hi;
	if (ttl < d->c.ttl_min_s)
		ttl = d->c.ttl_min_s;
	return now_ms + (uint64_t)ttl * 1000;
}

static int cache_get(struct mta_dns *d, const char *name, uint16_t type,
		     uint64_t now_ms, struct mta_dnsc_hit *hit)
{
	if (mta_dnsc_get(d->cache, name, type, now_ms, hit)) {
		d->st.cache_hits++;
		return 1;
	}
	d->st.cache_misses++;
	return 0;
}

/* ---- queries ---- */

static const char *slot_name(const struct lookup *lk, unsigned slot)
{
	return slot == 0 ? lk->domain : lk->res.hosts[slot - 1].name;
}

static void release(struct mta_dns *d, struct query *q)
{
	if (q->active)
		d->idmap[q->id] = 0;
	q->active = 0;
}

static void lookup_fail(struct lookup *lk, enum mta_dns_status st,
			const char *why)
{
	lk->res.status = st;
	snprintf(lk->res.reason, sizeof(lk->res.reason), "%s: %s",
		 lk->domain, why);
	lk->res.n_hosts = 0;
	lk->state = L_DONE;
}

static void check_done(struct mta_dns *d, struct lookup *lk);
static void deliver(struct mta_dns *d);

/* Exchange i (slot i + 1) has no address: st is H_TEMP or H_PERM. */
static void host_fail(struct mta_dns *d, struct lookup *lk, unsigned i,
		      int st, const char *why)
{
	lk->hstate[i] = (uint8_t)st;
	/* the reason: the first failure, or the first temporary one */
	if (!lk->res.reason[0] ||
	    (st == H_TEMP && lk->res.status != MTA_DNS_TEMP)) {
		snprintf(lk->res.reason, sizeof(lk->res.reason), "%s: %s",
			 lk->res.hosts[i].name, why);
		if (st == H_TEMP)
			lk->res.status = MTA_DNS_TEMP;
	}
	check_done(d, lk);
}

/* A query slot failed for good: the lookup (slot 0) or one exchange. */
static void slot_fail(struct mta_dns *d, struct lookup *lk, unsigned slot,
		      enum mta_dns_status st, const char *why)
{
	if (slot == 0) {
		lookup_fail(lk, st, why);
		return;
	}
	host_fail(d, lk, slot - 1, st == MTA_DNS_TEMP ? H_TEMP : H_PERM, why);
}

/* Sends the next try of slot, to the next resolver, with a fresh ID. */
static void send_query(struct mta_dns *d, struct lookup *lk, unsigned slot,
		       uint64_t now_ms)
{
	struct query *q = &lk->q[slot];
	const struct mta_dns_resolver *r;
	unsigned char *buf = NULL;
	uint16_t id = 0;
	int len = 0, tries;

	release(d, q);
	for (tries = 0; tries < 32; tries++) {
		if (rnd(d, &id, sizeof(id)) < 0) {
			slot_fail(d, lk, slot, MTA_DNS_TEMP,
				  "no random source for query IDs");
			return;
		}
		if (!d->idmap[id])
			break;
	}
	if (tries == 32) {
		slot_fail(d, lk, slot, MTA_DNS_TEMP, "no free query ID");
		return;
	}
	if (ares_create_query(slot_name(lk, slot), C_IN, slot ? T_A : T_MX,
			      id, 1, &buf, &len, 0) != ARES_SUCCESS) {
		d->st.bad_records++;
		slot_fail(d, lk, slot, MTA_DNS_PERM, "name cannot be queried");
		return;
	}
	q->id = id;
	q->active = 1;
	q->resolver = (uint8_t)(q->tries % d->c.n_resolvers);
	q->tries++;
	q->deadline = now_ms + d->c.timeout_ms;
	d->idmap[id] = (uint32_t)((lk - d->lk) * 32 + slot + 1);
	r = &d->c.resolvers[q->resolver];
	d->st.queries_sent++;
	d->c.send(d->c.send_user, r->ip, r->port, buf, (size_t)len);
	ares_free_string(buf);
}

/* Another try if any are left, else a temporary failure. */
static void retry_or_fail(struct mta_dns *d, struct lookup *lk,
			  unsigned slot, uint64_t now_ms, const char *why)
{
	if (lk->q[slot].tries <= d->c.retries) {
		d->st.retries++;
		send_query(d, lk, slot, now_ms);
		return;
	}
	release(d, &lk->q[slot]);
	slot_fail(d, lk, slot, MTA_DNS_TEMP, why);
}

/* ---- the lookup's stages ---- */

/* The lookup is done when no exchange waits: keep those with an
 * address, in order. */
static void check_done(struct mta_dns *d, struct lookup *lk)
{
	struct mta_dns_result *r = &lk->res;
	unsigned n = 0;

	(void)d;
	if (lk->state != L_HOSTS)
		return;
	for (unsigned i = 0; i < r->n_hosts; i++)
		if (lk->hstate[i] == H_WAIT)
			return;
	for (unsigned i = 0; i < r->n_hosts; i++) {
		if (lk->hstate[i] != H_OK || r->hosts[i].n_addrs == 0)
			continue;
		if (n != i)
			r->hosts[n] = r->hosts[i];
		n++;
	}
	r->n_hosts = n;
	lk->state = L_DONE;
	if (n) {
		r->status = MTA_DNS_OK;
		r->reason[0] = '\0';
		return;
	}
	if (r->status != MTA_DNS_TEMP)
		r->status = MTA_DNS_PERM;
	if (r->status == MTA_DNS_PERM && lk->a_only && !r->reason[0])
		snprintf(r->reason, sizeof(r->reason),
			 "%s: no A records", lk->domain);
	else if (r->status == MTA_DNS_PERM && (r->flags & MTA_DNS_R_IMPLICIT))
		snprintf(r->reason, sizeof(r->reason),
			 "%s: no MX and no A records", lk->domain);
	else if (!r->reason[0])
		snprintf(r->reason, sizeof(r->reason),
			 "%s: no MX host has an address", lk->domain);
}

/* Resolves each exchange: a literal, glue, the cache or a query. */
static void start_hosts(struct mta_dns *d, struct lookup *lk, uint64_t now_ms,
			const uint8_t *pkt, size_t len, size_t qend, bool aa)
{
	struct mta_dns_result *r = &lk->res;

	lk->state = L_HOSTS;
	r->status = MTA_DNS_OK;
	r->reason[0] = '\0';
	for (unsigned i = 0; i < r->n_hosts; i++) {
		struct mta_dns_host *h = &r->hosts[i];
		struct mta_dnsc_hit hit;
		struct in_addr a;

		lk->hstate[i] = H_WAIT;
		if (inet_pton(AF_INET, h->name, &a) == 1) {
			h->addrs[h->n_addrs++] = a.s_addr;
			h->flags |= MTA_DNS_H_IP_LITERAL;
			lk->hstate[i] = H_OK;
			continue;
		}
		if (pkt &&
		    (aa || mta_dnsw_in_bailiwick(h->name, lk->domain))) {
			struct mta_dnsw_walk w = { .glue_for = h->name };

			/* the packet was walked whole before */
			(void)mta_dnsw_walk(pkt, len, qend, &w);
			if (w.n_glue) {
				memcpy(h->addrs, w.glue, w.n_glue * 4);
				h->n_addrs = w.n_glue;
				h->flags |= MTA_DNS_H_GLUE;
				lk->hstate[i] = H_OK;
				(void)mta_dnsc_put(d->cache, h->name, T_A,
					MTA_DNSC_POS, w.glue, w.n_glue * 4,
					ttl_expire(d, now_ms, w.glue_ttl,
						   false), now_ms);
				continue;
			}
		}
		if (cache_get(d, h->name, T_A, now_ms, &hit)) {
			if (hit.kind == MTA_DNSC_POS) {
				h->n_addrs = (unsigned)(hit.len / 4);
				if (h->n_addrs > MTA_DNS_ADDRS_MAX)
					h->n_addrs = MTA_DNS_ADDRS_MAX;
				memcpy(h->addrs, hit.data, h->n_addrs * 4);
				h->flags |= MTA_DNS_H_CACHED;
				lk->hstate[i] = H_OK;
			} else {
				lk->hstate[i] = H_PERM;
				if (!r->reason[0])
					snprintf(r->reason, sizeof(r->reason),
						 "%s: %s (cached)", h->name,
						 hit.kind == MTA_DNSC_NXDOMAIN ?
						 "NXDOMAIN" : "no A record");
			}
			continue;
		}
	}
	/* queries last: a failure to send may finish the lookup */
	for (unsigned i = 0; i < r->n_hosts && lk->state == L_HOSTS; i++)
		if (lk->hstate[i] == H_WAIT && !lk->q[i + 1].active)
			send_query(d, lk, i + 1, now_ms);
	check_done(d, lk);
}

static int mx_cmp(const void *a, const void *b)
{
	const struct mx_ent *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* The MX set, from the wire or the cache: null MX, or sorted exchanges. */
static void mx_apply(struct mta_dns *d, struct lookup *lk, struct mx_ent *e,
		     unsigned n, uint64_t now_ms, const uint8_t *pkt,
		     size_t len, size_t qend, bool aa)
{
	unsigned k = 0;

	/* RFC 7505 3: a single MX with "." as exchange, preference 0 or
	 * not; a "." among other MX records is dropped (4.3). */
	if (n == 1 && e[0].name[0] == '\0') {
		lookup_fail(lk, MTA_DNS_NULL_MX,
			    "domain does not accept mail (null MX)");
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t key = 0;

		if (!e[i].name[0])
			continue;
		(void)rnd(d, &key, sizeof(key));   /* 0 on failure: fine */
		e[i].key = key;
		if (k != i)
			e[k] = e[i];
		k++;
	}
	if (k == 0) {
		lookup_fail(lk, MTA_DNS_PERM, "no usable MX record");
		return;
	}
	qsort(e, k, sizeof(*e), mx_cmp);
	if (k > MTA_DNS_MX_MAX)
		k = MTA_DNS_MX_MAX;
	lk->res.n_hosts = k;
	for (unsigned i = 0; i < k; i++) {
		struct mta_dns_host *h = &lk->res.hosts[i];

		memset(h, 0, sizeof(*h));
		h->pref = e[i].pref;
		memcpy(h->name, e[i].name, sizeof(h->name));
	}
	start_hosts(d, lk, now_ms, pkt, len, qend, aa);
}

/* No MX: the domain itself at preference 0 (RFC 5321 5.1). */
static void implicit_mx(struct mta_dns *d, struct lookup *lk,
			uint64_t now_ms)
{
	struct mta_dns_host *h = &lk->res.hosts[0];

	memset(h, 0, sizeof(*h));
	memcpy(h->name, lk->domain, sizeof(h->name));
	lk->res.n_hosts = 1;
	lk->res.flags |= MTA_DNS_R_IMPLICIT;
	start_hosts(d, lk, now_ms, NULL, 0, 0, false);
}

/* Cache form of an MX set: per record, pref (2), name length (1), name. */
static size_t mx_pack(const struct mx_ent *e, unsigned n, uint8_t *buf,
		      size_t cap)
{
	size_t off = 0;

	for (unsigned i = 0; i < n; i++) {
		size_t l = strlen(e[i].name);

		if (off + 3 + l > cap)
			break;
		memcpy(buf + off, &e[i].pref, 2);
		buf[off + 2] = (uint8_t)l;
		memcpy(buf + off + 3, e[i].name, l);
		off += 3 + l;
	}
	return off;
}

static unsigned mx_unpack(const uint8_t *buf, size_t len, struct mx_ent *e,
			  unsigned cap)
{
	size_t off = 0;
	unsigned n = 0;

	while (off + 3 <= len && n < cap) {
		size_t l = buf[off + 2];

		memset(&e[n], 0, sizeof(e[n]));
		memcpy(&e[n].pref, buf + off, 2);
		memcpy(e[n].name, buf + off + 3, l);
		off += 3 + l;
		n++;
	}
	return n;
}

/* ---- answers ---- */

static void neg_cache(struct mta_dns *d, const char *name, uint16_t type,
		      enum mta_dnsc_kind kind, const struct mta_dnsw_walk *w,
		      uint64_t now_ms)
{
	if (!w->has_soa)    /* RFC 2308 5: no SOA, no negative caching */
		return;
	(void)mta_dnsc_put(d->cache, name, type, kind, NULL, 0,
			   ttl_expire(d, now_ms, w->soa_ttl, true), now_ms);
}

/* A NOERROR answer to the MX query. false: unparseable, drop it. */
static bool mx_answer(struct mta_dns *d, struct lookup *lk, uint64_t now_ms,
		      const uint8_t *pkt, size_t len, size_t qend,
		      const struct mta_dnsw_walk *w)
{
	struct mx_ent *e = d->mx;
	struct ares_mx_reply *mx = NULL;
	unsigned n = 0;
	int rc = ares_parse_mx_reply(pkt, (int)len, &mx);

	if (rc == ARES_ENODATA) {
		release(d, &lk->q[0]);
		neg_cache(d, lk->domain, T_MX, MTA_DNSC_NODATA, w, now_ms);
		implicit_mx(d, lk, now_ms);
		return true;
	}
	if (rc != ARES_SUCCESS)
		return false;
	release(d, &lk->q[0]);
	for (struct ares_mx_reply *m = mx; m && n < MX_COLLECT_MAX;
	     m = m->next) {
		size_t l = strlen(m->host);

		if (l && m->host[l - 1] == '.')
			l--;
		if (l > MTA_DNS_NAME_MAX) {
			d->st.bad_records++;
			continue;
		}
		e[n].pref = m->priority;
		e[n].key = 0;
		memcpy(e[n].name, m->host, l);
		e[n].name[l] = '\0';
		n++;
	}
	ares_free_data(mx);
	(void)mta_dnsc_put(d->cache, lk->domain, T_MX, MTA_DNSC_POS,
			   d->mx_packed,
			   mx_pack(e, n, d->mx_packed, MX_PACKED_MAX),
			   ttl_expire(d, now_ms, w->ans_min_ttl, false),
			   now_ms);
	mx_apply(d, lk, e, n, now_ms, pkt, len, qend,
		 (pkt[2] & 0x04) != 0);
	return true;
}

/* A NOERROR answer to exchange i's A query. false: drop it. */
static bool a_answer(struct mta_dns *d, struct lookup *lk, unsigned i,
		     uint64_t now_ms, const uint8_t *pkt, size_t len,
		     const struct mta_dnsw_walk *w)
{
	struct mta_dns_host *h = &lk->res.hosts[i];
	struct ares_addrttl at[MTA_DNS_ADDRS_MAX];
	struct hostent *he = NULL;
	int n = MTA_DNS_ADDRS_MAX;
	uint32_t ttl = w->ans_min_ttl;
	int rc = ares_parse_a_reply(pkt, (int)len, &he, at, &n);

	if (rc == ARES_SUCCESS && n <= 0) {    /* a CNAME and no A */
		if (he)
			ares_free_hostent(he);
		he = NULL;
		rc = ARES_ENODATA;
	}
	if (rc == ARES_ENODATA) {
		release(d, &lk->q[i + 1]);
		neg_cache(d, h->name, T_A, MTA_DNSC_NODATA, w, now_ms);
		host_fail(d, lk, i, H_PERM, "no A record");
		return true;
	}
	if (rc != ARES_SUCCESS)
		return false;
	release(d, &lk->q[i + 1]);
	if (he && he->h_aliases && he->h_aliases[0])
		h->flags |= MTA_DNS_H_CNAME;
	if (he)
		ares_free_hostent(he);
	h->n_addrs = 0;
	for (int k = 0; k < n && k < MTA_DNS_ADDRS_MAX; k++) {
		h->addrs[h->n_addrs++] = at[k].ipaddr.s_addr;
		if (at[k].ttl >= 0 && (uint32_t)at[k].ttl < ttl)
			ttl = (uint32_t)at[k].ttl;
	}
	(void)mta_dnsc_put(d->cache, h->name, T_A, MTA_DNSC_POS, h->addrs,
			   h->n_addrs * 4, ttl_expire(d, now_ms, ttl, false),
			   now_ms);
	lk->hstate[i] = H_OK;
	check_done(d, lk);
	return true;
}

void mta_dns_input(struct mta_dns *d, uint64_t now_ms, uint32_t src_ip,
		   uint16_t src_port, const uint8_t *pkt, size_t len)
{
	const struct mta_dns_resolver *r;
	struct mta_dnsw_walk w = { 0 };
	struct lookup *lk;
	struct query *q;
	char *qname = NULL;
	long enc = 0;
	unsigned slot;
	uint32_t m;
	size_t qend;
	bool same;
	int rcode;

	if (len < HDR_LEN) {
		d->st.short_packets++;
		goto out;
	}
	if (len > 65535) {
		d->st.malformed++;
		goto out;
	}
	if (!(pkt[2] & 0x80)) {
		d->st.not_response++;
		goto out;
	}
	m = d->idmap[mta_dnsw_get16(pkt)];
	if (!m) {
		d->st.unmatched_id++;
		goto out;
	}
	lk = &d->lk[(m - 1) / 32];
	slot = (m - 1) % 32;
	q = &lk->q[slot];
	r = &d->c.resolvers[q->resolver];
	if (src_ip != r->ip || src_port != r->port) {
		d->st.wrong_source++;
		goto out;
	}
	/* the question: one, ours, opcode QUERY */
	if (mta_dnsw_get16(pkt + 4) != 1 || (pkt[2] & 0x78) != 0) {
		d->st.wrong_question++;
		goto out;
	}
	if (ares_expand_name(pkt + HDR_LEN, pkt, (int)len, &qname, &enc) !=
	    ARES_SUCCESS || HDR_LEN + (size_t)enc + 4 > len) {
		ares_free_string(qname);
		d->st.malformed++;
		goto out;
	}
	qend = HDR_LEN + (size_t)enc + 4;
	same = mta_dnsw_name_eq(qname, slot_name(lk, slot)) &&
	       mta_dnsw_get16(pkt + qend - 4) == (slot ? T_A : T_MX) &&
	       mta_dnsw_get16(pkt + qend - 2) == C_IN;
	ares_free_string(qname);
	if (!same) {
		d->st.wrong_question++;
		goto out;
	}
	if (pkt[2] & 0x02) {
		/* TODO: retry over TCP (RFC 7766) once there is a client */
		d->st.answers++;
		d->st.truncated_tc++;
		release(d, q);
		slot_fail(d, lk, slot, MTA_DNS_TEMP,
			  "truncated answer (TC), no TCP fallback yet");
		goto out;
	}
	if (!mta_dnsw_walk(pkt, len, qend, &w)) {
		d->st.malformed++;
		goto out;
	}
	d->st.wrong_class += w.wrong_class;
	rcode = pkt[3] & 0x0f;
	switch (rcode) {
	case 0:
		if (!(slot ? a_answer(d, lk, slot - 1, now_ms, pkt, len, &w) :
			     mx_answer(d, lk, now_ms, pkt, len, qend, &w))) {
			d->st.malformed++;
			goto out;
		}
		d->st.answers++;
		break;
	case 3:
		d->st.answers++;
		d->st.nxdomain++;
		release(d, q);
		neg_cache(d, slot_name(lk, slot), slot ? T_A : T_MX,
			  MTA_DNSC_NXDOMAIN, &w, now_ms);
		slot_fail(d, lk, slot, MTA_DNS_PERM,
			  "domain not found (NXDOMAIN)");
		break;
	case 2:
		d->st.answers++;
		d->st.servfail++;
		release(d, q);
		slot_fail(d, lk, slot, MTA_DNS_TEMP,
			  "resolver failure (SERVFAIL)");
		break;
	default:   /* FORMERR, NOTIMP, REFUSED, ...: ask the next one */
		d->st.answers++;
		d->st.refused++;
		retry_or_fail(d, lk, slot, now_ms, "refused by every resolver");
		break;
	}
out:
	deliver(d);
}

/* ---- lookups ---- */

static void deliver(struct mta_dns *d)
{
	for (unsigned i = 0; i < d->c.max_lookups; i++) {
		struct lookup *lk = &d->lk[i];

		if (lk->state != L_DONE)
			continue;
		switch (lk->res.status) {
		case MTA_DNS_OK: d->st.lookups_ok++; break;
		case MTA_DNS_TEMP: d->st.lookups_temp++; break;
		case MTA_DNS_PERM: d->st.lookups_perm++; break;
		case MTA_DNS_NULL_MX: d->st.lookups_null_mx++; break;
		}
		for (unsigned s = 0; s <= MTA_DNS_MX_MAX; s++)
			release(d, &lk->q[s]);
		lk->state = L_DELIVERING;
		lk->done(lk->user, &lk->res);
		lk->state = L_FREE;
		d->inflight--;
	}
}

void mta_dns_tick(struct mta_dns *d, uint64_t now_ms)
{
	for (unsigned i = 0; i < d->c.max_lookups; i++) {
		struct lookup *lk = &d->lk[i];

		for (unsigned s = 0; s <= MTA_DNS_MX_MAX; s++) {
			if (lk->state != L_MX && lk->state != L_HOSTS)
				break;
			if (!lk->q[s].active || lk->q[s].deadline > now_ms)
				continue;
			if (lk->q[s].tries > d->c.retries)
				d->st.timeouts++;
			retry_or_fail(d, lk, s, now_ms, "timed out");
		}
	}
	deliver(d);
}

uint64_t mta_dns_next_deadline(const struct mta_dns *d)
{
	uint64_t t = UINT64_MAX;

	for (unsigned i = 0; i < d->c.max_lookups; i++) {
		const struct lookup *lk = &d->lk[i];

		if (lk->state == L_DONE)
			return 0;
		for (unsigned s = 0; s <= MTA_DNS_MX_MAX; s++)
			if (lk->q[s].active && lk->q[s].deadline < t)
				t = lk->q[s].deadline;
	}
	return t;
}

/* A free lookup slot taken for name (checked): *lkp in state L_MX and
 * counted. -EINVAL for a bad name or no callback, -EBUSY when all the
 * slots are in use. */
static int lookup_start(struct mta_dns *d, const char *name,
			mta_dns_done_fn done, void *user, struct lookup **lkp)
{
	struct lookup *lk = NULL;
	size_t n;

	if (!name || !done || !mta_dnsw_domain_ok(name, &n))
		return -EINVAL;
	for (unsigned i = 0; i < d->c.max_lookups && !lk; i++)
		if (d->lk[i].state == L_FREE)
			lk = &d->lk[i];
	if (!lk)
		return -EBUSY;
	memset(lk, 0, sizeof(*lk));
	lk->state = L_MX;
	lk->done = done;
	lk->user = user;
	memcpy(lk->domain, name, n);
	lk->domain[n] = '\0';
	d->st.lookups++;
	d->inflight++;
	*lkp = lk;
	return 0;
}

int mta_dns_resolve_mx(struct mta_dns *d, const char *domain,
		       uint64_t now_ms, mta_dns_done_fn done, void *user)
{
	struct mta_dnsc_hit hit;
	struct lookup *lk;
	int rc = lookup_start(d, domain, done, user, &lk);

	if (rc != 0)
		return rc;
	if (!cache_get(d, lk->domain, T_MX, now_ms, &hit)) {
		send_query(d, lk, 0, now_ms);
		return 0;
	}
	lk->res.flags |= MTA_DNS_R_CACHED;
	if (hit.kind == MTA_DNSC_NXDOMAIN) {
		lookup_fail(lk, MTA_DNS_PERM,
			    "domain not found (NXDOMAIN, cached)");
	} else if (hit.kind == MTA_DNSC_NODATA) {
		implicit_mx(d, lk, now_ms);
	} else {
		unsigned k = mx_unpack(hit.data, hit.len, d->mx,
				       MX_COLLECT_MAX);

		mx_apply(d, lk, d->mx, k, now_ms, NULL, 0, 0, false);
	}
	return 0;
}

int mta_dns_resolve_a(struct mta_dns *d, const char *host, uint64_t now_ms,
		      mta_dns_done_fn done, void *user)
{
	struct lookup *lk;
	int rc = lookup_start(d, host, done, user, &lk);

	if (rc != 0)
		return rc;
	lk->a_only = true;
	/* the host as its own (only) exchange, as for an implicit MX */
	implicit_mx(d, lk, now_ms);
	lk->res.flags &= ~(unsigned)MTA_DNS_R_IMPLICIT;
	return 0;
}

unsigned mta_dns_cancel(struct mta_dns *d, void *user)
{
	unsigned n = 0;

	for (unsigned i = 0; i < d->c.max_lookups; i++) {
		struct lookup *lk = &d->lk[i];

		if (lk->state == L_FREE || lk->state == L_DELIVERING ||
		    lk->user != user)
			continue;
		for (unsigned s = 0; s <= MTA_DNS_MX_MAX; s++)
			release(d, &lk->q[s]);
		lk->state = L_FREE;
		d->inflight--;
		n++;
	}
	return n;
}

/* ---- set-up ---- */

void mta_dns_conf_defaults(struct mta_dns_conf *c)
{
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < MTA_DNS_RESOLVERS_MAX; i++)
		c->resolvers[i].port = 53;
	c->timeout_ms = 2000;
	c->retries = 2;
	c->ttl_min_s = 5;
	c->ttl_max_s = 86400;
	c->neg_ttl_max_s = 3600;
	c->cache_entries = 1024;
	c->max_lookups = 64;
}

int mta_dns_new(struct mta_dns **out, const struct mta_dns_conf *c)
{
	struct mta_dns *d;

	if (c->n_resolvers < 1 || c->n_resolvers > MTA_DNS_RESOLVERS_MAX ||
	    !c->send || c->timeout_ms == 0 || c->max_lookups == 0 ||
	    c->max_lookups > UINT32_MAX / 64 || c->retries > 200 ||
	    c->ttl_min_s > c->ttl_max_s || c->ttl_min_s > c->neg_ttl_max_s)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->c = *c;
	d->lk = calloc(c->max_lookups, sizeof(*d->lk));
	d->idmap = calloc(65536, sizeof(*d->idmap));
	d->mx = calloc(MX_COLLECT_MAX, sizeof(*d->mx));
	d->mx_packed = malloc(MX_PACKED_MAX);
	if (!d->lk || !d->idmap || !d->mx || !d->mx_packed ||
	    mta_dnsc_new(&d->cache, c->cache_entries) < 0) {
		mta_dns_free(d);
		return -ENOMEM;
	}
	*out = d;
	return 0;
}

void mta_dns_free(struct mta_dns *d)
{
	if (!d)
		return;
	mta_dnsc_free(d->cache);
	free(d->mx_packed);
	free(d->mx);
	free(d->idmap);
	free(d->lk);
	free(d);
}

const struct mta_dns_stats *mta_dns_stats(struct mta_dns *d)
{
	d->st.cache_evictions = mta_dnsc_evictions(d->cache);
	return &d->st;
}

unsigned mta_dns_inflight(const struct mta_dns *d)
{
	return d->inflight;
}

unsigned mta_dns_cache_used(const struct mta_dns *d)
{
	return mta_dnsc_used(d->cache);
}
