/* SPDX-License-Identifier: MIT */
/*
 * meshgate: the operator's command line. Reads the dataplane's counters
 * straight from shared memory, so it works while both processes run and
 * never disturbs them.
 *
 *   meshgate stats NAME [--json]   ports, peers and drops by reason
 *
 * and talks to the running meshgate-control over <run_dir>/<name>.ctl
 * (control/coord_ctl.h) for the coordination server:
 *
 *   meshgate up NAME --login-server URL --auth-key KEY|file:PATH
 *                    [--advertise-routes P,...] [--hostname H]
 *   meshgate status NAME [--json]
 *   meshgate down NAME
 *
 * (--run-dir DIR anywhere after NAME if run_dir is not /var/run/wireguard.)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "addr.h"
#include "keys.h"
#include "shm.h"

/* TSC cycles of the dataplane as seconds. */
static double seconds(const struct mg_shm *s, uint64_t tsc)
{
	return s->hdr->tsc_hz ? (double)tsc / (double)s->hdr->tsc_hz : 0.0;
}

static void print_text(const struct mg_shm *s)
{
	printf("dataplane %s pid %" PRIu64 ", %u stat slots, %u peer slots\n", s->hdr->name,
	       s->hdr->dp_pid, s->hdr->n_stat_slots, s->hdr->max_peers);
	for (uint32_t i = 0; i < s->hdr->n_ports; i++) {
		const struct mg_port_export *p = &s->ports[i];
		printf("port %s %s rx_packets %" PRIu64 " rx_bytes %" PRIu64 " tx_packets %" PRIu64
		       " tx_bytes %" PRIu64 " rx_missed %" PRIu64 " rx_errors %" PRIu64
		       " tx_errors %" PRIu64 "\n",
		       p->name, p->role == 0 ? "wan" : "lan", p->rx_packets, p->rx_bytes,
		       p->tx_packets, p->tx_bytes, p->rx_missed, p->rx_errors, p->tx_errors);
	}
	for (uint32_t i = 0; i < s->hdr->max_peers; i++) {
		const struct mg_peer_export *e = &s->peers[i];
		struct mg_peer_stats t;
		char key[45], ep[64] = "(none)";
		if (!e->in_use)
			continue;
		mg_shm_peer_totals(s, i, &t);
		mg_key_to_base64(e->public_key, key);
		if (e->endpoint.family)
			mg_sockaddr_fmt(&e->endpoint, ep, sizeof(ep));
		printf("peer %s slot %u endpoint %s rx_packets %" PRIu64 " rx_bytes %" PRIu64
		       " tx_packets %" PRIu64 " tx_bytes %" PRIu64 " keypair %08x\n",
		       key, i, ep, t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes, e->kp_cur);
	}
	for (unsigned i = 0; i < MG_MAX_LCORES; i++) {
		struct mg_worker_export w;
		if (!mg_shm_worker_load(s, i, &w))
			continue;
		printf(
		    "worker %u lcore %u busy_seconds %.3f crypto_seconds %.3f rx_packets %" PRIu64
		    " polls %" PRIu64 " idle_sleeps %" PRIu64 "\n",
		    i, w.lcore, seconds(s, w.busy_tsc), seconds(s, w.crypto_tsc), w.rx_packets,
		    w.polls, w.idle_sleeps);
	}
	for (int r = 0; r < MG_DROP_MAX; r++)
		printf("drop %s %" PRIu64 "\n", mg_drop_names[r], mg_shm_drop_total(s, r));
}

