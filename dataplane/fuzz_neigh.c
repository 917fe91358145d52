/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the input is one Ethernet frame handed to
 * dp_neigh_input, as the main lcore would after dp_neigh_is_neigh_packet.
 * EAL starts once, without hugepages or devices; the replay driver in
 * tests/fuzz does not call LLVMFuzzerInitialize, so the first input also
 * starts it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "neigh.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rte_mempool *mp;
static struct dp_neigh_table *table;
static struct dp_neigh_iface ifc = {
	.port_id = 0,
	.mac.addr_bytes = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
	.addr4 = {RTE_BE32(0xc0000201), RTE_BE32(0xc6336401)}, /* 192.0.2.1, 198.51.100.1 */
	.plen4 = {24, 24},
	.n_addr4 = 2,
	.addr6 = {{0x20, 0x01, 0x0d, 0xb8, [15] = 0x01}},
	.plen6 = {64},
	.n_addr6 = 1,
};
static uint64_t fake_tsc;

static void setup(void)
{
	char prefix[64];
	char *args[] = {"fuzz_neigh", "--no-huge", "-m", "128", "--no-pci", "--no-shconf",
			prefix, "--log-level=*:error", NULL};

	if (mp)
		return;
	snprintf(prefix, sizeof(prefix), "--file-prefix=neighfuzz%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(args) - 1, args) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		abort();
	}
	mp = rte_pktmbuf_pool_create("fuzz_neigh", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
				     SOCKET_ID_ANY);
	/* Small, so that inserts, full tables and aging all get exercised. */
	table = dp_neigh_create("fuzz_neigh", 64, SOCKET_ID_ANY);
	if (!mp || !table)
		abort();
	dp_neigh_iface_init(&ifc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setup();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rte_mbuf *m, *reply;
	char *p;

	setup();
	m = rte_pktmbuf_alloc(mp);
	if (!m)
		abort();
	if (size > rte_pktmbuf_tailroom(m)) {
		rte_pktmbuf_free(m);
		return 0;
	}
	p = rte_pktmbuf_append(m, (uint16_t)size);
	if (size)
		memcpy(p, data, size);
	(void)dp_neigh_is_neigh_packet(m);
	reply = dp_neigh_input(table, &ifc, m, mp, ++fake_tsc);
	rte_pktmbuf_free(reply);
	if (fake_tsc % 64 == 0)
		dp_neigh_age(table, fake_tsc, 32);
	/* Anything not handed back is a leak. */
	if (rte_mempool_in_use_count(mp) != 0)
		abort();
	return 0;
}
