/* SPDX-License-Identifier: MIT */
/*
 * ARP and IPv6 Neighbor Discovery (NS/NA) for ports without a kernel stack.
 *
 * Readers (workers) only call rte_hash_lookup_data on an rte_hash created
 * with RW_CONCURRENCY_LF; the MAC travels in the data pointer value, so a
 * lookup touches nothing the writer frees. The writer (main lcore) keeps a
 * shadow of every entry indexed by hash position, which is what aging and
 * walking scan, so neither iterates the hash while changing it.
 *
 * A deleted key's slot goes to a FIFO "limbo" with the RCU token taken right
 * after the delete, and goes back to the hash only once that token has been
 * passed by every reader (rte_hash LF does not free on delete). Without an
 * RCU variable parked slots stay parked.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>

#include "neigh.h"

/* ---- Wire formats (RFC 826, RFC 4861); DPDK 22.11 has no ND structs. ---- */

enum {
	ND_NEIGHBOR_SOLICIT = 135,
	ND_NEIGHBOR_ADVERT = 136,
	ND_OPT_SOURCE_LLADDR = 1,
	ND_OPT_TARGET_LLADDR = 2,
	ND_HOP_LIMIT = 255,
};

/* NA flags, first byte after the checksum. We forward packets: a router. */
#define ND_NA_ROUTER    0x80
#define ND_NA_SOLICITED 0x40
#define ND_NA_OVERRIDE  0x20

/* NS and NA share one layout: NS leaves flags and reserved zero. */
struct nd_msg {
	uint8_t type;
	uint8_t code;
	rte_be16_t cksum;
	uint8_t flags;
	uint8_t reserved[3];
	uint8_t target[16];
} __rte_packed;

/* Source/target link-layer address option; len in units of 8 bytes. */
struct nd_opt_lladdr {
	uint8_t type;
	uint8_t len;
	uint8_t mac[RTE_ETHER_ADDR_LEN];
} __rte_packed;

_Static_assert(sizeof(struct nd_msg) == 24, "RFC 4861 4.3/4.4");
_Static_assert(sizeof(struct nd_opt_lladdr) == 8, "RFC 4861 4.6.1, Ethernet");

#define ETH_LEN       sizeof(struct rte_ether_hdr)
#define ARP_LEN       (ETH_LEN + sizeof(struct rte_arp_hdr))
/* Short frames are padded here: not every PMD (tap, vhost) pads on TX. */
#define ARP_FRAME_LEN (RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN)
#define ND_HDRS_LEN   (ETH_LEN + sizeof(struct rte_ipv6_hdr))
#define ND_PAYLOAD    (sizeof(struct nd_msg) + sizeof(struct nd_opt_lladdr))
#define ND_FRAME_LEN  (ND_HDRS_LEN + ND_PAYLOAD)

#define DP_NEIGH_MAX_ENTRIES (1u << 24)
/* rte_hash refuses fewer entries than one bucket holds (8). */
#define HASH_MIN_ENTRIES 8u

static const uint8_t all_nodes6[16] = {0xff, 0x02, [15] = 0x01};

/* ---- The table ---- */

/* Per port, as a kernel's per-device tables: a neighbour learned on one port
 * is never used (or refreshed) on another. */
struct neigh_key {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t pad;
	uint16_t port_id; /* the ethdev it is reached through */
	uint8_t addr[16]; /* IPv4: the first 4 bytes, network order */
};

/* The writer's copy of one entry, indexed by rte_hash position. */
struct neigh_slot {
	struct neigh_key key;
	struct rte_ether_addr mac;
	bool live;
	uint64_t updated_tsc;
};

/* A deleted position waiting for its grace period. */
struct limbo_entry {
	int32_t pos;
	uint64_t token;
};

struct dp_neigh_table {
	struct rte_hash *h;
	struct rte_rcu_qsbr *rcu;
	uint32_t max_entries;
	uint32_t n_slots;
	uint32_t n_live;
	struct neigh_slot *slots;
	struct limbo_entry *limbo; /* FIFO ring, n_slots long: a position is parked at most once */
	uint32_t limbo_head;
	uint32_t limbo_len;
	struct dp_neigh_stats stats;
};

_Static_assert(sizeof(void *) >= 8, "the MAC is stored in the hash data pointer");
_Static_assert(sizeof(struct dp_neigh_stats) % sizeof(uint64_t) == 0, "stats are all u64");

/* Counters have a single writer; relaxed atomics keep remote readers untorn. */
static void stat_inc(uint64_t *c)
{
	__atomic_store_n(c, *c + 1, __ATOMIC_RELAXED);
}

