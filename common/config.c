// SPDX-License-Identifier: MIT
/*
 * The config file: libconfig does the syntax, this file the schema.
 *
 * Every group of settings is a table of fields, each naming the small parse
 * function for its kind of value (integer in a range, enum, path, address
 * list...), in the manner of wireguard-tools' config.c. parse_group() walks
 * the members a file actually has, so a setting no table knows is an error
 * rather than silently ignored, then checks required fields and runs the
 * group's semantic check. The first error is reported and ends the load.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "keys.h"
#include "wg_messages.h"

#define ARRAY_SIZE(a)	  (sizeof(a) / sizeof((a)[0]))
#define MEMBER_SIZE(t, m) sizeof(((t *)0)->m)
#define MAX_LCORE	  1023
#define MAX_EAL_ARGS	  64
#define MAX_ROUTES	  4096
#define IPV6_MIN_MTU	  1280

struct ctx {
	const char *name; /* file name for messages */
	unsigned flags;
	struct mg_config *cfg;
	char *err;
	size_t errlen;
};

struct field;
typedef int (*parse_fn)(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f);

struct field {
	const char *name;
	parse_fn parse;
	size_t off;	    /* destination, from the group's base */
	size_t off_n;	    /* element count (an int), for lists */
	size_t size;	    /* integer width, string buffer size or array capacity */
	long long min, max; /* integer range; address family for p_addr */
	const void *arg;    /* choices, nested group or list, message */
	bool required;
};

struct group_desc {
	const struct field *fields;
	int (*check)(struct ctx *c, const config_setting_t *g, void *base);
};

struct list_desc {
	const struct group_desc *group;
	size_t elem_size;
	void (*init)(void *elem);
};

struct choice {
	const char *name;
	int value;
};

/* ---- error reporting ---- */

/* "dataplane.ports.[1].role": libconfig's own path syntax. */
static void setting_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *chain[16];
	int depth = 0;
	size_t n = 0;

	for (; s && !config_setting_is_root(s) && depth < 16; s = config_setting_parent(s))
		chain[depth++] = s;
	buf[0] = '\0';
	while (depth-- > 0 && n < len) {
		const char *name = config_setting_name(chain[depth]);
		const char *dot = n ? "." : "";
		int w = name ? snprintf(buf + n, len - n, "%s%s", dot, name)
			     : snprintf(buf + n, len - n, "%s[%d]", dot,
					config_setting_index(chain[depth]));

		if (w < 0)
			break;
		n += (size_t)w;
	}
}

/* One line: "<file>:<line>: <path>[.<member>]: <message>". */
static int vreport(struct ctx *c, const config_setting_t *s, const char *member, const char *fmt,
		   va_list ap)
{
	const char *file = config_setting_source_file(s);
	unsigned line = config_setting_source_line(s);
	char path[256], msg[512];
	size_t n;

	setting_path(s, path, sizeof(path));
	n = strlen(path);
	if (member)
		snprintf(path + n, sizeof(path) - n, "%s%s", n ? "." : "", member);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!file)
		file = c->name;
	if (line)
		snprintf(c->err, c->errlen, "%s:%u: %s: %s", file, line, path, msg);
	else
		snprintf(c->err, c->errlen, "%s: %s: %s", file, path, msg);
	/* One line, whatever bytes a path or name held. */
	for (char *p = c->err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

__attribute__((format(printf, 3, 4))) static int report(struct ctx *c, const config_setting_t *s,
							const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = vreport(c, s, NULL, fmt, ap);
	va_end(ap);
	return ret;
}

/* About member `name` of group g: at the member if present, else at g. */
__attribute__((format(printf, 4, 5))) static int
report_member(struct ctx *c, const config_setting_t *g, const char *name, const char *fmt, ...)
{
	const config_setting_t *m = config_setting_get_member(g, name);
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = m ? vreport(c, m, NULL, fmt, ap) : vreport(c, g, name, fmt, ap);
	va_end(ap);
	return ret;
}

static int report_nomem(struct ctx *c, const config_setting_t *s)
{
	report(c, s, "out of memory");
	return -ENOMEM;
}

/* A user string made safe to print: quoted, escaped, shortened. */
static const char *quote(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	buf[n++] = '"';
	for (; *s && n + 8 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			buf[n++] = (char)ch;
		else
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", ch);
	}
	if (*s)
		n += (size_t)snprintf(buf + n, len - n, "...");
	snprintf(buf + n, len - n, "\"");
	return buf;
}

#define Q(s) quote((s), (char[80]){0}, 80)

static const char *type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "nothing";
}

/* ---- scalar helpers ---- */

static int get_string(struct ctx *c, const config_setting_t *s, const char **out)
{
	*out = "";
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return report(c, s, "expected a string, got %s", type_name(s));
	*out = config_setting_get_string(s);
	return 0;
}

static int get_int(struct ctx *c, const config_setting_t *s, long long min, long long max,
		   long long *out)
{
	long long v;

	*out = 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return report(c, s, "expected an integer, got %s", type_name(s));
	v = config_setting_get_int64(s);
	if (v < min || v > max)
		return report(c, s, "expected an integer in %lld..%lld, got %lld", min, max, v);
	*out = v;
	return 0;
}

/* Arrays [..] and lists (..) of scalars are both accepted. */
static int get_list(struct ctx *c, const config_setting_t *s, int max, const char *what)
{
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST)
		return report(c, s, "expected an array of %s, got %s", what, type_name(s));
	n = config_setting_length(s);
	if (n > max)
		return report(c, s, "too many entries (%d, at most %d)", n, max);
	return n;
}

static int *count_of(void *dst, const struct field *f)
{
	return (int *)((char *)dst - f->off + f->off_n);
}

/* ---- one parse function per kind of setting ---- */

static int p_int(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	long long v;
	int ret = get_int(c, s, f->min, f->max, &v);

	if (ret)
		return ret;
	if (f->size == sizeof(uint16_t))
		*(uint16_t *)dst = (uint16_t)v;
	else if (f->size == sizeof(uint32_t))
		*(uint32_t *)dst = (uint32_t)v; /* also the int fields: v >= 0 */
	else
		*(uint64_t *)dst = (uint64_t)v;
	return 0;
}

static int p_bool(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	(void)f;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return report(c, s, "expected true or false, got %s", type_name(s));
	*(bool *)dst = config_setting_get_bool(s);
	return 0;
}

static int p_string(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const char *v;
	int ret = get_string(c, s, &v);

	if (ret)
		return ret;
	if (!v[0])
		return report(c, s, "must not be empty");
	if (strlen(v) >= f->size)
		return report(c, s, "too long (at most %zu characters)", f->size - 1);
	strcpy(dst, v);
	return 0;
}

