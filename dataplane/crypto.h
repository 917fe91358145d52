/* SPDX-License-Identifier: MIT */
/*
 * WireGuard data-message AEAD for poll-mode workers: ChaCha20-Poly1305
 * (RFC 8439), 12-byte nonce = 4 zero bytes || little-endian 64-bit counter,
 * empty AAD, 16-byte tag, in place, a burst at a time.
 *
 * A struct dp_crypto belongs to one lcore and is never shared. The burst
 * calls allocate nothing, make no system calls and take no locks.
 *
 * Error convention: bursts return how many ops they handled (always n) and
 * set every op's status; the constructor returns NULL with errno set.
 */
#ifndef DP_CRYPTO_H
#define DP_CRYPTO_H

#include <stdint.h>

#define DP_AEAD_KEY_LEN	  32
#define DP_AEAD_TAG_LEN	  16
#define DP_AEAD_NONCE_LEN 12
/* Largest burst the backends take in one submission; bigger ones are chunked. */
#define DP_CRYPTO_CHUNK 64

enum dp_crypto_backend {
	DP_CRYPTO_IPSEC_MB,  /* intel-ipsec-mb job manager, in-process (default) */
	DP_CRYPTO_CRYPTODEV, /* any DPDK cryptodev with AEAD CHACHA20_POLY1305 */
};

struct dp_aead_op {
	uint8_t *data; /* in: plaintext (seal) or ciphertext (open); out: the other, in place */
	uint32_t len;  /* bytes of data, excluding tag; may be 0 (a keepalive) */
	uint8_t *tag;  /* 16 bytes: written by seal, checked by open; usually data + len */
	const uint8_t *key; /* 32 bytes */
	uint64_t counter;   /* nonce counter */
	/*
	 * out: 0 on success. Anything else means drop the packet:
	 * -EBADMSG  open failed authentication (data is then zeroed),
	 * -EINVAL   malformed op (NULL key or tag, NULL data with len > 0),
	 * -EIO      the backend failed (a library or device error).
	 */
	int status;
};

struct dp_crypto;

/*
 * One struct dp_crypto per lcore: create it on that lcore, or anywhere as long
 * as only one lcore ever uses it.
 *
 * cryptodev_name: for DP_CRYPTO_CRYPTODEV, the cryptodev (device name, or
 * driver name for its first device: "crypto_chacha20_poly1305",
 * "crypto_aesni_mb"; the EAL needs a matching --vdev), or NULL for the first
 * device that can do ChaCha20-Poly1305. Ignored for DP_CRYPTO_IPSEC_MB.
 * The cryptodev backend needs the EAL and takes one queue pair per
 * struct dp_crypto; the device is configured by the first create and
 * stopped by the last destroy.
 *
 * socket_id: NUMA node to allocate on, from DPDK's heap (EAL must be up),
 * or SOCKET_ID_ANY (-1): plain memory for ipsec-mb (no EAL needed), any node
 * for cryptodev.
 *
 * Returns NULL with errno (and rte_errno) set on failure: ENOTSUP if the
 * backend cannot do ChaCha20-Poly1305 here, ENODEV if there is no such
 * cryptodev, EBUSY if its queue pairs are all taken, ENOMEM.
 */
struct dp_crypto *dp_crypto_create(enum dp_crypto_backend b, const char *cryptodev_name,
				   int socket_id);
void dp_crypto_destroy(struct dp_crypto *c);
/* For logs: "ipsec-mb 1.3.0 avx512", "cryptodev crypto_aesni_mb qp 0". */
const char *dp_crypto_name(const struct dp_crypto *c);

/* Encrypt each op's data in place and write its tag. n may be anything. */
unsigned dp_crypto_seal_burst(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n);
/*
 * Decrypt each op's data in place and check its tag (ipsec-mb: in constant
 * time, here; cryptodev: by the PMD). Trust an op's data only if its status
 * is 0; a failed op's data is zeroed.
 */
unsigned dp_crypto_open_burst(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n);

/*
 * Backend interface: for crypto.c and crypto_<backend>.c only.
 * A backend embeds struct dp_crypto as the first member of its own state.
 */
struct dp_crypto_ops {
	/* n <= DP_CRYPTO_CHUNK; must set every op's status */
	void (*seal)(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n);
	void (*open)(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n);
	void (*destroy)(struct dp_crypto *c);
};

struct dp_crypto {
	const struct dp_crypto_ops *ops;
	char name[96];
};

struct dp_crypto *dp_crypto_ipsecmb_create(int socket_id);
struct dp_crypto *dp_crypto_cryptodev_create(const char *dev_name, int socket_id);

/* 0 if the two 16-byte tags are equal, nonzero otherwise; time independent of the contents. */
static inline uint64_t dp_crypto_tag_neq(const uint8_t *a, const uint8_t *b)
{
	uint64_t a0, a1, b0, b1, d;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	d = (a0 ^ b0) | (a1 ^ b1);
	/* One value, computed in full: keeps the compiler from splitting it into early exits. */
	__asm__ volatile("" : "+r"(d));
	return d;
}

/* The WireGuard nonce for a counter: 4 zero bytes || le64(counter). */
static inline void dp_crypto_nonce(uint8_t nonce[DP_AEAD_NONCE_LEN], uint64_t counter)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	counter = __builtin_bswap64(counter);
#endif
	__builtin_memset(nonce, 0, 4);
	__builtin_memcpy(nonce + 4, &counter, 8);
}

#endif /* DP_CRYPTO_H */
