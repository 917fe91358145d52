// SPDX-License-Identifier: MIT
/*
 * Disco path discovery (disco.c) for a peer reached through a DERP relay,
 * with its hooks in dplink.c (punted RX_UDP disco datagrams) and derp.c
 * (disco datagrams relayed from a peer). The test plays peer B with the codec
 * of common/disco.h, a fake DERP relay on 127.0.0.1 driven inline between
 * the client's steps, and a fake dataplane: a shared-memory region it drains
 * (cp2dp) and feeds (dp2cp), both from test_relay.c as test_cp_derp.c uses
 * them.
 *
 *   - rounds: a Ping to each of B's direct endpoints (the DERP one and a
 *     port-0 one skipped) and a CallMeMaybe through the relay listing our
 *     wan addresses with the listen port; every 60 s while the tunnel is
 *     idle, every 5 s while it carried data within 45 s (the dataplane's
 *     per-peer counters, on a TSC this test makes equal to the monotonic
 *     clock); none for a peer that is direct, has no session or no
 *     candidates;
 *   - a Pong answering a ping in flight, from where it went: the peer goes
 *     direct (PEER_SET to the dataplane) and rounds stop;
 *   - refusals: unknown txid, another source, the same Pong twice, a stale
 *     Pong (pings stamped 6 s in the past by a tick), through the relay,
 *     no peer, a peer without disco state, the wrong receiver, garbage
 *     behind the magic, a relayed datagram whose sender is not the key the
 *     relay vouches for;
 *   - Ping -> Pong over UDP and through the relay; CallMeMaybe -> pings at
 *     once, at most every 2 s (one real 2.1 s wait), at most 4 endpoints;
 *   - a peer with disco state removed (leaks show under ASan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "cp.h"
#include "derp.h"
#include "disco.h"
#include "keys.h"
#include "test_relay.h"
#include "test_util.h"

#define LISTEN_PORT 41234

static char name[32];
static struct mg_shm shm;  /* the fake dataplane */
static struct relay relay; /* the fake relay */
static struct relay *const R0 = &relay;

/* ---- the device and the fake dataplane ------------------------------------------- */

static void device(struct cp_device *d, struct mg_config *cfg)
{
	char text[2048], err[512];

	snprintf(text, sizeof(text),
		 "meshgate: { name = \"%s\"; max_peers = 64; listen_port = %u; };\n"
		 "dataplane: { ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";"
		 " addresses = [\"198.18.0.1/24\", \"2001:db8:1::1/64\", \"fe80::1/64\"];"
		 " gateway = \"198.18.0.254\"; } ); };\n"
		 "control: { derp_regions = ( { id = 1; server = \"127.0.0.1:%u\"; } ); };\n",
		 name, LISTEN_PORT, R0->port);
	err[0] = '\0';
	if (mg_config_load_string(text, "t", 0, cfg, err, sizeof(err)) || cp_device_init(d, cfg) ||
	    cp_derp_init(d)) {
		fprintf(stderr, "device: %s\n", err);
		exit(2);
	}
}

/* The dataplane's counters say the peer's tunnel carried data at mono ns t
 * (0: never): the TSC is the monotonic clock in ns (set up in main). */
static void traffic(const struct cp_peer *p, uint64_t rx_ns, uint64_t tx_ns)
{
	mg_shm_stats(&shm, 0, p->slot)->last_rx_data_tsc = rx_ns;
	mg_shm_stats(&shm, 1, p->slot)->last_tx_data_tsc = tx_ns;
}

/* ---- playing the peer ------------------------------------------------------------ */

struct node {
	uint8_t priv[32], pub[32];
};

/* m sealed by `from` to the receiver's public key. */
static size_t seal(uint8_t *out, const struct node *from, const uint8_t to[32],
		   const struct mg_disco_msg *m)
{
	uint8_t nonce[MG_DISCO_NONCE_LEN];

	randombytes_buf(nonce, sizeof(nonce));
	return mg_disco_seal(out, MG_DISCO_MAX_LEN, from->pub, from->priv, to, nonce, m);
}

static struct mg_disco_msg msg_pong(const uint8_t txid[MG_DISCO_TXID_LEN], const char *src)
{
	struct mg_disco_msg m = {.type = MG_DISCO_PONG, .src = sa(src)};

	memcpy(m.txid, txid, MG_DISCO_TXID_LEN);
	return m;
}

static struct mg_disco_msg msg_ping(const struct node *from)
{
	struct mg_disco_msg m = {.type = MG_DISCO_PING, .has_node_key = true};

	randombytes_buf(m.txid, sizeof(m.txid));
	memcpy(m.node_key, from->pub, 32);
	return m;
}

static struct mg_disco_msg msg_cmm(const char *const *eps, unsigned n)
{
	struct mg_disco_msg m = {.type = MG_DISCO_CALL_ME_MAYBE, .n_eps = n};

	for (unsigned i = 0; i < n; i++)
		m.eps[i] = sa(eps[i]);
	return m;
}

/* A punted datagram from `from`, as the dataplane hands it over. */
static bool udp_in(struct cp_device *d, const char *from, const uint8_t *pkt, size_t len)
{
	struct mg_msg m;

	memset(&m.hdr, 0, sizeof(m.hdr));
	m.hdr.type = MG_MSG_RX_UDP;
	m.hdr.ep = sa(from);
	m.hdr.len = (uint16_t)len;
	memcpy(m.data, pkt, len);
	if (mg_ring_send(shm.dp2cp, &m))
		return false;
	return cp_dp_poll(d) == 1;
}

