// SPDX-License-Identifier: MIT
/*
 * How many responder handshakes one core completes per second, and what a
 * flooded responder's cookie replies cost instead:
 *
 *   meshgate-bench-handshake [seconds]     (default 2 s of timed work per row)
 *
 * One responder knows BENCH_PEERS initiators (a wg_noise_remote each, with
 * DH(s, S) precomputed by wg_noise_remote_init). Every round, each initiator
 * makes a fresh initiation with MAC1; that happens between timed chunks. The
 * timed chunk then runs the responder path over the round, in the order of
 * rx_initiation in control/handshake.c: wg_cookie_validate, consume,
 * peer lookup, accept, create_response, add_macs, derive_keypair.
 *
 * Timestamps rise by 1 s per round, and the injected monotonic clock by
 * ceil(20 ms / BENCH_PEERS) per message, so consecutive initiations of one
 * peer are >= 1 / WG_INITIATIONS_PER_SECOND apart and none is refused: every
 * non-zero return counts as a failure and fails the run.
 *
 * When linked with -Wl,--wrap for each function of x25519.h (see
 * meson.build), X25519 calls made by the wg code are counted, so the X25519
 * column is measured rather than asserted. The X25519 rows time each
 * operation on both libraries that x25519.h chooses from.
 *
 * us/op is wall-clock time; CPU us/op is this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), which leaves out time the core spent on other
 * processes: when the two differ, the machine was busy.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "cookie.h"
#include "noise.h"
#include "x25519.h"
#include "x25519_mb.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

#define BENCH_PEERS	   1024
#define BENCH_TABLE_SIZE   (4 * BENCH_PEERS) /* power of two, load 1/4 */
#define BENCH_X25519_CHUNK 256
#define FLOOD_NS	   (WG_NSEC_PER_SEC / WG_INITIATIONS_PER_SECOND)
#define SRC_LEN		   6

_Static_assert((BENCH_TABLE_SIZE & (BENCH_TABLE_SIZE - 1)) == 0, "table size is a power of two");

/* 192.0.2.1:51820, every message: only MAC2 would depend on it. */
static const uint8_t bench_src[SRC_LEN] = {192, 0, 2, 1, 0xca, 0x6c};

/* ---- X25519 call counting ---------------------------------------------------- */

/*
 * Calls by kind: variable base one-shot (wg_x25519) and with a key object
 * (wg_x25519_key_dh); fixed base alone (wg_x25519_base, _keygen) and making
 * a key object (wg_x25519_key_init); lanes of the 8-lane code (wg_x25519_mb:
 * the responder's fixed-base e is one of them, computed as X25519(e, 9)).
 */
enum { X_VAR, X_KEY_DH, X_BASE, X_KEY_INIT, X_MB_LANE, X_KINDS };
static uint64_t x25519_calls[X_KINDS];

#ifdef BENCH_COUNT_X25519
#define WRAP(name, kind, params, args)                                                             \
	int __real_##name params;                                                                  \
	int __wrap_##name params;                                                                  \
	int __wrap_##name params                                                                   \
	{                                                                                          \
		x25519_calls[kind]++;                                                              \
		return __real_##name args;                                                         \
	}
WRAP(wg_x25519, X_VAR, (uint8_t * out, const uint8_t *s, const uint8_t *p), (out, s, p))
WRAP(wg_x25519_key_dh, X_KEY_DH, (struct wg_x25519_key * k, uint8_t *out, const uint8_t *p),
     (k, out, p))
WRAP(wg_x25519_base, X_BASE, (uint8_t * out, const uint8_t *s), (out, s))
WRAP(wg_x25519_keygen, X_BASE, (uint8_t * priv, uint8_t *pub), (priv, pub))
WRAP(wg_x25519_key_init, X_KEY_INIT, (struct wg_x25519_key * k, const uint8_t *s, uint8_t *pub),
     (k, s, pub))
#undef WRAP
int __real_wg_x25519_mb(uint8_t (*out)[32], const uint8_t (*s)[32], const uint8_t (*p)[32], int *rc,
			size_t n);
int __wrap_wg_x25519_mb(uint8_t (*out)[32], const uint8_t (*s)[32], const uint8_t (*p)[32], int *rc,
			size_t n);
