// SPDX-License-Identifier: MIT
/*
 * WireGuard UAPI: set parsing, get formatting and the unix-socket server.
 *
 * The parser follows wireguard-go's device/uapi.go: device keys first, then
 * one block per peer opened by public_key; a key in the wrong block or an
 * unknown key is a protocol error, a bad value is invalid. Nothing is
 * applied here: the parsed request goes to the owner's set() whole, so a
 * request that fails to parse changes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "keys.h"
#include "uapi.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_LINE      256 /* longest valid line is about 100 bytes */

/* ---- set parsing ---- */

struct set_parser {
	struct cp_uapi_set *set;
	struct cp_uapi_peer_op *peer; /* NULL until the first public_key */
	size_t peers_cap, ips_cap;
};

typedef int (*line_fn)(struct set_parser *p, const char *value);

/* Decimal digits only, as Go's strconv.ParseUint(value, 10, bits). */
static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 10)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_true(const char *value, bool *out)
{
	if (strcmp(value, "true"))
		return -EINVAL;
	*out = true;
	return 0;
}

static int dev_private_key(struct set_parser *p, const char *value)
{
	p->set->has_private_key = true;
	return mg_key_from_hex(value, p->set->private_key);
}

static int dev_listen_port(struct set_parser *p, const char *value)
{
	uint32_t v = 0;
	int ret = parse_u32(value, UINT16_MAX, &v);

	p->set->listen_port = (uint16_t)v;
	p->set->has_listen_port = ret == 0;
	return ret;
}

static int dev_fwmark(struct set_parser *p, const char *value)
{
	int ret = parse_u32(value, UINT32_MAX, &p->set->fwmark);

	p->set->has_fwmark = ret == 0;
	return ret;
}

static int dev_replace_peers(struct set_parser *p, const char *value)
{
	return parse_true(value, &p->set->replace_peers);
}

/* Opens a new peer block; valid in either state. */
static int peer_public_key(struct set_parser *p, const char *value)
{
	struct cp_uapi_set *s = p->set;

	if (s->n_peers == p->peers_cap) {
		size_t cap = p->peers_cap ? p->peers_cap * 2 : 8;
		struct cp_uapi_peer_op *n = realloc(s->peers, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->peers = n;
		p->peers_cap = cap;
	}
	p->peer = &s->peers[s->n_peers++];
	memset(p->peer, 0, sizeof(*p->peer));
	p->ips_cap = 0;
	return mg_key_from_hex(value, p->peer->public_key);
}

static int peer_remove(struct set_parser *p, const char *value)
{
	return parse_true(value, &p->peer->remove);
}

static int peer_update_only(struct set_parser *p, const char *value)
{
	return parse_true(value, &p->peer->update_only);
}

static int peer_replace_allowed_ips(struct set_parser *p, const char *value)
{
	return parse_true(value, &p->peer->replace_allowed_ips);
}

static int peer_preshared_key(struct set_parser *p, const char *value)
{
	p->peer->has_psk = true;
	return mg_key_from_hex(value, p->peer->psk);
}

static int peer_endpoint(struct set_parser *p, const char *value)
{
	p->peer->has_endpoint = true;
	return mg_sockaddr_parse(value, &p->peer->endpoint);
}

static int peer_keepalive(struct set_parser *p, const char *value)
{
	uint32_t v = 0;
	int ret = parse_u32(value, UINT16_MAX, &v);

	p->peer->keepalive = (uint16_t)v;
	p->peer->has_keepalive = ret == 0;
	return ret;
}

static int peer_allowed_ip(struct set_parser *p, const char *value)
{
	struct cp_uapi_peer_op *peer = p->peer;
	struct mg_prefix ip;

	/* "addr/cidr" as Go's netip.ParsePrefix; host bits masked as on insert. */
	if (mg_ifaddr_parse(value, &ip) < 0)
		return -EINVAL;
	mg_prefix_mask(&ip);
	if (peer->n_allowed_ips == p->ips_cap) {
		size_t cap = p->ips_cap ? p->ips_cap * 2 : 4;
		struct mg_prefix *n = realloc(peer->allowed_ips, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		peer->allowed_ips = n;
		p->ips_cap = cap;
	}
	peer->allowed_ips[peer->n_allowed_ips++] = ip;
	return 0;
}

static int peer_protocol_version(struct set_parser *p, const char *value)
{
	(void)p;
	return strcmp(value, "1") ? -EINVAL : 0;
}

enum key_scope { DEVICE, PEER, ANY };

static const struct {
	const char *key;
	enum key_scope scope;
	line_fn fn;
} set_keys[] = {
    {"private_key", DEVICE, dev_private_key},
    {"listen_port", DEVICE, dev_listen_port},
    {"fwmark", DEVICE, dev_fwmark},
    {"replace_peers", DEVICE, dev_replace_peers},
    {"public_key", ANY, peer_public_key},
    {"remove", PEER, peer_remove},
    {"update_only", PEER, peer_update_only},
    {"preshared_key", PEER, peer_preshared_key},
    {"endpoint", PEER, peer_endpoint},
    {"persistent_keepalive_interval", PEER, peer_keepalive},
    {"replace_allowed_ips", PEER, peer_replace_allowed_ips},
    {"allowed_ip", PEER, peer_allowed_ip},
    {"protocol_version", PEER, peer_protocol_version},
};

static int parse_line(struct set_parser *p, const char *line, size_t len)
{
	char buf[MAX_LINE];
	char *value;

	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, line, len);
	buf[len] = '\0';
	value = strchr(buf, '=');
	if (!value)
		return -EPROTO;
	*value++ = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(set_keys); i++) {
		if (strcmp(buf, set_keys[i].key))
			continue;
		if ((set_keys[i].scope == DEVICE && p->peer) ||
		    (set_keys[i].scope == PEER && !p->peer))
			return -EPROTO;
		return set_keys[i].fn(p, value);
	}
	return -EPROTO;
}