/* A message sealed by `from` to the device, punted from `addr`. */
static bool udp_msg(struct cp_device *d, const struct node *from, const char *addr,
		    const struct mg_disco_msg *m)
{
	uint8_t pkt[MG_DISCO_MAX_LEN];
	size_t n = seal(pkt, from, d->local.public_key, m);

	return n && udp_in(d, addr, pkt, n);
}

/* The same, relayed from key src (normally from's own key). */
static bool relay_msg(struct cp_device *d, const uint8_t src[32], const struct node *from,
		      const struct mg_disco_msg *m)
{
	uint8_t pkt[MG_DISCO_MAX_LEN];
	size_t n = seal(pkt, from, d->local.public_key, m);

	if (!n)
		return false;
	relay_recv_packet(R0, src, pkt, n);
	return relay_sync(d, R0);
}

/* What the device sent the dataplane: TX_UDP datagrams that open under
 * B's key as disco messages from the device, PEER_SETs, anything else. */
#define MAX_SEEN 16
struct seen {
	unsigned n, bad, peer_set, other;
	struct mg_sockaddr to[MAX_SEEN];
	struct mg_disco_msg m[MAX_SEEN];
	struct mg_msg_peer ps; /* the last PEER_SET */
	uint32_t ps_slot;
};

static void collect(const struct cp_device *d, const struct node *b, struct seen *s)
{
	static struct mg_msg m;

	memset(s, 0, sizeof(*s));
	while (mg_ring_recv(shm.cp2dp, &m) == 0) {
		if (m.hdr.type == MG_MSG_PEER_SET) {
			s->peer_set++;
			memcpy(&s->ps, m.data, sizeof(s->ps));
			s->ps_slot = m.hdr.peer;
		} else if (m.hdr.type != MG_MSG_TX_UDP) {
			s->other++;
		} else if (s->n < MAX_SEEN && mg_disco_is(m.data, m.hdr.len) &&
			   !memcmp(mg_disco_sender(m.data), d->local.public_key, 32) &&
			   mg_disco_open(m.data, m.hdr.len, b->priv, &s->m[s->n]) == MG_DISCO_OK) {
			s->to[s->n++] = m.hdr.ep;
		} else {
			s->bad++;
		}
	}
}

/* The index of the datagram sent to addr, or -1. */
static int sent_to(const struct seen *s, const char *addr)
{
	struct mg_sockaddr a = sa(addr);

	for (unsigned i = 0; i < s->n; i++)
		if (sa_eq(&s->to[i], &a))
			return (int)i;
	return -1;
}

/* Pings to exactly these addresses, each with the device's node key. */
static bool pings_to(const struct cp_device *d, const struct seen *s, const char *const *addrs,
		     unsigned n)
{
	if (s->n != n || s->bad || s->other || s->peer_set)
		return false;
	for (unsigned i = 0; i < n; i++) {
		int k = sent_to(s, addrs[i]);
		if (k < 0 || s->m[k].type != MG_DISCO_PING || !s->m[k].has_node_key ||
		    memcmp(s->m[k].node_key, d->local.public_key, 32))
			return false;
		for (int j = 0; j < k; j++)
			if (!memcmp(s->m[j].txid, s->m[k].txid, MG_DISCO_TXID_LEN))
				return false; /* txids are fresh */
	}
	return true;
}

static bool nothing_to_dp(const struct cp_device *d, const struct node *b)
{
	struct seen s;

	collect(d, b, &s);
	return !s.n && !s.bad && !s.peer_set && !s.other;
}

/* What reached the relay: SendPackets to `to` that open under b's key. */
struct relayed {
	unsigned n, bad, other;
	struct mg_disco_msg m[4];
};

static void collect_relay(struct cp_device *d, const struct node *b, struct relayed *r)
{
	memset(r, 0, sizeof(*r));
	if (!relay_sync(d, R0))
		r->other++;
	for (unsigned i = 0; i < R0->qn; i++) {
		const struct frame *f = &R0->q[i];
		uint8_t key[32];
		const uint8_t *pkt;
		size_t len;

		if (f->type != MG_DERP_SEND_PACKET) {
			r->other++;
			continue;
		}
		if (mg_derp_parse_packet(f->body, f->len, key, &pkt, &len) == MG_DERP_OK &&
		    !memcmp(key, b->pub, 32) && r->n < 4 && mg_disco_is(pkt, len) &&
		    !memcmp(mg_disco_sender(pkt), d->local.public_key, 32) &&
		    mg_disco_open(pkt, len, b->priv, &r->m[r->n]) == MG_DISCO_OK)
			r->n++;
		else
			r->bad++;
	}
	R0->qn = 0;
}

static bool nothing_relayed(struct cp_device *d, const struct node *b)
{
	struct relayed r;

	collect_relay(d, b, &r);
	return !r.n && !r.bad && !r.other;
}

/* ---- counters ---------------------------------------------------------------------- */

static uint64_t base[CP_DISCO_STAT_COUNT];

static void mark(const struct cp_device *d)
{
	memcpy(base, d->disco, sizeof(base));
}

