/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-archive.c — an image tar (OCI layout or docker-archive) into an OCI layout directory (contract
 * in image-archive.h).
 *
 * One pass over the tar stores every regular file as a blob named by its own digest and maps its name to it;
 * links map a name to another name, resolved afterwards, lexically (they are keys, never followed on disk).
 * Then the tar's own index.json is taken, or its docker manifest.json is rewritten as OCI manifests. */
#include "server/artifacts/image-archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

#define NAME_MAX_LEN 1024
#define JSON_MAX_BYTES (4u * 1024 * 1024)
#define MAX_IMAGES 64
#define MAX_LINK_HOPS 8
#define READ_CHUNK 65536

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
#define REF_NAME "org.opencontainers.image.ref.name"

static void
archive_cleanup (struct archive **a)
{
  if (*a)
    archive_read_free (*a);
}
#define cleanup_archive cleanup_with (archive_cleanup)

typedef struct conv
{
  const char *dir, *field;
  char *blobs;   /* DIR/blobs/sha256 */
  json_t *files; /* name -> {digest, size} */
  json_t *links; /* name -> the name it links to */
  uint64_t bytes, max;
  size_t count;
} conv_t;

/* PATH (taken relative to directory BASE, "" for the top, unless absolute) with `.`, `..` and empty components
 * resolved lexically into OUT.  DOTDOT_OK: whether `..` may appear (link targets) or is refused (names). */
static int
resolve_name (const char *base, const char *path, int dotdot_ok, char out[NAME_MAX_LEN])
{
  char joined[2 * NAME_MAX_LEN + 2];
  if (snprintf (joined, sizeof joined, "%s/%s", path[0] == '/' ? "" : base, path) >= (int)sizeof joined)
    return -1;
  size_t len = 0;
  out[0] = '\0';
  for (char *save = NULL, *c = strtok_r (joined, "/", &save); c; c = strtok_r (NULL, "/", &save))
    {
      if (strcmp (c, ".") == 0)
        continue;
      if (strcmp (c, "..") == 0)
        {
          if (!dotdot_ok || len == 0)
            return -1;
          char *slash = strrchr (out, '/');
          len = slash ? (size_t)(slash - out) : 0;
          out[len] = '\0';
          continue;
        }
      size_t n = strlen (c);
      if (len + n + 2 > NAME_MAX_LEN)
        return -1;
      if (len)
        out[len++] = '/';
      memcpy (out + len, c, n + 1);
      len += n;
    }
  return len ? 0 : -1;
}

/* Stores the current entry's data (NAME) as a blob. */
static int
store_file (conv_t *c, struct archive *a, const char *name, nex_error_t *err)
{
  cleanup_free char *tmp = nex_xasprintf ("%s/.in-XXXXXX", c->blobs);
  cleanup_close int fd = mkostemp (tmp, O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "create a blob in `%s`", c->blobs);
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init (&sha);
  uint64_t size = 0;
  int rc = 0;
  cleanup_free char *buf = nex_xmalloc (READ_CHUNK);
  for (;;)
    {
      la_ssize_t n = archive_read_data (a, buf, READ_CHUNK);
      if (n == 0)
        break;
      if (n < 0)
        {
          rc = nex_error_field (err, c->field, "the tar cannot be read at `%.200s`: %s", name,
                                archive_error_string (a));
          break;
        }
      c->bytes += (uint64_t)n;
      size += (uint64_t)n;
      if (c->bytes > c->max)
        {
          rc = nex_error_set (err, NEX_ERR_TOO_LARGE, "the image tar holds more than %llu bytes",
                              (unsigned long long)c->max);
          break;
        }
      crypto_hash_sha256_update (&sha, (const unsigned char *)buf, (unsigned long long)n);
      if ((rc = nex_fd_write_all (fd, buf, (size_t)n, err)) < 0)
        break;
    }
  unsigned char d[crypto_hash_sha256_BYTES];
  char hex[2 * crypto_hash_sha256_BYTES + 1];
  crypto_hash_sha256_final (&sha, d);
  sodium_bin2hex (hex, sizeof hex, d, sizeof d);
  cleanup_free char *path = nex_xasprintf ("%s/%s", c->blobs, hex);
  if (rc == 0 && rename (tmp, path) < 0)
    rc = nex_error_sys (err, errno, "store `%s`", path);
  if (rc < 0)
    {
      unlink (tmp);
      return -1;
    }
  cleanup_free char *digest = nex_xasprintf ("sha256:%s", hex);
  json_object_set_new (c->files, name, json_pack ("{s:s, s:I}", "digest", digest, "size", (json_int_t)size));
  return 0;
}

