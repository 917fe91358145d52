/* SPDX-License-Identifier: MIT */
/*
 * DERP relays: when UDP between two nodes fails, WireGuard messages travel
 * through a relay over TCP, addressed by the peer's public key (common/derp.h
 * has the protocol).
 *
 * This node keeps a connection to its home region's relay (control.derp_home)
 * at all times: that is where peers reach it, and it advertises the region to
 * the coordination server as the DERP endpoint 127.3.3.40:REGION. To send to
 * a peer homed elsewhere it connects to that region on demand and closes the
 * connection after a minute without use.
 *
 * The regions are control.derp_regions, or else those of the coordination
 * server's DERP map (cp_derp_set_regions, on every full map): a new map
 * keeps the connections of regions that did not change. Without a fixed
 * derp_home the home is the region of least latency (probe_tick). A region
 * given by name is resolved with getaddrinfo_a, polled from the tick.
 *
 * A peer whose endpoint is a DERP one has its data messages sealed by the
 * dataplane as usual and handed here (MG_MSG_DERP_TX); relayed data
 * messages go back to the dataplane (MG_MSG_DERP_RX), which decrypts them
 * as if they had come from that endpoint, so a peer that talks to us
 * through the relay roams to it. Handshake messages are control's own work
 * either way. Which path a handshake tries is handshake.c's choice.
 *
 * A region with tls = true is reached over HTTPS, like Tailscale's derpers:
 * a TLS handshake (1.2 at least, the certificate always verified against
 * ca_file or the system's CAs, for server_name or else the server's IP)
 * between TCP connect and the upgrade request, then every byte through
 * SSL_read/SSL_write. A pinned public_key is checked on top of it.
 *
 * Everything is non-blocking and runs in the control loop: poll() tells
 * cp_derp_service what is ready, cp_derp_tick does connects, timeouts and
 * idle closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "addr.h"
#include "cp.h"
#include "derp.h"
#include "disco.h"
#include "dns.h"
#include "keys.h"
#include "log.h"
#include "wg_messages.h"

#define NS		  1000000000ull
#define DERP_HANDSHAKE_NS (10 * NS)  /* connect through ServerInfo */
#define DERP_DEAD_NS	  (150 * NS) /* the relay sends a keepalive every 60 s */
#define DERP_IDLE_NS	  (60 * NS)  /* a region not our home, unused this long, is closed */
#define DERP_BACKOFF_MIN  (1 * NS)
#define DERP_BACKOFF_MAX  (30 * NS)
#define DERP_OUT_MAX	  (256u * 1024) /* bytes waiting for the socket */
#define DERP_IN_MAX	  (MG_DERP_HDR_LEN + MG_DERP_MAX_BODY)
#define DERP_READS	  16 /* recv() calls per service, so one relay cannot hog the loop */
#define DERP_ADDRS	  4  /* addresses of a region's host name tried per connection */
/* With more addresses to try, one that does not answer (a broken IPv6 path)
 * is given up after this long, not after the whole connection deadline. */
#define DERP_ADDR_NS	   (2 * NS)
#define DERP_PROBE_ADDR_NS (NS / 2)
/* Latency probes (a TCP connect to each region's relay) when the home region
 * is not configured: a round at start, then every 30 s; the home moves to a
 * region under 2/3 of its latency and 10 ms faster (Tailscale's rule). */
#define DERP_PROBE_PERIOD_NS  (30 * NS)
#define DERP_PROBE_TIMEOUT_NS (2 * NS)
#define DERP_PROBE_SAMPLES    3 /* a region's latency: the least of its last rounds */

enum conn_state {
	C_IDLE,	       /* no socket */
	C_RESOLVING,   /* the host name being resolved (regions given by name) */
	C_CONNECTING,  /* TCP connect in progress */
	C_TLS,	       /* TLS handshake in progress (tls regions) */
	C_HTTP,	       /* upgrade request sent, waiting for "101" */
	C_SERVER_KEY,  /* waiting for ServerKey */
	C_SERVER_INFO, /* ClientInfo sent, waiting for ServerInfo */
	C_READY,
};

static const char *const state_names[] = {"idle", "resolving",	"connecting",  "tls",
					  "http", "server-key", "server-info", "ready"};

struct derp_conn {
	const struct mg_derp_region_conf *rc;
	bool home;
	int fd;
	struct cp_dns *dns;	 /* C_RESOLVING */
	struct mg_sockaddr addr; /* connected to: rc->server, or what rc->host resolved to */
	struct mg_sockaddr alt[DERP_ADDRS]; /* rc->host's other addresses, tried in turn */
	unsigned n_alt;
	/* The latency probe: a TCP connect in flight (after resolving the
	 * host), and the connect times of the last rounds (0: failed). */
	int pr_fd;
	struct cp_dns *pr_dns;
	uint64_t pr_start_ns;
	bool pr_pending;
	struct mg_sockaddr pr_alt[DERP_ADDRS]; /* the host's next addresses */
	unsigned pr_n_alt;
	uint64_t pr_rtt[DERP_PROBE_SAMPLES];
	unsigned pr_k;
	enum conn_state st;
	uint8_t server_pub[32];
	bool http_key;	     /* the 101 response named the server's key (server_pub) */
	uint8_t our_pub[32]; /* the node key this connection proved */
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_off;
	uint64_t state_ns, last_rx_ns, last_used_ns, retry_ns, backoff_ns;
	bool failed_logged;
	/* TLS (rc->tls): the region's context, the connection's session and
	 * what the TLS layer waits for: the handshake (POLLIN or POLLOUT), a
	 * read that has to write, a write that has to read. */
	SSL_CTX *ctx;
	SSL *ssl;
	short hs_events;
	bool read_wants_write, write_wants_read;
	bool tls_fatal; /* no close_notify after a fatal TLS error */
	char tls_why[192];
};

/* The regions: control.derp_regions, or else the coordination server's
 * map (cp_derp_set_regions), copied here; c[i].rc is &rc[i]. */
struct cp_derp {
	struct derp_conn c[MG_MAX_DERP_REGIONS];
	struct mg_derp_region_conf rc[MG_MAX_DERP_REGIONS];
	int n;
	uint16_t home;	   /* the home region's id */
	bool auto_home;	   /* not configured: chosen by latency */
	bool probing;	   /* a round of probes in flight */
	uint64_t probe_ns; /* when the round started, or the next one starts */
};

/* How long ago t was; 0 if t is later than now (a send stamps times with
 * cp_now(), and a tick may run with a now taken earlier in the loop). */
static uint64_t age(uint64_t now, uint64_t t)
{
	return now > t ? now - t : 0;
}

