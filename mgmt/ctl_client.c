/*
 * ctl_client.c: dpmailctl's verbs that talk to the running daemon over
 * its control socket (mgmt/ctl.h): status, stats, queue, domain, log,
 * reload, shutdown.
 *
 * Exit codes (scripts rely on them): 0 done, 1 the daemon refused or the
 * operation failed, 2 usage, 3 the daemon is not running or its socket
 * is not ours to use.
 */
#include "mgmt/ctl_client.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/config.h"
#include "mgmt/ctl.h"

#ifndef DPMAIL_SYSCONFDIR
#define DPMAIL_SYSCONFDIR "etc"
#endif

#define EX_OK 0
#define EX_FAIL 1
#define EX_USAGE 2
#define EX_NODAEMON 3
#define REPLY_TIMEOUT_MS 30000

struct opts {
	const char *socket, *config;
	bool json, help;
	int argc;            /* what is left: the verb's own arguments */
	char **argv;
};

static const char *const verbs[] = { "status", "stats", "queue", "domain",
				     "log", "reload", "shutdown", "ping",
				     NULL };

bool ctlc_handles(const char *verb)
{
	for (size_t i = 0; verbs[i] != NULL; i++)
		if (strcmp(verb, verbs[i]) == 0)
			return true;
	return false;
}

void ctlc_usage(FILE *f)
{
	fprintf(f,
		"Verbs that talk to the running daemon (options: -s SOCKET,\n"
		"-c CONFIG to find it, --json for machine output, --help):\n"
		"  status                daemon, workers, port and listeners\n"
		"  stats [--watch SECS] [--worker N]\n"
		"                        counters (rates per second with --watch)\n"
		"  queue list [FILTERS]  messages in the queue\n"
		"  queue show ID...      one message: recipients, attempts, replies\n"
		"  queue flush [ID...|FILTERS]\n"
		"  queue hold|release|delete|bounce ID...|FILTERS|--all\n"
		"  queue summary         open recipients by domain and age (qshape)\n"
		"      FILTERS: --domain D --sender S --state deferred|active|held\n"
		"               --older-than T (seconds, or 30m, 2h, 1d)\n"
		"               --limit N (messages listed in the reply; 1000,\n"
		"               0 = all; the count is always whole)\n"
		"  domain suspend|resume DOMAIN\n"
		"  log level [LEVEL]     show or set (error warning notice info debug)\n"
		"  reload                re-read the config file\n"
		"  shutdown [--drain SECS]\n"
		"                        stop (refusing new sessions while those\n"
		"                        open finish, up to SECS); waits for exit\n"
		"Exit codes: 0 ok, 1 failed or refused, 2 usage, 3 daemon not\n"
		"running or its socket not permitted.\n");
}

/* ---- the socket ------------------------------------------------------ */

static void socket_path(const struct opts *o, char *out, size_t len)
{
	const char *env = getenv("DPMAIL_SOCKET");
	static struct dpmail_conf conf;
	char err[1024];

	if (o->socket != NULL) {
		snprintf(out, len, "%s", o->socket);
		return;
	}
	if (env != NULL && env[0] != '\0' && o->config == NULL) {
		snprintf(out, len, "%s", env);
		return;
	}
	config_defaults(&conf);
	if (config_load(&conf, o->config ? o->config :
			DPMAIL_SYSCONFDIR "/dpmail.conf", err,
			sizeof(err)) != 0 && o->config != NULL)
		fprintf(stderr, "dpmailctl: %s (using the default socket)\n",
			err);
	snprintf(out, len, "%s", conf.ctl_socket);
}

static int ctl_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "dpmailctl: socket path too long: %s\n", path);
		return -EX_USAGE;
	}
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("dpmailctl: socket");
		return -EX_FAIL;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		if (e == EACCES || e == EPERM)
			fprintf(stderr, "dpmailctl: %s: permission denied (the "
				"control socket is the daemon's user's only; "
				"run as that user or root)\n", path);
		else if (e == ENOENT || e == ECONNREFUSED)
			fprintf(stderr, "dpmailctl: dpmaild is not running (no "
				"control socket answers at %s; -s PATH or -c "
				"CONFIG to look elsewhere)\n", path);
		else
			fprintf(stderr, "dpmailctl: %s: %s\n", path,
				strerror(e));
		return -EX_NODAEMON;
	}
	return fd;
}

/* One request, one reply. Returns the reply (ok or not) or NULL with the
 * exit code in *ex. */
