/* SPDX-License-Identifier: MIT */
/*
 * The policy compiler (policy.h). Three steps: HuJSON -> JSON by blanking
 * comments and trailing commas in place (so jansson's line:column still
 * point into the file), jansson parses, then "groups" and "hosts" are
 * resolved once into prefix lists and every "acls" and "tests" entry is
 * expanded against them. The first error ends the parse.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <jansson.h>
#include <netinet/in.h>

#include "addr.h"
#include "policy.h"

/* Port ranges of one destination entry, after merging. */
#define MAX_RANGES 64
/*
 * Prefixes copied while resolving (group and alias references, before
 * duplicates merge): bounds the work a small policy can cause, e.g. a big
 * group named many times in destinations no source pairs with.
 */
#define MAX_WORK (8u << 20)

struct range {
	uint16_t lo, hi;
};

struct named_list {
	const char *name; /* points into the JSON document */
	struct mg_prefix_list l;
};

struct ctx {
	const struct mg_policy_opts *o;
	const char *name;
	size_t max_rules;
	struct named_list *groups, *hosts;
	size_t n_groups, n_hosts;
	struct mg_policy *out;
	size_t cap_rules, cap_tests;
	size_t work; /* prefixes resolved so far (MAX_WORK) */
	char *err;
	size_t errlen;
};

/* ---- error reporting ---- */

/* A user string made safe to print: quoted, escaped, shortened. */
static const char *quote(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	buf[n++] = '"';
	for (; *s && n + 8 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			buf[n++] = (char)ch;
		else
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", ch);
	}
	if (*s)
		n += (size_t)snprintf(buf + n, len - n, "...");
	snprintf(buf + n, len - n, "\"");
	return buf;
}

#define Q(s) quote((s), (char[96]){0}, 96)

/* "<name>: <path>[ <quoted value>]: <message>"; returns ret. */
__attribute__((format(printf, 5, 6))) static int report(struct ctx *c, int ret, const char *path,
							const char *value, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s%s%s%s%s%s%s", c->name ? c->name : "", c->name ? ": " : "",
		 path, value ? " " : "", value ? Q(value) : "", *path || value ? ": " : "", msg);
	return ret;
}

/* ---- prefix lists ---- */

int mg_prefix_list_add(struct mg_prefix_list *l, const struct mg_prefix *p)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		struct mg_prefix *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = *p;
	mg_prefix_mask(&l->v[l->n]);
	l->n++;
	return 0;
}

