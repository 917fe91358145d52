/* SPDX-License-Identifier: MIT */
/*
 * The control process: the WireGuard handshake engine, timers, the
 * userspace API, and the link that programs the dataplane.
 */
#ifndef CP_H
#define CP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "cookie.h"
#include "mg_abi.h"
#include "noise.h"
#include "ratelimiter.h"
#include "shm.h"

struct cp_timers {
	uint64_t rekey_after, reject_after, keepalive, rekey_timeout, rekey_attempt; /* ns */
};

struct cp_peer {
	uint32_t slot;	     /* dataplane peer slot */
	uint64_t created_ns; /* CLOCK_MONOTONIC: since then the slot is this peer's */
	char name[64];
	struct wg_noise_remote noise;
	struct wg_cookie_maker cookie;
	bool has_psk;
	struct mg_sockaddr endpoint;
	uint16_t persistent_keepalive;
	bool no_replay; /* benchmark_no_replay from the config; never set by the UAPI */
	bool from_coord; /* made from the coordination server's netmap (coord_netmap.c) */
	struct mg_prefix *aips;
	uint32_t n_aips, cap_aips;
	bool aips_dirty;

	/* Mirror of the dataplane's keypair roles, as local indices. */
	uint32_t kp_prev, kp_cur, kp_next;
	uint64_t cur_created_ns;
	bool cur_initiator;

	/* Handshake and timer state (CLOCK_MONOTONIC ns). */
	bool hs_wanted;          /* an initiation is being retried */
	uint64_t hs_first_ns;    /* first attempt of the current series */
	uint64_t hs_last_sent_ns;
	uint64_t hs_jitter_ns;
	uint32_t hs_local_index; /* of the initiation in flight */
	bool lastminute_sent;
	uint64_t last_handshake_real_ns; /* for wg show */
	uint64_t last_handshake_mono_ns;
	uint64_t keepalive_for_rx_ns; /* last rx-data time we answered */
	uint64_t unanswered_tx_ns;    /* first data sent since the last receive */
	uint64_t persistent_sent_ns;
	uint64_t zeroed_at_ns;

	/* Paths (handshake.c picks among them): the direct endpoint the
	 * coordination server gave, and the peer's home DERP region (0: none). */
	struct mg_sockaddr direct;
	uint16_t derp_region;
	uint32_t hs_attempts; /* initiations sent in the current series */
	struct cp_disco_peer *disco; /* disco.c; peers with a DERP region only */

	/* Latest totals from the dataplane's counters. */
	uint64_t rx_bytes, tx_bytes, last_rx_ns, last_tx_ns, last_rx_data_ns, last_tx_data_ns;
};

/* Why a packet for or from a DERP relay was dropped (derp.c). */
enum cp_derp_drop {
	CP_DERP_DROP_NOT_READY,	   /* no connection to the region yet (one is being made) */
	CP_DERP_DROP_QUEUE_FULL,   /* the relay's socket is not taking more */
	CP_DERP_DROP_NO_REGION,	   /* a DERP endpoint of a region not in derp_regions */
	CP_DERP_DROP_UNKNOWN_PEER, /* relayed from a key that is none of our peers */
	CP_DERP_DROP_BAD_PACKET,   /* relayed bytes that are no WireGuard message */
	CP_DERP_DROP_RING_FULL,	   /* the dataplane's command ring was full */
	CP_DERP_DROP_PROTOCOL,	   /* a malformed frame from the relay */
	CP_DERP_DROP_COUNT
};
extern const char *const cp_derp_drop_names[CP_DERP_DROP_COUNT];

/* Disco counters (disco.c), exported by metrics.c. */
enum cp_disco_stat {
	CP_DISCO_PINGS_SENT,
	CP_DISCO_PINGS_RCVD,
	CP_DISCO_PONGS_SENT,
	CP_DISCO_PONGS_RCVD, /* answering a ping in flight, from where it went */
	CP_DISCO_CMM_SENT,
	CP_DISCO_CMM_RCVD,
	CP_DISCO_DIRECT,  /* relayed peers moved to a direct path */
	CP_DISCO_REFUSED, /* unknown sender, box, unasked or stale pong, ... */
	CP_DISCO_STAT_COUNT
};
extern const char *const cp_disco_stat_names[CP_DISCO_STAT_COUNT];
#define CP_DISCO_MAX_CAND 4 /* direct endpoints per peer disco pings */

