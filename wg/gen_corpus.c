// SPDX-License-Identifier: MIT
/*
 * Writes the seed corpus of fuzz_handshake.c: valid messages for the
 * harness's fixed state (fuzz_fixture.h) and truncated copies of them.
 *
 *   gen_corpus DIR           write the seeds into DIR
 *   gen_corpus --check DIR   exit 1 unless DIR holds exactly these seeds
 *                            (the fixture changed: regenerate)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fixture.h"

struct seed {
	const char *name;
	const void *data;
	size_t len;
};

static int put(const char *dir, const struct seed *s, bool check)
{
	char path[4096], buf[512];
	size_t n;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, s->name);
	fp = fopen(path, check ? "rb" : "wb");
	if (!fp) {
		perror(path);
		return -1;
	}
	if (check) {
		n = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		if (n != s->len || memcmp(buf, s->data, n)) {
			fprintf(stderr, "%s: stale seed, rerun gen_corpus\n", path);
			return -1;
		}
		printf("ok   %s\n", path);
		return 0;
	}
	n = fwrite(s->data, 1, s->len, fp);
	if (fclose(fp) || n != s->len) {
		perror(path);
		return -1;
	}
	printf("wrote %s (%zu bytes)\n", path, s->len);
	return 0;
}

int main(int argc, char **argv)
{
	static const uint8_t data_header[16] = {WG_MSG_DATA};
	struct wg_message_initiation with_mac2;
	struct wg_message_response resp;
	struct wg_noise_initiation in;
	struct wg_cookie_maker maker;
	struct fixture f;
	bool check = argc == 3 && !strcmp(argv[1], "--check");
	const char *dir = argv[argc - 1];
	int rc = 0;

	if (argc != 2 && !check) {
		fprintf(stderr, "usage: %s [--check] DIR\n", argv[0]);
		return 2;
	}
	if (fixture_setup(&f))
		return 1;

	/* The responder's answer to the fixture's initiation. */
	if (wg_noise_consume_initiation(&f.responder, &f.initiation, &in) ||
	    wg_noise_accept_initiation(&f.responder_remote, &in, FIXTURE_MONO_NS) ||
	    wg_noise_create_response(&f.responder, &f.responder_remote, FIXTURE_RESPONDER_INDEX,
				     &resp))
		return 1;
	wg_cookie_add_macs(&f.responder_maker, &resp, sizeof(resp), FIXTURE_MONO_NS);

	/* The initiation again, now carrying mac2 from the fixture's cookie. */
	maker = f.initiator_maker;
	with_mac2 = f.initiation;
	if (wg_cookie_consume_reply(&maker, &f.reply, FIXTURE_MONO_NS))
		return 1;
	wg_cookie_add_macs(&maker, &with_mac2, sizeof(with_mac2), FIXTURE_MONO_NS);

	const struct seed seeds[] = {
	    {"initiation", &f.initiation, sizeof(f.initiation)},
	    {"initiation-mac2", &with_mac2, sizeof(with_mac2)},
	    {"response", &resp, sizeof(resp)},
	    {"cookie", &f.reply, sizeof(f.reply)},
	    {"initiation-truncated", &f.initiation, 100},
	    {"response-truncated", &resp, 60},
	    {"cookie-truncated", &f.reply, sizeof(f.reply) - 1},
	    {"data-header", data_header, sizeof(data_header)},
	};
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		rc |= put(dir, &seeds[i], check);
	return rc ? 1 : 0;
}
