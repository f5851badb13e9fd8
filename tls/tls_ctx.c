/*
 * tls_ctx.c: building a TLS context from config: versions (1.2 and 1.3
 * only), cipher lists, certificate chains and keys from PEM files, the
 * SNI choice among several certificates, client-certificate requests,
 * session tickets, and the client side's trust anchors.
 *
 * Owns: the SSL_CTX, the BIO method, every loaded certificate and key.
 * Runs at start-up only (it reads files); every error is a one-line
 * reason naming the file. Never exits.
 */
#include "tls/tls_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

void tls_ctx_conf_defaults(struct tls_ctx_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->role = TLS_SERVER;
	c->min_version = TLS_V1_2;
	c->max_version = TLS_V1_3;
	c->session_tickets = true;
}

/* OpenSSL's reason for the latest error ("" if none); clears the queue. */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "unknown OpenSSL error";
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	ERR_clear_error();
	return -EINVAL;
}

/* No passphrase prompts at start-up: an encrypted key is an error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static BIO *open_pem(const char *what, const char *path, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "r");
	BIO *b;

	if (f == NULL) {
		fail(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	b = BIO_new_fp(f, BIO_CLOSE);
	if (b == NULL) {
		fclose(f);
		fail(err, errlen, "%s %s: out of memory", what, path);
	}
	return b;
}

/* True when the error queue ends with "no more PEM blocks". */
static bool pem_at_end(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_PEM &&
	       ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

static int load_chain(struct tls_cert *tc, const char *path, char *err,
		      size_t errlen)
{
	BIO *b = open_pem("cert_file", path, err, errlen);
	X509 *x;
	int rc = 0;

	if (b == NULL)
		return -EINVAL;
	ERR_clear_error();
	tc->leaf = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
	if (tc->leaf == NULL) {
		rc = fail(err, errlen, "cert_file %s: no PEM certificate (%s)",
			  path, pem_at_end() ? "no certificate block" :
			  ssl_reason());
		goto out;
	}
	tc->chain = sk_X509_new_null();
	if (tc->chain == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
		if (!sk_X509_push(tc->chain, x)) {
			X509_free(x);
			rc = -ENOMEM;
			goto out;
		}
	}
	if (!pem_at_end()) {
		rc = fail(err, errlen, "cert_file %s: bad PEM after certificate %d (%s)",
			  path, sk_X509_num(tc->chain) + 1, ssl_reason());
		goto out;
	}
	ERR_clear_error();
out:
	BIO_free(b);
	return rc;
}

static int load_key(struct tls_cert *tc, const char *path, char *err,
		    size_t errlen)
{
	BIO *b = open_pem("key_file", path, err, errlen);

	if (b == NULL)
		return -EINVAL;
	ERR_clear_error();
	tc->key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (tc->key == NULL) {
		unsigned long e = ERR_peek_last_error();
		const char *why;

		if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
		    ERR_GET_REASON(e) == PEM_R_BAD_PASSWORD_READ)
			why = "encrypted; start-up asks for no passphrase";
		else if (pem_at_end() || (ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER &&
					  ERR_GET_REASON(e) == ERR_R_UNSUPPORTED))
			why = "no private key block";
		else
			why = ssl_reason();
		return fail(err, errlen, "key_file %s: no usable PEM private key (%s)",
			    path, why);
	}
	return 0;
}

static int add_name(struct tls_cert *tc, const unsigned char *s, int len)
{
	char **names;
	char *n;

	if (len <= 0 || memchr(s, 0, (size_t)len) != NULL)
		return 0;  /* an embedded NUL is a forgery, not a name */
	n = malloc((size_t)len + 1);
	if (n == NULL)
		return -ENOMEM;
	for (int i = 0; i < len; i++)
		n[i] = (char)tolower(s[i]);
	n[len] = '\0';
	names = realloc(tc->names, (tc->n_names + 1) * sizeof(*names));
	if (names == NULL) {
		free(n);
		return -ENOMEM;
	}
	tc->names = names;
	tc->names[tc->n_names++] = n;
	return 0;
}

