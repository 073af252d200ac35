/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-nats-control.c — feeds hostile bytes to the NATS control API's payload handling (server/nats/control.c)
 * as the handlers of $NEX.DEPLOY and $NEX.AUCTION take a message's body: nex_nats_body_parse, then for a deploy
 * nex_nats_deploy_fields (nex's field names turned into the REST ones, target node and namespace checks) and the
 * same nex_workload_from_request a REST deploy goes through, and for an auction nex_nats_auction_matches against
 * a node's tags.  The same bytes go to both.
 *
 * Invariants: refusals are NEX_ERR_INVALID (the reply's error, never an internal one); the fields of an accepted
 * deploy carry the subject's namespace and none of nex's names (workload_name, location, hash, target_node); a
 * workload made from them is in that namespace. */
#include <string.h>

#include "common/cleanup.h"
#include "server/nats/internal.h"
#include "server/workload.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_NODE "NBOBBYTABLESBOBBYTABLESBOBBYTABLESBOBBYTABLESBOBBYTABLE"

static void
fuzz_deploy (const uint8_t *data, size_t size)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *body = nex_nats_body_parse ((const char *)data, size, 0, &err);
  if (body == NULL)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID, "a body that does not parse is NEX_ERR_INVALID");
      return;
    }
  cleanup_json json_t *fields = nex_nats_deploy_fields (FUZZ_NODE, body, "fuzzns", &err);
  if (fields == NULL)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID, "refused deploy fields are NEX_ERR_INVALID");
      return;
    }
  fuzz_check (json_is_object (fields), "the deploy fields are an object");
  fuzz_check (strcmp (json_string_value (json_object_get (fields, "namespace")) ?: "", "fuzzns") == 0,
              "the fields carry the subject's namespace");
  static const char *const nex_names[] = { "workload_name", "location", "hash", "target_node" };
  for (size_t i = 0; i < sizeof nex_names / sizeof nex_names[0]; i++)
    fuzz_check (json_object_get (fields, nex_names[i]) == NULL, "nex's field names are translated");
  nex_workload_t w = { 0 };
  if (nex_workload_from_request (fields, "sandbox", &w, &err) == 0)
    fuzz_check (strcmp (w.namespace_, "fuzzns") == 0, "the workload is in the subject's namespace");
  else
    fuzz_check (err && err->kind == NEX_ERR_INVALID, "a refused deploy is NEX_ERR_INVALID");
  nex_workload_release (&w);
}

static void
fuzz_auction (const uint8_t *data, size_t size)
{
  cleanup_json json_t *body = nex_nats_body_parse ((const char *)data, size, 1, NULL);
  if (body == NULL)
    return;
  cleanup_json json_t *tags
      = json_pack ("{s:s, s:s, s:s, s:s}", "nex.os", "linux", "nex.arch", "amd64", "nex.cpucount", "2", "rack", "r1");
  int m = nex_nats_auction_matches (tags, body);
  fuzz_check (m == 0 || m == 1, "an auction matches or not");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_deploy (data, size);
  fuzz_auction (data, size);
  return 0;
}
