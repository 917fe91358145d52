/* SPDX-License-Identifier: MIT */
/*
 * The main lcore: the only writer of peers, keypairs, routes and
 * neighbours. It applies control messages, handles what workers hand it
 * (ARP/ND, packets waiting for a handshake or a next hop, events), and
 * exports state to the control process. It may block briefly in
 * rte_rcu_qsbr_synchronize(); workers never wait for it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_cycles.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sodium.h>

#include "dp.h"
#include "filter.h"
#include "log.h"
#include "pkt.h"
#include "pmtu.h"
#include "route.h"
#include "wg_messages.h"

#define STAGED_MAX      128
#define PENDING_MAX     64
#define PENDING_PKTS    16
#define NEED_HS_GAP_MS  100

struct staged {
	uint16_t n;
	uint64_t first_tsc;
	struct rte_mbuf *m[STAGED_MAX];
};

struct pending {
	bool used;
	uint8_t family;
	uint16_t port;
	uint8_t nh[16];
	uint64_t first_tsc, solicit_tsc;
	uint16_t n;
	struct rte_mbuf *m[PENDING_PKTS];
};

struct dp_main_state {
	struct staged **staged; /* [max_peers], allocated on demand */
	struct pending pending[PENDING_MAX];
	struct mg_msg *msgs;
	uint32_t *retired;
	uint32_t n_retired, cap_retired;
	uint64_t *drops;
	uint64_t next_tick, next_slow_tick;
	bool routes_dirty;
	uint64_t icmp_tokens, icmp_last_tsc; /* ICMP error rate limit */
};

static uint64_t ms_to_tsc(const struct dp_ctx *dp, uint64_t ms)
{
	return dp->tsc_hz / 1000 * ms;
}

static void main_drop(struct dp_ctx *dp, struct rte_mbuf *m, enum mg_drop_reason r)
{
	dp->ms->drops[r]++;
	rte_pktmbuf_free(m);
}

static void to_control(struct dp_ctx *dp, uint16_t type, uint32_t peer,
		       const struct mg_sockaddr *ep)
{
	struct mg_msg msg;
	msg.hdr = (struct mg_msg_hdr){.type = type, .peer = peer, .seq = ++dp->msg_seq,
				      .tsc = rte_rdtsc()};
	if (ep)
		msg.hdr.ep = *ep;
	if (mg_ring_send(dp->shm.dp2cp, &msg))
		dp->ms->drops[MG_DROP_PUNT_RING_FULL]++;
}

static void inject(struct dp_ctx *dp, unsigned worker, struct rte_mbuf *m)
{
	if (rte_ring_enqueue(dp->workers[worker % dp->n_workers].inject, m))
		main_drop(dp, m, MG_DROP_TX_FULL);
}

/* ---- peers and keypairs ------------------------------------------------ */

static void export_peer(struct dp_ctx *dp, uint32_t id)
{
	struct dp_peer *p = &dp->peers[id];
	struct mg_peer_export *e = &dp->shm.peers[id];
	struct dp_keypair *cur = dp_keypair_by_slot(dp, p->kp_cur);

	memcpy(e->public_key, p->public_key, 32);
	e->kp_prev = p->kp_prev ? dp->keypairs[p->kp_prev - 1].local_index : 0;
	e->kp_cur = cur ? cur->local_index : 0;
	e->kp_next = p->kp_next ? dp->keypairs[p->kp_next - 1].local_index : 0;
	e->kp_cur_created_ns = cur ? mg_shm_tsc_to_ns(&dp->shm, cur->created_tsc) : 0;
	e->endpoint = p->ep[p->ep_idx].addr;
	__atomic_store_n(&e->in_use, p->in_use, __ATOMIC_RELEASE);
}

static void retire_keypair(struct dp_ctx *dp, uint32_t slot1)
{
	struct dp_main_state *ms = dp->ms;
	if (!slot1)
		return;
	__atomic_store_n(&dp->keypairs[slot1 - 1].local_index, 0, __ATOMIC_RELEASE);
	if (ms->n_retired == ms->cap_retired) {
		uint32_t cap = ms->cap_retired ? ms->cap_retired * 2 : 64;
		uint32_t *r = realloc(ms->retired, cap * sizeof(*r));
		if (!r) {
			/* No room to defer it: a grace period now, then zero. */
			rte_rcu_qsbr_synchronize(dp->rcu, RTE_QSBR_THRID_INVALID);
			sodium_memzero(dp->keypairs[slot1 - 1].send_key, 32);
			sodium_memzero(dp->keypairs[slot1 - 1].recv_key, 32);
			return;
		}
		ms->retired = r;
		ms->cap_retired = cap;
	}
	ms->retired[ms->n_retired++] = slot1;
}

/*
 * Zero retired keys once no worker can still be using them. One grace
 * period for all of them: done on the 100 ms tick, when REAP_BATCH have
 * piled up, or when a retired slot is about to be reused (keypair_add), not
 * after every control message (under a burst of handshakes, a grace period
 * per message would keep the main lcore waiting on the workers).
 */
