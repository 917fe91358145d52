/* SPDX-License-Identifier: MIT */
/*
 * The workers' flow tables (flowlog.c) on a test clock:
 *   - the flow key: TCP/UDP ports, ICMP type and code, a later fragment
 *     under ports 0, IPv6; what is not an IP packet is not counted;
 *   - one record per flow and interval, with the packets, bytes and times
 *     since the last; none for a flow without new packets; idle flows
 *     forgotten, and a flow seen again after that starts anew;
 *   - a differential run against a naive table: random packets of random
 *     flows over random times, everything recorded at the end (as at exit)
 *     adds up per flow to what the reference counted;
 *   - a full table counts the packets it cannot track; a full ring counts
 *     the records it cannot take; neither loses the others.
 */
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "flowlog.h"
#include "test_util.h"

#define HZ 1000000000ull /* the test clock: TSC = ns */

/* An IPv4 packet of len bytes (>= 28) from 10.0.0.s to 10.0.1.d. */
static uint16_t ip4(uint8_t *p, uint16_t len, uint8_t proto, uint8_t s, uint8_t d, uint16_t sport,
		    uint16_t dport, uint16_t frag)
{
	memset(p, 0, len);
	p[0] = 0x45;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	p[6] = (uint8_t)(frag >> 8);
	p[7] = (uint8_t)frag;
	p[8] = 64;
	p[9] = proto;
	p[12] = 10, p[15] = s;
	p[16] = 10, p[18] = 1, p[19] = d;
	p[20] = (uint8_t)(sport >> 8), p[21] = (uint8_t)sport;
	p[22] = (uint8_t)(dport >> 8), p[23] = (uint8_t)dport;
	return len;
}

static uint16_t ip6_udp(uint8_t *p, uint16_t len, uint16_t sport, uint16_t dport)
{
	memset(p, 0, len);
	p[0] = 0x60;
	p[4] = (uint8_t)((len - 40) >> 8);
	p[5] = (uint8_t)(len - 40);
	p[6] = IPPROTO_UDP;
	p[7] = 64;
	p[8] = 0xfd, p[23] = 1;
	p[24] = 0xfd, p[39] = 2;
	p[40] = (uint8_t)(sport >> 8), p[41] = (uint8_t)sport;
	p[42] = (uint8_t)(dport >> 8), p[43] = (uint8_t)dport;
	return len;
}

static unsigned drain(struct rte_ring *r, struct mg_flow_record *out, unsigned max)
{
	return rte_ring_dequeue_burst_elem(r, out, sizeof(*out), max, NULL);
}