static json_t *call_fd(int fd, json_t *req, int *ex)
{
	char *s = json_dumps(req, JSON_COMPACT);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_error_t jerr;
	json_t *r;

	if (s == NULL) {
		*ex = EX_FAIL;
		return NULL;
	}
	{
		size_t n = strlen(s);
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		ssize_t w2 = send(fd, "\n", 1, MSG_NOSIGNAL);
		free(s);
		if (w != (ssize_t)n || w2 != 1) {
			fprintf(stderr, "dpmailctl: sending the request: %s\n",
				strerror(errno));
			*ex = EX_NODAEMON;
			return NULL;
		}
	}
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t n;
		if (len == cap) {
			char *p = realloc(buf, cap = cap ? cap * 2 : 65536);
			if (p == NULL) {
				free(buf);
				*ex = EX_FAIL;
				return NULL;
			}
			buf = p;
		}
		if (poll(&pf, 1, REPLY_TIMEOUT_MS) <= 0) {
			fprintf(stderr, "dpmailctl: no reply from the daemon "
				"within %d s\n", REPLY_TIMEOUT_MS / 1000);
			free(buf);
			*ex = EX_FAIL;
			return NULL;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0) {
			fprintf(stderr, "dpmailctl: the daemon closed the "
				"connection without a reply\n");
			free(buf);
			*ex = EX_NODAEMON;
			return NULL;
		}
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n) != NULL)
			break;
	}
	r = json_loadb(buf, (size_t)((char *)memchr(buf, '\n', len) - buf), 0,
		       &jerr);
	free(buf);
	if (r == NULL) {
		fprintf(stderr, "dpmailctl: bad reply: %s\n", jerr.text);
		*ex = EX_FAIL;
	}
	return r;
}

static void print_json(const json_t *r)
{
	json_dumpf(r, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	putchar('\n');
	fflush(stdout);
}

static json_t *call(const struct opts *o, json_t *req, int *ex)
{
	char path[256];
	json_t *r;
	int fd;

	socket_path(o, path, sizeof(path));
	fd = ctl_connect(path);
	if (fd < 0) {
		*ex = -fd;
		json_decref(req);
		return NULL;
	}
	r = call_fd(fd, req, ex);
	close(fd);
	json_decref(req);
	if (r != NULL && !json_is_true(json_object_get(r, "ok"))) {
		if (o->json)
			print_json(r);
		fprintf(stderr, "dpmailctl: %s\n", json_string_value(
			json_object_get(r, "error")) ?: "failed");
		json_decref(r);
		*ex = EX_FAIL;
		return NULL;
	}
	return r;
}

/* What a verb prints of a good reply for a human (not with --json). */
typedef void (*show_fn)(const struct opts *o, const json_t *r);

/* One request (req is taken) and its reply, printed as JSON with --json,
 * else by show (NULL: nothing). Returns the exit code. */
static int request(const struct opts *o, json_t *req, show_fn show)
{
	int ex = 0;
	json_t *r = call(o, req, &ex);

	if (r == NULL)
		return ex;
	if (o->json)
		print_json(r);
	else if (show != NULL)
		show(o, r);
	json_decref(r);
	return EX_OK;
}

/* ---- argument helpers --------------------------------------------------- */

__attribute__((format(printf, 1, 0)))
static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "dpmailctl: ");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	fprintf(stderr, fmt, arg);
#pragma GCC diagnostic pop
	fprintf(stderr, " (see dpmailctl --help)\n");
	return EX_USAGE;
}

/* "90", "30s", "5m", "2h", "1d" -> seconds; -1 if bad */
static long long parse_duration(const char *s)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		v *= 60;
		break;
	case 'h':
		v *= 3600;
		break;
	case 'd':
		v *= 86400;
		break;
	default:
		return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	return v;
}

static uint64_t get(const json_t *o, const char *sect, const char *k)
{
	const json_t *s = sect ? json_object_get(o, sect) : o;
	return (uint64_t)json_integer_value(json_object_get(s, k));
}

