// SPDX-License-Identifier: MIT
/*
 * Address parsing and formatting. Strict: the whole string must be consumed,
 * numbers are plain decimal digits, and only numeric addresses are accepted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"

static int addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

static int max_cidr(int family)
{
	return family == AF_INET ? 32 : 128;
}

/* Decimal digits only, 1..10 of them, value <= max. */
static int parse_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 10)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Parse the n bytes at s as a numeric IPv4 or IPv6 address. */
static int parse_ip(const char *s, size_t n, uint8_t *family, uint8_t addr[16])
{
	char buf[MG_ADDR_STRLEN];

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, addr) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

void mg_prefix_mask(struct mg_prefix *p)
{
	int len = addr_len(p->family);

	for (int i = 0; i < len; i++) {
		int bits = p->cidr - i * 8;

		if (bits <= 0)
			p->addr[i] = 0;
		else if (bits < 8)
			p->addr[i] &= (uint8_t)(0xff00 >> bits);
	}
	memset(p->addr + len, 0, sizeof(p->addr) - len);
}

/* Shared by the prefix parsers: "addr[/cidr]". */
static int prefix_parse(const char *s, struct mg_prefix *out, bool need_cidr)
{
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long cidr;

	memset(out, 0, sizeof(*out));
	if (parse_ip(s, alen, &out->family, out->addr) < 0)
		goto fail;
	cidr = max_cidr(out->family);
	if (slash && parse_uint(slash + 1, strlen(slash + 1), cidr, &cidr) < 0)
		goto fail;
	if (!slash && need_cidr)
		goto fail;
	out->cidr = (uint8_t)cidr;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

int mg_prefix_parse(const char *s, struct mg_prefix *out)
{
	int ret = prefix_parse(s, out, false);

	if (ret == 0)
		mg_prefix_mask(out);
	return ret;
}

int mg_ifaddr_parse(const char *s, struct mg_prefix *out)
{
	return prefix_parse(s, out, true);
}

int mg_addr_parse(const char *s, struct mg_sockaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (parse_ip(s, strlen(s), &out->family, out->addr) < 0) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	return 0;
}

int mg_sockaddr_parse(const char *s, struct mg_sockaddr *out)
{
	const char *host = s, *colon;
	size_t hlen;
	unsigned long port;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			goto fail;
		host = s + 1;
		hlen = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			goto fail;
		hlen = (size_t)(colon - s);
	}
	if (parse_ip(host, hlen, &out->family, out->addr) < 0)
		goto fail;
	/* v6 must be bracketed, v4 must not be. */
	if ((out->family == AF_INET6) != (s[0] == '['))
		goto fail;
	if (parse_uint(colon + 1, strlen(colon + 1), 65535, &port) < 0 || port == 0)
		goto fail;
	out->port = (uint16_t)port;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

/* snprintf that reports truncation as NULL with an empty buffer. */
static char *fmt_result(char *buf, size_t len, int n)
{
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return NULL;
	}
	return buf;
}

static const char *ntop(int family, const uint8_t *addr, char ip[MG_ADDR_STRLEN])
{
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	return inet_ntop(family, addr, ip, MG_ADDR_STRLEN);
}

char *mg_prefix_fmt(const struct mg_prefix *p, char *buf, size_t len)
{
	char ip[MG_ADDR_STRLEN];

	if (!ntop(p->family, p->addr, ip))
		return fmt_result(buf, len, snprintf(buf, len, "(none)"));
	return fmt_result(buf, len, snprintf(buf, len, "%s/%u", ip, p->cidr));
}

char *mg_sockaddr_fmt(const struct mg_sockaddr *sa, char *buf, size_t len)
{
	char ip[MG_ADDR_STRLEN];
	const char *fmt = sa->family == AF_INET6 ? "[%s]:%u" : "%s:%u";

	if (!ntop(sa->family, sa->addr, ip))
		return fmt_result(buf, len, snprintf(buf, len, "(none)"));
	return fmt_result(buf, len, snprintf(buf, len, fmt, ip, sa->port));
}

char *mg_addr_fmt(const struct mg_sockaddr *sa, char *buf, size_t len)
{
	char ip[MG_ADDR_STRLEN];

	if (!ntop(sa->family, sa->addr, ip))
		return fmt_result(buf, len, snprintf(buf, len, "(none)"));
	return fmt_result(buf, len, snprintf(buf, len, "%s", ip));
}

bool mg_prefix_contains(const struct mg_prefix *p, const uint8_t *addr, int family)
{
	int full = p->cidr / 8, rest = p->cidr % 8;

	if (family != p->family || (family != AF_INET && family != AF_INET6))
		return false;
	if (p->cidr > max_cidr(family))
		return false;
	if (memcmp(p->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((p->addr[full] ^ addr[full]) & (uint8_t)(0xff00 >> rest)) == 0;
}

socklen_t mg_sockaddr_to_sys(const struct mg_sockaddr *sa, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (sa->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(sa->port);
		memcpy(&s4->sin_addr, sa->addr, 4);
		return sizeof(*s4);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(sa->port);
	memcpy(&s6->sin6_addr, sa->addr, 16);
	return sizeof(*s6);
}

bool mg_sockaddr_from_sys(const struct sockaddr_storage *ss, struct mg_sockaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		out->family = AF_INET;
		out->port = ntohs(s4->sin_port);
		memcpy(out->addr, &s4->sin_addr, 4);
		return true;
	}
	if (ss->ss_family != AF_INET6)
		return false;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	out->port = ntohs(s6->sin6_port);
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		out->family = AF_INET;
		memcpy(out->addr, &s6->sin6_addr.s6_addr[12], 4);
	} else {
		out->family = AF_INET6;
		memcpy(out->addr, &s6->sin6_addr, 16);
	}
	return true;
}

bool mg_dns_name_valid(const char *s)
{
	size_t len = strlen(s), label = 0;
	bool alpha = false;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char ch = s[i];

		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (label == 0 && ch == '-')
			return false;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-')
			alpha = true;
		else if (ch < '0' || ch > '9')
			return false;
		label++;
	}
	return alpha;
}

int mg_hostport_parse(const char *s, struct mg_sockaddr *sa, char *host, size_t hostlen)
{
	const char *colon = strrchr(s, ':');
	char *end;

	memset(sa, 0, sizeof(*sa));
	if (hostlen)
		host[0] = '\0';
	if (mg_sockaddr_parse(s, sa) == 0)
		return sa->port ? 0 : (memset(sa, 0, sizeof(*sa)), -EINVAL);
	memset(sa, 0, sizeof(*sa));
	if (!colon || (size_t)(colon - s) >= hostlen || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (*end || errno || port == 0 || port > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (!mg_dns_name_valid(host)) {
		host[0] = '\0';
		return -EINVAL;
	}
	sa->port = (uint16_t)port;
	return 0;
}

char *mg_hostport_fmt(const struct mg_sockaddr *sa, const char *host, char *buf, size_t len)
{
	if (!host[0])
		return mg_sockaddr_fmt(sa, buf, len);
	snprintf(buf, len, "%s:%u", host, sa->port);
	return buf;
}

const char *mg_ip_proto_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "ipv6-icmp";
	case IPPROTO_SCTP:
		return "sctp";
	}
	return NULL;
}