static struct neigh_key key4(uint16_t port_id, uint32_t ip_be)
{
	struct neigh_key k = {.family = AF_INET, .port_id = port_id};

	memcpy(k.addr, &ip_be, sizeof(ip_be));
	return k;
}

static struct neigh_key key6(uint16_t port_id, const uint8_t ip[16])
{
	struct neigh_key k = {.family = AF_INET6, .port_id = port_id};

	memcpy(k.addr, ip, sizeof(k.addr));
	return k;
}

static void *mac_to_data(const struct rte_ether_addr *mac)
{
	uint64_t v = 0;

	memcpy(&v, mac->addr_bytes, RTE_ETHER_ADDR_LEN);
	return (void *)(uintptr_t)v;
}

static void data_to_mac(const void *data, struct rte_ether_addr *mac)
{
	uint64_t v = (uintptr_t)data;

	memcpy(mac->addr_bytes, &v, RTE_ETHER_ADDR_LEN);
}

static int table_alloc(struct dp_neigh_table *t, const char *name, int socket_id)
{
	/*
	 * Twice the room: a cuckoo table can refuse a key before it is full,
	 * and max_entries is a promise. The count is enforced here instead.
	 */
	struct rte_hash_parameters p = {
		.name = name,
		.entries = RTE_MAX(2 * t->max_entries, HASH_MIN_ENTRIES),
		.key_len = sizeof(struct neigh_key),
		.hash_func = rte_hash_crc,
		.socket_id = socket_id,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF,
	};

	t->h = rte_hash_create(&p);
	if (!t->h)
		return -1;
	t->n_slots = (uint32_t)rte_hash_max_key_id(t->h) + 1;
	t->slots = rte_zmalloc_socket("dp_neigh_slots", sizeof(*t->slots) * t->n_slots, 0,
				      socket_id);
	t->limbo = rte_zmalloc_socket("dp_neigh_limbo", sizeof(*t->limbo) * t->n_slots, 0,
				      socket_id);
	if (!t->slots || !t->limbo) {
		rte_errno = ENOMEM;
		return -1;
	}
	return 0;
}

struct dp_neigh_table *dp_neigh_create(const char *name, uint32_t max_entries, int socket_id)
{
	struct dp_neigh_table *t;
	int err;

	if (!name || max_entries == 0 || max_entries > DP_NEIGH_MAX_ENTRIES) {
		rte_errno = EINVAL;
		return NULL;
	}
	t = rte_zmalloc_socket("dp_neigh", sizeof(*t), RTE_CACHE_LINE_SIZE, socket_id);
	if (!t) {
		rte_errno = ENOMEM;
		return NULL;
	}
	t->max_entries = max_entries;
	if (table_alloc(t, name, socket_id) < 0) {
		err = rte_errno;
		dp_neigh_destroy(t);
		rte_errno = err;
		return NULL;
	}
	return t;
}

void dp_neigh_destroy(struct dp_neigh_table *t)
{
	if (!t)
		return;
	rte_hash_free(t->h);
	rte_free(t->slots);
	rte_free(t->limbo);
	rte_free(t);
}

/* ---- Readers ---- */

static int lookup(const struct dp_neigh_table *t, const struct neigh_key *k,
		  struct rte_ether_addr *mac)
{
	void *data;

	if (rte_hash_lookup_data(t->h, k, &data) < 0)
		return -ENOENT;
	data_to_mac(data, mac);
	return 0;
}

int dp_neigh_lookup4(const struct dp_neigh_table *t, uint16_t port_id, uint32_t ip_be,
		     struct rte_ether_addr *mac)
{
	struct neigh_key k = key4(port_id, ip_be);

	return lookup(t, &k, mac);
}

int dp_neigh_lookup6(const struct dp_neigh_table *t, uint16_t port_id, const uint8_t ip[16],
		     struct rte_ether_addr *mac)
{
	struct neigh_key k = key6(port_id, ip);

	return lookup(t, &k, mac);
}

int dp_neigh_lookup(const struct dp_neigh_table *t, uint16_t port_id, int family, const uint8_t *ip,
		    struct rte_ether_addr *mac)
{
	uint32_t ip4;

	if (family != AF_INET)
		return dp_neigh_lookup6(t, port_id, ip, mac);
	memcpy(&ip4, ip, sizeof(ip4));
	return dp_neigh_lookup4(t, port_id, ip4, mac);
}

/* ---- Writer ---- */

static int table_full(struct dp_neigh_table *t)
{
	stat_inc(&t->stats.table_full);
	return -ENOSPC;
}

static uint32_t slots_used(const struct dp_neigh_table *t)
{
	return t->n_live + t->limbo_len;
}

