/* SPDX-License-Identifier: MIT */
/*
 * Anti-replay for a keypair whose packets are decrypted on several workers
 * at once (one tunnel is not pinned to one core). Lock-free: the window is
 * WG_REPLAY_MT_SLOTS slots of {block tag, 64-bit bitmap}, each updated with
 * one 16-byte compare-and-swap.
 *
 * A counter n lives in block n / 64, slot block % SLOTS. A slot holding an
 * older block is stale (that block slid out of the window) and is taken
 * over; a slot holding a newer block means n is too old. Tags only grow, so
 * a counter, once accepted, can never be accepted again: the property the
 * window exists for. (A very old counter whose slot was never reused may be
 * accepted once; it was never seen, so that is no replay.)
 *
 * Callers check only authenticated packets.
 */
#ifndef MG_WG_REPLAY_MT_H
#define MG_WG_REPLAY_MT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "wg_messages.h"

#define WG_REPLAY_MT_SLOTS 64 /* 4096 counters */

_Static_assert(WG_REPLAY_MT_SLOTS * 64 >= 2048, "window must be at least 2048 packets");

struct wg_replay_mt_slot {
	uint64_t tag;  /* block number the bits describe */
	uint64_t bits; /* bit k: counter tag * 64 + k - 1 seen */
} __attribute__((aligned(16)));

struct wg_replay_mt {
	struct wg_replay_mt_slot slot[WG_REPLAY_MT_SLOTS];
};

static inline void wg_replay_mt_init(struct wg_replay_mt *r)
{
	memset(r, 0, sizeof(*r));
}

static inline unsigned __int128 wg_replay_mt_pack(uint64_t tag, uint64_t bits)
{
	return ((unsigned __int128)bits << 64) | tag;
}

/* The block of a counter (the window counts from 1: counter + 1 is its n
 * above) and a block's slot, in one place for the checks and a prefetch. */
static inline uint64_t wg_replay_mt_block(uint64_t counter)
{
	return (counter + 1) / 64;
}

static inline unsigned wg_replay_mt_index(uint64_t block)
{
	return (unsigned)(block % WG_REPLAY_MT_SLOTS);
}

/* The slot a counter is checked against: to prefetch before a check. */
static inline const void *wg_replay_mt_slot_of(const struct wg_replay_mt *r, uint64_t counter)
{
	return &r->slot[wg_replay_mt_index(wg_replay_mt_block(counter))];
}

static inline bool wg_replay_mt_check(struct wg_replay_mt *r, uint64_t counter)
{
	if (counter >= WG_REJECT_AFTER_MESSAGES)
		return false;
	uint64_t block = wg_replay_mt_block(counter), bit = 1ull << ((counter + 1) % 64);
	struct wg_replay_mt_slot *s = &r->slot[wg_replay_mt_index(block)];
	unsigned __int128 *p = (unsigned __int128 *)s;

	for (;;) {
		/* Two plain loads may tear; the CAS below validates them. */
		uint64_t tag = __atomic_load_n(&s->tag, __ATOMIC_RELAXED);
		uint64_t bits = __atomic_load_n(&s->bits, __ATOMIC_RELAXED);
		unsigned __int128 old = wg_replay_mt_pack(tag, bits), nv;

		if (tag > block || (tag == block && (bits & bit))) {
			/* Reject only on a consistent snapshot. */
			if (__sync_bool_compare_and_swap(p, old, old))
				return false;
			continue;
		}
		nv = tag == block ? wg_replay_mt_pack(block, bits | bit) : wg_replay_mt_pack(block, bit);
		if (__sync_bool_compare_and_swap(p, old, nv))
			return true;
	}
}

/*
 * A whole burst at once: counters that fall in the same block share one
 * compare-and-swap, so workers decrypting one tunnel do not fight over the
 * slot's cache line once per packet. ok[i] is set for accepted counters.
 * A counter twice in one burst is accepted once. Returns how many passed.
 * Same acceptance rule as wg_replay_mt_check, packet by packet.
 */
static inline unsigned wg_replay_mt_check_burst(struct wg_replay_mt *r, const uint64_t *counter,
						bool *ok, unsigned n)
{
	unsigned passed = 0;

	/* Traffic of many peers brings runs of one packet: nothing to share. */
	if (n == 1)
		return ok[0] = wg_replay_mt_check(r, counter[0]);
	for (unsigned i = 0; i < n; i++)
		ok[i] = false;
	for (unsigned i = 0; i < n; i++) {
		if (ok[i] || counter[i] >= WG_REJECT_AFTER_MESSAGES)
			continue;
		uint64_t block = wg_replay_mt_block(counter[i]), want = 0;
		/* Gather this burst's counters of the same block (after i). */
		for (unsigned j = i; j < n; j++)
			if (counter[j] < WG_REJECT_AFTER_MESSAGES &&
			    wg_replay_mt_block(counter[j]) == block)
				want |= 1ull << ((counter[j] + 1) % 64);
		struct wg_replay_mt_slot *s = &r->slot[wg_replay_mt_index(block)];
		unsigned __int128 *p = (unsigned __int128 *)s;
		uint64_t fresh;
		for (;;) {
			uint64_t tag = __atomic_load_n(&s->tag, __ATOMIC_RELAXED);
			uint64_t bits = __atomic_load_n(&s->bits, __ATOMIC_RELAXED);
			unsigned __int128 old = wg_replay_mt_pack(tag, bits);
			if (tag > block) {
				if (__sync_bool_compare_and_swap(p, old, old)) {
					fresh = 0;
					break;
				}
				continue;
			}
			uint64_t have = tag == block ? bits : 0;
			fresh = want & ~have;
			if (!fresh) {
				if (__sync_bool_compare_and_swap(p, old, old))
					break;
				continue;
			}
			if (__sync_bool_compare_and_swap(p, old, wg_replay_mt_pack(block, have | fresh)))
				break;
		}
		/* Hand each fresh bit to the first packet that carries it. */
		for (unsigned j = i; j < n; j++) {
			if (counter[j] >= WG_REJECT_AFTER_MESSAGES ||
			    wg_replay_mt_block(counter[j]) != block)
				continue;
			uint64_t bit = 1ull << ((counter[j] + 1) % 64);
			if (fresh & bit) {
				ok[j] = true;
				fresh &= ~bit;
				passed++;
			}
		}
		/* A rejected packet of this block is looked at again when the
		 * loop reaches it: one more CAS that cannot accept it (its bit
		 * is set, or its slot moved on). Rejections are rare. */
	}
	return passed;
}

#endif /* MG_WG_REPLAY_MT_H */
