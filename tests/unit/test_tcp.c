/*
 * test_tcp.c: packet-level scenarios of the userspace TCP, written in the
 * script notation of tcp_script.h (packetdrill's, simplified): what the
 * peer sends, what we must send back, byte for byte and millisecond for
 * millisecond, and what the application sees.
 */
#include <criterion/criterion.h>

#include "tests/unit/tcp_script.h"
#include "tests/unit/ut_helpers.h"

#define TCP_SCRIPT(tname, text)                                               \
	UT_TEST(tcp, tname, ut_setup_env)                                     \
	{                                                                     \
		ts_run(#tname, text);                                         \
	}

/* Passive open with every option; our shift is 3 (256 KiB rcvbuf). */
#define HS_PASSIVE(app)                                                       \
	"0     listen 5000 " app "\n"                                          \
	"0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n" \
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>\n" \
	"+0.1  < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 200 ecr *>\n"   \
	"+0    expect state ESTABLISHED\n"

TCP_SCRIPT(echo_data_both_ways,
	HS_PASSIVE("echo")
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > P. 1:11(10) ack 1011 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0.05 < . 1011:1011(0) ack 11 win 512 <nop,nop,TS val 260 ecr *>\n"
	"+0    expect rcvd 10\n"
	"+0    expect sendq 0\n")

/* Active open: our SYN offers everything; the ACK completes it. */
TCP_SCRIPT(active_handshake,
	"0     connect 198.18.0.1 25 sink\n"
	"0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 3>\n"
	"+0.05 < S. 7000:7000(0) ack 1 win 65535 <mss 1460,sackOK,TS val 300 ecr *,nop,wscale 7>\n"
	"+0    > . 1:1(0) ack 7001 win 32768 <nop,nop,TS val * ecr 300>\n"
	"+0    expect connected 1\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect rto 200\n"   /* one 50 ms sample: 50 + 4 x 25 < min */
	"+0    expect ctr tcp.opened 1\n"
	"+0.01 < P. 7001:7101(100) ack 1 win 512 <nop,nop,TS val 310 ecr *>\n"
	"+0.04 > . 1:1(0) ack 7101 win 32768 <nop,nop,TS val * ecr 310>\n"
	"+0    expect rcvd 100\n")

/* RFC 6298 5.7 / RFC 9293 3.8.1: the SYN-ACK is retransmitted with the
 * RTO doubling from 1 s; after syn_retries the half-open is dropped. */
TCP_SCRIPT(synack_retransmit_then_give_up,
	"conf tcp_syn_retries 2\n"
	"0     listen 5000 echo\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>\n"
	"1     > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>\n"
	"3     > S. 0:0(0) ack 1001 win 65535 ...\n"
	"3     expect conns 1\n"
	"7     > none\n"
	"7     expect conns 0\n"
	"7     expect ctr tcp.drop_timeout 1\n"
	"7     expect ctr tcp.retransmits 2\n"
	"7     expect ctr tcp.accepted 0\n")

/* A retransmitted SYN in SYN-RECEIVED gets the SYN-ACK again. */
TCP_SCRIPT(dup_syn_in_syn_received,
	"0     listen 5000 echo\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"0.5   < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0.5   > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"0.6   < . 1001:1001(0) ack 1 win 65535\n"
	"0.6   expect state ESTABLISHED\n"
	"1.5   > none\n")

/* connect: the SYN is retransmitted at 1, 3, 7 s; then on_closed(TIMEOUT) */
TCP_SCRIPT(connect_syn_retransmit_timeout,
	"conf tcp_syn_retries 3\n"
	"0     connect 198.18.0.1 25\n"
	"0     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 3>\n"
	"1     > S 0:0(0) win 65535 <mss 1460,sackOK,TS val * ecr 0,nop,wscale 3>\n"
	"3     > S 0:0(0) win 65535 ...\n"
	"7     > S 0:0(0) win 65535 ...\n"
	"14.999 expect closed none\n"
	"15    > none\n"
	"15    expect closed TIMEOUT\n"
	"15    expect conns 0\n"
	"15    expect ctr tcp.connect_failed 1\n")

/* RFC 9293 3.10.7.3: a RST acknowledging our SYN refuses the connect. */
TCP_SCRIPT(connect_refused_by_rst,
	"0     connect 198.18.0.1 25\n"
	"0     > S 0:0(0) win 65535 ...\n"
	"+0.01 < R. 0:0(0) ack 1 win 0\n"
	"+0    expect closed REFUSED\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.connect_failed 1\n"
	"+2    > none\n")

/* SYN-SENT: an ACK for something we never sent gets <SEQ=SEG.ACK><RST>. */
TCP_SCRIPT(connect_bad_ack_in_syn_sent,
	"0     connect 198.18.0.1 25\n"
	"0     > S 0:0(0) win 65535 ...\n"
	"+0.01 < S. 7000:7000(0) ack 100 win 65535 <mss 1460>\n"
	"+0    > R 100:100(0) win 0\n"
	"+0    expect state SYN-SENT\n"
	"+0.01 < S. 7000:7000(0) ack 1 win 65535 <mss 1460>\n"
	"+0    > . 1:1(0) ack 7001 win 65535 <>\n"   /* no wscale offered: unscaled */
	"+0    expect connected 1\n")

TCP_SCRIPT(passive_handshake,
	HS_PASSIVE("echo")
	"+0    expect ctr tcp.accepted 1\n"
	"+0    expect conns 1\n"
	"+0    expect rto 1000\n"
	"+0.5  > none\n")

/* The SYN-ACK's window is not scaled, so it can say 65535 at most: a
 * segment past that edge is outside the window, whatever our buffer. */
TCP_SCRIPT(synack_window_edge_is_65535,
	HS_PASSIVE("sink")
	"+0.01 < P. 66536:66537(1) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    expect ctr tcp.out_of_window 1\n"
	"+0    expect ctr tcp.ooo_segments 0\n")

/* RFC 1122 4.2.3.2 / RFC 9293 3.8.6.3: a lone segment is ACKed after the
 * delayed-ACK timer (40 ms here); every second full segment at once. */
TCP_SCRIPT(delayed_ack_40ms,
	HS_PASSIVE("discard")
	"+0.01 < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0.04 > . 1:1(0) ack 1101 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0    expect ctr tcp.delayed_acks 1\n"
	"+0.01 < P. 1101:1201(100) ack 1 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0.02 < P. 1201:1301(100) ack 1 win 512 <nop,nop,TS val 230 ecr *>\n"
	"+0.02 > . 1:1(0) ack 1301 win 32768 <nop,nop,TS val * ecr 220>\n")

TCP_SCRIPT(ack_every_second_full_segment,
	HS_PASSIVE("discard")
	"+0.01 < . 1001:2449(1448) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > none\n"
	"+0.001 < . 2449:3897(1448) ack 1 win 512 <nop,nop,TS val 211 ecr *>\n"
	"+0    > . 1:1(0) ack 3897 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0.001 < . 3897:5345(1448) ack 1 win 512 <nop,nop,TS val 212 ecr *>\n"
	"+0.04 > . 1:1(0) ack 5345 win 32768 ...\n"
	"+0    expect ctr tcp.delayed_acks 1\n")

/* A hole: the segment after it is ACKed at once (a duplicate ACK), kept,
 * and delivered with the hole's data when it is filled (RFC 5681 4.2). */
TCP_SCRIPT(out_of_order_then_hole_filled,
	HS_PASSIVE("sink")
	"+0.01 < P. 1101:1201(100) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win 32755 ...\n"   /* 100 bytes held; SACK not checked */
	"+0    expect rcvd 0\n"
	"+0.01 < P. 1301:1401(100) ack 1 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * ...\n"
	"+0.01 < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 230 ecr *>\n"
	"+0    > . 1:1(0) ack 1201 win * ...\n"
	"+0    expect rcvd 200\n"
	"+0.01 < P. 1201:1301(100) ack 1 win 512 <nop,nop,TS val 240 ecr *>\n"
	"+0    > . 1:1(0) ack 1401 win * <nop,nop,TS val * ecr 240>\n"
	"+0    expect rcvd 400\n"
	"+0    expect ctr tcp.ooo_segments 2\n")

/* Overlapping segments: what is already held or delivered is trimmed,
 * every byte reaches the app once and in order. */
TCP_SCRIPT(overlapping_segments,
	HS_PASSIVE("sink")
	"+0.01 < P. 1051:1151(100) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * ...\n"
	"+0    < P. 1101:1201(100) ack 1 win 512 <nop,nop,TS val 211 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * ...\n"
	"+0    < P. 1021:1061(40) ack 1 win 512 <nop,nop,TS val 212 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * ...\n"
	"+0    < P. 1001:1031(30) ack 1 win 512 <nop,nop,TS val 213 ecr *>\n"
	"+0    > . 1:1(0) ack 1201 win * ...\n"
	"+0    expect rcvd 200\n"
	/* old and partly old data: ACKed at once, only the new part kept */
	"+0.01 < P. 1101:1251(150) ack 1 win 512 <nop,nop,TS val 214 ecr *>\n"
	"+0    > . 1:1(0) ack 1251 win * ...\n"
	"+0    expect rcvd 250\n"
	"+0.01 < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 215 ecr *>\n"
	"+0    > . 1:1(0) ack 1251 win * ...\n"
	"+0    expect rcvd 250\n")

/* RFC 6298: first RTO 1 s (no sample yet), doubled on each timeout; after
 * tcp_retries the connection is dropped with on_closed(TIMEOUT). */
TCP_SCRIPT(rto_backoff_and_retry_limit,
	"conf tcp_retries 3\n"
	HS_PASSIVE("sink")
	"+0.1  send 100\n"
	"+0    > P.~ 1:101(100) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+1    > P.~ 1:101(100) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+2    > P.~ 1:101(100) ack 1001 ...\n"
	"+4    > P.~ 1:101(100) ack 1001 ...\n"
	"+0    expect ctr tcp.rto_timeouts 3\n"
	"+7.999 expect closed none\n"
	"+0.001 > none\n"
	"+0    expect closed TIMEOUT\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.drop_timeout 1\n")

/* After a timeout the ACK of the retransmission restores the RTO from the
 * sample and resets the back-off. */
TCP_SCRIPT(rto_recovers_after_ack,
	HS_PASSIVE("sink")
	"+0.1  send 100\n"
	"+0    > P.~ 1:101(100) ack 1001 ...\n"
	"+1    > P.~ 1:101(100) ack 1001 ...\n"
	"+0.05 < . 1001:1001(0) ack 101 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    expect sendq 0\n"
	"+0    expect rto 200\n"
	"+0.1  send 100\n"
	"+0    > P.~ 101:201(100) ack 1001 ...\n"
	"+0.2  > P.~ 101:201(100) ack 1001 ...\n"
	"+0.4  > P.~ 101:201(100) ack 1001 ...\n")

/* RFC 5681 3.2 / RFC 6582: three duplicate ACKs retransmit the first
 * segment; a partial ACK retransmits the next hole at once; the full ACK
 * ends recovery. */
TCP_SCRIPT(fast_retransmit_newreno,
	"conf tcp_sack 0\n"   /* NewReno without SACK (RFC 6582) */
	"0     listen 5000 sink cc newreno\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,nop,nop,TS val * ecr 100,nop,wscale 3>\n"
	"+0.1  < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 200 ecr *>\n"
	"+0.1  send 7240\n"
	"+0    > . 1:1449(1448) ack 1001 ...\n"
	"+0    > . 1449:2897(1448) ack 1001 ...\n"
	"+0    > . 2897:4345(1448) ack 1001 ...\n"
	"+0    > . 4345:5793(1448) ack 1001 ...\n"
	"+0    > P. 5793:7241(1448) ack 1001 ...\n"
	"+0.05 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    > none\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    > . 1:1449(1448) ack 1001 win 32768 <nop,nop,TS val * ecr 300>\n"
	"+0    expect ctr tcp.fast_retransmits 1\n"
	"+0    expect ctr tcp.dup_acks 3\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 301 ecr *>\n"
	"+0    > none\n"
	/* partial: 1..2897 arrived, 2897 was lost too */
	"+0.05 < . 1001:1001(0) ack 2897 win 512 <nop,nop,TS val 310 ecr *>\n"
	"+0    > . 2897:4345(1448) ack 1001 ...\n"
	"+0.05 < . 1001:1001(0) ack 7241 win 512 <nop,nop,TS val 320 ecr *>\n"
	"+0    > none\n"
	"+0    expect sendq 0\n"
	"+0    expect ctr tcp.retransmits 2\n"
	"+2    > none\n")

/* RFC 6928: ten segments in the first flight; each ACK opens more (slow
 * start), the rest follows. */
TCP_SCRIPT(initial_window_and_slow_start,
	HS_PASSIVE("sink")
	"+0.1  send 20000\n"
	"+0    > . 1:1449(1448) ...\n"
	"+0    > . 1449:2897(1448) ...\n"
	"+0    > . 2897:4345(1448) ...\n"
	"+0    > . 4345:5793(1448) ...\n"
	"+0    > . 5793:7241(1448) ...\n"
	"+0    > . 7241:8689(1448) ...\n"
	"+0    > . 8689:10137(1448) ...\n"
	"+0    > . 10137:11585(1448) ...\n"
	"+0    > . 11585:13033(1448) ...\n"
	"+0    > . 13033:14481(1448) ...\n"
	"+0    > none\n"
	"+0.05 < . 1001:1001(0) ack 2897 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    > . 14481:15929(1448) ...\n"
	"+0    > . 15929:17377(1448) ...\n"
	"+0    > . 17377:18825(1448) ...\n"
	"+0    > none\n"   /* cwnd + 1 MSS per ACK (RFC 5681 3.1) */
	"+0.05 < . 1001:1001(0) ack 17377 win 512 <nop,nop,TS val 310 ecr *>\n"
	"+0    > P. 18825:20001(1176) ...\n"
	"+0.05 < . 1001:1001(0) ack 20001 win 512 <nop,nop,TS val 320 ecr *>\n"
	"+0    expect sendq 0\n")

/* RFC 9293 3.8.6.1 / RFC 1122 4.2.2.17: against a zero window we probe
 * with one byte at RTO intervals, backed off; an opened window sends. */
TCP_SCRIPT(zero_window_persist_probes,
	HS_PASSIVE("sink")
	"+0.01 < . 1001:1001(0) ack 1 win 0 <nop,nop,TS val 210 ecr *>\n"
	"+0.09 send 100\n"
	"+0    > none\n"
	"+1    > . 1:2(1) ack 1001 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 0 <nop,nop,TS val 220 ecr *>\n"
	"+1.99 > . 1:2(1) ack 1001 ...\n"
	"+0.01 < . 1001:1001(0) ack 1 win 0 <nop,nop,TS val 230 ecr *>\n"
	"+3.99 > . 1:2(1) ack 1001 ...\n"
	"+0.01 < . 1001:1001(0) ack 1 win 0 <nop,nop,TS val 240 ecr *>\n"
	"+0    expect ctr tcp.persist_probes 3\n"
	"+0    expect ctr tcp.fast_retransmits 0\n"
	"+1    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 250 ecr *>\n"
	"+0    > P. 1:101(100) ack 1001 ...\n"
	"+0.05 < . 1001:1001(0) ack 101 win 512 <nop,nop,TS val 260 ecr *>\n"
	"+0    expect sendq 0\n"
	"+20   > none\n")

/* The peer closes first: ESTABLISHED -> CLOSE-WAIT -> LAST-ACK -> gone. */
TCP_SCRIPT(fin_peer_closes_first,
	HS_PASSIVE("echo")
	"+0.01 < F. 1001:1001(0) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1002 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0    expect peer_closed 1\n"
	"+0    expect state CLOSE-WAIT\n"
	"+0.01 send 5\n"
	"+0    > P. 1:6(5) ack 1002 ...\n"
	"+0.01 close\n"
	"+0    > F. 6:6(0) ack 1002 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0    expect conns 1\n"
	"+0.01 < . 1002:1002(0) ack 7 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    expect conns 0\n"
	"+0    expect closed none\n"
	"+5    > none\n")

/* We close first: FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT, freed after
 * 2 MSL (60 s with the default MSL of 30 s). */
TCP_SCRIPT(fin_we_close_first_time_wait,
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0.01 < . 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > none\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 win 32768 <nop,nop,TS val * ecr 220>\n"
	"+59.999 expect conns 1\n"
	"+0.001 expect conns 0\n"
	"+0    expect closed none\n"
	"+0    expect ctr tcp.closed 1\n")

/* TIME-WAIT: a retransmitted FIN is ACKed again. It is an old duplicate
 * (SEG.SEQ+SEG.LEN-1 < RCV.NXT), so it neither updates TS.Recent (RFC
 * 7323 4.3) nor, as the RFC's order of checks has it, restarts 2 MSL. */
TCP_SCRIPT(time_wait_acks_retransmitted_fin,
	"conf tcp_msl_ms 1000\n"
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+1.5  < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0.499 expect conns 1\n"
	"+0.001 expect conns 0\n")

/* Simultaneous close: FIN-WAIT-1 -> CLOSING -> TIME-WAIT. */
TCP_SCRIPT(fin_simultaneous_close,
	"conf tcp_msl_ms 1000\n"
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    < F. 1001:1001(0) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0.01 < . 1002:1002(0) ack 2 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > none\n"
	"+1.999 expect conns 1\n"
	"+0.001 expect conns 0\n")

/* A FIN with data: the data is delivered, then the FIN (echo answers the
 * data and ACKs the FIN in one segment). */
TCP_SCRIPT(fin_with_data,
	HS_PASSIVE("echo")
	"+0.01 < FP. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > P. 1:11(10) ack 1012 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0    expect rcvd 10\n"
	"+0    expect peer_closed 1\n"
	"+0    expect state CLOSE-WAIT\n"
	"+0.01 close\n"
	"+0    > F. 11:11(0) ack 1012 ...\n"
	"+0.01 < . 1012:1012(0) ack 12 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    expect conns 0\n")

/* A FIN past a hole waits in the out-of-order queue until the hole is
 * filled; only then does the app hear of it. */
TCP_SCRIPT(fin_out_of_order,
	HS_PASSIVE("sink")
	"+0.01 < F. 1011:1011(0) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win 32768 ...\n"
	"+0    expect peer_closed 0\n"
	"+0    expect state ESTABLISHED\n"
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > . 1:1(0) ack 1012 win 32768 <nop,nop,TS val * ecr 220>\n"
	"+0    expect rcvd 10\n"
	"+0    expect peer_closed 1\n"
	"+0    expect state CLOSE-WAIT\n")

/* Half-close: after our FIN we keep receiving (RFC 9293 3.6). */
TCP_SCRIPT(half_close_keeps_receiving,
	"conf tcp_msl_ms 1000\n"
	HS_PASSIVE("sink")
	"+0.01 send 20\n"
	"+0    > P. 1:21(20) ack 1001 ...\n"
	"+0    shutdown\n"
	"+0    > F. 21:21(0) ack 1001 win 32768 ...\n"
	"+0    expect state FIN-WAIT-1\n"
	"+0.01 < . 1001:1001(0) ack 22 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    expect state FIN-WAIT-2\n"
	"+0.01 < P. 1001:1101(100) ack 22 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0.04 > . 22:22(0) ack 1101 win 32768 ...\n"
	"+0    expect rcvd 100\n"
	"+0.01 < F. 1101:1101(0) ack 22 win 512 <nop,nop,TS val 230 ecr *>\n"
	"+0    > . 22:22(0) ack 1102 ...\n"
	"+0    expect peer_closed 1\n"
	"+0    expect state TIME-WAIT\n"
	"+0    close\n"
	"+2    expect conns 0\n"
	"+0    expect closed none\n")

/* RFC 5961 3.2 / RFC 9293 3.10.7.4: a RST at exactly RCV.NXT resets... */
TCP_SCRIPT(rst_exact_seq_resets,
	HS_PASSIVE("sink")
	"+0.01 < R. 1001:1001(0) ack 1 win 0\n"
	"+0    > none\n"
	"+0    expect closed RESET\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.rst_rx 1\n")

/* ...one elsewhere in the window gets a challenge ACK and changes nothing... */
TCP_SCRIPT(rst_in_window_challenge_ack,
	HS_PASSIVE("sink")
	"+0.01 < R. 1500:1500(0) ack 1 win 0\n"
	"+0    > . 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    expect closed none\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect ctr tcp.challenge_acks 1\n"
	"+0    expect ctr tcp.rst_rx 0\n"
	/* the peer answers the challenge with the exact RST */
	"+0.01 < R 1001:1001(0) win 0\n"
	"+0    expect closed RESET\n")

/* ...and one outside the window is dropped silently. */
TCP_SCRIPT(rst_out_of_window_ignored,
	HS_PASSIVE("sink")
	"+0.01 < R. 900000:900000(0) ack 1 win 0\n"
	"+0    < R. 999:999(0) ack 1 win 0\n"
	"+0    > none\n"
	"+0    expect closed none\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect ctr tcp.out_of_window 2\n")

/* RFC 5961 4.2: a SYN on an established connection: challenge ACK. */
TCP_SCRIPT(syn_on_established_challenge_ack,
	HS_PASSIVE("sink")
	"+0.01 < S 900000:900000(0) win 65535 <mss 1460>\n"
	"+0    > . 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    < S 1001:1001(0) win 65535 <mss 1460>\n"
	"+0    > . 1:1(0) ack 1001 win 32768 ...\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect ctr tcp.challenge_acks 1\n"
	"+0    expect ctr tcp.out_of_window 1\n")

/* RFC 5961 5.2 / RFC 9293: an ACK of data not yet sent: ACK, drop. */
TCP_SCRIPT(ack_too_new_dropped,
	HS_PASSIVE("sink")
	"+0.01 < P. 1001:1011(10) ack 500 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    expect ctr tcp.ack_too_new 1\n"
	"+0    expect rcvd 0\n")

/* RFC 7323 5.3 PAWS: a segment with an older TSval is an old duplicate:
 * dropped, ACKed. */
TCP_SCRIPT(paws_drops_old_timestamp,
	HS_PASSIVE("sink")
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 150 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    expect ctr tcp.paws_dropped 1\n"
	"+0    expect rcvd 0\n"
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 200 ecr *>\n"
	"+0.04 > . 1:1(0) ack 1011 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0    expect rcvd 10\n")

/* RFC 7323 2.3: the peer's window is scaled by its shift (7): win 1
 * means 128 bytes; ours is sent shifted by 3. */
TCP_SCRIPT(window_scaling_both_ways,
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460,nop,wscale 7>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,nop,wscale 3>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 1\n"
	"+0.01 send 1000\n"
	"+0    > . 1:129(128) ack 1001 win 32768 <>\n"
	"+0    > none\n"
	"+0.01 < . 1001:1001(0) ack 129 win 3\n"
	"+0    > . 129:513(384) ack 1001 win 32768 <>\n"
	"+0.01 < . 1001:1001(0) ack 513 win 512\n"
	"+0    > P. 513:1001(488) ack 1001 win 32768 <>\n")

/* RFC 7323 / RFC 2018: the SYN-ACK carries only options the peer offered;
 * with no timestamps the MSS is the full 1460 and segments carry none. */
TCP_SCRIPT(options_only_if_offered,
	"0     listen 5000 echo\n"
	"0     < S 1000:1000(0) win 8192 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 8192\n"
	"+0.01 send 1500\n"
	"+0    > . 1:1461(1460) ack 1001 win 65535 <>\n"
	"+0    > P. 1461:1501(40) ack 1001 win 65535 <>\n")

TCP_SCRIPT(options_sack_only,
	"0     listen 5000 echo\n"
	"0     < S 1000:1000(0) win 8192 <mss 1400,nop,nop,sackOK>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,nop,nop,sackOK>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 8192\n"
	"+0.01 send 1500\n"
	"+0    > . 1:1401(1400) ack 1001 win 65535 <>\n"
	"+0    > P. 1401:1501(100) ack 1001 win 65535 <>\n")

/* Options we have turned off are not echoed either. */
TCP_SCRIPT(options_disabled_in_conf,
	"conf tcp_timestamps 0\n"
	"conf tcp_wscale 0\n"
	"0     listen 5000 echo\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,nop,nop,sackOK>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 512\n"
	"+0.01 < P. 1001:1011(10) ack 1 win 512\n"
	"+0    > P. 1:11(10) ack 1011 win 65525 <>\n")   /* RFC 1122 4.2.3.3 */

/* MSS: the peer's smaller MSS bounds our segments (less 12 for TS)... */
TCP_SCRIPT(mss_clamped_to_peer,
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 536,sackOK,TS val 100 ecr 0,nop,wscale 7>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 110 ecr *>\n"
	"+0.01 send 1200\n"
	"+0    > . 1:525(524) ack 1001 ...\n"
	"+0    > . 525:1049(524) ack 1001 ...\n"
	"+0    > P. 1049:1201(152) ack 1001 ...\n")

/* ...and a larger one is clamped to our MTU's (1460). */
TCP_SCRIPT(mss_clamped_to_our_mtu,
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 8960>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 65535\n"
	"+0.01 send 3000\n"
	"+0    > . 1:1461(1460) ack 1001 ...\n"
	"+0    > . 1461:2921(1460) ack 1001 ...\n"
	"+0    > P. 2921:3001(80) ack 1001 ...\n")

/* No listener: RFC 9293 3.10.7.1: for a segment with ACK, <SEQ=SEG.ACK>
 * <CTL=RST>; without, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. */
TCP_SCRIPT(no_listener_rst_rules,
	"0     port 6000\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > R. 0:0(0) ack 1001 win 0 <>\n"
	"+0.01 < . 1000:1000(0) ack 5000 win 512\n"
	"+0    > R 5000:5000(0) win 0 <>\n"
	"+0.01 < P. 1000:1010(10) ack 7000 win 512\n"
	"+0    > R 7000:7000(0) win 0 <>\n"
	"+0.01 < FP 1000:1010(10) win 512\n"
	"+0    > R. 0:0(0) ack 1011 win 0 <>\n"
	"+0.01 < R 1000:1000(0) win 0\n"
	"+0    > none\n"
	"+0    expect ctr tcp.no_listener 4\n"   /* a RST is not counted */
	"+0    expect ctr tcp.rst_tx 4\n"
	"+0    expect conns 0\n")

/* A listener whose app refuses the connection resets it after the
 * handshake; a full listener (max_conns) resets the SYN. */
TCP_SCRIPT(refused_by_app,
	"0     listen 5000 refuse\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 512\n"
	"+0    > R 1:1(0) win * <>\n"
	"+0    expect ctr tcp.refused_by_app 1\n"
	"+0    expect conns 0\n")

TCP_SCRIPT(listener_full_resets_syn,
	"0     listen 5000 sink max 1\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 512\n"
	"+0    rport 40001\n"
	"+0    < S 3000:3000(0) win 65535 <mss 1460>\n"
	"+0    > R. 0:0(0) ack 3001 win 0 <> abs\n"
	"+0    expect conns 1\n"
	"+0    expect listener 5000 over_limit 1\n"
	"+0    expect listener 5000 open 1\n"
	"+0    expect listener 5000 accepted 1\n"
	"+0    rport 40000\n")

/* An unlistened port refuses new SYNs; the connection goes on. */
TCP_SCRIPT(unlisten_keeps_connections,
	HS_PASSIVE("echo")
	"+0    unlisten\n"
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > P. 1:11(10) ack 1011 ...\n"
	"+0    rport 40001\n"
	"+0    < S 3000:3000(0) win 65535 <mss 1460>\n"
	"+0    > R. 0:0(0) ack 3001 win 0 <> abs\n"
	"+0    rport 40000\n")

/* Data for a connection the app has closed: nobody will read it, so RST
 * (RFC 9293 3.10.4, RFC 1122 4.2.2.13). */
TCP_SCRIPT(data_after_close_rst,
	HS_PASSIVE("sink")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 win 32768 ...\n"
	"+0.01 < P. 1001:1011(10) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > R. 2:2(0) ack 1001 win * ...\n"
	"+0    expect ctr tcp.data_after_close 1\n"
	"+0    expect conns 0\n"
	"+1    > none\n")

/* tcp_abort: <SEQ=SND.NXT><CTL=RST> at once, queued data discarded. */
TCP_SCRIPT(abort_sends_rst,
	HS_PASSIVE("sink")
	"+0.01 < . 1001:1001(0) ack 1 win 0 <nop,nop,TS val 210 ecr *>\n"
	"+0    send 1000\n"
	"+0.01 abort\n"
	"+0    > R. 1:1(0) ack 1001 win * ...\n"
	"+0    expect conns 0\n"
	"+0    expect closed none\n"
	"+5    > none\n")

/* Closing with unread data resets (RFC 2525 2.17). */
TCP_SCRIPT(close_with_unread_data_rst,
	HS_PASSIVE("hold")
	"+0.01 < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0.04 > . 1:1(0) ack 1101 ...\n"
	"+0    expect rcvd 0\n"
	"+0.01 close\n"
	"+0    > R. 1:1(0) ack 1101 win * ...\n"
	"+0    expect conns 0\n")

/* Paused delivery: data waits in the stack and the window shrinks by
 * it; resume delivers and advertises the space again. */
TCP_SCRIPT(recv_pause_shrinks_window,
	"conf tcp_rcvbuf 4000\n"
	"conf tcp_wscale 0\n"
	"conf tcp_timestamps 0\n"
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1000>\n"
	"0     > S. 0:0(0) ack 1001 win 4000 <mss 1460>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 65535\n"
	"+0    pause\n"
	"+0.01 < P. 1001:2001(1000) ack 1 win 65535\n"
	"+0.04 > . 1:1(0) ack 2001 win 3000 <>\n"
	"+0    < P. 2001:3001(1000) ack 1 win 65535\n"
	"+0    < P. 3001:4001(1000) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 4001 win 1000 <>\n"
	"+0    < P. 4001:5001(1000) ack 1 win 65535\n"
	"+0.04 > . 1:1(0) ack 5001 win 0 <>\n"
	"+0    expect rcvd 0\n"
	/* beyond a zero window: dropped, ACKed */
	"+0.01 < P. 5001:5101(100) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 5001 win 0 <>\n"
	"+0.1  resume\n"
	"+0    > . 1:1(0) ack 5001 win 4000 <>\n"
	"+0    expect rcvd 4000\n"
	"+0.01 < P. 5001:5101(100) ack 1 win 65535\n"
	"+0.04 > . 1:1(0) ack 5101 win 4000 <>\n"
	"+0    expect rcvd 4100\n")

/* Send buffer full: tcp_send takes what fits and on_writable follows once
 * ACKs make room. */
TCP_SCRIPT(send_backpressure_writable,
	"conf tcp_sndbuf 3000\n"
	HS_PASSIVE("sink")
	"+0.01 send 5000 -> 3000\n"
	"+0    > . 1:1449(1448) ack 1001 ...\n"
	"+0    > . 1449:2897(1448) ack 1001 ...\n"
	"+0    > P. 2897:3001(104) ack 1001 ...\n"
	"+0    send 10 -> 0\n"
	"+0    expect writable 0\n"
	"+0.05 < . 1001:1001(0) ack 1449 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    expect writable 1\n"
	"+0    send 2000 -> 1448\n"
	"+0    > P. 3001:4449(1448) ack 1001 ...\n"
	"+0.05 < . 1001:1001(0) ack 4449 win 512 <nop,nop,TS val 310 ecr *>\n"
	"+0    expect writable 2\n"
	"+0    expect sendq 0\n")

/* Malformed segments are dropped and counted, never answered. */
TCP_SCRIPT(bad_segments_dropped,
	HS_PASSIVE("sink")
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *> badsum\n"
	"+0    < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *> doff 4\n"
	"+0    < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *> doff 15\n"
	"+0    < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *,raw 08 01>\n"
	"+0    < P. 1001:1011(10) ack 1 win 512 <nop,raw 02 09 05 b4>\n"
	"+0    < SF 1001:1001(0) win 512\n"
	"+0    > none\n"
	"+0    expect ctr tcp.bad_checksum 1\n"
	"+0    expect ctr tcp.bad_offset 2\n"
	"+0    expect ctr tcp.bad_options 2\n"
	"+0    expect ctr tcp.bad_flags 1\n"
	"+0    expect rcvd 0\n"
	"+0    expect state ESTABLISHED\n"
	/* the same segment, well formed, gets through */
	"+0.01 < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0.04 > . 1:1(0) ack 1011 ...\n"
	"+0    expect rcvd 10\n")

/* A SYN-RECEIVED half-open that gets an exact RST just goes. */
TCP_SCRIPT(rst_in_syn_received,
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 < R 1001:1001(0) win 0\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.accepted 0\n"
	"+5    > none\n")

/* FIN-WAIT-2 after the app closed: the peer never sends its FIN, and
 * the connection goes after fin_timeout. */
TCP_SCRIPT(fin_wait_2_timeout,
	"conf tcp_fin_timeout_ms 5000\n"
	HS_PASSIVE("sink")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0.01 < . 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+4.999 expect conns 1\n"
	"+0.001 expect conns 0\n"
	"+0    > none\n")

/* Data already received (a retransmission) gets an immediate ACK. */
TCP_SCRIPT(duplicate_data_acked_at_once,
	HS_PASSIVE("sink")
	"+0.01 < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0.04 > . 1:1(0) ack 1101 ...\n"
	"+0.01 < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > . 1:1(0) ack 1101 ...\n"
	"+0    expect rcvd 100\n")

/* ------------------------------------------------------------------ */
/* SYN cookies (RFC 4987 3.6)                                          */

/* With no room in the SYN queue every SYN is answered statelessly: the
 * SYN-ACK carries only MSS, and the final ACK with the cookie creates
 * the connection, which then runs without any other option. */
TCP_SCRIPT(syncookie_completes_handshake,
	"conf tcp_syn_backlog 0\n"
	"0     listen 5000 echo\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n"
	"0     > S. 0:0(0) ack 1001 win * <mss 1460>\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.syncookies_sent 1\n"
	"+0.1  < . 1001:1001(0) ack 1 win 8192\n"
	"+0    expect conns 1\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect ctr tcp.syncookies_ok 1\n"
	"+0    expect ctr tcp.accepted 1\n"
	"+0.01 < P. 1001:1011(10) ack 1 win 8192\n"
	"+0    > P. 1:11(10) ack 1011 win * <>\n"
	"+0.01 send 2000\n"
	"+0    > . 11:1471(1460) ack 1011 win * <>\n"
	"+0    > P. 1471:2011(540) ack 1011 win * <>\n")

/* The cookie encodes the largest table MSS not above the peer's. */
TCP_SCRIPT(syncookie_encodes_mss,
	"conf tcp_syn_backlog 0\n"
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1350>\n"
	"0     > S. 0:0(0) ack 1001 win * <mss 1300>\n"
	"+0.1  < . 1001:1001(0) ack 1 win 65535\n"
	"+0    expect state ESTABLISHED\n"
	"+0.01 send 1400\n"
	"+0    > . 1:1301(1300) ack 1001 win * <>\n"
	"+0    > P. 1301:1401(100) ack 1001 win * <>\n")

/* No MSS option: RFC 9293 3.7.1's default, 536. */
TCP_SCRIPT(syncookie_no_mss_option_536,
	"conf tcp_syn_backlog 0\n"
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535\n"
	"0     > S. 0:0(0) ack 1001 win * <mss 536>\n")

/* A full SYN queue: the first SYN is kept, the second gets a cookie, and
 * both complete. */
TCP_SCRIPT(syncookie_when_backlog_full,
	"0     listen 5000 sink backlog 1\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0    expect ctr tcp.syncookies_sent 0\n"
	"+0.01 rport 40001\n"
	"+0    forget_isn\n"
	"+0    < S 5000:5000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n"
	"+0    > S. 0:0(0) ack 5001 win * <mss 1460>\n"
	"+0    expect ctr tcp.syncookies_sent 1\n"
	"+0    expect ctr tcp.syn_backlog_full 1\n"
	"+0    expect conns 1\n"
	"+0.01 < . 5001:5001(0) ack 1 win 65535\n"
	"+0    expect conns 2\n"
	"+0    expect ctr tcp.syncookies_ok 1\n"
	"+0    expect state ESTABLISHED\n")

/* A forged cookie is refused with <SEQ=SEG.ACK><RST> and counted. */
TCP_SCRIPT(syncookie_forged_ack_reset,
	"conf tcp_syn_backlog 0\n"
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win * <mss 1460>\n"
	"+0.1  < . 1001:1001(0) ack 2 win 65535\n"
	"+0    > R 2:2(0) win 0 <>\n"
	"+0    < . 1002:1002(0) ack 1 win 65535\n"   /* wrong client ISN */
	"+0    > R 1:1(0) win 0 <>\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.syncookies_failed 2\n"
	"+0    expect ctr tcp.syncookies_ok 0\n")

/* A cookie is good for its 64 s period and the next; older: refused. */
TCP_SCRIPT(syncookie_expires,
	"conf tcp_syn_backlog 0\n"
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win * <mss 1460>\n"
	"130   < . 1001:1001(0) ack 1 win 65535\n"
	"130   > R 1:1(0) win 0 <>\n"
	"130   expect conns 0\n"
	"130   expect ctr tcp.syncookies_failed 1\n")

TCP_SCRIPT(syncookie_valid_in_next_period,
	"conf tcp_syn_backlog 0\n"
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win * <mss 1460>\n"
	"60    < . 1001:1001(0) ack 1 win 65535\n"
	"60    expect conns 1\n"
	"60    expect ctr tcp.syncookies_ok 1\n")

/* ------------------------------------------------------------------ */
/* SACK (RFC 2018, RFC 6675)                                           */

/* Receiver: blocks for what is held out of order, the run holding the
 * latest arrival first. */
TCP_SCRIPT(sack_blocks_latest_first,
	HS_PASSIVE("sink")
	"+0.01 < P. 1101:1201(100) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,TS val * ecr 200,nop,nop,sack 1101:1201>\n"
	"+0    < P. 1301:1401(100) ack 1 win 512 <nop,nop,TS val 211 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,TS val * ecr 200,nop,nop,sack 1301:1401 1101:1201>\n"
	"+0    < P. 1501:1601(100) ack 1 win 512 <nop,nop,TS val 212 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,TS val * ecr 200,nop,nop,sack 1501:1601 1101:1201 1301:1401>\n"
	/* the earliest run grows: it goes first, the rest in order */
	"+0    < P. 1201:1251(50) ack 1 win 512 <nop,nop,TS val 213 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,TS val * ecr 200,nop,nop,sack 1101:1251 1301:1401 1501:1601>\n"
	/* four runs, three blocks with timestamps */
	"+0    < P. 1701:1801(100) ack 1 win 512 <nop,nop,TS val 214 ecr *>\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,TS val * ecr 200,nop,nop,sack 1701:1801 1101:1251 1301:1401>\n"
	/* the hole filled: the first run is delivered; an ACK that advances
	 * has no "triggering" block (RFC 2018 4), the latest run leads */
	"+0    < P. 1001:1101(100) ack 1 win 512 <nop,nop,TS val 215 ecr *>\n"
	"+0    > . 1:1(0) ack 1251 win * <nop,nop,TS val * ecr 215,nop,nop,sack 1701:1801 1301:1401 1501:1601>\n")

/* Without timestamps there is room for four blocks. */
TCP_SCRIPT(sack_four_blocks_without_ts,
	"0     listen 5000 sink\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460,nop,nop,sackOK>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,nop,nop,sackOK>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 65535\n"
	"+0.01 < P. 1101:1201(100) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,sack 1101:1201>\n"
	"+0    < P. 1301:1401(100) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 1001 win * ...\n"
	"+0    < P. 1501:1601(100) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 1001 win * ...\n"
	"+0    < P. 1701:1801(100) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,sack 1701:1801 1101:1201 1301:1401 1501:1601>\n"
	"+0    < P. 1901:2001(100) ack 1 win 65535\n"
	"+0    > . 1:1(0) ack 1001 win * <nop,nop,sack 1901:2001 1101:1201 1301:1401 1501:1601>\n")

/* Sender, passive open with SACK and NewReno's halving, ten segments out:
 * seg k is [1448(k-1)+1, 1448k+1). */
#define SACK_FLIGHT                                                           \
	"0     listen 5000 sink cc newreno\n"                                  \
	"0     < S 1000:1000(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>\n" \
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>\n" \
	"+0.1  < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 200 ecr *>\n"   \
	"+0.1  send 14480\n"                                                   \
	"+0    > . 1:1449(1448) ...\n"                                         \
	"+0    > . 1449:2897(1448) ...\n"                                      \
	"+0    > . 2897:4345(1448) ...\n"                                      \
	"+0    > . 4345:5793(1448) ...\n"                                      \
	"+0    > . 5793:7241(1448) ...\n"                                      \
	"+0    > . 7241:8689(1448) ...\n"                                      \
	"+0    > . 8689:10137(1448) ...\n"                                     \
	"+0    > . 10137:11585(1448) ...\n"                                    \
	"+0    > . 11585:13033(1448) ...\n"                                    \
	"+0    > P. 13033:14481(1448) ...\n"                                   \
	"+0    > none\n"

/* Three segments SACKed above a hole start recovery on the first ACK
 * that says so; the hole goes at once. */
TCP_SCRIPT(sack_recovery_on_sacked_segments,
	SACK_FLIGHT
	"+0.05 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *,nop,nop,sack 1449:5793>\n"
	"+0    > . 1:1449(1448) ack 1001 ...\n"
	"+0    > none\n"
	"+0    expect ctr tcp.fast_retransmits 1\n"
	"+0    expect ctr tcp.dup_acks 1\n"
	"+0.05 < . 1001:1001(0) ack 14481 win 512 <nop,nop,TS val 310 ecr *>\n"
	"+0    expect sendq 0\n"
	"+0    expect ctr tcp.retransmits 1\n"
	"+2    > none\n")

/* Two holes: the first at the third duplicate ACK, the second once the
 * pipe has drained below cwnd (7240, half the flight). */
TCP_SCRIPT(sack_two_holes_pipe_limited,
	SACK_FLIGHT
	"+0.05 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *,nop,nop,sack 1449:2897>\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *,nop,nop,sack 1449:2897 4345:5793>\n"
	"+0    > none\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *,nop,nop,sack 1449:2897 4345:7241>\n"
	"+0    > . 1:1449(1448) ack 1001 ...\n"
	"+0    > none\n"
	/* pipe 14480 - 5792 - 2896 + 1448 = 7240: no room */
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 301 ecr *,nop,nop,sack 1449:2897 4345:8689>\n"
	"+0    > none\n"
	/* pipe 5792: the second hole */
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 301 ecr *,nop,nop,sack 1449:2897 4345:10137>\n"
	"+0    > . 2897:4345(1448) ack 1001 ...\n"
	"+0    > none\n"
	"+0    expect ctr tcp.fast_retransmits 1\n"
	"+0.05 < . 1001:1001(0) ack 14481 win 512 <nop,nop,TS val 320 ecr *>\n"
	"+0    expect sendq 0\n"
	"+0    expect ctr tcp.retransmits 2\n")

/* RFC 6675 5.1: after a timeout what the peer SACKed is not resent. */
TCP_SCRIPT(sack_rto_keeps_scoreboard,
	SACK_FLIGHT
	"+0.05 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *,nop,nop,sack 4345:5793>\n"
	"+0    > none\n"
	"+0.95 > . 1:1449(1448) ack 1001 ...\n"
	"+0    > none\n"
	"+0    expect ctr tcp.rto_timeouts 1\n"
	"+0.05 < . 1001:1001(0) ack 1449 win 512 <nop,nop,TS val 310 ecr *,nop,nop,sack 4345:5793>\n"
	"+0    > . 1449:2897(1448) ack 1001 ...\n"
	"+0    > . 2897:4345(1448) ack 1001 ...\n"
	"+0    > none\n"
	"+0.05 < . 1001:1001(0) ack 5793 win 512 <nop,nop,TS val 320 ecr *>\n"
	"+0    > . 5793:7241(1448) ack 1001 ...\n"
	"+0    > . 7241:8689(1448) ack 1001 ...\n"
	"+0    > . 8689:10137(1448) ack 1001 ...\n"
	"+0    > none\n")

/* ------------------------------------------------------------------ */
/* PAWS and disordered duplicate ACKs                                  */

/* Duplicate ACKs overtaken by a later one (older TSval, same ACK and
 * window, no data) are no replay: all three count, fast retransmit. */
TCP_SCRIPT(paws_disordered_dup_ack_counts,
	HS_PASSIVE("sink")
	"+0.1  send 4344\n"
	"+0    > . 1:1449(1448) ...\n"
	"+0    > . 1449:2897(1448) ...\n"
	"+0    > P. 2897:4345(1448) ...\n"
	"+0.05 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 302 ecr *>\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 301 ecr *>\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 303 ecr *>\n"
	"+0    > . 1:1449(1448) ack 1001 ...\n"
	"+0    expect ctr tcp.paws_dropped 0\n"
	"+0    expect ctr tcp.dup_acks 3\n"
	"+0    expect ctr tcp.fast_retransmits 1\n")

/* ...but one far older than an RTO, or one that moves the window, is
 * still an old duplicate. */
TCP_SCRIPT(paws_old_ack_still_dropped,
	HS_PASSIVE("sink")
	"+0.1  send 1448\n"
	"+0    > P. 1:1449(1448) ...\n"
	"+0.05 < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 5000 ecr *>\n"
	"+0    < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 3000 ecr *>\n"
	"+0    < . 1001:1001(0) ack 1 win 500 <nop,nop,TS val 4999 ecr *>\n"
	"+0    > none\n"
	"+0    expect ctr tcp.paws_dropped 2\n"
	"+0    expect ctr tcp.dup_acks 1\n")

/* ------------------------------------------------------------------ */
/* Keepalive (RFC 1122 4.2.3.6)                                         */

/* Idle for idle_ms: a probe <SEQ=SND.UNA-1> every intvl_ms; after the
 * last unanswered one the connection is dropped with TIMEOUT. */
TCP_SCRIPT(keepalive_probes_then_timeout,
	"conf tcp_keepalive 1\n"
	"conf tcp_keepalive_idle_ms 10000\n"
	"conf tcp_keepalive_intvl_ms 1000\n"
	"conf tcp_keepalive_probes 3\n"
	HS_PASSIVE("sink")
	"+9.999 > none\n"
	"+0.001 > . 0:0(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0.999 > none\n"
	"+0.001 > . 0:0(0) ack 1001 ...\n"
	"+1    > . 0:0(0) ack 1001 ...\n"
	"+0    expect ctr tcp.keepalive_probes 3\n"
	"+0.999 expect closed none\n"
	"+0.001 > none\n"
	"+0    expect closed TIMEOUT\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.drop_timeout 1\n")

/* An answer to a probe makes the connection fresh again. */
TCP_SCRIPT(keepalive_answered_restarts_idle,
	"conf tcp_keepalive 1\n"
	"conf tcp_keepalive_idle_ms 10000\n"
	"conf tcp_keepalive_intvl_ms 1000\n"
	"conf tcp_keepalive_probes 2\n"
	HS_PASSIVE("sink")
	"+10   > . 0:0(0) ack 1001 win 32768 <nop,nop,TS val * ecr 200>\n"
	"+0.5  < . 1001:1001(0) ack 1 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+9.999 > none\n"
	"+0.001 > . 0:0(0) ack 1001 win 32768 <nop,nop,TS val * ecr 300>\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect ctr tcp.keepalive_probes 2\n")

/* Traffic postpones the first probe; without keepalive nothing is sent. */
TCP_SCRIPT(keepalive_data_postpones_probe,
	"conf tcp_keepalive 1\n"
	"conf tcp_keepalive_idle_ms 10000\n"
	"conf tcp_keepalive_intvl_ms 1000\n"
	HS_PASSIVE("sink")
	"+5    < P. 1001:1011(10) ack 1 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0.04 > . 1:1(0) ack 1011 ...\n"
	"+9.959 > none\n"
	"+0.001 > . 0:0(0) ack 1011 ...\n")

TCP_SCRIPT(keepalive_off_by_default,
	"conf tcp_keepalive_idle_ms 1000\n"
	HS_PASSIVE("sink")
	"+30   > none\n"
	"+0    expect ctr tcp.keepalive_probes 0\n")

/* ------------------------------------------------------------------ */
/* TIME-WAIT limits and reuse                                          */

/* No TIME-WAIT slot left: the connection is closed at once and counted. */
TCP_SCRIPT(timewait_overflow_closes_at_once,
	"conf tcp_max_timewait 0\n"
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 win 32768 <nop,nop,TS val * ecr 210>\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.timewait_overflow 1\n"
	"+0    expect ctr tcp.closed 1\n")

TCP_SCRIPT(timewait_within_limit,
	"conf tcp_max_timewait 1\n"
	"conf tcp_msl_ms 1000\n"
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 ...\n"
	"+0    expect conns 1\n"
	"+0    expect ctr tcp.timewait_overflow 0\n"
	"+2    expect conns 0\n")

/* RFC 6191: a SYN with a newer TSval ends TIME-WAIT and the listener
 * answers it as a new connection. */
TCP_SCRIPT(timewait_reused_by_newer_syn,
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 ...\n"
	"+1    forget_isn\n"
	"+0    < S 90000:90000(0) win 65535 <mss 1460,sackOK,TS val 1300 ecr 0,nop,wscale 7>\n"
	"+0    > S. 0:0(0) ack 90001 win 65535 <mss 1460,sackOK,TS val * ecr 1300,nop,wscale 3>\n"
	"+0    expect ctr tcp.timewait_reused 1\n"
	"+0    expect conns 1\n"
	"+0.01 < . 90001:90001(0) ack 1 win 512 <nop,nop,TS val 1310 ecr *>\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect ctr tcp.accepted 2\n")

/* ...an older TSval is an old duplicate: PAWS, ACK, TIME-WAIT goes on. */
TCP_SCRIPT(timewait_old_syn_not_reused,
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 ...\n"
	"+1    < S 90000:90000(0) win 65535 <mss 1460,sackOK,TS val 150 ecr 0,nop,wscale 7>\n"
	"+0    > . 2:2(0) ack 1002 ...\n"
	"+0    expect ctr tcp.timewait_reused 0\n"
	"+0    expect ctr tcp.paws_dropped 1\n"
	"+0    expect conns 1\n")

/* ------------------------------------------------------------------ */
/* Challenge ACK limit (RFC 5961 7)                                    */

TCP_SCRIPT(challenge_ack_rate_limited,
	"conf tcp_challenge_ack_limit 2\n"
	HS_PASSIVE("sink")
	"+0.01 < R. 1500:1500(0) ack 1 win 0\n"
	"+0    > . 1:1(0) ack 1001 ...\n"
	"+0    < R. 1600:1600(0) ack 1 win 0\n"
	"+0    > . 1:1(0) ack 1001 ...\n"
	"+0    < R. 1700:1700(0) ack 1 win 0\n"
	"+0    < S 1001:1001(0) win 65535 <mss 1460>\n"
	"+0    > none\n"
	"+0    expect ctr tcp.challenge_acks 2\n"
	"+0    expect ctr tcp.challenge_acks_limited 2\n"
	"+0    expect state ESTABLISHED\n"
	"+1    < R. 1800:1800(0) ack 1 win 0\n"
	"+0    > . 1:1(0) ack 1001 ...\n"
	"+0    expect ctr tcp.challenge_acks 3\n")

/* ------------------------------------------------------------------ */
/* ICMP errors about our segments (RFC 5927, RFC 1191)                 */

TCP_SCRIPT(icmp_port_unreachable_fails_connect,
	"0     connect 198.18.0.1 25\n"
	"0     > S 0:0(0) win 65535 ...\n"
	"+0.01 icmp 3 3 0\n"
	"+0    expect closed UNREACHABLE\n"
	"+0    expect conns 0\n"
	"+0    expect ctr tcp.connect_failed 1\n"
	"+0    expect ctr tcp.icmp_errors 1\n"
	"+3    > none\n")

TCP_SCRIPT(icmp_host_unreachable_fails_connect,
	"0     connect 198.18.0.1 25\n"
	"0     > S 0:0(0) win 65535 ...\n"
	"+0.01 icmp 3 1 0\n"
	"+0    expect closed UNREACHABLE\n"
	"+0    expect conns 0\n")

/* A quoted sequence number we have not sent (or that is acked) is
 * blind: ignored. */
TCP_SCRIPT(icmp_bad_seq_ignored,
	"0     connect 198.18.0.1 25\n"
	"0     > S 0:0(0) win 65535 ...\n"
	"+0.01 icmp 3 3 1\n"
	"+0    icmp 3 3 4294967295\n"
	"+0    icmp 3 3 100000\n"
	"+0    expect closed none\n"
	"+0    expect state SYN-SENT\n"
	"+0    expect ctr tcp.icmp_ignored 3\n"
	"+0    expect ctr tcp.icmp_errors 0\n"
	"+0.99 > S 0:0(0) win 65535 ...\n")

/* Established: unreachable is a soft error. */
TCP_SCRIPT(icmp_unreachable_soft_when_established,
	HS_PASSIVE("sink")
	"+0.01 send 100\n"
	"+0    > P. 1:101(100) ...\n"
	"+0    icmp 3 3 1\n"
	"+0    expect state ESTABLISHED\n"
	"+0    expect closed none\n"
	"+0    expect ctr tcp.icmp_errors 1\n"
	"+0    icmp 3 3 101\n"   /* snd_max: not outstanding */
	"+0    expect ctr tcp.icmp_ignored 1\n")

/* Fragmentation needed: the MSS drops to the next-hop MTU (less IP, TCP
 * and timestamps) and what is outstanding goes again in smaller pieces. */
TCP_SCRIPT(icmp_frag_needed_lowers_mss,
	HS_PASSIVE("sink")
	"+0.01 send 2896\n"
	"+0    > . 1:1449(1448) ...\n"
	"+0    > P. 1449:2897(1448) ...\n"
	"+0.01 icmp 3 4 1 mtu 1000\n"
	"+0    > . 1:949(948) ack 1001 ...\n"
	"+0    > . 949:1897(948) ack 1001 ...\n"
	"+0    > . 1897:2845(948) ack 1001 ...\n"
	"+0    > P. 2845:2897(52) ack 1001 ...\n"
	"+0    expect ctr tcp.pmtu_updates 1\n"
	/* not lower than before, or not below us: nothing */
	"+0    icmp 3 4 1 mtu 1200\n"
	"+0    icmp 3 4 1 mtu 1500\n"
	"+0    > none\n"
	"+0    expect ctr tcp.pmtu_updates 1\n"
	"+0.05 < . 1001:1001(0) ack 2897 win 512 <nop,nop,TS val 300 ecr *>\n"
	"+0    send 1000\n"
	"+0    > . 2897:3845(948) ack 1001 ...\n"
	"+0    > P. 3845:3897(52) ack 1001 ...\n")

/* A tiny next-hop MTU is clamped to the 536-byte floor. */
TCP_SCRIPT(icmp_frag_needed_floor,
	HS_PASSIVE("sink")
	"+0.01 send 1000\n"
	"+0    > P. 1:1001(1000) ...\n"
	"+0.01 icmp 3 4 1 mtu 300\n"
	"+0    > . 1:537(536) ack 1001 ...\n"
	"+0    > P. 537:1001(464) ack 1001 ...\n"
	"+0    expect ctr tcp.pmtu_updates 1\n")

/* ------------------------------------------------------------------ */
/* Connections by state and per listener (what mgmt shows)            */

/* Passive open, the peer closes first: every state on the way is
 * counted once, the listener's figures follow, and all return to zero
 * (the listener keeps its running total). */
TCP_SCRIPT(state_counts_peer_closes,
	"0     listen 5000 echo\n"
	"0     expect nstate LISTEN 1\n"
	"0     expect listener 5000 listening 1\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0    expect nstate SYN-RECEIVED 1\n"
	"+0    expect listener 5000 syn_pending 1\n"
	"+0    expect listener 5000 open 0\n"
	"+0.01 < . 1001:1001(0) ack 1 win 512\n"
	"+0    expect nstate SYN-RECEIVED 0\n"
	"+0    expect nstate ESTABLISHED 1\n"
	"+0    expect listener 5000 syn_pending 0\n"
	"+0    expect listener 5000 open 1\n"
	"+0    expect listener 5000 accepted 1\n"
	"+0.01 < F. 1001:1001(0) ack 1 win 512\n"
	"+0    > . 1:1(0) ack 1002 win * <>\n"
	"+0    expect nstate ESTABLISHED 0\n"
	"+0    expect nstate CLOSE-WAIT 1\n"
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1002 win * <>\n"
	"+0    expect nstate CLOSE-WAIT 0\n"
	"+0    expect nstate LAST-ACK 1\n"
	"+0    expect listener 5000 open 1\n"
	"+0.01 < . 1002:1002(0) ack 2 win 512\n"
	"+0    expect nstate LAST-ACK 0\n"
	"+0    expect conns 0\n"
	"+0    expect listener 5000 open 0\n"
	"+0    expect listener 5000 accepted 1\n"
	"+0    unlisten\n"
	"+0    expect nstate LISTEN 0\n"
	"+0    expect listener 5000 listening 0\n"
	"+0    expect listener 5000 accepted 1\n"
	/* the port keeps its slot and its totals */
	"+0    listen 5000 echo\n"
	"+0    expect nstate LISTEN 1\n"
	"+0    expect listener 5000 listening 1\n"
	"+0    expect listener 5000 accepted 1\n")

/* We close first: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT until 2 MSL. */
TCP_SCRIPT(state_counts_time_wait_expiry,
	"conf tcp_msl_ms 1000\n"
	HS_PASSIVE("echo")
	"+0    expect nstate ESTABLISHED 1\n"
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0    expect nstate ESTABLISHED 0\n"
	"+0    expect nstate FIN-WAIT-1 1\n"
	"+0.01 < . 1001:1001(0) ack 2 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    expect nstate FIN-WAIT-1 0\n"
	"+0    expect nstate FIN-WAIT-2 1\n"
	"+0.01 < F. 1001:1001(0) ack 2 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 ...\n"
	"+0    expect nstate FIN-WAIT-2 0\n"
	"+0    expect nstate TIME-WAIT 1\n"
	/* open until it is gone, as max_conns counts it */
	"+0    expect listener 5000 open 1\n"
	"+1.999 expect nstate TIME-WAIT 1\n"
	"+0.001 expect nstate TIME-WAIT 0\n"
	"+0    expect listener 5000 open 0\n"
	"+0    expect conns 0\n"
	"+0    expect nstate LISTEN 1\n")

/* Simultaneous close passes through CLOSING. */
TCP_SCRIPT(state_counts_closing,
	"conf tcp_msl_ms 1000\n"
	HS_PASSIVE("echo")
	"+0.01 close\n"
	"+0    > F. 1:1(0) ack 1001 ...\n"
	"+0    < F. 1001:1001(0) ack 1 win 512 <nop,nop,TS val 210 ecr *>\n"
	"+0    > . 2:2(0) ack 1002 ...\n"
	"+0    expect nstate CLOSING 1\n"
	"+0    expect nstate FIN-WAIT-1 0\n"
	"+0.01 < . 1002:1002(0) ack 2 win 512 <nop,nop,TS val 220 ecr *>\n"
	"+0    expect nstate CLOSING 0\n"
	"+0    expect nstate TIME-WAIT 1\n"
	"+2    expect nstate TIME-WAIT 0\n"
	"+0    expect conns 0\n")

/* Active open: SYN-SENT, ESTABLISHED; a reset ends it. No listener. */
TCP_SCRIPT(state_counts_active_open,
	"0     connect 198.18.0.1 25 sink\n"
	"0     > S 0:0(0) win 65535 ...\n"
	"+0    expect nstate SYN-SENT 1\n"
	"+0    expect nstate LISTEN 0\n"
	"+0.05 < S. 7000:7000(0) ack 1 win 65535 <mss 1460>\n"
	"+0    > . 1:1(0) ack 7001 win * <>\n"
	"+0    expect nstate SYN-SENT 0\n"
	"+0    expect nstate ESTABLISHED 1\n"
	"+0.01 < R. 7001:7001(0) ack 1 win 0\n"
	"+0    expect closed RESET\n"
	"+0    expect nstate ESTABLISHED 0\n"
	"+0    expect conns 0\n")

/* A refused handshake, a full listener (listener_full_resets_syn) and a
 * full SYN queue are each counted on the listener's port. */
TCP_SCRIPT(listener_counts_refused,
	"0     listen 5000 refuse\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 < . 1001:1001(0) ack 1 win 512\n"
	"+0    > R 1:1(0) win * <>\n"
	"+0    expect listener 5000 refused 1\n"
	"+0    expect listener 5000 accepted 0\n"
	"+0    expect listener 5000 open 0\n"
	"+0    expect nstate SYN-RECEIVED 0\n"
	"+0    expect nstate ESTABLISHED 0\n")

TCP_SCRIPT(listener_counts_syncookies,
	"0     listen 5000 sink backlog 1\n"
	"0     < S 1000:1000(0) win 65535 <mss 1460>\n"
	"0     > S. 0:0(0) ack 1001 win 65535 <mss 1460>\n"
	"+0.01 rport 40001\n"
	"+0    forget_isn\n"
	"+0    < S 5000:5000(0) win 65535 <mss 1460>\n"
	"+0    > S. 0:0(0) ack 5001 win * <mss 1460>\n"
	"+0    expect listener 5000 syncookies 1\n"
	"+0    expect listener 5000 syn_pending 1\n"
	"+0.01 < . 5001:5001(0) ack 1 win 65535\n"
	"+0    expect listener 5000 syn_pending 1\n"
	"+0    expect listener 5000 open 1\n"
	"+0    expect nstate SYN-RECEIVED 1\n"
	"+0    expect nstate ESTABLISHED 1\n")
