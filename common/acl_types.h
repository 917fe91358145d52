/* SPDX-License-Identifier: MIT */
/*
 * Compiled packet-filter rules and policy tests: what the control process's
 * policy compiler (policy/) produces and sends to the dataplane, which
 * builds rte_acl classifiers from them (dataplane/acl.c). Part of the
 * control/dataplane ABI: fixed layout, no pointers.
 *
 * A rule accepts packets of `proto` (0: any protocol) from src/src_len to
 * dst/dst_len whose destination port is in [dport_lo, dport_hi]. Rules for
 * protocols without ports (ICMP) carry 0..65535. Everything not accepted by
 * some rule is denied (the semantics around TCP SYN, UDP replies and ICMP
 * are the dataplane's, see dataplane/acl.h).
 */
#ifndef MG_ACL_TYPES_H
#define MG_ACL_TYPES_H

#include <stdint.h>

struct mg_acl_rule {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t proto;  /* IPPROTO_*, 0 = any */
	uint8_t src_len, dst_len;
	uint16_t dport_lo, dport_hi; /* host order, inclusive */
	uint32_t acl_index;          /* the policy's "acls" entry it came from */
	uint8_t src[16], dst[16];    /* network order; IPv4 in the first 4 bytes */
};

_Static_assert(sizeof(struct mg_acl_rule) == 44, "acl rule layout");

/* One expectation from the policy's "tests": a packet of proto from src to
 * dst:dport must be accepted (expect_accept = 1) or denied (0). */
struct mg_acl_test {
	uint8_t family;
	uint8_t proto;
	uint16_t dport;
	uint8_t expect_accept;
	uint8_t pad[3];
	uint32_t test_index; /* the "tests" entry it came from */
	uint32_t item_index; /* which accept/deny item of that entry */
	uint8_t src[16], dst[16];
};

_Static_assert(sizeof(struct mg_acl_test) == 48, "acl test layout");

#endif /* MG_ACL_TYPES_H */
