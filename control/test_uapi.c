// SPDX-License-Identifier: MIT
/*
 * UAPI tests.
 *
 *   test_uapi parse   table tests of cp_uapi_parse_set and cp_uapi_format_get,
 *                     huge inputs
 *   test_uapi server  the server over raw sockets in a temp run_dir: framing,
 *                     pipelining, errors, stale/live sockets, client limit,
 *                     oversize requests, big responses, idle timeout
 *   test_uapi wg      the real wg(8) against the server, in-process, with a
 *                     fake device behind it. wg only looks in
 *                     /var/run/wireguard, so the interface is "mgtest<pid>"
 *                     there and is removed afterwards. Exits 77 (skip) if wg
 *                     is not installed or that directory is not writable.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "keys.h"
#include "uapi.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define KA "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1"
#define KZ "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- a parsed set as one canonical line, for table comparisons ---- */

static void key4(char *out, const uint8_t key[32])
{
	char hex[65];

	mg_key_to_hex(key, hex);
	memcpy(out, hex, 4);
	out[4] = '\0';
}

#define APPEND(...) (n += (size_t)snprintf(buf + n, n < len ? len - n : 0, __VA_ARGS__))

static void describe_peer(const struct cp_uapi_peer_op *p, char *buf, size_t len, size_t n)
{
	char k[5], tmp[MG_SOCKADDR_STRLEN];

	key4(k, p->public_key);
	APPEND("{%s", k);
	if (p->remove)
		APPEND(" remove");
	if (p->update_only)
		APPEND(" update_only");
	if (p->has_psk) {
		key4(k, p->psk);
		APPEND(" psk=%s", k);
	}
	if (p->has_endpoint)
		APPEND(" ep=%s", mg_sockaddr_fmt(&p->endpoint, tmp, sizeof(tmp)));
	if (p->has_keepalive)
		APPEND(" ka=%u", p->keepalive);
	if (p->replace_allowed_ips)
		APPEND(" replace_ips");
	for (size_t i = 0; i < p->n_allowed_ips; i++)
		APPEND("%s%s",
		       i ? "," : " ips=", mg_prefix_fmt(&p->allowed_ips[i], tmp, sizeof(tmp)));
	APPEND("}");
}

static const char *describe(const struct cp_uapi_set *s, char *buf, size_t len)
{
	char k[5];
	size_t n = 0;

	buf[0] = '\0';
	if (s->has_private_key) {
		key4(k, s->private_key);
		APPEND("priv=%s ", k);
	}
	if (s->has_listen_port)
		APPEND("port=%u ", s->listen_port);
	if (s->has_fwmark)
		APPEND("fwmark=%u ", s->fwmark);
	if (s->replace_peers)
		APPEND("replace_peers ");
	for (size_t i = 0; i < s->n_peers; i++) {
		describe_peer(&s->peers[i], buf, len, n);
		n = strlen(buf);
	}
	while (n > 0 && n <= len && buf[n - 1] == ' ')
		buf[--n] = '\0';
	return buf;
}

/* ---- parse table ---- */

struct parse_case {
	const char *body;
	int ret;
	const char *want; /* describe() of the result, when ret == 0 */
};