#define REAP_BATCH 256

static bool retired_pending(const struct dp_main_state *ms, uint32_t slot1)
{
	for (uint32_t i = 0; i < ms->n_retired; i++)
		if (ms->retired[i] == slot1)
			return true;
	return false;
}

static void reap_keypairs(struct dp_ctx *dp)
{
	struct dp_main_state *ms = dp->ms;
	if (!ms->n_retired)
		return;
	rte_rcu_qsbr_synchronize(dp->rcu, RTE_QSBR_THRID_INVALID);
	for (uint32_t i = 0; i < ms->n_retired; i++) {
		struct dp_keypair *kp = &dp->keypairs[ms->retired[i] - 1];
		if (!__atomic_load_n(&kp->local_index, __ATOMIC_ACQUIRE)) {
			sodium_memzero(kp->send_key, sizeof(kp->send_key));
			sodium_memzero(kp->recv_key, sizeof(kp->recv_key));
		}
	}
	ms->n_retired = 0;
}

static void set_role(uint32_t *role, uint32_t slot1)
{
	__atomic_store_n(role, slot1, __ATOMIC_RELEASE);
}

static void clear_keypairs(struct dp_ctx *dp, uint32_t id)
{
	struct dp_peer *p = &dp->peers[id];
	uint32_t prev = p->kp_prev, cur = p->kp_cur, next = p->kp_next;
	set_role(&p->kp_cur, 0);
	set_role(&p->kp_prev, 0);
	set_role(&p->kp_next, 0);
	retire_keypair(dp, prev);
	retire_keypair(dp, cur);
	retire_keypair(dp, next);
}

static void flush_staged(struct dp_ctx *dp, uint32_t id, bool send)
{
	struct staged *s = dp->ms->staged[id];
	if (!s)
		return;
	for (uint16_t i = 0; i < s->n; i++) {
		if (send) {
			dp_meta(s->m[i])->kind = DP_META_ENCAP;
			dp_meta(s->m[i])->peer = id;
			inject(dp, id, s->m[i]);
		} else {
			main_drop(dp, s->m[i], MG_DROP_STAGED_EXPIRED);
		}
	}
	s->n = 0;
}

static int keypair_add(struct dp_ctx *dp, uint32_t id, const struct mg_msg_keypair *k)
{
	struct dp_peer *p = &dp->peers[id];
	uint32_t slot = k->local_index & dp->kp_mask;
	if (k->local_index == 0 || slot / MG_KP_PER_PEER != id)
		return -EINVAL;
	uint32_t slot1 = slot + 1;
	struct dp_keypair *kp = &dp->keypairs[slot];

	/* The slot may still be in a role (control reuses a peer's slots). */
	if (p->kp_prev == slot1)
		set_role(&p->kp_prev, 0);
	if (p->kp_cur == slot1)
		set_role(&p->kp_cur, 0);
	if (p->kp_next == slot1)
		set_role(&p->kp_next, 0);
	if (__atomic_load_n(&kp->local_index, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&kp->local_index, 0, __ATOMIC_RELEASE);
		rte_rcu_qsbr_synchronize(dp->rcu, RTE_QSBR_THRID_INVALID);
	} else if (retired_pending(dp->ms, slot1)) {
		/* Retired, not yet past a grace period: a worker may still be
		 * reading its keys or its window. */
		reap_keypairs(dp);
	}
	uint64_t now = rte_rdtsc();
	kp->remote_index = k->remote_index;
	kp->peer = id;
	kp->initiator = k->initiator;
	kp->send_counter = 0;
	kp->created_tsc = now;
	kp->expire_tsc = now + dp->reject_after_tsc;
	memcpy(kp->send_key, k->send_key, 32);
	memcpy(kp->recv_key, k->recv_key, 32);
	wg_replay_mt_init(&kp->replay);
	__atomic_store_n(&kp->local_index, k->local_index, __ATOMIC_RELEASE);

	if (k->initiator) {
		uint32_t old_prev = p->kp_prev, old_cur = p->kp_cur, old_next = p->kp_next;
		if (old_next) {
			set_role(&p->kp_prev, old_next);
			set_role(&p->kp_next, 0);
			retire_keypair(dp, old_cur);
		} else {
			set_role(&p->kp_prev, old_cur);
		}
		set_role(&p->kp_cur, slot1);
		retire_keypair(dp, old_prev);
		flush_staged(dp, id, true);
	} else {
		uint32_t old_prev = p->kp_prev, old_next = p->kp_next;
		set_role(&p->kp_next, slot1);
		set_role(&p->kp_prev, 0);
		retire_keypair(dp, old_next);
		retire_keypair(dp, old_prev);
	}
	export_peer(dp, id);
	return 0;
}

