/* SPDX-License-Identifier: MIT */
/*
 * Source NAT of tunnel traffic into the LAN (as a Tailscale subnet router
 * with --snat-subnet-routes): a decrypted packet leaving through the lan
 * port gets the lan port's first address of its family as source, and a
 * source port (TCP, UDP) or echo identifier (ICMP, ICMPv6) from the NAT
 * port range; replies to that address and port are translated back and go
 * into the tunnel. ICMP errors from the LAN about a translated flow are
 * translated too (outer destination, and the quoted inner header).
 *
 * Ownership. Each worker owns one table and a disjoint slice of the port
 * range: slot s of worker w is port port_min + w * slice + s. Only the
 * owner creates or rekeys its entries, so the forward path (dp_snat_out,
 * on the worker that decrypted the packet) needs no atomics beyond the
 * publication of an entry. A reply can arrive on any worker's queue: its
 * destination port names the owning worker and the slot directly, and the
 * entry is read under a per-entry sequence count (odd while the owner
 * rewrites it). A reader that sees an odd count treats it as a miss: the
 * entry is being reused, so the old flow had expired, and no reply to the
 * new one can exist before the owner has sent its first packet. The only
 * words other workers write are an entry's last-used time and nothing else
 * (relaxed atomic stores, at most once a second per entry).
 *
 * New mappings are made only for packets that open a flow: TCP SYN
 * without ACK, any UDP packet, ICMP echo requests. Other tunnel packets
 * without a mapping (a SYN-ACK or an echo reply to a LAN host that opened
 * the flow, ICMP errors) are routed untranslated, so LAN-originated TCP
 * and ping toward tunnel addresses keep working with SNAT on (LAN hosts
 * then need a route back, as without SNAT). A UDP answer to a flow a LAN
 * host opened looks like a new flow here: the caller (lan.c) asks the flow
 * table first (dp_filter_udp_reply) and skips SNAT for it. Protocols other
 * than TCP, UDP and ICMP echo, IPv6 fragments and extension headers are
 * dropped and counted (snat_unsupported, snat_fragment) when SNAT is on;
 * IPv4 fragments are translated as their first fragment was (below).
 *
 * Expired entries are reused lazily: a flow that finds its own expired
 * entry revives it; allocation takes never-used slots first, then scans a
 * clock hand over at most DP_SNAT_SCAN_MAX slots for an expired one (a
 * failed scan makes new flows fail fast for 1 ms). No locks, no
 * syscalls, no allocation after dp_snat_create.
 */
#ifndef DP_SNAT_H
#define DP_SNAT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "mg_abi.h"

#define DP_SNAT_SCAN_MAX 64u

struct dp_snat;

enum dp_snat_result {
	DP_SNAT_TRANSLATED, /* rewritten in place */
	DP_SNAT_PASS,	    /* not NAT traffic: handle as without SNAT */
	DP_SNAT_DROP,	    /* drop, counted under *why */
};

/*
 * Main lcore, at setup. addr4_be: the IPv4 NAT address (0 = none); addr6:
 * the IPv6 one (NULL = none). NULL with rte_errno set (EINVAL if the port
 * range leaves a worker no port, ENOMEM).
 */
struct dp_snat *dp_snat_create(const struct mg_snat_conf *conf, unsigned n_workers, uint64_t tsc_hz,
			       uint32_t addr4_be, const uint8_t *addr6, int socket_id);
void dp_snat_destroy(struct dp_snat *s);

/* Entries (= ports) each worker owns. */
uint32_t dp_snat_slice(const struct dp_snat *s);

/*
 * A tunnel packet about to leave through the lan port (ip: its IP header,
 * len: its exact length). Must run on worker `worker`, the only writer of
 * its table.
 */
enum dp_snat_result dp_snat_out(struct dp_snat *s, unsigned worker, uint8_t *ip, uint32_t len,
				uint64_t now_tsc, enum mg_drop_reason *why);

/*
 * A LAN packet addressed to a NAT address: a reply (or an ICMP error about
 * a translated flow) is rewritten toward the tunnel host. Any worker.
 */
enum dp_snat_result dp_snat_in(struct dp_snat *s, unsigned worker, uint8_t *ip, uint32_t len,
			       uint64_t now_tsc, enum mg_drop_reason *why);

/*
 * IPv4 fragments: dp_snat_out and dp_snat_in remember what they did with a
 * first fragment (per worker, for 2 s) and do the same to the datagram's
 * later fragments, which carry no ports; a later fragment without its
 * first is dropped (snat_fragment). A caller that lets a first fragment
 * pass without asking dp_snat_out (a reply it recognised itself) tells it
 * here, so that the rest passes too.
 */
void dp_snat_frag_pass(struct dp_snat *s, unsigned worker, const uint8_t *ip, uint64_t now_tsc);

/* Whether ip (IPv4 or IPv6 header) is addressed to a NAT address. */
bool dp_snat_is_nat_dst(const struct dp_snat *s, const uint8_t *ip);

/* Live entries of a worker's table (tests, statistics). Any lcore. */
uint32_t dp_snat_count(const struct dp_snat *s, unsigned worker, uint64_t now_tsc);

#endif /* DP_SNAT_H */
