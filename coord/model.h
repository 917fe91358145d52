/* SPDX-License-Identifier: MIT */
/*
 * The in-memory model of every tailnet, and netmap computation. Pure: no
 * database, no HTTP, the clock comes in as an argument. The server loads it
 * from the database (store.c) and asks it for maps; the tests build it by
 * hand.
 *
 * Why it scales: a change marks its tailnet dirty; cm_recompute then, once
 * per batch of changes, compiles the tailnet's policy, turns every "acls"
 * entry into two node bitsets (sources, destinations), and gives each node
 * its peer bitset (OR of the destinations of the entries it is a source of,
 * and the reverse), its packet filter (only rules of entries it is a
 * destination of are checked), and its self JSON. Each node's PEER JSON is
 * rendered once when the node changes and stamped with a sequence number, so
 * a viewer's delta is: bits that appeared or whose peer changed after the
 * viewer's last map (peers_changed), bits that went (peers_removed), and the
 * filter / self if their hash moved. Memory per node is O(nodes / 8) bytes
 * for the two peer bitsets, not O(peers) JSON.
 */
#ifndef MG_COORD_MODEL_H
#define MG_COORD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl_types.h"
#include "types.h"

#define CM_MAX_TAGS   16
#define CM_MAX_ROUTES 64
#define CM_MAX_EPS    16
#define CM_MAX_RULES  4000000u /* compiled rules per tailnet */

/* A node as stored (what the database row says). */
struct cm_node_info {
	int64_t id, tailnet_id, user_id;
	const char *name, *node_key, *machine_key; /* machine_key NULL: plain WireGuard */
	struct mg_prefix addr4, addr6;
	const char *tags;      /* comma-separated, "" none */
	const char *endpoints; /* comma-separated */
	const char *routes;    /* advertised, comma-separated prefixes */
	const char *approved;  /* approved by an admin, comma-separated prefixes */
	bool ephemeral, plain_wg;
	int64_t key_expiry; /* unix s, 0 never */
	int64_t last_seen;  /* unix s of the last poll, 0 never */
};

struct cm_node {
	struct cm_node_info info; /* strings owned below */
	char *s_name, *s_node_key, *s_machine_key, *s_tags, *s_eps, *s_routes, *s_approved;
	uint32_t slot;
	struct cm_tailnet *tn;
	char *tag[CM_MAX_TAGS];
	unsigned n_tags;
	struct mg_prefix adv[CM_MAX_ROUTES], approved[CM_MAX_ROUTES], primary[CM_MAX_ROUTES];
	unsigned n_adv, n_approved, n_primary;
	bool online, held; /* held: a long poll is waiting on this server */
	bool render_dirty; /* peer_json / self_json need rendering */
	bool gone;	   /* removed: kept until no map refers to it */

	/* PEER JSON, re-rendered when it changes (stamped with the model seq) */
	char *peer_json;
	uint64_t peer_seq;
	/* this node as a viewer */
	uint64_t *cur, *sent; /* peer bitsets by slot */
	uint32_t cur_words, sent_words;
	char *filter_json, *self_json;
	uint64_t filter_hash, self_hash, sent_filter_hash, sent_self_hash;
	uint64_t sent_seq;
	int64_t sent_version;	/* 0: nothing sent (next map is full) */
	bool pending;		/* cur differs from sent */
	bool computed;		/* cur, filter and self exist */
	void *waiter;		/* the server's suspended request, if any */
	int64_t waiter_version; /* the version that request has */
};

struct cm_user {
	int64_t id, tailnet_id;
	char *name;
};

struct cm_tailnet {
	int64_t id;
	char *name;
	char *gw_tag;
	int key_expiry_days;
	struct mg_prefix ula; /* the tailnet's /64 */
	char *policy;	      /* HuJSON text, NULL: allow all */
	int64_t policy_version;
	bool dirty;
	bool need_compile;    /* policy text or the names it resolves changed */
	bool routes_moved;    /* a primary changed since the last recompute */
	char policy_err[256]; /* why the current policy failed to compile, "" */
	/* compiled */
	struct mg_acl_rule *rules;
	size_t n_rules, n_acls;
	uint64_t **acl_src, **acl_dst; /* node bitsets per acls entry */
	struct cm_auto_route *auto_routes;
	size_t n_auto;
};

