// SPDX-License-Identifier: MIT
/*
 * STUN endpoint discovery (stun.c) against a shared-memory region made here
 * that this test drains and feeds as a fake dataplane would, on a clock the
 * test sets (cp_stun_tick and cp_stun_rx take the time):
 *
 *   - nothing goes out before a dataplane is attached and programmed; then
 *     one Binding request per server at once, from fresh transaction ids;
 *   - an answer counts only with the id outstanding at the server it comes
 *     from, once, within 5 s; a wrong id, source or message type, a
 *     duplicate, a late one are refused and counted;
 *   - one retransmission after 1 s, given up after 5 s; a round every
 *     interval, and one at once on a new dataplane;
 *   - the endpoints: deduplicated across servers, in server order, reported
 *     on change only; forgotten after 3 silent intervals (an address another
 *     server still reports stays);
 *   - a STUN answer punted through the ring reaches stun.c, not the
 *     handshake code; with STUN off it is refused;
 *   - servers by name: resolved at each round without blocking, asked at
 *     the address of the WAN port's family; a name that does not resolve
 *     is not asked, and the others go on;
 *   - behind a NAT (an endpoint that is not a WAN address with the listen
 *     port): coordination peers, existing and new, get a 25 s persistent
 *     keepalive, and lose it when that ends; a configured peer keeps its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "cp.h"
#include "stun.h"
#include "test_util.h"

#define S  (1000000000ull)
#define MS (1000000ull)

static char name[32];
static struct mg_shm shm;

/* What the notify callback was last told. */
static struct {
	unsigned calls, n;
	struct mg_sockaddr eps[MG_MAX_STUN_SERVERS];
} told;

static void on_notify(void *arg, const struct mg_sockaddr *eps, unsigned n)
{
	(void)arg;
	told.calls++;
	told.n = n;
	memcpy(told.eps, eps, n * sizeof(*eps));
}

static void device(struct cp_device *d, struct mg_config *cfg, const char *control)
{
	char text[1024], err[512];

	snprintf(text, sizeof(text),
		 "meshgate: { name = \"%s\"; max_peers = 64; };\n"
		 "dataplane: { ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";"
		 " addresses = [\"198.18.0.1/24\"]; gateway = \"198.18.0.254\"; } ); };\n%s",
		 name, control);
	if (mg_config_load_string(text, "t", 0, cfg, err, sizeof(err)) || cp_device_init(d, cfg) ||
	    cp_stun_init(d)) {
		fprintf(stderr, "device: %s\n", err);
		exit(2);
	}
}

/* Attach to the fake dataplane and drain the sync. */
static void attach(struct cp_device *d)
{
	struct mg_msg m;

	cp_dp_maintain(d);
	do {
		cp_dp_poll(d);
		while (mg_ring_recv(shm.cp2dp, &m) == 0)
			;
	} while (d->syncing || d->resync);
}

struct sent {
	unsigned n;
	struct mg_sockaddr to[8];
	uint8_t txid[8][MG_STUN_TXID_LEN];
	unsigned bad; /* not a Binding request */
};

/* The Binding requests control sent since the last call. */
static struct sent sent(void)
{
	struct sent v = {0};
	struct mg_msg m;

	while (mg_ring_recv(shm.cp2dp, &m) == 0) {
		if (m.hdr.type != MG_MSG_TX_UDP || v.n == 8 ||
		    mg_stun_parse_request(m.data, m.hdr.len, v.txid[v.n]) != MG_STUN_OK) {
			v.bad++;
			continue;
		}
		v.to[v.n++] = m.hdr.ep;
	}
	return v;
}

static struct mg_sockaddr sa(const char *text)
{
	struct mg_sockaddr a;

	if (mg_sockaddr_parse(text, &a))
		abort();
	return a;
}

/* The Binding success response txid gets from server `from`, saying `mapped`. */
static struct mg_msg answer(const char *from, const uint8_t *txid, const char *mapped)
{
	struct mg_msg m;
	struct mg_sockaddr ma = sa(mapped);

	memset(&m.hdr, 0, sizeof(m.hdr));
	m.hdr.type = MG_MSG_RX_UDP;
	m.hdr.ep = sa(from);
	m.hdr.len = (uint16_t)mg_stun_build_response(m.data, sizeof(m.data), txid, &ma);
	return m;
}

static const char *ep_str(const struct mg_sockaddr *a)
{
	static char buf[4][MG_SOCKADDR_STRLEN];
	static int k;

	return mg_sockaddr_fmt(a, buf[k++ % 4], MG_SOCKADDR_STRLEN);
}

