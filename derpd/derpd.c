/* SPDX-License-Identifier: MIT */
/*
 * meshgate-derpd: a DERP relay (Tailscale's Designated Encrypted Relay for
 * Packets, protocol version 2; see common/derp.h). Nodes that cannot reach
 * each other over UDP each keep a TCP connection here and send WireGuard
 * datagrams addressed by the destination's public key; the relay forwards
 * them to the connection registered under that key. It sees only
 * ciphertext.
 *
 * One thread, one epoll loop over non-blocking sockets: handle a batch of
 * events, then write what they queued (derpd_flush), then free what they
 * closed (derpd_reap). Two timer lists, each with a single timeout so that
 * appending keeps them sorted: handshakes (10 s for the TLS handshake and
 * the HTTP head, 10 s for ClientInfo) and clients (a KeepAlive every 60 s). Counters go to stderr
 * on SIGUSR1 and at exit (SIGTERM, SIGINT), and to GET /metrics.
 *
 * With --tls-cert and --tls-key every listener speaks HTTPS only (as
 * Tailscale's derper does on 443): the same protocol inside TLS 1.2 or
 * later; without them, plain HTTP.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "derpd.h"
#include "keys.h"
#include "log.h"
#include "signals.h"

#define PROG		    "meshgate-derpd"
#define EVENTS		    256
#define MAX_CLIENTS_DEFAULT 10000u
#define MAX_CLIENTS_LIMIT   1000000u

/* Set by the signal handlers, the only state outside struct derpd. */
static volatile sig_atomic_t stop, dump;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump = 1;
	else
		stop = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The key file. */

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new private key, clamped as `wg genkey` does, in a new 0600 file. */
static int create_key(const char *path, uint8_t priv[32])
{
	char text[MG_KEY_B64_LEN + 2];
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	randombytes_buf(priv, MG_KEY_LEN);
	priv[0] &= 248;
	priv[31] = (uint8_t)((priv[31] & 127) | 64);
	mg_key_to_base64(priv, text);
	strcat(text, "\n");
	/* fchmod: whatever the umask, the file must be 0600 to be loaded. */
	if (fchmod(fd, 0600) < 0)
		err = -errno;
	if (!err)
		err = write_all(fd, text, strlen(text));
	if (!err && fsync(fd) < 0)
		err = -errno;
	sodium_memzero(text, sizeof(text));
	close(fd);
	if (err) {
		unlink(path);
		sodium_memzero(priv, MG_KEY_LEN);
	}
	return err;
}

/* Load the key file, or create it if there is none. */
static int load_key(const char *path, uint8_t priv[32])
{
	char err[512];
	int r = mg_key_load_file(path, priv, err, sizeof(err));

	if (r == -ENOENT) {
		r = create_key(path, priv);
		if (r == 0) {
			mg_log(LOG_INFO, "generated a new server key in %s", path);
			return 0;
		}
		if (r != -EEXIST) {
			mg_log(LOG_ERR, "cannot create key file %s: %s", path, strerror(-r));
			return -1;
		}
		/* Created by someone else meanwhile: use theirs. */
		r = mg_key_load_file(path, priv, err, sizeof(err));
	}
	if (r < 0) {
		mg_log(LOG_ERR, "server key: %s", err);
		return -1;
	}
	return 0;
}

/* Listeners. */

static int open_listener(const struct mg_sockaddr *a)
{
	struct sockaddr_storage ss;
	socklen_t len = mg_sockaddr_to_sys(a, &ss);
	int one = 1, fd, err;

	fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (a->family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

static int add_listener(struct derpd *d, const struct mg_sockaddr *a)
{
	char buf[MG_SOCKADDR_STRLEN];
	struct listener *l = &d->ls[d->n_ls];
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};

	mg_sockaddr_fmt(a, buf, sizeof(buf));
	l->kind = EV_LISTENER;
	l->addr = *a;
	l->fd = open_listener(a);
	if (l->fd < 0) {
		mg_log(LOG_ERR, "cannot listen on %s: %s", buf, strerror(errno));
		return -1;
	}
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0) {
		mg_log(LOG_ERR, "epoll_ctl: %s", strerror(errno));
		close(l->fd);
		return -1;
	}
	d->n_ls++;
	mg_log(LOG_INFO, "listening on %s", buf);
	return 0;
}

/* As many descriptors as the hard limit allows; warn if that is too few. */
static void raise_fd_limit(const struct derpd *d)
{
	rlim_t need = (rlim_t)d->max_conns + DERPD_MAX_LISTEN + 16;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		mg_log(LOG_WARNING,
		       "open file limit %llu is below the %llu that --max-clients %u needs "
		       "(ulimit -n)",
		       (unsigned long long)rl.rlim_cur, (unsigned long long)need, d->max_clients);
}

