// SPDX-License-Identifier: MIT
/*
 * Two peers in memory run the handshake both ways; then every way it must
 * fail: tampered bytes, replayed and flooding initiations, wrong static
 * keys, mismatched preshared keys, low-order points, wrong states.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "cookie.h"
#include "kdf.h"
#include "noise.h"
#include "test_util.h"
#include "x25519_mb.h"

#define MS  1000000ULL
#define SEC 1000000000ULL
/* 2023-11-14T22:13:20Z */
#define REALTIME (1700000000ULL * SEC)

/* A setup step that must not fail; counted only when it does. */
#define CHECK_QUIET(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			test_failed++;                                                             \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
		}                                                                                  \
	} while (0)

static const uint8_t src_addr[6] = {192, 0, 2, 1, 0xca, 0x6c};

struct peer {
	struct wg_noise_local local;
	struct wg_noise_remote remote; /* the other peer */
	struct wg_cookie_checker checker;
	struct wg_cookie_maker maker;
	uint64_t realtime, mono;
};

static void peer_init(struct peer *p)
{
	uint8_t key[32];

	randombytes_buf(key, sizeof(key));
	wg_noise_local_init(&p->local, key);
	wg_cookie_checker_init(&p->checker, p->local.public_key);
	p->realtime = REALTIME;
	p->mono = 1000 * SEC;
}

static int peer_connect(struct peer *p, const struct peer *other, const uint8_t *psk)
{
	wg_cookie_maker_init(&p->maker, other->local.public_key);
	return wg_noise_remote_init(&p->remote, &p->local, other->local.public_key, psk);
}

static void make_pair(struct peer *a, struct peer *b, const uint8_t *psk_a, const uint8_t *psk_b)
{
	peer_init(a);
	peer_init(b);
	CHECK(!peer_connect(a, b, psk_a) && !peer_connect(b, a, psk_b), "peers set up");
}

/* Noise half of the responder: consume, peer check, accept into r. */
static int consume_and_accept(const struct peer *p, const struct wg_message_initiation *msg,
			      struct wg_noise_remote *r)
{
	struct wg_noise_initiation in;
	int ret;

	ret = wg_noise_consume_initiation(&p->local, msg, &in);
	if (ret)
		return ret;
	if (memcmp(in.remote_static, r->public_key, 32)) {
		sodium_memzero(&in, sizeof(in));
		return -ENOKEY;
	}
	return wg_noise_accept_initiation(r, &in, p->mono);
}

/* Responder side of an initiation: MACs, consume, peer check, accept. */
static int receive_initiation(struct peer *p, const struct wg_message_initiation *msg)
{
	if (wg_cookie_validate(&p->checker, msg, sizeof(*msg), src_addr, sizeof(src_addr),
			       p->mono) == WG_COOKIE_MAC_INVALID)
		return -EPERM;
	return consume_and_accept(p, msg, &p->remote);
}

/* A refused initiation must leave the responder's state as it was. */
static bool refused_untouched(struct peer *p, const struct wg_message_initiation *msg, int want)
{
	struct wg_noise_remote saved = p->remote;

	return receive_initiation(p, msg) == want && !memcmp(&saved, &p->remote, sizeof(saved));
}

static int send_initiation(struct peer *p, uint32_t index, struct wg_message_initiation *msg)
{
	int ret = wg_noise_create_initiation(&p->local, &p->remote, index, p->realtime, msg);

	wg_cookie_add_macs(&p->maker, msg, sizeof(*msg), p->mono);
	return ret;
}

static int send_response(struct peer *p, uint32_t index, struct wg_message_response *msg)
{
	int ret = wg_noise_create_response(&p->local, &p->remote, index, msg);

	wg_cookie_add_macs(&p->maker, msg, sizeof(*msg), p->mono);
	return ret;
}

