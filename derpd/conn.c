/* SPDX-License-Identifier: MIT */
/*
 * Connections: accepting them, reading, the output queue, writing, closing.
 *
 * Reads go into the server's scratch buffer and are acted on there; only an
 * incomplete head or frame at the end is copied to the connection, and once
 * a frame's header is known the rest of that frame is read straight into
 * its own buffer. So an idle client holds no input buffer, a busy one at
 * most one frame (MG_DERP_MAX_BODY + 5 bytes), and nothing is copied twice.
 *
 * Output is a FIFO of chunks, written with one sendmsg over many of them
 * when the loop flushes (once per iteration, after all events are handled,
 * so the packets one read produced for a client leave in one system call).
 * Two bounds keep a client that does not read from costing more than that:
 * DERPD_QUEUE_PACKETS packets (more are dropped: queue_full) and
 * DERPD_QUEUE_CTL_MAX bytes of control frames (more: the client is closed).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addr.h"
#include "derpd.h"
#include "log.h"

#define ACCEPT_BATCH 64 /* per readable listener per loop iteration */
#define WRITE_IOV    64
#define CTL_CHUNK    512 /* control frames are coalesced into chunks this big */
/* TCP keepalive finds clients that vanished without a FIN; DERP itself has
 * no read deadline (nor has Tailscale's derper). */
#define TCP_IDLE_S  60
#define TCP_INTVL_S 15
#define TCP_PROBES  4
#define FD_WARN_MS  10000

static void tune_socket(int fd)
{
	int one = 1, idle = TCP_IDLE_S, intvl = TCP_INTVL_S, probes = TCP_PROBES;

	/* Failures cost only latency or dead-peer detection: ignored. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
}

static void refuse(struct derpd *d, int fd, const struct mg_sockaddr *peer, int reason)
{
	char buf[MG_SOCKADDR_STRLEN];

	d->c.rejects[reason]++;
	mg_log(LOG_DEBUG, "refused %s: %s", mg_sockaddr_fmt(peer, buf, sizeof(buf)),
	       derpd_reject_names[reason]);
	close(fd);
}

static void new_conn(struct derpd *d, int fd, const struct sockaddr_storage *ss)
{
	struct mg_sockaddr peer;
	struct epoll_event ev = {.events = EPOLLIN};
	struct conn *c;

	mg_sockaddr_from_sys(ss, &peer);
	if (d->n_conns >= d->max_conns) {
		refuse(d, fd, &peer, REJECT_MAX_CONNS);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		refuse(d, fd, &peer, REJECT_NO_MEMORY);
		return;
	}
	c->kind = EV_CONN;
	c->fd = fd;
	c->state = CONN_HTTP;
	c->peer = peer;
	c->since = d->now;
	strcpy(c->name, "[-]");
	dlist_init(&c->timer);
	tune_socket(fd);
	ev.data.ptr = c;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		mg_log(LOG_WARNING, "epoll_ctl: %s", strerror(errno));
		free(c);
		refuse(d, fd, &peer, REJECT_NO_MEMORY);
		return;
	}
	d->n_conns++;
	derpd_conn_rearm(d, c, &d->handshakes, DERPD_HANDSHAKE_MS);
}

/*
 * Out of descriptors: the pending connection would keep the listener
 * readable and the loop spinning. Give up the reserve descriptor, accept
 * and close one connection, and take the reserve back.
 */
static void shed_one(struct derpd *d, struct listener *l)
{
	int fd;

	if (d->now - d->fd_warned >= FD_WARN_MS || !d->fd_warned) {
		d->fd_warned = d->now;
		mg_log(LOG_WARNING, "out of file descriptors: refusing connections (ulimit -n)");
	}
	if (d->reserve_fd >= 0)
		close(d->reserve_fd);
	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0) {
		d->c.connections++;
		d->c.rejects[REJECT_FD_LIMIT]++;
		close(fd);
	}
	d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void derpd_accept(struct derpd *d, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				shed_one(d, l);
				continue;
			}
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				mg_log(LOG_WARNING, "accept: %s", strerror(errno));
			return;
		}
		d->c.connections++;
		new_conn(d, fd, &ss);
	}
}

