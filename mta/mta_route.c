/*
 * mta_route.c: recipient routing and alias expansion (see mta_route.h
 * for the rules and the file formats).
 *
 * Tables are sorted arrays of lower-case keys searched with bsearch:
 * built once at load, shared read-only by every thread.
 */
#include "mta/mta_route.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "mta/mta_strset.h"

#define ADDR_MAX 1024      /* longest address we look at */
#define LOGICAL_MAX 65536  /* longest aliases entry, continuations joined */
#define EXPAND_DEPTH 32    /* alias nesting before we call it a loop */

struct alias {
	char *key;        /* "user", "user@domain" or "@domain" */
	char **target;    /* "user" or "user@domain", lower case */
	size_t ntarget;
	int line;
};

enum tp_kind { TP_RELAY = 0, TP_LOCAL, TP_REJECT };

struct transport {
	char *key;        /* "domain" or ".domain" */
	enum tp_kind kind;
	struct mta_nexthop nh;
	char dest[MTA_HOST_MAX + 16];
	uint16_t code;
	char enh[16];
	char text[256];
	int line;
};

struct mta_route {
	uint32_t refs;                /* atomic */
	struct mta_strset local;
	char primary[256];            /* the first local domain listed */
	struct mta_strset users;
	struct alias *alias;
	size_t nalias;
	struct transport *tp;
	size_t ntp;
	bool has_relay;
	struct mta_nexthop relay;
	char relay_dest[MTA_HOST_MAX + 16];
	char delim[8];
	uint32_t max_expansion;
};

/* ---- small helpers ---- */

/* A local part we can name in a table: no blanks, quotes, brackets,
 * commas, colons or '@'. */
static bool local_ok(const char *s, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch == 0x7f || strchr("\"<>,:;@()[]\\", ch))
			return false;
	}
	return true;
}