static int refresh(struct dp_neigh_table *t, int32_t pos, const struct rte_ether_addr *mac,
		   uint64_t now_tsc)
{
	struct neigh_slot *s = &t->slots[pos];
	int ret;

	if (!rte_is_same_ether_addr(&s->mac, mac)) {
		/* An existing key's data is replaced with one atomic store. */
		ret = rte_hash_add_key_data(t->h, &s->key, mac_to_data(mac));
		if (ret < 0)
			return ret;
		s->mac = *mac;
		stat_inc(&t->stats.learned);
	}
	s->updated_tsc = now_tsc;
	return 0;
}

static int insert(struct dp_neigh_table *t, const struct neigh_key *k,
		  const struct rte_ether_addr *mac, uint64_t now_tsc)
{
	struct neigh_slot *s;
	int32_t pos;
	int ret;

	if (slots_used(t) >= t->max_entries)
		dp_neigh_reclaim(t);
	if (slots_used(t) >= t->max_entries)
		return table_full(t);
	ret = rte_hash_add_key_data(t->h, k, mac_to_data(mac));
	if (ret == -ENOSPC) /* both buckets full and no cuckoo path */
		return table_full(t);
	if (ret < 0)
		return ret;
	pos = rte_hash_lookup(t->h, k);
	if (pos < 0 || (uint32_t)pos >= t->n_slots)
		return -EIO;
	s = &t->slots[pos];
	*s = (struct neigh_slot){.key = *k, .mac = *mac, .live = true, .updated_tsc = now_tsc};
	t->n_live++;
	stat_inc(&t->stats.learned);
	return 0;
}

static int update(struct dp_neigh_table *t, const struct neigh_key *k,
		  const struct rte_ether_addr *mac, uint64_t now_tsc)
{
	int32_t pos;

	if (!rte_is_valid_assigned_ether_addr(mac))
		return -EINVAL;
	pos = rte_hash_lookup(t->h, k);
	if (pos >= 0)
		return refresh(t, pos, mac, now_tsc);
	return insert(t, k, mac, now_tsc);
}

int dp_neigh_update4(struct dp_neigh_table *t, uint16_t port_id, uint32_t ip_be,
		     const struct rte_ether_addr *mac, uint64_t now_tsc)
{
	struct neigh_key k = key4(port_id, ip_be);

	return update(t, &k, mac, now_tsc);
}

int dp_neigh_update6(struct dp_neigh_table *t, uint16_t port_id, const uint8_t ip[16],
		     const struct rte_ether_addr *mac, uint64_t now_tsc)
{
	struct neigh_key k = key6(port_id, ip);

	return update(t, &k, mac, now_tsc);
}

/* ---- Deletion with a grace period ---- */

static struct limbo_entry *limbo_at(struct dp_neigh_table *t, uint32_t i)
{
	return &t->limbo[(t->limbo_head + i) % t->n_slots];
}

/* Starts a grace period for the newest n parked positions. */
static void limbo_stamp(struct dp_neigh_table *t, uint32_t n)
{
	uint64_t token;

	if (!t->rcu || n == 0)
		return;
	token = rte_rcu_qsbr_start(t->rcu);
	for (uint32_t i = t->limbo_len - n; i < t->limbo_len; i++)
		limbo_at(t, i)->token = token;
}

static void neigh_remove(struct dp_neigh_table *t, int32_t pos)
{
	struct neigh_slot *s = &t->slots[pos];

	/* Readers stop finding the key now; its slot is reused only later. */
	rte_hash_del_key(t->h, &s->key);
	s->live = false;
	t->n_live--;
	*limbo_at(t, t->limbo_len) = (struct limbo_entry){.pos = pos};
	t->limbo_len++;
}

void dp_neigh_set_rcu(struct dp_neigh_table *t, struct rte_rcu_qsbr *v)
{
	t->rcu = v;
	limbo_stamp(t, t->limbo_len);
}

unsigned dp_neigh_reclaim(struct dp_neigh_table *t)
{
	unsigned n = 0;

	if (!t->rcu)
		return 0;
	/* Tokens only grow along the FIFO: stop at the first unexpired. */
	while (t->limbo_len > 0 && rte_rcu_qsbr_check(t->rcu, limbo_at(t, 0)->token, false) == 1) {
		rte_hash_free_key_with_position(t->h, limbo_at(t, 0)->pos);
		t->limbo_head = (t->limbo_head + 1) % t->n_slots;
		t->limbo_len--;
		n++;
	}
	return n;
}

