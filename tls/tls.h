/*
 * tls.h: TLS 1.2 / 1.3 over any byte stream, sans-I/O (OpenSSL 3).
 *
 * A userspace stack has no socket for OpenSSL to read, so a tls_conn
 * never does I/O: the caller feeds it the bytes that came off the
 * network, takes the encrypted bytes it must send, and reads and writes
 * plaintext. The same object serves an implicit-TLS listener (created at
 * accept, fed from the first byte) and STARTTLS (created mid-session and
 * fed only the bytes after "220 Ready to start TLS").
 *
 * tls_ctx: built once at start-up from a tls_ctx_conf; read-only
 * afterwards and shared by every worker (OpenSSL's SSL_CTX is safe to
 * share for SSL_new). Server: one or more certificate chains + keys; the
 * client's SNI picks one (exact name first, then "*.domain" wildcards,
 * else the first). Client: trust anchors and a verify policy for
 * outbound STARTTLS.
 *
 * tls_conn: one per connection, used by the one thread that owns the
 * connection; never blocks.
 *  - tls_conn_feed() takes every network byte it is given and advances
 *    the handshake. Undecrypted input beyond conf->max_in_buffered is a
 *    fatal error: the caller should stop reading the stream (pause it)
 *    while tls_conn_in_buffered() is large, i.e. while its engine does
 *    not call tls_conn_read().
 *  - tls_conn_read() returns plaintext; call it after each feed until it
 *    returns 0. 0 also comes when the peer's close_notify arrived
 *    (tls_conn_peer_closed() then says so).
 *  - tls_conn_write() encrypts plaintext and returns how much it took:
 *    less than asked (maybe 0) once the encrypted output waiting to be
 *    sent reaches conf->out_highwater. Before the handshake is done the
 *    plaintext is held (up to conf->max_plain_buffered) and sent right
 *    after it: an implicit-TLS server may write its greeting at accept.
 *  - Output: tls_conn_out_peek()/tls_conn_out_consume() hand out the
 *    encrypted bytes in place (the only copy is the caller's into the
 *    stream), tls_conn_take_out() copies them. Check for output after
 *    every call above: the handshake, alerts and close_notify make some.
 *  - tls_conn_shutdown() queues close_notify; the caller sends the
 *    output, then closes the stream.
 *  - Renegotiation (TLS 1.2) is refused: a peer's request gets a
 *    no_renegotiation warning alert and the connection goes on (a peer
 *    that insists ends it with a fatal alert); TLS 1.3 KeyUpdate is
 *    served (the answer leaves with the next write).
 *  - Errors: the peer's garbage, a failed handshake or verification, an
 *    alert from the peer or a protocol violation put the connection in
 *    the error state: every later call returns -EPROTO (or 0 bytes),
 *    tls_conn_error() says why, and the fatal alert OpenSSL queued is in
 *    the output: send it, then close.
 *
 * Return values: counts are >= 0; failures are negative errno values:
 * -EPROTO (TLS failure, see tls_conn_error), -EPIPE (written after
 * shutdown), -ENOBUFS (input limit), -ENOMEM.
 */
#ifndef DPMAIL_TLS_TLS_H
#define DPMAIL_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tls_ctx;
struct tls_conn;
struct tls_session;

enum tls_role { TLS_SERVER = 0, TLS_CLIENT };

enum tls_version { TLS_V_DEFAULT = 0, TLS_V1_2, TLS_V1_3 };

/*
 * Server: whether to ask for a client certificate. OPTIONAL asks and
 * accepts any answer (none, untrusted); the result is in
 * tls_conn_peer_verified(). REQUIRED fails the handshake without a
 * certificate that chains to ca_file.
 * Client: whether to check the server's certificate against ca_file and
 * the server name. OPTIONAL checks and reports; REQUIRED fails the
 * handshake (opportunistic STARTTLS wants OPTIONAL or NONE).
 */
enum tls_verify { TLS_VERIFY_NONE = 0, TLS_VERIFY_OPTIONAL, TLS_VERIFY_REQUIRED };

/* A certificate chain (leaf first, then intermediates) and its private
 * key, both PEM files; key_file NULL = the key is in cert_file. */
struct tls_cert_conf {
	const char *cert_file;
	const char *key_file;
};

#define TLS_DEFAULT_OUT_HIGHWATER   (64u << 10)
#define TLS_DEFAULT_MAX_IN_BUFFERED (256u << 10)
#define TLS_DEFAULT_MAX_PLAIN       (64u << 10)
#define TLS_MAX_CERTS 64

struct tls_ctx_conf {
	enum tls_role role;
	/* Server: at least one; the first is the default. Client: at most
	 * one (a client certificate), or none. */
	const struct tls_cert_conf *certs;
	size_t n_certs;
	enum tls_version min_version; /* default TLS 1.2; nothing older exists */
	enum tls_version max_version; /* default TLS 1.3 */
	const char *ciphers;          /* TLS 1.2 cipher list; NULL = OpenSSL's */
	const char *ciphersuites;     /* TLS 1.3 suites; NULL = OpenSSL's */
	enum tls_verify verify;
	const char *ca_file;          /* PEM; needed when verify != NONE */
	/* Server: issue session tickets (stateless resumption). Client:
	 * keep the sessions it is given, see tls_conn_session_get. */
	bool session_tickets;
	uint32_t ticket_lifetime_s;   /* 0 = OpenSSL's default (2 h) */
	size_t out_highwater;         /* 0 = TLS_DEFAULT_OUT_HIGHWATER */
	size_t max_in_buffered;       /* 0 = TLS_DEFAULT_MAX_IN_BUFFERED */
	size_t max_plain_buffered;    /* 0 = TLS_DEFAULT_MAX_PLAIN */
};

