/* SPDX-License-Identifier: MIT */
/*
 * The coordination server's config: libconfig does the syntax, a table of
 * known settings the schema (as common/config.c, smaller): an unknown
 * setting is an error, not silently ignored, and errors quote the setting.
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

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum kind { K_STR, K_UINT, K_DOUBLE, K_BOOL, K_LISTEN, K_LOGLEVEL };

struct field {
	const char *path; /* dotted, as libconfig_lookup takes it */
	enum kind kind;
	size_t off, size;
	double min, max;
};

#define F(p, k, m, lo, hi)                                                                         \
	{                                                                                          \
		p, k, offsetof(struct coord_conf, m), sizeof(((struct coord_conf *)0)->m), lo, hi  \
	}

static const struct field fields[] = {
    F("listen", K_LISTEN, listen, 0, 0),
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
};

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
}

static const struct field *find_field(const char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (!strcmp(fields[i].path, path))
			return &fields[i];
	return NULL;
}

static int set_field(const struct field *f, const config_setting_t *s, struct coord_conf *c,
		     const char *name, char *err, size_t errlen)
{
	char *dst = (char *)c + f->off;
	int line = config_setting_source_line(s);
	static const char *const levels[] = {"error", "warning", "notice", "info", "debug"};
	static const int level_v[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};
	const char *str = config_setting_get_string(s);
	double d;

	switch (f->kind) {
	case K_STR:
	case K_LISTEN:
	case K_LOGLEVEL:
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			goto bad_type;
		if (f->kind == K_LISTEN) {
			if (mg_sockaddr_parse(str, (struct mg_sockaddr *)dst) < 0) {
				snprintf(err, errlen, "%s:%d: %s \"%s\": want ADDRESS:PORT", name,
					 line, f->path, str);
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
				 name, line, f->path, str);
			return -EINVAL;
		} else {
			if (strlen(str) >= f->size || !*str) {
				snprintf(err, errlen, "%s:%d: %s: %s", name, line, f->path,
					 *str ? "too long" : "empty");
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
			snprintf(err, errlen, "%s:%d: %s %g: out of range %g..%g", name, line,
				 f->path, d, f->min, f->max);
			return -EINVAL;
		}
		if (f->kind == K_DOUBLE)
			*(double *)dst = d;
		else if (f->size == sizeof(unsigned))
			*(unsigned *)dst = (unsigned)d;
		else
			*(unsigned long long *)dst = (unsigned long long)d;
		return 0;
	}
bad_type:
	snprintf(err, errlen, "%s:%d: %s: wrong type (want %s)", name, line, f->path,
		 f->kind == K_BOOL     ? "true/false"
		 : f->kind == K_UINT   ? "an integer"
		 : f->kind == K_DOUBLE ? "a number"
				       : "a string");
	return -EINVAL;
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
		int ret = set_field(f, s, c, name, err, errlen);
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
	return 0;
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
