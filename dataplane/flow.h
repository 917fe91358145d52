/* SPDX-License-Identifier: MIT */
/*
 * The reverse-flow table: which UDP flows LAN hosts opened into the tunnel
 * recently, so that the packet filter (acl.h) lets their replies back in
 * without a rule, as Tailscale does.
 *
 * One table per worker, written only by its worker (dp_flows_note_out on the
 * plaintext UDP it sends into the tunnel), read by every worker (a reply may
 * arrive on any of them). No locks: entries are seqlocked, so a reader
 * racing the writer sees either the old or the new entry, or a miss, never a
 * torn key. A table is set-associative (4 ways per bucket); a new flow
 * evicts the least recently seen of its bucket, so a full table forgets the
 * oldest flows first. Entries expire after the timeout given at creation.
 */
#ifndef DP_FLOW_H
#define DP_FLOW_H

#include <stdbool.h>
#include <stdint.h>

struct dp_flows;

/* A UDP flow as sent into the tunnel: addresses and ports in network order. */
struct dp_flow_key {
	uint64_t w[5];
};

/*
 * n_workers tables of entries_per_worker entries (rounded up to a power of
 * two, at least 4) on socket_id; flows expire timeout_s seconds after their
 * last outbound packet (tsc_hz: rte_get_tsc_hz()). NULL with rte_errno set.
 * Must run after rte_eal_init.
 */
struct dp_flows *dp_flows_create(unsigned n_workers, uint32_t entries_per_worker, uint64_t tsc_hz,
				 uint32_t timeout_s, int socket_id);
void dp_flows_free(struct dp_flows *f);

/*
 * Remember the flow of an outbound packet (ip: a whole IPv4/IPv6 packet of
 * len bytes). Anything but a UDP packet with its header is ignored. Only
 * ever called by the worker that owns table `worker`.
 */
void dp_flows_note_out(struct dp_flows *f, unsigned worker, uint64_t now_tsc, const uint8_t *ip,
		       uint16_t len);

/* The key of the flow from src:sport to dst:dport (family AF_INET or AF_INET6). */
void dp_flow_key_make(struct dp_flow_key *k, uint8_t family, const uint8_t *src, const uint8_t *dst,
		      const uint8_t sport[2], const uint8_t dport[2]);

/* Whether any worker noted flow k within the timeout. Any thread. */
bool dp_flows_seen(const struct dp_flows *f, uint64_t now_tsc, const struct dp_flow_key *k);

#endif /* DP_FLOW_H */
