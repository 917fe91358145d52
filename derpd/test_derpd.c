/* SPDX-License-Identifier: MIT */
/*
 * meshgate-derpd end to end: start the server on 127.0.0.1 and a free port
 * with a key file in a fresh directory, talk DERP to it with clients built
 * on common/derp.h, and check the key file, the handshake, forwarding,
 * PeerGone, Ping, the HTTP side (probes, /metrics, 404, 400), every way a
 * connection gets refused, a client that never reads, a long ordered run,
 * --max-clients, and the counters on SIGUSR1 and SIGTERM.
 *
 * Usage: test_derpd MESHGATE_DERPD. Prints one line per check and a count;
 * exits 1 if any failed (then also the server's log).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "derp.h"
#include "keys.h"

#define TIMEOUT_MS 5000 /* for anything expected to happen */
#define IN_CAP	   (256 * 1024)

static int passed, failed;
static char tmpdir[] = "/tmp/test_derpd.XXXXXX";
static const char *server_exe;

static bool check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool check(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf(cond ? "ok   " : "FAIL ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (cond)
		passed++;
	else
		failed++;
	return cond;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The server process. */

struct server {
	pid_t pid;
	int port;
	char log[256];
	char key[256];
};

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* The whole of a (small) file, NUL-terminated, malloc'd; "" if unreadable. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (f) {
		FILE *m = open_memstream(&buf, &len);
		char chunk[4096];
		size_t n;

		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			fwrite(chunk, 1, n, m);
		fclose(m);
		fclose(f);
	}
	return buf ? buf : strdup("");
}

/* Whether the log has `what` at least count times, waiting up to ms. */
static bool log_wait(const struct server *s, const char *what, int count, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		char *text = slurp(s->log), *p = text;
		int n = 0;

		while ((p = strstr(p, what))) {
			n++;
			p += strlen(what);
		}
		free(text);
		if (n >= count)
			return true;
		if (now_ms() >= end)
			return false;
		usleep(20000);
	}
}

/* Start the server (extra: more arguments, NULL-terminated); log in s->log. */
static void server_spawn(struct server *s, const char *name, const char *const *extra)
{
	char listen[64];
	const char *argv[16] = {server_exe, "-k", s->key, "-l", listen};
	int argc = 5;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
	snprintf(s->log, sizeof(s->log), "%s/%s.log", tmpdir, name);
	for (; extra && *extra && argc < 15; extra++)
		argv[argc++] = *extra;
	argv[argc] = NULL;
	s->pid = fork();
	if (s->pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
			_exit(127);
		execv(server_exe, (char *const *)argv);
		_exit(127);
	}
}

/* Start and wait until it listens; false (and reaped) if it does not. */
static bool server_start(struct server *s, const char *name, const char *const *extra)
{
	s->port = free_port();
	server_spawn(s, name, extra);
	if (s->pid > 0 && log_wait(s, "listening on", 1, TIMEOUT_MS))
		return true;
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
	return false;
}

