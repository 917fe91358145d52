/* SPDX-License-Identifier: MIT */
/*
 * The netmap computation: policy-based peer visibility in both directions,
 * packet filters, deltas against what a node last received, primary route
 * election and failover, expired keys, plain WireGuard peers, autoApprovers.
 */
/* The checks below call the code under test: keep assert() in every build type. */
#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "addr.h"
#include "conf.h"
#include "model.h"

#define NOW 1800000000

static int fails;
#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: FAIL %s\n", __FILE__, __LINE__, #c);               \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

static struct coord_model *m;

static struct cm_node *add(int64_t id, int64_t tn, int64_t user, const char *name, const char *tags,
			   const char *routes, const char *approved, bool plain, int64_t expiry)
{
	char a4[32], a6[64];
	struct cm_node_info in = {.id = id,
				  .tailnet_id = tn,
				  .user_id = user,
				  .name = name,
				  .node_key = name,
				  .machine_key = plain ? NULL : name,
				  .tags = tags,
				  .endpoints = "192.0.2.1:51820",
				  .routes = routes,
				  .approved = approved,
				  .plain_wg = plain,
				  .key_expiry = expiry,
				  .last_seen = plain ? 0 : NOW};

	snprintf(a4, sizeof(a4), "100.64.%d.%d/32", (int)(id >> 8), (int)(id & 255));
	snprintf(a6, sizeof(a6), "fd7a:115c:a1e0:%x::%x/128", (unsigned)tn, (unsigned)id);
	assert(mg_ifaddr_parse(a4, &in.addr4) == 0 && mg_ifaddr_parse(a6, &in.addr6) == 0);
	return cm_node_upsert(m, &in);
}

static int woken;
static void wake(void *arg, struct cm_node *n)
{
	(void)arg;
	n->waiter = NULL;
	woken++;
}

/* The map for n as JSON. */
static json_t *map(struct cm_node *n, int64_t version)
{
	size_t len;
	char *s = cm_map(m, n, version, &len);
	json_t *j = s ? json_loadb(s, len, 0, NULL) : NULL;

	free(s);
	assert(j);
	return j;
}

/* How many rules a packet_filter stands for: "proto" and "src" may be lists. */
static size_t filter_rules(json_t *f)
{
	size_t i, n = 0;
	json_t *r;

	json_array_foreach(f, i, r)
	{
		json_t *p = json_object_get(r, "proto"), *s = json_object_get(r, "src");
		n += (json_is_array(p) ? json_array_size(p) : 1) *
		     (json_is_array(s) ? json_array_size(s) : 1);
	}
	return n;
}

