// SPDX-License-Identifier: MIT
/*
 * meshgate-pcap: a pcap of WireGuard transport-data frames that a running
 * gateway accepts, for replay by a traffic generator (pktgen-dpdk -s, the
 * net_pcap PMD) into the gateway's wan port: the decrypt direction of a
 * benchmark.
 *
 * The keys have to be ones the gateway holds, so the tool first does a real
 * handshake with it, as the WireGuard initiator for a configured peer
 * (Noise from wg/noise.h, MACs and cookies from wg/cookie.h), over a UDP
 * socket. Then it encrypts counters 0..N-1 of one inner IPv4/UDP packet
 * with the new keypair and writes them as Ethernet/IPv4/UDP frames from the
 * address the gateway saw to the gateway's listen port. No EAL and no
 * libpcap: the classic pcap format is 24 bytes of file header and 16 per
 * record.
 *
 * A replay in a loop repeats counters, which the replay window drops unless
 * the peer has benchmark_no_replay; and the gateway rejects the keypair
 * REJECT_AFTER_TIME (180 s) after the handshake.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "addr.h"
#include "cookie.h"
#include "keys.h"
#include "noise.h"
#include "wg_messages.h"

#define ETH_HDR_LEN	14
#define IP4_HDR_LEN	20
#define UDP_HDR_LEN	8
#define INNER_MIN	(IP4_HDR_LEN + UDP_HDR_LEN)
#define INNER_MAX	9000
#define INNER_SPORT	1024
#define INNER_DPORT	9 /* discard */
#define FRAME_MAX	(ETH_HDR_LEN + IP4_HDR_LEN + UDP_HDR_LEN + WG_DATA_OVERHEAD + INNER_MAX + 16)
#define HS_ATTEMPTS	5
#define HS_WAIT_MS	1000
#define PCAP_MAGIC	0xa1b2c3d4u /* microsecond timestamps */
#define PCAP_LINK_ETHER 1
#define DEFAULT_SRC_MAC "02:6d:67:00:00:02"
#define DEFAULT_DST_MAC "02:6d:67:00:00:01"
#define DEFAULT_SIZE	64
#define DEFAULT_COUNT	1024

struct opts {
	const char *peer_key_file, *psk_file, *gateway_key, *out;
	struct sockaddr_in gateway, bind;
	uint8_t src_mac[6], dst_mac[6];
	uint8_t inner_src[4], inner_dst[4];
	unsigned size;
	unsigned long count;
	bool keepalive;
};

struct session {
	struct wg_noise_local local;
	struct wg_noise_remote remote;
	struct wg_cookie_maker maker;
	struct wg_cookie_checker checker; /* MAC1 of the response is keyed to us */
	struct wg_noise_keypair kp;
	struct sockaddr_in self; /* the address and port the gateway sees */
	int fd;
};

struct pcap_file_hdr {
	uint32_t magic;
	uint16_t version_major, version_minor;
	int32_t thiszone;
	uint32_t sigfigs, snaplen, network;
};

struct pcap_rec_hdr {
	uint32_t ts_sec, ts_usec, incl_len, orig_len;
};