struct cm_auto_route {
	struct mg_prefix prefix;
	char **who; /* tags, users, groups already expanded */
	size_t n_who;
};

struct coord_model {
	struct cm_node **slots; /* by slot; NULL: retired */
	int64_t *slot_id;	/* node id of every slot ever used */
	uint32_t n_slots, cap_slots;
	/* node id -> slot + 1 (0: empty), open addressing, the newest slot of
	 * an id; cap_by_id a power of two over twice n_slots */
	uint32_t *by_id;
	uint32_t cap_by_id;
	struct cm_tailnet **tailnets;
	size_t n_tailnets;
	struct cm_user *users;
	size_t n_users;
	uint64_t seq;	      /* bumped by every cm_recompute */
	int64_t next_version; /* map versions handed out */
	unsigned offline_seconds;
	/* every full map's "derp_map" (the config's, coord_conf.derp_json; not
	 * owned, lives as long as the model); NULL: {"regions":[]} */
	const char *derp_json;
};

struct coord_model *cm_new(int64_t first_version, unsigned offline_seconds);
void cm_free(struct coord_model *m);

struct cm_tailnet *cm_tailnet_find(struct coord_model *m, int64_t id);
struct cm_tailnet *cm_tailnet_by_name(struct coord_model *m, const char *name);
/* Create or update; marks it dirty if anything changed. NULL on ENOMEM. */
struct cm_tailnet *cm_tailnet_set(struct coord_model *m, int64_t id, const char *name,
				  int key_expiry_days, const char *ula, const char *gw_tag);
/* policy NULL: allow all. Marks dirty if version changed. */
int cm_tailnet_set_policy(struct cm_tailnet *t, const char *policy, int64_t version);

int cm_user_set(struct coord_model *m, int64_t id, int64_t tailnet_id, const char *name);
const char *cm_user_name(const struct coord_model *m, int64_t id);

struct cm_node *cm_node_find(struct coord_model *m, int64_t id);
/* Create or update from info (copied); marks the tailnet dirty if it changed. */
struct cm_node *cm_node_upsert(struct coord_model *m, const struct cm_node_info *info);
/* Returns the node's waiter (the server must answer it), or NULL. */
void *cm_node_remove(struct coord_model *m, int64_t id);
bool cm_node_has_tag(const struct cm_node *n, const char *tag);

/* Online flags from last_seen / held; marks tailnets whose flags moved. */
void cm_tick(struct coord_model *m, int64_t now);

/*
 * Recompute every dirty tailnet: primaries, policy, peers, filters. Calls
 * wake(arg, node) for each node that now has something to send and holds a
 * long poll (node->waiter set). Returns the number of tailnets recomputed.
 */
int cm_recompute(struct coord_model *m, int64_t now, void (*wake)(void *arg, struct cm_node *n),
		 void *arg);

/* Whether a poll with this version gets an answer now (recompute wakes a
 * waiter when this becomes true for its waiter_version). */
bool cm_has_map(const struct cm_node *n, int64_t version);
/*
 * The map for a poll with `version` (full unless version is what was last
 * sent), as a malloc'd JSON string; records it as sent. NULL on ENOMEM.
 */
char *cm_map(struct coord_model *m, struct cm_node *n, int64_t version, size_t *len);

/*
 * Compile a tailnet's policy text against the model (resolver: users,
 * tags, node names, autogroup:member/tagged). 0 or -errno with one line in
 * err. If run_tests, the policy's "tests" are checked too. On success and if
 * t is given, the rules are installed in t.
 */
int cm_policy_compile(struct coord_model *m, struct cm_tailnet *t, int64_t tailnet_id,
		      const char *text, bool run_tests, bool install, char *err, size_t errlen);

/* Is prefix p approved for n (by an admin or by autoApprovers)? */
bool cm_route_approved(const struct coord_model *m, const struct cm_node *n,
		       const struct mg_prefix *p);

/* Render helpers shared with the server. */
uint64_t cm_hash(const char *s);
/* Split a comma list into prefixes; returns count (stops at max), bad items skipped. */
unsigned cm_parse_prefixes(const char *list, struct mg_prefix *out, unsigned max);

#endif /* MG_COORD_MODEL_H */
