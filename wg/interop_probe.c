// SPDX-License-Identifier: MIT
/*
 * Interop probe: runs one handshake with a real WireGuard peer over UDP on
 * loopback, using libwg for the handshake and a minimal data path to prove
 * the derived keys, then exits 0 on success. Driven by
 * interop_wireguard_go.sh, inside a private network namespace.
 *
 *   interop_probe initiate PRIV PEER_PUB PSK|- LOCAL_PORT PEER_PORT
 *     sends an initiation, consumes the response, sends a keepalive and an
 *     ICMP echo (10.99.0.2 -> 10.99.0.1), decrypts the peer's reply.
 *   interop_probe respond PRIV PEER_PUB PSK|- LOCAL_PORT
 *     answers the peer's first initiation with a cookie reply, requires its
 *     retry to carry a valid mac2, answers that with a response and decrypts
 *     the peer's first data packet.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <sodium.h>

#include "cookie.h"
#include "noise.h"

struct probe {
	struct wg_noise_local local;
	struct wg_noise_remote remote;
	struct wg_cookie_checker checker;
	struct wg_cookie_maker maker;
	struct wg_noise_keypair kp;
	int fd;
};

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * WG_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t mono(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static int parse_key(const char *s, uint8_t out[32])
{
	size_t n;

	if (sodium_base642bin(out, 32, s, strlen(s), NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) ||
	    n != 32) {
		fprintf(stderr, "Invalid key: `%s'\n", s);
		return -1;
	}
	return 0;
}

static struct sockaddr_in loopback(const char *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* The cookie's view of a source: IPv4 address then port, network order. */
static void src_bytes(const struct sockaddr_in *a, uint8_t out[6])
{
	memcpy(out, &a->sin_addr, 4);
	memcpy(out + 4, &a->sin_port, 2);
}

static ssize_t recv_timeout(int fd, void *buf, size_t len, struct sockaddr_in *from, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	socklen_t from_len = sizeof(*from);

	if (poll(&p, 1, ms) != 1)
		return -1;
	return recvfrom(fd, buf, len, 0, (struct sockaddr *)from, &from_len);
}

static void data_nonce(uint8_t nonce[12], uint64_t le_counter)
{
	memset(nonce, 0, 4);
	memcpy(nonce + 4, &le_counter, 8);
}

static int send_data(struct probe *p, const struct sockaddr_in *to, uint64_t counter,
		     const uint8_t *payload, size_t len)
{
	uint8_t pkt[256], nonce[12];
	struct wg_message_data *d = (struct wg_message_data *)pkt;

	memset(pkt, 0, sizeof(*d));
	d->header.type = WG_MSG_DATA;
	d->key_idx = htole32(p->kp.remote_index);
	d->counter = htole64(counter);
	data_nonce(nonce, d->counter);
	crypto_aead_chacha20poly1305_ietf_encrypt(pkt + sizeof(*d), NULL, payload, len, NULL, 0,
						  NULL, nonce, p->kp.send_key);
	return sendto(p->fd, pkt, WG_DATA_OVERHEAD + len, 0, (const struct sockaddr *)to,
		      sizeof(*to)) < 0
		   ? -1
		   : 0;
}

/* Waits for a non-empty data packet for our index and decrypts it. */
static int recv_data(struct probe *p, int ms)
{
	uint8_t pkt[2048], plain[2048], nonce[12];
	const struct wg_message_data *d = (const struct wg_message_data *)pkt;
	uint64_t deadline = mono() + (uint64_t)ms * 1000000;
	unsigned long long plain_len;
	struct sockaddr_in from;
	ssize_t n;

	while (mono() < deadline) {
		n = recv_timeout(p->fd, pkt, sizeof(pkt), &from, 200);
		if (n < (ssize_t)WG_DATA_OVERHEAD || pkt[0] != WG_MSG_DATA ||
		    le32toh(d->key_idx) != p->kp.local_index)
			continue;
		data_nonce(nonce, d->counter);
		if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plain_len, NULL,
							      pkt + sizeof(*d), n - sizeof(*d),
							      NULL, 0, nonce, p->kp.recv_key)) {
			fprintf(stderr, "data packet does not decrypt\n");
			return -1;
		}
		printf("data packet %llu decrypted: %llu bytes, IP version %d\n",
		       (unsigned long long)le64toh(d->counter), plain_len,
		       plain_len ? plain[0] >> 4 : 0);
		if (plain_len)
			return 0;
	}
	fprintf(stderr, "no data packet\n");
	return -1;
}

