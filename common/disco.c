/* SPDX-License-Identifier: MIT */
/*
 * Disco codec. Wire format as in Tailscale's disco/disco.go; the box is NaCl
 * box (crypto_box_easy), as Go's nacl/box, so a datagram sealed here opens
 * there and back.
 *
 * Both directions go through a plaintext scratch buffer on the stack (type,
 * version, body), wiped before returning: the box is opened into it, or the
 * payload is built in it and then sealed.
 */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "disco.h"

#define PAYLOAD_HDR   2 /* type + version */
#define MIN_LEN	      (MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC + PAYLOAD_HDR)
#define MAX_PLAIN     (MG_DISCO_MAX_LEN - MG_DISCO_HDR_LEN - MG_DISCO_BOX_MAC)
#define NODE_KEY_LEN  32
#define PING_BODY     (MG_DISCO_TXID_LEN + NODE_KEY_LEN)
#define PONG_BODY     (MG_DISCO_TXID_LEN + MG_DISCO_EP_LEN)
#define NONCE_OFFSET  (MG_DISCO_MAGIC_LEN + MG_DISCO_KEY_LEN)
#define EP_ADDR_LEN   16
#define V4_MAPPED_LEN 12       /* ::ffff: before the IPv4 address */
#define NO_BODY	      SIZE_MAX /* body_len: m cannot be sealed */

_Static_assert(sizeof(MG_DISCO_MAGIC) - 1 == MG_DISCO_MAGIC_LEN, "magic is 6 bytes");
_Static_assert(MG_DISCO_NONCE_LEN == crypto_box_NONCEBYTES, "nonce length");
_Static_assert(MG_DISCO_BOX_MAC == crypto_box_MACBYTES, "box MAC length");
_Static_assert(MG_DISCO_KEY_LEN == crypto_box_PUBLICKEYBYTES &&
		   MG_DISCO_KEY_LEN == crypto_box_SECRETKEYBYTES,
	       "box key length");
_Static_assert(MG_DISCO_HDR_LEN == 62, "disco header is 62 bytes");
_Static_assert(PAYLOAD_HDR + MG_DISCO_MAX_EPS * MG_DISCO_EP_LEN <= MAX_PLAIN,
	       "a full CallMeMaybe fits MG_DISCO_MAX_LEN");

static const uint8_t v4_mapped[V4_MAPPED_LEN] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static const char *const err_names[MG_DISCO_ERR_COUNT] = {
    [MG_DISCO_OK] = "ok",
    [MG_DISCO_ERR_SHORT] = "truncated message",
    [MG_DISCO_ERR_MAGIC] = "not a disco message",
    [MG_DISCO_ERR_TOO_BIG] = "message over its limit",
    [MG_DISCO_ERR_BOX] = "box does not open",
    [MG_DISCO_ERR_TYPE] = "unknown message type",
    [MG_DISCO_ERR_ADDRESS] = "malformed endpoint",
};

const char *mg_disco_strerror(enum mg_disco_err e)
{
	if ((unsigned)e >= MG_DISCO_ERR_COUNT)
		return "unknown";
	return err_names[e];
}

bool mg_disco_is(const uint8_t *p, size_t n)
{
	return n >= MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC &&
	       memcmp(p, MG_DISCO_MAGIC, MG_DISCO_MAGIC_LEN) == 0;
}

/* Endpoints: 16-byte address (IPv4 v4-mapped), 2-byte big-endian port. */

static bool ep_ok(const struct mg_sockaddr *a)
{
	return (a->family == AF_INET || a->family == AF_INET6) && a->port != 0;
}

static void put_ep(uint8_t out[MG_DISCO_EP_LEN], const struct mg_sockaddr *a)
{
	if (a->family == AF_INET) {
		memcpy(out, v4_mapped, V4_MAPPED_LEN);
		memcpy(out + V4_MAPPED_LEN, a->addr, 4);
	} else {
		memcpy(out, a->addr, EP_ADDR_LEN);
	}
	out[EP_ADDR_LEN] = (uint8_t)(a->port >> 8);
	out[EP_ADDR_LEN + 1] = (uint8_t)a->port;
}

