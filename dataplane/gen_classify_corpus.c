/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus of fuzz_classify.c: byte 0 the harness's flags,
 * then one Ethernet frame for its fixed state (addresses, MACs, indices and
 * keys repeated from the harness: keep the two in step). Data messages come
 * twice: wan_data_* sealed with libsodium under the key the harness decrypts
 * with, and wan_plain_* in plaintext with a zero tag, for the harness to seal
 * (IN_SEAL), so that the fuzzer mutates the inner packets. Each has its own
 * counter.
 *
 *   gen_classify_corpus DIR
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "wg_messages.h"

/* Byte 0, as fuzz_classify.c reads it. */
enum {
	IN_LAN = 1u << 0,
	IN_SEAL = 1u << 1,
	IN_DERP = IN_LAN | IN_SEAL,
	IN_BURST = 1u << 2,
	IN_SPLIT = 1u << 3,
	IN_KP_NEXT = 1u << 4,
	IN_KP_EXPIRED = 1u << 5,
	IN_EP_SHIFT = 6,
};

enum { EP_RESOLVED, EP_UNRESOLVED, EP_NONE, EP_OFFLINK };

#define LISTEN 51820
#define MTU    1420

static const uint8_t wan_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
static const uint8_t lan_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
static const uint8_t wan_nbr_mac[6] = {0x02, 0, 0, 0, 0x01, 0x02};
static const uint8_t lan_nbr_mac[6] = {0x02, 0, 0, 0, 0x02, 0x01};
static const uint8_t bcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t other_mac[6] = {0x02, 0, 0, 0, 0x02, 0x99};

static const uint8_t wan_ip[4] = {198, 18, 0, 1};
static const uint8_t peer0_ep[4] = {198, 18, 0, 2};
static const uint8_t peer1_ep[4] = {198, 18, 0, 4};
static const uint8_t lan_ip[4] = {10, 88, 0, 254};
static const uint8_t host_ip[4] = {10, 88, 0, 1};
static const uint8_t peer0_ip[4] = {10, 99, 0, 2};
static const uint8_t peer1_ip[4] = {10, 99, 0, 3};
static const uint8_t peer2_ip[4] = {10, 99, 0, 4};
static const uint8_t lan_ip6[16] = {0xfd, 0x88, [15] = 0xfe};
static const uint8_t host_ip6[16] = {0xfd, 0x88, [15] = 0x01};
static const uint8_t peer0_ip6[16] = {0xfd, 0x99, [15] = 0x02};
static const uint8_t peer1_ip6[16] = {0xfd, 0x99, [15] = 0x03};
static const uint8_t peer3_ip[4] = {10, 99, 0, 5};
static const uint8_t peer3_ip6[16] = {0xfd, 0x99, [15] = 0x05};
/* The outer IPv6 underlay: our WAN address, peer 3's endpoint, peer 0 on it */
static const uint8_t wan_ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x01};
static const uint8_t peer3_ep6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x05};
static const uint8_t peer0_ep6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x02};
/* fe80:: + modified EUI-64 of lan_mac / wan_mac; and a neighbour's */
static const uint8_t lan_ll6[16] = {0xfe, 0x80, [11] = 0xff, [12] = 0xfe, [15] = 0x02};
static const uint8_t wan_ll6[16] = {0xfe, 0x80, [11] = 0xff, [12] = 0xfe, [15] = 0x01};
static const uint8_t nbr_ll6[16] = {0xfe, 0x80, [15] = 0x02};

#define PEER0_INDEX 0x12340000u
#define PEER1_INDEX 0x56780004u
#define PEER3_INDEX 0x9abc000cu
#define PEER0_RECV  0x11 /* the harness's keys are 32 copies of these bytes */
#define PEER1_RECV  0x33
#define PEER3_RECV  0x55

struct frame {
	uint8_t b[2048];
	size_t len;
};

static const char *out_dir;
static int errors;

