// SPDX-License-Identifier: MIT
/*
 * The WireGuard handshake. This implements Noise_IKpsk2:
 *
 *   <- s
 *   ******
 *   -> e, es, s, ss, {t}
 *   <- e, ee, se, psk, {}
 *
 * Each step below is commented with its token. Secrets are wiped with
 * sodium_memzero on every path; consume functions work on copies and commit
 * only once the message has authenticated. X25519 is x25519.h's.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "kdf.h"
#include "noise.h"
#include "x25519.h"
#include "x25519_mb.h"

/*
 * Every handshake starts from the same two values, so they are constants
 * here, as Linux and wireguard-go compute them once:
 *   ck0 = HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
 *   h0 = HASH(ck0 || "WireGuard v1 zx2c4 Jason@zx2c4.com")
 * test_noise.c's known answers recompute them, and the fuzz seeds that
 * wg-corpus-fresh checks byte for byte would change with them.
 */
static const uint8_t handshake_ck0[32] = {
    0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0, 0x2e, 0xc3, 0x35, 0xe2, 0xa0, 0x25, 0xd2, 0xd0,
    0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72, 0x77, 0xf5, 0x2d, 0x38, 0xd1, 0x98, 0x8b, 0x78, 0xcd, 0x36,
};
static const uint8_t handshake_h0[32] = {
    0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66, 0x69, 0x12, 0x43, 0xdb, 0x45, 0x8a, 0xd5, 0x32,
    0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93, 0xe8, 0xb7, 0x0e, 0xe1, 0x9c, 0x65, 0xba, 0x07, 0x9e, 0xf3,
};

/* TAI64 label of the Unix epoch: 2^62 + 10 leap seconds, as wireguard-go. */
#define TAI64_EPOCH 0x400000000000000aULL
/* 2^24 ns: the largest power of two under 1 s / WG_INITIATIONS_PER_SECOND. */
#define TAI64N_WHITENER (1U << 24)
_Static_assert(TAI64N_WHITENER <= WG_NSEC_PER_SEC / WG_INITIATIONS_PER_SECOND &&
		   2 * TAI64N_WHITENER > WG_NSEC_PER_SEC / WG_INITIATIONS_PER_SECOND,
	       "whitener is the largest power of two below the flood interval");

static void clamp_key(uint8_t key[32])
{
	key[0] &= 248;
	key[31] = (key[31] & 127) | 64;
}

/* out = DH(priv, pub); false if the result is all zero (low-order point). */
static bool dh(uint8_t out[32], const uint8_t priv[32], const uint8_t pub[32])
{
	return wg_x25519(out, priv, pub) == 0;
}

static bool generate_ephemeral(uint8_t priv[32], uint8_t pub[32])
{
	return wg_x25519_keygen(priv, pub) == 0;
}

/*
 * An ephemeral key that stays inside k, for a side that needs only DHs with
 * it (the responder: ee and se), which then cost less (x25519.h).
 */
static bool generate_ephemeral_key(struct wg_x25519_key *k, uint8_t pub[32])
{
	uint8_t priv[32];
	bool ok;

	randombytes_buf(priv, sizeof(priv));
	clamp_key(priv);
	ok = wg_x25519_key_init(k, priv, pub) == 0;
	sodium_memzero(priv, sizeof(priv));
	return ok;
}

static bool header_ok(const struct wg_message_header *h, enum wg_message_type type)
{
	/* Linux and wireguard-go compare the whole little-endian u32. */
	return h->type == type && !h->reserved[0] && !h->reserved[1] && !h->reserved[2];
}

static void header_set(struct wg_message_header *h, enum wg_message_type type)
{
	memset(h, 0, sizeof(*h));
	h->type = type;
}

/* ck = ck0; h = HASH(h0 || responder_static) */
static void handshake_init(uint8_t ck[32], uint8_t hash[32], const uint8_t responder_static[32])
{
	memcpy(ck, handshake_ck0, 32);
	wg_hash(hash, handshake_h0, 32, responder_static, 32);
}

