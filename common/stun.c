/* SPDX-License-Identifier: MIT */
/*
 * STUN Binding (RFC 8489) codec. Both parsers go through one header check and
 * one attribute walk; the walk hands each attribute to a per-message-type
 * callback and handles FINGERPRINT itself, so the rules about its position
 * and its CRC live in one place.
 */
#include <string.h>
#include <sys/socket.h>
#include <zlib.h>

#include "stun.h"

#define ATTR_MAPPED_ADDRESS	      0x0001
#define ATTR_USERNAME		      0x0006
#define ATTR_MESSAGE_INTEGRITY	      0x0008
#define ATTR_MESSAGE_INTEGRITY_SHA256 0x001C
#define ATTR_XOR_MAPPED_ADDRESS	      0x0020
#define ATTR_PRIORITY		      0x0024
#define ATTR_USE_CANDIDATE	      0x0025
#define ATTR_FINGERPRINT	      0x8028

#define ATTR_HDR_LEN	     4
#define FINGERPRINT_XOR	     0x5354554eu
#define FINGERPRINT_ATTR_LEN (ATTR_HDR_LEN + 4)
#define FAMILY_V4	     0x01
#define FAMILY_V6	     0x02
/* Value of an address attribute: reserved, family, port, address. */
#define ADDR_V4_LEN (4 + 4)
#define ADDR_V6_LEN (4 + 16)

/* Largest message built here: a response with XOR-MAPPED-ADDRESS of either
 * family (v4 also gets MAPPED-ADDRESS, see mg_stun_build_response). */
_Static_assert(MG_STUN_HDR_LEN + ATTR_HDR_LEN + ADDR_V6_LEN + FINGERPRINT_ATTR_LEN <=
		   MG_STUN_MAX_BUILT,
	       "v6 response fits MG_STUN_MAX_BUILT");
_Static_assert(MG_STUN_HDR_LEN + 2 * (ATTR_HDR_LEN + ADDR_V4_LEN) + FINGERPRINT_ATTR_LEN <=
		   MG_STUN_MAX_BUILT,
	       "v4 response fits MG_STUN_MAX_BUILT");

static const char *const err_names[MG_STUN_ERR_COUNT] = {
    [MG_STUN_OK] = "ok",
    [MG_STUN_ERR_SHORT] = "truncated message",
    [MG_STUN_ERR_NOT_STUN] = "not a stun message",
    [MG_STUN_ERR_TYPE] = "unexpected message type",
    [MG_STUN_ERR_FINGERPRINT] = "bad fingerprint",
    [MG_STUN_ERR_UNKNOWN_ATTR] = "unknown required attribute",
    [MG_STUN_ERR_NO_ADDRESS] = "no mapped address",
    [MG_STUN_ERR_BAD_ADDRESS] = "malformed mapped address",
};

