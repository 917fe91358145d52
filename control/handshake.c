/* SPDX-License-Identifier: MIT */
/*
 * Handshakes (Noise_IKpsk2 via wg/noise.c, MAC1/MAC2 and cookies via
 * wg/cookie.c) driven by messages the dataplane punts, and the WireGuard
 * timers, evaluated from the dataplane's per-peer counters.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <sodium.h>

#include "addr.h"
#include "cp.h"
#include "log.h"
#include "wg_messages.h"

uint64_t cp_now(void)
{
	return mg_mono_ns();
}

static size_t src_bytes(const struct mg_sockaddr *sa, uint8_t out[18])
{
	size_t n = sa->family == AF_INET ? 4 : 16;
	memcpy(out, sa->addr, n);
	out[n] = (uint8_t)(sa->port >> 8);
	out[n + 1] = (uint8_t)sa->port;
	return n + 2;
}

static bool under_load(struct cp_device *d)
{
	return cp_now() < d->under_load_until_ns;
}

static void set_endpoint(struct cp_device *d, struct cp_peer *p, const struct mg_sockaddr *ep)
{
	if (!memcmp(&p->endpoint, ep, sizeof(*ep)))
		return;
	p->endpoint = *ep;
	cp_peer_note_direct(p);
	cp_dp_peer_push(d, p);
}

static void install(struct cp_device *d, struct cp_peer *p, struct wg_noise_keypair *kp)
{
	struct mg_msg m;
	struct mg_msg_keypair *k = (struct mg_msg_keypair *)m.data;
	uint64_t now = cp_now();

	m.hdr = (struct mg_msg_hdr){.type = MG_MSG_KEYPAIR_ADD, .peer = p->slot, .len = sizeof(*k)};
	*k = (struct mg_msg_keypair){.local_index = kp->local_index,
				     .remote_index = kp->remote_index,
				     .initiator = kp->initiator,
				     .created_ns = now};
	memcpy(k->send_key, kp->send_key, 32);
	memcpy(k->recv_key, kp->recv_key, 32);
	sodium_memzero(kp, sizeof(*kp));
	cp_dp_send(d, &m);
	sodium_memzero(&m, sizeof(m)); /* the keys now live only in the dataplane */

	p->last_handshake_real_ns = mg_real_ns();
	p->last_handshake_mono_ns = now;
	p->zeroed_at_ns = 0;
	d->handshakes_done++;
}

static void mirror_add(struct cp_peer *p, uint32_t idx, bool initiator, uint64_t now)
{
	if (initiator) {
		if (p->kp_next) {
			p->kp_prev = p->kp_next;
			p->kp_next = 0;
		} else {
			p->kp_prev = p->kp_cur;
		}
		p->kp_cur = idx;
		p->cur_created_ns = now;
		p->cur_initiator = true;
		p->lastminute_sent = false;
	} else {
		p->kp_next = idx;
		p->kp_prev = 0;
	}
}

void cp_hs_keypair_confirmed(struct cp_device *d, struct cp_peer *p)
{
	(void)d;
	if (!p->kp_next)
		return;
	p->kp_prev = p->kp_cur;
	p->kp_cur = p->kp_next;
	p->kp_next = 0;
	p->cur_created_ns = p->last_handshake_mono_ns;
	p->cur_initiator = false;
	p->lastminute_sent = false;
}

/* The peer's retransmit timer runs: cp_timers_tick checks it every tick
 * (the bit is cleared there once hs_wanted is false again). */
static void hs_wanted_set(struct cp_device *d, struct cp_peer *p)
{
	p->hs_wanted = true;
	d->hs_wanted[p->slot / 64] |= 1ull << (p->slot % 64);
}

