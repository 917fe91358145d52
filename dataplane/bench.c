/* SPDX-License-Identifier: MIT */
/*
 * meshgate-bench: the dataplane's real worker loop (dp_worker_poll: RX,
 * classify, lookup, crypto, headers, TX) on in-memory DPDK ports (net_ring),
 * measured in busy cycles per packet (split into the crypto bursts and the
 * rest) and set against the raw ChaCha20-Poly1305 burst rate and the ports'
 * own rx/tx cost, both measured in the same run.
 *
 * How the two cores are shared: traffic for a round is generated (and, for
 * decap, encrypted) into the ports' RX rings before the round, each queue
 * by the lcore of the worker that polls it; during the timed part only the
 * workers run (worker 0 on the main lcore, worker 1 on lcore 1). Generation
 * and draining of the TX rings are outside the timing.
 *
 * Memory: hugepages when enough are free (as a gateway runs), else 4 KiB
 * pages (--no-huge), said in the output.
 *
 * Usage: meshgate-bench [--quick] [--json FILE] [--no-huge]
 *                       [--tables sizes,workers,peers,rekey,features] [--burst N]
 *                       [--profile encap|decap[:SIZE[:PEERS[:SENDING]]]]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_ring.h>
#include <sodium.h>

#include "dp.h"
#include "flowlog.h"
#include "filter.h"
#include "pkt.h"
#include "route.h"
#include "stage.h"
#include "testbed.h"
#include "wg_messages.h"

#define ROUND                                                                                      \
	1024 /* packets per queue per round: one RX ring of the size the dataplane                 \
	      * gives real NICs (RX_DESC), so data is as cache-warm as a NIC leaves it */

enum dir { DECAP, ENCAP };
static const char *const dir_name[] = {"decap", "encap"};

struct bench {
	struct dp_testbed tb;
	uint32_t active;	  /* workers (and queues) a measurement uses: 1..nworkers */
	uint32_t spread;	  /* traffic goes to peers 0..spread-1; 0: all of them */
	uint64_t *ctr;		  /* each peer's next counter, decap traffic */
	uint64_t keyed_tsc;	  /* when the peers' keypairs were installed */
	struct dp_crypto *gen[2]; /* per generating lcore */
};

struct result {
	double mpps, gbps, cycles, wall_mpps;
	double crypto; /* of cycles: inside the workers' crypto bursts */
	double worker_cycles[2];
	uint64_t busy, wall, wbusy[2], wpkts[2]; /* TSC cycles; per-worker busy cycles, packets */
	uint64_t pkts, lost;
};

static uint64_t hz;
/* SNAT (on by default in a real config) is off in every table but the
 * features one, which shows its cost: the other tables measure WireGuard. */
static bool bench_snat;
static FILE *json;
static bool quick;

/* ---- lcore 1 -------------------------------------------------------------- */

/*
 * With two workers, lcore 1 runs one loop for the whole table row that
 * spins for work (its queue's generation, its worker's rounds): launching
 * it anew for every round (a pipe write and a thread wake-up) would put the
 * wake-up latency, tens of microseconds in a VM, into every round's wall
 * time.
 */
struct remote {
	int (*fn)(void *);
	void *arg;
	uint32_t seq, done; /* atomic */
};

static struct remote lcore1;

static int remote_loop(void *arg)
{
	struct remote *r = arg;
	uint32_t seen = 0;

	for (;;) {
		uint32_t s;
		while ((s = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE)) == seen)
			rte_pause();
		seen = s;
		if (!r->fn)
			return 0;
		r->fn(r->arg);
		__atomic_store_n(&r->done, s, __ATOMIC_RELEASE);
	}
}

static void remote_start(void)
{
	lcore1 = (struct remote){0};
	rte_eal_remote_launch(remote_loop, &lcore1, 1);
}

/* Runs fn(arg) on lcore 1; remote_wait() waits for it to return. */
static void remote_call(int (*fn)(void *), void *arg)
{
	lcore1.fn = fn;
	lcore1.arg = arg;
	__atomic_store_n(&lcore1.seq, lcore1.seq + 1, __ATOMIC_RELEASE);
}

static void remote_wait(void)
{
	while (__atomic_load_n(&lcore1.done, __ATOMIC_ACQUIRE) != lcore1.seq)
		rte_pause();
}

static void remote_stop(void)
{
	remote_call(NULL, NULL);
	rte_eal_wait_lcore(1);
}

/* ---- traffic ------------------------------------------------------------ */

/* The testbed, plus what the benchmark keeps per peer and per lcore. */
static int bench_setup(struct bench *b, uint32_t npeers, uint32_t nworkers)
{
	memset(b, 0, sizeof(*b));
	int rc = dp_tb_setup(&b->tb, npeers, nworkers, bench_snat);
	if (rc)
		return rc;
	b->active = nworkers;
	b->keyed_tsc = rte_rdtsc();
	b->ctr = calloc(npeers, sizeof(*b->ctr));
	b->gen[0] = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, -1);
	b->gen[1] = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, -1);
	if (!b->ctr || !b->gen[0] || !b->gen[1])
		return -ENOMEM;
	if (nworkers > 1)
		remote_start();
	return 0;
}

static void bench_teardown(struct bench *b)
{
	if (b->tb.nworkers > 1)
		remote_stop();
	dp_tb_teardown(&b->tb);
	dp_crypto_destroy(b->gen[0]);
	dp_crypto_destroy(b->gen[1]);
	free(b->ctr);
}

/*
 * One round for every queue. Spread: consecutive frames go to consecutive
 * peers and queue i % nworkers (as RSS would place them). Single peer: one
 * tunnel's counters alternate between the queues, as when its packets are
 * sprayed over workers, so every worker sees an interleaved window.
 *
 * Each queue is generated (and, for decap, encrypted) by the lcore whose
 * worker polls it, all at once: a worker then finds its packets as a
 * worker with its own NIC queue would, not dirty in another core's cache
 * (reading those would charge the harness's cross-core traffic to the
 * worker). Frame i's counter is its peer's base counter plus the number of
 * frames of that peer before it in the round, so the lcores need not share
 * a counter.
 */
