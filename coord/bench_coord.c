/* SPDX-License-Identifier: MIT */
/*
 * meshgate-coord-bench: a load generator for the coordination server (a
 * benchmark, not a test). For each N it starts a fresh meshgate-coord (plain
 * HTTP, SQLite in a temp dir), registers N simulated nodes (signed requests,
 * a few of them gateways), has every node hold a map long poll, then changes
 * the policy through the admin API and measures how long until every node
 * holds a netmap with the new filter. Prints a markdown table.
 *
 *   meshgate-coord-bench [--quick] [--server PATH] [N...]
 *
 * Default N: 500 2000 5000 (--quick: 50 200). The policy: clients may reach
 * gateways (tag:gw), gateways may reach clients on one port; the change
 * moves both port sets, so every node's packet filter changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "auth.h"
#include "strbuf.h"

#define REG_PARALLEL 64

enum phase { P_IDLE, P_REGISTER, P_POLL };

struct bnode {
	int idx;
	bool gw;
	uint8_t pk[32], sk[64];
	char mkey[COORD_MKEY_STRLEN], node_key[48];
	CURL *h;
	struct curl_slist *hdrs;
	char *body;
	struct strbuf resp;
	enum phase phase;
	bool registered, have_full;
	int64_t version;
	size_t full_bytes;
	double updated_at; /* when it got the new filter; 0: not yet */
};

struct bench {
	const char *server_bin;
	char dir[PATH_MAX], url[128], token[128];
	pid_t pid;
	int port;
	int attempt; /* start_server: a new port per attempt */
	CURLM *multi;
	int epfd;      /* libcurl's sockets (CURLMOPT_SOCKETFUNCTION) */
	long timer_ms; /* libcurl's timeout (CURLMOPT_TIMERFUNCTION); -1: none */
	struct bnode *nodes;
	int n;
	char auth_client[128], auth_gw[128];
	bool measuring;
	const char *marker_client, *marker_gw;
	int n_updated, n_errors;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	strbuf_addn(arg, p, sz * n);
	return sz * n;
}

/* ---- the server ---------------------------------------------------------------- */

/* CPU time (user + system) of pid so far, in ms; -1 if unknown. */
static double cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after "(comm)": state is field 3, utime and stime fields 14 and 15 */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	fclose(f);
	return kib;
}

static json_t *admin(struct bench *b, const char *method, const char *path, json_t *body)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hd = NULL;
	struct strbuf out = {0};
	char url[256], auth[200], *payload = NULL;
	long status = 0;
	json_t *j;

	snprintf(url, sizeof(url), "%s/api/v1/admin/%s", b->url, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", b->token);
	hd = curl_slist_append(hd, auth);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
	}
	strbuf_add(&out, "");
	curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	j = json_loads(out.buf, 0, NULL);
	if (status != 200) {
		fprintf(stderr, "bench: admin %s %s: %ld %s\n", method, path, status, out.buf);
		json_decref(j);
		j = NULL;
	}
	free(payload);
	strbuf_free(&out);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	return j;
}

