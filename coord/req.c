/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "addr.h"
#include "req.h"

#define MAX_ENDPOINTS 16
#define MAX_ROUTES    64
#define MAX_TAGS      16

struct key {
	const char *name;
	json_type type; /* JSON_TRUE stands for either boolean */
};

static int bad(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	snprintf(err, errlen, fmt, a, b);
	return -EINVAL;
}

static int load(const char *body, size_t len, json_t **root, const struct key *keys, bool strict,
		char *err, size_t errlen)
{
	json_error_t je;

	*root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!*root) {
		snprintf(err, errlen, "body: invalid JSON at line %d column %d: %s", je.line,
			 je.column, je.text);
		return -EINVAL;
	}
	if (!json_is_object(*root))
		return bad(err, errlen, "body: want a JSON object%s%s", "", "");
	const char *k;
	json_t *v;
	json_object_foreach(*root, k, v)
	{
		const struct key *kd = keys;
		while (kd->name && strcmp(kd->name, k))
			kd++;
		if (!kd->name) {
			if (strict)
				return bad(err, errlen, "body: unknown key \"%.40s\"%s", k, "");
			continue;
		}
		bool ok = kd->type == JSON_TRUE ? json_is_boolean(v) : json_typeof(v) == kd->type;
		if (!ok)
			return bad(err, errlen, "body: \"%s\": wrong type (want %s)", k,
				   kd->type == JSON_TRUE      ? "true/false"
				   : kd->type == JSON_STRING  ? "a string"
				   : kd->type == JSON_INTEGER ? "an integer"
							      : "a list");
	}
	return 0;
}

static int get_str(json_t *root, const char *k, char *out, size_t outlen, bool required, char *err,
		   size_t errlen)
{
	json_t *v = json_object_get(root, k);
	size_t n;

	*out = '\0';
	if (!v) {
		if (required)
			return bad(err, errlen, "body: \"%s\" is required%s", k, "");
		return 0;
	}
	n = json_string_length(v);
	if (n == 0 && required)
		return bad(err, errlen, "body: \"%s\" is empty%s", k, "");
	if (n >= outlen || strlen(json_string_value(v)) != n)
		return bad(err, errlen, "body: \"%s\": too long or contains NUL%s", k, "");
	memcpy(out, json_string_value(v), n + 1);
	return 0;
}

bool coord_valid_wg_key(const char *s)
{
	uint8_t k[32];
	size_t n = 0;

	return strlen(s) == 44 &&
	       sodium_base642bin(k, sizeof(k), s, 44, NULL, &n, NULL,
				 sodium_base64_VARIANT_ORIGINAL) == 0 &&
	       n == 32;
}

/* A list of strings, each checked and canonicalised by fn, joined by ','. */
typedef int (*item_fn)(const char *in, char *out, size_t outlen);

static int item_endpoint(const char *in, char *out, size_t outlen)
{
	struct mg_sockaddr sa;

	if (mg_sockaddr_parse(in, &sa) < 0)
		return -EINVAL;
	return mg_sockaddr_fmt(&sa, out, outlen) ? 0 : -EINVAL;
}

static int item_route(const char *in, char *out, size_t outlen)
{
	struct mg_prefix p;

	if (mg_prefix_parse(in, &p) < 0)
		return -EINVAL;
	return mg_prefix_fmt(&p, out, outlen) ? 0 : -EINVAL;
}

static int item_tag(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (strncmp(in, "tag:", 4) || n < 5 || n >= outlen || n > 63)
		return -EINVAL;
	for (size_t i = 4; i < n; i++)
		if (!isalnum((unsigned char)in[i]) && in[i] != '-' && in[i] != '_')
			return -EINVAL;
	memcpy(out, in, n + 1);
	return 0;
}

