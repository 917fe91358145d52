/* SPDX-License-Identifier: MIT */
/*
 * ChaCha20-Poly1305 on intel-ipsec-mb's job manager, one IMB_MGR per
 * struct dp_crypto, hence per lcore.
 *
 * Each chunk goes in as one burst (IMB_GET_NEXT_BURST, IMB_SUBMIT_BURST) and
 * is flushed before we return, so the manager's queue is empty between calls
 * and the per-chunk scratch below (nonces, computed tags) can be reused.
 *
 * ipsec-mb never verifies a tag: on decrypt it writes the tag it computed
 * over the ciphertext. We point that at our own buffer and compare it with
 * the received tag here, in constant time, before an op's status becomes 0.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <intel-ipsec-mb.h>

#include <rte_common.h>
#include <rte_malloc.h>

#include "crypto.h"

struct ipsecmb {
	struct dp_crypto base;
	IMB_MGR *mgr; /* in the same allocation, after this struct */
	bool on_dpdk_heap;
	/* Stand-in for an empty message's NULL data and for the empty AAD. */
	uint8_t empty[16] __attribute__((aligned(16)));
	uint8_t nonce[DP_CRYPTO_CHUNK][16] __attribute__((aligned(64)));
	uint8_t tag[DP_CRYPTO_CHUNK][DP_AEAD_TAG_LEN] __attribute__((aligned(64)));
	struct dp_aead_op *todo[DP_CRYPTO_CHUNK];
	IMB_JOB *jobs[DP_CRYPTO_CHUNK];
};

_Static_assert(DP_CRYPTO_CHUNK <= IMB_MAX_BURST_SIZE, "a chunk must fit one ipsec-mb burst");

static bool op_valid(const struct dp_aead_op *op)
{
	return op->key != NULL && op->tag != NULL && (op->data != NULL || op->len == 0);
}

static void fill_job(struct ipsecmb *s, IMB_JOB *job, struct dp_aead_op *op, unsigned i, bool seal)
{
	uint8_t *data = op->data != NULL ? op->data : s->empty;

	dp_crypto_nonce(s->nonce[i], op->counter);
	job->cipher_mode = IMB_CIPHER_CHACHA20_POLY1305;
	job->hash_alg = IMB_AUTH_CHACHA20_POLY1305;
	job->cipher_direction = seal ? IMB_DIR_ENCRYPT : IMB_DIR_DECRYPT;
	job->chain_order = seal ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
	job->enc_keys = op->key;
	job->dec_keys = op->key;
	job->key_len_in_bytes = DP_AEAD_KEY_LEN;
	job->src = data;
	job->dst = data;
	job->cipher_start_src_offset_in_bytes = 0;
	job->msg_len_to_cipher_in_bytes = op->len;
	job->hash_start_src_offset_in_bytes = 0;
	job->msg_len_to_hash_in_bytes = op->len;
	job->iv = s->nonce[i];
	job->iv_len_in_bytes = DP_AEAD_NONCE_LEN;
	job->u.CHACHA20_POLY1305.aad = s->empty;
	job->u.CHACHA20_POLY1305.aad_len_in_bytes = 0;
	job->auth_tag_output = seal ? op->tag : s->tag[i];
	job->auth_tag_output_len_in_bytes = DP_AEAD_TAG_LEN;
	job->user_data = op;
}

/* The only place an op's status becomes 0. */
static void finish_jobs(IMB_JOB *const *jobs, unsigned n, bool seal)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		const IMB_JOB *job = jobs[i];
		struct dp_aead_op *op = job->user_data;

		if (job->status != IMB_STATUS_COMPLETED)
			op->status = -EIO;
		else if (seal)
			op->status = 0;
		else if (dp_crypto_tag_neq(job->auth_tag_output, op->tag))
			op->status = -EBADMSG;
		else
			op->status = 0;
		/* Never hand back unauthenticated plaintext. */
		if (!seal && op->status != 0 && op->len > 0)
			memset(op->data, 0, op->len);
	}
}

/* Every op starts failed (-EINVAL or -EIO); finish_jobs() clears the ones that made it. */
static unsigned collect_valid(struct ipsecmb *s, struct dp_aead_op *ops, unsigned n)
{
	unsigned i, m = 0;

	for (i = 0; i < n; i++) {
		if (op_valid(&ops[i])) {
			ops[i].status = -EIO;
			s->todo[m++] = &ops[i];
		} else {
			ops[i].status = -EINVAL;
		}
	}
	return m;
}

