/* SPDX-License-Identifier: Apache-2.0 */
/* api/images.c — the node's OCI image cache: GET /v1/images lists it (digest, references, size, last use, the
 * live workloads running each), POST /v1/images/pull pulls a reference ahead of a deploy (waiting for the pull),
 * DELETE /v1/images/{digest} removes an image no live workload uses (409 otherwise), POST /v1/images loads an
 * image tar sent as the body (an OCI image layout or a docker-archive, streamed to disk as it arrives: 201 with
 * the digests and the references it carried).  The cache itself is artifacts/image-store.c's. */
#include "server/api/api.h"

#include <string.h>

#include "common/cleanup.h"
#include "server/artifacts/image-store.h"

static int
image_list (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  json_t *images = nex_registry_image_list (req->node->reg, err);
  if (images == NULL)
    return -1;
  res->body = json_pack ("{s:o, s:I}", "images", images, "count", (json_int_t)json_array_size (images));
  return 0;
}

static int
image_pull (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  const json_t *b = req->body;
  static const char *const known[] = { "image", "refresh", NULL };
  if (nex_api_body_fields (b, known, err) < 0)
    return -1;
  const json_t *image = json_object_get (b, "image");
  const json_t *refresh = json_object_get (b, "refresh");
  if (!json_is_string (image))
    return nex_error_field (err, "image", image ? "must be a string" : "is required");
  if (refresh && !json_is_boolean (refresh))
    return nex_error_field (err, "refresh", "must be a boolean");
  /* A tag pulled before is asked of the registry again unless the client says otherwise: that is what a pull
   * ahead of time is for. */
  int again = refresh ? json_is_true (refresh) : 1;
  char digest[72];
  if (nex_image_store_pull_wait (req->node->images, json_string_value (image), again, digest, err) < 0)
    return -1;
  res->body = json_pack ("{s:s, s:s}", "image", json_string_value (image), "digest", digest);
  return 0;
}

static int
image_delete (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  if (nex_image_store_remove (req->node->images, req->params[0], err) < 0)
    return -1;
  res->body = json_pack ("{s:s, s:b}", "digest", req->params[0], "deleted", 1);
  return 0;
}

static int
load_begin (nex_api_request_t *req, int64_t declared, void **state, nex_error_t *err)
{
  /* A tar is what is loaded: a JSON or form body is a client mistaking the route for the pull. */
  const char *type = nex_api_header (req, "Content-Type");
  if (type && strncmp (type, "application/x-tar", 17) != 0 && strncmp (type, "application/octet-stream", 24) != 0)
    return nex_error_field (err, "Content-Type",
                            "the body must be an image tar sent as application/x-tar, not %.80s (to pull a "
                            "reference: POST /v1/images/pull)",
                            type);
  *state = nex_image_store_upload_begin (req->node->images, declared, err);
  return *state ? 0 : -1;
}

static int
load_write (void *state, const void *data, size_t n, nex_error_t *err)
{
  return nex_image_store_upload_write (state, data, n, err);
}

static int
load_finish (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  res->body = nex_image_store_upload_finish (req->upload, err);
  if (res->body == NULL)
    return -1;
  res->status = 201;
  return 0;
}

static void
load_discard (void *state)
{
  nex_image_store_upload_free (state);
}

const nex_api_upload_route_t nex_api_image_uploads[] = {
  { "POST", "/v1/images", load_begin, load_write, load_finish, load_discard },
  { NULL, NULL, NULL, NULL, NULL, NULL },
};

const nex_api_route_t nex_api_image_routes[] = {
  { "GET", "/v1/images", image_list, 0 },
  { "POST", "/v1/images/pull", image_pull, NEX_API_BODY_JSON },
  { "DELETE", "/v1/images/{digest}", image_delete, 0 },
  { NULL, NULL, NULL, 0 },
};
