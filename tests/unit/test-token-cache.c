/* SPDX-License-Identifier: Apache-2.0 */
/* test-token-cache.c — unit tests of the registry token cache (server/artifacts/token-cache.c): a token given
 * out until its expiry less the margin, per key, replaced, dropped, the default expiry, and a full cache making
 * room with the entry nearest its end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "server/artifacts/token-cache.h"
#include "tests/unit/tap.h"

static int
is (char *got, const char *want)
{
  int ok = (got == NULL && want == NULL) || (got && want && strcmp (got, want) == 0);
  free (got);
  return ok;
}

int
main (void)
{
  nex_token_cache_t *c = nex_token_cache_new ();
  nex_token_cache_put (c, "r s repository:a:pull", "Authorization: Bearer A", 10, 1000);
  TAP_OK (is (nex_token_cache_get (c, "r s repository:a:pull", 1000), "Authorization: Bearer A"), "kept");
  TAP_OK (is (nex_token_cache_get (c, "r s repository:b:pull", 1000), NULL), "another scope has none");
  TAP_OK (is (nex_token_cache_get (c, "r s repository:a:pull", 1000 + 8999), "Authorization: Bearer A"),
          "given out until the margin before its end");
  TAP_OK (is (nex_token_cache_get (c, "r s repository:a:pull", 1000 + 9000), NULL), "not within the margin");
  TAP_OK (is (nex_token_cache_get (c, "r s repository:a:pull", 1000), NULL), "an expired token is forgotten");
  nex_token_cache_put (c, "k", "Authorization: Bearer B", 0, 0);
  TAP_OK (is (nex_token_cache_get (c, "k", (NEX_TOKEN_DEFAULT_S - NEX_TOKEN_MARGIN_S) * 1000 - 1),
              "Authorization: Bearer B"),
          "no expires_in: the default");
  nex_token_cache_put (c, "k", "Authorization: Bearer C", 100, 0);
  TAP_OK (is (nex_token_cache_get (c, "k", 0), "Authorization: Bearer C"), "replaced");
  nex_token_cache_drop (c, "k");
  TAP_OK (is (nex_token_cache_get (c, "k", 0), NULL), "dropped");
  for (int i = 0; i < NEX_TOKEN_CACHE_MAX + 1; i++)
    {
      char key[32], header[64];
      snprintf (key, sizeof key, "key%d", i);
      snprintf (header, sizeof header, "Authorization: Bearer %d", i);
      nex_token_cache_put (c, key, header, i == 3 ? 5 : 1000, 0);
    }
  TAP_OK (is (nex_token_cache_get (c, "key3", 0), NULL), "full: the entry nearest its end made room");
  char want[64];
  snprintf (want, sizeof want, "Authorization: Bearer %d", NEX_TOKEN_CACHE_MAX);
  TAP_OK (is (nex_token_cache_get (c, "key0", 0), "Authorization: Bearer 0")
              && is (nex_token_cache_get (c, "key64", 0), want),
          "the others and the newest are kept");
  nex_token_cache_free (c);
  nex_token_cache_free (NULL);
  TAP_OK (is (nex_token_cache_get (NULL, "k", 0), NULL), "a NULL cache keeps nothing");
  return tap_done ();
}
