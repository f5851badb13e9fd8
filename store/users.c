/*
 * users.c: the user directory file and the password verifier thread
 * (see users.h for the file format and the threading contract).
 *
 * Owns: the loaded user table (private to the verifier thread: workers
 * never read it), the request ring, the completion rings. Must never
 * run crypt on a worker: workers only enqueue and dequeue.
 */
#include "store/users.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rte_ring.h>

#include "common/log.h"
#include "store/spool.h"

#define USERS_RING 1024
#define USERS_RELOAD_CHECK_S 1
/* yescrypt of "x" with default cost, to spend the same time on users
 * that do not exist */
#define DUMMY_PASS "dpmail-no-such-user"

struct users_db {
	char path[4096];
	unsigned nworkers;
	struct rte_ring *req;
	struct rte_ring **done;
	pthread_t th;
	bool th_started;
	sem_t wake;
	atomic_bool stop;
	atomic_size_t count;
	/* verifier-thread private */
	struct users_entry *tab;
	size_t ntab;
	struct stat st;
	bool have_st;
	time_t last_check;
	char dummy[USERS_HASH_MAX + 1];
	struct crypt_data *cd;
};

static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n--)
		*v++ = 0;
}

bool users_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > USERS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c == 0x7f || c == ':')
			return false;
	}
	return true;
}

/* ---- the file ------------------------------------------------------ */

/* line = name ":" hash [ ":" addr *("," addr) ] */
static int parse_line(char *line, struct users_entry *e)
{
	char *c1 = strchr(line, ':'), *c2;
	size_t hl;

	if (c1 == NULL)
		return -1;
	*c1 = '\0';
	c2 = strchr(c1 + 1, ':');
	if (c2 != NULL)
		*c2 = '\0';
	hl = strlen(c1 + 1);
	if (!users_name_valid(line) || hl == 0 || hl > USERS_HASH_MAX ||
	    c1[1] != '$' ||
	    (c2 != NULL && strlen(c2 + 1) > USERS_ADDRS_MAX))
		return -1;
	snprintf(e->name, sizeof(e->name), "%s", line);
	snprintf(e->hash, sizeof(e->hash), "%s", c1 + 1);
	snprintf(e->addrs, sizeof(e->addrs), "%s", c2 ? c2 + 1 : "");
	return 0;
}

int users_file_read(const char *path, struct users_entry **out, size_t *n,
		    char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct users_entry *v = NULL;
	size_t nv = 0, cap = 0;
	char line[2048];
	int lineno = 0;

	*out = NULL;
	*n = 0;
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s", strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t l = strlen(line);

		lineno++;
		while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
			line[--l] = '\0';
		if (l == 0 || line[0] == '#')
			continue;
		if (nv == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct users_entry *t = realloc(v, nc * sizeof(*v));
			if (t == NULL) {
				free(v);
				fclose(f);
				return -ENOMEM;
			}
			v = t;
			cap = nc;
		}
		if (parse_line(line, &v[nv]) != 0) {
			snprintf(err, errlen, "%d: not name:$hash[:addresses]",
				 lineno);
			free(v);
			fclose(f);
			return -EINVAL;
		}
		nv++;
	}
	fclose(f);
	*out = v;
	*n = nv;
	return 0;
}

int users_file_write(const char *path, const struct users_entry *e,
		     size_t n)
{
	char tmp[4200], dir[4096];
	int fd, dfd, rc = 0;
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (f == NULL) {
		rc = -errno;
		close(fd);
		unlink(tmp);
		return rc;
	}
	fprintf(f, "# dpmail users: name:hash[:allowed,senders] "
		"(edit with dpmailctl user)\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s:%s%s%s\n", e[i].name, e[i].hash,
			e[i].addrs[0] ? ":" : "", e[i].addrs);
	if (fflush(f) != 0 || fsync(fd) != 0)
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int users_hash(const char *pass, char *out, size_t cap)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *h;
	int rc = 0;

	if (pass == NULL || *pass == '\0' || strlen(pass) > USERS_PASS_MAX)
		return -EINVAL;
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
		return -EIO;
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return -ENOMEM;
	h = crypt_r(pass, salt, cd);
	if (h == NULL || h[0] == '*' || strlen(h) >= cap)
		rc = -EIO;
	else
		snprintf(out, cap, "%s", h);
	wipe(cd, sizeof(*cd));
	free(cd);
	return rc;
}

