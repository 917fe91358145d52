/* SPDX-License-Identifier: MIT */
/*
 * Coordination server answers -> C structs, and request bodies. Everything
 * here reads untrusted bytes from the network: each member is checked for
 * type and range, the first problem ends the parse with one line naming the
 * member ("peers[2].node_key: not a base64 key"), and nothing half-parsed is
 * returned. Unknown members are ignored so the server can add fields.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "keys.h"

struct jctx {
	char *err;
	size_t errlen;
	char path[128]; /* the member being parsed */
};

__attribute__((format(printf, 2, 3))) static int fail(struct jctx *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->errlen)
		snprintf(c->err, c->errlen, "%s%s%s", c->path, c->path[0] ? ": " : "", msg);
	for (char *p = c->err; c->errlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

/* Set the path to parent + suffix; returns the previous length to restore. */
static size_t push(struct jctx *c, const char *fmt, ...)
{
	size_t n = strlen(c->path);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->path + n, sizeof(c->path) - n, fmt, ap);
	va_end(ap);
	return n;
}

static void pop(struct jctx *c, size_t n)
{
	c->path[n] = '\0';
}

/* A user string quoted for messages: printable, shortened. */
static const char *quote(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	buf[n++] = '"';
	for (; *s && n + 8 < len; s++)
		buf[n++] = (*s >= 0x20 && *s < 0x7f && *s != '"') ? *s : '?';
	snprintf(buf + n, len - n, "%s\"", *s ? "..." : "");
	return buf;
}

#define Q(s) quote((s), (char[48]){0}, 48)

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

/* Member `name` of o: NULL if absent (an error if required). */
static json_t *member(struct jctx *c, json_t *o, const char *name, bool required, int *ret)
{
	json_t *v = json_object_get(o, name);

	*ret = 0;
	if (!v && required) {
		size_t n = push(c, "%s%s", c->path[0] ? "." : "", name);
		*ret = fail(c, "missing");
		pop(c, n);
	}
	return v;
}

