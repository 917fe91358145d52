/* SPDX-License-Identifier: MIT */
/*
 * meshgate-control: handshakes, timers, the WireGuard userspace API, and
 * the programming of the dataplane over shared-memory rings.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "addr.h"
#include "coord.h"
#include "cp.h"
#include "flowlog.h"
#include "log.h"
#include "metrics.h"
#include "uapi.h"

const struct cp_uapi_ops *cp_api_ops(void);

static volatile sig_atomic_t quit, reload;

static void on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static void on_hup(int sig)
{
	(void)sig;
	reload = 1;
}

/* STUN found other public endpoints: the coordination server should know. */
static void on_stun_endpoints(void *arg, const struct mg_sockaddr *eps, unsigned n)
{
	cp_coord_set_stun_endpoints(arg, eps, n);
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s -c CONFIG [--check]\n"
		"  -c, --config FILE  meshgate configuration (libconfig syntax)\n"
		"      --check        validate the configuration (and key files) and exit\n",
		prog);
}

static int loop(struct cp_device *d, struct cp_uapi_server *uapi, struct cp_metrics *metrics,
		struct cp_coord *coord)
{
	uint64_t next_tick = 0, next_maint = 0;

	while (!quit) {
		/* The coordination fd: its thread's mailbox and the ctl socket. */
		struct pollfd pfd[2 + CP_DERP_MAX_FDS] = {
		    {.fd = cp_uapi_server_fd(uapi), .events = POLLIN},
		    {.fd = cp_coord_fd(coord), .events = POLLIN}};
		unsigned work = cp_dp_poll(d);
		work += cp_flowlog_poll(d);
		uint64_t now = cp_now();

		if (reload) {
			reload = 0;
			mg_log(LOG_INFO, "SIGHUP: reloading the policy");
			cp_filter_reload(d);
			cp_flowlog_reopen(d);
		}
		cp_filter_maintain(d);
		if (now >= next_maint) {
			cp_dp_maintain(d);
			cp_metrics_update(metrics, d);
			cp_coord_tick(coord);
			next_maint = now + 200000000ull;
		}
		if (now >= next_tick) {
			cp_timers_tick(d);
			cp_stun_tick(d, now);
			cp_derp_tick(d, now);
			cp_disco_tick(d, now);
			next_tick = now + 50000000ull;
		}
		/* Rings are not file descriptors: poll briefly when idle. A
		 * negative fd (no coordination) is skipped by poll(). */
		unsigned n_derp = cp_derp_pollfds(d, pfd + 2, CP_DERP_MAX_FDS);
		if (!coord)
			pfd[1].fd = -1;
		if (poll(pfd, 2 + n_derp, work ? 0 : 1) > 0) {
			/* The relays first: a netmap may change the regions. */
			cp_derp_service(d, pfd + 2, n_derp, cp_now());
			if (pfd[0].revents)
				cp_uapi_server_service(uapi);
			if (pfd[1].revents)
				cp_coord_service(coord);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"check", no_argument, NULL, 'k'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	bool check = false;
	char err[1024];
	struct mg_config cfg;
	struct cp_device dev;
	int c;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (c == 'c')
			path = optarg;
		else if (c == 'k')
			check = true;
		else {
			usage(argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}
	if (!path) {
		usage(argv[0]);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "meshgate-control: libsodium init failed\n");
		return 1;
	}
	if (mg_config_load(path, MG_CONFIG_LOAD_KEYS, &cfg, err, sizeof(err))) {
		fprintf(stderr, "meshgate-control: %s\n", err);
		return 1;
	}
	if (check) {
		int rc = cp_filter_check(&cfg, err, sizeof(err));
		if (rc)
			fprintf(stderr, "meshgate-control: policy refused: %s\n", err);
		else
			printf("%s: ok (policy: %s)\n", path, err);
		mg_config_free(&cfg);
		return rc ? 1 : 0;
	}
	mg_log_init("meshgate-control", cfg.log_level);
	if (cfg.timers.overridden)
		mg_log(LOG_WARNING, "TESTING TIMERS IN EFFECT: rekey %us reject %us keepalive %us",
		       cfg.timers.rekey_after_time, cfg.timers.reject_after_time,
		       cfg.timers.keepalive_timeout);
	if (cp_device_init(&dev, &cfg)) {
		mg_log(LOG_ERR, "cannot initialise the device");
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	if (cp_filter_init(&dev)) {
		mg_log(LOG_ERR, "cannot load the policy %s", cfg.policy_file);
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	int rc = 0;
	if (cp_flowlog_init(&dev)) {
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	if (cp_stun_init(&dev) || (rc = cp_derp_init(&dev))) {
		cp_flowlog_fini(&dev);
		mg_log(LOG_ERR, "cannot start STUN or DERP: %s",
		       rc == -EINVAL ? "see above" : "out of memory");
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	struct cp_uapi_server *uapi = cp_uapi_server_open(cfg.run_dir, cfg.name, cp_api_ops(), &dev);
	if (!uapi) {
		mg_log(LOG_ERR, "cannot serve %s/%s.sock: %s", cfg.run_dir, cfg.name, strerror(errno));
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, on_hup);
	struct cp_metrics *metrics = NULL;
	if (cfg.metrics_listen.family && !(metrics = cp_metrics_start(&cfg))) {
		char where[MG_SOCKADDR_STRLEN];
		mg_log(LOG_ERR, "cannot serve metrics on %s: %s",
		       mg_sockaddr_fmt(&cfg.metrics_listen, where, sizeof(where)), strerror(errno));
		cp_uapi_server_close(uapi);
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	/* Without a coordination group it only serves <name>.ctl for `meshgate up`
	 * (and resumes a registration made that way). */
	struct cp_coord *coord = cp_coord_start(&dev);
	if (!coord && cfg.coord.enabled) {
		mg_log(LOG_ERR, "cannot start coordination");
		cp_metrics_stop(metrics);
		cp_uapi_server_close(uapi);
		cp_device_fini(&dev);
		mg_config_free(&cfg);
		return 1;
	}
	cp_stun_set_notify(&dev, on_stun_endpoints, coord);
	mg_log(LOG_INFO, "%s: control running, %u peer(s), uapi %s/%s.sock", cfg.name, dev.n_peers,
	       cfg.run_dir, cfg.name);
	loop(&dev, uapi, metrics, coord);
	mg_log(LOG_INFO, "%s: control stopping", cfg.name);
	cp_coord_stop(coord);
	cp_metrics_stop(metrics);
	cp_uapi_server_close(uapi);
	cp_flowlog_fini(&dev);
	cp_device_fini(&dev);
	mg_config_free(&cfg);
	return 0;
}
