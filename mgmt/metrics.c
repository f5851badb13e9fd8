/*
 * metrics.c: Prometheus text exposition over libmicrohttpd.
 *
 * Names: per-worker sections become dpmail_<layer>_<name> with a
 * worker="N" label (stack counters keep their layer: dpmail_tcp_accepted,
 * dpmail_smtp_messages_queued, dpmail_dataplane_polls, dpmail_out_...);
 * the spool and the queue manager have no label; running totals end in
 * _total, levels do not. The fdatasync latency is a histogram in seconds.
 * Destinations (queue summary) carry dest="...". TCP connections by state
 * are one gauge, dpmail_tcp_connections{worker,state}; each listening
 * port's figures are dpmail_listener_*{worker,listener="25"}.
 *
 * Must never: block a worker. It runs on libmicrohttpd's own thread and
 * reads what `dpmailctl stats` reads.
 */
#include "mgmt/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/ctl_verbs.h"
#include "mta/mta_qmgr.h"

#define METRICS_QMGR_TIMEOUT_MS 2000

struct metrics {
	struct MHD_Daemon *d;
	struct mgmt_view *v;
};

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3)))
static void bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* "tcp.accepted" in section "stack" -> "dpmail_tcp_accepted";
 * "sessions_live" in "smtp" -> "dpmail_smtp_sessions_live" */
static void metric_name(char *out, size_t len, const char *section,
			const char *key)
{
	if (strcmp(section, "stack") == 0)
		snprintf(out, len, "dpmail_%s", key);
	else
		snprintf(out, len, "dpmail_%s_%s", section, key);
	for (char *p = out; *p; p++)
		if (*p == '.' || *p == '-')
			*p = '_';
}

static void family(struct buf *b, const char *section, const char *key,
		   char *name, size_t len)
{
	bool gauge = mgmt_stat_is_gauge(section, key);

	metric_name(name, len, section, key);
	if (!gauge)
		strncat(name, "_total", len - strlen(name) - 1);
	bprintf(b, "# TYPE %s %s\n", name, gauge ? "gauge" : "counter");
}

static void per_worker(struct buf *b, const json_t *workers,
		       const char *section)
{
	const json_t *first = json_object_get(json_array_get(workers, 0),
					      section);
	const char *key;
	json_t *unused;
	char name[160];

	json_object_foreach((json_t *)first, key, unused) {
		size_t i;
		json_t *w;
		family(b, section, key, name, sizeof(name));
		json_array_foreach(workers, i, w) {
			json_t *s = json_object_get(w, section);
			bprintf(b, "%s{worker=\"%lld\"} %lld\n", name,
				(long long)json_integer_value(
					json_object_get(w, "worker")),
				(long long)json_integer_value(
					json_object_get(s, key)));
		}
	}
	(void)unused;
}

/* dpmail_tcp_connections{worker="0",state="established"} n: one gauge
 * family, the state as a label, so that a sum over states is the live
 * connections (plus listeners) */
static void tcp_states(struct buf *b, const json_t *workers)
{
	const json_t *first = json_object_get(json_array_get(workers, 0),
					      "tcp_states");
	const char *st;
	json_t *unused;

	bprintf(b, "# TYPE dpmail_tcp_connections gauge\n");
	json_object_foreach((json_t *)first, st, unused) {
		size_t i;
		json_t *w;
		json_array_foreach(workers, i, w)
			bprintf(b, "dpmail_tcp_connections{worker=\"%lld\","
				"state=\"%s\"} %lld\n",
				(long long)json_integer_value(
					json_object_get(w, "worker")), st,
				(long long)json_integer_value(json_object_get(
					json_object_get(w, "tcp_states"), st)));
	}
	(void)unused;
}

/* dpmail_listener_<figure>{worker="0",listener="25"}: one family per
 * figure of a listening port (ctl_stats.c's "listeners") */
static void listeners(struct buf *b, const json_t *workers)
{
	static const char *const figs[] = { "listening", "open",
		"syn_pending", "accepted", "refused", "over_limit",
		"syncookies" };
	char name[160];

	for (size_t f = 0; f < sizeof(figs) / sizeof(*figs); f++) {
		size_t i;
		json_t *w;
		family(b, "listener", figs[f], name, sizeof(name));
		json_array_foreach(workers, i, w) {
			const char *port;
			json_t *l;
			json_object_foreach(json_object_get(w, "listeners"),
					    port, l)
				bprintf(b, "%s{worker=\"%lld\",listener=\"%s\"}"
					" %lld\n", name, (long long)
					json_integer_value(json_object_get(w,
						"worker")), port, (long long)
					json_integer_value(json_object_get(l,
						figs[f])));
		}
	}
}

static void plain(struct buf *b, const json_t *o, const char *section)
{
	const char *key;
	json_t *val;
	char name[160];

	json_object_foreach((json_t *)o, key, val) {
		if (!json_is_integer(val))
			continue;
		family(b, section, key, name, sizeof(name));
		bprintf(b, "%s %lld\n", name,
			(long long)json_integer_value(val));
	}
}