void derpd_conn_rearm(struct derpd *d, struct conn *c, struct dlist *list, uint64_t ms)
{
	dlist_del(&c->timer);
	c->deadline = d->now + ms;
	dlist_add_tail(list, &c->timer);
}

static void mark_dirty(struct derpd *d, struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->next_dirty = d->dirty;
	d->dirty = c;
}

/* Close at the next flush: for callers that must not close (and so free
 * output, send PeerGone, ...) underneath their own caller. why: static text. */
static void doom(struct derpd *d, struct conn *c, int reason, const char *why)
{
	if (!c->doomed) {
		c->doomed = true;
		c->doom_reason = reason;
		c->doom_why = why;
	}
	mark_dirty(d, c);
}

static int out_write(struct derpd *d, struct conn *c);

/* Write now what the socket takes, to make room in a full queue. */
static void drain_now(struct derpd *d, struct conn *c)
{
	if (c->state != CONN_DEAD && out_write(d, c) < 0)
		doom(d, c, DERPD_UNCOUNTED, "write failed");
}

/* Output. */

static void out_append(struct conn *c, struct chunk *ch)
{
	ch->next = NULL;
	if (c->out_tail)
		c->out_tail->next = ch;
	else
		c->out_head = ch;
	c->out_tail = ch;
}

void derpd_conn_queue_ctl(struct derpd *d, struct conn *c, const void *data, size_t len)
{
	struct chunk *t;

	if (c->state == CONN_DEAD || c->doomed || len == 0)
		return;
	if (c->out_ctl + len > DERPD_QUEUE_CTL_MAX)
		drain_now(d, c);
	if (c->doomed)
		return;
	if (c->out_ctl + len > DERPD_QUEUE_CTL_MAX) {
		doom(d, c, REJECT_SLOW_READER, NULL);
		return;
	}
	t = c->out_tail; /* after drain_now, which frees what it wrote */
	if (t && !t->packet && t->cap - t->len >= len) {
		memcpy(t->data + t->len, data, len);
		t->len += (uint32_t)len;
	} else {
		size_t cap = len < CTL_CHUNK ? CTL_CHUNK : len;
		struct chunk *ch = malloc(sizeof(*ch) + cap);

		if (!ch) {
			doom(d, c, REJECT_NO_MEMORY, NULL);
			return;
		}
		*ch = (struct chunk){.len = (uint32_t)len, .cap = (uint32_t)cap};
		memcpy(ch->data, data, len);
		out_append(c, ch);
	}
	c->out_ctl += len;
	mark_dirty(d, c);
}

void derpd_conn_queue_packet(struct derpd *d, struct conn *dst, const uint8_t src[32],
			     const uint8_t *pkt, size_t len)
{
	size_t flen = MG_DERP_HDR_LEN + MG_DERP_KEY_LEN + len;
	struct chunk *ch;

	if (dst->out_packets >= DERPD_QUEUE_PACKETS && !dst->doomed)
		drain_now(d, dst);
	if (dst->state == CONN_DEAD || dst->doomed) {
		d->c.drops[DROP_DISCONNECTED]++;
		return;
	}
	if (dst->out_packets >= DERPD_QUEUE_PACKETS) {
		d->c.drops[DROP_QUEUE_FULL]++;
		mg_log(LOG_DEBUG, "%s: queue full, packet of %zu bytes dropped", dst->name, len);
		return;
	}
	ch = malloc(sizeof(*ch) + flen);
	if (!ch) {
		d->c.drops[DROP_NO_MEMORY]++;
		return;
	}
	*ch = (struct chunk){.cap = (uint32_t)flen, .pkt_len = (uint32_t)len, .packet = true};
	/* Cannot fail: len was checked against MG_DERP_MAX_PACKET by the parser. */
	ch->len =
	    (uint32_t)mg_derp_build_packet(ch->data, flen, MG_DERP_RECV_PACKET, src, pkt, len);
	out_append(dst, ch);
	dst->out_packets++;
	mark_dirty(d, dst);
}

