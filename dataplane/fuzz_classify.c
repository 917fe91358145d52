/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the worker's input paths: untrusted frames into
 * dp_wan_input and dp_lan_input, and from there dp_lan_output,
 * dp_encap_burst, dp_send_via and the TX/punt helpers, on one lcore with
 * fixed tables (below) and two net_null ports, which drop what they send.
 *
 * Input: byte 0 is a set of IN_* flags (the port, burst shape and the state
 * of peer 0), the rest is one frame. Every input starts from the same state
 * (replay windows, send counters and peer 0 are reset), so a crash
 * reproduces from its input alone. A fuzzer cannot forge a tag, so with
 * IN_SEAL the harness encrypts the payload of a WAN data message itself
 * (under the receive key of the keypair it names, tag written over the last
 * 16 bytes): then the input holds the plaintext, and what the worker does
 * with a decrypted packet gets fuzzed too. With both IN_LAN and IN_SEAL
 * (IN_DERP) the rest is a bare WireGuard message as control hands over one
 * a DERP relay brought (dp_derp_input), sealed the same way.
 *
 * Besides memory errors it aborts on broken contracts: an mbuf leaked or
 * freed twice (the pool's in-use count), a frame sent to the WAN that does
 * not decrypt under the send key of the peer its inner destination routes
 * to, a frame sent to the LAN that is not a whole IP packet from some peer's
 * allowed IPs, and malformed hand-offs to the main lcore or control (a
 * punt is a handshake message, a STUN or a disco one).
 *
 * The seeds in dataplane/corpus/classify/ come from gen_classify_corpus.c,
 * which repeats the fixture: keep the two in step.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sodium.h>

#include "acl.h"
#include "dp.h"
#include "flowlog.h"
#include "filter.h"
#include "flow.h"
#include "log.h"
#include "pkt.h"
#include "route.h"
#include "stage.h"
#include "disco.h"
#include "stun.h"
#include "wg_messages.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ctx.c, which defines it for the dataplane, is not linked: the stages find
 * their metadata through this one. */
int dp_meta_offset = -1;

/* Byte 0 of an input. */
enum {
	IN_LAN = 1u << 0,	 /* frame arrives on the LAN port, else the WAN port */
	IN_SEAL = 1u << 1,	 /* WAN: the harness encrypts a data message's payload */
	IN_DERP = IN_LAN | IN_SEAL, /* both: the rest is a WireGuard message relayed by
				     * DERP (dp_derp_input), a data message sealed so */
	IN_BURST = 1u << 2,	 /* four copies of the frame in one burst, else one */
	IN_SPLIT = 1u << 3,	 /* each copy in two segments */
	IN_KP_NEXT = 1u << 4,	 /* peer 0's keypair is next (unconfirmed), not current */
	IN_KP_EXPIRED = 1u << 5, /* peer 0's keypair is past reject-after-time */
	IN_EP_SHIFT = 6,	 /* bits 6-7: peer 0's endpoint, index into ep0_choices */
};

#define N_PEERS	   4
#define MAX_PEERS  4 /* kp_mask 15: keypair slot = local index & 15 */
#define MTU	   1420
#define LISTEN	   51820
#define POOL_MBUFS 1023

/* RTE_IPV4 shifts an int: 198 << 24 overflows. */
#define IP4(a, b, c, d)                                                                            \
	RTE_BE32((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

static const struct rte_ether_addr wan_mac = {{0x02, 0, 0, 0, 0, 0x01}};
static const struct rte_ether_addr lan_mac = {{0x02, 0, 0, 0, 0, 0x02}};
static const struct rte_ether_addr wan_nbr_mac = {{0x02, 0, 0, 0, 0x01, 0x02}};
static const struct rte_ether_addr wan_nbr2_mac = {{0x02, 0, 0, 0, 0x01, 0x04}};
static const struct rte_ether_addr wan_nbr3_mac = {{0x02, 0, 0, 0, 0x01, 0x06}};
static const struct rte_ether_addr lan_nbr_mac = {{0x02, 0, 0, 0, 0x02, 0x01}};

static const uint8_t fd88_1[16] = {0xfd, 0x88, [15] = 0x01};
/* The WAN port's IPv6 address and peer 3's IPv6 endpoint on its prefix. */
static const uint8_t wan_ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x01};
static const uint8_t peer3_ep6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x05};

/* Peer 0's endpoint, chosen by the input: resolved neighbour, unresolved
 * neighbour, none, off-link (through the unresolved gateway). */
static const struct mg_sockaddr ep0_choices[4] = {
    {.family = AF_INET, .port = LISTEN, .addr = {198, 18, 0, 2}},
    {.family = AF_INET, .port = LISTEN, .addr = {198, 18, 0, 3}},
    {.family = 0},
    {.family = AF_INET, .port = 4500, .addr = {192, 0, 2, 7}},
};

struct fx_peer {
	struct mg_prefix allowed[2];
	struct mg_sockaddr ep;
	uint32_t local_index; /* 0: no keypair */
	uint32_t remote_index;
	uint8_t send_fill, recv_fill; /* the keys are 32 copies of these bytes */
};

/* Peer 1 is the hairpin target; peer 2 never has a keypair; peer 3 has an
 * IPv6 endpoint (outer IPv6). */
static const struct fx_peer fx_peers[N_PEERS] = {
    {
	.allowed = {{.family = AF_INET, .cidr = 32, .addr = {10, 99, 0, 2}},
		    {.family = AF_INET6, .cidr = 128, .addr = {0xfd, 0x99, [15] = 2}}},
	.local_index = 0x12340000,
	.remote_index = 0xa0a0a0a0,
	.send_fill = 0x22,
	.recv_fill = 0x11,
    },
    {
	.allowed = {{.family = AF_INET, .cidr = 32, .addr = {10, 99, 0, 3}},
		    {.family = AF_INET6, .cidr = 128, .addr = {0xfd, 0x99, [15] = 3}}},
	.ep = {.family = AF_INET, .port = 51821, .addr = {198, 18, 0, 4}},
	.local_index = 0x56780004,
	.remote_index = 0xb1b1b1b1,
	.send_fill = 0x44,
	.recv_fill = 0x33,
    },
    {
	.allowed = {{.family = AF_INET, .cidr = 32, .addr = {10, 99, 0, 4}}},
    },
    {
	.allowed = {{.family = AF_INET, .cidr = 32, .addr = {10, 99, 0, 5}},
		    {.family = AF_INET6, .cidr = 128, .addr = {0xfd, 0x99, [15] = 5}}},
	.ep = {.family = AF_INET6,
	       .port = 51825,
	       .addr = {0x20, 0x01, 0x0d, 0xb8, 0, 0x18, [15] = 0x05}},
	.local_index = 0x9abc000c,
	.remote_index = 0xc2c2c2c2,
	.send_fill = 0x66,
	.recv_fill = 0x55,
    },
};

static struct dp_lan_route lan_routes[] = {
    {.prefix = {.family = AF_INET, .cidr = 16, .addr = {10, 77}},
     .via = {.family = AF_INET, .addr = {10, 88, 0, 1}}},
    {.prefix = {.family = AF_INET6, .cidr = 48, .addr = {0xfd, 0x77}},
     .via = {.family = AF_INET6, .addr = {0xfd, 0x88, [15] = 0x01}}},
};

static struct {
	bool ready;
	struct mg_config cfg;
	struct dp_ctx dp;
	struct dp_burst burst;
	unsigned baseline; /* mbufs in use between inputs */
} fx;

static void __attribute__((noreturn)) fail(const char *what)
{
	fprintf(stderr, "fuzz_classify: %s\n", what);
	abort();
}

#define require(cond, what)                                                                        \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail(what);                                                                \
	} while (0)

