/*
 * ctl_client.h: dpmailctl's verbs that need the running daemon (over the
 * control socket, mgmt/ctl.h). dpmailctl.c's main hands them argv from
 * the verb on.
 */
#ifndef DPMAIL_MGMT_CTL_CLIENT_H
#define DPMAIL_MGMT_CTL_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

/* True for status, stats, queue, domain, log, reload, shutdown, ping. */
bool ctlc_handles(const char *verb);
/* argv[0] is the verb. Returns the exit code (0 ok, 1 failed, 2 usage,
 * 3 daemon not running or socket not permitted). */
int ctlc_main(int argc, char **argv);
/* The verbs' lines for dpmailctl --help. */
void ctlc_usage(FILE *f);

#endif
