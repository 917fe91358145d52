/* SPDX-License-Identifier: MIT */
/*
 * meshgate-bench-crypto: ChaCha20-Poly1305 throughput on one core, as a
 * markdown table. Not a test.
 *
 *   meshgate-bench-crypto [seconds-per-cell]     (default 0.3)
 *
 * Rows: dp_crypto over ipsec-mb (burst 32); raw ipsec-mb IMB_SUBMIT_BURST of
 * 32 (the reference the dataplane is measured against); raw ipsec-mb one job
 * at a time; libsodium one message at a time; dp_crypto over each cryptodev
 * PMD that comes up under EAL (--no-huge). Buffers stay hot in cache, one key,
 * payload bits only in Gbit/s, best 1 ms slice of each cell. Open is timed on
 * valid ciphertext: each timed burst of opens is followed by an untimed
 * re-seal.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <intel-ipsec-mb.h>
#include <sodium.h>

#include <rte_cryptodev.h>
#include <rte_cycles.h>
#include <rte_eal.h>

#include "crypto.h"

#define BURST	 32
#define MAX_SIZE 1420

static const uint32_t sizes[] = {64, 128, 512, 1420};

struct bench {
	uint64_t tsc_hz;
	double seconds;
	uint8_t key[DP_AEAD_KEY_LEN];
	uint8_t buf[BURST][MAX_SIZE + DP_AEAD_TAG_LEN] __attribute__((aligned(64)));
	struct dp_aead_op ops[BURST];
	IMB_MGR *mgr;
	uint8_t iv[BURST][16];
	uint8_t tag[BURST][DP_AEAD_TAG_LEN];
};

/* One timed unit of work: BURST messages of len bytes; returns TSC cycles spent. */
typedef uint64_t (*run_fn)(struct bench *b, uint32_t len, bool open);

