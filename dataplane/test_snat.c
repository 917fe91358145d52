/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for snat.c. The main test is differential: random flows from
 * tunnel hosts to LAN hosts (TCP, UDP, ICMP echo; IPv4 and IPv6) on
 * several workers, each packet translated out and its reply translated
 * back, against a deliberately naive reference (per worker, an array
 * port -> flow, searched linearly). Every translated packet's checksums
 * are recomputed from scratch and compared. Then ICMP errors quoting a
 * translated packet, expiry and revival, the table-full drop, packets
 * SNAT passes or drops, and a reader translating replies while the owner
 * keeps reusing slots (no torn entry may ever be used).
 * EAL runs without hugepages or devices.
 */
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ip.h>

#include "snat.h"

static int n_pass, n_fail;

#define CHECK(cond) check((cond), #cond, __func__, __LINE__)

static bool check(bool ok, const char *what, const char *func, int line)
{
	if (ok) {
		n_pass++;
		return true;
	}
	n_fail++;
	if (n_fail < 50)
		fprintf(stderr, "FAIL %s:%d: %s\n", func, line, what);
	return false;
}

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

#define HZ 1000u /* test TSC ticks per second */

static const uint8_t NAT4[4] = {10, 88, 0, 254};
static const uint8_t NAT6[16] = {0xfd, 0x88, [15] = 0xfe};

static struct mg_snat_conf conf(uint16_t lo, uint16_t hi)
{
	return (struct mg_snat_conf){
	    .enabled = true,
	    .port_min = lo,
	    .port_max = hi,
	    .max_entries = 1u << 20,
	    .tcp_established_timeout = 7200,
	    .tcp_transitory_timeout = 120,
	    .udp_timeout = 120,
	    .icmp_timeout = 30,
	};
}

static struct dp_snat *make(const struct mg_snat_conf *c, unsigned workers)
{
	uint32_t a4;

	memcpy(&a4, NAT4, 4);
	struct dp_snat *s = dp_snat_create(c, workers, HZ, a4, NAT6, 0);
	if (!s) {
		fprintf(stderr, "dp_snat_create: %s\n", rte_strerror(rte_errno));
		exit(1);
	}
	return s;
}

/* ---- packets ---- */

struct flow {
	uint8_t family, proto;
	uint8_t src[16], dst[16];
	uint16_t sport, dport; /* host order; sport is the echo id for ICMP */
};

#define PKT_MAX 256

