/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "shm.h"

const char *const mg_drop_names[MG_DROP_MAX] = {
#define MG_DROP_STR(name, str) [MG_DROP_##name] = str,
	MG_DROP_REASONS(MG_DROP_STR)
#undef MG_DROP_STR
};

uint64_t mg_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t mg_real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t align64(size_t x)
{
	return (x + 4095) & ~(size_t)4095;
}

struct layout {
	size_t cp2dp, dp2cp, peers, stats, drops, ports, workers, flows, flow_ring, total;
};

static int compute_layout(uint32_t max_peers, uint32_t n_stat_slots, struct layout *l)
{
	ssize_t ring = rte_ring_get_memsize_elem(MG_MSG_SIZE, MG_RING_SIZE);
	if (ring < 0)
		return (int)ring;
	size_t off = align64(sizeof(struct mg_shm_hdr));
	l->cp2dp = off;
	off = align64(off + (size_t)ring);
	l->dp2cp = off;
	off = align64(off + (size_t)ring);
	l->peers = off;
	off = align64(off + (size_t)max_peers * sizeof(struct mg_peer_export));
	l->stats = off;
	off = align64(off + (size_t)max_peers * n_stat_slots * sizeof(struct mg_peer_stats));
	l->drops = off;
	off = align64(off + (size_t)MG_MAX_LCORES * MG_DROP_MAX * sizeof(uint64_t));
	l->ports = off;
	off = align64(off + MG_MAX_SHM_PORTS * sizeof(struct mg_port_export));
	l->workers = off;
	off = align64(off + MG_MAX_LCORES * sizeof(struct mg_worker_export));
	ssize_t fr = rte_ring_get_memsize_elem(sizeof(struct mg_flow_record), MG_FLOW_RING_SIZE);
	if (fr < 0)
		return (int)fr;
	l->flow_ring = RTE_CACHE_LINE_ROUNDUP((size_t)fr);
	l->flows = off;
	off = align64(off + (size_t)n_stat_slots * l->flow_ring);
	l->total = off;
	return 0;
}

static void bind_pointers(struct mg_shm *s)
{
	struct mg_shm_hdr *h = s->base;
	s->hdr = h;
	s->cp2dp = (struct rte_ring *)((char *)s->base + h->off_cp2dp);
	s->dp2cp = (struct rte_ring *)((char *)s->base + h->off_dp2cp);
	s->peers = (struct mg_peer_export *)((char *)s->base + h->off_peers);
	s->stats = (struct mg_peer_stats *)((char *)s->base + h->off_stats);
	s->drops = (uint64_t *)((char *)s->base + h->off_drops);
	s->ports = (struct mg_port_export *)((char *)s->base + h->off_ports);
	s->workers = (struct mg_worker_export *)((char *)s->base + h->off_workers);
}

static uint64_t random_generation(void)
{
	uint64_t g = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &g, sizeof(g)) != sizeof(g))
			g = 0;
		close(fd);
	}
	return g ^ mg_mono_ns() ^ ((uint64_t)getpid() << 32);
}

int mg_shm_create(struct mg_shm *s, const char *name, uint32_t max_peers, uint32_t n_stat_slots)
{
	struct layout l = {0};
	int rc;

	memset(s, 0, sizeof(*s));
	if (n_stat_slots == 0 || n_stat_slots > MG_MAX_LCORES || max_peers == 0 ||
	    (max_peers & (max_peers - 1)))
		return -EINVAL;
	rc = compute_layout(max_peers, n_stat_slots, &l);
	if (rc < 0)
		return rc;
	snprintf(s->path, sizeof(s->path), "/meshgate.%s", name);
	/* A fresh object every start: control notices the new inode/generation. */
	shm_unlink(s->path);
	int fd = shm_open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)l.total) < 0) {
		rc = -errno;
		close(fd);
		shm_unlink(s->path);
		return rc;
	}
	s->base = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		shm_unlink(s->path);
		return -ENOMEM;
	}
	s->size = l.total;

	struct mg_shm_hdr *h = s->base;
	h->abi_version = MG_ABI_VERSION;
	h->generation = random_generation();
	h->size = l.total;
	h->max_peers = max_peers;
	h->max_keypairs = max_peers * MG_KP_PER_PEER;
	h->n_stat_slots = n_stat_slots;
	h->dp_pid = (uint64_t)getpid();
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->off_cp2dp = l.cp2dp;
	h->off_dp2cp = l.dp2cp;
	h->off_peers = l.peers;
	h->off_stats = l.stats;
	h->off_drops = l.drops;
	h->off_ports = l.ports;
	h->off_workers = l.workers;
	h->off_flows = l.flows;
	h->flow_ring_size = l.flow_ring;
	bind_pointers(s);
	rc = rte_ring_init(s->cp2dp, "mg_cp2dp", MG_RING_SIZE, RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (rc == 0)
		rc = rte_ring_init(s->dp2cp, "mg_dp2cp", MG_RING_SIZE, RING_F_SC_DEQ);
	for (uint32_t i = 0; rc == 0 && i < n_stat_slots; i++)
		rc = rte_ring_init(mg_shm_flow_ring(s, i), "mg_flows", MG_FLOW_RING_SIZE,
				   RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (rc < 0) {
		mg_shm_destroy(s);
		return rc;
	}
	__atomic_store_n(&h->magic, MG_SHM_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int mg_shm_attach(struct mg_shm *s, const char *name)
{
	struct stat st;
	int rc;

	memset(s, 0, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "/meshgate.%s", name);
	int fd = shm_open(s->path, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(struct mg_shm_hdr)) {
		close(fd);
		return -EAGAIN; /* being created */
	}
	s->base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		return -ENOMEM;
	}
	s->size = (size_t)st.st_size;
	struct mg_shm_hdr *h = s->base;
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MG_SHM_MAGIC)
		rc = -EAGAIN;
	else if (h->abi_version != MG_ABI_VERSION)
		rc = -EPROTO;
	else if (h->size != s->size)
		rc = -EPROTO;
	else
		rc = 0;
	if (rc < 0) {
		mg_shm_detach(s);
		return rc;
	}
	bind_pointers(s);
	return 0;
}

void mg_shm_detach(struct mg_shm *s)
{
	if (s->base)
		munmap(s->base, s->size);
	s->base = NULL;
	s->hdr = NULL;
}

void mg_shm_destroy(struct mg_shm *s)
{
	mg_shm_detach(s);
	if (s->path[0])
		shm_unlink(s->path);
}

uint64_t mg_shm_drop_total(const struct mg_shm *s, enum mg_drop_reason r)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < MG_MAX_LCORES; i++)
		sum += __atomic_load_n(&mg_shm_drops(s, i)[r], __ATOMIC_RELAXED);
	return sum;
}

