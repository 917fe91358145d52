/* SPDX-License-Identifier: MIT */
/*
 * GET /metrics in the Prometheus text format (version 0.0.4), served by
 * libmicrohttpd's internal thread.
 *
 * Each scrape maps the dataplane's shared-memory region on its own (as the
 * `meshgate stats` CLI does), so a dataplane restart that makes the control
 * loop re-attach never pulls memory from under a scrape. Counters are plain
 * uint64 with one writer each (an lcore slot, or the main lcore for ports):
 * relaxed loads, no locks. Control-process state comes from the snapshot
 * (see metrics.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <rte_ring.h>

#include "addr.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"

/* Per-peer series beyond this many peers are left out (and counted), so a
 * page stays small however many peers the gateway has. */
#define METRICS_MAX_PEERS 4096u
/* Hard cap on one response; with METRICS_MAX_PEERS it is never reached. */
#define METRICS_MAX_BYTES (16u << 20)

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct snap_peer {
	uint32_t slot;
	uint8_t public_key[32];
	char name[64];
	uint64_t last_handshake_real_ns;
};

/* What the HTTP thread needs from the control process, by value. */
struct snap {
	struct snap_peer *peers; /* in slot order */
	uint32_t n, cap;
	uint64_t initiations_sent, initiations_rcvd, responses_sent, responses_rcvd;
	uint64_t cookies_sent, cookies_rcvd, completed, rejected, cp2dp_full;
	uint64_t stun_sent, stun_accepted, stun_refused;
	bool flow_log;
	uint64_t flow_records, flow_records_dropped, flow_write_errors;
	uint32_t stun_endpoints;
	bool behind_nat;
	uint64_t derp_tx, derp_rx, derp_tx_bytes, derp_rx_bytes, derp_connects, derp_peer_gone;
	uint64_t derp_drops[CP_DERP_DROP_COUNT];
	uint32_t derp_connected;
	bool derp_configured, derp_home_up;
	uint16_t derp_home, derp_region[MG_MAX_DERP_REGIONS];
	uint64_t derp_latency_ns[MG_MAX_DERP_REGIONS]; /* 0: not measured */
	int n_derp_regions;
	uint64_t disco[CP_DISCO_STAT_COUNT];
};

struct cp_metrics {
	char name[16]; /* gateway name: /dev/shm/meshgate.<name> */
	struct MHD_Daemon *httpd;
	pthread_mutex_t lock; /* guards snap */
	struct snap snap;
	bool serving; /* atomic: MHD's messages after start are per-request noise */
};

/* ---- the snapshot (control loop side) ------------------------------------- */

static bool snap_reserve(struct snap *s, uint32_t n)
{
	if (n <= s->cap)
		return true;
	struct snap_peer *p = realloc(s->peers, (size_t)n * sizeof(*p));
	if (!p)
		return false;
	s->peers = p;
	s->cap = n;
	return true;
}

static void snap_fill(struct snap *s, const struct cp_device *d)
{
	uint32_t want = d->n_peers < METRICS_MAX_PEERS ? d->n_peers : METRICS_MAX_PEERS;

	s->n = 0;
	if (snap_reserve(s, want)) {
		for (uint32_t i = 0; i < d->max_peers && s->n < want; i++) {
			const struct cp_peer *p = d->by_slot[i];
			struct snap_peer *e = &s->peers[s->n];
			if (!p)
				continue;
			e->slot = p->slot;
			memcpy(e->public_key, p->noise.public_key, 32);
			memcpy(e->name, p->name, sizeof(e->name));
			e->name[sizeof(e->name) - 1] = '\0';
			e->last_handshake_real_ns = p->last_handshake_real_ns;
			s->n++;
		}
	}
	s->initiations_sent = d->initiations_sent;
	s->initiations_rcvd = d->initiations_rcvd;
	s->responses_sent = d->responses_sent;
	s->responses_rcvd = d->responses_rcvd;
	s->cookies_sent = d->cookies_sent;
	s->cookies_rcvd = d->cookies_rcvd;
	s->completed = d->handshakes_done;
	s->rejected = d->handshakes_refused;
	s->cp2dp_full = d->cp2dp_full;
	s->stun_sent = d->stun_sent;
	s->flow_log = d->flowlog != NULL;
	s->flow_records = d->flow_records;
	s->flow_records_dropped = d->flow_records_dropped;
	s->flow_write_errors = d->flow_write_errors;
	s->stun_accepted = d->stun_accepted;
	s->stun_refused = d->stun_refused;
	s->stun_endpoints = d->stun_endpoints;
	s->behind_nat = d->behind_nat;
	s->derp_configured = d->derp != NULL;
	s->derp_tx = d->derp_tx;
	s->derp_rx = d->derp_rx;
	s->derp_tx_bytes = d->derp_tx_bytes;
	s->derp_rx_bytes = d->derp_rx_bytes;
	s->derp_connects = d->derp_connects;
	s->derp_peer_gone = d->derp_peer_gone;
	memcpy(s->derp_drops, d->derp_drops, sizeof(s->derp_drops));
	s->derp_connected = d->derp_connected;
	s->derp_home_up = d->derp_home_up;
	s->derp_home = d->derp_home_region;
	s->n_derp_regions = d->derp_n_regions;
	memcpy(s->derp_region, d->derp_region, sizeof(s->derp_region));
	memcpy(s->derp_latency_ns, d->derp_latency_ns, sizeof(s->derp_latency_ns));
	memcpy(s->disco, d->disco, sizeof(s->disco));
}

