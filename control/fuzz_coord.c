// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the coordination answers (untrusted bytes from the
 * network): the first byte picks the parser (map, register, update, error),
 * the rest is the body. Checks the contract: an error leaves the output
 * zeroed with a one-line message; a success has sorted, unique peers,
 * masked allowed IPs, rules of one family each and sane port ranges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "coord.h"

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void check_map(const struct cp_coord_map *m)
{
	for (size_t i = 0; i < m->n_peers; i++) {
		const struct cp_coord_peer *p = &m->peers[i];

		if (!p->node_id || (i && m->peers[i - 1].node_id >= p->node_id))
			abort();
		if (p->n_aips && !p->aips)
			abort();
		for (uint32_t k = 0; k < p->n_aips; k++) {
			struct mg_prefix q = p->aips[k];

			mg_prefix_mask(&q);
			if (memcmp(&q, &p->aips[k], sizeof(q)))
				abort();
		}
		if (p->n_eps > CP_COORD_MAX_ENDPOINTS || p->n_addrs > CP_COORD_MAX_ADDRS)
			abort();
	}
	for (size_t i = 0; i < m->n_rules; i++) {
		const struct mg_acl_rule *r = &m->rules[i];

		if ((r->family != AF_INET && r->family != AF_INET6) || r->dport_lo > r->dport_hi)
			abort();
		if (r->src_len > (r->family == AF_INET ? 32 : 128))
			abort();
	}
	if (m->keepalive && (m->n_peers || m->n_rules || m->n_removed || m->has_self))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];

	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;

	err[0] = 'x';
	switch (data[0] % 4) {
	case 0: {
		struct cp_coord_map m;

		if (cp_coord_map_parse(text, len, &m, err, sizeof(err))) {
			if (!all_zero(&m, sizeof(m)) || !err[0] || strchr(err, '\n'))
				abort();
		} else {
			check_map(&m);
			cp_coord_map_free(&m);
		}
		break;
	}
	case 1: {
		struct cp_coord_reg r;

		if (cp_coord_reg_parse(text, len, &r, err, sizeof(err))) {
			if (!all_zero(&r, sizeof(r)) || !err[0] || strchr(err, '\n'))
				abort();
		} else if (!r.node_id || !r.n_addrs) {
			abort();
		}
		break;
	}
	case 2: {
		int64_t e = -1;

		if (!cp_coord_update_parse(text, len, &e, err, sizeof(err)) && e < 0)
			abort();
		break;
	}
	default:
		cp_coord_error_parse(text, len, err, sizeof(err));
		for (char *p = err; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				abort();
	}
	return 0;
}
