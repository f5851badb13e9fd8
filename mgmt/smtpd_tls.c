/*
 * smtpd_tls.c: turns the [tls] keys and the [smtp] per-listener TLS and
 * AUTH port lists into what smtpd.c uses: a checked port list and one
 * server tls_ctx shared by every worker. Start-up only (main thread);
 * reads certificate files, so never on a worker.
 */
#include "mgmt/smtpd_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/parse.h"
#include "tls/tls.h"

int smtpd_ports_parse(const char *list, uint16_t *out, unsigned max,
		      char *why, size_t len)
{
	char buf[256], *tok, *save = NULL;
	unsigned n = 0;
	uint32_t u;

	if (strlen(list) >= sizeof(buf)) {
		snprintf(why, len, "port list too long");
		return -1;
	}
	strcpy(buf, list);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save)) {
		if (parse_u32(tok, 1, 65535, &u) != 0) {
			snprintf(why, len, "'%s' is not a port number "
				 "(1-65535)", tok);
			return -1;
		}
		if (n == max) {
			snprintf(why, len, "more than %u ports", max);
			return -1;
		}
		out[n++] = (uint16_t)u;
	}
	return (int)n;
}

bool smtpd_ports_has(const char *list, uint16_t port)
{
	uint16_t v[SMTPD_MAX_LISTEN];
	char why[64];
	int n = smtpd_ports_parse(list, v, SMTPD_MAX_LISTEN, why, sizeof(why));

	for (int i = 0; i < n; i++)
		if (v[i] == port)
			return true;
	return false;
}

static void trim(char *s)
{
	size_t n = strlen(s), i = 0;

	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	while (s[i] == ' ' || s[i] == '\t')
		i++;
	memmove(s, s + i, n - i + 1);
}

int smtpd_tls_ctx_build(const struct smtpd_tls_conf *c, struct tls_ctx **out,
			char *why, size_t len)
{
	/* the strings live in this buffer while the context is built */
	static char sni[sizeof(c->sni_certs)];
	struct tls_cert_conf certs[TLS_MAX_CERTS];
	struct tls_ctx_conf tc;
	char *tok, *save = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	if (c->cert_file[0] == '\0')
		return 0;
	/* a fresh machine has no certificate yet: run without TLS (the
	 * caller logs it) rather than not at all */
	if (access(c->cert_file, F_OK) != 0 && errno == ENOENT) {
		LOG(LOG_WARNING, "smtpd: [tls] cert_file %s does not exist: "
		    "TLS off (scripts/gen-test-cert makes a test pair)",
		    c->cert_file);
		return 0;
	}
	certs[n].cert_file = c->cert_file;
	certs[n].key_file = c->key_file[0] ? c->key_file : NULL;
	n++;
	snprintf(sni, sizeof(sni), "%s", c->sni_certs);
	for (tok = strtok_r(sni, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon;

		trim(tok);
		if (*tok == '\0')
			continue;
		if (n == TLS_MAX_CERTS) {
			snprintf(why, len, "[tls] sni_certs: more than %d "
				 "certificates", TLS_MAX_CERTS - 1);
			return -1;
		}
		colon = strchr(tok, ':');
		if (colon != NULL)
			*colon = '\0';
		certs[n].cert_file = tok;
		certs[n].key_file = colon && colon[1] ? colon + 1 : NULL;
		n++;
	}
	tls_ctx_conf_defaults(&tc);
	tc.role = TLS_SERVER;
	tc.certs = certs;
	tc.n_certs = n;
	tc.min_version = c->min_version == 1 ? TLS_V1_3 : TLS_V1_2;
	tc.ciphers = c->ciphers[0] ? c->ciphers : NULL;
	tc.ciphersuites = c->ciphersuites[0] ? c->ciphersuites : NULL;
	tc.session_tickets = c->session_tickets;
	/* bounded memory per connection: a handshake needs a few KiB;
	 * an SMTP client has no reason to send 256 KiB unread */
	tc.max_in_buffered = 64u << 10;
	rc = tls_ctx_new(&tc, out, why, len);
	if (rc != 0) {
		*out = NULL;
		return -1;
	}
	return 0;
}

const char *smtpd_conf_check(const struct smtpd_conf *c, char *why,
			     size_t len)
{
	uint16_t v[SMTPD_MAX_LISTEN];
	int n;

	n = smtpd_ports_parse(c->tls_implicit, v, SMTPD_MAX_LISTEN, why, len);
	if (n < 0)
		return "tls_implicit";
	if (n + c->nlisten > SMTPD_MAX_LISTEN) {
		snprintf(why, len, "listen and tls_implicit together name more "
			 "than %d ports", SMTPD_MAX_LISTEN);
		return "tls_implicit";
	}
	for (int i = 0; i < n; i++)
		for (uint32_t k = 0; k < c->nlisten; k++)
			if (c->listen[k] == v[i]) {
				snprintf(why, len, "port %u is also in listen "
					 "(a port is plain or implicit TLS)",
					 v[i]);
				return "tls_implicit";
			}
	if (smtpd_ports_parse(c->tls_required, v, SMTPD_MAX_LISTEN, why,
			      len) < 0)
		return "tls_required";
	if (smtpd_ports_parse(c->auth_required, v, SMTPD_MAX_LISTEN, why,
			      len) < 0)
		return "auth_required";
	return NULL;
}
