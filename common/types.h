/* SPDX-License-Identifier: MIT */
/*
 * Address types shared by the control process and the dataplane. They travel
 * in shared-memory ring messages, so they are fixed-size, padding-free and
 * carry no pointers; the sizes are pinned below.
 */
#ifndef MG_TYPES_H
#define MG_TYPES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 address with a UDP port. */
struct mg_sockaddr {
	uint8_t family; /* AF_INET, AF_INET6, 0 = none */
	uint8_t pad;
	uint16_t port;	  /* host order */
	uint8_t addr[16]; /* v4 in the first 4 bytes, network order */
};

/* An address with a prefix length ("10.0.0.0/24"). */
struct mg_prefix {
	uint8_t family; /* AF_INET, AF_INET6, 0 = none */
	uint8_t cidr;	/* 0..32 or 0..128 */
	uint8_t pad[2];
	uint8_t addr[16]; /* v4 in the first 4 bytes, network order */
};

_Static_assert(sizeof(struct mg_sockaddr) == 20, "mg_sockaddr is a ring ABI type");

/*
 * A DERP endpoint, Tailscale's convention: 127.3.3.40 with the DERP region
 * as the port. A peer whose endpoint is one is reached through the control
 * process's connection to that region's relay (control/derp.c), not over
 * UDP; `wg show` prints it as 127.3.3.40:REGION, as Tailscale's does.
 */
static inline bool mg_sockaddr_is_derp(const struct mg_sockaddr *sa)
{
	return sa->family == AF_INET && sa->addr[0] == 127 && sa->addr[1] == 3 &&
	       sa->addr[2] == 3 && sa->addr[3] == 40;
}

/* Same family, port and address (the bytes past an IPv4 address ignored). */
static inline bool mg_sockaddr_same(const struct mg_sockaddr *a, const struct mg_sockaddr *b)
{
	if (a->family != b->family || a->port != b->port)
		return false;
	for (int i = 0; i < (a->family == AF_INET ? 4 : 16); i++)
		if (a->addr[i] != b->addr[i])
			return false;
	return true;
}

static inline struct mg_sockaddr mg_sockaddr_derp(uint16_t region)
{
	return (struct mg_sockaddr){.family = AF_INET, .port = region, .addr = {127, 3, 3, 40}};
}
_Static_assert(sizeof(struct mg_prefix) == 20, "mg_prefix is a ring ABI type");

#endif /* MG_TYPES_H */