/* hdr.port of a handshake message that came through a DERP relay (derp.c
 * builds it): hdr.ep is the region's DERP endpoint, and the sender's public
 * key follows the message, at data[hdr.len], for the cookie reply. */
#define CP_PORT_DERP 0xffffu

struct cp_device {
	struct mg_config *cfg;
	struct wg_noise_local local;
	struct wg_cookie_checker checker;
	struct wg_ratelimiter *rl;
	struct cp_timers t;
	uint16_t listen_port;
	uint32_t fwmark;
	uint32_t max_peers;  /* dataplane slots (power of two) */
	struct cp_peer **by_slot;
	uint32_t slot_hint;  /* every slot below it is taken (device.c) */
	struct cp_peer_pool *pool; /* where peers live (device.c) */
	/* Bit per slot: the peer may have a handshake being retried, checked
	 * on every timer tick; the others are visited a slice per tick. */
	uint64_t *hs_wanted;
	uint32_t timer_cursor;
	struct cp_peer_index *by_key; /* cp_peer_find's hash table (device.c) */
	uint32_t n_peers;
	struct cp_aip_index *aip;
	uint64_t under_load_until_ns;

	struct mg_shm shm;
	bool attached;
	bool resync;          /* a full sync is needed (dplink.c) */
	bool syncing;         /* one is under way, at sync_cursor */
	uint32_t sync_cursor;
	uint64_t shm_ino;
	uint64_t seq;
	uint64_t handshakes_done, cookies_sent, handshakes_refused;
	/* Handshake messages by type and direction, and control->dataplane
	 * messages lost to a full ring; exported by metrics.c. */
	uint64_t initiations_sent, initiations_rcvd, responses_sent, responses_rcvd, cookies_rcvd;
	uint64_t cp2dp_full;
	struct cp_filter *filter; /* filter.c; NULL without a policy_file */
	struct cp_stun *stun;	  /* stun.c; NULL without control.stun_servers */
	struct cp_flowlog *flowlog; /* flowlog.c; NULL without flow_log */
	/* Flow records written, dropped (not written: a failed write, or one
	 * that could not be formatted), and failed writes. */
	uint64_t flow_records, flow_records_dropped, flow_write_errors;
	/* Called as a peer is removed, and as the dataplane goes (set by
	 * flowlog.c, which needs both before the slot or the region is gone). */
	void (*on_peer_remove)(struct cp_device *d, const struct cp_peer *p);
	void (*on_detach)(struct cp_device *d);
	/* STUN Binding requests sent (retransmissions too), responses taken,
	 * STUN messages refused (malformed, unasked, late); public endpoints
	 * known now. Exported by metrics.c. */
	uint64_t stun_sent, stun_accepted, stun_refused;
	uint32_t stun_endpoints;
	/* A STUN server sees us at an endpoint that is not one of our WAN
	 * addresses with the listen port (stun.c): coordination peers then get
	 * a persistent keepalive (cp_coord_peer_keepalive). */
	bool behind_nat;
	struct cp_derp *derp; /* derp.c; NULL without regions (config or map) */
	/* Packets relayed each way, drops by reason, relays connected now (the
	 * home one among them or not), connections made, PeerGone notices.
	 * Exported by metrics.c. */
	uint64_t derp_tx, derp_rx, derp_tx_bytes, derp_rx_bytes;
	uint64_t derp_drops[CP_DERP_DROP_COUNT];
	uint32_t derp_connected;
	bool derp_home_up;
	uint64_t derp_connects, derp_peer_gone;
	bool derp_home_changed; /* a new home region: the coordination client re-advertises */
	/* The regions (derp.c keeps these current for metrics.c and tests): the
	 * home's id, each one's id and latency (0: not measured). */
	uint16_t derp_home_region;
	int derp_n_regions;
	uint16_t derp_region[MG_MAX_DERP_REGIONS];
	uint64_t derp_latency_ns[MG_MAX_DERP_REGIONS];
	bool derp_no_probe; /* tests: no latency probes */
	uint64_t disco[CP_DISCO_STAT_COUNT];
	/* The peers that have disco state (disco.c), densely: the tick walks
	 * these, not every peer slot of a hub. */
	struct cp_peer **disco_peers;
	uint32_t n_disco, cap_disco;
};