int cp_uapi_parse_set(const char *body, size_t len, struct cp_uapi_set *out)
{
	struct set_parser p = {.set = out};
	size_t off = 0;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (len && memchr(body, '\0', len))
		return -EPROTO;
	while (off < len && !ret) {
		const char *line = body + off, *nl = memchr(line, '\n', len - off);
		size_t n = nl ? (size_t)(nl - line) : len - off;

		off += n + (nl != NULL);
		if (n == 0) /* the blank line ends the request: nothing may follow */
			ret = off == len ? 0 : -EPROTO;
		else
			ret = parse_line(&p, line, n);
	}
	if (ret)
		cp_uapi_set_free(out);
	return ret;
}

void cp_uapi_set_free(struct cp_uapi_set *s)
{
	for (size_t i = 0; s->peers && i < s->n_peers; i++)
		free(s->peers[i].allowed_ips);
	if (s->peers)
		sodium_memzero(s->peers, s->n_peers * sizeof(*s->peers));
	free(s->peers);
	sodium_memzero(s, sizeof(*s));
}

/* ---- get formatting ---- */

/* Growing text buffer; old blocks are wiped since they may hold keys. */
struct text {
	char *p;
	size_t len, cap;
	int err;
};

static int text_reserve(struct text *t, size_t need)
{
	size_t cap = t->cap ? t->cap : 256;
	char *n;

	while (cap - t->len < need)
		cap *= 2;
	if (cap == t->cap)
		return 0;
	n = malloc(cap);
	if (!n)
		return -ENOMEM;
	if (t->p) {
		memcpy(n, t->p, t->len);
		sodium_memzero(t->p, t->cap);
		free(t->p);
	}
	t->p = n;
	t->cap = cap;
	return 0;
}