static int receive_response(struct peer *p, const struct wg_message_response *msg)
{
	if (wg_cookie_validate(&p->checker, msg, sizeof(*msg), src_addr, sizeof(src_addr),
			       p->mono) == WG_COOKIE_MAC_INVALID)
		return -EPERM;
	return wg_noise_consume_response(&p->local, &p->remote, msg);
}

static uint32_t load_le32(const void *p)
{
	const uint8_t *b = p;

	return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
}

static void full_handshake(const char *name, struct peer *i, struct peer *r)
{
	const uint32_t i_index = 0x01020304, r_index = 0xa0b0c0d0;
	struct wg_message_initiation init;
	struct wg_message_response resp;
	struct wg_noise_keypair ik, rk;
	struct wg_noise_handshake zero = {0};

	printf("-- handshake %s\n", name);
	CHECK(!send_initiation(i, i_index, &init), "create_initiation");
	CHECK(i->remote.hs.state == WG_HS_CREATED_INITIATION, "initiator CREATED_INITIATION");
	CHECK(init.header.type == 1 && load_le32(&init.sender_index) == i_index,
	      "initiation type 1, sender index little-endian on the wire");
	CHECK(!receive_initiation(r, &init), "consume + accept initiation");
	CHECK(r->remote.hs.state == WG_HS_CONSUMED_INITIATION, "responder CONSUMED_INITIATION");
	CHECK(r->remote.hs.remote_index == i_index, "responder learned the initiator index");
	CHECK(!send_response(r, r_index, &resp), "create_response");
	CHECK(r->remote.hs.state == WG_HS_CREATED_RESPONSE, "responder CREATED_RESPONSE");
	CHECK(resp.header.type == 2 && load_le32(&resp.sender_index) == r_index &&
		  load_le32(&resp.receiver_index) == i_index,
	      "response type 2, indices little-endian on the wire");
	CHECK(!receive_response(i, &resp), "consume_response");
	CHECK(i->remote.hs.state == WG_HS_CONSUMED_RESPONSE, "initiator CONSUMED_RESPONSE");

	CHECK(!wg_noise_derive_keypair(&i->remote, &ik), "initiator derives keypair");
	CHECK(!wg_noise_derive_keypair(&r->remote, &rk), "responder derives keypair");
	CHECK(!memcmp(ik.send_key, rk.recv_key, 32) && !memcmp(ik.recv_key, rk.send_key, 32),
	      "keys match crosswise");
	CHECK(memcmp(ik.send_key, ik.recv_key, 32), "send and receive keys differ");
	CHECK(ik.initiator && !rk.initiator, "initiator flags");
	CHECK(ik.local_index == i_index && ik.remote_index == r_index &&
		  rk.local_index == r_index && rk.remote_index == i_index,
	      "indices");
	CHECK(!memcmp(&i->remote.hs, &zero, sizeof(zero)) &&
		  !memcmp(&r->remote.hs, &zero, sizeof(zero)),
	      "handshakes zeroed after derive");
	CHECK(wg_noise_derive_keypair(&i->remote, &ik) == -EINVAL, "derive twice: -EINVAL");
}

static void handshakes(void)
{
	uint8_t psk[32];
	struct peer a, b;

	make_pair(&a, &b, NULL, NULL);
	full_handshake("a -> b, no psk", &a, &b);
	a.realtime += SEC;
	b.realtime += SEC;
	a.mono += SEC;
	b.mono += SEC;
	full_handshake("b -> a, no psk", &b, &a);

	randombytes_buf(psk, sizeof(psk));
	make_pair(&a, &b, psk, psk);
	full_handshake("a -> b, psk", &a, &b);
	a.mono += SEC;
	b.mono += SEC;
	a.realtime += SEC;
	full_handshake("a -> b again", &a, &b);
}

/*
 * Flip each byte in turn. The receive path (MAC1/MAC2 then Noise) must drop
 * every variant; the bytes Noise itself authenticates must fail in consume +
 * accept alone, and leave the responder's state untouched. A cookie is held
 * so that MAC2 is checked too.
 */
