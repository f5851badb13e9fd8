/*
 * dp_fakeport.c: the in-memory port behind the dp_queue seam.
 */
#include "dataplane/dp_fakeport.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

static uint16_t fake_rx(struct dp_queue *q, struct rte_mbuf **pkts,
			uint16_t n)
{
	struct dp_fakeport *fp = q->priv;
	uint16_t i = 0;

	while (i < n && fp->rx_head != fp->rx_tail) {
		pkts[i++] = fp->rxq[fp->rx_head % DP_FAKE_QLEN];
		fp->rx_head++;
	}
	return i;
}

static uint16_t fake_tx(struct dp_queue *q, struct rte_mbuf **pkts,
			uint16_t n)
{
	struct dp_fakeport *fp = q->priv;
	uint16_t i = 0;

	while (i < n && fp->tx_room > 0 &&
	       fp->tx_tail - fp->tx_head < DP_FAKE_QLEN) {
		fp->txq[fp->tx_tail % DP_FAKE_QLEN] = pkts[i++];
		fp->tx_tail++;
		fp->tx_total++;
		if (fp->tx_room != UINT_MAX)
			fp->tx_room--;
	}
	return i;
}

static const struct dp_queue_ops fake_ops = {
	.rx = fake_rx,
	.tx = fake_tx,
};

void dp_fake_init(struct dp_fakeport *fp, struct rte_mempool *pool,
		  const struct rte_ether_addr *mac, uint16_t mtu)
{
	memset(fp, 0, sizeof(*fp));
	fp->q.ops = &fake_ops;
	fp->q.priv = fp;
	fp->q.mac = *mac;
	fp->q.mtu = mtu;
	fp->q.pool = pool;
	fp->tx_room = UINT_MAX;
}

int dp_fake_inject(struct dp_fakeport *fp, const void *frame, size_t len)
{
	struct rte_mbuf *m;
	char *p;

	if (fp->rx_tail - fp->rx_head >= DP_FAKE_QLEN)
		return -ENOBUFS;
	m = rte_pktmbuf_alloc(fp->q.pool);
	if (m == NULL)
		return -ENOMEM;
	p = rte_pktmbuf_append(m, (uint16_t)len);
	if (p == NULL) {
		rte_pktmbuf_free(m);
		return -EMSGSIZE;
	}
	memcpy(p, frame, len);
	fp->rxq[fp->rx_tail % DP_FAKE_QLEN] = m;
	fp->rx_tail++;
	return 0;
}

struct rte_mbuf *dp_fake_take_tx(struct dp_fakeport *fp)
{
	struct rte_mbuf *m;

	if (fp->tx_head == fp->tx_tail)
		return NULL;
	m = fp->txq[fp->tx_head % DP_FAKE_QLEN];
	fp->tx_head++;
	return m;
}

unsigned dp_fake_tx_pending(const struct dp_fakeport *fp)
{
	return fp->tx_tail - fp->tx_head;
}

void dp_fake_fini(struct dp_fakeport *fp)
{
	struct rte_mbuf *m;

	while (fp->rx_head != fp->rx_tail)
		rte_pktmbuf_free(fp->rxq[fp->rx_head++ % DP_FAKE_QLEN]);
	while ((m = dp_fake_take_tx(fp)) != NULL)
		rte_pktmbuf_free(m);
}
