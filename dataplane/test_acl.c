/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the packet filter (acl.c) and the reverse-flow table
 * (flow.c). The main test is differential: random rule sets (both families,
 * all prefix lengths, port ranges, protocols) and random packets go through
 * dp_acl_check_burst and through a deliberately naive reference (a linear
 * scan of the rules with the same semantics, from the packet's description,
 * not its bytes), up to a 10,000-rule set, whose build time, memory and
 * per-packet cost are printed. Then table tests of the semantics, the policy
 * tests (compiled by policy/ from text), and a writer and a reader racing on
 * the flow table. EAL runs without hugepages or devices.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include "acl.h"
#include "flow.h"
#include "policy.h"

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

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- packets, from a description ---- */

#define PKT_MAX 128
#define TSC_HZ	1000000000ULL /* the tests' clock: 1 tick = 1 ns */

struct pdesc {
	uint8_t family, proto;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	uint8_t tcp_flags, icmp_type;
	bool later_frag; /* a non-first fragment */
	bool v6_hbh;	 /* an IPv6 hop-by-hop header before the transport header */
	uint8_t l4_len;	 /* transport bytes present (0: the protocol's full header) */
};

static uint16_t l4_full(uint8_t proto)
{
	return proto == IPPROTO_TCP ? 20 : proto == IPPROTO_SCTP ? 12 : 8;
}

/* The packet of d into buf; returns its length. */
static uint16_t build(const struct pdesc *d, uint8_t *buf)
{
	uint16_t l4 = d->l4_len ? d->l4_len : l4_full(d->proto), off;
	uint8_t *p;

	memset(buf, 0, PKT_MAX);
	if (d->family == AF_INET) {
		off = 20;
		buf[0] = 0x45;
		buf[2] = (uint8_t)((off + l4) >> 8);
		buf[3] = (uint8_t)(off + l4);
		if (d->later_frag)
			buf[7] = 185; /* offset 185 * 8 */
		buf[8] = 64;
		buf[9] = d->proto;
		memcpy(buf + 12, d->src, 4);
		memcpy(buf + 16, d->dst, 4);
	} else {
		uint8_t *nh = &buf[6]; /* the next-header byte to fill */

		off = 40;
		buf[0] = 0x60;
		buf[7] = 64;
		memcpy(buf + 8, d->src, 16);
		memcpy(buf + 24, d->dst, 16);
		if (d->v6_hbh) {
			*nh = 0; /* hop-by-hop, 8 bytes: PadN */
			nh = &buf[off];
			buf[off + 2] = 1;
			buf[off + 3] = 4;
			off += 8;
		}
		if (d->later_frag) {
			*nh = 44; /* fragment header, offset 100 * 8 */
			nh = &buf[off];
			buf[off + 2] = (100 * 8) >> 8;
			buf[off + 3] = (100 * 8) & 0xf8;
			off += 8;
		}
		*nh = d->proto;
		buf[4] = (uint8_t)((off - 40 + l4) >> 8);
		buf[5] = (uint8_t)(off - 40 + l4);
	}
	p = buf + off;
	if (d->proto == IPPROTO_ICMP || d->proto == IPPROTO_ICMPV6) {
		p[0] = d->icmp_type;
	} else {
		p[0] = (uint8_t)(d->sport >> 8);
		p[1] = (uint8_t)d->sport;
		p[2] = (uint8_t)(d->dport >> 8);
		p[3] = (uint8_t)d->dport;
		if (d->proto == IPPROTO_TCP) {
			p[12] = 0x50;
			p[13] = d->tcp_flags;
		}
	}
	return (uint16_t)(off + l4);
}

/* ---- the reference ---- */

static bool in_prefix(const uint8_t *a, const uint8_t *p, unsigned len)
{
	for (unsigned bit = 0; bit < len; bit++) {
		unsigned byte = bit / 8, m = 0x80u >> (bit % 8);

		if ((a[byte] & m) != (p[byte] & m))
			return false;
	}
	return true;
}

static bool ref_rule(const struct mg_acl_rule *r, size_t n, const struct pdesc *d, uint16_t dport)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].family == d->family && (r[i].proto == 0 || r[i].proto == d->proto) &&
		    in_prefix(d->src, r[i].src, r[i].src_len) &&
		    in_prefix(d->dst, r[i].dst, r[i].dst_len) && dport >= r[i].dport_lo &&
		    dport <= r[i].dport_hi)
			return true;
	}
	return false;
}

/* acl.h's semantics, without flows; d has full transport headers. */
static bool ref_accept(const struct mg_acl_rule *r, size_t n, const struct pdesc *d)
{
	if (d->later_frag)
		return ref_rule(r, n, d, 0);
	switch (d->proto) {
	case IPPROTO_TCP:
		if ((d->tcp_flags & 0x12) != 0x02)
			return true;
		return ref_rule(r, n, d, d->dport);
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		return ref_rule(r, n, d, d->dport);
	case IPPROTO_ICMP:
		if (d->family == AF_INET && (d->icmp_type == 0 || d->icmp_type == 3 ||
					     d->icmp_type == 11 || d->icmp_type == 12))
			return true;
		return ref_rule(r, n, d, 0);
	case IPPROTO_ICMPV6:
		if (d->family == AF_INET6 &&
		    ((d->icmp_type >= 1 && d->icmp_type <= 4) || d->icmp_type == 129))
			return true;
		return ref_rule(r, n, d, 0);
	default:
		return ref_rule(r, n, d, 0);
	}
}

