// SPDX-License-Identifier: MIT
/*
 * The fake DERP relays and the fake dataplane of test_cp_derp.c and
 * test_cp_disco.c (see test_relay.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "test_relay.h"

/* ---- the fake relay ---------------------------------------------------------- */

/* What step() serves: the relays between relay_open and relay_close. */
static struct relay *open_relays[RELAY_MAX];

void keypair(uint8_t priv[32], uint8_t pub[32])
{
	randombytes_buf(priv, 32);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	if (crypto_scalarmult_base(pub, priv))
		abort();
}

void relay_open(struct relay *r)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	keypair(r->priv, r->pub);
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(r->lfd, 8) ||
	    getsockname(r->lfd, (struct sockaddr *)&sin, &sl)) {
		perror("relay");
		exit(2);
	}
	r->port = ntohs(sin.sin_port);
	for (int i = 0; i < RELAY_MAX; i++)
		if (open_relays[i] == r)
			return; /* opened again without relay_close */
	for (int i = 0; i < RELAY_MAX; i++)
		if (!open_relays[i]) {
			open_relays[i] = r;
			return;
		}
	fprintf(stderr, "relay: more than %d open\n", RELAY_MAX);
	exit(2);
}

void relay_hangup(struct relay *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->st = 0;
	r->in_len = 0;
}

void relay_reset(struct relay *r)
{
	relay_hangup(r);
	r->accepts = r->closes = r->http_bad = r->client_infos = r->info_bad = r->overflow = 0;
	r->qn = 0;
	memset(r->client_pub, 0, 32);
	r->version = 0;
}

void relay_close(struct relay *r)
{
	relay_hangup(r);
	close(r->lfd);
	r->lfd = -1;
	for (int i = 0; i < RELAY_MAX; i++)
		if (open_relays[i] == r)
			open_relays[i] = NULL;
}