int __wrap_wg_x25519_mb(uint8_t (*out)[32], const uint8_t (*s)[32], const uint8_t (*p)[32], int *rc,
			size_t n)
{
	x25519_calls[X_MB_LANE] += n;
	return __real_wg_x25519_mb(out, s, p, rc, n);
}
#endif

/* ---- clocks ------------------------------------------------------------------ */

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * WG_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static uint64_t cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static uint64_t tsc(void)
{
#if HAVE_TSC
	return __rdtsc();
#else
	return 0;
#endif
}

/* TSC ticks per ns, against CLOCK_MONOTONIC over 200 ms. */
static double tsc_calibrate(void)
{
	struct timespec pause = {.tv_nsec = 200 * 1000 * 1000};
	uint64_t t0 = now_ns(), c0 = tsc();

	nanosleep(&pause, NULL);
	return (double)(tsc() - c0) / (double)(now_ns() - t0);
}

/* ---- the two sides ----------------------------------------------------------- */

struct bench_initiator {
	struct wg_noise_local local;
	struct wg_noise_remote remote; /* the responder */
	struct wg_cookie_maker maker;
};

/* The responder's view of one initiator, like struct cp_peer's noise + cookie. */
struct bench_peer {
	struct wg_noise_remote noise;
	struct wg_cookie_maker cookie;
};

struct bench {
	struct wg_noise_local local;
	struct wg_cookie_checker checker;
	struct bench_peer *peers;
	struct bench_initiator *initiators;
	/* Open addressing, linear probing: peer number + 1, 0 = empty. */
	uint32_t table[BENCH_TABLE_SIZE];
	uint8_t table_key[crypto_shorthash_KEYBYTES];
	bool linear; /* look peers up like cp_peer_find instead */
	struct wg_message_initiation batch[BENCH_PEERS];
	uint64_t realtime_ns, mono_ns;
	uint32_t next_index;
	uint64_t failures;
	uint64_t budget_ns;
};

/*
 * SipHash-2-4 of the key under a random key: initiators choose their static
 * keys, so a table keyed by raw key bytes could be made to collide.
 */
static uint32_t table_slot(const struct bench *b, const uint8_t pub[32])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, pub, 32, b->table_key);
	memcpy(&v, h, sizeof(v));
	return (uint32_t)v & (BENCH_TABLE_SIZE - 1);
}

static void table_insert(struct bench *b, uint32_t peer)
{
	uint32_t i = table_slot(b, b->peers[peer].noise.public_key);

	while (b->table[i])
		i = (i + 1) & (BENCH_TABLE_SIZE - 1);
	b->table[i] = peer + 1;
}

static struct bench_peer *find_hashed(struct bench *b, const uint8_t pub[32])
{
	for (uint32_t i = table_slot(b, pub); b->table[i]; i = (i + 1) & (BENCH_TABLE_SIZE - 1)) {
		struct bench_peer *p = &b->peers[b->table[i] - 1];

		if (!memcmp(p->noise.public_key, pub, 32))
			return p;
	}
	return NULL;
}

/* What control/device.c's cp_peer_find does today. */
static struct bench_peer *find_linear(struct bench *b, const uint8_t pub[32])
{
	for (uint32_t i = 0; i < BENCH_PEERS; i++)
		if (!sodium_memcmp(b->peers[i].noise.public_key, pub, 32))
			return &b->peers[i];
	return NULL;
}

static int bench_init(struct bench *b)
{
	uint8_t key[32];

	randombytes_buf(key, sizeof(key));
	wg_noise_local_init(&b->local, key);
	wg_cookie_checker_init(&b->checker, b->local.public_key);
	randombytes_buf(b->table_key, sizeof(b->table_key));
	b->peers = calloc(BENCH_PEERS, sizeof(*b->peers));
	b->initiators = calloc(BENCH_PEERS, sizeof(*b->initiators));
	if (!b->local.has_identity || !b->peers || !b->initiators)
		return -ENOMEM;
	b->realtime_ns = 1700000000ULL * WG_NSEC_PER_SEC;
	b->mono_ns = 1000 * WG_NSEC_PER_SEC;

	for (uint32_t k = 0; k < BENCH_PEERS; k++) {
		struct bench_initiator *ini = &b->initiators[k];
		struct bench_peer *p = &b->peers[k];

		randombytes_buf(key, sizeof(key));
		wg_noise_local_init(&ini->local, key);
		if (wg_noise_remote_init(&ini->remote, &ini->local, b->local.public_key, NULL) ||
		    wg_noise_remote_init(&p->noise, &b->local, ini->local.public_key, NULL))
			return -EINVAL;
		wg_cookie_maker_init(&ini->maker, b->local.public_key);
		wg_cookie_maker_init(&p->cookie, ini->local.public_key);
		table_insert(b, k);
	}
	sodium_memzero(key, sizeof(key));
	return 0;
}

