/* SPDX-License-Identifier: MIT */
/*
 * The reverse-flow table (flow.h).
 *
 * An entry is one cache line: a sequence word, the last-seen TSC and the key.
 * The owning worker rewrites an entry as a seqlock writer (sequence odd while
 * the key changes); refreshing the timestamp of an entry whose key does not
 * change is a single atomic store, and happens at most every timeout/8, so
 * replies read by other workers do not keep bouncing the line. Readers take
 * the seqlock: a key read while it changes is a miss, never a false accept.
 * All shared words are accessed with __atomic builtins, so there is no data
 * race in the C sense either.
 */
#include <errno.h>
#include <string.h>

#include <netinet/in.h>

#include <rte_common.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_random.h>

#include "flow.h"
#include "l4.h"

#define WAYS	   4
#define READ_TRIES 3

struct flow_entry {
	uint64_t seq; /* odd: being rewritten */
	uint64_t ts;  /* last outbound packet (TSC); 0: empty */
	uint64_t key[5];
	uint64_t pad;
};

_Static_assert(sizeof(struct flow_entry) == 64, "one cache line per entry");

struct dp_flows {
	uint64_t timeout_tsc, refresh_tsc;
	uint64_t seed; /* keys the bucket hash, so buckets cannot be aimed at */
	uint32_t mask; /* buckets - 1 */
	unsigned n_workers;
	struct flow_entry *tab[]; /* per worker: (mask + 1) * WAYS entries */
};

struct dp_flows *dp_flows_create(unsigned n_workers, uint32_t entries_per_worker, uint64_t tsc_hz,
				 uint32_t timeout_s, int socket_id)
{
	struct dp_flows *f;
	uint32_t entries;

	if (n_workers == 0 || entries_per_worker == 0 || entries_per_worker > (1u << 28) ||
	    tsc_hz == 0 || timeout_s == 0) {
		rte_errno = EINVAL;
		return NULL;
	}
	entries = rte_align32pow2(RTE_MAX(entries_per_worker, (uint32_t)WAYS));
	f = rte_zmalloc_socket("dp_flows", sizeof(*f) + n_workers * sizeof(f->tab[0]),
			       RTE_CACHE_LINE_SIZE, socket_id);
	if (!f) {
		rte_errno = ENOMEM;
		return NULL;
	}
	f->timeout_tsc = tsc_hz * timeout_s;
	f->refresh_tsc = f->timeout_tsc / 8;
	f->seed = rte_rand() | 1;
	f->mask = entries / WAYS - 1;
	f->n_workers = n_workers;
	for (unsigned w = 0; w < n_workers; w++) {
		f->tab[w] = rte_zmalloc_socket("dp_flows_tab", entries * sizeof(struct flow_entry),
					       RTE_CACHE_LINE_SIZE, socket_id);
		if (!f->tab[w]) {
			dp_flows_free(f);
			rte_errno = ENOMEM;
			return NULL;
		}
	}
	return f;
}

void dp_flows_free(struct dp_flows *f)
{
	if (!f)
		return;
	for (unsigned w = 0; w < f->n_workers; w++)
		rte_free(f->tab[w]);
	rte_free(f);
}

void dp_flow_key_make(struct dp_flow_key *k, uint8_t family, const uint8_t *src, const uint8_t *dst,
		      const uint8_t sport[2], const uint8_t dport[2])
{
	memset(k, 0, sizeof(*k));
	k->w[0] = (uint64_t)family << 32 | (uint64_t)sport[0] << 24 | (uint64_t)sport[1] << 16 |
		  (uint64_t)dport[0] << 8 | dport[1];
	if (family == AF_INET) {
		memcpy(&k->w[1], src, 4);
		memcpy((uint8_t *)&k->w[1] + 4, dst, 4);
	} else {
		memcpy(&k->w[1], src, 16);
		memcpy(&k->w[3], dst, 16);
	}
}

static uint64_t key_hash(const struct dp_flows *f, const struct dp_flow_key *k)
{
	uint64_t h = f->seed;

	for (int i = 0; i < 5; i++) {
		h = (h ^ k->w[i]) * 0x9e3779b97f4a7c15ULL;
		h ^= h >> 29;
	}
	return h ^ (h >> 32);
}

static struct flow_entry *bucket(const struct dp_flows *f, unsigned worker, uint64_t h)
{
	return &f->tab[worker][(h & f->mask) * WAYS];
}

static bool key_eq(const uint64_t *a, const struct dp_flow_key *k)
{
	return a[0] == k->w[0] && a[1] == k->w[1] && a[2] == k->w[2] && a[3] == k->w[3] &&
	       a[4] == k->w[4];
}

/* The owner's plain reads of its own entries need no atomics (it is the writer). */
static void entry_write(struct flow_entry *e, const struct dp_flow_key *k, uint64_t now)
{
	uint64_t seq = e->seq;

	__atomic_store_n(&e->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (int i = 0; i < 5; i++)
		__atomic_store_n(&e->key[i], k->w[i], __ATOMIC_RELAXED);
	__atomic_store_n(&e->ts, now | 1, __ATOMIC_RELAXED); /* never 0 (empty) */
	__atomic_store_n(&e->seq, seq + 2, __ATOMIC_RELEASE);
}

void dp_flows_note_out(struct dp_flows *f, unsigned worker, uint64_t now_tsc, const uint8_t *ip,
		       uint16_t len)
{
	struct dp_flow_key k;
	struct flow_entry *b, *victim;
	struct dp_l4 l;

	if (dp_l4_parse(ip, len, &l) || l.proto != IPPROTO_UDP || l.later_frag || l.l4_len < 8)
		return;
	dp_flow_key_make(&k, l.family, l.src, l.dst, ip + l.off, ip + l.off + 2);
	b = bucket(f, worker, key_hash(f, &k));
	victim = &b[0];
	for (int i = 0; i < WAYS; i++) {
		if (b[i].ts && key_eq(b[i].key, &k)) {
			if ((int64_t)(now_tsc - b[i].ts) >= (int64_t)f->refresh_tsc)
				__atomic_store_n(&b[i].ts, now_tsc | 1, __ATOMIC_RELAXED);
			return;
		}
		if (b[i].ts < victim->ts) /* empty (0) or least recently seen */
			victim = &b[i];
	}
	entry_write(victim, &k, now_tsc);
}

/* A seqlocked read of e: whether it holds k, seen within the timeout. */
static bool entry_match(const struct dp_flows *f, const struct flow_entry *e, uint64_t now,
			const struct dp_flow_key *k)
{
	for (int t = 0; t < READ_TRIES; t++) {
		uint64_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE), key[5], ts;

		if (s1 & 1)
			continue;
		for (int i = 0; i < 5; i++)
			key[i] = __atomic_load_n(&e->key[i], __ATOMIC_RELAXED);
		ts = __atomic_load_n(&e->ts, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != s1)
			continue;
		return ts && key_eq(key, k) && (int64_t)(now - ts) < (int64_t)f->timeout_tsc;
	}
	return false; /* still being rewritten: a miss is the safe answer */
}

bool dp_flows_seen(const struct dp_flows *f, uint64_t now_tsc, const struct dp_flow_key *k)
{
	uint64_t h = key_hash(f, k);

	for (unsigned w = 0; w < f->n_workers; w++) {
		const struct flow_entry *b = bucket(f, w, h);

		for (int i = 0; i < WAYS; i++)
			if (entry_match(f, &b[i], now_tsc, k))
				return true;
	}
	return false;
}
