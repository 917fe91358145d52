/* SPDX-License-Identifier: MIT */
/*
 * The coordination server's config: libconfig does the syntax, a table of
 * known settings the schema (as common/config.c, smaller): an unknown
 * setting is an error, not silently ignored, and errors quote the setting.
 * A list of groups (derp_regions) has a table of its own for the members of
 * each group; its errors name the element, "derp_regions[1].id".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <libconfig.h>

#include "addr.h"
#include "conf.h"
#include "keys.h"
#include "strbuf.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum kind {
	K_STR,
	K_UINT,
	K_DOUBLE,
	K_BOOL,
	K_SOCKADDR, /* numeric "ipv4:port" or "[ipv6]:port" */
	K_HOSTPORT, /* K_SOCKADDR or "name:port": the sockaddr, then char host[254] */
	K_LOGLEVEL,
	K_KEY,	      /* base64 of 32 bytes */
	K_DNS_NAME,   /* a K_STR that must be a DNS name */
	K_GROUP_LIST, /* ( { ... }, ... ): see struct group_list */
};

struct group_list;

struct field {
	const char *path; /* dotted, as libconfig_lookup takes it; a list member: its name */
	enum kind kind;
	size_t off, size; /* in struct coord_conf; a list member: in the list's element */
	double min, max;
	bool required;		       /* list members: must be given */
	const struct group_list *list; /* K_GROUP_LIST */
};

/*
 * A list of groups into an array in struct coord_conf (the field's off and
 * size): members of each group by fields, then check (cross-member and
 * cross-element rules; element i, the ones before it are already read).
 */
struct group_list {
	const struct field *fields;
	size_t n_fields;
	size_t elem_size;
	size_t count_off; /* the unsigned element count in struct coord_conf */
	int (*check)(struct coord_conf *c, unsigned i, const config_setting_t *g, const char *path,
		     const char *name, char *err, size_t errlen);
};

#define F(p, k, m, lo, hi)                                                                         \
	{                                                                                          \
		.path = p, .kind = k, .off = offsetof(struct coord_conf, m),                       \
		.size = sizeof(((struct coord_conf *)0)->m), .min = lo, .max = hi                  \
	}

/* A member of the groups of a list whose elements are T. */
#define M(p, k, T, m, lo, hi, req)                                                                 \
	{                                                                                          \
		.path = p, .kind = k, .off = offsetof(T, m), .size = sizeof(((T *)0)->m),          \
		.min = lo, .max = hi, .required = req                                              \
	}

static int check_derp_region(struct coord_conf *c, unsigned i, const config_setting_t *g,
			     const char *path, const char *name, char *err, size_t errlen);

static const struct field derp_region_fields[] = {
    M("id", K_UINT, struct coord_derp_region, id, 1, 65535, true),
    M("server", K_HOSTPORT, struct coord_derp_region, server, 0, 0, true),
    M("public_key", K_KEY, struct coord_derp_region, public_key, 0, 0, false),
    M("tls", K_BOOL, struct coord_derp_region, tls, 0, 0, false),
    M("server_name", K_DNS_NAME, struct coord_derp_region, server_name, 0, 0, false),
};

static const struct group_list derp_region_list = {
    .fields = derp_region_fields,
    .n_fields = ARRAY_SIZE(derp_region_fields),
    .elem_size = sizeof(struct coord_derp_region),
    .count_off = offsetof(struct coord_conf, n_derp_regions),
    .check = check_derp_region,
};

