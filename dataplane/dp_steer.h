/*
 * dp_steer.h: which worker owns a flow, and software steering for ports
 * that cannot deliver each flow to its owner's queue themselves (net_tap,
 * net_af_packet, virtio without RSS).
 *
 * Ownership, where the NIC does not deliver flows by a known RSS hash
 * (dp_rss.h: there the owner is the RETA entry of the Toeplitz hash, see
 * dp_rss_owner): owner = (H(remote ip, remote port, local ip) + local port)
 * mod workers, with H a CRC32 seeded at start (the same seed on every
 * worker). Adding the local port last is what lets an active open pick a
 * local port whose replies come back to the worker that opened it
 * (tcp_connect and udp_bind keep only the ephemeral ports this function
 * maps to their own worker). Frames without ports (ICMP, fragments, anything malformed) stay
 * on the worker that received them; ARP frames are handled there and a
 * copy, flagged with dp_steer_copy_flag, goes to every other worker so
 * that all learn the neighbour.
 */
#ifndef DPMAIL_DATAPLANE_DP_STEER_H
#define DPMAIL_DATAPLANE_DP_STEER_H

#include <stdint.h>

#include <rte_hash_crc.h>
#include <rte_mbuf.h>

#include "dataplane/dp_rss.h"

/* mbuf ol_flags bit of a steered ARP copy (0 until registered). */
extern uint64_t dp_steer_copy_flag;

/* Registers the dynamic flag; once, at start (also in unit tests). */
int dp_steer_register_flag(void);

static inline unsigned dp_steer_owner(uint32_t seed, unsigned nworkers,
				      uint32_t rip, uint16_t rport,
				      uint32_t lip, uint16_t lport)
{
	uint32_t h;

	if (nworkers <= 1)
		return 0;
	if (dp_rss_active != NULL)
		return dp_rss_owner(dp_rss_active, rip, rport, lip, lport);
	h = rte_hash_crc_4byte(rip, seed);
	h = rte_hash_crc_4byte(lip, h);
	h = rte_hash_crc_2byte(rport, h);
	return (unsigned)((h % nworkers + lport % nworkers) % nworkers);
}

#define DP_STEER_LOCAL 0xffffu /* classify: keep on the receiving worker */
#define DP_STEER_ALL 0xfffeu   /* classify: here, and a copy to every other */

/* For an IPv4 TCP or UDP frame (not a fragment, ports present): its
 * protocol, with the tuple as received (remote is the source). 0 for any
 * other frame. */
unsigned dp_steer_l4(const struct rte_mbuf *m, uint32_t *rip, uint16_t *rport,
		     uint32_t *lip, uint16_t *lport);

/* The worker that must see frame m (data starts at Ethernet). */
unsigned dp_steer_classify(const struct rte_mbuf *m, uint32_t seed,
			   unsigned nworkers);

#endif
