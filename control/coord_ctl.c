/* SPDX-License-Identifier: MIT */
/*
 * The meshgate control socket (coord_ctl.h): framing and non-blocking I/O
 * only; what the commands do is the owner's (coord.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "coord_ctl.h"

#define IDLE_NS 10000000000ull

struct client {
	int fd; /* -1: free */
	int id; /* what the owner knows it by: slots are reused */
	char in[CP_CTL_MAX_REQUEST];
	size_t in_len;
	bool answered; /* a request was handed over: read no more */
	char *out;
	size_t out_len, out_off;
	uint64_t since_ns;
};

struct cp_ctl {
	int epfd, lfd;
	uint64_t tag;
	int next_id;
	cp_ctl_fn fn;
	void *arg;
	char path[108];
	dev_t dev;
	ino_t ino;
	struct client c[CP_CTL_MAX_CLIENTS];
};

const char *cp_ctl_arg(const struct cp_ctl_req *r, const char *key)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key))
			return r->val[i];
	return NULL;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void client_close(struct cp_ctl *s, struct client *cl)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	cl->fd = -1;
	/* Requests carry auth keys. */
	sodium_memzero(cl->in, sizeof(cl->in));
	free(cl->out);
	cl->out = NULL;
}

static int listen_on(struct cp_ctl *s, const char *run_dir, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.ctl", run_dir, name);

	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(s->path, sa.sun_path);
	mkdir(run_dir, 0755);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -errno;
	/* A live owner answers connect(): refuse; a stale socket is replaced. */
	if (connect(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return -EADDRINUSE;
	unlink(sa.sun_path);
	mode_t old = umask(0177);
	int rc = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(sa.sun_path, 0600) < 0 || listen(s->lfd, 8) < 0)
		return -errno;
	if (stat(sa.sun_path, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	return 0;
}

struct cp_ctl *cp_ctl_open(const char *run_dir, const char *name, int epfd, uint64_t tag_base,
			   cp_ctl_fn fn, void *arg)
{
	struct cp_ctl *s = calloc(1, sizeof(*s));
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag_base};
	int ret;

	if (!s)
		return NULL;
	s->epfd = epfd;
	s->tag = tag_base;
	s->fn = fn;
	s->arg = arg;
	for (int i = 0; i < CP_CTL_MAX_CLIENTS; i++)
		s->c[i].fd = -1;
	/* The socket is re-created: the previous one may be a dead process's. */
	ret = listen_on(s, run_dir, name);
	if (!ret && epoll_ctl(epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0)
		ret = -errno;
	if (ret) {
		if (s->lfd >= 0)
			close(s->lfd);
		free(s);
		errno = -ret;
		return NULL;
	}
	return s;
}

void cp_ctl_close(struct cp_ctl *s)
{
	struct stat st;

	if (!s)
		return;
	for (int i = 0; i < CP_CTL_MAX_CLIENTS; i++)
		if (s->c[i].fd >= 0)
			client_close(s, &s->c[i]);
	if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
	close(s->lfd);
	free(s);
}

static void accept_clients(struct cp_ctl *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), i;

		if (fd < 0)
			return;
		for (i = 0; i < CP_CTL_MAX_CLIENTS && s->c[i].fd >= 0; i++)
			;
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = s->tag + 1 + (uint64_t)i};
		if (i == CP_CTL_MAX_CLIENTS || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd); /* busy */
			continue;
		}
		s->c[i] = (struct client){.fd = fd, .since_ns = mono_ns()};
		s->c[i].id = s->next_id = (s->next_id + 1) & 0x3fffffff;
	}
}

/* "cmd\nk=v\n...\n\n" in cl->in: split in place. 1 = complete, 0 = more, <0 bad. */
static int frame(struct client *cl, struct cp_ctl_req *r)
{
	char *end = memmem(cl->in, cl->in_len, "\n\n", 2), *line, *save = NULL;

	if (!end && cl->in_len >= 2 && cl->in[0] == '\n')
		return -EPROTO;
	if (!end)
		return cl->in_len == sizeof(cl->in) ? -E2BIG : 0;
	if (memchr(cl->in, '\0', (size_t)(end - cl->in)))
		return -EPROTO;
	end[1] = '\0';
	memset(r, 0, sizeof(*r));
	for (line = strtok_r(cl->in, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');

		if (!r->cmd) {
			r->cmd = line;
			continue;
		}
		if (!eq || r->n == CP_CTL_MAX_ARGS)
			return -EPROTO;
		*eq = '\0';
		r->key[r->n] = line;
		r->val[r->n++] = eq + 1;
	}
	return r->cmd ? 1 : -EPROTO;
}

static void flush(struct cp_ctl *s, struct client *cl)
{
	while (cl->out_off < cl->out_len) {
		ssize_t w = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EAGAIN) {
			struct epoll_event ev = {.events = EPOLLOUT,
						 .data.u64 = s->tag + 1 + (uint64_t)(cl - s->c)};
			epoll_ctl(s->epfd, EPOLL_CTL_MOD, cl->fd, &ev);
			return;
		}
		if (w <= 0)
			break;
		cl->out_off += (size_t)w;
	}
	client_close(s, cl);
}

static void client_read(struct cp_ctl *s, struct client *cl)
{
	struct cp_ctl_req r;
	ssize_t n = recv(cl->fd, cl->in + cl->in_len, sizeof(cl->in) - cl->in_len, MSG_DONTWAIT);
	int ret;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(s, cl);
		return;
	}
	if (n < 0)
		return;
	cl->in_len += (size_t)n;
	ret = frame(cl, &r);
	if (ret < 0) {
		cp_ctl_answer(s, cl->id, "error=bad request\n\n");
	} else if (ret == 1) {
		struct epoll_event ev = {.events = 0,
					 .data.u64 = s->tag + 1 + (uint64_t)(cl - s->c)};

		cl->answered = true;
		epoll_ctl(s->epfd, EPOLL_CTL_MOD, cl->fd, &ev); /* nothing more to read */
		s->fn(s->arg, cl->id, &r);
	}
}

void cp_ctl_event(struct cp_ctl *s, uint64_t tag, uint32_t events)
{
	struct client *cl;

	if (tag == s->tag) {
		accept_clients(s);
		return;
	}
	cl = &s->c[tag - s->tag - 1];
	if (cl->fd < 0)
		return;
	if (cl->out)
		flush(s, cl);
	else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		client_read(s, cl);
}

int cp_ctl_answer(struct cp_ctl *s, int client, const char *text)
{
	struct client *cl = NULL;

	for (int i = 0; i < CP_CTL_MAX_CLIENTS && !cl; i++)
		if (s->c[i].fd >= 0 && s->c[i].id == client)
			cl = &s->c[i];
	if (!cl || cl->out)
		return -ENOENT;
	cl->out_len = strlen(text);
	cl->out_off = 0;
	if (!(cl->out = strdup(text))) {
		client_close(s, cl);
		return -ENOMEM;
	}
	flush(s, cl);
	return 0;
}

void cp_ctl_expire(struct cp_ctl *s, uint64_t now_ns)
{
	for (int i = 0; s && i < CP_CTL_MAX_CLIENTS; i++)
		if (s->c[i].fd >= 0 && !s->c[i].answered && now_ns - s->c[i].since_ns > IDLE_NS)
			client_close(s, &s->c[i]);
}