/*
 * Which paths an initiation takes, when the peer has both a direct endpoint
 * and a DERP region ("DERP when UDP fails"). The responder answers the first
 * copy to arrive (a second is a replay to it), on the path it came by.
 *  - Direct now: the first attempt direct; then, in turn, both paths (the
 *    relay saves a blocked direct path 5 s in) and the relay alone (saves a
 *    direct path that carries our initiation but not the answer back).
 *  - Relayed now: the first attempt on both, so that a direct path that
 *    works again takes over at the next handshake; then the relay alone.
 * With one path known, that one.
 */
static int hs_send(struct cp_device *d, struct cp_peer *p, const void *msg, size_t len)
{
	const uint8_t *key = p->noise.public_key;
	bool relayed = mg_sockaddr_is_derp(&p->endpoint);
	struct mg_sockaddr home = mg_sockaddr_derp(p->derp_region);
	const struct mg_sockaddr *relay = relayed ? &p->endpoint : p->derp_region ? &home : NULL;
	const struct mg_sockaddr *direct = relayed ? &p->direct : &p->endpoint;
	bool use_direct, use_relay;
	int sent = 0;

	if (!direct->family)
		direct = NULL;
	if (!direct || !relay) {
		use_direct = direct != NULL;
		use_relay = relay != NULL;
	} else if (relayed) {
		use_relay = true;
		use_direct = p->hs_attempts == 1;
	} else { /* 1: direct; 2, 4, ...: both; 3, 5, ...: the relay */
		use_direct = p->hs_attempts == 1 || p->hs_attempts % 2 == 0;
		use_relay = p->hs_attempts >= 2;
	}
	if (use_direct && cp_tx(d, direct, key, msg, len) == 0)
		sent++;
	if (use_relay && cp_tx(d, relay, key, msg, len) == 0)
		sent++;
	return sent ? 0 : -EAGAIN;
}

void cp_hs_initiate(struct cp_device *d, struct cp_peer *p, bool retry)
{
	struct wg_message_initiation msg;
	uint64_t now = cp_now();

	if (!d->local.has_identity || (!p->endpoint.family && !p->derp_region) || !d->attached)
		return;
	/* At most one initiation per REKEY_TIMEOUT unless the timer retries. */
	if (!retry && p->hs_last_sent_ns && now - p->hs_last_sent_ns < d->t.rekey_timeout)
		return;
	if (!p->hs_wanted) {
		hs_wanted_set(d, p);
		p->hs_first_ns = now;
		p->hs_attempts = 0;
	}
	p->hs_attempts++;
	uint32_t idx = cp_index_alloc(d, p);
	if (wg_noise_create_initiation(&d->local, &p->noise, idx, mg_real_ns(), &msg)) {
		mg_log(LOG_DEBUG, "peer %u: cannot create initiation", p->slot);
		return;
	}
	wg_cookie_add_macs(&p->cookie, &msg, sizeof(msg), now);
	p->hs_local_index = idx;
	p->hs_last_sent_ns = now;
	p->hs_jitter_ns = (uint64_t)randombytes_uniform(WG_REKEY_TIMEOUT_JITTER_MAX_MS) * 1000000ull;
	if (hs_send(d, p, &msg, sizeof(msg)) == 0)
		d->initiations_sent++;
	sodium_memzero(&msg, sizeof(msg));
}

/* Cookie handling common to initiations and responses. Returns true when
 * the message may be processed further. */
static bool check_macs(struct cp_device *d, const struct mg_msg *m, uint32_t sender_index)
{
	uint8_t src[18];
	size_t n = src_bytes(&m->hdr.ep, src);
	uint64_t now = cp_now();
	enum wg_cookie_mac_state st = wg_cookie_validate(&d->checker, m->data, m->hdr.len, src, n, now);

	if (st == WG_COOKIE_MAC_INVALID)
		return false;
	if (!under_load(d))
		return true;
	if (st != WG_COOKIE_MAC1_AND_MAC2_VALID) {
		struct wg_message_cookie reply;
		if (wg_cookie_create_reply(&d->checker, m->data, m->hdr.len, sender_index, src, n,
					   now, &reply) == 0) {
			if (m->hdr.port == CP_PORT_DERP) /* the sender's key follows the message */
				cp_tx(d, &m->hdr.ep, m->data + m->hdr.len, &reply, sizeof(reply));
			else
				cp_dp_tx_udp(d, &m->hdr.ep, &reply, sizeof(reply));
			d->cookies_sent++;
		}
		return false;
	}
	/* Proven address: still rate limited per source under load. */
	return wg_ratelimiter_allow(d->rl, src, n - 2, now);
}

