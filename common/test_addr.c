// SPDX-License-Identifier: MIT
/*
 * Table tests for addr.c: every parser against good and bad input, with the
 * canonical text each good input formats back to, plus prefix containment.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* in, out (canonical form, NULL = must fail) */
struct parse_case {
	const char *in, *out;
};

static const struct parse_case prefix_cases[] = {
    /* 1 */ {"10.0.0.0/24", "10.0.0.0/24"},
    /* 2 */ {"10.0.0.77/24", "10.0.0.0/24"}, /* host bits masked */
    /* 3 */ {"10.1.2.3", "10.1.2.3/32"},
    /* 4 */ {"0.0.0.0/0", "0.0.0.0/0"},
    /* 5 */ {"255.255.255.255/1", "128.0.0.0/1"},
    /* 6 */ {"10.0.0.1/31", "10.0.0.0/31"},
    /* 7 */ {"fd00::/64", "fd00::/64"},
    /* 8 */ {"fd00::1:2:3:4/64", "fd00::/64"},
    /* 9 */ {"fd00::1", "fd00::1/128"},
    /* 10 */ {"::/0", "::/0"},
    /* 11 */ {"2001:db8:ffff::/35", "2001:db8:e000::/35"},
    /* 12 */ {"::ffff:1.2.3.4/128", "::ffff:1.2.3.4/128"},
    /* 13 */ {"10.0.0.0/33", NULL},
    /* 14 */ {"fd00::/129", NULL},
    /* 15 */ {"10.0.0.0/", NULL},
    /* 16 */ {"10.0.0.0/-1", NULL},
    /* 17 */ {"10.0.0.0/+8", NULL},
    /* 18 */ {"10.0.0.0/8 ", NULL},
    /* 19 */ {" 10.0.0.0/8", NULL},
    /* 20 */ {"10.0.0/8", NULL},
    /* 21 */ {"10.0.0.256", NULL},
    /* 22 */ {"", NULL},
    /* 23 */ {"/8", NULL},
    /* 24 */ {"fe80::1%eth0/64", NULL},
    /* 25 */ {"example.com/32", NULL},
    /* 26 */ {"10.0.0.0/8/8", NULL},
    /* 27 */ {"10.0.0.0/99999999999", NULL},
    /* 28 */ {"010.0.0.0/8", NULL},
    /* 29 */ {"1:2:3:4:5:6:7:8:9/64", NULL},
};

static const struct parse_case ifaddr_cases[] = {
    /* 1 */ {"198.18.0.1/24", "198.18.0.1/24"}, /* host bits kept */
    /* 2 */ {"fd88::fe/64", "fd88::fe/64"},
    /* 3 */ {"198.18.0.1", NULL}, /* prefix length required */
    /* 4 */ {"fd88::fe", NULL},
    /* 5 */ {"198.18.0.1/33", NULL},
};

static const struct parse_case sockaddr_cases[] = {
    /* 1 */ {"1.2.3.4:51820", "1.2.3.4:51820"},
    /* 2 */ {"[fd00::1]:51820", "[fd00::1]:51820"},
    /* 3 */ {"[::]:1", "[::]:1"},
    /* 4 */ {"0.0.0.0:65535", "0.0.0.0:65535"},
    /* 5 */ {"[FD00:0::0001]:9", "[fd00::1]:9"},
    /* 6 */ {"1.2.3.4:0", NULL},
    /* 7 */ {"1.2.3.4:65536", NULL},
    /* 8 */ {"1.2.3.4", NULL},
    /* 9 */ {"1.2.3.4:", NULL},
    /* 10 */ {"fd00::1:51820", NULL},	/* v6 needs brackets */
    /* 11 */ {"[1.2.3.4]:51820", NULL}, /* v4 must not have them */
    /* 12 */ {"[fd00::1]51820", NULL},
    /* 13 */ {"[fd00::1:51820", NULL},
    /* 14 */ {"[fe80::1%eth0]:51820", NULL},
    /* 15 */ {"host.example:51820", NULL},
    /* 16 */ {"1.2.3.4:51820x", NULL},
    /* 17 */ {"1.2.3.4: 51820", NULL},
    /* 18 */ {":51820", NULL},
    /* 19 */ {"[]:51820", NULL},
    /* 20 */ {"", NULL},
};

static const struct parse_case addr_cases[] = {
    /* 1 */ {"1.2.3.4", "1.2.3.4"},
    /* 2 */ {"fe80::1", "fe80::1"},
    /* 3 */ {"1.2.3.4:5", NULL},
    /* 4 */ {"[fd00::1]", NULL},
    /* 5 */ {"1.2.3.4/32", NULL},
    /* 6 */ {"", NULL},
};

