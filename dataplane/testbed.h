/* SPDX-License-Identifier: MIT */
/*
 * A dataplane on in-memory ports for benchmarks and tests: a dp_ctx set up
 * from a generated config, whose wan and lan ports are net_ring devices
 * with one RX and one TX ring per worker queue, peers programmed through
 * the same control messages the control process sends (each with one /32
 * allowed IP, an endpoint off-link behind the wan gateway, and a current
 * keypair), the next hops resolved, and frames to feed it. Needs the EAL;
 * runs no lcore of its own: the caller polls the workers (dp_worker_poll).
 */
#ifndef DP_TESTBED_H
#define DP_TESTBED_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_ring.h>

#include "crypto.h"
#include "dp.h"

#define DP_TB_MAX_QUEUES 2
#define DP_TB_RING_SIZE	 8192

enum { DP_TB_WAN, DP_TB_LAN };
enum { DP_TB_RX, DP_TB_TX };

struct dp_testbed {
	struct mg_config cfg;
	struct dp_ctx dp;
	/* [port DP_TB_WAN/LAN][queue][DP_TB_RX/TX]: frames put on RX reach the
	 * worker of that queue; what it sends waits on TX. */
	struct rte_ring *ring[2][DP_TB_MAX_QUEUES][2];
	uint32_t npeers, nworkers;
	uint32_t *lidx; /* each peer's keypair, as our local index */
	/* Every peer's session keys: gateway to peer, peer to gateway. */
	uint8_t key_g2p[32], key_p2g[32];
	int serial;
	char dev[2][RTE_ETH_NAME_MAX_LEN];
};

/*
 * Starts the EAL on lcores 0 and 1 with mem_mb of memory, no PCI, no
 * shared config or telemetry, a file prefix of its own (tag + pid): on
 * hugepages if huge and enough are free under a mounted hugetlbfs, else on
 * 4 KiB pages (--no-huge). *on_huge says which. 0, or -1 (on stderr).
 */
int dp_tb_eal_init(const char *argv0, const char *tag, unsigned mem_mb, bool huge, bool *on_huge);

/* The workers' RX burst (dataplane.burst) of testbeds set up after it changes. */
extern unsigned dp_tb_burst;

/* 0, or a negative errno (a message on stderr). snat: dataplane.snat. */
int dp_tb_setup(struct dp_testbed *tb, uint32_t npeers, uint32_t nworkers, bool snat);
void dp_tb_teardown(struct dp_testbed *tb);

/*
 * Every peer's keypair replaced, as the control process rekeys (each peer
 * moves to its next slot, with new testbed keys): a
 * keypair is refused REJECT_AFTER_TIME (180 s) after it was made, so a
 * run longer than that must rekey. Call with the workers offline.
 * 0, or -EINVAL if a keypair did not become current.
 */
int dp_tb_rekey(struct dp_testbed *tb);

/* Addresses, host order: peer i's tunnel address (its /32 allowed IP,
 * 10.64.0.0/10) and its endpoint (100.64.0.0/10, port 51820); the LAN host
 * that talks to the peers (10.88.0.1). */
uint32_t dp_tb_peer_ip(uint32_t i);
uint32_t dp_tb_peer_ep(uint32_t i);
#define DP_TB_LAN_HOST 0x0a580001u

/* A LAN frame from the LAN host to peer's tunnel address: an IPv4/UDP
 * packet of size bytes (size >= 28). NULL if the pool is empty. */
struct rte_mbuf *dp_tb_lan_frame(struct dp_testbed *tb, uint32_t peer, uint32_t size);

/*
 * A WAN frame from peer: a transport data message with this counter whose
 * plaintext is an IPv4/UDP packet of size bytes to the LAN host, padded.
 * Not yet encrypted: *op describes the sealing (key_p2g) the caller runs,
 * in one burst for many frames. NULL if the pool is empty.
 */
struct rte_mbuf *dp_tb_wan_frame(struct dp_testbed *tb, uint32_t peer, uint64_t counter,
				 uint32_t size, struct dp_aead_op *op);

/* Frees what queue q's worker sent on both ports; returns how many. */
uint64_t dp_tb_drain(struct dp_testbed *tb, unsigned q);

#endif /* DP_TESTBED_H */
