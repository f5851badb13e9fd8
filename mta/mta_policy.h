/*
 * mta_policy.h: who may send mail to whom, decided at RCPT time.
 *
 * Owns: the local domains, the local users (read from users_file), the
 * relay domains and the trusted client networks. Built once at start-up,
 * read-only afterwards, so every worker reads it without locks.
 *
 * The rules, in order (never an open relay):
 *  1. A forward-path that tries to route through us (a local part with
 *     '%', '!' or '@', i.e. "user%remote@local", "user!remote@local",
 *     "\"user@remote\"@local") is refused: RELAY_DENIED.
 *  2. A local domain (or "postmaster" with no domain): the user must
 *     exist (local part compared case-insensitively, "+ext" ignored):
 *     LOCAL, else NO_USER.
 *  3. A relay domain (exact, or ".example.org" for its subdomains):
 *     RELAY from anyone.
 *  4. Any other domain: RELAY only from a trusted network, else
 *     RELAY_DENIED.
 * Address literals ("user@[198.18.0.2]") are never local: they relay
 * only from trusted networks.
 *
 * With a route attached (mta_policy_set_route), rule 2 is the router's
 * (mta_route_check_rcpt), so that RCPT accepts exactly what routing can
 * deliver locally: in a local domain (listed in the route's
 * local_domains, or keyed "local" in its transport map) a user, a
 * user+detail (the route's recipient delimiter), an alias, or any
 * address of a domain with a catch-all is LOCAL; anything else is
 * NO_USER, "postmaster" included when it is neither a user nor an alias.
 * A domain the transport map keys "reject" is RELAY_DENIED, with the
 * map's reply from mta_policy_rcpt_reply(). The policy's own
 * local_domains and users_file are then unused (set them from the same
 * configuration anyway: mta_policy_describe counts them). Rules 1, 3 and
 * 4 stay the policy's: the transport map never grants relaying.
 */
#ifndef DPMAIL_MTA_MTA_POLICY_H
#define DPMAIL_MTA_MTA_POLICY_H

#include <stddef.h>
#include <stdint.h>

struct mta_policy;
struct mta_route;

#define MTA_POLICY_LIST_MAX 4096

struct mta_policy_conf {
	/* comma or space separated lists */
	char local_domains[MTA_POLICY_LIST_MAX];
	char relay_domains[MTA_POLICY_LIST_MAX];
	char trusted_networks[MTA_POLICY_LIST_MAX]; /* a.b.c.d/len ... */
	/* one user per line: "alice" (in every local domain) or
	 * "alice@example.org"; '#' starts a comment */
	char users_file[4096];
};

enum mta_verdict {
	MTA_LOCAL = 0,      /* a local user: accept */
	MTA_RELAY,          /* accept for relaying */
	MTA_NO_USER,        /* 550 5.1.1 */
	MTA_RELAY_DENIED,   /* 554 5.7.1 */
};

/* Checks the lists' syntax without loading users (for config load).
 * Returns 0 or -EINVAL with the reason in why. */
int mta_policy_check_lists(const struct mta_policy_conf *c, char *why,
			   size_t whylen);
/* Builds the policy. 0, or a negative errno with the reason in err
 * ("users_file: line 3: ..."). */
int mta_policy_load(struct mta_policy **out, const struct mta_policy_conf *c,
		    char *err, size_t errlen);
void mta_policy_free(struct mta_policy *p);

/* Makes r decide local recipients (see above). Call before p is
 * shared; r (read-only, not owned) must outlive p. NULL detaches. */
void mta_policy_set_route(struct mta_policy *p, const struct mta_route *r);

/* client_ip in network order; addr as the SMTP engine parsed it
 * (no angle brackets). */
enum mta_verdict mta_policy_rcpt(const struct mta_policy *p,
				 uint32_t client_ip, const char *addr);

/* The reply that goes with a verdict: 250 2.1.5 OK (LOCAL, RELAY),
 * 550 5.1.1 user unknown (NO_USER), 554 5.7.1 relay access denied
 * (RELAY_DENIED), or the transport map's own reject reply. */
struct mta_policy_reply {
	uint16_t code;
	char enh[16];
	char text[256];
};
/* mta_policy_rcpt() with its reply. */
enum mta_verdict mta_policy_rcpt_reply(const struct mta_policy *p,
				       uint32_t client_ip, const char *addr,
				       struct mta_policy_reply *reply);
/* Counts, for the start-up log line. */
void mta_policy_describe(const struct mta_policy *p, size_t *domains,
			 size_t *users, size_t *relay_domains,
			 size_t *networks);

#endif
