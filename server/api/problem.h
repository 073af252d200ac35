/* SPDX-License-Identifier: Apache-2.0 */
/* problem.h — the one mapping from nex_error_t to HTTP: RFC 9457 problem details.
 *
 * Kinds map to statuses (invalid 422, malformed 400, unauthenticated 401, forbidden 403, not_found 404, timeout
 * 408, conflict 409, too_large 413, unavailable 503, no_space 507, anything else 500).  The body is {"type", "title",
 * "status", "detail", "instance"} plus "field" for validation errors.  Internal errors (500) do not leak their message
 * to the client beyond a generic detail; the full message is logged. */
#ifndef NEX_PROBLEM_H
#define NEX_PROBLEM_H

#include <jansson.h>

#include "common/error.h"

/* The HTTP status for an error of KIND. */
unsigned nex_problem_status (nex_error_kind_t kind);

/* A problem document with STATUS, a DETAIL and optional FIELD, about request path INSTANCE.  New reference. */
json_t *nex_problem_new (unsigned status, const char *detail, const char *field, const char *instance);

/* The problem document for ERR about INSTANCE; *STATUS receives the status.  New reference. */
json_t *nex_problem_from_error (const nex_error_s *err, const char *instance, unsigned *status);

#endif
