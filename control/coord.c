/* SPDX-License-Identifier: MIT */
/*
 * Following a coordination server (docs/coord-protocol.md).
 *
 * Two threads, one owner each:
 *  - the coordination thread does the HTTP: libcurl's blocking calls
 *    (register, one long-poll map request at a time, update, logout), parses
 *    the answers into plain structs, and posts them to a mailbox (a list under
 *    c->mu, plus an eventfd that the main loop's poll() sees). It reads only
 *    its job (a snapshot taken under c->mu) and the machine key, which never
 *    changes once made. On failure it backs off exponentially with jitter
 *    (1 s .. 60 s) and logs only changes of state, never each retry.
 *  - the main thread owns the device, the state file and the netmap: it
 *    applies what the mailbox delivers (coord_netmap.c), rotates the node
 *    key, and serves the ctl socket (`meshgate up/status/down`).
 * The last netmap stays in force while the server is away: nothing is
 * removed until a map says so.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "coord_ctl.h"
#include "cp.h"
#include "keys.h"
#include "log.h"
#include "policy.h"

#define MAX_ROUTES	CP_COORD_MAX_ROUTES
#define BACKOFF_MIN_MS	1000u
#define BACKOFF_MAX_MS	60000u
#define MAP_TIMEOUT_S	60L /* the server answers a long poll within 25 s */
#define CALL_TIMEOUT_S	30L
#define PENDING_TIMEOUT 60 /* s an `up` or `down` waits for the server */
#define ROTATE_RETRY_S	60
#define TAG_EVENTFD	0
#define TAG_CTL		1

enum conn_state { ST_OFF, ST_NEEDS_LOGIN, ST_CONNECTING, ST_CONNECTED, ST_BACKOFF, ST_LOGGED_OUT };
static const char *const state_names[] = {"off",       "needs-login", "connecting",
					  "connected", "backoff",     "logged-out"};

enum ev_kind { EV_REGISTERED, EV_REGISTER_FAILED, EV_MAP, EV_UPDATED, EV_UPDATE_FAILED, EV_LOGOUT };

/* Thread -> main. */
struct ev {
	enum ev_kind kind;
	uint64_t gen;
	bool permanent; /* a refusal, not an outage: no retry */
	long status;	/* HTTP status, 0 if none */
	struct cp_coord_reg reg;
	struct cp_coord_map map;
	int64_t key_expiry;
	char error[256];
	struct ev *next;
};

/* What the thread is to do; main writes it under mu, the thread snapshots it. */
struct job {
	uint64_t gen; /* bumped by start/up/down: older results are dropped */
	bool active;
	bool registered; /* may go straight to the map */
	bool send_auth;	 /* include the auth key when registering */
	bool want_full, want_update, want_logout;
	char server[512];
	char hostname[64];
	uint8_t node_pk[32], update_pk[32];
	char eps[CP_COORD_MAX_ENDPOINTS][MG_SOCKADDR_STRLEN];
	size_t n_eps;
	char routes[MAX_ROUTES][MG_PREFIX_STRLEN];
	size_t n_routes;
};

#define MAX_STUN_EPS 8 /* control.stun_servers: one endpoint each at most */

/* sodium_malloc'd. */
struct secrets {
	char auth_key[256];
	uint8_t rot_sk[32], rot_pk[32]; /* a rotation in flight */
};

struct cp_coord {
	struct cp_device *d;
	const struct mg_config *cfg;
	char state_path[4200];
	char cache_path[4200];	   /* the last netmap, for a restart without the server */
	struct cp_coord_state *st; /* machine key read by the thread; the rest main's */
	struct secrets *sec;	   /* auth_key under mu */
	struct cp_coord_netmap *nm;
	int epfd, evfd;
	struct cp_ctl *ctl;
	pthread_t thread;
	bool started;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job job;
	atomic_bool quit;
	atomic_uint interrupt; /* bumped to cut a transfer short */
	struct ev *head, **tail;
	enum conn_state state;
	char error[256];
	int64_t retry_at;
	uint64_t polls; /* map answers received */
	struct mg_sockaddr stun_eps[MAX_STUN_EPS]; /* public endpoints STUN found (stun.c) */
	unsigned n_stun_eps;

	/* main thread only */
	bool has_self;
	struct cp_coord_self self;
	uint64_t version;
	int64_t last_map;
	struct mg_acl_rule *rules; /* the filter last installed */
	size_t n_rules;
	bool has_rules, filter_warned;
	int up_client, down_client; /* ctl ids waiting for an answer, -1 none */
	int64_t pending_deadline;
	bool rot_pending;
	int64_t rot_retry_at;
	bool cache_dirty;
	int64_t cache_next;
	struct mg_derp_region_conf *derp; /* the server's DERP map, last received */
	size_t n_derp;
	bool derp_warned;
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- the thread ------------------------------------------------------------- */

struct buf {
	char *p;
	size_t n, cap;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t len = size * nmemb;

	if (b->n + len + 1 > CP_COORD_MAX_BODY)
		return 0; /* aborts the transfer */
	if (b->n + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->n + len + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, ptr, len);
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

struct xfer {
	struct cp_coord *c;
	unsigned intr;
};

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t x, curl_off_t y)
{
	struct xfer *t = arg;

	(void)a, (void)b, (void)x, (void)y;
	return atomic_load(&t->c->quit) || atomic_load(&t->c->interrupt) != t->intr;
}

static struct curl_slist *auth_headers(struct cp_coord *c, const char *path, const char *body)
{
	struct cp_coord_auth a;
	struct curl_slist *h = NULL, *n;
	char line[4][160];

	if (cp_coord_sign(c->st->machine_sk, "POST", path, now_s(), NULL, body, strlen(body), &a))
		return NULL;
	snprintf(line[0], sizeof(line[0]), "X-Meshgate-Machine: %s", a.machine);
	snprintf(line[1], sizeof(line[1]), "X-Meshgate-Timestamp: %s", a.timestamp);
	snprintf(line[2], sizeof(line[2]), "X-Meshgate-Nonce: %s", a.nonce);
	snprintf(line[3], sizeof(line[3]), "X-Meshgate-Signature: %s", a.signature);
	h = curl_slist_append(h, "Content-Type: application/json");
	for (int i = 0; h && i < 4; i++) {
		if (!(n = curl_slist_append(h, line[i]))) {
			curl_slist_free_all(h);
			return NULL;
		}
		h = n;
	}
	return h;
}

/* POST body to server+path. The HTTP status, or 0 with err set if none came. */
static long http_post(struct cp_coord *c, CURL *h, const struct job *j, const char *path,
		      const char *body, long timeout, unsigned intr, struct buf *out, char *err,
		      size_t errlen)
{
	char url[700];
	size_t n = strlen(j->server);
	struct curl_slist *hdr = auth_headers(c, path, body);
	struct xfer t = {.c = c, .intr = intr};
	char cerr[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;

	while (n && j->server[n - 1] == '/')
		n--;
	snprintf(url, sizeof(url), "%.*s%s", (int)n, j->server, path);
	if (!hdr) {
		snprintf(err, errlen, "out of memory");
		return 0;
	}
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->cfg->coord.ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg->coord.ca_file);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "meshgate-control");
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(err, errlen, "%.100s: %.140s", url,
			 cerr[0] ? cerr : curl_easy_strerror(rc));
	curl_slist_free_all(hdr);
	return status;
}