static int get_uint(struct jctx *c, json_t *o, const char *name, bool required, uint64_t max,
		    uint64_t *out)
{
	int ret;
	json_t *v = member(c, o, name, required, &ret);
	size_t n;

	if (!v)
		return ret;
	n = push(c, "%s%s", c->path[0] ? "." : "", name);
	if (!json_is_integer(v))
		ret = fail(c, "expected an integer, got %s", type_name(v));
	else if (json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
		ret = fail(c, "%lld out of range 0..%llu", (long long)json_integer_value(v),
			   (unsigned long long)max);
	else
		*out = (uint64_t)json_integer_value(v);
	pop(c, n);
	return ret;
}

static int get_bool(struct jctx *c, json_t *o, const char *name, bool required, bool *out)
{
	int ret;
	json_t *v = member(c, o, name, required, &ret);
	size_t n;

	if (!v)
		return ret;
	n = push(c, "%s%s", c->path[0] ? "." : "", name);
	if (!json_is_boolean(v))
		ret = fail(c, "expected true or false, got %s", type_name(v));
	else
		*out = json_is_true(v);
	pop(c, n);
	return ret;
}

/* A name: 1..len-1 printable ASCII characters. */
static int get_name(struct jctx *c, json_t *o, const char *name, bool required, char *out,
		    size_t len)
{
	int ret;
	json_t *v = member(c, o, name, required, &ret);
	const char *s;
	size_t n;

	if (!v)
		return ret;
	n = push(c, "%s%s", c->path[0] ? "." : "", name);
	s = json_string_value(v);
	if (!s)
		ret = fail(c, "expected a string, got %s", type_name(v));
	else if (!s[0] || strlen(s) >= len || json_string_length(v) != strlen(s))
		ret = fail(c, "%s: expected 1..%zu characters", Q(s), len - 1);
	else {
		for (const char *p = s; *p && !ret; p++)
			if (*p < 0x20 || *p == 0x7f)
				ret = fail(c, "%s: control characters", Q(s));
		if (!ret)
			strcpy(out, s);
	}
	pop(c, n);
	return ret;
}

static int get_key(struct jctx *c, json_t *o, const char *name, uint8_t key[32])
{
	int ret;
	json_t *v = member(c, o, name, true, &ret);
	const char *s;
	size_t n;

	if (!v)
		return ret;
	n = push(c, ".%s", name);
	s = json_string_value(v);
	if (!s || mg_key_from_base64(s, key) < 0)
		ret = fail(c, "not a base64 key (44 characters)");
	pop(c, n);
	return ret;
}

/* An array member of at most max elements; NULL without error if absent. */
static json_t *get_array(struct jctx *c, json_t *o, const char *name, bool required, size_t max,
			 int *ret)
{
	json_t *v = member(c, o, name, required, ret);
	size_t n;

	if (!v)
		return NULL;
	n = push(c, "%s%s", c->path[0] ? "." : "", name);
	if (!json_is_array(v))
		*ret = fail(c, "expected an array, got %s", type_name(v));
	else if (json_array_size(v) > max)
		*ret = fail(c, "%zu entries, at most %zu", json_array_size(v), max);
	pop(c, n);
	return *ret ? NULL : v;
}

typedef int (*elem_fn)(const char *s, void *dst);

static int parse_ifaddr(const char *s, void *dst)
{
	return mg_ifaddr_parse(s, dst);
}

static int parse_prefix(const char *s, void *dst)
{
	return mg_prefix_parse(s, dst);
}

static int parse_endpoint(const char *s, void *dst)
{
	return mg_sockaddr_parse(s, dst);
}

/* An array of strings, each parsed by fn into dst[i] (elem bytes apart). */
static int get_strings(struct jctx *c, json_t *o, const char *name, bool required, size_t max,
		       elem_fn fn, const char *what, void *dst, size_t elem, uint32_t *count)
{
	int ret;
	json_t *a = get_array(c, o, name, required, max, &ret);
	size_t i;
	json_t *v;

	*count = 0;
	if (!a)
		return ret;
	json_array_foreach(a, i, v)
	{
		const char *s = json_string_value(v);
		size_t n = push(c, "%s%s[%zu]", c->path[0] ? "." : "", name, i);

		if (!s)
			ret = fail(c, "expected a string, got %s", type_name(v));
		else if (fn(s, (char *)dst + i * elem) < 0)
			ret = fail(c, "%s: not %s", Q(s), what);
		pop(c, n);
		if (ret)
			return ret;
		*count = (uint32_t)i + 1;
	}
	return 0;
}

static int get_addrs(struct jctx *c, json_t *o, const char *name, bool required,
		     struct mg_prefix *out, uint32_t *n)
{
	return get_strings(c, o, name, required, CP_COORD_MAX_ADDRS, parse_ifaddr,
			   "an address/prefix-length", out, sizeof(*out), n);
}

static int get_expiry(struct jctx *c, json_t *o, bool required, int64_t *out)
{
	uint64_t v = 0;
	int ret = get_uint(c, o, "key_expiry", required, INT64_MAX, &v);

	*out = (int64_t)v;
	return ret;
}

static int expect_object(struct jctx *c, json_t *v)
{
	return json_is_object(v) ? 0 : fail(c, "expected an object, got %s", type_name(v));
}

/* ---- PEER ------------------------------------------------------------------ */

void cp_coord_peer_free(struct cp_coord_peer *p)
{
	free(p->aips);
	memset(p, 0, sizeof(*p));
}

static int parse_peer(struct jctx *c, json_t *o, struct cp_coord_peer *p)
{
	json_t *a;
	int ret = expect_object(c, o);

	if (!ret)
		ret = get_uint(c, o, "node_id", true, INT64_MAX, &p->node_id);
	if (!ret && !p->node_id)
		ret = fail(c, "node_id 0");
	if (!ret)
		ret = get_name(c, o, "name", true, p->name, sizeof(p->name));
	if (!ret)
		ret = get_key(c, o, "node_key", p->node_key);
	if (!ret)
		ret = get_addrs(c, o, "addresses", false, p->addrs, &p->n_addrs);
	if (!ret && (a = get_array(c, o, "allowed_ips", true, CP_COORD_MAX_AIPS, &ret)) &&
	    json_array_size(a)) {
		p->aips = calloc(json_array_size(a), sizeof(*p->aips));
		if (!p->aips)
			return fail(c, "out of memory");
		ret = get_strings(c, o, "allowed_ips", true, CP_COORD_MAX_AIPS, parse_prefix,
				  "a prefix", p->aips, sizeof(*p->aips), &p->n_aips);
	}
	if (!ret)
		ret = get_strings(c, o, "endpoints", false, CP_COORD_MAX_ENDPOINTS, parse_endpoint,
				  "ip:port", p->eps, sizeof(*p->eps), &p->n_eps);
	if (!ret)
		ret = get_bool(c, o, "online", false, &p->online);
	if (!ret)
		ret = get_expiry(c, o, false, &p->key_expiry);
	if (!ret)
		ret = get_bool(c, o, "plain_wireguard", false, &p->plain_wireguard);
	return ret;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_peer_id(const void *a, const void *b)
{
	return cmp_u64(&((const struct cp_coord_peer *)a)->node_id,
		       &((const struct cp_coord_peer *)b)->node_id);
}

static int cmp_peer_key(const void *a, const void *b)
{
	return memcmp(((const struct cp_coord_peer *)a)->node_key,
		      ((const struct cp_coord_peer *)b)->node_key, 32);
}

/* Peers come back sorted by node_id; duplicate ids or keys are refused. */
static int parse_peers(struct jctx *c, json_t *o, const char *name, bool required,
		       struct cp_coord_map *m)
{
	int ret;
	json_t *a = get_array(c, o, name, required, CP_COORD_MAX_PEERS, &ret), *v;
	size_t i;

	if (!a || !json_array_size(a))
		return ret;
	m->peers = calloc(json_array_size(a), sizeof(*m->peers));
	if (!m->peers)
		return fail(c, "out of memory");
	json_array_foreach(a, i, v)
	{
		size_t n = push(c, "%s[%zu]", name, i);

		m->n_peers = i + 1;
		ret = parse_peer(c, v, &m->peers[i]);
		pop(c, n);
		if (ret)
			return ret;
	}
	qsort(m->peers, m->n_peers, sizeof(*m->peers), cmp_peer_key);
	for (i = 1; i < m->n_peers; i++)
		if (!memcmp(m->peers[i - 1].node_key, m->peers[i].node_key, 32))
			return fail(c, "%s: nodes %llu and %llu have the same node_key", name,
				    (unsigned long long)m->peers[i - 1].node_id,
				    (unsigned long long)m->peers[i].node_id);
	qsort(m->peers, m->n_peers, sizeof(*m->peers), cmp_peer_id);
	for (i = 1; i < m->n_peers; i++)
		if (m->peers[i - 1].node_id == m->peers[i].node_id)
			return fail(c, "%s: node_id %llu appears twice", name,
				    (unsigned long long)m->peers[i].node_id);
	return 0;
}

static int parse_removed(struct jctx *c, json_t *o, struct cp_coord_map *m)
{
	int ret;
	json_t *a = get_array(c, o, "peers_removed", false, CP_COORD_MAX_PEERS, &ret), *v;
	size_t i;

	if (!a || !json_array_size(a))
		return ret;
	m->removed = calloc(json_array_size(a), sizeof(*m->removed));
	if (!m->removed)
		return fail(c, "out of memory");
	json_array_foreach(a, i, v)
	{
		size_t n = push(c, "peers_removed[%zu]", i);

		if (!json_is_integer(v) || json_integer_value(v) <= 0)
			ret = fail(c, "expected a node_id (a positive integer)");
		pop(c, n);
		if (ret)
			return ret;
		m->removed[m->n_removed++] = (uint64_t)json_integer_value(v);
	}
	qsort(m->removed, m->n_removed, sizeof(*m->removed), cmp_u64);
	return 0;
}

/* ---- RULE ------------------------------------------------------------------ */

/* One prefix string of the rule's family into *p. */
static int rule_prefix_str(struct jctx *c, json_t *v, int family, struct mg_prefix *p)
{
	if (!json_is_string(v) || mg_prefix_parse(json_string_value(v), p) < 0)
		return fail(c, "expected a prefix string");
	if (p->family != family)
		return fail(c, "%s: not of family %d", Q(json_string_value(v)),
			    family == AF_INET ? 4 : 6);
	return 0;
}

/*
 * "src" or "dst": a prefix string into *p. With list, also a non-empty array
 * of them (an entry standing for a rule per source): *list is the array, or
 * NULL for a single prefix.
 */
static int rule_prefix(struct jctx *c, json_t *o, const char *name, int family, struct mg_prefix *p,
		       json_t **list)
{
	int ret;
	json_t *v = member(c, o, name, true, &ret);
	size_t n;

	if (list)
		*list = NULL;
	if (!v)
		return ret;
	n = push(c, ".%s", name);
	if (list && json_is_array(v)) {
		size_t i;
		json_t *e;

		if (!json_array_size(v))
			ret = fail(c, "an empty list");
		json_array_foreach(v, i, e)
		{
			size_t k = push(c, "[%zu]", i);
			ret = rule_prefix_str(c, e, family, p);
			pop(c, k);
			if (ret)
				break;
		}
		*list = v;
	} else {
		ret = rule_prefix_str(c, v, family, p);
	}
	pop(c, n);
	return ret;
}

static int proto_of(struct jctx *c, json_t *e, uint8_t *proto)
{
	if (!json_is_integer(e))
		return fail(c, "expected an integer, got %s", type_name(e));
	if (json_integer_value(e) < 0 || json_integer_value(e) > 255)
		return fail(c, "%lld out of range 0..255", (long long)json_integer_value(e));
	*proto = (uint8_t)json_integer_value(e);
	return 0;
}

/* "proto": 0..255 (0 = any), or a non-empty array of them (*list). */
static int rule_protos(struct jctx *c, json_t *o, json_t **list, uint8_t *proto)
{
	int ret;
	json_t *v = member(c, o, "proto", true, &ret), *e;
	size_t n, i;

	*list = NULL;
	if (!v)
		return ret;
	n = push(c, ".proto");
	if (!json_is_array(v))
		ret = proto_of(c, v, proto);
	else if (!json_array_size(v))
		ret = fail(c, "an empty list");
	else {
		json_array_foreach(v, i, e)
		{
			size_t k = push(c, "[%zu]", i);
			ret = proto_of(c, e, proto);
			pop(c, k);
			if (ret)
				break;
		}
		*list = v;
	}
	pop(c, n);
	return ret;
}

static int rule_ports(struct jctx *c, json_t *o, struct mg_acl_rule *r)
{
	json_t *v = json_object_get(o, "ports");
	json_t *lo, *hi;
	size_t n;
	int ret = 0;

	r->dport_lo = 0;
	r->dport_hi = 65535;
	if (!v)
		return 0;
	n = push(c, ".ports");
	lo = json_array_get(v, 0);
	hi = json_array_get(v, 1);
	if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(lo) ||
	    !json_is_integer(hi))
		ret = fail(c, "expected [low, high]");
	else if (json_integer_value(lo) < 0 || json_integer_value(hi) > 65535 ||
		 json_integer_value(lo) > json_integer_value(hi))
		ret = fail(c, "[%lld, %lld]: not a port range", (long long)json_integer_value(lo),
			   (long long)json_integer_value(hi));
	else {
		r->dport_lo = (uint16_t)json_integer_value(lo);
		r->dport_hi = (uint16_t)json_integer_value(hi);
	}
	pop(c, n);
	return ret;
}

/*
 * One packet_filter entry: family, proto, src, dst and ports. "proto" and
 * "src" may be lists, which stand for a rule per (proto, src) pair (the
 * server sends a gateway's thousands of sources that way); each pair is
 * appended to m->rules, at most CP_COORD_MAX_RULES in all.
 */
static int parse_rule(struct jctx *c, json_t *o, uint32_t index, struct cp_coord_map *m,
		      size_t *cap)
{
	uint64_t family = 0;
	struct mg_acl_rule r;
	struct mg_prefix src, dst;
	json_t *srcs = NULL, *protos = NULL;
	size_t n_src, n_proto;
	int ret = expect_object(c, o);

	memset(&r, 0, sizeof(r));
	if (!ret)
		ret = get_uint(c, o, "family", true, 6, &family);
	if (!ret && family != 4 && family != 6)
		ret = fail(c, "family %llu: expected 4 or 6", (unsigned long long)family);
	r.family = family == 4 ? AF_INET : AF_INET6;
	if (!ret)
		ret = rule_protos(c, o, &protos, &r.proto);
	if (!ret)
		ret = rule_prefix(c, o, "src", r.family, &src, &srcs);
	if (!ret)
		ret = rule_prefix(c, o, "dst", r.family, &dst, NULL);
	if (!ret)
		ret = rule_ports(c, o, &r);
	if (ret)
		return ret;
	r.acl_index = index;
	r.dst_len = dst.cidr;
	memcpy(r.dst, dst.addr, 16);
	n_src = srcs ? json_array_size(srcs) : 1;
	n_proto = protos ? json_array_size(protos) : 1;
	if (n_src * n_proto > CP_COORD_MAX_RULES - m->n_rules)
		return fail(c, "more than %u rules in all", CP_COORD_MAX_RULES);
	if (m->n_rules + n_src * n_proto > *cap) {
		size_t want = *cap ? *cap : 64;
		struct mg_acl_rule *v;

		while (want < m->n_rules + n_src * n_proto)
			want *= 2;
		if (!(v = realloc(m->rules, want * sizeof(*v))))
			return fail(c, "out of memory");
		m->rules = v;
		*cap = want;
	}
	/* rule k * n_src + i: protocol k, source i (each source parsed once more;
	 * rule_prefix checked them all) */
	for (size_t i = 0; i < n_src; i++) {
		if (srcs)
			mg_prefix_parse(json_string_value(json_array_get(srcs, i)), &src);
		r.src_len = src.cidr;
		memcpy(r.src, src.addr, 16);
		for (size_t k = 0; k < n_proto; k++) {
			if (protos)
				r.proto = (uint8_t)json_integer_value(json_array_get(protos, k));
			m->rules[m->n_rules + k * n_src + i] = r;
		}
	}
	m->n_rules += n_src * n_proto;
	return 0;
}

static int parse_filter(struct jctx *c, json_t *o, bool required, struct cp_coord_map *m)
{
	int ret;
	json_t *a = get_array(c, o, "packet_filter", required, CP_COORD_MAX_RULES, &ret), *v;
	size_t i, cap = 0;

	if (!a)
		return ret;
	m->has_filter = true;
	json_array_foreach(a, i, v)
	{
		size_t n = push(c, "packet_filter[%zu]", i);

		ret = parse_rule(c, v, (uint32_t)i, m, &cap);
		pop(c, n);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- the map ---------------------------------------------------------------- */

static int parse_self(struct jctx *c, json_t *o, bool required, struct cp_coord_map *m)
{
	int ret;
	json_t *s = member(c, o, "self", required, &ret);
	struct cp_coord_self *self = &m->self;
	size_t n;

	if (!s)
		return ret;
	n = push(c, "self");
	ret = expect_object(c, s);
	if (!ret)
		ret = get_uint(c, s, "node_id", true, INT64_MAX, &self->node_id);
	if (!ret)
		ret = get_name(c, s, "name", true, self->name, sizeof(self->name));
	if (!ret)
		ret = get_key(c, s, "node_key", self->node_key);
	if (!ret)
		ret = get_addrs(c, s, "addresses", true, self->addrs, &self->n_addrs);
	if (!ret)
		ret = get_expiry(c, s, false, &self->key_expiry);
	pop(c, n);
	m->has_self = ret == 0;
	return ret;
}

/* "derp_map": {"regions": [{"id", "server", "public_key"?, "tls"?, "server_name"?}]} */
static int parse_derp_region(struct jctx *c, json_t *o, struct mg_derp_region_conf *r)
{
	uint64_t id = 0;
	int ret = expect_object(c, o);

	if (!ret)
		ret = get_uint(c, o, "id", true, 65535, &id);
	if (!ret && id == 0)
		ret = fail(c, "id 0: region ids are 1..65535");
	r->id = (uint32_t)id;
	if (!ret) {
		char s[300];

		ret = get_name(c, o, "server", true, s, sizeof(s));
		size_t n = push(c, ".server");
		if (!ret && mg_hostport_parse(s, &r->server, r->host, sizeof(r->host)) < 0)
			ret = fail(c, "%s: not ip:port or name:port", s);
		pop(c, n);
	}
	if (!ret && json_object_get(o, "public_key")) {
		static const uint8_t zero[32];

		ret = get_key(c, o, "public_key", r->public_key);
		size_t n = push(c, ".public_key");
		if (!ret && !memcmp(r->public_key, zero, 32))
			ret = fail(c, "the all-zero key");
		pop(c, n);
		r->pinned = ret == 0;
	}
	if (!ret)
		ret = get_bool(c, o, "tls", false, &r->tls);
	if (!ret && json_object_get(o, "server_name")) {
		ret = get_name(c, o, "server_name", true, r->server_name, sizeof(r->server_name));
		size_t n = push(c, ".server_name");
		if (!ret && !mg_dns_name_valid(r->server_name))
			ret = fail(c, "not a DNS name");
		else if (!ret && !r->tls)
			ret = fail(c, "only with \"tls\": true");
		pop(c, n);
	}
	return ret;
}

/*
 * A derp_map that does not parse leaves the rest of the map standing (a
 * newer server's form must not cut a node off its peers): derp_invalid,
 * with the reason in derp_error, and no regions.
 */
static int parse_derp(struct jctx *pc, json_t *o, struct cp_coord_map *m)
{
	struct jctx cc = {.err = m->derp_error, .errlen = sizeof(m->derp_error)}, *c = &cc;
	int ret;
	json_t *dm = member(c, o, "derp_map", false, &ret), *a, *v;
	size_t n, i;

	(void)pc;
	if (!dm)
		return 0;
	n = push(c, "derp_map");
	ret = expect_object(c, dm);
	a = ret ? NULL : get_array(c, dm, "regions", false, CP_COORD_MAX_DERP, &ret);
	if (a && json_array_size(a) && !(m->derp = calloc(json_array_size(a), sizeof(*m->derp))))
		ret = fail(c, "out of memory");
	for (i = 0; !ret && a && i < json_array_size(a); i++) {
		size_t k = push(c, ".regions[%zu]", i);

		v = json_array_get(a, i);
		ret = parse_derp_region(c, v, &m->derp[i]);
		for (size_t j = 0; !ret && j < i; j++)
			if (m->derp[j].id == m->derp[i].id)
				ret = fail(c, "id %u: a duplicate", m->derp[i].id);
		pop(c, k);
		if (!ret)
			m->n_derp++;
	}
	pop(c, n);
	m->has_derp = ret == 0;
	if (ret) {
		free(m->derp);
		m->derp = NULL;
		m->n_derp = 0;
		m->derp_invalid = true;
	}
	return 0;
}

static json_t *load(struct jctx *c, const char *text, size_t len)
{
	json_error_t e;
	json_t *root;

	if (len > CP_COORD_MAX_BODY) {
		fail(c, "answer of %zu bytes, more than %u", len, CP_COORD_MAX_BODY);
		return NULL;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
	if (!root)
		fail(c, "bad JSON at byte %d: %s", e.position, e.text);
	else if (!json_is_object(root)) {
		fail(c, "expected an object, got %s", type_name(root));
		json_decref(root);
		root = NULL;
	}
	return root;
}

void cp_coord_map_free(struct cp_coord_map *m)
{
	for (size_t i = 0; m->peers && i < m->n_peers; i++)
		cp_coord_peer_free(&m->peers[i]);
	free(m->peers);
	free(m->removed);
	free(m->rules);
	free(m->derp);
	memset(m, 0, sizeof(*m));
}

int cp_coord_map_parse(const char *text, size_t len, struct cp_coord_map *out, char *err,
		       size_t errlen)
{
	struct jctx c = {.err = err, .errlen = errlen};
	json_t *root;
	int ret;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	root = load(&c, text, len);
	if (!root)
		return -EINVAL;
	ret = get_uint(&c, root, "version", true, INT64_MAX, &out->version);
	if (!ret)
		ret = get_bool(&c, root, "keepalive", false, &out->keepalive);
	if (!ret && !out->keepalive)
		ret = get_bool(&c, root, "full", true, &out->full);
	if (!ret && !out->keepalive)
		ret = parse_self(&c, root, out->full, out);
	if (!ret && !out->keepalive)
		ret = parse_peers(&c, root, out->full ? "peers" : "peers_changed", out->full, out);
	if (!ret && !out->keepalive && !out->full)
		ret = parse_removed(&c, root, out);
	if (!ret && !out->keepalive)
		ret = parse_filter(&c, root, out->full, out);
	if (!ret && !out->keepalive)
		ret = parse_derp(&c, root, out);
	json_decref(root);
	if (ret)
		cp_coord_map_free(out);
	return ret;
}

int cp_coord_reg_parse(const char *text, size_t len, struct cp_coord_reg *out, char *err,
		       size_t errlen)
{
	struct jctx c = {.err = err, .errlen = errlen};
	uint64_t id = 0;
	json_t *root;
	int ret;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	root = load(&c, text, len);
	if (!root)
		return -EINVAL;
	ret = get_uint(&c, root, "node_id", true, INT64_MAX, &id);
	if (!ret && !id)
		ret = fail(&c, "node_id 0");
	out->node_id = id;
	if (!ret)
		ret = get_name(&c, root, "name", true, out->name, sizeof(out->name));
	if (!ret)
		ret = get_addrs(&c, root, "addresses", true, out->addrs, &out->n_addrs);
	if (!ret && !out->n_addrs)
		ret = fail(&c, "addresses: none");
	if (!ret)
		ret = get_expiry(&c, root, true, &out->key_expiry);
	if (!ret && json_object_get(root, "tailnet"))
		ret = get_name(&c, root, "tailnet", false, out->tailnet, sizeof(out->tailnet));
	json_decref(root);
	if (ret)
		memset(out, 0, sizeof(*out));
	return ret;
}

int cp_coord_update_parse(const char *text, size_t len, int64_t *key_expiry, char *err,
			  size_t errlen)
{
	struct jctx c = {.err = err, .errlen = errlen};
	json_t *root = load(&c, text, len);
	int64_t v = 0;
	int ret;

	if (!root)
		return -EINVAL;
	ret = get_expiry(&c, root, true, &v);
	json_decref(root);
	if (!ret)
		*key_expiry = v;
	return ret;
}

void cp_coord_error_parse(const char *text, size_t len, char *out, size_t outlen)
{
	json_t *root = len <= CP_COORD_MAX_BODY ? json_loadb(text, len, 0, NULL) : NULL;
	const char *s = json_string_value(json_object_get(root, "error"));
	size_t n = 0;

	for (; s && *s && n + 1 < outlen; s++)
		out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	if (outlen)
		out[n] = '\0';
	json_decref(root);
}

/* ---- request bodies ------------------------------------------------------------ */

static int add_strings(json_t *o, const char *name, const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])))
			break;
	return json_object_set_new(o, name, a);
}