__attribute__((format(printf, 2, 3))) static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || text_reserve(t, (size_t)n + 1) < 0) {
		t->err = -ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

static void add_key(struct text *t, const char *name, const uint8_t key[32])
{
	char hex[MG_KEY_HEX_LEN + 1];

	mg_key_to_hex(key, hex);
	text_add(t, "%s=%s\n", name, hex);
	sodium_memzero(hex, sizeof(hex));
}

/* Same keys, same order as wireguard-go's IpcGetOperation. */
static void add_peer(struct text *t, const struct cp_uapi_peer_view *p)
{
	static const uint8_t zero[32];
	char buf[MG_SOCKADDR_STRLEN];

	add_key(t, "public_key", p->public_key);
	add_key(t, "preshared_key", p->has_psk ? p->psk : zero);
	text_add(t, "protocol_version=1\n");
	if (p->endpoint.family)
		text_add(t, "endpoint=%s\n", mg_sockaddr_fmt(&p->endpoint, buf, sizeof(buf)));
	text_add(t, "last_handshake_time_sec=%lld\n", (long long)p->last_handshake_sec);
	text_add(t, "last_handshake_time_nsec=%lld\n", (long long)p->last_handshake_nsec);
	text_add(t, "tx_bytes=%llu\n", (unsigned long long)p->tx_bytes);
	text_add(t, "rx_bytes=%llu\n", (unsigned long long)p->rx_bytes);
	text_add(t, "persistent_keepalive_interval=%u\n", p->keepalive);
	for (size_t i = 0; i < p->n_allowed_ips; i++)
		text_add(t, "allowed_ip=%s\n", mg_prefix_fmt(&p->allowed_ips[i], buf, sizeof(buf)));
}

int cp_uapi_format_get(const struct cp_uapi_dev_view *v, char **out, size_t *out_len)
{
	struct text t = {0};

	if (v->has_private_key)
		add_key(&t, "private_key", v->private_key);
	if (v->listen_port)
		text_add(&t, "listen_port=%u\n", v->listen_port);
	if (v->fwmark)
		text_add(&t, "fwmark=%u\n", v->fwmark);
	for (size_t i = 0; i < v->n_peers; i++)
		add_peer(&t, &v->peers[i]);
	text_add(&t, "errno=0\n\n");
	if (t.err) {
		if (t.p)
			sodium_memzero(t.p, t.cap);
		free(t.p);
		*out = NULL;
		*out_len = 0;
		return t.err;
	}
	*out = t.p;
	*out_len = t.len;
	return 0;
}

/* ---- server ---- */

enum { TAG_LISTEN = 1000, TAG_TIMER = 1001 };

struct client {
	int fd; /* -1: free slot */
	char *in;
	size_t in_len, in_cap;
	size_t scanned; /* bytes of in already searched for the end of a set */
	char *out;	/* one response being sent; may hold the private key */
	size_t out_len, out_off;
	bool want_out; /* registered for EPOLLOUT instead of EPOLLIN */
	uint64_t deadline_ms;
};

struct cp_uapi_server {
	int epfd, lfd, tfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;
	ino_t ino; /* of our socket file: close unlinks only that */
	const struct cp_uapi_ops *ops;
	void *ctx;
	struct client clients[CP_UAPI_MAX_CLIENTS];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void client_close(struct cp_uapi_server *s, struct client *c)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->out)
		sodium_memzero(c->out, c->out_len);
	if (c->in)
		sodium_memzero(c->in, c->in_len); /* a set may carry keys */
	free(c->out);
	free(c->in);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static int client_watch(struct cp_uapi_server *s, struct client *c, bool want_out)
{
	struct epoll_event ev = {.events = want_out ? EPOLLOUT : EPOLLIN,
				 .data.u64 = (uint64_t)(c - s->clients)};

	if (c->want_out == want_out)
		return 0;
	c->want_out = want_out;
	return epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send what we can; the rest goes when the socket says EPOLLOUT. */
static void client_flush(struct cp_uapi_server *s, struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (client_watch(s, c, true) < 0)
				client_close(s, c);
			return;
		}
		if (n < 0) {
			client_close(s, c);
			return;
		}
		c->out_off += (size_t)n;
		c->deadline_ms = now_ms() + CP_UAPI_IDLE_TIMEOUT_MS;
	}
	sodium_memzero(c->out, c->out_len);
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	if (client_watch(s, c, false) < 0)
		client_close(s, c);
}

/* Takes ownership of text. */
static void client_respond(struct cp_uapi_server *s, struct client *c, char *text, size_t len)
{
	c->out = text;
	c->out_len = len;
	c->out_off = 0;
	client_flush(s, c);
}