static const struct field fields[] = {
    F("listen", K_SOCKADDR, listen, 0, 0),
    F("tls.cert_file", K_STR, tls_cert_file, 0, 0),
    F("tls.key_file", K_STR, tls_key_file, 0, 0),
    F("database", K_STR, database, 0, 0),
    F("admin_token_file", K_STR, admin_token_file, 0, 0),
    F("log_level", K_LOGLEVEL, log_level, 0, 0),
    F("testing.insecure_http", K_BOOL, insecure_http, 0, 0),
    F("testing.key_expiry_seconds", K_UINT, key_expiry_seconds, 10, 86400),
    F("limits.max_connections", K_UINT, max_connections, 16, 1000000),
    F("limits.max_body", K_UINT, max_body, 1024, 1 << 20),
    F("limits.rate_per_ip", K_DOUBLE, ip_rate, 0.1, 1e7),
    F("limits.burst_per_ip", K_DOUBLE, ip_burst, 1, 1e7),
    F("limits.rate_per_machine", K_DOUBLE, key_rate, 0.1, 1e7),
    F("limits.burst_per_machine", K_DOUBLE, key_burst, 1, 1e7),
    F("limits.long_poll_seconds", K_UINT, long_poll_seconds, 1, 300),
    F("limits.offline_seconds", K_UINT, offline_seconds, 2, 3600),
    F("limits.ephemeral_seconds", K_UINT, ephemeral_seconds, 2, 86400),
    F("limits.clock_skew", K_UINT, clock_skew, 1, 3600),
    {.path = "derp_regions",
     .kind = K_GROUP_LIST,
     .off = offsetof(struct coord_conf, derp_regions),
     .size = sizeof(((struct coord_conf *)0)->derp_regions),
     .list = &derp_region_list},
};

/*
 * The longest region in derp_json, with the comma before it: the fixed text
 * plus the longest values (the sizes below count a NUL each, so a few bytes
 * spare).
 */
#define DERP_REGION_JSON_FIXED                                                                     \
	",{\"id\":65535,\"server\":\"\",\"public_key\":\"\",\"tls\":false,\"server_name\":\"\"}"
#define DERP_REGION_JSON_MAX                                                                       \
	(sizeof(DERP_REGION_JSON_FIXED) + MG_SOCKADDR_STRLEN +                                     \
	 sizeof(((struct coord_derp_region *)0)->host) + MG_KEY_B64_LEN +                          \
	 sizeof(((struct coord_derp_region *)0)->server_name))
_Static_assert(sizeof("{\"regions\":[]}") + COORD_MAX_DERP_REGIONS * DERP_REGION_JSON_MAX <=
		   COORD_DERP_JSON_MAX,
	       "COORD_DERP_JSON_MAX too small");

static const char *const groups[] = {"tls", "testing", "limits"};

static void defaults(struct coord_conf *c)
{
	memset(c, 0, sizeof(*c));
	mg_sockaddr_parse("0.0.0.0:8443", &c->listen);
	snprintf(c->database, sizeof(c->database), "sqlite:/var/lib/meshgate/coord.db");
	snprintf(c->admin_token_file, sizeof(c->admin_token_file), "/etc/meshgate/admin.token");
	c->log_level = LOG_INFO;
	c->max_connections = 20000;
	c->max_body = 1 << 20;
	c->ip_rate = 50;
	c->ip_burst = 200;
	c->key_rate = 5;
	c->key_burst = 30;
	c->long_poll_seconds = 25;
	c->offline_seconds = 60;
	c->ephemeral_seconds = 120;
	c->clock_skew = 120;
	snprintf(c->derp_json, sizeof(c->derp_json), "{\"regions\":[]}");
}

static const struct field *find_field(const char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (!strcmp(fields[i].path, path))
			return &fields[i];
	return NULL;
}

