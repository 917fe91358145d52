/* SPDX-License-Identifier: MIT */
/*
 * Per-source token bucket for handshake messages, as Linux's: each source
 * may send WG_RATELIMIT_PACKETS_PER_SECOND with a burst of
 * WG_RATELIMIT_BURST. Sources live in a fixed-size hash table (keyed by a
 * per-instance random SipHash key, so that collisions cannot be aimed at);
 * entries idle for a second, whose buckets are full again, are collected
 * lazily at most once a second. When the table is full, new sources are
 * refused until entries age out.
 *
 * IPv4 sources are keyed by their 4 bytes, IPv6 sources by their /64 (the
 * first 8 of 16 bytes), since one host usually owns a whole /64.
 *
 * Pure: the monotonic clock is an argument. Not thread safe: one owner.
 */
#ifndef MG_WG_RATELIMITER_H
#define MG_WG_RATELIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WG_RATELIMIT_PACKETS_PER_SECOND 20
#define WG_RATELIMIT_BURST		5

struct wg_ratelimiter;

/* NULL with errno EINVAL (max_entries 0 or too large) or ENOMEM. */
struct wg_ratelimiter *wg_ratelimiter_create(size_t max_entries);
void wg_ratelimiter_destroy(struct wg_ratelimiter *rl);

/* ip_len is 4 or 16; anything else is refused. */
bool wg_ratelimiter_allow(struct wg_ratelimiter *rl, const uint8_t *ip, size_t ip_len,
			  uint64_t mono_ns);

#endif /* MG_WG_RATELIMITER_H */
