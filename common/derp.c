/* SPDX-License-Identifier: MIT */
/*
 * DERP v2 codec: frames, the ClientInfo/ServerInfo boxes and the HTTP
 * upgrade heads. Wire format as in Tailscale's derp/derp.go and
 * derp/derphttp; the boxes are NaCl box (crypto_box_easy), as Go's nacl/box.
 *
 * Both HTTP parsers first find the end of the head (a blank line within
 * MG_DERP_MAX_HTTP bytes), check its bytes once, then walk its lines; the
 * first line is the request or status line, every other one a header.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "derp.h"
#include "keys.h"

#define INFO_PREFIX_LEN (MG_DERP_KEY_LEN + MG_DERP_NONCE_LEN) /* ClientInfo: key + nonce */
#define SERVER_KEY_BODY (MG_DERP_MAGIC_LEN + MG_DERP_KEY_LEN)
#define PING_LEN	8
#define MAX_VERSION	1000
#define MAX_HOST_LEN	255
#define HEX_KEY_LEN	(2 * MG_DERP_KEY_LEN)
#define MAX_SERVER_INFO (MG_DERP_NONCE_LEN + MG_DERP_BOX_MAC + MG_DERP_MAX_JSON)
#define HTTP_REQ_PREFIX "GET /derp HTTP/1.1\r\nHost: "
#define HTTP_REQ_SUFFIX "\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n"
#define HTTP_FAST_START "Derp-Fast-Start: 1\r\n"
#define HTTP_RESPONSE_FMT                                                                          \
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"             \
	"Derp-Version: 2\r\nDerp-Public-Key: %s\r\n\r\n"

_Static_assert(sizeof(MG_DERP_MAGIC) - 1 == MG_DERP_MAGIC_LEN, "magic is 8 bytes");
_Static_assert(MG_DERP_NONCE_LEN == crypto_box_NONCEBYTES, "nonce length");
_Static_assert(MG_DERP_BOX_MAC == crypto_box_MACBYTES, "box MAC length");
_Static_assert(MG_DERP_KEY_LEN == crypto_box_PUBLICKEYBYTES &&
		   MG_DERP_KEY_LEN == crypto_box_SECRETKEYBYTES,
	       "box key length");
_Static_assert(MG_DERP_MAX_INFO <= MG_DERP_MAX_BODY, "an info frame is a frame");
_Static_assert(MG_DERP_MAX_HTTP < LONG_MAX, "a head length fits a long");
_Static_assert(LONG_MAX - MG_DERP_HDR_LEN >= UINT32_MAX, "a frame length fits a long");

static const char *const err_names[MG_DERP_ERR_COUNT] = {
    [MG_DERP_OK] = "ok",
    [MG_DERP_ERR_SHORT] = "truncated frame body",
    [MG_DERP_ERR_TOO_BIG] = "frame, packet or json over its limit",
    [MG_DERP_ERR_MAGIC] = "server key without magic",
    [MG_DERP_ERR_BOX] = "box does not open",
    [MG_DERP_ERR_JSON] = "not a json object",
    [MG_DERP_ERR_HTTP] = "malformed http head",
    [MG_DERP_ERR_VERSION] = "unsupported protocol version",
};

const char *mg_derp_strerror(enum mg_derp_err e)
{
	if ((unsigned)e >= MG_DERP_ERR_COUNT)
		return "unknown";
	return err_names[e];
}

