/*
 * config.c: the config key table, value parsing and cross-key checks.
 *
 * inih reads the INI syntax; we feed it through our own line reader so
 * that every key's line number is known, for errors found by the checks
 * that look at several keys together.
 */
#include "mgmt/config.h"

#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/parse.h"
#include "tcpstack/tcp.h"

enum key_type {
	K_STR,      /* char[size] */
	K_U32,
	K_U16,
	K_BOOL,
	K_SEC_MS,   /* seconds in the file, milliseconds in the struct */
	K_LOGLEVEL, /* enum log_level */
	K_EAL_LOGLEVEL,
	K_PREFIX,   /* a.b.c.d/len -> stack.addr + stack.prefix_len */
	K_IPV4_OPT, /* a.b.c.d or empty (0) */
	K_U64,
	K_CC,       /* cubic | newreno -> enum tcp_cc */
	K_HOSTPORT, /* a.b.c.d:port -> diag.connect_ip + connect_port */
	K_ENUM,     /* one of names[] -> uint32_t index */
	K_PORTS,    /* "25, 587" -> smtpd.listen[] + nlisten */
	K_LIST,     /* char[size], may be empty; checked in check() */
	K_MIB64,    /* MiB in the file, bytes (uint64_t) in the struct */
	K_KIB32,    /* KiB in the file, bytes (uint32_t) in the struct */
	K_LISTEN,   /* char[size]: "a.b.c.d:port", or "off"/empty -> "" */
};

struct key {
	const char *section;
	const char *name;
	enum key_type type;
	size_t off;  /* in struct dpmail_conf */
	size_t size; /* K_STR */
	uint64_t min, max;
	const char *const *names; /* K_ENUM, NULL-terminated */
};

#define DP(f) offsetof(struct dpmail_conf, dp.f), sizeof(((struct dp_conf *)0)->f)
#define ST(f) offsetof(struct dpmail_conf, stack.f), 0
#define DG(f) offsetof(struct dpmail_conf, diag.f), 0
#define SM(f) offsetof(struct dpmail_conf, smtpd.f), sizeof(((struct smtpd_conf *)0)->f)
#define SP(f) offsetof(struct dpmail_conf, spool.f), sizeof(((struct spool_conf *)0)->f)
#define RT(f) offsetof(struct dpmail_conf, route.f), sizeof(((struct mta_route_conf *)0)->f)
#define QM(f) offsetof(struct dpmail_conf, qmgr.f), sizeof(((struct mta_qmgr_conf *)0)->f)
#define OU(f) offsetof(struct dpmail_conf, out.f), sizeof(((struct mta_out_conf *)0)->f)
#define TOP(f) offsetof(struct dpmail_conf, f), sizeof(((struct dpmail_conf *)0)->f)
#define PO(f) offsetof(struct dpmail_conf, policy.f), sizeof(((struct mta_policy_conf *)0)->f)

static const char *const bare_names[] = { "reject", "normalize", NULL };
static const char *const log_format_names[] = { "text", "json", NULL };
static const char *const vrfy_names[] = { "252", "disabled", NULL };
static const char *const tls_version_names[] = { "1.2", "1.3", NULL };
static const char *const auth_plain_names[] = { "no", "trusted", "yes", NULL };
static const char *const mta_tls_names[] = { "none", "may", "encrypt", "verify", NULL };

