/* SPDX-License-Identifier: Apache-2.0 */
/* error.c — construction, wrapping and release of nex_error_t (see error.h for the contract). */
#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static int
error_vset (nex_error_t *err, nex_error_kind_t kind, int errnum, const char *field, const char *fmt, va_list ap)
{
  if (err == NULL || *err != NULL)
    return -1;
  nex_error_s *e = nex_xzalloc (sizeof *e);
  e->kind = kind;
  e->errnum = errnum;
  e->field = field ? nex_xstrdup (field) : NULL;
  char *msg = nex_xvasprintf (fmt, ap);
  if (errnum != 0)
    {
      e->msg = nex_xasprintf ("%s: %s", msg, strerror (errnum));
      free (msg);
    }
  else
    e->msg = msg;
  *err = e;
  return -1;
}

int
nex_error_set (nex_error_t *err, nex_error_kind_t kind, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  error_vset (err, kind, 0, NULL, fmt, ap);
  va_end (ap);
  return -1;
}

int
nex_error_sys (nex_error_t *err, int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  /* A full disk is not the node's bug but its operator's to fix: its own kind, so the client hears 507 and why. */
  nex_error_kind_t kind = errnum == ENOSPC || errnum == EDQUOT ? NEX_ERR_NO_SPACE : NEX_ERR_SYSTEM;
  error_vset (err, kind, errnum, NULL, fmt, ap);
  va_end (ap);
  return -1;
}

int
nex_error_field (nex_error_t *err, const char *field, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  error_vset (err, NEX_ERR_INVALID, 0, field, fmt, ap);
  va_end (ap);
  return -1;
}

int
nex_error_wrap (nex_error_t *err, const char *fmt, ...)
{
  if (err == NULL || *err == NULL)
    return -1;
  va_list ap;
  va_start (ap, fmt);
  char *ctx = nex_xvasprintf (fmt, ap);
  va_end (ap);
  char *msg = nex_xasprintf ("%s: %s", ctx, (*err)->msg);
  free (ctx);
  free ((*err)->msg);
  (*err)->msg = msg;
  return -1;
}

void
nex_error_free (nex_error_t *err)
{
  if (err == NULL || *err == NULL)
    return;
  free ((*err)->field);
  free ((*err)->msg);
  free (*err);
  *err = NULL;
}

const char *
nex_error_kind_name (nex_error_kind_t kind)
{
  switch (kind)
    {
    case NEX_ERR_SYSTEM:
      return "system";
    case NEX_ERR_MALFORMED:
      return "malformed";
    case NEX_ERR_INVALID:
      return "invalid";
    case NEX_ERR_NOT_FOUND:
      return "not_found";
    case NEX_ERR_CONFLICT:
      return "conflict";
    case NEX_ERR_TOO_LARGE:
      return "too_large";
    case NEX_ERR_UNAVAILABLE:
      return "unavailable";
    case NEX_ERR_PROTOCOL:
      return "protocol";
    case NEX_ERR_TIMEOUT:
      return "timeout";
    case NEX_ERR_UNAUTHENTICATED:
      return "unauthenticated";
    case NEX_ERR_FORBIDDEN:
      return "forbidden";
    case NEX_ERR_NO_SPACE:
      return "no_space";
    }
  return "unknown";
}
