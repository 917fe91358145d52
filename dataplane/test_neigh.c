/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for neigh.c. Frames are built byte by byte here, independently
 * of neigh.c (its own checksum code included), and replies are compared
 * with the frame we expect, whole. EAL runs without hugepages or devices.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include "neigh.h"

static int n_pass, n_fail;

#define CHECK(cond) check((cond), #cond, __func__, __LINE__)

static void check(bool ok, const char *what, const char *func, int line)
{
	if (ok) {
		n_pass++;
		return;
	}
	n_fail++;
	fprintf(stderr, "FAIL %s:%d: %s\n", func, line, what);
}

/* ---- Addresses used throughout ---- */

static const uint8_t OUR_MAC[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
/* fe80:: and the MAC as modified EUI-64 (U/L bit flipped, ff:fe inserted) */
static const uint8_t OUR_LL6[16] = {0xfe, 0x80, [8] = 0x50, 0x54, 0x00, 0xff,
				    0xfe, 0x12, 0x34, 0x56};
static const uint8_t OUR4_A[4] = {192, 0, 2, 1};
static const uint8_t OUR4_B[4] = {198, 51, 100, 1};
static const uint8_t OUR6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x01};

static const uint8_t PEER_MAC[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
static const uint8_t PEER2_MAC[6] = {0x52, 0x54, 0x00, 0xdd, 0xee, 0xff};
static const uint8_t PEER4[4] = {192, 0, 2, 10};
static const uint8_t PEER6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x10};
static const uint8_t PEER_LL6[16] = {0xfe, 0x80, [15] = 0x01};

static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t ZERO6[6];
static const uint8_t UNSPEC[16];
static const uint8_t ALL_NODES[16] = {0xff, 0x02, [15] = 0x01};
static const uint8_t ALL_NODES_MAC[6] = {0x33, 0x33, 0, 0, 0, 1};

static uint32_t be4(const uint8_t a[4])
{
	uint32_t v;

	memcpy(&v, a, 4);
	return v;
}

static void snmc(const uint8_t target[16], uint8_t out[16])
{
	static const uint8_t p[13] = {0xff, 0x02, [11] = 0x01, [12] = 0xff};

	memcpy(out, p, 13);
	memcpy(out + 13, target + 13, 3);
}

static void snmc_mac(const uint8_t target[16], uint8_t out[6])
{
	out[0] = 0x33;
	out[1] = 0x33;
	out[2] = 0xff;
	memcpy(out + 3, target + 13, 3);
}

/* ---- Independent frame building ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

/* RFC 4443 2.3 / RFC 8200 8.1: the value to store, big-endian. */
static uint16_t icmp6_cksum(const uint8_t src[16], const uint8_t dst[16], const uint8_t *icmp,
			    size_t len)
{
	uint32_t sum = sum16(src, 16, 0);

	sum = sum16(dst, 16, sum);
	sum += (uint32_t)len + 58;
	sum = sum16(icmp, len, sum);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

struct arp_args {
	const uint8_t *eth_dst, *sha, *sip, *tha, *tip;
	uint16_t op;
};

static size_t arp_frame(uint8_t *f, const struct arp_args *a)
{
	memcpy(f, a->eth_dst, 6);
	memcpy(f + 6, a->sha, 6);
	put16(f + 12, 0x0806);
	put16(f + 14, 1);
	put16(f + 16, 0x0800);
	f[18] = 6;
	f[19] = 4;
	put16(f + 20, a->op);
	memcpy(f + 22, a->sha, 6);
	memcpy(f + 28, a->sip, 4);
	memcpy(f + 32, a->tha, 6);
	memcpy(f + 38, a->tip, 4);
	return 42;
}

struct nd_args {
	const uint8_t *eth_dst, *eth_src, *src, *dst, *target;
	const uint8_t *opt_mac; /* NULL: no option */
	uint8_t type, code, flags, hop, opt_type;
};

static size_t nd_frame(uint8_t *f, const struct nd_args *a)
{
	size_t plen = 24 + (a->opt_mac ? 8 : 0);
	uint8_t *ip = f + 14, *icmp = ip + 40;

	memset(f, 0, 14 + 40 + plen);
	memcpy(f, a->eth_dst, 6);
	memcpy(f + 6, a->eth_src, 6);
	put16(f + 12, 0x86dd);
	ip[0] = 0x60;
	put16(ip + 4, plen);
	ip[6] = 58;
	ip[7] = a->hop;
	memcpy(ip + 8, a->src, 16);
	memcpy(ip + 24, a->dst, 16);
	icmp[0] = a->type;
	icmp[1] = a->code;
	icmp[4] = a->flags;
	memcpy(icmp + 8, a->target, 16);
	if (a->opt_mac) {
		icmp[24] = a->opt_type;
		icmp[25] = 1;
		memcpy(icmp + 26, a->opt_mac, 6);
	}
	put16(icmp + 2, icmp6_cksum(a->src, a->dst, icmp, plen));
	return 14 + 40 + plen;
}

/* NS from src (SLLA = opt_mac unless NULL) for target, to its solicited-node group. */
static struct nd_args ns_args(const uint8_t *src, const uint8_t *target, const uint8_t *opt_mac,
			      uint8_t dst_buf[16], uint8_t mac_buf[6])
{
	snmc(target, dst_buf);
	snmc_mac(target, mac_buf);
	return (struct nd_args){.eth_dst = mac_buf, .eth_src = PEER_MAC, .src = src,
				.dst = dst_buf, .target = target, .opt_mac = opt_mac,
				.type = 135, .hop = 255, .opt_type = 1};
}

/* The NA we expect from the gateway, built here. */
static struct nd_args na_expected(const uint8_t *eth_dst, const uint8_t *dst,
				  const uint8_t *target, uint8_t flags)
{
	return (struct nd_args){.eth_dst = eth_dst, .eth_src = OUR_MAC, .src = target,
				.dst = dst, .target = target, .opt_mac = OUR_MAC,
				.type = 136, .flags = flags, .hop = 255, .opt_type = 2};
}

/* ---- Fixture ---- */

struct fx {
	struct rte_mempool *mp;
	struct dp_neigh_table *t;
	struct dp_neigh_iface ifc;
};

static struct rte_mempool *g_mp;
static int g_table_seq;

static struct dp_neigh_table *table_new(uint32_t max)
{
	char name[32];

	snprintf(name, sizeof(name), "nt%d", g_table_seq++);
	return dp_neigh_create(name, max, SOCKET_ID_ANY);
}

static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->mp = g_mp;
	f->t = table_new(256);
	memcpy(f->ifc.mac.addr_bytes, OUR_MAC, 6);
	f->ifc.port_id = 3;
	f->ifc.addr4[0] = be4(OUR4_A);
	f->ifc.plen4[0] = 24;
	f->ifc.addr4[1] = be4(OUR4_B);
	f->ifc.plen4[1] = 24;
	f->ifc.n_addr4 = 2;
	memcpy(f->ifc.addr6[0], OUR6, 16);
	f->ifc.plen6[0] = 64;
	f->ifc.n_addr6 = 1;
	dp_neigh_iface_init(&f->ifc);
}