/* ---- random rules and packets over a small address space (many hits) ---- */

static void rnd_addr(uint8_t family, uint8_t *a)
{
	memset(a, 0, 16);
	if (family == AF_INET) {
		a[0] = rnd_below(2) ? 10 : 192;
		a[1] = (uint8_t)rnd_below(2);
		a[2] = (uint8_t)rnd_below(4);
		a[3] = (uint8_t)rnd_below(8);
		if (rnd_below(16) == 0)
			a[3] = (uint8_t)rnd();
	} else {
		a[0] = 0xfd;
		a[1] = (uint8_t)rnd_below(2);
		a[5] = (uint8_t)rnd_below(2);
		a[9] = (uint8_t)rnd_below(4);
		a[13] = (uint8_t)rnd_below(2);
		a[15] = (uint8_t)rnd_below(8);
	}
}

static uint8_t rnd_len(uint8_t family)
{
	static const uint8_t l4[] = {0, 8, 15, 16, 23, 24, 29, 30, 31, 32, 32};
	static const uint8_t l6[] = {0, 8, 16, 40, 47, 48, 72, 80, 100, 110, 125, 128, 128};

	if (rnd_below(4) == 0)
		return (uint8_t)rnd_below(family == AF_INET ? 33 : 129);
	return family == AF_INET ? l4[rnd_below(sizeof(l4))] : l6[rnd_below(sizeof(l6))];
}

static void mask(uint8_t *a, unsigned len)
{
	for (unsigned i = 0; i < 16; i++) {
		int keep = (int)len - 8 * (int)i;

		if (keep < 8)
			a[i] &= keep <= 0 ? 0 : (uint8_t)(0xff00 >> keep);
	}
}

static const uint8_t protos[] = {IPPROTO_TCP,  IPPROTO_TCP,    IPPROTO_UDP,  IPPROTO_UDP,
				 IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, 47};

static uint16_t rnd_port(void)
{
	static const uint16_t common[] = {0, 1, 22, 53, 80, 443, 1000, 1023, 1024, 8080, 65535};

	return rnd_below(3) ? common[rnd_below(sizeof(common) / 2)] : (uint16_t)rnd();
}

static void rnd_rule(struct mg_acl_rule *r)
{
	memset(r, 0, sizeof(*r));
	r->family = rnd_below(2) ? AF_INET : AF_INET6;
	r->proto = rnd_below(12) == 0 ? 0 : protos[rnd_below(sizeof(protos))];
	rnd_addr(r->family, r->src);
	rnd_addr(r->family, r->dst);
	r->src_len = rnd_len(r->family);
	r->dst_len = rnd_len(r->family);
	mask(r->src, r->src_len);
	mask(r->dst, r->dst_len);
	switch (rnd_below(4)) {
	case 0:
		r->dport_lo = 0;
		r->dport_hi = 65535;
		break;
	case 1:
		r->dport_lo = r->dport_hi = rnd_port();
		break;
	default: {
		uint16_t a = rnd_port(), b = rnd_port();

		r->dport_lo = a < b ? a : b;
		r->dport_hi = a < b ? b : a;
	}
	}
	r->acl_index = rnd_below(100);
}

static void rnd_packet(struct pdesc *d)
{
	static const uint8_t flags[] = {0x02, 0x02, 0x02, 0x12, 0x10, 0x04, 0x00, 0x03};
	static const uint8_t types[] = {0, 3, 8, 11, 12, 1, 2, 4, 128, 129, 135, 5};

	memset(d, 0, sizeof(*d));
	d->family = rnd_below(2) ? AF_INET : AF_INET6;
	d->proto = protos[rnd_below(sizeof(protos))];
	rnd_addr(d->family, d->src);
	rnd_addr(d->family, d->dst);
	d->sport = rnd_port();
	d->dport = rnd_port();
	d->tcp_flags = flags[rnd_below(sizeof(flags))];
	d->icmp_type = types[rnd_below(sizeof(types))];
	d->later_frag = rnd_below(16) == 0;
	d->v6_hbh = d->family == AF_INET6 && rnd_below(8) == 0;
}

static void fmt_desc(const struct pdesc *d, char *buf, size_t len)
{
	int n = snprintf(buf, len, "v%d proto %u ", d->family == AF_INET ? 4 : 6, d->proto);

	for (int i = 0; i < (d->family == AF_INET ? 4 : 16); i++)
		n += snprintf(buf + n, len - (size_t)n, "%02x", d->src[i]);
	n += snprintf(buf + n, len - (size_t)n, " -> ");
	for (int i = 0; i < (d->family == AF_INET ? 4 : 16); i++)
		n += snprintf(buf + n, len - (size_t)n, "%02x", d->dst[i]);
	snprintf(buf + n, len - (size_t)n, " :%u flags %#x type %u frag %d", d->dport, d->tcp_flags,
		 d->icmp_type, d->later_frag);
}