void relay_send(struct relay *r, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (r->fd >= 0 && n) {
		ssize_t k = send(r->fd, p, n, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += k;
		n -= (size_t)k;
	}
}

static void relay_process(struct relay *r)
{
	for (;;) {
		size_t used;

		if (r->st == 0) {
			struct mg_derp_http_req req;
			char resp[512];
			uint8_t f[MG_DERP_HDR_LEN + 64];
			long h = mg_derp_http_parse_request((const char *)r->in, r->in_len, &req);

			if (h == 0)
				return;
			if (h < 0 || !req.upgrade_derp) {
				r->http_bad++;
				relay_hangup(r);
				return;
			}
			relay_send(r, resp, mg_derp_http_response(resp, sizeof(resp), r->pub));
			relay_send(r, f, mg_derp_build_server_key(f, sizeof(f), r->pub));
			r->st = 1;
			used = (size_t)h;
		} else {
			uint8_t type;
			uint32_t blen;
			long fl = mg_derp_frame(r->in, r->in_len, MG_DERP_MAX_BODY, &type, &blen);
			const uint8_t *body = r->in + MG_DERP_HDR_LEN;

			if (fl == 0)
				return;
			if (fl < 0) {
				r->info_bad++;
				relay_hangup(r);
				return;
			}
			if (r->st == 1) {
				char json[256];
				uint8_t nonce[MG_DERP_NONCE_LEN], f[256];

				if (type != MG_DERP_CLIENT_INFO ||
				    mg_derp_parse_client_info(body, blen, r->priv, r->client_pub,
							      &r->version, json,
							      sizeof(json)) != MG_DERP_OK) {
					r->info_bad++;
					relay_hangup(r);
					return;
				}
				r->client_infos++;
				randombytes_buf(nonce, sizeof(nonce));
				relay_send(r, f,
					   mg_derp_build_server_info(f, sizeof(f), r->priv,
								     r->client_pub, nonce,
								     "{\"version\":2}"));
				r->st = 2;
			} else if (r->qn < RELAY_Q && blen <= sizeof(r->q[0].body)) {
				r->q[r->qn].type = type;
				r->q[r->qn].len = blen;
				memcpy(r->q[r->qn].body, body, blen);
				r->qn++;
			} else {
				r->overflow++;
			}
			used = (size_t)fl;
		}
		memmove(r->in, r->in + used, r->in_len - used);
		r->in_len -= used;
	}
}

static void relay_read(struct relay *r)
{
	ssize_t k = recv(r->fd, r->in + r->in_len, sizeof(r->in) - r->in_len, MSG_DONTWAIT);

	if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (k <= 0) {
		r->closes++;
		relay_hangup(r);
		return;
	}
	r->in_len += (size_t)k;
	relay_process(r);
}

static void relay_accept(struct relay *r)
{
	int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (r->fd >= 0) { /* the client gave up on the old one */
		r->closes++;
		relay_hangup(r);
	}
	r->fd = fd;
	r->accepts++;
}

bool relay_take(struct relay *r, uint8_t type, struct frame *out)
{
	for (unsigned i = 0; i < r->qn; i++) {
		if (r->q[i].type != type)
			continue;
		if (out)
			*out = r->q[i];
		memmove(&r->q[i], &r->q[i + 1], (r->qn - i - 1) * sizeof(r->q[0]));
		r->qn--;
		return true;
	}
	return false;
}

bool relay_has(const struct relay *r, uint8_t type)
{
	for (unsigned i = 0; i < r->qn; i++)
		if (r->q[i].type == type)
			return true;
	return false;
}

void relay_recv_packet(struct relay *r, const uint8_t src[32], const void *pkt, size_t len)
{
	static uint8_t f[MG_DERP_HDR_LEN + MG_DERP_KEY_LEN + 4096];

	relay_send(r, f, mg_derp_build_packet(f, sizeof(f), MG_DERP_RECV_PACKET, src, pkt, len));
}

/* ---- driving the client -------------------------------------------------------- */

uint64_t tick_offset;

void step(struct cp_device *d)
{
	struct pollfd pfd[MG_MAX_DERP_REGIONS + 2 * RELAY_MAX];
	struct relay *rs[RELAY_MAX];
	unsigned n, k, nr = 0;

	for (int i = 0; i < RELAY_MAX; i++)
		if (open_relays[i])
			rs[nr++] = open_relays[i];
	n = 0;
	if (d) { /* NULL: only the relays */
		cp_derp_tick(d, cp_now() + tick_offset);
		n = cp_derp_pollfds(d, pfd, MG_MAX_DERP_REGIONS);
	}
	k = n;
	for (unsigned i = 0; i < nr; i++) {
		pfd[k++] = (struct pollfd){.fd = rs[i]->lfd, .events = POLLIN};
		pfd[k++] = (struct pollfd){.fd = rs[i]->fd, .events = POLLIN};
	}
	if (poll(pfd, k, 5) <= 0)
		return;
	if (d)
		cp_derp_service(d, pfd, n, cp_now());
	for (unsigned i = 0; i < nr; i++) {
		struct relay *r = rs[i];
		if (r->fd >= 0 && pfd[n + 2 * i + 1].fd == r->fd && pfd[n + 2 * i + 1].revents)
			relay_read(r);
		if (r->lfd >= 0 && pfd[n + 2 * i].revents)
			relay_accept(r);
	}
}

void run_for(struct cp_device *d, unsigned ms)
{
	uint64_t dl = cp_now() + (uint64_t)ms * MS;

	while (cp_now() < dl)
		step(d);
}

bool relay_sync(struct cp_device *d, struct relay *r)
{
	static uint64_t ctr;
	uint8_t data[8], f[MG_DERP_HDR_LEN + 8];
	struct frame pong;
	bool got = false;

	ctr++;
	memcpy(data, &ctr, 8);
	relay_send(r, f, mg_derp_build_ping(f, sizeof(f), MG_DERP_PING, data));
	WAIT_FOR(d, (got = relay_take(r, MG_DERP_PONG, &pong)), 2000);
	return got && pong.len == 8 && !memcmp(pong.body, data, 8);
}

/* ---- the fake dataplane -------------------------------------------------------- */

void attach(struct cp_device *d, struct mg_shm *shm)
{
	struct mg_msg m;
	uint64_t dl = cp_now() + 5 * S;

	cp_dp_maintain(d);
	do {
		cp_dp_poll(d);
		while (mg_ring_recv(shm->cp2dp, &m) == 0)
			;
	} while ((d->syncing || d->resync) && cp_now() < dl);
}

unsigned drain(struct mg_shm *shm)
{
	struct mg_msg m;
	unsigned n = 0;

	while (mg_ring_recv(shm->cp2dp, &m) == 0)
		n++;
	return n;
}

/* ---- addresses ------------------------------------------------------------------- */

struct mg_sockaddr sa(const char *text)
{
	struct mg_sockaddr a;

	if (mg_sockaddr_parse(text, &a))
		abort();
	return a;
}

bool sa_eq(const struct mg_sockaddr *a, const struct mg_sockaddr *b)
{
	return !memcmp(a, b, sizeof(*a));
}

const char *ep_str(const struct mg_sockaddr *a)
{
	static char buf[8][MG_SOCKADDR_STRLEN];
	static int k;

	return mg_sockaddr_fmt(a, buf[k++ % 8], MG_SOCKADDR_STRLEN);
}
