/*
 * dp_conf.h: the dataplane's settings, filled by mgmt's config loader
 * (section [eal], [port], [dataplane]) and read-only afterwards.
 */
#ifndef DPMAIL_DATAPLANE_DP_CONF_H
#define DPMAIL_DATAPLANE_DP_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_fault.h"

#define DP_MAX_WORKERS 64
#define DP_MAX_BURST 256

struct dp_conf {
	/* [eal] */
	char lcores[128];      /* EAL lcore list; first = main lcore */
	bool hugepages;
	uint32_t memory_mb;
	char file_prefix[64];
	char eal_log_level[16];
	/* [port] */
	char devargs[512];     /* vdev "name,args" or PCI "dddd:bb:dd.f,args" */
	uint16_t rx_desc;
	uint16_t tx_desc;
	uint16_t mtu;
	/* [dataplane] */
	uint32_t workers;
	uint32_t mbufs;        /* per NUMA socket pool */
	uint32_t mbuf_cache;
	uint32_t burst;
	uint32_t idle_spin_polls;
	uint32_t idle_pause_polls;
	uint32_t idle_sleep_max_us;
	/* [fault] */
	struct dp_fault_conf fault;
};

/* Fills the defaults documented in docs/config.md. */
void dp_conf_defaults(struct dp_conf *c);

#endif