static int start_server(struct bench *b, int n)
{
	char conf[PATH_MAX + 16], tok[PATH_MAX + 16], log[PATH_MAX + 16], buf[1024];
	uint8_t raw[24];
	FILE *f;

	b->pid = -1;
	snprintf(b->dir, sizeof(b->dir), "/tmp/meshgate-coord-bench.XXXXXX");
	if (!mkdtemp(b->dir))
		return -errno;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(b->token, sizeof(b->token), raw, sizeof(raw));
	snprintf(tok, sizeof(tok), "%s/token", b->dir);
	int fd = open(tok, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, b->token, strlen(b->token)) < 0)
		return -errno;
	close(fd);
	/* Below the ephemeral range (32768-60999 by default): the bench's own
	 * thousands of client sockets (and their TIME_WAITs from a previous run)
	 * must not hold the port the server wants to listen on. */
	b->port = 10000 + (int)((getpid() + 7919 * b->attempt) % 20000);
	snprintf(b->url, sizeof(b->url), "http://127.0.0.1:%d", b->port);
	snprintf(conf, sizeof(conf), "%s/coord.conf", b->dir);
	if (!(f = fopen(conf, "w")))
		return -errno;
	fprintf(
	    f,
	    "listen = \"127.0.0.1:%d\";\ndatabase = \"sqlite:%s/coord.db\";\nadmin_token_file = "
	    "\"%s\";\n"
	    "log_level = \"notice\";\ntesting = { insecure_http = true; };\n"
	    "limits = { max_connections = %d; rate_per_ip = 1000000.0; burst_per_ip = 1000000.0;\n"
	    "  rate_per_machine = 1000.0; burst_per_machine = 1000.0; };\n",
	    b->port, b->dir, tok, 2 * n + 1000);
	fclose(f);
	snprintf(log, sizeof(log), "%s/coord.log", b->dir);
	b->pid = fork();
	if (b->pid == 0) {
		int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(lfd, 1);
		dup2(lfd, 2);
		execl(b->server_bin, b->server_bin, "-c", conf, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		if (waitpid(b->pid, NULL, WNOHANG) == b->pid) { /* exited: port taken? */
			b->pid = -1;
			break;
		}
		CURL *h = curl_easy_init();
		struct strbuf out = {0};
		long st = 0;
		snprintf(buf, sizeof(buf), "%s/health", b->url);
		curl_easy_setopt(h, CURLOPT_URL, buf);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
		if (curl_easy_perform(h) == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
		curl_easy_cleanup(h);
		strbuf_free(&out);
		if (st == 200)
			return 0;
		usleep(50000);
	}
	fprintf(stderr, "bench: the server did not come up (see %s)\n", log);
	return -EIO;
}

static void stop_server(struct bench *b)
{
	char cmd[PATH_MAX + 16];

	if (b->pid > 0) {
		kill(b->pid, SIGTERM);
		waitpid(b->pid, NULL, 0);
		b->pid = -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench: could not remove %s\n", b->dir);
}

/* ---- simulated nodes ----------------------------------------------------------- */

static void node_request(struct bench *b, struct bnode *nd, const char *op, char *body)
{
	char path[64], ts[24], nonce[33], sig[COORD_SIG_STRLEN], url[192], hb[256];
	uint8_t rn[16];
	int64_t t = (int64_t)time(NULL);

	snprintf(path, sizeof(path), "/api/v1/machine/%s", op);
	snprintf(ts, sizeof(ts), "%" PRId64, t);
	randombytes_buf(rn, sizeof(rn));
	sodium_bin2hex(nonce, sizeof(nonce), rn, sizeof(rn));
	coord_sig_make(nd->sk, "POST", path, body, strlen(body), t, nonce, sig);
	if (nd->h) {
		curl_multi_remove_handle(b->multi, nd->h);
		curl_easy_reset(nd->h);
	} else {
		nd->h = curl_easy_init();
	}
	curl_slist_free_all(nd->hdrs);
	nd->hdrs = NULL;
	snprintf(hb, sizeof(hb), "X-Meshgate-Machine: %s", nd->mkey);
	nd->hdrs = curl_slist_append(nd->hdrs, hb);
	snprintf(hb, sizeof(hb), "X-Meshgate-Timestamp: %s", ts);
	nd->hdrs = curl_slist_append(nd->hdrs, hb);
	snprintf(hb, sizeof(hb), "X-Meshgate-Nonce: %s", nonce);
	nd->hdrs = curl_slist_append(nd->hdrs, hb);
	snprintf(hb, sizeof(hb), "X-Meshgate-Signature: %s", sig);
	nd->hdrs = curl_slist_append(nd->hdrs, hb);
	nd->hdrs = curl_slist_append(nd->hdrs, "Content-Type: application/json");
	nd->hdrs = curl_slist_append(nd->hdrs, "Expect:");
	free(nd->body);
	nd->body = body;
	nd->resp.len = 0;
	snprintf(url, sizeof(url), "%s%s", b->url, path);
	curl_easy_setopt(nd->h, CURLOPT_URL, url);
	curl_easy_setopt(nd->h, CURLOPT_HTTPHEADER, nd->hdrs);
	curl_easy_setopt(nd->h, CURLOPT_POSTFIELDS, nd->body);
	curl_easy_setopt(nd->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(nd->h, CURLOPT_WRITEDATA, &nd->resp);
	curl_easy_setopt(nd->h, CURLOPT_PRIVATE, nd);
	curl_easy_setopt(nd->h, CURLOPT_TIMEOUT, 120L);
	curl_multi_add_handle(b->multi, nd->h);
}

static void start_register(struct bench *b, struct bnode *nd)
{
	char *body = NULL;

	if (asprintf(&body,
		     "{\"node_key\":\"%s\",\"hostname\":\"%s%d\",\"auth_key\":\"%s\","
		     "\"endpoints\":[\"198.18.%d.%d:51820\"]}",
		     nd->node_key, nd->gw ? "gw" : "n", nd->idx,
		     nd->gw ? b->auth_gw : b->auth_client, (nd->idx >> 8) & 255, nd->idx & 255) < 0)
		abort();
	nd->phase = P_REGISTER;
	node_request(b, nd, "register", body);
}

static void start_poll(struct bench *b, struct bnode *nd)
{
	char *body = NULL;

	if (asprintf(&body, "{\"version\":%" PRId64 "}", nd->version) < 0)
		abort();
	nd->phase = P_POLL;
	node_request(b, nd, "map", body);
}

static void on_done(struct bench *b, struct bnode *nd, CURLcode rc)
{
	long st = 0;

	curl_easy_getinfo(nd->h, CURLINFO_RESPONSE_CODE, &st);
	if (rc != CURLE_OK || st != 200) {
		if (b->n_errors++ < 5)
			fprintf(stderr, "bench: node %d %s: %s HTTP %ld %.200s\n", nd->idx,
				nd->phase == P_REGISTER ? "register" : "map",
				curl_easy_strerror(rc), st, nd->resp.buf ? nd->resp.buf : "");
		if (nd->phase == P_REGISTER)
			start_register(b, nd);
		else
			start_poll(b, nd);
		return;
	}
	if (nd->phase == P_REGISTER) {
		nd->registered = true;
		nd->phase = P_IDLE;
		curl_multi_remove_handle(b->multi, nd->h);
		return;
	}
	/* a map: find the version (first member) without parsing megabytes */
	const char *v = strstr(nd->resp.buf, "\"version\":");
	if (v)
		nd->version = strtoll(v + 10, NULL, 10);
	if (!nd->have_full && strstr(nd->resp.buf, "\"full\":true")) {
		nd->have_full = true;
		nd->full_bytes = nd->resp.len;
	}
	if (b->measuring && !nd->updated_at &&
	    strstr(nd->resp.buf, nd->gw ? b->marker_gw : b->marker_client)) {
		nd->updated_at = now();
		b->n_updated++;
	}
	start_poll(b, nd);
}

/*
 * libcurl's event interface: only the sockets with events are serviced. With
 * curl_multi_perform/poll every call visits all 5,000 handles, which made the
 * load generator, not the server, the bottleneck of the measurement.
 */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct bench *b = arg;
	struct epoll_event ev = {.data.fd = fd};

	(void)e;
	(void)sockp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
		epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev);
	return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *arg)
{
	(void)multi;
	((struct bench *)arg)->timer_ms = timeout_ms;
	return 0;
}

static void pump(struct bench *b, int timeout_ms)
{
	struct epoll_event ev[256];
	int running, q, n;
	CURLMsg *msg;

	if (b->timer_ms == 0) { /* new handles, or libcurl asked to be called now */
		b->timer_ms = -1;
		curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	if (b->timer_ms >= 0 && b->timer_ms < timeout_ms)
		timeout_ms = (int)b->timer_ms;
	n = epoll_wait(b->epfd, ev, 256, timeout_ms);
	for (int i = 0; i < n; i++) {
		int flags = 0;
		if (ev[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (ev[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (ev[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		curl_multi_socket_action(b->multi, ev[i].data.fd, flags, &running);
	}
	if (n <= 0) { /* the timeout passed */
		b->timer_ms = -1;
		curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	while ((msg = curl_multi_info_read(b->multi, &q))) {
		struct bnode *nd;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&nd);
		on_done(b, nd, msg->data.result);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static const char *policy_a =
    "{\"acls\":[{\"action\":\"accept\",\"src\":[\"tag:client\"],\"dst\":[\"tag:gw:*\"]},"
    "{\"action\":\"accept\",\"src\":[\"tag:gw\"],\"dst\":[\"tag:client:22\"]}]}";
static const char *policy_b =
    "{\"acls\":[{\"action\":\"accept\",\"src\":[\"tag:client\"],\"dst\":[\"tag:gw:1-65000\"]},"
    "{\"action\":\"accept\",\"src\":[\"tag:gw\"],\"dst\":[\"tag:client:2222\"]}]}";

static int run_one(struct bench *b, int n)
{
	int n_gw = n / 500 > 2 ? n / 500 : 2;
	double t0, t_reg, deadline;
	long rss0, rss1;
	json_t *j;

	memset(&b->nodes, 0, sizeof(b->nodes));
	b->n = n;
	b->n_updated = b->n_errors = 0;
	b->measuring = false;
	b->marker_client = "[2222,2222]";
	b->marker_gw = "[1,65000]";
	for (b->attempt = 0;; b->attempt++) {
		if (start_server(b, n) == 0)
			break;
		stop_server(b);
		if (b->attempt == 4)
			return -1;
		fprintf(stderr, "bench: trying again on another port\n");
	}
	if (!admin(b, "POST", "tailnets", json_pack("{ss}", "name", "bench")) ||
	    !admin(b, "POST", "users",
		   json_pack("{ssss}", "tailnet", "bench", "name", "bench@example.com")) ||
	    !admin(b, "PUT", "policy", json_pack("{ssss}", "tailnet", "bench", "policy", policy_a)))
		goto fail;
	j = admin(b, "POST", "preauthkeys",
		  json_pack("{sssssbs[s]}", "tailnet", "bench", "user", "bench@example.com",
			    "reusable", 1, "tags", "tag:client"));
	if (!j)
		goto fail;
	snprintf(b->auth_client, sizeof(b->auth_client), "%s",
		 json_string_value(json_object_get(j, "key")));
	json_decref(j);
	j = admin(b, "POST", "preauthkeys",
		  json_pack("{sssssbs[s]}", "tailnet", "bench", "user", "bench@example.com",
			    "reusable", 1, "tags", "tag:gw"));
	if (!j)
		goto fail;
	snprintf(b->auth_gw, sizeof(b->auth_gw), "%s",
		 json_string_value(json_object_get(j, "key")));
	json_decref(j);

	b->nodes = calloc((size_t)n, sizeof(*b->nodes));
	b->multi = curl_multi_init();
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->timer_ms = -1;
	if (!b->multi || b->epfd < 0)
		goto fail;
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)n + 16);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
	for (int i = 0; i < n; i++) {
		struct bnode *nd = &b->nodes[i];
		uint8_t k[32];
		nd->idx = i;
		nd->gw = i < n_gw;
		crypto_sign_keypair(nd->pk, nd->sk);
		coord_mkey_format(nd->pk, nd->mkey);
		randombytes_buf(k, sizeof(k));
		sodium_bin2base64(nd->node_key, sizeof(nd->node_key), k, sizeof(k),
				  sodium_base64_VARIANT_ORIGINAL);
	}
	rss0 = rss_kib(b->pid);

	/* registration, REG_PARALLEL at a time */
	t0 = now();
	int next = 0, done = 0;
	while (done < n) {
		int inflight = 0;
		for (int i = 0; i < next; i++)
			inflight += b->nodes[i].phase == P_REGISTER;
		while (next < n && inflight < REG_PARALLEL) {
			start_register(b, &b->nodes[next++]);
			inflight++;
		}
		pump(b, 50);
		done = 0;
		for (int i = 0; i < next; i++)
			done += b->nodes[i].registered;
		if (now() - t0 > 600)
			goto fail;
	}
	t_reg = now() - t0;

	/* every node polls; wait until all hold a full map and a waiting poll */
	for (int i = 0; i < n; i++)
		start_poll(b, &b->nodes[i]);
	deadline = now() + 120;
	for (;;) {
		int full = 0;
		pump(b, 100);
		for (int i = 0; i < n; i++)
			full += b->nodes[i].have_full;
		if (full == n)
			break;
		if (now() > deadline) {
			fprintf(stderr, "bench: only %d of %d nodes got a full map\n", full, n);
			goto fail;
		}
	}
	/* let the deltas of late joiners settle */
	for (double until = now() + 2.0; now() < until;)
		pump(b, 100);
	rss1 = rss_kib(b->pid);

	/* the policy change */
	b->measuring = true;
	double cpu0 = cpu_ms(b->pid);
	double tp = now();
	if (!(j = admin(b, "PUT", "policy",
			json_pack("{ssss}", "tailnet", "bench", "policy", policy_b))))
		goto fail;
	json_decref(j);
	deadline = now() + 60;
	while (b->n_updated < n && now() < deadline)
		pump(b, 20);
	double t_all = (now() - tp) * 1000, cpu1 = cpu_ms(b->pid);
	double *lat = calloc((size_t)n, sizeof(double));
	size_t bytes = 0;
	int got = 0;
	for (int i = 0; i < n; i++) {
		bytes += b->nodes[i].full_bytes;
		if (b->nodes[i].updated_at)
			lat[got++] = (b->nodes[i].updated_at - tp) * 1000;
	}
	qsort(lat, (size_t)got, sizeof(double), cmp_double);
	printf("| %5d | %8.0f | %9zu | %7.0f | %7.0f | %7.0f | %5d/%-5d | %6.0f of %6.0f | %7.1f "
	       "|\n",
	       n, n / t_reg, bytes / (size_t)n, got ? lat[got / 2] : NAN,
	       got ? lat[(size_t)((got - 1) * 0.99)] : NAN, got ? lat[got - 1] : NAN, got, n,
	       cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : NAN, t_all,
	       rss1 > 0 && rss0 > 0 ? (double)(rss1 - rss0) / n : NAN);
	fflush(stdout);
	free(lat);
	for (int i = 0; i < n; i++) {
		struct bnode *nd = &b->nodes[i];
		if (nd->h) {
			curl_multi_remove_handle(b->multi, nd->h);
			curl_easy_cleanup(nd->h);
		}
		curl_slist_free_all(nd->hdrs);
		free(nd->body);
		strbuf_free(&nd->resp);
	}
	curl_multi_cleanup(b->multi);
	close(b->epfd);
	free(b->nodes);
	b->nodes = NULL;
	stop_server(b);
	return 0;
fail:
	fprintf(stderr, "bench: N=%d failed (server log in %s/coord.log, kept)\n", n, b->dir);
	if (b->pid > 0)
		kill(b->pid, SIGTERM);
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"quick", no_argument, NULL, 'q'}, {"server", required_argument, NULL, 's'}, {0}};
	struct bench b = {0};
	int sizes[16], n_sizes = 0, o;
	bool quick = false;
	char self[PATH_MAX], bin[PATH_MAX + 32];
	struct rlimit rl;

	while ((o = getopt_long(argc, argv, "qs:", opts, NULL)) != -1) {
		if (o == 'q')
			quick = true;
		else if (o == 's')
			b.server_bin = optarg;
		else {
			fprintf(stderr,
				"usage: meshgate-coord-bench [--quick] [--server PATH] [N...]\n");
			return 2;
		}
	}
	for (; optind < argc && n_sizes < 16; optind++)
		sizes[n_sizes++] = atoi(argv[optind]);
	if (!n_sizes) {
		int def[] = {500, 2000, 5000}, q[] = {50, 200};
		for (int i = 0; i < (quick ? 2 : 3); i++)
			sizes[n_sizes++] = quick ? q[i] : def[i];
	}
	if (!b.server_bin) {
		ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[l > 0 ? l : 0] = '\0';
		snprintf(bin, sizeof(bin), "%s/meshgate-coord", dirname(self));
		b.server_bin = bin;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT))
		return 1;
	printf("| N | registrations/s | full netmap bytes/node | policy change -> all updated p50 "
	       "ms | p99 ms | max ms | "
	       "updated | server CPU ms during the change, of ms | server RSS KiB/node |\n");
	printf("|---|---|---|---|---|---|---|---|---|\n");
	fflush(stdout);
	for (int i = 0; i < n_sizes; i++)
		if (run_one(&b, sizes[i]) < 0)
			return 1;
	return 0;
}