/* Exit status, or -1 if it did not exit within ms (then it is killed). */
static int server_wait(struct server *s, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	int status;

	while (waitpid(s->pid, &status, WNOHANG) == 0) {
		if (now_ms() >= end) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	s->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void server_dump_log(const struct server *s)
{
	char *text = slurp(s->log);

	printf("--- %s ---\n%s", s->log, text);
	free(text);
}

/* Sockets. */

static int tcp_connect(int port, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		ssize_t n;

		if (poll(&pfd, 1, TIMEOUT_MS) <= 0)
			return false;
		n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* A DERP client: keys, socket and what it has read but not used. */
struct client {
	int fd;
	uint8_t priv[32], pub[32];
	uint8_t server_pub[32]; /* from ServerKey */
	uint8_t http_key[32];	/* from the 101's Derp-Public-Key */
	bool http_has_key;
	int status; /* of the HTTP response; 0 for fast start */
	size_t len;
	uint8_t in[IN_CAP];
};

static struct client *client_new(void)
{
	struct client *c = calloc(1, sizeof(*c));

	c->fd = -1;
	crypto_box_keypair(c->pub, c->priv);
	return c;
}

static void client_free(struct client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* Read more: bytes read, 0 at EOF (or reset), -1 on timeout. */
static int client_fill(struct client *c, int ms)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	ssize_t n;

	if (c->len == IN_CAP || poll(&pfd, 1, ms) <= 0)
		return -1;
	n = recv(c->fd, c->in + c->len, IN_CAP - c->len, 0);
	if (n <= 0)
		return 0;
	c->len += (size_t)n;
	return (int)n;
}

static void client_take(struct client *c, size_t n)
{
	memmove(c->in, c->in + n, c->len - n);
	c->len -= n;
}

/* The next frame into body (cap MG_DERP_MAX_BODY): 1, 0 at EOF, -1 timeout. */
static int read_frame(struct client *c, uint8_t *type, uint8_t *body, uint32_t *len, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		long r = mg_derp_frame(c->in, c->len, MG_DERP_MAX_BODY, type, len);
		int64_t left = (int64_t)end - (int64_t)now_ms();
		int f;

		if (r < 0)
			return -1;
		if (r > 0) {
			memcpy(body, c->in + MG_DERP_HDR_LEN, *len);
			client_take(c, (size_t)r);
			return 1;
		}
		if (left <= 0)
			return -1;
		f = client_fill(c, (int)left);
		if (f <= 0)
			return f;
	}
}

/* The next frame that is not a KeepAlive. */
static int next_frame(struct client *c, uint8_t *type, uint8_t *body, uint32_t *len, int ms)
{
	int r;

	do
		r = read_frame(c, type, body, len, ms);
	while (r == 1 && *type == MG_DERP_KEEP_ALIVE);
	return r;
}

/* Whether the server closes c within ms (whatever it sends first). */
static bool closed_by_server(struct client *c, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		int64_t left = (int64_t)end - (int64_t)now_ms();

		if (left <= 0)
			return false;
		c->len = 0;
		if (client_fill(c, (int)left) == 0)
			return true;
	}
}

static uint8_t frame_buf[MG_DERP_HDR_LEN + MG_DERP_MAX_BODY];
static uint8_t body_buf[MG_DERP_MAX_BODY];

/* Connect and read up to ServerKey (after the 101 unless fast). */
static bool client_upgrade(struct client *c, int port, bool fast, int rcvbuf)
{
	char req[256], host[32];
	uint8_t type;
	uint32_t len;
	size_t n;

	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	c->fd = tcp_connect(port, rcvbuf);
	n = mg_derp_http_request(req, sizeof(req), host, fast);
	if (c->fd < 0 || !n || !send_all(c->fd, req, n))
		return false;
	if (!fast) {
		long r;

		while ((r = mg_derp_http_parse_response((char *)c->in, c->len, &c->status,
							&c->http_has_key, c->http_key)) == 0)
			if (client_fill(c, TIMEOUT_MS) <= 0)
				return false;
		if (r < 0 || c->status != 101)
			return false;
		client_take(c, (size_t)r);
	}
	if (read_frame(c, &type, body_buf, &len, TIMEOUT_MS) != 1 || type != MG_DERP_SERVER_KEY)
		return false;
	return mg_derp_parse_server_key(body_buf, len, c->server_pub) == MG_DERP_OK;
}

/* Send ClientInfo, boxed for box_key (normally the server's). */
static bool client_send_info(struct client *c, const uint8_t box_key[32])
{
	uint8_t nonce[MG_DERP_NONCE_LEN];
	size_t n;

	randombytes_buf(nonce, sizeof(nonce));
	n = mg_derp_build_client_info(frame_buf, sizeof(frame_buf), c->pub, c->priv, box_key, nonce,
				      "{\"version\":2}");
	return n && send_all(c->fd, frame_buf, n);
}

/* ServerInfo opens and says version 2. */
static bool client_read_server_info(struct client *c)
{
	char json[MG_DERP_MAX_JSON + 1];
	uint8_t type;
	uint32_t len;

	if (next_frame(c, &type, body_buf, &len, TIMEOUT_MS) != 1 || type != MG_DERP_SERVER_INFO)
		return false;
	return mg_derp_parse_server_info(body_buf, len, c->priv, c->server_pub, json,
					 sizeof(json)) == MG_DERP_OK &&
	       strstr(json, "\"version\":2");
}

static bool client_handshake(struct client *c, int port, bool fast, int rcvbuf)
{
	return client_upgrade(c, port, fast, rcvbuf) && client_send_info(c, c->server_pub) &&
	       client_read_server_info(c);
}

/* A new client with fresh keys, handshake done; NULL if it failed. */
static struct client *client_connect(int port)
{
	struct client *c = client_new();

	if (!client_handshake(c, port, false, 0)) {
		client_free(c);
		return NULL;
	}
	return c;
}

static bool send_packet(struct client *c, const uint8_t dst[32], const uint8_t *pkt, size_t len)
{
	size_t n =
	    mg_derp_build_packet(frame_buf, sizeof(frame_buf), MG_DERP_SEND_PACKET, dst, pkt, len);

	return n && send_all(c->fd, frame_buf, n);
}

/* The next frame is RecvPacket from src with exactly pkt[0..len). */
static bool recv_packet(struct client *c, const uint8_t src[32], const uint8_t *pkt, size_t len)
{
	uint8_t type, key[32];
	const uint8_t *got;
	size_t glen;
	uint32_t blen;

	if (next_frame(c, &type, body_buf, &blen, TIMEOUT_MS) != 1 || type != MG_DERP_RECV_PACKET ||
	    mg_derp_parse_packet(body_buf, blen, key, &got, &glen) != MG_DERP_OK)
		return false;
	return !memcmp(key, src, 32) && glen == len && (len == 0 || !memcmp(got, pkt, len));
}

static bool ping_pong(struct client *c, int ms)
{
	uint8_t data[8], type;
	uint32_t len;
	size_t n;

	randombytes_buf(data, sizeof(data));
	n = mg_derp_build_ping(frame_buf, sizeof(frame_buf), MG_DERP_PING, data);
	if (!send_all(c->fd, frame_buf, n))
		return false;
	if (next_frame(c, &type, body_buf, &len, ms) != 1)
		return false;
	return type == MG_DERP_PONG && len == 8 && !memcmp(body_buf, data, 8);
}

/* HTTP: the whole response to raw (read to EOF), malloc'd; NULL if none. */
static char *http_raw(int port, const char *raw, size_t len)
{
	struct client *c = client_new();
	char *out = NULL;
	int r;

	c->fd = tcp_connect(port, 0);
	if (c->fd >= 0 && send_all(c->fd, raw, len)) {
		while ((r = client_fill(c, TIMEOUT_MS)) > 0)
			;
		if (r == 0) {
			out = malloc(c->len + 1);
			memcpy(out, c->in, c->len);
			out[c->len] = '\0';
		}
	}
	client_free(c);
	return out;
}

static char *http_get(int port, const char *path)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);

	return http_raw(port, req, (size_t)n);
}