static void bench_clear(struct bench *b)
{
	sodium_memzero(b->peers, BENCH_PEERS * sizeof(*b->peers));
	sodium_memzero(b->initiators, BENCH_PEERS * sizeof(*b->initiators));
	free(b->peers);
	free(b->initiators);
	sodium_memzero(b, sizeof(*b));
}

/* One fresh initiation (with MAC1) per initiator, 1 s later than the last round's. */
static int make_round(struct bench *b)
{
	b->realtime_ns += WG_NSEC_PER_SEC;
	/* Whatever path ran the last round, a peer's next initiation is one
	 * flood interval later at least. */
	b->mono_ns += FLOOD_NS;
	for (uint32_t k = 0; k < BENCH_PEERS; k++) {
		struct bench_initiator *ini = &b->initiators[k];

		if (wg_noise_create_initiation(&ini->local, &ini->remote, k, b->realtime_ns,
					       &b->batch[k]))
			return -EINVAL;
		wg_cookie_add_macs(&ini->maker, &b->batch[k], sizeof(b->batch[k]), 0);
	}
	return 0;
}

/*
 * The responder's path for one initiation, as rx_initiation in
 * control/handshake.c runs it (minus the dataplane messages): one clock
 * reading for the whole message.
 */
static int respond(struct bench *b, const struct wg_message_initiation *msg,
		   struct wg_message_response *resp, struct wg_noise_keypair *kp)
{
	uint64_t now = b->mono_ns += (FLOOD_NS + BENCH_PEERS - 1) / BENCH_PEERS;
	struct wg_noise_initiation in;
	struct bench_peer *p;
	int ret;

	if (wg_cookie_validate(&b->checker, msg, sizeof(*msg), bench_src, SRC_LEN, now) ==
	    WG_COOKIE_MAC_INVALID)
		return -EPERM;
	ret = wg_noise_consume_initiation(&b->local, msg, &in);
	if (ret)
		return ret;
	p = b->linear ? find_linear(b, in.remote_static) : find_hashed(b, in.remote_static);
	if (!p) {
		sodium_memzero(&in, sizeof(in));
		return -ENOKEY;
	}
	ret = wg_noise_accept_initiation(&p->noise, &in, now);
	if (ret)
		return ret;
	ret = wg_noise_create_response(&b->local, &p->noise, b->next_index++, resp);
	if (ret)
		return ret;
	ret = wg_noise_derive_keypair(&p->noise, kp);
	if (ret)
		return ret;
	wg_cookie_add_macs(&p->cookie, resp, sizeof(*resp), now);
	return 0;
}

/*
 * The responder's path for a batch of initiations, as rx_initiations in
 * control/handshake.c runs the initiations of one poll of the dataplane's
 * ring (up to WG_NOISE_BATCH): MACs each, then e/es/s of all, lookups and
 * accepts, then the responses of all, then keys and MACs.
 */
static int respond_batch(struct bench *b, const struct wg_message_initiation *msgs, size_t n,
			 struct wg_message_response *resp, struct wg_noise_keypair *kp)
{
	const struct wg_message_initiation *msg[WG_NOISE_BATCH];
	struct wg_noise_initiation in[WG_NOISE_BATCH];
	struct wg_noise_remote *remote[WG_NOISE_BATCH];
	struct bench_peer *peer[WG_NOISE_BATCH];
	uint32_t idx[WG_NOISE_BATCH];
	int rc[WG_NOISE_BATCH], bad = 0;
	uint64_t now = b->mono_ns += (FLOOD_NS + BENCH_PEERS - 1) / BENCH_PEERS * n;

