// SPDX-License-Identifier: MIT
/*
 * X25519 on libsodium and OpenSSL's libcrypto: see x25519.h for which does
 * what, and why.
 *
 * OpenSSL reports failures on its thread-local error queue. Each function
 * here sets a mark first and pops back to it after, so that it leaves the
 * queue as it found it, whatever failed.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "x25519.h"

int wg_x25519(uint8_t out[WG_X25519_LEN], const uint8_t scalar[WG_X25519_LEN],
	      const uint8_t point[WG_X25519_LEN])
{
	/* libsodium returns -1 when the result is all zero; check it anyway. */
	if (crypto_scalarmult(out, scalar, point) != 0 || sodium_is_zero(out, WG_X25519_LEN)) {
		sodium_memzero(out, WG_X25519_LEN);
		return -EINVAL;
	}
	return 0;
}

/* OpenSSL derives the public key of every private key it imports. */
static EVP_PKEY *import_private(const uint8_t scalar[WG_X25519_LEN])
{
	return EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, WG_X25519_LEN);
}

static bool get_public(EVP_PKEY *pkey, uint8_t pub[WG_X25519_LEN])
{
	size_t len = WG_X25519_LEN;

	return EVP_PKEY_get_raw_public_key(pkey, pub, &len) == 1 && len == WG_X25519_LEN;
}

int wg_x25519_base(uint8_t out[WG_X25519_LEN], const uint8_t scalar[WG_X25519_LEN])
{
	EVP_PKEY *pkey;
	int ret = -ENOMEM;

	ERR_set_mark();
	pkey = import_private(scalar);
	if (pkey && get_public(pkey, out))
		ret = 0;
	EVP_PKEY_free(pkey); /* wipes its copy of scalar */
	ERR_pop_to_mark();
	return ret;
}

static void clamp(uint8_t scalar[WG_X25519_LEN])
{
	scalar[0] &= 248;
	scalar[31] = (scalar[31] & 127) | 64;
}

int wg_x25519_keygen(uint8_t priv[WG_X25519_LEN], uint8_t pub[WG_X25519_LEN])
{
	int ret;

	randombytes_buf(priv, WG_X25519_LEN);
	clamp(priv);
	ret = wg_x25519_base(pub, priv);
	if (ret)
		sodium_memzero(priv, WG_X25519_LEN);
	return ret;
}

int wg_x25519_key_init(struct wg_x25519_key *k, const uint8_t scalar[WG_X25519_LEN],
		       uint8_t pub[WG_X25519_LEN])
{
	int ret = -ENOMEM;

	memset(k, 0, sizeof(*k));
	ERR_set_mark();
	k->pkey = import_private(scalar);
	if (!k->pkey || !get_public(k->pkey, pub))
		goto out;
	k->derive = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
	if (!k->derive || EVP_PKEY_derive_init(k->derive) != 1)
		goto out;
	/*
	 * A context for importing peers' keys, made once here: importing with
	 * EVP_PKEY_new_raw_public_key makes (and fetches) a new one each time,
	 * which costs about as much as the import itself.
	 */
	k->import = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
	if (!k->import || EVP_PKEY_fromdata_init(k->import) != 1)
		goto out;
	ret = 0;
out:
	if (ret)
		wg_x25519_key_clear(k);
	ERR_pop_to_mark();
	return ret;
}

int wg_x25519_key_dh(struct wg_x25519_key *k, uint8_t out[WG_X25519_LEN],
		     const uint8_t point[WG_X25519_LEN])
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point,
					      WG_X25519_LEN),
	    OSSL_PARAM_construct_end(),
	};
	EVP_PKEY *peer = NULL;
	size_t len = WG_X25519_LEN;
	int ret = -EINVAL;

	ERR_set_mark();
	if (!k->derive) /* a cleared key */
		goto out;
	ret = -ENOMEM;
	if (EVP_PKEY_fromdata(k->import, &peer, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
	    EVP_PKEY_derive_set_peer_ex(k->derive, peer, 0) != 1)
		goto out;
	/* OpenSSL refuses an all-zero result, as RFC 7748 section 6.1 allows. */
	ret = -EINVAL;
	if (EVP_PKEY_derive(k->derive, out, &len) != 1 || len != WG_X25519_LEN ||
	    sodium_is_zero(out, WG_X25519_LEN))
		goto out;
	ret = 0;
out:
	if (ret)
		sodium_memzero(out, WG_X25519_LEN);
	EVP_PKEY_free(peer); /* the derivation context holds its own reference */
	ERR_pop_to_mark();
	return ret;
}

void wg_x25519_key_clear(struct wg_x25519_key *k)
{
	EVP_PKEY_CTX_free(k->import);
	EVP_PKEY_CTX_free(k->derive);
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}