static struct dp_acl *build_or_die(const struct mg_acl_rule *r, size_t n)
{
	char err[256];
	struct dp_acl *acl = dp_acl_build(r, n, SOCKET_ID_ANY, err, sizeof(err));

	if (!acl) {
		fprintf(stderr, "dp_acl_build(%zu rules): %s\n", n, err);
		exit(1);
	}
	return acl;
}

/* n_pkts random packets in bursts of random size (up to 200); 0 if all agree. */
static size_t diff_run(const struct dp_acl *acl, const struct mg_acl_rule *r, size_t n,
		       size_t n_pkts, size_t *n_acc)
{
	static uint8_t bufs[200][PKT_MAX];
	static struct pdesc descs[200];
	uint8_t *ip[200], accept[200];
	uint16_t len[200];
	size_t bad = 0;

	for (size_t done = 0; done < n_pkts;) {
		uint16_t m = (uint16_t)(1 + rnd_below(200));

		for (uint16_t i = 0; i < m; i++) {
			rnd_packet(&descs[i]);
			ip[i] = bufs[i];
			len[i] = build(&descs[i], bufs[i]);
		}
		dp_acl_check_burst(acl, NULL, 0, ip, len, m, accept);
		for (uint16_t i = 0; i < m; i++) {
			bool want = ref_accept(r, n, &descs[i]);

			*n_acc += want;
			if (want != (accept[i] != 0) && bad++ < 5) {
				char buf[200];

				fmt_desc(&descs[i], buf, sizeof(buf));
				fprintf(stderr, "  mismatch (%zu rules): %s: want %d got %d\n", n,
					buf, want, accept[i]);
			}
		}
		done += m;
	}
	return bad;
}

static void test_differential(void)
{
	size_t total = 0, acc = 0, bad = 0;

	rng = 1;
	for (int round = 0; round < 40; round++) {
		size_t n = round < 5 ? (size_t)round : 1 + rnd_below(round < 30 ? 50 : 1500);
		struct mg_acl_rule *r = calloc(n + 1, sizeof(*r));

		for (size_t i = 0; i < n; i++)
			rnd_rule(&r[i]);
		struct dp_acl *acl = build_or_die(r, n);

		bad += diff_run(acl, r, n, 3000, &acc);
		total += 3000;
		dp_acl_free(acl);
		free(r);
	}
	printf("differential: %zu packets, %zu accepted, %zu mismatches\n", total, acc, bad);
	CHECK(bad == 0);
	CHECK(acc > total / 10 && acc < total * 9 / 10);
}

static size_t heap_used(void)
{
	struct rte_malloc_socket_stats st;
	size_t sum = 0;

	for (int s = 0; s < RTE_MAX_NUMA_NODES; s++)
		if (rte_malloc_get_socket_stats(s, &st) == 0)
			sum += st.heap_allocsz_bytes;
	return sum;
}

/* Addresses anywhere, so that few rules share a prefix: rte_acl's harder case. */
static void wide_rule(struct mg_acl_rule *r)
{
	rnd_rule(r);
	for (int i = 0; i < 16; i++) {
		r->src[i] = (uint8_t)rnd();
		r->dst[i] = (uint8_t)rnd();
	}
	if (r->family == AF_INET) {
		memset(r->src + 4, 0, 12);
		memset(r->dst + 4, 0, 12);
	}
	mask(r->src, r->src_len);
	mask(r->dst, r->dst_len);
}

/* 10,000 rules: build time, memory, a differential run, cost per packet. */
static void test_large(bool wide)
{
	const size_t n = 10000;
	struct mg_acl_rule *r = calloc(n, sizeof(*r));
	size_t heap0 = heap_used(), acc = 0;

	rng = 42;
	for (size_t i = 0; i < n; i++) {
		if (wide)
			wide_rule(&r[i]);
		else
			rnd_rule(&r[i]);
	}
	double t0 = now_s();
	struct dp_acl *acl = build_or_die(r, n);
	double t1 = now_s();

	printf("10k %s rules (%zu v4, %zu v6): built in %.0f ms, rte_malloc %.1f MiB\n",
	       wide ? "wide" : "dense", dp_acl_count(acl, AF_INET), dp_acl_count(acl, AF_INET6),
	       (t1 - t0) * 1e3, (double)(heap_used() - heap0) / (1 << 20));
	CHECK(dp_acl_count(acl, AF_INET) + dp_acl_count(acl, AF_INET6) == n);
	CHECK(diff_run(acl, r, n, 20000, &acc) == 0);

	/* cost: bursts of 32 pure SYNs (all classified), half v4, half v6 */
	static uint8_t bufs[32][PKT_MAX];
	uint8_t *ip[32], accept[32];
	uint16_t len[32];
	const int iters = 20000;

	for (int i = 0; i < 32; i++) {
		struct pdesc d;

		rnd_packet(&d);
		d.family = i % 2 ? AF_INET6 : AF_INET;
		rnd_addr(d.family, d.src);
		rnd_addr(d.family, d.dst);
		d.proto = IPPROTO_TCP;
		d.tcp_flags = 0x02;
		d.later_frag = false;
		ip[i] = bufs[i];
		len[i] = build(&d, bufs[i]);
	}
	double t2 = now_s();
	for (int k = 0; k < iters; k++)
		dp_acl_check_burst(acl, NULL, 0, ip, len, 32, accept);
	double t3 = now_s();
	printf("10k %s rules: %.1f ns per classified packet (bursts of 32)\n",
	       wide ? "wide" : "dense", (t3 - t2) * 1e9 / (iters * 32.0));
	dp_acl_free(acl);
	free(r);
}

