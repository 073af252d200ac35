/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/desired.c — the NEX_DESIRED bucket: what should run in the cluster (contract in cluster/internal.h).
 *
 * One entry per workload placed with `node: auto`, under the key its workloads carry as the label
 * nex.cluster/key: {key, namespace, name, owner, workload_id, restartable, state (running, claimed, lost), spec,
 * placement, placed_at, from}.  The bucket keeps one revision per key (history 1) and is replicated over
 * min(3, servers known) JetStream servers, so that it outlives any one of them.
 *
 * Every node follows the whole bucket with a watcher and keeps the last value and revision of each key: reads
 * (failover, fencing, lists) never wait on the server, and a claim is an update conditioned on the revision
 * that was seen.  The watcher is checked against the bucket's last revision and replaced when it fell behind
 * (nex_desired_check).  The bucket is opened (or made, by whichever node comes first) from the cluster thread, again
 * every KV_RETRY_MS until it works: JetStream may be missing, or still electing its leaders. */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

#define KV_RETRY_MS 2000
#define WATCH_WAIT_MS 250   /* the longest a shutdown waits for the watch thread */
#define WATCH_CHECK_MS 2000 /* how often the watcher is checked against the bucket's last revision */
#define WATCH_RETRY_MS 500  /* how soon a watcher that could not be replaced is tried again */
#define MAX_ENTRY_BYTES (1024 * 1024)
#define CREATE_PATIENCE_MS 8000

/* How many servers the NATS system has, as far as the connection knows (configured and discovered). */
static int
servers_known (natsConnection *nc)
{
  char **urls = NULL;
  int n = 0;
  if (natsConnection_GetServers (nc, &urls, &n) != NATS_OK)
    return 1;
  for (int i = 0; i < n; i++)
    free (urls[i]);
  free (urls);
  return n > 0 ? n : 1;
}

static void
set_error (nex_cluster_t *c, const char *what, natsStatus s)
{
  const char *detail = nats_GetLastError (NULL);
  cleanup_free char *msg
      = nex_xasprintf ("%s: %s%s%s", what, natsStatus_GetText (s), detail && *detail ? ": " : "", detail ? detail : "");
  pthread_mutex_lock (&c->lock);
  int changed = c->kv_error == NULL || strcmp (c->kv_error, msg) != 0;
  free (c->kv_error);
  c->kv_error = nex_xstrdup (msg);
  pthread_mutex_unlock (&c->lock);
  if (changed)
    nex_warn ("cluster: desired state unavailable (%s); retrying", msg);
}

/* Takes one change from the watcher into the local copy; a change after the initial values may fence. */
static void
take_entry (nex_cluster_t *c, kvEntry *e)
{
  const char *key = kvEntry_Key (e);
  json_t *value = NULL;
  if (kvEntry_Operation (e) == kvOp_Put && kvEntry_ValueLen (e) <= MAX_ENTRY_BYTES)
    value = json_loadb (kvEntry_Value (e), (size_t)kvEntry_ValueLen (e), 0, NULL);
  uint64_t rev = kvEntry_Revision (e);
  pthread_mutex_lock (&c->lock);
  if (json_is_object (value))
    json_object_set_new (c->desired, key, json_pack ("{s:I, s:O}", "rev", (json_int_t)rev, "value", value));
  else
    json_object_del (c->desired, key);
  if (rev > c->watch_seq)
    c->watch_seq = rev;
  if (c->resync_seen)
    json_object_set_new (c->resync_seen, key, json_true ());
  int ready = c->desired_ready;
  pthread_mutex_unlock (&c->lock);
  if (ready)
    nex_failover_entry_changed (c, key, json_is_object (value) ? value : NULL);
  json_decref (value);
}

/* A new watcher's initial values are all in, the local copy having been followed before (a resync): the keys it
 * did not deliver were deleted while the old watcher was stale.  Under lock; their keys into GONE. */
static void
resync_done_locked (nex_cluster_t *c, json_t *gone)
{
  const char *key;
  json_t *e;
  void *tmp;
  json_object_foreach_safe (c->desired, tmp, key, e)
  {
    if (json_object_get (c->resync_seen, key) == NULL)
      {
        json_array_append_new (gone, json_string (key));
        json_object_del (c->desired, key);
      }
  }
  json_decref (c->resync_seen);
  c->resync_seen = NULL;
  nex_info ("cluster: desired state followed again (%zu entries, %zu gone meanwhile)", json_object_size (c->desired),
            json_array_size (gone));
}

