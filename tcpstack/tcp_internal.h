/*
 * tcp_internal.h: TCP's private state, shared by tcp_*.c only.
 *
 * One struct tcp_stack per stack (worker): the connection pool, the
 * 4-tuple hash table, the listeners, and the lists of connections with
 * output pending or waiting to be freed. Sequence numbers follow RFC 9293
 * names (snd_una, snd_nxt, rcv_nxt ...), all in host order.
 */
#ifndef DPMAIL_TCPSTACK_TCP_INTERNAL_H
#define DPMAIL_TCPSTACK_TCP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "tcpstack/stack.h"
#include "tcpstack/tcp.h"
#include "tcpstack/timer_wheel.h"

#define SEQ_LT(a, b) ((int32_t)((a) - (b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((a) - (b)) <= 0)
#define SEQ_GT(a, b) ((int32_t)((a) - (b)) > 0)
#define SEQ_GEQ(a, b) ((int32_t)((a) - (b)) >= 0)

/* option kinds (RFC 9293 3.1, RFC 7323, RFC 2018) */
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOPT_WS 3
#define TCPOPT_SACKOK 4
#define TCPOPT_SACK 5
#define TCPOPT_TS 8

#define TCP_SACK_RANGES 6 /* scoreboard ranges kept per connection */

enum tcp_state {
	TCPS_CLOSED = 0,
	TCPS_LISTEN,
	TCPS_SYN_SENT,
	TCPS_SYN_RECEIVED,
	TCPS_ESTABLISHED,
	TCPS_CLOSE_WAIT,
	TCPS_FIN_WAIT_1,
	TCPS_CLOSING,
	TCPS_LAST_ACK,
	TCPS_FIN_WAIT_2,
	TCPS_TIME_WAIT,
	TCPS_COUNT
};

extern const char *const tcp_state_names[TCPS_COUNT];
_Static_assert(TCPS_COUNT == TCP_NSTATES, "tcp.h's TCP_NSTATES is stale");

/* A synchronized state: the handshake is done (RFC 9293 3.3.2). */
static inline bool tcps_synced(uint8_t st)
{
	return st >= TCPS_ESTABLISHED;
}

enum {
	TF_ACKNOW = 1u << 0,      /* send an ACK at the next output */
	TF_DELACK = 1u << 1,      /* an ACK is being delayed */
	TF_FIN_QUEUED = 1u << 2,  /* the app shut down: FIN after the data */
	TF_FIN_SENT = 1u << 3,    /* our FIN has been sent (seq snd_max - 1) */
	TF_APP_CLOSED = 1u << 4,  /* the app called close/abort: no callbacks */
	TF_PAUSED = 1u << 5,      /* the app paused delivery */
	TF_NAGLE = 1u << 6,
	TF_TS = 1u << 7,          /* timestamps negotiated */
	TF_SACK = 1u << 8,        /* SACK permitted both ways */
	TF_WS = 1u << 9,          /* window scaling negotiated */
	TF_OUTQ = 1u << 10,       /* on the stack's output list */
	TF_ZOMBIE = 1u << 11,     /* on the free list-to-be */
	TF_WANT_WRITABLE = 1u << 12,
	TF_RECOVERY = 1u << 13,   /* in fast recovery (NewReno) */
	TF_PEER_FIN = 1u << 14,   /* the peer's FIN was received */
	TF_ACTIVE = 1u << 15,     /* opened by tcp_connect */
	TF_APP_OWNED = 1u << 16,  /* handed to the app (accept or connect) */
	TF_RTT_TIMING = 1u << 17, /* rtt_seq is being timed (no timestamps) */
	TF_KEEPALIVE = 1u << 19,  /* probe when idle */
	TF_BLOCKED = 1u << 20,    /* waiting on the stack's send mbuf budget */
	TF_RTO_RECOVERY = 1u << 18, /* SACK recovery after a timeout: every
				     * unSACKed byte below recover is lost */
};