void mg_prefix_list_free(struct mg_prefix_list *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int list_append(struct mg_prefix_list *to, const struct mg_prefix_list *from)
{
	for (size_t i = 0; i < from->n; i++)
		if (mg_prefix_list_add(to, &from->v[i]))
			return -ENOMEM;
	return 0;
}

static int prefix_cmp(const void *a, const void *b)
{
	const struct mg_prefix *x = a, *y = b;

	if (x->family != y->family)
		return x->family - y->family;
	if (x->cidr != y->cidr)
		return x->cidr - y->cidr;
	return memcmp(x->addr, y->addr, 16);
}

/* Sort and drop exact duplicates (order does not matter to accept rules). */
static void list_dedup(struct mg_prefix_list *l)
{
	size_t n = 0;

	if (l->n < 2)
		return;
	qsort(l->v, l->n, sizeof(l->v[0]), prefix_cmp);
	for (size_t i = 0; i < l->n; i++)
		if (n == 0 || prefix_cmp(&l->v[n - 1], &l->v[i]) != 0)
			l->v[n++] = l->v[i];
	l->n = n;
}

/* ---- HuJSON -> JSON ---- */

/* Skip a string starting at the quote s[i]; returns the index past it. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return len;
}

static unsigned line_of(const char *s, size_t pos)
{
	unsigned line = 1;

	for (size_t i = 0; i < pos; i++)
		line += s[i] == '\n';
	return line;
}

int mg_hujson_strip(char *s, size_t len, size_t *bad_at)
{
	size_t i = 0;

	while (i < len) {
		if (s[i] == '"') {
			i = skip_string(s, len, i);
		} else if (s[i] == '/' && i + 1 < len && s[i + 1] == '/') {
			for (; i < len && s[i] != '\n'; i++)
				s[i] = ' ';
		} else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
			size_t start = i;

			for (i += 2; i + 1 < len && !(s[i] == '*' && s[i + 1] == '/'); i++)
				;
			if (i + 1 >= len) {
				if (bad_at)
					*bad_at = start;
				return -EINVAL;
			}
			for (size_t k = start; k < i + 2; k++)
				if (s[k] != '\n')
					s[k] = ' ';
			i += 2;
		} else {
			i++;
		}
	}
	/* Then blank commas followed (after white space) by ']' or '}'. */
	for (i = 0; i < len;) {
		if (s[i] == '"') {
			i = skip_string(s, len, i);
			continue;
		}
		if (s[i] == ',') {
			size_t k = i + 1;

			while (k < len &&
			       (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r'))
				k++;
			if (k < len && (s[k] == ']' || s[k] == '}'))
				s[i] = ' ';
		}
		i++;
	}
	return 0;
}

/* ---- JSON shape checks ---- */

/* Every key of obj must be in keys (NULL-terminated). */
static int check_keys(struct ctx *c, json_t *obj, const char *path, const char *const *keys)
{
	for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
		const char *k = json_object_iter_key(it);
		size_t i = 0;

		while (keys[i] && strcmp(keys[i], k) != 0)
			i++;
		if (!keys[i])
			return report(c, -EINVAL, path, k, "unknown key");
	}
	return 0;
}

static int want_type(struct ctx *c, json_t *v, json_type t, const char *path, const char *what)
{
	if (v && json_typeof(v) == t)
		return 0;
	return report(c, -EINVAL, path, NULL, "expected %s", what);
}

/* ---- hosts, groups, names ---- */

static int named_cmp(const void *a, const void *b)
{
	return strcmp(((const struct named_list *)a)->name, ((const struct named_list *)b)->name);
}

/* v sorted by name (named_cmp). */
static const struct named_list *find_named(const struct named_list *v, size_t n, const char *name)
{
	const struct named_list key = {.name = name};

	return n ? bsearch(&key, v, n, sizeof(*v), named_cmp) : NULL;
}

/* Only the characters of a numeric address or CIDR, with at least one of . : / */
static bool looks_numeric(const char *s)
{
	bool sep = false;

	for (; *s; s++) {
		if (*s == '.' || *s == ':' || *s == '/')
			sep = true;
		else if (!strchr("0123456789abcdefABCDEF", *s))
			return false;
	}
	return sep;
}

static const char *unknown_what(const char *s)
{
	if (strncmp(s, "tag:", 4) == 0)
		return "unknown tag";
	if (strncmp(s, "autogroup:", 10) == 0)
		return "unknown autogroup";
	if (strchr(s, '@'))
		return "unknown user";
	return "unknown host, user or peer";
}

/* Ask the caller's resolver; checks what it returns. */
static int resolve_name(struct ctx *c, const char *s, const char *path, const char *quoted,
			struct mg_prefix_list *out)
{
	const struct mg_policy_resolver *r = c->o ? c->o->resolver : NULL;
	size_t first = out->n;
	int ret;

	ret = r && r->resolve ? r->resolve(r->arg, s, out) : -ENOENT;
	if (ret == -ENOENT)
		return report(c, -EINVAL, path, quoted, "%s", unknown_what(s));
	if (ret)
		return report(c, ret < 0 ? ret : -EINVAL, path, quoted, "resolver failed: %s",
			      strerror(ret < 0 ? -ret : EINVAL));
	for (size_t i = first; i < out->n; i++) {
		struct mg_prefix *p = &out->v[i];

		if (!(p->family == AF_INET && p->cidr <= 32) &&
		    !(p->family == AF_INET6 && p->cidr <= 128))
			return report(c, -EINVAL, path, quoted, "resolver returned a bad prefix");
		mg_prefix_mask(p);
	}
	return 0;
}

static int add_prefix(struct ctx *c, struct mg_prefix_list *out, const struct mg_prefix *p)
{
	if (mg_prefix_list_add(out, p))
		return report(c, -ENOMEM, "", NULL, "out of memory");
	return 0;
}

/*
 * One host (see policy.h) into out. Groups only if allow_group (not inside a
 * group). path and quoted are where to point errors.
 */
static int resolve_one(struct ctx *c, const char *s, const char *path, const char *quoted,
		       bool allow_group, struct mg_prefix_list *out)
{
	const struct named_list *nl;
	struct mg_prefix p;

	if (!*s)
		return report(c, -EINVAL, path, quoted, "empty host");
	if (strcmp(s, "*") == 0) {
		struct mg_prefix any4 = {.family = AF_INET}, any6 = {.family = AF_INET6};

		if (add_prefix(c, out, &any4) || add_prefix(c, out, &any6))
			return -ENOMEM;
		return 0;
	}
	if (strncmp(s, "group:", 6) == 0) {
		if (!allow_group)
			return report(c, -EINVAL, path, quoted, "groups cannot contain groups");
		nl = find_named(c->groups, c->n_groups, s);
		if (!nl)
			return report(c, -EINVAL, path, quoted, "unknown group");
		if (list_append(out, &nl->l))
			return report(c, -ENOMEM, "", NULL, "out of memory");
		return 0;
	}
	nl = find_named(c->hosts, c->n_hosts, s);
	if (nl) {
		if (list_append(out, &nl->l))
			return report(c, -ENOMEM, "", NULL, "out of memory");
		return 0;
	}
	if (mg_prefix_parse(s, &p) == 0)
		return add_prefix(c, out, &p);
	if (looks_numeric(s))
		return report(c, -EINVAL, path, quoted, "bad IP address or CIDR");
	return resolve_name(c, s, path, quoted, out);
}

static int resolve_host(struct ctx *c, const char *s, const char *path, const char *quoted,
			bool allow_group, struct mg_prefix_list *out)
{
	size_t before = out->n;
	int ret = resolve_one(c, s, path, quoted, allow_group, out);

	c->work += out->n - before;
	if (ret == 0 && c->work > MAX_WORK)
		return report(c, -E2BIG, path, quoted,
			      "the policy names more than %u addresses in all (groups named "
			      "too often?)",
			      MAX_WORK);
	return ret;
}

static int parse_hosts(struct ctx *c, json_t *hosts)
{
	const char *k;
	json_t *v;
	char path[160];

	if (!hosts)
		return 0;
	if (want_type(c, hosts, JSON_OBJECT, "hosts", "an object {\"alias\": \"ip or cidr\"}"))
		return -EINVAL;
	c->hosts = calloc(json_object_size(hosts) + 1, sizeof(*c->hosts));
	if (!c->hosts)
		return report(c, -ENOMEM, "", NULL, "out of memory");
	for (void *it = json_object_iter(hosts); it; it = json_object_iter_next(hosts, it)) {
		k = json_object_iter_key(it);
		v = json_object_iter_value(it);
		struct named_list *h = &c->hosts[c->n_hosts++];
		struct mg_prefix p;

		h->name = k;
		snprintf(path, sizeof(path), "hosts[%s]", Q(k));
		if (!*k || strpbrk(k, ":/@*") || mg_prefix_parse(k, &p) == 0)
			return report(c, -EINVAL, "hosts", k,
				      "bad alias (not empty, no ':', '/', '@' or '*', not an IP)");
		if (!json_is_string(v))
			return report(c, -EINVAL, path, NULL,
				      "expected an IP address or CIDR string");
		if (mg_prefix_parse(json_string_value(v), &p))
			return report(c, -EINVAL, path, json_string_value(v),
				      "expected an IP address or CIDR");
		if (add_prefix(c, &h->l, &p))
			return -ENOMEM;
	}
	qsort(c->hosts, c->n_hosts, sizeof(c->hosts[0]), named_cmp);
	return 0;
}

static int parse_groups(struct ctx *c, json_t *groups)
{
	const char *k;
	json_t *v;
	char path[160];

	if (!groups)
		return 0;
	if (want_type(c, groups, JSON_OBJECT, "groups", "an object {\"group:name\": [members]}"))
		return -EINVAL;
	c->groups = calloc(json_object_size(groups) + 1, sizeof(*c->groups));
	if (!c->groups)
		return report(c, -ENOMEM, "", NULL, "out of memory");
	for (void *it = json_object_iter(groups); it; it = json_object_iter_next(groups, it)) {
		k = json_object_iter_key(it);
		v = json_object_iter_value(it);
		struct named_list *g = &c->groups[c->n_groups++];
		size_t i;
		json_t *m;

		g->name = k;
		if (strncmp(k, "group:", 6) != 0 || !k[6])
			return report(c, -EINVAL, "groups", k, "group names start with \"group:\"");
		snprintf(path, sizeof(path), "groups[%s]", Q(k));
		if (want_type(c, v, JSON_ARRAY, path, "an array of members"))
			return -EINVAL;
		for (i = 0; i < json_array_size(v) && (m = json_array_get(v, i)); i++) {
			char mpath[192];
			int ret;

			snprintf(mpath, sizeof(mpath), "%s[%zu]", path, i);
			if (want_type(c, m, JSON_STRING, mpath, "a string"))
				return -EINVAL;
			ret = resolve_host(c, json_string_value(m), mpath, json_string_value(m),
					   false, &g->l);
			if (ret)
				return ret;
		}
		list_dedup(&g->l);
	}
	qsort(c->groups, c->n_groups, sizeof(c->groups[0]), named_cmp);
	return 0;
}

/* ---- ports and protocols ---- */

/* "65535" -> 65535; -1 if not 1..5 digits, -2 if above 65535. */
static long parse_port(const char *s, size_t len)
{
	long v = 0;

	if (len == 0 || len > 5)
		return len > 5 && strspn(s, "0123456789") >= len ? -2 : -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v > 65535 ? -2 : v;
}

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return (int)x->lo - (int)y->lo;
}