/*
 * The sign on the wire is what wg(8) parses: a failed set is answered with a
 * negative errno, as wireguard-go does (wg does `errno = -ret`); a failed get
 * with a positive one (wg's get parser takes digits only and negates them).
 */
static void respond_errno(struct cp_uapi_server *s, struct client *c, int wire_errno)
{
	char *text = malloc(32);
	int n;

	if (!text) {
		client_close(s, c);
		return;
	}
	n = snprintf(text, 32, "errno=%d\n\n", wire_errno);
	client_respond(s, c, text, (size_t)n);
}

static int abs_errno(int err)
{
	return err < 0 ? -err : err;
}

static void handle_get(struct cp_uapi_server *s, struct client *c)
{
	void (*release)(void *ctx, struct cp_uapi_dev_view *view) = NULL;
	struct cp_uapi_dev_view view = {0};
	char *text = NULL;
	size_t len = 0;
	int err = s->ops->get(s->ctx, &view, &release);

	if (!err)
		err = cp_uapi_format_get(&view, &text, &len);
	if (release)
		release(s->ctx, &view);
	sodium_memzero(&view, sizeof(view));
	if (err)
		respond_errno(s, c, abs_errno(err));
	else
		client_respond(s, c, text, len);
}

static void handle_set(struct cp_uapi_server *s, struct client *c, const char *body, size_t len)
{
	struct cp_uapi_set set;
	int err = cp_uapi_parse_set(body, len, &set);

	if (!err) {
		err = s->ops->set(s->ctx, &set);
		cp_uapi_set_free(&set);
	}
	respond_errno(s, c, -abs_errno(err));
}

enum frame { FRAME_MORE, FRAME_BAD, FRAME_GET, FRAME_SET };

/*
 * Find one whole request at the start of c->in. *used: its length; for a
 * set, *body_len covers the lines between "set=1\n" and the blank line.
 */
static enum frame frame_request(struct client *c, size_t *used, size_t *body_len)
{
	static const char get[] = "get=1\n\n", set[] = "set=1\n";
	size_t n = c->in_len;
	const char *end;

	if (n < sizeof(set) - 1)
		return memcmp(c->in, get, n) && memcmp(c->in, set, n) ? FRAME_BAD : FRAME_MORE;
	if (!memcmp(c->in, get, sizeof(set) - 1)) {
		if (n < sizeof(get) - 1)
			return FRAME_MORE;
		*used = sizeof(get) - 1;
		return c->in[sizeof(get) - 2] == '\n' ? FRAME_GET : FRAME_BAD;
	}
	if (memcmp(c->in, set, sizeof(set) - 1))
		return FRAME_BAD;
	/* "\n\n" may start at the '\n' of "set=1\n" (an empty set). */
	if (c->scanned < sizeof(set) - 2)
		c->scanned = sizeof(set) - 2;
	end = memmem(c->in + c->scanned, n - c->scanned, "\n\n", 2);
	if (!end) {
		c->scanned = n - 1;
		return FRAME_MORE;
	}
	*body_len = (size_t)(end + 1 - c->in) - (sizeof(set) - 1);
	*used = (size_t)(end + 2 - c->in);
	return FRAME_SET;
}

/* Serve the whole requests in c->in, one at a time, while output drains. */
static void client_process(struct cp_uapi_server *s, struct client *c)
{
	while (c->fd >= 0 && !c->out && c->in_len) {
		size_t used = 0, body_len = 0;
		enum frame f = frame_request(c, &used, &body_len);

		if (f == FRAME_MORE)
			return;
		if (f == FRAME_BAD) { /* like wireguard-go: no answer to an unknown op */
			client_close(s, c);
			return;
		}
		if (f == FRAME_GET)
			handle_get(s, c);
		else
			handle_set(s, c, c->in + sizeof("set=1\n") - 1, body_len);
		if (c->fd < 0)
			return;
		sodium_memzero(c->in, used);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		c->scanned = 0;
	}
}

