/*
 * metrics.h: the Prometheus endpoint ([metrics] listen, GET /metrics,
 * text exposition format 0.0.4).
 *
 * Owns: a libmicrohttpd daemon with its own thread on a kernel socket
 * (loopback by default). Every figure comes from mgmt_stats (the same
 * snapshot `dpmailctl stats` prints) plus the queue manager's
 * destinations, labelled by worker and destination.
 */
#ifndef DPMAIL_MGMT_METRICS_H
#define DPMAIL_MGMT_METRICS_H

#include <stddef.h>

struct mgmt_view;
struct metrics;

/* listen: "a.b.c.d:port". 0 or a negative errno with the reason in err. */
int metrics_start(struct metrics **out, const char *listen,
		  struct mgmt_view *v, char *err, size_t errlen);
/* NULL ok. */
void metrics_stop(struct metrics *m);

/* The exposition text now (malloc'd, NUL-terminated; NULL on ENOMEM). */
char *metrics_render(struct mgmt_view *v);

#endif