static void tamper_initiation(void)
{
	struct wg_message_initiation init, bad;
	struct wg_message_cookie reply;
	struct wg_noise_remote r;
	unsigned int accepted = 0, noise_missed = 0, changed = 0;
	struct peer a, b;

	printf("-- tampering\n");
	make_pair(&a, &b, NULL, NULL);
	CHECK(!send_initiation(&a, 1, &init), "initiation");
	wg_cookie_create_reply(&b.checker, &init, sizeof(init), 1, src_addr, sizeof(src_addr),
			       b.mono, &reply);
	CHECK(!wg_cookie_consume_reply(&a.maker, &reply, a.mono), "cookie taken");
	CHECK(!send_initiation(&a, 1, &init), "initiation with mac2");
	r = b.remote;
	CHECK(wg_cookie_validate(&b.checker, &init, sizeof(init), src_addr, sizeof(src_addr),
				 b.mono) == WG_COOKIE_MAC1_AND_MAC2_VALID &&
		  !consume_and_accept(&b, &init, &r),
	      "untampered initiation passes MAC1, MAC2 and Noise");

	for (size_t i = 0; i < sizeof(init); i++) {
		bool noise_covered =
		    i < 4 || (i >= 8 && i < offsetof(struct wg_message_initiation, macs));
		int ret;

		memcpy(&bad, &init, sizeof(bad));
		((uint8_t *)&bad)[i] ^= 1 << (i % 8);
		r = b.remote;
		ret = consume_and_accept(&b, &bad, &r);
		if (wg_cookie_validate(&b.checker, &bad, sizeof(bad), src_addr, sizeof(src_addr),
				       b.mono) == WG_COOKIE_MAC1_AND_MAC2_VALID &&
		    !ret)
			accepted++;
		if (noise_covered && ret != -EBADMSG)
			noise_missed++;
		if (ret && memcmp(&r, &b.remote, sizeof(r)))
			changed++;
	}
	CHECK(!accepted, "each of %zu tampered initiation bytes dropped", sizeof(init));
	CHECK(!noise_missed, "Noise alone rejects tampered header/ephemeral/static/timestamp "
			     "(-EBADMSG); sender_index is MAC1's job");
	CHECK(!changed, "responder state untouched by every failed consume + accept");
}

static void tamper_response(void)
{
	struct wg_message_initiation init;
	struct wg_message_response resp, bad;
	struct wg_noise_remote saved;
	unsigned int accepted = 0, noise_missed = 0, changed = 0;
	struct peer a, b;

	make_pair(&a, &b, NULL, NULL);
	CHECK(!send_initiation(&a, 7, &init) && !receive_initiation(&b, &init) &&
		  !send_response(&b, 9, &resp),
	      "response");
	memcpy(&saved, &a.remote, sizeof(saved));

	for (size_t i = 0; i < sizeof(resp); i++) {
		bool noise_covered =
		    i < 4 || (i >= 8 && i < offsetof(struct wg_message_response, macs));
		enum wg_cookie_mac_state mac;
		int ret;

		memcpy(&bad, &resp, sizeof(bad));
		((uint8_t *)&bad)[i] ^= 0x80 >> (i % 8);
		mac = wg_cookie_validate(&a.checker, &bad, sizeof(bad), src_addr, sizeof(src_addr),
					 a.mono);
		ret = wg_noise_consume_response(&a.local, &a.remote, &bad);
		if (mac != WG_COOKIE_MAC_INVALID && !ret) {
			accepted++;
			memcpy(&a.remote, &saved, sizeof(saved));
			continue;
		}
		if (noise_covered && ret != -EBADMSG && ret != -ENOENT)
			noise_missed++;
		if (ret && memcmp(&a.remote, &saved, sizeof(saved)))
			changed++;
		memcpy(&a.remote, &saved, sizeof(saved));
	}
	/* mac2 is not checked without a cookie: flipping it alone is harmless. */
	CHECK(accepted == WG_MAC_LEN,
	      "tampered response bytes dropped, bar the %u unused mac2 bytes", accepted);
	CHECK(!noise_missed, "Noise alone rejects tampered header/receiver/ephemeral/empty");
	CHECK(!changed, "initiator state untouched by every failed consume_response");
	CHECK(!receive_response(&a, &resp), "the genuine response still works afterwards");
}