	for (size_t i = 0; i < n; i++) {
		if (wg_cookie_validate(&b->checker, &msgs[i], sizeof(msgs[i]), bench_src, SRC_LEN,
				       now) == WG_COOKIE_MAC_INVALID)
			return -EPERM;
		msg[i] = &msgs[i];
	}
	wg_noise_consume_initiations(&b->local, msg, in, rc, n);
	for (size_t i = 0; i < n; i++) {
		struct bench_peer *p = rc[i] ? NULL : find_hashed(b, in[i].remote_static);
		if (!p || wg_noise_accept_initiation(&p->noise, &in[i], now))
			return -ENOKEY;
		idx[i] = b->next_index++;
		remote[i] = &p->noise;
		peer[i] = p;
	}
	wg_noise_create_responses(&b->local, remote, idx, resp, rc, n);
	for (size_t i = 0; i < n; i++) {
		if (rc[i] || wg_noise_derive_keypair(&peer[i]->noise, &kp[i])) {
			bad++;
			continue;
		}
		wg_cookie_add_macs(&peer[i]->cookie, &resp[i], sizeof(resp[i]), now);
	}
	return bad ? -EBADMSG : 0;
}

/*
 * Untimed: a whole round, each response taken by its initiator, whose keys
 * must match the responder's. Proves that the timed path does the real work.
 */
static int self_check(struct bench *b)
{
	struct wg_message_response resp;
	struct wg_noise_keypair rk, ik;
	int bad = 0;

	if (make_round(b))
		return -EINVAL;
	for (uint32_t k = 0; k < BENCH_PEERS; k++) {
		struct bench_initiator *ini = &b->initiators[k];

		if (respond(b, &b->batch[k], &resp, &rk) ||
		    wg_noise_consume_response(&ini->local, &ini->remote, &resp) ||
		    wg_noise_derive_keypair(&ini->remote, &ik) ||
		    memcmp(ik.send_key, rk.recv_key, 32) || memcmp(ik.recv_key, rk.send_key, 32))
			bad++;
	}
	/* The batched path, the same way. */
	if (make_round(b))
		return -EINVAL;
	for (uint32_t k = 0; k < BENCH_PEERS; k += WG_NOISE_BATCH) {
		struct wg_message_response rs[WG_NOISE_BATCH];
		struct wg_noise_keypair rks[WG_NOISE_BATCH];

		if (respond_batch(b, &b->batch[k], WG_NOISE_BATCH, rs, rks)) {
			bad++;
			continue;
		}
		for (uint32_t i = 0; i < WG_NOISE_BATCH; i++) {
			struct bench_initiator *ini = &b->initiators[k + i];

			if (wg_noise_consume_response(&ini->local, &ini->remote, &rs[i]) ||
			    wg_noise_derive_keypair(&ini->remote, &ik) ||
			    memcmp(ik.send_key, rks[i].recv_key, 32) ||
			    memcmp(ik.recv_key, rks[i].send_key, 32))
				bad++;
		}
		sodium_memzero(rks, sizeof(rks));
	}
	sodium_memzero(&rk, sizeof(rk));
	sodium_memzero(&ik, sizeof(ik));
	return bad ? -EBADMSG : 0;
}

/* ---- rows -------------------------------------------------------------------- */

struct row {
	const char *name;
	int (*prepare)(struct bench *b);
	uint64_t (*chunk)(struct bench *b);
	uint64_t ops, ns, cpu_ns, tsc, x25519[X_KINDS];
};

/* wg_x25519: libsodium's crypto_scalarmult. */
static uint64_t chunk_x25519_var(struct bench *b)
{
	uint8_t scalar[32], point[32];

	randombytes_buf(scalar, sizeof(scalar));
	memcpy(point, b->local.public_key, 32);
	for (int i = 0; i < BENCH_X25519_CHUNK; i++)
		if (wg_x25519(point, scalar, point))
			b->failures++;
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

/*
 * What a one-shot wg_x25519 on OpenSSL would cost: import the scalar (which
 * derives its public key), import the point, derive. Not used by wg/.
 */
static int openssl_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t point[32])
{
	EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, 32);
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, point, 32);
	EVP_PKEY_CTX *ctx = key ? EVP_PKEY_CTX_new(key, NULL) : NULL;
	size_t len = 32;
	int ret = -EINVAL;

	if (peer && ctx && EVP_PKEY_derive_init(ctx) == 1 &&
	    EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) == 1 && EVP_PKEY_derive(ctx, out, &len) == 1)
		ret = 0;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(key);
	return ret;
}

