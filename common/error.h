/* SPDX-License-Identifier: Apache-2.0 */
/* error.h — the one error type carried through Nex.
 *
 * A fallible function takes `nex_error_t *err` as its last argument and returns a negative int (or NULL) on
 * failure after filling *err.  The error records a kind (what went wrong, in terms a caller can act on), the
 * errno that caused it (0 if none), the name of the offending input field (for validation errors) and a
 * human-readable message.  Context is added on the way up with nex_error_wrap().  Only the edges translate an
 * error into something else: the HTTP layer into RFC 9457 problem JSON (server/api/problem.c), the agent and the
 * wire protocol into an ERROR frame.
 *
 * Thread safety: an error value belongs to the thread that set it; nothing here touches global state. */
#ifndef NEX_ERROR_H
#define NEX_ERROR_H

#include <stdarg.h>

typedef enum nex_error_kind
{
  NEX_ERR_SYSTEM = 1,      /* an OS or library call failed; errnum says why (HTTP 500) */
  NEX_ERR_MALFORMED,       /* input could not be parsed at all, e.g. bad JSON (HTTP 400) */
  NEX_ERR_INVALID,         /* input parsed but a field is missing, wrong-typed or refused (HTTP 422) */
  NEX_ERR_NOT_FOUND,       /* the thing named does not exist (HTTP 404) */
  NEX_ERR_CONFLICT,        /* the request is valid but not in the current state (HTTP 409) */
  NEX_ERR_TOO_LARGE,       /* input exceeds a configured bound (HTTP 413) */
  NEX_ERR_UNAVAILABLE,     /* a needed facility is missing on this host (HTTP 503) */
  NEX_ERR_PROTOCOL,        /* a peer (agent, guest) broke the wire protocol */
  NEX_ERR_TIMEOUT,         /* what was waited for did not happen in time (HTTP 408) */
  NEX_ERR_UNAUTHENTICATED, /* no credentials, or unknown ones (HTTP 401) */
  NEX_ERR_FORBIDDEN,       /* the credentials do not allow this (HTTP 403) */
  NEX_ERR_NO_SPACE,        /* the node's disk (or quota) is full: ENOSPC, EDQUOT, SQLITE_FULL (HTTP 507) */
} nex_error_kind_t;

typedef struct nex_error_s
{
  nex_error_kind_t kind; /* category, see above */
  int errnum;            /* errno at the source, 0 if not an OS error */
  char *field;           /* offending input field for NEX_ERR_INVALID, else NULL */
  char *msg;             /* complete message, context first ("deploy: open `x`: No such file") */
} nex_error_s;

typedef nex_error_s *nex_error_t;

/* Records an error of KIND in *ERR (which must be NULL: errors are never silently overwritten; if it is not,
 * the new one is dropped) and returns -1 so that callers can write `return nex_error_set (...)`.  ERR may be
 * NULL when the caller does not care.  Allocation failure aborts the process. */
int nex_error_set (nex_error_t *err, nex_error_kind_t kind, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* As nex_error_set with kind NEX_ERR_SYSTEM; appends ": strerror(ERRNUM)" and keeps ERRNUM. */
int nex_error_sys (nex_error_t *err, int errnum, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

/* As nex_error_set with kind NEX_ERR_INVALID, naming FIELD (a JSON path such as "env.PATH"). */
int nex_error_field (nex_error_t *err, const char *field, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

/* Prefixes context to an existing error ("starting `x`: " + old message); returns -1.  A no-op when ERR or
 * *ERR is NULL. */
int nex_error_wrap (nex_error_t *err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* Frees *ERR and sets it to NULL.  Safe on NULL and on an empty error. */
void nex_error_free (nex_error_t *err);

/* A short stable name for KIND ("invalid", "not_found", ...) used in problem types and logs. */
const char *nex_error_kind_name (nex_error_kind_t kind);

#endif