/* Interface-like names: also end up in file names, so a tight charset. */
static int p_name(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const char *v = dst;
	int ret = p_string(c, s, dst, f);

	if (ret)
		return ret;
	if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		strlen(v) ||
	    !strcmp(v, ".") || !strcmp(v, ".."))
		return report(c, s, "%s: only letters, digits, '_', '.' and '-' are allowed",
			      Q(config_setting_get_string(s)));
	return 0;
}

static int p_path(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	int ret = p_string(c, s, dst, f);

	if (ret)
		return ret;
	if (((char *)dst)[0] != '/')
		return report(c, s, "%s: must be an absolute path", Q(dst));
	return 0;
}

static int p_enum(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const struct choice *ch = f->arg;
	char expected[128] = "";
	const char *v;
	size_t n = 0;
	int ret = get_string(c, s, &v);

	for (int i = 0; !ret && ch[i].name; i++) {
		if (!strcmp(v, ch[i].name)) {
			*(int *)dst = ch[i].value;
			return 0;
		}
	}
	for (int i = 0; !ret && ch[i].name && n < sizeof(expected); i++) {
		const char *sep = !i ? "" : ch[i + 1].name ? ", " : " or ";

		n += (size_t)snprintf(expected + n, sizeof(expected) - n, "%s\"%s\"", sep,
				      ch[i].name);
	}
	return ret ? ret : report(c, s, "expected %s, got %s", expected, Q(v));
}

static int p_key(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const char *v;
	int ret = get_string(c, s, &v);

	(void)f;
	if (ret)
		return ret;
	/* Never quote the value: it might be a private key pasted by mistake. */
	if (mg_key_from_base64(v, dst) < 0)
		return report(c, s, "not a base64 key (44 characters, as printed by wg pubkey)");
	return 0;
}

static int load_key(struct ctx *c, const config_setting_t *s, const char *path, uint8_t key[32])
{
	char why[512];

	if (mg_key_load_file(path, key, why, sizeof(why)) < 0)
		return report(c, s, "%s", why);
	if (mg_key_is_zero(key))
		return report(c, s, "%s: the key is all zeros", path);
	return 0;
}

static int p_private_key_file(struct ctx *c, const config_setting_t *s, void *dst,
			      const struct field *f)
{
	struct mg_config *cfg = c->cfg;
	int ret = p_path(c, s, dst, f);

	if (ret || !(c->flags & MG_CONFIG_LOAD_KEYS))
		return ret;
	ret = load_key(c, s, dst, cfg->private_key);
	cfg->has_private_key = ret == 0;
	return ret;
}

/* dst is the peer: the path itself is not kept. */
static int p_psk_file(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	struct mg_peer_conf *peer = dst;
	char path[4096];
	struct field pf = {.size = sizeof(path)};
	int ret = p_path(c, s, path, &pf);

	(void)f;
	if (ret || !(c->flags & MG_CONFIG_LOAD_KEYS))
		return ret;
	ret = load_key(c, s, path, peer->psk);
	peer->has_psk = ret == 0;
	return ret;
}

/*
 * coordination.auth_key_file: a pre-auth key, mode 0600 or 0400 like the
 * key files. Optional once registered, so a missing file is not an error
 * (the control process says so if it needs one). Never quoted.
 */
static int read_auth_key(const char *path, char *out, size_t len, char *why, size_t whylen)
{
	struct stat st;
	char buf[512];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(why, whylen, "%s: not a regular file", path);
		return -EINVAL;
	}
	if ((st.st_mode & 07777) != 0600 && (st.st_mode & 07777) != 0400) {
		close(fd);
		snprintf(why, whylen, "%s: mode %04o, must be 0600 or 0400", path,
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -EIO;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] <= 0x20 || buf[i] == 0x7f)
			n = -1;
	if (n <= 0 || (size_t)n >= len) {
		sodium_memzero(buf, sizeof(buf));
		snprintf(why, whylen, "%s: expected one pre-auth key (1..%zu printable characters)",
			 path, len - 1);
		return -EINVAL;
	}
	memcpy(out, buf, (size_t)n + 1);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

static int p_auth_key_file(struct ctx *c, const config_setting_t *s, void *dst,
			   const struct field *f)
{
	struct mg_coord_conf *k = &c->cfg->coord;
	char why[512];
	int ret = p_path(c, s, dst, f);

	if (ret || !(c->flags & MG_CONFIG_LOAD_KEYS))
		return ret;
	ret = read_auth_key(dst, k->auth_key, sizeof(k->auth_key), why, sizeof(why));
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return report(c, s, "%s", why);
	k->has_auth_key = true;
	return 0;
}

static int p_sockaddr(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const char *v;
	int ret = get_string(c, s, &v);

	(void)f;
	if (ret)
		return ret;
	if (mg_sockaddr_parse(v, dst) < 0)
		return report(c, s,
			      "expected \"ipv4:port\" or \"[ipv6]:port\" (port 1..65535), got %s",
			      Q(v));
	return 0;
}

/* A list of "ipv4:port" / "[ipv6]:port", no duplicates. */
/* A listening address; "" leaves it unset (family 0: off). */
static int p_listen(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const char *v = config_setting_get_string(s);

	return v && !*v ? 0 : p_sockaddr(c, s, dst, f);
}

/* f->min: the required address family, or 0 for either. */
static int p_addr(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	struct mg_sockaddr *sa = dst;
	const char *what = f->min == AF_INET ? "an IPv4" : f->min == AF_INET6 ? "an IPv6" : "an";
	const char *v;
	int ret = get_string(c, s, &v);

	if (ret)
		return ret;
	if (mg_addr_parse(v, sa) < 0 || (f->min && sa->family != f->min)) {
		memset(sa, 0, sizeof(*sa));
		return report(c, s, "expected %s address, got %s", what, Q(v));
	}
	return 0;
}

static int parse_prefix(struct ctx *c, const config_setting_t *s, struct mg_prefix *p)
{
	const char *v;
	int ret = get_string(c, s, &v);

	if (ret)
		return ret;
	if (mg_prefix_parse(v, p) < 0)
		return report(c, s, "expected an address with an optional /prefix-length, got %s",
			      Q(v));
	return 0;
}

static int p_prefix(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	(void)f;
	return parse_prefix(c, s, dst);
}