/* "*", "22", "80,443", "1000-2000,22": sorted, overlaps merged. */
static int parse_ports(struct ctx *c, const char *s, const char *path, const char *quoted,
		       struct range *r, size_t *n)
{
	size_t cnt = 0, m = 0;

	if (!*s)
		return report(c, -EINVAL, path, quoted, "missing ports after ':'");
	for (const char *item = s;; item++) {
		size_t len = strcspn(item, ",");
		const char *dash = memchr(item, '-', len);
		long lo, hi;

		if (len == 1 && item[0] == '*') {
			lo = 0;
			hi = 65535;
		} else {
			lo = parse_port(item, dash ? (size_t)(dash - item) : len);
			hi = dash ? parse_port(dash + 1, len - (size_t)(dash - item) - 1) : lo;
		}
		if (lo == -2 || hi == -2)
			return report(c, -EINVAL, path, quoted, "port out of range");
		if (lo < 0 || hi < 0)
			return report(c, -EINVAL, path, quoted,
				      "bad ports (expected *, 22, 80,443 or 1000-2000)");
		if (lo > hi)
			return report(c, -EINVAL, path, quoted, "port range %ld-%ld is backwards",
				      lo, hi);
		if (cnt == MAX_RANGES)
			return report(c, -EINVAL, path, quoted, "more than %d port ranges",
				      MAX_RANGES);
		r[cnt++] = (struct range){(uint16_t)lo, (uint16_t)hi};
		item += len;
		if (!*item)
			break;
	}
	qsort(r, cnt, sizeof(*r), range_cmp);
	for (size_t i = 0; i < cnt; i++) {
		if (m && (uint32_t)r[i].lo <= (uint32_t)r[m - 1].hi + 1) {
			if (r[i].hi > r[m - 1].hi)
				r[m - 1].hi = r[i].hi;
		} else {
			r[m++] = r[i];
		}
	}
	*n = m;
	return 0;
}

