/* SPDX-License-Identifier: MIT */
/*
 * The dataplane's shared types: the context every lcore hangs off, peers,
 * keypairs and the per-mbuf metadata that travels between stages.
 *
 * Threading contract:
 *  - Worker lcores only read peers, keypairs, routes and neighbours; they
 *    write their own statistics slot and keypair send counters (atomic) and
 *    replay windows. Each worker also writes its own SNAT table, which
 *    the others read (snat.h).
 *  - The main lcore is the only writer of every other table. It publishes with
 *    atomic stores and retires memory only after rte_rcu_qsbr_synchronize()
 *    has seen every worker pass a quiescent state (end of each loop).
 */
#ifndef DP_H
#define DP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rte_ether.h>
#include <sys/socket.h>

#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_rcu_qsbr.h>

#include "config.h"
#include "shm.h"
#include "replay_mt.h"
#include "crypto.h"
#include "neigh.h"

#define DP_BURST_MAX   128
#define DP_IDLE_POLLS  64 /* empty polls before a worker sleeps (idle_sleep_us) */
#define DP_FLOWLOG_SWEEP 8  /* flow-log entries a worker looks at per poll */
#define DP_MAX_WORKERS (MG_MAX_LCORES - 1)

struct dp_keypair {
	/*
	 * Line 0, read by every packet either way, written only by the main
	 * lcore: decap needs nothing else but its replay-window slot.
	 */
	uint32_t local_index; /* 0 = slot free; written last, read first */
	uint32_t remote_index;
	uint32_t peer;
	uint8_t initiator;
	uint64_t expire_tsc; /* reject-after-time */
	uint64_t created_tsc;
	uint8_t recv_key[32];
	/*
	 * Line 1, encap's: the nonce counter that workers fetch-add takes its
	 * own line, so that sending does not steal line 0 from the workers
	 * decrypting the other direction.
	 */
	uint64_t send_counter __rte_cache_aligned; /* next nonce; atomic fetch-add by any lcore */
	uint8_t send_key[32];
	struct wg_replay_mt replay __rte_cache_aligned; /* shared by all workers */
} __rte_cache_aligned;

_Static_assert(offsetof(struct dp_keypair, recv_key) + 32 <= RTE_CACHE_LINE_SIZE,
	       "decap's keypair fields fill line 0");

struct dp_endpoint {
	struct mg_sockaddr addr; /* family 0: none */
};

/* Line 0 holds everything a worker reads of a peer, either direction: with
 * many peers it is one miss per packet, and prefetched. */
struct dp_peer {
	uint32_t in_use;
	uint8_t stale;	    /* during a control re-sync */
	uint8_t no_replay;  /* benchmark_no_replay: decap skips the replay window; atomic */
	uint16_t keepalive; /* persistent keepalive, informational here */
	uint32_t kp_cur;    /* keypair slot + 1, 0 = none; atomic */
	uint32_t kp_prev;
	uint32_t kp_next;
	uint32_t ep_idx;    /* which ep[] is live; atomic */
	struct dp_endpoint ep[2];
	/* main lcore only */
	uint8_t public_key[32];
	uint64_t last_need_hs_tsc;
} __rte_cache_aligned;

_Static_assert(offsetof(struct dp_peer, ep) + sizeof(((struct dp_peer *)0)->ep) <=
		   RTE_CACHE_LINE_SIZE,
	       "a worker's peer fields fill line 0");

/* Metadata carried in an mbuf dynamic field between stages and lcores. */
enum dp_meta_kind {
	DP_META_NONE = 0,
	DP_META_RAW_TX,	 /* frame complete but for MACs: resolve nh, send on port */
	DP_META_ENCAP,	 /* plaintext IP (or empty: keepalive) for peer */
	DP_META_STAGE,	 /* plaintext waiting for a keypair of peer */
	DP_META_SLOW,	 /* ARP/ND or local traffic for the main lcore */
	DP_META_TOO_BIG, /* inner packet over the tunnel MTU, for peer: fragment or ICMP error */
	DP_META_LAN_OUT, /* inner IP packet (from the main lcore) to send out the LAN port */
	DP_META_DERP_IN, /* WireGuard data message relayed by DERP; peer = its region */
};

