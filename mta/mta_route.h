/*
 * mta_route.h: where each recipient goes, decided after the spool.
 *
 * Owns: the local domains, the local users, the aliases (virtual alias
 * map) and the transport map, plus the relay host. Built once by
 * mta_route_load(), read-only afterwards: every thread reads it without
 * locks. A reload builds a new one and swaps the pointer; each holder
 * (the daemon, smtpd's current limits, the queue manager) keeps a
 * reference (mta_route_ref), and the last mta_route_free frees it.
 *
 * Two steps per accepted recipient (the router's job):
 *  1. mta_route_expand(): the envelope rewrite before delivery (Postfix's
 *     virtual_alias_maps): an alias or a domain's catch-all becomes its
 *     targets, recursively; anything else stays as it is.
 *  2. mta_route_rcpt() on each final address, the rule in order:
 *     a. a local domain: the local mailbox; the user must exist
 *        (else REJECT 550 5.1.1). A domain whose transport map entry is
 *        "local" is a local domain too, for users, aliases and catch-all.
 *     b. a transport map entry for the domain: RELAY to its next hop or
 *        REJECT with its reply;
 *     c. the relay host, when set;
 *     d. else MX resolution of the recipient's domain.
 *     An address literal (user@[192.0.2.1]) relays to that address,
 *     port 25, ahead of b-d. A domain that cannot be routed (bad syntax,
 *     IPv6 literal, non-ASCII) is REJECT 553 5.1.3.
 *
 * Matching is case-insensitive throughout: addresses are lower-cased.
 * The recipient delimiter is a set of characters ("+" by default, "+-"
 * allowed, "" off): "alice+foo" is looked up as itself first, then as
 * "alice".
 *
 * Users file (shared with mta_policy): one user a line, "alice" (in every
 * local domain) or "alice@example.org" (that domain only); '#' starts a
 * comment. The mailbox name is the line that matched, lower case; with
 * both forms listed, "alice@example.org" wins for example.org.
 *
 * Aliases file (like /etc/aliases):
 *     # comment
 *     name: target, target, ...
 *         target, ...            (a line starting with blanks continues)
 *   name:   "user"          that local part in every local domain
 *           "user@domain"   that address (domain must be local)
 *           "@domain"       catch-all: any address of that local domain
 *                           whose user neither exists nor has an alias
 *   target: "user"          that local part in the domain of the address
 *                           being expanded (a user or another alias)
 *           "user@domain"   any address, local or remote
 *   Look-up order for "u+d@dom": "u+d@dom", "u@dom", "u+d", "u", then
 *   (only when neither u+d nor u is a user) "@dom". A target equal to
 *   the address being expanded is delivered as is ("alice: alice,
 *   archive"). Pipes, files and :include: are refused. A name listed
 *   twice is an error.
 *
 * Transport file (like Postfix's transport(5)):
 *     # comment
 *     example.org        [198.18.0.10]:2525
 *     .example.org       relay.example.net      (subdomains only)
 *     partner.example    local
 *     blocked.example    reject 550 5.7.1 we do not talk to them
 *   key:     "domain" (that domain only) or ".domain" (every subdomain,
 *            not the domain itself). An exact key wins over a dot key;
 *            among dot keys the longest match wins.
 *   nexthop: "[a.b.c.d]" / "[a.b.c.d]:port"  that address, no MX look-up
 *            "[host]" / "[host]:port"        host's A records, no MX
 *            "host" / "host:port"            host's MX (else A) records
 *            "a.b.c.d" / "a.b.c.d:port"      that address
 *            an optional "smtp:" prefix is accepted (Postfix syntax).
 *            "local"      deliver to the local mailbox (user must exist)
 *            "reject"     refuse: 550 5.7.1 relay not permitted, or
 *            "reject CODE X.Y.Z [text]" with CODE 4xx or 5xx.
 *   A local domain may only be keyed "local" (it is local anyway).
 * The relay host takes the same nexthop forms.
 *
 * The queue key (res.dest) is the next hop as Postfix writes it:
 * "example.org" (MX), "[mx.example.org]" or "[198.18.0.10]" (no MX),
 * ":port" appended when the port is not 25.
 *
 * Load errors name the key, file and line:
 * "aliases_file etc/aliases:3: 'x y' is not a name, ...".
 */
#ifndef DPMAIL_MTA_MTA_ROUTE_H
#define DPMAIL_MTA_MTA_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/mta_job.h"

struct mta_route;