/* A v4-mapped address becomes AF_INET, as Go's netip.Addr.Unmap. */
static enum mg_disco_err get_ep(const uint8_t in[MG_DISCO_EP_LEN], struct mg_sockaddr *a)
{
	memset(a, 0, sizeof(*a));
	a->port = (uint16_t)(in[EP_ADDR_LEN] << 8 | in[EP_ADDR_LEN + 1]);
	if (a->port == 0)
		return MG_DISCO_ERR_ADDRESS;
	if (memcmp(in, v4_mapped, V4_MAPPED_LEN) == 0) {
		a->family = AF_INET;
		memcpy(a->addr, in + V4_MAPPED_LEN, 4);
	} else {
		a->family = AF_INET6;
		memcpy(a->addr, in, EP_ADDR_LEN);
	}
	return MG_DISCO_OK;
}

/* Sealing. */

/* The body length of m, or NO_BODY if m cannot be sealed (an unknown type,
 * too many endpoints, an address that is not AF_INET/AF_INET6 with a port). */
static size_t body_len(const struct mg_disco_msg *m)
{
	switch (m->type) {
	case MG_DISCO_PING:
		return PING_BODY + (size_t)m->pad;
	case MG_DISCO_PONG:
		return ep_ok(&m->src) ? PONG_BODY : NO_BODY;
	case MG_DISCO_CALL_ME_MAYBE:
		if (m->n_eps > MG_DISCO_MAX_EPS)
			return NO_BODY;
		for (unsigned i = 0; i < m->n_eps; i++)
			if (!ep_ok(&m->eps[i]))
				return NO_BODY;
		return (size_t)m->n_eps * MG_DISCO_EP_LEN;
	}
	return NO_BODY;
}

/* The payload of m (its body is blen bytes, checked by body_len) at out. */
static void put_payload(uint8_t *out, const struct mg_disco_msg *m, size_t blen)
{
	uint8_t *b = out + PAYLOAD_HDR;

	out[0] = m->type;
	out[1] = m->version;
	memset(b, 0, blen);
	switch (m->type) {
	case MG_DISCO_PING:
		memcpy(b, m->txid, MG_DISCO_TXID_LEN);
		memcpy(b + MG_DISCO_TXID_LEN, m->node_key, NODE_KEY_LEN);
		break; /* padding stays zero */
	case MG_DISCO_PONG:
		memcpy(b, m->txid, MG_DISCO_TXID_LEN);
		put_ep(b + MG_DISCO_TXID_LEN, &m->src);
		break;
	case MG_DISCO_CALL_ME_MAYBE:
		for (unsigned i = 0; i < m->n_eps; i++)
			put_ep(b + (size_t)i * MG_DISCO_EP_LEN, &m->eps[i]);
		break;
	}
}

size_t mg_disco_seal(uint8_t *out, size_t cap, const uint8_t sender_pub[32],
		     const uint8_t sender_priv[32], const uint8_t receiver_pub[32],
		     const uint8_t nonce[MG_DISCO_NONCE_LEN], const struct mg_disco_msg *m)
{
	uint8_t plain[MAX_PLAIN];
	size_t blen = body_len(m), plen, n;
	int rc;

	/* NO_BODY is over the limit too. */
	if (blen > MAX_PLAIN - PAYLOAD_HDR)
		return 0;
	plen = PAYLOAD_HDR + blen;
	n = MG_DISCO_HDR_LEN + MG_DISCO_BOX_MAC + plen;
	if (n > cap)
		return 0;
	put_payload(plain, m, blen);
	memcpy(out, MG_DISCO_MAGIC, MG_DISCO_MAGIC_LEN);
	memcpy(out + MG_DISCO_MAGIC_LEN, sender_pub, MG_DISCO_KEY_LEN);
	memcpy(out + NONCE_OFFSET, nonce, MG_DISCO_NONCE_LEN);
	/* libsodium refuses a shared secret of zeros (a low-order point). */
	rc = crypto_box_easy(out + MG_DISCO_HDR_LEN, plain, plen, nonce, receiver_pub, sender_priv);
	sodium_memzero(plain, plen);
	if (rc != 0) {
		sodium_memzero(out, n);
		return 0;
	}
	return n;
}

/* Opening. */

