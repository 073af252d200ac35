/* SPDX-License-Identifier: Apache-2.0 */
/* test-image-ref.c — unit tests of OCI image references (server/artifacts/image-ref.c): Docker Hub's defaults,
 * registries with ports, tags and digests, the OCI layout form, and every part of the grammar broken once (each
 * refusal NEX_ERR_INVALID naming the field). */
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "server/artifacts/image-ref.h"
#include "tests/unit/tap.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int
same (const char *a, const char *b)
{
  return (a == NULL && b == NULL) || (a && b && strcmp (a, b) == 0);
}

static void
accepts (const char *text, const char *registry, const char *repo, const char *tag, const char *digest,
         const char *canon)
{
  nex_image_ref_t r;
  cleanup_error nex_error_t err = NULL;
  int rc = nex_image_ref_parse (text, "image", &r, &err);
  TAP_OK (rc == 0 && same (r.registry, registry) && same (r.repository, repo) && same (r.tag, tag)
              && same (r.digest, digest) && same (r.canonical, canon),
          "`%s` -> %s (%s)", text, canon, rc == 0 ? r.canonical : err->msg);
  nex_image_ref_release (&r);
}

static void
refuses (const char *text, const char *why)
{
  nex_image_ref_t r;
  cleanup_error nex_error_t err = NULL;
  int rc = nex_image_ref_parse (text, "image", &r, &err);
  TAP_OK (rc < 0 && err && err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "image") == 0
              && r.canonical == NULL,
          "refused: %s (%s)", why, err ? err->msg : "accepted");
}

