/*
 * dp.h: the dataplane: EAL, the port, mbuf pools and the worker lcores.
 *
 * Owns: EAL (initialised from struct dp_conf, never from hand-typed
 * flags), one port with one RX/TX queue pair per worker, one mbuf pool per
 * NUMA socket in use, and the worker loops. The loop knows nothing of the
 * stack: it calls the dp_worker_ops a higher layer installs.
 *
 * Errors: functions return 0 or a negative errno and log the reason.
 */
#ifndef DPMAIL_DATAPLANE_DP_H
#define DPMAIL_DATAPLANE_DP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "dataplane/dp_conf.h"
#include "dataplane/dp_port.h"
#include "dataplane/dp_rss.h"

/* What a worker runs: installed by the layer above (mgmt). */
struct dp_worker_ops {
	/* Takes ownership of n received frames. */
	void (*input)(void *ctx, struct rte_mbuf **pkts, uint16_t n);
	/* Once per millisecond of TSC time at most. */
	void (*tick)(void *ctx, uint64_t now_ms);
	/* End of a loop iteration: send what is queued. */
	void (*flush)(void *ctx);
	/* Optional: other work (completion rings). Returns true if it did
	 * some, which counts as traffic for the idle back-off. */
	bool (*poll)(void *ctx);
};

struct dp_worker_stats {
	uint64_t polls;       /* rx bursts attempted */
	uint64_t busy_polls;  /* bursts that returned packets */
	uint64_t idle_sleeps; /* back-off sleeps taken */
	uint64_t steered_out; /* frames handed to their owning worker */
	uint64_t steered_in;  /* frames other workers handed here */
	uint64_t steer_dropped; /* an owner's ring was full */
};

struct dp_worker {
	unsigned index;
	unsigned lcore_id;
	struct dp_queue q;
	const struct dp_worker_ops *ops;
	void *ctx;
	const struct dp_conf *conf;
	const volatile int *stop;
	struct dp *dp;
	struct dp_worker_stats stats;
	struct dp_fault fault;
	/* Idle wake-up from other workers: set while this worker sleeps
	 * on its signalfd; an eventfd others write then (see dp_worker.c). */
	int sleeping;
	int wake_fd;
	/* TCP frames checked against the software Toeplitz (dp_rss.h) */
	uint32_t rss_checked;
} __rte_cache_aligned;

struct dp {
	struct dp_conf conf;
	uint16_t port_id;
	bool port_started;
	struct rte_eth_dev_info info;
	uint64_t rx_offloads;
	uint64_t tx_offloads;
	uint16_t nqueues;
	struct rte_mempool *pools[RTE_MAX_NUMA_NODES];
	unsigned nworkers;
	struct dp_worker workers[DP_MAX_WORKERS];
	volatile int stop;
	/* software steering of every flow: more than one worker and no
	 * usable RSS, or RSS failed its runtime check (set by a worker then:
	 * read atomically). With RSS (dp_rss_active) and not steering, the
	 * rings still carry ARP copies and ICMP errors to their owners. */
	bool steering;
	uint32_t steer_seed;
	struct rte_ring *steer_ring[DP_MAX_WORKERS]; /* MP/SC, one per worker */
	struct dp_rss rss;   /* the key and RETA programmed, if any */
	int rss_failed;      /* the runtime check found a mismatch */
	/* bumped each time a worker drained PMD signals and ran the PMD's
	 * handler (net_tap's trigger is global: every queue must look) */
	uint32_t sig_gen;
};

/* The signals PMDs raise when frames wait (SIGIO and the real-time
 * range: net_tap takes the first free real-time signal). The daemon
 * blocks them in every thread, before EAL starts its own; no thread
 * takes them as signals. Each worker reads them from a signalfd (many
 * per read, where delivery would cost a signal frame each), runs the
 * PMD's handler itself once per batch, and sleeps in ppoll on that
 * signalfd, so a frame still wakes an idle worker at once. */
void dp_worker_signals(sigset_t *set);

/* Monotonic milliseconds from the TSC, as the workers see time. */
uint64_t dp_now_ms(void);

/* Builds EAL's arguments from conf and initialises it. */
int dp_eal_init(const struct dp_conf *conf, const char *prog);
/* The EAL arguments dp_eal_init would use, for logs and tests. argv is
 * filled up to max entries; returns the count or -E2BIG. Strings point
 * into buf. */
int dp_eal_args(const struct dp_conf *conf, const char *prog, char **argv,
		int max, char *buf, size_t buflen);

/* Finds the port, creates pools, configures and starts queues. */
int dp_open(struct dp *dp, const struct dp_conf *conf);
/* Logs driver, MAC, link, queues and offloads. */
void dp_describe(const struct dp *dp);
/* Starts every worker's loop with ops/ctx[i]. */
int dp_launch(struct dp *dp, const struct dp_worker_ops *ops, void **ctx);
/* Asks the workers to stop and waits for them. */
void dp_stop_workers(struct dp *dp);
/* Stops and closes the port (its RX ring's mbufs go back to the pools). */
void dp_close(struct dp *dp);
/* Frees the pools; after dp_close and once every mbuf is back. */
void dp_free_pools(struct dp *dp);
/* Mbufs not back in the pools (0 after a clean drain). */
unsigned dp_mbufs_in_use(const struct dp *dp);

#endif