static void print_json(const struct mg_shm *s)
{
	printf("{\"name\":\"%s\",\"ports\":[", s->hdr->name);
	for (uint32_t i = 0; i < s->hdr->n_ports; i++) {
		const struct mg_port_export *p = &s->ports[i];
		printf("%s{\"name\":\"%s\",\"rx_packets\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
		       ",\"tx_packets\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 "}",
		       i ? "," : "", p->name, p->rx_packets, p->rx_bytes, p->tx_packets,
		       p->tx_bytes);
	}
	printf("],\"peers\":[");
	bool first = true;
	for (uint32_t i = 0; i < s->hdr->max_peers; i++) {
		struct mg_peer_stats t;
		char key[45];
		if (!s->peers[i].in_use)
			continue;
		mg_shm_peer_totals(s, i, &t);
		mg_key_to_base64(s->peers[i].public_key, key);
		printf("%s{\"public_key\":\"%s\",\"rx_packets\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
		       ",\"tx_packets\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 "}",
		       first ? "" : ",", key, t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes);
		first = false;
	}
	printf("],\"workers\":[");
	first = true;
	for (unsigned i = 0; i < MG_MAX_LCORES; i++) {
		struct mg_worker_export w;
		if (!mg_shm_worker_load(s, i, &w))
			continue;
		printf(
		    "%s{\"worker\":%u,\"lcore\":%u,\"busy_seconds\":%.6f,\"crypto_seconds\":%.6f,"
		    "\"rx_packets\":%" PRIu64 ",\"polls\":%" PRIu64 ",\"idle_sleeps\":%" PRIu64 "}",
		    first ? "" : ",", i, w.lcore, seconds(s, w.busy_tsc), seconds(s, w.crypto_tsc),
		    w.rx_packets, w.polls, w.idle_sleeps);
		first = false;
	}
	printf("],\"drops\":{");
	for (int r = 0; r < MG_DROP_MAX; r++)
		printf("%s\"%s\":%" PRIu64, r ? "," : "", mg_drop_names[r], mg_shm_drop_total(s, r));
	printf("}}\n");
}

static int cmd_stats(int argc, char **argv)
{
	struct mg_shm s;
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	int rc = mg_shm_attach(&s, argv[0]);
	if (rc) {
		fprintf(stderr, "meshgate: no running dataplane \"%s\": %s\n", argv[0],
			strerror(-rc));
		return 1;
	}
	if (json)
		print_json(&s);
	else
		print_text(&s);
	mg_shm_detach(&s);
	return 0;
}

/* ---- the control socket ------------------------------------------------------ */

#define CTL_TIMEOUT_S 75 /* the control process gives up on the server after 60 */

/* Send req to <run_dir>/<name>.ctl and read the whole answer (malloc'd). */
static char *ctl_call(const char *run_dir, const char *name, const char *req)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = CTL_TIMEOUT_S};
	size_t n = 0, cap = 65536, len = strlen(req);
	char *buf = malloc(cap);
	int fd;

	if (!buf)
		return NULL;
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.ctl", run_dir, name) >=
	    (int)sizeof(sa.sun_path)) {
		fprintf(stderr, "meshgate: run dir too long\n");
		free(buf);
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr,
			"meshgate: no meshgate-control running for \"%s\" (%s: %s); start it "
			"first\n",
			name, sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(buf);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		fprintf(stderr, "meshgate: %s: %s\n", sa.sun_path, strerror(errno));
		close(fd);
		free(buf);
		return NULL;
	}
	for (;;) {
		ssize_t r;

		if (n + 1 == cap) {
			char *b = realloc(buf, cap * 2);
			if (!b)
				break;
			buf = b;
			cap *= 2;
		}
		r = recv(fd, buf + n, cap - n - 1, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (!n) {
		fprintf(stderr, "meshgate: no answer from meshgate-control\n");
		free(buf);
		return NULL;
	}
	return buf;
}

/* "error=..." answers: print and fail. Returns the body after "ok\n", or NULL. */
static const char *ctl_ok(const char *ans)
{
	if (!strncmp(ans, "ok\n", 3))
		return ans + 3;
	if (!strncmp(ans, "error=", 6))
		fprintf(stderr, "meshgate: %.*s\n", (int)strcspn(ans + 6, "\n"), ans + 6);
	else
		fprintf(stderr, "meshgate: unexpected answer from meshgate-control\n");
	return NULL;
}

struct opts {
	const char *run_dir, *server, *auth, *routes, *hostname;
	bool json;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const char *const with_arg[] = {"--run-dir", "--login-server", "--auth-key",
					       "--advertise-routes", "--hostname"};
	const char **dst[] = {&o->run_dir, &o->server, &o->auth, &o->routes, &o->hostname};

	o->run_dir = "/var/run/wireguard";
	for (int i = 1; i < argc; i++) {
		size_t k;
		const char *eq = strchr(argv[i], '=');
		size_t nl = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);

		if (!strcmp(argv[i], "--json")) {
			o->json = true;
			continue;
		}
		for (k = 0; k < sizeof(with_arg) / sizeof(with_arg[0]); k++)
			if (strlen(with_arg[k]) == nl && !strncmp(argv[i], with_arg[k], nl))
				break;
		if (k == sizeof(with_arg) / sizeof(with_arg[0])) {
			fprintf(stderr, "meshgate: unknown option %s\n", argv[i]);
			return -1;
		}
		if (eq) {
			*dst[k] = eq + 1;
		} else if (i + 1 < argc) {
			*dst[k] = argv[++i];
		} else {
			fprintf(stderr, "meshgate: %s needs a value\n", argv[i]);
			return -1;
		}
	}
	return 0;
}

