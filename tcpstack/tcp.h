/*
 * tcp.h: the stream API: TCP connections as protocol engines and TLS see
 * them. One contract for all of it:
 *
 * Ownership and threads
 *  - Every connection and listener belongs to one stack (one worker); every
 *    call below must be made on that worker, and every callback runs on it.
 *  - A connection handle given to the application (through the accept
 *    callback or tcp_connect) stays valid until either the application
 *    calls tcp_close() or tcp_abort() on it, or the stack calls
 *    cb->on_closed(). After either, the application must not use it again,
 *    and the stack calls none of its callbacks again. on_closed is the
 *    stack's way to say "it is over and it was not you".
 *  - Callbacks may call any function here on any connection, including
 *    tcp_close()/tcp_abort() on the connection they were called for. The
 *    stack never frees a connection inside such a call; it does so once the
 *    current packet or timer has been handled.
 *
 * Data
 *  - on_data delivers received bytes in order, exactly once each. The
 *    bytes are only valid during the call: copy what you keep.
 *  - tcp_recv_pause(c, true) stops delivery: later data waits in the
 *    stack (the advertised window shrinks to zero as it fills) and is
 *    delivered after tcp_recv_pause(c, false).
 *  - tcp_send() copies up to tcp_send_space() bytes into the send buffer
 *    and returns how many it took. If it took fewer than asked, on_writable
 *    is called once space is available again. Data is transmitted at the
 *    end of the current event (packet burst or timer tick), so a reply
 *    written from on_data leaves with the ACK of the request.
 *
 * Closing
 *  - tcp_shutdown(): half-close. A FIN follows the data already queued;
 *    receiving goes on.
 *  - tcp_close(): the application is done. Queued data is still delivered
 *    and the FIN follows it (graceful close); data that arrives afterwards
 *    is refused with a RST, as a kernel does for a closed socket.
 *  - tcp_abort(): RST now; queued data is discarded.
 *  - on_peer_closed: the peer sent FIN (it sends no more). The application
 *    may go on sending, then close.
 *  - on_closed(reason): the connection ended without the application
 *    closing it (reset by the peer, retransmission or keepalive timeout,
 *    refused or unreachable on connect).
 */
#ifndef DPMAIL_TCPSTACK_TCP_H
#define DPMAIL_TCPSTACK_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct stack;
struct tcp_conn;
struct tcp_listener;

enum tcp_close_reason {
	TCP_CLOSE_RESET = 1,   /* the peer sent RST */
	TCP_CLOSE_TIMEOUT,     /* retransmissions, keepalive or handshake timed out */
	TCP_CLOSE_REFUSED,     /* connect: the peer answered RST */
	TCP_CLOSE_UNREACHABLE, /* connect: ICMP unreachable or no ARP answer */
	TCP_CLOSE_SHUTDOWN,    /* the stack is shutting down */
	TCP_CLOSE_DONE,        /* both sides closed and the app had not */
};

const char *tcp_close_reason_str(enum tcp_close_reason r);

struct tcp_callbacks {
	void (*on_connected)(struct tcp_conn *c, void *user);  /* tcp_connect only */
	void (*on_data)(struct tcp_conn *c, void *user, const uint8_t *data,
			size_t len);
	void (*on_writable)(struct tcp_conn *c, void *user);
	void (*on_peer_closed)(struct tcp_conn *c, void *user);
	void (*on_closed)(struct tcp_conn *c, void *user,
			  enum tcp_close_reason reason);
};

/*
 * Called when a passive open completes (three-way handshake done). Return
 * 0 and set *cb and *user to take the connection, or a negative errno to
 * refuse it (the stack resets it).
 */
typedef int (*tcp_accept_fn)(struct tcp_conn *c, void *listen_user,
			     const struct tcp_callbacks **cb, void **user);

enum tcp_cc { TCP_CC_CUBIC = 0, TCP_CC_NEWRENO };

struct tcp_listen_opts {
	uint16_t port;
	uint32_t syn_backlog;    /* half-open connections; 0 = stack default */
	uint32_t max_conns;      /* established on this listener; 0 = no limit */
	bool nagle;              /* default off */
	enum tcp_cc cc;
};