/* Frames. */

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void mg_derp_put_hdr(uint8_t out[MG_DERP_HDR_LEN], uint8_t type, uint32_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

long mg_derp_frame(const uint8_t *buf, size_t n, uint32_t max_body, uint8_t *type,
		   uint32_t *body_len)
{
	uint32_t len;

	if (n < MG_DERP_HDR_LEN)
		return 0;
	len = get32(buf + 1);
	*type = buf[0];
	*body_len = len;
	if (len > max_body)
		return -1;
	if (len > n - MG_DERP_HDR_LEN)
		return 0;
	return (long)(MG_DERP_HDR_LEN + len);
}

/*
 * Start a frame of type with a body of len bytes in out[0..cap): writes the
 * header and returns the frame's whole length, or 0 if it does not fit.
 * len is bounded by the callers (at most MG_DERP_MAX_BODY).
 */
static size_t frame_start(uint8_t *out, size_t cap, uint8_t type, size_t len)
{
	if (cap < MG_DERP_HDR_LEN || len > cap - MG_DERP_HDR_LEN)
		return 0;
	mg_derp_put_hdr(out, type, (uint32_t)len);
	return MG_DERP_HDR_LEN + len;
}

size_t mg_derp_build_server_key(uint8_t *out, size_t cap, const uint8_t server_pub[32])
{
	size_t n = frame_start(out, cap, MG_DERP_SERVER_KEY, SERVER_KEY_BODY);

	if (n) {
		memcpy(out + MG_DERP_HDR_LEN, MG_DERP_MAGIC, MG_DERP_MAGIC_LEN);
		memcpy(out + MG_DERP_HDR_LEN + MG_DERP_MAGIC_LEN, server_pub, MG_DERP_KEY_LEN);
	}
	return n;
}

size_t mg_derp_build_packet(uint8_t *out, size_t cap, uint8_t type, const uint8_t key[32],
			    const uint8_t *pkt, size_t len)
{
	size_t n;

	if ((type != MG_DERP_SEND_PACKET && type != MG_DERP_RECV_PACKET) ||
	    len > MG_DERP_MAX_PACKET || (len && !pkt))
		return 0;
	n = frame_start(out, cap, type, MG_DERP_KEY_LEN + len);
	if (n) {
		memcpy(out + MG_DERP_HDR_LEN, key, MG_DERP_KEY_LEN);
		if (len)
			memcpy(out + MG_DERP_HDR_LEN + MG_DERP_KEY_LEN, pkt, len);
	}
	return n;
}

size_t mg_derp_build_keepalive(uint8_t *out, size_t cap)
{
	return frame_start(out, cap, MG_DERP_KEEP_ALIVE, 0);
}

size_t mg_derp_build_ping(uint8_t *out, size_t cap, uint8_t type, const uint8_t data[8])
{
	size_t n;

	if (type != MG_DERP_PING && type != MG_DERP_PONG)
		return 0;
	n = frame_start(out, cap, type, PING_LEN);
	if (n)
		memcpy(out + MG_DERP_HDR_LEN, data, PING_LEN);
	return n;
}

size_t mg_derp_build_note_preferred(uint8_t *out, size_t cap, bool preferred)
{
	size_t n = frame_start(out, cap, MG_DERP_NOTE_PREFERRED, 1);

	if (n)
		out[MG_DERP_HDR_LEN] = preferred ? 1 : 0;
	return n;
}

/* The reason byte is always written, as Tailscale's server does. */
size_t mg_derp_build_peer_gone(uint8_t *out, size_t cap, const uint8_t key[32], uint8_t reason)
{
	size_t n = frame_start(out, cap, MG_DERP_PEER_GONE, MG_DERP_KEY_LEN + 1);

	if (n) {
		memcpy(out + MG_DERP_HDR_LEN, key, MG_DERP_KEY_LEN);
		out[MG_DERP_HDR_LEN + MG_DERP_KEY_LEN] = reason;
	}
	return n;
}

size_t mg_derp_build_peer_present(uint8_t *out, size_t cap, const uint8_t key[32])
{
	size_t n = frame_start(out, cap, MG_DERP_PEER_PRESENT, MG_DERP_KEY_LEN);

	if (n)
		memcpy(out + MG_DERP_HDR_LEN, key, MG_DERP_KEY_LEN);
	return n;
}

/*
 * A frame of type whose body is prefix (plen bytes), nonce, then
 * crypto_box_easy(json, nonce, peer_pub, priv). 0 if json is NULL or over
 * MG_DERP_MAX_JSON, if the frame does not fit, or if the keys make a
 * degenerate shared secret (libsodium refuses low-order points).
 */
static size_t build_info(uint8_t *out, size_t cap, uint8_t type, const uint8_t *prefix, size_t plen,
			 const uint8_t nonce[MG_DERP_NONCE_LEN], const uint8_t peer_pub[32],
			 const uint8_t priv[32], const char *json)
{
	size_t jlen, n;
	uint8_t *p;

	if (!json)
		return 0;
	jlen = strnlen(json, MG_DERP_MAX_JSON + 1);
	if (jlen > MG_DERP_MAX_JSON)
		return 0;
	n = frame_start(out, cap, type, plen + MG_DERP_NONCE_LEN + MG_DERP_BOX_MAC + jlen);
	if (!n)
		return 0;
	p = out + MG_DERP_HDR_LEN;
	if (plen)
		memcpy(p, prefix, plen);
	memcpy(p + plen, nonce, MG_DERP_NONCE_LEN);
	if (crypto_box_easy(p + plen + MG_DERP_NONCE_LEN, (const uint8_t *)json, jlen, nonce,
			    peer_pub, priv) != 0) {
		sodium_memzero(out, n);
		return 0;
	}
	return n;
}

size_t mg_derp_build_client_info(uint8_t *out, size_t cap, const uint8_t client_pub[32],
				 const uint8_t client_priv[32], const uint8_t server_pub[32],
				 const uint8_t nonce[MG_DERP_NONCE_LEN], const char *json)
{
	return build_info(out, cap, MG_DERP_CLIENT_INFO, client_pub, MG_DERP_KEY_LEN, nonce,
			  server_pub, client_priv, json);
}

size_t mg_derp_build_server_info(uint8_t *out, size_t cap, const uint8_t server_priv[32],
				 const uint8_t client_pub[32],
				 const uint8_t nonce[MG_DERP_NONCE_LEN], const char *json)
{
	return build_info(out, cap, MG_DERP_SERVER_INFO, NULL, 0, nonce, client_pub, server_priv,
			  json);
}

/* Parsers. */

enum mg_derp_err mg_derp_parse_server_key(const uint8_t *body, size_t n, uint8_t server_pub[32])
{
	if (n < SERVER_KEY_BODY)
		return MG_DERP_ERR_SHORT;
	if (memcmp(body, MG_DERP_MAGIC, MG_DERP_MAGIC_LEN))
		return MG_DERP_ERR_MAGIC;
	memcpy(server_pub, body + MG_DERP_MAGIC_LEN, MG_DERP_KEY_LEN);
	return MG_DERP_OK;
}

/*
 * The "version" member of obj: 0 when absent, VERSION unless an integer in
 * 0..MAX_VERSION.
 */
static enum mg_derp_err json_version(json_t *obj, int *version)
{
	json_t *v = json_object_get(obj, "version");
	json_int_t i;

	*version = 0;
	if (!v)
		return MG_DERP_OK;
	if (!json_is_integer(v))
		return MG_DERP_ERR_VERSION;
	i = json_integer_value(v);
	if (i < 0 || i > MAX_VERSION)
		return MG_DERP_ERR_VERSION;
	*version = (int)i;
	return MG_DERP_OK;
}

/* Check that plain[0..n) is one JSON object and, unless version is NULL,
 * set *version as json_version does. */
static enum mg_derp_err check_json(const uint8_t *plain, size_t n, int *version)
{
	json_t *root = json_loadb((const char *)plain, n, JSON_REJECT_DUPLICATES, NULL);
	enum mg_derp_err e = MG_DERP_OK;

	if (!json_is_object(root))
		e = MG_DERP_ERR_JSON;
	else if (version)
		e = json_version(root, version);
	json_decref(root);
	return e;
}

/*
 * Open nonce + box (body[0..n), n already bounded by the caller) from
 * peer_pub to priv and check the plaintext (version as for check_json); on
 * success copy it to json.
 * The plaintext is wiped from the stack whatever happens.
 */
static enum mg_derp_err open_info(const uint8_t *body, size_t n, const uint8_t peer_pub[32],
				  const uint8_t priv[32], int *version, char *json, size_t json_cap)
{
	uint8_t plain[MG_DERP_MAX_JSON];
	size_t plen = n - MG_DERP_NONCE_LEN - MG_DERP_BOX_MAC;
	enum mg_derp_err e;

	if (crypto_box_open_easy(plain, body + MG_DERP_NONCE_LEN, n - MG_DERP_NONCE_LEN, body,
				 peer_pub, priv) != 0) {
		e = MG_DERP_ERR_BOX;
		goto out;
	}
	e = check_json(plain, plen, version);
	if (e == MG_DERP_OK && json_cap) {
		size_t c = plen < json_cap - 1 ? plen : json_cap - 1;

		memcpy(json, plain, c);
		json[c] = '\0';
	}
out:
	sodium_memzero(plain, sizeof(plain));
	return e;
}

enum mg_derp_err mg_derp_parse_client_info(const uint8_t *body, size_t n,
					   const uint8_t server_priv[32], uint8_t client_pub[32],
					   int *version, char *json, size_t json_cap)
{
	enum mg_derp_err e;
	int v = 0;

	*version = 0;
	if (json_cap)
		json[0] = '\0';
	if (n < INFO_PREFIX_LEN + MG_DERP_BOX_MAC)
		return MG_DERP_ERR_SHORT;
	if (n > MG_DERP_MAX_INFO)
		return MG_DERP_ERR_TOO_BIG;
	e = open_info(body + MG_DERP_KEY_LEN, n - MG_DERP_KEY_LEN, body, server_priv, &v, json,
		      json_cap);
	if (e != MG_DERP_OK)
		return e;
	memcpy(client_pub, body, MG_DERP_KEY_LEN);
	*version = v;
	return MG_DERP_OK;
}

enum mg_derp_err mg_derp_parse_server_info(const uint8_t *body, size_t n,
					   const uint8_t client_priv[32],
					   const uint8_t server_pub[32], char *json,
					   size_t json_cap)
{
	if (json_cap)
		json[0] = '\0';
	if (n < MG_DERP_NONCE_LEN + MG_DERP_BOX_MAC)
		return MG_DERP_ERR_SHORT;
	if (n > MAX_SERVER_INFO)
		return MG_DERP_ERR_TOO_BIG;
	/* The version is not checked: a client takes what the server states. */
	return open_info(body, n, server_pub, client_priv, NULL, json, json_cap);
}

enum mg_derp_err mg_derp_parse_packet(const uint8_t *body, size_t n, uint8_t key[32],
				      const uint8_t **pkt, size_t *len)
{
	if (n < MG_DERP_KEY_LEN)
		return MG_DERP_ERR_SHORT;
	if (n - MG_DERP_KEY_LEN > MG_DERP_MAX_PACKET)
		return MG_DERP_ERR_TOO_BIG;
	memcpy(key, body, MG_DERP_KEY_LEN);
	*pkt = body + MG_DERP_KEY_LEN;
	*len = n - MG_DERP_KEY_LEN;
	return MG_DERP_OK;
}

enum mg_derp_err mg_derp_parse_peer_gone(const uint8_t *body, size_t n, uint8_t key[32],
					 uint8_t *reason)
{
	if (n < MG_DERP_KEY_LEN)
		return MG_DERP_ERR_SHORT;
	memcpy(key, body, MG_DERP_KEY_LEN);
	*reason = n > MG_DERP_KEY_LEN ? body[MG_DERP_KEY_LEN] : MG_DERP_GONE_DISCONNECTED;
	return MG_DERP_OK;
}

enum mg_derp_err mg_derp_parse_ping(const uint8_t *body, size_t n, uint8_t data[8])
{
	if (n < PING_LEN)
		return MG_DERP_ERR_SHORT;
	memcpy(data, body, PING_LEN);
	return MG_DERP_OK;
}

/* HTTP. */

static bool host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr(".:-[]_", c) != NULL);
}