/* No newlines in values: they would end the line protocol's line. */
static bool one_line(const char *what, const char *v)
{
	if (v && strpbrk(v, "\r\n")) {
		fprintf(stderr, "meshgate: %s: no line breaks allowed\n", what);
		return false;
	}
	return true;
}

/* --auth-key file:PATH reads the key from a file (keeps it out of ps). */
static int auth_key(const char *arg, char *out, size_t len)
{
	FILE *f;
	size_t n;

	if (strncmp(arg, "file:", 5)) {
		snprintf(out, len, "%s", arg);
		return 0;
	}
	if (!(f = fopen(arg + 5, "re"))) {
		fprintf(stderr, "meshgate: %s: %s\n", arg + 5, strerror(errno));
		return -1;
	}
	n = fread(out, 1, len - 1, f);
	fclose(f);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

static int cmd_up(int argc, char **argv)
{
	struct opts o = {0};
	char key[512] = "", req[8192];
	const char *body, *p;
	char *ans;
	int n;

	if (parse_opts(argc, argv, &o))
		return 2;
	if (o.auth && auth_key(o.auth, key, sizeof(key)))
		return 1;
	if (!one_line("--login-server", o.server) || !one_line("--auth-key", key) ||
	    !one_line("--hostname", o.hostname) || !one_line("--advertise-routes", o.routes))
		return 2;
	n = snprintf(req, sizeof(req), "up\n");
	if (o.server)
		n += snprintf(req + n, sizeof(req) - (size_t)n, "server=%s\n", o.server);
	if (key[0])
		n += snprintf(req + n, sizeof(req) - (size_t)n, "auth_key=%s\n", key);
	if (o.hostname)
		n += snprintf(req + n, sizeof(req) - (size_t)n, "hostname=%s\n", o.hostname);
	if (o.routes)
		n += snprintf(req + n, sizeof(req) - (size_t)n, "routes=%s\n", o.routes);
	if (n >= (int)sizeof(req) - 2) {
		fprintf(stderr, "meshgate: arguments too long\n");
		return 2;
	}
	snprintf(req + n, sizeof(req) - (size_t)n, "\n");
	ans = ctl_call(o.run_dir, argv[0], req);
	memset(req, 0, sizeof(req));
	memset(key, 0, sizeof(key));
	if (!ans)
		return 1;
	if (!(body = ctl_ok(ans))) {
		free(ans);
		return 1;
	}
	/* key=value lines: print them as the outcome. */
	printf("%s: up\n", argv[0]);
	for (p = body; *p && *p != '\n'; p += strcspn(p, "\n") + 1)
		printf("  %.*s\n", (int)strcspn(p, "\n"), p);
	free(ans);
	return 0;
}

static int cmd_down(int argc, char **argv)
{
	struct opts o = {0};
	char *ans;
	int rc;

	if (parse_opts(argc, argv, &o))
		return 2;
	if (!(ans = ctl_call(o.run_dir, argv[0], "down\n\n")))
		return 1;
	rc = ctl_ok(ans) ? 0 : 1;
	if (!rc)
		printf("%s: logged out; its netmap peers are removed (config peers stay)\n",
		       argv[0]);
	free(ans);
	return rc;
}

static const char *ago(int64_t t, char *buf, size_t len)
{
	int64_t d = (int64_t)time(NULL) - t;

	if (!t)
		return "never";
	if (d < 120)
		snprintf(buf, len, "%" PRId64 "s ago", d);
	else if (d < 7200)
		snprintf(buf, len, "%" PRId64 "m ago", d / 60);
	else
		snprintf(buf, len, "%" PRId64 "h ago", d / 3600);
	return buf;
}

static const char *join(json_t *a, char *buf, size_t len)
{
	size_t i, n = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(a, i, v)
	{
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "",
					      json_string_value(v) ? json_string_value(v) : "?");
	}
	return buf[0] ? buf : "-";
}

#define JS(o, k) (json_string_value(json_object_get((o), (k))) ?: "")
#define JI(o, k) ((int64_t)json_integer_value(json_object_get((o), (k))))

