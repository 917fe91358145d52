/* SPDX-License-Identifier: MIT */
/*
 * The device model of the control process: our identity, the peers, their
 * allowed IPs (each prefix owned by one peer at a time, as in WireGuard),
 * and peer-slot / index allocation shared with the dataplane.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "cp.h"
#include "keys.h"
#include "log.h"

/* ---- allowed-IP ownership index ------------------------------------------ */

struct aip_node {
	struct mg_prefix p;
	struct cp_peer *owner;
	struct aip_node *next;
};

struct cp_aip_index {
	uint32_t mask;
	struct aip_node **b;
};

static uint32_t aip_hash(const struct mg_prefix *p)
{
	uint32_t h = 2166136261u ^ p->family ^ ((uint32_t)p->cidr << 8);
	for (int i = 0; i < 16; i++)
		h = (h ^ p->addr[i]) * 16777619u;
	return h;
}

static struct aip_node **aip_slot(struct cp_aip_index *x, const struct mg_prefix *p)
{
	struct aip_node **n = &x->b[aip_hash(p) & x->mask];
	while (*n && memcmp(&(*n)->p, p, sizeof(*p)))
		n = &(*n)->next;
	return n;
}

static struct cp_aip_index *aip_create(uint32_t buckets)
{
	struct cp_aip_index *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->mask = buckets - 1;
	x->b = calloc(buckets, sizeof(*x->b));
	if (!x->b) {
		free(x);
		return NULL;
	}
	return x;
}

static void aip_destroy(struct cp_aip_index *x)
{
	for (uint32_t i = 0; x && i <= x->mask; i++) {
		while (x->b[i]) {
			struct aip_node *n = x->b[i];
			x->b[i] = n->next;
			free(n);
		}
	}
	if (x)
		free(x->b);
	free(x);
}

static void peer_aip_forget(struct cp_peer *p, const struct mg_prefix *pfx)
{
	for (uint32_t i = 0; i < p->n_aips; i++) {
		if (!memcmp(&p->aips[i], pfx, sizeof(*pfx))) {
			p->aips[i] = p->aips[--p->n_aips];
			p->aips_dirty = true;
			return;
		}
	}
}

int cp_peer_aip_add(struct cp_device *d, struct cp_peer *p, const struct mg_prefix *pfx)
{
	struct aip_node **slot = aip_slot(d->aip, pfx);
	if (*slot) {
		if ((*slot)->owner == p)
			return 0;
		/* The prefix moves: the previous owner loses it. */
		peer_aip_forget((*slot)->owner, pfx);
		(*slot)->owner = p;
	} else {
		struct aip_node *n = calloc(1, sizeof(*n));
		if (!n)
			return -ENOMEM;
		n->p = *pfx;
		n->owner = p;
		*slot = n;
	}
	if (p->n_aips == p->cap_aips) {
		uint32_t cap = p->cap_aips ? p->cap_aips * 2 : 4;
		struct mg_prefix *v = realloc(p->aips, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->aips = v;
		p->cap_aips = cap;
	}
	p->aips[p->n_aips++] = *pfx;
	p->aips_dirty = true;
	return 0;
}

struct cp_peer *cp_aip_owner(struct cp_device *d, const struct mg_prefix *pfx)
{
	struct aip_node **slot = aip_slot(d->aip, pfx);

	return *slot ? (*slot)->owner : NULL;
}

void cp_peer_aip_clear(struct cp_device *d, struct cp_peer *p)
{
	for (uint32_t i = 0; i < p->n_aips; i++) {
		struct aip_node **slot = aip_slot(d->aip, &p->aips[i]);
		if (*slot && (*slot)->owner == p) {
			struct aip_node *n = *slot;
			*slot = n->next;
			free(n);
		}
	}
	p->n_aips = 0;
	p->aips_dirty = true;
}

/* ---- peers by public key --------------------------------------------------- */

/*
 * Open addressing with linear probing, at most half full (it doubles before
 * that), so that a lookup reads one or two entries. Entries point at peers
 * rather than name slots, since adopt_slots moves peers between slots. The
 * hash is SipHash-2-4 under a random key, as Linux's pubkey_hashtable: raw
 * key bytes would do for random keys, but vanity keys share their first
 * bytes, and lookups are made with whatever static key an initiation claims.
 */
struct cp_peer_index {
	uint32_t mask; /* capacity - 1, a power of two */
	uint32_t used;
	uint8_t key[crypto_shorthash_KEYBYTES];
	struct cp_peer **e; /* NULL: empty */
};

#define PEER_INDEX_MIN 64

static uint32_t index_home(const struct cp_peer_index *x, const uint8_t pub[32])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, pub, 32, x->key);
	memcpy(&v, h, sizeof(v));
	return (uint32_t)v & x->mask;
}

