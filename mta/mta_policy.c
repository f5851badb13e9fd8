/*
 * mta_policy.c: the RCPT-time relay and local-user decisions (see
 * mta_policy.h for the rules).
 *
 * Lists are small sorted arrays of lower-case strings searched with
 * bsearch: built once, shared read-only by every worker.
 */
#include "mta/mta_policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "mta/mta_route.h"

struct strset {
	char **v;
	size_t n, cap;
};

struct net {
	uint32_t addr, mask; /* host order */
};

struct mta_policy {
	struct strset local;     /* local domains */
	struct strset relay;     /* relay domains; ".x" = subdomains of x */
	struct strset users;     /* "alice" or "alice@example.org" */
	struct net *nets;
	size_t nnets;
	const struct mta_route *route; /* not owned; NULL: none */
};

static void lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int strset_add(struct strset *s, const char *v, size_t len)
{
	char *c;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **n = realloc(s->v, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		s->v = n;
		s->cap = cap;
	}
	c = strndup(v, len);
	if (c == NULL)
		return -ENOMEM;
	lower(c);
	s->v[s->n++] = c;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strset_seal(struct strset *s)
{
	size_t o = 0;

	if (s->n == 0)
		return;
	qsort(s->v, s->n, sizeof(*s->v), cmp_str);
	for (size_t i = 1; i < s->n; i++) {
		if (strcmp(s->v[i], s->v[o]) == 0)
			free(s->v[i]);
		else
			s->v[++o] = s->v[i];
	}
	s->n = o + 1;
}

static bool strset_has(const struct strset *s, const char *key)
{
	return s->n != 0 &&
	       bsearch(&key, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

static void strset_free(struct strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* RFC 1035 letters-digits-hyphen labels, dot separated; a leading dot
 * only where allowed (relay domains' subdomain form). */
static bool domain_ok(const char *d, size_t len, bool lead_dot)
{
	size_t label = 0;

	if (lead_dot && len > 0 && d[0] == '.') {
		d++;
		len--;
	}
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)d[i];
		if (ch == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(ch) || (ch == '-' && label > 0)) || ++label > 63)
			return false;
	}
	return label > 0 && d[len - 1] != '-';
}

/* Calls fn for each comma/space separated item of list. */
static int for_items(const char *list,
		     int (*fn)(void *arg, const char *item, size_t len,
			       char *why, size_t whylen),
		     void *arg, char *why, size_t whylen)
{
	const char *p = list;

	while (*p != '\0') {
		size_t len;
		int rc;

		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		len = strcspn(p, ", \t");
		if (len == 0)
			break;
		rc = fn(arg, p, len, why, whylen);
		if (rc != 0)
			return rc;
		p += len;
	}
	return 0;
}

struct list_ctx {
	struct strset *set; /* NULL: syntax check only */
	bool lead_dot;
};

static int add_domain(void *arg, const char *item, size_t len, char *why,
		      size_t whylen)
{
	struct list_ctx *lc = arg;

	if (!domain_ok(item, len, lc->lead_dot)) {
		snprintf(why, whylen, "'%.*s' is not a domain name",
			 (int)(len > 64 ? 64 : len), item);
		return -EINVAL;
	}
	return lc->set != NULL ? strset_add(lc->set, item, len) : 0;
}

struct net_ctx {
	struct mta_policy *p; /* NULL: syntax check only */
};

static int add_net(void *arg, const char *item, size_t len, char *why,
		   size_t whylen)
{
	struct net_ctx *nc = arg;
	char buf[32];
	uint32_t a;
	uint8_t plen;

	if (len >= sizeof(buf))
		goto bad;
	memcpy(buf, item, len);
	buf[len] = '\0';
	if (strchr(buf, '/') == NULL) {
		if (parse_ipv4(buf, &a) != 0)
			goto bad;
		plen = 32;
	} else if (parse_ipv4_prefix(buf, &a, &plen) != 0) {
		goto bad;
	}
	if (nc->p != NULL) {
		struct net *n = realloc(nc->p->nets,
					(nc->p->nnets + 1) * sizeof(*n));
		uint32_t mask = plen ? ~0u << (32 - plen) : 0;

		if (n == NULL)
			return -ENOMEM;
		nc->p->nets = n;
		n[nc->p->nnets].mask = mask;
		n[nc->p->nnets].addr = __builtin_bswap32(a) & mask;
		nc->p->nnets++;
	}
	return 0;
bad:
	snprintf(why, whylen, "'%.*s' is not an IPv4 address or a.b.c.d/len",
		 (int)(len > 64 ? 64 : len), item);
	return -EINVAL;
}

int mta_policy_check_lists(const struct mta_policy_conf *c, char *why,
			   size_t whylen)
{
	struct list_ctx loc = { NULL, false }, rel = { NULL, true };
	struct net_ctx nc = { NULL };
	int rc;

	rc = for_items(c->local_domains, add_domain, &loc, why, whylen);
	if (rc == 0)
		rc = for_items(c->relay_domains, add_domain, &rel, why, whylen);
	if (rc == 0)
		rc = for_items(c->trusted_networks, add_net, &nc, why, whylen);
	return rc;
}

static int load_users(struct mta_policy *p, const char *path, char *err,
		      size_t errlen)
{
	FILE *f;
	char line[1024];
	int lineno = 0, rc = 0;

	if (path[0] == '\0')
		return 0;
	f = fopen(path, "r");
	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "users_file %s: %s", path, strerror(errno));
		return rc;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *s = line, *e, *at;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "users_file %s:%d: line too long",
				 path, lineno);
			rc = -EINVAL;
			break;
		}
		if ((e = strchr(s, '#')) != NULL)
			*e = '\0';
		while (isspace((unsigned char)*s))
			s++;
		e = s + strlen(s);
		while (e > s && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (*s == '\0')
			continue;
		at = strchr(s, '@');
		if (strpbrk(s, " \t\"%!<>") != NULL || at == s ||
		    (at != NULL && (strchr(at + 1, '@') != NULL ||
				    !domain_ok(at + 1, strlen(at + 1), false)))) {
			snprintf(err, errlen, "users_file %s:%d: '%s' is not "
				 "a user or user@domain", path, lineno, s);
			rc = -EINVAL;
			break;
		}
		rc = strset_add(&p->users, s, strlen(s));
		if (rc != 0)
			break;
	}
	fclose(f);
	return rc;
}