char *cp_coord_req_body(const struct cp_coord_req *r)
{
	json_t *o = json_object();
	char *text = NULL;
	int bad = !o;

	if (!bad && r->with_version)
		bad |= json_object_set_new(o, "version", json_integer((json_int_t)r->version));
	if (!bad && r->node_key) {
		char b64[45];

		mg_key_to_base64(r->node_key, b64);
		bad |= json_object_set_new(o, "node_key", json_string(b64));
	}
	if (!bad && r->hostname)
		bad |= json_object_set_new(o, "hostname", json_string(r->hostname));
	if (!bad && r->auth_key)
		bad |= json_object_set_new(o, "auth_key", json_string(r->auth_key));
	if (!bad && r->endpoints)
		bad |= add_strings(o, "endpoints", r->endpoints, r->n_endpoints);
	if (!bad && r->routes)
		bad |= add_strings(o, "routes", r->routes, r->n_routes);
	if (!bad)
		text = json_dumps(o, JSON_COMPACT);
	/* The auth key was in there: jansson frees without zeroing, so blank it first. */
	if (o && r->auth_key) {
		json_t *k = json_object_get(o, "auth_key");
		if (k && json_string_value(k))
			sodium_memzero((char *)json_string_value(k), json_string_length(k));
	}
	json_decref(o);
	return text;
}