/* Every counter moved by exactly this much since mark() (in enum order:
 * ping_sent, ping_rcvd, pong_sent, pong_rcvd, cmm_sent, cmm_rcvd, direct,
 * refused). */
static bool deltas(const struct cp_device *d, const int want[CP_DISCO_STAT_COUNT])
{
	for (int i = 0; i < CP_DISCO_STAT_COUNT; i++)
		if (d->disco[i] - base[i] != (uint64_t)want[i])
			return false;
	return true;
}

static const char *dstr(const struct cp_device *d)
{
	static char buf[160];
	int n = 0;

	for (int i = 0; i < CP_DISCO_STAT_COUNT; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s%llu", i ? " " : "",
			      (unsigned long long)(d->disco[i] - base[i]));
	return buf;
}

#define DELTAS(ps, pr, os, orr, cs, cr, dir, ref)                                                  \
	deltas(d, (const int[CP_DISCO_STAT_COUNT]){ps, pr, os, orr, cs, cr, dir, ref})

/* ---- the tests --------------------------------------------------------------------- */

static struct node B, C, X; /* peers B and C, stranger X */

static const char *const cand_ok[2] = {"198.18.0.9:51820", "[2001:db8::9]:51820"};

static void set_cands(struct cp_device *d, struct cp_peer *p, const char *who)
{
	struct mg_sockaddr eps[4] = {sa(cand_ok[0]), sa(cand_ok[1]), mg_sockaddr_derp(1),
				     sa("198.18.0.10:1")};

	eps[3].port = 0;
	CHECK(cp_disco_set_candidates(d, p, eps, 4) == 0 && p->disco, "%s's candidates set", who);
}

/* A round of pings at 198.18.0.9 and [2001:db8::9] and a CallMeMaybe. */
static bool round_seen(struct cp_device *d, struct seen *s, struct relayed *r)
{
	collect(d, &B, s);
	collect_relay(d, &B, r);
	return pings_to(d, s, cand_ok, 2) && r->n == 1 && !r->bad && !r->other &&
	       r->m[0].type == MG_DISCO_CALL_ME_MAYBE;
}

static bool quiet(struct cp_device *d)
{
	return nothing_to_dp(d, &B) && nothing_relayed(d, &B);
}

/* Stop and restart the peer's rounds (it went direct and came back to the
 * relay): the next tick at `now` runs a round. */
static void relayed_again(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	p->endpoint = sa("198.18.0.99:51820");
	cp_disco_tick(d, now);
	p->endpoint = mg_sockaddr_derp(1);
}

/* B: relayed through region 1, with its candidates and a session. */
static void make_b(struct cp_device *d, struct cp_peer *p)
{
	p->derp_region = 1;
	set_cands(d, p, "B");
	p->endpoint = mg_sockaddr_derp(1);
	p->kp_cur = 0x5a5a0001; /* a session, as a completed handshake leaves */
	drain(&shm);
}

static bool has_ep(const struct mg_disco_msg *m, const char *addr)
{
	struct mg_sockaddr a = sa(addr);

	for (unsigned i = 0; i < m->n_eps; i++)
		if (sa_eq(&m->eps[i], &a))
			return true;
	return false;
}

