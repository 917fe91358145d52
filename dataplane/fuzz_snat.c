/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for snat.c. An input is a sequence of records
 * [op][len][len bytes of IP packet]: op bit 0 picks the direction (0: a
 * tunnel packet out on worker op bit 1, 1: a LAN packet in), op bits 2..7
 * advance the clock by that many seconds. Packets that dp_inner_len()
 * would refuse are skipped (the callers' contract). Each input starts
 * from fresh tables: small slices (4 entries a worker), (uint32_t)(so inputs reach
 * table-full and reuse. Checked: lengths never change, a translated packet
 * out has the NAT source, no read or write past the packet (ASan)).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include "inner.h"
#include "snat.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HZ 1000u

static const uint8_t nat4[4] = {10, 88, 0, 254};
static const uint8_t nat6[16] = {0xfd, 0x88, [15] = 0xfe};

/* Once: from LLVMFuzzerInitialize under libFuzzer, else (the replay
 * driver) from the first input. */
static void eal_up(void)
{
	static bool up;
	char prefix[64];
	char *args[] = {"fuzz_snat",
			"--no-huge",
			"-m",
			"128",
			"--no-pci",
			"--no-shconf",
			"--no-telemetry",
			prefix,
			"--log-level=*:error",
			"-l",
			"0",
			NULL};

	if (up)
		return;
	up = true;
	snprintf(prefix, sizeof(prefix), "--file-prefix=fuzzsnat%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(args) - 1, args) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		abort();
	}
	rmdir(rte_eal_get_runtime_dir());
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	eal_up();
	return 0;
}


static void one(struct dp_snat *s, uint8_t op, const uint8_t *data, size_t n, uint64_t now)
{
	uint8_t *ip = malloc(n ? n : 1);
	enum mg_drop_reason why = MG_DROP_MAX;
	enum dp_snat_result r;

	if (!ip)
		return;
	memcpy(ip, data, n);
	int len = dp_inner_len(ip, (uint32_t)(n));
	if (len < 0)
		goto out;
	/* An exact-size buffer, so ASan sees any overrun. */
	uint8_t *pkt = malloc((size_t)len);
	if (!pkt)
		goto out;
	memcpy(pkt, ip, (size_t)len);
	if (op & 1) {
		r = dp_snat_in(s, 0, pkt, (uint32_t)len, now, &why);
	} else {
		r = dp_snat_out(s, (op >> 1) & 1, pkt, (uint32_t)len, now, &why);
		if (r == DP_SNAT_TRANSLATED &&
		    ((pkt[0] >> 4) == 4 ? memcmp(pkt + 12, nat4, 4) : memcmp(pkt + 8, nat6, 16)))
			abort();
	}
	if (r == DP_SNAT_DROP && why >= MG_DROP_MAX)
		abort();
	if (r != DP_SNAT_TRANSLATED && r != DP_SNAT_DROP && memcmp(pkt, ip, (size_t)len))
		abort(); /* passed packets are untouched */
	free(pkt);
out:
	free(ip);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_snat_conf c = {
	    .enabled = true,
	    .port_min = 40000,
	    .port_max = 40007,
	    .max_entries = 8,
	    .tcp_established_timeout = 60,
	    .tcp_transitory_timeout = 10,
	    .udp_timeout = 10,
	    .icmp_timeout = 5,
	};
	uint32_t a4;
	eal_up();
	memcpy(&a4, nat4, 4);
	struct dp_snat *s = dp_snat_create(&c, 2, HZ, a4, nat6, 0);
	uint64_t now = HZ;

	if (!s)
		abort();
	while (size >= 2) {
		uint8_t op = data[0];
		size_t n = data[1] < size - 2 ? data[1] : size - 2;
		now += (uint64_t)(op >> 2) * HZ;
		one(s, op, data + 2, n, now);
		data += 2 + n;
		size -= 2 + n;
	}
	dp_snat_destroy(s);
	return 0;
}
