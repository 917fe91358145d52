/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: every admin API body parser (req.c), the first byte picks which. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	union {
		struct coord_tailnet_req t;
		struct coord_user_req u;
		struct coord_key_req k;
		struct coord_approve_req a;
		struct coord_policy_req p;
		struct coord_wg_req w;
	} r;
	char err[256] = "";
	const char *body = (const char *)data + 1;
	int ret;

	if (size < 1)
		return 0;
	size--;
	switch (data[0] % 6) {
	case 0:
		ret = coord_parse_tailnet(body, size, &r.t, err, sizeof(err));
		break;
	case 1:
		ret = coord_parse_user(body, size, &r.u, err, sizeof(err));
		break;
	case 2:
		ret = coord_parse_key(body, size, &r.k, err, sizeof(err));
		break;
	case 3:
		ret = coord_parse_approve(body, size, &r.a, err, sizeof(err));
		break;
	case 4:
		ret = coord_parse_policy(body, size, &r.p, err, sizeof(err));
		if (ret == 0)
			free(r.p.policy);
		break;
	default:
		ret = coord_parse_wg(body, size, &r.w, err, sizeof(err));
		break;
	}
	if (ret < 0 && !err[0])
		abort();
	return 0;
}