struct tcp_listener {
	struct tcp_listener *next;
	struct tcp_listen_opts o;
	tcp_accept_fn accept;
	void *user;
	uint32_t syn_pending;   /* connections in SYN-RECEIVED */
	uint32_t conns;         /* established and handed to the app */
	bool closed;            /* unlisten called; freed when unused */
	/* the port's stats slot in tcp_stack (shared by an old listener
	 * still draining and a new one on the same port) */
	struct tcp_listener_stats *st;
};

struct tcp_conn {
	struct tcp_conn *hnext;   /* hash chain */
	struct tcp_conn *onext;   /* output list (TF_OUTQ) */
	struct tcp_conn *znext;   /* zombie list (TF_ZOMBIE); a connection
				   * can be on both at once */
	struct tcp_conn *bnext;   /* writers waiting for send mbufs */
	struct stack *s;
	struct tcp_listener *listener;
	const struct tcp_callbacks *cb;
	void *user;

	uint32_t rip, lip;        /* network order */
	uint16_t rport, lport;    /* host order */
	uint8_t state;
	uint8_t snd_wscale;       /* peer's shift, applied to its windows */
	uint8_t rcv_wscale;       /* our shift */
	uint8_t rxt_shift;        /* consecutive timeouts */
	uint8_t dupacks;
	uint8_t persist_shift;
	uint16_t mss;             /* payload bytes per segment we send */
	uint32_t flags;

	/* send side */
	uint32_t iss, snd_una, snd_nxt, snd_max;
	uint32_t snd_wl1, snd_wl2, snd_wnd, max_sndwnd;
	uint32_t cwnd, ssthresh, recover;
	uint32_t sb[TCP_SACK_RANGES][2]; /* SACKed ranges above snd_una */
	uint8_t nsb;
	uint32_t high_rxt;        /* retransmitted up to here this recovery */
	uint8_t cc;               /* enum tcp_cc */
	double cc_wmax, cc_k, cc_west; /* CUBIC: W_max (segments), K (s) */
	uint64_t cc_epoch;        /* CUBIC: epoch start, ms; 0 = none */
	struct rte_mbuf *sq_head, *sq_tail; /* unacked + unsent bytes */
	uint32_t sq_off;          /* bytes of sq_head already acknowledged */
	uint32_t sq_len;          /* bytes in the queue past sq_off */
	uint16_t sq_nmb;          /* mbufs in the send queue */

	/* receive side */
	uint32_t irs, rcv_nxt, rcv_adv; /* rcv_adv: right edge advertised */
	uint32_t last_ack_sent;
	struct rte_mbuf *ooo;     /* out-of-order segments, sorted by seq */
	uint32_t ooo_bytes;
	uint16_t ooo_cnt;
	uint32_t sack_recent;     /* seq of the latest out-of-order arrival */
	uint16_t unacked_segs;    /* full segments since our last ACK */
	struct rte_mbuf *rq_head, *rq_tail; /* in-order, held while paused */
	uint32_t rq_len;

	/* timestamps (RFC 7323) */
	uint32_t ts_recent, ts_offset;
	uint64_t ts_recent_age;   /* ms when ts_recent was set */

	/* RTT (RFC 6298), in ms scaled: srtt x8, rttvar x4 */
	uint32_t srtt8, rttvar4, rto;
	uint32_t rtt_seq;
	uint64_t rtt_start;

	struct tw_timer t_rtx;    /* SYN/data retransmit, persist, TIME-WAIT */
	struct tw_timer t_delack;

	uint64_t last_rcv_ms;     /* last segment from the peer (keepalive) */
	uint8_t ka_probes;        /* unanswered keepalive probes */

	uint64_t bytes_in, bytes_out, retransmits;
};