/* The names a certificate answers for: its DNS subjectAltNames, or its
 * CN when it has none (RFC 6125 6.4.4). */
static int cert_names(struct tls_cert *tc)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(tc->leaf, NID_subject_alt_name,
					       NULL, NULL);
	int rc = 0;

	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type != GEN_DNS)
			continue;
		rc = add_name(tc, ASN1_STRING_get0_data(g->d.dNSName),
			      ASN1_STRING_length(g->d.dNSName));
		if (rc < 0)
			break;
	}
	GENERAL_NAMES_free(gens);
	if (rc == 0 && tc->n_names == 0) {
		const X509_NAME *subj = X509_get_subject_name(tc->leaf);
		int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
		unsigned char *utf8 = NULL;
		int len;

		if (i < 0)
			return 0;
		len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(
			X509_NAME_get_entry(subj, i)));
		if (len > 0)
			rc = add_name(tc, utf8, len);
		OPENSSL_free(utf8);
	}
	return rc;
}

static void cert_free(struct tls_cert *tc)
{
	X509_free(tc->leaf);
	EVP_PKEY_free(tc->key);
	sk_X509_pop_free(tc->chain, X509_free);
	for (size_t i = 0; i < tc->n_names; i++)
		free(tc->names[i]);
	free(tc->names);
}

static int load_cert(struct tls_cert *tc, const struct tls_cert_conf *cc,
		     char *err, size_t errlen)
{
	const char *key_path = cc->key_file ? cc->key_file : cc->cert_file;
	int rc;

	if (cc->cert_file == NULL)
		return fail(err, errlen, "a certificate without cert_file");
	rc = load_chain(tc, cc->cert_file, err, errlen);
	if (rc == 0)
		rc = load_key(tc, key_path, err, errlen);
	if (rc == 0 && !X509_check_private_key(tc->leaf, tc->key))
		rc = fail(err, errlen,
			  "key_file %s does not match the certificate in %s",
			  key_path, cc->cert_file);
	if (rc == 0)
		rc = cert_names(tc);
	if (rc == -ENOMEM)
		fail(err, errlen, "cert_file %s: out of memory", cc->cert_file);
	return rc;
}

/* "*.example.org" matches "a.example.org", not "example.org" nor
 * "a.b.example.org" (RFC 6125 6.4.3: the wildcard is one whole label). */
static bool wildcard_match(const char *pattern, const char *host)
{
	const char *dot = strchr(host, '.');

	if (pattern[0] != '*' || pattern[1] != '.' || dot == NULL || dot == host)
		return false;
	return strcasecmp(dot + 1, pattern + 2) == 0;
}

size_t tls_ctx_pick_cert(const struct tls_ctx *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->n_certs; i++)
		for (size_t j = 0; j < ctx->certs[i].n_names; j++)
			if (strcasecmp(ctx->certs[i].names[j], name) == 0)
				return i;
	for (size_t i = 0; i < ctx->n_certs; i++)
		for (size_t j = 0; j < ctx->certs[i].n_names; j++)
			if (wildcard_match(ctx->certs[i].names[j], name))
				return i;
	return 0;
}

/* Before the server picks its certificate: the client's SNI chooses one
 * (the context's default, certs[0], is already on the SSL). */
static int cert_cb(SSL *ssl, void *arg)
{
	const struct tls_ctx *ctx = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const struct tls_cert *tc;
	size_t i;

	if (name == NULL || ctx->n_certs < 2)
		return 1;
	i = tls_ctx_pick_cert(ctx, name);
	if (i == 0)
		return 1;
	tc = &ctx->certs[i];
	SSL_certs_clear(ssl);
	return SSL_use_cert_and_key(ssl, tc->leaf, tc->key, tc->chain, 1) == 1;
}

