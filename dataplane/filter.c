/* SPDX-License-Identifier: MIT */
/*
 * The packet filter's life in the dataplane (see filter.h): staging the
 * rules and tests the control process streams, building and testing the
 * classifiers on the main lcore, the RCU swap, and the worker-side check.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_rcu_qsbr.h>

#include "acl.h"
#include "filter.h"
#include "flow.h"
#include "log.h"
#include "stage.h"

#define FLOWS_PER_WORKER 65536
#define FLOW_TIMEOUT_S	 120

struct dp_filter_staging {
	bool active;
	uint64_t generation;
	uint32_t n_rules, n_tests, got_rules, got_tests;
	struct mg_acl_rule *rules;
	struct mg_acl_test *tests;
};

static void staging_reset(struct dp_filter_staging *s)
{
	free(s->rules);
	free(s->tests);
	memset(s, 0, sizeof(*s));
}

static void filter_free(struct dp_filter *f)
{
	if (f) {
		dp_acl_free(f->acl);
		free(f);
	}
}

/* Publish f (NULL: no filter) and free the previous one once no worker can
 * still be using it. */
static void publish(struct dp_ctx *dp, struct dp_filter *f)
{
	struct dp_filter *old = __atomic_exchange_n(&dp->filter, f, __ATOMIC_RELEASE);
	if (old) {
		rte_rcu_qsbr_synchronize(dp->rcu, RTE_QSBR_THRID_INVALID);
		filter_free(old);
	}
}

int dp_filter_init(struct dp_ctx *dp)
{
	dp->filter_staging = calloc(1, sizeof(*dp->filter_staging));
	if (!dp->filter_staging)
		return -ENOMEM;
	dp->flows = dp_flows_create(dp->n_workers, FLOWS_PER_WORKER, dp->tsc_hz, FLOW_TIMEOUT_S,
				    (int)rte_socket_id());
	if (!dp->flows)
		return -ENOMEM;
	if (dp->cfg->policy_file[0]) {
		struct dp_filter *f = calloc(1, sizeof(*f)); /* deny all until control installs */
		if (!f)
			return -ENOMEM;
		publish(dp, f);
		mg_log(LOG_INFO, "policy configured: everything denied until the control process "
				 "installs it");
	}
	return 0;
}

void dp_filter_fini(struct dp_ctx *dp)
{
	/* Workers have stopped: no grace period to wait for. */
	filter_free(__atomic_exchange_n(&dp->filter, NULL, __ATOMIC_ACQ_REL));
	if (dp->filter_staging) {
		staging_reset(dp->filter_staging);
		free(dp->filter_staging);
		dp->filter_staging = NULL;
	}
	dp_flows_free(dp->flows);
	dp->flows = NULL;
}

static void report(struct dp_ctx *dp, uint64_t gen, int status, const struct dp_filter *f,
		   uint32_t build_us, const char *error)
{
	struct mg_msg msg;
	struct mg_msg_acl_result *r = (struct mg_msg_acl_result *)msg.data;
	msg.hdr =
	    (struct mg_msg_hdr){.type = MG_MSG_ACL_RESULT, .len = sizeof(*r), .tsc = rte_rdtsc()};
	memset(r, 0, sizeof(*r));
	r->generation = gen;
	r->status = status;
	r->build_us = build_us;
	if (f) {
		r->n_rules = f->n_rules;
		r->n_tests = f->n_tests;
	}
	if (error)
		snprintf(r->error, sizeof(r->error), "%s", error);
	if (mg_ring_send(dp->shm.dp2cp, &msg))
		dp_main_drops(dp)[MG_DROP_PUNT_RING_FULL]++;
}

