/* SPDX-License-Identifier: Apache-2.0 */
/* log.h — nexd's own diagnostics: one JSON object per line on stderr ({"ts","level","msg",...}), filtered by a
 * level set once at start.  Safe from any thread (each line is written with one write(2)). */
#ifndef NEX_LOG_H
#define NEX_LOG_H

#include <jansson.h>

#include "common/error.h"

typedef enum nex_log_level
{
  NEX_LOG_DEBUG = 0,
  NEX_LOG_INFO,
  NEX_LOG_WARN,
  NEX_LOG_ERROR,
} nex_log_level_t;

/* Parses "debug", "info", "warn" or "error".  0 or -1 (NEX_ERR_INVALID). */
int nex_log_level_parse (const char *name, nex_log_level_t *out, nex_error_t *err);

/* Sets the lowest level that is written (default info).  Call before starting threads. */
void nex_log_set_level (nex_log_level_t level);

/* Writes one line at LEVEL with the formatted message. */
void nex_log (nex_log_level_t level, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* As nex_log at NEX_LOG_ERROR/WARN, adding the error's message (and kind) to the line. */
void nex_log_error (nex_log_level_t level, const nex_error_t err, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* Writes one line at LEVEL with message MSG and the members of FIELDS (an object, stolen; may be NULL) beside
 * "ts", "level" and "msg", for lines meant to be read by programs (the per-request line). */
void nex_log_fields (nex_log_level_t level, const char *msg, json_t *fields);

#define nex_debug(...) nex_log (NEX_LOG_DEBUG, __VA_ARGS__)
#define nex_info(...) nex_log (NEX_LOG_INFO, __VA_ARGS__)
#define nex_warn(...) nex_log (NEX_LOG_WARN, __VA_ARGS__)

#endif
