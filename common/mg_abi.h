/* SPDX-License-Identifier: MIT */
/*
 * The control/dataplane ABI: the layout of the shared-memory region the
 * dataplane creates, and the fixed-size messages that travel on its two
 * rings. Bump MG_ABI_VERSION on any change; each side refuses a peer that
 * speaks another version.
 *
 * Ownership: the dataplane creates the region (a new generation on every
 * start) and writes everything but the cp2dp ring and cp_* header fields.
 * The control process only reads peer state, statistics and counters.
 */
#ifndef MG_ABI_H
#define MG_ABI_H

#include <stdint.h>

#include "acl_types.h"
#include "types.h"

#define MG_SHM_MAGIC   0x4d475348u /* "MGSH" */
#define MG_ABI_VERSION 7u

#define MG_MSG_SIZE      2048u
#define MG_MSG_HDR_SIZE  64u
#define MG_MSG_MAX_DATA  (MG_MSG_SIZE - MG_MSG_HDR_SIZE)
/*
 * Entries in each direction. dp2cp is the incoming handshake queue: like
 * Linux WireGuard's (4096), with "under load" (cookies instead of
 * Diffie-Hellman) from 1/8 of it, which rides out tens of milliseconds of
 * scheduling delay at 10,000 handshakes per second.
 */
#define MG_RING_SIZE 4096u
#define MG_MAX_LCORES    16u   /* statistics slots: one per worker + main */
#define MG_KP_PER_PEER   4u    /* keypair slots a peer owns: prev, cur, next, one spare */
#define MG_MAX_SHM_PORTS 8u
#define MG_FLOW_RING_SIZE 8192u /* flow records per worker ring (flow_log) */

/* Every drop is counted under one of these reasons, per lcore. */
#define MG_DROP_REASONS(X)                                                                         \
	X(RX_RUNT, "rx_runt")                   /* frame shorter than its headers */               \
	X(NOT_IP, "not_ip")                     /* ethertype we do not route */                    \
	X(BAD_IP, "bad_ip")                     /* IP header malformed or truncated */             \
	X(IP_FRAGMENT, "ip_fragment")           /* outer fragments are not reassembled */          \
	X(NOT_FOR_US, "not_for_us")             /* WAN packet not addressed to our port */         \
	X(WG_BAD_TYPE, "wg_bad_type")           /* unknown message type on the WireGuard port */   \
	X(WG_BAD_SIZE, "wg_bad_size")           /* message length wrong for its type */            \
	X(UNKNOWN_INDEX, "unknown_index")       /* receiver index names no live keypair */         \
	X(KEYPAIR_EXPIRED, "keypair_expired")   /* keypair past reject-after time or messages */   \
	X(DECRYPT_FAILED, "decrypt_failed")     /* authentication tag mismatch */                  \
	X(REPLAY, "replay")                     /* counter already seen or too old */              \
	X(INNER_BAD, "inner_bad")               /* decrypted payload is no valid IP packet */      \
	X(ALLOWEDIPS, "allowedips")             /* inner source not in the peer's allowed IPs */   \
	X(NO_ROUTE, "no_route")                 /* no peer or LAN route for the destination */     \
	X(NO_NEIGH, "no_neigh")                 /* next hop unresolved and its queue full */       \
	X(NO_ENDPOINT, "no_endpoint")           /* peer has no known endpoint */                   \
	X(TOO_BIG, "too_big")                   /* packet larger than the tunnel MTU */            \
	X(TTL_EXCEEDED, "ttl_exceeded")         /* hop limit reached zero */                       \
	X(PUNT_RING_FULL, "punt_ring_full")     /* control ring full (control slow or away) */     \
	X(SLOW_RING_FULL, "slow_ring_full")     /* worker-to-main ring full */                     \
	X(STAGED_OVERFLOW, "staged_overflow")   /* too many packets waiting for a handshake */     \
	X(STAGED_EXPIRED, "staged_expired")     /* handshake did not complete in time */           \
	X(TX_FULL, "tx_full")                   /* the port did not take the packet */             \
	X(NO_MBUF, "no_mbuf")                   /* mbuf pool empty */                              \
	X(CRYPTO_ERROR, "crypto_error")         /* crypto backend failed an operation */           \
	X(CTL_BAD_MSG, "ctl_bad_msg")           /* malformed message from the control process */ \
	X(ACL_DENIED, "acl_denied")             /* the packet filter (policy) does not allow it */   \
	X(SNAT_TABLE_FULL, "snat_table_full")   /* no free NAT entry in the worker's slice */      \
	X(SNAT_NO_MAPPING, "snat_no_mapping")   /* LAN packet to a NAT port with no live entry */  \
	X(SNAT_UNSUPPORTED, "snat_unsupported") /* not TCP, UDP or ICMP echo: SNAT cannot map it */ \
	X(SNAT_FRAGMENT, "snat_fragment")       /* fragment of a packet SNAT must translate */     \
	X(SNAT_NO_ADDRESS, "snat_no_address")   /* lan port has no address of the family */        \
	X(STUN_RATELIMIT, "stun_ratelimit")     /* STUN message over the punt rate limit */     \
	X(DISCO_RATELIMIT, "disco_ratelimit")   /* disco message over the punt rate limit */