static void fx_fini(struct fx *f)
{
	dp_neigh_destroy(f->t);
	/* Every mbuf handed in or out has been freed. */
	CHECK(rte_mempool_in_use_count(g_mp) == 0);
}

static struct rte_mbuf *mbuf_from(const uint8_t *buf, size_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(g_mp);
	char *p;

	if (!m)
		abort();
	p = rte_pktmbuf_append(m, (uint16_t)len);
	if (!p && len)
		abort();
	if (len)
		memcpy(p, buf, len);
	return m;
}

static struct rte_mbuf *feed(struct fx *f, const uint8_t *buf, size_t len, uint64_t now)
{
	return dp_neigh_input(f->t, &f->ifc, mbuf_from(buf, len), f->mp, now);
}

static struct dp_neigh_stats stats(const struct fx *f)
{
	struct dp_neigh_stats s;

	dp_neigh_get_stats(f->t, &s);
	return s;
}

static bool has4(const struct fx *f, const uint8_t ip[4], const uint8_t mac[6])
{
	struct rte_ether_addr m;

	return dp_neigh_lookup4(f->t, f->ifc.port_id, be4(ip), &m) == 0 &&
	       memcmp(m.addr_bytes, mac, 6) == 0;
}

static bool has6(const struct fx *f, const uint8_t ip[16], const uint8_t mac[6])
{
	struct rte_ether_addr m;

	return dp_neigh_lookup6(f->t, f->ifc.port_id, ip, &m) == 0 &&
	       memcmp(m.addr_bytes, mac, 6) == 0;
}

static void count_cb(void *arg, uint16_t port, int family, const uint8_t *ip,
		     const struct rte_ether_addr *mac, uint64_t tsc)
{
	(void)port, (void)family, (void)ip, (void)mac, (void)tsc;
	(*(int *)arg)++;
}

static int n_entries(const struct fx *f)
{
	int n = 0;

	dp_neigh_walk(f->t, count_cb, &n);
	return n;
}

/* Compares a reply with the expected frame, then frees it. */
static bool frame_is(struct rte_mbuf *r, const uint8_t *want, size_t len)
{
	bool ok = r && rte_pktmbuf_pkt_len(r) == len && rte_pktmbuf_is_contiguous(r) &&
		  memcmp(rte_pktmbuf_mtod(r, const uint8_t *), want, len) == 0;

	if (r && !ok) {
		fprintf(stderr, "  got %u bytes:", rte_pktmbuf_pkt_len(r));
		for (unsigned i = 0; i < rte_pktmbuf_data_len(r); i++)
			fprintf(stderr, " %02x", rte_pktmbuf_mtod(r, const uint8_t *)[i]);
		fprintf(stderr, "\n");
	}
	rte_pktmbuf_free(r);
	return ok;
}

/* Checksum of a received NA/NS frame, by our own code. */
static bool nd_cksum_ok(const struct rte_mbuf *r)
{
	const uint8_t *ip = rte_pktmbuf_mtod_offset(r, const uint8_t *, 14);
	size_t plen = (size_t)ip[4] << 8 | ip[5];

	return icmp6_cksum(ip + 8, ip + 24, ip + 40, plen) == 0;
}

/* ---- Tests ---- */

static void test_iface_init(void)
{
	struct fx f;

	fx_init(&f);
	CHECK(memcmp(f.ifc.ll6, OUR_LL6, 16) == 0);
	fx_fini(&f);
}

static void test_arp_request_for_us(void)
{
	struct fx f;
	uint8_t req[60] = {0}, want[60] = {0};
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_B, 1};
	struct arp_args r = {PEER_MAC, OUR_MAC, OUR4_B, PEER_MAC, PEER4, 2};
	struct rte_mbuf *reply;

	fx_init(&f);
	arp_frame(req, &a);
	arp_frame(want, &r);
	reply = feed(&f, req, sizeof(req), 7); /* padded to 60, as on the wire */
	CHECK(reply && reply->port == 3);
	CHECK(reply && rte_pktmbuf_mtod(reply, uint8_t *)[21] == 2); /* opcode reply */
	CHECK(frame_is(reply, want, sizeof(want)));
	CHECK(has4(&f, PEER4, PEER_MAC));
	CHECK(stats(&f).arp_in == 1 && stats(&f).arp_replies == 1 && stats(&f).learned == 1);
	CHECK(stats(&f).malformed == 0);
	fx_fini(&f);
}