/* The peer used our next keypair: it is confirmed and becomes current. */
static void keypair_confirm(struct dp_ctx *dp, uint32_t id, uint32_t local_index)
{
	struct dp_peer *p = &dp->peers[id];
	struct dp_keypair *next = dp_keypair_by_slot(dp, p->kp_next);
	if (!next || next->local_index != local_index)
		return; /* already promoted by an earlier event */
	uint32_t old_prev = p->kp_prev;
	set_role(&p->kp_prev, p->kp_cur);
	set_role(&p->kp_cur, p->kp_next);
	set_role(&p->kp_next, 0);
	retire_keypair(dp, old_prev);
	export_peer(dp, id);
	to_control(dp, MG_MSG_KEYPAIR_CONFIRMED, id, NULL);
	flush_staged(dp, id, true);
}

static void endpoint_set(struct dp_ctx *dp, uint32_t id, const struct mg_sockaddr *sa)
{
	struct dp_peer *p = &dp->peers[id];
	uint32_t other = p->ep_idx ^ 1;
	if (dp_sockaddr_eq(&p->ep[p->ep_idx].addr, sa))
		return;
	/* A worker may still read ep[other] from before the last flip. */
	rte_rcu_qsbr_synchronize(dp->rcu, RTE_QSBR_THRID_INVALID);
	p->ep[other].addr = *sa;
	__atomic_store_n(&p->ep_idx, other, __ATOMIC_RELEASE);
	export_peer(dp, id);
}

static void peer_reset(struct dp_ctx *dp, uint32_t id)
{
	struct dp_peer *p = &dp->peers[id];
	clear_keypairs(dp, id);
	dp_routes_clear_peer(dp->routes, id);
	dp->ms->routes_dirty = true;
	flush_staged(dp, id, false);
	struct mg_sockaddr none = {0};
	endpoint_set(dp, id, &none);
	p->keepalive = 0;
	__atomic_store_n(&p->no_replay, 0, __ATOMIC_RELAXED);
}

static void peer_set(struct dp_ctx *dp, uint32_t id, const struct mg_msg_peer *m)
{
	struct dp_peer *p = &dp->peers[id];
	if (p->in_use && memcmp(p->public_key, m->public_key, 32))
		peer_reset(dp, id); /* another peer took the slot */
	memcpy(p->public_key, m->public_key, 32);
	p->keepalive = m->persistent_keepalive;
	/* Set on every PEER_SET, so a peer re-sent without the flag gets its
	 * replay window back. */
	__atomic_store_n(&p->no_replay, (m->flags & MG_PEER_F_NO_REPLAY) ? 1 : 0, __ATOMIC_RELAXED);
	p->stale = 0;
	if (m->flags & MG_PEER_F_ENDPOINT)
		endpoint_set(dp, id, &m->endpoint);
	p->in_use = 1;
	export_peer(dp, id);
}

static void peer_del(struct dp_ctx *dp, uint32_t id)
{
	struct dp_peer *p = &dp->peers[id];
	if (!p->in_use)
		return;
	peer_reset(dp, id);
	p->in_use = 0;
	memset(p->public_key, 0, 32);
	export_peer(dp, id);
}

static void allowedips(struct dp_ctx *dp, uint32_t id, const struct mg_msg *msg)
{
	const struct mg_msg_allowedips *a = (const void *)msg->data;
	if (msg->hdr.len < sizeof(*a) ||
	    msg->hdr.len < sizeof(*a) + (size_t)a->count * sizeof(struct mg_prefix)) {
		dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
		return;
	}
	if (a->replace)
		dp_routes_clear_peer(dp->routes, id);
	for (uint16_t i = 0; i < a->count; i++)
		if (dp_routes_add(dp->routes, &a->prefixes[i], id))
			dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
	dp->ms->routes_dirty = true;
}

/* ---- neighbour resolution for frames waiting on a next hop --------------- */

/* m leaves through dp port index port: its next hop is looked up there. */
static bool neigh_resolve(struct dp_ctx *dp, struct rte_mbuf *m, uint16_t port, int family,
			  const uint8_t *nh)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	return dp_neigh_lookup(dp->neigh, dp->ports[port].port_id, family, nh, &eth->dst_addr) == 0;
}

static void solicit(struct dp_ctx *dp, struct pending *pe)
{
	const struct dp_neigh_iface *ifc = &dp->ports[pe->port].ifc;
	uint32_t nh4;
	struct rte_mbuf *req;
	if (pe->family == AF_INET) {
		memcpy(&nh4, pe->nh, 4);
		req = dp_neigh_solicit4(ifc, dp->pool, nh4);
	} else {
		req = dp_neigh_solicit6(ifc, dp->pool, pe->nh);
	}
	pe->solicit_tsc = rte_rdtsc();
	if (req) {
		dp_meta(req)->kind = DP_META_RAW_TX;
		dp_meta(req)->port = pe->port;
		inject(dp, 0, req);
	}
}

