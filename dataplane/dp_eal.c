/*
 * dp_eal.c: EAL initialisation from the config file.
 *
 * The operator writes devargs, lcores and memory in dpmail.conf; this file
 * turns them into EAL's argv. A PCI address goes to -a (allow list), a
 * vdev to --vdev with --no-pci so EAL does not grab unrelated devices.
 */
#include "dataplane/dp.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>

#include "common/log.h"

static uint64_t tsc_per_ms;

uint64_t dp_now_ms(void)
{
	return rte_rdtsc() / tsc_per_ms;
}

/* "dddd:bb:dd.f" or "bb:dd.f", optionally followed by ",args". */
static bool devargs_is_pci(const char *d)
{
	size_t n = strcspn(d, ",");
	int colons = 0;
	bool dot = false;

	for (size_t i = 0; i < n; i++) {
		if (d[i] == ':')
			colons++;
		else if (d[i] == '.')
			dot = true;
		else if (!isxdigit((unsigned char)d[i]))
			return false;
	}
	return dot && (colons == 1 || colons == 2);
}

int dp_eal_args(const struct dp_conf *c, const char *prog, char **argv,
		int max, char *buf, size_t buflen)
{
	int argc = 0;
	size_t used = 0;

#define ARG(...)                                                               \
	do {                                                                   \
		int w_ = snprintf(buf + used, buflen - used, __VA_ARGS__);     \
		if (argc >= max || w_ < 0 || (size_t)w_ >= buflen - used)      \
			return -E2BIG;                                         \
		argv[argc++] = buf + used;                                     \
		used += (size_t)w_ + 1;                                        \
	} while (0)

	ARG("%s", prog);
	/* --lcores understands the lcore@cpu mapping syntax, -l does not */
	if (strpbrk(c->lcores, "@()") != NULL)
		ARG("--lcores=%s", c->lcores);
	else
		ARG("-l%s", c->lcores);
	ARG("--file-prefix=%s", c->file_prefix);
	ARG("-m%u", c->memory_mb);
	if (!c->hugepages)
		ARG("--no-huge");
	if (devargs_is_pci(c->devargs)) {
		ARG("-a%s", c->devargs);
	} else {
		ARG("--no-pci");
		ARG("--vdev=%s", c->devargs);
	}
	ARG("--log-level=%s", c->eal_log_level);
	ARG("--no-telemetry");
#undef ARG
	return argc;
}

int dp_eal_init(const struct dp_conf *c, const char *prog)
{
	char buf[2048];
	char *argv[32];
	char line[2048];
	size_t n = 0;
	int argc, rc;

	argc = dp_eal_args(c, prog, argv, 32, buf, sizeof(buf));
	if (argc < 0) {
		LOG(LOG_ERR, "dataplane: EAL arguments too long");
		return argc;
	}
	line[0] = '\0';
	for (int i = 1; i < argc && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", argv[i]);
	LOG(LOG_INFO, "dataplane: EAL arguments:%s", line);
	rc = rte_eal_init(argc, argv);
	if (rc < 0) {
		LOG(LOG_ERR, "dataplane: EAL initialisation failed: %s (another "
		    "instance with [eal] file_prefix = %s? enough memory for "
		    "memory_mb = %u?)", rte_errno ? rte_strerror(rte_errno) :
		    "see EAL's messages above", c->file_prefix, c->memory_mb);
		return -rte_errno ? -rte_errno : -EINVAL;
	}
	tsc_per_ms = rte_get_tsc_hz() / 1000;
	if (tsc_per_ms == 0)
		tsc_per_ms = 1;
	return 0;
}