/* An HTTP error answer as one line: "register: 403 pre-auth key expired". */
static void http_error(char *err, size_t errlen, const char *what, long status, const struct buf *b)
{
	char msg[200] = "";

	if (b->p)
		cp_coord_error_parse(b->p, b->n, msg, sizeof(msg));
	snprintf(err, errlen, "%s: HTTP %ld%s%s", what, status, msg[0] ? ": " : "", msg);
}

static bool permanent(long status)
{
	return status >= 400 && status < 500 && status != 408 && status != 429;
}

static char *body_for(const struct job *j, const char *auth, bool reg, bool map, uint64_t version,
		      bool update)
{
	const char *eps[CP_COORD_MAX_ENDPOINTS], *routes[MAX_ROUTES];
	struct cp_coord_req r = {
	    .endpoints = eps, .n_endpoints = j->n_eps, .routes = routes, .n_routes = j->n_routes};

	for (size_t i = 0; i < j->n_eps; i++)
		eps[i] = j->eps[i];
	for (size_t i = 0; i < j->n_routes; i++)
		routes[i] = j->routes[i];
	if (reg) {
		r.node_key = j->node_pk;
		r.hostname = j->hostname;
		r.auth_key = j->send_auth && auth[0] ? auth : NULL;
	} else if (map) {
		r.with_version = true;
		r.version = version;
	} else if (update) {
		r = (struct cp_coord_req){.node_key = j->update_pk};
	} else {
		r = (struct cp_coord_req){0};
	}
	return cp_coord_req_body(&r);
}

/* The event of one request, or NULL on allocation failure. */
static struct ev *call(struct cp_coord *c, CURL *h, const struct job *j, const char *auth,
		       enum ev_kind kind, uint64_t version, unsigned intr)
{
	static const char *const paths[] = {[EV_REGISTERED] = "/api/v1/machine/register",
					    [EV_MAP] = "/api/v1/machine/map",
					    [EV_UPDATED] = "/api/v1/machine/update",
					    [EV_LOGOUT] = "/api/v1/machine/logout"};
	static const char *const what[] = {[EV_REGISTERED] = "register",
					   [EV_MAP] = "map",
					   [EV_UPDATED] = "update",
					   [EV_LOGOUT] = "logout"};
	struct ev *e = calloc(1, sizeof(*e));
	struct buf b = {0};
	char *body =
	    body_for(j, auth, kind == EV_REGISTERED, kind == EV_MAP, version, kind == EV_UPDATED);
	long status = 0;
	int ret = -EIO;

	if (!e || !body) {
		free(e);
		if (body)
			sodium_memzero(body, strlen(body));
		free(body);
		return NULL;
	}
	e->kind = kind;
	e->gen = j->gen;
	status =
	    http_post(c, h, j, paths[kind], body, kind == EV_MAP ? MAP_TIMEOUT_S : CALL_TIMEOUT_S,
		      intr, &b, e->error, sizeof(e->error));
	sodium_memzero(body, strlen(body)); /* it may hold the auth key */
	free(body);
	if (status == 200) {
		char perr[200];

		if (kind == EV_REGISTERED)
			ret = cp_coord_reg_parse(b.p, b.n, &e->reg, perr, sizeof(perr));
		else if (kind == EV_MAP)
			ret = cp_coord_map_parse(b.p, b.n, &e->map, perr, sizeof(perr));
		else if (kind == EV_UPDATED)
			ret = cp_coord_update_parse(b.p, b.n, &e->key_expiry, perr, sizeof(perr));
		else
			ret = 0;
		if (ret)
			snprintf(e->error, sizeof(e->error), "%s: bad answer: %s", what[kind],
				 perr);
	} else if (status) {
		http_error(e->error, sizeof(e->error), what[kind], status, &b);
		e->permanent = permanent(status);
	}
	free(b.p);
	if (ret)
		e->kind = kind == EV_REGISTERED ? EV_REGISTER_FAILED
			  : kind == EV_UPDATED	? EV_UPDATE_FAILED
						: kind;
	e->status = status;
	if (!ret)
		e->error[0] = '\0';
	e->permanent &= ret != 0;
	return e;
}

/* Under mu. Logs only changes. */
static void set_state(struct cp_coord *c, enum conn_state st, const char *err)
{
	if (st == c->state)
		return;
	c->state = st;
	snprintf(c->error, sizeof(c->error), "%s", err ? err : "");
	switch (st) {
	case ST_CONNECTED:
		mg_log(LOG_INFO, "coordination: connected to %s", c->job.server);
		break;
	case ST_BACKOFF:
		mg_log(
		    LOG_WARNING,
		    "coordination: %s; retrying with backoff (%u..%u s), the last netmap stays in "
		    "force",
		    err, BACKOFF_MIN_MS / 1000, BACKOFF_MAX_MS / 1000);
		break;
	case ST_NEEDS_LOGIN:
		mg_log(LOG_ERR, "coordination: %s; needs `meshgate up` with an auth key",
		       err ? err : "not registered");
		break;
	case ST_LOGGED_OUT:
		mg_log(LOG_INFO, "coordination: logged out of %s", c->job.server);
		break;
	default:
		break;
	}
}

/* Under mu: hand e to the main loop. */
static void post(struct cp_coord *c, struct ev *e)
{
	uint64_t one = 1;

	*c->tail = e;
	c->tail = &e->next;
	if (write(c->evfd, &one, sizeof(one)) < 0) {
		/* The counter saturates only if nobody reads: harmless. */
	}
}

