/* SPDX-License-Identifier: MIT */
/*
 * Table tests of the policy compiler: good policies with their expected rule
 * and test counts and some expected rules (in a one-line text form), then
 * every error with the expected message substring.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
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

/* ---- a resolver, as the control process has one for its peers ---- */

struct known {
	const char *name, *prefix;
};

static const struct known known[] = {
    {"peer-a", "10.1.0.0/24"},		 {"alice@example.com", "100.64.0.1"},
    {"alice@example.com", "fd7a::1"},	 {"tag:web", "fd00:2::/64"},
    {"autogroup:internet", "0.0.0.0/0"}, {"empty-peer", NULL},
};

static int resolve(void *arg, const char *name, struct mg_prefix_list *out)
{
	int found = -ENOENT;

	(void)arg;
	if (strcmp(name, "broken") == 0)
		return -EIO;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		struct mg_prefix p;

		if (strcmp(known[i].name, name) != 0)
			continue;
		found = 0;
		if (!known[i].prefix)
			continue;
		if (mg_prefix_parse(known[i].prefix, &p) || mg_prefix_list_add(out, &p))
			return -ENOMEM;
	}
	return found;
}

static const struct mg_policy_resolver resolver = {.resolve = resolve};

/* "4 6 10.0.0.1/32 10.0.0.2/32 22-22 #0" */
static const char *fmt_rule(const struct mg_acl_rule *r, char *buf, size_t len)
{
	struct mg_prefix s = {.family = r->family, .cidr = r->src_len};
	struct mg_prefix d = {.family = r->family, .cidr = r->dst_len};
	char sb[MG_PREFIX_STRLEN], db[MG_PREFIX_STRLEN];

	memcpy(s.addr, r->src, 16);
	memcpy(d.addr, r->dst, 16);
	snprintf(buf, len, "%d %u %s %s %u-%u #%u", r->family == AF_INET ? 4 : 6, r->proto,
		 mg_prefix_fmt(&s, sb, sizeof(sb)), mg_prefix_fmt(&d, db, sizeof(db)), r->dport_lo,
		 r->dport_hi, r->acl_index);
	return buf;
}

/* "4 6 100.64.0.1 10.2.0.5:5432 accept #0.0" */
static const char *fmt_test(const struct mg_acl_test *t, char *buf, size_t len)
{
	struct mg_sockaddr s = {.family = t->family}, d = {.family = t->family};
	char sb[MG_ADDR_STRLEN], db[MG_ADDR_STRLEN];

	memcpy(s.addr, t->src, 16);
	memcpy(d.addr, t->dst, 16);
	snprintf(buf, len, "%d %u %s %s:%u %s #%u.%u", t->family == AF_INET ? 4 : 6, t->proto,
		 mg_addr_fmt(&s, sb, sizeof(sb)), mg_addr_fmt(&d, db, sizeof(db)), t->dport,
		 t->expect_accept ? "accept" : "deny", t->test_index, t->item_index);
	return buf;
}

static bool has_rule(const struct mg_policy *p, const char *want)
{
	char buf[160];

	for (size_t i = 0; i < p->n_rules; i++)
		if (strcmp(fmt_rule(&p->rules[i], buf, sizeof(buf)), want) == 0)
			return true;
	return false;
}

static bool has_test(const struct mg_policy *p, const char *want)
{
	char buf[160];

	for (size_t i = 0; i < p->n_tests; i++)
		if (strcmp(fmt_test(&p->tests[i], buf, sizeof(buf)), want) == 0)
			return true;
	return false;
}

/* ---- good policies ---- */

#define HEAD                                                                                       \
	"{\"groups\": {\"group:eng\": [\"alice@example.com\", \"peer-a\"]},"                       \
	" \"hosts\": {\"db\": \"10.2.0.5\", \"lab6\": \"fd00:3::/64\"},"

struct good {
	const char *policy;
	size_t n_rules, n_tests;
	const char *rules[8]; /* each must be present */
	const char *tests[4];
};