/* allowed_ips: a list of prefixes, host bits masked off like wg does. */
static int p_prefixes(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	struct mg_prefix **out = dst;
	int n = get_list(c, s, (int)f->size, "strings");

	if (n <= 0)
		return n;
	*out = calloc((size_t)n, sizeof(**out));
	if (!*out)
		return report_nomem(c, s);
	for (int i = 0; i < n; i++) {
		int ret = parse_prefix(c, config_setting_get_elem(s, (unsigned)i), &(*out)[i]);

		if (ret)
			return ret;
		*count_of(dst, f) = i + 1;
	}
	return 0;
}

/* Interface addresses: "addr/len", host bits kept, no duplicates. */
static int p_ifaddrs(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	struct mg_prefix *out = dst;
	int n = get_list(c, s, (int)f->size, "strings");

	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		int ret = get_string(c, e, &v);

		if (ret)
			return ret;
		if (mg_ifaddr_parse(v, &out[i]) < 0)
			return report(c, e, "expected address/prefix-length, got %s", Q(v));
		for (int j = 0; j < i; j++)
			if (!memcmp(&out[j], &out[i], sizeof(out[i])))
				return report(c, e, "duplicate address %s", Q(v));
		*count_of(dst, f) = i + 1;
	}
	return n < 0 ? n : 0;
}

static int p_lcores(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	int *out = dst;
	int n = get_list(c, s, (int)f->size, "lcore ids");

	if (n == 0)
		return report(c, s, "at least one worker lcore is required");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		long long v;
		int ret = get_int(c, e, 0, MAX_LCORE, &v);

		if (ret)
			return ret;
		for (int j = 0; j < i; j++)
			if (out[j] == v)
				return report(c, e, "lcore %lld is listed twice", v);
		out[i] = (int)v;
	}
	*count_of(dst, f) = n < 0 ? 0 : n;
	return n < 0 ? n : 0;
}

/* Lcores come from main_lcore/workers; EAL options that set them would disagree. */
static const char *eal_lcore_option(const char *arg)
{
	static const char *const opts[] = {"--lcores", "--main-lcore", "--master-lcore"};

	if (!strncmp(arg, "-l", 2) || !strncmp(arg, "-c", 2))
		return arg;
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		size_t n = strlen(opts[i]);

		if (!strncmp(arg, opts[i], n) && (arg[n] == '\0' || arg[n] == '='))
			return opts[i];
	}
	return NULL;
}

static int p_eal_args(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	char ***out = dst;
	int n = get_list(c, s, MAX_EAL_ARGS, "strings");

	if (n <= 0)
		return n;
	*out = calloc((size_t)n + 1, sizeof(char *)); /* NULL-terminated, argv style */
	if (!*out)
		return report_nomem(c, s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		int ret = get_string(c, e, &v);

		if (ret)
			return ret;
		if (eal_lcore_option(v))
			return report(c, e,
				      "%s sets lcores; use dataplane.main_lcore and "
				      "dataplane.workers instead",
				      Q(v));
		(*out)[i] = strdup(v);
		if (!(*out)[i])
			return report_nomem(c, e);
		*count_of(dst, f) = i + 1;
	}
	return 0;
}

/* For settings that look configurable but are not. */
static int p_refuse(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	(void)dst;
	return report(c, s, "%s", (const char *)f->arg);
}

static int parse_group(struct ctx *c, const config_setting_t *g, const struct group_desc *d,
		       void *base);

static int p_group(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	return parse_group(c, s, f->arg, dst);
}

static int parse_elems(struct ctx *c, const config_setting_t *s, char *elems,
		       const struct list_desc *l, int *count)
{
	for (int i = 0; i < config_setting_length(s); i++) {
		char *elem = elems + (size_t)i * l->elem_size;
		int ret;

		if (l->init)
			l->init(elem);
		*count = i + 1; /* so mg_config_free() sees what this element allocates */
		ret = parse_group(c, config_setting_get_elem(s, (unsigned)i), l->group, elem);
		if (ret)
			return ret;
	}
	return 0;
}

static int check_group_list(struct ctx *c, const config_setting_t *s, int max)
{
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return report(c, s, "expected a list ( { ... }, ... ), got %s", type_name(s));
	n = config_setting_length(s);
	if (n > max)
		return report(c, s, "too many entries (%d, at most %d)", n, max);
	return n;
}

/* A list of groups into a fixed array of f->size elements. */
static int p_group_array(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	int n = check_group_list(c, s, (int)f->size);

	return n < 0 ? n : parse_elems(c, s, dst, f->arg, count_of(dst, f));
}

/* A list of groups into a calloc'd array of at most f->size elements. */
static int p_group_alloc(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const struct list_desc *l = f->arg;
	void **out = dst;
	int n = check_group_list(c, s, (int)f->size);

	if (n <= 0)
		return n;
	*out = calloc((size_t)n, l->elem_size);
	if (!*out)
		return report_nomem(c, s);
	return parse_elems(c, s, *out, l, count_of(dst, f));
}

/* ---- the walk ---- */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

static int report_unknown(struct ctx *c, const config_setting_t *s, const struct field *fields)
{
	const char *name = config_setting_name(s), *best = NULL;
	size_t best_d = 3; /* suggest only close typos */

	for (const struct field *f = fields; f->name; f++) {
		size_t d = edit_distance(name, f->name);

		if (d < best_d) {
			best_d = d;
			best = f->name;
		}
	}
	if (best)
		return report(c, s, "unknown setting (did you mean \"%s\"?)", best);
	return report(c, s, "unknown setting");
}

static const struct field *find_field(const struct field *fields, const char *name)
{
	for (const struct field *f = fields; f->name; f++)
		if (!strcmp(f->name, name))
			return f;
	return NULL;
}

static int parse_group(struct ctx *c, const config_setting_t *g, const struct group_desc *d,
		       void *base)
{
	uint64_t seen = 0;

	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return report(c, g, "expected a group { ... }, got %s", type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const struct field *f = find_field(d->fields, config_setting_name(s));
		int ret;

		if (!f)
			return report_unknown(c, s, d->fields);
		seen |= 1ull << (f - d->fields);
		ret = f->parse(c, s, (char *)base + f->off, f);
		if (ret)
			return ret;
	}
	for (const struct field *f = d->fields; f->name; f++)
		if (f->required && !(seen & (1ull << (f - d->fields))))
			return report_member(c, g, f->name, "required setting missing");
	return d->check ? d->check(c, g, base) : 0;
}

/* ---- semantic checks ---- */

static bool is_link_local6(const struct mg_sockaddr *sa)
{
	return sa->family == AF_INET6 && sa->addr[0] == 0xfe && (sa->addr[1] & 0xc0) == 0x80;
}