static void replay_and_flood(void)
{
	struct wg_message_initiation i1, i2, i3;
	struct peer a, b;

	printf("-- replay and flood\n");
	make_pair(&a, &b, NULL, NULL);
	CHECK(!send_initiation(&a, 1, &i1), "i1 at t");
	CHECK(!receive_initiation(&b, &i1), "i1 accepted");
	b.mono += SEC;
	CHECK(refused_untouched(&b, &i1, -ESTALE), "i1 replayed 1 s later: -ESTALE");

	a.realtime += SEC;
	CHECK(!send_initiation(&a, 2, &i2), "i2 at t + 1 s");
	a.realtime -= SEC / 2;
	CHECK(!send_initiation(&a, 3, &i3), "i3 at t + 0.5 s");
	b.mono += 10 * MS; /* 1.01 s after i1 was accepted: no flood */
	CHECK(!receive_initiation(&b, &i2), "i2 accepted");
	b.mono += SEC;
	CHECK(refused_untouched(&b, &i3, -ESTALE), "i3, older than i2: -ESTALE");

	a.realtime += SEC;
	CHECK(!send_initiation(&a, 4, &i1), "i4 at t + 1.5 s");
	a.realtime += SEC;
	CHECK(!send_initiation(&a, 5, &i2), "i5 at t + 2.5 s");
	CHECK(!receive_initiation(&b, &i1), "i4 accepted");
	b.mono += 10 * MS;
	CHECK(refused_untouched(&b, &i2, -EAGAIN), "i5 10 ms after i4: -EAGAIN");
	b.mono += 10 * MS - 1;
	CHECK(refused_untouched(&b, &i2, -EAGAIN), "i5 20 ms - 1 ns after i4: -EAGAIN");
	b.mono += 1;
	CHECK(!receive_initiation(&b, &i2), "i5 exactly 20 ms after i4: accepted");
	CHECK(b.remote.hs.remote_index == 5, "handshake state is i5's");
}

/*
 * consume_initiation passes for any static key that was encrypted to us, so
 * only accept_initiation (ss from precomputed_ss, then the timestamp)
 * proves it. Here c, who knows a's public key but not a's private key,
 * claims to be a, with a timestamp far in the future: b must refuse, and
 * keep its replay and flood state for a.
 */
