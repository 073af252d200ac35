/* SPDX-License-Identifier: Apache-2.0 */
/* artifact.c — artifact URLs, their schemes, and the content-addressed cache (contract in artifact.h).
 *
 * A URL is parsed once into an artifact_url_t by its scheme's parse function; the scheme table below is the one
 * dispatch point.  A scheme that can fetch streams bytes into a sink_t, which writes them to the temporary file,
 * feeds the SHA-256 and enforces the size bound, so that a new scheme (libcurl's write callback, a JetStream
 * chunk handler) only has to produce bytes and call sink_write. */
#include "server/artifacts/artifact.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/http.h"
#include "server/artifacts/elf.h"

#define SCHEME_MAX_LEN 16       /* longer than any scheme we know; bounds what a refusal quotes */
#define COPY_CHUNK (128 * 1024) /* read size when copying */
#define FILE_URL_EXAMPLE "file:///path/to/executable"
#define CACHED_URL_EXAMPLE "artifact://<sha256>"

typedef struct artifact_url
{
  const struct scheme *scheme; /* the entry of SCHEMES the URL uses */
  char *path;                  /* file: the decoded absolute path */
  char digest[65];             /* artifact: the cache entry's digest (64 lower-case hex digits) */
  char *bucket;                /* nats: the object store bucket */
  char *key;                   /* nats: the object's name */
  char *url;                   /* http, https: the whole URL */
} artifact_url_t;

static void
url_release (artifact_url_t *u)
{
  free (u->path);
  free (u->bucket);
  free (u->key);
  free (u->url);
  u->path = u->bucket = u->key = u->url = NULL;
}
#define cleanup_url cleanup_with (url_release)

/* Where fetched bytes go: the temporary file, the running digest, and the count that enforces the bound. */
typedef struct sink
{
  int fd;                          /* temporary file in the cache directory */
  crypto_hash_sha256_state sha256; /* digest of every byte written so far */
  uint64_t bytes;                  /* bytes written so far */
  uint64_t max;                    /* bound on bytes (at most NEX_ARTIFACT_MAX_BYTES) */
  struct stat source;              /* file: what was read (for the memo below), when HAS_SOURCE */
  int has_source;
} sink_t;

/* --- a memo of local files already in the cache ---------------------------------------------------------------
 *
 * Deploying the same file:// artifact again would copy and hash it again (milliseconds for every deploy of a
 * few hundred KiB).  A file whose device, inode, size, modification and change times are all unchanged holds
 * the bytes it held: ctime moves on every change of content or metadata and cannot be set by anyone (utimensat
 * sets mtime and atime only).  So the digest of such a file is remembered, and reused while its cache entry
 * exists; any difference in the identity means a fresh copy.  A small table, oldest entry replaced. */

#define MEMO_SIZE 64

typedef struct memo_entry
{
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime, ctime;
  char digest[65]; /* "" when the slot is free */
} memo_entry_t;

static memo_entry_t memo[MEMO_SIZE];
static unsigned memo_next;
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