/* Reads the tar at PATH into C's maps. */
static int
read_tar (conv_t *c, const char *path, nex_error_t *err)
{
  cleanup_archive struct archive *a = archive_read_new ();
  if (a == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "libarchive: out of memory");
  archive_read_support_filter_gzip (a);
  archive_read_support_filter_zstd (a);
  archive_read_support_format_tar (a);
  if (archive_read_open_filename (a, path, READ_CHUNK) != ARCHIVE_OK)
    return nex_error_field (err, c->field, "the body is not a tar archive: %s", archive_error_string (a));
  for (;;)
    {
      struct archive_entry *e;
      int rc = archive_read_next_header (a, &e);
      if (rc == ARCHIVE_EOF)
        return 0;
      if (rc < ARCHIVE_WARN)
        return nex_error_field (err, c->field, "the tar cannot be read: %s", archive_error_string (a));
      const char *raw = archive_entry_pathname (e);
      char name[NAME_MAX_LEN];
      mode_t type = archive_entry_filetype (e);
      if (type == AE_IFDIR)
        continue;
      if (raw == NULL || resolve_name ("", raw, 0, name) < 0)
        return nex_error_field (err, c->field, "the tar holds a name that is empty, too long or has `..`: `%.200s`",
                                raw ? raw : "");
      if (++c->count > NEX_IMAGE_ARCHIVE_MAX_FILES)
        return nex_error_set (err, NEX_ERR_TOO_LARGE, "the image tar holds more than %d files",
                              NEX_IMAGE_ARCHIVE_MAX_FILES);
      const char *hard = archive_entry_hardlink (e);
      const char *sym = type == AE_IFLNK ? archive_entry_symlink (e) : NULL;
      char target[NAME_MAX_LEN];
      if (hard || sym)
        {
          cleanup_free char *dir = nex_xstrdup (name);
          char *slash = strrchr (dir, '/');
          *(slash ? slash : dir) = '\0';
          if (resolve_name (hard ? "" : dir, hard ? hard : sym, 1, target) < 0)
            return nex_error_field (err, c->field, "link `%.200s` in the tar leads out of it", name);
          json_object_set_new (c->links, name, json_string (target));
        }
      else if (type == AE_IFREG)
        {
          if (store_file (c, a, name, err) < 0)
            return -1;
        }
      else
        return nex_error_field (err, c->field, "the tar holds `%.200s`, which is no file, directory or link", name);
    }
}

/* Points every link at the file it (eventually) names; links to nothing are dropped. */
static void
resolve_links (conv_t *c)
{
  const char *name;
  json_t *target;
  json_object_foreach (c->links, name, target)
  {
    const char *t = json_string_value (target);
    for (int hop = 0; t && hop < MAX_LINK_HOPS; hop++)
      {
        json_t *f = json_object_get (c->files, t);
        if (f)
          {
            json_object_set (c->files, name, f);
            break;
          }
        t = json_string_value (json_object_get (c->links, t));
      }
  }
}

/* The JSON document stored as file NAME of the tar, or NULL with *ERR. */
static json_t *
load_json (conv_t *c, const char *name, nex_error_t *err)
{
  const char *digest = json_string_value (json_object_get (json_object_get (c->files, name), "digest"));
  cleanup_free char *path = nex_xasprintf ("%s/%s", c->blobs, digest + 7);
  cleanup_error nex_error_t rerr = NULL;
  cleanup_free char *text = nex_file_read (path, JSON_MAX_BYTES, NULL, &rerr);
  json_t *j = text ? json_loads (text, 0, NULL) : NULL;
  if (j == NULL)
    nex_error_field (err, c->field, "`%s` in the tar is not JSON (or larger than %u bytes)", name, JSON_MAX_BYTES);
  return j;
}

/* The descriptor of the tar's file NAME, typed MEDIA_TYPE, or NULL with *ERR. */
static json_t *
descriptor_of (conv_t *c, const json_t *name, const char *media_type, nex_error_t *err)
{
  const json_t *f = json_is_string (name) ? json_object_get (c->files, json_string_value (name)) : NULL;
  if (f == NULL)
    {
      nex_error_field (err, c->field, "manifest.json names `%.200s`, which the tar does not hold",
                       json_is_string (name) ? json_string_value (name) : "(not a string)");
      return NULL;
    }
  return json_pack ("{s:s, s:O, s:O}", "mediaType", media_type, "digest", json_object_get (f, "digest"), "size",
                    json_object_get (f, "size"));
}

