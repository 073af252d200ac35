/* SPDX-License-Identifier: Apache-2.0 */
/* clock.c — see clock.h. */
#include "server/clock.h"

#include <stdio.h>
#include <time.h>

int64_t
nex_clock_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
nex_clock_mono_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
nex_clock_format (int64_t ms, char *buf, size_t size)
{
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r (&secs, &tm);
  snprintf (buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, (int)(ms % 1000));
  return buf;
}