/* verify OPTIONAL: look at the chain, record the verdict, go on. */
static int verify_accept_all(int preverify_ok, X509_STORE_CTX *x)
{
	(void)preverify_ok;
	(void)x;
	return 1;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *c = SSL_get_app_data(ssl);

	if (c == NULL || !SSL_SESSION_is_resumable(sess))
		return 0;
	SSL_SESSION_free(c->session);
	c->session = sess;
	return 1;  /* the reference is ours */
}

static int version_of(enum tls_version v, int dflt)
{
	switch (v) {
	case TLS_V1_2:
		return TLS1_2_VERSION;
	case TLS_V1_3:
		return TLS1_3_VERSION;
	default:
		return dflt;
	}
}

static int setup_versions_ciphers(SSL_CTX *s, const struct tls_ctx_conf *conf,
				  char *err, size_t errlen)
{
	int lo = version_of(conf->min_version, TLS1_2_VERSION);
	int hi = version_of(conf->max_version, TLS1_3_VERSION);

	if (lo > hi)
		return fail(err, errlen, "min TLS version above max");
	if (!SSL_CTX_set_min_proto_version(s, lo) ||
	    !SSL_CTX_set_max_proto_version(s, hi))
		return fail(err, errlen, "TLS versions: %s", ssl_reason());
	if (conf->ciphers != NULL && !SSL_CTX_set_cipher_list(s, conf->ciphers))
		return fail(err, errlen, "ciphers '%s': %s", conf->ciphers,
			    ssl_reason());
	if (conf->ciphersuites != NULL &&
	    !SSL_CTX_set_ciphersuites(s, conf->ciphersuites))
		return fail(err, errlen, "ciphersuites '%s': %s",
			    conf->ciphersuites, ssl_reason());
	return 0;
}

static int setup_verify(struct tls_ctx *ctx, const struct tls_ctx_conf *conf,
			char *err, size_t errlen)
{
	SSL_CTX *s = ctx->ssl;
	FILE *f;

	if (conf->verify == TLS_VERIFY_NONE) {
		SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	if (conf->ca_file == NULL)
		return fail(err, errlen, "certificate verification needs ca_file");
	f = fopen(conf->ca_file, "r");
	if (f == NULL)
		return fail(err, errlen, "ca_file %s: %s", conf->ca_file,
			    strerror(errno));
	fclose(f);
	ERR_clear_error();
	if (!SSL_CTX_load_verify_file(s, conf->ca_file))
		return fail(err, errlen, "ca_file %s: %s", conf->ca_file,
			    ssl_reason());
	if (conf->role == TLS_SERVER) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->ca_file);

		if (names == NULL)
			return fail(err, errlen, "ca_file %s: no CA names (%s)",
				    conf->ca_file, ssl_reason());
		SSL_CTX_set_client_CA_list(s, names);
	}
	if (conf->verify == TLS_VERIFY_OPTIONAL)
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER, verify_accept_all);
	else if (conf->role == TLS_SERVER)
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER |
				   SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
	return 0;
}

static int setup_sessions(SSL_CTX *s, const struct tls_ctx_conf *conf)
{
	if (conf->role == TLS_SERVER) {
		static const unsigned char sid_ctx[] = "dpmail";

		/* Tickets only: a shared server-side cache would be a lock
		 * between workers and memory per session. */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		if (!SSL_CTX_set_session_id_context(s, sid_ctx, sizeof(sid_ctx) - 1))
			return -ENOMEM;
		if (conf->session_tickets) {
			SSL_CTX_set_num_tickets(s, 1);
			if (conf->ticket_lifetime_s)
				SSL_CTX_set_timeout(s, (long)conf->ticket_lifetime_s);
		} else {
			SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
			SSL_CTX_set_num_tickets(s, 0);
		}
	} else if (conf->session_tickets) {
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT |
					       SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(s, new_session_cb);
	} else {
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
	}
	return 0;
}

