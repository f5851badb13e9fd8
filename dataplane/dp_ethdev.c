/*
 * dp_ethdev.c: the port: pools, queue pairs, start, describe, close; and
 * the ethdev side of the dp_queue seam.
 */
#include "dataplane/dp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <rte_random.h>
#include <rte_ring.h>

#include "common/log.h"
#include "dataplane/dp_steer.h"

static uint16_t ethdev_rx(struct dp_queue *q, struct rte_mbuf **pkts,
			  uint16_t n)
{
	return rte_eth_rx_burst(q->port_id, q->queue_id, pkts, n);
}

static uint16_t ethdev_tx(struct dp_queue *q, struct rte_mbuf **pkts,
			  uint16_t n)
{
	return rte_eth_tx_burst(q->port_id, q->queue_id, pkts, n);
}

static const struct dp_queue_ops ethdev_ops = {
	.rx = ethdev_rx,
	.tx = ethdev_tx,
};

static unsigned lcore_socket(unsigned lcore)
{
	int s = (int)rte_lcore_to_socket_id(lcore);

	return s < 0 || s >= RTE_MAX_NUMA_NODES ? 0 : (unsigned)s;
}

static int make_pools(struct dp *dp)
{
	const struct dp_conf *c = &dp->conf;
	uint32_t room = RTE_MBUF_DEFAULT_BUF_SIZE;
	uint32_t need = RTE_PKTMBUF_HEADROOM + c->mtu + RTE_ETHER_HDR_LEN +
			RTE_ETHER_CRC_LEN + 2 * RTE_VLAN_HLEN;
	/* each worker pins rx_desc in its RX ring, up to tx_desc in flight,
	 * a burst in hand and a cache: below that the port starves */
	uint64_t per_worker = (uint64_t)c->rx_desc + c->tx_desc + c->burst +
			      c->mbuf_cache;

	if (room < need)
		room = need;
	for (unsigned i = 0; i < dp->nworkers; i++) {
		unsigned sock = lcore_socket(dp->workers[i].lcore_id);
		unsigned on_sock = 0;
		char name[RTE_MEMPOOL_NAMESIZE];

		if (dp->pools[sock] != NULL)
			continue;
		for (unsigned j = 0; j < dp->nworkers; j++)
			on_sock += lcore_socket(dp->workers[j].lcore_id) == sock;
		if ((uint64_t)c->mbufs < per_worker * on_sock) {
			LOG(LOG_ERR,
			    "dataplane: [dataplane] mbufs = %u is too small for "
			    "%u worker(s) on socket %u: need at least %llu "
			    "(rx_desc + tx_desc + burst + mbuf_cache per worker)",
			    c->mbufs, on_sock, sock,
			    (unsigned long long)(per_worker * on_sock));
			return -EINVAL;
		}
		snprintf(name, sizeof(name), "mbuf_s%u", sock);
		dp->pools[sock] = rte_pktmbuf_pool_create(name, c->mbufs,
				c->mbuf_cache, 0, (uint16_t)room, (int)sock);
		if (dp->pools[sock] == NULL) {
			LOG(LOG_ERR, "dataplane: cannot create pool of %u mbufs "
			    "on socket %u: %s (raise [eal] memory_mb?)",
			    c->mbufs, sock, rte_strerror(rte_errno));
			return -ENOMEM;
		}
		LOG(LOG_INFO, "dataplane: pool %s: %u mbufs of %u bytes",
		    name, c->mbufs, room);
	}
	return 0;
}

static int pick_workers(struct dp *dp)
{
	unsigned lcore, n = 0;

	RTE_LCORE_FOREACH_WORKER(lcore) {
		if (n == dp->conf.workers)
			break;
		dp->workers[n].index = n;
		dp->workers[n].lcore_id = lcore;
		n++;
	}
	if (n < dp->conf.workers) {
		LOG(LOG_ERR, "dataplane: [dataplane] workers = %u but [eal] "
		    "lcores = %s gives only %u worker lcore(s) besides the main "
		    "one", dp->conf.workers, dp->conf.lcores, n);
		return -EINVAL;
	}
	dp->nworkers = n;
	return 0;
}

