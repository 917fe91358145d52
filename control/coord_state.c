/* SPDX-License-Identifier: MIT */
/*
 * The node's coordination state, <state_dir>/<name>.state: the machine key
 * (Ed25519 seed), the node key (X25519, the device's WireGuard key), and the
 * registration (server, node id, addresses, key expiry), so that a restart
 * needs no auth key. Text, one "key=value" per line, mode 0600, replaced
 * atomically (a crash leaves the old file or the new one, never half of
 * one). Private keys live in sodium_malloc'd memory and are zeroed on free.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "keys.h"

#define STATE_MAX_BYTES 16384

void cp_coord_node_key_new(uint8_t sk[32], uint8_t pk[32])
{
	randombytes_buf(sk, 32);
	sk[0] &= 248; /* clamped, as `wg genkey` writes it */
	sk[31] = (sk[31] & 127) | 64;
	crypto_scalarmult_curve25519_base(pk, sk);
}

static struct cp_coord_state *state_alloc(void)
{
	struct cp_coord_state *s = sodium_malloc(sizeof(*s));

	if (s)
		memset(s, 0, sizeof(*s));
	return s;
}

struct cp_coord_state *cp_coord_state_new(void)
{
	struct cp_coord_state *s = state_alloc();

	if (!s)
		return NULL;
	randombytes_buf(s->machine_seed, sizeof(s->machine_seed));
	crypto_sign_seed_keypair(s->machine_pk, s->machine_sk, s->machine_seed);
	cp_coord_node_key_new(s->node_sk, s->node_pk);
	return s;
}

void cp_coord_state_free(struct cp_coord_state *s)
{
	if (s)
		sodium_free(s); /* zeroes */
}

/* ---- reading ---------------------------------------------------------------- */

static int key32(const char *v, uint8_t out[32])
{
	return mg_key_from_base64(v, out);
}

static int i64(const char *v, int64_t *out)
{
	char *end;
	long long x;

	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < 0)
		return -EINVAL;
	*out = x;
	return 0;
}

/* One "key=value" line into s; seen collects which keys were there. */
static int state_line(struct cp_coord_state *s, char *line, unsigned *seen)
{
	char *v = strchr(line, '=');
	int64_t x = 0;
	int ret = 0;

	if (!v)
		return -EINVAL;
	*v++ = '\0';
	if (!strcmp(line, "version")) {
		ret = strcmp(v, "1") ? -EINVAL : 0;
	} else if (!strcmp(line, "machine_key")) {
		ret = key32(v, s->machine_seed);
		*seen |= 1;
	} else if (!strcmp(line, "node_key")) {
		ret = key32(v, s->node_sk);
		*seen |= 2;
	} else if (!strcmp(line, "server")) {
		ret = strlen(v) < sizeof(s->server) ? 0 : -EINVAL;
		if (!ret)
			strcpy(s->server, v);
	} else if (!strcmp(line, "node_id")) {
		ret = i64(v, &x);
		s->node_id = (uint64_t)x;
	} else if (!strcmp(line, "name")) {
		ret = strlen(v) < sizeof(s->name) ? 0 : -EINVAL;
		if (!ret)
			strcpy(s->name, v);
	} else if (!strcmp(line, "address")) {
		if (s->n_addrs == CP_COORD_MAX_ADDRS)
			return -EINVAL;
		ret = mg_ifaddr_parse(v, &s->addrs[s->n_addrs]);
		s->n_addrs += ret == 0;
	} else if (!strcmp(line, "key_expiry")) {
		ret = i64(v, &s->key_expiry);
	} else if (!strcmp(line, "key_issued")) {
		ret = i64(v, &s->key_issued);
	} else if (!strcmp(line, "hostname")) {
		ret = strlen(v) < sizeof(s->hostname) ? 0 : -EINVAL;
		if (!ret)
			strcpy(s->hostname, v);
	} else if (!strcmp(line, "routes")) {
		ret = s->has_routes ? -EINVAL : 0; /* once, maybe empty */
		s->has_routes = true;
	} else if (!strcmp(line, "route")) {
		if (s->n_routes == CP_COORD_MAX_ROUTES)
			return -EINVAL;
		ret = mg_prefix_parse(v, &s->routes[s->n_routes]);
		s->n_routes += ret == 0;
	} else if (!strcmp(line, "logged_out")) {
		ret = i64(v, &x);
		s->logged_out = x != 0;
	} else {
		ret = -EINVAL;
	}
	v[-1] = '=';
	return ret;
}

static int state_parse(struct cp_coord_state *s, char *text, char *err, size_t errlen,
		       const char *path)
{
	unsigned seen = 0, lineno = 0;
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		if (line[0] == '#' || !line[0])
			continue;
		if (state_line(s, line, &seen)) {
			char *eq = strchr(line, '=');
			/* Name the key, never the value: it may be a private key. */
			snprintf(err, errlen, "%s:%u: bad line (key \"%.*s\")", path, lineno,
				 eq ? (int)(eq - line) > 32 ? 32 : (int)(eq - line) : 0, line);
			return -EINVAL;
		}
	}
	if (seen != 3) {
		snprintf(err, errlen, "%s: machine_key or node_key missing", path);
		return -EINVAL;
	}
	crypto_sign_seed_keypair(s->machine_pk, s->machine_sk, s->machine_seed);
	crypto_scalarmult_curve25519_base(s->node_pk, s->node_sk);
	return 0;
}

