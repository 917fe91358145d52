/* SPDX-License-Identifier: MIT */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "dns.h"

struct cp_dns {
	struct gaicb cb;
	struct addrinfo hints;
	char host[254];
	struct cp_dns *next; /* on the orphans list */
};

static struct cp_dns *orphans;

static void dns_free(struct cp_dns *q)
{
	if (q->cb.ar_result)
		freeaddrinfo(q->cb.ar_result);
	free(q);
}

void cp_dns_reap(bool wait)
{
	for (struct cp_dns **pp = &orphans; *pp;) {
		struct cp_dns *q = *pp;

		if (wait && gai_error(&q->cb) == EAI_INPROGRESS) {
			const struct gaicb *l[1] = {&q->cb};
			gai_suspend(l, 1, &(struct timespec){.tv_sec = 1});
		}
		if (gai_error(&q->cb) == EAI_INPROGRESS) {
			pp = &q->next;
			continue;
		}
		*pp = q->next;
		dns_free(q);
	}
}

void cp_dns_release(struct cp_dns *q)
{
	if (!q)
		return;
	if (gai_cancel(&q->cb) == EAI_NOTCANCELED) {
		q->next = orphans;
		orphans = q;
		return;
	}
	dns_free(q);
}

struct cp_dns *cp_dns_start(const char *host, int socktype, int *err)
{
	struct cp_dns *q = calloc(1, sizeof(*q));

	*err = EAI_MEMORY;
	if (!q)
		return NULL;
	snprintf(q->host, sizeof(q->host), "%s", host);
	q->hints = (struct addrinfo){.ai_family = AF_UNSPEC, .ai_socktype = socktype};
	q->cb = (struct gaicb){.ar_name = q->host, .ar_request = &q->hints};
	struct gaicb *l[1] = {&q->cb};
	if ((*err = getaddrinfo_a(GAI_NOWAIT, l, 1, NULL))) {
		free(q);
		return NULL;
	}
	return q;
}

unsigned cp_dns_addrs(struct cp_dns *q, uint16_t port, struct mg_sockaddr *out, unsigned max,
		      int *err)
{
	unsigned n = 0;

	*err = gai_error(&q->cb);
	for (const struct addrinfo *ai = *err ? NULL : q->cb.ar_result; ai && n < max;
	     ai = ai->ai_next) {
		struct sockaddr_storage ss = {0};
		bool dup = false;

		if (ai->ai_addrlen > sizeof(ss))
			continue;
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		if (!mg_sockaddr_from_sys(&ss, &out[n]))
			continue;
		out[n].port = port;
		for (unsigned k = 0; k < n; k++)
			dup |= mg_sockaddr_same(&out[k], &out[n]);
		n += !dup;
	}
	if (!*err && !n)
		*err = EAI_NODATA;
	return n;
}
