/*
 * log.h: dpmail's logging.
 *
 * One line per event, prefixed with a level tag: on stderr by default,
 * or to a file or syslog, as text or JSON lines (log_open). Messages a peer
 * can trigger (bad packets, bad commands) must go through LOG_RL, which
 * rate-limits per call site so that an attacker cannot flood the log.
 * Owns: the global log level. Never allocates; safe from any thread (each
 * line is one write(2)).
 */
#ifndef DPMAIL_COMMON_LOG_H
#define DPMAIL_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ratelimit.h"

enum log_level {
	LOG_ERR = 0,
	LOG_WARNING,
	LOG_NOTICE,
	LOG_INFO,
	LOG_DEBUG,
};

/* Sets the level; messages above it are discarded. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error", "warning", "notice", "info", "debug" -> level; -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };
/* Where lines go: "stderr", "syslog" (the /dev/log socket, facility
 * mail) or a file path (appended, created 0640). Call once at start-up,
 * before any thread logs. 0, or -1 with the reason in err. */
int log_open(enum log_format fmt, const char *output, char *err,
	     size_t errlen);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define LOG(level, ...)                                                        \
	do {                                                                   \
		if ((level) <= log_get_level())                                \
			log_msg((level), __VA_ARGS__);                         \
	} while (0)

/*
 * Rate-limited log for peer-triggered events: at most 10 lines a second
 * (burst 20) per call site, process-wide. The bucket is racy across
 * threads by design: an occasional extra line is harmless, a lock is not.
 * The lines a call site suppresses are counted, and the next line it
 * writes is preceded by "log: N lines like the next were suppressed (rate
 * limit)", so an operator knows a flood happened and how big it was.
 */
#define LOG_RL(level, ...) LOG_RLN(level, 10, 20, __VA_ARGS__)

struct log_rl {
	struct ratelimit rl;
	uint64_t suppressed; /* atomic: lines dropped since the last one */
};

/* true: write the line (after the count of those suppressed, if any). */
bool log_rl_allow(struct log_rl *r, enum log_level level);

/* The same with its own rate and burst: for events a peer triggers but
 * an operator wants every one of under normal load (connect and
 * disconnect lines: 1,000 a second). */
#define LOG_RLN(level, rate, burst, ...)                                       \
	do {                                                                   \
		static struct log_rl log_rl_ = {                               \
			.rl = RATELIMIT_INIT(rate, burst) };                   \
		if ((level) <= log_get_level() &&                              \
		    log_rl_allow(&log_rl_, (level)))                           \
			log_msg((level), __VA_ARGS__);                         \
	} while (0)

#endif
