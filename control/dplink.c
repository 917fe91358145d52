/* SPDX-License-Identifier: MIT */
/*
 * The control side of the dataplane link. The control process never waits
 * for the dataplane: it attaches when the region appears, notices a
 * restarted dataplane (a new shared-memory object), and re-programs it.
 * A restarted control process adopts the dataplane's peer slots and
 * keypairs, so established traffic keeps flowing meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_ring.h>
#include <sodium.h>

#include "cp.h"
#include "disco.h"
#include "log.h"
#include "stun.h"

int cp_dp_send(struct cp_device *d, struct mg_msg *m)
{
	if (!d->attached)
		return -ENOTCONN;
	m->hdr.seq = ++d->seq;
	int rc = mg_ring_send(d->shm.cp2dp, m);
	if (rc) {
		/* Lost: re-send the whole state once the ring drains (a sync in
		 * progress starts over). Said once per episode, not per message. */
		d->cp2dp_full++;
		if (!d->resync)
			mg_log(LOG_WARNING, "dataplane ring full; will re-sync");
		d->resync = true;
		d->syncing = false;
	}
	return rc;
}

int cp_dp_simple(struct cp_device *d, uint16_t type, uint32_t peer)
{
	struct mg_msg m;
	m.hdr = (struct mg_msg_hdr){.type = type, .peer = peer};
	return cp_dp_send(d, &m);
}

int cp_dp_peer_push(struct cp_device *d, struct cp_peer *p)
{
	struct mg_msg m;
	struct mg_msg_peer *pm = (struct mg_msg_peer *)m.data;
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_PEER_SET, .peer = p->slot, .len = sizeof(*pm)};
	memset(pm, 0, sizeof(*pm));
	memcpy(pm->public_key, p->noise.public_key, 32);
	pm->persistent_keepalive = p->persistent_keepalive;
	if (p->endpoint.family) {
		pm->flags |= MG_PEER_F_ENDPOINT;
		pm->endpoint = p->endpoint;
	}
	if (p->no_replay) {
		pm->flags |= MG_PEER_F_NO_REPLAY;
		cp_peer_warn_no_replay(p, "programmed into the dataplane");
	}
	return cp_dp_send(d, &m);
}

int cp_dp_aips_push(struct cp_device *d, struct cp_peer *p)
{
	struct mg_msg m;
	struct mg_msg_allowedips *a = (struct mg_msg_allowedips *)m.data;
	uint32_t i = 0;
	bool first = true;

	do {
		uint32_t n = p->n_aips - i;
		if (n > MG_ALLOWEDIPS_PER_MSG)
			n = MG_ALLOWEDIPS_PER_MSG;
		m.hdr = (struct mg_msg_hdr){.type = MG_MSG_ALLOWEDIPS, .peer = p->slot};
		a->replace = first;
		a->pad = 0;
		a->count = (uint16_t)n;
		if (n) /* a peer with no allowed IPs may have no array at all */
			memcpy(a->prefixes, p->aips + i, n * sizeof(struct mg_prefix));
		m.hdr.len = (uint16_t)(sizeof(*a) + n * sizeof(struct mg_prefix));
		int rc = cp_dp_send(d, &m);
		if (rc)
			return rc;
		i += n;
		first = false;
	} while (i < p->n_aips);
	p->aips_dirty = false;
	return 0;
}

int cp_dp_tx_udp(struct cp_device *d, const struct mg_sockaddr *to, const void *data, size_t len)
{
	struct mg_msg m;
	if (len > MG_MSG_MAX_DATA)
		return -EMSGSIZE;
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_TX_UDP, .ep = *to, .len = (uint16_t)len};
	memcpy(m.data, data, len);
	return cp_dp_send(d, &m);
}

int cp_tx(struct cp_device *d, const struct mg_sockaddr *to, const uint8_t *key, const void *data,
	  size_t len)
{
	if (mg_sockaddr_is_derp(to))
		return key ? cp_derp_send(d, to->port, key, data, len) : -EINVAL;
	return cp_dp_tx_udp(d, to, data, len);
}

static void adopt_keypairs(struct cp_device *d, struct cp_peer *p, const struct mg_peer_export *e)
{
	p->kp_prev = e->kp_prev;
	p->kp_cur = e->kp_cur;
	p->kp_next = e->kp_next;
	p->cur_created_ns = e->kp_cur_created_ns;
	/* Unknown after a restart; assuming initiator only makes us rekey on time. */
	p->cur_initiator = true;
	if (!p->endpoint.family)
		p->endpoint = e->endpoint;
	(void)d;
}