static void test_arp_request_other(void)
{
	static const uint8_t other[4] = {192, 0, 2, 99};
	struct fx f;
	uint8_t req[42];
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, other, 1};

	fx_init(&f);
	arp_frame(req, &a);
	CHECK(feed(&f, req, sizeof(req), 7) == NULL);
	CHECK(has4(&f, PEER4, PEER_MAC));
	CHECK(stats(&f).arp_in == 1 && stats(&f).arp_replies == 0);
	fx_fini(&f);
}

static void test_arp_gratuitous_and_reply(void)
{
	static const uint8_t ip20[4] = {192, 0, 2, 20};
	struct fx f;
	uint8_t fr[42];
	struct arp_args garp = {BCAST, PEER_MAC, ip20, BCAST, ip20, 1};
	struct arp_args garp_ours = {BCAST, PEER2_MAC, OUR4_A, ZERO6, OUR4_A, 1};
	struct arp_args rep = {OUR_MAC, PEER2_MAC, ip20, OUR_MAC, OUR4_A, 2};

	fx_init(&f);
	arp_frame(fr, &garp);
	CHECK(feed(&f, fr, sizeof(fr), 1) == NULL);
	CHECK(has4(&f, ip20, PEER_MAC));
	/* Someone announcing our address: neither learned nor answered. */
	arp_frame(fr, &garp_ours);
	CHECK(feed(&f, fr, sizeof(fr), 2) == NULL);
	CHECK(dp_neigh_lookup4(f.t, f.ifc.port_id, be4(OUR4_A), &(struct rte_ether_addr){}) ==
	      -ENOENT);
	/* A reply moves the entry to a new MAC. */
	arp_frame(fr, &rep);
	CHECK(feed(&f, fr, sizeof(fr), 3) == NULL);
	CHECK(has4(&f, ip20, PEER2_MAC));
	CHECK(stats(&f).learned == 2 && stats(&f).arp_in == 3 && n_entries(&f) == 1);
	/* Learned for the port it came in on only. */
	CHECK(dp_neigh_lookup4(f.t, f.ifc.port_id + 1, be4(ip20), &(struct rte_ether_addr){}) ==
	      -ENOENT);
	fx_fini(&f);
}

static void test_arp_probe(void)
{
	static const uint8_t zero4[4];
	struct fx f;
	uint8_t fr[42], want[60] = {0};
	struct arp_args probe = {BCAST, PEER_MAC, zero4, ZERO6, OUR4_A, 1};
	struct arp_args r = {PEER_MAC, OUR_MAC, OUR4_A, PEER_MAC, zero4, 2};

	fx_init(&f);
	arp_frame(fr, &probe);
	arp_frame(want, &r);
	CHECK(frame_is(feed(&f, fr, sizeof(fr), 1), want, sizeof(want)));
	CHECK(n_entries(&f) == 0);
	fx_fini(&f);
}

static void test_arp_malformed(void)
{
	static const uint8_t mcast_mac[6] = {0x01, 0, 0x5e, 0, 0, 1};
	static const uint8_t lo[4] = {127, 0, 0, 1};
	struct fx f;
	uint8_t fr[42];
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_A, 1};
	struct arp_args bad_sha = {BCAST, mcast_mac, PEER4, ZERO6, OUR4_A, 1};
	struct arp_args bad_sip = {BCAST, PEER_MAC, lo, ZERO6, OUR4_A, 1};
	struct arp_args bad_op = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_A, 3};
	/* byte offset, value: hardware type, protocol type, hlen, plen */
	static const struct {
		int off;
		uint8_t val;
	} pokes[] = {{15, 6}, {16, 0x86}, {18, 8}, {19, 16}};

	fx_init(&f);
	for (size_t i = 0; i < RTE_DIM(pokes); i++) {
		arp_frame(fr, &a);
		fr[pokes[i].off] = pokes[i].val;
		CHECK(feed(&f, fr, sizeof(fr), 1) == NULL);
	}
	arp_frame(fr, &bad_sha);
	CHECK(feed(&f, fr, sizeof(fr), 1) == NULL);
	arp_frame(fr, &bad_sip);
	CHECK(feed(&f, fr, sizeof(fr), 1) == NULL);
	arp_frame(fr, &bad_op);
	CHECK(feed(&f, fr, sizeof(fr), 1) == NULL);
	CHECK(stats(&f).malformed == RTE_DIM(pokes) + 3);
	CHECK(stats(&f).arp_in == 0 && n_entries(&f) == 0);
	fx_fini(&f);
}

static void test_ns_global(void)
{
	struct fx f;
	uint8_t fr[128], want[128], dst[16], dmac[6];
	struct nd_args ns = ns_args(PEER6, OUR6, PEER_MAC, dst, dmac);
	struct nd_args na = na_expected(PEER_MAC, PEER6, OUR6, 0xe0);
	struct rte_mbuf *r;
	size_t len;

	fx_init(&f);
	nd_frame(fr, &ns);
	len = nd_frame(want, &na);
	r = feed(&f, fr, 86, 5);
	CHECK(r && nd_cksum_ok(r));
	/* Solicited and override set (byte 4 of the ICMPv6 header). */
	CHECK(r && (rte_pktmbuf_mtod(r, uint8_t *)[58] & 0x60) == 0x60);
	CHECK(frame_is(r, want, len));
	CHECK(has6(&f, PEER6, PEER_MAC));
	CHECK(stats(&f).ns_in == 1 && stats(&f).na_sent == 1 && stats(&f).malformed == 0);
	fx_fini(&f);
}

