/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-image-manifest.c — feeds hostile manifests, indexes and configs to the checks of an image pull
 * (nex_distribution_pull, server/artifacts/distribution.c), through its OCI layout source: a fresh layout
 * directory per run whose index.json and blobs come from the input, pulled into a fresh blob store.  This reaches
 * every check made on what a registry or layout serves: the index's descriptor for the reference (by digest, by
 * the ref.name annotation, or the only one), descriptors' digests and sizes, the manifest's media type (given or
 * guessed from its shape), the platform choice in an index (linux and this host's architecture), an index naming
 * an index, the config's descriptor and bound, the layers' count, media types and foreign `urls`, and the
 * SHA-256 and size of every blob against its descriptor.
 *
 * The input: one byte choosing the reference (0: oci-layout:///dir, 1: :v1, 2: @digest of part 1), then up to 8
 * parts separated by NUL bytes: part 0 is index.json, parts 1..7 are blobs, each stored under its own digest.  So
 * that the fuzzer can build chains of descriptors that verify, `#k` in a part (k a digit 1..7 greater than the
 * part's own number) is replaced by "sha256:<hex>" of part k and `%k` by part k's size, parts being finished
 * from the last to the first.
 *
 * Not reached here: what only a registry sends (Content-Type against mediaType, Docker-Content-Digest, the
 * WWW-Authenticate challenge, redirects), which needs an HTTP server and is covered by the integration tests.
 *
 * Invariants: a refusal is NEX_ERR_INVALID on field "image" or NEX_ERR_TOO_LARGE, and leaves the result empty;
 * an accepted pull has a manifest digest and a config digest that are among the parts, a config that is a JSON
 * object, 1..NEX_PULL_MAX_LAYERS layers each with a digest, a media type and its blob in the store at its size,
 * and `bytes` the sum of config and layers. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/distribution.h"
#include "server/artifacts/layer.h"
#include "tests/fuzz/fuzz.h"

enum
{
  MAX_PARTS = 8
};

typedef struct part
{
  char *bytes;
  size_t len;
  char digest[72];
} part_t;

static void
digest_of (const char *p, size_t len, char out[72])
{
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256 (d, (const unsigned char *)p, len);
  strcpy (out, "sha256:");
  sodium_bin2hex (out + 7, 65, d, sizeof d);
}

/* Part I with `#k`/`%k` (k > I) replaced by part k's digest and size. */
static void
finish_part (part_t *parts, size_t n, size_t i)
{
  part_t *p = &parts[i];
  size_t cap = p->len * 72 + 1, o = 0;
  char *out = nex_xmalloc (cap);
  for (size_t j = 0; j < p->len; j++)
    {
      char c = p->bytes[j];
      size_t k = j + 1 < p->len ? (size_t)(p->bytes[j + 1] - '0') : 0;
      if ((c == '#' || c == '%') && j + 1 < p->len && p->bytes[j + 1] >= '1' && p->bytes[j + 1] <= '7' && k > i
          && k < n)
        {
          if (c == '#')
            o += (size_t)snprintf (out + o, cap - o, "%s", parts[k].digest);
          else
            o += (size_t)snprintf (out + o, cap - o, "%zu", parts[k].len);
          j++;
          continue;
        }
      out[o++] = c;
    }
  free (p->bytes);
  p->bytes = out;
  p->len = o;
  digest_of (p->bytes, p->len, p->digest);
}

static void
write_file (const char *path, const char *p, size_t len)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  fuzz_check (fd >= 0 && write (fd, p, len) == (ssize_t)len, "a layout file is written");
}

static int
is_part_digest (const part_t *parts, size_t n, const char *digest)
{
  for (size_t i = 1; i < n; i++)
    if (strcmp (parts[i].digest, digest) == 0)
      return 1;
  return 0;
}

static void
check_pulled (const nex_pulled_t *out, const part_t *parts, size_t n, const char *blobs)
{
  fuzz_check (is_part_digest (parts, n, out->digest), "the manifest is one of the blobs");
  fuzz_check (is_part_digest (parts, n, out->config_digest), "the config is one of the blobs");
  fuzz_check (json_is_object (out->config), "the config is a JSON object");
  fuzz_check (out->n_layers >= 1 && out->n_layers <= NEX_PULL_MAX_LAYERS, "the layers are within the bound");
  struct stat st;
  cleanup_free char *cpath = nex_distribution_blob_path (blobs, out->config_digest);
  fuzz_check (stat (cpath, &st) == 0, "the config is in the blob store");
  uint64_t total = (uint64_t)st.st_size;
  for (size_t i = 0; i < out->n_layers; i++)
    {
      const nex_pulled_layer_t *l = &out->layers[i];
      fuzz_check (nex_image_digest_valid (l->digest) && l->media_type, "a layer has a digest and a media type");
      cleanup_free char *path = nex_distribution_blob_path (blobs, l->digest);
      fuzz_check (stat (path, &st) == 0 && (uint64_t)st.st_size == l->size, "a layer is in the store at its size");
      total += l->size;
    }
  fuzz_check (out->bytes == total, "bytes is the sum of config and layers");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  int form = data[0] % 3;
  part_t parts[MAX_PARTS] = { 0 };
  size_t n = 0;
  const char *p = (const char *)data + 1, *end = (const char *)data + size;
  while (n < MAX_PARTS && p <= end)
    {
      const char *nul = memchr (p, '\0', (size_t)(end - p));
      size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);
      parts[n].bytes = nex_xstrndup (p, len);
      parts[n].len = len;
      n++;
      if (nul == NULL)
        break;
      p = nul + 1;
    }
  for (size_t i = n; i-- > 0;)
    finish_part (parts, n, i);

  char dir[64];
  snprintf (dir, sizeof dir, "%s/nex-fuzz-image-manifest.XXXXXX", fuzz_tmp_base ());
  fuzz_check (mkdtemp (dir) != NULL, "a temporary directory is made");
  cleanup_free char *layout = nex_xasprintf ("%s/layout", dir);
  cleanup_free char *blobs = nex_xasprintf ("%s/blobs", dir);
  cleanup_free char *sha = nex_xasprintf ("%s/layout/blobs/sha256", dir);
  fuzz_check (mkdir (layout, 0755) == 0 && mkdir (blobs, 0755) == 0, "the directories are made");
  cleanup_free char *lb = nex_xasprintf ("%s/layout/blobs", dir);
  fuzz_check (mkdir (lb, 0755) == 0 && mkdir (sha, 0755) == 0, "the layout's blob directory is made");
  cleanup_free char *index = nex_xasprintf ("%s/index.json", layout);
  write_file (index, parts[0].bytes, parts[0].len);
  for (size_t i = 1; i < n; i++)
    {
      cleanup_free char *path = nex_xasprintf ("%s/%s", sha, parts[i].digest + 7);
      write_file (path, parts[i].bytes, parts[i].len);
    }

  cleanup_free char *text
      = form == 0   ? nex_xasprintf ("oci-layout://%s", layout)
        : form == 1 ? nex_xasprintf ("oci-layout://%s:v1", layout)
                    : nex_xasprintf ("oci-layout://%s@%s", layout, n > 1 ? parts[1].digest : parts[0].digest);
  nex_image_ref_t ref;
  cleanup_error nex_error_t err = NULL;
  fuzz_check (nex_image_ref_parse (text, "image", &ref, &err) == 0, "the layout reference parses");
  nex_pull_opts_t o = { .blobs_dir = blobs };
  nex_pulled_t out;
  if (nex_distribution_pull (&ref, &o, &out, &err) < 0)
    {
      fuzz_check (err
                      && ((err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "image") == 0)
                          || err->kind == NEX_ERR_TOO_LARGE),
                  "a refused pull is NEX_ERR_INVALID on field image or NEX_ERR_TOO_LARGE");
      fuzz_check (out.config == NULL && out.layers == NULL && out.n_layers == 0, "a refused pull leaves no result");
    }
  else
    check_pulled (&out, parts, n, blobs);
  nex_pulled_release (&out);
  nex_image_ref_release (&ref);
  fuzz_check (nex_layer_remove_tree (AT_FDCWD, dir) == 0 || errno == ENOENT, "the temporary directory is removed");
  for (size_t i = 0; i < n; i++)
    free (parts[i].bytes);
  return 0;
}
