/* SPDX-License-Identifier: Apache-2.0 */
/* clock.h — time as Nex stores and shows it: Unix milliseconds inside, RFC 3339 (UTC, millisecond precision)
 * outside. */
#ifndef NEX_CLOCK_H
#define NEX_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Wall-clock time now, in Unix milliseconds. */
int64_t nex_clock_now_ms (void);

/* Monotonic time now, in milliseconds (for deadlines and durations). */
int64_t nex_clock_mono_ms (void);

/* Formats MS as "2026-11-23T08:39:00.123Z" into BUF (at least NEX_CLOCK_RFC3339_LEN bytes); returns BUF. */
#define NEX_CLOCK_RFC3339_LEN 32
char *nex_clock_format (int64_t ms, char *buf, size_t size);

#endif