static size_t alen(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

static size_t ip_hlen(uint8_t family)
{
	return family == AF_INET ? 20 : 40;
}

static uint8_t icmp_proto(uint8_t family)
{
	return family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The L4 checksum, computed from scratch (the field is ignored). */
static uint16_t l4_cksum(const uint8_t *ip, uint32_t len)
{
	uint8_t buf[PKT_MAX];
	uint32_t hl = (ip[0] >> 4) == 4 ? (uint32_t)(ip[0] & 0xf) * 4 : 40;
	uint8_t proto = (ip[0] >> 4) == 4 ? ip[9] : ip[6];
	uint32_t off = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;

	memcpy(buf, ip, len);
	memset(buf + hl + off, 0, 2);
	if (proto == IPPROTO_ICMP)
		return (uint16_t)~rte_raw_cksum(buf + hl, len - hl);
	if ((ip[0] >> 4) == 4)
		return rte_ipv4_udptcp_cksum((const struct rte_ipv4_hdr *)buf, buf + hl);
	return rte_ipv6_udptcp_cksum((const struct rte_ipv6_hdr *)buf, buf + 40);
}

static void fill_cksums(uint8_t *ip, uint32_t len)
{
	uint32_t hl = (ip[0] >> 4) == 4 ? 20 : 40;
	uint8_t proto = (ip[0] >> 4) == 4 ? ip[9] : ip[6];
	uint32_t off = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;

	if ((ip[0] >> 4) == 4) {
		memset(ip + 10, 0, 2);
		uint16_t c = rte_ipv4_cksum((const struct rte_ipv4_hdr *)ip);
		memcpy(ip + 10, &c, 2);
	}
	uint16_t c = l4_cksum(ip, len);
	memcpy(ip + hl + off, &c, 2);
}

/* Whether every checksum of the packet equals its recomputation. */
static bool cksums_ok(const uint8_t *ip, uint32_t len)
{
	uint32_t hl = (ip[0] >> 4) == 4 ? 20 : 40;
	uint8_t proto = (ip[0] >> 4) == 4 ? ip[9] : ip[6];
	uint32_t off = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;
	uint16_t have, want;

	if ((ip[0] >> 4) == 4) {
		uint8_t h[20];
		memcpy(h, ip, 20);
		memset(h + 10, 0, 2);
		want = rte_ipv4_cksum((const struct rte_ipv4_hdr *)h);
		memcpy(&have, ip + 10, 2);
		if (have != want)
			return false;
	}
	memcpy(&have, ip + hl + off, 2);
	want = l4_cksum(ip, len);
	/* 0 and 0xffff are the same one's-complement number; DPDK picks 0xffff. */
	return have == want || ((have == 0 || have == 0xffff) && (want == 0 || want == 0xffff));
}

/* An IP packet of flow f (src -> dst); ICMP: type, else TCP flags. */
static uint32_t build(uint8_t *ip, const struct flow *f, uint8_t type_or_flags, uint32_t payload)
{
	uint32_t hl = (uint32_t)ip_hlen(f->family);
	uint32_t l4 = f->proto == IPPROTO_TCP ? 20 : 8;
	uint32_t len = hl + l4 + payload;

	memset(ip, 0, len);
	if (f->family == AF_INET) {
		ip[0] = 0x45;
		put16(ip + 2, (uint16_t)len);
		ip[6] = 0x40; /* DF */
		ip[8] = 64;
		ip[9] = f->proto;
		memcpy(ip + 12, f->src, 4);
		memcpy(ip + 16, f->dst, 4);
	} else {
		ip[0] = 0x60;
		put16(ip + 4, (uint16_t)(len - 40));
		ip[6] = f->proto;
		ip[7] = 64;
		memcpy(ip + 8, f->src, 16);
		memcpy(ip + 24, f->dst, 16);
	}
	uint8_t *p = ip + hl;
	if (f->proto == IPPROTO_TCP) {
		put16(p, f->sport);
		put16(p + 2, f->dport);
		put16(p + 4, (uint16_t)rnd());
		p[12] = 0x50;
		p[13] = type_or_flags;
		put16(p + 14, 65535);
	} else if (f->proto == IPPROTO_UDP) {
		put16(p, f->sport);
		put16(p + 2, f->dport);
		put16(p + 4, (uint16_t)(8 + payload));
	} else {
		p[0] = type_or_flags;
		put16(p + 4, f->sport);
		put16(p + 6, (uint16_t)rnd());
	}
	for (uint32_t i = 0; i < payload; i++)
		p[l4 + i] = (uint8_t)rnd();
	fill_cksums(ip, len);
	return len;
}

static const uint8_t *pkt_src(const uint8_t *ip)
{
	return (ip[0] >> 4) == 4 ? ip + 12 : ip + 8;
}

static const uint8_t *pkt_dst(const uint8_t *ip)
{
	return (ip[0] >> 4) == 4 ? ip + 16 : ip + 24;
}

static const uint8_t *nat_addr(uint8_t family)
{
	return family == AF_INET ? NAT4 : NAT6;
}

/* ---- the reference: per worker, port -> the flow that last got it ---- */

#define REF_PORTS 64

struct ref_entry {
	bool used;
	struct flow f;
	uint8_t state; /* as snat.c: 0 none, 1 syn, 2 established, 3 closing */
	uint64_t last;
};

struct ref {
	unsigned workers;
	uint16_t port_min;
	uint32_t slice;
	struct ref_entry e[8][REF_PORTS];
	uint64_t scan_after[8]; /* a full table fails fast until then (1 ms) */
	uint64_t timeout[4];	/* tcp est, tcp trans, udp, icmp */
};

static bool flow_eq(const struct flow *a, const struct flow *b)
{
	size_t n = alen(a->family);
	return a->family == b->family && a->proto == b->proto && a->sport == b->sport &&
	       a->dport == b->dport && !memcmp(a->src, b->src, n) && !memcmp(a->dst, b->dst, n);
}

static uint64_t ref_timeout(const struct ref *r, const struct ref_entry *e)
{
	if (e->f.proto == IPPROTO_TCP)
		return e->state == 2 ? r->timeout[0] : r->timeout[1];
	return e->f.proto == IPPROTO_UDP ? r->timeout[2] : r->timeout[3];
}

static bool ref_expired(const struct ref *r, const struct ref_entry *e, uint64_t now)
{
	return !e->used || (now > e->last && now - e->last > ref_timeout(r, e));
}

static uint8_t ref_tcp_state(uint8_t st, uint8_t flags)
{
	if (flags & 0x05)
		return 3;
	if ((flags & 0x12) == 0x02)
		return 1;
	if (st == 1 && (flags & 0x10))
		return 2;
	return st;
}

static bool ref_opens(const struct flow *f, uint8_t t)
{
	if (f->proto == IPPROTO_TCP)
		return (t & 0x16) == 0x02;
	if (f->proto == IPPROTO_UDP)
		return true;
	return t == (f->family == AF_INET ? 8 : 128);
}

static void ref_touch(struct ref_entry *e, uint64_t now)
{
	if (now > e->last + HZ)
		e->last = now;
}

/* Forward packet: the expected outcome; *port the expected NAT port, or
 * -1 meaning "any free port of the worker" (then *free_ok lists them). */
enum { EXP_TRANSLATE, EXP_PASS, EXP_FULL };

static int ref_out(struct ref *r, unsigned w, const struct flow *f, uint8_t t, uint64_t now,
		   int *slot)
{
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP && !ref_opens(f, t))
		return EXP_PASS; /* echo replies: only LAN-originated pings have them */
	for (uint32_t i = 0; i < r->slice; i++) {
		struct ref_entry *e = &r->e[w][i];
		if (!e->used || !flow_eq(&e->f, f))
			continue;
		bool exp = ref_expired(r, e, now);
		if (exp && !ref_opens(f, t))
			return EXP_PASS;
		if (f->proto == IPPROTO_TCP)
			e->state = ref_tcp_state(e->state, t);
		if (exp)
			e->last = now;
		else
			ref_touch(e, now);
		*slot = (int)i;
		return EXP_TRANSLATE;
	}
	if (!ref_opens(f, t))
		return EXP_PASS;
	*slot = -1;
	for (uint32_t i = 0; i < r->slice; i++)
		if (!r->e[w][i].used ||
		    (now >= r->scan_after[w] && ref_expired(r, &r->e[w][i], now)))
			return EXP_TRANSLATE;
	if (now >= r->scan_after[w])
		r->scan_after[w] = now + HZ / 1000;
	return EXP_FULL;
}

static void ref_take(struct ref *r, unsigned w, int slot, const struct flow *f, uint8_t t,
		     uint64_t now)
{
	struct ref_entry *e = &r->e[w][slot];
	e->used = true;
	e->f = *f;
	e->state = f->proto == IPPROTO_TCP ? ref_tcp_state(0, t) : 0;
	e->last = now;
}

/* ---- the differential test ---- */

static void random_flow(struct flow *f)
{
	static const uint8_t protos[] = {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP};

	memset(f, 0, sizeof(*f));
	f->family = rnd_below(3) ? AF_INET : AF_INET6;
	f->proto = protos[rnd_below(3)];
	if (f->proto == IPPROTO_ICMP)
		f->proto = icmp_proto(f->family);
	if (f->family == AF_INET) {
		uint8_t s[4] = {10, 99, 0, (uint8_t)(2 + rnd_below(4))};
		uint8_t d[4] = {10, 88, 0, (uint8_t)(1 + rnd_below(3))};
		memcpy(f->src, s, 4);
		memcpy(f->dst, d, 4);
	} else {
		uint8_t s[16] = {0xfd, 0x99, [15] = (uint8_t)(2 + rnd_below(4))};
		uint8_t d[16] = {0xfd, 0x88, [15] = (uint8_t)(1 + rnd_below(3))};
		memcpy(f->src, s, 16);
		memcpy(f->dst, d, 16);
	}
	f->sport = (uint16_t)(1000 + rnd_below(6));
	f->dport = f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6
		       ? 0
		       : (uint16_t)(80 + rnd_below(3));
}

static uint8_t random_type(const struct flow *f)
{
	static const uint8_t tcp[] = {0x02, 0x02, 0x10, 0x10, 0x18, 0x11, 0x04, 0x12};

	if (f->proto == IPPROTO_TCP)
		return tcp[rnd_below(sizeof(tcp))];
	if (f->proto == IPPROTO_UDP)
		return 0;
	return f->family == AF_INET ? (rnd_below(8) ? 8 : 0) : (rnd_below(8) ? 128 : 129);
}

/* The reply a LAN host sends to a translated packet of f on port nat. */
static uint32_t build_reply(uint8_t *ip, const struct flow *f, uint16_t nat, uint32_t payload)
{
	struct flow r = {.family = f->family, .proto = f->proto, .sport = f->dport, .dport = nat};
	memcpy(r.src, f->dst, 16);
	memcpy(r.dst, nat_addr(f->family), alen(f->family));
	if (f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6) {
		r.sport = nat;
		return build(ip, &r, f->family == AF_INET ? 0 : 129, payload);
	}
	return build(ip, &r, 0x12, payload);
}

static void check_out(const uint8_t *pkt, uint32_t len, const struct flow *f, uint16_t port)
{
	const uint8_t *l4 = pkt + ip_hlen(f->family);
	bool icmp = f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6;

	CHECK(!memcmp(pkt_src(pkt), nat_addr(f->family), alen(f->family)));
	CHECK(!memcmp(pkt_dst(pkt), f->dst, alen(f->family)));
	CHECK(get16(icmp ? l4 + 4 : l4) == port);
	if (!icmp)
		CHECK(get16(l4 + 2) == f->dport);
	CHECK(cksums_ok(pkt, len));
}

static void test_differential(void)
{
	static const uint16_t lo = 40000;
	struct mg_snat_conf c = conf(lo, lo + 3 * 40 - 1 + 2); /* 40 each, 2 spare */
	c.tcp_established_timeout = 300;
	c.tcp_transitory_timeout = 20;
	c.udp_timeout = 30;
	c.icmp_timeout = 10;
	struct dp_snat *s = make(&c, 3);
	struct ref *r = calloc(1, sizeof(*r));
	uint64_t now = 1000 * HZ;
	unsigned translated = 0, passed = 0, full = 0, replies = 0, strays = 0;

	r->workers = 3;
	r->port_min = lo;
	r->slice = 40;
	r->timeout[0] = 300 * HZ;
	r->timeout[1] = 20 * HZ;
	r->timeout[2] = 30 * HZ;
	r->timeout[3] = 10 * HZ;
	CHECK(dp_snat_slice(s) == 40);
	rng = 1;
	for (int step = 0; step < 200000; step++) {
		uint8_t pkt[PKT_MAX], orig[PKT_MAX];
		struct flow f;
		unsigned w = rnd_below(3);
		enum mg_drop_reason why = MG_DROP_MAX;
		int slot = -2;

		now += rnd_below(HZ / 5);
		random_flow(&f);
		uint8_t t = random_type(&f);
		uint32_t len = build(pkt, &f, t, rnd_below(40));
		memcpy(orig, pkt, len);
		int exp = ref_out(r, w, &f, t, now, &slot);
		enum dp_snat_result got = dp_snat_out(s, w, pkt, len, now, &why);
		if (exp == EXP_PASS) {
			passed++;
			CHECK(got == DP_SNAT_PASS && !memcmp(pkt, orig, len));
			continue;
		}
		if (exp == EXP_FULL) {
			full++;
			CHECK(got == DP_SNAT_DROP && why == MG_DROP_SNAT_TABLE_FULL);
			continue;
		}
		if (!CHECK(got == DP_SNAT_TRANSLATED))
			continue;
		translated++;
		const uint8_t *l4 = pkt + ip_hlen(f.family);
		bool icmp = f.proto == IPPROTO_ICMP || f.proto == IPPROTO_ICMPV6;
		uint16_t port = get16(icmp ? l4 + 4 : l4);
		if (slot >= 0) {
			CHECK(port == lo + w * 40 + (unsigned)slot);
		} else {
			/* a new mapping: a port of this worker that was free or expired */
			slot = (int)port - lo - (int)w * 40;
			if (CHECK(slot >= 0 && slot < 40))
				CHECK(ref_expired(r, &r->e[w][slot], now));
			else
				continue;
			ref_take(r, w, slot, &f, t, now);
		}
		check_out(pkt, len, &f, port);

		/* The LAN host answers, on any worker's queue. */
		if (rnd_below(4) == 0)
			continue;
		now += rnd_below(HZ / 5);
		struct ref_entry *e = &r->e[w][slot];
		len = build_reply(pkt, &f, port, rnd_below(40));
		why = MG_DROP_MAX;
		got = dp_snat_in(s, 0, pkt, len, now, &why);
		if (ref_expired(r, e, now)) {
			CHECK(got == DP_SNAT_DROP && why == MG_DROP_SNAT_NO_MAPPING);
			continue;
		}
		replies++;
		ref_touch(e, now);
		if (!CHECK(got == DP_SNAT_TRANSLATED))
			continue;
		CHECK(!memcmp(pkt_dst(pkt), f.src, alen(f.family)));
		CHECK(!memcmp(pkt_src(pkt), f.dst, alen(f.family)));
		CHECK(get16(icmp ? l4 + 4 : l4 + 2) == f.sport);
		CHECK(cksums_ok(pkt, len));

		/* A stray: same port, another remote port or host. */
		if (!icmp && rnd_below(2) == 0) {
			struct flow g = f;
			g.dport++;
			len = build_reply(pkt, &g, port, 0);
			CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_DROP &&
			      why == MG_DROP_SNAT_NO_MAPPING);
			strays++;
		}
	}
	/* Live counts agree. */
	for (unsigned w = 0; w < 3; w++) {
		uint32_t n = 0;
		for (uint32_t i = 0; i < 40; i++)
			n += !ref_expired(r, &r->e[w][i], now);
		CHECK(dp_snat_count(s, w, now) == n);
	}
	printf("differential: %u translated, %u passed, %u table full, %u replies, %u strays\n",
	       translated, passed, full, replies, strays);
	CHECK(translated > 1000 && passed > 100 && full > 10 && replies > 1000);
	free(r);
	dp_snat_destroy(s);
}