static void test_ns_link_local(void)
{
	struct fx f;
	uint8_t fr[128], want[128], dst[16], dmac[6];
	struct nd_args ns = ns_args(PEER_LL6, OUR_LL6, PEER_MAC, dst, dmac);
	struct nd_args na = na_expected(PEER_MAC, PEER_LL6, OUR_LL6, 0xe0);
	struct rte_mbuf *r;
	size_t len;

	fx_init(&f);
	nd_frame(fr, &ns);
	len = nd_frame(want, &na);
	r = feed(&f, fr, 86, 5);
	CHECK(r && nd_cksum_ok(r));
	CHECK(frame_is(r, want, len));
	CHECK(has6(&f, PEER_LL6, PEER_MAC));
	fx_fini(&f);
}

/* Unicast NUD probe without SLLA: answered to the Ethernet source. */
static void test_ns_unicast_no_option(void)
{
	struct fx f;
	uint8_t fr[128], want[128], dst[16], dmac[6];
	struct nd_args ns = ns_args(PEER6, OUR6, NULL, dst, dmac);
	struct nd_args na = na_expected(PEER_MAC, PEER6, OUR6, 0xe0);
	size_t len;

	fx_init(&f);
	ns.dst = OUR6;
	ns.eth_dst = OUR_MAC;
	nd_frame(fr, &ns);
	len = nd_frame(want, &na);
	CHECK(frame_is(feed(&f, fr, 78, 5), want, len));
	CHECK(n_entries(&f) == 0);
	fx_fini(&f);
}

static void test_ns_dad(void)
{
	static const uint8_t other[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x77};
	struct fx f;
	uint8_t fr[128], want[128], dst[16], dmac[6];
	struct nd_args ns = ns_args(UNSPEC, OUR6, NULL, dst, dmac);
	struct nd_args na = na_expected(ALL_NODES_MAC, ALL_NODES, OUR6, 0xa0);
	struct rte_mbuf *r;
	size_t len;

	fx_init(&f);
	nd_frame(fr, &ns);
	len = nd_frame(want, &na);
	r = feed(&f, fr, 78, 5);
	CHECK(r && (rte_pktmbuf_mtod(r, uint8_t *)[58] & 0x40) == 0); /* not solicited */
	CHECK(frame_is(r, want, len));
	/* Someone else's DAD: no answer. */
	ns = ns_args(UNSPEC, other, NULL, dst, dmac);
	nd_frame(fr, &ns);
	CHECK(feed(&f, fr, 78, 5) == NULL);
	/* DAD must not carry a source link-layer option. */
	ns = ns_args(UNSPEC, other, PEER_MAC, dst, dmac);
	nd_frame(fr, &ns);
	CHECK(feed(&f, fr, 86, 5) == NULL);
	CHECK(n_entries(&f) == 0 && stats(&f).learned == 0);
	CHECK(stats(&f).ns_in == 2 && stats(&f).malformed == 1);
	fx_fini(&f);
}

/* Recomputes the ICMPv6 checksum after a test pokes at a frame. */
static void nd_resum(uint8_t *fr)
{
	uint8_t *ip = fr + 14;
	size_t plen = (size_t)ip[4] << 8 | ip[5];

	put16(ip + 42, 0);
	put16(ip + 42, icmp6_cksum(ip + 8, ip + 24, ip + 40, plen));
}

/* Each case breaks a valid NS in one way; none may be learned or answered. */
static void test_nd_malformed(void)
{
	static const uint8_t mc_target[16] = {0xff, 0x02, [15] = 0x02};
	/* byte offset in the frame, value; the checksum is fixed up after */
	static const struct {
		int off;
		uint8_t val;
	} pokes[] = {
		{14 + 7, 64},      /* hop limit */
		{14 + 40 + 1, 1},  /* code */
		{14 + 40 + 25, 0}, /* option length 0 */
		{14 + 40 + 25, 2}, /* option longer than the packet */
		{14 + 6, 17},      /* next header UDP */
		{14, 0x40},        /* version 4 */
		{14 + 5, 33},      /* payload length beyond the frame */
	};
	struct fx f;
	uint8_t fr[128] = {0}, dst[16], dmac[6];
	struct nd_args ns = ns_args(PEER6, OUR6, PEER_MAC, dst, dmac);
	uint64_t n = 0;

	fx_init(&f);
	for (size_t i = 0; i < RTE_DIM(pokes); i++, n++) {
		nd_frame(fr, &ns);
		fr[pokes[i].off] = pokes[i].val;
		nd_resum(fr);
		CHECK(feed(&f, fr, 86, 1) == NULL);
		CHECK(stats(&f).malformed == n + 1);
	}
	nd_frame(fr, &ns);
	fr[14 + 40 + 3] ^= 1; /* checksum */
	CHECK(feed(&f, fr, 86, 1) == NULL && stats(&f).malformed == ++n);
	ns.target = mc_target;
	nd_frame(fr, &ns);
	CHECK(feed(&f, fr, 86, 1) == NULL && stats(&f).malformed == ++n);
	ns = ns_args(ALL_NODES, OUR6, PEER_MAC, dst, dmac); /* multicast source */
	nd_frame(fr, &ns);
	CHECK(feed(&f, fr, 86, 1) == NULL && stats(&f).malformed == ++n);
	CHECK(n_entries(&f) == 0 && stats(&f).ns_in == 0 && stats(&f).na_sent == 0);
	fx_fini(&f);
}