size_t mg_derp_http_request(char *out, size_t cap, const char *host, bool fast_start)
{
	size_t hlen;
	int n;

	if (!host)
		return 0;
	hlen = strnlen(host, MAX_HOST_LEN + 1);
	if (hlen == 0 || hlen > MAX_HOST_LEN)
		return 0;
	for (size_t i = 0; i < hlen; i++)
		if (!host_char_ok(host[i]))
			return 0;
	n = snprintf(out, cap, "%s%s%s%s\r\n", HTTP_REQ_PREFIX, host, HTTP_REQ_SUFFIX,
		     fast_start ? HTTP_FAST_START : "");
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

size_t mg_derp_http_response(char *out, size_t cap, const uint8_t server_pub[32])
{
	char hex[HEX_KEY_LEN + 1];
	int n;

	mg_key_to_hex(server_pub, hex);
	n = snprintf(out, cap, HTTP_RESPONSE_FMT, hex);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

/* A line of a head, without its line ending. */
struct line {
	const char *s;
	size_t len;
};

/*
 * The length of the head at buf[0..n) through its blank line (lines end in
 * "\n" or "\r\n"): 0 if there is none yet, -1 if there is none within
 * MG_DERP_MAX_HTTP bytes.
 */
static long head_len(const char *buf, size_t n)
{
	size_t lim = n < MG_DERP_MAX_HTTP ? n : MG_DERP_MAX_HTTP, start = 0;

	for (size_t i = 0; i < lim; i++) {
		if (buf[i] != '\n')
			continue;
		if (i == start || (i == start + 1 && buf[start] == '\r'))
			return (long)(i + 1);
		start = i + 1;
	}
	return n > MG_DERP_MAX_HTTP ? -1 : 0;
}

/* No control characters but tab, and CR only before LF. */
static bool head_chars_ok(const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\r' ? i + 1 == n || buf[i + 1] != '\n'
			      : (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
			return false;
	}
	return true;
}

/* The next line of head[0..n) at *off, which must be < n; advances *off. */
static struct line next_line(const char *head, size_t n, size_t *off)
{
	const char *s = head + *off;
	const char *nl = memchr(s, '\n', n - *off);
	struct line l = {s, (size_t)(nl - s)};

	/* head_len found a blank line, so there is always a '\n'. */
	*off += l.len + 1;
	if (l.len && s[l.len - 1] == '\r')
		l.len--;
	return l;
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* s[0..n) equals lit, ignoring ASCII case. */
static bool eq_ci(const char *s, size_t n, const char *lit)
{
	if (strlen(lit) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(s[i]) != ascii_lower(lit[i]))
			return false;
	return true;
}

static bool eq(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* RFC 9110 tchar: the characters of a header name. */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* A header line split into name and value (without surrounding blanks);
 * false if the name is empty or not a token or there is no colon. */
static bool split_header(struct line l, struct line *name, struct line *value)
{
	const char *colon = memchr(l.s, ':', l.len);
	const char *v, *end = l.s + l.len;

	if (!colon || colon == l.s)
		return false;
	for (const char *p = l.s; p < colon; p++)
		if (!is_tchar(*p))
			return false;
	for (v = colon + 1; v < end && is_ows(*v); v++)
		;
	while (end > v && is_ows(end[-1]))
		end--;
	*name = (struct line){l.s, (size_t)(colon - l.s)};
	*value = (struct line){v, (size_t)(end - v)};
	return true;
}

/* "GET <target> HTTP/1.0|1.1"; *path is target without its query. */
static bool parse_request_line(struct line l, struct line *path)
{
	const char *sp1 = memchr(l.s, ' ', l.len), *sp2, *q;
	size_t rest;

	if (!sp1 || !eq(l.s, (size_t)(sp1 - l.s), "GET"))
		return false;
	rest = l.len - (size_t)(sp1 + 1 - l.s);
	sp2 = memchr(sp1 + 1, ' ', rest);
	if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
		return false;
	for (const char *p = sp1 + 1; p < sp2; p++)
		if (*p == '\t')
			return false;
	rest = l.len - (size_t)(sp2 + 1 - l.s);
	if (!eq(sp2 + 1, rest, "HTTP/1.1") && !eq(sp2 + 1, rest, "HTTP/1.0"))
		return false;
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	*path = (struct line){sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1)};
	return true;
}

/* The next header line of a head of len bytes: 1 with name and value, 0 at
 * the blank line (or the end), -1 for a line that is no header. */
static int next_header(const char *buf, size_t len, size_t *off, struct line *name,
		       struct line *value)
{
	if (*off >= len)
		return 0;
	struct line l = next_line(buf, len, off);
	if (l.len == 0)
		return 0;
	return split_header(l, name, value) ? 1 : -1;
}

/* Find and check a head: its length, 0 or -1 as for the parsers. */
static long find_head(const char *buf, size_t n)
{
	long len = head_len(buf, n);

	if (len > 0 && !head_chars_ok(buf, (size_t)len))
		return -1;
	return len;
}

long mg_derp_http_parse_request(const char *buf, size_t n, struct mg_derp_http_req *r)
{
	struct mg_derp_http_req req = {0};
	long len = find_head(buf, n);
	size_t off = 0;
	struct line path, name, value;
	bool upgrade = false;
	int h;

	memset(r, 0, sizeof(*r));
	if (len <= 0)
		return len;
	if (!parse_request_line(next_line(buf, (size_t)len, &off), &path))
		return -1;
	while ((h = next_header(buf, (size_t)len, &off, &name, &value)) > 0) {
		if (eq_ci(name.s, name.len, "Upgrade"))
			upgrade |= eq_ci(value.s, value.len, "DERP");
		else if (eq_ci(name.s, name.len, "Derp-Fast-Start"))
			req.fast_start |= eq(value.s, value.len, "1");
	}
	if (h < 0)
		return -1;
	req.upgrade_derp = upgrade && eq(path.s, path.len, "/derp");
	req.probe = eq(path.s, path.len, "/derp/probe") || eq(path.s, path.len, "/generate_204");
	req.metrics = eq(path.s, path.len, "/metrics");
	*r = req;
	return len;
}

/* "HTTP/1.x NNN[ reason]" */
static bool parse_status_line(struct line l, int *status)
{
	const char *s = l.s;

	if (l.len < 12 || memcmp(s, "HTTP/1.", 7) || s[7] < '0' || s[7] > '9' || s[8] != ' ')
		return false;
	for (int i = 9; i < 12; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	if (l.len > 12 && s[12] != ' ')
		return false;
	*status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	return true;
}

/* Exactly HEX_KEY_LEN hex digits, either case. */
static bool parse_hex_key(struct line v, uint8_t key[32])
{
	size_t bin_len = 0;
	const char *end = NULL;

	return v.len == HEX_KEY_LEN &&
	       sodium_hex2bin(key, MG_DERP_KEY_LEN, v.s, v.len, NULL, &bin_len, &end) == 0 &&
	       bin_len == MG_DERP_KEY_LEN && end == v.s + v.len;
}

long mg_derp_http_parse_response(const char *buf, size_t n, int *status, bool *has_key,
				 uint8_t server_pub[32])
{
	long len = find_head(buf, n);
	size_t off = 0;
	struct line name, value;
	uint8_t key[MG_DERP_KEY_LEN];
	bool found = false;
	int code, h;

	*status = 0;
	*has_key = false;
	if (len <= 0)
		return len;
	if (!parse_status_line(next_line(buf, (size_t)len, &off), &code))
		return -1;
	while ((h = next_header(buf, (size_t)len, &off, &name, &value)) > 0)
		if (eq_ci(name.s, name.len, "Derp-Public-Key") && parse_hex_key(value, key)) {
			memcpy(server_pub, key, MG_DERP_KEY_LEN);
			found = true;
		}
	if (h < 0)
		return -1;
	*status = code;
	*has_key = found;
	return len;
}
