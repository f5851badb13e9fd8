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
#include "mta/mta_policy.h"
#include "store/spool.h"

struct dpmail_conf {
	char path[4096];
	struct dp_conf dp;
	struct stack_conf stack;
	struct diag_conf diag;
	struct smtpd_conf smtpd;
	struct spool_conf spool;
	struct mta_policy_conf policy;
	enum log_level log_level;
};

void config_defaults(struct dpmail_conf *c);
/*
 * Loads path over the defaults. Returns 0, or -1 with a message of the
 * form "FILE:LINE: [section] key: reason" (or "FILE: reason") in err.
 */
int config_load(struct dpmail_conf *c, const char *path, char *err,
		size_t errlen);

#endif
