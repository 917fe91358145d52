/* SPDX-License-Identifier: MIT */
/*
 * meshgate-derpd end to end: start the server on 127.0.0.1 and a free port
 * with a key file in a fresh directory, talk DERP to it with clients built
 * on common/derp.h, and check the key file, the handshake, forwarding,
 * PeerGone, Ping, the HTTP side (probes, /metrics, 404, 400), every way a
 * connection gets refused, a client that never reads, a long ordered run,
 * --max-clients, and the counters on SIGUSR1 and SIGTERM. Then the same
 * over TLS (--tls-cert/--tls-key, a certificate made with `openssl req`,
 * clients verifying it with OpenSSL): forwarding, Ping, HTTP, a reader that
 * lets the server's writes block, stalled handshakes, refused handshakes,
 * refused key files.
 *
 * Usage: test_derpd MESHGATE_DERPD. Prints one line per check and a count;
 * exits 1 if any failed (then also the server's log).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "derp.h"
#include "keys.h"

#define TIMEOUT_MS 5000 /* for anything expected to happen */
#define IN_CAP	   (256 * 1024)

static int passed, failed;
static const char *check_prefix = ""; /* "TLS: " for shared checks run over TLS */
static char tmpdir[] = "/tmp/test_derpd.XXXXXX";
static const char *server_exe;

static bool check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool check(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s%s", cond ? "ok   " : "FAIL ", check_prefix);
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

/* Clients speak TLS when this is set (the TLS part), verifying the server's
 * certificate for tls_ip. */
static SSL_CTX *tls_ctx;
static const char *tls_ip = "127.0.0.1";

/* A DERP client: keys, socket and what it has read but not used. */
struct client {
	int fd;
	SSL *ssl; /* with tls_ctx */
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
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* TLS: wait until `end` for what OpenSSL wants (err from SSL_get_error). */
static bool tls_wait(struct client *c, int err, uint64_t end)
{
	struct pollfd pfd = {.fd = c->fd, .events = err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
	int64_t left = (int64_t)end - (int64_t)now_ms();

	if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || left <= 0)
		return false;
	return poll(&pfd, 1, (int)left) > 0;
}

/* The TLS handshake on c->fd (made non-blocking), the certificate verified. */
static bool tls_connect(struct client *c, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	int r;

	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
		return false;
	c->ssl = SSL_new(tls_ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), tls_ip) != 1)
		return false;
	for (;;) {
		ERR_clear_error();
		r = SSL_connect(c->ssl);
		if (r == 1)
			break;
		if (!tls_wait(c, SSL_get_error(c->ssl, r), end))
			return false;
	}
	return SSL_get_verify_result(c->ssl) == X509_V_OK;
}

/* Connect (and with tls_ctx, the TLS handshake). */
static bool client_open(struct client *c, int port, int rcvbuf)
{
	c->fd = tcp_connect(port, rcvbuf);
	if (c->fd < 0)
		return false;
	return !tls_ctx || tls_connect(c, TIMEOUT_MS);
}

/* Send all of buf, through TLS if c has it. */
static bool client_send(struct client *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t end = now_ms() + TIMEOUT_MS;

	if (!c->ssl)
		return send_all(c->fd, buf, len);
	while (len) {
		int w;

		ERR_clear_error();
		w = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
		if (w > 0) {
			p += w;
			len -= (size_t)w;
			end = now_ms() + TIMEOUT_MS;
		} else if (!tls_wait(c, SSL_get_error(c->ssl, w), end)) {
			return false;
		}
	}
	return true;
}

/* client_fill over TLS. */
static int tls_fill(struct client *c, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		int r;

		ERR_clear_error();
		r = SSL_read(c->ssl, c->in + c->len, (int)(IN_CAP - c->len));
		if (r > 0) {
			c->len += (size_t)r;
			return r;
		}
		r = SSL_get_error(c->ssl, r);
		if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE)
			return 0; /* close_notify, EOF, reset or a TLS error */
		if (!tls_wait(c, r, end))
			return -1;
	}
}