static void set_state(struct derp_conn *c, enum conn_state st, uint64_t now)
{
	c->st = st;
	c->state_ns = now;
}

static void dns_abandon(struct derp_conn *c)
{
	cp_dns_release(c->dns);
	c->dns = NULL;
}

/* "host:port" or the numeric address, for log lines. */
static const char *region_addr(const struct derp_conn *c, char *buf, size_t len)
{
	return mg_hostport_fmt(&c->rc->server, c->rc->host, buf, len);
}

/* What a TLS certificate must name: server_name, else the host name the
 * region was given by; "" for the server's IP address. */
static const char *tls_name(const struct mg_derp_region_conf *rc)
{
	return rc->server_name[0] ? rc->server_name : rc->host;
}

static void conn_close(struct derp_conn *c, uint64_t now)
{
	dns_abandon(c);
	if (c->ssl) {
		/* A close_notify, as far as the socket takes it at once. */
		if (!c->tls_fatal && SSL_is_init_finished(c->ssl)) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
		}
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	c->hs_events = 0;
	c->read_wants_write = c->write_wants_read = c->tls_fatal = false;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_len = c->out_len = c->out_off = 0;
	c->http_key = false;
	set_state(c, C_IDLE, now);
}

static uint64_t latency(const struct derp_conn *c);

/* Connections up, and what d shows of the regions. */
static void count_ready(struct cp_device *d)
{
	uint32_t n = 0;

	d->derp_home_up = false;
	d->derp_home_region = d->derp ? d->derp->home : 0;
	d->derp_n_regions = d->derp ? d->derp->n : 0;
	for (int i = 0; d->derp && i < d->derp->n; i++) {
		d->derp_region[i] = (uint16_t)d->derp->rc[i].id;
		d->derp_latency_ns[i] = latency(&d->derp->c[i]);
		if (d->derp->c[i].st == C_READY) {
			n++;
			d->derp_home_up |= d->derp->c[i].home;
		}
	}
	d->derp_connected = n;
}

/* Give up on the connection; try again after a back-off that doubles up to
 * DERP_BACKOFF_MAX. */
static void conn_fail(struct cp_device *d, struct derp_conn *c, uint64_t now, const char *why)
{
	char addr[300];

	if (!c->failed_logged || c->st == C_READY)
		mg_log(LOG_WARNING, "DERP region %u (%s): %s in state %s; retrying in %llu s",
		       c->rc->id, region_addr(c, addr, sizeof(addr)), why, state_names[c->st],
		       (unsigned long long)(c->backoff_ns / NS));
	c->failed_logged = true;
	conn_close(c, now);
	c->retry_ns = now + c->backoff_ns;
	c->backoff_ns = c->backoff_ns * 2 > DERP_BACKOFF_MAX ? DERP_BACKOFF_MAX : c->backoff_ns * 2;
	count_ready(d);
}

/* Queue bytes for the socket; false when they do not fit. */
static bool out_put(struct derp_conn *c, const void *p, size_t n)
{
	if (c->out_off && c->out_len + n > DERP_OUT_MAX) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + n > DERP_OUT_MAX)
		return false;
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return true;
}

/* Before a TLS call: tls_error tells from errno and the error queue what
 * went wrong, so neither may hold an earlier call's leftovers. */
static void tls_clear(void)
{
	ERR_clear_error();
	errno = 0;
}

/*
 * Why a TLS call (SSL_connect/read/write returning ret) failed, in
 * c->tls_why; -ECONNRESET when the relay closed, else -EPROTO. The
 * connection can only be closed afterwards.
 */
static int tls_error(struct derp_conn *c, int ret)
{
	int sys = errno;
	int e = SSL_get_error(c->ssl, ret);
	unsigned long err = ERR_peek_last_error();
	long vr = SSL_get_verify_result(c->ssl);

	c->tls_fatal = e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL;
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !err && !sys) ||
	    (e == SSL_ERROR_SSL && ERR_GET_LIB(err) == ERR_LIB_SSL &&
	     ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		snprintf(c->tls_why, sizeof(c->tls_why), "relay closed the connection");
		ERR_clear_error();
		return -ECONNRESET;
	}
	if (vr != X509_V_OK) {
		snprintf(c->tls_why, sizeof(c->tls_why), "TLS certificate verification failed: %s",
			 X509_verify_cert_error_string(vr));
	} else if (e == SSL_ERROR_SYSCALL && !err) {
		snprintf(c->tls_why, sizeof(c->tls_why), "TLS: %s", strerror(sys));
	} else if (err) {
		char buf[160];
		ERR_error_string_n(err, buf, sizeof(buf));
		snprintf(c->tls_why, sizeof(c->tls_why), "TLS: %s", buf);
	} else {
		snprintf(c->tls_why, sizeof(c->tls_why), "TLS error %d", e);
	}
	ERR_clear_error();
	return -EPROTO;
}

/* The reason for conn_fail after out_flush returned ret < 0. */
static const char *io_why(const struct derp_conn *c, int ret)
{
	return c->ssl && c->tls_why[0] ? c->tls_why : strerror(-ret);
}