/* Set f (named path in messages) in base: struct coord_conf, or a list's element. */
static int set_field(const struct field *f, const config_setting_t *s, void *base, const char *path,
		     const char *name, char *err, size_t errlen)
{
	char *dst = (char *)base + f->off;
	int line = config_setting_source_line(s);
	static const char *const levels[] = {"error", "warning", "notice", "info", "debug"};
	static const int level_v[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};
	const char *str = config_setting_get_string(s);
	double d;

	switch (f->kind) {
	case K_STR:
	case K_SOCKADDR:
	case K_HOSTPORT:
	case K_LOGLEVEL:
	case K_KEY:
	case K_DNS_NAME:
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			goto bad_type;
		if (f->kind == K_HOSTPORT) {
			_Static_assert(offsetof(struct coord_derp_region, host) ==
					   offsetof(struct coord_derp_region, server) +
					       sizeof(struct mg_sockaddr),
				       "K_HOSTPORT: host follows the sockaddr");
			if (mg_hostport_parse(str, (struct mg_sockaddr *)dst,
					      dst + sizeof(struct mg_sockaddr), 254) < 0) {
				snprintf(err, errlen,
					 "%s:%d: %s \"%s\": want ADDRESS:PORT or NAME:PORT "
					 "(numeric or a DNS name, [IPv6]:PORT)",
					 name, line, path, str);
				return -EINVAL;
			}
		} else if (f->kind == K_SOCKADDR) {
			if (mg_sockaddr_parse(str, (struct mg_sockaddr *)dst) < 0) {
				snprintf(err, errlen,
					 "%s:%d: %s \"%s\": want ADDRESS:PORT (numeric, "
					 "[IPv6]:PORT)",
					 name, line, path, str);
				return -EINVAL;
			}
		} else if (f->kind == K_KEY) {
			/* Never quote the value: it might be a private key pasted by mistake. */
			static const uint8_t zero[32];

			if (mg_key_from_base64(str, (uint8_t *)dst) < 0) {
				snprintf(err, errlen,
					 "%s:%d: %s: not a base64 key (44 characters, as printed "
					 "by wg pubkey)",
					 name, line, path);
				return -EINVAL;
			}
			if (!memcmp(dst, zero, 32)) {
				snprintf(err, errlen, "%s:%d: %s: the all-zero key", name, line,
					 path);
				return -EINVAL;
			}
		} else if (f->kind == K_LOGLEVEL) {
			for (size_t i = 0; i < ARRAY_SIZE(levels); i++)
				if (!strcmp(str, levels[i])) {
					*(int *)dst = level_v[i];
					return 0;
				}
			snprintf(err, errlen,
				 "%s:%d: %s \"%s\": want error, warning, notice, info or debug",
				 name, line, path, str);
			return -EINVAL;
		} else {
			if (strlen(str) >= f->size || !*str) {
				snprintf(err, errlen, "%s:%d: %s: %s", name, line, path,
					 *str ? "too long" : "empty");
				return -EINVAL;
			}
			if (f->kind == K_DNS_NAME && !mg_dns_name_valid(str)) {
				snprintf(
				    err, errlen,
				    "%s:%d: %s \"%s\": not a DNS name (labels of 1..63 letters, "
				    "digits and '-', no '-' at either end)",
				    name, line, path, str);
				return -EINVAL;
			}
			memcpy(dst, str, strlen(str) + 1);
		}
		return 0;
	case K_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			goto bad_type;
		*(bool *)dst = config_setting_get_bool(s);
		return 0;
	case K_UINT:
	case K_DOUBLE:
		if (config_setting_type(s) == CONFIG_TYPE_INT ||
		    config_setting_type(s) == CONFIG_TYPE_INT64)
			d = (double)config_setting_get_int64(s);
		else if (f->kind == K_DOUBLE && config_setting_type(s) == CONFIG_TYPE_FLOAT)
			d = config_setting_get_float(s);
		else
			goto bad_type;
		if (d < f->min || d > f->max) {
			snprintf(err, errlen, "%s:%d: %s %g: out of range %g..%g", name, line, path,
				 d, f->min, f->max);
			return -EINVAL;
		}
		if (f->kind == K_DOUBLE)
			*(double *)dst = d;
		else if (f->size == sizeof(unsigned))
			*(unsigned *)dst = (unsigned)d;
		else
			*(unsigned long long *)dst = (unsigned long long)d;
		return 0;
	case K_GROUP_LIST: /* walk() hands these to set_list() */
		break;
	}
bad_type:
	snprintf(err, errlen, "%s:%d: %s: wrong type (want %s)", name, line, path,
		 f->kind == K_BOOL     ? "true/false"
		 : f->kind == K_UINT   ? "an integer"
		 : f->kind == K_DOUBLE ? "a number"
				       : "a string");
	return -EINVAL;
}

