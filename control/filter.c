/* SPDX-License-Identifier: MIT */
/*
 * The packet filter: the control process compiles the policy file
 * (policy/) into accept rules and tests and streams them to the dataplane,
 * which builds rte_acl classifiers off the workers, runs the policy's tests
 * against them and swaps them in with RCU (dataplane/service.c). A policy
 * is installed only if its tests pass there; otherwise the previous one
 * stays and the error is logged.
 *
 * Peer names (`name` in the config) resolve to the peer's allowed IPs at
 * compile time; the policy is recompiled at start and on SIGHUP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ring.h>

#include "cp.h"
#include "log.h"
#include "policy.h"

#define FILTER_RING_MARGIN 64 /* ring slots left for handshakes meanwhile */

struct cp_filter {
	struct mg_policy *cur;	/* being sent, or installed (== good) */
	struct mg_policy *good; /* last one the dataplane accepted; NULL: none yet */
	uint64_t cur_gen, good_gen, next_gen;
	bool sending;  /* chunks of cur are on their way */
	bool awaiting; /* COMMIT sent, no result yet */
	bool begun;
	size_t next_rule, next_test;
};

static int resolve_peer(void *arg, const char *name, struct mg_prefix_list *out)
{
	struct cp_device *d = arg;
	for (uint32_t i = 0; i < d->max_peers; i++) {
		struct cp_peer *p = d->by_slot[i];
		if (!p || strcmp(p->name, name))
			continue;
		for (uint32_t k = 0; k < p->n_aips; k++)
			if (mg_prefix_list_add(out, &p->aips[k]))
				return -ENOMEM;
		return 0;
	}
	return -ENOENT;
}

static int resolve_conf_peer(void *arg, const char *name, struct mg_prefix_list *out)
{
	const struct mg_config *cfg = arg;
	for (int i = 0; i < cfg->n_peers; i++) {
		const struct mg_peer_conf *p = &cfg->peers[i];
		if (strcmp(p->name, name))
			continue;
		for (int k = 0; k < p->n_allowed_ips; k++)
			if (mg_prefix_list_add(out, &p->allowed_ips[k]))
				return -ENOMEM;
		return 0;
	}
	return -ENOENT;
}

int cp_filter_check(const struct mg_config *cfg, char *msg, size_t msglen)
{
	struct mg_policy_resolver r = {.resolve = resolve_conf_peer, .arg = (void *)cfg};
	struct mg_policy_opts o = {.resolver = &r};
	struct mg_policy p;
	if (!cfg->policy_file[0]) {
		snprintf(msg, msglen, "no policy_file");
		return 0;
	}
	if (mg_policy_load(cfg->policy_file, &o, &p, msg, msglen))
		return -EINVAL;
	snprintf(msg, msglen,
		 "%s: %zu acl entr%s -> %zu rule(s), %zu test(s) (tests run when the dataplane "
		 "installs it)",
		 cfg->policy_file, p.n_acls, p.n_acls == 1 ? "y" : "ies", p.n_rules, p.n_tests);
	mg_policy_free(&p);
	return 0;
}

static void policy_free(struct mg_policy *p)
{
	if (p) {
		mg_policy_free(p);
		free(p);
	}
}

/* Compile the configured policy file; NULL (logged) on any error. */
static struct mg_policy *compile(struct cp_device *d)
{
	struct mg_policy_resolver r = {.resolve = resolve_peer, .arg = d};
	struct mg_policy_opts o = {.resolver = &r};
	struct mg_policy *p = calloc(1, sizeof(*p));
	char err[512];

	if (!p) {
		mg_log(LOG_ERR, "policy: out of memory");
		return NULL;
	}
	if (mg_policy_load(d->cfg->policy_file, &o, p, err, sizeof(err))) {
		mg_log(LOG_ERR, "policy refused: %s", err);
		free(p);
		return NULL;
	}
	mg_log(LOG_INFO, "policy %s: %zu acl entr%s -> %zu rule(s), %zu test(s)",
	       d->cfg->policy_file, p->n_acls, p->n_acls == 1 ? "y" : "ies", p->n_rules,
	       p->n_tests);
	return p;
}

/* Send cur again from the start (new policy, or a dataplane to re-program). */
static void restart_send(struct cp_filter *f)
{
	f->sending = f->cur != NULL;
	f->awaiting = false;
	f->begun = false;
	f->next_rule = f->next_test = 0;
}

int cp_filter_init(struct cp_device *d)
{
	if (!d->cfg->policy_file[0])
		return 0;
	struct cp_filter *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	d->filter = f;
	f->cur = compile(d);
	if (!f->cur)
		return -EINVAL;
	f->cur_gen = ++f->next_gen;
	restart_send(f);
	return 0;
}

void cp_filter_fini(struct cp_device *d)
{
	struct cp_filter *f = d->filter;
	if (!f)
		return;
	if (f->good != f->cur)
		policy_free(f->good);
	policy_free(f->cur);
	free(f);
	d->filter = NULL;
}

