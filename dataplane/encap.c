/* SPDX-License-Identifier: MIT */
/*
 * Encapsulation: inner IP packet -> peer (longest-prefix match on the
 * destination), pad to 16, reserve a nonce, encrypt the whole sub-burst in
 * place with one crypto call, then write WireGuard, UDP, IPv4 or IPv6 (by
 * the endpoint's family) and Ethernet headers and send toward the peer's
 * current endpoint; a peer at a DERP endpoint gets the WireGuard message
 * handed to the control process, which relays it.
 */
#include <string.h>
#include <sys/socket.h>

#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_prefetch.h>

#include "dp.h"
#include "flowlog.h"
#include "filter.h"
#include "pkt.h"
#include "pmtu.h"
#include "route.h"
#include "stage.h"
#include "wg_messages.h"

struct encap_item {
	struct rte_mbuf *m;
	struct dp_keypair *kp;
	struct mg_sockaddr ep;
	uint32_t padded;
	uint64_t counter;
};

static uint32_t route_peer(struct dp_worker *w, const struct dp_route_tables *t,
			   struct rte_mbuf *m)
{
	const uint8_t *ip = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t peer;
	int rc = (ip[0] >> 4) == 4 ? dp_route_lookup4(t, dp_rd32be(ip + 16), &peer)
				   : dp_route_lookup6(t, ip + 24, &peer);
	(void)w;
	return rc ? DP_PEER_LOOKUP : peer;
}

/* The keypair to send on, or NULL when the packet must wait for a handshake. */
static struct dp_keypair *send_keypair(struct dp_worker *w, struct dp_peer *peer)
{
	struct dp_keypair *kp =
		dp_keypair_by_slot(w->dp, __atomic_load_n(&peer->kp_cur, __ATOMIC_ACQUIRE));
	if (!kp || !__atomic_load_n(&kp->local_index, __ATOMIC_ACQUIRE))
		return NULL;
	if (w->now_tsc >= kp->expire_tsc)
		return NULL;
	return kp;
}

static void stage(struct dp_worker *w, struct rte_mbuf *m, uint32_t peer)
{
	struct dp_meta *meta = dp_meta(m);
	meta->kind = DP_META_STAGE;
	meta->peer = peer;
	dp_to_main(w, m);
}

/* Admit one packet: peer, size, keypair, endpoint. False if it was
 * consumed (dropped, or staged to wait for a handshake). */
static bool admit(struct dp_worker *w, struct rte_mbuf *m, uint32_t peer_id,
		  struct encap_item *it)
{
	struct dp_ctx *dp = w->dp;

	if (peer_id >= dp->max_peers || !dp->peers[peer_id].in_use) {
		dp_stage_drop(w, m, MG_DROP_NO_ROUTE);
		return false;
	}
	if (rte_pktmbuf_data_len(m) > dp->mtu) {
		/* The main lcore fragments it (IPv4 without DF) or sends the
		 * sender an ICMP too-big error, rate limited. */
		dp_meta(m)->kind = DP_META_TOO_BIG;
		dp_meta(m)->peer = peer_id;
		dp_to_main(w, m);
		return false;
	}
	if (dp->cfg->mss_clamp && rte_pktmbuf_data_len(m))
		dp_pmtu_clamp_mss(rte_pktmbuf_mtod(m, uint8_t *), rte_pktmbuf_data_len(m), dp->mtu);
	struct dp_peer *peer = &dp->peers[peer_id];
	const struct dp_endpoint *ep = &peer->ep[__atomic_load_n(&peer->ep_idx, __ATOMIC_ACQUIRE)];
	struct dp_keypair *kp = send_keypair(w, peer);
	if (!kp) {
		stage(w, m, peer_id);
		return false;
	}
	if (!dp_wan_can_reach(&dp->ports[dp->wan], &ep->addr) && !mg_sockaddr_is_derp(&ep->addr)) {
		dp_stage_drop(w, m, MG_DROP_NO_ENDPOINT);
		return false;
	}
	*it = (struct encap_item){.m = m, .kp = kp, .ep = ep->addr};
	return true;
}