struct gen_arg {
	struct bench *b;
	enum dir d;
	uint32_t size, first;
	bool single_peer;
	unsigned q, n;
};

static uint32_t frame_peer(const struct gen_arg *g, unsigned i)
{
	const struct bench *b = g->b;
	return g->single_peer ? 0 : (g->first + i) % (b->spread ? b->spread : b->tb.npeers);
}

static int gen_queue(void *arg)
{
	struct gen_arg *g = arg;
	struct bench *b = g->b;
	struct rte_mbuf *m[ROUND];
	static struct dp_aead_op ops[2][ROUND];
	uint32_t per_peer = g->single_peer ? 1 : b->spread ? b->spread : b->tb.npeers;
	unsigned n = 0;

	for (unsigned j = 0; j < ROUND; j++) {
		unsigned i = j * b->active + g->q;
		uint32_t peer = frame_peer(g, i);
		struct rte_mbuf *x =
		    g->d == ENCAP ? dp_tb_lan_frame(&b->tb, peer, g->size)
				  : dp_tb_wan_frame(&b->tb, peer, b->ctr[peer] + i / per_peer,
						    g->size, &ops[g->q][n]);
		if (x)
			m[n++] = x;
	}
	if (g->d == DECAP)
		for (unsigned i = 0; i < n; i += 64)
			dp_crypto_seal_burst(b->gen[g->q], ops[g->q] + i, RTE_MIN(64u, n - i));
	g->n =
	    rte_ring_enqueue_burst(b->tb.ring[g->d == DECAP ? 0 : 1][g->q][0], (void **)m, n, NULL);
	if (g->n < n)
		rte_pktmbuf_free_bulk(m + g->n, n - g->n);
	return 0;
}

/* Queue 0 is generated on the calling lcore, queue 1 (if any) on lcore 1. */
static unsigned fill(struct bench *b, enum dir d, uint32_t size, uint32_t first, bool single_peer)
{
	struct gen_arg g[2];
	unsigned total = 0;

	for (unsigned q = 0; q < b->active; q++)
		g[q] = (struct gen_arg){b, d, size, first, single_peer, q, 0};
	if (b->active > 1)
		remote_call(gen_queue, &g[1]);
	gen_queue(&g[0]);
	if (b->active > 1)
		remote_wait();
	for (unsigned i = 0; i < ROUND * b->active; i++)
		b->ctr[frame_peer(&g[0], i)]++;
	for (unsigned q = 0; q < b->active; q++)
		total += g[q].n;
	return total;
}

static uint64_t drain(struct bench *b)
{
	uint64_t total = 0;

	for (unsigned q = 0; q < b->tb.nworkers; q++)
		total += dp_tb_drain(&b->tb, q);
	return total;
}

/*
 * After a round: each lcore frees what its own worker sent, as a worker
 * frees its TX completions into its own mempool cache (mbufs freed on the
 * main lcore would come back to lcore 1 cold, from the pool's ring).
 */
struct drain_arg {
	struct bench *b;
	uint64_t n;
};

static int drain_queue1(void *arg)
{
	struct drain_arg *a = arg;

	a->n = dp_tb_drain(&a->b->tb, 1);
	return 0;
}

static uint64_t drain_parallel(struct bench *b)
{
	struct drain_arg a = {b, 0};

	if (b->active < 2)
		return dp_tb_drain(&b->tb, 0);
	remote_call(drain_queue1, &a);
	uint64_t n = dp_tb_drain(&b->tb, 0);
	remote_wait();
	return n + a.n;
}

/* ---- running the workers ------------------------------------------------- */

struct run_arg {
	struct bench *b;
	unsigned idx;
	volatile int *go;
	uint64_t end_tsc;
};

static int run_worker(void *arg)
{
	struct run_arg *a = arg;
	struct dp_worker *w = &a->b->tb.dp.workers[a->idx];
	static struct dp_burst bursts[2];
	struct dp_burst *burst = &bursts[a->idx];
	unsigned idle = 0;

	while (!__atomic_load_n(a->go, __ATOMIC_ACQUIRE))
		rte_pause();
	while (idle < 4) {
		if (dp_worker_poll(w, burst))
			idle = 0;
		else if (!rte_ring_count(a->b->tb.ring[0][a->idx][0]) &&
			 !rte_ring_count(a->b->tb.ring[1][a->idx][0]))
			idle++;
	}
	a->end_tsc = rte_rdtsc();
	return 0;
}

static void workers_online(struct bench *b, bool on)
{
	for (unsigned i = 0; i < b->active; i++) {
		if (on) {
			rte_rcu_qsbr_thread_register(b->tb.dp.rcu, i);
			rte_rcu_qsbr_thread_online(b->tb.dp.rcu, i);
		} else {
			rte_rcu_qsbr_thread_offline(b->tb.dp.rcu, i);
			rte_rcu_qsbr_thread_unregister(b->tb.dp.rcu, i);
		}
	}
}

/* Rounds until the workers were busy for `secs` in total. single_peer: all
 * queues carry peer 0; otherwise peers are spread over queues (as RSS). */
