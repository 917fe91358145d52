/* SPDX-License-Identifier: MIT */
/*
 * meshgate: the operator's command line. Reads the dataplane's counters
 * straight from shared memory, so it works while both processes run and
 * never disturbs them.
 *
 *   meshgate stats NAME [--json]   ports, peers and drops by reason
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "keys.h"
#include "shm.h"

static void peer_totals(const struct mg_shm *s, uint32_t peer, struct mg_peer_stats *t)
{
	memset(t, 0, sizeof(*t));
	for (uint32_t i = 0; i < s->hdr->n_stat_slots; i++) {
		const struct mg_peer_stats *st = mg_shm_stats(s, i, peer);
		t->rx_packets += st->rx_packets;
		t->rx_bytes += st->rx_bytes;
		t->tx_packets += st->tx_packets;
		t->tx_bytes += st->tx_bytes;
	}
}

static void print_text(const struct mg_shm *s)
{
	printf("dataplane %s pid %" PRIu64 ", %u stat slots, %u peer slots\n", s->hdr->name,
	       s->hdr->dp_pid, s->hdr->n_stat_slots, s->hdr->max_peers);
	for (uint32_t i = 0; i < s->hdr->n_ports; i++) {
		const struct mg_port_export *p = &s->ports[i];
		printf("port %s %s rx_packets %" PRIu64 " rx_bytes %" PRIu64 " tx_packets %" PRIu64
		       " tx_bytes %" PRIu64 " rx_missed %" PRIu64 " rx_errors %" PRIu64
		       " tx_errors %" PRIu64 "\n",
		       p->name, p->role == 0 ? "wan" : "lan", p->rx_packets, p->rx_bytes,
		       p->tx_packets, p->tx_bytes, p->rx_missed, p->rx_errors, p->tx_errors);
	}
	for (uint32_t i = 0; i < s->hdr->max_peers; i++) {
		const struct mg_peer_export *e = &s->peers[i];
		struct mg_peer_stats t;
		char key[45], ep[64] = "(none)";
		if (!e->in_use)
			continue;
		peer_totals(s, i, &t);
		mg_key_to_base64(e->public_key, key);
		if (e->endpoint.family)
			mg_sockaddr_fmt(&e->endpoint, ep, sizeof(ep));
		printf("peer %s slot %u endpoint %s rx_packets %" PRIu64 " rx_bytes %" PRIu64
		       " tx_packets %" PRIu64 " tx_bytes %" PRIu64 " keypair %08x\n",
		       key, i, ep, t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes, e->kp_cur);
	}
	for (int r = 0; r < MG_DROP_MAX; r++)
		printf("drop %s %" PRIu64 "\n", mg_drop_names[r], mg_shm_drop_total(s, r));
}

static void print_json(const struct mg_shm *s)
{
	printf("{\"name\":\"%s\",\"ports\":[", s->hdr->name);
	for (uint32_t i = 0; i < s->hdr->n_ports; i++) {
		const struct mg_port_export *p = &s->ports[i];
		printf("%s{\"name\":\"%s\",\"rx_packets\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
		       ",\"tx_packets\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 "}",
		       i ? "," : "", p->name, p->rx_packets, p->rx_bytes, p->tx_packets,
		       p->tx_bytes);
	}
	printf("],\"peers\":[");
	bool first = true;
	for (uint32_t i = 0; i < s->hdr->max_peers; i++) {
		struct mg_peer_stats t;
		char key[45];
		if (!s->peers[i].in_use)
			continue;
		peer_totals(s, i, &t);
		mg_key_to_base64(s->peers[i].public_key, key);
		printf("%s{\"public_key\":\"%s\",\"rx_packets\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
		       ",\"tx_packets\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 "}",
		       first ? "" : ",", key, t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes);
		first = false;
	}
	printf("],\"drops\":{");
	for (int r = 0; r < MG_DROP_MAX; r++)
		printf("%s\"%s\":%" PRIu64, r ? "," : "", mg_drop_names[r], mg_shm_drop_total(s, r));
	printf("}}\n");
}

static int cmd_stats(int argc, char **argv)
{
	struct mg_shm s;
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	int rc = mg_shm_attach(&s, argv[0]);
	if (rc) {
		fprintf(stderr, "meshgate: no running dataplane \"%s\": %s\n", argv[0],
			strerror(-rc));
		return 1;
	}
	if (json)
		print_json(&s);
	else
		print_text(&s);
	mg_shm_detach(&s);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "stats"))
		return cmd_stats(argc - 2, argv + 2);
	fprintf(stderr, "usage: meshgate stats NAME [--json]\n");
	return 2;
}
