// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for cp_uapi_parse_set: any bytes as a set body. Checks
 * the contract (error leaves *out empty; success gives sane counts and
 * normalized prefixes) and feeds what parsed through the get formatter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "uapi.h"

static void check_parsed(const struct cp_uapi_set *s)
{
	for (size_t i = 0; i < s->n_peers; i++) {
		const struct cp_uapi_peer_op *p = &s->peers[i];

		if (p->n_allowed_ips && !p->allowed_ips)
			abort();
		for (size_t j = 0; j < p->n_allowed_ips; j++) {
			struct mg_prefix q = p->allowed_ips[j];

			mg_prefix_mask(&q);
			if (memcmp(&q, &p->allowed_ips[j], sizeof(q)))
				abort();
		}
	}
}

/* Format the parsed peers back as a get answer: exercises the formatter. */
static void format_back(const struct cp_uapi_set *s)
{
	struct cp_uapi_peer_view *pv = calloc(s->n_peers + 1, sizeof(*pv));
	struct cp_uapi_dev_view v = {.has_private_key = s->has_private_key,
				     .listen_port = s->listen_port,
				     .fwmark = s->fwmark,
				     .peers = pv,
				     .n_peers = s->n_peers};
	char *out;
	size_t len;

	if (!pv)
		return;
	memcpy(v.private_key, s->private_key, 32);
	for (size_t i = 0; i < s->n_peers; i++) {
		memcpy(pv[i].public_key, s->peers[i].public_key, 32);
		pv[i].has_psk = s->peers[i].has_psk;
		memcpy(pv[i].psk, s->peers[i].psk, 32);
		pv[i].endpoint = s->peers[i].endpoint;
		pv[i].keepalive = s->peers[i].keepalive;
		pv[i].allowed_ips = s->peers[i].allowed_ips;
		pv[i].n_allowed_ips = s->peers[i].n_allowed_ips;
	}
	if (cp_uapi_format_get(&v, &out, &len) == 0) {
		if (len < 9 || strlen(out) != len || strcmp(out + len - 9, "errno=0\n\n"))
			abort();
		free(out);
	}
	free(pv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cp_uapi_set zero;
	struct cp_uapi_set s;

	if (cp_uapi_parse_set((const char *)data, size, &s) == 0) {
		check_parsed(&s);
		format_back(&s);
	} else if (memcmp(&s, &zero, sizeof(s))) {
		abort();
	}
	cp_uapi_set_free(&s);
	return 0;
}