unsigned dp_neigh_age(struct dp_neigh_table *t, uint64_t now_tsc, uint64_t max_age_tsc)
{
	unsigned n = 0;

	for (uint32_t pos = 0; pos < t->n_slots; pos++) {
		const struct neigh_slot *s = &t->slots[pos];

		if (s->live && now_tsc > s->updated_tsc && now_tsc - s->updated_tsc > max_age_tsc) {
			neigh_remove(t, (int32_t)pos);
			n++;
		}
	}
	limbo_stamp(t, n);
	dp_neigh_reclaim(t);
	return n;
}

/* ---- Diagnostics ---- */

void dp_neigh_get_stats(const struct dp_neigh_table *t, struct dp_neigh_stats *out)
{
	const uint64_t *src = (const uint64_t *)&t->stats;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void dp_neigh_walk(const struct dp_neigh_table *t,
		   void (*cb)(void *arg, uint16_t port_id, int family, const uint8_t *ip,
			      const struct rte_ether_addr *mac, uint64_t updated_tsc),
		   void *arg)
{
	for (uint32_t pos = 0; pos < t->n_slots; pos++) {
		const struct neigh_slot *s = &t->slots[pos];

		if (s->live)
			cb(arg, s->key.port_id, s->key.family, s->key.addr, &s->mac,
			   s->updated_tsc);
	}
}

/* ---- Addresses ---- */

void dp_neigh_iface_init(struct dp_neigh_iface *ifc)
{
	const uint8_t *mac = ifc->mac.addr_bytes;
	uint8_t *ll = ifc->ll6;

	memset(ll, 0, sizeof(ifc->ll6));
	ll[0] = 0xfe;
	ll[1] = 0x80;
	ll[8] = mac[0] ^ 0x02; /* universal/local bit inverted */
	ll[9] = mac[1];
	ll[10] = mac[2];
	ll[11] = 0xff;
	ll[12] = 0xfe;
	ll[13] = mac[3];
	ll[14] = mac[4];
	ll[15] = mac[5];
}

/* The iface is filled by other code: never trust its counts. */
static int n_addrs(int n)
{
	return RTE_MIN(RTE_MAX(n, 0), DP_NEIGH_MAX_ADDRS);
}

static bool is_unspec6(const uint8_t a[16])
{
	static const uint8_t zero[16];

	return memcmp(a, zero, sizeof(zero)) == 0;
}

static bool is_mcast6(const uint8_t a[16])
{
	return a[0] == 0xff;
}

static bool is_linklocal6(const uint8_t a[16])
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/* ff02::1:ffXX:XXXX, RFC 4291 2.7.1 */
static void solicited_node6(const uint8_t target[16], uint8_t out[16])
{
	static const uint8_t prefix[13] = {0xff, 0x02, [11] = 0x01, [12] = 0xff};

	memcpy(out, prefix, sizeof(prefix));
	memcpy(out + 13, target + 13, 3);
}

static bool is_solicited_node6(const uint8_t a[16])
{
	uint8_t sn[16];

	solicited_node6(a, sn);
	return memcmp(a, sn, sizeof(sn)) == 0;
}

/* 33:33 and the low 32 bits of the group, RFC 2464 7. */
static void mcast_mac6(const uint8_t group[16], struct rte_ether_addr *mac)
{
	mac->addr_bytes[0] = 0x33;
	mac->addr_bytes[1] = 0x33;
	memcpy(&mac->addr_bytes[2], group + 12, 4);
}

static bool prefix_match4(uint32_t a_be, uint32_t b_be, unsigned plen)
{
	uint32_t mask = plen == 0 ? 0 : UINT32_MAX << (32 - RTE_MIN(plen, 32u));

	return ((rte_be_to_cpu_32(a_be) ^ rte_be_to_cpu_32(b_be)) & mask) == 0;
}

static bool prefix_match6(const uint8_t a[16], const uint8_t b[16], unsigned plen)
{
	unsigned bytes, bits;

	plen = RTE_MIN(plen, 128u);
	bytes = plen / 8;
	bits = plen % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	return bits == 0 || ((a[bytes] ^ b[bytes]) & (0xff00 >> bits)) == 0;
}

static bool ifc_owns4(const struct dp_neigh_iface *ifc, uint32_t ip_be)
{
	for (int i = 0; i < n_addrs(ifc->n_addr4); i++)
		if (ifc->addr4[i] == ip_be)
			return true;
	return false;
}

static bool ifc_owns6(const struct dp_neigh_iface *ifc, const uint8_t ip[16])
{
	if (memcmp(ifc->ll6, ip, 16) == 0)
		return true;
	for (int i = 0; i < n_addrs(ifc->n_addr6); i++)
		if (memcmp(ifc->addr6[i], ip, 16) == 0)
			return true;
	return false;
}

static uint32_t pick_src4(const struct dp_neigh_iface *ifc, uint32_t target_be)
{
	int n = n_addrs(ifc->n_addr4);

	for (int i = 0; i < n; i++)
		if (prefix_match4(ifc->addr4[i], target_be, ifc->plen4[i]))
			return ifc->addr4[i];
	return n > 0 ? ifc->addr4[0] : 0;
}

static const uint8_t *pick_src6(const struct dp_neigh_iface *ifc, const uint8_t target[16])
{
	if (is_linklocal6(target))
		return ifc->ll6;
	for (int i = 0; i < n_addrs(ifc->n_addr6); i++)
		if (prefix_match6(ifc->addr6[i], target, ifc->plen6[i]))
			return ifc->addr6[i];
	return ifc->ll6;
}

/* ---- Learning ---- */

/* Never learn our own addresses or our own MAC (conflicts, loops). */
static void learn4(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc, uint32_t ip_be,
		   const struct rte_ether_addr *mac, uint64_t now_tsc)
{
	struct neigh_key k = key4(ifc->port_id, ip_be);

	if (ip_be == 0 || ifc_owns4(ifc, ip_be) || rte_is_same_ether_addr(mac, &ifc->mac))
		return;
	update(t, &k, mac, now_tsc);
}

static void learn6(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
		   const uint8_t ip[16], const struct rte_ether_addr *mac, uint64_t now_tsc)
{
	struct neigh_key k = key6(ifc->port_id, ip);

	if (ifc_owns6(ifc, ip) || rte_is_same_ether_addr(mac, &ifc->mac))
		return;
	update(t, &k, mac, now_tsc);
}

/* ---- Frame building ---- */

static struct rte_mbuf *frame_alloc(struct rte_mempool *mp, uint16_t len, void **data)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(mp);
	char *p;

	if (!m) {
		rte_errno = ENOBUFS;
		return NULL;
	}
	p = rte_pktmbuf_append(m, len);
	if (!p) {
		rte_pktmbuf_free(m);
		rte_errno = ENOBUFS;
		return NULL;
	}
	memset(p, 0, len);
	*data = p;
	return m;
}

