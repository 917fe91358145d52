/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: the /api/v1/machine/register body parser (req.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct coord_register_req r;
	char err[256];

	if (coord_parse_register((const char *)data, size, &r, err, sizeof(err)) < 0 && !err[0])
		abort(); /* every refusal says why */
	if (getenv("FUZZ_VERBOSE"))
		printf("%s\n", err);
	return 0;
}
