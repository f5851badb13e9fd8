/*
 * tcp_sack.c: the sender's SACK scoreboard and SACK-based loss recovery,
 * after RFC 6675 (conservative, simplified in two ways that only make it
 * more conservative: every hole below the highest SACKed byte counts as
 * lost once recovery has begun, and the scoreboard keeps at most
 * TCP_SACK_RANGES ranges, dropping the highest when full).
 *
 * The scoreboard is a sorted list of disjoint SACKed ranges above snd_una.
 * In recovery, pipe = outstanding - SACKed - lost + retransmitted, and
 * holes are retransmitted from high_rxt upward while pipe < cwnd.
 */
#include "tcpstack/tcp_internal.h"

void tcp_sack_reset(struct tcp_conn *c)
{
	c->nsb = 0;
	c->high_rxt = c->snd_una;
}

/* Drops what snd_una has passed. */
void tcp_sack_prune(struct tcp_conn *c)
{
	unsigned i = 0, j = 0;

	for (; i < c->nsb; i++) {
		if (SEQ_LEQ(c->sb[i][1], c->snd_una))
			continue;
		c->sb[j][0] = SEQ_LT(c->sb[i][0], c->snd_una) ? c->snd_una :
								 c->sb[i][0];
		c->sb[j][1] = c->sb[i][1];
		j++;
	}
	c->nsb = (uint8_t)j;
	if (SEQ_LT(c->high_rxt, c->snd_una))
		c->high_rxt = c->snd_una;
}

static void insert(struct tcp_conn *c, uint32_t a, uint32_t b)
{
	unsigned i = 0, j;

	while (i < c->nsb && SEQ_LT(c->sb[i][1], a))
		i++;
	/* merge with every range it touches */
	j = i;
	while (j < c->nsb && SEQ_LEQ(c->sb[j][0], b)) {
		if (SEQ_LT(c->sb[j][0], a))
			a = c->sb[j][0];
		if (SEQ_GT(c->sb[j][1], b))
			b = c->sb[j][1];
		j++;
	}
	if (j > i) {
		/* ranges i..j-1 collapse into one at i */
		c->sb[i][0] = a;
		c->sb[i][1] = b;
		for (unsigned k = j, d = i + 1; k < c->nsb; k++, d++) {
			c->sb[d][0] = c->sb[k][0];
			c->sb[d][1] = c->sb[k][1];
		}
		c->nsb = (uint8_t)(c->nsb - (j - i - 1));
		return;
	}
	if (c->nsb == TCP_SACK_RANGES) {
		if (i == c->nsb)
			return; /* above everything we keep: forget it */
		c->nsb--;   /* drop the highest range */
	}
	for (unsigned k = c->nsb; k > i; k--) {
		c->sb[k][0] = c->sb[k - 1][0];
		c->sb[k][1] = c->sb[k - 1][1];
	}
	c->sb[i][0] = a;
	c->sb[i][1] = b;
	c->nsb++;
}

void tcp_sack_update(struct tcp_conn *c, const uint32_t (*blk)[2], unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint32_t a = blk[i][0], b = blk[i][1];

		/* RFC 2018: only blocks inside what is outstanding count;
		 * D-SACKs (below snd_una) say nothing new */
		if (!SEQ_LT(a, b) || SEQ_LEQ(b, c->snd_una) ||
		    SEQ_GT(b, c->snd_max))
			continue;
		if (SEQ_LT(a, c->snd_una))
			a = c->snd_una;
		insert(c, a, b);
	}
}

uint32_t tcp_sack_bytes(const struct tcp_conn *c)
{
	uint32_t n = 0;

	for (unsigned i = 0; i < c->nsb; i++)
		n += c->sb[i][1] - c->sb[i][0];
	return n;
}

/* Where loss ends: the highest SACKed byte, or after a timeout, everything
 * sent before it (RFC 6675 5.1). */