static void commit(struct dp_ctx *dp, const struct mg_msg_acl_begin *b)
{
	struct dp_filter_staging *s = dp->filter_staging;
	char err[512] = "";
	int status = -EINVAL;
	struct dp_filter *f = NULL;
	uint64_t t0 = rte_rdtsc();

	if (!s->active || s->generation != b->generation || s->got_rules != s->n_rules ||
	    s->got_tests != s->n_tests) {
		snprintf(err, sizeof(err), "incomplete filter transfer (generation %llu)",
			 (unsigned long long)b->generation);
		goto out;
	}
	if (!(f = calloc(1, sizeof(*f)))) {
		status = -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	f->generation = s->generation;
	f->n_rules = s->n_rules;
	f->n_tests = s->n_tests;
	/* No rules is a valid policy too: nothing new is let in, replies are. */
	f->acl = dp_acl_build(s->rules, s->n_rules, (int)rte_socket_id(), err, sizeof(err));
	if (!f->acl) {
		status = -ENOMEM;
		goto out;
	}
	if (dp_acl_run_tests(f->acl, s->tests, s->n_tests, err, sizeof(err)))
		goto out;
	status = 0;
out:;
	uint32_t us = (uint32_t)((rte_rdtsc() - t0) * 1000000 / dp->tsc_hz);
	if (status == 0) {
		publish(dp, f);
		mg_log(LOG_INFO,
		       "policy generation %llu installed: %u rule(s), %u test(s), built in %u us",
		       (unsigned long long)f->generation, f->n_rules, f->n_tests, us);
		report(dp, b->generation, 0, f, us, NULL);
	} else {
		mg_log(LOG_ERR, "policy generation %llu refused: %s",
		       (unsigned long long)b->generation, err);
		report(dp, b->generation, status, f, us, err);
		filter_free(f);
	}
	staging_reset(s);
}

static bool chunk_ok(const struct mg_msg *msg, size_t elem, uint32_t have, uint32_t total,
		     const struct mg_msg_acl_chunk **out)
{
	const struct mg_msg_acl_chunk *c = (const struct mg_msg_acl_chunk *)msg->data;
	if (msg->hdr.len < sizeof(*c) || msg->hdr.len > MG_MSG_MAX_DATA)
		return false;
	if (c->count > (msg->hdr.len - sizeof(*c)) / elem || c->first != have ||
	    c->count > total - have)
		return false;
	*out = c;
	return true;
}

void dp_filter_msg(struct dp_ctx *dp, const struct mg_msg *msg)
{
	struct dp_filter_staging *s = dp->filter_staging;
	const struct mg_msg_acl_begin *b = (const struct mg_msg_acl_begin *)msg->data;
	const struct mg_msg_acl_chunk *c;

	switch (msg->hdr.type) {
	case MG_MSG_ACL_BEGIN:
		staging_reset(s);
		if (msg->hdr.len < sizeof(*b) || b->n_rules > (1u << 24) || b->n_tests > (1u << 20))
			break;
		if (b->flags & MG_ACL_F_NONE) {
			publish(dp, NULL);
			report(dp, b->generation, 0, NULL, 0, NULL);
			mg_log(LOG_INFO, "policy removed: everything passes");
			return;
		}
		s->rules = calloc(b->n_rules ? b->n_rules : 1, sizeof(*s->rules));
		s->tests = calloc(b->n_tests ? b->n_tests : 1, sizeof(*s->tests));
		if (!s->rules || !s->tests) {
			report(dp, b->generation, -ENOMEM, NULL, 0,
			       "out of memory staging the filter");
			staging_reset(s);
			return;
		}
		s->active = true;
		s->generation = b->generation;
		s->n_rules = b->n_rules;
		s->n_tests = b->n_tests;
		return;
	case MG_MSG_ACL_RULES:
		if (!s->active ||
		    !chunk_ok(msg, sizeof(struct mg_acl_rule), s->got_rules, s->n_rules, &c) ||
		    c->generation != s->generation)
			break;
		memcpy(s->rules + s->got_rules, c->data, c->count * sizeof(struct mg_acl_rule));
		s->got_rules += c->count;
		return;
	case MG_MSG_ACL_TESTS:
		if (!s->active ||
		    !chunk_ok(msg, sizeof(struct mg_acl_test), s->got_tests, s->n_tests, &c) ||
		    c->generation != s->generation)
			break;
		memcpy(s->tests + s->got_tests, c->data, c->count * sizeof(struct mg_acl_test));
		s->got_tests += c->count;
		return;
	case MG_MSG_ACL_COMMIT:
		if (msg->hdr.len < sizeof(*b))
			break;
		commit(dp, b);
		return;
	}
	/* Malformed or out of order: drop the staging; COMMIT will say so. */
	staging_reset(s);
	dp_main_drops(dp)[MG_DROP_CTL_BAD_MSG]++;
}

uint16_t dp_filter_burst(struct dp_worker *w, struct rte_mbuf **m, uint32_t *peers, uint16_t n)
{
	const struct dp_filter *f = __atomic_load_n(&w->dp->filter, __ATOMIC_ACQUIRE);
	uint8_t *ip[DP_BURST_MAX];
	uint16_t len[DP_BURST_MAX];
	uint8_t accept[DP_BURST_MAX];
	uint16_t k = 0;

	if (!f || !n)
		return n;
	if (!f->acl) {
		for (uint16_t i = 0; i < n; i++)
			dp_stage_drop(w, m[i], MG_DROP_ACL_DENIED);
		return 0;
	}
	for (uint16_t i = 0; i < n; i++) {
		ip[i] = rte_pktmbuf_mtod(m[i], uint8_t *);
		len[i] = rte_pktmbuf_data_len(m[i]);
	}
	dp_acl_check_burst(f->acl, w->dp->flows, w->now_tsc, ip, len, n, accept);
	for (uint16_t i = 0; i < n; i++) {
		if (!accept[i]) {
			dp_stage_drop(w, m[i], MG_DROP_ACL_DENIED);
			continue;
		}
		if (peers)
			peers[k] = peers[i];
		m[k++] = m[i];
	}
	return k;
}

void dp_filter_note_out(struct dp_worker *w, const uint8_t *ip, uint16_t len)
{
	uint8_t proto = (ip[0] >> 4) == 4 ? ip[9] : ip[6];
	if (proto == IPPROTO_UDP &&
	    (w->dp->snat || __atomic_load_n(&w->dp->filter, __ATOMIC_RELAXED)))
		dp_flows_note_out(w->dp->flows, w->idx, w->now_tsc, ip, len);
}

bool dp_filter_udp_reply(struct dp_worker *w, const uint8_t *ip, uint32_t len)
{
	struct dp_flow_key k;
	const uint8_t *udp;
	if ((ip[0] >> 4) == 4) {
		uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4;
		if (ip[9] != IPPROTO_UDP || len < ihl + 8 || (ip[6] & 0x1f) || ip[7])
			return false;
		udp = ip + ihl;
		dp_flow_key_make(&k, AF_INET, ip + 16, ip + 12, udp + 2, udp);
	} else {
		if (ip[6] != IPPROTO_UDP || len < 48)
			return false;
		udp = ip + 40;
		dp_flow_key_make(&k, AF_INET6, ip + 24, ip + 8, udp + 2, udp);
	}
	return dp_flows_seen(w->dp->flows, w->now_tsc, &k);
}
