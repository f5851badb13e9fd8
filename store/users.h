/*
 * users.h: the user directory (SMTP AUTH, later POP3/IMAP logins) and
 * the thread that checks passwords against it.
 *
 * The file: one user a line, "name:hash[:addr,addr...]"; '#' starts a
 * comment line. hash is a crypt(3) string made by libxcrypt, yescrypt
 * ("$y$...") by default; a plaintext password is never stored or
 * accepted. The optional third field lists the envelope senders the
 * user may use (see users_sender_ok). dpmailctl edits the file by
 * writing a temporary file, fsync and rename, so a reader sees the old
 * file or the new one, never half of one.
 *
 * The verifier: hashing costs milliseconds of CPU on purpose, which no
 * worker may spend (DESIGN.md, "Cores and threads"). A worker puts a
 * users_req on the verifier's request ring (multi-producer) and goes
 * on; one verifier thread hashes, then puts the request on the worker's
 * completion ring, where the worker picks it up from its poll loop. The
 * verifier re-reads the file when its mtime, size or inode change
 * (checked at most once a second), so `dpmailctl user add` takes effect
 * without a restart.
 *
 * Unknown users cost the same hash as known ones (against a dummy hash),
 * so timing does not tell which names exist.
 *
 * Errors: negative errno values. users_submit: -ENOBUFS when the ring
 * is full (answer 454 and let the client retry).
 */
#ifndef DPMAIL_STORE_USERS_H
#define DPMAIL_STORE_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USERS_NAME_MAX 255
#define USERS_PASS_MAX 255
#define USERS_HASH_MAX 255
#define USERS_ADDRS_MAX 1023

/* One check. The worker fills user, pass, worker and cookie; the
 * verifier wipes pass and sets status: 0 good, -EACCES bad (or no such
 * user), -EIO the file cannot be read; addrs gets the user's sender
 * list ("" when none). */
struct users_req {
	char user[USERS_NAME_MAX + 1];
	char pass[USERS_PASS_MAX + 1];
	char addrs[USERS_ADDRS_MAX + 1];
	unsigned worker;
	void *cookie;
	int status;
	uint32_t hash_us;   /* how long the hash took on the verifier */
};

struct users_db;

/* Starts the verifier for path (which need not exist yet: then every
 * check fails until it does). nworkers completion rings. */
int users_start(const char *path, unsigned nworkers, struct users_db **out);
/* Stops the thread; requests still queued are answered -EIO first. */
void users_stop(struct users_db *db);
/* Worker side; never blocks. */
int users_submit(struct users_db *db, struct users_req *r);
unsigned users_completions(struct users_db *db, unsigned worker,
			   struct users_req **out, unsigned max);
/* Users in the file as last loaded (for the start-up log line). */
size_t users_count(struct users_db *db);

/* May `user` (with its sender list addrs, from a check) send as
 * mail_from? The null sender and any address listed in addrs are
 * allowed; a user named like an address may send as that address; a
 * bare name may send as name@any-domain. Case-insensitive. */
bool users_sender_ok(const char *user, const char *addrs,
		     const char *mail_from);

/* ---- the file, for dpmailctl and tests (blocking; never on a worker) */

struct users_entry {
	char name[USERS_NAME_MAX + 1];
	char hash[USERS_HASH_MAX + 1];
	char addrs[USERS_ADDRS_MAX + 1];
};

/* Reads path; a missing file is an empty list. Entries are returned in
 * file order in a malloc'd array (*out, *n). -EINVAL with "LINE: why"
 * in err for a bad line, -errno for I/O. */
int users_file_read(const char *path, struct users_entry **out, size_t *n,
		    char *err, size_t errlen);
/* Writes the list to path atomically (temp file in the same folder,
 * fsync, rename, fsync of the folder), mode 0640. */
int users_file_write(const char *path, const struct users_entry *e,
		     size_t n);
/* A new yescrypt hash of pass into out. 0, -EINVAL, -EIO. */
int users_hash(const char *pass, char *out, size_t cap);
/* Does pass match hash? Constant work for a given hash. */
bool users_hash_ok(const char *hash, const char *pass);
/* Name check: 1-255 printable characters, no ':' or space. */
bool users_name_valid(const char *name);

#endif
