/*
 * daemon.h: dpmaild's lifecycle: start the dataplane and one stack per
 * worker, serve until a signal, then stop, drain and report.
 */
#ifndef DPMAIL_MGMT_DAEMON_H
#define DPMAIL_MGMT_DAEMON_H

#include "mgmt/config.h"

/* Runs the daemon to completion. Returns the process exit code. */
int daemon_run(const struct dpmail_conf *conf, const char *prog);

#endif
