/* SPDX-License-Identifier: MIT */
/*
 * WAN input: classify each RX burst once (ARP/ND to the main lcore,
 * handshake and STUN messages to control, transport data to decryption),
 * then decrypt the data sub-burst in one crypto call.
 *
 * Order matters: nothing in a data message is trusted before its tag
 * verifies. Only then are the replay window, the endpoint and the inner
 * source address (cryptokey routing) looked at.
 */
#include <string.h>
#include <sys/socket.h>

#include <rte_ethdev.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "dp.h"
#include "flowlog.h"
#include "filter.h"
#include "pkt.h"
#include "route.h"
#include "stage.h"
#include "disco.h"
#include "stun.h"
#include "wg_messages.h"

struct decap_item {
	struct rte_mbuf *m;
	struct dp_keypair *kp;
	struct mg_sockaddr src;
	uint32_t offset; /* of the WireGuard header in the frame */
	/* the inner source's route lookup (lookup_sources) */
	int src_rc;
	uint32_t src_peer;
};

static bool is_our_addr4(const struct dp_port *p, uint32_t ip_be)
{
	for (int i = 0; i < p->ifc.n_addr4; i++)
		if (p->ifc.addr4[i] == ip_be)
			return true;
	return false;
}

static bool wg_size_ok(uint8_t type, uint16_t len)
{
	switch (type) {
	case WG_MSG_HANDSHAKE_INITIATION:
		return len == sizeof(struct wg_message_initiation);
	case WG_MSG_HANDSHAKE_RESPONSE:
		return len == sizeof(struct wg_message_response);
	case WG_MSG_HANDSHAKE_COOKIE:
		return len == sizeof(struct wg_message_cookie);
	case WG_MSG_DATA:
		return len >= WG_MIN_DATA_LEN;
	}
	return false;
}

/* Look up the keypair a data message names; NULL (and counted) if none. */
static struct dp_keypair *data_keypair(struct dp_worker *w, const struct wg_message_data *h,
				       enum mg_drop_reason *why)
{
	struct dp_ctx *dp = w->dp;
	uint32_t idx = rte_le_to_cpu_32(h->key_idx);
	struct dp_keypair *kp = &dp->keypairs[idx & dp->kp_mask];

	if (idx == 0 || __atomic_load_n(&kp->local_index, __ATOMIC_ACQUIRE) != idx) {
		*why = MG_DROP_UNKNOWN_INDEX;
		return NULL;
	}
	if (w->now_tsc >= kp->expire_tsc ||
	    rte_le_to_cpu_64(h->counter) >= WG_REJECT_AFTER_MESSAGES) {
		*why = MG_DROP_KEYPAIR_EXPIRED;
		return NULL;
	}
	return kp;
}

static bool is_our_addr6(const struct dp_port *p, const uint8_t *ip)
{
	for (int i = 0; i < p->ifc.n_addr6; i++)
		if (!memcmp(p->ifc.addr6[i], ip, 16))
			return true;
	return !memcmp(p->ifc.ll6, ip, 16);
}

/* The UDP header of an outer IPv4 packet to one of our addresses; *room is
 * what the IPv4 total length leaves for the datagram. False with *why set if
 * there is none. */
static inline bool udp4_find(const struct dp_port *p, uint8_t *frame, uint32_t len,
			     struct rte_ipv4_hdr **ipp, struct rte_udp_hdr **udp, uint32_t *room,
			     enum mg_drop_reason *why)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(frame + sizeof(struct rte_ether_hdr));

	if (len < DP_OUTER4_LEN) {
		*why = MG_DROP_RX_RUNT;
		return false;
	}
	uint32_t ihl = (uint32_t)(ip->version_ihl & 0xf) * 4;
	uint32_t tot = rte_be_to_cpu_16(ip->total_length);
	if ((ip->version_ihl >> 4) != 4 || ihl < 20 || tot < ihl + 8 ||
	    tot > len - sizeof(struct rte_ether_hdr)) {
		*why = MG_DROP_BAD_IP;
		return false;
	}
	if (!is_our_addr4(p, ip->dst_addr)) {
		*why = MG_DROP_NOT_FOR_US;
		return false;
	}
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
		*why = MG_DROP_IP_FRAGMENT;
		return false;
	}
	if (ip->next_proto_id != IPPROTO_UDP) {
		*why = MG_DROP_NOT_FOR_US;
		return false;
	}
	*ipp = ip;
	*udp = (struct rte_udp_hdr *)((uint8_t *)ip + ihl);
	*room = tot - ihl;
	return true;
}