static bool starts_with(const char *s, const char *prefix)
{
	return s && !strncmp(s, prefix, strlen(prefix));
}

/* The value of a metric line "<name> <value>" in a /metrics page; -1 if absent. */
static int64_t metric(const char *page, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
	return -1;
}

static char *metrics(int port)
{
	return http_get(port, "/metrics");
}

/* The tests. */

/* Counts of what the test made the server do, to compare with /metrics. */
struct expect {
	uint64_t forwarded, bytes, no_peer;
};

static void test_key_file(struct server *s, uint8_t pub_out[32])
{
	struct stat st = {0};
	uint8_t priv[32];
	char err[256] = "", b64[45], want[80];

	int r = stat(s->key, &st);
	unsigned mode = (unsigned)st.st_mode & 07777;

	check(r == 0 && mode == 0600, "key file generated with mode 0600 (%04o)", mode);
	check(mg_key_load_file(s->key, priv, err, sizeof(err)) == 0, "key file holds a key%s%s",
	      *err ? ": " : "", err);
	crypto_scalarmult_base(pub_out, priv);
	sodium_memzero(priv, sizeof(priv));
	mg_key_to_base64(pub_out, b64);
	snprintf(want, sizeof(want), "server public key %s", b64);
	check(log_wait(s, want, 1, 0), "log shows the server public key");
}

