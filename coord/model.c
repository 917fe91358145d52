/* SPDX-License-Identifier: MIT */
/* The in-memory model and netmap computation; see model.h for the design. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "addr.h"
#include "model.h"
#include "policy.h"
#include "strbuf.h"

#define WORDS(n) (((n) + 63u) / 64u)

static inline bool bit_get(const uint64_t *b, uint32_t words, uint32_t i)
{
	return i / 64 < words && (b[i / 64] >> (i % 64)) & 1;
}

static inline void bit_set(uint64_t *b, uint32_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}
static inline void bit_clr(uint64_t *b, uint32_t i)
{
	b[i / 64] &= ~(1ull << (i % 64));
}

uint64_t cm_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; s && *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static bool streq(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* ---- model basics ---------------------------------------------------------- */

struct coord_model *cm_new(int64_t first_version, unsigned offline_seconds)
{
	struct coord_model *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->next_version = first_version > 0 ? first_version : 1;
	m->offline_seconds = offline_seconds ? offline_seconds : 60;
	return m;
}

static void node_free(struct cm_node *n)
{
	if (!n)
		return;
	free(n->s_name);
	free(n->s_node_key);
	free(n->s_machine_key);
	free(n->s_tags);
	free(n->s_eps);
	free(n->s_routes);
	free(n->s_approved);
	for (unsigned i = 0; i < n->n_tags; i++)
		free(n->tag[i]);
	free(n->peer_json);
	free(n->cur);
	free(n->sent);
	free(n->filter_json);
	free(n->self_json);
	free(n);
}

static void tailnet_free_compiled(struct cm_tailnet *t)
{
	for (size_t i = 0; t->acl_src && i < t->n_acls; i++) {
		free(t->acl_src[i]);
		free(t->acl_dst[i]);
	}
	free(t->acl_src);
	free(t->acl_dst);
	t->acl_src = t->acl_dst = NULL;
	free(t->rules);
	t->rules = NULL;
	t->n_rules = t->n_acls = 0;
}

static void tailnet_free_auto(struct cm_tailnet *t)
{
	for (size_t i = 0; i < t->n_auto; i++) {
		for (size_t k = 0; k < t->auto_routes[i].n_who; k++)
			free(t->auto_routes[i].who[k]);
		free(t->auto_routes[i].who);
	}
	free(t->auto_routes);
	t->auto_routes = NULL;
	t->n_auto = 0;
}

void cm_free(struct coord_model *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->n_slots; i++)
		node_free(m->slots[i]);
	free(m->slots);
	free(m->slot_id);
	free(m->by_id);
	for (size_t i = 0; i < m->n_tailnets; i++) {
		struct cm_tailnet *t = m->tailnets[i];
		tailnet_free_compiled(t);
		tailnet_free_auto(t);
		free(t->name);
		free(t->gw_tag);
		free(t->policy);
		free(t);
	}
	free(m->tailnets);
	for (size_t i = 0; i < m->n_users; i++)
		free(m->users[i].name);
	free(m->users);
	free(m);
}

struct cm_tailnet *cm_tailnet_find(struct coord_model *m, int64_t id)
{
	for (size_t i = 0; i < m->n_tailnets; i++)
		if (m->tailnets[i]->id == id)
			return m->tailnets[i];
	return NULL;
}

struct cm_tailnet *cm_tailnet_by_name(struct coord_model *m, const char *name)
{
	for (size_t i = 0; i < m->n_tailnets; i++)
		if (!strcmp(m->tailnets[i]->name, name))
			return m->tailnets[i];
	return NULL;
}

struct cm_tailnet *cm_tailnet_set(struct coord_model *m, int64_t id, const char *name,
				  int key_expiry_days, const char *ula, const char *gw_tag)
{
	struct cm_tailnet *t = cm_tailnet_find(m, id);
	struct mg_prefix p;

	if (!t) {
		struct cm_tailnet **v = realloc(m->tailnets, (m->n_tailnets + 1) * sizeof(*v));
		if (!v)
			return NULL;
		m->tailnets = v;
		t = calloc(1, sizeof(*t));
		if (!t)
			return NULL;
		t->id = id;
		t->dirty = true;
		t->need_compile = true;
		m->tailnets[m->n_tailnets++] = t;
	}
	if (!streq(t->name, name)) {
		free(t->name);
		t->name = dup_or_empty(name);
		t->dirty = true;
	}
	if (!streq(t->gw_tag, gw_tag)) {
		free(t->gw_tag);
		t->gw_tag = dup_or_empty(gw_tag);
		t->dirty = true;
	}
	if (t->key_expiry_days != key_expiry_days)
		t->key_expiry_days = key_expiry_days;
	if (ula && mg_prefix_parse(ula, &p) == 0 && memcmp(&p, &t->ula, sizeof(p))) {
		t->ula = p;
		t->dirty = true;
	}
	return t;
}

int cm_tailnet_set_policy(struct cm_tailnet *t, const char *policy, int64_t version)
{
	if (t->policy_version == version && streq(t->policy, policy) &&
	    (t->policy != NULL) == (policy != NULL))
		return 0;
	free(t->policy);
	t->policy = policy ? strdup(policy) : NULL;
	if (policy && !t->policy)
		return -ENOMEM;
	t->policy_version = version;
	t->dirty = true;
	t->need_compile = true;
	return 0;
}

int cm_user_set(struct coord_model *m, int64_t id, int64_t tailnet_id, const char *name)
{
	for (size_t i = 0; i < m->n_users; i++)
		if (m->users[i].id == id) {
			if (strcmp(m->users[i].name, name)) {
				char *s = strdup(name);
				if (!s)
					return -ENOMEM;
				free(m->users[i].name);
				m->users[i].name = s;
			}
			return 0;
		}
	struct cm_user *v = realloc(m->users, (m->n_users + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	m->users = v;
	v[m->n_users] = (struct cm_user){.id = id, .tailnet_id = tailnet_id, .name = strdup(name)};
	if (!v[m->n_users].name)
		return -ENOMEM;
	m->n_users++;
	return 0;
}

const char *cm_user_name(const struct coord_model *m, int64_t id)
{
	for (size_t i = 0; i < m->n_users; i++)
		if (m->users[i].id == id)
			return m->users[i].name;
	return "";
}

/* ---- node id index: every request and every last_seen refresh looks a
 * node up by id, so a scan of all slots made them O(nodes) each ---- */

static uint32_t id_hash(int64_t id, uint32_t cap)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(h >> 32) & (cap - 1);
}

/* The index entry of id, or of the empty position where it would go. */
static uint32_t *id_pos(const struct coord_model *m, int64_t id)
{
	for (uint32_t i = id_hash(id, m->cap_by_id);; i = (i + 1) & (m->cap_by_id - 1))
		if (!m->by_id[i] || m->slot_id[m->by_id[i] - 1] == id)
			return &m->by_id[i];
}

/* Room for one more id (slots are never reused, so entries only come). */
static int id_index_reserve(struct coord_model *m)
{
	if (m->cap_by_id && 2 * ((uint64_t)m->n_slots + 1) <= m->cap_by_id)
		return 0;
	uint32_t cap = m->cap_by_id ? 2 * m->cap_by_id : 512;
	uint32_t *old = m->by_id, old_cap = m->cap_by_id;
	if (!(m->by_id = calloc(cap, sizeof(*m->by_id)))) {
		m->by_id = old;
		return -ENOMEM;
	}
	m->cap_by_id = cap;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i])
			*id_pos(m, m->slot_id[old[i] - 1]) = old[i];
	free(old);
	return 0;
}