/* out_flush on a TLS connection. */
static int tls_flush(struct derp_conn *c)
{
	c->write_wants_read = false;
	while (c->out_off < c->out_len) {
		size_t n = c->out_len - c->out_off;
		int k;

		tls_clear();
		k = SSL_write(c->ssl, c->out + c->out_off, n > INT_MAX ? INT_MAX : (int)n);
		if (k > 0) {
			c->out_off += (size_t)k;
			continue;
		}
		switch (SSL_get_error(c->ssl, k)) {
		case SSL_ERROR_WANT_WRITE:
			return 0;
		case SSL_ERROR_WANT_READ:
			c->write_wants_read = true;
			return 0;
		default:
			return tls_error(c, k);
		}
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Write what is queued, as far as the socket takes it. */
static int out_flush(struct derp_conn *c)
{
	if (c->ssl)
		return tls_flush(c);
	while (c->out_off < c->out_len) {
		ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c->out_off += (size_t)k;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

static void conn_connect(struct cp_device *d, struct derp_conn *c, uint64_t now);

/* The TCP connect failed: the host name's next address, or give up. */
static void connect_failed(struct cp_device *d, struct derp_conn *c, uint64_t now, int err)
{
	char a[MG_SOCKADDR_STRLEN];

	if (!c->n_alt) {
		conn_fail(d, c, now, strerror(err));
		return;
	}
	mg_log(LOG_INFO, "DERP region %u: %s: %s; trying the next address", c->rc->id,
	       mg_sockaddr_fmt(&c->addr, a, sizeof(a)), strerror(err));
	close(c->fd);
	c->fd = -1;
	c->addr = c->alt[0];
	c->n_alt--;
	memmove(c->alt, c->alt + 1, c->n_alt * sizeof(c->alt[0]));
	conn_connect(d, c, now);
}

/* The TCP connect to c->addr. */
static void conn_connect(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	struct sockaddr_storage ss;
	socklen_t sl = mg_sockaddr_to_sys(&c->addr, &ss);
	int one = 1;

	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (c->fd < 0) {
		conn_fail(d, c, now, strerror(errno));
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	memcpy(c->our_pub, d->local.public_key, 32);
	c->tls_why[0] = '\0';
	set_state(c, C_CONNECTING, now);
	if (connect(c->fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS)
		connect_failed(d, c, now, errno);
}

/* A region given by name is resolved anew for every connection (its
 * addresses may move); its addresses are tried in glibc's order until a
 * TCP connect succeeds. */
static void conn_start(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	int err;

	/* The key this connection will prove (the tick reconnects when it changes). */
	memcpy(c->our_pub, d->local.public_key, 32);
	if (!c->rc->host[0]) {
		c->addr = c->rc->server;
		c->n_alt = 0;
		conn_connect(d, c, now);
		return;
	}
	if (!(c->dns = cp_dns_start(c->rc->host, SOCK_STREAM, &err))) {
		conn_fail(d, c, now, gai_strerror(err));
		return;
	}
	set_state(c, C_RESOLVING, now);
}

/* C_RESOLVING: connect once the name has an address. */
static void resolve_check(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	int ret;
	char why[320];

	c->n_alt = cp_dns_addrs(c->dns, c->rc->server.port, c->alt, DERP_ADDRS, &ret);
	if (ret == EAI_INPROGRESS)
		return;
	dns_abandon(c); /* done: freed */
	if (ret) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", c->rc->host, gai_strerror(ret));
		conn_fail(d, c, now, why);
		return;
	}
	c->addr = c->alt[0];
	c->n_alt--;
	memmove(c->alt, c->alt + 1, c->n_alt * sizeof(c->alt[0]));
	conn_connect(d, c, now);
}

/* Queue the upgrade request. The Host header names server_name when set
 * (with the port unless it is 443), else the server's address. */
static void send_upgrade(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	char req[512], host[300];
	const struct mg_derp_region_conf *rc = c->rc;
	size_t n;

	const char *name = tls_name(rc);

	if (name[0] && rc->server.port != 443)
		snprintf(host, sizeof(host), "%s:%u", name, rc->server.port);
	else if (name[0])
		snprintf(host, sizeof(host), "%s", name);
	else
		mg_sockaddr_fmt(&c->addr, host, sizeof(host));
	n = mg_derp_http_request(req, sizeof(req), host, false);
	if (!n && name[0]) /* name and port over the 255 a Host may have */
		n = mg_derp_http_request(req, sizeof(req), name, false);
	if (!n || !out_put(c, req, n)) {
		conn_fail(d, c, now, "cannot build the upgrade request");
		return;
	}
	set_state(c, C_HTTP, now);
}

/* Drive the TLS handshake; once done, ask for the upgrade. */
static void tls_handshake(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	int ret;

	tls_clear();
	ret = SSL_connect(c->ssl);
	if (ret == 1) {
		char who[MG_ADDR_STRLEN];
		c->hs_events = 0;
		mg_log(LOG_INFO, "DERP region %u: TLS (%s, %s), certificate verified for %s",
		       c->rc->id, SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
		       tls_name(c->rc)[0] ? tls_name(c->rc)
					  : mg_addr_fmt(&c->addr, who, sizeof(who)));
		send_upgrade(d, c, now);
		return;
	}
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		c->hs_events = POLLIN;
		return;
	case SSL_ERROR_WANT_WRITE:
		c->hs_events = POLLOUT;
		return;
	default:
		tls_error(c, ret);
		conn_fail(d, c, now, c->tls_why);
	}
}

/* The TLS session of a new connection: SNI and the name to check, or the
 * server's IP; then the handshake starts. */
static void tls_start(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	const struct mg_derp_region_conf *rc = c->rc;
	char ip[MG_ADDR_STRLEN];
	bool ok;

	ERR_clear_error();
	if (!(c->ssl = SSL_new(c->ctx)) || !SSL_set_fd(c->ssl, c->fd)) {
		c->tls_fatal = true;
		conn_fail(d, c, now, "cannot make a TLS session");
		return;
	}
	SSL_set_connect_state(c->ssl);
	if (tls_name(rc)[0]) {
		ok = SSL_set_tlsext_host_name(c->ssl, tls_name(rc)) &&
		     SSL_set1_host(c->ssl, tls_name(rc));
		/* A wildcard only as a whole leftmost label, as Go has it. */
		SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	} else {
		ok = mg_addr_fmt(&c->addr, ip, sizeof(ip)) &&
		     X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), ip);
	}
	if (!ok) {
		c->tls_fatal = true;
		conn_fail(d, c, now, "cannot set the TLS name to verify");
		return;
	}
	set_state(c, C_TLS, now);
	tls_handshake(d, c, now);
}

/* TCP is up: TLS first for a tls region, then ask for the upgrade. */
static void on_connected(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		connect_failed(d, c, now, err);
		return;
	}
	if (c->ctx)
		tls_start(d, c, now);
	else
		send_upgrade(d, c, now);
}

static void send_frame_or_fail(struct cp_device *d, struct derp_conn *c, const uint8_t *f, size_t n,
			       uint64_t now)
{
	if (!n || !out_put(c, f, n))
		conn_fail(d, c, now, "output queue full");
}

/* The node key rotated while the connection was being set up: start over
 * with the new one (not a failure: no back-off). */
static bool key_changed(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	if (!memcmp(c->our_pub, d->local.public_key, 32))
		return false;
	conn_close(c, now);
	conn_start(d, c, now);
	return true;
}

/* ServerKey: check it against the 101's and the pinned key, then prove our
 * key with ClientInfo. */
static void on_server_key(struct cp_device *d, struct derp_conn *c, const uint8_t *body, size_t n,
			  uint64_t now)
{
	uint8_t key[32], nonce[MG_DERP_NONCE_LEN];
	uint8_t f[MG_DERP_HDR_LEN + MG_DERP_KEY_LEN + MG_DERP_NONCE_LEN + MG_DERP_BOX_MAC + 64];

	if (key_changed(d, c, now))
		return;
	if (mg_derp_parse_server_key(body, n, key) != MG_DERP_OK) {
		conn_fail(d, c, now, "bad ServerKey frame");
		return;
	}
	if ((c->http_key && memcmp(key, c->server_pub, 32)) ||
	    (c->rc->pinned && memcmp(key, c->rc->public_key, 32))) {
		conn_fail(d, c, now, "relay key is not the configured public_key");
		return;
	}
	memcpy(c->server_pub, key, 32);
	randombytes_buf(nonce, sizeof(nonce));
	size_t len = mg_derp_build_client_info(f, sizeof(f), d->local.public_key,
					       d->local.private_key, key, nonce, "{\"version\":2}");
	send_frame_or_fail(d, c, f, len, now);
	if (c->st != C_IDLE)
		set_state(c, C_SERVER_INFO, now);
}

static void on_server_info(struct cp_device *d, struct derp_conn *c, const uint8_t *body, size_t n,
			   uint64_t now)
{
	char json[256], b64[MG_KEY_B64_LEN + 1];

	if (key_changed(d, c, now))
		return;
	if (mg_derp_parse_server_info(body, n, d->local.private_key, c->server_pub, json,
				      sizeof(json)) != MG_DERP_OK) {
		conn_fail(d, c, now, "ServerInfo does not open with our key");
		return;
	}
	set_state(c, C_READY, now);
	c->backoff_ns = DERP_BACKOFF_MIN;
	c->failed_logged = false;
	if (c->home) {
		uint8_t f[MG_DERP_HDR_LEN + 1];
		send_frame_or_fail(d, c, f, mg_derp_build_note_preferred(f, sizeof(f), true), now);
	}
	mg_key_to_base64(c->server_pub, b64);
	mg_log(LOG_INFO, "DERP region %u%s: connected (relay key %s)", c->rc->id,
	       c->home ? " (home)" : "", b64);
	d->derp_connects++;
	count_ready(d);
}

static void drop(struct cp_device *d, enum cp_derp_drop why)
{
	d->derp_drops[why]++;
}

/*
 * A packet the relay brought from src. Only from a peer of ours: data
 * messages to the dataplane, handshake messages to handshake.c with
 * CP_PORT_DERP and the source key after the data, so that a cookie reply
 * finds its way back.
 */
static void on_packet(struct cp_device *d, struct derp_conn *c, const uint8_t src[32],
		      const uint8_t *pkt, size_t len)
{
	static struct mg_msg m;
	const struct mg_msg *mp = &m;

	if (!cp_peer_find(d, src)) {
		drop(d, CP_DERP_DROP_UNKNOWN_PEER);
		return;
	}
	if (mg_disco_is(pkt, len)) {
		struct mg_sockaddr from = mg_sockaddr_derp(c->rc->id);
		cp_disco_rx(d, pkt, len, &from, src);
		d->derp_rx++;
		d->derp_rx_bytes += len;
		return;
	}
	if (len < 4 || pkt[1] || pkt[2] || pkt[3]) {
		drop(d, CP_DERP_DROP_BAD_PACKET);
		return;
	}
	m.hdr = (struct mg_msg_hdr){.len = (uint16_t)len, .ep = mg_sockaddr_derp(c->rc->id)};
	switch (pkt[0]) {
	case WG_MSG_DATA:
		if (len < WG_DATA_OVERHEAD || len > MG_MSG_MAX_DATA) {
			drop(d, CP_DERP_DROP_BAD_PACKET);
			return;
		}
		m.hdr.type = MG_MSG_DERP_RX;
		memcpy(m.data, pkt, len);
		if (cp_dp_send(d, &m)) {
			drop(d, CP_DERP_DROP_RING_FULL);
			return;
		}
		break;
	case WG_MSG_HANDSHAKE_INITIATION:
	case WG_MSG_HANDSHAKE_RESPONSE:
	case WG_MSG_HANDSHAKE_COOKIE:
		if (len !=
		    (pkt[0] == WG_MSG_HANDSHAKE_INITIATION ? sizeof(struct wg_message_initiation)
		     : pkt[0] == WG_MSG_HANDSHAKE_RESPONSE ? sizeof(struct wg_message_response)
							   : sizeof(struct wg_message_cookie))) {
			drop(d, CP_DERP_DROP_BAD_PACKET);
			return;
		}
		m.hdr.type = MG_MSG_RX_UDP;
		m.hdr.port = CP_PORT_DERP;
		memcpy(m.data, pkt, len);
		memcpy(m.data + len, src, 32);
		cp_hs_rx_burst(d, &mp, 1);
		break;
	default:
		drop(d, CP_DERP_DROP_BAD_PACKET);
		return;
	}
	d->derp_rx++;
	d->derp_rx_bytes += len;
}

static void on_frame(struct cp_device *d, struct derp_conn *c, uint8_t type, const uint8_t *body,
		     size_t n, uint64_t now)
{
	uint8_t key[32], data[8], f[MG_DERP_HDR_LEN + 8];
	const uint8_t *pkt;
	size_t len;
	uint8_t reason;

	if (c->st == C_SERVER_KEY) {
		if (type != MG_DERP_SERVER_KEY)
			conn_fail(d, c, now, "first frame is not ServerKey");
		else
			on_server_key(d, c, body, n, now);
		return;
	}
	if (c->st == C_SERVER_INFO) {
		if (type == MG_DERP_SERVER_INFO)
			on_server_info(d, c, body, n, now);
		else if (type != MG_DERP_KEEP_ALIVE)
			conn_fail(d, c, now, "ServerInfo expected");
		return;
	}
	switch (type) {
	case MG_DERP_RECV_PACKET:
		if (mg_derp_parse_packet(body, n, key, &pkt, &len) == MG_DERP_OK)
			on_packet(d, c, key, pkt, len);
		else
			drop(d, CP_DERP_DROP_PROTOCOL);
		break;
	case MG_DERP_PING:
		if (mg_derp_parse_ping(body, n, data) == MG_DERP_OK)
			send_frame_or_fail(
			    d, c, f, mg_derp_build_ping(f, sizeof(f), MG_DERP_PONG, data), now);
		break;
	case MG_DERP_PEER_GONE:
		if (mg_derp_parse_peer_gone(body, n, key, &reason) == MG_DERP_OK) {
			char b64[MG_KEY_B64_LEN + 1];
			mg_key_to_base64(key, b64);
			mg_log(LOG_DEBUG, "DERP region %u: peer %.8s... %s", c->rc->id, b64,
			       reason == MG_DERP_GONE_NOT_HERE ? "is not connected" : "left");
			d->derp_peer_gone++;
		}
		break;
	case MG_DERP_HEALTH:
		mg_log(LOG_WARNING, "DERP region %u: relay health: %.*s", c->rc->id,
		       (int)(n > 200 ? 200 : n), (const char *)body);
		break;
	case MG_DERP_RESTARTING:
		mg_log(LOG_INFO, "DERP region %u: relay restarting", c->rc->id);
		break;
	default: /* KeepAlive, PeerPresent and what a newer relay may send */
		break;
	}
}

/* Parse what arrived: the HTTP head, then whole frames. */
static void in_process(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	size_t off = 0;

	if (c->st == C_HTTP) {
		int status = 0;
		long h = mg_derp_http_parse_response((const char *)c->in, c->in_len, &status,
						     &c->http_key, c->server_pub);
		if (h < 0 || (h > 0 && status != 101)) {
			conn_fail(d, c, now,
				  h < 0 ? "bad HTTP response" : "relay refused the upgrade");
			return;
		}
		if (h == 0)
			return;
		off = (size_t)h;
		set_state(c, C_SERVER_KEY, now);
	}
	while (c->st >= C_SERVER_KEY && off < c->in_len) {
		uint8_t type;
		uint32_t blen;
		long fl =
		    mg_derp_frame(c->in + off, c->in_len - off, MG_DERP_MAX_BODY, &type, &blen);
		if (fl < 0) {
			conn_fail(d, c, now, "frame too large");
			return;
		}
		if (fl == 0)
			break;
		c->last_rx_ns = now;
		on_frame(d, c, type, c->in + off + MG_DERP_HDR_LEN, blen, now);
		off += (size_t)fl;
	}
	if (c->st < C_SERVER_KEY) /* failed, or started over: the buffer is gone */
		return;
	if (off) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

/*
 * conn_read on a TLS connection. Past DERP_READS it goes on while the TLS
 * layer holds bytes already taken from the socket (decrypted or not): poll
 * would not report them.
 */
static void tls_read(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	for (int i = 0; c->st >= C_HTTP && (i < DERP_READS || SSL_has_pending(c->ssl)); i++) {
		int k;

		if (c->in_len == DERP_IN_MAX) {
			conn_fail(d, c, now, "input buffer full");
			return;
		}
		tls_clear();
		k = SSL_read(c->ssl, c->in + c->in_len, (int)(DERP_IN_MAX - c->in_len));
		if (k <= 0) {
			int e = SSL_get_error(c->ssl, k);
			c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				tls_error(c, k);
				conn_fail(d, c, now, c->tls_why);
			}
			return;
		}
		c->read_wants_write = false;
		c->in_len += (size_t)k;
		in_process(d, c, now);
	}
}

static void conn_read(struct cp_device *d, struct derp_conn *c, uint64_t now)
{
	if (c->ssl) {
		tls_read(d, c, now);
		return;
	}
	for (int i = 0; i < DERP_READS && c->st >= C_HTTP; i++) {
		if (c->in_len == DERP_IN_MAX) {
			conn_fail(d, c, now, "input buffer full");
			return;
		}
		ssize_t k = recv(c->fd, c->in + c->in_len, DERP_IN_MAX - c->in_len, MSG_DONTWAIT);
		if (k == 0) {
			conn_fail(d, c, now, "relay closed the connection");
			return;
		}
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_fail(d, c, now, strerror(errno));
			return;
		}
		c->in_len += (size_t)k;
		in_process(d, c, now);
	}
}