/* A slot no dataplane peer uses, from *cursor on; else the first stale
 * one (the sync replaces it). */
static void place_new(struct cp_device *d, struct cp_peer *p, uint32_t n_dp, uint32_t *cursor,
		      uint32_t *fallback)
{
	uint32_t s;
	for (s = *cursor; s < d->max_peers; s++) {
		if (d->by_slot[s])
			continue;
		if (s < n_dp && d->shm.peers[s].in_use) {
			if (*fallback == d->max_peers)
				*fallback = s;
			continue;
		}
		break;
	}
	*cursor = s;
	if (s == d->max_peers) {
		s = *fallback;
		while (++*fallback < d->max_peers && d->by_slot[*fallback])
			;
	}
	p->slot = s;
	p->kp_prev = p->kp_cur = p->kp_next = 0;
	d->by_slot[s] = p;
}

/* Give configured peers the slots the dataplane already holds for their
 * keys; everyone else gets a slot no dataplane peer uses. Linear in the
 * slots: peers are found by key through the hash table. */
static void adopt_slots(struct cp_device *d)
{
	uint32_t n = d->shm.hdr->max_peers < d->max_peers ? d->shm.hdr->max_peers : d->max_peers;
	struct cp_peer **old = calloc(d->max_peers, sizeof(*old));
	uint32_t k = 0, cursor = 0, fallback = d->max_peers;
	if (!old)
		return;
	for (uint32_t i = 0; i < d->max_peers; i++)
		if (d->by_slot[i]) {
			old[k] = d->by_slot[i];
			old[k++]->slot = UINT32_MAX; /* not placed yet */
		}
	memset(d->by_slot, 0, d->max_peers * sizeof(*old));
	for (uint32_t s = 0; s < n; s++) {
		const struct mg_peer_export *e = &d->shm.peers[s];
		if (!__atomic_load_n(&e->in_use, __ATOMIC_ACQUIRE))
			continue;
		struct cp_peer *p = cp_peer_find(d, e->public_key);
		if (!p || p->slot != UINT32_MAX)
			continue;
		p->slot = s;
		d->by_slot[s] = p;
		adopt_keypairs(d, p, e);
	}
	for (uint32_t i = 0; i < k; i++)
		if (old[i]->slot == UINT32_MAX)
			place_new(d, old[i], n, &cursor, &fallback);
	free(old);
	d->slot_hint = 0;
}

/*
 * A full sync (after an attach or a lost message), in steps: as many peers
 * per call as the ring has room for, keeping SYNC_RESERVE entries for the
 * handshake traffic that goes on meanwhile. SYNC_BEGIN marks every
 * dataplane peer stale, PEER_SET revives it, SYNC_END drops the rest.
 * Peers changed meanwhile are sent by their own path too; a duplicate is
 * harmless.
 */
#define SYNC_RESERVE 512

static unsigned ring_room(const struct cp_device *d)
{
	unsigned free = rte_ring_free_count(d->shm.cp2dp);
	return free > SYNC_RESERVE ? free - SYNC_RESERVE : 0;
}

static void sync_begin(struct cp_device *d)
{
	struct mg_msg m;
	struct mg_msg_iface *f = (struct mg_msg_iface *)m.data;

	d->resync = false;
	d->syncing = true;
	d->sync_cursor = 0;
	d->shm.hdr->cp_pid = (uint64_t)getpid();
	cp_dp_simple(d, MG_MSG_HELLO, 0);
	cp_dp_simple(d, MG_MSG_SYNC_BEGIN, 0);
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_IFACE_SET, .len = sizeof(*f)};
	*f = (struct mg_msg_iface){.listen_port = d->listen_port, .mtu = d->cfg->mtu};
	cp_dp_send(d, &m);
}

