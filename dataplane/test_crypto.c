/* SPDX-License-Identifier: MIT */
/*
 * Differential test of dp_crypto against libsodium's
 * crypto_aead_chacha20poly1305_ietf_*_detached, for every backend.
 *
 * The ipsec-mb backend needs no EAL. Each cryptodev PMD is tested in a forked
 * child that runs rte_eal_init with that one vdev, so a missing PMD only
 * skips its own part. Exit: 0 pass, 1 fail, 77 (skip) if no cryptodev PMD
 * could be tested and nothing failed.
 *
 * Seed: DP_CRYPTO_TEST_SEED=<n> replays a run; the seed is printed.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_cryptodev.h>
#include <rte_lcore.h>
#include <rte_memory.h>

#include "crypto.h"

#define MAX_OPS	 256
#define MAX_LEN	 1500
#define BUF_SIZE (MAX_LEN + DP_AEAD_TAG_LEN + 8) /* + room to misalign */
/* More keys than the cryptodev session cache holds. */
#define N_KEYS 300
#define SKIP   77

static uint64_t rng_state;
static int failures;
static bool edge_mode; /* op i gets the i-th edge length and counter, not random ones */

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rnd_bytes(uint8_t *p, size_t n)
{
	uint64_t r;
	size_t i;

	for (i = 0; i < n; i += 8) {
		r = rnd();
		memcpy(p + i, &r, n - i < 8 ? n - i : 8);
	}
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* One burst's worth of messages, with everything needed to check them. */
struct case_op {
	uint8_t buf[BUF_SIZE];
	uint8_t plain[MAX_LEN];
	uint8_t sodium_ct[MAX_LEN];
	uint8_t sodium_tag[DP_AEAD_TAG_LEN];
	uint8_t sep_tag[DP_AEAD_TAG_LEN]; /* tag kept outside the buffer */
	int tamper;			  /* 0 none, 1 ciphertext bit, 2 tag bit */
};

static struct case_op cases[MAX_OPS];
static struct dp_aead_op ops[MAX_OPS];
static uint8_t keys[N_KEYS][DP_AEAD_KEY_LEN];

static const uint32_t edge_lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 1420, 1500};
static const uint64_t edge_ctrs[] = {0, 1, 0xffffffffull, 0x100000000ull, UINT64_MAX - 1};

static void nonce_of(uint8_t n[DP_AEAD_NONCE_LEN], uint64_t ctr)
{
	unsigned i;

	memset(n, 0, 4);
	for (i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(ctr >> (8 * i));
}

static uint32_t pick_len(unsigned i)
{
	if (edge_mode)
		return edge_lens[i % RTE_DIM(edge_lens)];
	if (rnd() % 3 == 0)
		return edge_lens[(i + rnd()) % RTE_DIM(edge_lens)];
	return (uint32_t)(rnd() % (MAX_LEN + 1));
}

static uint64_t pick_ctr(unsigned i)
{
	if (edge_mode)
		return edge_ctrs[i % RTE_DIM(edge_ctrs)];
	if (rnd() % 4 == 0)
		return edge_ctrs[rnd() % RTE_DIM(edge_ctrs)];
	return rnd() >> (rnd() % 64);
}

/*
 * Fill n ops with random lengths, counters, alignments, and keys drawn from
 * the first n_keys keys. Half the tags live right after the data, as on the
 * wire; the rest in a separate buffer.
 */
static void make_ops(unsigned n, unsigned n_keys)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		struct case_op *t = &cases[i];
		struct dp_aead_op *op = &ops[i];
		unsigned misalign = (unsigned)(rnd() % 8);

		memset(t, 0, sizeof(*t));
		op->len = pick_len(i);
		op->data = t->buf + misalign;
		op->tag = rnd() % 2 ? op->data + op->len : t->sep_tag;
		op->key = keys[rnd() % n_keys];
		op->counter = pick_ctr(i);
		op->status = 12345; /* must be overwritten */
		rnd_bytes(t->plain, op->len);
		memcpy(op->data, t->plain, op->len);
	}
	/* The keepalive with no buffer at all. */
	if (n > 2 && ops[1].len == 0)
		ops[1].data = NULL;
}