static struct derp_conn *conn_of(struct cp_device *d, uint16_t region)
{
	for (int i = 0; d->derp && i < d->derp->n; i++)
		if (d->derp->c[i].rc->id == region)
			return &d->derp->c[i];
	return NULL;
}

int cp_derp_send(struct cp_device *d, uint16_t region, const uint8_t key[32], const void *pkt,
		 size_t len)
{
	uint8_t f[MG_DERP_HDR_LEN + MG_DERP_KEY_LEN + MG_MSG_MAX_DATA];
	struct derp_conn *c = conn_of(d, region);
	uint64_t now = cp_now();

	if (!c) {
		drop(d, CP_DERP_DROP_NO_REGION);
		return -ENOENT;
	}
	c->last_used_ns = now;
	if (c->st == C_IDLE && now >= c->retry_ns)
		conn_start(d, c, now);
	if (c->st != C_READY) {
		drop(d, CP_DERP_DROP_NOT_READY);
		return -EAGAIN;
	}
	size_t n = mg_derp_build_packet(f, sizeof(f), MG_DERP_SEND_PACKET, key, pkt, len);
	if (!n || !out_put(c, f, n)) {
		drop(d, CP_DERP_DROP_QUEUE_FULL);
		return -ENOBUFS;
	}
	if (c->out_len - c->out_off == n) { /* nothing was waiting: try at once */
		int ret = out_flush(c);
		if (ret) {
			conn_fail(d, c, now, io_why(c, ret));
			return ret;
		}
	}
	d->derp_tx++;
	d->derp_tx_bytes += len;
	return 0;
}

