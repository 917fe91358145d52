// SPDX-License-Identifier: MIT
/*
 * MAC1, MAC2 and cookie replies between a maker (the sender, a) and a
 * checker (the receiver, b), with an injected clock.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "cookie.h"
#include "noise.h"
#include "test_util.h"

#define SEC 1000000000ULL
#define T0  (5000 * SEC)

static const uint8_t src_a[6] = {192, 0, 2, 1, 0xca, 0x6c};
static const uint8_t src_other[6] = {192, 0, 2, 2, 0xca, 0x6c};
static const uint8_t src_a6[18] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1, 0xca, 0x6c};

struct keys {
	uint8_t a[32], b[32], c[32];
};

static void make_keys(struct keys *k)
{
	struct wg_noise_local l;
	uint8_t priv[32];

	randombytes_buf(priv, sizeof(priv));
	wg_noise_local_init(&l, priv);
	memcpy(k->a, l.public_key, 32);
	randombytes_buf(priv, sizeof(priv));
	wg_noise_local_init(&l, priv);
	memcpy(k->b, l.public_key, 32);
	randombytes_buf(priv, sizeof(priv));
	wg_noise_local_init(&l, priv);
	memcpy(k->c, l.public_key, 32);
	wg_noise_local_clear(&l);
}

/* A handshake-shaped message: random body, header of the given type. */
static void fake_initiation(struct wg_message_initiation *msg)
{
	randombytes_buf(msg, sizeof(*msg));
	memset(&msg->header, 0, sizeof(msg->header));
	msg->header.type = WG_MSG_HANDSHAKE_INITIATION;
}

static enum wg_cookie_mac_state validate(struct wg_cookie_checker *c, const void *msg, size_t len,
					 const uint8_t *src, size_t src_len, uint64_t now)
{
	return wg_cookie_validate(c, msg, len, src, src_len, now);
}

static void mac1(const struct keys *k)
{
	struct wg_cookie_checker checker;
	struct wg_cookie_maker maker, wrong;
	struct wg_message_initiation msg;
	struct wg_message_response resp;

	printf("-- mac1\n");
	wg_cookie_checker_init(&checker, k->b);
	wg_cookie_maker_init(&maker, k->b);
	wg_cookie_maker_init(&wrong, k->c);

	fake_initiation(&msg);
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0);
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, T0) == WG_COOKIE_MAC1_VALID,
	      "mac1 for b's key validates at b");
	CHECK(sodium_is_zero(msg.macs.mac2, WG_MAC_LEN), "mac2 zero without a cookie");
	CHECK(maker.have_sent_mac1 && !memcmp(maker.last_mac1_sent, msg.macs.mac1, WG_MAC_LEN),
	      "maker remembers the mac1 it sent");

	randombytes_buf(&resp, sizeof(resp));
	wg_cookie_add_macs(&maker, &resp, sizeof(resp), T0);
	CHECK(validate(&checker, &resp, sizeof(resp), src_a, 6, T0) == WG_COOKIE_MAC1_VALID,
	      "works for a response-sized message too");

	wg_cookie_add_macs(&wrong, &msg, sizeof(msg), T0);
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, T0) == WG_COOKIE_MAC_INVALID,
	      "mac1 made for another key: invalid");
	CHECK(validate(&checker, &msg, sizeof(msg) - 1, src_a, 6, T0) == WG_COOKIE_MAC_INVALID,
	      "wrong length: invalid");
	CHECK(validate(&checker, &msg, 31, src_a, 6, T0) == WG_COOKIE_MAC_INVALID,
	      "shorter than the MACs: invalid");
}

static void round_trip(const struct keys *k)
{
	struct wg_cookie_checker checker;
	struct wg_cookie_maker maker;
	struct wg_message_initiation msg;
	struct wg_message_cookie reply;
	uint64_t now = T0;

	printf("-- cookie round trip\n");
	wg_cookie_checker_init(&checker, k->b);
	wg_cookie_maker_init(&maker, k->b);
	fake_initiation(&msg);

	CHECK(wg_cookie_consume_reply(&maker, &reply, now) == -ENOENT,
	      "reply before any mac1 was sent: -ENOENT");
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), now);
	CHECK(
	    !wg_cookie_create_reply(&checker, &msg, sizeof(msg), 0x01020304, src_a, 6, now, &reply),
	    "checker makes a reply");
	CHECK(reply.header.type == 3 && !reply.header.reserved[0] && !reply.header.reserved[1] &&
		  !reply.header.reserved[2],
	      "reply header type 3");
	CHECK(((uint8_t *)&reply.receiver_index)[0] == 0x04 &&
		  ((uint8_t *)&reply.receiver_index)[3] == 0x01,
	      "receiver index little-endian on the wire");
	CHECK(wg_cookie_create_reply(&checker, &msg, 31, 1, src_a, 6, now, &reply) == -EINVAL,
	      "reply to a too short message: -EINVAL");
	CHECK(
	    !wg_cookie_create_reply(&checker, &msg, sizeof(msg), 0x01020304, src_a, 6, now, &reply),
	    "reply again");

	now += SEC;
	CHECK(!wg_cookie_consume_reply(&maker, &reply, now), "maker takes the cookie");
	CHECK(maker.cookie_valid && !maker.have_sent_mac1, "cookie held, mac1 consumed");
	CHECK(wg_cookie_consume_reply(&maker, &reply, now) == -ENOENT, "same reply twice: -ENOENT");

	wg_cookie_add_macs(&maker, &msg, sizeof(msg), now);
	CHECK(!sodium_is_zero(msg.macs.mac2, WG_MAC_LEN), "next message carries mac2");
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, now) == WG_COOKIE_MAC1_AND_MAC2_VALID,
	      "mac1 and mac2 valid from the same source");
	CHECK(validate(&checker, &msg, sizeof(msg), src_other, 6, now) == WG_COOKIE_MAC1_VALID,
	      "mac2 from another address: only mac1 valid");
	msg.macs.mac2[3] ^= 4;
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, now) == WG_COOKIE_MAC1_VALID,
	      "tampered mac2: only mac1 valid");
	msg.macs.mac2[3] ^= 4;

	/* IPv6 sources: 16 address bytes then the port. */
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), now);
	CHECK(!wg_cookie_create_reply(&checker, &msg, sizeof(msg), 1, src_a6, sizeof(src_a6), now,
				      &reply) &&
		  !wg_cookie_consume_reply(&maker, &reply, now),
	      "IPv6 cookie taken");
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), now);
	CHECK(validate(&checker, &msg, sizeof(msg), src_a6, sizeof(src_a6), now) ==
		  WG_COOKIE_MAC1_AND_MAC2_VALID,
	      "IPv6 mac2 valid");
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, now) == WG_COOKIE_MAC1_VALID,
	      "IPv6 cookie is not an IPv4 cookie");
}

