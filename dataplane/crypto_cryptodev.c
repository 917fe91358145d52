/* SPDX-License-Identifier: MIT */
/*
 * ChaCha20-Poly1305 through a DPDK cryptodev (any PMD with AEAD
 * CHACHA20_POLY1305, e.g. crypto_chacha20_poly1305, crypto_aesni_mb,
 * crypto_openssl), one queue pair per struct dp_crypto.
 *
 * The device is asynchronous; this API is not. Each chunk is enqueued and we
 * poll the queue pair until every op is back, so a call returns with all its
 * ops finished. That costs the overlap a real offload device could give, and
 * is fine for software PMDs, which do the work inside enqueue or dequeue.
 *
 * The ops carry raw buffers, not mbufs, so each device op points a private
 * mbuf at the caller's bytes. IOVAs are computed for hardware devices but
 * only software PMDs have been tested.
 *
 * Tag checking is the PMD's: it reports AUTH_FAILED. DPDK 22.11's ipsec_mb
 * PMDs compare tags with memcmp(), which is not constant time; the ipsec-mb
 * backend (crypto_ipsecmb.c) does its own constant-time comparison and is
 * the one to use in production.
 *
 * Sessions are per key and direction, cached in a small direct-mapped table
 * keyed by the key bytes (never by pointer: a key's memory may be reused for
 * the next key).
 */
/* rte_cryptodev_sym_session_pool_create() is still experimental in 22.11. */
#define ALLOW_EXPERIMENTAL_API 1

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_common.h>
#include <rte_crypto.h>
#include <rte_cryptodev.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_random.h>

#include "crypto.h"

#define IV_OFFSET    (sizeof(struct rte_crypto_op) + sizeof(struct rte_crypto_sym_op))
#define OWNER_OFFSET (IV_OFFSET + 16) /* the struct dp_aead_op an op belongs to */
#define OP_PRIV_SIZE (16 + sizeof(void *))
#define SESS_BITS    7
#define SESS_SLOTS   (1u << SESS_BITS) /* per direction */
#define QP_DESC	     512
#define MAX_QPS	     64u /* bits in dev_state.qp_used */
#define STUCK_MS     100

struct sess_slot {
	uint8_t key[DP_AEAD_KEY_LEN];
	void *sess;   /* NULL: empty */
	uint64_t gen; /* chunk generation that last used it */
};

struct cdev {
	struct dp_crypto base;
	uint8_t dev_id;
	uint16_t qp;
	bool broken; /* an op never came back: the device still owns our ops */
	uint64_t gen;
	uint64_t seed;
	uint64_t stuck_cycles;
	struct rte_mempool *op_pool;
	struct rte_mempool *mbuf_pool;
	struct rte_mempool *sess_pool;
	struct rte_crypto_op *cops[DP_CRYPTO_CHUNK];
	struct rte_mbuf *mbufs[DP_CRYPTO_CHUNK];
	struct rte_crypto_op *done[DP_CRYPTO_CHUNK];
	uint8_t empty[16] __rte_aligned(16);   /* data of an empty message, and the empty AAD */
	struct sess_slot slots[2][SESS_SLOTS]; /* [open][hash] */
};

/*
 * Devices are process-wide, so which queue pairs are taken is too. Only
 * create and destroy touch this, never the burst calls.
 */
