/* SPDX-License-Identifier: MIT */
/*
 * Disco: finding a direct path again for a peer we reach through a DERP
 * relay (common/disco.h has the messages).
 *
 * While a peer from the coordination server is relayed and has a session,
 * every round (5 s while the tunnel carries data, else a minute) this node
 * sends a disco Ping from its WireGuard port to each of the peer's
 * direct endpoints, and a CallMeMaybe through the relay listing its own
 * endpoints (what STUN saw, the wan addresses). The peer, told so, pings
 * those at once. Two NATs that drop what nobody asked for thus each see
 * their own side send first, and the pings get through both ways. A Pong
 * from the endpoint we pinged, answering a ping in flight, proves the path:
 * the peer's endpoint becomes that one, the dataplane sends there, and the
 * peer's dataplane, receiving our data from a new source, roams to us too.
 * If the path dies later, the handshake retries fall back to the relay
 * (hs_send in handshake.c), and disco starts again.
 *
 * Every disco message is checked before any Diffie-Hellman: its sender must
 * be one of our peers (and, through a relay, the key the relay vouches
 * for). The node key pair is the disco key pair.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "addr.h"
#include "cp.h"
#include "disco.h"
#include "keys.h"
#include "log.h"

#define NS 1000000000ull
/* Rounds every 5 s while the tunnel carries data (sent or received within
 * 45 s), as Tailscale's nodes ping a relayed peer's endpoints; once a minute
 * when it is idle. */
#define DISCO_BUSY_NS	    (45 * NS)
#define DISCO_BUSY_ROUND_NS (5 * NS)
#define DISCO_IDLE_ROUND_NS (60 * NS)
#define DISCO_PING_TTL_NS   (5 * NS) /* a Pong later than this is stale */
#define DISCO_CMM_GAP_NS    (2 * NS) /* CallMeMaybe handled at most this often per peer */
#define DISCO_OWN_EPS	    MG_DISCO_MAX_EPS

struct cp_disco_ping {
	uint8_t txid[MG_DISCO_TXID_LEN];
	struct mg_sockaddr to;
	uint64_t sent_ns; /* 0: slot free */
};

/* Per peer, made when the coordination server gives it a DERP region. */
struct cp_disco_peer {
	struct mg_sockaddr cand[CP_DISCO_MAX_CAND]; /* its direct endpoints */
	unsigned n_cand;
	struct cp_disco_ping pings[CP_DISCO_MAX_CAND * 2];
	uint64_t next_round_ns;
	uint64_t cmm_ns; /* last CallMeMaybe acted on */
	bool active;	 /* rounds running (relayed with a session) */
	uint32_t list_idx; /* in d->disco_peers */
};

static void count(struct cp_device *d, enum cp_disco_stat s)
{
	d->disco[s]++;
}

int cp_disco_set_candidates(struct cp_device *d, struct cp_peer *p, const struct mg_sockaddr *eps,
			    unsigned n)
{
	struct cp_disco_peer *dp = p->disco;

	if (!dp) {
		if (d->n_disco == d->cap_disco) {
			uint32_t cap = d->cap_disco ? d->cap_disco * 2 : 64;
			struct cp_peer **l = realloc(d->disco_peers, cap * sizeof(*l));

			if (!l)
				return -ENOMEM;
			d->disco_peers = l;
			d->cap_disco = cap;
		}
		if (!(dp = calloc(1, sizeof(*dp))))
			return -ENOMEM;
		p->disco = dp;
		dp->list_idx = d->n_disco;
		d->disco_peers[d->n_disco++] = p;
	}
	dp->n_cand = 0;
	for (unsigned i = 0; i < n && dp->n_cand < CP_DISCO_MAX_CAND; i++)
		if ((eps[i].family == AF_INET || eps[i].family == AF_INET6) && eps[i].port &&
		    !mg_sockaddr_is_derp(&eps[i]))
			dp->cand[dp->n_cand++] = eps[i];
	return 0;
}

void cp_disco_peer_free(struct cp_device *d, struct cp_peer *p)
{
	struct cp_disco_peer *dp = p->disco;

	if (!dp)
		return;
	/* The last one takes its place in the list. */
	struct cp_peer *last = d->disco_peers[--d->n_disco];

	d->disco_peers[dp->list_idx] = last;
	last->disco->list_idx = dp->list_idx;
	free(dp);
	p->disco = NULL;
}

