/*
 * test_config.c: the config loader (mgmt/config.c): defaults, every kind
 * of bad input refused with file, line and reason, nothing half-applied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "mgmt/config.h"
#include "tcpstack/tcp.h"

static char path[64];

static const char *write_conf(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/dpmail-ut-conf-%d.conf", getpid());
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void cleanup(void)
{
	unlink(path);
}

TestSuite(config, .fini = cleanup);

Test(config, shipped_default_file_loads)
{
	struct dpmail_conf c;
	char err[512];

	cr_assert_eq(config_load(&c, DPMAIL_SRCDIR "/etc/dpmail.conf", err,
				 sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.dp.devargs, "net_tap0,iface=dpm0");
	cr_assert_eq(c.dp.workers, 1);
	cr_assert_eq(c.stack.prefix_len, 24);
	cr_assert_eq(c.smtpd.nlisten, 2);
	cr_assert_eq(c.smtpd.listen[0], 25);
	cr_assert_eq(c.smtpd.listen[1], 587);
	cr_assert_str_eq(c.policy.local_domains, "dpmail.test");
	cr_assert_str_eq(c.spool.dir, "var/spool");
}

Test(config, values_are_applied)
{
	struct dpmail_conf c;
	char err[512];
	const char *p = write_conf(
		"[eal]\nlcores = 0-2\nmemory_mb = 512\n"
		"[net]\naddress = 198.18.5.9/16\ngateway = 198.18.0.1\n"
		"[dataplane]\nworkers = 2\n"
		"[tcp]\nkeepalive = yes\nkeepalive_idle_s = 30\n"
		"congestion_control = newreno\n"
		"[diag]\nconnect = 198.18.0.1:25\nconnect_bytes = 1048576\n"
		"[smtp]\nlisten = 2525\nbare_lf = normalize\nvrfy = disabled\n"
		"max_message_size = 1048576\ncommand_timeout_s = 60\n"
		"[policy]\nrelay_domains = .example.org\n"
		"trusted_networks = 198.18.0.0/15\n"
		"[spool]\nsegment_mb = 8\nbatch_max_kb = 256\nwriters = 2\n"
		"[log]\nlevel = debug\n");

	cr_assert_eq(config_load(&c, p, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.dp.lcores, "0-2");
	cr_assert_eq(c.dp.memory_mb, 512);
	cr_assert_eq(c.stack.prefix_len, 16);
	cr_assert_eq(c.dp.workers, 2);
	cr_assert(c.stack.tcp_keepalive);
	cr_assert_eq(c.stack.tcp_keepalive_idle_ms, 30000);
	cr_assert_eq(c.stack.tcp_cc, TCP_CC_NEWRENO);
	cr_assert_eq(c.diag.connect_port, 25);
	cr_assert_eq(c.diag.connect_bytes, 1048576);
	cr_assert_eq(c.log_level, LOG_DEBUG);
	cr_assert_eq(c.smtpd.nlisten, 1);
	cr_assert_eq(c.smtpd.listen[0], 2525);
	cr_assert_eq(c.smtpd.bare_lf, SMTP_BARE_NORMALIZE);
	cr_assert_eq(c.smtpd.vrfy, SMTP_VRFY_502);
	cr_assert_eq(c.smtpd.max_message_size, 1048576);
	cr_assert_eq(c.smtpd.command_timeout_ms, 60000);
	cr_assert_str_eq(c.policy.relay_domains, ".example.org");
	cr_assert_eq(c.spool.segment_bytes, 8u << 20);
	cr_assert_eq(c.spool.batch_max_bytes, 256u << 10);
	cr_assert_eq(c.spool.writers, 2);
}

struct bad {
	const char *text;
	const char *want; /* substring of the error */
};

