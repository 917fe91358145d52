/* SPDX-License-Identifier: MIT */
/*
 * Disco, Tailscale's path discovery messages: small NaCl-boxed datagrams that
 * share the WireGuard UDP port (and travel through DERP relays too), with
 * which two nodes find out whether a direct UDP path between them works and
 * open their NATs for each other at the same time.
 *
 *   magic "TS💬" (54 53 f0 9f 92 ac, 6 B) + sender's key (32 B) + nonce (24 B)
 *   + crypto_box_easy(type (1 B) + version (1 B) + body, nonce, receiver's key,
 *                     sender's private key)
 *
 *   Ping        0x01  txid (12 B) + sender's node key (32 B); older senders
 *                     stop after the txid; bytes past the key are padding
 *   Pong        0x02  txid (12 B) + the source the ping came from: IPv6 or
 *                     v4-mapped address (16 B) + port (2 B, big-endian)
 *   CallMeMaybe 0x03  endpoints, 18 B each as in Pong: "I am pinging you from
 *                     these; ping me at them now"
 *
 * The first byte ('T', 0x54) tells disco from WireGuard (1..4) and the magic
 * cookie at offset 4 tells STUN from both. meshgate uses the node (WireGuard)
 * key pair as the disco key pair, as DERP's ClientInfo does; Tailscale nodes
 * use a separate key they publish through the coordination server.
 *
 * Pure functions of bytes: no sockets, no clock, no allocation; nonces come
 * from the caller. Parsers never read past the length they are given.
 */
#ifndef MG_DISCO_H
#define MG_DISCO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

#define MG_DISCO_MAGIC	   "TS\xf0\x9f\x92\xac"
#define MG_DISCO_MAGIC_LEN 6
#define MG_DISCO_KEY_LEN   32
#define MG_DISCO_NONCE_LEN 24
#define MG_DISCO_HDR_LEN   (MG_DISCO_MAGIC_LEN + MG_DISCO_KEY_LEN + MG_DISCO_NONCE_LEN) /* 62 */
#define MG_DISCO_BOX_MAC   16
#define MG_DISCO_TXID_LEN  12
#define MG_DISCO_VERSION   0
#define MG_DISCO_EP_LEN	   18 /* 16 B address (v4-mapped for IPv4) + 2 B port */
/* Endpoints a CallMeMaybe carries at most (Tailscale sends a handful). */
#define MG_DISCO_MAX_EPS 16
/* Largest datagram accepted or built: a padded Ping stays under an MTU. */
#define MG_DISCO_MAX_LEN 1400u

enum mg_disco_type {
	MG_DISCO_PING = 0x01,
	MG_DISCO_PONG = 0x02,
	MG_DISCO_CALL_ME_MAYBE = 0x03,
};

enum mg_disco_err {
	MG_DISCO_OK = 0,
	MG_DISCO_ERR_SHORT,   /* shorter than header + box + type/version, or a body
			       * shorter than its type needs */
	MG_DISCO_ERR_MAGIC,   /* not a disco message */
	MG_DISCO_ERR_TOO_BIG, /* over MG_DISCO_MAX_LEN */
	MG_DISCO_ERR_BOX,     /* the box does not open (wrong key, tampered) */
	MG_DISCO_ERR_TYPE,    /* a type we do not know */
	MG_DISCO_ERR_ADDRESS, /* a Pong or CallMeMaybe address of port 0, or a
			       * CallMeMaybe whose length is not a multiple of 18 */
};
#define MG_DISCO_ERR_COUNT (MG_DISCO_ERR_ADDRESS + 1)

const char *mg_disco_strerror(enum mg_disco_err e);

struct mg_disco_msg {
	uint8_t type; /* enum mg_disco_type */
	uint8_t version;
	uint8_t txid[MG_DISCO_TXID_LEN]; /* Ping, Pong */
	bool has_node_key;		 /* Ping: the sender's node key was there */
	uint8_t node_key[32];
	struct mg_sockaddr src; /* Pong: where the ping came from (AF_INET for v4-mapped) */
	struct mg_sockaddr eps[MG_DISCO_MAX_EPS]; /* CallMeMaybe; more than MAX are ignored */
	unsigned n_eps;
	uint16_t pad; /* Ping: padding bytes to add when sealing (0 when parsed) */
};

/* Cheap classifier: at least a header and a box's MAC, starting with the magic. */
bool mg_disco_is(const uint8_t *p, size_t n);

/* The sender's key in the clear header (after mg_disco_is). */
static inline const uint8_t *mg_disco_sender(const uint8_t *p)
{
	return p + MG_DISCO_MAGIC_LEN;
}

/*
 * Seal m from sender (its key pair) to receiver_pub. The version byte is
 * m->version (MG_DISCO_VERSION for what Tailscale sends). Ping: txid,
 * node_key (always sent) and pad zero bytes; Pong: txid and src (IPv4 as
 * v4-mapped); CallMeMaybe: eps[0..n_eps). Returns the datagram's length, or
 * 0 if cap is too small, it would be over MG_DISCO_MAX_LEN, the type is
 * unknown, n_eps is over MG_DISCO_MAX_EPS, an address is not
 * AF_INET/AF_INET6 or has port 0, or the keys give a zero shared secret.
 */
size_t mg_disco_seal(uint8_t *out, size_t cap, const uint8_t sender_pub[32],
		     const uint8_t sender_priv[32], const uint8_t receiver_pub[32],
		     const uint8_t nonce[MG_DISCO_NONCE_LEN], const struct mg_disco_msg *m);

/*
 * Open a datagram sent to us (receiver_priv): the sender's key is the one in
 * its header (mg_disco_sender); the caller decides whether it knows it. On
 * success *m is filled (unknown fields zero); on error *m is zeroed. A
 * version other than 0 is accepted (as Tailscale does) and reported in
 * m->version. CallMeMaybe entries past MG_DISCO_MAX_EPS are neither kept nor
 * checked. The checks go in order: TOO_BIG, MAGIC (of the bytes there are),
 * SHORT, BOX, then the payload's.
 */
enum mg_disco_err mg_disco_open(const uint8_t *p, size_t n, const uint8_t receiver_priv[32],
				struct mg_disco_msg *m);

#endif /* MG_DISCO_H */