/* Room to read into; fails once a single request would pass the limit. */
static int client_reserve(struct client *c)
{
	size_t cap;
	char *n;

	if (c->in_cap - c->in_len >= 4096 ||
	    (c->in_cap == CP_UAPI_MAX_REQUEST && c->in_len < c->in_cap))
		return 0;
	if (c->in_cap >= CP_UAPI_MAX_REQUEST)
		return -EMSGSIZE;
	cap = c->in_cap ? c->in_cap * 2 : 16384;
	if (cap > CP_UAPI_MAX_REQUEST)
		cap = CP_UAPI_MAX_REQUEST;
	n = malloc(cap);
	if (!n)
		return -ENOMEM;
	if (c->in) {
		memcpy(n, c->in, c->in_len);
		sodium_memzero(c->in, c->in_cap);
		free(c->in);
	}
	c->in = n;
	c->in_cap = cap;
	return 0;
}

static void client_read(struct cp_uapi_server *s, struct client *c)
{
	while (c->fd >= 0 && !c->out) {
		ssize_t n;

		if (client_reserve(c) < 0) {
			client_close(s, c);
			return;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) { /* EOF, or an error: nothing is owed to the client */
			client_close(s, c);
			return;
		}
		c->in_len += (size_t)n;
		c->deadline_ms = now_ms() + CP_UAPI_IDLE_TIMEOUT_MS;
		client_process(s, c);
	}
}

/* Readiness of either kind: finish the response, then serve what is waiting. */
static void client_event(struct cp_uapi_server *s, struct client *c)
{
	if (c->fd >= 0 && c->out)
		client_flush(s, c);
	if (c->fd >= 0 && !c->out) {
		client_process(s, c); /* requests that queued up behind a response */
		client_read(s, c);
	}
}

static void accept_clients(struct cp_uapi_server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN};
		struct client *c = NULL;

		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0)
			return;
		for (size_t i = 0; i < ARRAY_SIZE(s->clients) && !c; i++)
			if (s->clients[i].fd < 0)
				c = &s->clients[i];
		if (!c) { /* full: refuse rather than leave it in the backlog */
			close(fd);
			continue;
		}
		c->fd = fd;
		c->deadline_ms = now_ms() + CP_UAPI_IDLE_TIMEOUT_MS;
		ev.data.u64 = (uint64_t)(c - s->clients);
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			client_close(s, c);
	}
}

/* Close idle clients and arm the timer for the next deadline. */
static void expire_clients(struct cp_uapi_server *s)
{
	struct itimerspec its = {0};
	uint64_t now = now_ms(), next = 0;

	for (size_t i = 0; i < ARRAY_SIZE(s->clients); i++) {
		struct client *c = &s->clients[i];

		if (c->fd >= 0 && c->deadline_ms <= now)
			client_close(s, c);
		else if (c->fd >= 0 && (!next || c->deadline_ms < next))
			next = c->deadline_ms;
	}
	if (next) {
		its.it_value.tv_sec = (time_t)(next / 1000);
		its.it_value.tv_nsec = (long)(next % 1000) * 1000000;
	}
	timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

void cp_uapi_server_service(struct cp_uapi_server *s)
{
	struct epoll_event ev[CP_UAPI_MAX_CLIENTS + 2];
	bool accept_ready = false;
	uint64_t expirations;
	int n = epoll_wait(s->epfd, ev, (int)ARRAY_SIZE(ev), 0);

	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 == TAG_LISTEN)
			accept_ready = true;
		else if (ev[i].data.u64 == TAG_TIMER)
			(void)!read(s->tfd, &expirations, sizeof(expirations));
		else
			client_event(s, &s->clients[ev[i].data.u64]);
	}
	/* Accept last, so no slot is reused while its old events are pending. */
	if (accept_ready)
		accept_clients(s);
	expire_clients(s);
}

int cp_uapi_server_fd(const struct cp_uapi_server *s)
{
	return s->epfd;
}

/* ---- opening the socket ---- */

static bool valid_name(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 15 && strcmp(name, ".") && strcmp(name, "..") &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
		   n;
}