int
main (void)
{
  accepts ("busybox", "docker.io", "library/busybox", "latest", NULL, "docker.io/library/busybox:latest");
  accepts ("busybox:1.36", "docker.io", "library/busybox", "1.36", NULL, "docker.io/library/busybox:1.36");
  accepts ("docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", NULL,
           "docker.io/library/busybox:1.36");
  accepts ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", NULL,
           "docker.io/library/busybox:latest");
  accepts ("user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest");
  accepts ("localhost:5000/test/busybox:v1", "localhost:5000", "test/busybox", "v1", NULL,
           "localhost:5000/test/busybox:v1");
  accepts ("127.0.0.1:5000/bb", "127.0.0.1:5000", "bb", "latest", NULL, "127.0.0.1:5000/bb:latest");
  accepts ("localhost/bb", "localhost", "bb", "latest", NULL, "localhost/bb:latest");
  accepts ("ghcr.io/a/b/c_d__e.f-g:T_1.2-3", "ghcr.io", "a/b/c_d__e.f-g", "T_1.2-3", NULL,
           "ghcr.io/a/b/c_d__e.f-g:T_1.2-3");
  accepts ("busybox@sha256:" D64, "docker.io", "library/busybox", NULL, "sha256:" D64,
           "docker.io/library/busybox@sha256:" D64);
  accepts ("reg.example:443/x:tag@sha256:" D64, "reg.example:443", "x", "tag", "sha256:" D64,
           "reg.example:443/x:tag@sha256:" D64);

  nex_image_ref_t r;
  cleanup_error nex_error_t err = NULL;
  TAP_OK (nex_image_ref_parse ("busybox", "image", &r, &err) == 0
              && strcmp (nex_image_ref_api_host (&r), "registry-1.docker.io") == 0,
          "Docker Hub's API host is registry-1.docker.io");
  nex_image_ref_release (&r);
  TAP_OK (nex_image_ref_parse ("localhost:5000/bb", "image", &r, &err) == 0
              && strcmp (nex_image_ref_api_host (&r), "localhost:5000") == 0,
          "another registry's API host is itself");
  nex_image_ref_release (&r);

  TAP_OK (nex_image_ref_parse ("oci-layout:///srv/images/bb:v1", "image", &r, &err) == 0
              && same (r.layout, "/srv/images/bb") && same (r.tag, "v1") && r.registry == NULL
              && same (r.canonical, "oci-layout:///srv/images/bb:v1"),
          "oci-layout with a tag");
  nex_image_ref_release (&r);
  TAP_OK (nex_image_ref_parse ("oci-layout:///srv/x.d/bb/", "image", &r, &err) == 0 && same (r.layout, "/srv/x.d/bb")
              && r.tag == NULL && r.digest == NULL,
          "oci-layout without a tag (trailing slash dropped)");
  nex_image_ref_release (&r);
  TAP_OK (nex_image_ref_parse ("oci-layout:///srv/bb@sha256:" D64, "image", &r, &err) == 0 && same (r.layout, "/srv/bb")
              && same (r.digest, "sha256:" D64),
          "oci-layout with a digest");
  nex_image_ref_release (&r);
  TAP_OK (nex_image_ref_parse ("docker-archive:///srv/a:b/bb.tar", "image", &r, &err) == 0
              && same (r.archive, "/srv/a:b/bb.tar") && r.tag == NULL && r.layout == NULL && r.registry == NULL
              && same (r.canonical, "docker-archive:///srv/a:b/bb.tar"),
          "docker-archive: a colon is part of the path");
  nex_image_ref_release (&r);
  TAP_OK (nex_image_ref_parse ("docker-archive:///srv/bb.tar@sha256:" D64, "image", &r, &err) == 0
              && same (r.archive, "/srv/bb.tar") && same (r.digest, "sha256:" D64),
          "docker-archive with a digest");
  nex_image_ref_release (&r);
  TAP_OK (nex_image_ref_parse ("sha256:" D64, "image", &r, &err) == 0 && same (r.digest, "sha256:" D64)
              && r.registry == NULL && r.layout == NULL && r.archive == NULL && same (r.canonical, "sha256:" D64),
          "a bare digest names a stored image");
  nex_image_ref_release (&r);

  refuses ("", "empty");
  refuses ("Busybox", "upper-case repository");
  refuses ("busy box", "a space");
  refuses ("busybox:", "an empty tag");
  refuses ("busybox:-x", "a tag starting with a dash");
  refuses ("busybox:a/b", "a slash in the tag");
  refuses ("busybox@sha256:abc", "a short digest");
  refuses ("busybox@sha256:" D64 "00", "a long digest");
  refuses ("busybox@md5:" D64, "another algorithm");
  refuses ("busybox@sha256:"
           "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
           "upper-case digest");
  refuses ("a//b", "an empty component");
  refuses ("a/b/", "a trailing slash");
  refuses ("-a/b", "a component starting with a dash");
  refuses ("a..b", "two dots");
  refuses ("a___b", "three underscores");
  refuses ("host:99999/a", "a port out of range");
  refuses ("host:/a", "an empty port");
  refuses ("http://host/a", "an http URL");
  refuses ("oci-layout://relative/path", "a relative layout path");
  refuses ("oci-layout:///a/../b", "`..` in a layout path");
  refuses ("oci-layout:///a/./b", "`.` in a layout path");
  refuses ("docker-archive://bb.tar", "a relative docker-archive path");
  /* fuzz-image-ref (30-minute campaign): the root itself was taken as an archive path. */
  refuses ("docker-archive:///", "a docker-archive naming the root directory");
  refuses ("docker-archive://///", "a docker-archive naming the root directory, with more slashes");
  refuses ("docker-archive:///a/../bb.tar", "`..` in a docker-archive path");
  /* fuzz-image-ref: the path was /srv/: once its slashes were dropped, and its canonical text read `:` as a tag. */
  refuses ("oci-layout:///srv/://@sha256:" D64, "a colon in a layout's last component, behind trailing slashes");
  refuses ("a\x01", "a control character");
  char longname[600];
  memset (longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  refuses (longname, "longer than 512");
  memset (longname, 'a', 300);
  longname[300] = '\0';
  refuses (longname, "a name longer than 255");
  /* fuzz-image-ref: 250 characters passed as written, but the canonical docker.io/library/a... (268) was refused
   * when parsed again. */
  memset (longname, 'a', 250);
  longname[250] = '\0';
  refuses (longname, "a Docker Hub name longer than 255 once docker.io/library/ is added");
  char repo[640], canon[700]; /* room for all of longname, as the compiler counts */
  memset (longname, 'a', 237);
  longname[237] = '\0';
  snprintf (repo, sizeof repo, "library/%s", longname);
  snprintf (canon, sizeof canon, "docker.io/%s:latest", repo);
  accepts (longname, "docker.io", repo, "latest", NULL, canon);
  nex_image_ref_t again;
  TAP_OK (nex_image_ref_parse (canon, "image", &again, &err) == 0 && same (again.canonical, canon),
          "a canonical name of 255 characters parses again");
  nex_image_ref_release (&again);

  TAP_OK (nex_image_digest_valid ("sha256:" D64) && !nex_image_digest_valid ("sha256:")
              && !nex_image_digest_valid (NULL),
          "nex_image_digest_valid");
  return tap_done ();
}