_Static_assert(sizeof(struct pcap_file_hdr) == 24, "pcap file header");
_Static_assert(sizeof(struct pcap_rec_hdr) == 16, "pcap record header");

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * WG_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- command line ---- */

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s --peer-key FILE --gateway-key B64 --gateway IP:PORT\n"
		"          --inner-src IP --inner-dst IP --out FILE [options]\n"
		"\n"
		"Handshakes with a running meshgate gateway as the WireGuard initiator for\n"
		"one of its peers, then writes a pcap (Ethernet, libpcap format) of COUNT\n"
		"transport-data frames the gateway accepts: counters 0..COUNT-1, each an\n"
		"inner IPv4/UDP packet (port %d -> %d) encrypted with the new session key,\n"
		"sent from the address the gateway saw to the gateway's address and port.\n"
		"Replay it into the gateway's wan port (pktgen-dpdk -s P:FILE, net_pcap\n"
		"rx_pcap=FILE) to benchmark decryption.\n"
		"\n"
		"  --peer-key FILE     the peer's private key (wg genkey; mode 0600 or 0400)\n"
		"  --psk-file FILE     the peer's preshared key, if it has one\n"
		"  --gateway-key B64   the gateway's public key\n"
		"  --gateway IP:PORT   the gateway's wan address and listen port (IPv4)\n"
		"  --bind IP[:PORT]    local address for the handshake (default: chosen by\n"
		"                      the kernel); the frames carry the one actually used\n"
		"  --src-mac MAC       frame source (default " DEFAULT_SRC_MAC ")\n"
		"  --dst-mac MAC       frame destination: the gateway wan port's MAC\n"
		"                      (default " DEFAULT_DST_MAC ")\n"
		"  --inner-src IP      inner source: inside the peer's allowed_ips\n"
		"  --inner-dst IP      inner destination, behind the gateway\n"
		"  --size BYTES        inner IPv4 packet length, %d..%d (default %d),\n"
		"                      at most the gateway's meshgate.mtu\n"
		"  --count N           frames to write (default %d)\n"
		"  --out FILE          the pcap to write\n"
		"  --keepalive-out     also send one keepalive (counter COUNT), so the\n"
		"                      gateway confirms the session at once and can use\n"
		"                      it to send (the encrypt direction)\n"
		"\n"
		"Replaying the file more than once repeats counters: the gateway drops\n"
		"repeats as replays unless the peer has benchmark_no_replay = true (with\n"
		"testing.allow_benchmark_no_replay = true). The gateway rejects the session\n"
		"180 s (REJECT_AFTER_TIME) after this handshake, so the pcap serves runs\n"
		"shorter than that unless testing.reject_after_time is raised.\n",
		prog, INNER_SPORT, INNER_DPORT, INNER_MIN, INNER_MAX, DEFAULT_SIZE, DEFAULT_COUNT);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 0xff)
			return -EINVAL;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

static int parse_ip4(const char *s, uint8_t out[4])
{
	struct mg_sockaddr a;

	if (mg_addr_parse(s, &a) || a.family != AF_INET)
		return -EINVAL;
	memcpy(out, a.addr, 4);
	return 0;
}

static void to_sin(const struct mg_sockaddr *a, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(a->port);
	memcpy(&sin->sin_addr, a->addr, 4);
}

/* "IP:PORT" or "IP" (any port). */
static int parse_bind(const char *s, struct sockaddr_in *sin)
{
	struct mg_sockaddr a;

	if ((mg_sockaddr_parse(s, &a) && mg_addr_parse(s, &a)) || a.family != AF_INET)
		return -EINVAL;
	to_sin(&a, sin);
	return 0;
}

static int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

enum {
	OPT_PEER_KEY = 256,
	OPT_PSK_FILE,
	OPT_GATEWAY_KEY,
	OPT_GATEWAY,
	OPT_BIND,
	OPT_SRC_MAC,
	OPT_DST_MAC,
	OPT_INNER_SRC,
	OPT_INNER_DST,
	OPT_SIZE,
	OPT_COUNT,
	OPT_OUT,
	OPT_KEEPALIVE,
};