/* The loop. */

static void run_timers(struct derpd *d)
{
	while (!dlist_empty(&d->handshakes)) {
		struct conn *c = dlist_entry(d->handshakes.next, struct conn, timer);

		if (c->deadline > d->now)
			break;
		if (c->state == CONN_LINGER)
			derpd_conn_close(d, c, DERPD_UNCOUNTED, "answer not acknowledged");
		else
			derpd_conn_close(d, c, REJECT_TIMEOUT,
					 c->state == CONN_TLS	 ? "no TLS handshake in time"
					 : c->state == CONN_HTTP ? "no request in time"
								 : "no ClientInfo in time");
	}
	while (!dlist_empty(&d->clients)) {
		struct conn *c = dlist_entry(d->clients.next, struct conn, timer);

		if (c->deadline > d->now)
			break;
		derpd_send_keepalive(d, c);
		derpd_conn_rearm(d, c, &d->clients, DERPD_KEEPALIVE_MS);
	}
}

/* Milliseconds until the first timer, -1 if none. */
static int next_timeout(const struct derpd *d)
{
	const struct dlist *lists[] = {&d->handshakes, &d->clients};
	uint64_t next = UINT64_MAX;

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		if (!dlist_empty(lists[i])) {
			const struct conn *c = dlist_entry(lists[i]->next, struct conn, timer);

			if (c->deadline < next)
				next = c->deadline;
		}
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= d->now ? 0 : (int)(next - d->now);
}

