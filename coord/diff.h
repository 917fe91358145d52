/* SPDX-License-Identifier: MIT */
#ifndef MG_COORD_DIFF_H
#define MG_COORD_DIFF_H

#include <stddef.h>

/*
 * A unified diff (3 lines of context) of text a to text b, labelled
 * name_a / name_b, malloc'd; "" when equal. NULL on ENOMEM or when either
 * side has more than max_lines lines.
 */
char *coord_diff(const char *a, const char *b, const char *name_a, const char *name_b,
		 size_t max_lines);

#endif /* MG_COORD_DIFF_H */