/* ---- setup -------------------------------------------------------------- */

static void eal_start(void)
{
	char prefix[64];
	char *args[] = {"fuzz_classify",
			"--no-huge",
			"-m",
			"512",
			"--no-pci",
			"--no-shconf",
			"--no-telemetry",
			prefix,
			"--log-level=*:error",
			"-l",
			"0",
			"--vdev=net_null0",
			"--vdev=net_null1",
			NULL};

	snprintf(prefix, sizeof(prefix), "--file-prefix=fuzzcls%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(args) - 1, args) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		abort();
	}
	/* Empty and unused with --no-shconf: gone now, a crash leaves no trace. */
	rmdir(rte_eal_get_runtime_dir());
}

static void add_port(struct mg_config *c, const char *dev, enum mg_port_role role)
{
	struct mg_port_conf *pc = &c->ports[c->n_ports++];

	snprintf(pc->name, sizeof(pc->name), "%s", role == MG_PORT_WAN ? "wan" : "lan");
	snprintf(pc->device, sizeof(pc->device), "%s", dev);
	pc->role = role;
}

static void fx_config_init(struct mg_config *c)
{
	static const struct mg_prefix lan6 = {
	    .family = AF_INET6, .cidr = 64, .addr = {0xfd, 0x88, [15] = 0xfe}};

	snprintf(c->name, sizeof(c->name), "fuzzcls%d", (int)getpid());
	c->listen_port = LISTEN;
	c->mtu = MTU;
	c->max_peers = MAX_PEERS;
	c->n_workers = 1;
	c->burst = 32;
	c->mbufs = POOL_MBUFS;
	add_port(c, "net_null0", MG_PORT_WAN);
	c->ports[0].addrs[0] =
	    (struct mg_prefix){.family = AF_INET, .cidr = 24, .addr = {198, 18, 0, 1}};
	c->ports[0].addrs[1] = (struct mg_prefix){.family = AF_INET6, .cidr = 64};
	memcpy(c->ports[0].addrs[1].addr, wan_ip6, 16);
	c->ports[0].n_addrs = 2;
	c->ports[0].gateway4 = (struct mg_sockaddr){.family = AF_INET, .addr = {198, 18, 0, 254}};
	c->ports[0].gateway6 =
	    (struct mg_sockaddr){.family = AF_INET6, .addr = {0xfe, 0x80, [15] = 0xfe}};
	add_port(c, "net_null1", MG_PORT_LAN);
	c->ports[1].addrs[0] =
	    (struct mg_prefix){.family = AF_INET, .cidr = 24, .addr = {10, 88, 0, 254}};
	c->ports[1].addrs[1] = lan6;
	c->ports[1].n_addrs = 2;
}

