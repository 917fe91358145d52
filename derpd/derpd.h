/* SPDX-License-Identifier: MIT */
/*
 * meshgate-derpd internals: one server context (struct derpd), its
 * connections (struct conn) and the files that work on them:
 *
 *   derpd.c     options, key file, listeners, signals, the epoll loop, timers
 *   tls.c       the TLS context: certificate and key (--tls-cert, --tls-key)
 *   conn.c      accept, the TLS handshake, reads, the output queue, writes,
 *               closing
 *   relay.c     the protocol: HTTP head, ClientInfo, frames, forwarding
 *   registry.c  client public key -> connection
 *   counters.c  counter names, the stderr line, the /metrics page
 *
 * Everything runs on one thread; nothing here locks. A connection closed
 * while events for it are still pending is only marked dead (CONN_DEAD) and
 * freed after the batch (derpd_reap), so a pointer taken from an event or
 * the registry stays valid until then.
 */
#ifndef DERPD_H
#define DERPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "derp.h"
#include "types.h"

#define DERPD_PORT 3340
/* Tailscale's derper sends each client a KeepAlive this often. */
#define DERPD_KEEPALIVE_MS 60000
/* For the TLS handshake and the HTTP head together, then again for
 * ClientInfo, and for a plain HTTP answer to be read and the connection
 * closed by the client. */
#define DERPD_HANDSHAKE_MS 10000
/* Packets queued to one client and not yet written to its socket, as
 * Tailscale's per-client send queue; more are dropped (queue_full). */
#define DERPD_QUEUE_PACKETS 32
/* Control frames (pongs, PeerGone, ...) queued to one client; a client that
 * lets more pile up is not reading and is closed (slow_reader). */
#define DERPD_QUEUE_CTL_MAX (256u * 1024)
/* One read: room for several whole frames of the largest size. */
#define DERPD_SCRATCH_LEN (256u * 1024)
/* Senders remembered per client, to tell them PeerGone when it leaves. */
#define DERPD_RECENT_SENDERS 8
#define DERPD_RECENT_MS	     60000
/* PeerGone NOT_HERE: at most one per destination per sender this often. */
#define DERPD_NOT_HERE_SLOTS 4
#define DERPD_NOT_HERE_MS    1000
#define DERPD_MAX_LISTEN     16
/* The largest TLS record's plaintext. */
#define DERPD_TLS_RECORD 16384

/* Why a packet was not delivered: meshgate_derp_drops_total{reason}. */
#define DERPD_DROPS(X)                                                                             \
	X(NO_PEER, "no_peer")		/* no client has the destination key */                    \
	X(QUEUE_FULL, "queue_full")	/* DERPD_QUEUE_PACKETS already queued to it */             \
	X(DISCONNECTED, "disconnected") /* queued; the destination left before the write */        \
	X(NO_MEMORY, "no_memory")

/* Why the server refused or closed a connection: meshgate_derp_rejected_total{reason}. */
#define DERPD_REJECTS(X)                                                                           \
	X(MAX_CONNS, "max_conns")	      /* at the connection cap, at accept */               \
	X(MAX_CLIENTS, "max_clients")	      /* --max-clients reached, at ClientInfo */           \
	X(FD_LIMIT, "fd_limit")		      /* accept: out of file descriptors */                \
	X(BAD_HTTP, "bad_http")		      /* malformed request head: 400 */                    \
	X(TIMEOUT, "timeout")		      /* no TLS handshake, head or ClientInfo in time */   \
	X(TLS_HANDSHAKE, "tls_handshake")     /* TLS handshake failed (not: the peer left) */      \
	X(NOT_CLIENT_INFO, "not_client_info") /* first frame of another type */                    \
	X(CLIENT_INFO, "client_info")	      /* ClientInfo does not open or parse */              \
	X(FRAME_TOO_BIG, "frame_too_big")     /* over MG_DERP_MAX_BODY (MAX_INFO first) */         \
	X(BAD_FRAME, "bad_frame")	      /* a known frame type, malformed */                  \
	X(REPLACED, "replaced")		      /* a newer connection with the same key */           \
	X(SLOW_READER, "slow_reader")	      /* over DERPD_QUEUE_CTL_MAX queued */                \
	X(NO_MEMORY, "no_memory")

/* Plain HTTP requests answered: meshgate_derp_http_requests_total{kind}. */
#define DERPD_HTTP_KINDS(X) X(PROBE, "probe") X(METRICS, "metrics") X(NOT_FOUND, "not_found")

#define DERPD_DROP_ENUM(id, name)   DROP_##id,
#define DERPD_REJECT_ENUM(id, name) REJECT_##id,
#define DERPD_HTTP_ENUM(id, name)   HTTP_##id,
enum derpd_drop { DERPD_DROPS(DERPD_DROP_ENUM) DERPD_DROP_COUNT };
enum derpd_reject { DERPD_REJECTS(DERPD_REJECT_ENUM) DERPD_REJECT_COUNT };
enum derpd_http { DERPD_HTTP_KINDS(DERPD_HTTP_ENUM) DERPD_HTTP_COUNT };
#undef DERPD_DROP_ENUM
#undef DERPD_REJECT_ENUM
#undef DERPD_HTTP_ENUM

