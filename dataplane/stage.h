/* SPDX-License-Identifier: MIT */
/*
 * Worker stages. Each takes a sub-burst and consumes every mbuf in it:
 * forwarded (queued for TX), handed to the main lcore or control, or dropped
 * and counted under a reason. Must run on a worker lcore.
 */
#ifndef DP_STAGE_H
#define DP_STAGE_H

#include "dp.h"
#include "inner.h"
#include "pkt.h"

#include <rte_prefetch.h>

#define DP_TXQ_MAX 256

struct dp_txq {
	uint16_t n;
	struct rte_mbuf *m[DP_TXQ_MAX];
};

struct dp_burst {
	struct dp_txq tx[MG_MAX_PORTS];
};

/*
 * Start loading a received burst: every mbuf's first line, then (once
 * those arrive, all at the same time) every frame's first line, which holds
 * the headers classification reads. Classifying packet by packet would wait
 * for each packet's two misses in turn.
 */
static inline void dp_prefetch_burst(struct rte_mbuf **m, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(m[i]);
	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(rte_pktmbuf_mtod(m[i], const uint8_t *));
}

/* WAN side: classify, punt handshakes, decrypt data (decap.c). */
void dp_wan_input(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf **m,
		  uint16_t n);
/* WireGuard data messages that came through a DERP relay (DP_META_DERP_IN). */
void dp_derp_input(struct dp_worker *w, struct dp_burst *b, struct rte_mbuf **m, uint16_t n);
/* LAN side: classify, hand plaintext to encap (lan.c). */
void dp_lan_input(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf **m,
		  uint16_t n);
/* Decrypted inner packets out of the LAN port (lan.c). Data starts at the IP header. */
void dp_lan_output(struct dp_worker *w, struct dp_burst *b, struct rte_mbuf **m, uint16_t n);
/* Encrypt inner IP packets (data at the IP header) to peers; peers[i] ==
 * DP_PEER_LOOKUP means route by destination (encap.c). */
#define DP_PEER_LOOKUP UINT32_MAX
void dp_encap_burst(struct dp_worker *w, struct dp_burst *b, struct rte_mbuf **m,
		    const uint32_t *peers, uint16_t n);

/* worker.c */
void dp_tx_add(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf *m);
void dp_tx_flush(struct dp_worker *w, struct dp_burst *b);
void dp_to_main(struct dp_worker *w, struct rte_mbuf *m);
void dp_event(struct dp_worker *w, const struct dp_event *ev);
void dp_punt(struct dp_worker *w, struct rte_mbuf *m, const uint8_t *payload, uint16_t len,
	     const struct mg_sockaddr *src, int port);
void dp_stage_drop(struct dp_worker *w, struct rte_mbuf *m, enum mg_drop_reason r);
/* A sealed WireGuard message for a peer at a DERP endpoint, to control. */
void dp_derp_out(struct dp_worker *w, struct rte_mbuf *m, const uint8_t *wg, uint16_t len,
		 uint32_t peer, const struct mg_sockaddr *ep);

/* Resolve the next hop's MAC for a frame whose Ethernet header is in place;
 * on a miss the frame goes to the main lcore, which resolves and sends it. */
void dp_send_via(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf *m,
		 int family, const uint8_t *nh);

/* Inner-IP helpers: dp_inner_len is in inner.h. */
/* Decrement TTL / hop limit of a routed packet; false if it must die. */
static inline bool dp_inner_dec_ttl(uint8_t *p)
{
	if ((p[0] >> 4) == 4) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)p;
		if (ip->time_to_live <= 1)
			return false;
		dp_ipv4_dec_ttl(ip);
		return true;
	}
	if (p[7] <= 1)
		return false;
	p[7]--;
	return true;
}

#endif /* DP_STAGE_H */