static struct rte_ring *ring(const char *name, unsigned size)
{
	struct rte_ring *r = rte_ring_create_elem(name, sizeof(struct mg_flow_record), size,
						  SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (!r) {
		fprintf(stderr, "ring %s: %s\n", name, rte_strerror(rte_errno));
		exit(2);
	}
	return r;
}

static void test_records(void)
{
	struct rte_ring *r = ring("t1", 1024);
	struct dp_flowlog *f = dp_flowlog_create("f1", 1024, 10 * HZ, 60 * HZ, r, SOCKET_ID_ANY);
	struct mg_flow_record rec[16];
	struct dp_flowlog_counts c;
	uint8_t p[1500];

	printf("-- records\n");
	CHECK(f, "created");
	if (!f)
		exit(1);
	dp_flowlog_note(f, MG_FLOW_TX, 1, p, ip4(p, 100, IPPROTO_TCP, 1, 2, 40000, 443, 0), HZ);
	dp_flowlog_note(f, MG_FLOW_TX, 1, p, ip4(p, 200, IPPROTO_TCP, 1, 2, 40000, 443, 0), 2 * HZ);
	dp_flowlog_note(f, MG_FLOW_TX, 1, p, ip4(p, 300, IPPROTO_TCP, 1, 2, 40000, 443, 0), 3 * HZ);
	dp_flowlog_note(f, MG_FLOW_RX, 2, p, ip6_udp(p, 80, 53, 5353), 4 * HZ);
	dp_flowlog_note(f, MG_FLOW_RX, 2, p, ip4(p, 84, IPPROTO_ICMP, 3, 4, 0x0800, 0x1234, 0),
			4 * HZ);
	/* Second fragment: no ports, though its payload looks like some. */
	dp_flowlog_note(f, MG_FLOW_RX, 2, p, ip4(p, 60, IPPROTO_UDP, 3, 4, 7, 7, 185), 4 * HZ);
	p[0] = 0x20; /* not IP */
	dp_flowlog_note(f, MG_FLOW_RX, 2, p, 60, 4 * HZ);
	dp_flowlog_counts(f, &c);
	CHECK(c.flows == 4, "4 flows tracked (%" PRIu64 "); the non-IP packet is none", c.flows);

	dp_flowlog_sweep(f, 100, 9 * HZ);
	CHECK(drain(r, rec, 16) == 0, "no record before the interval");
	dp_flowlog_sweep(f, 100, 11 * HZ);
	unsigned n = drain(r, rec, 16);
	CHECK(n == 1, "at 11 s the TCP flow's record (%u)", n);
	CHECK(n >= 1 && rec[0].dir == MG_FLOW_TX && rec[0].peer == 1 && rec[0].family == AF_INET &&
		  rec[0].proto == IPPROTO_TCP && rec[0].sport == 40000 && rec[0].dport == 443 &&
		  !memcmp(rec[0].src, "\x0a\x00\x00\x01", 4) &&
		  !memcmp(rec[0].dst, "\x0a\x00\x01\x02", 4) && rec[0].packets == 3 &&
		  rec[0].bytes == 600 && rec[0].first_tsc == HZ && rec[0].last_tsc == 3 * HZ,
	      "TCP: tx, peer 1, 10.0.0.1:40000 -> 10.0.1.2:443, 3 packets, 600 bytes, 1-3 s");
	dp_flowlog_sweep(f, 100, 14 * HZ);
	n = drain(r, rec, 16);
	CHECK(n == 3, "at 14 s the three flows of 4 s (%u)", n);
	bool udp6 = false, icmp = false, frag = false;
	for (unsigned i = 0; i < n; i++) {
		udp6 |= rec[i].family == AF_INET6 && rec[i].proto == IPPROTO_UDP &&
			rec[i].sport == 53 && rec[i].dport == 5353 && rec[i].src[0] == 0xfd &&
			rec[i].dst[15] == 2 && rec[i].bytes == 80;
		icmp |= rec[i].proto == IPPROTO_ICMP && rec[i].sport == 8 && rec[i].dport == 0 &&
			rec[i].packets == 1;
		frag |= rec[i].proto == IPPROTO_UDP && rec[i].family == AF_INET && !rec[i].sport &&
			!rec[i].dport && rec[i].bytes == 60;
	}
	CHECK(udp6, "IPv6 UDP [fd00::1]:53 -> [fd00::2]:5353");
	CHECK(icmp, "ICMP: echo request as type 8, code 0");
	CHECK(frag, "a later fragment: ports 0");
	dp_flowlog_sweep(f, 100, 30 * HZ);
	CHECK(drain(r, rec, 16) == 0, "no new packets: no record");

	dp_flowlog_note(f, MG_FLOW_TX, 1, p, ip4(p, 100, IPPROTO_TCP, 1, 2, 40000, 443, 0),
			31 * HZ);
	dp_flowlog_sweep(f, 100, 32 * HZ);
	n = drain(r, rec, 16);
	CHECK(n == 1 && rec[0].packets == 1 && rec[0].first_tsc == 31 * HZ,
	      "a packet at 31 s, 20 s after the last record: recorded at once, alone (%u)", n);
	dp_flowlog_note(f, MG_FLOW_TX, 1, p, ip4(p, 100, IPPROTO_TCP, 1, 2, 40000, 443, 0),
			33 * HZ);
	dp_flowlog_sweep(f, 100, 41 * HZ);
	CHECK(drain(r, rec, 16) == 0, "another at 33 s: not before 10 s after that record");
	dp_flowlog_sweep(f, 100, 42 * HZ);
	n = drain(r, rec, 16);
	CHECK(n == 1 && rec[0].packets == 1 && rec[0].first_tsc == 33 * HZ, "at 42 s (%u)", n);
	dp_flowlog_sweep(f, 100, 75 * HZ);
	dp_flowlog_counts(f, &c);
	CHECK(c.flows == 1,
	      "idle a minute: the flows of 4 s forgotten, not the TCP one (%" PRIu64 ")", c.flows);
	dp_flowlog_sweep(f, 100, 102 * HZ);
	dp_flowlog_counts(f, &c);
	CHECK(c.flows == 0 && c.records == 6 && c.ring_full == 0 && c.untracked == 0,
	      "and then that one: %" PRIu64 " flows, %" PRIu64 " records", c.flows, c.records);
	dp_flowlog_note(f, MG_FLOW_RX, 2, p, ip6_udp(p, 80, 53, 5353), 103 * HZ);
	CHECK(dp_flowlog_flush(f, 103 * HZ) == 0, "flushed at exit");
	n = drain(r, rec, 16);
	CHECK(n == 1 && rec[0].packets == 1 && rec[0].first_tsc == 103 * HZ,
	      "a forgotten flow seen again starts anew; everything recorded at exit");
	dp_flowlog_free(f);
	rte_ring_free(r);
}

/* The naive reference: a list of keys and totals. */
struct ref_flow {
	uint8_t dir, s, d, proto;
	uint32_t peer;
	uint16_t sport, dport;
	uint64_t packets, bytes;
};

static void test_differential(void)
{
	enum { N_FLOWS = 300, N_PKTS = 200000 };
	struct rte_ring *r = ring("t2", 1 << 16);
	struct dp_flowlog *f = dp_flowlog_create("f2", 4096, 2 * HZ, 5 * HZ, r, SOCKET_ID_ANY);
	static struct ref_flow ref[N_FLOWS];
	static uint64_t got_p[N_FLOWS], got_b[N_FLOWS];
	struct mg_flow_record rec[256];
	uint8_t p[1500];
	uint64_t now = HZ;
	unsigned seed = 7, records = 0, bad = 0;

	printf("-- differential: %d packets of %d flows against a naive table\n", N_PKTS, N_FLOWS);
	if (!f)
		exit(1);
	for (int i = 0; i < N_FLOWS; i++)
		ref[i] = (struct ref_flow){.dir = (uint8_t)(i & 1),
					   .peer = (uint32_t)(i % 7),
					   .s = (uint8_t)(i % 11),
					   .d = (uint8_t)(i % 13),
					   .proto = i % 3 ? IPPROTO_TCP : IPPROTO_UDP,
					   .sport = (uint16_t)(1000 + i),
					   .dport = (uint16_t)(i % 5)};
	for (int k = 0; k < N_PKTS; k++) {
		/* Bursts of one flow, as a NIC queue hands them over. */
		int i = rand_r(&seed) % N_FLOWS, run = 1 + rand_r(&seed) % 8;
		for (int j = 0; j < run && k < N_PKTS; j++, k++) {
			uint16_t len = (uint16_t)(28 + rand_r(&seed) % 1400);
			struct ref_flow *x = &ref[i];
			dp_flowlog_note(f, x->dir, x->peer, p,
					ip4(p, len, x->proto, x->s, x->d, x->sport, x->dport, 0),
					now);
			x->packets++;
			x->bytes += len;
		}
		now += (uint64_t)(rand_r(&seed) % 200000); /* up to 0.2 ms */
		dp_flowlog_sweep(f, 8, now);
		unsigned n = drain(r, rec, 256);
		for (unsigned m = 0; m < n; m++) {
			int id = (int)(rec[m].sport - 1000);
			if (id < 0 || id >= N_FLOWS || rec[m].dport != ref[id].dport ||
			    rec[m].peer != ref[id].peer || rec[m].dir != ref[id].dir ||
			    rec[m].src[3] != ref[id].s || rec[m].dst[3] != ref[id].d) {
				bad++;
				continue;
			}
			got_p[id] += rec[m].packets;
			got_b[id] += rec[m].bytes;
		}
		records += n;
	}
	CHECK(dp_flowlog_flush(f, now) == 0, "everything recorded at exit");
	unsigned n;
	while ((n = drain(r, rec, 256))) {
		for (unsigned m = 0; m < n; m++) {
			int id = (int)(rec[m].sport - 1000);
			if (id < 0 || id >= N_FLOWS) {
				bad++;
				continue;
			}
			got_p[id] += rec[m].packets;
			got_b[id] += rec[m].bytes;
		}
		records += n;
	}
	unsigned mismatched = 0;
	for (int i = 0; i < N_FLOWS; i++)
		mismatched += got_p[i] != ref[i].packets || got_b[i] != ref[i].bytes;
	struct dp_flowlog_counts c;
	dp_flowlog_counts(f, &c);
	CHECK(bad == 0 && mismatched == 0,
	      "every flow's records add up to the reference (%u records over %.1f s; %u "
	      "misattributed, %u flows off)",
	      records, (double)now / HZ, bad, mismatched);
	CHECK(records > N_FLOWS, "flows were recorded more than once along the way (%u)", records);
	CHECK(c.ring_full == 0 && c.untracked == 0, "the ring never full, nothing untracked");
	dp_flowlog_free(f);
	rte_ring_free(r);
}

static void test_full(void)
{
	struct rte_ring *r = ring("t3", 64);
	struct dp_flowlog *f = dp_flowlog_create("f3", 1024, HZ, 60 * HZ, r, SOCKET_ID_ANY);
	struct dp_flowlog_counts c;
	struct mg_flow_record rec[64];
	uint8_t p[100];
	uint64_t tracked_pkts = 0;

	printf("-- a full table, a full ring\n");
	if (!f)
		exit(1);
	for (int i = 0; i < 3000; i++)
		dp_flowlog_note(f, MG_FLOW_TX, 0, p,
				ip4(p, 100, IPPROTO_UDP, 1, 2, (uint16_t)i, 9, 0), HZ);
	dp_flowlog_counts(f, &c);
	tracked_pkts = c.flows;
	CHECK(c.flows >= 1024 && c.flows < 3000 && c.untracked == 3000 - c.flows,
	      "%" PRIu64 " flows tracked, the packets of the rest counted (%" PRIu64 ")", c.flows,
	      c.untracked);
	dp_flowlog_sweep(f, 100000, 3 * HZ);
	unsigned n = drain(r, rec, 64);
	dp_flowlog_counts(f, &c);
	CHECK(n == 63 && c.records == 63 && c.ring_full == 1,
	      "a ring of 63 took 63 records, and the sweep stopped there (%" PRIu64 ")",
	      c.ring_full);
	/* Control drains, the sweeps go on: every flow's packet comes out. */
	uint64_t total = n;
	for (int k = 0; k < 100 && total < tracked_pkts; k++) {
		dp_flowlog_sweep(f, 100000, 3 * HZ);
		while ((n = drain(r, rec, 64)))
			total += n;
	}
	CHECK(total == tracked_pkts, "the records that waited came later: %" PRIu64 " of %" PRIu64,
	      total, tracked_pkts);
	dp_flowlog_note(f, MG_FLOW_TX, 0, p, ip4(p, 100, IPPROTO_UDP, 1, 2, 0, 9, 0), 4 * HZ);
	for (int i = 0; i < 100; i++) /* the ring full again, at exit */
		dp_flowlog_note(f, MG_FLOW_TX, 0, p,
				ip4(p, 100, IPPROTO_UDP, 1, 2, (uint16_t)i, 9, 0), 4 * HZ);
	uint64_t left = dp_flowlog_flush(f, 5 * HZ);
	CHECK(left == 100 - 63, "at exit: 63 flushed, %" PRIu64 " left for the next try", left);
	while (drain(r, rec, 64))
		;
	CHECK(dp_flowlog_flush(f, 5 * HZ) == 0, "and none after control drained the ring");
	dp_flowlog_free(f);
	rte_ring_free(r);
}

int main(int argc, char **argv)
{
	char prefix[64];
	char *eal_argv[] = {argv[0],
			    "--no-huge",
			    "-m",
			    "128",
			    "--no-pci",
			    "--no-shconf",
			    "--no-telemetry",
			    prefix,
			    "--log-level=*:warning",
			    "-l",
			    "0",
			    NULL};

	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(prefix, sizeof(prefix), "--file-prefix=flowtest%d", (int)getpid());
	if (rte_eal_init(RTE_DIM(eal_argv) - 1, eal_argv) < 0) {
		fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 2;
	}
	test_records();
	test_differential();
	test_full();
	rte_eal_cleanup();
	return test_finish("test_flowlog");
}