void cp_derp_dp_tx(struct cp_device *d, const struct mg_msg *m)
{
	struct cp_peer *p = m->hdr.peer < d->max_peers ? d->by_slot[m->hdr.peer] : NULL;

	if (!p || !mg_sockaddr_is_derp(&m->hdr.ep) || m->hdr.len > MG_MSG_MAX_DATA) {
		drop(d, CP_DERP_DROP_BAD_PACKET);
		return;
	}
	cp_derp_send(d, m->hdr.ep.port, p->noise.public_key, m->data, m->hdr.len);
}

struct mg_sockaddr cp_derp_home_endpoint(const struct cp_device *d)
{
	return d->derp ? mg_sockaddr_derp(d->derp->home) : (struct mg_sockaddr){0};
}

/* The last OpenSSL error, for a log line. */
static const char *ssl_err_str(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

/*
 * The TLS context of a tls region: TLS 1.2 at least, the peer always
 * verified, against ca_file or the system's CAs. 0, -ENOMEM, or -EINVAL
 * (logged: the caller's message does not say why).
 */
static int tls_ctx_make(struct derp_conn *c)
{
	const struct mg_derp_region_conf *rc = c->rc;
	char why[160];

	ERR_clear_error();
	if (!(c->ctx = SSL_CTX_new(TLS_client_method())))
		return -ENOMEM;
	if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION)) {
		mg_log(LOG_ERR, "DERP region %u: cannot require TLS 1.2: %s", rc->id,
		       ssl_err_str(why, sizeof(why)));
		return -EINVAL;
	}
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(c->ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* As Go's crypto/tls client (Tailscale's) does: no renegotiation. */
	SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION);
	if (rc->ca_file[0]) {
		FILE *f = fopen(rc->ca_file, "r");
		if (!f) {
			mg_log(LOG_ERR, "DERP region %u: cannot read ca_file %s: %s", rc->id,
			       rc->ca_file, strerror(errno));
			return -EINVAL;
		}
		fclose(f);
		if (!SSL_CTX_load_verify_locations(c->ctx, rc->ca_file, NULL)) {
			mg_log(LOG_ERR,
			       "DERP region %u: ca_file %s holds no usable PEM certificate: %s",
			       rc->id, rc->ca_file, ssl_err_str(why, sizeof(why)));
			return -EINVAL;
		}
	} else if (!SSL_CTX_set_default_verify_paths(c->ctx)) {
		mg_log(LOG_ERR, "DERP region %u: cannot load the system's CA certificates: %s",
		       rc->id, ssl_err_str(why, sizeof(why)));
		return -EINVAL;
	}
	return 0;
}

