/* SPDX-License-Identifier: MIT */
/*
 * meshgate-dataplane: the DPDK primary process. Reads the shared config,
 * brings up ports and poll-mode workers, creates the shared-memory region
 * the control process attaches to, and runs the main-lcore service loop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf_dyn.h>
#include <rte_pdump.h>
#include <rte_ring.h>

#include "dp.h"
#include "log.h"
#include "route.h"
#include "wg_messages.h"

static struct dp_ctx *signal_ctx; /* the one thing a signal handler may touch */

static void on_signal(int sig)
{
	(void)sig;
	if (signal_ctx)
		__atomic_store_n(&signal_ctx->quit, 1, __ATOMIC_RELAXED);
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s -c CONFIG [--check]\n"
		"  -c, --config FILE  meshgate configuration (libconfig syntax)\n"
		"      --check        validate the configuration and exit\n",
		prog);
}

/* EAL arguments: lcores and a per-instance file prefix from the config,
 * then the operator's extra arguments. */
static int eal_start(const struct mg_config *cfg, const char *prog)
{
	char lcores[512], main_lcore[16], prefix[64];
	char *argv[128];
	int argc = 0, n = snprintf(lcores, sizeof(lcores), "%d", cfg->main_lcore);

	for (int i = 0; i < cfg->n_workers; i++)
		n += snprintf(lcores + n, sizeof(lcores) - (size_t)n, ",%d", cfg->workers[i]);
	snprintf(main_lcore, sizeof(main_lcore), "%d", cfg->main_lcore);
	snprintf(prefix, sizeof(prefix), "meshgate-%s", cfg->name);
	argv[argc++] = (char *)prog;
	argv[argc++] = "-l";
	argv[argc++] = lcores;
	argv[argc++] = "--main-lcore";
	argv[argc++] = main_lcore;
	argv[argc++] = "--file-prefix";
	argv[argc++] = prefix;
	for (int i = 0; i < cfg->n_eal_args && argc < 126; i++)
		argv[argc++] = cfg->eal_args[i];
	argv[argc] = NULL;
	int rc = rte_eal_init(argc, argv);
	if (rc < 0)
		mg_log(LOG_ERR, "EAL init failed: %s", rte_strerror(rte_errno));
	return rc < 0 ? -1 : 0;
}

static int run(struct dp_ctx *dp)
{
	const struct mg_config *cfg = dp->cfg;
	int rc = dp_ctx_setup(dp);

	if (rc)
		return rc;
	for (unsigned i = 0; i < dp->n_workers; i++) {
		rc = rte_eal_remote_launch(dp_worker_main, &dp->workers[i], dp->workers[i].lcore);
		if (rc) {
			mg_log(LOG_ERR, "cannot launch worker on lcore %u", dp->workers[i].lcore);
			__atomic_store_n(&dp->quit, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	mg_log(LOG_INFO, "%s: dataplane running, %u worker(s), listen port %u, shm %s",
	       cfg->name, dp->n_workers, cfg->listen_port, dp->shm.path);
	if (!rc)
		dp_service_run(dp);
	rte_eal_mp_wait_lcore();
	mg_log(LOG_INFO, "%s: dataplane stopping", cfg->name);
	return rc;
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
	struct dp_ctx dp = {0};
	int c, rc;

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
	if (mg_config_load(path, 0, &cfg, err, sizeof(err))) {
		fprintf(stderr, "meshgate-dataplane: %s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", path);
		mg_config_free(&cfg);
		return 0;
	}
	mg_log_init("meshgate-dataplane", cfg.log_level);
	if (cfg.timers.overridden)
		mg_log(LOG_WARNING, "TESTING TIMERS IN EFFECT: protocol timers shortened by config");
	if (eal_start(&cfg, argv[0])) {
		mg_config_free(&cfg);
		return 1;
	}
	/* Packet capture: dpdk-dumpcap attaches as a secondary process and asks
	 * for copies of a port's packets (needs shared hugepage memory: not
	 * with --no-huge or --in-memory). The DPDK telemetry socket is there
	 * anyway: /var/run/dpdk/meshgate-<name>/dpdk_telemetry.v2. */
	bool pdump = rte_pdump_init() == 0;
	if (!pdump)
		mg_log(LOG_NOTICE, "packet capture (dpdk-dumpcap) unavailable: %s",
		       rte_strerror(rte_errno));
	else if (!rte_eal_has_hugepages())
		mg_log(LOG_INFO, "packet capture (dpdk-dumpcap) needs hugepages, not --no-huge");
	dp.cfg = &cfg;
	signal_ctx = &dp;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rc = run(&dp);
	dp_ctx_teardown(&dp);
	if (pdump)
		rte_pdump_uninit();
	rte_eal_cleanup();
	mg_config_free(&cfg);
	return rc ? 1 : 0;
}
