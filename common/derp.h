/* SPDX-License-Identifier: MIT */
/*
 * DERP (Designated Encrypted Relay for Packets), Tailscale's relay protocol,
 * version 2: when two nodes cannot reach each other over UDP, each keeps a
 * TCP connection to a relay and sends WireGuard datagrams through it,
 * addressed by the destination's node (WireGuard) public key. The relay sees
 * only ciphertext.
 *
 * The connection starts as HTTP/1.1: "GET /derp" with "Upgrade: DERP"; the
 * server answers "101 Switching Protocols" (or, when the client sent
 * "Derp-Fast-Start: 1", nothing) and then frames flow both ways. A frame is
 * a 1-byte type, a 4-byte big-endian body length and the body.
 *
 *   server -> client  ServerKey   magic "DERP🔑" (8 B) + server public key (32 B)
 *   client -> server  ClientInfo  client public key (32 B) + nonce (24 B) +
 *                                 NaCl box (client -> server) of a JSON object
 *   server -> client  ServerInfo  nonce (24 B) + NaCl box (server -> client) of JSON
 *   client -> server  SendPacket  destination key (32 B) + packet
 *   server -> client  RecvPacket  source key (32 B) + packet
 *   either            KeepAlive   empty; Ping/Pong 8 B of data
 *   server -> client  PeerGone    key (32 B) [+ reason (1 B)]; PeerPresent key (32 B) [+ more]
 *
 * The ClientInfo box proves the client holds the private key of the public key
 * it claims; a client that pins the server's key checks ServerKey against it.
 * NaCl box is crypto_box_easy (X25519, XSalsa20-Poly1305), as Go's
 * golang.org/x/crypto/nacl/box, so meshgate and Tailscale's derper and
 * clients agree.
 *
 * Pure functions of bytes: no sockets, no clock, no allocation; nonces come
 * from the caller. Every parser takes untrusted bytes and a length and never
 * reads past it.
 */
#ifndef MG_DERP_H
#define MG_DERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MG_DERP_MAGIC	  "DERP\xf0\x9f\x94\x91"
#define MG_DERP_MAGIC_LEN 8
#define MG_DERP_KEY_LEN	  32
#define MG_DERP_NONCE_LEN 24 /* crypto_box_NONCEBYTES */
#define MG_DERP_BOX_MAC	  16 /* crypto_box_MACBYTES */
#define MG_DERP_HDR_LEN	  5  /* type + 32-bit length */
#define MG_DERP_VERSION	  2
/* Largest packet a SendPacket/RecvPacket carries, and so the largest frame
 * body accepted: key + packet. ClientInfo/ServerInfo JSON is bounded much
 * lower (MG_DERP_MAX_JSON). */
#define MG_DERP_MAX_PACKET 65536u
#define MG_DERP_MAX_BODY   (MG_DERP_KEY_LEN + MG_DERP_MAX_PACKET)
#define MG_DERP_MAX_JSON   4096u
/* Largest ClientInfo/ServerInfo body */
#define MG_DERP_MAX_INFO (MG_DERP_KEY_LEN + MG_DERP_NONCE_LEN + MG_DERP_BOX_MAC + MG_DERP_MAX_JSON)
/* Largest HTTP request or response head either side accepts. */
#define MG_DERP_MAX_HTTP 4096u

enum mg_derp_frame_type {
	MG_DERP_SERVER_KEY = 0x01,
	MG_DERP_CLIENT_INFO = 0x02,
	MG_DERP_SERVER_INFO = 0x03,
	MG_DERP_SEND_PACKET = 0x04,
	MG_DERP_RECV_PACKET = 0x05,
	MG_DERP_KEEP_ALIVE = 0x06,
	MG_DERP_NOTE_PREFERRED = 0x07,
	MG_DERP_PEER_GONE = 0x08,
	MG_DERP_PEER_PRESENT = 0x09,
	MG_DERP_FORWARD_PACKET = 0x0a,
	MG_DERP_WATCH_CONNS = 0x10,
	MG_DERP_CLOSE_PEER = 0x11,
	MG_DERP_PING = 0x12,
	MG_DERP_PONG = 0x13,
	MG_DERP_HEALTH = 0x14,
	MG_DERP_RESTARTING = 0x15,
};