static void tables_init(struct dp_ctx *dp)
{
	static const struct rte_mbuf_dynfield meta_desc = {
	    .name = "meshgate_meta",
	    .size = sizeof(struct dp_meta),
	    .align = __alignof__(struct dp_meta),
	};
	int socket = (int)rte_socket_id();

	dp_meta_offset = rte_mbuf_dynfield_register(&meta_desc);
	dp->max_peers = MAX_PEERS;
	dp->kp_mask = MAX_PEERS * MG_KP_PER_PEER - 1;
	/* No per-lcore cache: the in-use count is then exact. */
	dp->pool = rte_pktmbuf_pool_create("fuzzcls_mbufs", POOL_MBUFS, 0, 0,
					   RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	dp->peers = rte_zmalloc_socket("peers", sizeof(*dp->peers) * dp->max_peers,
				       RTE_CACHE_LINE_SIZE, socket);
	dp->keypairs = rte_zmalloc_socket("keypairs", sizeof(*dp->keypairs) * (dp->kp_mask + 1),
					  RTE_CACHE_LINE_SIZE, socket);
	dp->routes = dp_routes_create("fuzzcls_aip", dp->max_peers, 1024, socket);
	dp->neigh = dp_neigh_create("fuzzcls_neigh", 64, socket);
	dp->rcu =
	    rte_zmalloc_socket("rcu", rte_rcu_qsbr_get_memsize(1), RTE_CACHE_LINE_SIZE, socket);
	dp->slow = rte_ring_create("fuzzcls_slow", 4096, socket, RING_F_SC_DEQ);
	dp->events = rte_ring_create_elem("fuzzcls_events", sizeof(struct dp_event), 1024, socket,
					  RING_F_SC_DEQ);
	if (dp_meta_offset < 0 || !dp->pool || !dp->peers || !dp->keypairs || !dp->routes ||
	    !dp->neigh || !dp->rcu || !dp->slow || !dp->events)
		fail("cannot allocate the tables");
	rte_rcu_qsbr_init(dp->rcu, 1);
	rte_rcu_qsbr_thread_register(dp->rcu, 0);
	rte_rcu_qsbr_thread_online(dp->rcu, 0);
	dp_neigh_set_rcu(dp->neigh, dp->rcu);
	dp->lan_routes = lan_routes;
	dp->n_lan_routes = RTE_DIM(lan_routes);
}

static void worker_init(struct dp_ctx *dp)
{
	struct dp_worker *w = &dp->workers[0];

	w->dp = dp;
	w->idx = 0;
	w->drops = mg_shm_drops(&dp->shm, 0);
	w->inject = rte_ring_create("fuzzcls_inject0", 4096, (int)rte_socket_id(),
				    RING_F_SP_ENQ | RING_F_SC_DEQ);
	w->crypto = dp_crypto_create(DP_CRYPTO_IPSEC_MB, NULL, -1);
	/* Flow logs on: every forwarded packet is counted, in both directions. */
	w->flowlog =
	    dp_flowlog_create("fuzzcls_flows", 1024, rte_get_tsc_hz(), 60 * rte_get_tsc_hz(),
			      mg_shm_flow_ring(&dp->shm, 0), (int)rte_socket_id());
	if (!w->inject || !w->crypto || !w->flowlog)
		fail("cannot create the worker");
}

/* net_null's MACs are random; the seeds need fixed ones. */
static void set_mac(struct dp_port *p, const struct rte_ether_addr *mac)
{
	p->mac = *mac;
	p->ifc.mac = *mac;
	dp_neigh_iface_init(&p->ifc);
}

static void peer_init(struct dp_ctx *dp, uint32_t id)
{
	const struct fx_peer *fp = &fx_peers[id];
	struct dp_peer *p = &dp->peers[id];

	p->in_use = 1;
	p->ep[0].addr = fp->ep;
	for (unsigned i = 0; i < RTE_DIM(fp->allowed); i++)
		if (fp->allowed[i].family && dp_routes_add(dp->routes, &fp->allowed[i], id))
			fail("dp_routes_add");
	if (!fp->local_index)
		return;
	struct dp_keypair *kp = &dp->keypairs[fp->local_index & dp->kp_mask];
	kp->remote_index = fp->remote_index;
	kp->peer = id;
	kp->initiator = 1;
	memset(kp->send_key, fp->send_fill, sizeof(kp->send_key));
	memset(kp->recv_key, fp->recv_fill, sizeof(kp->recv_key));
	kp->local_index = fp->local_index;
	p->kp_cur = (fp->local_index & dp->kp_mask) + 1;
}

static void neigh_init(struct dp_ctx *dp)
{
	uint16_t wan = dp->ports[0].port_id, lan = dp->ports[1].port_id;

	if (dp_neigh_update4(dp->neigh, wan, IP4(198, 18, 0, 2), &wan_nbr_mac, 1) ||
	    dp_neigh_update4(dp->neigh, wan, IP4(198, 18, 0, 4), &wan_nbr2_mac, 1) ||
	    dp_neigh_update4(dp->neigh, lan, IP4(10, 88, 0, 1), &lan_nbr_mac, 1) ||
	    dp_neigh_update6(dp->neigh, lan, fd88_1, &lan_nbr_mac, 1) ||
	    dp_neigh_update6(dp->neigh, wan, peer3_ep6, &wan_nbr3_mac, 1))
		fail("dp_neigh_update");
}

/* A packet filter on every decrypted packet: it lets most traffic through
 * (so the LAN and hairpin paths stay reachable) but denies TCP port 22,
 * UDP port 9 and IPv6 UDP port 7, so the classifier, the SYN/ICMP/UDP-reply
 * rules and the deny path all see fuzzed inner packets. */
static void filter_init(struct dp_ctx *dp)
{
	static const struct {
		uint8_t family, proto;
		uint16_t lo, hi;
	} r[] = {
	    {AF_INET, IPPROTO_TCP, 0, 21},   {AF_INET, IPPROTO_TCP, 23, 65535},
	    {AF_INET, IPPROTO_UDP, 0, 8},    {AF_INET, IPPROTO_UDP, 10, 65535},
	    {AF_INET, IPPROTO_ICMP, 0, 65535}, {AF_INET6, IPPROTO_TCP, 0, 65535},
	    {AF_INET6, IPPROTO_UDP, 8, 65535}, {AF_INET6, IPPROTO_ICMPV6, 0, 65535},
	};
	struct mg_acl_rule rules[RTE_DIM(r)];
	char err[256];
	struct dp_filter *f = calloc(1, sizeof(*f));

	memset(rules, 0, sizeof(rules));
	for (unsigned i = 0; i < RTE_DIM(r); i++)
		rules[i] = (struct mg_acl_rule){.family = r[i].family, .proto = r[i].proto,
						.dport_lo = r[i].lo, .dport_hi = r[i].hi,
						.acl_index = i};
	dp->flows = dp_flows_create(1, 1024, rte_get_tsc_hz(), 120, (int)rte_socket_id());
	if (!f || !dp->flows || !(f->acl = dp_acl_build(rules, RTE_DIM(r), (int)rte_socket_id(),
							 err, sizeof(err))))
		fail("cannot build the packet filter");
	f->n_rules = RTE_DIM(r);
	dp->filter = f;
}

static void teardown(void)
{
	struct dp_ctx *dp = &fx.dp;

	dp_ports_fini(dp);
	dp_crypto_destroy(dp->workers[0].crypto);
	dp_flowlog_free(dp->workers[0].flowlog);
	dp_acl_free(dp->filter->acl);
	free(dp->filter);
	dp_flows_free(dp->flows);
	mg_shm_destroy(&dp->shm);
	rte_eal_cleanup();
}

static void setup(void)
{
	struct dp_ctx *dp = &fx.dp;

	if (fx.ready)
		return;
	mg_log_init("fuzz_classify", LOG_ERR);
	eal_start();
	if (sodium_init() < 0)
		fail("sodium_init");
	fx_config_init(&fx.cfg);
	dp->cfg = &fx.cfg;
	dp->n_workers = 1;
	dp->listen_port = LISTEN;
	dp->mtu = MTU;
	if (mg_shm_create(&dp->shm, fx.cfg.name, MAX_PEERS, 2))
		fail("mg_shm_create");
	/* Nothing attaches to it: unlinked now, a crash leaves no name behind. */
	shm_unlink(dp->shm.path);
	tables_init(dp);
	worker_init(dp);
	if (dp_ports_init(dp) || dp->wan != 0 || dp->lan != 1)
		fail("dp_ports_init");
	atexit(teardown);
	set_mac(&dp->ports[0], &wan_mac);
	set_mac(&dp->ports[1], &lan_mac);
	for (uint32_t id = 0; id < N_PEERS; id++)
		peer_init(dp, id);
	if (dp_routes_commit(dp->routes, NULL))
		fail("dp_routes_commit");
	neigh_init(dp);
	filter_init(dp);
	fx.baseline = rte_mempool_in_use_count(dp->pool);
	fx.ready = true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setup();
	return 0;
}

/* ---- per input ---------------------------------------------------------- */

/* The state an input may depend on, as byte 0 asks for it. */
static void state_reset(struct dp_ctx *dp, uint8_t flags)
{
	struct dp_peer *p0 = &dp->peers[0];
	uint32_t slot1 = (fx_peers[0].local_index & dp->kp_mask) + 1;

	for (uint32_t id = 0; id < N_PEERS; id++) {
		if (!fx_peers[id].local_index)
			continue;
		struct dp_keypair *kp = &dp->keypairs[fx_peers[id].local_index & dp->kp_mask];
		wg_replay_mt_init(&kp->replay);
		kp->send_counter = 0;
		kp->expire_tsc = UINT64_MAX;
	}
	dp_keypair_by_slot(dp, slot1)->expire_tsc = flags & IN_KP_EXPIRED ? 0 : UINT64_MAX;
	p0->kp_cur = flags & IN_KP_NEXT ? 0 : slot1;
	p0->kp_next = flags & IN_KP_NEXT ? slot1 : 0;
	p0->ep_idx = 0;
	p0->ep[0].addr = ep0_choices[flags >> IN_EP_SHIFT];
}

static struct rte_mbuf *mbuf_alloc(void)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(fx.dp.pool);

	require(m, "mbuf pool empty");
	return m;
}

