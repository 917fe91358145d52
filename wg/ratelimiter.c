// SPDX-License-Identifier: MIT
/*
 * Token bucket per source. Tokens are nanoseconds: a packet costs 1/20 s
 * and a bucket holds at most 5 packets' worth, so that the burst is part of
 * the bucket rather than of the rate (like Linux's ratelimiter.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ratelimiter.h"

#define NSEC_PER_SEC 1000000000ULL
#define PACKET_COST  (NSEC_PER_SEC / WG_RATELIMIT_PACKETS_PER_SECOND)
#define TOKEN_MAX    (PACKET_COST * WG_RATELIMIT_BURST)
/* An entry idle this long has a full bucket: forgetting it changes nothing. */
#define IDLE_NS	       NSEC_PER_SEC
#define GC_INTERVAL_NS NSEC_PER_SEC
#define MAX_ENTRIES    (1U << 24)
#define NIL	       UINT32_MAX

_Static_assert(TOKEN_MAX <= IDLE_NS, "idle entries must have full buckets");

struct entry {
	uint64_t last_ns;
	uint64_t tokens;
	uint32_t next; /* next in the bucket chain or the free list, or NIL */
	uint8_t key_len;
	uint8_t key[8];
};

struct wg_ratelimiter {
	uint32_t *buckets; /* chain heads, NIL if empty */
	uint32_t bucket_mask;
	uint32_t free_head;
	size_t max_entries, used;
	uint64_t last_gc_ns;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct entry entries[];
};

struct wg_ratelimiter *wg_ratelimiter_create(size_t max_entries)
{
	struct wg_ratelimiter *rl;
	size_t nbuckets = 1;

	if (!max_entries || max_entries > MAX_ENTRIES) {
		errno = EINVAL;
		return NULL;
	}
	if (sodium_init() < 0) {
		errno = ENOMEM;
		return NULL;
	}
	while (nbuckets < max_entries)
		nbuckets <<= 1;

	rl = calloc(1, sizeof(*rl) + max_entries * sizeof(rl->entries[0]));
	if (!rl)
		return NULL;
	rl->buckets = malloc(nbuckets * sizeof(rl->buckets[0]));
	if (!rl->buckets) {
		free(rl);
		return NULL;
	}
	for (size_t i = 0; i < nbuckets; i++)
		rl->buckets[i] = NIL;
	for (size_t i = 0; i < max_entries; i++)
		rl->entries[i].next = i + 1 < max_entries ? (uint32_t)(i + 1) : NIL;
	rl->bucket_mask = (uint32_t)(nbuckets - 1);
	rl->free_head = 0;
	rl->max_entries = max_entries;
	randombytes_buf(rl->hash_key, sizeof(rl->hash_key));
	return rl;
}

void wg_ratelimiter_destroy(struct wg_ratelimiter *rl)
{
	if (!rl)
		return;
	free(rl->buckets);
	free(rl);
}

static uint32_t bucket_of(const struct wg_ratelimiter *rl, const uint8_t *key, size_t key_len)
{
	uint8_t h[crypto_shorthash_BYTES];

	crypto_shorthash(h, key, key_len, rl->hash_key);
	return ((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
		(uint32_t)h[3] << 24) &
	       rl->bucket_mask;
}

static void gc(struct wg_ratelimiter *rl, uint64_t now)
{
	if (now - rl->last_gc_ns < GC_INTERVAL_NS)
		return;
	rl->last_gc_ns = now;

	for (uint32_t b = 0; b <= rl->bucket_mask; b++) {
		uint32_t *link = &rl->buckets[b];

		while (*link != NIL) {
			uint32_t i = *link;
			struct entry *e = &rl->entries[i];

			if (now < e->last_ns || now - e->last_ns < IDLE_NS) {
				link = &e->next;
				continue;
			}
			*link = e->next;
			e->next = rl->free_head;
			rl->free_head = i;
			rl->used--;
		}
	}
}

static struct entry *lookup(struct wg_ratelimiter *rl, uint32_t bucket, const uint8_t *key,
			    size_t key_len)
{
	for (uint32_t i = rl->buckets[bucket]; i != NIL; i = rl->entries[i].next) {
		struct entry *e = &rl->entries[i];

		if (e->key_len == key_len && !memcmp(e->key, key, key_len))
			return e;
	}
	return NULL;
}

static bool take_token(struct entry *e, uint64_t now)
{
	uint64_t tokens = e->tokens;

	if (now > e->last_ns) {
		uint64_t elapsed = now - e->last_ns;

		tokens = elapsed >= TOKEN_MAX - tokens ? TOKEN_MAX : tokens + elapsed;
		e->last_ns = now;
	}
	if (tokens < PACKET_COST) {
		e->tokens = tokens;
		return false;
	}
	e->tokens = tokens - PACKET_COST;
	return true;
}

/* A new source starts with a full bucket, less this packet. */
static bool insert(struct wg_ratelimiter *rl, uint32_t bucket, const uint8_t *key, size_t key_len,
		   uint64_t now)
{
	uint32_t i = rl->free_head;
	struct entry *e;

	if (i == NIL)
		return false;
	e = &rl->entries[i];
	rl->free_head = e->next;
	rl->used++;

	memcpy(e->key, key, key_len);
	e->key_len = (uint8_t)key_len;
	e->last_ns = now;
	e->tokens = TOKEN_MAX - PACKET_COST;
	e->next = rl->buckets[bucket];
	rl->buckets[bucket] = i;
	return true;
}

bool wg_ratelimiter_allow(struct wg_ratelimiter *rl, const uint8_t *ip, size_t ip_len,
			  uint64_t mono_ns)
{
	/* IPv6 sources are keyed by their /64; the length keeps families apart. */
	size_t key_len = ip_len == 16 ? 8 : ip_len;
	struct entry *e;
	uint32_t bucket;

	if (ip_len != 4 && ip_len != 16)
		return false;
	gc(rl, mono_ns);

	bucket = bucket_of(rl, ip, key_len);
	e = lookup(rl, bucket, ip, key_len);
	if (e)
		return take_token(e, mono_ns);
	return insert(rl, bucket, ip, key_len, mono_ns);
}