const char *mg_stun_strerror(enum mg_stun_err e)
{
	if ((unsigned)e >= MG_STUN_ERR_COUNT)
		return "unknown error";
	return err_names[e];
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint32_t fingerprint(const uint8_t *p, size_t n)
{
	return (uint32_t)crc32(0, p, (uInt)n) ^ FINGERPRINT_XOR;
}

/*
 * The header of p[0..n): SHORT if n is less than a header or than the length
 * field says; NOT_STUN if the top bits, the cookie or the alignment are
 * wrong or bytes follow the message.
 */
static enum mg_stun_err check_header(const uint8_t *p, size_t n)
{
	size_t len;

	if (n < MG_STUN_HDR_LEN)
		return MG_STUN_ERR_SHORT;
	if ((p[0] & 0xC0) || get32(p + 4) != MG_STUN_MAGIC)
		return MG_STUN_ERR_NOT_STUN;
	len = get16(p + 2);
	if (len % 4)
		return MG_STUN_ERR_NOT_STUN;
	if (MG_STUN_HDR_LEN + len > n)
		return MG_STUN_ERR_SHORT;
	if (MG_STUN_HDR_LEN + len < n)
		return MG_STUN_ERR_NOT_STUN;
	return MG_STUN_OK;
}

bool mg_stun_is(const uint8_t *p, size_t n)
{
	return check_header(p, n) == MG_STUN_OK;
}

/* Called for each attribute but FINGERPRINT with its type and value. */
typedef enum mg_stun_err (*attr_fn)(uint16_t type, const uint8_t *v, size_t len, void *ctx);

/*
 * Walk the attributes of a message whose header check_header accepted. A
 * FINGERPRINT must be the last attribute and match; every other attribute
 * goes to fn, and the first error fn returns ends the walk.
 */
static enum mg_stun_err walk_attrs(const uint8_t *p, size_t n, attr_fn fn, void *ctx)
{
	size_t off = MG_STUN_HDR_LEN;

	while (off < n) {
		uint16_t type, len;
		enum mg_stun_err e;

		/* n - off is a multiple of 4, so a header always fits. */
		type = get16(p + off);
		len = get16(p + off + 2);
		if (len > n - off - ATTR_HDR_LEN)
			return MG_STUN_ERR_SHORT;
		if (type == ATTR_FINGERPRINT) {
			if (len != 4 || off + FINGERPRINT_ATTR_LEN != n ||
			    get32(p + off + ATTR_HDR_LEN) != fingerprint(p, off))
				return MG_STUN_ERR_FINGERPRINT;
			return MG_STUN_OK;
		}
		e = fn(type, p + off + ATTR_HDR_LEN, len, ctx);
		if (e != MG_STUN_OK)
			return e;
		/* Padding to 4 is present: n - off is a multiple of 4. */
		off += ATTR_HDR_LEN + ((len + 3u) & ~3u);
	}
	return MG_STUN_OK;
}

static enum mg_stun_err parse(const uint8_t *p, size_t n, uint16_t want_type, attr_fn fn, void *ctx,
			      uint8_t txid[MG_STUN_TXID_LEN])
{
	enum mg_stun_err e = check_header(p, n);

	if (e != MG_STUN_OK)
		return e;
	if (get16(p) != want_type)
		return MG_STUN_ERR_TYPE;
	e = walk_attrs(p, n, fn, ctx);
	if (e == MG_STUN_OK)
		memcpy(txid, p + 8, MG_STUN_TXID_LEN);
	return e;
}

/*
 * Request attributes: comprehension-optional ones (0x8000 and up) are
 * ignored, as RFC 8489 says. Of the comprehension-required ones, those an
 * ICE agent puts in its connectivity checks are known and ignored: we do
 * not authenticate, and a mapping is no secret of the asker's.
 */
static enum mg_stun_err request_attr(uint16_t type, const uint8_t *v, size_t len, void *ctx)
{
	(void)v, (void)len, (void)ctx;
	if (type >= 0x8000)
		return MG_STUN_OK;
	switch (type) {
	case ATTR_USERNAME:
	case ATTR_MESSAGE_INTEGRITY:
	case ATTR_MESSAGE_INTEGRITY_SHA256:
	case ATTR_PRIORITY:
	case ATTR_USE_CANDIDATE:
		return MG_STUN_OK;
	default:
		return MG_STUN_ERR_UNKNOWN_ATTR;
	}
}

enum mg_stun_err mg_stun_parse_request(const uint8_t *p, size_t n, uint8_t txid[MG_STUN_TXID_LEN])
{
	return parse(p, n, MG_STUN_BINDING_REQUEST, request_attr, NULL, txid);
}

struct response_ctx {
	const uint8_t *hdr; /* the message: magic and txid are the XOR key */
	struct mg_sockaddr xor_mapped, mapped;
};

/* An (XOR-)MAPPED-ADDRESS value into *out; key is NULL for the plain one. */
static enum mg_stun_err decode_addr(const uint8_t *v, size_t len, const uint8_t *key,
				    struct mg_sockaddr *out)
{
	size_t alen;

	if (v[1] == FAMILY_V4 && len == ADDR_V4_LEN) {
		out->family = AF_INET;
		alen = 4;
	} else if (v[1] == FAMILY_V6 && len == ADDR_V6_LEN) {
		out->family = AF_INET6;
		alen = 16;
	} else {
		return MG_STUN_ERR_BAD_ADDRESS;
	}
	out->port = get16(v + 2);
	memcpy(out->addr, v + 4, alen);
	if (key) {
		/* key[0..1] is the top half of the magic cookie. */
		out->port ^= get16(key);
		for (size_t i = 0; i < alen; i++)
			out->addr[i] ^= key[i];
	}
	return MG_STUN_OK;
}

/*
 * Response attributes: every address attribute must be well formed; the
 * first of each kind counts (RFC 8489 section 14). Anything else, required
 * or not, is ignored: the server's extras (RESPONSE-ORIGIN, OTHER-ADDRESS,
 * SOFTWARE, MESSAGE-INTEGRITY) change nothing about our mapping.
 */
static enum mg_stun_err response_attr(uint16_t type, const uint8_t *v, size_t len, void *ctx)
{
	struct response_ctx *r = ctx;
	struct mg_sockaddr a = {0};
	enum mg_stun_err e;

	if (type != ATTR_XOR_MAPPED_ADDRESS && type != ATTR_MAPPED_ADDRESS)
		return MG_STUN_OK;
	if (len < 2)
		return MG_STUN_ERR_BAD_ADDRESS;
	e = decode_addr(v, len, type == ATTR_XOR_MAPPED_ADDRESS ? r->hdr + 4 : NULL, &a);
	if (e != MG_STUN_OK)
		return e;
	if (type == ATTR_XOR_MAPPED_ADDRESS && !r->xor_mapped.family)
		r->xor_mapped = a;
	else if (type == ATTR_MAPPED_ADDRESS && !r->mapped.family)
		r->mapped = a;
	return MG_STUN_OK;
}

enum mg_stun_err mg_stun_parse_response(const uint8_t *p, size_t n, uint8_t txid[MG_STUN_TXID_LEN],
					struct mg_sockaddr *mapped)
{
	struct response_ctx r = {.hdr = p};
	enum mg_stun_err e;

	memset(mapped, 0, sizeof(*mapped));
	e = parse(p, n, MG_STUN_BINDING_SUCCESS, response_attr, &r, txid);
	if (e != MG_STUN_OK)
		return e;
	if (r.xor_mapped.family)
		*mapped = r.xor_mapped;
	else if (r.mapped.family)
		*mapped = r.mapped;
	else
		return MG_STUN_ERR_NO_ADDRESS;
	return MG_STUN_OK;
}

static size_t put_header(uint8_t *out, uint16_t type, const uint8_t txid[MG_STUN_TXID_LEN])
{
	put16(out, type);
	put16(out + 2, 0); /* set by put_fingerprint */
	put32(out + 4, MG_STUN_MAGIC);
	memcpy(out + 8, txid, MG_STUN_TXID_LEN);
	return MG_STUN_HDR_LEN;
}

/* An (XOR-)MAPPED-ADDRESS at out; key as for decode_addr. Returns its size. */
static size_t put_addr(uint8_t *out, uint16_t type, const struct mg_sockaddr *a, const uint8_t *key)
{
	size_t alen = a->family == AF_INET ? 4 : 16;

	put16(out, type);
	put16(out + 2, (uint16_t)(4 + alen));
	out[4] = 0;
	out[5] = a->family == AF_INET ? FAMILY_V4 : FAMILY_V6;
	put16(out + 6, key ? a->port ^ get16(key) : a->port);
	for (size_t i = 0; i < alen; i++)
		out[8 + i] = key ? a->addr[i] ^ key[i] : a->addr[i];
	return ATTR_HDR_LEN + 4 + alen;
}

/* Append a FINGERPRINT to the n-byte message at out and set its length. */
static size_t put_fingerprint(uint8_t *out, size_t n)
{
	put16(out + 2, (uint16_t)(n + FINGERPRINT_ATTR_LEN - MG_STUN_HDR_LEN));
	put16(out + n, ATTR_FINGERPRINT);
	put16(out + n + 2, 4);
	put32(out + n + 4, fingerprint(out, n));
	return n + FINGERPRINT_ATTR_LEN;
}

size_t mg_stun_build_request(uint8_t *out, size_t cap, const uint8_t txid[MG_STUN_TXID_LEN])
{
	if (cap < MG_STUN_HDR_LEN + FINGERPRINT_ATTR_LEN)
		return 0;
	return put_fingerprint(out, put_header(out, MG_STUN_BINDING_REQUEST, txid));
}

size_t mg_stun_build_response(uint8_t *out, size_t cap, const uint8_t txid[MG_STUN_TXID_LEN],
			      const struct mg_sockaddr *mapped)
{
	size_t n, need;

	if (mapped->family == AF_INET)
		need = MG_STUN_HDR_LEN + 2 * (ATTR_HDR_LEN + ADDR_V4_LEN) + FINGERPRINT_ATTR_LEN;
	else if (mapped->family == AF_INET6)
		need = MG_STUN_HDR_LEN + ATTR_HDR_LEN + ADDR_V6_LEN + FINGERPRINT_ATTR_LEN;
	else
		return 0;
	if (cap < need)
		return 0;
	n = put_header(out, MG_STUN_BINDING_SUCCESS, txid);
	n += put_addr(out + n, ATTR_XOR_MAPPED_ADDRESS, mapped, out + 4);
	if (mapped->family == AF_INET)
		n += put_addr(out + n, ATTR_MAPPED_ADDRESS, mapped, NULL);
	return put_fingerprint(out, n);
}