/* Read more: bytes read, 0 at EOF (or reset), -1 on timeout. */
static int client_fill(struct client *c, int ms)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	ssize_t n;

	if (c->len == IN_CAP)
		return -1;
	if (c->ssl)
		return tls_fill(c, ms);
	if (poll(&pfd, 1, ms) <= 0)
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
	n = mg_derp_http_request(req, sizeof(req), host, fast);
	if (!client_open(c, port, rcvbuf) || !n || !client_send(c, req, n))
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
	return n && client_send(c, frame_buf, n);
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

	return n && client_send(c, frame_buf, n);
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
	if (!client_send(c, frame_buf, n))
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

	if (client_open(c, port, 0) && client_send(c, raw, len)) {
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
	check(client_upgrade(c, port, false, 0) && client_send(c, hdr, sizeof(hdr)) &&
		  closed_by_server(c, TIMEOUT_MS),
	      "ClientInfo frame over MG_DERP_MAX_INFO: closed");
	client_free(c);

	c = client_new();
	mg_derp_put_hdr(hdr, MG_DERP_SEND_PACKET, MG_DERP_MAX_BODY + 1);
	check(client_handshake(c, port, false, 0) && client_send(c, hdr, sizeof(hdr)) &&
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
	if (client_send(a, frames, off))
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
	while (sent < 1000 && client_send(c, pings, sizeof(pings)))
		sent++;
	check(sent < 1000 && closed_by_server(c, TIMEOUT_MS),
	      "client flooding Pings without reading: closed after %d000 Pings", sent);
	client_free(c);
	m = metrics(port);
	check(metric(m, "meshgate_derp_rejected_total{reason=\"slow_reader\"}") == 1,
	      "/metrics: counted as slow_reader");
	free(m);
}

/* N packets A->B, at most WINDOW unreceived (the server's queue is 32):
 * all arrive, in order, intact. */
static void test_ordered_run(struct client *a, struct client *b, int N, const char *what)
{
	enum { WINDOW = 24 };
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
	check(got == N, "%s%d packets A->B arrive in order, intact: %d in %" PRIu64 " ms", what, N,
	      got, now_ms() - start);
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
	check(log_wait(s, "TLS off: plain HTTP", 1, 0), "log: TLS off, plain HTTP");
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
	test_ordered_run(a, b, 10000, "");
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

/* Whether run_quick's output has what. */
static bool quick_log_has(const char *what)
{
	char path[512], *text;
	bool has;

	snprintf(path, sizeof(path), "%s/quick.log", tmpdir);
	text = slurp(path);
	has = strstr(text, what) != NULL;
	free(text);
	return has;
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

/* TLS. */

static char tls_cert[256], tls_key[256];

/* A self-signed EC certificate for IP 127.0.0.1 and its key (0600). */
static bool make_cert(void)
{
	struct server p = {0};

	p.pid = fork();
	if (p.pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execlp("openssl", "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
		       "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=derp",
		       "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", tls_key, "-out",
		       tls_cert, (char *)NULL);
		_exit(127);
	}
	return p.pid > 0 && server_wait(&p, 4 * TIMEOUT_MS) == 0 && chmod(tls_key, 0600) == 0;
}

/* Clients trusting tls_cert alone; max: the highest TLS version they offer
 * (0: any). */
static SSL_CTX *client_ctx(int max)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return NULL;
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (max) {
		/* Old versions need security level 0 to be offered at all. */
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_min_proto_version(ctx, 0);
		SSL_CTX_set_max_proto_version(ctx, max);
	}
	if (SSL_CTX_load_verify_locations(ctx, tls_cert, NULL) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* A metric once it has the value wanted, asking again until ms pass; the
 * last value seen. */
static int64_t metric_wait(int port, const char *name, int64_t want, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	int64_t v;

	for (;;) {
		char *m = metrics(port);

		v = metric(m, name);
		free(m);
		if (v == want || now_ms() >= end)
			return v;
		usleep(50000);
	}
}

static int ms_until(uint64_t end)
{
	uint64_t now = now_ms();

	return end > now ? (int)(end - now) : 0;
}

/* Whether the server closes fd within ms, reading (and dropping) whatever
 * comes first without TLS. */
static bool raw_closed(int fd, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	char buf[4096];

	for (;;) {
		int64_t left = (int64_t)end - (int64_t)now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return false;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return true;
	}
}

/* Two connections that stall mid-handshake: a ClientHello record cut
 * short, and a whole ClientHello (the server answers, then waits for the
 * client's Finished, which never comes). */
static void stall_open(int port, int fd[2], SSL **ssl)
{
	/* A handshake record of 512 bytes (a ClientHello of 508): its first 9. */
	static const uint8_t part[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00,
				       0x01, 0xfc, 0x03, 0x03, 0x00, 0x00, 0x00};
	int r;

	fd[0] = tcp_connect(port, 0);
	if (fd[0] >= 0 && !send_all(fd[0], part, sizeof(part))) {
		close(fd[0]);
		fd[0] = -1;
	}
	fd[1] = tcp_connect(port, 0);
	*ssl = NULL;
	if (fd[1] < 0)
		return;
	*ssl = SSL_new(tls_ctx);
	if (!*ssl)
		return;
	/* The ClientHello made into memory and sent by hand: the server's
	 * answer is never read, so no client Finished can follow, however fast
	 * the server answers (SSL_connect on the socket itself could read it). */
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	char *hello;
	long n;
	if (!rb || !wb) {
		BIO_free(rb);
		BIO_free(wb);
		SSL_free(*ssl);
		*ssl = NULL;
		return;
	}
	SSL_set_bio(*ssl, rb, wb); /* *ssl owns both */
	ERR_clear_error();
	r = SSL_connect(*ssl);
	n = BIO_get_mem_data(wb, &hello);
	if (r == 1 || SSL_get_error(*ssl, r) != SSL_ERROR_WANT_READ || n <= 0 ||
	    !send_all(fd[1], hello, (size_t)n)) {
		SSL_free(*ssl);
		*ssl = NULL;
	}
}

static void tls_forward(struct client *a, struct client *b, struct expect *e)
{
	static const size_t sizes[] = {0, 1, 1452, 65536};
	static uint8_t pkt[65536];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		randombytes_buf(pkt, sizes[i]);
		check(send_packet(a, b->pub, pkt, sizes[i]) &&
			  recv_packet(b, a->pub, pkt, sizes[i]),
		      "TLS: A->B packet of %zu bytes arrives with A's key", sizes[i]);
		randombytes_buf(pkt, sizes[i]);
		check(send_packet(b, a->pub, pkt, sizes[i]) &&
			  recv_packet(a, b->pub, pkt, sizes[i]),
		      "TLS: B->A packet of %zu bytes arrives with B's key", sizes[i]);
		e->forwarded += 2;
		e->bytes += 2 * sizes[i];
	}
}

/* TLS: the HTTP side, as over plain HTTP. */
static void tls_http(int port)
{
	char *r = http_get(port, "/derp/probe");

	check(starts_with(r, "HTTP/1.1 200 ") && strstr(r, "Content-Length: 0\r\n"),
	      "TLS: /derp/probe: 200, empty, close");
	free(r);
	r = http_get(port, "/generate_204");
	check(starts_with(r, "HTTP/1.1 204 "), "TLS: /generate_204: 204 and close");
	free(r);
	r = http_get(port, "/nothing/here");
	check(starts_with(r, "HTTP/1.1 404 "), "TLS: other path: 404 and close");
	free(r);
}

/* Handshakes the server must refuse (counted tls_handshake): plain HTTP, a
 * client that rejects the certificate, TLS 1.1. */
static void tls_refused(int port)
{
	SSL_CTX *ctx = tls_ctx, *old;
	struct client *c;
	char *r;

	tls_ctx = NULL;
	r = http_get(port, "/metrics");
	check(r && !strstr(r, "HTTP/"), "TLS port: a plain HTTP request gets no answer, closed");
	free(r);
	tls_ctx = ctx;

	tls_ip = "127.0.0.2";
	c = client_new();
	check(!client_open(c, port, 0),
	      "TLS: a client verifying for 127.0.0.2 refuses the certificate");
	client_free(c);
	tls_ip = "127.0.0.1";

	old = client_ctx(TLS1_1_VERSION);
	tls_ctx = old;
	c = client_new();
	check(old && !client_open(c, port, 0), "TLS: a TLS 1.1 client is refused");
	client_free(c);
	SSL_CTX_free(old);
	tls_ctx = ctx;
	check(metric_wait(port, "meshgate_derp_rejected_total{reason=\"tls_handshake\"}", 3,
			  TIMEOUT_MS) == 3,
	      "TLS: /metrics: the 3 refused handshakes counted as tls_handshake");
}

/* B never reads, with a small receive buffer, while A sends it packets of
 * three sizes: the server's SSL_write blocks and is retried as the queue
 * grows (gathered, or whole chunks). B sends a KeyUpdate and a Ping, then
 * reads: what arrives is intact, in order, the stream still decrypts, and
 * the Pong comes. */
static void tls_slow_reader(int port, struct client *a)
{
	static const size_t sizes[] = {16000, 100, 40000};
	enum { N = 300 };
	static uint8_t pkt[40000];
	struct client *slow = client_new();
	int sent = 0, got = 0, bad = 0, last = -1, r = 0;
	uint8_t type, key[32], reason = 0xff, data[8];
	uint32_t blen;
	bool pong = false;

	if (!check(client_handshake(slow, port, false, 4096), "TLS: slow reader up")) {
		client_free(slow);
		return;
	}
	for (; sent < N; sent++) {
		size_t len = sizes[sent % 3];

		for (size_t i = 0; i < len; i++)
			pkt[i] = (uint8_t)(sent * 7 + (int)i);
		memcpy(pkt, &sent, sizeof(sent));
		if (!send_packet(a, slow->pub, pkt, len))
			break;
	}
	check(sent == N && ping_pong(a, TIMEOUT_MS),
	      "TLS: A sent %d packets to a client that does not read, and is still served", sent);
	/* A KeyUpdate asking for the server's too, while the server's write
	 * to us is blocked: OpenSSL sends its own after that write. */
	randombytes_buf(data, sizeof(data));
	mg_derp_build_ping(frame_buf, sizeof(frame_buf), MG_DERP_PING, data);
	check(SSL_key_update(slow->ssl, SSL_KEY_UPDATE_REQUESTED) == 1 &&
		  client_send(slow, frame_buf, MG_DERP_HDR_LEN + 8),
	      "TLS: the slow reader sends a KeyUpdate (update requested) and a Ping");
	while ((r = read_frame(slow, &type, body_buf, &blen, 1000)) == 1) {
		const uint8_t *p;
		size_t plen;
		int idx;
		bool ok;

		if (type == MG_DERP_KEEP_ALIVE)
			continue;
		if (type == MG_DERP_PONG && !pong) {
			pong = blen == 8 && !memcmp(body_buf, data, 8);
			continue;
		}
		ok = type == MG_DERP_RECV_PACKET &&
		     mg_derp_parse_packet(body_buf, blen, key, &p, &plen) == MG_DERP_OK &&
		     !memcmp(key, a->pub, 32) && plen >= sizeof(idx);
		if (ok) {
			memcpy(&idx, p, sizeof(idx));
			ok = idx > last && idx < N && plen == sizes[idx % 3];
			for (size_t i = sizeof(idx); ok && i < plen; i++)
				ok = p[i] == (uint8_t)(idx * 7 + (int)i);
			last = idx;
		}
		if (ok)
			got++;
		else
			bad++;
	}
	check(r == -1 && bad == 0 && got >= 32,
	      "TLS: the slow reader then reads %d packets, intact and in order (%d bad, %s)", got,
	      bad, r == -1 ? "stream still open" : "stream broken");
	check(pong, "TLS: and the Pong, after the KeyUpdate was answered");
	client_free(slow);
	check(next_frame(a, &type, body_buf, &blen, TIMEOUT_MS) == 1 && type == MG_DERP_PEER_GONE &&
		  mg_derp_parse_peer_gone(body_buf, blen, key, &reason) == MG_DERP_OK &&
		  reason == MG_DERP_GONE_DISCONNECTED,
	      "TLS: slow reader leaves: its sender gets PeerGone DISCONNECTED");
}

/* 1 MiB of packets to an absent key and a Ping, most of it written while
 * the server is stopped: it then reads more than a read's worth at once
 * while OpenSSL still holds input (d->tls_pending). One PeerGone, then the
 * Pong. */
static void tls_big_write(struct server *s, struct client *a, struct expect *e)
{
	enum { N = 800, LEN = 1300 };
	static uint8_t frames[N * (MG_DERP_HDR_LEN + 32 + LEN) + MG_DERP_HDR_LEN + 8], pkt[LEN];
	uint8_t absent[32], data[8] = {1, 2, 3, 4, 5, 6, 7, 8}, type, key[32], reason = 0xff;
	int sndbuf = 4 << 20, w = 1;
	uint32_t len;
	size_t off = 0, done = 0;

	randombytes_buf(absent, sizeof(absent));
	memset(pkt, 0x3c, sizeof(pkt));
	for (int i = 0; i < N; i++)
		off += mg_derp_build_packet(frames + off, sizeof(frames) - off, MG_DERP_SEND_PACKET,
					    absent, pkt, LEN);
	off += mg_derp_build_ping(frames + off, sizeof(frames) - off, MG_DERP_PING, data);
	setsockopt(a->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	kill(s->pid, SIGSTOP);
	while (done < off && w > 0) {
		ERR_clear_error();
		w = SSL_write(a->ssl, frames + done, (int)(off - done));
		if (w > 0)
			done += (size_t)w;
	}
	kill(s->pid, SIGCONT);
	check(client_send(a, frames + done, off - done) &&
		  next_frame(a, &type, body_buf, &len, TIMEOUT_MS) == 1 &&
		  type == MG_DERP_PEER_GONE &&
		  mg_derp_parse_peer_gone(body_buf, len, key, &reason) == MG_DERP_OK &&
		  !memcmp(key, absent, 32) && reason == MG_DERP_GONE_NOT_HERE &&
		  next_frame(a, &type, body_buf, &len, TIMEOUT_MS) == 1 && type == MG_DERP_PONG &&
		  len == 8 && !memcmp(body_buf, data, 8),
	      "TLS: %d packets to an absent key and a Ping, %zu KiB of them written to a "
	      "stopped server: one PeerGone, the Pong",
	      N, done / 1024);
	e->no_peer += N;
}

static void tls_metrics(int port, const struct expect *e)
{
	char *m = metrics(port);

	check(starts_with(m, "HTTP/1.1 200 ") && strstr(m, "text/plain"),
	      "TLS: /metrics: 200 text/plain");
	check(metric(m, "meshgate_derp_packets_forwarded_total") == (int64_t)e->forwarded &&
		  metric(m, "meshgate_derp_bytes_forwarded_total") == (int64_t)e->bytes,
	      "TLS: /metrics: packets forwarded %" PRId64 " (sent %" PRIu64 "), bytes %" PRId64
	      " (sent %" PRIu64 ")",
	      metric(m, "meshgate_derp_packets_forwarded_total"), e->forwarded,
	      metric(m, "meshgate_derp_bytes_forwarded_total"), e->bytes);
	check(metric(m, "meshgate_derp_drops_total{reason=\"no_peer\"}") == (int64_t)e->no_peer,
	      "TLS: /metrics: no_peer drops %" PRIu64, e->no_peer);
	check(metric(m, "meshgate_derp_clients") == 3, "TLS: /metrics: 3 clients (%" PRId64 ")",
	      metric(m, "meshgate_derp_clients"));
	free(m);
}

/* The TLS server: everything over TLS, while two handshakes stall. */
static void test_tls_server(struct server *s)
{
	const char *const extra[] = {"--tls-cert", tls_cert, "--tls-key", tls_key, NULL};
	struct client *a = NULL, *b = NULL, *c = NULL;
	struct expect e = {0};
	uint64_t stalled_at;
	int stall[2] = {-1, -1};
	SSL *stall_ssl = NULL;

	if (!check(server_start(s, "tls", extra), "TLS server up with --tls-cert/--tls-key"))
		return;
	check(log_wait(s, "TLS on", 1, 0) && log_wait(s, "certificate subject CN=derp", 1, 0),
	      "log: TLS on, with the certificate's subject");
	stall_open(s->port, stall, &stall_ssl);
	stalled_at = now_ms();
	check(stall[0] >= 0 && stall[1] >= 0 && stall_ssl,
	      "two TLS handshakes stall: a cut ClientHello, no client Finished");

	c = client_connect(s->port);
	check(c && ping_pong(c, 2000),
	      "TLS: a third client completes its handshakes and gets a Pong meanwhile (%" PRIu64
	      " ms)",
	      now_ms() - stalled_at);
	a = client_connect(s->port);
	b = client_connect(s->port);
	if (!check(a && b, "TLS: two clients verify the certificate (for IP 127.0.0.1), upgrade, "
			   "ServerInfo opens")) {
		client_free(a);
		client_free(b);
		client_free(c);
		goto out;
	}
	check(SSL_version(a->ssl) >= TLS1_2_VERSION, "TLS: negotiated %s (1.2 or later)",
	      SSL_get_version(a->ssl));
	check(a->http_has_key && !memcmp(a->http_key, a->server_pub, 32) &&
		  !memcmp(a->server_pub, b->server_pub, 32),
	      "TLS: ServerKey matches the 101 response's Derp-Public-Key");
	tls_forward(a, b, &e);
	check_prefix = "TLS: ";
	test_burst(a, b, &e);
	test_fast_start(s->port);
	check_prefix = "";
	check(ping_pong(a, TIMEOUT_MS), "TLS: Ping: Pong with the same 8 bytes");
	tls_big_write(s, a, &e);
	tls_http(s->port);
	tls_metrics(s->port, &e);
	tls_refused(s->port);
	tls_slow_reader(s->port, a);
	test_ordered_run(a, b, 3000, "TLS: ");

	/* The stalled handshakes meet the deadline (DERPD_HANDSHAKE_MS). */
	{
		uint64_t end = stalled_at + 10000 + TIMEOUT_MS, after;
		bool closed =
		    raw_closed(stall[0], ms_until(end)) && raw_closed(stall[1], ms_until(end));

		after = now_ms() - stalled_at;

		check(closed && after >= 9500,
		      "stalled TLS handshakes closed at the 10 s deadline (after %" PRIu64 " ms)",
		      after);
		check(metric_wait(s->port, "meshgate_derp_rejected_total{reason=\"timeout\"}", 2,
				  TIMEOUT_MS) == 2,
		      "TLS: /metrics: the stalled handshakes counted as timeout");
	}
	client_free(c);
	/* A and B still connected: the exit closes their TLS. */
	kill(s->pid, SIGTERM);
	check(server_wait(s, TIMEOUT_MS) == 0,
	      "TLS server: SIGTERM with clients connected: exit 0");
	client_free(a);
	client_free(b);
out:
	SSL_free(stall_ssl);
	for (int i = 0; i < 2; i++)
		if (stall[i] >= 0)
			close(stall[i]);
}

/* Refused at start: the key file group-readable, not a PEM key, the
 * options alone. */
static void test_tls_options(struct server *s)
{
	const char *const extra[] = {"--tls-cert", tls_cert, "--tls-key", tls_key, NULL};
	const char *const not_pem[] = {"--tls-cert", tls_cert, "--tls-key", s->key, NULL};
	const char *cert_only[] = {server_exe, "-k", s->key, "--tls-cert", tls_cert, NULL};
	const char *key_only[] = {server_exe, "-k", s->key, "--tls-key", tls_key, NULL};
	const char *no_cert[] = {
	    server_exe,		 "-k",	      s->key,  "-l", "127.0.0.1:1", "--tls-cert",
	    "/nonexistent/cert", "--tls-key", tls_key, NULL};

	chmod(tls_key, 0640);
	s->port = free_port();
	server_spawn(s, "tls-bad-key", extra);
	check(server_wait(s, TIMEOUT_MS) == 1, "group-readable TLS key file: exit 1");
	check(log_wait(s, "insecure mode 0640", 1, 0), "group-readable TLS key file: says why");
	chmod(tls_key, 0600);
	s->port = free_port();
	server_spawn(s, "tls-not-pem", not_pem);
	check(server_wait(s, TIMEOUT_MS) == 1 &&
		  log_wait(s, "no unencrypted PEM private key", 1, 0),
	      "TLS key file without a PEM key: exit 1, says why");
	check(run_quick(cert_only) == 1 && quick_log_has("--tls-cert without --tls-key"),
	      "--tls-cert without --tls-key: exit 1, says why");
	check(run_quick(key_only) == 1 && quick_log_has("--tls-key without --tls-cert"),
	      "--tls-key without --tls-cert: exit 1, says why");
	check(run_quick(no_cert) == 1 && quick_log_has("TLS certificate file /nonexistent/cert"),
	      "--tls-cert of a missing file: exit 1, says why");
}

static void test_tls(struct server *s)
{
	snprintf(tls_cert, sizeof(tls_cert), "%s/tls.crt", tmpdir);
	snprintf(tls_key, sizeof(tls_key), "%s/tls.key", tmpdir);
	if (!check(make_cert(), "openssl req: a self-signed EC certificate for IP 127.0.0.1"))
		return;
	tls_ctx = client_ctx(0);
	if (!check(tls_ctx != NULL, "TLS client context trusting that certificate alone"))
		return;
	test_tls_server(s);
	if (failed)
		server_dump_log(s);
	SSL_CTX_free(tls_ctx);
	tls_ctx = NULL;
	test_tls_options(s);
}

static void cleanup(void)
{
	static const char *const names[] = {
	    "key",	 "main.log",	    "restart.log",    "bad-key.log",
	    "quick.log", "max-clients.log", "tls.crt",	      "tls.key",
	    "tls.log",	 "tls-bad-key.log", "tls-not-pem.log"};
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
	test_tls(&s);
	printf("%d passed, %d failed\n", passed, failed);
	cleanup();
	return failed ? 1 : 0;
}
