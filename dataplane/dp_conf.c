/*
 * dp_conf.c: dataplane defaults (documented in docs/config.md).
 */
#include "dataplane/dp_conf.h"

#include <string.h>

void dp_conf_defaults(struct dp_conf *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->lcores, "0-1");
	c->hugepages = false;
	c->memory_mb = 256;
	strcpy(c->file_prefix, "dpmail");
	strcpy(c->eal_log_level, "notice");
	strcpy(c->devargs, "net_tap0,iface=dpm0");
	c->rx_desc = 1024;
	c->tx_desc = 1024;
	c->mtu = 1500;
	c->workers = 1;
	c->mbufs = 8191;
	c->mbuf_cache = 256;
	c->burst = 32;
	c->idle_spin_polls = 256;
	c->idle_pause_polls = 1024;
	c->idle_sleep_max_us = 1000;
}