/* Under mu: sleep the backoff, or less if the job changes. */
static void backoff(struct cp_coord *c, unsigned *failures, uint64_t gen)
{
	unsigned shift = *failures < 7 ? *failures : 6;
	unsigned ms = BACKOFF_MIN_MS << shift;
	struct timespec until;

	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	ms = ms / 2 + randombytes_uniform(ms / 2 + 1); /* jitter: half to all of it */
	(*failures)++;
	clock_gettime(CLOCK_REALTIME, &until);
	c->retry_at = until.tv_sec + ms / 1000;
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!atomic_load(&c->quit) && c->job.gen == gen && !c->job.want_logout)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT)
			break;
	c->retry_at = 0;
}

static void *coord_thread(void *arg)
{
	struct cp_coord *c = arg;
	CURL *h = curl_easy_init();
	uint64_t gen = UINT64_MAX, version = 0;
	bool registered = false;
	unsigned failures = 0;
	struct job *j = malloc(sizeof(*j));
	char *auth = sodium_malloc(sizeof(c->sec->auth_key));

	pthread_mutex_lock(&c->mu);
	if (!h || !j || !auth) {
		set_state(c, ST_OFF, "coordination thread: out of memory");
		mg_log(LOG_ERR, "coordination thread: out of memory");
		c->job.active = false;
	}
	while (h && j && auth && !atomic_load(&c->quit)) {
		enum ev_kind kind;
		struct ev *e;

		if (!c->job.active) {
			pthread_cond_wait(&c->cv, &c->mu);
			continue;
		}
		if (c->job.gen != gen) {
			gen = c->job.gen;
			version = 0;
			registered = c->job.registered;
			failures = 0;
		}
		if (c->job.want_logout)
			kind = EV_LOGOUT;
		else if (!registered)
			kind = EV_REGISTERED;
		else if (c->job.want_update)
			kind = EV_UPDATED;
		else
			kind = EV_MAP;
		if (c->job.want_full)
			version = 0;
		c->job.want_full = false;
		*j = c->job;
		memcpy(auth, c->sec->auth_key, sizeof(c->sec->auth_key));
		if (kind == EV_REGISTERED && c->state != ST_BACKOFF)
			set_state(c, ST_CONNECTING, NULL);
		unsigned intr = atomic_load(&c->interrupt);
		pthread_mutex_unlock(&c->mu);

		e = call(c, h, j, auth, kind, version, intr);
		sodium_memzero(auth, sizeof(c->sec->auth_key));

		pthread_mutex_lock(&c->mu);
		/* Dropped: an older job's answer, or a transfer we cut short on
		 * purpose (a rotation or logout goes first): not a failure. */
		if (!e || c->job.gen != gen || atomic_load(&c->quit) ||
		    (e->error[0] && !e->status && atomic_load(&c->interrupt) != intr)) {
			if (e)
				cp_coord_map_free(&e->map);
			free(e);
			continue;
		}
		switch (e->kind) {
		case EV_REGISTERED:
			registered = true;
			failures = 0;
			post(c, e);
			break;
		case EV_REGISTER_FAILED:
			if (e->permanent && !j->send_auth && c->sec->auth_key[0]) {
				/* Refused as a known machine (deleted on the server?):
				 * once more with the auth key we have. */
				c->job.send_auth = true;
				free(e);
				break;
			}
			post(c, e);
			if (e->permanent) {
				c->job.active = false;
				set_state(c, ST_NEEDS_LOGIN, e->error);
			} else {
				set_state(c, ST_BACKOFF, e->error);
				backoff(c, &failures, gen);
			}
			break;
		case EV_MAP:
			if (e->error[0]) {
				/* 401/403/404: the server no longer knows us; register again. */
				if (e->status == 401 || e->status == 403 || e->status == 404)
					registered = false;
				if (e->status == 200)
					version = 0; /* a bad answer: start again from a full map */
				set_state(c, ST_BACKOFF, e->error);
				free(e);
				backoff(c, &failures, gen);
				break;
			}
			failures = 0;
			c->polls++;
			set_state(c, ST_CONNECTED, NULL);
			version = e->map.version;
			if (e->map.keepalive) {
				free(e);
				break;
			}
			post(c, e);
			break;
		case EV_UPDATED:
			memcpy(c->job.node_pk, j->update_pk, 32);
			c->job.want_update = false;
			post(c, e);
			break;
		case EV_UPDATE_FAILED:
			c->job.want_update = false;
			post(c, e);
			break;
		case EV_LOGOUT:
			c->job.want_logout = false;
			c->job.active = false;
			set_state(c, ST_LOGGED_OUT, NULL);
			post(c, e);
			break;
		}
	}
	c->job.active = false;
	pthread_mutex_unlock(&c->mu);
	if (auth)
		sodium_free(auth);
	free(j);
	if (h)
		curl_easy_cleanup(h);
	return NULL;
}

/* ---- main thread: the job ---------------------------------------------------- */

static void job_endpoint_add(struct job *j, const struct mg_sockaddr *sa)
{
	char text[MG_SOCKADDR_STRLEN] = "";

	if (j->n_eps == CP_COORD_MAX_ENDPOINTS || !mg_sockaddr_fmt(sa, text, sizeof(text)))
		return;
	for (size_t i = 0; i < j->n_eps; i++)
		if (!strcmp(j->eps[i], text))
			return;
	memcpy(j->eps[j->n_eps++], text, sizeof(text));
}

/*
 * Under mu. Our endpoints: the public ones STUN found first, then the wan
 * port's addresses with the listen port (Tailscale's order too). A peer
 * without disco uses the first IPv4 one (coord_netmap.c), which for a node
 * behind a NAT is the only one that reaches it from outside.
 */
static void job_endpoints(struct cp_coord *c, struct job *j)
{
	int w = mg_config_port(c->cfg, MG_PORT_WAN);
	const struct mg_port_conf *p = w >= 0 ? &c->cfg->ports[w] : NULL;

	j->n_eps = 0;
	for (unsigned i = 0; i < c->n_stun_eps; i++)
		job_endpoint_add(j, &c->stun_eps[i]);
	for (int i = 0; p && i < p->n_addrs; i++) {
		struct mg_sockaddr sa = {.family = p->addrs[i].family, .port = c->d->listen_port};

		memcpy(sa.addr, p->addrs[i].addr, 16);
		if (sa.family == AF_INET6 && sa.addr[0] == 0xfe && (sa.addr[1] & 0xc0) == 0x80)
			continue; /* link-local: useless to others */
		job_endpoint_add(j, &sa);
	}
	/* Last: where the relay reaches us (peers try direct ones first). */
	struct mg_sockaddr derp = cp_derp_home_endpoint(c->d);
	if (derp.family)
		job_endpoint_add(j, &derp);
}