static void test_handshake(struct client *a, struct client *b, const uint8_t pub[32])
{
	check(a->http_has_key && !memcmp(a->http_key, a->server_pub, 32),
	      "ServerKey matches the 101 response's Derp-Public-Key");
	check(!memcmp(a->server_pub, pub, 32), "ServerKey is the key file's public key");
	check(b != NULL, "second client handshake, ServerInfo opens");
}

static void test_forward(struct client *a, struct client *b, struct expect *e)
{
	static const size_t sizes[] = {0, 1, 148, 1452, 65536};
	static uint8_t pkt[65536];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		randombytes_buf(pkt, sizes[i]);
		check(send_packet(a, b->pub, pkt, sizes[i]) &&
			  recv_packet(b, a->pub, pkt, sizes[i]),
		      "A->B packet of %zu bytes arrives with A's key", sizes[i]);
		randombytes_buf(pkt, sizes[i]);
		check(send_packet(b, a->pub, pkt, sizes[i]) &&
			  recv_packet(a, b->pub, pkt, sizes[i]),
		      "B->A packet of %zu bytes arrives with B's key", sizes[i]);
		e->forwarded += 2;
		e->bytes += 2 * sizes[i];
	}
	randombytes_buf(pkt, 100);
	check(send_packet(a, a->pub, pkt, 100) && recv_packet(a, a->pub, pkt, 100),
	      "a packet to oneself is delivered");
	e->forwarded++;
	e->bytes += 100;
}

static void test_absent_and_ping(struct client *a, struct expect *e)
{
	uint8_t absent[32], key[32], reason = 0xff, type;
	uint32_t len;

	randombytes_buf(absent, sizeof(absent));
	check(send_packet(a, absent, (const uint8_t *)"x", 1) &&
		  next_frame(a, &type, body_buf, &len, TIMEOUT_MS) == 1 &&
		  type == MG_DERP_PEER_GONE &&
		  mg_derp_parse_peer_gone(body_buf, len, key, &reason) == MG_DERP_OK &&
		  !memcmp(key, absent, 32) && reason == MG_DERP_GONE_NOT_HERE,
	      "packet to an absent key: PeerGone NOT_HERE for it");
	e->no_peer++;
	check(ping_pong(a, TIMEOUT_MS), "Ping: Pong with the same 8 bytes");
}

static void test_fast_start(int port)
{
	struct client *c = client_new();

	check(client_handshake(c, port, true, 0) && c->status == 0,
	      "fast start: no HTTP response, ServerKey first, ServerInfo opens");
	client_free(c);
}

/* Connections the server must close: ClientInfo for another key, another
 * frame first, frames over the limits. */