#define EXT6_MAX 4 /* extension headers walked before giving up */

/* The same for IPv6, past the common extension headers (hop-by-hop first,
 * destination options, a routing header with no segments left). Off the
 * IPv4 path on purpose: IPv4 frames never pay for it. */
static bool udp6_find(const struct dp_port *p, uint8_t *frame, uint32_t len,
		      struct rte_udp_hdr **udp, uint32_t *room, enum mg_drop_reason *why)
{
	const uint32_t l3 = sizeof(struct rte_ether_hdr);
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(frame + l3);

	if (len < DP_OUTER6_LEN) {
		*why = MG_DROP_RX_RUNT;
		return false;
	}
	uint32_t end = l3 + (uint32_t)sizeof(*ip) + rte_be_to_cpu_16(ip->payload_len);
	if ((rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6 || end > len) {
		*why = MG_DROP_BAD_IP;
		return false;
	}
	if (!is_our_addr6(p, ip->dst_addr)) {
		*why = MG_DROP_NOT_FOR_US;
		return false;
	}
	uint32_t off = l3 + (uint32_t)sizeof(*ip);
	uint8_t next = ip->proto;
	for (int i = 0; next != IPPROTO_UDP; i++) {
		if (next == IPPROTO_FRAGMENT) {
			*why = MG_DROP_IP_FRAGMENT;
			return false;
		}
		bool walkable = next == IPPROTO_HOPOPTS || next == IPPROTO_DSTOPTS ||
				next == IPPROTO_ROUTING;
		if (!walkable || i == EXT6_MAX) {
			*why = MG_DROP_NOT_FOR_US;
			return false;
		}
		if (off + 8 > end || (next == IPPROTO_HOPOPTS && i > 0)) {
			*why = MG_DROP_BAD_IP;
			return false;
		}
		/* Segments left in a routing header: we would be a transit hop. */
		if (next == IPPROTO_ROUTING && frame[off + 3]) {
			*why = MG_DROP_NOT_FOR_US;
			return false;
		}
		next = frame[off];
		off += 8 + 8 * (uint32_t)frame[off + 1];
	}
	if (off + sizeof(struct rte_udp_hdr) > end) {
		*why = MG_DROP_BAD_IP;
		return false;
	}
	*udp = (struct rte_udp_hdr *)(frame + off);
	/* A zero checksum is not allowed over IPv6 (RFC 8200 8.1). A nonzero
	 * one is not verified: the AEAD tag (data) and MAC1 (handshakes)
	 * authenticate the payload, as on the IPv4 path. */
	if ((*udp)->dgram_cksum == 0) {
		*why = MG_DROP_BAD_IP;
		return false;
	}
	*room = end - off;
	return true;
}

/* The datagram's source: IPv4 if ip is set, else the IPv6 header's. */
static inline void udp_source(struct mg_sockaddr *src, const struct rte_ipv4_hdr *ip,
			      const uint8_t *frame, const struct rte_udp_hdr *udp)
{
	if (ip)
		dp_sockaddr_v4(src, ip->src_addr, udp->src_port);
	else
		dp_sockaddr_v6(src,
			       frame + sizeof(struct rte_ether_hdr) +
				   offsetof(struct rte_ipv6_hdr, src_addr),
			       udp->src_port);
}

/*
 * STUN and disco punts, per worker, each with its own bucket: control sends
 * a STUN Binding request per configured server per interval (and one
 * retransmission), so the answers are a handful a minute; disco pings and
 * pongs go to a relayed peer's few endpoints every few seconds. The limit
 * keeps a flood of such datagrams from filling the ring that handshakes
 * share.
 */
#define NAT_PUNT_PER_SEC 100
#define NAT_PUNT_BURST	 32

static bool punt_allowed(struct dp_worker *w, struct dp_punt_bucket *b)
{
	uint64_t hz = rte_get_tsc_hz();
	uint64_t dt = w->now_tsc - b->last_tsc;
	uint64_t gain = dt >= hz ? NAT_PUNT_BURST : dt * NAT_PUNT_PER_SEC / hz;

	if (gain) {
		b->tokens = RTE_MIN(b->tokens + gain, (uint64_t)NAT_PUNT_BURST);
		b->last_tsc = w->now_tsc;
	}
	if (!b->tokens)
		return false;
	b->tokens--;
	return true;
}

/* Not a WireGuard message: STUN (the answers to control's Binding requests)
 * and disco messages (control checks them) are punted, anything else is
 * counted. Off the fast path. */
static __rte_cold void not_wireguard(struct dp_worker *w, int port, struct rte_mbuf *m,
				     const struct rte_ipv4_hdr *ip, const struct rte_udp_hdr *udp,
				     const uint8_t *payload, uint16_t plen, struct decap_item *it)
{
	bool stun = mg_stun_is(payload, plen);

	if ((!stun && !mg_disco_is(payload, plen)) || plen > MG_MSG_MAX_DATA) {
		dp_stage_drop(w, m, MG_DROP_WG_BAD_TYPE);
		return;
	}
	if (!punt_allowed(w, stun ? &w->stun_rl : &w->disco_rl)) {
		dp_stage_drop(w, m, stun ? MG_DROP_STUN_RATELIMIT : MG_DROP_DISCO_RATELIMIT);
		return;
	}
	udp_source(&it->src, ip, rte_pktmbuf_mtod(m, const uint8_t *), udp);
	dp_punt(w, m, payload, plen, &it->src, port);
}

/* Classify one frame. Returns true if it became a decap item. */
static bool classify_wan(struct dp_worker *w, int port, struct rte_mbuf *m, struct decap_item *it)
{
	const struct dp_port *p = &w->dp->ports[port];
	uint32_t len = rte_pktmbuf_data_len(m);
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ipv4_hdr *ip = NULL;
	struct rte_udp_hdr *udp;
	uint32_t room;
	enum mg_drop_reason why;

	if (len < sizeof(struct rte_ether_hdr))
		goto drop_runt;
	uint16_t et = rte_be_to_cpu_16(((struct rte_ether_hdr *)frame)->ether_type);
	if (et == RTE_ETHER_TYPE_IPV4) {
		if (!udp4_find(p, frame, len, &ip, &udp, &room, &why))
			goto drop;
	} else if (et == RTE_ETHER_TYPE_IPV6 && !dp_neigh_is_neigh_packet(m)) {
		if (!udp6_find(p, frame, len, &udp, &room, &why))
			goto drop;
	} else if (et == RTE_ETHER_TYPE_ARP || et == RTE_ETHER_TYPE_IPV6) {
		dp_meta(m)->kind = DP_META_SLOW;
		dp_meta(m)->port = (uint16_t)port;
		dp_to_main(w, m);
		return false;
	} else {
		dp_stage_drop(w, m, MG_DROP_NOT_IP);
		return false;
	}
	if (rte_be_to_cpu_16(udp->dst_port) !=
	    __atomic_load_n(&w->dp->listen_port, __ATOMIC_RELAXED)) {
		why = MG_DROP_NOT_FOR_US;
		goto drop;
	}
	uint32_t ulen = rte_be_to_cpu_16(udp->dgram_len);
	if (ulen < 8 + 4 || ulen > room) {
		why = MG_DROP_WG_BAD_SIZE;
		goto drop;
	}
	uint8_t *payload = (uint8_t *)(udp + 1);
	uint16_t plen = (uint16_t)(ulen - 8);
	uint8_t type = payload[0];
	if (type < WG_MSG_HANDSHAKE_INITIATION || type > WG_MSG_DATA || payload[1] || payload[2] ||
	    payload[3]) {
		not_wireguard(w, port, m, ip, udp, payload, plen, it);
		return false;
	}
	if (!wg_size_ok(type, plen)) {
		why = MG_DROP_WG_BAD_SIZE;
		goto drop;
	}
	udp_source(&it->src, ip, frame, udp);
	if (type != WG_MSG_DATA) {
		dp_punt(w, m, payload, plen, &it->src, port);
		return false;
	}
	it->kp = data_keypair(w, (const struct wg_message_data *)payload, &why);
	if (!it->kp)
		goto drop;
	/* Trim link padding so the ciphertext length is the UDP length. */
	dp_mbuf_trim(m, (uint16_t)(len - (uint32_t)(payload - frame) - plen));
	it->m = m;
	it->offset = (uint32_t)(payload - frame);
	return true;
drop_runt:
	why = MG_DROP_RX_RUNT;
drop:
	dp_stage_drop(w, m, why);
	return false;
}

static void note_peer(struct dp_worker *w, struct decap_item *it, uint32_t plain_len)
{
	struct dp_ctx *dp = w->dp;
	struct dp_keypair *kp = it->kp;
	struct dp_peer *peer = &dp->peers[kp->peer];
	struct mg_peer_stats *st = mg_shm_stats(&dp->shm, w->idx, kp->peer);
	uint32_t slot1 = (uint32_t)(kp - dp->keypairs) + 1;

	st->rx_packets++;
	st->rx_bytes += rte_pktmbuf_data_len(it->m) - it->offset;
	st->last_rx_tsc = w->now_tsc;
	if (plain_len)
		st->last_rx_data_tsc = w->now_tsc;
	if (__atomic_load_n(&peer->kp_next, __ATOMIC_RELAXED) == slot1) {
		struct dp_event ev = {.type = DP_EV_CONFIRM, .peer = kp->peer,
				      .local_index = kp->local_index};
		dp_event(w, &ev);
	}
	const struct dp_endpoint *ep = &peer->ep[__atomic_load_n(&peer->ep_idx, __ATOMIC_ACQUIRE)];
	if (!dp_sockaddr_eq(&ep->addr, &it->src)) {
		struct dp_event ev = {.type = DP_EV_ROAM, .peer = kp->peer, .ep = it->src};
		dp_event(w, &ev);
	}
}

/* After authentication and the replay check: bookkeeping, roaming, keepalives, and the
 * cryptokey-routing check of the inner source. Returns true to forward. */
static bool accept_data(struct dp_worker *w, struct decap_item *it, const struct dp_route_tables *t,
			uint32_t *fwd_peer)
{
	struct rte_mbuf *m = it->m;
	struct dp_keypair *kp = it->kp;
	const struct wg_message_data *h = rte_pktmbuf_mtod_offset(m, void *, it->offset);
	uint32_t clen = rte_pktmbuf_data_len(m) - it->offset - (uint32_t)WG_DATA_OVERHEAD;
	uint32_t peer_id = kp->peer;

	note_peer(w, it, clen);
	if (clen == 0) { /* keepalive */
		rte_pktmbuf_free(m);
		return false;
	}
	uint8_t *inner = (uint8_t *)h + sizeof(*h);
	int ilen = dp_inner_len(inner, clen);
	if (ilen < 0) {
		dp_stage_drop(w, m, MG_DROP_INNER_BAD);
		return false;
	}
	int rc;
	if (it->src_rc || it->src_peer != peer_id) {
		dp_stage_drop(w, m, MG_DROP_ALLOWEDIPS);
		return false;
	}
	rte_pktmbuf_adj(m, (uint16_t)(it->offset + sizeof(*h)));
	dp_mbuf_trim(m, (uint16_t)(rte_pktmbuf_data_len(m) - ilen));
	rc = (inner[0] >> 4) == 4 ? dp_route_lookup4(t, dp_rd32be(inner + 16), fwd_peer)
				  : dp_route_lookup6(t, inner + 24, fwd_peer);
	if (rc || *fwd_peer == peer_id) {
		*fwd_peer = DP_PEER_LOOKUP; /* not another peer's: the LAN side decides */
	} else if (!dp_inner_dec_ttl(inner)) { /* hub hairpin: routed, so one hop */
		dp_stage_drop(w, m, MG_DROP_TTL_EXCEEDED);
		return false;
	}
	return true;
}

/* With many peers the keypair a packet names is a cache miss; start
 * fetching every keypair of the burst before classifying any packet. The
 * guess is cheap and harmless when wrong (a prefetch is only a hint). */
static void prefetch_keypairs(struct dp_worker *w, struct rte_mbuf **m, uint16_t n)
{
	const size_t ki = offsetof(struct wg_message_data, key_idx);
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *f = rte_pktmbuf_mtod(m[i], const uint8_t *);
		uint16_t et;
		if (rte_pktmbuf_data_len(m[i]) < DP_OUTER4_LEN + ki + 4)
			continue;
		memcpy(&et, f + offsetof(struct rte_ether_hdr, ether_type), sizeof(et));
		size_t off =
			(et == RTE_BE16(RTE_ETHER_TYPE_IPV6) ? DP_OUTER6_LEN : DP_OUTER4_LEN) + ki;
		if (rte_pktmbuf_data_len(m[i]) < off + 4)
			continue;
		uint32_t idx;
		memcpy(&idx, f + off, sizeof(idx));
		idx = rte_le_to_cpu_32(idx);
		rte_prefetch0(&w->dp->keypairs[idx & w->dp->kp_mask]);
	}
}