static int setup_certs(struct tls_ctx *ctx, const struct tls_ctx_conf *conf,
		       char *err, size_t errlen)
{
	int rc;

	if (conf->role == TLS_SERVER && conf->n_certs == 0)
		return fail(err, errlen, "a TLS server needs a certificate");
	if (conf->role == TLS_CLIENT && conf->n_certs > 1)
		return fail(err, errlen, "a TLS client takes one certificate");
	if (conf->n_certs > TLS_MAX_CERTS)
		return fail(err, errlen, "more than %u certificates",
			    TLS_MAX_CERTS);
	if (conf->n_certs == 0)
		return 0;
	ctx->certs = calloc(conf->n_certs, sizeof(*ctx->certs));
	if (ctx->certs == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < conf->n_certs; i++) {
		rc = load_cert(&ctx->certs[i], &conf->certs[i], err, errlen);
		ctx->n_certs = i + 1;
		if (rc < 0)
			return rc;
	}
	ERR_clear_error();
	if (SSL_CTX_use_cert_and_key(ctx->ssl, ctx->certs[0].leaf,
				     ctx->certs[0].key, ctx->certs[0].chain,
				     1) != 1)
		return fail(err, errlen, "cert_file %s: %s",
			    conf->certs[0].cert_file, ssl_reason());
	if (conf->role == TLS_SERVER)
		SSL_CTX_set_cert_cb(ctx->ssl, cert_cb, ctx);
	return 0;
}

int tls_ctx_new(const struct tls_ctx_conf *conf, struct tls_ctx **out,
		char *err, size_t errlen)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (ctx == NULL)
		return -ENOMEM;
	ctx->role = conf->role;
	ctx->verify = conf->verify;
	ctx->out_highwater = conf->out_highwater ? conf->out_highwater :
			     TLS_DEFAULT_OUT_HIGHWATER;
	ctx->max_in = conf->max_in_buffered ? conf->max_in_buffered :
		      TLS_DEFAULT_MAX_IN_BUFFERED;
	/* at least one whole record (16 KiB + overhead) must fit */
	if (ctx->max_in < (32u << 10))
		ctx->max_in = 32u << 10;
	ctx->max_plain = conf->max_plain_buffered ? conf->max_plain_buffered :
			 TLS_DEFAULT_MAX_PLAIN;
	ERR_clear_error();
	ctx->ssl = SSL_CTX_new(conf->role == TLS_SERVER ? TLS_server_method() :
			       TLS_client_method());
	ctx->bio_meth = tls_bio_method_new();
	if (ctx->ssl == NULL || ctx->bio_meth == NULL) {
		rc = -ENOMEM;
		goto bad;
	}
	/* Renegotiation (TLS 1.2) is refused with a no_renegotiation alert
	 * both ways; buffers are released while a connection idles. */
	SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_NO_COMPRESSION |
			    (conf->role == TLS_SERVER ?
			     SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
	SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
	rc = setup_versions_ciphers(ctx->ssl, conf, err, errlen);
	if (rc == 0)
		rc = setup_certs(ctx, conf, err, errlen);
	if (rc == 0)
		rc = setup_verify(ctx, conf, err, errlen);
	if (rc == 0)
		rc = setup_sessions(ctx->ssl, conf);
	if (rc == 0) {
		*out = ctx;
		return 0;
	}
bad:
	if (rc == -ENOMEM && err != NULL && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "TLS context: out of memory");
	tls_ctx_free(ctx);
	ERR_clear_error();
	return rc;
}

void tls_ctx_copy_ticket_keys(struct tls_ctx *dst, const struct tls_ctx *src)
{
	unsigned char keys[80]; /* name 16, HMAC 32, AES 32 */

	if (dst == NULL || src == NULL || dst->role != TLS_SERVER ||
	    src->role != TLS_SERVER)
		return;
	if (SSL_CTX_get_tlsext_ticket_keys(src->ssl, keys, sizeof(keys)) == 1)
		SSL_CTX_set_tlsext_ticket_keys(dst->ssl, keys, sizeof(keys));
	OPENSSL_cleanse(keys, sizeof(keys));
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->ssl);
	BIO_meth_free(ctx->bio_meth);
	for (size_t i = 0; i < ctx->n_certs; i++)
		cert_free(&ctx->certs[i]);
	free(ctx->certs);
	free(ctx);
}
