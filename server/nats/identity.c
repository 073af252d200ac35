/* SPDX-License-Identifier: Apache-2.0 */
/* identity.c — see identity.h. */
#include "server/nats/identity.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

#define IDENTITY_MAX_BYTES 4096

static int
load (const char *path, nex_identity_t *id, nex_error_t *err)
{
  struct stat st;
  if (stat (path, &st) < 0)
    return nex_error_sys (err, errno, "stat `%s`", path);
  /* Seeds readable by others would let anyone on the host impersonate the node and read sealed secrets. */
  if ((st.st_mode & 077) != 0)
    return nex_error_field (err, "identity",
                            "`%s` holds the node's secret keys and must not be readable by "
                            "group or others (chmod 600)",
                            path);
  size_t len = 0;
  cleanup_free char *text = nex_file_read (path, IDENTITY_MAX_BYTES, &len, err);
  if (text == NULL)
    return -1;
  json_error_t jerr;
  cleanup_json json_t *root = json_loadb (text, len, 0, &jerr);
  sodium_memzero (text, len);
  const char *node_seed = json_string_value (json_object_get (root, "node_seed"));
  const char *xkey_seed = json_string_value (json_object_get (root, "xkey_seed"));
  uint8_t seed[32], prefix;
  if (node_seed == NULL || xkey_seed == NULL)
    return nex_error_field (err, "identity", "`%s` must hold node_seed and xkey_seed", path);
  if (nex_nkey_decode_seed (node_seed, &prefix, seed, err) < 0 || prefix != NEX_NKEY_SERVER)
    {
      nex_error_free (err);
      return nex_error_field (err, "identity", "`%s`: node_seed is not a server nkey seed (SN...)", path);
    }
  nex_nkey_sign_from_seed (NEX_NKEY_SERVER, seed, &id->node);
  if (nex_nkey_decode_seed (xkey_seed, &prefix, seed, err) < 0 || prefix != NEX_NKEY_CURVE)
    {
      nex_error_free (err);
      sodium_memzero (seed, sizeof seed);
      return nex_error_field (err, "identity", "`%s`: xkey_seed is not a curve nkey seed (SX...)", path);
    }
  nex_nkey_curve_from_seed (seed, &id->xkey);
  sodium_memzero (seed, sizeof seed);
  return 0;
}

static int
create (const char *path, nex_identity_t *id, nex_error_t *err)
{
  uint8_t seed[32];
  char node_seed[NEX_NKEY_SEED_LEN + 1], xkey_seed[NEX_NKEY_SEED_LEN + 1];
  randombytes_buf (seed, sizeof seed);
  nex_nkey_sign_from_seed (NEX_NKEY_SERVER, seed, &id->node);
  nex_nkey_encode_seed (NEX_NKEY_SERVER, seed, node_seed);
  randombytes_buf (seed, sizeof seed);
  nex_nkey_curve_from_seed (seed, &id->xkey);
  nex_nkey_encode_seed (NEX_NKEY_CURVE, seed, xkey_seed);
  sodium_memzero (seed, sizeof seed);
  cleanup_free char *text = nex_xasprintf ("{\"node_seed\": \"%s\", \"xkey_seed\": \"%s\", \"node_id\": \"%s\", "
                                           "\"public_xkey\": \"%s\"}\n",
                                           node_seed, xkey_seed, id->node.public_text, id->xkey.public_text);
  sodium_memzero (node_seed, sizeof node_seed);
  sodium_memzero (xkey_seed, sizeof xkey_seed);
  int r = nex_file_write_atomic (path, text, strlen (text), 0600, err);
  sodium_memzero (text, strlen (text));
  return r;
}

int
nex_identity_load (const char *data_dir, nex_identity_t *id, nex_error_t *err)
{
  memset (id, 0, sizeof *id);
  cleanup_free char *path = nex_xasprintf ("%s/identity.json", data_dir);
  if (access (path, F_OK) == 0)
    return load (path, id, err);
  if (errno != ENOENT)
    return nex_error_sys (err, errno, "access `%s`", path);
  return create (path, id, err);
}

void
nex_identity_wipe (nex_identity_t *id)
{
  sodium_memzero (id, sizeof *id);
}