static void pending_add(struct dp_ctx *dp, struct rte_mbuf *m)
{
	struct dp_meta *meta = dp_meta(m);
	size_t alen = meta->nh_family == AF_INET ? 4 : 16;
	struct pending *free_pe = NULL;

	if (neigh_resolve(dp, m, meta->port, meta->nh_family, meta->nh)) {
		meta->kind = DP_META_RAW_TX;
		inject(dp, 0, m);
		return;
	}
	for (int i = 0; i < PENDING_MAX; i++) {
		struct pending *pe = &dp->ms->pending[i];
		if (!pe->used) {
			free_pe = free_pe ? free_pe : pe;
			continue;
		}
		if (pe->family == meta->nh_family && pe->port == meta->port &&
		    !memcmp(pe->nh, meta->nh, alen)) {
			if (pe->n == PENDING_PKTS)
				main_drop(dp, m, MG_DROP_NO_NEIGH);
			else
				pe->m[pe->n++] = m;
			return;
		}
	}
	if (!free_pe) {
		main_drop(dp, m, MG_DROP_NO_NEIGH);
		return;
	}
	*free_pe = (struct pending){.used = true, .family = meta->nh_family, .port = meta->port,
				    .first_tsc = rte_rdtsc(), .n = 1};
	memcpy(free_pe->nh, meta->nh, alen);
	free_pe->m[0] = m;
	solicit(dp, free_pe);
}

/* Send what became resolvable; re-solicit or give up on the rest. */
static void pending_service(struct dp_ctx *dp, bool timers)
{
	uint64_t now = rte_rdtsc();
	for (int i = 0; i < PENDING_MAX; i++) {
		struct pending *pe = &dp->ms->pending[i];
		if (!pe->used)
			continue;
		if (neigh_resolve(dp, pe->m[0], pe->port, pe->family, pe->nh)) {
			for (uint16_t k = 0; k < pe->n; k++) {
				neigh_resolve(dp, pe->m[k], pe->port, pe->family, pe->nh);
				dp_meta(pe->m[k])->kind = DP_META_RAW_TX;
				inject(dp, 0, pe->m[k]);
			}
			pe->used = false;
		} else if (timers && now - pe->first_tsc > ms_to_tsc(dp, 3000)) {
			for (uint16_t k = 0; k < pe->n; k++)
				main_drop(dp, pe->m[k], MG_DROP_NO_NEIGH);
			pe->used = false;
		} else if (timers && now - pe->solicit_tsc > ms_to_tsc(dp, 1000)) {
			solicit(dp, pe);
		}
	}
}

/* ---- control messages ------------------------------------------------------- */

/* A handshake message from control to an IPv4 or IPv6 endpoint. */
static void tx_udp(struct dp_ctx *dp, const struct mg_msg *msg)
{
	const struct mg_sockaddr *ep = &msg->hdr.ep;
	const struct dp_port *wan = dp->wan >= 0 ? &dp->ports[dp->wan] : NULL;
	if (!wan || msg->hdr.len > MG_MSG_MAX_DATA || !dp_wan_can_reach(wan, ep)) {
		dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
		return;
	}
	uint32_t outer = dp_outer_len(ep->family);
	struct rte_mbuf *m = rte_pktmbuf_alloc(dp->pool);
	uint8_t *p = m ? (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(outer + msg->hdr.len)) : NULL;
	if (!p) {
		if (m)
			rte_pktmbuf_free(m);
		dp->ms->drops[MG_DROP_NO_MBUF]++;
		return;
	}
	memcpy(p + outer, msg->data, msg->hdr.len); /* first: the IPv6 UDP checksum covers it */
	struct dp_meta *meta = dp_meta(m);
	*meta = (struct dp_meta){.kind = DP_META_RAW_TX, .nh_family = ep->family,
				 .port = (uint16_t)dp->wan};
	if (ep->family == AF_INET6) {
		dp_build_outer6(p, &wan->mac, &wan->mac, dp_wan_src6(wan, ep->addr), ep->addr,
				dp->listen_port, ep->port, msg->hdr.len);
		memcpy(meta->nh, dp_wan_next_hop6(wan, ep), 16);
	} else {
		uint32_t dst;
		memcpy(&dst, ep->addr, 4);
		dp_build_outer4(p, &wan->mac, &wan->mac, wan->ifc.addr4[0], dst, dp->listen_port,
				ep->port, msg->hdr.len);
		memcpy(meta->nh, dp_wan_next_hop(wan, ep), 4);
	}
	pending_add(dp, m);
}

/* A data message control received through a DERP relay: to a worker (the
 * one the receiver index picks, so a tunnel's relayed packets keep their
 * order), which decrypts it like a WAN one. */
