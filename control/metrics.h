/* SPDX-License-Identifier: MIT */
/*
 * Prometheus text-format metrics on GET /metrics (control.metrics_listen),
 * served by libmicrohttpd's own thread so the control loop is never held up.
 *
 * The HTTP thread reads the dataplane's counters straight from its own
 * mapping of the shared-memory region (lock-free: every counter has one
 * writer). What only the control process knows (peer names, last handshake
 * times, handshake and STUN counters) it takes from a snapshot that the control loop
 * refreshes with cp_metrics_update; a mutex guards the snapshot, and the
 * control loop only ever try-locks it, so it never waits for a scrape.
 */
#ifndef CP_METRICS_H
#define CP_METRICS_H

#include "cp.h"

struct cp_metrics;

/* Listen on cfg->metrics_listen (must be set) and serve. NULL with errno on failure. */
struct cp_metrics *cp_metrics_start(const struct mg_config *cfg);
/* Control loop: refresh the snapshot from the device. NULL m: nothing. */
void cp_metrics_update(struct cp_metrics *m, const struct cp_device *d);
/* Stop the HTTP thread and free everything. NULL m: nothing. */
void cp_metrics_stop(struct cp_metrics *m);

/* For tests and the HTTP handler: render the whole page into a malloc'd,
 * NUL-terminated buffer (*len bytes). 0 or -errno. */
int cp_metrics_render(struct cp_metrics *m, char **out, size_t *len);

#endif /* CP_METRICS_H */
