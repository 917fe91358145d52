/* SPDX-License-Identifier: MIT */
/*
 * Cryptokey routing: allowed-IP prefixes -> peer slot, for encap (longest
 * prefix match of the inner destination) and decap (inner source check).
 *
 * Two copies of each table (left-right): workers read the active copy, the
 * main lcore applies a batch of changes to the standby copy, swaps, waits a
 * grace period, then applies the same batch to the old copy. Readers never
 * wait and never see a half-applied change.
 */
#ifndef DP_ROUTE_H
#define DP_ROUTE_H

#include <stdint.h>

#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_rcu_qsbr.h>

#include "types.h"

struct dp_route_tables {
	struct rte_lpm *lpm4;
	struct rte_lpm6 *lpm6;
	/* rte_lpm cannot hold /0: the default route of each family lives here. */
	uint32_t default4, default6; /* peer + 1, 0 = none */
};

struct dp_routes;

struct dp_routes *dp_routes_create(const char *name, uint32_t max_peers, uint32_t max_rules,
				   int socket_id);
void dp_routes_destroy(struct dp_routes *r);

/* Worker side: the tables to use for one burst. */
const struct dp_route_tables *dp_routes_active(const struct dp_routes *r);

/* Main lcore: queue changes, then commit them all at once. */
int dp_routes_add(struct dp_routes *r, const struct mg_prefix *p, uint32_t peer);
int dp_routes_del(struct dp_routes *r, const struct mg_prefix *p, uint32_t peer);
int dp_routes_clear_peer(struct dp_routes *r, uint32_t peer);
/* Returns how many queued changes could not be applied (table full);
 * those are skipped on both copies, so the copies never diverge. */
int dp_routes_commit(struct dp_routes *r, struct rte_rcu_qsbr *rcu);
uint32_t dp_routes_count(const struct dp_routes *r);

/* Lookups; 0 and *peer set on a hit, -ENOENT otherwise. Host-order IPv4. */
static inline int dp_route_lookup4(const struct dp_route_tables *t, uint32_t ip, uint32_t *peer)
{
	if (rte_lpm_lookup(t->lpm4, ip, peer) == 0)
		return 0;
	*peer = t->default4 - 1;
	return t->default4 ? 0 : -ENOENT;
}

static inline int dp_route_lookup6(const struct dp_route_tables *t, const uint8_t ip[16],
				   uint32_t *peer)
{
	if (rte_lpm6_lookup(t->lpm6, ip, peer) == 0)
		return 0;
	*peer = t->default6 - 1;
	return t->default6 ? 0 : -ENOENT;
}

#endif /* DP_ROUTE_H */