static void run_chunk(struct ipsecmb *s, struct dp_aead_op *ops, unsigned n, bool seal)
{
	IMB_MGR *mgr = s->mgr;
	IMB_JOB **jobs = s->jobs;
	unsigned i, m, done, k;

	m = collect_valid(s, ops, n);
	if (m == 0)
		return;
	/* The queue is empty on entry (see the top of the file), so this gets all m. */
	if (IMB_GET_NEXT_BURST(mgr, m, jobs) < m)
		return;
	for (i = 0; i < m; i++)
		fill_job(s, jobs[i], s->todo[i], i, seal);
	done = IMB_SUBMIT_BURST(mgr, m, jobs);
	/* On an argument error nothing was queued: the ops stay at -EIO. */
	if (done == 0 && imb_get_errno(mgr) != 0)
		return;
	finish_jobs(jobs, done, seal);
	while (done < m) {
		k = IMB_FLUSH_BURST(mgr, m - done, jobs + done);
		if (k == 0)
			break;
		finish_jobs(jobs + done, k, seal);
		done += k;
	}
}

static void ipsecmb_seal(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n)
{
	run_chunk((struct ipsecmb *)c, ops, n, true);
}

static void ipsecmb_open(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n)
{
	run_chunk((struct ipsecmb *)c, ops, n, false);
}

static void ipsecmb_free(struct ipsecmb *s)
{
	if (s->on_dpdk_heap)
		rte_free(s);
	else
		free(s);
}

static void ipsecmb_destroy(struct dp_crypto *c)
{
	ipsecmb_free((struct ipsecmb *)c);
}

static const struct dp_crypto_ops ipsecmb_ops = {ipsecmb_seal, ipsecmb_open, ipsecmb_destroy};

static const char *arch_name(IMB_ARCH arch)
{
	switch (arch) {
	case IMB_ARCH_NOAESNI:
		return "noaesni";
	case IMB_ARCH_SSE:
		return "sse";
	case IMB_ARCH_AVX:
		return "avx";
	case IMB_ARCH_AVX2:
		return "avx2";
	case IMB_ARCH_AVX512:
		return "avx512";
	default:
		return "unknown";
	}
}

/*
 * Our state and the IMB_MGR (what alloc_mb_mgr() would allocate) in one
 * block: from DPDK's heap on socket_id if one is given (EAL must be up), so a
 * manager created on the main lcore for a worker on another node still lives
 * on the worker's node; otherwise plain memory, placed by first touch.
 */
static struct ipsecmb *ipsecmb_alloc(int socket_id)
{
	size_t size = RTE_ALIGN_CEIL(sizeof(struct ipsecmb), 64) + imb_get_mb_mgr_size();
	struct ipsecmb *s;

	if (socket_id >= 0) {
		s = rte_zmalloc_socket("dp_crypto", size, 64, socket_id);
		if (s == NULL) {
			errno = ENOMEM;
			return NULL;
		}
		s->on_dpdk_heap = true;
	} else {
		s = aligned_alloc(64, RTE_ALIGN_CEIL(size, 64));
		if (s == NULL)
			return NULL;
		memset(s, 0, size);
	}
	s->mgr = imb_set_pointers_mb_mgr(RTE_PTR_ADD(s, RTE_ALIGN_CEIL(sizeof(*s), 64)), 0, 1);
	return s;
}

struct dp_crypto *dp_crypto_ipsecmb_create(int socket_id)
{
	struct ipsecmb *s;
	IMB_ARCH arch = IMB_ARCH_NONE;
	int err;

	s = ipsecmb_alloc(socket_id);
	if (s == NULL)
		return NULL;
	init_mb_mgr_auto(s->mgr, &arch);
	err = imb_get_errno(s->mgr);
	if (err != 0 || arch == IMB_ARCH_NONE) {
		fprintf(stderr, "dp_crypto: ipsec-mb init failed: %s\n", imb_get_strerror(err));
		ipsecmb_free(s);
		errno = ENOTSUP;
		return NULL;
	}
	s->base.ops = &ipsecmb_ops;
	snprintf(s->base.name, sizeof(s->base.name), "ipsec-mb %s %s", imb_get_version_str(),
		 arch_name(arch));
	return &s->base;
}
