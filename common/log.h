/* SPDX-License-Identifier: MIT */
/* One logging convention for both processes: "<time> <prog>[pid] <level>: msg" on stderr. */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <syslog.h>

void mg_log_init(const char *prog, int level);
void mg_log_set_level(int level);
void mg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* MG_LOG_H */