static void sync_step(struct cp_device *d)
{
	if (d->resync && rte_ring_free_count(d->shm.cp2dp) > MG_RING_SIZE / 2)
		sync_begin(d);
	while (d->syncing && d->sync_cursor < d->max_peers) {
		struct cp_peer *p = d->by_slot[d->sync_cursor];
		if (p && ring_room(d) < 2 + p->n_aips / MG_ALLOWEDIPS_PER_MSG)
			return; /* the rest when the dataplane has drained some */
		d->sync_cursor++;
		if (p && (cp_dp_peer_push(d, p) || cp_dp_aips_push(d, p)))
			return; /* lost: cp_dp_send asked for a new sync */
	}
	if (!d->syncing)
		return;
	cp_dp_simple(d, MG_MSG_SYNC_END, 0);
	if (!d->syncing)
		return;
	d->syncing = false;
	cp_filter_resync(d);
	mg_log(LOG_INFO, "dataplane programmed: %u peer(s)", d->n_peers);
}

static uint64_t shm_inode(const char *name)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm/meshgate.%s", name);
	return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

void cp_dp_maintain(struct cp_device *d)
{
	uint64_t ino = shm_inode(d->cfg->name);

	if (d->attached && ino != d->shm_ino) {
		mg_log(LOG_WARNING, "dataplane restarted or gone; re-attaching");
		if (d->on_detach)
			d->on_detach(d); /* before the region goes */
		mg_shm_detach(&d->shm);
		d->attached = false;
	}
	if (!d->attached && ino) {
		int rc = mg_shm_attach(&d->shm, d->cfg->name);
		if (rc) {
			if (rc != -EAGAIN && rc != -ENOENT)
				mg_log(LOG_ERR, "cannot attach to dataplane: %s", strerror(-rc));
			return;
		}
		if (d->shm.hdr->max_peers < d->max_peers)
			mg_log(LOG_WARNING, "dataplane has %u peer slots, control %u",
			       d->shm.hdr->max_peers, d->max_peers);
		d->attached = true;
		d->shm_ino = ino;
		mg_log(LOG_INFO, "attached to dataplane pid %llu",
		       (unsigned long long)d->shm.hdr->dp_pid);
		adopt_slots(d);
		d->resync = true;
	}
	if (d->attached) {
		d->shm.hdr->cp_heartbeat_ns = mg_mono_ns();
		sync_step(d);
	}
}

static void on_endpoint(struct cp_device *d, const struct mg_msg *m)
{
	struct cp_peer *p = m->hdr.peer < d->max_peers ? d->by_slot[m->hdr.peer] : NULL;
	if (p) {
		p->endpoint = m->hdr.ep;
		cp_peer_note_direct(p);
	}
}

unsigned cp_dp_poll(struct cp_device *d)
{
	static struct mg_msg msgs[32];
	if (!d->attached)
		return 0;
	if (d->resync || d->syncing)
		sync_step(d);
	unsigned count = rte_ring_count(d->shm.dp2cp);
	if (count > MG_RING_SIZE / 8)
		d->under_load_until_ns = cp_now() + 1000000000ull;
	const struct mg_msg *udp[32];
	unsigned nudp = 0;
	unsigned n = mg_ring_recv_burst(d->shm.dp2cp, msgs, 32);
	for (unsigned i = 0; i < n; i++) {
		const struct mg_msg *m = &msgs[i];
		struct cp_peer *p = m->hdr.peer < d->max_peers ? d->by_slot[m->hdr.peer] : NULL;
		switch (m->hdr.type) {
		case MG_MSG_RX_UDP:
			if (mg_stun_is(m->data, m->hdr.len))
				cp_stun_rx(d, m, cp_now());
			else if (mg_disco_is(m->data, m->hdr.len))
				cp_disco_rx(d, m->data, m->hdr.len, &m->hdr.ep, NULL);
			else
				udp[nudp++] = m;
			break;
		case MG_MSG_NEED_HANDSHAKE:
			if (p)
				cp_hs_initiate(d, p, false);
			break;
		case MG_MSG_KEYPAIR_CONFIRMED:
			if (p)
				cp_hs_keypair_confirmed(d, p);
			break;
		case MG_MSG_ENDPOINT:
			on_endpoint(d, m);
			break;
		case MG_MSG_ACL_RESULT:
			cp_filter_result(d, m);
			break;
		case MG_MSG_DERP_TX:
			cp_derp_dp_tx(d, m);
			break;
		case MG_MSG_DP_HELLO:
			break;
		default:
			mg_log(LOG_DEBUG, "unexpected message %u from dataplane", m->hdr.type);
		}
	}
	cp_hs_rx_burst(d, udp, nudp);
	return n;
}