int mta_policy_load(struct mta_policy **out, const struct mta_policy_conf *c,
		    char *err, size_t errlen)
{
	struct mta_policy *p = calloc(1, sizeof(*p));
	struct list_ctx loc, rel;
	struct net_ctx nc;
	int rc;

	if (p == NULL)
		return -ENOMEM;
	loc = (struct list_ctx){ &p->local, false };
	rel = (struct list_ctx){ &p->relay, true };
	nc = (struct net_ctx){ p };
	rc = for_items(c->local_domains, add_domain, &loc, err, errlen);
	if (rc == 0)
		rc = for_items(c->relay_domains, add_domain, &rel, err, errlen);
	if (rc == 0)
		rc = for_items(c->trusted_networks, add_net, &nc, err, errlen);
	if (rc == 0)
		rc = load_users(p, c->users_file, err, errlen);
	if (rc != 0) {
		mta_policy_free(p);
		return rc;
	}
	strset_seal(&p->local);
	strset_seal(&p->relay);
	strset_seal(&p->users);
	*out = p;
	return 0;
}

void mta_policy_free(struct mta_policy *p)
{
	if (p == NULL)
		return;
	strset_free(&p->local);
	strset_free(&p->relay);
	strset_free(&p->users);
	free(p->nets);
	free(p);
}

static bool trusted(const struct mta_policy *p, uint32_t ip_be)
{
	uint32_t ip = __builtin_bswap32(ip_be);

	for (size_t i = 0; i < p->nnets; i++)
		if ((ip & p->nets[i].mask) == p->nets[i].addr)
			return true;
	return false;
}

/* domain (lower case) or one of its parents listed as ".parent" */
static bool relay_domain(const struct mta_policy *p, const char *dom)
{
	const char *d = dom;

	if (strset_has(&p->relay, dom))
		return true;
	while ((d = strchr(d, '.')) != NULL) {
		if (strset_has(&p->relay, d))
			return true;
		d++;
	}
	return false;
}

static bool user_exists(const struct mta_policy *p, const char *local,
			const char *dom)
{
	char key[1024];

	snprintf(key, sizeof(key), "%s", local);
	if (strset_has(&p->users, key))
		return true;
	snprintf(key, sizeof(key), "%s@%s", local, dom);
	return strset_has(&p->users, key);
}