static void eth_fill(struct rte_ether_hdr *eth, const struct rte_ether_addr *dst,
		     const struct rte_ether_addr *src, uint16_t type)
{
	eth->dst_addr = *dst;
	eth->src_addr = *src;
	eth->ether_type = rte_cpu_to_be_16(type);
}

struct arp_spec {
	uint16_t op;
	struct rte_ether_addr eth_dst;
	struct rte_ether_addr tha;
	uint32_t sip, tip; /* network order */
};

static struct rte_mbuf *arp_build(const struct dp_neigh_iface *ifc, struct rte_mempool *mp,
				  const struct arp_spec *s)
{
	struct rte_ether_hdr *eth;
	struct rte_arp_hdr *arp;
	struct rte_mbuf *m = frame_alloc(mp, ARP_FRAME_LEN, (void **)&eth);

	if (!m)
		return NULL;
	m->port = ifc->port_id;
	eth_fill(eth, &s->eth_dst, &ifc->mac, RTE_ETHER_TYPE_ARP);
	arp = (struct rte_arp_hdr *)(eth + 1);
	arp->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = sizeof(uint32_t);
	arp->arp_opcode = rte_cpu_to_be_16(s->op);
	arp->arp_data.arp_sha = ifc->mac;
	arp->arp_data.arp_sip = s->sip;
	arp->arp_data.arp_tha = s->tha;
	arp->arp_data.arp_tip = s->tip;
	return m;
}

struct nd_spec {
	uint8_t type;
	uint8_t flags;
	uint8_t opt; /* which link-layer option carries our MAC */
	const uint8_t *src;
	const uint8_t *dst;
	const uint8_t *target;
	struct rte_ether_addr eth_dst;
};