static int get_list(json_t *root, const char *k, item_fn fn, size_t max, const char *want,
		    char *out, size_t outlen, bool *has, char *err, size_t errlen)
{
	json_t *v = json_object_get(root, k), *it;
	size_t i, len = 0;
	char item[128];

	*out = '\0';
	if (has)
		*has = v != NULL;
	if (!v)
		return 0;
	if (json_array_size(v) > max) {
		snprintf(err, errlen, "body: \"%s\": at most %zu entries", k, max);
		return -EINVAL;
	}
	json_array_foreach(v, i, it)
	{
		if (!json_is_string(it) || fn(json_string_value(it), item, sizeof(item)) < 0) {
			snprintf(err, errlen, "body: %s[%zu] \"%.60s\": want %s", k, i,
				 json_is_string(it) ? json_string_value(it) : "(not a string)",
				 want);
			return -EINVAL;
		}
		size_t n = strlen(item);
		if (len + n + 2 > outlen) {
			snprintf(err, errlen, "body: \"%s\": too long", k);
			return -EINVAL;
		}
		/* drop duplicates */
		char *dup = strstr(out, item);
		if (dup && (dup == out || dup[-1] == ',') && (dup[n] == ',' || dup[n] == '\0'))
			continue;
		if (len)
			out[len++] = ',';
		memcpy(out + len, item, n + 1);
		len += n;
	}
	return 0;
}

static int get_lists(json_t *root, struct coord_lists *l, char *err, size_t errlen)
{
	int ret = get_list(root, "endpoints", item_endpoint, MAX_ENDPOINTS, "ADDRESS:PORT",
			   l->endpoints, sizeof(l->endpoints), &l->has_endpoints, err, errlen);
	if (!ret)
		ret = get_list(root, "routes", item_route, MAX_ROUTES, "a prefix like 10.88.0.0/24",
			       l->routes, sizeof(l->routes), &l->has_routes, err, errlen);
	return ret;
}

static int check_hostname(char *h, char *err, size_t errlen)
{
	size_t n = strlen(h);

	if (n == 0 || n > 63)
		return bad(err, errlen, "body: hostname \"%.70s\": want 1..63 characters%s", h, "");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return bad(
			    err, errlen,
			    "body: hostname \"%.70s\": only letters, digits, '-', '_', '.'%s", h,
			    "");
		h[i] = (char)tolower(c);
	}
	return 0;
}

static int check_node_key(const char *k, char *err, size_t errlen)
{
	if (!coord_valid_wg_key(k))
		return bad(
		    err, errlen,
		    "body: node_key \"%.60s\": want a WireGuard public key (base64 of 32 bytes)%s",
		    k, "");
	return 0;
}

/* Evaluates ret before root goes. */
#define DONE(ret)                                                                                  \
	do {                                                                                       \
		int done_ = (ret);                                                                 \
		json_decref(root);                                                                 \
		return done_;                                                                      \
	} while (0)

int coord_parse_register(const char *body, size_t len, struct coord_register_req *r, char *err,
			 size_t errlen)
{
	static const struct key keys[] = {{"node_key", JSON_STRING}, {"hostname", JSON_STRING},
					  {"auth_key", JSON_STRING}, {"endpoints", JSON_ARRAY},
					  {"routes", JSON_ARRAY},    {NULL, 0}};
	json_t *root;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, false, err, errlen)) < 0)
		DONE(ret);
	if ((ret =
		 get_str(root, "node_key", r->node_key, sizeof(r->node_key), true, err, errlen)) ||
	    (ret = check_node_key(r->node_key, err, errlen)) ||
	    (ret =
		 get_str(root, "hostname", r->hostname, sizeof(r->hostname), true, err, errlen)) ||
	    (ret = check_hostname(r->hostname, err, errlen)) ||
	    (ret =
		 get_str(root, "auth_key", r->auth_key, sizeof(r->auth_key), false, err, errlen)) ||
	    (ret = get_lists(root, &r->l, err, errlen)))
		DONE(ret);
	DONE(0);
}