static void sodium_seal(unsigned n)
{
	uint8_t nonce[DP_AEAD_NONCE_LEN];
	unsigned i;

	for (i = 0; i < n; i++) {
		nonce_of(nonce, ops[i].counter);
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(
		    cases[i].sodium_ct, cases[i].sodium_tag, NULL, cases[i].plain, ops[i].len, NULL,
		    0, NULL, nonce, ops[i].key);
	}
}

/* dp seal must equal libsodium's seal, and libsodium must open it. */
static int check_seal(struct dp_crypto *c, unsigned n, unsigned n_keys)
{
	uint8_t nonce[DP_AEAD_NONCE_LEN], back[MAX_LEN];
	unsigned i;

	make_ops(n, n_keys);
	sodium_seal(n);
	CHECK(dp_crypto_seal_burst(c, ops, n) == n, "count");
	for (i = 0; i < n; i++) {
		struct dp_aead_op *op = &ops[i];

		CHECK(op->status == 0, "op %u len %u: status %d", i, op->len, op->status);
		CHECK(op->len == 0 || memcmp(op->data, cases[i].sodium_ct, op->len) == 0,
		      "op %u len %u ctr %" PRIu64 ": ciphertext differs", i, op->len, op->counter);
		CHECK(memcmp(op->tag, cases[i].sodium_tag, DP_AEAD_TAG_LEN) == 0,
		      "op %u len %u ctr %" PRIu64 ": tag differs", i, op->len, op->counter);
		nonce_of(nonce, op->counter);
		CHECK(crypto_aead_chacha20poly1305_ietf_decrypt_detached(
			  back, NULL, op->len ? op->data : back, op->len, op->tag, NULL, 0, nonce,
			  op->key) == 0,
		      "op %u: libsodium rejects our output", i);
		CHECK(memcmp(back, cases[i].plain, op->len) == 0, "op %u: round trip", i);
	}
	return 0;
}

/*
 * libsodium seals, dp opens. Ops with tamper set get one bit flipped and must
 * fail with -EBADMSG and zeroed data, without affecting their neighbours.
 */
static int check_open(struct dp_crypto *c, unsigned n, unsigned n_keys, bool tamper)
{
	unsigned i;

	make_ops(n, n_keys);
	sodium_seal(n);
	for (i = 0; i < n; i++) {
		struct dp_aead_op *op = &ops[i];
		struct case_op *t = &cases[i];

		if (op->len)
			memcpy(op->data, t->sodium_ct, op->len);
		memcpy(op->tag, t->sodium_tag, DP_AEAD_TAG_LEN);
		t->tamper = tamper && rnd() % 3 == 0 ? 1 + (int)(rnd() % 2) : 0;
		if (t->tamper == 1 && op->len == 0)
			t->tamper = 2;
		if (t->tamper == 1)
			op->data[rnd() % op->len] ^= (uint8_t)(1u << (rnd() % 8));
		else if (t->tamper == 2)
			op->tag[rnd() % DP_AEAD_TAG_LEN] ^= (uint8_t)(1u << (rnd() % 8));
		if (t->tamper)
			op->status = 0; /* a stale "success" must not survive */
	}
	CHECK(dp_crypto_open_burst(c, ops, n) == n, "count");
	for (i = 0; i < n; i++) {
		struct dp_aead_op *op = &ops[i];
		unsigned j;

		if (cases[i].tamper) {
			CHECK(op->status == -EBADMSG, "op %u len %u tamper %d: status %d", i,
			      op->len, cases[i].tamper, op->status);
			for (j = 0; j < op->len; j++)
				CHECK(op->data[j] == 0, "op %u: unauthenticated data left", i);
			continue;
		}
		CHECK(op->status == 0, "op %u len %u ctr %" PRIu64 ": status %d", i, op->len,
		      op->counter, op->status);
		CHECK(op->len == 0 || memcmp(op->data, cases[i].plain, op->len) == 0,
		      "op %u len %u: plaintext differs", i, op->len);
	}
	return 0;
}

