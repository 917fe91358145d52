// SPDX-License-Identifier: MIT
/*
 * Key encoding and key files. Every buffer that held key material is wiped
 * with sodium_memzero() before it goes out of scope.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"

/* A key file is one line; anything longer is not a key file. */
#define KEY_FILE_MAX 128

int mg_key_from_base64(const char *s, uint8_t key[32])
{
	uint8_t tmp[MG_KEY_LEN];
	size_t bin_len = 0;
	const char *end = NULL;
	int ret = -EINVAL;

	if (strnlen(s, MG_KEY_B64_LEN + 1) != MG_KEY_B64_LEN)
		return -EINVAL;
	if (sodium_base642bin(tmp, sizeof(tmp), s, MG_KEY_B64_LEN, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) == 0 &&
	    bin_len == MG_KEY_LEN && end == s + MG_KEY_B64_LEN) {
		memcpy(key, tmp, MG_KEY_LEN);
		ret = 0;
	}
	sodium_memzero(tmp, sizeof(tmp));
	return ret;
}

void mg_key_to_base64(const uint8_t key[32], char out[45])
{
	sodium_bin2base64(out, MG_KEY_B64_LEN + 1, key, MG_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int mg_key_from_hex(const char *s, uint8_t key[32])
{
	uint8_t tmp[MG_KEY_LEN];
	size_t bin_len = 0;
	const char *end = NULL;
	int ret = -EINVAL;

	if (strnlen(s, MG_KEY_HEX_LEN + 1) != MG_KEY_HEX_LEN)
		return -EINVAL;
	if (sodium_hex2bin(tmp, sizeof(tmp), s, MG_KEY_HEX_LEN, NULL, &bin_len, &end) == 0 &&
	    bin_len == MG_KEY_LEN && end == s + MG_KEY_HEX_LEN) {
		memcpy(key, tmp, MG_KEY_LEN);
		ret = 0;
	}
	sodium_memzero(tmp, sizeof(tmp));
	return ret;
}

void mg_key_to_hex(const uint8_t key[32], char out[65])
{
	sodium_bin2hex(out, MG_KEY_HEX_LEN + 1, key, MG_KEY_LEN);
}

bool mg_key_is_zero(const uint8_t key[32])
{
	return sodium_is_zero(key, MG_KEY_LEN) == 1;
}

/* Key files must not be readable (or writable) by anyone but the owner. */
static int check_key_file(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	unsigned mode;

	if (fstat(fd, &st) < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return -EINVAL;
	}
	mode = st.st_mode & 07777;
	if (mode != 0600 && mode != 0400) {
		snprintf(err, errlen, "%s: insecure mode %04o, must be 0600 or 0400 (chmod 600 %s)",
			 path, mode, path);
		return -EACCES;
	}
	return 0;
}

/* Read at most len bytes; returns the count or -errno. */
static ssize_t read_all(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int decode_key_text(char *buf, size_t n, uint8_t key[32])
{
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	return mg_key_from_base64(buf, key);
}

int mg_key_load_file(const char *path, uint8_t key[32], char *err, size_t errlen)
{
	char buf[KEY_FILE_MAX + 1];
	ssize_t n;
	int fd, ret;

	/* O_NONBLOCK: a FIFO must not hang us; it is refused as not regular. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = check_key_file(fd, path, err, errlen);
	if (ret == 0) {
		n = read_all(fd, buf, sizeof(buf) - 1);
		if (n < 0) {
			ret = (int)n;
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		} else if (decode_key_text(buf, (size_t)n, key) < 0) {
			ret = -EINVAL;
			snprintf(err, errlen,
				 "%s: does not hold a base64 key (as made by wg genkey)", path);
		}
	}
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return ret;
}