Test(config, bad_input_names_file_line_and_reason)
{
	static const struct bad cases[] = {
		{ "[nosuch]\nx = 1\n", ":2: [nosuch]: unknown section" },
		{ "[eal]\nlcores = 0-1\nbogus = 3\n", ":3: [eal] bogus: unknown key" },
		{ "[eal]\nmemory_mb = lots\n", ":2: [eal] memory_mb: 'lots' is not a whole number" },
		{ "[eal]\nmemory_mb = 1\n", ":2: [eal] memory_mb:" },
		{ "[eal]\nhugepages = maybe\n", "is not yes or no" },
		{ "[net]\naddress = 198.18.0.2\n", "with prefix length" },
		{ "[net]\naddress = 198.18.0.0/24\n", "network or broadcast" },
		{ "[net]\naddress = 198.18.0.2/24\ngateway = 10.0.0.1\n",
		  ":3: [net] gateway: the gateway is not inside" },
		{ "[dataplane]\nworkers = 0\n", "[dataplane] workers:" },
		{ "[dataplane]\nmbufs = 700\nmbuf_cache = 512\n", "[dataplane] mbuf_cache:" },
		{ "[tcp]\nrto_min_ms = 5000\nrto_max_ms = 1000\n", "[tcp] rto_min_ms:" },
		{ "[tcp]\ncongestion_control = vegas\n", "not cubic or newreno" },
		{ "[diag]\nconnect = 198.18.0.1\n", "is not IPV4:PORT" },
		{ "[log]\nlevel = loud\n", "[log] level:" },
		{ "[eal]\nthis line has no equals sign\n", ":2: syntax error" },
		{ "[port]\ndevargs =\n", "must not be empty" },
		{ "[smtp]\nlisten = 25, 0\n", ":2: [smtp] listen: '0' is not a port" },
		{ "[smtp]\nlisten = 25 25\n", "port 25 listed twice" },
		{ "[smtp]\nlisten = 1,2,3,4,5,6,7,8,9\n", "more than 8 ports" },
		{ "[smtp]\nbare_lf = strip\n", "'strip' is not one of: reject normalize" },
		{ "[smtp]\nvrfy = yes\n", "[smtp] vrfy:" },
		{ "[smtp]\nmax_recipients = 50\n", "[smtp] max_recipients:" },
		{ "[smtp]\nmax_line = 100\n", "[smtp] max_line:" },
		{ "[smtp]\nlisten = 7\n[diag]\necho_port = 7\n",
		  ":2: [smtp] listen: port 7 is also a [diag] port" },
		{ "[policy]\n\nlocal_domains = ok.test, bad_domain\n",
		  ":3: [policy] local_domains: 'bad_domain' is not a domain" },
		{ "[policy]\ntrusted_networks = 10.0.0.0/8 10.1/8\n",
		  "[policy] trusted_networks: '10.1/8'" },
		{ "[spool]\nring_size = 1000\n", "[spool] ring_size: must be a power of 2" },
		{ "[spool]\nwriters = 0\n", "[spool] writers:" },
		{ "[spool]\nsegment_mb = 1\nbatch_max_kb = 2048\n",
		  "[spool] batch_max_kb: must not exceed segment_mb" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dpmail_conf c;
		char err[512] = "";
		const char *p = write_conf(cases[i].text);

		memset(&c, 0x5a, sizeof(c));
		cr_assert_eq(config_load(&c, p, err, sizeof(err)), -1,
			     "case %zu accepted: %s", i, cases[i].text);
		cr_assert(strstr(err, p) == err, "case %zu: no file name: %s",
			  i, err);
		cr_assert_not_null(strstr(err, cases[i].want),
				   "case %zu: '%s' lacks '%s'", i, err,
				   cases[i].want);
		/* refused whole: the output is untouched */
		cr_assert_eq(((unsigned char *)&c)[0], 0x5a, "case %zu", i);
	}
}

Test(config, missing_file)
{
	struct dpmail_conf c;
	char err[512];

	cr_assert_eq(config_load(&c, "/nonexistent/dpmail.conf", err,
				 sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "cannot open"), "%s", err);
}
