/*
 * connrate.c: a connection-rate load client for the TCP benchmarks.
 *
 * Keeps K connections in flight for T seconds; each one is a transaction:
 * connect, send SIZE bytes, read SIZE bytes back (an echo server), close.
 * A finished slot starts its next transaction at once. Records each
 * transaction's latency (connect() call to last reply byte) and prints
 * connections/s and latency percentiles, as a table line and as one JSON
 * object on the last stdout line.
 *
 * Owns: its sockets and the latency samples. Must never: connect anywhere
 * but the one address given, or run past its time bound (T seconds plus a
 * fixed drain); a transaction that takes longer than --timeout-ms is
 * aborted and counted, never waited for.
 *
 * Close: "fin" (default) is an ordinary close, leaving TIME-WAIT on the
 * client (give its namespace a wide ip_local_port_range and
 * tcp_tw_reuse=1); "rst" sets SO_LINGER 0, so close sends a RST and
 * leaves nothing behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define MAX_SIZE 65536
#define MAX_SAMPLES (64u << 20)	/* 256 MiB of uint32_t at most */

enum slot_state { S_IDLE, S_CONNECTING, S_READING };

struct slot {
	int fd;
	enum slot_state st;
	uint64_t t0_ns;
	uint64_t seq;		/* transaction number: seeds the payload */
	size_t got;
	uint8_t *buf;		/* the reply so far, opt.size bytes */
};

struct errs {
	uint64_t socket, connect, addrnotavail, reset, eof, mismatch, timeout;
};

static struct {
	struct sockaddr_in dst;
	unsigned conns;
	double seconds;
	size_t size;
	unsigned timeout_ms;
	bool rst;
} opt = {
	.conns = 32, .seconds = 10, .size = 64, .timeout_ms = 3000,
};