static const struct parse_case parse_cases[] = {
    /* 1 */ {"", 0, ""},
    /* 2 */ {"\n", 0, ""},
    /* 3 */ {"listen_port=51820\n", 0, "port=51820"},
    /* 4 */ {"listen_port=51820", 0, "port=51820"}, /* last '\n' optional */
    /* 5 */ {"listen_port=51820\n\n", 0, "port=51820"},
    /* 6 */ {"listen_port=0\n", 0, "port=0"},
    /* 7 */ {"listen_port=65536\n", -EINVAL, NULL},
    /* 8 */ {"listen_port=-1\n", -EINVAL, NULL},
    /* 9 */ {"listen_port= 1\n", -EINVAL, NULL},
    /* 10 */ {"listen_port=\n", -EINVAL, NULL},
    /* 11 */ {"listen_port=1\r\n", -EINVAL, NULL},
    /* 12 */ {"private_key=" KA "\n", 0, "priv=a0b1"},
    /* 13 */ {"private_key=" KZ "\n", 0, "priv=0000"}, /* zero: remove the key */
    /* 14 */ {"private_key=" K1 "1\n", -EINVAL, NULL},
    /* 15 */ {"private_key=a0b1\n", -EINVAL, NULL},
    /* 16 */ {"private_key=zz" K1 "\n", -EINVAL, NULL},
    /* 17 */ {"fwmark=4294967295\n", 0, "fwmark=4294967295"},
    /* 18 */ {"fwmark=4294967296\n", -EINVAL, NULL},
    /* 19 */ {"fwmark=0x10\n", -EINVAL, NULL},
    /* 20 */ {"replace_peers=true\n", 0, "replace_peers"},
    /* 21 */ {"replace_peers=false\n", -EINVAL, NULL},
    /* 22 */ {"public_key=" K1 "\n", 0, "{1111}"},
    /* 23 */ {"public_key=" K1 "\nendpoint=[fd00::1]:51820\n", 0, "{1111 ep=[fd00::1]:51820}"},
    /* 24 */ {"public_key=" K1 "\nendpoint=198.18.0.2:1\n", 0, "{1111 ep=198.18.0.2:1}"},
    /* 25 */ {"public_key=" K1 "\nendpoint=fd00::1:51820\n", -EINVAL, NULL},
    /* 26 */ {"public_key=" K1 "\nendpoint=[fe80::1%eth0]:51820\n", -EINVAL, NULL},
    /* 27 */ {"public_key=" K1 "\nendpoint=example.com:51820\n", -EINVAL, NULL},
    /* 28 */
    {"public_key=" K1 "\nreplace_allowed_ips=true\nallowed_ip=10.0.0.7/24\n"
     "allowed_ip=fd00::1/64\nallowed_ip=0.0.0.0/0\n",
     0, "{1111 replace_ips ips=10.0.0.0/24,fd00::/64,0.0.0.0/0}"},
    /* 29 */ {"public_key=" K1 "\nallowed_ip=10.0.0.1\n", -EINVAL, NULL},
    /* 30 */ {"public_key=" K1 "\nallowed_ip=10.0.0.1/33\n", -EINVAL, NULL},
    /* 31 */ {"public_key=" K1 "\nremove=true\n", 0, "{1111 remove}"},
    /* 32 */ {"public_key=" K1 "\nremove=1\n", -EINVAL, NULL},
    /* 33 */ {"public_key=" K1 "\nupdate_only=true\n", 0, "{1111 update_only}"},
    /* 34 */ {"public_key=" K1 "\npreshared_key=" KA "\n", 0, "{1111 psk=a0b1}"},
    /* 35 */ {"public_key=" K1 "\npreshared_key=" KZ "\n", 0, "{1111 psk=0000}"},
    /* 36 */ {"public_key=" K1 "\npersistent_keepalive_interval=25\n", 0, "{1111 ka=25}"},
    /* 37 */ {"public_key=" K1 "\npersistent_keepalive_interval=65536\n", -EINVAL, NULL},
    /* 38 */ {"public_key=" K1 "\nprotocol_version=1\n", 0, "{1111}"},
    /* 39 */ {"public_key=" K1 "\nprotocol_version=2\n", -EINVAL, NULL},
    /* 40: peer keys need a peer, device keys come first */
    {"endpoint=1.2.3.4:1\n", -EPROTO, NULL},
    /* 41 */ {"protocol_version=1\n", -EPROTO, NULL},
    /* 42 */ {"public_key=" K1 "\nlisten_port=1\n", -EPROTO, NULL},
    /* 43 */ {"public_key=" K1 "\nreplace_peers=true\n", -EPROTO, NULL},
    /* 44 */ {"foo=bar\n", -EPROTO, NULL},
    /* 45 */ {"listen_port\n", -EPROTO, NULL},
    /* 46 */ {"=\n", -EPROTO, NULL},
    /* 47 */ {"LISTEN_PORT=1\n", -EPROTO, NULL},
    /* 48 */ {"listen_port=1\n\nlisten_port=2\n", -EPROTO, NULL},
    /* 49 */ {"listen_port=1\n\n\n", -EPROTO, NULL},
    /* 50: the whole of a typical `wg set` */
    {"private_key=" KA "\nlisten_port=51999\nfwmark=7\nreplace_peers=true\n"
     "public_key=" K1 "\nremove=true\n"
     "public_key=" K2 "\npreshared_key=" KA "\nendpoint=[2001:db8::9]:4500\n"
     "persistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=10.9.0.0/16\n",
     0,
     "priv=a0b1 port=51999 fwmark=7 replace_peers {1111 remove}"
     "{2222 psk=a0b1 ep=[2001:db8::9]:4500 ka=0 replace_ips ips=10.9.0.0/16}"},
    /* 51: the same peer twice is two operations, applied in order */
    {"public_key=" K1 "\nallowed_ip=10.0.0.0/8\npublic_key=" K1 "\nremove=true\n", 0,
     "{1111 ips=10.0.0.0/8}{1111 remove}"},
    /* 52 */
    {"listen_port=1111111111111111111111111111111111111111111111111111111111111111111111111111111"
     "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
     "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111111\n",
     -EINVAL, NULL},
};

static bool set_is_empty(const struct cp_uapi_set *s)
{
	static const struct cp_uapi_set zero;

	return !memcmp(s, &zero, sizeof(zero));
}

static void test_parse_table(void)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *t = &parse_cases[i];
		struct cp_uapi_set s;
		char got[1024];
		int ret = cp_uapi_parse_set(t->body, strlen(t->body), &s);

		CHECK(ret == t->ret, "case %zu: returned %d, want %d", i + 1, ret, t->ret);
		if (ret == 0 && t->want)
			CHECK(!strcmp(describe(&s, got, sizeof(got)), t->want),
			      "case %zu:\n  got  %s\n  want %s", i + 1, got, t->want);
		if (ret)
			CHECK(set_is_empty(&s), "case %zu: error left data behind", i + 1);
		cp_uapi_set_free(&s);
		CHECK(set_is_empty(&s), "case %zu: free did not zero", i + 1);
	}
}