static void put(const char *name, uint8_t flags, const struct frame *f)
{
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	fp = fopen(path, "wb");
	if (!fp || fwrite(&flags, 1, 1, fp) != 1 || fwrite(f->b, 1, f->len, fp) != f->len ||
	    fclose(fp)) {
		perror(path);
		errors++;
		return;
	}
	printf("wrote %s (%zu bytes)\n", path, f->len + 1);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32be(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

static void wr32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ---- headers -------------------------------------------------------------- */

static size_t eth(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(p, dst, 6);
	memcpy(p + 6, src, 6);
	wr16(p + 12, type);
	return 14;
}

/* IPv4 header with a correct checksum; returns its length (20). */
static size_t ip4(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		  size_t payload_len, uint8_t ttl)
{
	memset(p, 0, 20);
	p[0] = 0x45;
	wr16(p + 2, (uint16_t)(20 + payload_len));
	p[8] = ttl;
	p[9] = proto;
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
	wr16(p + 10, fold(sum16(p, 20, 0)));
	return 20;
}

static size_t ip6(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t next,
		  size_t payload_len, uint8_t hlim)
{
	memset(p, 0, 40);
	p[0] = 0x60;
	wr16(p + 4, (uint16_t)payload_len);
	p[6] = next;
	p[7] = hlim;
	memcpy(p + 8, src, 16);
	memcpy(p + 24, dst, 16);
	return 40;
}

static uint16_t icmp6_sum(const uint8_t *ip, const uint8_t *msg, size_t len)
{
	uint32_t sum = sum16(ip + 8, 32, 0);
	sum += (uint32_t)len + 58;
	return fold(sum16(msg, len, sum));
}

/* An ICMP echo request of 84 bytes (v4) or 104 (v6); returns the length. */
static size_t ping4(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t ttl)
{
	uint8_t *icmp = p + 20;

	ip4(p, src, dst, 1, 64, ttl);
	memset(icmp, 0, 64);
	icmp[0] = 8;
	wr16(icmp + 4, 0x4d47);
	wr16(icmp + 6, 1);
	for (int i = 8; i < 64; i++)
		icmp[i] = (uint8_t)i;
	wr16(icmp + 2, fold(sum16(icmp, 64, 0)));
	return 84;
}

static size_t ping6(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t hlim)
{
	uint8_t *icmp = p + 40;

	ip6(p, src, dst, 58, 64, hlim);
	memset(icmp, 0, 64);
	icmp[0] = 128;
	wr16(icmp + 4, 0x4d47);
	wr16(icmp + 6, 1);
	for (int i = 8; i < 64; i++)
		icmp[i] = (uint8_t)i;
	wr16(icmp + 2, icmp6_sum(p, icmp, 64));
	return 104;
}

/* A WireGuard data message sealing plain[len] (padded to 16 as a peer would)
 * for key_idx under the key made of fill bytes, or with IN_SEAL in mode left
 * in plaintext with a zero tag; returns its length. */
static size_t seal(uint8_t mode, uint8_t *p, uint32_t key_idx, uint8_t fill, uint64_t counter,
		   const uint8_t *plain, size_t len)
{
	uint8_t key[32], nonce[12] = {0};
	size_t padded = (len + WG_PADDING_MULTIPLE - 1) / WG_PADDING_MULTIPLE * WG_PADDING_MULTIPLE;
	unsigned long long clen;

	memset(key, fill, sizeof(key));
	wr64le(nonce + 4, counter);
	memset(p, 0, 16);
	p[0] = WG_MSG_DATA;
	wr32le(p + 4, key_idx);
	wr64le(p + 8, counter);
	memmove(p + 16, plain, len);
	memset(p + 16 + len, 0, padded - len + WG_AUTHTAG_LEN);
	if (mode & IN_SEAL)
		return 16 + padded + WG_AUTHTAG_LEN;
	crypto_aead_chacha20poly1305_ietf_encrypt(p + 16, &clen, p + 16, padded, NULL, 0, NULL,
						  nonce, key);
	return 16 + (size_t)clen;
}

/* A UDP datagram from src:sport to our WAN address and port. */
static void wan_udp(struct frame *f, const uint8_t *src, uint16_t sport, const uint8_t *payload,
		    size_t len)
{
	uint8_t *p = f->b;

	p += eth(p, wan_mac, wan_nbr_mac, 0x0800);
	p += ip4(p, src, wan_ip, 17, 8 + len, 64);
	wr16(p, sport);
	wr16(p + 2, LISTEN);
	wr16(p + 4, (uint16_t)(8 + len));
	wr16(p + 6, 0);
	memmove(p + 8, payload, len);
	f->len = 14 + 20 + 8 + len;
}

static void wan_msg(struct frame *f, uint8_t type, size_t len)
{
	uint8_t msg[256];

	for (size_t i = 0; i < len; i++)
		msg[i] = (uint8_t)(0xa5 ^ i);
	msg[0] = type;
	msg[1] = msg[2] = msg[3] = 0;
	wan_udp(f, peer0_ep, LISTEN, msg, len);
}

/* A data message from peer 0 (or peer 1) carrying plain[len]. */
static void wan_data_from(uint8_t mode, struct frame *f, int peer, const uint8_t *src,
			  uint16_t sport, uint64_t counter, const uint8_t *plain, size_t len)
{
	uint8_t msg[2048];
	size_t n = seal(mode, msg, peer ? PEER1_INDEX : PEER0_INDEX, peer ? PEER1_RECV : PEER0_RECV,
			counter, plain, len);

	wan_udp(f, src, sport, msg, n);
}

static void wan_data(uint8_t mode, struct frame *f, uint64_t counter, const uint8_t *plain,
		     size_t len)
{
	wan_data_from(mode, f, 0, peer0_ep, LISTEN, counter, plain, len);
}

/* wan_data_NAME, or wan_plain_NAME for the harness to seal. */
static void put_data(uint8_t mode, const char *name, uint8_t flags, const struct frame *f)
{
	char full[256];

	snprintf(full, sizeof(full), "wan_%s_%s", mode & IN_SEAL ? "plain" : "data", name);
	put(full, flags | mode, f);
}

static void lan_frame(struct frame *f, const uint8_t *dst_mac, const uint8_t *pkt, size_t len)
{
	f->len = eth(f->b, dst_mac, lan_nbr_mac, (pkt[0] >> 4) == 6 ? 0x86dd : 0x0800);
	memcpy(f->b + f->len, pkt, len);
	f->len += len;
}

/* ---- seeds ---------------------------------------------------------------- */

static void wan_handshakes(void)
{
	struct frame f;

	wan_msg(&f, WG_MSG_HANDSHAKE_INITIATION, sizeof(struct wg_message_initiation));
	put("wan_initiation", 0, &f);
	wan_msg(&f, WG_MSG_HANDSHAKE_RESPONSE, sizeof(struct wg_message_response));
	put("wan_response", 0, &f);
	wan_msg(&f, WG_MSG_HANDSHAKE_COOKIE, sizeof(struct wg_message_cookie));
	put("wan_cookie", 0, &f);
	wan_msg(&f, WG_MSG_HANDSHAKE_INITIATION, sizeof(struct wg_message_initiation) - 1);
	put("wan_initiation_short", 0, &f);
	wan_msg(&f, 5, 64);
	put("wan_bad_type", 0, &f);
	wan_msg(&f, WG_MSG_HANDSHAKE_COOKIE, sizeof(struct wg_message_cookie));
	f.b[14 + 20 + 8 + 2] = 1;
	put("wan_bad_reserved", 0, &f);
}

/* STUN Binding messages (RFC 8489) to the WireGuard port: a success
 * response saying 203.0.113.7:41641 (XOR-MAPPED-ADDRESS), which is punted
 * to control, and a request with a length that is not the datagram's. */
static void wan_stun(void)
{
	static const uint8_t mapped[4] = {203, 0, 113, 7};
	uint8_t msg[32] = {0};
	struct frame f;

	wr16(msg, 0x0101);
	wr16(msg + 2, 12);
	wr32be(msg + 4, 0x2112A442u);
	for (int i = 8; i < 20; i++) /* the transaction id */
		msg[i] = (uint8_t)(0x5a ^ i);
	wr16(msg + 20, 0x0020); /* XOR-MAPPED-ADDRESS, IPv4 */
	wr16(msg + 22, 8);
	msg[25] = 0x01;
	wr16(msg + 26, 41641 ^ 0x2112);
	for (int i = 0; i < 4; i++)
		msg[28 + i] = mapped[i] ^ msg[4 + i];
	wan_udp(&f, peer1_ep, 3478, msg, sizeof(msg));
	put("wan_stun_response", 0, &f);

	memset(msg, 0, sizeof(msg));
	wr16(msg, 0x0001);
	wr16(msg + 2, 8); /* 20 + 8 is not the 32 bytes sent */
	wr32be(msg + 4, 0x2112A442u);
	wan_udp(&f, peer1_ep, 3478, msg, sizeof(msg));
	put("wan_stun_bad_length", 0, &f);
}

static void wan_data_seeds(uint8_t mode)
{
	uint8_t in[2048] = {0}, junk[48];
	uint8_t far[4] = {172, 16, 0, 1}, routed[4] = {10, 77, 1, 1}, stray[4] = {10, 99, 0, 9};
	uint8_t unres[4] = {10, 88, 0, 9}, roam[4] = {198, 18, 0, 77};
	uint8_t routed6[16] = {0xfd, 0x77, [15] = 0x01};
	uint64_t ctr = mode & IN_SEAL ? 1000 : 0;
	struct frame f;

	wan_data(mode, &f, ctr + 1, in, 0);
	put_data(mode, "keepalive", 0, &f);
	wan_data(mode, &f, ctr + 2, in, ping4(in, peer0_ip, host_ip, 64));
	put_data(mode, "v4", 0, &f);
	wan_data(mode, &f, ctr + 3, in, ping6(in, peer0_ip6, host_ip6, 64));
	put_data(mode, "v6", 0, &f);
	wan_data(mode, &f, ctr + 4, in, ping4(in, stray, host_ip, 64));
	put_data(mode, "bad_source", 0, &f);
	wan_data(mode, &f, ctr + 5, in, ping4(in, peer0_ip, peer1_ip, 64));
	put_data(mode, "hairpin", 0, &f);
	wan_data(mode, &f, ctr + 6, in, ping6(in, peer0_ip6, peer1_ip6, 64));
	put_data(mode, "hairpin_v6", 0, &f);
	wan_data(mode, &f, ctr + 7, in, ping4(in, peer0_ip, routed, 64));
	put_data(mode, "static_route", 0, &f);
	wan_data(mode, &f, ctr + 8, in, ping6(in, peer0_ip6, routed6, 64));
	put_data(mode, "static_route_v6", 0, &f);
	wan_data(mode, &f, ctr + 9, in, ping4(in, peer0_ip, unres, 64));
	put_data(mode, "unresolved", 0, &f);
	wan_data(mode, &f, ctr + 10, in, ping4(in, peer0_ip, far, 64));
	put_data(mode, "no_route", 0, &f);
	wan_data(mode, &f, ctr + 11, in, ping4(in, peer0_ip, host_ip, 1));
	put_data(mode, "ttl1", 0, &f);
	wan_data(mode, &f, ctr + 12, in, ping4(in, peer0_ip, peer1_ip, 1));
	put_data(mode, "hairpin_ttl1", 0, &f);
	wan_data(mode, &f, ctr + 13, in, ping4(in, peer0_ip, peer2_ip, 64));
	put_data(mode, "hairpin_no_keypair", 0, &f);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0x30 + i);
	wan_data(mode, &f, ctr + 14, junk, sizeof(junk));
	put_data(mode, "inner_garbage", 0, &f);
	wan_data(mode, &f, ctr + 15, in, ping4(in, peer0_ip, host_ip, 64));
	f.b[f.len - 1] ^= 1;
	if (!(mode & IN_SEAL))
		put_data(mode, "bad_tag", 0, &f);
	wan_data_from(mode, &f, 1, peer1_ep, 51821, ctr + 16, in, ping4(in, peer1_ip, host_ip, 64));
	put_data(mode, "peer1", 0, &f);
	wan_data_from(mode, &f, 1, peer1_ep, 51821, ctr + 17, in,
		      ping4(in, peer1_ip, peer0_ip, 64));
	put_data(mode, "peer1_hairpin", 0, &f);
	wan_data_from(mode, &f, 0, roam, 40000, ctr + 18, in, ping4(in, peer0_ip, host_ip, 64));
	put_data(mode, "roam", 0, &f);
	wan_data(mode, &f, ctr + 19, in, ping4(in, peer0_ip, host_ip, 64));
	put_data(mode, "confirm", IN_KP_NEXT, &f);
	wan_data(mode, &f, ctr + 20, in, ping4(in, peer0_ip, host_ip, 64));
	put_data(mode, "dup", IN_BURST, &f);
	wan_data(mode, &f, ctr + 21, in, ping6(in, peer0_ip6, host_ip6, 64));
	put_data(mode, "split", IN_SPLIT | IN_BURST, &f);
	wan_data(mode, &f, ctr + 22, in, ping4(in, peer0_ip, host_ip, 64));
	put_data(mode, "expired", IN_KP_EXPIRED, &f);
	wan_data_from(mode, &f, 1, peer1_ep, 51821, ctr + 23, in,
		      ping4(in, peer1_ip, peer0_ip, 64));
	put_data(mode, "hairpin_unresolved", EP_UNRESOLVED << IN_EP_SHIFT, &f);
	wan_data(mode, &f, ctr + 24, in, ping4(in, peer0_ip, host_ip, 64));
	wr32le(f.b + 14 + 20 + 8 + 4, PEER0_INDEX + 16); /* same slot, other index */
	put_data(mode, "unknown_index", 0, &f);
	wan_data(mode, &f, UINT64_MAX - 1 - ctr, in, ping4(in, peer0_ip, host_ip, 64));
	put_data(mode, "counter_limit", 0, &f);
}

/* Outer IPv4 variants around a valid data message. */
static void wan_outer_seeds(void)
{
	uint8_t in[256];
	struct frame f, g;

	wan_data(0, &f, 30, in, ping4(in, peer0_ip, host_ip, 64));
	g = f;
	memset(g.b + g.len, 0xee, 20); /* Ethernet padding after the datagram */
	g.len += 20;
	put("wan_link_padding", 0, &g);

	/* IHL 6: four bytes of options before the UDP header. */
	g.len = f.len + 4;
	memcpy(g.b, f.b, 34);
	memcpy(g.b + 38, f.b + 34, f.len - 34);
	g.b[14] = 0x46;
	wr16(g.b + 16, (uint16_t)(f.len - 14 + 4));
	g.b[34] = 1, g.b[35] = 1, g.b[36] = 1, g.b[37] = 0; /* NOP NOP NOP EOL */
	g.b[24] = g.b[25] = 0;
	wr16(g.b + 24, fold(sum16(g.b + 14, 24, 0)));
	put("wan_ip_options", 0, &g);

	g = f;
	g.b[14 + 6] = 0x20; /* MF */
	put("wan_fragment", 0, &g);
	g = f;
	g.b[14 + 16 + 3] = 9;
	put("wan_not_for_us", 0, &g);
	g = f;
	wr16(g.b + 14 + 20 + 2, 53);
	put("wan_wrong_port", 0, &g);
	g = f;
	g.b[14 + 9] = 6;
	put("wan_not_udp", 0, &g);
	g = f;
	wr16(g.b + 14 + 2, (uint16_t)(f.len + 100));
	put("wan_bad_total_length", 0, &g);
	g = f;
	wr16(g.b + 14 + 20 + 4, 11);
	put("wan_udp_too_short", 0, &g);
	g = f;
	wr16(g.b + 14 + 20 + 4, (uint16_t)(f.len - 14 - 20 + 1));
	put("wan_udp_too_long", 0, &g);
	g = f;
	g.len = 40;
	put("wan_truncated_udp", 0, &g);
	g = f;
	g.len = 20;
	put("wan_truncated_ip", 0, &g);
	g = f;
	g.len = 10;
	put("wan_runt", 0, &g);
	g = f;
	g.len -= 7;
	put("wan_truncated_tag", 0, &g);
}

static void arp(struct frame *f, const uint8_t *src_mac, const uint8_t *spa, const uint8_t *tpa)
{
	uint8_t *p = f->b + eth(f->b, bcast_mac, src_mac, 0x0806);

	wr16(p, 1);
	wr16(p + 2, 0x0800);
	p[4] = 6;
	p[5] = 4;
	wr16(p + 6, 1);
	memcpy(p + 8, src_mac, 6);
	memcpy(p + 14, spa, 4);
	memset(p + 18, 0, 6);
	memcpy(p + 24, tpa, 4);
	f->len = 14 + 28;
}

/* Neighbour solicitation for target with the source link-layer option. */
static void ns(struct frame *f, const uint8_t *src_mac, const uint8_t *src, const uint8_t *target)
{
	uint8_t dst[16] = {0xff, 0x02, [11] = 1, [12] = 0xff};
	uint8_t dst_mac[6] = {0x33, 0x33, 0xff, target[13], target[14], target[15]};
	uint8_t *ip = f->b + eth(f->b, dst_mac, src_mac, 0x86dd), *icmp = ip + 40;

	memcpy(dst + 13, target + 13, 3);
	ip6(ip, src, dst, 58, 32, 255);
	memset(icmp, 0, 32);
	icmp[0] = 135;
	memcpy(icmp + 8, target, 16);
	icmp[24] = 1;
	icmp[25] = 1;
	memcpy(icmp + 26, src_mac, 6);
	wr16(icmp + 2, icmp6_sum(ip, icmp, 32));
	f->len = 14 + 40 + 32;
}

static void neigh_seeds(void)
{
	struct frame f;

	arp(&f, wan_nbr_mac, peer0_ep, wan_ip);
	put("wan_arp", 0, &f);
	ns(&f, wan_nbr_mac, nbr_ll6, wan_ll6);
	put("wan_ns", 0, &f);
	arp(&f, lan_nbr_mac, host_ip, lan_ip);
	put("lan_arp", IN_LAN, &f);
	ns(&f, lan_nbr_mac, host_ip6, lan_ip6);
	put("lan_ns", IN_LAN, &f);
	f.len = eth(f.b, wan_mac, wan_nbr_mac, 0x88cc);
	memset(f.b + f.len, 0, 46);
	f.len += 46;
	put("wan_lldp", 0, &f);
	f.b[12] = 0x86, f.b[13] = 0xdd; /* IPv6, but no ND */
	f.len = 14 + ping6(f.b + 14, nbr_ll6, wan_ll6, 64);
	put("wan_ipv6", 0, &f);
}

static void lan_seeds(void)
{
	uint8_t in[2048];
	uint8_t far[4] = {172, 16, 0, 1};
	uint8_t far6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	struct frame f;

	lan_frame(&f, lan_mac, in, ping4(in, host_ip, peer0_ip, 64));
	put("lan_v4_to_peer0", IN_LAN, &f);
	put("lan_v4_unresolved_endpoint", IN_LAN | EP_UNRESOLVED << IN_EP_SHIFT, &f);
	put("lan_v4_no_endpoint", IN_LAN | EP_NONE << IN_EP_SHIFT, &f);
	put("lan_v4_offlink_endpoint", IN_LAN | EP_OFFLINK << IN_EP_SHIFT, &f);
	put("lan_v4_keypair_next", IN_LAN | IN_KP_NEXT, &f);
	put("lan_v4_keypair_expired", IN_LAN | IN_KP_EXPIRED, &f);
	put("lan_v4_burst_split", IN_LAN | IN_SPLIT | IN_BURST, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, peer0_ip6, 64));
	put("lan_v6_to_peer0", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping4(in, host_ip, peer1_ip, 64));
	put("lan_v4_to_peer1", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, peer1_ip6, 64));
	put("lan_v6_to_peer1", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping4(in, host_ip, peer2_ip, 64));
	put("lan_v4_to_peer2_no_keypair", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping4(in, host_ip, lan_ip, 64));
	put("lan_v4_local", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, lan_ip6, 64));
	put("lan_v6_local", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, lan_ll6, 64));
	put("lan_v6_link_local", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping4(in, host_ip, far, 64));
	put("lan_v4_no_route", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, far6, 64));
	put("lan_v6_no_route", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping4(in, host_ip, peer0_ip, 1));
	put("lan_v4_ttl1", IN_LAN, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, peer0_ip6, 1));
	put("lan_v6_hlim1", IN_LAN, &f);
	lan_frame(&f, other_mac, in, ping4(in, host_ip, peer0_ip, 64));
	put("lan_other_mac", IN_LAN, &f);
	lan_frame(&f, bcast_mac, in, ping4(in, host_ip, peer0_ip, 64));
	put("lan_broadcast", IN_LAN, &f);

	lan_frame(&f, lan_mac, in, ping4(in, host_ip, peer0_ip, 64));
	f.b[14] = 0x44;
	put("lan_v4_bad_ihl", IN_LAN, &f);
	f.b[14] = 0x45;
	wr16(f.b + 16, 200);
	put("lan_v4_bad_total_length", IN_LAN, &f);
	wr16(f.b + 16, 84);
	f.b[12] = 0x86, f.b[13] = 0xdd;
	put("lan_version_mismatch", IN_LAN, &f);
	f.b[12] = 0x08, f.b[13] = 0x00;
	memset(f.b + f.len, 0, 30); /* padding after the packet */
	f.len += 30;
	put("lan_v4_trailing_padding", IN_LAN, &f);
	f.len = 30;
	put("lan_v4_truncated", IN_LAN, &f);
	f.len = 8;
	put("lan_runt", IN_LAN, &f);

	/* Sizes around the tunnel MTU: padding capped at it, then too big. */
	size_t n = ping4(in, host_ip, peer0_ip, 64);
	memset(in + n, 0x5a, MTU);
	wr16(in + 2, MTU - 10);
	wr16(in + 10, 0);
	wr16(in + 10, fold(sum16(in, 20, 0)));
	lan_frame(&f, lan_mac, in, MTU - 10);
	put("lan_v4_near_mtu", IN_LAN, &f);
	wr16(in + 2, MTU + 1);
	wr16(in + 10, 0);
	wr16(in + 10, fold(sum16(in, 20, 0)));
	lan_frame(&f, lan_mac, in, MTU + 1);
	put("lan_v4_too_big", IN_LAN, &f);
}