/* One frame in a fresh mbuf (two segments if split). */
static struct rte_mbuf *frame_mbuf(const uint8_t *frame, size_t len, bool split)
{
	struct rte_mbuf *m = mbuf_alloc();
	size_t head = split && len >= 2 ? len / 2 : len;

	memcpy(rte_pktmbuf_append(m, (uint16_t)head), frame, head);
	if (head < len) {
		struct rte_mbuf *tail = mbuf_alloc();
		memcpy(rte_pktmbuf_append(tail, (uint16_t)(len - head)), frame + head, len - head);
		if (rte_pktmbuf_chain(m, tail))
			fail("rte_pktmbuf_chain");
	}
	return m;
}

static const struct fx_peer *peer_by_local_index(uint32_t local_index)
{
	for (uint32_t id = 0; id < N_PEERS; id++)
		if (fx_peers[id].local_index && fx_peers[id].local_index == local_index)
			return &fx_peers[id];
	return NULL;
}

/* IN_SEAL: if f is IPv4/UDP or IPv6/UDP (no extension headers) carrying a
 * data message for one of our keypairs, encrypt its payload in place as
 * that peer would have. Only as much parsing as it takes to find the
 * message: the worker does the rest. */
static void seal_message(uint8_t *wg, size_t len);

static void seal_data(uint8_t *f, size_t len)
{
	const size_t udp_len = sizeof(struct rte_udp_hdr);
	size_t wg, ulen;

	if (len >= DP_OUTER6_LEN && f[12] == 0x86 && f[13] == 0xdd && f[14 + 6] == IPPROTO_UDP)
		wg = DP_OUTER6_LEN;
	else if (len >= DP_OUTER4_LEN && f[12] == 0x08 && f[13] == 0x00)
		wg = sizeof(struct rte_ether_hdr) + (size_t)(f[14] & 0xf) * 4 + udp_len;
	else
		return;
	if (wg < DP_OUTER4_LEN || wg + WG_DATA_OVERHEAD > len)
		return;
	ulen = (size_t)f[wg - 4] << 8 | f[wg - 3];
	if (ulen < udp_len + WG_DATA_OVERHEAD)
		return;
	seal_message(f + wg, RTE_MIN(ulen - udp_len, len - wg));
}

