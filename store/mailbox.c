/*
 * mailbox.c: Maildir delivery with group commit, and the per-mailbox
 * index (see mailbox.h for the layout and the promise).
 *
 * Owns: conf.dir and everything under it, the cached per-mailbox state
 * (struct mbox, one per mailbox touched, in a hash table), and the
 * counters. Holds one descriptor (the root directory); every other file is
 * opened relative to it for as long as one step needs it, so a store that
 * has touched a million mailboxes still holds one descriptor.
 *
 * Must never: let a file into new/ before its bytes are on stable storage
 * (when conf.fsync); rename over an existing file; rewrite an index line
 * once a later sync may have made it durable; follow a name out of
 * conf.dir; sync once per message.
 */
#include "store/mailbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MB_BUCKETS 1024
#define MB_HOST_MAX 64      /* bytes of the sanitized host in a name */
#define MB_NAME_TRIES 64    /* unique-name retries on EEXIST */
#define MB_INDEX_MAGIC "dpmail-index 1 "
#define MB_TMP_MAX_AGE_S (36 * 3600)

/* One mailbox's cached state; usage counts every indexed message plus
 * what the batch in progress has reserved. */
struct mbox {
	struct mbox *next;
	char rel[MAILBOX_NAME_MAX + 2]; /* path relative to the root */
	uint32_t uidvalidity, next_uid;
	uint64_t bytes;
	uint32_t msgs;
	/* batch scratch: the items renamed into this mailbox */
	struct mbox *batch_next;
	size_t first, last; /* items of this batch, SIZE_MAX none */
	bool in_batch;
};

/* Per item of a batch */
struct slot {
	struct mbox *mb;
	uint64_t size;
	size_t next;    /* next item of the same mailbox in this batch */
	char tmp[MAILBOX_FILE_NAME_MAX];
	bool written, renamed;
};

struct mailbox_store {
	struct mailbox_conf conf;
	int root;
	pthread_mutex_t lock;
	struct mbox *bucket[MB_BUCKETS];
	int pid;
	char host[MB_HOST_MAX + 1];
	struct mailbox_stats st;
	mailbox_fault_fn fault;
	void *fault_arg;
};

void mailbox_conf_defaults(struct mailbox_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "var/mail");
	c->fsync = true;
	if (gethostname(c->hostname, sizeof(c->hostname) - 1) != 0 ||
	    c->hostname[0] == '\0')
		snprintf(c->hostname, sizeof(c->hostname), "localhost");
}

/* ---- names ---- */

/* mailbox = user [ "@" domain ]; each part non-empty, not starting with
 * '.', no '/', '\', control character or white space; whole <= 255. */
int mailbox_path(const char *mailbox, char *out, size_t outlen)
{
	size_t len, at = SIZE_MAX;

	if (mailbox == NULL)
		return -EINVAL;
	len = strnlen(mailbox, MAILBOX_NAME_MAX + 1);
	if (len == 0 || len > MAILBOX_NAME_MAX || outlen < len + 2)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)mailbox[i];

		if (ch < 0x20 || ch == 0x7f || ch == ' ' || ch == '/' ||
		    ch == '\\')
			return -EINVAL;
		if (ch == '@') {
			if (at != SIZE_MAX)
				return -EINVAL;
			at = i;
		}
	}
	if (at == 0 || at == len - 1 || mailbox[0] == '.' ||
	    (at != SIZE_MAX && mailbox[at + 1] == '.'))
		return -EINVAL;
	size_t o = 0;

	if (at != SIZE_MAX) {
		/* "@" domain "/" user */
		out[o++] = '@';
		for (size_t i = at + 1; i < len; i++)
			out[o++] = (char)((mailbox[i] >= 'A' && mailbox[i] <= 'Z')
					  ? mailbox[i] + 32 : mailbox[i]);
		out[o++] = '/';
	}
	size_t ulen = at != SIZE_MAX ? at : len;

	for (size_t i = 0; i < ulen; i++)
		out[o++] = (char)((mailbox[i] >= 'A' && mailbox[i] <= 'Z')
				  ? mailbox[i] + 32 : mailbox[i]);
	out[o] = '\0';
	return 0;
}

/* Maildir's convention: '/' and ':' in the host become \057 and \072;
 * anything else that would break a name or an index line becomes '_'. */