/* device.c: peers and their configuration */
int cp_device_init(struct cp_device *d, struct mg_config *cfg);
void cp_device_fini(struct cp_device *d);
struct cp_peer *cp_peer_find(struct cp_device *d, const uint8_t pub[32]);
struct cp_peer *cp_peer_by_index(struct cp_device *d, uint32_t local_index);
struct cp_peer *cp_peer_create(struct cp_device *d, const uint8_t pub[32], int *err);
void cp_peer_remove(struct cp_device *d, struct cp_peer *p);
int cp_peer_set_psk(struct cp_device *d, struct cp_peer *p, const uint8_t *psk);
int cp_peer_aip_add(struct cp_device *d, struct cp_peer *p, const struct mg_prefix *pfx);
void cp_peer_aip_clear(struct cp_device *d, struct cp_peer *p);
int cp_device_set_private_key(struct cp_device *d, const uint8_t key[32]);
/* A node-key rotation: the new identity for handshakes from now on, while the
 * sessions in place keep working until they rekey. */
int cp_device_rotate_private_key(struct cp_device *d, const uint8_t key[32]);
/* The peer that owns exactly this allowed-IP prefix, or NULL. */
struct cp_peer *cp_aip_owner(struct cp_device *d, const struct mg_prefix *pfx);
uint32_t cp_index_alloc(struct cp_device *d, struct cp_peer *p);
void cp_peer_refresh_stats(struct cp_device *d, struct cp_peer *p);
void cp_peer_warn_no_replay(const struct cp_peer *p, const char *when);

/* The endpoint changed: a direct one is remembered for when the peer is
 * relayed (handshake.c tries it again). */
static inline void cp_peer_note_direct(struct cp_peer *p)
{
	if (p->endpoint.family && !mg_sockaddr_is_derp(&p->endpoint))
		p->direct = p->endpoint;
}

/* dplink.c: the dataplane link */
int cp_dp_send(struct cp_device *d, struct mg_msg *m);
int cp_dp_peer_push(struct cp_device *d, struct cp_peer *p);
int cp_dp_aips_push(struct cp_device *d, struct cp_peer *p);
int cp_dp_simple(struct cp_device *d, uint16_t type, uint32_t peer);
int cp_dp_tx_udp(struct cp_device *d, const struct mg_sockaddr *to, const void *data, size_t len);
void cp_dp_maintain(struct cp_device *d); /* attach, detect restarts, resync */
unsigned cp_dp_poll(struct cp_device *d); /* handle messages from the dataplane */

/* filter.c: the packet filter (policy -> dataplane rte_acl) */
int cp_filter_init(struct cp_device *d);      /* compile policy_file; -EINVAL if bad */
int cp_filter_check(const struct mg_config *cfg, char *msg, size_t msglen); /* --check */
void cp_filter_fini(struct cp_device *d);
void cp_filter_reload(struct cp_device *d);   /* SIGHUP: recompile; a bad one changes nothing */
/* Install a compiled filter from elsewhere (the coordination server's
 * netmap): takes ownership of p (heap-allocated, freed with mg_policy_free
 * + free); tests in it are run by the dataplane like a file's. */
struct mg_policy;
int cp_filter_install(struct cp_device *d, struct mg_policy *p);
void cp_filter_resync(struct cp_device *d);   /* the dataplane needs it again */
void cp_filter_maintain(struct cp_device *d); /* stream pending chunks */
void cp_filter_result(struct cp_device *d, const struct mg_msg *m);

/* handshake.c: Noise over the dataplane, and the WireGuard timers */
/* Handshake messages (MG_MSG_RX_UDP) of one poll, initiations batched. */
void cp_hs_rx_burst(struct cp_device *d, const struct mg_msg *const *m, unsigned n);
void cp_hs_initiate(struct cp_device *d, struct cp_peer *p, bool retry);
void cp_hs_keypair_confirmed(struct cp_device *d, struct cp_peer *p);
void cp_timers_tick(struct cp_device *d);

/* stun.c: our public endpoints, as STUN servers see the listen port */
int cp_stun_init(struct cp_device *d); /* d->stun, if servers are configured; 0 or -ENOMEM */
void cp_stun_fini(struct cp_device *d);
/* Requests due (a round every stun_interval, and at once on a newly
 * programmed dataplane), retransmissions, endpoints gone stale. */
