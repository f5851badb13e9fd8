/*
 * dp_rss.h: deterministic NIC RSS, where the port can do it.
 *
 * With several workers and a port that offers RSS on IPv4/TCP and
 * IPv4/UDP, a settable hash key (40 or 52 bytes) and a redirection table
 * (RETA) of at least one entry per worker, dp_rss_setup programs a fixed,
 * known Toeplitz key (DP_RSS_KEY: 0x6d,0x5a repeated, the "symmetric"
 * key: the hash of a flow is the same in both directions) and the RETA
 * entry i -> queue (i % workers), and reads both back. A flow's owner is
 * then the queue the NIC delivers it to:
 *
 *	owner = reta[toeplitz(key, tuple) % reta_size]
 *
 * with the tuple as the NIC hashes a frame it receives: source ip,
 * destination ip, source port, destination port, i.e. remote ip, local ip,
 * remote port, local port (rte_softrss computes the same hash in software).
 * dp_steer_owner uses this function while dp_rss_active is set, so that
 * tcp_connect and udp_bind pick local ports whose replies the NIC hands to
 * the opening worker. Any failure leaves software steering (dp_steer.h)
 * as before, with one log line saying why.
 *
 * Ownership never changes once workers run: if the runtime check (each
 * worker compares the NIC's hash and queue of its first DP_RSS_CHECK TCP
 * frames with the software Toeplitz) finds a mismatch, the workers switch
 * to software steering with this same owner function.
 */
#ifndef DPMAIL_DATAPLANE_DP_RSS_H
#define DPMAIL_DATAPLANE_DP_RSS_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_byteorder.h>
#include <rte_thash.h>

#define DP_RSS_KEY_MAX 52   /* the longest key we set (i40e, ice) */
#define DP_RSS_RETA_MAX 2048 /* the largest RETA we mirror */
#define DP_RSS_CHECK 64     /* TCP frames each worker verifies */

struct dp_rss {
	uint8_t key[DP_RSS_KEY_MAX];
	uint16_t key_len;
	uint16_t reta_size; /* a power of two */
	uint64_t rss_hf;
	uint8_t reta[DP_RSS_RETA_MAX]; /* entry -> worker (= queue) */
};

/* Non-NULL while flows are owned by RSS (set before workers start). */
extern const struct dp_rss *dp_rss_active;

/* Fills r with DP_RSS_KEY of key_len bytes and the RETA i -> i % nworkers
 * of reta_size entries (what dp_rss_setup programs; also for tests). */
void dp_rss_table_init(struct dp_rss *r, uint16_t key_len,
		       uint16_t reta_size, unsigned nworkers);

/* The Toeplitz hash the NIC computes for a received IPv4 TCP/UDP frame
 * from rip:rport to lip:lport (addresses as in the IP header, ports in
 * host order). */
static inline uint32_t dp_rss_hash(const struct dp_rss *r, uint32_t rip,
				   uint16_t rport, uint32_t lip, uint16_t lport)
{
	uint32_t t[3];

	t[0] = rte_be_to_cpu_32(rip);
	t[1] = rte_be_to_cpu_32(lip);
	t[2] = (uint32_t)rport << 16 | lport;
	return rte_softrss(t, 3, r->key);
}

static inline unsigned dp_rss_owner_of_hash(const struct dp_rss *r,
					    uint32_t hash)
{
	return r->reta[hash & (uint32_t)(r->reta_size - 1)];
}

static inline unsigned dp_rss_owner(const struct dp_rss *r, uint32_t rip,
				    uint16_t rport, uint32_t lip,
				    uint16_t lport)
{
	return dp_rss_owner_of_hash(r, dp_rss_hash(r, rip, rport, lip, lport));
}

struct dp;
/* After the port started, with more than one worker: programs and reads
 * back key and RETA into dp->rss. 0: RSS owns flows (dp_rss_active set);
 * negative: it cannot, software steering stays (the reason is logged). */
int dp_rss_setup(struct dp *dp);

#endif