/* ---- the netmap cache: our own full-map text ----------------------------------- */

static json_t *prefixes(const struct mg_prefix *p, uint32_t n)
{
	json_t *a = json_array();
	char buf[MG_PREFIX_STRLEN];

	for (uint32_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(mg_prefix_fmt(&p[i], buf, sizeof(buf))));
	return a;
}

static json_t *peer_obj(const struct cp_coord_peer *p)
{
	json_t *o = json_object(), *eps = json_array();
	char key[45], ep[MG_SOCKADDR_STRLEN];

	mg_key_to_base64(p->node_key, key);
	for (uint32_t i = 0; eps && i < p->n_eps; i++)
		json_array_append_new(eps,
				      json_string(mg_sockaddr_fmt(&p->eps[i], ep, sizeof(ep))));
	json_object_set_new(o, "node_id", json_integer((json_int_t)p->node_id));
	json_object_set_new(o, "name", json_string(p->name));
	json_object_set_new(o, "node_key", json_string(key));
	json_object_set_new(o, "addresses", prefixes(p->addrs, p->n_addrs));
	json_object_set_new(o, "allowed_ips", prefixes(p->aips, p->n_aips));
	json_object_set_new(o, "endpoints", eps);
	json_object_set_new(o, "online", json_boolean(p->online));
	json_object_set_new(o, "key_expiry", json_integer(p->key_expiry));
	json_object_set_new(o, "plain_wireguard", json_boolean(p->plain_wireguard));
	return o;
}