/* Classified, the burst's keypairs are in cache and name their peers: start
 * fetching what the replay check and accept_data touch for each packet (the
 * peer, its counters, the replay slot of the packet's counter), so that the
 * misses overlap each other and the decryption rather than come one by one.
 * Reading kp->peer in prefetch_keypairs instead would wait for each keypair
 * in turn. */
static void prefetch_peers(struct dp_worker *w, const struct decap_item *it, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++) {
		const struct dp_keypair *kp = it[i].kp;
		const struct wg_message_data *h =
			rte_pktmbuf_mtod_offset(it[i].m, const struct wg_message_data *, it[i].offset);
		rte_prefetch0(&w->dp->peers[kp->peer]);
		rte_prefetch0(mg_shm_stats(&w->dp->shm, w->idx, kp->peer));
		rte_prefetch0(wg_replay_mt_slot_of(&kp->replay, rte_le_to_cpu_64(h->counter)));
	}
}

/* The cryptokey-routing lookups of the burst's inner sources, in a loop of
 * their own: with many peers each is a miss in the route table, and
 * independent iterations let those misses overlap. Only the version and the
 * source address are read, within the plaintext; accept_data validates the
 * rest before it uses the result. */
static void lookup_sources(struct decap_item *it, const struct dp_aead_op *ops, const bool *fresh,
			   const struct dp_route_tables *t, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *inner = ops[i].data;
		it[i].src_rc = -ENOENT;
		if (ops[i].status || !fresh[i])
			continue;
		if (ops[i].len >= sizeof(struct rte_ipv4_hdr) && (inner[0] >> 4) == 4)
			it[i].src_rc = dp_route_lookup4(t, dp_rd32be(inner + 12), &it[i].src_peer);
		else if (ops[i].len >= sizeof(struct rte_ipv6_hdr) && (inner[0] >> 4) == 6)
			it[i].src_rc = dp_route_lookup6(t, inner + 8, &it[i].src_peer);
	}
}