static void mix_hash(uint8_t hash[32], const void *in, size_t len)
{
	wg_hash(hash, hash, 32, in, len);
}

/* ck = KDF1(ck, e); h = HASH(h || e) */
static void mix_ephemeral(uint8_t ck[32], uint8_t hash[32], const uint8_t ephemeral[32])
{
	mix_hash(hash, ephemeral, 32);
	wg_kdf(ck, NULL, NULL, ck, ephemeral, 32);
}

/* (ck, key) = KDF2(ck, DH(priv, pub)), or ck = KDF1(...) if key is NULL. */
static bool mix_dh(uint8_t ck[32], uint8_t *key, const uint8_t priv[32], const uint8_t pub[32])
{
	uint8_t shared[32];

	if (!dh(shared, priv, pub))
		return false;
	wg_kdf(ck, key, NULL, ck, shared, sizeof(shared));
	sodium_memzero(shared, sizeof(shared));
	return true;
}

static bool mix_precomputed_dh(uint8_t ck[32], uint8_t key[32], const uint8_t shared[32])
{
	if (sodium_is_zero(shared, 32))
		return false;
	wg_kdf(ck, key, NULL, ck, shared, 32);
	return true;
}

/* (ck, tau, key) = KDF3(ck, psk); h = HASH(h || tau) */
static void mix_psk(uint8_t ck[32], uint8_t hash[32], uint8_t key[32], const uint8_t psk[32])
{
	uint8_t tau[32];

	wg_kdf(ck, tau, key, ck, psk, 32);
	mix_hash(hash, tau, sizeof(tau));
	sodium_memzero(tau, sizeof(tau));
}

/* Handshake AEADs use each key exactly once, so the nonce is always zero. */
static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

/* dst = AEAD(key, 0, src, h); h = HASH(h || dst). dst has len + 16 bytes. */
static void encrypt_and_hash(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[32],
			     uint8_t hash[32])
{
	crypto_aead_chacha20poly1305_ietf_encrypt(dst, NULL, src, len, hash, 32, NULL, zero_nonce,
						  key);
	mix_hash(hash, dst, len + WG_AUTHTAG_LEN);
}

/* dst = AEAD-open(key, 0, src, h); h = HASH(h || src). src has len + 16 bytes. */
static bool decrypt_and_hash(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[32],
			     uint8_t hash[32])
{
	if (crypto_aead_chacha20poly1305_ietf_decrypt(dst, NULL, NULL, src, len + WG_AUTHTAG_LEN,
						      hash, 32, zero_nonce, key) != 0)
		return false;
	mix_hash(hash, src, len + WG_AUTHTAG_LEN);
	return true;
}

void wg_noise_local_init(struct wg_noise_local *l, const uint8_t private_key[32])
{
	sodium_memzero(l, sizeof(*l));
	if (sodium_init() < 0 || !private_key || sodium_is_zero(private_key, 32))
		return;
	memcpy(l->private_key, private_key, 32);
	clamp_key(l->private_key);
	if (wg_x25519_base(l->public_key, l->private_key) != 0) {
		sodium_memzero(l, sizeof(*l));
		return;
	}
	l->has_identity = true;
}

void wg_noise_local_clear(struct wg_noise_local *l)
{
	sodium_memzero(l, sizeof(*l));
}

int wg_noise_remote_precompute(struct wg_noise_remote *r, const struct wg_noise_local *l)
{
	if (l->has_identity && dh(r->precomputed_ss, l->private_key, r->public_key))
		return 0;
	sodium_memzero(r->precomputed_ss, sizeof(r->precomputed_ss));
	return -EINVAL;
}

int wg_noise_remote_init(struct wg_noise_remote *r, const struct wg_noise_local *l,
			 const uint8_t public_key[32], const uint8_t psk[32])
{
	sodium_memzero(r, sizeof(*r));
	memcpy(r->public_key, public_key, 32);
	if (psk)
		memcpy(r->preshared_key, psk, 32);
	return wg_noise_remote_precompute(r, l);
}

