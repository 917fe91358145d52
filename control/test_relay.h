/* SPDX-License-Identifier: MIT */
/*
 * What test_cp_derp.c and test_cp_disco.c share: fake DERP relays played
 * with the codec of common/derp.h (listening TCP sockets on 127.0.0.1,
 * driven inline between the client's steps: cp_derp_tick, cp_derp_pollfds
 * + poll, cp_derp_service), and a fake dataplane, a shared-memory region
 * the test drains (cp2dp) and feeds (dp2cp). Uses no CHECK: the counts
 * stay the test's own.
 *
 * A relay may speak TLS (relay_tls): each connection then starts with a
 * non-blocking SSL_accept, driven by step() like the rest.
 */
#ifndef MG_CONTROL_TEST_RELAY_H
#define MG_CONTROL_TEST_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "cp.h"
#include "derp.h"

#define S  (1000000000ull)
#define MS (1000000ull)

/* ---- the fake relay ---------------------------------------------------------- */

struct frame {
	uint8_t type;
	uint32_t len;
	uint8_t body[4096];
};

#define RELAY_Q	  64
#define RELAY_MAX 4 /* open at once */

struct ssl_ctx_st;
struct ssl_st;

struct relay {
	int lfd, fd;
	uint16_t port;
	uint8_t priv[32], pub[32];
	int st; /* 0: HTTP request, 1: ClientInfo, 2: frames */
	uint8_t in[MG_DERP_HDR_LEN + MG_DERP_MAX_BODY];
	size_t in_len;
	unsigned accepts, closes, http_bad, client_infos, info_bad, overflow;
	uint8_t client_pub[32];
	int version;
	struct frame q[RELAY_Q]; /* frames after the handshake, in order */
	unsigned qn;
	char host[256]; /* the Host header of the last upgrade request */
	/* TLS (relay_tls): the context, the connection's session, whether its
	 * handshake is done, what SSL_accept waits for (POLLIN/POLLOUT). */
	struct ssl_ctx_st *tls_ctx;
	struct ssl_st *ssl;
	bool tls_up, tls_fatal;
	short tls_events;
	unsigned tls_handshakes, tls_fails; /* SSL_accept done, failed */
	char sni[256];			    /* the server name the last client sent, or "" */
	char tls_err[256];		    /* why the last SSL_accept failed */
};

/* A Curve25519 key pair (exits on failure). */
void keypair(uint8_t priv[32], uint8_t pub[32]);

/* A relay with a fresh key pair listening on 127.0.0.1 (a port of its own),
 * served by step() until relay_close (exits on failure). */
void relay_open(struct relay *r);
/* Close the current connection (the relay hangs up, or saw the client go). */
void relay_hangup(struct relay *r);
/* Forget counters and frames, keep the listening socket, the keys and TLS. */
void relay_reset(struct relay *r);
/* New connections speak TLS with this certificate (PEM chain) and key, or
 * plain again with NULL (exits on failure). The current one is hung up. */
void relay_tls(struct relay *r, const char *cert, const char *key);
void relay_close(struct relay *r);
/* To the client, as far as the connection takes it. */
void relay_send(struct relay *r, const void *buf, size_t n);
/* The first frame of type in the queue (removed into *out), or false. */
bool relay_take(struct relay *r, uint8_t type, struct frame *out);
bool relay_has(const struct relay *r, uint8_t type);
/* A RecvPacket: pkt from the peer with key src. */
void relay_recv_packet(struct relay *r, const uint8_t src[32], const void *pkt, size_t len);

/* ---- driving the client -------------------------------------------------------- */

/* Added to the clock cp_derp_tick sees in step() (0 unless a test sets it). */
extern uint64_t tick_offset;

/* One step: d's DERP client ticked, then up to 5 ms of poll on its sockets
 * and every open relay's, each served. d NULL: only the relays. */
void step(struct cp_device *d);

/* Step until cond holds or ms pass. */
#define WAIT_FOR(d, cond, ms)                                                                      \
	do {                                                                                       \
		uint64_t dl_ = cp_now() + (uint64_t)(ms)*MS;                                       \
		while (!(cond) && cp_now() < dl_)                                                  \
			step(d);                                                                   \
	} while (0)

/* Step for ms whatever happens. */
void run_for(struct cp_device *d, unsigned ms);

/* A Ping with fresh data, and its Pong back: everything the relay sent
 * before has been handled by the client, and what the client sent before
 * (its SendPackets) is in the relay's queue. */
bool relay_sync(struct cp_device *d, struct relay *r);

/* ---- the fake dataplane -------------------------------------------------------- */

/* Attach d to the fake dataplane shm and drain the sync (5 s at most). */
void attach(struct cp_device *d, struct mg_shm *shm);
/* Empty shm's cp2dp ring: how many messages were on it. */
unsigned drain(struct mg_shm *shm);

/* ---- addresses ------------------------------------------------------------------- */

/* text parsed (aborts if it does not parse). */
struct mg_sockaddr sa(const char *text);
bool sa_eq(const struct mg_sockaddr *a, const struct mg_sockaddr *b);
/* a formatted, in one of 8 static buffers used in turn. */
const char *ep_str(const struct mg_sockaddr *a);

#endif