/* ---- outer IPv6 ------------------------------------------------------------ */

/* A UDP datagram over IPv6 from src:sport to our WAN address and port, after
 * ext[ext_len] (extension headers, the first one's type in next); the UDP
 * checksum is correct. */
static void wan6_udp_ext(struct frame *f, const uint8_t *src, uint16_t sport, uint8_t next,
			 const uint8_t *ext, size_t ext_len, const uint8_t *payload, size_t len)
{
	uint8_t *p = f->b, *ip, *udp;

	p += eth(p, wan_mac, wan_nbr_mac, 0x86dd);
	ip = p;
	p += ip6(p, src, wan_ip6, ext_len ? next : 17, ext_len + 8 + len, 64);
	memcpy(p, ext, ext_len);
	udp = p + ext_len;
	wr16(udp, sport);
	wr16(udp + 2, LISTEN);
	wr16(udp + 4, (uint16_t)(8 + len));
	wr16(udp + 6, 0);
	memmove(udp + 8, payload, len);
	uint32_t sum = sum16(ip + 8, 32, 0) + (uint32_t)(8 + len) + 17;
	uint16_t c = fold(sum16(udp, 8 + len, sum));
	wr16(udp + 6, c ? c : 0xffff);
	f->len = 14 + 40 + ext_len + 8 + len;
}

