/*
 * diag.h: inetd-style diagnostic services on the stream API: echo
 * (RFC 862), discard (RFC 863) and chargen (RFC 864), and a test client
 * that opens connections from each worker. Operators use them to check a
 * link; the integration tests use them to push data through the stack.
 * Everything is off unless configured ([diag] in the config).
 */
#ifndef DPMAIL_MGMT_DIAG_H
#define DPMAIL_MGMT_DIAG_H

#include <stdint.h>

struct stack;

struct diag_conf {
	uint16_t echo_port;    /* 0 = off */
	uint16_t discard_port;
	uint16_t chargen_port;
	uint16_t udp_echo_port; /* UDP echo (RFC 862 over UDP) */
	/* client: each worker connects to connect_ip:connect_port
	 * connect_per_worker times, connect_delay_ms after start, sends
	 * connect_bytes of the pattern i % 251, reads until the peer closes,
	 * and logs what it received (bytes and CRC-32) */
	uint32_t connect_ip;    /* network order; 0 = off */
	uint16_t connect_port;
	uint32_t connect_per_worker;
	uint64_t connect_bytes;
	uint32_t connect_delay_ms;
};

/*
 * Opens the configured listeners on s and schedules the client. Call
 * before the worker starts (or on it). 0 or a negative errno.
 */
int diag_start(struct stack *s, const struct diag_conf *c);
/* Frees what diag_start allocated for s (after the worker stopped). */
void diag_stop(struct stack *s);

#endif