static struct result measure(struct bench *b, enum dir d, uint32_t size, double secs,
			     bool single_peer)
{
	struct result r = {0};
	uint64_t busy0[2], rx0[2], crypto0[2], wall = 0, out = 0, in = 0;
	uint32_t next = 0;

	/* The dataplane refuses a keypair 180 s after it was made (as WireGuard
	 * does); the control process rekeys after 120 s, and so does a long run. */
	if (rte_rdtsc() - b->keyed_tsc > 100 * hz) {
		if (dp_tb_rekey(&b->tb)) {
			fprintf(stderr, "bench: rekey failed\n");
			exit(1);
		}
		b->keyed_tsc = rte_rdtsc();
	}
	drain(b);
	for (unsigned i = 0; i < b->active; i++) {
		busy0[i] = b->tb.dp.workers[i].busy_tsc;
		rx0[i] = b->tb.dp.workers[i].rx_pkts;
		crypto0[i] = b->tb.dp.workers[i].crypto_tsc;
	}
	workers_online(b, true);
	uint64_t busy_target = (uint64_t)(secs * (double)hz) * b->active;
	uint64_t busy = 0;
	while (busy < busy_target) {
		in += fill(b, d, size, next, single_peer);
		next += ROUND * b->active;
		volatile int go = 0;
		struct run_arg args[2] = {{b, 0, &go, 0}, {b, 1, &go, 0}};
		if (b->active > 1)
			remote_call(run_worker, &args[1]);
		uint64_t t0 = rte_rdtsc();
		__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
		run_worker(&args[0]);
		if (b->active > 1)
			remote_wait();
		uint64_t t1 = RTE_MAX(args[0].end_tsc, args[1].end_tsc);
		wall += t1 - t0;
		out += drain_parallel(b);
		busy = 0;
		for (unsigned i = 0; i < b->active; i++)
			busy += b->tb.dp.workers[i].busy_tsc - busy0[i];
	}
	workers_online(b, false);
	uint64_t pkts = 0, crypto = 0;
	for (unsigned i = 0; i < b->active; i++) {
		pkts += b->tb.dp.workers[i].rx_pkts - rx0[i];
		crypto += b->tb.dp.workers[i].crypto_tsc - crypto0[i];
	}
	for (unsigned i = 0; i < b->active; i++) {
		r.wbusy[i] = b->tb.dp.workers[i].busy_tsc - busy0[i];
		r.wpkts[i] = b->tb.dp.workers[i].rx_pkts - rx0[i];
		r.worker_cycles[i] = (double)r.wbusy[i] / (double)r.wpkts[i];
	}
	r.busy = busy;
	r.wall = wall;
	r.pkts = pkts;
	r.lost = in > out ? in - out : 0;
	r.cycles = (double)busy / (double)pkts;
	r.crypto = (double)crypto / (double)pkts;
	/* Per worker: packets per second of busy time; all workers: by wall time. */
	r.mpps = (double)pkts / ((double)busy / (double)hz) / 1e6;
	r.wall_mpps = (double)pkts / ((double)wall / (double)hz) / 1e6;
	r.gbps = r.wall_mpps * size * 8 / 1e3;
	return r;
}

/*
 * The raw ChaCha20-Poly1305 burst rate (ipsec-mb, bursts of 32, the worker's
 * own manager), two ways, each adding its cycles and operations to *cyc and
 * *ops:
 *
 * ceiling_hot: the same 32 buffers over and over, so the data is in L1:
 * the compute limit of the crypto alone.
 *
 * ceiling_same: the very packets a worker round gets (fill(), then taken
 * off the RX ring untimed), the AEAD run over each one's payload as the
 * worker would, in bursts of 32, and nothing else: the raw rate on data in
 * the same cache state as the worker's. The worker's cycles over these are
 * what the dataplane adds to the crypto.
 */
static void ceiling_hot(struct dp_crypto *c, enum dir d, uint32_t size, double secs, uint64_t *cyc,
			uint64_t *ops_done)
{
	static uint8_t buf[32][2048] __rte_aligned(64);
	static uint8_t key[32];
	uint32_t len = RTE_ALIGN_CEIL(size, 16);
	struct dp_aead_op ops[32];

	for (int i = 0; i < 32; i++)
		ops[i] = (struct dp_aead_op){.data = buf[i],
					     .len = len,
					     .tag = buf[i] + len,
					     .key = key,
					     .counter = (uint64_t)i};
	uint64_t end = rte_rdtsc() + (uint64_t)(secs * (double)hz);
	while (rte_rdtsc() < end) {
		uint64_t t0 = rte_rdtsc();
		dp_crypto_seal_burst(c, ops, 32);
		uint64_t t1 = rte_rdtsc();
		if (d == ENCAP) {
			*cyc += t1 - t0;
		} else {
			dp_crypto_open_burst(c, ops, 32);
			*cyc += rte_rdtsc() - t1;
		}
		*ops_done += 32;
	}
}

/* Returns the number of decryptions that failed (must be 0). */
static uint64_t ceiling_same(struct bench *b, enum dir d, uint32_t size, double secs, uint64_t *cyc,
			     uint64_t *ops_done)
{
	struct dp_crypto *c = b->tb.dp.workers[0].crypto;
	struct rte_ring *rx = b->tb.ring[d == DECAP ? 0 : 1][0][0];
	uint32_t len = RTE_ALIGN_CEIL(size, 16);
	uint64_t timed = 0, failed = 0;
	static uint32_t first;
	struct rte_mbuf *m[ROUND];
	struct dp_aead_op ops[32];

	drain(b);
	while (timed < (uint64_t)(secs * (double)hz)) {
		fill(b, d, size, first, false);
		first += ROUND;
		unsigned n = rte_ring_dequeue_burst(rx, (void **)m, ROUND, NULL);
		for (unsigned i = 0; i < n; i += 32) {
			unsigned k = RTE_MIN(32u, n - i);
			for (unsigned j = 0; j < k; j++) {
				uint8_t *f = rte_pktmbuf_mtod(m[i + j], uint8_t *);
				uint8_t *data =
				    f + (d == DECAP ? DP_OUTER4_LEN + sizeof(struct wg_message_data)
						    : sizeof(struct rte_ether_hdr));
				uint64_t ctr = 0;
				if (d == DECAP)
					memcpy(&ctr, f + DP_OUTER4_LEN + 8, 8);
				ops[j] = (struct dp_aead_op){.data = data,
							     .len = len,
							     .tag = data + len,
							     .key = d == DECAP ? b->tb.key_p2g
									       : b->tb.key_g2p,
							     .counter = rte_le_to_cpu_64(ctr)};
			}
			uint64_t t0 = rte_rdtsc();
			if (d == DECAP)
				dp_crypto_open_burst(c, ops, k);
			else
				dp_crypto_seal_burst(c, ops, k);
			timed += rte_rdtsc() - t0;
			for (unsigned j = 0; j < k; j++)
				failed += ops[j].status != 0;
		}
		*ops_done += n;
		rte_pktmbuf_free_bulk(m, n);
	}
	*cyc += timed;
	return failed;
}

