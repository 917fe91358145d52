// SPDX-License-Identifier: MIT
/*
 * The control process's device model and dataplane link at hub scale,
 * against a shared-memory region made here (mg_shm_create, no EAL) that
 * this test drains as a fake dataplane would:
 *
 *   - peers: 20,000 created, every third removed, new ones take the lowest
 *     free slots; each found by key; pointers stay put;
 *   - the full sync of 20,000 peers through a ring of 4,096 entries that
 *     the fake dataplane drains slowly: SYNC_BEGIN first, each peer's
 *     PEER_SET (with its key) and ALLOWEDIPS exactly once, SYNC_END last,
 *     no message lost to a full ring;
 *   - a restarted control process adopts the dataplane's slots by key (the
 *     region lists the peers in another order than the config);
 *   - a handshake being retried on a high slot is retransmitted by the
 *     next timer tick (the fast list), not only when the sweep gets there.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "cp.h"
#include "keys.h"
#include "test_util.h"

#define NPEERS	  20000u
#define MAX_PEERS 32768u

static char name[32];
static uint8_t keys[NPEERS][32];

static void device(struct cp_device *d, struct mg_config *cfg, const char *peers)
{
	char text[1024 + 64], err[512];
	uint8_t sk[32], pk[32];

	snprintf(text, sizeof(text),
		 "meshgate: { name = \"%s\"; max_peers = %u; };\n"
		 "dataplane: { ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";"
		 " addresses = [\"198.18.0.1/24\"]; } ); };\n%s",
		 name, MAX_PEERS, peers ? peers : "");
	if (mg_config_load_string(text, "t", 0, cfg, err, sizeof(err)) || cp_device_init(d, cfg)) {
		fprintf(stderr, "device: %s\n", err);
		exit(2);
	}
	crypto_box_keypair(pk, sk);
	cp_device_set_private_key(d, sk);
	sodium_memzero(sk, sizeof(sk));
}

static struct cp_peer *add(struct cp_device *d, uint32_t i)
{
	int err;
	struct cp_peer *p = cp_peer_create(d, keys[i], &err);
	if (p) {
		struct mg_prefix pfx = {.family = AF_INET, .cidr = 32};
		uint32_t a = htonl(0x0a400000u + i);
		memcpy(pfx.addr, &a, 4);
		cp_peer_aip_add(d, p, &pfx);
	}
	return p;
}

static void test_slots(void)
{
	struct mg_config cfg;
	struct cp_device d;
	static struct cp_peer *ptr[NPEERS];
	unsigned bad = 0;

	printf("-- slots and the peer pool\n");
	device(&d, &cfg, NULL);
	for (uint32_t i = 0; i < NPEERS; i++) {
		ptr[i] = add(&d, i);
		bad += !ptr[i] || ptr[i]->slot != i;
	}
	CHECK(bad == 0 && d.n_peers == NPEERS, "%u peers in slots 0..%u", d.n_peers, NPEERS - 1);
	for (uint32_t i = 0; i < NPEERS; i += 3)
		cp_peer_remove(&d, ptr[i]);
	bad = 0;
	for (uint32_t i = 0; i < NPEERS; i++)
		bad += (i % 3 == 0) != (cp_peer_find(&d, keys[i]) == NULL) ||
		       (i % 3 && cp_peer_find(&d, keys[i]) != ptr[i]);
	CHECK(bad == 0, "every third removed; the others found by key, where they were");
	bad = 0;
	for (uint32_t i = 0; i < NPEERS; i += 3) {
		keys[i][0] ^= 0x80; /* a new key */
		struct cp_peer *p = add(&d, i);
		bad += !p || p->slot != i; /* the lowest free slot, in order */
	}
	CHECK(bad == 0 && d.n_peers == NPEERS, "new peers take the freed slots, lowest first");
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

/* What the fake dataplane saw of a sync. */
struct seen {
	unsigned begin, end, peer_set, aips, other, order_bad;
	unsigned char *set_count, *aip_count;
};

/* Drains at most n messages; returns how many. */
static unsigned drain(struct mg_shm *s, struct seen *v, unsigned n, const struct cp_device *d)
{
	static struct mg_msg m[64];
	unsigned got = 0;

	while (got < n) {
		unsigned k = mg_ring_recv_burst(s->cp2dp, m, n - got < 64 ? n - got : 64);
		if (!k)
			break;
		for (unsigned i = 0; i < k; i++) {
			uint32_t slot = m[i].hdr.peer;
			switch (m[i].hdr.type) {
			case MG_MSG_SYNC_BEGIN:
				v->begin++;
				v->order_bad += v->peer_set != 0;
				break;
			case MG_MSG_SYNC_END:
				v->end++;
				break;
			case MG_MSG_PEER_SET: {
				const struct mg_msg_peer *pm = (const void *)m[i].data;
				struct cp_peer *p = slot < MAX_PEERS ? d->by_slot[slot] : NULL;
				v->peer_set++;
				v->order_bad += !v->begin || v->end;
				if (p && !memcmp(pm->public_key, p->noise.public_key, 32))
					v->set_count[slot]++;
				else
					v->other++;
				break;
			}
			case MG_MSG_ALLOWEDIPS:
				v->aips++;
				if (slot < MAX_PEERS)
					v->aip_count[slot]++;
				break;
			default:
				break;
			}
		}
		got += k;
	}
	return got;
}