static enum mg_disco_err parse_ping(const uint8_t *b, size_t n, struct mg_disco_msg *m)
{
	if (n < MG_DISCO_TXID_LEN)
		return MG_DISCO_ERR_SHORT;
	memcpy(m->txid, b, MG_DISCO_TXID_LEN);
	/* Older senders stop after the txid; bytes past the key are padding. */
	if (n >= PING_BODY) {
		m->has_node_key = true;
		memcpy(m->node_key, b + MG_DISCO_TXID_LEN, NODE_KEY_LEN);
	}
	return MG_DISCO_OK;
}

/* Bytes past the source are allowed: room for fields a later version adds. */
static enum mg_disco_err parse_pong(const uint8_t *b, size_t n, struct mg_disco_msg *m)
{
	if (n < PONG_BODY)
		return MG_DISCO_ERR_SHORT;
	memcpy(m->txid, b, MG_DISCO_TXID_LEN);
	return get_ep(b + MG_DISCO_TXID_LEN, &m->src);
}

/* Entries past MG_DISCO_MAX_EPS are ignored and so not checked either. */
static enum mg_disco_err parse_call_me_maybe(const uint8_t *b, size_t n, struct mg_disco_msg *m)
{
	size_t count = n / MG_DISCO_EP_LEN;

	if (n % MG_DISCO_EP_LEN)
		return MG_DISCO_ERR_ADDRESS;
	if (count > MG_DISCO_MAX_EPS)
		count = MG_DISCO_MAX_EPS;
	for (size_t i = 0; i < count; i++)
		if (get_ep(b + i * MG_DISCO_EP_LEN, &m->eps[i]) != MG_DISCO_OK)
			return MG_DISCO_ERR_ADDRESS;
	m->n_eps = (unsigned)count;
	return MG_DISCO_OK;
}

/* The payload plain[0..n), n >= PAYLOAD_HDR, into *m (zeroed). */
static enum mg_disco_err parse_payload(const uint8_t *plain, size_t n, struct mg_disco_msg *m)
{
	const uint8_t *b = plain + PAYLOAD_HDR;
	size_t blen = n - PAYLOAD_HDR;

	m->type = plain[0];
	m->version = plain[1];
	switch (plain[0]) {
	case MG_DISCO_PING:
		return parse_ping(b, blen, m);
	case MG_DISCO_PONG:
		return parse_pong(b, blen, m);
	case MG_DISCO_CALL_ME_MAYBE:
		return parse_call_me_maybe(b, blen, m);
	}
	return MG_DISCO_ERR_TYPE;
}

/* The magic, as far as p[0..n) goes: a truncated disco message is SHORT. */
static bool magic_prefix(const uint8_t *p, size_t n)
{
	size_t k = n < MG_DISCO_MAGIC_LEN ? n : MG_DISCO_MAGIC_LEN;

	return k == 0 || memcmp(p, MG_DISCO_MAGIC, k) == 0;
}

enum mg_disco_err mg_disco_open(const uint8_t *p, size_t n, const uint8_t receiver_priv[32],
				struct mg_disco_msg *m)
{
	uint8_t plain[MAX_PLAIN];
	size_t plen;
	enum mg_disco_err e;

	memset(m, 0, sizeof(*m));
	if (n > MG_DISCO_MAX_LEN)
		return MG_DISCO_ERR_TOO_BIG;
	if (!magic_prefix(p, n))
		return MG_DISCO_ERR_MAGIC;
	if (n < MIN_LEN)
		return MG_DISCO_ERR_SHORT;
	plen = n - MG_DISCO_HDR_LEN - MG_DISCO_BOX_MAC;
	/* Authenticate before looking at anything inside. */
	if (crypto_box_open_easy(plain, p + MG_DISCO_HDR_LEN, n - MG_DISCO_HDR_LEN,
				 p + NONCE_OFFSET, mg_disco_sender(p), receiver_priv) != 0) {
		e = MG_DISCO_ERR_BOX;
		goto out;
	}
	e = parse_payload(plain, plen, m);
	if (e != MG_DISCO_OK)
		memset(m, 0, sizeof(*m));
out:
	sodium_memzero(plain, plen);
	return e;
}