static uint64_t calibrate_tsc(void)
{
	struct timespec t0, t1;
	uint64_t c0, c1;

	clock_gettime(CLOCK_MONOTONIC_RAW, &t0);
	c0 = rte_rdtsc();
	usleep(200000);
	clock_gettime(CLOCK_MONOTONIC_RAW, &t1);
	c1 = rte_rdtsc();
	return (uint64_t)((double)(c1 - c0) / ((double)(t1.tv_sec - t0.tv_sec) +
					       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
}

static void setup_ops(struct bench *b, uint32_t len)
{
	unsigned i;

	for (i = 0; i < BURST; i++) {
		struct dp_aead_op *op = &b->ops[i];

		op->data = b->buf[i];
		op->len = len;
		op->tag = b->buf[i] + len;
		op->key = b->key;
		op->counter = 1000 + i;
		op->status = 0;
		memset(b->buf[i], (int)i, len);
	}
}

/* ---- dp_crypto (either backend) ---- */

static struct dp_crypto *cur;

static uint64_t run_dp(struct bench *b, uint32_t len, bool open)
{
	uint64_t t;
	unsigned i;

	(void)len;
	if (!open) {
		t = rte_rdtsc();
		dp_crypto_seal_burst(cur, b->ops, BURST);
		return rte_rdtsc() - t;
	}
	t = rte_rdtsc();
	dp_crypto_open_burst(cur, b->ops, BURST);
	t = rte_rdtsc() - t;
	for (i = 0; i < BURST; i++)
		if (b->ops[i].status != 0)
			abort(); /* would time the failure path */
	dp_crypto_seal_burst(cur, b->ops, BURST);
	return t;
}

/* ---- raw ipsec-mb ---- */

static void fill_job(struct bench *b, IMB_JOB *job, unsigned i, bool open)
{
	struct dp_aead_op *op = &b->ops[i];

	dp_crypto_nonce(b->iv[i], op->counter);
	job->cipher_mode = IMB_CIPHER_CHACHA20_POLY1305;
	job->hash_alg = IMB_AUTH_CHACHA20_POLY1305;
	job->cipher_direction = open ? IMB_DIR_DECRYPT : IMB_DIR_ENCRYPT;
	job->chain_order = open ? IMB_ORDER_HASH_CIPHER : IMB_ORDER_CIPHER_HASH;
	job->enc_keys = b->key;
	job->dec_keys = b->key;
	job->key_len_in_bytes = DP_AEAD_KEY_LEN;
	job->src = op->data;
	job->dst = op->data;
	job->cipher_start_src_offset_in_bytes = 0;
	job->msg_len_to_cipher_in_bytes = op->len;
	job->hash_start_src_offset_in_bytes = 0;
	job->msg_len_to_hash_in_bytes = op->len;
	job->iv = b->iv[i];
	job->iv_len_in_bytes = DP_AEAD_NONCE_LEN;
	job->u.CHACHA20_POLY1305.aad = b->tag; /* any valid pointer; length 0 */
	job->u.CHACHA20_POLY1305.aad_len_in_bytes = 0;
	job->auth_tag_output = open ? b->tag[i] : op->tag;
	job->auth_tag_output_len_in_bytes = DP_AEAD_TAG_LEN;
}

/* Raw burst; open does not compare tags (the reference number has no check either). */
static uint64_t imb_burst(struct bench *b, bool open)
{
	IMB_JOB *jobs[BURST];
	uint64_t t = rte_rdtsc();
	unsigned i, done;

	while (IMB_GET_NEXT_BURST(b->mgr, BURST, jobs) < BURST)
		IMB_FLUSH_BURST(b->mgr, BURST, jobs);
	for (i = 0; i < BURST; i++)
		fill_job(b, jobs[i], i, open);
	done = IMB_SUBMIT_BURST(b->mgr, BURST, jobs);
	if (done < BURST)
		IMB_FLUSH_BURST(b->mgr, BURST - done, jobs + done);
	return rte_rdtsc() - t;
}

static uint64_t run_imb_burst(struct bench *b, uint32_t len, bool open)
{
	uint64_t t;

	(void)len;
	if (!open)
		return imb_burst(b, false);
	t = imb_burst(b, true);
	imb_burst(b, false);
	return t;
}

static uint64_t imb_single(struct bench *b, bool open)
{
	uint64_t t = rte_rdtsc();
	unsigned i;

	for (i = 0; i < BURST; i++) {
		IMB_JOB *job = IMB_GET_NEXT_JOB(b->mgr);

		fill_job(b, job, i, open);
		if (IMB_SUBMIT_JOB(b->mgr) == NULL)
			IMB_FLUSH_JOB(b->mgr);
	}
	return rte_rdtsc() - t;
}

static uint64_t run_imb_single(struct bench *b, uint32_t len, bool open)
{
	uint64_t t;

	(void)len;
	if (!open)
		return imb_single(b, false);
	t = imb_single(b, true);
	imb_single(b, false);
	return t;
}

/* ---- libsodium ---- */

static uint64_t sodium_all(struct bench *b, bool open)
{
	uint8_t nonce[DP_AEAD_NONCE_LEN];
	uint64_t t = rte_rdtsc();
	unsigned i;
	int bad = 0;

	for (i = 0; i < BURST; i++) {
		struct dp_aead_op *op = &b->ops[i];

		dp_crypto_nonce(nonce, op->counter);
		if (open)
			bad |= crypto_aead_chacha20poly1305_ietf_decrypt_detached(
			    op->data, NULL, op->data, op->len, op->tag, NULL, 0, nonce, b->key);
		else
			crypto_aead_chacha20poly1305_ietf_encrypt_detached(op->data, op->tag, NULL,
									   op->data, op->len, NULL,
									   0, NULL, nonce, b->key);
	}
	t = rte_rdtsc() - t;
	if (bad)
		abort();
	return t;
}

static uint64_t run_sodium(struct bench *b, uint32_t len, bool open)
{
	uint64_t t;

	(void)len;
	if (!open)
		return sodium_all(b, false);
	t = sodium_all(b, true);
	sodium_all(b, false);
	return t;
}

/* ---- driver ---- */

/*
 * The cell's time is cut into 1 ms slices and the fastest slice is reported:
 * on a shared machine a slice in which we were preempted says nothing about
 * the code, and a 1 ms slice often escapes the scheduler's time slice.
 */
#define SLICE_MS 1

static void cell(struct bench *b, const char *impl, run_fn fn, uint32_t len, bool open)
{
	uint64_t budget = b->tsc_hz / 1000 * SLICE_MS;
	unsigned k, slices = (unsigned)(b->seconds * 1000 / SLICE_MS);
	double mops, cyc, best = 0;

	setup_ops(b, len);
	if (open)
		fn(b, len, false); /* open needs ciphertext to start from */
	fn(b, len, open);	   /* warm up */
	for (k = 0; k < slices || k == 0; k++) {
		uint64_t start = rte_rdtsc(), spent = 0, n = 0;

		while (rte_rdtsc() - start < budget) {
			spent += fn(b, len, open);
			n += BURST;
		}
		cyc = (double)spent / (double)n;
		if (best == 0 || cyc < best)
			best = cyc;
	}
	mops = (double)b->tsc_hz / best / 1e6;
	printf("| %-38s | %-4s | %4u | %6.2f | %6.0f | %6.2f |\n", impl, open ? "open" : "seal",
	       len, mops, best, mops * len * 8 / 1e3);
	fflush(stdout);
}

static void row_set(struct bench *b, const char *impl, run_fn fn)
{
	unsigned s, o;

	for (o = 0; o < 2; o++)
		for (s = 0; s < RTE_DIM(sizes); s++)
			cell(b, impl, fn, sizes[s], o == 1);
}

static bool eal_up(void)
{
	char prefix[64];
	/* clang-format off */
	char *argv[] = {
		"meshgate-bench-crypto", "--no-huge", "-m", "256", "--no-pci",
		"--vdev=crypto_chacha20_poly1305", "--vdev=crypto_aesni_mb",
		"--log-level=*:warning", prefix, "--no-shconf", "--no-telemetry", NULL,
	};
	/* clang-format on */

	snprintf(prefix, sizeof(prefix), "--file-prefix=dp_crypto_bench_%d", (int)getpid());
	return rte_eal_init((int)RTE_DIM(argv) - 1, argv) >= 0;
}

int main(int argc, char **argv)
{
	static struct bench b;
	char impl[128], rundir[PATH_MAX];
	IMB_ARCH arch;
	bool eal;
	uint8_t d;

	b.seconds = argc > 1 ? atof(argv[1]) : 0.3;
	if (sodium_init() < 0 || b.seconds <= 0)
		return 1;
	randombytes_buf(b.key, sizeof(b.key));
	eal = eal_up(); /* also pins us to the main lcore */
	b.tsc_hz = calibrate_tsc();

	b.mgr = alloc_mb_mgr(0);
	if (b.mgr == NULL)
		return 1;
	init_mb_mgr_auto(b.mgr, &arch);
	cur = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, -1);
	if (cur == NULL) {
		fprintf(stderr, "dp_crypto_create: %s\n", strerror(errno));
		return 1;
	}
	printf("TSC %.3f GHz, %.2f s per cell (best %d ms slice), burst %d, libsodium %s, %s\n\n",
	       (double)b.tsc_hz / 1e9, b.seconds, SLICE_MS, BURST, sodium_version_string(),
	       dp_crypto_name(cur));
	printf("| implementation | op | bytes | Mops/s | cycles/op | Gbit/s |\n");
	printf("|---|---|---:|---:|---:|---:|\n");

	snprintf(impl, sizeof(impl), "dp_crypto ipsec-mb, burst %d", BURST);
	row_set(&b, impl, run_dp);
	dp_crypto_destroy(cur);
	snprintf(impl, sizeof(impl), "ipsec-mb raw SUBMIT_BURST %d", BURST);
	row_set(&b, impl, run_imb_burst);
	row_set(&b, "ipsec-mb raw, one job at a time", run_imb_single);
	row_set(&b, "libsodium, one at a time", run_sodium);

	for (d = 0; eal && d < rte_cryptodev_count(); d++) {
		cur =
		    dp_crypto_create(DP_CRYPTO_CRYPTODEV, rte_cryptodev_name_get(d), SOCKET_ID_ANY);
		if (cur == NULL)
			continue;
		snprintf(impl, sizeof(impl), "dp_crypto %s, burst %d", rte_cryptodev_name_get(d),
			 BURST);
		row_set(&b, impl, run_dp);
		dp_crypto_destroy(cur);
	}
	if (!eal)
		printf("\n(no EAL: cryptodev rows skipped)\n");
	free_mb_mgr(b.mgr);
	if (eal) {
		/* --no-shconf leaves only the (empty) runtime directory behind. */
		snprintf(rundir, sizeof(rundir), "%s", rte_eal_get_runtime_dir());
		rte_eal_cleanup();
		rmdir(rundir);
	}
	return 0;
}
