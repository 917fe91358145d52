/* SPDX-License-Identifier: MIT */
/*
 * The plaintext side: frames from the LAN port become inner packets for
 * encryption; decrypted packets leave through the LAN port to on-link hosts
 * or static-route next hops. With SNAT on (snat.h), packets to the LAN
 * leave with the lan port's address as source, and the LAN's replies to it
 * are translated back here and go into the tunnel.
 */
#include <string.h>
#include <sys/socket.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_prefetch.h>

#include "dp.h"
#include "filter.h"
#include "pkt.h"
#include "snat.h"
#include "stage.h"

static bool prefix_match4(uint32_t a_be, uint32_t b_be, uint8_t plen)
{
	if (plen == 0)
		return true;
	uint32_t mask = plen >= 32 ? 0xffffffffu : ~(0xffffffffu >> plen);
	return ((rte_be_to_cpu_32(a_be) ^ rte_be_to_cpu_32(b_be)) & mask) == 0;
}

static bool prefix_match6(const uint8_t *a, const uint8_t *b, uint8_t plen)
{
	unsigned bytes = plen / 8, bits = plen % 8;
	if (memcmp(a, b, bytes))
		return false;
	return bits == 0 || ((a[bytes] ^ b[bytes]) & (0xff << (8 - bits))) == 0;
}

static bool is_local(const struct dp_port *p, const uint8_t *ip)
{
	if ((ip[0] >> 4) == 4) {
		uint32_t dst;
		memcpy(&dst, ip + 16, 4);
		for (int i = 0; i < p->ifc.n_addr4; i++)
			if (p->ifc.addr4[i] == dst)
				return true;
		return false;
	}
	for (int i = 0; i < p->ifc.n_addr6; i++)
		if (!memcmp(p->ifc.addr6[i], ip + 24, 16))
			return true;
	return !memcmp(p->ifc.ll6, ip + 24, 16);
}

/* Next hop on the LAN for an inner destination; false if unroutable. */
static bool lan_next_hop(const struct dp_ctx *dp, const uint8_t *ip, int *family, uint8_t nh[16])
{
	const struct dp_port *p = &dp->ports[dp->lan];
	bool v4 = (ip[0] >> 4) == 4;
	const uint8_t *dst = v4 ? ip + 16 : ip + 24;

	*family = v4 ? AF_INET : AF_INET6;
	for (int i = 0; v4 && i < p->ifc.n_addr4; i++) {
		uint32_t d;
		memcpy(&d, dst, 4);
		if (prefix_match4(d, p->ifc.addr4[i], p->ifc.plen4[i])) {
			memcpy(nh, dst, 4);
			return true;
		}
	}
	for (int i = 0; !v4 && i < p->ifc.n_addr6; i++) {
		if (prefix_match6(dst, p->ifc.addr6[i], p->ifc.plen6[i])) {
			memcpy(nh, dst, 16);
			return true;
		}
	}
	/* Static routes: longest match wins; few entries, so a scan. */
	int best = -1;
	for (int i = 0; i < dp->n_lan_routes; i++) {
		const struct mg_prefix *r = &dp->lan_routes[i].prefix;
		if (r->family != *family || (best >= 0 && r->cidr <= dp->lan_routes[best].prefix.cidr))
			continue;
		uint32_t d, a;
		memcpy(&d, dst, 4);
		memcpy(&a, r->addr, 4);
		if (v4 ? prefix_match4(d, a, r->cidr) : prefix_match6(dst, r->addr, r->cidr))
			best = i;
	}
	if (best < 0)
		return false;
	memcpy(nh, dp->lan_routes[best].via.addr, v4 ? 4 : 16);
	return true;
}

void dp_send_via(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf *m,
		 int family, const uint8_t *nh)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct dp_neigh_table *t = w->dp->neigh;
	uint16_t port_id = w->dp->ports[port].port_id;
	size_t alen = family == AF_INET ? 4 : 16;
	int rc;

	if (w->nh_cache.loop == w->loops + 1 && w->nh_cache.family == family &&
	    w->nh_cache.port == port && dp_addr_eq(w->nh_cache.nh, nh, family)) {
		eth->dst_addr = w->nh_cache.mac;
		dp_tx_add(w, b, port, m);
		return;
	}
	rc = dp_neigh_lookup(t, port_id, family, nh, &eth->dst_addr);
	if (rc == 0) {
		w->nh_cache.loop = w->loops + 1;
		w->nh_cache.family = (uint8_t)family;
		w->nh_cache.port = (uint16_t)port;
		memcpy(w->nh_cache.nh, nh, alen);
		w->nh_cache.mac = eth->dst_addr;
		dp_tx_add(w, b, port, m);
		return;
	}
	struct dp_meta *meta = dp_meta(m);
	meta->kind = DP_META_RAW_TX;
	meta->port = (uint16_t)port;
	meta->nh_family = (uint8_t)family;
	memcpy(meta->nh, nh, family == AF_INET ? 4 : 16);
	dp_to_main(w, m);
}

/* SNAT of a tunnel packet leaving to the LAN; false if it was dropped. */
static bool lan_snat_out(struct dp_worker *w, struct rte_mbuf *m)
{
	enum mg_drop_reason why;

	/* A reply to a UDP flow a LAN host opened goes back untranslated (the
	 * LAN host talks to the tunnel address; TCP and ICMP replies are
	 * recognised by snat.c itself). */
	if (w->dp->snat && dp_filter_udp_reply(w, rte_pktmbuf_mtod(m, uint8_t *),
					       rte_pktmbuf_data_len(m))) {
		dp_snat_frag_pass(w->dp->snat, w->idx, rte_pktmbuf_mtod(m, uint8_t *), w->now_tsc);
		return true;
	}
	if (!w->dp->snat || dp_snat_out(w->dp->snat, w->idx, rte_pktmbuf_mtod(m, uint8_t *),
					rte_pktmbuf_data_len(m), w->now_tsc,
					&why) != DP_SNAT_DROP)
		return true;
	dp_stage_drop(w, m, why);
	return false;
}

