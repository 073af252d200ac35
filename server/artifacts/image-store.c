/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-store.c — the image cache: pull threads, flattening, the registry rows (contract in
 * image-store.h).
 *
 * A pull is a record in the store's list of pulls under way, keyed by the reference's canonical text, with the
 * callbacks waiting for it; its thread pulls (distribution.c), flattens into a temporary tree that is renamed to
 * its digest once whole (layer.c), stores the registry rows, and tells every waiter.  The list's lock is never
 * held across any of that. */
#include "server/artifacts/image-store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/distribution.h"
#include "server/artifacts/image-archive.h"
#include "server/artifacts/image-ref.h"
#include "server/artifacts/layer.h"
#include "server/artifacts/token-cache.h"
#include "server/artifacts/unpack.h"
#include "server/clock.h"
#include "server/drivers/driver.h"
#include "server/drivers/vm-image.h"
#include "server/log.h"
#include "server/node.h"

#define PROGRESS_EVERY_MS 250
#define AUTH_FILE_MAX (1024 * 1024)

typedef struct waiter
{
  nex_image_ready_t ready;
  void *ctx;
  struct waiter *next;
} waiter_t;

typedef struct pull
{
  nex_image_store_t *store;
  nex_image_ref_t ref;
  waiter_t *waiters; /* under the store's lock */
  int64_t last_progress_ms;
  struct pull *next;
} pull_t;

struct nex_image_store
{
  nex_node_t *node;
  char *blobs_dir, *trees_dir;
  json_t *auths;             /* --registry-auth's `auths`, or NULL */
  nex_token_cache_t *tokens; /* registry Bearer tokens, across pulls */
  pthread_mutex_t lock;
  pthread_cond_t idle;
  pull_t *pulls;            /* under way */
  int running;              /* pull threads alive */
  pthread_mutex_t evicting; /* one eviction at a time */
  int draining;
};

static char *
hex_of (const char *digest)
{
  return nex_xstrdup (strncmp (digest, "sha256:", 7) == 0 ? digest + 7 : digest);
}

char *
nex_image_store_tree (nex_image_store_t *s, const char *digest)
{
  cleanup_free char *hex = hex_of (digest);
  return nex_xasprintf ("%s/%s", s->trees_dir, hex);
}

/* Removes NAME's leftovers below DIR: temporary blobs and trees of pulls a crash interrupted. */
static void
sweep (const char *dir)
{
  cleanup_close int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  cleanup_dir DIR *d = fd >= 0 ? fdopendir (dup (fd)) : NULL;
  struct dirent *de;
  while (d && (de = readdir (d)) != NULL)
    if (strncmp (de->d_name, ".pull-", 6) == 0 || strncmp (de->d_name, ".tree-", 6) == 0
        || strncmp (de->d_name, ".gone-", 6) == 0)
      nex_layer_remove_tree (fd, de->d_name);
}

nex_image_store_t *
nex_image_store_open (nex_node_t *node, nex_error_t *err)
{
  nex_image_store_t *s = nex_xzalloc (sizeof *s);
  s->node = node;
  s->blobs_dir = nex_xasprintf ("%s/oci/blobs", node->data_dir);
  s->trees_dir = nex_xasprintf ("%s/oci/trees", node->data_dir);
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->idle, NULL);
  pthread_mutex_init (&s->evicting, NULL);
  s->tokens = nex_token_cache_new ();
  if (nex_mkdir_p (s->blobs_dir, 0700, err) < 0 || nex_mkdir_p (s->trees_dir, 0700, err) < 0)
    {
      nex_image_store_close (s);
      return NULL;
    }
  /* The sandboxes reach the trees below the data dir as their own root (host uid 100000, not root): the
   * directories on the way must be searchable by them; what is inside a tree belongs to the image. */
  cleanup_free char *oci = nex_xasprintf ("%s/oci", node->data_dir);
  chmod (oci, 0711);
  chmod (s->trees_dir, 0711);
  sweep (s->blobs_dir);
  sweep (s->trees_dir);
  if (node->cfg->registry_auth)
    {
      cleanup_error nex_error_t rerr = NULL;
      cleanup_free char *text = nex_file_read (node->cfg->registry_auth, AUTH_FILE_MAX, NULL, &rerr);
      cleanup_json json_t *j = text ? json_loads (text, 0, NULL) : NULL;
      if (!json_is_object (json_object_get (j, "auths")))
        {
          nex_error_field (err, "registry_auth", "--registry-auth `%s` is no docker config.json with `auths`%s%s",
                           node->cfg->registry_auth, rerr ? ": " : "", rerr ? rerr->msg : "");
          nex_image_store_close (s);
          return NULL;
        }
      s->auths = json_incref (json_object_get (j, "auths"));
    }
  return s;
}