static const struct option long_opts[] = {
    {"peer-key", required_argument, NULL, OPT_PEER_KEY},
    {"psk-file", required_argument, NULL, OPT_PSK_FILE},
    {"gateway-key", required_argument, NULL, OPT_GATEWAY_KEY},
    {"gateway", required_argument, NULL, OPT_GATEWAY},
    {"bind", required_argument, NULL, OPT_BIND},
    {"src-mac", required_argument, NULL, OPT_SRC_MAC},
    {"dst-mac", required_argument, NULL, OPT_DST_MAC},
    {"inner-src", required_argument, NULL, OPT_INNER_SRC},
    {"inner-dst", required_argument, NULL, OPT_INNER_DST},
    {"size", required_argument, NULL, OPT_SIZE},
    {"count", required_argument, NULL, OPT_COUNT},
    {"out", required_argument, NULL, OPT_OUT},
    {"keepalive-out", no_argument, NULL, OPT_KEEPALIVE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(int c)
{
	for (const struct option *lo = long_opts; lo->name; lo++)
		if (lo->val == c)
			return lo->name;
	return "?";
}

/* One option into o; the caller's message quotes the bad value. */
static int apply_opt(struct opts *o, int c, const char *arg)
{
	struct mg_sockaddr sa;
	unsigned long v;

	switch (c) {
	case OPT_PEER_KEY:
		o->peer_key_file = arg;
		return 0;
	case OPT_PSK_FILE:
		o->psk_file = arg;
		return 0;
	case OPT_GATEWAY_KEY:
		o->gateway_key = arg;
		return 0;
	case OPT_GATEWAY:
		if (mg_sockaddr_parse(arg, &sa) || sa.family != AF_INET)
			return -EINVAL;
		to_sin(&sa, &o->gateway);
		return 0;
	case OPT_BIND:
		return parse_bind(arg, &o->bind);
	case OPT_SRC_MAC:
		return parse_mac(arg, o->src_mac);
	case OPT_DST_MAC:
		return parse_mac(arg, o->dst_mac);
	case OPT_INNER_SRC:
		return parse_ip4(arg, o->inner_src);
	case OPT_INNER_DST:
		return parse_ip4(arg, o->inner_dst);
	case OPT_SIZE:
		if (parse_ulong(arg, INNER_MIN, INNER_MAX, &v))
			return -EINVAL;
		o->size = (unsigned)v;
		return 0;
	case OPT_COUNT:
		/* Counters stay far below REJECT_AFTER_MESSAGES; 2^32 frames is plenty. */
		return parse_ulong(arg, 1, 0xffffffffUL, &o->count);
	case OPT_OUT:
		o->out = arg;
		return 0;
	case OPT_KEEPALIVE:
		o->keepalive = true;
		return 0;
	}
	return -EINVAL;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const uint8_t zero[4];
	int c;

	memset(o, 0, sizeof(*o));
	o->bind.sin_family = AF_INET;
	o->size = DEFAULT_SIZE;
	o->count = DEFAULT_COUNT;
	parse_mac(DEFAULT_SRC_MAC, o->src_mac);
	parse_mac(DEFAULT_DST_MAC, o->dst_mac);
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout, argv[0]);
			exit(0);
		}
		if (c == '?' || apply_opt(o, c, optarg)) {
			if (c != '?')
				fprintf(stderr, "%s: --%s: bad value `%s'\n", argv[0], opt_name(c),
					optarg);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument `%s'\n", argv[0], argv[optind]);
		return -EINVAL;
	}
	if (!o->peer_key_file || !o->gateway_key || !o->gateway.sin_port || !o->out ||
	    !memcmp(o->inner_src, zero, 4) || !memcmp(o->inner_dst, zero, 4)) {
		fprintf(stderr,
			"%s: --peer-key, --gateway-key, --gateway, --inner-src, "
			"--inner-dst and --out are required (see --help)\n",
			argv[0]);
		return -EINVAL;
	}
	return 0;
}

/* ---- the handshake ---- */

static int session_init(struct session *s, const struct opts *o)
{
	uint8_t priv[32], gw[32], psk[32];
	char why[512];
	int ret = -EINVAL;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (mg_key_from_base64(o->gateway_key, gw)) {
		fprintf(stderr, "--gateway-key: not a base64 key (44 characters, as printed by "
				"wg pubkey)\n");
		return -EINVAL;
	}
	if (mg_key_load_file(o->peer_key_file, priv, why, sizeof(why)) ||
	    (o->psk_file && mg_key_load_file(o->psk_file, psk, why, sizeof(why)))) {
		fprintf(stderr, "%s\n", why);
		goto out;
	}
	wg_noise_local_init(&s->local, priv);
	if (wg_noise_remote_init(&s->remote, &s->local, gw, o->psk_file ? psk : NULL)) {
		fprintf(stderr, "--gateway-key: unusable public key\n");
		goto out;
	}
	wg_cookie_maker_init(&s->maker, gw);
	wg_cookie_checker_init(&s->checker, s->local.public_key);
	ret = 0;
out:
	sodium_memzero(priv, sizeof(priv));
	sodium_memzero(psk, sizeof(psk));
	return ret;
}

/* A UDP socket connected to the gateway; s->self is the source it uses. */
static int session_connect(struct session *s, const struct opts *o)
{
	socklen_t len = sizeof(s->self);
	int err;

	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (const struct sockaddr *)&o->bind, sizeof(o->bind)) ||
	    connect(s->fd, (const struct sockaddr *)&o->gateway, sizeof(o->gateway)) ||
	    getsockname(s->fd, (struct sockaddr *)&s->self, &len)) {
		err = errno;
		fprintf(stderr, "UDP socket to the gateway: %s\n", strerror(err));
		return -err;
	}
	return 0;
}

static int send_initiation(struct session *s)
{
	struct wg_message_initiation init;
	uint32_t idx;

	do
		idx = randombytes_random();
	while (idx == 0);
	if (wg_noise_create_initiation(&s->local, &s->remote, idx, clock_ns(CLOCK_REALTIME), &init))
		return -EINVAL;
	wg_cookie_add_macs(&s->maker, &init, sizeof(init), clock_ns(CLOCK_MONOTONIC));
	if (send(s->fd, &init, sizeof(init), 0) != (ssize_t)sizeof(init)) {
		perror("send initiation");
		return -errno;
	}
	return 0;
}

/* The cookie's view of the gateway: its IPv4 address then port, network order. */
static void src_bytes(const struct sockaddr_in *a, uint8_t out[6])
{
	memcpy(out, &a->sin_addr, 4);
	memcpy(out + 4, &a->sin_port, 2);
}

/*
 * One message from the gateway for the initiation in flight. Returns 0 when
 * the keypair is derived, -EAGAIN to send a new initiation (a cookie reply
 * arrived, or nothing did), another -errno on a hard error.
 */
static int await_response(struct session *s, const struct opts *o, int ms)
{
	union {
		struct wg_message_response resp;
		struct wg_message_cookie cookie;
		uint8_t raw[256];
	} m;
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)ms * 1000000;
	uint8_t src[6];

	src_bytes(&o->gateway, src);
	while (clock_ns(CLOCK_MONOTONIC) < deadline) {
		int left = (int)((deadline - clock_ns(CLOCK_MONOTONIC)) / 1000000) + 1;
		ssize_t n;

		if (poll(&p, 1, left) != 1)
			continue;
		n = recv(s->fd, &m, sizeof(m), 0);
		if (n == (ssize_t)sizeof(m.cookie) && m.raw[0] == WG_MSG_HANDSHAKE_COOKIE) {
			if (wg_cookie_consume_reply(&s->maker, &m.cookie,
						    clock_ns(CLOCK_MONOTONIC)))
				continue;
			fprintf(stderr, "gateway is under load: got a cookie, retrying\n");
			return -EAGAIN;
		}
		if (n != (ssize_t)sizeof(m.resp) || m.raw[0] != WG_MSG_HANDSHAKE_RESPONSE)
			continue;
		if (wg_cookie_validate(&s->checker, &m.resp, sizeof(m.resp), src, sizeof(src),
				       clock_ns(CLOCK_MONOTONIC)) == WG_COOKIE_MAC_INVALID ||
		    wg_noise_consume_response(&s->local, &s->remote, &m.resp))
			continue; /* not for this handshake, or not from the gateway */
		return wg_noise_derive_keypair(&s->remote, &s->kp);
	}
	return -EAGAIN;
}

static int handshake(struct session *s, const struct opts *o)
{
	for (int i = 0; i < HS_ATTEMPTS; i++) {
		int ret = send_initiation(s);

		if (!ret)
			ret = await_response(s, o, HS_WAIT_MS);
		if (ret != -EAGAIN)
			return ret;
	}
	fprintf(stderr,
		"no handshake response from the gateway after %d attempts: is this peer "
		"configured there, and the key pair right?\n",
		HS_ATTEMPTS);
	return -ETIMEDOUT;
}

/* ---- packets ---- */

static uint32_t csum_add(uint32_t sum, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	if (len & 1)
		sum += (uint32_t)b[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* IPv4 header (no options, DF) + UDP header with checksums; payload in place. */
static void ip4_udp(uint8_t *ip, size_t total, uint16_t id, const uint8_t src[4],
		    const uint8_t dst[4], uint16_t sport, uint16_t dport)
{
	uint8_t *udp = ip + IP4_HDR_LEN, pseudo[12];
	size_t ulen = total - IP4_HDR_LEN;
	uint16_t sum;

	memset(ip, 0, IP4_HDR_LEN);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)total);
	put16(ip + 4, id);
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	put16(ip + 10, csum_fold(csum_add(0, ip, IP4_HDR_LEN)));

	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)ulen);
	put16(udp + 6, 0);
	memcpy(pseudo, src, 4);
	memcpy(pseudo + 4, dst, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_UDP;
	put16(pseudo + 10, (uint16_t)ulen);
	sum = csum_fold(csum_add(csum_add(0, pseudo, sizeof(pseudo)), udp, ulen));
	put16(udp + 6, sum ? sum : 0xffff);
}

/* WireGuard pads the plaintext to a multiple of 16, at most to the tunnel
 * MTU, which we do not know; the gateway takes the inner length from the IP
 * header, so padding past the MTU still decrypts and forwards the same. */
static size_t padded(size_t len)
{
	return (len + WG_PADDING_MULTIPLE - 1) & ~(size_t)(WG_PADDING_MULTIPLE - 1);
}

/* The transport-data message for counter: header, ciphertext of plain, tag. */
static size_t seal(const struct session *s, uint64_t counter, const uint8_t *plain, size_t len,
		   uint8_t *out)
{
	struct wg_message_data *d = (struct wg_message_data *)out;
	uint8_t nonce[12] = {0};

	memset(d, 0, sizeof(*d));
	d->header.type = WG_MSG_DATA;
	d->key_idx = htole32(s->kp.remote_index);
	d->counter = htole64(counter);
	memcpy(nonce + 4, &d->counter, 8);
	crypto_aead_chacha20poly1305_ietf_encrypt(d->encrypted_data, NULL, plain, len, NULL, 0,
						  NULL, nonce, s->kp.send_key);
	return sizeof(*d) + len + WG_AUTHTAG_LEN;
}

/* A whole frame for counter; returns its length. */
static size_t build_frame(const struct session *s, const struct opts *o, uint64_t counter,
			  uint8_t *frame)
{
	uint8_t plain[INNER_MAX + WG_PADDING_MULTIPLE] = {0};
	uint8_t *ip = frame + ETH_HDR_LEN, *wg = ip + IP4_HDR_LEN + UDP_HDR_LEN;
	size_t plen = padded(o->size), wlen;

	ip4_udp(plain, o->size, (uint16_t)counter, o->inner_src, o->inner_dst, INNER_SPORT,
		INNER_DPORT);
	wlen = seal(s, counter, plain, plen, wg);

	memcpy(frame, o->dst_mac, 6);
	memcpy(frame + 6, o->src_mac, 6);
	put16(frame + 12, 0x0800);
	ip4_udp(ip, IP4_HDR_LEN + UDP_HDR_LEN + wlen, (uint16_t)counter,
		(const uint8_t *)&s->self.sin_addr, (const uint8_t *)&o->gateway.sin_addr,
		ntohs(s->self.sin_port), ntohs(o->gateway.sin_port));
	return ETH_HDR_LEN + IP4_HDR_LEN + UDP_HDR_LEN + wlen;
}

static int send_keepalive(const struct session *s, uint64_t counter)
{
	uint8_t msg[WG_DATA_OVERHEAD];
	size_t len = seal(s, counter, NULL, 0, msg);

	if (send(s->fd, msg, len, 0) != (ssize_t)len) {
		perror("send keepalive");
		return -errno;
	}
	return 0;
}

/* ---- the pcap ---- */

static int write_pcap(const struct session *s, const struct opts *o, size_t *frame_len)
{
	struct pcap_file_hdr fh = {.magic = PCAP_MAGIC,
				   .version_major = 2,
				   .version_minor = 4,
				   .snaplen = 65535,
				   .network = PCAP_LINK_ETHER};
	static uint8_t frame[FRAME_MAX];
	uint64_t t0 = clock_ns(CLOCK_REALTIME) / 1000;
	FILE *f = fopen(o->out, "we");
	bool ok;

	if (!f) {
		perror(o->out);
		return -errno;
	}
	ok = fwrite(&fh, sizeof(fh), 1, f) == 1;
	for (unsigned long i = 0; ok && i < o->count; i++) {
		uint64_t us = t0 + i; /* one microsecond apart */
		size_t len = build_frame(s, o, i, frame);
		struct pcap_rec_hdr rh = {.ts_sec = (uint32_t)(us / 1000000),
					  .ts_usec = (uint32_t)(us % 1000000),
					  .incl_len = (uint32_t)len,
					  .orig_len = (uint32_t)len};

		ok = fwrite(&rh, sizeof(rh), 1, f) == 1 && fwrite(frame, len, 1, f) == 1;
		*frame_len = len;
	}
	if (fclose(f) || !ok) {
		perror(o->out);
		return -EIO;
	}
	return 0;
}

static void report(const struct session *s, const struct opts *o, size_t frame_len)
{
	char self[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &s->self.sin_addr, self, sizeof(self));
	inet_ntop(AF_INET, &o->gateway.sin_addr, gw, sizeof(gw));
	printf("handshake: %s:%u -> %s:%u, receiver index 0x%08x\n", self, ntohs(s->self.sin_port),
	       gw, ntohs(o->gateway.sin_port), s->kp.remote_index);
	printf("wrote %s: %lu frames of %zu bytes (inner IPv4 %u bytes), counters 0..%lu\n", o->out,
	       o->count, frame_len, o->size, o->count - 1);
	if (o->keepalive)
		printf("sent a keepalive (counter %lu) to confirm the session\n", o->count);
	printf("valid until the gateway's reject_after_time (default 180 s) from now; "
	       "looped replay needs benchmark_no_replay on the peer\n");
}

int main(int argc, char **argv)
{
	struct opts o;
	struct session s;
	size_t frame_len = 0;
	int ret;

	if (sodium_init() < 0) {
		fprintf(stderr, "libsodium failed to initialise\n");
		return 1;
	}
	if (parse_args(argc, argv, &o))
		return 2;
	ret = session_init(&s, &o);
	if (!ret)
		ret = session_connect(&s, &o);
	if (!ret)
		ret = handshake(&s, &o);
	if (!ret && o.keepalive)
		ret = send_keepalive(&s, o.count);
	if (!ret)
		ret = write_pcap(&s, &o, &frame_len);
	if (!ret)
		report(&s, &o, frame_len);
	if (s.fd >= 0)
		close(s.fd);
	wg_noise_remote_clear(&s.remote);
	wg_noise_local_clear(&s.local);
	sodium_memzero(&s, sizeof(s));
	return ret ? 1 : 0;
}
