/* SPDX-License-Identifier: MIT */
/*
 * Host names resolved without blocking the control loop: glibc's
 * getaddrinfo_a, started once and polled from the tick. A request given up
 * while glibc still runs it cannot be freed; cp_dns_release parks it on a
 * list until glibc is done, and cp_dns_reap frees what it can (from the
 * tick; with wait, everything, at exit).
 *
 * Used for the DERP regions (derp.c) and the STUN servers (stun.c) given
 * by name. Main thread only.
 */
#ifndef MG_CP_DNS_H
#define MG_CP_DNS_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct cp_dns;

/* Start resolving host for sockets of socktype (SOCK_STREAM, SOCK_DGRAM);
 * NULL with *err (an EAI_ code, or EAI_MEMORY). */
struct cp_dns *cp_dns_start(const char *host, int socktype, int *err);

/* A finished request's addresses (port set), at most max, in glibc's order
 * and without duplicates: their count, or 0 with *err (EAI_INPROGRESS while
 * it runs, EAI_NODATA if it had no usable address). */
unsigned cp_dns_addrs(struct cp_dns *q, uint16_t port, struct mg_sockaddr *out, unsigned max,
		      int *err);

/* A request not needed any more (done or not); NULL is fine. */
void cp_dns_release(struct cp_dns *q);

/* Free the given-up requests glibc has finished; with wait, all of them
 * (at most a second each). */
void cp_dns_reap(bool wait);

#endif /* MG_CP_DNS_H */