static void print_status(json_t *st)
{
	json_t *self = json_object_get(st, "self"), *peers = json_object_get(st, "peers"), *p;
	char a[512], t[32], exp[64] = "never", key[12];
	size_t i;
	int64_t e = JI(self, "key_expiry");

	if (e) {
		time_t tt = (time_t)e;
		strftime(exp, sizeof(exp), "%Y-%m-%d %H:%M UTC", gmtime(&tt));
	}
	printf("%s: %s%s%s", JS(st, "interface"), JS(st, "state"), JS(st, "server")[0] ? " " : "",
	       JS(st, "server"));
	if (json_object_get(st, "retry_in"))
		printf(" (retry in %" PRId64 "s)", JI(st, "retry_in"));
	if (JS(st, "error")[0])
		printf("\n  last error: %s", JS(st, "error"));
	printf("\n");
	snprintf(key, sizeof(key), "%.8s...", JS(self, "public_key"));
	printf("%-34s %-16s %-10s self, node %" PRId64 ", map %" PRId64 ", key expires %s\n",
	       join(json_object_get(self, "addresses"), a, sizeof(a)),
	       JS(self, "name")[0] ? JS(self, "name") : JS(self, "hostname"),
	       JS(self, "public_key")[0] ? key : "-", JI(self, "node_id"), JI(st, "map_version"),
	       exp);
	if (json_array_size(json_object_get(self, "endpoints"))) {
		printf("  endpoints %s", join(json_object_get(self, "endpoints"), a, sizeof(a)));
		if (json_is_true(json_object_get(self, "behind_nat")))
			printf(" (behind a NAT: keepalives every %" PRId64 " s)",
			       JI(self, "nat_keepalive"));
		putchar('\n');
	}
	if (json_object_get(self, "derp_home"))
		printf("  DERP home region %" PRId64 " (%s)\n", JI(self, "derp_home"),
		       json_is_true(json_object_get(self, "derp_home_connected"))
			   ? "connected"
			   : "not connected");
	json_array_foreach(peers, i, p)
	{
		json_t *on = json_object_get(p, "online");

		snprintf(key, sizeof(key), "%.8s...", JS(p, "public_key"));
		printf("%-34s %-16s %-10s %-22s %-8s %s, handshake %s%s\n",
		       join(json_object_get(p, json_object_get(p, "addresses") ? "addresses"
									       : "allowed_ips"),
			    a, sizeof(a)),
		       JS(p, "name")[0] ? JS(p, "name") : "-", key,
		       json_is_string(json_object_get(p, "endpoint")) ? JS(p, "endpoint") : "-",
		       !on		  ? "-"
		       : json_is_true(on) ? "online"
					  : "offline",
		       JS(p, "path"), ago(JI(p, "last_handshake"), t, sizeof(t)),
		       strcmp(JS(p, "source"), "config") ? "" : " (config)");
	}
}

static int cmd_status(int argc, char **argv)
{
	struct opts o = {0};
	const char *body;
	json_t *st;
	char *ans;

	if (parse_opts(argc, argv, &o))
		return 2;
	if (!(ans = ctl_call(o.run_dir, argv[0], "status\n\n")))
		return 1;
	if (!(body = ctl_ok(ans))) {
		free(ans);
		return 1;
	}
	if (o.json) {
		printf("%.*s\n", (int)strcspn(body, "\n"), body);
		free(ans);
		return 0;
	}
	st = json_loadb(body, strcspn(body, "\n"), 0, NULL);
	if (!st) {
		fprintf(stderr, "meshgate: bad status answer\n");
		free(ans);
		return 1;
	}
	print_status(st);
	json_decref(st);
	free(ans);
	return 0;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: meshgate stats NAME [--json]\n"
	    "       meshgate up NAME --login-server URL --auth-key KEY|file:PATH\n"
	    "                        [--advertise-routes P,...] [--hostname H]\n"
	    "       meshgate status NAME [--json]\n"
	    "       meshgate down NAME\n"
	    "  (up/status/down: --run-dir DIR if meshgate.run_dir is not /var/run/wireguard)\n");
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {
	    {"stats", cmd_stats}, {"up", cmd_up}, {"status", cmd_status}, {"down", cmd_down}};

	for (size_t i = 0; argc >= 3 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 2, argv + 2);
	usage();
	return 2;
}