#define S0 "203.0.113.1:3478"
#define S1 "203.0.113.2:3478"
#define S2 "[2001:db8::1]:3478"
#define V4 "203.0.113.7:41641"
#define V6 "[2001:db8::7]:41641"

static void rx(struct cp_device *d, const char *from, const uint8_t *txid, const char *mapped,
	       uint64_t now)
{
	struct mg_msg m = answer(from, txid, mapped);

	cp_stun_rx(d, &m, now);
}

static void test_discovery(void)
{
	struct mg_config cfg;
	struct cp_device d;
	uint64_t t0 = cp_now();
	uint8_t zero[MG_STUN_TXID_LEN] = {0};

	printf("-- requests, answers, endpoints\n");
	device(&d, &cfg,
	       "control: { stun_servers = [\"" S0 "\", \"" S1 "\", \"[2001:db8::1]:3478\"];"
	       " stun_interval = 10; };\n");
	cp_stun_set_notify(&d, on_notify, NULL);
	CHECK(d.stun && told.calls == 1 && told.n == 0, "STUN on; told at once: no endpoint yet");
	cp_stun_tick(&d, t0);
	CHECK(d.stun_sent == 0, "nothing sent before a dataplane is attached");

	attach(&d);
	cp_stun_tick(&d, t0);
	struct sent r1 = sent();
	CHECK(r1.n == 3 && !r1.bad && d.stun_sent == 3, "one Binding request per server (%u)",
	      r1.n);
	CHECK(!strcmp(ep_str(&r1.to[0]), S0) && !strcmp(ep_str(&r1.to[1]), S1) &&
		  !strcmp(ep_str(&r1.to[2]), S2),
	      "to %s, %s, %s", ep_str(&r1.to[0]), ep_str(&r1.to[1]), ep_str(&r1.to[2]));
	CHECK(memcmp(r1.txid[0], r1.txid[1], MG_STUN_TXID_LEN) &&
		  memcmp(r1.txid[1], r1.txid[2], MG_STUN_TXID_LEN) &&
		  memcmp(r1.txid[0], zero, MG_STUN_TXID_LEN),
	      "each with its own random transaction id");
	cp_stun_tick(&d, t0 + 100 * MS);
	CHECK(sent().n == 0, "and nothing more at the next tick");

	/* Refused: the wrong id, S1's id from S0, the right id from another
	 * port, a request instead of a response. */
	rx(&d, S0, zero, V4, t0 + 10 * MS);
	rx(&d, S0, r1.txid[1], V4, t0 + 10 * MS);
	rx(&d, "203.0.113.1:3479", r1.txid[0], V4, t0 + 10 * MS);
	struct mg_msg req = answer(S0, r1.txid[0], V4);
	req.hdr.len = (uint16_t)mg_stun_build_request(req.data, sizeof(req.data), r1.txid[0]);
	cp_stun_rx(&d, &req, t0 + 10 * MS);
	CHECK(d.stun_refused == 4 && d.stun_accepted == 0 && d.stun_endpoints == 0,
	      "wrong id, another server's id, wrong source port, a request: refused (%llu)",
	      (unsigned long long)d.stun_refused);

	/* S0's answer through the ring, as the dataplane punts it. */
	struct mg_msg m = answer(S0, r1.txid[0], V4);
	CHECK(mg_ring_send(shm.dp2cp, &m) == 0, "punted");
	cp_dp_poll(&d);
	CHECK(d.stun_accepted == 1 && d.stun_endpoints == 1 && told.calls == 2 && told.n == 1 &&
		  !strcmp(ep_str(&told.eps[0]), V4),
	      "S0's answer through the ring: endpoint %s, reported", V4);
	rx(&d, S0, r1.txid[0], V4, t0 + 20 * MS);
	CHECK(d.stun_refused == 5 && d.stun_accepted == 1, "the same answer again: refused");

	/* S1 and S2 silent: each request once more after 1 s, same id. */
	cp_stun_tick(&d, t0 + 1100 * MS);
	struct sent re = sent();
	CHECK(re.n == 2 && !strcmp(ep_str(&re.to[0]), S1) && !strcmp(ep_str(&re.to[1]), S2) &&
		  !memcmp(re.txid[0], r1.txid[1], MG_STUN_TXID_LEN) &&
		  !memcmp(re.txid[1], r1.txid[2], MG_STUN_TXID_LEN),
	      "S1 and S2 retransmitted after 1 s with their ids (%u)", re.n);
	cp_stun_tick(&d, t0 + 2100 * MS);
	CHECK(sent().n == 0, "only once");

	rx(&d, S1, r1.txid[1], V4, t0 + 2200 * MS);
	CHECK(d.stun_accepted == 2 && d.stun_endpoints == 1 && told.calls == 2,
	      "S1 says the same: still one endpoint, nothing reported");
	rx(&d, S2, r1.txid[2], V6, t0 + 2200 * MS);
	CHECK(d.stun_accepted == 3 && d.stun_endpoints == 2 && told.calls == 3 && told.n == 2 &&
		  !strcmp(ep_str(&told.eps[0]), V4) && !strcmp(ep_str(&told.eps[1]), V6),
	      "S2 says %s: reported after %s", V6, V4);

	/* Round 2 at 10 s: retransmitted at 11 s, given up at 15 s. */
	cp_stun_tick(&d, t0 + 9 * S);
	CHECK(sent().n == 0, "no round before the interval");
	cp_stun_tick(&d, t0 + 10 * S);
	struct sent r2 = sent();
	CHECK(r2.n == 3 && memcmp(r2.txid[0], r1.txid[0], MG_STUN_TXID_LEN),
	      "round 2 at 10 s, new ids");
	cp_stun_tick(&d, t0 + 11 * S + 100 * MS);
	CHECK(sent().n == 3, "all three retransmitted");
	cp_stun_tick(&d, t0 + 15 * S + 100 * MS);
	CHECK(sent().n == 0, "then given up");
	rx(&d, S0, r2.txid[0], V4, t0 + 15 * S + 200 * MS);
	CHECK(d.stun_refused == 6 && d.stun_accepted == 3, "an answer after that: refused");

	/* Round 3 at 20 s, answered at 25.5 s with no tick between: too late. */
	cp_stun_tick(&d, t0 + 20 * S);
	struct sent r3 = sent();
	rx(&d, S0, r3.txid[0], V4, t0 + 25 * S + 500 * MS);
	CHECK(r3.n == 3 && d.stun_refused == 7, "an answer after 5 s: refused");

	/* 3 silent intervals since S0's answer (t0): its address goes, but S1
	 * (answered at 2.2 s) still says it. */
	cp_stun_tick(&d, t0 + 30 * S + 500 * MS);
	CHECK(d.stun_endpoints == 2 && told.calls == 3, "S0 forgotten, %s stays (S1)", V4);
	cp_stun_tick(&d, t0 + 32 * S + 300 * MS);
	CHECK(d.stun_endpoints == 0 && told.calls == 4 && told.n == 0,
	      "S1 and S2 forgotten too: no endpoint, reported");
	sent();

	/* A new dataplane: a round at once, not at the next interval. */
	d.shm_ino ^= 1;
	cp_stun_tick(&d, t0 + 33 * S);
	CHECK(sent().n == 3, "a new dataplane: a round at once");
	d.resync = true;
	d.shm_ino ^= 1;
	cp_stun_tick(&d, t0 + 33 * S + 500 * MS);
	CHECK(sent().n == 0, "but not while it is being programmed");
	d.resync = false;

	CHECK(d.stun_endpoints == 0, "no public endpoint known");
	cp_device_fini(&d);
	CHECK(!d.stun, "freed");
	mg_config_free(&cfg);
}

