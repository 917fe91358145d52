/* SPDX-License-Identifier: MIT */
/*
 * Text <-> binary for addresses, endpoints and prefixes. Numeric forms only:
 * nothing here resolves names or touches the network.
 *
 * Parsers return 0 or -EINVAL and never write a half-parsed value: on error
 * *out is zeroed. Formatters return buf, or NULL (buf set to "" when len > 0)
 * if len is too small; MG_*_STRLEN are always enough.
 */
#ifndef MG_ADDR_H
#define MG_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "types.h"

#define MG_ADDR_STRLEN	   46			/* INET6_ADDRSTRLEN */
#define MG_PREFIX_STRLEN   (MG_ADDR_STRLEN + 4) /* "/128" */
#define MG_SOCKADDR_STRLEN (MG_ADDR_STRLEN + 8) /* "[" "]:65535" */

/* "10.0.0.0/24", "fd00::/64"; a bare address is a host prefix. Host bits are masked off. */
int mg_prefix_parse(const char *s, struct mg_prefix *out);
/*
 * An interface address with its prefix length ("198.18.0.1/24"): the
 * prefix length is required and the host bits are kept.
 */
int mg_ifaddr_parse(const char *s, struct mg_prefix *out);
/* "1.2.3.4:51820", "[fd00::1]:51820"; port 1..65535, v6 needs brackets, no scope ids. */
int mg_sockaddr_parse(const char *s, struct mg_sockaddr *out);
/* An address without a port ("1.2.3.4", "fd00::1"); out->port = 0. */
int mg_addr_parse(const char *s, struct mg_sockaddr *out);

char *mg_prefix_fmt(const struct mg_prefix *p, char *buf, size_t len);
/* "1.2.3.4:51820", "[fd00::1]:51820"; family 0 gives "(none)". */
char *mg_sockaddr_fmt(const struct mg_sockaddr *sa, char *buf, size_t len);
/* The address alone, without brackets or port; family 0 gives "(none)". */
char *mg_addr_fmt(const struct mg_sockaddr *sa, char *buf, size_t len);

/* Zero the host bits of p (those past p->cidr). */
void mg_prefix_mask(struct mg_prefix *p);
/* Whether addr (4 or 16 bytes, network order, of the given family) lies in p. */
bool mg_prefix_contains(const struct mg_prefix *p, const uint8_t *addr, int family);

/* To a socket address (AF_INET or AF_INET6 by sa->family); returns its length. */
socklen_t mg_sockaddr_to_sys(const struct mg_sockaddr *sa, struct sockaddr_storage *ss);
/* From a socket address; a v4-mapped IPv6 address becomes IPv4. False (and
 * *out zeroed) for other families. */
bool mg_sockaddr_from_sys(const struct sockaddr_storage *ss, struct mg_sockaddr *out);

/*
 * A server: numeric "ipv4:port" / "[ipv6]:port" (into *sa, host ""), or
 * "name:port" with a DNS name (mg_dns_name_valid) into host (hostlen at
 * least 254) and the port alone into sa (family 0), to be resolved when
 * used. Port 1..65535. 0 or -EINVAL (outputs zeroed).
 */
int mg_hostport_parse(const char *s, struct mg_sockaddr *sa, char *host, size_t hostlen);

/* The text mg_hostport_parse reads: "host:port", or sa formatted when host
 * is "". Returns buf. */
char *mg_hostport_fmt(const struct mg_sockaddr *sa, const char *host, char *buf, size_t len);

/* A DNS host name (a TLS server name): 1..253 characters in labels of 1..63
 * letters, digits and '-', no label starting or ending with '-', no empty
 * label (a final '.' is refused too), not all digits and dots (an address). */
bool mg_dns_name_valid(const char *s);

/* The IANA keyword of an IP protocol that has one here ("tcp", "udp",
 * "icmp", "ipv6-icmp", "sctp"), else NULL. */
const char *mg_ip_proto_name(uint8_t proto);

#endif /* MG_ADDR_H */