static void test_refused(int port)
{
	struct client *c = client_new();
	uint8_t other[32], hdr[MG_DERP_HDR_LEN];

	randombytes_buf(other, sizeof(other));
	check(client_upgrade(c, port, false, 0) && client_send_info(c, other) &&
		  closed_by_server(c, TIMEOUT_MS),
	      "ClientInfo boxed for the wrong server key: closed");
	client_free(c);

	c = client_new();
	check(client_upgrade(c, port, false, 0) && send_packet(c, other, (const uint8_t *)"x", 1) &&
		  closed_by_server(c, TIMEOUT_MS),
	      "SendPacket before ClientInfo: closed");
	client_free(c);

	c = client_new();
	mg_derp_put_hdr(hdr, MG_DERP_CLIENT_INFO, MG_DERP_MAX_INFO + 1);
	check(client_upgrade(c, port, false, 0) && send_all(c->fd, hdr, sizeof(hdr)) &&
		  closed_by_server(c, TIMEOUT_MS),
	      "ClientInfo frame over MG_DERP_MAX_INFO: closed");
	client_free(c);

	c = client_new();
	mg_derp_put_hdr(hdr, MG_DERP_SEND_PACKET, MG_DERP_MAX_BODY + 1);
	check(client_handshake(c, port, false, 0) && send_all(c->fd, hdr, sizeof(hdr)) &&
		  closed_by_server(c, TIMEOUT_MS),
	      "frame over MG_DERP_MAX_BODY after the handshake: closed");
	client_free(c);
}

static void test_http(int port)
{
	static const char garbage[] = "\x16\x03\x01\x02\x00 hello\r\n\r\n";
	char *r, big[6000];

	r = http_raw(port, garbage, sizeof(garbage) - 1);
	check(starts_with(r, "HTTP/1.1 400 "), "garbage request: 400 and close");
	free(r);
	memset(big, 'A', sizeof(big));
	r = http_raw(port, big, sizeof(big));
	check(starts_with(r, "HTTP/1.1 400 "), "6000 bytes without a head's end: 400 and close");
	free(r);
	r = http_get(port, "/derp/probe");
	check(starts_with(r, "HTTP/1.1 200 ") && strstr(r, "Content-Length: 0\r\n"),
	      "/derp/probe: 200, empty, close");
	free(r);
	r = http_get(port, "/generate_204");
	check(starts_with(r, "HTTP/1.1 204 "), "/generate_204: 204 and close");
	free(r);
	r = http_get(port, "/nothing/here");
	check(starts_with(r, "HTTP/1.1 404 "), "other path: 404 and close");
	free(r);
	r = http_get(port, "/derp");
	check(starts_with(r, "HTTP/1.1 404 "), "/derp without Upgrade: DERP: 404 and close");
	free(r);
}

static void test_metrics(int port, const struct expect *e, int clients)
{
	char *m = metrics(port);

	if (!check(starts_with(m, "HTTP/1.1 200 ") && strstr(m, "text/plain"),
		   "/metrics: 200 text/plain")) {
		free(m);
		return;
	}
	check(metric(m, "meshgate_derp_packets_forwarded_total") == (int64_t)e->forwarded,
	      "/metrics: packets forwarded %" PRId64 ", sent %" PRIu64,
	      metric(m, "meshgate_derp_packets_forwarded_total"), e->forwarded);
	check(metric(m, "meshgate_derp_bytes_forwarded_total") == (int64_t)e->bytes,
	      "/metrics: bytes forwarded %" PRId64 ", sent %" PRIu64,
	      metric(m, "meshgate_derp_bytes_forwarded_total"), e->bytes);
	check(metric(m, "meshgate_derp_drops_total{reason=\"no_peer\"}") == (int64_t)e->no_peer,
	      "/metrics: no_peer drops %" PRIu64, e->no_peer);
	check(metric(m, "meshgate_derp_clients") == clients, "/metrics: %d clients (%" PRId64 ")",
	      clients, metric(m, "meshgate_derp_clients"));
	check(metric(m, "meshgate_derp_rejected_total{reason=\"client_info\"}") == 1 &&
		  metric(m, "meshgate_derp_rejected_total{reason=\"not_client_info\"}") == 1 &&
		  metric(m, "meshgate_derp_rejected_total{reason=\"frame_too_big\"}") == 2 &&
		  metric(m, "meshgate_derp_rejected_total{reason=\"bad_http\"}") == 2,
	      "/metrics: each refused connection counted under its reason");
	check(metric(m, "meshgate_derp_http_requests_total{kind=\"probe\"}") == 2 &&
		  metric(m, "meshgate_derp_http_requests_total{kind=\"not_found\"}") == 2,
	      "/metrics: probes and 404s counted");
	free(m);
}