/*
 * A policy-shaped set: 40 sources x 40 destinations per family, each with
 * ports "22,80,443,8000-9000" and the default protocols: 28,800 rules.
 */
static void test_policy_scale(void)
{
	size_t cap = 1 << 16, n = 0, heap0 = heap_used();
	char *text = malloc(cap), err[512];
	struct mg_policy p;

	n += (size_t)snprintf(text + n, cap - n, "{\"acls\": [{\"action\": \"accept\", \"src\": [");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(text + n, cap - n, "\"10.%d.%d.1\", \"fd00:%x::%x\", ", i,
				      i * 5, i, i * 13 + 1);
	n += (size_t)snprintf(text + n, cap - n, "\"192.168.0.0/16\"], \"dst\": [");
	for (int j = 0; j < 40; j++)
		n += (size_t)snprintf(text + n, cap - n,
				      "%s\"172.%d.%d.0/24:22,80,443,8000-9000\", "
				      "\"[fd01:%x::/64]:22,80,443,8000-9000\"",
				      j ? ", " : "", 16 + j % 16, j, j);
	n += (size_t)snprintf(
	    text + n, cap - n,
	    "]}], \"tests\": [{\"src\": \"10.3.15.1\", \"accept\": "
	    "[\"172.19.3.9:8500\", \"172.19.3.9:22\"], \"deny\": [\"172.19.3.9:23\"]},"
	    "{\"src\": \"fd00:3::28\", \"proto\": \"udp\", \"accept\": [\"[fd01:3::9]:443\"],"
	    " \"deny\": [\"[fd01:3::9]:444\", \"[fd02::1]:443\"]}]}");
	if (mg_policy_parse(text, n, NULL, &p, err, sizeof(err))) {
		fprintf(stderr, "policy: %s\n", err);
		CHECK(false);
		free(text);
		return;
	}
	double t0 = now_s();
	struct dp_acl *acl = build_or_die(p.rules, p.n_rules);
	double t1 = now_s();

	printf("policy-shaped: %zu rules (%zu v4, %zu v6) built in %.0f ms, rte_malloc %.1f MiB\n",
	       p.n_rules, dp_acl_count(acl, AF_INET), dp_acl_count(acl, AF_INET6), (t1 - t0) * 1e3,
	       (double)(heap_used() - heap0) / (1 << 20));
	CHECK(p.n_rules == 2 * 41 * 40 * 9 - 40 * 9);
	CHECK(dp_acl_run_tests(acl, p.tests, p.n_tests, err, sizeof(err)) == 0);
	if (err[0])
		fprintf(stderr, "  %s\n", err);
	dp_acl_free(acl);
	mg_policy_free(&p);
	free(text);
}

/* ---- table tests of the semantics ---- */

static void ip4(uint8_t *a, uint8_t x, uint8_t y, uint8_t z, uint8_t w)
{
	memset(a, 0, 16);
	a[0] = x;
	a[1] = y;
	a[2] = z;
	a[3] = w;
}

static void ip6(uint8_t *a, uint16_t first, uint8_t last)
{
	memset(a, 0, 16);
	a[0] = (uint8_t)(first >> 8);
	a[1] = (uint8_t)first;
	a[15] = last;
}

static struct pdesc pkt4(uint8_t proto, uint8_t s3, uint8_t d3, uint16_t dport)
{
	struct pdesc d = {.family = AF_INET, .proto = proto, .sport = 40000, .dport = dport};

	ip4(d.src, 10, 0, 0, s3);
	ip4(d.dst, 10, 1, 0, d3);
	d.tcp_flags = 0x02;
	d.icmp_type = proto == IPPROTO_ICMP ? 8 : 0;
	return d;
}

static struct pdesc pkt6(uint8_t proto, uint8_t s, uint8_t dd, uint16_t dport)
{
	struct pdesc d = {.family = AF_INET6, .proto = proto, .sport = 40000, .dport = dport};

	ip6(d.src, 0xfd00, s);
	ip6(d.dst, 0xfd01, dd);
	d.tcp_flags = 0x02;
	d.icmp_type = proto == IPPROTO_ICMPV6 ? 128 : 0;
	return d;
}

static int verdict(const struct dp_acl *acl, const struct dp_flows *fl, uint64_t now,
		   const struct pdesc *d)
{
	uint8_t buf[PKT_MAX], *ip = buf, acc = 0xee;
	uint16_t len = build(d, buf);

	dp_acl_check_burst(acl, fl, now, &ip, &len, 1, &acc);
	return acc;
}

