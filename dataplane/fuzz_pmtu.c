/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for pmtu.c: the input is a 2-byte MTU followed by an
 * inner packet. Packets that dp_inner_len() would refuse are skipped (the
 * contract of pmtu.h); the rest go through every function, (uint32_t)(and the
 * outputs are checked: bounded, whole fragments within the MTU that carry
 * the payload back, no write past the buffers (ASan)).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inner.h"
#include "pmtu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[DP_PMTU_ICMP6_MAX], frag[9100], re[65536];
	static const uint8_t me[16] = {0xfd, 0x88, [15] = 1};

	if (size < 3)
		return 0;
	uint16_t mtu = (uint16_t)(data[0] << 8 | data[1]);
	size_t n = size - 2;
	uint8_t *ip = malloc(n);
	if (!ip)
		return 0;
	memcpy(ip, data + 2, n);
	int len = dp_inner_len(ip, (uint32_t)(n));
	if (len < 0)
		goto out;
	size_t k = dp_pmtu_too_big(ip, (size_t)len, mtu, me, out, sizeof(out));
	if (k > sizeof(out))
		abort();
	if (mtu >= 68 && mtu <= 9000 && dp_pmtu_may_fragment4(ip, (size_t)len)) {
		size_t ihl = (size_t)(ip[0] & 0xf) * 4, off = 0, got = 0, f;
		while ((f = dp_pmtu_fragment4(ip, (size_t)len, mtu, &off, frag, sizeof(frag))) >
		       0) {
			size_t hl = (size_t)(frag[0] & 0xf) * 4;
			if (f > mtu || f < hl)
				abort();
			memcpy(re + got, frag + hl, f - hl);
			got += f - hl;
		}
		if (got != (size_t)len - ihl || memcmp(re, ip + ihl, got))
			abort();
	}
	if (mtu >= 576)
		dp_pmtu_clamp_mss(ip, (size_t)len, mtu);
out:
	free(ip);
	return 0;
}