static void fmt_time(uint64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0) {
		snprintf(out, len, "-");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* ---- status ------------------------------------------------------------- */

static void show_status(const struct opts *o, const json_t *r)
{
	const json_t *port = json_object_get(r, "port");
	json_t *a;
	size_t i;

	(void)o;
	printf("dpmaild %s, pid %lld, up %llu s, log level %s%s\n",
	       json_string_value(json_object_get(r, "version")),
	       (long long)get(r, NULL, "pid"),
	       (unsigned long long)get(r, NULL, "uptime_s"),
	       json_string_value(json_object_get(r, "log_level")),
	       json_is_true(json_object_get(r, "draining")) ? " (draining)"
							       : "");
	printf("config      %s\n", json_string_value(json_object_get(r,
								"config")));
	printf("address     %s\n", json_string_value(json_object_get(r,
								"address")));
	printf("lcores      %s; workers:",
	       json_string_value(json_object_get(r, "lcores")));
	json_array_foreach(json_object_get(r, "workers"), i, a)
		printf(" %llu@lcore%llu", (unsigned long long)get(a, NULL,
		       "worker"), (unsigned long long)get(a, NULL, "lcore"));
	printf("\nport        %llu %s (%s) mac %s link %s %llu Mb/s, %llu "
	       "queue%s%s\n", (unsigned long long)get(port, NULL, "id"),
	       json_string_value(json_object_get(port, "driver")),
	       json_string_value(json_object_get(port, "devargs")),
	       json_string_value(json_object_get(port, "mac")),
	       json_is_true(json_object_get(port, "link_up")) ? "up" : "down",
	       (unsigned long long)get(port, NULL, "link_speed_mbps"),
	       (unsigned long long)get(port, NULL, "queues"),
	       get(port, NULL, "queues") == 1 ? "" : "s",
	       json_is_true(json_object_get(port, "steering")) ?
	       ", software steering" : "");
	for (int rx = 1; rx >= 0; rx--) {
		printf("%s  ", rx ? "rx offloads" : "tx offloads");
		a = json_object_get(port, rx ? "rx_offloads" : "tx_offloads");
		if (json_array_size(a) == 0)
			printf("none");
		for (i = 0; i < json_array_size(a); i++)
			printf("%s%s", i ? "," : "", json_string_value(
				json_array_get(a, i)));
		putchar('\n');
	}
	printf("listeners  ");
	json_array_foreach(json_object_get(r, "listeners"), i, a)
		printf(" %s/%llu", json_string_value(json_object_get(a,
		       "proto")), (unsigned long long)get(a, NULL, "port"));
	printf("\ncontrol     %s\nmetrics     %s\n",
	       json_string_value(json_object_get(r, "control_socket")),
	       json_string_value(json_object_get(r, "metrics")));
}

static int do_status(struct opts *o)
{
	if (o->help || o->argc > 0) {
		printf("Usage: dpmailctl status [--json]\n"
		       "The daemon's version, uptime, config file, workers and\n"
		       "their lcores, port (driver, MAC, link, queues,\n"
		       "offloads) and listeners.\n");
		return o->help ? EX_OK : EX_USAGE;
	}
	return request(o, json_pack("{s:s}", "verb", "status"), show_status);
}

/* ---- stats -------------------------------------------------------------- */

static bool is_drop(const char *k)
{
	static const char *const pat[] = { "drop", "bad_", "truncated",
		"_full", "malformed", "no_", "failed", "unknown",
		"alloc_failed", "ttl_zero", "timeout", "overflow" };

	for (size_t i = 0; i < sizeof(pat) / sizeof(*pat); i++)
		if (strstr(k, pat[i]) != NULL)
			return true;
	return false;
}

/* one figure, with its rate when there is a previous snapshot */
static void line(const char *name, uint64_t v, uint64_t prev, double dt)
{
	if (dt > 0)
		printf("  %-28s %14llu %12.1f/s\n", name, (unsigned long long)v,
		       (double)(v - prev) / dt);
	else
		printf("  %-28s %14llu\n", name, (unsigned long long)v);
}

/* the order a connection goes through them (the reply's keys are sorted) */
static const char *const tcp_states[] = { "listen", "syn_sent",
	"syn_received", "established", "fin_wait_1", "fin_wait_2",
	"close_wait", "closing", "last_ack", "time_wait" };

/* one row per listening port; accepted with its rate under --watch */
static void listeners_table(const json_t *ls, const json_t *prev, double dt)
{
	const char *port;
	json_t *l;

	if (json_object_size(ls) == 0)
		return;
	printf("listeners %12s %6s %9s %14s %8s %10s %10s\n", "", "open",
	       "half-open", "accepted", "refused", "over limit",
	       "syncookies");
	json_object_foreach((json_t *)ls, port, l) {
		uint64_t acc = get(l, NULL, "accepted");
		printf("  %-20s %6llu %9llu %14llu %8llu %10llu %10llu",
		       port, (unsigned long long)get(l, NULL, "open"),
		       (unsigned long long)get(l, NULL, "syn_pending"),
		       (unsigned long long)acc,
		       (unsigned long long)get(l, NULL, "refused"),
		       (unsigned long long)get(l, NULL, "over_limit"),
		       (unsigned long long)get(l, NULL, "syncookies"));
		if (dt > 0)
			printf(" %10.1f/s", (double)(acc - get(json_object_get(
			       prev, port), NULL, "accepted")) / dt);
		if (get(l, NULL, "listening") == 0)
			printf(" (closed)");
		putchar('\n');
	}
}

static void stats_table(const json_t *r, const json_t *prev, double dt,
			int worker)
{
	const json_t *t = json_object_get(r, "total");
	const json_t *pt = prev ? json_object_get(prev, "total") : NULL;
	const json_t *sp = json_object_get(r, "spool");
	const json_t *q = json_object_get(r, "qmgr");
	const char *k;
	json_t *val;

	if (worker >= 0) {
		t = json_array_get(json_object_get(r, "workers"), 0);
		pt = prev ? json_array_get(json_object_get(prev, "workers"), 0)
			  : NULL;
		printf("worker %d (lcore %llu)\n", worker,
		       (unsigned long long)get(t, NULL, "lcore"));
	}
#define L(label, sect, key) line(label, get(t, sect, key), \
				 pt ? get(pt, sect, key) : 0, dt)
	printf("traffic\n");
	L("packets in", "stack", "port.rx_packets");
	L("packets out", "stack", "port.tx_packets");
	L("tcp bytes in", "stack", "tcp.rx_bytes");
	L("tcp bytes out", "stack", "tcp.tx_bytes");
	L("tcp connections open", "stack", "tcp.live_conns");
	L("tcp accepted", "stack", "tcp.accepted");
	L("tcp active opens", "stack", "tcp.connects");
	L("tcp retransmits", "stack", "tcp.retransmits");
	printf("tcp connections by state\n");
	for (size_t i = 0; i < sizeof(tcp_states) / sizeof(*tcp_states); i++)
		if (json_object_get(json_object_get(t, "tcp_states"),
				    tcp_states[i]) != NULL)
			line(tcp_states[i], get(t, "tcp_states", tcp_states[i]),
			     0, 0);
	listeners_table(json_object_get(t, "listeners"), pt ?
			json_object_get(pt, "listeners") : NULL, dt);
	printf("drops (non-zero)\n");
	json_object_foreach((json_t *)json_object_get(t, "stack"), k, val)
		if (is_drop(k) && json_integer_value(val) != 0)
			L(k, "stack", k);
	if (get(t, "dataplane", "steer_dropped"))
		L("steer_dropped", "dataplane", "steer_dropped");
	if (json_object_get(t, "smtp") != NULL) {
		printf("smtp\n");
		L("sessions open", "smtp", "sessions_live");
		L("connections", "smtp", "connections");
		L("refused (limits)", "smtp", "refused_total");
		L("messages accepted", "smtp", "messages_queued");
		L("messages tempfailed", "smtp", "messages_tempfailed");
		L("bytes accepted", "smtp", "bytes_queued");
		L("recipients accepted", "smtp", "rcpt_accepted");
		L("recipients rejected", "smtp", "rcpt_rejected");
	}
	if (json_object_get(t, "out") != NULL) {
		printf("outbound\n");
		L("connections open", "out", "conns_live");
		L("connects", "out", "connects");
		L("connect failures", "out", "connect_failures");
		L("messages sent", "out", "messages");
	}
#undef L
	if (sp != NULL && worker < 0) {
		const json_t *ps = prev ? json_object_get(prev, "spool") : NULL;
		const json_t *h = json_object_get(sp, "fdatasync_us");
		uint64_t b = get(sp, NULL, "batches");
		uint64_t fs = 0;
		size_t i;
		printf("spool\n");
		line("batches", b, ps ? get(ps, NULL, "batches") : 0, dt);
		line("records", get(sp, NULL, "records"),
		     ps ? get(ps, NULL, "records") : 0, dt);
		printf("  %-28s %14.2f\n", "records per batch",
		       b ? (double)get(sp, NULL, "records") / (double)b : 0.0);
		line("messages live", get(sp, NULL, "msgs_live"), 0, 0);
		line("errors", get(sp, NULL, "errors"), 0, 0);
		for (i = 0; i < json_array_size(json_object_get(h, "count"));
		     i++)
			fs += (uint64_t)json_integer_value(json_array_get(
				json_object_get(h, "count"), i));
		printf("  fdatasync latency (%llu, mean %.0f us):",
		       (unsigned long long)fs, fs ? (double)get(h, NULL,
		       "sum_us") / (double)fs : 0.0);
		for (i = 0; i < json_array_size(json_object_get(h, "count"));
		     i++) {
			json_int_t c = json_integer_value(json_array_get(
				json_object_get(h, "count"), i));
			json_t *le = json_array_get(json_object_get(h, "le_us"),
						    i);
			if (c == 0)
				continue;
			if (le != NULL)
				printf(" <=%lldus:%lld",
				       (long long)json_integer_value(le),
				       (long long)c);
			else
				printf(" more:%lld", (long long)c);
		}
		putchar('\n');
	}
	if (q != NULL && worker < 0) {
		const json_t *pq = prev ? json_object_get(prev, "qmgr") : NULL;
#define Q(label, key) line(label, get(q, NULL, key), \
			   pq ? get(pq, NULL, key) : 0, dt)
		printf("queue\n");
		line("delivered", get(q, NULL, "delivered_local") +
		     get(q, NULL, "delivered_remote"),
		     pq ? get(pq, NULL, "delivered_local") +
		     get(pq, NULL, "delivered_remote") : 0, dt);
		Q("  of which local", "delivered_local");
		Q("deferred", "deferred");
		Q("bounced", "bounced");
		Q("expired", "expired");
		printf("  %-28s %14llu\n", "queue depth (messages)",
		       (unsigned long long)get(q, NULL, "msgs_live"));
		printf("  %-28s %14llu\n", "recipients deferred now",
		       (unsigned long long)get(q, NULL, "rcpts_deferred_now"));
		printf("  %-28s %14llu\n", "bodies in memory (bytes)",
		       (unsigned long long)get(q, NULL, "body_bytes"));
		Q("bodies let go", "bodies_dropped");
		Q("bodies read back", "bodies_read");
#undef Q
	}
}