void
nex_image_store_drain (nex_image_store_t *s)
{
  if (s == NULL)
    return;
  pthread_mutex_lock (&s->lock);
  s->draining = 1;
  while (s->running > 0)
    pthread_cond_wait (&s->idle, &s->lock);
  pthread_mutex_unlock (&s->lock);
}

void
nex_image_store_close (nex_image_store_t *s)
{
  if (s == NULL)
    return;
  nex_image_store_drain (s);
  json_decref (s->auths);
  nex_token_cache_free (s->tokens);
  free (s->blobs_dir);
  free (s->trees_dir);
  pthread_mutex_destroy (&s->lock);
  pthread_cond_destroy (&s->idle);
  pthread_mutex_destroy (&s->evicting);
  free (s);
}

/* --- events --------------------------------------------------------------------------------------------------- */

static void
emit (pull_t *p, const char *type, const char *digest, uint64_t done, uint64_t total, const char *reason)
{
  json_t *data = json_pack ("{s:s, s:I, s:I}", "image", p->ref.canonical, "bytes_done", (json_int_t)done, "bytes_total",
                            (json_int_t)total);
  if (digest)
    json_object_set_new (data, "digest", json_string (digest));
  if (reason)
    json_object_set_new (data, "reason", json_string (reason));
  nex_node_emit (p->store->node, type, NULL, data);
}

static void
on_progress (void *ctx, uint64_t done, uint64_t total)
{
  pull_t *p = ctx;
  int64_t now = nex_clock_mono_ms ();
  if (done < total && now - p->last_progress_ms < PROGRESS_EVERY_MS)
    return;
  p->last_progress_ms = now;
  emit (p, "image_pull_progress", NULL, done, total, NULL);
}

/* --- flattening ----------------------------------------------------------------------------------------------- */

/* Applies PULLED's layers (DIFF_IDS the config's) onto ROOT in the unpack child (unpack.h). */
static int
unpack (nex_image_store_t *s, const nex_pulled_t *pulled, const json_t *diff_ids, int root, nex_layer_budget_t *budget,
        nex_error_t *err)
{
  cleanup_free nex_unpack_layer_t *layers = nex_xzalloc ((pulled->n_layers + 1) * sizeof *layers);
  cleanup_free char **blobs = nex_xzalloc ((pulled->n_layers + 1) * sizeof *blobs);
  for (size_t i = 0; i < pulled->n_layers; i++)
    {
      blobs[i] = nex_distribution_blob_path (s->blobs_dir, pulled->layers[i].digest);
      layers[i]
          = (nex_unpack_layer_t){ .blob_path = blobs[i], .diff_id = json_string_value (json_array_get (diff_ids, i)) };
    }
  int rc = nex_unpack_tree (root, layers, pulled->n_layers, budget, err);
  for (size_t i = 0; i < pulled->n_layers; i++)
    free (blobs[i]);
  return rc;
}