static void bad_replies(const struct keys *k)
{
	struct wg_cookie_checker checker, other;
	struct wg_cookie_maker maker;
	struct wg_message_initiation m1, m2;
	struct wg_message_cookie reply, bad;

	printf("-- bad replies\n");
	wg_cookie_checker_init(&checker, k->b);
	wg_cookie_checker_init(&other, k->c);
	wg_cookie_maker_init(&maker, k->b);
	fake_initiation(&m1);
	fake_initiation(&m2);

	wg_cookie_add_macs(&maker, &m1, sizeof(m1), T0);
	wg_cookie_create_reply(&checker, &m1, sizeof(m1), 1, src_a, 6, T0, &reply);
	wg_cookie_add_macs(&maker, &m2, sizeof(m2), T0);
	CHECK(wg_cookie_consume_reply(&maker, &reply, T0) == -EBADMSG,
	      "reply to an earlier message (wrong AD): -EBADMSG");
	CHECK(!maker.cookie_valid && maker.have_sent_mac1, "maker unchanged");

	wg_cookie_create_reply(&other, &m2, sizeof(m2), 1, src_a, 6, T0, &reply);
	CHECK(wg_cookie_consume_reply(&maker, &reply, T0) == -EBADMSG,
	      "reply encrypted for another peer's key: -EBADMSG");

	wg_cookie_create_reply(&checker, &m2, sizeof(m2), 1, src_a, 6, T0, &reply);
	for (size_t i = 0; i < sizeof(reply); i++) {
		if (i >= 4 && i < 8)
			continue; /* receiver_index only routes the reply */
		memcpy(&bad, &reply, sizeof(bad));
		((uint8_t *)&bad)[i] ^= 0x10;
		if (wg_cookie_consume_reply(&maker, &bad, T0) != -EBADMSG) {
			CHECK(0, "tampered reply byte %zu refused", i);
			return;
		}
	}
	CHECK(1, "every tampered reply byte (bar receiver_index) refused: -EBADMSG");
	CHECK(!wg_cookie_consume_reply(&maker, &reply, T0), "the genuine reply still works");
}

static void rotation(const struct keys *k)
{
	struct wg_cookie_checker checker;
	struct wg_cookie_maker maker;
	struct wg_message_initiation msg;
	struct wg_message_cookie reply;

	printf("-- secret rotation and cookie age\n");
	wg_cookie_checker_init(&checker, k->b);
	wg_cookie_maker_init(&maker, k->b);
	fake_initiation(&msg);

	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0);
	wg_cookie_create_reply(&checker, &msg, sizeof(msg), 1, src_a, 6, T0, &reply);
	CHECK(!wg_cookie_consume_reply(&maker, &reply, T0), "cookie at T0");
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0);

	/* The same message, checked later: only the checker's secret ages. */
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, T0 + 119 * SEC) ==
		  WG_COOKIE_MAC1_AND_MAC2_VALID,
	      "old cookie still valid at T0 + 119 s");
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, T0 + 120 * SEC) ==
		  WG_COOKIE_MAC1_VALID,
	      "secret rotated at T0 + 120 s: old cookie no longer valid");

	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0 + 121 * SEC);
	wg_cookie_create_reply(&checker, &msg, sizeof(msg), 1, src_a, 6, T0 + 121 * SEC, &reply);
	CHECK(!wg_cookie_consume_reply(&maker, &reply, T0 + 121 * SEC), "new cookie");
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0 + 121 * SEC);
	CHECK(validate(&checker, &msg, sizeof(msg), src_a, 6, T0 + 122 * SEC) ==
		  WG_COOKIE_MAC1_AND_MAC2_VALID,
	      "new cookie valid after rotation");

	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0 + 121 * SEC + 115 * SEC - 1);
	CHECK(!sodium_is_zero(msg.macs.mac2, WG_MAC_LEN), "maker uses a cookie up to 115 s old");
	wg_cookie_add_macs(&maker, &msg, sizeof(msg), T0 + 121 * SEC + 115 * SEC);
	CHECK(sodium_is_zero(msg.macs.mac2, WG_MAC_LEN), "and no longer at 115 s");
}

int main(void)
{
	struct keys k;

	if (sodium_init() < 0)
		return 1;
	make_keys(&k);
	mac1(&k);
	round_trip(&k);
	bad_replies(&k);
	rotation(&k);
	return test_finish("cookie");
}
