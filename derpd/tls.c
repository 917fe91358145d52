/* SPDX-License-Identifier: MIT */
/*
 * The TLS context for --tls-cert/--tls-key: TLS 1.2 or later, OpenSSL's
 * default ciphers, the certificate (chain) and its key from PEM files. The
 * key file is checked as the server key file is: a regular file that only
 * its owner may read or write, opened once, so the checked file is the one
 * loaded.
 *
 * Connections use it from conn.c (the non-blocking handshake, reads,
 * writes, close).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "derpd.h"
#include "log.h"

/* OpenSSL's reason for the last failure, for the log. */
static const char *ossl_why(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	return r ? r : "unknown error";
}

/* An encrypted key is refused rather than asked a passphrase for. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static EVP_PKEY *load_key(const char *path)
{
	EVP_PKEY *key = NULL;
	struct stat st;
	unsigned mode;
	FILE *f;
	int fd;

	/* O_NONBLOCK: a FIFO must not hang us; it is refused as not regular. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		mg_log(LOG_ERR, "TLS key file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		mg_log(LOG_ERR, "TLS key file %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	mode = st.st_mode & 07777;
	if (!S_ISREG(st.st_mode)) {
		mg_log(LOG_ERR, "TLS key file %s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (mode & 077) {
		mg_log(LOG_ERR,
		       "TLS key file %s: insecure mode %04o, must not be accessible by group or "
		       "others (chmod 600 %s)",
		       path, mode, path);
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (!f) {
		mg_log(LOG_ERR, "TLS key file %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	ERR_clear_error();
	key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!key)
		mg_log(LOG_ERR, "TLS key file %s: no unencrypted PEM private key (%s)", path,
		       ossl_why());
	return key;
}

/* "TLS on: certificate CN=..., valid until ...". */
static void log_cert(SSL_CTX *ctx, const char *path)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	BIO *b = BIO_new(BIO_s_mem());
	char subject[512] = "?", until[64] = "?";
	int n;

	if (cert && b &&
	    X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(b, subject, sizeof(subject) - 1);
		subject[n > 0 ? n : 0] = '\0';
	}
	if (b)
		(void)BIO_reset(b);
	if (cert && b && ASN1_TIME_print(b, X509_get0_notAfter(cert))) {
		n = BIO_read(b, until, sizeof(until) - 1);
		until[n > 0 ? n : 0] = '\0';
	}
	BIO_free(b);
	mg_log(LOG_INFO,
	       "TLS on (TLS 1.2 or later): certificate subject %s, valid until %s, from %s",
	       subject, until, path);
}

SSL_CTX *derpd_tls_ctx(const char *cert_file, const char *key_file)
{
	SSL_CTX *ctx;
	EVP_PKEY *key;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		mg_log(LOG_ERR, "TLS: cannot create a context: %s", ossl_why());
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		mg_log(LOG_ERR, "TLS: cannot require TLS 1.2: %s", ossl_why());
		goto fail;
	}
	/* Renegotiation only costs the server: refused. Partial writes and a
	 * retry from a moved buffer: conn.c writes from its output queue.
	 * Buffers released when empty: an idle client holds none. Read-ahead:
	 * fewer reads (conn.c minds what OpenSSL buffers). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(ctx, 1);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		mg_log(LOG_ERR, "TLS certificate file %s: %s", cert_file, ossl_why());
		goto fail;
	}
	key = load_key(key_file);
	if (!key)
		goto fail;
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		mg_log(LOG_ERR, "TLS key file %s: %s", key_file, ossl_why());
		EVP_PKEY_free(key);
		goto fail;
	}
	EVP_PKEY_free(key);
	if (SSL_CTX_check_private_key(ctx) != 1) {
		mg_log(LOG_ERR, "TLS key file %s does not match the certificate in %s: %s",
		       key_file, cert_file, ossl_why());
		goto fail;
	}
	log_cert(ctx, cert_file);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
