// SPDX-License-Identifier: MIT
/*
 * One tunnel sprayed over two workers running at the same time (two lcores,
 * net_ring ports of the testbed): the property that lets a single tunnel
 * use more than one core must not cost WireGuard's guarantees.
 *
 *   encap: 2 x 4096 LAN packets of varied sizes for one peer, half to each
 *   worker. Every WAN frame carries a distinct counter, the counters are
 *   exactly 0..8191, and each frame opens with libsodium (not the code under
 *   test) under the peer's key and its counter, giving back one of the
 *   packets sent, each exactly once, padded to 16.
 *
 *   decap: the same 4096 data messages (sealed with libsodium) given to
 *   both workers at once, so that each counter reaches the shared replay
 *   window twice, from two cores, at about the same time: each packet
 *   leaves on the LAN exactly once, the other copy is counted as a replay,
 *   and nothing else is dropped. Once for one peer (a burst is one run of
 *   counters on one keypair) and once with consecutive messages for
 *   different peers (runs of one packet each, the check of many-peer traffic).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <sodium.h>

#include "pkt.h"
#include "stage.h"
#include "test_util.h"
#include "testbed.h"
#include "wg_messages.h"

#define N   4096  /* packets per worker */
#define MTU 1420u /* the testbed's (meshgate.mtu's default) */
#define PEERS 64    /* configured; the encap test and the first decap test use peer 0 */

static struct dp_testbed tb;
static volatile int go;

/* Polls worker idx until its queues stay empty. */
static int run_worker(void *arg)
{
	unsigned idx = (unsigned)(uintptr_t)arg, idle = 0;
	struct dp_worker *w = &tb.dp.workers[idx];
	static struct dp_burst bursts[2];

	rte_rcu_qsbr_thread_register(tb.dp.rcu, idx);
	rte_rcu_qsbr_thread_online(tb.dp.rcu, idx);
	while (!go)
		rte_pause();
	while (idle < 1000) {
		if (dp_worker_poll(w, &bursts[idx]))
			idle = 0;
		else
			idle++;
	}
	rte_rcu_qsbr_thread_offline(tb.dp.rcu, idx);
	rte_rcu_qsbr_thread_unregister(tb.dp.rcu, idx);
	return 0;
}

/* m[q] into queue q of port `from`, both workers at once, then what both
 * queues of port `to` sent into out (room for 2 * N + 16); returns how many. */
static unsigned run_both(int from, int to, struct rte_mbuf *m[2][N], struct rte_mbuf **out)
{
	unsigned got = 0;
	for (int q = 0; q < 2; q++)
		rte_ring_enqueue_burst(tb.ring[from][q][DP_TB_RX], (void **)m[q], N, NULL);
	go = 0;
	rte_eal_remote_launch(run_worker, (void *)(uintptr_t)1, 1);
	go = 1;
	run_worker((void *)(uintptr_t)0);
	rte_eal_wait_lcore(1);
	for (int q = 0; q < 2; q++)
		got += rte_ring_dequeue_burst(tb.ring[to][q][DP_TB_TX], (void **)out + got,
					      2 * N + 16 - got, NULL);
	return got;
}

static uint64_t drops(unsigned reason)
{
	return tb.dp.workers[0].drops[reason] + tb.dp.workers[1].drops[reason];
}

static uint64_t all_drops(void)
{
	uint64_t n = 0;
	for (unsigned r = 0; r < MG_DROP_MAX; r++)
		n += drops(r);
	return n;
}

/* The tag we put in each inner UDP payload, and where. */
#define TAG_OFF 28 /* IPv4 + UDP headers */

static uint32_t size_of(uint32_t i)
{
	return 32 + (i * 37) % (1420 - 32 + 1);
}