/* Seal m to p and send it to `to` (a UDP endpoint, or a DERP one). */
static int send_msg(struct cp_device *d, struct cp_peer *p, const struct mg_sockaddr *to,
		    const struct mg_disco_msg *m)
{
	uint8_t buf[MG_DISCO_MAX_LEN], nonce[MG_DISCO_NONCE_LEN];

	randombytes_buf(nonce, sizeof(nonce));
	size_t n = mg_disco_seal(buf, sizeof(buf), d->local.public_key, d->local.private_key,
				 p->noise.public_key, nonce, m);
	if (!n)
		return -EINVAL;
	return cp_tx(d, to, p->noise.public_key, buf, n);
}

static void ping(struct cp_device *d, struct cp_peer *p, const struct mg_sockaddr *to, uint64_t now)
{
	struct cp_disco_peer *dp = p->disco;
	struct cp_disco_ping *slot = &dp->pings[0];
	struct mg_disco_msg m = {.type = MG_DISCO_PING, .has_node_key = true};

	/* A free slot, else the oldest. */
	for (unsigned i = 0; i < CP_DISCO_MAX_CAND * 2; i++) {
		if (!dp->pings[i].sent_ns) {
			slot = &dp->pings[i];
			break;
		}
		if (dp->pings[i].sent_ns < slot->sent_ns)
			slot = &dp->pings[i];
	}
	randombytes_buf(m.txid, sizeof(m.txid));
	memcpy(m.node_key, d->local.public_key, 32);
	if (send_msg(d, p, to, &m))
		return;
	memcpy(slot->txid, m.txid, sizeof(m.txid));
	slot->to = *to;
	slot->sent_ns = now;
	count(d, CP_DISCO_PINGS_SENT);
}

/* Our own endpoints, for a CallMeMaybe: what STUN saw, then the wan port's
 * addresses with the listen port (not link-local IPv6). */
static unsigned own_endpoints(struct cp_device *d, struct mg_sockaddr *eps)
{
	const struct mg_sockaddr *pub;
	unsigned n = 0, k = cp_stun_public(d, &pub);
	int w = mg_config_port(d->cfg, MG_PORT_WAN);

	for (unsigned i = 0; i < k && n < DISCO_OWN_EPS; i++)
		eps[n++] = pub[i];
	for (int i = 0; w >= 0 && i < d->cfg->ports[w].n_addrs && n < DISCO_OWN_EPS; i++) {
		const struct mg_prefix *a = &d->cfg->ports[w].addrs[i];
		struct mg_sockaddr sa = {.family = a->family, .port = d->listen_port};

		memcpy(sa.addr, a->addr, 16);
		if (sa.family == AF_INET6 && sa.addr[0] == 0xfe && (sa.addr[1] & 0xc0) == 0x80)
			continue;
		eps[n++] = sa;
	}
	return n;
}

static void round_for(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	struct cp_disco_peer *dp = p->disco;
	struct mg_disco_msg m = {.type = MG_DISCO_CALL_ME_MAYBE};

	for (unsigned i = 0; i < dp->n_cand; i++)
		ping(d, p, &dp->cand[i], now);
	m.n_eps = own_endpoints(d, m.eps);
	if (m.n_eps && send_msg(d, p, &p->endpoint, &m) == 0)
		count(d, CP_DISCO_CMM_SENT);
}

void cp_disco_tick(struct cp_device *d, uint64_t now)
{
	if (!d->derp || !d->attached || !d->local.has_identity)
		return;
	for (uint32_t i = 0; i < d->n_disco; i++) {
		struct cp_peer *p = d->disco_peers[i];
		struct cp_disco_peer *dp = p->disco;
		bool want = mg_sockaddr_is_derp(&p->endpoint) && p->kp_cur && dp->n_cand;
		if (!want) {
			dp->active = false;
			continue;
		}
		if (!dp->active) { /* newly relayed: a round now */
			dp->active = true;
			dp->next_round_ns = now;
		}
		if (now < dp->next_round_ns)
			continue;
		cp_peer_refresh_stats(d, p);
		uint64_t last = p->last_rx_data_ns > p->last_tx_data_ns ? p->last_rx_data_ns
									: p->last_tx_data_ns;
		bool busy = last && (last >= now || now - last < DISCO_BUSY_NS);
		round_for(d, p, now);
		dp->next_round_ns = now + (busy ? DISCO_BUSY_ROUND_NS : DISCO_IDLE_ROUND_NS);
	}
}