/* n more bytes were written: free what is done, count packets delivered. */
static void out_advance(struct derpd *d, struct conn *c, size_t n)
{
	while (n) {
		struct chunk *h = c->out_head;
		size_t left = h->len - c->out_off;

		if (n < left) {
			c->out_off += (uint32_t)n;
			return;
		}
		n -= left;
		c->out_off = 0;
		c->out_head = h->next;
		if (!c->out_head)
			c->out_tail = NULL;
		if (h->packet) {
			c->out_packets--;
			c->tx_packets++;
			d->c.forwarded++;
			d->c.forwarded_bytes += h->pkt_len;
		} else {
			c->out_ctl -= h->len;
		}
		free(h);
	}
}

/* Write until done or the socket is full: 0, or -errno when it failed. */
static int out_write(struct derpd *d, struct conn *c)
{
	while (c->out_head) {
		struct iovec iov[WRITE_IOV];
		struct msghdr msg = {.msg_iov = iov};
		size_t off = c->out_off;
		ssize_t w;

		for (struct chunk *ch = c->out_head; ch && msg.msg_iovlen < WRITE_IOV;
		     ch = ch->next, off = 0)
			iov[msg.msg_iovlen++] = (struct iovec){ch->data + off, ch->len - off};
		w = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		out_advance(d, c, (size_t)w);
	}
	return 0;
}

static void out_free(struct derpd *d, struct conn *c)
{
	struct chunk *ch = c->out_head, *next;

	for (; ch; ch = next) {
		next = ch->next;
		if (ch->packet)
			d->c.drops[DROP_DISCONNECTED]++;
		free(ch);
	}
	c->out_head = c->out_tail = NULL;
	c->out_packets = 0;
	c->out_ctl = 0;
}

/* EPOLLOUT only while output is pending. */
static void set_events(struct derpd *d, struct conn *c)
{
	bool want = c->out_head != NULL;
	struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};

	if (want != c->want_out && epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = want;
}

static void flush_one(struct derpd *d, struct conn *c)
{
	int err = out_write(d, c);

	if (err) {
		derpd_conn_close(d, c, DERPD_UNCOUNTED, strerror(-err));
		return;
	}
	/* A plain HTTP answer is out: our FIN follows it; the client's ends
	 * the lingering (closing with its request unread could reset the
	 * connection before it reads the answer). */
	if (c->state == CONN_LINGER && !c->out_head && !c->shut) {
		shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	set_events(d, c);
}

void derpd_flush(struct derpd *d)
{
	struct conn *c;

	/* Closing a client queues PeerGone to others, which joins this list. */
	while ((c = d->dirty)) {
		d->dirty = c->next_dirty;
		c->next_dirty = NULL;
		c->dirty = false;
		if (c->state == CONN_DEAD)
			continue;
		if (c->doomed)
			derpd_conn_close(d, c, c->doom_reason, c->doom_why);
		else
			flush_one(d, c);
	}
}

void derpd_conn_writable(struct derpd *d, struct conn *c)
{
	mark_dirty(d, c);
}

/* Input. */

static bool in_frames(const struct conn *c)
{
	return c->state == CONN_INFO || c->state == CONN_CLIENT;
}

static void read_failed(struct derpd *d, struct conn *c, ssize_t n)
{
	int err = n < 0 ? errno : 0;

	if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
		return;
	if (c->state == CONN_LINGER && !c->shut)
		out_write(d, c); /* the answer, before the client's FIN closes us */
	derpd_conn_close(d, c, DERPD_UNCOUNTED, err ? strerror(err) : "closed by peer");
}

/* Keep the incomplete rest p[0..len) of a read for the next one. */
static void keep_rest(struct derpd *d, struct conn *c, const uint8_t *p, size_t len)
{
	size_t need = 0;
	uint32_t body = 0;
	uint8_t type;

	c->in_len = 0;
	c->in_need = 0;
	if (len == 0) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
		return;
	}
	/* derpd_consume checked this header against the state's limit. */
	if (in_frames(c) && len >= MG_DERP_HDR_LEN) {
		mg_derp_frame(p, len, UINT32_MAX, &type, &body);
		need = MG_DERP_HDR_LEN + (size_t)body;
	}
	if ((need > len ? need : len) > c->in_cap) {
		size_t cap = need > len ? need : len;
		uint8_t *in = realloc(c->in, cap);

		if (!in) {
			derpd_conn_close(d, c, REJECT_NO_MEMORY, NULL);
			return;
		}
		c->in = in;
		c->in_cap = (uint32_t)cap;
	}
	memcpy(c->in, p, len);
	c->in_len = (uint32_t)len;
	c->in_need = (uint32_t)need;
}