static const struct good goods[] = {
    {"{}", 0, 0, {NULL}, {NULL}},
    {"{\"acls\": []}", 0, 0, {NULL}, {NULL}},
    /* default protocols: TCP, UDP and ICMP (v4 only here) */
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[\"10.0.0.1\"],\"dst\":[\"10.0.0.2:22\"]}]}",
     3,
     0,
     {"4 6 10.0.0.1/32 10.0.0.2/32 22-22 #0", "4 17 10.0.0.1/32 10.0.0.2/32 22-22 #0",
      "4 1 10.0.0.1/32 10.0.0.2/32 0-65535 #0"},
     {NULL}},
    /* "*" is both families; ICMPv6 for v6 */
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[\"*\"],\"dst\":[\"*:*\"]}]}",
     6,
     0,
     {"4 6 0.0.0.0/0 0.0.0.0/0 0-65535 #0", "6 58 ::/0 ::/0 0-65535 #0",
      "6 17 ::/0 ::/0 0-65535 #0"},
     {NULL}},
    /* port lists merged; only v4 pairs */
    {"{\"acls\":[{\"action\":\"accept\",\"proto\":\"tcp\",\"src\":[\"10.0.0.1\",\"fd00::1\"],"
     "\"dst\":[\"10.0.0.0/24:22,80-90,85-100,91\"]}]}",
     2,
     0,
     {"4 6 10.0.0.1/32 10.0.0.0/24 22-22 #0", "4 6 10.0.0.1/32 10.0.0.0/24 80-100 #0"},
     {NULL}},
    /* ICMP: ports ignored, v4 only */
    {"{\"acls\":[{\"action\":\"accept\",\"proto\":\"icmp\",\"src\":[\"*\"],\"dst\":[\"*:22\"]}]}",
     1,
     0,
     {"4 1 0.0.0.0/0 0.0.0.0/0 0-65535 #0"},
     {NULL}},
    /* groups (users and peers), hosts aliases, acl_index */
    {HEAD "\"acls\":[{\"action\":\"accept\",\"src\":[\"*\"],\"proto\":\"udp\",\"dst\":[\"*:53\"]},"
	  "{\"action\":\"accept\",\"src\":[\"group:eng\"],\"dst\":[\"db:5432\"]}]}",
     2 + 6,
     0,
     {"4 17 0.0.0.0/0 0.0.0.0/0 53-53 #0", "6 17 ::/0 ::/0 53-53 #0",
      "4 6 100.64.0.1/32 10.2.0.5/32 5432-5432 #1", "4 6 10.1.0.0/24 10.2.0.5/32 5432-5432 #1",
      "4 1 10.1.0.0/24 10.2.0.5/32 0-65535 #1"},
     {NULL}},
    /* IPv6 destinations: brackets, bare (last colon), CIDRs */
    {HEAD "\"acls\":[{\"action\":\"accept\",\"src\":[\"tag:web\"],\"proto\":\"tcp\","
	  "\"dst\":[\"[fd00::1]:22\",\"fd00::2:443\",\"fd00::/64:*\",\"[fd00:1::]/48:80\","
	  "\"[fd00:9::/32]:81\",\"lab6:1-2\",\"10.0.0.1:22\"]}]}",
     6,
     0,
     {"6 6 fd00:2::/64 fd00::1/128 22-22 #0", "6 6 fd00:2::/64 fd00::2/128 443-443 #0",
      "6 6 fd00:2::/64 fd00::/64 0-65535 #0", "6 6 fd00:2::/64 fd00:1::/48 80-80 #0",
      "6 6 fd00:2::/64 fd00:9::/32 81-81 #0", "6 6 fd00:2::/64 fd00:3::/64 1-2 #0"},
     {NULL}},
    /* HuJSON: comments and trailing commas, not inside strings */
    {"// policy\n{ /* block\n comment */ \"acls\": [\n"
     "  {\"action\": \"accept\", // c\n \"src\": [\"10.0.0.1\",], \"proto\": \"tcp\","
     "   \"dst\": [\"10.0.0.2:22\",],},\n],}\n",
     1,
     0,
     {"4 6 10.0.0.1/32 10.0.0.2/32 22-22 #0"},
     {NULL}},
    /* duplicates merged; host bits masked; numeric protos; no-port protos */
    {"{\"groups\":{\"group:x\":[\"10.0.0.1\"]},\"acls\":[{\"action\":\"accept\",\"proto\":47,"
     "\"src\":[\"10.0.0.1\",\"10.0.0.1/32\",\"group:x\"],\"dst\":[\"10.0.0.5/24:22\"]},"
     "{\"action\":\"accept\",\"proto\":\"17\",\"src\":[\"10.0.0.1\"],\"dst\":[\"1.2.3.4:7\"]},"
     "{\"action\":\"accept\",\"proto\":\"SCTP\",\"src\":[\"10.0.0.1\"],\"dst\":[\"1.2.3.4:9\"]}]}",
     3,
     0,
     {"4 47 10.0.0.1/32 10.0.0.0/24 0-65535 #0", "4 17 10.0.0.1/32 1.2.3.4/32 7-7 #1",
      "4 132 10.0.0.1/32 1.2.3.4/32 9-9 #2"},
     {NULL}},
    /* a peer without addresses is fine; autogroup through the resolver */
    {"{\"acls\":[{\"action\":\"accept\",\"proto\":\"tcp\",\"src\":[\"empty-peer\"],"
     "\"dst\":[\"*:22\"]},{\"action\":\"accept\",\"proto\":\"tcp\",\"src\":[\"peer-a\"],"
     "\"dst\":[\"autogroup:internet:443\"]}]}",
     1,
     0,
     {"4 6 10.1.0.0/24 0.0.0.0/0 443-443 #1"},
     {NULL}},
    /* tests: TCP by default, one per family both sides have */
    {HEAD "\"tests\":[{\"src\":\"alice@example.com\",\"accept\":[\"db:5432\"],"
	  "\"deny\":[\"db:22\",\"*:80\"]},"
	  "{\"src\":\"10.0.0.0/8\",\"proto\":\"icmp\",\"accept\":[\"1.1.1.1:*\"]},"
	  "{\"src\":\"group:eng\",\"proto\":\"udp\",\"accept\":[\"lab6:53\"]}]}",
     0,
     6,
     {NULL},
     {"4 6 100.64.0.1 10.2.0.5:5432 accept #0.0", "4 6 100.64.0.1 10.2.0.5:22 deny #0.0",
      "6 6 fd7a::1 :::80 deny #0.1", "4 1 10.0.0.0 1.1.1.1:0 accept #1.0"}},
};