/* Unpacks PULLED's layers, bottom first, into a new tree published as its digest (kept when it is there). */
static int
flatten (nex_image_store_t *s, const nex_pulled_t *pulled, nex_error_t *err)
{
  cleanup_free char *final = nex_image_store_tree (s, pulled->digest);
  struct stat st;
  if (stat (final, &st) == 0)
    return 0;
  const json_t *diff_ids = json_object_get (json_object_get (pulled->config, "rootfs"), "diff_ids");
  if (json_array_size (diff_ids) != pulled->n_layers)
    return nex_error_field (err, "image", "the config lists %zu diff_ids for %zu layers", json_array_size (diff_ids),
                            pulled->n_layers);
  cleanup_free char *tmp = nex_xasprintf ("%s/.tree-XXXXXX", s->trees_dir);
  if (mkdtemp (tmp) == NULL)
    return nex_error_sys (err, errno, "make a tree in `%s`", s->trees_dir);
  nex_layer_budget_t budget = { .max_bytes = (uint64_t)s->node->cfg->image_max_unpacked_mb * 1024 * 1024,
                                .max_entries = (uint64_t)s->node->cfg->image_max_files,
                                .id_base = NEX_SANDBOX_UID_BASE,
                                .id_count = NEX_SANDBOX_ID_COUNT };
  int rc = 0;
  {
    cleanup_close int root = open (tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0 || fchown (root, NEX_SANDBOX_UID_BASE, NEX_SANDBOX_UID_BASE) < 0 || fchmod (root, 0755) < 0)
      rc = nex_error_sys (err, errno, "prepare the tree `%s`", tmp);
    rc = rc == 0 ? unpack (s, pulled, diff_ids, root, &budget, err) : rc;
    if (rc == 0 && rename (tmp, final) < 0 && errno != ENOTEMPTY && errno != EEXIST)
      rc = nex_error_sys (err, errno, "publish the tree `%s`", final);
  }
  /* A failed unpack leaves a half tree; a tree published meanwhile by another pull of the same digest makes
   * this one redundant. */
  if (access (tmp, F_OK) == 0)
    {
      cleanup_close int parent = open (s->trees_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      nex_layer_remove_tree (parent, strrchr (tmp, '/') + 1);
    }
  return rc;
}

/* Stores PULLED's registry rows, REF mapped to it. */
static int
record (nex_image_store_t *s, const nex_pulled_t *pulled, const char *ref, nex_error_t *err)
{
  json_t *blobs = json_array ();
  json_array_append_new (blobs, json_string (pulled->config_digest));
  for (size_t i = 0; i < pulled->n_layers; i++)
    json_array_append_new (blobs, json_string (pulled->layers[i].digest));
  cleanup_free char *layers = json_dumps (blobs, JSON_COMPACT);
  json_decref (blobs);
  cleanup_free char *config = json_dumps (pulled->config, JSON_COMPACT);
  nex_image_row_t row = { .config = config, .layers = layers, .size = (int64_t)pulled->bytes };
  snprintf (row.digest, sizeof row.digest, "%s", pulled->digest);
  return nex_registry_image_put (s->node->reg, &row, ref, err);
}

/* --- image tars: docker-archive:// references and uploads ---------------------------------------------------- */

/* A temporary directory for a tar's layout, below the blobs (swept at start-up if a crash leaves it). */
typedef struct scratch
{
  nex_image_store_t *store;
  char *dir;
} scratch_t;

static int
scratch_make (nex_image_store_t *s, scratch_t *t, nex_error_t *err)
{
  t->store = s;
  t->dir = nex_xasprintf ("%s/.pull-tar-XXXXXX", s->blobs_dir);
  if (mkdtemp (t->dir) != NULL)
    return 0;
  free (t->dir);
  t->dir = NULL;
  return nex_error_sys (err, errno, "make a directory in `%s`", s->blobs_dir);
}

static void
scratch_release (scratch_t *t)
{
  if (t->dir == NULL)
    return;
  cleanup_close int parent = open (t->store->blobs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  nex_layer_remove_tree (parent, strrchr (t->dir, '/') + 1);
  free (t->dir);
  t->dir = NULL;
}

/* What an image tar may hold: as much as an image may unpack to. */
static uint64_t
tar_bound (const nex_image_store_t *s)
{
  return (uint64_t)s->node->cfg->image_max_unpacked_mb * 1024 * 1024;
}

/* Pulls manifest DIGEST of the layout LAYOUT (a tar's, just made) into the blobs. */
static int
pull_layout_digest (const char *layout, const char *digest, const nex_pull_opts_t *o, nex_pulled_t *out,
                    nex_error_t *err)
{
  nex_image_ref_t ref = { .layout = (char *)layout, .digest = (char *)digest, .canonical = (char *)layout };
  return nex_distribution_pull (&ref, o, out, err);
}

/* Pulls REF (docker-archive://): the archive's first image, or the one REF's digest names. */
static int
pull_archive (nex_image_store_t *s, const nex_image_ref_t *ref, const nex_pull_opts_t *o, nex_pulled_t *out,
              nex_error_t *err)
{
  cleanup_with (scratch_release) scratch_t t = { 0 };
  if (scratch_make (s, &t, err) < 0)
    return -1;
  cleanup_json json_t *manifests = nex_image_archive_to_layout (ref->archive, t.dir, tar_bound (s), "image", err);
  if (manifests == NULL)
    return nex_error_wrap (err, "docker-archive %s", ref->archive);
  const char *digest = NULL;
  size_t i;
  const json_t *d;
  json_array_foreach (manifests, i, d)
  {
    const char *dig = json_string_value (json_object_get (d, "digest"));
    if (dig && (ref->digest == NULL || strcmp (dig, ref->digest) == 0))
      {
        digest = dig;
        break;
      }
  }
  if (digest == NULL)
    return nex_error_field (err, "image", "docker-archive %s holds no image %s", ref->archive,
                            ref->digest ? ref->digest : "");
  return pull_layout_digest (t.dir, digest, o, out, err);
}

/* Pulls what REF names into OUT, whatever its source. */
static int
pull_any (nex_image_store_t *s, const nex_image_ref_t *ref, const nex_pull_opts_t *o, nex_pulled_t *out,
          nex_error_t *err)
{
  if (ref->archive)
    return pull_archive (s, ref, o, out, err);
  if (ref->registry == NULL && ref->layout == NULL)
    return nex_error_field (err, "image",
                            "image %s is not in this node's store (a bare digest names an image uploaded with "
                            "POST /v1/images or pulled before)",
                            ref->digest);
  return nex_distribution_pull (ref, o, out, err);
}

/* --- eviction ------------------------------------------------------------------------------------------------- */

/* When an image was last used (or stored, if never used): ISO 8601 text, which sorts as time does. */
static const char *
used_at (const json_t *img)
{
  const char *t = json_string_value (json_object_get (img, "last_used_at"));
  return t ? t : json_string_value (json_object_get (img, "created_at"));
}

static int
by_use (const void *a, const void *b)
{
  const char *x = used_at (*(json_t *const *)a), *y = used_at (*(json_t *const *)b);
  return strcmp (x ? x : "", y ? y : "");
}

/* Removes the least recently used images that no live workload runs, KEEP (the image just stored) aside, until
 * the cache's images add up to --image-cache-bytes or less (or nothing more may go).  Event image_evicted each. */
static void
evict (nex_image_store_t *s, const char *keep)
{
  int64_t bound = s->node->cfg->image_cache_bytes;
  if (bound <= 0)
    return;
  pthread_mutex_lock (&s->evicting);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *images = nex_registry_image_list (s->node->reg, &err);
  size_t n = json_array_size (images), k = 0;
  cleanup_free json_t **unused = nex_xzalloc ((n + 1) * sizeof *unused);
  int64_t total = 0;
  size_t i;
  json_t *img;
  json_array_foreach (images, i, img)
  {
    total += json_integer_value (json_object_get (img, "size"));
    const char *digest = json_string_value (json_object_get (img, "digest"));
    if (digest && strcmp (digest, keep) != 0 && json_array_size (json_object_get (img, "workloads")) == 0)
      unused[k++] = img;
  }
  qsort (unused, k, sizeof *unused, by_use);
  for (i = 0; i < k && total > bound; i++)
    {
      const char *digest = json_string_value (json_object_get (unused[i], "digest"));
      json_int_t size = json_integer_value (json_object_get (unused[i], "size"));
      cleanup_error nex_error_t rerr = NULL;
      if (nex_image_store_remove (s, digest, &rerr) < 0)
        {
          nex_log_error (NEX_LOG_WARN, rerr, "image eviction"); /* e.g. a workload started on it meanwhile */
          continue;
        }
      total -= size;
      nex_info ("image %s evicted (%lld bytes; the cache holds %lld of %lld)", digest, (long long)size,
                (long long)total, (long long)bound);
      nex_node_emit (s->node, "image_evicted", NULL,
                     json_pack ("{s:s, s:I, s:O, s:I, s:I}", "digest", digest, "size", size, "references",
                                json_object_get (unused[i], "references"), "cache_bytes", (json_int_t)total,
                                "cache_bound", (json_int_t)bound));
    }
  if (err)
    nex_log_error (NEX_LOG_WARN, err, "image eviction");
  pthread_mutex_unlock (&s->evicting);
}

/* --- pulls ---------------------------------------------------------------------------------------------------- */

static void *
pull_thread (void *arg)
{
  pull_t *p = arg;
  nex_image_store_t *s = p->store;
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_pulled_release) nex_pulled_t pulled = { 0 };
  nex_pull_opts_t o = { .blobs_dir = s->blobs_dir,
                        .insecure = s->node->cfg->insecure_registries,
                        .auths = s->auths,
                        .tokens = s->tokens,
                        .progress = on_progress,
                        .progress_ctx = p };
  emit (p, "image_pull_started", NULL, 0, 0, NULL);
  int64_t t0 = nex_clock_mono_ms ();
  int rc = pull_any (s, &p->ref, &o, &pulled, &err);
  if (rc == 0)
    rc = flatten (s, &pulled, &err);
  if (rc == 0)
    rc = record (s, &pulled, p->ref.canonical, &err);
  if (rc == 0)
    {
      nex_info ("image %s pulled as %s (%llu bytes, %lld ms)", p->ref.canonical, pulled.digest,
                (unsigned long long)pulled.bytes, (long long)(nex_clock_mono_ms () - t0));
      emit (p, "image_pull_completed", pulled.digest, pulled.bytes, pulled.bytes, NULL);
      evict (s, pulled.digest);
    }
  else
    {
      nex_error_wrap (&err, "pull %s", p->ref.canonical);
      nex_log_error (NEX_LOG_WARN, err, "image");
      emit (p, "image_pull_failed", NULL, 0, pulled.bytes, err->msg);
    }

  /* Off the list first, so that a deploy arriving now starts afresh (or finds the image), then tell everyone. */
  pthread_mutex_lock (&s->lock);
  for (pull_t **pp = &s->pulls; *pp; pp = &(*pp)->next)
    if (*pp == p)
      {
        *pp = p->next;
        break;
      }
  waiter_t *w = p->waiters;
  p->waiters = NULL;
  pthread_mutex_unlock (&s->lock);
  while (w)
    {
      waiter_t *next = w->next;
      w->ready (w->ctx, rc == 0 ? pulled.digest : NULL, rc == 0 ? NULL : err);
      free (w);
      w = next;
    }
  nex_image_ref_release (&p->ref);
  free (p);

  pthread_mutex_lock (&s->lock);
  if (--s->running == 0)
    pthread_cond_broadcast (&s->idle);
  pthread_mutex_unlock (&s->lock);
  return NULL;
}

/* Whether REF is in the store: 1 with DIGEST, 0, -1. */
static int
cached (nex_image_store_t *s, const nex_image_ref_t *ref, char digest[72], nex_error_t *err)
{
  int found;
  if (ref->digest)
    {
      nex_image_row_t row;
      found = nex_registry_image_get (s->node->reg, ref->digest, &row, err);
      nex_image_row_release (&row);
      if (found > 0)
        snprintf (digest, 72, "%s", ref->digest);
    }
  else
    found = nex_registry_image_resolve (s->node->reg, ref->canonical, digest, err);
  if (found <= 0)
    return found;
  cleanup_free char *tree = nex_image_store_tree (s, digest);
  return access (tree, F_OK) == 0;
}

int
nex_image_store_get (nex_image_store_t *s, const char *text, int refresh, char digest[72], nex_image_ready_t ready,
                     void *ctx, nex_error_t *err)
{
  nex_image_ref_t ref;
  if (nex_image_ref_parse (text, "image", &ref, err) < 0)
    return -1;
  int found = refresh ? 0 : cached (s, &ref, digest, err);
  if (found != 0)
    {
      nex_image_ref_release (&ref);
      return found;
    }
  waiter_t *w = nex_xzalloc (sizeof *w);
  w->ready = ready;
  w->ctx = ctx;
  cleanup_unlock pthread_mutex_t *locked = &s->lock;
  pthread_mutex_lock (&s->lock);
  if (s->draining)
    {
      free (w);
      nex_image_ref_release (&ref);
      return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the node is shutting down");
    }
  for (pull_t *p = s->pulls; p; p = p->next)
    if (strcmp (p->ref.canonical, ref.canonical) == 0)
      {
        w->next = p->waiters;
        p->waiters = w;
        nex_image_ref_release (&ref);
        return 0;
      }
  pull_t *p = nex_xzalloc (sizeof *p);
  p->store = s;
  p->ref = ref;
  p->waiters = w;
  pthread_attr_t attr;
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int rc = pthread_create (&t, &attr, pull_thread, p);
  pthread_attr_destroy (&attr);
  if (rc != 0)
    {
      nex_image_ref_release (&p->ref);
      free (p);
      free (w);
      return nex_error_sys (err, rc, "start a pull thread");
    }
  p->next = s->pulls;
  s->pulls = p;
  s->running++;
  return 0;
}

/* --- waiting for a pull --------------------------------------------------------------------------------------- */

typedef struct pull_wait
{
  pthread_mutex_t lock;
  pthread_cond_t done_cond;
  int done;
  char digest[72];
  nex_error_t err;
} pull_wait_t;

static void
wait_ready (void *ctx, const char *digest, const nex_error_s *err)
{
  pull_wait_t *w = ctx;
  pthread_mutex_lock (&w->lock);
  if (digest)
    snprintf (w->digest, sizeof w->digest, "%s", digest);
  else
    {
      nex_error_set (&w->err, err->kind, "%s", err->msg);
      if (err->field)
        w->err->field = nex_xstrdup (err->field);
    }
  w->done = 1;
  pthread_cond_signal (&w->done_cond);
  pthread_mutex_unlock (&w->lock);
}

int
nex_image_store_pull_wait (nex_image_store_t *s, const char *ref, int refresh, char digest[72], nex_error_t *err)
{
  pull_wait_t w = { .lock = PTHREAD_MUTEX_INITIALIZER, .done_cond = PTHREAD_COND_INITIALIZER };
  int rc = nex_image_store_get (s, ref, refresh, digest, wait_ready, &w, err);
  if (rc != 0)
    return rc < 0 ? -1 : 0;
  pthread_mutex_lock (&w.lock);
  while (!w.done)
    pthread_cond_wait (&w.done_cond, &w.lock);
  pthread_mutex_unlock (&w.lock);
  if (w.err)
    {
      if (err)
        *err = w.err;
      else
        nex_error_free (&w.err);
      return -1;
    }
  snprintf (digest, 72, "%s", w.digest);
  return 0;
}

/* --- reading and removing ------------------------------------------------------------------------------------- */

json_t *
nex_image_store_config (nex_image_store_t *s, const char *digest, nex_error_t *err)
{
  cleanup_with (nex_image_row_release) nex_image_row_t row = { 0 };
  int found = nex_registry_image_get (s->node->reg, digest, &row, err);
  if (found <= 0)
    {
      if (found == 0)
        nex_error_set (err, NEX_ERR_NOT_FOUND, "no image %s in the store", digest);
      return NULL;
    }
  json_t *config = json_loads (row.config, 0, NULL);
  if (!json_is_object (config))
    {
      json_decref (config);
      nex_error_set (err, NEX_ERR_SYSTEM, "image %s: stored config unreadable", digest);
      return NULL;
    }
  return config;
}

void
nex_image_store_touch (nex_image_store_t *s, const char *digest)
{
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_image_touch (s->node->reg, digest, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "image");
}

int
nex_image_store_remove (nex_image_store_t *s, const char *digest, nex_error_t *err)
{
  if (!nex_image_digest_valid (digest))
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no image `%s` (images are named sha256:<64 hex>)", digest);
  cleanup_with (nex_image_row_release) nex_image_row_t row = { 0 };
  if (nex_registry_image_get (s->node->reg, digest, &row, err) < 0
      || nex_registry_image_delete (s->node->reg, digest, err) < 0)
    return -1;
  /* The tree is renamed away first, so that no deploy finds a half-removed tree under the image's name. */
  cleanup_free char *tree = nex_image_store_tree (s, digest);
  cleanup_free char *gone = nex_xasprintf ("%s/.gone-XXXXXX", s->trees_dir);
  cleanup_close int parent = open (s->trees_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (mkdtemp (gone) && rename (tree, gone) == 0)
    nex_layer_remove_tree (parent, strrchr (gone, '/') + 1);
  else
    rmdir (gone);
  nex_vm_image_disk_forget (digest); /* its microVM disk, if a VM ran it */
  cleanup_json json_t *blobs = row.layers ? json_loads (row.layers, 0, NULL) : NULL;
  size_t i;
  json_t *b;
  json_array_foreach (blobs, i, b)
  {
    const char *blob = json_string_value (b);
    if (nex_image_digest_valid (blob) && nex_registry_blob_in_use (s->node->reg, blob, NULL) == 0)
      {
        cleanup_free char *path = nex_distribution_blob_path (s->blobs_dir, blob);
        unlink (path);
      }
  }
  return 0;
}

/* --- loading an image tar (POST /v1/images) ------------------------------------------------------------------- */

struct nex_image_upload
{
  nex_image_store_t *store;
  char *path;
  int fd;
  uint64_t bytes, max;
};

nex_image_upload_t *
nex_image_store_upload_begin (nex_image_store_t *s, int64_t declared, nex_error_t *err)
{
  uint64_t max = tar_bound (s);
  if (declared > 0 && (uint64_t)declared > max)
    {
      nex_error_set (err, NEX_ERR_TOO_LARGE,
                     "the image tar (%lld bytes) exceeds the node's limit of %llu bytes "
                     "(--image-max-unpacked-mb)",
                     (long long)declared, (unsigned long long)max);
      return NULL;
    }
  nex_image_upload_t *up = nex_xzalloc (sizeof *up);
  up->store = s;
  up->max = max;
  up->path = nex_xasprintf ("%s/.pull-upload-XXXXXX", s->blobs_dir);
  up->fd = mkostemp (up->path, O_CLOEXEC);
  if (up->fd < 0)
    {
      nex_error_sys (err, errno, "create `%s`", up->path);
      free (up->path);
      free (up);
      return NULL;
    }
  return up;
}

int
nex_image_store_upload_write (nex_image_upload_t *up, const void *data, size_t n, nex_error_t *err)
{
  up->bytes += n;
  if (up->bytes > up->max)
    return nex_error_set (err, NEX_ERR_TOO_LARGE,
                          "the image tar is larger than the node's limit of %llu bytes "
                          "(--image-max-unpacked-mb)",
                          (unsigned long long)up->max);
  return nex_fd_write_all (up->fd, data, n, err);
}

/* Flattens and records manifest DIGEST of layout DIR under the references NAMES (ref.name annotations). */
static json_t *
load_one (nex_image_store_t *s, const char *dir, const char *digest, const json_t *names, nex_error_t *err)
{
  cleanup_with (nex_pulled_release) nex_pulled_t pulled = { 0 };
  nex_pull_opts_t o = { .blobs_dir = s->blobs_dir };
  if (pull_layout_digest (dir, digest, &o, &pulled, err) < 0 || flatten (s, &pulled, err) < 0
      || record (s, &pulled, NULL, err) < 0)
    return NULL;
  json_t *refs = json_array ();
  size_t i;
  const json_t *n;
  json_array_foreach (names, i, n)
  {
    /* Only a whole reference with a tag names the image ("busybox:1.36"); a bare tag ("v1") says nothing of
     * which repository it belongs to. */
    nex_image_ref_t r;
    const char *text = json_string_value (n);
    if (text == NULL || strchr (text, ':') == NULL || nex_image_ref_parse (text, "body", &r, NULL) < 0)
      continue;
    int named = r.registry != NULL && r.tag != NULL;
    int rc = named ? record (s, &pulled, r.canonical, err) : 0;
    if (rc == 0 && named)
      json_array_append_new (refs, json_string (r.canonical));
    nex_image_ref_release (&r);
    if (rc < 0)
      {
        json_decref (refs);
        return NULL;
      }
  }
  nex_info ("image %s loaded from a tar (%llu bytes)", pulled.digest, (unsigned long long)pulled.bytes);
  return json_pack ("{s:s, s:o, s:I}", "digest", pulled.digest, "references", refs, "size", (json_int_t)pulled.bytes);
}

json_t *
nex_image_store_upload_finish (nex_image_upload_t *up, nex_error_t *err)
{
  nex_image_store_t *s = up->store;
  if (up->bytes == 0)
    {
      nex_error_field (err, "body", "the body is empty: send an OCI layout or docker-archive tar");
      return NULL;
    }
  cleanup_with (scratch_release) scratch_t t = { 0 };
  if (scratch_make (s, &t, err) < 0)
    return NULL;
  cleanup_json json_t *manifests = nex_image_archive_to_layout (up->path, t.dir, up->max, "body", err);
  if (manifests == NULL)
    return NULL;
  /* The names of each digest, in the order the tar lists them. */
  cleanup_json json_t *by_digest = json_object ();
  cleanup_json json_t *order = json_array ();
  size_t i;
  const json_t *d;
  json_array_foreach (manifests, i, d)
  {
    const char *digest = json_string_value (json_object_get (d, "digest"));
    if (!nex_image_digest_valid (digest))
      {
        nex_error_field (err, "body", "the tar's index lists a manifest without a sha256 digest");
        return NULL;
      }
    if (json_object_get (by_digest, digest) == NULL)
      {
        json_object_set_new (by_digest, digest, json_array ());
        json_array_append_new (order, json_string (digest));
      }
    const json_t *name = json_object_get (json_object_get (d, "annotations"), "org.opencontainers.image.ref.name");
    if (json_is_string (name))
      json_array_append (json_object_get (by_digest, digest), (json_t *)name);
  }
  cleanup_json json_t *images = json_array ();
  json_array_foreach (order, i, d)
  {
    json_t *one = load_one (s, t.dir, json_string_value (d), json_object_get (by_digest, json_string_value (d)), err);
    if (one == NULL)
      return NULL;
    json_array_append_new (images, one);
  }
  evict (s, json_string_value (json_object_get (json_array_get (images, 0), "digest")));
  return json_pack ("{s:O, s:O, s:I}", "digest", json_object_get (json_array_get (images, 0), "digest"), "images",
                    images, "count", (json_int_t)json_array_size (images));
}

void
nex_image_store_upload_free (nex_image_upload_t *up)
{
  if (up == NULL)
    return;
  if (up->fd >= 0)
    close (up->fd);
  unlink (up->path);
  free (up->path);
  free (up);
}