static void wan6_udp(struct frame *f, const uint8_t *src, uint16_t sport, const uint8_t *payload,
		     size_t len)
{
	wan6_udp_ext(f, src, sport, 17, NULL, 0, payload, len);
}

static size_t data_msg(uint8_t mode, uint8_t *msg, int peer, uint64_t counter, const uint8_t *plain,
		       size_t len)
{
	static const uint32_t index[] = {PEER0_INDEX, PEER1_INDEX, 0, PEER3_INDEX};
	static const uint8_t fill[] = {PEER0_RECV, PEER1_RECV, 0, PEER3_RECV};
	return seal(mode, msg, index[peer], fill[peer], counter, plain, len);
}

static void wan6_data_seeds(uint8_t mode)
{
	uint8_t in[2048] = {0}, msg[2048];
	uint64_t ctr = mode & IN_SEAL ? 3000 : 2000;
	struct frame f;
	size_t n;

	n = data_msg(mode, msg, 3, ctr + 1, in, ping4(in, peer3_ip, host_ip, 64));
	wan6_udp(&f, peer3_ep6, 51825, msg, n);
	put_data(mode, "outer6_v4", 0, &f);
	n = data_msg(mode, msg, 3, ctr + 2, in, ping6(in, peer3_ip6, host_ip6, 64));
	wan6_udp(&f, peer3_ep6, 51825, msg, n);
	put_data(mode, "outer6_v6", 0, &f);
	n = data_msg(mode, msg, 3, ctr + 3, in, 0);
	wan6_udp(&f, peer3_ep6, 51825, msg, n);
	put_data(mode, "outer6_keepalive", 0, &f);
	n = data_msg(mode, msg, 3, ctr + 4, in, ping4(in, peer3_ip, peer0_ip, 64));
	wan6_udp(&f, peer3_ep6, 51825, msg, n);
	put_data(mode, "outer6_hairpin_to_v4", 0, &f);
	n = data_msg(mode, msg, 0, ctr + 5, in, ping6(in, peer0_ip6, peer3_ip6, 64));
	wan_udp(&f, peer0_ep, LISTEN, msg, n);
	put_data(mode, "hairpin_to_outer6", 0, &f);
	/* Peer 0 (IPv4 endpoint) roams to IPv6. */
	n = data_msg(mode, msg, 0, ctr + 6, in, ping4(in, peer0_ip, host_ip, 64));
	wan6_udp(&f, peer0_ep6, 40000, msg, n);
	put_data(mode, "outer6_roam", 0, &f);
	n = data_msg(mode, msg, 3, ctr + 7, in, ping6(in, peer3_ip6, host_ip6, 64));
	wan6_udp(&f, peer3_ep6, 51825, msg, n);
	put_data(mode, "outer6_burst_split", IN_BURST | IN_SPLIT, &f);
}

