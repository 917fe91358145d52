/* SPDX-License-Identifier: MIT */
/*
 * meshgate-admin: the coordination server's admin CLI (the admin API of
 * docs/coord-protocol.md over libcurl). A table of subcommands, each a
 * small function building one request.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "conf.h"
#include "strbuf.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct ctx {
	const char *server;
	char token[512];
	bool insecure;
	const char *cacert;
};

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	strbuf_addn(arg, p, sz * n);
	return sz * n;
}

/* One request; returns the parsed answer (NULL after printing why). */
static json_t *call(struct ctx *c, const char *method, const char *path, json_t *body)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	struct strbuf out = {0};
	char url[1024], auth[600], *payload = NULL;
	long status = 0;
	json_t *ans = NULL;
	json_error_t je;
	CURLcode rc;

	if (!h)
		return NULL;
	snprintf(url, sizeof(url), "%s/api/v1/admin/%s", c->server, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	if (c->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
	}
	strbuf_add(&out, "");
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		fprintf(stderr, "meshgate-admin: %s: %s\n", url, curl_easy_strerror(rc));
		goto done;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	ans = json_loads(out.buf ? out.buf : "", 0, &je);
	if (status != 200) {
		json_t *e = json_object_get(ans, "error");
		fprintf(stderr, "meshgate-admin: %s %s: HTTP %ld: %s\n", method, path, status,
			e	  ? json_string_value(e)
			: out.buf ? out.buf
				  : "");
		json_decref(ans);
		ans = NULL;
	} else if (!ans) {
		fprintf(stderr, "meshgate-admin: %s: answer is not JSON\n", path);
	}
done:
	free(payload);
	strbuf_free(&out);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ans;
}

static int print_json(json_t *j)
{
	if (!j)
		return 1;
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(j);
	return 0;
}

static int print_field(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);

	if (!j)
		return 1;
	fputs(json_is_string(v) ? json_string_value(v) : "", stdout);
	if (json_is_string(v) && json_string_length(v) &&
	    json_string_value(v)[json_string_length(v) - 1] != '\n')
		putchar('\n');
	json_decref(j);
	return 0;
}

/* "3600", "45s", "30m", "1h", "7d" -> seconds; -1 if bad. */
static long long duration(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (end == s || v <= 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		v *= 60;
		break;
	case 'h':
		v *= 3600;
		break;
	case 'd':
		v *= 86400;
		break;
	default:
		return -1;
	}
	return end[0] && end[1] ? -1 : v;
}

static char *enc(const char *s)
{
	static char buf[512];
	char *e = curl_easy_escape(NULL, s, 0);

	snprintf(buf, sizeof(buf), "%s", e ? e : "");
	curl_free(e);
	return buf;
}

/* ---- subcommands (argv past the command words) ---- */

static int c_tailnet_create(struct ctx *c, int argc, char **argv)
{
	json_t *b = json_pack("{ss}", "name", argv[0]);

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--key-expiry-days"))
			json_object_set_new(b, "key_expiry_days", json_integer(atoll(argv[i + 1])));
		else if (!strcmp(argv[i], "--gateways"))
			json_object_set_new(b, "wireguard_gateways", json_string(argv[i + 1]));
	}
	return print_json(call(c, "POST", "tailnets", b));
}

static int c_tailnets(struct ctx *c, int argc, char **argv)
{
	(void)argc, (void)argv;
	return print_json(call(c, "GET", "tailnets", NULL));
}

static int c_user_create(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	return print_json(
	    call(c, "POST", "users", json_pack("{ssss}", "tailnet", argv[0], "name", argv[1])));
}

static int c_users(struct ctx *c, int argc, char **argv)
{
	char path[600];

	snprintf(path, sizeof(path), "users%s%s", argc ? "?tailnet=" : "",
		 argc ? enc(argv[0]) : "");
	return print_json(call(c, "GET", path, NULL));
}

static int c_key_create(struct ctx *c, int argc, char **argv)
{
	json_t *b = json_pack("{sssssbsbs[]}", "tailnet", argv[0], "user", argv[1], "reusable", 0,
			      "ephemeral", 0, "tags");

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--reusable"))
			json_object_set_new(b, "reusable", json_true());
		else if (!strcmp(argv[i], "--ephemeral"))
			json_object_set_new(b, "ephemeral", json_true());
		else if (!strcmp(argv[i], "--tag") && i + 1 < argc)
			json_array_append_new(json_object_get(b, "tags"), json_string(argv[++i]));
		else if (!strcmp(argv[i], "--expires") && i + 1 < argc) {
			long long d = duration(argv[++i]);
			if (d < 0) {
				fprintf(
				    stderr,
				    "meshgate-admin: --expires %s: want 3600, 45s, 30m, 1h or 7d\n",
				    argv[i]);
				json_decref(b);
				return 2;
			}
			json_object_set_new(b, "expires_in", json_integer(d));
		} else {
			fprintf(stderr, "meshgate-admin: key create: unknown option %s\n", argv[i]);
			json_decref(b);
			return 2;
		}
	}
	return print_field(call(c, "POST", "preauthkeys", b), "key");
}