/*
 * io_floor: the same rounds of packets moved from the worker's input port
 * to its output port by rte_eth_rx_burst and rte_eth_tx_burst alone (what
 * dpdk-testpmd's io forwarding does), timed like the worker: only polls
 * that received something: the part of the worker's own work that is the
 * ports' (what is left of it is classify, lookups, headers, counters).
 */
static void io_floor(struct bench *b, enum dir d, uint32_t size, double secs, uint64_t *cyc,
		     uint64_t *pkts)
{
	const struct dp_ctx *dp = &b->tb.dp;
	uint16_t in = dp->ports[d == DECAP ? dp->wan : dp->lan].port_id;
	uint16_t out = dp->ports[d == DECAP ? dp->lan : dp->wan].port_id;
	uint16_t burst = (uint16_t)dp->cfg->burst;
	uint64_t timed = 0, n_in = 0;
	static uint32_t first;
	struct rte_mbuf *m[DP_BURST_MAX];

	/* Bounded by wall time, generation included: at a few cycles per
	 * packet, secs of I/O alone would take hundreds of times longer. */
	uint64_t end = rte_rdtsc() + (uint64_t)(secs * (double)hz);
	drain(b);
	while (rte_rdtsc() < end || n_in == 0) {
		fill(b, d, size, first, false);
		first += ROUND;
		for (;;) {
			uint64_t t0 = rte_rdtsc();
			uint16_t n = rte_eth_rx_burst(in, 0, m, burst);
			if (!n)
				break;
			uint16_t k = rte_eth_tx_burst(out, 0, m, n);
			timed += rte_rdtsc() - t0;
			n_in += n;
			if (k < n)
				rte_pktmbuf_free_bulk(m + k, n - k);
		}
		drain(b);
	}
	*cyc += timed;
	*pkts += n_in;
}

/* ---- reports ---------------------------------------------------------------- */

