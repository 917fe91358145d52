/* SPDX-License-Identifier: MIT */
/* Inner (tunnelled) IP packets: the length check every stage and every
 * pure packet function relies on. No DPDK, so harnesses share it. */
#ifndef DP_INNER_H
#define DP_INNER_H

#include <stdint.h>

/* The length of the whole IPv4/IPv6 packet at p per its header, or -1 if
 * p holds no valid IP header or fewer than that many bytes (avail). */
static inline int dp_inner_len(const uint8_t *p, uint32_t avail)
{
	if (avail < 1)
		return -1;
	if ((p[0] >> 4) == 4) {
		if (avail < 20 || (p[0] & 0xf) < 5)
			return -1;
		uint32_t tot = ((uint32_t)p[2] << 8) | p[3];
		return tot >= (uint32_t)(p[0] & 0xf) * 4 && tot <= avail ? (int)tot : -1;
	}
	if ((p[0] >> 4) == 6) {
		if (avail < 40)
			return -1;
		uint32_t tot = 40 + (((uint32_t)p[4] << 8) | p[5]);
		return tot <= avail ? (int)tot : -1;
	}
	return -1;
}

#endif /* DP_INNER_H */