static bool on_link(const struct mg_port_conf *p, const struct mg_sockaddr *sa)
{
	for (int i = 0; i < p->n_addrs; i++)
		if (mg_prefix_contains(&p->addrs[i], sa->addr, sa->family))
			return true;
	return false;
}

static bool has_family(const struct mg_prefix *p, int n, int family)
{
	for (int i = 0; i < n; i++)
		if (p[i].family == family)
			return true;
	return false;
}

static int check_next_hop(struct ctx *c, const config_setting_t *s, const struct mg_port_conf *p,
			  const struct mg_sockaddr *sa)
{
	char buf[MG_ADDR_STRLEN];

	if (!sa->family || on_link(p, sa) || is_link_local6(sa))
		return 0;
	return report(c, s, "%s is not inside any address of port %s",
		      mg_addr_fmt(sa, buf, sizeof(buf)), p->name);
}

static int check_routes(struct ctx *c, const config_setting_t *g, const struct mg_port_conf *p)
{
	const config_setting_t *list = config_setting_get_member(g, "routes");

	for (int i = 0; i < p->n_routes; i++) {
		const config_setting_t *r = config_setting_get_elem(list, (unsigned)i);
		const struct mg_route_conf *rt = &p->routes[i];

		if (rt->via.family != rt->prefix.family)
			return report_member(c, r, "via",
					     "must be of the same address family as prefix");
		if (check_next_hop(c, config_setting_get_member(r, "via"), p, &rt->via))
			return -EINVAL;
	}
	return 0;
}

static int check_port(struct ctx *c, const config_setting_t *g, void *base)
{
	const struct mg_port_conf *p = base;

	if (p->role == MG_PORT_WAN && p->n_addrs == 0)
		return report_member(c, g, "addresses", "a wan port needs at least one address");
	if (p->mtu < IPV6_MIN_MTU && has_family(p->addrs, p->n_addrs, AF_INET6))
		return report_member(c, g, "mtu", "%u is below %d, the minimum for IPv6 addresses",
				     p->mtu, IPV6_MIN_MTU);
	if (check_next_hop(c, config_setting_get_member(g, "gateway"), p, &p->gateway4) ||
	    check_next_hop(c, config_setting_get_member(g, "gateway6"), p, &p->gateway6))
		return -EINVAL;
	return check_routes(c, g, p);
}

/* Role counts and name/device uniqueness across dataplane.ports. */
static int check_ports(struct ctx *c, const config_setting_t *g, const struct mg_config *cfg)
{
	const config_setting_t *list = config_setting_get_member(g, "ports");
	int first[2] = {-1, -1};

	if (cfg->n_ports == 0)
		return report_member(c, g, "ports", "at least one port is required");
	for (int i = 0; i < cfg->n_ports; i++) {
		const struct mg_port_conf *p = &cfg->ports[i];
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		const char *role = p->role == MG_PORT_WAN ? "wan" : "lan";

		if (first[p->role] >= 0)
			return report_member(c, e, "role",
					     "a second \"%s\" port (dataplane.ports.[%d] is one); "
					     "only one is supported",
					     role, first[p->role]);
		first[p->role] = i;
		for (int j = 0; j < i; j++) {
			if (!strcmp(cfg->ports[j].name, p->name))
				return report_member(c, e, "name", "duplicate port name %s",
						     Q(p->name));
			if (!strcmp(cfg->ports[j].device, p->device))
				return report_member(c, e, "device",
						     "same device as dataplane.ports.[%d]", j);
		}
	}
	if (first[MG_PORT_WAN] < 0)
		return report_member(c, g, "ports", "no port has role = \"wan\"; exactly one must");
	return 0;
}

static int check_snat(struct ctx *c, const config_setting_t *g, void *base)
{
	const struct mg_snat_conf *s = base;

	if (s->port_min > s->port_max)
		return report_member(c, g, "port_min", "%u is greater than port_max (%u)",
				     s->port_min, s->port_max);
	return 0;
}

/* Each worker owns a slice of the NAT ports and of max_entries. */
static int check_snat_workers(struct ctx *c, const config_setting_t *g,
			      const struct mg_config *cfg)
{
	const struct mg_snat_conf *s = &cfg->snat;
	const config_setting_t *sg = config_setting_get_member(g, "snat");
	unsigned ports = (unsigned)s->port_max - s->port_min + 1;

	if (!sg || !s->enabled)
		return 0;
	if (ports < (unsigned)cfg->n_workers)
		return report_member(c, sg, "port_max",
				     "%u NAT ports for %d workers; each worker needs at least one",
				     ports, cfg->n_workers);
	if (s->max_entries < (uint32_t)cfg->n_workers)
		return report_member(c, sg, "max_entries",
				     "%u entries for %d workers; each worker needs at least one",
				     s->max_entries, cfg->n_workers);
	return 0;
}

static int check_dataplane(struct ctx *c, const config_setting_t *g, void *base)
{
	const struct mg_config *cfg = base;

	for (int i = 0; i < cfg->n_workers; i++) {
		if (cfg->workers[i] != cfg->main_lcore)
			continue;
		if (!config_setting_get_member(g, "workers"))
			return report_member(c, g, "main_lcore",
					     "lcore %d is the default worker lcore; set "
					     "dataplane.workers too",
					     cfg->main_lcore);
		return report_member(c, g, "workers",
				     "lcore %d is also dataplane.main_lcore; workers need lcores "
				     "of their own",
				     cfg->main_lcore);
	}
	if (cfg->cryptodev[0] && cfg->crypto != MG_CRYPTO_CRYPTODEV)
		return report_member(c, g, "cryptodev", "only used with crypto = \"cryptodev\"");
	if (check_snat_workers(c, g, cfg))
		return -EINVAL;
	return check_ports(c, g, cfg);
}

static int check_meshgate(struct ctx *c, const config_setting_t *g, void *base)
{
	const struct mg_config *cfg = base;
	size_t sock_len = strlen(cfg->run_dir) + 1 + strlen(cfg->name) + strlen(".sock");

	if (sock_len >= MEMBER_SIZE(struct sockaddr_un, sun_path))
		return report_member(c, g, "run_dir",
				     "%zu characters, plus \"/%s.sock\", is longer than the %zu a "
				     "unix socket path allows",
				     strlen(cfg->run_dir), cfg->name,
				     MEMBER_SIZE(struct sockaddr_un, sun_path) - 1);
	return 0;
}

const char *mg_config_coord_url_check(const char *url, bool insecure_http)
{
	const char *host;

	if (!strncmp(url, "https://", 8))
		host = url + 8;
	else if (!strncmp(url, "http://", 7) && insecure_http)
		host = url + 7;
	else if (!strncmp(url, "http://", 7))
		return "plain http:// only with testing.coord_insecure_http = true";
	else
		return "expected an https:// URL";
	if (!*host || *host == '/')
		return "no host in the URL";
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
			return "spaces, quotes or control characters in the URL";
	return NULL;
}