struct mta_route_conf {
	char local_domains[4096];   /* comma/space list, as mta_policy */
	char users_file[4096];      /* as mta_policy's; "" = no users */
	char aliases_file[4096];    /* "" = none */
	char transport_file[4096];  /* "" = none */
	char relayhost[512];        /* "" = none, else a nexthop (above) */
	char recipient_delimiter[8];/* characters; "" = off; default "+" */
	uint32_t max_expansion;     /* addresses one alias may expand to;
				     * 0 = 1000 */
};

/* Zeroes c, then recipient_delimiter "+" and max_expansion 1000. */
void mta_route_conf_defaults(struct mta_route_conf *c);

/* Builds the routing tables. 0, or -EINVAL (a bad list, line or value),
 * -ENOENT/-EACCES... (a file cannot be opened), -ENOMEM; the reason in
 * err, naming the file and line where there is one. */
int mta_route_load(struct mta_route **out, const struct mta_route_conf *c,
		   char *err, size_t errlen);
/* One more holder (any thread); returns r. */
struct mta_route *mta_route_ref(const struct mta_route *r);
/* Drops a reference (any thread); the last one frees. NULL is a no-op. */
void mta_route_free(const struct mta_route *r);

/* Counts, for the start-up log line. */
void mta_route_describe(const struct mta_route *r, size_t *domains,
			size_t *users, size_t *aliases, size_t *transports);

/* RFC 5321 4.5.1 wants postmaster in every local domain. Counts the
 * listed local domains where postmaster@domain is neither a user, an
 * alias nor caught by a catch-all, and writes them, space separated,
 * into buf (truncated to len; "" when none). For a start-up warning. */
size_t mta_route_missing_postmaster(const struct mta_route *r, char *buf,
				    size_t len);

enum mta_route_kind { MTA_ROUTE_LOCAL = 0, MTA_ROUTE_RELAY, MTA_ROUTE_REJECT };

struct mta_route_result {
	enum mta_route_kind kind;
	/* LOCAL: the mailbox, lower case: "alice" (user listed bare) or
	 * "alice@example.org" (user listed with its domain) */
	char mailbox[320];
	struct mta_nexthop nh;          /* RELAY */
	char dest[MTA_HOST_MAX + 16];   /* RELAY: the queue key (above) */
	/* REJECT: e.g. 550 5.1.1 "user unknown" or the transport's reply */
	uint16_t code;
	char enh[16];
	char text[256];
};

/* Routes one final (already expanded) recipient address, as the SMTP
 * engine parsed it (no angle brackets). Never fails: an unknown local
 * user is REJECT 550 5.1.1; user@[a.b.c.d] is RELAY to that address,
 * port 25; an address whose domain has no usable form is REJECT 553
 * 5.1.3. "postmaster" without a domain is postmaster of the first
 * listed local domain. */
void mta_route_rcpt(const struct mta_route *r, const char *addr,
		    struct mta_route_result *res);

/* Alias expansion (see the aliases file above). Returns the number of
 * final addresses (>= 1) with *out a malloc'ed array of malloc'ed
 * lower-case strings (free with mta_route_expand_free): local users as
 * "user@domain", remote addresses as they are. Recursive; duplicates
 * removed; a loop is cut where it closes. 0 when addr is neither an
 * alias nor caught by a catch-all: deliver it as it is (so Delivered-To
 * shows "alice+foo@..."). -ELOOP when loops leave nothing, -E2BIG past
 * max_expansion addresses, -ENOMEM. */
int mta_route_expand(const struct mta_route *r, const char *addr,
		     char ***out);
void mta_route_expand_free(char **v, int n);

/* What the RCPT-time policy needs: can routing take this address?
 * NOT_LOCAL: not ours to decide (not a local domain, no transport
 * reject; relay rules apply). LOCAL_OK: a local domain, and the address
 * is a user, a user+detail, an alias, or caught by the domain's
 * catch-all. NO_USER: a local domain, none of those. REJECT: the
 * transport map refuses the domain; the reply in res. */
enum mta_route_check {
	MTA_RCHK_NOT_LOCAL = 0,
	MTA_RCHK_LOCAL_OK,
	MTA_RCHK_NO_USER,
	MTA_RCHK_REJECT,
};
enum mta_route_check mta_route_check_rcpt(const struct mta_route *r,
					  const char *addr,
					  struct mta_route_result *res);

/* Mail-loop check: the number of Received: header fields in the
 * message's header section (up to the first empty line, or all of body
 * when there is none; field names case-insensitive; a folded field
 * counts once). */
unsigned mta_count_received(const uint8_t *body, size_t len);

#endif
