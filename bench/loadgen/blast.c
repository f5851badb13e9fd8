/*
 * blast.c: the bulk-transfer client for the TCP throughput benchmark.
 *
 * discard: sends BYTES on one connection, closes its sending side and
 * waits for the server's close, so the time covers delivery of the last
 * byte, not just its copy into the local send buffer.
 * echo: sends BYTES and reads them back at the same time (poll), checks
 * every byte against the pattern (byte i = i mod 251), then closes.
 *
 * Prints one line of JSON: bytes, seconds, mb_per_s (10^6 bytes/s), ok.
 *
 * Owns: one socket. Must never: connect anywhere but the address given,
 * or wait without progress longer than --idle-ms (then it fails).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define PERIOD 251

static uint8_t pattern[CHUNK + PERIOD];
static uint8_t rbuf[CHUNK];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const char *me)
{
	fprintf(stderr, "usage: %s --addr IPV4 --port P --mode discard|echo "
		"--bytes N [--idle-ms MS]\n", me);
	exit(2);
}

static int result(uint64_t bytes, double dt, bool ok, const char *why)
{
	printf("{\"bytes\": %llu, \"seconds\": %.4f, \"mb_per_s\": %.1f, "
	       "\"ok\": %s, \"error\": \"%s\"}\n",
	       (unsigned long long)bytes, dt, dt > 0 ? (double)bytes / dt / 1e6 : 0,
	       ok ? "true" : "false", why);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, 'm' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_in sa = { .sin_family = AF_INET };
	bool have_addr = false, have_port = false, have_mode = false, echo = false;
	uint64_t total = 0, sent = 0, got = 0;
	int idle_ms = 10000, fd, c, one = 1;
	bool wr_closed = false;
	double t0, dt;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (inet_pton(AF_INET, optarg, &sa.sin_addr) != 1)
				usage(argv[0]);
			have_addr = true;
			break;
		case 'p':
			sa.sin_port = htons((uint16_t)atoi(optarg));
			have_port = true;
			break;
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				echo = true;
			else if (strcmp(optarg, "discard") != 0)
				usage(argv[0]);
			have_mode = true;
			break;
		case 'b':
			total = strtoull(optarg, NULL, 0);
			break;
		case 'i':
			idle_ms = atoi(optarg);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (!have_addr || !have_port || !have_mode || total == 0 || idle_ms < 1)
		usage(argv[0]);
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i % PERIOD);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t0 = now_s();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return result(0, 0, false, "connect failed");
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		return result(0, 0, false, "fcntl failed");

	/* discard: send all, then shut down and wait for EOF; echo: both
	 * ways at once until every byte is back */
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int n;

		if (sent < total)
			pf.events |= POLLOUT;
		else if (!wr_closed && !echo) {
			shutdown(fd, SHUT_WR);
			wr_closed = true;
		}
		n = poll(&pf, 1, idle_ms);
		if (n < 0 && errno != EINTR)
			return result(sent, now_s() - t0, false, "poll failed");
		if (n == 0)
			return result(echo ? got : sent, now_s() - t0, false,
				      "no progress within idle-ms");
		if (pf.revents & POLLOUT) {
			size_t off = (size_t)(sent % PERIOD);
			size_t len = total - sent < CHUNK ? (size_t)(total - sent)
							  : CHUNK;
			ssize_t w = send(fd, pattern + off, len, MSG_NOSIGNAL);

			if (w < 0 && errno != EAGAIN && errno != EINTR)
				return result(sent, now_s() - t0, false,
					      "send failed");
			if (w > 0)
				sent += (uint64_t)w;
		}
		if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(fd, rbuf, sizeof(rbuf), 0);

			if (r < 0 && errno != EAGAIN && errno != EINTR)
				return result(echo ? got : sent, now_s() - t0,
					      false, "recv failed");
			if (r == 0) {
				if (!echo && sent == total)
					break;	/* server closed after all */
				return result(echo ? got : sent, now_s() - t0,
					      false, "early EOF");
			}
			if (r > 0) {
				if (!echo)
					return result(sent, now_s() - t0, false,
						      "discard server sent data");
				if (got + (uint64_t)r > total ||
				    memcmp(rbuf, pattern + got % PERIOD,
					   (size_t)r) != 0)
					return result(got, now_s() - t0, false,
						      "echoed bytes differ");
				got += (uint64_t)r;
				if (got == total)
					break;
			}
		}
	}
	dt = now_s() - t0;
	close(fd);
	return result(total, dt, true, "");
}
