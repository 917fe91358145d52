/* SPDX-License-Identifier: MIT */
/*
 * The packet filter on traffic leaving the tunnel, with Tailscale's
 * semantics, over the rules the policy compiler produced
 * (common/acl_types.h, policy/policy.h).
 *
 * A packet from a peer is accepted if:
 *   - there is no policy (acl == NULL): everything is;
 *   - TCP: it is not a pure SYN (SYN without ACK): only connection
 *     attempts are filtered, the rest of a connection follows its SYN;
 *     a pure SYN needs a rule for its destination port;
 *   - UDP: a LAN host sent the reverse flow into the tunnel within the
 *     flow timeout (flow.h), or a rule allows the destination port;
 *   - ICMP: echo replies and errors (IPv4 types 0, 3, 11, 12; ICMPv6 types
 *     1-4, 129); other ICMP needs a rule, looked up with port 0 (the
 *     compiler gives ICMP rules all ports, so "any port open" rules that
 *     include ICMP allow pings);
 *   - SCTP: a rule for its destination port;
 *   - any other protocol: a rule for it, with port 0;
 *   - a non-first fragment (IPv4 offset != 0, IPv6 fragment header with an
 *     offset) has no transport header: it is looked up as port 0 of its
 *     protocol, so only rules allowing every port (or port 0) let it in.
 *     Simple and safe; fragmented reassembly-dependent traffic needs such
 *     a rule.
 * and denied otherwise (default deny), including packets whose transport
 * header is cut short.
 *
 * The classifiers are rte_acl contexts, one per address family, built on
 * the main lcore and read by workers (swap them with RCU).
 */
#ifndef DP_ACL_H
#define DP_ACL_H

#include <stddef.h>
#include <stdint.h>

#include "acl_types.h"
#include "flow.h"

struct dp_acl;

/*
 * Build the classifiers for n rules (any mix of families; n may be 0: deny
 * everything the semantics above do not accept). NULL on failure with
 * rte_errno set and one line in err. Slow (rte_acl_build): main lcore or a
 * control thread, never a worker. Needs EAL.
 */
struct dp_acl *dp_acl_build(const struct mg_acl_rule *rules, size_t n, int socket_id, char *err,
			    size_t errlen);
void dp_acl_free(struct dp_acl *acl);

/* Rules per family in acl. */
size_t dp_acl_count(const struct dp_acl *acl, int family);

/*
 * The filter over a burst of inner packets: ip[i] points at an IPv4 or IPv6
 * header, len[i] bytes of whole packet (checked by the caller). Sets
 * accept[i] to 1 or 0. flows may be NULL (no replies known). Worker-safe: no
 * allocation, locks or syscalls; all lookups of a burst in one
 * rte_acl_classify call per family (per 64 packets).
 */
void dp_acl_check_burst(const struct dp_acl *acl, const struct dp_flows *flows, uint64_t now_tsc,
			uint8_t *const *ip, const uint16_t *len, uint16_t n, uint8_t *accept);

/*
 * Run the policy's tests against acl: each as a synthetic packet (TCP: a pure
 * SYN, UDP, ICMP: an echo request, others: a bare header) through
 * dp_acl_check_burst without flows. 0 if all give what they expect, else
 * -1 with the first failure in err, e.g.
 *   tests[2].deny[0]: tcp 10.0.0.1 -> 10.0.0.2:22: expected deny, got accept
 */
int dp_acl_run_tests(const struct dp_acl *acl, const struct mg_acl_test *tests, size_t n, char *err,
		     size_t errlen);

#endif /* DP_ACL_H */