static void test_parse_nul(void)
{
	static const char body[] = "listen_port=1\n\0listen_port=2\n";
	struct cp_uapi_set s;

	CHECK(cp_uapi_parse_set(body, sizeof(body) - 1, &s) == -EPROTO && set_is_empty(&s),
	      "NUL byte");
	CHECK(cp_uapi_parse_set(NULL, 0, &s) == 0 && set_is_empty(&s), "empty body");
}

/* Tens of MiB of lines: counts, and no quadratic blowup. */
static void test_parse_huge(void)
{
	const size_t n_ips = 1000000, n_peers = 200000;
	size_t cap = 64 + n_ips * 32 + n_peers * 80, len = 0;
	char *body = malloc(cap);
	struct cp_uapi_set s;
	clock_t t0 = clock();
	int ret;

	len += (size_t)sprintf(body + len, "public_key=%s\n", K1);
	for (size_t i = 0; i < n_ips; i++)
		len += (size_t)sprintf(body + len, "allowed_ip=10.%zu.%zu.%zu/32\n",
				       (i >> 16) & 255, (i >> 8) & 255, i & 255);
	for (size_t i = 0; i < n_peers; i++)
		len += (size_t)sprintf(body + len, "public_key=%056x%08zx\nremove=true\n", 0, i);
	ret = cp_uapi_parse_set(body, len, &s);
	CHECK(ret == 0 && s.n_peers == n_peers + 1 && s.peers[0].n_allowed_ips == n_ips &&
		  s.peers[n_peers].remove &&
		  s.peers[n_peers].public_key[31] == ((n_peers - 1) & 255),
	      "huge set: ret %d, %zu peers", ret, s.n_peers);
	CHECK(clock() - t0 < 20 * CLOCKS_PER_SEC, "huge set too slow");
	cp_uapi_set_free(&s);

	/* One bad line at the very end still rejects everything. */
	len += (size_t)sprintf(body + len, "allowed_ip=bogus\n");
	CHECK(cp_uapi_parse_set(body, len, &s) == -EINVAL && set_is_empty(&s), "huge bad set");
	free(body);
}

static void test_format_get(void)
{
	struct mg_prefix ips[2];
	struct cp_uapi_peer_view peers[2] = {0};
	struct cp_uapi_dev_view v = {.has_private_key = true,
				     .listen_port = 51820,
				     .fwmark = 0,
				     .peers = peers,
				     .n_peers = 2};
	static const char want[] = "private_key=" KA "\n"
				   "listen_port=51820\n"
				   "public_key=" K1 "\n"
				   "preshared_key=" KA "\n"
				   "protocol_version=1\n"
				   "endpoint=[fd00::1]:51820\n"
				   "last_handshake_time_sec=1700000000\n"
				   "last_handshake_time_nsec=5\n"
				   "tx_bytes=2\n"
				   "rx_bytes=1\n"
				   "persistent_keepalive_interval=25\n"
				   "allowed_ip=10.0.0.0/24\n"
				   "allowed_ip=fd00::/64\n"
				   "public_key=" K2 "\n"
				   "preshared_key=" KZ "\n"
				   "protocol_version=1\n"
				   "last_handshake_time_sec=0\n"
				   "last_handshake_time_nsec=0\n"
				   "tx_bytes=0\n"
				   "rx_bytes=0\n"
				   "persistent_keepalive_interval=0\n"
				   "errno=0\n\n";
	char *out;
	size_t len;

	mg_key_from_hex(KA, v.private_key);
	mg_key_from_hex(K1, peers[0].public_key);
	mg_key_from_hex(KA, peers[0].psk);
	peers[0].has_psk = true;
	mg_sockaddr_parse("[fd00::1]:51820", &peers[0].endpoint);
	peers[0].last_handshake_sec = 1700000000;
	peers[0].last_handshake_nsec = 5;
	peers[0].rx_bytes = 1;
	peers[0].tx_bytes = 2;
	peers[0].keepalive = 25;
	mg_prefix_parse("10.0.0.0/24", &ips[0]);
	mg_prefix_parse("fd00::/64", &ips[1]);
	peers[0].allowed_ips = ips;
	peers[0].n_allowed_ips = 2;
	mg_key_from_hex(K2, peers[1].public_key);
	CHECK(cp_uapi_format_get(&v, &out, &len) == 0 && len == strlen(want) && !strcmp(out, want),
	      "format_get:\n%s", out);
	free(out);

	struct cp_uapi_dev_view empty = {0};

	CHECK(cp_uapi_format_get(&empty, &out, &len) == 0 && !strcmp(out, "errno=0\n\n"),
	      "empty get");
	free(out);
}

/* ---- a fake device behind the server ---- */

#define FAKE_MAX_PEERS 64
#define FAKE_MAX_IPS   16

struct fake_peer {
	uint8_t pk[32];
	bool has_psk;
	uint8_t psk[32];
	struct mg_sockaddr ep;
	uint16_t ka;
	struct mg_prefix ips[FAKE_MAX_IPS];
	size_t n_ips;
	uint64_t rx, tx;
	int64_t hs_sec;
};

