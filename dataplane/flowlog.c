/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "flowlog.h"
#include "l4.h"

struct flow_key {
	uint32_t peer;
	uint8_t dir, family, proto, pad;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
};

_Static_assert(sizeof(struct flow_key) == 44, "flow key has no padding");

struct flow {
	struct flow_key key;
	uint64_t packets, bytes, first_tsc, last_tsc; /* since the last record */
	uint64_t recorded_tsc;			      /* the last record, or the first packet */
	uint64_t seen_tsc;			      /* the last packet */
	uint32_t live_idx;			      /* in live[] */
};

struct dp_flowlog {
	struct rte_hash *h;
	struct flow *flows; /* by the hash's key position */
	uint32_t n_flows;   /* positions */
	/* The positions in use, densely, so that a sweep costs what it looks
	 * at, however empty the table is; the sweep's cursor. */
	uint32_t *live;
	uint32_t n_live, cursor;
	int32_t last; /* the position the last packet hit, -1: none */
	uint64_t interval_tsc, idle_tsc;
	struct rte_ring *ring;
	uint64_t last_sweep_tsc;
	uint64_t untracked, ring_full, records;
};

struct dp_flowlog *dp_flowlog_create(const char *name, uint32_t max_flows, uint64_t interval_tsc,
				     uint64_t idle_tsc, struct rte_ring *ring, int socket_id)
{
	struct dp_flowlog *f = rte_zmalloc_socket("flowlog", sizeof(*f), 64, socket_id);
	struct rte_hash_parameters p = {
	    .name = name,
	    .entries = max_flows,
	    .key_len = sizeof(struct flow_key),
	    .hash_func = rte_hash_crc,
	    .socket_id = socket_id,
	};

	if (!f)
		return NULL;
	f->h = rte_hash_create(&p);
	if (!f->h)
		goto fail;
	f->n_flows = (uint32_t)rte_hash_max_key_id(f->h) + 1;
	f->flows =
	    rte_zmalloc_socket("flows", (size_t)f->n_flows * sizeof(struct flow), 64, socket_id);
	f->live =
	    rte_malloc_socket("flows_live", (size_t)f->n_flows * sizeof(uint32_t), 64, socket_id);
	if (!f->flows || !f->live)
		goto fail;
	f->last = -1;
	f->last_sweep_tsc = rte_get_tsc_cycles();
	f->interval_tsc = interval_tsc;
	f->idle_tsc = idle_tsc;
	f->ring = ring;
	return f;
fail:
	dp_flowlog_free(f);
	return NULL;
}

void dp_flowlog_free(struct dp_flowlog *f)
{
	if (!f)
		return;
	rte_hash_free(f->h);
	rte_free(f->flows);
	rte_free(f->live);
	rte_free(f);
}

/* The flow a packet belongs to; false for what is not an IP packet. */
static bool flow_key_of(struct flow_key *k, uint8_t dir, uint32_t peer, const uint8_t *ip,
			uint16_t len)
{
	struct dp_l4 l;

	memset(k, 0, sizeof(*k));
	if (dp_l4_parse(ip, len, &l))
		return false;
	k->peer = peer;
	k->dir = dir;
	k->family = l.family;
	k->proto = l.proto;
	memcpy(k->src, l.src, l.family == AF_INET ? 4 : 16);
	memcpy(k->dst, l.dst, l.family == AF_INET ? 4 : 16);
	if (l.later_frag)
		return true; /* no transport header: counted under ports 0 */
	const uint8_t *t = ip + l.off;
	switch (l.proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (l.l4_len >= 4) {
			k->sport = (uint16_t)(t[0] << 8 | t[1]);
			k->dport = (uint16_t)(t[2] << 8 | t[3]);
		}
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (l.l4_len >= 2) {
			k->sport = t[0]; /* type */
			k->dport = t[1]; /* code */
		}
		break;
	}
	return true;
}