/*
 * The initiations of one poll of the dataplane's ring, together: under a
 * flood of valid initiations their X25519 work runs 8 lanes at a time
 * (wg_noise_consume_initiations, wg_noise_create_responses); one alone costs
 * what it always did. Per message, the steps and their order are those of a
 * single initiation: MACs (cookie replies under load), e/es/s, peer lookup,
 * ss/{t} (timestamp and flood checks), response, keys.
 */
static void rx_initiations(struct cp_device *d, const struct mg_msg *const *m, unsigned n)
{
	const struct wg_message_initiation *msg[WG_NOISE_BATCH];
	const struct mg_msg *from[WG_NOISE_BATCH];
	struct wg_noise_initiation in[WG_NOISE_BATCH];
	struct wg_noise_remote *remote[WG_NOISE_BATCH];
	struct cp_peer *peer[WG_NOISE_BATCH];
	struct wg_message_response resp[WG_NOISE_BATCH];
	uint32_t idx[WG_NOISE_BATCH];
	int rc[WG_NOISE_BATCH];
	unsigned k = 0, a = 0;
	uint64_t now = cp_now();

	if (!d->local.has_identity)
		return;
	for (unsigned i = 0; i < n && k < WG_NOISE_BATCH; i++) {
		const struct wg_message_initiation *im = (const void *)m[i]->data;
		if (!check_macs(d, m[i], le32toh(im->sender_index)))
			continue;
		from[k] = m[i];
		msg[k++] = im;
	}
	wg_noise_consume_initiations(&d->local, msg, in, rc, k);
	for (unsigned i = 0; i < k; i++) {
		struct cp_peer *p = rc[i] ? NULL : cp_peer_find(d, in[i].remote_static);
		if (!p || wg_noise_accept_initiation(&p->noise, &in[i], now)) {
			sodium_memzero(&in[i], sizeof(in[i]));
			d->handshakes_refused++;
			continue;
		}
		set_endpoint(d, p, &from[i]->hdr.ep);
		idx[a] = cp_index_alloc(d, p);
		remote[a] = &p->noise;
		peer[a++] = p;
	}
	wg_noise_create_responses(&d->local, remote, idx, resp, rc, a);
	for (unsigned i = 0; i < a; i++) {
		struct cp_peer *p = peer[i];
		struct wg_noise_keypair kp;

		if (rc[i] || wg_noise_derive_keypair(&p->noise, &kp))
			continue;
		wg_cookie_add_macs(&p->cookie, &resp[i], sizeof(resp[i]), now);
		install(d, p, &kp);
		mirror_add(p, idx[i], false, now);
		if (cp_tx(d, &p->endpoint, p->noise.public_key, &resp[i], sizeof(resp[i])) == 0)
			d->responses_sent++;
		mg_log(LOG_DEBUG, "peer %u: handshake as responder", p->slot);
	}
	sodium_memzero(resp, sizeof(resp[0]) * a);
}

static void rx_response(struct cp_device *d, const struct mg_msg *m)
{
	const struct wg_message_response *msg = (const void *)m->data;
	struct wg_noise_keypair kp;
	uint64_t now = cp_now();

	if (!check_macs(d, m, le32toh(msg->sender_index)))
		return;
	struct cp_peer *p = cp_peer_by_index(d, le32toh(msg->receiver_index));
	if (!p || wg_noise_consume_response(&d->local, &p->noise, msg) ||
	    wg_noise_derive_keypair(&p->noise, &kp)) {
		d->handshakes_refused++;
		return;
	}
	set_endpoint(d, p, &m->hdr.ep);
	uint32_t idx = kp.local_index;
	install(d, p, &kp);
	mirror_add(p, idx, true, now);
	p->hs_wanted = false;
	/* Confirm the session at once (or flush what was queued). */
	cp_dp_simple(d, MG_MSG_KEEPALIVE, p->slot);
	mg_log(LOG_DEBUG, "peer %u: handshake as initiator", p->slot);
}