struct fake_dev {
	bool has_priv;
	uint8_t priv[32];
	uint16_t port;
	uint32_t fwmark;
	struct fake_peer peers[FAKE_MAX_PEERS];
	size_t n_peers;
	size_t extra_get_peers; /* padding peers in get: big responses */
	int set_calls, get_calls;
	int fail_set, fail_get; /* -errno the next sets/gets return */
	char last_set[4096];
};

static struct fake_peer *fake_find(struct fake_dev *d, const uint8_t pk[32])
{
	for (size_t i = 0; i < d->n_peers; i++)
		if (!memcmp(d->peers[i].pk, pk, 32))
			return &d->peers[i];
	return NULL;
}

static void fake_remove(struct fake_dev *d, struct fake_peer *p)
{
	*p = d->peers[--d->n_peers];
}

/* Apply one peer op as wireguard-go does. */
static int fake_peer_op(struct fake_dev *d, const struct cp_uapi_peer_op *op)
{
	struct fake_peer *p = fake_find(d, op->public_key);

	if (op->remove) {
		if (p)
			fake_remove(d, p);
		return 0;
	}
	if (!p && op->update_only)
		return 0;
	if (!p) {
		if (d->n_peers == FAKE_MAX_PEERS)
			return -ENOSPC;
		p = &d->peers[d->n_peers++];
		memset(p, 0, sizeof(*p));
		memcpy(p->pk, op->public_key, 32);
	}
	if (op->has_psk) {
		p->has_psk = !mg_key_is_zero(op->psk);
		memcpy(p->psk, op->psk, 32);
	}
	if (op->has_endpoint)
		p->ep = op->endpoint;
	if (op->has_keepalive)
		p->ka = op->keepalive;
	if (op->replace_allowed_ips)
		p->n_ips = 0;
	for (size_t i = 0; i < op->n_allowed_ips && p->n_ips < FAKE_MAX_IPS; i++)
		p->ips[p->n_ips++] = op->allowed_ips[i];
	return 0;
}

static int fake_set(void *ctx, const struct cp_uapi_set *set)
{
	struct fake_dev *d = ctx;

	d->set_calls++;
	describe(set, d->last_set, sizeof(d->last_set));
	if (d->fail_set)
		return d->fail_set;
	if (set->has_private_key) {
		d->has_priv = !mg_key_is_zero(set->private_key);
		memcpy(d->priv, set->private_key, 32);
	}
	if (set->has_listen_port)
		d->port = set->listen_port;
	if (set->has_fwmark)
		d->fwmark = set->fwmark;
	if (set->replace_peers)
		d->n_peers = 0;
	for (size_t i = 0; i < set->n_peers; i++) {
		int ret = fake_peer_op(d, &set->peers[i]);

		if (ret)
			return ret;
	}
	return 0;
}

static void fake_release(void *ctx, struct cp_uapi_dev_view *v)
{
	(void)ctx;
	free((void *)v->peers);
}

static int fake_get(void *ctx, struct cp_uapi_dev_view *v,
		    void (**release)(void *ctx, struct cp_uapi_dev_view *v))
{
	struct fake_dev *d = ctx;
	size_t n = d->n_peers + d->extra_get_peers;
	struct cp_uapi_peer_view *pv = calloc(n + 1, sizeof(*pv));

	d->get_calls++;
	if (d->fail_get || !pv) {
		free(pv);
		return d->fail_get ? d->fail_get : -ENOMEM;
	}
	v->has_private_key = d->has_priv;
	memcpy(v->private_key, d->priv, 32);
	v->listen_port = d->port;
	v->fwmark = d->fwmark;
	for (size_t i = 0; i < n; i++) {
		const struct fake_peer *p = &d->peers[i < d->n_peers ? i : 0];

		memcpy(pv[i].public_key, p->pk, 32);
		if (i >= d->n_peers)
			memcpy(pv[i].public_key, &i, sizeof(i));
		pv[i].has_psk = p->has_psk;
		memcpy(pv[i].psk, p->psk, 32);
		pv[i].endpoint = p->ep;
		pv[i].keepalive = p->ka;
		pv[i].allowed_ips = p->ips;
		pv[i].n_allowed_ips = p->n_ips;
		pv[i].rx_bytes = p->rx;
		pv[i].tx_bytes = p->tx;
		pv[i].last_handshake_sec = p->hs_sec;
	}
	v->peers = pv;
	v->n_peers = n;
	*release = fake_release;
	return 0;
}

static const struct cp_uapi_ops fake_ops = {.get = fake_get, .set = fake_set};

/* ---- raw-socket clients ---- */