struct dev_state {
	uint64_t qp_used;
	uint16_t nb_qp; /* 0: not configured by us */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dev_state registry[RTE_CRYPTO_MAX_DEVS];
static uint32_t instance_seq;

static rte_iova_t iova_of(const void *p)
{
	const struct rte_memseg *ms;

	if (rte_eal_iova_mode() == RTE_IOVA_VA)
		return (uintptr_t)p;
	/* No system call here, unlike rte_mem_virt2phy(); non-DPDK memory has no IOVA. */
	ms = rte_mem_virt2memseg(p, NULL);
	if (ms == NULL)
		return RTE_BAD_IOVA;
	return ms->iova + RTE_PTR_DIFF(p, ms->addr);
}

/* ---- sessions ---- */

static unsigned slot_index(const struct cdev *c, const uint8_t *key)
{
	uint64_t w[4];

	memcpy(w, key, sizeof(w));
	/* Seeded, so which slot a key lands in says nothing about the key. */
	return ((w[0] ^ w[1] ^ w[2] ^ w[3] ^ c->seed) * 0x9e3779b97f4a7c15ull) >> (64 - SESS_BITS);
}

static bool key_eq(const uint8_t *a, const uint8_t *b)
{
	return (dp_crypto_tag_neq(a, b) | dp_crypto_tag_neq(a + 16, b + 16)) == 0;
}

static void *session_create(struct cdev *c, const uint8_t *key, bool open)
{
	struct rte_crypto_sym_xform xf = {.type = RTE_CRYPTO_SYM_XFORM_AEAD};

	xf.aead.op = open ? RTE_CRYPTO_AEAD_OP_DECRYPT : RTE_CRYPTO_AEAD_OP_ENCRYPT;
	xf.aead.algo = RTE_CRYPTO_AEAD_CHACHA20_POLY1305;
	xf.aead.key.data = key; /* the PMD copies it */
	xf.aead.key.length = DP_AEAD_KEY_LEN;
	xf.aead.iv.offset = IV_OFFSET;
	xf.aead.iv.length = DP_AEAD_NONCE_LEN;
	xf.aead.digest_length = DP_AEAD_TAG_LEN;
	xf.aead.aad_length = 0;
	return rte_cryptodev_sym_session_create(c->dev_id, &xf, c->sess_pool);
}

static void flush(struct cdev *c, unsigned n, bool open);

/*
 * The session for key, creating it on a miss. Evicting a session that an op
 * of the pending chunk still uses would free it under that op, so in that
 * case the pending ops are run first.
 */
static void *session_get(struct cdev *c, const uint8_t *key, bool open, unsigned *pending)
{
	struct sess_slot *s = &c->slots[open][slot_index(c, key)];

	if (s->sess != NULL && key_eq(s->key, key)) {
		s->gen = c->gen;
		return s->sess;
	}
	if (s->sess != NULL) {
		if (*pending > 0 && s->gen == c->gen) {
			flush(c, *pending, open);
			*pending = 0;
			if (c->broken)
				return NULL;
		}
		rte_cryptodev_sym_session_free(c->dev_id, s->sess);
		s->sess = NULL;
		memset(s->key, 0, sizeof(s->key));
	}
	s->sess = session_create(c, key, open);
	if (s->sess == NULL)
		return NULL;
	memcpy(s->key, key, DP_AEAD_KEY_LEN);
	s->gen = c->gen;
	return s->sess;
}

/* ---- bursts ---- */

static bool op_valid(const struct dp_aead_op *op)
{
	return op->key != NULL && op->tag != NULL && (op->data != NULL || op->len == 0) &&
	       op->len <= UINT16_MAX; /* mbuf data_len */
}

static void prepare(struct cdev *c, unsigned i, struct dp_aead_op *op, void *sess)
{
	struct rte_crypto_op *cop = c->cops[i];
	struct rte_crypto_sym_op *sym = cop->sym;
	struct rte_mbuf *m = c->mbufs[i];
	uint8_t *data = op->data != NULL ? op->data : c->empty;
	uint8_t *iv = rte_crypto_op_ctod_offset(cop, uint8_t *, IV_OFFSET);

	m->buf_addr = data;
	m->buf_iova = iova_of(data);
	m->buf_len = (uint16_t)op->len;
	m->data_off = 0;
	m->data_len = (uint16_t)op->len;
	m->pkt_len = op->len;

	cop->status = RTE_CRYPTO_OP_STATUS_NOT_PROCESSED;
	rte_crypto_op_attach_sym_session(cop, sess);
	sym->m_src = m;
	sym->m_dst = NULL;
	sym->aead.data.offset = 0;
	sym->aead.data.length = op->len;
	sym->aead.digest.data = op->tag;
	sym->aead.digest.phys_addr = iova_of(op->tag);
	sym->aead.aad.data = c->empty;
	sym->aead.aad.phys_addr = iova_of(c->empty);
	dp_crypto_nonce(iv, op->counter);
	*rte_crypto_op_ctod_offset(cop, struct dp_aead_op **, OWNER_OFFSET) = op;
}

/* The only place an op's status becomes 0. */
static void finish(struct rte_crypto_op *const *cops, unsigned n, bool open)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		struct dp_aead_op *op =
		    *rte_crypto_op_ctod_offset(cops[i], struct dp_aead_op **, OWNER_OFFSET);

