/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-image-ref.c — feeds hostile bytes to the OCI image reference parser (server/artifacts/image-ref.c), which
 * reads a deploy's `image` (POST /v1/workloads, the NATS control API, `nex run --image`) and every
 * POST /v1/images: registry names ([host[:port]/]path[:tag][@sha256:...]) and oci-layout:// paths.  The input
 * is the reference text (up to its first NUL).
 *
 * Invariants: a refusal is NEX_ERR_INVALID naming the field given and leaves the struct empty; an accepted
 * reference is either a layout (an absolute path without `.`/`..` components or a trailing slash) or a registry
 * image (registry, repository, a tag or a digest), its digest (if any) passes nex_image_digest_valid, its tag is
 * within NEX_IMAGE_TAG_MAX_LEN, it has an API host, and its canonical text parses again to the same reference
 * (the image store keys its cache by the canonical text and parses it back). */
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/image-ref.h"
#include "tests/fuzz/fuzz.h"

static int
same (const char *a, const char *b)
{
  return (a == NULL && b == NULL) || (a && b && strcmp (a, b) == 0);
}

/* Whether PATH holds a `.` or `..` component. */
static int
has_dot_component (const char *path)
{
  for (const char *p = path; *p; p++)
    if (p[0] == '/' && p[1] == '.' && (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
      return 1;
  return 0;
}

static void
check_accepted (const nex_image_ref_t *r)
{
  fuzz_check (r->canonical != NULL, "an accepted reference has a canonical text");
  int stored = r->layout == NULL && r->archive == NULL && r->registry == NULL; /* sha256:<hex>: one in the store */
  fuzz_check ((r->layout != NULL) + (r->archive != NULL) + (r->registry != NULL) + stored == 1,
              "a reference is a layout, a docker-archive, a registry image or a stored digest");
  if (stored)
    {
      fuzz_check (r->digest && strcmp (r->canonical, r->digest) == 0 && r->tag == NULL && r->repository == NULL,
                  "a stored-image reference is its digest and nothing else");
      return;
    }
  fuzz_check (r->digest == NULL || nex_image_digest_valid (r->digest), "a digest is sha256 and 64 hex digits");
  fuzz_check (r->tag == NULL || (r->tag[0] && strlen (r->tag) <= NEX_IMAGE_TAG_MAX_LEN), "a tag is within its bound");
  if (r->layout)
    {
      size_t n = strlen (r->layout);
      fuzz_check (r->layout[0] == '/' && !has_dot_component (r->layout) && (n == 1 || r->layout[n - 1] != '/'),
                  "a layout path is absolute, without `.`, `..` or a trailing slash");
      fuzz_check (r->repository == NULL && nex_image_ref_api_host (r) == NULL, "a layout has no registry");
    }
  else if (r->archive)
    {
      size_t n = strlen (r->archive);
      fuzz_check (r->archive[0] == '/' && n > 1 && !has_dot_component (r->archive) && r->archive[n - 1] != '/',
                  "an archive path is an absolute file path, without `.`, `..` or a trailing slash");
      fuzz_check (r->tag == NULL && r->repository == NULL && nex_image_ref_api_host (r) == NULL,
                  "an archive has no tag and no registry");
    }
  else
    {
      fuzz_check (r->repository && r->repository[0] && (r->tag || r->digest),
                  "a registry image has a repository and a tag or a digest");
      fuzz_check (nex_image_ref_api_host (r) != NULL, "a registry image has an API host");
      fuzz_check (strchr (r->registry, '/') == NULL && strchr (r->repository, ':') == NULL
                      && strchr (r->repository, '@') == NULL,
                  "registry and repository hold no separators of the other parts");
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  cleanup_free char *text = nex_xstrndup ((const char *)data, size);
  nex_image_ref_t r;
  cleanup_error nex_error_t err = NULL;
  if (nex_image_ref_parse (text, "image", &r, &err) < 0)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "image") == 0,
                  "a refused reference is NEX_ERR_INVALID on field image");
      fuzz_check (r.layout == NULL && r.archive == NULL && r.registry == NULL && r.repository == NULL && r.tag == NULL
                      && r.digest == NULL && r.canonical == NULL,
                  "a refused reference leaves the struct empty");
      return 0;
    }
  check_accepted (&r);
  nex_image_ref_t again;
  cleanup_error nex_error_t err2 = NULL;
  int rc = nex_image_ref_parse (r.canonical, "image", &again, &err2);
  if (rc < 0)
    fprintf (stderr, "canonical `%s` of `%s` refused: %s\n", r.canonical, text, err2->msg);
  fuzz_check (rc == 0, "the canonical text parses again");
  fuzz_check (same (r.layout, again.layout) && same (r.registry, again.registry)
                  && same (r.repository, again.repository) && same (r.tag, again.tag) && same (r.digest, again.digest)
                  && same (r.canonical, again.canonical),
              "the canonical text parses to the same reference");
  nex_image_ref_release (&again);
  nex_image_ref_release (&r);
  return 0;
}