static struct mg_acl_rule rule(uint8_t family, uint8_t proto, const char *src, unsigned slen,
			       const char *dst, unsigned dlen, uint16_t lo, uint16_t hi)
{
	struct mg_acl_rule r = {.family = family,
				.proto = proto,
				.src_len = (uint8_t)slen,
				.dst_len = (uint8_t)dlen,
				.dport_lo = lo,
				.dport_hi = hi};

	memcpy(r.src, src, family == AF_INET ? 4 : 16);
	memcpy(r.dst, dst, family == AF_INET ? 4 : 16);
	return r;
}

static void test_semantics(void)
{
	const char s4[4] = {10, 0, 0, 0}, d4[4] = {10, 1, 0, 1};
	const char s6[16] = {(char)0xfd, 0}, d6[16] = {(char)0xfd, 1, [15] = 1};
	struct mg_acl_rule r[] = {
	    rule(AF_INET, IPPROTO_TCP, s4, 24, d4, 32, 22, 22),
	    rule(AF_INET, IPPROTO_UDP, s4, 24, d4, 32, 53, 53),
	    rule(AF_INET, IPPROTO_ICMP, s4, 24, d4, 32, 0, 65535),
	    rule(AF_INET, 47, s4, 24, d4, 32, 0, 65535),
	    rule(AF_INET6, IPPROTO_TCP, s6, 16, d6, 128, 443, 443),
	    rule(AF_INET6, IPPROTO_ICMPV6, s6, 16, d6, 128, 0, 65535),
	};
	struct dp_acl *acl = build_or_die(r, sizeof(r) / sizeof(r[0]));
	struct dp_acl *empty = build_or_die(NULL, 0);
	struct dp_flows *fl = dp_flows_create(2, 64, TSC_HZ, 120, SOCKET_ID_ANY);
	struct pdesc d;

	if (!CHECK(fl != NULL))
		return;
	/* TCP: a SYN needs a rule; everything else passes */
	d = pkt4(IPPROTO_TCP, 5, 1, 22);
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d = pkt4(IPPROTO_TCP, 5, 1, 80);
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d.tcp_flags = 0x10; /* ACK */
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d.tcp_flags = 0x12; /* SYN+ACK */
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d.tcp_flags = 0x04; /* RST */
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d = pkt4(IPPROTO_TCP, 5, 2, 22); /* other destination */
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d = pkt4(IPPROTO_TCP, 5, 1, 22);
	d.src[2] = 1; /* other source */
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d = pkt4(IPPROTO_TCP, 5, 1, 22);
	d.l4_len = 12; /* cut short */
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d.tcp_flags = 0x10;
	CHECK(verdict(acl, NULL, 0, &d) == 0);

	/* no policy: everything; an empty policy: only what needs no rule */
	d = pkt4(IPPROTO_TCP, 5, 1, 80);
	CHECK(verdict(NULL, NULL, 0, &d) == 1);
	CHECK(verdict(empty, NULL, 0, &d) == 0);
	d.tcp_flags = 0x10;
	CHECK(verdict(empty, NULL, 0, &d) == 1);

	/* UDP: a rule, or a reply to a flow a LAN host sent into the tunnel */
	d = pkt4(IPPROTO_UDP, 5, 1, 53);
	CHECK(verdict(acl, fl, 1000, &d) == 1);
	struct pdesc reply = pkt4(IPPROTO_UDP, 5, 1, 40001), out;

	reply.sport = 5353;
	CHECK(verdict(acl, fl, 1000, &reply) == 0);
	out = reply; /* the LAN host 10.1.0.1:40001 -> 10.0.0.5:5353 */
	memcpy(out.src, reply.dst, 16);
	memcpy(out.dst, reply.src, 16);
	out.sport = reply.dport;
	out.dport = reply.sport;
	uint8_t ob[PKT_MAX];
	uint16_t olen = build(&out, ob);

	dp_flows_note_out(fl, 1, 1000, ob, olen);
	CHECK(verdict(acl, fl, 2000, &reply) == 1);
	CHECK(verdict(acl, NULL, 2000, &reply) == 0);
	CHECK(verdict(acl, fl, 1000 + 119 * TSC_HZ, &reply) == 1);
	CHECK(verdict(acl, fl, 1000 + 121 * TSC_HZ, &reply) == 0); /* expired */
	dp_flows_note_out(fl, 0, 1000 + 200 * TSC_HZ, ob, olen);   /* again, other worker */
	CHECK(verdict(acl, fl, 1000 + 201 * TSC_HZ, &reply) == 1);
	struct pdesc other = reply;

	other.sport = 5354; /* not the reverse */
	CHECK(verdict(acl, fl, 1000 + 201 * TSC_HZ, &other) == 0);
	other = out; /* the same direction is not a reply */
	CHECK(verdict(acl, fl, 1000 + 201 * TSC_HZ, &other) == 0);

	/* IPv6 UDP reply, behind a hop-by-hop header */
	struct pdesc r6 = pkt6(IPPROTO_UDP, 7, 1, 40002), o6 = r6;

	r6.sport = 53;
	r6.v6_hbh = true;
	memcpy(o6.src, r6.dst, 16);
	memcpy(o6.dst, r6.src, 16);
	o6.sport = r6.dport;
	o6.dport = r6.sport;
	CHECK(verdict(acl, fl, 5, &r6) == 0);
	olen = build(&o6, ob);
	dp_flows_note_out(fl, 1, 5, ob, olen);
	CHECK(verdict(acl, fl, 6, &r6) == 1);

	/* ICMP: replies and errors pass; requests need a rule (any port) */
	d = pkt4(IPPROTO_ICMP, 5, 1, 0);
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d = pkt4(IPPROTO_ICMP, 5, 2, 0);
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	for (uint8_t t = 0; t < 13; t++) {
		d.icmp_type = t;
		CHECK(verdict(acl, NULL, 0, &d) == (t == 0 || t == 3 || t == 11 || t == 12));
	}
	d = pkt6(IPPROTO_ICMPV6, 7, 1, 0);
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d = pkt6(IPPROTO_ICMPV6, 7, 2, 0);
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d.icmp_type = 129;
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d.icmp_type = 1;
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d.icmp_type = 135; /* neighbour solicitation */
	CHECK(verdict(acl, NULL, 0, &d) == 0);

	/* other protocols: port 0; IPv6 TCP; non-first fragments: port 0 */
	d = pkt4(47, 5, 1, 0);
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d = pkt4(50, 5, 1, 0);
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d = pkt6(IPPROTO_TCP, 7, 1, 443);
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d.v6_hbh = true;
	CHECK(verdict(acl, NULL, 0, &d) == 1);
	d.later_frag = true; /* port 0 is not 443 */
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d = pkt4(IPPROTO_TCP, 5, 1, 22);
	d.later_frag = true;
	CHECK(verdict(acl, NULL, 0, &d) == 0);
	d = pkt4(47, 5, 1, 0);
	d.later_frag = true;
	CHECK(verdict(acl, NULL, 0, &d) == 1);

	/* garbage: not IP, too short */
	uint8_t junk[PKT_MAX] = {0x50}, *jp = junk, acc = 9;
	uint16_t jl = 40;

	dp_acl_check_burst(acl, fl, 0, &jp, &jl, 1, &acc);
	CHECK(acc == 0);
	junk[0] = 0x46; /* IHL 24 > 20 bytes */
	jl = 20;
	dp_acl_check_burst(acl, fl, 0, &jp, &jl, 1, &acc);
	CHECK(acc == 0);

	dp_flows_free(fl);
	dp_acl_free(empty);
	dp_acl_free(acl);
}

