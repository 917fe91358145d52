/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the disco codec. Each input is used twice:
 *
 *  - as a datagram received on the WireGuard port: mg_disco_is, then
 *    mg_disco_open with the fixed receiver key;
 *  - as a payload (type, version, body) that the harness boxes itself from
 *    the fixed sender to the fixed receiver and opens. A fuzzer cannot forge
 *    a Poly1305 tag, so without this it would never get past the box.
 *
 * Checks the contracts: an error leaves *m zeroed; an opened message is
 * well formed (a known type, valid endpoints, no more than MAX of them), and
 * when it is from the fixed sender, sealing it again with the same nonce and
 * opening that gives the same fields, and the same bytes when the body had
 * its type's canonical length.
 *
 * The keys are the same as test_disco.c's, which also writes the seed
 * corpus (test_disco --write-corpus common/corpus/disco).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "disco.h"

#define MIN_LEN	  (MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC + 2)
#define MAX_PLAIN (MG_DISCO_MAX_LEN - MG_DISCO_HDR_LEN - MG_DISCO_BOX_MAC)
#define NONCE_OFF (MG_DISCO_MAGIC_LEN + MG_DISCO_KEY_LEN)
#define PING_BODY (MG_DISCO_TXID_LEN + 32)
#define PONG_BODY (MG_DISCO_TXID_LEN + MG_DISCO_EP_LEN)

static uint8_t sender_priv[32], sender_pub[32], receiver_priv[32], receiver_pub[32];
static const uint8_t nonce1[MG_DISCO_NONCE_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
						   13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};

static void keys_init(void)
{
	static bool done;

	if (done)
		return;
	if (sodium_init() < 0)
		abort();
	memset(sender_priv, 0x41, sizeof(sender_priv));
	memset(receiver_priv, 0x42, sizeof(receiver_priv));
	if (crypto_scalarmult_base(sender_pub, sender_priv) ||
	    crypto_scalarmult_base(receiver_pub, receiver_priv))
		abort();
	done = true;
}

static void check_ep(const struct mg_sockaddr *a)
{
	if (a->port == 0 || a->pad != 0)
		abort();
	if (a->family == AF_INET) {
		if (!sodium_is_zero((const unsigned char *)a->addr + 4, 12))
			abort();
	} else if (a->family != AF_INET6) {
		abort();
	}
}

static bool ep_eq(const struct mg_sockaddr *a, const struct mg_sockaddr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->addr, b->addr, 16);
}

/* eps[from..MAX) are all zero. */
static bool eps_zero_from(const struct mg_disco_msg *m, unsigned from)
{
	return sodium_is_zero((const unsigned char *)(m->eps + from),
			      (MG_DISCO_MAX_EPS - from) * sizeof(m->eps[0]));
}

/* An opened datagram of n bytes gave *m: is it well formed, with the fields
 * its type does not use zero? */
static void check_msg(const struct mg_disco_msg *m, size_t n)
{
	size_t blen = n - MIN_LEN, count = blen / MG_DISCO_EP_LEN;

	if (n < MIN_LEN || n > MG_DISCO_MAX_LEN || m->pad != 0)
		abort();
	switch (m->type) {
	case MG_DISCO_PING:
		if (blen < MG_DISCO_TXID_LEN || m->has_node_key != (blen >= PING_BODY) ||
		    (!m->has_node_key && !sodium_is_zero((const unsigned char *)m->node_key, 32)) ||
		    !sodium_is_zero((const unsigned char *)&m->src, sizeof(m->src)) || m->n_eps ||
		    !eps_zero_from(m, 0))
			abort();
		break;
	case MG_DISCO_PONG:
		if (blen < PONG_BODY || m->has_node_key ||
		    !sodium_is_zero((const unsigned char *)m->node_key, 32) || m->n_eps ||
		    !eps_zero_from(m, 0))
			abort();
		check_ep(&m->src);
		break;
	case MG_DISCO_CALL_ME_MAYBE:
		if (count > MG_DISCO_MAX_EPS)
			count = MG_DISCO_MAX_EPS;
		if (blen % MG_DISCO_EP_LEN || m->n_eps != count || m->has_node_key ||
		    !sodium_is_zero((const unsigned char *)m->node_key, 32) ||
		    !sodium_is_zero((const unsigned char *)m->txid, sizeof(m->txid)) ||
		    !sodium_is_zero((const unsigned char *)&m->src, sizeof(m->src)) ||
		    !eps_zero_from(m, m->n_eps))
			abort();
		for (unsigned i = 0; i < m->n_eps; i++)
			check_ep(&m->eps[i]);
		break;
	default:
		abort();
	}
}

