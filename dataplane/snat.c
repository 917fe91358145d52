/* SPDX-License-Identifier: MIT */
/*
 * Source NAT toward the LAN: per-worker connection tables, translation of
 * tunnel packets out and of LAN replies (and ICMP errors) back. The
 * ownership and reader rules are in snat.h.
 *
 * Checksums are updated incrementally (RFC 1624, eqn. 3) over exactly the
 * 16-bit words that change: the IP header for IPv4, the TCP/UDP/ICMPv6
 * pseudo-header and port or identifier, and for an ICMP error every word
 * changed inside the quoted packet as well.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include "pkt.h"
#include "snat.h"

enum snat_class { SNAT_TCP_EST, SNAT_TCP_TRANS, SNAT_UDP, SNAT_ICMP, SNAT_N_CLASSES };

enum snat_tcp_state { TCP_NONE, TCP_SYN_SENT, TCP_ESTABLISHED, TCP_CLOSING };

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/*
 * seq, family, proto, sport, dport, src and dst are the key: written by the
 * owner between two increments of seq. state and last_tsc are atomics of
 * their own. next and hash are the owner's chain, never read by others.
 */
struct snat_entry {
	uint32_t seq;	/* odd while the owner rewrites the key */
	uint8_t family; /* 0: never used */
	uint8_t proto;
	uint8_t state; /* enum snat_tcp_state; atomic */
	uint8_t pad;
	uint16_t sport; /* tunnel host's port or echo id, network order */
	uint16_t dport; /* remote port, network order; 0 for ICMP */
	uint32_t next;	/* hash chain: slot + 1, 0 ends it */
	uint32_t hash;
	uint64_t last_tsc; /* atomic; any worker refreshes it */
	uint8_t src[16];   /* tunnel host (original source) */
	uint8_t dst[16];   /* LAN host */
} __rte_cache_aligned;

/*
 * IPv4 fragments: only the first carries ports, so the decision made for it
 * (translate to an address, or pass) is remembered under (src, dst, id,
 * proto, direction) and applied to the rest of the datagram ("virtual
 * reassembly", as VPP's NAT does). The rest of a datagram arrives on the
 * same worker as its first fragment (same flow, same queue); a later
 * fragment whose first was not seen is dropped (snat_fragment).
 */
#define SNAT_FRAG_SLOTS 256
#define SNAT_FRAG_TTL_MS 2000

enum { FRAG_OUT = 1, FRAG_IN = 2 };

struct snat_frag {
	uint32_t src, dst; /* as the fragments carry them */
	uint16_t id;
	uint8_t proto, dir; /* dir 0: empty */
	uint8_t translate;  /* 0: pass unchanged */
	uint8_t pad[3];
	uint32_t addr;      /* new source (out) or destination (in) */
	uint64_t tsc;
};

struct snat_table {
	struct snat_entry *e;
	uint32_t *heads;     /* hash bucket -> slot + 1 */
	uint32_t mask;	     /* buckets - 1 */
	uint32_t used;	     /* slots [0, used) have been handed out */
	uint32_t hand;	     /* clock hand for reuse */
	uint64_t scan_after; /* a full table fails fast until then */
	struct snat_frag frag[SNAT_FRAG_SLOTS];
} __rte_cache_aligned;

struct dp_snat {
	uint32_t addr4; /* network order; 0 = none */
	uint8_t addr6[16];
	bool has6;
	uint16_t port_min;
	uint32_t slice; /* slots (= ports) per worker */
	unsigned n_workers;
	uint64_t timeout[SNAT_N_CLASSES]; /* TSC ticks */
	uint64_t refresh;		  /* least TSC gap between last_tsc stores */
	uint64_t full_backoff;		  /* after a failed scan, no new scan for this long */
	struct snat_table t[];
};

/* The flow as a packet states it, ports and addresses in network order. */
struct snat_key {
	uint8_t family, proto;
	uint16_t sport, dport;
	uint8_t src[16], dst[16];
};

/* ---- checksums ---- */

