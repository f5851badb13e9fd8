/*
 * tls_test_certs.h: a CA, server and client certificates in a temporary
 * folder for the TLS tests (see tls_test_certs.c for the list).
 */
#ifndef DPMAIL_TESTS_TLS_TEST_CERTS_H
#define DPMAIL_TESTS_TLS_TEST_CERTS_H

extern char tls_test_dir[64];

/* Makes the folder and the files; seeds rand(). Criterion .init. */
void tls_test_certs_setup(void);
/* Removes them. Criterion .fini. */
void tls_test_certs_teardown(void);
/* tls_test_dir/name, in one of 32 rotating buffers. */
const char *tls_test_path(const char *name);

#endif
