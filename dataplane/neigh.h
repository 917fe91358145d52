/* SPDX-License-Identifier: MIT */
/*
 * Neighbour resolution on the gateway's DPDK ports: ARP (IPv4) and IPv6
 * Neighbor Discovery (NS/NA only). These ports have no kernel stack, so the
 * dataplane answers for its own addresses, learns its neighbours and sends
 * its own solicitations.
 *
 * Threading contract:
 *   - dp_neigh_lookup4/6 and dp_neigh_is_neigh_packet: any lcore, lock-free,
 *     no syscalls, concurrent with the single writer.
 *   - everything else: the single main lcore (the writer) only.
 *
 * The table is an rte_hash with RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF; the
 * MAC is stored in the 64-bit data pointer value, so a reader needs nothing
 * but the hash. A deleted entry's key slot is not reused until every reader
 * has passed a quiescent state of the rte_rcu_qsbr variable given with
 * dp_neigh_set_rcu(); without one, deleted slots are parked and never reused
 * (see dp_neigh_set_rcu). Reusing a slot earlier would let a reader that
 * matched the old key read the new key's MAC.
 */
#ifndef DP_NEIGH_H
#define DP_NEIGH_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_rcu_qsbr;

#define DP_NEIGH_MAX_ADDRS 8

/* One port's own addresses. IPv4 addresses in network byte order. */
struct dp_neigh_iface {
	uint16_t port_id;
	struct rte_ether_addr mac;
	uint32_t addr4[DP_NEIGH_MAX_ADDRS];
	uint8_t plen4[DP_NEIGH_MAX_ADDRS];
	int n_addr4;
	uint8_t addr6[DP_NEIGH_MAX_ADDRS][16];
	uint8_t plen6[DP_NEIGH_MAX_ADDRS];
	int n_addr6;
	uint8_t ll6[16]; /* fe80::EUI-64, filled by dp_neigh_iface_init */
};

/* Derives ll6 from mac (modified EUI-64, RFC 4291 appendix A). */
void dp_neigh_iface_init(struct dp_neigh_iface *ifc);

struct dp_neigh_table;

/*
 * Room for max_entries neighbours of both families together. NULL with
 * rte_errno set on failure (EINVAL, ENOMEM, EEXIST for a name in use).
 */
struct dp_neigh_table *dp_neigh_create(const char *name, uint32_t max_entries, int socket_id);
/* No reader may be using the table any more. */
void dp_neigh_destroy(struct dp_neigh_table *t);

/*
 * Entries are per port (ethdev id), as a kernel keeps a table per device: a
 * neighbour learned on one port is neither used nor refreshed on another, so
 * a host on one segment cannot redirect traffic meant for another segment by
 * claiming its addresses.
 */

/* Any lcore, lock-free. 0 and *mac filled, or -ENOENT. */
int dp_neigh_lookup4(const struct dp_neigh_table *t, uint16_t port_id, uint32_t ip_be,
		     struct rte_ether_addr *mac);
int dp_neigh_lookup6(const struct dp_neigh_table *t, uint16_t port_id, const uint8_t ip[16],
		     struct rte_ether_addr *mac);
/* Either family: ip is 4 bytes (network order) for AF_INET, else 16. */
int dp_neigh_lookup(const struct dp_neigh_table *t, uint16_t port_id, int family, const uint8_t *ip,
		    struct rte_ether_addr *mac);

/*
 * Main lcore only: insert, or refresh (and change the MAC of) an entry.
 * 0, -EINVAL for a MAC that is not a unicast station address, -ENOSPC when
 * the table is full (counted as table_full).
 */
int dp_neigh_update4(struct dp_neigh_table *t, uint16_t port_id, uint32_t ip_be,
		     const struct rte_ether_addr *mac, uint64_t now_tsc);
int dp_neigh_update6(struct dp_neigh_table *t, uint16_t port_id, const uint8_t ip[16],
		     const struct rte_ether_addr *mac, uint64_t now_tsc);

/*
 * Any lcore, cheap: ARP, or an ICMPv6 NS/NA directly after the IPv6 header
 * (no extension headers). Only looks at the first segment's headers; the
 * full validation is dp_neigh_input's.
 */
bool dp_neigh_is_neigh_packet(const struct rte_mbuf *m);

/*
 * Main lcore only. Consumes m. Learns, on ifc->port_id, the sender (ARP sender; NS source
 * link-layer option unless the source is ::; NA target link-layer option)
 * and, if m asks for one of ifc's addresses, returns a reply allocated from
 * mp, Ethernet header included, ready to transmit on ifc->port_id. Otherwise
 * (or when mp is empty, counted as no_mbuf) NULL. Malformed input is counted
 * and freed.
 */
struct rte_mbuf *dp_neigh_input(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				struct rte_mbuf *m, struct rte_mempool *mp, uint64_t now_tsc);

/*
 * Requests, NULL with rte_errno = ENOBUFS when mp is empty:
 *   solicit4: broadcast ARP who-has, sender address the ifc address on the
 *             target's subnet, else the first one, else 0.0.0.0 (a probe);
 *   solicit6: NS to the target's solicited-node multicast address with the
 *             source link-layer option; source the ifc address on the
 *             target's prefix, else the link-local address.
 */
struct rte_mbuf *dp_neigh_solicit4(const struct dp_neigh_iface *ifc, struct rte_mempool *mp,
				   uint32_t target_be);
struct rte_mbuf *dp_neigh_solicit6(const struct dp_neigh_iface *ifc, struct rte_mempool *mp,
				   const uint8_t target[16]);

/*
 * Main lcore only. The readers' QSBR variable: deleted key slots are freed
 * once every reader registered in v has reported a quiescent state after
 * the delete. With v == NULL (the default) deleted slots are parked, not
 * reused, until a variable is set or the table destroyed: aging then still
 * removes stale MACs from readers' view, but the capacity they used comes
 * back only with RCU. Setting v restarts the grace period of parked slots.
 */
void dp_neigh_set_rcu(struct dp_neigh_table *t, struct rte_rcu_qsbr *v);

/*
 * Main lcore only. Frees the parked slots whose grace period is over; never
 * waits. Called by dp_neigh_age and when an insert finds the table full.
 * Returns how many were freed.
 */
unsigned dp_neigh_reclaim(struct dp_neigh_table *t);

/*
 * Main lcore only. Removes the entries not updated or confirmed for more
 * than max_age_tsc; returns how many.
 */
unsigned dp_neigh_age(struct dp_neigh_table *t, uint64_t now_tsc, uint64_t max_age_tsc);

/*
 * *_in count well-formed messages; malformed ones count only as malformed.
 * learned counts new entries and changed MACs, not refreshes.
 */
struct dp_neigh_stats {
	uint64_t arp_in, arp_replies, ns_in, na_in, na_sent, learned, malformed, table_full;
	uint64_t no_mbuf; /* replies not sent: mempool empty */
};

/* Any lcore (relaxed reads of counters the main lcore writes). */
void dp_neigh_get_stats(const struct dp_neigh_table *t, struct dp_neigh_stats *out);

/*
 * Main lcore only (reads the writer's shadow copy). family is AF_INET (ip
 * points at 4 bytes, network order) or AF_INET6 (16 bytes).
 */
void dp_neigh_walk(const struct dp_neigh_table *t,
		   void (*cb)(void *arg, uint16_t port_id, int family, const uint8_t *ip,
			      const struct rte_ether_addr *mac, uint64_t updated_tsc),
		   void *arg);

#endif /* DP_NEIGH_H */