/* A connection (not yet made) for region r->rc[i]. 0, -ENOMEM or -EINVAL
 * (an unusable ca_file, logged). */
static int conn_init(struct cp_derp *r, int i)
{
	struct derp_conn *c = &r->c[i];
	int ret = 0;

	*c = (struct derp_conn){.rc = &r->rc[i],
				.home = r->rc[i].id == r->home,
				.fd = -1,
				.pr_fd = -1,
				.backoff_ns = DERP_BACKOFF_MIN,
				.in = malloc(DERP_IN_MAX),
				.out = malloc(DERP_OUT_MAX)};
	if (!c->in || !c->out)
		ret = -ENOMEM;
	else if (c->rc->tls)
		ret = tls_ctx_make(c);
	if (ret == -ENOMEM)
		mg_log(LOG_ERR, "DERP region %u: out of memory", c->rc->id);
	return ret;
}

/* The probe in flight given up (its round counts it as failed). */
static void probe_close(struct derp_conn *c)
{
	if (c->pr_fd >= 0)
		close(c->pr_fd);
	c->pr_fd = -1;
	cp_dns_release(c->pr_dns);
	c->pr_dns = NULL;
}

static void conn_free(struct derp_conn *c)
{
	conn_close(c, 0);
	probe_close(c);
	SSL_CTX_free(c->ctx);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->pr_fd = -1;
}

static void derp_free(struct cp_derp *r)
{
	for (int i = 0; r && i < r->n; i++)
		conn_free(&r->c[i]);
	free(r);
}

/* The home region: `want` if it is one of them, else the first. */
static uint16_t home_of(const struct mg_derp_region_conf *regs, int n, uint32_t want)
{
	for (int i = 0; i < n; i++)
		if (regs[i].id == want)
			return (uint16_t)want;
	return n ? (uint16_t)regs[0].id : 0;
}

/*
 * The home of a new set of regions: the configured one if the set has it;
 * else (chosen by latency) the current home if the set still has it, so an
 * unchanged map does not undo the probes' choice; else the first region.
 */
static uint16_t target_home(const struct cp_derp *old, const struct mg_derp_region_conf *regs,
			    int n, uint32_t cfg_home, bool *auto_home)
{
	uint16_t h = home_of(regs, n, cfg_home);

	*auto_home = !cfg_home || h != cfg_home;
	if (*auto_home && old && old->auto_home && home_of(regs, n, old->home) == old->home)
		h = old->home;
	return h;
}

/* A new set of regions, connections to unchanged regions carried over
 * from old (which then has rc NULL there). NULL on failure (logged), with
 * old as it was. */
static struct cp_derp *derp_make(struct cp_derp *old, const struct mg_derp_region_conf *regs, int n,
				 uint32_t want_home)
{
	struct cp_derp *r = calloc(1, sizeof(*r));
	int keep[MG_MAX_DERP_REGIONS];

	if (!r) {
		mg_log(LOG_ERR, "DERP: out of memory");
		return NULL;
	}
	r->home = target_home(old, regs, n, want_home, &r->auto_home);
	/* New connections first: a failure leaves old untouched. */
	for (int i = 0; i < n; i++) {
		r->rc[i] = regs[i];
		keep[i] = -1;
		for (int j = 0; old && j < old->n; j++)
			if (cp_derp_region_same(&old->rc[j], &regs[i]))
				keep[i] = j;
		int ret = keep[i] < 0 ? conn_init(r, i) : 0;
		r->n = i + 1;
		if (ret) {
			for (int k = 0; k <= i; k++)
				if (keep[k] >= 0)
					r->c[k] = (struct derp_conn){.fd = -1, .pr_fd = -1};
			derp_free(r);
			return NULL;
		}
	}
	for (int i = 0; i < n; i++) {
		if (keep[i] < 0)
			continue;
		struct derp_conn *c = &old->c[keep[i]];

		probe_close(c); /* r starts its own round */
		c->pr_pending = false;
		r->c[i] = *c;
		r->c[i].rc = &r->rc[i];
		r->c[i].home = regs[i].id == r->home;
		/* Peers reach us at the old home until they learn the new one:
		 * it stays up as a region in use would. */
		if (c->home && !r->c[i].home && c->st == C_READY)
			r->c[i].last_used_ns = cp_now();
		*c = (struct derp_conn){.fd = -1, .pr_fd = -1}; /* now r's */
	}
	return r;
}

bool cp_derp_region_same(const struct mg_derp_region_conf *a, const struct mg_derp_region_conf *b)
{
	return a->id == b->id && mg_sockaddr_same(&a->server, &b->server) &&
	       !strcmp(a->host, b->host) && a->pinned == b->pinned &&
	       !memcmp(a->public_key, b->public_key, 32) && a->tls == b->tls &&
	       !strcmp(a->server_name, b->server_name) && !strcmp(a->ca_file, b->ca_file);
}

int cp_derp_init(struct cp_device *d)
{
	const struct mg_config *cfg = d->cfg;

	if (!cfg->n_derp_regions)
		return 0;
	d->derp = derp_make(NULL, cfg->derp_regions, cfg->n_derp_regions, cfg->derp_home);
	if (!d->derp)
		return -EINVAL;
	count_ready(d);
	return 0;
}

static void derp_off(struct cp_device *d)
{
	derp_free(d->derp);
	d->derp = NULL;
	count_ready(d);
}

