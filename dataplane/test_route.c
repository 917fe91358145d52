/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for route.c (cryptokey routing). The main test is differential:
 * random adds, deletes and peer clears run against route.c and against a
 * deliberately naive reference (an array of prefix -> peer, longest match
 * by linear scan), and after every commit both LPM copies must answer like
 * the reference. Then fixed table cases, the left-right copies, capacity,
 * and readers running concurrently with commits under RCU.
 * EAL runs without hugepages or devices.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include "addr.h"
#include "route.h"

static int n_pass, n_fail;

#define CHECK(cond) check((cond), #cond, __func__, __LINE__)

static bool check(bool ok, const char *what, const char *func, int line)
{
	if (ok) {
		n_pass++;
		return true;
	}
	n_fail++;
	fprintf(stderr, "FAIL %s:%d: %s\n", func, line, what);
	return false;
}

/* ---- Small helpers ---- */

static uint64_t rng;

/* splitmix64: fixed seeds give the same run everywhere. */
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rnd_below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

static int alen(int family)
{
	return family == AF_INET ? 4 : 16;
}

static int maxlen(int family)
{
	return family == AF_INET ? 32 : 128;
}

static struct mg_prefix pfx(const char *s)
{
	struct mg_prefix p;

	if (mg_prefix_parse(s, &p)) {
		fprintf(stderr, "bad prefix in test: %s\n", s);
		exit(2);
	}
	return p;
}

struct addr {
	int family;
	uint8_t a[16];
};

static struct addr ip(const char *s)
{
	struct mg_sockaddr sa;

	if (mg_addr_parse(s, &sa)) {
		fprintf(stderr, "bad address in test: %s\n", s);
		exit(2);
	}
	struct addr r = {.family = sa.family};
	memcpy(r.a, sa.addr, 16);
	return r;
}

static const char *fmt_prefix(const struct mg_prefix *p, char buf[MG_PREFIX_STRLEN])
{
	return mg_prefix_fmt(p, buf, MG_PREFIX_STRLEN);
}

static const char *fmt_addr(const struct addr *a, char buf[MG_ADDR_STRLEN])
{
	struct mg_sockaddr sa = {.family = (uint8_t)a->family};

	memcpy(sa.addr, a->a, 16);
	return mg_addr_fmt(&sa, buf, MG_ADDR_STRLEN);
}

/* Zero the bits past cidr, byte by byte (on purpose not mg_prefix_mask). */
static void mask_bits(uint8_t *a, int len, int cidr)
{
	for (int i = 0; i < len; i++) {
		int keep = cidr - 8 * i;

		if (keep >= 8)
			continue;
		a[i] &= keep <= 0 ? 0 : (uint8_t)(0xff00 >> keep);
	}
}

/* -1 for a miss, else the peer. */
static int64_t lookup(const struct dp_route_tables *t, const struct addr *a)
{
	uint32_t peer = UINT32_MAX;
	int rc;

	if (a->family == AF_INET) {
		uint32_t v = ((uint32_t)a->a[0] << 24) | ((uint32_t)a->a[1] << 16) |
			     ((uint32_t)a->a[2] << 8) | a->a[3];
		rc = dp_route_lookup4(t, v, &peer);
	} else {
		rc = dp_route_lookup6(t, a->a, &peer);
	}
	if (rc == 0)
		return peer;
	if (rc != -ENOENT)
		fprintf(stderr, "lookup returned %d\n", rc);
	return -1;
}

static int64_t lookup_s(const struct dp_routes *r, const char *s)
{
	struct addr a = ip(s);

	return lookup(dp_routes_active(r), &a);
}

static int name_seq;

static struct dp_routes *routes_new(uint32_t max_peers, uint32_t max_rules)
{
	char name[16];

	snprintf(name, sizeof(name), "rt%d", name_seq++);
	struct dp_routes *r = dp_routes_create(name, max_peers, max_rules, SOCKET_ID_ANY);
	if (!r) {
		fprintf(stderr, "dp_routes_create(%s, %u, %u): %s\n", name, max_peers, max_rules,
			rte_strerror(rte_errno));
		exit(1);
	}
	return r;
}

/* ---- The reference: a plain array, longest match by linear scan ---- */

struct ref_route {
	struct mg_prefix p;
	uint32_t peer;
};

struct ref {
	struct ref_route *v;
	uint32_t n, cap;
};

static bool same_prefix(const struct mg_prefix *a, const struct mg_prefix *b)
{
	return a->family == b->family && a->cidr == b->cidr &&
	       memcmp(a->addr, b->addr, (size_t)alen(a->family)) == 0;
}