/* ---- policy tests, from policy text ---- */

static struct dp_acl *compile(const char *text, struct mg_policy *p)
{
	char err[512];

	if (mg_policy_parse(text, strlen(text), NULL, p, err, sizeof(err))) {
		fprintf(stderr, "policy: %s\n", err);
		exit(1);
	}
	return build_or_die(p->rules, p->n_rules);
}

static void test_run_tests(void)
{
	static const char ok[] =
	    "{\"hosts\": {\"web\": \"10.1.0.1\", \"web6\": \"fd01::1\"},\n"
	    " \"acls\": [\n"
	    "  {\"action\": \"accept\", \"src\": [\"10.0.0.0/24\", \"fd00::/16\"],\n"
	    "   \"dst\": [\"web:22,80-90\", \"web6:443\"]},\n"
	    "  {\"action\": \"accept\", \"src\": [\"*\"], \"proto\": \"udp\", \"dst\": "
	    "[\"*:53\"]},\n"
	    "  {\"action\": \"accept\", \"src\": [\"10.0.0.9\"], \"proto\": \"gre\", \"dst\": "
	    "[\"web:*\"]},\n"
	    " ],\n"
	    " \"tests\": [\n"
	    "  {\"src\": \"10.0.0.5\", \"accept\": [\"web:22\", \"web:85\"], \"deny\": "
	    "[\"web:23\", \"10.1.0.2:22\"]},\n"
	    "  {\"src\": \"fd00::5\", \"accept\": [\"web6:443\"], \"deny\": [\"web6:22\", "
	    "\"[fd01::2]:443\"]},\n"
	    "  {\"src\": \"10.0.0.5\", \"proto\": \"icmp\", \"accept\": [\"web:0\"], \"deny\": "
	    "[\"10.9.9.9:0\"]},\n"
	    "  {\"src\": \"fd00::5\", \"proto\": \"ipv6-icmp\", \"accept\": [\"web6:0\"]},\n"
	    "  {\"src\": \"192.168.1.1\", \"proto\": \"udp\", \"accept\": [\"8.8.8.8:53\"], "
	    "\"deny\": [\"8.8.8.8:54\", \"web:22\"]},\n"
	    "  {\"src\": \"10.0.0.9\", \"proto\": \"gre\", \"accept\": [\"web:0\"], \"deny\": "
	    "[\"10.1.0.2:0\"]},\n"
	    "  {\"src\": \"10.0.0.8\", \"proto\": \"gre\", \"deny\": [\"web:0\"]},\n"
	    " ]}\n";
	struct mg_policy p;
	struct dp_acl *acl = compile(ok, &p);
	char err[512];

	CHECK(p.n_tests == 16);
	CHECK(dp_acl_run_tests(acl, p.tests, p.n_tests, err, sizeof(err)) == 0);
	if (err[0])
		fprintf(stderr, "  %s\n", err);

	/* flip one expectation at a time: each must fail, naming the item */
	for (size_t i = 0; i < p.n_tests; i++) {
		p.tests[i].expect_accept ^= 1;
		CHECK(dp_acl_run_tests(acl, p.tests, p.n_tests, err, sizeof(err)) == -1);
		char want[32];

		snprintf(want, sizeof(want), "tests[%u].%s[%u]: ", p.tests[i].test_index,
			 p.tests[i].expect_accept ? "accept" : "deny", p.tests[i].item_index);
		if (!CHECK(strncmp(err, want, strlen(want)) == 0))
			fprintf(stderr, "  got %s, want %s...\n", err, want);
		p.tests[i].expect_accept ^= 1;
	}
	p.tests[1].expect_accept = 1; /* web:85 -> tests[0].accept[1] */
	p.tests[2].expect_accept = 1; /* web:23 */
	CHECK(dp_acl_run_tests(acl, p.tests, p.n_tests, err, sizeof(err)) == -1);
	CHECK(
	    strcmp(err,
		   "tests[0].accept[0]: tcp 10.0.0.5 -> 10.1.0.1:23: expected accept, got deny") ==
	    0);
	printf("run_tests failure: %s\n", err);
	p.tests[2].expect_accept = 0;
	p.tests[5].expect_accept = 1; /* web6:22 */
	CHECK(dp_acl_run_tests(acl, p.tests, p.n_tests, err, sizeof(err)) == -1);
	CHECK(strstr(err, "tcp fd00::5 -> [fd01::1]:22: expected accept, got deny") != NULL);
	p.tests[5].expect_accept = 0;

	/* many tests: more than one burst */
	struct mg_acl_test *many = calloc(300, sizeof(*many));

	for (int i = 0; i < 300; i++) {
		many[i] = p.tests[i % p.n_tests];
		many[i].test_index = (uint32_t)i;
	}
	CHECK(dp_acl_run_tests(acl, many, 300, err, sizeof(err)) == 0);
	many[250].expect_accept ^= 1;
	CHECK(dp_acl_run_tests(acl, many, 300, err, sizeof(err)) == -1);
	CHECK(strncmp(err, "tests[250].", 11) == 0);
	free(many);

	/* no policy accepts everything */
	CHECK(dp_acl_run_tests(NULL, p.tests, 1, err, sizeof(err)) == 0);
	dp_acl_free(acl);
	mg_policy_free(&p);
}

