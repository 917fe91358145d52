// SPDX-License-Identifier: MIT
/*
 * meshgate-hsflood: a handshake flood for tests and benchmarks, aimed only
 * at addresses the caller chooses (the netns tests use their own
 * namespaces). It sends WireGuard handshake initiations that carry a valid
 * MAC1 for the responder's public key, so each one passes the responder's
 * cheap check and costs it Diffie-Hellman work, but come from unknown static
 * keys, so none completes. It counts the cookie replies that come back.
 *
 *   meshgate-hsflood [--cookies] [--rate R] DST_IP PORT RESPONDER_PUBKEY_B64 COUNT SECONDS
 *
 * 1,024 distinct initiations are made up front (MAC1 over each) and sent in
 * turn with sendmmsg, as fast as the socket takes them (or R per second
 * with --rate), until COUNT are sent or SECONDS pass. --cookies makes it the attacker that does answer
 * cookie replies: it takes the cookie and sends MAC2 from then on (all from
 * one source address, which the responder then rate limits).
 *
 * Prints one line: "sent N cookies M seconds S".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cookie.h"
#include "wg_messages.h"

#define NMSG  1024
#define BURST 64

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [--cookies] [--rate R] DST_IP PORT RESPONDER_PUBKEY_B64 COUNT SECONDS\n",
		prog);
	exit(2);
}

/* Fresh MACs on every message: MAC2 too, once a cookie is held. */
static void mac_all(struct wg_cookie_maker *maker, struct wg_message_initiation *msg,
		    uint64_t now)
{
	for (int i = 0; i < NMSG; i++)
		wg_cookie_add_macs(maker, &msg[i], sizeof(msg[i]), now);
}

int main(int argc, char **argv)
{
	static struct wg_message_initiation msg[NMSG];
	struct wg_cookie_maker maker;
	uint8_t pub[32];
	size_t pub_len;
	bool honor = false;
	int a = 1;

	double rate = 0;
	for (; a < argc && !strncmp(argv[a], "--", 2); a++) {
		if (!strcmp(argv[a], "--cookies")) {
			honor = true;
		} else if (!strcmp(argv[a], "--rate") && a + 1 < argc) {
			rate = strtod(argv[++a], NULL);
			if (!(rate >= 1 && rate <= 1e8))
				usage(argv[0]);
		} else {
			usage(argv[0]);
		}
	}
	if (argc - a != 5)
		usage(argv[0]);
	struct sockaddr_in dst = {.sin_family = AF_INET};
	char *end;
	long port = strtol(argv[a + 1], &end, 10);
	unsigned long long count = strtoull(argv[a + 3], NULL, 10);
	double secs = strtod(argv[a + 4], NULL);
	if (inet_pton(AF_INET, argv[a], &dst.sin_addr) != 1 || *end || port < 1 || port > 65535 ||
	    !(secs > 0 && secs <= 3600) || sodium_init() < 0 ||
	    sodium_base642bin(pub, sizeof(pub), argv[a + 2], strlen(argv[a + 2]), NULL, &pub_len,
			      NULL, sodium_base64_VARIANT_ORIGINAL) ||
	    pub_len != 32)
		usage(argv[0]);
	dst.sin_port = htons((uint16_t)port);

	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int buf = 1 << 22;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)) ||
	    connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
		perror("socket");
		return 1;
	}

	wg_cookie_maker_init(&maker, pub);
	for (int i = 0; i < NMSG; i++) {
		randombytes_buf(&msg[i], sizeof(msg[i]));
		msg[i].header = (struct wg_message_header){.type = WG_MSG_HANDSHAKE_INITIATION};
		msg[i].sender_index = htole32((uint32_t)i);
	}
	mac_all(&maker, msg, mono_ns());

	struct mmsghdr out[BURST], in[BURST];
	struct iovec oiov[BURST], iiov[BURST];
	static uint8_t rbuf[BURST][256];
	for (int i = 0; i < BURST; i++) {
		iiov[i] = (struct iovec){.iov_base = rbuf[i], .iov_len = sizeof(rbuf[i])};
		in[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iiov[i], .msg_iovlen = 1}};
	}

	unsigned long long sent = 0, cookies = 0;
	uint64_t t0 = mono_ns(), deadline = t0 + (uint64_t)(secs * 1e9), now = t0;
	unsigned next = 0;
	bool have_cookie = false;
	while (sent < count && now < deadline) {
		int k = 0;
		unsigned long long due = count;
		if (rate > 0) {
			due = (unsigned long long)((double)(now - t0) * 1e-9 * rate);
			if (due <= sent) {
				struct timespec pause = {0, 100000};
				nanosleep(&pause, NULL);
				now = mono_ns();
				continue;
			}
		}
		for (; k < BURST && sent + (unsigned)k < count && sent + (unsigned)k < due; k++) {
			oiov[k] = (struct iovec){.iov_base = &msg[next], .iov_len = sizeof(msg[0])};
			out[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &oiov[k], .msg_iovlen = 1}};
			next = (next + 1) % NMSG;
		}
		int s = sendmmsg(fd, out, (unsigned)k, 0);
		if (s > 0)
			sent += (unsigned)s;
		else if (s < 0 && errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED)
			break;
		if (s < k)
			usleep(200); /* socket buffer full: let it drain */
		int r;
		while ((r = recvmmsg(fd, in, BURST, MSG_DONTWAIT, NULL)) > 0) {
			for (int i = 0; i < r; i++) {
				if (in[i].msg_len != sizeof(struct wg_message_cookie) ||
				    rbuf[i][0] != WG_MSG_HANDSHAKE_COOKIE)
					continue;
				cookies++;
				/* The first valid cookie: MAC2 on everything from now on. The
				 * reply is sealed to the MAC1 of the message it answers
				 * (its receiver index): MAC that one again to match. */
				const struct wg_message_cookie *c = (const void *)rbuf[i];
				uint32_t to = le32toh(c->receiver_index) % NMSG;
				if (!honor || have_cookie)
					continue;
				wg_cookie_add_macs(&maker, &msg[to], sizeof(msg[to]), mono_ns());
				if (!wg_cookie_consume_reply(&maker, c, mono_ns())) {
					have_cookie = true;
					mac_all(&maker, msg, mono_ns());
				}
			}
		}
		now = mono_ns();
	}
	/* Cookie replies still in flight. */
	uint64_t drain = mono_ns() + 500000000ull;
	while (mono_ns() < drain) {
		int r = recvmmsg(fd, in, BURST, MSG_DONTWAIT, NULL);
		if (r <= 0) {
			usleep(10000);
			continue;
		}
		for (int i = 0; i < r; i++)
			cookies += in[i].msg_len == sizeof(struct wg_message_cookie) &&
				   rbuf[i][0] == WG_MSG_HANDSHAKE_COOKIE;
	}
	printf("sent %llu cookies %llu seconds %.2f\n", sent, cookies, (double)(now - t0) / 1e9);
	close(fd);
	return 0;
}
