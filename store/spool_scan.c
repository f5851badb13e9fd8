/*
 * spool_scan.c: offline reading of a spool directory (dpmailctl spool
 * dump). Every record of every segment, in (writer, seq) order, decoded.
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
			r.offset = off;
			r.crc = h.crc;
			if (h.type == SPOOL_REC_SEGHDR)
				continue;
			if (h.type == SPOOL_REC_MSG) {
				struct spool_msg_info info;

				env = envelope_new();
				if (env == NULL) {
					ret = -ENOMEM;
					break;
				}
				rc = spool_rec_decode_msg(p, h.len, &info, env);
				r.type = SPOOL_REQ_MSG;
				r.env = env;
				r.qid = env->qid;
			} else {
				rc = spool_rec_decode_state(p, h.len, qid,
							    &r.rcpt, &r.state,
							    &r.next_try_s);
				r.type = SPOOL_REQ_STATE;
				r.qid = qid;
			}
			if (rc == -ENOMEM) {
				envelope_free(env);
				ret = rc;
				break;
			}
			if (rc != 0) {
				r.bad = true;
				r.env = NULL;
				r.qid = "";
			}
		} else if (rc == -EBADMSG) {
			r.offset = rd.off;
			r.bad = true;
			r.qid = "";
		} else {
			ret = rc;
			break;
		}
		ret = cb(arg, &r);
		envelope_free(env);
		if (ret != 0 || r.bad)
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
