// SPDX-License-Identifier: MIT
/*
 * meshgate-hsload: a load of real WireGuard handshakes for the handshake
 * benchmark, aimed only at an address the caller chooses (the benchmark
 * uses its own namespaces). It plays N initiators whose keys the gateway
 * knows, each sending well-formed initiations (fresh ephemeral key,
 * increasing timestamp, valid MAC1), paced at a given rate, and counts the
 * responses and cookie replies that come back. A response means the
 * responder did the whole handshake (four X25519s less the precomputed
 * one) and installed the session; a sample of them is checked by
 * completing the handshake on our side, with matching keys.
 *
 *   meshgate-hsload config --peers N --seed HEX [--from K] [--format wg|meshgate]
 *       prints initiators K..N-1's public keys as `wg addconf` [Peer]
 *       sections, or as the entries of a meshgate config's peers list
 *   meshgate-hsload run --peers N --seed HEX --rate R[,R...] --seconds S
 *       [--cpu-pid PID] DST_IP PORT RESPONDER_PUBKEY_B64
 *       one step per rate: the initiations of the step are made first (not
 *       timed, nothing sent), then sent at R per second for S seconds; then
 *       0.5 s for late replies. One JSON line per step: offered and sent
 *       rates, responses and cookie replies per second, the sampled
 *       responses that complete, the send window (CLOCK_REALTIME) and, with
 *       --cpu-pid, the CPU seconds process PID used in the window.
 *
 * Initiator i's private key is BLAKE2s(seed || i). Initiations go to the
 * initiators in a spread order (the k-th to k * 2654435761 mod N, a
 * permutation since that prime is larger than any N), so a short run
 * touches the whole range and an initiator sends again only after N / R
 * seconds: well over WireGuard's 1/50 s per-peer flood limit when N is
 * large enough (the tool refuses N < R / 25).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <blake2.h>
#include <sodium.h>

#include "cookie.h"
#include "noise.h"
#include "wg_messages.h"

#define MAX_PEERS  1000000
#define MAX_STEPS  16
#define BURST	   64
#define SAMPLE_ONE 32 /* every SAMPLE_ONE-th initiation's response is checked */

struct initiator {
	struct wg_noise_local local;
	struct wg_noise_remote remote;
	uint64_t realtime_ns; /* of its next timestamp */
};

struct sample {
	uint32_t peer;
	struct wg_noise_remote remote; /* the initiator's state after sending it */
	struct wg_message_response resp;
	bool answered;
};

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: meshgate-hsload config --peers N --seed HEX [--from K] [--format wg|meshgate]\n"
	    "       meshgate-hsload run --peers N --seed HEX --rate R[,R...] --seconds S\n"
	    "                       [--cpu-pid PID] DST_IP PORT RESPONDER_PUBKEY_B64\n");
	exit(2);
}

static void private_key(const uint8_t seed[32], uint32_t i, uint8_t out[32])
{
	uint8_t in[36];

	memcpy(in, seed, 32);
	memcpy(in + 32, &i, 4);
	blake2s(out, in, NULL, 32, sizeof(in), 0);
}

