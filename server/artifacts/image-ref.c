/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-ref.c — parsing OCI image references (contract in image-ref.h).
 *
 * The text is split from the right, as Docker's grammar is read: `@digest` first, then `:tag` when that colon
 * comes after the last `/` (a colon before it is a registry port), then the registry host when the first
 * component looks like one.  Each part is checked by its own small function against the grammar, so that a
 * refusal can say which part is wrong. */
#include "server/artifacts/image-ref.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#define LAYOUT_SCHEME "oci-layout://"
#define ARCHIVE_SCHEME "docker-archive://"

int
nex_image_digest_valid (const char *s)
{
  if (s == NULL || strncmp (s, "sha256:", 7) != 0 || strlen (s) != 7 + 64)
    return 0;
  for (const char *p = s + 7; *p; p++)
    if (!isdigit ((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
      return 0;
  return 1;
}

static int
is_alnum_lower (char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*. */
static int
component_valid (const char *s, size_t n)
{
  if (n == 0 || !is_alnum_lower (s[0]) || !is_alnum_lower (s[n - 1]))
    return 0;
  for (size_t i = 1; i < n; i++)
    {
      if (is_alnum_lower (s[i]))
        continue;
      if (s[i] == '.' || s[i] == '_')
        {
          /* `.` alone, `_` or `__`: never followed by another separator except the second `_`. */
          size_t run = 1;
          while (i + run < n && !is_alnum_lower (s[i + run]))
            run++;
          if (s[i] == '.' && run != 1)
            return 0;
          if (s[i] == '_' && (run > 2 || (run == 2 && s[i + 1] != '_')))
            return 0;
          i += run - 1;
        }
      else if (s[i] == '-')
        continue;
      else
        return 0;
    }
  return 1;
}

static int
path_valid (const char *path)
{
  const char *p = path;
  for (;;)
    {
      const char *slash = strchr (p, '/');
      size_t n = slash ? (size_t)(slash - p) : strlen (p);
      if (!component_valid (p, n))
        return 0;
      if (slash == NULL)
        return 1;
      p = slash + 1;
    }
}

static int
tag_valid (const char *t)
{
  size_t n = strlen (t);
  if (n == 0 || n > NEX_IMAGE_TAG_MAX_LEN || !(isalnum ((unsigned char)t[0]) || t[0] == '_'))
    return 0;
  for (size_t i = 1; i < n; i++)
    if (!isalnum ((unsigned char)t[i]) && t[i] != '_' && t[i] != '.' && t[i] != '-')
      return 0;
  return 1;
}

/* host[:port]: DNS-ish labels of [A-Za-z0-9-] joined by dots (or an IPv4 address), and a port 1..65535. */
static int
host_valid (const char *h)
{
  const char *colon = strchr (h, ':');
  size_t n = colon ? (size_t)(colon - h) : strlen (h);
  if (n == 0 || h[0] == '.' || h[0] == '-' || h[n - 1] == '.' || h[n - 1] == '-')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum ((unsigned char)h[i]) && h[i] != '.' && h[i] != '-')
      return 0;
  if (colon == NULL)
    return 1;
  const char *port = colon + 1;
  if (*port == '\0' || strlen (port) > 5)
    return 0;
  for (const char *p = port; *p; p++)
    if (!isdigit ((unsigned char)*p))
      return 0;
  long v = strtol (port, NULL, 10);
  return v >= 1 && v <= 65535;
}

/* Splits "@digest" off the end of TEXT (modified in place) into R. */
static int
take_digest (char *text, const char *field, nex_image_ref_t *r, nex_error_t *err)
{
  char *at = strchr (text, '@');
  if (at == NULL)
    return 0;
  if (!nex_image_digest_valid (at + 1))
    return nex_error_field (err, field, "digest must be sha256: and 64 lower-case hex digits");
  r->digest = nex_xstrdup (at + 1);
  *at = '\0';
  return 0;
}

/* Splits ":tag" off the end of TEXT (modified in place) into R when that colon follows the last slash. */
static int
take_tag (char *text, const char *field, nex_image_ref_t *r, nex_error_t *err)
{
  char *colon = strrchr (text, ':');
  char *slash = strrchr (text, '/');
  if (colon == NULL || (slash && colon < slash))
    return 0;
  if (!tag_valid (colon + 1))
    return nex_error_field (err, field, "tag `%.*s` is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
                            NEX_IMAGE_TAG_MAX_LEN + 1, colon + 1);
  r->tag = nex_xstrdup (colon + 1);
  *colon = '\0';
  return 0;
}

static char *
canonical (const nex_image_ref_t *r)
{
  const char *tag_sep = r->tag ? ":" : "", *tag = r->tag ? r->tag : "";
  const char *dig_sep = r->digest ? "@" : "", *dig = r->digest ? r->digest : "";
  if (r->archive)
    return nex_xasprintf (ARCHIVE_SCHEME "%s%s%s", r->archive, dig_sep, dig);
  if (r->registry == NULL && r->layout == NULL)
    return nex_xstrdup (r->digest);
  if (r->layout)
    return nex_xasprintf (LAYOUT_SCHEME "%s%s%s%s%s", r->layout, tag_sep, tag, dig_sep, dig);
  return nex_xasprintf ("%s/%s%s%s%s%s", r->registry, r->repository, tag_sep, tag, dig_sep, dig);
}

/* REST as a local absolute path into *OUT: no `.` or `..` components (they would make the name of a file depend
 * on where it is reached from), trailing slashes dropped. */
static int
take_path (char *rest, const char *field, const char *what, char **out, nex_error_t *err)
{
  if (rest[0] != '/')
    return nex_error_field (err, field, "%s is named by an absolute path", what);
  for (const char *p = rest; *p; p++)
    if (p[0] == '/' && p[1] == '.' && (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
      return nex_error_field (err, field, "the path of %s must not hold `.` or `..` components", what);
  size_t n = strlen (rest);
  while (n > 1 && rest[n - 1] == '/')
    rest[--n] = '\0';
  *out = nex_xstrdup (rest);
  return 0;
}

static int
parse_layout (char *rest, const char *field, nex_image_ref_t *r, nex_error_t *err)
{
  if (rest[0] != '/')
    return nex_error_field (err, field, "an OCI layout is named by an absolute path: oci-layout:///path[:tag]");
  if (take_digest (rest, field, r, err) < 0 || take_tag (rest, field, r, err) < 0)
    return -1;
  if (take_path (rest, field, "an OCI layout", &r->layout, err) < 0)
    return -1;
  /* A colon that the trailing slashes hid from take_tag (`/srv/://`) would read as a tag in the canonical text
   * (`/srv/:`), which then no longer parses (fuzz-image-ref). */
  if (strchr (strrchr (r->layout, '/'), ':'))
    {
      free (r->layout);
      r->layout = NULL;
      return nex_error_field (err, field, "the layout path's last component must not hold `:` (it reads as a tag)");
    }
  return 0;
}

/* docker-archive:///path.tar[@sha256:...]: no tag (a colon is part of the path). */
static int
parse_archive (char *rest, const char *field, nex_image_ref_t *r, nex_error_t *err)
{
  if (rest[0] != '/')
    return nex_error_field (err, field, "a docker-archive is named by an absolute path: docker-archive:///path.tar");
  if (take_digest (rest, field, r, err) < 0 || take_path (rest, field, "a docker-archive", &r->archive, err) < 0)
    return -1;
  if (strcmp (r->archive, "/") == 0)
    {
      /* `docker-archive:///` (or `////`) names a directory, not a tar (fuzz-image-ref). */
      free (r->archive);
      r->archive = NULL;
      return nex_error_field (err, field, "a docker-archive is a tar file: docker-archive:///path.tar");
    }
  return 0;
}

static int
parse_registry (char *rest, const char *field, nex_image_ref_t *r, nex_error_t *err)
{
  if (take_digest (rest, field, r, err) < 0 || take_tag (rest, field, r, err) < 0)
    return -1;
  if (strlen (rest) > NEX_IMAGE_NAME_MAX_LEN)
    return nex_error_field (err, field, "the image name is longer than %d characters", NEX_IMAGE_NAME_MAX_LEN);
  char *slash = strchr (rest, '/');
  const char *path = rest;
  if (slash
      && (memchr (rest, '.', (size_t)(slash - rest)) || memchr (rest, ':', (size_t)(slash - rest))
          || strncmp (rest, "localhost/", 10) == 0))
    {
      *slash = '\0';
      if (!host_valid (rest))
        return nex_error_field (err, field, "registry `%s` is not a host[:port]", rest);
      r->registry = nex_xstrdup (strcmp (rest, "index.docker.io") == 0 ? NEX_IMAGE_DOCKER_HUB : rest);
      path = slash + 1;
    }
  else
    r->registry = nex_xstrdup (NEX_IMAGE_DOCKER_HUB);
  if (!path_valid (path))
    return nex_error_field (err, field,
                            "repository `%s` is not lower-case [a-z0-9] components joined by `.`, `_`, `__`, `-` "
                            "and `/`",
                            path);
  if (strcmp (r->registry, NEX_IMAGE_DOCKER_HUB) == 0 && strchr (path, '/') == NULL)
    r->repository = nex_xasprintf ("library/%s", path);
  else
    r->repository = nex_xstrdup (path);
  /* The bound holds for the name as normalised too (Docker checks that one): `a` * 250 passed the check above but
   * its canonical docker.io/library/a... did not, so the image store could not parse its own key (fuzz-image-ref). */
  if (strlen (r->registry) + 1 + strlen (r->repository) > NEX_IMAGE_NAME_MAX_LEN)
    return nex_error_field (err, field, "the image name is longer than %d characters once normalised (%s/%s)",
                            NEX_IMAGE_NAME_MAX_LEN, r->registry, r->repository);
  if (r->tag == NULL && r->digest == NULL)
    r->tag = nex_xstrdup ("latest");
  return 0;
}

int
nex_image_ref_parse (const char *text, const char *field, nex_image_ref_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  if (text == NULL || text[0] == '\0')
    return nex_error_field (err, field, "must be an image reference: name[:tag][@sha256:...]");
  if (strlen (text) > NEX_IMAGE_REF_MAX_LEN)
    return nex_error_field (err, field, "is longer than %d characters", NEX_IMAGE_REF_MAX_LEN);
  for (const char *p = text; *p; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
      return nex_error_field (err, field, "must be printable ASCII without spaces");
  cleanup_free char *copy = nex_xstrdup (text);
  int is_layout = strncmp (copy, LAYOUT_SCHEME, strlen (LAYOUT_SCHEME)) == 0;
  int is_archive = strncmp (copy, ARCHIVE_SCHEME, strlen (ARCHIVE_SCHEME)) == 0;
  if (!is_layout && !is_archive && strstr (copy, "://"))
    return nex_error_field (err, field,
                            "the only URL forms are oci-layout:///path[:tag] and docker-archive:///path.tar; "
                            "registry images are named host/path:tag");
  int rc;
  if (is_layout)
    rc = parse_layout (copy + strlen (LAYOUT_SCHEME), field, out, err);
  else if (is_archive)
    rc = parse_archive (copy + strlen (ARCHIVE_SCHEME), field, out, err);
  else if (nex_image_digest_valid (copy))
    {
      /* A bare digest names an image already in the store (uploaded, or pulled before). */
      out->digest = nex_xstrdup (copy);
      rc = 0;
    }
  else
    rc = parse_registry (copy, field, out, err);
  if (rc < 0)
    {
      nex_image_ref_release (out);
      return -1;
    }
  out->canonical = canonical (out);
  return 0;
}

const char *
nex_image_ref_api_host (const nex_image_ref_t *r)
{
  if (r->registry && strcmp (r->registry, NEX_IMAGE_DOCKER_HUB) == 0)
    return NEX_IMAGE_DOCKER_HUB_API;
  return r->registry;
}

void
nex_image_ref_release (nex_image_ref_t *r)
{
  free (r->layout);
  free (r->archive);
  free (r->registry);
  free (r->repository);
  free (r->tag);
  free (r->digest);
  free (r->canonical);
  memset (r, 0, sizeof *r);
}
