/*
 * test_ctl.c: the control socket's request handling (mgmt/ctl.c):
 * parse, validate, dispatch, encode; then the socket itself (0600, a
 * stale file replaced, a live one refused, a request over the limit).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "mgmt/ctl.h"

static int echo(void *arg, const json_t *req, json_t *r, char *err,
		size_t errlen)
{
	const char *s = NULL;
	uint64_t n = 0;
	bool b = false;
	const char **ids = NULL;
	size_t nids = 0;

	(*(int *)arg)++;
	if (ctl_arg_str(req, "s", &s, err, errlen) < 0 ||
	    ctl_arg_uint(req, "n", &n, err, errlen) < 0 ||
	    ctl_arg_bool(req, "b", &b, err, errlen) < 0 ||
	    ctl_arg_strs(req, "ids", &ids, &nids, err, errlen) < 0)
		return -1;
	if (s != NULL)
		json_object_set_new(r, "s", json_string(s));
	json_object_set_new(r, "n", json_integer((json_int_t)n));
	json_object_set_new(r, "b", json_boolean(b));
	json_object_set_new(r, "nids", json_integer((json_int_t)nids));
	free(ids);
	return 0;
}

static int fails(void *arg, const json_t *req, json_t *r, char *err,
		 size_t errlen)
{
	(void)arg;
	(void)req;
	(void)r;
	snprintf(err, errlen, "no such thing");
	return -1;
}

static const struct ctl_verb verbs[] = {
	{ "echo", echo },
	{ "fails", fails },
	{ NULL, NULL },
};

/* the reply to line, parsed; its text must be one line */
static json_t *ask(const char *line, int *calls)
{
	char *out = ctl_handle_line(verbs, calls, line, strlen(line));
	json_t *r;
	size_t n;

	cr_assert_not_null(out);
	n = strlen(out);
	cr_assert(n > 0 && out[n - 1] == '\n', "reply must end in LF");
	cr_assert_null(memchr(out, '\n', n - 1), "one line: %s", out);
	r = json_loads(out, 0, NULL);
	cr_assert_not_null(r, "reply is JSON: %s", out);
	free(out);
	return r;
}

static void expect_error(const char *line, const char *why)
{
	int calls = 0;
	json_t *r = ask(line, &calls);

	cr_expect(json_is_false(json_object_get(r, "ok")), "%s", line);
	cr_expect_not_null(strstr(json_string_value(json_object_get(r,
		"error")) ?: "", why), "%s: error '%s' lacks '%s'", line,
		json_string_value(json_object_get(r, "error")), why);
	json_decref(r);
}

Test(ctl, good_requests_dispatch)
{
	int calls = 0;
	json_t *r = ask("{\"verb\":\"echo\",\"s\":\"x\",\"n\":7,\"b\":true,"
			"\"ids\":[\"a\",\"b\"]}", &calls);

	cr_assert_eq(calls, 1);
	cr_assert(json_is_true(json_object_get(r, "ok")));
	cr_assert_str_eq(json_string_value(json_object_get(r, "s")), "x");
	cr_assert_eq(json_integer_value(json_object_get(r, "n")), 7);
	cr_assert(json_is_true(json_object_get(r, "b")));
	cr_assert_eq(json_integer_value(json_object_get(r, "nids")), 2);
	json_decref(r);
	/* absent and null arguments are the same */
	r = ask("{\"verb\":\"echo\",\"s\":null}", &calls);
	cr_assert(json_is_true(json_object_get(r, "ok")));
	cr_assert_null(json_object_get(r, "s"));
	json_decref(r);
}