/* utime + stime of a process, seconds; -1 if it cannot be read. */
static double cpu_seconds(long pid)
{
	char path[64], buf[1024];
	unsigned long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* Fields 14 and 15, after the ")" that ends the command name. */
	char *p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int parse_rates(const char *s, unsigned long *rate, int *n)
{
	char *end;

	*n = 0;
	for (;;) {
		unsigned long r = strtoul(s, &end, 10);
		if (end == s || r == 0 || r > 10000000 || *n == MAX_STEPS)
			return -1;
		rate[(*n)++] = r;
		if (*end == 0)
			return 0;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}

struct step_result {
	uint64_t sent, responses, cookies, other, sampled, completed;
	double seconds, cpu;
	uint64_t t0_real, t1_real;
};

/* The initiations of one step, MACs included. Indices: step << 24 | j. */
static int make_step(struct initiator *ini, uint32_t npeers, uint32_t *next_peer,
		     struct wg_cookie_maker *maker, uint32_t step, uint64_t count,
		     struct wg_message_initiation *msg, struct sample *sample, uint64_t *nsample)
{
	*nsample = 0;
	for (uint64_t j = 0; j < count; j++) {
		/* Initiators in a spread order (a multiplicative permutation):
		 * a short run still touches the whole range. */
		uint32_t p = (uint32_t)((uint64_t)(*next_peer)++ * 2654435761u % npeers);
		struct initiator *x = &ini[p];

		/* TAI64N keeps 2^24 ns of precision: stay clear of it. */
		x->realtime_ns += 50 * 1000000ull;
		if (wg_noise_create_initiation(&x->local, &x->remote, step << 24 | (uint32_t)j,
					       x->realtime_ns, &msg[j]))
			return -1;
		wg_cookie_add_macs(maker, &msg[j], sizeof(msg[j]), now_ns(CLOCK_MONOTONIC));
		if (j % SAMPLE_ONE == 0) {
			struct sample *s = &sample[(*nsample)++];
			s->peer = p;
			s->remote = x->remote;
			s->answered = false;
		}
	}
	return 0;
}

static void take_reply(const uint8_t *buf, ssize_t len, uint32_t step, struct step_result *r,
		       struct sample *sample, uint64_t nsample)
{
	if (len == (ssize_t)sizeof(struct wg_message_response) &&
	    buf[0] == WG_MSG_HANDSHAKE_RESPONSE) {
		const struct wg_message_response *resp = (const void *)buf;
		uint32_t idx = le32toh(resp->receiver_index);
		r->responses++;
		if (idx >> 24 != step)
			return;
		uint64_t j = idx & 0xffffff;
		if (j % SAMPLE_ONE == 0 && j / SAMPLE_ONE < nsample) {
			struct sample *s = &sample[j / SAMPLE_ONE];
			s->resp = *resp;
			s->answered = true;
		}
	} else if (len == (ssize_t)sizeof(struct wg_message_cookie) &&
		   buf[0] == WG_MSG_HANDSHAKE_COOKIE) {
		r->cookies++;
	} else {
		r->other++;
	}
}

static void drain_replies(int fd, uint32_t step, struct step_result *r, struct sample *sample,
			  uint64_t nsample)
{
	static uint8_t buf[BURST][256];
	struct mmsghdr in[BURST];
	struct iovec iov[BURST];
	int k;

	for (int i = 0; i < BURST; i++) {
		iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = sizeof(buf[i])};
		in[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
	}
	while ((k = recvmmsg(fd, in, BURST, MSG_DONTWAIT, NULL)) > 0)
		for (int i = 0; i < k; i++)
			take_reply(buf[i], in[i].msg_len, step, r, sample, nsample);
}

/* Sends count initiations at rate per second, reading replies as they come. */
static void send_step(int fd, const struct wg_message_initiation *msg, uint64_t count,
		      unsigned long rate, uint32_t step, long cpu_pid, struct step_result *r,
		      struct sample *sample, uint64_t nsample)
{
	struct mmsghdr out[BURST];
	struct iovec iov[BURST];
	double cpu0 = cpu_pid > 0 ? cpu_seconds(cpu_pid) : -1;
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);

	r->t0_real = now_ns(CLOCK_REALTIME);
	while (r->sent < count) {
		uint64_t due =
		    (uint64_t)((double)(now_ns(CLOCK_MONOTONIC) - t0) * 1e-9 * (double)rate);
		if (due > count)
			due = count;
		while (r->sent < due) {
			int k = 0;
			for (; k < BURST && r->sent + (uint64_t)k < due; k++) {
				iov[k] =
				    (struct iovec){.iov_base = (void *)&msg[r->sent + (uint64_t)k],
						   .iov_len = sizeof(msg[0])};
				out[k] = (struct mmsghdr){
				    .msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
			}
			int s = sendmmsg(fd, out, (unsigned)k, 0);
			if (s <= 0)
				break; /* socket buffer full: the next round */
			r->sent += (uint64_t)s;
		}
		drain_replies(fd, step, r, sample, nsample);
		struct timespec pause = {0, 100000};
		nanosleep(&pause, NULL);
	}
	uint64_t t1 = now_ns(CLOCK_MONOTONIC);
	r->t1_real = now_ns(CLOCK_REALTIME);
	r->seconds = (double)(t1 - t0) * 1e-9;
	/* Late replies: the window's CPU is the sending window's plus this. */
	while (now_ns(CLOCK_MONOTONIC) < t1 + 500000000ull) {
		drain_replies(fd, step, r, sample, nsample);
		struct timespec pause = {0, 1000000};
		nanosleep(&pause, NULL);
	}
	r->cpu = cpu0 >= 0 ? cpu_seconds(cpu_pid) - cpu0 : -1;
}

/* Completes the sampled handshakes on our side: each must give a keypair. */
static void check_samples(struct initiator *ini, struct sample *sample, uint64_t nsample,
			  struct step_result *r)
{
	for (uint64_t i = 0; i < nsample; i++) {
		struct sample *s = &sample[i];
		struct wg_noise_keypair kp;

		if (!s->answered)
			continue;
		r->sampled++;
		if (!wg_noise_consume_response(&ini[s->peer].local, &s->remote, &s->resp) &&
		    !wg_noise_derive_keypair(&s->remote, &kp))
			r->completed++;
		sodium_memzero(&kp, sizeof(kp));
		wg_noise_remote_clear(&s->remote);
	}
}

int main(int argc, char **argv)
{
	unsigned long rate[MAX_STEPS], npeers = 0;
	int nrates = 0, a = 2;
	double seconds = 0;
	long cpu_pid = 0;
	unsigned long from = 0;
	bool meshgate_format = false;
	uint8_t seed[32] = {0};
	bool have_seed = false;

	if (argc < 2 || (strcmp(argv[1], "config") && strcmp(argv[1], "run")))
		usage();
	bool run = !strcmp(argv[1], "run");
	for (; a < argc && !strncmp(argv[a], "--", 2); a += 2) {
		if (a + 1 >= argc)
			usage();
		const char *v = argv[a + 1];
		if (!strcmp(argv[a], "--peers"))
			npeers = strtoul(v, NULL, 10);
		else if (!strcmp(argv[a], "--seed")) {
			size_t n = 0;
			have_seed =
			    sodium_hex2bin(seed, sizeof(seed), v, strlen(v), NULL, &n, NULL) == 0 &&
			    n == sizeof(seed);
		} else if (!strcmp(argv[a], "--rate") && run) {
			if (parse_rates(v, rate, &nrates))
				usage();
		} else if (!strcmp(argv[a], "--seconds") && run)
			seconds = strtod(v, NULL);
		else if (!strcmp(argv[a], "--cpu-pid") && run)
			cpu_pid = strtol(v, NULL, 10);
		else if (!strcmp(argv[a], "--from") && !run)
			from = strtoul(v, NULL, 10);
		else if (!strcmp(argv[a], "--format") && !run &&
			 (!strcmp(v, "wg") || !strcmp(v, "meshgate")))
			meshgate_format = !strcmp(v, "meshgate");
		else
			usage();
	}
	if (sodium_init() < 0 || !have_seed || npeers < 1 || npeers > MAX_PEERS || from > npeers)
		usage();

	struct initiator *ini = calloc(npeers, sizeof(*ini));
	if (!ini) {
		perror("calloc");
		return 1;
	}
	if (!run) {
		char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
		for (uint32_t i = (uint32_t)from; i < npeers; i++) {
			uint8_t priv[32];
			private_key(seed, i, priv);
			wg_noise_local_init(&ini[0].local, priv);
			sodium_memzero(priv, sizeof(priv));
			sodium_bin2base64(b64, sizeof(b64), ini[0].local.public_key, 32,
					  sodium_base64_VARIANT_ORIGINAL);
			if (meshgate_format) /* list entries: comma between, none after */
				printf("%s{ public_key = \"%s\"; }", i > from ? ",\n" : "", b64);
			else
				printf("[Peer]\nPublicKey = %s\n\n", b64);
		}
		if (meshgate_format)
			printf("\n");
		wg_noise_local_clear(&ini[0].local);
		free(ini);
		return 0;
	}

	uint8_t gw_pub[32];
	size_t gw_len;
	struct sockaddr_in dst = {.sin_family = AF_INET};
	char *end;
	if (argc - a != 3 || !(seconds > 0 && seconds <= 60) ||
	    inet_pton(AF_INET, argv[a], &dst.sin_addr) != 1 ||
	    sodium_base642bin(gw_pub, sizeof(gw_pub), argv[a + 2], strlen(argv[a + 2]), NULL,
			      &gw_len, NULL, sodium_base64_VARIANT_ORIGINAL) ||
	    gw_len != 32)
		usage();
	long port = strtol(argv[a + 1], &end, 10);
	if (*end || port < 1 || port > 65535)
		usage();
	dst.sin_port = htons((uint16_t)port);
	for (int s = 0; s < nrates; s++)
		if (npeers * WG_INITIATIONS_PER_SECOND / 2 < rate[s]) {
			fprintf(stderr,
				"hsload: %lu peers are too few for %lu/s (each may send "
				"at most %d/s): use --peers %lu or more\n",
				npeers, rate[s], WG_INITIATIONS_PER_SECOND / 2, rate[s] / 25);
			return 2;
		}

	uint64_t t_real = now_ns(CLOCK_REALTIME);
	for (uint32_t i = 0; i < npeers; i++) {
		uint8_t priv[32];
		private_key(seed, i, priv);
		wg_noise_local_init(&ini[i].local, priv);
		sodium_memzero(priv, sizeof(priv));
		if (wg_noise_remote_init(&ini[i].remote, &ini[i].local, gw_pub, NULL)) {
			fprintf(stderr, "hsload: bad responder key\n");
			return 1;
		}
		ini[i].realtime_ns = t_real;
	}
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int bufsz = 1 << 23;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz)) ||
	    connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
		perror("socket");
		return 1;
	}
	struct wg_cookie_maker maker;
	wg_cookie_maker_init(&maker, gw_pub);

	uint32_t next_peer = 0;
	for (int s = 0; s < nrates; s++) {
		uint64_t count = (uint64_t)((double)rate[s] * seconds);
		if (count > 0xffffff)
			count = 0xffffff;
		struct wg_message_initiation *msg = calloc(count, sizeof(*msg));
		struct sample *sample = calloc(count / SAMPLE_ONE + 1, sizeof(*sample));
		struct step_result r = {0};
		uint64_t nsample;
		if (!msg || !sample) {
			perror("calloc");
			return 1;
		}
		if (make_step(ini, (uint32_t)npeers, &next_peer, &maker, (uint32_t)s + 1, count,
			      msg, sample, &nsample)) {
			fprintf(stderr, "hsload: making initiations failed\n");
			return 1;
		}
		drain_replies(fd, (uint32_t)s + 1, &r, sample, 0); /* last step's stragglers */
		r = (struct step_result){0};
		send_step(fd, msg, count, rate[s], (uint32_t)s + 1, cpu_pid, &r, sample, nsample);
		check_samples(ini, sample, nsample, &r);
		printf("{\"rate\": %lu, \"sent\": %" PRIu64
		       ", \"seconds\": %.3f, \"sent_per_s\": %.0f, "
		       "\"responses\": %" PRIu64
		       ", \"responses_per_s\": %.0f, \"cookies\": %" PRIu64
		       ", \"cookies_per_s\": %.0f, \"other\": %" PRIu64 ", \"sampled\": %" PRIu64
		       ", \"sampled_completed\": %" PRIu64 ", \"cpu_seconds\": %.2f, "
		       "\"t0\": %.3f, \"t1\": %.3f}\n",
		       rate[s], r.sent, r.seconds, (double)r.sent / r.seconds, r.responses,
		       (double)r.responses / r.seconds, r.cookies, (double)r.cookies / r.seconds,
		       r.other, r.sampled, r.completed, r.cpu, (double)r.t0_real * 1e-9,
		       (double)r.t1_real * 1e-9);
		fflush(stdout);
		sodium_memzero(msg, count * sizeof(*msg));
		free(msg);
		free(sample);
	}
	for (uint32_t i = 0; i < npeers; i++) {
		wg_noise_local_clear(&ini[i].local);
		wg_noise_remote_clear(&ini[i].remote);
	}
	free(ini);
	close(fd);
	return 0;
}
