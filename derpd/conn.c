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
 *
 * With --tls-cert every connection starts with a TLS handshake (CONN_TLS),
 * SSL_accept driven by the loop like any read, within the same deadline as
 * the HTTP head; then reads and writes go through SSL_read and SSL_write
 * (see "TLS" below). Without it, c->ssl is NULL and nothing here touches
 * OpenSSL.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

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
	c->events = ev.events;
	c->peer = peer;
	c->since = d->now;
	strcpy(c->name, "[-]");
	dlist_init(&c->timer);
	dlist_init(&c->tls_pend);
	if (d->tls) {
		/* The ClientHello is seldom in yet: SSL_accept on EPOLLIN. */
		c->ssl = SSL_new(d->tls);
		if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
			SSL_free(c->ssl);
			free(c);
			refuse(d, fd, &peer, REJECT_NO_MEMORY);
			return;
		}
		SSL_set_accept_state(c->ssl);
		c->state = CONN_TLS;
		c->tls_hs_events = EPOLLIN;
	}
	tune_socket(fd);
	ev.data.ptr = c;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		mg_log(LOG_WARNING, "epoll_ctl: %s", strerror(errno));
		SSL_free(c->ssl);
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
static void set_events(struct derpd *d, struct conn *c);

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

static int tls_write(struct derpd *d, struct conn *c);