void wg_noise_remote_clear(struct wg_noise_remote *r)
{
	sodium_memzero(r, sizeof(*r));
}

void wg_noise_handshake_clear(struct wg_noise_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
	hs->state = WG_HS_ZEROED;
}

int wg_noise_create_initiation(const struct wg_noise_local *l, struct wg_noise_remote *r,
			       uint32_t local_index, uint64_t realtime_ns,
			       struct wg_message_initiation *msg)
{
	struct wg_noise_handshake *hs = &r->hs;
	uint8_t key[32], timestamp[WG_TIMESTAMP_LEN];
	int ret = -EINVAL;

	if (!l->has_identity)
		return -EINVAL;
	wg_noise_handshake_clear(hs);
	handshake_init(hs->chaining_key, hs->hash, r->public_key);
	header_set(&msg->header, WG_MSG_HANDSHAKE_INITIATION);
	msg->sender_index = htole32(local_index);

	/* e */
	if (!generate_ephemeral(hs->ephemeral_private, msg->unencrypted_ephemeral))
		goto out;
	mix_ephemeral(hs->chaining_key, hs->hash, msg->unencrypted_ephemeral);

	/* es */
	if (!mix_dh(hs->chaining_key, key, hs->ephemeral_private, r->public_key))
		goto out;

	/* s */
	encrypt_and_hash(msg->encrypted_static, l->public_key, 32, key, hs->hash);

	/* ss */
	if (!mix_precomputed_dh(hs->chaining_key, key, r->precomputed_ss))
		goto out;

	/* {t} */
	wg_noise_tai64n(realtime_ns, timestamp);
	encrypt_and_hash(msg->encrypted_timestamp, timestamp, WG_TIMESTAMP_LEN, key, hs->hash);

	hs->local_index = local_index;
	hs->state = WG_HS_CREATED_INITIATION;
	ret = 0;
out:
	if (ret)
		wg_noise_handshake_clear(hs);
	sodium_memzero(key, sizeof(key));
	return ret;
}

/*
 * The responder's X25519 operations per handshake: es here (variable base);
 * in create_response e (fixed base), ee and se (variable base). ss is never
 * computed per handshake: accept_initiation takes it from the peer's
 * precomputed_ss. So 3 variable-base + 1 fixed-base, where computing ss here
 * would make it 4 + 1.
 *
 * Each step is split around its X25519 work, so that the batched forms
 * (wg_noise_consume_initiations, wg_noise_create_responses) run the DHs of
 * many handshakes in one call of x25519_mb.h, 8 lanes at a time.
 */

/* e: everything before es. ck and hash are the running state. */
static int consume_initiation_pre(const struct wg_noise_local *l,
				  const struct wg_message_initiation *msg,
				  struct wg_noise_initiation *out, uint8_t ck[32], uint8_t hash[32])
{
	sodium_memzero(out, sizeof(*out));
	if (!l->has_identity)
		return -EINVAL;
	if (!header_ok(&msg->header, WG_MSG_HANDSHAKE_INITIATION))
		return -EBADMSG;
	handshake_init(ck, hash, l->public_key);

	/* e */
	memcpy(out->remote_ephemeral, msg->unencrypted_ephemeral, 32);
	mix_ephemeral(ck, hash, out->remote_ephemeral);
	return 0;
}