int cp_filter_install(struct cp_device *d, struct mg_policy *p)
{
	struct cp_filter *f = d->filter;
	if (!f) {
		if (!(f = calloc(1, sizeof(*f)))) {
			policy_free(p);
			return -ENOMEM;
		}
		d->filter = f;
	}
	if (f->cur != f->good)
		policy_free(f->cur);
	f->cur = p;
	f->cur_gen = ++f->next_gen;
	restart_send(f);
	return 0;
}

void cp_filter_reload(struct cp_device *d)
{
	struct cp_filter *f = d->filter;
	if (!f) {
		mg_log(LOG_INFO, "reload: no policy_file configured");
		return;
	}
	struct mg_policy *p = compile(d);
	if (!p) {
		mg_log(LOG_ERR, "policy not changed (the previous one stays)");
		return;
	}
	if (f->cur != f->good)
		policy_free(f->cur);
	f->cur = p;
	f->cur_gen = ++f->next_gen;
	restart_send(f);
}

void cp_filter_resync(struct cp_device *d)
{
	struct cp_filter *f = d->filter;
	if (f)
		restart_send(f);
}

static int send_begin(struct cp_device *d, uint16_t type)
{
	struct cp_filter *f = d->filter;
	struct mg_msg m;
	struct mg_msg_acl_begin *b = (struct mg_msg_acl_begin *)m.data;
	m.hdr = (struct mg_msg_hdr){.type = type, .len = sizeof(*b)};
	*b = (struct mg_msg_acl_begin){.generation = f->cur_gen,
				       .n_rules = (uint32_t)f->cur->n_rules,
				       .n_tests = (uint32_t)f->cur->n_tests};
	return cp_dp_send(d, &m);
}

static int send_chunk(struct cp_device *d, uint16_t type, const void *elems, size_t elem_size,
		      size_t first, size_t count)
{
	struct mg_msg m;
	struct mg_msg_acl_chunk *c = (struct mg_msg_acl_chunk *)m.data;
	c->generation = d->filter->cur_gen;
	c->first = (uint32_t)first;
	c->count = (uint32_t)count;
	memcpy(c->data, (const uint8_t *)elems + first * elem_size, count * elem_size);
	m.hdr =
	    (struct mg_msg_hdr){.type = type, .len = (uint16_t)(sizeof(*c) + count * elem_size)};
	return cp_dp_send(d, &m);
}

/* Stream what the ring has room for; the rest on the next call. */
void cp_filter_maintain(struct cp_device *d)
{
	struct cp_filter *f = d->filter;
	if (!f || !f->sending || !d->attached || d->resync || d->syncing)
		return;
	struct mg_policy *p = f->cur;
	while (rte_ring_free_count(d->shm.cp2dp) > FILTER_RING_MARGIN) {
		int rc;
		if (!f->begun) {
			rc = send_begin(d, MG_MSG_ACL_BEGIN);
			f->begun = rc == 0;
		} else if (f->next_rule < p->n_rules) {
			size_t n = RTE_MIN(p->n_rules - f->next_rule, MG_ACL_RULES_PER_MSG);
			rc = send_chunk(d, MG_MSG_ACL_RULES, p->rules, sizeof(*p->rules),
					f->next_rule, n);
			if (!rc)
				f->next_rule += n;
		} else if (f->next_test < p->n_tests) {
			size_t n = RTE_MIN(p->n_tests - f->next_test, MG_ACL_TESTS_PER_MSG);
			rc = send_chunk(d, MG_MSG_ACL_TESTS, p->tests, sizeof(*p->tests),
					f->next_test, n);
			if (!rc)
				f->next_test += n;
		} else {
			rc = send_begin(d, MG_MSG_ACL_COMMIT);
			if (!rc) {
				f->sending = false;
				f->awaiting = true;
			}
			return;
		}
		if (rc)
			return; /* ring full after all: cp_dp_send asked for a re-sync */
	}
}

void cp_filter_result(struct cp_device *d, const struct mg_msg *m)
{
	struct cp_filter *f = d->filter;
	const struct mg_msg_acl_result *r = (const struct mg_msg_acl_result *)m->data;
	if (!f || m->hdr.len < sizeof(*r) || r->generation != f->cur_gen || !f->awaiting)
		return; /* an older generation's answer */
	f->awaiting = false;
	if (r->status == 0) {
		mg_log(LOG_INFO, "policy installed: %u rule(s), %u test(s) passed, built in %u us",
		       r->n_rules, r->n_tests, r->build_us);
		if (f->good != f->cur)
			policy_free(f->good);
		f->good = f->cur;
		f->good_gen = f->cur_gen;
		return;
	}
	char err[sizeof(r->error) + 1];
	memcpy(err, r->error, sizeof(r->error));
	err[sizeof(r->error)] = 0;
	mg_log(LOG_ERR, "policy refused by the dataplane: %s; %s", err,
	       f->good ? "the previous policy stays" : "no policy installed: everything is denied");
	policy_free(f->cur);
	f->cur = f->good;
	f->cur_gen = f->good_gen;
}
