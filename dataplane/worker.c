/* SPDX-License-Identifier: MIT */
/*
 * The poll-mode worker: RX a burst from each port, classify it once into
 * sub-bursts, run each stage over a whole sub-burst, TX. No locks, no
 * syscalls; tables are read-only here (see dp.h for the contract).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "dp.h"
#include "flowlog.h"
#include "log.h"
#include "pkt.h"
#include "route.h"
#include "stage.h"
#include "wg_messages.h"

static inline void drop(struct dp_worker *w, struct rte_mbuf *m, enum mg_drop_reason r)
{
	w->drops[r]++;
	rte_pktmbuf_free(m);
}

void dp_stage_drop(struct dp_worker *w, struct rte_mbuf *m, enum mg_drop_reason r)
{
	drop(w, m, r);
}

static void tx_flush_port(struct dp_worker *w, struct dp_txq *q, uint16_t port_id)
{
	uint16_t sent = 0;
	while (sent < q->n) {
		uint16_t k = rte_eth_tx_burst(port_id, w->idx, q->m + sent, q->n - sent);
		if (k == 0)
			break;
		sent += k;
	}
	w->tx_pkts += sent;
	for (uint16_t i = sent; i < q->n; i++)
		drop(w, q->m[i], MG_DROP_TX_FULL);
	q->n = 0;
}

void dp_tx_flush(struct dp_worker *w, struct dp_burst *b)
{
	for (int p = 0; p < w->dp->n_ports; p++)
		if (b->tx[p].n)
			tx_flush_port(w, &b->tx[p], w->dp->ports[p].port_id);
}

void dp_tx_add(struct dp_worker *w, struct dp_burst *b, int port, struct rte_mbuf *m)
{
	struct dp_txq *q = &b->tx[port];
	if (q->n == DP_TXQ_MAX)
		tx_flush_port(w, q, w->dp->ports[port].port_id);
	q->m[q->n++] = m;
}

/* Hand an mbuf to the main lcore; its dp_meta says why. */
void dp_to_main(struct dp_worker *w, struct rte_mbuf *m)
{
	if (rte_ring_enqueue(w->dp->slow, m) != 0)
		drop(w, m, MG_DROP_SLOW_RING_FULL);
}

void dp_event(struct dp_worker *w, const struct dp_event *ev)
{
	/* A lost event is retried by the next packet that triggers it. */
	rte_ring_enqueue_elem(w->dp->events, (void *)(uintptr_t)ev, sizeof(*ev));
}

/* A message with data[len] to the control process; consumes m. */
static void to_control(struct dp_worker *w, struct rte_mbuf *m, struct mg_msg_hdr hdr,
		       const uint8_t *data, uint16_t len)
{
	struct mg_msg msg;

	if (len > MG_MSG_MAX_DATA) {
		drop(w, m, MG_DROP_TOO_BIG);
		return;
	}
	hdr.len = len;
	hdr.tsc = w->now_tsc;
	msg.hdr = hdr;
	memcpy(msg.data, data, len);
	rte_pktmbuf_free(m);
	if (rte_ring_enqueue_bulk_elem(w->dp->shm.dp2cp, &msg, MG_MSG_SIZE, 1, NULL) != 1)
		w->drops[MG_DROP_PUNT_RING_FULL]++;
}

/* Punt a UDP payload on the WireGuard port to the control process. */
void dp_punt(struct dp_worker *w, struct rte_mbuf *m, const uint8_t *payload, uint16_t len,
	     const struct mg_sockaddr *src, int port)
{
	to_control(w, m,
		   (struct mg_msg_hdr){.type = MG_MSG_RX_UDP, .ep = *src, .port = (uint16_t)port},
		   payload, len);
}

/* A sealed WireGuard message (len bytes at wg) for a peer whose endpoint is
 * a DERP one: the control process relays it. Consumes m. */
void dp_derp_out(struct dp_worker *w, struct rte_mbuf *m, const uint8_t *wg, uint16_t len,
		 uint32_t peer, const struct mg_sockaddr *ep)
{
	to_control(w, m, (struct mg_msg_hdr){.type = MG_MSG_DERP_TX, .peer = peer, .ep = *ep}, wg,
		   len);
}

static unsigned inject_poll(struct dp_worker *w, struct dp_burst *b)
{
	struct rte_mbuf *m[DP_BURST_MAX];
	struct rte_mbuf *enc[DP_BURST_MAX], *derp[DP_BURST_MAX];
	uint32_t peers[DP_BURST_MAX];
	unsigned n, n_enc = 0, n_derp = 0;

	n = rte_ring_dequeue_burst(w->inject, (void **)m, DP_BURST_MAX, NULL);
	for (unsigned i = 0; i < n; i++) {
		struct dp_meta *meta = dp_meta(m[i]);
		if (meta->kind == DP_META_ENCAP) {
			peers[n_enc] = meta->peer;
			enc[n_enc++] = m[i];
		} else if (meta->kind == DP_META_RAW_TX && meta->port < w->dp->n_ports) {
			dp_tx_add(w, b, meta->port, m[i]);
		} else if (meta->kind == DP_META_LAN_OUT) {
			dp_lan_output(w, b, &m[i], 1);
		} else if (meta->kind == DP_META_DERP_IN) {
			derp[n_derp++] = m[i];
		} else {
			drop(w, m[i], MG_DROP_CTL_BAD_MSG);
		}
	}
	if (n_derp)
		dp_derp_input(w, b, derp, (uint16_t)n_derp);
	if (n_enc)
		dp_encap_burst(w, b, enc, peers, n_enc);
	return n;
}

