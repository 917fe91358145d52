/* SPDX-License-Identifier: MIT */
/*
 * STUN endpoint discovery, the first piece of NAT traversal (Tailscale's
 * nodes do the same against their DERP servers' STUN port). Every
 * stun_interval seconds, and as soon as a dataplane is attached and
 * programmed, a Binding request goes to each configured server through the
 * dataplane (MG_MSG_TX_UDP): it leaves from the WireGuard listen port, so
 * the server sees the mapping that peers would use. The dataplane punts the
 * answers back as MG_MSG_RX_UDP (dplink.c tells them from handshakes).
 *
 * Per server one transaction at a time, under a random 12-byte id: sent
 * once more after 1 s without an answer, given up after 5 s. A server given
 * by name is resolved at the start of every round (cp_dns, without
 * blocking the loop) and asked at the first address of a family our WAN
 * port has, or else the first. An answer
 * counts only if it comes from the server's own address and port and names
 * the id outstanding there. The addresses the servers report, without
 * duplicates and in server order, are our public endpoints; a server that
 * has not answered for 3 intervals loses its. A change is logged and handed
 * to whoever cp_stun_set_notify named (the coordination client).
 *
 * Main thread only.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "addr.h"
#include "cp.h"
#include "dns.h"
#include "log.h"
#include "stun.h"

#define NS_PER_S	 1000000000ull
#define RETRANSMIT_NS	 (1 * NS_PER_S)
#define GIVE_UP_NS	 (5 * NS_PER_S)
#define FORGET_INTERVALS 3

#define STUN_ADDRS 8 /* addresses of a server's name looked at */

struct stun_server {
	struct mg_stun_server_conf conf; /* as configured */
	struct mg_sockaddr addr;	 /* asked at: conf.server, or what conf.host resolved to */
	struct cp_dns *dns;		 /* conf.host being resolved for this round */
	uint64_t dns_ns;		 /* when that started */
	bool dns_failed;		 /* the last resolution failed (logged once) */
	bool unreachable;		 /* no address of it reachable (logged once) */
	uint8_t txid[MG_STUN_TXID_LEN];
	bool pending; /* txid awaits its answer */
	bool retransmitted;
	uint64_t sent_ns;	   /* first transmission of txid */
	struct mg_sockaddr mapped; /* what it last said; family 0: nothing (yet, or forgotten) */
	uint64_t answered_ns;
};

struct cp_stun {
	uint64_t interval_ns;
	uint64_t next_round_ns;
	uint64_t link_ino; /* the dataplane the last round went through, 0: none */
	struct stun_server servers[MG_MAX_STUN_SERVERS];
	unsigned n_servers;
	struct mg_sockaddr eps[MG_MAX_STUN_SERVERS]; /* the set last reported */
	unsigned n_eps;
	cp_stun_notify_fn *notify;
	void *notify_arg;
};

/* Zeroed past the address, so copies compare (and dedupe) by value. */
static struct mg_sockaddr clean_sockaddr(const struct mg_sockaddr *sa)
{
	struct mg_sockaddr out = {.family = sa->family, .port = sa->port};

	memcpy(out.addr, sa->addr, sa->family == AF_INET ? 4 : 16);
	return out;
}

int cp_stun_init(struct cp_device *d)
{
	const struct mg_config *cfg = d->cfg;
	struct cp_stun *s;

	d->stun = NULL;
	if (cfg->n_stun_servers <= 0)
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->interval_ns = (uint64_t)cfg->stun_interval * NS_PER_S;
	for (int i = 0; i < cfg->n_stun_servers && i < MG_MAX_STUN_SERVERS; i++) {
		struct stun_server *sv = &s->servers[s->n_servers++];

		sv->conf = cfg->stun_servers[i];
		if (!sv->conf.host[0])
			sv->addr = clean_sockaddr(&sv->conf.server);
	}
	d->stun = s;
	return 0;
}

void cp_stun_fini(struct cp_device *d)
{
	struct cp_stun *s = d->stun;

	for (unsigned i = 0; s && i < s->n_servers; i++)
		cp_dns_release(s->servers[i].dns);
	cp_dns_reap(true);
	free(s);
	d->stun = NULL;
}

/* "name:port (address)" or the address, for log lines. */
static const char *server_str(const struct stun_server *sv, char *buf, size_t len)
{
	char a[MG_SOCKADDR_STRLEN], h[300];

	if (!sv->conf.host[0])
		return mg_sockaddr_fmt(&sv->addr, buf, len);
	mg_hostport_fmt(&sv->conf.server, sv->conf.host, h, sizeof(h));
	if (sv->addr.family)
		snprintf(buf, len, "%s (%s)", h, mg_sockaddr_fmt(&sv->addr, a, sizeof(a)));
	else
		snprintf(buf, len, "%s", h);
	return buf;
}