/* PeerGone reasons */
#define MG_DERP_GONE_DISCONNECTED 0x00 /* the peer was connected and left */
#define MG_DERP_GONE_NOT_HERE	  0x01 /* the server has no connection for that key */

/* Why bytes were refused; one counter each. */
enum mg_derp_err {
	MG_DERP_OK = 0,
	MG_DERP_ERR_SHORT,   /* body shorter than its type requires */
	MG_DERP_ERR_TOO_BIG, /* frame body, packet or JSON over its limit */
	MG_DERP_ERR_MAGIC,   /* ServerKey without the magic */
	MG_DERP_ERR_BOX,     /* NaCl box does not open (wrong key, tampered) */
	MG_DERP_ERR_JSON,    /* box opened, contents are not a JSON object we accept */
	MG_DERP_ERR_HTTP,    /* malformed HTTP head, or not a DERP upgrade */
	MG_DERP_ERR_VERSION, /* a protocol version we do not speak */
};
#define MG_DERP_ERR_COUNT (MG_DERP_ERR_VERSION + 1)

const char *mg_derp_strerror(enum mg_derp_err e);

/* Frames. */

/* Writes the 5-byte header of a frame of type and body length len. */
void mg_derp_put_hdr(uint8_t out[MG_DERP_HDR_LEN], uint8_t type, uint32_t len);

/*
 * A frame at the start of buf[0..n): returns its whole length (header +
 * body) when all of it is there, 0 when more bytes are needed, or -1 when
 * the body length is over max_body (the connection cannot continue: the
 * caller closes it). *type and *body_len are set whenever the header is
 * there (n >= 5).
 */
long mg_derp_frame(const uint8_t *buf, size_t n, uint32_t max_body, uint8_t *type,
		   uint32_t *body_len);

/* Encoders write one whole frame (header included) and return its length,
 * or 0 if cap is too small or an input is over its limit (or a type other
 * than the two named, or json NULL). */
size_t mg_derp_build_server_key(uint8_t *out, size_t cap, const uint8_t server_pub[32]);
size_t mg_derp_build_packet(uint8_t *out, size_t cap, uint8_t type /* SEND or RECV_PACKET */,
			    const uint8_t key[32], const uint8_t *pkt, size_t len);
size_t mg_derp_build_keepalive(uint8_t *out, size_t cap);
size_t mg_derp_build_ping(uint8_t *out, size_t cap, uint8_t type /* PING or PONG */,
			  const uint8_t data[8]);
size_t mg_derp_build_note_preferred(uint8_t *out, size_t cap, bool preferred);
size_t mg_derp_build_peer_gone(uint8_t *out, size_t cap, const uint8_t key[32], uint8_t reason);
size_t mg_derp_build_peer_present(uint8_t *out, size_t cap, const uint8_t key[32]);

/*
 * ClientInfo: our public key, then nonce + crypto_box_easy(json, nonce,
 * server_pub, client_priv). json is NUL-terminated, at most MG_DERP_MAX_JSON
 * bytes. ServerInfo: nonce + crypto_box_easy(json, nonce, client_pub,
 * server_priv).
 */
size_t mg_derp_build_client_info(uint8_t *out, size_t cap, const uint8_t client_pub[32],
				 const uint8_t client_priv[32], const uint8_t server_pub[32],
				 const uint8_t nonce[MG_DERP_NONCE_LEN], const char *json);
size_t mg_derp_build_server_info(uint8_t *out, size_t cap, const uint8_t server_priv[32],
				 const uint8_t client_pub[32],
				 const uint8_t nonce[MG_DERP_NONCE_LEN], const char *json);

/* Decoders take a frame's body (after the 5-byte header). */