static const struct key keys[] = {
	{ "eal", "lcores", K_STR, DP(lcores), 0, 0, NULL },
	{ "eal", "hugepages", K_BOOL, DP(hugepages), 0, 0, NULL },
	{ "eal", "memory_mb", K_U32, DP(memory_mb), 64, 1u << 20, NULL },
	{ "eal", "file_prefix", K_STR, DP(file_prefix), 0, 0, NULL },
	{ "eal", "log_level", K_EAL_LOGLEVEL, DP(eal_log_level), 0, 0, NULL },
	{ "port", "devargs", K_STR, DP(devargs), 0, 0, NULL },
	{ "port", "rx_desc", K_U16, DP(rx_desc), 64, 16384, NULL },
	{ "port", "tx_desc", K_U16, DP(tx_desc), 64, 16384, NULL },
	{ "port", "mtu", K_U16, DP(mtu), 576, 9000, NULL },
	{ "net", "address", K_PREFIX, ST(addr), 0, 0, NULL },
	{ "net", "gateway", K_IPV4_OPT, ST(gateway), 0, 0, NULL },
	{ "dataplane", "workers", K_U32, DP(workers), 1, DP_MAX_WORKERS, NULL },
	{ "dataplane", "mbufs", K_U32, DP(mbufs), 511, 1u << 24, NULL },
	{ "dataplane", "mbuf_cache", K_U32, DP(mbuf_cache), 0, 512, NULL },
	{ "dataplane", "burst", K_U32, DP(burst), 1, DP_MAX_BURST, NULL },
	{ "dataplane", "idle_spin_polls", K_U32, DP(idle_spin_polls), 0, 1u << 30, NULL },
	{ "dataplane", "idle_pause_polls", K_U32, DP(idle_pause_polls), 0, 1u << 30, NULL },
	{ "dataplane", "idle_sleep_max_us", K_U32, DP(idle_sleep_max_us), 16, 100000, NULL },
	{ "stack", "arp_entries", K_U32, ST(arp_entries), 16, 1u << 20, NULL },
	{ "stack", "arp_timeout_s", K_SEC_MS, ST(arp_timeout_ms), 1, 86400, NULL },
	{ "stack", "arp_retry_ms", K_U32, ST(arp_retry_ms), 10, 60000, NULL },
	{ "stack", "arp_retries", K_U32, ST(arp_retries), 1, 20, NULL },
	{ "stack", "arp_hold", K_U32, ST(arp_hold), 0, ARP_HOLD_MAX, NULL },
	{ "stack", "icmp_rate", K_U32, ST(icmp_rate), 0, 1000000, NULL },
	{ "stack", "icmp_burst", K_U32, ST(icmp_burst), 1, 1000000, NULL },
	{ "tcp", "max_conns", K_U32, ST(tcp_max_conns), 16, 1u << 24, NULL },
	{ "tcp", "sndbuf", K_U32, ST(tcp_sndbuf), 4096, 64u << 20, NULL },
	{ "tcp", "rcvbuf", K_U32, ST(tcp_rcvbuf), 4096, 64u << 20, NULL },
	{ "tcp", "syn_backlog", K_U32, ST(tcp_syn_backlog), 1, 1u << 20, NULL },
	{ "tcp", "msl_ms", K_U32, ST(tcp_msl_ms), 100, 120000, NULL },
	{ "tcp", "rto_min_ms", K_U32, ST(tcp_rto_min_ms), 10, 10000, NULL },
	{ "tcp", "rto_max_ms", K_U32, ST(tcp_rto_max_ms), 1000, 600000, NULL },
	{ "tcp", "rto_init_ms", K_U32, ST(tcp_rto_init_ms), 100, 60000, NULL },
	{ "tcp", "retries", K_U32, ST(tcp_retries), 1, 30, NULL },
	{ "tcp", "syn_retries", K_U32, ST(tcp_syn_retries), 1, 20, NULL },
	{ "tcp", "delack_ms", K_U32, ST(tcp_delack_ms), 1, 500, NULL },
	{ "tcp", "fin_timeout_ms", K_U32, ST(tcp_fin_timeout_ms), 1000, 600000, NULL },
	{ "tcp", "timestamps", K_BOOL, ST(tcp_timestamps), 0, 0, NULL },
	{ "tcp", "sack", K_BOOL, ST(tcp_sack), 0, 0, NULL },
	{ "tcp", "window_scaling", K_BOOL, ST(tcp_wscale), 0, 0, NULL },
	{ "tcp", "congestion_control", K_CC, ST(tcp_cc), 0, 0, NULL },
	{ "tcp", "keepalive", K_BOOL, ST(tcp_keepalive), 0, 0, NULL },
	{ "tcp", "keepalive_idle_s", K_SEC_MS, ST(tcp_keepalive_idle_ms), 1, 86400, NULL },
	{ "tcp", "keepalive_intvl_s", K_SEC_MS, ST(tcp_keepalive_intvl_ms), 1, 3600, NULL },
	{ "tcp", "keepalive_probes", K_U32, ST(tcp_keepalive_probes), 1, 100, NULL },
	{ "tcp", "max_timewait", K_U32, ST(tcp_max_timewait), 0, 1u << 24, NULL },
	{ "tcp", "sndbuf_pool_pct", K_U32, ST(tcp_sndbuf_pool_pct), 1, 90, NULL },
	{ "tcp", "challenge_ack_limit", K_U32, ST(tcp_challenge_ack_limit), 1, 1000000, NULL },
	{ "diag", "echo_port", K_U16, DG(echo_port), 0, 65535, NULL },
	{ "diag", "discard_port", K_U16, DG(discard_port), 0, 65535, NULL },
	{ "diag", "chargen_port", K_U16, DG(chargen_port), 0, 65535, NULL },
	{ "diag", "udp_echo_port", K_U16, DG(udp_echo_port), 0, 65535, NULL },
	{ "diag", "connect", K_HOSTPORT, DG(connect_ip), 0, 0, NULL },
	{ "diag", "connect_per_worker", K_U32, DG(connect_per_worker), 1, 10000, NULL },
	{ "diag", "connect_bytes", K_U64, DG(connect_bytes), 0, 1ULL << 40, NULL },
	{ "diag", "connect_delay_ms", K_U32, DG(connect_delay_ms), 0, 3600000, NULL },
	{ "fault", "rx_loss_ppm", K_U32, DP(fault.rx_loss_ppm), 0, 1000000, NULL },
	{ "fault", "rx_corrupt_ppm", K_U32, DP(fault.rx_corrupt_ppm), 0, 1000000, NULL },
	{ "fault", "rx_duplicate_ppm", K_U32, DP(fault.rx_duplicate_ppm), 0, 1000000, NULL },
	{ "fault", "rx_reorder_ppm", K_U32, DP(fault.rx_reorder_ppm), 0, 1000000, NULL },
	{ "fault", "tx_loss_ppm", K_U32, DP(fault.tx_loss_ppm), 0, 1000000, NULL },
	{ "fault", "tx_corrupt_ppm", K_U32, DP(fault.tx_corrupt_ppm), 0, 1000000, NULL },
	{ "fault", "tx_duplicate_ppm", K_U32, DP(fault.tx_duplicate_ppm), 0, 1000000, NULL },
	{ "fault", "seed", K_U64, DP(fault.seed), 0, UINT64_MAX, NULL },
	{ "smtp", "hostname", K_STR, SM(hostname), 0, 0, NULL },
	{ "smtp", "listen", K_PORTS, SM(listen), 0, 0, NULL },
	{ "smtp", "max_message_size", K_U64, SM(max_message_size), 1024, 1ULL << 36, NULL },
	{ "smtp", "max_recipients", K_U32, SM(max_recipients), 100, 100000, NULL },
	{ "smtp", "max_errors", K_U32, SM(max_errors), 1, 1000, NULL },
	{ "smtp", "max_line", K_U32, SM(max_line), 512, 65536, NULL },
	{ "smtp", "max_text_line", K_U32, SM(max_text_line), 1000, 1u << 20, NULL },
	{ "smtp", "max_received", K_U32, SM(max_received), 0, 1000, NULL },
	{ "smtp", "bare_lf", K_ENUM, SM(bare_lf), 0, 0, bare_names },
	{ "smtp", "vrfy", K_ENUM, SM(vrfy), 0, 0, vrfy_names },
	{ "smtp", "command_timeout_s", K_SEC_MS, SM(command_timeout_ms), 1, 86400, NULL },
	{ "smtp", "data_timeout_s", K_SEC_MS, SM(data_timeout_ms), 1, 86400, NULL },
	{ "smtp", "min_data_rate", K_U32, SM(min_data_rate), 0, 1u << 30, NULL },
	{ "smtp", "data_rate_grace_s", K_SEC_MS, SM(data_rate_grace_ms), 1, 3600, NULL },
	{ "smtp", "max_conns", K_U32, SM(max_conns), 1, 1u << 24, NULL },
	{ "smtp", "max_conns_per_client", K_U32, SM(max_conns_per_client), 1, 1u << 24, NULL },
	{ "smtp", "tls_implicit", K_LIST, SM(tls_implicit), 0, 0, NULL },
	{ "smtp", "tls_required", K_LIST, SM(tls_required), 0, 0, NULL },
	{ "smtp", "auth_required", K_LIST, SM(auth_required), 0, 0, NULL },
	{ "tls", "cert_file", K_LIST, SM(tls.cert_file), 0, 0, NULL },
	{ "tls", "key_file", K_LIST, SM(tls.key_file), 0, 0, NULL },
	{ "tls", "sni_certs", K_LIST, SM(tls.sni_certs), 0, 0, NULL },
	{ "tls", "min_version", K_ENUM, SM(tls.min_version), 0, 0, tls_version_names },
	{ "tls", "ciphers", K_LIST, SM(tls.ciphers), 0, 0, NULL },
	{ "tls", "ciphersuites", K_LIST, SM(tls.ciphersuites), 0, 0, NULL },
	{ "tls", "session_tickets", K_BOOL, SM(tls.session_tickets), 0, 0, NULL },
	{ "auth", "users_file", K_LIST, SM(auth.users_file), 0, 0, NULL },
	{ "auth", "plaintext", K_ENUM, SM(auth.plaintext), 0, 0, auth_plain_names },
	{ "auth", "fail_delay_ms", K_U32, SM(auth.fail_delay_ms), 0, 60000, NULL },
	{ "auth", "max_failures", K_U32, SM(auth.max_failures), 1, 1000, NULL },
	{ "auth", "client_max_failures", K_U32, SM(auth.client_max_failures), 1, 1000000, NULL },
	{ "auth", "client_window_s", K_SEC_MS, SM(auth.client_window_ms), 1, 86400, NULL },
	{ "auth", "sender_login_match", K_BOOL, SM(auth.sender_login_match), 0, 0, NULL },
	{ "policy", "local_domains", K_LIST, PO(local_domains), 0, 0, NULL },
	{ "policy", "relay_domains", K_LIST, PO(relay_domains), 0, 0, NULL },
	{ "policy", "trusted_networks", K_LIST, PO(trusted_networks), 0, 0, NULL },
	{ "policy", "users_file", K_LIST, PO(users_file), 0, 0, NULL },
	{ "spool", "dir", K_STR, SP(dir), 0, 0, NULL },
	{ "spool", "writers", K_U32, SP(writers), 1, SPOOL_MAX_WRITERS, NULL },
	{ "spool", "segment_mb", K_MIB64, SP(segment_bytes), 1, 65536, NULL },
	{ "spool", "batch_max_kb", K_KIB32, SP(batch_max_bytes), 4, 1u << 20, NULL },
	{ "spool", "batch_max_delay_us", K_U32, SP(batch_max_delay_us), 0, 1000000, NULL },
	{ "spool", "ring_size", K_U32, SP(ring_size), 64, 1u << 20, NULL },
	{ "spool", "retry_ms", K_U32, SP(retry_ms), 10, 600000, NULL },
	{ "spool", "preallocate", K_BOOL, SP(preallocate), 0, 0, NULL },
	{ "mta", "resolvers", K_LIST, TOP(mta_resolvers), 0, 0, NULL },
	{ "mta", "relayhost", K_LIST, RT(relayhost), 0, 0, NULL },
	{ "mta", "transport_file", K_LIST, RT(transport_file), 0, 0, NULL },
	{ "mta", "aliases_file", K_LIST, RT(aliases_file), 0, 0, NULL },
	{ "mta", "recipient_delimiter", K_LIST, RT(recipient_delimiter), 0, 0, NULL },
	{ "mta", "max_expansion", K_U32, RT(max_expansion), 1, 100000, NULL },
	{ "mta", "helo_name", K_LIST, TOP(mta_helo), 0, 0, NULL },
	{ "mta", "dest_concurrency", K_U32, QM(dest_concurrency), 1, 10000, NULL },
	{ "mta", "dest_msgs_per_conn", K_U32, QM(dest_msgs_per_conn), 1, 100000, NULL },
	{ "mta", "dest_rate", K_U32, QM(dest_rate), 0, 1000000, NULL },
	{ "mta", "dest_backoff_s", K_U32, QM(dest_backoff_s), 1, 86400, NULL },
	{ "mta", "retry_first_s", K_U32, QM(retry.first_s), 1, 604800, NULL },
	{ "mta", "retry_max_s", K_U32, QM(retry.max_interval_s), 1, 604800, NULL },
	{ "mta", "queue_lifetime_s", K_U32, QM(retry.lifetime_s), 1, 31536000, NULL },
	{ "mta", "delay_warning_s", K_U32, QM(delay_warning_s), 0, 31536000, NULL },
	{ "mta", "double_bounce_to", K_LIST, QM(double_bounce_to), 0, 0, NULL },
	{ "mta", "hold", K_BOOL, QM(hold), 0, 0, NULL },
	{ "mta", "local_batch", K_U32, QM(local_batch), 1, 65536, NULL },
	{ "mta", "queue_memory_mb", K_U32, QM(memory_mb), 1, 1048576, NULL },
	{ "mta", "connect_timeout_s", K_SEC_MS, OU(connect_timeout_ms), 1, 600, NULL },
	{ "mta", "conn_cache_ms", K_U32, OU(conn_cache_ms), 0, 600000, NULL },
	{ "mta", "dns_timeout_ms", K_U32, OU(dns_timeout_ms), 10, 60000, NULL },
	{ "mta", "dns_retries", K_U32, OU(dns_retries), 0, 10, NULL },
	{ "mta", "max_conns", K_U32, OU(max_conns), 1, 1u << 20, NULL },
	{ "mta", "tls_policy", K_ENUM, OU(tls_policy), 0, 0, mta_tls_names },
	{ "mta", "tls_ca_file", K_LIST, OU(tls_ca_file), 0, 0, NULL },
	{ "mta", "tls_policy_map", K_LIST, OU(tls_policy_map), 0, 0, NULL },
	{ "mailbox", "dir", K_STR, QM(mailbox.dir), 0, 0, NULL },
	{ "mailbox", "quota_bytes", K_U64, QM(mailbox.quota_bytes), 0, UINT64_MAX, NULL },
	{ "mailbox", "quota_messages", K_U32, QM(mailbox.quota_messages), 0, UINT32_MAX, NULL },
	{ "mailbox", "fsync", K_BOOL, QM(mailbox.fsync), 0, 0, NULL },
	{ "log", "level", K_LOGLEVEL, offsetof(struct dpmail_conf, log_level), 0, 0, 0, NULL },
	{ "log", "format", K_ENUM, TOP(log_format), 0, 0, log_format_names },
	{ "log", "output", K_STR, TOP(log_output), 0, 0, NULL },
	{ "control", "socket", K_STR, TOP(ctl_socket), 0, 0, NULL },
	{ "metrics", "listen", K_LISTEN, TOP(metrics_listen), 0, 0, NULL },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

struct load_state {
	struct dpmail_conf *c;
	FILE *f;
	int line;
	int key_line[NKEYS];
	int err_line;
	char err[512];
};

static char *read_line(char *str, int num, void *stream)
{
	struct load_state *st = stream;
	char *r = fgets(str, num, st->f);

	if (r != NULL)
		st->line++;
	return r;
}

static const char *const eal_levels[] = {
	"emerg", "alert", "crit", "err", "error", "warning", "notice",
	"info", "debug",
};

static void not_a_number(char *why, size_t whylen, const char *v,
			 const struct key *k)
{
	snprintf(why, whylen, "'%s' is not a whole number from %llu to %llu",
		 v, (unsigned long long)k->min, (unsigned long long)k->max);
}

static int set_value(struct dpmail_conf *c, const struct key *k,
		     const char *v, char *why, size_t whylen)
{
	char *p = (char *)c + k->off;
	uint32_t u32;
	bool b;
	int rc = 0;

	switch (k->type) {
	case K_STR:
		if (strlen(v) >= k->size) {
			snprintf(why, whylen, "longer than %zu characters",
				 k->size - 1);
			return -1;
		}
		if (*v == '\0') {
			snprintf(why, whylen, "must not be empty");
			return -1;
		}
		strcpy(p, v);
		return 0;
	case K_U32:
	case K_U16:
	case K_SEC_MS:
		rc = parse_u32(v, (uint32_t)k->min, (uint32_t)k->max, &u32);
		if (rc != 0) {
			not_a_number(why, whylen, v, k);
			return -1;
		}
		if (k->type == K_U16)
			*(uint16_t *)p = (uint16_t)u32;
		else if (k->type == K_SEC_MS)
			*(uint32_t *)p = u32 * 1000;
		else
			*(uint32_t *)p = u32;
		return 0;
	case K_CC:
		if (strcmp(v, "cubic") == 0)
			*(uint8_t *)p = TCP_CC_CUBIC;
		else if (strcmp(v, "newreno") == 0)
			*(uint8_t *)p = TCP_CC_NEWRENO;
		else {
			snprintf(why, whylen, "'%s' is not cubic or newreno", v);
			return -1;
		}
		return 0;
	case K_U64: {
		uint64_t u64;
		if (parse_u64(v, k->min, k->max, &u64) != 0) {
			not_a_number(why, whylen, v, k);
			return -1;
		}
		*(uint64_t *)p = u64;
		return 0;
	}
	case K_HOSTPORT: {
		char host[32];
		const char *colon = strrchr(v, ':');
		uint32_t port;
		if (*v == '\0') {
			c->diag.connect_ip = 0;
			return 0;
		}
		if (colon == NULL || (size_t)(colon - v) >= sizeof(host) ||
		    parse_u32(colon + 1, 1, 65535, &port) != 0) {
			snprintf(why, whylen, "'%s' is not IPV4:PORT", v);
			return -1;
		}
		memcpy(host, v, (size_t)(colon - v));
		host[colon - v] = '\0';
		if (parse_ipv4(host, &c->diag.connect_ip) != 0) {
			snprintf(why, whylen, "'%s' is not IPV4:PORT", v);
			return -1;
		}
		c->diag.connect_port = (uint16_t)port;
		return 0;
	}
	case K_BOOL:
		if (parse_bool(v, &b) != 0) {
			snprintf(why, whylen, "'%s' is not yes or no", v);
			return -1;
		}
		*(bool *)p = b;
		return 0;
	case K_LOGLEVEL:
		rc = log_level_parse(v);
		if (rc < 0) {
			snprintf(why, whylen, "'%s' is not one of error, "
				 "warning, notice, info, debug", v);
			return -1;
		}
		*(enum log_level *)p = (enum log_level)rc;
		return 0;
	case K_EAL_LOGLEVEL:
		for (size_t i = 0; i < sizeof(eal_levels) / sizeof(*eal_levels); i++)
			if (strcmp(v, eal_levels[i]) == 0) {
				snprintf(p, k->size, "%s", v);
				return 0;
			}
		snprintf(why, whylen, "'%s' is not a DPDK log level (emerg "
			 "alert crit err warning notice info debug)", v);
		return -1;
	case K_PREFIX:
		if (parse_ipv4_prefix(v, &c->stack.addr,
				      &c->stack.prefix_len) != 0) {
			snprintf(why, whylen, "'%s' is not an IPv4 address "
				 "with prefix length, like 198.18.0.2/24", v);
			return -1;
		}
		return 0;
	case K_ENUM:
		for (uint32_t i = 0; k->names[i] != NULL; i++)
			if (strcmp(v, k->names[i]) == 0) {
				*(uint32_t *)p = i;
				return 0;
			}
		snprintf(why, whylen, "'%s' is not one of:", v);
		for (uint32_t i = 0; k->names[i] != NULL; i++) {
			size_t l = strlen(why);
			snprintf(why + l, whylen - l, " %s", k->names[i]);
		}
		return -1;
	case K_LISTEN: {
		uint32_t ip, port;
		char host[16];
		const char *colon = strrchr(v, ':');
		if (v[0] == '\0' || strcmp(v, "off") == 0) {
			*(char *)p = '\0';
			return 0;
		}
		if (colon == NULL || (size_t)(colon - v) >= sizeof(host) ||
		    parse_u32(colon + 1, 1, 65535, &port) != 0 ||
		    strlen(v) >= k->size) {
			snprintf(why, whylen, "'%s' is not IPV4:PORT or off", v);
			return -1;
		}
		memcpy(host, v, (size_t)(colon - v));
		host[colon - v] = '\0';
		if (parse_ipv4(host, &ip) != 0) {
			snprintf(why, whylen, "'%s' is not IPV4:PORT or off", v);
			return -1;
		}
		snprintf(p, k->size, "%s", v);
		return 0;
	}
	case K_LIST:
		if (strlen(v) >= k->size) {
			snprintf(why, whylen, "longer than %zu characters",
				 k->size - 1);
			return -1;
		}
		strcpy(p, v);
		return 0;
	case K_MIB64:
	case K_KIB32:
		rc = parse_u32(v, (uint32_t)k->min, (uint32_t)k->max, &u32);
		if (rc != 0) {
			not_a_number(why, whylen, v, k);
			return -1;
		}
		if (k->type == K_MIB64)
			*(uint64_t *)p = (uint64_t)u32 << 20;
		else
			*(uint32_t *)p = u32 << 10;
		return 0;
	case K_PORTS: {
		struct smtpd_conf *sc = &c->smtpd;
		char buf[256], *tok, *save = NULL;
		uint32_t n = 0;

		if (strlen(v) >= sizeof(buf)) {
			snprintf(why, whylen, "too long");
			return -1;
		}
		strcpy(buf, v);
		for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
		     tok = strtok_r(NULL, ", \t", &save)) {
			if (n == SMTPD_MAX_LISTEN) {
				snprintf(why, whylen, "more than %d ports",
					 SMTPD_MAX_LISTEN);
				return -1;
			}
			if (parse_u32(tok, 1, 65535, &u32) != 0) {
				snprintf(why, whylen, "'%s' is not a port "
					 "number (1-65535)", tok);
				return -1;
			}
			for (uint32_t i = 0; i < n; i++)
				if (sc->listen[i] == u32) {
					snprintf(why, whylen, "port %u listed "
						 "twice", u32);
					return -1;
				}
			sc->listen[n++] = (uint16_t)u32;
		}
		sc->nlisten = n;
		return 0;
	}
	case K_IPV4_OPT:
		if (*v == '\0') {
			*(uint32_t *)p = 0;
			return 0;
		}
		if (parse_ipv4(v, (uint32_t *)p) != 0) {
			snprintf(why, whylen, "'%s' is not an IPv4 address", v);
			return -1;
		}
		return 0;
	}
	return -1;
}

