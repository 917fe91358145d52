/* SPDX-License-Identifier: MIT */
/*
 * Where the transport header of an inner IPv4/IPv6 packet is: what the
 * packet filter (acl.c) and the reverse-flow table (flow.c) both need. The
 * caller has checked that ip[0..len) is a whole IP packet; this only walks
 * the IPv4 options or the IPv6 extension headers, bounds-checked.
 */
#ifndef DP_L4_H
#define DP_L4_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct dp_l4 {
	uint8_t family;		  /* AF_INET or AF_INET6 */
	uint8_t proto;		  /* upper-layer protocol */
	bool later_frag;	  /* a non-first fragment: no transport header */
	uint16_t off;		  /* transport header offset (if !later_frag) */
	uint16_t l4_len;	  /* bytes from off to the end */
	const uint8_t *src, *dst; /* 4 or 16 bytes, network order */
};

#define DP_L4_MAX_EXT 8 /* IPv6 extension headers walked before giving up */

/* 0, or -1 for a packet that cannot be parsed (the filter denies it). */
static inline int dp_l4_parse(const uint8_t *ip, uint16_t len, struct dp_l4 *l)
{
	if (len < 20)
		return -1;
	if ((ip[0] >> 4) == 4) {
		uint16_t ihl = (uint16_t)((ip[0] & 0xf) * 4);
		uint16_t frag = (uint16_t)(((ip[6] << 8) | ip[7]) & 0x1fff);

		if (ihl < 20 || ihl > len)
			return -1;
		l->family = AF_INET;
		l->proto = ip[9];
		l->later_frag = frag != 0;
		l->off = ihl;
		l->src = ip + 12;
		l->dst = ip + 16;
	} else if ((ip[0] >> 4) == 6 && len >= 40) {
		uint8_t nh = ip[6];
		uint16_t off = 40;
		bool later = false;

		for (int i = 0; i < DP_L4_MAX_EXT; i++) {
			uint16_t hl;

			if (nh != 0 && nh != 43 && nh != 60 && nh != 44 && nh != 51)
				break;
			if (off + 8 > len)
				return -1;
			if (nh == 44) { /* fragment header */
				later = later || (((ip[off + 2] << 8) | ip[off + 3]) & 0xfff8) != 0;
				hl = 8;
			} else if (nh == 51) { /* AH */
				hl = (uint16_t)((ip[off + 1] + 2) * 4);
			} else {
				hl = (uint16_t)((ip[off + 1] + 1) * 8);
			}
			nh = ip[off];
			off = (uint16_t)(off + hl);
			if (off > len)
				return -1;
			if (later)
				break;
		}
		if (!later && (nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51))
			return -1; /* too many extension headers */
		l->family = AF_INET6;
		l->proto = nh;
		l->later_frag = later;
		l->off = off;
		l->src = ip + 8;
		l->dst = ip + 24;
	} else {
		return -1;
	}
	l->l4_len = (uint16_t)(len - l->off);
	return 0;
}

#endif /* DP_L4_H */
