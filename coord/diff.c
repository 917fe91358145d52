/* SPDX-License-Identifier: MIT */
/* Line diff by longest common subsequence (O(n*m): policies are small). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "strbuf.h"

struct lines {
	const char **s;
	size_t *len;
	size_t n;
};

static int split(const char *t, struct lines *l, size_t max)
{
	size_t cap = 16;

	l->n = 0;
	l->s = malloc(cap * sizeof(*l->s));
	l->len = malloc(cap * sizeof(*l->len));
	if (!l->s || !l->len)
		return -1;
	while (*t) {
		const char *e = strchr(t, '\n');
		size_t n = e ? (size_t)(e - t) : strlen(t);
		if (l->n == max)
			return -1;
		if (l->n == cap) {
			cap *= 2;
			const char **s = realloc(l->s, cap * sizeof(*s));
			size_t *len = s ? realloc(l->len, cap * sizeof(*len)) : NULL;
			if (s)
				l->s = s;
			if (!len)
				return -1;
			l->len = len;
		}
		l->s[l->n] = t;
		l->len[l->n++] = n;
		t += n + (e != NULL);
	}
	return 0;
}

static int eq(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
	return a->len[i] == b->len[j] && !memcmp(a->s[i], b->s[j], a->len[i]);
}

char *coord_diff(const char *ta, const char *tb, const char *name_a, const char *name_b,
		 size_t max_lines)
{
	struct lines a = {0}, b = {0};
	uint32_t *L = NULL;
	char *ops = NULL, *out = NULL; /* ' ' same, '-' a only, '+' b only */
	size_t n_ops = 0;
	struct strbuf sb = {0};

	if (split(ta, &a, max_lines) < 0 || split(tb, &b, max_lines) < 0)
		goto done;
	size_t W = b.n + 1;
	L = calloc((a.n + 1) * W, sizeof(*L));
	ops = malloc(a.n + b.n + 1);
	if (!L || !ops)
		goto done;
	for (size_t i = a.n; i-- > 0;)
		for (size_t j = b.n; j-- > 0;)
			L[i * W + j] = eq(&a, i, &b, j) ? L[(i + 1) * W + j + 1] + 1
				       : L[(i + 1) * W + j] > L[i * W + j + 1] ? L[(i + 1) * W + j]
									       : L[i * W + j + 1];
	for (size_t i = 0, j = 0; i < a.n || j < b.n;) {
		if (i < a.n && j < b.n && eq(&a, i, &b, j)) {
			ops[n_ops++] = ' ';
			i++;
			j++;
		} else if (i < a.n && (j == b.n || L[(i + 1) * W + j] >= L[i * W + j + 1])) {
			ops[n_ops++] = '-';
			i++;
		} else {
			ops[n_ops++] = '+';
			j++;
		}
	}
	strbuf_add(&sb, "");
	/* hunks: runs of changes with 3 lines of context, merged when close */
	size_t k = 0, ai = 0, bi = 0;
	bool header = false;
	while (k < n_ops) {
		if (ops[k] == ' ') {
			k++, ai++, bi++;
			continue;
		}
		size_t start = k >= 3 ? k - 3 : 0, end = k;
		while (end < n_ops) {
			if (ops[end] != ' ') {
				end++;
				continue;
			}
			size_t run = end;
			while (run < n_ops && ops[run] == ' ')
				run++;
			if (run - end > 6 || run == n_ops) {
				end = end + 3 < run ? end + 3 : run;
				break;
			}
			end = run;
		}
		size_t sa = ai - (k - start), sbn = bi - (k - start), ca = 0, cb = 0;
		for (size_t x = start; x < end; x++) {
			ca += ops[x] != '+';
			cb += ops[x] != '-';
		}
		if (!header) {
			strbuf_printf(&sb, "--- %s\n+++ %s\n", name_a, name_b);
			header = true;
		}
		strbuf_printf(&sb, "@@ -%zu,%zu +%zu,%zu @@\n", ca ? sa + 1 : sa, ca,
			      cb ? sbn + 1 : sbn, cb);
		size_t x = sa, y = sbn;
		for (size_t o = start; o < end; o++) {
			if (ops[o] == '+') {
				strbuf_printf(&sb, "+%.*s\n", (int)b.len[y], b.s[y]);
				y++;
			} else {
				strbuf_printf(&sb, "%c%.*s\n", ops[o], (int)a.len[x], a.s[x]);
				x++;
				y += ops[o] == ' ';
			}
		}
		ai = x;
		bi = y;
		k = end;
	}
	if (!sb.oom)
		out = sb.buf;
	else
		strbuf_free(&sb);
done:
	free(a.s);
	free(a.len);
	free(b.s);
	free(b.len);
	free(L);
	free(ops);
	return out;
}
