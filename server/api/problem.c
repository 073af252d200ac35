/* SPDX-License-Identifier: Apache-2.0 */
/* problem.c — see problem.h. */
#include "server/api/problem.h"

#include "common/xalloc.h"
#include "common/cleanup.h"

typedef struct
{
  unsigned status;
  const char *slug;
  const char *title;
} problem_kind_t;

static const problem_kind_t kinds[] = {
  { 400, "malformed-request", "Malformed request" },
  { 401, "unauthenticated", "Unauthorized" },
  { 403, "forbidden", "Forbidden" },
  { 404, "not-found", "Not Found" },
  { 405, "method-not-allowed", "Method Not Allowed" },
  { 408, "timeout", "Request Timeout" },
  { 409, "conflict", "Conflict" },
  { 413, "content-too-large", "Content Too Large" },
  { 422, "invalid-field", "Unprocessable Content" },
  { 426, "upgrade-required", "Upgrade Required" },
  { 431, "header-too-large", "Request Header Fields Too Large" },
  { 500, "internal-error", "Internal Server Error" },
  { 503, "unavailable", "Service Unavailable" },
  { 507, "insufficient-storage", "Insufficient Storage" },
};

unsigned
nex_problem_status (nex_error_kind_t kind)
{
  switch (kind)
    {
    case NEX_ERR_MALFORMED:
      return 400;
    case NEX_ERR_INVALID:
      return 422;
    case NEX_ERR_NOT_FOUND:
      return 404;
    case NEX_ERR_CONFLICT:
      return 409;
    case NEX_ERR_TOO_LARGE:
      return 413;
    case NEX_ERR_UNAVAILABLE:
      return 503;
    case NEX_ERR_TIMEOUT:
      return 408;
    case NEX_ERR_UNAUTHENTICATED:
      return 401;
    case NEX_ERR_FORBIDDEN:
      return 403;
    case NEX_ERR_NO_SPACE:
      return 507;
    case NEX_ERR_SYSTEM:
    case NEX_ERR_PROTOCOL:
      break;
    }
  return 500;
}

json_t *
nex_problem_new (unsigned status, const char *detail, const char *field, const char *instance)
{
  const problem_kind_t *k = NULL, *internal = NULL;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    {
      if (kinds[i].status == status)
        k = &kinds[i];
      if (kinds[i].status == 500)
        internal = &kinds[i];
    }
  if (k == NULL)
    k = internal;
  cleanup_free char *type = nex_xasprintf ("urn:nex:problem:%s", k->slug);
  json_t *p = json_pack ("{s:s, s:s, s:i, s:s}", "type", type, "title", k->title, "status", (int)status, "detail",
                         detail ? detail : k->title);
  if (p == NULL) /* detail was not valid UTF-8 */
    p = json_pack ("{s:s, s:s, s:i, s:s}", "type", type, "title", k->title, "status", (int)status, "detail", k->title);
  if (instance)
    json_object_set_new (p, "instance", json_string (instance));
  if (field)
    json_object_set_new (p, "field", json_string (field));
  return p;
}

json_t *
nex_problem_from_error (const nex_error_s *err, const char *instance, unsigned *status)
{
  *status = nex_problem_status (err->kind);
  /* A 500 is our fault: the client gets no internals (paths, errno text); the log has them. */
  const char *detail = *status == 500 ? "the node failed to handle this request; see its log" : err->msg;
  return nex_problem_new (*status, detail, err->kind == NEX_ERR_INVALID ? err->field : NULL, instance);
}
