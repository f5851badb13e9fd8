/*
 * spool_segment.c: segment names, directory listing and the record
 * reader (see spool_segment.h).
 *
 * Must never: write, or trust any length from the file.
 */
#include "store/spool_segment.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void spool_seg_name(char out[SPOOL_SEG_NAME_MAX], unsigned writer,
		    uint64_t seq)
{
	snprintf(out, SPOOL_SEG_NAME_MAX, "seg-%u-%" PRIu64 ".dps", writer,
		 seq);
}

static int parse_dec(const char **s, uint64_t max, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (max - (uint64_t)(*p - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*s = p;
	*out = v;
	return 0;
}

int spool_seg_parse_name(const char *name, unsigned *writer, uint64_t *seq)
{
	const char *p = name;
	uint64_t w;

	if (strncmp(p, "seg-", 4) != 0)
		return -EINVAL;
	p += 4;
	if (parse_dec(&p, 1u << 20, &w) != 0 || *p++ != '-')
		return -EINVAL;
	if (parse_dec(&p, UINT64_MAX / 2, seq) != 0 || strcmp(p, ".dps") != 0)
		return -EINVAL;
	*writer = (unsigned)w;
	return 0;
}

static int ent_cmp(const void *a, const void *b)
{
	const struct spool_seg_ent *x = a, *y = b;

	if (x->writer != y->writer)
		return x->writer < y->writer ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return 0;
}

int spool_seg_list(int dirfd, struct spool_seg_list *l)
{
	int fd = dup(dirfd);
	size_t cap = 0;
	struct dirent *de;
	DIR *d;

	l->v = NULL;
	l->n = 0;
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		int e = -errno;

		close(fd);
		return e;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		struct spool_seg_ent e;

		size_t nl = strlen(de->d_name);

		if (nl >= sizeof(e.name) ||
		    spool_seg_parse_name(de->d_name, &e.writer, &e.seq) != 0)
			continue;
		memcpy(e.name, de->d_name, nl + 1);
		if (l->n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct spool_seg_ent *nv =
				realloc(l->v, nc * sizeof(*nv));

			if (nv == NULL) {
				closedir(d);
				spool_seg_list_free(l);
				return -ENOMEM;
			}
			l->v = nv;
			cap = nc;
		}
		l->v[l->n++] = e;
	}
	closedir(d);
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), ent_cmp);
	return 0;
}

void spool_seg_list_free(struct spool_seg_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void spool_seg_reader_init(struct spool_seg_reader *r, int fd,
			   uint64_t size)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->size = size;
}

void spool_seg_reader_free(struct spool_seg_reader *r)
{
	spool_buf_free(&r->buf);
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA; /* shrank under us */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int spool_seg_data_end(int fd, uint64_t from, uint64_t size, uint64_t *end)
{
	uint8_t buf[65536];
	uint64_t off = from;

	*end = from;
	while (off < size) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA);
		size_t n;
		int rc;

		if (d < 0) {
			if (errno == ENXIO)
				break; /* only a hole is left */
			d = (off_t)off; /* no SEEK_DATA: read it all */
		}
		if ((uint64_t)d >= size)
			break;
		off = (uint64_t)d;
		n = size - off < sizeof(buf) ? (size_t)(size - off)
					     : sizeof(buf);
		rc = read_full(fd, buf, n, off);
		if (rc != 0)
			return rc;
		for (size_t i = n; i > 0; i--)
			if (buf[i - 1] != 0) {
				*end = off + i;
				break;
			}
		off += n;
	}
	return 0;
}

static int bad(struct spool_seg_reader *r, const char *why)
{
	r->why = why;
	return -EBADMSG;
}

/*
 * Verifies the record at pos whose 16 header bytes (as on disk) are hdr:
 * header, a length within the file, CRC and padding. 1 when it verifies
 * (*h filled, the payload in r->buf.data), 0 when not (*why says why), or
 * a negative errno on a read error.
 */
static int check_at(struct spool_seg_reader *r, uint64_t pos,
		    const uint8_t hdr[SPOOL_REC_HDR_LEN],
		    struct spool_rec_hdr *h, const char **why)
{
	uint64_t left = r->size > pos ? r->size - pos : 0;
	uint64_t size;
	int rc;

