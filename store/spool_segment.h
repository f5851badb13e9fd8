/*
 * spool_segment.h: segment files: names, and reading records back.
 *
 * Owns: the naming scheme DIR/seg-<writer>-<seq>.dps and the sequential
 * reader shared by recovery and the offline scan. The reader never
 * changes a file; it says where good data ends and why.
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
/* One past the last non-zero byte at or after from (from when none). */
int spool_seg_data_end(int fd, uint64_t from, uint64_t size, uint64_t *end);

#endif
