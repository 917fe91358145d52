// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for everything that parses handshake messages: the first
 * byte picks the message type, the length must match it exactly for the
 * Noise and cookie parsers (MAC validation takes any length). Fixed keys and
 * state come from fuzz_fixture.h; the seed corpus is wg/corpus/handshake/
 * (made by gen_corpus.c).
 *
 * Besides memory errors, it aborts on broken contracts: a failed
 * accept_initiation, consume_response or consume_reply must leave the state
 * untouched.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cookie.h"
#include "fuzz_fixture.h"
#include "noise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fixture f;

static void validate(const struct wg_cookie_checker *checker, const uint8_t *data, size_t size)
{
	struct wg_cookie_checker c = *checker;

	wg_cookie_validate(&c, data, size, fixture_src, sizeof(fixture_src), FIXTURE_MONO_NS);
}

static void fuzz_initiation(const uint8_t *data, size_t size)
{
	struct wg_message_initiation msg;
	struct wg_message_response resp;
	struct wg_noise_remote r = f.responder_remote;
	struct wg_noise_initiation in;
	struct wg_noise_keypair kp;

	validate(&f.responder_checker, data, size);
	if (size != sizeof(msg))
		return;
	memcpy(&msg, data, size);
	int rc = wg_noise_consume_initiation(&f.responder, &msg, &in);
	/* The batched form (as control runs it, 8-lane X25519 from 2 lanes on)
	 * must give byte for byte what the single one gives, for each copy. */
	const struct wg_message_initiation *two[2] = {&msg, &msg};
	struct wg_noise_initiation in2[2];
	int rc2[2];
	wg_noise_consume_initiations(&f.responder, two, in2, rc2, 2);
	for (int i = 0; i < 2; i++)
		if (rc2[i] != rc || memcmp(&in2[i], &in, sizeof(in)))
			abort();
	if (rc)
		return;
	if (memcmp(in.remote_static, r.public_key, 32))
		return;
	if (wg_noise_accept_initiation(&r, &in, FIXTURE_MONO_NS)) {
		if (memcmp(&r, &f.responder_remote, sizeof(r)))
			abort();
		return;
	}
	if (wg_noise_create_response(&f.responder, &r, FIXTURE_RESPONDER_INDEX, &resp) ||
	    wg_noise_derive_keypair(&r, &kp))
		abort();
}

static void fuzz_response(const uint8_t *data, size_t size)
{
	struct wg_noise_remote r = f.initiator_remote;
	struct wg_message_response msg;
	struct wg_noise_keypair kp;

	validate(&f.initiator_checker, data, size);
	if (size != sizeof(msg))
		return;
	memcpy(&msg, data, size);
	if (wg_noise_consume_response(&f.initiator, &r, &msg)) {
		if (memcmp(&r, &f.initiator_remote, sizeof(r)))
			abort();
		return;
	}
	if (wg_noise_derive_keypair(&r, &kp) || !kp.initiator)
		abort();
}

static void fuzz_cookie(const uint8_t *data, size_t size)
{
	struct wg_cookie_maker m = f.initiator_maker;
	struct wg_message_cookie msg;
	struct wg_message_initiation next = f.initiation;

	if (size != sizeof(msg))
		return;
	memcpy(&msg, data, size);
	if (wg_cookie_consume_reply(&m, &msg, FIXTURE_MONO_NS)) {
		if (memcmp(&m, &f.initiator_maker, sizeof(m)))
			abort();
		return;
	}
	wg_cookie_add_macs(&m, &next, sizeof(next), FIXTURE_MONO_NS);
	validate(&f.responder_checker, (const uint8_t *)&next, sizeof(next));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;

	if (!ready) {
		if (fixture_setup(&f))
			abort();
		ready = true;
	}
	if (!size)
		return 0;

	switch (data[0]) {
	case WG_MSG_HANDSHAKE_INITIATION:
		fuzz_initiation(data, size);
		break;
	case WG_MSG_HANDSHAKE_RESPONSE:
		fuzz_response(data, size);
		break;
	case WG_MSG_HANDSHAKE_COOKIE:
		fuzz_cookie(data, size);
		break;
	default:
		break;
	}
	return 0;
}