static bool hash_ok(struct crypt_data *cd, const char *hash, const char *pass)
{
	const char *h = crypt_r(pass, hash, cd);
	size_t n = strlen(hash);
	unsigned char diff = 0;

	if (h == NULL || h[0] == '*' || strlen(h) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(h[i] ^ hash[i]);
	return diff == 0;
}

bool users_hash_ok(const char *hash, const char *pass)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	bool ok;

	if (cd == NULL)
		return false;
	ok = hash_ok(cd, hash, pass);
	wipe(cd, sizeof(*cd));
	free(cd);
	return ok;
}

bool users_sender_ok(const char *user, const char *addrs,
		     const char *mail_from)
{
	const char *at = strrchr(mail_from, '@');
	size_t ml = strlen(mail_from);
	const char *p = addrs;

	if (ml == 0)
		return true;
	if (strchr(user, '@') != NULL) {
		if (strcasecmp(user, mail_from) == 0)
			return true;
	} else if (at != NULL && (size_t)(at - mail_from) == strlen(user) &&
		   strncasecmp(user, mail_from, strlen(user)) == 0) {
		return true;
	}
	while (p != NULL && *p != '\0') {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);

		while (l > 0 && *p == ' ') {
			p++;
			l--;
		}
		if (l == ml && strncasecmp(p, mail_from, l) == 0)
			return true;
		/* "@domain": any address of that domain */
		if (l > 1 && p[0] == '@' && at != NULL &&
		    strlen(at) == l && strncasecmp(p, at, l) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

/* ---- the verifier thread ------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct users_entry *)a)->name,
		      ((const struct users_entry *)b)->name);
}

/* Re-reads the file when it changed; keeps the old table on error. */
static void maybe_reload(struct users_db *db, bool force)
{
	struct users_entry *v;
	struct stat st;
	time_t now = time(NULL);
	char err[256];
	size_t n;
	int rc;

	if (!force && now - db->last_check < USERS_RELOAD_CHECK_S)
		return;
	db->last_check = now;
	if (stat(db->path, &st) != 0) {
		if (db->have_st || force) {
			LOG(force ? LOG_NOTICE : LOG_WARNING, "users: %s: %s; "
			    "no user can log in", db->path, strerror(errno));
			free(db->tab);
			db->tab = NULL;
			db->ntab = 0;
			db->have_st = false;
			atomic_store(&db->count, 0);
		}
		return;
	}
	if (!force && db->have_st && st.st_mtim.tv_sec == db->st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == db->st.st_mtim.tv_nsec &&
	    st.st_size == db->st.st_size && st.st_ino == db->st.st_ino)
		return;
	rc = users_file_read(db->path, &v, &n, err, sizeof(err));
	if (rc != 0) {
		LOG(LOG_ERR, "users: %s:%s; keeping the %zu users loaded "
		    "before", db->path, err, db->ntab);
		db->st = st;
		db->have_st = true;
		return;
	}
	qsort(v, n, sizeof(*v), cmp_entry);
	free(db->tab);
	db->tab = v;
	db->ntab = n;
	db->st = st;
	db->have_st = true;
	atomic_store(&db->count, n);
	LOG(LOG_INFO, "users: %s: %zu user%s loaded", db->path, n,
	    n == 1 ? "" : "s");
}

static void verify(struct users_db *db, struct users_req *r)
{
	struct users_entry key, *e;
	struct timespec t0, t1;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r->user[USERS_NAME_MAX] = '\0';
	r->pass[USERS_PASS_MAX] = '\0';
	snprintf(key.name, sizeof(key.name), "%s", r->user);
	e = db->ntab ? bsearch(&key, db->tab, db->ntab, sizeof(*db->tab),
			       cmp_entry) : NULL;
	if (e != NULL) {
		ok = hash_ok(db->cd, e->hash, r->pass);
		snprintf(r->addrs, sizeof(r->addrs), "%s", e->addrs);
	} else {
		(void)hash_ok(db->cd, db->dummy, r->pass);
		ok = false;
		r->addrs[0] = '\0';
	}
	wipe(r->pass, sizeof(r->pass));
	r->status = ok ? 0 : -EACCES;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r->hash_us = (uint32_t)((t1.tv_sec - t0.tv_sec) * 1000000 +
				(t1.tv_nsec - t0.tv_nsec) / 1000);
}

static void complete(struct users_db *db, struct users_req *r)
{
	/* the worker drains its ring every loop: this waits micro-
	 * seconds at most, and only when 1024 answers are unread */
	while (rte_ring_mp_enqueue(db->done[r->worker], r) != 0) {
		struct timespec ts = { 0, 100 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static void *verifier_main(void *arg)
{
	struct users_db *db = arg;

	for (;;) {
		struct timespec ts;
		void *p;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += USERS_RELOAD_CHECK_S;
		if (rte_ring_count(db->req) == 0 && !atomic_load(&db->stop))
			(void)sem_timedwait(&db->wake, &ts);
		maybe_reload(db, false);
		while (rte_ring_sc_dequeue(db->req, &p) == 0) {
			struct users_req *r = p;

			if (atomic_load(&db->stop)) {
				wipe(r->pass, sizeof(r->pass));
				r->status = -EIO;
			} else {
				verify(db, r);
			}
			complete(db, r);
		}
		if (atomic_load(&db->stop))
			break;
	}
	return NULL;
}

int users_start(const char *path, unsigned nworkers, struct users_db **out)
{
	struct users_db *db = calloc(1, sizeof(*db));
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *h;

	if (db == NULL)
		return -ENOMEM;
	snprintf(db->path, sizeof(db->path), "%s", path);
	db->nworkers = nworkers;
	db->cd = calloc(1, sizeof(*db->cd));
	db->done = calloc(nworkers, sizeof(*db->done));
	db->req = spool_ring_new("users_req", USERS_RING);
	if (db->cd == NULL || db->done == NULL || db->req == NULL)
		goto fail;
	for (unsigned i = 0; i < nworkers; i++) {
		/* single consumer (the worker), one producer (us) */
		db->done[i] = spool_ring_new("users_done", USERS_RING);
		if (db->done[i] == NULL)
			goto fail;
	}
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL ||
	    (h = crypt_r(DUMMY_PASS, salt, db->cd)) == NULL || h[0] == '*')
		goto fail;
	snprintf(db->dummy, sizeof(db->dummy), "%s", h);
	if (sem_init(&db->wake, 0, 0) != 0)
		goto fail;
	maybe_reload(db, true);
	if (pthread_create(&db->th, NULL, verifier_main, db) != 0) {
		sem_destroy(&db->wake);
		goto fail;
	}
	pthread_setname_np(db->th, "dpm-verify");
	db->th_started = true;
	*out = db;
	return 0;
fail:
	users_stop(db);
	return -ENOMEM;
}

void users_stop(struct users_db *db)
{
	if (db == NULL)
		return;
	if (db->th_started) {
		atomic_store(&db->stop, true);
		sem_post(&db->wake);
		pthread_join(db->th, NULL);
		sem_destroy(&db->wake);
	}
	if (db->done != NULL)
		for (unsigned i = 0; i < db->nworkers; i++)
			free(db->done[i]);
	free(db->done);
	free(db->req);
	free(db->tab);
	if (db->cd != NULL)
		wipe(db->cd, sizeof(*db->cd));
	free(db->cd);
	free(db);
}

int users_submit(struct users_db *db, struct users_req *r)
{
	if (r->worker >= db->nworkers)
		return -EINVAL;
	if (rte_ring_mp_enqueue(db->req, r) != 0)
		return -ENOBUFS;
	sem_post(&db->wake);
	return 0;
}

unsigned users_completions(struct users_db *db, unsigned worker,
			   struct users_req **out, unsigned max)
{
	return rte_ring_sc_dequeue_burst(db->done[worker], (void **)out, max,
					 NULL);
}

size_t users_count(struct users_db *db)
{
	return atomic_load(&db->count);
}