static void derp_rx(struct dp_ctx *dp, const struct mg_msg *msg)
{
	uint32_t idx;

	if (msg->hdr.len < sizeof(struct wg_message_data) || msg->hdr.len > MG_MSG_MAX_DATA ||
	    !mg_sockaddr_is_derp(&msg->hdr.ep)) {
		dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
		return;
	}
	struct rte_mbuf *m = rte_pktmbuf_alloc(dp->pool);
	uint8_t *p = m ? (uint8_t *)rte_pktmbuf_append(m, msg->hdr.len) : NULL;
	if (!p) {
		if (m)
			rte_pktmbuf_free(m);
		dp->ms->drops[MG_DROP_NO_MBUF]++;
		return;
	}
	memcpy(p, msg->data, msg->hdr.len);
	*dp_meta(m) = (struct dp_meta){.kind = DP_META_DERP_IN, .peer = msg->hdr.ep.port};
	memcpy(&idx, msg->data + offsetof(struct wg_message_data, key_idx), sizeof(idx));
	inject(dp, rte_le_to_cpu_32(idx), m);
}

static void keepalive(struct dp_ctx *dp, uint32_t id)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(dp->pool);
	if (!m) {
		dp->ms->drops[MG_DROP_NO_MBUF]++;
		return;
	}
	*dp_meta(m) = (struct dp_meta){.kind = DP_META_ENCAP, .peer = id};
	inject(dp, id, m);
}

static void sync_end(struct dp_ctx *dp)
{
	for (uint32_t i = 0; i < dp->max_peers; i++)
		if (dp->peers[i].in_use && dp->peers[i].stale)
			peer_del(dp, i);
}

static bool needs_peer(uint16_t type)
{
	return type == MG_MSG_PEER_SET || type == MG_MSG_PEER_DEL || type == MG_MSG_ALLOWEDIPS ||
	       type == MG_MSG_KEYPAIR_ADD || type == MG_MSG_KEYPAIRS_CLEAR ||
	       type == MG_MSG_KEEPALIVE || type == MG_MSG_STAGED_DROP;
}

void dp_service_handle(struct dp_ctx *dp, const struct mg_msg *msg)
{
	uint32_t id = msg->hdr.peer;

	if (needs_peer(msg->hdr.type) &&
	    (id >= dp->max_peers || (msg->hdr.type != MG_MSG_PEER_SET && !dp->peers[id].in_use))) {
		dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
		return;
	}
	switch (msg->hdr.type) {
	case MG_MSG_HELLO:
		mg_log(LOG_INFO, "control process attached (pid %llu)",
		       (unsigned long long)dp->shm.hdr->cp_pid);
		to_control(dp, MG_MSG_DP_HELLO, 0, NULL);
		break;
	case MG_MSG_SYNC_BEGIN:
		for (uint32_t i = 0; i < dp->max_peers; i++)
			dp->peers[i].stale = dp->peers[i].in_use;
		break;
	case MG_MSG_SYNC_END:
		sync_end(dp);
		break;
	case MG_MSG_IFACE_SET: {
		const struct mg_msg_iface *f = (const void *)msg->data;
		if (f->listen_port)
			__atomic_store_n(&dp->listen_port, f->listen_port, __ATOMIC_RELAXED);
		break;
	}
	case MG_MSG_PEER_SET:
		peer_set(dp, id, (const struct mg_msg_peer *)msg->data);
		break;
	case MG_MSG_PEER_DEL:
		peer_del(dp, id);
		break;
	case MG_MSG_ALLOWEDIPS:
		allowedips(dp, id, msg);
		break;
	case MG_MSG_KEYPAIR_ADD:
		if (keypair_add(dp, id, (const struct mg_msg_keypair *)msg->data))
			dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
		break;
	case MG_MSG_KEYPAIRS_CLEAR:
		clear_keypairs(dp, id);
		export_peer(dp, id);
		break;
	case MG_MSG_TX_UDP:
		tx_udp(dp, msg);
		break;
	case MG_MSG_DERP_RX:
		derp_rx(dp, msg);
		break;
	case MG_MSG_KEEPALIVE:
		keepalive(dp, id);
		break;
	case MG_MSG_STAGED_DROP:
		flush_staged(dp, id, false);
		break;
	case MG_MSG_ACL_BEGIN:
	case MG_MSG_ACL_RULES:
	case MG_MSG_ACL_TESTS:
	case MG_MSG_ACL_COMMIT:
		dp_filter_msg(dp, msg);
		break;
	default:
		dp->ms->drops[MG_DROP_CTL_BAD_MSG]++;
	}
}

static unsigned control_poll(struct dp_ctx *dp)
{
	struct dp_main_state *ms = dp->ms;
	unsigned n = mg_ring_recv_burst(dp->shm.cp2dp, ms->msgs, 32);
	for (unsigned i = 0; i < n; i++) {
		dp_service_handle(dp, &ms->msgs[i]);
		/* Key material leaves the message buffer as soon as it is used. */
		sodium_memzero(&ms->msgs[i], sizeof(ms->msgs[i]));
	}
	dp_service_commit(dp);
	return n;
}