static void test_na(void)
{
	static const uint8_t peer20[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x20};
	struct fx f;
	uint8_t fr[128];
	struct nd_args na = {.eth_dst = OUR_MAC, .eth_src = PEER_MAC, .src = peer20, .dst = OUR6,
			     .target = peer20, .opt_mac = PEER_MAC, .type = 136, .flags = 0x60,
			     .hop = 255, .opt_type = 2};
	struct rte_ether_addr m;

	fx_init(&f);
	nd_frame(fr, &na);
	CHECK(feed(&f, fr, 86, 10) == NULL);
	CHECK(has6(&f, peer20, PEER_MAC));
	/* Without override a known MAC stays. */
	na.opt_mac = PEER2_MAC;
	na.flags = 0x40;
	nd_frame(fr, &na);
	CHECK(feed(&f, fr, 86, 11) == NULL && has6(&f, peer20, PEER_MAC));
	na.flags = 0x60;
	nd_frame(fr, &na);
	CHECK(feed(&f, fr, 86, 12) == NULL && has6(&f, peer20, PEER2_MAC));
	/* No option: a solicited advert confirms, so aging at 30 keeps it. */
	na.opt_mac = NULL;
	nd_frame(fr, &na);
	CHECK(feed(&f, fr, 78, 20) == NULL);
	CHECK(dp_neigh_age(f.t, 30, 15) == 0 && has6(&f, peer20, PEER2_MAC));
	/* A multicast advert cannot be solicited. */
	na.dst = ALL_NODES;
	na.opt_mac = PEER_MAC;
	nd_frame(fr, &na);
	CHECK(feed(&f, fr, 86, 21) == NULL && has6(&f, peer20, PEER2_MAC));
	/* An advert for our own address is not learned. */
	na.flags = 0x20;
	na.target = OUR6;
	nd_frame(fr, &na);
	CHECK(feed(&f, fr, 86, 22) == NULL &&
	      dp_neigh_lookup6(f.t, f.ifc.port_id, OUR6, &m) == -ENOENT);
	CHECK(stats(&f).na_in == 5 && stats(&f).malformed == 1 && stats(&f).learned == 2);
	fx_fini(&f);
}

/* Valid frames cut short at every length, then garbage of every length. */
static void test_truncated_and_garbage(void)
{
	struct fx f;
	uint8_t arp[42], ns[86], na[86], g[101], dst[16], dmac[6];
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_A, 1};
	struct nd_args nsa = ns_args(PEER6, OUR6, PEER_MAC, dst, dmac);
	struct nd_args naa = na_expected(OUR_MAC, OUR6, PEER6, 0x60);
	const uint8_t *frames[] = {arp, ns, na};
	const size_t lens[] = {42, 86, 86};
	uint64_t want = 0;
	bool all_null = true;

	fx_init(&f);
	arp_frame(arp, &a);
	nd_frame(ns, &nsa);
	naa.eth_src = PEER_MAC;
	naa.opt_mac = PEER_MAC;
	nd_frame(na, &naa);
	for (size_t i = 0; i < RTE_DIM(frames); i++)
		for (size_t len = 0; len < lens[i]; len++, want++)
			all_null &= feed(&f, frames[i], len, 1) == NULL;
	CHECK(all_null && stats(&f).malformed == want);
	srand(42);
	for (size_t len = 0; len <= 100; len++) {
		for (size_t k = 0; k < 3; k++, want++) {
			for (size_t j = 0; j < len; j++)
				g[j] = rand() & 0xff;
			if (len >= 14 && k < 2) /* reach the ARP and the ND parser */
				put16(g + 12, k ? 0x86dd : 0x0806);
			if (len >= 55 && k == 1)
				g[20] = 58, g[54] = 135 + (len & 1);
			all_null &= feed(&f, g, len, 1) == NULL;
		}
	}
	CHECK(all_null && stats(&f).malformed == want);
	CHECK(n_entries(&f) == 0);
	fx_fini(&f);
}

static void test_multi_segment(void)
{
	struct fx f;
	uint8_t req[42], want[60] = {0};
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_A, 1};
	struct arp_args r = {PEER_MAC, OUR_MAC, OUR4_A, PEER_MAC, PEER4, 2};
	struct rte_mbuf *m1, *m2;

	fx_init(&f);
	arp_frame(req, &a);
	arp_frame(want, &r);
	m1 = mbuf_from(req, 20);
	m2 = mbuf_from(req + 20, 22);
	CHECK(rte_pktmbuf_chain(m1, m2) == 0);
	CHECK(frame_is(dp_neigh_input(f.t, &f.ifc, m1, f.mp, 1), want, sizeof(want)));
	fx_fini(&f);
}

static void test_no_mbuf(void)
{
	struct fx f;
	uint8_t req[42];
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_A, 1};
	struct rte_mempool *empty = rte_pktmbuf_pool_create("empty", 1, 0, 0, 256, SOCKET_ID_ANY);
	struct rte_mbuf *hold = empty ? rte_pktmbuf_alloc(empty) : NULL;

	fx_init(&f);
	CHECK(hold != NULL);
	arp_frame(req, &a);
	CHECK(dp_neigh_input(f.t, &f.ifc, mbuf_from(req, 42), empty, 1) == NULL);
	CHECK(stats(&f).no_mbuf == 1 && stats(&f).arp_replies == 0);
	CHECK(has4(&f, PEER4, PEER_MAC));
	rte_pktmbuf_free(hold);
	rte_mempool_free(empty);
	fx_fini(&f);
}