/* The replay window, for authentic packets only ("decrypt, then validate
 * the counter": an unauthenticated counter must not move the window), one
 * compare-and-swap per block of counters per keypair run, not per packet.
 * A benchmark_no_replay peer has no window: every authentic packet is
 * fresh, so a capture of its traffic can be replayed in a loop. */
static void replay_burst(struct dp_worker *w, const struct decap_item *it,
			 const struct dp_aead_op *ops, bool *fresh, uint16_t n)
{
	uint64_t ctr[DP_BURST_MAX];
	uint16_t idx[DP_BURST_MAX];

	for (uint16_t i = 0; i < n;) {
		struct dp_keypair *kp = it[i].kp;
		bool no_replay = __atomic_load_n(&w->dp->peers[kp->peer].no_replay, __ATOMIC_RELAXED);
		uint16_t k = 0, j;
		for (j = i; j < n && it[j].kp == kp; j++) {
			fresh[j] = no_replay && ops[j].status == 0;
			if (ops[j].status == 0 && !no_replay) {
				idx[k] = j;
				ctr[k++] = ops[j].counter;
			}
		}
		bool ok[DP_BURST_MAX];
		wg_replay_mt_check_burst(&kp->replay, ctr, ok, k);
		for (uint16_t x = 0; x < k; x++)
			fresh[idx[x]] = ok[x];
		i = j;
	}
}