struct tcp_stack {
	struct tcp_conn *pool;    /* max_conns entries, touched lazily */
	struct tcp_conn *free;    /* returned entries */
	uint32_t pool_used;       /* entries ever handed out (bump pointer) */
	uint32_t max_conns;
	uint32_t nconns;          /* live connections, all states */
	struct tcp_conn **bucket;
	uint32_t hmask;
	struct tcp_listener *listeners;
	struct tcp_conn *outq;    /* connections with output pending */
	struct tcp_conn *zombies; /* dead, freed at the end of the event */
	uint8_t secret[16];       /* ISN and timestamp offsets (RFC 6528) */
	uint16_t eph_next;
	/* connections per state (LISTEN: open listeners), changed only by
	 * tcp_set_state and where a connection is made and freed; mgmt reads
	 * them (tcp_state_counts) */
	uint32_t nstate[TCPS_COUNT];
	struct tcp_listener_stats lst[TCP_LISTENER_SLOTS];
	uint32_t nlst;            /* slots in use; written with release */
	struct tcp_listener_stats lst_spare; /* ports past the slots */
	uint64_t last_cookie_ms;  /* when the last SYN cookie went out */
	/* Send queues hold their bytes in mbufs from the worker's RX pool;
	 * left unbounded, connections whose peers do not read would take
	 * every mbuf and the worker could not even receive the ACKs that
	 * free them. They get at most sq_budget mbufs together. */
	uint32_t sq_mbufs, sq_budget;
	uint32_t sq_hard;         /* small queues may go past the budget to
				   * here, so a few hogs cannot stall all */
	struct tcp_conn *blocked; /* writers turned away by the budget */
	uint64_t last_wake_ms;
	struct ratelimit challenge_rl; /* RFC 5961 7 */
};

/* Every state change of a live connection comes through here, so that
 * the per-state gauges stay exact. */
static inline void tcp_set_state(struct tcp_conn *c, uint8_t st)
{
	uint32_t *n = c->s->tcp->nstate;

	n[c->state]--;
	n[st]++;
	c->state = st;
}

/* Our timestamp clock (ms) with the connection's offset (RFC 7323 5.4). */
static inline uint32_t ts_now(const struct tcp_conn *c)
{
	return (uint32_t)c->s->now_ms + c->ts_offset;
}

/* The window shift that lets rcvbuf be advertised (at most 14). */
static inline uint8_t tcp_rcv_wscale(const struct stack *s)
{
	uint8_t ws = 0;

	while (ws < 14 && (65535u << ws) < s->conf.tcp_rcvbuf)
		ws++;
	return ws;
}

/* tcp_conn.c */
int tcp_stack_init(struct stack *s);
void tcp_stack_fini(struct stack *s);
struct tcp_conn *tcp_conn_lookup(struct stack *s, uint32_t rip, uint16_t rport,
				 uint32_t lip, uint16_t lport);
struct tcp_conn *tcp_conn_new(struct stack *s, uint32_t rip, uint16_t rport,
			      uint32_t lip, uint16_t lport);
/* Moves c to CLOSED and frees it at the end of the event; tells the app
 * with on_closed(reason) if it still owns c (reason 0: no callback). */
void tcp_conn_drop(struct tcp_conn *c, enum tcp_close_reason reason);
/* Asks for tcp_output(c) at the end of the current event. */
void tcp_conn_want_output(struct tcp_conn *c);
/* End of event: run pending output, free zombies. */
void tcp_flush(struct stack *s);
uint32_t tcp_isn(const struct stack *s, const struct tcp_conn *c);

/* tcp_output.c */
void tcp_output(struct tcp_conn *c);
/* Sends one segment [seq, seq+len) from the send queue with flags. Returns
 * the payload bytes sent (less than len when options leave less room in
 * the MTU; a FIN is then left off), or a negative errno. */
int tcp_send_segment(struct tcp_conn *c, uint32_t seq, uint32_t len,
		     uint8_t flags);
/* A RST answering a segment that has no connection (RFC 9293 3.10.7.1). */
void tcp_send_reset_reply(struct stack *s, const struct rte_ipv4_hdr *ip,
			  const struct rte_tcp_hdr *th, uint32_t seg_len);
/* An ACK right now (challenge ACKs, out-of-window segments). */
void tcp_send_ack_now(struct tcp_conn *c);
uint32_t tcp_rcv_window(const struct tcp_conn *c);
void tcp_sq_drop_acked(struct tcp_conn *c, uint32_t acked);
void tcp_sq_free(struct tcp_conn *c);
/* Recomputes the send mbuf budget for a pool shared by nworkers. */
void tcp_set_sq_budget(struct stack *s, unsigned nworkers);
/* Once per tick: retry writers that met a dry pool. */
void tcp_tick(struct stack *s);
/* on_writable comes when at least this much room is free. */
#define TCP_SEND_LOWAT 4096u
/* A send queue this short may use the reserve beyond the budget. */
#define TCP_SQ_SMALL 4u