static void test_is_neigh_packet(void)
{
	uint8_t fr[128], dst[16], dmac[6];
	struct arp_args a = {BCAST, PEER_MAC, PEER4, ZERO6, OUR4_A, 1};
	struct nd_args ns = ns_args(PEER6, OUR6, PEER_MAC, dst, dmac);
	struct rte_mbuf *m;

	arp_frame(fr, &a);
	m = mbuf_from(fr, 42);
	CHECK(dp_neigh_is_neigh_packet(m));
	rte_pktmbuf_free(m);
	for (int type = 133; type <= 137; type++) {
		ns.type = type;
		nd_frame(fr, &ns);
		m = mbuf_from(fr, 86);
		CHECK(dp_neigh_is_neigh_packet(m) == (type == 135 || type == 136));
		rte_pktmbuf_free(m);
	}
	fr[20] = 17; /* UDP */
	m = mbuf_from(fr, 86);
	CHECK(!dp_neigh_is_neigh_packet(m));
	rte_pktmbuf_free(m);
	put16(fr + 12, 0x0800);
	for (size_t len = 0; len <= 86; len += 13) {
		m = mbuf_from(fr, len);
		CHECK(!dp_neigh_is_neigh_packet(m));
		rte_pktmbuf_free(m);
	}
	CHECK(rte_mempool_in_use_count(g_mp) == 0);
}

static void test_solicit4(void)
{
	static const uint8_t t1[4] = {198, 51, 100, 7}, t2[4] = {203, 0, 113, 5};
	struct fx f;
	uint8_t want[60] = {0};
	struct arp_args on_b = {BCAST, OUR_MAC, OUR4_B, ZERO6, t1, 1};
	struct arp_args first = {BCAST, OUR_MAC, OUR4_A, ZERO6, t2, 1};

	fx_init(&f);
	arp_frame(want, &on_b);
	CHECK(frame_is(dp_neigh_solicit4(&f.ifc, f.mp, be4(t1)), want, sizeof(want)));
	arp_frame(want, &first);
	CHECK(frame_is(dp_neigh_solicit4(&f.ifc, f.mp, be4(t2)), want, sizeof(want)));
	fx_fini(&f);
}

static void test_solicit6(void)
{
	static const uint8_t g[16] = {0x20, 0x01, 0x0d, 0xb8, [12] = 0xab, 0xcd, 0xef, 0x12};
	static const uint8_t ll[16] = {0xfe, 0x80, [12] = 0x12, 0x34, 0x56, 0x78};
	static const uint8_t mac_g[6] = {0x33, 0x33, 0xff, 0xcd, 0xef, 0x12};
	static const uint8_t ip_g[16] = {0xff, 0x02, [11] = 0x01, 0xff, 0xcd, 0xef, 0x12};
	struct fx f;
	uint8_t want[128], dst[16], dmac[6];
	struct nd_args ns = ns_args(OUR6, g, OUR_MAC, dst, dmac);
	struct rte_mbuf *r;
	size_t len;

	fx_init(&f);
	ns.eth_src = OUR_MAC;
	CHECK(memcmp(dmac, mac_g, 6) == 0 && memcmp(dst, ip_g, 16) == 0);
	len = nd_frame(want, &ns);
	r = dp_neigh_solicit6(&f.ifc, f.mp, g);
	CHECK(r && nd_cksum_ok(r) && r->port == 3);
	CHECK(frame_is(r, want, len));
	/* A link-local target is solicited from our link-local address. */
	ns = ns_args(OUR_LL6, ll, OUR_MAC, dst, dmac);
	ns.eth_src = OUR_MAC;
	len = nd_frame(want, &ns);
	CHECK(frame_is(dp_neigh_solicit6(&f.ifc, f.mp, ll), want, len));
	CHECK(dp_neigh_solicit6(&f.ifc, f.mp, ALL_NODES) == NULL && rte_errno == EINVAL);
	fx_fini(&f);
}

static void test_update_lookup(void)
{
	static const uint8_t mc[6] = {0x01, 0x00, 0x5e, 0, 0, 1};
	struct fx f;
	struct rte_ether_addr peer, m;

	fx_init(&f);
	memcpy(peer.addr_bytes, PEER_MAC, 6);
	CHECK(dp_neigh_lookup4(f.t, f.ifc.port_id, be4(PEER4), &m) == -ENOENT);
	CHECK(dp_neigh_update4(f.t, f.ifc.port_id, be4(PEER4), &peer, 1) == 0 &&
	      has4(&f, PEER4, PEER_MAC));
	CHECK(dp_neigh_update6(f.t, f.ifc.port_id, PEER6, &peer, 1) == 0 &&
	      has6(&f, PEER6, PEER_MAC));
	/* The same bytes as IPv4 and IPv6 keys do not collide. */
	CHECK(dp_neigh_lookup6(f.t, f.ifc.port_id, (const uint8_t[16]){192, 0, 2, 10}, &m) ==
	      -ENOENT);
	memcpy(m.addr_bytes, mc, 6);
	CHECK(dp_neigh_update4(f.t, f.ifc.port_id, be4(PEER4), &m, 2) == -EINVAL &&
	      has4(&f, PEER4, PEER_MAC));
	memset(&m, 0, sizeof(m));
	CHECK(dp_neigh_update6(f.t, f.ifc.port_id, PEER6, &m, 2) == -EINVAL);
	CHECK(stats(&f).learned == 2 && n_entries(&f) == 2);
	CHECK(dp_neigh_create("bad", 0, SOCKET_ID_ANY) == NULL && rte_errno == EINVAL);
	fx_fini(&f);
}