static uint16_t fold(uint32_t s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* One's-complement sum of len (even) bytes as native 16-bit words. */
static uint32_t sum16(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint32_t s = 0;

	for (size_t i = 0; i < len; i += 2) {
		uint16_t w;
		memcpy(&w, b + i, 2);
		s += w;
	}
	return s;
}

/* The checksum at c covered bytes summing to old_sum; now they sum to new_sum. */
static void csum_update(uint8_t *c, uint32_t old_sum, uint32_t new_sum)
{
	uint16_t hc;

	memcpy(&hc, c, 2);
	uint32_t s = (uint32_t)(uint16_t)~hc + (uint16_t)~fold(old_sum) + fold(new_sum);
	hc = (uint16_t)~fold(s);
	memcpy(c, &hc, 2);
}

/* Replace len bytes at p with v, fixing up to two checksums (NULL = none). */
static void rewrite(uint8_t *p, const void *v, size_t len, uint8_t *c1, uint8_t *c2)
{
	uint32_t old = sum16(p, len), new = sum16(v, len);

	if (c1)
		csum_update(c1, old, new);
	if (c2)
		csum_update(c2, old, new);
	memcpy(p, v, len);
}

/* ---- packet parsing ---- */

struct l4 {
	uint8_t family, proto;
	uint8_t *ip, *l4;
	uint32_t l4len;
	uint8_t *src, *dst; /* addresses in the IP header */
	uint8_t *csum;	    /* L4 checksum field, NULL if absent (UDP over IPv4 with 0) */
};

static bool is_icmp(uint8_t proto)
{
	return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

/* Locate L4 of an IP packet; false with *why if SNAT cannot handle it.
 * min_l4: L4 bytes required at least (0: the whole header). */
static bool parse(uint8_t *ip, uint32_t len, struct l4 *p, enum mg_drop_reason *why,
		  uint32_t min_l4)
{
	p->ip = ip;
	if ((ip[0] >> 4) == 4) {
		uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4;
		p->family = AF_INET;
		p->proto = ip[9];
		p->src = ip + 12;
		p->dst = ip + 16;
		if ((((uint32_t)ip[6] << 8 | ip[7]) & 0x1fff) != 0) { /* not the first fragment */
			*why = MG_DROP_SNAT_FRAGMENT;
			return false;
		}
		if (ihl < 20 || ihl > len) {
			*why = MG_DROP_BAD_IP;
			return false;
		}
		p->l4 = ip + ihl;
		p->l4len = len - ihl;
	} else {
		p->family = AF_INET6;
		p->proto = ip[6];
		p->src = ip + 8;
		p->dst = ip + 24;
		p->l4 = ip + 40;
		p->l4len = len - 40;
		if (p->proto == 44) {
			*why = MG_DROP_SNAT_FRAGMENT;
			return false;
		}
	}
	uint32_t need;
	switch (p->proto) {
	case IPPROTO_TCP:
		need = 20;
		p->csum = p->l4 + 16;
		break;
	case IPPROTO_UDP:
		need = 8;
		p->csum = p->l4 + 6;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		need = 8;
		p->csum = p->l4 + 2;
		if ((p->proto == IPPROTO_ICMP) != (p->family == AF_INET)) {
			*why = MG_DROP_SNAT_UNSUPPORTED;
			return false;
		}
		break;
	default:
		*why = MG_DROP_SNAT_UNSUPPORTED;
		return false;
	}
	if (min_l4)
		need = min_l4;
	if (p->l4len < need) {
		*why = MG_DROP_BAD_IP;
		return false;
	}
	if (p->proto == IPPROTO_UDP && p->family == AF_INET && !p->csum[0] && !p->csum[1])
		p->csum = NULL; /* no checksum: keep it so */
	return true;
}

static size_t alen(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

/* The port-like field a translation rewrites: source port or echo id. */
static uint8_t *src_port_field(const struct l4 *p)
{
	return is_icmp(p->proto) ? p->l4 + 4 : p->l4;
}

/* The L4 checksum covers a pseudo-header with the addresses (not ICMPv4). */
static uint8_t *pseudo_csum(const struct l4 *p)
{
	return p->proto == IPPROTO_ICMP ? NULL : p->csum;
}

/* ---- the table ---- */

static uint32_t key_hash(const struct snat_key *k)
{
	return rte_hash_crc(k, sizeof(*k), 0x5ca1ab1e);
}

static bool key_eq(const struct snat_entry *e, const struct snat_key *k)
{
	return e->family == k->family && e->proto == k->proto && e->sport == k->sport &&
	       e->dport == k->dport && dp_addr_eq(e->src, k->src, k->family) &&
	       dp_addr_eq(e->dst, k->dst, k->family);
}

static enum snat_class entry_class(uint8_t proto, uint8_t state)
{
	if (proto == IPPROTO_TCP)
		return state == TCP_ESTABLISHED ? SNAT_TCP_EST : SNAT_TCP_TRANS;
	return proto == IPPROTO_UDP ? SNAT_UDP : SNAT_ICMP;
}

/* last may be a little ahead of now: another core stored it. */
static bool expired(const struct dp_snat *s, const struct snat_entry *e, uint64_t now)
{
	uint64_t last = __atomic_load_n(&e->last_tsc, __ATOMIC_RELAXED);
	uint8_t state = __atomic_load_n(&e->state, __ATOMIC_RELAXED);
	return now > last && now - last > s->timeout[entry_class(e->proto, state)];
}

static void touch(const struct dp_snat *s, struct snat_entry *e, uint64_t now)
{
	uint64_t last = __atomic_load_n(&e->last_tsc, __ATOMIC_RELAXED);
	if (now > last + s->refresh)
		__atomic_store_n(&e->last_tsc, now, __ATOMIC_RELAXED);
}

static uint16_t slot_port(const struct dp_snat *s, unsigned worker, uint32_t slot)
{
	return rte_cpu_to_be_16((uint16_t)(s->port_min + worker * s->slice + slot));
}

/* Owner only: the entry for k in its chain, expired or not; NULL if none. */
static struct snat_entry *chain_find(struct snat_table *t, const struct snat_key *k, uint32_t h)
{
	for (uint32_t i = t->heads[h & t->mask]; i; i = t->e[i - 1].next) {
		struct snat_entry *e = &t->e[i - 1];
		if (e->hash == h && key_eq(e, k))
			return e;
	}
	return NULL;
}

static void chain_unlink(struct snat_table *t, uint32_t slot)
{
	uint32_t *link = &t->heads[t->e[slot].hash & t->mask];

	while (*link && *link != slot + 1)
		link = &t->e[*link - 1].next;
	if (*link)
		*link = t->e[slot].next;
}

/*
 * A never-used slot, else an expired one near the clock hand; -1 if full.
 * A failed scan makes new flows fail fast for a millisecond, so that a
 * flood of them into a full table costs a scan per millisecond, not per
 * packet.
 */
static int64_t slot_alloc(const struct dp_snat *s, struct snat_table *t, uint64_t now)
{
	if (t->used < s->slice)
		return t->used++;
	if (now < t->scan_after)
		return -1;
	for (uint32_t n = 0; n < s->slice && n < DP_SNAT_SCAN_MAX; n++) {
		uint32_t slot = t->hand;
		t->hand = slot + 1 == s->slice ? 0 : slot + 1;
		if (expired(s, &t->e[slot], now))
			return slot;
	}
	t->scan_after = now + s->full_backoff;
	return -1;
}

/* Owner only: (re)key slot for k and publish it. */
static struct snat_entry *entry_set(struct snat_table *t, uint32_t slot, const struct snat_key *k,
				    uint32_t h, uint8_t state, uint64_t now)
{
	struct snat_entry *e = &t->e[slot];
	uint32_t seq = e->seq;

	if (e->family)
		chain_unlink(t, slot);
	__atomic_store_n(&e->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	e->family = k->family;
	e->proto = k->proto;
	e->sport = k->sport;
	e->dport = k->dport;
	memcpy(e->src, k->src, 16);
	memcpy(e->dst, k->dst, 16);
	__atomic_store_n(&e->state, state, __ATOMIC_RELAXED);
	__atomic_store_n(&e->last_tsc, now, __ATOMIC_RELAXED);
	__atomic_store_n(&e->seq, seq + 2, __ATOMIC_RELEASE);
	e->hash = h;
	e->next = t->heads[h & t->mask];
	t->heads[h & t->mask] = slot + 1;
	return e;
}

/* ---- create / destroy ---- */

uint32_t dp_snat_slice(const struct dp_snat *s)
{
	return s->slice;
}

struct dp_snat *dp_snat_create(const struct mg_snat_conf *conf, unsigned n_workers, uint64_t tsc_hz,
			       uint32_t addr4_be, const uint8_t *addr6, int socket_id)
{
	uint32_t ports =
	    conf->port_max >= conf->port_min ? conf->port_max - conf->port_min + 1u : 0;
	uint32_t slice = n_workers ? RTE_MIN(ports, conf->max_entries) / n_workers : 0;
	struct dp_snat *s;

	if (slice == 0) {
		rte_errno = EINVAL;
		return NULL;
	}
	s = rte_zmalloc_socket("snat", sizeof(*s) + n_workers * sizeof(s->t[0]),
			       RTE_CACHE_LINE_SIZE, socket_id);
	if (!s)
		goto nomem;
	s->addr4 = addr4_be;
	s->has6 = addr6 != NULL;
	if (addr6)
		memcpy(s->addr6, addr6, 16);
	s->port_min = conf->port_min;
	s->slice = slice;
	s->n_workers = n_workers;
	s->timeout[SNAT_TCP_EST] = conf->tcp_established_timeout * tsc_hz;
	s->timeout[SNAT_TCP_TRANS] = conf->tcp_transitory_timeout * tsc_hz;
	s->timeout[SNAT_UDP] = conf->udp_timeout * tsc_hz;
	s->timeout[SNAT_ICMP] = conf->icmp_timeout * tsc_hz;
	s->refresh = tsc_hz;
	s->full_backoff = tsc_hz / 1000;
	uint32_t buckets = rte_align32pow2(slice);
	for (unsigned w = 0; w < n_workers; w++) {
		struct snat_table *t = &s->t[w];
		t->e = rte_zmalloc_socket("snat_e", sizeof(*t->e) * slice, RTE_CACHE_LINE_SIZE,
					  socket_id);
		t->heads = rte_zmalloc_socket("snat_h", sizeof(*t->heads) * buckets,
					      RTE_CACHE_LINE_SIZE, socket_id);
		t->mask = buckets - 1;
		if (!t->e || !t->heads)
			goto nomem;
	}
	return s;
nomem:
	dp_snat_destroy(s);
	rte_errno = ENOMEM;
	return NULL;
}

void dp_snat_destroy(struct dp_snat *s)
{
	if (!s)
		return;
	for (unsigned w = 0; w < s->n_workers; w++) {
		rte_free(s->t[w].e);
		rte_free(s->t[w].heads);
	}
	rte_free(s);
}

/* ---- tunnel -> LAN ---- */

static uint8_t tcp_next_state(uint8_t state, uint8_t flags)
{
	if (flags & (TCP_FIN | TCP_RST))
		return TCP_CLOSING;
	if ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return TCP_SYN_SENT;
	if (state == TCP_SYN_SENT && (flags & TCP_ACK))
		return TCP_ESTABLISHED;
	return state;
}

static bool is_echo_request(const struct l4 *p)
{
	return p->proto == IPPROTO_ICMP ? p->l4[0] == 8 : p->l4[0] == 128;
}

/* Whether a packet without a mapping may make one (it opens a flow). */
static bool opens_flow(const struct l4 *p)
{
	switch (p->proto) {
	case IPPROTO_TCP:
		return (p->l4[13] & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN;
	case IPPROTO_UDP:
		return true;
	default:
		return is_echo_request(p);
	}
}

static void key_of(const struct l4 *p, struct snat_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = p->family;
	k->proto = p->proto;
	memcpy(k->src, p->src, alen(p->family));
	memcpy(k->dst, p->dst, alen(p->family));
	if (is_icmp(p->proto)) {
		memcpy(&k->sport, p->l4 + 4, 2);
	} else {
		memcpy(&k->sport, p->l4, 2);
		memcpy(&k->dport, p->l4 + 2, 2);
	}
}

/* Rewrite source address and port-like field of a packet leaving to the LAN. */
static void translate_out(const struct dp_snat *s, const struct l4 *p, uint16_t port)
{
	const void *nat = p->family == AF_INET ? (const void *)&s->addr4 : s->addr6;
	uint8_t *ipc = p->family == AF_INET ? p->ip + 10 : NULL;

	rewrite(p->src, nat, alen(p->family), ipc, pseudo_csum(p));
	rewrite(src_port_field(p), &port, 2, p->csum, NULL);
	if (p->proto == IPPROTO_UDP && p->csum && !p->csum[0] && !p->csum[1])
		memset(p->csum, 0xff, 2); /* 0 means "none" in UDP */
}

static bool v4_fragment(const uint8_t *ip, bool *later)
{
	if ((ip[0] >> 4) != 4)
		return false;
	uint16_t fo = (uint16_t)(ip[6] << 8 | ip[7]);
	*later = (fo & 0x1fff) != 0;
	return (fo & 0x3fff) != 0;
}

static struct snat_frag *frag_slot(struct snat_table *t, const uint8_t *ip, uint8_t dir)
{
	uint32_t k[3];
	memcpy(&k[0], ip + 12, 4);
	memcpy(&k[1], ip + 16, 4);
	k[2] = (uint32_t)ip[4] << 24 | (uint32_t)ip[5] << 16 | (uint32_t)ip[9] << 8 | dir;
	return &t->frag[rte_hash_crc(k, sizeof(k), 0xf4a9) & (SNAT_FRAG_SLOTS - 1)];
}

/* Remember what became of a first fragment (ip as it arrived). */
static void frag_note(const struct dp_snat *s, struct snat_table *t, const uint8_t *orig_ip,
		      uint8_t dir, bool translate, const uint8_t *new_addr, uint64_t now)
{
	struct snat_frag *f = frag_slot(t, orig_ip, dir);
	(void)s;
	memcpy(&f->src, orig_ip + 12, 4);
	memcpy(&f->dst, orig_ip + 16, 4);
	f->id = (uint16_t)(orig_ip[4] << 8 | orig_ip[5]);
	f->proto = orig_ip[9];
	f->dir = dir;
	f->translate = translate;
	if (translate)
		memcpy(&f->addr, new_addr, 4);
	f->tsc = now;
}

/* A later fragment: as its first went. */
static enum dp_snat_result frag_follow(const struct dp_snat *s, struct snat_table *t, uint8_t *ip,
				       uint8_t dir, uint64_t now, enum mg_drop_reason *why)
{
	struct snat_frag *f = frag_slot(t, ip, dir);
	uint64_t ttl = s->refresh / 1000 * SNAT_FRAG_TTL_MS; /* refresh is one second */
	if (f->dir != dir || memcmp(&f->src, ip + 12, 4) || memcmp(&f->dst, ip + 16, 4) ||
	    f->id != (uint16_t)(ip[4] << 8 | ip[5]) || f->proto != ip[9] || now - f->tsc > ttl) {
		*why = MG_DROP_SNAT_FRAGMENT;
		return DP_SNAT_DROP;
	}
	if (!f->translate)
		return DP_SNAT_PASS;
	/* No L4 header here: only the address and the IP header checksum. */
	rewrite(ip + (dir == FRAG_OUT ? 12 : 16), &f->addr, 4, ip + 10, NULL);
	return DP_SNAT_TRANSLATED;
}

void dp_snat_frag_pass(struct dp_snat *s, unsigned worker, const uint8_t *ip, uint64_t now)
{
	bool later;
	if (v4_fragment(ip, &later) && !later)
		frag_note(s, &s->t[worker], ip, FRAG_OUT, false, NULL, now);
}

static enum dp_snat_result snat_out(struct dp_snat *s, unsigned worker, uint8_t *ip, uint32_t len,
				    uint64_t now, enum mg_drop_reason *why);

enum dp_snat_result dp_snat_out(struct dp_snat *s, unsigned worker, uint8_t *ip, uint32_t len,
				uint64_t now, enum mg_drop_reason *why)
{
	bool later;
	if (!v4_fragment(ip, &later))
		return snat_out(s, worker, ip, len, now, why);
	if (later)
		return frag_follow(s, &s->t[worker], ip, FRAG_OUT, now, why);
	uint8_t orig[20];
	memcpy(orig, ip, 20);
	enum dp_snat_result r = snat_out(s, worker, ip, len, now, why);
	if (r != DP_SNAT_DROP)
		frag_note(s, &s->t[worker], orig, FRAG_OUT, r == DP_SNAT_TRANSLATED, ip + 12, now);
	return r;
}

static enum dp_snat_result snat_out(struct dp_snat *s, unsigned worker, uint8_t *ip, uint32_t len,
				    uint64_t now, enum mg_drop_reason *why)
{
	struct snat_table *t = &s->t[worker];
	struct snat_key k;
	struct l4 p;

	if (!parse(ip, len, &p, why, 0))
		return DP_SNAT_DROP;
	if (p.family == AF_INET ? !s->addr4 : !s->has6) {
		*why = MG_DROP_SNAT_NO_ADDRESS;
		return DP_SNAT_DROP;
	}
	if (is_icmp(p.proto) && !is_echo_request(&p)) {
		/* Echo replies and errors: only for LAN-originated flows. */
		return DP_SNAT_PASS;
	}
	key_of(&p, &k);
	uint32_t h = key_hash(&k);
	struct snat_entry *e = chain_find(t, &k, h);
	uint8_t flags = p.proto == IPPROTO_TCP ? p.l4[13] : 0;
	if (e) {
		uint8_t st = __atomic_load_n(&e->state, __ATOMIC_RELAXED);
		bool was_expired = expired(s, e, now);
		if (was_expired && !opens_flow(&p))
			return DP_SNAT_PASS; /* its port may answer another flow soon */
		if (p.proto == IPPROTO_TCP && tcp_next_state(st, flags) != st)
			__atomic_store_n(&e->state, tcp_next_state(st, flags), __ATOMIC_RELAXED);
		if (was_expired) /* revived: same key, same port */
			__atomic_store_n(&e->last_tsc, now, __ATOMIC_RELAXED);
		else
			touch(s, e, now);
	} else {
		if (!opens_flow(&p))
			return DP_SNAT_PASS; /* e.g. a SYN-ACK to a LAN-originated connection */
		int64_t slot = slot_alloc(s, t, now);
		if (slot < 0) {
			*why = MG_DROP_SNAT_TABLE_FULL;
			return DP_SNAT_DROP;
		}
		e = entry_set(t, (uint32_t)slot, &k, h, tcp_next_state(TCP_NONE, flags), now);
	}
	translate_out(s, &p, slot_port(s, worker, (uint32_t)(e - t->e)));
	return DP_SNAT_TRANSLATED;
}

/* ---- LAN -> tunnel ---- */

static bool is_nat_addr(const struct dp_snat *s, uint8_t family, const uint8_t *addr)
{
	if (family == AF_INET)
		return s->addr4 && !memcmp(addr, &s->addr4, 4);
	return s->has6 && !memcmp(addr, s->addr6, 16);
}

/*
 * The packet an ICMP error quotes: same family as the error, fragment bits
 * ignored, and only 8 bytes of L4 needed (ports, echo id); the quoted L4
 * checksum is left NULL when the quote ends before it.
 */
static bool parse_quoted(uint8_t *qip, uint32_t qlen, uint8_t family, struct l4 *q,
			 enum mg_drop_reason *why)
{
	uint8_t frag[2];
	bool ok;

	if (qlen < (family == AF_INET ? 28u : 48u) || (qip[0] >> 4) != (family == AF_INET ? 4 : 6))
		return false;
	if (family == AF_INET) {
		memcpy(frag, qip + 6, 2);
		qip[6] &= 0x40;
		qip[7] = 0;
	}
	ok = parse(qip, qlen, q, why, 8);
	if (family == AF_INET)
		memcpy(qip + 6, frag, 2);
	if (ok && q->csum && q->csum + 2 > q->l4 + q->l4len)
		q->csum = NULL;
	return ok;
}

/* A NAT port's entry, if it holds the flow to remote (addr, port) and is
 * live: copied out under the sequence count, so any worker may ask. */
static struct snat_entry *reply_lookup(struct dp_snat *s, uint8_t family, uint8_t proto,
				       uint16_t nat_port_be, const uint8_t *remote,
				       uint16_t remote_port, uint64_t now, struct snat_key *orig)
{
	uint32_t off = (uint32_t)rte_be_to_cpu_16(nat_port_be) - s->port_min;
	if (rte_be_to_cpu_16(nat_port_be) < s->port_min || off / s->slice >= s->n_workers)
		return NULL;
	struct snat_entry *e = &s->t[off / s->slice].e[off % s->slice];
	uint32_t seq = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
	if (seq & 1)
		return NULL; /* being reused: the old flow is gone */
	orig->family = e->family;
	orig->proto = e->proto;
	orig->sport = e->sport;
	orig->dport = e->dport;
	memcpy(orig->src, e->src, 16);
	memcpy(orig->dst, e->dst, 16);
	bool exp = expired(s, e, now); /* reads proto: inside the window too */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != seq)
		return NULL;
	if (exp || orig->family != family || orig->proto != proto || orig->dport != remote_port ||
	    !dp_addr_eq(orig->dst, remote, family))
		return NULL;
	return e;
}

/* Whether the NAT port is inside the range some worker owns. */
static bool nat_port_in_range(const struct dp_snat *s, uint16_t port_be)
{
	uint32_t port = rte_be_to_cpu_16(port_be);
	return port >= s->port_min && (port - s->port_min) / s->slice < s->n_workers;
}

/* A reply to a translated flow: destination back to the tunnel host. */
static enum dp_snat_result reply_in(struct dp_snat *s, const struct l4 *p, uint64_t now,
				    enum mg_drop_reason *why)
{
	bool icmp = is_icmp(p->proto);
	uint8_t *port_field = icmp ? p->l4 + 4 : p->l4 + 2;
	uint16_t nat_port, remote_port = 0;
	struct snat_key orig;

	memcpy(&nat_port, port_field, 2);
	if (!icmp)
		memcpy(&remote_port, p->l4, 2);
	struct snat_entry *e =
	    reply_lookup(s, p->family, p->proto, nat_port, p->src, remote_port, now, &orig);
	if (!e) {
		if (!nat_port_in_range(s, nat_port))
			return DP_SNAT_PASS;
		*why = MG_DROP_SNAT_NO_MAPPING;
		return DP_SNAT_DROP;
	}
	touch(s, e, now);
	rewrite(p->dst, orig.src, alen(p->family), p->family == AF_INET ? p->ip + 10 : NULL,
		pseudo_csum(p));
	rewrite(port_field, &orig.sport, 2, p->csum, NULL);
	if (p->proto == IPPROTO_UDP && p->csum && !p->csum[0] && !p->csum[1])
		memset(p->csum, 0xff, 2);
	return DP_SNAT_TRANSLATED;
}

static bool icmp_is_error(const struct l4 *p)
{
	uint8_t type = p->l4[0];
	if (p->proto == IPPROTO_ICMP)
		return type == 3 || type == 4 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/*
 * An ICMP error about a translated flow quotes our packet: source the NAT
 * address and port, destination the LAN host. Rewrite the outer
 * destination and the quoted source to the tunnel host; the quoted IPv4
 * header checksum and the quoted L4 checksum (if quoted at all) follow,
 * and the ICMP checksum covers every word changed inside the quote.
 */
static enum dp_snat_result error_in(struct dp_snat *s, const struct l4 *p, uint64_t now)
{
	enum mg_drop_reason ignore;
	struct snat_key orig;
	struct l4 q;

	if (!parse_quoted(p->l4 + 8, p->l4len - 8, p->family, &q, &ignore) ||
	    !is_nat_addr(s, q.family, q.src) || (is_icmp(q.proto) && !is_echo_request(&q)))
		return DP_SNAT_PASS;
	uint8_t *qport = src_port_field(&q);
	uint16_t nat_port, remote_port = 0;
	memcpy(&nat_port, qport, 2);
	if (!is_icmp(q.proto))
		memcpy(&remote_port, q.l4 + 2, 2);
	if (!reply_lookup(s, q.family, q.proto, nat_port, q.dst, remote_port, now, &orig))
		return DP_SNAT_PASS;

	size_t n = alen(p->family);
	uint8_t *qipc = q.family == AF_INET ? q.ip + 10 : NULL;
	uint8_t zero[2] = {0, 0};
	uint8_t *qipc_sum = qipc ? qipc : zero, *qc_sum = q.csum ? q.csum : zero;
	uint32_t before = sum16(q.src, n) + sum16(qport, 2) + sum16(qipc_sum, 2) + sum16(qc_sum, 2);

	rewrite(p->dst, orig.src, n, p->family == AF_INET ? p->ip + 10 : NULL, pseudo_csum(p));
	rewrite(q.src, orig.src, n, qipc, pseudo_csum(&q));
	rewrite(qport, &orig.sport, 2, q.csum, NULL);
	if (q.proto == IPPROTO_UDP && q.csum && !q.csum[0] && !q.csum[1])
		memset(q.csum, 0xff, 2);
	uint32_t after = sum16(q.src, n) + sum16(qport, 2) + sum16(qipc_sum, 2) + sum16(qc_sum, 2);
	csum_update(p->csum, before, after);
	return DP_SNAT_TRANSLATED;
}

bool dp_snat_is_nat_dst(const struct dp_snat *s, const uint8_t *ip)
{
	if ((ip[0] >> 4) == 4)
		return is_nat_addr(s, AF_INET, ip + 16);
	return is_nat_addr(s, AF_INET6, ip + 24);
}

static enum dp_snat_result snat_in(struct dp_snat *s, uint8_t *ip, uint32_t len, uint64_t now,
				   enum mg_drop_reason *why);

enum dp_snat_result dp_snat_in(struct dp_snat *s, unsigned worker, uint8_t *ip, uint32_t len,
			       uint64_t now, enum mg_drop_reason *why)
{
	bool later;
	if (!v4_fragment(ip, &later))
		return snat_in(s, ip, len, now, why);
	if (!dp_snat_is_nat_dst(s, ip))
		return DP_SNAT_PASS;
	if (later)
		return frag_follow(s, &s->t[worker], ip, FRAG_IN, now, why);
	uint8_t orig[20];
	memcpy(orig, ip, 20);
	enum dp_snat_result r = snat_in(s, ip, len, now, why);
	if (r == DP_SNAT_TRANSLATED)
		frag_note(s, &s->t[worker], orig, FRAG_IN, true, ip + 16, now);
	return r;
}

static enum dp_snat_result snat_in(struct dp_snat *s, uint8_t *ip, uint32_t len, uint64_t now,
				   enum mg_drop_reason *why)
{
	enum mg_drop_reason ignore;
	struct l4 p;

	if (!dp_snat_is_nat_dst(s, ip) || !parse(ip, len, &p, &ignore, 0))
		return DP_SNAT_PASS; /* local traffic for the main lcore, as without SNAT */
	if (!is_icmp(p.proto))
		return reply_in(s, &p, now, why);
	uint8_t type = p.l4[0];
	if (type == 0 || type == 129)
		return (p.proto == IPPROTO_ICMP) == (type == 0) ? reply_in(s, &p, now, why)
								: DP_SNAT_PASS;
	if (icmp_is_error(&p))
		return error_in(s, &p, now);
	return DP_SNAT_PASS;
}

uint32_t dp_snat_count(const struct dp_snat *s, unsigned worker, uint64_t now)
{
	const struct snat_table *t = &s->t[worker];
	uint32_t n = 0;

	for (uint32_t i = 0; i < t->used; i++)
		if (!expired(s, &t->e[i], now))
			n++;
	return n;
}
