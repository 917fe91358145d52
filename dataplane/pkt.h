/* SPDX-License-Identifier: MIT */
/* Small header helpers shared by the worker stages and the main lcore. */
#ifndef DP_PKT_H
#define DP_PKT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include "types.h"

#define DP_OUTER4_LEN (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr))
#define DP_OUTER6_LEN (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv6_hdr) + sizeof(struct rte_udp_hdr))

/* Outer headers in front of a UDP payload toward an endpoint of this family. */
static inline uint32_t dp_outer_len(int family)
{
	return family == AF_INET6 ? DP_OUTER6_LEN : DP_OUTER4_LEN;
}

static inline uint32_t dp_rd32be(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void dp_sockaddr_v4(struct mg_sockaddr *sa, uint32_t ip_be, uint16_t port_be)
{
	memset(sa, 0, sizeof(*sa));
	sa->family = AF_INET;
	sa->port = rte_be_to_cpu_16(port_be);
	memcpy(sa->addr, &ip_be, 4);
}

static inline void dp_sockaddr_v6(struct mg_sockaddr *sa, const uint8_t ip[16], uint16_t port_be)
{
	memset(sa, 0, sizeof(*sa));
	sa->family = AF_INET6;
	sa->port = rte_be_to_cpu_16(port_be);
	memcpy(sa->addr, ip, 16);
}

/* Two addresses of family (AF_INET: 4 bytes, else 16) compared as
 * integers: a libc memcmp call with a variable length costs more than the
 * compare on the per-packet path. */
static inline bool dp_addr_eq(const uint8_t *a, const uint8_t *b, int family)
{
	if (family == AF_INET) {
		uint32_t x, y;
		memcpy(&x, a, 4);
		memcpy(&y, b, 4);
		return x == y;
	}
	uint64_t a0, a1, b0, b1;
	memcpy(&a0, a, 8);
	memcpy(&a1, a + 8, 8);
	memcpy(&b0, b, 8);
	memcpy(&b1, b + 8, 8);
	return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

static inline bool dp_sockaddr_eq(const struct mg_sockaddr *a, const struct mg_sockaddr *b)
{
	return a->family == b->family && a->port == b->port &&
	       dp_addr_eq(a->addr, b->addr, a->family);
}

/*
 * Trim and append for the single-segment mbufs of the worker stages (RX
 * linearizes anything else). They touch the mbuf's first cache line only:
 * rte_pktmbuf_trim and rte_pktmbuf_append find the last segment through
 * m->next on the second line, a cache miss per packet that nothing else on
 * the fast path needs (the second line is the slow path's: pool, dynfields).
 */
static inline void dp_mbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	m->data_len = (uint16_t)(m->data_len - len);
	m->pkt_len -= len;
}

/* NULL if the tailroom is short. */
static inline void *dp_mbuf_append(struct rte_mbuf *m, uint16_t len)
{
	if (len > rte_pktmbuf_tailroom(m))
		return NULL;
	void *tail = rte_pktmbuf_mtod_offset(m, char *, m->data_len);
	m->data_len = (uint16_t)(m->data_len + len);
	m->pkt_len += len;
	return tail;
}

/* RFC 1624 incremental update for a TTL decrement. */
static inline void dp_ipv4_dec_ttl(struct rte_ipv4_hdr *ip)
{
	uint32_t sum = (uint32_t)ip->hdr_checksum + rte_cpu_to_be_16(0x0100);
	ip->time_to_live--;
	ip->hdr_checksum = (uint16_t)(sum + (sum >> 16));
}

/* The header checksum of the IPv4 header dp_build_outer4 writes, from the
 * fields that vary (all big-endian as in the header): a ones' complement sum
 * does not depend on byte order (RFC 1071), so the raw words add up as they
 * are. A generic 20-byte checksum loop cost ~25 cycles per packet. */
static inline uint16_t dp_outer4_cksum(uint32_t src_be, uint32_t dst_be, uint16_t total_length_be)
{
	uint64_t s = (uint64_t)src_be + dst_be + total_length_be +
		     rte_cpu_to_be_16(RTE_IPV4_VHL_DEF << 8) + rte_cpu_to_be_16(64 << 8 | IPPROTO_UDP);

	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* Writes Ethernet + IPv4 + UDP headers in front of a UDP payload of
 * payload_len bytes that starts at the mbuf's current data offset
 * + DP_OUTER4_LEN (the caller prepended the space). */
static inline void dp_build_outer4(uint8_t *p, const struct rte_ether_addr *src_mac,
				   const struct rte_ether_addr *dst_mac, uint32_t src_ip_be,
				   uint32_t dst_ip_be, uint16_t sport, uint16_t dport,
				   uint16_t payload_len)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

	rte_ether_addr_copy(dst_mac, &eth->dst_addr);
	rte_ether_addr_copy(src_mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16(payload_len + sizeof(*ip) + sizeof(*udp));
	ip->packet_id = 0;
	ip->fragment_offset = 0;
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = src_ip_be;
	ip->dst_addr = dst_ip_be;
	ip->hdr_checksum = dp_outer4_cksum(src_ip_be, dst_ip_be, ip->total_length);
	udp->src_port = rte_cpu_to_be_16(sport);
	udp->dst_port = rte_cpu_to_be_16(dport);
	udp->dgram_len = rte_cpu_to_be_16(payload_len + sizeof(*udp));
	udp->dgram_cksum = 0; /* optional over IPv4; the AEAD protects the payload */
}

/* Writes Ethernet + IPv6 + UDP headers in front of a UDP payload of
 * payload_len bytes that is already in place at p + DP_OUTER6_LEN: the UDP
 * checksum, mandatory over IPv6 (RFC 8200 8.1), covers it. */
static inline void dp_build_outer6(uint8_t *p, const struct rte_ether_addr *src_mac,
				   const struct rte_ether_addr *dst_mac, const uint8_t src_ip[16],
				   const uint8_t dst_ip[16], uint16_t sport, uint16_t dport,
				   uint16_t payload_len)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)p;
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

	rte_ether_addr_copy(dst_mac, &eth->dst_addr);
	rte_ether_addr_copy(src_mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip->payload_len = rte_cpu_to_be_16(payload_len + sizeof(*udp));
	ip->proto = IPPROTO_UDP;
	ip->hop_limits = 64;
	memcpy(ip->src_addr, src_ip, 16);
	memcpy(ip->dst_addr, dst_ip, 16);
	udp->src_port = rte_cpu_to_be_16(sport);
	udp->dst_port = rte_cpu_to_be_16(dport);
	udp->dgram_len = ip->payload_len;
	udp->dgram_cksum = 0;
	udp->dgram_cksum = rte_ipv6_udptcp_cksum(ip, udp); /* never 0: 0xffff instead */
}

#endif /* DP_PKT_H */