static void test_rounds(struct cp_device *d, struct cp_peer *p)
{
	struct seen s;
	struct relayed r;
	char own[64];

	printf("-- rounds for a relayed peer with a session\n");
	drain(&shm);
	R0->qn = 0;
	mark(d);
	uint64_t t0 = cp_now();
	cp_disco_tick(d, t0);
	collect(d, &B, &s);
	CHECK(pings_to(d, &s, cand_ok, 2),
	      "a Ping each to %s and %s, opening under B's key, node key = ours (%u sent, %u bad, "
	      "%u other)",
	      cand_ok[0], cand_ok[1], s.n, s.bad, s.other);
	CHECK(s.n == 2 && memcmp(s.m[0].txid, s.m[1].txid, MG_DISCO_TXID_LEN),
	      "with different txids");
	CHECK(sent_to(&s, "127.3.3.40:1") < 0 && sent_to(&s, "198.18.0.10:1") < 0,
	      "the DERP candidate and the port-0 one were skipped");
	collect_relay(d, &B, &r);
	CHECK(r.n == 1 && !r.bad && !r.other && r.m[0].type == MG_DISCO_CALL_ME_MAYBE,
	      "a CallMeMaybe through the relay, SendPacket to B's key (%u, bad %u, other %u)", r.n,
	      r.bad, r.other);
	snprintf(own, sizeof(own), "198.18.0.1:%u", LISTEN_PORT);
	CHECK(r.n == 1 && has_ep(&r.m[0], own), "it lists %s (wan address, listen port)", own);
	snprintf(own, sizeof(own), "[2001:db8:1::1]:%u", LISTEN_PORT);
	CHECK(r.n == 1 && has_ep(&r.m[0], own) && r.m[0].n_eps == 2,
	      "and %s, not fe80::1 (%u endpoints)", own, r.n ? r.m[0].n_eps : 0);
	CHECK(DELTAS(2, 0, 0, 0, 1, 0, 0, 0), "ping_sent 2, call_me_maybe_sent 1 (%s)", dstr(d));

	/* No traffic: the next round is a minute later. */
	mark(d);
	cp_disco_tick(d, t0 + 1 * S);
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 0, 0, 0), "1 s later: nothing");
	cp_disco_tick(d, t0 + 5 * S);
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 0, 0, 0),
	      "5 s later, the tunnel idle (no data ever): nothing");
	cp_disco_tick(d, t0 + 59 * S);
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 0, 0, 0), "59 s later: nothing");
	cp_disco_tick(d, t0 + 60 * S);
	CHECK(round_seen(d, &s, &r) && DELTAS(2, 0, 0, 0, 1, 0, 0, 0),
	      "60 s later: a new round (%s)", dstr(d));

	/* Data received 20 s before the next round: busy, rounds every 5 s. */
	traffic(p, t0 + 100 * S, 0);
	mark(d);
	cp_disco_tick(d, t0 + 119 * S);
	CHECK(quiet(d), "119 s: nothing");
	cp_disco_tick(d, t0 + 120 * S);
	CHECK(round_seen(d, &s, &r), "120 s (data received at 100 s): a round");
	cp_disco_tick(d, t0 + 124 * S);
	CHECK(quiet(d), "124 s: nothing");
	cp_disco_tick(d, t0 + 125 * S);
	CHECK(round_seen(d, &s, &r), "125 s: busy, a round 5 s after the last");
	/* Data sent (counted on another lcore's stats slot) keeps it busy. */
	traffic(p, 0, t0 + 126 * S);
	cp_disco_tick(d, t0 + 130 * S);
	CHECK(round_seen(d, &s, &r), "130 s (data sent at 126 s): a round");
	cp_disco_tick(d, t0 + 134 * S);
	CHECK(quiet(d), "134 s: nothing");
	cp_disco_tick(d, t0 + 172 * S);
	CHECK(round_seen(d, &s, &r), "172 s (46 s after the last data): a round, now idle");
	cp_disco_tick(d, t0 + 177 * S);
	CHECK(quiet(d), "177 s: nothing (idle again)");
	cp_disco_tick(d, t0 + 231 * S);
	CHECK(quiet(d), "231 s: nothing");
	cp_disco_tick(d, t0 + 232 * S);
	CHECK(round_seen(d, &s, &r), "232 s: the idle round, 60 s after the last");
	CHECK(DELTAS(10, 0, 0, 0, 5, 0, 0, 0), "5 rounds: ping_sent 10, call_me_maybe_sent 5 (%s)",
	      dstr(d));
	traffic(p, 0, 0);
}

static void test_no_rounds(struct cp_device *d, struct cp_peer *p)
{
	uint64_t t = cp_now() + 1000 * S;
	struct seen s;
	struct relayed r;

	printf("-- no rounds for a direct peer, without a session, without candidates\n");
	mark(d);
	p->endpoint = sa("198.18.0.9:51820");
	cp_disco_tick(d, t);
	CHECK(quiet(d), "endpoint direct: nothing");
	p->endpoint = mg_sockaddr_derp(1);
	uint32_t kp = p->kp_cur;
	p->kp_cur = 0;
	cp_disco_tick(d, t + 1 * S);
	CHECK(quiet(d), "relayed, no session (kp_cur 0): nothing");
	p->kp_cur = kp;
	p->endpoint = (struct mg_sockaddr){0};
	cp_disco_tick(d, t + 2 * S);
	CHECK(quiet(d), "no endpoint at all: nothing");
	p->endpoint = mg_sockaddr_derp(1);
	struct mg_sockaddr useless[2] = {mg_sockaddr_derp(1), sa("198.18.0.10:1")};
	useless[1].port = 0;
	CHECK(cp_disco_set_candidates(d, p, useless, 2) == 0, "only a DERP and a port-0 candidate");
	cp_disco_tick(d, t + 3 * S);
	CHECK(quiet(d), "relayed with a session, no usable candidate: nothing");
	CHECK(cp_disco_set_candidates(d, p, NULL, 0) == 0, "no candidates");
	cp_disco_tick(d, t + 4 * S);
	CHECK(quiet(d), "none at all: nothing");
	CHECK(DELTAS(0, 0, 0, 0, 0, 0, 0, 0), "no counter moved (%s)", dstr(d));

	/* Candidates back: a round at once (the peer is newly relayed). */
	set_cands(d, p, "B");
	cp_disco_tick(d, t + 5 * S);
	CHECK(round_seen(d, &s, &r), "candidates back: a round at once");

	/* More than CP_DISCO_MAX_CAND candidates: the first 4 usable ones. */
	struct mg_sockaddr many[6] = {sa("203.0.113.1:1"), mg_sockaddr_derp(1),
				      sa("203.0.113.2:2"), sa("203.0.113.3:3"),
				      sa("203.0.113.4:4"), sa("203.0.113.5:5")};
	static const char *const first4[4] = {"203.0.113.1:1", "203.0.113.2:2", "203.0.113.3:3",
					      "203.0.113.4:4"};
	CHECK(cp_disco_set_candidates(d, p, many, 6) == 0, "6 candidates, one of them DERP");
	relayed_again(d, p, t + 6 * S);
	cp_disco_tick(d, t + 6 * S);
	collect(d, &B, &s);
	collect_relay(d, &B, &r);
	CHECK(pings_to(d, &s, first4, 4) && r.n == 1,
	      "a round pings the first %d usable ones (%u pings)", CP_DISCO_MAX_CAND, s.n);
	set_cands(d, p, "B");
	/* Leave the rounds stopped, for the next test to start one. */
	p->endpoint = sa("198.18.0.99:51820");
	cp_disco_tick(d, t + 7 * S);
	p->endpoint = mg_sockaddr_derp(1);
	drain(&shm);
}

