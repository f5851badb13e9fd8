/*
 * dpmailctl_user.h: the `dpmailctl user` verb (dpmailctl_user.c).
 */
#ifndef DPMAIL_MGMT_DPMAILCTL_USER_H
#define DPMAIL_MGMT_DPMAILCTL_USER_H

/* argv[0] is "user". Returns the exit code: 0, 1 failed, 2 usage. */
int dpmailctl_user(int argc, char **argv);

#endif