static json_t *rule_obj(const struct mg_acl_rule *r)
{
	struct mg_prefix src = {.family = r->family, .cidr = r->src_len};
	struct mg_prefix dst = {.family = r->family, .cidr = r->dst_len};
	char a[MG_PREFIX_STRLEN], b[MG_PREFIX_STRLEN];

	memcpy(src.addr, r->src, 16);
	memcpy(dst.addr, r->dst, 16);
	return json_pack("{s:i, s:i, s:s, s:s, s:[i, i]}", "family", r->family == AF_INET ? 4 : 6,
			 "proto", r->proto, "src", mg_prefix_fmt(&src, a, sizeof(a)), "dst",
			 mg_prefix_fmt(&dst, b, sizeof(b)), "ports", r->dport_lo, r->dport_hi);
}

static json_t *derp_obj(const struct mg_derp_region_conf *r)
{
	json_t *o = json_object();
	char s[300], key[45];

	json_object_set_new(o, "id", json_integer(r->id));
	json_object_set_new(o, "server",
			    json_string(mg_hostport_fmt(&r->server, r->host, s, sizeof(s))));
	if (r->pinned) {
		mg_key_to_base64(r->public_key, key);
		json_object_set_new(o, "public_key", json_string(key));
	}
	json_object_set_new(o, "tls", json_boolean(r->tls));
	if (r->server_name[0])
		json_object_set_new(o, "server_name", json_string(r->server_name));
	return o;
}