/* Seal *m again from the fixed sender with nonce, open it and compare; same
 * bytes as p[0..n) when its body had the canonical length. */
static void reseal(const uint8_t *p, size_t n, const uint8_t *nonce, const struct mg_disco_msg *m)
{
	static uint8_t again[MG_DISCO_MAX_LEN];
	struct mg_disco_msg r;
	size_t len =
	    mg_disco_seal(again, sizeof(again), sender_pub, sender_priv, receiver_pub, nonce, m);
	size_t blen = n - MIN_LEN;
	bool canonical;

	if (len == 0 || mg_disco_open(again, len, receiver_priv, &r) != MG_DISCO_OK)
		abort();
	if (r.type != m->type || r.version != m->version || memcmp(r.txid, m->txid, 12) ||
	    r.n_eps != m->n_eps || !ep_eq(&r.src, &m->src) || r.pad != 0)
		abort();
	if (m->type == MG_DISCO_PING &&
	    (!r.has_node_key || (m->has_node_key && memcmp(r.node_key, m->node_key, 32))))
		abort();
	for (unsigned i = 0; i < m->n_eps; i++)
		if (!ep_eq(&r.eps[i], &m->eps[i]))
			abort();
	canonical = (m->type == MG_DISCO_PING && blen == PING_BODY) ||
		    (m->type == MG_DISCO_PONG && blen == PONG_BODY) ||
		    (m->type == MG_DISCO_CALL_ME_MAYBE && blen == m->n_eps * MG_DISCO_EP_LEN);
	if (canonical && (len != n || memcmp(again, p, n)))
		abort();
}

/* Open p[0..n); check the outcome; reseal what the fixed sender sent. */
static enum mg_disco_err open_checked(const uint8_t *p, size_t n)
{
	struct mg_disco_msg m;
	enum mg_disco_err e;

	memset(&m, 0xee, sizeof(m));
	e = mg_disco_open(p, n, receiver_priv, &m);
	if ((unsigned)e >= MG_DISCO_ERR_COUNT)
		abort();
	if (e != MG_DISCO_OK) {
		if (!sodium_is_zero((const unsigned char *)&m, sizeof(m)))
			abort();
		return e;
	}
	if (!mg_disco_is(p, n))
		abort();
	check_msg(&m, n);
	if (!memcmp(mg_disco_sender(p), sender_pub, 32))
		reseal(p, n, p + NONCE_OFF, &m);
	return e;
}

static void fuzz_datagram(const uint8_t *data, size_t size)
{
	bool is = mg_disco_is(data, size);

	if (is != (size >= MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC &&
		   !memcmp(data, MG_DISCO_MAGIC, MG_DISCO_MAGIC_LEN)))
		abort();
	open_checked(data, size);
}

/* The input as a payload, boxed here (one byte over the limit at most). */
static void fuzz_payload(const uint8_t *data, size_t size)
{
	static uint8_t dg[MG_DISCO_MAX_LEN + 1];
	size_t plen = size < MAX_PLAIN + 1 ? size : MAX_PLAIN + 1;
	size_t n = MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC + plen;
	enum mg_disco_err e;
	bool ok;

	memcpy(dg, MG_DISCO_MAGIC, MG_DISCO_MAGIC_LEN);
	memcpy(dg + MG_DISCO_MAGIC_LEN, sender_pub, 32);
	memcpy(dg + NONCE_OFF, nonce1, MG_DISCO_NONCE_LEN);
	if (crypto_box_easy(dg + MG_DISCO_HDR_LEN, data, plen, nonce1, receiver_pub, sender_priv))
		abort();
	e = open_checked(dg, n);
	if (n > MG_DISCO_MAX_LEN)
		ok = e == MG_DISCO_ERR_TOO_BIG;
	else if (plen < 2)
		ok = e == MG_DISCO_ERR_SHORT;
	else if (data[0] < MG_DISCO_PING || data[0] > MG_DISCO_CALL_ME_MAYBE)
		ok = e == MG_DISCO_ERR_TYPE;
	else
		ok = e == MG_DISCO_OK || e == MG_DISCO_ERR_SHORT || e == MG_DISCO_ERR_ADDRESS;
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	keys_init();
	fuzz_datagram(data, size);
	fuzz_payload(data, size);
	return 0;
}
