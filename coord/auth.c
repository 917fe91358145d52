/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth.h"

/* The signed string; returns its length or -EINVAL if it does not fit. */
static int message(char *out, size_t outlen, const char *method, const char *path, const void *body,
		   size_t len, int64_t ts, const char *nonce)
{
	uint8_t h[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof(h) + 1];
	int n;

	crypto_hash_sha256(h, body ? body : (const void *)"", len);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	n = snprintf(out, outlen, "meshgate-v1\n%s\n%s\n%" PRId64 "\n%s\n%s", method, path, ts,
		     nonce, hex);
	return n < 0 || (size_t)n >= outlen ? -EINVAL : n;
}

void coord_mkey_format(const uint8_t pk[32], char out[COORD_MKEY_STRLEN])
{
	memcpy(out, "mkey:", 5);
	sodium_bin2base64(out + 5, COORD_MKEY_STRLEN - 5, pk, 32, sodium_base64_VARIANT_ORIGINAL);
}

int coord_sig_make(const uint8_t sk[64], const char *method, const char *path, const void *body,
		   size_t len, int64_t ts, const char *nonce, char sig[COORD_SIG_STRLEN])
{
	char msg[4096];
	uint8_t s[crypto_sign_BYTES];
	int n = message(msg, sizeof(msg), method, path, body, len, ts, nonce);

	if (n < 0)
		return n;
	crypto_sign_detached(s, NULL, (const uint8_t *)msg, (size_t)n, sk);
	sodium_bin2base64(sig, COORD_SIG_STRLEN, s, sizeof(s), sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

static int deny(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EACCES;
}

static int decode_b64(const char *s, uint8_t *out, size_t want)
{
	size_t n = 0;

	if (strlen(s) > 2 * want + 4 || sodium_base642bin(out, want, s, strlen(s), NULL, &n, NULL,
							  sodium_base64_VARIANT_ORIGINAL) != 0)
		return -EINVAL;
	return n == want ? 0 : -EINVAL;
}

int coord_sig_check(const struct coord_sig_hdrs *h, const char *method, const char *path,
		    const void *body, size_t len, int64_t now, unsigned skew,
		    char mkey[COORD_MKEY_STRLEN], int64_t *ts, char *err, size_t errlen)
{
	uint8_t pk[32], sig[crypto_sign_BYTES];
	char msg[4096], *end;
	long long t;
	int n;

	if (!h->machine || !h->timestamp || !h->nonce || !h->signature)
		return deny(err, errlen, "%s",
			    "missing X-Meshgate-Machine/-Timestamp/-Nonce/-Signature headers");
	if (strncmp(h->machine, "mkey:", 5) || decode_b64(h->machine + 5, pk, sizeof(pk)) < 0)
		return deny(err, errlen,
			    "X-Meshgate-Machine: want mkey:<base64 of 32 bytes>, not \"%.60s\"",
			    h->machine);
	errno = 0;
	t = strtoll(h->timestamp, &end, 10);
	if (errno || end == h->timestamp || *end || t <= 0)
		return deny(err, errlen, "X-Meshgate-Timestamp \"%.30s\": want unix seconds",
			    h->timestamp);
	if (t > now + (int64_t)skew || t < now - (int64_t)skew)
		return deny(err, errlen,
			    "X-Meshgate-Timestamp %.30s: more than the allowed skew from the "
			    "server's clock",
			    h->timestamp);
	if (strlen(h->nonce) != COORD_NONCE_LEN ||
	    strspn(h->nonce, "0123456789abcdef") != COORD_NONCE_LEN)
		return deny(err, errlen,
			    "X-Meshgate-Nonce \"%.40s\": want 32 lowercase hex characters",
			    h->nonce);
	if (decode_b64(h->signature, sig, sizeof(sig)) < 0)
		return deny(err, errlen, "%s", "X-Meshgate-Signature: want base64 of 64 bytes");
	n = message(msg, sizeof(msg), method, path, body, len, (int64_t)t, h->nonce);
	if (n < 0)
		return deny(err, errlen, "%s", "request path too long");
	if (crypto_sign_verify_detached(sig, (const uint8_t *)msg, (size_t)n, pk) != 0)
		return deny(err, errlen, "%s", "bad signature");
	coord_mkey_format(pk, mkey);
	*ts = t;
	return 0;
}

int coord_token_equal(const char *a, const char *b)
{
	uint8_t ha[crypto_hash_sha256_BYTES], hb[crypto_hash_sha256_BYTES];

	/* Hash first so the comparison's time does not depend on the lengths either. */
	crypto_hash_sha256(ha, (const uint8_t *)a, strlen(a));
	crypto_hash_sha256(hb, (const uint8_t *)b, strlen(b));
	return sodium_memcmp(ha, hb, sizeof(ha)) == 0;
}
