/* SPDX-License-Identifier: MIT */
/* The in-memory dataplane of benchmarks and tests: see testbed.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <sodium.h>

#include "dp.h"
#include "pkt.h"
#include "testbed.h"
#include "wg_messages.h"

uint32_t dp_tb_peer_ip(uint32_t i) /* 10.64.0.0/10 */
{
	return 0x0a400000u + i;
}

uint32_t dp_tb_peer_ep(uint32_t i) /* off-link, via the WAN gateway */
{
	return 0x64400000u + i;
}

static int make_ports(struct dp_testbed *b)
{
	char name[32];
	for (int p = 0; p < 2; p++) {
		struct rte_ring *rx[2], *tx[2];
		for (unsigned q = 0; q < b->nworkers; q++) {
			for (int d = 0; d < 2; d++) {
				snprintf(name, sizeof(name), "br%d_%d_%u_%d", b->serial, p, q, d);
				b->ring[p][q][d] = rte_ring_create(name, DP_TB_RING_SIZE, 0,
								   RING_F_SP_ENQ | RING_F_SC_DEQ);
				if (!b->ring[p][q][d])
					return -ENOMEM;
			}
			rx[q] = b->ring[p][q][0];
			tx[q] = b->ring[p][q][1];
		}
		snprintf(name, sizeof(name), "b%s%d", p ? "lan" : "wan", b->serial);
		int port = rte_eth_from_rings(name, rx, b->nworkers, tx, b->nworkers, 0);
		if (port < 0 || rte_eth_dev_get_name_by_port((uint16_t)port, b->dev[p]))
			return -ENODEV;
	}
	return 0;
}

unsigned dp_tb_burst = 64;

static int make_config(struct dp_testbed *b, bool snat)
{
	char text[2048], err[512];
	snprintf(text, sizeof(text),
		 "meshgate: { name = \"bench%d-%d\"; max_peers = %u; };\n"
		 "dataplane: { mbufs = 65536; burst = %u; snat = { enabled = %s; }; ports = (\n"
		 "  { name = \"wan0\"; device = \"%s\"; role = \"wan\";"
		 "    addresses = [\"198.18.0.1/24\"]; gateway = \"198.18.0.254\"; },\n"
		 "  { name = \"lan0\"; device = \"%s\"; role = \"lan\";"
		 "    addresses = [\"10.88.0.254/24\"]; } ); };\n",
		 (int)getpid(), b->serial, b->npeers < 4 ? 4 : b->npeers, dp_tb_burst,
		 snat ? "true" : "false", b->dev[0], b->dev[1]);
	if (mg_config_load_string(text, "bench", 0, &b->cfg, err, sizeof(err))) {
		fprintf(stderr, "testbed config: %s\n", err);
		return -EINVAL;
	}
	b->cfg.n_workers = (int)b->nworkers;
	for (unsigned i = 0; i < b->nworkers; i++)
		b->cfg.workers[i] = (int)i;
	return 0;
}

/* Peer i's keypair in one of its slots, as our initiator's (current at
 * once), with the testbed's keys. 0, or -EINVAL if it did not become current. */
static int install_keypair(struct dp_testbed *b, uint32_t i, uint32_t slot)
{
	struct dp_ctx *dp = &b->dp;
	struct mg_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_KEYPAIR_ADD, .peer = i};
	struct mg_msg_keypair *k = (struct mg_msg_keypair *)m.data;
	b->lidx[i] = (0x5a000000u & ~dp->kp_mask) | slot;
	if (!b->lidx[i])
		b->lidx[i] = dp->kp_mask + 1;
	k->local_index = b->lidx[i];
	k->remote_index = 0x10000 + i;
	k->initiator = 1;
	memcpy(k->send_key, b->key_g2p, 32);
	memcpy(k->recv_key, b->key_p2g, 32);
	dp_service_handle(dp, &m);
	uint32_t cur = __atomic_load_n(&dp->peers[i].kp_cur, __ATOMIC_RELAXED);
	return cur == (b->lidx[i] & dp->kp_mask) + 1 ? 0 : -EINVAL;
}

