/* SPDX-License-Identifier: MIT */
/*
 * meshgate-coord: the coordination server (docs/coord-protocol.md).
 *
 * One thread owns everything: libmicrohttpd runs in external-loop epoll
 * mode (MHD_USE_EPOLL without an internal thread) and this file's loop
 * polls MHD's epoll fd, calls MHD_run, then does the periodic work (reload
 * from the database when state.version moved, recompute dirty tailnets, wake
 * long polls, time them out, online/offline, ephemeral reaping). So the
 * database connection, the model and the waiters need no locks, and a long
 * poll costs a suspended MHD connection (MHD_ALLOW_SUSPEND_RESUME) and a
 * small struct, not a thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <sodium.h>

#include "addr.h"
#include "auth.h"
#include "conf.h"
#include "diff.h"
#include "log.h"
#include "model.h"
#include "req.h"
#include "store.h"
#include "strbuf.h"

#define API	     "/api/v1/"
#define CT_JSON	     "application/json"
#define RL_SLOTS     65536u
#define MAX_TOUCH    65536u
#define RECOMPUTE_MS 50

enum rstate { R_READING, R_WAITING, R_READY };

struct req {
	struct server *srv;
	struct MHD_Connection *conn;
	char *body;
	size_t len, cap;
	bool too_big, limited;
	enum rstate state;
	struct cm_node *node; /* waiting on */
	int64_t version, deadline;
	struct req *prev, *next; /* wait list, by deadline */
	unsigned status;
	struct MHD_Response *resp;
	int fd; /* watched for hang-up while waiting; -1: not */
};

struct bucket {
	uint64_t key; /* 0: free */
	double tokens;
	int64_t last_ms;
};

struct limiter {
	struct bucket *b;
	size_t used;
	double rate, burst;
};

struct server {
	struct coord_conf conf;
	struct coord_store *st;
	struct coord_model *m;
	struct MHD_Daemon *d;
	char token[512];
	char *tls_cert, *tls_key;
	bool reload;
	int64_t last_version_check_ms, last_tick_ms, last_prune, last_recompute_ms;
	struct req *wait_head, *wait_tail;
	size_t n_waiting;
	struct limiter ip_rl, key_rl;
	int hup_fd; /* epoll set of waiting polls' sockets: a peer that goes away */
	int64_t touch_id[MAX_TOUCH], touch_seen[MAX_TOUCH];
	size_t n_touch;
};

static volatile sig_atomic_t stop;

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- rate limits (token buckets in a bounded table) ------------------------- */

static bool limiter_init(struct limiter *l, double rate, double burst)
{
	l->b = calloc(RL_SLOTS, sizeof(*l->b));
	l->rate = rate;
	l->burst = burst;
	return l->b != NULL;
}

/* true: allowed. When the table fills up it is cleared: worst case a burst more. */
static bool limiter_take(struct limiter *l, const void *key, size_t len, int64_t ms, double *retry)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (size_t k = 0; k < len; k++)
		h = (h ^ ((const uint8_t *)key)[k]) * 1099511628211ull;
	h |= 1;
	if (l->used > RL_SLOTS / 2) {
		memset(l->b, 0, RL_SLOTS * sizeof(*l->b));
		l->used = 0;
	}
	for (i = h & (RL_SLOTS - 1); l->b[i].key && l->b[i].key != h; i = (i + 1) & (RL_SLOTS - 1))
		;
	struct bucket *b = &l->b[i];
	if (!b->key) {
		*b = (struct bucket){.key = h, .tokens = l->burst, .last_ms = ms};
		l->used++;
	}
	b->tokens += (double)(ms - b->last_ms) / 1000.0 * l->rate;
	if (b->tokens > l->burst)
		b->tokens = l->burst;
	b->last_ms = ms;
	if (b->tokens < 1.0) {
		*retry = (1.0 - b->tokens) / l->rate;
		return false;
	}
	b->tokens -= 1.0;
	return true;
}

/* ---- responses ----------------------------------------------------------------- */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, char *buf, size_t len,
				const char *ctype, unsigned retry_after)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!r) {
		free(buf);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", ctype);
	if (retry_after) {
		char s[16];
		snprintf(s, sizeof(s), "%u", retry_after);
		MHD_add_response_header(r, "Retry-After", s);
	}
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);

	json_decref(j);
	if (!s)
		return MHD_NO;
	return send_buf(c, status, s, strlen(s), CT_JSON, 0);
}

static enum MHD_Result send_err(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return send_json(c, status, json_pack("{ss}", "error", msg));
}