static void job_routes(struct job *j, const struct mg_prefix *r, size_t n)
{
	j->n_routes = 0;
	for (size_t i = 0; i < n && i < MAX_ROUTES; i++)
		mg_prefix_fmt(&r[i], j->routes[j->n_routes++], MG_PREFIX_STRLEN);
}

/* Under mu: a new job generation (cuts a transfer in flight short). */
static void job_restart(struct cp_coord *c, bool active)
{
	c->job.gen++;
	c->job.active = active;
	c->job.want_update = c->job.want_logout = c->job.want_full = false;
	memcpy(c->job.node_pk, c->st->node_pk, 32);
	job_endpoints(c, &c->job);
	atomic_fetch_add(&c->interrupt, 1);
	pthread_cond_signal(&c->cv);
	c->rot_pending = false;
}

/* Under mu: the endpoint list anew; a change cuts the poll in flight short. */
static void endpoints_refresh(struct cp_coord *c)
{
	char old[CP_COORD_MAX_ENDPOINTS][MG_SOCKADDR_STRLEN];
	size_t n_old = c->job.n_eps;

	memcpy(old, c->job.eps, sizeof(old));
	job_endpoints(c, &c->job);
	bool changed = c->job.n_eps != n_old;
	for (size_t i = 0; !changed && i < n_old; i++)
		changed = strcmp(old[i], c->job.eps[i]) != 0;
	if (changed && c->job.active) {
		/* The long poll in flight carries the old list: cut it short, and
		 * the next map request tells the server. */
		atomic_fetch_add(&c->interrupt, 1);
		pthread_cond_signal(&c->cv);
	}
}

void cp_coord_set_stun_endpoints(struct cp_coord *c, const struct mg_sockaddr *eps, unsigned n)
{
	if (!c)
		return;
	if (n > MAX_STUN_EPS)
		n = MAX_STUN_EPS;
	pthread_mutex_lock(&c->mu);
	memcpy(c->stun_eps, eps, n * sizeof(*eps));
	c->n_stun_eps = n;
	endpoints_refresh(c);
	pthread_mutex_unlock(&c->mu);
}

static int save(struct cp_coord *c)
{
	char err[512];
	int ret = cp_coord_state_save(c->state_path, c->st, err, sizeof(err));

	if (ret)
		mg_log(LOG_ERR, "coordination: cannot save the state: %s", err);
	return ret;
}

/* ---- main thread: events -------------------------------------------------------- */

static void answer(struct cp_coord *c, int *client, const char *text)
{
	if (*client >= 0 && c->ctl)
		cp_ctl_answer(c->ctl, *client, text);
	*client = -1;
}

static void answer_error(struct cp_coord *c, int *client, const char *msg)
{
	char line[512];

	snprintf(line, sizeof(line), "error=%.400s\n\n", msg);
	answer(c, client, line);
}

static void addrs_fmt(const struct mg_prefix *a, uint32_t n, char *out, size_t len)
{
	size_t k = 0;

	out[0] = '\0';
	for (uint32_t i = 0; i < n && k < len; i++) {
		char p[MG_PREFIX_STRLEN];

		k += (size_t)snprintf(out + k, len - k, "%s%s", i ? "," : "",
				      mg_prefix_fmt(&a[i], p, sizeof(p)));
	}
}

static void on_registered(struct cp_coord *c, struct ev *e)
{
	struct cp_coord_state *st = c->st;
	char addrs[512], text[1024];

	pthread_mutex_lock(&c->mu);
	snprintf(st->server, sizeof(st->server), "%s", c->job.server);
	sodium_memzero(c->sec->auth_key, sizeof(c->sec->auth_key)); /* used up */
	pthread_mutex_unlock(&c->mu);
	if (st->key_expiry != e->reg.key_expiry || !st->key_issued)
		st->key_issued = now_s();
	st->node_id = e->reg.node_id;
	snprintf(st->name, sizeof(st->name), "%s", e->reg.name);
	memcpy(st->addrs, e->reg.addrs, sizeof(st->addrs));
	st->n_addrs = e->reg.n_addrs;
	st->key_expiry = e->reg.key_expiry;
	st->logged_out = false;
	save(c);
	addrs_fmt(st->addrs, st->n_addrs, addrs, sizeof(addrs));
	mg_log(LOG_INFO, "coordination: registered with %s as node %" PRIu64 " (%s) %s", st->server,
	       st->node_id, st->name, addrs);
	snprintf(text, sizeof(text),
		 "ok\nnode_id=%" PRIu64 "\nname=%s\naddresses=%s\nserver=%s\n\n", st->node_id,
		 st->name, addrs, st->server);
	answer(c, &c->up_client, text);
}

static void install_filter(struct cp_coord *c, struct cp_coord_map *m)
{
	struct mg_policy *p;

	if (c->cfg->policy_file[0]) {
		if (!c->filter_warned)
			mg_log(LOG_WARNING,
			       "coordination: control.policy_file is set: it stays, and "
			       "the server's packet filter is not installed");
		c->filter_warned = true;
		return;
	}
	if (c->has_rules && c->n_rules == m->n_rules &&
	    (!m->n_rules || !memcmp(c->rules, m->rules, m->n_rules * sizeof(*m->rules))))
		return; /* unchanged */
	if (!(p = calloc(1, sizeof(*p))))
		return;
	free(c->rules);
	c->rules = NULL;
	c->n_rules = 0;
	if (m->n_rules && !(c->rules = malloc(m->n_rules * sizeof(*m->rules)))) {
		free(p);
		c->has_rules = false;
		return;
	}
	if (m->n_rules)
		memcpy(c->rules, m->rules, m->n_rules * sizeof(*m->rules));
	c->n_rules = m->n_rules;
	c->has_rules = true;
	p->rules = m->rules; /* moved */
	p->n_rules = p->n_acls = m->n_rules;
	m->rules = NULL;
	m->n_rules = 0;
	mg_log(LOG_INFO, "coordination: packet filter of %zu rule(s) from the server", p->n_rules);
	cp_filter_install(c->d, p);
}

static void on_self(struct cp_coord *c, const struct cp_coord_self *self)
{
	struct cp_coord_state *st = c->st;
	bool changed = st->n_addrs != self->n_addrs ||
		       memcmp(st->addrs, self->addrs, self->n_addrs * sizeof(self->addrs[0])) ||
		       st->key_expiry != self->key_expiry || strcmp(st->name, self->name);

	c->self = *self;
	c->has_self = true;
	if (memcmp(self->node_key, st->node_pk, 32))
		return; /* a rotation the server has not reflected yet */
	if (!changed)
		return;
	if (st->key_expiry != self->key_expiry)
		st->key_issued = now_s();
	memcpy(st->addrs, self->addrs, sizeof(st->addrs));
	st->n_addrs = self->n_addrs;
	st->key_expiry = self->key_expiry;
	snprintf(st->name, sizeof(st->name), "%s", self->name);
	save(c);
}