int coord_parse_map(const char *body, size_t len, struct coord_map_req *r, char *err, size_t errlen)
{
	static const struct key keys[] = {{"version", JSON_INTEGER},
					  {"endpoints", JSON_ARRAY},
					  {"routes", JSON_ARRAY},
					  {NULL, 0}};
	json_t *root;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, false, err, errlen)) < 0)
		DONE(ret);
	r->version = json_integer_value(json_object_get(root, "version"));
	if (r->version < 0)
		DONE(bad(err, errlen, "body: \"version\" must not be negative%s%s", "", ""));
	DONE(get_lists(root, &r->l, err, errlen));
}

int coord_parse_update(const char *body, size_t len, struct coord_update_req *r, char *err,
		       size_t errlen)
{
	static const struct key keys[] = {{"node_key", JSON_STRING},
					  {"endpoints", JSON_ARRAY},
					  {"routes", JSON_ARRAY},
					  {NULL, 0}};
	json_t *root;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, false, err, errlen)) < 0)
		DONE(ret);
	if ((ret =
		 get_str(root, "node_key", r->node_key, sizeof(r->node_key), false, err, errlen)) ||
	    (*r->node_key && (ret = check_node_key(r->node_key, err, errlen))))
		DONE(ret);
	DONE(get_lists(root, &r->l, err, errlen));
}

static int check_name(const char *what, const char *s, bool allow_at, char *err, size_t errlen)
{
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(allow_at ? "-_.@+" : "-_.", *p))
			return bad(err, errlen, "body: %s \"%.70s\": letters, digits and -_. only",
				   what, s);
	return 0;
}

int coord_parse_tailnet(const char *body, size_t len, struct coord_tailnet_req *r, char *err,
			size_t errlen)
{
	static const struct key keys[] = {{"name", JSON_STRING},
					  {"key_expiry_days", JSON_INTEGER},
					  {"wireguard_gateways", JSON_STRING},
					  {NULL, 0}};
	json_t *root;
	int ret;
	char tag[REQ_NAME_MAX];

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, true, err, errlen)) < 0)
		DONE(ret);
	if ((ret = get_str(root, "name", r->name, sizeof(r->name), true, err, errlen)) ||
	    (ret = check_name("name", r->name, false, err, errlen)) ||
	    (ret = get_str(root, "wireguard_gateways", r->gw_tag, sizeof(r->gw_tag), false, err,
			   errlen)))
		DONE(ret);
	if (!*r->gw_tag)
		snprintf(r->gw_tag, sizeof(r->gw_tag), "tag:gw");
	if (item_tag(r->gw_tag, tag, sizeof(tag)) < 0)
		DONE(bad(err, errlen, "body: wireguard_gateways \"%s\": want tag:NAME%s", r->gw_tag,
			 ""));
	json_t *d = json_object_get(root, "key_expiry_days");
	long long days = d ? json_integer_value(d) : 180;
	if (days < 0 || days > 3650)
		DONE(
		    bad(err, errlen, "body: key_expiry_days: want 0..3650 (0: never)%s%s", "", ""));
	r->key_expiry_days = (int)days;
	DONE(0);
}

int coord_parse_user(const char *body, size_t len, struct coord_user_req *r, char *err,
		     size_t errlen)
{
	static const struct key keys[] = {
	    {"tailnet", JSON_STRING}, {"name", JSON_STRING}, {NULL, 0}};
	json_t *root;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, true, err, errlen)) < 0)
		DONE(ret);
	if ((ret = get_str(root, "tailnet", r->tailnet, sizeof(r->tailnet), true, err, errlen)) ||
	    (ret = get_str(root, "name", r->name, sizeof(r->name), true, err, errlen)) ||
	    (ret = check_name("name", r->name, true, err, errlen)))
		DONE(ret);
	if (!strncmp(r->name, "tag:", 4) || !strncmp(r->name, "group:", 6) ||
	    !strncmp(r->name, "autogroup:", 10))
		DONE(bad(err, errlen, "body: name \"%s\": reserved prefix%s", r->name, ""));
	DONE(0);
}

