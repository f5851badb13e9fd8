/*
 * dp_rss.c: programs a known Toeplitz key and RETA into the port and
 * reads them back (see dp_rss.h). Only stable ethdev calls: the key by
 * rte_eth_dev_rss_hash_update, the table by rte_eth_dev_rss_reta_update,
 * both after rte_eth_dev_start (some PMDs only apply them to a started
 * port) and both confirmed by reading them back.
 */
#include "dataplane/dp_rss.h"

#include <errno.h>
#include <string.h>

#include <rte_ethdev.h>

#include "common/log.h"
#include "dataplane/dp.h"

const struct dp_rss *dp_rss_active;

/*
 * The key: 0x6d,0x5a repeated. Every 16-bit window of it is the same, so
 * swapping source and destination (addresses, and ports) gives the same
 * hash: the symmetric key of Woo and Park, "Scalable TCP Session
 * Monitoring with Symmetric Receive-side Scaling" (2012).
 */
void dp_rss_table_init(struct dp_rss *r, uint16_t key_len,
		       uint16_t reta_size, unsigned nworkers)
{
	memset(r, 0, sizeof(*r));
	if (key_len > DP_RSS_KEY_MAX)
		key_len = DP_RSS_KEY_MAX;
	if (reta_size > DP_RSS_RETA_MAX)
		reta_size = DP_RSS_RETA_MAX;
	for (uint16_t i = 0; i < key_len; i++)
		r->key[i] = (i & 1) ? 0x5a : 0x6d;
	r->key_len = key_len;
	r->reta_size = reta_size;
	for (uint16_t i = 0; i < reta_size; i++)
		r->reta[i] = (uint8_t)(nworkers > 0 ? i % nworkers : 0);
	r->rss_hf = RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP;
}

#define NEED_HF (RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP)

/* Why the port cannot own flows by RSS, or NULL if it can try. */
static const char *unsuitable(const struct dp *dp)
{
	const struct rte_eth_dev_info *di = &dp->info;
	static char why[160];

	if ((di->flow_type_rss_offloads & NEED_HF) != NEED_HF)
		return "no RSS on IPv4/TCP and IPv4/UDP";
	/* 0: not reported (net_null): try 40, which the read back checks */
	if (di->hash_key_size != 40 && di->hash_key_size != 52 &&
	    di->hash_key_size != 0) {
		snprintf(why, sizeof(why), "hash key size %u (need 40 or 52)",
			 di->hash_key_size);
		return why;
	}
	if (di->reta_size < dp->nworkers || di->reta_size > DP_RSS_RETA_MAX ||
	    (di->reta_size & (di->reta_size - 1)) != 0) {
		snprintf(why, sizeof(why), "RETA of %u entries (need a power "
			 "of two from %u to %u)", di->reta_size, dp->nworkers,
			 DP_RSS_RETA_MAX);
		return why;
	}
	if (dp->nqueues != dp->nworkers)
		return "queue count differs from workers";
	return NULL;
}

static const char *program_key(struct dp *dp, struct dp_rss *r)
{
	struct rte_eth_rss_conf rc;
	uint8_t back[DP_RSS_KEY_MAX];
	static char why[160];
	int rc2;

	memset(&rc, 0, sizeof(rc));
	rc.rss_key = r->key;
	rc.rss_key_len = (uint8_t)r->key_len;
	rc.rss_hf = r->rss_hf;
	rc2 = rte_eth_dev_rss_hash_update(dp->port_id, &rc);
	if (rc2 != 0) {
		snprintf(why, sizeof(why), "hash key update refused: %s",
			 rte_strerror(-rc2));
		return why;
	}
	memset(&rc, 0, sizeof(rc));
	memset(back, 0, sizeof(back));
	rc.rss_key = back;
	rc.rss_key_len = (uint8_t)r->key_len;
	rc2 = rte_eth_dev_rss_hash_conf_get(dp->port_id, &rc);
	if (rc2 != 0) {
		snprintf(why, sizeof(why), "hash key cannot be read back: %s",
			 rte_strerror(-rc2));
		return why;
	}
	if (memcmp(back, r->key, r->key_len) != 0)
		return "hash key read back differs from the one set";
	if ((rc.rss_hf & NEED_HF) != NEED_HF)
		return "RSS on IPv4/TCP and IPv4/UDP not in effect after update";
	return NULL;
}

static const char *program_reta(struct dp *dp, const struct dp_rss *r)
{
	struct rte_eth_rss_reta_entry64 t[DP_RSS_RETA_MAX / RTE_ETH_RETA_GROUP_SIZE];
	unsigned groups = (r->reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) /
			  RTE_ETH_RETA_GROUP_SIZE;
	static char why[160];
	int rc;

	memset(t, 0, sizeof(t));
	for (unsigned i = 0; i < r->reta_size; i++) {
		unsigned g = i / RTE_ETH_RETA_GROUP_SIZE;
		unsigned b = i % RTE_ETH_RETA_GROUP_SIZE;
		t[g].mask |= 1ULL << b;
		t[g].reta[b] = r->reta[i];
	}
	rc = rte_eth_dev_rss_reta_update(dp->port_id, t, r->reta_size);
	if (rc != 0) {
		snprintf(why, sizeof(why), "RETA update refused: %s",
			 rte_strerror(-rc));
		return why;
	}
	for (unsigned g = 0; g < groups; g++)
		memset(t[g].reta, 0xff, sizeof(t[g].reta));
	rc = rte_eth_dev_rss_reta_query(dp->port_id, t, r->reta_size);
	if (rc != 0) {
		snprintf(why, sizeof(why), "RETA cannot be read back: %s",
			 rte_strerror(-rc));
		return why;
	}
	for (unsigned i = 0; i < r->reta_size; i++)
		if (t[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] !=
		    r->reta[i]) {
			snprintf(why, sizeof(why), "RETA entry %u read back "
				 "differs", i);
			return why;
		}
	return NULL;
}

int dp_rss_setup(struct dp *dp)
{
	struct dp_rss *r = &dp->rss;
	const char *why;

	dp_rss_active = NULL;
	if (dp->nworkers < 2)
		return -ENOTSUP;
	why = unsuitable(dp);
	if (why == NULL) {
		dp_rss_table_init(r, dp->info.hash_key_size ?
				     dp->info.hash_key_size : 40,
				  dp->info.reta_size, dp->nworkers);
		/* what configure_port asked for */
		r->rss_hf = dp->info.flow_type_rss_offloads &
			    (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
		why = program_key(dp, r);
	}
	if (why == NULL)
		why = program_reta(dp, r);
	if (why != NULL) {
		LOG(LOG_NOTICE, "dataplane: port %u (%s): no deterministic RSS "
		    "(%s): software steering across %u workers", dp->port_id,
		    dp->info.driver_name, why, dp->nworkers);
		return -ENOTSUP;
	}
	dp_rss_active = r;
	LOG(LOG_NOTICE, "dataplane: port %u (%s): RSS owns flows: symmetric "
	    "Toeplitz key of %u bytes, RETA of %u entries over %u workers "
	    "(first %u TCP frames per worker checked)", dp->port_id,
	    dp->info.driver_name, r->key_len, r->reta_size, dp->nworkers,
	    DP_RSS_CHECK);
	return 0;
}