static int c_keys(struct ctx *c, int argc, char **argv)
{
	char path[600];

	snprintf(path, sizeof(path), "preauthkeys%s%s", argc ? "?tailnet=" : "",
		 argc ? enc(argv[0]) : "");
	return print_json(call(c, "GET", path, NULL));
}

static int c_nodes(struct ctx *c, int argc, char **argv)
{
	char path[600];
	json_t *a, *n;
	size_t i;

	snprintf(path, sizeof(path), "nodes%s%s", argc ? "?tailnet=" : "",
		 argc ? enc(argv[0]) : "");
	if (!(a = call(c, "GET", path, NULL)))
		return 1;
	printf("%-6s %-20s %-10s %-18s %-7s %-14s %s\n", "ID", "NAME", "TAILNET", "IPV4", "ONLINE",
	       "TAGS", "ROUTES");
	json_array_foreach(a, i, n)
	{
		json_t *r = json_object_get(n, "primary_routes"), *x;
		size_t k;
		printf("%-6lld %-20s %-10s %-18s %-7s %-14s",
		       (long long)json_integer_value(json_object_get(n, "id")),
		       json_string_value(json_object_get(n, "name")),
		       json_string_value(json_object_get(n, "tailnet")),
		       json_string_value(json_array_get(json_object_get(n, "addresses"), 0)),
		       json_is_true(json_object_get(n, "online")) ? "yes" : "no",
		       *json_string_value(json_object_get(n, "tags"))
			   ? json_string_value(json_object_get(n, "tags"))
		       : json_is_true(json_object_get(n, "plain_wireguard")) ? "(wireguard)"
									     : "-");
		json_array_foreach(r, k, x) printf(" %s", json_string_value(x));
		putchar('\n');
	}
	json_decref(a);
	return 0;
}

static int c_node_delete(struct ctx *c, int argc, char **argv)
{
	char path[64];

	(void)argc;
	snprintf(path, sizeof(path), "nodes/%lld", atoll(argv[0]));
	return print_json(call(c, "DELETE", path, NULL));
}

static int c_node_expire(struct ctx *c, int argc, char **argv)
{
	char path[64];

	(void)argc;
	snprintf(path, sizeof(path), "nodes/%lld/expire", atoll(argv[0]));
	return print_json(call(c, "POST", path, json_object()));
}

static int c_routes(struct ctx *c, int argc, char **argv)
{
	(void)argc, (void)argv;
	return print_json(call(c, "GET", "routes", NULL));
}

static int c_route_approve(struct ctx *c, int argc, char **argv)
{
	char path[64];
	json_t *b = json_pack("{s[]}", "approve");

	snprintf(path, sizeof(path), "routes/%lld", atoll(argv[0]));
	for (int i = 1; i < argc; i++)
		json_array_append_new(json_object_get(b, "approve"), json_string(argv[i]));
	return print_json(call(c, "POST", path, b));
}

static int c_policy_get(struct ctx *c, int argc, char **argv)
{
	char path[600];

	(void)argc;
	snprintf(path, sizeof(path), "policy?tailnet=%s", enc(argv[0]));
	json_t *j = call(c, "GET", path, NULL);
	if (j && json_is_null(json_object_get(j, "policy"))) {
		printf("# no policy: everything within the tailnet is allowed\n");
		json_decref(j);
		return 0;
	}
	return print_field(j, "policy");
}