/* A Pong for a ping in flight, from where that ping went: the path works. */
static void on_pong(struct cp_device *d, struct cp_peer *p, const struct mg_disco_msg *m,
		    const struct mg_sockaddr *from)
{
	struct cp_disco_peer *dp = p->disco;
	char a[MG_SOCKADDR_STRLEN];

	for (unsigned i = 0; i < CP_DISCO_MAX_CAND * 2; i++) {
		struct cp_disco_ping *pg = &dp->pings[i];

		if (!pg->sent_ns || sodium_memcmp(pg->txid, m->txid, sizeof(m->txid)))
			continue;
		if (!mg_sockaddr_same(&pg->to, from)) { /* answered from elsewhere: not this path */
			count(d, CP_DISCO_REFUSED);
			return;
		}
		pg->sent_ns = 0;
		count(d, CP_DISCO_PONGS_RCVD);
		if (!mg_sockaddr_is_derp(&p->endpoint) || mg_sockaddr_is_derp(from))
			return;
		mg_log(LOG_INFO, "peer %u (%s): direct path %s answers (disco), leaving the relay",
		       p->slot, p->name, mg_sockaddr_fmt(from, a, sizeof(a)));
		p->endpoint = *from;
		cp_peer_note_direct(p);
		cp_dp_peer_push(d, p);
		dp->active = false;
		count(d, CP_DISCO_DIRECT);
		return;
	}
	count(d, CP_DISCO_REFUSED); /* unasked, answered twice, or expired */
}

static void expire_pings(struct cp_disco_peer *dp, uint64_t now)
{
	for (unsigned i = 0; i < CP_DISCO_MAX_CAND * 2; i++)
		if (dp->pings[i].sent_ns && now > dp->pings[i].sent_ns &&
		    now - dp->pings[i].sent_ns > DISCO_PING_TTL_NS)
			dp->pings[i].sent_ns = 0;
}

void cp_disco_rx(struct cp_device *d, const uint8_t *pkt, size_t len,
		 const struct mg_sockaddr *from, const uint8_t *relay_src)
{
	struct mg_disco_msg m;
	uint64_t now = cp_now();
	const uint8_t *sender = mg_disco_sender(pkt);
	struct cp_peer *p;

	if (!d->local.has_identity || !mg_disco_is(pkt, len) ||
	    (relay_src && sodium_memcmp(relay_src, sender, 32)) || !(p = cp_peer_find(d, sender)) ||
	    !p->disco) {
		count(d, CP_DISCO_REFUSED);
		return;
	}
	if (mg_disco_open(pkt, len, d->local.private_key, &m) != MG_DISCO_OK) {
		count(d, CP_DISCO_REFUSED);
		return;
	}
	expire_pings(p->disco, now);
	switch (m.type) {
	case MG_DISCO_PING: {
		struct mg_disco_msg pong = {.type = MG_DISCO_PONG, .src = *from};

		count(d, CP_DISCO_PINGS_RCVD);
		memcpy(pong.txid, m.txid, sizeof(m.txid));
		if (send_msg(d, p, from, &pong) == 0)
			count(d, CP_DISCO_PONGS_SENT);
		break;
	}
	case MG_DISCO_PONG:
		on_pong(d, p, &m, from);
		break;
	case MG_DISCO_CALL_ME_MAYBE:
		count(d, CP_DISCO_CMM_RCVD);
		if (p->disco->cmm_ns && now - p->disco->cmm_ns < DISCO_CMM_GAP_NS)
			break;
		p->disco->cmm_ns = now;
		for (unsigned i = 0, k = 0; i < m.n_eps && k < CP_DISCO_MAX_CAND; i++)
			if (!mg_sockaddr_is_derp(&m.eps[i])) {
				ping(d, p, &m.eps[i], now);
				k++;
			}
		break;
	default:
		count(d, CP_DISCO_REFUSED);
	}
}
