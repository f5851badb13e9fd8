/*
 * spool_scan.c: offline reading of a spool directory (dpmailctl spool
 * dump). Every record of every segment, in (writer, seq) order, decoded;
 * a bad region is one record with bad set, and reading goes on after it
 * exactly where recovery would (spool_seg_skip_bad).
 *
 * Must never: change a file, or need the EAL, a ring or a writer.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/spool.h"
#include "store/spool_record.h"
#include "store/spool_segment.h"

/* Decodes a verified record into r (env: a fresh envelope for a MSG,
 * handed back in *envp). 0, -EBADMSG or -ENOMEM. */
static int decode(const struct spool_rec_hdr *h, const uint8_t *p,
		  struct spool_scan_rec *r, char qid[ENV_QID_LEN + 1],
		  struct envelope **envp)
{
	if (h->type == SPOOL_REC_MSG) {
		struct spool_msg_info info;
		struct envelope *env = envelope_new();

		if (env == NULL)
			return -ENOMEM;
		*envp = env;
		r->type = SPOOL_REQ_MSG;
		r->env = env;
		r->qid = env->qid;
		return spool_rec_decode_msg(p, h->len, &info, env);
	}
	if (h->type == SPOOL_REC_STATE) {
		r->type = SPOOL_REQ_STATE;
		r->qid = qid;
		return spool_rec_decode_state(p, h->len, qid, &r->rcpt,
					      &r->state, &r->next_try_s);
	}
	/* SEGHDR: not reported, but checked as recovery checks it */
	uint64_t seq, created;
	uint32_t writer;

	return spool_rec_decode_seghdr(p, h->len, &writer, &seq, &created,
				       qid);
}

static int scan_one(int dirfd, const char *name,
		    int (*cb)(void *arg, const struct spool_scan_rec *r),
		    void *arg)
{
	struct spool_seg_reader rd;
	struct spool_rec_hdr h;
	const uint8_t *p;
	struct stat st;
	uint64_t off;
	int fd, rc, ret = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ELOOP ? 0 : -errno; /* a symlink: not ours */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	spool_seg_reader_init(&rd, fd, (uint64_t)st.st_size);
	for (;;) {
		struct spool_scan_rec r = { .segment = name };
		struct envelope *env = NULL;
		char qid[ENV_QID_LEN + 1] = "";

		rc = spool_seg_next(&rd, &h, &p, &off);
		if (rc == 0)
			break;
		if (rc == 1) {
			rc = decode(&h, p, &r, qid, &env);
			if (rc == 0 && h.type == SPOOL_REC_SEGHDR)
				continue;
			if (rc == 0) {
				unsigned w;
				uint64_t seq;

				if (env != NULL &&
				    spool_seg_parse_name(name, &w, &seq) == 0)
					env->spool_at = (struct env_spool_at){
						.seq = seq, .off = off,
						.writer = w, .set = true };
				r.offset = off;
				r.length = spool_rec_size(h.len);
				r.crc = h.crc;
				ret = cb(arg, &r);
				envelope_free(env);
				if (ret != 0)
					break;
				continue;
			}
			envelope_free(env);
			if (rc != -EBADMSG) {
				ret = rc;
				break;
			}
			/* CRC good, structure bad: corrupt all the same */
			r = (struct spool_scan_rec){ .segment = name };
			rd.off = off;
			rd.why = "bad record structure";
		} else if (rc != -EBADMSG) {
			ret = rc;
			break;
		}
		r.offset = rd.off;
		r.why = rd.why;
		r.qid = "";
		r.bad = true;
		rc = spool_seg_skip_bad(&rd, &r.length);
		if (rc < 0) {
			ret = rc;
			break;
		}
		r.torn = rc == 0;
		ret = cb(arg, &r);
		if (ret != 0 || r.torn)
			break;
	}
	spool_seg_reader_free(&rd);
	close(fd);
	return ret;
}

int spool_scan(const char *dir,
	       int (*cb)(void *arg, const struct spool_scan_rec *r),
	       void *arg)
{
	struct spool_seg_list l;
	int dirfd, rc;

	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	rc = spool_seg_list(dirfd, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++)
		rc = scan_one(dirfd, l.v[i].name, cb, arg);
	spool_seg_list_free(&l);
	close(dirfd);
	return rc;
}