static void *
watch_main (void *arg)
{
  nex_cluster_t *c = arg;
  pthread_mutex_lock (&c->lock);
  kvWatcher *w = c->watcher;
  int gen = c->watch_gen;
  pthread_mutex_unlock (&c->lock);
  for (;;)
    {
      kvEntry *e = NULL;
      natsStatus s = kvWatcher_Next (&e, w, WATCH_WAIT_MS);
      cleanup_json json_t *gone = json_array ();
      pthread_mutex_lock (&c->lock);
      int stopping = c->stopping || c->watch_gen != gen;
      if (s == NATS_OK && e == NULL && !c->desired_ready)
        {
          c->desired_ready = 1; /* the initial values are in (of the first watcher, or of one that replaced it) */
          json_decref (c->resync_seen);
          c->resync_seen = NULL;
          nex_info ("cluster: desired state followed (%zu entries)", json_object_size (c->desired));
        }
      else if (s == NATS_OK && e == NULL && c->resync_seen)
        resync_done_locked (c, gone);
      pthread_mutex_unlock (&c->lock);
      size_t i;
      json_t *k;
      json_array_foreach (gone, i, k) { nex_failover_entry_changed (c, json_string_value (k), NULL); }
      if (e)
        {
          take_entry (c, e);
          kvEntry_Destroy (e);
        }
      if (stopping || (s != NATS_OK && s != NATS_TIMEOUT))
        break;
    }
  return NULL;
}

/* Replaces the watcher by a new one, which delivers every entry again (then the changes): the old one had fallen
 * behind.  0, or -1 when JetStream cannot make the new one yet (the old one stays). */
static int
rewatch (nex_cluster_t *c)
{
  kvWatcher *fresh = NULL;
  natsStatus s = kvStore_WatchAll (&fresh, c->kv, NULL);
  if (s != NATS_OK)
    return -1;
  pthread_mutex_lock (&c->lock);
  c->watch_gen++; /* the old watch thread ends within WATCH_WAIT_MS */
  kvWatcher *old = c->watcher;
  pthread_mutex_unlock (&c->lock);
  if (c->watch_started)
    pthread_join (c->watch_thread, NULL);
  c->watch_started = 0;
  if (old)
    kvWatcher_Destroy (old); /* after its thread, as nex_desired_stop_watching says */
  pthread_mutex_lock (&c->lock);
  c->watcher = fresh;
  json_decref (c->resync_seen);
  c->resync_seen = json_object ();
  pthread_mutex_unlock (&c->lock);
  if (pthread_create (&c->watch_thread, NULL, watch_main, c) == 0)
    c->watch_started = 1;
  return 0;
}

/* How many times this node's connection reconnected. */
static uint64_t
reconnects (natsConnection *nc)
{
  natsStatistics *st = NULL;
  uint64_t n = 0;
  if (natsStatistics_Create (&st) == NATS_OK && natsConnection_GetStats (nc, st) == NATS_OK)
    natsStatistics_GetCounts (st, NULL, NULL, NULL, NULL, &n);
  natsStatistics_Destroy (st);
  return n;
}

void
nex_desired_check (nex_cluster_t *c)
{
  int64_t now = nex_clock_mono_ms ();
  /* Not while the connection is down: a JetStream request would only wait its timeout. */
  if (c->kv == NULL || c->watcher == NULL || now < c->watch_check_at
      || natsConnection_Status (c->nc) != NATS_CONN_STATUS_CONNECTED)
    return;
  c->watch_check_at = now + WATCH_CHECK_MS;
  uint64_t n = reconnects (c->nc);
  c->rewatch_pending |= n != c->reconnects_seen;
  c->reconnects_seen = n;
  jsStreamInfo *si = NULL;
  if (js_GetStreamInfo (&si, c->js, "KV_" NEX_CLUSTER_BUCKET, NULL, NULL) != NATS_OK)
    return; /* JetStream unavailable (electing a leader): next time */
  uint64_t last = si->State.LastSeq;
  jsStreamInfo_Destroy (si);
  pthread_mutex_lock (&c->lock);
  uint64_t seen = c->watch_seq;
  pthread_mutex_unlock (&c->lock);
  /* Behind at two checks in a row (not a write on its way), or the connection was lost meanwhile. */
  int stale = c->stale_mark && seen < c->stale_mark;
  if (c->rewatch_pending || stale)
    {
      nex_warn ("cluster: the desired-state watcher %s (seen revision %llu, the bucket's last %llu): following it anew",
                stale ? "fell behind" : "may have missed changes while NATS reconnected", (unsigned long long)seen,
                (unsigned long long)last);
      if (rewatch (c) == 0)
        c->rewatch_pending = 0;
      else
        {
          c->rewatch_pending = 1; /* JetStream cannot make the consumer yet: again soon, without a second check */
          c->watch_check_at = nex_clock_mono_ms () + WATCH_RETRY_MS;
        }
      c->stale_mark = 0;
      return;
    }
  c->stale_mark = seen < last ? last : 0;
}