int coord_parse_key(const char *body, size_t len, struct coord_key_req *r, char *err, size_t errlen)
{
	static const struct key keys[] = {{"tailnet", JSON_STRING},
					  {"user", JSON_STRING},
					  {"reusable", JSON_TRUE},
					  {"ephemeral", JSON_TRUE},
					  {"tags", JSON_ARRAY},
					  {"expires_in", JSON_INTEGER},
					  {NULL, 0}};
	json_t *root, *e;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, true, err, errlen)) < 0)
		DONE(ret);
	if ((ret = get_str(root, "tailnet", r->tailnet, sizeof(r->tailnet), true, err, errlen)) ||
	    (ret = get_str(root, "user", r->user, sizeof(r->user), true, err, errlen)) ||
	    (ret = get_list(root, "tags", item_tag, MAX_TAGS, "tag:NAME", r->tags, sizeof(r->tags),
			    NULL, err, errlen)))
		DONE(ret);
	r->reusable = json_is_true(json_object_get(root, "reusable"));
	r->ephemeral = json_is_true(json_object_get(root, "ephemeral"));
	e = json_object_get(root, "expires_in");
	r->expires_in = e ? json_integer_value(e) : 3600;
	if (r->expires_in <= 0 || r->expires_in > 365 * 86400)
		DONE(bad(err, errlen, "body: expires_in: want 1..31536000 seconds%s%s", "", ""));
	DONE(0);
}

int coord_parse_approve(const char *body, size_t len, struct coord_approve_req *r, char *err,
			size_t errlen)
{
	static const struct key keys[] = {{"approve", JSON_ARRAY}, {NULL, 0}};
	json_t *root;
	int ret;
	bool has;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, true, err, errlen)) < 0)
		DONE(ret);
	if ((ret = get_list(root, "approve", item_route, MAX_ROUTES, "a prefix like 10.88.0.0/24",
			    r->routes, sizeof(r->routes), &has, err, errlen)))
		DONE(ret);
	if (!has)
		DONE(bad(err, errlen, "body: \"approve\" is required%s%s", "", ""));
	DONE(0);
}

int coord_parse_policy(const char *body, size_t len, struct coord_policy_req *r, char *err,
		       size_t errlen)
{
	static const struct key keys[] = {
	    {"tailnet", JSON_STRING}, {"policy", JSON_STRING}, {NULL, 0}};
	json_t *root, *p;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, true, err, errlen)) < 0)
		DONE(ret);
	if ((ret = get_str(root, "tailnet", r->tailnet, sizeof(r->tailnet), true, err, errlen)))
		DONE(ret);
	p = json_object_get(root, "policy");
	if (!p)
		DONE(bad(err, errlen, "body: \"policy\" is required%s%s", "", ""));
	if (strlen(json_string_value(p)) != json_string_length(p))
		DONE(bad(err, errlen, "body: \"policy\" contains NUL%s%s", "", ""));
	if (!(r->policy = strdup(json_string_value(p))))
		DONE(-ENOMEM);
	DONE(0);
}

int coord_parse_wg(const char *body, size_t len, struct coord_wg_req *r, char *err, size_t errlen)
{
	static const struct key keys[] = {{"tailnet", JSON_STRING},
					  {"user", JSON_STRING},
					  {"name", JSON_STRING},
					  {"public_key", JSON_STRING},
					  {NULL, 0}};
	json_t *root;
	int ret;

	memset(r, 0, sizeof(*r));
	if ((ret = load(body, len, &root, keys, true, err, errlen)) < 0)
		DONE(ret);
	if ((ret = get_str(root, "tailnet", r->tailnet, sizeof(r->tailnet), true, err, errlen)) ||
	    (ret = get_str(root, "user", r->user, sizeof(r->user), true, err, errlen)) ||
	    (ret = get_str(root, "name", r->name, sizeof(r->name), true, err, errlen)) ||
	    (ret = check_hostname(r->name, err, errlen)) ||
	    (ret = get_str(root, "public_key", r->public_key, sizeof(r->public_key), true, err,
			   errlen)))
		DONE(ret);
	if (!coord_valid_wg_key(r->public_key))
		DONE(bad(err, errlen, "body: public_key \"%.60s\": want a WireGuard public key%s",
			 r->public_key, ""));
	DONE(0);
}