static void test_sync_and_adopt(void)
{
	struct mg_config cfg;
	struct cp_device d;
	struct mg_shm s;
	struct seen v = {0};

	printf("-- a full sync through the ring, in steps\n");
	int rc = mg_shm_create(&s, name, MAX_PEERS, 2);
	CHECK(rc == 0, "fake dataplane region: %d", rc);
	if (rc)
		return;
	device(&d, &cfg, NULL);
	for (uint32_t i = 0; i < NPEERS; i++)
		add(&d, i);
	v.set_count = calloc(MAX_PEERS, 1);
	v.aip_count = calloc(MAX_PEERS, 1);
	cp_dp_maintain(&d); /* attach: the sync starts */
	CHECK(d.attached, "attached");
	unsigned rounds = 0;
	while (!v.end && rounds++ < 100000) {
		cp_dp_poll(&d); /* a sync step */
		drain(&s, &v, 300, &d);
	}
	unsigned once = 0, aips_once = 0;
	for (uint32_t i = 0; i < NPEERS; i++) {
		once += v.set_count[i] == 1;
		aips_once += v.aip_count[i] == 1;
	}
	CHECK(v.begin == 1 && v.end == 1 && v.order_bad == 0,
	      "SYNC_BEGIN, peers, SYNC_END in order (%u rounds of 300)", rounds);
	CHECK(once == NPEERS && aips_once == NPEERS && v.other == 0,
	      "each of %u peers sent once with its key and its allowed IPs (%u, %u)", NPEERS, once,
	      aips_once);
	CHECK(d.cp2dp_full == 0 && !d.resync && !d.syncing, "nothing lost to a full ring");

	/* The dataplane lists the peers in its slots; control restarts with a
	 * config that names them in another order. */
	printf("-- a restarted control process adopts the dataplane's slots\n");
	for (uint32_t i = 0; i < NPEERS; i++) {
		uint32_t slot = (i * 7919u) % MAX_PEERS; /* a permutation of some slots */
		s.peers[slot].in_use = 1;
		memcpy(s.peers[slot].public_key, keys[i], 32);
		s.peers[slot].kp_cur = (slot * MG_KP_PER_PEER) | 0x1000000u;
	}
	cp_device_fini(&d);
	mg_config_free(&cfg);
	device(&d, &cfg, NULL);
	for (uint32_t i = NPEERS; i-- > 0;)
		add(&d, i);
	struct cp_peer *extra = NULL;
	keys[0][1] ^= 0x55;
	extra = add(&d, 0); /* a peer the dataplane does not know */
	keys[0][1] ^= 0x55;
	cp_dp_maintain(&d);
	unsigned right = 0;
	for (uint32_t i = 0; i < NPEERS; i++) {
		uint32_t slot = (i * 7919u) % MAX_PEERS;
		struct cp_peer *p = cp_peer_find(&d, keys[i]);
		right += p && p->slot == slot && d.by_slot[slot] == p &&
			 p->kp_cur == s.peers[slot].kp_cur;
	}
	CHECK(right == NPEERS, "%u of %u peers adopted in their dataplane slots, keypairs too",
	      right, NPEERS);
	CHECK(extra && extra->slot < MAX_PEERS && !s.peers[extra->slot].in_use &&
		  d.by_slot[extra->slot] == extra,
	      "the new peer got a slot no dataplane peer holds (%u)", extra ? extra->slot : 0);

	/* A handshake being retried on a high slot: the next tick resends it. */
	printf("-- timers: a retried handshake is checked every tick\n");
	while (drain(&s, &v, 1000, &d) || d.syncing || d.resync)
		cp_dp_poll(&d);
	struct cp_peer *hi = d.by_slot[(uint32_t)((NPEERS - 1) * 7919u) % MAX_PEERS];
	hi->endpoint =
	    (struct mg_sockaddr){.family = AF_INET, .port = 51820, .addr = {198, 18, 0, 2}};
	cp_hs_initiate(&d, hi, false);
	unsigned before = 0, after = 0;
	struct mg_msg m;
	while (mg_ring_recv_burst(s.cp2dp, &m, 1))
		before += m.hdr.type == MG_MSG_TX_UDP;
	hi->hs_last_sent_ns -= d.t.rekey_timeout + 1000000000ull;
	cp_timers_tick(&d);
	while (mg_ring_recv_burst(s.cp2dp, &m, 1))
		after += m.hdr.type == MG_MSG_TX_UDP;
	CHECK(before == 1 && after == 1 && hi->hs_wanted,
	      "initiation sent, then retransmitted by the next tick (slot %u)", hi->slot);

	cp_device_fini(&d);
	mg_config_free(&cfg);
	mg_shm_destroy(&s);
	free(v.set_count);
	free(v.aip_count);
}

int main(void)
{
	if (sodium_init() < 0)
		return 2;
	snprintf(name, sizeof(name), "tdev%d", (int)getpid());
	for (uint32_t i = 0; i < NPEERS; i++)
		crypto_scalarmult_base(keys[i],
				       (const uint8_t[32]){8, (uint8_t)i, (uint8_t)(i >> 8), 7});
	test_slots();
	test_sync_and_adopt();
	return test_finish("test_device");
}