void
nex_desired_open (nex_cluster_t *c)
{
  int64_t now = nex_clock_mono_ms ();
  if (c->kv || now < c->kv_next_try)
    return;
  c->kv_next_try = now + KV_RETRY_MS;
  /* Not while the connection is down: each JetStream request would wait out its timeout (two in a row here),
   * and a nexd asked to stop meanwhile would wait for them. */
  if (natsConnection_Status (c->nc) != NATS_CONN_STATUS_CONNECTED)
    return set_error (c, "NATS", NATS_CONNECTION_DISCONNECTED);
  natsStatus s = c->js ? NATS_OK : natsConnection_JetStream (&c->js, c->nc, NULL);
  if (s != NATS_OK)
    return set_error (c, "JetStream", s);
  kvStore *kv = NULL;
  int replicas = servers_known (c->nc) < 3 ? servers_known (c->nc) : 3;
  s = js_KeyValue (&kv, c->js, NEX_CLUSTER_BUCKET);
  if (s != NATS_OK)
    {
      kvConfig cfg;
      kvConfig_Init (&cfg);
      cfg.Bucket = NEX_CLUSTER_BUCKET;
      cfg.Description = "Nex: what should run in the cluster (one entry per workload placed with node: auto)";
      cfg.History = 1;
      cfg.Replicas = replicas;
      s = js_CreateKeyValue (&kv, c->js, &cfg);
    }
  if (s != NATS_OK)
    return set_error (c, "bucket " NEX_CLUSTER_BUCKET, s);
  kvStatus *st = NULL;
  if (kvStore_Status (&st, kv) == NATS_OK)
    {
      replicas = (int)kvStatus_Replicas (st);
      kvStatus_Destroy (st);
    }
  kvWatcher *watcher = NULL;
  s = kvStore_WatchAll (&watcher, kv, NULL);
  if (s != NATS_OK)
    {
      kvStore_Destroy (kv);
      return set_error (c, "watch " NEX_CLUSTER_BUCKET, s);
    }
  pthread_mutex_lock (&c->lock);
  c->watcher = watcher;
  c->reconnects_seen = reconnects (c->nc);
  c->kv = kv;
  c->replicas = replicas;
  free (c->kv_error);
  c->kv_error = NULL;
  pthread_mutex_unlock (&c->lock);
  if (pthread_create (&c->watch_thread, NULL, watch_main, c) == 0)
    c->watch_started = 1;
  nex_info ("cluster: bucket %s open (%d replicas)", NEX_CLUSTER_BUCKET, replicas);
}

void
nex_desired_stop_watching (nex_cluster_t *c)
{
  /* The cluster is stopping (nex_cluster_stop set it): the watch thread sees it within WATCH_WAIT_MS and ends.
   * The watcher is stopped only after that, never under a kvWatcher_Next in progress: nats.c 3.4 drops a message
   * that Next has taken off the subscription when it finds the watcher stopped, without freeing it (the shutdown
   * leak of a cluster node that lsan-cluster.supp used to hide: an entry written just before SIGTERM). */
  if (c->watch_started)
    pthread_join (c->watch_thread, NULL);
  c->watch_started = 0;
  pthread_mutex_lock (&c->lock);
  kvWatcher *w = c->watcher;
  pthread_mutex_unlock (&c->lock);
  if (w)
    kvWatcher_Stop (w);
}

void
nex_desired_close (nex_cluster_t *c)
{
  nex_desired_stop_watching (c);
  if (c->watcher)
    kvWatcher_Destroy (c->watcher);
  c->watcher = NULL;
  if (c->kv)
    kvStore_Destroy (c->kv);
  c->kv = NULL;
  if (c->js)
    jsCtx_Destroy (c->js);
  c->js = NULL;
}

/* The bucket, or NULL with ERR when it is not open yet. */
static kvStore *
bucket (nex_cluster_t *c, nex_error_t *err)
{
  pthread_mutex_lock (&c->lock);
  kvStore *kv = c->kv;
  pthread_mutex_unlock (&c->lock);
  if (kv == NULL)
    nex_error_set (err, NEX_ERR_UNAVAILABLE, "the desired-state bucket %s is not open", NEX_CLUSTER_BUCKET);
  return kv;
}