static int ep;
static struct slot slots[MAX_CONNS];
static struct errs err;
static uint32_t *samples;	/* latency in microseconds */
static size_t nsamples, capsamples;
static uint64_t next_seq;
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void payload(uint64_t seq, uint8_t *buf, size_t len)
{
	uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

static void record(uint64_t ns)
{
	uint64_t us = ns / 1000;

	if (nsamples == capsamples) {
		size_t cap = capsamples ? capsamples * 2 : 65536;
		uint32_t *p;

		if (cap > MAX_SAMPLES)
			return;	/* keep counting, stop sampling */
		p = realloc(samples, cap * sizeof(*p));
		if (p == NULL)
			return;
		samples = p;
		capsamples = cap;
	}
	samples[nsamples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void slot_close(struct slot *s, bool abort_it)
{
	if (s->fd < 0)
		return;
	if (abort_it || opt.rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(s->fd);	/* also removes it from the epoll set */
	s->fd = -1;
	s->st = S_IDLE;
}

static void slot_start(struct slot *s)
{
	struct epoll_event ev;
	int one = 1;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err.socket++;
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->fd = fd;
	s->seq = next_seq++;
	s->got = 0;
	s->t0_ns = now_ns();
	if (connect(fd, (const struct sockaddr *)&opt.dst, sizeof(opt.dst)) < 0 &&
	    errno != EINPROGRESS) {
		if (errno == EADDRNOTAVAIL)
			err.addrnotavail++;
		else
			err.connect++;
		slot_close(s, true);
		return;
	}
	s->st = S_CONNECTING;
	ev.events = EPOLLOUT;
	ev.data.ptr = s;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		err.socket++;
		slot_close(s, true);
	}
}

static void count_errno(int e)
{
	if (e == ECONNRESET || e == EPIPE)
		err.reset++;
	else if (e == EADDRNOTAVAIL)
		err.addrnotavail++;
	else
		err.connect++;
}

/* Returns true when the transaction finished (the slot is idle again). */
static bool slot_event(struct slot *s, uint32_t events)
{
	uint8_t want[MAX_SIZE];

	if (s->st == S_CONNECTING) {
		struct epoll_event ev;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		ssize_t n;

		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr != 0 || (events & EPOLLERR)) {
			count_errno(soerr ? soerr : ECONNRESET);
			slot_close(s, true);
			return true;
		}
		payload(s->seq, want, opt.size);
		n = send(s->fd, want, opt.size, MSG_NOSIGNAL);
		if (n != (ssize_t)opt.size) {	/* 64 bytes fit a fresh socket */
			count_errno(n < 0 ? errno : EPIPE);
			slot_close(s, true);
			return true;
		}
		s->st = S_READING;
		ev.events = EPOLLIN;
		ev.data.ptr = s;
		epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
		return false;
	}
	if (s->st == S_READING) {
		ssize_t n = recv(s->fd, s->buf + s->got, opt.size - s->got, 0);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return false;
			count_errno(errno);
			slot_close(s, true);
			return true;
		}
		if (n == 0) {
			err.eof++;
			slot_close(s, true);
			return true;
		}
		s->got += (size_t)n;
		if (s->got < opt.size)
			return false;
		payload(s->seq, want, opt.size);
		if (memcmp(want, s->buf, opt.size) != 0) {
			err.mismatch++;
			slot_close(s, true);
			return true;
		}
		record(now_ns() - s->t0_ns);
		slot_close(s, false);
		return true;
	}
	return false;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static uint32_t pct(double p)
{
	size_t i;

	if (nsamples == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(nsamples - 1) + 0.5);
	return samples[i];
}

static void usage(const char *me)
{
	fprintf(stderr,
		"usage: %s --addr IPV4 --port P [--conns K] [--seconds T]\n"
		"          [--size BYTES] [--close fin|rst] [--timeout-ms MS]\n",
		me);
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'k' },
		{ "seconds", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 's' },
		{ "close", required_argument, NULL, 'c' },
		{ "timeout-ms", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_addr = false, have_port = false;
	int c;

	opt.dst.sin_family = AF_INET;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (inet_pton(AF_INET, optarg, &opt.dst.sin_addr) != 1)
				usage(argv[0]);
			have_addr = true;
			break;
		case 'p':
			opt.dst.sin_port = htons((uint16_t)atoi(optarg));
			have_port = true;
			break;
		case 'k':
			opt.conns = (unsigned)atoi(optarg);
			break;
		case 't':
			opt.seconds = atof(optarg);
			break;
		case 's':
			opt.size = (size_t)atol(optarg);
			break;
		case 'c':
			if (strcmp(optarg, "rst") == 0)
				opt.rst = true;
			else if (strcmp(optarg, "fin") == 0)
				opt.rst = false;
			else
				usage(argv[0]);
			break;
		case 'o':
			opt.timeout_ms = (unsigned)atoi(optarg);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (!have_addr || !have_port || opt.conns < 1 ||
	    opt.conns > MAX_CONNS || opt.size < 1 || opt.size > MAX_SIZE ||
	    !(opt.seconds > 0 && opt.seconds <= 3600) || opt.timeout_ms < 1)
		usage(argv[0]);
}

int main(int argc, char **argv)
{
	struct epoll_event evs[256];
	uint64_t t_start, t_end, deadline, last_scan;
	uint64_t tmo_ns;
	char addr[INET_ADDRSTRLEN];
	double dt, rate;
	uint64_t completed;

	parse_args(argc, argv);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("epoll_create1");
		return 1;
	}
	tmo_ns = (uint64_t)opt.timeout_ms * 1000000u;
	for (unsigned i = 0; i < opt.conns; i++) {
		slots[i].fd = -1;
		slots[i].buf = malloc(opt.size);
		if (slots[i].buf == NULL) {
			perror("malloc");
			return 1;
		}
	}

	t_start = now_ns();
	deadline = t_start + (uint64_t)(opt.seconds * 1e9);
	last_scan = t_start;
	for (unsigned i = 0; i < opt.conns; i++)
		slot_start(&slots[i]);

	while (!stop_flag) {
		uint64_t t = now_ns();
		int n;

		if (t >= deadline)
			break;
		n = epoll_wait(ep, evs, 256, 50);
		if (n < 0 && errno != EINTR) {
			perror("epoll_wait");
			break;
		}
		t = now_ns();
		for (int i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;

			if (slot_event(s, evs[i].events) && t < deadline)
				slot_start(s);
		}
		if (t - last_scan >= 50000000u || n <= 0) {
			/* timeouts, and slots left idle by a failed start */
			last_scan = t;
			for (unsigned i = 0; i < opt.conns; i++) {
				struct slot *s = &slots[i];

				if (s->st != S_IDLE && t > s->t0_ns &&
				    t - s->t0_ns > tmo_ns) {
					err.timeout++;
					slot_close(s, true);
				}
				if (s->st == S_IDLE && t < deadline)
					slot_start(s);
			}
		}
	}
	t_end = now_ns();
	for (unsigned i = 0; i < opt.conns; i++)
		slot_close(&slots[i], true);	/* unfinished: not counted */

	completed = nsamples;
	dt = (double)(t_end - t_start) / 1e9;
	rate = dt > 0 ? (double)completed / dt : 0;
	if (nsamples)
		qsort(samples, nsamples, sizeof(*samples), cmp_u32);
	inet_ntop(AF_INET, &opt.dst.sin_addr, addr, sizeof(addr));
	printf("connrate %s:%u conns=%u size=%zu close=%s: %llu transactions "
	       "in %.2f s = %.0f conn/s; latency us p50=%u p90=%u p99=%u "
	       "max=%u\n",
	       addr, ntohs(opt.dst.sin_port), opt.conns, opt.size,
	       opt.rst ? "rst" : "fin", (unsigned long long)completed, dt,
	       rate, pct(50), pct(90), pct(99), pct(100));
	printf("{\"addr\": \"%s\", \"port\": %u, \"conns\": %u, \"size\": %zu, "
	       "\"close\": \"%s\", \"seconds\": %.3f, \"completed\": %llu, "
	       "\"conn_per_s\": %.1f, \"p50_us\": %u, \"p90_us\": %u, "
	       "\"p99_us\": %u, \"max_us\": %u, \"errors\": {\"socket\": %llu, "
	       "\"connect\": %llu, \"addrnotavail\": %llu, \"reset\": %llu, "
	       "\"eof\": %llu, \"mismatch\": %llu, \"timeout\": %llu}}\n",
	       addr, ntohs(opt.dst.sin_port), opt.conns, opt.size,
	       opt.rst ? "rst" : "fin", dt, (unsigned long long)completed, rate,
	       pct(50), pct(90), pct(99), pct(100),
	       (unsigned long long)err.socket, (unsigned long long)err.connect,
	       (unsigned long long)err.addrnotavail,
	       (unsigned long long)err.reset, (unsigned long long)err.eof,
	       (unsigned long long)err.mismatch,
	       (unsigned long long)err.timeout);
	for (unsigned i = 0; i < opt.conns; i++)
		free(slots[i].buf);
	free(samples);
	close(ep);
	return completed > 0 ? 0 : 1;
}