/* A list of groups: each group's members by f->list, unknown ones refused. */
static int set_list(const struct field *f, const config_setting_t *s, struct coord_conf *c,
		    const char *name, char *err, size_t errlen)
{
	const struct group_list *l = f->list;
	size_t max = f->size / l->elem_size;
	int line = config_setting_source_line(s), ret;
	unsigned n;

	if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
		snprintf(err, errlen, "%s:%d: %s: want a list ( { ... }, ... )", name, line,
			 f->path);
		return -EINVAL;
	}
	n = (unsigned)config_setting_length(s);
	if (n > max) {
		snprintf(err, errlen, "%s:%d: %s: %u entries, at most %zu", name, line, f->path, n,
			 max);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(s, i);
		char *elem = (char *)c + f->off + i * l->elem_size;
		char path[64], mpath[128];

		snprintf(path, sizeof(path), "%s[%u]", f->path, i);
		if (!config_setting_is_group(g)) {
			snprintf(err, errlen, "%s:%d: %s: want a group { ... }", name,
				 config_setting_source_line(g), path);
			return -EINVAL;
		}
		for (int k = 0; k < config_setting_length(g); k++) {
			const config_setting_t *m = config_setting_get_elem(g, (unsigned)k);
			const struct field *mf = NULL;

			snprintf(mpath, sizeof(mpath), "%s.%s", path, config_setting_name(m));
			for (size_t j = 0; j < l->n_fields && !mf; j++)
				if (!strcmp(l->fields[j].path, config_setting_name(m)))
					mf = &l->fields[j];
			if (!mf) {
				snprintf(err, errlen, "%s:%d: unknown setting \"%s\"", name,
					 config_setting_source_line(m), mpath);
				return -EINVAL;
			}
			if ((ret = set_field(mf, m, elem, mpath, name, err, errlen)) < 0)
				return ret;
		}
		for (size_t j = 0; j < l->n_fields; j++)
			if (l->fields[j].required &&
			    !config_setting_get_member(g, l->fields[j].path)) {
				snprintf(err, errlen, "%s:%d: %s.%s: required", name,
					 config_setting_source_line(g), path, l->fields[j].path);
				return -EINVAL;
			}
		if (l->check && (ret = l->check(c, i, g, path, name, err, errlen)) < 0)
			return ret;
	}
	*(unsigned *)((char *)c + l->count_off) = n;
	return 0;
}

static int check_derp_region(struct coord_conf *c, unsigned i, const config_setting_t *g,
			     const char *path, const char *name, char *err, size_t errlen)
{
	struct coord_derp_region *r = &c->derp_regions[i];

	for (unsigned k = 0; k < i; k++)
		if (c->derp_regions[k].id == r->id) {
			snprintf(err, errlen, "%s:%d: %s.id %u: duplicate (also derp_regions[%u])",
				 name,
				 config_setting_source_line(config_setting_get_member(g, "id")),
				 path, r->id, k);
			return -EINVAL;
		}
	if (!r->tls && *r->server_name) {
		snprintf(err, errlen, "%s:%d: %s.server_name: only with tls = true", name,
			 config_setting_source_line(config_setting_get_member(g, "server_name")),
			 path);
		return -EINVAL;
	}
	r->pinned = config_setting_get_member(g, "public_key") != NULL;
	return 0;
}

/* s as a JSON string. */
static void json_str(struct strbuf *sb, const char *s)
{
	strbuf_add(sb, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			strbuf_printf(sb, "\\%c", ch);
		else if (ch < 0x20)
			strbuf_printf(sb, "\\u%04x", ch);
		else
			strbuf_addn(sb, s, 1);
	}
	strbuf_add(sb, "\"");
}

/* c->derp_json from c->derp_regions (docs/coord-protocol.md, "derp_map"). */
static int build_derp_json(struct coord_conf *c, const char *name, char *err, size_t errlen)
{
	struct strbuf sb = {0};

	strbuf_add(&sb, "{\"regions\":[");
	for (unsigned i = 0; i < c->n_derp_regions; i++) {
		const struct coord_derp_region *r = &c->derp_regions[i];
		char addr[300], key[MG_KEY_B64_LEN + 1];

		strbuf_printf(&sb, "%s{\"id\":%u,\"server\":", i ? "," : "", r->id);
		json_str(&sb, mg_hostport_fmt(&r->server, r->host, addr, sizeof(addr)));
		if (r->pinned) {
			mg_key_to_base64(r->public_key, key);
			strbuf_add(&sb, ",\"public_key\":");
			json_str(&sb, key);
		}
		strbuf_printf(&sb, ",\"tls\":%s", r->tls ? "true" : "false");
		if (*r->server_name) {
			strbuf_add(&sb, ",\"server_name\":");
			json_str(&sb, r->server_name);
		}
		strbuf_add(&sb, "}");
	}
	strbuf_add(&sb, "]}");
	if (sb.oom || sb.len >= sizeof(c->derp_json)) {
		int ret = sb.oom ? -ENOMEM : -EINVAL;

		snprintf(err, errlen, "%s: derp_regions: %s", name,
			 sb.oom ? "out of memory" : "too long as JSON");
		strbuf_free(&sb);
		return ret;
	}
	memcpy(c->derp_json, sb.buf, sb.len + 1);
	strbuf_free(&sb);
	return 0;
}