#define FAM_V4 1
#define FAM_V6 2

struct proto {
	uint8_t num;
	uint8_t families; /* FAM_* the protocol exists in */
};

static const struct {
	const char *name;
	uint8_t num;
} proto_names[] = {
    {"igmp", 2},
    {"ipv4", 4},
    {"ip-in-ip", 4},
    {"tcp", IPPROTO_TCP},
    {"egp", 8},
    {"igp", 9},
    {"udp", IPPROTO_UDP},
    {"gre", 47},
    {"esp", 50},
    {"ah", 51},
    {"icmp", IPPROTO_ICMP},
    {"ipv6-icmp", IPPROTO_ICMPV6},
    {"sctp", IPPROTO_SCTP},
};

static bool has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

static uint8_t proto_families(uint8_t num)
{
	return num == IPPROTO_ICMP ? FAM_V4 : num == IPPROTO_ICMPV6 ? FAM_V6 : FAM_V4 | FAM_V6;
}

/* "proto" of an acl or test: absent gives dflt (n_dflt entries). */
static int parse_proto(struct ctx *c, json_t *v, const char *path, const struct proto *dflt,
		       size_t n_dflt, struct proto *out, size_t *n)
{
	long long num = -1;

	if (!v) {
		memcpy(out, dflt, n_dflt * sizeof(*dflt));
		*n = n_dflt;
		return 0;
	}
	if (json_is_integer(v)) {
		num = json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);

		for (size_t i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++)
			if (strcasecmp(s, proto_names[i].name) == 0)
				num = proto_names[i].num;
		if (num < 0 && *s && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 3)
			num = atoi(s);
		if (num < 0)
			return report(c, -EINVAL, path, s, "unknown protocol");
	} else {
		return report(c, -EINVAL, path, NULL, "expected a protocol name or number");
	}
	if (num < 1 || num > 255) {
		char buf[24];

		snprintf(buf, sizeof(buf), "%lld", num);
		return report(c, -EINVAL, path, buf, "protocol number out of range (1..255)");
	}
	out[0] = (struct proto){(uint8_t)num, proto_families((uint8_t)num)};
	*n = 1;
	return 0;
}

