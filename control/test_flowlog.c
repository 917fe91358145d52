// SPDX-License-Identifier: MIT
/*
 * Control's side of the flow logs (flowlog.c):
 *   - cp_flowlog_format: a record becomes one JSON object on one line, every
 *     field as documented (README "Flow logs"), names escaped, IPv4 and
 *     IPv6, a peer control no longer knows as null, a buffer too small as 0;
 *   - cp_flowlog_poll against a shared-memory region made here (the test
 *     plays the dataplane): records drained into the file, a record of a
 *     removed peer's slot named after that peer even once another peer
 *     took the slot, and a write that fails half-way (a file size limit)
 *     cut back so that the file holds whole lines only.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "cp.h"
#include "flowlog.h"
#include "keys.h"
#include "shm.h"
#include "test_util.h"

/* 2026-12-07T20:31:00.123Z */
#define T0 1796675460123000000ull

static json_t *parse(const char *buf, size_t n)
{
	json_error_t e;

	if (!n || buf[n - 1] != '\n' || memchr(buf, '\n', n - 1))
		return NULL;
	return json_loadb(buf, n - 1, 0, &e);
}

static const char *str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "(none)";
}

static long long num(json_t *o, const char *k)
{
	return json_is_integer(json_object_get(o, k)) ? json_integer_value(json_object_get(o, k))
						      : -1;
}

static struct mg_shm shm;
static char name[32], path[64];

/* The file's lines: each parsed, all of them whole. */
static unsigned lines(json_t **out, unsigned max, bool *whole)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	unsigned n = 0;

	*whole = true;
	while (f && fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);
		json_t *o =
		    len && line[len - 1] == '\n' ? json_loadb(line, len - 1, 0, NULL) : NULL;
		if (!o) {
			*whole = false;
			continue;
		}
		if (n < max)
			out[n++] = o;
		else
			json_decref(o);
	}
	if (f)
		fclose(f);
	return n;
}

static void put(uint32_t slot, uint16_t sport, uint64_t first_ns, uint64_t packets)
{
	struct mg_flow_record r = {.peer = slot,
				   .dir = MG_FLOW_RX,
				   .family = AF_INET,
				   .proto = IPPROTO_UDP,
				   .sport = sport,
				   .dport = 53,
				   .packets = packets,
				   .bytes = packets * 100,
				   .first_tsc = first_ns,
				   .last_tsc = first_ns};
	memcpy(r.src, "\x0a\x00\x00\x01", 4);
	memcpy(r.dst, "\x0a\x00\x00\x02", 4);
	if (rte_ring_enqueue_elem(mg_shm_flow_ring(&shm, 0), &r, sizeof(r)))
		abort();
}

static void test_poll(void)
{
	struct mg_config cfg;
	struct cp_device d;
	char text[1024], err[512];
	json_t *l[64];
	bool whole;
	int e;

	printf("-- draining the rings into the file\n");
	snprintf(text, sizeof(text),
		 "meshgate: { name = \"%s\"; max_peers = 64; };\n"
		 "dataplane: { ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";"
		 " addresses = [\"198.18.0.1/24\"]; } ); };\n"
		 "flow_log: { file = \"%s\"; };\n",
		 name, path);
	if (mg_config_load_string(text, "t", 0, &cfg, err, sizeof(err)) ||
	    cp_device_init(&d, &cfg)) {
		fprintf(stderr, "device: %s\n", err);
		exit(2);
	}
	CHECK(cp_flowlog_init(&d) == 0, "the file opened");
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");
	cp_dp_maintain(&d);
	CHECK(d.attached, "attached to the test's region");
	/* The test's clock: TSC = CLOCK_MONOTONIC ns. */
	shm.hdr->tsc_hz = 1000000000ull;
	shm.hdr->ref_tsc = 0;
	shm.hdr->ref_mono_ns = 0;

	uint8_t ka[32], kb[32];
	memset(ka, 0xaa, 32);
	memset(kb, 0xbb, 32);
	struct cp_peer *a = cp_peer_create(&d, ka, &e);
	CHECK(a && a->slot == 0, "peer A in slot 0");
	snprintf(a->name, sizeof(a->name), "A");
	uint64_t t = mg_mono_ns();
	put(0, 1, t, 5); /* queued while A is there: drained as A goes */
	cp_peer_remove(&d, a);
	usleep(1000);
	struct cp_peer *b = cp_peer_create(&d, kb, &e);
	CHECK(b && b->slot == 0, "peer B takes slot 0");
	snprintf(b->name, sizeof(b->name), "B");
	put(0, 2, t, 6);	    /* A's flow (first packet at t), swept after A went */
	put(0, 3, mg_mono_ns(), 7); /* B's own */
	CHECK(cp_flowlog_poll(&d) == 2, "two records drained");
	unsigned n = lines(l, 64, &whole);
	CHECK(n == 3 && whole, "three whole lines (%u)", n);
	if (n == 3) {
		char pa[45], pb[45];
		mg_key_to_base64(ka, pa);
		mg_key_to_base64(kb, pb);
		CHECK(!strcmp(str(l[0], "peer"), pa) && !strcmp(str(l[0], "peer_name"), "A"),
		      "drained as A went: A's");
		CHECK(num(l[1], "sport") == 2 && !strcmp(str(l[1], "peer"), pa),
		      "A's flow drained after B took the slot: still A's (%s)", str(l[1], "peer"));
		CHECK(num(l[2], "sport") == 3 && !strcmp(str(l[2], "peer"), pb) &&
			  !strcmp(str(l[2], "peer_name"), "B"),
		      "B's own flow: B's");
	}
	for (unsigned i = 0; i < n; i++)
		json_decref(l[i]);
	CHECK(d.flow_records == 3 && d.flow_records_dropped == 0, "3 written, none dropped");

	/* A file size limit half-way through the next batch. */
	stat(path, &st);
	struct rlimit lim = {.rlim_cur = (rlim_t)st.st_size + 300, .rlim_max = RLIM_INFINITY};
	signal(SIGXFSZ, SIG_IGN);
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "file size limit: %ld more bytes", 300L);
	for (uint16_t i = 10; i < 14; i++)
		put(0, i, mg_mono_ns(), 1);
	CHECK(cp_flowlog_poll(&d) == 4, "four more drained");
	lim.rlim_cur = RLIM_INFINITY;
	setrlimit(RLIMIT_FSIZE, &lim);
	struct stat st2;
	stat(path, &st2);
	n = lines(l, 64, &whole);
	for (unsigned i = 0; i < n; i++)
		json_decref(l[i]);
	CHECK(whole && n == 3 && st2.st_size == st.st_size,
	      "the failed write was cut back: %u whole lines, %lld bytes as before", n,
	      (long long)st2.st_size);
	CHECK(d.flow_write_errors == 1 && d.flow_records_dropped == 4 && d.flow_records == 3,
	      "counted: 1 failed write, 4 records dropped");
	put(0, 20, mg_mono_ns(), 1);
	cp_flowlog_poll(&d);
	n = lines(l, 64, &whole);
	for (unsigned i = 0; i < n; i++)
		json_decref(l[i]);
	CHECK(whole && n == 4 && d.flow_records == 4, "the next write goes on where it was");
	cp_flowlog_fini(&d);
	cp_device_fini(&d);
	mg_config_free(&cfg);
}

