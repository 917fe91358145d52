/* SPDX-License-Identifier: MIT */
/*
 * Tests for pmtu.c: ICMP too-big errors (fields and checksums, checked with
 * a separate byte-wise checksum), the rules about when not to send one,
 * IPv4 fragmentation (reassembled and compared with the original for many
 * sizes and MTUs) and MSS clamping at both option alignments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmtu.h"

static int n_pass, n_fail;

#define CHECK(c) check((c), #c, __LINE__)

static void check(int ok, const char *what, int line)
{
	if (ok) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "FAIL line %d: %s\n", line, what);
}

/* Reference checksum: byte by byte, 64-bit accumulator, folded at the end. */
static uint16_t ref_sum(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	uint64_t s = 0;
	size_t k = 0;
	for (size_t i = 0; i < na; i++, k++)
		s += (k & 1) ? a[i] : (uint64_t)a[i] << 8;
	for (size_t i = 0; i < nb; i++, k++)
		s += (k & 1) ? b[i] : (uint64_t)b[i] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static size_t mk4(uint8_t *p, size_t tot, uint8_t proto, int df)
{
	memset(p, 0, tot);
	p[0] = 0x45;
	p[2] = (uint8_t)(tot >> 8);
	p[3] = (uint8_t)tot;
	p[4] = 0x12;
	p[5] = 0x34;
	p[6] = df ? 0x40 : 0;
	p[8] = 64;
	p[9] = proto;
	uint8_t s[4] = {10, 88, 0, 7}, d[4] = {10, 99, 1, 2};
	memcpy(p + 12, s, 4);
	memcpy(p + 16, d, 4);
	for (size_t i = 20; i < tot; i++)
		p[i] = (uint8_t)(i * 7);
	uint16_t c = (uint16_t)~ref_sum(p, 20, NULL, 0);
	p[10] = (uint8_t)(c >> 8);
	p[11] = (uint8_t)c;
	return tot;
}

static size_t mk6(uint8_t *p, size_t tot, uint8_t nh)
{
	memset(p, 0, tot);
	p[0] = 0x60;
	p[4] = (uint8_t)((tot - 40) >> 8);
	p[5] = (uint8_t)(tot - 40);
	p[6] = nh;
	p[7] = 64;
	p[8] = 0xfd;
	p[9] = 0x88;
	p[23] = 7;
	p[24] = 0xfd;
	p[25] = 0x99;
	p[39] = 2;
	for (size_t i = 40; i < tot; i++)
		p[i] = (uint8_t)(i * 3);
	return tot;
}

static void test_too_big4(void)
{
	static uint8_t ip[1500], out[2048];
	uint8_t me[4] = {10, 88, 0, 254};
	size_t len = mk4(ip, 1500, 17, 1);
	size_t n = dp_pmtu_too_big(ip, len, 1420, me, out, sizeof(out));
	CHECK(n == 576);
	CHECK(out[0] == 0x45 && be16(out + 2) == n && out[9] == 1);
	CHECK(ref_sum(out, 20, NULL, 0) == 0xffff);
	CHECK(!memcmp(out + 12, me, 4) && !memcmp(out + 16, ip + 12, 4));
	CHECK(out[20] == 3 && out[21] == 4 && be16(out + 26) == 1420);
	CHECK(ref_sum(out + 20, n - 20, NULL, 0) == 0xffff);
	CHECK(!memcmp(out + 28, ip, n - 28));
	/* small packet: quoted whole */
	len = mk4(ip, 100, 6, 1);
	n = dp_pmtu_too_big(ip, len, 80, me, out, sizeof(out));
	CHECK(n == 128 && !memcmp(out + 28, ip, 100));
	CHECK(ref_sum(out + 20, n - 20, NULL, 0) == 0xffff);
	CHECK(dp_pmtu_too_big(ip, len, 80, me, out, 100) == 0); /* cap too small */
}

static void test_too_big6(void)
{
	static uint8_t ip[2000], out[2048];
	uint8_t me[16] = {0xfd, 0x88, [15] = 0xfe};
	size_t len = mk6(ip, 2000, 17);
	size_t n = dp_pmtu_too_big(ip, len, 1420, me, out, sizeof(out));
	CHECK(n == 1280);
	CHECK(out[0] == 0x60 && be16(out + 4) == n - 40 && out[6] == 58);
	CHECK(!memcmp(out + 8, me, 16) && !memcmp(out + 24, ip + 8, 16));
	CHECK(out[40] == 2 && out[41] == 0 && be16(out + 46) == 1420);
	uint8_t pseudo[40] = {0};
	memcpy(pseudo, out + 8, 32);
	pseudo[34] = (uint8_t)((n - 40) >> 8);
	pseudo[35] = (uint8_t)(n - 40);
	pseudo[39] = 58;
	CHECK(ref_sum(pseudo, 40, out + 40, n - 40) == 0xffff);
	CHECK(!memcmp(out + 48, ip, n - 48));
}

static void test_may_report(void)
{
	uint8_t ip[200];
	size_t len = mk4(ip, 200, 17, 1);
	CHECK(dp_pmtu_may_report(ip, len));
	ip[7] = 1; /* non-first fragment */
	CHECK(!dp_pmtu_may_report(ip, len));
	mk4(ip, 200, 1, 1);
	ip[20] = 3; /* about an ICMP error */
	CHECK(!dp_pmtu_may_report(ip, len));
	ip[20] = 8; /* echo request: fine */
	CHECK(dp_pmtu_may_report(ip, len));
	mk4(ip, 200, 17, 1);
	ip[16] = 239; /* to multicast */
	CHECK(!dp_pmtu_may_report(ip, len));
	mk4(ip, 200, 17, 1);
	memset(ip + 12, 0, 4); /* from 0.0.0.0 */
	CHECK(!dp_pmtu_may_report(ip, len));
	len = mk6(ip, 200, 58);
	ip[40] = 1; /* ICMPv6 error */
	CHECK(!dp_pmtu_may_report(ip, len));
	ip[40] = 128;
	CHECK(dp_pmtu_may_report(ip, len));
	ip[8] = 0xff; /* multicast source */
	CHECK(!dp_pmtu_may_report(ip, len));
}

static void test_fragment(void)
{
	static uint8_t ip[9000], out[9100], re[9000];
	int bad = 0;
	for (size_t tot = 21; tot <= 9000; tot += 37) {
		for (uint16_t mtu = 68; mtu <= 1500; mtu += 113) {
			size_t len = mk4(ip, tot, 17, 0);
			CHECK(dp_pmtu_may_fragment4(ip, len));
			size_t off = 0, got = 0, k;
			int frags = 0, last_seen = 0;
			memset(re, 0, sizeof(re));
			while ((k = dp_pmtu_fragment4(ip, len, mtu, &off, out, sizeof(out))) > 0) {
				size_t hl = (size_t)(out[0] & 0xf) * 4;
				uint16_t fo = be16(out + 6);
				if (k > mtu || ref_sum(out, hl, NULL, 0) != 0xffff ||
				    be16(out + 2) != k || last_seen)
					bad++;
				if (!(fo & 0x2000))
					last_seen = 1;
				memcpy(re + (size_t)(fo & 0x1fff) * 8, out + hl, k - hl);
				got += k - hl;
				frags++;
			}
			if (got != tot - 20 || !last_seen || memcmp(re, ip + 20, tot - 20))
				bad++;
			if (tot <= mtu && frags != 1)
				bad++;
		}
	}
	CHECK(bad == 0);
	mk4(ip, 100, 17, 1);
	CHECK(!dp_pmtu_may_fragment4(ip, 100));
}

static void tcp_syn(uint8_t *ip, size_t *len, int v6, int odd, uint16_t mss)
{
	size_t l4 = v6 ? 40 : 20;
	size_t optlen = odd ? 8 : 4; /* odd: NOP then MSS then NOP NOP NOP */
	*len = l4 + 20 + optlen;
	if (v6)
		mk6(ip, *len, 6);
	else
		mk4(ip, *len, 6, 1);
	uint8_t *t = ip + l4;
	memset(t, 0, 20 + optlen);
	t[0] = 0x30;
	t[1] = 0x39;
	t[2] = 0x01;
	t[3] = 0xbb;
	t[12] = (uint8_t)(((20 + optlen) / 4) << 4);
	t[13] = 0x02;
	uint8_t *o = t + 20;
	if (odd)
		*o++ = 1;
	o[0] = 2;
	o[1] = 4;
	o[2] = (uint8_t)(mss >> 8);
	o[3] = (uint8_t)mss;
	if (odd)
		o[4] = o[5] = o[6] = 1;
}

static uint16_t tcp_sum(const uint8_t *ip, size_t len, int v6)
{
	uint8_t ph[40] = {0};
	size_t l4 = v6 ? 40 : 20, n;
	if (v6) {
		memcpy(ph, ip + 8, 32);
		ph[35] = (uint8_t)(len - l4);
		ph[34] = (uint8_t)((len - l4) >> 8);
		ph[39] = 6;
		n = 40;
	} else {
		memcpy(ph, ip + 12, 8);
		ph[9] = 6;
		ph[10] = (uint8_t)((len - l4) >> 8);
		ph[11] = (uint8_t)(len - l4);
		n = 12;
	}
	return ref_sum(ph, n, ip + l4, len - l4);
}

static void set_tcp_sum(uint8_t *ip, size_t len, int v6)
{
	uint8_t *t = ip + (v6 ? 40 : 20);
	t[16] = t[17] = 0;
	uint16_t c = (uint16_t)~tcp_sum(ip, len, v6);
	t[16] = (uint8_t)(c >> 8);
	t[17] = (uint8_t)c;
}

static void test_mss(void)
{
	uint8_t ip[128];
	size_t len;
	for (int v6 = 0; v6 <= 1; v6++) {
		for (int odd = 0; odd <= 1; odd++) {
			tcp_syn(ip, &len, v6, odd, 1460);
			set_tcp_sum(ip, len, v6);
			CHECK(tcp_sum(ip, len, v6) == 0xffff);
			CHECK(dp_pmtu_clamp_mss(ip, len, 1420));
			CHECK(tcp_sum(ip, len, v6) == 0xffff);
			size_t mo = (v6 ? 40 : 20) + 20 + (odd ? 1 : 0);
			CHECK(be16(ip + mo + 2) == (v6 ? 1360 : 1380));
			CHECK(!dp_pmtu_clamp_mss(ip, len, 1420)); /* already small */
			tcp_syn(ip, &len, v6, odd, 1200);
			set_tcp_sum(ip, len, v6);
			CHECK(!dp_pmtu_clamp_mss(ip, len, 1420));
			tcp_syn(ip, &len, v6, odd, 9000);
			ip[(v6 ? 40 : 20) + 13] = 0x10; /* ACK only: not a SYN */
			CHECK(!dp_pmtu_clamp_mss(ip, len, 1420));
		}
	}
	/* a truncated option list must not be read past its end */
	tcp_syn(ip, &len, 0, 0, 9000);
	ip[20 + 21] = 40;
	CHECK(!dp_pmtu_clamp_mss(ip, len, 1420));
}

int main(void)
{
	test_too_big4();
	test_too_big6();
	test_may_report();
	test_fragment();
	test_mss();
	printf("pmtu: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