void dp_service_commit(struct dp_ctx *dp)
{
	struct dp_main_state *ms = dp->ms;
	if (ms->routes_dirty) {
		int failed = dp_routes_commit(dp->routes, dp->rcu);
		if (failed) {
			mg_log(LOG_ERR, "allowed-ips table full: %d change(s) not applied", failed);
			ms->drops[MG_DROP_CTL_BAD_MSG] += (uint64_t)failed;
		}
		ms->routes_dirty = false;
	}
	if (ms->n_retired >= REAP_BATCH)
		reap_keypairs(dp);
}

/* ---- mbufs from workers -------------------------------------------------------- */

static void stage_packet(struct dp_ctx *dp, struct rte_mbuf *m)
{
	struct dp_main_state *ms = dp->ms;
	uint32_t id = dp_meta(m)->peer;
	struct dp_peer *p = &dp->peers[id];

	if (id >= dp->max_peers || !p->in_use) {
		main_drop(dp, m, MG_DROP_NO_ROUTE);
		return;
	}
	struct dp_keypair *cur = dp_keypair_by_slot(dp, p->kp_cur);
	if (cur && rte_rdtsc() < cur->expire_tsc && cur->send_counter < WG_REJECT_AFTER_MESSAGES) {
		dp_meta(m)->kind = DP_META_ENCAP; /* a keypair arrived meanwhile */
		inject(dp, id, m);
		return;
	}
	if (!ms->staged[id] && !(ms->staged[id] = calloc(1, sizeof(struct staged)))) {
		main_drop(dp, m, MG_DROP_STAGED_OVERFLOW);
		return;
	}
	struct staged *s = ms->staged[id];
	if (s->n == STAGED_MAX) {
		main_drop(dp, s->m[0], MG_DROP_STAGED_OVERFLOW); /* keep the newest */
		memmove(s->m, s->m + 1, (STAGED_MAX - 1) * sizeof(s->m[0]));
		s->n--;
	}
	if (!s->n)
		s->first_tsc = rte_rdtsc();
	s->m[s->n++] = m;
	uint64_t now = rte_rdtsc();
	if (now - p->last_need_hs_tsc > ms_to_tsc(dp, NEED_HS_GAP_MS)) {
		p->last_need_hs_tsc = now;
		to_control(dp, MG_MSG_NEED_HANDSHAKE, id, NULL);
	}
}

/* Echo replies for the gateway's own addresses: handy for operators. */
static void local_input(struct dp_ctx *dp, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint32_t len = rte_pktmbuf_data_len(m);
	if (len < sizeof(*eth) + 20 + 8 || eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		goto drop;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	uint32_t ihl = (uint32_t)(ip->version_ihl & 0xf) * 4;
	uint32_t tot = rte_be_to_cpu_16(ip->total_length);
	if (ip->next_proto_id != IPPROTO_ICMP || ihl < 20 || tot < ihl + 8 || tot > len - sizeof(*eth))
		goto drop;
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)((uint8_t *)ip + ihl);
	if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST)
		goto drop;
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	icmp->icmp_cksum = 0;
	icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, tot - ihl);
	uint32_t a = ip->src_addr;
	ip->src_addr = ip->dst_addr;
	ip->dst_addr = a;
	ip->time_to_live = 64;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_ether_addr t = eth->src_addr;
	eth->src_addr = eth->dst_addr;
	eth->dst_addr = t;
	dp_meta(m)->kind = DP_META_RAW_TX;
	inject(dp, 0, m);
	return;
drop:
	main_drop(dp, m, MG_DROP_NOT_FOR_US);
}

static void slow_input(struct dp_ctx *dp, struct rte_mbuf *m)
{
	struct dp_meta *meta = dp_meta(m);
	if (meta->port >= dp->n_ports) {
		main_drop(dp, m, MG_DROP_CTL_BAD_MSG);
		return;
	}
	if (!dp_neigh_is_neigh_packet(m)) {
		local_input(dp, m);
		return;
	}
	uint16_t port = meta->port;
	struct rte_mbuf *reply =
		dp_neigh_input(dp->neigh, &dp->ports[port].ifc, m, dp->pool, rte_rdtsc());
	if (reply) {
		dp_meta(reply)->kind = DP_META_RAW_TX;
		dp_meta(reply)->port = port;
		inject(dp, 0, reply);
	}
	pending_service(dp, false);
}

/* ---- path MTU: inner packets over the tunnel MTU -------------------------- */

#define ICMP_ERR_PER_SEC 1000 /* like Linux's icmp_msgs_per_sec */
#define ICMP_ERR_BURST   50

static bool icmp_err_allowed(struct dp_ctx *dp)
{
	struct dp_main_state *ms = dp->ms;
	uint64_t now = rte_rdtsc();
	uint64_t gain = (now - ms->icmp_last_tsc) * ICMP_ERR_PER_SEC / dp->tsc_hz;
	if (gain) {
		ms->icmp_tokens = RTE_MIN(ms->icmp_tokens + gain, (uint64_t)ICMP_ERR_BURST);
		ms->icmp_last_tsc = now;
	}
	if (!ms->icmp_tokens)
		return false;
	ms->icmp_tokens--;
	return true;
}