/* Sorted node ids of a peers list, as "1,2,3". */
static const char *ids(json_t *peers)
{
	static char buf[256];
	int v[64], n = 0;
	size_t i;
	json_t *p;

	json_array_foreach(peers, i, p) v[n++] =
	    (int)(json_is_integer(p) ? json_integer_value(p)
				     : json_integer_value(json_object_get(p, "node_id")));
	for (int a = 0; a < n; a++)
		for (int b = a + 1; b < n; b++)
			if (v[b] < v[a]) {
				int t = v[a];
				v[a] = v[b];
				v[b] = t;
			}
	buf[0] = '\0';
	for (int a = 0; a < n; a++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%d", a ? "," : "", v[a]);
	return buf;
}

static json_t *peer(json_t *peers, int64_t id)
{
	size_t i;
	json_t *p;

	json_array_foreach(peers, i,
			   p) if (json_integer_value(json_object_get(p, "node_id")) == id) return p;
	return NULL;
}

static void test_allow_all_and_deltas(void)
{
	cm_tailnet_set(m, 1, "corp", 180, "fd7a:115c:a1e0:1::/64", "tag:gw");
	cm_user_set(m, 1, 1, "alice@x");
	cm_user_set(m, 2, 1, "bob@x");
	struct cm_node *n1 = add(1, 1, 1, "a1", "", "", "", false, 0);
	add(2, 1, 2, "b1", "", "", "", false, 0);
	add(3, 1, 1, "gw", "tag:gw", "", "", false, 0);
	cm_recompute(m, NOW, wake, NULL);

	json_t *j = map(n1, 0);
	int64_t v1 = json_integer_value(json_object_get(j, "version"));
	CHECK(json_is_true(json_object_get(j, "full")));
	CHECK(!strcmp(ids(json_object_get(j, "peers")), "2,3"));
	CHECK(json_array_size(json_object_get(j, "packet_filter")) == 2); /* * -> * v4 and v6 */
	CHECK(
	    !strcmp(json_string_value(json_object_get(json_object_get(j, "self"), "name")), "a1"));
	json_decref(j);
	CHECK(!cm_has_map(n1, v1));    /* nothing new: the poll waits */
	CHECK(cm_has_map(n1, v1 - 1)); /* an old version gets a full map */

	/* a new node: a delta with just it, the waiting poll is woken */
	n1->waiter = (void *)1;
	n1->waiter_version = v1;
	woken = 0;
	add(4, 1, 2, "b2", "", "", "", false, 0);
	cm_recompute(m, NOW, wake, NULL);
	CHECK(woken >= 1 && n1->waiter == NULL);
	CHECK(cm_has_map(n1, v1));
	j = map(n1, v1);
	int64_t v2 = json_integer_value(json_object_get(j, "version"));
	CHECK(v2 > v1 && json_is_false(json_object_get(j, "full")));
	CHECK(!strcmp(ids(json_object_get(j, "peers_changed")), "4"));
	CHECK(json_array_size(json_object_get(j, "peers_removed")) == 0);
	CHECK(!json_object_get(j, "packet_filter") && !json_object_get(j, "self"));
	json_decref(j);

	/* an endpoint change of one peer: only it is sent */
	struct cm_node *n2 = cm_node_find(m, 2);
	struct cm_node_info in = n2->info;
	in.endpoints = "198.51.100.9:51820";
	cm_node_upsert(m, &in);
	cm_recompute(m, NOW, wake, NULL);
	j = map(n1, v2);
	CHECK(!strcmp(ids(json_object_get(j, "peers_changed")), "2"));
	CHECK(!strcmp(
	    json_string_value(json_array_get(
		json_object_get(peer(json_object_get(j, "peers_changed"), 2), "endpoints"), 0)),
	    "198.51.100.9:51820"));
	v2 = json_integer_value(json_object_get(j, "version"));
	json_decref(j);

	/* removal */
	cm_node_remove(m, 4);
	cm_recompute(m, NOW, wake, NULL);
	j = map(n1, v2);
	CHECK(!strcmp(ids(json_object_get(j, "peers_removed")), "4"));
	CHECK(json_array_size(json_object_get(j, "peers_changed")) == 0);
	json_decref(j);
}

static void test_policy_visibility(void)
{
	struct cm_tailnet *t = cm_tailnet_find(m, 1);
	struct cm_node *n1 = cm_node_find(m, 1), *n2 = cm_node_find(m, 2), *gw = cm_node_find(m, 3);
	char err[256];

	/* alice may reach the gateway on 22; nothing else */
	const char *pol = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"alice@x\"], \"dst\": "
			  "[\"tag:gw:22\"]}],"
			  " \"tests\": [{\"src\": \"alice@x\", \"accept\": [\"tag:gw:22\"], "
			  "\"deny\": [\"tag:gw:80\"]}]}";
	CHECK(cm_policy_compile(m, NULL, 1, pol, true, false, err, sizeof(err)) == 0);
	CHECK(
	    cm_policy_compile(
		m, NULL, 1,
		"{\"acls\": [], \"tests\": [{\"src\": \"alice@x\", \"accept\": [\"tag:gw:22\"]}]}",
		true, false, err, sizeof(err)) < 0 &&
	    strstr(err, "tests[0]"));
	CHECK(cm_policy_compile(m, NULL, 1,
				"{\"acls\": [{\"action\": \"accept\", \"src\": [\"carol@x\"], "
				"\"dst\": [\"*:*\"]}]}",
				false, false, err, sizeof(err)) < 0);
	int64_t v1 = n1->sent_version, vg;
	cm_tailnet_set_policy(t, pol, 1);
	cm_recompute(m, NOW, wake, NULL);

	json_t *j = map(n1, v1);
	CHECK(!strcmp(ids(json_object_get(j, "peers_removed")), "2")); /* bob: no rule either way */
	CHECK(json_array_size(json_object_get(j, "packet_filter")) ==
	      0); /* nothing may reach alice */
	json_decref(j);
	j = map(n2, 0);
	CHECK(json_array_size(json_object_get(j, "peers")) == 0);
	json_decref(j);
	/* the gateway sees alice (the reverse direction), and only alice's rule */
	j = map(gw, 0);
	vg = json_integer_value(json_object_get(j, "version"));
	CHECK(!strcmp(ids(json_object_get(j, "peers")), "1"));
	json_t *f = json_object_get(j, "packet_filter"), *r;
	size_t i;
	/* tcp+udp/22 and icmp from alice's v4 and v6: 6 rules in 4 entries */
	CHECK(json_array_size(f) == 4 && filter_rules(f) == 6);
	json_array_foreach(f, i, r)
	{
		json_t *pr = json_object_get(r, "proto");
		const char *dst = json_string_value(json_object_get(r, "dst"));
		if (json_is_array(pr)) {
			CHECK(json_array_size(pr) == 2 &&
			      json_integer_value(json_array_get(pr, 0)) == 6 &&
			      json_integer_value(json_array_get(pr, 1)) == 17);
			CHECK(json_integer_value(json_array_get(json_object_get(r, "ports"), 0)) ==
			      22);
		} else {
			CHECK(json_integer_value(pr) == (i < 2 ? 1 : 58));
		}
		CHECK(json_is_string(json_object_get(r, "src")));
		CHECK(!strcmp(dst, i < 2 ? "100.64.0.3/32" : "fd7a:115c:a1e0:1::3/128"));
	}
	json_decref(j);

	/* a second alice node joins: the gateway gets it and a new filter */
	add(5, 1, 1, "a2", "", "", "", false, 0);
	cm_recompute(m, NOW, wake, NULL);
	j = map(gw, vg);
	CHECK(!strcmp(ids(json_object_get(j, "peers_changed")), "5"));
	/* the same 4 entries, each with both alice nodes in a "src" list */
	f = json_object_get(j, "packet_filter");
	CHECK(json_array_size(f) == 4 && filter_rules(f) == 12);
	json_array_foreach(f, i, r) CHECK(json_array_size(json_object_get(r, "src")) == 2);
	json_decref(j);
}

static void test_routes(void)
{
	struct cm_node *r1, *r2, *c;
	json_t *j;

	cm_tailnet_set(m, 2, "lab", 0, "fd7a:115c:a1e0:2::/64", "tag:gw");
	cm_user_set(m, 3, 2, "carol@x");
	c = add(20, 2, 3, "client", "", "", "", false, 0);
	r1 = add(21, 2, 3, "r1", "", "10.88.0.0/24", "10.88.0.0/24", false, 0);
	r2 = add(22, 2, 3, "r2", "", "10.88.0.0/24,10.99.0.0/24", "10.88.0.0/24", false, 0);
	cm_recompute(m, NOW, wake, NULL);
	CHECK(r1->n_primary == 1 && r2->n_primary == 0); /* lowest id; 10.99 is not approved */
	j = map(c, 0);
	int64_t v = json_integer_value(json_object_get(j, "version"));
	json_t *p = peer(json_object_get(j, "peers"), 21);
	CHECK(json_array_size(json_object_get(p, "allowed_ips")) == 3);
	json_decref(j);

	/* r1 stops polling: offline after 60 s, r2 takes the prefix */
	r1->info.last_seen = NOW - 61;
	cm_recompute(m, NOW, wake, NULL);
	CHECK(r1->n_primary == 0 && r2->n_primary == 1);
	j = map(c, v);
	CHECK(!strcmp(ids(json_object_get(j, "peers_changed")), "21,22"));
	p = peer(json_object_get(j, "peers_changed"), 22);
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(p, "allowed_ips"), 2)),
		      "10.88.0.0/24"));
	CHECK(json_is_false(
	    json_object_get(peer(json_object_get(j, "peers_changed"), 21), "online")));
	v = json_integer_value(json_object_get(j, "version"));
	json_decref(j);
	/* r1 back: r2 keeps it (no flapping) */
	r1->info.last_seen = NOW;
	cm_recompute(m, NOW, wake, NULL);
	CHECK(r1->n_primary == 0 && r2->n_primary == 1);

	/* autoApprovers approve 10.99.0.0/24 for carol */
	cm_tailnet_set_policy(
	    cm_tailnet_find(m, 2),
	    "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}], // "
	    "comment\n"
	    " \"autoApprovers\": {\"routes\": {\"10.99.0.0/16\": [\"carol@x\"]}},}",
	    1);
	cm_recompute(m, NOW, wake, NULL);
	CHECK(r2->n_primary == 2);
	j = map(c, v);
	p = peer(json_object_get(j, "peers_changed"), 22);
	CHECK(p && json_array_size(json_object_get(p, "allowed_ips")) == 4);
	json_decref(j);
	/* the router's own filter includes rules for its routes (dst * overlaps) */
	j = map(r2, 0);
	CHECK(json_array_size(json_object_get(json_object_get(j, "self"), "primary_routes")) == 2);
	json_decref(j);
}

