/*
 * ctl.c: the control socket: a poll loop over a Unix listener and a few
 * clients, one JSON request per line, answered in order.
 *
 * Must never: block on a slow client for long (replies go out with a
 * send timeout; a client that does not read is dropped), or let a bad
 * request stop the thread. Runs on an ordinary pthread, never a worker.
 */
#include "mgmt/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"

#define CTL_SEND_TIMEOUT_S 2

struct ctl_client {
	int fd;
	size_t len;
	char *buf;     /* CTL_MAX_REQUEST + 1 */
};

struct ctl {
	int lfd;
	int wake[2];   /* pipe: ctl_close wakes the poll */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const struct ctl_verb *verbs;
	void *arg;
	pthread_t th;
	bool running;
	struct ctl_client cl[CTL_MAX_CLIENTS];
};

/* ---- request handling (no I/O) ------------------------------------- */

static char *error_line(const char *why)
{
	json_t *r = json_pack("{s:b, s:s}", "ok", 0, "error", why);
	char *s, *line;
	size_t n;

	if (r == NULL)
		return NULL;
	s = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	if (s == NULL)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 2);
	if (line == NULL) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	return line;
}

char *ctl_handle_line(const struct ctl_verb *verbs, void *arg,
		      const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req, *reply, *v;
	const char *verb;
	char err[512], *s, *out;
	size_t n;

	if (len > CTL_MAX_REQUEST)
		return error_line("request too long");
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		snprintf(err, sizeof(err), "bad JSON: %s (column %d)",
			 jerr.text, jerr.column);
		return error_line(err);
	}
	if (!json_is_object(req)) {
		json_decref(req);
		return error_line("a request is a JSON object");
	}
	v = json_object_get(req, "verb");
	if (!json_is_string(v)) {
		json_decref(req);
		return error_line("\"verb\" (a string) is required");
	}
	verb = json_string_value(v);
	for (; verbs->name != NULL; verbs++)
		if (strcmp(verbs->name, verb) == 0)
			break;
	if (verbs->name == NULL) {
		snprintf(err, sizeof(err), "unknown verb '%.64s'", verb);
		json_decref(req);
		return error_line(err);
	}
	reply = json_object();
	if (reply == NULL) {
		json_decref(req);
		return NULL;
	}
	err[0] = '\0';
	if (verbs->fn(arg, req, reply, err, sizeof(err)) != 0) {
		json_decref(reply);
		json_decref(req);
		return error_line(err[0] ? err : "failed");
	}
	json_decref(req);
	json_object_set_new(reply, "ok", json_true());
	s = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(reply);
	if (s == NULL)
		return NULL;
	n = strlen(s);
	out = realloc(s, n + 2);
	if (out == NULL) {
		free(s);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	return out;
}

int ctl_arg_str(const json_t *req, const char *key, const char **out,
		char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "\"%s\" must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

int ctl_arg_uint(const json_t *req, const char *key, uint64_t *out,
		 char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, errlen, "\"%s\" must be a whole number", key);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 1;
}

int ctl_arg_bool(const json_t *req, const char *key, bool *out, char *err,
		 size_t errlen)
{
	const json_t *v = json_object_get(req, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		snprintf(err, errlen, "\"%s\" must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 1;
}

int ctl_arg_strs(const json_t *req, const char *key, const char ***out,
		 size_t *n, char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, key);
	const char **a;
	size_t i, cnt;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v)) {
		snprintf(err, errlen, "\"%s\" must be an array of strings",
			 key);
		return -1;
	}
	cnt = json_array_size(v);
	a = calloc(cnt + 1, sizeof(*a));
	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(v, i);
		if (!json_is_string(e)) {
			free(a);
			snprintf(err, errlen, "\"%s\" must be an array of "
				 "strings", key);
			return -1;
		}
		a[i] = json_string_value(e);
	}
	*out = a;
	*n = cnt;
	return 1;
}

/* ---- the socket ------------------------------------------------------ */

static int mkdir_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int ctl_open(struct ctl **out, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct ctl *c;
	mode_t old;
	int fd, rc;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path) || path[0] == '\0') {
		snprintf(err, errlen, "control socket path '%s' is empty or "
			 "longer than %zu characters", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path));
	rc = mkdir_parent(path);
	if (rc != 0) {
		snprintf(err, errlen, "control socket %s: cannot create its "
			 "folder: %s", path, strerror(-rc));
		return rc;
	}
	/* A daemon already answering there keeps it; a stale file (its
	 * daemon died) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto sockerr;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		snprintf(err, errlen, "control socket %s: another dpmaild is "
			 "running there", path);
		return -EADDRINUSE;
	}
	close(fd);
	if (unlink(path) != 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "control socket %s: cannot remove the "
			 "old file: %s", path, strerror(errno));
		return rc;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto sockerr;
	old = umask(0177); /* before any thread: 0600 from the start */
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc != 0 || listen(fd, 16) != 0) {
		rc = -errno;
		close(fd);
		snprintf(err, errlen, "control socket %s: %s", path,
			 strerror(-rc));
		return rc;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		unlink(path);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->lfd = fd;
	c->wake[0] = c->wake[1] = -1;
	snprintf(c->path, sizeof(c->path), "%s", path);
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		c->cl[i].fd = -1;
	*out = c;
	return 0;
sockerr:
	rc = -errno;
	snprintf(err, errlen, "control socket: %s", strerror(errno));
	return rc;
}