static int
memo_same (const memo_entry_t *m, const struct stat *st)
{
  return m->digest[0] && m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size
         && m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec
         && m->ctime.tv_sec == st->st_ctim.tv_sec && m->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* The digest remembered for the file described by ST into DIGEST: 1, or 0 when there is none. */
static int
memo_find (const struct stat *st, char digest[65])
{
  pthread_mutex_lock (&memo_lock);
  int found = 0;
  for (size_t i = 0; i < MEMO_SIZE && !found; i++)
    if (memo_same (&memo[i], st))
      {
        memcpy (digest, memo[i].digest, 65);
        found = 1;
      }
  pthread_mutex_unlock (&memo_lock);
  return found;
}

static void
memo_remember (const struct stat *st, const char digest[65])
{
  pthread_mutex_lock (&memo_lock);
  memo_entry_t *m = NULL;
  for (size_t i = 0; i < MEMO_SIZE && m == NULL; i++)
    if (memo_same (&memo[i], st))
      m = &memo[i];
  if (m == NULL)
    m = &memo[memo_next++ % MEMO_SIZE];
  *m = (memo_entry_t){
    .dev = st->st_dev, .ino = st->st_ino, .size = st->st_size, .mtime = st->st_mtim, .ctime = st->st_ctim
  };
  memcpy (m->digest, digest, 65);
  pthread_mutex_unlock (&memo_lock);
}

/* Appends N bytes of BUF to the sink.  Returns 0, or -1 with NEX_ERR_TOO_LARGE once the artifact would exceed
 * the sink's bound (so a huge or endless source cannot fill the node's disk), or NEX_ERR_SYSTEM when the write
 * fails. */
static int
sink_write (sink_t *s, const void *buf, size_t n, nex_error_t *err)
{
  if (n > s->max - s->bytes)
    {
      if (s->max % (1024 * 1024) == 0)
        return nex_error_set (err, NEX_ERR_TOO_LARGE, "artifact is larger than %llu MiB",
                              (unsigned long long)(s->max / (1024 * 1024)));
      return nex_error_set (err, NEX_ERR_TOO_LARGE, "artifact is larger than %llu bytes", (unsigned long long)s->max);
    }
  if (nex_fd_write_all (s->fd, buf, n, err) < 0)
    return nex_error_wrap (err, "write to the artifact cache");
  crypto_hash_sha256_update (&s->sha256, buf, n);
  s->bytes += n;
  return 0;
}

/* sink_write as the nex_artifact_write_t that schemes implemented elsewhere (NATS, HTTP) are handed. */
static int
sink_write_cb (void *sink, const void *buf, size_t n, nex_error_t *err)
{
  return sink_write (sink, buf, n, err);
}

/* --- file:// -------------------------------------------------------------------------------------------------- */

static int
hex_value (int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower (c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Whether the N bytes at S are well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
static int
is_utf8 (const unsigned char *s, size_t n)
{
  size_t i = 0;
  while (i < n)
    {
      unsigned char c = s[i];
      size_t more;
      uint32_t cp, min;
      if (c < 0x80)
        {
          i++;
          continue;
        }
      else if ((c & 0xe0) == 0xc0)
        more = 1, cp = c & 0x1f, min = 0x80;
      else if ((c & 0xf0) == 0xe0)
        more = 2, cp = c & 0x0f, min = 0x800;
      else if ((c & 0xf8) == 0xf0)
        more = 3, cp = c & 0x07, min = 0x10000;
      else
        return 0;
      if (more > n - i - 1)
        return 0;
      for (size_t k = 1; k <= more; k++)
        {
          if ((s[i + k] & 0xc0) != 0x80)
            return 0;
          cp = (cp << 6) | (s[i + k] & 0x3f);
        }
      if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
      i += more + 1;
    }
  return 1;
}

/* REST is what follows "file:".  Only the form file://[localhost]/absolute/path is accepted. */
static int
file_parse (const char *rest, artifact_url_t *out, nex_error_t *err)
{
  if (strncmp (rest, "//", 2) != 0)
    return nex_error_field (err, "artifact", "file URLs must have the form " FILE_URL_EXAMPLE);
  const char *authority = rest + 2;
  const char *path = strchr (authority, '/');
  if (path == NULL)
    return nex_error_field (err, "artifact", "file URL has no path: use " FILE_URL_EXAMPLE);
  size_t alen = (size_t)(path - authority);
  /* Only this node's files: a host part would suggest a remote file (or an SMB share, as Windows reads it) that
   * we would silently read locally instead. */
  if (alen != 0 && !(alen == strlen ("localhost") && strncasecmp (authority, "localhost", alen) == 0))
    return nex_error_field (err, "artifact",
                            "file URL names host `%.*s`: only files on this node can be used (" FILE_URL_EXAMPLE ")",
                            (int)(alen > 64 ? 64 : alen), authority);
  /* A query or fragment has no meaning for a file; taking `?`/`#` literally would make the URL mean something
   * else to us than to every other URL reader (e.g. the client's logs). */
  if (strpbrk (path, "?#") != NULL)
    return nex_error_field (err, "artifact",
                            "file URL must not have a query or fragment (write `?` as %%3F and `#` as %%23)");

  size_t n = strlen (path);
  cleanup_free char *decoded = nex_xmalloc (n + 1);
  size_t j = 0;
  for (size_t i = 0; i < n; i++)
    {
      unsigned char c = (unsigned char)path[i];
      if (c == '%')
        {
          int hi = i + 2 < n ? hex_value ((unsigned char)path[i + 1]) : -1;
          int lo = i + 2 < n ? hex_value ((unsigned char)path[i + 2]) : -1;
          if (hi < 0 || lo < 0)
            return nex_error_field (err, "artifact", "file URL has a malformed %%-escape (expected %%XX)");
          c = (unsigned char)(hi * 16 + lo);
          i += 2;
          /* A NUL would cut the path short where the C library reads it, so that the file opened is not the
           * one the URL names. */
          if (c == '\0')
            return nex_error_field (err, "artifact", "file URL must not contain %%00");
        }
      /* Control characters in a path are never legitimate here and would reach messages and logs that quote
       * the path (terminal escapes, forged log lines). */
      if (c < 0x20 || c == 0x7f)
        return nex_error_field (err, "artifact", "file URL path must not contain control characters");
      decoded[j++] = (char)c;
    }
  decoded[j] = '\0';
  /* Messages, events and logs quote the path, and they are JSON, which cannot hold arbitrary bytes: the decoded
   * path (raw bytes and %XX escapes alike) must be UTF-8. */
  if (!is_utf8 ((const unsigned char *)decoded, j))
    return nex_error_field (err, "artifact", "file URL path must be UTF-8 once %%-escapes are decoded");
  if (j >= PATH_MAX)
    return nex_error_field (err, "artifact", "file URL path is longer than %d bytes", PATH_MAX - 1);

  /* `.` and `..` do not confine anything (any absolute path may be named); they are refused so that the path
   * shown in messages, events and logs is the file that is read, not `/srv/apps/../../etc/x` dressed up as a
   * file under /srv/apps. */
  for (const char *c = decoded; *c != '\0';)
    {
      const char *end = strchrnul (c + 1, '/');
      size_t clen = (size_t)(end - c - 1); /* C points at the slash before the component */
      if ((clen == 1 && c[1] == '.') || (clen == 2 && c[1] == '.' && c[2] == '.'))
        return nex_error_field (err, "artifact", "file URL path must not contain `.` or `..` components");
      c = end;
    }
  out->path = NEX_STEAL_PTR (decoded);
  return 0;
}

static int
file_precheck (const artifact_url_t *u, const char *cache_dir, nex_error_t *err)
{
  return nex_elf_check_file (u->path, err);
}

static int
file_fetch (const artifact_url_t *u, sink_t *sink, nex_error_t *err)
{
  cleanup_close int fd = nex_elf_open (u->path, err);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat (fd, &st) < 0)
    return nex_error_sys (err, errno, "fstat `%s`", u->path);
  sink->source = st;
  sink->has_source = 1;
  /* Refused before copying anything; sink_write still enforces the bound if the file grows meanwhile. */
  if ((uint64_t)st.st_size > NEX_ARTIFACT_MAX_BYTES)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "`%s` is larger than %llu MiB", u->path,
                          NEX_ARTIFACT_MAX_BYTES / (1024 * 1024));
  cleanup_free char *buf = nex_xmalloc (COPY_CHUNK);
  for (;;)
    {
      ssize_t r = read (fd, buf, COPY_CHUNK);
      if (r < 0)
        {
          if (errno == EINTR)
            continue;
          return nex_error_sys (err, errno, "read `%s`", u->path);
        }
      if (r == 0)
        return 0;
      if (sink_write (sink, buf, (size_t)r, err) < 0)
        return -1;
    }
}

/* --- artifact:// -------------------------------------------------------------------------------------------- */

static int
is_sha256_hex (const char *s)
{
  size_t i;
  for (i = 0; s[i] != '\0'; i++)
    if (!isxdigit ((unsigned char)s[i]))
      return 0;
  return i == crypto_hash_sha256_BYTES * 2;
}

/* REST is what follows "artifact:": "//" and 64 hex digits naming a cache entry (an upload, or an artifact an
 * earlier deploy fetched).  Nothing else may follow: the digest is the whole identity. */
static int
cached_parse (const char *rest, artifact_url_t *out, nex_error_t *err)
{
  if (strncmp (rest, "//", 2) != 0 || !is_sha256_hex (rest + 2))
    return nex_error_field (err, "artifact",
                            "artifact URLs name an uploaded artifact by its SHA-256: " CACHED_URL_EXAMPLE);
  for (size_t i = 0; i < 64; i++)
    out->digest[i] = (char)tolower ((unsigned char)rest[2 + i]);
  out->digest[64] = '\0';
  return 0;
}

/* The entry must be in the cache; without a cache to look in (nex_artifact_precheck) only the syntax counts. */
static int
cached_precheck (const artifact_url_t *u, const char *cache_dir, nex_error_t *err)
{
  if (cache_dir == NULL)
    return 0;
  uint64_t size;
  int r = nex_artifact_cached (cache_dir, u->digest, &size, err);
  if (r == 0)
    return nex_error_field (err, "artifact", "no uploaded artifact has sha256 %s (upload it with POST /v1/artifacts)",
                            u->digest);
  return r < 0 ? -1 : 0;
}

/* --- nats:// ------------------------------------------------------------------------------------------------- */

/* The registered reader of object stores (the NATS bridge), if any.  Set before the supervisor starts and
 * cleared after it stopped, so readers see a stable value; accessed atomically anyway. */
static nex_artifact_nats_get_t nats_get;
static void *nats_ctx;

void
nex_artifact_set_nats (nex_artifact_nats_get_t get, void *ctx)
{
  __atomic_store_n (&nats_ctx, ctx, __ATOMIC_SEQ_CST);
  __atomic_store_n (&nats_get, get, __ATOMIC_SEQ_CST);
}

#define NATS_URL_EXAMPLE "nats://bucket/key"

static int
nats_parse (const char *rest, artifact_url_t *out, nex_error_t *err)
{
  if (strncmp (rest, "//", 2) != 0)
    return nex_error_field (err, "artifact", "object store URLs have the form " NATS_URL_EXAMPLE);
  const char *bucket = rest + 2;
  const char *slash = strchr (bucket, '/');
  if (slash == NULL || slash == bucket || slash[1] == '\0')
    return nex_error_field (err, "artifact", "object store URLs name a bucket and a key: " NATS_URL_EXAMPLE);
  out->bucket = nex_xstrndup (bucket, (size_t)(slash - bucket));
  /* The bucket becomes part of stream names and subjects: only the characters the clients allow there. */
  for (const char *c = out->bucket; *c; c++)
    if (!isalnum ((unsigned char)*c) && *c != '_' && *c != '-')
      return nex_error_field (err, "artifact", "object store bucket names are made of A-Z a-z 0-9 _ -");
  /* As for file URLs: a query or fragment would make the URL mean different things to different readers. */
  if (strpbrk (slash + 1, "?#") != NULL)
    return nex_error_field (err, "artifact", "object store keys must not contain `?` or `#`");
  if (!is_utf8 ((const unsigned char *)slash + 1, strlen (slash + 1)))
    return nex_error_field (err, "artifact", "object store keys must be UTF-8");
  out->key = nex_xstrdup (slash + 1);
  return 0;
}

static int
nats_precheck (const artifact_url_t *u, const char *cache_dir, nex_error_t *err)
{
  if (__atomic_load_n (&nats_get, __ATOMIC_SEQ_CST) == NULL)
    return nex_error_field (err, "artifact",
                            "nats:// artifacts need a node connected to NATS (start nexd with --nats)");
  return 0;
}

static int
nats_fetch (const artifact_url_t *u, sink_t *sink, nex_error_t *err)
{
  nex_artifact_nats_get_t get = __atomic_load_n (&nats_get, __ATOMIC_SEQ_CST);
  if (get == NULL)
    return nex_error_field (err, "artifact",
                            "nats:// artifacts need a node connected to NATS (start nexd with --nats)");
  if (get (__atomic_load_n (&nats_ctx, __ATOMIC_SEQ_CST), u->bucket, u->key, NEX_ARTIFACT_MAX_BYTES, sink_write_cb,
           sink, err)
      < 0)
    return nex_error_wrap (err, "fetch `nats://%s/%s`", u->bucket, u->key);
  return 0;
}

/* --- http://, https:// ----------------------------------------------------------------------------------------- */

/* REST is what follows "http:" or "https:"; the whole URL is rebuilt from it and checked by libcurl's parser. */
static int
http_parse_as (const char *scheme, const char *rest, artifact_url_t *out, nex_error_t *err)
{
  /* libcurl's parser is lenient ("http:///x" names host x): the authority must be there, as RFC 3986 has it. */
  if (strncmp (rest, "//", 2) != 0 || rest[2] == '\0' || rest[2] == '/')
    return nex_error_field (err, "artifact", "http(s) URLs need a host: http://host/path");
  out->url = nex_xasprintf ("%s:%s", scheme, rest);
  return nex_artifact_http_check (out->url, err);
}

static int
http_parse (const char *rest, artifact_url_t *out, nex_error_t *err)
{
  return http_parse_as ("http", rest, out, err);
}

static int
https_parse (const char *rest, artifact_url_t *out, nex_error_t *err)
{
  return http_parse_as ("https", rest, out, err);
}

static int
http_fetch (const artifact_url_t *u, sink_t *sink, nex_error_t *err)
{
  return nex_artifact_http_get (u->url, sink->max, sink_write_cb, sink, err);
}

/* --- the scheme table ----------------------------------------------------------------------------------------- */

typedef struct scheme
{
  const char *name; /* lower case, as matched (schemes are case-insensitive) */
  /* Parses what follows "<name>:" into OUT.  NULL for a scheme recognised but not implemented yet. */
  int (*parse) (const char *rest, artifact_url_t *out, nex_error_t *err);
  /* What can be checked at request time (CACHE_DIR may be NULL); NULL when nothing can. */
  int (*precheck) (const artifact_url_t *u, const char *cache_dir, nex_error_t *err);
  /* Streams the artifact's bytes into SINK.  NULL for a scheme whose artifacts are in the cache already. */
  int (*fetch) (const artifact_url_t *u, sink_t *sink, nex_error_t *err);
} scheme_t;

static const scheme_t schemes[] = {
  { "file", file_parse, file_precheck, file_fetch }, { "artifact", cached_parse, cached_precheck, NULL },
  { "http", http_parse, NULL, http_fetch },          { "https", https_parse, NULL, http_fetch },
  { "nats", nats_parse, nats_precheck, nats_fetch },
};

/* Parses URL into OUT: finds the scheme (RFC 3986 syntax), refuses unknown and unimplemented ones, and hands
 * the rest to the scheme's parser. */
static int
url_parse (const char *url, artifact_url_t *out, nex_error_t *err)
{
  if (url == NULL || *url == '\0')
    return nex_error_field (err, "artifact", "must not be empty");
  /* Spaces and control characters must be percent-encoded in a URL; refusing them raw also keeps them out of
   * every message below that quotes part of the URL. */
  for (const unsigned char *p = (const unsigned char *)url; *p != '\0'; p++)
    if (*p <= 0x20 || *p == 0x7f)
      return nex_error_field (err, "artifact", "URL contains a space or control character (percent-encode it)");

  size_t len = 0;
  if (isalpha ((unsigned char)url[0]))
    while (isalnum ((unsigned char)url[len]) || url[len] == '+' || url[len] == '-' || url[len] == '.')
      len++;
  if (len == 0 || url[len] != ':')
    return nex_error_field (err, "artifact", "must be a URL such as " FILE_URL_EXAMPLE);
  if (len > SCHEME_MAX_LEN)
    return nex_error_field (err, "artifact", "scheme `%.*s...` is not supported", SCHEME_MAX_LEN, url);
  char name[SCHEME_MAX_LEN + 1];
  for (size_t i = 0; i < len; i++)
    name[i] = (char)tolower ((unsigned char)url[i]);
  name[len] = '\0';

  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    {
      if (strcmp (schemes[i].name, name) != 0)
        continue;
      if (schemes[i].parse == NULL)
        return nex_error_field (err, "artifact",
                                "scheme `%s` is not supported yet (use " FILE_URL_EXAMPLE " or " CACHED_URL_EXAMPLE ")",
                                name);
      out->scheme = &schemes[i];
      return schemes[i].parse (url + len + 1, out, err);
    }
  return nex_error_field (err, "artifact", "scheme `%s` is not supported (use " FILE_URL_EXAMPLE ")", name);
}

/* --- staging: a temporary file in the cache, filled, checked and published ------------------------------------- */

/* Bytes on their way into the cache.  Created by us, mode 0600, under a name no cache entry can have, so nobody
 * else writes these bytes between the digest and the ELF check: that is what makes both checks hold for what is
 * run. */
typedef struct staging
{
  char *tmp; /* CACHE_DIR/.fetch-XXXXXX; NULL once published or removed */
  char *dir; /* CACHE_DIR */
  int dirfd; /* CACHE_DIR, O_PATH */
  sink_t sink;
} staging_t;

static void
staging_release (staging_t *st)
{
  if (st->tmp)
    unlink (st->tmp);
  free (st->tmp);
  free (st->dir);
  if (st->sink.fd >= 0)
    close (st->sink.fd);
  if (st->dirfd >= 0)
    close (st->dirfd);
  memset (st, 0, sizeof *st);
  st->sink.fd = st->dirfd = -1;
}

static int
staging_open (staging_t *st, const char *cache_dir, uint64_t max, nex_error_t *err)
{
  memset (st, 0, sizeof *st);
  st->sink.fd = st->dirfd = -1;
  /* Idempotent and thread-safe; libsodium's contract is that nothing is used before it has succeeded. */
  if (sodium_init () < 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "libsodium failed to initialise");
  st->dir = nex_xstrdup (cache_dir);
  st->tmp = nex_xasprintf ("%s/.fetch-XXXXXX", cache_dir);
  st->sink.fd = mkostemp (st->tmp, O_CLOEXEC);
  if (st->sink.fd < 0)
    {
      int e = errno;
      free (st->tmp);
      st->tmp = NULL;
      return nex_error_sys (err, e, "create a temporary file in `%s`", cache_dir);
    }
  st->dirfd = open (cache_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (st->dirfd < 0)
    return nex_error_sys (err, errno, "open `%s`", cache_dir);
  st->sink.max = max < NEX_ARTIFACT_MAX_BYTES ? max : NEX_ARTIFACT_MAX_BYTES;
  crypto_hash_sha256_init (&st->sink.sha256);
  return 0;
}

/* Moves the finished temporary file TMP to its cache entry FINAL without ever replacing an entry: an existing
 * one has the same name, hence the same bytes, and may be bind-mounted into running sandboxes. */
static int
publish (const char *tmp, const char *final, nex_error_t *err)
{
  if (renameat2 (AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno == EEXIST)
    {
      unlink (tmp);
      return 0;
    }
  if (errno != EINVAL && errno != ENOSYS)
    return nex_error_sys (err, errno, "rename `%s` to `%s`", tmp, final);
  /* The filesystem cannot refuse to replace; replacing same bytes with same bytes atomically is harmless. */
  if (rename (tmp, final) < 0)
    return nex_error_sys (err, errno, "rename `%s` to `%s`", tmp, final);
  return 0;
}

/* Seals what was written: digests it, compares with EXPECTED_SHA256 (NULL: any), checks it is a static ELF for
 * this node and publishes it as its cache entry (or drops it when the entry exists).  Writes the digest into
 * DIGEST (also on a mismatch) and sets *EXISTED.  Returns the entry's path, or NULL; the temporary file is gone
 * either way once staging_release runs. */
static char *
staging_publish (staging_t *st, const char *expected_sha256, char digest[65], int *existed, nex_error_t *err)
{
  unsigned char sum[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&st->sink.sha256, sum);
  sodium_bin2hex (digest, 65, sum, sizeof sum);
  *existed = 0;

  if (expected_sha256 != NULL && strcasecmp (expected_sha256, digest) != 0)
    {
      nex_error_field (err, "sha256", "sha256 mismatch: expected %s, artifact has %s", expected_sha256, digest);
      return NULL;
    }
  if (nex_elf_check_fd (st->sink.fd, err) < 0)
    return NULL;
  cleanup_free char *final = nex_xasprintf ("%s/%s", st->dir, digest);
  /* Already cached (the usual case for a redeploy): this copy is dropped, so it need not be made durable. */
  if (faccessat (st->dirfd, digest, F_OK, 0) == 0)
    {
      *existed = 1;
      return NEX_STEAL_PTR (final);
    }
  /* Flushed before the rename, so that after a crash an entry is either absent or complete: a cache entry's name
   * is a promise about its bytes.  Mode 0555: nobody, not even nexd's own user by mistake, writes to an entry
   * once published. */
  if (fsync (st->sink.fd) < 0)
    {
      nex_error_sys (err, errno, "fsync `%s`", st->tmp);
      return NULL;
    }
  if (fchmod (st->sink.fd, 0555) < 0)
    {
      nex_error_sys (err, errno, "chmod `%s`", st->tmp);
      return NULL;
    }
  if (publish (st->tmp, final, err) < 0)
    return NULL;
  free (st->tmp);
  st->tmp = NULL;
  return NEX_STEAL_PTR (final);
}

/* --- public --------------------------------------------------------------------------------------------------- */

int
nex_artifact_check_url (const char *url, nex_error_t *err)
{
  cleanup_url artifact_url_t u = { 0 };
  return url_parse (url, &u, err);
}

int
nex_artifact_precheck_at (const char *cache_dir, const char *url, nex_error_t *err)
{
  cleanup_url artifact_url_t u = { 0 };
  if (url_parse (url, &u, err) < 0)
    return -1;
  return u.scheme->precheck != NULL ? u.scheme->precheck (&u, cache_dir, err) : 0;
}

int
nex_artifact_precheck (const char *url, nex_error_t *err)
{
  return nex_artifact_precheck_at (NULL, url, err);
}

int
nex_artifact_cached (const char *cache_dir, const char *sha256, uint64_t *size, nex_error_t *err)
{
  if (!is_sha256_hex (sha256))
    return nex_error_field (err, "sha256", "must be 64 hexadecimal digits");
  char name[65];
  for (size_t i = 0; i < 65; i++)
    name[i] = (char)tolower ((unsigned char)sha256[i]);
  cleanup_free char *path = nex_xasprintf ("%s/%s", cache_dir, name);
  struct stat st;
  if (stat (path, &st) < 0)
    {
      if (errno == ENOENT)
        return 0;
      return nex_error_sys (err, errno, "stat `%s`", path);
    }
  if (!S_ISREG (st.st_mode))
    return 0;
  *size = (uint64_t)st.st_size;
  return 1;
}

char *
nex_artifact_fetch (const char *cache_dir, const char *url, const char *expected_sha256, char digest[65],
                    nex_error_t *err)
{
  cleanup_url artifact_url_t u = { 0 };
  if (url_parse (url, &u, err) < 0)
    return NULL;
  if (expected_sha256 != NULL && !is_sha256_hex (expected_sha256))
    {
      nex_error_field (err, "sha256", "must be 64 hexadecimal digits");
      return NULL;
    }
  if (u.scheme->fetch == NULL)
    {
      /* artifact://: the bytes are in the cache already, checked when they were published; the entry's name is
       * their digest. */
      memcpy (digest, u.digest, 65);
      if (expected_sha256 != NULL && strcasecmp (expected_sha256, digest) != 0)
        {
          nex_error_field (err, "sha256", "sha256 mismatch: expected %s, artifact has %s", expected_sha256, digest);
          return NULL;
        }
      if (cached_precheck (&u, cache_dir, err) < 0)
        return NULL;
      return nex_xasprintf ("%s/%s", cache_dir, digest);
    }

  if (u.path != NULL)
    {
      /* file://: the same file as an earlier fetch, whose entry is still there, needs no copy (see memo). */
      char known[65];
      struct stat source;
      cleanup_close int fd = nex_elf_open (u.path, NULL);
      if (fd >= 0 && fstat (fd, &source) == 0 && memo_find (&source, known))
        {
          cleanup_free char *entry = nex_xasprintf ("%s/%s", cache_dir, known);
          struct stat est;
          if (stat (entry, &est) == 0 && S_ISREG (est.st_mode) && est.st_size == source.st_size)
            {
              if (expected_sha256 != NULL && strcasecmp (expected_sha256, known) != 0)
                {
                  nex_error_field (err, "sha256", "sha256 mismatch: expected %s, artifact has %s", expected_sha256,
                                   known);
                  return NULL;
                }
              memcpy (digest, known, 65);
              return NEX_STEAL_PTR (entry);
            }
        }
    }

  staging_t st;
  if (staging_open (&st, cache_dir, NEX_ARTIFACT_MAX_BYTES, err) < 0)
    {
      staging_release (&st);
      return NULL;
    }
  char *path = NULL;
  int existed;
  if (u.scheme->fetch (&u, &st.sink, err) == 0)
    path = staging_publish (&st, expected_sha256, digest, &existed, err);
  if (path != NULL && st.sink.has_source)
    memo_remember (&st.sink.source, digest);
  staging_release (&st);
  return path;
}

struct nex_artifact_upload
{
  staging_t st;
};

nex_artifact_upload_t *
nex_artifact_upload_begin (const char *cache_dir, uint64_t max, nex_error_t *err)
{
  nex_artifact_upload_t *up = nex_xzalloc (sizeof *up);
  if (staging_open (&up->st, cache_dir, max, err) < 0)
    {
      nex_artifact_upload_free (up);
      return NULL;
    }
  return up;
}

int
nex_artifact_upload_write (nex_artifact_upload_t *up, const void *data, size_t n, nex_error_t *err)
{
  return sink_write (&up->st.sink, data, n, err);
}

int
nex_artifact_upload_finish (nex_artifact_upload_t *up, const char *expected_sha256, char digest[65], uint64_t *size,
                            int *existed, nex_error_t *err)
{
  if (expected_sha256 != NULL && !is_sha256_hex (expected_sha256))
    return nex_error_field (err, "sha256", "must be 64 hexadecimal digits");
  if (up->st.sink.bytes == 0)
    return nex_error_field (err, "artifact", "the upload is empty: send the executable as the request body");
  cleanup_free char *path = staging_publish (&up->st, expected_sha256, digest, existed, err);
  if (path == NULL)
    return -1;
  *size = up->st.sink.bytes;
  return 0;
}

void
nex_artifact_upload_free (nex_artifact_upload_t *up)
{
  if (up == NULL)
    return;
  staging_release (&up->st);
  free (up);
}