int cp_derp_set_regions(struct cp_device *d, const struct mg_derp_region_conf *regs, int n)
{
	struct cp_derp *old = d->derp, *r;
	char a[300];

	if (d->cfg->n_derp_regions)
		return -EEXIST; /* control.derp_regions rule */
	int all = n;
	bool auto_home;

	if (n > MG_MAX_DERP_REGIONS)
		n = MG_MAX_DERP_REGIONS;
	bool same = old && old->n == n &&
		    old->home == target_home(old, regs, n, d->cfg->derp_home, &auto_home);
	for (int i = 0; same && i < n; i++)
		same = cp_derp_region_same(old->c[i].rc, &regs[i]);
	if (same || (!old && !n))
		return 0;
	if (all > n)
		mg_log(LOG_WARNING, "DERP: the map has %d regions; using the first %d", all, n);
	if (!n) {
		mg_log(LOG_INFO, "DERP: no regions in the map any more; relaying off");
		derp_off(d); /* abandoned lookups: reaped by the tick, not waited for */
		d->derp_home_changed = true;
		return 0;
	}
	if (!(r = derp_make(old, regs, n, d->cfg->derp_home)))
		return -EINVAL;
	for (int j = 0; old && j < old->n; j++)
		if (old->c[j].rc) {
			mg_log(LOG_INFO, "DERP region %u (%s): %s", old->rc[j].id,
			       region_addr(&old->c[j], a, sizeof(a)),
			       home_of(regs, n, old->rc[j].id) == old->rc[j].id
				   ? "changed in the map, reconnecting"
				   : "not in the map any more, closed");
			conn_free(&old->c[j]);
		}
	d->derp = r;
	for (int i = 0; i < r->n; i++) {
		struct derp_conn *c = &r->c[i];

		mg_log(LOG_DEBUG, "DERP region %u (%s)%s", c->rc->id, region_addr(c, a, sizeof(a)),
		       c->home ? ": home" : "");
		if (c->st == C_READY) { /* the relay's note of whether we are home here */
			uint8_t f[MG_DERP_HDR_LEN + 1];
			send_frame_or_fail(d, c, f,
					   mg_derp_build_note_preferred(f, sizeof(f), c->home),
					   cp_now());
		}
	}
	mg_log(LOG_INFO, "DERP: %d region(s) from the coordination server, home region %u", r->n,
	       r->home);
	d->derp_home_changed |= !old || old->home != r->home;
	free(old);
	count_ready(d);
	return 0;
}

void cp_derp_fini(struct cp_device *d)
{
	derp_off(d);
	cp_dns_reap(true);
}

/* ---- the home region by latency ---------------------------------------------- */

int cp_derp_pick_home(const uint64_t *lat_ns, int n, int cur)
{
	int best = -1;

	for (int i = 0; i < n; i++)
		if (lat_ns[i] && (best < 0 || lat_ns[i] < lat_ns[best]))
			best = i;
	if (best < 0 || best == cur)
		return cur;
	if (cur < 0 || cur >= n || !lat_ns[cur]) /* the home does not answer */
		return best;
	if (lat_ns[best] * 3 < lat_ns[cur] * 2 && lat_ns[cur] - lat_ns[best] > 10 * NS / 1000)
		return best;
	return cur;
}

/* A region's latency: the least connect time of its last rounds; 0 when
 * the last round failed (a home that stops answering is left at once). */
static uint64_t latency(const struct derp_conn *c)
{
	uint64_t l = 0;

	if (c->pr_k && !c->pr_rtt[(c->pr_k - 1) % DERP_PROBE_SAMPLES])
		return 0;
	for (unsigned i = 0; i < DERP_PROBE_SAMPLES; i++)
		if (c->pr_rtt[i] && (!l || c->pr_rtt[i] < l))
			l = c->pr_rtt[i];
	return l;
}

static void probe_done(struct derp_conn *c, uint64_t rtt_ns)
{
	probe_close(c);
	c->pr_pending = false;
	c->pr_rtt[c->pr_k++ % DERP_PROBE_SAMPLES] = rtt_ns;
}

/* A connect to the next address (the host name's, in turn); none left: the
 * probe failed. */
static void probe_connect(struct derp_conn *c, uint64_t now)
{
	while (c->pr_n_alt) {
		struct sockaddr_storage ss;
		socklen_t sl = mg_sockaddr_to_sys(&c->pr_alt[0], &ss);

		c->pr_n_alt--;
		memmove(c->pr_alt, c->pr_alt + 1, c->pr_n_alt * sizeof(c->pr_alt[0]));
		if (c->pr_fd >= 0)
			close(c->pr_fd);
		c->pr_fd =
		    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
		(void)now;
		c->pr_start_ns = cp_now(); /* not the loop's: other work ran since */
		if (c->pr_fd < 0)
			continue;
		if (connect(c->pr_fd, (struct sockaddr *)&ss, sl) == 0) {
			probe_done(c, 1); /* at once: as near as it gets */
			return;
		}
		if (errno == EINPROGRESS)
			return;
	}
	probe_done(c, 0);
}

static void probe_start(struct derp_conn *c, uint64_t now)
{
	int err;

	c->pr_pending = true;
	c->pr_n_alt = 0;
	if (!c->rc->host[0]) {
		c->pr_alt[c->pr_n_alt++] = c->rc->server;
		probe_connect(c, now);
	} else if (!(c->pr_dns = cp_dns_start(c->rc->host, SOCK_STREAM, &err))) {
		probe_done(c, 0);
	}
}

/* Move the home to region i: the old one stays up while peers still send
 * there (it counts as just used), the coordination server hears of the new
 * endpoint (derp_home_changed). */
static void set_home(struct cp_device *d, int i, uint64_t now)
{
	struct cp_derp *r = d->derp;
	uint8_t f[MG_DERP_HDR_LEN + 1];

	for (int k = 0; k < r->n; k++) {
		struct derp_conn *c = &r->c[k];
		bool home = k == i;

		if (c->home == home)
			continue;
		if (c->home && c->st == C_READY) /* peers may still send there */
			c->last_used_ns = now;
		c->home = home;
		if (c->st == C_READY)
			send_frame_or_fail(d, c, f,
					   mg_derp_build_note_preferred(f, sizeof(f), home), now);
	}
	r->home = (uint16_t)r->rc[i].id;
	d->derp_home_changed = true;
	count_ready(d);
}