/* ---- destinations ---- */

/*
 * "host:ports" -> host (into hbuf) and ports. "[v6]:p", "[v6/len]:p",
 * "[v6]/len:p", else split at the last colon.
 */
static int split_dst(struct ctx *c, const char *s, const char *path, char *hbuf, size_t hlen,
		     const char **ports)
{
	const char *colon;
	size_t n;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end)
			return report(c, -EINVAL, path, s, "missing ']'");
		colon = end + 1 + strcspn(end + 1, ":");
		if (!*colon)
			return report(c, -EINVAL, path, s, "expected host:ports");
		n = (size_t)(end - s - 1);
		if (n + (size_t)(colon - end - 1) >= hlen)
			return report(c, -EINVAL, path, s, "host too long");
		memcpy(hbuf, s + 1, n);
		memcpy(hbuf + n, end + 1, (size_t)(colon - end - 1));
		hbuf[n + (size_t)(colon - end - 1)] = '\0';
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return report(c, -EINVAL, path, s, "expected host:ports");
		n = (size_t)(colon - s);
		if (n >= hlen)
			return report(c, -EINVAL, path, s, "host too long");
		memcpy(hbuf, s, n);
		hbuf[n] = '\0';
	}
	if (!hbuf[0])
		return report(c, -EINVAL, path, s, "missing host before ':'");
	*ports = colon + 1;
	return 0;
}

struct dst {
	struct mg_prefix_list hosts;
	struct range r[MAX_RANGES];
	size_t n_r;
};

static int parse_dst(struct ctx *c, const char *s, const char *path, struct dst *d)
{
	char host[256];
	const char *ports = NULL;
	int ret;

	ret = split_dst(c, s, path, host, sizeof(host), &ports);
	if (!ret)
		ret = parse_ports(c, ports, path, s, d->r, &d->n_r);
	if (!ret)
		ret = resolve_host(c, host, path, s, true, &d->hosts);
	if (!ret)
		list_dedup(&d->hosts);
	return ret;
}

/* ---- rules ---- */

static int fam_bit(uint8_t family)
{
	return family == AF_INET ? FAM_V4 : FAM_V6;
}

static int emit_rule(struct ctx *c, size_t acl, const struct mg_prefix *s,
		     const struct mg_prefix *d, uint8_t proto, struct range r)
{
	struct mg_policy *p = c->out;

	if (p->n_rules == c->max_rules) {
		char path[48];

		snprintf(path, sizeof(path), "acls[%zu]", acl);
		return report(c, -E2BIG, path, NULL, "more than %zu rules after expansion",
			      c->max_rules);
	}
	if (p->n_rules == c->cap_rules) {
		size_t cap = c->cap_rules ? 2 * c->cap_rules : 256;
		struct mg_acl_rule *v = realloc(p->rules, cap * sizeof(*v));

		if (!v)
			return report(c, -ENOMEM, "", NULL, "out of memory");
		p->rules = v;
		c->cap_rules = cap;
	}
	struct mg_acl_rule *ru = &p->rules[p->n_rules++];

	memset(ru, 0, sizeof(*ru));
	ru->family = s->family;
	ru->proto = proto;
	ru->src_len = s->cidr;
	ru->dst_len = d->cidr;
	ru->dport_lo = r.lo;
	ru->dport_hi = r.hi;
	ru->acl_index = (uint32_t)acl;
	memcpy(ru->src, s->addr, 16);
	memcpy(ru->dst, d->addr, 16);
	return 0;
}

/* The entries of one family in a list sorted by list_dedup (family first). */
struct span {
	size_t b, e;
};

static struct span family_span(const struct mg_prefix_list *l, uint8_t family)
{
	struct span sp = {0, 0};

	while (sp.b < l->n && l->v[sp.b].family != family)
		sp.b++;
	for (sp.e = sp.b; sp.e < l->n && l->v[sp.e].family == family;)
		sp.e++;
	return sp;
}

/*
 * src x dst hosts x protos x port ranges, family by family; src4/src6 are
 * src's spans, so every iteration emits a rule (and the limit bounds the work).
 * Sources vary fastest: a destination's rules come as runs that differ only in
 * the source, and runs of the same range differ only in the protocol (the
 * coordination server sends each such group as one filter entry).
 */