static void rx_cookie(struct cp_device *d, const struct mg_msg *m)
{
	const struct wg_message_cookie *msg = (const void *)m->data;
	struct cp_peer *p = cp_peer_by_index(d, le32toh(msg->receiver_index));
	if (p)
		wg_cookie_consume_reply(&p->cookie, msg, cp_now());
}

void cp_hs_rx_burst(struct cp_device *d, const struct mg_msg *const *m, unsigned n)
{
	const struct mg_msg *init[WG_NOISE_BATCH];
	unsigned ninit = 0;

	for (unsigned i = 0; i < n; i++) {
		const struct mg_msg *x = m[i];
		if (x->hdr.len < 4 || (x->hdr.ep.family != AF_INET && x->hdr.ep.family != AF_INET6))
			continue;
		switch (x->data[0]) {
		case WG_MSG_HANDSHAKE_INITIATION:
			if (x->hdr.len == sizeof(struct wg_message_initiation)) {
				d->initiations_rcvd++;
				if (ninit == WG_NOISE_BATCH) {
					rx_initiations(d, init, ninit);
					ninit = 0;
				}
				init[ninit++] = x;
			}
			break;
		case WG_MSG_HANDSHAKE_RESPONSE:
			if (x->hdr.len == sizeof(struct wg_message_response)) {
				d->responses_rcvd++;
				rx_response(d, x);
			}
			break;
		case WG_MSG_HANDSHAKE_COOKIE:
			if (x->hdr.len == sizeof(struct wg_message_cookie)) {
				d->cookies_rcvd++;
				rx_cookie(d, x);
			}
			break;
		}
	}
	if (ninit)
		rx_initiations(d, init, ninit);
}

/* ---- timers ------------------------------------------------------------------ */

static bool has_session(const struct cp_peer *p)
{
	return p->kp_cur != 0;
}

static void timer_retransmit(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	if (!p->hs_wanted || now - p->hs_last_sent_ns < d->t.rekey_timeout + p->hs_jitter_ns)
		return;
	if (now - p->hs_first_ns >= d->t.rekey_attempt) {
		/* Give up: drop what waits, and stop until new traffic asks. */
		p->hs_wanted = false;
		cp_dp_simple(d, MG_MSG_STAGED_DROP, p->slot);
		mg_log(LOG_INFO, "peer %u: handshake did not complete after %llu s, giving up",
		       p->slot, (unsigned long long)(d->t.rekey_attempt / 1000000000ull));
		return;
	}
	cp_hs_initiate(d, p, true);
}

static void timer_keepalive(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	/* Passive keepalive: data arrived and we sent nothing since. */
	if (p->last_rx_data_ns && p->last_rx_data_ns > p->last_tx_ns &&
	    p->keepalive_for_rx_ns != p->last_rx_data_ns &&
	    now - p->last_rx_data_ns >= d->t.keepalive && has_session(p)) {
		p->keepalive_for_rx_ns = p->last_rx_data_ns;
		cp_dp_simple(d, MG_MSG_KEEPALIVE, p->slot);
	}
	/* Persistent keepalive. */
	if (p->persistent_keepalive && p->endpoint.family) {
		uint64_t iv = (uint64_t)p->persistent_keepalive * 1000000000ull;
		uint64_t last = p->last_tx_ns > p->persistent_sent_ns ? p->last_tx_ns : p->persistent_sent_ns;
		if (now - last >= iv) {
			p->persistent_sent_ns = now;
			cp_dp_simple(d, MG_MSG_KEEPALIVE, p->slot);
		}
	}
}