enum mg_drop_reason {
#define MG_DROP_ENUM(name, str) MG_DROP_##name,
	MG_DROP_REASONS(MG_DROP_ENUM)
#undef MG_DROP_ENUM
		MG_DROP_MAX
};

extern const char *const mg_drop_names[MG_DROP_MAX];

enum mg_msg_type {
	MG_MSG_NONE = 0,
	/* control -> dataplane */
	MG_MSG_HELLO = 1,         /* control attached; sync follows */
	MG_MSG_SYNC_BEGIN,        /* full re-sync: all peers become stale */
	MG_MSG_SYNC_END,          /* peers still stale are removed */
	MG_MSG_IFACE_SET,         /* struct mg_msg_iface */
	MG_MSG_PEER_SET,          /* struct mg_msg_peer: create or update */
	MG_MSG_PEER_DEL,          /* hdr.peer */
	MG_MSG_ALLOWEDIPS,        /* struct mg_msg_allowedips */
	MG_MSG_KEYPAIR_ADD,       /* struct mg_msg_keypair */
	MG_MSG_KEYPAIRS_CLEAR,    /* hdr.peer: forget every keypair of the peer */
	MG_MSG_TX_UDP,            /* send data[len] as UDP from the listen port to hdr.ep */
	MG_MSG_KEEPALIVE,         /* hdr.peer: send a keepalive on the current keypair */
	MG_MSG_STAGED_DROP,       /* hdr.peer: the handshake gave up, drop queued packets */
	MG_MSG_ACL_BEGIN,         /* struct mg_msg_acl_begin: a new packet filter follows */
	MG_MSG_ACL_RULES,         /* struct mg_msg_acl_chunk of struct mg_acl_rule */
	MG_MSG_ACL_TESTS,         /* struct mg_msg_acl_chunk of struct mg_acl_test */
	MG_MSG_ACL_COMMIT,        /* struct mg_msg_acl_begin again: build, test, swap */
	MG_MSG_DERP_RX,           /* a WireGuard data message that came through the DERP
	                           * relay of region hdr.ep.port (hdr.ep is its DERP endpoint):
	                           * decrypt it as if it had arrived on the WAN from hdr.ep */
	/* dataplane -> control */
	MG_MSG_DP_HELLO = 64,     /* dataplane answers HELLO (or started) */
	MG_MSG_RX_UDP,            /* punted UDP payload from hdr.ep (handshake, cookie, STUN, disco) */
	MG_MSG_NEED_HANDSHAKE,    /* hdr.peer has packets queued and no usable keypair */
	MG_MSG_KEYPAIR_CONFIRMED, /* hdr.peer received data on its next keypair */
	MG_MSG_ENDPOINT,          /* hdr.peer authenticated data from a new endpoint hdr.ep */
	MG_MSG_ACL_RESULT,        /* struct mg_msg_acl_result: what became of a filter */
	MG_MSG_DERP_TX,           /* a WireGuard message for hdr.peer, whose endpoint is the
	                           * DERP endpoint hdr.ep: control relays it */
};

