/*
 * log.c: level-filtered log lines, one write(2) per line so that lines
 * from several threads never interleave: to stderr, a file (O_APPEND) or
 * syslog's datagram socket, as text or JSON lines.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* changed at run time by dpmailctl log level (the control thread) */
static _Atomic int log_level_cur = LOG_INFO;

/* set once by log_open before the threads start */
static int log_fd = STDERR_FILENO;
static enum log_format log_fmt = LOG_FMT_TEXT;
static int log_syslog;       /* log_fd is the /dev/log datagram socket */

static const char *const level_names[] = {
	[LOG_ERR] = "error",   [LOG_WARNING] = "warning",
	[LOG_NOTICE] = "notice", [LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	atomic_store_explicit(&log_level_cur, (int)level,
			      memory_order_relaxed);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&log_level_cur,
						    memory_order_relaxed);
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return (int)i;
	if (strcasecmp(name, "err") == 0)
		return LOG_ERR;
	return -1;
}

const char *log_level_name(enum log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "?";
	return level_names[level];
}

int log_open(enum log_format fmt, const char *output, char *err,
	     size_t errlen)
{
	int fd;

	if (strcmp(output, "stderr") == 0 || output[0] == '\0') {
		fd = STDERR_FILENO;
	} else if (strcmp(output, "syslog") == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/dev/log");
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa,
				      sizeof(sa)) != 0) {
			snprintf(err, errlen, "syslog: /dev/log: %s",
				 strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		log_syslog = 1;
	} else {
		fd = open(output, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			  0640);
		if (fd < 0) {
			snprintf(err, errlen, "%s: %s", output,
				 strerror(errno));
			return -1;
		}
	}
	log_fd = fd;
	log_fmt = fmt;
	return 0;
}

/* Queue IDs are 14 characters of 0-9 A-Z (store/spool_qid.h) */
#define LOG_QID_LEN 14

/* A line's shape, "component: QID: text" or "component: text" (every
 * line of ours; Postfix's too): the component (lower case, digits, '_')
 * and the queue ID ("" when the second field is not one), for JSON
 * lines to carry as fields. False when the line has no component. */
static bool msg_fields(const char *msg, char *comp, size_t clen,
		       char qid[LOG_QID_LEN + 1])
{
	size_t n = 0;

	while ((msg[n] >= 'a' && msg[n] <= 'z') ||
	       (msg[n] >= '0' && msg[n] <= '9') || msg[n] == '_')
		n++;
	if (n == 0 || n >= clen || msg[n] != ':' || msg[n + 1] != ' ')
		return false;
	memcpy(comp, msg, n);
	comp[n] = '\0';
	msg += n + 2;
	qid[0] = '\0';
	for (n = 0; n < LOG_QID_LEN; n++)
		if (!((msg[n] >= '0' && msg[n] <= '9') ||
		      (msg[n] >= 'A' && msg[n] <= 'Z')))
			return true;
	if (msg[LOG_QID_LEN] == ':') {
		memcpy(qid, msg, LOG_QID_LEN);
		qid[LOG_QID_LEN] = '\0';
	}
	return true;
}

/* s as the inside of a JSON string into out (NUL-terminated, cut short
 * rather than overflow); returns the length written */
static size_t json_escape(char *out, size_t len, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, len - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
	return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	/* syslog severities (RFC 5424) for our levels; facility mail (2) */
	static const int sev[] = { 3, 4, 5, 6, 7 };
	char msg[1024], line[2200], stamp[40];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	int w = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w < 0)
		msg[0] = '\0';
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ",
		 ts.tv_nsec / 1000000);
	if (log_syslog) {
		/* syslogd stamps it; RFC 3164 "<PRI>TAG[PID]: MSG" */
		n = (size_t)snprintf(line, sizeof(line), "<%d>dpmaild[%d]: %s",
				     16 + sev[(unsigned)level % 5],
				     (int)getpid(), msg);
	} else if (log_fmt == LOG_FMT_JSON) {
		char esc[sizeof(line) - 160], comp[24], qid[LOG_QID_LEN + 1];
		char extra[80] = "";

		json_escape(esc, sizeof(esc), msg);
		if (msg_fields(msg, comp, sizeof(comp), qid))
			snprintf(extra, sizeof(extra), "\"component\":\"%s\","
				 "%s%s%s", comp, qid[0] ? "\"qid\":\"" : "",
				 qid, qid[0] ? "\"," : "");
		n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\","
				     "\"level\":\"%s\",%s\"msg\":\"%s\"}",
				     stamp, log_level_name(level), extra, esc);
	} else {
		n = (size_t)snprintf(line, sizeof(line), "%s %s: %s", stamp,
				     log_level_name(level), msg);
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2; /* truncated: keep the newline */
	if (!log_syslog)
		line[n++] = '\n';
	/* the output may be a pipe that closed; nothing useful to do then */
	ssize_t r = write(log_fd, line, n);
	(void)r;
}

bool log_rl_allow(struct log_rl *r, enum log_level level)
{
	uint64_t n;

	if (!ratelimit_allow(&r->rl, ratelimit_now_ms())) {
		__atomic_fetch_add(&r->suppressed, 1, __ATOMIC_RELAXED);
		return false;
	}
	n = __atomic_exchange_n(&r->suppressed, 0, __ATOMIC_RELAXED);
	if (n != 0)
		log_msg(level, "log: %llu line%s like the next %s suppressed "
			"(rate limit)", (unsigned long long)n,
			n == 1 ? "" : "s", n == 1 ? "was" : "were");
	return true;
}