static int check_coord(struct ctx *c, const config_setting_t *g, void *base)
{
	struct mg_coord_conf *k = base;

	(void)c;
	(void)g;
	k->enabled = true;
	return 0;
}

static int check_testing(struct ctx *c, const config_setting_t *g, void *base)
{
	static const char *const timers[] = {"rekey_after_time", "reject_after_time",
					     "keepalive_timeout", "rekey_timeout"};
	struct mg_timers_conf *t = &((struct mg_config *)base)->timers;

	for (size_t i = 0; i < ARRAY_SIZE(timers); i++)
		if (config_setting_get_member(g, timers[i]))
			t->overridden = true;
	if (t->reject_after_time <= t->rekey_after_time)
		return report_member(c, g, "reject_after_time",
				     "must be greater than rekey_after_time (%u)",
				     t->rekey_after_time);
	return 0;
}

static const config_setting_t *peer_member(const config_setting_t *root, int i, const char *name)
{
	const config_setting_t *peers = config_setting_get_member(root, "peers");
	const config_setting_t *e = config_setting_get_elem(peers, (unsigned)i);

	return config_setting_get_member(e, name);
}

static int cmp_peer_key(const void *a, const void *b, void *arg)
{
	const struct mg_peer_conf *peers = arg;
	int ia = *(const int *)a, ib = *(const int *)b;
	int r = memcmp(peers[ia].public_key, peers[ib].public_key, 32);

	return r ? r : (ia > ib) - (ia < ib);
}

/* Duplicate public keys, found by sorting: max_peers can be a million. */
static int check_peer_keys(struct ctx *c, const config_setting_t *root, const struct mg_config *cfg)
{
	int *idx = malloc((size_t)cfg->n_peers * sizeof(int) + 1);
	int ret = 0;

	if (!idx)
		return report_nomem(c, root);
	for (int i = 0; i < cfg->n_peers; i++)
		idx[i] = i;
	qsort_r(idx, (size_t)cfg->n_peers, sizeof(int), cmp_peer_key, cfg->peers);
	for (int i = 1; i < cfg->n_peers && !ret; i++)
		if (!memcmp(cfg->peers[idx[i - 1]].public_key, cfg->peers[idx[i]].public_key, 32))
			ret = report(c, peer_member(root, idx[i], "public_key"),
				     "same key as peers.[%d]", idx[i - 1]);
	free(idx);
	return ret;
}

static int check_own_key(struct ctx *c, const config_setting_t *root, const struct mg_config *cfg)
{
	uint8_t pub[32];
	int ret = 0;

	if (!cfg->has_private_key)
		return 0;
	crypto_scalarmult_curve25519_base(pub, cfg->private_key);
	for (int i = 0; i < cfg->n_peers && !ret; i++)
		if (!sodium_memcmp(pub, cfg->peers[i].public_key, 32))
			ret = report(c, peer_member(root, i, "public_key"),
				     "is this gateway's own public key");
	sodium_memzero(pub, sizeof(pub));
	return ret;
}

/* The tunnel carries IPv6 only if its MTU allows IPv6's minimum. */
static int check_tunnel_mtu(struct ctx *c, const config_setting_t *root,
			    const struct mg_config *cfg)
{
	const config_setting_t *mg = config_setting_get_member(root, "meshgate");

	if (cfg->mtu >= IPV6_MIN_MTU)
		return 0;
	for (int i = 0; i < cfg->n_peers; i++)
		if (has_family(cfg->peers[i].allowed_ips, cfg->peers[i].n_allowed_ips, AF_INET6))
			return report_member(c, mg, "mtu",
					     "%u is below %d, the minimum for IPv6, but "
					     "peers.[%d].allowed_ips has IPv6 prefixes",
					     cfg->mtu, IPV6_MIN_MTU, i);
	return 0;
}

/* Turning off replay protection takes two settings, one of them in testing. */
static int check_benchmark_peers(struct ctx *c, const config_setting_t *root,
				 const struct mg_config *cfg)
{
	if (cfg->allow_benchmark_no_replay)
		return 0;
	for (int i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].benchmark_no_replay)
			return report(c, peer_member(root, i, "benchmark_no_replay"),
				      "disables replay protection: only for benchmarks, and only "
				      "with testing.allow_benchmark_no_replay = true");
	return 0;
}

static int check_root(struct ctx *c, const config_setting_t *g, void *base)
{
	const struct mg_config *cfg = base;
	int ret;

	if ((c->flags & MG_CONFIG_LOAD_KEYS) && !cfg->private_key_file[0] && !cfg->coord.enabled)
		return report_member(c, config_setting_get_member(g, "meshgate"),
				     "private_key_file", "required setting missing");
	if (cfg->coord.enabled && cfg->private_key_file[0])
		return report_member(c, config_setting_get_member(g, "meshgate"),
				     "private_key_file",
				     "not with coordination: the node key is made and kept in "
				     "coordination.state_dir");
	if (cfg->coord.server[0]) {
		const config_setting_t *k = config_setting_get_member(g, "coordination");
		const char *why =
		    mg_config_coord_url_check(cfg->coord.server, cfg->coord_insecure_http);

		if (why)
			return report_member(c, k, "server", "%s: %s", Q(cfg->coord.server), why);
	}
	if (cfg->n_peers > 0 && (uint32_t)cfg->n_peers > cfg->max_peers)
		return report_member(c, g, "peers", "%d peers, more than meshgate.max_peers (%u)",
				     cfg->n_peers, cfg->max_peers);
	ret = check_tunnel_mtu(c, g, cfg);
	if (!ret)
		ret = check_benchmark_peers(c, g, cfg);
	if (!ret)
		ret = check_peer_keys(c, g, cfg);
	if (!ret)
		ret = check_own_key(c, g, cfg);
	return ret;
}

/* ---- the schema ---- */

/*
 * Field constructors; extra designated initializers (REQUIRED, .arg = ...)
 * may follow the fixed arguments.
 */