void cp_stun_tick(struct cp_device *d, uint64_t now);
/* A punted MG_MSG_RX_UDP whose data passed mg_stun_is, received at now. */
void cp_stun_rx(struct cp_device *d, const struct mg_msg *m, uint64_t now);
/* Called with the whole set each time it changes (and once now). */
typedef void cp_stun_notify_fn(void *arg, const struct mg_sockaddr *eps, unsigned n);
void cp_stun_set_notify(struct cp_device *d, cp_stun_notify_fn *fn, void *arg);
/* Persistent keepalive (s) for peers from the coordination server: behind a
 * NAT, MG_NAT_KEEPALIVE, to keep both NATs' mappings open; else none. */
#define MG_NAT_KEEPALIVE 25
static inline uint16_t cp_coord_peer_keepalive(const struct cp_device *d)
{
	return d->behind_nat ? MG_NAT_KEEPALIVE : 0;
}

/* derp.c: DERP relays (control.derp_regions) */
/* d->derp, if regions are configured; 0, or -EINVAL (out of memory or an
 * unusable TLS ca_file, logged) */
int cp_derp_init(struct cp_device *d);
void cp_derp_fini(struct cp_device *d);
/* Connects (home always, other regions while used), timeouts, idle closes. */
void cp_derp_tick(struct cp_device *d, uint64_t now);
struct pollfd;
#define CP_DERP_MAX_FDS (2 * MG_MAX_DERP_REGIONS) /* a connection and a probe per region */
unsigned cp_derp_pollfds(struct cp_device *d, struct pollfd *pfd, unsigned max);
void cp_derp_service(struct cp_device *d, const struct pollfd *pfd, unsigned n, uint64_t now);
/* Relay pkt to the node with public key `key` through region's relay. 0 or -errno (counted). */
int cp_derp_send(struct cp_device *d, uint16_t region, const uint8_t key[32], const void *pkt,
		 size_t len);
/* MG_MSG_DERP_TX from the dataplane. */
void cp_derp_dp_tx(struct cp_device *d, const struct mg_msg *m);
/*
 * The regions of the coordination server's map (regs[i].ca_file filled in by
 * the caller), when control.derp_regions is not set (-EEXIST then, nothing
 * done): connections to regions that did not change stay, others are closed
 * or made; the home region is control.derp_home if the map has it, else its
 * first. No regions: relaying off. A new home sets derp_home_changed. 0, or
 * -EINVAL (logged: out of memory, an unusable derp_ca_file) with the regions
 * as they were.
 */
int cp_derp_set_regions(struct cp_device *d, const struct mg_derp_region_conf *regs, int n);
/*
 * Without a configured home (control.derp_home, or one the map lacks) the
 * home is the region of least latency: rounds of TCP-connect probes to every
 * region. The choice, from each region's latency (0: none): the current home
 * cur stays unless it does not answer, or another is under 2/3 of its
 * latency and more than 10 ms faster. Pure: table-tested.
 */
int cp_derp_pick_home(const uint64_t *lat_ns, int n, int cur);

bool cp_derp_region_same(const struct mg_derp_region_conf *a, const struct mg_derp_region_conf *b);
/* The DERP endpoint this node advertises (its home region), or family 0. */
struct mg_sockaddr cp_derp_home_endpoint(const struct cp_device *d);
bool cp_derp_region_up(const struct cp_device *d, uint16_t region);

/* disco.c: a direct path again for relayed peers */
/* The peer's direct endpoints (from the coordination server); makes its disco state. */
int cp_disco_set_candidates(struct cp_device *d, struct cp_peer *p, const struct mg_sockaddr *eps,
			    unsigned n);
void cp_disco_peer_free(struct cp_device *d, struct cp_peer *p);
void cp_disco_tick(struct cp_device *d, uint64_t now); /* rounds for relayed peers */
/* A disco datagram from `from` (UDP, or a DERP endpoint; then relay_src is the
 * key the relay says sent it). */
void cp_disco_rx(struct cp_device *d, const uint8_t *pkt, size_t len,
		 const struct mg_sockaddr *from, const uint8_t *relay_src);
/* stun.c: the public endpoints STUN sees now; returns how many. */
unsigned cp_stun_public(const struct cp_device *d, const struct mg_sockaddr **eps);

/* A datagram to `to`: through the dataplane, or a DERP relay when `to` is a
 * DERP endpoint (then key, the receiver's public key, is required). */
int cp_tx(struct cp_device *d, const struct mg_sockaddr *to, const uint8_t *key, const void *data,
	  size_t len);

uint64_t cp_now(void);

#endif /* CP_H */