void dp_flowlog_note(struct dp_flowlog *f, uint8_t dir, uint32_t peer, const uint8_t *ip,
		     uint16_t len, uint64_t now)
{
	struct flow_key k;
	int32_t pos;

	if (!flow_key_of(&k, dir, peer, ip, len))
		return;
	/* A burst is mostly one flow: the last one hit, before the hash. */
	if (f->last >= 0 && !memcmp(&f->flows[f->last].key, &k, sizeof(k))) {
		pos = f->last;
	} else {
		pos = rte_hash_lookup(f->h, &k);
		if (pos < 0) {
			pos = rte_hash_add_key(f->h, &k);
			if (pos < 0 || (uint32_t)pos >= f->n_flows) {
				f->untracked++;
				return;
			}
			f->flows[pos] =
			    (struct flow){.key = k, .recorded_tsc = now, .live_idx = f->n_live};
			f->live[f->n_live++] = (uint32_t)pos;
		}
		f->last = pos;
	}
	struct flow *fl = &f->flows[pos];
	if (!fl->packets)
		fl->first_tsc = now;
	fl->packets++;
	fl->bytes += len;
	fl->last_tsc = now;
	fl->seen_tsc = now;
}

/* A record of what the flow counted since its last one; false (the flow
 * keeps its counts, to be recorded later) if the ring is full. */
static bool record(struct dp_flowlog *f, struct flow *fl, uint64_t now)
{
	struct mg_flow_record r = {
	    .peer = fl->key.peer,
	    .dir = fl->key.dir,
	    .family = fl->key.family,
	    .proto = fl->key.proto,
	    .sport = fl->key.sport,
	    .dport = fl->key.dport,
	    .packets = fl->packets,
	    .bytes = fl->bytes,
	    .first_tsc = fl->first_tsc,
	    .last_tsc = fl->last_tsc,
	};

	memcpy(r.src, fl->key.src, 16);
	memcpy(r.dst, fl->key.dst, 16);
	if (rte_ring_enqueue_elem(f->ring, &r, sizeof(r)) != 0)
		return false;
	f->records++;
	fl->packets = fl->bytes = 0;
	fl->recorded_tsc = now;
	return true;
}

/* Forget live[i]: the last live entry takes its place. */
static void forget(struct dp_flowlog *f, uint32_t i)
{
	uint32_t pos = f->live[i];

	rte_hash_del_key(f->h, &f->flows[pos].key);
	if (f->last == (int32_t)pos)
		f->last = -1;
	f->live[i] = f->live[--f->n_live];
	f->flows[f->live[i]].live_idx = i;
}

void dp_flowlog_sweep(struct dp_flowlog *f, unsigned n, uint64_t now)
{
	/* At least the whole table per interval, however rarely this runs (a
	 * worker sleeping between polls, a large table). */
	uint64_t elapsed = now - f->last_sweep_tsc;
	uint64_t due = f->n_live * (elapsed < f->interval_tsc ? elapsed : f->interval_tsc) /
		       (f->interval_tsc ? f->interval_tsc : 1);

	f->last_sweep_tsc = now;
	if (n + due > f->n_live)
		n = f->n_live;
	else
		n += (unsigned)due;
	for (unsigned i = 0; i < n; i++) {
		if (f->cursor >= f->n_live)
			f->cursor = 0;
		struct flow *fl = &f->flows[f->live[f->cursor]];
		if (fl->packets && now - fl->recorded_tsc >= f->interval_tsc) {
			if (!record(f, fl, now)) {
				f->ring_full++; /* control is behind: the rest waits */
				return;
			}
		} else if (!fl->packets && now - fl->seen_tsc >= f->idle_tsc) {
			forget(f, f->cursor);
			continue; /* the entry moved into the cursor's place is next */
		}
		f->cursor++;
	}
}

uint64_t dp_flowlog_flush(struct dp_flowlog *f, uint64_t now)
{
	uint64_t left = 0;

	for (uint32_t i = 0; i < f->n_live; i++) {
		struct flow *fl = &f->flows[f->live[i]];
		if (fl->packets && !record(f, fl, now))
			left++;
	}
	return left;
}

void dp_flowlog_counts(const struct dp_flowlog *f, struct dp_flowlog_counts *c)
{
	*c = (struct dp_flowlog_counts){.flows = f->n_live,
					.untracked = f->untracked,
					.ring_full = f->ring_full,
					.records = f->records};
}