/* Same key again: the newer connection wins. */
static void test_replace(int port, struct client **a, struct client *b)
{
	struct client *a2 = client_new();
	uint8_t pkt[64];

	memcpy(a2->pub, (*a)->pub, 32);
	memcpy(a2->priv, (*a)->priv, 32);
	check(client_handshake(a2, port, false, 0), "same key again: handshake");
	check(closed_by_server(*a, TIMEOUT_MS), "same key again: first connection closed");
	randombytes_buf(pkt, sizeof(pkt));
	check(send_packet(b, a2->pub, pkt, sizeof(pkt)) &&
		  recv_packet(a2, b->pub, pkt, sizeof(pkt)),
	      "same key again: second connection receives");
	client_free(*a);
	*a = a2;
}

/* B never reads and has a small receive buffer; A floods it. */
static void test_slow_reader(int port, struct client *a)
{
	static uint8_t pkt[16384];
	struct client *slow = client_new(), *c = client_connect(port);
	uint64_t start = now_ms();
	bool sent = true;
	char *m;

	check(client_handshake(slow, port, false, 4096) && c, "slow reader and a third client up");
	if (!c)
		goto out;
	memset(pkt, 0x5a, sizeof(pkt));
	for (int i = 0; i < 2000 && sent; i++)
		sent = send_packet(a, slow->pub, pkt, sizeof(pkt));
	check(sent, "A sent 2000 packets of 16 KiB to the slow reader (%" PRIu64 " ms)",
	      now_ms() - start);
	start = now_ms();
	check(ping_pong(c, 2000),
	      "server responsive: third client's Ping answered (%" PRIu64 " ms)", now_ms() - start);
	check(ping_pong(a, 2000), "the flooding client is still served");
	m = metrics(port);
	check(metric(m, "meshgate_derp_drops_total{reason=\"queue_full\"}") > 1000,
	      "/metrics: queue_full drops counted (%" PRId64 ")",
	      metric(m, "meshgate_derp_drops_total{reason=\"queue_full\"}"));
	free(m);
	{
		uint8_t gone[32], key[32], reason = 0xff, type;
		uint32_t len;

		memcpy(gone, slow->pub, 32);
		client_free(slow);
		slow = NULL;
		check(next_frame(a, &type, body_buf, &len, TIMEOUT_MS) == 1 &&
			  type == MG_DERP_PEER_GONE &&
			  mg_derp_parse_peer_gone(body_buf, len, key, &reason) == MG_DERP_OK &&
			  !memcmp(key, gone, 32) && reason == MG_DERP_GONE_DISCONNECTED,
		      "slow reader leaves: its sender gets PeerGone DISCONNECTED");
	}
out:
	client_free(slow);
	client_free(c);
}

/* Many packets in one write, to a client that reads them only afterwards:
 * the queue bound is on what its socket will not take, so none is lost. */
static void test_burst(struct client *a, struct client *b, struct expect *e)
{
	enum { N = 100, LEN = 1300 };
	static uint8_t frames[N * (MG_DERP_HDR_LEN + 32 + LEN)], pkt[LEN];
	size_t off = 0;
	int got = 0;

	memset(pkt, 0xa5, sizeof(pkt));
	for (int i = 0; i < N; i++)
		off += mg_derp_build_packet(frames + off, sizeof(frames) - off, MG_DERP_SEND_PACKET,
					    b->pub, pkt, LEN);
	if (send_all(a->fd, frames, off))
		while (got < N && recv_packet(b, a->pub, pkt, LEN))
			got++;
	check(got == N, "%d packets of %d bytes in one write: %d arrive", N, LEN, got);
	e->forwarded += (uint64_t)got;
	e->bytes += (uint64_t)got * LEN;
}