/* The DERP home moved (a new map, or a nearer relay): peers reach us there now. */
static void home_refresh(struct cp_coord *c)
{
	if (!c->d->derp_home_changed)
		return;
	c->d->derp_home_changed = false;
	pthread_mutex_lock(&c->mu);
	endpoints_refresh(c);
	pthread_mutex_unlock(&c->mu);
}

/*
 * The server's DERP map (every full map has one; none = no relays), unless
 * control.derp_regions is set. A new home region changes the endpoint we
 * advertise.
 */
static void apply_derp(struct cp_coord *c, struct cp_coord_map *m)
{
	size_t n = m->n_derp;

	if (m->derp_invalid) {
		mg_log(LOG_WARNING,
		       "coordination: the server's DERP map is unusable (%s): the "
		       "regions stay as they were",
		       m->derp_error);
		return;
	}
	if (!m->full && !m->has_derp)
		return;
	free(c->derp); /* kept for the netmap cache */
	c->derp = m->derp;
	c->n_derp = n;
	m->derp = NULL;
	m->n_derp = 0;
	if (c->cfg->n_derp_regions) {
		if (n && !c->derp_warned)
			mg_log(LOG_WARNING, "coordination: control.derp_regions is set: it stays, "
					    "and the server's DERP map is not used");
		c->derp_warned = n > 0;
		return;
	}
	for (size_t i = 0; i < n; i++) /* the CAs to check TLS relays against are ours */
		if (c->derp[i].tls)
			snprintf(c->derp[i].ca_file, sizeof(c->derp[i].ca_file), "%s",
				 c->cfg->derp_ca_file);
	cp_derp_set_regions(c->d, c->derp, (int)n);
	home_refresh(c);
}

static void on_map(struct cp_coord *c, struct ev *e)
{
	struct cp_coord_map *m = &e->map;

	if (m->has_self)
		on_self(c, &m->self);
	if (cp_coord_netmap_apply(c->nm, c->d, m)) {
		pthread_mutex_lock(&c->mu);
		c->job.want_full = true;
		pthread_mutex_unlock(&c->mu);
	}
	if (m->has_filter)
		install_filter(c, m);
	apply_derp(c, m);
	if (c->version == 0 || m->full)
		mg_log(LOG_INFO, "coordination: netmap %" PRIu64 " (%s): %zu peer(s)", m->version,
		       m->full ? "full" : "delta", cp_coord_netmap_count(c->nm));
	c->version = m->version;
	c->last_map = now_s();
	c->cache_dirty = true;
}

static void on_updated(struct cp_coord *c, struct ev *e)
{
	struct cp_coord_state *st = c->st;
	char key[45];

	c->rot_pending = false;
	if (e->kind == EV_UPDATE_FAILED) {
		c->rot_retry_at = now_s() + ROTATE_RETRY_S;
		mg_log(LOG_WARNING, "coordination: node key rotation failed (%s); retrying in %d s",
		       e->error, ROTATE_RETRY_S);
		return;
	}
	/* Sessions in place go on; handshakes use the new key from now on. */
	cp_device_rotate_private_key(c->d, c->sec->rot_sk);
	memcpy(st->node_sk, c->sec->rot_sk, 32);
	memcpy(st->node_pk, c->sec->rot_pk, 32);
	sodium_memzero(c->sec->rot_sk, 32);
	st->key_expiry = e->key_expiry;
	st->key_issued = now_s();
	save(c);
	mg_key_to_base64(st->node_pk, key);
	mg_log(LOG_INFO, "coordination: node key rotated, now %s, expires %" PRId64, key,
	       st->key_expiry);
}

static void on_logout(struct cp_coord *c, struct ev *e)
{
	if (e->error[0]) {
		mg_log(LOG_WARNING, "coordination: logout: %s", e->error);
		answer_error(c, &c->down_client, e->error);
		return;
	}
	answer(c, &c->down_client, "ok\n\n");
}

static void deliver(struct cp_coord *c, struct ev *e)
{
	switch (e->kind) {
	case EV_REGISTERED:
		on_registered(c, e);
		break;
	case EV_REGISTER_FAILED:
		if (c->up_client >= 0 && !e->permanent) {
			char msg[400];
			snprintf(msg, sizeof(msg), "%s (still trying in the background)", e->error);
			answer_error(c, &c->up_client, msg);
		} else {
			answer_error(c, &c->up_client, e->error);
		}
		break;
	case EV_MAP:
		on_map(c, e);
		break;
	case EV_UPDATED:
	case EV_UPDATE_FAILED:
		on_updated(c, e);
		break;
	case EV_LOGOUT:
		on_logout(c, e);
		break;
	}
}

static void drain(struct cp_coord *c)
{
	uint64_t n;
	struct ev *e;

	if (read(c->evfd, &n, sizeof(n)) < 0) {
		/* EAGAIN: another drain got it */
	}
	pthread_mutex_lock(&c->mu);
	e = c->head;
	c->head = NULL;
	c->tail = &c->head;
	pthread_mutex_unlock(&c->mu);
	while (e) {
		struct ev *next = e->next;

		if (e->gen == c->job.gen) /* gen only changes on this thread */
			deliver(c, e);
		cp_coord_map_free(&e->map);
		free(e);
		e = next;
	}
}

/* ---- main thread: the netmap cache ---------------------------------------------- */

#define CACHE_MAX_BYTES (64u << 20)
#define CACHE_PERIOD_S	5 /* written at most this often */

static void cache_write(struct cp_coord *c)
{
	struct cp_coord_self self = {
	    .node_id = c->st->node_id, .n_addrs = c->st->n_addrs, .key_expiry = c->st->key_expiry};
	const struct cp_coord_peer *peers;
	size_t n;
	char err[512], *text;

	if (!c->has_rules || !c->st->node_id)
		return; /* no full map yet */
	memcpy(self.node_key, c->st->node_pk, 32);
	memcpy(self.addrs, c->st->addrs, sizeof(self.addrs));
	snprintf(self.name, sizeof(self.name), "%s", c->st->name[0] ? c->st->name : "self");
	peers = cp_coord_netmap_peers(c->nm, &n);
	text = cp_coord_map_dump(&self, peers, n, c->rules, c->n_rules, c->derp, c->n_derp,
				 c->version);
	if (!text || cp_coord_file_write(c->cache_path, text, strlen(text), err, sizeof(err)))
		mg_log(LOG_WARNING, "coordination: netmap cache not written: %s",
		       text ? err : "out of memory");
	free(text);
	c->cache_dirty = false;
	c->cache_next = now_s() + CACHE_PERIOD_S;
}

