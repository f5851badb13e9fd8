/*
 * parse.h: strict parsers for config values. Each returns 0 on success or
 * -EINVAL / -ERANGE and leaves the output untouched on failure; none
 * accepts trailing garbage.
 */
#ifndef DPMAIL_COMMON_PARSE_H
#define DPMAIL_COMMON_PARSE_H

#include <stdbool.h>
#include <stdint.h>

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);
/* yes/no, true/false, on/off, 1/0 */
int parse_bool(const char *s, bool *out);
/* Dotted quad -> address in network byte order. */
int parse_ipv4(const char *s, uint32_t *addr_be);
/* "a.b.c.d/len" -> address (network order) and prefix length 0..32. */
int parse_ipv4_prefix(const char *s, uint32_t *addr_be, uint8_t *plen);
/* Formats a network-order address into buf (at least 16 bytes). */
const char *format_ipv4(uint32_t addr_be, char *buf);

#endif
