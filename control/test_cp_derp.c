// SPDX-License-Identifier: MIT
/*
 * The DERP relay client (derp.c) and the handshake path choice (hs_send in
 * handshake.c) against fake relays played with the codec of common/derp.h
 * (test_relay.c): listening TCP sockets on 127.0.0.1, driven inline between
 * the client's steps (cp_derp_tick, cp_derp_pollfds + poll, cp_derp_service).
 * The dataplane is a shared-memory region this test drains and feeds, as in
 * test_cp_stun.c.
 *
 *   - connect and handshake: ClientInfo proves the device's key, ServerInfo
 *     makes the home relay ready, NotePreferred(1) follows; a relay whose key
 *     is not the pinned one is refused before ClientInfo;
 *   - MG_MSG_DERP_TX -> SendPacket; RecvPacket -> MG_MSG_DERP_RX, or dropped
 *     (unknown key, not a WireGuard message); Ping -> Pong;
 *   - a whole handshake as responder through the relay, and which paths an
 *     initiation takes by attempt number;
 *   - a relay that closes: back-off and reconnect; a node-key rotation:
 *     reconnect proving the new key;
 *   - a region that is not home: connected on demand, closed after 60 s
 *     unused; a region that is not configured;
 *   - TLS (relays that speak it server-side, with self-signed certificates
 *     made by openssl(1) in a temporary directory): the server's IP or
 *     server_name (SNI) verified against ca_file, packets both ways, a
 *     frame across TLS records; a certificate from another CA, or for
 *     another name, or one the system does not trust: never ready, backed
 *     off; plain against TLS and TLS against plain fail, not hang; a
 *     ca_file that cannot be read or holds no certificate fails init.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "cookie.h"
#include "cp.h"
#include "derp.h"
#include "keys.h"
#include "noise.h"
#include "test_relay.h"
#include "test_util.h"
#include "wg_messages.h"

static char name[32];
static struct mg_shm shm;      /* the fake dataplane */
static struct relay relays[2]; /* the fake relays */

/* ---- the device and other helpers ---------------------------------------------- */

/* A device with the control section `control`; cp_derp_init's result. */
static int device_try(struct cp_device *d, struct mg_config *cfg, const char *control)
{
	char text[2048], err[512] = "";

	snprintf(text, sizeof(text),
		 "meshgate: { name = \"%s\"; max_peers = 64; };\n"
		 "dataplane: { ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";"
		 " addresses = [\"198.18.0.1/24\"]; gateway = \"198.18.0.254\"; } ); };\n%s",
		 name, control);
	if (mg_config_load_string(text, "t", 0, cfg, err, sizeof(err)) || cp_device_init(d, cfg)) {
		fprintf(stderr, "device: %s\n", err);
		exit(2);
	}
	d->derp_no_probe = true; /* the first region stays home (test_probe probes) */
	return cp_derp_init(d);
}

static void device(struct cp_device *d, struct mg_config *cfg, const char *control)
{
	int ret = device_try(d, cfg, control);

	if (ret) {
		fprintf(stderr, "cp_derp_init: %s\n", strerror(-ret));
		exit(2);
	}
}

static void set_random_key(struct cp_device *d)
{
	uint8_t k[32];

	randombytes_buf(k, sizeof(k));
	cp_device_set_private_key(d, k);
	sodium_memzero(k, sizeof(k));
}

/* What mg_log writes to stderr meanwhile, kept (and shown again after). */
static int saved_stderr = -1;
static FILE *captured;

static void capture_begin(void)
{
	fflush(stderr);
	captured = tmpfile();
	saved_stderr = dup(2);
	if (!captured || saved_stderr < 0 || dup2(fileno(captured), 2) < 0)
		abort();
}

static char *capture_end(void)
{
	static char text[8192];
	size_t n;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	rewind(captured);
	n = fread(text, 1, sizeof(text) - 1, captured);
	text[n] = '\0';
	fclose(captured);
	fputs(text, stderr);
	return text;
}

static const char *b64(const uint8_t key[32])
{
	static char buf[4][MG_KEY_B64_LEN + 1];
	static int k;

	mg_key_to_base64(key, buf[k % 4]);
	return buf[k++ % 4];
}

static struct cp_peer *new_peer(struct cp_device *d, uint8_t pub[32])
{
	uint8_t priv[32];
	int err;

	keypair(priv, pub);
	struct cp_peer *p = cp_peer_create(d, pub, &err);
	if (!p) {
		fprintf(stderr, "cp_peer_create: %s\n", strerror(-err));
		exit(2);
	}
	return p;
}

/* A fake data message: the 4-byte header then len - 4 bytes of fill. */
static void data_msg(uint8_t *pkt, size_t len, uint8_t type, uint8_t fill)
{
	for (size_t i = 0; i < len; i++)
		pkt[i] = (uint8_t)(fill + i);
	pkt[0] = type;
	pkt[1] = pkt[2] = pkt[3] = 0;
}

/* ---- the tests ------------------------------------------------------------------- */

static struct relay *const R0 = &relays[0], *const R1 = &relays[1];
static const struct mg_sockaddr *derp1(void)
{
	static struct mg_sockaddr a;

	a = mg_sockaddr_derp(1);
	return &a;
}

static void test_connect(struct cp_device *d)
{
	struct frame f;

	printf("-- connect and handshake with the home relay\n");
	CHECK(d->derp && !d->derp_home_up && d->derp_connected == 0, "DERP on, nothing up yet");
	WAIT_FOR(d, d->derp_home_up, 3000);
	CHECK(R0->accepts == 1 && R0->http_bad == 0, "one connection, a DERP upgrade request");
	CHECK(R0->client_infos == 1 && R0->info_bad == 0 &&
		  !memcmp(R0->client_pub, d->local.public_key, 32),
	      "ClientInfo opens with the relay's key and proves the device's key %s",
	      b64(R0->client_pub));
	CHECK(R0->version == 2, "ClientInfo says version 2 (%d)", R0->version);
	CHECK(d->derp_home_up && d->derp_connected == 1 && d->derp_connects == 1 &&
		  cp_derp_region_up(d, 1) && !cp_derp_region_up(d, 2),
	      "after ServerInfo: home up, 1 connected, 1 connect");
	WAIT_FOR(d, relay_has(R0, MG_DERP_NOTE_PREFERRED), 2000);
	CHECK(relay_take(R0, MG_DERP_NOTE_PREFERRED, &f) && f.len == 1 && f.body[0] == 1,
	      "NotePreferred(1) to the home relay");
	struct mg_sockaddr home = cp_derp_home_endpoint(d);
	CHECK(sa_eq(&home, derp1()), "advertised DERP endpoint %s", ep_str(&home));
}

static void test_dp_tx(struct cp_device *d, struct cp_peer *p)
{
	struct mg_msg m;
	struct frame f;
	uint8_t key[32] = {0};
	const uint8_t *pkt = NULL;
	size_t len = 0;

	printf("-- MG_MSG_DERP_TX -> SendPacket\n");
	memset(&m.hdr, 0, sizeof(m.hdr));
	m.hdr.type = MG_MSG_DERP_TX;
	m.hdr.peer = p->slot;
	m.hdr.ep = mg_sockaddr_derp(1);
	m.hdr.len = 64;
	data_msg(m.data, 64, WG_MSG_DATA, 0x40);
	CHECK(mg_ring_send(shm.dp2cp, &m) == 0, "DERP_TX for peer %u pushed", p->slot);
	cp_dp_poll(d);
	WAIT_FOR(d, relay_has(R0, MG_DERP_SEND_PACKET), 2000);
	CHECK(relay_take(R0, MG_DERP_SEND_PACKET, &f) &&
		  mg_derp_parse_packet(f.body, f.len, key, &pkt, &len) == MG_DERP_OK,
	      "the relay got a SendPacket");
	CHECK(!memcmp(key, p->noise.public_key, 32), "addressed to the peer's key");
	CHECK(len == 64 && !memcmp(pkt, m.data, 64), "with the same 64 bytes (%zu)", len);
	CHECK(d->derp_tx == 1 && d->derp_tx_bytes == 64, "derp_tx %llu, %llu bytes",
	      (unsigned long long)d->derp_tx, (unsigned long long)d->derp_tx_bytes);

	/* Not a DERP endpoint, no such slot, a region that is not configured. */
	uint64_t bad = d->derp_drops[CP_DERP_DROP_BAD_PACKET];
	m.hdr.ep = sa("198.18.0.9:51820");
	mg_ring_send(shm.dp2cp, &m);
	m.hdr.ep = mg_sockaddr_derp(1);
	m.hdr.peer = 63;
	mg_ring_send(shm.dp2cp, &m);
	m.hdr.peer = p->slot;
	m.hdr.ep = mg_sockaddr_derp(7);
	mg_ring_send(shm.dp2cp, &m);
	cp_dp_poll(d);
	CHECK(relay_sync(d, R0) && R0->qn == 0, "nothing else reached the relay");
	CHECK(d->derp_drops[CP_DERP_DROP_BAD_PACKET] == bad + 2 &&
		  d->derp_drops[CP_DERP_DROP_NO_REGION] == 1 && d->derp_tx == 1,
	      "to a UDP endpoint, from an empty slot: bad packet; region 7: no region");
}