void mta_policy_set_route(struct mta_policy *p, const struct mta_route *r)
{
	p->route = r;
}

static enum mta_verdict verdict(enum mta_verdict v,
				struct mta_policy_reply *reply)
{
	static const struct mta_policy_reply std[] = {
		[MTA_LOCAL] = { 250, "2.1.5", "OK" },
		[MTA_RELAY] = { 250, "2.1.5", "OK" },
		[MTA_NO_USER] = { 550, "5.1.1", "user unknown" },
		[MTA_RELAY_DENIED] = { 554, "5.7.1", "relay access denied" },
	};

	*reply = std[v];
	return v;
}

/* The route's say on addr: true when it decided (*v set). */
static bool routed(const struct mta_policy *p, const char *addr,
		   enum mta_verdict *v, struct mta_policy_reply *reply)
{
	struct mta_route_result res;

	switch (mta_route_check_rcpt(p->route, addr, &res)) {
	case MTA_RCHK_LOCAL_OK:
		*v = verdict(MTA_LOCAL, reply);
		return true;
	case MTA_RCHK_NO_USER:
		*v = verdict(MTA_NO_USER, reply);
		return true;
	case MTA_RCHK_REJECT:
		*v = MTA_RELAY_DENIED;
		reply->code = res.code;
		snprintf(reply->enh, sizeof(reply->enh), "%s", res.enh);
		snprintf(reply->text, sizeof(reply->text), "%s", res.text);
		return true;
	case MTA_RCHK_NOT_LOCAL:
		break;
	}
	return false;
}

enum mta_verdict mta_policy_rcpt(const struct mta_policy *p,
				 uint32_t client_ip, const char *addr)
{
	struct mta_policy_reply reply;

	return mta_policy_rcpt_reply(p, client_ip, addr, &reply);
}

enum mta_verdict mta_policy_rcpt_reply(const struct mta_policy *p,
				       uint32_t client_ip, const char *addr,
				       struct mta_policy_reply *reply)
{
	char buf[1024], *at, *local, *dom, *plus;
	size_t len = strlen(addr);
	enum mta_verdict v;

	if (len == 0 || len >= sizeof(buf))
		return verdict(MTA_RELAY_DENIED, reply);
	memcpy(buf, addr, len + 1);
	lower(buf);
	at = strrchr(buf, '@');
	if (at == NULL) {
		/* RFC 5321 4.5.1: <postmaster> with no domain is ours (the
		 * route gives it its first local domain) */
		if (p->route != NULL)
			return routed(p, addr, &v, reply)
				       ? v
				       : verdict(MTA_RELAY_DENIED, reply);
		if (strcmp(buf, "postmaster") == 0)
			return verdict(user_exists(p, buf, "") ||
						       p->local.n != 0
					       ? MTA_LOCAL
					       : MTA_NO_USER,
				       reply);
		return verdict(MTA_RELAY_DENIED, reply);
	}
	*at = '\0';
	local = buf;
	dom = at + 1;
	/* routing through us by the local part: never */
	if (strpbrk(local, "%!@\"") != NULL)
		return verdict(MTA_RELAY_DENIED, reply);
	if (p->route != NULL) {
		if (routed(p, addr, &v, reply))
			return v;
	} else if (dom[0] != '[' && strset_has(&p->local, dom)) {
		if ((plus = strchr(local, '+')) != NULL && plus != local)
			*plus = '\0';
		if (user_exists(p, local, dom))
			return verdict(MTA_LOCAL, reply);
		/* every local domain has a postmaster (RFC 5321 4.5.1) */
		return verdict(strcmp(local, "postmaster") == 0 ? MTA_LOCAL
								: MTA_NO_USER,
			       reply);
	}
	if (dom[0] != '[' && relay_domain(p, dom))
		return verdict(MTA_RELAY, reply);
	return verdict(trusted(p, client_ip) ? MTA_RELAY : MTA_RELAY_DENIED,
		       reply);
}

void mta_policy_describe(const struct mta_policy *p, size_t *domains,
			 size_t *users, size_t *relay_domains,
			 size_t *networks)
{
	*domains = p->local.n;
	*users = p->users.n;
	*relay_domains = p->relay.n;
	*networks = p->nnets;
}