static void test_good(void)
{
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		const struct mg_policy_opts o = {.resolver = &resolver};
		struct mg_policy p;
		char err[512];
		int ret = mg_policy_parse(g->policy, strlen(g->policy), &o, &p, err, sizeof(err));

		if (!CHECK(ret == 0)) {
			fprintf(stderr, "  good[%zu]: %s\n", i, err);
			continue;
		}
		bool counts_ok = CHECK(p.n_rules == g->n_rules);

		counts_ok = CHECK(p.n_tests == g->n_tests) && counts_ok;
		if (!counts_ok) {
			char buf[160];

			fprintf(stderr, "  good[%zu]: %zu rules, %zu tests:\n", i, p.n_rules,
				p.n_tests);
			for (size_t k = 0; k < p.n_rules; k++)
				fprintf(stderr, "    %s\n",
					fmt_rule(&p.rules[k], buf, sizeof(buf)));
			for (size_t k = 0; k < p.n_tests; k++)
				fprintf(stderr, "    %s\n",
					fmt_test(&p.tests[k], buf, sizeof(buf)));
		}
		for (size_t k = 0; k < 8 && g->rules[k]; k++)
			if (!CHECK(has_rule(&p, g->rules[k])))
				fprintf(stderr, "  good[%zu]: missing rule %s\n", i, g->rules[k]);
		for (size_t k = 0; k < 4 && g->tests[k]; k++)
			if (!CHECK(has_test(&p, g->tests[k])))
				fprintf(stderr, "  good[%zu]: missing test %s\n", i, g->tests[k]);
		for (size_t k = 0; k < p.n_rules; k++) {
			CHECK(p.rules[k].dport_lo <= p.rules[k].dport_hi);
			CHECK(p.rules[k].acl_index < p.n_acls);
		}
		mg_policy_free(&p);
	}
}

/* ---- errors ---- */

#define ACL(src, dst) "{\"acls\":[{\"action\":\"accept\",\"src\":[" src "],\"dst\":[" dst "]}]}"

struct bad {
	const char *policy;
	const char *want; /* substring of the error */
	int ret;
};

