/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "addr.h"
#include "cp.h"
#include "flowlog.h"
#include "keys.h"
#include "log.h"
#include "shm.h"

#define FLOWLOG_BATCH	 64
#define FLOWLOG_LINE	 1024 /* a record's line is under 500 bytes */
#define FLOWLOG_PER_POLL 1024 /* records per call, so the control loop never waits long */
#define FLOWLOG_GONE	 256  /* removed peers remembered */

/* A peer removed lately: records of its slot from before then are its. */
struct gone_peer {
	uint32_t slot;
	uint64_t removed_ns;
	uint8_t public_key[32];
	char name[64];
};

struct cp_flowlog {
	int fd;
	bool write_failed; /* logged once until a write succeeds */
	struct gone_peer gone[FLOWLOG_GONE]; /* a ring, the newest at gone_next - 1 */
	unsigned gone_next;
};

static void on_peer_remove(struct cp_device *d, const struct cp_peer *p)
{
	struct cp_flowlog *f = d->flowlog;

	cp_flowlog_poll(d); /* what is queued now is the peer's, under its key */
	struct gone_peer *g = &f->gone[f->gone_next++ % FLOWLOG_GONE];
	g->slot = p->slot;
	g->removed_ns = mg_mono_ns();
	memcpy(g->public_key, p->noise.public_key, 32);
	snprintf(g->name, sizeof(g->name), "%s", p->name);
}

static void on_detach(struct cp_device *d)
{
	cp_flowlog_poll(d); /* the dataplane's last records */
}

/* Whose a record of slot is whose first packet was at first_ns: the peer in
 * the slot, unless it came later than that and a peer removed since had it.
 * NULL: nobody known. */
static void record_peer(struct cp_device *d, uint32_t slot, uint64_t first_ns, const uint8_t **key,
			const char **name)
{
	const struct cp_flowlog *f = d->flowlog;
	const struct cp_peer *p = slot < d->max_peers ? d->by_slot[slot] : NULL;

	*key = NULL;
	*name = "";
	if (!p || p->created_ns > first_ns) {
		for (unsigned i = 1; i <= FLOWLOG_GONE && i <= f->gone_next; i++) {
			const struct gone_peer *g = &f->gone[(f->gone_next - i) % FLOWLOG_GONE];
			if (g->slot == slot && g->removed_ns >= first_ns) {
				*key = g->public_key;
				*name = g->name;
				return;
			}
		}
	}
	if (p) {
		*key = p->noise.public_key;
		*name = p->name;
	}
}

static int open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		mg_log(LOG_ERR, "flow log: cannot open %s: %s", path, strerror(errno));
	return fd < 0 ? -errno : fd;
}

int cp_flowlog_init(struct cp_device *d)
{
	const char *path = d->cfg->flow_log.file;

	d->flowlog = NULL;
	if (!path[0])
		return 0;
	struct cp_flowlog *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = open_file(path);
	if (f->fd < 0) {
		int rc = f->fd;
		free(f);
		return rc;
	}
	d->flowlog = f;
	d->on_peer_remove = on_peer_remove;
	d->on_detach = on_detach;
	mg_log(LOG_INFO, "flow log: appending to %s", path);
	return 0;
}

void cp_flowlog_fini(struct cp_device *d)
{
	if (!d->flowlog)
		return;
	cp_flowlog_poll(d); /* what the dataplane recorded at exit */
	d->on_peer_remove = NULL;
	d->on_detach = NULL;
	close(d->flowlog->fd);
	free(d->flowlog);
	d->flowlog = NULL;
}

void cp_flowlog_reopen(struct cp_device *d)
{
	struct cp_flowlog *f = d->flowlog;

	if (!f)
		return;
	int fd = open_file(d->cfg->flow_log.file);
	if (fd < 0)
		return; /* keep writing where we were */
	close(f->fd);
	f->fd = fd;
	mg_log(LOG_INFO, "flow log: reopened %s", d->cfg->flow_log.file);
}

/* RFC 3339, UTC, milliseconds. */
static void time_str(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&s, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03uZ", (unsigned)(ns / 1000000ull % 1000));
}