static void index_put(struct cp_peer_index *x, struct cp_peer *p)
{
	uint32_t i = index_home(x, p->noise.public_key);

	while (x->e[i])
		i = (i + 1) & x->mask;
	x->e[i] = p;
	x->used++;
}

static struct cp_peer_index *index_create(void)
{
	struct cp_peer_index *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->e = calloc(PEER_INDEX_MIN, sizeof(*x->e));
	if (!x->e) {
		free(x);
		return NULL;
	}
	x->mask = PEER_INDEX_MIN - 1;
	randombytes_buf(x->key, sizeof(x->key));
	return x;
}

/* Room for one more peer at most half full: -ENOMEM, x unchanged, if not. */
static int index_reserve(struct cp_peer_index *x)
{
	uint32_t cap = x->mask + 1;
	struct cp_peer **old = x->e;

	if (2 * (x->used + 1) <= cap)
		return 0;
	x->e = calloc(2 * (size_t)cap, sizeof(*x->e));
	if (!x->e) {
		x->e = old;
		return -ENOMEM;
	}
	x->mask = 2 * cap - 1;
	x->used = 0;
	for (uint32_t i = 0; i < cap; i++)
		if (old[i])
			index_put(x, old[i]);
	free(old);
	return 0;
}

/* Backward-shift deletion: no tombstones, so misses stay as short as hits. */
static void index_del(struct cp_peer_index *x, const struct cp_peer *p)
{
	uint32_t i = index_home(x, p->noise.public_key), j;

	while (x->e[i] != p) {
		if (!x->e[i])
			return; /* not indexed: cannot happen */
		i = (i + 1) & x->mask;
	}
	for (j = (i + 1) & x->mask; x->e[j]; j = (j + 1) & x->mask) {
		uint32_t home = index_home(x, x->e[j]->noise.public_key);

		/* e[j] may fill the hole at i unless its home lies in (i, j]. */
		if (((j - home) & x->mask) >= ((j - i) & x->mask)) {
			x->e[i] = x->e[j];
			i = j;
		}
	}
	x->e[i] = NULL;
	x->used--;
}

static void index_destroy(struct cp_peer_index *x)
{
	if (!x)
		return;
	free(x->e);
	sodium_memzero(x, sizeof(*x));
	free(x);
}

/* ---- peers ---------------------------------------------------------------- */

struct cp_peer *cp_peer_find(struct cp_device *d, const uint8_t pub[32])
{
	const struct cp_peer_index *x = d->by_key;

	if (!x)
		return NULL;
	for (uint32_t i = index_home(x, pub); x->e[i]; i = (i + 1) & x->mask)
		if (!sodium_memcmp(x->e[i]->noise.public_key, pub, 32))
			return x->e[i];
	return NULL;
}

/* Our indices encode the dataplane keypair slot: peer * 4 + k in the low
 * bits, random above, so both processes map an index to its peer in O(1). */
struct cp_peer *cp_peer_by_index(struct cp_device *d, uint32_t idx)
{
	uint32_t slot = (idx & (d->max_peers * MG_KP_PER_PEER - 1)) / MG_KP_PER_PEER;
	return idx ? d->by_slot[slot] : NULL;
}

uint32_t cp_index_alloc(struct cp_device *d, struct cp_peer *p)
{
	uint32_t kp_bits = d->max_peers * MG_KP_PER_PEER - 1;
	uint32_t used[3] = {p->kp_prev & kp_bits, p->kp_cur & kp_bits, p->kp_next & kp_bits};
	uint32_t base = p->slot * MG_KP_PER_PEER;

	for (uint32_t k = 0; k < MG_KP_PER_PEER; k++) {
		uint32_t s = base + k;
		if ((p->kp_prev && used[0] == s) || (p->kp_cur && used[1] == s) ||
		    (p->kp_next && used[2] == s))
			continue;
		uint32_t idx;
		do
			idx = (randombytes_random() & ~kp_bits) | s;
		while (idx == 0);
		return idx;
	}
	return 0; /* cannot happen: three roles, four slots */
}