/*
 * Entries are per port: what a port learned is neither found nor changed
 * through another, and the same address may have a MAC on each.
 */
static void test_per_port(void)
{
	const uint16_t here = 3, there = 4;
	struct fx f;
	struct rte_ether_addr peer, other, m;

	fx_init(&f);
	CHECK(f.ifc.port_id == here);
	memcpy(peer.addr_bytes, PEER_MAC, 6);
	memcpy(other.addr_bytes, PEER2_MAC, 6);
	CHECK(dp_neigh_update4(f.t, here, be4(PEER4), &peer, 1) == 0);
	CHECK(dp_neigh_lookup4(f.t, there, be4(PEER4), &m) == -ENOENT);
	CHECK(dp_neigh_update4(f.t, there, be4(PEER4), &other, 2) == 0);
	CHECK(dp_neigh_lookup4(f.t, here, be4(PEER4), &m) == 0 && !memcmp(&m, PEER_MAC, 6));
	CHECK(dp_neigh_lookup4(f.t, there, be4(PEER4), &m) == 0 && !memcmp(&m, PEER2_MAC, 6));
	CHECK(dp_neigh_update6(f.t, there, PEER6, &other, 3) == 0);
	CHECK(dp_neigh_lookup6(f.t, here, PEER6, &m) == -ENOENT);
	/* the either-family lookup the transmit paths use, on the same keys */
	uint32_t p4 = be4(PEER4);
	CHECK(dp_neigh_lookup(f.t, there, AF_INET, (const uint8_t *)&p4, &m) == 0 &&
	      !memcmp(&m, PEER2_MAC, 6));
	CHECK(dp_neigh_lookup(f.t, there, AF_INET6, PEER6, &m) == 0 && !memcmp(&m, PEER2_MAC, 6));
	CHECK(dp_neigh_lookup(f.t, here, AF_INET6, PEER6, &m) == -ENOENT);
	CHECK(n_entries(&f) == 3 && stats(&f).learned == 3);
	/* Only the port's own entries age by its refreshes. */
	CHECK(dp_neigh_update4(f.t, here, be4(PEER4), &peer, 10) == 0);
	CHECK(dp_neigh_age(f.t, 12, 5) == 2 && has4(&f, PEER4, PEER_MAC));
	fx_fini(&f);
}

struct walk_seen {
	uint32_t ports; /* bit per port seen */
	int v4, v6;
	uint64_t tsc_sum;
};

static void walk_cb(void *arg, uint16_t port, int family, const uint8_t *ip,
		    const struct rte_ether_addr *mac, uint64_t tsc)
{
	struct walk_seen *w = arg;

	w->ports |= 1u << (port & 31);
	if (family == AF_INET && memcmp(ip, PEER4, 4) == 0 && !memcmp(mac, PEER_MAC, 6))
		w->v4++;
	if (family == AF_INET6 && memcmp(ip, PEER6, 16) == 0 && !memcmp(mac, PEER2_MAC, 6))
		w->v6++;
	w->tsc_sum += tsc;
}

static void test_aging_and_walk(void)
{
	static const uint8_t old4[4] = {192, 0, 2, 30};
	struct fx f;
	struct rte_ether_addr p1, p2;
	struct walk_seen w = {0};

	fx_init(&f);
	memcpy(p1.addr_bytes, PEER_MAC, 6);
	memcpy(p2.addr_bytes, PEER2_MAC, 6);
	dp_neigh_update4(f.t, f.ifc.port_id, be4(old4), &p1, 100);
	dp_neigh_update4(f.t, f.ifc.port_id, be4(PEER4), &p1, 200);
	dp_neigh_update6(f.t, f.ifc.port_id, PEER6, &p2, 300);
	dp_neigh_update4(f.t, f.ifc.port_id, be4(PEER4), &p1, 260); /* refresh */
	CHECK(dp_neigh_age(f.t, 1000, 750) == 1); /* 900 > 750; 740 and 700 are not */
	CHECK(dp_neigh_lookup4(f.t, f.ifc.port_id, be4(old4), &p2) == -ENOENT);
	CHECK(has4(&f, PEER4, PEER_MAC) && has6(&f, PEER6, PEER2_MAC));
	dp_neigh_walk(f.t, walk_cb, &w);
	CHECK(w.v4 == 1 && w.v6 == 1 && w.tsc_sum == 560 && w.ports == 1u << f.ifc.port_id);
	CHECK(dp_neigh_age(f.t, 1000, 0) == 2 && n_entries(&f) == 0);
	fx_fini(&f);
}

static struct rte_rcu_qsbr *qsbr_new(void)
{
	size_t sz = rte_rcu_qsbr_get_memsize(1);
	struct rte_rcu_qsbr *v = rte_zmalloc("qsbr", sz, RTE_CACHE_LINE_SIZE);

	if (!v || rte_rcu_qsbr_init(v, 1) != 0)
		abort();
	return v;
}

static void fill(struct dp_neigh_table *t, int base, int n, uint64_t now, int *ok)
{
	struct rte_ether_addr mac = {{0x02, 0, 0, 0, 0, 0}};

	*ok = 0;
	for (int i = 0; i < n; i++) {
		uint32_t ip = rte_cpu_to_be_32(0x0a000000 + base + i);

		mac.addr_bytes[5] = (uint8_t)(base + i);
		*ok += dp_neigh_update4(t, 0, ip, &mac, now) == 0;
	}
}