static struct rte_mbuf *nd_build(const struct dp_neigh_iface *ifc, struct rte_mempool *mp,
				 const struct nd_spec *s)
{
	struct rte_ether_hdr *eth;
	struct rte_mbuf *m = frame_alloc(mp, ND_FRAME_LEN, (void **)&eth);
	struct rte_ipv6_hdr *ip6;
	struct nd_msg *msg;
	struct nd_opt_lladdr *opt;

	if (!m)
		return NULL;
	m->port = ifc->port_id;
	eth_fill(eth, &s->eth_dst, &ifc->mac, RTE_ETHER_TYPE_IPV6);
	ip6 = (struct rte_ipv6_hdr *)(eth + 1);
	ip6->vtc_flow = RTE_BE32(6u << 28);
	ip6->payload_len = RTE_BE16(ND_PAYLOAD);
	ip6->proto = IPPROTO_ICMPV6;
	ip6->hop_limits = ND_HOP_LIMIT;
	memcpy(ip6->src_addr, s->src, 16);
	memcpy(ip6->dst_addr, s->dst, 16);
	msg = (struct nd_msg *)(ip6 + 1);
	msg->type = s->type;
	msg->flags = s->flags;
	memcpy(msg->target, s->target, 16);
	opt = (struct nd_opt_lladdr *)(msg + 1);
	opt->type = s->opt;
	opt->len = 1;
	memcpy(opt->mac, ifc->mac.addr_bytes, sizeof(opt->mac));
	msg->cksum = rte_ipv6_udptcp_cksum(ip6, msg);
	return m;
}

/* ---- ARP ---- */

static struct rte_mbuf *drop_malformed(struct dp_neigh_table *t)
{
	stat_inc(&t->stats.malformed);
	return NULL;
}

static struct rte_mbuf *count_reply(struct dp_neigh_table *t, struct rte_mbuf *reply,
				    uint64_t *sent)
{
	stat_inc(reply ? sent : &t->stats.no_mbuf);
	return reply;
}

/* A sender may be 0.0.0.0 (RFC 5227 probe), never loopback or multicast/class E. */
static bool arp_sender_ok(uint32_t sip_be)
{
	uint8_t first = rte_be_to_cpu_32(sip_be) >> 24;

	return first != 127 && first < 224;
}

static const struct rte_arp_hdr *arp_parse(const struct rte_mbuf *m)
{
	const struct rte_arp_hdr *arp;
	struct rte_ether_addr sha;

	if (rte_pktmbuf_data_len(m) < ARP_LEN)
		return NULL;
	arp = rte_pktmbuf_mtod_offset(m, const struct rte_arp_hdr *, ETH_LEN);
	if (arp->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
	    arp->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
	    arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != sizeof(uint32_t))
		return NULL;
	if (arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST) &&
	    arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REPLY))
		return NULL;
	sha = arp->arp_data.arp_sha;
	if (!rte_is_valid_assigned_ether_addr(&sha) || !arp_sender_ok(arp->arp_data.arp_sip))
		return NULL;
	return arp;
}

static struct rte_mbuf *arp_reply(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				  const struct rte_arp_hdr *req, struct rte_mempool *mp)
{
	struct arp_spec s = {
		.op = RTE_ARP_OP_REPLY,
		.eth_dst = req->arp_data.arp_sha,
		.tha = req->arp_data.arp_sha,
		.sip = req->arp_data.arp_tip,
		.tip = req->arp_data.arp_sip,
	};

	return count_reply(t, arp_build(ifc, mp, &s), &t->stats.arp_replies);
}

/*
 * Every well-formed sender is learned, requests and replies alike, which
 * covers gratuitous ARP (sender == target). A gratuitous request for one of
 * our addresses is someone else's announcement, not a question: no reply.
 */
static struct rte_mbuf *arp_input(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				  const struct rte_mbuf *m, struct rte_mempool *mp,
				  uint64_t now_tsc)
{
	const struct rte_arp_hdr *arp = arp_parse(m);
	struct rte_ether_addr sha;
	uint32_t sip, tip;

	if (!arp)
		return drop_malformed(t);
	stat_inc(&t->stats.arp_in);
	sha = arp->arp_data.arp_sha;
	sip = arp->arp_data.arp_sip;
	tip = arp->arp_data.arp_tip;
	learn4(t, ifc, sip, &sha, now_tsc);
	if (arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST) || sip == tip ||
	    !ifc_owns4(ifc, tip) || rte_is_same_ether_addr(&sha, &ifc->mac))
		return NULL;
	return arp_reply(t, ifc, arp, mp);
}

struct rte_mbuf *dp_neigh_solicit4(const struct dp_neigh_iface *ifc, struct rte_mempool *mp,
				   uint32_t target_be)
{
	struct arp_spec s = {
		.op = RTE_ARP_OP_REQUEST,
		.eth_dst.addr_bytes = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		.sip = pick_src4(ifc, target_be),
		.tip = target_be,
	};

	return arp_build(ifc, mp, &s);
}

/* ---- Neighbor Discovery ---- */

/* A validated NS or NA, pointing into the mbuf. */
struct nd_pkt {
	const struct rte_ether_hdr *eth;
	const struct rte_ipv6_hdr *ip6;
	const struct nd_msg *msg;
	const uint8_t *opts;
	unsigned opts_len;
	bool has_lladdr; /* source (NS) or target (NA) link-layer option */
	struct rte_ether_addr lladdr;
};