/* What the filter let through, into the flow log: received from the peer
 * decap_items put in dp_meta. */
static __rte_noinline void note_flows(struct dp_worker *w, struct rte_mbuf **m, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++)
		dp_flowlog_note(w->flowlog, MG_FLOW_RX, dp_meta(m[i])->peer,
				rte_pktmbuf_mtod(m[i], const uint8_t *), rte_pktmbuf_data_len(m[i]),
				w->now_tsc);
}

/* Decrypt, check and forward classified data messages. */
static inline void decap_items(struct dp_worker *w, struct dp_burst *b, struct decap_item *it,
			       uint16_t n_it)
{
	struct dp_aead_op ops[DP_BURST_MAX];
	struct rte_mbuf *lan[DP_BURST_MAX], *hair[DP_BURST_MAX];
	uint32_t hair_peer[DP_BURST_MAX];
	uint16_t n_lan = 0, n_hair = 0;

	prefetch_peers(w, it, n_it);
	for (uint16_t i = 0; i < n_it; i++) {
		struct wg_message_data *h =
			rte_pktmbuf_mtod_offset(it[i].m, struct wg_message_data *, it[i].offset);
		uint32_t clen = rte_pktmbuf_data_len(it[i].m) - it[i].offset - (uint32_t)WG_DATA_OVERHEAD;
		ops[i] = (struct dp_aead_op){
			.data = h->encrypted_data,
			.len = clen,
			.tag = h->encrypted_data + clen,
			.key = it[i].kp->recv_key,
			.counter = rte_le_to_cpu_64(h->counter),
		};
	}
	uint64_t t0 = rte_rdtsc();
	dp_crypto_open_burst(w->crypto, ops, n_it);
	w->crypto_tsc += rte_rdtsc() - t0;

	bool fresh[DP_BURST_MAX];
	replay_burst(w, it, ops, fresh, n_it);

	const struct dp_route_tables *t = dp_routes_active(w->dp->routes);
	lookup_sources(it, ops, fresh, t, n_it);
	for (uint16_t i = 0; i < n_it; i++) {
		uint32_t fwd;
		if (ops[i].status) {
			dp_stage_drop(w, it[i].m, MG_DROP_DECRYPT_FAILED);
			continue;
		}
		if (!fresh[i]) {
			dp_stage_drop(w, it[i].m, MG_DROP_REPLAY);
			continue;
		}
		if (!accept_data(w, &it[i], t, &fwd))
			continue;
		if (w->flowlog) /* the sender, for the flow log after the filter */
			dp_meta(it[i].m)->peer = it[i].kp->peer;
		if (fwd == DP_PEER_LOOKUP) {
			lan[n_lan++] = it[i].m;
		} else {
			hair_peer[n_hair] = fwd;
			hair[n_hair++] = it[i].m;
		}
	}
	/* The packet filter, on what this node receives, before forwarding. */
	n_lan = dp_filter_burst(w, lan, NULL, n_lan);
	n_hair = dp_filter_burst(w, hair, hair_peer, n_hair);
	if (w->flowlog) {
		note_flows(w, lan, n_lan);
		note_flows(w, hair, n_hair);
	}
	if (n_lan)
		dp_lan_output(w, b, lan, n_lan);
	if (n_hair)
		dp_encap_burst(w, b, hair, hair_peer, n_hair);
}