static void rx_port(struct dp_worker *w, struct dp_burst *b, int p)
{
	struct rte_mbuf *m[DP_BURST_MAX];
	const struct dp_port *port = &w->dp->ports[p];
	uint16_t n = rte_eth_rx_burst(port->port_id, w->idx, m, w->dp->cfg->burst);

	if (!n)
		return;
	w->rx_pkts += n;
	if (port->role == MG_PORT_WAN)
		dp_wan_input(w, b, p, m, n);
	else
		dp_lan_input(w, b, p, m, n);
}

/* The worker's load for control's metrics: plain counters here, copied to
 * shm with relaxed stores after each busy poll (and every 1024 idle ones),
 * so readers never see a torn value. */
static void publish_load(struct dp_worker *w)
{
	struct mg_worker_export *e = w->load;

	if (!e)
		return;
	__atomic_store_n(&e->busy_tsc, w->busy_tsc, __ATOMIC_RELAXED);
	__atomic_store_n(&e->crypto_tsc, w->crypto_tsc, __ATOMIC_RELAXED);
	__atomic_store_n(&e->polls, w->loops, __ATOMIC_RELAXED);
	__atomic_store_n(&e->rx_packets, w->rx_pkts, __ATOMIC_RELAXED);
	__atomic_store_n(&e->idle_sleeps, w->idle_sleeps, __ATOMIC_RELAXED);
	if (w->flowlog) {
		struct dp_flowlog_counts c;

		dp_flowlog_counts(w->flowlog, &c);
		__atomic_store_n(&e->flows, c.flows, __ATOMIC_RELAXED);
		__atomic_store_n(&e->flows_untracked, c.untracked, __ATOMIC_RELAXED);
		__atomic_store_n(&e->flow_records, c.records, __ATOMIC_RELAXED);
		__atomic_store_n(&e->flow_ring_full, c.ring_full, __ATOMIC_RELAXED);
	}
}

/* Busy cycles count only iterations that received something, so cycles per
 * packet = busy_tsc / rx_pkts is the cost of the work, not of idle polls.
 * Returns the packets taken in: received on the ports and handed over by
 * control. */
unsigned dp_worker_poll(struct dp_worker *w, struct dp_burst *b)
{
	struct dp_ctx *dp = w->dp;
	uint64_t start = rte_rdtsc();
	uint64_t before = w->rx_pkts;

	w->now_tsc = start;
	for (int p = 0; p < dp->n_ports; p++)
		rx_port(w, b, p);
	unsigned injected = inject_poll(w, b);
	dp_tx_flush(w, b);
	if (w->flowlog)
		dp_flowlog_sweep(w->flowlog, DP_FLOWLOG_SWEEP, start);
	rte_rcu_qsbr_quiescent(dp->rcu, w->idx);
	w->loops++;
	if (w->rx_pkts != before) {
		w->busy_tsc += rte_rdtsc() - start;
		publish_load(w);
	} else if (!(w->loops & 1023)) {
		publish_load(w);
	}
	return (unsigned)(w->rx_pkts - before) + injected;
}

int dp_worker_main(void *arg)
{
	struct dp_worker *w = arg;
	struct dp_ctx *dp = w->dp;
	struct dp_burst *b = rte_zmalloc("burst", sizeof(*b), RTE_CACHE_LINE_SIZE);

	if (!b)
		return -ENOMEM;
	rte_rcu_qsbr_thread_register(dp->rcu, w->idx);
	rte_rcu_qsbr_thread_online(dp->rcu, w->idx);
	/* With dataplane.idle_sleep_us, a worker idle for DP_IDLE_POLLS polls
	 * sleeps between polls until traffic comes back: the first packet
	 * waits at most one sleep in the port's ring, and a loaded worker
	 * never sleeps (nor makes a system call). Its quiescent state was
	 * reported by the poll before, so control's RCU waits for it at most
	 * one sleep too. */
	uint64_t sleep_us = dp->cfg->idle_sleep_us;
	unsigned idle = 0;
	while (!__atomic_load_n(&dp->quit, __ATOMIC_RELAXED)) {
		if (dp_worker_poll(w, b)) {
			idle = 0;
		} else if (sleep_us && ++idle >= DP_IDLE_POLLS) {
			idle = DP_IDLE_POLLS;
			w->idle_sleeps++;
			rte_delay_us_sleep((unsigned)sleep_us);
		}
	}
	if (w->flowlog) { /* what was counted since the flows' last records */
		uint64_t left, until = rte_rdtsc() + rte_get_tsc_hz();
		/* Control drains the ring as it goes; give it a second. */
		while ((left = dp_flowlog_flush(w->flowlog, rte_rdtsc())) && rte_rdtsc() < until)
			rte_delay_us_sleep(1000);
		if (left)
			mg_log(LOG_WARNING,
			       "worker %u: %" PRIu64 " flow records lost at exit (control did not "
			       "drain its ring)",
			       w->idx, left);
		publish_load(w);
	}
	rte_rcu_qsbr_thread_offline(dp->rcu, w->idx);
	rte_rcu_qsbr_thread_unregister(dp->rcu, w->idx);
	rte_free(b);
	return 0;
}