void cp_metrics_update(struct cp_metrics *m, const struct cp_device *d)
{
	/* A scrape holds the lock while it renders: skip, the next tick retries. */
	if (!m || pthread_mutex_trylock(&m->lock))
		return;
	snap_fill(&m->snap, d);
	pthread_mutex_unlock(&m->lock);
}

/* ---- the page ---------------------------------------------------------------- */

struct out {
	char *p;
	size_t len, cap;
	bool failed; /* out of memory or past METRICS_MAX_BYTES */
};

static void __attribute__((format(printf, 2, 3))) put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	while (!o->failed) {
		size_t room = o->cap - o->len;
		va_start(ap, fmt);
		int n = vsnprintf(o->p ? o->p + o->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = true;
		} else if ((size_t)n < room) {
			o->len += (size_t)n;
			return;
		} else {
			size_t cap = o->cap ? o->cap * 2 : 65536;
			while (cap < o->len + (size_t)n + 1)
				cap *= 2;
			char *p = cap <= METRICS_MAX_BYTES ? realloc(o->p, cap) : NULL;
			if (!p)
				o->failed = true;
			else {
				o->p = p;
				o->cap = cap;
			}
		}
	}
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] < 0xe0)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] < 0xf0)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] < 0xf5)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong forms, surrogates, past U+10FFFF. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return len;
}

/* A label value: backslash, quote and newline escaped; control bytes and
 * invalid UTF-8 become '?'. out must hold 2 * strlen(in) + 1 bytes. */
static void label_escape(const char *in, char *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in);

	while (n) {
		size_t l = utf8_len(s, n);
		if (l > 1) {
			memcpy(out, s, l);
			out += l;
		} else if (l == 0 || *s < 0x20 || *s == 0x7f) {
			*out++ = *s == '\n' ? '\\' : '?';
			if (*s == '\n')
				*out++ = 'n';
			l = l ? l : 1;
		} else {
			if (*s == '\\' || *s == '"')
				*out++ = '\\';
			*out++ = (char)*s;
		}
		s += l;
		n -= l;
	}
	*out = '\0';
}

/* One peer's row: labels and values gathered once, printed per family. */
struct peer_row {
	char labels[45 + 2 * 64 + 32];
	struct mg_peer_stats t;
	uint64_t last_handshake_real_ns;
};

static void row_labels(struct peer_row *r, const uint8_t key[32], const char *name)
{
	char b64[45], esc[2 * 64 + 1];
	mg_key_to_base64(key, b64);
	if (name && name[0]) {
		label_escape(name, esc);
		snprintf(r->labels, sizeof(r->labels), "public_key=\"%s\",name=\"%s\"", b64, esc);
	} else {
		snprintf(r->labels, sizeof(r->labels), "public_key=\"%s\"", b64);
	}
}

/* The peers the dataplane holds, first METRICS_MAX_PEERS by slot, joined
 * with the snapshot by slot and key. Returns the number of peers in use. */
static uint32_t collect_peers(const struct mg_shm *s, const struct snap *snap,
			      struct peer_row *rows, uint32_t *n_rows)
{
	uint32_t in_use = 0, j = 0;

