/* SPDX-License-Identifier: MIT */
/*
 * The packet filter as the dataplane runs it: the control process streams
 * a compiled policy (MG_MSG_ACL_*), the main lcore builds the rte_acl
 * classifiers (acl.c) off the workers, runs the policy's tests against
 * them, and publishes the new filter with one pointer store; the old one is
 * freed after an RCU grace period. Workers check every decrypted packet
 * before it is forwarded (to the LAN or to another peer).
 *
 * No filter published: everything passes (no policy configured). With a
 * policy_file configured the dataplane starts with a deny-all filter and
 * keeps it until the control process installs the policy (fail closed).
 */
#ifndef DP_FILTER_H
#define DP_FILTER_H

#include <stdbool.h>
#include <stdint.h>

#include "dp.h"

struct dp_acl;

struct dp_filter {
	struct dp_acl *acl; /* NULL: deny everything */
	uint64_t generation;
	uint32_t n_rules, n_tests;
};

/* Main lcore. */
int dp_filter_init(struct dp_ctx *dp);
void dp_filter_fini(struct dp_ctx *dp);
void dp_filter_msg(struct dp_ctx *dp, const struct mg_msg *msg);

/* Workers: keep the packets the filter accepts (data at the inner IP
 * header), drop the rest under acl_denied. Returns the new count; m is
 * compacted in place, order kept; peers (may be NULL) follows m. */
uint16_t dp_filter_burst(struct dp_worker *w, struct rte_mbuf **m, uint32_t *peers, uint16_t n);

/* Workers: a plaintext packet about to enter the tunnel; UDP flows are
 * remembered (while a filter or SNAT is active) so that replies are known. */
void dp_filter_note_out(struct dp_worker *w, const uint8_t *ip, uint16_t len);

/* Workers: whether ip is a UDP reply to a flow noted by dp_filter_note_out
 * (SNAT leaves such replies to LAN-opened flows untranslated). */
bool dp_filter_udp_reply(struct dp_worker *w, const uint8_t *ip, uint32_t len);

#endif /* DP_FILTER_H */