/* clang-format off */
#define FIELD(n, fn, t, m, ...)		{ .name = n, .parse = fn, .off = offsetof(t, m), __VA_ARGS__ }
#define STR(n, fn, t, m, ...)		FIELD(n, fn, t, m, .size = MEMBER_SIZE(t, m), __VA_ARGS__)
#define INT(n, t, m, lo, hi)		FIELD(n, p_int, t, m, .size = MEMBER_SIZE(t, m), .min = lo, .max = hi)
#define ENUM(n, t, m, choices, ...)	FIELD(n, p_enum, t, m, .arg = choices, __VA_ARGS__)
#define ADDR(n, t, m, family)		FIELD(n, p_addr, t, m, .min = family)
#define BOOL(n, t, m)			FIELD(n, p_bool, t, m)
#define LIST(n, fn, t, m, count, cap, ...) \
	FIELD(n, fn, t, m, .off_n = offsetof(t, count), .size = cap, __VA_ARGS__)
#define GROUP(n, desc, ...)		{ .name = n, .parse = p_group, .arg = desc, __VA_ARGS__ }
#define REFUSE(n, why)			{ .name = n, .parse = p_refuse, .arg = why }
#define REQUIRED			.required = true
#define END				{ .name = NULL }
/* clang-format on */

static const struct choice log_levels[] = {
    {"error", LOG_ERR}, {"warn", LOG_WARNING}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}, {NULL, 0},
};
static const struct choice crypto_backends[] = {
    {"ipsec-mb", MG_CRYPTO_IPSEC_MB},
    {"cryptodev", MG_CRYPTO_CRYPTODEV},
    {NULL, 0},
};
static const struct choice port_roles[] = {
    {"wan", MG_PORT_WAN},
    {"lan", MG_PORT_LAN},
    {NULL, 0},
};

static const struct field meshgate_fields[] = {
    STR("name", p_name, struct mg_config, name, REQUIRED),
    STR("private_key_file", p_private_key_file, struct mg_config, private_key_file),
    INT("listen_port", struct mg_config, listen_port, 1, 65535),
    INT("mtu", struct mg_config, mtu, 576, 9000),
    INT("max_peers", struct mg_config, max_peers, 1, 1048576),
    STR("run_dir", p_path, struct mg_config, run_dir),
    ENUM("log_level", struct mg_config, log_level, log_levels),
    END,
};

static const struct field route_fields[] = {
    FIELD("prefix", p_prefix, struct mg_route_conf, prefix, REQUIRED),
    FIELD("via", p_addr, struct mg_route_conf, via, REQUIRED),
    END,
};
static const struct group_desc route_group = {route_fields, NULL};
static const struct list_desc route_list = {&route_group, sizeof(struct mg_route_conf), NULL};

static const char derived_queues[] = "not configurable: queues are derived from dataplane.workers";

static const struct field port_fields[] = {
    STR("name", p_name, struct mg_port_conf, name, REQUIRED),
    STR("device", p_string, struct mg_port_conf, device, REQUIRED),
    ENUM("role", struct mg_port_conf, role, port_roles, REQUIRED),
    LIST("addresses", p_ifaddrs, struct mg_port_conf, addrs, n_addrs,
	 ARRAY_SIZE(((struct mg_port_conf *)0)->addrs)),
    ADDR("gateway", struct mg_port_conf, gateway4, AF_INET),
    ADDR("gateway6", struct mg_port_conf, gateway6, AF_INET6),
    INT("mtu", struct mg_port_conf, mtu, 576, 9000),
    LIST("routes", p_group_alloc, struct mg_port_conf, routes, n_routes, MAX_ROUTES,
	 .arg = &route_list),
    REFUSE("rx_queues", derived_queues),
    REFUSE("tx_queues", derived_queues),
    END,
};

static void port_init(void *elem)
{
	struct mg_port_conf *p = elem;

	p->mtu = 1500;
}

static const struct group_desc port_group = {port_fields, check_port};
static const struct list_desc port_list = {&port_group, sizeof(struct mg_port_conf), port_init};

static const struct field snat_fields[] = {
    BOOL("enabled", struct mg_snat_conf, enabled),
    INT("port_min", struct mg_snat_conf, port_min, 1024, 65535),
    INT("port_max", struct mg_snat_conf, port_max, 1024, 65535),
    INT("max_entries", struct mg_snat_conf, max_entries, 1, 4194304),
    INT("tcp_established_timeout", struct mg_snat_conf, tcp_established_timeout, 1, 604800),
    INT("tcp_transitory_timeout", struct mg_snat_conf, tcp_transitory_timeout, 1, 86400),
    INT("udp_timeout", struct mg_snat_conf, udp_timeout, 1, 86400),
    INT("icmp_timeout", struct mg_snat_conf, icmp_timeout, 1, 86400),
    END,
};
static const struct group_desc snat_group = {snat_fields, check_snat};

static const struct field dataplane_fields[] = {
    LIST("eal_args", p_eal_args, struct mg_config, eal_args, n_eal_args, MAX_EAL_ARGS),
    INT("main_lcore", struct mg_config, main_lcore, 0, MAX_LCORE),
    LIST("workers", p_lcores, struct mg_config, workers, n_workers,
	 ARRAY_SIZE(((struct mg_config *)0)->workers)),
    INT("mbufs", struct mg_config, mbufs, 1024, 4194304),
    INT("burst", struct mg_config, burst, 1, 128),
    INT("idle_sleep_us", struct mg_config, idle_sleep_us, 0, 1000),
    ENUM("crypto", struct mg_config, crypto, crypto_backends),
    STR("cryptodev", p_string, struct mg_config, cryptodev),
    BOOL("mss_clamp", struct mg_config, mss_clamp),
    LIST("ports", p_group_array, struct mg_config, ports, n_ports, MG_MAX_PORTS, .arg = &port_list,
	 REQUIRED),
    GROUP("snat", &snat_group, .off = offsetof(struct mg_config, snat)),
    END,
};

static const struct field peer_fields[] = {
    FIELD("public_key", p_key, struct mg_peer_conf, public_key, REQUIRED),
    {.name = "preshared_key_file", .parse = p_psk_file}, /* gets the whole peer */
    FIELD("endpoint", p_sockaddr, struct mg_peer_conf, endpoint),
    LIST("allowed_ips", p_prefixes, struct mg_peer_conf, allowed_ips, n_allowed_ips, 1 << 20),
    INT("persistent_keepalive", struct mg_peer_conf, persistent_keepalive, 0, 65535),
    STR("name", p_string, struct mg_peer_conf, name),
    BOOL("benchmark_no_replay", struct mg_peer_conf, benchmark_no_replay),
    END,
};
static const struct group_desc peer_group = {peer_fields, NULL};
static const struct list_desc peer_list = {&peer_group, sizeof(struct mg_peer_conf), NULL};

/* A DNS name for TLS (mg_dns_name_valid). */
static int p_dns_name(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	const char *v = dst;
	int ret = p_string(c, s, dst, f);

	if (ret)
		return ret;
	if (!mg_dns_name_valid(v))
		return report(c, s, "%s: not a DNS name (labels of letters, digits and '-')",
			      Q(config_setting_get_string(s)));
	return 0;
}