static void host_sanitize(char *out, const char *host)
{
	size_t o = 0;

	for (size_t i = 0; host[i] != '\0' && o + 4 <= MB_HOST_MAX; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (ch == '/') {
			memcpy(out + o, "\\057", 4);
			o += 4;
		} else if (ch == ':') {
			memcpy(out + o, "\\072", 4);
			o += 4;
		} else if (ch <= ' ' || ch == 0x7f || ch == ',') {
			out[o++] = '_';
		} else {
			out[o++] = (char)ch;
		}
	}
	if (o == 0)
		out[o++] = '_';
	out[o] = '\0';
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Maildir's Q<n> is unique per process: one counter for every store of
 * this process, so two stores (two delivery threads) never pick the same
 * name in the same microsecond. */
static _Atomic uint64_t name_counter;

static void file_name(struct mailbox_store *ms, char *out, uint64_t t_us,
		      uint64_t size)
{
	snprintf(out, MAILBOX_FILE_NAME_MAX,
		 "%" PRIu64 ".M%06" PRIu64 "P%dQ%" PRIu64 ".%.64s,S=%" PRIu64,
		 t_us / 1000000u, t_us % 1000000u, ms->pid, ++name_counter,
		 ms->host, size);
}

/* ---- the index ---- */

static int parse_u64(const char **p, const char *end, uint64_t max,
		     uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (s >= end || *s < '0' || *s > '9')
		return -EINVAL;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*out = v;
	return 0;
}

/* The header line [p, end): "dpmail-index 1 V<uidvalidity> N<next_uid>" */
static int parse_header(const char *p, const char *end, uint32_t *uidv,
			uint32_t *next)
{
	size_t ml = strlen(MB_INDEX_MAGIC);
	uint64_t v, n;

	if ((size_t)(end - p) < ml || memcmp(p, MB_INDEX_MAGIC, ml) != 0)
		return -EINVAL;
	p += ml;
	if (p >= end || *p++ != 'V' || parse_u64(&p, end, UINT32_MAX, &v) ||
	    v == 0 || p >= end || *p++ != ' ' || p >= end || *p++ != 'N' ||
	    parse_u64(&p, end, UINT32_MAX, &n) || n == 0 || p != end)
		return -EINVAL;
	*uidv = (uint32_t)v;
	*next = (uint32_t)n;
	return 0;
}

/* One entry line [p, end): "<uid> <name> <size>" */
static int parse_entry(const char *p, const char *end,
		       struct mailbox_index_entry *e)
{
	uint64_t uid, size;
	const char *name;
	size_t nl;

	if (parse_u64(&p, end, UINT32_MAX, &uid) || uid == 0 || p >= end ||
	    *p++ != ' ')
		return -EINVAL;
	name = p;
	while (p < end && *p != ' ')
		p++;
	nl = (size_t)(p - name);
	if (nl == 0 || nl >= MAILBOX_FILE_NAME_MAX || p >= end ||
	    *p++ != ' ' || parse_u64(&p, end, UINT64_MAX, &size) || p != end)
		return -EINVAL;
	e->uid = (uint32_t)uid;
	memcpy(e->name, name, nl);
	e->name[nl] = '\0';
	e->size = size;
	return 0;
}

/* Parses a whole index. *good: the length up to the end of the last
 * complete line (what a writer keeps). Entry lines that do not parse, or
 * whose UID is not above the one before, are skipped. -ENODATA: not even
 * a complete header line; -EINVAL: a bad header. */
static int index_parse(const char *buf, size_t len, struct mailbox_index *ix,
		       bool entries, uint64_t *bytes, size_t *good)
{
	const char *p = buf, *end = buf + len, *nl;
	uint32_t hdr_next, last = 0;
	size_t cap = 0;
	int rc;

	*good = 0;
	*bytes = 0;
	ix->n = 0;
	ix->e = NULL;
	nl = memchr(p, '\n', len);
	if (nl == NULL)
		return -ENODATA;
	rc = parse_header(p, nl, &ix->uidvalidity, &hdr_next);
	if (rc != 0)
		return rc;
	p = nl + 1;
	*good = (size_t)(p - buf);
	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		struct mailbox_index_entry e;

		if (parse_entry(p, nl, &e) == 0 && e.uid > last) {
			last = e.uid;
			*bytes += e.size;
			if (entries && ix->n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				void *ne = realloc(ix->e, nc * sizeof(*ix->e));

				if (ne == NULL) {
					free(ix->e);
					ix->e = NULL;
					return -ENOMEM;
				}
				ix->e = ne;
				cap = nc;
			}
			if (entries)
				ix->e[ix->n] = e;
			ix->n++;
		}
		p = nl + 1;
		*good = (size_t)(p - buf);
	}
	/* 0: UIDs are exhausted (the last one was UINT32_MAX) */
	ix->next_uid = last == UINT32_MAX ? 0 :
		(hdr_next > last + 1 ? hdr_next : last + 1);
	return 0;
}