/* A refusal: only 'refused' moves, nothing goes anywhere, B stays relayed. */
#define REFUSED(what)                                                                              \
	CHECK(DELTAS(0, 0, 0, 0, 0, 0, 0, 1) && quiet(d) && sa_eq(&p->endpoint, &derp),            \
	      "%s: refused, nothing else (%s)", what, dstr(d))

static void test_pong(struct cp_device *d, struct cp_peer *p, struct cp_peer *pc)
{
	struct mg_sockaddr derp = mg_sockaddr_derp(1), a4 = sa(cand_ok[0]);
	struct seen s;
	struct relayed r;
	struct mg_disco_msg m;
	uint8_t pkt[MG_DISCO_MAX_LEN], txid[MG_DISCO_TXID_LEN];
	size_t n;
	int k = -1;

	printf("-- Pongs: refusals, then the direct path\n");
	/* A round whose pings went out 6 s ago (a tick with that clock). */
	cp_disco_tick(d, cp_now() - 6 * S);
	CHECK(round_seen(d, &s, &r) && (k = sent_to(&s, cand_ok[0])) >= 0, "a round 6 s ago");
	if (k < 0)
		return;
	memcpy(txid, s.m[k].txid, sizeof(txid));
	mark(d);
	m = msg_pong(txid, "198.18.0.1:41234");
	CHECK(udp_msg(d, &B, cand_ok[0], &m), "B's Pong to it from %s, 6 s late", cand_ok[0]);
	REFUSED("stale (over 5 s)");

	/* A fresh round; its ping to 198.18.0.9 answered through the relay. */
	relayed_again(d, p, cp_now());
	cp_disco_tick(d, cp_now());
	CHECK(round_seen(d, &s, &r) && (k = sent_to(&s, cand_ok[0])) >= 0, "a new round now");
	if (k < 0)
		return;
	mark(d);
	m = msg_pong(s.m[k].txid, "198.18.0.1:41234");
	CHECK(relay_msg(d, B.pub, &B, &m), "B's Pong with that txid, through the relay");
	REFUSED("the right txid through the relay, not from the pinged endpoint");

	/* The round that succeeds, its pings stamped 3 s ago: within the TTL. */
	relayed_again(d, p, cp_now() - 3 * S);
	cp_disco_tick(d, cp_now() - 3 * S);
	CHECK(round_seen(d, &s, &r), "another round, 3 s ago");
	int k4 = sent_to(&s, cand_ok[0]), k6 = sent_to(&s, cand_ok[1]);
	CHECK(k4 >= 0 && k6 >= 0, "pings to both candidates");
	if (k4 < 0 || k6 < 0)
		return;

	mark(d);
	randombytes_buf(txid, sizeof(txid));
	m = msg_pong(txid, "198.18.0.1:41234");
	CHECK(udp_msg(d, &B, cand_ok[0], &m), "a Pong with an unknown txid from %s", cand_ok[0]);
	REFUSED("unknown txid");

	mark(d);
	m = msg_pong(s.m[k6].txid, "198.18.0.1:41234");
	CHECK(udp_msg(d, &B, cand_ok[0], &m), "a Pong for the ping to %s, from %s", cand_ok[1],
	      cand_ok[0]);
	REFUSED("the right txid from another address");

	mark(d);
	m = msg_pong(s.m[k4].txid, "198.18.0.1:41234");
	CHECK(udp_msg(d, &X, cand_ok[0], &m), "the right Pong sealed by a key that is no peer");
	REFUSED("from no peer");

	mark(d);
	CHECK(udp_msg(d, &C, cand_ok[0], &m), "sealed by peer C, which has no disco state");
	REFUSED("from a peer without disco state");

	mark(d);
	n = seal(pkt, &B, X.pub, &m);
	CHECK(n && udp_in(d, cand_ok[0], pkt, n), "sealed by B for another receiver");
	REFUSED("box does not open");

	mark(d);
	memcpy(pkt, MG_DISCO_MAGIC, MG_DISCO_MAGIC_LEN);
	memcpy(pkt + MG_DISCO_MAGIC_LEN, B.pub, 32);
	randombytes_buf(pkt + MG_DISCO_HDR_LEN - MG_DISCO_NONCE_LEN, MG_DISCO_NONCE_LEN + 48);
	CHECK(udp_in(d, cand_ok[0], pkt, MG_DISCO_HDR_LEN + 48),
	      "the magic, B's key, then garbage");
	REFUSED("garbage behind the magic");

	mark(d);
	n = seal(pkt, &B, d->local.public_key, &m);
	CHECK(n && udp_in(d, cand_ok[0], pkt, n - 1), "B's Pong, the last byte cut off");
	REFUSED("truncated");

	/* Through the relay: the sender in the header must be the relay's source. */
	mark(d);
	set_cands(d, pc, "C"); /* C gets disco state: only the key check stops its Ping */
	struct mg_disco_msg ping = msg_ping(&C);
	CHECK(relay_msg(d, B.pub, &C, &ping), "a Ping relayed from B's key, sealed by peer C");
	REFUSED("header sender is not the relay's source");
	mark(d);
	ping = msg_ping(&B);
	CHECK(relay_msg(d, C.pub, &B, &ping), "a Ping relayed from C's key, sealed by B");
	REFUSED("header sender is not the relay's source (the other way)");
	mark(d);
	uint64_t unknown = d->derp_drops[CP_DERP_DROP_UNKNOWN_PEER];
	CHECK(relay_msg(d, X.pub, &X, &m), "relayed from a key that is no peer, sealed by it");
	CHECK(DELTAS(0, 0, 0, 0, 0, 0, 0, 0) && quiet(d) &&
		  d->derp_drops[CP_DERP_DROP_UNKNOWN_PEER] == unknown + 1,
	      "dropped by derp.c as an unknown peer before disco sees it (%s)", dstr(d));
	cp_disco_peer_free(d, pc);

	/* The one that works. */
	mark(d);
	m = msg_pong(s.m[k4].txid, "198.18.0.1:41234");
	n = seal(pkt, &B, d->local.public_key, &m);
	CHECK(n && udp_in(d, cand_ok[0], pkt, n), "B's Pong to the ping to %s, from there",
	      cand_ok[0]);
	CHECK(sa_eq(&p->endpoint, &a4), "B's endpoint is now %s", ep_str(&p->endpoint));
	CHECK(sa_eq(&p->direct, &a4), "and remembered as its direct endpoint");
	collect(d, &B, &s);
	CHECK(s.peer_set == 1 && s.ps_slot == p->slot && (s.ps.flags & MG_PEER_F_ENDPOINT) &&
		  sa_eq(&s.ps.endpoint, &a4) && !memcmp(s.ps.public_key, B.pub, 32) && !s.n &&
		  !s.bad && !s.other,
	      "the dataplane got PEER_SET for slot %u with endpoint %s", s.ps_slot,
	      ep_str(&s.ps.endpoint));
	CHECK(DELTAS(0, 0, 0, 1, 0, 0, 1, 0) && nothing_relayed(d, &B),
	      "pong_received 1, direct_path_found 1 (%s)", dstr(d));

	mark(d);
	CHECK(udp_in(d, cand_ok[0], pkt, n), "the same Pong again");
	CHECK(DELTAS(0, 0, 0, 0, 0, 0, 0, 1) && quiet(d) && sa_eq(&p->endpoint, &a4),
	      "refused, B stays at %s (%s)", ep_str(&p->endpoint), dstr(d));

	mark(d);
	cp_disco_tick(d, cp_now());
	cp_disco_tick(d, cp_now() + 61 * S);
	cp_disco_tick(d, cp_now() + 1000 * S);
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 0, 0, 0), "B is direct: no more rounds");
}

