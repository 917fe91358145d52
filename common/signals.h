/* SPDX-License-Identifier: MIT */
/*
 * Signals of the standalone servers (meshgate-stund, meshgate-derpd), which
 * wait in epoll_pwait/ppoll: SIGTERM, SIGINT and SIGUSR1 go to handler, and
 * are blocked except while waiting, so a signal never interrupts a half-done
 * step and never arrives unseen just before a wait.
 */
#ifndef MG_SIGNALS_H
#define MG_SIGNALS_H

#include <signal.h>

/* Install handler for the three, block them; *wait_mask is the mask to wait
 * with (the one before, with the three unblocked). */
void mg_signals_setup(void (*handler)(int), sigset_t *wait_mask);

#endif /* MG_SIGNALS_H */