static bool is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void test_prefixes(const struct parse_case *t, size_t n, bool ifaddr)
{
	for (size_t i = 0; i < n; i++) {
		struct mg_prefix p;
		char buf[MG_PREFIX_STRLEN];
		int ret = ifaddr ? mg_ifaddr_parse(t[i].in, &p) : mg_prefix_parse(t[i].in, &p);

		if (!t[i].out) {
			CHECK(ret < 0, "case %zu: %s parsed", i + 1, t[i].in);
			CHECK(is_zero(&p, sizeof(p)), "case %zu: out not zeroed", i + 1);
			continue;
		}
		CHECK(ret == 0, "case %zu: %s refused", i + 1, t[i].in);
		CHECK(ret || !strcmp(mg_prefix_fmt(&p, buf, sizeof(buf)), t[i].out),
		      "case %zu: %s -> %s, want %s", i + 1, t[i].in, buf, t[i].out);
	}
}

static void test_sockaddrs(const struct parse_case *t, size_t n, bool with_port)
{
	for (size_t i = 0; i < n; i++) {
		struct mg_sockaddr sa;
		char buf[MG_SOCKADDR_STRLEN];
		int ret = with_port ? mg_sockaddr_parse(t[i].in, &sa) : mg_addr_parse(t[i].in, &sa);

		if (!t[i].out) {
			CHECK(ret < 0, "case %zu: %s parsed", i + 1, t[i].in);
			CHECK(is_zero(&sa, sizeof(sa)), "case %zu: out not zeroed", i + 1);
			continue;
		}
		CHECK(ret == 0, "case %zu: %s refused", i + 1, t[i].in);
		if (with_port)
			mg_sockaddr_fmt(&sa, buf, sizeof(buf));
		else
			mg_addr_fmt(&sa, buf, sizeof(buf));
		CHECK(!ret && !strcmp(buf, t[i].out), "case %zu: %s -> %s, want %s", i + 1, t[i].in,
		      buf, t[i].out);
	}
}

struct contains_case {
	const char *prefix, *addr;
	bool want;
};

static const struct contains_case contains_cases[] = {
    /* 1 */ {"10.0.0.0/24", "10.0.0.255", true},
    /* 2 */ {"10.0.0.0/24", "10.0.1.0", false},
    /* 3 */ {"10.0.0.0/23", "10.0.1.7", true},
    /* 4 */ {"0.0.0.0/0", "203.0.113.9", true},
    /* 5 */ {"10.0.0.1/32", "10.0.0.1", true},
    /* 6 */ {"10.0.0.1/32", "10.0.0.2", false},
    /* 7 */ {"10.0.0.0/8", "fd00::1", false}, /* family mismatch */
    /* 8 */ {"fd00::/64", "fd00::ffff:1", true},
    /* 9 */ {"fd00::/64", "fd00:0:0:1::1", false},
    /* 10 */ {"::/0", "2001:db8::1", true},
    /* 11 */ {"2001:db8:e000::/35", "2001:db8:ffff::1", true},
    /* 12 */ {"2001:db8:e000::/35", "2001:db8:dfff::1", false},
    /* 13 */ {"::/0", "1.2.3.4", false},
};

static void test_contains(void)
{
	for (size_t i = 0; i < sizeof(contains_cases) / sizeof(contains_cases[0]); i++) {
		const struct contains_case *t = &contains_cases[i];
		struct mg_prefix p;
		struct mg_sockaddr a;

		CHECK(mg_prefix_parse(t->prefix, &p) == 0 && mg_addr_parse(t->addr, &a) == 0,
		      "case %zu: bad test input", i + 1);
		CHECK(mg_prefix_contains(&p, a.addr, a.family) == t->want, "case %zu: %s in %s",
		      i + 1, t->addr, t->prefix);
	}
}

/* Host bits kept by mg_ifaddr_parse must not affect containment. */
static void test_contains_ifaddr(void)
{
	struct mg_prefix p;
	struct mg_sockaddr a;

	mg_ifaddr_parse("198.18.0.1/24", &p);
	mg_addr_parse("198.18.0.254", &a);
	CHECK(mg_prefix_contains(&p, a.addr, AF_INET), "ifaddr containment");
	mg_prefix_mask(&p);
	CHECK(p.addr[3] == 0, "mask");
}

static void test_fmt_limits(void)
{
	struct mg_sockaddr sa;
	struct mg_prefix p = {0};
	char small[8], buf[MG_SOCKADDR_STRLEN];

	mg_sockaddr_parse("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535", &sa);
	CHECK(mg_sockaddr_fmt(&sa, buf, sizeof(buf)) != NULL, "longest endpoint fits");
	CHECK(mg_sockaddr_fmt(&sa, small, sizeof(small)) == NULL && small[0] == '\0',
	      "truncation gives NULL and an empty string");
	CHECK(!strcmp(mg_prefix_fmt(&p, buf, sizeof(buf)), "(none)"), "family 0 prefix");
	memset(&sa, 0, sizeof(sa));
	CHECK(!strcmp(mg_sockaddr_fmt(&sa, buf, sizeof(buf)), "(none)"), "family 0 sockaddr");
}