	spool_rec_hdr_get(hdr, h);
	if (h->magic != SPOOL_REC_MAGIC) {
		*why = "bad magic";
		return 0;
	}
	if (spool_rec_hdr_check(h) != 0) {
		*why = "bad header";
		return 0;
	}
	size = spool_rec_size(h->len);
	if (size > left) {
		*why = "record past end of file";
		return 0;
	}
	rc = spool_buf_reserve(&r->buf, (size_t)size);
	if (rc != 0)
		return rc;
	rc = read_full(r->fd, r->buf.data, (size_t)size - SPOOL_REC_HDR_LEN,
		       pos + SPOOL_REC_HDR_LEN);
	if (rc != 0)
		return rc;
	if (!spool_rec_crc_ok(hdr, r->buf.data, h->len)) {
		*why = "CRC mismatch";
		return 0;
	}
	for (uint64_t i = h->len; i < size - SPOOL_REC_HDR_LEN; i++)
		if (r->buf.data[i] != 0) {
			*why = "bad padding";
			return 0;
		}
	return 1;
}

int spool_seg_next(struct spool_seg_reader *r, struct spool_rec_hdr *h,
		   const uint8_t **payload, uint64_t *rec_off)
{
	uint8_t hdr[SPOOL_REC_HDR_LEN];
	uint64_t left = r->size > r->off ? r->size - r->off : 0;
	const char *why = NULL;
	uint64_t end;
	int rc;

	if (left == 0)
		return 0;
	if (left >= SPOOL_REC_HDR_LEN) {
		rc = read_full(r->fd, hdr, sizeof(hdr), r->off);
		if (rc != 0)
			return rc;
	}
	if (left < SPOOL_REC_HDR_LEN || hdr[0] == 0) {
		/* zeros from here to the end: the unused part of a
		 * preallocated segment */
		rc = spool_seg_data_end(r->fd, r->off, r->size, &end);
		if (rc != 0)
			return rc;
		if (end == r->off)
			return 0;
		return bad(r, left < SPOOL_REC_HDR_LEN ? "torn header"
						       : "bad magic");
	}
	rc = check_at(r, r->off, hdr, h, &why);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return bad(r, why);
	*payload = r->buf.data;
	*rec_off = r->off;
	r->off += spool_rec_size(h->len);
	return 1;
}

int spool_seg_skip_bad(struct spool_seg_reader *r, uint64_t *len)
{
	static const uint8_t magic[4] = { 'D', 'P', 'S', 'R' };
	uint8_t buf[65536];
	struct spool_rec_hdr h;
	const char *why;
	uint64_t pos, end;
	int rc;

	/* records start on the alignment, counted from the file's start */
	pos = (r->off + SPOOL_REC_ALIGN) & ~(uint64_t)(SPOOL_REC_ALIGN - 1);
	while (pos < r->size && r->size - pos >= SPOOL_REC_HDR_LEN) {
		off_t d = lseek(r->fd, (off_t)pos, SEEK_DATA);
		size_t n, i;

		if (d < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (d > (off_t)pos) {
			/* skip a hole (records start on the alignment) */
			pos = (uint64_t)d & ~(uint64_t)(SPOOL_REC_ALIGN - 1);
			if (pos >= r->size || r->size - pos < SPOOL_REC_HDR_LEN)
				break;
		}
		n = r->size - pos < sizeof(buf) ? (size_t)(r->size - pos)
						 : sizeof(buf);
		rc = read_full(r->fd, buf, n, pos);
		if (rc != 0)
			return rc;
		/* the magic first, everything else (CRC over the
		 * payload) only where it matches */
		for (i = 0; i + SPOOL_REC_HDR_LEN <= n; i += SPOOL_REC_ALIGN) {
			if (memcmp(buf + i, magic, sizeof(magic)) != 0)
				continue;
			rc = check_at(r, pos + i, buf + i, &h, &why);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				*len = pos + i - r->off;
				r->off = pos + i;
				return 1;
			}
		}
		pos += i; /* the first position whose header was not whole */
	}
	/* nothing valid follows: a torn tail, as long as what was written
	 * (up to the last non-zero byte, rounded up to the alignment; the
	 * zeros of a preallocated segment are not data) */
	rc = spool_seg_data_end(r->fd, r->off, r->size, &end);
	if (rc != 0)
		return rc;
	end = (end + SPOOL_REC_ALIGN - 1) & ~(uint64_t)(SPOOL_REC_ALIGN - 1);
	if (end > r->size)
		end = r->size;
	if (end < r->off)
		end = r->off;
	*len = end - r->off;
	return 0;
}
