/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the STUN codec: the input is a UDP payload, run
 * through the classifier and both parsers. Checks their contract: what a
 * parser accepts also passes mg_stun_is, and a parsed response rebuilt with
 * mg_stun_build_response parses back to the same txid and address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stun.h"

static void check_response(const uint8_t txid[MG_STUN_TXID_LEN], const struct mg_sockaddr *mapped)
{
	uint8_t out[MG_STUN_MAX_BUILT], txid2[MG_STUN_TXID_LEN];
	struct mg_sockaddr again;
	size_t n = mg_stun_build_response(out, sizeof(out), txid, mapped);

	if (n == 0 || !mg_stun_is(out, n))
		abort();
	if (mg_stun_parse_response(out, n, txid2, &again) != MG_STUN_OK)
		abort();
	if (memcmp(txid, txid2, MG_STUN_TXID_LEN) || memcmp(mapped, &again, sizeof(again)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t txid[MG_STUN_TXID_LEN];
	struct mg_sockaddr mapped;
	bool is = mg_stun_is(data, size);
	enum mg_stun_err e;

	e = mg_stun_parse_request(data, size, txid);
	if ((unsigned)e >= MG_STUN_ERR_COUNT || (e == MG_STUN_OK && !is))
		abort();
	e = mg_stun_parse_response(data, size, txid, &mapped);
	if ((unsigned)e >= MG_STUN_ERR_COUNT || (e == MG_STUN_OK && !is))
		abort();
	if (e == MG_STUN_OK)
		check_response(txid, &mapped);
	return 0;
}