/* Nonces: one atomic add per run of packets on the same keypair, not one
 * per packet (workers share a tunnel's counter; a locked add per packet
 * costs as much as the headers). Counters stay unique across workers. */
static void reserve_nonces(struct encap_item *it, uint16_t n)
{
	for (uint16_t i = 0; i < n;) {
		uint16_t j = i + 1;
		while (j < n && it[j].kp == it[i].kp)
			j++;
		uint64_t base = __atomic_fetch_add(&it[i].kp->send_counter, j - i, __ATOMIC_RELAXED);
		for (uint16_t k = i; k < j; k++)
			it[k].counter = base + (k - i);
		i = j;
	}
}

/* Pad, make room for the headers, write the WireGuard header, describe the
 * encryption. False if the packet was consumed. */
static bool build(struct dp_worker *w, struct encap_item *it, struct dp_aead_op *op)
{
	struct rte_mbuf *m = it->m;
	uint32_t len = rte_pktmbuf_data_len(m), mtu = w->dp->mtu;
	uint32_t outer = dp_outer_len(it->ep.family);

	if (it->counter >= WG_REJECT_AFTER_MESSAGES) {
		stage(w, m, it->kp->peer); /* keypair used up: wait for the next one */
		return false;
	}
	uint32_t padded = RTE_ALIGN_CEIL(len, WG_PADDING_MULTIPLE);
	if (padded > mtu)
		padded = RTE_MAX(len, mtu);
	uint8_t *tail = dp_mbuf_append(m, (uint16_t)(padded - len + WG_AUTHTAG_LEN));
	uint16_t room = (uint16_t)(outer + sizeof(struct wg_message_data));
	uint8_t *head = (uint8_t *)rte_pktmbuf_prepend(m, room);
	if (!tail || !head) {
		dp_stage_drop(w, m, MG_DROP_NO_MBUF);
		return false;
	}
	if (padded > len)
		memset(tail, 0, padded - len);
	uint8_t *plain = head + outer + sizeof(struct wg_message_data);
	struct wg_message_data *h = (struct wg_message_data *)(head + outer);
	h->header = (struct wg_message_header){.type = WG_MSG_DATA};
	h->key_idx = rte_cpu_to_le_32(it->kp->remote_index);
	h->counter = rte_cpu_to_le_64(it->counter);
	it->padded = padded;
	*op = (struct dp_aead_op){.data = plain, .len = padded, .tag = plain + padded,
				  .key = it->kp->send_key, .counter = it->counter};
	return true;
}

static void finish(struct dp_worker *w, struct dp_burst *b, struct encap_item *it)
{
	struct dp_ctx *dp = w->dp;
	const struct dp_port *wan = &dp->ports[dp->wan];
	uint32_t dst;
	uint16_t plen = (uint16_t)(sizeof(struct wg_message_data) + it->padded + WG_AUTHTAG_LEN);
	uint16_t sport = __atomic_load_n(&dp->listen_port, __ATOMIC_RELAXED);
	uint8_t *frame = rte_pktmbuf_mtod(it->m, uint8_t *);
	struct mg_peer_stats *st = mg_shm_stats(&dp->shm, w->idx, it->kp->peer);

	st->tx_packets++;
	st->tx_bytes += plen;
	st->last_tx_tsc = w->now_tsc;
	if (it->padded)
		st->last_tx_data_tsc = w->now_tsc;
	if (unlikely(mg_sockaddr_is_derp(&it->ep))) {
		dp_derp_out(w, it->m, frame + dp_outer_len(AF_INET), plen, it->kp->peer, &it->ep);
		return;
	}
	if (it->ep.family == AF_INET6) {
		/* admit() saw a source address (dp_wan_can_reach); the ciphertext is in
		 * place, so the UDP checksum can cover it. */
		dp_build_outer6(frame, &wan->mac, &wan->mac, dp_wan_src6(wan, it->ep.addr),
				it->ep.addr, sport, it->ep.port, plen);
	} else {
		memcpy(&dst, it->ep.addr, 4);
		dp_build_outer4(frame, &wan->mac, &wan->mac, wan->ifc.addr4[0], dst, sport,
				it->ep.port, plen);
	}
	if (it->ep.family == AF_INET6)
		dp_send_via(w, b, dp->wan, it->m, AF_INET6, dp_wan_next_hop6(wan, &it->ep));
	else
		dp_send_via(w, b, dp->wan, it->m, AF_INET, dp_wan_next_hop(wan, &it->ep));
}

