/* SPDX-License-Identifier: MIT */
/*
 * Flow logs, the control side: the dataplane's workers count the inner
 * flows they forward and hand over one record per flow and interval
 * (dataplane/flowlog.c); this drains their rings and appends each record to
 * flow_log.file as one JSON object per line, with wall-clock times, this
 * node's and the peer's public keys. Both gateways of a tunnel log the same
 * flow, one as "tx", the other as "rx": a record altered or removed on one
 * node shows against the other's (scripts/flowlog-audit).
 *
 * Main thread only.
 */
#ifndef MG_CP_FLOWLOG_H
#define MG_CP_FLOWLOG_H

#include <stddef.h>
#include <stdint.h>

#include "mg_abi.h"

struct cp_device;

/* Opens flow_log.file (created 0600, appended to) if the config has one.
 * 0, or -errno (logged). */
int cp_flowlog_init(struct cp_device *d);
void cp_flowlog_fini(struct cp_device *d);
/* SIGHUP: reopen the file (after log rotation moved it). */
void cp_flowlog_reopen(struct cp_device *d);
/* Drain the workers' rings into the file; the records written. */
unsigned cp_flowlog_poll(struct cp_device *d);

/* One record as a JSON line (with its '\n') into buf: its length, or 0 if
 * it does not fit. start_ns/end_ns: wall-clock time of its first and last
 * packet; peer_name may be "". Pure, for tests. */
size_t cp_flowlog_format(char *buf, size_t len, const struct mg_flow_record *r,
			 const uint8_t node_pub[32], const uint8_t *peer_pub, const char *peer_name,
			 uint64_t start_ns, uint64_t end_ns);

#endif /* MG_CP_FLOWLOG_H */