static void json_row(const char *table, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool json_first = true;

static void json_row(const char *table, const char *fmt, ...)
{
	va_list ap;
	if (!json)
		return;
	fprintf(json, "%s\n  {\"table\":\"%s\",", json_first ? "" : ",", table);
	json_first = false;
	va_start(ap, fmt);
	vfprintf(json, fmt, ap);
	va_end(ap);
	fputc('}', json);
}

/*
 * One worker, one peer, per direction and size. The worker's rounds and the
 * two raw-crypto ceilings are measured in turns (SLICES of each), so that
 * the machine's speed, which drifts from second to second on a shared
 * host, is the same for all three.
 */
#define SLICES 8
static void table_sizes(double secs)
{
	static const uint32_t sizes[] = {64, 128, 512, 1420};
	struct bench b;
	if (bench_setup(&b, 1, 1)) {
		fprintf(stderr, "bench setup failed\n");
		exit(1);
	}
	printf("\n### Per direction and size (1 worker, 1 peer)\n\n");
	printf("Raw crypto = intel-ipsec-mb ChaCha20-Poly1305, bursts of 32, the worker's own\n"
	       "manager, alone: over the same packets the worker gets (same buffers, same cache\n"
	       "state: what the dataplane adds is the difference) and over 32 buffers that stay\n"
	       "in L1 (the compute limit). I/O = the same packets moved from the input port to\n"
	       "the output port by rx_burst + tx_burst alone (testpmd's io forwarding). All\n"
	       "measured in turns with the worker. The worker's cycles split into its crypto\n"
	       "bursts (timed inside the worker) and its own work (RX, classify, lookups,\n"
	       "nonces, headers, counters, TX).\n\n");
	printf("| direction | size B | Mpps | Gbit/s | cycles/pkt | of which crypto | own | "
	       "raw, same packets: cycles | ratio | raw, L1-hot: cycles | ratio | I/O: cycles "
	       "| lost |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int d = 0; d < 2; d++) {
		for (unsigned s = 0; s < RTE_DIM(sizes); s++) {
			uint64_t busy = 0, pkts = 0, lost = 0, same_cyc = 0, same_n = 0;
			double crypto_sum = 0;
			uint64_t hot_cyc = 0, hot_n = 0, io_cyc = 0, io_n = 0, bad = 0;
			for (int k = 0; k < SLICES; k++) {
				struct result r =
				    measure(&b, (enum dir)d, sizes[s], secs / SLICES, false);
				busy += (uint64_t)(r.cycles * (double)r.pkts);
				crypto_sum += r.crypto * (double)r.pkts;
				pkts += r.pkts;
				lost += r.lost;
				bad += ceiling_same(&b, (enum dir)d, sizes[s], secs / SLICES / 2,
						    &same_cyc, &same_n);
				ceiling_hot(b.tb.dp.workers[0].crypto, (enum dir)d, sizes[s],
					    secs / SLICES / 2, &hot_cyc, &hot_n);
				io_floor(&b, (enum dir)d, sizes[s], secs / SLICES / 4, &io_cyc,
					 &io_n);
			}
			if (bad)
				fprintf(stderr, "bench: %" PRIu64 " raw decryptions failed\n", bad);
			double cyc = (double)busy / (double)pkts;
			double same = (double)same_cyc / (double)same_n;
			double hot = (double)hot_cyc / (double)hot_n;
			double io = (double)io_cyc / (double)io_n;
			double crypto = crypto_sum / (double)pkts;
			double mpps = (double)hz / cyc / 1e6;
			printf(
			    "| %s | %u | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f%% | %.0f | "
			    "%.0f%% | %.0f | %" PRIu64 " |\n",
			    dir_name[d], sizes[s], mpps, mpps * sizes[s] * 8 / 1e3, cyc, crypto,
			    cyc - crypto, same, 100 * same / cyc, hot, 100 * hot / cyc, io, lost);
			json_row("sizes",
				 "\"direction\":\"%s\",\"size\":%u,\"mpps\":%.3f,\"cycles\":%.1f,"
				 "\"crypto_cycles\":%.1f,\"own_cycles\":%.1f,"
				 "\"raw_same_cycles\":%.1f,\"ratio_same\":%.3f,"
				 "\"raw_hot_cycles\":%.1f,\"ratio_hot\":%.3f,\"io_cycles\":%.1f,"
				 "\"lost\":%" PRIu64,
				 dir_name[d], sizes[s], mpps, cyc, crypto, cyc - crypto, same,
				 same / cyc, hot, hot / cyc, io, lost);
		}
	}
	bench_teardown(&b);
}

/*
 * 1 vs 2 workers on one dataplane with two queues: "1 worker" puts all
 * traffic on queue 0 and runs worker 0 only. The two are measured in turns
 * (SLICES each), so that the machine's drift from second to second does not
 * land on one of them.
 */
static void table_workers(double secs)
{
	printf("\n### Workers (1420 B; each worker's queue filled by its own lcore, then the "
	       "workers own both cores;\n### 1 and 2 workers measured in turns)\n\n");
	printf("| direction | peers | workers | total Mpps (wall) | cycles/pkt | per worker | "
	       "speed-up | lost |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	for (int d = 0; d < 2; d++) {
		for (int single = 0; single < 2; single++) {
			struct bench b;
			uint64_t pkts[3] = {0}, busy[3] = {0}, wall[3] = {0}, lost[3] = {0};
			uint64_t wb[2] = {0}, wp[2] = {0};

			if (bench_setup(&b, single ? 1 : 1024, 2)) {
				fprintf(stderr, "bench setup failed\n");
				exit(1);
			}
			for (int k = 0; k < SLICES; k++) {
				for (unsigned w = 1; w <= 2; w++) {
					b.active = w;
					struct result r =
					    measure(&b, (enum dir)d, 1420, secs / SLICES, single);
					pkts[w] += r.pkts;
					busy[w] += r.busy;
					wall[w] += r.wall;
					lost[w] += r.lost;
					for (unsigned i = 0; w == 2 && i < 2; i++) {
						wb[i] += r.wbusy[i];
						wp[i] += r.wpkts[i];
					}
				}
			}
			double base = (double)pkts[1] / (double)wall[1];
			for (unsigned w = 1; w <= 2; w++) {
				double mpps =
				    (double)pkts[w] / ((double)wall[w] / (double)hz) / 1e6;
				double cyc = (double)busy[w] / (double)pkts[w];
				double up = (double)pkts[w] / (double)wall[w] / base;
				char per[32];
				if (w == 1)
					snprintf(per, sizeof(per), "%.0f", cyc);
				else
					snprintf(per, sizeof(per), "%.0f / %.0f",
						 (double)wb[0] / (double)wp[0],
						 (double)wb[1] / (double)wp[1]);
				printf("| %s | %s | %u | %.2f | %.0f | %s | %.2fx | %" PRIu64
				       " |\n",
				       dir_name[d], single ? "1 (one tunnel)" : "1024 (spread)", w,
				       mpps, cyc, per, up, lost[w]);
				json_row("workers",
					 "\"direction\":\"%s\",\"peers\":%d,\"workers\":%u,"
					 "\"mpps\":%.3f,\"cycles\":%.1f,\"speedup\":%.3f,"
					 "\"lost\":%" PRIu64,
					 dir_name[d], single ? 1 : 1024, w, mpps, cyc, up, lost[w]);
			}
			bench_teardown(&b);
		}
	}
}

/*
 * Configured peers vs peers the traffic goes to. With all configured peers
 * sending, each packet's peer state (keypair, replay slot, peer, counters)
 * leaves the cache as the peers grow; with the traffic on one or 1,000 of
 * them, what is left is the cost of the lookup structures' size (the
 * receiver-index table, the allowed-IP LPM), which must not grow.
 */
static void table_peers(double secs)
{
	static const uint32_t counts[] = {1, 1000, 100000};
	static const uint32_t spreads[] = {1, 1000, 0};
	static const char *const spread_name[] = {"1", "1,000", "all"};
	printf("\n### Peers (64 B, 1 worker): configured peers x peers sending\n\n");
	printf("Decap / encap cycles per packet. Sending: traffic spread evenly over that many\n"
	       "of the configured peers (\"all\": every configured peer, the working set grows\n"
	       "with them).\n\n");
	printf("| peers configured | sending | decap cycles/pkt | encap cycles/pkt | "
	       "dataplane memory per peer |\n");
	printf("|---|---|---|---|---|\n");
	for (unsigned i = 0; i < RTE_DIM(counts); i++) {
		struct bench b;
		if (bench_setup(&b, counts[i], 1)) {
			fprintf(stderr, "bench setup failed for %u peers\n", counts[i]);
			exit(1);
		}
		/* Per-peer state: the peer, its keypair slots, its statistics rows. */
		size_t per_peer = sizeof(struct dp_peer) +
				  MG_KP_PER_PEER * sizeof(struct dp_keypair) +
				  (b.tb.nworkers + 1) * sizeof(struct mg_peer_stats) +
				  sizeof(struct mg_peer_export);
		for (unsigned j = 0; j < RTE_DIM(spreads); j++) {
			if (spreads[j] >= counts[i])
				continue; /* the same as "all" */
			b.spread = spreads[j];
			struct result dr = measure(&b, DECAP, 64, secs, false);
			struct result er = measure(&b, ENCAP, 64, secs, false);
			uint32_t sending = spreads[j] ? spreads[j] : counts[i];
			printf("| %u | %s | %.0f | %.0f | %zu B (+ one /32 route) |\n", counts[i],
			       spread_name[j], dr.cycles, er.cycles, per_peer);
			json_row("peers",
				 "\"peers\":%u,\"sending\":%u,\"decap_cycles\":%.1f,"
				 "\"encap_cycles\":%.1f,\"bytes_per_peer\":%zu",
				 counts[i], sending, dr.cycles, er.cycles, per_peer);
		}
		bench_teardown(&b);
	}
}

/* Drops across a forced rekey under load: the worker runs on lcore 1 while
 * the main lcore generates traffic and, halfway, installs a new keypair the
 * way the control process does (KEYPAIR_ADD through the same handler). For
 * decap the peer switches to the new keypair at that moment, as a WireGuard
 * initiator does, while packets on the old one are still queued. */
struct loop_arg {
	struct bench *b;
	volatile int stop;
};

static int loop_worker(void *arg)
{
	struct loop_arg *a = arg;
	static struct dp_burst burst;
	while (!a->stop)
		dp_worker_poll(&a->b->tb.dp.workers[0], &burst);
	while (dp_worker_poll(&a->b->tb.dp.workers[0], &burst))
		;
	return 0;
}

static void install_keypair(struct bench *b, bool initiator)
{
	struct mg_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_KEYPAIR_ADD, .peer = 0};
	struct mg_msg_keypair *k = (struct mg_msg_keypair *)m.data;
	/* Peer 0's next slot (its slots are 0 .. MG_KP_PER_PEER - 1). */
	uint32_t slot = ((b->tb.lidx[0] & b->tb.dp.kp_mask) + 1) % MG_KP_PER_PEER;
	b->tb.lidx[0] = (0x6b000000u & ~b->tb.dp.kp_mask) | slot;
	randombytes_buf(b->tb.key_g2p, 32);
	randombytes_buf(b->tb.key_p2g, 32);
	k->local_index = b->tb.lidx[0];
	k->remote_index = 0x20000;
	k->initiator = initiator;
	memcpy(k->send_key, b->tb.key_g2p, 32);
	memcpy(k->recv_key, b->tb.key_p2g, 32);
	dp_service_handle(&b->tb.dp, &m);
	dp_service_commit(&b->tb.dp);
	b->ctr[0] = 0;
}