int tcp_listen(struct stack *s, const struct tcp_listen_opts *o,
	       tcp_accept_fn accept, void *listen_user,
	       struct tcp_listener **out);
/* Stops accepting; established connections go on. */
void tcp_unlisten(struct stack *s, struct tcp_listener *l);

/*
 * Active open to dst_ip:dst_port (network order address, host order port).
 * on_connected or on_closed(REFUSED/UNREACHABLE/TIMEOUT) follows.
 * Returns 0, -EADDRNOTAVAIL (no free local port), -ENOMEM.
 */
int tcp_connect(struct stack *s, uint32_t dst_ip, uint16_t dst_port,
		const struct tcp_callbacks *cb, void *user,
		struct tcp_conn **out);

ssize_t tcp_send(struct tcp_conn *c, const void *data, size_t len);
size_t tcp_send_space(const struct tcp_conn *c);
/* on_writable is called once at least this much is free (min(sndbuf/4,
 * 4 KiB)): a writer never gets called back for a few bytes. */
size_t tcp_send_lowat(const struct tcp_conn *c);
/* Bytes queued and not yet acknowledged by the peer. */
size_t tcp_send_queued(const struct tcp_conn *c);
int tcp_shutdown(struct tcp_conn *c);
void tcp_close(struct tcp_conn *c);
void tcp_abort(struct tcp_conn *c);
void tcp_recv_pause(struct tcp_conn *c, bool paused);
/* Asks for on_writable as soon as there is send space (maybe at once,
 * at the end of the current event). */
void tcp_want_writable(struct tcp_conn *c);
/* Replaces the user pointer passed to the callbacks. */
void tcp_set_user(struct tcp_conn *c, void *user);
void tcp_set_nagle(struct tcp_conn *c, bool on);

struct tcp_conn_info {
	uint32_t local_ip, remote_ip;     /* network order */
	uint16_t local_port, remote_port; /* host order */
	const char *state;
	uint32_t srtt_us, rto_ms, cwnd, mss;
	uint64_t bytes_in, bytes_out, retransmits;
};
void tcp_conn_get_info(const struct tcp_conn *c, struct tcp_conn_info *i);

/* Live connections on this stack, all states (a gauge for mgmt/tests). */
uint32_t tcp_live_conns(const struct stack *s);

/*
 * Stats for mgmt, which calls these from its own thread: the worker keeps
 * the figures with plain stores as connections change state; these read
 * them relaxed (a figure may be a moment stale, never torn).
 *
 * States: index 0 is CLOSED (dead connections waiting for the end of the
 * current event to be freed: not worth showing), 1 is LISTEN (listeners
 * open), then the RFC 9293 states. tcp_state_label() names each as
 * metrics label it ("syn_received", "established", "time_wait").
 */
#define TCP_NSTATES 11
const char *tcp_state_label(unsigned st);
void tcp_state_counts(const struct stack *s, uint32_t out[TCP_NSTATES]);

/* One listening port's figures. A port keeps its slot, and its running
 * totals, across tcp_unlisten and a later tcp_listen; TCP_LISTENER_SLOTS
 * ports are tracked per worker (more listen, uncounted). */
#define TCP_LISTENER_SLOTS 16
struct tcp_listener_stats {
	uint16_t port;
	bool listening;        /* tcp_unlisten not called since tcp_listen */
	uint32_t open;         /* now: handed to the app, not yet gone
				* (TIME-WAIT too, as max_conns counts) */
	uint32_t syn_pending;  /* now: half-open (SYN-RECEIVED) */
	uint64_t accepted;     /* handshakes completed and taken by the app */
	uint64_t refused;      /* handshakes completed, refused by the app */
	uint64_t over_limit;   /* SYNs reset: max_conns were open */
	uint64_t syncookies;   /* SYN queue full: answered with a cookie */
};
/* Ports tracked so far (slots 0 .. n-1 hold data). */
unsigned tcp_listener_count(const struct stack *s);
/* Copies slot i; false if i >= tcp_listener_count(s). */
bool tcp_listener_get_stats(const struct stack *s, unsigned i,
			    struct tcp_listener_stats *out);

#endif
