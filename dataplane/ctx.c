/* SPDX-License-Identifier: MIT */
/*
 * Building and tearing down a dataplane context: shared memory, mbufs,
 * tables, workers and ports. Used by the dataplane process and by the
 * benchmark, which runs the very same workers on in-memory ports.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf_dyn.h>
#include <sodium.h>
#include <rte_ring.h>

#include "dp.h"
#include "flowlog.h"
#include "filter.h"
#include "log.h"
#include "route.h"
#include "snat.h"
#include "wg_messages.h"

int dp_meta_offset = -1;

static uint32_t pow2_at_least(uint32_t x)
{
	uint32_t p = 1;
	while (p < x)
		p <<= 1;
	return p;
}

static int tables_init(struct dp_ctx *dp)
{
	static const struct rte_mbuf_dynfield meta_desc = {
		.name = "meshgate_meta",
		.size = sizeof(struct dp_meta),
		.align = __alignof__(struct dp_meta),
	};
	const struct mg_config *cfg = dp->cfg;
	int socket = (int)rte_socket_id();

	dp_meta_offset = rte_mbuf_dynfield_register(&meta_desc);
	if (dp_meta_offset < 0)
		return -rte_errno;
	dp->max_peers = pow2_at_least(cfg->max_peers);
	dp->kp_mask = dp->max_peers * MG_KP_PER_PEER - 1;
	dp->pool = rte_pktmbuf_pool_create("mg_mbufs", cfg->mbufs, 256, 0,
					   RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	dp->peers = rte_zmalloc_socket("peers", sizeof(*dp->peers) * dp->max_peers,
				       RTE_CACHE_LINE_SIZE, socket);
	dp->keypairs = rte_zmalloc_socket("keypairs",
					  sizeof(*dp->keypairs) * dp->max_peers * MG_KP_PER_PEER,
					  RTE_CACHE_LINE_SIZE, socket);
	dp->routes = dp_routes_create("aip", dp->max_peers,
				      RTE_MAX(1024u, dp->max_peers * 4), socket);
	dp->neigh = dp_neigh_create("neigh", 4096, socket);
	size_t rsz = rte_rcu_qsbr_get_memsize(dp->n_workers);
	dp->rcu = rte_zmalloc_socket("rcu", rsz, RTE_CACHE_LINE_SIZE, socket);
	dp->slow = rte_ring_create("mg_slow", 4096, socket, RING_F_SC_DEQ);
	dp->events = rte_ring_create_elem("mg_events", sizeof(struct dp_event), 1024, socket,
					  RING_F_SC_DEQ);
	if (!dp->pool || !dp->peers || !dp->keypairs || !dp->routes || !dp->neigh || !dp->rcu ||
	    !dp->slow || !dp->events)
		return -ENOMEM;
	rte_rcu_qsbr_init(dp->rcu, dp->n_workers);
	dp_neigh_set_rcu(dp->neigh, dp->rcu);
	dp->n_lan_routes = 0;
	{
		int lan = mg_config_port(cfg, MG_PORT_LAN);
		if (lan >= 0 && cfg->ports[lan].n_routes) {
			dp->lan_routes = calloc((size_t)cfg->ports[lan].n_routes,
						sizeof(*dp->lan_routes));
			if (!dp->lan_routes)
				return -ENOMEM;
			for (int i = 0; i < cfg->ports[lan].n_routes; i++) {
				dp->lan_routes[i].prefix = cfg->ports[lan].routes[i].prefix;
				dp->lan_routes[i].via = cfg->ports[lan].routes[i].via;
			}
			dp->n_lan_routes = cfg->ports[lan].n_routes;
		}
	}
	return 0;
}

/* SNAT translates to the lan port's first address of each family. */
static int snat_init(struct dp_ctx *dp)
{
	const struct mg_config *cfg = dp->cfg;
	int lan = mg_config_port(cfg, MG_PORT_LAN);
	const uint8_t *addr6 = NULL;
	uint32_t addr4 = 0;

	if (!cfg->snat.enabled || lan < 0)
		return 0;
	for (int i = cfg->ports[lan].n_addrs - 1; i >= 0; i--) {
		const struct mg_prefix *a = &cfg->ports[lan].addrs[i];
		if (a->family == AF_INET)
			memcpy(&addr4, a->addr, 4);
		else
			addr6 = a->addr;
	}
	if (!addr4 && !addr6) {
		mg_log(LOG_WARNING, "snat: the lan port has no address; SNAT is off");
		return 0;
	}
	dp->snat = dp_snat_create(&cfg->snat, dp->n_workers, dp->tsc_hz, addr4, addr6,
				  (int)rte_socket_id());
	if (!dp->snat) {
		mg_log(LOG_ERR, "snat: %s", rte_strerror(rte_errno));
		return -rte_errno;
	}
	mg_log(LOG_INFO, "snat: on, ports %u-%u, %u entries per worker", cfg->snat.port_min,
	       cfg->snat.port_max, dp_snat_slice(dp->snat));
	return 0;
}

