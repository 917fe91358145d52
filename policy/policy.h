/* SPDX-License-Identifier: MIT */
/*
 * The ACL policy compiler: a policy file in (a subset of) Tailscale's policy
 * format in, a flat list of accept rules and policy tests out
 * (common/acl_types.h), which the dataplane turns into rte_acl classifiers.
 * Pure C, no DPDK: it runs in the control process.
 *
 * The format is JSON with HuJSON's extras (comments and trailing commas):
 *
 *   {
 *     "groups": {"group:eng": ["alice@example.com", "laptop", "10.1.0.0/16"]},
 *     "hosts":  {"db": "10.2.0.5", "lab6": "fd00:2::/64"},
 *     "acls": [
 *       {"action": "accept", "src": ["group:eng"], "dst": ["db:5432", "lab6:*"]},
 *       {"action": "accept", "src": ["*"], "proto": "udp", "dst": ["*:53"]},
 *     ],
 *     "tests": [
 *       {"src": "alice@example.com", "accept": ["db:5432"], "deny": ["db:22"]},
 *     ],
 *   }
 *
 * A host (an "src" entry, the part before the ports of a "dst" entry, a test's
 * src or destination) is "*" (0.0.0.0/0 and ::/0), an IP address, a CIDR, a
 * "hosts" alias, a "group:" (whose members are any of the others; groups in
 * groups are refused, as Tailscale does), or a name the caller's resolver
 * knows: peers, users ("alice@example.com"), "tag:x", "autogroup:x".
 * Ports: "*", "22", "1000-2000", and comma-separated lists of these. An IPv6
 * destination is written "[fd00::1]:22", "fd00::1:22" or "fd00::/64:*" (split
 * at the last colon). "proto" is a name (tcp, udp, icmp, ipv6-icmp, sctp, gre,
 * esp, ah, igmp, ...) or a number 1..255; without it a rule allows TCP, UDP
 * and ICMP/ICMPv6, like Tailscale. ICMP (and every protocol other than TCP,
 * UDP and SCTP) has no ports: its rules carry 0..65535. "icmp" yields IPv4
 * rules only, "ipv6-icmp" IPv6 rules only. Tests default to TCP.
 *
 * Each "acls" entry expands to src x dst x proto x port range rules, IPv4
 * sources paired with IPv4 destinations only, IPv6 with IPv6; duplicate
 * prefixes are merged first. Everything is checked: unknown keys, bad
 * entries, names nobody knows. The first error ends the parse with one line
 * quoting the entry and where it is, e.g.
 *   policy.hujson: acls[3].dst[1] "10.0.0.1:99999": port out of range
 */
#ifndef MG_POLICY_H
#define MG_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "acl_types.h"
#include "types.h"

#define MG_POLICY_MAX_BYTES (4u << 20) /* default limit of the policy text */
#define MG_POLICY_MAX_RULES 200000u    /* default limit of rules after expansion */

/* A growable list of prefixes, as a resolver fills it. */
struct mg_prefix_list {
	struct mg_prefix *v;
	size_t n, cap;
};

/* Append p (host bits masked off); 0 or -ENOMEM. */
int mg_prefix_list_add(struct mg_prefix_list *l, const struct mg_prefix *p);
void mg_prefix_list_free(struct mg_prefix_list *l);

/*
 * Names the policy itself does not define (peers, users, tags, autogroups)
 * are asked of the resolver: it appends the name's prefixes to out (none is
 * fine: a peer without allowed IPs) and returns 0, or -ENOENT if it does not
 * know the name, or another -errno on failure.
 */
struct mg_policy_resolver {
	int (*resolve)(void *arg, const char *name, struct mg_prefix_list *out);
	void *arg;
};

struct mg_policy_opts {
	const char *name;			   /* prefixes errors ("<name>: ..."); NULL: none */
	const struct mg_policy_resolver *resolver; /* NULL: no names beyond the policy's */
	size_t max_bytes;			   /* 0: MG_POLICY_MAX_BYTES */
	size_t max_rules;			   /* 0: MG_POLICY_MAX_RULES */
};

struct mg_policy {
	struct mg_acl_rule *rules;
	size_t n_rules;
	struct mg_acl_test *tests;
	size_t n_tests;
	size_t n_acls; /* "acls" entries (acl_index < n_acls) */
};

/*
 * Compile the policy text (len bytes, need not be NUL-terminated). opts may be
 * NULL. Returns 0 with *out filled (free with mg_policy_free), or -EINVAL
 * (bad policy), -E2BIG (a limit), -ENOMEM, with *out zeroed and one line in
 * err.
 */
int mg_policy_parse(const char *text, size_t len, const struct mg_policy_opts *opts,
		    struct mg_policy *out, char *err, size_t errlen);

/* The same from a file; opts->name defaults to path. */
int mg_policy_load(const char *path, const struct mg_policy_opts *opts, struct mg_policy *out,
		   char *err, size_t errlen);

void mg_policy_free(struct mg_policy *p);

/* HuJSON to JSON in place (same length, newlines kept): comments and
 * trailing commas become blanks. -EINVAL for an unterminated comment, whose
 * offset goes to *bad_at (may be NULL). */
int mg_hujson_strip(char *s, size_t len, size_t *bad_at);

#endif /* MG_POLICY_H */