static void on_event(struct derpd *d, const struct epoll_event *e)
{
	struct conn *c = e->data.ptr;

	if (*(const int *)e->data.ptr == EV_LISTENER) {
		derpd_accept(d, e->data.ptr);
		return;
	}
	if (c->state != CONN_DEAD && (e->events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		derpd_conn_readable(d, c);
	if (c->state != CONN_DEAD && (e->events & EPOLLOUT))
		derpd_conn_writable(d, c);
}

/*
 * Signals are blocked except inside epoll_pwait, so a SIGTERM between the
 * check of `stop` and the wait cannot be lost.
 */
static int run(struct derpd *d, const sigset_t *wait_mask)
{
	struct epoll_event ev[EVENTS];

	while (!stop) {
		int n;

		if (dump) {
			dump = 0;
			derpd_counters_print(d);
		}
		d->now = now_ms();
		run_timers(d);
		derpd_flush(d);
		derpd_reap(d);
		/* Input OpenSSL holds is read without waiting for more. */
		n = epoll_pwait(d->epfd, ev, EVENTS,
				dlist_empty(&d->tls_pending) ? next_timeout(d) : 0, wait_mask);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			mg_log(LOG_ERR, "epoll_pwait: %s", strerror(errno));
			return -1;
		}
		d->now = now_ms();
		for (int i = 0; i < n; i++)
			on_event(d, &ev[i]);
		derpd_tls_pending(d);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG
		" -k KEYFILE [--listen ADDR:PORT]... [--tls-cert PEM --tls-key PEM]\n"
		"       [--max-clients N] [--verbose]\n"
		"  -k, --key-file PATH     the server's private key (base64, as wg genkey);\n"
		"                          created (mode 0600) if missing; must be 0600 or 0400\n"
		"  -l, --listen ADDR:PORT  TCP address to serve on, e.g. 0.0.0.0:3340 or\n"
		"                          [::]:3340; repeatable (default 0.0.0.0:3340)\n"
		"      --tls-cert PATH     serve HTTPS only (TLS 1.2 or later) on every\n"
		"                          listener, with this PEM certificate (chain: the\n"
		"                          server's first), e.g. on 0.0.0.0:443; needs --tls-key\n"
		"      --tls-key PATH      its PEM private key, unencrypted; must not be\n"
		"                          accessible by group or others (0600 or 0400)\n"
		"                          (without these two: plain HTTP only)\n"
		"      --max-clients N     clients connected at once (default %u)\n"
		"  -v, --verbose           log every frame and every drop\n",
		MAX_CLIENTS_DEFAULT);
}

struct options {
	struct mg_sockaddr listen[DERPD_MAX_LISTEN];
	int n_listen;
	const char *key_file;
	const char *tls_cert, *tls_key;
	unsigned max_clients;
	bool verbose;
};

static int parse_max_clients(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < 1 || v > MAX_CLIENTS_LIMIT) {
		fprintf(stderr, PROG ": bad --max-clients `%s' (want 1-%u)\n", s,
			MAX_CLIENTS_LIMIT);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int add_listen_opt(struct options *o, const char *s)
{
	if (o->n_listen == DERPD_MAX_LISTEN) {
		fprintf(stderr, PROG ": at most %d --listen addresses\n", DERPD_MAX_LISTEN);
		return -1;
	}
	if (mg_sockaddr_parse(s, &o->listen[o->n_listen]) < 0) {
		fprintf(stderr,
			PROG ": bad --listen address `%s' (want ADDR:PORT or [V6ADDR]:PORT, port "
			     "1-65535)\n",
			s);
		return -1;
	}
	o->n_listen++;
	return 0;
}

/* 0 to run; 1 to exit with status 1; 2 to exit with 0 (--help). */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"key-file", required_argument, NULL, 'k'},
					     {"max-clients", required_argument, NULL, 'm'},
					     {"tls-cert", required_argument, NULL, 'C'},
					     {"tls-key", required_argument, NULL, 'K'},
					     {"verbose", no_argument, NULL, 'v'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	int c;

	*o = (struct options){.max_clients = MAX_CLIENTS_DEFAULT};
	while ((c = getopt_long(argc, argv, "l:k:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (add_listen_opt(o, optarg) < 0)
				return 1;
			break;
		case 'k':
			o->key_file = optarg;
			break;
		case 'm':
			if (parse_max_clients(optarg, &o->max_clients) < 0)
				return 1;
			break;
		case 'C':
			o->tls_cert = optarg;
			break;
		case 'K':
			o->tls_key = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 2;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument `%s'\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	if (!o->key_file) {
		fprintf(stderr, PROG ": a key file is required (-k KEYFILE)\n");
		usage(stderr);
		return 1;
	}
	if (!o->tls_cert != !o->tls_key) {
		fprintf(stderr, PROG ": --tls-cert and --tls-key go together (%s without %s)\n",
			o->tls_cert ? "--tls-cert" : "--tls-key",
			o->tls_cert ? "--tls-key" : "--tls-cert");
		usage(stderr);
		return 1;
	}
	if (o->n_listen == 0)
		o->listen[o->n_listen++] =
		    (struct mg_sockaddr){.family = AF_INET, .port = DERPD_PORT};
	return 0;
}

static int setup(struct derpd *d, const struct options *o)
{
	char b64[MG_KEY_B64_LEN + 1];

	d->epfd = -1;
	d->reserve_fd = -1;
	dlist_init(&d->handshakes);
	dlist_init(&d->clients);
	dlist_init(&d->tls_pending);
	if (load_key(o->key_file, d->priv) < 0)
		return -1;
	crypto_scalarmult_base(d->pub, d->priv);
	mg_key_to_base64(d->pub, b64);
	mg_log(LOG_INFO, "server public key %s", b64);
	if (o->tls_cert) {
		d->tls = derpd_tls_ctx(o->tls_cert, o->tls_key);
		if (!d->tls)
			return -1;
	} else {
		mg_log(LOG_INFO, "TLS off: plain HTTP (no --tls-cert)");
	}

	d->max_clients = o->max_clients;
	/* Room for handshakes beyond the clients, so that a client can
	 * reconnect (and replace its old connection) when the relay is full. */
	d->max_conns = o->max_clients + (o->max_clients / 8 > 64 ? o->max_clients / 8 : 64);
	if (derpd_registry_init(&d->reg, o->max_clients) < 0) {
		mg_log(LOG_ERR, "out of memory");
		return -1;
	}
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0) {
		mg_log(LOG_ERR, "epoll_create1: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < o->n_listen; i++)
		if (add_listener(d, &o->listen[i]) < 0)
			return -1;
	d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	raise_fd_limit(d);
	return 0;
}

static void teardown(struct derpd *d)
{
	derpd_close_all(d);
	for (int i = 0; i < d->n_ls; i++)
		close(d->ls[i].fd);
	if (d->reserve_fd >= 0)
		close(d->reserve_fd);
	if (d->epfd >= 0)
		close(d->epfd);
	derpd_registry_free(&d->reg);
	SSL_CTX_free(d->tls); /* after the connections' SSL_free */
	d->tls = NULL;
	sodium_memzero(d->priv, sizeof(d->priv));
}

int main(int argc, char **argv)
{
	static struct derpd srv; /* 256 KiB of read buffer: not on the stack */
	struct options o;
	sigset_t wait_mask;
	int ret;

	ret = parse_options(argc, argv, &o);
	if (ret)
		return ret == 2 ? 0 : 1;
	mg_log_init(PROG, o.verbose ? LOG_DEBUG : LOG_INFO);
	if (sodium_init() < 0) {
		mg_log(LOG_ERR, "libsodium failed to initialize");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	mg_signals_setup(on_signal, &wait_mask);
	if (setup(&srv, &o) < 0) {
		teardown(&srv);
		return 1;
	}
	ret = run(&srv, &wait_mask);
	derpd_counters_print(&srv);
	teardown(&srv);
	return ret < 0 ? 1 : 0;
}