static __rte_noinline void note_flow(struct dp_worker *w, const struct encap_item *it,
				     const struct dp_aead_op *op)
{
	int len = dp_inner_len(op->data, op->len);

	if (len > 0)
		dp_flowlog_note(w->flowlog, MG_FLOW_TX, it->kp->peer, op->data, (uint16_t)len,
				w->now_tsc);
}

void dp_encap_burst(struct dp_worker *w, struct dp_burst *b, struct rte_mbuf **m,
		    const uint32_t *peers, uint16_t n)
{
	struct encap_item it[DP_BURST_MAX];
	struct dp_aead_op ops[DP_BURST_MAX];
	const struct dp_route_tables *t = dp_routes_active(w->dp->routes);
	uint16_t k = 0;

	if (w->dp->wan < 0 || (w->dp->ports[w->dp->wan].ifc.n_addr4 == 0 &&
				w->dp->ports[w->dp->wan].ifc.n_addr6 == 0)) {
		for (uint16_t i = 0; i < n; i++)
			dp_stage_drop(w, m[i], MG_DROP_NO_ROUTE);
		return;
	}
	/* Every packet's peer first, and start fetching the peers, so that with
	 * many peers admit() does not wait for them one at a time. */
	uint32_t peer_of[DP_BURST_MAX];
	for (uint16_t i = 0; i < n; i++) {
		uint32_t peer = peers[i];
		if (peer == DP_PEER_LOOKUP && rte_pktmbuf_data_len(m[i]))
			peer = route_peer(w, t, m[i]);
		peer_of[i] = peer;
		if (peer < w->dp->max_peers)
			rte_prefetch0(&w->dp->peers[peer]);
	}
	/* Then their keypairs (the line admit() reads and the nonce line
	 * reserve_nonces() writes) and counters: these loads depend only on the
	 * peers, so the misses of a burst overlap instead of one per packet. */
	for (uint16_t i = 0; i < n; i++) {
		uint32_t peer = peer_of[i];
		if (peer >= w->dp->max_peers)
			continue;
		struct dp_keypair *kp = dp_keypair_by_slot(
			w->dp, __atomic_load_n(&w->dp->peers[peer].kp_cur, __ATOMIC_RELAXED));
		if (kp) {
			rte_prefetch0(kp);
			__builtin_prefetch(&kp->send_counter, 1, 3);
		}
		rte_prefetch0(mg_shm_stats(&w->dp->shm, w->idx, peer));
	}
	for (uint16_t i = 0; i < n; i++) {
		uint32_t peer = peer_of[i];
		if (admit(w, m[i], peer, &it[k])) {
			if (rte_pktmbuf_data_len(m[i]))
				dp_filter_note_out(w, rte_pktmbuf_mtod(m[i], uint8_t *),
						   rte_pktmbuf_data_len(m[i]));
			k++;
		}
	}
	reserve_nonces(it, k);
	uint16_t ready = 0;
	for (uint16_t i = 0; i < k; i++)
		if (build(w, &it[i], &ops[ready])) {
			/* Into the flow log once it is sure to be sent: the
			 * inner packet, before the padding. */
			if (w->flowlog && it[i].padded)
				note_flow(w, &it[i], &ops[ready]);
			/* No copy onto itself: a 16-byte reload of the item build()
			 * just wrote part of cannot be store-forwarded (~20 cycles). */
			if (ready != i)
				it[ready] = it[i];
			ready++;
		}
	if (!ready)
		return;
	k = ready;
	uint64_t t0 = rte_rdtsc();
	dp_crypto_seal_burst(w->crypto, ops, k);
	w->crypto_tsc += rte_rdtsc() - t0;
	for (uint16_t i = 0; i < k; i++) {
		if (ops[i].status) {
			dp_stage_drop(w, it[i].m, MG_DROP_CRYPTO_ERROR);
			continue;
		}
		finish(w, b, &it[i]);
	}
}