static void impersonation(void)
{
	const uint64_t century = 100ULL * 365 * 86400 * SEC;
	struct wg_message_initiation forged, init;
	struct wg_noise_initiation in;
	struct wg_noise_remote saved, other;
	struct wg_noise_local mallory;
	struct peer a, b, c;

	printf("-- impersonation\n");
	make_pair(&a, &b, NULL, NULL);
	peer_init(&c);
	CHECK(!peer_connect(&c, &b, NULL), "c knows b");
	/* c's private key behind a's public key: s is a's key, ss is DH(c, B). */
	mallory = c.local;
	memcpy(mallory.public_key, a.local.public_key, 32);
	CHECK(!wg_noise_create_initiation(&mallory, &c.remote, 1, REALTIME + century, &forged),
	      "forged initiation claiming a, timestamp a century ahead");
	wg_cookie_add_macs(&c.maker, &forged, sizeof(forged), c.mono);
	sodium_memzero(&mallory, sizeof(mallory));

	CHECK(!wg_noise_consume_initiation(&b.local, &forged, &in) &&
		  !memcmp(in.remote_static, a.local.public_key, 32),
	      "consume decrypts the claimed static key (it proves nothing yet)");
	saved = b.remote;
	CHECK(wg_noise_accept_initiation(&b.remote, &in, b.mono) == -EBADMSG,
	      "accept: the timestamp does not decrypt under DH(b, A): -EBADMSG");
	CHECK(!memcmp(&saved, &b.remote, sizeof(saved)),
	      "  b's state for a untouched: latest timestamp, flood clock, handshake");
	CHECK(sodium_is_zero((const uint8_t *)&in, sizeof(in)), "  in zeroed");
	CHECK(refused_untouched(&b, &forged, -EBADMSG), "whole receive path: -EBADMSG, untouched");
	CHECK(!send_initiation(&a, 2, &init) && !receive_initiation(&b, &init),
	      "a's genuine initiation is still accepted");

	/* accept's own checks, for a caller whose lookup went wrong. */
	a.realtime += SEC;
	b.mono += SEC;
	CHECK(!send_initiation(&a, 3, &init), "another initiation from a");
	CHECK(!wg_noise_remote_init(&other, &b.local, c.local.public_key, NULL), "b's view of c");
	saved = other;
	CHECK(!wg_noise_consume_initiation(&b.local, &init, &in) &&
		  wg_noise_accept_initiation(&other, &in, b.mono) == -EINVAL,
	      "accept into the wrong peer: -EINVAL");
	CHECK(!memcmp(&saved, &other, sizeof(saved)) &&
		  sodium_is_zero((const uint8_t *)&in, sizeof(in)),
	      "  that peer untouched, in zeroed");
	memset(b.remote.precomputed_ss, 0, 32);
	saved = b.remote;
	CHECK(!wg_noise_consume_initiation(&b.local, &init, &in) &&
		  wg_noise_accept_initiation(&b.remote, &in, b.mono) == -EINVAL,
	      "accept with no precomputed DH(s, S): -EINVAL");
	CHECK(!memcmp(&saved, &b.remote, sizeof(saved)), "  untouched");
	CHECK(!wg_noise_remote_precompute(&b.remote, &b.local) && !receive_initiation(&b, &init),
	      "precomputed again: accepted");
	CHECK(b.remote.hs.remote_index == 3, "handshake state is the last initiation's");
}

static void wrong_keys(void)
{
	uint8_t psk1[32], psk2[32];
	struct wg_message_initiation init;
	struct wg_message_response resp;
	struct wg_noise_initiation in;
	struct peer a, b, c;

	printf("-- wrong keys\n");
	make_pair(&a, &b, NULL, NULL);
	peer_init(&c);
	/* a initiates to c, but the message reaches b. */
	CHECK(!peer_connect(&a, &c, NULL) && !send_initiation(&a, 1, &init), "a -> c initiation");
	CHECK(wg_noise_consume_initiation(&b.local, &init, &in) == -EBADMSG,
	      "initiation for another responder: -EBADMSG");

	/* c initiates to b; b decrypts it but does not know c. */
	CHECK(!peer_connect(&c, &b, NULL) && !send_initiation(&c, 1, &init), "c -> b initiation");
	CHECK(receive_initiation(&b, &init) == -ENOKEY, "unknown initiator: static key mismatch");

	/* b answers with the wrong idea of a's static key. */
	make_pair(&a, &b, NULL, NULL);
	CHECK(!send_initiation(&a, 1, &init) && !receive_initiation(&b, &init), "a -> b");
	memcpy(b.remote.public_key, c.local.public_key, 32);
	CHECK(!send_response(&b, 2, &resp), "response from b, believing a is c");
	CHECK(receive_response(&a, &resp) == -EBADMSG, "response with wrong se: -EBADMSG");

	randombytes_buf(psk1, sizeof(psk1));
	randombytes_buf(psk2, sizeof(psk2));
	make_pair(&a, &b, psk1, psk2);
	CHECK(!send_initiation(&a, 1, &init) && !receive_initiation(&b, &init),
	      "initiation does not depend on the psk");
	CHECK(!send_response(&b, 2, &resp) && receive_response(&a, &resp) == -EBADMSG,
	      "psk mismatch: response -EBADMSG");
	CHECK(a.remote.hs.state == WG_HS_CREATED_INITIATION, "initiator still waiting");

	make_pair(&a, &b, psk1, NULL);
	CHECK(!send_initiation(&a, 1, &init) && !receive_initiation(&b, &init) &&
		  !send_response(&b, 2, &resp) && receive_response(&a, &resp) == -EBADMSG,
	      "psk on one side only: response -EBADMSG");
}