/* ServerKey: magic + key; bytes after the key are allowed (future fields). */
enum mg_derp_err mg_derp_parse_server_key(const uint8_t *body, size_t n, uint8_t server_pub[32]);

/*
 * ClientInfo, opened with the server's private key. On success
 * client_pub is the key the client proved it holds, *version the JSON's
 * "version" member (0 when absent; MG_DERP_ERR_VERSION when it is not an
 * integer in 0..1000) and json (NUL-terminated, truncated to json_cap - 1)
 * the plaintext. The plaintext must be a JSON object (MG_DERP_ERR_JSON).
 * On any error client_pub is untouched and json is "" (json may be NULL
 * when json_cap is 0; the same holds for ServerInfo).
 */
enum mg_derp_err mg_derp_parse_client_info(const uint8_t *body, size_t n,
					   const uint8_t server_priv[32], uint8_t client_pub[32],
					   int *version, char *json, size_t json_cap);
/* ServerInfo, opened with the client's private key and the server's key
 * (from ServerKey). */
enum mg_derp_err mg_derp_parse_server_info(const uint8_t *body, size_t n,
					   const uint8_t client_priv[32],
					   const uint8_t server_pub[32], char *json,
					   size_t json_cap);

/* SendPacket or RecvPacket: *pkt points into body (no copy). A packet of
 * length 0 is allowed; one over MG_DERP_MAX_PACKET is not. */
enum mg_derp_err mg_derp_parse_packet(const uint8_t *body, size_t n, uint8_t key[32],
				      const uint8_t **pkt, size_t *len);
/* PeerGone: reason MG_DERP_GONE_DISCONNECTED when the byte is absent. */
enum mg_derp_err mg_derp_parse_peer_gone(const uint8_t *body, size_t n, uint8_t key[32],
					 uint8_t *reason);
/* Ping or Pong: exactly 8 bytes are used; more are allowed and ignored. */
enum mg_derp_err mg_derp_parse_ping(const uint8_t *body, size_t n, uint8_t data[8]);

/* HTTP upgrade. */

/* The client's request for host (as for a Host header, e.g. "10.0.0.1:3340"),
 * path "/derp". Returns its length (no NUL counted; one is written, so cap
 * must be at least length + 1), 0 if cap is too small or host is empty,
 * longer than 255 or has characters other than [A-Za-z0-9.:_[]-]. */
size_t mg_derp_http_request(char *out, size_t cap, const char *host, bool fast_start);

struct mg_derp_http_req {
	bool upgrade_derp; /* GET /derp with Upgrade: DERP (case-insensitive value) */
	bool fast_start;   /* Derp-Fast-Start: 1 */
	bool probe;	   /* GET /derp/probe or /generate_204: answer 200/204, close */
	bool metrics;	   /* GET /metrics */
};

/*
 * The head of an HTTP request in buf[0..n): returns the head's length
 * (through the blank line) when it is complete, 0 when more is needed, -1
 * when it is malformed, over MG_DERP_MAX_HTTP, not HTTP/1.x or not a GET.
 * Unknown paths parse (all flags false): the server answers 404.
 */
long mg_derp_http_parse_request(const char *buf, size_t n, struct mg_derp_http_req *r);

/* The server's "101 Switching Protocols" with Upgrade, Connection,
 * Derp-Version and Derp-Public-Key (lowercase hex). Returns its length (NUL
 * written, not counted) or 0. */
size_t mg_derp_http_response(char *out, size_t cap, const uint8_t server_pub[32]);

/*
 * The head of the server's response: returns its length when complete, 0
 * when more is needed, -1 when malformed or over MG_DERP_MAX_HTTP. *status
 * is the status code; if a Derp-Public-Key header with 64 hex digits is
 * there, *has_key is set and server_pub filled.
 */
long mg_derp_http_parse_response(const char *buf, size_t n, int *status, bool *has_key,
				 uint8_t server_pub[32]);

#endif /* MG_DERP_H */