static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct load_state *st = user;
	bool section_known = false;
	char why[256];

	if (st->err_line != 0)
		return 1; /* report only the first error */
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		section_known = true;
		if (strcmp(keys[i].name, name) != 0)
			continue;
		if (set_value(st->c, &keys[i], value, why, sizeof(why)) != 0) {
			st->err_line = st->line;
			snprintf(st->err, sizeof(st->err), "[%s] %s: %s",
				 section, name, why);
			return 0;
		}
		st->key_line[i] = st->line;
		return 1;
	}
	st->err_line = st->line;
	if (section_known)
		snprintf(st->err, sizeof(st->err), "[%s] %s: unknown key",
			 section, name);
	else
		snprintf(st->err, sizeof(st->err), "[%s]: unknown section",
			 section);
	return 0;
}

static int key_line(const struct load_state *st, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return st->key_line[i];
	return 0;
}

int config_resolvers(const char *list, struct mta_out_conf *out, char *why,
		     size_t len)
{
	char buf[256], *tok, *save = NULL;
	unsigned n = 0;

	if (strlen(list) >= sizeof(buf)) {
		snprintf(why, len, "too long");
		return -1;
	}
	strcpy(buf, list);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save)) {
		char *colon = strchr(tok, ':');
		uint32_t ip, port = 53;

		if (n == MTA_DNS_RESOLVERS_MAX) {
			snprintf(why, len, "more than %d resolvers",
				 MTA_DNS_RESOLVERS_MAX);
			return -1;
		}
		if (colon != NULL) {
			*colon = '\0';
			if (parse_u32(colon + 1, 1, 65535, &port) != 0) {
				snprintf(why, len, "'%s' is not a port", colon + 1);
				return -1;
			}
		}
		if (parse_ipv4(tok, &ip) != 0) {
			snprintf(why, len, "'%s' is not an IPv4 address "
				 "(optionally :port)", tok);
			return -1;
		}
		if (out != NULL) {
			out->resolvers[n].ip = ip;
			out->resolvers[n].port = (uint16_t)port;
		}
		n++;
	}
	if (out != NULL)
		out->n_resolvers = n;
	return 0;
}