Test(ctl, bad_requests_get_errors)
{
	static const struct { const char *line, *why; } cases[] = {
		{ "hello", "bad JSON" },
		{ "{\"verb\":\"echo\"", "bad JSON" },
		{ "", "bad JSON" },
		{ "[1,2]", "a request is a JSON object" },
		{ "\"echo\"", "bad JSON" },
		{ "{}", "\"verb\" (a string) is required" },
		{ "{\"verb\":5}", "\"verb\" (a string) is required" },
		{ "{\"verb\":\"nope\"}", "unknown verb 'nope'" },
		{ "{\"verb\":\"echo\",\"verb\":\"echo\"}", "bad JSON" },
		{ "{\"verb\":\"echo\",\"s\":5}", "\"s\" must be a string" },
		{ "{\"verb\":\"echo\",\"n\":\"5\"}", "whole number" },
		{ "{\"verb\":\"echo\",\"n\":-1}", "whole number" },
		{ "{\"verb\":\"echo\",\"n\":1.5}", "whole number" },
		{ "{\"verb\":\"echo\",\"b\":1}", "true or false" },
		{ "{\"verb\":\"echo\",\"ids\":\"a\"}", "array of strings" },
		{ "{\"verb\":\"echo\",\"ids\":[\"a\",1]}", "array of strings" },
		{ "{\"verb\":\"fails\"}", "no such thing" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		expect_error(cases[i].line, cases[i].why);
}

Test(ctl, request_over_the_limit)
{
	size_t n = CTL_MAX_REQUEST + 10;
	char *big = malloc(n);
	char *out;

	cr_assert_not_null(big);
	memset(big, ' ', n);
	memcpy(big, "{\"verb\":\"echo\"}", 15);
	out = ctl_handle_line(verbs, &(int){ 0 }, big, n);
	cr_assert_not_null(strstr(out, "too long"), "%s", out);
	free(out);
	free(big);
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static size_t read_line(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len - 1) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got) != NULL)
			break;
	}
	buf[got] = '\0';
	return got;
}

Test(ctl, socket_mode_stale_live_and_limit)
{
	char dir[] = "/tmp/ut-ctl-XXXXXX", path[64], err[256], buf[512];
	struct ctl *c, *c2;
	struct stat st;
	int calls = 0, fd;
	char *big;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/run/ctl.sock", dir);
	/* a stale socket file (no one listens) is replaced */
	cr_assert_eq(ctl_open(&c, path, err, sizeof(err)), 0, "%s", err);
	ctl_close(c);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	close(fd); /* the file stays, nothing listens: stale */
	cr_assert_eq(ctl_open(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert_eq(ctl_start(c, verbs, &calls), 0);
	/* a live one is not taken over */
	cr_assert_eq(ctl_open(&c2, path, err, sizeof(err)), -EADDRINUSE);
	cr_assert_not_null(strstr(err, "another dpmaild"), "%s", err);

	fd = connect_to(path);
	cr_assert(fd >= 0);
	/* two requests in one write, answered in order */
	cr_assert_eq(write(fd, "{\"verb\":\"echo\",\"n\":1}\n{\"verb\":\"x\"}\n",
			   35), 35);
	read_line(fd, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "\"ok\":true"), "%s", buf);
	if (strchr(buf, '\n')[1] == '\0')
		read_line(fd, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "unknown verb"), "%s", buf);
	close(fd);

	/* over the limit: an error, then the connection is closed */
	fd = connect_to(path);
	big = malloc(CTL_MAX_REQUEST * 2);
	memset(big, 'x', CTL_MAX_REQUEST * 2);
	(void)!send(fd, big, CTL_MAX_REQUEST * 2, MSG_NOSIGNAL);
	read_line(fd, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "too long"), "%s", buf);
	/* closed after (a reset: what we sent beyond the limit is unread) */
	cr_assert_leq(read(fd, buf, sizeof(buf)), 0, "closed after");
	close(fd);
	free(big);
	/* and it still serves */
	fd = connect_to(path);
	cr_assert_eq(write(fd, "{\"verb\":\"echo\"}\n", 16), 16);
	read_line(fd, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "\"ok\":true"), "%s", buf);
	close(fd);
	ctl_close(c);
	cr_assert_neq(access(path, F_OK), 0, "the file is removed");
	snprintf(buf, sizeof(buf), "%s/run", dir);
	rmdir(buf);
	rmdir(dir);
}