/* ---- fixed cases ---- */

static struct flow flow4(uint8_t proto, uint16_t sport, uint16_t dport)
{
	struct flow f = {.family = AF_INET, .proto = proto, .sport = sport, .dport = dport};
	uint8_t a[4] = {10, 99, 0, 2}, b[4] = {10, 88, 0, 1};
	memcpy(f.src, a, 4);
	memcpy(f.dst, b, 4);
	return f;
}

static struct flow flow6(uint8_t proto, uint16_t sport, uint16_t dport)
{
	struct flow f = {.family = AF_INET6, .proto = proto, .sport = sport, .dport = dport};
	uint8_t a[16] = {0xfd, 0x99, [15] = 2}, b[16] = {0xfd, 0x88, [15] = 1};
	memcpy(f.src, a, 16);
	memcpy(f.dst, b, 16);
	return f;
}

static uint16_t out_port(struct dp_snat *s, unsigned w, const struct flow *f, uint8_t t,
			 uint64_t now, enum dp_snat_result *res, enum mg_drop_reason *why)
{
	uint8_t pkt[PKT_MAX];
	uint32_t len = build(pkt, f, t, 16);

	*res = dp_snat_out(s, w, pkt, len, now, why);
	const uint8_t *l4 = pkt + ip_hlen(f->family);
	bool icmp = f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6;
	return get16(icmp ? l4 + 4 : l4);
}