void cp_stun_set_notify(struct cp_device *d, cp_stun_notify_fn *fn, void *arg)
{
	struct cp_stun *s = d->stun;

	if (!s)
		return;
	s->notify = fn;
	s->notify_arg = arg;
	if (fn)
		fn(arg, s->eps, s->n_eps);
}

static void transmit(struct cp_device *d, const struct stun_server *sv)
{
	uint8_t req[MG_STUN_MAX_BUILT];
	size_t len = mg_stun_build_request(req, sizeof(req), sv->txid);

	if (len && cp_dp_tx_udp(d, &sv->addr, req, len) == 0)
		d->stun_sent++;
}

static void transaction_start(struct cp_device *d, struct stun_server *sv, uint64_t now)
{
	randombytes_buf(sv->txid, sizeof(sv->txid));
	sv->pending = true;
	sv->retransmitted = false;
	sv->sent_ns = now;
	transmit(d, sv);
}

/* A new transaction with every server; those given by name first resolve
 * it (dns_check). */
static void round_start(struct cp_device *d, struct cp_stun *s, uint64_t now)
{
	for (unsigned i = 0; i < s->n_servers; i++) {
		struct stun_server *sv = &s->servers[i];
		char buf[400];
		int err;

		if (!sv->conf.host[0]) {
			transaction_start(d, sv, now);
			continue;
		}
		sv->pending = false; /* the last round's request is over */
		cp_dns_release(sv->dns);
		sv->dns_ns = now;
		if (!(sv->dns = cp_dns_start(sv->conf.host, SOCK_DGRAM, &err))) {
			if (!sv->dns_failed)
				mg_log(LOG_WARNING, "stun: cannot resolve %s: %s",
				       server_str(sv, buf, sizeof(buf)), gai_strerror(err));
			sv->dns_failed = true;
		}
	}
	s->next_round_ns = now + s->interval_ns;
}

/* The address a name resolved to that we can reach: the first of a family
 * our WAN port has an address of, or else the first. */
static const struct mg_sockaddr *pick_addr(const struct cp_device *d, const struct mg_sockaddr *a,
					   unsigned n)
{
	int w = mg_config_port(d->cfg, MG_PORT_WAN);
	const struct mg_port_conf *pc = w >= 0 ? &d->cfg->ports[w] : NULL;

	for (unsigned k = 0; pc && k < n; k++) {
		int fam = a[k].family;
		bool gw = (fam == AF_INET ? pc->gateway4 : pc->gateway6).family != 0;

		/* Reachable: an address of its family on the port, and a gateway
		 * of that family or the server on one of the port's subnets. */
		for (int i = 0; i < pc->n_addrs; i++)
			if (pc->addrs[i].family == fam &&
			    (gw || mg_prefix_contains(&pc->addrs[i], a[k].addr, fam)))
				return &a[k];
	}
	return NULL;
}

/* A name's resolution: once done, the round's request goes to the address
 * picked; a name that does not resolve (in GIVE_UP_NS) is not asked this
 * round and keeps what it last said until that is forgotten. */
static void dns_check(struct cp_device *d, struct stun_server *sv, uint64_t now)
{
	struct mg_sockaddr a[STUN_ADDRS];
	char buf[400], old[MG_SOCKADDR_STRLEN];
	int err;
	unsigned n = cp_dns_addrs(sv->dns, sv->conf.server.port, a, STUN_ADDRS, &err);

	if (err == EAI_INPROGRESS && now - sv->dns_ns < GIVE_UP_NS)
		return;
	cp_dns_release(sv->dns);
	sv->dns = NULL;
	if (!n) {
		if (!sv->dns_failed)
			mg_log(LOG_WARNING, "stun: cannot resolve %s: %s",
			       server_str(sv, buf, sizeof(buf)),
			       err == EAI_INPROGRESS ? "no answer in 5 s" : gai_strerror(err));
		sv->dns_failed = true;
		return;
	}
	sv->dns_failed = false;
	const struct mg_sockaddr *reachable = pick_addr(d, a, n);
	if (!reachable) {
		if (!sv->unreachable)
			mg_log(LOG_WARNING,
			       "stun: %s: no address the wan port has a route to (a gateway of "
			       "that family, or the server on its subnet)",
			       server_str(sv, buf, sizeof(buf)));
		sv->unreachable = true;
		return;
	}
	sv->unreachable = false;
	struct mg_sockaddr pick = clean_sockaddr(reachable);
	if (!mg_sockaddr_same(&pick, &sv->addr)) {
		bool had = sv->addr.family != 0;

		if (had)
			mg_sockaddr_fmt(&sv->addr, old, sizeof(old));
		sv->addr = pick;
		mg_log(LOG_INFO, "stun: server %s%s%s", server_str(sv, buf, sizeof(buf)),
		       had ? ", was " : "", had ? old : "");
	}
	transaction_start(d, sv, now);
}

