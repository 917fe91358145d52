/* SPDX-License-Identifier: MIT */
#include "signals.h"

#include <stddef.h>

static const int handled[] = {SIGTERM, SIGINT, SIGUSR1};

void mg_signals_setup(void (*handler)(int), sigset_t *wait_mask)
{
	struct sigaction sa = {.sa_handler = handler};
	sigset_t block;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		sigaddset(&block, handled[i]);
	sigprocmask(SIG_BLOCK, &block, wait_mask);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
		sigaction(handled[i], &sa, NULL);
		sigdelset(wait_mask, handled[i]);
	}
}