static void test_expiry_and_plain_wireguard(void)
{
	struct cm_node *gw = cm_node_find(m, 3), *n1 = cm_node_find(m, 1);
	json_t *j;

	cm_tailnet_set_policy(cm_tailnet_find(m, 1), NULL, 2); /* allow all again */
	add(6, 1, 1, "old", "", "", "", false, NOW - 1);       /* expired key */
	add(7, 1, 1, "phone", "", "", "", true, 0);	       /* plain WireGuard */
	cm_recompute(m, NOW, wake, NULL);
	j = map(n1, 0);
	CHECK(!strcmp(ids(json_object_get(j, "peers")),
		      "2,3,5")); /* not 6 (expired), not 7 (not a gateway) */
	json_decref(j);
	j = map(gw, 0);
	CHECK(!strcmp(ids(json_object_get(j, "peers")), "1,2,5,7"));
	CHECK(
	    json_is_true(json_object_get(peer(json_object_get(j, "peers"), 7), "plain_wireguard")));
	json_decref(j);
}

/* Lookup by id over several index growths (ids sparse and colliding in the
 * low bits), a removed node gone, the same id added again found anew:
 * differential against a scan of the slots. */
static void test_node_index(void)
{
	struct coord_model *saved = m;
	char name[32];

	m = cm_new(1000, 60);
	cm_tailnet_set(m, 9, "idx", 0, "fd7a:115c:a1e0:9::/64", "tag:gw");
	cm_user_set(m, 9, 9, "ix@x");
	for (int64_t i = 1; i <= 3000; i++) {
		snprintf(name, sizeof(name), "n%lld", (long long)i);
		CHECK(add(i * 16, 9, 9, name, "", "", "", false, 0) != NULL);
	}
	for (int64_t i = 1; i <= 3000; i += 7)
		cm_node_remove(m, i * 16);
	CHECK(add(7 * 16 + 1, 9, 9, "again", "", "", "", false, 0) != NULL);
	cm_node_remove(m, 8 * 16); /* (8 = 1 + 7: removed above, re-added below) */
	struct cm_node *again = add(8 * 16, 9, 9, "back", "", "", "", false, 0);
	int bad = 0;
	for (int64_t i = 0; i <= 3001 * 16; i += 4) {
		struct cm_node *want = NULL;
		for (uint32_t s = 0; s < m->n_slots; s++)
			if (m->slots[s] && m->slots[s]->info.id == i)
				want = m->slots[s];
		bad += cm_node_find(m, i) != want;
	}
	CHECK(bad == 0);
	CHECK(cm_node_find(m, 8 * 16) == again && again && !strcmp(again->info.name, "back"));
	CHECK(cm_node_find(m, 15 * 16) == NULL);
	cm_free(m);
	m = saved;
}