static int do_stats(struct opts *o)
{
	long long watch = 0, worker = -1;
	json_t *prev = NULL;
	int ex = 0;

	for (int i = 0; i < o->argc; i++) {
		if (strcmp(o->argv[i], "--watch") == 0 && i + 1 < o->argc) {
			watch = parse_duration(o->argv[++i]);
			if (watch <= 0)
				return bad_usage("--watch wants seconds, not "
						 "'%s'", o->argv[i]);
		} else if (strcmp(o->argv[i], "--worker") == 0 &&
			   i + 1 < o->argc) {
			char *end;
			worker = strtoll(o->argv[++i], &end, 10);
			if (*end != '\0' || worker < 0)
				return bad_usage("--worker wants a number, not "
						 "'%s'", o->argv[i]);
		} else {
			return bad_usage("stats: unexpected '%s'", o->argv[i]);
		}
	}
	if (o->help) {
		printf("Usage: dpmailctl stats [--watch SECS] [--worker N] "
		       "[--json]\nCounters summed over the workers (or one "
		       "worker's):\npackets, bytes, TCP connections by state, "
		       "listeners, drops by reason,\nsessions, messages "
		       "accepted, delivered, deferred, bounced, spool\nbatches "
		       "and fdatasync latency, queue depth. --watch repeats "
		       "every SECS\nwith rates.\n");
		return EX_OK;
	}
	for (;;) {
		json_t *req = json_pack("{s:s}", "verb", "stats"), *r;
		if (worker >= 0)
			json_object_set_new(req, "worker",
					    json_integer(worker));
		r = call(o, req, &ex);
		if (r == NULL) {
			json_decref(prev);
			return ex;
		}
		if (o->json) {
			json_dumpf(r, stdout, JSON_COMPACT | JSON_SORT_KEYS);
			putchar('\n');
			fflush(stdout);
		} else {
			double dt = prev ? (double)(get(r, NULL, "uptime_ms") -
				get(prev, NULL, "uptime_ms")) / 1000.0 : 0;
			if (watch)
				printf("--- %s\n", prev ? "rates over the last "
				       "interval" : "since start");
			stats_table(r, prev, dt, (int)worker);
			fflush(stdout);
		}
		json_decref(prev);
		prev = r;
		if (!watch)
			break;
		sleep((unsigned)watch);
	}
	json_decref(prev);
	return EX_OK;
}