	*n_rows = 0;
	for (uint32_t i = 0; i < s->hdr->max_peers; i++) {
		const struct mg_peer_export *e = &s->peers[i];
		if (!__atomic_load_n(&e->in_use, __ATOMIC_ACQUIRE))
			continue;
		in_use++;
		if (*n_rows == METRICS_MAX_PEERS)
			continue;
		struct peer_row *r = &rows[(*n_rows)++];
		const struct snap_peer *sp = NULL;
		while (j < snap->n && snap->peers[j].slot < i)
			j++;
		if (j < snap->n && snap->peers[j].slot == i &&
		    !memcmp(snap->peers[j].public_key, e->public_key, 32))
			sp = &snap->peers[j];
		row_labels(r, e->public_key, sp ? sp->name : NULL);
		r->last_handshake_real_ns = sp ? sp->last_handshake_real_ns : 0;
		mg_shm_peer_totals(s, i, &r->t);
	}
	return in_use;
}

static const struct {
	const char *name, *help;
	size_t off; /* of the uint64 in struct mg_peer_stats */
} peer_counters[] = {
    {"meshgate_inbound_bytes_total",
     "Bytes received from the peer (transport data, outer UDP payload).",
     offsetof(struct mg_peer_stats, rx_bytes)},
    {"meshgate_outbound_bytes_total", "Bytes sent to the peer (transport data, outer UDP payload).",
     offsetof(struct mg_peer_stats, tx_bytes)},
    {"meshgate_inbound_packets_total",
     "Authenticated packets received from the peer, keepalives included.",
     offsetof(struct mg_peer_stats, rx_packets)},
    {"meshgate_outbound_packets_total", "Packets sent to the peer, keepalives included.",
     offsetof(struct mg_peer_stats, tx_packets)},
};

static void render_peers(struct out *o, const struct mg_shm *s, const struct snap *snap)
{
	uint32_t n_rows,
	    cap = s->hdr->max_peers < METRICS_MAX_PEERS ? s->hdr->max_peers : METRICS_MAX_PEERS;
	struct peer_row *rows = calloc(cap ? cap : 1, sizeof(*rows));

	if (!rows) {
		o->failed = true;
		return;
	}
	uint32_t in_use = collect_peers(s, snap, rows, &n_rows);
	family(o, "meshgate_peers", "gauge", "Peers programmed in the dataplane.");
	put(o, "meshgate_peers %" PRIu32 "\n", in_use);
	family(o, "meshgate_metrics_omitted_peers", "gauge",
	       "Peers left out of the per-peer series (only the first 4096 are exported).");
	put(o, "meshgate_metrics_omitted_peers %" PRIu32 "\n", in_use - n_rows);
	for (size_t f = 0; f < sizeof(peer_counters) / sizeof(peer_counters[0]); f++) {
		family(o, peer_counters[f].name, "counter", peer_counters[f].help);
		for (uint32_t i = 0; i < n_rows; i++) {
			uint64_t v;
			memcpy(&v, (const char *)&rows[i].t + peer_counters[f].off, sizeof(v));
			put(o, "%s{%s} %" PRIu64 "\n", peer_counters[f].name, rows[i].labels, v);
		}
	}
	family(o, "meshgate_peer_last_handshake_timestamp_seconds", "gauge",
	       "Unix time of the peer's latest completed handshake, 0 if none.");
	for (uint32_t i = 0; i < n_rows; i++) {
		uint64_t ms = rows[i].last_handshake_real_ns / 1000000u;
		put(o, "meshgate_peer_last_handshake_timestamp_seconds{%s} %" PRIu64 ".%03u\n",
		    rows[i].labels, ms / 1000u, (unsigned)(ms % 1000u));
	}
	free(rows);
}

static void render_drops(struct out *o, const struct mg_shm *s)
{
	family(o, "meshgate_dropped_packets_total", "counter",
	       "Packets the dataplane dropped, by reason, summed over all lcores.");
	for (int r = 0; r < MG_DROP_MAX; r++)
		put(o, "meshgate_dropped_packets_total{reason=\"%s\"} %" PRIu64 "\n",
		    mg_drop_names[r], mg_shm_drop_total(s, (enum mg_drop_reason)r));
}