static const struct bad bads[] = {
    {ACL("\"*\"", "\"10.0.0.1:99999\""), "acls[0].dst[0] \"10.0.0.1:99999\": port out of range",
     -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:1-70000\""), "port out of range", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:123456789\""), "port out of range", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:abc\""), "acls[0].dst[0] \"10.0.0.1:abc\": bad ports", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:22,\""), "bad ports", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:-5\""), "bad ports", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:90-80\""), "port range 90-80 is backwards", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1:\""), "missing ports after ':'", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.1\""), "acls[0].dst[0] \"10.0.0.1\": expected host:ports", -EINVAL},
    {ACL("\"*\"", "\":22\""), "missing host before ':'", -EINVAL},
    {ACL("\"*\"", "\"[fd00::1:22\""), "missing ']'", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.300:22\""), "\"10.0.0.300:22\": bad IP address or CIDR", -EINVAL},
    {ACL("\"*\"", "\"10.0.0.0/33:22\""), "bad IP address or CIDR", -EINVAL},
    {ACL("\"10.0.0.1/40\"", "\"*:22\""), "acls[0].src[0] \"10.0.0.1/40\": bad IP", -EINVAL},
    {ACL("\"*\"", "22"), "acls[0].dst[0]: expected a \"host:ports\" string", -EINVAL},
    {ACL("1", "\"*:22\""), "acls[0].src[0]: expected a string", -EINVAL},
    {ACL("\"group:nope\"", "\"*:22\""), "acls[0].src[0] \"group:nope\": unknown group", -EINVAL},
    {ACL("\"bob@example.com\"", "\"*:22\""), "\"bob@example.com\": unknown user", -EINVAL},
    {ACL("\"tag:nope\"", "\"*:22\""), "\"tag:nope\": unknown tag", -EINVAL},
    {ACL("\"autogroup:member\"", "\"*:22\""), "unknown autogroup", -EINVAL},
    {ACL("\"*\"", "\"bob:22\""), "acls[0].dst[0] \"bob:22\": unknown host, user or peer", -EINVAL},
    {ACL("\"broken\"", "\"*:22\""), "\"broken\": resolver failed", -EIO},
    {"{\"acls\":[{\"action\":\"deny\",\"src\":[\"*\"],\"dst\":[\"*:*\"]}]}",
     "acls[0].action \"deny\": the only action is \"accept\"", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept /* x */\",\"src\":[\"*\"],\"dst\":[\"*:*\"]}]}",
     "\"accept /* x */\": the only action", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[\"*\"],\"dst\":[\"*:22,]\"]}]}",
     "\"*:22,]\": bad ports", -EINVAL},
    {"{\"acls\":[{\"src\":[\"*\"],\"dst\":[\"*:*\"]}]}", "acls[0]: missing \"action\"", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"dst\":[\"*:*\"]}]}", "acls[0]: missing \"src\"", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[]}]}", "acls[0]: missing \"dst\"", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":\"*\",\"dst\":[\"*:*\"]}]}",
     "acls[0].src: expected an array", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[],\"dst\":[],\"users\":[]}]}",
     "acls[0] \"users\": unknown key", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[],\"dst\":[],\"proto\":\"foo\"}]}",
     "acls[0].proto \"foo\": unknown protocol", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[],\"dst\":[],\"proto\":0}]}",
     "acls[0].proto \"0\": protocol number out of range", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[],\"dst\":[],\"proto\":\"256\"}]}",
     "protocol number out of range", -EINVAL},
    {"{\"acls\":[{\"action\":\"accept\",\"src\":[],\"dst\":[],\"proto\":[6]}]}",
     "acls[0].proto: expected a protocol name or number", -EINVAL},
    {"{\"acls\":{}}", "acls: expected an array", -EINVAL},
    {"{\"acls\":[1]}", "acls[0]: expected an object", -EINVAL},
    {"{\"tagOwners\":{}}", "policy \"tagOwners\": unknown key", -EINVAL},
    {"[]", "policy: expected a JSON object", -EINVAL},
    {"{\"acls\":[}", "line 1 column", -EINVAL},
    {"{\"acls\":[],\"acls\":[]}", "duplicate", -EINVAL},
    {"{ /* open", "p.hujson: line 1: unterminated /* comment", -EINVAL},
    {"\n\n{\"acls\": [\n  {\"action\": x}]}", "line 4", -EINVAL},
    {"{\"groups\":{\"group:a\":[\"10.0.0.1\"],\"group:b\":[\"group:a\"]}}",
     "groups[\"group:b\"][0] \"group:a\": groups cannot contain groups", -EINVAL},
    {"{\"groups\":{\"eng\":[]}}", "groups \"eng\": group names start with \"group:\"", -EINVAL},
    {"{\"groups\":{\"group:a\":\"x\"}}", "groups[\"group:a\"]: expected an array", -EINVAL},
    {"{\"groups\":{\"group:a\":[\"nobody\"]}}", "groups[\"group:a\"][0] \"nobody\": unknown host",
     -EINVAL},
    {"{\"hosts\":{\"db\":\"nope\"}}", "hosts[\"db\"] \"nope\": expected an IP address or CIDR",
     -EINVAL},
    {"{\"hosts\":{\"db\":5}}", "hosts[\"db\"]: expected an IP address or CIDR string", -EINVAL},
    {"{\"hosts\":{\"a:b\":\"10.0.0.1\"}}", "hosts \"a:b\": bad alias", -EINVAL},
    {"{\"hosts\":{\"10.0.0.1\":\"10.0.0.1\"}}", "bad alias", -EINVAL},
    {"{\"hosts\":[]}", "hosts: expected an object", -EINVAL},
    {"{\"tests\":[{\"accept\":[]}]}", "tests[0]: missing \"src\"", -EINVAL},
    {"{\"tests\":[{\"src\":\"10.0.0.1\",\"allow\":[]}]}", "tests[0] \"allow\": unknown key",
     -EINVAL},
    {"{\"tests\":[{\"src\":\"10.0.0.1\",\"accept\":[\"10.0.0.2:22-23\"]}]}",
     "tests[0].accept[0] \"10.0.0.2:22-23\": a test needs one port", -EINVAL},
    {"{\"tests\":[{\"src\":\"10.0.0.1\",\"deny\":[\"10.0.0.2:*\"]}]}",
     "tests[0].deny[0] \"10.0.0.2:*\": a test needs one port", -EINVAL},
    {"{\"tests\":[{\"src\":\"10.0.0.1\",\"accept\":[\"fd00::1:22\"]}]}",
     "tests[0].accept[0] \"fd00::1:22\": no source and destination", -EINVAL},
    {"{\"tests\":[{\"src\":\"empty-peer\",\"accept\":[\"fd00::1:22\"]}]}",
     "tests[0].src \"empty-peer\": has no addresses", -EINVAL},
    {"{\"tests\":[{\"src\":\"mallory\",\"accept\":[]}]}", "tests[0].src \"mallory\": unknown",
     -EINVAL},
    {"{\"tests\":[{\"src\":\"10.0.0.1\",\"accept\":\"10.0.0.2:22\"}]}",
     "tests[0].accept: expected an array", -EINVAL},
    {"{\"tests\":[{\"src\":\"10.0.0.1\",\"accept\":[\"10.0.0.2:99999\"]}]}",
     "tests[0].accept[0] \"10.0.0.2:99999\": port out of range", -EINVAL},
};

