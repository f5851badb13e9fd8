/*
 * dpmailctl.c: the operator's command line.
 *
 * Verbs that need the running daemon arrive with the control socket; what
 * works without it (checking a config file) is here now.
 */
#include <stdio.h>
#include <string.h>

#include "mgmt/config.h"

#ifndef DPMAIL_SYSCONFDIR
#define DPMAIL_SYSCONFDIR "etc"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: dpmailctl [--help] [--version] VERB ...\n"
		"\n"
		"Verbs:\n"
		"  config check [FILE]   check a configuration file (default\n"
		"                        %s/dpmail.conf); prints 'FILE: ok'\n"
		"                        or 'FILE:LINE: [section] key: reason'\n"
		"\n"
		"Exit codes: 0 success, 1 the check failed, 2 usage error.\n",
		DPMAIL_SYSCONFDIR);
}

static int config_check(int argc, char **argv)
{
	static struct dpmail_conf conf;
	const char *path = DPMAIL_SYSCONFDIR "/dpmail.conf";
	char err[1024];

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 ||
			 strcmp(argv[1], "-h") == 0)) {
		printf("Usage: dpmailctl config check [FILE]\n"
		       "Loads FILE as dpmaild would and reports the first "
		       "error with its line.\n");
		return 0;
	}
	if (argc > 2) {
		fprintf(stderr, "dpmailctl: config check takes one file\n");
		return 2;
	}
	if (argc == 2)
		path = argv[1];
	if (config_load(&conf, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("%s: ok\n", path);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("dpmailctl %s\n", DPMAIL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "config") == 0 && argc >= 3 &&
	    strcmp(argv[2], "check") == 0)
		return config_check(argc - 2, argv + 2);
	fprintf(stderr, "dpmailctl: unknown verb '%s' (see dpmailctl --help)\n",
		argv[1]);
	return 2;
}