/* RFC 4861 7.1.1/7.1.2 checks common to NS and NA, checksum included. */
static int nd_check_ip6(const struct rte_ipv6_hdr *ip6, unsigned avail)
{
	unsigned plen = rte_be_to_cpu_16(ip6->payload_len);

	if ((rte_be_to_cpu_32(ip6->vtc_flow) >> 28) != 6 || ip6->proto != IPPROTO_ICMPV6)
		return -EINVAL;
	/* Only a neighbour on the link can send 255: nothing routed. */
	if (ip6->hop_limits != ND_HOP_LIMIT)
		return -EINVAL;
	if (plen < sizeof(struct nd_msg) || plen > avail || is_mcast6(ip6->src_addr))
		return -EINVAL;
	/* Summing a correct checksum in gives 0xffff, complemented 0. */
	if (rte_ipv6_udptcp_cksum(ip6, ip6 + 1) != 0)
		return -EINVAL;
	return 0;
}

/* Every option needs a nonzero length that fits; ours must be Ethernet-sized. */
static int nd_parse_opts(struct nd_pkt *p, uint8_t want)
{
	const uint8_t *o = p->opts;
	unsigned left = p->opts_len;

	p->has_lladdr = false;
	while (left > 0) {
		if (left < 2 || o[1] == 0 || o[1] * 8u > left)
			return -EINVAL;
		if (o[0] == want) {
			if (o[1] != 1)
				return -EINVAL;
			memcpy(&p->lladdr, o + 2, RTE_ETHER_ADDR_LEN);
			if (!rte_is_valid_assigned_ether_addr(&p->lladdr))
				return -EINVAL;
			p->has_lladdr = true;
		}
		left -= o[1] * 8u;
		o += o[1] * 8u;
	}
	return 0;
}

static int nd_parse(const struct rte_mbuf *m, struct nd_pkt *p)
{
	unsigned len = rte_pktmbuf_data_len(m);
	uint8_t want;

	if (len < ND_HDRS_LEN + sizeof(struct nd_msg))
		return -EINVAL;
	p->eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	p->ip6 = (const struct rte_ipv6_hdr *)(p->eth + 1);
	p->msg = (const struct nd_msg *)(p->ip6 + 1);
	if (nd_check_ip6(p->ip6, len - ND_HDRS_LEN) < 0)
		return -EINVAL;
	if (p->msg->type == ND_NEIGHBOR_SOLICIT)
		want = ND_OPT_SOURCE_LLADDR;
	else if (p->msg->type == ND_NEIGHBOR_ADVERT)
		want = ND_OPT_TARGET_LLADDR;
	else
		return -EINVAL;
	if (p->msg->code != 0 || is_mcast6(p->msg->target))
		return -EINVAL;
	p->opts = (const uint8_t *)(p->msg + 1);
	p->opts_len = rte_be_to_cpu_16(p->ip6->payload_len) - sizeof(struct nd_msg);
	return nd_parse_opts(p, want);
}

/*
 * NA for one of our addresses, from that address. A DAD probe (source ::)
 * is answered to all-nodes without the solicited flag (RFC 4861 7.2.4).
 */
static struct rte_mbuf *na_reply(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				 const struct nd_pkt *p, struct rte_mempool *mp, bool dad)
{
	struct nd_spec s = {
		.type = ND_NEIGHBOR_ADVERT,
		.flags = ND_NA_ROUTER | ND_NA_OVERRIDE | (dad ? 0 : ND_NA_SOLICITED),
		.opt = ND_OPT_TARGET_LLADDR,
		.src = p->msg->target,
		.target = p->msg->target,
		.dst = dad ? all_nodes6 : p->ip6->src_addr,
	};

	if (dad)
		mcast_mac6(all_nodes6, &s.eth_dst);
	else
		s.eth_dst = p->has_lladdr ? p->lladdr : p->eth->src_addr;
	return count_reply(t, nd_build(ifc, mp, &s), &t->stats.na_sent);
}

static struct rte_mbuf *ns_input(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				 const struct nd_pkt *p, struct rte_mempool *mp, uint64_t now_tsc)
{
	bool dad = is_unspec6(p->ip6->src_addr);

	/* RFC 4861 7.1.1: a DAD probe goes to a solicited-node group, without SLLA. */
	if (dad && (!is_solicited_node6(p->ip6->dst_addr) || p->has_lladdr))
		return drop_malformed(t);
	stat_inc(&t->stats.ns_in);
	if (p->has_lladdr)
		learn6(t, ifc, p->ip6->src_addr, &p->lladdr, now_tsc);
	if (!ifc_owns6(ifc, p->msg->target))
		return NULL;
	return na_reply(t, ifc, p, mp, dad);
}

