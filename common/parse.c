/*
 * parse.c: strict value parsers shared by the config loader and the CLI.
 */
#include "common/parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	int rc = parse_u64(s, min, max, &v);

	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_ipv4(const char *s, uint32_t *addr_be)
{
	struct in_addr a;

	/* inet_pton accepts only the strict dotted-quad form */
	if (inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*addr_be = a.s_addr;
	return 0;
}

int parse_ipv4_prefix(const char *s, uint32_t *addr_be, uint8_t *plen)
{
	char buf[32];
	const char *slash = strchr(s, '/');
	uint32_t len, a;

	if (slash == NULL || (size_t)(slash - s) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	if (parse_ipv4(buf, &a) != 0)
		return -EINVAL;
	if (parse_u32(slash + 1, 0, 32, &len) != 0)
		return -EINVAL;
	*addr_be = a;
	*plen = (uint8_t)len;
	return 0;
}

const char *format_ipv4(uint32_t addr_be, char *buf)
{
	struct in_addr a = { .s_addr = addr_be };

	return inet_ntop(AF_INET, &a, buf, 16);
}