static void max_into(uint64_t *t, const uint64_t *v)
{
	uint64_t x = __atomic_load_n(v, __ATOMIC_RELAXED);
	*t = x > *t ? x : *t;
}

void mg_shm_peer_totals(const struct mg_shm *s, uint32_t peer, struct mg_peer_stats *t)
{
	memset(t, 0, sizeof(*t));
	for (uint32_t i = 0; i < s->hdr->n_stat_slots; i++) {
		const struct mg_peer_stats *st = mg_shm_stats(s, i, peer);
		t->rx_packets += __atomic_load_n(&st->rx_packets, __ATOMIC_RELAXED);
		t->rx_bytes += __atomic_load_n(&st->rx_bytes, __ATOMIC_RELAXED);
		t->tx_packets += __atomic_load_n(&st->tx_packets, __ATOMIC_RELAXED);
		t->tx_bytes += __atomic_load_n(&st->tx_bytes, __ATOMIC_RELAXED);
		max_into(&t->last_rx_tsc, &st->last_rx_tsc);
		max_into(&t->last_tx_tsc, &st->last_tx_tsc);
		max_into(&t->last_rx_data_tsc, &st->last_rx_data_tsc);
		max_into(&t->last_tx_data_tsc, &st->last_tx_data_tsc);
	}
}

int mg_ring_send(struct rte_ring *r, const struct mg_msg *m)
{
	return rte_ring_enqueue_bulk_elem(r, m, MG_MSG_SIZE, 1, NULL) == 1 ? 0 : -ENOBUFS;
}

int mg_ring_recv(struct rte_ring *r, struct mg_msg *m)
{
	return rte_ring_dequeue_bulk_elem(r, m, MG_MSG_SIZE, 1, NULL) == 1 ? 0 : -ENOENT;
}

unsigned mg_ring_recv_burst(struct rte_ring *r, struct mg_msg *m, unsigned n)
{
	return rte_ring_dequeue_burst_elem(r, m, MG_MSG_SIZE, n, NULL);
}

uint64_t mg_shm_tsc_to_ns(const struct mg_shm *s, uint64_t tsc)
{
	const struct mg_shm_hdr *h = s->hdr;
	if (tsc == 0 || h->tsc_hz == 0)
		return 0;
	if (tsc >= h->ref_tsc)
		return h->ref_mono_ns + (uint64_t)((double)(tsc - h->ref_tsc) * 1e9 / (double)h->tsc_hz);
	uint64_t back = (uint64_t)((double)(h->ref_tsc - tsc) * 1e9 / (double)h->tsc_hz);
	return back > h->ref_mono_ns ? 0 : h->ref_mono_ns - back;
}

bool mg_shm_worker_load(const struct mg_shm *s, unsigned i, struct mg_worker_export *out)
{
	if (i >= MG_MAX_LCORES)
		return false;
	const struct mg_worker_export *w = &s->workers[i];
	if (!__atomic_load_n(&w->in_use, __ATOMIC_RELAXED))
		return false;
	*out = (struct mg_worker_export){
	    .lcore = w->lcore,
	    .in_use = 1,
	    .busy_tsc = __atomic_load_n(&w->busy_tsc, __ATOMIC_RELAXED),
	    .crypto_tsc = __atomic_load_n(&w->crypto_tsc, __ATOMIC_RELAXED),
	    .polls = __atomic_load_n(&w->polls, __ATOMIC_RELAXED),
	    .rx_packets = __atomic_load_n(&w->rx_packets, __ATOMIC_RELAXED),
	    .idle_sleeps = __atomic_load_n(&w->idle_sleeps, __ATOMIC_RELAXED),
	    .flows = __atomic_load_n(&w->flows, __ATOMIC_RELAXED),
	    .flows_untracked = __atomic_load_n(&w->flows_untracked, __ATOMIC_RELAXED),
	    .flow_records = __atomic_load_n(&w->flow_records, __ATOMIC_RELAXED),
	    .flow_ring_full = __atomic_load_n(&w->flow_ring_full, __ATOMIC_RELAXED),
	};
	return true;
}
