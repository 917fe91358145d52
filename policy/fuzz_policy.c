/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the policy compiler: any bytes in, a policy or one
 * error line out, never a crash, a leak or unbounded work (the rule limit is
 * kept small so an expanding input stays fast).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "policy.h"

/* A few names, as the control process would resolve its peers. */
static int resolve(void *arg, const char *name, struct mg_prefix_list *out)
{
	static const struct {
		const char *name;
		struct mg_prefix p;
	} known[] = {
	    {"peer-a", {.family = AF_INET, .cidr = 24, .addr = {10, 1, 0, 0}}},
	    {"alice@example.com", {.family = AF_INET, .cidr = 32, .addr = {100, 64, 0, 1}}},
	    {"alice@example.com",
	     {.family = AF_INET6, .cidr = 128, .addr = {0xfd, 0x7a, [15] = 1}}},
	    {"tag:web", {.family = AF_INET6, .cidr = 64, .addr = {0xfd, 0, 0, 2}}},
	    {"autogroup:internet", {.family = AF_INET, .cidr = 0}},
	};
	int found = -ENOENT;

	(void)arg;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(known[i].name, name) != 0)
			continue;
		if (mg_prefix_list_add(out, &known[i].p))
			return -ENOMEM;
		found = 0;
	}
	return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct mg_policy_resolver r = {.resolve = resolve};
	const struct mg_policy_opts o = {.name = "fuzz", .resolver = &r, .max_rules = 20000};
	struct mg_policy p;
	char err[512];

	if (mg_policy_parse((const char *)data, size, &o, &p, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < p.n_rules; i++)
			if (p.rules[i].dport_lo > p.rules[i].dport_hi ||
			    p.rules[i].acl_index >= p.n_acls)
				__builtin_trap();
		mg_policy_free(&p);
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		__builtin_trap();
	}
	return 0;
}