static void test_bad(void)
{
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		const struct mg_policy_opts o = {.name = "p.hujson", .resolver = &resolver};
		struct mg_policy p;
		char err[512] = "";
		int ret = mg_policy_parse(b->policy, strlen(b->policy), &o, &p, err, sizeof(err));

		bool ok = CHECK(ret == b->ret);

		ok = CHECK(strstr(err, b->want) != NULL) && ok;
		ok = CHECK(strncmp(err, "p.hujson: ", 10) == 0) && ok;
		if (!ok)
			fprintf(stderr, "  bad[%zu]: got %d \"%s\", want %d \"%s\"\n", i, ret, err,
				b->ret, b->want);
		CHECK(p.rules == NULL && p.n_rules == 0 && p.tests == NULL);
	}
}

/* ---- limits, no resolver, files ---- */

static void test_limits(void)
{
	const char *all = ACL("\"*\"", "\"*:*\"");
	struct mg_policy_opts o = {.max_rules = 5};
	struct mg_policy p;
	char err[512];

	CHECK(mg_policy_parse(all, strlen(all), &o, &p, err, sizeof(err)) == -E2BIG);
	CHECK(strstr(err, "acls[0]: more than 5 rules after expansion") != NULL);
	o.max_rules = 6;
	CHECK(mg_policy_parse(all, strlen(all), &o, &p, err, sizeof(err)) == 0);
	CHECK(p.n_rules == 6);
	mg_policy_free(&p);

	o = (struct mg_policy_opts){.max_bytes = 10};
	CHECK(mg_policy_parse(all, strlen(all), &o, &p, err, sizeof(err)) == -E2BIG);
	CHECK(strstr(err, "more than the limit of 10") != NULL);

	/* 200 sources x 200 destinations x 3 protos: over the default limit */
	size_t cap = 64 * 1024, n = 0;
	char *big = malloc(cap);

	n += (size_t)snprintf(big + n, cap - n, "{\"acls\":[{\"action\":\"accept\",\"src\":[");
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(big + n, cap - n, "%s\"10.%d.%d.1\"", i ? "," : "", i / 200,
				      i % 200);
	n += (size_t)snprintf(big + n, cap - n, "],\"dst\":[");
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(big + n, cap - n, "%s\"11.%d.%d.1:22\"", i ? "," : "",
				      i / 200, i % 200);
	n += (size_t)snprintf(big + n, cap - n, "]}]}");
	CHECK(mg_policy_parse(big, n, NULL, &p, err, sizeof(err)) == -E2BIG);
	CHECK(strstr(err, "more than 200000 rules") != NULL);
	free(big);

	/* a big group named in many destinations that no source pairs with */
	cap = 512 * 1024;
	n = 0;
	big = malloc(cap);
	n += (size_t)snprintf(big + n, cap - n, "{\"groups\":{\"group:big\":[");
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(big + n, cap - n, "%s\"10.0.%d.%d\"", i ? "," : "", i / 250,
				      i % 250);
	n += (size_t)snprintf(big + n, cap - n,
			      "]},\"acls\":[{\"action\":\"accept\",\"src\":[],\"dst\":[");
	for (int i = 0; i < 10000; i++)
		n += (size_t)snprintf(big + n, cap - n, "%s\"group:big:22\"", i ? "," : "");
	n += (size_t)snprintf(big + n, cap - n, "]}]}");
	CHECK(mg_policy_parse(big, n, NULL, &p, err, sizeof(err)) == -E2BIG);
	CHECK(strstr(err, "\"group:big:22\": the policy names more than") != NULL);
	free(big);

	/* without a resolver, names are unknown; errlen 0 is fine */
	const char *named = ACL("\"peer-a\"", "\"*:*\"");
	CHECK(mg_policy_parse(named, strlen(named), NULL, &p, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "\"peer-a\": unknown host, user or peer") != NULL);
	CHECK(mg_policy_parse(named, strlen(named), NULL, &p, NULL, 0) == -EINVAL);
}

