/*
 * ctl.h: the control socket that dpmailctl talks to.
 *
 * Protocol: newline-delimited JSON over a Unix stream socket (mode 0600).
 * Each request is one object on one line, {"verb": "queue.list", ...};
 * each reply is one object on one line, {"ok": true, ...} or
 * {"ok": false, "error": "why"}. A request longer than CTL_MAX_REQUEST
 * bytes gets an error reply and its connection is closed; bad JSON, an
 * unknown verb or an argument of the wrong type gets an error reply and
 * the connection (and the daemon) goes on.
 *
 * Owns: the listening socket, its file, one thread (poll loop over the
 * listener and up to CTL_MAX_CLIENTS connections). Requests run one at a
 * time on that thread; verbs must never touch a worker's state except by
 * reading its counters (mgmt/ctl_verbs.c).
 *
 * ctl_handle_line is the sans-I/O core (parse, validate, dispatch,
 * encode), unit-tested apart from the socket.
 */
#ifndef DPMAIL_MGMT_CTL_H
#define DPMAIL_MGMT_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_MAX_REQUEST (64 * 1024)
#define CTL_MAX_CLIENTS 16

/* A verb: fills reply (an object, "ok" added by the caller) and returns
 * 0, or returns -1 with the reason in err. */
typedef int (*ctl_fn)(void *arg, const json_t *req, json_t *reply,
		      char *err, size_t errlen);
struct ctl_verb {
	const char *name;
	ctl_fn fn;
};

/* One request line (without its newline) -> a reply line (malloc'd,
 * newline included; NULL only when out of memory). verbs ends with a
 * NULL name. */
char *ctl_handle_line(const struct ctl_verb *verbs, void *arg,
		      const char *line, size_t len);

/* Argument helpers for verbs: 0 when absent (out untouched), 1 when
 * present and well typed, -1 with err filled when of the wrong type. */
int ctl_arg_str(const json_t *req, const char *key, const char **out,
		char *err, size_t errlen);
int ctl_arg_uint(const json_t *req, const char *key, uint64_t *out,
		 char *err, size_t errlen);
int ctl_arg_bool(const json_t *req, const char *key, bool *out, char *err,
		 size_t errlen);
/* An array of strings; *n set to its size, (*out)[i] valid while req is */
int ctl_arg_strs(const json_t *req, const char *key, const char ***out,
		 size_t *n, char *err, size_t errlen);

struct ctl;
/* Binds path (0600; a stale file replaced; -EADDRINUSE if a live daemon
 * answers there). Call before any thread starts (it sets the umask for
 * the bind). 0 or a negative errno, with the reason in err. */
int ctl_open(struct ctl **out, const char *path, char *err, size_t errlen);
/* Starts the thread serving verbs with arg. 0 or a negative errno. */
int ctl_start(struct ctl *c, const struct ctl_verb *verbs, void *arg);
/* Stops the thread, closes every connection, removes the file. NULL ok. */
void ctl_close(struct ctl *c);

#endif