static void test_encap(void)
{
	static uint8_t seen_ctr[2 * N], seen_tag[2 * N];
	struct rte_mbuf *m[2][N], *out[2 * N + 16];
	unsigned bad_frame = 0, bad_open = 0, bad_inner = 0, dup = 0, got;
	uint64_t all0 = all_drops();

	printf("-- encap: one peer, two workers\n");
	memset(seen_ctr, 0, sizeof(seen_ctr));
	memset(seen_tag, 0, sizeof(seen_tag));
	for (uint32_t i = 0; i < 2 * N; i++) {
		struct rte_mbuf *x = dp_tb_lan_frame(&tb, 0, size_of(i));
		if (!x) {
			CHECK(0, "mbufs");
			return;
		}
		memcpy(rte_pktmbuf_mtod_offset(x, uint8_t *, 14 + TAG_OFF), &i, 4);
		m[i % 2][i / 2] = x;
	}
	got = run_both(DP_TB_LAN, DP_TB_WAN, m, out);
	CHECK(got == 2 * N && all_drops() == all0, "%u frames out for %u in, %lu dropped", got,
	      2 * N, (unsigned long)(all_drops() - all0));
	for (unsigned k = 0; k < got; k++) {
		uint8_t *f = rte_pktmbuf_mtod(out[k], uint8_t *);
		uint32_t len = rte_pktmbuf_data_len(out[k]);
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(f + 14);
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
		struct wg_message_data *h = (struct wg_message_data *)(udp + 1);
		if (len < DP_OUTER4_LEN + WG_DATA_OVERHEAD || ip->next_proto_id != IPPROTO_UDP ||
		    rte_be_to_cpu_16(ip->total_length) != len - 14 ||
		    rte_be_to_cpu_16(udp->dgram_len) != len - 34 ||
		    rte_ipv4_cksum(ip) != 0 || /* a right checksum sums to 0xffff */
		    h->header.type != WG_MSG_DATA || rte_le_to_cpu_32(h->key_idx) != 0x10000u) {
			bad_frame++;
			continue;
		}
		uint64_t ctr = rte_le_to_cpu_64(h->counter);
		if (ctr >= 2 * N || seen_ctr[ctr]++) {
			dup++;
			continue;
		}
		uint8_t nonce[12] = {0};
		memcpy(nonce + 4, &h->counter, 8);
		size_t clen = len - DP_OUTER4_LEN - sizeof(*h);
		unsigned long long plen;
		uint8_t *plain = h->encrypted_data;
		if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL, plain, clen, NULL,
							      0, nonce, tb.key_g2p)) {
			bad_open++;
			continue;
		}
		uint32_t tag, ilen = rte_be_to_cpu_16(((struct rte_ipv4_hdr *)plain)->total_length);
		memcpy(&tag, plain + TAG_OFF, 4);
		/* Padding to 16, but not past the MTU (whitepaper 5.4.6). */
		uint32_t want = RTE_MIN(RTE_ALIGN_CEIL(ilen, 16), RTE_MAX(ilen, MTU));
		if (tag >= 2 * N || seen_tag[tag]++ || ilen != size_of(tag) || plen != want ||
		    !sodium_is_zero(plain + ilen, plen - ilen))
			bad_inner++;
	}
	unsigned all_ctr = 0, all_tag = 0;
	for (unsigned i = 0; i < 2 * N; i++) {
		all_ctr += seen_ctr[i] == 1;
		all_tag += seen_tag[i] == 1;
	}
	CHECK(bad_frame == 0, "outer headers right (%u bad)", bad_frame);
	CHECK(dup == 0 && all_ctr == 2 * N, "counters distinct and exactly 0..%u (%u repeated)",
	      2 * N - 1, dup);
	CHECK(bad_open == 0, "every frame opens with libsodium under its counter (%u fail)",
	      bad_open);
	CHECK(bad_inner == 0 && all_tag == 2 * N,
	      "every packet sent comes out once, zero-padded to 16 or the MTU (%u bad)", bad_inner);
	rte_pktmbuf_free_bulk(out, got);
}

/* Message i goes to peer i % npeers with that peer's counter i / npeers,
 * plus base (so that a second run does not replay the first). */
static void test_decap(uint32_t npeers, uint64_t base)
{
	static uint8_t seen_tag[N];
	struct rte_mbuf *m[2][N], *out[2 * N + 16];
	unsigned bad = 0, got;
	uint64_t replay0 = drops(MG_DROP_REPLAY), all0 = all_drops();

	printf("-- decap: each message to both workers at once, %u peer(s)\n", npeers);
	memset(seen_tag, 0, sizeof(seen_tag));
	for (uint32_t i = 0; i < N; i++) {
		struct dp_aead_op op;
		struct rte_mbuf *x =
		    dp_tb_wan_frame(&tb, i % npeers, base + i / npeers, size_of(i), &op);
		if (!x) {
			CHECK(0, "mbufs");
			return;
		}
		memcpy(op.data + TAG_OFF, &i, 4);
		uint8_t nonce[12] = {0};
		uint64_t le = rte_cpu_to_le_64(op.counter);
		memcpy(nonce + 4, &le, 8);
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(
		    op.data, op.tag, NULL, op.data, op.len, NULL, 0, NULL, nonce, op.key);
		m[0][i] = x;
		m[1][i] = rte_pktmbuf_copy(x, tb.dp.pool, 0, UINT32_MAX);
		if (!m[1][i]) {
			CHECK(0, "mbufs");
			return;
		}
	}
	got = run_both(DP_TB_WAN, DP_TB_LAN, m, out);
	for (unsigned k = 0; k < got; k++) {
		const uint8_t *ip = rte_pktmbuf_mtod_offset(out[k], const uint8_t *, 14);
		uint32_t tag;
		memcpy(&tag, ip + TAG_OFF, 4);
		if (tag >= N || seen_tag[tag]++ ||
		    rte_pktmbuf_data_len(out[k]) != 14 + size_of(tag))
			bad++;
	}
	uint64_t replay = drops(MG_DROP_REPLAY) - replay0, other = all_drops() - all0 - replay;
	CHECK(got == N && bad == 0, "%u packets out on the LAN, each once (%u bad)", got, bad);
	CHECK(replay == N && other == 0, "the other copies: %lu replays, %lu other drops",
	      (unsigned long)replay, (unsigned long)other);
	rte_pktmbuf_free_bulk(out, got);
}

int main(int argc, char **argv)
{
	bool huge;
	(void)argc;
	if (dp_tb_eal_init(argv[0], "mgspray", 1024, false, &huge) || sodium_init() < 0)
		return 1;
	if (rte_lcore_count() < 2) {
		printf("SKIP: needs two lcores\n");
		rte_eal_cleanup();
		return 77;
	}
	int rc = dp_tb_setup(&tb, PEERS, 2, false);
	CHECK(rc == 0, "testbed: %d peers, two workers (%d)", PEERS, rc);
	if (rc == 0) {
		test_encap();
		test_decap(1, 0);
		test_decap(PEERS, N);
		/* Every peer rekeyed (what a benchmark longer than 180 s does): the
		 * new keys and indexes take over, with counters from 0 again on
		 * both sides (a window of the old keypair would call them replays). */
		printf("-- rekey of all peers, then again\n");
		CHECK(dp_tb_rekey(&tb) == 0, "every peer's new keypair is current");
		test_encap();
		test_decap(PEERS, 0);
		dp_tb_teardown(&tb);
	}
	rte_eal_cleanup();
	return test_finish("test_spray");
}