/* [log] format = json, output = FILE (common/log.c): every line one JSON
 * object, the message escaped; lines appended */
Test(log, json_lines_to_a_file)
{
	char path[] = "/tmp/ut-log-XXXXXX", err[256], line[4096];
	int fd = mkstemp(path);
	FILE *f;
	int n = 0;

	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(log_open(LOG_FMT_JSON, path, err, sizeof(err)), 0, "%s",
		     err);
	LOG(LOG_NOTICE, "a \"quoted\" word, a \\ and a\nnew line");
	LOG(LOG_DEBUG, "below the level: not written");
	LOG(LOG_WARNING, "second %d", 2);
	LOG(LOG_NOTICE, "qmgr: 0F3K2J8Q1ZP4XA: from=<a@b>, size=1");
	LOG(LOG_NOTICE, "qmgr: 0F3K2J8Q1ZP4X: short");
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		json_t *j = json_loads(line, 0, NULL);
		cr_assert_not_null(j, "not JSON: %s", line);
		cr_assert(json_is_string(json_object_get(j, "time")));
		if (n == 0) {
			cr_assert_str_eq(json_string_value(json_object_get(j,
				"level")), "notice");
			cr_assert_str_eq(json_string_value(json_object_get(j,
				"msg")), "a \"quoted\" word, a \\ and a\nnew "
				"line");
		} else if (n == 1) {
			cr_assert_str_eq(json_string_value(json_object_get(j,
				"msg")), "second 2");
			cr_assert_null(json_object_get(j, "component"));
		} else if (n == 2) {
			/* "component: QID: ..." as fields too */
			cr_assert_str_eq(json_string_value(json_object_get(j,
				"component")), "qmgr");
			cr_assert_str_eq(json_string_value(json_object_get(j,
				"qid")), "0F3K2J8Q1ZP4XA");
		} else {
			cr_assert_str_eq(json_string_value(json_object_get(j,
				"component")), "qmgr");
			cr_assert_null(json_object_get(j, "qid"));
		}
		json_decref(j);
		n++;
	}
	fclose(f);
	cr_assert_eq(n, 4);
	cr_assert_eq(log_open(LOG_FMT_TEXT, "/nonexistent/dir/log", err,
			      sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "/nonexistent/dir/log"), "%s", err);
	unlink(path);
}

static void flood_line(int i)
{
	LOG_RLN(LOG_NOTICE, 1, 3, "flood %d", i);
}

/* LOG_RL (common/log.h): a call site writes its burst, counts what it
 * drops, and says how many before its next line. */
Test(log, rate_limited_lines_count_what_they_drop)
{
	char path[] = "/tmp/ut-log-XXXXXX", err[256], line[4096];
	int fd = mkstemp(path), n = 0, floods = 0;
	FILE *f;

	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(log_open(LOG_FMT_TEXT, path, err, sizeof(err)), 0, "%s",
		     err);
	for (int i = 0; i < 100; i++)
		flood_line(i);
	usleep(1100 * 1000);    /* one token back */
	flood_line(100);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "notice: flood ") != NULL) {
			/* 0, 1, 2 (the burst), then 100 */
			cr_assert_eq(atoi(strstr(line, "flood ") + 6),
				     floods < 3 ? floods : 100, "%s", line);
			floods++;
		} else {
			cr_assert_not_null(strstr(line, "notice: log: 97 lines "
				"like the next were suppressed (rate limit)"),
				"%s", line);
			cr_assert_eq(floods, 3, "before the line after them");
		}
		n++;
	}
	fclose(f);
	cr_assert_eq(floods, 4);
	cr_assert_eq(n, 5);
	unlink(path);
}