/* A client that sends Pings and never reads the Pongs is closed. */
static void test_ping_flood(int port)
{
	enum { BATCH = 1000 };
	static uint8_t pings[BATCH * (MG_DERP_HDR_LEN + 8)];
	struct client *c = client_new();
	uint8_t data[8] = {0};
	int sent = 0;
	char *m;

	for (int i = 0; i < BATCH; i++)
		mg_derp_build_ping(pings + i * (MG_DERP_HDR_LEN + 8), MG_DERP_HDR_LEN + 8,
				   MG_DERP_PING, data);
	if (!check(client_handshake(c, port, false, 4096), "ping flooder up")) {
		client_free(c);
		return;
	}
	/* 13 MB of Pings at most; the server gives up long before. */
	while (sent < 1000 && send_all(c->fd, pings, sizeof(pings)))
		sent++;
	check(sent < 1000 && closed_by_server(c, TIMEOUT_MS),
	      "client flooding Pings without reading: closed after %d000 Pings", sent);
	client_free(c);
	m = metrics(port);
	check(metric(m, "meshgate_derp_rejected_total{reason=\"slow_reader\"}") == 1,
	      "/metrics: counted as slow_reader");
	free(m);
}

/* 10,000 packets A->B, at most WINDOW unreceived (the server's queue is 32):
 * all arrive, in order, intact. */
static void test_ordered_run(struct client *a, struct client *b)
{
	enum { N = 10000, WINDOW = 24 };
	static uint8_t pkt[1500];
	uint64_t start = now_ms();
	int sent = 0, got = 0;

	while (got < N && now_ms() - start < 10000) {
		while (sent < N && sent - got < WINDOW) {
			size_t len = 64 + (size_t)sent % 1400;

			for (size_t i = 0; i < len; i++)
				pkt[i] = (uint8_t)(sent * 31 + (int)i);
			if (!send_packet(a, b->pub, pkt, len))
				goto out;
			sent++;
		}
		{
			size_t len = 64 + (size_t)got % 1400;

			for (size_t i = 0; i < len; i++)
				pkt[i] = (uint8_t)(got * 31 + (int)i);
			if (!recv_packet(b, a->pub, pkt, len))
				goto out;
			got++;
		}
	}
out:
	check(got == N, "10000 packets A->B arrive in order, intact: %d in %" PRIu64 " ms", got,
	      now_ms() - start);
}

static void test_signals(struct server *s)
{
	kill(s->pid, SIGUSR1);
	check(log_wait(s, "derpd: clients ", 1, TIMEOUT_MS), "SIGUSR1 prints the counters");
	kill(s->pid, SIGTERM);
	check(server_wait(s, TIMEOUT_MS) == 0, "SIGTERM: exit 0");
	check(log_wait(s, "derpd: clients ", 2, 0), "SIGTERM prints the counters");
}

/* The main server: everything but restarts and --max-clients. */
static void test_main_server(struct server *s, uint8_t pub[32])
{
	struct client *a, *b;
	struct expect e = {0};

	a = client_connect(s->port);
	b = client_connect(s->port);
	if (!check(a != NULL, "first client handshake, ServerInfo opens") || !b) {
		client_free(a);
		client_free(b);
		return;
	}
	test_key_file(s, pub);
	test_handshake(a, b, pub);
	test_forward(a, b, &e);
	test_absent_and_ping(a, &e);
	test_burst(a, b, &e);
	test_fast_start(s->port);
	test_refused(s->port);
	test_http(s->port);
	test_metrics(s->port, &e, 2);
	check(log_wait(s, "connected from 127.0.0.1:", 2, 0), "log: clients connecting");
	test_replace(s->port, &a, b);
	test_slow_reader(s->port, a);
	test_ping_flood(s->port);
	test_ordered_run(a, b);
	client_free(a);
	client_free(b);
	test_signals(s);
}