/* Our address to send an ICMP error from: the LAN port's (we route for
 * the LAN), else the WAN port's; NULL if the family has none. */
static const uint8_t *icmp_source(const struct dp_ctx *dp, int v4)
{
	static const int order[2] = {1, 0};
	for (int k = 0; k < 2; k++) {
		int pi = order[k] ? dp->lan : dp->wan;
		if (pi < 0)
			continue;
		const struct dp_neigh_iface *ifc = &dp->ports[pi].ifc;
		if (v4 && ifc->n_addr4)
			return (const uint8_t *)&ifc->addr4[0];
		if (!v4 && ifc->n_addr6)
			return ifc->addr6[0];
	}
	return NULL;
}

/* An inner packet we made (data at the IP header): into the tunnel if its
 * destination is a peer's, else out of the LAN port. */
static void send_inner(struct dp_ctx *dp, struct rte_mbuf *m)
{
	const uint8_t *ip = rte_pktmbuf_mtod(m, const uint8_t *);
	const struct dp_route_tables *t = dp_routes_active(dp->routes);
	uint32_t peer;
	int rc = (ip[0] >> 4) == 4 ? dp_route_lookup4(t, dp_rd32be(ip + 16), &peer)
				   : dp_route_lookup6(t, ip + 24, &peer);
	if (rc == 0) {
		*dp_meta(m) = (struct dp_meta){.kind = DP_META_ENCAP, .peer = peer};
		inject(dp, peer, m);
	} else {
		*dp_meta(m) = (struct dp_meta){.kind = DP_META_LAN_OUT};
		inject(dp, 0, m);
	}
}

static void too_big(struct dp_ctx *dp, struct rte_mbuf *m)
{
	const uint8_t *ip = rte_pktmbuf_mtod(m, const uint8_t *);
	size_t len = rte_pktmbuf_data_len(m);
	uint32_t peer = dp_meta(m)->peer;

	if (dp_pmtu_may_fragment4(ip, len)) {
		size_t off = 0, k;
		do {
			struct rte_mbuf *f = rte_pktmbuf_alloc(dp->pool);
			uint8_t *p = f ? (uint8_t *)rte_pktmbuf_append(f, dp->mtu) : NULL;
			if (!p) {
				if (f)
					rte_pktmbuf_free(f);
				main_drop(dp, m, MG_DROP_NO_MBUF);
				return;
			}
			k = dp_pmtu_fragment4(ip, len, dp->mtu, &off, p, dp->mtu);
			if (!k) {
				rte_pktmbuf_free(f);
				break;
			}
			rte_pktmbuf_trim(f, (uint16_t)(dp->mtu - k));
			*dp_meta(f) = (struct dp_meta){.kind = DP_META_ENCAP, .peer = peer};
			inject(dp, peer, f);
		} while (off < len);
		rte_pktmbuf_free(m);
		return;
	}
	const uint8_t *src = icmp_source(dp, (ip[0] >> 4) == 4);
	struct rte_mbuf *r;
	if (src && dp_pmtu_may_report(ip, len) && icmp_err_allowed(dp) &&
	    (r = rte_pktmbuf_alloc(dp->pool)) != NULL) {
		uint8_t *p = (uint8_t *)rte_pktmbuf_append(r, DP_PMTU_ICMP6_MAX);
		size_t k = p ? dp_pmtu_too_big(ip, len, dp->mtu, src, p, DP_PMTU_ICMP6_MAX) : 0;
		if (k) {
			rte_pktmbuf_trim(r, (uint16_t)(DP_PMTU_ICMP6_MAX - k));
			send_inner(dp, r);
		} else {
			rte_pktmbuf_free(r);
		}
	}
	main_drop(dp, m, MG_DROP_TOO_BIG);
}

static unsigned slow_poll(struct dp_ctx *dp)
{
	struct rte_mbuf *m[64];
	unsigned n = rte_ring_dequeue_burst(dp->slow, (void **)m, 64, NULL);
	for (unsigned i = 0; i < n; i++) {
		switch (dp_meta(m[i])->kind) {
		case DP_META_SLOW:
			slow_input(dp, m[i]);
			break;
		case DP_META_STAGE:
			stage_packet(dp, m[i]);
			break;
		case DP_META_RAW_TX:
			pending_add(dp, m[i]);
			break;
		case DP_META_TOO_BIG:
			too_big(dp, m[i]);
			break;
		default:
			main_drop(dp, m[i], MG_DROP_CTL_BAD_MSG);
		}
	}
	return n;
}

