// SPDX-License-Identifier: MIT
/*
 * /metrics page tests, without a dataplane process: a shared-memory region
 * made here (mg_shm_create, no EAL), counters written into it by hand, a
 * fake device for the control-side snapshot. Checks the sums over lcore
 * slots, label escaping, every drop reason, the families' HELP/TYPE lines,
 * and the page of a gateway whose dataplane is away. The HTTP side is
 * tested end to end by tests/netns/test_mg_metrics.sh.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keys.h"
#include "metrics.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* Whether the page has exactly this line. */
static bool has_line(const char *page, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = page; (p = strstr(p, line)); p++)
		if ((p == page || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* The name below as a label value: quote, backslash, newline escaped,
 * control bytes and invalid UTF-8 as '?', valid UTF-8 kept. */
#define NAME	 "a\"b\\c\nd\x01z\xc3\xa9\xff"
#define NAME_ESC "a\\\"b\\\\c\\nd?z\xc3\xa9?"

static void want_peer(const char *page, const char *family, const char *key, const char *name,
		      const char *value)
{
	char line[512];
	if (name)
		snprintf(line, sizeof(line), "%s{public_key=\"%s\",name=\"%s\"} %s", family, key,
			 name, value);
	else
		snprintf(line, sizeof(line), "%s{public_key=\"%s\"} %s", family, key, value);
	CHECK(has_line(page, line), "want %s in\n%s", line, page);
}

static char *render(struct cp_metrics *m)
{
	char *page = NULL;
	size_t len = 0;
	int rc = cp_metrics_render(m, &page, &len);
	CHECK(rc == 0 && page && strlen(page) == len, "render: %d", rc);
	return page;
}

/* Every sample's family has HELP and TYPE lines before it. */
static void check_families(const char *page)
{
	char fam[128], want[160];
	for (const char *l = page; *l; l = strchr(l, '\n') + 1) {
		size_t n = strcspn(l, "{ ");
		if (*l == '#')
			continue;
		snprintf(fam, sizeof(fam), "%.*s", (int)n, l);
		snprintf(want, sizeof(want), "# TYPE %s ", fam);
		const char *t = strstr(page, want);
		CHECK(t && t < l, "no TYPE before %s", fam);
	}
}

static struct cp_peer *fake_peer(uint32_t slot, const char *name, uint8_t fill)
{
	struct cp_peer *p = calloc(1, sizeof(*p));
	p->slot = slot;
	snprintf(p->name, sizeof(p->name), "%s", name);
	memset(p->noise.public_key, fill, 32);
	p->last_handshake_real_ns = 1700000000123456789ull;
	return p;
}

int main(void)
{
	struct mg_config cfg = {0};
	struct cp_device d = {0};
	struct mg_shm s;
	char line[512], key[45];

	snprintf(cfg.name, sizeof(cfg.name), "mgtm%d", (int)getpid() % 100000);
	cfg.metrics_listen.family = AF_INET;
	cfg.metrics_listen.port = 0; /* any free port: only the renderer is tested */
	inet_pton(AF_INET, "127.0.0.1", cfg.metrics_listen.addr);
	struct cp_metrics *m = cp_metrics_start(&cfg);
	CHECK(m, "cp_metrics_start");
	if (!m)
		return 1;

	/* No dataplane yet: a valid page that says so. */
	char *page = render(m);
	CHECK(has_line(page, "meshgate_dataplane_up 0"), "down:\n%s", page);
	CHECK(!strstr(page, "meshgate_dropped_packets_total"), "drops without dataplane");
	check_families(page);
	free(page);

	int rc = mg_shm_create(&s, cfg.name, 8, 3);
	CHECK(rc == 0, "mg_shm_create: %d", rc);
	if (rc)
		return 1;
	s.peers[1].in_use = 1;
	memset(s.peers[1].public_key, 0x11, 32);
	s.peers[5].in_use = 1;
	memset(s.peers[5].public_key, 0x55, 32);
	for (unsigned i = 0; i < 3; i++) {
		mg_shm_stats(&s, i, 1)->rx_packets = i + 1;	  /* 6 */
		mg_shm_stats(&s, i, 1)->rx_bytes = 100 * (i + 1); /* 600 */
		mg_shm_stats(&s, i, 5)->tx_packets = 7;		  /* 21 */
	}
	mg_shm_drops(&s, 0)[MG_DROP_REPLAY] = 5;
	mg_shm_drops(&s, MG_MAX_LCORES - 1)[MG_DROP_REPLAY] = 7;
	s.hdr->n_ports = 1;
	snprintf(s.ports[0].name, sizeof(s.ports[0].name), "wan\"0");
	s.ports[0].rx_packets = 9;
	/* Two workers on lcores 1 and 3; the other slots unused. */
	s.hdr->tsc_hz = 2000000000ull;
	s.workers[0] = (struct mg_worker_export){.lcore = 1,
						 .in_use = 1,
						 .busy_tsc = 3000000000ull,
						 .crypto_tsc = 2000000000ull,
						 .polls = 77,
						 .rx_packets = 1000,
						 .idle_sleeps = 5,
						 .flows = 42,
						 .flow_ring_full = 2};
	s.workers[1] = (struct mg_worker_export){.lcore = 3, .in_use = 1, .busy_tsc = 1000000};

	/* Control knows slot 1 by a name that needs escaping; slot 5 has none. */
	d.max_peers = 8;
	d.by_slot = calloc(8, sizeof(*d.by_slot));
	d.by_slot[1] = fake_peer(1, NAME, 0x11);
	d.by_slot[5] = fake_peer(5, "", 0x55);
	d.n_peers = 2;
	d.handshakes_done = 3;
	d.initiations_sent = 4;
	d.cp2dp_full = 2;
	d.stun_sent = 6;
	d.stun_accepted = 3;
	d.stun_refused = 1;
	d.stun_endpoints = 1;
	d.behind_nat = true;
	cp_metrics_update(m, &d);

	page = render(m);
	CHECK(has_line(page, "meshgate_dataplane_up 1"), "up");
	CHECK(has_line(page, "meshgate_peers 2"), "peers");
	mg_key_to_base64(s.peers[1].public_key, key);
	want_peer(page, "meshgate_inbound_packets_total", key, NAME_ESC, "6");
	want_peer(page, "meshgate_inbound_bytes_total", key, NAME_ESC, "600");
	want_peer(page, "meshgate_peer_last_handshake_timestamp_seconds", key, NAME_ESC,
		  "1700000000.123");
	mg_key_to_base64(s.peers[5].public_key, key);
	want_peer(page, "meshgate_outbound_packets_total", key, NULL, "21");
	CHECK(has_line(page, "meshgate_dropped_packets_total{reason=\"replay\"} 12"), "replay");
	for (int r = 0; r < MG_DROP_MAX; r++) {
		snprintf(line, sizeof(line), "meshgate_dropped_packets_total{reason=\"%s\"} ",
			 mg_drop_names[r]);
		CHECK(strstr(page, line), "no drop reason %s", mg_drop_names[r]);
	}
	CHECK(has_line(page, "meshgate_port_rx_packets_total{port=\"wan\\\"0\",role=\"wan\"} 9"),
	      "port");
	CHECK(
	    has_line(page, "meshgate_worker_busy_seconds_total{worker=\"0\",lcore=\"1\"} 1.500000"),
	    "worker busy seconds");
	CHECK(
	    has_line(page, "meshgate_worker_busy_seconds_total{worker=\"1\",lcore=\"3\"} 0.000500"),
	    "second worker busy seconds");
	CHECK(has_line(page,
		       "meshgate_worker_crypto_seconds_total{worker=\"0\",lcore=\"1\"} 1.000000"),
	      "worker crypto seconds");
	CHECK(has_line(page, "meshgate_worker_rx_packets_total{worker=\"0\",lcore=\"1\"} 1000"),
	      "worker packets");
	CHECK(has_line(page, "meshgate_worker_polls_total{worker=\"0\",lcore=\"1\"} 77"),
	      "worker polls");
	CHECK(has_line(page, "meshgate_worker_idle_sleeps_total{worker=\"0\",lcore=\"1\"} 5"),
	      "worker sleeps");
	CHECK(!strstr(page, "worker=\"2\""), "unused worker slots are not listed");
	CHECK(has_line(page, "meshgate_worker_flows{worker=\"0\",lcore=\"1\"} 42") &&
		  has_line(page, "# TYPE meshgate_worker_flows gauge"),
	      "flows tracked: a gauge");
	CHECK(has_line(page, "meshgate_worker_flow_ring_full_total{worker=\"0\",lcore=\"1\"} 2"),
	      "flow ring full");
	CHECK(has_line(page, "# TYPE meshgate_worker_busy_seconds_total counter"),
	      "worker busy: a counter");
	CHECK(has_line(page, "meshgate_handshakes_completed_total 3"), "completed");
	CHECK(has_line(page, "meshgate_handshake_initiations_sent_total 4"), "initiations");
	CHECK(has_line(page, "meshgate_ring_full_total{ring=\"control_to_dataplane\"} 2"), "ring");
	CHECK(has_line(page, "meshgate_stun_requests_total 6"), "stun requests");
	CHECK(has_line(page, "meshgate_stun_responses_total{result=\"accepted\"} 3"),
	      "stun accepted");
	CHECK(has_line(page, "meshgate_stun_responses_total{result=\"refused\"} 1"),
	      "stun refused");
	CHECK(has_line(page, "meshgate_stun_endpoints 1"), "stun endpoints");
	CHECK(has_line(page, "# TYPE meshgate_stun_endpoints gauge"), "stun endpoints: a gauge");
	CHECK(has_line(page, "meshgate_behind_nat 1"), "behind a NAT");
	CHECK(has_line(page, "# TYPE meshgate_behind_nat gauge"), "behind a NAT: a gauge");
	CHECK(has_line(page, "# TYPE meshgate_inbound_bytes_total counter"), "type");
	CHECK(page[strlen(page) - 1] == '\n', "last line ends");
	check_families(page);
	free(page);

	/* A peer the dataplane holds under another key than control's: no name. */
	memset(s.peers[1].public_key, 0x22, 32);
	page = render(m);
	mg_key_to_base64(s.peers[1].public_key, key);
	want_peer(page, "meshgate_inbound_packets_total", key, NULL, "6");
	free(page);

	mg_shm_destroy(&s);
	cp_metrics_stop(m);
	for (uint32_t i = 0; i < 8; i++)
		free(d.by_slot[i]);
	free(d.by_slot);
	printf("%d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