/* Malformed ops fail alone with -EINVAL. */
static int check_invalid(struct dp_crypto *c)
{
	const unsigned n = 8;
	unsigned i;

	make_ops(n, 3);
	ops[2].key = NULL;
	ops[5].tag = NULL;
	ops[6].data = NULL;
	ops[6].len = 10;
	CHECK(dp_crypto_seal_burst(c, ops, n) == n, "count");
	for (i = 0; i < n; i++) {
		int want = i == 2 || i == 5 || i == 6 ? -EINVAL : 0;

		CHECK(ops[i].status == want, "op %u: status %d, want %d", i, ops[i].status, want);
	}
	CHECK(dp_crypto_seal_burst(c, ops, 0) == 0, "empty burst");
	CHECK(dp_crypto_open_burst(c, ops, 0) == 0, "empty burst");
	return 0;
}

static const unsigned burst_sizes[] = {1, 2, 7, 32, 63, 64, 65, 128, 200, 256};

static int run_all(struct dp_crypto *c, unsigned rounds)
{
	unsigned r, b, before = (unsigned)failures;

	/* Every edge length with every edge counter (12 x 5 = 60 ops), three keys. */
	edge_mode = true;
	if (check_seal(c, 60, 3) < 0 || check_open(c, 60, 3, false) < 0 ||
	    check_open(c, 60, 3, true) < 0)
		goto out;
	edge_mode = false;
	for (r = 0; r < rounds; r++) {
		for (b = 0; b < RTE_DIM(burst_sizes); b++) {
			unsigned n = burst_sizes[b];
			unsigned n_keys = r % 3 == 0 ? 1 : r % 3 == 1 ? 4 : N_KEYS;

			if (check_seal(c, n, n_keys) < 0 || check_open(c, n, n_keys, false) < 0 ||
			    check_open(c, n, n_keys, true) < 0)
				goto out;
		}
	}
	check_invalid(c);
out:
	edge_mode = false;
	printf("%s %s (%u rounds)\n", (unsigned)failures == before ? "ok" : "not ok",
	       dp_crypto_name(c), rounds);
	return (unsigned)failures == before ? 0 : -1;
}

static int test_ipsecmb(void)
{
	struct dp_crypto *a = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, -1);
	struct dp_crypto *b = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, -1);

	if (a == NULL || b == NULL) {
		fprintf(stderr, "FAIL ipsec-mb create: %s\n", strerror(errno));
		failures++;
		return -1;
	}
	/* Two managers side by side must not disturb each other. */
	run_all(a, 12);
	run_all(b, 3);
	run_all(a, 3);
	dp_crypto_destroy(a);
	dp_crypto_destroy(b);
	return 0;
}