/* The same for a bare WireGuard message of len bytes (IN_DERP). */
static void seal_message(uint8_t *wg, size_t len)
{
	uint8_t key[32], nonce[12];
	unsigned long long tag_len;
	size_t plain_len;

	if (len < WG_DATA_OVERHEAD)
		return;
	struct wg_message_data *h = (struct wg_message_data *)wg;
	const struct fx_peer *fp = peer_by_local_index(rte_le_to_cpu_32(h->key_idx));
	if (h->header.type != WG_MSG_DATA || !fp)
		return;
	plain_len = len - WG_DATA_OVERHEAD;
	memset(key, fp->recv_fill, sizeof(key));
	dp_crypto_nonce(nonce, rte_le_to_cpu_64(h->counter));
	crypto_aead_chacha20poly1305_ietf_encrypt_detached(
	    h->encrypted_data, h->encrypted_data + plain_len, &tag_len, h->encrypted_data,
	    plain_len, NULL, 0, NULL, nonce, key);
}

static const struct fx_peer *peer_by_remote_index(uint32_t remote_index, uint32_t *id)
{
	for (*id = 0; *id < N_PEERS; (*id)++)
		if (fx_peers[*id].local_index && fx_peers[*id].remote_index == remote_index)
			return &fx_peers[*id];
	return NULL;
}

static bool route_lookup(const uint8_t *ip, bool dst, uint32_t *peer)
{
	const struct dp_route_tables *t = dp_routes_active(fx.dp.routes);

	if ((ip[0] >> 4) == 4)
		return dp_route_lookup4(t, dp_rd32be(ip + (dst ? 16 : 12)), peer) == 0;
	return dp_route_lookup6(t, ip + (dst ? 24 : 8), peer) == 0;
}