static int expand(struct ctx *c, size_t acl, const struct mg_prefix_list *src,
		  const struct span src_spans[2], const struct dst *d, const struct proto *protos,
		  size_t n_protos)
{
	static const struct range all = {0, 65535};
	static const uint8_t fams[2] = {AF_INET, AF_INET6};

	for (int f = 0; f < 2; f++) {
		struct span ss = src_spans[f], ds = family_span(&d->hosts, fams[f]);

		for (size_t j = ds.b; j < ds.e; j++) {
			for (size_t x = 0; x < (d->n_r ? d->n_r : 1); x++) {
				for (size_t k = 0; k < n_protos; k++) {
					bool ports = has_ports(protos[k].num);

					if (!(fam_bit(fams[f]) & protos[k].families) ||
					    (!ports && x > 0) || (ports && x >= d->n_r))
						continue;
					for (size_t i = ss.b; i < ss.e; i++) {
						int ret =
						    emit_rule(c, acl, &src->v[i], &d->hosts.v[j],
							      protos[k].num, ports ? d->r[x] : all);
						if (ret)
							return ret;
					}
				}
			}
		}
	}
	return 0;
}

static const struct proto acl_default_protos[] = {
    {IPPROTO_TCP, FAM_V4 | FAM_V6},
    {IPPROTO_UDP, FAM_V4 | FAM_V6},
    {IPPROTO_ICMP, FAM_V4},
    {IPPROTO_ICMPV6, FAM_V6},
};

static int parse_src_list(struct ctx *c, json_t *arr, const char *path, struct mg_prefix_list *out)
{
	size_t i;
	json_t *m;

	if (want_type(c, arr, JSON_ARRAY, path, "an array of strings"))
		return -EINVAL;
	for (i = 0; i < json_array_size(arr) && (m = json_array_get(arr, i)); i++) {
		char mpath[160];
		int ret;

		snprintf(mpath, sizeof(mpath), "%s[%zu]", path, i);
		if (want_type(c, m, JSON_STRING, mpath, "a string"))
			return -EINVAL;
		ret = resolve_host(c, json_string_value(m), mpath, json_string_value(m), true, out);
		if (ret)
			return ret;
	}
	list_dedup(out);
	return 0;
}

static int parse_acl(struct ctx *c, size_t idx, json_t *a)
{
	static const char *const keys[] = {"action", "src", "dst", "proto", NULL};
	struct mg_prefix_list src = {0};
	struct proto protos[4];
	size_t n_protos, i;
	char path[48], sub[96];
	json_t *action, *dsts, *m;
	int ret;

	snprintf(path, sizeof(path), "acls[%zu]", idx);
	if (want_type(c, a, JSON_OBJECT, path, "an object"))
		return -EINVAL;
	if ((ret = check_keys(c, a, path, keys)))
		return ret;
	action = json_object_get(a, "action");
	snprintf(sub, sizeof(sub), "%s.action", path);
	if (!action)
		return report(c, -EINVAL, path, NULL, "missing \"action\"");
	if (!json_is_string(action) || strcmp(json_string_value(action), "accept") != 0)
		return report(c, -EINVAL, sub,
			      json_is_string(action) ? json_string_value(action) : NULL,
			      "the only action is \"accept\"");
	if (!json_object_get(a, "src"))
		return report(c, -EINVAL, path, NULL, "missing \"src\"");
	dsts = json_object_get(a, "dst");
	if (!dsts)
		return report(c, -EINVAL, path, NULL, "missing \"dst\"");
	snprintf(sub, sizeof(sub), "%s.proto", path);
	ret = parse_proto(c, json_object_get(a, "proto"), sub, acl_default_protos, 4, protos,
			  &n_protos);
	snprintf(sub, sizeof(sub), "%s.src", path);
	if (!ret)
		ret = parse_src_list(c, json_object_get(a, "src"), sub, &src);
	snprintf(sub, sizeof(sub), "%s.dst", path);
	if (!ret && want_type(c, dsts, JSON_ARRAY, sub, "an array of \"host:ports\" strings"))
		ret = -EINVAL;
	if (!ret) {
		const struct span spans[2] = {family_span(&src, AF_INET),
					      family_span(&src, AF_INET6)};

		for (i = 0; i < json_array_size(dsts) && (m = json_array_get(dsts, i)); i++) {
			struct dst d = {0};

			snprintf(sub, sizeof(sub), "%s.dst[%zu]", path, i);
			ret = want_type(c, m, JSON_STRING, sub, "a \"host:ports\" string");
			if (!ret)
				ret = parse_dst(c, json_string_value(m), sub, &d);
			if (!ret)
				ret = expand(c, idx, &src, spans, &d, protos, n_protos);
			mg_prefix_list_free(&d.hosts);
			if (ret)
				break;
		}
	}
	mg_prefix_list_free(&src);
	return ret;
}

/* ---- tests ---- */