static int workers_init(struct dp_ctx *dp)
{
	for (unsigned i = 0; i < dp->n_workers; i++) {
		struct dp_worker *w = &dp->workers[i];
		char name[32];
		w->dp = dp;
		w->idx = i;
		w->lcore = (unsigned)dp->cfg->workers[i];
		w->drops = mg_shm_drops(&dp->shm, i);
		w->load = &dp->shm.workers[i];
		w->load->lcore = w->lcore;
		w->load->in_use = 1;
		snprintf(name, sizeof(name), "mg_inject%u", i);
		w->inject = rte_ring_create(name, 4096, (int)rte_lcore_to_socket_id(w->lcore),
					    RING_F_SP_ENQ | RING_F_SC_DEQ);
		w->crypto = dp_crypto_create(dp->cfg->crypto == MG_CRYPTO_CRYPTODEV
						     ? DP_CRYPTO_CRYPTODEV
						     : DP_CRYPTO_IPSEC_MB,
					     dp->cfg->cryptodev[0] ? dp->cfg->cryptodev : NULL,
					     (int)rte_lcore_to_socket_id(w->lcore));
		if (!w->inject || !w->crypto) {
			mg_log(LOG_ERR, "worker %u: %s", i,
			       !w->inject ? "cannot create inject ring" : "cannot create crypto");
			return -ENOMEM;
		}
		if (i == 0)
			mg_log(LOG_INFO, "crypto: %s", dp_crypto_name(w->crypto));
		if (dp->cfg->flow_log.file[0]) {
			const struct mg_flow_log_conf *fc = &dp->cfg->flow_log;
			uint64_t hz = rte_get_tsc_hz();
			/* A flow is forgotten after a minute without packets (two
			 * intervals if longer), its last record long sent. */
			uint64_t idle = RTE_MAX(60ull, 2ull * fc->interval) * hz;

			snprintf(name, sizeof(name), "mg_flows%u", i);
			w->flowlog = dp_flowlog_create(name, fc->max_flows, fc->interval * hz, idle,
						       mg_shm_flow_ring(&dp->shm, i),
						       (int)rte_lcore_to_socket_id(w->lcore));
			if (!w->flowlog) {
				mg_log(LOG_ERR, "worker %u: cannot create a flow table of %u flows",
				       i, fc->max_flows);
				return -ENOMEM;
			}
			if (i == 0)
				mg_log(
				    LOG_INFO,
				    "flow logs: %u flows per worker, a record per flow every %u s",
				    fc->max_flows, fc->interval);
		}
	}
	return 0;
}

static void shm_publish_clock(struct dp_ctx *dp)
{
	struct mg_shm_hdr *h = dp->shm.hdr;
	dp->tsc_hz = rte_get_tsc_hz();
	h->tsc_hz = dp->tsc_hz;
	h->ref_mono_ns = mg_mono_ns();
	h->ref_tsc = rte_rdtsc();
	h->dp_heartbeat_ns = h->ref_mono_ns;
}

int dp_ctx_setup(struct dp_ctx *dp)
{
	const struct mg_config *cfg = dp->cfg;
	int rc;

	dp->n_workers = (unsigned)cfg->n_workers;
	dp->listen_port = cfg->listen_port;
	dp->mtu = cfg->mtu;
	rc = mg_shm_create(&dp->shm, cfg->name, pow2_at_least(cfg->max_peers), dp->n_workers + 1);
	if (rc) {
		mg_log(LOG_ERR, "shared memory /meshgate.%s: %s", cfg->name, strerror(-rc));
		return rc;
	}
	shm_publish_clock(dp);
	uint32_t reject = cfg->timers.reject_after_time ? cfg->timers.reject_after_time
							 : WG_REJECT_AFTER_TIME;
	dp->reject_after_tsc = reject * dp->tsc_hz;
	if ((rc = tables_init(dp)) || (rc = snat_init(dp)) || (rc = dp_filter_init(dp)) || (rc = workers_init(dp)) || (rc = dp_ports_init(dp)) ||
	    (rc = dp_service_init(dp)))
		return rc;
	return 0;
}

void dp_ctx_teardown(struct dp_ctx *dp)
{
	dp_service_fini(dp);
	dp_ports_fini(dp);
	for (unsigned i = 0; i < dp->n_workers; i++) {
		if (dp->workers[i].crypto)
			dp_crypto_destroy(dp->workers[i].crypto);
		dp_flowlog_free(dp->workers[i].flowlog);
		dp->workers[i].flowlog = NULL;
	}
	if (dp->keypairs) {
		/* Zero every session key before the memory goes back. */
		memset(dp->keypairs, 0, sizeof(*dp->keypairs) * dp->max_peers * MG_KP_PER_PEER);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	dp_routes_destroy(dp->routes);
	if (dp->neigh)
		dp_neigh_destroy(dp->neigh);
	free(dp->lan_routes);
	dp_snat_destroy(dp->snat);
	dp_filter_fini(dp);
	for (unsigned i = 0; i < dp->n_workers; i++)
		rte_ring_free(dp->workers[i].inject);
	rte_ring_free(dp->slow);
	rte_ring_free(dp->events);
	rte_free(dp->rcu);
	rte_free(dp->peers);
	if (dp->keypairs) /* session keys: zeroed, not just freed */
		sodium_memzero(dp->keypairs,
			       sizeof(*dp->keypairs) * dp->max_peers * MG_KP_PER_PEER);
	rte_free(dp->keypairs);
	rte_mempool_free(dp->pool);
	if (dp->shm.base)
		mg_shm_destroy(&dp->shm);
	memset(dp, 0, sizeof(*dp));
}