char *cp_coord_map_dump(const struct cp_coord_self *self, const struct cp_coord_peer *peers,
			size_t n_peers, const struct mg_acl_rule *rules, size_t n_rules,
			const struct mg_derp_region_conf *derp, size_t n_derp, uint64_t version)
{
	json_t *o = json_object(), *ps = json_array(), *rs = json_array();
	json_t *dm = json_object(), *ds = json_array();
	struct cp_coord_peer me = {.node_id = self->node_id, .n_addrs = self->n_addrs};
	json_t *so;
	char *text;

	memcpy(me.node_key, self->node_key, 32);
	memcpy(me.addrs, self->addrs, sizeof(me.addrs));
	snprintf(me.name, sizeof(me.name), "%s", self->name);
	so = peer_obj(&me);
	json_object_set_new(so, "key_expiry", json_integer(self->key_expiry));
	for (size_t i = 0; i < n_peers; i++)
		json_array_append_new(ps, peer_obj(&peers[i]));
	for (size_t i = 0; i < n_rules; i++)
		json_array_append_new(rs, rule_obj(&rules[i]));
	for (size_t i = 0; i < n_derp; i++)
		json_array_append_new(ds, derp_obj(&derp[i]));
	json_object_set_new(dm, "regions", ds);
	json_object_set_new(o, "version", json_integer((json_int_t)version));
	json_object_set_new(o, "full", json_true());
	json_object_set_new(o, "self", so);
	json_object_set_new(o, "peers", ps);
	json_object_set_new(o, "packet_filter", rs);
	json_object_set_new(o, "derp_map", dm);
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return text;
}
