/* SPDX-License-Identifier: Apache-2.0 */
/* test-auth.c — unit tests for the request policy and scope parsing of server/auth.c: which scope each method
 * and path needs (public paths need none), how scopes nest, and what a token's namespace list allows. */
#include <string.h>

#include "common/cleanup.h"
#include "server/auth.h"
#include "tests/unit/tap.h"

static void
test_required (void)
{
  static const struct
  {
    const char *method, *path;
    unsigned need;
  } cases[] = {
    { "GET", "/healthz", 0 },
    { "GET", "/readyz", 0 },
    { "GET", "/docs", 0 },
    { "GET", "/openapi.yaml", 0 },
    { "GET", "/", 0 },
    { "GET", "/metrics", NEX_SCOPE_READ },
    { "GET", "/v1/node", NEX_SCOPE_READ },
    { "HEAD", "/v1/workloads", NEX_SCOPE_READ },
    { "GET", "/v1/workloads/x/logs", NEX_SCOPE_READ },
    { "GET", "/v1/workloads/x/exec", NEX_SCOPE_DEPLOY }, /* the interactive exec session runs a command */
    { "GET", "/v1/workloads/exec", NEX_SCOPE_READ },
    { "POST", "/v1/workloads", NEX_SCOPE_DEPLOY },
    { "DELETE", "/v1/workloads/x", NEX_SCOPE_DEPLOY },
    { "POST", "/v1/artifacts", NEX_SCOPE_DEPLOY },
    { "PUT", "/v1/anything/new", NEX_SCOPE_DEPLOY },
    { "BREW", "/v1/node", NEX_SCOPE_DEPLOY },
    { "GET", "/v1/tokens", NEX_SCOPE_ADMIN },
    { "DELETE", "/v1/tokens/0123456789abcdef", NEX_SCOPE_ADMIN },
    { "GET", "/v1/tokensmith", NEX_SCOPE_READ },
    { "GET", "/v1", NEX_SCOPE_READ },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    TAP_OK (nex_auth_required (cases[i].method, cases[i].path) == cases[i].need, "%s %s needs %u", cases[i].method,
            cases[i].path, cases[i].need);
}

static void
test_scopes (void)
{
  nex_error_t err = NULL;
  unsigned bits;
  cleanup_json json_t *deploy = json_pack ("[s]", "deploy");
  TAP_OK (nex_auth_parse_scopes (deploy, &bits, &err) == 0 && bits == (NEX_SCOPE_READ | NEX_SCOPE_DEPLOY),
          "deploy includes read");
  cleanup_json json_t *admin = json_pack ("[s]", "admin");
  TAP_OK (nex_auth_parse_scopes (admin, &bits, &err) == 0
              && bits == (NEX_SCOPE_READ | NEX_SCOPE_DEPLOY | NEX_SCOPE_ADMIN),
          "admin includes all");
  cleanup_json json_t *bad = json_pack ("[s, s]", "read", "root");
  TAP_OK (nex_auth_parse_scopes (bad, &bits, &err) < 0 && err && strcmp (err->field, "scopes[1]") == 0,
          "an unknown scope is refused, naming its index");
  nex_error_free (&err);
  cleanup_json json_t *empty = json_array ();
  TAP_OK (nex_auth_parse_scopes (empty, &bits, &err) < 0, "no scope at all is refused");
  nex_error_free (&err);
  TAP_OK (nex_auth_parse_scopes (NULL, &bits, &err) < 0, "a missing list is refused");
  nex_error_free (&err);
}

static void
test_namespaces (void)
{
  nex_principal_t all = { .scopes = NEX_SCOPE_READ };
  TAP_OK (nex_principal_allows_namespace (&all, "anything"), "no list: every namespace");
  nex_principal_t some = { .scopes = NEX_SCOPE_READ, .namespaces = json_pack ("[s, s]", "a", "b") };
  TAP_OK (nex_principal_allows_namespace (&some, "b") && !nex_principal_allows_namespace (&some, "c")
              && !nex_principal_allows_namespace (&some, NULL),
          "a list: only those");
  nex_principal_release (&some);
  TAP_OK (some.namespaces == NULL && some.scopes == 0, "release clears the principal");
}

int
main (void)
{
  test_required ();
  test_scopes ();
  test_namespaces ();
  return tap_done ();
}
