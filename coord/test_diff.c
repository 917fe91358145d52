/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"

int main(void)
{
	char *d = coord_diff("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n", "v1", "v2", 100);
	const char *want = "--- v1\n+++ v2\n@@ -1,4 +1,5 @@\n a\n-b\n+B\n c\n d\n+e\n";
	int fails = 0;

	if (!d || strcmp(d, want)) {
		fprintf(stderr, "got:\n%s\nwant:\n%s\n", d ? d : "(null)", want);
		fails++;
	}
	free(d);
	d = coord_diff("same\n", "same\n", "a", "b", 100);
	fails += !d || *d;
	free(d);
	fails += coord_diff("1\n2\n3\n", "x\n", "a", "b", 2) != NULL; /* over max_lines */
	printf("diff: %d failure(s)\n", fails);
	return fails != 0;
}