int cp_coord_state_load(const char *path, struct cp_coord_state **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int ret = 0, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct cp_coord_state *s = NULL;

	*out = NULL;
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		ret = -EINVAL, snprintf(err, errlen, "%s: not a regular file", path);
	else if ((st.st_mode & 07777) != 0600 && (st.st_mode & 07777) != 0400)
		ret = -EPERM, snprintf(err, errlen, "%s: mode %04o, must be 0600 or 0400", path,
				       (unsigned)(st.st_mode & 07777));
	else if (st.st_size > STATE_MAX_BYTES)
		ret = -EFBIG,
		snprintf(err, errlen, "%s: larger than %d bytes", path, STATE_MAX_BYTES);
	else if (!(buf = sodium_malloc(STATE_MAX_BYTES + 1)) || !(s = state_alloc()))
		ret = -ENOMEM, snprintf(err, errlen, "%s: out of memory", path);
	if (!ret) {
		n = read(fd, buf, STATE_MAX_BYTES);
		if (n < 0)
			ret = -errno, snprintf(err, errlen, "%s: %s", path, strerror(errno));
		else {
			buf[n] = '\0';
			if (memchr(buf, '\0', (size_t)n))
				ret = -EINVAL, snprintf(err, errlen, "%s: NUL byte", path);
			else
				ret = state_parse(s, buf, err, errlen, path);
		}
	}
	close(fd);
	if (buf)
		sodium_free(buf);
	if (ret)
		cp_coord_state_free(s);
	else
		*out = s;
	return ret;
}

/* ---- writing ------------------------------------------------------------------ */

static int format(const struct cp_coord_state *s, char *buf, size_t len)
{
	char mk[45], nk[45], a[MG_PREFIX_STRLEN];
	size_t n;

	mg_key_to_base64(s->machine_seed, mk);
	mg_key_to_base64(s->node_sk, nk);
	n = (size_t)snprintf(
	    buf, len,
	    "# meshgate coordination state: private keys, keep it 0600\n"
	    "version=1\nmachine_key=%s\nnode_key=%s\nserver=%s\nnode_id=%" PRIu64
	    "\nname=%s\nkey_expiry=%" PRId64 "\nkey_issued=%" PRId64 "\nlogged_out=%d\n",
	    mk, nk, s->server, s->node_id, s->name, s->key_expiry, s->key_issued, s->logged_out);
	for (uint32_t i = 0; i < s->n_addrs && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "address=%s\n",
				      mg_prefix_fmt(&s->addrs[i], a, sizeof(a)));
	if (s->hostname[0] && n < len)
		n += (size_t)snprintf(buf + n, len - n, "hostname=%s\n", s->hostname);
	if (s->has_routes && n < len)
		n += (size_t)snprintf(buf + n, len - n, "routes=\n");
	for (uint32_t i = 0; s->has_routes && i < s->n_routes && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "route=%s\n",
				      mg_prefix_fmt(&s->routes[i], a, sizeof(a)));
	sodium_memzero(mk, sizeof(mk));
	sodium_memzero(nk, sizeof(nk));
	return n < len ? (int)n : -ENOSPC;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void sync_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int fd;

	if (!slash || (size_t)(slash - path) >= sizeof(dir))
		return;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash == path ? 1 : slash - path] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int cp_coord_file_write(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
	char tmp[4200];
	int fd = -1, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) /* mode 0600 */
		ret = -errno;
	if (!ret && fchmod(fd, 0600) < 0)
		ret = -errno;
	if (!ret)
		ret = write_all(fd, text, len);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (fd >= 0 && close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		if (fd >= 0)
			unlink(tmp);
	} else {
		sync_dir(path);
	}
	return ret;
}

int cp_coord_state_save(const char *path, const struct cp_coord_state *s, char *err, size_t errlen)
{
	char *buf = sodium_malloc(STATE_MAX_BYTES);
	int n, ret;

	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	n = format(s, buf, STATE_MAX_BYTES);
	if (n < 0) {
		snprintf(err, errlen, "%s: state too large", path);
		ret = n;
	} else {
		ret = cp_coord_file_write(path, buf, (size_t)n, err, errlen);
	}
	sodium_free(buf);
	return ret;
}

int cp_coord_file_read(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), ret = 0;
	ssize_t n = 0;

	*out = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max)
		ret = -EINVAL;
	else if ((st.st_mode & 07777) != 0600 && (st.st_mode & 07777) != 0400)
		ret = -EPERM;
	else if (!(*out = malloc((size_t)st.st_size + 1)))
		ret = -ENOMEM;
	else if ((n = read(fd, *out, (size_t)st.st_size)) < 0)
		ret = -errno;
	close(fd);
	if (ret) {
		free(*out);
		*out = NULL;
		return ret;
	}
	(*out)[n] = '\0';
	*len = (size_t)n;
	return 0;
}