/* ---- queue ------------------------------------------------------------- */

static void print_msg(const json_t *m, bool full)
{
	char at[32], nt[32];
	size_t i;
	json_t *rc;

	fmt_time(get(m, NULL, "arrival"), at, sizeof(at));
	printf("%-20s %9llu %s %s%s\n", json_string_value(json_object_get(m,
	       "id")), (unsigned long long)get(m, NULL, "size"), at,
	       json_string_value(json_object_get(m, "sender"))[0] ?
	       json_string_value(json_object_get(m, "sender")) : "<>",
	       json_is_true(json_object_get(m, "held")) ? " (held)" : "");
	if (full)
		printf("  attempts %llu\n", (unsigned long long)get(m, NULL,
		       "attempts"));
	json_array_foreach(json_object_get(m, "rcpts"), i, rc) {
		const char *last = json_string_value(json_object_get(rc,
								      "last"));
		fmt_time(get(rc, NULL, "next_try"), nt, sizeof(nt));
		printf("  %-10s %s", json_string_value(json_object_get(rc,
		       "state")), json_string_value(json_object_get(rc,
		       "addr")));
		if (full) {
			printf("\n    via %s, next try %s",
			       json_string_value(json_object_get(rc, "dest"))[0]
			       ? json_string_value(json_object_get(rc, "dest"))
			       : "-", nt);
			if (last && last[0])
				printf("\n    last: %s", last);
		} else if (last && last[0]) {
			printf(" (%s)", last);
		}
		putchar('\n');
	}
}

