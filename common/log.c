/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_prog = "meshgate";
static int log_level = LOG_INFO;

void mg_log_init(const char *prog, int level)
{
	log_prog = prog;
	log_level = level;
}

void mg_log_set_level(int level)
{
	log_level = level;
}

void mg_log(int level, const char *fmt, ...)
{
	static const char *const names[] = {"emerg", "alert", "crit", "error",
					    "warn",  "notice", "info", "debug"};
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	flockfile(stderr);
	fprintf(stderr, "%s.%03ld %s[%d] %s: ", when, ts.tv_nsec / 1000000, log_prog, (int)getpid(),
		names[level & 7]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}