static void low_order(void)
{
	static const uint8_t points[][32] = {
	    {0},
	    {1},
	    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
	     0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
	     0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
	     0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
	     0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	};
	struct wg_message_initiation init, bad;
	struct wg_noise_initiation in;
	struct peer a, b;

	printf("-- low-order points\n");
	peer_init(&a);
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		CHECK(wg_noise_remote_init(&a.remote, &a.local, points[i], NULL) == -EINVAL,
		      "remote_init rejects low-order point %zu", i);
		CHECK(sodium_is_zero(a.remote.precomputed_ss, 32),
		      "  and leaves no precomputed DH");
	}
	make_pair(&a, &b, NULL, NULL);
	CHECK(!send_initiation(&a, 1, &init), "initiation");
	memcpy(&bad, &init, sizeof(bad));
	memcpy(bad.unencrypted_ephemeral, points[2], 32);
	CHECK(wg_noise_consume_initiation(&b.local, &bad, &in) == -EBADMSG,
	      "low-order ephemeral in an initiation: -EBADMSG");
}

static void states(void)
{
	struct wg_message_initiation init;
	struct wg_message_response resp;
	struct wg_noise_keypair kp;
	struct wg_noise_local none;
	struct peer a, b;

	printf("-- states\n");
	make_pair(&a, &b, NULL, NULL);
	CHECK(wg_noise_create_response(&b.local, &b.remote, 1, &resp) == -EINVAL,
	      "create_response without an initiation: -EINVAL");
	CHECK(wg_noise_derive_keypair(&a.remote, &kp) == -EINVAL, "derive when ZEROED: -EINVAL");
	memset(&resp, 0, sizeof(resp));
	resp.header.type = 2;
	CHECK(wg_noise_consume_response(&a.local, &a.remote, &resp) == -ENOENT,
	      "consume_response when ZEROED: -ENOENT");

	CHECK(!send_initiation(&a, 0x55, &init), "initiation");
	CHECK(wg_noise_derive_keypair(&a.remote, &kp) == -EINVAL,
	      "derive in CREATED_INITIATION: -EINVAL");
	CHECK(!receive_initiation(&b, &init) && !send_response(&b, 0x66, &resp), "response");
	resp.receiver_index ^= 1;
	CHECK(wg_noise_consume_response(&a.local, &a.remote, &resp) == -ENOENT,
	      "response to another index: -ENOENT");
	resp.receiver_index ^= 1;
	CHECK(!wg_noise_consume_response(&a.local, &a.remote, &resp), "right index: accepted");
	CHECK(wg_noise_consume_response(&a.local, &a.remote, &resp) == -ENOENT,
	      "same response twice: -ENOENT");

	wg_noise_local_init(&none, (const uint8_t[32]){0});
	CHECK(!none.has_identity, "all-zero private key: no identity");
	CHECK(wg_noise_create_initiation(&none, &a.remote, 1, REALTIME, &init) == -EINVAL,
	      "create_initiation without identity: -EINVAL");
	CHECK(wg_noise_remote_init(&a.remote, &none, b.local.public_key, NULL) == -EINVAL,
	      "remote_init without identity: -EINVAL");
	CHECK((a.local.private_key[0] & 7) == 0 && (a.local.private_key[31] & 0xc0) == 0x40,
	      "local private key clamped");
}