		switch (cops[i]->status) {
		case RTE_CRYPTO_OP_STATUS_SUCCESS:
			op->status = 0;
			break;
		case RTE_CRYPTO_OP_STATUS_AUTH_FAILED:
			op->status = -EBADMSG;
			break;
		default:
			op->status = -EIO;
			break;
		}
		/* Never hand back unauthenticated plaintext. */
		if (open && op->status != 0 && op->len > 0)
			memset(op->data, 0, op->len);
	}
}

/* Run the first n prepared ops to completion (the synchronous wrapper). */
static void flush(struct cdev *c, unsigned n, bool open)
{
	unsigned enq = 0, deq = 0, k;
	uint64_t start = rte_rdtsc();

	while (deq < n) {
		if (enq < n)
			enq +=
			    rte_cryptodev_enqueue_burst(c->dev_id, c->qp, c->cops + enq, n - enq);
		k = rte_cryptodev_dequeue_burst(c->dev_id, c->qp, c->done, n - deq);
		finish(c->done, k, open);
		deq += k;
		if (k == 0 && rte_rdtsc() - start > c->stuck_cycles) {
			/* Ops still inside the device keep status -EIO; we can't reuse them. */
			c->broken = true;
			break;
		}
	}
	c->gen++;
}

static void run_chunk(struct cdev *c, struct dp_aead_op *ops, unsigned n, bool open)
{
	unsigned i, pending = 0;
	void *sess;

	for (i = 0; i < n; i++) {
		struct dp_aead_op *op = &ops[i];

		if (!op_valid(op)) {
			op->status = -EINVAL;
			continue;
		}
		op->status = -EIO;
		if (c->broken)
			continue;
		sess = session_get(c, op->key, open, &pending);
		if (sess == NULL)
			continue;
		prepare(c, pending++, op, sess);
	}
	if (pending > 0)
		flush(c, pending, open);
}

static void cdev_seal(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n)
{
	run_chunk((struct cdev *)c, ops, n, false);
}

static void cdev_open(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n)
{
	run_chunk((struct cdev *)c, ops, n, true);
}

/* ---- device and queue pair ---- */

static bool dev_can_chachapoly(uint8_t dev_id)
{
	const struct rte_cryptodev_symmetric_capability *cap;
	struct rte_cryptodev_sym_capability_idx idx = {.type = RTE_CRYPTO_SYM_XFORM_AEAD};

	idx.algo.aead = RTE_CRYPTO_AEAD_CHACHA20_POLY1305;
	cap = rte_cryptodev_sym_capability_get(dev_id, &idx);
	if (cap == NULL)
		return false;
	return rte_cryptodev_sym_capability_check_aead(cap, DP_AEAD_KEY_LEN, DP_AEAD_TAG_LEN, 0,
						       DP_AEAD_NONCE_LEN) == 0;
}