/*
 * With several workers, every flow must reach the worker that owns it.
 * The PMDs this runs on first (tap, af_packet, virtio) spread flows with
 * a hash we cannot reproduce, so the receiving worker classifies each
 * frame and hands it to its owner over that owner's ring. The rings are
 * made whenever there are several workers: with deterministic RSS
 * (dp_rss_setup, after start) they still carry ARP copies and ICMP
 * errors, and all flows again if RSS fails its runtime check.
 */
static int setup_steering(struct dp *dp)
{
	uint32_t size = 1;

	if (dp->nworkers < 2)
		return 0;
	if (dp_steer_register_flag() != 0) {
		LOG(LOG_ERR, "dataplane: cannot register the steering mbuf flag");
		return -ENOSPC;
	}
	while (size < 4u * dp->conf.rx_desc)
		size <<= 1;
	for (unsigned i = 0; i < dp->nworkers; i++) {
		char name[RTE_RING_NAMESIZE];
		snprintf(name, sizeof(name), "steer%u", i);
		dp->steer_ring[i] = rte_ring_create(name, size,
			(int)lcore_socket(dp->workers[i].lcore_id), RING_F_SC_DEQ);
		if (dp->steer_ring[i] == NULL) {
			LOG(LOG_ERR, "dataplane: cannot create ring %s: %s",
			    name, rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	dp->steering = true;
	dp->steer_seed = (uint32_t)rte_rand();
	LOG(LOG_INFO, "dataplane: steering rings of %u frames for %u workers",
	    size, dp->nworkers);
	return 0;
}

static int configure_port(struct dp *dp)
{
	const struct dp_conf *c = &dp->conf;
	struct rte_eth_conf pc;
	uint16_t rxd = c->rx_desc, txd = c->tx_desc;
	uint16_t port = dp->port_id;
	int rc;

	rc = rte_eth_dev_info_get(port, &dp->info);
	if (rc != 0) {
		LOG(LOG_ERR, "dataplane: port %u: no device info: %s", port,
		    rte_strerror(-rc));
		return rc;
	}
	if (dp->info.max_rx_queues < dp->nworkers ||
	    dp->info.max_tx_queues < dp->nworkers) {
		/* software steering for such ports comes with the TCP stack */
		LOG(LOG_ERR, "dataplane: port %u (%s) offers %u rx / %u tx "
		    "queues; [dataplane] workers = %u needs one pair each "
		    "(lower workers, or raise the PMD's queue count, e.g. "
		    "net_af_packet's qpairs=)", port, dp->info.driver_name,
		    dp->info.max_rx_queues, dp->info.max_tx_queues,
		    dp->nworkers);
		return -EINVAL;
	}
	dp->nqueues = (uint16_t)dp->nworkers;

	memset(&pc, 0, sizeof(pc));
	if (dp->nqueues > 1 && dp->info.flow_type_rss_offloads != 0) {
		pc.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		pc.rx_adv_conf.rss_conf.rss_hf = dp->info.flow_type_rss_offloads &
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
	}
	/* checksum offload where offered; software checksums otherwise */
	dp->rx_offloads = dp->info.rx_offload_capa &
		(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM |
		 RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
	dp->tx_offloads = dp->info.tx_offload_capa &
		(RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM |
		 RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
	/* the NIC's hash in each mbuf, for dp_rss's runtime check */
	if (pc.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS)
		dp->rx_offloads |= dp->info.rx_offload_capa &
				   RTE_ETH_RX_OFFLOAD_RSS_HASH;
	pc.rxmode.offloads = dp->rx_offloads;
	pc.txmode.offloads = dp->tx_offloads;

	rc = rte_eth_dev_configure(port, dp->nqueues, dp->nqueues, &pc);
	if (rc != 0) {
		LOG(LOG_ERR, "dataplane: port %u: configure failed: %s", port,
		    rte_strerror(-rc));
		return rc;
	}
	rc = rte_eth_dev_set_mtu(port, c->mtu);
	if (rc != 0 && !(rc == -ENOTSUP && c->mtu == RTE_ETHER_MTU)) {
		LOG(LOG_ERR, "dataplane: port %u: cannot set MTU %u: %s", port,
		    c->mtu, rte_strerror(-rc));
		return rc;
	}
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
	if (rc != 0) {
		LOG(LOG_ERR, "dataplane: port %u: descriptor counts: %s", port,
		    rte_strerror(-rc));
		return rc;
	}
	for (uint16_t qi = 0; qi < dp->nqueues; qi++) {
		struct dp_worker *w = &dp->workers[qi];
		unsigned sock = lcore_socket(w->lcore_id);
		struct rte_eth_rxconf rxc = dp->info.default_rxconf;
		struct rte_eth_txconf txc = dp->info.default_txconf;

		rxc.offloads = dp->rx_offloads;
		txc.offloads = dp->tx_offloads;
		rc = rte_eth_rx_queue_setup(port, qi, rxd, sock, &rxc,
					    dp->pools[sock]);
		if (rc == 0)
			rc = rte_eth_tx_queue_setup(port, qi, txd, sock, &txc);
		if (rc != 0) {
			LOG(LOG_ERR, "dataplane: port %u queue %u: setup failed: "
			    "%s", port, qi, rte_strerror(-rc));
			return rc;
		}
		w->q.ops = &ethdev_ops;
		w->q.priv = NULL;
		w->q.port_id = port;
		w->q.queue_id = qi;
		w->q.rx_offloads = dp->rx_offloads;
		w->q.tx_offloads = dp->tx_offloads;
		w->q.mtu = c->mtu;
		w->q.pool = dp->pools[sock];
		rte_eth_macaddr_get(port, &w->q.mac);
		if (dp_fault_enabled(&c->fault))
			dp_fault_wrap(&w->q, &w->fault, &dp->conf.fault, qi);
	}
	if (dp_fault_enabled(&c->fault))
		LOG(LOG_WARNING, "dataplane: FAULT INJECTION ON: rx loss %u "
		    "corrupt %u duplicate %u reorder %u, tx loss %u corrupt %u "
		    "duplicate %u (per million)", c->fault.rx_loss_ppm,
		    c->fault.rx_corrupt_ppm, c->fault.rx_duplicate_ppm,
		    c->fault.rx_reorder_ppm, c->fault.tx_loss_ppm,
		    c->fault.tx_corrupt_ppm, c->fault.tx_duplicate_ppm);
	rc = rte_eth_dev_start(port);
	if (rc != 0) {
		LOG(LOG_ERR, "dataplane: port %u: start failed: %s", port,
		    rte_strerror(-rc));
		return rc;
	}
	dp->port_started = true;
	/* one log line either way (dp_rss_setup's) */
	if (dp->nworkers > 1 && dp_rss_setup(dp) == 0)
		dp->steering = false;
	return 0;
}

int dp_open(struct dp *dp, const struct dp_conf *conf)
{
	uint16_t nports;
	int rc;

	memset(dp, 0, sizeof(*dp));
	dp->conf = *conf;
	dp->port_id = RTE_MAX_ETHPORTS;
	nports = rte_eth_dev_count_avail();
	if (nports == 0) {
		LOG(LOG_ERR, "dataplane: no port found for devargs '%s' (a PCI "
		    "device must be bound to vfio-pci; a vdev name must start "
		    "with a known driver such as net_tap)", conf->devargs);
		return -ENODEV;
	}
	if (nports > 1)
		LOG(LOG_WARNING, "dataplane: %u ports found; using the first",
		    nports);
	RTE_ETH_FOREACH_DEV(dp->port_id) break;

	rc = pick_workers(dp);
	if (rc == 0)
		rc = make_pools(dp);
	if (rc == 0)
		rc = setup_steering(dp);
	if (rc == 0)
		rc = configure_port(dp);
	return rc;
}

static void offload_names(char *buf, size_t len, uint64_t capa, bool rx)
{
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned b = 0; b < 64 && n < len; b++) {
		uint64_t bit = 1ULL << b;
		if (!(capa & bit))
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "",
				      rx ? rte_eth_dev_rx_offload_name(bit) :
					   rte_eth_dev_tx_offload_name(bit));
	}
	if (n == 0)
		snprintf(buf, len, "none");
}

void dp_describe(const struct dp *dp)
{
	struct rte_eth_link link;
	struct rte_ether_addr mac;
	char lstr[96];
	char rxo[512], txo[512];

	rte_eth_macaddr_get(dp->port_id, &mac);
	memset(&link, 0, sizeof(link));
	rte_eth_link_get_nowait(dp->port_id, &link);
	if (link.link_status == RTE_ETH_LINK_DOWN)
		snprintf(lstr, sizeof(lstr), "down");
	else
		snprintf(lstr, sizeof(lstr), "up %u Mbps %s-duplex",
			 link.link_speed,
			 link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX ?
				 "full" : "half");
	LOG(LOG_NOTICE, "dataplane: port %u driver=%s mac=" RTE_ETHER_ADDR_PRT_FMT
	    " socket=%d link: %s", dp->port_id, dp->info.driver_name,
	    RTE_ETHER_ADDR_BYTES(&mac), rte_eth_dev_socket_id(dp->port_id),
	    lstr);
	LOG(LOG_NOTICE, "dataplane: port %u queues: %u rx / %u tx in use "
	    "(device max %u / %u), mtu %u", dp->port_id, dp->nqueues,
	    dp->nqueues, dp->info.max_rx_queues, dp->info.max_tx_queues,
	    dp->conf.mtu);
	offload_names(rxo, sizeof(rxo), dp->info.rx_offload_capa, true);
	offload_names(txo, sizeof(txo), dp->info.tx_offload_capa, false);
	LOG(LOG_INFO, "dataplane: port %u rx offloads offered: %s",
	    dp->port_id, rxo);
	LOG(LOG_INFO, "dataplane: port %u tx offloads offered: %s",
	    dp->port_id, txo);
	offload_names(rxo, sizeof(rxo), dp->rx_offloads, true);
	offload_names(txo, sizeof(txo), dp->tx_offloads, false);
	LOG(LOG_NOTICE, "dataplane: port %u offloads in use: rx %s; tx %s",
	    dp->port_id, rxo, txo);
	for (unsigned i = 0; i < dp->nworkers; i++)
		LOG(LOG_NOTICE, "dataplane: worker %u on lcore %u (socket %u), "
		    "queue %u", i, dp->workers[i].lcore_id,
		    lcore_socket(dp->workers[i].lcore_id),
		    dp->workers[i].q.queue_id);
}

unsigned dp_mbufs_in_use(const struct dp *dp)
{
	unsigned n = 0;

	for (unsigned s = 0; s < RTE_MAX_NUMA_NODES; s++)
		if (dp->pools[s] != NULL)
			n += rte_mempool_in_use_count(dp->pools[s]);
	return n;
}

void dp_close(struct dp *dp)
{
	if (dp_rss_active == &dp->rss)
		dp_rss_active = NULL;
	for (unsigned i = 0; i < dp->nworkers; i++)
		dp_fault_fini(&dp->workers[i].fault);
	/* frames in flight between workers go back to the pool */
	for (unsigned i = 0; i < DP_MAX_WORKERS; i++) {
		struct rte_mbuf *m;
		while (dp->steer_ring[i] != NULL &&
		       rte_ring_dequeue(dp->steer_ring[i], (void **)&m) == 0)
			rte_pktmbuf_free(m);
	}
	if (dp->port_id < RTE_MAX_ETHPORTS) {
		if (dp->port_started) {
			int rc = rte_eth_dev_stop(dp->port_id);
			if (rc != 0)
				LOG(LOG_WARNING, "dataplane: port %u stop: %s",
				    dp->port_id, rte_strerror(-rc));
			dp->port_started = false;
		}
		rte_eth_dev_close(dp->port_id);
		dp->port_id = RTE_MAX_ETHPORTS;
	}
}

void dp_free_pools(struct dp *dp)
{
	for (unsigned i = 0; i < DP_MAX_WORKERS; i++) {
		rte_ring_free(dp->steer_ring[i]);
		dp->steer_ring[i] = NULL;
	}
	for (unsigned s = 0; s < RTE_MAX_NUMA_NODES; s++) {
		rte_mempool_free(dp->pools[s]);
		dp->pools[s] = NULL;
	}
}