/* What mg_hostport_parse reads (DERP and STUN servers). */
#define HOSTPORT_EXPECTED "expected \"ipv4:port\", \"[ipv6]:port\" or \"name:port\" (port 1..65535)"

/* "ipv4:port", "[ipv6]:port" or "name:port" (gets the whole region). */
static int p_derp_server(struct ctx *c, const config_setting_t *s, void *dst, const struct field *f)
{
	struct mg_derp_region_conf *r = dst;
	const char *v;
	int ret = get_string(c, s, &v);

	(void)f;
	if (ret)
		return ret;
	if (mg_hostport_parse(v, &r->server, r->host, sizeof(r->host)) < 0)
		return report(c, s, HOSTPORT_EXPECTED ", got %s", Q(v));
	return 0;
}

/* STUN servers: "ipv4:port", "[ipv6]:port" or "name:port", no two alike. */
static int p_stun_servers(struct ctx *c, const config_setting_t *s, void *dst,
			  const struct field *f)
{
	struct mg_stun_server_conf *out = dst;
	int n = get_list(c, s, (int)f->size, "\"host:port\" strings");

	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		int ret = get_string(c, e, &v);

		if (ret)
			return ret;
		if (mg_hostport_parse(v, &out[i].server, out[i].host, sizeof(out[i].host)) < 0)
			return report(c, e, HOSTPORT_EXPECTED ", got %s", Q(v));
		for (int j = 0; j < i; j++)
			if (!memcmp(&out[j].server, &out[i].server, sizeof(out[i].server)) &&
			    !strcasecmp(out[j].host, out[i].host))
				return report(c, e, "duplicate entry %s", Q(v));
		*count_of(dst, f) = i + 1;
	}
	return n < 0 ? n : 0;
}

static const struct field derp_region_fields[] = {
    INT("id", struct mg_derp_region_conf, id, 1, 65535),
    {.name = "server", .parse = p_derp_server, .required = true}, /* gets the whole region */
    FIELD("public_key", p_key, struct mg_derp_region_conf, public_key),
    BOOL("tls", struct mg_derp_region_conf, tls),
    STR("server_name", p_dns_name, struct mg_derp_region_conf, server_name),
    STR("ca_file", p_path, struct mg_derp_region_conf, ca_file),
    END,
};

static int check_derp_region(struct ctx *c, const config_setting_t *g, void *base)
{
	struct mg_derp_region_conf *r = base;
	static const uint8_t zero[32];

	if (!config_setting_get_member(g, "id"))
		return report(c, g, "a DERP region needs an id (1..65535)");
	if (!r->tls && (r->server_name[0] || r->ca_file[0]))
		return report_member(c, g, r->server_name[0] ? "server_name" : "ca_file",
				     "only with tls = true");
	r->pinned = memcmp(r->public_key, zero, sizeof(zero)) != 0;
	return 0;
}

static const struct group_desc derp_region_group = {derp_region_fields, check_derp_region};
static const struct list_desc derp_region_list = {&derp_region_group,
						  sizeof(struct mg_derp_region_conf), NULL};

/* DERP region ids are unique, and the home region is one of them. */
static int check_control(struct ctx *c, const config_setting_t *g, void *base)
{
	struct mg_config *cfg = base;
	const config_setting_t *list = config_setting_get_member(g, "derp_regions");

	for (int i = 0; i < cfg->n_derp_regions; i++)
		for (int j = 0; j < i; j++)
			if (cfg->derp_regions[i].id == cfg->derp_regions[j].id)
				return report(c, config_setting_get_elem(list, (unsigned)i),
					      "duplicate DERP region id %u",
					      cfg->derp_regions[i].id);
	if (!cfg->derp_home) /* chosen by latency (control/derp.c) */
		return 0;
	if (!cfg->n_derp_regions) /* the preferred one of the coordination server's map */
		return 0;
	for (int i = 0; i < cfg->n_derp_regions; i++)
		if (cfg->derp_regions[i].id == cfg->derp_home)
			return 0;
	return report_member(c, g, "derp_home", "%u is not the id of one of derp_regions",
			     cfg->derp_home);
}

static const struct field control_fields[] = {
    FIELD("metrics_listen", p_listen, struct mg_config, metrics_listen),
    STR("policy_file", p_string, struct mg_config, policy_file),
    LIST("stun_servers", p_stun_servers, struct mg_config, stun_servers, n_stun_servers,
	 MG_MAX_STUN_SERVERS),
    INT("stun_interval", struct mg_config, stun_interval, 5, 3600),
    LIST("derp_regions", p_group_array, struct mg_config, derp_regions, n_derp_regions,
	 MG_MAX_DERP_REGIONS, .arg = &derp_region_list),
    INT("derp_home", struct mg_config, derp_home, 1, 65535),
    STR("derp_ca_file", p_path, struct mg_config, derp_ca_file),
    END,
};

static const struct field coord_fields[] = {
    STR("server", p_string, struct mg_coord_conf, server),
    STR("auth_key_file", p_auth_key_file, struct mg_coord_conf, auth_key_file),
    STR("state_dir", p_path, struct mg_coord_conf, state_dir),
    STR("hostname", p_name, struct mg_coord_conf, hostname),
    LIST("advertise_routes", p_prefixes, struct mg_coord_conf, routes, n_routes, 1024),
    STR("ca_file", p_path, struct mg_coord_conf, ca_file),
    END,
};

static const struct field testing_fields[] = {
    INT("rekey_after_time", struct mg_config, timers.rekey_after_time, 1, 86400),
    INT("reject_after_time", struct mg_config, timers.reject_after_time, 1, 86400),
    INT("keepalive_timeout", struct mg_config, timers.keepalive_timeout, 1, 86400),
    INT("rekey_timeout", struct mg_config, timers.rekey_timeout, 1, 86400),
    BOOL("allow_benchmark_no_replay", struct mg_config, allow_benchmark_no_replay),
    BOOL("coord_insecure_http", struct mg_config, coord_insecure_http),
    END,
};

static const struct field flow_log_fields[] = {
    STR("file", p_path, struct mg_flow_log_conf, file, REQUIRED),
    INT("interval", struct mg_flow_log_conf, interval, 1, 3600),
    INT("max_flows", struct mg_flow_log_conf, max_flows, 1024, 4194304),
    END,
};
static const struct group_desc flow_log_group = {flow_log_fields, NULL};