/* Write until done or the socket is full: 0, or -errno when it failed. */
static int out_write(struct derpd *d, struct conn *c)
{
	if (c->ssl)
		return tls_write(d, c);
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

static uint32_t tls_events(const struct conn *c);

/* EPOLLOUT only while output is pending (TLS: see tls_events). */
static void set_events(struct derpd *d, struct conn *c)
{
	uint32_t want = c->ssl ? tls_events(c) : EPOLLIN | (c->out_head ? EPOLLOUT : 0u);
	struct epoll_event ev = {.events = want, .data.ptr = c};

	if (want != c->events && epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

static void tls_shutdown(struct conn *c);

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
		if (c->ssl)
			tls_shutdown(c); /* close_notify before the FIN */
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
	/* TLS: the handshake, or a read, may be waiting for room to write. */
	if (c->ssl && (c->state == CONN_TLS || c->tls_read_wants_write)) {
		derpd_conn_readable(d, c);
		if (c->state == CONN_DEAD)
			return;
	}
	mark_dirty(d, c);
}

/* Input. */

static bool in_frames(const struct conn *c)
{
	return c->state == CONN_INFO || c->state == CONN_CLIENT;
}

static ssize_t tls_read(struct conn *c, void *buf, size_t len);
static const char *tls_why(void);

static ssize_t conn_read(struct conn *c, void *buf, size_t len)
{
	if (c->ssl)
		return tls_read(c, buf, len);
	return read(c->fd, buf, len);
}

static void read_failed(struct derpd *d, struct conn *c, ssize_t n)
{
	int err = n < 0 ? errno : 0;
	const char *why;

	if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
		return;
	/* EPROTO from tls_read: OpenSSL says what. */
	why = !err ? "closed by peer" : c->ssl && err == EPROTO ? tls_why() : strerror(err);
	if (c->state == CONN_LINGER && !c->shut)
		out_write(d, c); /* the answer, before the client's FIN closes us */
	derpd_conn_close(d, c, DERPD_UNCOUNTED, why);
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
static ssize_t read_frame_rest(struct derpd *d, struct conn *c)
{
	ssize_t n = conn_read(c, c->in + c->in_len, c->in_need - c->in_len);

	if (n <= 0) {
		read_failed(d, c, n);
		return n;
	}
	c->in_len += (uint32_t)n;
	if (c->in_len < c->in_need)
		return n;
	derpd_consume(d, c, c->in, c->in_len);
	if (c->state != CONN_DEAD)
		keep_rest(d, c, NULL, 0);
	return n;
}

/* One read, acted on: the bytes read, or <= 0 when none were (c may be
 * closed then, or by what the bytes said). */
static ssize_t read_once(struct derpd *d, struct conn *c)
{
	size_t have = c->in_len, used;
	ssize_t n;

	if (c->in_need)
		return read_frame_rest(d, c);
	if (have)
		memcpy(d->scratch, c->in, have);
	n = conn_read(c, d->scratch + have, sizeof(d->scratch) - have);
	if (n <= 0) {
		read_failed(d, c, n);
		return n;
	}
	if (c->state == CONN_LINGER)
		return n; /* the request is answered: the rest is ignored */
	used = derpd_consume(d, c, d->scratch, have + (size_t)n);
	if (c->state != CONN_DEAD)
		keep_rest(d, c, d->scratch + used, have + (size_t)n - used);
	return n;
}

static void tls_readable(struct derpd *d, struct conn *c);

void derpd_conn_readable(struct derpd *d, struct conn *c)
{
	if (c->doomed)
		return;
	if (c->ssl)
		tls_readable(d, c);
	else
		read_once(d, c);
}

/*
 * TLS.
 *
 * OpenSSL may need to write to read, or to read to write (seldom: for
 * post-handshake messages; renegotiation is refused); the flags say so and
 * tls_events turns them into the epoll interest: a read waiting for room to write waits for
 * EPOLLOUT alone (the socket staying readable would spin the loop), a write waiting for input drops
 * EPOLLOUT and is retried when input comes.
 *
 * Input OpenSSL has taken off the socket but not returned yet (the rest of
 * a record, records read ahead) is invisible to epoll: it is read before
 * the loop waits again, up to DERPD_SCRATCH_LEN bytes per connection and
 * event as a plain read is; more waits on d->tls_pending for the next
 * iteration, which then does not sleep.
 */

/* OpenSSL's reason for the failure at hand, for the log. */
static const char *tls_why(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	return r ? r : "TLS error";
}

/* Whether the failure at hand is the peer closing TCP without close_notify. */
static bool tls_eof(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

static uint32_t tls_events(const struct conn *c)
{
	if (c->state == CONN_TLS)
		return c->tls_hs_events;
	if (c->tls_read_wants_write)
		return EPOLLOUT;
	return EPOLLIN | (c->out_head && !c->tls_write_wants_read ? EPOLLOUT : 0u);
}

static void tls_handshake(struct derpd *d, struct conn *c)
{
	char why[160], addr[MG_SOCKADDR_STRLEN];
	int r, e, sys;

	ERR_clear_error();
	errno = 0;
	r = SSL_accept(c->ssl);
	sys = errno;
	if (r == 1) {
		c->state = CONN_HTTP; /* with the same deadline */
		mg_log(LOG_DEBUG, "TLS from %s: %s, %s",
		       mg_sockaddr_fmt(&c->peer, addr, sizeof(addr)), SSL_get_version(c->ssl),
		       SSL_get_cipher_name(c->ssl));
		set_events(d, c);
		/* The request may have come with the handshake's end. */
		if (SSL_has_pending(c->ssl))
			tls_readable(d, c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->tls_hs_events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
		set_events(d, c);
		return;
	}
	c->tls_fatal = true;
	/* The peer leaving is no failure of the handshake (as a plain
	 * connection closed before its request is no rejection). */
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN || tls_eof()) {
		derpd_conn_close(d, c, DERPD_UNCOUNTED,
				 sys && e == SSL_ERROR_SYSCALL
				     ? strerror(sys)
				     : "closed by peer in the TLS handshake");
		return;
	}
	snprintf(why, sizeof(why), "TLS handshake failed: %s", tls_why());
	derpd_conn_close(d, c, REJECT_TLS_HANDSHAKE, why);
}

/* SSL_read, as read(2): -1 with EAGAIN while OpenSSL waits for the socket,
 * EPROTO for a TLS error, 0 at the end (close_notify or not). */
static ssize_t tls_read(struct conn *c, void *buf, size_t len)
{
	int r, e, sys;

	ERR_clear_error();
	errno = 0;
	r = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (r > 0)
		return r;
	sys = errno;
	e = SSL_get_error(c->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_WRITE:
		c->tls_read_wants_write = true;
		/* fall through */
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		c->tls_fatal = true;
		errno = sys;
		return sys ? -1 : 0;
	default:
		c->tls_fatal = true;
		if (tls_eof())
			return 0;
		errno = EPROTO;
		return -1;
	}
}

static void tls_readable(struct derpd *d, struct conn *c)
{
	bool wanted_write = c->tls_read_wants_write;
	size_t budget = DERPD_SCRATCH_LEN;
	ssize_t n;

	if (c->state == CONN_TLS) {
		tls_handshake(d, c);
		return;
	}
	if (c->tls_write_wants_read)
		mark_dirty(d, c); /* the flush retries the write */
	c->tls_read_wants_write = false;
	for (;;) {
		n = read_once(d, c);
		if (n <= 0 || c->state == CONN_DEAD || c->doomed)
			break;
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
		if (!SSL_has_pending(c->ssl))
			break;
		if (!budget) {
			if (dlist_empty(&c->tls_pend))
				dlist_add_tail(&d->tls_pending, &c->tls_pend);
			break;
		}
	}
	if (c->state != CONN_DEAD && c->tls_read_wants_write != wanted_write)
		mark_dirty(d, c); /* the flush sets the epoll interest */
}

void derpd_tls_pending(struct derpd *d)
{
	struct dlist batch;

	if (dlist_empty(&d->tls_pending))
		return;
	/* This batch only: who still has more goes back on the list. A
	 * connection closed meanwhile leaves the batch (derpd_conn_close). */
	batch = d->tls_pending;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	dlist_init(&d->tls_pending);
	while (!dlist_empty(&batch)) {
		struct conn *c = dlist_entry(batch.next, struct conn, tls_pend);

		dlist_del(&c->tls_pend);
		derpd_conn_readable(d, c);
	}
}

/* Up to a record's worth of the queue, from its head, into d->tls_out. */
static size_t tls_gather(struct derpd *d, const struct conn *c)
{
	size_t n = 0, off = c->out_off;

	for (const struct chunk *ch = c->out_head; ch && n < sizeof(d->tls_out);
	     ch = ch->next, off = 0) {
		size_t k = ch->len - off;

		if (k > sizeof(d->tls_out) - n)
			k = sizeof(d->tls_out) - n;
		memcpy(d->tls_out + n, ch->data + off, k);
		n += k;
	}
	return n;
}

/*
 * out_write with SSL_write. A chunk of a record or more is written from
 * where it is; smaller ones are gathered into one record (one system call
 * for many small frames, as sendmsg does for the plain path).
 *
 * A write OpenSSL could not finish must be retried with the same bytes
 * first and at least as many (it has them sealed in a record already; the
 * buffer may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). It is: until a
 * write succeeds the queue only grows, at its tail, and which way the head
 * is written depends only on the head chunk (a chunk of a record or more
 * never grows; a smaller one can only gain followers), so the retry starts
 * with the same bytes and is no shorter.
 */
static int tls_write(struct derpd *d, struct conn *c)
{
	if (c->state == CONN_TLS)
		return 0;
	c->tls_write_wants_read = false;
	while (c->out_head) {
		const struct chunk *h = c->out_head;
		const uint8_t *p = h->data + c->out_off;
		size_t len = h->len - c->out_off;
		int w, e, sys;

		if (len < DERPD_TLS_RECORD && h->next) {
			len = tls_gather(d, c);
			p = d->tls_out;
		}
		ERR_clear_error();
		errno = 0;
		w = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
		if (w > 0) {
			out_advance(d, c, (size_t)w);
			continue;
		}
		sys = errno;
		e = SSL_get_error(c->ssl, w);
		if (e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_WANT_READ) {
			c->tls_write_wants_read = true;
			return 0;
		}
		c->tls_fatal = true;
		if (e == SSL_ERROR_SYSCALL)
			return sys ? -sys : -EPIPE;
		return -EPROTO;
	}
	return 0;
}

/* close_notify, best effort: never waits. */
static void tls_shutdown(struct conn *c)
{
	if (c->tls_fatal || SSL_in_init(c->ssl) || (SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN))
		return;
	ERR_clear_error();
	SSL_shutdown(c->ssl);
	ERR_clear_error();
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
	dlist_del(&c->tls_pend);
	if (c->ssl) {
		tls_shutdown(c);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
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
