/*
 * smtpd_tls.h: the SMTP service's TLS and AUTH set-up, private to
 * mgmt/smtpd*.c: the per-listener port lists and the server TLS
 * context built from [tls].
 */
#ifndef DPMAIL_MGMT_SMTPD_TLS_H
#define DPMAIL_MGMT_SMTPD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mgmt/smtpd.h"

struct tls_ctx;

/* "25, 587" -> out[] (at most max). Returns the count, or -1 with why. */
int smtpd_ports_parse(const char *list, uint16_t *out, unsigned max,
		      char *why, size_t len);
bool smtpd_ports_has(const char *list, uint16_t port);

/* The server context from [tls]: cert_file/key_file first (the default
 * certificate), then sni_certs. *out = NULL (and 0) when cert_file is
 * empty: TLS is off. 0, or -1 with why. */
int smtpd_tls_ctx_build(const struct smtpd_tls_conf *c, struct tls_ctx **out,
			char *why, size_t len);

#endif