/* At start: the last netmap, so peers (and their sessions, which the dataplane
 * kept) are back before the server answers, or if it does not. */
static void cache_load(struct cp_coord *c)
{
	struct cp_coord_map m;
	char err[256], *text;
	size_t len;
	int ret;

	if (!c->st || !c->st->node_id || c->st->logged_out)
		return;
	ret = cp_coord_file_read(c->cache_path, CACHE_MAX_BYTES, &text, &len);
	if (ret == -ENOENT)
		return;
	if (ret || cp_coord_map_parse(text, len, &m, err, sizeof(err))) {
		mg_log(LOG_WARNING, "coordination: netmap cache %s unusable: %s", c->cache_path,
		       ret ? strerror(-ret) : err);
		free(text);
		return;
	}
	free(text);
	cp_coord_netmap_apply(c->nm, c->d, &m);
	install_filter(c, &m);
	apply_derp(c, &m);
	mg_log(LOG_INFO, "coordination: %zu peer(s) from the netmap cache until the server answers",
	       cp_coord_netmap_count(c->nm));
	cp_coord_map_free(&m);
}

/* ---- main thread: ctl commands ---------------------------------------------------- */

static bool valid_host(const char *h)
{
	size_t n = strlen(h);

	return n && n < 64 &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789_.-") == n;
}

static int parse_routes(const char *s, struct mg_prefix *out, size_t max, size_t *n)
{
	char buf[4096], *save = NULL;

	*n = 0;
	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (*n == max || mg_prefix_parse(t, &out[*n]) < 0)
			return -EINVAL;
		(*n)++;
	}
	return 0;
}

/* The state exists (made now if needed) and its node key is the device's. */
static int ensure_state(struct cp_coord *c)
{
	if (c->st)
		return 0;
	if (!(c->st = cp_coord_state_new()))
		return -ENOMEM;
	mkdir(c->cfg->coord.state_dir, 0700);
	if (save(c)) {
		cp_coord_state_free(c->st);
		c->st = NULL;
		return -EIO;
	}
	cp_device_set_private_key(c->d, c->st->node_sk);
	return 0;
}

static void cmd_up(struct cp_coord *c, int client, const struct cp_ctl_req *r)
{
	const char *server = cp_ctl_arg(r, "server"), *auth = cp_ctl_arg(r, "auth_key");
	const char *host = cp_ctl_arg(r, "hostname"), *routes = cp_ctl_arg(r, "routes");
	struct mg_prefix pfx[MAX_ROUTES];
	size_t n_routes = 0;
	const char *why;
	char msg[300];

	if (c->up_client >= 0 || c->down_client >= 0)
		return (void)answer_error(c, &client, "another up or down is in progress");
	if (!server || !server[0])
		server = c->cfg->coord.server[0] ? c->cfg->coord.server
			 : c->st		 ? c->st->server
						 : "";
	if (!server[0])
		return (void)answer_error(c, &client, "no server: give --login-server");
	if ((why = mg_config_coord_url_check(server, c->cfg->coord_insecure_http))) {
		snprintf(msg, sizeof(msg), "%s: %s", server, why);
		return (void)answer_error(c, &client, msg);
	}
	if (strlen(server) >= sizeof(c->job.server))
		return (void)answer_error(c, &client, "server URL too long");
	if (host && !valid_host(host))
		return (void)answer_error(c, &client, "bad hostname (letters, digits, _ . -)");
	if (routes && parse_routes(routes, pfx, MAX_ROUTES, &n_routes))
		return (void)answer_error(c, &client,
					  "bad --advertise-routes (prefixes, comma-separated)");
	if (auth && (strlen(auth) >= sizeof(c->sec->auth_key) || !auth[0]))
		return (void)answer_error(c, &client, "bad auth key");
	if (ensure_state(c))
		return (void)answer_error(c, &client, "cannot write the state file (see the log)");
	if (strcmp(c->st->server, server)) {
		/* Another server: a new registration (the machine key stays). */
		c->st->node_id = 0;
		c->st->n_addrs = 0;
		c->st->key_expiry = c->st->key_issued = 0;
	}
	if (!auth && !c->st->node_id && !c->sec->auth_key[0])
		return (void)answer_error(c, &client, "not registered yet: give --auth-key");
	c->st->logged_out = false;
	if (host)
		snprintf(c->st->hostname, sizeof(c->st->hostname), "%s", host);
	if (routes) {
		memcpy(c->st->routes, pfx, n_routes * sizeof(pfx[0]));
		c->st->n_routes = (uint32_t)n_routes;
		c->st->has_routes = true;
	}
	save(c);
	pthread_mutex_lock(&c->mu);
	snprintf(c->job.server, sizeof(c->job.server), "%s", server);
	if (host)
		snprintf(c->job.hostname, sizeof(c->job.hostname), "%s", host);
	if (routes)
		job_routes(&c->job, pfx, n_routes);
	if (auth)
		snprintf(c->sec->auth_key, sizeof(c->sec->auth_key), "%s", auth);
	/* A known machine re-registers without it (the key may be single-use);
	 * the thread falls back to it if the server refuses. */
	c->job.send_auth = c->sec->auth_key[0] != '\0' && !c->st->node_id;
	c->job.registered = false;
	c->state = ST_OFF;
	job_restart(c, true);
	pthread_mutex_unlock(&c->mu);
	c->up_client = client;
	c->pending_deadline = now_s() + PENDING_TIMEOUT;
}

/* Forget the netmap's peers (config peers stay). */
static void drop_netmap(struct cp_coord *c)
{
	struct cp_coord_map empty = {.full = true};

	cp_coord_netmap_apply(c->nm, c->d, &empty);
	apply_derp(c, &empty);
	c->version = 0;
	c->has_self = false;
}

static void cmd_down(struct cp_coord *c, int client)
{
	if (c->up_client >= 0 || c->down_client >= 0)
		return (void)answer_error(c, &client, "another up or down is in progress");
	if (!c->st || !c->st->node_id || !c->st->server[0])
		return (void)answer_error(c, &client, "not registered");
	c->st->logged_out = true;
	save(c);
	drop_netmap(c);
	unlink(c->cache_path);
	c->cache_dirty = false;
	pthread_mutex_lock(&c->mu);
	snprintf(c->job.server, sizeof(c->job.server), "%s", c->st->server);
	c->job.registered = true;
	job_restart(c, true);
	c->job.want_logout = true;
	pthread_mutex_unlock(&c->mu);
	c->down_client = client;
	c->pending_deadline = now_s() + PENDING_TIMEOUT;
}