struct cm_node *cm_node_find(struct coord_model *m, int64_t id)
{
	if (!m->cap_by_id)
		return NULL;
	uint32_t e = *id_pos(m, id);
	return e ? m->slots[e - 1] : NULL; /* NULL: its slot was retired */
}

bool cm_node_has_tag(const struct cm_node *n, const char *tag)
{
	for (unsigned i = 0; i < n->n_tags; i++)
		if (!strcmp(n->tag[i], tag))
			return true;
	return false;
}

unsigned cm_parse_prefixes(const char *list, struct mg_prefix *out, unsigned max)
{
	unsigned n = 0;
	char item[MG_PREFIX_STRLEN + 8];

	while (list && *list && n < max) {
		size_t len = strcspn(list, ",");
		if (len > 0 && len < sizeof(item)) {
			memcpy(item, list, len);
			item[len] = '\0';
			if (mg_prefix_parse(item, &out[n]) == 0)
				n++;
		}
		list += len;
		if (*list == ',')
			list++;
	}
	return n;
}

static int split_tags(struct cm_node *n, const char *tags)
{
	for (unsigned i = 0; i < n->n_tags; i++)
		free(n->tag[i]);
	n->n_tags = 0;
	while (tags && *tags && n->n_tags < CM_MAX_TAGS) {
		size_t len = strcspn(tags, ",");
		if (len) {
			n->tag[n->n_tags] = strndup(tags, len);
			if (!n->tag[n->n_tags])
				return -ENOMEM;
			n->n_tags++;
		}
		tags += len;
		if (*tags == ',')
			tags++;
	}
	return 0;
}