static int read_all(int fd, char **out, size_t *len)
{
	struct stat sb;
	char *buf;
	size_t got = 0;

	if (fstat(fd, &sb) != 0)
		return -errno;
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL)
		return -ENOMEM;
	while (got < (size_t)sb.st_size) {
		ssize_t r = pread(fd, buf + got, (size_t)sb.st_size - got,
				  (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;

			free(buf);
			return e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*out = buf;
	*len = got;
	return 0;
}

static int index_path(char *out, size_t outlen, const char *rel)
{
	int n = snprintf(out, outlen, "%s/%s", rel, MAILBOX_INDEX_FILE);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

int mailbox_index_load(const struct mailbox_conf *c, const char *mailbox,
		       struct mailbox_index *out)
{
	char rel[MAILBOX_NAME_MAX + 2], path[sizeof(c->dir) + 300];
	uint64_t bytes;
	size_t len, good;
	char *buf;
	int fd, rc;

	memset(out, 0, sizeof(*out));
	rc = mailbox_path(mailbox, rel, sizeof(rel));
	if (rc != 0)
		return rc;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s/%s", c->dir, rel,
			     MAILBOX_INDEX_FILE) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	rc = read_all(fd, &buf, &len);
	close(fd);
	if (rc != 0)
		return rc;
	rc = index_parse(buf, len, out, true, &bytes, &good);
	free(buf);
	if (rc == -ENODATA)
		rc = -EINVAL;
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

void mailbox_index_free(struct mailbox_index *ix)
{
	free(ix->e);
	memset(ix, 0, sizeof(*ix));
}

/* ---- the store ---- */

static int fault(struct mailbox_store *ms, const char *step)
{
	return ms->fault ? ms->fault(ms->fault_arg, step) : 0;
}

static int do_sync(struct mailbox_store *ms, int fd, bool fs, bool data)
{
	int rc = fault(ms, "sync");

	ms->st.syncs++;
	if (rc != 0)
		return rc;
	if (fs)
		rc = syncfs(fd);
	else if (data)
		rc = fdatasync(fd);
	else
		rc = fsync(fd);
	return rc != 0 ? -errno : 0;
}

/* fsync of a directory relative to the root (per-file mode only) */
static int sync_dir(struct mailbox_store *ms, const char *rel)
{
	int fd = openat(ms->root, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = do_sync(ms, fd, false, false);
	close(fd);
	return rc;
}

static int mkdir_at(int root, const char *rel)
{
	return mkdirat(root, rel, 0700) != 0 && errno != EEXIST ? -errno : 0;
}

static uint32_t hash_rel(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static struct mbox *mbox_find(struct mailbox_store *ms, const char *rel)
{
	struct mbox *mb = ms->bucket[hash_rel(rel) % MB_BUCKETS];

	while (mb != NULL && strcmp(mb->rel, rel) != 0)
		mb = mb->next;
	return mb;
}

static int cmp_entry_name(const void *a, const void *b)
{
	return strcmp(((const struct mailbox_index_entry *)a)->name,
		      ((const struct mailbox_index_entry *)b)->name);
}

/* Maildir's rule: a file left in tmp/ for 36 hours is debris */
static void tmp_sweep(struct mailbox_store *ms, const char *rel)
{
	char path[MAILBOX_NAME_MAX + 8];
	time_t old = time(NULL) - MB_TMP_MAX_AGE_S;
	struct dirent *d;
	struct stat sb;
	DIR *dh;
	int fd;

	snprintf(path, sizeof(path), "%s/tmp", rel);
	fd = openat(ms->root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dh = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((d = readdir(dh)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(dh), d->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		    0 && S_ISREG(sb.st_mode) && sb.st_mtime < old)
			unlinkat(dirfd(dh), d->d_name, 0);
	}
	closedir(dh);
}

/* Files in new/ that the index does not name: a crash came between the
 * rename and the index append (or its sync). They were never
 * acknowledged, so the caller delivers them again, but they are mail:
 * they get UIDs now (a duplicate at worst, never a loss). Appends at end
 * of the index; updates ix (next_uid, n) and *bytes. */
static int adopt(struct mailbox_store *ms, const char *rel, int ixfd,
		 off_t end, struct mailbox_index *ix, uint64_t *bytes)
{
	struct mailbox_index_entry *found = NULL;
	size_t nf = 0, cap = 0, len = 0;
	char path[MAILBOX_NAME_MAX + 8], *buf = NULL;
	struct dirent *d;
	struct stat sb;
	DIR *dh;
	int fd, rc = 0;

	/* sorted by name for bsearch */
	if (ix->n > 0)
		qsort(ix->e, ix->n, sizeof(*ix->e), cmp_entry_name);
	snprintf(path, sizeof(path), "%s/new", rel);
	fd = openat(ms->root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dh = fdopendir(fd);
	if (dh == NULL) {
		close(fd);
		return -errno;
	}
	while ((d = readdir(dh)) != NULL) {
		struct mailbox_index_entry key;
		size_t nl = strlen(d->d_name);

		if (d->d_name[0] == '.' || nl >= MAILBOX_FILE_NAME_MAX ||
		    strpbrk(d->d_name, " \n\r") != NULL)
			continue;
		memcpy(key.name, d->d_name, nl + 1);
		if (ix->n > 0 && bsearch(&key, ix->e, ix->n, sizeof(*ix->e),
					 cmp_entry_name) != NULL)
			continue;
		if (fstatat(dirfd(dh), d->d_name, &sb, AT_SYMLINK_NOFOLLOW) !=
		    0 || !S_ISREG(sb.st_mode))
			continue;
		if (nf == cap) {
			size_t nc = cap ? cap * 2 : 16;
			void *nb = realloc(found, nc * sizeof(*found));

			if (nb == NULL) {
				rc = -ENOMEM;
				break;
			}
			found = nb;
			cap = nc;
		}
		key.size = (uint64_t)sb.st_size;
		found[nf++] = key;
	}
	closedir(dh);
	if (rc == 0 && nf > 0) {
		/* Maildir names start with the time: name order is roughly
		 * arrival order */
		qsort(found, nf, sizeof(*found), cmp_entry_name);
		buf = malloc(nf * (MAILBOX_FILE_NAME_MAX + 48));
		if (buf == NULL)
			rc = -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < nf && ix->next_uid != 0; i++) {
		len += (size_t)sprintf(buf + len, "%" PRIu32 " %s %" PRIu64 "\n",
				       ix->next_uid, found[i].name,
				       found[i].size);
		ix->next_uid++;
		ix->n++;
		*bytes += found[i].size;
		ms->st.adopted++;
	}
	for (size_t off = 0; rc == 0 && off < len;) {
		ssize_t w = pwrite(ixfd, buf + off, len - off,
				   end + (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = w < 0 ? -errno : -EIO;
		else
			off += (size_t)w;
	}
	free(buf);
	free(found);
	return rc;
}

/* Creates the mailbox's directories and index when missing, loads the
 * index once (cutting a torn tail), and caches the state. */
static int mbox_get(struct mailbox_store *ms, const char *rel,
		    struct mbox **out)
{
	char path[MAILBOX_NAME_MAX + 32], *slash, *buf = NULL;
	struct mailbox_index ix = { 0 };
	struct mbox *mb;
	uint64_t bytes = 0;
	size_t len = 0, good = 0;
	bool fresh = false;
	int fd, rc;

	mb = mbox_find(ms, rel);
	if (mb != NULL) {
		*out = mb;
		return 0;
	}
	snprintf(path, sizeof(path), "%s", rel);
	slash = strchr(path, '/');
	if (slash != NULL) {
		*slash = '\0';
		rc = mkdir_at(ms->root, path);
		if (rc != 0)
			return rc;
	}
	static const char *const sub[] = { "", "/tmp", "/new", "/cur" };

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s%s", rel, sub[i]);
		rc = mkdir_at(ms->root, path);
		if (rc != 0)
			return rc;
	}
	rc = index_path(path, sizeof(path), rel);
	if (rc != 0)
		return rc;
	fd = openat(ms->root, path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (fd < 0)
		return -errno;
	rc = read_all(fd, &buf, &len);
	if (rc == 0)
		rc = index_parse(buf, len, &ix, true, &bytes, &good);
	free(buf);
	if (rc == -ENODATA) {
		/* new, or its header was torn before anything was appended */
		char hdr[64];
		uint32_t uidv = (uint32_t)time(NULL);
		int hl = snprintf(hdr, sizeof(hdr), MB_INDEX_MAGIC "V%u N1\n",
				  uidv ? uidv : 1);

		fresh = true;
		ix.uidvalidity = uidv ? uidv : 1;
		ix.next_uid = 1;
		ix.n = 0;
		if (ftruncate(fd, 0) != 0) {
			rc = -errno;
		} else {
			ssize_t w = pwrite(fd, hdr, (size_t)hl, 0);

			rc = w == hl ? 0 : (w < 0 ? -errno : -EIO);
		}
	} else if (rc == -EINVAL) {
		rc = -EIO; /* a damaged index is never overwritten */
	} else if (rc == 0 && good < len) {
		rc = ftruncate(fd, (off_t)good) == 0 ? 0 : -errno;
	}
	if (rc == 0) {
		struct stat sb;

		rc = fstat(fd, &sb) == 0 ? 0 : -errno;
		if (rc == 0)
			rc = adopt(ms, rel, fd, sb.st_size, &ix, &bytes);
		tmp_sweep(ms, rel);
	}
	free(ix.e);
	if (rc == 0 && ms->conf.fsync && ms->conf.sync_per_file && fresh) {
		rc = do_sync(ms, fd, false, false);
		if (rc == 0 && slash != NULL) {
			snprintf(path, sizeof(path), "%s", rel);
			*strchr(path, '/') = '\0';
			rc = sync_dir(ms, path);
		}
		if (rc == 0)
			rc = sync_dir(ms, rel);
		if (rc == 0)
			rc = sync_dir(ms, ".");
	}
	close(fd);
	if (rc != 0)
		return rc;
	mb = calloc(1, sizeof(*mb));
	if (mb == NULL)
		return -ENOMEM;
	snprintf(mb->rel, sizeof(mb->rel), "%s", rel);
	mb->uidvalidity = ix.uidvalidity;
	mb->next_uid = ix.next_uid;
	mb->bytes = bytes;
	mb->msgs = ix.n > UINT32_MAX ? UINT32_MAX : (uint32_t)ix.n;
	mb->first = SIZE_MAX;
	uint32_t b = hash_rel(rel) % MB_BUCKETS;

	mb->next = ms->bucket[b];
	ms->bucket[b] = mb;
	ms->st.mailboxes++;
	*out = mb;
	return 0;
}

static void set_err(char *err, size_t errlen, const char *what,
		    const char *path, int e)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
}

int mailbox_open(struct mailbox_store **out, const struct mailbox_conf *c,
		 char *err, size_t errlen)
{
	struct mailbox_store *ms;
	char path[sizeof(c->dir)];
	int rc;

	*out = NULL;
	if (c->dir[0] == '\0' || strnlen(c->dir, sizeof(c->dir)) ==
	    sizeof(c->dir)) {
		set_err(err, errlen, "mailbox dir", "(empty or too long)",
			EINVAL);
		return -EINVAL;
	}
	/* mkdir -p */
	snprintf(path, sizeof(path), "%s", c->dir);
	for (char *p = path + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char ch = *p;

			*p = '\0';
			if (mkdir(path, 0700) != 0 && errno != EEXIST) {
				rc = -errno;
				set_err(err, errlen, "mkdir", path, -rc);
				return rc;
			}
			*p = ch;
			if (ch == '\0')
				break;
		}
	}
	ms = calloc(1, sizeof(*ms));
	if (ms == NULL) {
		set_err(err, errlen, "mailbox store", c->dir, ENOMEM);
		return -ENOMEM;
	}
	ms->conf = *c;
	ms->conf.dir[sizeof(ms->conf.dir) - 1] = '\0';
	ms->conf.hostname[sizeof(ms->conf.hostname) - 1] = '\0';
	ms->root = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ms->root < 0) {
		rc = -errno;
		set_err(err, errlen, "open", c->dir, -rc);
		free(ms);
		return rc;
	}
	pthread_mutex_init(&ms->lock, NULL);
	ms->pid = (int)getpid();
	host_sanitize(ms->host, ms->conf.hostname);
	*out = ms;
	return 0;
}

void mailbox_close(struct mailbox_store *ms)
{
	if (ms == NULL)
		return;
	for (size_t b = 0; b < MB_BUCKETS; b++) {
		struct mbox *mb = ms->bucket[b];

		while (mb != NULL) {
			struct mbox *nx = mb->next;

			free(mb);
			mb = nx;
		}
	}
	close(ms->root);
	pthread_mutex_destroy(&ms->lock);
	free(ms);
}

void mailbox_get_stats(struct mailbox_store *ms, struct mailbox_stats *out)
{
	pthread_mutex_lock(&ms->lock);
	*out = ms->st;
	pthread_mutex_unlock(&ms->lock);
}

void mailbox_set_fault_hook(struct mailbox_store *ms, mailbox_fault_fn fn,
			    void *arg)
{
	pthread_mutex_lock(&ms->lock);
	ms->fault = fn;
	ms->fault_arg = arg;
	pthread_mutex_unlock(&ms->lock);
}

int mailbox_usage(struct mailbox_store *ms, const char *mailbox,
		  uint64_t *bytes, uint32_t *msgs)
{
	char rel[MAILBOX_NAME_MAX + 2];
	struct mailbox_index ix;
	uint64_t b = 0;
	int rc = mailbox_path(mailbox, rel, sizeof(rel));

	if (rc != 0)
		return rc;
	pthread_mutex_lock(&ms->lock);
	struct mbox *mb = mbox_find(ms, rel);

	if (mb != NULL) {
		*bytes = mb->bytes;
		*msgs = mb->msgs;
		pthread_mutex_unlock(&ms->lock);
		return 0;
	}
	pthread_mutex_unlock(&ms->lock);
	/* never touched by this store: read, do not create or cache */
	rc = mailbox_index_load(&ms->conf, mailbox, &ix);
	if (rc == -ENOENT) {
		*bytes = 0;
		*msgs = 0;
		return 0;
	}
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < ix.n; i++)
		b += ix.e[i].size;
	*bytes = b;
	*msgs = ix.n > UINT32_MAX ? UINT32_MAX : (uint32_t)ix.n;
	mailbox_index_free(&ix);
	return 0;
}

/* ---- delivery ---- */

static void fail(struct mailbox_store *ms, struct mailbox_item *it, int rc)
{
	it->status = rc;
	if (rc == -EDQUOT) {
		ms->st.quota_refused++;
	} else if (rc != -EINVAL) {
		ms->st.errors++;
		ms->st.last_error = rc;
	}
}

static void unreserve(struct mbox *mb, uint64_t size)
{
	mb->bytes -= size;
	mb->msgs--;
}

static int write_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t w = writev(fd, iov, cnt);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		while (cnt > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static bool has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* Validates, reserves quota, writes tmp/<name>; 0 or the item's status */
static int stage(struct mailbox_store *ms, struct mailbox_item *it,
		 struct slot *s)
{
	const char *rp = it->return_path ? it->return_path : "";
	const char *dt = it->delivered_to ? it->delivered_to : "";
	char rel[MAILBOX_NAME_MAX + 2], path[MAILBOX_NAME_MAX + 200];
	uint64_t t_us = it->arrival_us ? it->arrival_us : now_us();
	struct mbox *mb = NULL;
	int fd = -1, rc;

	if (has_crlf(rp) || has_crlf(dt) ||
	    (it->body == NULL && it->body_len > 0))
		return -EINVAL;
	rc = mailbox_path(it->mailbox, rel, sizeof(rel));
	if (rc != 0)
		return rc;
	rc = mbox_get(ms, rel, &mb);
	if (rc != 0)
		return rc;
	if (mb->next_uid == 0)
		return -EOVERFLOW;
	/* header = "Return-Path: <" rp ">" CRLF "Delivered-To: " dt CRLF */
	size_t hl = strlen(rp) + strlen(dt) + 34;
	char *hdr = malloc(hl + 1);

	if (hdr == NULL)
		return -ENOMEM;
	hl = (size_t)snprintf(hdr, hl + 1,
			      "Return-Path: <%s>\r\nDelivered-To: %s\r\n", rp,
			      dt);
	s->size = hl + it->body_len;
	if ((ms->conf.quota_bytes &&
	     (s->size > ms->conf.quota_bytes ||
	      mb->bytes > ms->conf.quota_bytes - s->size)) ||
	    (ms->conf.quota_messages && mb->msgs >= ms->conf.quota_messages)) {
		free(hdr);
		return -EDQUOT;
	}
	for (int tries = 0; tries < MB_NAME_TRIES && fd < 0; tries++) {
		file_name(ms, s->tmp, t_us, s->size);
		snprintf(path, sizeof(path), "%s/tmp/%s", rel, s->tmp);
		fd = openat(ms->root, path, O_WRONLY | O_CREAT | O_EXCL |
			    O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno != EEXIST) {
			free(hdr);
			return -errno;
		}
	}
	if (fd < 0) {
		free(hdr);
		return -EEXIST;
	}
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = hl },
		{ .iov_base = (void *)(uintptr_t)it->body,
		  .iov_len = it->body_len },
	};

	rc = fault(ms, "write");
	if (rc == 0)
		rc = write_all(fd, iov, it->body_len ? 2 : 1);
	free(hdr);
	if (rc == 0 && ms->conf.fsync && ms->conf.sync_per_file)
		rc = do_sync(ms, fd, false, true);
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc != 0) {
		unlinkat(ms->root, path, 0);
		return rc;
	}
	mb->bytes += s->size;
	mb->msgs++;
	s->mb = mb;
	s->written = true;
	return 0;
}

/* tmp/<tmp> -> new/<name>, never over an existing file */
static int publish(struct mailbox_store *ms, struct mailbox_item *it,
		   struct slot *s)
{
	char from[MAILBOX_NAME_MAX + 200], to[MAILBOX_NAME_MAX + 200];
	uint64_t t_us = it->arrival_us ? it->arrival_us : now_us();

	snprintf(from, sizeof(from), "%s/tmp/%s", s->mb->rel, s->tmp);
	snprintf(it->name, sizeof(it->name), "%s", s->tmp);
	for (int tries = 0; tries < MB_NAME_TRIES; tries++) {
		snprintf(to, sizeof(to), "%s/new/%s", s->mb->rel, it->name);
		if (renameat2(ms->root, from, ms->root, to,
			      RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EINVAL) {
			/* no RENAME_NOREPLACE here: link refuses to replace */
			if (linkat(ms->root, from, ms->root, to, 0) == 0) {
				unlinkat(ms->root, from, 0);
				return 0;
			}
		}
		if (errno != EEXIST)
			return -errno;
		file_name(ms, it->name, t_us, s->size);
	}
	return -EEXIST;
}

/* Appends the batch's lines to one mailbox's index; on failure cuts the
 * index back and takes the batch's files out of new/ again. */
static int index_append(struct mailbox_store *ms, struct mailbox_item *it,
			struct slot *sl, struct mbox *mb)
{
	char path[MAILBOX_NAME_MAX + 200];
	size_t cap = 0, len = 0;
	char *buf = NULL;
	struct stat sb;
	int fd, rc = 0;

	for (size_t i = mb->first; i != SIZE_MAX; i = sl[i].next) {
		char line[MAILBOX_FILE_NAME_MAX + 48];
		int ll = snprintf(line, sizeof(line), "%" PRIu32 " %s %" PRIu64
				  "\n", it[i].uid, it[i].name, sl[i].size);

		if (len + (size_t)ll > cap) {
			size_t nc = cap ? cap * 2 : 4096;
			char *nb;

			while (nc < len + (size_t)ll)
				nc *= 2;
			nb = realloc(buf, nc);
			if (nb == NULL) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = nc;
		}
		memcpy(buf + len, line, (size_t)ll);
		len += (size_t)ll;
	}
	index_path(path, sizeof(path), mb->rel);
	fd = rc ? -1 : openat(ms->root, path, O_WRONLY | O_APPEND | O_CLOEXEC |
			      O_NOFOLLOW);
	if (rc == 0 && fd < 0)
		rc = -errno;
	if (rc == 0 && fstat(fd, &sb) != 0)
		rc = -errno;
	if (rc == 0)
		rc = fault(ms, "index");
	if (rc == 0) {
		struct iovec iov = { .iov_base = buf, .iov_len = len };

		rc = write_all(fd, &iov, 1);
		if (rc != 0 && ftruncate(fd, sb.st_size) != 0)
			rc = rc ? rc : -errno;
	}
	if (rc == 0 && ms->conf.fsync && ms->conf.sync_per_file) {
		rc = do_sync(ms, fd, false, false);
		if (rc == 0) {
			snprintf(path, sizeof(path), "%s/new", mb->rel);
			rc = sync_dir(ms, path);
		}
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	if (rc != 0) {
		for (size_t i = mb->first; i != SIZE_MAX; i = sl[i].next) {
			snprintf(path, sizeof(path), "%s/new/%s", mb->rel,
				 it[i].name);
			unlinkat(ms->root, path, 0);
			unreserve(mb, sl[i].size);
			sl[i].renamed = false;
			it[i].uid = 0;
			it[i].name[0] = '\0';
			fail(ms, &it[i], rc);
		}
	}
	return rc;
}

size_t mailbox_deliver(struct mailbox_store *ms, struct mailbox_item *it,
		       size_t n)
{
	bool sync_fs = ms->conf.fsync && !ms->conf.sync_per_file;
	struct mbox *touched = NULL;
	size_t written = 0, renamed = 0, ok = 0;
	struct slot *sl;
	int rc;

	pthread_mutex_lock(&ms->lock);
	ms->st.batches++;
	sl = calloc(n ? n : 1, sizeof(*sl));
	if (sl == NULL) {
		for (size_t i = 0; i < n; i++)
			fail(ms, &it[i], -ENOMEM);
		pthread_mutex_unlock(&ms->lock);
		return 0;
	}
	/* 1: every file into tmp/ */
	for (size_t i = 0; i < n; i++) {
		it[i].status = 0;
		it[i].uid = 0;
		it[i].name[0] = '\0';
		rc = stage(ms, &it[i], &sl[i]);
		if (rc != 0)
			fail(ms, &it[i], rc);
		else
			written++;
	}
	/* 2: their bytes on stable storage before any is renamed */
	if (written > 0 && sync_fs) {
		rc = do_sync(ms, ms->root, true, false);
		for (size_t i = 0; rc != 0 && i < n; i++) {
			char path[MAILBOX_NAME_MAX + 200];

			if (!sl[i].written)
				continue;
			snprintf(path, sizeof(path), "%s/tmp/%s",
				 sl[i].mb->rel, sl[i].tmp);
			unlinkat(ms->root, path, 0);
			unreserve(sl[i].mb, sl[i].size);
			sl[i].written = false;
			fail(ms, &it[i], rc);
		}
	}
	/* 3: into new/, in order, a UID each */
	for (size_t i = 0; i < n; i++) {
		struct slot *s = &sl[i];
		struct mbox *mb = s->mb;

		if (!s->written)
			continue;
		rc = mb->next_uid == 0 ? -EOVERFLOW : publish(ms, &it[i], s);
		if (rc != 0) {
			char path[MAILBOX_NAME_MAX + 200];

			snprintf(path, sizeof(path), "%s/tmp/%s", mb->rel,
				 s->tmp);
			unlinkat(ms->root, path, 0);
			unreserve(mb, s->size);
			it[i].name[0] = '\0';
			fail(ms, &it[i], rc);
			continue;
		}
		it[i].uid = mb->next_uid++;
		s->renamed = true;
		s->next = SIZE_MAX;
		if (!mb->in_batch) {
			mb->in_batch = true;
			mb->first = i;
			mb->batch_next = touched;
			touched = mb;
		} else {
			sl[mb->last].next = i;
		}
		mb->last = i;
	}
	/* 4: the index lines, one append per mailbox */
	for (struct mbox *mb = touched; mb != NULL; mb = mb->batch_next)
		index_append(ms, it, sl, mb);
	for (size_t i = 0; i < n; i++)
		renamed += sl[i].renamed;
	/* 5: renames and index lines on stable storage */
	rc = 0;
	if (renamed > 0 && sync_fs)
		rc = do_sync(ms, ms->root, true, false);
	for (size_t i = 0; i < n; i++) {
		if (!sl[i].renamed)
			continue;
		if (rc != 0) {
			/* they may survive: at least once, never lost */
			fail(ms, &it[i], rc);
			continue;
		}
		ok++;
		ms->st.delivered++;
		ms->st.bytes += sl[i].size;
	}
	while (touched != NULL) {
		struct mbox *nx = touched->batch_next;

		touched->in_batch = false;
		touched->first = touched->last = SIZE_MAX;
		touched->batch_next = NULL;
		touched = nx;
	}
	free(sl);
	pthread_mutex_unlock(&ms->lock);
	return ok;
}
