/* SPDX-License-Identifier: MIT */
/* Signed requests: a table of forgeries, and the nonce replay check in the store. */
/* The checks below call the code under test: keep assert() in every build type. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "auth.h"
#include "store.h"

#define NOW 1800000000

static uint8_t pk[32], sk[64], pk2[32], sk2[64];
static char mkey[COORD_MKEY_STRLEN], mkey2[COORD_MKEY_STRLEN];
static const char *nonce = "0123456789abcdef0123456789abcdef";
static const char *body = "{\"version\":0}";

static int check(const char *method, const char *path, const char *b, const char *machine,
		 const char *ts, const char *n, const char *sig, const char *want_err)
{
	struct coord_sig_hdrs h = {machine, ts, n, sig};
	char out[COORD_MKEY_STRLEN], err[256] = "";
	int64_t t;
	int ret =
	    coord_sig_check(&h, method, path, b, strlen(b), NOW, 120, out, &t, err, sizeof(err));

	if (want_err) {
		if (ret != -EACCES || !strstr(err, want_err)) {
			fprintf(stderr, "want \"%s\", got %d \"%s\"\n", want_err, ret, err);
			return 1;
		}
		return 0;
	}
	if (ret != 0 || strcmp(out, mkey) || t != NOW - 5) {
		fprintf(stderr, "want success, got %d \"%s\"\n", ret, err);
		return 1;
	}
	return 0;
}

int main(void)
{
	char sig[COORD_SIG_STRLEN], sig2[COORD_SIG_STRLEN], ts[24], old[24];
	const char *P = "/api/v1/machine/map";
	int fails = 0;

	assert(sodium_init() >= 0);
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk2);
	coord_mkey_format(pk, mkey);
	coord_mkey_format(pk2, mkey2);
	snprintf(ts, sizeof(ts), "%d", NOW - 5);
	snprintf(old, sizeof(old), "%d", NOW - 121);
	assert(coord_sig_make(sk, "POST", P, body, strlen(body), NOW - 5, nonce, sig) == 0);
	assert(coord_sig_make(sk2, "POST", P, body, strlen(body), NOW - 5, nonce, sig2) == 0);

	/* 1 */ fails += check("POST", P, body, mkey, ts, nonce, sig, NULL);
	/* 2 */ fails += check("POST", P, "{\"version\":1}", mkey, ts, nonce, sig, "bad signature");
	/* 3 */ fails +=
	    check("POST", "/api/v1/machine/update", body, mkey, ts, nonce, sig, "bad signature");
	/* 4 */ fails += check("PUT", P, body, mkey, ts, nonce, sig, "bad signature");
	/* 5 */ fails += check("POST", P, body, mkey2, ts, nonce, sig,
			       "bad signature"); /* speaks for another key */
	/* 6 */ fails += check("POST", P, body, mkey, ts, nonce, sig2, "bad signature");
	/* 7 */ fails += check("POST", P, body, mkey, ts, "ffffffffffffffffffffffffffffffff", sig,
			       "bad signature");
	/* 8 */ fails += check("POST", P, body, mkey, old, nonce, sig, "skew");
	/* 9 */ fails += check("POST", P, body, mkey, "1900000000", nonce, sig, "skew");
	/* 10 */ fails += check("POST", P, body, mkey, "12x", nonce, sig, "unix seconds");
	/* 11 */ fails += check("POST", P, body, mkey, ts, "0123", sig, "32 lowercase hex");
	/* 12 */ fails += check("POST", P, body, mkey, ts, "0123456789ABCDEF0123456789ABCDEF", sig,
				"32 lowercase hex");
	/* 13 */ fails += check("POST", P, body, "mkey:AAAA", ts, nonce, sig, "mkey:<base64");
	/* 14 */ fails += check("POST", P, body, mkey + 5, ts, nonce, sig, "mkey:<base64");
	/* 15 */ fails += check("POST", P, body, mkey, ts, nonce, "AAAA", "base64 of 64");
	{
		struct coord_sig_hdrs h = {mkey, NULL, nonce, sig};
		char out[COORD_MKEY_STRLEN], err[256];
		int64_t t;
		/* 16 */ fails += coord_sig_check(&h, "POST", P, body, strlen(body), NOW, 120, out,
						  &t, err, sizeof(err)) != -EACCES ||
				  !strstr(err, "missing");
	}

	/* replay: a nonce once per machine key, kept in the database */
	struct coord_store *st;
	char err[256];
	assert(store_open("sqlite::memory:", &st, err, sizeof(err)) == 0);
	fails += store_nonce_use(st, mkey, nonce, NOW) != 0;
	fails += store_nonce_use(st, mkey, nonce, NOW) != -EEXIST;
	fails +=
	    store_nonce_use(st, mkey2, nonce, NOW) != 0; /* another key may use the same nonce */
	store_nonce_prune(st, NOW + 301);
	fails += store_nonce_use(st, mkey, nonce, NOW + 301) !=
		 0; /* pruned: outside the skew window anyway */
	store_close(st);

	/* admin token compare */
	fails += !coord_token_equal("abc", "abc") || coord_token_equal("abc", "abd") ||
		 coord_token_equal("abc", "ab");
	printf("auth: %d failure(s)\n", fails);
	return fails != 0;
}
