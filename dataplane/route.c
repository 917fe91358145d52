/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_malloc.h>

#include "route.h"

struct route_op {
	struct mg_prefix prefix;
	uint32_t peer;
	bool add;
	bool failed; /* could not be applied to the first copy: skip on the second */
};

struct peer_prefixes {
	struct mg_prefix *v;
	uint32_t n, cap;
};

struct dp_routes {
	struct dp_route_tables copy[2];
	struct dp_route_tables *active; /* atomic pointer, read by workers */
	struct peer_prefixes *owned;    /* [max_peers] */
	uint32_t max_peers;
	struct route_op *ops;
	uint32_t n_ops, cap_ops;
	uint32_t count;
};

static bool prefix_eq(const struct mg_prefix *a, const struct mg_prefix *b)
{
	return a->family == b->family && a->cidr == b->cidr &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static uint32_t prefix_ip4(const struct mg_prefix *p)
{
	return ((uint32_t)p->addr[0] << 24) | ((uint32_t)p->addr[1] << 16) |
	       ((uint32_t)p->addr[2] << 8) | p->addr[3];
}

static int tables_create(struct dp_route_tables *t, const char *name, int i, uint32_t max_rules,
			 int socket_id)
{
	char n[RTE_LPM_NAMESIZE];
	struct rte_lpm_config c4 = {
		.max_rules = max_rules,
		.number_tbl8s = max_rules < 256 ? 256 : max_rules,
	};
	/* A /128 can take 13 tbl8 groups; host routes are the common case
	 * for peers, but memory is finite: at most 64 MiB of groups. */
	uint32_t tbl8s6 = max_rules * 13;
	struct rte_lpm6_config c6 = {
		.max_rules = max_rules,
		.number_tbl8s = tbl8s6 < 2048 ? 2048 : tbl8s6 > (1u << 16) ? (1u << 16) : tbl8s6,
	};

	snprintf(n, sizeof(n), "%s4_%d", name, i);
	t->lpm4 = rte_lpm_create(n, socket_id, &c4);
	snprintf(n, sizeof(n), "%s6_%d", name, i);
	t->lpm6 = rte_lpm6_create(n, socket_id, &c6);
	return t->lpm4 && t->lpm6 ? 0 : -ENOMEM;
}

struct dp_routes *dp_routes_create(const char *name, uint32_t max_peers, uint32_t max_rules,
				   int socket_id)
{
	struct dp_routes *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->max_peers = max_peers;
	r->owned = calloc(max_peers, sizeof(*r->owned));
	if (!r->owned || tables_create(&r->copy[0], name, 0, max_rules, socket_id) ||
	    tables_create(&r->copy[1], name, 1, max_rules, socket_id)) {
		dp_routes_destroy(r);
		return NULL;
	}
	r->active = &r->copy[0];
	return r;
}

void dp_routes_destroy(struct dp_routes *r)
{
	if (!r)
		return;
	for (int i = 0; i < 2; i++) {
		rte_lpm_free(r->copy[i].lpm4);
		rte_lpm6_free(r->copy[i].lpm6);
	}
	for (uint32_t i = 0; r->owned && i < r->max_peers; i++)
		free(r->owned[i].v);
	free(r->owned);
	free(r->ops);
	free(r);
}

const struct dp_route_tables *dp_routes_active(const struct dp_routes *r)
{
	return __atomic_load_n(&r->active, __ATOMIC_ACQUIRE);
}

static int queue_op(struct dp_routes *r, const struct mg_prefix *p, uint32_t peer, bool add)
{
	if (r->n_ops == r->cap_ops) {
		uint32_t cap = r->cap_ops ? r->cap_ops * 2 : 256;
		struct route_op *o = realloc(r->ops, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		r->ops = o;
		r->cap_ops = cap;
	}
	r->ops[r->n_ops++] = (struct route_op){.prefix = *p, .peer = peer, .add = add};
	return 0;
}

static void owned_remove(struct peer_prefixes *pp, const struct mg_prefix *p)
{
	for (uint32_t i = 0; i < pp->n; i++) {
		if (prefix_eq(&pp->v[i], p)) {
			pp->v[i] = pp->v[--pp->n];
			return;
		}
	}
}

static int owned_add(struct peer_prefixes *pp, const struct mg_prefix *p)
{
	for (uint32_t i = 0; i < pp->n; i++)
		if (prefix_eq(&pp->v[i], p))
			return 0;
	if (pp->n == pp->cap) {
		uint32_t cap = pp->cap ? pp->cap * 2 : 4;
		struct mg_prefix *v = realloc(pp->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		pp->v = v;
		pp->cap = cap;
	}
	pp->v[pp->n++] = *p;
	return 0;
}

int dp_routes_add(struct dp_routes *r, const struct mg_prefix *p, uint32_t peer)
{
	if (peer >= r->max_peers || (p->family != AF_INET && p->family != AF_INET6) ||
	    p->cidr > (p->family == AF_INET ? 32 : 128))
		return -EINVAL;
	int rc = owned_add(&r->owned[peer], p);
	return rc ? rc : queue_op(r, p, peer, true);
}

int dp_routes_del(struct dp_routes *r, const struct mg_prefix *p, uint32_t peer)
{
	if (peer >= r->max_peers || (p->family != AF_INET && p->family != AF_INET6))
		return -EINVAL;
	owned_remove(&r->owned[peer], p);
	return queue_op(r, p, peer, false);
}

int dp_routes_clear_peer(struct dp_routes *r, uint32_t peer)
{
	if (peer >= r->max_peers)
		return -EINVAL;
	struct peer_prefixes *pp = &r->owned[peer];
	while (pp->n) {
		int rc = dp_routes_del(r, &pp->v[pp->n - 1], peer);
		if (rc)
			return rc;
	}
	return 0;
}

/* The default route of a family, kept beside the LPM (which has no /0). */
static int apply_default(struct dp_routes *r, uint32_t *slot, const struct route_op *o, bool count)
{
	if (o->add) {
		if (!*slot && count)
			r->count++;
		__atomic_store_n(slot, o->peer + 1, __ATOMIC_RELEASE);
	} else if (*slot == o->peer + 1) {
		__atomic_store_n(slot, 0, __ATOMIC_RELEASE);
		if (count)
			r->count--;
	}
	return 0;
}

/* A prefix belongs to one peer at a time: deleting it on behalf of a peer
 * that no longer owns it must not remove the new owner's route. */
static int apply_op(struct dp_routes *r, struct dp_route_tables *t, const struct route_op *o,
		    bool count)
{
	const struct mg_prefix *p = &o->prefix;
	uint32_t owner;
	int present, rc = 0;

	if (p->cidr == 0)
		return apply_default(r, p->family == AF_INET ? &t->default4 : &t->default6, o, count);
	if (p->family == AF_INET) {
		uint32_t ip = prefix_ip4(p);
		present = rte_lpm_is_rule_present(t->lpm4, ip, p->cidr, &owner);
		if (o->add)
			rc = rte_lpm_add(t->lpm4, ip, p->cidr, o->peer);
		else if (present == 1 && owner == o->peer)
			rc = rte_lpm_delete(t->lpm4, ip, p->cidr);
	} else {
		present = rte_lpm6_is_rule_present(t->lpm6, p->addr, p->cidr, &owner);
		if (o->add)
			rc = rte_lpm6_add(t->lpm6, p->addr, p->cidr, o->peer);
		else if (present == 1 && owner == o->peer)
			rc = rte_lpm6_delete(t->lpm6, p->addr, p->cidr);
	}
	if (rc == 0 && count && o->add && present == 0)
		r->count++;
	else if (rc == 0 && count && !o->add && present == 1 && owner == o->peer)
		r->count--;
	return rc;
}

int dp_routes_commit(struct dp_routes *r, struct rte_rcu_qsbr *rcu)
{
	if (!r->n_ops)
		return 0;
	struct dp_route_tables *standby = r->active == &r->copy[0] ? &r->copy[1] : &r->copy[0];
	struct dp_route_tables *old = r->active;

	int failed = 0;

	for (uint32_t i = 0; i < r->n_ops; i++) {
		r->ops[i].failed = apply_op(r, standby, &r->ops[i], true) != 0;
		failed += r->ops[i].failed;
	}
	__atomic_store_n(&r->active, standby, __ATOMIC_RELEASE);
	if (rcu)
		rte_rcu_qsbr_synchronize(rcu, RTE_QSBR_THRID_INVALID);
	for (uint32_t i = 0; i < r->n_ops; i++)
		if (!r->ops[i].failed)
			apply_op(r, old, &r->ops[i], false);
	r->n_ops = 0;
	return failed;
}

uint32_t dp_routes_count(const struct dp_routes *r)
{
	return r->count;
}
