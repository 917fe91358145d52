/* SPDX-License-Identifier: MIT */
/*
 * Applying the coordination server's network map to the device, on the main
 * thread. We keep the peers the server gave us, sorted by node_id, so that a
 * delta touches only the peers it names: a changed peer is updated in place
 * (its key, allowed IPs and endpoint only when they changed, so roaming and
 * sessions survive), a removed one is removed, and nothing else is looked
 * at. A full map is the same walk over the union of old and new.
 *
 * Config-file and UAPI peers are never touched: a netmap peer whose key is
 * already a non-netmap peer is skipped (logged), and an allowed IP that a
 * non-netmap peer owns stays with it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "cp.h"
#include "keys.h"
#include "log.h"

struct cp_coord_netmap {
	struct cp_coord_peer *v; /* sorted by node_id; entries own their aips */
	size_t n, cap;
};

struct cp_coord_netmap *cp_coord_netmap_new(void)
{
	return calloc(1, sizeof(struct cp_coord_netmap));
}

void cp_coord_netmap_free(struct cp_coord_netmap *nm)
{
	if (!nm)
		return;
	for (size_t i = 0; i < nm->n; i++)
		cp_coord_peer_free(&nm->v[i]);
	free(nm->v);
	free(nm);
}

size_t cp_coord_netmap_count(const struct cp_coord_netmap *nm)
{
	return nm->n;
}

const struct cp_coord_peer *cp_coord_netmap_peers(const struct cp_coord_netmap *nm, size_t *n)
{
	*n = nm->n;
	return nm->v;
}

const struct cp_coord_peer *cp_coord_netmap_find_key(const struct cp_coord_netmap *nm,
						     const uint8_t key[32])
{
	for (size_t i = 0; i < nm->n; i++)
		if (!memcmp(nm->v[i].node_key, key, 32))
			return &nm->v[i];
	return NULL;
}