static void test_rx(struct cp_device *d, struct cp_peer *p)
{
	uint8_t pkt[128], stranger[32], sk[32];
	struct mg_msg m;
	bool got = false;

	printf("-- RecvPacket -> MG_MSG_DERP_RX, or dropped\n");
	drain(&shm);
	data_msg(pkt, 64, WG_MSG_DATA, 0x80);
	relay_recv_packet(R0, p->noise.public_key, pkt, 64);
	WAIT_FOR(d, (got = mg_ring_recv(shm.cp2dp, &m) == 0), 2000);
	CHECK(got && m.hdr.type == MG_MSG_DERP_RX, "the dataplane ring got DERP_RX (type %u)",
	      got ? m.hdr.type : 0);
	CHECK(got && sa_eq(&m.hdr.ep, derp1()) && !strcmp(ep_str(&m.hdr.ep), "127.3.3.40:1"),
	      "from %s", got ? ep_str(&m.hdr.ep) : "-");
	CHECK(got && m.hdr.len == 64 && !memcmp(m.data, pkt, 64), "with the same 64 bytes");
	CHECK(d->derp_rx == 1 && d->derp_rx_bytes == 64, "derp_rx %llu",
	      (unsigned long long)d->derp_rx);

	/* The smallest data message (a keepalive) goes through as well. */
	data_msg(pkt, 32, WG_MSG_DATA, 0x11);
	relay_recv_packet(R0, p->noise.public_key, pkt, 32);
	CHECK(relay_sync(d, R0) && mg_ring_recv(shm.cp2dp, &m) == 0 &&
		  m.hdr.type == MG_MSG_DERP_RX && m.hdr.len == 32,
	      "a 32-byte data message too");

	keypair(sk, stranger);
	data_msg(pkt, 64, WG_MSG_DATA, 0x80);
	relay_recv_packet(R0, stranger, pkt, 64);
	CHECK(relay_sync(d, R0) && drain(&shm) == 0,
	      "from a key that is no peer: nothing on the ring");
	CHECK(d->derp_drops[CP_DERP_DROP_UNKNOWN_PEER] == 1, "counted as unknown peer (%llu)",
	      (unsigned long long)d->derp_drops[CP_DERP_DROP_UNKNOWN_PEER]);

	uint64_t bad = d->derp_drops[CP_DERP_DROP_BAD_PACKET];
	data_msg(pkt, 64, 9, 0);
	relay_recv_packet(R0, p->noise.public_key, pkt, 64);
	data_msg(pkt, 100, WG_MSG_HANDSHAKE_INITIATION, 0);
	relay_recv_packet(R0, p->noise.public_key, pkt, 100);
	data_msg(pkt, 20, WG_MSG_DATA, 0); /* shorter than a keepalive */
	relay_recv_packet(R0, p->noise.public_key, pkt, 20);
	data_msg(pkt, 64, WG_MSG_DATA, 0);
	pkt[2] = 1; /* reserved bytes not zero */
	relay_recv_packet(R0, p->noise.public_key, pkt, 64);
	relay_recv_packet(R0, p->noise.public_key, pkt, 2);
	CHECK(relay_sync(d, R0) && drain(&shm) == 0, "not WireGuard messages: nothing on the ring");
	CHECK(d->derp_drops[CP_DERP_DROP_BAD_PACKET] == bad + 5,
	      "type 9, a 100-byte initiation, a 20-byte data message, reserved bytes set, 2 bytes:"
	      " 5 bad packets (%llu)",
	      (unsigned long long)(d->derp_drops[CP_DERP_DROP_BAD_PACKET] - bad));
	CHECK(d->derp_rx == 2 && d->handshakes_refused == 0 && d->initiations_rcvd == 0,
	      "not counted as received, not seen by the handshake code");

	/* A RecvPacket too short to hold a key: a protocol error, the
	 * connection stays. */
	uint8_t f[MG_DERP_HDR_LEN + 8];
	mg_derp_put_hdr(f, MG_DERP_RECV_PACKET, 8);
	memset(f + MG_DERP_HDR_LEN, 0, 8);
	relay_send(R0, f, sizeof(f));
	CHECK(relay_sync(d, R0) && d->derp_drops[CP_DERP_DROP_PROTOCOL] == 1 && d->derp_home_up,
	      "a RecvPacket without a key: protocol drop, still connected");
}

static void test_ping(struct cp_device *d)
{
	uint8_t data[8] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}, f[MG_DERP_HDR_LEN + 12];
	struct frame pong;
	bool got = false;

	printf("-- Ping -> Pong\n");
	relay_send(R0, f, mg_derp_build_ping(f, sizeof(f), MG_DERP_PING, data));
	WAIT_FOR(d, (got = relay_take(R0, MG_DERP_PONG, &pong)), 2000);
	CHECK(got && pong.len == 8 && !memcmp(pong.body, data, 8), "Pong with the same 8 bytes");
	/* A Ping with 12 bytes: the first 8 come back. */
	mg_derp_put_hdr(f, MG_DERP_PING, 12);
	memcpy(f + MG_DERP_HDR_LEN, data, 8);
	memset(f + MG_DERP_HDR_LEN + 8, 0x77, 4);
	relay_send(R0, f, sizeof(f));
	got = false;
	WAIT_FOR(d, (got = relay_take(R0, MG_DERP_PONG, &pong)), 2000);
	CHECK(got && pong.len == 8 && !memcmp(pong.body, data, 8),
	      "a longer Ping: Pong of 8 bytes");
	/* KeepAlive, PeerGone, Health, Restarting, an unknown type: nothing breaks. */
	uint8_t g[MG_DERP_HDR_LEN + 40];
	uint64_t gone = d->derp_peer_gone;
	relay_send(R0, g, mg_derp_build_keepalive(g, sizeof(g)));
	relay_send(R0, g, mg_derp_build_peer_gone(g, sizeof(g), R0->pub, 1));
	mg_derp_put_hdr(g, MG_DERP_HEALTH, 4);
	memcpy(g + MG_DERP_HDR_LEN, "bad!", 4);
	relay_send(R0, g, MG_DERP_HDR_LEN + 4);
	mg_derp_put_hdr(g, 0x7e, 3);
	relay_send(R0, g, MG_DERP_HDR_LEN + 3);
	CHECK(relay_sync(d, R0) && d->derp_home_up && d->derp_peer_gone == gone + 1 &&
		  R0->accepts == 1,
	      "KeepAlive, PeerGone (counted), Health, an unknown frame: still connected");
}

