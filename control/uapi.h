/* SPDX-License-Identifier: MIT */
/*
 * The WireGuard cross-platform userspace API (UAPI), as spoken by the stock
 * `wg` tool over <run_dir>/<name>.sock; https://www.wireguard.com/xplatform/
 * and wireguard-go's device/uapi.go are the reference.
 *
 * Pure parse/format functions, plus a small non-blocking server that frames
 * requests and calls back into the owner for the device state:
 *
 *   client: "get=1\n\n"              server: "<key=value lines>errno=0\n\n"
 *   client: "set=1\n<lines>\n\n"     server: "errno=N\n\n"
 *
 * A failed set is answered "errno=-EINVAL" (negative, as wireguard-go does
 * and as wg(8) expects); a failed get "errno=EIO" (positive: wg's get parser
 * reads digits only). Either way wg reports the right strerror().
 *
 * Keys are lowercase hex in this protocol. An all-zero private_key or
 * preshared_key in a set means "remove it", as with wg(8).
 */
#ifndef CP_UAPI_H
#define CP_UAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

/* One peer's part of a set, in request order. */
struct cp_uapi_peer_op {
	uint8_t public_key[32];
	bool remove;		  /* remove=true: drop the peer; other fields are then moot */
	bool update_only;	  /* update_only=true: only if the peer already exists */
	bool replace_allowed_ips; /* clear the list before adding allowed_ips */
	bool has_psk;
	uint8_t psk[32]; /* all zero = remove the psk */
	bool has_endpoint;
	struct mg_sockaddr endpoint;
	bool has_keepalive;
	uint16_t keepalive;	       /* persistent_keepalive_interval, 0 = off */
	struct mg_prefix *allowed_ips; /* host bits masked off, like wireguard-go */
	size_t n_allowed_ips;
};

struct cp_uapi_set {
	bool has_private_key;
	uint8_t private_key[32]; /* all zero = remove the key */
	bool has_listen_port;
	uint16_t listen_port;
	bool has_fwmark;
	uint32_t fwmark;    /* 0 = clear */
	bool replace_peers; /* remove every peer not in this set */
	struct cp_uapi_peer_op *peers;
	size_t n_peers;
};

/*
 * Parse the body of a set request: the lines after "set=1\n" up to (and
 * optionally including) the terminating blank line. Each line ends in '\n';
 * the last one may omit it. Returns 0, -EPROTO (unknown key, a line without
 * '=', a peer key before any public_key, a NUL byte, data after the blank
 * line), -EINVAL (a bad value) or -ENOMEM. On error *out is left empty.
 */
int cp_uapi_parse_set(const char *body, size_t len, struct cp_uapi_set *out);
void cp_uapi_set_free(struct cp_uapi_set *s); /* zeroes keys */

struct cp_uapi_peer_view {
	uint8_t public_key[32];
	bool has_psk;
	uint8_t psk[32];
	struct mg_sockaddr endpoint; /* family 0 = none */
	int64_t last_handshake_sec, last_handshake_nsec;
	uint64_t rx_bytes, tx_bytes;
	uint16_t keepalive;
	const struct mg_prefix *allowed_ips;
	size_t n_allowed_ips;
};

struct cp_uapi_dev_view {
	bool has_private_key;
	uint8_t private_key[32];
	uint16_t listen_port; /* 0 = not listening: omitted */
	uint32_t fwmark;      /* 0 = omitted */
	const struct cp_uapi_peer_view *peers;
	size_t n_peers;
};

/*
 * The answer to a get, in wireguard-go's key order: malloc'd text of
 * key=value lines ending with "errno=0\n\n" (*out_len excludes the NUL that
 * follows). Returns 0 or -ENOMEM.
 */
int cp_uapi_format_get(const struct cp_uapi_dev_view *v, char **out, size_t *out_len);

/*
 * The owner's side. get fills *view (pointers may reference the owner's
 * memory) and may set *release, which the server calls once it has formatted
 * the view. set applies a parsed request. Both return 0 or -errno, which the
 * client gets back (signed as described above).
 */
struct cp_uapi_ops {
	int (*get)(void *ctx, struct cp_uapi_dev_view *view,
		   void (**release)(void *ctx, struct cp_uapi_dev_view *view));
	int (*set)(void *ctx, const struct cp_uapi_set *set);
};

#define CP_UAPI_MAX_CLIENTS	32
#define CP_UAPI_MAX_REQUEST	(32u << 20) /* bytes; a longer request drops the client */
#define CP_UAPI_IDLE_TIMEOUT_MS 5000

struct cp_uapi_server;

/*
 * Serve <run_dir>/<name>.sock (mode 0600). Creates run_dir (0755) if needed
 * and replaces a stale socket, but refuses (NULL, errno = EADDRINUSE) if a
 * live process answers on it. name: 1..15 of [A-Za-z0-9_.-]. NULL with
 * errno set on any failure.
 */
struct cp_uapi_server *cp_uapi_server_open(const char *run_dir, const char *name,
					   const struct cp_uapi_ops *ops, void *ctx);
/*
 * One fd for the caller's poll()/epoll: readable whenever
 * cp_uapi_server_service() has work (a new client, client I/O or an idle
 * timeout), so the caller needs no timer of its own.
 */
int cp_uapi_server_fd(const struct cp_uapi_server *s);
/* Accept and serve whatever is ready; never blocks. */
void cp_uapi_server_service(struct cp_uapi_server *s);
/* Close every client and the socket, and unlink it. NULL is a no-op. */
void cp_uapi_server_close(struct cp_uapi_server *s);

#endif /* CP_UAPI_H */