static int queue_usage(FILE *f)
{
	fprintf(f,
		"Usage: dpmailctl queue list [FILTERS] [--json]\n"
		"       dpmailctl queue show ID... [--json]\n"
		"       dpmailctl queue flush [ID...|FILTERS]\n"
		"       dpmailctl queue hold|release|delete|bounce "
		"ID...|FILTERS|--all\n"
		"       dpmailctl queue summary [--json]\n"
		"FILTERS: --domain D (a recipient's domain) --sender S (\"\" = "
		"<>)\n"
		"         --state deferred|active|held --older-than T (90, 30m, "
		"2h, 1d)\n"
		"--limit N: list at most N messages in the reply (default "
		"1000, 0 = all);\n"
		"         the count matched is always the whole.\n"
		"delete drops messages without a report; bounce sends the "
		"sender a DSN.\n");
	return f == stdout ? EX_OK : EX_USAGE;
}

static void show_summary(const struct opts *o, const json_t *r)
{
	const json_t *edges = json_object_get(r, "age_edges_min");
	json_t *d, *row;
	const char *dom;
	size_t i;

	(void)o;
	printf("%-32s %6s", "recipients by domain / age (min)", "total");
	json_array_foreach(edges, i, d)
		printf(" %5lld", (long long)json_integer_value(d));
	printf(" %5s\n", "more");
	json_object_foreach(json_object_get(r, "domains"), dom, row) {
		long long tot = 0;
		json_array_foreach(row, i, d)
			tot += json_integer_value(d);
		printf("%-32s %6lld", dom, tot);
		json_array_foreach(row, i, d)
			printf(" %5lld", (long long)json_integer_value(d));
		putchar('\n');
	}
	printf("\n%-32s %6s %8s %6s %9s %s\n", "destination", "ready",
	       "deferred", "jobs", "suspended", "last failure");
	json_array_foreach(json_object_get(r, "dests"), i, d)
		printf("%-32s %6llu %8llu %6llu %9s %s\n",
		       json_string_value(json_object_get(d, "dest")),
		       (unsigned long long)get(d, NULL, "ready"),
		       (unsigned long long)get(d, NULL, "deferred"),
		       (unsigned long long)get(d, NULL, "active_jobs"),
		       json_is_true(json_object_get(d, "suspended")) ? "yes"
								     : "no",
		       json_string_value(json_object_get(d, "why")));
}

static int queue_summary(struct opts *o)
{
	return request(o, json_pack("{s:s}", "verb", "queue.summary"),
		       show_summary);
}