static void test_handshake(struct cp_device *d)
{
	struct wg_noise_local bl;
	struct wg_noise_remote br;
	struct wg_cookie_maker bm;
	struct wg_message_initiation init;
	uint8_t bpriv[32], bpub[32], key[32];
	struct frame f;
	const uint8_t *pkt;
	size_t len = 0;
	int err;

	printf("-- a handshake through the relay\n");
	keypair(bpriv, bpub);
	struct cp_peer *p = cp_peer_create(d, bpub, &err);
	CHECK(p && !p->endpoint.family, "peer B added, no endpoint");
	wg_noise_local_init(&bl, bpriv);
	CHECK(wg_noise_remote_init(&br, &bl, d->local.public_key, NULL) == 0 &&
		  wg_noise_create_initiation(&bl, &br, 0x1234, mg_real_ns(), &init) == 0,
	      "B makes an initiation to the device");
	wg_cookie_maker_init(&bm, d->local.public_key);
	wg_cookie_add_macs(&bm, &init, sizeof(init), cp_now());
	drain(&shm);
	uint64_t done = d->handshakes_done, sent = d->responses_sent, tx = d->derp_tx;

	relay_recv_packet(R0, bpub, &init, sizeof(init));
	WAIT_FOR(d, relay_has(R0, MG_DERP_SEND_PACKET), 2000);
	CHECK(relay_take(R0, MG_DERP_SEND_PACKET, &f) &&
		  mg_derp_parse_packet(f.body, f.len, key, &pkt, &len) == MG_DERP_OK &&
		  !memcmp(key, bpub, 32),
	      "a SendPacket back to B's key");
	CHECK(len == sizeof(struct wg_message_response) && pkt[0] == WG_MSG_HANDSHAKE_RESPONSE,
	      "a %zu-byte handshake response (type %u)", len, len ? pkt[0] : 0);
	struct wg_message_response resp;
	memcpy(&resp, pkt, sizeof(resp));
	CHECK(len == sizeof(resp) && le32toh(resp.receiver_index) == 0x1234 &&
		  wg_noise_consume_response(&bl, &br, &resp) == 0,
	      "B accepts the response");
	CHECK(sa_eq(&p->endpoint, derp1()), "peer B's endpoint is now %s", ep_str(&p->endpoint));
	CHECK(!p->direct.family, "and no direct endpoint was noted");
	CHECK(d->handshakes_done == done + 1 && d->responses_sent == sent + 1 &&
		  d->initiations_rcvd == 1 && d->derp_tx == tx + 1,
	      "one handshake done, one response sent, relayed");

	struct mg_msg m;
	unsigned peer_set = 0, keypair_add = 0, other = 0;
	while (mg_ring_recv(shm.cp2dp, &m) == 0) {
		const struct mg_msg_peer *pm = (const void *)m.data;
		if (m.hdr.type == MG_MSG_PEER_SET && m.hdr.peer == p->slot &&
		    (pm->flags & MG_PEER_F_ENDPOINT) && sa_eq(&pm->endpoint, derp1()) &&
		    !memcmp(pm->public_key, bpub, 32))
			peer_set++;
		else if (m.hdr.type == MG_MSG_KEYPAIR_ADD && m.hdr.peer == p->slot &&
			 m.hdr.len == sizeof(struct mg_msg_keypair) &&
			 !((const struct mg_msg_keypair *)m.data)->initiator)
			keypair_add++;
		else
			other++;
	}
	CHECK(peer_set == 1 && keypair_add == 1 && other == 0,
	      "the dataplane got PEER_SET with endpoint %s and a responder keypair (%u, %u, %u)",
	      ep_str(derp1()), peer_set, keypair_add, other);
	wg_noise_local_clear(&bl);
	wg_noise_remote_clear(&br);
	sodium_memzero(bpriv, sizeof(bpriv));
}

/* What one initiation did: TX_UDP messages to `direct` and SendPackets to key. */
struct paths {
	unsigned udp, relay, other;
};

static struct paths paths_of(struct cp_device *d, const uint8_t key[32],
			     const struct mg_sockaddr *direct)
{
	struct paths v = {0};
	struct mg_msg m;

	while (mg_ring_recv(shm.cp2dp, &m) == 0) {
		if (m.hdr.type == MG_MSG_TX_UDP && sa_eq(&m.hdr.ep, direct) &&
		    m.hdr.len == sizeof(struct wg_message_initiation) &&
		    m.data[0] == WG_MSG_HANDSHAKE_INITIATION)
			v.udp++;
		else
			v.other++;
	}
	if (!relay_sync(d, R0))
		v.other++;
	for (unsigned i = 0; i < R0->qn; i++) {
		const struct frame *f = &R0->q[i];
		if (f->type == MG_DERP_SEND_PACKET &&
		    f->len == 32 + sizeof(struct wg_message_initiation) &&
		    !memcmp(f->body, key, 32) && f->body[32] == WG_MSG_HANDSHAKE_INITIATION)
			v.relay++;
		else
			v.other++;
	}
	R0->qn = 0;
	return v;
}

#define PATHS(v, u, r) ((v).udp == (u) && (v).relay == (r) && (v).other == 0)

static void test_paths(struct cp_device *d)
{
	uint8_t ck[32], ek[32], fk[32];
	struct mg_sockaddr direct = sa("198.18.0.9:51820");
	struct paths v;

	printf("-- which paths an initiation takes\n");
	drain(&shm);
	uint64_t sent0 = d->initiations_sent;
	struct cp_peer *c = new_peer(d, ck);
	c->endpoint = direct;
	cp_peer_note_direct(c);
	c->derp_region = 1;

	cp_hs_initiate(d, c, false);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 1 && PATHS(v, 1, 0),
	      "direct peer, attempt 1: direct only (udp %u, relay %u, other %u)", v.udp, v.relay,
	      v.other);
	cp_hs_initiate(d, c, true);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 2 && PATHS(v, 1, 1),
	      "attempt 2: direct and relay (udp %u, relay %u, other %u)", v.udp, v.relay, v.other);
	cp_hs_initiate(d, c, true);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 3 && PATHS(v, 0, 1),
	      "attempt 3: relay only (udp %u, relay %u, other %u)", v.udp, v.relay, v.other);
	cp_hs_initiate(d, c, true);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 4 && PATHS(v, 1, 1), "attempt 4: both (udp %u, relay %u, other %u)",
	      v.udp, v.relay, v.other);
	cp_hs_initiate(d, c, true);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 5 && PATHS(v, 0, 1),
	      "attempt 5: relay only (udp %u, relay %u, other %u)", v.udp, v.relay, v.other);
	cp_hs_initiate(d, c, false);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 5 && PATHS(v, 0, 0),
	      "not a retry within rekey_timeout: nothing sent");
	CHECK(d->initiations_sent == sent0 + 5, "5 initiations counted (%llu)",
	      (unsigned long long)(d->initiations_sent - sent0));

	/* Now relayed (the peer's handshake came through the relay), a new series. */
	c->endpoint = mg_sockaddr_derp(1);
	c->hs_wanted = false;
	cp_hs_initiate(d, c, true);
	v = paths_of(d, ck, &direct);
	CHECK(c->hs_attempts == 1 && PATHS(v, 1, 1),
	      "the same peer relayed, new series, attempt 1: both (udp %u, relay %u, other %u)",
	      v.udp, v.relay, v.other);

	struct cp_peer *e = new_peer(d, ek);
	e->endpoint = mg_sockaddr_derp(1);
	e->direct = direct;
	e->derp_region = 1;
	e->hs_wanted = false;
	cp_hs_initiate(d, e, false);
	v = paths_of(d, ek, &direct);
	CHECK(e->hs_attempts == 1 && PATHS(v, 1, 1),
	      "relayed peer, attempt 1: both (udp %u, relay %u, other %u)", v.udp, v.relay,
	      v.other);
	cp_hs_initiate(d, e, true);
	v = paths_of(d, ek, &direct);
	CHECK(e->hs_attempts == 2 && PATHS(v, 0, 1),
	      "attempt 2: relay only (udp %u, relay %u, other %u)", v.udp, v.relay, v.other);
	cp_hs_initiate(d, e, true);
	v = paths_of(d, ek, &direct);
	CHECK(e->hs_attempts == 3 && PATHS(v, 0, 1),
	      "attempt 3: relay only (udp %u, relay %u, other %u)", v.udp, v.relay, v.other);

	struct cp_peer *f = new_peer(d, fk);
	f->derp_region = 1;
	cp_hs_initiate(d, f, false);
	v = paths_of(d, fk, &direct);
	CHECK(f->hs_attempts == 1 && PATHS(v, 0, 1),
	      "DERP region only, no endpoint, attempt 1: relay (udp %u, relay %u, other %u)", v.udp,
	      v.relay, v.other);
	cp_hs_initiate(d, f, true);
	v = paths_of(d, fk, &direct);
	CHECK(f->hs_attempts == 2 && PATHS(v, 0, 1),
	      "attempt 2: relay (udp %u, relay %u, other %u)", v.udp, v.relay, v.other);

	/* A peer homed in a region that is not configured: nothing can go. */
	uint64_t before = d->initiations_sent, nr = d->derp_drops[CP_DERP_DROP_NO_REGION];
	f->derp_region = 9;
	f->hs_wanted = false;
	cp_hs_initiate(d, f, true);
	v = paths_of(d, fk, &direct);
	CHECK(PATHS(v, 0, 0) && d->initiations_sent == before &&
		  d->derp_drops[CP_DERP_DROP_NO_REGION] == nr + 1,
	      "region 9 (not configured): nothing sent, not counted as sent, a no-region drop");
}