/* The translated packet quoted in an ICMP error from the LAN host. */
static void test_icmp_errors(void)
{
	struct mg_snat_conf c = conf(50000, 50099);
	struct dp_snat *s = make(&c, 2);
	uint64_t now = 10 * HZ;

	for (int fam = 0; fam < 2; fam++) {
		for (int kind = 0; kind < 3; kind++) {
			uint8_t proto = kind == 0 ? IPPROTO_UDP : kind == 1 ? IPPROTO_TCP : 0;
			struct flow f = fam ? flow6(proto, 5353, 53) : flow4(proto, 5353, 53);
			if (!proto) {
				f.proto = icmp_proto(f.family);
				f.dport = 0;
			}
			uint8_t t = kind == 1 ? 0x02 : kind == 2 ? (fam ? 128 : 8) : 0;
			uint8_t inner[PKT_MAX], pkt[PKT_MAX];
			uint32_t ilen = build(inner, &f, t, 12);
			enum mg_drop_reason why;
			CHECK(dp_snat_out(s, 1, inner, ilen, now, &why) == DP_SNAT_TRANSLATED);
			const uint8_t *il4 = inner + ip_hlen(f.family);
			uint16_t nat = get16(proto ? il4 : il4 + 4);
			CHECK(nat >= 50050 && nat < 50100);

			/* Destination unreachable from the LAN host, quoting it all. */
			struct flow e = {.family = f.family, .proto = icmp_proto(f.family)};
			memcpy(e.src, f.dst, 16);
			memcpy(e.dst, nat_addr(f.family), alen(f.family));
			uint32_t hl = (uint32_t)ip_hlen(f.family);
			uint32_t len = build(pkt, &e, fam ? 1 : 3, ilen);
			pkt[hl + 1] = fam ? 4 : 3; /* port unreachable */
			memset(pkt + hl + 4, 0, 4);
			memcpy(pkt + hl + 8, inner, ilen);
			fill_cksums(pkt, len);
			CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED);
			CHECK(!memcmp(pkt_dst(pkt), f.src, alen(f.family)));
			const uint8_t *q = pkt + hl + 8;
			CHECK(!memcmp(pkt_src(q), f.src, alen(f.family)));
			const uint8_t *ql4 = q + hl;
			CHECK(get16(proto ? ql4 : ql4 + 4) == f.sport);
			CHECK(cksums_ok(pkt, len)); /* outer IP and ICMP */
			CHECK(cksums_ok(q, ilen));  /* quoted IP and L4, quoted whole */

			/* Quoting only 8 bytes of L4 works too (RFC 792 minimum). */
			ilen = build(inner, &f, t, 12);
			CHECK(dp_snat_out(s, 1, inner, ilen, now, &why) == DP_SNAT_TRANSLATED);
			len = build(pkt, &e, fam ? 1 : 3, hl + 8);
			memset(pkt + hl + 4, 0, 4);
			memcpy(pkt + hl + 8, inner, hl + 8);
			fill_cksums(pkt, len);
			CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED);
			CHECK(cksums_ok(pkt, len));
			CHECK(!memcmp(pkt_src(q), f.src, alen(f.family)));
		}
	}
	dp_snat_destroy(s);
}