/*
 * RFC 4861 7.2.5 with one liberty: an advert for an unknown target creates
 * the entry (we keep no INCOMPLETE state to match it against). Without the
 * override flag an advert cannot change a known MAC; without a link-layer
 * option a solicited advert only confirms the entry.
 */
static void na_learn(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
		     const struct nd_pkt *p, uint64_t now_tsc)
{
	struct neigh_key k = key6(ifc->port_id, p->msg->target);
	int32_t pos = rte_hash_lookup(t->h, &k);
	bool known = pos >= 0 && (uint32_t)pos < t->n_slots;

	if (!p->has_lladdr) {
		if (known && (p->msg->flags & ND_NA_SOLICITED))
			t->slots[pos].updated_tsc = now_tsc;
		return;
	}
	if (known && !(p->msg->flags & ND_NA_OVERRIDE) &&
	    !rte_is_same_ether_addr(&t->slots[pos].mac, &p->lladdr))
		return;
	learn6(t, ifc, p->msg->target, &p->lladdr, now_tsc);
}

static struct rte_mbuf *na_input(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				 const struct nd_pkt *p, uint64_t now_tsc)
{
	/* RFC 4861 7.1.2: a multicast advert cannot be solicited. */
	if (is_mcast6(p->ip6->dst_addr) && (p->msg->flags & ND_NA_SOLICITED))
		return drop_malformed(t);
	stat_inc(&t->stats.na_in);
	na_learn(t, ifc, p, now_tsc);
	return NULL;
}

static struct rte_mbuf *nd_input(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				 const struct rte_mbuf *m, struct rte_mempool *mp, uint64_t now_tsc)
{
	struct nd_pkt p;

	if (nd_parse(m, &p) < 0)
		return drop_malformed(t);
	if (p.msg->type == ND_NEIGHBOR_SOLICIT)
		return ns_input(t, ifc, &p, mp, now_tsc);
	return na_input(t, ifc, &p, now_tsc);
}

struct rte_mbuf *dp_neigh_solicit6(const struct dp_neigh_iface *ifc, struct rte_mempool *mp,
				   const uint8_t target[16])
{
	uint8_t dst[16];
	struct nd_spec s = {
		.type = ND_NEIGHBOR_SOLICIT,
		.opt = ND_OPT_SOURCE_LLADDR,
		.src = pick_src6(ifc, target),
		.dst = dst,
		.target = target,
	};

	if (is_mcast6(target) || is_unspec6(target)) {
		rte_errno = EINVAL;
		return NULL;
	}
	solicited_node6(target, dst);
	mcast_mac6(dst, &s.eth_dst);
	return nd_build(ifc, mp, &s);
}

/* ---- Entry points ---- */

bool dp_neigh_is_neigh_packet(const struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	const struct rte_ipv6_hdr *ip6 = (const struct rte_ipv6_hdr *)(eth + 1);
	unsigned len = rte_pktmbuf_data_len(m);
	uint8_t type;

	if (len < ETH_LEN)
		return false;
	if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_ARP))
		return true;
	if (eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV6) || len < ND_HDRS_LEN + 1 ||
	    ip6->proto != IPPROTO_ICMPV6)
		return false;
	type = *(const uint8_t *)(ip6 + 1);
	return type == ND_NEIGHBOR_SOLICIT || type == ND_NEIGHBOR_ADVERT;
}

static struct rte_mbuf *dispatch(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				 const struct rte_mbuf *m, struct rte_mempool *mp, uint64_t now_tsc)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);

	if (rte_pktmbuf_data_len(m) < ETH_LEN)
		return drop_malformed(t);
	if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_ARP))
		return arp_input(t, ifc, m, mp, now_tsc);
	if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV6))
		return nd_input(t, ifc, m, mp, now_tsc);
	return drop_malformed(t); /* not ours: VLAN tags and IPv4 included */
}

struct rte_mbuf *dp_neigh_input(struct dp_neigh_table *t, const struct dp_neigh_iface *ifc,
				struct rte_mbuf *m, struct rte_mempool *mp, uint64_t now_tsc)
{
	struct rte_mbuf *reply;

	if (!m)
		return NULL;
	/* Parsers read one contiguous buffer; ARP/ND frames are small. */
	if (!rte_pktmbuf_is_contiguous(m) && rte_pktmbuf_linearize(m) < 0)
		reply = drop_malformed(t);
	else
		reply = dispatch(t, ifc, m, mp, now_tsc);
	rte_pktmbuf_free(m);
	return reply;
}
