/*
 * config.h: loading dpmail.conf (INI, parsed by inih).
 *
 * Every key, its default and its range live in one table in config.c and
 * are documented in docs/config.md. A bad file is refused whole with the
 * file, line and reason; nothing of it is applied.
 */
#ifndef DPMAIL_MGMT_CONFIG_H
#define DPMAIL_MGMT_CONFIG_H

#include "common/log.h"
#include "dataplane/dp_conf.h"
#include "tcpstack/stack.h"
#include "mgmt/diag.h"
#include "mgmt/smtpd.h"
#include "mta/mta_out.h"
#include "mta/mta_policy.h"
#include "mta/mta_qmgr.h"
#include "mta/mta_route.h"
#include "store/spool.h"

struct dpmail_conf {
	char path[4096];
	struct dp_conf dp;
	struct stack_conf stack;
	struct diag_conf diag;
	struct smtpd_conf smtpd;
	struct spool_conf spool;
	struct mta_policy_conf policy;
	/* [mta] and [mailbox]: routing (its local_domains and users_file
	 * are [policy]'s), the queue manager, outbound delivery */
	struct mta_route_conf route;
	struct mta_qmgr_conf qmgr;
	struct mta_out_conf out;
	char mta_resolvers[256];   /* "ip[:port], ..." -> out.resolvers */
	char mta_helo[256];        /* "" = [smtp] hostname */
	enum log_level log_level;
	/* [control] and [metrics] (mgmt/ctl.h, mgmt/metrics.h) */
	char ctl_socket[108];      /* sun_path */
	char metrics_listen[64];   /* "a.b.c.d:port", "" = off */
	uint32_t log_format;       /* enum log_format */
	char log_output[256];      /* "stderr", "syslog" or a file */
};

void config_defaults(struct dpmail_conf *c);
/*
 * Loads path over the defaults. Returns 0, or -1 with a message of the
 * form "FILE:LINE: [section] key: reason" (or "FILE: reason") in err.
 */
int config_load(struct dpmail_conf *c, const char *path, char *err,
		size_t errlen);

/* Fills the derived fields (routing's copy of the policy's domains and
 * users, the queue manager's host name, resolvers, HELO name). Called by
 * config_load; call it after changing a loaded struct by hand. The HELO
 * name points into c: call it again after copying c. */
void config_finish(struct dpmail_conf *c);
/* "ip[:port], ..." -> out->resolvers (out may be NULL to check only).
 * 0 or -1 with the reason in why. */
int config_resolvers(const char *list, struct mta_out_conf *out, char *why,
		     size_t len);

#endif