static const struct rte_ether_addr *wan_nbr(uint32_t ip_be)
{
	if (ip_be == IP4(198, 18, 0, 2))
		return &wan_nbr_mac;
	if (ip_be == IP4(198, 18, 0, 4))
		return &wan_nbr2_mac;
	return NULL;
}

/* The decrypted payload of a sent data message: an IP packet to a
 * destination routed to this very peer, zero padded to less than a block. */
static void check_sealed(const struct wg_message_data *h, uint32_t clen, uint32_t peer)
{
	static uint8_t plain[RTE_MBUF_DEFAULT_DATAROOM];
	uint8_t key[32], nonce[12];
	unsigned long long plen;
	uint32_t to;

	memset(key, fx_peers[peer].send_fill, sizeof(key));
	dp_crypto_nonce(nonce, rte_le_to_cpu_64(h->counter));
	require(clen + WG_AUTHTAG_LEN <= sizeof(plain), "wan tx: too long");
	if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL, h->encrypted_data,
						      clen + WG_AUTHTAG_LEN, NULL, 0, nonce, key))
		fail("wan tx: does not decrypt under the peer's send key");
	require(plen <= MTU, "wan tx: inner packet above the MTU");
	int ilen = dp_inner_len(plain, (uint32_t)plen);
	require(ilen > 0 && plen - (unsigned long long)ilen < WG_PADDING_MULTIPLE,
		"wan tx: bad inner packet");
	for (unsigned long long i = (unsigned long long)ilen; i < plen; i++)
		require(plain[i] == 0, "wan tx: padding not zero");
	require(route_lookup(plain, true, &to) && to == peer,
		"wan tx: inner destination not routed to this peer");
}

static const struct rte_ether_addr *wan_nbr6(const uint8_t *ip)
{
	return memcmp(ip, peer3_ep6, 16) ? NULL : &wan_nbr3_mac;
}

/* The outer IPv4 or IPv6 and UDP headers of a sent data message: from our
 * address and port, to the endpoint ep, through its neighbour. Returns
 * where the WireGuard header starts. */
static uint32_t check_wan_outer(const uint8_t *f, uint32_t len, const struct mg_sockaddr *ep)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)f;
	const struct rte_ether_addr *nbr;
	const struct rte_udp_hdr *udp;

	require(rte_is_same_ether_addr(&eth->src_addr, &wan_mac), "wan tx: bad source MAC");
	if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV6)) {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(eth + 1);
		udp = (const struct rte_udp_hdr *)(ip + 1);
		require(len >= DP_OUTER6_LEN + WG_DATA_OVERHEAD, "wan tx: runt");
		require((rte_be_to_cpu_32(ip->vtc_flow) >> 28) == 6 &&
			    rte_be_to_cpu_16(ip->payload_len) == len - sizeof(*eth) - sizeof(*ip) &&
			    !memcmp(ip->src_addr, wan_ip6, 16) && ip->proto == IPPROTO_UDP,
			"wan tx: bad IPv6 header");
		/* Pseudo-header + datagram, checksum included, sum to all ones. */
		uint32_t sum = (uint32_t)rte_raw_cksum(udp, len - DP_OUTER6_LEN + sizeof(*udp)) +
			       rte_ipv6_phdr_cksum(ip, 0);
		sum = (sum >> 16) + (sum & 0xffff);
		require(udp->dgram_cksum != 0 && sum == 0xffff,
			"wan tx: bad UDP checksum over IPv6");
		require(ep->family == AF_INET6 && !memcmp(ip->dst_addr, ep->addr, 16),
			"wan tx: not sent to the peer's endpoint");
		nbr = wan_nbr6(ip->dst_addr);
	} else {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
		udp = (const struct rte_udp_hdr *)(ip + 1);
		require(len >= DP_OUTER4_LEN + WG_DATA_OVERHEAD, "wan tx: runt");
		require(eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV4), "wan tx: bad ethertype");
		require(ip->version_ihl == RTE_IPV4_VHL_DEF && rte_ipv4_cksum(ip) == 0 &&
			    rte_be_to_cpu_16(ip->total_length) == len - sizeof(*eth) &&
			    ip->src_addr == IP4(198, 18, 0, 1) && ip->next_proto_id == IPPROTO_UDP,
			"wan tx: bad IPv4 header");
		require(ep->family == AF_INET && !memcmp(&ip->dst_addr, ep->addr, 4),
			"wan tx: not sent to the peer's endpoint");
		nbr = wan_nbr(ip->dst_addr);
	}
	uint32_t wg = (uint32_t)((const uint8_t *)(udp + 1) - f);
	require(udp->src_port == rte_cpu_to_be_16(LISTEN) &&
		    rte_be_to_cpu_16(udp->dgram_len) == len - (wg - sizeof(*udp)) &&
		    rte_be_to_cpu_16(udp->dst_port) == ep->port,
		"wan tx: bad UDP header");
	require(nbr && rte_is_same_ether_addr(&eth->dst_addr, nbr), "wan tx: wrong next-hop MAC");
	return wg;
}