static void test_expiry(void)
{
	struct mg_snat_conf c = conf(40000, 40009);
	struct dp_snat *s = make(&c, 1);
	struct flow u = flow4(IPPROTO_UDP, 1234, 53), t = flow4(IPPROTO_TCP, 1234, 80);
	struct flow i = flow6(IPPROTO_ICMPV6, 77, 0);
	enum dp_snat_result res;
	enum mg_drop_reason why;
	uint8_t pkt[PKT_MAX];
	uint64_t now = 5 * HZ;

	uint16_t pu = out_port(s, 0, &u, 0, now, &res, &why);
	uint16_t pt = out_port(s, 0, &t, 0x02, now, &res, &why);
	uint16_t pi = out_port(s, 0, &i, 128, now, &res, &why);
	CHECK(pu != pt && pt != pi && pu != pi);
	CHECK(dp_snat_count(s, 0, now) == 3);
	/* TCP: SYN then ACK makes it established (2 h); ICMP goes after 30 s. */
	CHECK(out_port(s, 0, &t, 0x10, now, &res, &why) == pt);
	now += 31 * HZ;
	CHECK(dp_snat_count(s, 0, now) == 2);
	uint32_t len = build_reply(pkt, &i, pi, 0);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_DROP && why == MG_DROP_SNAT_NO_MAPPING);
	/* A reply keeps UDP alive past its 120 s. */
	len = build_reply(pkt, &u, pu, 0);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED);
	now += 100 * HZ;
	len = build_reply(pkt, &u, pu, 0);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED);
	now += 121 * HZ;
	len = build_reply(pkt, &u, pu, 0);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_DROP);
	/* An expired flow that sends again gets its own entry back. */
	CHECK(out_port(s, 0, &u, 0, now, &res, &why) == pu && res == DP_SNAT_TRANSLATED);
	/* Established TCP lives 2 h; a FIN makes it transitory (120 s). */
	len = build_reply(pkt, &t, pt, 0);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED);
	out_port(s, 0, &t, 0x11, now, &res, &why);
	now += 121 * HZ;
	len = build_reply(pkt, &t, pt, 0);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_DROP);
	/* A mid-flow TCP packet of an expired flow is not translated. */
	CHECK(out_port(s, 0, &t, 0x10, now, &res, &why) == 1234 && res == DP_SNAT_PASS);
	dp_snat_destroy(s);
}