static unsigned status_of(int err)
{
	switch (err) {
	case -EINVAL:
		return MHD_HTTP_BAD_REQUEST;
	case -EACCES:
		return MHD_HTTP_UNAUTHORIZED;
	case -EPERM:
		return MHD_HTTP_FORBIDDEN;
	case -ENOENT:
		return MHD_HTTP_NOT_FOUND;
	case -EEXIST:
		return MHD_HTTP_CONFLICT;
	case -E2BIG:
		return MHD_HTTP_CONTENT_TOO_LARGE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* ---- model upkeep ---------------------------------------------------------------- */

static void wait_unlink(struct server *s, struct req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else if (s->wait_head == r)
		s->wait_head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else if (s->wait_tail == r)
		s->wait_tail = r->prev;
	r->prev = r->next = NULL;
	s->n_waiting--;
}

static void touch(struct server *s, struct cm_node *n, int64_t now)
{
	n->info.last_seen = now;
	if (s->n_touch < MAX_TOUCH) {
		s->touch_id[s->n_touch] = n->info.id;
		s->touch_seen[s->n_touch++] = now;
	}
}

/*
 * A node whose long poll this replica holds is online; the other replicas
 * only know it from last_seen in the database, written when a poll starts
 * or ends. A poll may be held longer than offline_seconds, so its node's
 * last_seen is refreshed while it waits (a third of offline_seconds before
 * it would look stale), or it would flap offline on the other replicas and
 * its routes with it.
 */
static void touch_held(struct server *s, int64_t now)
{
	int64_t every = (int64_t)s->conf.offline_seconds / 3;

	if (every < 1)
		every = 1;
	for (struct req *r = s->wait_head; r; r = r->next)
		if (r->node && now - r->node->info.last_seen >= every)
			touch(s, r->node, now);
}

/* Finish a suspended poll with a prepared body and resume it. */
/*
 * A suspended connection is not polled by MHD, so a node that crashes while
 * its poll waits would look online until the offline timeout. Its socket
 * goes into our own epoll set (hang-up only) with TCP keepalive, so a peer
 * that closes or dies is noticed within seconds: the node goes offline and
 * its primary routes fail over.
 */
static void hup_watch(struct server *s, struct req *r)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLHUP | EPOLLERR, .data.ptr = r};
	int one = 1, idle = 5, intvl = 2, cnt = 3;

	r->fd = -1;
	if (!ci || ci->connect_fd < 0)
		return;
	setsockopt(ci->connect_fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	if (epoll_ctl(s->hup_fd, EPOLL_CTL_ADD, ci->connect_fd, &ev) == 0)
		r->fd = ci->connect_fd;
}

static void hup_unwatch(struct server *s, struct req *r)
{
	if (r->fd >= 0)
		epoll_ctl(s->hup_fd, EPOLL_CTL_DEL, r->fd, NULL);
	r->fd = -1;
}

static void finish_waiter(struct server *s, struct req *r, unsigned status, char *body, size_t len)
{
	hup_unwatch(s, r);
	if (r->node) {
		r->node->waiter = NULL;
		r->node->held = false;
		touch(s, r->node, now_s());
		r->node = NULL;
	}
	wait_unlink(s, r);
	r->resp = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
	if (r->resp)
		MHD_add_response_header(r->resp, "Content-Type", CT_JSON);
	else
		free(body);
	r->status = status;
	r->state = R_READY;
	MHD_resume_connection(r->conn);
}

/* The answer to a long poll without a new map (its version again): the node
 * polls again. NULL when out of memory. */
static char *keepalive_body(int64_t version)
{
	char *b = NULL;
	if (asprintf(&b, "{\"version\":%" PRId64 ",\"keepalive\":true}", version) < 0)
		return NULL;
	return b;
}

static void keepalive_waiter(struct server *s, struct req *r)
{
	char *b = keepalive_body(r->version);
	finish_waiter(s, r, MHD_HTTP_OK, b, b ? strlen(b) : 0);
}

static void wake(void *arg, struct cm_node *n)
{
	struct server *s = arg;
	struct req *r = n->waiter;
	size_t len;
	char *map;

	if (!r)
		return;
	map = cm_map(s->m, n, r->version, &len);
	finish_waiter(s, r, map ? MHD_HTTP_OK : MHD_HTTP_INTERNAL_SERVER_ERROR, map, map ? len : 0);
}

static void removed(void *arg, void *waiter)
{
	struct server *s = arg;
	struct req *r = waiter;
	char *b = strdup("{\"error\":\"this node was deleted\"}");

	r->node = NULL; /* the node struct is gone */
	finish_waiter(s, r, MHD_HTTP_GONE, b, b ? strlen(b) : 0);
}

static void sync_model(struct server *s, bool force)
{
	int64_t ms = now_ms();

	/* PostgreSQL: another replica's NOTIFY (coord_db_listen) skips the wait */
	if (force || s->reload || coord_db_notified(store_db(s->st)) > 0 ||
	    ms - s->last_version_check_ms >= 100) {
		s->last_version_check_ms = ms;
		s->reload = false;
		store_load(s->st, s->m, false, removed, s);
	}
	/* Batch: changes arriving within RECOMPUTE_MS are computed together
	 * (a recompute costs O(tailnet), not O(change)). */
	if (force || ms - s->last_recompute_ms >= RECOMPUTE_MS) {
		if (cm_recompute(s->m, now_s(), wake, s))
			s->last_recompute_ms = now_ms();
	}
}

static void periodic(struct server *s)
{
	int64_t ms = now_ms(), now = now_s();

	sync_model(s, false);
	/* long polls that waited long enough get a keepalive */
	while (s->wait_head && s->wait_head->deadline <= ms)
		keepalive_waiter(s, s->wait_head);
	if (ms - s->last_tick_ms < 1000)
		return;
	s->last_tick_ms = ms;
	touch_held(s, now);
	if (s->n_touch) {
		store_touch(s->st, s->touch_id, s->touch_seen, s->n_touch);
		s->n_touch = 0;
	}
	store_load_last_seen(s->st, s->m, now - s->conf.offline_seconds - 5);
	cm_tick(s->m, now);
	if (store_reap_ephemeral(s->st, now - s->conf.ephemeral_seconds) > 0)
		s->reload = true;
	if (now - s->last_prune >= 30) {
		store_nonce_prune(s->st, now);
		s->last_prune = now;
	}
}

/* ---- node API -------------------------------------------------------------------- */

static const char *hdr(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static enum MHD_Result node_register(struct server *s, struct req *r, const char *mkey)
{
	struct coord_register_req rq;
	struct coord_reg_result res;
	char err[256];
	int ret;

	if ((ret = coord_parse_register(r->body, r->len, &rq, err, sizeof(err))) < 0)
		return send_err(r->conn, MHD_HTTP_BAD_REQUEST, err);
	ret = store_register(s->st, &rq, mkey, now_s(), &res, err, sizeof(err));
	if (ret < 0)
		return send_err(r->conn, status_of(ret), err);
	s->reload = true;
	mg_log(LOG_INFO, "node %" PRId64 " \"%s\" registered (%s)", res.node_id, res.name, mkey);
	return send_json(r->conn, MHD_HTTP_OK,
			 json_pack("{sIsss[ss]sIss}", "node_id", (json_int_t)res.node_id, "name",
				   res.name, "addresses", res.addr4, res.addr6, "key_expiry",
				   (json_int_t)res.key_expiry, "tailnet", res.tailnet));
}

static struct cm_node *node_of(struct server *s, const char *mkey, char *err, size_t errlen)
{
	int64_t id;
	struct cm_node *n;

	if (store_node_by_mkey(s->st, mkey, &id) < 0) {
		snprintf(
		    err, errlen,
		    "this machine key is not registered (POST /api/v1/machine/register first)");
		return NULL;
	}
	n = cm_node_find(s->m, id);
	if (!n) {
		sync_model(s, true);
		n = cm_node_find(s->m, id);
	}
	if (!n)
		snprintf(err, errlen, "node %" PRId64 " is not loaded yet; retry", id);
	return n;
}

static enum MHD_Result node_map(struct server *s, struct req *r, const char *mkey)
{
	struct coord_map_req rq;
	struct cm_node *n;
	char err[256];
	int64_t expiry;
	size_t len;

	if (coord_parse_map(r->body, r->len, &rq, err, sizeof(err)) < 0)
		return send_err(r->conn, MHD_HTTP_BAD_REQUEST, err);
	if (!(n = node_of(s, mkey, err, sizeof(err))))
		return send_err(r->conn, MHD_HTTP_FORBIDDEN, err);
	if ((rq.l.has_endpoints || rq.l.has_routes)) {
		int ret = store_node_update(s->st, n->info.id, NULL, &rq.l, now_s(), &expiry, err,
					    sizeof(err));
		if (ret < 0)
			return send_err(r->conn, status_of(ret), err);
		sync_model(s, true);
		if (!(n = node_of(s, mkey, err, sizeof(err))))
			return send_err(r->conn, MHD_HTTP_GONE, err);
	}
	touch(s, n, now_s());
	/* Answer now only from an up-to-date model; otherwise wait for the next
	 * (batched) recompute, which wakes this poll. */
	bool stale = s->reload || n->tn->dirty || !n->computed;
	if (!stale && cm_has_map(n, rq.version)) {
		char *map = cm_map(s->m, n, rq.version, &len);
		if (!map)
			return send_err(r->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return send_buf(r->conn, MHD_HTTP_OK, map, len, CT_JSON, 0);
	}
	if (stop) { /* shutting down: no new poll is held (see drain_waiters) */
		char *b = keepalive_body(rq.version);
		if (!b)
			return send_err(r->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return send_buf(r->conn, MHD_HTTP_OK, b, strlen(b), CT_JSON, 0);
	}
	/* wait: the node holds one poll at a time, an older one is answered now */
	if (n->waiter)
		keepalive_waiter(s, n->waiter);
	r->state = R_WAITING;
	r->node = n;
	r->version = rq.version;
	r->deadline = now_ms() + (int64_t)s->conf.long_poll_seconds * 1000;
	r->prev = s->wait_tail;
	r->next = NULL;
	if (s->wait_tail)
		s->wait_tail->next = r;
	else
		s->wait_head = r;
	s->wait_tail = r;
	s->n_waiting++;
	n->waiter = r;
	n->waiter_version = rq.version;
	n->held = true;
	hup_watch(s, r);
	if (stale)
		n->tn->dirty = true;
	MHD_suspend_connection(r->conn);
	return MHD_YES;
}

static enum MHD_Result node_update(struct server *s, struct req *r, const char *mkey)
{
	struct coord_update_req rq;
	char err[256];
	int64_t id, expiry;
	int ret;

	if (coord_parse_update(r->body, r->len, &rq, err, sizeof(err)) < 0)
		return send_err(r->conn, MHD_HTTP_BAD_REQUEST, err);
	if (store_node_by_mkey(s->st, mkey, &id) < 0)
		return send_err(r->conn, MHD_HTTP_FORBIDDEN, "this machine key is not registered");
	ret = store_node_update(s->st, id, rq.node_key, &rq.l, now_s(), &expiry, err, sizeof(err));
	if (ret < 0)
		return send_err(r->conn, status_of(ret), err);
	s->reload = true;
	return send_json(r->conn, MHD_HTTP_OK, json_pack("{sI}", "key_expiry", (json_int_t)expiry));
}

static enum MHD_Result node_logout(struct server *s, struct req *r, const char *mkey)
{
	char err[256];
	int64_t id;
	int ret;

	if (store_node_by_mkey(s->st, mkey, &id) < 0)
		return send_err(r->conn, MHD_HTTP_FORBIDDEN, "this machine key is not registered");
	if ((ret = store_node_logout(s->st, id, err, sizeof(err))) < 0)
		return send_err(r->conn, status_of(ret), err);
	struct cm_node *n = cm_node_find(s->m, id);
	if (n) {
		if (n->waiter)
			finish_waiter(s, n->waiter, MHD_HTTP_OK, strdup("{\"logged_out\":true}"),
				      19);
		n->info.last_seen = 0;
		n->held = false;
	}
	s->reload = true;
	return send_json(r->conn, MHD_HTTP_OK, json_pack("{sb}", "logged_out", 1));
}

static enum MHD_Result node_api(struct server *s, struct req *r, const char *url,
				const char *method)
{
	struct MHD_Connection *c = r->conn;
	struct coord_sig_hdrs h = {hdr(c, "X-Meshgate-Machine"), hdr(c, "X-Meshgate-Timestamp"),
				   hdr(c, "X-Meshgate-Nonce"), hdr(c, "X-Meshgate-Signature")};
	const char *op = url + strlen(API "machine/");
	char mkey[COORD_MKEY_STRLEN], err[256];
	int64_t ts;
	double retry;
	int ret;

	if (strcmp(method, "POST"))
		return send_err(c, MHD_HTTP_METHOD_NOT_ALLOWED, "machine API requests are POSTs");
	if (strcmp(op, "register") && strcmp(op, "map") && strcmp(op, "update") &&
	    strcmp(op, "logout"))
		return send_err(c, MHD_HTTP_NOT_FOUND, "no such machine API endpoint");
	if (coord_sig_check(&h, method, url, r->body, r->len, now_s(), s->conf.clock_skew, mkey,
			    &ts, err, sizeof(err)) < 0)
		return send_err(c, MHD_HTTP_UNAUTHORIZED, err);
	if (!limiter_take(&s->key_rl, mkey, strlen(mkey), now_ms(), &retry)) {
		char *b = strdup("{\"error\":\"too many requests from this machine key\"}");
		return send_buf(c, MHD_HTTP_TOO_MANY_REQUESTS, b, b ? strlen(b) : 0, CT_JSON,
				(unsigned)retry + 1);
	}
	/* Check the body before the nonce is spent: a malformed request stores nothing. */
	if (!strcmp(op, "register") || !strcmp(op, "map") || !strcmp(op, "update")) {
		union {
			struct coord_register_req a;
			struct coord_map_req b;
			struct coord_update_req c;
		} tmp;
		ret = op[0] == 'r' ? coord_parse_register(r->body, r->len, &tmp.a, err, sizeof(err))
		      : op[0] == 'm'
			  ? coord_parse_map(r->body, r->len, &tmp.b, err, sizeof(err))
			  : coord_parse_update(r->body, r->len, &tmp.c, err, sizeof(err));
		if (ret < 0)
			return send_err(c, MHD_HTTP_BAD_REQUEST, err);
	}
	ret = store_nonce_use(s->st, mkey, h.nonce, ts);
	if (ret == -EEXIST)
		return send_err(c, MHD_HTTP_UNAUTHORIZED,
				"replayed request: this nonce was already used");
	if (ret < 0)
		return send_err(c, MHD_HTTP_SERVICE_UNAVAILABLE, "database busy; retry");
	switch (op[0]) {
	case 'r':
		return node_register(s, r, mkey);
	case 'm':
		return node_map(s, r, mkey);
	case 'u':
		return node_update(s, r, mkey);
	default:
		return node_logout(s, r, mkey);
	}
}

/* ---- admin API ------------------------------------------------------------------- */

static const char *arg(struct MHD_Connection *c, const char *k)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

static json_t *prefixes_json(const struct mg_prefix *p, unsigned n)
{
	json_t *a = json_array();
	char buf[MG_PREFIX_STRLEN];

	for (unsigned i = 0; i < n; i++)
		json_array_append_new(a, json_string(mg_prefix_fmt(&p[i], buf, sizeof(buf))));
	return a;
}

static json_t *node_json(struct server *s, const struct cm_node *n)
{
	char a4[MG_PREFIX_STRLEN], a6[MG_PREFIX_STRLEN];
	json_t *o = json_pack(
	    "{sIsssssss[ss]sssIsIsbsbsbss}", "id", (json_int_t)n->info.id, "name", n->info.name,
	    "tailnet", n->tn ? n->tn->name : "", "user", cm_user_name(s->m, n->info.user_id),
	    "addresses", mg_prefix_fmt(&n->info.addr4, a4, sizeof(a4)),
	    mg_prefix_fmt(&n->info.addr6, a6, sizeof(a6)), "node_key", n->info.node_key,
	    "key_expiry", (json_int_t)n->info.key_expiry, "last_seen",
	    (json_int_t)n->info.last_seen, "online", n->online, "ephemeral", n->info.ephemeral,
	    "plain_wireguard", n->info.plain_wg, "endpoints", n->info.endpoints);
	if (!o)
		return json_object();
	json_object_set_new(o, "tags", json_string(n->info.tags));
	json_object_set_new(o, "advertised_routes", prefixes_json(n->adv, n->n_adv));
	json_object_set_new(o, "primary_routes", prefixes_json(n->primary, n->n_primary));
	return o;
}

static int tailnet_arg(struct server *s, struct MHD_Connection *c, int64_t *id, bool required,
		       char *err, size_t errlen)
{
	const char *name = arg(c, "tailnet");
	struct cm_tailnet *t;

	*id = 0;
	if (!name || !*name) {
		if (!required)
			return 0;
		snprintf(err, errlen, "?tailnet=NAME is required");
		return -EINVAL;
	}
	if (!(t = cm_tailnet_by_name(s->m, name))) {
		snprintf(err, errlen, "no tailnet \"%.64s\"", name);
		return -ENOENT;
	}
	*id = t->id;
	return 0;
}

static enum MHD_Result admin_nodes(struct server *s, struct MHD_Connection *c)
{
	char err[128];
	int64_t tn;
	json_t *a = json_array();
	int ret = tailnet_arg(s, c, &tn, false, err, sizeof(err));

	if (ret < 0) {
		json_decref(a);
		return send_err(c, status_of(ret), err);
	}
	for (uint32_t i = 0; i < s->m->n_slots; i++) {
		struct cm_node *n = s->m->slots[i];
		if (n && (!tn || n->info.tailnet_id == tn))
			json_array_append_new(a, node_json(s, n));
	}
	return send_json(c, MHD_HTTP_OK, a);
}

static enum MHD_Result admin_routes(struct server *s, struct MHD_Connection *c)
{
	json_t *a = json_array();
	char buf[MG_PREFIX_STRLEN];

	for (uint32_t i = 0; i < s->m->n_slots; i++) {
		struct cm_node *n = s->m->slots[i];
		if (!n)
			continue;
		for (unsigned k = 0; k < n->n_adv; k++) {
			bool primary = false;
			for (unsigned q = 0; q < n->n_primary; q++)
				primary |= !memcmp(&n->primary[q], &n->adv[k], sizeof(n->adv[k]));
			json_array_append_new(
			    a, json_pack("{sIsssssbsbsb}", "node_id", (json_int_t)n->info.id,
					 "node", n->info.name, "prefix",
					 mg_prefix_fmt(&n->adv[k], buf, sizeof(buf)), "approved",
					 cm_route_approved(s->m, n, &n->adv[k]), "primary", primary,
					 "online", n->online));
		}
	}
	return send_json(c, MHD_HTTP_OK, a);
}

static enum MHD_Result admin_policy_put(struct server *s, struct req *r)
{
	struct coord_policy_req rq;
	struct cm_tailnet *t;
	char err[512];
	int64_t v;
	int ret;

	if (coord_parse_policy(r->body, r->len, &rq, err, sizeof(err)) < 0)
		return send_err(r->conn, MHD_HTTP_BAD_REQUEST, err);
	if (!(t = cm_tailnet_by_name(s->m, rq.tailnet))) {
		free(rq.policy);
		snprintf(err, sizeof(err), "no tailnet \"%s\"", rq.tailnet);
		return send_err(r->conn, MHD_HTTP_NOT_FOUND, err);
	}
	ret = cm_policy_compile(s->m, NULL, t->id, rq.policy, true, false, err, sizeof(err));
	if (ret == 0)
		ret = store_policy_set(s->st, t->id, rq.policy, now_s(), &v, err, sizeof(err));
	free(rq.policy);
	if (ret < 0)
		return send_err(r->conn, ret == -E2BIG ? MHD_HTTP_BAD_REQUEST : status_of(ret),
				err);
	mg_log(LOG_NOTICE, "tailnet %s: policy version %" PRId64 " installed", t->name, v);
	sync_model(s, true);
	return send_json(r->conn, MHD_HTTP_OK,
			 json_pack("{sssI}", "tailnet", t->name, "version", (json_int_t)v));
}

static enum MHD_Result admin_policy_get(struct server *s, struct MHD_Connection *c,
					const char *what)
{
	char err[256], *text = NULL;
	int64_t tn, ver;
	int ret = tailnet_arg(s, c, &tn, true, err, sizeof(err));
	json_t *out = NULL;

	if (ret < 0)
		return send_err(c, status_of(ret), err);
	if (!strcmp(what, "policy")) {
		ret = store_policy_get(s->st, tn, 0, &text, &ver);
		if (ret == -ENOENT)
			return send_json(c, MHD_HTTP_OK,
					 json_pack("{sIsn}", "version", (json_int_t)0, "policy"));
		if (ret < 0)
			return send_err(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "database error");
		out = json_pack("{sIss}", "version", (json_int_t)ver, "policy", text);
		free(text);
		/* the installed text no longer compiles (a node it names went away):
		 * the previous rules stay in force; say why */
		struct cm_tailnet *t = cm_tailnet_find(s->m, tn);
		if (out && t && t->policy_err[0])
			json_object_set_new(out, "compile_error", json_string(t->policy_err));
		return send_json(c, MHD_HTTP_OK, out);
	}
	if (!strcmp(what, "policy/history")) {
		store_policy_history(s->st, tn, &out);
		return send_json(c, MHD_HTTP_OK, out);
	}
	/* policy/diff?from=N&to=M */
	const char *fs = arg(c, "from"), *ts = arg(c, "to");
	long long from = fs ? atoll(fs) : 0, to = ts ? atoll(ts) : 0;
	char *a = NULL, *b = NULL, la[32], lb[32];
	if (from <= 0 || to <= 0)
		return send_err(c, MHD_HTTP_BAD_REQUEST,
				"?from=N&to=M (policy versions) are required");
	if (store_policy_get(s->st, tn, from, &a, &ver) < 0 ||
	    store_policy_get(s->st, tn, to, &b, &ver) < 0) {
		free(a);
		free(b);
		return send_err(c, MHD_HTTP_NOT_FOUND, "no such policy version");
	}
	snprintf(la, sizeof(la), "policy.v%lld", from);
	snprintf(lb, sizeof(lb), "policy.v%lld", to);
	char *d = coord_diff(a, b, la, lb, 20000);
	free(a);
	free(b);
	if (!d)
		return send_err(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "diff too large");
	out = json_pack("{sIsIss}", "from", (json_int_t)from, "to", (json_int_t)to, "diff", d);
	free(d);
	return send_json(c, MHD_HTTP_OK, out);
}

/* The wg-quick config of a plain WireGuard device: its peers are the gateways. */
static char *wg_config(struct server *s, const struct coord_reg_result *res, const char *tailnet)
{
	struct cm_tailnet *t = cm_tailnet_by_name(s->m, tailnet);
	struct strbuf sb = {0};
	char buf[MG_PREFIX_STRLEN], buf6[MG_PREFIX_STRLEN];
	bool first = true;

	strbuf_printf(&sb,
		      "# meshgate: plain WireGuard device \"%s\" (node %" PRId64 ") in tailnet %s\n"
		      "[Interface]\n"
		      "PrivateKey = <the private key of the public key you enrolled; it never "
		      "leaves the device>\n"
		      "Address = %s, %s\n",
		      res->name, res->node_id, tailnet, res->addr4, res->addr6);
	for (uint32_t i = 0; t && i < s->m->n_slots; i++) {
		struct cm_node *n = s->m->slots[i];
		if (!n || n->tn != t || n->info.plain_wg || !cm_node_has_tag(n, t->gw_tag))
			continue;
		strbuf_printf(&sb,
			      "\n[Peer]\n# %s (node %" PRId64 ")\nPublicKey = %s\nAllowedIPs = ",
			      n->info.name, n->info.id, n->info.node_key);
		if (first)
			strbuf_printf(&sb, "100.64.0.0/10, %s",
				      mg_prefix_fmt(&t->ula, buf, sizeof(buf)));
		else
			strbuf_printf(&sb, "%s, %s",
				      mg_prefix_fmt(&n->info.addr4, buf, sizeof(buf)),
				      mg_prefix_fmt(&n->info.addr6, buf6, sizeof(buf6)));
		for (unsigned k = 0; k < n->n_primary; k++)
			strbuf_printf(&sb, ", %s", mg_prefix_fmt(&n->primary[k], buf, sizeof(buf)));
		strbuf_add(&sb, "\n");
		if (*n->info.endpoints)
			strbuf_printf(&sb, "Endpoint = %.*s\n",
				      (int)strcspn(n->info.endpoints, ","), n->info.endpoints);
		strbuf_add(&sb, "PersistentKeepalive = 25\n");
		first = false;
	}
	if (first)
		strbuf_printf(&sb, "\n# no gateway (a node tagged %s) in this tailnet yet\n",
			      t ? t->gw_tag : "tag:gw");
	if (sb.oom) {
		strbuf_free(&sb);
		return NULL;
	}
	return sb.buf;
}

static enum MHD_Result admin_create(struct server *s, struct req *r, const char *what)
{
	char err[256];
	json_t *out = NULL;
	int ret;

#define PARSE(fn, rq)                                                                              \
	do {                                                                                       \
		if (fn(r->body, r->len, &rq, err, sizeof(err)) < 0)                                \
			return send_err(r->conn, MHD_HTTP_BAD_REQUEST, err);                       \
	} while (0)
	if (!strcmp(what, "tailnets")) {
		struct coord_tailnet_req rq;
		PARSE(coord_parse_tailnet, rq);
		ret = store_tailnet_create(s->st, &rq, now_s(), &out, err, sizeof(err));
	} else if (!strcmp(what, "users")) {
		struct coord_user_req rq;
		PARSE(coord_parse_user, rq);
		ret = store_user_create(s->st, &rq, now_s(), &out, err, sizeof(err));
	} else if (!strcmp(what, "preauthkeys")) {
		struct coord_key_req rq;
		PARSE(coord_parse_key, rq);
		ret = store_key_create(s->st, &rq, now_s(), &out, err, sizeof(err));
	} else if (!strcmp(what, "wireguard")) {
		struct coord_wg_req rq;
		struct coord_reg_result res;
		PARSE(coord_parse_wg, rq);
		ret = store_wg_enroll(s->st, &rq, now_s(), &res, err, sizeof(err));
		if (ret == 0) {
			sync_model(s, true);
			char *cfg = wg_config(s, &res, rq.tailnet);
			out = json_pack("{sIsss[ss]ss}", "node_id", (json_int_t)res.node_id, "name",
					res.name, "addresses", res.addr4, res.addr6, "config",
					cfg ? cfg : "");
			free(cfg);
		}
	} else if (!strncmp(what, "routes/", 7)) {
		struct coord_approve_req rq;
		PARSE(coord_parse_approve, rq);
		ret =
		    store_route_approve(s->st, atoll(what + 7), rq.routes, &out, err, sizeof(err));
	} else if (!strncmp(what, "nodes/", 6) && strstr(what, "/expire")) {
		ret = store_node_expire(s->st, atoll(what + 6), now_s(), err, sizeof(err));
		if (!ret)
			out = json_pack("{sb}", "expired", 1);
	} else {
		return send_err(r->conn, MHD_HTTP_NOT_FOUND, "no such admin endpoint");
	}
#undef PARSE
	if (ret < 0)
		return send_err(r->conn, status_of(ret), err);
	sync_model(s, true);
	return send_json(r->conn, MHD_HTTP_OK, out ? out : json_object());
}

static enum MHD_Result admin_api(struct server *s, struct req *r, const char *url,
				 const char *method)
{
	struct MHD_Connection *c = r->conn;
	const char *auth = hdr(c, "Authorization"), *what = url + strlen(API "admin/");
	char err[256];
	json_t *out = NULL;
	int64_t tn;
	int ret;

	if (!auth || strncmp(auth, "Bearer ", 7) || !coord_token_equal(auth + 7, s->token))
		return send_err(c, MHD_HTTP_UNAUTHORIZED,
				"admin API: missing or wrong Authorization: Bearer token");
	if (!strcmp(method, "GET")) {
		if (!strcmp(what, "tailnets"))
			store_list_tailnets(s->st, &out);
		else if (!strcmp(what, "users") || !strcmp(what, "preauthkeys")) {
			if ((ret = tailnet_arg(s, c, &tn, false, err, sizeof(err))) < 0)
				return send_err(c, status_of(ret), err);
			if (what[0] == 'u')
				store_list_users(s->st, tn, &out);
			else
				store_list_keys(s->st, tn, now_s(), &out);
		} else if (!strcmp(what, "nodes"))
			return admin_nodes(s, c);
		else if (!strcmp(what, "routes"))
			return admin_routes(s, c);
		else if (!strncmp(what, "policy", 6))
			return admin_policy_get(s, c, what);
		else
			return send_err(c, MHD_HTTP_NOT_FOUND, "no such admin endpoint");
		return send_json(c, MHD_HTTP_OK, out);
	}
	if (!strcmp(method, "POST"))
		return admin_create(s, r, what);
	if (!strcmp(method, "PUT") && !strcmp(what, "policy"))
		return admin_policy_put(s, r);
	if (!strcmp(method, "DELETE") && !strncmp(what, "nodes/", 6)) {
		char *end;
		long long id = strtoll(what + 6, &end, 10);
		if (*end || id <= 0)
			return send_err(c, MHD_HTTP_BAD_REQUEST, "nodes/<id>: want a node id");
		if ((ret = store_node_delete(s->st, id, err, sizeof(err))) < 0)
			return send_err(c, status_of(ret), err);
		mg_log(LOG_NOTICE, "node %lld deleted by an admin", id);
		sync_model(s, true);
		return send_json(c, MHD_HTTP_OK, json_pack("{sb}", "deleted", 1));
	}
	return send_err(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed here");
}

/* ---- MHD glue ---------------------------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	struct req *r = *con_cls;

	(void)version;
	if (!r) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const char *cl = hdr(c, "Content-Length");
		double retry = 0;

		if (!(r = calloc(1, sizeof(*r))))
			return MHD_NO;
		r->fd = -1;
		r->srv = s;
		r->conn = c;
		*con_cls = r;
		if (cl && strtoull(cl, NULL, 10) > s->conf.max_body)
			r->too_big = true;
		if (ci && ci->client_addr) {
			const struct sockaddr *sa = ci->client_addr;
			const void *a =
			    sa->sa_family == AF_INET6
				? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
				: (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
			size_t alen = sa->sa_family == AF_INET6 ? 16 : 4;
			if (!limiter_take(&s->ip_rl, a, alen, now_ms(), &retry))
				r->limited = true;
			if (r->limited)
				r->version = (int64_t)retry + 1;
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->too_big && !r->limited) {
			if (r->len + *upload_size > s->conf.max_body) {
				r->too_big = true;
				free(r->body);
				r->body = NULL;
				r->len = r->cap = 0;
			} else {
				if (r->len + *upload_size + 1 > r->cap) {
					size_t cap = r->cap ? r->cap : 4096;
					while (cap < r->len + *upload_size + 1)
						cap *= 2;
					char *b = realloc(r->body, cap);
					if (!b)
						return MHD_NO;
					r->body = b;
					r->cap = cap;
				}
				memcpy(r->body + r->len, upload, *upload_size);
				r->len += *upload_size;
				r->body[r->len] = '\0';
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->state == R_READY) {
		enum MHD_Result ret;
		if (!r->resp)
			return send_err(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		ret = MHD_queue_response(c, r->status, r->resp);
		MHD_destroy_response(r->resp);
		r->resp = NULL;
		return ret;
	}
	if (r->state == R_WAITING)
		return MHD_YES;
	if (r->limited) {
		char *b = strdup("{\"error\":\"too many requests from this address\"}");
		return send_buf(c, MHD_HTTP_TOO_MANY_REQUESTS, b, b ? strlen(b) : 0, CT_JSON,
				(unsigned)r->version);
	}
	if (r->too_big)
		return send_err(c, MHD_HTTP_CONTENT_TOO_LARGE,
				"request body larger than the limit (1 MiB)");
	if (!r->body) {
		r->body = strdup("");
		if (!r->body)
			return MHD_NO;
	}
	enum MHD_Result ret;
	if (!strncmp(url, API "machine/", strlen(API "machine/")))
		ret = node_api(s, r, url, method);
	else if (!strncmp(url, API "admin/", strlen(API "admin/")))
		ret = admin_api(s, r, url, method);
	else if (!strcmp(url, "/health"))
		ret = send_json(c, MHD_HTTP_OK, json_pack("{ss}", "status", "ok"));
	else
		ret = send_err(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
	store_idle(s->st);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct server *s = cls;
	struct req *r = *con_cls;

	(void)c;
	(void)toe;
	if (!r)
		return;
	if (r->state == R_WAITING) {
		hup_unwatch(s, r);
		if (r->node) {
			r->node->waiter = NULL;
			r->node->held = false;
		}
		wait_unlink(s, r);
	}
	if (r->resp)
		MHD_destroy_response(r->resp);
	free(r->body);
	free(r);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	mg_log(LOG_DEBUG, "httpd: %s", buf);
}

static char *read_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = n >= 0 && n < (1 << 20) ? malloc((size_t)n + 1) : NULL;
	if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
	} else {
		free(buf);
		buf = NULL;
		snprintf(err, errlen, "%s: cannot read", path);
	}
	fclose(f);
	return buf;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		mg_log(LOG_INFO, "open files limit %llu", (unsigned long long)rl.rlim_cur);
}

static int start(struct server *s, char *err, size_t errlen)
{
	struct sockaddr_storage ss = {0};
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	socklen_t sl;

	if (s->conf.listen.family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(s->conf.listen.port);
		memcpy(&a->sin6_addr, s->conf.listen.addr, 16);
		flags |= MHD_USE_IPv6;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(s->conf.listen.port);
		memcpy(&a->sin_addr, s->conf.listen.addr, 4);
		sl = sizeof(*a);
	}
	(void)sl;
	if (!s->conf.insecure_http) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(err, errlen, "libmicrohttpd was built without TLS");
			return -ENOTSUP;
		}
		if (!(s->tls_cert = read_file(s->conf.tls_cert_file, err, errlen)) ||
		    !(s->tls_key = read_file(s->conf.tls_key_file, err, errlen)))
			return -EIO;
		flags |= MHD_USE_TLS;
	} else {
		mg_log(LOG_WARNING, "!!! testing.insecure_http = true: serving PLAIN HTTP, no TLS. "
				    "Tests only. !!!");
	}
	s->d = MHD_start_daemon(
	    flags, 0, NULL, NULL, handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)s->conf.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)(s->conf.long_poll_seconds + 35), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)16384, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
	    MHD_OPTION_NOTIFY_COMPLETED, completed, s,
	    s->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
	    MHD_OPTION_HTTPS_MEM_KEY, s->tls_key, MHD_OPTION_END);
	if (!s->d) {
		snprintf(err, errlen,
			 "cannot start the HTTP server on port %u (address in use? bad TLS files?)",
			 s->conf.listen.port);
		return -EIO;
	}
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Waiting polls whose node hung up: offline now (this replica), answer and let MHD clean up. */
static void hangups(struct server *s)
{
	struct epoll_event ev[64];
	int n = epoll_wait(s->hup_fd, ev, 64, 0);

	for (int i = 0; i < n; i++) {
		struct req *r = ev[i].data.ptr;
		struct cm_node *nd = r->node;

		if (r->state != R_WAITING)
			continue;
		if (nd) {
			mg_log(LOG_INFO, "node %" PRId64 " \"%s\" hung up its poll: offline",
			       nd->info.id, nd->info.name);
			nd->waiter = NULL;
			nd->held = false;
			nd->info.last_seen = now_s() - (int64_t)s->conf.offline_seconds;
			for (size_t k = 0; k < s->n_touch; k++)
				if (s->touch_id[k] == nd->info.id)
					s->touch_seen[k] =
					    0; /* a queued touch must not bring it back */
			store_mark_offline(s->st, nd->info.id, nd->info.last_seen);
			nd->tn->dirty = true;
			r->node = NULL;
		}
		finish_waiter(s, r, MHD_HTTP_OK, strdup("{\"keepalive\":true}"), 18);
	}
}

static int run(struct server *s)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	int efd = di ? di->epoll_fd : -1;

	if (efd < 0) {
		mg_log(LOG_ERR, "no epoll fd from libmicrohttpd");
		return 1;
	}
	while (!stop) {
		MHD_UNSIGNED_LONG_LONG to;
		int timeout = 50;
		struct pollfd p[2] = {{.fd = efd, .events = POLLIN},
				      {.fd = s->hup_fd, .events = POLLIN}};

		if (MHD_get_timeout(s->d, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)timeout)
			timeout = (int)to;
		poll(p, 2, timeout);
		if (p[1].revents)
			hangups(s);
		MHD_run(s->d);
		periodic(s);
		store_idle(s->st);
	}
	return 0;
}

/*
 * On the way out, every held long poll is answered (a keepalive: the node
 * polls again, after the restart or at another replica), and the daemon runs
 * until the answers are out or half a second has passed. libmicrohttpd
 * aborts the process in MHD_stop_daemon if a connection is still suspended.
 */
static void drain_waiters(struct server *s)
{
	int64_t end = now_ms() + 500;

	while (s->wait_head)
		keepalive_waiter(s, s->wait_head);
	do {
		MHD_run(s->d); /* resumes the answered polls first */
		const union MHD_DaemonInfo *di =
		    MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (!di || di->num_connections == 0)
			break;
		poll(NULL, 0, 10);
	} while (now_ms() < end);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: meshgate-coord [-c CONFIG] [--check]\n"
		   "  -c, --config FILE   config file (default /etc/meshgate/coord.conf)\n"
		   "      --check         load the config, open and migrate the database, exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"check", no_argument, NULL, 'k'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	const char *path = "/etc/meshgate/coord.conf";
	static struct server srv;
	struct server *s = &srv;
	char err[512];
	bool check = false;
	int o, ret;

	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	mg_log_init("meshgate-coord", LOG_INFO);
	if (sodium_init() < 0) {
		mg_log(LOG_ERR, "libsodium failed to initialise");
		return 1;
	}
	if (coord_conf_load(path, &s->conf, err, sizeof(err)) < 0 ||
	    coord_read_token(s->conf.admin_token_file, s->token, sizeof(s->token), err,
			     sizeof(err)) < 0) {
		mg_log(LOG_ERR, "%s", err);
		return 1;
	}
	mg_log_set_level(s->conf.log_level);
	if ((ret = store_open(s->conf.database, &s->st, err, sizeof(err))) < 0) {
		mg_log(LOG_ERR, "%s", err);
		return 1;
	}
	if (s->conf.key_expiry_seconds) {
		store_set_key_seconds(s->st, s->conf.key_expiry_seconds);
		mg_log(LOG_WARNING, "!!! testing.key_expiry_seconds = %u: untagged node keys expire "
				    "that soon", s->conf.key_expiry_seconds);
	}
	if (check) {
		printf("config and database OK (state version %" PRId64 ")\n",
		       store_state_version(s->st));
		store_close(s->st);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	raise_nofile();
	/* map versions unique across restarts: the node's old version means "send a full map" */
	s->m = cm_new((int64_t)time(NULL) * 1000, s->conf.offline_seconds);
	if (!s->m || !limiter_init(&s->ip_rl, s->conf.ip_rate, s->conf.ip_burst) ||
	    !limiter_init(&s->key_rl, s->conf.key_rate, s->conf.key_burst)) {
		mg_log(LOG_ERR, "out of memory");
		return 1;
	}
	s->m->derp_json = s->conf.derp_json; /* s->conf outlives s->m */
	coord_db_listen(store_db(s->st));
	if ((s->hup_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		mg_log(LOG_ERR, "epoll_create1: %s", strerror(errno));
		return 1;
	}
	store_load(s->st, s->m, true, NULL, NULL);
	cm_recompute(s->m, now_s(), NULL, NULL);
	if (start(s, err, sizeof(err)) < 0) {
		mg_log(LOG_ERR, "%s", err);
		return 1;
	}
	char la[MG_SOCKADDR_STRLEN];
	mg_log(LOG_NOTICE, "listening on %s (%s), database %s",
	       mg_sockaddr_fmt(&s->conf.listen, la, sizeof(la)),
	       s->conf.insecure_http ? "plain HTTP" : "HTTPS", s->conf.database);
	ret = run(s);
	mg_log(LOG_NOTICE, "stopping");
	drain_waiters(s);
	MHD_stop_daemon(s->d);
	store_close(s->st);
	cm_free(s->m);
	free(s->ip_rl.b);
	free(s->key_rl.b);
	free(s->tls_cert);
	free(s->tls_key);
	return ret;
}