/* es (its DH given: es_ok false if it was all zero), s, and the hand-over. */
static int consume_initiation_post(const struct wg_message_initiation *msg,
				   struct wg_noise_initiation *out, uint8_t ck[32],
				   uint8_t hash[32], uint8_t es[32], bool es_ok)
{
	uint8_t key[32];
	int ret = -EBADMSG;

	/* es */
	if (!es_ok)
		goto out;
	wg_kdf(ck, key, NULL, ck, es, 32);

	/* s */
	if (!decrypt_and_hash(out->remote_static, msg->encrypted_static, 32, key, hash))
		goto out;

	/*
	 * ss and {t} wait for the peer's precomputed DH(s, S), once the caller
	 * has found the peer by remote_static. Until the timestamp decrypts,
	 * the static key proves nothing: anyone who knows our public key can
	 * encrypt any static key under es.
	 */
	memcpy(out->encrypted_timestamp, msg->encrypted_timestamp,
	       sizeof(out->encrypted_timestamp));
	out->remote_index = le32toh(msg->sender_index);
	memcpy(out->hash, hash, 32);
	memcpy(out->chaining_key, ck, 32);
	ret = 0;
out:
	if (ret)
		sodium_memzero(out, sizeof(*out));
	sodium_memzero(ck, 32);
	sodium_memzero(hash, 32);
	sodium_memzero(es, 32);
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_consume_initiation(const struct wg_noise_local *l,
				const struct wg_message_initiation *msg,
				struct wg_noise_initiation *out)
{
	uint8_t ck[32], hash[32], es[32];
	int ret = consume_initiation_pre(l, msg, out, ck, hash);

	if (ret)
		return ret;
	return consume_initiation_post(msg, out, ck, hash, es,
				       dh(es, l->private_key, out->remote_ephemeral));
}

static bool mb_fast(void)
{
	return !strcmp(wg_x25519_mb_impl(), "ifma");
}

/*
 * X25519 of n lanes: with the 8-lane code when that is cheaper than one call
 * per lane (a batch costs about as much as WG_NOISE_MB_MIN_LANES single
 * operations), else one call each. The lanes left over after whole batches
 * of 8 go to whichever is cheaper for their number.
 */
static void dh_lanes(uint8_t (*out)[32], const uint8_t (*scalar)[32], const uint8_t (*point)[32],
		     int *rc, size_t n)
{
	size_t mb = n - n % WG_X25519_MB_LANES;

	if (n % WG_X25519_MB_LANES >= WG_NOISE_MB_MIN_LANES)
		mb = n;
	if (!mb_fast())
		mb = 0;
	if (mb)
		wg_x25519_mb(out, scalar, point, rc, mb);
	for (size_t i = mb; i < n; i++)
		rc[i] = wg_x25519(out[i], scalar[i], point[i]);
}

void wg_noise_consume_initiations(const struct wg_noise_local *l,
				  const struct wg_message_initiation *const *msg,
				  struct wg_noise_initiation *out, int *rc, size_t n)
{
	uint8_t ck[WG_NOISE_BATCH][32], hash[WG_NOISE_BATCH][32];
	uint8_t scalar[WG_NOISE_BATCH][32], point[WG_NOISE_BATCH][32], es[WG_NOISE_BATCH][32];
	int es_rc[WG_NOISE_BATCH];
	size_t lane[WG_NOISE_BATCH];

	while (n > WG_NOISE_BATCH) {
		wg_noise_consume_initiations(l, msg, out, rc, WG_NOISE_BATCH);
		msg += WG_NOISE_BATCH;
		out += WG_NOISE_BATCH;
		rc += WG_NOISE_BATCH;
		n -= WG_NOISE_BATCH;
	}
	size_t lanes = 0;
	for (size_t i = 0; i < n; i++) {
		rc[i] = consume_initiation_pre(l, msg[i], &out[i], ck[i], hash[i]);
		if (rc[i])
			continue;
		memcpy(scalar[lanes], l->private_key, 32);
		memcpy(point[lanes], out[i].remote_ephemeral, 32);
		lane[i] = lanes++;
	}
	dh_lanes(es, (const uint8_t(*)[32])scalar, (const uint8_t(*)[32])point, es_rc, lanes);
	for (size_t i = 0; i < n; i++) {
		if (rc[i])
			continue;
		rc[i] = consume_initiation_post(msg[i], &out[i], ck[i], hash[i], es[lane[i]],
						es_rc[lane[i]] == 0);
	}
	sodium_memzero(scalar, sizeof(scalar[0]) * lanes);
	sodium_memzero(es, sizeof(es[0]) * lanes);
}

static bool initiation_too_soon(const struct wg_noise_remote *r, uint64_t mono_ns)
{
	return r->last_initiation_ns &&
	       mono_ns < r->last_initiation_ns + WG_NSEC_PER_SEC / WG_INITIATIONS_PER_SECOND;
}

/* ss, then {t}: authenticates the whole initiation. Works on copies of in. */
static int decrypt_timestamp(const struct wg_noise_remote *r, const struct wg_noise_initiation *in,
			     uint8_t ck[32], uint8_t hash[32], uint8_t timestamp[WG_TIMESTAMP_LEN])
{
	uint8_t key[32];
	int ret = -EINVAL;

	memcpy(ck, in->chaining_key, 32);
	memcpy(hash, in->hash, 32);

	/* ss: all zero if r's key is low order or our identity is gone */
	if (!mix_precomputed_dh(ck, key, r->precomputed_ss))
		goto out;

	/* {t} */
	ret = -EBADMSG;
	if (!decrypt_and_hash(timestamp, in->encrypted_timestamp, WG_TIMESTAMP_LEN, key, hash))
		goto out;
	ret = 0;
out:
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_accept_initiation(struct wg_noise_remote *r, struct wg_noise_initiation *in,
			       uint64_t mono_ns)
{
	struct wg_noise_handshake *hs = &r->hs;
	uint8_t ck[32], hash[32], timestamp[WG_TIMESTAMP_LEN];
	int ret = -EINVAL;

	/* The caller's lookup went wrong: precomputed_ss is another key's. */
	if (sodium_memcmp(in->remote_static, r->public_key, 32))
		goto out;
	ret = decrypt_timestamp(r, in, ck, hash, timestamp);
	if (ret)
		goto out;

	/*
	 * Authentic from here on, but possibly a replay: TAI64N is big-endian,
	 * so byte order is time order.
	 */
	if (memcmp(timestamp, r->latest_timestamp, WG_TIMESTAMP_LEN) <= 0) {
		ret = -ESTALE;
		goto out;
	}
	if (initiation_too_soon(r, mono_ns)) {
		ret = -EAGAIN;
		goto out;
	}
	memcpy(r->latest_timestamp, timestamp, WG_TIMESTAMP_LEN);
	r->last_initiation_ns = mono_ns;

	wg_noise_handshake_clear(hs);
	hs->remote_index = in->remote_index;
	memcpy(hs->hash, hash, 32);
	memcpy(hs->chaining_key, ck, 32);
	memcpy(hs->remote_ephemeral, in->remote_ephemeral, 32);
	hs->state = WG_HS_CONSUMED_INITIATION;
out:
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(hash, sizeof(hash));
	sodium_memzero(timestamp, sizeof(timestamp));
	sodium_memzero(in, sizeof(*in));
	return ret;
}

/* The response's header and e: everything before its DHs. */
static int create_response_pre(const struct wg_noise_local *l, struct wg_noise_remote *r,
			       uint32_t local_index, struct wg_message_response *msg)
{
	if (!l->has_identity || r->hs.state != WG_HS_CONSUMED_INITIATION)
		return -EINVAL;
	header_set(&msg->header, WG_MSG_HANDSHAKE_RESPONSE);
	msg->sender_index = htole32(local_index);
	msg->receiver_index = htole32(r->hs.remote_index);
	return 0;
}

/* e (its public key given), ee, se (their DHs given), psk, {}. */
static int create_response_post(struct wg_noise_remote *r, uint32_t local_index,
				struct wg_message_response *msg, bool e_ok, uint8_t ee[32],
				bool ee_ok, uint8_t se[32], bool se_ok)
{
	struct wg_noise_handshake *hs = &r->hs;
	uint8_t key[32];
	int ret = -EINVAL;

	/* e */
	if (!e_ok)
		goto out;
	mix_ephemeral(hs->chaining_key, hs->hash, msg->unencrypted_ephemeral);

	/* ee */
	if (!ee_ok)
		goto out;
	wg_kdf(hs->chaining_key, NULL, NULL, hs->chaining_key, ee, 32);

	/* se */
	if (!se_ok)
		goto out;
	wg_kdf(hs->chaining_key, NULL, NULL, hs->chaining_key, se, 32);

	/* psk */
	mix_psk(hs->chaining_key, hs->hash, key, r->preshared_key);

	/* {} */
	encrypt_and_hash(msg->encrypted_nothing, NULL, 0, key, hs->hash);

	hs->local_index = local_index;
	hs->state = WG_HS_CREATED_RESPONSE;
	ret = 0;
out:
	if (ret)
		wg_noise_handshake_clear(hs);
	sodium_memzero(ee, 32);
	sodium_memzero(se, 32);
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_create_response(const struct wg_noise_local *l, struct wg_noise_remote *r,
			     uint32_t local_index, struct wg_message_response *msg)
{
	struct wg_x25519_key ephemeral = {0};
	uint8_t ee[32], se[32];
	bool e_ok, ee_ok = false, se_ok = false;
	int ret = create_response_pre(l, r, local_index, msg);

	if (ret)
		return ret;
	/* e: the private key is needed for ee and se only, so it stays in one key object */
	e_ok = generate_ephemeral_key(&ephemeral, msg->unencrypted_ephemeral);
	if (e_ok)
		ee_ok = wg_x25519_key_dh(&ephemeral, ee, r->hs.remote_ephemeral) == 0;
	if (ee_ok)
		se_ok = wg_x25519_key_dh(&ephemeral, se, r->public_key) == 0;
	/* The responder's ephemeral is of no further use: forget it now. */
	wg_x25519_key_clear(&ephemeral);
	return create_response_post(r, local_index, msg, e_ok, ee, ee_ok, se, se_ok);
}

void wg_noise_create_responses(const struct wg_noise_local *l, struct wg_noise_remote *const *r,
			       const uint32_t *local_index, struct wg_message_response *msg,
			       int *rc, size_t n)
{
	/* Three lanes per response: e = X25519(e, 9), ee, se. */
	static const uint8_t base[32] = {9};
	uint8_t scalar[3 * WG_NOISE_BATCH][32], point[3 * WG_NOISE_BATCH][32];
	uint8_t out[3 * WG_NOISE_BATCH][32];
	int out_rc[3 * WG_NOISE_BATCH];
	size_t lane[WG_NOISE_BATCH], lanes = 0;

	while (n > WG_NOISE_BATCH) {
		wg_noise_create_responses(l, r, local_index, msg, rc, WG_NOISE_BATCH);
		r += WG_NOISE_BATCH;
		local_index += WG_NOISE_BATCH;
		msg += WG_NOISE_BATCH;
		rc += WG_NOISE_BATCH;
		n -= WG_NOISE_BATCH;
	}
	/* Too few lanes to fill a batch: the single path is cheaper. */
	if (3 * n < WG_NOISE_MB_MIN_LANES || !mb_fast()) {
		for (size_t i = 0; i < n; i++)
			rc[i] = wg_noise_create_response(l, r[i], local_index[i], &msg[i]);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		rc[i] = create_response_pre(l, r[i], local_index[i], &msg[i]);
		if (rc[i])
			continue;
		size_t k = lanes;
		randombytes_buf(scalar[k], 32);
		clamp_key(scalar[k]);
		memcpy(scalar[k + 1], scalar[k], 32);
		memcpy(scalar[k + 2], scalar[k], 32);
		memcpy(point[k], base, 32);
		memcpy(point[k + 1], r[i]->hs.remote_ephemeral, 32);
		memcpy(point[k + 2], r[i]->public_key, 32);
		lane[i] = k;
		lanes += 3;
	}
	dh_lanes(out, (const uint8_t(*)[32])scalar, (const uint8_t(*)[32])point, out_rc, lanes);
	/* The responders' ephemerals are of no further use: forget them now. */
	sodium_memzero(scalar, sizeof(scalar[0]) * lanes);
	for (size_t i = 0; i < n; i++) {
		if (rc[i])
			continue;
		size_t k = lane[i];
		memcpy(msg[i].unencrypted_ephemeral, out[k], 32);
		rc[i] = create_response_post(r[i], local_index[i], &msg[i], out_rc[k] == 0,
					     out[k + 1], out_rc[k + 1] == 0, out[k + 2],
					     out_rc[k + 2] == 0);
	}
}

int wg_noise_consume_response(const struct wg_noise_local *l, struct wg_noise_remote *r,
			      const struct wg_message_response *msg)
{
	struct wg_noise_handshake *hs = &r->hs;
	uint8_t ck[32], hash[32], key[32], remote_ephemeral[32];
	uint8_t nothing[1];
	int ret = -EBADMSG;

	if (hs->state != WG_HS_CREATED_INITIATION ||
	    le32toh(msg->receiver_index) != hs->local_index)
		return -ENOENT;
	if (!l->has_identity)
		return -EINVAL;
	if (!header_ok(&msg->header, WG_MSG_HANDSHAKE_RESPONSE))
		return -EBADMSG;
	memcpy(ck, hs->chaining_key, 32);
	memcpy(hash, hs->hash, 32);

	/* e */
	memcpy(remote_ephemeral, msg->unencrypted_ephemeral, 32);
	mix_ephemeral(ck, hash, remote_ephemeral);

	/* ee */
	if (!mix_dh(ck, NULL, hs->ephemeral_private, remote_ephemeral))
		goto out;

	/* se */
	if (!mix_dh(ck, NULL, l->private_key, remote_ephemeral))
		goto out;

	/* psk */
	mix_psk(ck, hash, key, r->preshared_key);

	/* {} */
	if (!decrypt_and_hash(nothing, msg->encrypted_nothing, 0, key, hash))
		goto out;

	memcpy(hs->chaining_key, ck, 32);
	memcpy(hs->hash, hash, 32);
	memcpy(hs->remote_ephemeral, remote_ephemeral, 32);
	sodium_memzero(hs->ephemeral_private, sizeof(hs->ephemeral_private));
	hs->remote_index = le32toh(msg->sender_index);
	hs->state = WG_HS_CONSUMED_RESPONSE;
	ret = 0;
out:
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(hash, sizeof(hash));
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_derive_keypair(struct wg_noise_remote *r, struct wg_noise_keypair *kp)
{
	struct wg_noise_handshake *hs = &r->hs;
	uint8_t t1[32], t2[32];
	bool initiator;

	if (hs->state == WG_HS_CONSUMED_RESPONSE)
		initiator = true;
	else if (hs->state == WG_HS_CREATED_RESPONSE)
		initiator = false;
	else
		return -EINVAL;

	/* (T_send, T_recv) = KDF2(ck, empty) for the initiator, swapped for the responder */
	wg_kdf(t1, t2, NULL, hs->chaining_key, NULL, 0);
	memcpy(kp->send_key, initiator ? t1 : t2, 32);
	memcpy(kp->recv_key, initiator ? t2 : t1, 32);
	kp->local_index = hs->local_index;
	kp->remote_index = hs->remote_index;
	kp->initiator = initiator;

	sodium_memzero(t1, sizeof(t1));
	sodium_memzero(t2, sizeof(t2));
	wg_noise_handshake_clear(hs);
	return 0;
}

static void store_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void store_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void wg_noise_tai64n(uint64_t realtime_ns, uint8_t out[12])
{
	uint32_t nsec = (uint32_t)(realtime_ns % WG_NSEC_PER_SEC);

	store_be64(out, TAI64_EPOCH + realtime_ns / WG_NSEC_PER_SEC);
	store_be32(out + 8, nsec & ~(TAI64N_WHITENER - 1));
}
