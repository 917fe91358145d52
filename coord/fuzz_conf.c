/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: the coord config parser (conf.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct coord_conf c;
	char err[256] = "", *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (coord_conf_parse(text, "fuzz", &c, err, sizeof(err)) < 0 && !err[0])
		abort();
	free(text);
	return 0;
}