/* Send mbufs c may still take: up to the worker's budget, and a queue
 * shorter than TCP_SQ_SMALL may also grow to that size from the reserve
 * between the budget and sq_hard. */
static inline uint32_t tcp_sq_room(const struct tcp_conn *c)
{
	const struct tcp_stack *t = c->s->tcp;
	uint32_t n = t->sq_mbufs < t->sq_budget ? t->sq_budget - t->sq_mbufs : 0;

	if (c->sq_nmb < TCP_SQ_SMALL && t->sq_mbufs < t->sq_hard) {
		uint32_t r = TCP_SQ_SMALL - c->sq_nmb;
		if (r > t->sq_hard - t->sq_mbufs)
			r = t->sq_hard - t->sq_mbufs;
		if (r > n)
			n = r;
	}
	return n;
}

/* tcp_syncookie.c */
uint32_t tcp_cookie_make(struct stack *s, uint32_t rip, uint16_t rport,
			 uint32_t lip, uint16_t lport, uint32_t client_isn,
			 uint16_t peer_mss, uint16_t *mss_out);
/* 0 if cookie is one we made for this 4-tuple and client ISN, recently. */
int tcp_cookie_check(struct stack *s, uint32_t rip, uint16_t rport,
		     uint32_t lip, uint16_t lport, uint32_t client_isn,
		     uint32_t cookie, uint16_t *mss_out);
/* A stateless SYN-ACK carrying a cookie as its sequence number. */
void tcp_send_cookie_synack(struct stack *s, const struct rte_ipv4_hdr *ip,
			    const struct rte_tcp_hdr *th, uint32_t iss,
			    uint16_t mss);

/* tcp_icmp.c: an ICMP error quoting inner (inner_len bytes available) */
void tcp_icmp_error(struct stack *s, const struct rte_ipv4_hdr *inner,
		    uint16_t inner_len, uint8_t type, uint8_t code,
		    uint16_t mtu);

/* tcp_cc.c */
void tcp_cc_init(struct tcp_conn *c);
void tcp_cc_ack(struct tcp_conn *c, uint32_t acked);
void tcp_cc_fast_retransmit(struct tcp_conn *c);
void tcp_cc_timeout(struct tcp_conn *c);

/* tcp_sack.c */
void tcp_sack_reset(struct tcp_conn *c);
void tcp_sack_prune(struct tcp_conn *c);
void tcp_sack_update(struct tcp_conn *c, const uint32_t (*blk)[2], unsigned n);
uint32_t tcp_sack_bytes(const struct tcp_conn *c);
uint32_t tcp_sack_pipe(const struct tcp_conn *c);
bool tcp_sack_should_recover(const struct tcp_conn *c);
/* In SACK recovery: retransmit holes while the pipe allows. */
void tcp_sack_output(struct tcp_conn *c);

/* tcp_timer.c */
void tcp_timer_rtx_fire(struct tw_timer *t, void *ctx);
void tcp_timer_delack_fire(struct tw_timer *t, void *ctx);
void tcp_arm_rtx(struct tcp_conn *c);
void tcp_arm_persist(struct tcp_conn *c);
void tcp_arm_timewait(struct tcp_conn *c);
/* Enters TIME-WAIT, or closes at once when max_timewait is reached. */
void tcp_enter_timewait(struct tcp_conn *c);
/* Nothing outstanding: arm keepalive where enabled, else stop t_rtx. */
void tcp_timer_idle(struct tcp_conn *c);
void tcp_rtt_sample(struct tcp_conn *c, uint32_t rtt_ms);

/* tcp_input.c */
void tcp_input(struct stack *s, struct rte_mbuf *m,
	       const struct rte_ipv4_hdr *ip, uint16_t l4_off, uint16_t l4_len);

/* Delivery to the application: in-order data, FIN, writable. */
void tcp_deliver(struct tcp_conn *c);

#endif
