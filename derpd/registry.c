/* SPDX-License-Identifier: MIT */
/*
 * Client public key -> connection: a chained hash table sized once for
 * --max-clients. Keys are chosen by clients, so the hash is SipHash with a
 * random key (crypto_shorthash): nobody can aim many keys at one chain.
 */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "derpd.h"

_Static_assert(sizeof(((struct registry *)0)->hash_key) == crypto_shorthash_KEYBYTES,
	       "registry hash key size");

static size_t bucket(const struct registry *r, const uint8_t key[32])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, key, MG_DERP_KEY_LEN, r->hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)v & r->mask;
}

int derpd_registry_init(struct registry *r, size_t expect)
{
	size_t n = 16;

	while (n < expect && n < ((size_t)1 << 30))
		n <<= 1;
	r->buckets = calloc(n, sizeof(*r->buckets));
	if (!r->buckets)
		return -ENOMEM;
	r->mask = n - 1;
	randombytes_buf(r->hash_key, sizeof(r->hash_key));
	return 0;
}

void derpd_registry_free(struct registry *r)
{
	free(r->buckets);
	r->buckets = NULL;
}

struct conn *derpd_registry_find(const struct registry *r, const uint8_t key[32])
{
	struct conn *c = r->buckets[bucket(r, key)];

	while (c && memcmp(c->key, key, MG_DERP_KEY_LEN))
		c = c->hnext;
	return c;
}

/* The caller has removed any connection with the same key. */
void derpd_registry_add(struct registry *r, struct conn *c)
{
	struct conn **b = &r->buckets[bucket(r, c->key)];

	c->hnext = *b;
	*b = c;
}

void derpd_registry_del(struct registry *r, struct conn *c)
{
	struct conn **p = &r->buckets[bucket(r, c->key)];

	while (*p && *p != c)
		p = &(*p)->hnext;
	if (*p)
		*p = c->hnext;
	c->hnext = NULL;
}