static void render_rings(struct out *o, const struct mg_shm *s, const struct snap *snap)
{
	family(
	    o, "meshgate_ring_full_total", "counter",
	    "Messages lost to a full ring: control_to_dataplane (control re-syncs the dataplane), "
	    "dataplane_to_control (punt_ring_full drops), worker_to_main (slow_ring_full drops).");
	put(o, "meshgate_ring_full_total{ring=\"control_to_dataplane\"} %" PRIu64 "\n",
	    snap->cp2dp_full);
	if (!s)
		return;
	put(o, "meshgate_ring_full_total{ring=\"dataplane_to_control\"} %" PRIu64 "\n",
	    mg_shm_drop_total(s, MG_DROP_PUNT_RING_FULL));
	put(o, "meshgate_ring_full_total{ring=\"worker_to_main\"} %" PRIu64 "\n",
	    mg_shm_drop_total(s, MG_DROP_SLOW_RING_FULL));
	family(o, "meshgate_ring_entries", "gauge",
	       "Messages waiting in a control/dataplane ring (capacity 1023).");
	put(o, "meshgate_ring_entries{ring=\"control_to_dataplane\"} %u\n",
	    rte_ring_count(s->cp2dp));
	put(o, "meshgate_ring_entries{ring=\"dataplane_to_control\"} %u\n",
	    rte_ring_count(s->dp2cp));
}

static const struct {
	const char *name, *help;
	size_t off; /* of the uint64 in struct mg_port_export */
} port_counters[] = {
    {"meshgate_port_rx_packets_total", "Packets received by the port.",
     offsetof(struct mg_port_export, rx_packets)},
    {"meshgate_port_rx_bytes_total", "Bytes received by the port.",
     offsetof(struct mg_port_export, rx_bytes)},
    {"meshgate_port_tx_packets_total", "Packets sent by the port.",
     offsetof(struct mg_port_export, tx_packets)},
    {"meshgate_port_tx_bytes_total", "Bytes sent by the port.",
     offsetof(struct mg_port_export, tx_bytes)},
    {"meshgate_port_rx_missed_total", "Packets the port dropped for lack of RX descriptors.",
     offsetof(struct mg_port_export, rx_missed)},
    {"meshgate_port_rx_errors_total", "Erroneous packets received by the port.",
     offsetof(struct mg_port_export, rx_errors)},
    {"meshgate_port_tx_errors_total", "Packets the port failed to send.",
     offsetof(struct mg_port_export, tx_errors)},
};

static void render_ports(struct out *o, const struct mg_shm *s)
{
	uint32_t n = s->hdr->n_ports < MG_MAX_SHM_PORTS ? s->hdr->n_ports : MG_MAX_SHM_PORTS;
	char labels[MG_MAX_SHM_PORTS][2 * 32 + 32];

	for (uint32_t i = 0; i < n; i++) {
		char name[sizeof(s->ports[i].name) + 1], esc[2 * sizeof(name) + 1];
		memcpy(name, s->ports[i].name, sizeof(s->ports[i].name));
		name[sizeof(name) - 1] = '\0';
		label_escape(name, esc);
		snprintf(labels[i], sizeof(labels[i]), "port=\"%s\",role=\"%s\"", esc,
			 s->ports[i].role == 0 ? "wan" : "lan");
	}
	for (size_t f = 0; f < sizeof(port_counters) / sizeof(port_counters[0]); f++) {
		family(o, port_counters[f].name, "counter", port_counters[f].help);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t v = __atomic_load_n(
			    (const uint64_t *)((const char *)&s->ports[i] + port_counters[f].off),
			    __ATOMIC_RELAXED);
			put(o, "%s{%s} %" PRIu64 "\n", port_counters[f].name, labels[i], v);
		}
	}
}

/* Per worker: a busy-polling worker's process shows 100% CPU whatever its
 * load; busy seconds per second is how loaded it really is. */