static void table_rekey(double secs)
{
	printf("\n### Forced rekey under load (1420 B, 1 worker on lcore 1; the main lcore "
	       "generates)\n\n");
	printf(
	    "| direction | offered | delivered | dropped by the dataplane | drops by reason |\n");
	printf("|---|---|---|---|---|\n");
	for (int d = 0; d < 2; d++) {
		struct bench b;
		if (bench_setup(&b, 1, 1)) {
			fprintf(stderr, "bench setup failed\n");
			exit(1);
		}
		uint64_t drops0[MG_DROP_MAX], in = 0, out = 0;
		memcpy(drops0, b.tb.dp.workers[0].drops, sizeof(drops0));
		struct loop_arg la = {.b = &b};
		/* The worker runs on lcore 1 and registers itself with RCU there. */
		rte_rcu_qsbr_thread_register(b.tb.dp.rcu, 0);
		rte_rcu_qsbr_thread_online(b.tb.dp.rcu, 0);
		rte_eal_remote_launch(loop_worker, &la, 1);
		uint64_t end = rte_rdtsc() + (uint64_t)(secs * 4 * (double)hz), half = 0;
		bool rekeyed = false;
		while (rte_rdtsc() < end) {
			if (!rekeyed && rte_rdtsc() > end - (uint64_t)(secs * 2 * (double)hz)) {
				/* Encap: we initiated, the new keypair is current at once.
				 * Decap: we responded; it stays next until the peer uses it. */
				install_keypair(&b, d == ENCAP);
				rekeyed = true;
				half = in;
			}
			if (rte_ring_free_count(b.tb.ring[d == DECAP ? 0 : 1][0][0]) >= ROUND)
				in += fill(&b, (enum dir)d, 1420, 0, true);
			out += drain(&b);
		}
		la.stop = 1;
		rte_eal_wait_lcore(1);
		rte_rcu_qsbr_thread_offline(b.tb.dp.rcu, 0);
		rte_rcu_qsbr_thread_unregister(b.tb.dp.rcu, 0);
		out += drain(&b);
		char reasons[256] = "none";
		size_t len = 0;
		uint64_t dropped = 0;
		for (int r = 0; r < MG_DROP_MAX; r++) {
			uint64_t x = b.tb.dp.workers[0].drops[r] - drops0[r];
			if (!x)
				continue;
			dropped += x;
			len +=
			    (size_t)snprintf(reasons + len, sizeof(reasons) - len, "%s%s %" PRIu64,
					     len ? ", " : "", mg_drop_names[r], x);
		}
		printf("| %s | %" PRIu64 " (rekey after %" PRIu64 ") | %" PRIu64 " | %" PRIu64
		       " | %s |\n",
		       dir_name[d], in, half, out, dropped, reasons);
		json_row("rekey",
			 "\"direction\":\"%s\",\"offered\":%" PRIu64 ",\"delivered\":%" PRIu64
			 ",\"dropped\":%" PRIu64,
			 dir_name[d], in, out, dropped);
		bench_teardown(&b);
	}
}

/* ---- packet filter ---------------------------------------------------------- */

static uint64_t acl_gen;

/* Install rules through the same control messages the control process
 * sends (BEGIN, RULES chunks, COMMIT); returns the build time in us. */
static int install_filter(struct bench *b, const struct mg_acl_rule *rules, uint32_t n)
{
	struct mg_msg m;
	struct mg_msg_acl_begin *bg = (struct mg_msg_acl_begin *)m.data;
	uint64_t gen = ++acl_gen;
	uint64_t t0 = rte_rdtsc();

	memset(&m, 0, sizeof(m));
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_ACL_BEGIN, .len = sizeof(*bg)};
	*bg = (struct mg_msg_acl_begin){.generation = gen, .n_rules = n};
	dp_service_handle(&b->tb.dp, &m);
	for (uint32_t i = 0; i < n; i += (uint32_t)MG_ACL_RULES_PER_MSG) {
		struct mg_msg_acl_chunk *c = (struct mg_msg_acl_chunk *)m.data;
		uint32_t k = RTE_MIN(n - i, (uint32_t)MG_ACL_RULES_PER_MSG);
		c->generation = gen;
		c->first = i;
		c->count = k;
		memcpy(c->data, rules + i, k * sizeof(*rules));
		m.hdr = (struct mg_msg_hdr){.type = MG_MSG_ACL_RULES,
					    .len = (uint16_t)(sizeof(*c) + k * sizeof(*rules))};
		dp_service_handle(&b->tb.dp, &m);
	}
	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_ACL_COMMIT, .len = sizeof(*bg)};
	*bg = (struct mg_msg_acl_begin){.generation = gen, .n_rules = n};
	dp_service_handle(&b->tb.dp, &m);
	if (!__atomic_load_n(&b->tb.dp.filter, __ATOMIC_ACQUIRE))
		return -1;
	return (int)((rte_rdtsc() - t0) * 1000000 / hz);
}