static void test_table_full(void)
{
	struct mg_snat_conf c = conf(40000, 40007); /* 4 per worker */
	struct dp_snat *s = make(&c, 2);
	enum dp_snat_result res;
	enum mg_drop_reason why;
	uint64_t now = HZ;

	for (uint16_t k = 0; k < 4; k++) {
		struct flow f = flow4(IPPROTO_UDP, (uint16_t)(2000 + k), 53);
		uint16_t p = out_port(s, 1, &f, 0, now, &res, &why);
		CHECK(res == DP_SNAT_TRANSLATED && p >= 40004 && p <= 40007);
	}
	struct flow f = flow4(IPPROTO_UDP, 3000, 53);
	why = MG_DROP_MAX;
	out_port(s, 1, &f, 0, now, &res, &why);
	CHECK(res == DP_SNAT_DROP && why == MG_DROP_SNAT_TABLE_FULL);
	/* The other worker's slice is its own. */
	CHECK(out_port(s, 0, &f, 0, now, &res, &why) == 40000 && res == DP_SNAT_TRANSLATED);
	/* Existing flows still translate; after expiry the slot is reused. */
	struct flow g = flow4(IPPROTO_UDP, 2001, 53);
	out_port(s, 1, &g, 0, now, &res, &why);
	CHECK(res == DP_SNAT_TRANSLATED);
	now += 121 * HZ;
	uint16_t p = out_port(s, 1, &f, 0, now, &res, &why);
	CHECK(res == DP_SNAT_TRANSLATED && p >= 40004 && p <= 40007);
	dp_snat_destroy(s);
}