static char *skip_ws(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

static void rtrim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/* '#' starts a comment at the start of a line or after a blank. */
static void strip_comment(char *s)
{
	for (char *p = s; *p != '\0'; p++)
		if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
}

static void fmt_dest(const struct mta_nexthop *nh, char *dest, size_t len)
{
	const char *l = nh->kind == MTA_NH_MX ? "" : "[";
	const char *r = nh->kind == MTA_NH_MX ? "" : "]";

	if (nh->port == 25)
		snprintf(dest, len, "%s%s%s", l, nh->host, r);
	else
		snprintf(dest, len, "%s%s%s:%u", l, nh->host, r, nh->port);
}

/* nexthop: [ip] [ip]:port [host] [host]:port host host:port ip ip:port,
 * each with an optional "smtp:" prefix. */
static int parse_nexthop(const char *s, struct mta_nexthop *nh, char *dest,
			 size_t destlen, char *why, size_t whylen)
{
	char buf[MTA_HOST_MAX + 16], *host, *port = NULL;
	bool bracket = false;
	uint32_t a, p = 25;

	if (strncasecmp(s, "smtp:", 5) == 0)
		s += 5;
	if (strlen(s) >= sizeof(buf))
		goto bad;
	memcpy(buf, s, strlen(s) + 1);
	host = buf;
	if (host[0] == '[') {
		char *e = strchr(host, ']');
		if (e == NULL)
			goto bad;
		*e = '\0';
		host++;
		bracket = true;
		if (e[1] == ':')
			port = e + 2;
		else if (e[1] != '\0')
			goto bad;
	} else if ((port = strrchr(host, ':')) != NULL) {
		*port++ = '\0';
	}
	if (port != NULL && parse_u32(port, 1, 65535, &p) != 0)
		goto bad;
	memset(nh, 0, sizeof(*nh));
	nh->port = (uint16_t)p;
	if (parse_ipv4(host, &a) == 0)
		nh->kind = MTA_NH_IP;
	else if (mta_domain_ok(host, strlen(host), false))
		nh->kind = bracket ? MTA_NH_HOST : MTA_NH_MX;
	else
		goto bad;
	snprintf(nh->host, sizeof(nh->host), "%.*s", MTA_HOST_MAX, host);
	mta_lower(nh->host);
	fmt_dest(nh, dest, destlen);
	return 0;
bad:
	snprintf(why, whylen, "'%.80s' is not a next hop ([ip], [ip]:port, "
		 "host, host:port, [host], [host]:port)", s);
	return -EINVAL;
}

/* ---- look-ups ---- */

static int cmp_alias(const void *a, const void *b)
{
	return strcmp(((const struct alias *)a)->key,
		      ((const struct alias *)b)->key);
}

static const struct alias *alias_find(const struct mta_route *r,
				      const char *key)
{
	struct alias k = { .key = (char *)key };

	if (r->nalias == 0)
		return NULL;
	return bsearch(&k, r->alias, r->nalias, sizeof(k), cmp_alias);
}

static int cmp_tp(const void *a, const void *b)
{
	return strcmp(((const struct transport *)a)->key,
		      ((const struct transport *)b)->key);
}

static const struct transport *tp_key(const struct mta_route *r,
				      const char *key)
{
	struct transport k = { .key = (char *)key };

	if (r->ntp == 0)
		return NULL;
	return bsearch(&k, r->tp, r->ntp, sizeof(k), cmp_tp);
}

/* dom lower case: the exact entry, else the longest ".parent" entry. */
static const struct transport *tp_find(const struct mta_route *r,
				       const char *dom)
{
	const struct transport *t = tp_key(r, dom);
	const char *d = dom;

	while (t == NULL && (d = strchr(d, '.')) != NULL) {
		t = tp_key(r, d);
		d++;
	}
	return t;
}

/* A local domain: listed, or routed "local" by the transport map. */
static bool is_local(const struct mta_route *r, const char *dom)
{
	const struct transport *t;

	if (mta_strset_has(&r->local, dom))
		return true;
	t = tp_find(r, dom);
	return t != NULL && t->kind == TP_LOCAL;
}

/* The users-file line for local@dom, or NULL. */
static const char *user_find(const struct mta_route *r, const char *local,
			     const char *dom, char *key, size_t keylen)
{
	snprintf(key, keylen, "%s@%s", local, dom);
	if (mta_strset_has(&r->users, key))
		return key;
	snprintf(key, keylen, "%s", local);
	if (mta_strset_has(&r->users, key))
		return key;
	return NULL;
}

/* Where the local part's detail starts ("alice+foo" -> "+foo"), or
 * NULL. A leading delimiter is not one ("+foo" stays whole). */
static const char *detail(const struct mta_route *r, const char *local)
{
	size_t n;

	if (r->delim[0] == '\0')
		return NULL;
	n = strcspn(local, r->delim);
	return n > 0 && local[n] != '\0' ? local + n : NULL;
}

/* The mailbox of local@dom (detail stripped if need be) into key. */
static const char *mailbox_find(const struct mta_route *r, const char *local,
				const char *dom, char *key, size_t keylen)
{
	const char *d = detail(r, local);
	char base[ADDR_MAX];

	if (user_find(r, local, dom, key, keylen) != NULL)
		return key;
	if (d == NULL)
		return NULL;
	snprintf(base, sizeof(base), "%.*s", (int)(d - local), local);
	return user_find(r, base, dom, key, keylen);
}

/* The alias (or catch-all) that applies to local@dom, dom local. */
static const struct alias *alias_for(const struct mta_route *r,
				     const char *local, const char *dom)
{
	const char *d = detail(r, local);
	const struct alias *a;
	char key[ADDR_MAX + 2];
	int n = d != NULL ? (int)(d - local) : (int)strlen(local);

	snprintf(key, sizeof(key), "%s@%s", local, dom);
	if ((a = alias_find(r, key)) != NULL)
		return a;
	if (d != NULL) {
		snprintf(key, sizeof(key), "%.*s@%s", n, local, dom);
		if ((a = alias_find(r, key)) != NULL)
			return a;
	}
	if ((a = alias_find(r, local)) != NULL)
		return a;
	if (d != NULL) {
		snprintf(key, sizeof(key), "%.*s", n, local);
		if ((a = alias_find(r, key)) != NULL)
			return a;
	}
	if (mailbox_find(r, local, dom, key, sizeof(key)) != NULL)
		return NULL;
	snprintf(key, sizeof(key), "@%s", dom);
	return alias_find(r, key);
}

/* Splits a lower-cased copy of addr into buf: *local, *dom. No domain:
 * "postmaster" gets the first local domain, anything else *dom = NULL.
 * false when addr is too long or empty. */
static bool split_addr(const struct mta_route *r, const char *addr,
		       char *buf, size_t buflen, char **local, char **dom)
{
	size_t len = strlen(addr);
	char *at;

	if (len == 0 || len >= buflen - sizeof(r->primary) - 1)
		return false;
	memcpy(buf, addr, len + 1);
	mta_lower(buf);
	at = strrchr(buf, '@');
	*local = buf;
	if (at != NULL) {
		*at = '\0';
		*dom = at + 1;
	} else if (strcmp(buf, "postmaster") == 0 && r->primary[0] != '\0') {
		*dom = buf + len + 1;
		memcpy(*dom, r->primary, strlen(r->primary) + 1);
	} else {
		*dom = NULL;
	}
	return true;
}

/* ---- routing ---- */

static void reject(struct mta_route_result *res, uint16_t code,
		   const char *enh, const char *text)
{
	res->kind = MTA_ROUTE_REJECT;
	res->code = code;
	snprintf(res->enh, sizeof(res->enh), "%s", enh);
	snprintf(res->text, sizeof(res->text), "%s", text);
}

static void relay(struct mta_route_result *res, const struct mta_nexthop *nh,
		  const char *dest)
{
	res->kind = MTA_ROUTE_RELAY;
	res->nh = *nh;
	snprintf(res->dest, sizeof(res->dest), "%s", dest);
}

static void route_local(const struct mta_route *r, const char *local,
			const char *dom, struct mta_route_result *res)
{
	char key[ADDR_MAX + 2];

	if (mailbox_find(r, local, dom, key, sizeof(key)) == NULL) {
		reject(res, 550, "5.1.1", "user unknown");
		return;
	}
	res->kind = MTA_ROUTE_LOCAL;
	/* a users-file line: local part <= 64, domain <= 253 */
	snprintf(res->mailbox, sizeof(res->mailbox), "%.319s", key);
}

void mta_route_rcpt(const struct mta_route *r, const char *addr,
		    struct mta_route_result *res)
{
	char buf[ADDR_MAX + 300], *local, *dom;
	const struct transport *t;
	size_t dlen;

	memset(res, 0, sizeof(*res));
	if (!split_addr(r, addr, buf, sizeof(buf), &local, &dom) ||
	    dom == NULL || local[0] == '\0') {
		reject(res, 553, "5.1.3", "bad recipient address syntax");
		return;
	}
	dlen = strlen(dom);
	if (dom[0] == '[') {
		struct mta_nexthop nh = { .kind = MTA_NH_IP, .port = 25 };
		uint32_t a;
		char dest[MTA_HOST_MAX + 16];

		if (dlen < 3 || dom[dlen - 1] != ']') {
			reject(res, 553, "5.1.3", "bad address literal");
			return;
		}
		dom[dlen - 1] = '\0';
		if (parse_ipv4(dom + 1, &a) != 0) {
			reject(res, 553, "5.1.3",
			       "only IPv4 address literals are routed");
			return;
		}
		snprintf(nh.host, sizeof(nh.host), "%.*s", MTA_HOST_MAX,
			 dom + 1);
		fmt_dest(&nh, dest, sizeof(dest));
		relay(res, &nh, dest);
		return;
	}
	if (!mta_domain_ok(dom, dlen, false)) {
		reject(res, 553, "5.1.3", "bad destination domain syntax");
		return;
	}
	t = tp_find(r, dom);
	if (mta_strset_has(&r->local, dom) ||
	    (t != NULL && t->kind == TP_LOCAL)) {
		route_local(r, local, dom, res);
		return;
	}
	if (t != NULL) {
		if (t->kind == TP_REJECT)
			reject(res, t->code, t->enh, t->text);
		else
			relay(res, &t->nh, t->dest);
		return;
	}
	if (r->has_relay) {
		relay(res, &r->relay, r->relay_dest);
		return;
	}
	{
		struct mta_nexthop nh = { .kind = MTA_NH_MX, .port = 25 };

		snprintf(nh.host, sizeof(nh.host), "%.*s", MTA_HOST_MAX, dom);
		relay(res, &nh, dom);
	}
}

enum mta_route_check mta_route_check_rcpt(const struct mta_route *r,
					  const char *addr,
					  struct mta_route_result *res)
{
	char buf[ADDR_MAX + 300], key[ADDR_MAX + 2], *local, *dom;
	const struct transport *t;

	memset(res, 0, sizeof(*res));
	if (!split_addr(r, addr, buf, sizeof(buf), &local, &dom) ||
	    dom == NULL || dom[0] == '[' || local[0] == '\0')
		return MTA_RCHK_NOT_LOCAL;
	t = tp_find(r, dom);
	if (mta_strset_has(&r->local, dom) ||
	    (t != NULL && t->kind == TP_LOCAL)) {
		if (mailbox_find(r, local, dom, key, sizeof(key)) != NULL ||
		    alias_for(r, local, dom) != NULL)
			return MTA_RCHK_LOCAL_OK;
		reject(res, 550, "5.1.1", "user unknown");
		return MTA_RCHK_NO_USER;
	}
	if (t != NULL && t->kind == TP_REJECT) {
		reject(res, t->code, t->enh, t->text);
		return MTA_RCHK_REJECT;
	}
	return MTA_RCHK_NOT_LOCAL;
}

/* ---- alias expansion ---- */

struct xp {
	const struct mta_route *r;
	char **out;          /* final addresses */
	int nout, capout;
	char **seen;         /* addresses expanded so far */
	int nseen, capseen;
	const char *anc[EXPAND_DEPTH + 1]; /* the current chain */
	int depth;
	bool looped;
	int err;
};

static bool in_list(char *const *v, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

static int push(char ***v, int *n, int *cap, const char *s)
{
	char *c;

	if (*n == *cap) {
		int ncap = *cap ? *cap * 2 : 8;
		char **nv = realloc(*v, (size_t)ncap * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	if ((c = strdup(s)) == NULL)
		return -ENOMEM;
	(*v)[(*n)++] = c;
	return 0;
}

static void add_final(struct xp *x, const char *addr)
{
	if (x->err != 0 || in_list(x->out, x->nout, addr))
		return;
	if ((uint32_t)x->nout >= x->r->max_expansion) {
		x->err = -E2BIG;
		return;
	}
	x->err = push(&x->out, &x->nout, &x->capout, addr);
}

/* addr: lower case "local@dom". */
static void expand(struct xp *x, const char *addr)
{
	char buf[ADDR_MAX + 300], full[ADDR_MAX + 300], *local, *dom;
	const struct alias *a = NULL;

	if (x->err != 0)
		return;
	if (split_addr(x->r, addr, buf, sizeof(buf), &local, &dom) &&
	    dom != NULL && is_local(x->r, dom))
		a = alias_for(x->r, local, dom);
	if (a == NULL) {
		add_final(x, addr);
		return;
	}
	if (in_list(x->seen, x->nseen, addr))
		return; /* reached before by another path: already done */
	if (x->depth == EXPAND_DEPTH) {
		x->looped = true;
		return;
	}
	x->err = push(&x->seen, &x->nseen, &x->capseen, addr);
	x->anc[x->depth++] = addr;
	for (size_t i = 0; i < a->ntarget && x->err == 0; i++) {
		const char *t = a->target[i];
		bool loop = false;

		if (strchr(t, '@') != NULL)
			snprintf(full, sizeof(full), "%s", t);
		else
			snprintf(full, sizeof(full), "%s@%s", t, dom);
		if (strcmp(full, addr) == 0) {
			add_final(x, full); /* "alice: alice, archive" */
			continue;
		}
		for (int d = 0; d < x->depth; d++)
			loop = loop || strcmp(x->anc[d], full) == 0;
		if (loop) {
			x->looped = true;
			continue;
		}
		expand(x, full);
	}
	x->depth--;
}

void mta_route_expand_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int mta_route_expand(const struct mta_route *r, const char *addr,
		     char ***out)
{
	char buf[ADDR_MAX + 300], full[ADDR_MAX + 300], *local, *dom;
	struct xp x = { .r = r };

	*out = NULL;
	if (!split_addr(r, addr, buf, sizeof(buf), &local, &dom) ||
	    dom == NULL || !is_local(r, dom) ||
	    alias_for(r, local, dom) == NULL)
		return 0;
	snprintf(full, sizeof(full), "%s@%s", local, dom);
	expand(&x, full);
	mta_route_expand_free(x.seen, x.nseen);
	if (x.err == 0 && x.nout == 0)
		x.err = -ELOOP;
	if (x.err != 0) {
		mta_route_expand_free(x.out, x.nout);
		return x.err;
	}
	*out = x.out;
	return x.nout;
}

/* ---- loop detection ---- */

unsigned mta_count_received(const uint8_t *body, size_t len)
{
	static const char name[] = "received";
	unsigned n = 0;
	size_t i = 0;

	while (i < len) {
		const uint8_t *l = body + i;
		const uint8_t *nl = memchr(l, '\n', len - i);
		size_t ll = nl != NULL ? (size_t)(nl - l) : len - i;

		if (ll == 0 || (ll == 1 && l[0] == '\r'))
			break; /* the empty line: end of the header */
		/* field = name ":" ...; a line starting with WSP folds */
		if (l[0] != ' ' && l[0] != '\t' && ll > sizeof(name) - 1 &&
		    strncasecmp((const char *)l, name, sizeof(name) - 1) == 0) {
			size_t j = sizeof(name) - 1;
			while (j < ll && (l[j] == ' ' || l[j] == '\t'))
				j++; /* RFC 5322 obs-optional: WSP before ':' */
			if (j < ll && l[j] == ':')
				n++;
		}
		i += ll + 1;
	}
	return n;
}

/* ---- loading ---- */

struct lines {
	FILE *f;
	const char *path;
	char *buf;       /* getline's */
	size_t cap;
	int lineno;
};

static int lines_open(struct lines *ls, const char *what, const char *path,
		      char *err, size_t errlen)
{
	memset(ls, 0, sizeof(*ls));
	ls->path = path;
	ls->f = fopen(path, "r");
	if (ls->f == NULL) {
		int e = errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
		return -e;
	}
	return 0;
}

static void lines_close(struct lines *ls)
{
	if (ls->f != NULL)
		fclose(ls->f);
	free(ls->buf);
}

/* The next physical line, newline and comment stripped; NULL at EOF. */
static char *lines_next(struct lines *ls)
{
	ssize_t n = getline(&ls->buf, &ls->cap, ls->f);

	if (n < 0)
		return NULL;
	ls->lineno++;
	strip_comment(ls->buf);
	rtrim(ls->buf);
	return ls->buf;
}

static int add_domain(void *arg, const char *item, size_t len, char *err,
		      size_t errlen)
{
	struct mta_route *r = arg;

	if (!mta_domain_ok(item, len, false)) {
		snprintf(err, errlen, "local_domains: '%.*s' is not a domain "
			 "name", (int)(len > 64 ? 64 : len), item);
		return -EINVAL;
	}
	if (r->primary[0] == '\0') {
		snprintf(r->primary, sizeof(r->primary), "%.*s", (int)len,
			 item);
		mta_lower(r->primary);
	}
	return mta_strset_add(&r->local, item, len);
}

static int load_domains(struct mta_route *r, const char *list, char *err,
			size_t errlen)
{
	int rc = mta_for_items(list, ", \t\r\n", add_domain, r, err, errlen);

	if (rc != 0)
		return rc;
	mta_strset_seal(&r->local);
	return 0;
}

static int load_users(struct mta_route *r, const char *path, char *err,
		      size_t errlen)
{
	struct lines ls;
	char *s;
	int rc;

	if (path[0] == '\0')
		return 0;
	rc = lines_open(&ls, "users_file", path, err, errlen);
	while (rc == 0 && (s = lines_next(&ls)) != NULL) {
		char *at;

		/* as mta_policy reads it: '#' anywhere starts a comment */
		if ((at = strchr(s, '#')) != NULL)
			*at = '\0';
		rtrim(s);
		s = skip_ws(s);
		if (*s == '\0')
			continue;
		at = strchr(s, '@');
		if (!local_ok(s, at != NULL ? (size_t)(at - s) : strlen(s)) ||
		    (at != NULL &&
		     !mta_domain_ok(at + 1, strlen(at + 1), false))) {
			snprintf(err, errlen, "users_file %s:%d: '%.80s' is "
				 "not a user or user@domain", path, ls.lineno,
				 s);
			rc = -EINVAL;
			break;
		}
		rc = mta_strset_add(&r->users, s, strlen(s));
	}
	lines_close(&ls);
	mta_strset_seal(&r->users);
	return rc;
}

/* A key listed on lines a and b (sorted tables find it at the end). */
static int twice(char *err, size_t errlen, const char *what,
		 const char *path, const char *key, int a, int b)
{
	snprintf(err, errlen, "%s %s:%d: '%.80s' is listed twice (first on "
		 "line %d)", what, path, a > b ? a : b, key, a < b ? a : b);
	return -EINVAL;
}

/* "reject" [CODE X.Y.Z [text]] */
static int parse_reject(struct transport *t, char *args, char *why,
			size_t whylen)
{
	char *code, *enh, *text;
	uint32_t c;
	unsigned a, b, d;
	int used = 0;

	t->kind = TP_REJECT;
	t->code = 550;
	snprintf(t->enh, sizeof(t->enh), "5.7.1");
	snprintf(t->text, sizeof(t->text), "relay not permitted");
	args = skip_ws(args);
	if (*args == '\0')
		return 0;
	code = args;
	args += strcspn(args, " \t");
	if (*args != '\0')
		*args++ = '\0';
	enh = skip_ws(args);
	args = enh + strcspn(enh, " \t");
	if (*args != '\0')
		*args++ = '\0';
	text = skip_ws(args);
	if (parse_u32(code, 400, 599, &c) != 0 || *enh == '\0' ||
	    sscanf(enh, "%u.%u.%u%n", &a, &b, &d, &used) != 3 ||
	    enh[used] != '\0' || a != c / 100 || b > 999 || d > 999) {
		snprintf(why, whylen, "reject wants CODE X.Y.Z [text] with "
			 "CODE 4xx or 5xx and X its first digit");
		return -EINVAL;
	}
	t->code = (uint16_t)c;
	snprintf(t->enh, sizeof(t->enh), "%.15s", enh);
	if (*text != '\0')
		snprintf(t->text, sizeof(t->text), "%s", text);
	return 0;
}

static int load_transport(struct mta_route *r, const char *path, char *err,
			  size_t errlen)
{
	struct lines ls;
	char *s, why[200];
	size_t cap = 0;
	int rc;

	if (path[0] == '\0')
		return 0;
	rc = lines_open(&ls, "transport_file", path, err, errlen);
	while (rc == 0 && (s = lines_next(&ls)) != NULL) {
		struct transport *t;
		char *key, *val;
		bool dot;

		key = skip_ws(s);
		if (*key == '\0')
			continue;
		val = key + strcspn(key, " \t");
		if (*val != '\0')
			*val++ = '\0';
		val = skip_ws(val);
		mta_lower(key);
		dot = key[0] == '.';
		if (!mta_domain_ok(key + dot, strlen(key + dot), false)) {
			snprintf(why, sizeof(why), "'%.80s' is not a domain "
				 "or .domain", key);
			goto bad;
		}
		if (*val == '\0') {
			snprintf(why, sizeof(why), "'%.80s' has no next hop",
				 key);
			goto bad;
		}
		if (r->ntp == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct transport *n = realloc(r->tp, ncap * sizeof(*n));
			if (n == NULL) {
				rc = -ENOMEM;
				break;
			}
			r->tp = n;
			cap = ncap;
		}
		t = &r->tp[r->ntp];
		memset(t, 0, sizeof(*t));
		t->line = ls.lineno;
		if (strcasecmp(val, "local") == 0) {
			t->kind = TP_LOCAL;
		} else if (strncasecmp(val, "reject", 6) == 0 &&
			   (val[6] == '\0' || isblank((unsigned char)val[6]))) {
			if (parse_reject(t, val + 6, why, sizeof(why)) != 0)
				goto bad;
		} else {
			if (strpbrk(val, " \t") != NULL) {
				snprintf(why, sizeof(why), "one next hop per "
					 "line: '%.80s'", val);
				goto bad;
			}
			t->kind = TP_RELAY;
			if (parse_nexthop(val, &t->nh, t->dest, sizeof(t->dest),
					  why, sizeof(why)) != 0)
				goto bad;
		}
		if (!dot && t->kind != TP_LOCAL &&
		    mta_strset_has(&r->local, key)) {
			snprintf(why, sizeof(why), "'%.80s' is a local domain "
				 "(only 'local' fits it)", key);
			goto bad;
		}
		if ((t->key = strdup(key)) == NULL) {
			rc = -ENOMEM;
			break;
		}
		r->ntp++;
		continue;
bad:
		snprintf(err, errlen, "transport_file %s:%d: %s", path,
			 ls.lineno, why);
		rc = -EINVAL;
	}
	lines_close(&ls);
	if (r->ntp > 0)
		qsort(r->tp, r->ntp, sizeof(*r->tp), cmp_tp);
	for (size_t i = 1; rc == 0 && i < r->ntp; i++)
		if (strcmp(r->tp[i - 1].key, r->tp[i].key) == 0)
			rc = twice(err, errlen, "transport_file", path,
				   r->tp[i].key, r->tp[i - 1].line,
				   r->tp[i].line);
	return rc;
}

/* One aliases entry "name: target, ..." (continuations joined). */
static int add_alias(struct mta_route *r, char *entry, int line,
		     size_t *cap, char *why, size_t whylen)
{
	char *colon = strchr(entry, ':'), *name, *at, *p;
	struct alias a = { .line = line };
	size_t tcap = 0;
	int rc = 0;

	if (colon == NULL) {
		snprintf(why, whylen, "want 'name: target, ...'");
		return -EINVAL;
	}
	*colon = '\0';
	name = entry;
	rtrim(name);
	mta_lower(name);
	at = strchr(name, '@');
	if (at == NULL ? !local_ok(name, strlen(name))
		       : ((at != name &&
			   !local_ok(name, (size_t)(at - name))) ||
			  !mta_domain_ok(at + 1, strlen(at + 1), false))) {
		snprintf(why, whylen, "'%.80s' is not a name, name@domain or "
			 "@domain", name);
		return -EINVAL;
	}
	if (at != NULL && !is_local(r, at + 1)) {
		snprintf(why, whylen, "'%.80s': %.80s is not a local domain",
			 name, at + 1);
		return -EINVAL;
	}
	for (p = colon + 1; rc == 0 && *p != '\0';) {
		char *t, *e, *tat;
		size_t len;

		p = skip_ws(p);
		len = strcspn(p, ",");
		t = p;
		p += len;
		if (*p == ',')
			p++;
		e = t + len;
		while (e > t && isspace((unsigned char)e[-1]))
			e--;
		*e = '\0';
		if (*t == '\0') {
			if (*p == '\0' && a.ntarget > 0)
				break; /* a trailing comma */
			snprintf(why, whylen, "empty target");
			rc = -EINVAL;
			break;
		}
		mta_lower(t);
		if (t[0] == '|' || t[0] == '/' ||
		    strncmp(t, ":include:", 9) == 0) {
			snprintf(why, whylen, "'%.80s': pipes, files and "
				 ":include: are not supported", t);
			rc = -EINVAL;
			break;
		}
		tat = strrchr(t, '@');
		if (!local_ok(t, tat != NULL ? (size_t)(tat - t) : strlen(t)) ||
		    (tat != NULL &&
		     !mta_domain_ok(tat + 1, strlen(tat + 1), false))) {
			snprintf(why, whylen, "'%.80s' is not a name or an "
				 "address", t);
			rc = -EINVAL;
			break;
		}
		if (a.ntarget == tcap) {
			size_t ncap = tcap ? tcap * 2 : 4;
			char **n = realloc(a.target, ncap * sizeof(*n));
			if (n == NULL) {
				rc = -ENOMEM;
				break;
			}
			a.target = n;
			tcap = ncap;
		}
		if ((a.target[a.ntarget] = strdup(t)) == NULL) {
			rc = -ENOMEM;
			break;
		}
		a.ntarget++;
	}
	if (rc == 0 && a.ntarget == 0) {
		snprintf(why, whylen, "'%.80s' has no targets", name);
		rc = -EINVAL;
	}
	if (rc == 0 && (a.key = strdup(name)) == NULL)
		rc = -ENOMEM;
	if (rc == 0 && r->nalias == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct alias *n = realloc(r->alias, ncap * sizeof(*n));
		if (n == NULL)
			rc = -ENOMEM;
		else {
			r->alias = n;
			*cap = ncap;
		}
	}
	if (rc != 0) {
		free(a.key);
		mta_route_expand_free(a.target, (int)a.ntarget);
		return rc;
	}
	r->alias[r->nalias++] = a;
	return 0;
}

static int load_aliases(struct mta_route *r, const char *path, char *err,
			size_t errlen)
{
	struct lines ls;
	char *s, *entry, why[200];
	size_t elen = 0, cap = 0;
	int rc, eline = 0;

	if (path[0] == '\0')
		return 0;
	entry = malloc(LOGICAL_MAX);
	if (entry == NULL)
		return -ENOMEM;
	rc = lines_open(&ls, "aliases_file", path, err, errlen);
	for (;;) {
		s = rc == 0 ? lines_next(&ls) : NULL;
		/* an entry ends at the next entry or at EOF; blank and
		 * comment lines (now empty) do not end it */
		if (rc == 0 && elen > 0 &&
		    (s == NULL ||
		     !(s[0] == '\0' || isblank((unsigned char)s[0])))) {
			entry[elen] = '\0';
			rc = add_alias(r, entry, eline, &cap, why, sizeof(why));
			if (rc == -EINVAL)
				snprintf(err, errlen, "aliases_file %s:%d: %s",
					 path, eline, why);
			elen = 0;
		}
		if (rc != 0 || s == NULL)
			break;
		if (skip_ws(s)[0] == '\0')
			continue;
		if (s[0] == ' ' || s[0] == '\t') {
			if (eline == 0 || elen == 0) {
				snprintf(err, errlen, "aliases_file %s:%d: a "
					 "continuation line with no entry "
					 "before it", path, ls.lineno);
				rc = -EINVAL;
				break;
			}
		} else {
			eline = ls.lineno;
		}
		if (elen + strlen(s) + 2 > LOGICAL_MAX) {
			snprintf(err, errlen, "aliases_file %s:%d: entry "
				 "too long", path, ls.lineno);
			rc = -EINVAL;
			break;
		}
		if (elen > 0)
			entry[elen++] = ' ';
		memcpy(entry + elen, s, strlen(s));
		elen += strlen(s);
	}
	lines_close(&ls);
	free(entry);
	if (r->nalias > 0)
		qsort(r->alias, r->nalias, sizeof(*r->alias), cmp_alias);
	for (size_t i = 1; rc == 0 && i < r->nalias; i++)
		if (strcmp(r->alias[i - 1].key, r->alias[i].key) == 0)
			rc = twice(err, errlen, "aliases_file", path,
				   r->alias[i].key, r->alias[i - 1].line,
				   r->alias[i].line);
	return rc;
}

void mta_route_conf_defaults(struct mta_route_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->recipient_delimiter, sizeof(c->recipient_delimiter), "+");
	c->max_expansion = 1000;
}

int mta_route_load(struct mta_route **out, const struct mta_route_conf *c,
		   char *err, size_t errlen)
{
	struct mta_route *r = calloc(1, sizeof(*r));
	char why[200];
	int rc = 0;

	*out = NULL;
	if (r == NULL)
		return -ENOMEM;
	r->refs = 1;
	snprintf(r->delim, sizeof(r->delim), "%s", c->recipient_delimiter);
	for (const char *d = r->delim; *d != '\0'; d++)
		if (*d <= ' ' || *d == '@' || *d == '"' || *d == ',' ||
		    *d == ':' || (unsigned char)*d >= 0x7f) {
			snprintf(err, errlen, "recipient_delimiter: '%c' "
				 "cannot be a delimiter", *d);
			rc = -EINVAL;
		}
	r->max_expansion = c->max_expansion ? c->max_expansion : 1000;
	if (rc == 0)
		rc = load_domains(r, c->local_domains, err, errlen);
	if (rc == 0)
		rc = load_users(r, c->users_file, err, errlen);
	if (rc == 0 && c->relayhost[0] != '\0') {
		rc = parse_nexthop(c->relayhost, &r->relay, r->relay_dest,
				   sizeof(r->relay_dest), why, sizeof(why));
		if (rc != 0)
			snprintf(err, errlen, "relayhost: %s", why);
		r->has_relay = rc == 0;
	}
	/* the transport map first: its "local" domains take aliases */
	if (rc == 0)
		rc = load_transport(r, c->transport_file, err, errlen);
	if (rc == 0)
		rc = load_aliases(r, c->aliases_file, err, errlen);
	if (rc != 0) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		mta_route_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

struct mta_route *mta_route_ref(const struct mta_route *cr)
{
	struct mta_route *r = (struct mta_route *)cr;

	__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void mta_route_free(const struct mta_route *cr)
{
	struct mta_route *r = (struct mta_route *)cr;

	if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	mta_strset_free(&r->local);
	mta_strset_free(&r->users);
	for (size_t i = 0; i < r->nalias; i++) {
		free(r->alias[i].key);
		mta_route_expand_free(r->alias[i].target,
				      (int)r->alias[i].ntarget);
	}
	free(r->alias);
	for (size_t i = 0; i < r->ntp; i++)
		free(r->tp[i].key);
	free(r->tp);
	free(r);
}

void mta_route_describe(const struct mta_route *r, size_t *domains,
			size_t *users, size_t *aliases, size_t *transports)
{
	*domains = r->local.n;
	*users = r->users.n;
	*aliases = r->nalias;
	*transports = r->ntp;
}

size_t mta_route_missing_postmaster(const struct mta_route *r, char *buf,
				    size_t len)
{
	size_t n = 0, used = 0;
	char key[ADDR_MAX + 2];

	if (len > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < r->local.n; i++) {
		const char *dom = r->local.v[i];
		const char *box = mailbox_find(r, "postmaster", dom, key,
					       sizeof(key));
		int w;

		if (box != NULL || alias_for(r, "postmaster", dom) != NULL)
			continue;
		n++;
		if (used < len) {
			w = snprintf(buf + used, len - used, "%s%s",
				     used ? " " : "", dom);
			used += w > 0 ? (size_t)w : 0;
		}
	}
	return n;
}