/* n rules like a big site's: random IPv4 and IPv6 prefixes and port ranges,
 * TCP and UDP, plus the one that lets the benchmark's traffic through,
 * last (the classifier has no early exit either way). */
static struct mg_acl_rule *make_rules(uint32_t n, uint32_t peer_addr)
{
	struct mg_acl_rule *r = calloc(n, sizeof(*r));
	uint64_t x = 0x243f6a8885a308d3ull;
	if (!r)
		return NULL;
	for (uint32_t i = 0; i + 1 < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		bool v6 = (x & 7) == 0;
		r[i].family = v6 ? AF_INET6 : AF_INET;
		r[i].proto = (x >> 3) & 1 ? IPPROTO_TCP : IPPROTO_UDP;
		r[i].src_len = (uint8_t)(v6 ? 48 + (x >> 8) % 81 : 16 + (x >> 8) % 17);
		r[i].dst_len = (uint8_t)(v6 ? 48 + (x >> 16) % 81 : 16 + (x >> 16) % 17);
		uint16_t lo = (uint16_t)(x >> 24);
		r[i].dport_lo = lo;
		r[i].dport_hi =
		    (x >> 40) & 1 ? lo : (uint16_t)RTE_MIN(65535u, lo + ((x >> 41) & 1023));
		r[i].acl_index = i;
		for (int k = 0; k < 16; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			r[i].src[k] = (uint8_t)x;
			r[i].dst[k] = (uint8_t)(x >> 8);
		}
		if (!v6) { /* keep them off the benchmark's addresses */
			r[i].src[0] = 172;
			memset(r[i].src + 4, 0, 12);
			memset(r[i].dst + 4, 0, 12);
		}
	}
	struct mg_acl_rule *a = &r[n - 1];
	*a = (struct mg_acl_rule){.family = AF_INET,
				  .proto = IPPROTO_UDP,
				  .src_len = 32,
				  .dst_len = 24,
				  .dport_lo = 2000,
				  .dport_hi = 2000,
				  .acl_index = n - 1};
	uint32_t src = rte_cpu_to_be_32(peer_addr), dst = rte_cpu_to_be_32(0x0a580000u);
	memcpy(a->src, &src, 4);
	memcpy(a->dst, &dst, 4);
	return r;
}

static void table_acl(double secs)
{
	static const struct {
		uint32_t rules;
		bool snat, flows;
	} rows[] = {{0, false, false},	{1000, false, false}, {10000, false, false},
		    {0, true, false},	{10000, true, false}, {0, false, true},
		    {10000, true, true}};
	printf("\n### Features on the decap path (1 worker, 1 peer): the packet filter (every\n"
	       "### decrypted packet checked; UDP, so no reply shortcut), SNAT to the LAN and\n"
	       "### flow logs (flow_log: every packet counted in the worker's flow table; the\n"
	       "### traffic is one flow, so this is the best case: a new flow per packet adds a\n"
	       "### hash lookup)\n\n");
	printf(
	    "| rules | SNAT | flow log | build ms | 1420 B cycles/pkt | 1420 B Mpps | vs plain | "
	    "64 B cycles/pkt | vs plain | lost |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|\n");
	double base_big = 0, base_small = 0;
	for (unsigned i = 0; i < RTE_DIM(rows); i++) {
		struct bench b;
		uint32_t counts_i = rows[i].rules;
		bench_snat = rows[i].snat;
		int setup_rc = bench_setup(&b, 1, 1);
		bench_snat = false;
		if (setup_rc) {
			fprintf(stderr, "bench setup failed\n");
			exit(1);
		}
		for (unsigned w = 0; rows[i].flows && w < b.tb.nworkers; w++) {
			char name[32];
			snprintf(name, sizeof(name), "bench_flows%u", w);
			b.tb.dp.workers[w].flowlog =
			    dp_flowlog_create(name, 65536, hz, 60 * hz,
					      mg_shm_flow_ring(&b.tb.dp.shm, w), SOCKET_ID_ANY);
			if (!b.tb.dp.workers[w].flowlog) {
				fprintf(stderr, "flow table not created\n");
				exit(1);
			}
		}
		int build_us = 0;
		if (counts_i) {
			struct mg_acl_rule *rules = make_rules(counts_i, dp_tb_peer_ip(0));
			build_us = rules ? install_filter(&b, rules, counts_i) : -1;
			free(rules);
			if (build_us < 0) {
				fprintf(stderr, "filter with %u rules not installed\n", counts_i);
				exit(1);
			}
		}
		struct result big = measure(&b, DECAP, 1420, secs, false);
		struct result small = measure(&b, DECAP, 64, secs, false);
		uint64_t denied = 0;
		for (unsigned l = 0; l <= b.tb.nworkers; l++)
			denied += mg_shm_drops(&b.tb.dp.shm, l)[MG_DROP_ACL_DENIED];
		if (i == 0) {
			base_big = big.mpps;
			base_small = small.mpps;
		}
		printf("| %u%s | %s | %s | %.1f | %.0f | %.2f | %+.1f%% | %.0f | %+.1f%% | %" PRIu64
		       " |\n",
		       counts_i, counts_i ? "" : " (no policy)", rows[i].snat ? "on" : "off",
		       rows[i].flows ? "on" : "off", build_us / 1000.0, big.cycles, big.mpps,
		       (big.mpps / base_big - 1) * 100, small.cycles,
		       (small.mpps / base_small - 1) * 100, big.lost + small.lost);
		json_row("acl",
			 "\"rules\":%u,\"snat\":%s,\"flow_log\":%s,\"build_us\":%d,\"cycles_1420\":"
			 "%.1f,\"mpps_"
			 "1420\":%.3f,"
			 "\"change_1420\":%.4f,\"cycles_64\":%.1f,\"change_64\":%.4f,\"denied\":"
			 "%" PRIu64,
			 counts_i, rows[i].snat ? "true" : "false",
			 rows[i].flows ? "true" : "false", build_us, big.cycles, big.mpps,
			 big.mpps / base_big - 1, small.cycles, small.mpps / base_small - 1,
			 denied);
		bench_teardown(&b);
	}
}

