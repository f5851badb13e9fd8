/*
 * dpmailctl.c: the operator's command line.
 *
 * Verbs that need the running daemon arrive with the control socket; what
 * works without it (checking a config file, reading a spool directory
 * with `spool dump`) is here now.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mgmt/config.h"
#include "mgmt/ctl_client.h"
#include "mgmt/dpmailctl_user.h"
#include "mgmt/smtpd_tls.h"
#include "mta/mta_policy.h"
#include "mta/mta_route.h"
#include "store/spool.h"
#include "tls/tls.h"

#ifndef DPMAIL_SYSCONFDIR
#define DPMAIL_SYSCONFDIR "etc"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: dpmailctl [--help] [--version] VERB ...\n"
		"\n"
		"Verbs:\n"
		"  config check [FILE] [--json]\n"
		"                        check a configuration file (default\n"
		"                        %s/dpmail.conf) and the tables and\n"
		"                        certificates it names; prints 'FILE: ok'\n"
		"                        or 'FILE:LINE: [section] key: reason'\n"
		"  spool dump DIR [--json] [--body]\n"
		"                        list every message in a spool directory\n"
		"                        with its recipients' states (offline,\n"
		"                        read-only; like postqueue -p, --body\n"
		"                        adds the message like postcat)\n"
		"  user add|passwd|del|list [NAME] [--password-stdin]\n"
		"                        edit the AUTH user file ([auth]\n"
		"                        users_file, or --file; see user --help)\n"
		"\n"
		"Exit codes: 0 success, 1 the check failed (or the spool has bad\n"
		"records), 2 usage error.\n\n",
		DPMAIL_SYSCONFDIR);
	ctlc_usage(f);
}

/* What `reload` would refuse, refused here too: the file, then the tables
 * and certificates it names, each loaded as the daemon loads them. */
static int check_loads(struct dpmail_conf *conf, const char *path,
		       char *err, size_t len)
{
	struct mta_policy *policy = NULL;
	struct mta_route *route = NULL;
	struct tls_ctx *tls = NULL;
	char e[512];
	int rc = -1;

	if (config_load(conf, path, err, len) != 0)
		return -1;
	if (mta_policy_load(&policy, &conf->policy, e, sizeof(e)) != 0)
		snprintf(err, len, "%s: policy: %s", path, e);
	else if (mta_route_load(&route, &conf->route, e, sizeof(e)) != 0)
		snprintf(err, len, "%s: routing: %s", path, e);
	else if (smtpd_tls_ctx_build(&conf->smtpd.tls, &tls, e,
				     sizeof(e)) != 0)
		snprintf(err, len, "%s: [tls]: %s", path, e);
	else
		rc = 0;
	tls_ctx_free(tls);
	mta_route_free(route);
	mta_policy_free(policy);
	return rc;
}

static int config_check(int argc, char **argv)
{
	static struct dpmail_conf conf;
	const char *path = NULL;
	char err[1024];
	bool json = false;
	json_t *r;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			printf("Usage: dpmailctl config check [FILE] [--json]\n"
			       "Loads FILE (default %s/dpmail.conf, or -c "
			       "FILE) as dpmaild\nwould, with the tables "
			       "and certificates it names (users,\naliases, "
			       "transport, [tls] cert_file), and reports "
			       "the first\nerror with its file and line: "
			       "what `reload` would refuse.\nExit codes: 0 "
			       "ok, 1 the check failed, 2 usage error.\n",
			       DPMAIL_SYSCONFDIR);
			return 0;
		}
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if ((strcmp(argv[i], "-s") == 0 ||
			    strcmp(argv[i], "--socket") == 0) && i + 1 < argc) {
			i++;    /* the daemon is not asked: no socket needed */
		} else if ((strcmp(argv[i], "-c") == 0 ||
			    strcmp(argv[i], "--config") == 0) &&
			   i + 1 < argc && path == NULL) {
			path = argv[++i];    /* dpmailctl -c FILE config check */
		} else if (argv[i][0] != '-' && path == NULL) {
			path = argv[i];
		} else {
			fprintf(stderr, "dpmailctl: config check: unexpected "
				"'%s' (one FILE; see config check --help)\n",
				argv[i]);
			return 2;
		}
	}
	if (path == NULL)
		path = DPMAIL_SYSCONFDIR "/dpmail.conf";
	rc = check_loads(&conf, path, err, sizeof(err));
	if (!json) {
		if (rc != 0)
			fprintf(stderr, "%s\n", err);
		else
			printf("%s: ok\n", path);
		return rc != 0;
	}
	r = rc != 0 ? json_pack("{s:b,s:s,s:s}", "ok", 0, "config", path,
				"error", err)
		    : json_pack("{s:b,s:s}", "ok", 1, "config", path);
	if (r == NULL) {        /* a path (or a reason naming one) not UTF-8 */
		fprintf(stderr, "dpmailctl: config check: %s (and no JSON "
			"for it: not UTF-8)\n", rc != 0 ? err : "ok");
		return 1;
	}
	json_dumpf(r, stdout, JSON_INDENT(2));
	putchar('\n');
	json_decref(r);
	return rc != 0;
}

