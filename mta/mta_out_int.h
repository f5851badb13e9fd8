/*
 * mta_out_int.h: what mta_out.c (deliveries, the API) and mta_out_conn.c
 * (connections, the SMTP engine and the stream glue) share. Not for
 * other modules: the contract is mta_out.h.
 */
#ifndef DPMAIL_MTA_MTA_OUT_INT_H
#define DPMAIL_MTA_MTA_OUT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/mta_out.h"
#include "tcpstack/tcp.h"

#define ADDRS_MAX 32          /* addresses tried per job */
#define QUIT_WAIT_MS 10000    /* for the reply to QUIT (the engine: 5 min) */
#define KEY_MAX (MTA_HOST_MAX + 16)
#define NOMEM_MAX 64

struct dlv;

struct conn {
	struct mta_out *o;
	struct conn *next, *prev;       /* o->conns: every live conn */
	struct conn *inext, *iprev;     /* o->idle: LRU, oldest first */
	struct tcp_conn *tc;            /* NULL once closed or aborted */
	struct smtp_client *cl;
	struct dlv *d;                  /* NULL when idle or quitting */
	uint8_t *out;
	size_t out_len, out_cap;
	uint64_t deadline;              /* connect or engine timer, 0: none */
	uint64_t idle_until;
	uint32_t ip;
	uint16_t port;
	bool connecting, idle, quitting, dead;
	/* STARTTLS (mta_out_conn.c): once the 220 came, every byte goes
	 * through tls; out then holds plaintext not yet taken by it */
	struct tls_conn *tls;
	uint8_t tls_policy;             /* enum mta_tls_policy */
	bool tls_decided, tls_refused, tls_done;
	char name[MTA_HOST_MAX + 1];    /* the host, for SNI and verify */
	char key[KEY_MAX];
	char relay[MTA_HOST_MAX + 32];  /* "name[a.b.c.d]:port" */
};

enum dlv_state {
	D_WAITING = 0,   /* in the FIFO */
	D_RESOLVE,       /* to resolve (kicked) */
	D_DNS,           /* a lookup in flight */
	D_NEXT_ADDR,     /* to connect to the next address (kicked) */
	D_CONN,          /* a connection is attached */
	D_RESOLVE_BUSY,  /* mta_dns had no lookup slot: again at a tick */
	D_FINISH,        /* to finish (kicked) */
	D_DONE,          /* on the done list */
};

struct dlv_addr {
	uint32_t ip;
	char name[MTA_DNS_NAME_MAX + 1];
};

struct dlv {
	struct mta_out *o;
	struct mta_job *j;
	struct dlv *next, *prev;        /* o->active */
	struct dlv *qnext;              /* o->waiting, o->done */
	struct dlv *knext;              /* o->kick */
	enum dlv_state state;
	bool kicked, reused, any_reply;
	struct conn *c;
	unsigned n_addrs, next_addr;
	struct dlv_addr *addrs;         /* [ADDRS_MAX] */
	/* tls_policy may: the TLS handshake with plain_ip failed; the next
	 * connection to it goes in clear */
	bool plain_pending;
	uint32_t plain_ip;
	uint32_t *off;                  /* [nmsg]: first of msg i in pend */
	uint8_t *pend;                  /* [sum nrcpt]: 1 still to do */
	uint32_t *idx, *map;            /* [max nrcpt]: scratch for send */
	uint32_t next_msg, inflight, inflight_n;
	char key[KEY_MAX];
};

#define MO_DNS_PORTS_MAX 256

struct mta_out {
	struct stack *st;
	unsigned worker;
	struct mta_out_conf conf;
	char *helo;
	mta_out_done_fn done;
	void *user;
	struct mta_dns *dns;
	/* a port per DNS query in flight (dns_send), closed by the answer
	 * or when it expires (mta_out_tick) */
	struct mo_dns_port {
		uint16_t port, rport;
		uint32_t rip;
		uint64_t until;
	} dns_ports[MO_DNS_PORTS_MAX];
	unsigned n_dns_ports;
	uint64_t now;
	struct conn *conns;
	struct conn *idle_head, *idle_tail;
	uint32_t n_idle;
	struct dlv *active;
	uint32_t n_active;
	struct dlv *wait_head, *wait_tail;
	struct dlv *done_head, *done_tail;
	struct dlv *kick;
	/* jobs that got no dlv (out of memory), handed back by poll */
	struct mta_job *nomem[NOMEM_MAX];
	unsigned n_nomem;
	bool stopped;
	struct mta_out_stats st_;
	struct tls_ctx *tls;            /* client context; NULL: no STARTTLS */
};

extern const struct tcp_callbacks mo_conn_cb;

/* mta_out_conn.c: the client TLS context from conf (start-up only: it
 * reads the CA file). 0 or -1 (logged). */
int mo_tls_init(struct mta_out *o);
void mo_tls_free(struct mta_out *o);

/* helpers (mta_out.c) */
uint64_t mo_now_ms(const struct mta_out *o);
void mo_ip_str(uint32_t ip, char *buf, size_t len);
/* snprintf that cuts silently: log and reply texts are bounded */
void mo_strfmt(char *dst, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* appends "; text" (or text) to job->why, cut at its size */
void mo_why_add(struct mta_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void mo_set_reply(struct smtp_client_reply *r, uint16_t code,
		  const char *enh, const char *text);
/* the Postfix-style line for one recipient's result */
void mo_log_rcpt(const struct mta_job_msg *m, const struct mta_job_rcpt *r,
		 const char *relay);

/* deliveries (mta_out.c), called from the connection's events */
bool mo_dlv_pending(const struct dlv *d);
void mo_dlv_set_remote(struct dlv *d, const struct conn *c);
/* hands the engine the next message (or ends the session's job) */
void mo_dlv_send_next(struct dlv *d);
/* the session of d ended: the rest to the next address */
void mo_dlv_conn_lost(struct dlv *d);

/* connections (mta_out_conn.c) */
struct conn *mo_conn_new(struct mta_out *o, const char *name, uint32_t ip,
			 uint16_t port, const char *key);
/* after every call into the engine: data blocks, the engine's timer */
void mo_conn_pump(struct conn *c);
/* the TCP handle is gone (or never was): freed by mo_reap */
void mo_conn_dead(struct conn *c);
void mo_conn_abort(struct conn *c);
void mo_idle_unlink(struct conn *c);
void mo_idle_push(struct conn *c);
/* frees dead connections; never inside a callback */
void mo_reap(struct mta_out *o);

#endif
