/* SPDX-License-Identifier: Apache-2.0 */
/* api/tokens.c — managing the API's bearer tokens (scope admin): POST /v1/tokens creates one and shows its
 * secret once, GET /v1/tokens lists them (never a secret), DELETE /v1/tokens/{id} revokes one.  The rules and the
 * storage are server/auth.c's. */
#include "server/api/api.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#define MAX_LIMIT 1000

static int
token_create (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  const json_t *b = req->body;
  static const char *const known[] = { "name", "scopes", "namespaces", NULL };
  if (nex_api_body_fields (b, known, err) < 0)
    return -1;
  const json_t *name = json_object_get (b, "name");
  if (!json_is_string (name))
    return nex_error_field (err, "name", name ? "must be a string" : "is required");
  if (json_object_get (b, "scopes") == NULL)
    return nex_error_field (err, "scopes", "is required");
  if (nex_auth_token_create (req->node->auth, json_string_value (name), json_object_get (b, "scopes"),
                             json_object_get (b, "namespaces"), &res->body, err)
      < 0)
    return -1;
  res->status = 201;
  return 0;
}

static int
token_list (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  long long limit;
  if (nex_api_query_int (req, "limit", 1, MAX_LIMIT, MAX_LIMIT, &limit, err) < 0)
    return -1;
  const char *cursor = nex_api_query (req, "cursor");
  cleanup_json json_t *all = nex_auth_token_list (req->node->auth, err);
  if (all == NULL)
    return -1;
  /* The list is short and ordered (oldest first): the cursor is the id of the last token of a page. */
  size_t start = 0;
  if (cursor && *cursor)
    {
      size_t i;
      json_t *t;
      int found = 0;
      json_array_foreach (all, i, t)
      {
        if (strcmp (json_string_value (json_object_get (t, "id")), cursor) == 0)
          {
            start = i + 1;
            found = 1;
          }
      }
      if (!found)
        return nex_error_field (err, "cursor", "not a cursor this node gave out (use next_cursor of an earlier page)");
    }
  json_t *page = json_array ();
  size_t n = json_array_size (all);
  for (size_t i = start; i < n && json_array_size (page) < (size_t)limit; i++)
    json_array_append (page, json_array_get (all, i));
  size_t end = start + json_array_size (page);
  const char *next
      = end > 0 ? json_string_value (json_object_get (json_array_get (all, end - 1), "id")) : (cursor ? cursor : "");
  res->body = json_pack ("{s:o, s:I, s:s, s:b}", "tokens", page, "count", (json_int_t)json_array_size (page),
                         "next_cursor", next, "has_more", end < n);
  return 0;
}

static int
token_revoke (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  return nex_auth_token_revoke (req->node->auth, req->params[0], &res->body, err);
}

const nex_api_route_t nex_api_token_routes[] = {
  { "POST", "/v1/tokens", token_create, NEX_API_BODY_JSON },
  { "GET", "/v1/tokens", token_list, 0 },
  { "DELETE", "/v1/tokens/{id}", token_revoke, 0 },
  { NULL, NULL, NULL, 0 },
};
