/*
 * dp_steer.c: frame classification for software steering.
 *
 * Reads only what it needs (EtherType, IPv4 IHL, protocol, fragment bits,
 * ports) and only after checking the frame is long enough; anything it
 * cannot classify stays on the receiving worker, whose stack validates it
 * and counts the drop.
 */
#include "dataplane/dp_steer.h"

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf_dyn.h>

uint64_t dp_steer_copy_flag;

int dp_steer_register_flag(void)
{
	static const struct rte_mbuf_dynflag desc = {
		.name = "dpmail_steer_copy",
	};
	int bit;

	if (dp_steer_copy_flag != 0)
		return 0;
	bit = rte_mbuf_dynflag_register(&desc);
	if (bit < 0)
		return bit;
	dp_steer_copy_flag = 1ULL << bit;
	return 0;
}

/*
 * An ICMP error belongs to the worker that owns the flow of the datagram
 * it quotes: one we sent, so its source is our side of the flow.
 */
static unsigned classify_icmp_error(const struct rte_ipv4_hdr *ip,
				    uint16_t len, uint32_t seed,
				    unsigned nworkers)
{
	uint16_t ihl = (uint16_t)((ip->version_ihl & 0x0f) * 4), iihl;
	const uint8_t *icmp = (const uint8_t *)ip + ihl;
	const struct rte_ipv4_hdr *in;
	const uint8_t *l4;

	if (ihl < sizeof(*ip) || len < ihl + 8u + sizeof(*in) + 4u)
		return DP_STEER_LOCAL;
	if (icmp[0] != 3 && icmp[0] != 4 && icmp[0] != 11 && icmp[0] != 12)
		return DP_STEER_LOCAL; /* echo and friends: any worker */
	in = (const struct rte_ipv4_hdr *)(icmp + 8);
	iihl = (uint16_t)((in->version_ihl & 0x0f) * 4);
	if (iihl < sizeof(*in) || len < ihl + 8u + iihl + 4u ||
	    (in->next_proto_id != IPPROTO_TCP &&
	     in->next_proto_id != IPPROTO_UDP))
		return DP_STEER_LOCAL;
	l4 = (const uint8_t *)in + iihl;
	return dp_steer_owner(seed, nworkers, in->dst_addr,
			      (uint16_t)(l4[2] << 8 | l4[3]), in->src_addr,
			      (uint16_t)(l4[0] << 8 | l4[1]));
}

unsigned dp_steer_classify(const struct rte_mbuf *m, uint32_t seed,
			   unsigned nworkers)
{
	const struct rte_ether_hdr *eh;
	const struct rte_ipv4_hdr *ip;
	const uint8_t *l4;
	uint16_t len = rte_pktmbuf_data_len(m), ihl;

	if (len < sizeof(*eh))
		return DP_STEER_LOCAL;
	eh = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	if (eh->ether_type == RTE_BE16(RTE_ETHER_TYPE_ARP))
		return DP_STEER_ALL;
	if (eh->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
	    len < sizeof(*eh) + sizeof(*ip))
		return DP_STEER_LOCAL;
	ip = (const struct rte_ipv4_hdr *)(eh + 1);
	ihl = (uint16_t)((ip->version_ihl & 0x0f) * 4);
	if (ip->next_proto_id == IPPROTO_ICMP)
		return classify_icmp_error(ip, len - (uint16_t)sizeof(*eh), seed,
					   nworkers);
	if ((ip->next_proto_id != IPPROTO_TCP &&
	     ip->next_proto_id != IPPROTO_UDP) ||
	    (ip->fragment_offset &
	     RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) ||
	    ihl < sizeof(*ip) || len < sizeof(*eh) + ihl + 4)
		return DP_STEER_LOCAL;
	l4 = (const uint8_t *)ip + ihl;
	return dp_steer_owner(seed, nworkers, ip->src_addr,
			      (uint16_t)(l4[0] << 8 | l4[1]), ip->dst_addr,
			      (uint16_t)(l4[2] << 8 | l4[3]));
}

unsigned dp_steer_l4(const struct rte_mbuf *m, uint32_t *rip, uint16_t *rport,
		     uint32_t *lip, uint16_t *lport)
{
	const struct rte_ether_hdr *eh;
	const struct rte_ipv4_hdr *ip;
	const uint8_t *l4;
	uint16_t len = rte_pktmbuf_data_len(m), ihl;

	if (len < sizeof(*eh) + sizeof(*ip))
		return 0;
	eh = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	if (eh->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4))
		return 0;
	ip = (const struct rte_ipv4_hdr *)(eh + 1);
	ihl = (uint16_t)((ip->version_ihl & 0x0f) * 4);
	if ((ip->next_proto_id != IPPROTO_TCP &&
	     ip->next_proto_id != IPPROTO_UDP) ||
	    (ip->fragment_offset &
	     RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) ||
	    ihl < sizeof(*ip) || len < sizeof(*eh) + ihl + 4)
		return 0;
	l4 = (const uint8_t *)ip + ihl;
	*rip = ip->src_addr;
	*lip = ip->dst_addr;
	*rport = (uint16_t)(l4[0] << 8 | l4[1]);
	*lport = (uint16_t)(l4[2] << 8 | l4[3]);
	return ip->next_proto_id;
}