static int
kv_error (nex_error_t *err, const char *what, const char *key, natsStatus s)
{
  const char *detail = nats_GetLastError (NULL);
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "%s %s: %s%s%s", what, key, natsStatus_GetText (s),
                        detail && *detail ? ": " : "", detail ? detail : "");
}

int
nex_desired_create (nex_cluster_t *c, const char *key, const json_t *value, nex_error_t *err)
{
  kvStore *kv = bucket (c, err);
  if (kv == NULL)
    return -1;
  cleanup_free char *text = json_dumps (value, JSON_COMPACT);
  uint64_t rev = 0;
  /* The workload already runs: a JetStream that is electing a leader (a server just died) is waited for, a few
   * seconds, rather than leaving the workload out of the desired state. */
  int64_t deadline = nex_clock_mono_ms () + CREATE_PATIENCE_MS;
  natsStatus s;
  while ((s = kvStore_Create (&rev, kv, key, text, (int)strlen (text))) != NATS_OK
         && (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT) && nex_clock_mono_ms () < deadline)
    usleep (250 * 1000);
  return s == NATS_OK ? 0 : kv_error (err, "create entry", key, s);
}

int
nex_desired_update (nex_cluster_t *c, const char *key, const json_t *value, uint64_t rev, uint64_t *new_rev,
                    nex_error_t *err)
{
  kvStore *kv = bucket (c, err);
  if (kv == NULL)
    return -1;
  cleanup_free char *text = json_dumps (value, JSON_COMPACT);
  /* The revision condition alone is not enough on a replicated bucket: before nats-server 2.9.21 (Debian 12 has
   * 2.9.10) the leader checks Nats-Expected-Last-Subject-Sequence against what it has applied, not against the
   * writes it has proposed and not applied yet, so two nodes claiming the same revision within a few ms may both
   * be accepted (nats-server issue 4320; 2 of 3 rounds of three concurrent claims in test_cluster_cas).  The
   * message id KEY@REV makes it exact: the leader records an id when it proposes the write, so a second write
   * conditioned on the same revision is a duplicate, whoever sends it.  At most one write may follow a revision,
   * which is what a compare-and-set means. */
  cleanup_free char *subject = nex_xasprintf ("$KV.%s.%s", NEX_CLUSTER_BUCKET, key);
  cleanup_free char *msg_id = nex_xasprintf ("%s@%llu", key, (unsigned long long)rev);
  jsPubOptions opts;
  jsPubOptions_Init (&opts);
  opts.MsgId = msg_id;
  opts.ExpectLastSubjectSeq = rev;
  jsPubAck *ack = NULL;
  jsErrCode code = 0;
  natsStatus s = js_Publish (&ack, c->js, subject, text, (int)strlen (text), &opts, &code);
  int duplicate = s == NATS_OK && ack && ack->Duplicate;
  uint64_t got = s == NATS_OK && ack ? ack->Sequence : 0;
  jsPubAck_Destroy (ack);
  if (s == NATS_OK && !duplicate)
    {
      if (new_rev)
        *new_rev = got;
      return 0;
    }
  /* A duplicate, or a refused revision (not the key's last one): someone else wrote first. */
  if (duplicate || code == JSStreamWrongLastSequenceErr)
    return 1;
  return kv_error (err, "update entry", key, s);
}

int
nex_desired_delete (nex_cluster_t *c, const char *key, nex_error_t *err)
{
  kvStore *kv = bucket (c, err);
  if (kv == NULL)
    return -1;
  natsStatus s = kvStore_Delete (kv, key);
  return s == NATS_OK ? 0 : kv_error (err, "delete entry", key, s);
}

json_t *
nex_desired_snapshot (nex_cluster_t *c)
{
  pthread_mutex_lock (&c->lock);
  json_t *copy = c->desired_ready ? json_deep_copy (c->desired) : NULL;
  pthread_mutex_unlock (&c->lock);
  return copy;
}

json_t *
nex_desired_get (nex_cluster_t *c, const char *key)
{
  pthread_mutex_lock (&c->lock);
  json_t *e = json_object_get (c->desired, key);
  json_t *copy = e ? json_deep_copy (e) : NULL;
  pthread_mutex_unlock (&c->lock);
  return copy;
}

json_t *
nex_desired_status (nex_cluster_t *c)
{
  pthread_mutex_lock (&c->lock);
  json_t *j = json_pack ("{s:s, s:b, s:b, s:i, s:I, s:s?}", "bucket", NEX_CLUSTER_BUCKET, "open", c->kv != NULL,
                         "ready", c->desired_ready, "replicas", c->replicas, "entries",
                         (json_int_t)json_object_size (c->desired), "error", c->kv_error);
  pthread_mutex_unlock (&c->lock);
  return j;
}