/* Whether the comma-separated list names this table. */
static bool want(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* The EAL's memory, MiB: 100,000 peers' keypairs and both route tables. */
#define EAL_MB 3072

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"quick", no_argument, NULL, 'q'},	       {"json", required_argument, NULL, 'j'},
	    {"profile", required_argument, NULL, 'p'}, {"no-huge", no_argument, NULL, 'n'},
	    {"tables", required_argument, NULL, 't'},  {"burst", required_argument, NULL, 'b'},
	    {NULL, 0, NULL, 0}};
	const char *profile = NULL;
	bool no_huge = false;
	const char *tables = "sizes,workers,peers,rekey,features";
	const char *json_path = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "qj:", opts, NULL)) != -1) {
		if (c == 'b') {
			int v = atoi(optarg);
			if (v < 1 || v > DP_BURST_MAX) {
				fprintf(stderr, "--burst %s: 1..%d\n", optarg, DP_BURST_MAX);
				return 2;
			}
			dp_tb_burst = (unsigned)v;
		} else if (c == 'q')
			quick = true;
		else if (c == 'j')
			json_path = optarg;
		else if (c == 'p')
			profile = optarg;
		else if (c == 'n')
			no_huge = true;
		else if (c == 't')
			tables = optarg;
		else {
			fprintf(stderr,
				"usage: %s [--quick] [--json FILE] [--no-huge]\n"
				"          [--tables sizes,workers,peers,rekey,features]\n"
				"          [--burst N] [--profile "
				"encap|decap[:SIZE[:PEERS[:SENDING]]]]\n",
				argv[0]);
			return 2;
		}
	}
	bool huge;
	if (dp_tb_eal_init(argv[0], "mgbench", EAL_MB, !no_huge, &huge) || sodium_init() < 0)
		return 1;
	hz = rte_get_tsc_hz();
	if (json_path && !(json = fopen(json_path, "w"))) {
		perror(json_path);
		return 1;
	}
	if (json)
		fprintf(json, "{\"tsc_hz\":%" PRIu64 ",\"rows\":[", hz);
	double secs = quick ? 0.05 : 0.3;
	printf("# meshgate-bench: TSC %.3f GHz, lcores 0 and 1 (%u online CPUs), memory: %s\n",
	       (double)hz / 1e9, (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
	       huge ? "hugepages, as a gateway runs"
		    : "4 KiB pages (--no-huge; more TLB misses than a gateway on hugepages has)");
	printf(
	    "Cycles/pkt = a worker's busy cycles / packets it handled, through the real worker\n"
	    "loop on net_ring ports (RX, classify, lookup, crypto, headers, TX). Sizes are inner\n"
	    "IP packet bytes. Traffic is generated before each round, outside timing, by the\n"
	    "lcore of the worker that will take it (as its own NIC queue would hand it over).\n");
	if (profile) {
		/* For `perf record` and A/B runs: one direction, SIZE bytes, PEERS
		 * peers; three rounds of 1 s of worker time, each with both raw
		 * ceilings. */
		struct bench b;
		enum dir d = !strncmp(profile, "encap", 5) ? ENCAP : DECAP;
		const char *c1 = strchr(profile, ':');
		const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		uint32_t size = c1 ? (uint32_t)atoi(c1 + 1) : 1420;
		uint32_t np = c2 ? (uint32_t)atoi(c2 + 1) : 1;
		const char *c3 = c2 ? strchr(c2 + 1, ':') : NULL;
		uint32_t sending = c3 ? (uint32_t)atoi(c3 + 1) : np;
		if (size < 28 || size > 1420 || np < 1 || np > 1000000 || sending < 1 ||
		    sending > np || bench_setup(&b, np, 1)) {
			fprintf(stderr, "--profile %s: bad size or peers, or setup failed\n",
				profile);
			return 1;
		}
		b.spread = sending;
		for (int rep = 0; rep < 3; rep++) {
			uint64_t hc = 0, hn = 0, sc = 0, sn = 0, ic = 0, in = 0;
			struct result r = measure(&b, d, size, 1.0, false);
			ceiling_hot(b.tb.dp.workers[0].crypto, d, size, 0.3, &hc, &hn);
			ceiling_same(&b, d, size, 0.3, &sc, &sn);
			io_floor(&b, d, size, 0.1, &ic, &in);
			printf("%s %u B, %u peers (%u sending): %.0f cycles/pkt (crypto %.0f, own "
			       "%.0f); raw crypto: L1-hot %.0f, same packets %.0f; I/O %.0f\n",
			       dir_name[d], size, np, sending, r.cycles, r.crypto,
			       r.cycles - r.crypto, (double)hc / (double)hn,
			       (double)sc / (double)sn, (double)ic / (double)in);
		}
		bench_teardown(&b);
		rte_eal_cleanup();
		return 0;
	}
	if (want(tables, "sizes"))
		table_sizes(secs);
	if (want(tables, "workers"))
		table_workers(secs);
	if (want(tables, "peers"))
		table_peers(quick ? 0.02 : 0.2);
	if (want(tables, "rekey"))
		table_rekey(quick ? 0.1 : 0.25);
	if (want(tables, "features"))
		table_acl(secs);
	if (json) {
		fprintf(json, "\n]}\n");
		fclose(json);
	}
	rte_eal_cleanup();
	return 0;
}