static int connect_to(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(path) < sizeof(sun.sun_path))
		memcpy(sun.sun_path, path, strlen(path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Service the server until fd has `want` responses ("\n\n"-terminated) or EOF. */
static ssize_t exchange(struct cp_uapi_server *s, int fd, const char *req, size_t req_len, int want,
			char *buf, size_t len)
{
	size_t got = 0;
	int seen = 0;

	if (req_len && write(fd, req, req_len) != (ssize_t)req_len)
		return -1;
	for (int spins = 0; spins < 2000 && seen < want; spins++) {
		struct pollfd p[2] = {{.fd = cp_uapi_server_fd(s), .events = POLLIN},
				      {.fd = fd, .events = POLLIN}};
		ssize_t n;

		poll(p, 2, 10);
		cp_uapi_server_service(s);
		if (!(p[1].revents & (POLLIN | POLLHUP)))
			continue;
		n = read(fd, buf + got, len - got - 1);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		seen = 0;
		for (char *q = buf; (q = strstr(q, "\n\n")); q += 2)
			seen++;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/* Whether the server hung up on fd (EOF or reset) within a while. */
static bool hung_up(struct cp_uapi_server *s, int fd)
{
	char buf[256];

	for (int spins = 0; spins < 300; spins++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		cp_uapi_server_service(s);
		if (poll(&p, 1, 10) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			return true;
	}
	return false;
}

static char run_dir[64];

static void test_server_basic(void)
{
	struct fake_dev d = {.port = 51820};
	struct cp_uapi_server *s = cp_uapi_server_open(run_dir, "mgt0", &fake_ops, &d);
	char path[128], buf[8192];
	struct stat st;
	int fd;

	CHECK(s != NULL, "open: %s", strerror(errno));
	if (!s)
		return;
	snprintf(path, sizeof(path), "%s/mgt0.sock", run_dir);
	CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
	      "socket mode %o", st.st_mode & 0777);
	CHECK(stat(run_dir, &st) == 0 && (st.st_mode & 0777) == 0755, "run_dir mode %o",
	      st.st_mode & 0777);

	fd = connect_to(path);
	exchange(s, fd, "get=1\n\n", 7, 1, buf, sizeof(buf));
	CHECK(!strcmp(buf, "listen_port=51820\nerrno=0\n\n"), "get: %s", buf);
	/* Pipelined, and split across writes. */
	exchange(s, fd, "set=1\nlisten_port=5\n\nget", 24, 1, buf, sizeof(buf));
	CHECK(!strcmp(buf, "errno=0\n\n") && d.port == 5, "set: %s", buf);
	exchange(s, fd, "=1\n\nset=1\nbogus=1\n\nset=1\n\n", 26, 3, buf, sizeof(buf));
	CHECK(!strcmp(buf, "listen_port=5\nerrno=0\n\nerrno=-71\n\nerrno=0\n\n"), "pipelined: %s",
	      buf);
	d.fail_set = -EADDRINUSE;
	exchange(s, fd, "set=1\nlisten_port=6\n\n", 21, 1, buf, sizeof(buf));
	CHECK(!strcmp(buf, "errno=-98\n\n") && d.port == 5, "backend error: %s", buf);
	d.fail_set = 0;
	exchange(s, fd, "set=1\nlisten_port=99999\n\n", 25, 1, buf, sizeof(buf));
	CHECK(!strcmp(buf, "errno=-22\n\n") && d.set_calls == 3, "bad value: %s", buf);
	d.fail_get = -EIO;
	exchange(s, fd, "get=1\n\n", 7, 1, buf, sizeof(buf));
	CHECK(!strcmp(buf, "errno=5\n\n"), "get error: %s", buf);
	d.fail_get = 0;
	/* An unknown operation: no answer, just a hang-up, as wireguard-go. */
	CHECK(write(fd, "put=1\n\n", 7) == 7 && hung_up(s, fd), "unknown op kept open");
	close(fd);
	fd = connect_to(path);
	CHECK(write(fd, "get=1\nx", 7) == 7 && hung_up(s, fd), "get with trailing data");
	close(fd);

	/* A second server on the same name is refused while this one lives. */
	struct cp_uapi_server *s2 = cp_uapi_server_open(run_dir, "mgt0", &fake_ops, &d);

	CHECK(!s2 && errno == EADDRINUSE, "second server: %p %s", (void *)s2, strerror(errno));
	CHECK(stat(path, &st) == 0, "second open removed the live socket");
	cp_uapi_server_close(s2);
	cp_uapi_server_close(s);
	CHECK(stat(path, &st) < 0 && errno == ENOENT, "close did not unlink");
}

static void test_server_stale(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct fake_dev d = {.port = 7};
	struct cp_uapi_server *s;
	char buf[256];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	/* A socket file with nobody listening: left by a crashed process. */
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/mgt1.sock", run_dir);
	CHECK(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "bind stale");
	close(fd);
	s = cp_uapi_server_open(run_dir, "mgt1", &fake_ops, &d);
	CHECK(s != NULL, "stale socket not replaced: %s", strerror(errno));
	if (s) {
		fd = connect_to(sun.sun_path);
		exchange(s, fd, "get=1\n\n", 7, 1, buf, sizeof(buf));
		CHECK(!strcmp(buf, "listen_port=7\nerrno=0\n\n"), "get after stale: %s", buf);
		close(fd);
	}
	cp_uapi_server_close(s);

	/* Something that is not a socket is left alone. */
	fd = open(sun.sun_path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	s = cp_uapi_server_open(run_dir, "mgt1", &fake_ops, &d);
	CHECK(!s && errno == EEXIST, "regular file replaced");
	unlink(sun.sun_path);

	CHECK(!cp_uapi_server_open(run_dir, "bad/name", &fake_ops, &d) && errno == EINVAL,
	      "bad name");
	CHECK(!cp_uapi_server_open(run_dir, "0123456789abcdef", &fake_ops, &d) && errno == EINVAL,
	      "long name");
}

static void test_server_limits(void)
{
	struct fake_dev d = {.port = 1};
	struct cp_uapi_server *s = cp_uapi_server_open(run_dir, "mgt2", &fake_ops, &d);
	char path[128], buf[256];
	int fds[CP_UAPI_MAX_CLIENTS + 4], refused = 0;

	if (!s) {
		CHECK(0, "open: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/mgt2.sock", run_dir);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		fds[i] = connect_to(path);
		cp_uapi_server_service(s);
	}
	for (size_t i = CP_UAPI_MAX_CLIENTS; i < sizeof(fds) / sizeof(fds[0]); i++)
		refused += hung_up(s, fds[i]);
	CHECK(refused == 4, "clients over the limit: %d refused", refused);
	for (size_t i = 0; i < CP_UAPI_MAX_CLIENTS; i += 7) {
		exchange(s, fds[i], "get=1\n\n", 7, 1, buf, sizeof(buf));
		CHECK(!strcmp(buf, "listen_port=1\nerrno=0\n\n"), "client %zu: %s", i, buf);
	}
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);

	/* A request that never ends is cut off at the size limit. */
	int fd = connect_to(path);
	size_t sent = 0;
	char chunk[65536];
	bool dropped = false;

	memset(chunk, 'x', sizeof(chunk));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	CHECK(write(fd, "set=1\n", 6) == 6, "write");
	while (sent < 2 * (size_t)CP_UAPI_MAX_REQUEST && !dropped) {
		ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);

		if (n > 0)
			sent += (size_t)n;
		else if (errno == EPIPE || errno == ECONNRESET)
			dropped = true;
		cp_uapi_server_service(s);
	}
	CHECK(dropped && sent >= CP_UAPI_MAX_REQUEST - 6 && sent < CP_UAPI_MAX_REQUEST + (4 << 20),
	      "oversize request: dropped %d after %zu bytes", dropped, sent);
	close(fd);

	/* A response far bigger than the socket buffer goes out in pieces. */
	mg_key_from_hex(K1, d.peers[0].pk);
	d.n_peers = 1;
	d.extra_get_peers = 20000;
	fd = connect_to(path);
	CHECK(write(fd, "get=1\n\nget=1\n\n", 14) == 14, "write");
	size_t total = 0, ends = 0;
	char *big = malloc(1 << 20);

	for (int spins = 0; spins < 20000 && ends < 2; spins++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		cp_uapi_server_service(s);
		if (poll(&p, 1, 1) <= 0)
			continue;
		n = read(fd, big, 1 << 20);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			ends +=
			    big[i] == '0' && i + 2 < n && big[i + 1] == '\n' && big[i + 2] == '\n';
		total += (size_t)n;
	}
	CHECK(ends == 2 && total > 2 * 20000 * 200, "big responses: %zu ends, %zu bytes", ends,
	      total);
	free(big);
	close(fd);
	d.extra_get_peers = 0;

	/* Idle clients are closed after CP_UAPI_IDLE_TIMEOUT_MS, woken by the fd alone. */
	fd = connect_to(path);
	struct timespec t0, t1;
	bool closed = false;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 100 && !closed; i++) {
		struct pollfd p[2] = {{.fd = cp_uapi_server_fd(s), .events = POLLIN},
				      {.fd = fd, .events = POLLIN}};

		poll(p, 2, 1000);
		cp_uapi_server_service(s);
		closed = (p[1].revents & (POLLIN | POLLHUP)) && read(fd, buf, sizeof(buf)) <= 0;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (t1.tv_sec - t0.tv_sec > 10)
			break;
	}
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	CHECK(closed && secs >= CP_UAPI_IDLE_TIMEOUT_MS / 1000.0 - 0.1 && secs < 8,
	      "idle client: closed %d after %.2fs", closed, secs);
	close(fd);
	cp_uapi_server_close(s);
}

static int run_server_tests(void)
{
	snprintf(run_dir, sizeof(run_dir), "/tmp/mguapitest.%d/run/wg", (int)getpid());
	test_server_basic();
	test_server_stale();
	test_server_limits();
	rmdir(run_dir);
	*strrchr(run_dir, '/') = '\0';
	rmdir(run_dir);
	*strrchr(run_dir, '/') = '\0';
	rmdir(run_dir);
	return 0;
}

/* ---- the real wg(8) ---- */

#define WG_DIR "/var/run/wireguard"

struct wg_result {
	int status; /* exit code, or -1 */
	char out[16384];
};

/* Run wg with argv, servicing the server until it exits. */
static void run_wg(struct cp_uapi_server *s, struct wg_result *r, const char *const *argv)
{
	int pfd[2];
	size_t got = 0;
	pid_t pid;
	bool eof = false;
	struct timespec t0, t1;

	r->status = -1;
	r->out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvp("wg", (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!eof) {
		struct pollfd p[2] = {{.fd = cp_uapi_server_fd(s), .events = POLLIN},
				      {.fd = pfd[0], .events = POLLIN}};

		poll(p, 2, 100);
		cp_uapi_server_service(s);
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(pfd[0], r->out + got, sizeof(r->out) - 1 - got);

			eof = n <= 0;
			got += n > 0 ? (size_t)n : 0;
			r->out[got] = '\0';
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (t1.tv_sec - t0.tv_sec > 10) {
			kill(pid, SIGKILL);
			break;
		}
	}
	close(pfd[0]);
	int status;

	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
		r->status = WEXITSTATUS(status);
}

#define WG(s, r, ...) run_wg((s), (r), (const char *const[]){"wg", __VA_ARGS__, NULL})

static void b64(const uint8_t key[32], char out[45])
{
	mg_key_to_base64(key, out);
}

static void write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		perror(path);
	close(fd);
}

static void wg_show_and_set(struct cp_uapi_server *s, struct fake_dev *d, const char *name)
{
	char priv[45], pub[45], pka[45], pkb[45], psk[45], want[2048];
	uint8_t pubkey[32];
	struct wg_result r;

	b64(d->priv, priv);
	crypto_scalarmult_curve25519_base(pubkey, d->priv);
	b64(pubkey, pub);
	b64(d->peers[0].pk, pka);
	b64(d->peers[0].psk, psk);

	WG(s, &r, "show", name, "dump");
	snprintf(want, sizeof(want),
		 "%s\t%s\t51820\toff\n"
		 "%s\t%s\t198.18.0.2:51820\t10.99.0.0/24,fd99::2/128\t1700000000\t1000\t2000\t25\n",
		 priv, pub, pka, psk);
	CHECK(r.status == 0 && !strcmp(r.out, want), "wg show dump (%d):\n%s\nwant:\n%s", r.status,
	      r.out, want);

	WG(s, &r, "show", name);
	CHECK(r.status == 0 && strstr(r.out, "interface: ") && strstr(r.out, name) &&
		  strstr(r.out, "allowed ips: 10.99.0.0/24, fd99::2/128") &&
		  strstr(r.out, "persistent keepalive: every 25 seconds"),
	      "wg show (%d):\n%s", r.status, r.out);

	WG(s, &r, "show", "interfaces");
	CHECK(r.status == 0 && strstr(r.out, name), "wg show interfaces: %s", r.out);

	/* Add a peer, change the port. */
	uint8_t kb[32];

	randombytes_buf(kb, sizeof(kb));
	b64(kb, pkb);
	WG(s, &r, "set", name, "listen-port", "51999", "fwmark", "0x1234", "peer", pkb,
	   "allowed-ips", "10.1.0.7/16,fd01::/64", "endpoint", "[fd00::1]:51820",
	   "persistent-keepalive", "30");
	CHECK(r.status == 0, "wg set (%d): %s", r.status, r.out);
	CHECK(d->port == 51999 && d->fwmark == 0x1234 && d->n_peers == 2, "wg set applied: %s",
	      d->last_set);
	char k4[5];

	key4(k4, kb);
	snprintf(want, sizeof(want),
		 "port=51999 fwmark=4660 {%s ep=[fd00::1]:51820 ka=30 replace_ips "
		 "ips=10.1.0.0/16,fd01::/64}",
		 k4);
	CHECK(!strcmp(d->last_set, want), "wg set sent:\n  %s\n  want %s", d->last_set, want);

	WG(s, &r, "show", name, "dump");
	CHECK(r.status == 0 && strstr(r.out, "\t51999\t0x1234\n") &&
		  strstr(r.out, "[fd00::1]:51820\t10.1.0.0/16,fd01::/64\t0\t0\t0\t30"),
	      "dump after set:\n%s", r.out);

	/* Remove the first peer. */
	WG(s, &r, "set", name, "peer", pka, "remove");
	CHECK(r.status == 0 && d->n_peers == 1 && !memcmp(d->peers[0].pk, kb, 32) &&
		  strstr(d->last_set, "remove}"),
	      "wg set remove (%d): %s / %s", r.status, r.out, d->last_set);

	/* A preshared key from a file. */
	char pskpath[128];

	snprintf(pskpath, sizeof(pskpath), "/tmp/mguapitest.%d.psk", (int)getpid());
	write_text(pskpath, "OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY=\n");
	WG(s, &r, "set", name, "peer", pkb, "preshared-key", pskpath);
	CHECK(r.status == 0 && d->peers[0].has_psk && strstr(d->last_set, "psk=3903"),
	      "wg set psk (%d): %s / %s", r.status, r.out, d->last_set);
	unlink(pskpath);

	/* Failures reach the user. */
	d->fail_set = -EINVAL;
	WG(s, &r, "set", name, "listen-port", "1");
	CHECK(r.status != 0 && strstr(r.out, "Unable to modify interface: Invalid argument"),
	      "wg set failure (%d): %s", r.status, r.out);
	d->fail_set = 0;
	d->fail_get = -EIO;
	WG(s, &r, "show", name);
	CHECK(r.status != 0 && strstr(r.out, "Unable to access interface: Input/output error"),
	      "wg show failure (%d): %s", r.status, r.out);
	d->fail_get = 0;
}

static void wg_conf_files(struct cp_uapi_server *s, struct fake_dev *d, const char *name)
{
	char conf[2048], path[128], pka[45], pkb[45], pkc[45], newpriv[45];
	uint8_t ka[32], kb[32], kc[32], priv[32];
	struct wg_result r;

	WG(s, &r, "showconf", name);
	CHECK(r.status == 0 &&
		  strstr(r.out, "[Interface]\nListenPort = 51999\nFwMark = 0x1234\n"
				"PrivateKey = ") &&
		  strstr(r.out, "[Peer]\nPublicKey = ") &&
		  strstr(r.out, "AllowedIPs = 10.1.0.0/16, fd01::/64\n"
				"Endpoint = [fd00::1]:51820\nPersistentKeepalive = 30\n"),
	      "wg showconf (%d):\n%s", r.status, r.out);

	/* setconf: replaces everything. */
	randombytes_buf(priv, 32);
	randombytes_buf(ka, 32);
	randombytes_buf(kb, 32);
	randombytes_buf(kc, 32);
	b64(priv, newpriv);
	b64(ka, pka);
	b64(kb, pkb);
	b64(kc, pkc);
	snprintf(path, sizeof(path), "/tmp/mguapitest.%d.conf", (int)getpid());
	snprintf(conf, sizeof(conf),
		 "[Interface]\nPrivateKey = %s\nListenPort = 4000\n\n"
		 "[Peer]\nPublicKey = %s\nAllowedIPs = 10.5.0.0/24\nEndpoint = 192.0.2.1:5\n\n"
		 "[Peer]\nPublicKey = %s\nAllowedIPs = 10.6.0.0/24\n",
		 newpriv, pka, pkb);
	write_text(path, conf);
	WG(s, &r, "setconf", name, path);
	CHECK(r.status == 0 && strstr(d->last_set, "replace_peers") && d->port == 4000 &&
		  d->n_peers == 2 && !memcmp(d->priv, priv, 32) && !d->fwmark,
	      "wg setconf (%d): %s / %s", r.status, r.out, d->last_set);

	/* syncconf: a get, then a set that removes what the file lacks. */
	int gets = d->get_calls;

	snprintf(conf, sizeof(conf),
		 "[Interface]\nPrivateKey = %s\nListenPort = 4000\n\n"
		 "[Peer]\nPublicKey = %s\nAllowedIPs = 10.5.0.0/24, fd05::/64\n\n"
		 "[Peer]\nPublicKey = %s\nAllowedIPs = 10.7.0.0/24\n",
		 newpriv, pka, pkc);
	write_text(path, conf);
	WG(s, &r, "syncconf", name, path);
	struct fake_peer *a = fake_find(d, ka), *c = fake_find(d, kc);

	CHECK(r.status == 0 && d->get_calls > gets && d->n_peers == 2 && a && c &&
		  !fake_find(d, kb) && a->n_ips == 2 && c->n_ips == 1 &&
		  !strstr(d->last_set, "replace_peers"),
	      "wg syncconf (%d): %s / %s", r.status, r.out, d->last_set);
	unlink(path);
}

static int run_wg_tests(void)
{
	struct fake_dev *d = calloc(1, sizeof(*d));
	char name[16];
	struct wg_result r;
	struct stat st;
	bool made_dir = stat(WG_DIR, &st) < 0;
	struct cp_uapi_server *s;

	snprintf(name, sizeof(name), "mgtest%d", (int)getpid() % 1000000);
	d->has_priv = true;
	randombytes_buf(d->priv, 32);
	d->port = 51820;
	d->n_peers = 1;
	randombytes_buf(d->peers[0].pk, 32);
	randombytes_buf(d->peers[0].psk, 32);
	d->peers[0].has_psk = true;
	mg_sockaddr_parse("198.18.0.2:51820", &d->peers[0].ep);
	d->peers[0].ka = 25;
	mg_prefix_parse("10.99.0.0/24", &d->peers[0].ips[0]);
	mg_prefix_parse("fd99::2/128", &d->peers[0].ips[1]);
	d->peers[0].n_ips = 2;
	d->peers[0].rx = 1000;
	d->peers[0].tx = 2000;
	d->peers[0].hs_sec = 1700000000;

	s = cp_uapi_server_open(WG_DIR, name, &fake_ops, d);
	if (!s) {
		printf("SKIP: cannot serve %s/%s.sock: %s\n", WG_DIR, name, strerror(errno));
		free(d);
		return 77;
	}
	WG(s, &r, "--version");
	if (r.status != 0) {
		printf("SKIP: no usable wg tool (exit %d)\n", r.status);
		cp_uapi_server_close(s);
		free(d);
		return 77;
	}
	wg_show_and_set(s, d, name);
	wg_conf_files(s, d, name);
	cp_uapi_server_close(s);
	if (made_dir)
		rmdir(WG_DIR);
	free(d);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "parse";
	int ret = 0;

	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0)
		return 1;
	if (!strcmp(mode, "parse")) {
		test_parse_table();
		test_parse_nul();
		test_parse_huge();
		test_format_get();
	} else if (!strcmp(mode, "server")) {
		ret = run_server_tests();
	} else if (!strcmp(mode, "wg")) {
		ret = run_wg_tests();
	} else {
		fprintf(stderr, "usage: %s parse|server|wg\n", argv[0]);
		return 2;
	}
	if (ret == 77)
		return ret;
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
