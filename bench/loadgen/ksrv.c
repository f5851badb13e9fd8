/*
 * ksrv.c: the kernel-stack baseline for the TCP benchmarks: an RFC 862
 * echo or RFC 863 discard server on ordinary sockets, one thread, epoll,
 * non-blocking -- the same job dpmail's [diag] listeners do on one worker.
 *
 * Echo honours backpressure like dpmail's: bytes it could not write are
 * kept, and the connection stops reading until they are flushed. A peer's
 * FIN is answered by a close once everything is flushed.
 *
 * Owns: its listening socket and connections. Must never: run longer than
 * --max-seconds (a bound, so a forgotten server cannot outlive its
 * benchmark), or listen on anything but the address given. Prints
 * "ksrv: ready" on stdout once listening.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
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

#define BUF_SIZE (256 * 1024)

struct conn {
	int fd;
	bool peer_closed;
	size_t pend_off, pend_len;	/* echo bytes not yet written */
	uint8_t *pend;
};

static volatile sig_atomic_t stop_flag;
static bool echo;
static int ep;
static uint8_t rbuf[BUF_SIZE];

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void conn_free(struct conn *c)
{
	close(c->fd);
	free(c->pend);
	free(c);
}

static void conn_watch(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is pending; returns -1 on error, 0 still pending, 1 done. */
static int conn_flush(struct conn *c)
{
	while (c->pend_len > 0) {
		ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	c->pend_off = 0;
	return 1;
}

static void conn_readable(struct conn *c)
{
	for (int round = 0; round < 16; round++) {
		ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
		int f;

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_free(c);
			return;
		}
		if (n == 0) {
			conn_free(c);	/* nothing pending: we were reading */
			return;
		}
		if (!echo)
			continue;
		if (c->pend == NULL) {
			c->pend = malloc(BUF_SIZE);
			if (c->pend == NULL) {
				conn_free(c);
				return;
			}
		}
		memcpy(c->pend, rbuf, (size_t)n);
		c->pend_off = 0;
		c->pend_len = (size_t)n;
		f = conn_flush(c);
		if (f < 0) {
			conn_free(c);
			return;
		}
		if (f == 0) {		/* stop reading until flushed */
			conn_watch(c, EPOLLOUT);
			return;
		}
	}
}

static void conn_writable(struct conn *c)
{
	int f = conn_flush(c);

	if (f < 0) {
		conn_free(c);
		return;
	}
	if (f == 1)
		conn_watch(c, EPOLLIN | EPOLLRDHUP);
}

static void accept_all(int lfd)
{
	for (int i = 0; i < 64; i++) {
		struct epoll_event ev;
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			return;
		}
		c->fd = fd;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_free(c);
	}
}

static void usage(const char *me)
{
	fprintf(stderr, "usage: %s --addr IPV4 --port P --mode echo|discard "
		"[--max-seconds S]\n", me);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, 'm' },
		{ "max-seconds", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev, evs[256];
	bool have_addr = false, have_port = false, have_mode = false;
	double max_s = 3600;
	struct timespec t0, t;
	int lfd, one = 1, c;

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
		case 's':
			max_s = atof(optarg);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (!have_addr || !have_port || !have_mode || !(max_s > 0))
		usage(argv[0]);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		perror("socket");
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4096) < 0) {
		perror("bind/listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("epoll_create1");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	printf("ksrv: ready (%s)\n", echo ? "echo" : "discard");
	fflush(stdout);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop_flag) {
		int n = epoll_wait(ep, evs, 256, 200);

		if (n < 0 && errno != EINTR) {
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *cn = evs[i].data.ptr;

			if (cn == NULL)
				accept_all(lfd);
			else if (evs[i].events & EPOLLOUT)
				conn_writable(cn);
			else
				conn_readable(cn);
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) +
		    (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > max_s) {
			fprintf(stderr, "ksrv: --max-seconds reached\n");
			break;
		}
	}
	close(lfd);
	return 0;
}