static int program_peer(struct dp_testbed *b, uint32_t i)
{
	struct mg_msg m;
	struct dp_ctx *dp = &b->dp;

	memset(&m, 0, sizeof(m));
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_PEER_SET, .peer = i};
	struct mg_msg_peer *pm = (struct mg_msg_peer *)m.data;
	memcpy(pm->public_key, &i, sizeof(i));
	pm->public_key[31] = 1;
	pm->flags = MG_PEER_F_ENDPOINT;
	dp_sockaddr_v4(&pm->endpoint, rte_cpu_to_be_32(dp_tb_peer_ep(i)), rte_cpu_to_be_16(51820));
	dp_service_handle(dp, &m);

	memset(&m, 0, sizeof(m));
	m.hdr =
	    (struct mg_msg_hdr){.type = MG_MSG_ALLOWEDIPS,
				.peer = i,
				.len = sizeof(struct mg_msg_allowedips) + sizeof(struct mg_prefix)};
	struct mg_msg_allowedips *a = (struct mg_msg_allowedips *)m.data;
	a->replace = 1;
	a->count = 1;
	uint32_t ip = rte_cpu_to_be_32(dp_tb_peer_ip(i));
	a->prefixes[0] = (struct mg_prefix){.family = AF_INET, .cidr = 32};
	memcpy(a->prefixes[0].addr, &ip, 4);
	dp_service_handle(dp, &m);
	return install_keypair(b, i, i * MG_KP_PER_PEER);
}

int dp_tb_rekey(struct dp_testbed *b)
{
	randombytes_buf(b->key_g2p, 32);
	randombytes_buf(b->key_p2g, 32);
	for (uint32_t i = 0; i < b->npeers; i++) {
		/* Peer i's slots are i * MG_KP_PER_PEER + 0 .. MG_KP_PER_PEER - 1. */
		uint32_t slot = b->lidx[i] & b->dp.kp_mask;
		uint32_t next = (slot % MG_KP_PER_PEER + 1) % MG_KP_PER_PEER;
		int rc = install_keypair(b, i, i * MG_KP_PER_PEER + next);
		if (rc)
			return rc;
	}
	dp_service_commit(&b->dp);
	return 0;
}

int dp_tb_setup(struct dp_testbed *b, uint32_t npeers, uint32_t nworkers, bool snat)
{
	static int serial;
	memset(b, 0, sizeof(*b));
	b->serial = ++serial;
	b->npeers = npeers;
	b->nworkers = nworkers;
	b->lidx = calloc(npeers, sizeof(*b->lidx));
	randombytes_buf(b->key_g2p, 32);
	randombytes_buf(b->key_p2g, 32);
	if (nworkers < 1 || nworkers > DP_TB_MAX_QUEUES)
		return -EINVAL;
	if (!b->lidx)
		return -ENOMEM;
	int rc = make_ports(b);
	if (rc || (rc = make_config(b, snat)))
		return rc;
	b->dp.cfg = &b->cfg;
	rc = dp_ctx_setup(&b->dp);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < npeers; i++)
		if ((rc = program_peer(b, i))) {
			fprintf(stderr, "testbed: peer %u's keypair not installed\n", i);
			return rc;
		}
	dp_service_commit(&b->dp);
	struct rte_ether_addr mac = {{0x02, 0, 0, 0, 0, 0xfe}};
	dp_neigh_update4(b->dp.neigh, b->dp.ports[0].port_id, rte_cpu_to_be_32(0xc61200feu), &mac,
			 rte_rdtsc());
	dp_neigh_update4(b->dp.neigh, b->dp.ports[1].port_id, rte_cpu_to_be_32(DP_TB_LAN_HOST),
			 &mac, rte_rdtsc());
	return 0;
}

void dp_tb_teardown(struct dp_testbed *b)
{
	dp_ctx_teardown(&b->dp);
	mg_config_free(&b->cfg);
	for (int p = 0; p < 2; p++)
		for (unsigned q = 0; q < b->nworkers; q++)
			for (int d = 0; d < 2; d++)
				rte_ring_free(b->ring[p][q][d]);
	free(b->lidx);
	sodium_memzero(b->key_g2p, sizeof(b->key_g2p));
	sodium_memzero(b->key_p2g, sizeof(b->key_p2g));
}

static void inner_ipv4(uint8_t *p, uint32_t len, uint32_t src, uint32_t dst)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)p;
	memset(p, 0, len);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)len);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = rte_cpu_to_be_32(src);
	ip->dst_addr = rte_cpu_to_be_32(dst);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_udp_hdr *u = (struct rte_udp_hdr *)(ip + 1);
	u->src_port = rte_cpu_to_be_16(1000);
	u->dst_port = rte_cpu_to_be_16(2000);
	u->dgram_len = rte_cpu_to_be_16((uint16_t)(len - 20));
}