static uint16_t ip_checksum(const uint8_t *b, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ICMP echo 10.99.0.2 -> 10.99.0.1, zero-padded to 32 bytes as WireGuard pads. */
static void make_echo(uint8_t pkt[32])
{
	static const uint8_t echo[28] = {
	    0x45, 0,  0, 28, 0,	   1,	 0, 0, 64, 1, 0, 0, /* IPv4, ICMP */
	    10,	  99, 0, 2,				    /* 10.99.0.2 */
	    10,	  99, 0, 1,				    /* 10.99.0.1 */
	    8,	  0,  0, 0,  0x12, 0x34, 0, 1,		    /* echo request, id 0x1234, seq 1 */
	};
	uint16_t sum;

	memset(pkt, 0, 32);
	memcpy(pkt, echo, sizeof(echo));
	sum = ip_checksum(pkt, 20);
	pkt[10] = sum >> 8;
	pkt[11] = (uint8_t)sum;
	sum = ip_checksum(pkt + 20, 8);
	pkt[22] = sum >> 8;
	pkt[23] = (uint8_t)sum;
}

static int initiate(struct probe *p, const struct sockaddr_in *peer)
{
	struct wg_message_initiation init;
	struct wg_message_response resp;
	enum wg_cookie_mac_state mac;
	struct sockaddr_in from;
	uint8_t src[6], echo[32];
	int ret;

	ret = wg_noise_create_initiation(&p->local, &p->remote, 0xdeadbeef,
					 clock_ns(CLOCK_REALTIME), &init);
	wg_cookie_add_macs(&p->maker, &init, sizeof(init), mono());
	if (ret ||
	    sendto(p->fd, &init, sizeof(init), 0, (const struct sockaddr *)peer, sizeof(*peer)) < 0)
		return -1;
	if (recv_timeout(p->fd, &resp, sizeof(resp), &from, 3000) != sizeof(resp)) {
		fprintf(stderr, "no response\n");
		return -1;
	}
	src_bytes(&from, src);
	mac = wg_cookie_validate(&p->checker, &resp, sizeof(resp), src, sizeof(src), mono());
	ret = wg_noise_consume_response(&p->local, &p->remote, &resp);
	printf("response: mac state %d, consume_response %d\n", mac, ret);
	if (mac != WG_COOKIE_MAC1_VALID || ret || wg_noise_derive_keypair(&p->remote, &p->kp))
		return -1;

	make_echo(echo);
	if (send_data(p, peer, 0, NULL, 0) || send_data(p, peer, 1, echo, sizeof(echo)))
		return -1;
	return recv_data(p, 3000);
}

static int answer_with_cookie(struct probe *p, const struct wg_message_initiation *init,
			      const struct sockaddr_in *from, const uint8_t src[6])
{
	struct wg_message_cookie reply;

	if (wg_cookie_create_reply(&p->checker, init, sizeof(*init), le32toh(init->sender_index),
				   src, 6, mono(), &reply))
		return -1;
	return sendto(p->fd, &reply, sizeof(reply), 0, (const struct sockaddr *)from,
		      sizeof(*from)) < 0
		   ? -1
		   : 0;
}

static int answer_with_response(struct probe *p, const struct wg_message_initiation *init,
				const struct sockaddr_in *from)
{
	struct wg_message_response resp;
	struct wg_noise_initiation in;
	int ret;

	ret = wg_noise_consume_initiation(&p->local, init, &in);
	if (ret || memcmp(in.remote_static, p->remote.public_key, 32)) {
		fprintf(stderr, "consume_initiation %d or unknown static key\n", ret);
		return -1;
	}
	if (wg_noise_accept_initiation(&p->remote, &in, mono()) ||
	    wg_noise_create_response(&p->local, &p->remote, 0x0badf00d, &resp))
		return -1;
	wg_cookie_add_macs(&p->maker, &resp, sizeof(resp), mono());
	if (sendto(p->fd, &resp, sizeof(resp), 0, (const struct sockaddr *)from, sizeof(*from)) <
		0 ||
	    wg_noise_derive_keypair(&p->remote, &p->kp))
		return -1;
	return recv_data(p, 5000);
}

static int respond(struct probe *p)
{
	struct wg_message_initiation init;
	enum wg_cookie_mac_state mac;
	struct sockaddr_in from;
	uint8_t src[6];

	for (int round = 0; round < 2; round++) {
		ssize_t n;

		do
			n = recv_timeout(p->fd, &init, sizeof(init), &from, 15000);
		while (n > 0 && init.header.type != WG_MSG_HANDSHAKE_INITIATION);
		if (n != sizeof(init)) {
			fprintf(stderr, "no initiation\n");
			return -1;
		}
		src_bytes(&from, src);
		mac =
		    wg_cookie_validate(&p->checker, &init, sizeof(init), src, sizeof(src), mono());
		printf("initiation %d: mac state %d\n", round, mac);
		if (round == 0 && mac == WG_COOKIE_MAC1_VALID) {
			if (answer_with_cookie(p, &init, &from, src))
				return -1;
			continue;
		}
		if (round == 1 && mac == WG_COOKIE_MAC1_AND_MAC2_VALID)
			return answer_with_response(p, &init, &from);
		return -1;
	}
	return -1;
}

int main(int argc, char **argv)
{
	uint8_t priv[32], pub[32], psk[32];
	struct sockaddr_in me, peer;
	bool initiator = argc == 7 && !strcmp(argv[1], "initiate");
	bool have_psk;
	struct probe p;
	int ret;

	if (!initiator && !(argc == 6 && !strcmp(argv[1], "respond"))) {
		fprintf(stderr, "usage: %s initiate|respond PRIV PEER_PUB PSK|- PORT [PEER_PORT]\n",
			argv[0]);
		return 2;
	}
	have_psk = strcmp(argv[4], "-");
	if (sodium_init() < 0 || parse_key(argv[2], priv) || parse_key(argv[3], pub) ||
	    (have_psk && parse_key(argv[4], psk)))
		return 2;
	wg_noise_local_init(&p.local, priv);
	if (wg_noise_remote_init(&p.remote, &p.local, pub, have_psk ? psk : NULL))
		return 2;
	wg_cookie_checker_init(&p.checker, p.local.public_key);
	wg_cookie_maker_init(&p.maker, pub);

	me = loopback(argv[5]);
	p.fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (p.fd < 0 || bind(p.fd, (struct sockaddr *)&me, sizeof(me))) {
		perror("socket");
		return 1;
	}
	if (initiator) {
		peer = loopback(argv[6]);
		ret = initiate(&p, &peer);
	} else {
		ret = respond(&p);
	}
	printf("%s %s\n", argv[1], ret ? "FAILED" : "OK");
	return ret ? 1 : 0;
}