static int grow_slots(struct coord_model *m)
{
	if (m->n_slots < m->cap_slots)
		return 0;
	uint32_t cap = m->cap_slots ? 2 * m->cap_slots : 256;
	struct cm_node **s = realloc(m->slots, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	m->slots = s;
	int64_t *id = realloc(m->slot_id, cap * sizeof(*id));
	if (!id)
		return -ENOMEM;
	m->slot_id = id;
	m->cap_slots = cap;
	return 0;
}

static bool info_same(const struct cm_node *n, const struct cm_node_info *i)
{
	const struct cm_node_info *o = &n->info;

	return o->tailnet_id == i->tailnet_id && o->user_id == i->user_id &&
	       streq(o->name, i->name) && streq(o->node_key, i->node_key) &&
	       streq(o->machine_key, i->machine_key) &&
	       !memcmp(&o->addr4, &i->addr4, sizeof(i->addr4)) &&
	       !memcmp(&o->addr6, &i->addr6, sizeof(i->addr6)) && streq(o->tags, i->tags) &&
	       streq(o->endpoints, i->endpoints) && streq(o->routes, i->routes) &&
	       streq(o->approved, i->approved) && o->ephemeral == i->ephemeral &&
	       o->plain_wg == i->plain_wg && o->key_expiry == i->key_expiry;
}

struct cm_node *cm_node_upsert(struct coord_model *m, const struct cm_node_info *info)
{
	struct cm_node *n = cm_node_find(m, info->id);
	struct cm_tailnet *t = cm_tailnet_find(m, info->tailnet_id);

	if (!t)
		return NULL;
	if (n && info_same(n, info)) {
		n->info.last_seen =
		    info->last_seen > n->info.last_seen ? info->last_seen : n->info.last_seen;
		return n;
	}
	if (!n) {
		if (grow_slots(m) < 0 || id_index_reserve(m) < 0 || !(n = calloc(1, sizeof(*n))))
			return NULL;
		n->slot = m->n_slots;
		m->slots[m->n_slots] = n;
		m->slot_id[m->n_slots++] = info->id;
		*id_pos(m, info->id) = m->n_slots; /* (a retired slot of the id is replaced) */
	}
	if (n->tn && n->tn != t) {
		n->tn->dirty = true;
		n->tn->need_compile = true;
	}
	if (!n->tn || n->tn != t || n->info.user_id != info->user_id ||
	    !streq(n->info.name, info->name) || !streq(n->info.tags, info->tags) ||
	    memcmp(&n->info.addr4, &info->addr4, sizeof(info->addr4)) ||
	    memcmp(&n->info.addr6, &info->addr6, sizeof(info->addr6)))
		t->need_compile = true;
	n->render_dirty = true;
	int64_t last_seen =
	    info->last_seen > n->info.last_seen ? info->last_seen : n->info.last_seen;
	/* copy first: info may point into n's own strings */
	char *name = dup_or_empty(info->name), *key = dup_or_empty(info->node_key),
	     *mkey = info->machine_key ? strdup(info->machine_key) : NULL,
	     *tags = dup_or_empty(info->tags), *eps = dup_or_empty(info->endpoints),
	     *routes = dup_or_empty(info->routes), *appr = dup_or_empty(info->approved);
	free(n->s_name);
	free(n->s_node_key);
	free(n->s_machine_key);
	free(n->s_tags);
	free(n->s_eps);
	free(n->s_routes);
	free(n->s_approved);
	n->info = *info;
	n->info.last_seen = last_seen;
	n->info.name = n->s_name = name;
	n->info.node_key = n->s_node_key = key;
	n->info.machine_key = n->s_machine_key = mkey;
	n->info.tags = n->s_tags = tags;
	n->info.endpoints = n->s_eps = eps;
	n->info.routes = n->s_routes = routes;
	n->info.approved = n->s_approved = appr;
	if (!n->s_name || !n->s_node_key || !n->s_tags || !n->s_eps || !n->s_routes ||
	    !n->s_approved || split_tags(n, n->s_tags) < 0)
		return NULL;
	n->n_adv = cm_parse_prefixes(n->s_routes, n->adv, CM_MAX_ROUTES);
	n->n_approved = cm_parse_prefixes(n->s_approved, n->approved, CM_MAX_ROUTES);
	n->tn = t;
	t->dirty = true;
	return n;
}

void *cm_node_remove(struct coord_model *m, int64_t id)
{
	struct cm_node *n = cm_node_find(m, id);
	void *w;

	if (!n)
		return NULL;
	w = n->waiter;
	if (n->tn) {
		n->tn->dirty = true;
		n->tn->need_compile = true;
	}
	m->slots[n->slot] = NULL; /* the slot is retired, never reused: sent bitsets stay valid */
	node_free(n);
	return w;
}

void cm_tick(struct coord_model *m, int64_t now)
{
	for (uint32_t i = 0; i < m->n_slots; i++) {
		struct cm_node *n = m->slots[i];
		bool on;

		if (!n)
			continue;
		on = n->held ||
		     (n->info.last_seen && now - n->info.last_seen < (int64_t)m->offline_seconds);
		if (n->info.plain_wg)
			on = false;
		if (on != n->online) {
			n->online = on;
			n->render_dirty = true;
			n->tn->dirty = true;
		}
	}
}

/* ---- prefixes ---------------------------------------------------------------- */

static bool prefix_overlap(const struct mg_prefix *a, const struct mg_prefix *b)
{
	if (a->family != b->family || !a->family)
		return false;
	return a->cidr <= b->cidr ? mg_prefix_contains(a, b->addr, b->family)
				  : mg_prefix_contains(b, a->addr, a->family);
}

static bool prefix_covers(const struct mg_prefix *outer, const struct mg_prefix *inner)
{
	return outer->family == inner->family && outer->cidr <= inner->cidr &&
	       mg_prefix_contains(outer, inner->addr, inner->family);
}

/* Does p cover one of n's addresses, or overlap one of its primary routes? */
static bool node_in_prefix(const struct cm_node *n, const struct mg_prefix *p)
{
	if (prefix_covers(p, &n->info.addr4) || prefix_covers(p, &n->info.addr6))
		return true;
	for (unsigned i = 0; i < n->n_primary; i++)
		if (prefix_overlap(p, &n->primary[i]))
			return true;
	return false;
}

/* ---- policy: HuJSON, autoApprovers, the resolver, tests ------------------------ */

struct resolver_ctx {
	struct coord_model *m;
	int64_t tailnet_id;
};

static int add_node_addrs(const struct cm_node *n, struct mg_prefix_list *out)
{
	int ret = 0;

	if (n->info.addr4.family)
		ret = mg_prefix_list_add(out, &n->info.addr4);
	if (!ret && n->info.addr6.family)
		ret = mg_prefix_list_add(out, &n->info.addr6);
	return ret;
}

static int resolve(void *arg, const char *name, struct mg_prefix_list *out)
{
	struct resolver_ctx *r = arg;
	struct coord_model *m = r->m;
	int kind; /* 0 member, 1 tagged, 2 tag, 3 user, 4 node name */
	int64_t user_id = -1;
	int ret;

	if (!strcmp(name, "autogroup:member"))
		kind = 0;
	else if (!strcmp(name, "autogroup:tagged"))
		kind = 1;
	else if (!strncmp(name, "autogroup:", 10))
		return -ENOENT;
	else if (!strncmp(name, "tag:", 4))
		kind = 2;
	else {
		kind = 4;
		for (size_t i = 0; i < m->n_users; i++)
			if (m->users[i].tailnet_id == r->tailnet_id &&
			    !strcmp(m->users[i].name, name)) {
				user_id = m->users[i].id;
				kind = 3;
			}
	}
	bool found = kind != 4;
	for (uint32_t i = 0; i < m->n_slots; i++) {
		const struct cm_node *n = m->slots[i];
		bool match;

		if (!n || n->info.tailnet_id != r->tailnet_id)
			continue;
		switch (kind) {
		case 0:
			match = n->n_tags == 0;
			break;
		case 1:
			match = n->n_tags > 0;
			break;
		case 2:
			match = cm_node_has_tag(n, name);
			break;
		case 3:
			match = n->n_tags == 0 && n->info.user_id == user_id;
			break;
		default:
			match = !strcmp(n->info.name, name);
			break;
		}
		if (match) {
			found = true;
			if ((ret = add_node_addrs(n, out)) < 0)
				return ret;
		}
	}
	return found ? 0 : -ENOENT;
}

/* Expand "group:x" through the policy's groups into who (users and tags). */
static int add_who(struct cm_auto_route *a, json_t *groups, const char *w, int depth)
{
	if (!strncmp(w, "group:", 6) && depth == 0) {
		json_t *members = json_object_get(groups, w), *v;
		size_t i;

		json_array_foreach(members, i, v) if (json_is_string(v) &&
						      add_who(a, groups, json_string_value(v), 1) <
							  0) return -ENOMEM;
		return 0;
	}
	char **who = realloc(a->who, (a->n_who + 1) * sizeof(*who));
	if (!who)
		return -ENOMEM;
	a->who = who;
	if (!(who[a->n_who] = strdup(w)))
		return -ENOMEM;
	a->n_who++;
	return 0;
}

/* Take "autoApprovers" (and "tagOwners", which the compiler does not know) out of root. */
static int take_auto_approvers(json_t *root, struct cm_auto_route **out, size_t *n_out, char *err,
			       size_t errlen)
{
	json_t *aa = json_object_get(root, "autoApprovers"), *routes, *who, *w;
	const char *key;
	size_t i;

	*out = NULL;
	*n_out = 0;
	if (aa) {
		if (!json_is_object(aa)) {
			snprintf(err, errlen,
				 "policy: autoApprovers: want an object {\"routes\": {...}}");
			return -EINVAL;
		}
		json_object_foreach(aa, key, routes)
		{
			if (strcmp(key, "routes") && strcmp(key, "exitNode")) {
				snprintf(err, errlen, "policy: autoApprovers \"%s\": unknown key",
					 key);
				return -EINVAL;
			}
		}
		routes = json_object_get(aa, "routes");
		if (routes && !json_is_object(routes)) {
			snprintf(
			    err, errlen,
			    "policy: autoApprovers.routes: want an object {\"prefix\": [who]}");
			return -EINVAL;
		}
		json_object_foreach(routes, key, who)
		{
			struct cm_auto_route *v = realloc(*out, (*n_out + 1) * sizeof(*v));
			if (!v)
				return -ENOMEM;
			*out = v;
			struct cm_auto_route *a = &v[*n_out];
			memset(a, 0, sizeof(*a));
			(*n_out)++;
			if (mg_prefix_parse(key, &a->prefix) < 0) {
				snprintf(err, errlen,
					 "policy: autoApprovers.routes \"%s\": not a prefix", key);
				return -EINVAL;
			}
			if (!json_is_array(who)) {
				snprintf(err, errlen,
					 "policy: autoApprovers.routes \"%s\": want a list", key);
				return -EINVAL;
			}
			json_array_foreach(who, i, w)
			{
				if (!json_is_string(w)) {
					snprintf(err, errlen,
						 "policy: autoApprovers.routes \"%s\"[%zu]: want a "
						 "string",
						 key, i);
					return -EINVAL;
				}
				if (add_who(a, json_object_get(root, "groups"),
					    json_string_value(w), 0) < 0)
					return -ENOMEM;
			}
		}
		json_object_del(root, "autoApprovers");
	}
	json_object_del(root, "tagOwners");
	return 0;
}

/* A rule's source and destination as prefixes. */
static void rule_prefixes(const struct mg_acl_rule *r, struct mg_prefix *s, struct mg_prefix *d)
{
	*s = (struct mg_prefix){.family = r->family, .cidr = r->src_len};
	*d = (struct mg_prefix){.family = r->family, .cidr = r->dst_len};
	memcpy(s->addr, r->src, 16);
	memcpy(d->addr, r->dst, 16);
}

static bool rule_accepts(const struct mg_acl_rule *r, const struct mg_acl_test *t)
{
	struct mg_prefix s, d;

	rule_prefixes(r, &s, &d);
	return r->family == t->family && (r->proto == 0 || r->proto == t->proto) &&
	       t->dport >= r->dport_lo && t->dport <= r->dport_hi &&
	       mg_prefix_contains(&s, t->src, t->family) &&
	       mg_prefix_contains(&d, t->dst, t->family);
}

static int run_tests(const struct mg_policy *p, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->n_tests; i++) {
		const struct mg_acl_test *t = &p->tests[i];
		bool ok = false;
		char src[MG_ADDR_STRLEN], dst[MG_ADDR_STRLEN];

		for (size_t k = 0; k < p->n_rules && !ok; k++)
			ok = rule_accepts(&p->rules[k], t);
		if (ok != (bool)t->expect_accept) {
			inet_ntop(t->family, t->src, src, sizeof(src));
			inet_ntop(t->family, t->dst, dst, sizeof(dst));
			snprintf(
			    err, errlen,
			    "policy: tests[%u]: %s -> %s port %u proto %u is %s, the test says %s",
			    t->test_index, src, dst, t->dport, t->proto, ok ? "accepted" : "denied",
			    t->expect_accept ? "accept" : "deny");
			return -EINVAL;
		}
	}
	return 0;
}

