/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory region between the dataplane and the control process:
 * created by the dataplane (mg_shm_create), attached by control
 * (mg_shm_attach). Works without rte_eal_init: the rings are plain rte_ring
 * element rings initialised in place.
 */
#ifndef MG_SHM_H
#define MG_SHM_H

#include <stdbool.h>
#include <stddef.h>

#include "mg_abi.h"

struct rte_ring;

struct mg_shm {
	void *base;
	size_t size;
	char path[64];
	struct mg_shm_hdr *hdr;
	struct rte_ring *cp2dp; /* control -> dataplane: single producer, single consumer */
	struct rte_ring *dp2cp; /* dataplane -> control: multi producer, single consumer */
	struct mg_peer_export *peers;
	struct mg_peer_stats *stats; /* [n_stat_slots][max_peers] */
	uint64_t *drops;             /* [MG_MAX_LCORES][MG_DROP_MAX] */
	struct mg_port_export *ports;
	struct mg_worker_export *workers; /* [MG_MAX_LCORES], by worker index */
};

/* Dataplane: (re)create /meshgate.<name>, mode 0600, with a new generation. */
int mg_shm_create(struct mg_shm *s, const char *name, uint32_t max_peers, uint32_t n_stat_slots);
/* Control: attach to an existing region; -ENOENT if absent, -EPROTO on a foreign version. */
int mg_shm_attach(struct mg_shm *s, const char *name);
void mg_shm_detach(struct mg_shm *s);
/* Dataplane on exit: unmap and remove the name. */
void mg_shm_destroy(struct mg_shm *s);

/* Worker slot i's flow-record ring (elements: struct mg_flow_record). */
static inline struct rte_ring *mg_shm_flow_ring(const struct mg_shm *s, unsigned i)
{
	return (struct rte_ring *)((char *)s->base + s->hdr->off_flows +
				   (size_t)i * s->hdr->flow_ring_size);
}

static inline struct mg_peer_stats *mg_shm_stats(const struct mg_shm *s, unsigned slot, uint32_t peer)
{
	return &s->stats[(size_t)slot * s->hdr->max_peers + peer];
}

static inline uint64_t *mg_shm_drops(const struct mg_shm *s, unsigned slot)
{
	return &s->drops[(size_t)slot * MG_DROP_MAX];
}

/* Sum of one drop reason over all lcore slots. */
uint64_t mg_shm_drop_total(const struct mg_shm *s, enum mg_drop_reason r);
/* One peer's counters summed over the lcore slots in use (the last_* times:
 * the latest of any slot). Lock-free: each slot has a single writer. */
void mg_shm_peer_totals(const struct mg_shm *s, uint32_t peer, struct mg_peer_stats *t);

/* Worker slot i's load (its worker writes it), read field by field; false
 * if the slot is not a worker. */
bool mg_shm_worker_load(const struct mg_shm *s, unsigned i, struct mg_worker_export *out);

/* Ring helpers: one message at a time, never blocking. 0 or -ENOBUFS/-ENOENT. */
int mg_ring_send(struct rte_ring *r, const struct mg_msg *m);
int mg_ring_recv(struct rte_ring *r, struct mg_msg *m);
unsigned mg_ring_recv_burst(struct rte_ring *r, struct mg_msg *m, unsigned n);

/* TSC of the dataplane converted to CLOCK_MONOTONIC nanoseconds. */
uint64_t mg_shm_tsc_to_ns(const struct mg_shm *s, uint64_t tsc);

uint64_t mg_mono_ns(void);
uint64_t mg_real_ns(void);

#endif /* MG_SHM_H */