static int find_dev(const char *name)
{
	int id;
	uint8_t n = rte_cryptodev_count();

	if (name != NULL) {
		id = rte_cryptodev_get_dev_id(name);
		/* Also take a driver name, e.g. "crypto_aesni_mb" for device "crypto_aesni_mb0". */
		for (uint8_t d = 0; id < 0 && d < n; d++) {
			struct rte_cryptodev_info info;

			rte_cryptodev_info_get(d, &info);
			if (strcmp(info.driver_name, name) == 0)
				id = d;
		}
		if (id < 0) {
			fprintf(stderr, "dp_crypto: no cryptodev `%s'\n", name);
			return -ENODEV;
		}
		if (!dev_can_chachapoly((uint8_t)id)) {
			fprintf(stderr, "dp_crypto: cryptodev `%s' lacks ChaCha20-Poly1305\n",
				name);
			return -ENOTSUP;
		}
		return id;
	}
	for (id = 0; id < n; id++)
		if (dev_can_chachapoly((uint8_t)id))
			return id;
	fprintf(stderr, "dp_crypto: no cryptodev with ChaCha20-Poly1305 (%u devices)\n", n);
	return n == 0 ? -ENODEV : -ENOTSUP;
}

/* First user: configure every queue pair the device has (up to MAX_QPS) and start it. */
static int dev_setup(uint8_t dev_id, struct dev_state *d)
{
	struct rte_cryptodev_info info;
	struct rte_cryptodev_config conf = {.socket_id = rte_cryptodev_socket_id(dev_id)};
	struct rte_cryptodev_qp_conf qp_conf = {.nb_descriptors = QP_DESC};
	uint16_t q;
	int ret;

	rte_cryptodev_info_get(dev_id, &info);
	conf.ff_disable = RTE_CRYPTODEV_FF_ASYMMETRIC_CRYPTO | RTE_CRYPTODEV_FF_SECURITY;
	conf.nb_queue_pairs = (uint16_t)RTE_MIN(info.max_nb_queue_pairs, MAX_QPS);
	if (conf.nb_queue_pairs == 0)
		return -ENOTSUP;
	ret = rte_cryptodev_configure(dev_id, &conf);
	for (q = 0; ret == 0 && q < conf.nb_queue_pairs; q++)
		ret = rte_cryptodev_queue_pair_setup(dev_id, q, &qp_conf, conf.socket_id);
	if (ret == 0)
		ret = rte_cryptodev_start(dev_id);
	if (ret < 0) {
		fprintf(stderr, "dp_crypto: cannot set up cryptodev %u: %s\n", dev_id,
			strerror(-ret));
		return ret;
	}
	d->nb_qp = conf.nb_queue_pairs;
	d->qp_used = 0;
	return 0;
}