int cm_policy_compile(struct coord_model *m, struct cm_tailnet *t, int64_t tailnet_id,
		      const char *text, bool run_test, bool install, char *err, size_t errlen)
{
	size_t len = strlen(text);
	char *buf = malloc(len + 1), *json = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	struct cm_auto_route *autos = NULL;
	size_t n_auto = 0;
	struct mg_policy pol = {0};
	struct resolver_ctx rc = {m, tailnet_id};
	struct mg_policy_resolver res = {resolve, &rc};
	/* A tag of thousands of nodes times a few gateways is hundreds of
	 * thousands of flat rules: allow that (44 bytes each). */
	struct mg_policy_opts opts = {
	    .name = "policy", .resolver = &res, .max_rules = CM_MAX_RULES};
	int ret;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, text, len + 1);
	if (mg_hujson_strip(buf, len, NULL)) {
		snprintf(err, errlen, "policy: unterminated /* comment");
		ret = -EINVAL;
		goto out;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		snprintf(err, errlen, "policy:%d:%d: %s", jerr.line, jerr.column,
			 root ? "want an object" : jerr.text);
		ret = -EINVAL;
		goto out;
	}
	if ((ret = take_auto_approvers(root, &autos, &n_auto, err, errlen)) < 0)
		goto out;
	json = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (!json) {
		ret = -ENOMEM;
		goto out;
	}
	ret = mg_policy_parse(json, strlen(json), &opts, &pol, err, errlen);
	if (ret < 0)
		goto out;
	if (run_test && (ret = run_tests(&pol, err, errlen)) < 0)
		goto out;
	if (install && t) {
		tailnet_free_compiled(t);
		tailnet_free_auto(t);
		t->rules = pol.rules;
		t->n_rules = pol.n_rules;
		t->n_acls = pol.n_acls;
		pol.rules = NULL;
		pol.n_rules = 0;
		t->auto_routes = autos;
		t->n_auto = n_auto;
		autos = NULL;
		n_auto = 0;
	}
out:
	if (autos) {
		struct cm_tailnet tmp = {.auto_routes = autos, .n_auto = n_auto};
		tailnet_free_auto(&tmp);
	}
	mg_policy_free(&pol);
	free(json);
	json_decref(root);
	free(buf);
	return ret;
}

bool cm_route_approved(const struct coord_model *m, const struct cm_node *n,
		       const struct mg_prefix *p)
{
	const char *user;

	for (unsigned i = 0; i < n->n_approved; i++)
		if (!memcmp(&n->approved[i], p, sizeof(*p)))
			return true;
	if (!n->tn)
		return false;
	user = n->n_tags ? NULL : cm_user_name(m, n->info.user_id);
	for (size_t i = 0; i < n->tn->n_auto; i++) {
		const struct cm_auto_route *a = &n->tn->auto_routes[i];
		if (!prefix_covers(&a->prefix, p))
			continue;
		for (size_t k = 0; k < a->n_who; k++)
			if (cm_node_has_tag(n, a->who[k]) || (user && !strcmp(user, a->who[k])))
				return true;
	}
	return false;
}

/* ---- recompute ------------------------------------------------------------------ */

/* Allow-all for a tailnet without a policy: * -> *:*, any protocol. */
static int install_allow_all(struct cm_tailnet *t)
{
	tailnet_free_compiled(t);
	t->rules = calloc(2, sizeof(*t->rules));
	if (!t->rules)
		return -ENOMEM;
	t->rules[0] = (struct mg_acl_rule){.family = AF_INET, .dport_hi = 65535};
	t->rules[1] = (struct mg_acl_rule){.family = AF_INET6, .dport_hi = 65535};
	t->n_rules = 2;
	t->n_acls = 1;
	return 0;
}

/* One primary per approved prefix among the tailnet's online nodes; the
 * current primary keeps it while it stays online, otherwise the lowest id. */
static void elect_primaries(struct coord_model *m, struct cm_tailnet *t, int64_t now)
{
	/* Simple and exact: gather (prefix, candidates) by scanning, pick. */
	struct cand {
		struct mg_prefix p;
		struct cm_node *keep, *best;
	} *c = NULL;
	size_t nc = 0, capc = 0;

	for (uint32_t i = 0; i < m->n_slots; i++) {
		struct cm_node *n = m->slots[i];
		if (!n || n->tn != t)
			continue;
		for (unsigned r = 0; r < n->n_adv; r++) {
			const struct mg_prefix *p = &n->adv[r];
			bool ok = n->online && cm_route_approved(m, n, p) &&
				  !(n->info.key_expiry && n->info.key_expiry < now);
			bool was = false;
			size_t k;

			if (!ok)
				continue;
			for (unsigned q = 0; q < n->n_primary; q++)
				was |= !memcmp(&n->primary[q], p, sizeof(*p));
			for (k = 0; k < nc && memcmp(&c[k].p, p, sizeof(*p)); k++)
				;
			if (k == nc) {
				if (nc == capc) {
					capc = capc ? 2 * capc : 16;
					struct cand *v = realloc(c, capc * sizeof(*v));
					if (!v) {
						free(c);
						return;
					}
					c = v;
				}
				c[nc++] = (struct cand){.p = *p};
			}
			if (was)
				c[k].keep = n;
			if (!c[k].best || n->info.id < c[k].best->info.id)
				c[k].best = n;
		}
	}
	/* new sets into scratch, then compare */
	struct cm_node **owner = calloc(nc ? nc : 1, sizeof(*owner));
	if (!owner) {
		free(c);
		return;
	}
	for (size_t k = 0; k < nc; k++)
		owner[k] = c[k].keep ? c[k].keep : c[k].best;
	for (uint32_t i = 0; i < m->n_slots; i++) {
		struct cm_node *n = m->slots[i];
		struct mg_prefix np[CM_MAX_ROUTES];
		unsigned nn = 0;
		if (!n || n->tn != t)
			continue;
		for (size_t k = 0; k < nc; k++)
			if (owner[k] == n && nn < CM_MAX_ROUTES)
				np[nn++] = c[k].p;
		if (nn != n->n_primary || memcmp(np, n->primary, nn * sizeof(np[0]))) {
			memcpy(n->primary, np, nn * sizeof(np[0]));
			n->n_primary = nn;
			n->render_dirty = true;
			t->routes_moved = true;
		}
	}
	free(owner);
	free(c);
}

static void json_add_prefix(json_t *arr, const struct mg_prefix *p)
{
	char buf[MG_PREFIX_STRLEN];

	if (p->family)
		json_array_append_new(arr, json_string(mg_prefix_fmt(p, buf, sizeof(buf))));
}