static void client_close(struct ctl_client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = -1;
	free(cl->buf);
	cl->buf = NULL;
	cl->len = 0;
}

/* Blocking send with a timeout: replies are small, clients read them. */
static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd pf = { .fd = fd, .events = POLLOUT };
				if (poll(&pf, 1, CTL_SEND_TIMEOUT_S * 1000) <= 0)
					return -1;
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void reply(struct ctl *c, struct ctl_client *cl, const char *line,
		  size_t len)
{
	char *r = ctl_handle_line(c->verbs, c->arg, line, len);

	if (r == NULL) {
		client_close(cl);
		return;
	}
	if (send_all(cl->fd, r, strlen(r)) != 0)
		client_close(cl);
	free(r);
}

static void client_read(struct ctl *c, struct ctl_client *cl)
{
	ssize_t n = recv(cl->fd, cl->buf + cl->len,
			 CTL_MAX_REQUEST + 1 - cl->len, MSG_DONTWAIT);
	char *nl;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(cl);
		return;
	}
	if (n < 0)
		return;
	cl->len += (size_t)n;
	while (cl->fd >= 0 && (nl = memchr(cl->buf, '\n', cl->len)) != NULL) {
		size_t l = (size_t)(nl - cl->buf);
		size_t used = l + 1;
		if (l > 0 && cl->buf[l - 1] == '\r')
			l--;
		if (l > 0)
			reply(c, cl, cl->buf, l);
		if (cl->fd < 0)
			return;
		memmove(cl->buf, cl->buf + used, cl->len - used);
		cl->len -= used;
	}
	if (cl->len > CTL_MAX_REQUEST) {
		static const char msg[] = "{\"ok\":false,\"error\":\"request "
			"too long (the limit is 65536 bytes)\"}\n";
		LOG_RL(LOG_WARNING, "ctl: a request over %u bytes; connection "
		       "closed", CTL_MAX_REQUEST);
		(void)send_all(cl->fd, msg, sizeof(msg) - 1);
		client_close(cl);
	}
}

static void accept_one(struct ctl *c)
{
	int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct ctl_client *cl = &c->cl[i];
		if (cl->fd >= 0)
			continue;
		cl->buf = malloc(CTL_MAX_REQUEST + 1);
		if (cl->buf == NULL)
			break;
		cl->fd = fd;
		cl->len = 0;
		return;
	}
	{
		static const char msg[] = "{\"ok\":false,\"error\":\"too many "
			"control connections\"}\n";
		(void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
	}
	close(fd);
}

static void *ctl_thread(void *arg)
{
	struct ctl *c = arg;
	struct pollfd pf[CTL_MAX_CLIENTS + 2];
	int map[CTL_MAX_CLIENTS + 2];

	for (;;) {
		nfds_t n = 0;
		pf[n] = (struct pollfd){ .fd = c->wake[0], .events = POLLIN };
		map[n++] = -2;
		pf[n] = (struct pollfd){ .fd = c->lfd, .events = POLLIN };
		map[n++] = -1;
		for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
			if (c->cl[i].fd >= 0) {
				pf[n] = (struct pollfd){ .fd = c->cl[i].fd,
							 .events = POLLIN };
				map[n++] = (int)i;
			}
		if (poll(pf, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			LOG(LOG_ERR, "ctl: poll: %s", strerror(errno));
			return NULL;
		}
		if (pf[0].revents != 0)
			return NULL;
		for (nfds_t i = 1; i < n; i++) {
			if (pf[i].revents == 0)
				continue;
			if (map[i] == -1)
				accept_one(c);
			else
				client_read(c, &c->cl[map[i]]);
		}
	}
}

int ctl_start(struct ctl *c, const struct ctl_verb *verbs, void *arg)
{
	int rc;

	c->verbs = verbs;
	c->arg = arg;
	if (pipe2(c->wake, O_CLOEXEC) != 0)
		return -errno;
	rc = pthread_create(&c->th, NULL, ctl_thread, c);
	if (rc != 0)
		return -rc;
	pthread_setname_np(c->th, "dpmail-ctl");
	c->running = true;
	return 0;
}

void ctl_close(struct ctl *c)
{
	if (c == NULL)
		return;
	if (c->running) {
		(void)!write(c->wake[1], "x", 1);
		pthread_join(c->th, NULL);
	}
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		client_close(&c->cl[i]);
	if (c->wake[0] >= 0) {
		close(c->wake[0]);
		close(c->wake[1]);
	}
	close(c->lfd);
	unlink(c->path);
	free(c);
}