/* mg_sockaddr <-> struct sockaddr: both families round-trip, v4-mapped is v4. */
static void test_sys(void)
{
	static const char *const eps[] = {"192.0.2.1:3478", "[2001:db8::7]:41641"};
	struct sockaddr_storage ss;
	struct mg_sockaddr a, b;
	char buf[MG_SOCKADDR_STRLEN];

	for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
		mg_sockaddr_parse(eps[i], &a);
		socklen_t len = mg_sockaddr_to_sys(&a, &ss);
		CHECK(len == (a.family == AF_INET ? sizeof(struct sockaddr_in)
						  : sizeof(struct sockaddr_in6)),
		      "%s: length", eps[i]);
		CHECK(mg_sockaddr_from_sys(&ss, &b) && !memcmp(&a, &b, sizeof(a)), "%s: round trip",
		      eps[i]);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	memset(&ss, 0, sizeof(ss));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(51820);
	inet_pton(AF_INET6, "::ffff:198.51.100.9", &s6->sin6_addr);
	CHECK(mg_sockaddr_from_sys(&ss, &b) &&
		  !strcmp(mg_sockaddr_fmt(&b, buf, sizeof(buf)), "198.51.100.9:51820"),
	      "v4-mapped v6 is v4");
	ss.ss_family = AF_UNIX;
	CHECK(!mg_sockaddr_from_sys(&ss, &b) && b.family == 0, "other families refused");
}

static void test_hostports(void)
{
	static const struct {
		const char *in;
		const char *host; /* NULL: refused */
		int port;
		int family;
	} t[] = {
	    {"192.0.2.1:443", "", 443, AF_INET},
	    {"[2001:db8::1]:3340", "", 3340, AF_INET6},
	    {"derp1.example.com:443", "derp1.example.com", 443, 0},
	    {"localhost:1", "localhost", 1, 0},
	    {"derp1.example.com", NULL, 0, 0},
	    {"derp1.example.com:", NULL, 0, 0},
	    {"derp1.example.com:0", NULL, 0, 0},
	    {"derp1.example.com:65536", NULL, 0, 0},
	    {"derp1.example.com: 443", NULL, 0, 0},
	    {"derp1.example.com:+443", NULL, 0, 0},
	    {"derp1.example.com:443x", NULL, 0, 0},
	    {"derp_1.example.com:443", NULL, 0, 0},
	    {":443", NULL, 0, 0},
	    {"192.0.2.1:0", NULL, 0, 0},
	    {"2001:db8::1:443", NULL, 0, 0},
	    {"", NULL, 0, 0},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct mg_sockaddr sa;
		char host[254];
		int ret = mg_hostport_parse(t[i].in, &sa, host, sizeof(host));

		if (!t[i].host) {
			CHECK(ret == -EINVAL && !host[0] && is_zero(&sa, sizeof(sa)),
			      "hostport \"%s\" refused, outputs zeroed", t[i].in);
			continue;
		}
		CHECK(ret == 0 && !strcmp(host, t[i].host) && sa.port == t[i].port &&
			  sa.family == t[i].family,
		      "hostport \"%s\": host \"%s\" port %u family %d", t[i].in, host, sa.port,
		      sa.family);
		char back[300];
		CHECK(!strcmp(mg_hostport_fmt(&sa, host, back, sizeof(back)), t[i].in),
		      "hostport \"%s\" formats back as \"%s\"", t[i].in, back);
	}
}

static void test_dns_names(void)
{
	static const struct {
		const char *in;
		bool ok;
	} t[] = {
	    {"derp1.example.com", true},
	    {"localhost", true},
	    {"a", true},
	    {"x-1.example", true},
	    {"1.example", true},
	    {"A.B-C.D", true},
	    {"", false},
	    {".", false},
	    {"example.com.", false},
	    {".example.com", false},
	    {"a..b", false},
	    {"-a.example", false},
	    {"a-.example", false},
	    {"a_b.example", false},
	    {"a b", false},
	    {"192.0.2.1", false},
	    {"2001:db8::1", false},
	    {"caf\xc3\xa9.example", false},
	    {"0123456789012345678901234567890123456789012345678901234567890123.x", false},
	    {"01234567890123456789012345678901234567890123456789012345678901a.x", true},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK(mg_dns_name_valid(t[i].in) == t[i].ok, "dns name \"%s\": want %s", t[i].in,
		      t[i].ok ? "valid" : "refused");
	char longname[300];
	for (int i = 0; i < 299; i++)
		longname[i] = i % 2 ? '.' : 'a';
	longname[299] = '\0'; /* 150 labels, 299 characters */
	CHECK(!mg_dns_name_valid(longname), "a 299-character name refused");
	longname[253] = '\0';
	CHECK(mg_dns_name_valid(longname), "a 253-character name accepted");
}

int main(void)
{
	test_prefixes(prefix_cases, sizeof(prefix_cases) / sizeof(prefix_cases[0]), false);
	test_prefixes(ifaddr_cases, sizeof(ifaddr_cases) / sizeof(ifaddr_cases[0]), true);
	test_sockaddrs(sockaddr_cases, sizeof(sockaddr_cases) / sizeof(sockaddr_cases[0]), true);
	test_sockaddrs(addr_cases, sizeof(addr_cases) / sizeof(addr_cases[0]), false);
	test_contains();
	test_contains_ifaddr();
	test_fmt_limits();
	test_sys();
	test_dns_names();
	test_hostports();
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