/* Outer IPv6 variants around a valid data message of peer 3. */
static void wan6_outer_seeds(void)
{
	uint8_t in[256], msg[512], ext[64];
	uint8_t other6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x09};
	struct frame f, g;
	size_t n = data_msg(0, msg, 3, 2100, in, ping4(in, peer3_ip, host_ip, 64));

	wan6_udp(&f, peer3_ep6, 51825, msg, n);
	g = f;
	memset(g.b + g.len, 0xee, 20);
	g.len += 20;
	put("wan6_link_padding", 0, &g);

	/* hop-by-hop (PadN) -> destination options (PadN) -> UDP */
	memset(ext, 0, sizeof(ext));
	ext[0] = 60, ext[1] = 0, ext[2] = 1, ext[3] = 4;
	ext[8] = 17, ext[9] = 0, ext[10] = 1, ext[11] = 4;
	wan6_udp_ext(&g, peer3_ep6, 51825, 0, ext, 16, msg, n);
	put("wan6_ext_hbh_dstopts", 0, &g);
	/* routing header, no segments left */
	memset(ext, 0, sizeof(ext));
	ext[0] = 17, ext[1] = 2, ext[2] = 4, ext[3] = 0;
	wan6_udp_ext(&g, peer3_ep6, 51825, 43, ext, 24, msg, n);
	put("wan6_ext_routing", 0, &g);
	g.b[14 + 40 + 3] = 1; /* one segment left: not ours to consume */
	put("wan6_ext_routing_segments_left", 0, &g);
	/* hop-by-hop after destination options: misplaced */
	memset(ext, 0, sizeof(ext));
	ext[0] = 0, ext[2] = 1, ext[3] = 4;
	ext[8] = 17, ext[10] = 1, ext[11] = 4;
	wan6_udp_ext(&g, peer3_ep6, 51825, 60, ext, 16, msg, n);
	put("wan6_ext_hbh_misplaced", 0, &g);
	/* an extension header longer than the packet */
	memset(ext, 0, sizeof(ext));
	ext[0] = 17, ext[1] = 200;
	wan6_udp_ext(&g, peer3_ep6, 51825, 60, ext, 8, msg, n);
	put("wan6_ext_overrun", 0, &g);
	/* five destination-options headers: more than are walked */
	memset(ext, 0, sizeof(ext));
	for (int i = 0; i < 5; i++)
		ext[8 * i] = i < 4 ? 60 : 17, ext[8 * i + 2] = 1, ext[8 * i + 3] = 4;
	wan6_udp_ext(&g, peer3_ep6, 51825, 60, ext, 40, msg, n);
	put("wan6_ext_chain_too_long", 0, &g);
	/* a fragment (first of two) */
	memset(ext, 0, sizeof(ext));
	ext[0] = 17, ext[3] = 1, ext[7] = 0x42;
	wan6_udp_ext(&g, peer3_ep6, 51825, 44, ext, 8, msg, n);
	put("wan6_fragment", 0, &g);
	/* ESP: an extension we do not walk */
	wan6_udp_ext(&g, peer3_ep6, 51825, 50, ext, 8, msg, n);
	put("wan6_esp", 0, &g);

	g = f;
	g.b[14 + 24 + 15] = 9;
	put("wan6_not_for_us", 0, &g);
	g = f;
	memcpy(g.b + 14 + 24, other6, 16);
	g.b[14 + 24] = 0xff; /* multicast */
	put("wan6_multicast", 0, &g);
	g = f;
	g.b[14 + 6] = 6;
	put("wan6_not_udp", 0, &g);
	g = f;
	g.b[14] = 0x40;
	put("wan6_bad_version", 0, &g);
	g = f;
	wr16(g.b + 14 + 40 + 2, 53);
	put("wan6_wrong_port", 0, &g);
	g = f;
	wr16(g.b + 14 + 40 + 6, 0);
	put("wan6_zero_checksum", 0, &g);
	g = f;
	wr16(g.b + 14 + 4, (uint16_t)(f.len + 100));
	put("wan6_bad_payload_length", 0, &g);
	g = f;
	wr16(g.b + 14 + 4, 4);
	put("wan6_payload_length_short", 0, &g);
	g = f;
	wr16(g.b + 14 + 40 + 4, (uint16_t)(f.len - 14 - 40 + 1));
	put("wan6_udp_too_long", 0, &g);
	g = f;
	g.len = 14 + 40 + 4;
	put("wan6_truncated_udp", 0, &g);
	g = f;
	g.len = 14 + 30;
	put("wan6_truncated_ip", 0, &g);

	for (size_t i = 0; i < sizeof(struct wg_message_initiation); i++)
		msg[i] = (uint8_t)(0xa5 ^ i);
	msg[0] = WG_MSG_HANDSHAKE_INITIATION;
	msg[1] = msg[2] = msg[3] = 0;
	wan6_udp(&g, peer0_ep6, LISTEN, msg, sizeof(struct wg_message_initiation));
	put("wan6_initiation", 0, &g);
	msg[0] = WG_MSG_HANDSHAKE_RESPONSE;
	wan6_udp(&g, peer0_ep6, LISTEN, msg, sizeof(struct wg_message_response));
	put("wan6_response", 0, &g);
}