/* The OCI manifest (as a stored blob's descriptor) of docker-archive entry IMG. */
static json_t *
docker_image (conv_t *c, const json_t *img, nex_error_t *err)
{
  const json_t *layers = json_object_get (img, "Layers");
  if (!json_is_array (layers) || json_array_size (layers) == 0)
    {
      nex_error_field (err, c->field, "manifest.json has an image without Layers");
      return NULL;
    }
  json_t *config = descriptor_of (c, json_object_get (img, "Config"), MT_OCI_CONFIG, err);
  if (config == NULL)
    return NULL;
  cleanup_json json_t *m = json_pack ("{s:i, s:s, s:o, s:[]}", "schemaVersion", 2, "mediaType", MT_OCI_MANIFEST,
                                      "config", config, "layers");
  size_t i;
  const json_t *l;
  json_array_foreach (layers, i, l)
  {
    json_t *d = descriptor_of (c, l, MT_OCI_LAYER_TAR, err);
    if (d == NULL)
      return NULL;
    json_array_append_new (json_object_get (m, "layers"), d);
  }
  cleanup_free char *text = json_dumps (m, JSON_COMPACT | JSON_SORT_KEYS);
  size_t n = strlen (text);
  unsigned char d[crypto_hash_sha256_BYTES];
  char hex[2 * crypto_hash_sha256_BYTES + 1];
  crypto_hash_sha256 (d, (const unsigned char *)text, n);
  sodium_bin2hex (hex, sizeof hex, d, sizeof d);
  cleanup_free char *path = nex_xasprintf ("%s/%s", c->blobs, hex);
  if (nex_file_write_atomic (path, text, n, 0600, err) < 0)
    return NULL;
  cleanup_free char *digest = nex_xasprintf ("sha256:%s", hex);
  return json_pack ("{s:s, s:s, s:I}", "mediaType", MT_OCI_MANIFEST, "digest", digest, "size", (json_int_t)n);
}

/* The index `manifests` of the tar's docker manifest.json. */
static json_t *
docker_index (conv_t *c, nex_error_t *err)
{
  cleanup_json json_t *list = load_json (c, "manifest.json", err);
  if (list == NULL)
    return NULL;
  if (!json_is_array (list) || json_array_size (list) == 0 || json_array_size (list) > MAX_IMAGES)
    {
      nex_error_field (err, c->field, "manifest.json must be an array of 1 to %d images", MAX_IMAGES);
      return NULL;
    }
  cleanup_json json_t *out = json_array ();
  size_t i;
  const json_t *img;
  json_array_foreach (list, i, img)
  {
    cleanup_json json_t *desc = docker_image (c, img, err);
    if (desc == NULL)
      return NULL;
    const json_t *tags = json_object_get (img, "RepoTags");
    size_t k;
    const json_t *tag;
    json_array_foreach (tags, k, tag)
    {
      if (!json_is_string (tag))
        continue;
      json_t *d = json_deep_copy (desc);
      json_object_set_new (d, "annotations", json_pack ("{s:O}", REF_NAME, tag));
      json_array_append_new (out, d);
    }
    if (json_array_size (tags) == 0)
      json_array_append (out, desc);
  }
  return json_incref (out);
}

json_t *
nex_image_archive_to_layout (const char *tar_path, const char *dir, uint64_t max_bytes, const char *field,
                             nex_error_t *err)
{
  if (sodium_init () < 0)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "libsodium failed to start");
      return NULL;
    }
  cleanup_json json_t *files = json_object ();
  cleanup_json json_t *links = json_object ();
  cleanup_free char *blobs = nex_xasprintf ("%s/blobs/sha256", dir);
  conv_t c = { .dir = dir, .field = field, .blobs = blobs, .files = files, .links = links, .max = max_bytes };
  if (nex_mkdir_p (blobs, 0700, err) < 0 || read_tar (&c, tar_path, err) < 0)
    return NULL;
  resolve_links (&c);
  cleanup_json json_t *manifests = NULL;
  if (json_object_get (files, "index.json"))
    {
      cleanup_json json_t *index = load_json (&c, "index.json", err);
      if (index == NULL)
        return NULL;
      manifests = json_incref (json_object_get (index, "manifests"));
      if (!json_is_array (manifests) || json_array_size (manifests) == 0)
        {
          nex_error_field (err, field, "the OCI layout's index.json lists no manifests");
          return NULL;
        }
    }
  else if (json_object_get (files, "manifest.json"))
    manifests = docker_index (&c, err);
  else
    nex_error_field (err, field,
                     "the tar is neither an OCI image layout (index.json) nor a docker-archive "
                     "(manifest.json)");
  if (manifests == NULL)
    return NULL;
  cleanup_json json_t *index = json_pack ("{s:i, s:O}", "schemaVersion", 2, "manifests", manifests);
  cleanup_free char *text = json_dumps (index, JSON_COMPACT);
  cleanup_free char *index_path = nex_xasprintf ("%s/index.json", dir);
  cleanup_free char *marker = nex_xasprintf ("%s/oci-layout", dir);
  static const char layout_version[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
  if (nex_file_write_atomic (index_path, text, strlen (text), 0600, err) < 0
      || nex_file_write_atomic (marker, layout_version, strlen (layout_version), 0600, err) < 0)
    return NULL;
  return json_incref (manifests);
}
