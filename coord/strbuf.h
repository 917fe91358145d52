/* SPDX-License-Identifier: MIT */
/* A growable string; an allocation failure sets oom and later appends do nothing. */
#ifndef MG_COORD_STRBUF_H
#define MG_COORD_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *buf;
	size_t len, cap;
	bool oom;
};

void strbuf_add(struct strbuf *sb, const char *s);
void strbuf_addn(struct strbuf *sb, const char *s, size_t n);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_free(struct strbuf *sb);

#endif /* MG_COORD_STRBUF_H */