/* Where a sent frame's WireGuard header is (by its ethertype). */
static uint32_t wg_offset(const struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	return eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV6) ? DP_OUTER6_LEN : DP_OUTER4_LEN;
}

static void check_wan_tx(const struct rte_mbuf *m)
{
	const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t len = rte_pktmbuf_data_len(m), peer;

	require(m->nb_segs == 1 && m->pkt_len == len, "wan tx: not one segment");
	require(len >= DP_OUTER4_LEN + WG_DATA_OVERHEAD, "wan tx: runt");
	const struct wg_message_data *h = (const struct wg_message_data *)(f + wg_offset(m));
	require(h->header.type == WG_MSG_DATA && !h->header.reserved[0] && !h->header.reserved[1] &&
		    !h->header.reserved[2],
		"wan tx: not a data message");
	require(peer_by_remote_index(rte_le_to_cpu_32(h->key_idx), &peer),
		"wan tx: unknown receiver index");
	/* Only a current, unexpired keypair may send, and only nonces it handed out. */
	const struct dp_keypair *kp = &fx.dp.keypairs[fx_peers[peer].local_index & fx.dp.kp_mask];
	require(fx.dp.peers[peer].kp_cur == (uint32_t)(kp - fx.dp.keypairs) + 1 &&
		    kp->expire_tsc > fx.dp.workers[0].now_tsc &&
		    rte_le_to_cpu_64(h->counter) < kp->send_counter,
		"wan tx: sent on a keypair that is not current, or with a nonce not reserved");
	const struct mg_sockaddr *ep = &fx.dp.peers[peer].ep[fx.dp.peers[peer].ep_idx].addr;
	uint32_t wg = check_wan_outer(f, len, ep);
	require(wg == wg_offset(m), "wan tx: headers of the wrong size");
	check_sealed(h, len - (uint32_t)(wg + WG_DATA_OVERHEAD), peer);
}

/* A decrypted packet: whole, from some peer's allowed IPs, to a neighbour. */
static void check_lan_tx(const struct rte_mbuf *m)
{
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
	const uint8_t *ip = (const uint8_t *)(eth + 1);
	uint32_t len = rte_pktmbuf_data_len(m), peer;

	require(m->nb_segs == 1 && m->pkt_len == len && len > sizeof(*eth), "lan tx: runt");
	require(dp_inner_len(ip, len - sizeof(*eth)) == (int)(len - sizeof(*eth)),
		"lan tx: not one whole IP packet");
	require(rte_is_same_ether_addr(&eth->src_addr, &lan_mac) &&
		    rte_is_same_ether_addr(&eth->dst_addr, &lan_nbr_mac),
		"lan tx: bad MAC addresses");
	require(eth->ether_type ==
		    rte_cpu_to_be_16((ip[0] >> 4) == 4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6),
		"lan tx: ethertype does not match the IP version");
	require(route_lookup(ip, false, &peer) && peer < N_PEERS,
		"lan tx: inner source in no peer's allowed IPs");
}

static bool same_nonce(const struct rte_mbuf *a, const struct rte_mbuf *b)
{
	const struct wg_message_data *ha = rte_pktmbuf_mtod_offset(a, void *, wg_offset(a));
	const struct wg_message_data *hb = rte_pktmbuf_mtod_offset(b, void *, wg_offset(b));

	return ha->key_idx == hb->key_idx && ha->counter == hb->counter;
}

static void check_tx(struct dp_burst *b)
{
	const struct dp_txq *wan = &b->tx[fx.dp.wan], *lan = &b->tx[fx.dp.lan];

	for (uint16_t i = 0; i < wan->n; i++) {
		check_wan_tx(wan->m[i]);
		for (uint16_t j = 0; j < i; j++)
			require(!same_nonce(wan->m[i], wan->m[j]), "wan tx: nonce used twice");
	}
	for (uint16_t i = 0; i < lan->n; i++)
		check_lan_tx(lan->m[i]);
}