static void render_workers(struct out *o, const struct mg_shm *s)
{
	static const struct {
		const char *name, *help;
		size_t off;  /* of the uint64 in struct mg_worker_export */
		bool cycles; /* TSC cycles: exported as seconds */
	} f[] = {
	    {"meshgate_worker_busy_seconds_total",
	     "Time the worker spent on packets it received (its load: rate() of this is the "
	     "share of its core in use).",
	     offsetof(struct mg_worker_export, busy_tsc), true},
	    {"meshgate_worker_crypto_seconds_total",
	     "The part of the busy time spent in ChaCha20-Poly1305 bursts.",
	     offsetof(struct mg_worker_export, crypto_tsc), true},
	    {"meshgate_worker_rx_packets_total", "Packets the worker took off the ports.",
	     offsetof(struct mg_worker_export, rx_packets), false},
	    {"meshgate_worker_polls_total", "Poll iterations of the worker, empty ones included.",
	     offsetof(struct mg_worker_export, polls), false},
	    {"meshgate_worker_idle_sleeps_total",
	     "Sleeps of an idle worker between polls (dataplane.idle_sleep_us).",
	     offsetof(struct mg_worker_export, idle_sleeps), false},
	    {"meshgate_worker_flows", "Flows in the worker's flow-log table (flow_log).",
	     offsetof(struct mg_worker_export, flows), false},
	    {"meshgate_worker_flows_untracked_packets_total",
	     "Packets of flows the worker's full flow-log table could not take (not logged).",
	     offsetof(struct mg_worker_export, flows_untracked), false},
	    {"meshgate_worker_flow_records_total", "Flow records the worker handed to control.",
	     offsetof(struct mg_worker_export, flow_records), false},
	    {"meshgate_worker_flow_ring_full_total",
	     "Times the worker's flow-record ring was full (control behind): the records "
	     "waited in the flow table.",
	     offsetof(struct mg_worker_export, flow_ring_full), false},
	};
	double hz = s->hdr->tsc_hz ? (double)s->hdr->tsc_hz : 1.0;

	for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
		family(o, f[k].name,
		       f[k].off == offsetof(struct mg_worker_export, flows) ? "gauge" : "counter",
		       f[k].help);
		for (unsigned i = 0; i < MG_MAX_LCORES; i++) {
			struct mg_worker_export w;
			if (!mg_shm_worker_load(s, i, &w))
				continue;
			uint64_t v;
			memcpy(&v, (const char *)&w + f[k].off, sizeof(v));
			if (f[k].cycles)
				put(o, "%s{worker=\"%u\",lcore=\"%u\"} %.6f\n", f[k].name, i,
				    w.lcore, (double)v / hz);
			else
				put(o, "%s{worker=\"%u\",lcore=\"%u\"} %" PRIu64 "\n", f[k].name, i,
				    w.lcore, v);
		}
	}
}

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
	family(o, name, "counter", help);
	put(o, "%s %" PRIu64 "\n", name, v);
}

static void render_handshakes(struct out *o, const struct snap *s)
{
	counter(o, "meshgate_handshake_initiations_sent_total",
		"Handshake initiations sent (first attempts and retries).", s->initiations_sent);
	counter(o, "meshgate_handshake_initiations_received_total",
		"Handshake initiation messages received, before any check.", s->initiations_rcvd);
	counter(o, "meshgate_handshake_responses_sent_total", "Handshake responses sent.",
		s->responses_sent);
	counter(o, "meshgate_handshake_responses_received_total",
		"Handshake response messages received, before any check.", s->responses_rcvd);
	counter(o, "meshgate_handshakes_completed_total",
		"Handshakes completed (session keys installed), as initiator or responder.",
		s->completed);
	counter(o, "meshgate_handshakes_rejected_total",
		"Handshake messages that failed the Noise checks or named an unknown peer.",
		s->rejected);
	counter(o, "meshgate_cookie_replies_sent_total", "Cookie replies sent while under load.",
		s->cookies_sent);
	counter(o, "meshgate_cookie_replies_received_total", "Cookie reply messages received.",
		s->cookies_rcvd);
}

const char *const cp_derp_drop_names[CP_DERP_DROP_COUNT] = {
    [CP_DERP_DROP_NOT_READY] = "not_ready",   [CP_DERP_DROP_QUEUE_FULL] = "queue_full",
    [CP_DERP_DROP_NO_REGION] = "no_region",   [CP_DERP_DROP_UNKNOWN_PEER] = "unknown_peer",
    [CP_DERP_DROP_BAD_PACKET] = "bad_packet", [CP_DERP_DROP_RING_FULL] = "ring_full",
    [CP_DERP_DROP_PROTOCOL] = "protocol",
};