static void test_reconnect(struct cp_device *d)
{
	struct frame f;

	printf("-- the relay hangs up: back-off and reconnect\n");
	capture_begin();
	relay_hangup(R0);
	WAIT_FOR(d, !d->derp_home_up, 2000);
	uint64_t t0 = cp_now();
	const char *log = capture_end();
	CHECK(strstr(log, "DERP region 1") && strstr(log, "relay closed the connection") &&
		  strstr(log, "retrying in 1 s"),
	      "logged: relay closed the connection, retrying in 1 s");
	CHECK(!d->derp_home_up && d->derp_connected == 0 && !cp_derp_region_up(d, 1),
	      "the client saw it: home down");
	WAIT_FOR(d, d->derp_home_up, 4000);
	uint64_t dt = cp_now() - t0;
	CHECK(d->derp_home_up && R0->accepts == 2 && R0->client_infos == 2,
	      "reconnected: a second connection and handshake");
	CHECK(dt >= 900 * MS && dt < 2500 * MS, "after the 1 s back-off (%llu ms)",
	      (unsigned long long)(dt / MS));
	CHECK(d->derp_connects == 2 && d->derp_connected == 1, "derp_connects %llu",
	      (unsigned long long)d->derp_connects);
	WAIT_FOR(d, relay_has(R0, MG_DERP_NOTE_PREFERRED), 2000);
	CHECK(relay_take(R0, MG_DERP_NOTE_PREFERRED, &f) && f.body[0] == 1, "NotePreferred again");
}

static void test_rotate(struct cp_device *d)
{
	uint8_t k[32], old[32];
	struct frame f;

	printf("-- node-key rotation\n");
	memcpy(old, d->local.public_key, 32);
	randombytes_buf(k, sizeof(k));
	CHECK(cp_device_rotate_private_key(d, k) == 0 && memcmp(old, d->local.public_key, 32),
	      "rotated to %s", b64(d->local.public_key));
	sodium_memzero(k, sizeof(k));
	WAIT_FOR(d, R0->client_infos == 3 && d->derp_home_up, 3000);
	CHECK(R0->accepts == 3 && R0->client_infos == 3 && R0->closes >= 1,
	      "the client hung up and connected again at once");
	CHECK(!memcmp(R0->client_pub, d->local.public_key, 32),
	      "the new ClientInfo proves the NEW key");
	CHECK(d->derp_home_up && d->derp_connects == 3, "ready again (%llu connects)",
	      (unsigned long long)d->derp_connects);
	WAIT_FOR(d, relay_has(R0, MG_DERP_NOTE_PREFERRED), 2000);
	CHECK(relay_take(R0, MG_DERP_NOTE_PREFERRED, &f), "NotePreferred again");
	run_for(d, 300);
	CHECK(R0->accepts == 3, "and stays connected");
}

/* Test 1 and 3..9 on one device whose home relay R0 is pinned. */
static void test_main(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[512];
	uint8_t pk[32];

	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\";"
		 " public_key = \"%s\"; } ); derp_home = 1; };\n",
		 R0->port, b64(R0->pub));
	device(&d, &cfg, control);
	CHECK(cfg.n_derp_regions == 1 && cfg.derp_regions[0].pinned,
	      "region 1 pinned to the relay's key");
	set_random_key(&d);
	attach(&d, &shm);
	test_connect(&d);
	struct cp_peer *p = new_peer(&d, pk);
	test_dp_tx(&d, p);
	test_rx(&d, p);
	test_ping(&d);
	test_handshake(&d);
	test_paths(&d);
	test_reconnect(&d);
	test_rotate(&d);
	cp_device_fini(&d);
	CHECK(!d.derp, "freed");
	mg_config_free(&cfg);
	WAIT_FOR(NULL, R0->fd < 0, 1000);
	CHECK(R0->fd < 0 && R0->closes == 2, "the relay saw the connection close");
	relay_reset(R0);
}

static void test_pin(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[512];

	printf("-- a relay whose key is not the pinned one\n");
	/* Region 1 is R1, pinned to R0's key. */
	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\";"
		 " public_key = \"%s\"; } ); };\n",
		 R1->port, b64(R0->pub));
	device(&d, &cfg, control);
	set_random_key(&d);
	WAIT_FOR(&d, R1->closes >= 1, 3000);
	CHECK(R1->accepts == 1 && R1->closes == 1, "the client connected and hung up");
	CHECK(R1->client_infos == 0 && R1->info_bad == 0, "without sending ClientInfo");
	CHECK(!d.derp_home_up && d.derp_connected == 0 && d.derp_connects == 0,
	      "never ready: home down, no connect counted");
	WAIT_FOR(&d, R1->closes >= 2, 4000);
	CHECK(R1->accepts == 2 && R1->closes == 2 && R1->client_infos == 0 && !d.derp_home_up,
	      "tried again after the back-off, refused again");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R1);
}

static void test_on_demand(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[768];
	uint8_t key[32], pkt[64], k2[32];
	struct frame f;
	const uint8_t *pp;
	size_t len = 0;

	printf("-- a region that is not home: on demand\n");
	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\";"
		 " public_key = \"%s\"; }, { id = 2; server = \"127.0.0.1:%u\"; } );"
		 " derp_home = 1; };\n",
		 R0->port, b64(R0->pub), R1->port);
	device(&d, &cfg, control);
	CHECK(cfg.n_derp_regions == 2 && !cfg.derp_regions[1].pinned, "regions 1 (home) and 2");
	set_random_key(&d);
	attach(&d, &shm);
	WAIT_FOR(&d, d.derp_home_up, 3000);
	run_for(&d, 300);
	CHECK(d.derp_home_up && d.derp_connected == 1 && R0->accepts == 1 && R1->accepts == 0 &&
		  !cp_derp_region_up(&d, 2),
	      "home up; nothing connects to region 2 at start");

	keypair(k2, key);
	data_msg(pkt, sizeof(pkt), WG_MSG_DATA, 0x33);
	CHECK(cp_derp_send(&d, 2, key, pkt, sizeof(pkt)) == -EAGAIN &&
		  d.derp_drops[CP_DERP_DROP_NOT_READY] == 1 && d.derp_tx == 0,
	      "first send to region 2: -EAGAIN, counted as not ready");
	WAIT_FOR(&d, cp_derp_region_up(&d, 2), 3000);
	CHECK(R1->accepts == 1 && R1->client_infos == 1 &&
		  !memcmp(R1->client_pub, d.local.public_key, 32),
	      "it started a connection to region 2 (unpinned), which proved our key");
	CHECK(cp_derp_region_up(&d, 2) && d.derp_connected == 2 && d.derp_connects == 2 &&
		  d.derp_home_up,
	      "region 2 ready: 2 connected");
	CHECK(cp_derp_send(&d, 2, key, pkt, sizeof(pkt)) == 0 && d.derp_tx == 1,
	      "once ready a send succeeds");
	WAIT_FOR(&d, relay_has(R1, MG_DERP_SEND_PACKET), 2000);
	CHECK(relay_take(R1, MG_DERP_SEND_PACKET, &f) &&
		  mg_derp_parse_packet(f.body, f.len, k2, &pp, &len) == MG_DERP_OK &&
		  !memcmp(k2, key, 32) && len == sizeof(pkt) && !memcmp(pp, pkt, len),
	      "and arrives at relay 2 with the key and bytes");
	CHECK(!relay_has(R1, MG_DERP_NOTE_PREFERRED) && R0->qn >= 1 &&
		  relay_has(R0, MG_DERP_NOTE_PREFERRED),
	      "NotePreferred only to the home relay");

	/* Region 3 is not configured. */
	CHECK(cp_derp_send(&d, 3, key, pkt, sizeof(pkt)) == -ENOENT &&
		  d.derp_drops[CP_DERP_DROP_NO_REGION] == 1,
	      "a send to region 3: -ENOENT, counted as no region");

	/* 59 s later region 2 is still wanted; 61 s later it is closed. */
	cp_derp_tick(&d, cp_now() + 59 * S);
	CHECK(cp_derp_region_up(&d, 2), "59 s unused: region 2 stays");
	cp_derp_tick(&d, cp_now() + 61 * S);
	CHECK(!cp_derp_region_up(&d, 2) && d.derp_connected == 1 && d.derp_home_up &&
		  cp_derp_region_up(&d, 1),
	      "61 s unused: region 2 closed, home stays");
	tick_offset = 61 * S;
	WAIT_FOR(&d, R1->closes >= 1, 2000);
	run_for(&d, 200);
	CHECK(R1->closes == 1 && R1->accepts == 1 && R0->closes == 0 && R0->accepts == 1,
	      "relay 2 saw the connection close; relay 1 kept its one");
	tick_offset = 0;

	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);
	relay_reset(R1);
}

