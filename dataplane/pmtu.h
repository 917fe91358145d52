/* SPDX-License-Identifier: MIT */
/*
 * Path MTU toward the tunnel: ICMP "fragmentation needed" / ICMPv6 "packet
 * too big" errors for packets larger than the tunnel MTU, fragmentation of
 * IPv4 packets that allow it, and TCP MSS clamping on SYNs.
 *
 * Pure functions of bytes (no mbufs, no DPDK state) so they are tested and
 * fuzzed alone; the main lcore and the workers call them on packet data.
 * Every `ip` argument is a whole inner IP packet of `len` bytes that the
 * caller already validated with dp_inner_len().
 */
#ifndef DP_PMTU_H
#define DP_PMTU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest ICMP error we write: IPv4 errors stay within 576 bytes
 * (RFC 1812 4.3.2.3), IPv6 ones within the minimum MTU (RFC 4443 2.4). */
#define DP_PMTU_ICMP4_MAX 576
#define DP_PMTU_ICMP6_MAX 1280

/* True if the rules for ICMP errors (RFC 1122 3.2.2, RFC 4443 2.4) allow
 * sending one about this packet: not about an ICMP error, not about a
 * non-first fragment, not to an unspecified, multicast or broadcast source,
 * not about an IPv4 packet sent to multicast/broadcast. */
bool dp_pmtu_may_report(const uint8_t *ip, size_t len);

/* Writes an ICMP error about `ip` telling its sender the tunnel takes at
 * most `mtu` bytes: IPv4 type 3 code 4 with the next-hop MTU, or ICMPv6
 * type 2 with the MTU. `src` is our address of the packet's family (4 or
 * 16 bytes), used as the error's source. Returns the bytes written to out
 * (a whole IP packet, checksums done), or 0 if cap is too small or
 * dp_pmtu_may_report() says no. */
size_t dp_pmtu_too_big(const uint8_t *ip, size_t len, uint16_t mtu, const uint8_t *src,
		       uint8_t *out, size_t cap);

/* True if ip is IPv4 without the don't-fragment flag, i.e. a router may
 * fragment it instead of reporting it. */
bool dp_pmtu_may_fragment4(const uint8_t *ip, size_t len);

/* One fragment of an IPv4 packet for a link of `mtu` bytes: writes the
 * fragment that carries payload from *offset on into out and advances
 * *offset; returns its length, or 0 when done or on error (cap too small,
 * mtu too small for 8 payload bytes). The first fragment keeps the options;
 * later ones carry none (options marked "copied" are rare enough that we
 * document the omission instead of parsing them). An already fragmented
 * packet is fragmented further with the right offsets and MF flag. */
size_t dp_pmtu_fragment4(const uint8_t *ip, size_t len, uint16_t mtu, size_t *offset, uint8_t *out,
			 size_t cap);

/* TCP MSS clamping: if ip is a TCP segment with SYN set whose MSS option
 * exceeds what fits in `mtu` (mtu - 40 for IPv4, mtu - 60 for IPv6), lower
 * it and update the TCP checksum incrementally. Returns true if changed. */
bool dp_pmtu_clamp_mss(uint8_t *ip, size_t len, uint16_t mtu);

#endif /* DP_PMTU_H */