static json_t *prefixes_json(const struct mg_prefix *p, uint32_t n)
{
	json_t *a = json_array();
	char buf[MG_PREFIX_STRLEN];

	for (uint32_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(mg_prefix_fmt(&p[i], buf, sizeof(buf))));
	return a;
}

static json_t *peer_json(struct cp_coord *c, struct cp_peer *p)
{
	const struct cp_coord_peer *np =
	    p->from_coord ? cp_coord_netmap_find_key(c->nm, p->noise.public_key) : NULL;
	char key[45], ep[MG_SOCKADDR_STRLEN];
	json_t *o = json_object();

	mg_key_to_base64(p->noise.public_key, key);
	json_object_set_new(o, "name", json_string(np ? np->name : p->name));
	json_object_set_new(o, "public_key", json_string(key));
	json_object_set_new(o, "source", json_string(p->from_coord ? "coordination" : "config"));
	if (np) {
		json_object_set_new(o, "node_id", json_integer((json_int_t)np->node_id));
		json_object_set_new(o, "addresses", prefixes_json(np->addrs, np->n_addrs));
		json_object_set_new(o, "online", json_boolean(np->online));
	}
	json_object_set_new(o, "allowed_ips", prefixes_json(p->aips, p->n_aips));
	json_object_set_new(o, "endpoint",
			    p->endpoint.family
				? json_string(mg_sockaddr_fmt(&p->endpoint, ep, sizeof(ep)))
				: json_null());
	json_object_set_new(o, "persistent_keepalive", json_integer(p->persistent_keepalive));
	json_object_set_new(o, "last_handshake",
			    json_integer((json_int_t)(p->last_handshake_real_ns / 1000000000ull)));
	cp_peer_refresh_stats(c->d, p);
	json_object_set_new(o, "rx_bytes", json_integer((json_int_t)p->rx_bytes));
	json_object_set_new(o, "tx_bytes", json_integer((json_int_t)p->tx_bytes));
	/* The path the dataplane uses now: a DERP endpoint is the relay. */
	json_object_set_new(o, "path",
			    json_string(!p->endpoint.family		    ? "none"
					: mg_sockaddr_is_derp(&p->endpoint) ? "relay"
									    : "direct"));
	if (p->derp_region)
		json_object_set_new(o, "derp_region", json_integer(p->derp_region));
	return o;
}

static void cmd_status(struct cp_coord *c, int client)
{
	json_t *o = json_object(), *peers = json_array(), *self = json_object();
	struct cp_coord_state *st = c->st;
	char key[45] = "", *text, *out;
	size_t len;

	pthread_mutex_lock(&c->mu);
	json_object_set_new(o, "state", json_string(state_names[c->state]));
	json_object_set_new(o, "server",
			    json_string(c->job.server[0] ? c->job.server
					: st		 ? st->server
							 : ""));
	if (c->error[0])
		json_object_set_new(o, "error", json_string(c->error));
	if (c->retry_at)
		json_object_set_new(o, "retry_in", json_integer(c->retry_at - now_s()));
	json_object_set_new(self, "hostname", json_string(c->job.hostname));
	json_t *eps = json_array();
	for (size_t i = 0; eps && i < c->job.n_eps; i++)
		json_array_append_new(eps, json_string(c->job.eps[i]));
	json_object_set_new(self, "endpoints", eps);
	pthread_mutex_unlock(&c->mu);
	json_object_set_new(self, "behind_nat", json_boolean(c->d->behind_nat));
	json_object_set_new(self, "nat_keepalive", json_integer(cp_coord_peer_keepalive(c->d)));
	if (c->d->derp) {
		json_object_set_new(self, "derp_home",
				    json_integer(cp_derp_home_endpoint(c->d).port));
		json_object_set_new(self, "derp_home_connected", json_boolean(c->d->derp_home_up));
	}
	json_object_set_new(o, "interface", json_string(c->cfg->name));
	json_object_set_new(o, "map_version", json_integer((json_int_t)c->version));
	if (c->last_map)
		json_object_set_new(o, "last_map", json_integer(c->last_map));
	if (st) {
		mg_key_to_base64(st->node_pk, key);
		json_object_set_new(self, "node_id", json_integer((json_int_t)st->node_id));
		json_object_set_new(self, "name", json_string(st->name));
		json_object_set_new(self, "addresses", prefixes_json(st->addrs, st->n_addrs));
		json_object_set_new(self, "public_key", json_string(key));
		json_object_set_new(self, "key_expiry", json_integer(st->key_expiry));
	}
	json_object_set_new(o, "self", self);
	for (uint32_t i = 0; i < c->d->max_peers; i++)
		if (c->d->by_slot[i])
			json_array_append_new(peers, peer_json(c, c->d->by_slot[i]));
	json_object_set_new(o, "peers", peers);
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	len = text ? strlen(text) + 8 : 0;
	if (!text || !(out = malloc(len))) {
		free(text);
		return (void)answer_error(c, &client, "out of memory");
	}
	snprintf(out, len, "ok\n%s\n\n", text);
	answer(c, &client, out);
	free(text);
	free(out);
}

static void on_request(void *arg, int client, const struct cp_ctl_req *r)
{
	struct cp_coord *c = arg;

	if (!strcmp(r->cmd, "up"))
		cmd_up(c, client, r);
	else if (!strcmp(r->cmd, "down"))
		cmd_down(c, client);
	else if (!strcmp(r->cmd, "status"))
		cmd_status(c, client);
	else
		answer_error(c, &client, "unknown command (up, down, status)");
}

/* ---- main thread: life cycle ---------------------------------------------------- */

int cp_coord_fd(const struct cp_coord *c)
{
	return c ? c->epfd : -1;
}

void cp_coord_service(struct cp_coord *c)
{
	struct epoll_event ev[16];
	int n;

	if (!c)
		return;
	n = epoll_wait(c->epfd, ev, 16, 0);
	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 == TAG_EVENTFD)
			drain(c);
		else if (c->ctl)
			cp_ctl_event(c->ctl, ev[i].data.u64, ev[i].events);
	}
}