/*
 * Peers hold handshake secrets and the preshared key, so they live in
 * sodium_malloc'd memory (guard pages, locked, never swapped), in slabs of
 * PEER_SLAB peers: one sodium_malloc per peer would cost three mappings
 * and an mlock each, and a hub of 100,000 peers would run past
 * vm.max_map_count. A freed peer is zeroed and goes on the free stack.
 */
#define PEER_SLAB 256

struct cp_peer_pool {
	struct cp_peer **slabs;
	uint32_t n_slabs;
	struct cp_peer **free; /* stack of free peers */
	uint32_t n_free, cap_free;
};

static struct cp_peer *peer_alloc(struct cp_device *d)
{
	struct cp_peer_pool *pool = d->pool;

	if (!pool->n_free) {
		uint32_t max_slabs = (d->max_peers + PEER_SLAB - 1) / PEER_SLAB;
		if (pool->n_slabs == max_slabs)
			return NULL;
		if (!pool->slabs && !(pool->slabs = calloc(max_slabs, sizeof(*pool->slabs))))
			return NULL;
		if (!pool->free && !(pool->free = calloc((size_t)max_slabs * PEER_SLAB,
							 sizeof(*pool->free))))
			return NULL;
		struct cp_peer *slab = sodium_malloc(PEER_SLAB * sizeof(*slab));
		if (!slab)
			return NULL;
		pool->slabs[pool->n_slabs++] = slab;
		for (uint32_t i = PEER_SLAB; i-- > 0;)
			pool->free[pool->n_free++] = &slab[i];
	}
	struct cp_peer *p = pool->free[--pool->n_free];
	memset(p, 0, sizeof(*p));
	return p;
}

static void peer_free(struct cp_device *d, struct cp_peer *p)
{
	sodium_memzero(p, sizeof(*p));
	d->pool->free[d->pool->n_free++] = p;
}

static void pool_destroy(struct cp_peer_pool *pool)
{
	if (!pool)
		return;
	for (uint32_t i = 0; i < pool->n_slabs; i++)
		sodium_free(pool->slabs[i]); /* zeroes */
	free(pool->slabs);
	free(pool->free);
	free(pool);
}

/* The lowest free slot: all slots below d->slot_hint are taken. */
static uint32_t slot_alloc(struct cp_device *d)
{
	uint32_t slot = d->slot_hint;

	while (slot < d->max_peers && d->by_slot[slot])
		slot++;
	d->slot_hint = slot + 1;
	return slot;
}

struct cp_peer *cp_peer_create(struct cp_device *d, const uint8_t pub[32], int *err)
{
	uint32_t slot = slot_alloc(d);
	if (slot >= d->max_peers) {
		d->slot_hint = d->max_peers;
		*err = -ENOSPC;
		return NULL;
	}
	if (!d->by_key)
		d->by_key = index_create();
	if (!d->by_key || index_reserve(d->by_key)) {
		*err = -ENOMEM;
		return NULL;
	}
	struct cp_peer *p = peer_alloc(d);
	if (!p) {
		d->slot_hint = slot;
		*err = -ENOMEM;
		return NULL;
	}
	p->slot = slot;
	p->created_ns = mg_mono_ns();
	if (wg_noise_remote_init(&p->noise, &d->local, pub, NULL)) {
		/* Keep the peer (WireGuard does) but it can never handshake. */
		memcpy(p->noise.public_key, pub, 32);
	}
	wg_cookie_maker_init(&p->cookie, pub);
	d->by_slot[slot] = p;
	index_put(d->by_key, p);
	d->n_peers++;
	*err = 0;
	return p;
}

void cp_peer_remove(struct cp_device *d, struct cp_peer *p)
{
	if (d->on_peer_remove)
		d->on_peer_remove(d, p);
	cp_peer_aip_clear(d, p);
	cp_dp_simple(d, MG_MSG_PEER_DEL, p->slot);
	d->by_slot[p->slot] = NULL;
	if (p->slot < d->slot_hint)
		d->slot_hint = p->slot;
	index_del(d->by_key, p);
	d->n_peers--;
	free(p->aips);
	cp_disco_peer_free(d, p);
	wg_noise_remote_clear(&p->noise);
	peer_free(d, p); /* zeroes */
}

