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
#include "mta/mta_strset.h"

struct net {
	uint32_t addr, mask; /* host order */
};

struct mta_policy {
	struct mta_strset local; /* local domains */
	struct mta_strset relay; /* relay domains; ".x" = subdomains of x */
	struct mta_strset users; /* "alice" or "alice@example.org" */
	struct net *nets;
	size_t nnets;
	const struct mta_route *route; /* not owned; NULL: none */
};

struct list_ctx {
	struct mta_strset *set; /* NULL: syntax check only */
	bool lead_dot;
};

static int add_domain(void *arg, const char *item, size_t len, char *why,
		      size_t whylen)
{
	struct list_ctx *lc = arg;

	if (!mta_domain_ok(item, len, lc->lead_dot)) {
		snprintf(why, whylen, "'%.*s' is not a domain name",
			 (int)(len > 64 ? 64 : len), item);
		return -EINVAL;
	}
	return lc->set != NULL ? mta_strset_add(lc->set, item, len) : 0;
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

/* The three lists of c, each item checked and (ctx set non-NULL) kept. */
static int load_lists(const struct mta_policy_conf *c, struct list_ctx *loc,
		      struct list_ctx *rel, struct net_ctx *nc, char *why,
		      size_t whylen)
{
	int rc;

	rc = mta_for_items(c->local_domains, ", \t", add_domain, loc, why,
			   whylen);
	if (rc == 0)
		rc = mta_for_items(c->relay_domains, ", \t", add_domain, rel,
				   why, whylen);
	if (rc == 0)
		rc = mta_for_items(c->trusted_networks, ", \t", add_net, nc,
				   why, whylen);
	return rc;
}

int mta_policy_check_lists(const struct mta_policy_conf *c, char *why,
			   size_t whylen)
{
	struct list_ctx loc = { NULL, false }, rel = { NULL, true };
	struct net_ctx nc = { NULL };

	return load_lists(c, &loc, &rel, &nc, why, whylen);
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
		    (at != NULL &&
		     (strchr(at + 1, '@') != NULL ||
		      !mta_domain_ok(at + 1, strlen(at + 1), false)))) {
			snprintf(err, errlen, "users_file %s:%d: '%s' is not "
				 "a user or user@domain", path, lineno, s);
			rc = -EINVAL;
			break;
		}
		rc = mta_strset_add(&p->users, s, strlen(s));
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
	rc = load_lists(c, &loc, &rel, &nc, err, errlen);
	if (rc == 0)
		rc = load_users(p, c->users_file, err, errlen);
	if (rc != 0) {
		mta_policy_free(p);
		return rc;
	}
	mta_strset_seal(&p->local);
	mta_strset_seal(&p->relay);
	mta_strset_seal(&p->users);
	*out = p;
	return 0;
}

void mta_policy_free(struct mta_policy *p)
{
	if (p == NULL)
		return;
	mta_strset_free(&p->local);
	mta_strset_free(&p->relay);
	mta_strset_free(&p->users);
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

	if (mta_strset_has(&p->relay, dom))
		return true;
	while ((d = strchr(d, '.')) != NULL) {
		if (mta_strset_has(&p->relay, d))
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
	if (mta_strset_has(&p->users, key))
		return true;
	snprintf(key, sizeof(key), "%s@%s", local, dom);
	return mta_strset_has(&p->users, key);
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
	mta_lower(buf);
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
	} else if (dom[0] != '[' && mta_strset_has(&p->local, dom)) {
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