size_t cp_flowlog_format(char *buf, size_t len, const struct mg_flow_record *r,
			 const uint8_t node_pub[32], const uint8_t *peer_pub, const char *peer_name,
			 uint64_t start_ns, uint64_t end_ns)
{
	char node[45], peer[45], start[40], end[40], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN],
	    pb[8];
	int af = r->family == AF_INET6 ? AF_INET6 : AF_INET;

	mg_key_to_base64(node_pub, node);
	time_str(start_ns, start, sizeof(start));
	time_str(end_ns, end, sizeof(end));
	if (!inet_ntop(af, r->src, src, sizeof(src)) || !inet_ntop(af, r->dst, dst, sizeof(dst)))
		return 0;
	const char *proto = mg_ip_proto_name(r->proto); /* the IANA keyword, or the number */
	if (!proto) {
		snprintf(pb, sizeof(pb), "%u", r->proto);
		proto = pb;
	}
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I}", "start", start, "end", end,
	    "node", node, "dir", r->dir == MG_FLOW_TX ? "tx" : "rx", "proto", proto, "src", src,
	    "sport", (json_int_t)r->sport, "dst", dst, "dport", (json_int_t)r->dport, "packets",
	    (json_int_t)r->packets, "bytes", (json_int_t)r->bytes);
	if (!o)
		return 0;
	if (peer_pub) {
		mg_key_to_base64(peer_pub, peer);
		json_object_set_new(o, "peer", json_string(peer));
	} else {
		json_object_set_new(o, "peer", json_null());
	}
	if (peer_name && peer_name[0])
		json_object_set_new(o, "peer_name", json_string(peer_name));
	size_t n = json_dumpb(o, buf, len, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (n == 0 || n + 1 > len)
		return 0;
	buf[n] = '\n';
	return n + 1;
}

/* Whole lines or nothing: a write that fails half-way (a full disk) is cut
 * back, so the next batch does not continue a broken line. */
static bool write_lines(struct cp_device *d, const char *buf, size_t len)
{
	struct cp_flowlog *f = d->flowlog;
	struct stat st;
	bool have_size = fstat(f->fd, &st) == 0;
	int err = 0;

	while (len && !err) {
		ssize_t w = write(f->fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = w < 0 ? errno : EIO;
			break;
		}
		buf += w;
		len -= (size_t)w;
	}
	if (!err) {
		f->write_failed = false;
		return true;
	}
	d->flow_write_errors++;
	if (have_size && ftruncate(f->fd, st.st_size) < 0)
		mg_log(LOG_ERR, "flow log: cannot cut %s back after a failed write: %s",
		       d->cfg->flow_log.file, strerror(errno));
	if (!f->write_failed)
		mg_log(LOG_ERR, "flow log: cannot write %s: %s (records dropped, counted)",
		       d->cfg->flow_log.file, strerror(err));
	f->write_failed = true;
	return false;
}

unsigned cp_flowlog_poll(struct cp_device *d)
{
	struct mg_flow_record r[FLOWLOG_BATCH];
	static char buf[FLOWLOG_BATCH * FLOWLOG_LINE];
	unsigned total = 0;

	if (!d->flowlog || !d->attached)
		return 0;
	/* Wall clock = monotonic + this offset, taken once per drain. */
	int64_t off = (int64_t)(mg_real_ns() - mg_mono_ns());
	for (uint32_t s = 0; s < d->shm.hdr->n_stat_slots && total < FLOWLOG_PER_POLL; s++) {
		struct rte_ring *ring = mg_shm_flow_ring(&d->shm, s);
		unsigned n;

		while (
		    total < FLOWLOG_PER_POLL &&
		    (n = rte_ring_dequeue_burst_elem(ring, r, sizeof(r[0]), FLOWLOG_BATCH, NULL))) {
			size_t len = 0;
			unsigned lines = 0;

			for (unsigned i = 0; i < n; i++) {
				uint64_t a = mg_shm_tsc_to_ns(&d->shm, r[i].first_tsc);
				uint64_t b = mg_shm_tsc_to_ns(&d->shm, r[i].last_tsc);
				const uint8_t *key;
				const char *name;

				record_peer(d, r[i].peer, a, &key, &name);
				size_t k = cp_flowlog_format(buf + len, sizeof(buf) - len, &r[i],
							     d->local.public_key, key, name,
							     (uint64_t)((int64_t)a + off),
							     (uint64_t)((int64_t)b + off));
				len += k;
				lines += k != 0;
			}
			d->flow_records_dropped += n - lines;
			if (write_lines(d, buf, len))
				d->flow_records += lines;
			else
				d->flow_records_dropped += lines;
			total += n;
		}
	}
	return total;
}