int cp_peer_set_psk(struct cp_device *d, struct cp_peer *p, const uint8_t *psk)
{
	uint8_t pub[32];
	memcpy(pub, p->noise.public_key, 32);
	bool zero = !psk || sodium_is_zero(psk, 32);
	wg_noise_remote_clear(&p->noise);
	int rc = wg_noise_remote_init(&p->noise, &d->local, pub, zero ? NULL : psk);
	if (rc)
		memcpy(p->noise.public_key, pub, 32);
	p->has_psk = !zero;
	return 0;
}

int cp_device_set_private_key(struct cp_device *d, const uint8_t key[32])
{
	/* Setting the same key again (wg syncconf does) changes nothing, as in
	 * wireguard-go and Linux: sessions must survive it. */
	if (d->local.has_identity && !sodium_memcmp(d->local.private_key, key, 32))
		return 0;
	wg_noise_local_clear(&d->local);
	if (sodium_is_zero(key, 32)) {
		d->local.has_identity = false;
	} else {
		wg_noise_local_init(&d->local, key);
	}
	wg_cookie_checker_init(&d->checker, d->local.public_key);
	/* Every session was bound to the old identity. */
	for (uint32_t i = 0; i < d->max_peers; i++) {
		struct cp_peer *p = d->by_slot[i];
		if (!p)
			continue;
		if (d->local.has_identity && !sodium_memcmp(p->noise.public_key, d->local.public_key, 32)) {
			cp_peer_remove(d, p);
			continue;
		}
		uint8_t psk[32];
		bool had = p->has_psk;
		memcpy(psk, p->noise.preshared_key, 32);
		cp_peer_set_psk(d, p, had ? psk : NULL);
		sodium_memzero(psk, sizeof(psk));
		p->kp_prev = p->kp_cur = p->kp_next = 0;
		cp_dp_simple(d, MG_MSG_KEYPAIRS_CLEAR, p->slot);
	}
	return 0;
}

int cp_device_rotate_private_key(struct cp_device *d, const uint8_t key[32])
{
	if (!d->local.has_identity || sodium_is_zero(key, 32))
		return cp_device_set_private_key(d, key);
	wg_noise_local_clear(&d->local);
	wg_noise_local_init(&d->local, key);
	wg_cookie_checker_init(&d->checker, d->local.public_key);
	/* Keypairs do not depend on the static keys: only the precomputed
	 * DH(s, S) and handshakes in flight change. */
	for (uint32_t i = 0; i < d->max_peers; i++) {
		struct cp_peer *p = d->by_slot[i];
		if (!p)
			continue;
		if (!sodium_memcmp(p->noise.public_key, d->local.public_key, 32)) {
			cp_peer_remove(d, p);
			continue;
		}
		/* An initiation in flight was made with the old key: its
		 * retry (rekey_timeout) goes out with the new one. */
		wg_noise_remote_precompute(&p->noise, &d->local);
	}
	return 0;
}

static uint64_t secs(uint32_t s, uint32_t dflt)
{
	return (uint64_t)(s ? s : dflt) * 1000000000ull;
}

