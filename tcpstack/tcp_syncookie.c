/*
 * tcp_syncookie.c: SYN cookies (RFC 4987 3.6), used when a listener's SYN
 * queue is full, so that a SYN flood cannot keep real clients out.
 *
 * The SYN-ACK's sequence number carries the state we did not keep:
 *   bits 31..27  t, a 64-second counter (mod 32)
 *   bits 26..24  index of the MSS we granted (table below)
 *   bits 23..0   SipHash(secret; addresses, ports, client ISN, t)
 * The final ACK (ack - 1 = cookie) is accepted if t is this period or the
 * previous one and the hash matches. Cookie SYN-ACKs offer only MSS, so
 * such connections run without window scaling, SACK and timestamps.
 */
#include <string.h>

#include "common/siphash.h"
#include "tcpstack/tcp_internal.h"

static const uint16_t cookie_mss[8] = { 536, 1220, 1300, 1400, 1440,
					1460, 4312, 8960 };

#define COOKIE_PERIOD_MS 64000u

static uint32_t cookie_hash(const struct stack *s, uint32_t rip,
			    uint16_t rport, uint32_t lip, uint16_t lport,
			    uint32_t client_isn, uint32_t t)
{
	uint32_t k[5] = { rip, lip, (uint32_t)rport << 16 | lport, client_isn,
			  t };

	return (uint32_t)siphash24(s->tcp->secret, k, sizeof(k)) & 0xffffffu;
}

uint32_t tcp_cookie_make(struct stack *s, uint32_t rip, uint16_t rport,
			 uint32_t lip, uint16_t lport, uint32_t client_isn,
			 uint16_t peer_mss, uint16_t *mss_out)
{
	uint32_t t = (uint32_t)(s->now_ms / COOKIE_PERIOD_MS) & 31;
	uint32_t ours = s->q->mtu - 40u;
	unsigned i = 7;

	while (i > 0 && (cookie_mss[i] > peer_mss || cookie_mss[i] > ours))
		i--;
	*mss_out = cookie_mss[i];
	return t << 27 | (uint32_t)i << 24 |
	       cookie_hash(s, rip, rport, lip, lport, client_isn, t);
}

int tcp_cookie_check(struct stack *s, uint32_t rip, uint16_t rport,
		     uint32_t lip, uint16_t lport, uint32_t client_isn,
		     uint32_t cookie, uint16_t *mss_out)
{
	uint32_t now = (uint32_t)(s->now_ms / COOKIE_PERIOD_MS) & 31;
	uint32_t t = cookie >> 27;

	if (t != now && t != ((now + 31) & 31))
		return -1; /* older than one period: expired */
	if ((cookie & 0xffffffu) !=
	    cookie_hash(s, rip, rport, lip, lport, client_isn, t))
		return -1;
	*mss_out = cookie_mss[(cookie >> 24) & 7];
	return 0;
}
