/*
 * tls_test_certs.c: certificates for the TLS tests, made with the OpenSSL
 * API (EC P-256: fast) into a fresh temporary folder:
 *   ca.pem                the test CA
 *   s1.pem s1.key         mail.example.com, mx.example.com (+ CA in chain)
 *   s1enc.key             s1.key encrypted with a passphrase
 *   s2.pem s2.key         *.example.org; s2both.pem = cert + key
 *   cl.pem cl.key         client.example.net, signed by the CA
 *   rca.pem, rcl.pem/key  a rogue CA and a client certificate it signed
 *   garbage.pem, empty.pem  not certificates
 */
#include "tests/unit/tls_test_certs.h"

#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

char tls_test_dir[64];
static char path_buf[32][128];
static int n_paths;

const char *tls_test_path(const char *name)
{
	char *p = path_buf[n_paths++ % 32];

	snprintf(p, sizeof(path_buf[0]), "%s/%s", tls_test_dir, name);
	return p;
}

/* ------------------------------------------------------------------ */
/* certificates                                                         */

static long serial = 1;

static void add_ext(X509 *x, X509V3_CTX *v, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v, nid, value);

	cr_assert_not_null(e, "extension %d=%s", nid, value);
	cr_assert(X509_add_ext(x, e, -1));
	X509_EXTENSION_free(e);
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san,
		       X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
	X509 *x = X509_new();
	X509_NAME *n;
	X509V3_CTX v;

	cr_assert_not_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
				   (const unsigned char *)"dpmail test", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	X509V3_set_ctx_nodb(&v);
	X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
	add_ext(x, &v, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
	add_ext(x, &v, NID_subject_key_identifier, "hash");
	if (ca)
		add_ext(x, &v, NID_key_usage, "critical,keyCertSign,cRLSign");
	else
		add_ext(x, &v, NID_authority_key_identifier, "keyid:always");
	if (san)
		add_ext(x, &v, NID_subject_alt_name, san);
	cr_assert(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()));
	return x;
}

static void write_pem(const char *name, X509 *x, X509 *x2, EVP_PKEY *k)
{
	FILE *f = fopen(tls_test_path(name), "w");

	cr_assert_not_null(f);
	if (x)
		cr_assert(PEM_write_X509(f, x));
	if (x2)
		cr_assert(PEM_write_X509(f, x2));
	if (k)
		cr_assert(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	fclose(f);
}

static void make_certs(void)
{
	EVP_PKEY *ca_k = EVP_EC_gen("P-256"), *s1_k = EVP_EC_gen("P-256"),
		 *s2_k = EVP_EC_gen("P-256"), *cl_k = EVP_EC_gen("P-256"),
		 *rca_k = EVP_EC_gen("P-256"), *rcl_k = EVP_EC_gen("P-256");
	X509 *ca, *s1, *s2, *cl, *rca, *rcl;

	cr_assert(ca_k && s1_k && s2_k && cl_k && rca_k && rcl_k);
	ca = make_cert(ca_k, "dpmail test CA", NULL, NULL, NULL, true);
	s1 = make_cert(s1_k, "mail.example.com",
		       "DNS:mail.example.com,DNS:mx.example.com", ca, ca_k, false);
	s2 = make_cert(s2_k, "*.example.org", "DNS:*.example.org", ca, ca_k,
		       false);
	cl = make_cert(cl_k, "client.example.net", NULL, ca, ca_k, false);
	rca = make_cert(rca_k, "rogue CA", NULL, NULL, NULL, true);
	rcl = make_cert(rcl_k, "rogue.example.net", NULL, rca, rca_k, false);

	write_pem("ca.pem", ca, NULL, NULL);
	write_pem("s1.pem", s1, ca, NULL);  /* leaf + chain */
	write_pem("s1.key", NULL, NULL, s1_k);
	write_pem("s2.pem", s2, NULL, NULL);
	write_pem("s2.key", NULL, NULL, s2_k);
	write_pem("s2both.pem", s2, NULL, s2_k);
	write_pem("cl.pem", cl, NULL, NULL);
	write_pem("cl.key", NULL, NULL, cl_k);
	write_pem("rcl.pem", rcl, NULL, NULL);
	write_pem("rcl.key", NULL, NULL, rcl_k);
	write_pem("rca.pem", rca, NULL, NULL);
	FILE *e = fopen(tls_test_path("s1enc.key"), "w");
	cr_assert_not_null(e);
	cr_assert(PEM_write_PrivateKey(e, s1_k, EVP_aes_128_cbc(),
				       (const unsigned char *)"pass", 4, NULL,
				       NULL));
	fclose(e);
	FILE *f = fopen(tls_test_path("garbage.pem"), "w");
	cr_assert_not_null(f);
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n"
	      "-----END CERTIFICATE-----\n", f);
	fclose(f);
	f = fopen(tls_test_path("empty.pem"), "w");
	cr_assert_not_null(f);
	fputs("hello\n", f);
	fclose(f);

	X509_free(ca); X509_free(s1); X509_free(s2); X509_free(cl);
	X509_free(rca); X509_free(rcl);
	EVP_PKEY_free(ca_k); EVP_PKEY_free(s1_k); EVP_PKEY_free(s2_k);
	EVP_PKEY_free(cl_k); EVP_PKEY_free(rca_k); EVP_PKEY_free(rcl_k);
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

void tls_test_certs_setup(void)
{
	strcpy(tls_test_dir, "/tmp/dpm-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(tls_test_dir));
	make_certs();
	srand(12345);
}

void tls_test_certs_teardown(void)
{
	nftw(tls_test_dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}