static const struct group_desc meshgate_group = {meshgate_fields, check_meshgate};
static const struct group_desc dataplane_group = {dataplane_fields, check_dataplane};
static const struct group_desc control_group = {control_fields, check_control};
static const struct group_desc testing_group = {testing_fields, check_testing};
static const struct group_desc coord_group = {coord_fields, check_coord};

static const struct field root_fields[] = {
    GROUP("meshgate", &meshgate_group, REQUIRED),
    GROUP("dataplane", &dataplane_group, REQUIRED),
    LIST("peers", p_group_alloc, struct mg_config, peers, n_peers, 1048576, .arg = &peer_list),
    GROUP("control", &control_group),
    GROUP("testing", &testing_group),
    GROUP("flow_log", &flow_log_group, .off = offsetof(struct mg_config, flow_log)),
    GROUP("coordination", &coord_group, .off = offsetof(struct mg_config, coord)),
    END,
};
static const struct group_desc root_group = {root_fields, check_root};

/* ---- entry points ---- */

static void set_defaults(struct mg_config *cfg)
{
	cfg->listen_port = 51820;
	cfg->mtu = 1420;
	cfg->max_peers = 1024;
	strcpy(cfg->run_dir, "/var/run/wireguard");
	cfg->log_level = LOG_INFO;
	cfg->main_lcore = 0;
	cfg->workers[0] = 1;
	cfg->n_workers = 1;
	cfg->mbufs = 8192;
	cfg->burst = 64;
	cfg->flow_log.interval = 10;
	cfg->flow_log.max_flows = 65536;
	cfg->crypto = MG_CRYPTO_IPSEC_MB;
	cfg->snat = (struct mg_snat_conf){
	    .enabled = true,
	    .port_min = 32768,
	    .port_max = 60999,
	    .max_entries = 1048576,
	    .tcp_established_timeout = 7200,
	    .tcp_transitory_timeout = 120,
	    .udp_timeout = 120,
	    .icmp_timeout = 30,
	};
	cfg->stun_interval = 25;
	strcpy(cfg->coord.state_dir, "/var/lib/meshgate");
	cfg->timers = (struct mg_timers_conf){
	    .rekey_after_time = WG_REKEY_AFTER_TIME,
	    .reject_after_time = WG_REJECT_AFTER_TIME,
	    .keepalive_timeout = WG_KEEPALIVE_TIMEOUT,
	    .rekey_timeout = WG_REKEY_TIMEOUT,
	};
}

int mg_config_parse(const config_t *cf, const char *name, unsigned flags, struct mg_config *out,
		    char *err, size_t errlen)
{
	struct ctx c = {.name = name, .flags = flags, .cfg = out, .err = err, .errlen = errlen};
	int ret;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	if (sodium_init() < 0) {
		snprintf(err, errlen, "%s: libsodium failed to initialise", name);
		return -ENOSYS;
	}
	set_defaults(out);
	if (strlen(name) >= sizeof(out->path)) {
		snprintf(err, errlen, "%.64s...: path too long", name);
		ret = -ENAMETOOLONG;
	} else {
		strcpy(out->path, name);
		ret = parse_group(&c, config_root_setting(cf), &root_group, out);
	}
	if (!ret && !out->coord.hostname[0])
		strcpy(out->coord.hostname, out->name);
	if (ret)
		mg_config_free(out);
	return ret;
}

static int syntax_error(const config_t *cf, const char *name, char *err, size_t errlen)
{
	const char *file = config_error_file(cf) ? config_error_file(cf) : name;

	snprintf(err, errlen, "%s:%d: %s", file, config_error_line(cf), config_error_text(cf));
	return -EINVAL;
}

/*
 * @include paths are taken relative to the including file's directory, and
 * absolute ones as they are. libconfig 1.5 puts its include dir in front of
 * every path, absolute ones too, so instead of setting one we read from
 * inside that directory (and go back): config loads happen at start-up,
 * before any other thread exists. -1 if we stayed where we were.
 */
static int enter_config_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int here;

	if (!slash || (size_t)(slash - path) >= sizeof(dir))
		return -1;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (here < 0)
		return -1;
	if (chdir(slash == path ? "/" : dir)) {
		close(here);
		return -1;
	}
	return here;
}

static void leave_config_dir(int here)
{
	if (here < 0)
		return;
	if (fchdir(here))
		fprintf(stderr, "config: cannot return to the working directory: %s\n",
			strerror(errno));
	close(here);
}

/* libconfig's scanner exit()s on a read error, as reading a directory gives. */
static int check_readable(FILE *f)
{
	struct stat st;

	if (fstat(fileno(f), &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? -EISDIR : 0;
}

int mg_config_load(const char *path, unsigned flags, struct mg_config *out, char *err,
		   size_t errlen)
{
	config_t cf;
	FILE *f = fopen(path, "re");
	int ret;

	memset(out, 0, sizeof(*out));
	ret = f ? check_readable(f) : -errno;
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		if (f)
			fclose(f);
		return ret;
	}
	config_init(&cf);
	int here = enter_config_dir(path);
	int read = config_read(&cf, f);
	leave_config_dir(here);
	if (read != CONFIG_TRUE)
		ret = syntax_error(&cf, path, err, errlen);
	else
		ret = mg_config_parse(&cf, path, flags, out, err, errlen);
	config_destroy(&cf);
	fclose(f);
	return ret;
}

int mg_config_load_string(const char *text, const char *name, unsigned flags, struct mg_config *out,
			  char *err, size_t errlen)
{
	config_t cf;
	int ret;

	memset(out, 0, sizeof(*out));
	config_init(&cf);
	if (config_read_string(&cf, text) != CONFIG_TRUE)
		ret = syntax_error(&cf, name, err, errlen);
	else
		ret = mg_config_parse(&cf, name, flags, out, err, errlen);
	config_destroy(&cf);
	return ret;
}

void mg_config_free(struct mg_config *c)
{
	for (int i = 0; c->eal_args && i < c->n_eal_args; i++)
		free(c->eal_args[i]);
	free(c->eal_args);
	for (int i = 0; i < c->n_ports; i++)
		free(c->ports[i].routes);
	free(c->coord.routes);
	for (int i = 0; c->peers && i < c->n_peers; i++)
		free(c->peers[i].allowed_ips);
	if (c->peers)
		sodium_memzero(c->peers, (size_t)c->n_peers * sizeof(*c->peers));
	free(c->peers);
	sodium_memzero(c, sizeof(*c));
}

int mg_config_port(const struct mg_config *c, enum mg_port_role role)
{
	for (int i = 0; i < c->n_ports; i++)
		if (c->ports[i].role == role)
			return i;
	return -1;
}