static int do_queue(struct opts *o)
{
	static const char *const ops[] = { "list", "show", "flush", "hold",
		"release", "delete", "bounce", "summary", NULL };
	json_t *req, *ids, *r, *m;
	const char *op;
	char verb[32];
	size_t i;
	int ex = 0;

	if (o->argc < 1)
		return o->help ? queue_usage(stdout) : queue_usage(stderr);
	op = o->argv[0];
	for (i = 0; ops[i] != NULL && strcmp(ops[i], op) != 0; i++)
		;
	if (ops[i] == NULL)
		return bad_usage("queue: unknown operation '%s'", op);
	if (o->help)
		return queue_usage(stdout);
	if (strcmp(op, "summary") == 0) {
		if (o->argc > 1)
			return bad_usage("queue summary: unexpected '%s'",
					 o->argv[1]);
		return queue_summary(o);
	}
	snprintf(verb, sizeof(verb), "queue.%s", op);
	req = json_pack("{s:s}", "verb", verb);
	ids = json_array();
	for (int a = 1; a < o->argc; a++) {
		const char *k = o->argv[a];
		if (strcmp(k, "--all") == 0) {
			json_object_set_new(req, "all", json_true());
		} else if (k[0] == '-' && k[1] == '-' && a + 1 < o->argc &&
			   (strcmp(k, "--domain") == 0 ||
			    strcmp(k, "--sender") == 0 ||
			    strcmp(k, "--state") == 0)) {
			json_object_set_new(req, k + 2,
					    json_string(o->argv[++a]));
		} else if (strcmp(k, "--limit") == 0 && a + 1 < o->argc) {
			char *end;
			unsigned long long n = strtoull(o->argv[++a], &end, 10);
			if (*end != '\0' || o->argv[a][0] == '-' ||
			    o->argv[a][0] == '\0') {
				json_decref(req);
				json_decref(ids);
				return bad_usage("--limit wants a number (0: "
						 "all), not '%s'", o->argv[a]);
			}
			json_object_set_new(req, "limit",
					    json_integer((json_int_t)n));
		} else if (strcmp(k, "--older-than") == 0 && a + 1 < o->argc) {
			long long s = parse_duration(o->argv[++a]);
			if (s < 0) {
				json_decref(req);
				json_decref(ids);
				return bad_usage("--older-than wants 90, 30m, "
						 "2h or 1d, not '%s'",
						 o->argv[a]);
			}
			json_object_set_new(req, "older_than",
					    json_integer(s));
		} else if (k[0] == '-') {
			json_decref(req);
			json_decref(ids);
			return bad_usage("queue: unexpected option '%s'", k);
		} else {
			json_array_append_new(ids, json_string(k));
		}
	}
	if (strcmp(op, "show") == 0 && json_array_size(ids) == 0) {
		json_decref(req);
		json_decref(ids);
		return bad_usage("queue show: which ID?%s", "");
	}
	if (json_array_size(ids) > 0)
		json_object_set_new(req, "ids", ids);
	else
		json_decref(ids);
	r = call(o, req, &ex);
	if (r == NULL)
		return ex;
	if (o->json) {
		print_json(r);
	} else if (strcmp(op, "list") == 0 || strcmp(op, "show") == 0) {
		json_array_foreach(json_object_get(r, "messages"), i, m)
			print_msg(m, strcmp(op, "show") == 0);
		if (strcmp(op, "list") == 0)
			printf("-- %llu message%s%s\n",
			       (unsigned long long)get(r, NULL, "matched"),
			       get(r, NULL, "matched") == 1 ? "" : "s",
			       json_is_true(json_object_get(r, "truncated")) ?
			       " (the first ones listed; --limit N, 0 for all)"
			       : "");
	} else {
		printf("%s: %llu message%s\n", op,
		       (unsigned long long)get(r, NULL, "matched"),
		       get(r, NULL, "matched") == 1 ? "" : "s");
	}
	ex = strcmp(op, "show") == 0 && get(r, NULL, "matched") == 0 ?
	     EX_FAIL : EX_OK;
	if (ex == EX_FAIL && !o->json)
		fprintf(stderr, "dpmailctl: no such message in the queue\n");
	json_decref(r);
	return ex;
}

/* ---- domain, log, reload, shutdown ---------------------------------------- */

static void show_domain(const struct opts *o, const json_t *r)
{
	printf("%s: %s\n", o->argv[1], json_is_true(json_object_get(r,
	       "suspended")) ? "suspended" : "resumed");
}

static int do_domain(struct opts *o)
{
	char verb[32];

	if (o->help || o->argc != 2 || (strcmp(o->argv[0], "suspend") != 0 &&
					strcmp(o->argv[0], "resume") != 0)) {
		printf("Usage: dpmailctl domain suspend|resume DOMAIN\n"
		       "Stop (or restart) outbound deliveries to DOMAIN; its "
		       "messages stay queued.\n");
		return o->help ? EX_OK : EX_USAGE;
	}
	snprintf(verb, sizeof(verb), "domain.%s", o->argv[0]);
	return request(o, json_pack("{s:s, s:s}", "verb", verb, "domain",
				    o->argv[1]), show_domain);
}

static void show_level(const struct opts *o, const json_t *r)
{
	(void)o;
	printf("log level %s\n", json_string_value(json_object_get(r,
	       "level")));
}

static int do_log(struct opts *o)
{
	json_t *req;

	if (o->help || o->argc < 1 || o->argc > 2 ||
	    strcmp(o->argv[0], "level") != 0) {
		printf("Usage: dpmailctl log level [LEVEL]\n"
		       "Show or set the log level now (error warning notice "
		       "info debug).\n");
		return o->help ? EX_OK : EX_USAGE;
	}
	req = json_pack("{s:s}", "verb", "log.level");
	if (o->argc == 2)
		json_object_set_new(req, "level", json_string(o->argv[1]));
	return request(o, req, show_level);
}