static int emit_test(struct ctx *c, const struct mg_acl_test *t)
{
	struct mg_policy *p = c->out;

	if (p->n_tests == c->cap_tests) {
		size_t cap = c->cap_tests ? 2 * c->cap_tests : 16;
		struct mg_acl_test *v = realloc(p->tests, cap * sizeof(*v));

		if (!v)
			return report(c, -ENOMEM, "", NULL, "out of memory");
		p->tests = v;
		c->cap_tests = cap;
	}
	p->tests[p->n_tests++] = *t;
	return 0;
}

static const struct mg_prefix *first_of(const struct mg_prefix_list *l, uint8_t family)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].family == family)
			return &l->v[i];
	return NULL;
}

/* One "host:port" of a test's accept or deny list: a test per family both sides have. */
static int parse_test_item(struct ctx *c, const struct mg_prefix_list *src, const struct proto *pr,
			   json_t *m, const char *path, struct mg_acl_test *t)
{
	static const uint8_t fams[] = {AF_INET, AF_INET6};
	struct dst d = {0};
	int ret, n = 0;

	if (want_type(c, m, JSON_STRING, path, "a \"host:port\" string"))
		return -EINVAL;
	ret = parse_dst(c, json_string_value(m), path, &d);
	if (!ret && has_ports(pr->num) && (d.n_r != 1 || d.r[0].lo != d.r[0].hi))
		ret = report(c, -EINVAL, path, json_string_value(m), "a test needs one port");
	for (size_t f = 0; !ret && f < 2; f++) {
		const struct mg_prefix *s = first_of(src, fams[f]),
				       *dd = first_of(&d.hosts, fams[f]);

		if (!s || !dd || !(fam_bit(fams[f]) & pr->families))
			continue;
		t->family = fams[f];
		t->dport = has_ports(pr->num) ? d.r[0].lo : 0;
		memcpy(t->src, s->addr, 16);
		memcpy(t->dst, dd->addr, 16);
		ret = emit_test(c, t);
		n++;
	}
	if (!ret && n == 0)
		ret = report(
		    c, -EINVAL, path, json_string_value(m),
		    "no source and destination address of the same family for this protocol");
	mg_prefix_list_free(&d.hosts);
	return ret;
}

static int parse_test(struct ctx *c, size_t idx, json_t *t)
{
	static const char *const keys[] = {"src", "accept", "deny", "proto", NULL};
	static const struct proto tcp = {IPPROTO_TCP, FAM_V4 | FAM_V6};
	static const char *const lists[] = {"accept", "deny"};
	struct mg_prefix_list src = {0};
	struct proto pr;
	size_t n_pr;
	char path[48], sub[96];
	json_t *s;
	int ret;

	snprintf(path, sizeof(path), "tests[%zu]", idx);
	if (want_type(c, t, JSON_OBJECT, path, "an object"))
		return -EINVAL;
	if ((ret = check_keys(c, t, path, keys)))
		return ret;
	s = json_object_get(t, "src");
	snprintf(sub, sizeof(sub), "%s.src", path);
	if (!s)
		return report(c, -EINVAL, path, NULL, "missing \"src\"");
	if (want_type(c, s, JSON_STRING, sub, "a string"))
		return -EINVAL;
	snprintf(sub, sizeof(sub), "%s.proto", path);
	ret = parse_proto(c, json_object_get(t, "proto"), sub, &tcp, 1, &pr, &n_pr);
	snprintf(sub, sizeof(sub), "%s.src", path);
	if (!ret)
		ret = resolve_host(c, json_string_value(s), sub, json_string_value(s), true, &src);
	if (!ret && src.n == 0)
		ret = report(c, -EINVAL, sub, json_string_value(s), "has no addresses");
	for (int l = 0; !ret && l < 2; l++) {
		json_t *arr = json_object_get(t, lists[l]), *m;
		size_t i;

		if (!arr)
			continue;
		snprintf(sub, sizeof(sub), "%s.%s", path, lists[l]);
		if (want_type(c, arr, JSON_ARRAY, sub, "an array of \"host:port\" strings")) {
			ret = -EINVAL;
			break;
		}
		for (i = 0; i < json_array_size(arr) && (m = json_array_get(arr, i)); i++) {
			struct mg_acl_test tt = {
			    .proto = pr.num,
			    .expect_accept = l == 0,
			    .test_index = (uint32_t)idx,
			    .item_index = (uint32_t)i,
			};

			snprintf(sub, sizeof(sub), "%s.%s[%zu]", path, lists[l], i);
			ret = parse_test_item(c, &src, &pr, m, sub, &tt);
			if (ret)
				break;
		}
	}
	mg_prefix_list_free(&src);
	return ret;
}