/* Checks that involve several keys; returns the offending key or NULL. */
static const char *check(const struct dpmail_conf *c, char *why, size_t len)
{
	const struct stack_conf *s = &c->stack;
	uint32_t mask = s->prefix_len ? ~0u << (32 - s->prefix_len) : 0;
	uint32_t a = __builtin_bswap32(s->addr);

	if (s->prefix_len < 31 && ((a & ~mask) == 0 || (a & ~mask) == ~mask)) {
		snprintf(why, len, "the address is the network or broadcast "
			 "address of its prefix");
		return "address";
	}
	if ((a >> 24) == 0 || (a >> 24) == 127 || (a >> 28) >= 0xe) {
		snprintf(why, len, "not a usable unicast address");
		return "address";
	}
	if (s->gateway != 0 &&
	    ((__builtin_bswap32(s->gateway) ^ a) & mask) != 0) {
		snprintf(why, len, "the gateway is not inside the address's "
			 "prefix");
		return "gateway";
	}
	if (c->stack.tcp_rto_min_ms > c->stack.tcp_rto_max_ms) {
		snprintf(why, len, "must not exceed rto_max_ms");
		return "rto_min_ms";
	}
	if (c->dp.idle_sleep_max_us < 16) {
		snprintf(why, len, "must be at least 16");
		return "idle_sleep_max_us";
	}
	{
		const char *k = smtpd_conf_check(&c->smtpd, why, len);
		if (k != NULL)
			return k;
	}
	if ((c->spool.ring_size & (c->spool.ring_size - 1)) != 0) {
		snprintf(why, len, "must be a power of 2");
		return "ring_size";
	}
	if (c->smtpd.nlisten > 0 && (c->diag.echo_port != 0 ||
	    c->diag.discard_port != 0 || c->diag.chargen_port != 0)) {
		for (uint32_t i = 0; i < c->smtpd.nlisten; i++) {
			uint16_t p = c->smtpd.listen[i];
			if (p == c->diag.echo_port || p == c->diag.discard_port ||
			    p == c->diag.chargen_port) {
				snprintf(why, len, "port %u is also a [diag] "
					 "port", p);
				return "listen";
			}
		}
	}
	{
		/* each list alone, so the error names its key */
		static const struct { const char *key; size_t off; } lists[] = {
			{ "local_domains",
			  offsetof(struct mta_policy_conf, local_domains) },
			{ "relay_domains",
			  offsetof(struct mta_policy_conf, relay_domains) },
			{ "trusted_networks",
			  offsetof(struct mta_policy_conf, trusted_networks) },
		};
		static struct mta_policy_conf one;
		for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++) {
			memset(&one, 0, sizeof(one));
			memcpy((char *)&one + lists[i].off,
			       (const char *)&c->policy + lists[i].off,
			       MTA_POLICY_LIST_MAX);
			if (mta_policy_check_lists(&one, why, len) != 0)
				return lists[i].key;
		}
	}
	if (c->qmgr.retry.first_s > c->qmgr.retry.max_interval_s) {
		snprintf(why, len, "must not exceed retry_max_s");
		return "retry_first_s";
	}
	if (config_resolvers(c->mta_resolvers, NULL, why, len) != 0)
		return "resolvers";
	if (c->spool.batch_max_bytes > c->spool.segment_bytes) {
		snprintf(why, len, "must not exceed segment_mb");
		return "batch_max_kb";
	}
	if ((uint64_t)c->dp.mbuf_cache * 3 > (uint64_t)c->dp.mbufs * 2) {
		snprintf(why, len, "must be at most mbufs / 1.5 (a DPDK limit)");
		return "mbuf_cache";
	}
	return NULL;
}

