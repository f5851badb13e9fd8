/*
 * tcp_script.h: a packetdrill-like interpreter for TCP unit tests.
 *
 * A script is text, one event per line, run against a stack on the fake
 * port (the ut fixture: call it from a UT_TEST with ut_setup_env). The peer
 * is 198.18.0.1 (MAC 02:00:00:00:00:01, learned by ARP before the first
 * line), we are 198.18.0.2. Grammar, '#' to end of line is a comment:
 *
 *   conf KEY VALUE          stack_conf before the first timed line:
 *                           tcp_retries, tcp_syn_retries, tcp_rcvbuf,
 *                           tcp_sndbuf, tcp_msl_ms, tcp_delack_ms,
 *                           tcp_rto_min_ms, tcp_rto_max_ms, tcp_rto_init_ms,
 *                           tcp_fin_timeout_ms, tcp_syn_backlog,
 *                           tcp_max_conns, tcp_keepalive_idle_ms,
 *                           tcp_keepalive_intvl_ms, tcp_keepalive_probes,
 *                           tcp_max_timewait, tcp_challenge_ack_limit,
 *                           tcp_timestamps, tcp_sack, tcp_wscale,
 *                           tcp_keepalive (0/1)
 *   TIME EVENT              TIME: seconds, absolute ("0.2") or relative to
 *                           the previous line ("+0.04"); script time 0 is
 *                           UT_T0. Time advances 1 ms per stack_tick (each
 *                           followed by stack_flush); a segment sent before
 *                           the time of the line that expects it fails.
 *
 * Events:
 *   < FLAGS SEQ:END(LEN) [ack N] [win N] [<OPTS>] [badsum] [doff N]
 *       inject a segment from the peer. FLAGS: S F R P U and '.' (ACK).
 *       SEQ is the peer's absolute sequence number; 'ack' is relative to
 *       our ISN (learned from the first SYN we send). win defaults to
 *       65535. Payload byte at peer sequence x is ts_peer_byte(x).
 *   > FLAGS SEQ:END(LEN) [ack N] [win N] [<OPTS>] [abs] [...]
 *       the next segment we send must match: flags exactly (a trailing
 *       '~', as in "P.~", leaves PSH unchecked), SEQ relative to
 *       our ISN (absolute with 'abs', e.g. a RST from no connection), ack
 *       absolute, window as raw field, options in order (only if given;
 *       "<>" means none). '*' (or '?') matches any number. Payload must be
 *       the bytes the application wrote at that offset, and every TSval
 *       must follow a 1 ms clock from the first one we sent.
 *   > none                  nothing is sent up to this line's time
 *   OPTS: comma list of mss N, sackOK, TS val N ecr N, nop, eol, wscale N,
 *         sack A:B [A:B..] (outbound: peer sequence numbers; inbound: ours,
 *         relative to our ISN like 'ack'), raw HEX.. (inbound only: bytes
 *         as they are). Inbound "ecr *" echoes the last TSval we sent.
 *
 * Application commands (the test app, on the current connection):
 *   listen PORT APP [backlog N] [max N] [cc newreno|cubic]
 *                           APP: echo discard sink hold refuse
 *   unlisten
 *   connect IP PORT [APP]   active open (APP default sink)
 *   port LPORT | rport RPORT   our/peer port for injected segments
 *   forget_isn              the next SYN(-ACK) we send sets a new ISN and
 *                           TSval clock (a new connection on old ports)
 *   icmp TYPE CODE SEQ [mtu N]  the gateway sends an ICMP error quoting a
 *                           segment of ours on the current ports with
 *                           sequence SEQ (relative to our ISN)
 *   send N [-> M]           tcp_send N bytes, optionally check the result
 *   shutdown | close | abort | pause | resume
 *   expect closed none|RESET|TIMEOUT|REFUSED|UNREACHABLE|SHUTDOWN|DONE
 *   expect rcvd N | conns N | state NAME | ctr LAYER.NAME N |
 *          peer_closed N | writable N | connected N | sendq N | rto N |
 *          nstate NAME N (connections in state NAME, tcp_state_counts) |
 *          listener PORT listening|open|syn_pending|accepted|refused|
 *                   over_limit|syncookies N
 *
 * After every line the per-state gauges and the listener slots are
 * checked against a recount of the connection pool.
 *
 * Every mismatch fails the test with the script line and the actual segment
 * in the same notation. At the end: no unsent surprise left on the port,
 * the stack is stopped (ut_end) and the pool must be full.
 */
#ifndef DPMAIL_TESTS_TCP_SCRIPT_H
#define DPMAIL_TESTS_TCP_SCRIPT_H

#include <stdint.h>

/* Runs script (name for messages). Call from a UT_TEST with ut_setup_env. */
void ts_run(const char *name, const char *script);

/* The peer's payload byte at its absolute sequence number seq. */
static inline uint8_t ts_peer_byte(uint32_t seq)
{
	return (uint8_t)(seq * 7u + (seq >> 8) + 3u);
}

/* Our application's byte at offset off of what 'send' writes. */
static inline uint8_t ts_app_byte(uint64_t off)
{
	return (uint8_t)(off * 13u + 5u);
}

#endif
