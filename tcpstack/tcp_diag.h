/*
 * tcp_diag.h: inetd-style diagnostic services on the stream API: echo
 * (RFC 862), discard (RFC 863) and chargen (RFC 864). Operators use them
 * to check a link; the integration tests use them to push data through
 * the stack. Off unless a port is configured ([diag] in the config).
 */
#ifndef DPMAIL_TCPSTACK_TCP_DIAG_H
#define DPMAIL_TCPSTACK_TCP_DIAG_H

#include <stdint.h>

struct stack;

struct diag_conf {
	uint16_t echo_port;    /* 0 = off */
	uint16_t discard_port;
	uint16_t chargen_port;
};

/* Opens the configured listeners on s. 0 or a negative errno. */
int diag_start(struct stack *s, const struct diag_conf *c);

#endif