void dp_lan_output(struct dp_worker *w, struct dp_burst *b, struct rte_mbuf **m, uint16_t n)
{
	struct dp_ctx *dp = w->dp;

	for (uint16_t i = 0; i < n; i++) {
		uint8_t *ip = rte_pktmbuf_mtod(m[i], uint8_t *);
		uint8_t nh[16];
		int family;

		if (dp->lan < 0 || !lan_next_hop(dp, ip, &family, nh)) {
			dp_stage_drop(w, m[i], MG_DROP_NO_ROUTE);
			continue;
		}
		if (!dp_inner_dec_ttl(ip)) {
			dp_stage_drop(w, m[i], MG_DROP_TTL_EXCEEDED);
			continue;
		}
		if (!lan_snat_out(w, m[i]))
			continue;
		struct rte_ether_hdr *eth =
			(struct rte_ether_hdr *)rte_pktmbuf_prepend(m[i], sizeof(*eth));
		if (!eth) {
			dp_stage_drop(w, m[i], MG_DROP_NO_MBUF);
			continue;
		}
		rte_ether_addr_copy(&dp->ports[dp->lan].mac, &eth->src_addr);
		eth->ether_type = rte_cpu_to_be_16(family == AF_INET ? RTE_ETHER_TYPE_IPV4
								     : RTE_ETHER_TYPE_IPV6);
		dp_send_via(w, b, dp->lan, m[i], family, nh);
	}
}

static void to_main_slow(struct dp_worker *w, int port, struct rte_mbuf *m)
{
	dp_meta(m)->kind = DP_META_SLOW;
	dp_meta(m)->port = (uint16_t)port;
	dp_to_main(w, m);
}

/* Classify one LAN frame; true if it is an inner packet for the tunnel,
 * with data now at its IP header. */
static bool classify_lan(struct dp_worker *w, int port, struct rte_mbuf *m)
{
	const struct dp_port *p = &w->dp->ports[port];
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint32_t len = rte_pktmbuf_data_len(m);

	if (len < sizeof(*eth)) {
		dp_stage_drop(w, m, MG_DROP_RX_RUNT);
		return false;
	}
	uint16_t et = rte_be_to_cpu_16(eth->ether_type);
	if (et == RTE_ETHER_TYPE_ARP || (et == RTE_ETHER_TYPE_IPV6 && dp_neigh_is_neigh_packet(m))) {
		to_main_slow(w, port, m);
		return false;
	}
	if (et != RTE_ETHER_TYPE_IPV4 && et != RTE_ETHER_TYPE_IPV6) {
		dp_stage_drop(w, m, MG_DROP_NOT_IP);
		return false;
	}
	if (!rte_is_same_ether_addr(&eth->dst_addr, &p->mac)) {
		dp_stage_drop(w, m, MG_DROP_NOT_FOR_US); /* multicast, or another host's */
		return false;
	}
	uint8_t *ip = (uint8_t *)(eth + 1);
	int ilen = dp_inner_len(ip, len - sizeof(*eth));
	if (ilen < 0 || (ip[0] >> 4) != (et == RTE_ETHER_TYPE_IPV4 ? 4 : 6)) {
		dp_stage_drop(w, m, MG_DROP_BAD_IP);
		return false;
	}
	enum dp_snat_result nat = DP_SNAT_PASS;
	if (w->dp->snat && dp_snat_is_nat_dst(w->dp->snat, ip)) {
		enum mg_drop_reason why;
		nat = dp_snat_in(w->dp->snat, w->idx, ip, (uint32_t)ilen, w->now_tsc, &why);
		if (nat == DP_SNAT_DROP) {
			dp_stage_drop(w, m, why);
			return false;
		}
	}
	if (nat == DP_SNAT_PASS && is_local(p, ip)) {
		to_main_slow(w, port, m);
		return false;
	}
	if (!dp_inner_dec_ttl(ip)) {
		dp_stage_drop(w, m, MG_DROP_TTL_EXCEEDED);
		return false;
	}
	rte_pktmbuf_adj(m, sizeof(*eth));
	dp_mbuf_trim(m, (uint16_t)(rte_pktmbuf_data_len(m) - ilen));
	return true;
}

void dp_lan_input(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf **m,
		  uint16_t n)
{
	struct rte_mbuf *enc[DP_BURST_MAX];
	uint32_t peers[DP_BURST_MAX];
	uint16_t n_enc = 0;

	dp_prefetch_burst(m, n);
	/* The headroom line encap will write the outer headers into. */
	for (uint16_t i = 0; i < n; i++)
		rte_prefetch0(rte_pktmbuf_mtod(m[i], uint8_t *) - RTE_CACHE_LINE_SIZE);
	for (uint16_t i = 0; i < n; i++) {
		if (m[i]->nb_segs > 1 && rte_pktmbuf_linearize(m[i]) < 0) {
			dp_stage_drop(w, m[i], MG_DROP_RX_RUNT);
			continue;
		}
		if (classify_lan(w, port, m[i])) {
			peers[n_enc] = DP_PEER_LOOKUP;
			enc[n_enc++] = m[i];
		}
	}
	if (n_enc)
		dp_encap_burst(w, b, enc, peers, n_enc);
}
