/*
 * siphash.h: SipHash-2-4 (Aumasson and Bernstein), a keyed PRF for short
 * inputs. Used where a peer must not predict or collide our hashes: TCP
 * initial sequence numbers (RFC 6528), SYN cookies, timestamp offsets.
 */
#ifndef DPMAIL_COMMON_SIPHASH_H
#define DPMAIL_COMMON_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