/* ---- TLS ------------------------------------------------------------------------ */

static char tls_dir[64];
/* Self-signed: for IP 127.0.0.1, for DNS derp.test, another for 127.0.0.1. */
static char cert_ip[128], key_ip[128], cert_dns[128], key_dns[128], cert_other[128], key_other[128];

/* A self-signed P-256 certificate with subjectAltName san, by openssl(1). */
static bool make_cert(const char *base, const char *san, char *cert, char *key)
{
	char cmd[1024], log[128];

	snprintf(cert, 128, "%s/%s.crt", tls_dir, base);
	snprintf(key, 128, "%s/%s.key", tls_dir, base);
	snprintf(log, sizeof(log), "%s/%s.log", tls_dir, base);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
		 " -subj /CN=derp -addext subjectAltName=%s -keyout %s -out %s >%s 2>&1"
		 " || { cat %s >&2; exit 1; }",
		 san, key, cert, log, log);
	return system(cmd) == 0 && access(cert, R_OK) == 0 && access(key, R_OK) == 0;
}

static bool tls_setup(void)
{
	snprintf(tls_dir, sizeof(tls_dir), "/tmp/tderp-tls.XXXXXX");
	if (!mkdtemp(tls_dir))
		return false;
	return make_cert("ip", "IP:127.0.0.1", cert_ip, key_ip) &&
	       make_cert("dns", "DNS:derp.test", cert_dns, key_dns) &&
	       make_cert("other", "IP:127.0.0.1", cert_other, key_other);
}

static void tls_cleanup(void)
{
	static const char *const base[] = {"ip", "dns", "other"};
	static const char *const ext[] = {"crt", "key", "log"};
	char path[128];

	if (!tls_dir[0] || tls_dir[strlen(tls_dir) - 1] == 'X')
		return;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			snprintf(path, sizeof(path), "%s/%s.%s", tls_dir, base[i], ext[j]);
			unlink(path);
		}
	rmdir(tls_dir);
}

/* The client's sockets open now (0: it closed the connection and waits). */
static unsigned client_fds(struct cp_device *d)
{
	struct pollfd pfd[MG_MAX_DERP_REGIONS];

	return cp_derp_pollfds(d, pfd, MG_MAX_DERP_REGIONS);
}

/* A region 1 (home) on relay r with tls = true and `extra` (ca_file, ...). */
static void tls_control(char *buf, size_t cap, const struct relay *r, const char *extra)
{
	snprintf(buf, cap,
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\"; tls = true;"
		 " %s } ); derp_home = 1; };\n",
		 r->port, extra);
}

static void test_tls_ip(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[1024], extra[512], line[256];
	uint8_t pk[32], pkt[64], key[32];
	const uint8_t *pp = NULL;
	size_t len = 0;
	struct frame f;
	struct mg_msg m;
	bool got = false;

	printf("-- TLS: a certificate for 127.0.0.1 trusted through ca_file, key pinned\n");
	relay_tls(R0, cert_ip, key_ip);
	snprintf(extra, sizeof(extra), "ca_file = \"%s\"; public_key = \"%s\";", cert_ip,
		 b64(R0->pub));
	tls_control(control, sizeof(control), R0, extra);
	device(&d, &cfg, control);
	CHECK(cfg.derp_regions[0].tls && cfg.derp_regions[0].pinned, "region 1: tls, pinned");
	set_random_key(&d);
	attach(&d, &shm);
	capture_begin();
	WAIT_FOR(&d, d.derp_home_up, 3000);
	const char *log = capture_end();
	CHECK(d.derp_home_up && d.derp_connects == 1, "home up over TLS");
	CHECK(R0->accepts == 1 && R0->tls_handshakes == 1 && R0->tls_fails == 0 &&
		  R0->client_infos == 1 && R0->http_bad == 0,
	      "one connection: TLS handshake, upgrade, ClientInfo");
	CHECK(R0->sni[0] == '\0', "no SNI for an IP address (\"%s\")", R0->sni);
	snprintf(line, sizeof(line), "127.0.0.1:%u", R0->port);
	CHECK(!strcmp(R0->host, line), "Host: %s", R0->host);
	snprintf(line, sizeof(line), "DERP region 1 (home): connected (relay key %s)\n",
		 b64(R0->pub));
	CHECK(strstr(log, line) != NULL, "logged, unchanged: %.*s", (int)strlen(line) - 1, line);
	CHECK(strstr(log, "DERP region 1: TLS (TLSv1.") &&
		  strstr(log, "certificate verified for 127.0.0.1\n"),
	      "and a line of its own for TLS");
	WAIT_FOR(&d, relay_has(R0, MG_DERP_NOTE_PREFERRED), 2000);
	CHECK(relay_take(R0, MG_DERP_NOTE_PREFERRED, &f) && f.len == 1 && f.body[0] == 1,
	      "NotePreferred(1)");

	/* A packet each way. */
	struct cp_peer *p = new_peer(&d, pk);
	data_msg(pkt, sizeof(pkt), WG_MSG_DATA, 0x21);
	CHECK(cp_derp_send(&d, 1, pk, pkt, sizeof(pkt)) == 0, "a send over TLS");
	WAIT_FOR(&d, relay_has(R0, MG_DERP_SEND_PACKET), 2000);
	CHECK(relay_take(R0, MG_DERP_SEND_PACKET, &f) &&
		  mg_derp_parse_packet(f.body, f.len, key, &pp, &len) == MG_DERP_OK &&
		  !memcmp(key, pk, 32) && len == sizeof(pkt) && !memcmp(pp, pkt, len),
	      "the relay got the SendPacket: key and bytes");
	drain(&shm);
	data_msg(pkt, sizeof(pkt), WG_MSG_DATA, 0x52);
	relay_recv_packet(R0, p->noise.public_key, pkt, sizeof(pkt));
	WAIT_FOR(&d, (got = mg_ring_recv(shm.cp2dp, &m) == 0), 2000);
	CHECK(got && m.hdr.type == MG_MSG_DERP_RX && sa_eq(&m.hdr.ep, derp1()) &&
		  m.hdr.len == sizeof(pkt) && !memcmp(m.data, pkt, sizeof(pkt)),
	      "a RecvPacket over TLS: DERP_RX on the ring with the same bytes");

	/* A frame of the largest body and a Ping after it, in one write:
	 * they span five TLS records, the last one shared. */
	size_t big_len = MG_DERP_HDR_LEN + MG_DERP_MAX_BODY + MG_DERP_HDR_LEN + 8;
	uint8_t *big = malloc(big_len), data[8] = {9, 8, 7, 6, 5, 4, 3, 2};
	if (!big)
		abort();
	mg_derp_put_hdr(big, 0x7e, MG_DERP_MAX_BODY);
	memset(big + MG_DERP_HDR_LEN, 0x5a, MG_DERP_MAX_BODY);
	mg_derp_build_ping(big + MG_DERP_HDR_LEN + MG_DERP_MAX_BODY, MG_DERP_HDR_LEN + 8,
			   MG_DERP_PING, data);
	relay_send(R0, big, big_len);
	free(big);
	got = false;
	WAIT_FOR(&d, (got = relay_take(R0, MG_DERP_PONG, &f)), 2000);
	CHECK(got && f.len == 8 && !memcmp(f.body, data, 8) && d.derp_home_up,
	      "a %u-byte frame then a Ping in one write: Pong, still up", MG_DERP_MAX_BODY);

	/* A burst the other way. */
	uint8_t burst[1200];
	unsigned sent = 0, ok = 0;
	for (unsigned i = 0; i < 40; i++) {
		data_msg(burst, sizeof(burst), WG_MSG_DATA, (uint8_t)i);
		sent += cp_derp_send(&d, 1, pk, burst, sizeof(burst)) == 0;
	}
	CHECK(relay_sync(&d, R0), "relay_sync after the burst");
	for (unsigned i = 0; i < 40; i++) {
		data_msg(burst, sizeof(burst), WG_MSG_DATA, (uint8_t)i);
		if (relay_take(R0, MG_DERP_SEND_PACKET, &f) &&
		    mg_derp_parse_packet(f.body, f.len, key, &pp, &len) == MG_DERP_OK &&
		    len == sizeof(burst) && !memcmp(pp, burst, len))
			ok++;
	}
	CHECK(sent == 40 && ok == 40 && R0->overflow == 0,
	      "40 sends of 1200 bytes: all arrived, in order (%u sent, %u ok)", sent, ok);

	/* The relay hangs up: the same back-off and reconnect as plain. */
	capture_begin();
	relay_hangup(R0);
	WAIT_FOR(&d, !d.derp_home_up, 2000);
	log = capture_end();
	CHECK(!d.derp_home_up && strstr(log, "relay closed the connection in state ready") &&
		  strstr(log, "retrying in 1 s"),
	      "hung up: logged as the relay closing, retrying in 1 s");
	WAIT_FOR(&d, d.derp_home_up, 4000);
	CHECK(d.derp_home_up && R0->accepts == 2 && R0->tls_handshakes == 2 && d.derp_connects == 2,
	      "reconnected over TLS");
	CHECK(relay_sync(&d, R0), "and answers a Ping");

	cp_device_fini(&d);
	mg_config_free(&cfg);
	WAIT_FOR(NULL, R0->fd < 0, 1000);
	CHECK(R0->fd < 0 && R0->closes == 1,
	      "fini: the relay saw the connection close (its own hang-up is not counted)");
	relay_reset(R0);
}