static void show_reload(const struct opts *o, const json_t *r)
{
	json_t *a;
	size_t i;

	(void)o;
	printf("reloaded %s\napplied:", json_string_value(
	       json_object_get(r, "config")));
	json_array_foreach(json_object_get(r, "applied"), i, a)
		printf(" %s", json_string_value(a));
	if (json_array_size(json_object_get(r, "applied")) == 0)
		printf(" nothing changed that applies live");
	printf("\nneeds a restart:");
	json_array_foreach(json_object_get(r, "restart_needed"), i, a)
		printf(" [%s]", json_string_value(a));
	if (json_array_size(json_object_get(r, "restart_needed")) == 0)
		printf(" nothing");
	putchar('\n');
}

static int do_reload(struct opts *o)
{
	if (o->help || o->argc > 0) {
		printf("Usage: dpmailctl reload [--json]\n"
		       "Re-read the daemon's config file and the tables it names\n"
		       "(users, aliases, transport, certificates). A bad file is\n"
		       "refused (FILE:LINE: reason) and the running config stays.\n"
		       "A good one applies without dropping a session: the log\n"
		       "level, [smtp] limits, [policy] and [tls] certificates for\n"
		       "new sessions, the routing tables and [mta] queue settings\n"
		       "for messages routed from now on. Changes that need a\n"
		       "restart (listeners, stack, spool, ...) are listed.\n");
		return o->help ? EX_OK : EX_USAGE;
	}
	return request(o, json_pack("{s:s}", "verb", "reload"), show_reload);
}

static int do_shutdown(struct opts *o)
{
	long long drain = 0;
	char path[256];
	int ex;

	for (int i = 0; i < o->argc; i++) {
		if (strcmp(o->argv[i], "--drain") == 0 && i + 1 < o->argc) {
			drain = parse_duration(o->argv[++i]);
			if (drain < 0)
				return bad_usage("--drain wants seconds, not "
						 "'%s'", o->argv[i]);
		} else {
			return bad_usage("shutdown: unexpected '%s'",
					 o->argv[i]);
		}
	}
	if (o->help) {
		printf("Usage: dpmailctl shutdown [--drain SECS]\n"
		       "Stop the daemon. With --drain, new connections get 421 "
		       "while the\nsessions in flight finish (up to SECS). "
		       "Waits until it has exited.\n");
		return EX_OK;
	}
	ex = request(o, json_pack("{s:s, s:I}", "verb", "shutdown", "drain",
				  (json_int_t)drain), NULL);
	if (ex != EX_OK)
		return ex;
	/* the socket goes away as the daemon stops */
	socket_path(o, path, sizeof(path));
	for (long long t = 0; t < (drain + 120) * 10; t++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc;
		memcpy(sa.sun_path, path, strlen(path));
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (rc != 0) {
			if (!o->json)
				printf("dpmaild stopped\n");
			return EX_OK;
		}
		usleep(100000);
	}
	fprintf(stderr, "dpmailctl: the daemon has not stopped\n");
	return EX_FAIL;
}

static int do_ping(struct opts *o)
{
	json_t *r;
	int ex = 0;

	r = call(o, json_pack("{s:s}", "verb", "ping"), &ex);
	if (r == NULL)
		return ex;
	printf("pong\n");
	json_decref(r);
	return EX_OK;
}

int ctlc_main(int argc, char **argv)
{
	struct opts o = { 0 };
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	const char *verb = argv[0];
	int n = 0, ex;

	if (rest == NULL)
		return EX_FAIL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0) {
			o.json = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			o.help = true;
		} else if ((strcmp(a, "-s") == 0 ||
			    strcmp(a, "--socket") == 0) && i + 1 < argc) {
			o.socket = argv[++i];
		} else if ((strcmp(a, "-c") == 0 ||
			    strcmp(a, "--config") == 0) && i + 1 < argc) {
			o.config = argv[++i];
		} else {
			rest[n++] = argv[i];
		}
	}
	o.argc = n;
	o.argv = rest;
	if (strcmp(verb, "status") == 0)
		ex = do_status(&o);
	else if (strcmp(verb, "stats") == 0)
		ex = do_stats(&o);
	else if (strcmp(verb, "queue") == 0)
		ex = do_queue(&o);
	else if (strcmp(verb, "domain") == 0)
		ex = do_domain(&o);
	else if (strcmp(verb, "log") == 0)
		ex = do_log(&o);
	else if (strcmp(verb, "reload") == 0)
		ex = do_reload(&o);
	else if (strcmp(verb, "shutdown") == 0)
		ex = do_shutdown(&o);
	else
		ex = do_ping(&o);
	free(rest);
	return ex;
}