/* ---- spool dump ---- */

struct dump_state {
	char qid[ENV_QID_LEN + 1];
	size_t order;
	uint32_t rcpt;
	uint8_t state;
	uint64_t next_try_s;
};

struct dump_bad {
	char segment[64];
	uint64_t offset, length;
	bool torn;
	const char *why; /* a static string of the reader */
};

struct dump {
	bool json, body;
	struct dump_state *st;
	size_t nst, stcap;
	struct dump_bad *bad;
	size_t nbad;
	char **segs;
	size_t nsegs;
	/* pass 2 */
	uint64_t msgs, live, bytes, rcpt_n[4];
	bool first;
	int err;
};

static const char *state_name[] = { "pending", "delivered", "deferred",
				    "bounced" };

static int st_cmp(const void *a, const void *b)
{
	const struct dump_state *x = a, *y = b;
	int c = strcmp(x->qid, y->qid);

	if (c != 0)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void note_segment(struct dump *d, const char *seg)
{
	char **n;

	if (d->nsegs > 0 && strcmp(d->segs[d->nsegs - 1], seg) == 0)
		return;
	n = realloc(d->segs, (d->nsegs + 1) * sizeof(*n));
	if (n == NULL)
		return;
	d->segs = n;
	d->segs[d->nsegs] = strdup(seg);
	if (d->segs[d->nsegs] != NULL)
		d->nsegs++;
}

static int pass1(void *arg, const struct spool_scan_rec *r)
{
	struct dump *d = arg;

	note_segment(d, r->segment);
	if (r->bad) {
		struct dump_bad *n = realloc(d->bad,
					     (d->nbad + 1) * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		d->bad = n;
		snprintf(n[d->nbad].segment, sizeof(n->segment), "%s",
			 r->segment);
		n[d->nbad].offset = r->offset;
		n[d->nbad].length = r->length;
		n[d->nbad].torn = r->torn;
		n[d->nbad++].why = r->why ? r->why : "bad record";
		return 0;
	}
	if (r->type != SPOOL_REQ_STATE)
		return 0;
	if (d->nst == d->stcap) {
		size_t cap = d->stcap ? d->stcap * 2 : 256;
		struct dump_state *n = realloc(d->st, cap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		d->st = n;
		d->stcap = cap;
	}
	struct dump_state *s = &d->st[d->nst];

	snprintf(s->qid, sizeof(s->qid), "%s", r->qid);
	s->order = d->nst++;
	s->rcpt = r->rcpt;
	s->state = r->state;
	s->next_try_s = r->next_try_s;
	return 0;
}

/* The recipients' states as recovery would see them: a final state
 * wins (the first one), a deferral keeps the latest next try. */
static void rcpt_states(const struct dump *d, const struct envelope *e,
			uint8_t *state, uint64_t *next)
{
	struct dump_state key, *s;

	memset(state, 0, e->nrcpt);
	memset(next, 0, e->nrcpt * sizeof(*next));
	snprintf(key.qid, sizeof(key.qid), "%s", e->qid);
	key.order = 0;
	/* the first entry of this qid: lower bound by hand */
	size_t lo = 0, hi = d->nst;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (st_cmp(&d->st[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (s = d->st + lo; s < d->st + d->nst && !strcmp(s->qid, e->qid);
	     s++) {
		if (s->rcpt >= e->nrcpt)
			continue;
		if (state[s->rcpt] == SPOOL_RCPT_DELIVERED ||
		    state[s->rcpt] == SPOOL_RCPT_BOUNCED)
			continue;
		state[s->rcpt] = s->state;
		if (s->state == SPOOL_RCPT_DEFERRED &&
		    s->next_try_s > next[s->rcpt])
			next[s->rcpt] = s->next_try_s;
	}
}

/* JSON string: escapes, valid UTF-8 passed through, other bytes as
 * U+FFFD (a hostile file may hold anything). */
static size_t utf8_len(const unsigned char *p, size_t left)
{
	size_t n;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

static bool utf8_valid(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(p + i, len - i);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

static void json_str(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	putchar('"');
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n;

		switch (c) {
		case '"': fputs("\\\"", stdout); i++; continue;
		case '\\': fputs("\\\\", stdout); i++; continue;
		case '\n': fputs("\\n", stdout); i++; continue;
		case '\r': fputs("\\r", stdout); i++; continue;
		case '\t': fputs("\\t", stdout); i++; continue;
		default: break;
		}
		if (c < 0x20 || c == 0x7f) {
			printf("\\u%04x", c);
			i++;
			continue;
		}
		n = utf8_len(p + i, len - i);
		if (n == 0) {
			fputs("\\ufffd", stdout);
			i++;
			continue;
		}
		fwrite(p + i, 1, n, stdout);
		i += n;
	}
	putchar('"');
}

static void json_cstr(const char *s)
{
	json_str(s, strlen(s));
}

static void base64(const uint8_t *p, size_t len)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	putchar('"');
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		putchar(t[v >> 18 & 63]);
		putchar(t[v >> 12 & 63]);
		putchar(i + 1 < len ? t[v >> 6 & 63] : '=');
		putchar(i + 2 < len ? t[v & 63] : '=');
	}
	putchar('"');
}

static void iso_time(char *out, size_t len, uint64_t us)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *ret_name[] = { "none", "full", "hdrs" };
static const char *body_name[] = { "none", "7bit", "8bitmime", "binarymime" };

static void dump_json_msg(struct dump *d, const struct spool_scan_rec *r,
			  const uint8_t *state, const uint64_t *next, bool live)
{
	const struct envelope *e = r->env;
	char when[32];

	iso_time(when, sizeof(when), e->arrival_us);
	printf("%s\n    {\"queue_id\": ", d->first ? "" : ",");
	d->first = false;
	json_cstr(e->qid);
	printf(", \"segment\": ");
	json_cstr(r->segment);
	printf(", \"offset\": %llu, \"crc32c\": \"%08x\", \"live\": %s,\n"
	       "     \"arrival_us\": %llu, \"arrival\": \"%s\", \"size\": %zu, "
	       "\"declared_size\": %llu,\n     \"sender\": ",
	       (unsigned long long)r->offset, r->crc, live ? "true" : "false",
	       (unsigned long long)e->arrival_us, when, e->body_len,
	       (unsigned long long)e->declared_size);
	json_cstr(e->mail_from);
	printf(", \"envid\": ");
	json_cstr(e->envid);
	printf(", \"ret\": \"%s\", \"body_type\": \"%s\", \"smtputf8\": %s, "
	       "\"esmtp\": %s,\n     \"helo\": ",
	       ret_name[e->ret % 3], body_name[e->body_type % 4],
	       e->smtputf8 ? "true" : "false", e->esmtp ? "true" : "false");
	json_cstr(e->helo);
	printf(", \"client_addr\": ");
	json_cstr(e->client_addr);
	printf(", \"client_port\": %u, \"local_port\": %u,\n"
	       "     \"recipients\": [", e->client_port, e->local_port);
	for (uint32_t i = 0; i < e->nrcpt; i++) {
		static const char *nn[] = { "never", "success", "failure",
					    "delay" };
		bool f = true;

		printf("%s\n      {\"addr\": ", i ? "," : "");
		json_cstr(e->rcpt[i].addr);
		printf(", \"orcpt\": ");
		json_cstr(e->rcpt[i].orcpt);
		printf(", \"notify\": [");
		for (int b = 0; b < 4; b++)
			if (e->rcpt[i].notify & (1u << b)) {
				printf("%s\"%s\"", f ? "" : ", ", nn[b]);
				f = false;
			}
		printf("], \"state\": \"%s\"", state_name[state[i] & 3]);
		if (state[i] == SPOOL_RCPT_DEFERRED)
			printf(", \"next_try_s\": %llu",
			       (unsigned long long)next[i]);
		printf("}");
	}
	printf("]");
	if (d->body) {
		if (utf8_valid(e->body, e->body_len)) {
			printf(",\n     \"body\": ");
			json_str(e->body, e->body_len);
		} else {
			printf(",\n     \"body_base64\": ");
			base64(e->body, e->body_len);
		}
	}
	printf("}");
}

static void dump_text_msg(struct dump *d, const struct spool_scan_rec *r,
			  const uint8_t *state, const uint64_t *next, bool live)
{
	const struct envelope *e = r->env;
	time_t t = (time_t)(e->arrival_us / 1000000u);
	char when[32];
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
	printf("%-14s%c %8zu %-20s %s\n", e->qid, live ? ' ' : '-',
	       e->body_len, when, e->mail_from[0] ? e->mail_from : "<>");
	for (uint32_t i = 0; i < e->nrcpt; i++) {
		printf("%46s%s  (%s", "", e->rcpt[i].addr,
		       state_name[state[i] & 3]);
		if (state[i] == SPOOL_RCPT_DEFERRED) {
			char nt[32];

			iso_time(nt, sizeof(nt), next[i] * 1000000u);
			printf(", next try %s", nt);
		}
		printf(")\n");
	}
	if (d->body) {
		printf("*** MESSAGE CONTENTS %s ***\n", e->qid);
		fwrite(e->body, 1, e->body_len, stdout);
		if (e->body_len && e->body[e->body_len - 1] != '\n')
			putchar('\n');
		printf("*** END OF MESSAGE ***\n");
	}
	putchar('\n');
}

static int pass2(void *arg, const struct spool_scan_rec *r)
{
	struct dump *d = arg;
	const struct envelope *e = r->env;
	uint8_t *state;
	uint64_t *next;
	bool live = false;

	if (r->bad || r->type != SPOOL_REQ_MSG)
		return 0;
	state = malloc(e->nrcpt + 1);
	next = malloc((e->nrcpt + 1) * sizeof(*next));
	if (state == NULL || next == NULL) {
		free(state);
		free(next);
		return -ENOMEM;
	}
	rcpt_states(d, e, state, next);
	for (uint32_t i = 0; i < e->nrcpt; i++) {
		d->rcpt_n[state[i] & 3]++;
		live |= state[i] == SPOOL_RCPT_PENDING ||
			state[i] == SPOOL_RCPT_DEFERRED;
	}
	d->msgs++;
	d->live += live;
	d->bytes += e->body_len;
	if (d->json)
		dump_json_msg(d, r, state, next, live);
	else
		dump_text_msg(d, r, state, next, live);
	free(state);
	free(next);
	return 0;
}

static void dump_free(struct dump *d)
{
	for (size_t i = 0; i < d->nsegs; i++)
		free(d->segs[i]);
	free(d->segs);
	free(d->st);
	free(d->bad);
}

static int spool_dump(int argc, char **argv)
{
	struct dump d = { .first = true };
	const char *dir = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			d.json = true;
		} else if (strcmp(argv[i], "--body") == 0) {
			d.body = true;
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			printf("Usage: dpmailctl spool dump DIR [--json] [--body]\n"
			       "Reads the spool segments in DIR (read-only; the "
			       "daemon may run) and lists\n"
			       "every message: queue ID, size, arrival, sender, "
			       "and each recipient\n"
			       "with its state. A '-' after the queue ID marks a "
			       "finished message\n"
			       "whose segment is not deleted yet. Bad records "
			       "(CRC or structure) are\n"
			       "listed: a corrupt region is skipped and the "
			       "records after it are read\n"
			       "(as recovery does); a torn tail (nothing good "
			       "after it) ends its segment.\n"
			       "  --json   one JSON object (messages, bad_records, "
			       "summary)\n"
			       "  --body   the message too (JSON: \"body\", or "
			       "\"body_base64\" when not UTF-8)\n"
			       "Exit: 0, 1 when there are bad records or DIR "
			       "cannot be read, 2 usage.\n");
			return 0;
		} else if (argv[i][0] == '-' || dir != NULL) {
			fprintf(stderr, "dpmailctl: spool dump: unexpected '%s'\n",
				argv[i]);
			return 2;
		} else {
			dir = argv[i];
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "dpmailctl: spool dump needs a directory\n");
		return 2;
	}
	rc = spool_scan(dir, pass1, &d);
	if (rc == 0) {
		if (d.nst > 1)
			qsort(d.st, d.nst, sizeof(*d.st), st_cmp);
		if (d.json) {
			printf("{\"dir\": ");
			json_cstr(dir);
			printf(",\n  \"messages\": [");
		} else {
			printf("-Queue ID-      --Size-- ----Arrival Time---- "
			       "-Sender/Recipient-------\n");
		}
		rc = spool_scan(dir, pass2, &d);
	}
	if (rc != 0) {
		fflush(stdout);
		fprintf(stderr, "dpmailctl: spool dump %s: %s\n", dir,
			strerror(-rc));
		dump_free(&d);
		return 1;
	}
	if (d.json) {
		printf("\n  ],\n  \"bad_records\": [");
		for (size_t i = 0; i < d.nbad; i++) {
			printf("%s{\"segment\": ", i ? ", " : "");
			json_cstr(d.bad[i].segment);
			printf(", \"offset\": %llu, \"length\": %llu, "
			       "\"torn\": %s, \"why\": ",
			       (unsigned long long)d.bad[i].offset,
			       (unsigned long long)d.bad[i].length,
			       d.bad[i].torn ? "true" : "false");
			json_cstr(d.bad[i].why);
			putchar('}');
		}
		printf("],\n  \"summary\": {\"messages\": %llu, \"live\": %llu, "
		       "\"bytes\": %llu, \"segments\": %zu, \"state_records\": "
		       "%zu, \"bad_records\": %zu,\n    \"recipients\": "
		       "{\"pending\": %llu, \"delivered\": %llu, \"deferred\": "
		       "%llu, \"bounced\": %llu}}}\n",
		       (unsigned long long)d.msgs, (unsigned long long)d.live,
		       (unsigned long long)d.bytes, d.nsegs, d.nst, d.nbad,
		       (unsigned long long)d.rcpt_n[0],
		       (unsigned long long)d.rcpt_n[1],
		       (unsigned long long)d.rcpt_n[2],
		       (unsigned long long)d.rcpt_n[3]);
	} else {
		for (size_t i = 0; i < d.nbad; i++)
			printf("!! %s in %s at offset %llu, %llu bytes (%s): "
			       "%s\n", d.bad[i].torn ? "torn tail" :
			       "corrupt region", d.bad[i].segment,
			       (unsigned long long)d.bad[i].offset,
			       (unsigned long long)d.bad[i].length,
			       d.bad[i].why, d.bad[i].torn ?
			       "the end of that segment (recovery cuts it off)" :
			       "skipped, the records after it were read");
		printf("-- %llu Kbytes in %llu messages (%llu live); recipients: "
		       "%llu pending, %llu deferred, %llu delivered, %llu "
		       "bounced; %zu state records, %zu bad records in %zu "
		       "segments.\n",
		       (unsigned long long)(d.bytes + 1023) / 1024,
		       (unsigned long long)d.msgs, (unsigned long long)d.live,
		       (unsigned long long)d.rcpt_n[0],
		       (unsigned long long)d.rcpt_n[2],
		       (unsigned long long)d.rcpt_n[1],
		       (unsigned long long)d.rcpt_n[3], d.nst, d.nbad, d.nsegs);
	}
	rc = d.nbad ? 1 : 0;
	dump_free(&d);
	return rc;
}

/* "dpmailctl -s SOCK --json status": the options before the verb move
 * after it, where every verb parses its options. */
static void hoist_options(int argc, char **argv)
{
	char *opts[8];
	int i = 1, n;

	while (i < argc && argv[i][0] == '-' && i <= 6) {
		if ((strcmp(argv[i], "-s") == 0 ||
		     strcmp(argv[i], "--socket") == 0 ||
		     strcmp(argv[i], "-c") == 0 ||
		     strcmp(argv[i], "--config") == 0) && i + 1 < argc)
			i += 2;
		else if (strcmp(argv[i], "--json") == 0)
			i++;
		else
			break;
	}
	n = i - 1;
	if (n == 0 || i >= argc)
		return;
	memcpy(opts, argv + 1, (size_t)n * sizeof(*argv));
	memmove(argv + 1, argv + 1 + n, (size_t)(argc - 1 - n) * sizeof(*argv));
	memcpy(argv + argc - n, opts, (size_t)n * sizeof(*argv));
}

int main(int argc, char **argv)
{
	hoist_options(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("dpmailctl %s\n", DPMAIL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "config") == 0 && argc >= 3 &&
	    strcmp(argv[2], "check") == 0)
		return config_check(argc - 2, argv + 2);
	if (strcmp(argv[1], "user") == 0)
		return dpmailctl_user(argc - 1, argv + 1);
	if (strcmp(argv[1], "spool") == 0 && argc >= 3 &&
	    strcmp(argv[2], "dump") == 0)
		return spool_dump(argc - 2, argv + 2);
	if (ctlc_handles(argv[1]))
		return ctlc_main(argc - 1, argv + 1);
	fprintf(stderr, "dpmailctl: unknown verb '%s' (see dpmailctl --help)\n",
		argv[1]);
	return 2;
}