/* Walk what the file has, so an unknown setting is reported. */
static int walk(const config_setting_t *g, const char *prefix, struct coord_conf *c,
		const char *name, char *err, size_t errlen)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		char path[128];
		const struct field *f;
		bool is_group = false;

		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "",
			 config_setting_name(s));
		for (size_t k = 0; !*prefix && k < ARRAY_SIZE(groups); k++)
			is_group |= !strcmp(path, groups[k]);
		if (is_group) {
			if (!config_setting_is_group(s)) {
				snprintf(err, errlen, "%s:%d: %s: want a group { ... }", name,
					 config_setting_source_line(s), path);
				return -EINVAL;
			}
			int ret = walk(s, path, c, name, err, errlen);
			if (ret < 0)
				return ret;
			continue;
		}
		f = find_field(path);
		if (!f) {
			snprintf(err, errlen, "%s:%d: unknown setting \"%s\"", name,
				 config_setting_source_line(s), path);
			return -EINVAL;
		}
		int ret = f->kind == K_GROUP_LIST ? set_list(f, s, c, name, err, errlen)
						  : set_field(f, s, c, f->path, name, err, errlen);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int check(struct coord_conf *c, const char *name, char *err, size_t errlen)
{
	if (!c->insecure_http && (!*c->tls_cert_file || !*c->tls_key_file)) {
		snprintf(err, errlen,
			 "%s: tls.cert_file and tls.key_file are required (or "
			 "testing.insecure_http = true)",
			 name);
		return -EINVAL;
	}
	if (c->ip_burst < 1 || c->key_burst < 1) {
		snprintf(err, errlen, "%s: limits: bursts must be >= 1", name);
		return -EINVAL;
	}
	return build_derp_json(c, name, err, errlen);
}

static int load(config_t *cf, int rc, const char *name, struct coord_conf *c, char *err,
		size_t errlen)
{
	int ret;

	if (rc != CONFIG_TRUE) {
		if (config_error_type(cf) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read the file", name);
		else
			snprintf(err, errlen, "%s:%d: %s", name, config_error_line(cf),
				 config_error_text(cf));
		return -EINVAL;
	}
	ret = walk(config_root_setting(cf), "", c, name, err, errlen);
	return ret < 0 ? ret : check(c, name, err, errlen);
}

int coord_conf_parse(const char *text, const char *name, struct coord_conf *c, char *err,
		     size_t errlen)
{
	config_t cf;
	int ret;

	defaults(c);
	config_init(&cf);
	ret = load(&cf, config_read_string(&cf, text), name, c, err, errlen);
	config_destroy(&cf);
	return ret;
}

int coord_conf_load(const char *path, struct coord_conf *c, char *err, size_t errlen)
{
	config_t cf;
	int ret;

	defaults(c);
	config_init(&cf);
	ret = load(&cf, config_read_file(&cf, path), path, c, err, errlen);
	config_destroy(&cf);
	return ret;
}

int coord_read_token(const char *path, char *tok, size_t toklen, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		snprintf(err, errlen, "%s: must be a regular file of mode 0600 (chmod 600 %s)",
			 path, path);
		close(fd);
		return -EPERM;
	}
	n = read(fd, tok, toklen - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -EIO;
	}
	while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == ' ' || tok[n - 1] == '\r' ||
			 tok[n - 1] == '\t'))
		n--;
	tok[n] = '\0';
	if (n < 32 || strchr(tok, '\n')) {
		snprintf(err, errlen, "%s: the token must be one line of at least 32 characters",
			 path);
		return -EINVAL;
	}
	return 0;
}
