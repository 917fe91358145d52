/* SPDX-License-Identifier: MIT */
/*
 * Path MTU toward the tunnel (see pmtu.h): too-big errors, IPv4
 * fragmentation, MSS clamping. Pure byte functions.
 */
#include <string.h>

#include "pmtu.h"

#define IPPROTO_ICMP_	1
#define IPPROTO_TCP_	6
#define IPPROTO_ICMPV6_ 58

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t n)
{
	for (; n >= 2; p += 2, n -= 2)
		sum += rd16(p);
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static bool icmp4_is_error(uint8_t type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

bool dp_pmtu_may_report(const uint8_t *ip, size_t len)
{
	if ((ip[0] >> 4) == 4) {
		size_t ihl = (size_t)(ip[0] & 0xf) * 4;
		const uint8_t *src = ip + 12, *dst = ip + 16;
		if (rd16(ip + 6) & 0x1fff) /* non-first fragment */
			return false;
		if (all_zero(src, 4) || src[0] >= 224 || dst[0] >= 224 ||
		    (src[0] == 255 && src[1] == 255 && src[2] == 255 && src[3] == 255))
			return false;
		if (ip[9] == IPPROTO_ICMP_ && len >= ihl + 1 && icmp4_is_error(ip[ihl]))
			return false;
		return true;
	}
	const uint8_t *src = ip + 8;
	if (all_zero(src, 16) || src[0] == 0xff)
		return false;
	/* An ICMPv6 error right after the fixed header (no extension headers
	 * in between: with them we report, which is allowed too). */
	if (ip[6] == IPPROTO_ICMPV6_ && len >= 41 && ip[40] < 128)
		return false;
	return true;
}

size_t dp_pmtu_too_big(const uint8_t *ip, size_t len, uint16_t mtu, const uint8_t *src,
		       uint8_t *out, size_t cap)
{
	if (!dp_pmtu_may_report(ip, len))
		return 0;
	if ((ip[0] >> 4) == 4) {
		size_t quote = len < DP_PMTU_ICMP4_MAX - 28 ? len : DP_PMTU_ICMP4_MAX - 28;
		size_t tot = 28 + quote;
		if (cap < tot)
			return 0;
		memset(out, 0, 28);
		out[0] = 0x45;
		wr16(out + 2, (uint16_t)tot);
		out[8] = 64; /* TTL */
		out[9] = IPPROTO_ICMP_;
		memcpy(out + 12, src, 4);
		memcpy(out + 16, ip + 12, 4); /* back to the sender */
		wr16(out + 10, (uint16_t)~fold(sum16(0, out, 20)));
		uint8_t *icmp = out + 20;
		icmp[0] = 3; /* destination unreachable */
		icmp[1] = 4; /* fragmentation needed and DF set */
		wr16(icmp + 6, mtu);
		memcpy(icmp + 8, ip, quote);
		wr16(icmp + 2, (uint16_t)~fold(sum16(0, icmp, 8 + quote)));
		return tot;
	}
	size_t quote = len < DP_PMTU_ICMP6_MAX - 48 ? len : DP_PMTU_ICMP6_MAX - 48;
	size_t plen = 8 + quote, tot = 40 + plen;
	if (cap < tot)
		return 0;
	memset(out, 0, 48);
	out[0] = 0x60;
	wr16(out + 4, (uint16_t)plen);
	out[6] = IPPROTO_ICMPV6_;
	out[7] = 64;
	memcpy(out + 8, src, 16);
	memcpy(out + 24, ip + 8, 16);
	uint8_t *icmp = out + 40;
	icmp[0] = 2; /* packet too big */
	icmp[1] = 0;
	icmp[4] = 0;
	icmp[5] = 0;
	wr16(icmp + 6, mtu);
	memcpy(icmp + 8, ip, quote);
	uint32_t sum = sum16(0, out + 8, 32); /* pseudo-header: addresses */
	sum += (uint32_t)plen + IPPROTO_ICMPV6_;
	sum = sum16(sum, icmp, plen);
	wr16(icmp + 2, (uint16_t)~fold(sum));
	return tot;
}

bool dp_pmtu_may_fragment4(const uint8_t *ip, size_t len)
{
	(void)len;
	return (ip[0] >> 4) == 4 && !(rd16(ip + 6) & 0x4000);
}

size_t dp_pmtu_fragment4(const uint8_t *ip, size_t len, uint16_t mtu, size_t *offset, uint8_t *out,
			 size_t cap)
{
	size_t ihl = (size_t)(ip[0] & 0xf) * 4;
	size_t payload = len - ihl;
	if (*offset >= payload)
		return 0;
	bool first = *offset == 0;
	size_t hlen = first ? ihl : 20;
	if (mtu < hlen + 8)
		return 0;
	size_t chunk = ((size_t)mtu - hlen) & ~(size_t)7;
	bool last = *offset + chunk >= payload;
	if (last)
		chunk = payload - *offset;
	if (cap < hlen + chunk)
		return 0;
	memcpy(out, ip, 20);
	if (first)
		memcpy(out + 20, ip + 20, ihl - 20);
	else
		out[0] = 0x45;
	uint16_t orig = rd16(ip + 6);
	uint16_t frag_off = (uint16_t)((orig & 0x1fff) + *offset / 8);
	/* More fragments follow unless this is our last piece of a packet that
	 * was itself the last (or only) fragment. */
	bool mf = !last || (orig & 0x2000);
	wr16(out + 6, (uint16_t)(frag_off | (mf ? 0x2000 : 0)));
	wr16(out + 2, (uint16_t)(hlen + chunk));
	out[10] = out[11] = 0;
	wr16(out + 10, (uint16_t)~fold(sum16(0, out, hlen)));
	memcpy(out + hlen, ip + ihl + *offset, chunk);
	*offset += chunk;
	return hlen + chunk;
}

bool dp_pmtu_clamp_mss(uint8_t *ip, size_t len, uint16_t mtu)
{
	size_t l4;
	uint16_t limit;
	if ((ip[0] >> 4) == 4) {
		if (ip[9] != IPPROTO_TCP_ || (rd16(ip + 6) & 0x1fff))
			return false;
		l4 = (size_t)(ip[0] & 0xf) * 4;
		limit = (uint16_t)(mtu - 40);
	} else {
		if (ip[6] != IPPROTO_TCP_) /* behind extension headers: left alone */
			return false;
		l4 = 40;
		limit = (uint16_t)(mtu - 60);
	}
	if (len < l4 + 20)
		return false;
	uint8_t *tcp = ip + l4;
	size_t doff = (size_t)(tcp[12] >> 4) * 4;
	if (!(tcp[13] & 0x02) || doff < 20 || l4 + doff > len)
		return false;
	for (size_t i = 20; i < doff;) {
		uint8_t kind = tcp[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= doff || tcp[i + 1] < 2 || i + tcp[i + 1] > doff)
			break;
		if (kind == 2 && tcp[i + 1] == 4) {
			uint16_t mss = rd16(tcp + i + 2);
			if (mss <= limit)
				return false;
			/* RFC 1624: HC' = ~(~HC + ~m + m'); the option sits at an
			 * even offset or not, so sum it as it lies. */
			uint32_t sum = (uint16_t)~rd16(tcp + 16);
			if ((i & 1) == 0) {
				sum += (uint16_t)~mss;
				sum += limit;
			} else {
				uint8_t b[4] = {0, tcp[i + 2], tcp[i + 3], 0};
				uint8_t c[4] = {0, (uint8_t)(limit >> 8), (uint8_t)limit, 0};
				sum += (uint16_t)~rd16(b) + (uint16_t)~rd16(b + 2);
				sum += rd16(c) + rd16(c + 2);
			}
			wr16(tcp + i + 2, limit);
			wr16(tcp + 16, (uint16_t)~fold(sum));
			return true;
		}
		i += tcp[i + 1];
	}
	return false;
}