static uint64_t chunk_x25519_var_openssl(struct bench *b)
{
	uint8_t scalar[32], point[32];

	randombytes_buf(scalar, sizeof(scalar));
	memcpy(point, b->local.public_key, 32);
	for (int i = 0; i < BENCH_X25519_CHUNK; i++) {
		x25519_calls[X_VAR]++; /* not through x25519.h: count it here */
		if (openssl_x25519(point, scalar, point))
			b->failures++;
	}
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

/* wg_x25519_key_dh: OpenSSL, the scalar imported once for the whole chunk. */
static uint64_t chunk_x25519_key_dh(struct bench *b)
{
	uint8_t scalar[32], point[32];
	struct wg_x25519_key k;

	randombytes_buf(scalar, sizeof(scalar));
	if (wg_x25519_key_init(&k, scalar, point)) {
		b->failures++;
		return 0;
	}
#ifdef BENCH_COUNT_X25519
	x25519_calls[X_KEY_INIT]--; /* outside what this row measures */
#endif
	memcpy(point, b->local.public_key, 32);
	for (int i = 0; i < BENCH_X25519_CHUNK; i++)
		if (wg_x25519_key_dh(&k, point, point))
			b->failures++;
	wg_x25519_key_clear(&k);
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

static uint64_t chunk_x25519_base_sodium(struct bench *b)
{
	uint8_t scalar[32], point[32];

	randombytes_buf(scalar, sizeof(scalar));
	for (int i = 0; i < BENCH_X25519_CHUNK; i++) {
		x25519_calls[X_BASE]++; /* not through x25519.h: count it here */
		if (crypto_scalarmult_base(point, scalar))
			b->failures++;
		scalar[i & 31] ^= point[0];
	}
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

/* wg_x25519_base: OpenSSL. */
static uint64_t chunk_x25519_base(struct bench *b)
{
	uint8_t scalar[32], point[32];

	randombytes_buf(scalar, sizeof(scalar));
	for (int i = 0; i < BENCH_X25519_CHUNK; i++) {
		if (wg_x25519_base(point, scalar))
			b->failures++;
		scalar[i & 31] ^= point[0];
	}
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

/* wg_x25519_key_init + _clear: the fixed base plus making the key object. */
static uint64_t chunk_x25519_key_init(struct bench *b)
{
	uint8_t scalar[32], point[32];
	struct wg_x25519_key k;

	randombytes_buf(scalar, sizeof(scalar));
	for (int i = 0; i < BENCH_X25519_CHUNK; i++) {
		if (wg_x25519_key_init(&k, scalar, point))
			b->failures++;
		wg_x25519_key_clear(&k);
		scalar[i & 31] ^= point[0];
	}
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

static uint64_t chunk_x25519_mb(struct bench *b)
{
	static uint8_t scalar[BENCH_X25519_CHUNK][32], point[BENCH_X25519_CHUNK][32],
	    out[BENCH_X25519_CHUNK][32];
	static int rc[BENCH_X25519_CHUNK];

	randombytes_buf(scalar, sizeof(scalar));
	for (int i = 0; i < BENCH_X25519_CHUNK; i++)
		memcpy(point[i], b->peers[i].noise.public_key, 32);
	if (wg_x25519_mb(out, (const uint8_t(*)[32])scalar, (const uint8_t(*)[32])point, rc,
			 BENCH_X25519_CHUNK))
		b->failures++;
	sodium_memzero(scalar, sizeof(scalar));
	return BENCH_X25519_CHUNK;
}

static uint64_t chunk_handshakes(struct bench *b)
{
	struct wg_message_response resp;
	struct wg_noise_keypair kp;

	for (uint32_t k = 0; k < BENCH_PEERS; k++) {
		if (respond(b, &b->batch[k], &resp, &kp))
			b->failures++;
		sodium_memzero(&kp, sizeof(kp)); /* as install() does once they are sent */
	}
	return BENCH_PEERS;
}

static uint64_t chunk_handshakes_batched(struct bench *b)
{
	struct wg_message_response resp[WG_NOISE_BATCH];
	struct wg_noise_keypair kp[WG_NOISE_BATCH];

	_Static_assert(BENCH_PEERS % WG_NOISE_BATCH == 0, "whole batches");
	for (uint32_t k = 0; k < BENCH_PEERS; k += WG_NOISE_BATCH) {
		if (respond_batch(b, &b->batch[k], WG_NOISE_BATCH, resp, kp))
			b->failures++;
		sodium_memzero(kp, sizeof(kp));
	}
	return BENCH_PEERS;
}

/* One initiation per poll, as when handshakes trickle in. */
static uint64_t chunk_handshakes_alone(struct bench *b)
{
	struct wg_message_response resp;
	struct wg_noise_keypair kp;

	for (uint32_t k = 0; k < BENCH_PEERS; k++) {
		if (respond_batch(b, &b->batch[k], 1, &resp, &kp))
			b->failures++;
		sodium_memzero(&kp, sizeof(kp));
	}
	return BENCH_PEERS;
}

/* What check_macs does for each initiation while under load without MAC2. */
static uint64_t chunk_cookie_replies(struct bench *b)
{
	struct wg_message_cookie reply;

	for (uint32_t k = 0; k < BENCH_PEERS; k++) {
		const struct wg_message_initiation *msg = &b->batch[k];

		if (wg_cookie_validate(&b->checker, msg, sizeof(*msg), bench_src, SRC_LEN,
				       b->mono_ns) != WG_COOKIE_MAC1_VALID ||
		    wg_cookie_create_reply(&b->checker, msg, sizeof(*msg), k, bench_src, SRC_LEN,
					   b->mono_ns, &reply))
			b->failures++;
	}
	return BENCH_PEERS;
}

static int run_row(struct bench *b, struct row *r)
{
	while (r->ns < b->budget_ns) {
		uint64_t calls0[X_KINDS], t0, cpu0, c0, n;

		if (r->prepare && r->prepare(b))
			return -EINVAL;
		memcpy(calls0, x25519_calls, sizeof(calls0));
		t0 = now_ns();
		cpu0 = cpu_ns();
		c0 = tsc();
		n = r->chunk(b);
		r->tsc += tsc() - c0;
		r->cpu_ns += cpu_ns() - cpu0;
		r->ns += now_ns() - t0;
		for (int k = 0; k < X_KINDS; k++)
			r->x25519[k] += x25519_calls[k] - calls0[k];
		r->ops += n;
	}
	if (b->failures) {
		fprintf(stderr, "%s: %llu operations failed\n", r->name,
			(unsigned long long)b->failures);
		return -EIO;
	}
	return 0;
}

static void print_row(const struct row *r)
{
	double ops = (double)r->ops;

	printf("| %s | %.0f | %.2f | %.2f | ", r->name, ops * 1e9 / (double)r->ns,
	       (double)r->ns / ops / 1e3, (double)r->cpu_ns / ops / 1e3);
	if (HAVE_TSC)
		printf("%.0f | ", (double)r->tsc / ops);
	else
		printf("n/a | ");
#ifdef BENCH_COUNT_X25519
	printf("%.2f variable + %.2f fixed-base", (double)(r->x25519[X_VAR] + r->x25519[X_KEY_DH]) / ops,
	       (double)(r->x25519[X_BASE] + r->x25519[X_KEY_INIT]) / ops);
	if (r->x25519[X_MB_LANE])
		printf(" + %.2f in 8-lane batches", (double)r->x25519[X_MB_LANE] / ops);
	printf(" |\n");
#else
	printf("not counted (no --wrap) |\n");
#endif
}

static int parse_seconds(int argc, char **argv, double *seconds)
{
	char *end;

	*seconds = 2.0;
	if (argc > 2)
		return -EINVAL;
	if (argc == 2) {
		*seconds = strtod(argv[1], &end);
		if (*end || !(*seconds > 0 && *seconds <= 3600))
			return -EINVAL;
	}
	return 0;
}

/* Measurements are of one core: stay on the one we started on. */
static int pin_to_current_cpu(void)
{
	int cpu = sched_getcpu();
	cpu_set_t set;

	if (cpu < 0)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -1 : cpu;
}

/* CPU us per operation of a row. */
static double row_cpu_us(const struct row *r)
{
	return (double)r->cpu_ns / (double)r->ops / 1e3;
}

/*
 * What the X25519 calls of a handshake would cost alone, priced by the rows
 * that time each kind of call.
 */
static void print_x25519_share(const char *what, const struct row *hs,
			       const struct row *price[X_KINDS])
{
	double x_us = 0, hs_us = row_cpu_us(hs);

	for (int k = 0; k < X_KINDS; k++)
		x_us += (double)hs->x25519[k] / (double)hs->ops * row_cpu_us(price[k]);
	if (x_us > 0)
		printf("\nX25519 share of %s (CPU time): %.2f of %.2f us "
		       "(%.0f%%); X25519 alone would allow %.0f handshakes/s\n",
		       what, x_us, hs_us, 100 * x_us / hs_us, 1e6 / x_us);
}

int main(int argc, char **argv)
{
	static struct bench b;
#define ROW(n, p, c)                                                                               \
	{                                                                                          \
		.name = n, .prepare = p, .chunk = c                                                \
	}
	struct row rows[] = {
	    ROW("X25519 variable base, libsodium (wg_x25519)", NULL, chunk_x25519_var),
	    ROW("X25519 variable base, OpenSSL one-shot (import scalar + point, derive)", NULL,
		chunk_x25519_var_openssl),
	    ROW("X25519 variable base, OpenSSL key object (wg_x25519_key_dh)", NULL,
		chunk_x25519_key_dh),
	    ROW("X25519 fixed base, libsodium (crypto_scalarmult_base)", NULL,
		chunk_x25519_base_sodium),
	    ROW("X25519 fixed base, OpenSSL (wg_x25519_base)", NULL, chunk_x25519_base),
	    ROW("X25519 fixed base + key object, OpenSSL (wg_x25519_key_init)", NULL,
		chunk_x25519_key_init),
	    ROW("responder handshake, hashed peer lookup (as cp_peer_find)", make_round,
		chunk_handshakes),
	    ROW("responder handshake, linear peer search (cp_peer_find before its hash table)",
		make_round, chunk_handshakes),
	    ROW("cookie reply under load (validate MAC1 + create_reply)", NULL,
		chunk_cookie_replies),
	    ROW("X25519 variable base, 8 lanes AVX-512 IFMA (wg_x25519_mb, 256 per call)", NULL,
		chunk_x25519_mb),
	    ROW("responder handshakes, batches of 32 as a flood arrives (rx_initiations)",
		make_round, chunk_handshakes_batched),
	    ROW("responder handshake, one per poll (rx_initiations with 1)", make_round,
		chunk_handshakes_alone),
	};
#undef ROW
	enum { ROW_HASHED = 6, ROW_LINEAR = 7, ROW_MB = 9, ROW_BATCHED = 10 };
	const struct row *price[X_KINDS] = {
	    [X_VAR] = &rows[0],
	    [X_KEY_DH] = &rows[2],
	    [X_BASE] = &rows[4],
	    [X_KEY_INIT] = &rows[5],
	    [X_MB_LANE] = &rows[ROW_MB],
	};
	double seconds, tsc_per_ns;
	int cpu, ret = 1;

	if (parse_seconds(argc, argv, &seconds)) {
		fprintf(stderr, "usage: %s [seconds per row, default 2]\n", argv[0]);
		return 2;
	}
	if (sodium_init() < 0 || bench_init(&b)) {
		fprintf(stderr, "cannot set up %d peers\n", BENCH_PEERS);
		goto out;
	}
	b.budget_ns = (uint64_t)(seconds * 1e9);
	cpu = pin_to_current_cpu();
	tsc_per_ns = HAVE_TSC ? tsc_calibrate() : 0;
	if (self_check(&b)) {
		fprintf(stderr, "self-check: responses do not complete the handshake\n");
		goto out;
	}

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		b.linear = i == ROW_LINEAR;
		if (run_row(&b, &rows[i]))
			goto out;
	}

	printf("meshgate-bench-handshake: %.1f s timed per row, %d peers, one core (CPU %d), "
	       "libsodium %s, %s\n",
	       seconds, BENCH_PEERS, cpu, sodium_version_string(),
	       OpenSSL_version(OPENSSL_VERSION));
	if (HAVE_TSC)
		printf("TSC %.3f GHz, calibrated against CLOCK_MONOTONIC; cycles are TSC "
		       "(reference) cycles\n",
		       tsc_per_ns);
	printf("hashed lookup: SipHash-2-4 (crypto_shorthash) keyed open-addressing table\n");
	printf("8-lane X25519 (x25519_mb.h): %s implementation on this CPU\n\n",
	       wg_x25519_mb_impl());
	printf("| operation | ops/s | us/op | CPU us/op | cycles/op | X25519 per op |\n");
	printf("|---|---:|---:|---:|---:|---|\n");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		print_row(&rows[i]);
	print_x25519_share("a hashed-lookup handshake", &rows[ROW_HASHED], price);
	print_x25519_share("a batched handshake", &rows[ROW_BATCHED], price);
	ret = 0;
out:
	bench_clear(&b);
	return ret;
}
