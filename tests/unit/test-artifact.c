/* SPDX-License-Identifier: Apache-2.0 */
/* test-artifact.c — unit tests of artifact URLs and the artifact cache (server/artifacts/artifact.c).
 *
 * URL syntax first (every scheme's accepted forms, and the refusals with what they say), then prechecks and
 * fetches into a cache directory under the scratch directory — the digest checked against sha256sum(1) when it is
 * available, the cached file's mode and bytes, reuse, refusals that leave nothing behind, a sparse file over the
 * size bound — then uploads in pieces and artifact://<sha256> URLs that name an uploaded entry. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/artifact.h"
#include "tests/unit/elf-image.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

/* --- URLs ----------------------------------------------------------------------------------------------------- */

static void
test_urls (void)
{
  nex_error_t err = NULL;
  static const char *good[] = { "file:///x",
                                "file://localhost/bin/sh",
                                "FILE://LOCALHOST/x",
                                "file:///tmp/my%20prog",
                                "file:///a/.hidden/b..c",
                                "file:///%41",
                                "file:///caf%C3%A9",
                                "file:///\xe2\x82\xac-raw-utf8",
                                "nats://apps/bin/hello",
                                "NATS://my_bucket-1/a/b%20c" };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    expect_accept (nex_artifact_check_url (good[i], &err), &err, good[i]);

  static const struct
  {
    const char *url, *needle;
  } bad[] = {
    { "", "must not be empty" },
    { "x/y", "must be a URL" },
    { "/bin/busybox", "must be a URL" },
    { "file://host/x", "names host `host`" },
    { "file:/x", "must have the form" },
    { "file:x", "must have the form" },
    { "file://", "has no path" },
    { "file://localhost", "has no path" },
    { "http:///prog", "http(s)" },
    { "https:prog", "http(s)" },
    { "http://[::1/prog", "http(s)" },
    { "nats://bucket", "name a bucket and a key" },
    { "nats://bad.bucket/key", "bucket names are made of" },
    { "nats://bucket/key#frag", "must not contain" },
    { "ftp://example.com/prog", "scheme `ftp` is not supported" },
    { "1file:///x", "must be a URL" },
    { "averyveryverylongscheme:///x", "is not supported" },
    { "file:///a b", "space or control character" },
    { "file:///a\tb", "space or control character" },
    { "file:///a%00b", "%00" },
    { "file:///a%0ab", "control characters" },
    { "file:///a%2", "malformed %-escape" },
    { "file:///a%ff", "must be UTF-8" },
    { "file:///a%C3", "must be UTF-8" },
    { "file:///a%C0%AF", "must be UTF-8" },
    { "file:///a%ED%A0%80", "must be UTF-8" },
    { "file:///a%zz", "malformed %-escape" },
    { "file:///a%", "malformed %-escape" },
    { "file:///a/../etc/passwd", "`..`" },
    { "file:///a/%2e%2E/etc/passwd", "`..`" },
    { "file:///a%2F..%2Fb", "`..`" },
    { "file:///a/./b", "`.`" },
    { "file:///..", "`..`" },
    { "file:///x?y", "query or fragment" },
    { "file:///x#y", "query or fragment" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_refusal (nex_artifact_check_url (bad[i].url, &err), &err, "artifact", bad[i].needle, bad[i].url);
  expect_refusal (nex_artifact_check_url (NULL, &err), &err, "artifact", "must not be empty", "NULL URL");
}

/* --- prechecks and fetches ------------------------------------------------------------------------------------ */

static int
count_entries (const char *dir)
{
  cleanup_dir DIR *d = opendir (dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
      n++;
  return n;
}

/* sha256sum's digest of PATH into OUT (65 bytes), or -1 when the tool is not there. */
static int
sha256sum_of (const char *path, char out[65])
{
  cleanup_free char *cmd = nex_xasprintf ("sha256sum '%s' 2>/dev/null", path);
  FILE *p = popen (cmd, "r");
  if (p == NULL)
    return -1;
  int ok = fscanf (p, "%64s", out) == 1;
  return (pclose (p) == 0 && ok && strlen (out) == 64) ? 0 : -1;
}

static int
same_content (const char *a, const char *b)
{
  nex_error_t err = NULL;
  size_t na, nb;
  cleanup_free char *x = nex_file_read (a, NEX_ARTIFACT_MAX_BYTES, &na, &err);
  cleanup_free char *y = nex_file_read (b, NEX_ARTIFACT_MAX_BYTES, &nb, &err);
  nex_error_free (&err);
  return x != NULL && y != NULL && na == nb && memcmp (x, y, na) == 0;
}

/* --- uploads and artifact:// ------------------------------------------------------------------------------------ */

/* Uploads the N bytes of BYTES into CACHE in three pieces, bounded by MAX; returns what finish returned. */
static int
upload_bytes (const char *cache, const unsigned char *bytes, size_t n, uint64_t max, const char *expected,
              char digest[65], int *existed, nex_error_t *err)
{
  nex_artifact_upload_t *up = nex_artifact_upload_begin (cache, max, err);
  if (up == NULL)
    return -1;
  size_t third = n / 3;
  int r = 0;
  if (nex_artifact_upload_write (up, bytes, third, err) < 0
      || nex_artifact_upload_write (up, bytes + third, third, err) < 0
      || nex_artifact_upload_write (up, bytes + 2 * third, n - 2 * third, err) < 0)
    r = -1;
  uint64_t size = 0;
  if (r == 0)
    r = nex_artifact_upload_finish (up, expected, digest, &size, existed, err);
  if (r == 0 && size != n)
    r = nex_error_set (err, NEX_ERR_SYSTEM, "size %llu, wanted %zu", (unsigned long long)size, n);
  nex_artifact_upload_free (up);
  return r;
}

static void
test_upload (const char *dir, const unsigned char *bytes, size_t n, const char *want_digest)
{
  nex_error_t err = NULL;
  cleanup_free char *cache = nex_xasprintf ("%s/upcache", dir);
  mkdir (cache, 0700);
  char digest[65] = "";
  int existed = -1;
  int r = upload_bytes (cache, bytes, n, NEX_ARTIFACT_MAX_BYTES, NULL, digest, &existed, &err);
  TAP_OK (r == 0 && strcmp (digest, want_digest) == 0 && existed == 0 && count_entries (cache) == 1,
          "upload in pieces: same digest as the fetch, one entry%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);
  r = upload_bytes (cache, bytes, n, NEX_ARTIFACT_MAX_BYTES, want_digest, digest, &existed, &err);
  TAP_OK (r == 0 && existed == 1 && count_entries (cache) == 1, "the same upload again reuses the entry");
  nex_error_free (&err);
  r = upload_bytes (cache, bytes, n, n - 1, NULL, digest, &existed, &err);
  TAP_OK (r < 0 && err && err->kind == NEX_ERR_TOO_LARGE && count_entries (cache) == 1,
          "an upload over its bound is refused (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  static const unsigned char text[] = "#!/bin/sh\necho not an executable here\n";
  r = upload_bytes (cache, text, sizeof text - 1, NEX_ARTIFACT_MAX_BYTES, NULL, digest, &existed, &err);
  TAP_OK (r < 0 && err && strcmp (err->field, "artifact") == 0 && count_entries (cache) == 1,
          "a text upload is refused and leaves nothing (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
  r = upload_bytes (cache, bytes, n, NEX_ARTIFACT_MAX_BYTES, zeros, digest, &existed, &err);
  TAP_OK (r < 0 && err && strcmp (err->field, "sha256") == 0 && count_entries (cache) == 1,
          "an upload with another expected digest is refused (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  nex_artifact_upload_t *up = nex_artifact_upload_begin (cache, 100, &err);
  uint64_t size;
  r = up ? nex_artifact_upload_finish (up, NULL, digest, &size, &existed, &err) : -1;
  TAP_OK (r < 0 && err && strstr (err->msg, "empty") != NULL, "an empty upload is refused (%s)",
          err ? err->msg : "accepted");
  nex_error_free (&err);
  nex_artifact_upload_free (up);

  /* artifact://<digest> names the entry. */
  cleanup_free char *url = nex_xasprintf ("artifact://%s", want_digest);
  expect_accept (nex_artifact_check_url (url, &err), &err, "artifact:// URL");
  expect_accept (nex_artifact_precheck_at (cache, url, &err), &err, "artifact:// precheck of a cached entry");
  expect_refusal (nex_artifact_check_url ("artifact://abc", &err), &err, "artifact", "SHA-256", "short digest");
  cleanup_free char *missing = nex_xasprintf ("artifact://%064d", 7);
  expect_accept (nex_artifact_precheck (missing, &err), &err, "artifact:// precheck without a cache: syntax only");
  expect_refusal (nex_artifact_precheck_at (cache, missing, &err), &err, "artifact", "no uploaded artifact",
                  "artifact:// of an entry not in the cache");
  char d2[65] = "";
  cleanup_free char *path = nex_artifact_fetch (cache, url, want_digest, d2, &err);
  cleanup_free char *want_path = nex_xasprintf ("%s/%s", cache, want_digest);
  TAP_OK (path && strcmp (path, want_path) == 0 && strcmp (d2, want_digest) == 0 && count_entries (cache) == 1,
          "fetching artifact:// resolves to the entry without a copy%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);
  char *bad
      = nex_artifact_fetch (cache, url, "1111111111111111111111111111111111111111111111111111111111111111", d2, &err);
  TAP_OK (bad == NULL && err && strcmp (err->field, "sha256") == 0, "artifact:// with another pinned digest refused");
  nex_error_free (&err);
  uint64_t sz = 0;
  TAP_OK (nex_artifact_cached (cache, want_digest, &sz, &err) == 1 && sz == n, "nex_artifact_cached finds it");
  TAP_OK (nex_artifact_cached (cache, missing + 11, &sz, &err) == 0, "nex_artifact_cached: absent");
  nex_error_free (&err);
}

static void
test_fetch (const char *dir)
{
  nex_error_t err = NULL;
  /* The source: busybox when it is a static executable here, else the constructed image. */
  cleanup_free char *src = nex_xasprintf ("%s/prog", dir);
  size_t n = 0;
  cleanup_free char *bytes = NULL;
  if (test_have_static_busybox ())
    bytes = nex_file_read ("/bin/busybox", NEX_ARTIFACT_MAX_BYTES, &n, &err);
  nex_error_free (&err);
  if (bytes == NULL)
    {
      image_t im = static_exec ();
      bytes = nex_xmalloc (im.len);
      memcpy (bytes, im.bytes, im.len);
      n = im.len;
      printf ("# fetching the constructed image (no static busybox)\n");
    }
  else
    printf ("# fetching a copy of /bin/busybox (%zu bytes)\n", n);
  if (test_write (src, bytes, n, 0755) < 0)
    {
      TAP_OK (0, "write the source file");
      return;
    }
  cleanup_free char *url = nex_xasprintf ("file://%s", src);
  cleanup_free char *cache = nex_xasprintf ("%s/cache", dir);
  cleanup_free char *cache2 = nex_xasprintf ("%s/cache2", dir);
  mkdir (cache, 0700);
  mkdir (cache2, 0700);

  expect_accept (nex_artifact_precheck (url, &err), &err, "precheck of the source");
  expect_refusal (nex_artifact_precheck ("file:///bin/sh", &err), &err, "artifact", "dynamically linked",
                  "precheck of /bin/sh");
  expect_refusal (nex_artifact_precheck ("file:///nonexistent/prog", &err), &err, "artifact", "cannot read",
                  "precheck of a missing file");
  expect_accept (nex_artifact_precheck ("http://example.com/x", &err), &err,
                 "precheck of http accepts the URL (nothing to check before fetching)");

  char digest[65] = "";
  cleanup_free char *path = nex_artifact_fetch (cache, url, NULL, digest, &err);
  TAP_OK (path != NULL, "fetch without an expected digest%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);
  if (path == NULL)
    return;
  char want[65];
  if (sha256sum_of (src, want) == 0)
    TAP_OK (strcmp (digest, want) == 0, "digest %s matches sha256sum", digest);
  else
    TAP_SKIP ("sha256sum not available");
  cleanup_free char *expected_path = nex_xasprintf ("%s/%s", cache, digest);
  TAP_OK (strcmp (path, expected_path) == 0, "cached as <cache>/<digest> (%s)", path);
  struct stat st;
  TAP_OK (stat (path, &st) == 0 && S_ISREG (st.st_mode) && (st.st_mode & 07777) == 0555,
          "cached file has mode 0555 (%o)", (unsigned)(st.st_mode & 07777));
  TAP_OK (same_content (src, path), "cached bytes equal the source");
  TAP_OK (count_entries (cache) == 1, "nothing but the entry in the cache");

  char digest2[65] = "";
  cleanup_free char *again = nex_artifact_fetch (cache, url, digest, digest2, &err);
  TAP_OK (again != NULL && strcmp (again, path) == 0 && strcmp (digest, digest2) == 0 && count_entries (cache) == 1,
          "fetching again with the right digest reuses the entry%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);

  char wrong[65];
  memcpy (wrong, digest, sizeof wrong);
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  char digest3[65] = "";
  char *bad = nex_artifact_fetch (cache2, url, wrong, digest3, &err);
  int ok = bad == NULL && err != NULL && strcmp (err->field, "sha256") == 0
           && strstr (err->msg, "sha256 mismatch: expected ") != NULL && strstr (err->msg, digest) != NULL;
  TAP_OK (ok, "wrong sha256 refused (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);
  TAP_OK (count_entries (cache2) == 0, "a refused fetch leaves nothing in the cache");

  bad = nex_artifact_fetch (cache2, url, "abc", digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strcmp (err->field, "sha256") == 0, "malformed expected sha256 refused");
  nex_error_free (&err);
  free (bad);

  bad = nex_artifact_fetch (cache2, "file:///bin/sh", NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strcmp (err->field, "artifact") == 0
              && strstr (err->msg, "dynamically linked") != NULL && count_entries (cache2) == 0,
          "fetch of a dynamic executable refused, cache left empty (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  bad = nex_artifact_fetch (cache2, "file:///etc/passwd", NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strstr (err->msg, "not an ELF file") != NULL && count_entries (cache2) == 0,
          "fetch of a text file refused, cache left empty (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  /* Port 9 (discard) on loopback: nothing listens, the connection is refused at once. */
  bad = nex_artifact_fetch (cache2, "http://127.0.0.1:9/x", NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strstr (err->msg, "fetch `http://127.0.0.1:9/x`") != NULL
              && count_entries (cache2) == 0,
          "fetch from a port nobody listens on fails, cache left empty (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  /* A sparse file one byte over the bound: refused as too large, without copying half a gigabyte. */
  cleanup_free char *huge = nex_xasprintf ("%s/huge", dir);
  cleanup_free char *huge_url = nex_xasprintf ("file://%s", huge);
  int fd = open (huge, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0 && ftruncate (fd, (off_t)NEX_ARTIFACT_MAX_BYTES + 1) == 0)
    {
      bad = nex_artifact_fetch (cache2, huge_url, NULL, digest3, &err);
      TAP_OK (bad == NULL && err != NULL && err->kind == NEX_ERR_TOO_LARGE && count_entries (cache2) == 0,
              "artifact over NEX_ARTIFACT_MAX_BYTES refused (%s)", err ? err->msg : "accepted");
      nex_error_free (&err);
      free (bad);
    }
  else
    TAP_SKIP ("sparse file: %s", strerror (errno));
  if (fd >= 0)
    close (fd);

  bad = nex_artifact_fetch ("/nonexistent/cache", url, NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && err->kind == NEX_ERR_SYSTEM, "missing cache directory is a system error (%s)",
          err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  test_upload (dir, (const unsigned char *)bytes, n, digest);
}

int
main (void)
{
  const char *dir = test_dir ();
  test_urls ();
  test_fetch (dir);
  return tap_done ();
}