void config_defaults(struct dpmail_conf *c)
{
	memset(c, 0, sizeof(*c));
	dp_conf_defaults(&c->dp);
	stack_conf_defaults(&c->stack);
	smtpd_conf_defaults(&c->smtpd);
	spool_conf_defaults(&c->spool);
	snprintf(c->policy.local_domains, sizeof(c->policy.local_domains),
		 "dpmail.test");
	snprintf(c->policy.users_file, sizeof(c->policy.users_file),
		 "etc/users");
	mta_route_conf_defaults(&c->route);
	mta_qmgr_conf_defaults(&c->qmgr);
	snprintf(c->qmgr.mailbox.dir, sizeof(c->qmgr.mailbox.dir), "var/mail");
	mta_out_conf_defaults(&c->out);
	c->diag.connect_per_worker = 1;
	c->diag.connect_delay_ms = 1000;
	c->log_level = LOG_INFO;
	snprintf(c->ctl_socket, sizeof(c->ctl_socket), "var/run/dpmail.sock");
	snprintf(c->log_output, sizeof(c->log_output), "stderr");
	snprintf(c->metrics_listen, sizeof(c->metrics_listen),
		 "127.0.0.1:9187");
	config_finish(c);
}

int config_load(struct dpmail_conf *c, const char *path, char *err,
		size_t errlen)
{
	struct dpmail_conf tmp;
	struct load_state st;
	const char *bad;
	char why[256];
	int rc;

	config_defaults(&tmp);
	snprintf(tmp.path, sizeof(tmp.path), "%s", path);
	memset(&st, 0, sizeof(st));
	st.c = &tmp;
	st.f = fopen(path, "r");
	if (st.f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 strerror(errno));
		return -1;
	}
	rc = ini_parse_stream(read_line, &st, on_key, &st);
	fclose(st.f);
	if (st.err_line != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, st.err_line, st.err);
		return -1;
	}
	if (rc != 0) {
		/* inih's own syntax error (no '=' , unclosed '[') */
		snprintf(err, errlen, "%s:%d: syntax error: expected "
			 "'[section]' or 'key = value'", path, rc);
		return -1;
	}
	bad = check(&tmp, why, sizeof(why));
	if (bad != NULL) {
		int line = key_line(&st, bad);
		const char *sect = "";
		for (size_t i = 0; i < NKEYS; i++)
			if (strcmp(keys[i].name, bad) == 0 && sect[0] == '\0')
				sect = keys[i].section; /* the first, as key_line */
		if (line > 0)
			snprintf(err, errlen, "%s:%d: [%s] %s: %s", path, line,
				 sect, bad, why);
		else
			snprintf(err, errlen, "%s: [%s] %s: %s", path, sect, bad,
				 why);
		return -1;
	}
	*c = tmp;
	config_finish(c);
	return 0;
}

