/*
 * spool_segment.h: segment files: names, and reading records back.
 *
 * Owns: the naming scheme DIR/seg-<writer>-<seq>.dps and the sequential
 * reader shared by recovery and the offline scan. The reader never
 * changes a file; it says where good data ends and why, and finds the
 * next good record after a corrupt one.
 */
#ifndef DPMAIL_STORE_SPOOL_SEGMENT_H
#define DPMAIL_STORE_SPOOL_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/spool_record.h"

#define SPOOL_SEG_NAME_MAX 48

/* "seg-<writer>-<seq>.dps" */
void spool_seg_name(char out[SPOOL_SEG_NAME_MAX], unsigned writer,
		    uint64_t seq);
/* Strict parse of a directory entry name. 0 or -EINVAL. */
int spool_seg_parse_name(const char *name, unsigned *writer, uint64_t *seq);

/* The segment files in a directory, sorted by (writer, seq). */
struct spool_seg_list {
	struct spool_seg_ent {
		char name[SPOOL_SEG_NAME_MAX];
		unsigned writer;
		uint64_t seq;
	} *v;
	size_t n;
};
/* 0 or a negative errno. */
int spool_seg_list(int dirfd, struct spool_seg_list *l);
void spool_seg_list_free(struct spool_seg_list *l);

struct spool_seg_reader {
	int fd;
	uint64_t size;   /* file size when opened */
	uint64_t off;    /* where the next record starts = end of good data */
	struct spool_buf buf;
	const char *why; /* set on -EBADMSG: what was wrong */
};

void spool_seg_reader_init(struct spool_seg_reader *r, int fd,
			   uint64_t size);
void spool_seg_reader_free(struct spool_seg_reader *r);
/*
 * The next record: 1 with *h, *payload (valid until the next call) and
 * *rec_off set; 0 at the end of data (end of file, or zeros up to it);
 * -EBADMSG at a torn or corrupt record (r->off stays at its start, the
 * end of the good data; r->why says why); another negative errno on a
 * read error.
 */
int spool_seg_next(struct spool_seg_reader *r, struct spool_rec_hdr *h,
		   const uint8_t **payload, uint64_t *rec_off);
/*
 * After -EBADMSG from spool_seg_next (or a record at r->off the caller
 * found bad: its payload does not decode), looks for the next position
 * after r->off, on the record alignment, where a whole record verifies
 * (magic, header, a length within the file, CRC32C, padding). Checks the
 * magic first and the CRC only there, so the scan is about linear.
 *   1: found: *len is the bad region's length and r->off moves past it
 *      (the next spool_seg_next returns that record);
 *   0: nothing valid follows: a torn tail; r->off stays, *len is its
 *      length (to the last non-zero byte, rounded up to the alignment;
 *      the zeros of a preallocated segment are not counted);
 *   another negative errno on a read error.
 */
int spool_seg_skip_bad(struct spool_seg_reader *r, uint64_t *len);
/* One past the last non-zero byte at or after from (from when none). */
int spool_seg_data_end(int fd, uint64_t from, uint64_t size, uint64_t *end);

#endif
