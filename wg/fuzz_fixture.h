/* SPDX-License-Identifier: MIT */
/*
 * Fixed keys, clocks and a deterministic libsodium RNG shared by
 * fuzz_handshake.c and gen_corpus.c, so that the seeds the generator writes
 * (a valid initiation, response and cookie reply) are valid for the harness's
 * state: both run fixture_setup() first thing, in a fresh process, and so
 * draw the same "random" bytes.
 */
#ifndef MG_WG_FUZZ_FIXTURE_H
#define MG_WG_FUZZ_FIXTURE_H

#include <string.h>

#include <sodium.h>

#include "cookie.h"
#include "noise.h"

#define FIXTURE_MONO_NS		(1000 * WG_NSEC_PER_SEC)
#define FIXTURE_REALTIME_NS	(1700000000ULL * WG_NSEC_PER_SEC)
#define FIXTURE_INITIATOR_INDEX 0x11223344U
#define FIXTURE_RESPONDER_INDEX 0x55667788U

static const uint8_t fixture_initiator_key[32] = "meshgate fuzz initiator key....";
static const uint8_t fixture_responder_key[32] = "meshgate fuzz responder key....";
static const uint8_t fixture_psk[32] = "meshgate fuzz preshared key....";
/* 192.0.2.1:51820 */
static const uint8_t fixture_src[6] = {192, 0, 2, 1, 0xca, 0x6c};

static uint64_t fixture_rng_calls;

static void fixture_rng_buf(void *const buf, const size_t size)
{
	uint8_t seed[randombytes_SEEDBYTES] = "meshgate wg fuzz rng";

	memcpy(seed + 24, &fixture_rng_calls, sizeof(fixture_rng_calls));
	fixture_rng_calls++;
	randombytes_buf_deterministic(buf, size, seed);
}

static uint32_t fixture_rng_random(void)
{
	uint32_t v;

	fixture_rng_buf(&v, sizeof(v));
	return v;
}

static const char *fixture_rng_name(void)
{
	return "meshgate-fuzz-fixed";
}

static randombytes_implementation fixture_rng = {
    .implementation_name = fixture_rng_name,
    .random = fixture_rng_random,
    .buf = fixture_rng_buf,
};

struct fixture {
	struct wg_noise_local initiator, responder;
	/* On the initiator, for the responder: CREATED_INITIATION for `initiation`. */
	struct wg_noise_remote initiator_remote;
	/* On the responder, for the initiator: no handshake yet. */
	struct wg_noise_remote responder_remote;
	struct wg_cookie_checker initiator_checker, responder_checker;
	/* initiator_maker has sent `initiation` and waits for a cookie reply. */
	struct wg_cookie_maker initiator_maker, responder_maker;
	struct wg_message_initiation initiation;
	struct wg_message_cookie reply; /* responder's cookie reply to `initiation` */
};

static int fixture_setup(struct fixture *f)
{
	/* Must precede any other use of libsodium in the process. */
	randombytes_set_implementation(&fixture_rng);
	if (sodium_init() < 0)
		return -1;
	memset(f, 0, sizeof(*f));
	wg_noise_local_init(&f->initiator, fixture_initiator_key);
	wg_noise_local_init(&f->responder, fixture_responder_key);
	if (wg_noise_remote_init(&f->initiator_remote, &f->initiator, f->responder.public_key,
				 fixture_psk) ||
	    wg_noise_remote_init(&f->responder_remote, &f->responder, f->initiator.public_key,
				 fixture_psk))
		return -1;
	wg_cookie_checker_init(&f->initiator_checker, f->initiator.public_key);
	wg_cookie_checker_init(&f->responder_checker, f->responder.public_key);
	wg_cookie_maker_init(&f->initiator_maker, f->responder.public_key);
	wg_cookie_maker_init(&f->responder_maker, f->initiator.public_key);

	if (wg_noise_create_initiation(&f->initiator, &f->initiator_remote, FIXTURE_INITIATOR_INDEX,
				       FIXTURE_REALTIME_NS, &f->initiation))
		return -1;
	wg_cookie_add_macs(&f->initiator_maker, &f->initiation, sizeof(f->initiation),
			   FIXTURE_MONO_NS);
	/* Also sets both checkers' secrets, so that validating draws no randomness. */
	if (wg_cookie_create_reply(&f->responder_checker, &f->initiation, sizeof(f->initiation),
				   FIXTURE_INITIATOR_INDEX, fixture_src, sizeof(fixture_src),
				   FIXTURE_MONO_NS, &f->reply))
		return -1;
	wg_cookie_validate(&f->initiator_checker, &f->initiation, sizeof(f->initiation),
			   fixture_src, sizeof(fixture_src), FIXTURE_MONO_NS);
	return 0;
}

#endif /* MG_WG_FUZZ_FIXTURE_H */
