/* SPDX-License-Identifier: MIT */
/*
 * STUN Binding (RFC 8489, formerly 5389): the part NAT traversal needs. A
 * node asks a STUN server from its WireGuard port what address and port the
 * server saw (its mapping on the outermost NAT); the server answers with
 * XOR-MAPPED-ADDRESS. Tailscale's nodes do the same against their DERP
 * servers' STUN port.
 *
 * Pure functions of bytes: no sockets, no clock, no allocation. Every parser
 * takes untrusted bytes and a length and never reads past it.
 *
 * Messages built here carry a FINGERPRINT (CRC-32 of the message, xored with
 * 0x5354554e); one received with a FINGERPRINT is refused if it does not
 * match. A request with a comprehension-required attribute (type < 0x8000)
 * we do not know is refused (RFC 8489 would answer 420; we drop it, which
 * the client sees as a lost request).
 */
#ifndef MG_STUN_H
#define MG_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

#define MG_STUN_MAGIC	   0x2112A442u
#define MG_STUN_HDR_LEN	   20
#define MG_STUN_TXID_LEN   12
#define MG_STUN_PORT	   3478
/* Enough for any message built here (a response with an IPv6 address). */
#define MG_STUN_MAX_BUILT  64

#define MG_STUN_BINDING_REQUEST 0x0001
#define MG_STUN_BINDING_SUCCESS 0x0101
#define MG_STUN_BINDING_ERROR	0x0111

/* Why a message was refused (negative errno-like codes are not used, so a
 * caller can count each reason). */
enum mg_stun_err {
	MG_STUN_OK = 0,
	MG_STUN_ERR_SHORT,	 /* shorter than a header or than its length field says,
				  * or a truncated attribute */
	MG_STUN_ERR_NOT_STUN,	 /* top bits, magic cookie or length alignment wrong,
				  * or bytes past the length */
	MG_STUN_ERR_TYPE,	 /* not the message type the caller wanted */
	MG_STUN_ERR_FINGERPRINT, /* FINGERPRINT present and wrong, or not last */
	MG_STUN_ERR_UNKNOWN_ATTR, /* a comprehension-required attribute we do not know */
	MG_STUN_ERR_NO_ADDRESS,	 /* a response without a usable (XOR-)MAPPED-ADDRESS */
	MG_STUN_ERR_BAD_ADDRESS, /* an address attribute of the wrong size or family */
};
/* How many values enum mg_stun_err has, e.g. to size a counter array. */
#define MG_STUN_ERR_COUNT (MG_STUN_ERR_BAD_ADDRESS + 1)

const char *mg_stun_strerror(enum mg_stun_err e);

/*
 * Cheap classifier for a UDP payload: at least a header, the two top bits
 * zero, the magic cookie, a length that is a multiple of 4 and equals the
 * rest of the payload. No WireGuard message passes it: its bytes 2..3 are
 * zero, which as a STUN length means a 20-byte message, and every WireGuard
 * message is longer.
 */
bool mg_stun_is(const uint8_t *p, size_t n);

/* A Binding request with txid and a FINGERPRINT. Returns its length, or 0 if
 * cap is too small. */
size_t mg_stun_build_request(uint8_t *out, size_t cap, const uint8_t txid[MG_STUN_TXID_LEN]);

/*
 * A Binding success response to txid saying the request came from *mapped
 * (AF_INET or AF_INET6), with XOR-MAPPED-ADDRESS, for IPv4 also
 * MAPPED-ADDRESS (for clients that predate XOR-MAPPED-ADDRESS; RFC 3489 had
 * no IPv6, and leaving it out keeps a v6 response within
 * MG_STUN_MAX_BUILT), and a FINGERPRINT. Returns its length (52 for either
 * family), or 0 if cap is too small or mapped's family is neither.
 */
size_t mg_stun_build_response(uint8_t *out, size_t cap, const uint8_t txid[MG_STUN_TXID_LEN],
			      const struct mg_sockaddr *mapped);

/*
 * Server side: p[0..n) is a valid Binding request; its txid is copied out.
 * Comprehension-optional attributes (0x8000 and up) are ignored. Of the
 * comprehension-required ones, those ICE connectivity checks carry are
 * known and ignored (we do not authenticate): USERNAME, MESSAGE-INTEGRITY,
 * MESSAGE-INTEGRITY-SHA256, PRIORITY and USE-CANDIDATE; any other is
 * MG_STUN_ERR_UNKNOWN_ATTR.
 */
enum mg_stun_err mg_stun_parse_request(const uint8_t *p, size_t n,
				       uint8_t txid[MG_STUN_TXID_LEN]);

/*
 * Client side: p[0..n) is a Binding success response; its txid and the
 * address the server saw (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS; the first
 * of each) are copied out. The caller matches the txid against the requests
 * it sent. Every (XOR-)MAPPED-ADDRESS must be well formed (family 1 with a
 * 4-byte address or family 2 with a 16-byte one); all other attributes,
 * known or not, are ignored. *mapped is zeroed unless the result is
 * MG_STUN_OK; on success its pad byte and unused address bytes are zero.
 */
enum mg_stun_err mg_stun_parse_response(const uint8_t *p, size_t n,
					uint8_t txid[MG_STUN_TXID_LEN], struct mg_sockaddr *mapped);

#endif /* MG_STUN_H */
