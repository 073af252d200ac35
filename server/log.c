/* SPDX-License-Identifier: Apache-2.0 */
/* log.c — see log.h.  Lines are built with jansson so that any message text is escaped correctly. */
#include "server/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"

static nex_log_level_t log_level = NEX_LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

int
nex_log_level_parse (const char *name, nex_log_level_t *out, nex_error_t *err)
{
  for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
    if (strcmp (name, level_names[i]) == 0)
      {
        *out = (nex_log_level_t)i;
        return 0;
      }
  return nex_error_field (err, "log_level", "unknown log level `%s` (use debug, info, warn or error)", name);
}

void
nex_log_set_level (nex_log_level_t level)
{
  log_level = level;
}

/* Writes LINE (an object) and a newline to stderr in one write. */
static void
line_write (const json_t *line)
{
  cleanup_free char *text = json_dumps (line, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (text == NULL)
    return;
  size_t n = strlen (text);
  text[n] = '\n'; /* overwrite the NUL: one write, one line */
  (void)!write (STDERR_FILENO, text, n + 1);
}

static void
log_write (nex_log_level_t level, const nex_error_t err, const char *fmt, va_list ap)
{
  if (level < log_level)
    return;
  char ts[NEX_CLOCK_RFC3339_LEN];
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  cleanup_json json_t *line = json_pack ("{s:s, s:s, s:s}", "ts", nex_clock_format (nex_clock_now_ms (), ts, sizeof ts),
                                         "level", level_names[level], "msg", msg);
  if (line == NULL) /* the message was not valid UTF-8: keep the line, lose the text */
    line = json_pack ("{s:s, s:s, s:s}", "ts", ts, "level", level_names[level], "msg", "(unprintable message)");
  if (err)
    {
      json_object_set_new (line, "error", json_string (err->msg));
      json_object_set_new (line, "error_kind", json_string (nex_error_kind_name (err->kind)));
    }
  line_write (line);
}

void
nex_log_fields (nex_log_level_t level, const char *msg, json_t *fields)
{
  cleanup_json json_t *owned = fields;
  if (level < log_level)
    return;
  char ts[NEX_CLOCK_RFC3339_LEN];
  cleanup_json json_t *line = json_pack ("{s:s, s:s, s:s}", "ts", nex_clock_format (nex_clock_now_ms (), ts, sizeof ts),
                                         "level", level_names[level], "msg", msg);
  if (line == NULL)
    return;
  if (owned)
    json_object_update_missing (line, owned);
  line_write (line);
}

void
nex_log (nex_log_level_t level, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  log_write (level, NULL, fmt, ap);
  va_end (ap);
}

void
nex_log_error (nex_log_level_t level, const nex_error_t err, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  log_write (level, err, fmt, ap);
  va_end (ap);
}