struct mg_msg_hdr {
	uint16_t type;
	uint16_t len;  /* bytes of data[] used */
	uint32_t peer; /* peer slot, when the message is about a peer */
	uint64_t seq;  /* sender's sequence number, for logs */
	uint64_t tsc;  /* dataplane TSC when it was sent (dataplane messages) */
	struct mg_sockaddr ep;
	uint16_t port; /* dataplane port index */
	uint8_t pad[MG_MSG_HDR_SIZE - 46];
};

struct mg_msg {
	struct mg_msg_hdr hdr;
	uint8_t data[MG_MSG_MAX_DATA];
};

_Static_assert(sizeof(struct mg_msg_hdr) == MG_MSG_HDR_SIZE, "message header size");
_Static_assert(sizeof(struct mg_msg) == MG_MSG_SIZE, "message size");

struct mg_msg_iface {
	uint16_t listen_port;
	uint16_t mtu;
	uint8_t pad[4];
};

enum {
	MG_PEER_F_ENDPOINT = 1u << 0, /* ep is set: use it as the peer's endpoint */
	MG_PEER_F_NO_REPLAY = 1u << 1, /* benchmark_no_replay: skip the replay window */
};

struct mg_msg_peer {
	uint8_t public_key[32];
	uint32_t flags;
	uint16_t persistent_keepalive;
	uint8_t pad[2];
	struct mg_sockaddr endpoint;
};

struct mg_msg_allowedips {
	uint8_t replace; /* first message of a set: remove the peer's prefixes first */
	uint8_t pad;
	uint16_t count;
	struct mg_prefix prefixes[];
};

#define MG_ALLOWEDIPS_PER_MSG ((MG_MSG_MAX_DATA - sizeof(struct mg_msg_allowedips)) / sizeof(struct mg_prefix))

struct mg_msg_keypair {
	uint32_t local_index;
	uint32_t remote_index;
	uint8_t initiator; /* 1: current at once; 0: next, until the peer confirms it */
	uint8_t pad[7];
	uint64_t created_ns; /* CLOCK_MONOTONIC of the handshake */
	uint8_t send_key[32];
	uint8_t recv_key[32];
};

_Static_assert(sizeof(struct mg_msg_peer) <= MG_MSG_MAX_DATA, "peer message");
_Static_assert(sizeof(struct mg_msg_keypair) == 88, "keypair message");

/* The packet filter travels as BEGIN, RULES and TESTS chunks, COMMIT (the
 * rules are whole only at COMMIT); the dataplane answers ACL_RESULT. */
enum {
	MG_ACL_F_NONE = 1u << 0, /* no policy: accept everything (n_rules, n_tests 0) */
};

struct mg_msg_acl_begin {
	uint64_t generation;
	uint32_t n_rules, n_tests;
	uint32_t flags;
	uint8_t pad[4];
};

struct mg_msg_acl_chunk {
	uint64_t generation;
	uint32_t first; /* index of the first element in the whole list */
	uint32_t count;
	uint8_t data[]; /* count rules or tests */
};

#define MG_ACL_RULES_PER_MSG ((MG_MSG_MAX_DATA - sizeof(struct mg_msg_acl_chunk)) / sizeof(struct mg_acl_rule))
#define MG_ACL_TESTS_PER_MSG ((MG_MSG_MAX_DATA - sizeof(struct mg_msg_acl_chunk)) / sizeof(struct mg_acl_test))

struct mg_msg_acl_result {
	uint64_t generation;
	int32_t status; /* 0 installed, else -errno (-EINVAL: a test failed) */
	uint32_t n_rules, n_tests;
	uint32_t build_us; /* classifier build time */
	char error[512];   /* one line, when status != 0 */
};

_Static_assert(sizeof(struct mg_msg_acl_result) <= MG_MSG_MAX_DATA, "acl result message");

/* Per-peer state the dataplane exports (written by its main lcore). */
struct mg_peer_export {
	uint8_t public_key[32];
	uint32_t in_use;
	uint32_t kp_prev, kp_cur, kp_next; /* local indices, 0 = none */
	uint8_t pad[4];
	uint64_t kp_cur_created_ns;
	struct mg_sockaddr endpoint;
	uint8_t pad2[4];
} __attribute__((aligned(64)));