static void check_slow(struct rte_mbuf *m)
{
	const struct dp_meta *meta = dp_meta(m);
	uint32_t len = rte_pktmbuf_data_len(m);

	switch (meta->kind) {
	case DP_META_SLOW:
		require(meta->port < fx.dp.n_ports, "slow: bad port");
		return;
	case DP_META_RAW_TX:
		require(meta->port < fx.dp.n_ports && m->nb_segs == 1 &&
			    len >= sizeof(struct rte_ether_hdr),
			"raw tx: bad frame");
		require(meta->nh_family == AF_INET || meta->nh_family == AF_INET6,
			"raw tx: bad next-hop family");
		/* The frame's family is the next hop's (a WAN IPv6 endpoint may
		 * be reached through a link-local gateway6, never via IPv4). */
		require(rte_pktmbuf_mtod(m, const struct rte_ether_hdr *)->ether_type ==
			    rte_cpu_to_be_16(meta->nh_family == AF_INET ? RTE_ETHER_TYPE_IPV4
									: RTE_ETHER_TYPE_IPV6),
			"raw tx: next-hop family does not match the frame");
		return;
	case DP_META_STAGE:
		require(meta->peer < N_PEERS && fx.dp.peers[meta->peer].in_use, "stage: bad peer");
		require(m->nb_segs == 1 &&
			    dp_inner_len(rte_pktmbuf_mtod(m, uint8_t *), len) == (int)len,
			"stage: not one whole IP packet");
		return;
	case DP_META_TOO_BIG:
		require(meta->peer < N_PEERS && fx.dp.peers[meta->peer].in_use, "too big: bad peer");
		require(m->nb_segs == 1 && len > fx.dp.mtu &&
			    dp_inner_len(rte_pktmbuf_mtod(m, uint8_t *), len) == (int)len,
			"too big: not one whole IP packet over the MTU");
		return;
	}
	fail("slow: unknown metadata kind");
}

/* Hand back everything the worker gave the main lcore or control. */
static void drain(struct dp_ctx *dp)
{
	static struct mg_msg msg;
	struct dp_event ev;
	struct rte_mbuf *m;

	while (rte_ring_dequeue(dp->slow, (void **)&m) == 0) {
		check_slow(m);
		rte_pktmbuf_free(m);
	}
	while (rte_ring_dequeue_elem(dp->events, &ev, sizeof(ev)) == 0)
		require((ev.type == DP_EV_CONFIRM || ev.type == DP_EV_ROAM) && ev.peer < N_PEERS,
			"bad event");
	/* Every flow due (and idle ones forgotten): its records must describe
	 * what a worker forwards. */
	struct mg_flow_record r;
	dp_flowlog_sweep(dp->workers[0].flowlog, 64, rte_rdtsc() + 120 * rte_get_tsc_hz());
	while (rte_ring_dequeue_elem(mg_shm_flow_ring(&dp->shm, 0), &r, sizeof(r)) == 0)
		require(r.peer < N_PEERS && (r.dir == MG_FLOW_RX || r.dir == MG_FLOW_TX) &&
			    (r.family == AF_INET || r.family == AF_INET6) && r.packets > 0 &&
			    r.bytes >= 20 * r.packets && r.first_tsc <= r.last_tsc,
			"bad flow record");
	while (mg_ring_recv(dp->shm.dp2cp, &msg) == 0)
		require(msg.hdr.type == MG_MSG_RX_UDP && msg.hdr.port == dp->wan &&
			    (msg.hdr.ep.family == AF_INET || msg.hdr.ep.family == AF_INET6) &&
			    ((msg.hdr.len >= 4 && msg.data[0] >= WG_MSG_HANDSHAKE_INITIATION &&
			      msg.data[0] <= WG_MSG_HANDSHAKE_COOKIE) ||
			     mg_stun_is(msg.data, msg.hdr.len) || mg_disco_is(msg.data, msg.hdr.len)),
			"bad punt");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* What fits in one mbuf's data room; the rest is cut off. */
	static uint8_t frame[RTE_MBUF_DEFAULT_DATAROOM];
	struct dp_ctx *dp = &fx.dp;
	struct dp_worker *w = &dp->workers[0];
	struct rte_mbuf *m[4];
	uint16_t n;

	setup();
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	bool derp = (flags & IN_DERP) == IN_DERP;
	size_t len = RTE_MIN(size - 1, sizeof(frame));
	memcpy(frame, data + 1, len);
	if ((flags & IN_DERP) == IN_SEAL)
		seal_data(frame, len);
	else if (derp)
		seal_message(frame, len);
	state_reset(dp, flags);
	n = flags & IN_BURST ? RTE_DIM(m) : 1;
	for (uint16_t i = 0; i < n; i++) {
		m[i] = frame_mbuf(frame, len, flags & IN_SPLIT);
		if (derp) /* as the main lcore hands it over: region 1 */
			*dp_meta(m[i]) = (struct dp_meta){.kind = DP_META_DERP_IN, .peer = 1};
	}
	w->now_tsc = rte_rdtsc();
	if (derp)
		dp_derp_input(w, &fx.burst, m, n);
	else if (flags & IN_LAN)
		dp_lan_input(w, &fx.burst, dp->lan, m, n);
	else
		dp_wan_input(w, &fx.burst, dp->wan, m, n);
	check_tx(&fx.burst);
	dp_tx_flush(w, &fx.burst);
	drain(dp);
	rte_rcu_qsbr_quiescent(dp->rcu, w->idx);
	if (rte_mempool_in_use_count(dp->pool) != fx.baseline)
		fail("mbuf leaked or freed twice");
	return 0;
}