struct rte_mbuf *dp_tb_lan_frame(struct dp_testbed *b, uint32_t peer, uint32_t size)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(b->dp.pool);
	if (!m)
		return NULL;
	uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(14 + size));
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	eth->dst_addr = b->dp.ports[1].mac;
	eth->src_addr = (struct rte_ether_addr){{0x02, 0, 0, 0, 0, 1}};
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	inner_ipv4(p + 14, size, DP_TB_LAN_HOST, dp_tb_peer_ip(peer));
	return m;
}

struct rte_mbuf *dp_tb_wan_frame(struct dp_testbed *b, uint32_t peer, uint64_t c, uint32_t size,
				 struct dp_aead_op *op)
{
	uint32_t padded = RTE_ALIGN_CEIL(size, 16);
	struct rte_mbuf *m = rte_pktmbuf_alloc(b->dp.pool);
	if (!m)
		return NULL;
	uint16_t plen = (uint16_t)(sizeof(struct wg_message_data) + padded + 16);
	uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(DP_OUTER4_LEN + plen));
	struct rte_ether_addr src = {{0x02, 0, 0, 0, 0, 0xfe}};
	dp_build_outer4(p, &src, &b->dp.ports[0].mac, rte_cpu_to_be_32(dp_tb_peer_ep(peer)),
			rte_cpu_to_be_32(0xc6120001u), 51820, 51820, plen);
	struct wg_message_data *h = (struct wg_message_data *)(p + DP_OUTER4_LEN);
	h->header = (struct wg_message_header){.type = WG_MSG_DATA};
	h->key_idx = rte_cpu_to_le_32(b->lidx[peer]);
	h->counter = rte_cpu_to_le_64(c);
	inner_ipv4(h->encrypted_data, size, dp_tb_peer_ip(peer), DP_TB_LAN_HOST);
	memset(h->encrypted_data + size, 0, padded - size);
	*op = (struct dp_aead_op){.data = h->encrypted_data,
				  .len = padded,
				  .tag = h->encrypted_data + padded,
				  .key = b->key_p2g,
				  .counter = c};
	return m;
}

uint64_t dp_tb_drain(struct dp_testbed *b, unsigned q)
{
	struct rte_mbuf *m[256];
	uint64_t total = 0;
	unsigned n;

	for (int p = 0; p < 2; p++)
		while ((n = rte_ring_dequeue_burst(b->ring[p][q][1], (void **)m, 256, NULL))) {
			total += n;
			rte_pktmbuf_free_bulk(m, n);
		}
	return total;
}

/* Free hugepage memory in MiB, if a hugetlbfs is mounted for the EAL; else 0. */
static unsigned long hugepages_free_mb(void)
{
	unsigned long free_pages = 0, page_kb = 0;
	char line[256];
	bool mounted = false;
	FILE *f = fopen("/proc/mounts", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		mounted |= strstr(line, " hugetlbfs ") != NULL;
	fclose(f);
	if (!mounted || !(f = fopen("/proc/meminfo", "r")))
		return 0;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "HugePages_Free: %lu", &free_pages);
		sscanf(line, "Hugepagesize: %lu kB", &page_kb);
	}
	fclose(f);
	return free_pages * page_kb / 1024;
}

int dp_tb_eal_init(const char *argv0, const char *tag, unsigned mem_mb, bool huge, bool *on_huge)
{
	char prefix[64], mem[16];
	char *eal[] = {(char *)argv0,
		       "-l",
		       "0,1",
		       "--no-huge",
		       "-m",
		       mem,
		       "--no-pci",
		       "--no-shconf",
		       "--no-telemetry",
		       prefix,
		       "--log-level=*:error",
		       NULL};

	snprintf(prefix, sizeof(prefix), "--file-prefix=%s%d", tag, (int)getpid());
	snprintf(mem, sizeof(mem), "%u", mem_mb);
	*on_huge = huge && hugepages_free_mb() >= mem_mb;
	if (*on_huge)
		eal[3] = "--huge-unlink";
	if (rte_eal_init((int)(sizeof(eal) / sizeof(eal[0])) - 1, eal) < 0) {
		fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
		return -1;
	}
	return 0;
}