/* Known answers: the initial chaining key and hash every implementation shares. */
static void known_answers(void)
{
	static const uint8_t ck_want[32] = {
	    0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0, 0x2e, 0xc3, 0x35,
	    0xe2, 0xa0, 0x25, 0xd2, 0xd0, 0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72,
	    0x77, 0xf5, 0x2d, 0x38, 0xd1, 0x98, 0x8b, 0x78, 0xcd, 0x36,
	};
	static const uint8_t hash_want[32] = {
	    0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66, 0x69, 0x12, 0x43,
	    0xdb, 0x45, 0x8a, 0xd5, 0x32, 0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93,
	    0xe8, 0xb7, 0x0e, 0xe1, 0x9c, 0x65, 0xba, 0x07, 0x9e, 0xf3,
	};
	static const char construction[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
	static const char identifier[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";
	uint8_t ck[32], hash[32], ts[12];
	static const uint8_t ts0[12] = {0x40, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0};
	static const uint8_t ts1[12] = {0x40, 0, 0, 0, 0, 0, 0, 0x0b, 0x1d, 0, 0, 0};

	printf("-- known answers\n");
	wg_hash(ck, construction, strlen(construction), NULL, 0);
	wg_hash(hash, ck, 32, identifier, strlen(identifier));
	CHECK(!memcmp(ck, ck_want, 32), "HASH(construction)");
	CHECK(!memcmp(hash, hash_want, 32), "HASH(ck || identifier)");

	wg_noise_tai64n(0, ts);
	CHECK(!memcmp(ts, ts0, 12), "TAI64N of the epoch is 2^62 + 10");
	wg_noise_tai64n(1500000123, ts);
	CHECK(!memcmp(ts, ts1, 12), "TAI64N of 1.500000123 s: nanoseconds rounded to 2^24");
}

/*
 * The batched responder (wg_noise_consume_initiations,
 * wg_noise_create_responses) against the single one. One responder, many
 * initiators; each batch mixes good initiations with broken ones. consume
 * is deterministic, so the batch must give byte for byte what the single
 * function gives for each message, for every batch size (below and above
 * the 8-lane threshold, partial lanes, more than WG_NOISE_BATCH); each
 * response must complete its initiator's handshake with matching keys, and
 * a response for a peer in the wrong state fails alone.
 */
#define BATCH_PEERS 40
static void batched(void)
{
	static struct peer resp, ini[BATCH_PEERS];
	static struct wg_noise_remote remote[BATCH_PEERS];
	static struct wg_message_initiation msg[BATCH_PEERS];
	static const struct wg_message_initiation *mp[BATCH_PEERS];
	static struct wg_noise_initiation in_b[BATCH_PEERS], in_s[BATCH_PEERS];
	static struct wg_message_response rmsg[BATCH_PEERS];
	static struct wg_noise_remote *rp[BATCH_PEERS];
	static uint32_t idx[BATCH_PEERS];
	int rc_b[BATCH_PEERS], rc_s[BATCH_PEERS];
	unsigned consume_same = 0, consume_rounds = 0, complete = 0, refused = 0, expect_ok = 0;
	unsigned wrong_state = 0;

	printf("-- batched responder\n");
	peer_init(&resp);
	for (int i = 0; i < BATCH_PEERS; i++) {
		peer_init(&ini[i]);
		CHECK_QUIET(!peer_connect(&ini[i], &resp, NULL) &&
			    !wg_noise_remote_init(&remote[i], &resp.local, ini[i].local.public_key,
						  NULL));
	}
	for (size_t n = 1; n <= BATCH_PEERS; n++) {
		/* Fresh initiations; every 7th broken one way or another. */
		for (size_t i = 0; i < n; i++) {
			ini[i].realtime += SEC;
			if (send_initiation(&ini[i], (uint32_t)(1000 * n + i), &msg[i]))
				test_failed++;
			switch (i % 7 == 3 ? (i / 7) % 4 : 4) {
			case 0:
				msg[i].encrypted_static[5] ^= 1; /* s does not decrypt */
				break;
			case 1:
				memset(msg[i].unencrypted_ephemeral, 0, 32); /* low order */
				break;
			case 2:
				msg[i].header.reserved[1] = 1; /* bad header */
				break;
			case 3:
				msg[i].unencrypted_ephemeral[31] ^= 0x80; /* top bit: same point */
				break;
			}
			mp[i] = &msg[i];
		}
		for (size_t i = 0; i < n; i++)
			rc_s[i] = wg_noise_consume_initiation(&resp.local, &msg[i], &in_s[i]);
		wg_noise_consume_initiations(&resp.local, mp, in_b, rc_b, n);
		consume_rounds++;
		consume_same += !memcmp(rc_s, rc_b, n * sizeof(rc_b[0])) &&
				!memcmp(in_s, in_b, n * sizeof(in_b[0]));

		/* Accept what decrypts; then respond to all of them in one batch. */
		size_t a = 0;
		for (size_t i = 0; i < n; i++) {
			sodium_memzero(&in_s[i], sizeof(in_s[i]));
			if (rc_b[i])
				continue;
			resp.mono += SEC;
			if (memcmp(in_b[i].remote_static, remote[i].public_key, 32) ||
			    wg_noise_accept_initiation(&remote[i], &in_b[i], resp.mono)) {
				test_failed++;
				continue;
			}
			rp[a] = &remote[i];
			idx[a++] = (uint32_t)i;
		}
		/* One peer in the wrong state: only its response fails. */
		size_t wrong = a > 2 ? a / 2 : a;
		if (wrong < a)
			wg_noise_handshake_clear(&rp[wrong]->hs);
		wg_noise_create_responses(&resp.local, rp, idx, rmsg, rc_b, a);
		for (size_t j = 0; j < a; j++) {
			uint32_t i = idx[j];
			struct wg_noise_keypair ik, rk;

			if (j == wrong) {
				wrong_state += rc_b[j] == -EINVAL;
				continue;
			}
			expect_ok++;
			if (!rc_b[j] && !wg_noise_derive_keypair(rp[j], &rk) &&
			    !wg_noise_consume_response(&ini[i].local, &ini[i].remote, &rmsg[j]) &&
			    !wg_noise_derive_keypair(&ini[i].remote, &ik) &&
			    !memcmp(ik.send_key, rk.recv_key, 32) &&
			    !memcmp(ik.recv_key, rk.send_key, 32) && rk.local_index == i &&
			    rk.remote_index == 1000 * n + i)
				complete++;
			sodium_memzero(&ik, sizeof(ik));
			sodium_memzero(&rk, sizeof(rk));
		}
		refused += n - a;
	}
	CHECK(consume_same == consume_rounds,
	      "consume: batch == single, rc and bytes, for n = 1..%d (%u of %u rounds)",
	      BATCH_PEERS, consume_same, consume_rounds);
	CHECK(complete == expect_ok && expect_ok > 0,
	      "batched responses complete the initiators' handshakes (%u of %u)", complete,
	      expect_ok);
	CHECK(wrong_state > 0 && refused > 0,
	      "a peer in the wrong state fails alone (%u times); broken initiations refused (%u)",
	      wrong_state, refused);
	CHECK(wg_x25519_mb_impl() != NULL, "8-lane X25519 implementation: %s", wg_x25519_mb_impl());
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	known_answers();
	handshakes();
	tamper_initiation();
	tamper_response();
	replay_and_flood();
	impersonation();
	wrong_keys();
	low_order();
	states();
	batched();
	return test_finish("noise");
}