/* With the EAL up: ipsec-mb on DPDK's heap, then the cryptodev backend on pmd. */
static int cryptodev_tests(const char *pmd)
{
	struct dp_crypto *a, *b;

	if (rte_cryptodev_get_dev_id(pmd) < 0) {
		printf("SKIP cryptodev %s: PMD absent\n", pmd);
		return SKIP;
	}
	a = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, (int)rte_socket_id());
	if (a == NULL) {
		fprintf(stderr, "FAIL ipsec-mb create on socket %u: %s\n", rte_socket_id(),
			strerror(errno));
		return 1;
	}
	run_all(a, 1);
	dp_crypto_destroy(a);

	/* Two users of one device get two queue pairs. */
	a = dp_crypto_create(DP_CRYPTO_CRYPTODEV, pmd, SOCKET_ID_ANY);
	b = dp_crypto_create(DP_CRYPTO_CRYPTODEV, NULL, SOCKET_ID_ANY);
	if (a == NULL || b == NULL) {
		fprintf(stderr, "FAIL cryptodev %s create: %s\n", pmd, strerror(errno));
		return 1;
	}
	run_all(a, 6);
	run_all(b, 2);
	dp_crypto_destroy(a);
	dp_crypto_destroy(b);
	/* Last user gone: the device is stopped; a new user must set it up again. */
	a = dp_crypto_create(DP_CRYPTO_CRYPTODEV, pmd, SOCKET_ID_ANY);
	if (a == NULL) {
		fprintf(stderr, "FAIL cryptodev %s re-create: %s\n", pmd, strerror(errno));
		return 1;
	}
	run_all(a, 1);
	dp_crypto_destroy(a);
	return failures ? 1 : 0;
}

/* In a child: bring up EAL with one vdev and test it. Exit code as for main. */
static int cryptodev_child(const char *pmd)
{
	char vdev[80], prefix[64], rundir[PATH_MAX];
	/* clang-format off */
	char *argv[] = {
		"test_crypto", "--no-huge", "-m", "256", "--no-pci", vdev,
		"--log-level=*:warning", prefix, "--no-shconf", "--no-telemetry", NULL,
	};
	/* clang-format on */
	int ret;

	snprintf(vdev, sizeof(vdev), "--vdev=%s", pmd);
	snprintf(prefix, sizeof(prefix), "--file-prefix=dp_crypto_test_%d", (int)getpid());
	if (rte_eal_init((int)RTE_DIM(argv) - 1, argv) < 0) {
		/* A --vdev no installed driver claims fails to parse, with ENODEV. */
		if (rte_errno == ENODEV) {
			printf("SKIP cryptodev %s: PMD absent\n", pmd);
			return SKIP;
		}
		fprintf(stderr, "FAIL cryptodev %s: EAL init: %s\n", pmd, rte_strerror(rte_errno));
		return 1;
	}
	ret = cryptodev_tests(pmd);
	/* --no-shconf leaves only the (empty) runtime directory behind. */
	snprintf(rundir, sizeof(rundir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	rmdir(rundir);
	return ret;
}

static int test_cryptodev(const char *pmd)
{
	int st, ret;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		ret = cryptodev_child(pmd);
		fflush(stdout);
		fflush(stderr);
		_exit(ret);
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st)) {
		fprintf(stderr, "FAIL cryptodev %s: child crashed\n", pmd);
		return 1;
	}
	return WEXITSTATUS(st);
}

int main(void)
{
	/* The software PMDs with ChaCha20-Poly1305 (crypto_openssl has none in 22.11). */
	static const char *const pmds[] = {"crypto_chacha20_poly1305", "crypto_aesni_mb"};
	const char *env = getenv("DP_CRYPTO_TEST_SEED");
	unsigned i, tested = 0;
	uint64_t seed;
	int ret;

	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	rng_state = seed;
	printf("seed %" PRIu64 "\n", seed);
	if (sodium_init() < 0) {
		fprintf(stderr, "sodium_init failed\n");
		return 1;
	}
	for (i = 0; i < N_KEYS; i++)
		rnd_bytes(keys[i], DP_AEAD_KEY_LEN);

	test_ipsecmb();
	for (i = 0; i < RTE_DIM(pmds); i++) {
		ret = test_cryptodev(pmds[i]);
		if (ret == 0)
			tested++;
		else if (ret != SKIP)
			failures++;
	}
	if (failures) {
		printf("FAILED (seed %" PRIu64 ")\n", seed);
		return 1;
	}
	if (tested == 0) {
		printf("SKIP: ipsec-mb passed, but no cryptodev PMD could be tested\n");
		return SKIP;
	}
	printf("PASS\n");
	return 0;
}
