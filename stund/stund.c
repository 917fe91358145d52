/* SPDX-License-Identifier: MIT */
/*
 * meshgate-stund: a standalone STUN server. It answers Binding requests
 * (RFC 8489) on UDP with the source address and port it saw, which is all
 * a node behind NAT needs to learn its public endpoint. Everything else is
 * dropped without an answer and counted under its reason.
 *
 * One thread, ppoll() over the listening sockets; each wakeup reads at most
 * one batch per readable socket (recvmmsg) and answers it with one sendmmsg,
 * so a flood on one socket cannot starve the others. Counters go to stderr
 * on SIGUSR1 and at exit (SIGTERM, SIGINT).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "signals.h"
#include "stun.h"

#define PROG	   "meshgate-stund"
#define MAX_LISTEN 16
#define BATCH	   32
/* Larger datagrams are truncated to this, and then parse as short. */
#define RX_LEN 1500

/* Room for either family's packet-info control message. */
union pktinfo_ctl {
	char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
	struct cmsghdr align;
};

struct counters {
	uint64_t answered;
	uint64_t unsent; /* answers sendmmsg refused (e.g. a full socket buffer) */
	uint64_t dropped[MG_STUN_ERR_COUNT];
};

struct listener {
	int fd;
	struct mg_sockaddr addr;
	bool pktinfo; /* bound to a wildcard address: answer from the address asked */
};

/* Buffers for one batch: received messages, then the answers to them. */
struct batch {
	struct mmsghdr rx[BATCH], tx[BATCH];
	struct iovec rx_iov[BATCH], tx_iov[BATCH];
	struct sockaddr_storage src[BATCH];
	union pktinfo_ctl rx_ctl[BATCH], tx_ctl[BATCH];
	uint8_t rx_buf[BATCH][RX_LEN];
	uint8_t tx_buf[BATCH][MG_STUN_MAX_BUILT];
};

struct stund {
	struct listener ls[MAX_LISTEN];
	struct pollfd pfd[MAX_LISTEN];
	int n_ls;
	struct counters c;
	struct batch batch;
};

/* Counter names for the stderr line, one word each (mg_stun_strerror's are phrases). */
static const char *const drop_names[MG_STUN_ERR_COUNT] = {
    [MG_STUN_ERR_SHORT] = "short",
    [MG_STUN_ERR_NOT_STUN] = "not_stun",
    [MG_STUN_ERR_TYPE] = "type",
    [MG_STUN_ERR_FINGERPRINT] = "fingerprint",
    [MG_STUN_ERR_UNKNOWN_ATTR] = "unknown_attr",
    [MG_STUN_ERR_NO_ADDRESS] = "no_address",
    [MG_STUN_ERR_BAD_ADDRESS] = "bad_address",
};

/* Set by the signal handlers, the only state outside struct stund. */
static volatile sig_atomic_t stop, dump;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump = 1;
	else
		stop = 1;
}

/* "stund: answered N, dropped: short N, ..., unsent N" as one write. */
static void print_counters(const struct counters *c)
{
	char line[512];
	int n;

	n = snprintf(line, sizeof(line), "stund: answered %" PRIu64 ", dropped:", c->answered);
	for (int e = MG_STUN_OK + 1; e < MG_STUN_ERR_COUNT; e++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s %s %" PRIu64,
			      e == MG_STUN_OK + 1 ? "" : ",", drop_names[e], c->dropped[e]);
	snprintf(line + n, sizeof(line) - (size_t)n, ", unsent %" PRIu64 "\n", c->unsent);
	fputs(line, stderr);
	fflush(stderr);
}

static bool is_wildcard(const struct mg_sockaddr *a)
{
	static const uint8_t zero[16];

	return !memcmp(a->addr, zero, a->family == AF_INET ? 4 : 16);
}