/* Fills in the defaults (server, TLS 1.2-1.3, tickets on). */
void tls_ctx_conf_defaults(struct tls_ctx_conf *c);

/*
 * Builds a context. Returns 0, or -EINVAL with a one-line reason in err
 * (the file and what is wrong with it: missing, not PEM, no certificate,
 * key does not match, bad cipher list, ...), or -ENOMEM.
 */
int tls_ctx_new(const struct tls_ctx_conf *conf, struct tls_ctx **out,
		char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);
/* Servers: dst encrypts and decrypts session tickets with src's keys, so
 * that tickets src issued resume under dst (a reloaded context). A no-op
 * when either is NULL or not a server. */
void tls_ctx_copy_ticket_keys(struct tls_ctx *dst, const struct tls_ctx *src);

/*
 * A connection. Server: server_name must be NULL. Client: server_name is
 * sent as SNI and checked against the certificate when verify != NONE
 * (NULL: neither). Returns NULL on -ENOMEM.
 */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *server_name);
void tls_conn_free(struct tls_conn *c);

/* Consumes all len bytes. 0, or -EPROTO / -ENOBUFS (now in error). */
int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len);
/* Client: starts the handshake (queues the ClientHello). A server
 * starts when fed. Feeding a client starts it too. */
int tls_conn_start(struct tls_conn *c);

/* Plaintext: > 0 bytes, 0 = none now (or peer closed), -EPROTO. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t cap);
/* Accepted count (0 = wait for the output to drain), -EPIPE, -EPROTO. */
ssize_t tls_conn_write(struct tls_conn *c, const void *data, size_t len);
/* How much tls_conn_write would take now. */
size_t tls_conn_write_space(const struct tls_conn *c);

/* Encrypted bytes waiting to go to the network. */
size_t tls_conn_pending_out(const struct tls_conn *c);
/* All of them in one piece (NULL, 0 when none); valid until the next
 * call on c. Then consume what the stream took. */
const uint8_t *tls_conn_out_peek(const struct tls_conn *c, size_t *len);
void tls_conn_out_consume(struct tls_conn *c, size_t n);
/* Copies up to cap of them out and consumes them; returns the count. */
size_t tls_conn_take_out(struct tls_conn *c, void *buf, size_t cap);
/* Undecrypted input held (see the limits above). */
size_t tls_conn_in_buffered(const struct tls_conn *c);

/* Queues close_notify (once). 0, or -ENOTCONN before the handshake is
 * done (nothing to close politely: just close the stream). */
int tls_conn_shutdown(struct tls_conn *c);

bool tls_conn_handshake_done(const struct tls_conn *c);
bool tls_conn_peer_closed(const struct tls_conn *c);  /* close_notify in */
bool tls_conn_failed(const struct tls_conn *c);
/* Why it failed ("" when it did not). */
const char *tls_conn_error(const struct tls_conn *c);

/* After the handshake; NULL when not known. */
const char *tls_conn_version(const struct tls_conn *c);   /* "TLSv1.3" */
const char *tls_conn_cipher(const struct tls_conn *c);    /* IANA-ish name */
int tls_conn_cipher_bits(const struct tls_conn *c);
const char *tls_conn_sni(const struct tls_conn *c);
bool tls_conn_session_reused(const struct tls_conn *c);
/* Peer certificate subject (RFC 2253), "" when none; returns its length. */
size_t tls_conn_peer_subject(const struct tls_conn *c, char *buf, size_t cap);
bool tls_conn_has_peer_cert(const struct tls_conn *c);
/* A peer certificate was sent and chains to ca_file (and, for a client,
 * matches server_name). */
bool tls_conn_peer_verified(const struct tls_conn *c);
/* For Received: "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256
 * bits)"; returns the length (snprintf-like). */
int tls_conn_describe(const struct tls_conn *c, char *buf, size_t cap);

/*
 * Client resumption: a copy of the latest resumable session this
 * connection got (TLS 1.3 tickets come after the handshake: read
 * first), or NULL; the caller frees it. tls_conn_session_set before
 * tls_conn_start offers it (-EINVAL on a server or once started; the
 * connection takes its own reference). A session may be kept in a
 * per-destination cache and used by another worker, one at a time.
 */
struct tls_session *tls_conn_session_get(struct tls_conn *c);
int tls_conn_session_set(struct tls_conn *c, struct tls_session *s);
void tls_session_free(struct tls_session *s);

/* The OpenSSL object, for tests and diagnostics only (an ssl_st *). */
void *tls_conn_ssl(struct tls_conn *c);

#endif