/* Policy files named on the command line (the example): their tests pass. */
static void test_policy_files(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		struct mg_policy p;
		char err[512];

		if (!CHECK(mg_policy_load(argv[i], NULL, &p, err, sizeof(err)) == 0)) {
			fprintf(stderr, "  %s\n", err);
			continue;
		}
		struct dp_acl *acl = build_or_die(p.rules, p.n_rules);

		if (!CHECK(dp_acl_run_tests(acl, p.tests, p.n_tests, err, sizeof(err)) == 0))
			fprintf(stderr, "  %s: %s\n", argv[i], err);
		CHECK(p.n_tests > 0);
		dp_acl_free(acl);
		mg_policy_free(&p);
	}
}

static void test_build_errors(void)
{
	struct mg_acl_rule r = rule(AF_INET, 6, "\0\0\0\0", 33, "\0\0\0\0", 0, 0, 0);
	char err[256];

	CHECK(dp_acl_build(&r, 1, SOCKET_ID_ANY, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "rule 0") != NULL);
	r.src_len = 8;
	r.dport_lo = 2;
	r.dport_hi = 1;
	CHECK(dp_acl_build(&r, 1, SOCKET_ID_ANY, err, sizeof(err)) == NULL);
	r.family = 7;
	CHECK(dp_acl_build(&r, 1, SOCKET_ID_ANY, err, sizeof(err)) == NULL);
	CHECK(dp_flows_create(0, 16, TSC_HZ, 1, SOCKET_ID_ANY) == NULL);
	/* many contexts alive at once: unique names */
	struct dp_acl *v[20];

	r = rule(AF_INET6, 6, "", 0, "", 0, 1, 2);
	for (int i = 0; i < 20; i++)
		CHECK((v[i] = dp_acl_build(&r, 1, SOCKET_ID_ANY, err, sizeof(err))) != NULL);
	for (int i = 0; i < 20; i++)
		dp_acl_free(v[i]);
}

/* ---- a writer and a reader racing on the flow table ---- */

#define RACE_FLOWS 4096

struct race {
	struct dp_flows *fl;
	volatile int stop;
	uint64_t notes, lookups, hits, false_hits;
};

/* Flow i: every field derived from i, so mixing two flows' fields gives a flow never noted. */
static struct pdesc race_flow(uint32_t i)
{
	struct pdesc d = {.family = AF_INET6, .proto = IPPROTO_UDP};