/* What SNAT refuses or leaves alone. */
static void test_pass_and_drop(void)
{
	struct mg_snat_conf c = conf(40000, 40099);
	struct dp_snat *s = make(&c, 1);
	uint8_t pkt[PKT_MAX], orig[PKT_MAX];
	enum mg_drop_reason why;
	uint64_t now = HZ;
	uint32_t len;

	/* Echo reply and SYN-ACK from the tunnel (LAN-originated flows): untouched. */
	struct flow e = flow4(IPPROTO_ICMP, 9, 0);
	len = build(pkt, &e, 0, 8);
	memcpy(orig, pkt, len);
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_PASS && !memcmp(pkt, orig, len));
	struct flow t = flow6(IPPROTO_TCP, 80, 40000);
	len = build(pkt, &t, 0x12, 0);
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_PASS);
	/* GRE: dropped. */
	struct flow g = flow4(IPPROTO_UDP, 1, 2);
	len = build(pkt, &g, 0, 8);
	pkt[9] = 47;
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_DROP &&
	      why == MG_DROP_SNAT_UNSUPPORTED);
	/* IPv4 fragments: the first is translated like any packet, the later
	 * ones of the same datagram get the same source; a later fragment
	 * whose first was never seen is dropped. */
	len = build(pkt, &g, 0, 8);
	pkt[4] = 0x12, pkt[5] = 0x34; /* id */
	pkt[6] = 0x20;                /* MF, offset 0 */
	pkt[10] = pkt[11] = 0;
	uint16_t hc = rte_ipv4_cksum((const struct rte_ipv4_hdr *)pkt);
	memcpy(pkt + 10, &hc, 2);
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED &&
	      !memcmp(pkt + 12, NAT4, 4));
	len = build(pkt, &g, 0, 8);
	pkt[4] = 0x12, pkt[5] = 0x34;
	pkt[6] = 0x00, pkt[7] = 0x02; /* last fragment, offset 16 */
	pkt[10] = pkt[11] = 0;
	hc = rte_ipv4_cksum((const struct rte_ipv4_hdr *)pkt);
	memcpy(pkt + 10, &hc, 2);
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED &&
	      !memcmp(pkt + 12, NAT4, 4));
	CHECK(rte_ipv4_cksum((const struct rte_ipv4_hdr *)pkt) == 0); /* header sum valid */
	len = build(pkt, &g, 0, 8);
	pkt[4] = 0x77; /* another datagram */
	pkt[7] = 0x02;
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_DROP &&
	      why == MG_DROP_SNAT_FRAGMENT);
	/* UDP without checksum over IPv4 stays without. */
	len = build(pkt, &g, 0, 8);
	memset(pkt + 26, 0, 2);
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_TRANSLATED);
	CHECK(pkt[26] == 0 && pkt[27] == 0);
	/* To the NAT address but outside the port range, or an echo request:
	 * local traffic, as without SNAT. */
	struct flow l = flow4(IPPROTO_UDP, 53, 1234);
	memcpy(l.dst, NAT4, 4);
	len = build(pkt, &l, 0, 8);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_PASS);
	struct flow p = flow4(IPPROTO_ICMP, 40001, 0);
	memcpy(p.dst, NAT4, 4);
	len = build(pkt, &p, 8, 8);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_PASS);
	/* Not to the NAT address: passes. */
	len = build(pkt, &g, 0, 8);
	CHECK(dp_snat_in(s, 0, pkt, len, now, &why) == DP_SNAT_PASS);
	dp_snat_destroy(s);

	/* No IPv6 NAT address: IPv6 is dropped, counted. */
	uint32_t a4;
	memcpy(&a4, NAT4, 4);
	s = dp_snat_create(&c, 1, HZ, a4, NULL, 0);
	struct flow u6 = flow6(IPPROTO_UDP, 1, 2);
	len = build(pkt, &u6, 0, 8);
	CHECK(dp_snat_out(s, 0, pkt, len, now, &why) == DP_SNAT_DROP &&
	      why == MG_DROP_SNAT_NO_ADDRESS);
	dp_snat_destroy(s);
	/* A range too small for the workers. */
	c = conf(40000, 40002);
	CHECK(dp_snat_create(&c, 4, HZ, a4, NULL, 0) == NULL && rte_errno == EINVAL);
}