static bool in_set(const struct mg_sockaddr *set, unsigned n, const struct mg_sockaddr *ep)
{
	for (unsigned i = 0; i < n; i++)
		if (mg_sockaddr_same(&set[i], ep))
			return true;
	return false;
}

/* One of our own WAN addresses with our listen port: what a peer would see
 * without a NAT in between (the list coord.c job_endpoints() reports). */
static bool own_endpoint(const struct cp_device *d, const struct mg_sockaddr *ep)
{
	int w = mg_config_port(d->cfg, MG_PORT_WAN);
	const struct mg_port_conf *pc = w >= 0 ? &d->cfg->ports[w] : NULL;

	for (int i = 0; pc && i < pc->n_addrs; i++) {
		struct mg_sockaddr sa = {.family = pc->addrs[i].family, .port = d->listen_port};

		memcpy(sa.addr, pc->addrs[i].addr, sa.family == AF_INET ? 4 : 16);
		if (mg_sockaddr_same(&sa, ep))
			return true;
	}
	return false;
}

/*
 * Behind a NAT: a STUN server sees us at an endpoint of someone else's (with
 * no endpoint known, we do not know, and say no). Then every coordination
 * peer gets a persistent keepalive of MG_NAT_KEEPALIVE s, as stock WireGuard
 * users set by hand: both ends sending keeps each one's NAT mapping open for
 * the other, which is all it takes through NATs that map per source port.
 * Configured peers keep what their configuration says.
 */
static void nat_update(struct cp_device *d, const struct cp_stun *s)
{
	const struct mg_sockaddr *pub = NULL;
	char a[MG_SOCKADDR_STRLEN];

	for (unsigned i = 0; i < s->n_eps && !pub; i++)
		if (!own_endpoint(d, &s->eps[i]))
			pub = &s->eps[i];
	if (!pub == !d->behind_nat)
		return;
	d->behind_nat = pub != NULL;
	if (pub)
		mg_log(LOG_INFO,
		       "stun: behind a NAT (public %s): "
		       "keepalives to coordination peers every %u s",
		       mg_sockaddr_fmt(pub, a, sizeof(a)), MG_NAT_KEEPALIVE);
	else
		mg_log(LOG_INFO, "stun: not behind a NAT (%s): no keepalives to coordination peers",
		       s->n_eps ? "the public endpoint is our own" : "no public endpoint known");
	for (uint32_t i = 0; i < d->max_peers; i++) {
		struct cp_peer *p = d->by_slot[i];

		if (p && p->from_coord) {
			p->persistent_keepalive = cp_coord_peer_keepalive(d);
			cp_dp_peer_push(d, p);
		}
	}
}

/* The set from what the servers say now; logged and reported if it changed. */
static void endpoints_update(struct cp_device *d, struct cp_stun *s)
{
	struct mg_sockaddr eps[MG_MAX_STUN_SERVERS];
	const struct mg_sockaddr *via[MG_MAX_STUN_SERVERS]; /* the first server to say it */
	char a[MG_SOCKADDR_STRLEN], b[MG_SOCKADDR_STRLEN];
	unsigned n = 0;

	for (unsigned i = 0; i < s->n_servers; i++) {
		const struct mg_sockaddr *m = &s->servers[i].mapped;
		if (m->family && !in_set(eps, n, m)) {
			via[n] = &s->servers[i].addr;
			eps[n++] = *m;
		}
	}
	if (n == s->n_eps && !memcmp(eps, s->eps, n * sizeof(eps[0])))
		return;
	for (unsigned i = 0; i < n; i++)
		if (!in_set(s->eps, s->n_eps, &eps[i]))
			mg_log(LOG_INFO, "stun: public endpoint %s (via %s)",
			       mg_sockaddr_fmt(&eps[i], a, sizeof(a)),
			       mg_sockaddr_fmt(via[i], b, sizeof(b)));
	for (unsigned i = 0; i < s->n_eps; i++)
		if (!in_set(eps, n, &s->eps[i]))
			mg_log(LOG_INFO, "stun: public endpoint %s no longer seen",
			       mg_sockaddr_fmt(&s->eps[i], a, sizeof(a)));
	memcpy(s->eps, eps, n * sizeof(eps[0]));
	s->n_eps = n;
	d->stun_endpoints = n;
	nat_update(d, s);
	if (s->notify)
		s->notify(s->notify_arg, s->eps, s->n_eps);
}