/* --max-clients 1: a second key is refused, the same key may reconnect. */
static void test_max_clients(struct server *s)
{
	static const char *const extra[] = {"--max-clients", "1", NULL};
	struct client *a, *b, *a2 = client_new();

	if (!check(server_start(s, "max-clients", extra), "server up with --max-clients 1"))
		return;
	a = client_connect(s->port);
	b = client_new();
	check(a != NULL, "--max-clients 1: first client in");
	check(client_upgrade(b, s->port, false, 0) && client_send_info(b, b->server_pub) &&
		  closed_by_server(b, TIMEOUT_MS),
	      "--max-clients 1: second client refused");
	if (a) {
		memcpy(a2->pub, a->pub, 32);
		memcpy(a2->priv, a->priv, 32);
		check(client_handshake(a2, s->port, false, 0),
		      "--max-clients 1: the same key may reconnect");
	}
	client_free(a);
	client_free(a2);
	client_free(b);
	kill(s->pid, SIGTERM);
	check(server_wait(s, TIMEOUT_MS) == 0, "--max-clients server: exit 0");
}

static void test_restart(struct server *s, const uint8_t pub[32])
{
	struct client *c;

	if (!check(server_start(s, "restart", NULL), "restart with the same key file"))
		return;
	c = client_connect(s->port);
	check(c && !memcmp(c->server_pub, pub, 32), "restart: same server key");
	client_free(c);
	kill(s->pid, SIGTERM);
	check(server_wait(s, TIMEOUT_MS) == 0, "restart: exit 0");
}

static void test_bad_key_file(struct server *s)
{
	chmod(s->key, 0640);
	s->port = free_port();
	server_spawn(s, "bad-key", NULL);
	check(server_wait(s, TIMEOUT_MS) == 1, "group-readable key file: exit 1");
	check(log_wait(s, "insecure mode 0640", 1, 0), "group-readable key file: says why");
	chmod(s->key, 0600);
}

static int run_quick(const char *const *argv)
{
	struct server s = {0};

	snprintf(s.log, sizeof(s.log), "%s/quick.log", tmpdir);
	s.pid = fork();
	if (s.pid == 0) {
		int fd = open(s.log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		execv(server_exe, (char *const *)argv);
		_exit(127);
	}
	return server_wait(&s, TIMEOUT_MS);
}

static void test_bad_options(void)
{
	const char *no_key[] = {server_exe, "-l", "127.0.0.1:1", NULL};
	const char *bad_listen[] = {server_exe, "-k", "/nonexistent/k", "-l", "nonsense", NULL};
	const char *bad_max[] = {server_exe, "-k", "/nonexistent/k", "--max-clients", "0", NULL};

	check(run_quick(no_key) == 1, "no -k: exit 1");
	check(run_quick(bad_listen) == 1, "bad --listen: exit 1");
	check(run_quick(bad_max) == 1, "--max-clients 0: exit 1");
}

static void cleanup(void)
{
	static const char *const names[] = {"key",	   "main.log",	"restart.log",
					    "bad-key.log", "quick.log", "max-clients.log"};
	char path[512];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

int main(int argc, char **argv)
{
	struct server s = {0};
	uint8_t pub[32] = {0};

	if (argc != 2) {
		fprintf(stderr, "usage: test_derpd MESHGATE_DERPD\n");
		return 2;
	}
	server_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0 || !mkdtemp(tmpdir)) {
		perror("test_derpd: setup");
		return 2;
	}
	snprintf(s.key, sizeof(s.key), "%s/key", tmpdir);
	test_bad_options();
	if (check(server_start(&s, "main", NULL), "server up, key file created")) {
		test_main_server(&s, pub);
		if (failed)
			server_dump_log(&s);
		if (s.pid)
			server_wait(&s, 0);
	}
	test_restart(&s, pub);
	test_max_clients(&s);
	test_bad_key_file(&s);
	if (failed)
		server_dump_log(&s);
	printf("%d passed, %d failed\n", passed, failed);
	cleanup();
	return failed ? 1 : 0;
}