/* The rest of one frame whose header is in c->in. */
static void read_frame_rest(struct derpd *d, struct conn *c)
{
	ssize_t n = read(c->fd, c->in + c->in_len, c->in_need - c->in_len);

	if (n <= 0) {
		read_failed(d, c, n);
		return;
	}
	c->in_len += (uint32_t)n;
	if (c->in_len < c->in_need)
		return;
	derpd_consume(d, c, c->in, c->in_len);
	if (c->state != CONN_DEAD)
		keep_rest(d, c, NULL, 0);
}

void derpd_conn_readable(struct derpd *d, struct conn *c)
{
	size_t have = c->in_len, used;
	ssize_t n;

	if (c->doomed)
		return;
	if (c->in_need) {
		read_frame_rest(d, c);
		return;
	}
	if (have)
		memcpy(d->scratch, c->in, have);
	n = read(c->fd, d->scratch + have, sizeof(d->scratch) - have);
	if (n <= 0) {
		read_failed(d, c, n);
		return;
	}
	if (c->state == CONN_LINGER)
		return; /* the request is answered: the rest is ignored */
	used = derpd_consume(d, c, d->scratch, have + (size_t)n);
	if (c->state != CONN_DEAD)
		keep_rest(d, c, d->scratch + used, have + (size_t)n - used);
}

/* Closing. */

static void log_close(const struct derpd *d, const struct conn *c, int reason, const char *why)
{
	char addr[MG_SOCKADDR_STRLEN];

	if (d->exiting)
		return;
	if (!why)
		why = reason >= 0 ? derpd_reject_names[reason] : "closed";
	mg_sockaddr_fmt(&c->peer, addr, sizeof(addr));
	if (c->state == CONN_CLIENT)
		mg_log(LOG_INFO,
		       "client %s from %s left: %s (after %llus; %llu packets sent, %llu "
		       "received)",
		       c->name, addr, why, (unsigned long long)((d->now - c->since) / 1000),
		       (unsigned long long)c->rx_packets, (unsigned long long)c->tx_packets);
	else
		mg_log(LOG_DEBUG, "connection from %s closed: %s", addr, why);
}

void derpd_conn_close(struct derpd *d, struct conn *c, int reason, const char *why)
{
	if (c->state == CONN_DEAD)
		return;
	if (reason >= 0)
		d->c.rejects[reason]++;
	log_close(d, c, reason, why);
	if (c->state == CONN_CLIENT) {
		derpd_registry_del(&d->reg, c);
		d->n_clients--;
		if (c->preferred)
			d->n_preferred--;
		/* A replaced client is still here, on its new connection. */
		if (reason != REJECT_REPLACED && !d->exiting)
			derpd_relay_gone(d, c);
	}
	dlist_del(&c->timer);
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	out_free(d, c);
	c->state = CONN_DEAD;
	d->n_conns--;
	c->next_dead = d->dead;
	d->dead = c;
}

void derpd_reap(struct derpd *d)
{
	struct conn *c;

	while ((c = d->dead)) {
		d->dead = c->next_dead;
		free(c->in);
		free(c);
	}
}

void derpd_close_all(struct derpd *d)
{
	struct dlist *lists[] = {&d->handshakes, &d->clients};

	d->exiting = true;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		while (!dlist_empty(lists[i]))
			derpd_conn_close(d, dlist_entry(lists[i]->next, struct conn, timer),
					 DERPD_UNCOUNTED, NULL);
	d->dirty = NULL;
	derpd_reap(d);
}