static void test_full_and_grace_period(void)
{
	struct dp_neigh_table *t = table_new(8);
	struct rte_rcu_qsbr *v = qsbr_new();
	struct dp_neigh_stats s;
	struct rte_ether_addr other = {{0x02, 0, 0, 0, 0, 0x99}}, m;
	int ok;

	CHECK(t != NULL);
	fill(t, 1, 9, 1, &ok);
	dp_neigh_get_stats(t, &s);
	CHECK(ok == 8 && s.table_full == 1);
	/* Changing a MAC still works when full. */
	CHECK(dp_neigh_update4(t, 0, rte_cpu_to_be_32(0x0a000001), &other, 2) == 0);
	CHECK(dp_neigh_lookup4(t, 0, rte_cpu_to_be_32(0x0a000001), &m) == 0);
	CHECK(m.addr_bytes[5] == 0x99);
	/* Without RCU the aged slots stay parked. */
	CHECK(dp_neigh_age(t, 10, 0) == 8);
	fill(t, 20, 1, 11, &ok);
	CHECK(ok == 0 && dp_neigh_reclaim(t) == 0);
	/* With a reader online they wait for its quiescent state. */
	CHECK(rte_rcu_qsbr_thread_register(v, 0) == 0);
	rte_rcu_qsbr_thread_online(v, 0);
	dp_neigh_set_rcu(t, v);
	CHECK(dp_neigh_reclaim(t) == 0);
	rte_rcu_qsbr_quiescent(v, 0);
	CHECK(dp_neigh_reclaim(t) == 8);
	fill(t, 20, 8, 12, &ok);
	CHECK(ok == 8);
	/* Aged while a reader is online: freed only after it reports. */
	CHECK(dp_neigh_age(t, 20, 0) == 8);
	fill(t, 40, 1, 21, &ok);
	CHECK(ok == 0);
	rte_rcu_qsbr_quiescent(v, 0);
	fill(t, 40, 1, 21, &ok); /* the insert reclaims by itself */
	CHECK(ok == 1);
	rte_rcu_qsbr_thread_offline(v, 0);
	rte_rcu_qsbr_thread_unregister(v, 0);
	dp_neigh_destroy(t);
	rte_free(v);
}

/*
 * Smoke test: a reader looks up while the writer inserts and ages the same
 * addresses over and over; each MAC encodes its IP, so a wrong MAC shows.
 * The window for reading a recycled slot is nanoseconds, so this does not
 * prove the grace period (test_full_and_grace_period does, by steps).
 */
struct race {
	struct dp_neigh_table *t;
	struct rte_rcu_qsbr *v;
	int stop;
	uint64_t hits, mismatches;
};

#define RACE_N 48

static void *race_reader(void *arg)
{
	struct race *r = arg;
	struct rte_ether_addr mac;
	cpu_set_t all;

	/* EAL pinned the main thread, and so its children, to one CPU. */
	CPU_ZERO(&all);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &all);
	pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
	rte_rcu_qsbr_thread_online(r->v, 0);
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		for (int i = 1; i <= RACE_N; i++) {
			if (dp_neigh_lookup4(r->t, 0, rte_cpu_to_be_32(0x0a000000 + i), &mac) != 0)
				continue;
			r->hits++;
			r->mismatches += mac.addr_bytes[5] != i;
		}
		rte_rcu_qsbr_quiescent(r->v, 0);
	}
	rte_rcu_qsbr_thread_offline(r->v, 0);
	return NULL;
}

static void test_concurrent_readers(void)
{
	struct race r = {.t = table_new(64), .v = qsbr_new()};
	struct timespec t0, now;
	pthread_t th;
	uint64_t rounds = 0, removed = 0;
	int ok;

	CHECK(r.t != NULL);
	rte_rcu_qsbr_thread_register(r.v, 0);
	dp_neigh_set_rcu(r.t, r.v);
	CHECK(pthread_create(&th, NULL, race_reader, &r) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		/* Yields: the reader may share our CPU, and must see both states. */
		fill(r.t, 1, RACE_N, 2 * rounds + 1, &ok);
		sched_yield();
		removed += dp_neigh_age(r.t, 2 * rounds + 2, 0);
		sched_yield();
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) < 300000000L);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	printf("race: %" PRIu64 " rounds, %" PRIu64 " removed, %" PRIu64 " reader hits\n", rounds,
	       removed, r.hits);
	CHECK(r.mismatches == 0);
	CHECK(removed > 0 && r.hits > 0);
	dp_neigh_destroy(r.t);
	rte_free(r.v);
}

int main(void)
{
	char prefix[64];
	char *argv[] = {"test_neigh", "--no-huge", "-m", "128", "--no-pci", "--no-shconf",
			prefix, "--log-level=*:warning", NULL};

	snprintf(prefix, sizeof(prefix), "--file-prefix=neightest%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(argv) - 1, argv) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	g_mp = rte_pktmbuf_pool_create("neigh_test", 511, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
				       SOCKET_ID_ANY);
	if (!g_mp)
		return 1;
	test_iface_init();
	test_arp_request_for_us();
	test_arp_request_other();
	test_arp_gratuitous_and_reply();
	test_arp_probe();
	test_arp_malformed();
	test_ns_global();
	test_ns_link_local();
	test_ns_unicast_no_option();
	test_ns_dad();
	test_nd_malformed();
	test_na();
	test_truncated_and_garbage();
	test_multi_segment();
	test_no_mbuf();
	test_is_neigh_packet();
	test_solicit4();
	test_solicit6();
	test_update_lookup();
	test_per_port();
	test_aging_and_walk();
	test_full_and_grace_period();
	test_concurrent_readers();
	rte_mempool_free(g_mp);
	rte_eal_cleanup();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