static uint32_t lost_limit(const struct tcp_conn *c)
{
	if (c->flags & TF_RTO_RECOVERY)
		return SEQ_GT(c->recover, c->snd_una) ? c->recover : c->snd_una;
	return c->nsb > 0 ? c->sb[c->nsb - 1][1] : c->snd_una;
}

/* Bytes in holes below lost_limit(): taken as lost. */
static uint32_t hole_bytes(const struct tcp_conn *c)
{
	uint32_t from = c->snd_una, n = 0, lim = lost_limit(c);

	for (unsigned i = 0; i < c->nsb && SEQ_LT(from, lim); i++) {
		uint32_t end = SEQ_LT(c->sb[i][0], lim) ? c->sb[i][0] : lim;
		if (SEQ_GT(end, from))
			n += end - from;
		from = c->sb[i][1];
	}
	if (SEQ_LT(from, lim))
		n += lim - from;
	return n;
}

/* Hole bytes below high_rxt: retransmitted in this recovery. */
static uint32_t retransmitted_bytes(const struct tcp_conn *c)
{
	uint32_t from = c->snd_una, n = 0;

	for (unsigned i = 0; i < c->nsb && SEQ_LT(from, c->high_rxt); i++) {
		uint32_t end = SEQ_LT(c->sb[i][0], c->high_rxt) ? c->sb[i][0] :
								   c->high_rxt;
		if (SEQ_GT(end, from))
			n += end - from;
		from = c->sb[i][1];
	}
	return n;
}

uint32_t tcp_sack_pipe(const struct tcp_conn *c)
{
	uint32_t out = c->snd_max - c->snd_una;
	uint32_t gone = tcp_sack_bytes(c) + hole_bytes(c);

	return (out > gone ? out - gone : 0) + retransmitted_bytes(c);
}

/* The first un-SACKed byte at or above from and below the highest SACKed
 * byte, and how long that hole is. */
static bool next_hole(const struct tcp_conn *c, uint32_t from, uint32_t *seq,
		      uint32_t *len)
{
	uint32_t start = c->snd_una, lim = lost_limit(c), a;

	for (unsigned i = 0; i < c->nsb; i++) {
		uint32_t end = SEQ_LT(c->sb[i][0], lim) ? c->sb[i][0] : lim;
		a = SEQ_GT(from, start) ? from : start;
		if (SEQ_LT(a, end)) {
			*seq = a;
			*len = end - a;
			return true;
		}
		start = c->sb[i][1];
	}
	a = SEQ_GT(from, start) ? from : start;
	if (SEQ_LT(a, lim)) {
		*seq = a;
		*len = lim - a;
		return true;
	}
	return false;
}

bool tcp_sack_should_recover(const struct tcp_conn *c)
{
	/* RFC 6675 5 (IsLost on the first hole): DupThresh segments SACKed */
	return (c->flags & TF_SACK) && c->nsb > 0 &&
	       tcp_sack_bytes(c) >= 3u * c->mss;
}

void tcp_sack_output(struct tcp_conn *c)
{
	uint32_t pipe = tcp_sack_pipe(c);

	while (pipe + c->mss <= c->cwnd) {
		uint32_t seq, len;

		if (!next_hole(c, c->high_rxt, &seq, &len))
			break;
		if (len > c->mss)
			len = c->mss;
		if (seq - c->snd_una >= c->sq_len) {
			/* the hole is our FIN */
			if (!(c->flags & TF_FIN_SENT) ||
			    tcp_send_segment(c, seq, 0, RTE_TCP_ACK_FLAG |
						     RTE_TCP_FIN_FLAG) != 0)
				break;
			c->high_rxt = seq + 1;
			break;
		}
		if (seq - c->snd_una + len > c->sq_len)
			len = c->sq_len - (seq - c->snd_una);
		{
			int n = tcp_send_segment(c, seq, len, RTE_TCP_ACK_FLAG);
			if (n <= 0)
				break;
			len = (uint32_t)n;
		}
		c->high_rxt = seq + len;
		pipe += len;
	}
}