static void test_ping(struct cp_device *d, struct cp_peer *p)
{
	struct seen s;
	struct relayed r;
	struct mg_disco_msg m;
	struct mg_sockaddr from = sa("203.0.113.8:41641"), from6 = sa("[2001:db8::8]:41641");

	printf("-- Ping -> Pong\n");
	(void)p;
	mark(d);
	m = msg_ping(&B);
	CHECK(udp_msg(d, &B, "203.0.113.8:41641", &m), "B pings us from 203.0.113.8:41641");
	collect(d, &B, &s);
	CHECK(s.n == 1 && !s.bad && !s.other && !s.peer_set && sa_eq(&s.to[0], &from),
	      "a TX_UDP back to %s, opening under B's key", s.n ? ep_str(&s.to[0]) : "-");
	CHECK(s.n == 1 && s.m[0].type == MG_DISCO_PONG &&
		  !memcmp(s.m[0].txid, m.txid, MG_DISCO_TXID_LEN),
	      "a Pong with the Ping's txid");
	CHECK(s.n == 1 && sa_eq(&s.m[0].src, &from), "src = %s", s.n ? ep_str(&s.m[0].src) : "-");
	CHECK(DELTAS(0, 1, 1, 0, 0, 0, 0, 0) && nothing_relayed(d, &B),
	      "ping_received 1, pong_sent 1 (%s)", dstr(d));

	mark(d);
	m = msg_ping(&B);
	m.pad = 100;
	CHECK(udp_msg(d, &B, "[2001:db8::8]:41641", &m), "a padded Ping from [2001:db8::8]:41641");
	collect(d, &B, &s);
	CHECK(s.n == 1 && sa_eq(&s.to[0], &from6) && s.m[0].type == MG_DISCO_PONG &&
		  !memcmp(s.m[0].txid, m.txid, MG_DISCO_TXID_LEN) && sa_eq(&s.m[0].src, &from6),
	      "a Pong back there, src = %s", s.n ? ep_str(&s.m[0].src) : "-");
	CHECK(DELTAS(0, 1, 1, 0, 0, 0, 0, 0), "counted (%s)", dstr(d));

	mark(d);
	m = msg_ping(&B);
	CHECK(relay_msg(d, B.pub, &B, &m), "B pings us through the relay");
	collect_relay(d, &B, &r);
	struct mg_sockaddr derp = mg_sockaddr_derp(1);
	CHECK(r.n == 1 && !r.bad && !r.other && r.m[0].type == MG_DISCO_PONG &&
		  !memcmp(r.m[0].txid, m.txid, MG_DISCO_TXID_LEN),
	      "the Pong goes back through the relay, SendPacket to B's key");
	CHECK(r.n == 1 && sa_eq(&r.m[0].src, &derp), "src = %s", r.n ? ep_str(&r.m[0].src) : "-");
	CHECK(nothing_to_dp(d, &B) && DELTAS(0, 1, 1, 0, 0, 0, 0, 0),
	      "nothing to the dataplane; counted (%s)", dstr(d));

	mark(d);
	m = msg_ping(&X);
	CHECK(udp_msg(d, &X, "203.0.113.8:41641", &m), "a Ping from a key that is no peer");
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 0, 0, 1), "refused, no Pong (%s)", dstr(d));
}