/* ---- a reader on another thread while the owner reuses slots ---- */

struct race {
	struct dp_snat *s;
	uint64_t now; /* atomic */
	bool stop;    /* atomic */
	uint64_t translated, torn, misses;
};

/* Flows whose source is a function of the destination: a reply translated
 * with a source from one flow and a destination from another is torn. */
static struct flow race_flow(uint32_t k)
{
	struct flow f = flow4(IPPROTO_UDP, 0, 0);
	f.dst[2] = (uint8_t)(k >> 8);
	f.dst[3] = (uint8_t)k;
	f.dport = (uint16_t)(1000 + (k % 977));
	f.src[2] = (uint8_t)~f.dst[3];
	f.src[3] = f.dst[2];
	f.sport = (uint16_t)~f.dport;
	return f;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	uint64_t seed = 0x1234567;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		uint8_t pkt[PKT_MAX];
		enum mg_drop_reason why;
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		struct flow f = race_flow((uint32_t)(seed >> 40) % 256);
		uint16_t port = (uint16_t)(40000 + (seed >> 20) % 64);
		uint32_t len = build_reply(pkt, &f, port, 0);
		uint64_t now = __atomic_load_n(&r->now, __ATOMIC_RELAXED);
		if (dp_snat_in(r->s, 0, pkt, len, now, &why) != DP_SNAT_TRANSLATED) {
			r->misses++;
			continue;
		}
		r->translated++;
		const uint8_t *l4 = pkt + 20;
		if (memcmp(pkt_dst(pkt), f.src, 4) || get16(l4 + 2) != f.sport ||
		    !cksums_ok(pkt, len))
			r->torn++;
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct mg_snat_conf c = conf(40000, 40063);
	c.udp_timeout = 1;
	struct race r = {.s = make(&c, 1), .now = HZ};
	pthread_t th;
	uint64_t writes = 0;

	pthread_create(&th, NULL, race_reader, &r);
	rng = 7;
	for (int i = 0; i < 3000000; i++) {
		uint8_t pkt[PKT_MAX];
		enum mg_drop_reason why;
		/* Flows from a small set, so readers often guess a live one. */
		struct flow f = race_flow(rnd_below(256));
		uint32_t len = build(pkt, &f, 0, 0);
		if (dp_snat_out(r.s, 0, pkt, len, r.now, &why) == DP_SNAT_TRANSLATED)
			writes++;
		__atomic_store_n(&r.now, r.now + 1, __ATOMIC_RELAXED); /* 64 new flows per s */
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	printf("concurrent: %" PRIu64 " writes, reader %" PRIu64 " translated, %" PRIu64
	       " misses, %" PRIu64 " torn\n",
	       writes, r.translated, r.misses, r.torn);
	CHECK(r.torn == 0);
	CHECK(r.translated > 0);
	dp_snat_destroy(r.s);
}

int main(int argc, char **argv)
{
	/* --in-memory would clash with --no-huge (legacy memory) in DPDK 22.11:
	 * a file prefix of our own keeps parallel runs apart instead. */
	char prefix[64];
	char *eal_argv[] = {argv[0],
			    "--no-huge",
			    "-m",
			    "512",
			    "--no-pci",
			    "--no-shconf",
			    "--no-telemetry",
			    prefix,
			    "--log-level=*:warning",
			    "-l",
			    "0",
			    NULL};

	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(prefix, sizeof(prefix), "--file-prefix=snattest%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(eal_argv) - 1, eal_argv) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	test_pass_and_drop();
	test_expiry();
	test_table_full();
	test_icmp_errors();
	test_differential();
	test_concurrent();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	rte_eal_cleanup();
	return n_fail ? 1 : 0;
}
