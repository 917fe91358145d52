/* SPDX-License-Identifier: MIT */
/*
 * Flow logs: a worker's table of the inner flows it forwards, one entry per
 * {peer, direction, protocol, addresses, ports}, counted per packet; a sweep
 * of a few entries per poll hands control one record per active flow and
 * interval (struct mg_flow_record, through the worker's ring in shm) and
 * forgets idle flows. Each worker owns its table: no locks. A full ring
 * holds the records back (the flows keep counting) until control drains
 * it; packets of flows a full table cannot track are counted, not logged
 * (mg_worker_export).
 */
#ifndef DP_FLOWLOG_H
#define DP_FLOWLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "mg_abi.h"

struct rte_ring;
struct dp_flowlog;

/* max_flows entries, one record per flow per interval_tsc at most, flows
 * idle idle_tsc forgotten; records go to ring. NULL on failure. */
struct dp_flowlog *dp_flowlog_create(const char *name, uint32_t max_flows, uint64_t interval_tsc,
				     uint64_t idle_tsc, struct rte_ring *ring, int socket_id);
void dp_flowlog_free(struct dp_flowlog *f);

/* One inner IP packet (ip[0..len), a whole packet) of peer in direction dir. */
void dp_flowlog_note(struct dp_flowlog *f, uint8_t dir, uint32_t peer, const uint8_t *ip,
		     uint16_t len, uint64_t now);

/* Look at n entries and as many more as it takes to visit the whole table
 * once per interval (from where the last call stopped): records for flows
 * due one, idle flows forgotten. A full ring stops the sweep; the flows
 * keep their counts for a later one. */
void dp_flowlog_sweep(struct dp_flowlog *f, unsigned n, uint64_t now);

/* At exit: a record for every flow with packets not yet recorded; how many
 * the full ring could not take yet (call again once control drained it). */
uint64_t dp_flowlog_flush(struct dp_flowlog *f, uint64_t now);

struct dp_flowlog_counts {
	uint64_t flows;	    /* tracked now */
	uint64_t untracked; /* packets of flows the full table could not take */
	uint64_t ring_full; /* sweeps stopped by a full ring (their records waited) */
	uint64_t records;   /* records handed over */
};
void dp_flowlog_counts(const struct dp_flowlog *f, struct dp_flowlog_counts *c);

#endif /* DP_FLOWLOG_H */