static void test_cmm(struct cp_device *d, struct cp_peer *p)
{
	static const char *const eps[3] = {"203.0.113.8:41641", "[2001:db8::8]:41641",
					   "127.3.3.40:1"};
	static const char *const five[5] = {"203.0.113.8:41641", "[2001:db8::8]:41641",
					    "203.0.113.20:20", "203.0.113.21:21",
					    "203.0.113.22:22"};
	struct mg_sockaddr c8 = sa(eps[0]), derp = mg_sockaddr_derp(1);
	struct seen s;
	struct mg_disco_msg m;

	printf("-- CallMeMaybe -> pings\n");
	mark(d);
	m = msg_cmm(eps, 3);
	CHECK(relay_msg(d, B.pub, &B, &m), "B's CallMeMaybe through the relay: %s, %s, %s", eps[0],
	      eps[1], eps[2]);
	collect(d, &B, &s);
	CHECK(pings_to(d, &s, eps, 2), "pings to %s and %s at once, not to the DERP one (%u)",
	      eps[0], eps[1], s.n);
	CHECK(DELTAS(2, 0, 0, 0, 0, 1, 0, 0) && nothing_relayed(d, &B),
	      "call_me_maybe_received 1, ping_sent 2 (%s)", dstr(d));

	mark(d);
	m = msg_cmm(eps, 2);
	CHECK(relay_msg(d, B.pub, &B, &m), "another one right after");
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 1, 0, 0), "counted, but no pings within 2 s (%s)",
	      dstr(d));
	mark(d);
	CHECK(udp_msg(d, &B, "203.0.113.8:41641", &m), "and one over UDP");
	CHECK(quiet(d) && DELTAS(0, 0, 0, 0, 0, 1, 0, 0), "the same (%s)", dstr(d));

	struct mg_sockaddr before = p->endpoint;
	run_for(d, 2100);
	mark(d);
	m = msg_cmm(five, 5);
	CHECK(relay_msg(d, B.pub, &B, &m), "2.1 s later, a CallMeMaybe with 5 endpoints");
	collect(d, &B, &s);
	CHECK(pings_to(d, &s, five, 4), "pings to the first %d (%u)", CP_DISCO_MAX_CAND, s.n);
	CHECK(DELTAS(4, 0, 0, 0, 0, 1, 0, 0), "call_me_maybe_received 1, ping_sent 4 (%s)",
	      dstr(d));
	int k8 = sent_to(&s, eps[0]), k6 = sent_to(&s, eps[1]);
	if (k8 < 0 || k6 < 0)
		return;

	/* While B is direct, a Pong to one of them proves nothing new. */
	mark(d);
	m = msg_pong(s.m[k6].txid, "198.18.0.1:41234");
	CHECK(udp_msg(d, &B, eps[1], &m), "a Pong from %s while B is direct", eps[1]);
	CHECK(DELTAS(0, 0, 0, 1, 0, 0, 0, 0) && quiet(d) && sa_eq(&p->endpoint, &before),
	      "pong_received 1, B stays at %s (%s)", ep_str(&p->endpoint), dstr(d));

	/* Relayed again (the direct path died): a Pong to a CallMeMaybe ping. */
	p->endpoint = derp;
	mark(d);
	m = msg_pong(s.m[k8].txid, "198.18.0.1:41234");
	CHECK(udp_msg(d, &B, eps[0], &m), "B relayed again; a Pong from %s", eps[0]);
	collect(d, &B, &s);
	CHECK(sa_eq(&p->endpoint, &c8) && s.peer_set == 1 && sa_eq(&s.ps.endpoint, &c8),
	      "B goes direct at %s, PEER_SET sent", ep_str(&p->endpoint));
	CHECK(DELTAS(0, 0, 0, 1, 0, 0, 1, 0), "pong_received 1, direct_path_found 1 (%s)", dstr(d));
}

static void test_remove(struct cp_device *d, struct cp_peer *p, struct cp_peer *pc)
{
	struct mg_disco_msg m;

	printf("-- peers with disco state removed\n");
	uint32_t n = d->n_peers;
	set_cands(d, pc, "C");
	CHECK(p->disco && pc->disco, "B and C have disco state");
	cp_peer_remove(d, p);
	cp_peer_remove(d, pc);
	CHECK(d->n_peers == n - 2 && !cp_peer_find(d, B.pub) && !cp_peer_find(d, C.pub),
	      "both removed (leaks show under ASan at exit)");
	drain(&shm);
	mark(d);
	m = msg_ping(&B);
	CHECK(udp_msg(d, &B, "203.0.113.8:41641", &m), "a Ping from B's key afterwards");
	CHECK(DELTAS(0, 0, 0, 0, 0, 0, 0, 1) && nothing_to_dp(d, &B), "refused (%s)", dstr(d));
	mark(d);
	cp_disco_tick(d, cp_now() + 1000 * S);
	CHECK(DELTAS(0, 0, 0, 0, 0, 0, 0, 0) && nothing_to_dp(d, &B), "a tick: nothing");
}