static void test_load(void)
{
	char path[] = "/tmp/test_policy.XXXXXX";
	const char *text = "// file\n{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n"
			   " \"dst\": [\"10.0.0.1:99999\"]}]}\n";
	int fd = mkstemp(path);
	struct mg_policy p;
	char err[512];

	if (!CHECK(fd >= 0))
		return;
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	CHECK(mg_policy_load(path, NULL, &p, err, sizeof(err)) == -EINVAL);
	CHECK(strncmp(err, path, strlen(path)) == 0);
	CHECK(strstr(err, ": acls[0].dst[0] \"10.0.0.1:99999\": port out of range") != NULL);
	unlink(path);
	CHECK(mg_policy_load(path, NULL, &p, err, sizeof(err)) == -ENOENT);
	CHECK(mg_policy_load("/tmp", NULL, &p, err, sizeof(err)) == -EISDIR);
}

/* Policy files named on the command line (the example) must compile. */
static void test_files(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		struct mg_policy_opts o = {.resolver = &resolver};
		struct mg_policy p;
		char err[512];

		if (!CHECK(mg_policy_load(argv[i], &o, &p, err, sizeof(err)) == 0)) {
			fprintf(stderr, "  %s\n", err);
			continue;
		}
		printf("%s: %zu acls, %zu rules, %zu tests\n", argv[i], p.n_acls, p.n_rules,
		       p.n_tests);
		CHECK(p.n_rules > 0);
		mg_policy_free(&p);
	}
}

int main(int argc, char **argv)
{
	test_good();
	test_bad();
	test_limits();
	test_load();
	test_files(argc, argv);
	printf("test_policy: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