const char *const cp_disco_stat_names[CP_DISCO_STAT_COUNT] = {
    [CP_DISCO_PINGS_SENT] = "ping_sent",	[CP_DISCO_PINGS_RCVD] = "ping_received",
    [CP_DISCO_PONGS_SENT] = "pong_sent",	[CP_DISCO_PONGS_RCVD] = "pong_received",
    [CP_DISCO_CMM_SENT] = "call_me_maybe_sent", [CP_DISCO_CMM_RCVD] = "call_me_maybe_received",
    [CP_DISCO_DIRECT] = "direct_path_found",	[CP_DISCO_REFUSED] = "refused",
};

static void render_derp(struct out *o, const struct snap *s)
{
	if (!s->derp_configured)
		return;
	family(o, "meshgate_derp_home_connected", "gauge",
	       "1 while the connection to the home DERP relay (where peers reach us) is up.");
	put(o, "meshgate_derp_home_connected %d\n", s->derp_home_up ? 1 : 0);
	family(o, "meshgate_derp_home_region", "gauge",
	       "The home DERP region's id (configured, or the one of least latency).");
	put(o, "meshgate_derp_home_region %u\n", s->derp_home);
	bool any = false;
	for (int i = 0; i < s->n_derp_regions; i++)
		any |= s->derp_latency_ns[i] != 0;
	if (any) {
		family(o, "meshgate_derp_region_latency_seconds", "gauge",
		       "TCP connect time to each DERP region's relay (the least of the last "
		       "probes), when the home is chosen by latency.");
		for (int i = 0; i < s->n_derp_regions; i++)
			if (s->derp_latency_ns[i])
				put(o, "meshgate_derp_region_latency_seconds{region=\"%u\"} %.6f\n",
				    s->derp_region[i], (double)s->derp_latency_ns[i] / 1e9);
	}
	family(o, "meshgate_derp_relays_connected", "gauge", "DERP relays connected now.");
	put(o, "meshgate_derp_relays_connected %" PRIu32 "\n", s->derp_connected);
	counter(o, "meshgate_derp_connects_total", "Connections to DERP relays established.",
		s->derp_connects);
	family(o, "meshgate_derp_packets_total", "counter",
	       "WireGuard messages relayed through DERP, by direction.");
	put(o, "meshgate_derp_packets_total{direction=\"tx\"} %" PRIu64 "\n", s->derp_tx);
	put(o, "meshgate_derp_packets_total{direction=\"rx\"} %" PRIu64 "\n", s->derp_rx);
	family(o, "meshgate_derp_bytes_total", "counter",
	       "Bytes of WireGuard messages relayed through DERP, by direction.");
	put(o, "meshgate_derp_bytes_total{direction=\"tx\"} %" PRIu64 "\n", s->derp_tx_bytes);
	put(o, "meshgate_derp_bytes_total{direction=\"rx\"} %" PRIu64 "\n", s->derp_rx_bytes);
	family(o, "meshgate_derp_drops_total", "counter",
	       "Messages for or from DERP relays dropped, by reason.");
	for (int i = 0; i < CP_DERP_DROP_COUNT; i++)
		put(o, "meshgate_derp_drops_total{reason=\"%s\"} %" PRIu64 "\n",
		    cp_derp_drop_names[i], s->derp_drops[i]);
	counter(o, "meshgate_derp_peer_gone_total",
		"Relays' notices that a peer we sent to is not connected there.",
		s->derp_peer_gone);
	family(o, "meshgate_disco_messages_total", "counter",
	       "Disco path discovery: pings, pongs and call-me-maybes sent and received, relayed "
	       "peers moved to a direct path, messages refused.");
	for (int i = 0; i < CP_DISCO_STAT_COUNT; i++)
		put(o, "meshgate_disco_messages_total{event=\"%s\"} %" PRIu64 "\n",
		    cp_disco_stat_names[i], s->disco[i]);
}

static void render_flow_log(struct out *o, const struct snap *s)
{
	if (!s->flow_log)
		return;
	counter(o, "meshgate_flow_log_records_total", "Flow records written to flow_log.file.",
		s->flow_records);
	counter(o, "meshgate_flow_log_records_dropped_total",
		"Flow records not written: a failed write (the batch is cut back off the file).",
		s->flow_records_dropped);
	counter(o, "meshgate_flow_log_write_errors_total",
		"Batches of flow records that could not be written (the file's disk full, ...).",
		s->flow_write_errors);
}