static bool ref_contains(const struct mg_prefix *p, const struct addr *a)
{
	if (p->family != a->family)
		return false;
	int full = p->cidr / 8, rest = p->cidr % 8;
	if (memcmp(p->addr, a->a, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t m = (uint8_t)(0xff00 >> rest);
	return (p->addr[full] & m) == (a->a[full] & m);
}

static int ref_find(const struct ref *ref, const struct mg_prefix *p)
{
	for (uint32_t i = 0; i < ref->n; i++)
		if (same_prefix(&ref->v[i].p, p))
			return (int)i;
	return -1;
}

/* WireGuard: adding a prefix takes it away from whichever peer had it. */
static void ref_add(struct ref *ref, const struct mg_prefix *p, uint32_t peer)
{
	int i = ref_find(ref, p);

	if (i >= 0) {
		ref->v[i].peer = peer;
		return;
	}
	if (ref->n == ref->cap) {
		ref->cap = ref->cap ? ref->cap * 2 : 64;
		ref->v = realloc(ref->v, ref->cap * sizeof(*ref->v));
		if (!ref->v)
			abort();
	}
	ref->v[ref->n++] = (struct ref_route){.p = *p, .peer = peer};
}

/* Only the current owner can delete a prefix. */
static void ref_del(struct ref *ref, const struct mg_prefix *p, uint32_t peer)
{
	int i = ref_find(ref, p);

	if (i >= 0 && ref->v[i].peer == peer)
		ref->v[i] = ref->v[--ref->n];
}

static void ref_clear_peer(struct ref *ref, uint32_t peer)
{
	for (uint32_t i = 0; i < ref->n;) {
		if (ref->v[i].peer == peer)
			ref->v[i] = ref->v[--ref->n];
		else
			i++;
	}
}

/* Index of the longest prefix containing a, or -1. */
static int ref_lookup(const struct ref *ref, const struct addr *a)
{
	int best = -1;

	for (uint32_t i = 0; i < ref->n; i++) {
		if (!ref_contains(&ref->v[i].p, a))
			continue;
		if (best < 0 || ref->v[i].p.cidr > ref->v[best].p.cidr)
			best = (int)i;
	}
	return best;
}

/* ---- 1. Differential test ---- */

enum op_kind { OP_ADD, OP_DEL, OP_CLEAR, OP_COMMIT };

struct op {
	enum op_kind kind;
	struct mg_prefix p;
	uint32_t peer;
};

struct diff {
	struct dp_routes *r;
	struct ref ref;
	struct op *log;
	uint32_t n_log;
	uint32_t n_peers;
	bool allow_default;
	uint64_t seed;
	uint32_t n_commits;
	uint64_t n_lookups;
	uint32_t n_nonowner_del, n_replace, n_clear, n_default;
};

#define DIFF_OPS    5000
#define DIFF_PROBES 500
#define DIFF_PEERS  200

static void log_op(struct diff *d, enum op_kind kind, const struct mg_prefix *p, uint32_t peer)
{
	struct op o = {.kind = kind, .peer = peer};

	if (p)
		o.p = *p;
	d->log[d->n_log++] = o;
}

static const struct ref_route *random_route(const struct diff *d, int family)
{
	if (!d->ref.n)
		return NULL;
	for (int tries = 0; tries < 8; tries++) {
		const struct ref_route *e = &d->ref.v[rnd_below(d->ref.n)];
		if (!family || e->p.family == family)
			return e;
	}
	return NULL;
}

static void gen_prefix(const struct diff *d, int family, struct mg_prefix *out)
{
	static const uint8_t v4_cidr[] = {8, 16, 24, 32, 32};
	static const uint8_t v6_cidr[] = {32, 48, 64, 64, 128, 128};
	static const uint8_t v4_first[] = {10, 10, 10, 172, 192, 100};
	const struct ref_route *base = random_route(d, family);
	int len = alen(family), max = maxlen(family);
	uint32_t how = rnd_below(100);
	struct mg_prefix p = {.family = (uint8_t)family};

	if (base && how < 25) {
		/* The very same prefix: a change of owner, or a duplicate. */
		*out = base->p;
		return;
	}
	for (int i = 0; i < 16; i++)
		p.addr[i] = (uint8_t)rnd();
	if (base && how < 60) {
		/* Nested in, or around, an installed prefix. */
		int c = base->p.cidr;
		if ((rnd() & 1) && c < max) {
			uint8_t keep[16];

			memcpy(keep, base->p.addr, 16);
			mask_bits(keep, len, c);
			for (int i = 0; i < len; i++) {
				int k = c - 8 * i;
				uint8_t m = k >= 8 ? 0xff : k <= 0 ? 0 : (uint8_t)(0xff00 >> k);

				p.addr[i] = (uint8_t)((keep[i] & m) | (p.addr[i] & ~m));
			}
			p.cidr = (uint8_t)(c + 1 + (int)rnd_below((uint32_t)(max - c)));
		} else {
			memcpy(p.addr, base->p.addr, 16);
			p.cidr = c > 1 ? (uint8_t)(1 + rnd_below((uint32_t)c - 1)) : (uint8_t)c;
		}
	} else if (family == AF_INET) {
		if (rnd_below(4))
			p.addr[0] = v4_first[rnd_below(sizeof(v4_first))];
		p.cidr = rnd_below(3) ? v4_cidr[rnd_below(sizeof(v4_cidr))]
				      : (uint8_t)(1 + rnd_below(32));
	} else {
		if (rnd_below(3)) {
			p.addr[0] = 0xfd;
		} else {
			p.addr[0] = 0x20;
			p.addr[1] = 0x01;
			p.addr[2] = 0x0d;
			p.addr[3] = 0xb8;
		}
		p.cidr = rnd_below(3) ? v6_cidr[rnd_below(sizeof(v6_cidr))]
				      : (uint8_t)(1 + rnd_below(128));
	}
	if (d->allow_default && rnd_below(100) < 3)
		p.cidr = 0;
	mask_bits(p.addr, len, p.cidr);
	memset(p.addr + len, 0, (size_t)(16 - len));
	*out = p;
}

static int random_family(void)
{
	return rnd_below(5) < 3 ? AF_INET : AF_INET6;
}

static uint32_t other_peer(const struct diff *d, uint32_t peer)
{
	return (peer + 1 + rnd_below(d->n_peers - 1)) % d->n_peers;
}

/* A peer that added p earlier but (maybe) lost it to a later add. */
static bool former_owner(const struct diff *d, const struct mg_prefix *p, uint32_t owner,
			 uint32_t *out)
{
	for (uint32_t i = d->n_log; i-- > 0;) {
		const struct op *o = &d->log[i];

		if (o->kind == OP_ADD && o->peer != owner && same_prefix(&o->p, p)) {
			*out = o->peer;
			return true;
		}
	}
	return false;
}

/* Add or subtract one, as a big-endian number of len bytes (wrapping). */
static void addr_step(uint8_t *a, int len, int dir)
{
	for (int i = len - 1; i >= 0; i--) {
		uint8_t old = a[i];

		a[i] = (uint8_t)(a[i] + dir);
		if ((dir > 0 && old != 0xff) || (dir < 0 && old != 0x00))
			break;
	}
}

/* Addresses biased toward installed prefixes: their edges and just outside. */
static void gen_probe(const struct diff *d, struct addr *a)
{
	const struct ref_route *e = rnd_below(10) < 7 ? random_route(d, 0) : NULL;

	memset(a, 0, sizeof(*a));
	if (!e) {
		struct mg_prefix p;

		a->family = random_family();
		gen_prefix(d, a->family, &p);
		memcpy(a->a, p.addr, 16);
		/* Random host bits under a plausible prefix. */
		for (int i = p.cidr / 8 + 1; i < alen(a->family); i++)
			a->a[i] = (uint8_t)rnd();
		return;
	}
	int len = alen(e->p.family);
	a->family = e->p.family;
	memcpy(a->a, e->p.addr, 16);
	uint8_t last[16];
	memcpy(last, e->p.addr, 16);
	for (int i = 0; i < len; i++) {
		int k = e->p.cidr - 8 * i;
		uint8_t m = k >= 8 ? 0xff : k <= 0 ? 0 : (uint8_t)(0xff00 >> k);

		last[i] |= (uint8_t)~m;
	}
	switch (rnd_below(5)) {
	case 0: /* first address */
		break;
	case 1: /* last address */
		memcpy(a->a, last, 16);
		break;
	case 2: /* one below the first */
		addr_step(a->a, len, -1);
		break;
	case 3: /* one past the last */
		memcpy(a->a, last, 16);
		addr_step(a->a, len, +1);
		break;
	default: /* anywhere inside */
		for (int i = 0; i < len; i++) {
			int k = e->p.cidr - 8 * i;
			uint8_t m = k >= 8 ? 0xff : k <= 0 ? 0 : (uint8_t)(0xff00 >> k);

			a->a[i] = (uint8_t)((e->p.addr[i] & m) | ((uint8_t)rnd() & ~m));
		}
	}
}

static void print_history(const struct diff *d, const struct addr *a)
{
	char b[MG_PREFIX_STRLEN];
	bool peers[DIFF_PEERS] = {false}, since_commit = false;

	fprintf(stderr, "  reference routes containing it:\n");
	for (uint32_t i = 0; i < d->ref.n; i++)
		if (ref_contains(&d->ref.v[i].p, a))
			fprintf(stderr, "    %s -> peer %u\n", fmt_prefix(&d->ref.v[i].p, b),
				d->ref.v[i].peer);
	for (uint32_t i = 0; i < d->n_log; i++)
		if (d->log[i].kind != OP_COMMIT && d->log[i].kind != OP_CLEAR &&
		    ref_contains(&d->log[i].p, a))
			peers[d->log[i].peer] = true;
	fprintf(stderr, "  history: ops on prefixes containing it, clears of their peers, "
			"commits after them (op#: op):\n");
	for (uint32_t i = 0; i < d->n_log; i++) {
		const struct op *o = &d->log[i];

		if (o->kind == OP_COMMIT) {
			if (since_commit)
				fprintf(stderr, "    %u: commit\n", i);
			since_commit = false;
		} else if (o->kind == OP_CLEAR) {
			if (peers[o->peer]) {
				fprintf(stderr, "    %u: clear_peer %u\n", i, o->peer);
				since_commit = true;
			}
		} else if (ref_contains(&o->p, a)) {
			fprintf(stderr, "    %u: %s %s peer %u\n", i,
				o->kind == OP_ADD ? "add" : "del", fmt_prefix(&o->p, b), o->peer);
			since_commit = true;
		}
	}
}

/* Reference routes that are not rules of t's LPMs, or with another peer. */
static void print_missing(const struct diff *d, const struct dp_route_tables *t)
{
	char b[MG_PREFIX_STRLEN];

	for (uint32_t i = 0; i < d->ref.n; i++) {
		const struct ref_route *e = &d->ref.v[i];
		uint32_t hop = UINT32_MAX;
		int rc;

		if (e->p.family == AF_INET) {
			uint32_t v = ((uint32_t)e->p.addr[0] << 24) |
				     ((uint32_t)e->p.addr[1] << 16) |
				     ((uint32_t)e->p.addr[2] << 8) | e->p.addr[3];
			rc = rte_lpm_is_rule_present(t->lpm4, v, e->p.cidr, &hop);
		} else {
			rc = rte_lpm6_is_rule_present(t->lpm6, e->p.addr, e->p.cidr, &hop);
		}
		if (rc != 1 || hop != e->peer)
			fprintf(stderr,
				"  %s -> peer %u: rte_lpm%s_is_rule_present %d, next hop %d\n",
				fmt_prefix(&e->p, b), e->peer, e->p.family == AF_INET ? "" : "6",
				rc, rc == 1 ? (int)hop : -1);
	}
}

static bool check_copy(struct diff *d, const struct dp_route_tables *t, const char *which,
		       const struct addr *probes, int n_probes)
{
	char b1[MG_ADDR_STRLEN], b2[MG_PREFIX_STRLEN];

	for (int k = 0; k < n_probes; k++) {
		const struct addr *a = &probes[k];
		int best = ref_lookup(&d->ref, a);
		int64_t want = best < 0 ? -1 : (int64_t)d->ref.v[best].peer;
		int64_t got = lookup(t, a);

		d->n_lookups++;
		if (got == want)
			continue;
		fprintf(stderr,
			"MISMATCH (seed %#" PRIx64 ", /0 %s, after op %u, commit #%u, %s copy):\n"
			"  lookup %s: got %s%" PRId64 ", reference says %s%" PRId64 "%s%s\n",
			d->seed, d->allow_default ? "allowed" : "excluded", d->n_log - 1,
			d->n_commits, which, fmt_addr(a, b1), got < 0 ? "miss " : "peer ", got,
			want < 0 ? "miss " : "peer ", want, best < 0 ? "" : " via ",
			best < 0 ? "" : fmt_prefix(&d->ref.v[best].p, b2));
		print_history(d, a);
		return false;
	}
	return true;
}

/* After a commit: both copies against the reference, then the count. */
static bool diff_verify(struct diff *d, const struct dp_route_tables *before)
{
	static struct addr probes[DIFF_PROBES];
	const struct dp_route_tables *now = dp_routes_active(d->r);

	for (int k = 0; k < DIFF_PROBES; k++)
		gen_probe(d, &probes[k]);
	if (!check_copy(d, now, "active", probes, DIFF_PROBES))
		return false;
	/* The copy that was active before has had the same batch applied. */
	if (before != now && !check_copy(d, before, "standby", probes, DIFF_PROBES))
		return false;
	if (dp_routes_count(d->r) != d->ref.n) {
		fprintf(stderr,
			"MISMATCH (seed %#" PRIx64 ", after op %u, commit #%u): "
			"dp_routes_count %u, reference has %u routes\n",
			d->seed, d->n_log - 1, d->n_commits, dp_routes_count(d->r), d->ref.n);
		print_missing(d, now);
		return false;
	}
	return true;
}

static bool diff_commit(struct diff *d)
{
	const struct dp_route_tables *before = dp_routes_active(d->r);

	log_op(d, OP_COMMIT, NULL, 0);
	d->n_commits++;
	if (dp_routes_commit(d->r, NULL) != 0) {
		fprintf(stderr, "dp_routes_commit failed\n");
		return false;
	}
	return diff_verify(d, before);
}

static bool diff_run(uint64_t seed, bool allow_default)
{
	struct diff d = {.n_peers = DIFF_PEERS, .allow_default = allow_default, .seed = seed};
	bool ok = true;

	rng = seed;
	d.r = routes_new(256, 4096);
	d.log = calloc(DIFF_OPS * 2 + 2, sizeof(*d.log));
	if (!d.log)
		abort();
	for (uint32_t i = 0; ok && i < DIFF_OPS; i++) {
		uint32_t what = rnd_below(1000);
		const struct ref_route *e = random_route(&d, 0);
		struct mg_prefix p;
		uint32_t peer;
		int rc = 0;

		if (what < 450 || (!e && what < 880)) {
			gen_prefix(&d, random_family(), &p);
			peer = rnd_below(d.n_peers);
			int j = ref_find(&d.ref, &p);
			d.n_replace += j >= 0 && d.ref.v[j].peer != peer;
			d.n_default += p.cidr == 0;
			rc = dp_routes_add(d.r, &p, peer);
			log_op(&d, OP_ADD, &p, peer);
			ref_add(&d.ref, &p, peer);
		} else if (what < 650) {
			/* Delete by the owner. */
			p = e->p;
			peer = e->peer;
			rc = dp_routes_del(d.r, &p, peer);
			log_op(&d, OP_DEL, &p, peer);
			ref_del(&d.ref, &p, peer);
		} else if (what < 800) {
			/* Delete by a peer that is not the owner (a former one if any). */
			p = e->p;
			if (!former_owner(&d, &p, e->peer, &peer))
				peer = other_peer(&d, e->peer);
			d.n_nonowner_del++;
			rc = dp_routes_del(d.r, &p, peer);
			log_op(&d, OP_DEL, &p, peer);
			ref_del(&d.ref, &p, peer);
		} else if (what < 850) {
			/* Delete something probably never added. */
			gen_prefix(&d, random_family(), &p);
			peer = rnd_below(d.n_peers);
			rc = dp_routes_del(d.r, &p, peer);
			log_op(&d, OP_DEL, &p, peer);
			ref_del(&d.ref, &p, peer);
		} else if (what < 880) {
			peer = rnd_below(4) ? e->peer : rnd_below(d.n_peers);
			d.n_clear++;
			rc = dp_routes_clear_peer(d.r, peer);
			log_op(&d, OP_CLEAR, NULL, peer);
			ref_clear_peer(&d.ref, peer);
		} else if (what < 910) {
			ok = diff_commit(&d);
		} else {
			/* Several ops of one kind in a row, then commit: bigger batches. */
			for (int k = 0; k < 20; k++) {
				gen_prefix(&d, random_family(), &p);
				peer = rnd_below(d.n_peers);
				d.n_default += p.cidr == 0;
				if (dp_routes_add(d.r, &p, peer))
					rc = -1;
				log_op(&d, OP_ADD, &p, peer);
				ref_add(&d.ref, &p, peer);
			}
			i += 19;
		}
		if (rc) {
			fprintf(stderr, "op %u returned %d\n", d.n_log - 1, rc);
			ok = false;
		}
	}
	if (ok)
		ok = diff_commit(&d);
	/* Empty everything peer by peer: both must end with no routes. */
	for (uint32_t peer = 0; ok && peer < d.n_peers; peer++) {
		if (dp_routes_clear_peer(d.r, peer))
			ok = false;
		log_op(&d, OP_CLEAR, NULL, peer);
		ref_clear_peer(&d.ref, peer);
	}
	if (ok)
		ok = diff_commit(&d) && dp_routes_count(d.r) == 0;
	printf("  seed %#" PRIx64 ", /0 %s: %u ops, %u commits, %" PRIu64
	       " lookups, %u owner changes, %u non-owner dels, %u clears, %u /0 adds: %s\n",
	       seed, allow_default ? "allowed " : "excluded", d.n_log, d.n_commits, d.n_lookups,
	       d.n_replace, d.n_nonowner_del, d.n_clear, d.n_default, ok ? "ok" : "MISMATCH");
	dp_routes_destroy(d.r);
	free(d.ref.v);
	free(d.log);
	return ok;
}

static void test_differential(void)
{
	static const uint64_t seeds[] = {0x5eed0001, 0x6d657368, 0xc0ffee};

	printf("differential test against a naive reference (%d peers, %d ops, %d probes per "
	       "commit, both copies):\n",
	       DIFF_PEERS, DIFF_OPS, DIFF_PROBES);
	/* Without /0 first, so a /0 problem cannot hide everything else. */
	for (size_t i = 0; i < RTE_DIM(seeds); i++)
		CHECK(diff_run(seeds[i], false));
	for (size_t i = 0; i < RTE_DIM(seeds); i++)
		CHECK(diff_run(seeds[i], true));
}

/* ---- 2. Table cases ---- */

static int add_s(struct dp_routes *r, const char *s, uint32_t peer)
{
	struct mg_prefix p = pfx(s);

	return dp_routes_add(r, &p, peer);
}

static int del_s(struct dp_routes *r, const char *s, uint32_t peer)
{
	struct mg_prefix p = pfx(s);

	return dp_routes_del(r, &p, peer);
}

static int commit(struct dp_routes *r)
{
	return dp_routes_commit(r, NULL);
}

static void test_default_route(void)
{
	struct dp_routes *r = routes_new(16, 64);

	printf("default routes 0.0.0.0/0 and ::/0\n");
	CHECK(add_s(r, "0.0.0.0/0", 1) == 0);
	CHECK(add_s(r, "::/0", 2) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 2);
	CHECK(lookup_s(r, "0.0.0.0") == 1);
	CHECK(lookup_s(r, "1.2.3.4") == 1);
	CHECK(lookup_s(r, "255.255.255.255") == 1);
	CHECK(lookup_s(r, "::") == 2);
	CHECK(lookup_s(r, "2001:db8::1") == 2);
	CHECK(lookup_s(r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == 2);

	/* A more specific route under the default, then removed again. */
	CHECK(add_s(r, "10.0.0.0/8", 3) == 0);
	CHECK(add_s(r, "fd00::/8", 4) == 0);
	CHECK(commit(r) == 0);
	CHECK(lookup_s(r, "10.9.9.9") == 3);
	CHECK(lookup_s(r, "11.0.0.0") == 1);
	CHECK(lookup_s(r, "fd12::1") == 4);
	CHECK(lookup_s(r, "fe00::") == 2);
	CHECK(del_s(r, "10.0.0.0/8", 3) == 0);
	CHECK(del_s(r, "fd00::/8", 4) == 0);
	CHECK(commit(r) == 0);
	CHECK(lookup_s(r, "10.9.9.9") == 1);
	CHECK(lookup_s(r, "fd12::1") == 2);

	CHECK(del_s(r, "0.0.0.0/0", 1) == 0);
	CHECK(del_s(r, "::/0", 2) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 0);
	CHECK(lookup_s(r, "1.2.3.4") == -1);
	CHECK(lookup_s(r, "2001:db8::1") == -1);
	dp_routes_destroy(r);
}

static void test_host_routes(void)
{
	struct dp_routes *r = routes_new(16, 64);

	printf("host routes /32 and /128, their neighbours, the largest peer id\n");
	CHECK(add_s(r, "192.0.2.7/32", 3) == 0);
	CHECK(add_s(r, "2001:db8::7/128", 15) == 0);
	CHECK(add_s(r, "255.255.255.255/32", 5) == 0);
	CHECK(add_s(r, "0.0.0.0/32", 6) == 0);
	CHECK(add_s(r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 7) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 5);
	CHECK(lookup_s(r, "192.0.2.7") == 3);
	CHECK(lookup_s(r, "192.0.2.6") == -1);
	CHECK(lookup_s(r, "192.0.2.8") == -1);
	CHECK(lookup_s(r, "2001:db8::7") == 15);
	CHECK(lookup_s(r, "2001:db8::6") == -1);
	CHECK(lookup_s(r, "2001:db8::8") == -1);
	CHECK(lookup_s(r, "2001:db8:0:0:8000::7") == -1);
	CHECK(lookup_s(r, "255.255.255.255") == 5);
	CHECK(lookup_s(r, "255.255.255.254") == -1);
	CHECK(lookup_s(r, "0.0.0.0") == 6);
	CHECK(lookup_s(r, "0.0.0.1") == -1);
	CHECK(lookup_s(r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == 7);
	CHECK(lookup_s(r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe") == -1);
	dp_routes_destroy(r);
}

static void test_overlap(void)
{
	struct dp_routes *r = routes_new(16, 64);

	printf("overlapping prefixes: longest match, and deleting either one\n");
	CHECK(add_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(add_s(r, "10.1.0.0/16", 2) == 0);
	CHECK(add_s(r, "2001:db8::/32", 1) == 0);
	CHECK(add_s(r, "2001:db8:1::/48", 2) == 0);
	CHECK(lookup_s(r, "10.1.2.3") == -1); /* nothing before the commit */
	CHECK(dp_routes_count(r) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 4);
	CHECK(lookup_s(r, "10.1.2.3") == 2);
	CHECK(lookup_s(r, "10.1.0.0") == 2);
	CHECK(lookup_s(r, "10.1.255.255") == 2);
	CHECK(lookup_s(r, "10.0.255.255") == 1);
	CHECK(lookup_s(r, "10.2.0.0") == 1);
	CHECK(lookup_s(r, "10.255.255.255") == 1);
	CHECK(lookup_s(r, "9.255.255.255") == -1);
	CHECK(lookup_s(r, "11.0.0.0") == -1);
	CHECK(lookup_s(r, "2001:db8:1::5") == 2);
	CHECK(lookup_s(r, "2001:db8:1:ffff:ffff:ffff:ffff:ffff") == 2);
	CHECK(lookup_s(r, "2001:db8:2::") == 1);
	CHECK(lookup_s(r, "2001:db8:0:ffff:ffff:ffff:ffff:ffff") == 1);
	CHECK(lookup_s(r, "2001:db9::") == -1);

	/* Deleting the more specific falls back to the less specific. */
	CHECK(del_s(r, "10.1.0.0/16", 2) == 0);
	CHECK(del_s(r, "2001:db8:1::/48", 2) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 2);
	CHECK(lookup_s(r, "10.1.2.3") == 1);
	CHECK(lookup_s(r, "2001:db8:1::5") == 1);

	/* Deleting the less specific leaves the more specific alone. */
	CHECK(add_s(r, "10.1.0.0/16", 2) == 0);
	CHECK(add_s(r, "2001:db8:1::/48", 2) == 0);
	CHECK(del_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(del_s(r, "2001:db8::/32", 1) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 2);
	CHECK(lookup_s(r, "10.1.2.3") == 2);
	CHECK(lookup_s(r, "10.2.0.0") == -1);
	CHECK(lookup_s(r, "2001:db8:1::5") == 2);
	CHECK(lookup_s(r, "2001:db8:2::") == -1);

	/* Same address, different lengths, different peers. */
	CHECK(add_s(r, "10.1.0.0/24", 3) == 0);
	CHECK(add_s(r, "10.1.0.0/25", 4) == 0);
	CHECK(add_s(r, "10.1.0.0/32", 5) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 5);
	CHECK(lookup_s(r, "10.1.0.0") == 5);
	CHECK(lookup_s(r, "10.1.0.1") == 4);
	CHECK(lookup_s(r, "10.1.0.128") == 3);
	CHECK(lookup_s(r, "10.1.1.0") == 2);
	dp_routes_destroy(r);
}

static void test_owner(void)
{
	struct dp_routes *r = routes_new(16, 64);

	printf("a prefix has one owner: replacing it, deletes and clears by the former owner\n");
	CHECK(add_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(add_s(r, "fd00::/16", 1) == 0);
	CHECK(commit(r) == 0);
	CHECK(lookup_s(r, "10.1.2.3") == 1);
	CHECK(add_s(r, "10.0.0.0/8", 3) == 0);
	CHECK(add_s(r, "fd00::/16", 3) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 2);
	CHECK(lookup_s(r, "10.1.2.3") == 3);
	CHECK(lookup_s(r, "fd00::1") == 3);

	/* The former owner deletes it: nothing happens. */
	CHECK(del_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(del_s(r, "fd00::/16", 1) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 2);
	CHECK(lookup_s(r, "10.1.2.3") == 3);
	CHECK(lookup_s(r, "fd00::1") == 3);

	/* Taken over again, then the one who lost it is cleared. */
	CHECK(add_s(r, "10.0.0.0/8", 4) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_clear_peer(r, 3) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 1);
	CHECK(lookup_s(r, "10.1.2.3") == 4);
	CHECK(lookup_s(r, "fd00::1") == -1);

	/* Owner change and former owner's delete in one batch, both orders. */
	CHECK(add_s(r, "10.0.0.0/8", 5) == 0);
	CHECK(del_s(r, "10.0.0.0/8", 4) == 0);
	CHECK(commit(r) == 0);
	CHECK(lookup_s(r, "10.1.2.3") == 5);
	CHECK(del_s(r, "10.0.0.0/8", 5) == 0);
	CHECK(add_s(r, "10.0.0.0/8", 6) == 0);
	CHECK(commit(r) == 0);
	CHECK(lookup_s(r, "10.1.2.3") == 6);
	CHECK(dp_routes_count(r) == 1);

	/* Add and delete in the same batch cancel out. */
	CHECK(add_s(r, "192.168.0.0/16", 7) == 0);
	CHECK(del_s(r, "192.168.0.0/16", 7) == 0);
	CHECK(commit(r) == 0);
	CHECK(lookup_s(r, "192.168.1.1") == -1);
	CHECK(dp_routes_count(r) == 1);

	/* The owner deletes it. */
	CHECK(del_s(r, "10.0.0.0/8", 6) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 0);
	CHECK(lookup_s(r, "10.1.2.3") == -1);
	dp_routes_destroy(r);
}

static void test_count_and_args(void)
{
	struct dp_routes *r = routes_new(16, 64);
	struct mg_prefix bad = pfx("10.0.0.0/8");

	printf("dp_routes_count, clear_peer, argument checks\n");
	CHECK(dp_routes_count(r) == 0);
	CHECK(add_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(add_s(r, "10.0.0.0/8", 1) == 0); /* again, same peer */
	CHECK(add_s(r, "10.2.0.0/16", 1) == 0);
	CHECK(add_s(r, "fd00::/8", 1) == 0);
	CHECK(add_s(r, "fd00:1::/32", 2) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 4);
	CHECK(del_s(r, "172.16.0.0/12", 1) == 0); /* never added */
	CHECK(del_s(r, "fd00:1::/32", 1) == 0);	  /* not the owner */
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 4);
	CHECK(dp_routes_clear_peer(r, 1) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 1);
	CHECK(lookup_s(r, "10.0.0.1") == -1);
	CHECK(lookup_s(r, "fd00::1") == -1);
	CHECK(lookup_s(r, "fd00:1::1") == 2);
	CHECK(dp_routes_clear_peer(r, 1) == 0); /* nothing left to clear */
	CHECK(dp_routes_clear_peer(r, 2) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 0);

	CHECK(dp_routes_add(r, &bad, 16) == -EINVAL);
	CHECK(dp_routes_del(r, &bad, 16) == -EINVAL);
	CHECK(dp_routes_clear_peer(r, 16) == -EINVAL);
	CHECK(dp_routes_clear_peer(r, UINT32_MAX) == -EINVAL);
	bad.family = 0;
	CHECK(dp_routes_add(r, &bad, 1) == -EINVAL);
	CHECK(dp_routes_add(r, &bad, 15) == -EINVAL);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_count(r) == 0);
	dp_routes_destroy(r);
}

/* ---- 3. The two copies ---- */

struct expect {
	const char *addr;
	int64_t peer;
};

static bool check_expect(const struct dp_route_tables *t, const struct expect *e, size_t n)
{
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		struct addr a = ip(e[i].addr);
		int64_t got = lookup(t, &a);

		if (got != e[i].peer) {
			fprintf(stderr, "  %s: got %" PRId64 ", want %" PRId64 "\n", e[i].addr, got,
				e[i].peer);
			ok = false;
		}
	}
	return ok;
}

static void test_copies(void)
{
	static const struct expect e1[] = {
		{"10.1.2.3", 2}, {"10.2.0.0", 1}, {"fd00::1", 3}, {"192.0.2.1", -1},
	};
	static const struct expect e2[] = {
		{"10.1.2.3", 1}, {"10.2.0.0", 1}, {"fd00::1", 3},
		{"192.0.2.1", 4}, {"fd01::1", 5},
	};
	static const struct expect e3[] = {
		{"10.1.2.3", 6}, {"10.2.0.0", -1}, {"fd00::1", 3},
		{"192.0.2.1", 4}, {"fd01::1", -1},
	};
	struct dp_routes *r = routes_new(16, 64);
	const struct dp_route_tables *t0 = dp_routes_active(r), *t1, *t2;

	printf("both copies: empty commit, no-op commit, commits back to back\n");
	CHECK(add_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(add_s(r, "10.1.0.0/16", 2) == 0);
	CHECK(add_s(r, "fd00::/16", 3) == 0);
	CHECK(commit(r) == 0);
	t1 = dp_routes_active(r);
	CHECK(t1 != t0);
	CHECK(check_expect(t1, e1, RTE_DIM(e1)));
	CHECK(check_expect(t0, e1, RTE_DIM(e1)));

	/* An empty batch changes nothing. */
	CHECK(commit(r) == 0);
	CHECK(dp_routes_active(r) == t1);
	CHECK(check_expect(dp_routes_active(r), e1, RTE_DIM(e1)));
	CHECK(dp_routes_count(r) == 3);

	/* A batch without effect still swaps: the other copy must agree. */
	CHECK(del_s(r, "203.0.113.0/24", 1) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_active(r) == t0);
	CHECK(check_expect(dp_routes_active(r), e1, RTE_DIM(e1)));
	CHECK(dp_routes_count(r) == 3);

	/* Two commits in a row, each batch applied to both copies. */
	CHECK(del_s(r, "10.1.0.0/16", 2) == 0);
	CHECK(add_s(r, "192.0.2.0/24", 4) == 0);
	CHECK(commit(r) == 0);
	CHECK(add_s(r, "fd01::/16", 5) == 0);
	CHECK(commit(r) == 0);
	t2 = dp_routes_active(r);
	CHECK(check_expect(t0, e2, RTE_DIM(e2)));
	CHECK(check_expect(t1, e2, RTE_DIM(e2)));
	CHECK(dp_routes_count(r) == 4);

	CHECK(add_s(r, "10.1.0.0/16", 6) == 0);
	CHECK(del_s(r, "10.0.0.0/8", 1) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_clear_peer(r, 5) == 0);
	CHECK(commit(r) == 0);
	CHECK(dp_routes_active(r) == t2);
	CHECK(check_expect(t0, e3, RTE_DIM(e3)));
	CHECK(check_expect(t1, e3, RTE_DIM(e3)));
	CHECK(dp_routes_count(r) == 3);

	/* And once more through no-op commits, reading only the active copy. */
	for (int i = 0; i < 3; i++) {
		CHECK(del_s(r, "203.0.113.0/24", 1) == 0);
		CHECK(commit(r) == 0);
		CHECK(check_expect(dp_routes_active(r), e3, RTE_DIM(e3)));
	}
	dp_routes_destroy(r);
}

/* ---- 4. Capacity: max_rules host routes ---- */

static void test_capacity(void)
{
	enum { M = 512 };
	struct dp_routes *r = routes_new(M, M);
	struct mg_prefix p4 = pfx("10.0.0.0/32"), p6 = pfx("fd00:1:2:3::/128");
	uint8_t v6[M][16];
	int miss4 = 0, miss6 = 0;

	printf("capacity: max_rules = %d, %d /32 and %d /128 host routes (random interface ids "
	       "in one /64), in separate tables of one dp_routes\n",
	       M, M, M);
	rng = 0xcafe;
	for (uint32_t i = 0; i < M; i++) {
		p4.addr[2] = (uint8_t)(i >> 8);
		p4.addr[3] = (uint8_t)i;
		CHECK(dp_routes_add(r, &p4, i) == 0);
		for (int b = 8; b < 16; b++)
			p6.addr[b] = (uint8_t)rnd();
		memcpy(v6[i], p6.addr, 16);
		CHECK(dp_routes_add(r, &p6, i) == 0);
	}
	CHECK(commit(r) == 0);
	for (uint32_t i = 0; i < M; i++) {
		struct addr a = {.family = AF_INET, .a = {10, 0, (uint8_t)(i >> 8), (uint8_t)i}};

		miss4 += lookup(dp_routes_active(r), &a) != i;
		a.family = AF_INET6;
		memcpy(a.a, v6[i], 16);
		miss6 += lookup(dp_routes_active(r), &a) != i;
	}
	printf("  installed: count %u of %d; lookups wrong: %d IPv4, %d IPv6\n", dp_routes_count(r),
	       2 * M, miss4, miss6);
	CHECK(miss4 == 0);
	CHECK(miss6 == 0);
	CHECK(dp_routes_count(r) == 2 * M);
	dp_routes_destroy(r);
}

/* ---- 5. Readers during commits (RCU) ---- */

struct reader {
	struct dp_routes *r;
	struct rte_rcu_qsbr *rcu;
	volatile bool stop;
	volatile bool online;
	uint64_t iters, bad;
	char first_bad[160];
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	const struct addr fixed4 = ip("10.200.1.1"), toggle4 = ip("10.201.1.1");
	const struct addr move4 = ip("10.202.1.1"), move6 = ip("fd00:202::1");

	rte_rcu_qsbr_thread_register(rd->rcu, 1);
	rte_rcu_qsbr_thread_online(rd->rcu, 1);
	__atomic_store_n(&rd->online, true, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&rd->stop, __ATOMIC_ACQUIRE)) {
		const struct dp_route_tables *t = dp_routes_active(rd->r);
		int64_t f = lookup(t, &fixed4), g = lookup(t, &toggle4);
		int64_t m4 = lookup(t, &move4), m6 = lookup(t, &move6);

		if (f != 1 || g < 2 || g > 9 || (m4 != 20 && m4 != 21) || (m6 != 20 && m6 != 21)) {
			if (!rd->bad++)
				snprintf(rd->first_bad, sizeof(rd->first_bad),
					 "fixed %" PRId64 " toggle %" PRId64 " move4 %" PRId64
					 " move6 %" PRId64,
					 f, g, m4, m6);
		}
		rd->iters++;
		rte_rcu_qsbr_quiescent(rd->rcu, 1);
	}
	rte_rcu_qsbr_thread_offline(rd->rcu, 1);
	rte_rcu_qsbr_thread_unregister(rd->rcu, 1);
	return NULL;
}

static cpu_set_t all_cpus;

static void test_rcu_readers(void)
{
	enum { COMMITS = 400 };
	size_t sz = rte_rcu_qsbr_get_memsize(2);
	struct reader rd = {.r = routes_new(32, 1024)};
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	printf("a reader thread under RCU during %d commits: fixed route, owner toggled, "
	       "prefix moved (del + add in one batch), churn\n",
	       COMMITS);
	rd.rcu = rte_zmalloc("route_rcu", sz, RTE_CACHE_LINE_SIZE);
	if (!CHECK(rd.rcu != NULL) || !CHECK(rte_rcu_qsbr_init(rd.rcu, 2) == 0))
		goto out;
	CHECK(add_s(rd.r, "10.200.0.0/16", 1) == 0);
	CHECK(add_s(rd.r, "10.201.0.0/16", 2) == 0);
	CHECK(add_s(rd.r, "10.202.0.0/16", 20) == 0);
	CHECK(add_s(rd.r, "fd00:202::/32", 20) == 0);
	CHECK(dp_routes_commit(rd.r, rd.rcu) == 0);

	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof(all_cpus), &all_cpus);
	rc = pthread_create(&th, &attr, reader_main, &rd);
	pthread_attr_destroy(&attr);
	if (!CHECK(rc == 0))
		goto out;
	while (!__atomic_load_n(&rd.online, __ATOMIC_ACQUIRE))
		sched_yield();

	rng = 0xbeef;
	for (int i = 0; i < COMMITS; i++) {
		bool wide = i & 1;
		struct mg_prefix churn = {.family = AF_INET, .cidr = 24};

		/* The prefix moves between peers and lengths; some route always covers it. */
		CHECK(del_s(rd.r, wide ? "10.202.0.0/16" : "10.202.0.0/15", wide ? 20 : 21) == 0);
		CHECK(del_s(rd.r, wide ? "fd00:202::/32" : "fd00:202::/31", wide ? 20 : 21) == 0);
		/* Churn on peers 10..15, bounded well below max_rules. */
		for (int k = 0; k < 16; k++) {
			churn.addr[0] = 172;
			churn.addr[1] = (uint8_t)(16 + rnd_below(16));
			churn.addr[2] = (uint8_t)rnd();
			CHECK(dp_routes_add(rd.r, &churn, 10 + rnd_below(6)) == 0);
		}
		CHECK(dp_routes_clear_peer(rd.r, 10 + rnd_below(6)) == 0);
		CHECK(add_s(rd.r, wide ? "10.202.0.0/15" : "10.202.0.0/16", wide ? 21 : 20) == 0);
		CHECK(add_s(rd.r, wide ? "fd00:202::/31" : "fd00:202::/32", wide ? 21 : 20) == 0);
		CHECK(add_s(rd.r, "10.201.0.0/16", 2 + (uint32_t)i % 8) == 0);
		CHECK(dp_routes_commit(rd.r, rd.rcu) == 0);
	}
	__atomic_store_n(&rd.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	printf("  reader: %" PRIu64 " iterations, %" PRIu64 " wrong%s%s; %u routes at the end\n",
	       rd.iters, rd.bad, rd.bad ? ", first: " : "", rd.first_bad, dp_routes_count(rd.r));
	CHECK(rd.bad == 0);
	CHECK(rd.iters > 0);
out:
	rte_free(rd.rcu);
	dp_routes_destroy(rd.r);
}

int main(int argc, char **argv)
{
	char prefix[64];
	char *eal_argv[] = {argv[0], "--no-huge", "-m", "1024", "--no-pci", "--no-shconf",
			    prefix, "--log-level=*:warning", "-l", "0", NULL};

	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	sched_getaffinity(0, sizeof(all_cpus), &all_cpus);
	snprintf(prefix, sizeof(prefix), "--file-prefix=routetest%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(eal_argv) - 1, eal_argv) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}

	test_default_route();
	test_host_routes();
	test_overlap();
	test_owner();
	test_count_and_args();
	test_copies();
	test_capacity();
	test_rcu_readers();
	test_differential();

	printf("%d checks passed, %d failed\n", n_pass, n_fail);
	rte_eal_cleanup();
	return n_fail ? 1 : 0;
}