static void test_tls_sni(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[1024], extra[512], host[64];

	printf("-- TLS: server_name = \"derp.test\", a certificate for that name\n");
	relay_tls(R0, cert_dns, key_dns);
	snprintf(extra, sizeof(extra), "server_name = \"derp.test\"; ca_file = \"%s\";", cert_dns);
	tls_control(control, sizeof(control), R0, extra);
	device(&d, &cfg, control);
	set_random_key(&d);
	capture_begin();
	WAIT_FOR(&d, d.derp_home_up, 3000);
	const char *log = capture_end();
	CHECK(d.derp_home_up && R0->tls_handshakes == 1 && R0->client_infos == 1,
	      "home up over TLS (relay not pinned)");
	CHECK(!strcmp(R0->sni, "derp.test"), "the relay got SNI \"%s\"", R0->sni);
	snprintf(host, sizeof(host), "derp.test:%u", R0->port);
	CHECK(!strcmp(R0->host, host), "Host: %s", R0->host);
	CHECK(strstr(log, "certificate verified for derp.test\n") != NULL,
	      "logged: certificate verified for derp.test");
	CHECK(relay_sync(&d, R0), "Ping -> Pong");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);
}

/* A TLS client that must fail verification against r: the log says why, the
 * connection never becomes ready, a second attempt comes after the back-off. */
static void tls_refused(struct relay *r, const char *extra, const char *why, const char *sni)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[1024];

	tls_control(control, sizeof(control), r, extra);
	device(&d, &cfg, control);
	set_random_key(&d);
	capture_begin();
	WAIT_FOR(&d, r->tls_fails >= 1 && client_fds(&d) == 0, 3000);
	uint64_t t0 = cp_now();
	const char *log = capture_end();
	CHECK(r->accepts == 1 && r->tls_fails == 1 && r->tls_handshakes == 0 && client_fds(&d) == 0,
	      "the handshake failed, the client closed (relay: %s)", r->tls_err);
	CHECK(strstr(log, why) && strstr(log, "in state tls; retrying in 1 s"),
	      "logged: %s, in state tls, retrying in 1 s", why);
	CHECK(!strcmp(r->sni, sni), "SNI \"%s\"", r->sni);
	WAIT_FOR(&d, r->accepts >= 2, 4000);
	uint64_t dt = cp_now() - t0;
	WAIT_FOR(&d, r->tls_fails >= 2, 2000);
	CHECK(r->accepts == 2 && r->tls_fails == 2 && dt >= 900 * MS && dt < 2500 * MS,
	      "tried again after the 1 s back-off (%llu ms), refused again",
	      (unsigned long long)(dt / MS));
	CHECK(!d.derp_home_up && d.derp_connects == 0 && d.derp_connected == 0 &&
		  r->client_infos == 0 && r->http_bad == 0,
	      "never ready, no upgrade request was sent");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(r);
}

static void test_tls_refused(void)
{
	char extra[512];

	printf("-- TLS: ca_file is another self-signed certificate\n");
	relay_tls(R0, cert_ip, key_ip);
	snprintf(extra, sizeof(extra), "ca_file = \"%s\";", cert_other);
	tls_refused(R0, extra, "TLS certificate verification failed: self", "");

	printf("-- TLS: no ca_file: the system's CAs do not know the relay\n");
	tls_refused(R0, "", "TLS certificate verification failed: self", "");

	printf("-- TLS: server_name = \"other.test\" against a certificate for derp.test\n");
	relay_tls(R0, cert_dns, key_dns);
	snprintf(extra, sizeof(extra), "server_name = \"other.test\"; ca_file = \"%s\";", cert_dns);
	tls_refused(R0, extra, "TLS certificate verification failed: hostname mismatch",
		    "other.test");

	printf("-- TLS: a certificate for derp.test, no server_name (the IP is checked)\n");
	snprintf(extra, sizeof(extra), "ca_file = \"%s\";", cert_dns);
	tls_refused(R0, extra, "TLS certificate verification failed: IP address mismatch", "");
}

