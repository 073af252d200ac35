/* SPDX-License-Identifier: Apache-2.0 */
/* api/artifacts.c — routes about artifacts: uploading an executable into the node's content-addressed cache
 * (POST /v1/artifacts) and asking whether it is there (GET /v1/artifacts/{sha256}).
 *
 * An upload lets a client deploy from another machine: `nex run ./prog` uploads prog (unless the node has it
 * already) and deploys `artifact://<sha256>`.  The body is the raw executable, streamed to disk as it arrives
 * and bounded by max_artifact_bytes (413 beyond, refused before reading when the length is declared); the same
 * checks as a fetch apply before anything is published (artifacts/artifact.h). */
#include "server/api/api.h"

#include <inttypes.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/artifact.h"
#include "server/metrics.h"

/* The public description of cache entry DIGEST of SIZE bytes. */
static json_t *
artifact_json (const char *digest, uint64_t size)
{
  cleanup_free char *url = nex_xasprintf ("artifact://%s", digest);
  return json_pack ("{s:s, s:I, s:s}", "sha256", digest, "size", (json_int_t)size, "url", url);
}

/* The optional ?sha256= the client expects the upload to have; NEX_ERR_INVALID when malformed. */
static int
expected_digest (const nex_api_request_t *req, const char **out, nex_error_t *err)
{
  const char *v = nex_api_query (req, "sha256");
  *out = v;
  if (v == NULL)
    return 0;
  size_t n = strspn (v, "0123456789abcdefABCDEF");
  if (n != 64 || v[n] != '\0')
    return nex_error_field (err, "sha256", "query parameter `sha256` must be 64 hexadecimal digits");
  return 0;
}

static int
upload_begin (nex_api_request_t *req, int64_t declared, void **state, nex_error_t *err)
{
  const nex_config_t *cfg = req->node->cfg;
  const char *expected;
  if (expected_digest (req, &expected, err) < 0)
    return -1;
  /* Refused before a byte is read: a declared oversized upload never touches the disk. */
  if (declared > cfg->max_artifact_bytes)
    return nex_error_set (err, NEX_ERR_TOO_LARGE,
                          "the artifact (%" PRId64 " bytes) exceeds the node's limit of %" PRId64 " bytes", declared,
                          cfg->max_artifact_bytes);
  *state = nex_artifact_upload_begin (req->node->artifacts_dir, (uint64_t)cfg->max_artifact_bytes, err);
  return *state ? 0 : -1;
}

static int
upload_write (void *state, const void *data, size_t n, nex_error_t *err)
{
  return nex_artifact_upload_write (state, data, n, err);
}

static int
upload_finish (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  const char *expected;
  if (expected_digest (req, &expected, err) < 0)
    return -1;
  char digest[65];
  uint64_t size;
  int existed;
  if (nex_artifact_upload_finish (req->upload, expected, digest, &size, &existed, err) < 0)
    return -1;
  res->status = existed ? 200 : 201;
  res->body = artifact_json (digest, size);
  nex_metrics_upload (size);
  return 0;
}

static void
upload_discard (void *state)
{
  nex_artifact_upload_free (state);
}

static int
artifact_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  const char *sha = req->params[0];
  uint64_t size;
  int r = nex_artifact_cached (req->node->artifacts_dir, sha, &size, err);
  if (r < 0 && (*err)->kind == NEX_ERR_INVALID)
    {
      /* A malformed digest names no artifact: the resource does not exist. */
      nex_error_free (err);
      return nex_error_set (err, NEX_ERR_NOT_FOUND, "no artifact `%.80s`: artifacts are named by their SHA-256", sha);
    }
  if (r < 0)
    return -1;
  if (r == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no artifact with sha256 %s on this node", sha);
  char digest[65];
  for (size_t i = 0; i < 65; i++)
    digest[i] = (char)(sha[i] >= 'A' && sha[i] <= 'F' ? sha[i] + 32 : sha[i]);
  res->body = artifact_json (digest, size);
  return 0;
}

const nex_api_route_t nex_api_artifact_routes[] = {
  { "GET", "/v1/artifacts/{sha256}", artifact_get, 0 },
  { NULL, NULL, NULL, 0 },
};

const nex_api_upload_route_t nex_api_artifact_uploads[] = {
  { "POST", "/v1/artifacts", upload_begin, upload_write, upload_finish, upload_discard },
  { NULL, NULL, NULL, NULL, NULL, NULL },
};