int cp_device_init(struct cp_device *d, struct mg_config *cfg)
{
	memset(d, 0, sizeof(*d));
	d->cfg = cfg;
	d->listen_port = cfg->listen_port;
	d->max_peers = 1;
	while (d->max_peers < cfg->max_peers)
		d->max_peers <<= 1;
	d->by_slot = calloc(d->max_peers, sizeof(*d->by_slot));
	d->pool = calloc(1, sizeof(*d->pool));
	d->hs_wanted = calloc((d->max_peers + 63) / 64, sizeof(*d->hs_wanted));
	d->aip = aip_create(d->max_peers < 1024 ? 1024 : d->max_peers);
	d->rl = wg_ratelimiter_create(8192);
	if (!d->by_slot || !d->pool || !d->hs_wanted || !d->aip || !d->rl)
		return -ENOMEM;
	const struct mg_timers_conf *t = &cfg->timers;
	d->t.rekey_after = secs(t->rekey_after_time, WG_REKEY_AFTER_TIME);
	d->t.reject_after = secs(t->reject_after_time, WG_REJECT_AFTER_TIME);
	d->t.keepalive = secs(t->keepalive_timeout, WG_KEEPALIVE_TIMEOUT);
	d->t.rekey_timeout = secs(t->rekey_timeout, WG_REKEY_TIMEOUT);
	d->t.rekey_attempt = secs(0, WG_REKEY_ATTEMPT_TIME);
	if (cfg->has_private_key)
		cp_device_set_private_key(d, cfg->private_key);
	for (int i = 0; i < cfg->n_peers; i++) {
		const struct mg_peer_conf *pc = &cfg->peers[i];
		int err;
		struct cp_peer *p = cp_peer_create(d, pc->public_key, &err);
		if (!p) {
			mg_log(LOG_ERR, "peer %d: %s", i, strerror(-err));
			return err;
		}
		snprintf(p->name, sizeof(p->name), "%s", pc->name);
		if (pc->has_psk)
			cp_peer_set_psk(d, p, pc->psk);
		p->endpoint = pc->endpoint;
		p->persistent_keepalive = pc->persistent_keepalive;
		p->no_replay = pc->benchmark_no_replay;
		if (p->no_replay)
			cp_peer_warn_no_replay(p, "configured");
		for (int k = 0; k < pc->n_allowed_ips; k++)
			if (cp_peer_aip_add(d, p, &pc->allowed_ips[k]))
				return -ENOMEM;
	}
	return 0;
}

void cp_device_fini(struct cp_device *d)
{
	cp_filter_fini(d);
	cp_stun_fini(d);
	cp_derp_fini(d);
	for (uint32_t i = 0; d->by_slot && i < d->max_peers; i++)
		if (d->by_slot[i]) {
			free(d->by_slot[i]->aips);
			cp_disco_peer_free(d, d->by_slot[i]);
		}
	pool_destroy(d->pool); /* zeroes every peer */
	free(d->by_slot);
	free(d->disco_peers);
	free(d->hs_wanted);
	index_destroy(d->by_key);
	aip_destroy(d->aip);
	if (d->rl)
		wg_ratelimiter_destroy(d->rl);
	wg_noise_local_clear(&d->local);
	sodium_memzero(&d->checker, sizeof(d->checker));
	if (d->attached)
		mg_shm_detach(&d->shm);
}

/* Loud on purpose: a gateway must not run like this by accident. */
void cp_peer_warn_no_replay(const struct cp_peer *p, const char *when)
{
	char key[45];

	mg_key_to_base64(p->noise.public_key, key);
	mg_log(LOG_WARNING,
	       "BENCHMARK MODE: peer %u %s%s%s: replay protection OFF (benchmark_no_replay), %s",
	       p->slot, key, p->name[0] ? " " : "", p->name, when);
}

void cp_peer_refresh_stats(struct cp_device *d, struct cp_peer *p)
{
	if (!d->attached)
		return;
	uint64_t rx = 0, tx = 0, lrx = 0, ltx = 0, lrxd = 0, ltxd = 0;
	for (uint32_t s = 0; s < d->shm.hdr->n_stat_slots; s++) {
		const struct mg_peer_stats *st = mg_shm_stats(&d->shm, s, p->slot);
		rx += st->rx_bytes;
		tx += st->tx_bytes;
		lrx = st->last_rx_tsc > lrx ? st->last_rx_tsc : lrx;
		ltx = st->last_tx_tsc > ltx ? st->last_tx_tsc : ltx;
		lrxd = st->last_rx_data_tsc > lrxd ? st->last_rx_data_tsc : lrxd;
		ltxd = st->last_tx_data_tsc > ltxd ? st->last_tx_data_tsc : ltxd;
	}
	p->rx_bytes = rx;
	p->tx_bytes = tx;
	p->last_rx_ns = mg_shm_tsc_to_ns(&d->shm, lrx);
	p->last_tx_ns = mg_shm_tsc_to_ns(&d->shm, ltx);
	p->last_rx_data_ns = mg_shm_tsc_to_ns(&d->shm, lrxd);
	p->last_tx_data_ns = mg_shm_tsc_to_ns(&d->shm, ltxd);
}
