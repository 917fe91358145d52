// SPDX-License-Identifier: MIT
/*
 * The fake DERP relays and the fake dataplane of test_cp_derp.c and
 * test_cp_disco.c (see test_relay.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
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

	/* A TLS peer gone: OpenSSL writes with write(2), not MSG_NOSIGNAL. */
	signal(SIGPIPE, SIG_IGN);
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
	if (r->ssl) {
		if (r->tls_up && !r->tls_fatal) {
			ERR_clear_error();
			SSL_shutdown(r->ssl); /* close_notify, if the socket takes it */
		}
		SSL_free(r->ssl);
		r->ssl = NULL;
		ERR_clear_error();
	}
	r->tls_up = r->tls_fatal = false;
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
	r->tls_handshakes = r->tls_fails = 0;
	r->host[0] = r->sni[0] = r->tls_err[0] = '\0';
}

/* Records the name a client asks for (SNI). */
static int relay_servername(SSL *ssl, int *alert, void *arg)
{
	struct relay *r = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	snprintf(r->sni, sizeof(r->sni), "%s", name ? name : "");
	return SSL_TLSEXT_ERR_OK;
}

void relay_tls(struct relay *r, const char *cert, const char *key)
{
	relay_hangup(r);
	SSL_CTX_free(r->tls_ctx);
	r->tls_ctx = NULL;
	if (!cert)
		return;
	r->tls_ctx = SSL_CTX_new(TLS_server_method());
	if (!r->tls_ctx || !SSL_CTX_use_certificate_chain_file(r->tls_ctx, cert) ||
	    !SSL_CTX_use_PrivateKey_file(r->tls_ctx, key, SSL_FILETYPE_PEM) ||
	    !SSL_CTX_check_private_key(r->tls_ctx)) {
		fprintf(stderr, "relay_tls %s: ", cert);
		ERR_print_errors_fp(stderr);
		exit(2);
	}
	SSL_CTX_set_tlsext_servername_callback(r->tls_ctx, relay_servername);
	SSL_CTX_set_tlsext_servername_arg(r->tls_ctx, r);
}

void relay_close(struct relay *r)
{
	relay_tls(r, NULL, NULL);
	close(r->lfd);
	r->lfd = -1;
	for (int i = 0; i < RELAY_MAX; i++)
		if (open_relays[i] == r)
			open_relays[i] = NULL;
}

/* relay_send over TLS: waits for the socket up to 2 s in all. */
static void relay_tls_send(struct relay *r, const uint8_t *p, size_t n)
{
	uint64_t dl = cp_now() + 2 * S;

	while (r->ssl && r->tls_up && n) {
		int k, e;

		ERR_clear_error();
		k = SSL_write(r->ssl, p, n > 1u << 30 ? 1 << 30 : (int)n);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		e = SSL_get_error(r->ssl, k);
		if ((e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) || cp_now() > dl) {
			r->tls_fatal = e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL;
			return; /* the read side sees what happened */
		}
		struct pollfd pfd = {.fd = r->fd,
				     .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
		poll(&pfd, 1, 10);
	}
}

void relay_send(struct relay *r, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	if (r->ssl) {
		relay_tls_send(r, p, n);
		return;
	}
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

/* The Host header of the request head in r->in[0..n), into r->host. */
static void relay_note_host(struct relay *r, size_t n)
{
	const char *p = (const char *)r->in, *end = p + n;

	r->host[0] = '\0';
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((eol ? eol : end) - p);

		if (len && p[len - 1] == '\r')
			len--;
		if (len > 5 && !strncasecmp(p, "Host:", 5)) {
			const char *v = p + 5;
			while (v < p + len && *v == ' ')
				v++;
			snprintf(r->host, sizeof(r->host), "%.*s", (int)(p + len - v), v);
			return;
		}
		if (!eol)
			return;
		p = eol + 1;
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
			relay_note_host(r, (size_t)h);
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

/* The TLS handshake, then everything SSL_read has (to WANT_READ: what the
 * TLS layer holds is not polled for). */
static void relay_tls_read(struct relay *r)
{
	int k, e;

	if (!r->tls_up) {
		ERR_clear_error();
		k = SSL_accept(r->ssl);
		if (k != 1) {
			e = SSL_get_error(r->ssl, k);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				r->tls_events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
				return;
			}
			unsigned long err = ERR_peek_last_error();
			if (err)
				ERR_error_string_n(err, r->tls_err, sizeof(r->tls_err));
			else
				snprintf(r->tls_err, sizeof(r->tls_err), "TLS error %d", e);
			r->tls_fails++;
			r->tls_fatal = true;
			r->closes++;
			relay_hangup(r);
			return;
		}
		r->tls_up = true;
		r->tls_handshakes++;
		r->tls_events = POLLIN;
	}
	while (r->ssl) {
		if (r->in_len == sizeof(r->in)) {
			r->overflow++;
			r->closes++;
			relay_hangup(r);
			return;
		}
		ERR_clear_error();
		k = SSL_read(r->ssl, r->in + r->in_len, (int)(sizeof(r->in) - r->in_len));
		if (k <= 0) {
			e = SSL_get_error(r->ssl, k);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			r->tls_fatal = e != SSL_ERROR_ZERO_RETURN;
			r->closes++;
			relay_hangup(r);
			return;
		}
		r->in_len += (size_t)k;
		relay_process(r);
	}
}

static void relay_read(struct relay *r)
{
	if (r->ssl) {
		relay_tls_read(r);
		return;
	}
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
	/* Plain: a blocking socket (relay_send sends it all); TLS: non-blocking,
	 * SSL_accept and relay_tls_send wait through poll. */
	int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC | (r->tls_ctx ? SOCK_NONBLOCK : 0));

	if (fd < 0)
		return;
	if (r->fd >= 0) { /* the client gave up on the old one */
		r->closes++;
		relay_hangup(r);
	}
	r->fd = fd;
	r->accepts++;
	if (r->tls_ctx) {
		r->sni[0] = '\0';
		r->tls_events = POLLIN;
		if (!(r->ssl = SSL_new(r->tls_ctx)) || !SSL_set_fd(r->ssl, fd)) {
			fprintf(stderr, "relay: SSL_new failed\n");
			exit(2);
		}
		SSL_set_accept_state(r->ssl);
	}
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
	struct pollfd pfd[CP_DERP_MAX_FDS + 2 * RELAY_MAX];
	struct relay *rs[RELAY_MAX];
	unsigned n, k, nr = 0;

	for (int i = 0; i < RELAY_MAX; i++)
		if (open_relays[i])
			rs[nr++] = open_relays[i];
	n = 0;
	if (d) { /* NULL: only the relays */
		cp_derp_tick(d, cp_now() + tick_offset);
		n = cp_derp_pollfds(d, pfd, CP_DERP_MAX_FDS);
	}
	k = n;
	for (unsigned i = 0; i < nr; i++) {
		pfd[k++] = (struct pollfd){.fd = rs[i]->lfd, .events = POLLIN};
		pfd[k++] = (struct pollfd){
		    .fd = rs[i]->fd,
		    .events = rs[i]->ssl && !rs[i]->tls_up ? rs[i]->tls_events : POLLIN};
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