/* ---- top level ---- */

static int parse_array(struct ctx *c, json_t *arr, const char *name,
		       int (*each)(struct ctx *, size_t, json_t *))
{
	size_t i;
	json_t *v;

	if (!arr)
		return 0;
	if (want_type(c, arr, JSON_ARRAY, name, "an array"))
		return -EINVAL;
	for (i = 0; i < json_array_size(arr) && (v = json_array_get(arr, i)); i++) {
		int ret = each(c, i, v);

		if (ret)
			return ret;
	}
	return 0;
}

static int compile(struct ctx *c, json_t *root)
{
	static const char *const keys[] = {"groups", "hosts", "acls", "tests", NULL};
	int ret;

	if (!json_is_object(root))
		return report(c, -EINVAL, "policy", NULL, "expected a JSON object");
	if ((ret = check_keys(c, root, "policy", keys)))
		return ret;
	/* Hosts first: group members may be host aliases. */
	if ((ret = parse_hosts(c, json_object_get(root, "hosts"))) ||
	    (ret = parse_groups(c, json_object_get(root, "groups"))) ||
	    (ret = parse_array(c, json_object_get(root, "acls"), "acls", parse_acl)) ||
	    (ret = parse_array(c, json_object_get(root, "tests"), "tests", parse_test)))
		return ret;
	c->out->n_acls = json_is_array(json_object_get(root, "acls"))
			     ? json_array_size(json_object_get(root, "acls"))
			     : 0;
	return 0;
}

static void free_named(struct named_list *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		mg_prefix_list_free(&v[i].l);
	free(v);
}

int mg_policy_parse(const char *text, size_t len, const struct mg_policy_opts *opts,
		    struct mg_policy *out, char *err, size_t errlen)
{
	size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : MG_POLICY_MAX_BYTES;
	struct ctx c = {
	    .o = opts,
	    .name = opts ? opts->name : NULL,
	    .max_rules = opts && opts->max_rules ? opts->max_rules : MG_POLICY_MAX_RULES,
	    .out = out,
	    .err = errlen ? err : (char[1]){0},
	    .errlen = errlen ? errlen : 1,
	};
	json_error_t jerr;
	json_t *root;
	char *buf;
	int ret;

	memset(out, 0, sizeof(*out));
	c.err[0] = '\0';
	if (len > max_bytes)
		return report(&c, -E2BIG, "policy", NULL, "%zu bytes, more than the limit of %zu",
			      len, max_bytes);
	buf = malloc(len + 1);
	if (!buf)
		return report(&c, -ENOMEM, "policy", NULL, "out of memory");
	memcpy(buf, text, len);
	buf[len] = '\0';
	size_t bad_at;
	if (mg_hujson_strip(buf, len, &bad_at)) {
		ret = report(&c, -EINVAL, "", NULL, "line %u: unterminated /* comment",
			     line_of(buf, bad_at));
		free(buf);
		return ret;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	if (!root) {
		snprintf(c.err, c.errlen, "%s%sline %d column %d: %s", c.name ? c.name : "",
			 c.name ? ": " : "", jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	ret = compile(&c, root);
	free_named(c.groups, c.n_groups);
	free_named(c.hosts, c.n_hosts);
	json_decref(root);
	if (ret)
		mg_policy_free(out);
	return ret;
}

int mg_policy_load(const char *path, const struct mg_policy_opts *opts, struct mg_policy *out,
		   char *err, size_t errlen)
{
	struct mg_policy_opts o = opts ? *opts : (struct mg_policy_opts){0};
	size_t max_bytes = o.max_bytes ? o.max_bytes : MG_POLICY_MAX_BYTES;
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;
	size_t n;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!o.name)
		o.name = path;
	if (!f)
		ret = -errno;
	else if (fstat(fileno(f), &st) < 0)
		ret = -errno;
	else
		ret = S_ISREG(st.st_mode) ? 0 : S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		if (f)
			fclose(f);
		return ret;
	}
	if ((size_t)st.st_size > max_bytes) {
		fclose(f);
		snprintf(err, errlen, "%s: policy: %lld bytes, more than the limit of %zu", path,
			 (long long)st.st_size, max_bytes);
		return -E2BIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	ret = mg_policy_parse(buf, n, &o, out, err, errlen);
	free(buf);
	return ret;
}

void mg_policy_free(struct mg_policy *p)
{
	free(p->rules);
	free(p->tests);
	memset(p, 0, sizeof(*p));
}
