/*
 * mailbox.h: durable local delivery into Maildir mailboxes, with a
 * per-mailbox UID index. Group commit: one batch costs a fixed number of
 * syncs, not one per message.
 *
 * Owns: the mailbox root directory (conf.dir) and everything under it;
 * per-mailbox in-memory state (next UID, usage for quota), loaded from the
 * index on first touch and cached for the store's life; the delivery
 * counters.
 *
 * On disk:
 *   DIR/<user>/                 mailbox "user"
 *   DIR/@<domain>/<user>/       mailbox "user@domain" (the '@' keeps the
 *                               two name spaces apart: a user name never
 *                               holds one)
 *   each mailbox: tmp/ new/ cur/ (Maildir) and dpmail.index:
 *     "dpmail-index 1 V<uidvalidity> N<next_uid>\n"   (the header, once)
 *     "<uid> <name> <size>\n"                         (one per message)
 *   The index is append-only. A reader ignores a last line without its
 *   newline (a torn append); the store cuts such a tail off before it
 *   appends. UIDs are strictly increasing; next_uid is the larger of the
 *   header's N and the last UID + 1.
 *   A message file is "Return-Path: <sender>\r\nDelivered-To: rcpt\r\n"
 *   followed by the body byte for byte; its name follows the Maildir
 *   convention: <sec>.M<usec>P<pid>Q<counter>.<host>,S=<file size>.
 *
 * Mailbox names (from routing): folded to lower case; refused with
 * -EINVAL when empty, over MAILBOX_NAME_MAX bytes, holding '/', a control
 * character, white space, more than one '@', an empty user or domain, or a
 * part that starts with '.' (which also rules out "." and "..").
 *
 * The promise of mailbox_deliver: when it returns, every item with status
 * 0 has its file in new/ and its index line written, both on stable
 * storage, with their directory entries. The batch: every file is written
 * into tmp/; one syncfs() makes them durable; then they are renamed into
 * new/ (never over an existing file) and the index lines are appended; one
 * more syncfs() makes the renames and the index durable. A crash before the
 * second sync may leave a complete file in new/ without an index line (the
 * caller got no status 0 and delivers again): never a partial file in
 * new/. The store's first touch of a mailbox gives such files UIDs (a
 * duplicate at worst, never hidden mail) and removes tmp/ files older than
 * 36 hours. syncfs() reports write-back errors since Linux 5.8; it also
 * flushes other writers' dirty data on the same file system, which is why
 * it is paid twice per batch and never per message. sync_per_file (an
 * fdatasync per file, an fsync per touched new/ and index) is there to
 * compare with. With conf.fsync false, no sync at all (tests, benchmarks).
 *
 * Item status: 0 durable; -EINVAL bad mailbox name or a CR/LF in the
 * return path or recipient; -EDQUOT it would pass the mailbox's quota
 * (nothing written); -ENOSPC, -EIO, ... an I/O error (its tmp file is
 * removed; other items go on where they can; a failed sync fails every
 * item it covered).
 *
 * Threads: a store is used by one delivery thread at a time; a mutex
 * makes mailbox_usage and mailbox_get_stats safe from any thread (they
 * wait while a batch is being written). mailbox_index_load needs no
 * store and may run anywhere; it sees only whole lines.
 */
#ifndef DPMAIL_STORE_MAILBOX_H
#define DPMAIL_STORE_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAILBOX_NAME_MAX 255
#define MAILBOX_FILE_NAME_MAX 160
#define MAILBOX_INDEX_FILE "dpmail.index"

struct mailbox_conf {
	char dir[4096];          /* root, created as needed */
	uint64_t quota_bytes;    /* per mailbox, 0 = none */
	uint32_t quota_messages; /* per mailbox, 0 = none */
	bool fsync;              /* default true; false only for tests/benchmarks */
	char hostname[256];      /* for unique names; default gethostname() */
	/* default false: fdatasync every file and fsync every touched
	 * directory and index instead of syncfs(); for comparison only */
	bool sync_per_file;
};

void mailbox_conf_defaults(struct mailbox_conf *c);

struct mailbox_store;

/* Creates conf->dir if missing. 0, or a negative errno with the reason in
 * err (when err is not NULL). */
int mailbox_open(struct mailbox_store **out, const struct mailbox_conf *c,
		 char *err, size_t errlen);
void mailbox_close(struct mailbox_store *ms);

struct mailbox_item {
	const char *mailbox;      /* "alice" or "alice@example.org" */
	const char *return_path;  /* envelope sender, "" = null sender */
	const char *delivered_to; /* the envelope recipient as given */
	const uint8_t *body;      /* whole message, CRLF line endings */
	size_t body_len;
	uint64_t arrival_us;      /* wall clock, for the name (0 = now) */
	/* out */
	int status;
	uint32_t uid;
	char name[MAILBOX_FILE_NAME_MAX]; /* its file name in new/ */
};

/* Delivers every item, each with its own status (see above). Returns the
 * number delivered (status 0). */
size_t mailbox_deliver(struct mailbox_store *ms, struct mailbox_item *it,
		       size_t n);

struct mailbox_index_entry {
	uint32_t uid;
	char name[MAILBOX_FILE_NAME_MAX];
	uint64_t size;
};
struct mailbox_index {
	uint32_t uidvalidity, next_uid;
	size_t n;
	struct mailbox_index_entry *e;
};

/* 0; -ENOENT when the mailbox has no index; -EINVAL bad name or no valid
 * header; -ENOMEM; other negative errno from reading. */
int mailbox_index_load(const struct mailbox_conf *c, const char *mailbox,
		       struct mailbox_index *out);
void mailbox_index_free(struct mailbox_index *ix);

/* Usage as quota sees it (every indexed message). 0 (a mailbox never
 * delivered to has 0, 0), or -EINVAL bad name, or an errno from loading. */
int mailbox_usage(struct mailbox_store *ms, const char *mailbox,
		  uint64_t *bytes, uint32_t *msgs);

/* The mailbox's directory relative to conf.dir ("alice",
 * "@example.org/alice"): 0 or -EINVAL. out needs MAILBOX_NAME_MAX + 2. */
int mailbox_path(const char *mailbox, char *out, size_t outlen);

struct mailbox_stats {
	uint64_t delivered;     /* items with status 0 */
	uint64_t bytes;         /* their file sizes */
	uint64_t batches;       /* mailbox_deliver calls */
	uint64_t syncs;         /* syncfs/fsync/fdatasync calls */
	uint64_t quota_refused; /* -EDQUOT items */
	uint64_t errors;        /* items failed for I/O (not EINVAL/EDQUOT) */
	uint64_t mailboxes;     /* mailboxes cached in the store */
	uint64_t adopted;       /* files found in new/ without an index line */
	int last_error;         /* last I/O error, negative errno, or 0 */
};
void mailbox_get_stats(struct mailbox_store *ms, struct mailbox_stats *out);

/* Tests only: fault injection. The hook is called before each write of a
 * message file ("write"), each sync ("sync") and each index append
 * ("index"); a negative errno return fails that step as if the system
 * call had. NULL removes it. */
typedef int (*mailbox_fault_fn)(void *arg, const char *step);
void mailbox_set_fault_hook(struct mailbox_store *ms, mailbox_fault_fn fn,
			    void *arg);

#endif /* DPMAIL_STORE_MAILBOX_H */