int main(void)
{
	uint8_t node[32], peer[32];
	char nb[45], pb[45], buf[1024];

	if (sodium_init() < 0)
		return 2;
	memset(node, 0x11, 32);
	memset(peer, 0x22, 32);
	mg_key_to_base64(node, nb);
	mg_key_to_base64(peer, pb);

	struct mg_flow_record r = {.peer = 3,
				   .dir = MG_FLOW_TX,
				   .family = AF_INET,
				   .proto = IPPROTO_TCP,
				   .sport = 40000,
				   .dport = 443,
				   .packets = 12,
				   .bytes = 3456};
	memcpy(r.src, "\x0a\x58\x00\x01", 4);
	memcpy(r.dst, "\x0a\x63\x00\x02", 4);
	size_t n = cp_flowlog_format(buf, sizeof(buf), &r, node, peer, "laptop \"a\"", T0,
				     T0 + 2500000000ull);
	json_t *o = parse(buf, n);
	CHECK(o, "one JSON object on one line: %.*s", (int)n, buf);
	if (o) {
		CHECK(!strcmp(str(o, "start"), "2026-12-07T20:31:00.123Z") &&
			  !strcmp(str(o, "end"), "2026-12-07T20:31:02.623Z"),
		      "times: %s .. %s", str(o, "start"), str(o, "end"));
		CHECK(!strcmp(str(o, "node"), nb) && !strcmp(str(o, "peer"), pb), "keys");
		CHECK(!strcmp(str(o, "peer_name"), "laptop \"a\""), "the name, escaped and back");
		CHECK(!strcmp(str(o, "dir"), "tx") && !strcmp(str(o, "proto"), "tcp"), "tx, tcp");
		CHECK(!strcmp(str(o, "src"), "10.88.0.1") && num(o, "sport") == 40000 &&
			  !strcmp(str(o, "dst"), "10.99.0.2") && num(o, "dport") == 443,
		      "10.88.0.1:40000 -> 10.99.0.2:443");
		CHECK(num(o, "packets") == 12 && num(o, "bytes") == 3456, "counts");
		CHECK(json_object_size(o) == 13, "13 fields (%zu)", json_object_size(o));
		json_decref(o);
	}

	r.dir = MG_FLOW_RX;
	r.family = AF_INET6;
	r.proto = 47; /* GRE: by number */
	memset(r.src, 0, 16);
	memset(r.dst, 0, 16);
	r.src[0] = 0xfd, r.src[15] = 1;
	r.dst[0] = 0xfd, r.dst[15] = 2;
	n = cp_flowlog_format(buf, sizeof(buf), &r, node, NULL, "", T0, T0);
	o = parse(buf, n);
	CHECK(o, "IPv6: %.*s", (int)n, buf);
	if (o) {
		CHECK(!strcmp(str(o, "src"), "fd00::1") && !strcmp(str(o, "dst"), "fd00::2"),
		      "IPv6 addresses");
		CHECK(!strcmp(str(o, "dir"), "rx") && !strcmp(str(o, "proto"), "47"),
		      "rx, proto 47");
		CHECK(json_is_null(json_object_get(o, "peer")) && !json_object_get(o, "peer_name"),
		      "a peer control does not know: null, no name");
		json_decref(o);
	}
	CHECK(cp_flowlog_format(buf, 40, &r, node, peer, "x", T0, T0) == 0,
	      "a buffer too small: 0");

	snprintf(name, sizeof(name), "tflow%d", (int)getpid() % 100000);
	snprintf(path, sizeof(path), "/tmp/mgflow-%d.jsonl", (int)getpid());
	unlink(path);
	if (mg_shm_create(&shm, name, 64, 2)) {
		fprintf(stderr, "mg_shm_create failed\n");
		return 2;
	}
	test_poll();
	mg_shm_destroy(&shm);
	unlink(path);
	return test_finish("test_cp_flowlog");
}
