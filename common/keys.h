/* SPDX-License-Identifier: MIT */
/*
 * 32-byte WireGuard keys as text: base64 (the `wg genkey` form, used in
 * config files) and lowercase hex (the UAPI form). Decoders are strict:
 * exactly 44 base64 or 64 hex characters, nothing after; they return 0 or
 * -EINVAL and leave key untouched on error. Nothing here prints key material.
 */
#ifndef MG_KEYS_H
#define MG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MG_KEY_LEN     32
#define MG_KEY_B64_LEN 44 /* without the NUL */
#define MG_KEY_HEX_LEN 64

int mg_key_from_base64(const char *s, uint8_t key[32]);
void mg_key_to_base64(const uint8_t key[32], char out[45]);
int mg_key_from_hex(const char *s, uint8_t key[32]);
void mg_key_to_hex(const uint8_t key[32], char out[65]);
bool mg_key_is_zero(const uint8_t key[32]);

/*
 * Read a base64 key (as written by `wg genkey`; trailing whitespace is fine)
 * from a regular file whose permission bits are exactly 0600 or 0400.
 * Returns 0 or -errno with a one-line reason in err that names the path (and
 * the mode, when that is the reason) but never the file's contents.
 */
int mg_key_load_file(const char *path, uint8_t key[32], char *err, size_t errlen);

#endif /* MG_KEYS_H */