static void lan_outer6_seeds(void)
{
	uint8_t in[2048];
	struct frame f;

	lan_frame(&f, lan_mac, in, ping4(in, host_ip, peer3_ip, 64));
	put("lan_v4_to_outer6_peer", IN_LAN, &f);
	put("lan_v4_to_outer6_peer_burst_split", IN_LAN | IN_BURST | IN_SPLIT, &f);
	lan_frame(&f, lan_mac, in, ping6(in, host_ip6, peer3_ip6, 64));
	put("lan_v6_to_outer6_peer", IN_LAN, &f);
}

/* Through a DERP relay: bare WireGuard messages (IN_DERP; data left for the
 * harness to seal), and a disco datagram on the WAN (punted to control). */
static void derp_seeds(void)
{
	uint8_t in[2048] = {0};
	struct frame f;

	f.len = seal(IN_SEAL, f.b, PEER0_INDEX, PEER0_RECV, 4001, in,
		     ping4(in, peer0_ip, host_ip, 64));
	put("derp_plain_v4", IN_DERP, &f);
	put("derp_plain_v4_burst", IN_DERP | IN_BURST, &f);
	f.len = seal(IN_SEAL, f.b, PEER0_INDEX, PEER0_RECV, 4002, in, 0);
	put("derp_plain_keepalive", IN_DERP, &f);

	static const uint8_t magic[6] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
	uint8_t msg[62 + 16 + 2 + 44];
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(0x3c ^ i);
	memcpy(msg, magic, sizeof(magic));
	wan_udp(&f, peer1_ep, LISTEN, msg, sizeof(msg));
	put("wan_disco", 0, &f);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	out_dir = argv[1];
	wan_handshakes();
	wan_stun();
	derp_seeds();
	wan_data_seeds(0);
	wan_data_seeds(IN_SEAL);
	wan_outer_seeds();
	neigh_seeds();
	lan_seeds();
	wan6_data_seeds(0);
	wan6_data_seeds(IN_SEAL);
	wan6_outer_seeds();
	lan_outer6_seeds();
	return errors ? 1 : 0;
}