static void timer_rekey(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	/* Data sent and nothing heard for KEEPALIVE + REKEY_TIMEOUT: new handshake. */
	if (p->last_tx_data_ns > p->last_rx_ns) {
		if (!p->unanswered_tx_ns || p->unanswered_tx_ns < p->last_rx_ns)
			p->unanswered_tx_ns = p->last_tx_data_ns;
		if (now - p->unanswered_tx_ns >= d->t.keepalive + d->t.rekey_timeout) {
			p->unanswered_tx_ns = now;
			cp_hs_initiate(d, p, false);
		}
	} else {
		p->unanswered_tx_ns = 0;
	}
	if (!has_session(p) || !p->cur_initiator)
		return;
	uint64_t age = now - p->cur_created_ns;
	/* Rekey after time while sending; last-minute rekey while receiving. */
	if (age >= d->t.rekey_after && p->last_tx_ns > p->cur_created_ns + d->t.rekey_after - 1000000000ull)
		cp_hs_initiate(d, p, false);
	else if (!p->lastminute_sent &&
		 age >= d->t.reject_after - d->t.keepalive - d->t.rekey_timeout &&
		 p->last_rx_ns > p->cur_created_ns) {
		p->lastminute_sent = true;
		cp_hs_initiate(d, p, false);
	}
}

static void timer_zero(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	if (p->last_handshake_mono_ns && !p->zeroed_at_ns &&
	    now - p->last_handshake_mono_ns >= 3 * d->t.reject_after) {
		p->zeroed_at_ns = now;
		p->kp_prev = p->kp_cur = p->kp_next = 0;
		wg_noise_handshake_clear(&p->noise.hs);
		cp_dp_simple(d, MG_MSG_KEYPAIRS_CLEAR, p->slot);
	}
}

/*
 * A tick (every 50 ms): the handshakes being retried, all of them, then a
 * slice of all peers for the other timers, at least SWEEP_MIN of them and
 * enough that every peer is visited within SWEEP_TICKS ticks (2 s): a hub
 * with 100,000 peers does not walk them all 20 times a second. Keepalive
 * (10 s), rekey (120 s) and zeroing (540 s) are coarse enough for that.
 */
#define SWEEP_MIN   1024
#define SWEEP_TICKS 40

static void peer_tick(struct cp_device *d, struct cp_peer *p, uint64_t now)
{
	cp_peer_refresh_stats(d, p);
	if (p->cur_initiator == false && p->kp_cur && p->cur_created_ns == 0)
		p->cur_created_ns = now;
	if (p->hs_wanted) /* after a slot change (adopt): back on the fast list */
		hs_wanted_set(d, p);
	timer_keepalive(d, p, now);
	timer_rekey(d, p, now);
	timer_zero(d, p, now);
}

void cp_timers_tick(struct cp_device *d)
{
	uint64_t now = cp_now();
	if (!d->attached)
		return;
	for (uint32_t w = 0; w < (d->max_peers + 63) / 64; w++) {
		for (uint64_t bits = d->hs_wanted[w]; bits; bits &= bits - 1) {
			uint32_t b = (uint32_t)__builtin_ctzll(bits);
			struct cp_peer *p = d->by_slot[w * 64 + b];
			if (!p || !p->hs_wanted || p->slot != w * 64 + b) {
				d->hs_wanted[w] &= ~(1ull << b);
				continue;
			}
			timer_retransmit(d, p, now);
		}
	}
	uint32_t n = (d->max_peers + SWEEP_TICKS - 1) / SWEEP_TICKS;
	n = n < SWEEP_MIN ? SWEEP_MIN : n;
	n = n > d->max_peers ? d->max_peers : n;
	for (uint32_t k = 0; k < n; k++) {
		struct cp_peer *p = d->by_slot[d->timer_cursor];
		d->timer_cursor = (d->timer_cursor + 1) & (d->max_peers - 1);
		if (p)
			peer_tick(d, p, now);
	}
}