static int c_policy_set(struct ctx *c, int argc, char **argv)
{
	FILE *f = fopen(argv[1], "rb");
	struct strbuf sb = {0};
	char buf[4096];
	size_t n;

	(void)argc;
	if (!f) {
		fprintf(stderr, "meshgate-admin: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	strbuf_add(&sb, "");
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		strbuf_addn(&sb, buf, n);
	fclose(f);
	json_t *b = json_pack("{ssss}", "tailnet", argv[0], "policy", sb.buf);
	strbuf_free(&sb);
	if (!b) {
		fprintf(stderr, "meshgate-admin: %s: not UTF-8 text\n", argv[1]);
		return 1;
	}
	return print_json(call(c, "PUT", "policy", b));
}

static int c_policy_history(struct ctx *c, int argc, char **argv)
{
	char path[600];

	(void)argc;
	snprintf(path, sizeof(path), "policy/history?tailnet=%s", enc(argv[0]));
	return print_json(call(c, "GET", path, NULL));
}

static int c_policy_diff(struct ctx *c, int argc, char **argv)
{
	char path[700];

	(void)argc;
	snprintf(path, sizeof(path), "policy/diff?tailnet=%s&from=%lld&to=%lld", enc(argv[0]),
		 atoll(argv[1]), atoll(argv[2]));
	return print_field(call(c, "GET", path, NULL), "diff");
}

static int c_wg_enroll(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	return print_field(call(c, "POST", "wireguard",
				json_pack("{ssssssss}", "tailnet", argv[0], "user", argv[1], "name",
					  argv[2], "public_key", argv[3])),
			   "config");
}

static const struct cmd {
	const char *w1, *w2; /* command words; w2 NULL: one word */
	int min_args, max_args;
	int (*fn)(struct ctx *, int, char **);
	const char *usage;
} cmds[] = {
    {"tailnet", "create", 1, 5, c_tailnet_create,
     "tailnet create NAME [--key-expiry-days N] [--gateways tag:gw]"},
    {"tailnets", NULL, 0, 0, c_tailnets, "tailnets"},
    {"user", "create", 2, 2, c_user_create, "user create TAILNET NAME"},
    {"users", NULL, 0, 1, c_users, "users [TAILNET]"},
    {"key", "create", 2, 20, c_key_create,
     "key create TAILNET USER [--reusable] [--ephemeral] [--tag tag:x]... [--expires 1h]"},
    {"keys", NULL, 0, 1, c_keys, "keys [TAILNET]"},
    {"nodes", NULL, 0, 1, c_nodes, "nodes [TAILNET]"},
    {"node", "delete", 1, 1, c_node_delete, "node delete ID"},
    {"node", "expire", 1, 1, c_node_expire, "node expire ID"},
    {"routes", NULL, 0, 0, c_routes, "routes"},
    {"route", "approve", 2, 64, c_route_approve, "route approve NODE_ID PREFIX..."},
    {"policy", "get", 1, 1, c_policy_get, "policy get TAILNET"},
    {"policy", "set", 2, 2, c_policy_set,
     "policy set TAILNET FILE   (compiled and its tests run first)"},
    {"policy", "history", 1, 1, c_policy_history, "policy history TAILNET"},
    {"policy", "diff", 3, 3, c_policy_diff, "policy diff TAILNET FROM_VERSION TO_VERSION"},
    {"wg", "enroll", 4, 4, c_wg_enroll, "wg enroll TAILNET USER NAME PUBLIC_KEY"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: meshgate-admin --server URL --token-file FILE [--insecure] [--cacert "
		   "FILE] COMMAND\n"
		   "commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %s\n", cmds[i].usage);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'}, {"token-file", required_argument, NULL, 't'},
	    {"insecure", no_argument, NULL, 'k'},     {"cacert", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},	      {0}};
	struct ctx c = {.server = getenv("MESHGATE_COORD_URL")};
	const char *token_file = getenv("MESHGATE_ADMIN_TOKEN_FILE");
	char err[256];
	int o;

	while ((o = getopt_long(argc, argv, "+s:t:kh", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			c.server = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'k':
			c.insecure = true;
			break;
		case 'C':
			c.cacert = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (!c.server || !token_file || argc < 1) {
		usage(stderr);
		return 2;
	}
	if (coord_read_token(token_file, c.token, sizeof(c.token), err, sizeof(err)) < 0) {
		fprintf(stderr, "meshgate-admin: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		const struct cmd *k = &cmds[i];
		int words = k->w2 ? 2 : 1, n = argc - words;
		if (strcmp(argv[0], k->w1) || (k->w2 && (argc < 2 || strcmp(argv[1], k->w2))))
			continue;
		if (n < k->min_args || n > k->max_args) {
			fprintf(stderr, "usage: meshgate-admin ... %s\n", k->usage);
			return 2;
		}
		curl_global_init(CURL_GLOBAL_DEFAULT);
		int ret = k->fn(&c, n, argv + words);
		curl_global_cleanup();
		return ret;
	}
	fprintf(stderr, "meshgate-admin: unknown command \"%s\"\n", argv[0]);
	usage(stderr);
	return 2;
}
