// SPDX-License-Identifier: MIT
/*
 * MAC1, MAC2 and cookie replies:
 *
 *   mac1   = MAC(HASH("mac1----" || S_receiver), msg up to mac1)
 *   cookie = MAC(secret (rotated every 2 min), src IP || src port)
 *   mac2   = MAC(cookie, msg up to mac2)
 *   reply  = XAEAD(HASH("cookie--" || S_receiver), nonce, cookie, mac1)
 *
 * where MAC is keyed BLAKE2s with a 16-byte digest.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "cookie.h"
#include "kdf.h"

static const char label_mac1[8] = "mac1----";
static const char label_cookie[8] = "cookie--";

#define SECRET_MAX_AGE_NS (WG_COOKIE_SECRET_MAX_AGE * 1000000000ULL)
#define COOKIE_MAX_AGE_NS ((WG_COOKIE_SECRET_MAX_AGE - WG_COOKIE_SECRET_LATENCY) * 1000000000ULL)

_Static_assert(sizeof(((struct wg_message_cookie *)0)->nonce) ==
		   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
	       "cookie nonce is an XChaCha20 nonce");

static void derive_key(uint8_t key[32], const char label[8], const uint8_t public_key[32])
{
	wg_hash(key, label, 8, public_key, 32);
}

/* The MACs end every handshake message; len >= sizeof(struct wg_message_macs). */
static struct wg_message_macs *macs_of(const void *msg, size_t len)
{
	return (struct wg_message_macs *)((uintptr_t)msg + len - sizeof(struct wg_message_macs));
}

/* MAC1 covers the message up to mac1. */
static void compute_mac1(uint8_t mac[WG_MAC_LEN], const void *msg, size_t len,
			 const uint8_t key[32])
{
	wg_mac(mac, WG_MAC_LEN, key, 32, msg, len - sizeof(struct wg_message_macs));
}

/* MAC2 covers the message up to mac2, MAC1 included. */
static void compute_mac2(uint8_t mac[WG_MAC_LEN], const void *msg, size_t len,
			 const uint8_t cookie[WG_COOKIE_LEN])
{
	wg_mac(mac, WG_MAC_LEN, cookie, WG_COOKIE_LEN, msg, len - WG_MAC_LEN);
}

static void make_cookie(struct wg_cookie_checker *c, uint8_t cookie[WG_COOKIE_LEN],
			const uint8_t *src, size_t src_len, uint64_t mono_ns)
{
	if (!c->secret_valid || mono_ns - c->secret_birth_ns >= SECRET_MAX_AGE_NS) {
		randombytes_buf(c->secret, sizeof(c->secret));
		c->secret_birth_ns = mono_ns;
		c->secret_valid = true;
	}
	wg_mac(cookie, WG_COOKIE_LEN, c->secret, sizeof(c->secret), src, src_len);
}

void wg_cookie_checker_init(struct wg_cookie_checker *c, const uint8_t local_public[32])
{
	sodium_memzero(c, sizeof(*c));
	if (sodium_init() < 0)
		return;
	derive_key(c->mac1_key, label_mac1, local_public);
	derive_key(c->cookie_encryption_key, label_cookie, local_public);
}

enum wg_cookie_mac_state wg_cookie_validate(struct wg_cookie_checker *c, const void *msg,
					    size_t len, const uint8_t *src, size_t src_len,
					    uint64_t mono_ns)
{
	enum wg_cookie_mac_state ret = WG_COOKIE_MAC_INVALID;
	uint8_t computed[WG_MAC_LEN], cookie[WG_COOKIE_LEN];
	const struct wg_message_macs *macs;

	if (len < sizeof(struct wg_message_macs))
		return WG_COOKIE_MAC_INVALID;
	macs = macs_of(msg, len);

	compute_mac1(computed, msg, len, c->mac1_key);
	if (sodium_memcmp(computed, macs->mac1, WG_MAC_LEN))
		goto out;
	ret = WG_COOKIE_MAC1_VALID;

	make_cookie(c, cookie, src, src_len, mono_ns);
	compute_mac2(computed, msg, len, cookie);
	if (sodium_memcmp(computed, macs->mac2, WG_MAC_LEN))
		goto out;
	ret = WG_COOKIE_MAC1_AND_MAC2_VALID;
out:
	sodium_memzero(cookie, sizeof(cookie));
	sodium_memzero(computed, sizeof(computed));
	return ret;
}

int wg_cookie_create_reply(struct wg_cookie_checker *c, const void *msg, size_t len,
			   uint32_t receiver_index, const uint8_t *src, size_t src_len,
			   uint64_t mono_ns, struct wg_message_cookie *out)
{
	const struct wg_message_macs *macs;
	uint8_t cookie[WG_COOKIE_LEN];

	if (len < sizeof(struct wg_message_macs))
		return -EINVAL;
	macs = macs_of(msg, len);

	memset(&out->header, 0, sizeof(out->header));
	out->header.type = WG_MSG_HANDSHAKE_COOKIE;
	out->receiver_index = htole32(receiver_index);
	randombytes_buf(out->nonce, sizeof(out->nonce));

	make_cookie(c, cookie, src, src_len, mono_ns);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->encrypted_cookie, NULL, cookie,
						   sizeof(cookie), macs->mac1, WG_MAC_LEN, NULL,
						   out->nonce, c->cookie_encryption_key);
	sodium_memzero(cookie, sizeof(cookie));
	return 0;
}

void wg_cookie_maker_init(struct wg_cookie_maker *m, const uint8_t remote_public[32])
{
	sodium_memzero(m, sizeof(*m));
	if (sodium_init() < 0)
		return;
	derive_key(m->mac1_key, label_mac1, remote_public);
	derive_key(m->cookie_decryption_key, label_cookie, remote_public);
}

void wg_cookie_add_macs(struct wg_cookie_maker *m, void *msg, size_t len, uint64_t mono_ns)
{
	struct wg_message_macs *macs;

	if (len < sizeof(struct wg_message_macs))
		return;
	macs = macs_of(msg, len);

	compute_mac1(macs->mac1, msg, len, m->mac1_key);
	memcpy(m->last_mac1_sent, macs->mac1, WG_MAC_LEN);
	m->have_sent_mac1 = true;

	if (m->cookie_valid && mono_ns - m->cookie_birth_ns < COOKIE_MAX_AGE_NS)
		compute_mac2(macs->mac2, msg, len, m->cookie);
	else
		memset(macs->mac2, 0, WG_MAC_LEN);
}

int wg_cookie_consume_reply(struct wg_cookie_maker *m, const struct wg_message_cookie *msg,
			    uint64_t mono_ns)
{
	uint8_t cookie[WG_COOKIE_LEN];

	if (!m->have_sent_mac1)
		return -ENOENT;
	if (msg->header.type != WG_MSG_HANDSHAKE_COOKIE || msg->header.reserved[0] ||
	    msg->header.reserved[1] || msg->header.reserved[2])
		return -EBADMSG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		cookie, NULL, NULL, msg->encrypted_cookie, sizeof(msg->encrypted_cookie),
		m->last_mac1_sent, WG_MAC_LEN, msg->nonce, m->cookie_decryption_key) != 0)
		return -EBADMSG;

	memcpy(m->cookie, cookie, sizeof(cookie));
	m->cookie_birth_ns = mono_ns;
	m->cookie_valid = true;
	/* One reply per message sent: a second one is a replay. */
	m->have_sent_mac1 = false;
	sodium_memzero(cookie, sizeof(cookie));
	return 0;
}