/* Claim a free queue pair of dev_id, setting the device up if we are its first user. */
static int qp_claim(uint8_t dev_id)
{
	struct dev_state *d = &registry[dev_id];
	int ret = 0;
	uint16_t q;

	pthread_mutex_lock(&registry_lock);
	if (d->nb_qp == 0)
		ret = dev_setup(dev_id, d);
	if (ret == 0) {
		ret = -EBUSY;
		for (q = 0; q < d->nb_qp; q++) {
			if (!(d->qp_used & (1ull << q))) {
				d->qp_used |= 1ull << q;
				ret = q;
				break;
			}
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return ret;
}

static void qp_release(uint8_t dev_id, uint16_t q)
{
	struct dev_state *d = &registry[dev_id];

	pthread_mutex_lock(&registry_lock);
	d->qp_used &= ~(1ull << q);
	if (d->qp_used == 0) {
		rte_cryptodev_stop(dev_id);
		d->nb_qp = 0;
	}
	pthread_mutex_unlock(&registry_lock);
}

/* ---- lifecycle ---- */

static void cdev_free(struct cdev *c)
{
	unsigned i, j;

	for (i = 0; i < 2; i++)
		for (j = 0; j < SESS_SLOTS; j++)
			if (c->slots[i][j].sess != NULL)
				rte_cryptodev_sym_session_free(c->dev_id, c->slots[i][j].sess);
	memset(c->slots, 0, sizeof(c->slots)); /* key copies */
	/* A broken device may still hold our ops and mbufs: leak them rather than free them. */
	if (!c->broken) {
		if (c->cops[0] != NULL)
			rte_mempool_put_bulk(c->op_pool, (void **)c->cops, DP_CRYPTO_CHUNK);
		if (c->mbufs[0] != NULL)
			rte_pktmbuf_free_bulk(c->mbufs, DP_CRYPTO_CHUNK);
		rte_mempool_free(c->op_pool);
		rte_mempool_free(c->mbuf_pool);
	}
	rte_mempool_free(c->sess_pool);
	rte_free(c);
}

static void cdev_destroy(struct dp_crypto *base)
{
	struct cdev *c = (struct cdev *)base;
	uint8_t dev_id = c->dev_id;
	uint16_t qp = c->qp;

	cdev_free(c);
	qp_release(dev_id, qp);
}

static const struct dp_crypto_ops cdev_ops = {cdev_seal, cdev_open, cdev_destroy};

static int pools_create(struct cdev *c, int socket_id)
{
	uint32_t seq = __atomic_fetch_add(&instance_seq, 1, __ATOMIC_RELAXED);
	char name[RTE_MEMPOOL_NAMESIZE];

	snprintf(name, sizeof(name), "dpc_op_%u", seq);
	c->op_pool = rte_crypto_op_pool_create(name, RTE_CRYPTO_OP_TYPE_SYMMETRIC, DP_CRYPTO_CHUNK,
					       0, OP_PRIV_SIZE, socket_id);
	snprintf(name, sizeof(name), "dpc_mb_%u", seq);
	c->mbuf_pool = rte_pktmbuf_pool_create(name, DP_CRYPTO_CHUNK, 0, 0, 0, socket_id);
	snprintf(name, sizeof(name), "dpc_ss_%u", seq);
	c->sess_pool = rte_cryptodev_sym_session_pool_create(
	    name, 2 * SESS_SLOTS, rte_cryptodev_sym_get_private_session_size(c->dev_id), 0, 0,
	    socket_id);
	if (c->op_pool == NULL || c->mbuf_pool == NULL || c->sess_pool == NULL)
		return -rte_errno;
	/* Taken once, reused by every chunk: no allocation on the fast path. */
	if (rte_crypto_op_bulk_alloc(c->op_pool, RTE_CRYPTO_OP_TYPE_SYMMETRIC, c->cops,
				     DP_CRYPTO_CHUNK) != DP_CRYPTO_CHUNK)
		return -ENOMEM;
	if (rte_pktmbuf_alloc_bulk(c->mbuf_pool, c->mbufs, DP_CRYPTO_CHUNK) != 0) {
		c->mbufs[0] = NULL;
		return -ENOMEM;
	}
	return 0;
}

struct dp_crypto *dp_crypto_cryptodev_create(const char *dev_name, int socket_id)
{
	struct rte_cryptodev_info info;
	struct cdev *c;
	int dev, qp, ret;

	dev = find_dev(dev_name);
	if (dev < 0) {
		errno = -dev;
		return NULL;
	}
	c = rte_zmalloc_socket("dp_crypto", sizeof(*c), RTE_CACHE_LINE_SIZE, socket_id);
	if (c == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	c->dev_id = (uint8_t)dev;
	ret = pools_create(c, socket_id);
	if (ret < 0) {
		fprintf(stderr, "dp_crypto: cannot create cryptodev pools: %s\n", strerror(-ret));
		cdev_free(c);
		errno = -ret;
		return NULL;
	}
	qp = qp_claim(c->dev_id);
	if (qp < 0) {
		cdev_free(c);
		errno = -qp;
		return NULL;
	}
	c->qp = (uint16_t)qp;
	c->seed = rte_rand();
	c->stuck_cycles = rte_get_tsc_hz() / 1000 * STUCK_MS;
	c->base.ops = &cdev_ops;
	rte_cryptodev_info_get(c->dev_id, &info);
	snprintf(c->base.name, sizeof(c->base.name), "cryptodev %s qp %u",
		 rte_cryptodev_name_get(c->dev_id), c->qp);
	if (strcmp(info.driver_name, rte_cryptodev_name_get(c->dev_id)) != 0)
		snprintf(c->base.name + strlen(c->base.name),
			 sizeof(c->base.name) - strlen(c->base.name), " (%s)", info.driver_name);
	return &c->base;
}