struct dp_meta {
	uint8_t kind;
	uint8_t nh_family;
	uint16_t port;
	uint32_t peer;
	uint8_t nh[16];
};

extern int dp_meta_offset;

static inline struct dp_meta *dp_meta(struct rte_mbuf *m)
{
	return RTE_MBUF_DYNFIELD(m, dp_meta_offset, struct dp_meta *);
}

/* Worker -> main events (small, fixed size). */
enum dp_event_type { DP_EV_CONFIRM = 1, DP_EV_ROAM };

struct dp_event {
	uint16_t type;
	uint16_t pad;
	uint32_t peer;
	uint32_t local_index;
	uint32_t pad2;
	struct mg_sockaddr ep;
};

_Static_assert(sizeof(struct dp_event) == 36, "event size");

struct dp_port {
	uint16_t port_id;
	enum mg_port_role role;
	struct rte_ether_addr mac;
	struct dp_neigh_iface ifc;
	struct mg_sockaddr gateway4, gateway6;
	uint16_t mtu;
};

struct dp_routes; /* route.h */
struct dp_snat;   /* snat.h */

struct dp_lan_route {
	struct mg_prefix prefix;
	struct mg_sockaddr via; /* family 0: on-link */
};

struct dp_ctx;

struct dp_worker {
	struct dp_ctx *dp;
	unsigned idx; /* worker number, also its stats slot and queue id */
	unsigned lcore;
	struct dp_crypto *crypto;
	struct rte_ring *inject; /* main -> this worker: mbufs with dp_meta */
	uint64_t *drops;         /* this worker's row in shm */
	uint64_t now_tsc;
	uint64_t busy_tsc, loops, rx_pkts, tx_pkts;
	uint64_t crypto_tsc; /* the part of busy_tsc spent in crypto bursts */
	uint64_t idle_sleeps;
	struct mg_worker_export *load; /* this worker's row in shm (dp_worker_poll) */
	struct dp_flowlog *flowlog;    /* flowlog.h; NULL: flow logs off */
	struct dp_punt_bucket {
		uint64_t tokens, last_tsc;
	} stun_rl, disco_rl; /* STUN and disco punt rate limits (decap.c) */
	/* The last next hop resolved, valid for one loop iteration only (so a
	 * changed neighbour is seen at the next burst): a burst mostly goes to
	 * one next hop, and this saves a hash lookup per packet. */
	struct {
		uint64_t loop;
		uint8_t family;
		uint16_t port;
		uint8_t nh[16];
		struct rte_ether_addr mac;
	} nh_cache;
} __rte_cache_aligned;

struct dp_ctx {
	struct mg_config *cfg;
	struct mg_shm shm;
	struct rte_mempool *pool;
	struct rte_rcu_qsbr *rcu;
	struct dp_port ports[MG_MAX_PORTS];
	int n_ports;
	int wan, lan; /* port indices, -1 if absent */
	uint16_t listen_port; /* host order; atomic */
	uint16_t mtu;

	uint32_t max_peers, kp_mask;
	struct dp_peer *peers;
	struct dp_keypair *keypairs;
	struct dp_routes *routes;
	struct dp_neigh_table *neigh;
	struct dp_lan_route *lan_routes;
	int n_lan_routes;
	struct dp_filter *filter; /* filter.h; atomic, RCU; NULL: no policy */
	struct dp_flows *flows;   /* UDP flows into the tunnel, for replies */
	struct dp_filter_staging *filter_staging; /* main lcore */
	struct dp_snat *snat; /* snat.h; NULL: SNAT off */

	struct rte_ring *slow;   /* workers -> main: mbufs */
	struct rte_ring *events; /* workers -> main: struct dp_event */

	struct dp_worker workers[DP_MAX_WORKERS];
	unsigned n_workers;
	uint64_t tsc_hz;
	uint64_t reject_after_tsc;
	volatile int quit;
	uint64_t msg_seq;
	struct dp_main_state *ms; /* main.c / service.c private */
};

static inline uint64_t *dp_main_drops(struct dp_ctx *dp)
{
	return mg_shm_drops(&dp->shm, dp->n_workers);
}