	ip6(d.src, 0xfd00, 0);
	ip6(d.dst, 0xfd01, 0);
	memcpy(d.src + 8, &i, 4);
	memcpy(d.dst + 4, &i, 4);
	uint32_t j = i * 2654435761u;

	memcpy(d.dst + 12, &j, 4);
	d.sport = (uint16_t)(1024 + i);
	d.dport = (uint16_t)(60000 - i);
	return d;
}

static void *race_writer(void *arg)
{
	struct race *r = arg;
	uint8_t buf[PKT_MAX];
	uint64_t now = 1;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		for (uint32_t i = 0; i < RACE_FLOWS; i++) {
			struct pdesc d = race_flow(i);
			uint16_t len = build(&d, buf);

			dp_flows_note_out(r->fl, 0, now, buf, len);
			r->notes++;
		}
	}
	return NULL;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	uint64_t x = 7;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		struct dp_flow_key k;
		uint32_t a = (uint32_t)(x % RACE_FLOWS),
			 b = (uint32_t)((x / RACE_FLOWS) % RACE_FLOWS);
		struct pdesc da = race_flow(a), db = race_flow(b);
		uint8_t sp[2] = {(uint8_t)(da.sport >> 8), (uint8_t)da.sport};
		uint8_t dpa[2] = {(uint8_t)(da.dport >> 8), (uint8_t)da.dport};
		uint8_t dpb[2] = {(uint8_t)(db.dport >> 8), (uint8_t)db.dport};

		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		dp_flow_key_make(&k, AF_INET6, da.src, da.dst, sp, dpa); /* noted */
		r->hits += dp_flows_seen(r->fl, 2, &k);
		if (a != b) { /* a mix of two noted flows: never noted */
			dp_flow_key_make(&k, AF_INET6, da.src, db.dst, sp, dpa);
			r->false_hits += dp_flows_seen(r->fl, 2, &k);
			dp_flow_key_make(&k, AF_INET6, da.src, da.dst, sp, dpb);
			r->false_hits += dp_flows_seen(r->fl, 2, &k);
		}
		r->lookups++;
	}
	return NULL;
}

static void test_race(void)
{
	/* 256 entries for 4096 flows: entries are rewritten all the time */
	struct race r = {.fl = dp_flows_create(1, 256, TSC_HZ, 120, SOCKET_ID_ANY)};
	pthread_t w, rd;

	if (!CHECK(r.fl != NULL))
		return;
	pthread_create(&w, NULL, race_writer, &r);
	pthread_create(&rd, NULL, race_reader, &r);
	usleep(1000 * 1000);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(w, NULL);
	pthread_join(rd, NULL);
	printf("race: %" PRIu64 " notes, %" PRIu64 " lookups, %" PRIu64 " hits, %" PRIu64
	       " false hits\n",
	       r.notes, r.lookups, r.hits, r.false_hits);
	CHECK(r.false_hits == 0);
	CHECK(r.hits > 0);
	CHECK(r.lookups > 1000);
	dp_flows_free(r.fl);
}

/* A full table forgets the least recently seen flow of a bucket first. */
static void test_flow_eviction(void)
{
	struct dp_flows *fl = dp_flows_create(1, 4, TSC_HZ, 120, SOCKET_ID_ANY); /* one bucket */
	uint8_t buf[PKT_MAX];
	struct dp_flow_key k;

	if (!CHECK(fl != NULL))
		return;
	for (uint32_t i = 0; i < 5; i++) {
		struct pdesc d = race_flow(i);
		uint16_t len = build(&d, buf);

		dp_flows_note_out(fl, 0, 100 + i, buf, len);
	}
	for (uint32_t i = 0; i < 5; i++) {
		struct pdesc d = race_flow(i);
		uint8_t sp[2] = {(uint8_t)(d.sport >> 8), (uint8_t)d.sport};
		uint8_t dp[2] = {(uint8_t)(d.dport >> 8), (uint8_t)d.dport};

		dp_flow_key_make(&k, AF_INET6, d.src, d.dst, sp, dp);
		CHECK(dp_flows_seen(fl, 200, &k) == (i != 0));
	}
	/* a TCP packet is not noted */
	struct pdesc t = pkt4(IPPROTO_TCP, 1, 1, 22);
	uint16_t len = build(&t, buf);
	uint8_t sp[2] = {0x9c, 0x40}, dp[2] = {0, 22};

	dp_flows_note_out(fl, 0, 300, buf, len);
	dp_flow_key_make(&k, AF_INET, t.src, t.dst, sp, dp);
	CHECK(!dp_flows_seen(fl, 301, &k));
	dp_flows_free(fl);
}

int main(int argc, char **argv)
{
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

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(prefix, sizeof(prefix), "--file-prefix=acltest%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(eal_argv) - 1, eal_argv) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	test_semantics();
	test_build_errors();
	test_run_tests();
	test_policy_files(argc, argv);
	test_flow_eviction();
	test_race();
	test_differential();
	test_policy_scale();
	test_large(false);
	test_large(true);
	printf("test_acl: %d passed, %d failed\n", n_pass, n_fail);
	rte_eal_cleanup();
	return n_fail ? 1 : 0;
}