static void test_tls_mismatch(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[1024], extra[512];

	printf("-- a plain client against a TLS relay\n");
	relay_tls(R0, cert_ip, key_ip);
	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\"; } );"
		 " derp_home = 1; };\n",
		 R0->port);
	device(&d, &cfg, control);
	set_random_key(&d);
	capture_begin();
	WAIT_FOR(&d, R0->tls_fails >= 1 && client_fds(&d) == 0, 3000);
	const char *log = capture_end();
	CHECK(R0->accepts == 1 && R0->tls_fails == 1 && client_fds(&d) == 0,
	      "the relay refused the request as TLS (%s), the client closed", R0->tls_err);
	CHECK(strstr(log, "in state http; retrying in 1 s") != NULL,
	      "logged as a failure in state http (closed, reset or not HTTP)");
	CHECK(!d.derp_home_up && d.derp_connects == 0 && R0->client_infos == 0, "never ready");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);
	relay_tls(R0, NULL, NULL);

	printf("-- a TLS client against a plain relay\n");
	snprintf(extra, sizeof(extra), "ca_file = \"%s\";", cert_ip);
	tls_control(control, sizeof(control), R1, extra);
	device(&d, &cfg, control);
	set_random_key(&d);
	/* A relay that hangs up on the ClientHello. */
	capture_begin();
	WAIT_FOR(&d, R1->accepts >= 1 && R1->in_len > 0, 2000);
	CHECK(R1->accepts == 1 && R1->in_len > 0 && R1->http_bad == 0 && client_fds(&d) == 1,
	      "the relay got %zu bytes that are no HTTP head yet; the client waits", R1->in_len);
	relay_hangup(R1);
	WAIT_FOR(&d, client_fds(&d) == 0, 2000);
	const char *log2 = capture_end();
	CHECK(client_fds(&d) == 0 &&
		  strstr(log2, "relay closed the connection in state tls; retrying in 1 s"),
	      "the relay hung up: the client closed, logged in state tls");
	CHECK(!d.derp_home_up && d.derp_connects == 0 && R1->client_infos == 0, "never ready");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R1);

	/* A relay that waits for the rest of a request: the handshake times out
	 * (a new device: only the first failure of a series is logged). */
	device(&d, &cfg, control);
	set_random_key(&d);
	WAIT_FOR(&d, R1->accepts >= 1 && R1->in_len > 0, 2000);
	run_for(&d, 200);
	CHECK(R1->accepts == 1 && R1->in_len > 0 && client_fds(&d) == 1 && !d.derp_home_up,
	      "waiting in the TLS handshake");
	capture_begin();
	tick_offset = 11 * S;
	WAIT_FOR(&d, client_fds(&d) == 0, 1000);
	tick_offset = 0;
	log2 = capture_end();
	CHECK(client_fds(&d) == 0 && strstr(log2, "timed out in state tls"),
	      "10 s later: timed out in state tls, closed");
	CHECK(!d.derp_home_up && d.derp_connects == 0 && R1->client_infos == 0, "never ready");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R1);
}

static void test_tls_ca_file(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[1024], extra[512];
	const char *log;
	int ret;

	printf("-- TLS: a ca_file that cannot be used fails cp_derp_init\n");
	snprintf(extra, sizeof(extra), "ca_file = \"%s/missing.crt\";", tls_dir);
	tls_control(control, sizeof(control), R0, extra);
	capture_begin();
	ret = device_try(&d, &cfg, control);
	log = capture_end();
	CHECK(ret == -EINVAL && !d.derp, "a missing file: -EINVAL (%d), no DERP state", ret);
	CHECK(strstr(log, "DERP region 1: cannot read ca_file ") && strstr(log, "/missing.crt: ") &&
		  strstr(log, "No such file or directory"),
	      "logged: cannot read ca_file ...: No such file or directory");
	cp_device_fini(&d);
	mg_config_free(&cfg);

	snprintf(extra, sizeof(extra), "ca_file = \"%s\";", key_ip);
	tls_control(control, sizeof(control), R0, extra);
	capture_begin();
	ret = device_try(&d, &cfg, control);
	log = capture_end();
	CHECK(ret == -EINVAL && !d.derp, "a private key, no certificate: -EINVAL (%d)", ret);
	CHECK(strstr(log, "holds no usable PEM certificate") != NULL,
	      "logged: holds no usable PEM certificate");
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

static void test_tls(void)
{
	bool ok = tls_setup();

	CHECK(ok, "self-signed certificates made with openssl(1) in %s", tls_dir);
	if (ok) {
		test_tls_ip();
		test_tls_sni();
		test_tls_refused();
		test_tls_mismatch();
		test_tls_ca_file();
	}
	tls_cleanup();
}

/* A region of a coordination server's map: plain, on 127.0.0.1. */
static struct mg_derp_region_conf map_region(uint32_t id, const struct relay *r)
{
	struct mg_derp_region_conf c;

	memset(&c, 0, sizeof(c));
	c.id = id;
	c.server = sa("127.0.0.1:1");
	c.server.port = r->port;
	return c;
}

static void test_map(void)
{
	struct mg_config cfg;
	struct cp_device d;
	struct mg_derp_region_conf regs[3];
	struct frame f;

	printf("-- regions from the coordination server's map\n");
	device(&d, &cfg, "control: { derp_home = 2; };\n");
	set_random_key(&d);
	CHECK(!d.derp && !cp_derp_home_endpoint(&d).family, "no regions configured: DERP off");
	CHECK(cp_derp_set_regions(&d, NULL, 0) == 0 && !d.derp, "an empty map: still off");

	regs[0] = map_region(1, R0);
	regs[1] = map_region(2, R1);
	CHECK(cp_derp_set_regions(&d, regs, 2) == 0 && d.derp, "a map of regions 1 and 2");
	struct mg_sockaddr home = cp_derp_home_endpoint(&d);
	CHECK(sa_eq(&home, &(struct mg_sockaddr){0}) == false && home.port == 2,
	      "home region 2 (control.derp_home), advertised as %s", ep_str(&home));
	WAIT_FOR(&d, d.derp_home_up, 3000);
	CHECK(d.derp_home_up && R1->client_infos == 1 && R0->accepts == 0,
	      "connected to region 2's relay only (region 1 on demand)");
	unsigned connects = (unsigned)d.derp_connects;
	relay_sync(&d, R1);
	CHECK(cp_derp_set_regions(&d, regs, 2) == 0 && d.derp_connects == connects,
	      "the same map again: nothing changes");
	run_for(&d, 50);
	CHECK(R1->closes == 0 && d.derp_home_up, "region 2's connection stays");

	printf("-- a map without our home region: its first one is home\n");
	regs[0] = map_region(3, R0);
	CHECK(cp_derp_set_regions(&d, regs, 1) == 0 && cp_derp_home_endpoint(&d).port == 3,
	      "a map of region 3 alone: home region 3");
	WAIT_FOR(&d, R1->closes >= 1 && d.derp_home_up, 3000);
	CHECK(R1->closes == 1 && R0->client_infos == 1 && d.derp_home_up && d.derp_connected == 1,
	      "region 2's connection closed, region 3's made");

	printf("-- our home region back in the map: home moves, region 3's connection stays\n");
	relay_sync(&d, R0);
	R0->qn = 0;
	regs[0] = map_region(2, R1);
	regs[1] = map_region(3, R0);
	CHECK(cp_derp_set_regions(&d, regs, 2) == 0 && cp_derp_home_endpoint(&d).port == 2,
	      "regions 2 and 3: home region 2 (control.derp_home)");
	WAIT_FOR(&d, relay_has(R0, MG_DERP_NOTE_PREFERRED), 2000);
	CHECK(relay_take(R0, MG_DERP_NOTE_PREFERRED, &f) && f.len == 1 && f.body[0] == 0,
	      "region 3's relay told it is no longer our home (NotePreferred 0)");
	WAIT_FOR(&d, R1->client_infos >= 2 && d.derp_home_up, 3000);
	CHECK(R1->client_infos == 2 && R0->closes == 0 && d.derp_connected == 2,
	      "region 2 connected, region 3's connection the same one (peers may still use it)");

	printf("-- a changed region reconnects; a bad one changes nothing\n");
	memcpy(regs[1].public_key, R0->pub, 32);
	regs[1].pinned = true;
	CHECK(cp_derp_set_regions(&d, regs, 2) == 0, "region 3 now pins its key");
	WAIT_FOR(&d, R0->closes >= 1, 2000);
	CHECK(R0->closes == 1, "region 3's old connection closed");
	regs[2] = map_region(5, R0);
	regs[2].tls = true;
	snprintf(regs[2].ca_file, sizeof(regs[2].ca_file), "/nonexistent/ca.pem");
	capture_begin();
	int ret = cp_derp_set_regions(&d, regs, 3);
	char *log = capture_end();
	CHECK(ret == -EINVAL && strstr(log, "cannot read ca_file"),
	      "a region with an unusable CA file: refused (%d)", ret);
	CHECK(cp_derp_home_endpoint(&d).port == 2 && d.derp_home_up,
	      "the regions stay as they were");

	printf("-- an empty map: relaying off\n");
	unsigned c0 = R0->closes, c1 = R1->closes;
	CHECK(cp_derp_set_regions(&d, NULL, 0) == 0 && !d.derp && !d.derp_home_up &&
		  !d.derp_connected && !cp_derp_home_endpoint(&d).family,
	      "no regions, nothing connected, no DERP endpoint");
	WAIT_FOR(NULL, R1->closes > c1, 1000);
	CHECK(R1->closes == c1 + 1 && R0->closes == c0 && R0->fd < 0,
	      "the home relay saw its connection close (region 3's had closed when it changed)");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);
	relay_reset(R1);

	printf("-- control.derp_regions rule over the map\n");
	char control[256];
	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\"; } ); };\n",
		 R0->port);
	device(&d, &cfg, control);
	regs[0] = map_region(7, R1);
	CHECK(cp_derp_set_regions(&d, regs, 1) == -EEXIST && cp_derp_home_endpoint(&d).port == 1,
	      "the map is not used: region 1 stays home");
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

