/* SPDX-License-Identifier: MIT */
/*
 * Signed node requests (docs/coord-protocol.md, "Signed node requests"):
 * Ed25519 over "meshgate-v1\nMETHOD\nPATH\nTIMESTAMP\nNONCE\nhex(sha256(body))".
 * Pure: the clock is an argument; the nonce replay check is the store's.
 */
#ifndef MG_COORD_AUTH_H
#define MG_COORD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define COORD_MKEY_STRLEN 64 /* "mkey:" + 44 base64 + NUL, rounded up */
#define COORD_NONCE_LEN	  32 /* hex chars */
#define COORD_SIG_STRLEN  96 /* base64 of 64 bytes + NUL */

struct coord_sig_hdrs {
	const char *machine, *timestamp, *nonce, *signature; /* NULL: header missing */
};

/*
 * Check a request's signature headers. Returns 0 with the canonical machine
 * key ("mkey:...") in mkey and the timestamp in *ts, or -EACCES with one
 * line saying what is wrong in err.
 */
int coord_sig_check(const struct coord_sig_hdrs *h, const char *method, const char *path,
		    const void *body, size_t len, int64_t now, unsigned skew,
		    char mkey[COORD_MKEY_STRLEN], int64_t *ts, char *err, size_t errlen);

/* Sign (clients, tests, the bench): the base64 signature into sig. 0 or -EINVAL. */
int coord_sig_make(const uint8_t sk[64], const char *method, const char *path, const void *body,
		   size_t len, int64_t ts, const char *nonce, char sig[COORD_SIG_STRLEN]);
/* "mkey:<base64>" of an Ed25519 public key. */
void coord_mkey_format(const uint8_t pk[32], char out[COORD_MKEY_STRLEN]);
/* Constant-time string compare (admin token). */
int coord_token_equal(const char *a, const char *b);

#endif /* MG_COORD_AUTH_H */