static void render_stun(struct out *o, const struct snap *s)
{
	counter(o, "meshgate_stun_requests_total",
		"STUN Binding requests sent from the listen port (retransmissions included).",
		s->stun_sent);
	family(o, "meshgate_stun_responses_total", "counter",
	       "STUN messages received: accepted (the answer to a request outstanding) or refused "
	       "(malformed, unasked for, late, or from elsewhere).");
	put(o, "meshgate_stun_responses_total{result=\"accepted\"} %" PRIu64 "\n",
	    s->stun_accepted);
	put(o, "meshgate_stun_responses_total{result=\"refused\"} %" PRIu64 "\n", s->stun_refused);
	family(o, "meshgate_stun_endpoints", "gauge",
	       "Public endpoints STUN servers see now (reported to the coordination server).");
	put(o, "meshgate_stun_endpoints %" PRIu32 "\n", s->stun_endpoints);
	family(o, "meshgate_behind_nat", "gauge",
	       "1 if STUN sees us at an endpoint that is not our own (a NAT in between): "
	       "peers from the coordination server then get 25 s keepalives.");
	put(o, "meshgate_behind_nat %d\n", s->behind_nat ? 1 : 0);
}

int cp_metrics_render(struct cp_metrics *m, char **buf, size_t *len)
{
	struct out o = {0};
	struct mg_shm s;
	bool up = mg_shm_attach(&s, m->name) == 0;

	family(&o, "meshgate_dataplane_up", "gauge",
	       "Whether the dataplane's shared memory could be read (1) or not (0).");
	put(&o, "meshgate_dataplane_up %d\n", up);
	pthread_mutex_lock(&m->lock);
	if (up) {
		render_peers(&o, &s, &m->snap);
		render_drops(&o, &s);
		render_ports(&o, &s);
		render_workers(&o, &s);
	}
	render_rings(&o, up ? &s : NULL, &m->snap);
	render_handshakes(&o, &m->snap);
	render_stun(&o, &m->snap);
	render_flow_log(&o, &m->snap);
	render_derp(&o, &m->snap);
	pthread_mutex_unlock(&m->lock);
	if (up)
		mg_shm_detach(&s);
	if (o.failed || !o.p) {
		free(o.p);
		return -ENOMEM;
	}
	*buf = o.p;
	*len = o.len;
	return 0;
}

/* ---- HTTP ------------------------------------------------------------------- */

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text,
				  const char *allow)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct cp_metrics *m = cls;
	char *page;
	size_t len;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	/* Every answer is queued on the first call; a request body is never read. */
	if (strcmp(url, "/metrics"))
		return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n", NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n",
				  "GET, HEAD");
	if (cp_metrics_render(m, &page, &len))
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics\n",
				  NULL);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, page, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(page);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static void on_httpd_log(void *cls, const char *fmt, va_list ap)
{
	struct cp_metrics *m = cls;
	char msg[256];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* Why the start failed matters; a client's broken request does not. */
	mg_log(__atomic_load_n(&m->serving, __ATOMIC_RELAXED) ? LOG_DEBUG : LOG_WARNING,
	       "metrics: %s", msg);
}

struct cp_metrics *cp_metrics_start(const struct mg_config *cfg)
{
	const struct mg_sockaddr *a = &cfg->metrics_listen;
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;

	if (a->family != AF_INET && a->family != AF_INET6) {
		errno = EINVAL;
		return NULL;
	}
	struct cp_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	snprintf(m->name, sizeof(m->name), "%s", cfg->name);
	pthread_mutex_init(&m->lock, NULL);
	mg_sockaddr_to_sys(a, &ss);
	if (a->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	/* clang-format off */
	m->httpd = MHD_start_daemon(flags, a->port, NULL, NULL, on_request, m,
				    MHD_OPTION_EXTERNAL_LOGGER, on_httpd_log, m,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				    MHD_OPTION_CONNECTION_LIMIT, 16u,
				    MHD_OPTION_PER_IP_CONNECTION_LIMIT, 8u,
				    MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
				    MHD_OPTION_END);
	/* clang-format on */
	if (!m->httpd) {
		int err = errno ? errno : EADDRNOTAVAIL;
		pthread_mutex_destroy(&m->lock);
		free(m);
		errno = err;
		return NULL;
	}
	__atomic_store_n(&m->serving, true, __ATOMIC_RELAXED);
	return m;
}

void cp_metrics_stop(struct cp_metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->httpd);
	pthread_mutex_destroy(&m->lock);
	free(m->snap.peers);
	free(m);
}