/* A full netmap with one node (key byte k), applied to d. */
static void netmap_one(struct cp_device *d, struct cp_coord_netmap *nm, uint8_t k, uint64_t ver)
{
	struct cp_coord_map m = {.version = ver, .full = true};

	m.peers = calloc(1, sizeof(*m.peers));
	m.n_peers = 1;
	m.peers[0].node_id = k;
	snprintf(m.peers[0].name, sizeof(m.peers[0].name), "node%u", k);
	memset(m.peers[0].node_key, k, 32);
	m.peers[0].eps[m.peers[0].n_eps++] = sa("203.0.113.50:51820");
	if (cp_coord_netmap_apply(nm, d, &m))
		abort();
	free(m.peers);
}

static struct cp_peer *peer_key(struct cp_device *d, uint8_t k)
{
	uint8_t key[32];

	memset(key, k, 32);
	return cp_peer_find(d, key);
}

/* Each tick: a round; S0 answers saying mapped. */
static void round_says(struct cp_device *d, uint64_t now, const char *mapped)
{
	cp_stun_tick(d, now);
	struct sent r = sent();
	if (r.n != 1)
		abort();
	rx(d, S0, r.txid[0], mapped, now + MS);
}

static void test_nat(void)
{
	struct mg_config cfg;
	struct cp_device d;
	struct cp_coord_netmap *nm = cp_coord_netmap_new();
	uint64_t t0 = cp_now();
	int err;

	printf("-- behind a NAT: keepalives to coordination peers\n");
	device(&d, &cfg, "control: { stun_servers = [\"" S0 "\"]; stun_interval = 10; };\n");
	attach(&d);
	/* A configured peer with its own keepalive, and a coordination peer. */
	uint8_t ck[32];
	memset(ck, 0xc1, 32);
	struct cp_peer *conf = cp_peer_create(&d, ck, &err);
	CHECK(conf && nm, "a configured peer");
	conf->persistent_keepalive = 7;
	netmap_one(&d, nm, 0x11, 1);
	struct cp_peer *a = peer_key(&d, 0x11);
	sent();
	CHECK(a && a->from_coord && a->persistent_keepalive == 0 && !d.behind_nat,
	      "a coordination peer: no keepalive before STUN says anything");

	round_says(&d, t0, "198.18.0.1:51820");
	CHECK(d.stun_endpoints == 1 && !d.behind_nat,
	      "mapped endpoint = our WAN address and listen port: not behind a NAT");
	CHECK(a->persistent_keepalive == 0 && conf->persistent_keepalive == 7, "nothing changed");

	round_says(&d, t0 + 10 * S, "198.18.0.1:41641");
	CHECK(d.behind_nat, "our address with another port: behind a NAT");
	struct mg_msg m;
	unsigned pushed = 0;
	while (mg_ring_recv(shm.cp2dp, &m) == 0)
		if (m.hdr.type == MG_MSG_PEER_SET && m.hdr.peer == a->slot &&
		    ((struct mg_msg_peer *)m.data)->persistent_keepalive == MG_NAT_KEEPALIVE)
			pushed++;
	CHECK(pushed == 1, "and the dataplane is told (%u)", pushed);
	round_says(&d, t0 + 20 * S, V4);
	CHECK(d.behind_nat, "a foreign address: behind a NAT");
	CHECK(a->persistent_keepalive == MG_NAT_KEEPALIVE, "coordination peer: keepalive %u s",
	      a->persistent_keepalive);
	CHECK(conf->persistent_keepalive == 7, "configured peer keeps its own (%u)",
	      conf->persistent_keepalive);

	netmap_one(&d, nm, 0x22, 2); /* node 0x11 goes, 0x22 comes */
	struct cp_peer *b = peer_key(&d, 0x22);
	CHECK(!peer_key(&d, 0x11) && b && b->persistent_keepalive == MG_NAT_KEEPALIVE,
	      "a coordination peer made behind the NAT: keepalive %u s from the start",
	      b ? b->persistent_keepalive : 0);
	sent();

	round_says(&d, t0 + 30 * S, "198.18.0.1:51820");
	CHECK(!d.behind_nat && b->persistent_keepalive == 0 && conf->persistent_keepalive == 7,
	      "back to our own endpoint: not behind a NAT, keepalive off; configured peer: %u",
	      conf->persistent_keepalive);
	round_says(&d, t0 + 40 * S, V4);
	CHECK(d.behind_nat && b->persistent_keepalive == MG_NAT_KEEPALIVE, "behind it again");
	/* S0 silent for 3 intervals: nothing known, nothing assumed. */
	cp_stun_tick(&d, t0 + 50 * S);
	cp_stun_tick(&d, t0 + 60 * S);
	cp_stun_tick(&d, t0 + 70 * S + MS);
	CHECK(d.stun_endpoints == 0 && !d.behind_nat && b->persistent_keepalive == 0,
	      "no endpoint known: not behind a NAT");
	sent();
	cp_coord_netmap_free(nm);
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

/* Tick on the test clock `at` until `want` requests went out (a name's
 * lookup runs in glibc's thread), for up to 3 s of real time. */
static struct sent tick_until_sent(struct cp_device *d, uint64_t at, unsigned want)
{
	struct sent v = {0};

	for (int i = 0; i < 300 && v.n < want; i++) {
		cp_stun_tick(d, at);
		struct sent more = sent();
		for (unsigned k = 0; k < more.n && v.n < 8; k++) {
			v.to[v.n] = more.to[k];
			memcpy(v.txid[v.n++], more.txid[k], MG_STUN_TXID_LEN);
		}
		v.bad += more.bad;
		if (v.n < want)
			usleep(10000);
	}
	return v;
}

static void test_names(void)
{
	struct mg_config cfg;
	struct cp_device d;
	uint64_t t0 = cp_now();

	printf("-- servers by name\n");
	/* localhost is 127.0.0.1 and ::1 in /etc/hosts; .invalid never resolves
	 * (RFC 2606), quickly or, without a resolver, not within 5 s. */
	device(&d, &cfg,
	       "control: { stun_servers = [\"stun.invalid:3478\", \"localhost:3478\"];"
	       " stun_interval = 10; };\n");
	attach(&d);
	struct sent r = tick_until_sent(&d, t0, 1);
	CHECK(
	    r.n == 1 && r.bad == 0 && !strcmp(ep_str(&r.to[0]), "127.0.0.1:3478"),
	    "localhost resolved: one request, to its IPv4 address (the WAN port's family): %u, %s",
	    r.n, r.n ? ep_str(&r.to[0]) : "-");
	rx(&d, "[::1]:3478", r.txid[0], V4, t0 + MS);
	CHECK(d.stun_refused == 1 && d.stun_endpoints == 0,
	      "an answer from its other address is refused");
	rx(&d, "127.0.0.1:3478", r.txid[0], V4, t0 + MS);
	CHECK(d.stun_accepted == 1 && d.stun_endpoints == 1, "the answer from it counts");
	cp_stun_tick(&d, t0 + 6 * S);
	r = sent();
	CHECK(r.n == 0, "stun.invalid: given up, never asked (%u sent)", r.n);
	CHECK(d.stun_endpoints == 1, "localhost's endpoint stays");
	r = tick_until_sent(&d, t0 + 10 * S, 1);
	CHECK(r.n == 1 && !strcmp(ep_str(&r.to[0]), "127.0.0.1:3478"),
	      "the next round resolves and asks again: %u", r.n);
	rx(&d, "127.0.0.1:3478", r.txid[0], V4, t0 + 10 * S + MS);
	CHECK(d.stun_accepted == 2 && d.stun_sent == 2, "answered again (%llu sent)",
	      (unsigned long long)d.stun_sent);
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

/* A name and its address: two servers at one address, each answered by
 * its own transaction id. */
static void test_shared_addr(void)
{
	struct mg_config cfg;
	struct cp_device d;
	uint64_t t0 = cp_now();

	printf("-- two servers at one address\n");
	device(&d, &cfg,
	       "control: { stun_servers = [\"127.0.0.1:3478\", \"localhost:3478\"];"
	       " stun_interval = 10; };\n");
	attach(&d);
	struct sent r = tick_until_sent(&d, t0, 2);
	CHECK(r.n == 2 && !strcmp(ep_str(&r.to[0]), "127.0.0.1:3478") &&
		  !strcmp(ep_str(&r.to[1]), "127.0.0.1:3478") &&
		  memcmp(r.txid[0], r.txid[1], MG_STUN_TXID_LEN),
	      "two requests to 127.0.0.1:3478 under two ids (%u)", r.n);
	rx(&d, "127.0.0.1:3478", r.txid[1], V4, t0 + MS);
	rx(&d, "127.0.0.1:3478", r.txid[0], V4, t0 + MS);
	CHECK(d.stun_accepted == 2 && d.stun_refused == 0,
	      "both answers taken, each by its own server (%llu accepted, %llu refused)",
	      (unsigned long long)d.stun_accepted, (unsigned long long)d.stun_refused);
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

static void test_off(void)
{
	struct mg_config cfg;
	struct cp_device d;
	uint8_t txid[MG_STUN_TXID_LEN] = {1};

	printf("-- STUN off\n");
	device(&d, &cfg, "");
	CHECK(!d.stun, "no stun_servers: off");
	attach(&d);
	cp_stun_tick(&d, cp_now());
	CHECK(sent().n == 0 && d.stun_sent == 0, "nothing sent");
	struct mg_msg m = answer(S0, txid, V4);
	mg_ring_send(shm.dp2cp, &m);
	cp_dp_poll(&d);
	CHECK(d.stun_refused == 1 && d.stun_accepted == 0 && d.handshakes_refused == 0,
	      "a punted STUN message is refused by stun.c, not seen as a handshake");
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

int main(void)
{
	if (sodium_init() < 0)
		return 2;
	snprintf(name, sizeof(name), "tstun%d", (int)getpid() % 100000);
	if (mg_shm_create(&shm, name, 64, 2)) {
		fprintf(stderr, "mg_shm_create failed\n");
		return 2;
	}
	test_discovery();
	test_nat();
	test_names();
	test_shared_addr();
	test_off();
	mg_shm_destroy(&shm);
	return test_finish("test_cp_stun");
}
