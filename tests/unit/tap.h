/* SPDX-License-Identifier: Apache-2.0 */
/* tap.h — a minimal TAP producer for Nex's C unit tests.
 *
 * Each check prints "ok N - name" or "not ok N - name", a check that cannot run here "ok N # SKIP why";
 * tap_done() prints the plan and returns the exit status (non-zero when any check failed), so
 * `return tap_done ();` ends main.  tests/run counts these lines. */
#ifndef NEX_TAP_H
#define NEX_TAP_H

#include <stdio.h>

static int tap_count_, tap_failed_;

#define TAP_OK(cond, ...)                                                                                              \
  do                                                                                                                   \
    {                                                                                                                  \
      int tap_c_ = (cond) ? 1 : 0;                                                                                     \
      tap_count_++;                                                                                                    \
      if (!tap_c_)                                                                                                     \
        tap_failed_++;                                                                                                 \
      printf ("%s %d - ", tap_c_ ? "ok" : "not ok", tap_count_);                                                       \
      printf (__VA_ARGS__);                                                                                            \
      printf ("\n");                                                                                                   \
      if (!tap_c_)                                                                                                     \
        printf ("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                                               \
      fflush (stdout);                                                                                                 \
    }                                                                                                                  \
  while (0)

/* A check that cannot run on this host: counted, passed, and marked SKIP with the reason. */
#define TAP_SKIP(...)                                                                                                  \
  do                                                                                                                   \
    {                                                                                                                  \
      printf ("ok %d # SKIP ", ++tap_count_);                                                                          \
      printf (__VA_ARGS__);                                                                                            \
      printf ("\n");                                                                                                   \
      fflush (stdout);                                                                                                 \
    }                                                                                                                  \
  while (0)

static inline int
tap_done (void)
{
  printf ("1..%d\n", tap_count_);
  return tap_failed_ ? 1 : 0;
}

#endif