/* Rounds of probes; at the end of one, maybe a new home. */
static void probe_tick(struct cp_device *d, uint64_t now)
{
	struct cp_derp *r = d->derp;
	uint64_t lat[MG_MAX_DERP_REGIONS] = {0};
	int cur = -1, pending = 0;

	if (!r->auto_home || r->n < 2 || d->derp_no_probe)
		return;
	if (!r->probing) {
		if (now < r->probe_ns)
			return;
		r->probing = true;
		r->probe_ns = now;
		for (int i = 0; i < r->n; i++)
			probe_start(&r->c[i], now);
	}
	for (int i = 0; i < r->n; i++) {
		struct derp_conn *c = &r->c[i];

		if (c->pr_dns) {
			int err;

			c->pr_n_alt = cp_dns_addrs(c->pr_dns, c->rc->server.port, c->pr_alt,
						   DERP_ADDRS, &err);
			if (err != EAI_INPROGRESS) {
				cp_dns_release(c->pr_dns);
				c->pr_dns = NULL;
				probe_connect(c, now); /* none: failed */
			}
		}
		if (c->pr_fd >= 0 && c->pr_n_alt &&
		    age(cp_now(), c->pr_start_ns) > DERP_PROBE_ADDR_NS)
			probe_connect(c, now); /* this address does not answer: the next */
		if (c->pr_pending && age(now, r->probe_ns) > DERP_PROBE_TIMEOUT_NS)
			probe_done(c, 0);
		pending += c->pr_pending;
	}
	if (pending)
		return;
	r->probing = false;
	r->probe_ns = now + DERP_PROBE_PERIOD_NS - NS + randombytes_uniform(2 * NS / 1000) * 1000;
	for (int i = 0; i < r->n; i++) {
		lat[i] = latency(&r->c[i]);
		if (r->rc[i].id == r->home)
			cur = i;
	}
	int best = cp_derp_pick_home(lat, r->n, cur);
	count_ready(d); /* the latencies, for metrics */
	if (best == cur)
		return;
	char was[48] = "no answer";
	if (cur >= 0 && lat[cur])
		snprintf(was, sizeof(was), "%.1f ms", (double)lat[cur] / 1e6);
	mg_log(LOG_INFO, "DERP: home region %u -> %u (latency %.1f ms, was %s)", r->home,
	       r->rc[best].id, (double)lat[best] / 1e6, was);
	set_home(d, best, now);
}

void cp_derp_tick(struct cp_device *d, uint64_t now)
{
	cp_dns_reap(false);
	if (d->derp)
		probe_tick(d, now);
	for (int i = 0; d->derp && i < d->derp->n; i++) {
		struct derp_conn *c = &d->derp->c[i];
		bool wanted =
		    c->home || (c->last_used_ns && age(now, c->last_used_ns) < DERP_IDLE_NS);

		if (c->st == C_RESOLVING)
			resolve_check(d, c, now);
		else if (c->st == C_CONNECTING && c->n_alt && age(now, c->state_ns) > DERP_ADDR_NS)
			connect_failed(d, c, now, ETIMEDOUT);
		if (c->st == C_IDLE) {
			if (wanted && d->local.has_identity && now >= c->retry_ns)
				conn_start(d, c, now);
			continue;
		}
		if (!wanted) {
			mg_log(LOG_INFO, "DERP region %u: unused for %llu s, closing", c->rc->id,
			       (unsigned long long)(DERP_IDLE_NS / NS));
			conn_close(c, now);
			count_ready(d);
		} else if (c->st != C_READY && age(now, c->state_ns) > DERP_HANDSHAKE_NS) {
			conn_fail(d, c, now, "timed out");
		} else if (c->st == C_READY && age(now, c->last_rx_ns) > DERP_DEAD_NS) {
			conn_fail(d, c, now, "nothing from the relay for 150 s");
		} else if (memcmp(c->our_pub, d->local.public_key, 32)) {
			/* A node-key rotation: peers now address the new key. */
			mg_log(LOG_INFO, "DERP region %u: node key changed, reconnecting",
			       c->rc->id);
			conn_close(c, now);
			count_ready(d);
			conn_start(d, c, now);
		}
	}
}

unsigned cp_derp_pollfds(struct cp_device *d, struct pollfd *pfd, unsigned max)
{
	unsigned k = 0;

	for (int i = 0; d->derp && i < d->derp->n && k < max; i++) {
		const struct derp_conn *c = &d->derp->c[i];
		short ev = 0;

		if (c->fd < 0)
			continue;
		if (c->st == C_CONNECTING) {
			ev = POLLOUT;
		} else if (c->st == C_TLS) {
			ev = c->hs_events;
		} else if (c->ssl) {
			/* A write waiting for the TLS layer to read waits on
			 * POLLIN (asked anyway), not on a writable socket. */
			ev = POLLIN;
			if ((c->out_len > c->out_off && !c->write_wants_read) ||
			    c->read_wants_write)
				ev |= POLLOUT;
		} else {
			ev = POLLIN;
			if (c->out_len > c->out_off)
				ev |= POLLOUT;
		}
		pfd[k++] = (struct pollfd){.fd = c->fd, .events = ev};
	}
	for (int i = 0; d->derp && i < d->derp->n && k < max; i++)
		if (d->derp->c[i].pr_fd >= 0)
			pfd[k++] = (struct pollfd){.fd = d->derp->c[i].pr_fd, .events = POLLOUT};
	return k;
}

void cp_derp_service(struct cp_device *d, const struct pollfd *pfd, unsigned n, uint64_t now)
{
	for (unsigned k = 0; k < n && d->derp; k++) { /* regions may go meanwhile */
		struct derp_conn *c = NULL;

		if (!pfd[k].revents)
			continue;
		for (int i = 0; i < d->derp->n; i++) {
			struct derp_conn *p = &d->derp->c[i];

			if (p->pr_fd >= 0 &&
			    p->pr_fd == pfd[k].fd) { /* a probe connected, or not */
				int err = 0;
				socklen_t el = sizeof(err);

				if (getsockopt(p->pr_fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
					err = errno;
				uint64_t t = cp_now();
				if (!err)
					probe_done(p, t > p->pr_start_ns ? t - p->pr_start_ns : 1);
				else
					probe_connect(p, now); /* the next address, if any */
			}
			if (p->fd == pfd[k].fd)
				c = p;
		}
		if (!c)
			continue; /* closed while servicing another */
		if (c->st == C_CONNECTING) {
			if (pfd[k].revents & (POLLOUT | POLLERR | POLLHUP))
				on_connected(d, c, now);
		} else if (c->st == C_TLS) {
			tls_handshake(d, c, now);
		} else if (pfd[k].revents & (POLLIN | POLLERR | POLLHUP) ||
			   (c->read_wants_write && (pfd[k].revents & POLLOUT))) {
			conn_read(d, c, now);
		}
		if (c->st != C_IDLE && c->out_len > c->out_off) {
			int ret = out_flush(c);
			if (ret)
				conn_fail(d, c, now, io_why(c, ret));
		}
		/* What the TLS layer took from the socket meanwhile (the end of
		 * the handshake, a write that had to read) is not polled for. */
		if (c->ssl && c->st >= C_HTTP && SSL_has_pending(c->ssl)) {
			conn_read(d, c, now);
			if (c->st != C_IDLE && c->out_len > c->out_off) {
				int ret = out_flush(c);
				if (ret)
					conn_fail(d, c, now, io_why(c, ret));
			}
		}
	}
}

bool cp_derp_region_up(const struct cp_device *d, uint16_t region)
{
	for (int i = 0; d->derp && i < d->derp->n; i++)
		if (d->derp->c[i].rc->id == region)
			return d->derp->c[i].st == C_READY;
	return false;
}
