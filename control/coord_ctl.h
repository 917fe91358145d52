/* SPDX-License-Identifier: MIT */
/*
 * <run_dir>/<name>.ctl: the meshgate-specific control socket that `meshgate
 * up/status/down` talk to (the wg UAPI socket stays exactly wg's). Root only
 * (mode 0600). A line protocol:
 *
 *   client: "<command>\n" ["key=value\n"...] "\n"
 *   server: "ok\n" ["key=value\n"...] "\n"    or    "error=<one line>\n\n"
 *
 * The answer may come later (an `up` waits for the server's answer); the
 * connection is closed once it is sent. Non-blocking, on the caller's epoll.
 */
#ifndef CP_COORD_CTL_H
#define CP_COORD_CTL_H

#include <stddef.h>
#include <stdint.h>

#define CP_CTL_MAX_ARGS	   16
#define CP_CTL_MAX_CLIENTS 8
#define CP_CTL_MAX_REQUEST 8192

struct cp_ctl_req {
	const char *cmd;
	const char *key[CP_CTL_MAX_ARGS], *val[CP_CTL_MAX_ARGS];
	int n;
};

/* The value of key in r, or NULL. */
const char *cp_ctl_arg(const struct cp_ctl_req *r, const char *key);

/* Called once per complete request; answer with cp_ctl_answer (now or later). */
typedef void (*cp_ctl_fn)(void *arg, int client, const struct cp_ctl_req *r);

struct cp_ctl;

/* Listen on <run_dir>/<name>.ctl; registers its fds on epfd with epoll tags
 * from tag_base on. NULL with errno on failure. */
struct cp_ctl *cp_ctl_open(const char *run_dir, const char *name, int epfd, uint64_t tag_base,
			   cp_ctl_fn fn, void *arg);
/* An epoll event whose tag is in [tag_base, tag_base + 1 + CP_CTL_MAX_CLIENTS). */
void cp_ctl_event(struct cp_ctl *s, uint64_t tag, uint32_t events);
/* Queue text as the whole answer to client (then closed). -ENOENT if it left. */
int cp_ctl_answer(struct cp_ctl *s, int client, const char *text);
/* Drop clients idle (no complete request) for longer than 10 s. */
void cp_ctl_expire(struct cp_ctl *s, uint64_t now_ns);
void cp_ctl_close(struct cp_ctl *s);

#endif /* CP_COORD_CTL_H */
