/* SPDX-License-Identifier: MIT */
/*
 * Backend selection and chunking. The backends see at most DP_CRYPTO_CHUNK
 * ops per call, which bounds their per-lcore scratch space (nonces, computed
 * tags, device ops) without any allocation on the fast path.
 */
#include <errno.h>
#include <stddef.h>

#include <rte_errno.h>

#include "crypto.h"

struct dp_crypto *dp_crypto_create(enum dp_crypto_backend b, const char *cryptodev_name,
				   int socket_id)
{
	struct dp_crypto *c;

	switch (b) {
	case DP_CRYPTO_IPSEC_MB:
		c = dp_crypto_ipsecmb_create(socket_id);
		break;
	case DP_CRYPTO_CRYPTODEV:
		c = dp_crypto_cryptodev_create(cryptodev_name, socket_id);
		break;
	default:
		c = NULL;
		errno = EINVAL;
		break;
	}
	if (c == NULL)
		rte_errno = errno;
	return c;
}

void dp_crypto_destroy(struct dp_crypto *c)
{
	if (c != NULL)
		c->ops->destroy(c);
}

const char *dp_crypto_name(const struct dp_crypto *c)
{
	return c->name;
}

unsigned dp_crypto_seal_burst(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n)
{
	unsigned i, k;

	for (i = 0; i < n; i += k) {
		k = n - i < DP_CRYPTO_CHUNK ? n - i : DP_CRYPTO_CHUNK;
		c->ops->seal(c, ops + i, k);
	}
	return n;
}

unsigned dp_crypto_open_burst(struct dp_crypto *c, struct dp_aead_op *ops, unsigned n)
{
	unsigned i, k;

	for (i = 0; i < n; i += k) {
		k = n - i < DP_CRYPTO_CHUNK ? n - i : DP_CRYPTO_CHUNK;
		c->ops->open(c, ops + i, k);
	}
	return n;
}