/* Per-peer counters, one array per lcore slot; only that lcore writes. */
struct mg_peer_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t last_rx_tsc;      /* any authenticated packet, keepalives included */
	uint64_t last_tx_tsc;      /* any packet sent */
	uint64_t last_rx_data_tsc; /* authenticated non-keepalive */
	uint64_t last_tx_data_tsc; /* non-keepalive sent */
};

_Static_assert(sizeof(struct mg_peer_stats) == 64, "peer stats fill a cache line");

struct mg_port_export {
	char name[32];
	uint8_t role;
	uint8_t mac[6];
	uint8_t pad;
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, rx_missed, rx_errors, tx_errors;
} __attribute__((aligned(64)));

/* A worker's load, one per worker slot (the worker's index); only that
 * worker writes it (relaxed stores). Busy: poll iterations that received
 * packets, their whole processing; the rest of the time the worker polled
 * empty ports or slept (dataplane.idle_sleep_us). */
struct mg_worker_export {
	uint32_t lcore;
	uint32_t in_use;     /* 1 for slots 0..n_workers-1 */
	uint64_t busy_tsc;   /* TSC cycles spent on received packets */
	uint64_t crypto_tsc; /* the part of busy_tsc in crypto bursts */
	uint64_t polls;	     /* poll iterations, empty ones included */
	uint64_t rx_packets; /* taken off the ports */
	uint64_t idle_sleeps;
	/* Flow logs (flow_log), else 0. */
	uint64_t flows;		    /* tracked now */
	uint64_t flows_untracked;   /* packets of flows a full table could not take */
	uint64_t flow_records;	    /* handed to control */
	uint64_t flow_ring_full;    /* sweeps a full ring stopped (records waited) */
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct mg_worker_export) == 128, "worker export: two cache lines");

/*
 * Flow logs (flow_log in the config): each worker counts the inner flows it
 * forwards, per peer and direction, and hands control one record per flow
 * and interval through its own ring (single producer, single consumer).
 * Control writes them out; the same flow is logged by the gateway at each
 * end of the tunnel.
 */
enum {
	MG_FLOW_RX = 0, /* from the tunnel: authenticated, passed the filter, forwarded */
	MG_FLOW_TX = 1, /* into the tunnel: encrypted to the peer */
};

struct mg_flow_record {
	uint32_t peer;	/* peer slot */
	uint8_t dir;	/* MG_FLOW_RX or MG_FLOW_TX */
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t proto;	/* IP protocol */
	uint8_t pad;
	uint8_t src[16], dst[16]; /* inner addresses, network order (IPv4: 4 bytes) */
	uint16_t sport, dport;	  /* TCP/UDP/SCTP ports; ICMP: type and code; else 0 */
	uint32_t pad2;
	uint64_t packets, bytes;      /* since the flow's last record; bytes of inner packets */
	uint64_t first_tsc, last_tsc; /* the first and last of those packets (dataplane TSC) */
};

_Static_assert(sizeof(struct mg_flow_record) == 80, "flow record size");

struct mg_shm_hdr {
	uint32_t magic;
	uint32_t abi_version;
	uint64_t generation; /* random, new on every dataplane start */
	uint64_t size;       /* of the whole mapping */
	uint32_t max_peers;  /* power of two */
	uint32_t max_keypairs;
	uint32_t n_stat_slots; /* lcore slots in use */
	uint32_t n_ports;
	uint64_t tsc_hz;
	uint64_t ref_tsc; /* the same instant on both clocks */
	uint64_t ref_mono_ns;
	uint64_t dp_pid;
	volatile uint64_t dp_heartbeat_ns; /* CLOCK_MONOTONIC, main lcore */
	volatile uint64_t cp_heartbeat_ns;
	volatile uint64_t cp_pid;
	char name[32];
	uint64_t off_cp2dp, off_dp2cp;
	uint64_t off_peers, off_stats, off_drops, off_ports;
	uint64_t off_workers; /* [MG_MAX_LCORES] struct mg_worker_export */
	uint64_t off_flows;   /* [n_stat_slots] rings of struct mg_flow_record */
	uint64_t flow_ring_size; /* bytes per ring */
	uint8_t pad[256 - 200];
};

_Static_assert(sizeof(struct mg_shm_hdr) == 256, "shm header");

#endif /* MG_ABI_H */