static unsigned events_poll(struct dp_ctx *dp)
{
	struct dp_event ev[32];
	unsigned n = rte_ring_dequeue_burst_elem(dp->events, ev, sizeof(ev[0]), 32, NULL);
	for (unsigned i = 0; i < n; i++) {
		if (ev[i].peer >= dp->max_peers || !dp->peers[ev[i].peer].in_use)
			continue;
		if (ev[i].type == DP_EV_CONFIRM) {
			keypair_confirm(dp, ev[i].peer, ev[i].local_index);
		} else if (ev[i].type == DP_EV_ROAM) {
			struct dp_peer *p = &dp->peers[ev[i].peer];
			if (dp_sockaddr_eq(&p->ep[p->ep_idx].addr, &ev[i].ep))
				continue;
			endpoint_set(dp, ev[i].peer, &ev[i].ep);
			to_control(dp, MG_MSG_ENDPOINT, ev[i].peer, &ev[i].ep);
		}
	}
	if (dp->ms->n_retired >= REAP_BATCH)
		reap_keypairs(dp);
	return n;
}

/* ---- timers ----------------------------------------------------------------- */

struct refresh_ctx {
	struct dp_ctx *dp;
	uint64_t now, older_than;
};

static void refresh_one(void *arg, uint16_t port_id, int family, const uint8_t *ip,
			const struct rte_ether_addr *mac, uint64_t updated)
{
	struct refresh_ctx *r = arg;
	struct rte_mbuf *req;
	uint32_t ip4;
	int p;
	(void)mac;
	if (r->now - updated < r->older_than)
		return;
	/* Re-confirm before the entry ages out, so traffic never stalls; only
	 * on the port the entry belongs to, once a second until it answers. */
	for (p = 0; p < r->dp->n_ports && r->dp->ports[p].port_id != port_id; p++)
		;
	if (p == r->dp->n_ports)
		return;
	if (family == AF_INET) {
		memcpy(&ip4, ip, 4);
		req = dp_neigh_solicit4(&r->dp->ports[p].ifc, r->dp->pool, ip4);
	} else {
		req = dp_neigh_solicit6(&r->dp->ports[p].ifc, r->dp->pool, ip);
	}
	if (req) {
		dp_meta(req)->kind = DP_META_RAW_TX;
		dp_meta(req)->port = (uint16_t)p;
		inject(r->dp, 0, req);
	}
}

static void staged_expire(struct dp_ctx *dp, uint64_t now)
{
	uint64_t limit = ms_to_tsc(dp, WG_REKEY_ATTEMPT_TIME * 1000ull);
	for (uint32_t i = 0; i < dp->max_peers; i++) {
		struct staged *s = dp->ms->staged[i];
		if (s && s->n && now - s->first_tsc > limit)
			flush_staged(dp, i, false);
	}
}

static void tick(struct dp_ctx *dp)
{
	uint64_t now = rte_rdtsc();
	dp->shm.hdr->dp_heartbeat_ns = mg_mono_ns();
	reap_keypairs(dp);
	pending_service(dp, true);
	if (now < dp->ms->next_slow_tick)
		return;
	dp->ms->next_slow_tick = now + dp->tsc_hz;
	dp_ports_export_stats(dp);
	staged_expire(dp, now);
	struct refresh_ctx r = {.dp = dp, .now = now, .older_than = 30 * dp->tsc_hz};
	dp_neigh_walk(dp->neigh, refresh_one, &r);
	dp_neigh_age(dp->neigh, now, 90 * dp->tsc_hz);
}

int dp_service_init(struct dp_ctx *dp)
{
	struct dp_main_state *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return -ENOMEM;
	ms->staged = calloc(dp->max_peers, sizeof(*ms->staged));
	ms->msgs = calloc(32, sizeof(*ms->msgs));
	if (!ms->staged || !ms->msgs) {
		free(ms->staged);
		free(ms->msgs);
		free(ms);
		return -ENOMEM;
	}
	ms->drops = dp_main_drops(dp);
	dp->ms = ms;
	to_control(dp, MG_MSG_DP_HELLO, 0, NULL);
	return 0;
}

void dp_service_run(struct dp_ctx *dp)
{
	uint64_t tick_gap = ms_to_tsc(dp, 100);
	while (!__atomic_load_n(&dp->quit, __ATOMIC_RELAXED)) {
		unsigned work = control_poll(dp) + slow_poll(dp) + events_poll(dp);
		uint64_t now = rte_rdtsc();
		if (now >= dp->ms->next_tick) {
			dp->ms->next_tick = now + tick_gap;
			tick(dp);
		}
		/* The main lcore is not a worker: when idle it yields its core
		 * (on small machines it shares one with the control process). */
		if (!work)
			rte_delay_us_sleep(50);
	}
}

void dp_service_fini(struct dp_ctx *dp)
{
	struct dp_main_state *ms = dp->ms;
	if (!ms)
		return;
	for (uint32_t i = 0; i < dp->max_peers; i++) {
		if (ms->staged[i])
			flush_staged(dp, i, false);
		free(ms->staged[i]);
	}
	for (int i = 0; i < PENDING_MAX; i++)
		for (uint16_t k = 0; ms->pending[i].used && k < ms->pending[i].n; k++)
			rte_pktmbuf_free(ms->pending[i].m[k]);
	free(ms->staged);
	free(ms->msgs);
	free(ms->retired);
	free(ms);
	dp->ms = NULL;
}