/* Regions given by name: resolved (asynchronously) at each connect. */
static void test_names(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[256];

	printf("-- a region by name: localhost\n");
	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"localhost:%u\"; } ); };\n",
		 R0->port);
	device(&d, &cfg, control);
	set_random_key(&d);
	capture_begin();
	WAIT_FOR(&d, d.derp_home_up, 3000);
	const char *log0 = capture_end();
	CHECK(!strstr(log0, "node key changed"), "no reconnect while the name resolves");
	char want[64];
	snprintf(want, sizeof(want), "localhost:%u", R0->port);
	CHECK(d.derp_home_up && R0->client_infos == 1 && !strcmp(R0->host, want),
	      "resolved, connected; the upgrade request's Host is the name (%s)", R0->host);
	relay_hangup(R0);
	WAIT_FOR(&d, R0->client_infos >= 2 && d.derp_home_up, 4000);
	CHECK(R0->client_infos == 2 && d.derp_home_up, "resolved again for the reconnect");

	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);

	printf("-- a name that does not resolve (from a map)\n");
	struct mg_derp_region_conf r = map_region(1, R0);
	snprintf(r.host, sizeof(r.host), "nonexistent.invalid");
	device(&d, &cfg, "control: { derp_home = 1; };\n");
	set_random_key(&d);
	CHECK(cp_derp_set_regions(&d, &r, 1) == 0 && d.derp,
	      "a map of region 1 at nonexistent.invalid");
	/* NXDOMAIN at once where a resolver answers; a resolver that does not
	 * answer runs into the 10 s connection deadline. */
	capture_begin();
	uint64_t until = cp_now() + 12000 * MS;
	char *log = "";
	bool seen = false;
	while (!seen && cp_now() < until) {
		run_for(&d, 200);
		log = capture_end();
		seen = strstr(log, "cannot resolve nonexistent.invalid") ||
		       strstr(log, "timed out in state resolving");
		if (!seen)
			capture_begin();
	}
	if (!seen)
		capture_end();
	CHECK(seen && !d.derp_home_up && R0->accepts == 0,
	      "not connected, the failure logged: %.160s", log);
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);
}

/* The home region by latency: the choice, then probes that find the home
 * does not answer. */
static void test_pick_home(void)
{
	static const struct {
		uint64_t lat[3]; /* ms; 0 none */
		int cur, want;
		const char *why;
	} t[] = {
	    {{30, 10, 0}, 0, 1, "10 ms against 30: under 2/3 and 20 ms faster"},
	    {{30, 21, 0}, 0, 0, "21 against 30: not under 2/3"},
	    {{14, 4, 0}, 0, 0, "4 against 14: under 2/3 but only 10 ms faster"},
	    {{16, 4, 0}, 0, 1, "4 against 16: 12 ms faster"},
	    {{0, 50, 80}, 0, 1, "the home does not answer: the fastest that does"},
	    {{0, 0, 0}, 1, 1, "nobody answers: stay"},
	    {{5, 50, 80}, 2, 0, "80 against 5"},
	    {{20, 20, 20}, 1, 1, "all alike: stay"},
	    {{20, 0, 20}, 1, 0, "the home does not answer, two alike: the first"},
	    {{9, 100, 0}, -1, 0, "no home yet: the fastest"},
	};

	printf("-- choosing the home region by latency\n");
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t lat[3];
		for (int k = 0; k < 3; k++)
			lat[k] = t[i].lat[k] * MS;
		int got = cp_derp_pick_home(lat, 3, t[i].cur);
		CHECK(got == t[i].want, "%s: got %d, want %d", t[i].why, got, t[i].want);
	}
}

static void test_probe(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char control[512];

	printf("-- probes: the first region does not answer, the home moves\n");
	/* Region 1 at port 1 of 127.0.0.1 (tcpmux: nothing listens, connects are
	 * refused). */
	const uint16_t dead = 1;
	snprintf(control, sizeof(control),
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\"; },"
		 " { id = 2; server = \"127.0.0.1:%u\"; } ); };\n",
		 dead, R0->port);
	device(&d, &cfg, control);
	d.derp_no_probe = false;
	set_random_key(&d);
	CHECK(cp_derp_home_endpoint(&d).port == 1, "the first region is home at first");
	WAIT_FOR(&d, d.derp_home_changed && d.derp_home_up, 4000);
	CHECK(d.derp_n_regions == 2 && d.derp_region[0] == 1 && d.derp_region[1] == 2 &&
		  d.derp_latency_ns[0] == 0 && d.derp_latency_ns[1] > 0 && d.derp_home_region == 2,
	      "latencies: region 1 none, region 2 %.3f ms", (double)d.derp_latency_ns[1] / 1e6);
	CHECK(cp_derp_home_endpoint(&d).port == 2 && d.derp_home_changed && d.derp_home_up &&
		  R0->client_infos == 1,
	      "home region 2, connected, the coordination client told");
	cp_device_fini(&d);
	mg_config_free(&cfg);

	printf("-- the same from a map: a full map again keeps the home the probes chose\n");
	struct mg_derp_region_conf regs[3] = {map_region(1, R0), map_region(2, R0),
					      map_region(3, R0)};
	regs[0].server.port = dead;
	device(&d, &cfg, "control: { };\n");
	d.derp_no_probe = false;
	set_random_key(&d);
	CHECK(cp_derp_set_regions(&d, regs, 2) == 0 && cp_derp_home_endpoint(&d).port == 1,
	      "regions 1 (down) and 2: region 1 home at first");
	WAIT_FOR(&d, cp_derp_home_endpoint(&d).port == 2 && d.derp_home_up, 4000);
	CHECK(cp_derp_home_endpoint(&d).port == 2 && d.derp_home_up, "the probes move it to 2");
	CHECK(cp_derp_set_regions(&d, regs, 2) == 0 && cp_derp_home_endpoint(&d).port == 2,
	      "the same map again: home region 2 stays");
	CHECK(cp_derp_set_regions(&d, regs, 3) == 0 && cp_derp_home_endpoint(&d).port == 2 &&
		  d.derp_home_up,
	      "a map with a region more: home region 2 stays, still up");

	printf("-- the regions go while the relay's bytes wait to be served\n");
	struct pollfd pfd[CP_DERP_MAX_FDS];
	uint8_t f[MG_DERP_HDR_LEN + 8];
	size_t fl = mg_derp_build_ping(f, sizeof(f), MG_DERP_PING, (const uint8_t *)"12345678");
	relay_send(R0, f, fl);
	unsigned np = cp_derp_pollfds(&d, pfd, CP_DERP_MAX_FDS);
	CHECK(np >= 1 && poll(pfd, np, 1000) > 0, "the home connection has bytes to read");
	CHECK(cp_derp_set_regions(&d, NULL, 0) == 0 && !d.derp, "an empty map: relaying off");
	cp_derp_service(&d, pfd, np, cp_now());
	CHECK(!d.derp && !d.derp_home_up, "the poll's results served without the regions: nothing");
	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_reset(R0);
}

int main(void)
{
	alarm(50);
	if (sodium_init() < 0)
		return 2;
	snprintf(name, sizeof(name), "tderp%d", (int)getpid() % 100000);
	if (mg_shm_create(&shm, name, 64, 2)) {
		fprintf(stderr, "mg_shm_create failed\n");
		return 2;
	}
	relay_open(R0);
	relay_open(R1);
	test_main();
	test_pin();
	test_on_demand();
	test_map();
	test_names();
	test_pick_home();
	test_probe();
	test_tls();
	relay_close(R0);
	relay_close(R1);
	mg_shm_destroy(&shm);
	return test_finish("test_cp_derp");
}