/* A UDP socket bound to *a; -1 with errno on failure. */
static int open_listener(const struct mg_sockaddr *a, bool pktinfo)
{
	struct sockaddr_storage ss;
	socklen_t len = mg_sockaddr_to_sys(a, &ss);
	int one = 1, fd, err;

	fd = socket(a->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (a->family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (pktinfo && a->family == AF_INET &&
	    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
		goto fail;
	if (pktinfo && a->family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/*
 * Add a listener. A failure is fatal (returns -1), except that the default
 * IPv6 listener is skipped on a host without IPv6.
 */
static int add_listener(struct stund *s, const struct mg_sockaddr *a, bool is_default)
{
	char buf[MG_SOCKADDR_STRLEN];
	struct listener *l = &s->ls[s->n_ls];

	mg_sockaddr_fmt(a, buf, sizeof(buf));
	l->addr = *a;
	l->pktinfo = is_wildcard(a);
	l->fd = open_listener(a, l->pktinfo);
	if (l->fd < 0) {
		if (is_default && a->family == AF_INET6 && errno == EAFNOSUPPORT) {
			mg_log(LOG_WARNING, "no IPv6 on this host: not listening on %s", buf);
			return 0;
		}
		mg_log(LOG_ERR, "cannot listen on %s: %s", buf, strerror(errno));
		return -1;
	}
	s->pfd[s->n_ls] = (struct pollfd){.fd = l->fd, .events = POLLIN};
	s->n_ls++;
	mg_log(LOG_INFO, "listening on %s", buf);
	return 0;
}

/*
 * Answer from the address the request went to: on a wildcard socket the
 * kernel would otherwise pick a source by route, which a NAT in front of a
 * multi-homed client would not match to its mapping.
 */
static socklen_t reply_pktinfo(struct msghdr *rx, union pktinfo_ctl *ctl)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(rx); c; c = CMSG_NXTHDR(rx, c)) {
		struct cmsghdr *out = &ctl->align;

		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			pi.ipi_ifindex = 0; /* ipi_spec_dst is the local address */
			*out = (struct cmsghdr){.cmsg_level = IPPROTO_IP,
						.cmsg_type = IP_PKTINFO,
						.cmsg_len = CMSG_LEN(sizeof(pi))};
			memcpy(CMSG_DATA(out), &pi, sizeof(pi));
			return CMSG_SPACE(sizeof(pi));
		}
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			if (IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr))
				return 0;
			/* The interface matters only for a link-local source. */
			if (!IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
				pi.ipi6_ifindex = 0;
			*out = (struct cmsghdr){.cmsg_level = IPPROTO_IPV6,
						.cmsg_type = IPV6_PKTINFO,
						.cmsg_len = CMSG_LEN(sizeof(pi))};
			memcpy(CMSG_DATA(out), &pi, sizeof(pi));
			return CMSG_SPACE(sizeof(pi));
		}
	}
	return 0;
}

static void batch_prepare_rx(struct batch *b)
{
	for (int i = 0; i < BATCH; i++) {
		b->rx_iov[i] = (struct iovec){.iov_base = b->rx_buf[i], .iov_len = RX_LEN};
		b->rx[i].msg_hdr = (struct msghdr){
		    .msg_name = &b->src[i],
		    .msg_namelen = sizeof(b->src[i]),
		    .msg_iov = &b->rx_iov[i],
		    .msg_iovlen = 1,
		    .msg_control = &b->rx_ctl[i],
		    .msg_controllen = sizeof(b->rx_ctl[i]),
		};
	}
}

static void log_drop(const struct mg_sockaddr *from, enum mg_stun_err e)
{
	char buf[MG_SOCKADDR_STRLEN];

	mg_log(LOG_DEBUG, "dropped %s: %s", mg_sockaddr_fmt(from, buf, sizeof(buf)),
	       mg_stun_strerror(e));
}

/*
 * The answer to received message i, queued as tx[*ntx]; or the reason it
 * gets none, counted.
 */
static void answer(struct stund *s, struct batch *b, int i, int *ntx)
{
	uint8_t txid[MG_STUN_TXID_LEN];
	struct mg_sockaddr from;
	struct msghdr *rx = &b->rx[i].msg_hdr;
	enum mg_stun_err e;
	size_t n;
	int t = *ntx;

	if (!mg_sockaddr_from_sys(&b->src[i], &from))
		return;
	e = mg_stun_parse_request(b->rx_buf[i], b->rx[i].msg_len, txid);
	if (e != MG_STUN_OK) {
		s->c.dropped[e]++;
		log_drop(&from, e);
		return;
	}
	n = mg_stun_build_response(b->tx_buf[t], sizeof(b->tx_buf[t]), txid, &from);
	b->tx_iov[t] = (struct iovec){.iov_base = b->tx_buf[t], .iov_len = n};
	b->tx[t].msg_hdr = (struct msghdr){
	    .msg_name = &b->src[i],
	    .msg_namelen = rx->msg_namelen,
	    .msg_iov = &b->tx_iov[t],
	    .msg_iovlen = 1,
	    .msg_control = &b->tx_ctl[t],
	};
	b->tx[t].msg_hdr.msg_controllen = reply_pktinfo(rx, &b->tx_ctl[t]);
	if (!b->tx[t].msg_hdr.msg_controllen)
		b->tx[t].msg_hdr.msg_control = NULL;
	(*ntx)++;
}

/* Send tx[0..ntx): a message the kernel refuses is counted and skipped. */
static void send_answers(struct stund *s, struct listener *l, struct batch *b, int ntx)
{
	int done = 0;

	while (done < ntx) {
		int r = sendmmsg(l->fd, b->tx + done, (unsigned)(ntx - done), MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			mg_log(LOG_DEBUG, "sendmmsg: %s", strerror(errno));
			s->c.unsent++;
			done++;
		} else {
			s->c.answered += (uint64_t)r;
			done += r;
		}
	}
}

/* One batch from a readable socket. */
static void serve(struct stund *s, struct listener *l, struct batch *b)
{
	int n, ntx = 0;

	batch_prepare_rx(b);
	n = recvmmsg(l->fd, b->rx, BATCH, MSG_DONTWAIT, NULL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			mg_log(LOG_WARNING, "recvmmsg: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++)
		answer(s, b, i, &ntx);
	send_answers(s, l, b, ntx);
}

/*
 * Signals are blocked except inside ppoll, so a SIGTERM between the check
 * of `stop` and the wait cannot be lost.
 */
static int run(struct stund *s, const sigset_t *wait_mask)
{
	while (!stop) {
		if (dump) {
			dump = 0;
			print_counters(&s->c);
		}
		if (ppoll(s->pfd, (nfds_t)s->n_ls, NULL, wait_mask) < 0) {
			if (errno == EINTR)
				continue;
			mg_log(LOG_ERR, "ppoll: %s", strerror(errno));
			return -1;
		}
		for (int i = 0; i < s->n_ls; i++) {
			if (s->pfd[i].revents & POLLIN)
				serve(s, &s->ls[i], &s->batch);
			else if (s->pfd[i].revents & (POLLERR | POLLNVAL))
				mg_log(LOG_WARNING, "socket error on listener %d", i);
		}
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--listen ADDR:PORT]... [--verbose]\n"
		   "  -l, --listen ADDR:PORT  UDP address to answer on, e.g. 0.0.0.0:3478 or\n"
		   "                          [::]:3478; repeatable (default: both of those)\n"
		   "  -v, --verbose           log every dropped message\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"verbose", no_argument, NULL, 'v'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	static struct stund srv;
	struct mg_sockaddr addrs[MAX_LISTEN];
	int n_listen = 0, o, ret;
	bool verbose = false;
	sigset_t wait_mask;

	while ((o = getopt_long(argc, argv, "l:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			if (n_listen == MAX_LISTEN) {
				fprintf(stderr, PROG ": at most %d --listen addresses\n",
					MAX_LISTEN);
				return 1;
			}
			if (mg_sockaddr_parse(optarg, &addrs[n_listen]) < 0) {
				fprintf(stderr,
					PROG ": bad --listen address `%s' (want ADDR:PORT or "
					     "[V6ADDR]:PORT, port 1-65535)\n",
					optarg);
				return 1;
			}
			n_listen++;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument `%s'\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	mg_log_init(PROG, verbose ? LOG_DEBUG : LOG_INFO);

	if (n_listen == 0) {
		/* 0.0.0.0:3478 and [::]:3478 */
		addrs[0] = (struct mg_sockaddr){.family = AF_INET, .port = MG_STUN_PORT};
		addrs[1] = (struct mg_sockaddr){.family = AF_INET6, .port = MG_STUN_PORT};
	}
	for (int i = 0; i < (n_listen ? n_listen : 2); i++)
		if (add_listener(&srv, &addrs[i], n_listen == 0) < 0)
			return 1;
	if (srv.n_ls == 0) {
		mg_log(LOG_ERR, "no address to listen on");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	mg_signals_setup(on_signal, &wait_mask);
	ret = run(&srv, &wait_mask);
	print_counters(&srv.c);
	for (int i = 0; i < srv.n_ls; i++)
		close(srv.ls[i].fd);
	return ret < 0 ? 1 : 0;
}
