/*
 * spool_record.h: the on-disk record format of spool segments.
 *
 * Owns: the byte layout of records and their payloads, CRC32C, and the
 * bounds-checked decoders. Knows nothing of files, threads or rings.
 *
 * A segment file is a sequence of records, each starting on an 8-byte
 * boundary:
 *
 *   offset  size  field (integers little-endian)
 *        0     4  magic    SPOOL_REC_MAGIC ("DPSR" on disk)
 *        4     1  type     SPOOL_REC_MSG | SPOOL_REC_STATE | SPOOL_REC_SEGHDR
 *        5     1  version  SPOOL_REC_VERSION
 *        6     2  reserved 0
 *        8     4  length   payload bytes (<= SPOOL_REC_PAYLOAD_MAX)
 *       12     4  crc      CRC32C over header (crc field zero) + payload
 *       16     length      payload
 *              0..7        zero padding to the next 8-byte boundary
 *
 * A zero magic where a record should start means "end of data" (the rest
 * of a preallocated segment), provided everything after it is zero too.
 *
 * Payloads: strings are u32 length + bytes (no NUL inside, none stored);
 * a queue ID is ENV_QID_LEN bytes of Crockford base32.
 *   MSG:    qid, arrival_us u64, client_addr str, client_port u16,
 *           local_port u16, helo str, mail_from str, envid str, ret u8,
 *           body_type u8, flags u8 (1 smtputf8, 2 esmtp), declared_size u64,
 *           nrcpt u32, nrcpt x { addr str, orcpt str, notify u8 },
 *           body_len u64, body bytes
 *   STATE:  qid, rcpt u32, state u8, next_try_s u64
 *   SEGHDR: writer u32, seq u64, created_us u64, qid floor (the highest
 *           queue ID issued when written; recovery seeds the generators
 *           past it even when every message is gone). First record of
 *           every segment, and the last one written at a clean close.
 *
 * Decoders never trust a length: every read is checked against what is
 * left; a failure is -EBADMSG, never a crash.
 */
#ifndef DPMAIL_STORE_SPOOL_RECORD_H
#define DPMAIL_STORE_SPOOL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/envelope.h"

#define SPOOL_REC_MAGIC 0x52535044u /* bytes 'D' 'P' 'S' 'R' */
#define SPOOL_REC_VERSION 1
#define SPOOL_REC_HDR_LEN 16
#define SPOOL_REC_ALIGN 8
/* Largest payload accepted (a message record with its body). */
#define SPOOL_REC_PAYLOAD_MAX (1u << 30)
/* Largest string field (addresses, HELO, ENVID, ORCPT). */
#define SPOOL_REC_STR_MAX 65536u
/* Most recipients in one message record. */
#define SPOOL_REC_RCPT_MAX 100000u

enum spool_rec_type {
	SPOOL_REC_MSG = 1,
	SPOOL_REC_STATE = 2,
	SPOOL_REC_SEGHDR = 3,
};

#define SPOOL_STATE_PAYLOAD_LEN (ENV_QID_LEN + 4 + 1 + 8)
#define SPOOL_SEGHDR_PAYLOAD_LEN (4 + 8 + 8 + ENV_QID_LEN)

struct spool_rec_hdr {
	uint32_t magic;
	uint8_t type, version;
	uint32_t len;
	uint32_t crc;
};

/* Standard CRC32C (Castagnoli, reflected, init and xorout ~0): crc is the
 * previous result (0 to start), so calls chain over pieces. */
uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len);

/* Bytes a record with this payload occupies on disk, padding included. */
static inline uint64_t spool_rec_size(uint64_t payload_len)
{
	return (SPOOL_REC_HDR_LEN + payload_len + SPOOL_REC_ALIGN - 1) &
	       ~(uint64_t)(SPOOL_REC_ALIGN - 1);
}

/* A growable byte buffer the encoders append to. */
struct spool_buf {
	uint8_t *data;
	size_t len, cap;
};
int spool_buf_reserve(struct spool_buf *b, size_t more);
void spool_buf_free(struct spool_buf *b);

/* Writes/reads the 16 header bytes. */
void spool_rec_hdr_put(uint8_t out[SPOOL_REC_HDR_LEN],
		       const struct spool_rec_hdr *h);
void spool_rec_hdr_get(const uint8_t in[SPOOL_REC_HDR_LEN],
		       struct spool_rec_hdr *h);

/*
 * Appends the header and the message payload up to (not including) the
 * body bytes to b, and computes the CRC over them and e->body. The record
 * on disk is b[*hdr_off, +*head_len) + e->body + the padding, which
 * follows the head in b (b->len - *hdr_off - *head_len bytes). Returns 0, -EINVAL
 * (a string too long or a bad queue ID), -E2BIG (record too large) or
 * -ENOMEM.
 */
int spool_rec_encode_msg(struct spool_buf *b, const struct envelope *e,
			 size_t *hdr_off, size_t *head_len,
			 uint64_t *rec_size);
/* Appends a whole STATE (or SEGHDR) record, padding included. */
int spool_rec_encode_state(struct spool_buf *b, const char *qid,
			   uint32_t rcpt, uint8_t state, uint64_t next_try_s);
int spool_rec_encode_seghdr(struct spool_buf *b, uint32_t writer,
			    uint64_t seq, uint64_t created_us,
			    const char *qid_floor);

/* Checks a header read from disk: magic, version, type, length.
 * Returns 0 or -EBADMSG. */
int spool_rec_hdr_check(const struct spool_rec_hdr *h);
/* Checks the CRC of a record whose header (as on disk) and payload are
 * in memory. */
bool spool_rec_crc_ok(const uint8_t hdr[SPOOL_REC_HDR_LEN],
		      const uint8_t *payload, uint32_t len);

/* What recovery needs of a message record without copying anything. */
struct spool_msg_info {
	char qid[ENV_QID_LEN + 1];
	uint32_t nrcpt;
	uint64_t body_len;
};
/* Decodes a MSG payload, fully validated. env NULL: only info is filled.
 * Otherwise env (fresh from envelope_new) receives everything, body
 * copied. Returns 0, -EBADMSG or -ENOMEM. */
int spool_rec_decode_msg(const uint8_t *p, size_t len,
			 struct spool_msg_info *info, struct envelope *env);
int spool_rec_decode_state(const uint8_t *p, size_t len,
			   char qid[ENV_QID_LEN + 1], uint32_t *rcpt,
			   uint8_t *state, uint64_t *next_try_s);
int spool_rec_decode_seghdr(const uint8_t *p, size_t len, uint32_t *writer,
			    uint64_t *seq, uint64_t *created_us,
			    char qid_floor[ENV_QID_LEN + 1]);

#endif