/* mkdir -p with mode 0755 for what is created. */
static int make_dirs(const char *dir)
{
	char buf[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1;; p++) {
		char saved = *p;

		if (saved != '/' && saved != '\0')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) == 0)
			chmod(buf, 0755); /* whatever the umask */
		else if (errno != EEXIST)
			return -errno;
		*p = saved;
		if (!saved)
			break;
	}
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int set_sun_path(struct sockaddr_un *sun, const char *dir, const char *name,
			const char *suffix)
{
	int n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s%s", dir, name, suffix);

	sun->sun_family = AF_UNIX;
	return n < 0 || (size_t)n >= sizeof(sun->sun_path) ? -ENAMETOOLONG : 0;
}

/*
 * Clear the way at path: nothing there, or a socket nobody listens on
 * (removed, as wg(8) does). A live listener means the name is taken.
 */
static int clear_stale(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, ret;

	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	ret = ret == 0 ? -EADDRINUSE : errno == ECONNREFUSED ? 0 : -errno;
	close(fd);
	if (ret == 0 && unlink(sun->sun_path) < 0 && errno != ENOENT)
		ret = -errno;
	return ret;
}

/*
 * Bind and listen on "<name>.tmp", make it 0600, then hard-link it to
 * "<name>.sock": the real name only ever appears as a private, listening
 * socket (wg(8) deletes sockets that refuse connections), and link() fails
 * rather than replace a socket another process just put there.
 */
static int listen_socket(struct cp_uapi_server *s, const char *dir, const char *name)
{
	struct sockaddr_un tmp, sun;
	struct stat st;
	int ret;

	if (set_sun_path(&sun, dir, name, ".sock") || set_sun_path(&tmp, dir, name, ".tmp"))
		return -ENAMETOOLONG;
	ret = clear_stale(&sun);
	if (!ret)
		ret = clear_stale(&tmp);
	if (ret)
		return ret;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -errno;
	if (bind(s->lfd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0)
		return -errno;
	if (chmod(tmp.sun_path, 0600) < 0 || listen(s->lfd, CP_UAPI_MAX_CLIENTS) < 0 ||
	    link(tmp.sun_path, sun.sun_path) < 0) {
		ret = errno == EEXIST ? -EADDRINUSE : -errno;
		unlink(tmp.sun_path);
		return ret;
	}
	unlink(tmp.sun_path);
	if (stat(sun.sun_path, &st) < 0) {
		ret = -errno;
		unlink(sun.sun_path);
		return ret;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	strcpy(s->path, sun.sun_path);
	return 0;
}

static int watch_fd(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int server_setup(struct cp_uapi_server *s, const char *dir, const char *name)
{
	int ret = make_dirs(dir);

	if (!ret)
		ret = listen_socket(s, dir, name);
	if (ret)
		return ret;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->epfd < 0 || s->tfd < 0)
		return -errno;
	ret = watch_fd(s->epfd, s->lfd, TAG_LISTEN);
	return ret ? ret : watch_fd(s->epfd, s->tfd, TAG_TIMER);
}

struct cp_uapi_server *cp_uapi_server_open(const char *run_dir, const char *name,
					   const struct cp_uapi_ops *ops, void *ctx)
{
	struct cp_uapi_server *s;
	int ret;

	if (!valid_name(name) || !ops || !ops->get || !ops->set || run_dir[0] != '/') {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->epfd = s->lfd = s->tfd = -1;
	s->ops = ops;
	s->ctx = ctx;
	for (size_t i = 0; i < ARRAY_SIZE(s->clients); i++)
		s->clients[i].fd = -1;
	ret = server_setup(s, run_dir, name);
	if (ret) {
		cp_uapi_server_close(s);
		errno = -ret;
		return NULL;
	}
	return s;
}

void cp_uapi_server_close(struct cp_uapi_server *s)
{
	struct stat st;

	if (!s)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(s->clients); i++)
		if (s->clients[i].fd >= 0)
			client_close(s, &s->clients[i]);
	/* Unlink only the socket we made, not one a successor put there. */
	if (s->path[0] && stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->tfd >= 0)
		close(s->tfd);
	free(s);
}