/* The tick walks d->disco_peers, which must hold exactly the peers with
 * disco state through any order of removals (a stale entry would be a
 * freed peer: ASan). */
static bool list_ok(const struct cp_device *d)
{
	uint32_t with = 0;

	for (uint32_t i = 0; i < d->max_peers; i++)
		with += d->by_slot[i] && d->by_slot[i]->disco;
	if (with != d->n_disco)
		return false;
	for (uint32_t i = 0; i < d->n_disco; i++) {
		if (!d->disco_peers[i] || !d->disco_peers[i]->disco ||
		    d->by_slot[d->disco_peers[i]->slot] != d->disco_peers[i])
			return false;
		for (uint32_t j = 0; j < i; j++)
			if (d->disco_peers[i] == d->disco_peers[j])
				return false;
	}
	return true;
}

static void test_list(struct cp_device *d)
{
	struct cp_peer *q[6];
	int err;

	printf("-- the list of peers with disco state\n");
	for (int i = 0; i < 6; i++) {
		struct node n;

		keypair(n.priv, n.pub);
		q[i] = cp_peer_create(d, n.pub, &err);
		CHECK(q[i] != NULL, "peer %d created", i);
		if (!q[i])
			return;
		q[i]->derp_region = 1;
		q[i]->endpoint = mg_sockaddr_derp(1);
		set_cands(d, q[i], "a peer");
	}
	set_cands(d, q[3], "peer 3 again");
	CHECK(d->n_disco == 6 && list_ok(d), "6 in the list (%u), candidates set twice count once",
	      d->n_disco);
	cp_peer_remove(d, q[2]);
	cp_peer_remove(d, q[0]);
	cp_peer_remove(d, q[5]);
	CHECK(d->n_disco == 3 && list_ok(d), "a middle, the first and the last removed: %u left",
	      d->n_disco);
	cp_disco_peer_free(d, q[3]);
	cp_disco_peer_free(d, q[3]);
	CHECK(d->n_disco == 2 && list_ok(d) && !q[3]->disco,
	      "disco state dropped (twice) while the peer stays: %u left", d->n_disco);
	cp_disco_tick(d, cp_now());
	drain(&shm);
	cp_peer_remove(d, q[4]);
	cp_peer_remove(d, q[1]);
	cp_peer_remove(d, q[3]);
	CHECK(d->n_disco == 0 && list_ok(d), "all removed: the list is empty");
	cp_disco_tick(d, cp_now());
	drain(&shm);
}

int main(void)
{
	struct mg_config cfg;
	struct cp_device d;
	int err;

	alarm(50);
	if (sodium_init() < 0)
		return 2;
	snprintf(name, sizeof(name), "tdisco%d", (int)getpid() % 100000);
	if (mg_shm_create(&shm, name, 64, 2)) {
		fprintf(stderr, "mg_shm_create failed\n");
		return 2;
	}
	/* The dataplane's TSC reads as monotonic ns. */
	shm.hdr->tsc_hz = 1000000000ull;
	shm.hdr->ref_tsc = 1;
	shm.hdr->ref_mono_ns = 1;
	relay_open(R0);
	keypair(B.priv, B.pub);
	keypair(C.priv, C.pub);
	keypair(X.priv, X.pub);

	printf("-- set up: device, dataplane, relay\n");
	device(&d, &cfg);
	uint8_t k[32];
	randombytes_buf(k, sizeof(k));
	cp_device_set_private_key(&d, k);
	sodium_memzero(k, sizeof(k));
	attach(&d, &shm);
	CHECK(d.attached && !d.syncing && !d.resync, "attached to the fake dataplane");
	CHECK(d.derp && !d.stun, "DERP on, STUN off");
	WAIT_FOR(&d, d.derp_home_up, 3000);
	CHECK(d.derp_home_up && R0->client_infos == 1, "the home relay is up");
	relay_sync(&d, R0);
	R0->qn = 0; /* NotePreferred */

	struct cp_peer *p = cp_peer_create(&d, B.pub, &err);
	struct cp_peer *pc = cp_peer_create(&d, C.pub, &err);
	if (!p || !pc) {
		fprintf(stderr, "cp_peer_create: %s\n", strerror(-err));
		return 2;
	}
	pc->derp_region = 1;
	pc->endpoint = sa("198.18.0.50:51820");
	make_b(&d, p);

	test_rounds(&d, p);
	test_no_rounds(&d, p);
	/* Those ticks ran on a clock up to 1000 s ahead, and the pings they
	 * stamped would fill the ping slots (freed only by a Pong or by their
	 * TTL); start again with a new B for ticks on the real clock. */
	cp_peer_remove(&d, p);
	if (!(p = cp_peer_create(&d, B.pub, &err))) {
		fprintf(stderr, "cp_peer_create: %s\n", strerror(-err));
		return 2;
	}
	make_b(&d, p);
	test_pong(&d, p, pc);
	test_ping(&d, p);
	test_cmm(&d, p);
	test_remove(&d, p, pc);
	test_list(&d);

	cp_device_fini(&d);
	mg_config_free(&cfg);
	relay_close(R0);
	mg_shm_destroy(&shm);
	return test_finish("test_cp_disco");
}