void dp_wan_input(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf **m,
		  uint16_t n)
{
	struct decap_item it[DP_BURST_MAX];
	uint16_t n_it = 0;

	dp_prefetch_burst(m, n);
	prefetch_keypairs(w, m, n);
	for (uint16_t i = 0; i < n; i++) {
		if (m[i]->nb_segs > 1 && rte_pktmbuf_linearize(m[i]) < 0) {
			dp_stage_drop(w, m[i], MG_DROP_RX_RUNT);
			continue;
		}
		if (classify_wan(w, port, m[i], &it[n_it]))
			n_it++;
	}
	if (n_it)
		decap_items(w, b, it, n_it);
}

/*
 * Data messages the control process received through a DERP relay: each
 * mbuf holds the WireGuard message alone, its DERP region in dp_meta's peer
 * field. They go through the same decryption, replay window and checks as
 * the WAN's, with the region's DERP endpoint as their source, so a peer
 * that talks to us through the relay roams to it like to any endpoint.
 * Handshake messages never come here: control handles those itself.
 */
void dp_derp_input(struct dp_worker *w, struct dp_burst *b, struct rte_mbuf **m, uint16_t n)
{
	struct decap_item it[DP_BURST_MAX];
	uint16_t n_it = 0;
	enum mg_drop_reason why;

	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *payload = rte_pktmbuf_mtod(m[i], const uint8_t *);
		uint32_t plen = rte_pktmbuf_data_len(m[i]);

		if (m[i]->nb_segs > 1 || plen < 4 || payload[0] != WG_MSG_DATA || payload[1] ||
		    payload[2] || payload[3]) {
			dp_stage_drop(w, m[i], MG_DROP_WG_BAD_TYPE);
			continue;
		}
		if (plen > UINT16_MAX || !wg_size_ok(WG_MSG_DATA, (uint16_t)plen)) {
			dp_stage_drop(w, m[i], MG_DROP_WG_BAD_SIZE);
			continue;
		}
		it[n_it].kp = data_keypair(w, (const struct wg_message_data *)payload, &why);
		if (!it[n_it].kp) {
			dp_stage_drop(w, m[i], why);
			continue;
		}
		it[n_it].src = mg_sockaddr_derp((uint16_t)dp_meta(m[i])->peer);
		it[n_it].m = m[i];
		it[n_it].offset = 0;
		n_it++;
	}
	if (n_it)
		decap_items(w, b, it, n_it);
}