static json_t *addresses_json(const struct cm_node *n)
{
	json_t *a = json_array();

	json_add_prefix(a, &n->info.addr4);
	json_add_prefix(a, &n->info.addr6);
	return a;
}

static json_t *list_json(const char *list)
{
	json_t *a = json_array();

	while (list && *list) {
		size_t len = strcspn(list, ",");
		if (len)
			json_array_append_new(a, json_stringn(list, len));
		list += len;
		if (*list == ',')
			list++;
	}
	return a;
}

static char *render_peer(const struct cm_node *n)
{
	json_t *o = json_object(), *allowed = addresses_json(n);
	char *s;

	for (unsigned i = 0; i < n->n_primary; i++)
		json_add_prefix(allowed, &n->primary[i]);
	json_object_set_new(o, "node_id", json_integer(n->info.id));
	json_object_set_new(o, "name", json_string(n->info.name));
	json_object_set_new(o, "node_key", json_string(n->info.node_key));
	json_object_set_new(o, "addresses", addresses_json(n));
	json_object_set_new(o, "allowed_ips", allowed);
	json_object_set_new(o, "endpoints", list_json(n->info.endpoints));
	json_object_set_new(o, "online", json_boolean(n->online));
	json_object_set_new(o, "key_expiry", json_integer(n->info.key_expiry));
	json_object_set_new(o, "plain_wireguard", json_boolean(n->info.plain_wg));
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

static char *render_self(const struct cm_node *n)
{
	json_t *o = json_object(), *pr = json_array();
	char *s;

	for (unsigned i = 0; i < n->n_primary; i++)
		json_add_prefix(pr, &n->primary[i]);
	json_object_set_new(o, "node_id", json_integer(n->info.id));
	json_object_set_new(o, "name", json_string(n->info.name));
	json_object_set_new(o, "node_key", json_string(n->info.node_key));
	json_object_set_new(o, "addresses", addresses_json(n));
	json_object_set_new(o, "key_expiry", json_integer(n->info.key_expiry));
	json_object_set_new(o, "tags", list_json(n->info.tags));
	json_object_set_new(o, "primary_routes", pr);
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

static char *utoa(char *p, unsigned v)
{
	char tmp[12];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* A rule's source and destination, formatted once (see struct pcache). */
struct rule_strs {
	const char *src, *dst; /* owned by the pcache */
};

static void render_ports(struct strbuf *sb, const struct mg_acl_rule *r)
{
	char buf[32], *p = buf;

	memcpy(p, "\",\"ports\":[", 11);
	p += 11;
	p = utoa(p, r->dport_lo);
	*p++ = ',';
	p = utoa(p, r->dport_hi);
	*p++ = ']';
	*p++ = '}';
	strbuf_addn(sb, buf, (size_t)(p - buf));
}

/*
 * One packet_filter entry for rules rs[0..n_proto * n_src) (see
 * render_filter): "proto" and "src" are lists when there is more than one
 * (no printf: a gateway's filter can be tens of thousands of rules).
 */
static void render_group(struct strbuf *sb, const struct mg_acl_rule *rules,
			 const struct rule_strs *strs, const uint32_t *rs, uint32_t n_src,
			 uint32_t n_proto, bool first)
{
	const struct mg_acl_rule *r = &rules[rs[0]];
	char buf[64], *p = buf;

	if (!first)
		*p++ = ',';
	memcpy(p, "{\"family\":", 10);
	p += 10;
	*p++ = r->family == AF_INET ? '4' : '6';
	memcpy(p, ",\"proto\":", 9);
	p += 9;
	if (n_proto > 1)
		*p++ = '[';
	for (uint32_t q = 0; q < n_proto; q++) {
		if (q)
			*p++ = ',';
		p = utoa(p, rules[rs[q * n_src]].proto);
		if (p - buf > 40) {
			strbuf_addn(sb, buf, (size_t)(p - buf));
			p = buf;
		}
	}
	if (n_proto > 1)
		*p++ = ']';
	strbuf_addn(sb, buf, (size_t)(p - buf));
	strbuf_addn(sb, n_src > 1 ? ",\"src\":[\"" : ",\"src\":\"", n_src > 1 ? 9 : 8);
	for (uint32_t i = 0; i < n_src; i++) {
		if (i)
			strbuf_addn(sb, "\",\"", 3);
		strbuf_add(sb, strs[rs[i]].src);
	}
	strbuf_addn(sb, n_src > 1 ? "\"],\"dst\":\"" : "\",\"dst\":\"", n_src > 1 ? 10 : 9);
	strbuf_add(sb, strs[rs[0]].dst);
	render_ports(sb, r);
}

/* Rules a and b alike but for the source (and, if !proto, the protocol). */
static bool rules_alike(const struct mg_acl_rule *a, const struct mg_acl_rule *b,
			const struct rule_strs *sa, const struct rule_strs *sb, bool proto)
{
	return a->acl_index == b->acl_index && a->family == b->family &&
	       (!proto || a->proto == b->proto) && a->dport_lo == b->dport_lo &&
	       a->dport_hi == b->dport_hi && sa->dst == sb->dst;
}

/*
 * A viewer's rules rs[0..n) (indices into rules, in rule order) as its
 * packet_filter. The compiler emits a destination's rules as runs that
 * differ only in the source, run after run of the same sources for each
 * protocol; a run becomes one entry with a "src" list, and runs of the same
 * sources that differ only in the protocol one entry with a "proto" list. The
 * node expands them back to the same rules. Prefix strings come from one
 * pcache, so equal pointers are equal prefixes.
 */
static void render_filter(struct strbuf *sb, const struct mg_acl_rule *rules,
			  const struct rule_strs *strs, const uint32_t *rs, uint32_t n)
{
	uint32_t i = 0;

	strbuf_add(sb, "[");
	while (i < n) {
		const struct mg_acl_rule *a = &rules[rs[i]];
		uint32_t run = 1, n_proto = 1;

		while (i + run < n &&
		       rules_alike(a, &rules[rs[i + run]], &strs[rs[i]], &strs[rs[i + run]], true))
			run++;
		for (;;) {
			uint32_t p = i + n_proto * run, k;
			const struct mg_acl_rule *b = p < n ? &rules[rs[p]] : NULL;

			if (!b || p + run > n || b->proto == a->proto ||
			    !rules_alike(a, b, &strs[rs[i]], &strs[rs[p]], false))
				break;
			for (k = 0; k < run; k++)
				if (strs[rs[p + k]].src != strs[rs[i + k]].src ||
				    !rules_alike(b, &rules[rs[p + k]], &strs[rs[p]],
						 &strs[rs[p + k]], true))
					break;
			if (k < run ||
			    (p + run < n && rules_alike(b, &rules[rs[p + run]], &strs[rs[p]],
							&strs[rs[p + run]], true)))
				break;
			n_proto++;
		}
		render_group(sb, rules, strs, rs + i, run, n_proto, i == 0);
		i += n_proto * run;
	}
	strbuf_add(sb, "]");
}

/*
 * Node sets of prefixes, memoised over one recompute (rules repeat
 * prefixes). Host prefixes (/32, /128: what users and tags resolve to) are
 * looked up in an address index instead of scanning every node; only the
 * nodes with primary routes are checked besides. An entry holds the set as
 * a bitset and as a list of slots, and the prefix formatted once.
 */
struct pc_entry {
	struct mg_prefix key;
	uint64_t *set;
	uint32_t *slots, n_slots;
	uint32_t src_acl, dst_acl; /* acls entry + 1 whose set it was last or'ed into */
	char *str;
};

struct pcache {
	struct pc_entry *ents;
	size_t n, cap_ents;
	uint32_t *table; /* open addressing: entry index + 1 */
	size_t cap;
	/* address index: open addressing over (family, addr) -> slot + 1 */
	struct mg_prefix *akeys;
	uint32_t *aslot;
	size_t acap;
	uint32_t *routers; /* slots of nodes with primary routes */
	size_t n_routers;
};

static size_t pc_hash(const struct mg_prefix *p)
{
	uint64_t a, b;
	uint32_t c;

	_Static_assert(sizeof(*p) == 20, "mg_prefix layout");
	memcpy(&a, p, 8);
	memcpy(&b, (const uint8_t *)p + 8, 8);
	memcpy(&c, (const uint8_t *)p + 16, 4);
	/* addresses differ in their last bytes: mix every bit into the low ones
	 * (murmur3's finaliser) */
	a ^= (b * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)c << 32 | c);
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	a *= 0xc4ceb9fe1a85ec53ull;
	return (size_t)(a ^ (a >> 33));
}

static int pc_init(struct pcache *pc, struct coord_model *m, const struct cm_tailnet *t)
{
	size_t n = 0;

	memset(pc, 0, sizeof(*pc));
	for (uint32_t s = 0; s < m->n_slots; s++)
		n += m->slots[s] && m->slots[s]->tn == t;
	pc->acap = 16;
	while (pc->acap < 4 * n + 16)
		pc->acap *= 2;
	pc->akeys = calloc(pc->acap, sizeof(*pc->akeys));
	pc->aslot = calloc(pc->acap, sizeof(*pc->aslot));
	pc->routers = calloc(n + 1, sizeof(*pc->routers));
	if (!pc->akeys || !pc->aslot || !pc->routers)
		return -ENOMEM;
	for (uint32_t s = 0; s < m->n_slots; s++) {
		const struct cm_node *nd = m->slots[s];
		if (!nd || nd->tn != t)
			continue;
		if (nd->n_primary)
			pc->routers[pc->n_routers++] = s;
		const struct mg_prefix *a[2] = {&nd->info.addr4, &nd->info.addr6};
		for (int k = 0; k < 2; k++) {
			size_t i;
			if (!a[k]->family)
				continue;
			for (i = pc_hash(a[k]) & (pc->acap - 1); pc->aslot[i];
			     i = (i + 1) & (pc->acap - 1))
				;
			pc->akeys[i] = *a[k];
			pc->aslot[i] = s + 1;
		}
	}
	return 0;
}

static void pc_fill(struct pcache *pc, struct coord_model *m, const struct cm_tailnet *t,
		    const struct mg_prefix *p, uint64_t *set)
{
	bool host =
	    (p->family == AF_INET && p->cidr == 32) || (p->family == AF_INET6 && p->cidr == 128);

	if (!host) {
		for (uint32_t s = 0; s < m->n_slots; s++) {
			const struct cm_node *n = m->slots[s];
			if (n && n->tn == t && node_in_prefix(n, p))
				bit_set(set, s);
		}
		return;
	}
	for (size_t i = pc_hash(p) & (pc->acap - 1); pc->aslot[i]; i = (i + 1) & (pc->acap - 1))
		if (!memcmp(&pc->akeys[i], p, sizeof(*p)))
			bit_set(set, pc->aslot[i] - 1);
	for (size_t k = 0; k < pc->n_routers; k++)
		if (node_in_prefix(m->slots[pc->routers[k]], p))
			bit_set(set, pc->routers[k]);
}

/* A new entry for p: its node set as bits and as slots, and its text. */
static int pc_add(struct pcache *pc, struct coord_model *m, const struct cm_tailnet *t,
		  const struct mg_prefix *p, uint32_t words)
{
	struct pc_entry *e;
	char buf[MG_PREFIX_STRLEN];
	uint32_t n = 0;

	if (pc->n == pc->cap_ents) {
		size_t cap = pc->cap_ents ? 2 * pc->cap_ents : 256;
		struct pc_entry *v = realloc(pc->ents, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		pc->ents = v;
		pc->cap_ents = cap;
	}
	e = &pc->ents[pc->n];
	memset(e, 0, sizeof(*e));
	e->key = *p;
	e->set = calloc(words ? words : 1, sizeof(uint64_t));
	e->str = strdup(mg_prefix_fmt(p, buf, sizeof(buf)) ? buf : "");
	if (!e->set || !e->str)
		goto nomem;
	pc_fill(pc, m, t, p, e->set);
	for (uint32_t w = 0; w < words; w++)
		n += (uint32_t)__builtin_popcountll(e->set[w]);
	if (!(e->slots = malloc((n ? n : 1) * sizeof(*e->slots))))
		goto nomem;
	for (uint32_t w = 0; w < words; w++)
		for (uint64_t c = e->set[w]; c; c &= c - 1)
			e->slots[e->n_slots++] = w * 64 + (uint32_t)__builtin_ctzll(c);
	pc->n++;
	return 0;
nomem:
	free(e->set);
	free(e->str);
	return -ENOMEM;
}

/* The entry of prefix p, made on first use; NULL when out of memory. */
static struct pc_entry *pc_get(struct pcache *pc, struct coord_model *m, const struct cm_tailnet *t,
			       const struct mg_prefix *p, uint32_t words)
{
	size_t i;

	if (pc->n * 2 >= pc->cap) {
		size_t cap = pc->cap ? 2 * pc->cap : 1024;
		uint32_t *tb = calloc(cap, sizeof(*tb));
		if (!tb)
			return NULL;
		for (size_t j = 0; j < pc->n; j++) {
			for (i = pc_hash(&pc->ents[j].key) & (cap - 1); tb[i];
			     i = (i + 1) & (cap - 1))
				;
			tb[i] = (uint32_t)j + 1;
		}
		free(pc->table);
		pc->table = tb;
		pc->cap = cap;
	}
	for (i = pc_hash(p) & (pc->cap - 1); pc->table[i]; i = (i + 1) & (pc->cap - 1))
		if (!memcmp(&pc->ents[pc->table[i] - 1].key, p, sizeof(*p)))
			return &pc->ents[pc->table[i] - 1];
	if (pc_add(pc, m, t, p, words) < 0)
		return NULL;
	pc->table[i] = (uint32_t)pc->n;
	return &pc->ents[pc->n - 1];
}

static void pc_free(struct pcache *pc)
{
	for (size_t i = 0; i < pc->n; i++) {
		free(pc->ents[i].set);
		free(pc->ents[i].slots);
		free(pc->ents[i].str);
	}
	free(pc->ents);
	free(pc->table);
	free(pc->akeys);
	free(pc->aslot);
	free(pc->routers);
}

static void free_acl_sets(struct cm_tailnet *t)
{
	for (size_t a = 0; t->acl_src && a < t->n_acls; a++) {
		free(t->acl_src[a]);
		free(t->acl_dst[a]);
	}
	free(t->acl_src);
	free(t->acl_dst);
	t->acl_src = t->acl_dst = NULL;
}

/* set |= e's nodes, once per acls entry a (rules repeat prefixes). */
static void or_once(uint64_t *set, struct pc_entry *e, uint32_t *stamp, uint32_t a)
{
	if (*stamp == a + 1)
		return;
	*stamp = a + 1;
	for (uint32_t k = 0; k < e->n_slots; k++)
		bit_set(set, e->slots[k]);
}

/*
 * The acls entries' node sets, and each node's rules (those whose
 * destination covers it) as a CSR list: rules first[slot]..first[slot+1]
 * of idx, in rule order. O(rules + nodes): a rule costs a lookup of its
 * source (its destination is mostly the previous rule's) and a step per
 * node its destination covers.
 */
static int build_sets(struct coord_model *m, struct cm_tailnet *t, uint32_t words,
		      struct pcache *pcp, struct rule_strs **strs_out, uint32_t **first_out,
		      uint32_t **idx_out)
{
	struct pcache pc;
	uint32_t *first = calloc((size_t)words * 64 + 2, sizeof(*first)), *idx = NULL, *pos = NULL;
	uint32_t *dsts = calloc(t->n_rules ? t->n_rules : 1, sizeof(*dsts)); /* entry index */
	struct rule_strs *strs = calloc(t->n_rules ? t->n_rules : 1, sizeof(*strs));
	int ret = pc_init(&pc, m, t);
	size_t di = SIZE_MAX; /* the last destination's entry (pc_get may move entries) */

	free_acl_sets(t);
	if (ret < 0 || !first || !dsts || !strs)
		goto nomem;
	t->acl_src = calloc(t->n_acls ? t->n_acls : 1, sizeof(*t->acl_src));
	t->acl_dst = calloc(t->n_acls ? t->n_acls : 1, sizeof(*t->acl_dst));
	if (!t->acl_src || !t->acl_dst)
		goto nomem;
	for (size_t a = 0; a < t->n_acls; a++) {
		t->acl_src[a] = calloc(words ? words : 1, sizeof(uint64_t));
		t->acl_dst[a] = calloc(words ? words : 1, sizeof(uint64_t));
		if (!t->acl_src[a] || !t->acl_dst[a])
			goto nomem;
	}
	for (size_t k = 0; k < t->n_rules; k++) {
		const struct mg_acl_rule *r = &t->rules[k];
		struct mg_prefix s, d;
		struct pc_entry *se, *de;

		rule_prefixes(r, &s, &d);
		if (di == SIZE_MAX || memcmp(&pc.ents[di].key, &d, sizeof(d))) {
			if (!(de = pc_get(&pc, m, t, &d, words)))
				goto nomem;
			di = (size_t)(de - pc.ents);
		}
		if (!(se = pc_get(&pc, m, t, &s, words)))
			goto nomem;
		de = &pc.ents[di];
		strs[k].src = se->str;
		strs[k].dst = de->str;
		dsts[k] = (uint32_t)di;
		if (r->acl_index < t->n_acls) {
			or_once(t->acl_src[r->acl_index], se, &se->src_acl, r->acl_index);
			or_once(t->acl_dst[r->acl_index], de, &de->dst_acl, r->acl_index);
		}
		for (uint32_t i = 0; i < de->n_slots; i++)
			first[de->slots[i] + 1]++;
	}
	for (uint32_t i = 0; i < words * 64; i++)
		first[i + 1] += first[i];
	idx = malloc(((size_t)first[words * 64] + 1) * sizeof(*idx));
	pos = malloc(((size_t)words * 64 + 1) * sizeof(*pos));
	if (!idx || !pos)
		goto nomem;
	memcpy(pos, first, ((size_t)words * 64 + 1) * sizeof(*pos));
	for (size_t k = 0; k < t->n_rules; k++) {
		const struct pc_entry *e = &pc.ents[dsts[k]];
		for (uint32_t i = 0; i < e->n_slots; i++)
			idx[pos[e->slots[i]]++] = (uint32_t)k;
	}
	free(pos);
	free(dsts);
	*pcp = pc;
	*strs_out = strs;
	*first_out = first;
	*idx_out = idx;
	return 0;
nomem:
	free(first);
	free(idx);
	free(pos);
	free(dsts);
	free(strs);
	pc_free(&pc);
	return -ENOMEM;
}

static bool viewer_pending(const struct coord_model *m, const struct cm_node *v)
{
	if (!v->sent_version)
		return true;
	if (v->filter_hash != v->sent_filter_hash || v->self_hash != v->sent_self_hash)
		return true;
	for (uint32_t w = 0; w < v->cur_words; w++) {
		uint64_t c = v->cur[w], s = w < v->sent_words ? v->sent[w] : 0;
		if (c != s)
			return true;
		while (c) {
			uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(c);
			c &= c - 1;
			if (m->slots[slot] && m->slots[slot]->peer_seq > v->sent_seq)
				return true;
		}
	}
	for (uint32_t w = v->cur_words; w < v->sent_words; w++)
		if (v->sent[w])
			return true;
	return false;
}

static int render_dirty_nodes(struct coord_model *m, struct cm_tailnet *t)
{
	for (uint32_t s = 0; s < m->n_slots; s++) {
		struct cm_node *n = m->slots[s];
		char *pj, *self;

		if (!n || n->tn != t || (!n->render_dirty && n->peer_json && n->self_json))
			continue;
		if (!(pj = render_peer(n)) || !(self = render_self(n))) {
			free(pj);
			return -ENOMEM;
		}
		if (!n->peer_json || strcmp(pj, n->peer_json)) {
			free(n->peer_json);
			n->peer_json = pj;
			n->peer_seq = m->seq;
		} else {
			free(pj);
		}
		if (!n->self_json || strcmp(n->self_json, self)) {
			free(n->self_json);
			n->self_json = self;
			n->self_hash = cm_hash(self) ^ 1; /* never 0: 0 is "nothing sent" */
		} else {
			free(self);
		}
		n->render_dirty = false;
	}
	return 0;
}

static int recompute_tailnet(struct coord_model *m, struct cm_tailnet *t, int64_t now,
			     void (*wake)(void *, struct cm_node *), void *arg)
{
	uint32_t words = WORDS(m->n_slots);
	uint32_t *first = NULL, *idx = NULL;
	struct pcache pc = {0};
	struct rule_strs *strs = NULL;
	struct strbuf sb = {0};
	uint64_t *gw_extra = calloc(words ? words : 1, sizeof(uint64_t));
	uint64_t *valid = calloc(words ? words : 1, sizeof(uint64_t));
	bool filters;
	int ret = 0;

	if (!gw_extra || !valid) {
		ret = -ENOMEM;
		goto out;
	}
	filters = t->need_compile;
	if (t->need_compile) {
		if (t->policy) {
			char err[256];
			if (cm_policy_compile(m, t, t->id, t->policy, false, true, err,
					      sizeof(err)) < 0)
				/* a node the policy names went away, say: keep the old rules
				 * (none if it never compiled: nothing is allowed) */
				snprintf(t->policy_err, sizeof(t->policy_err), "%s", err);
			else
				t->policy_err[0] = '\0';
		} else if ((ret = install_allow_all(t)) < 0) {
			goto out;
		}
		t->need_compile = false;
	}
	/* after the compile: autoApprovers come with the policy */
	elect_primaries(m, t, now);
	filters |= t->routes_moved;
	t->routes_moved = false;
	if ((ret = build_sets(m, t, words, &pc, &strs, &first, &idx)) < 0)
		goto out;
	if ((ret = render_dirty_nodes(m, t)) < 0)
		goto out;
	for (uint32_t s = 0; s < m->n_slots; s++) {
		const struct cm_node *n = m->slots[s];
		if (!n || n->tn != t)
			continue;
		if (n->info.plain_wg)
			bit_set(gw_extra, s);
		if (!(n->info.key_expiry && n->info.key_expiry < now))
			bit_set(valid, s); /* expired keys are not sent */
	}

	for (uint32_t s = 0; s < m->n_slots; s++) {
		struct cm_node *v = m->slots[s];
		bool gw;

		if (!v || v->tn != t || v->info.plain_wg)
			continue;
		if (v->cur_words != words) {
			uint64_t *c = realloc(v->cur, (words ? words : 1) * sizeof(uint64_t));
			if (!c) {
				ret = -ENOMEM;
				goto out;
			}
			v->cur = c;
			v->cur_words = words;
		}
		memset(v->cur, 0, words * sizeof(uint64_t));
		for (size_t a = 0; a < t->n_acls; a++) {
			if (bit_get(t->acl_src[a], words, s))
				for (uint32_t w = 0; w < words; w++)
					v->cur[w] |= t->acl_dst[a][w];
			if (bit_get(t->acl_dst[a], words, s))
				for (uint32_t w = 0; w < words; w++)
					v->cur[w] |= t->acl_src[a][w];
		}
		gw = cm_node_has_tag(v, t->gw_tag && *t->gw_tag ? t->gw_tag : "tag:gw");
		for (uint32_t w = 0; w < words; w++) {
			v->cur[w] &= ~gw_extra[w];
			if (gw)
				v->cur[w] |= gw_extra[w];
			v->cur[w] &= valid[w];
		}
		bit_clr(v->cur, s);
		if (filters || !v->filter_json) {
			sb.len = 0;
			render_filter(&sb, t->rules, strs, idx + first[s], first[s + 1] - first[s]);
			if (sb.oom) {
				ret = -ENOMEM;
				goto out;
			}
			if (!v->filter_json || strcmp(v->filter_json, sb.buf)) {
				free(v->filter_json);
				if (!(v->filter_json = strdup(sb.buf))) {
					ret = -ENOMEM;
					goto out;
				}
				v->filter_hash = cm_hash(v->filter_json) ^ 1;
			}
		}
		v->computed = true;
		v->pending = viewer_pending(m, v);
		if (v->waiter && wake && cm_has_map(v, v->waiter_version))
			wake(arg, v);
	}
	t->dirty = false;
out:
	free(first);
	free(idx);
	free(strs);
	pc_free(&pc);
	free(gw_extra);
	free(valid);
	strbuf_free(&sb);
	return ret;
}

int cm_recompute(struct coord_model *m, int64_t now, void (*wake)(void *arg, struct cm_node *n),
		 void *arg)
{
	int done = 0;

	cm_tick(m, now);
	for (size_t i = 0; i < m->n_tailnets; i++) {
		if (!m->tailnets[i]->dirty)
			continue;
		if (!done)
			m->seq++;
		if (recompute_tailnet(m, m->tailnets[i], now, wake, arg) < 0)
			continue;
		done++;
	}
	return done;
}

bool cm_has_map(const struct cm_node *n, int64_t version)
{
	return n->computed && (version != n->sent_version || n->pending);
}

char *cm_map(struct coord_model *m, struct cm_node *n, int64_t version, size_t *len)
{
	bool full = version == 0 || version != n->sent_version;
	int64_t v = m->next_version++;
	struct strbuf sb = {0};
	bool first = true;

	if (!n->computed)
		return NULL;
	strbuf_printf(&sb, "{\"version\":%lld,\"full\":%s", (long long)v, full ? "true" : "false");
	if (full) {
		strbuf_add(&sb, ",\"self\":");
		strbuf_add(&sb, n->self_json);
		strbuf_add(&sb, ",\"peers\":[");
		for (uint32_t w = 0; w < n->cur_words; w++)
			for (uint64_t c = n->cur[w]; c; c &= c - 1) {
				uint32_t p = w * 64 + (uint32_t)__builtin_ctzll(c);
				if (!m->slots[p])
					continue;
				if (!first)
					strbuf_add(&sb, ",");
				strbuf_add(&sb, m->slots[p]->peer_json);
				first = false;
			}
		strbuf_add(&sb, "],\"packet_filter\":");
		strbuf_add(&sb, n->filter_json);
		strbuf_add(&sb, ",\"derp_map\":");
		strbuf_add(&sb, m->derp_json ? m->derp_json : "{\"regions\":[]}");
		strbuf_add(&sb, "}");
	} else {
		strbuf_add(&sb, ",\"peers_changed\":[");
		for (uint32_t w = 0; w < n->cur_words; w++)
			for (uint64_t c = n->cur[w]; c; c &= c - 1) {
				uint32_t p = w * 64 + (uint32_t)__builtin_ctzll(c);
				if (!m->slots[p] || (bit_get(n->sent, n->sent_words, p) &&
						     m->slots[p]->peer_seq <= n->sent_seq))
					continue;
				if (!first)
					strbuf_add(&sb, ",");
				strbuf_add(&sb, m->slots[p]->peer_json);
				first = false;
			}
		strbuf_add(&sb, "],\"peers_removed\":[");
		first = true;
		for (uint32_t w = 0; w < n->sent_words; w++) {
			uint64_t gone = n->sent[w] & ~(w < n->cur_words ? n->cur[w] : 0);
			for (; gone; gone &= gone - 1) {
				uint32_t p = w * 64 + (uint32_t)__builtin_ctzll(gone);
				strbuf_printf(&sb, "%s%lld", first ? "" : ",",
					      (long long)m->slot_id[p]);
				first = false;
			}
		}
		strbuf_add(&sb, "]");
		if (n->filter_hash != n->sent_filter_hash) {
			strbuf_add(&sb, ",\"packet_filter\":");
			strbuf_add(&sb, n->filter_json);
		}
		if (n->self_hash != n->sent_self_hash) {
			strbuf_add(&sb, ",\"self\":");
			strbuf_add(&sb, n->self_json);
		}
		strbuf_add(&sb, "}");
	}
	if (sb.oom) {
		strbuf_free(&sb);
		return NULL;
	}
	/* record what the node now has */
	if (n->sent_words != n->cur_words) {
		uint64_t *s = realloc(n->sent, n->cur_words * sizeof(uint64_t));
		if (!s && n->cur_words) {
			strbuf_free(&sb);
			return NULL;
		}
		n->sent = s;
		n->sent_words = n->cur_words;
	}
	if (n->cur_words)
		memcpy(n->sent, n->cur, n->cur_words * sizeof(uint64_t));
	n->sent_filter_hash = n->filter_hash;
	n->sent_self_hash = n->self_hash;
	n->sent_seq = m->seq;
	n->sent_version = v;
	n->pending = false;
	*len = sb.len;
	return sb.buf;
}