/* Retransmit once, give up, and forget what a silent server said; with
 * the dataplane synced (synced), send the request of a name just resolved. */
static void server_timers(struct cp_device *d, struct cp_stun *s, struct stun_server *sv,
			  uint64_t now, bool synced)
{
	char a[400];

	if (sv->dns && synced)
		dns_check(d, sv, now);
	if (sv->pending && now - sv->sent_ns >= GIVE_UP_NS) {
		sv->pending = false;
		mg_log(LOG_DEBUG, "stun: no answer from %s", server_str(sv, a, sizeof(a)));
	} else if (sv->pending && !sv->retransmitted && now - sv->sent_ns >= RETRANSMIT_NS) {
		sv->retransmitted = true;
		transmit(d, sv);
	}
	if (sv->mapped.family && now - sv->answered_ns >= FORGET_INTERVALS * s->interval_ns) {
		mg_log(LOG_INFO, "stun: %s has not answered for %u intervals",
		       server_str(sv, a, sizeof(a)), FORGET_INTERVALS);
		sv->mapped = (struct mg_sockaddr){0};
	}
}

void cp_stun_tick(struct cp_device *d, uint64_t now)
{
	struct cp_stun *s = d->stun;

	if (!s)
		return;
	cp_dns_reap(false);
	/* The dataplane must know our listen port before anything goes out
	 * (IFACE_SET, part of the sync), or the request leaves from another. */
	bool synced = d->attached && !d->resync && !d->syncing;
	if (synced) {
		if (s->link_ino != d->shm_ino) {
			s->link_ino = d->shm_ino;
			s->next_round_ns = now;
		}
		if (now >= s->next_round_ns)
			round_start(d, s, now);
	}
	for (unsigned i = 0; i < s->n_servers; i++)
		server_timers(d, s, &s->servers[i], now, synced);
	endpoints_update(d, s);
}

/* The server asked at ep with the request txid outstanding: two entries
 * may share an address (a name and its address, two names), so the id
 * decides. *known: some server is at ep. */
static struct stun_server *server_of(struct cp_stun *s, const struct mg_sockaddr *ep,
				     const uint8_t *txid, bool *known)
{
	*known = false;
	for (unsigned i = 0; i < s->n_servers; i++) {
		struct stun_server *sv = &s->servers[i];
		if (!sv->addr.family || !mg_sockaddr_same(&sv->addr, ep))
			continue;
		*known = true;
		if (sv->pending && !sodium_memcmp(txid, sv->txid, MG_STUN_TXID_LEN))
			return sv;
	}
	return NULL;
}

void cp_stun_rx(struct cp_device *d, const struct mg_msg *m, uint64_t now)
{
	struct cp_stun *s = d->stun;
	uint8_t txid[MG_STUN_TXID_LEN];
	struct mg_sockaddr mapped;
	struct stun_server *sv = NULL;
	bool known;
	char a[MG_SOCKADDR_STRLEN];
	enum mg_stun_err err;
	const char *why = NULL;

	if (!s)
		why = "STUN is off";
	else if ((err = mg_stun_parse_response(m->data, m->hdr.len, txid, &mapped)) != MG_STUN_OK)
		why = mg_stun_strerror(err);
	else if (!(sv = server_of(s, &m->hdr.ep, txid, &known)))
		why = known ? "no such request outstanding" : "not from a configured server";
	else if (now - sv->sent_ns > GIVE_UP_NS)
		why = "no such request outstanding";
	if (why) {
		d->stun_refused++;
		mg_log(LOG_DEBUG, "stun: message from %s refused: %s",
		       mg_sockaddr_fmt(&m->hdr.ep, a, sizeof(a)), why);
		return;
	}
	d->stun_accepted++;
	sv->pending = false;
	sv->mapped = clean_sockaddr(&mapped);
	sv->answered_ns = now;
	endpoints_update(d, s);
}

unsigned cp_stun_public(const struct cp_device *d, const struct mg_sockaddr **eps)
{
	*eps = d->stun ? d->stun->eps : NULL;
	return d->stun ? d->stun->n_eps : 0;
}