/* "family proto src dst lo hi" of one rule, for comparing filters. */
static char *rule_line(int family, int proto, const char *src, const char *dst, int lo, int hi)
{
	char *l = NULL;

	assert(asprintf(&l, "%d %d %s %s %d %d", family, proto, src, dst, lo, hi) > 0);
	return l;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Does rule r's destination cover one of n's addresses or overlap a primary route? */
static bool rule_reaches(const struct mg_acl_rule *r, const struct cm_node *n)
{
	struct mg_prefix d = {.family = r->family, .cidr = r->dst_len};

	memcpy(d.addr, r->dst, 16);
	if (mg_prefix_contains(&d, n->info.addr4.addr, n->info.addr4.family) ||
	    mg_prefix_contains(&d, n->info.addr6.addr, n->info.addr6.family))
		return true;
	for (unsigned i = 0; i < n->n_primary; i++) {
		const struct mg_prefix *p = &n->primary[i];
		if (p->family == d.family &&
		    (p->cidr <= d.cidr ? mg_prefix_contains(p, d.addr, d.family)
				       : mg_prefix_contains(&d, p->addr, p->family)))
			return true;
	}
	return false;
}

/*
 * Differential: random policies over random nodes; each node's packet_filter
 * (entries with "proto" and "src" lists), expanded, is exactly the compiled
 * rules whose destination reaches the node, taken one by one.
 */
static void test_filter_groups(void)
{
	static const char *srcs[] = {"*",     "u0@x",	    "u1@x",	  "tag:a",
				     "tag:b", "10.0.0.0/8", "100.64.0.5", "group:g"};
	static const char *dsts[] = {"*",    "tag:a",	    "tag:b",	 "tag:gw",
				     "u2@x", "10.9.0.0/24", "100.64.0.7"};
	static const char *ports[] = {"*", "22", "22,80", "80-90,443", "53"};
	static const char *protos[] = {NULL, "tcp", "udp", "icmp"};
	static const char *tagsets[] = {"", "tag:a", "tag:b", "tag:a,tag:b", "tag:gw"};
	struct coord_model *saved = m;
	unsigned seed = 12345;
	int compiled = 0, grouped = 0, mismatched = 0;
	char name[32];

	m = cm_new(1000, 60);
	cm_tailnet_set(m, 5, "grp", 0, "fd7a:115c:a1e0:5::/64", "tag:gw");
	for (int u = 0; u < 3; u++) {
		snprintf(name, sizeof(name), "u%d@x", u);
		cm_user_set(m, 50 + u, 5, name);
	}
	for (int64_t i = 1; i <= 24; i++) {
		snprintf(name, sizeof(name), "g%lld", (long long)i);
		CHECK(add(i, 5, 50 + i % 3, name, tagsets[i % 5], i == 9 ? "10.9.0.0/24" : "",
			  i == 9 ? "10.9.0.0/24" : "", false, 0) != NULL);
	}
	for (int round = 0; round < 40; round++) {
		char pol[2048];
		size_t len = 0;
		int n_acls = 1 + (int)(rand_r(&seed) % 4);

		len += (size_t)snprintf(
		    pol + len, sizeof(pol) - len,
		    "{\"groups\": {\"group:g\": [\"u0@x\", \"u2@x\"]}, \"acls\": [");
		for (int a = 0; a < n_acls; a++) {
			const char *proto = protos[rand_r(&seed) % 4];
			int ns = 1 + (int)(rand_r(&seed) % 3), nd = 1 + (int)(rand_r(&seed) % 3);

			len += (size_t)snprintf(pol + len, sizeof(pol) - len,
						"%s{\"action\": \"accept\", \"src\": [",
						a ? ", " : "");
			for (int i = 0; i < ns; i++)
				len += (size_t)snprintf(pol + len, sizeof(pol) - len, "%s\"%s\"",
							i ? ", " : "", srcs[rand_r(&seed) % 8]);
			len += (size_t)snprintf(pol + len, sizeof(pol) - len, "], \"dst\": [");
			for (int i = 0; i < nd; i++)
				len += (size_t)snprintf(pol + len, sizeof(pol) - len, "%s\"%s:%s\"",
							i ? ", " : "", dsts[rand_r(&seed) % 7],
							proto && !strcmp(proto, "icmp")
							    ? "*"
							    : ports[rand_r(&seed) % 5]);
			len += (size_t)snprintf(pol + len, sizeof(pol) - len, "]");
			if (proto)
				len += (size_t)snprintf(pol + len, sizeof(pol) - len,
							", \"proto\": \"%s\"", proto);
			len += (size_t)snprintf(pol + len, sizeof(pol) - len, "}");
		}
		snprintf(pol + len, sizeof(pol) - len, "]}");

		struct cm_tailnet *t = cm_tailnet_find(m, 5);
		cm_tailnet_set_policy(t, pol, round + 1);
		cm_recompute(m, NOW, NULL, NULL);
		if (t->policy_err[0])
			continue;
		compiled++;
		for (int64_t id = 1; id <= 24; id++) {
			struct cm_node *v = cm_node_find(m, id);
			json_t *j = map(v, 0), *f = json_object_get(j, "packet_filter"), *e;
			size_t n_got = 0, n_want = 0, i;
			char **got = calloc(filter_rules(f) + 1, sizeof(char *));
			char **want = calloc(t->n_rules + 1, sizeof(char *));

			assert(got && want);
			json_array_foreach(f, i, e)
			{
				json_t *pr = json_object_get(e, "proto"),
				       *sr = json_object_get(e, "src");
				json_t *pt = json_object_get(e, "ports");
				size_t np = json_is_array(pr) ? json_array_size(pr) : 1;
				size_t ns = json_is_array(sr) ? json_array_size(sr) : 1;

				for (size_t q = 0; q < np; q++)
					for (size_t k = 0; k < ns; k++)
						got[n_got++] = rule_line(
						    (int)json_integer_value(
							json_object_get(e, "family")),
						    (int)json_integer_value(
							json_is_array(pr) ? json_array_get(pr, q)
									  : pr),
						    json_string_value(json_is_array(sr)
									  ? json_array_get(sr, k)
									  : sr),
						    json_string_value(json_object_get(e, "dst")),
						    (int)json_integer_value(json_array_get(pt, 0)),
						    (int)json_integer_value(json_array_get(pt, 1)));
			}
			for (size_t k = 0; k < t->n_rules; k++) {
				const struct mg_acl_rule *r = &t->rules[k];
				struct mg_prefix sp = {.family = r->family, .cidr = r->src_len};
				struct mg_prefix dp = {.family = r->family, .cidr = r->dst_len};
				char sb[MG_PREFIX_STRLEN], db[MG_PREFIX_STRLEN];

				if (!rule_reaches(r, v))
					continue;
				memcpy(sp.addr, r->src, 16);
				memcpy(dp.addr, r->dst, 16);
				want[n_want++] = rule_line(r->family == AF_INET ? 4 : 6, r->proto,
							   mg_prefix_fmt(&sp, sb, sizeof(sb)),
							   mg_prefix_fmt(&dp, db, sizeof(db)),
							   r->dport_lo, r->dport_hi);
			}
			qsort(got, n_got, sizeof(*got), cmp_str);
			qsort(want, n_want, sizeof(*want), cmp_str);
			bool same = n_got == n_want;
			for (size_t k = 0; same && k < n_got; k++)
				same = !strcmp(got[k], want[k]);
			if (!same && mismatched++ < 3)
				fprintf(stderr,
					"filter of node %lld, policy %s: %zu rules, want %zu\n",
					(long long)id, pol, n_got, n_want);
			grouped += json_array_size(f) < n_got;
			for (size_t k = 0; k < n_got; k++)
				free(got[k]);
			for (size_t k = 0; k < n_want; k++)
				free(want[k]);
			free(got);
			free(want);
			json_decref(j);
		}
	}
	CHECK(mismatched == 0);
	CHECK(compiled >= 30); /* the generator makes valid policies */
	CHECK(grouped > 100);  /* and filters whose entries stand for several rules */
	cm_free(m);
	m = saved;
}

/*
 * The derp_map: the configured regions (conf.c's derp_json) verbatim in every
 * full map, never in a delta; {"regions":[]} when none are configured.
 */
static void test_derp_map(void)
{
	static const char text[] =
	    "testing = { insecure_http = true; };\n"
	    "derp_regions = ( { id = 1; server = \"198.51.100.10:3340\";\n"
	    "    public_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"; },\n"
	    "  { id = 2; server = \"[2001:db8::20]:443\"; tls = true;\n"
	    "    server_name = \"derp2.example.com\"; } );\n";
	static const char want[] =
	    "{\"regions\":[{\"id\":1,\"server\":\"198.51.100.10:3340\","
	    "\"public_key\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\",\"tls\":false},"
	    "{\"id\":2,\"server\":\"[2001:db8::20]:443\",\"tls\":true,"
	    "\"server_name\":\"derp2.example.com\"}]}";
	static struct coord_conf conf;
	struct coord_model *saved = m;
	char err[256], *s, *dm;
	size_t len;
	int64_t v;

	m = cm_new(1000, 60);
	cm_tailnet_set(m, 7, "derp", 0, "fd7a:115c:a1e0:7::/64", "tag:gw");
	cm_user_set(m, 70, 7, "d@x");
	struct cm_node *a = add(70, 7, 70, "da", "", "", "", false, 0);
	add(71, 7, 70, "db", "", "", "", false, 0);
	cm_recompute(m, NOW, wake, NULL);

	/* none configured (the model's default) */
	json_t *j = map(a, 0);
	CHECK(json_is_true(json_object_get(j, "full")));
	dm = json_dumps(json_object_get(j, "derp_map"), JSON_COMPACT);
	CHECK(dm && !strcmp(dm, "{\"regions\":[]}"));
	free(dm);
	json_decref(j);

	/* configured: the map text carries the config's JSON as it is */
	CHECK(coord_conf_parse(text, "t.conf", &conf, err, sizeof(err)) == 0);
	CHECK(!strcmp(conf.derp_json, want));
	m->derp_json = conf.derp_json;
	s = cm_map(m, a, 0, &len);
	CHECK(s && strstr(s, ",\"derp_map\":") && strstr(s, want));
	j = s ? json_loadb(s, len, 0, NULL) : NULL;
	CHECK(j != NULL);
	free(s);
	json_t *r = json_object_get(json_object_get(j, "derp_map"), "regions");
	CHECK(json_array_size(r) == 2);
	CHECK(json_integer_value(json_object_get(json_array_get(r, 0), "id")) == 1);
	CHECK(json_is_false(json_object_get(json_array_get(r, 0), "tls")));
	CHECK(!json_object_get(json_array_get(r, 0), "server_name"));
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(r, 1), "server")),
		      "[2001:db8::20]:443"));
	CHECK(!json_object_get(json_array_get(r, 1), "public_key"));
	CHECK(json_is_true(json_object_get(json_array_get(r, 1), "tls")));
	v = json_integer_value(json_object_get(j, "version"));
	json_decref(j);

	/* a delta (a peer changed) has none */
	add(72, 7, 70, "dc", "", "", "", false, 0);
	cm_recompute(m, NOW, wake, NULL);
	s = cm_map(m, a, v, &len);
	CHECK(s && strstr(s, "\"full\":false") && strstr(s, "\"dc\"") && !strstr(s, "derp"));
	j = s ? json_loadb(s, len, 0, NULL) : NULL;
	CHECK(j && !json_object_get(j, "derp_map"));
	v = json_integer_value(json_object_get(j, "version"));
	json_decref(j);
	free(s);
	/* the next full map (an unknown version) has it again */
	j = map(a, v - 12345);
	CHECK(json_is_true(json_object_get(j, "full")) &&
	      json_array_size(json_object_get(json_object_get(j, "derp_map"), "regions")) == 2);
	json_decref(j);

	cm_free(m);
	m = saved;
}

int main(void)
{
	m = cm_new(1000, 60);
	test_allow_all_and_deltas();
	test_policy_visibility();
	test_routes();
	test_expiry_and_plain_wireguard();
	test_node_index();
	test_filter_groups();
	test_derp_map();
	cm_free(m);
	printf("model: %d failure(s)\n", fails);
	return fails != 0;
}