/* Index of node_id, or of where it would go (*found false). */
static size_t lookup(const struct cp_coord_netmap *nm, uint64_t id, bool *found)
{
	size_t lo = 0, hi = nm->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (nm->v[mid].node_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < nm->n && nm->v[lo].node_id == id;
	return lo;
}

static void log_key(int level, const char *what, const struct cp_coord_peer *np)
{
	char key[45];

	mg_key_to_base64(np->node_key, key);
	mg_log(level, "netmap: node %llu %s (%s): %s", (unsigned long long)np->node_id, np->name,
	       key, what);
}

/* Remove the device peer with this key if it came from the netmap. */
static void remove_dev(struct cp_device *d, const uint8_t key[32])
{
	struct cp_peer *p = cp_peer_find(d, key);

	if (p && p->from_coord)
		cp_peer_remove(d, p);
}

/* The first direct IPv4 endpoint, else the first IPv6 one (the node lists
 * what STUN saw first); DERP endpoints are not direct. */
static struct mg_sockaddr first_endpoint(const struct cp_coord_peer *np)
{
	for (int family = AF_INET;; family = AF_INET6) {
		for (uint32_t i = 0; i < np->n_eps; i++)
			if (np->eps[i].family == family && np->eps[i].port &&
			    !mg_sockaddr_is_derp(&np->eps[i]))
				return np->eps[i];
		if (family == AF_INET6)
			return (struct mg_sockaddr){0};
	}
}

/* The node's home DERP region: its DERP endpoint's port (0: none). */
static uint16_t derp_region(const struct cp_coord_peer *np)
{
	for (uint32_t i = 0; i < np->n_eps; i++)
		if (mg_sockaddr_is_derp(&np->eps[i]))
			return np->eps[i].port;
	return 0;
}

static bool same_eps(const struct cp_coord_peer *a, const struct cp_coord_peer *b)
{
	return a->n_eps == b->n_eps && !memcmp(a->eps, b->eps, a->n_eps * sizeof(a->eps[0]));
}

static bool same_aips(const struct cp_coord_peer *a, const struct cp_coord_peer *b)
{
	return a->n_aips == b->n_aips &&
	       (!a->n_aips || !memcmp(a->aips, b->aips, a->n_aips * sizeof(a->aips[0])));
}

static int set_aips(struct cp_device *d, struct cp_peer *p, const struct cp_coord_peer *np)
{
	cp_peer_aip_clear(d, p);
	for (uint32_t i = 0; i < np->n_aips; i++) {
		struct cp_peer *owner = cp_aip_owner(d, &np->aips[i]);
		char pfx[MG_PREFIX_STRLEN];
		int ret;

		if (owner && owner != p && !owner->from_coord) {
			mg_log(LOG_WARNING, "netmap: node %llu: %s stays with configured peer %u",
			       (unsigned long long)np->node_id,
			       mg_prefix_fmt(&np->aips[i], pfx, sizeof(pfx)), owner->slot);
			continue;
		}
		if ((ret = cp_peer_aip_add(d, p, &np->aips[i])))
			return ret;
	}
	return 0;
}

/* Make the device agree with np; old is what we had for that node (or NULL). */
static int apply_peer(struct cp_device *d, const struct cp_coord_peer *old,
		      const struct cp_coord_peer *np)
{
	bool created = false, push = false;
	struct cp_peer *p;
	int ret;

	if (d->local.has_identity && !sodium_memcmp(np->node_key, d->local.public_key, 32))
		return 0; /* ourselves (our previous key, during a rotation) */
	if (old && memcmp(old->node_key, np->node_key, 32))
		remove_dev(d, old->node_key); /* the node rotated its key */
	p = cp_peer_find(d, np->node_key);
	if (p && !p->from_coord) {
		log_key(LOG_WARNING, "same key as a configured peer, which stays as it is", np);
		return 0;
	}
	if (!p) {
		if (!(p = cp_peer_create(d, np->node_key, &ret)))
			return ret;
		p->from_coord = true;
		p->persistent_keepalive = cp_coord_peer_keepalive(d);
		created = true;
	}
	snprintf(p->name, sizeof(p->name), "%s", np->name);
	/* Only a new endpoint list moves the endpoint: roaming is WireGuard's job. */
	if (created || !old || !same_eps(old, np)) {
		struct mg_sockaddr ep = first_endpoint(np);

		/* Without a direct endpoint, the relay is the way. */
		p->derp_region = derp_region(np);
		p->direct = ep;
		if (!p->derp_region)
			cp_disco_peer_free(d, p);
		else if ((ret = cp_disco_set_candidates(d, p, np->eps, np->n_eps)))
			return ret;
		if (!ep.family && p->derp_region)
			ep = mg_sockaddr_derp(p->derp_region);
		if (ep.family && memcmp(&ep, &p->endpoint, sizeof(ep))) {
			p->endpoint = ep;
			push = true;
		}
	}
	if (created || !old || memcmp(old->node_key, np->node_key, 32) || !same_aips(old, np))
		if ((ret = set_aips(d, p, np)))
			return ret;
	if (created || push)
		cp_dp_peer_push(d, p);
	if (created)
		log_key(LOG_INFO, "peer added", np);
	return 0;
}

/* Push the allowed IPs of every peer whose list changed (moves touch two). */
static void push_dirty(struct cp_device *d)
{
	for (uint32_t i = 0; i < d->max_peers; i++) {
		struct cp_peer *p = d->by_slot[i];

		if (p && p->aips_dirty)
			cp_dp_aips_push(d, p);
	}
}

static int reserve(struct cp_coord_netmap *nm, size_t n)
{
	struct cp_coord_peer *v;
	size_t cap = nm->cap ? nm->cap : 16;

	if (n <= nm->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	if (!(v = realloc(nm->v, cap * sizeof(*v))))
		return -ENOMEM;
	nm->v = v;
	nm->cap = cap;
	return 0;
}

/* Entry i takes np's contents (np is left empty). */
static void take(struct cp_coord_peer *dst, struct cp_coord_peer *np)
{
	*dst = *np;
	memset(np, 0, sizeof(*np));
}

static int apply_delta(struct cp_coord_netmap *nm, struct cp_device *d, struct cp_coord_map *m)
{
	int ret = 0;

	for (size_t k = 0; k < m->n_removed; k++) {
		bool found;
		size_t i = lookup(nm, m->removed[k], &found);

		if (!found)
			continue;
		remove_dev(d, nm->v[i].node_key);
		log_key(LOG_INFO, "peer removed", &nm->v[i]);
		cp_coord_peer_free(&nm->v[i]);
		memmove(&nm->v[i], &nm->v[i + 1], (nm->n - i - 1) * sizeof(nm->v[0]));
		nm->n--;
	}
	if (reserve(nm, nm->n + m->n_peers))
		return -ENOMEM;
	for (size_t k = 0; k < m->n_peers && !ret; k++) {
		bool found;
		size_t i = lookup(nm, m->peers[k].node_id, &found);

		ret = apply_peer(d, found ? &nm->v[i] : NULL, &m->peers[k]);
		if (found) {
			cp_coord_peer_free(&nm->v[i]);
		} else {
			memmove(&nm->v[i + 1], &nm->v[i], (nm->n - i) * sizeof(nm->v[0]));
			nm->n++;
		}
		take(&nm->v[i], &m->peers[k]);
	}
	return ret;
}

/* Both lists are sorted by node_id: one merge walk. */
static int apply_full(struct cp_coord_netmap *nm, struct cp_device *d, struct cp_coord_map *m)
{
	size_t i = 0, k = 0;
	int ret = 0;

	while (i < nm->n || k < m->n_peers) {
		struct cp_coord_peer *old = i < nm->n ? &nm->v[i] : NULL;
		struct cp_coord_peer *np = k < m->n_peers ? &m->peers[k] : NULL;

		if (old && (!np || old->node_id < np->node_id)) {
			remove_dev(d, old->node_key);
			log_key(LOG_INFO, "peer removed", old);
			i++;
		} else if (old && old->node_id == np->node_id) {
			if (!ret)
				ret = apply_peer(d, old, np);
			i++, k++;
		} else {
			if (!ret)
				ret = apply_peer(d, NULL, np);
			k++;
		}
	}
	for (i = 0; i < nm->n; i++)
		cp_coord_peer_free(&nm->v[i]);
	free(nm->v);
	nm->v = m->peers; /* the map's peers become ours */
	nm->n = nm->cap = m->n_peers;
	m->peers = NULL;
	m->n_peers = 0;
	return ret;
}

int cp_coord_netmap_apply(struct cp_coord_netmap *nm, struct cp_device *d, struct cp_coord_map *m)
{
	int ret;

	if (m->keepalive)
		return 0;
	ret = m->full ? apply_full(nm, d, m) : apply_delta(nm, d, m);
	push_dirty(d);
	if (ret)
		mg_log(LOG_ERR, "netmap %llu: the device refused a peer: %s; asking for a full map",
		       (unsigned long long)m->version, strerror(-ret));
	return ret;
}
