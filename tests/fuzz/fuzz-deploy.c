/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-deploy.c — feeds hostile bytes to the deploy request's path as POST /v1/workloads takes it: the request
 * body checks every JSON route gets (nex_api_body_parse: depth bound, duplicate keys), then
 * nex_workload_from_request (server/workload.c), every field's validation, with the node's default driver, and
 * for an accepted request the artifact URL check nex_deploy_submit makes next (nex_artifact_check_url, the part
 * of its precheck that touches nothing outside memory).
 *
 * Invariants: a refusal is NEX_ERR_INVALID (a 400 or 422, never a 500); an accepted workload is pending, has the
 * fields the API promises (name, namespace, artifact, argv array, env object, labels object), shows as JSON
 * (nex_workload_to_json) and its resources survive the store's round trip (nex_resources_to_json and back); a
 * refused URL is NEX_ERR_INVALID on field "artifact". */
#include <string.h>

#include "common/cleanup.h"
#include "server/api/api.h"
#include "server/artifacts/artifact.h"
#include "server/workload.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *body = nex_api_body_parse ((const char *)data, size, &err);
  if (body == NULL)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID, "a body that does not parse is a 400");
      return 0;
    }
  nex_workload_t w = { 0 };
  if (nex_workload_from_request (body, "sandbox", &w, &err) < 0)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID, "a refused deploy is NEX_ERR_INVALID");
      nex_workload_release (&w);
      return 0;
    }
  fuzz_check (w.state == NEX_STATE_PENDING, "a new workload is pending");
  fuzz_check (w.name && w.namespace_ && w.artifact && w.driver, "the required fields are set");
  fuzz_check (json_is_array (w.argv) && json_is_object (w.env) && json_is_object (w.labels),
              "argv, env and labels have their types");
  cleanup_json json_t *shown = nex_workload_to_json (&w);
  fuzz_check (json_is_object (shown), "an accepted workload shows as JSON");
  cleanup_json json_t *res = nex_resources_to_json (&w.resources);
  nex_resources_t back;
  memset (&back, 0, sizeof back);
  nex_resources_from_json (res, &back);
  cleanup_json json_t *res2 = nex_resources_to_json (&back);
  fuzz_check (json_equal (res, res2), "resources survive the store's round trip");
  if (nex_artifact_check_url (w.artifact, &err) < 0)
    fuzz_check (err && err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "artifact") == 0,
                "a refused artifact URL is NEX_ERR_INVALID on field artifact");
  nex_workload_release (&w);
  return 0;
}