/* A close that is no rejection: the peer left, the socket failed, a
 * plain HTTP answer was delivered, or the server exits. */
#define DERPD_UNCOUNTED (-1)

struct derpd_counters {
	uint64_t connections; /* TCP connections accepted, refused ones too */
	uint64_t forwarded;   /* RecvPacket frames written whole to their client */
	uint64_t forwarded_bytes;
	uint64_t drops[DERPD_DROP_COUNT];
	uint64_t rejects[DERPD_REJECT_COUNT];
	uint64_t http[DERPD_HTTP_COUNT];
};

/* An intrusive doubly linked list, circular with a head node. */
struct dlist {
	struct dlist *prev, *next;
};

static inline void dlist_init(struct dlist *h)
{
	h->prev = h->next = h;
}

static inline bool dlist_empty(const struct dlist *h)
{
	return h->next == h;
}

static inline void dlist_del(struct dlist *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

static inline void dlist_add_tail(struct dlist *h, struct dlist *e)
{
	e->prev = h->prev;
	e->next = h;
	h->prev->next = e;
	h->prev = e;
}

#define dlist_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* What an epoll event's data.ptr points at: the first member of both. */
enum derpd_ev_kind { EV_LISTENER = 1, EV_CONN };

struct listener {
	int kind; /* EV_LISTENER */
	int fd;
	struct mg_sockaddr addr;
};

enum conn_state {
	CONN_TLS,    /* TLS handshake in progress (only with --tls-cert) */
	CONN_HTTP,   /* reading the request head */
	CONN_INFO,   /* upgraded, ServerKey sent; the next frame must be ClientInfo */
	CONN_CLIENT, /* registered under its key: relaying */
	CONN_LINGER, /* answered a plain request: flush, shut down, await the FIN */
	CONN_DEAD,   /* closed; freed by derpd_reap */
};

/* One queued piece of output: a RecvPacket frame, or control bytes. */
struct chunk {
	struct chunk *next;
	uint32_t len, cap;
	uint32_t pkt_len; /* a RecvPacket's packet bytes */
	bool packet;
	uint8_t data[];
};

/* A key seen at a time (ms): recent senders, recent NOT_HERE answers. */
struct key_seen {
	uint8_t key[MG_DERP_KEY_LEN];
	uint64_t at;
};

struct conn {
	int kind; /* EV_CONN */
	int fd;
	enum conn_state state;
	uint32_t events;      /* the epoll events requested */
	bool dirty;	      /* on derpd.dirty: has output to write, or is doomed */
	bool preferred;	      /* NotePreferred(true): this relay is the client's home */
	bool shut;	      /* LINGER: shutdown(SHUT_WR) done */
	bool doomed;	      /* to be closed at the next flush, with: */
	int doom_reason;      /* a derpd_reject or DERPD_UNCOUNTED */
	const char *doom_why; /* static text for the log, or NULL */
	char name[8];	      /* "[AbCdE]": the key's first base64 digits, as Tailscale logs it */
	uint8_t key[MG_DERP_KEY_LEN];
	struct mg_sockaddr peer;
	uint64_t since;	    /* ms: accepted */
	uint64_t deadline;  /* ms: handshake/linger deadline, or the next KeepAlive */
	struct dlist timer; /* on derpd.handshakes (TLS, HTTP, INFO, LINGER) or derpd.clients */
	struct conn *hnext; /* registry chain */
	struct conn *next_dirty, *next_dead;

	/* Input carried over between reads: a partial head or frame. Once a
	 * frame's header is here, the rest of that frame (and no more) is read
	 * straight into it. */
	uint8_t *in;
	uint32_t in_len, in_cap;
	uint32_t in_need; /* the whole frame's length once its header is in; else 0 */

	/* Output, in order; out_off bytes of the first chunk are written. */
	struct chunk *out_head, *out_tail;
	uint32_t out_off;
	unsigned out_packets; /* packet chunks queued */
	size_t out_ctl;	      /* control bytes queued */

	/* TLS (with --tls-cert; NULL otherwise). OpenSSL may want the other
	 * direction than the one asked of it: these say which to wait for. */
	SSL *ssl;
	uint32_t tls_hs_events; /* TLS: EPOLLIN or EPOLLOUT, as SSL_accept wants */
	bool tls_read_wants_write;
	bool tls_write_wants_read;
	bool tls_fatal;	       /* a fatal TLS error: no SSL_shutdown */
	struct dlist tls_pend; /* on derpd.tls_pending: OpenSSL holds unread input */

	struct key_seen senders[DERPD_RECENT_SENDERS]; /* who sent to this client */
	struct key_seen not_here[DERPD_NOT_HERE_SLOTS];
	uint64_t rx_packets, tx_packets;
};

struct registry {
	struct conn **buckets;
	size_t mask;
	uint8_t hash_key[16]; /* crypto_shorthash_KEYBYTES: keys are chosen by clients */
};

struct derpd {
	uint8_t priv[MG_DERP_KEY_LEN], pub[MG_DERP_KEY_LEN];
	int epfd;
	int reserve_fd; /* given up to accept-and-close when out of descriptors */
	struct listener ls[DERPD_MAX_LISTEN];
	int n_ls;
	unsigned max_clients, max_conns;
	unsigned n_conns, n_clients, n_preferred;
	uint64_t now;		 /* ms, CLOCK_MONOTONIC, as of the current loop iteration */
	struct dlist handshakes; /* by deadline: every entry has the same timeout */
	struct dlist clients;	 /* by next KeepAlive, likewise */
	/* Connections with input OpenSSL has buffered, which epoll does not
	 * see: read again before the loop waits. */
	struct dlist tls_pending;
	struct conn *dirty, *dead;
	bool exiting;	    /* closing everything: no logs, no PeerGone */
	uint64_t fd_warned; /* ms: last "out of file descriptors" warning */
	struct registry reg;
	struct derpd_counters c;
	SSL_CTX *tls; /* --tls-cert: every connection speaks TLS; else NULL */
	uint8_t scratch[DERPD_SCRATCH_LEN];
	/* TLS: small queued chunks are copied here to be written as one record. */
	uint8_t tls_out[DERPD_TLS_RECORD];
};

/* conn.c */
void derpd_accept(struct derpd *d, struct listener *l);
void derpd_conn_readable(struct derpd *d, struct conn *c);
void derpd_conn_writable(struct derpd *d, struct conn *c);
/* Close now: reason is a derpd_reject (counted) or DERPD_UNCOUNTED; why is
 * for the log (NULL: the reason's name). */
void derpd_conn_close(struct derpd *d, struct conn *c, int reason, const char *why);
/* Queue control bytes. When DERPD_QUEUE_CTL_MAX are queued, what the socket
 * takes is written at once; if that is not enough, the connection is doomed
 * (closed at the next flush, never from inside this call). */
void derpd_conn_queue_ctl(struct derpd *d, struct conn *c, const void *data, size_t len);
/* Queue RecvPacket(src, pkt) to dst, or count the drop. When
 * DERPD_QUEUE_PACKETS are queued, what the socket takes is written at once:
 * the bound is on packets the socket would not take, not on packets that
 * one read happened to bring. Never closes anything. */
void derpd_conn_queue_packet(struct derpd *d, struct conn *dst, const uint8_t src[32],
			     const uint8_t *pkt, size_t len);
/* Move c to the tail of list with deadline now + ms. */
void derpd_conn_rearm(struct derpd *d, struct conn *c, struct dlist *list, uint64_t ms);
/* Write what dirty connections have queued, close the doomed ones. */
void derpd_flush(struct derpd *d);
/* Free the connections closed since the last call. */
void derpd_reap(struct derpd *d);
/* Close everything (at exit). */
void derpd_close_all(struct derpd *d);
/* Read what OpenSSL holds for the connections on d->tls_pending. */
void derpd_tls_pending(struct derpd *d);

/* tls.c */
/* The server's TLS context from a PEM certificate (chain) and key file; the
 * key file must not be accessible by group or others. NULL (logged) if they
 * do not load. */
SSL_CTX *derpd_tls_ctx(const char *cert_file, const char *key_file);

/* relay.c */
/* Act on buf[0..n) read from c; returns the bytes used (the rest is an
 * incomplete head or frame). c may be closed on return (CONN_DEAD). */
size_t derpd_consume(struct derpd *d, struct conn *c, const uint8_t *buf, size_t n);
/* c is leaving: tell its recent senders (PeerGone DISCONNECTED). */
void derpd_relay_gone(struct derpd *d, struct conn *c);
void derpd_send_keepalive(struct derpd *d, struct conn *c);

/* registry.c */
int derpd_registry_init(struct registry *r, size_t expect);
void derpd_registry_free(struct registry *r);
struct conn *derpd_registry_find(const struct registry *r, const uint8_t key[32]);
void derpd_registry_add(struct registry *r, struct conn *c);
void derpd_registry_del(struct registry *r, struct conn *c);

/* counters.c */
extern const char *const derpd_drop_names[DERPD_DROP_COUNT];
extern const char *const derpd_reject_names[DERPD_REJECT_COUNT];
/* "derpd: clients N, ..." on stderr, one write. */
void derpd_counters_print(const struct derpd *d);
/* The Prometheus text page into out (NUL-terminated); its length, or 0 if
 * cap is too small. */
size_t derpd_metrics_render(const struct derpd *d, char *out, size_t cap);

#endif /* DERPD_H */