/* Rotate when less than a third of the key's lifetime is left. */
static void maybe_rotate(struct cp_coord *c)
{
	struct cp_coord_state *st = c->st;
	int64_t now = now_s(), life, left;

	bool connected;

	pthread_mutex_lock(&c->mu);
	connected = c->state == ST_CONNECTED;
	pthread_mutex_unlock(&c->mu);
	if (!st || !st->node_id || st->logged_out || !st->key_expiry || c->rot_pending ||
	    now < c->rot_retry_at || !connected)
		return;
	if (!st->key_issued || st->key_issued > st->key_expiry)
		st->key_issued = now < st->key_expiry ? now : st->key_expiry;
	life = st->key_expiry - st->key_issued;
	left = st->key_expiry - now;
	if (left * 3 >= life)
		return;
	cp_coord_node_key_new(c->sec->rot_sk, c->sec->rot_pk);
	c->rot_pending = true;
	mg_log(LOG_INFO, "coordination: node key expires in %" PRId64 " s: rotating", left);
	pthread_mutex_lock(&c->mu);
	memcpy(c->job.update_pk, c->sec->rot_pk, 32);
	c->job.want_update = true;
	atomic_fetch_add(&c->interrupt, 1); /* do not wait for the long poll */
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void cp_coord_tick(struct cp_coord *c)
{
	if (!c)
		return;
	maybe_rotate(c);
	home_refresh(c);
	if (c->cache_dirty && now_s() >= c->cache_next)
		cache_write(c);
	if ((c->up_client >= 0 || c->down_client >= 0) && now_s() > c->pending_deadline) {
		answer_error(c, &c->up_client, "no answer from the server in time (still trying)");
		answer_error(c, &c->down_client, "no answer from the server in time");
	}
	cp_ctl_expire(c->ctl, cp_now());
}

/* Resume what the state file and the config say. */
static void resume(struct cp_coord *c)
{
	const struct mg_coord_conf *k = &c->cfg->coord;
	const char *server = k->server[0] ? k->server : c->st ? c->st->server : "";

	pthread_mutex_lock(&c->mu);
	if (c->st && c->st->hostname[0])
		snprintf(c->job.hostname, sizeof(c->job.hostname), "%s", c->st->hostname);
	else
		snprintf(c->job.hostname, sizeof(c->job.hostname), "%s", k->hostname);
	if (c->st && c->st->has_routes)
		job_routes(&c->job, c->st->routes, c->st->n_routes);
	else
		job_routes(&c->job, k->routes, (size_t)k->n_routes);
	if (k->has_auth_key)
		snprintf(c->sec->auth_key, sizeof(c->sec->auth_key), "%s", k->auth_key);
	snprintf(c->job.server, sizeof(c->job.server), "%s", server);
	if (!c->st || !server[0] || c->st->logged_out) {
		c->state = c->st && c->st->logged_out ? ST_LOGGED_OUT : ST_OFF;
		pthread_mutex_unlock(&c->mu);
		return;
	}
	if (strcmp(c->st->server, server)) {
		c->st->node_id = 0; /* the config names another server */
		c->st->n_addrs = 0;
	}
	if (strncmp(server, "http://", 7) == 0)
		mg_log(LOG_WARNING, "coordination: PLAIN HTTP to %s (testing.coord_insecure_http)",
		       server);
	c->job.send_auth = c->sec->auth_key[0] && !c->st->node_id;
	c->job.registered = false;
	if (!c->st->node_id && !c->sec->auth_key[0]) {
		set_state(c, ST_NEEDS_LOGIN, "not registered and no auth key");
		pthread_mutex_unlock(&c->mu);
		return;
	}
	job_restart(c, true);
	pthread_mutex_unlock(&c->mu);
}

static int open_state(struct cp_coord *c)
{
	char err[512];
	int ret;

	snprintf(c->state_path, sizeof(c->state_path), "%s/%s.state", c->cfg->coord.state_dir,
		 c->cfg->name);
	snprintf(c->cache_path, sizeof(c->cache_path), "%s/%s.netmap", c->cfg->coord.state_dir,
		 c->cfg->name);
	ret = cp_coord_state_load(c->state_path, &c->st, err, sizeof(err));
	if (ret == -ENOENT)
		ret = c->cfg->coord.enabled ? ensure_state(c) : 0;
	else if (ret)
		mg_log(LOG_ERR, "coordination: %s", err);
	else if (c->cfg->has_private_key && !c->st->logged_out)
		mg_log(LOG_WARNING, "coordination: the node key of %s replaces private_key_file",
		       c->state_path);
	if (!ret && c->st)
		cp_device_set_private_key(c->d, c->st->node_sk);
	return ret;
}

struct cp_coord *cp_coord_start(struct cp_device *d)
{
	struct cp_coord *c = calloc(1, sizeof(*c));
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_EVENTFD};

	if (!c)
		return NULL;
	c->d = d;
	c->cfg = d->cfg;
	c->epfd = c->evfd = -1;
	c->up_client = c->down_client = -1;
	c->tail = &c->head;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->sec = sodium_malloc(sizeof(*c->sec));
	c->nm = cp_coord_netmap_new();
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!c->sec || !c->nm || c->epfd < 0 || c->evfd < 0 ||
	    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) < 0) {
		mg_log(LOG_ERR, "coordination: %s", strerror(errno ? errno : ENOMEM));
		cp_coord_stop(c);
		return NULL;
	}
	memset(c->sec, 0, sizeof(*c->sec));
	if (open_state(c)) {
		cp_coord_stop(c);
		return NULL;
	}
	c->ctl = cp_ctl_open(c->cfg->run_dir, c->cfg->name, c->epfd, TAG_CTL, on_request, c);
	if (!c->ctl)
		mg_log(LOG_WARNING, "coordination: no control socket %s/%s.ctl: %s",
		       c->cfg->run_dir, c->cfg->name, strerror(errno));
	if (pthread_create(&c->thread, NULL, coord_thread, c)) {
		mg_log(LOG_ERR, "coordination: cannot start its thread");
		cp_coord_stop(c);
		return NULL;
	}
	c->started = true;
	cache_load(c);
	resume(c);
	return c;
}

void cp_coord_stop(struct cp_coord *c)
{
	if (!c)
		return;
	if (c->cache_dirty && c->st)
		cache_write(c);
	if (c->started) {
		pthread_mutex_lock(&c->mu);
		atomic_store(&c->quit, true);
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
	}
	for (struct ev *e = c->head, *next; e; e = next) {
		next = e->next;
		cp_coord_map_free(&e->map);
		free(e);
	}
	cp_ctl_close(c->ctl);
	if (c->evfd >= 0)
		close(c->evfd);
	if (c->epfd >= 0)
		close(c->epfd);
	cp_coord_netmap_free(c->nm);
	cp_coord_state_free(c->st);
	if (c->sec)
		sodium_free(c->sec);
	free(c->rules);
	free(c->derp);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}
