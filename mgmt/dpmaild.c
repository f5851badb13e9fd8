/*
 * dpmaild.c: the daemon's command line.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "mgmt/config.h"
#include "mgmt/daemon.h"

#ifndef DPMAIL_SYSCONFDIR
#define DPMAIL_SYSCONFDIR "etc"
#endif

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-c FILE] [--check] [--help] [--version]\n"
		"\n"
		"dpmail's daemon: a mail server on a DPDK userspace stack.\n"
		"\n"
		"  -c, --config FILE  configuration (default %s/dpmail.conf)\n"
		"      --check        load and check the configuration, then exit\n"
		"  -h, --help         this help\n"
		"  -V, --version      print the version\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop it cleanly (exit 0); SIGUSR1\n"
		"prints the counters to stderr. Logs go to [log] output (stderr\n"
		"by default). dpmailctl manages it over [control] socket.\n",
		prog, DPMAIL_SYSCONFDIR);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct dpmail_conf conf;
	const char *path = DPMAIL_SYSCONFDIR "/dpmail.conf";
	char err[1024];
	int check = 0, o;

	while ((o = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		case 'V':
			printf("dpmaild %s\n", DPMAIL_VERSION);
			return 0;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0],
			argv[optind]);
		usage(stderr, argv[0]);
		return 2;
	}
	if (config_load(&conf, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "dpmaild: %s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", path);
		return 0;
	}
	log_set_level(conf.log_level);
	if (log_open((enum log_format)conf.log_format, conf.log_output, err,
		     sizeof(err)) != 0) {
		fprintf(stderr, "dpmaild: [log] output: %s\n", err);
		return 1;
	}
	LOG(LOG_NOTICE, "dpmaild %s starting (config %s)", DPMAIL_VERSION,
	    path);
	return daemon_run(&conf, argv[0]);
}