static inline struct dp_keypair *dp_keypair_by_slot(struct dp_ctx *dp, uint32_t slot1)
{
	return slot1 ? &dp->keypairs[slot1 - 1] : NULL;
}

/* Next hop toward an underlay IPv4 address: itself if on-link, else the
 * WAN gateway (or itself when no gateway is configured). */
static inline const uint8_t *dp_wan_next_hop(const struct dp_port *p, const struct mg_sockaddr *ep)
{
	uint32_t dst;
	memcpy(&dst, ep->addr, sizeof(dst));
	dst = rte_be_to_cpu_32(dst);
	for (int i = 0; i < p->ifc.n_addr4; i++) {
		uint8_t plen = p->ifc.plen4[i];
		uint32_t mask = plen == 0 ? 0 : 0xffffffffu << (32 - plen);
		if (((dst ^ rte_be_to_cpu_32(p->ifc.addr4[i])) & mask) == 0)
			return ep->addr;
	}
	return p->gateway4.family == AF_INET ? p->gateway4.addr : ep->addr;
}

static inline bool dp_prefix_match6(const uint8_t *a, const uint8_t *b, uint8_t plen)
{
	unsigned bytes = plen > 128 ? 16 : plen / 8, bits = plen > 128 ? 0 : plen % 8;
	if (memcmp(a, b, bytes))
		return false;
	return bits == 0 || ((a[bytes] ^ b[bytes]) & (0xff << (8 - bits))) == 0;
}

static inline bool dp_is_link_local6(const uint8_t *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/* Next hop toward an underlay IPv6 address: itself if link-local or inside
 * one of the port's prefixes, else the WAN gateway6 (which may be
 * link-local), or itself when no gateway6 is configured. */
static inline const uint8_t *dp_wan_next_hop6(const struct dp_port *p, const struct mg_sockaddr *ep)
{
	if (dp_is_link_local6(ep->addr))
		return ep->addr;
	for (int i = 0; i < p->ifc.n_addr6; i++)
		if (dp_prefix_match6(ep->addr, p->ifc.addr6[i], p->ifc.plen6[i]))
			return ep->addr;
	return p->gateway6.family == AF_INET6 ? p->gateway6.addr : ep->addr;
}

/* Source address toward an underlay IPv6 address: the link-local one for a
 * link-local destination, else the port's address on the destination's
 * prefix, else its first address; NULL if it has none. */
static inline const uint8_t *dp_wan_src6(const struct dp_port *p, const uint8_t *dst)
{
	if (dp_is_link_local6(dst))
		return p->ifc.ll6;
	for (int i = 0; i < p->ifc.n_addr6; i++)
		if (dp_prefix_match6(dst, p->ifc.addr6[i], p->ifc.plen6[i]))
			return p->ifc.addr6[i];
	return p->ifc.n_addr6 ? p->ifc.addr6[0] : NULL;
}

/* Whether the port can send to an endpoint: a known family and a source
 * address of that family. */
static inline bool dp_wan_can_reach(const struct dp_port *p, const struct mg_sockaddr *ep)
{
	if (ep->family == AF_INET)
		return p->ifc.n_addr4 > 0;
	return ep->family == AF_INET6 && dp_wan_src6(p, ep->addr) != NULL;
}

/* ctx.c: build everything a running dataplane needs (not the launch) */
int dp_ctx_setup(struct dp_ctx *dp);
void dp_ctx_teardown(struct dp_ctx *dp);

/* worker.c */
int dp_worker_main(void *arg);
struct dp_burst;
/* One iteration of the worker loop; returns the packets it received. */
unsigned dp_worker_poll(struct dp_worker *w, struct dp_burst *b);

/* service.c: the main lcore's loop; dp_service_handle applies one control
 * message and dp_service_commit publishes what a batch of them changed. */
void dp_service_handle(struct dp_ctx *dp, const struct mg_msg *msg);
void dp_service_commit(struct dp_ctx *dp);
int dp_service_init(struct dp_ctx *dp);
void dp_service_run(struct dp_ctx *dp);
void dp_service_fini(struct dp_ctx *dp);

/* port.c */
int dp_ports_init(struct dp_ctx *dp);
void dp_ports_fini(struct dp_ctx *dp);
void dp_ports_export_stats(struct dp_ctx *dp);

#endif /* DP_H */