void config_finish(struct dpmail_conf *c)
{
	char why[128];

	/* one list of local domains and users for policy and routing */
	memcpy(c->route.local_domains, c->policy.local_domains,
	       sizeof(c->route.local_domains));
	memcpy(c->route.users_file, c->policy.users_file,
	       sizeof(c->route.users_file));
	snprintf(c->qmgr.hostname, sizeof(c->qmgr.hostname), "%s",
		 c->smtpd.hostname);
	snprintf(c->qmgr.spool_dir, sizeof(c->qmgr.spool_dir), "%s",
		 c->spool.dir);
	c->qmgr.max_received = c->smtpd.max_received;
	if (c->qmgr.double_bounce_to[0] == '\0') {
		char first[256] = "";
		sscanf(c->policy.local_domains, " %255[^, \t]", first);
		if (first[0] != '\0')
			snprintf(c->qmgr.double_bounce_to,
				 sizeof(c->qmgr.double_bounce_to),
				 "postmaster@%s", first);
	}
	if (strcmp(c->qmgr.double_bounce_to, "none") == 0)
		c->qmgr.double_bounce_to[0] = '\0';
	(void)config_resolvers(c->mta_resolvers, &c->out, why, sizeof(why));
	c->out.helo_name = c->mta_helo[0] ? c->mta_helo : c->smtpd.hostname;
}
