/* SPDX-License-Identifier: MIT */
/*
 * The protocol, as the server sees it: the HTTP request head (the DERP
 * upgrade, or a probe, /metrics, 404, 400), ClientInfo, then frames. All
 * wire formats are common/derp.c's; this file decides what to do with them.
 *
 * A connection's bytes arrive here already read (derpd_consume); answers
 * are queued (derpd_conn_queue_*) and written when the loop flushes.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "derpd.h"
#include "keys.h"
#include "log.h"

#define STR_(x) #x
#define STR(x)	STR_(x)

/* We answer every client as the version we speak, whatever it sent. */
static const char server_info_json[] = "{\"version\":" STR(MG_DERP_VERSION) "}";

#define CLOSE_HDR "Connection: close\r\n\r\n"
static const char resp_probe[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" CLOSE_HDR;
/* No Content-Length: a 204 must not carry one (RFC 9110, 8.6). */
static const char resp_204[] = "HTTP/1.1 204 No Content\r\n" CLOSE_HDR;
static const char resp_404[] = "HTTP/1.1 404 Not Found\r\n"
			       "Content-Type: text/plain; charset=utf-8\r\n"
			       "Content-Length: 10\r\n" CLOSE_HDR "Not Found\n";
static const char resp_400[] = "HTTP/1.1 400 Bad Request\r\n"
			       "Content-Type: text/plain; charset=utf-8\r\n"
			       "Content-Length: 12\r\n" CLOSE_HDR "Bad Request\n";

#define METRICS_MAX 16384

static const char *peer_str(const struct conn *c, char buf[MG_SOCKADDR_STRLEN])
{
	return mg_sockaddr_fmt(&c->peer, buf, MG_SOCKADDR_STRLEN);
}

/* HTTP. */

/* Answer a plain request, then close once the client has it. */
static void answer(struct derpd *d, struct conn *c, const void *resp, size_t len)
{
	c->state = CONN_LINGER;
	derpd_conn_rearm(d, c, &d->handshakes, DERPD_HANDSHAKE_MS);
	derpd_conn_queue_ctl(d, c, resp, len);
}

static void answer_metrics(struct derpd *d, struct conn *c)
{
	static char body[METRICS_MAX]; /* one thread; too big for the stack */
	char head[160];
	size_t n = derpd_metrics_render(d, body, sizeof(body));
	int h = snprintf(head, sizeof(head),
			 "HTTP/1.1 200 OK\r\n"
			 "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
			 "Content-Length: %zu\r\n" CLOSE_HDR,
			 n);

	answer(d, c, head, (size_t)h);
	derpd_conn_queue_ctl(d, c, body, n);
}

/* The parser has one flag for both probe paths; they differ in status. */
static bool is_generate_204(const char *buf, size_t n)
{
	static const char line[] = "GET /generate_204";
	size_t l = sizeof(line) - 1;

	return n > l && !memcmp(buf, line, l) && (buf[l] == ' ' || buf[l] == '?');
}

/* "GET /derp", Upgrade: DERP: the 101 (unless fast start), then ServerKey. */
static void upgrade(struct derpd *d, struct conn *c, bool fast_start)
{
	char resp[512];
	uint8_t frame[MG_DERP_HDR_LEN + MG_DERP_MAGIC_LEN + MG_DERP_KEY_LEN];
	size_t n;

	if (!fast_start) {
		n = mg_derp_http_response(resp, sizeof(resp), d->pub);
		derpd_conn_queue_ctl(d, c, resp, n);
	}
	n = mg_derp_build_server_key(frame, sizeof(frame), d->pub);
	derpd_conn_queue_ctl(d, c, frame, n);
	c->state = CONN_INFO;
	derpd_conn_rearm(d, c, &d->handshakes, DERPD_HANDSHAKE_MS);
}

/* Returns the head's length, 0 while it is incomplete, or n when the
 * connection is done with input. */
static long http_head(struct derpd *d, struct conn *c, const uint8_t *buf, size_t n)
{
	const char *s = (const char *)buf;
	struct mg_derp_http_req req;
	char addr[MG_SOCKADDR_STRLEN];
	long r = mg_derp_http_parse_request(s, n, &req);

	if (r == 0 && n < MG_DERP_MAX_HTTP)
		return 0;
	if (r <= 0) {
		d->c.rejects[REJECT_BAD_HTTP]++;
		mg_log(LOG_DEBUG, "bad HTTP request from %s", peer_str(c, addr));
		answer(d, c, resp_400, sizeof(resp_400) - 1);
		return (long)n;
	}
	if (req.upgrade_derp) {
		mg_log(LOG_DEBUG, "DERP upgrade from %s%s", peer_str(c, addr),
		       req.fast_start ? " (fast start)" : "");
		upgrade(d, c, req.fast_start);
		return r;
	}
	if (req.probe) {
		d->c.http[HTTP_PROBE]++;
		if (is_generate_204(s, n))
			answer(d, c, resp_204, sizeof(resp_204) - 1);
		else
			answer(d, c, resp_probe, sizeof(resp_probe) - 1);
	} else if (req.metrics) {
		d->c.http[HTTP_METRICS]++;
		answer_metrics(d, c);
	} else {
		d->c.http[HTTP_NOT_FOUND]++;
		answer(d, c, resp_404, sizeof(resp_404) - 1);
	}
	return (long)n;
}

/* ClientInfo. */

static void register_client(struct derpd *d, struct conn *c, const uint8_t key[32], int version)
{
	uint8_t nonce[MG_DERP_NONCE_LEN];
	uint8_t
	    frame[MG_DERP_HDR_LEN + MG_DERP_NONCE_LEN + MG_DERP_BOX_MAC + sizeof(server_info_json)];
	char b64[MG_KEY_B64_LEN + 1], addr[MG_SOCKADDR_STRLEN];
	struct conn *old = derpd_registry_find(&d->reg, key);
	size_t n;

	if (!old && d->n_clients >= d->max_clients) {
		derpd_conn_close(d, c, REJECT_MAX_CLIENTS, NULL);
		return;
	}
	randombytes_buf(nonce, sizeof(nonce));
	n = mg_derp_build_server_info(frame, sizeof(frame), d->priv, key, nonce, server_info_json);
	if (old)
		derpd_conn_close(d, old, REJECT_REPLACED, "replaced by a newer connection");
	memcpy(c->key, key, MG_DERP_KEY_LEN);
	mg_key_to_base64(key, b64);
	snprintf(c->name, sizeof(c->name), "[%.5s]", b64);
	derpd_registry_add(&d->reg, c);
	c->state = CONN_CLIENT;
	d->n_clients++;
	derpd_conn_rearm(d, c, &d->clients, DERPD_KEEPALIVE_MS);
	derpd_conn_queue_ctl(d, c, frame, n);
	mg_log(LOG_INFO, "client %s connected from %s (version %d, %u clients)", c->name,
	       peer_str(c, addr), version, d->n_clients);
}

static void client_info(struct derpd *d, struct conn *c, uint8_t type, const uint8_t *body,
			uint32_t len)
{
	/* The JSON is not used; it may hold a mesh key, so it is wiped. */
	char json[MG_DERP_MAX_JSON + 1], why[64];
	uint8_t key[MG_DERP_KEY_LEN];
	enum mg_derp_err e;
	int version = 0;

	if (type != MG_DERP_CLIENT_INFO) {
		snprintf(why, sizeof(why), "first frame of type 0x%02x", type);
		derpd_conn_close(d, c, REJECT_NOT_CLIENT_INFO, why);
		return;
	}
	e = mg_derp_parse_client_info(body, len, d->priv, key, &version, json, sizeof(json));
	sodium_memzero(json, sizeof(json));
	if (e != MG_DERP_OK) {
		derpd_conn_close(d, c, REJECT_CLIENT_INFO, mg_derp_strerror(e));
		return;
	}
	register_client(d, c, key, version);
}

/* Frames from a client. */

/* Remember that src sent to dst, for PeerGone when dst leaves. */
static void note_sender(struct derpd *d, struct conn *dst, const uint8_t src[32])
{
	struct key_seen *s = dst->senders, *oldest = &s[0];

	for (int i = 0; i < DERPD_RECENT_SENDERS; i++) {
		if (s[i].at && !memcmp(s[i].key, src, MG_DERP_KEY_LEN)) {
			s[i].at = d->now;
			return;
		}
		if (s[i].at < oldest->at)
			oldest = &s[i];
	}
	memcpy(oldest->key, src, MG_DERP_KEY_LEN);
	oldest->at = d->now;
}

/* PeerGone NOT_HERE for key, at most once per DERPD_NOT_HERE_MS per key. */
static void not_here(struct derpd *d, struct conn *c, const uint8_t key[32])
{
	uint8_t frame[MG_DERP_HDR_LEN + MG_DERP_KEY_LEN + 1];
	struct key_seen *s = c->not_here, *slot = NULL;
	size_t n;

	for (int i = 0; i < DERPD_NOT_HERE_SLOTS && !slot; i++)
		if (s[i].at && !memcmp(s[i].key, key, MG_DERP_KEY_LEN))
			slot = &s[i];
	if (slot && d->now - slot->at < DERPD_NOT_HERE_MS)
		return;
	if (!slot) {
		slot = &s[0];
		for (int i = 1; i < DERPD_NOT_HERE_SLOTS; i++)
			if (s[i].at < slot->at)
				slot = &s[i];
		memcpy(slot->key, key, MG_DERP_KEY_LEN);
	}
	slot->at = d->now;
	n = mg_derp_build_peer_gone(frame, sizeof(frame), key, MG_DERP_GONE_NOT_HERE);
	derpd_conn_queue_ctl(d, c, frame, n);
}

static void send_packet(struct derpd *d, struct conn *c, const uint8_t *body, uint32_t len)
{
	uint8_t dst_key[MG_DERP_KEY_LEN];
	const uint8_t *pkt;
	struct conn *dst;
	size_t plen;
	enum mg_derp_err e = mg_derp_parse_packet(body, len, dst_key, &pkt, &plen);

	if (e != MG_DERP_OK) {
		derpd_conn_close(d, c, REJECT_BAD_FRAME, mg_derp_strerror(e));
		return;
	}
	c->rx_packets++;
	dst = derpd_registry_find(&d->reg, dst_key);
	if (!dst) {
		d->c.drops[DROP_NO_PEER]++;
		mg_log(LOG_DEBUG, "%s: packet of %zu bytes for an absent peer", c->name, plen);
		not_here(d, c, dst_key);
		return;
	}
	derpd_conn_queue_packet(d, dst, c->key, pkt, plen);
	note_sender(d, dst, c->key);
}

static void ping(struct derpd *d, struct conn *c, const uint8_t *body, uint32_t len)
{
	uint8_t data[8], frame[MG_DERP_HDR_LEN + 8];
	enum mg_derp_err e = mg_derp_parse_ping(body, len, data);
	size_t n;

	if (e != MG_DERP_OK) {
		derpd_conn_close(d, c, REJECT_BAD_FRAME, mg_derp_strerror(e));
		return;
	}
	n = mg_derp_build_ping(frame, sizeof(frame), MG_DERP_PONG, data);
	derpd_conn_queue_ctl(d, c, frame, n);
}

static void note_preferred(struct derpd *d, struct conn *c, const uint8_t *body, uint32_t len)
{
	bool preferred;

	if (len < 1) {
		derpd_conn_close(d, c, REJECT_BAD_FRAME, "NotePreferred without its byte");
		return;
	}
	preferred = body[0] != 0;
	if (preferred == c->preferred)
		return;
	c->preferred = preferred;
	if (preferred)
		d->n_preferred++;
	else
		d->n_preferred--;
}

static void client_frame(struct derpd *d, struct conn *c, uint8_t type, const uint8_t *body,
			 uint32_t len)
{
	mg_log(LOG_DEBUG, "%s: frame 0x%02x, %u bytes", c->name, type, len);
	switch (type) {
	case MG_DERP_SEND_PACKET:
		send_packet(d, c, body, len);
		break;
	case MG_DERP_PING:
		ping(d, c, body, len);
		break;
	case MG_DERP_NOTE_PREFERRED:
		note_preferred(d, c, body, len);
		break;
	default:
		/* KeepAlive and Pong need nothing; newer frame types and the
		 * mesh-only ones (ForwardPacket, WatchConns, ClosePeer: this
		 * server does not mesh) are skipped. */
		break;
	}
}

/* One frame at buf: its length, 0 while incomplete, -1 if c was closed. */
static long one_frame(struct derpd *d, struct conn *c, const uint8_t *buf, size_t n)
{
	uint32_t max = c->state == CONN_INFO ? MG_DERP_MAX_INFO : MG_DERP_MAX_BODY;
	uint32_t len = 0;
	uint8_t type = 0;
	long r = mg_derp_frame(buf, n, max, &type, &len);
	char why[64];

	if (r < 0) {
		snprintf(why, sizeof(why), "frame type 0x%02x of %u bytes", type, len);
		derpd_conn_close(d, c, REJECT_FRAME_TOO_BIG, why);
		return -1;
	}
	if (r == 0)
		return 0;
	if (c->state == CONN_INFO)
		client_info(d, c, type, buf + MG_DERP_HDR_LEN, len);
	else
		client_frame(d, c, type, buf + MG_DERP_HDR_LEN, len);
	return c->state == CONN_DEAD ? -1 : r;
}

size_t derpd_consume(struct derpd *d, struct conn *c, const uint8_t *buf, size_t n)
{
	size_t off = 0;

	while (off < n && !c->doomed) {
		long r;

		if (c->state == CONN_HTTP)
			r = http_head(d, c, buf + off, n - off);
		else if (c->state == CONN_INFO || c->state == CONN_CLIENT)
			r = one_frame(d, c, buf + off, n - off);
		else
			return n; /* answered (LINGER) or closed */
		if (r == 0)
			break;
		if (r < 0)
			return n;
		off += (size_t)r;
	}
	return off;
}

void derpd_relay_gone(struct derpd *d, struct conn *c)
{
	uint8_t frame[MG_DERP_HDR_LEN + MG_DERP_KEY_LEN + 1];
	size_t n = mg_derp_build_peer_gone(frame, sizeof(frame), c->key, MG_DERP_GONE_DISCONNECTED);

	for (int i = 0; i < DERPD_RECENT_SENDERS; i++) {
		const struct key_seen *s = &c->senders[i];
		struct conn *p;

		if (!s->at || d->now - s->at > DERPD_RECENT_MS)
			continue;
		p = derpd_registry_find(&d->reg, s->key);
		if (p)
			derpd_conn_queue_ctl(d, p, frame, n);
	}
}

void derpd_send_keepalive(struct derpd *d, struct conn *c)
{
	uint8_t frame[MG_DERP_HDR_LEN];
	size_t n = mg_derp_build_keepalive(frame, sizeof(frame));

	derpd_conn_queue_ctl(d, c, frame, n);
}