static void histogram(struct buf *b, const json_t *h)
{
	const json_t *le = json_object_get(h, "le_us");
	const json_t *cnt = json_object_get(h, "count");
	long long cum = 0;
	size_t i;

	bprintf(b, "# TYPE dpmail_spool_fdatasync_seconds histogram\n");
	for (i = 0; i < json_array_size(le); i++) {
		cum += json_integer_value(json_array_get(cnt, i));
		bprintf(b, "dpmail_spool_fdatasync_seconds_bucket{le=\"%g\"} "
			"%lld\n", (double)json_integer_value(
				json_array_get(le, i)) / 1e6, cum);
	}
	cum += json_integer_value(json_array_get(cnt, i));
	bprintf(b, "dpmail_spool_fdatasync_seconds_bucket{le=\"+Inf\"} %lld\n",
		cum);
	bprintf(b, "dpmail_spool_fdatasync_seconds_sum %.6f\n",
		(double)json_integer_value(json_object_get(h, "sum_us")) / 1e6);
	bprintf(b, "dpmail_spool_fdatasync_seconds_count %lld\n", cum);
}

/* label values: \ " and newline escaped */
static void label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			bprintf(b, "\\%c", *s);
		else if (*s == '\n')
			bprintf(b, "\\n");
		else
			bprintf(b, "%c", *s);
	}
}

struct dests {
	struct mta_qctl_dest *d;
	char **keys;
	size_t n, cap;
};

static void collect_dest(void *arg, const struct mta_qctl_dest *d)
{
	struct dests *ds = arg;

	if (ds->n == ds->cap) {
		size_t cap = ds->cap ? ds->cap * 2 : 16;
		void *p = realloc(ds->d, cap * sizeof(*ds->d));
		void *q;
		if (p == NULL)
			return;
		ds->d = p;
		q = realloc(ds->keys, cap * sizeof(*ds->keys));
		if (q == NULL)
			return;
		ds->keys = q;
		ds->cap = cap;
	}
	ds->d[ds->n] = *d;
	ds->keys[ds->n] = strdup(d->key);
	if (ds->keys[ds->n] == NULL)
		return;
	ds->n++;
}

static void destinations(struct buf *b, struct mgmt_view *v)
{
	static const char *const fam[] = { "ready", "deferred",
					   "active_jobs", "suspended" };
	struct dests ds = { 0 };

	if (v->qmgr == NULL || mta_qmgr_dests(v->qmgr, collect_dest, &ds,
					      METRICS_QMGR_TIMEOUT_MS) < 0)
		goto out;
	for (size_t f = 0; f < sizeof(fam) / sizeof(*fam); f++) {
		bprintf(b, "# TYPE dpmail_queue_dest_%s gauge\n", fam[f]);
		for (size_t i = 0; i < ds.n; i++) {
			const struct mta_qctl_dest *d = &ds.d[i];
			uint64_t val = f == 0 ? d->ready : f == 1 ? d->deferred
				: f == 2 ? d->active_jobs : d->suspended;
			bprintf(b, "dpmail_queue_dest_%s{dest=\"", fam[f]);
			label(b, ds.keys[i]);
			bprintf(b, "\"} %llu\n", (unsigned long long)val);
		}
	}
out:
	for (size_t i = 0; i < ds.n; i++)
		free(ds.keys[i]);
	free(ds.keys);
	free(ds.d);
}

char *metrics_render(struct mgmt_view *v)
{
	json_t *s = mgmt_stats(v, -1);
	const json_t *ws;
	struct buf b = { 0 };

	if (s == NULL)
		return NULL;
	ws = json_object_get(s, "workers");
	if (json_array_size(ws) > 0) {
		per_worker(&b, ws, "stack");
		tcp_states(&b, ws);
		listeners(&b, ws);
		per_worker(&b, ws, "dataplane");
		if (json_object_get(json_array_get(ws, 0), "smtp"))
			per_worker(&b, ws, "smtp");
		if (json_object_get(json_array_get(ws, 0), "out"))
			per_worker(&b, ws, "out");
	}
	if (json_object_get(s, "spool")) {
		plain(&b, json_object_get(s, "spool"), "spool");
		histogram(&b, json_object_get(json_object_get(s, "spool"),
					      "fdatasync_us"));
	}
	if (json_object_get(s, "qmgr"))
		plain(&b, json_object_get(s, "qmgr"), "qmgr");
	destinations(&b, v);
	bprintf(&b, "# TYPE dpmail_workers gauge\ndpmail_workers %u\n",
		v->nworkers);
	json_decref(s);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct metrics *m = cls;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	unsigned status = MHD_HTTP_OK;
	char *text = NULL;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") != 0) {
		status = MHD_HTTP_NOT_FOUND;
	} else {
		text = metrics_render(m->v);
		if (text == NULL)
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	if (text == NULL) {
		static char msg[] = "see /metrics\n";
		resp = MHD_create_response_from_buffer(strlen(msg), msg,
						       MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_buffer(strlen(text), text,
						       MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(resp, "Content-Type",
					"text/plain; version=0.0.4");
	}
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

int metrics_start(struct metrics **out, const char *listen,
		  struct mgmt_view *v, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	char host[32];
	const char *colon = strrchr(listen, ':');
	struct metrics *m;
	unsigned port;

	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host) ||
	    sscanf(colon + 1, "%u", &port) != 1 || port == 0 ||
	    port > 65535) {
		snprintf(err, errlen, "'%s' is not IPV4:PORT", listen);
		return -EINVAL;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "'%s' is not IPV4:PORT", listen);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->v = v;
	m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				MHD_USE_POLL, (uint16_t)port, NULL, NULL,
				on_request, m,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				MHD_OPTION_CONNECTION_LIMIT, 16u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
	if (m->d == NULL) {
		int e = errno ? errno : EADDRINUSE;
		free(m);
		snprintf(err, errlen, "cannot listen on %s: %s", listen,
			 strerror(e));
		return -e;
	}
	*out = m;
	return 0;
}

void metrics_stop(struct metrics *m)
{
	if (m == NULL)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
