/* SPDX-License-Identifier: MIT */
/*
 * Replay protection for data packet counters: an RFC 6479 sliding window
 * (whitepaper 5.4.6), header-only because the dataplane calls it per packet
 * inside its burst loop.
 *
 * The bitmap is a ring of WG_REPLAY_WINDOW bits in 64-bit words. When the
 * window advances, whole words are cleared at once, so the word holding the
 * oldest counters may be partly reused: of WG_REPLAY_WINDOW bits, only
 * WG_REPLAY_USABLE = WG_REPLAY_WINDOW - 64 are guaranteed, as in Linux.
 * A counter is accepted if it was never seen and is at most WG_REPLAY_USABLE
 * below the highest accepted one.
 *
 * Call wg_replay_check only after the packet has authenticated: a forged
 * counter would otherwise move the window. Not thread safe: one owner.
 */
#ifndef MG_WG_REPLAY_H
#define MG_WG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "wg_messages.h"

#define WG_REPLAY_WINDOW 4096
#define WG_REPLAY_WORDS	 (WG_REPLAY_WINDOW / 64)
#define WG_REPLAY_USABLE (WG_REPLAY_WINDOW - 64)

_Static_assert(WG_REPLAY_WINDOW >= 2048, "window must be at least 2048 bits");
_Static_assert((WG_REPLAY_WORDS & (WG_REPLAY_WORDS - 1)) == 0, "window is a power of two");

struct wg_replay {
	uint64_t last; /* highest accepted counter + 1; 0 before the first packet */
	uint64_t bitmap[WG_REPLAY_WORDS];
};

static inline void wg_replay_init(struct wg_replay *r)
{
	memset(r, 0, sizeof(*r));
}

/* true = accept (and record); false = replayed, too old, or past the limit. */
static inline bool wg_replay_check(struct wg_replay *r, uint64_t counter)
{
	uint64_t n, word, bit;

	if (counter >= WG_REJECT_AFTER_MESSAGES)
		return false;
	/* Work on counter + 1 so that last == 0 can mean "nothing seen yet". */
	n = counter + 1;
	if (n + WG_REPLAY_USABLE < r->last)
		return false;

	word = n / 64;
	if (n > r->last) {
		uint64_t cur = r->last / 64;
		uint64_t top = word - cur < WG_REPLAY_WORDS ? word - cur : WG_REPLAY_WORDS;

		/* Clear the words the window slides over; bits of cur stay valid. */
		for (uint64_t i = 1; i <= top; i++)
			r->bitmap[(cur + i) % WG_REPLAY_WORDS] = 0;
		r->last = n;
	}

	word %= WG_REPLAY_WORDS;
	bit = 1ULL << (n % 64);
	if (r->bitmap[word] & bit)
		return false;
	r->bitmap[word] |= bit;
	return true;
}

#endif /* MG_WG_REPLAY_H */
