/* SPDX-License-Identifier: Apache-2.0 */
/* nats/bridge.c — the NATS connection, the outbound queue and its publisher thread, events, log lines and
 * heartbeats (contract in nats/bridge.h; the control API is in nats/control.c).
 *
 * The queue is the only way out: nex_node_emit and the supervisor append to it and return at once, and the
 * publisher thread hands entries to nats.c only while the connection is up.  While it is down they wait in the
 * queue (bounded by nats_buffer; the oldest go first, counted in `dropped`), so that an outage neither blocks
 * the node nor grows its memory, and what is still queued is published in order after the reconnect.
 *
 * Core NATS is at most once: what nats.c wrote to a socket whose server then died is gone.  So an entry leaves
 * the node only when a flush (a PING answered by a PONG) after it succeeded; entries published since the last
 * flush (at most FLUSH_BATCH) are kept, and go back in front of the queue if the connection falls before their
 * flush.  The server may have received some of them: those are sent twice, with the same Nats-Msg-Id header
 * (node id, start time, sequence number), which JetStream streams use to drop the copy; a plain subscriber may
 * see at most FLUSH_BATCH duplicates per outage (counted in `republished`). */
#include "server/nats/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "autoconfig.h"
#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/cluster/cluster.h"
#include "server/event.h"
#include "server/artifacts/artifact.h"
#include "server/log.h"
#include "server/nats/objstore.h"
#include "server/nats/nkeys.h"

#define RECONNECT_WAIT_MS 250
#define CLOSE_FLUSH_MS 2000
#define FLUSH_BATCH 256       /* entries published between two flushes, at most */
#define FLUSH_TIMEOUT_MS 2000 /* a flush not answered in this time counts as a fallen connection */

char *
nex_nats_token (const char *s)
{
  char *t = nex_xstrdup (s && *s ? s : "_");
  for (char *c = t; *c; c++)
    if (*c == '.' || *c == '*' || *c == '>' || *c == ' ' || (unsigned char)*c < 0x20)
      *c = '_';
  return t;
}

/* --- the queue ------------------------------------------------------------------------------------------------- */

static void
out_free (nex_nats_out_t *o)
{
  free (o->subject);
  free (o->data);
  free (o);
}

void
nex_nats_enqueue (nex_nats_t *b, const char *subject, const char *data, size_t len)
{
  nex_nats_out_t *o = nex_xzalloc (sizeof *o);
  o->subject = nex_xstrdup (subject);
  o->data = nex_xmalloc (len + 1);
  memcpy (o->data, data, len);
  o->data[len] = '\0';
  o->len = len;
  pthread_mutex_lock (&b->lock);
  o->seq = b->next_seq++;
  if (b->tail)
    b->tail->next = o;
  else
    b->head = o;
  b->tail = o;
  b->queued++;
  nex_nats_out_t *victim = NULL;
  if (b->queued > b->node->cfg->nats_buffer)
    {
      /* Full: the oldest entry goes, so that memory stays bounded however long the outage lasts. */
      victim = b->head;
      b->head = victim->next;
      b->queued--;
      b->dropped++;
    }
  pthread_cond_broadcast (&b->cond);
  pthread_mutex_unlock (&b->lock);
  if (victim)
    out_free (victim);
}

static void
enqueue_json (nex_nats_t *b, const char *subject, const json_t *j)
{
  cleanup_free char *text = json_dumps (j, JSON_COMPACT);
  if (text)
    nex_nats_enqueue (b, subject, text, strlen (text));
}

/* --- events, logs, heartbeats --------------------------------------------------------------------------------- */

void
nex_nats_publish_event (nex_nats_t *b, const json_t *event, const char *namespace_)
{
  const char *type = json_string_value (json_object_get (event, "type"));
  cleanup_free char *ns = nex_nats_token (namespace_ ? namespace_ : "system");
  cleanup_free char *tt = nex_nats_token (type);
  cleanup_free char *subject = nex_xasprintf ("$NEX.events.%s.%s", ns, tt);
  enqueue_json (b, subject, event);
  nex_nats_functions_notice (b, event);
  nex_cluster_notice (__atomic_load_n (&b->node->cluster, __ATOMIC_ACQUIRE), event);
}

/* A JSON string of the N bytes at S, with bytes that do not make UTF-8 replaced by '?' (log lines are
 * arbitrary workload output). */
static json_t *
text_json (const char *s, size_t n)
{
  json_t *j = json_stringn (s, n);
  if (j)
    return j;
  cleanup_free char *copy = nex_xmalloc (n + 1);
  for (size_t i = 0; i < n; i++)
    copy[i] = (unsigned char)s[i] < 0x80 && s[i] != '\0' ? s[i] : '?';
  return json_stringn (copy, n);
}

static nex_nats_logref_t *
logref_get (nex_nats_t *b, const char *id, size_t n)
{
  nex_nats_logref_t *slot = &b->logrefs[0];
  for (int i = 0; i < NEX_NATS_LOG_CACHE; i++)
    {
      if (strcmp (b->logrefs[i].id, id) == 0)
        {
          b->logrefs[i].used = ++b->log_clock;
          return &b->logrefs[i];
        }
      if (b->logrefs[i].used < slot->used)
        slot = &b->logrefs[i];
    }
  /* Not cached: the registry already counts the lines just stored, which gives the first one's seq. */
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_get (b->node->reg, id, &w, &err) < 0)
    return NULL;
  free (slot->ns_token);
  free (slot->name_token);
  snprintf (slot->id, sizeof slot->id, "%s", id);
  slot->ns_token = nex_nats_token (w.namespace_);
  slot->name_token = nex_nats_token (w.name);
  slot->next_seq = w.log_lines - (int64_t)n + 1;
  slot->used = ++b->log_clock;
  nex_workload_release (&w);
  return slot;
}

void
nex_nats_publish_logs (nex_nats_t *b, const char *id, const nex_log_line_t *lines, size_t n)
{
  nex_nats_logref_t *ref = logref_get (b, id, n);
  if (ref == NULL)
    return;
  cleanup_free char *subject
      = nex_xasprintf ("$NEX.logs.%s.%s.%s.%s", ref->ns_token, b->node_token, ref->name_token, id);
  for (size_t i = 0; i < n; i++)
    {
      char ts[NEX_CLOCK_RFC3339_LEN];
      cleanup_json json_t *j = json_pack (
          "{s:o, s:s, s:s, s:s, s:I}", "text", text_json (lines[i].text, lines[i].len), "stream",
          nex_stream_name (lines[i].stream), "level", lines[i].stream == NEX_STREAM_STDERR ? "error" : "info", "ts",
          nex_clock_format (lines[i].ts, ts, sizeof ts), "seq", (json_int_t)ref->next_seq++);
      enqueue_json (b, subject, j);
    }
}

char *
nex_nats_uptime (int64_t ms, char *buf, size_t size)
{
  int64_t s = ms / 1000, m = s / 60, h = m / 60, d = h / 24, y = d / 365;
  if (y > 0)
    snprintf (buf, size, "%lldy%lldd%lldh%lldm%llds", (long long)y, (long long)(d % 365), (long long)(h % 24),
              (long long)(m % 60), (long long)(s % 60));
  else if (d > 0)
    snprintf (buf, size, "%lldd%lldh%lldm%llds", (long long)d, (long long)(h % 24), (long long)(m % 60),
              (long long)(s % 60));
  else if (h > 0)
    snprintf (buf, size, "%lldh%lldm%llds", (long long)h, (long long)(m % 60), (long long)(s % 60));
  else if (m > 0)
    snprintf (buf, size, "%lldm%llds", (long long)m, (long long)(s % 60));
  else
    snprintf (buf, size, "%llds", (long long)s);
  return buf;
}

/* Go's names for this machine's architecture, as nex reports them in nex.arch. */
static const char *
arch_name (void)
{
  static char machine[65];
  struct utsname u;
  if (uname (&u) < 0)
    return "unknown";
  if (strcmp (u.machine, "x86_64") == 0)
    return "amd64";
  if (strcmp (u.machine, "aarch64") == 0)
    return "arm64";
  snprintf (machine, sizeof machine, "%s", u.machine);
  return machine;
}

json_t *
nex_nats_tags (nex_nats_t *b)
{
  json_t *tags = json_object ();
  json_object_set_new (tags, "nex.os", json_string ("linux"));
  json_object_set_new (tags, "nex.arch", json_string (arch_name ()));
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);
  cleanup_free char *ncpu = nex_xasprintf ("%ld", cpus > 0 ? cpus : 1);
  json_object_set_new (tags, "nex.cpucount", json_string (ncpu));
  if (__atomic_load_n (&b->node->lameduck, __ATOMIC_SEQ_CST))
    json_object_set_new (tags, "nex.lameduck", json_string ("true"));
  const char *spec = b->node->cfg->tags;
  if (spec == NULL)
    return tags;
  cleanup_free char *copy = nex_xstrdup (spec);
  char *save = NULL;
  for (char *kv = strtok_r (copy, ",", &save); kv; kv = strtok_r (NULL, ",", &save))
    {
      char *eq = strchr (kv, '=');
      if (eq == NULL || eq == kv)
        continue; /* checked at start; see tags_check */
      *eq = '\0';
      json_object_set_new (tags, kv, json_string (eq + 1));
    }
  return tags;
}

static int
tags_check (const char *spec, nex_error_t *err)
{
  if (spec == NULL)
    return 0;
  cleanup_free char *copy = nex_xstrdup (spec);
  char *save = NULL;
  for (char *kv = strtok_r (copy, ",", &save); kv; kv = strtok_r (NULL, ",", &save))
    {
      char *eq = strchr (kv, '=');
      json_t *value = eq ? json_string (eq + 1) : NULL; /* NULL unless UTF-8 */
      int ok = eq != NULL && eq != kv && value != NULL;
      json_decref (value);
      if (!ok)
        return nex_error_field (err, "tags", "tags must be key=value pairs separated by commas, got `%s`", kv);
    }
  return 0;
}

static void
heartbeat (nex_nats_t *b)
{
  nex_node_t *node = b->node;
  int64_t counts[NEX_STATE__COUNT] = { 0 };
  nex_registry_count_by_state (node->reg, counts, NULL);
  char up[64];
  json_t *data
      = json_pack ("{s:s, s:s, s:s, s:s, s:I, s:o}", "node_id", node->id, "version", PACKAGE_VERSION, "uptime",
                   nex_nats_uptime (nex_clock_mono_ms () - node->started_mono, up, sizeof up), "public_xkey",
                   node->identity.xkey.public_text, "running_workloads",
                   (json_int_t)(counts[NEX_STATE_PENDING] + counts[NEX_STATE_STARTING] + counts[NEX_STATE_RUNNING]),
                   "tags", nex_nats_tags (b));
  /* Published, not stored: a heartbeat says the node is alive now and is worthless in the registry. */
  cleanup_json json_t *ev = nex_event_new (node->id, "heartbeat", NULL, data);
  nex_nats_publish_event (b, ev, NULL);
}

/* --- the publisher thread ---------------------------------------------------------------------------------------- */

/* Hands O to nats.c with its Nats-Msg-Id header.  Publisher thread, without the lock. */
static natsStatus
publish_one (nex_nats_t *b, const nex_nats_out_t *o)
{
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create (&m, o->subject, NULL, o->data, (int)o->len);
  if (s != NATS_OK)
    return s;
  char id[160];
  snprintf (id, sizeof id, "%s.%lld.%llu", b->node_token, (long long)b->node->started_at, (unsigned long long)o->seq);
  s = natsMsgHeader_Set (m, "Nats-Msg-Id", id);
  if (s == NATS_OK)
    s = natsConnection_PublishMsg (b->nc, m);
  natsMsg_Destroy (m);
  return s;
}

/* Flushes what was published since the last flush (called with the lock held; drops it meanwhile).  Confirmed:
 * those entries are freed and counted as published.  Not (the connection fell): they go back in front of the
 * queue, in order, to be sent again after the reconnect. */
static void
confirm_sent_locked (nex_nats_t *b)
{
  pthread_mutex_unlock (&b->lock);
  natsStatus s = natsConnection_FlushTimeout (b->nc, FLUSH_TIMEOUT_MS);
  pthread_mutex_lock (&b->lock);
  nex_nats_out_t *list = b->sent_head;
  int64_t n = b->sent;
  b->sent_head = b->sent_tail = NULL;
  b->sent = 0;
  if (s == NATS_OK)
    {
      b->published += n;
      while (list)
        {
          nex_nats_out_t *next = list->next;
          out_free (list);
          list = next;
        }
      return;
    }
  nex_nats_out_t *last = list;
  while (last && last->next)
    last = last->next;
  if (last)
    {
      last->next = b->head;
      b->head = list;
      if (b->tail == NULL)
        b->tail = last;
      b->queued += n;
      b->republished += n;
    }
  if (natsConnection_Status (b->nc) != NATS_CONN_STATUS_CONNECTED)
    b->connected = 0;
}

static void *
publisher_main (void *arg)
{
  nex_nats_t *b = arg;
  int64_t period = b->node->cfg->heartbeat_s * 1000;
  int64_t next_beat = nex_clock_mono_ms () + period;
  int64_t close_deadline = 0;
  pthread_mutex_lock (&b->lock);
  for (;;)
    {
      int64_t now = nex_clock_mono_ms ();
      if (b->stopping && close_deadline == 0)
        close_deadline = now + CLOSE_FLUSH_MS;
      if (b->stopping && (b->head == NULL || !b->connected || now >= close_deadline))
        break;
      if (!b->stopping && now >= next_beat)
        {
          next_beat = now + period;
          pthread_mutex_unlock (&b->lock);
          heartbeat (b);
          pthread_mutex_lock (&b->lock);
          continue;
        }
      if (b->head == NULL || !b->connected)
        {
          int64_t until = b->stopping ? close_deadline : next_beat;
          struct timespec ts;
          clock_gettime (CLOCK_MONOTONIC, &ts);
          int64_t wait_ms = until - now;
          ts.tv_sec += wait_ms / 1000;
          ts.tv_nsec += (wait_ms % 1000) * 1000000;
          if (ts.tv_nsec >= 1000000000)
            {
              ts.tv_sec++;
              ts.tv_nsec -= 1000000000;
            }
          pthread_cond_timedwait (&b->cond, &b->lock, &ts);
          continue;
        }
      nex_nats_out_t *o = b->head;
      b->head = o->next;
      if (b->head == NULL)
        b->tail = NULL;
      b->queued--;
      pthread_mutex_unlock (&b->lock);
      natsStatus s = publish_one (b, o);
      pthread_mutex_lock (&b->lock);
      if (s == NATS_OK)
        {
          o->next = NULL;
          if (b->sent_tail)
            b->sent_tail->next = o;
          else
            b->sent_head = o;
          b->sent_tail = o;
          b->sent++;
          if (b->sent >= FLUSH_BATCH || b->head == NULL)
            confirm_sent_locked (b);
          continue;
        }
      /* Not sent (the connection went down meanwhile): put it back in front, keeping the order. */
      o->next = b->head;
      b->head = o;
      if (b->tail == NULL)
        b->tail = o;
      b->queued++;
      if (natsConnection_Status (b->nc) != NATS_CONN_STATUS_CONNECTED)
        b->connected = 0;
      else
        {
          /* A refusal while connected (e.g. a payload above the server's maximum): drop it, or it would block
           * everything behind it forever. */
          nex_warn ("nats: cannot publish on %s: %s; dropped", o->subject, natsStatus_GetText (s));
          b->head = o->next;
          if (b->head == NULL)
            b->tail = NULL;
          b->queued--;
          b->dropped++;
          out_free (o);
        }
    }
  pthread_mutex_unlock (&b->lock);
  return NULL;
}

/* URL list U without user information ("nats://user:pass@host" -> "nats://host"): status is served to any API
 * client, credentials must not be. */
static char *
redact_urls (const char *u)
{
  char *out = nex_xmalloc (strlen (u) + 1);
  size_t j = 0;
  while (*u)
    {
      const char *end = strchrnul (u, ',');
      const char *scheme = strstr (u, "://");
      const char *at = memchr (u, '@', (size_t)(end - u));
      const char *from = u;
      if (scheme && scheme < end && at)
        {
          memcpy (out + j, u, (size_t)(scheme + 3 - u));
          j += (size_t)(scheme + 3 - u);
          from = at + 1;
        }
      memcpy (out + j, from, (size_t)(end - from));
      j += (size_t)(end - from);
      if (*end == ',')
        out[j++] = ',';
      u = *end ? end + 1 : end;
    }
  out[j] = '\0';
  return out;
}

/* --- connection callbacks (nats.c threads) ------------------------------------------------------------------------ */

static void
set_connected (nex_nats_t *b, int up, int reconnected)
{
  pthread_mutex_lock (&b->lock);
  b->connected = up;
  if (reconnected)
    b->reconnects++;
  pthread_cond_broadcast (&b->cond);
  pthread_mutex_unlock (&b->lock);
}

/* The connection ended for good (nats.c gives up only on errors such as a revoked authorization): the node
 * keeps running alone; say so loudly. */
static void
nex_bridge_closed (nex_nats_t *b)
{
  pthread_mutex_lock (&b->lock);
  int stopping = b->stopping;
  pthread_mutex_unlock (&b->lock);
  if (!stopping)
    nex_log (NEX_LOG_ERROR, "nats: the connection was closed for good; the node now runs without NATS");
  pthread_mutex_lock (&b->lock);
  b->connected = 0;
  b->closed = 1;
  pthread_cond_broadcast (&b->cond);
  pthread_mutex_unlock (&b->lock);
}

static void
on_connected (natsConnection *nc, void *closure)
{
  char url[256] = "";
  natsConnection_GetConnectedUrl (nc, url, sizeof url);
  cleanup_free char *shown = redact_urls (url);
  nex_info ("nats: connected to %s", shown);
  set_connected (closure, 1, 0);
}

static void
on_disconnected (natsConnection *nc, void *closure)
{
  nex_warn ("nats: disconnected; reconnecting");
  set_connected (closure, 0, 0);
}

static void
on_reconnected (natsConnection *nc, void *closure)
{
  nex_info ("nats: reconnected");
  set_connected (closure, 1, 1);
}

static void
on_closed (natsConnection *nc, void *closure)
{
  nex_bridge_closed (closure);
}

static void
on_error (natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
  nex_warn ("nats: asynchronous error: %s", natsStatus_GetText (err));
}

/* --- options -------------------------------------------------------------------------------------------------- */

#define NATS_TRY(call, what)                                                                                           \
  do                                                                                                                   \
    {                                                                                                                  \
      natsStatus s_ = (call);                                                                                          \
      if (s_ != NATS_OK)                                                                                               \
        return nex_error_field (err, what, "nats option `%s`: %s", what, natsStatus_GetText (s_));                     \
    }                                                                                                                  \
  while (0)

/* The public key of the user seed in file PATH (which natsOptions_SetNKeyFromSeed needs beside the file). */
static int
seed_public (const char *path, char out[NEX_NKEY_PUBLIC_LEN + 1], nex_error_t *err)
{
  size_t len = 0;
  cleanup_free char *text = nex_file_read (path, 4096, &len, err);
  if (text == NULL)
    return nex_error_wrap (err, "nats_nkey");
  /* The file may hold the seed alone or inside a credentials-style block: take the first token that decodes. */
  int found = -1;
  char *save = NULL;
  for (char *tok = strtok_r (text, " \t\r\n", &save); tok && found < 0; tok = strtok_r (NULL, " \t\r\n", &save))
    {
      uint8_t seed[32], prefix;
      if (strlen (tok) == NEX_NKEY_SEED_LEN && nex_nkey_decode_seed (tok, &prefix, seed, NULL) == 0)
        {
          nex_nkey_sign_t k;
          nex_nkey_sign_from_seed (prefix, seed, &k);
          memcpy (out, k.public_text, sizeof k.public_text);
          sodium_memzero (&k, sizeof k);
          sodium_memzero (seed, sizeof seed);
          found = 0;
        }
    }
  sodium_memzero (text, len);
  if (found < 0)
    return nex_error_field (err, "nats_nkey", "`%s` holds no nkey seed", path);
  return 0;
}

static int
make_options (nex_nats_t *b, nex_error_t *err)
{
  const nex_config_t *cfg = b->node->cfg;
  if (natsOptions_Create (&b->opts) != NATS_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "nats: cannot create options");
  /* A list "u1,u2" is several servers of one system. */
  cleanup_free char *urls = nex_xstrdup (cfg->nats);
  const char *list[16];
  int n = 0;
  char *save = NULL;
  for (char *u = strtok_r (urls, ",", &save); u && n < 16; u = strtok_r (NULL, ",", &save))
    list[n++] = u;
  if (n == 0)
    return nex_error_field (err, "nats", "nats must name at least one server URL");
  NATS_TRY (natsOptions_SetServers (b->opts, list, n), "nats");
  cleanup_free char *name = nex_xasprintf ("nexd %s", b->node->id);
  NATS_TRY (natsOptions_SetName (b->opts, name), "nats");
  /* Forever: a node outlives any outage of its NATS system. */
  NATS_TRY (natsOptions_SetMaxReconnect (b->opts, -1), "nats");
  NATS_TRY (natsOptions_SetReconnectWait (b->opts, RECONNECT_WAIT_MS), "nats");
  NATS_TRY (natsOptions_SetClosedCB (b->opts, on_closed, b), "nats");
  NATS_TRY (natsOptions_SetDisconnectedCB (b->opts, on_disconnected, b), "nats");
  NATS_TRY (natsOptions_SetReconnectedCB (b->opts, on_reconnected, b), "nats");
  NATS_TRY (natsOptions_SetErrorHandler (b->opts, on_error, b), "nats");
  if (cfg->nats_creds)
    {
      if (access (cfg->nats_creds, R_OK) < 0)
        return nex_error_field (err, "nats_creds", "cannot read `%s`: %s", cfg->nats_creds, strerror (errno));
      NATS_TRY (natsOptions_SetUserCredentialsFromFiles (b->opts, cfg->nats_creds, NULL), "nats_creds");
    }
  if (cfg->nats_nkey)
    {
      char pub[NEX_NKEY_PUBLIC_LEN + 1];
      if (seed_public (cfg->nats_nkey, pub, err) < 0)
        return -1;
      NATS_TRY (natsOptions_SetNKeyFromSeed (b->opts, pub, cfg->nats_nkey), "nats_nkey");
    }
  if (cfg->nats_user)
    NATS_TRY (natsOptions_SetUserInfo (b->opts, cfg->nats_user, cfg->nats_password), "nats_user");
  if (cfg->nats_tls_ca || cfg->nats_tls_cert)
    {
      NATS_TRY (natsOptions_SetSecure (b->opts, true), "nats_tls_ca");
      if (cfg->nats_tls_ca)
        NATS_TRY (natsOptions_LoadCATrustedCertificates (b->opts, cfg->nats_tls_ca), "nats_tls_ca");
      if (cfg->nats_tls_cert)
        NATS_TRY (natsOptions_LoadCertificatesChain (b->opts, cfg->nats_tls_cert, cfg->nats_tls_key), "nats_tls_cert");
    }
  return 0;
}

/* nats:// artifacts (artifact.c) read through this connection. */
static int
artifact_get (void *ctx, const char *bucket, const char *key, uint64_t max_bytes, nex_artifact_write_t write,
              void *sink, nex_error_t *err)
{
  nex_nats_t *b = ctx;
  return nex_objstore_get (b->nc, bucket, key, max_bytes, write, sink, err);
}

/* --- public --------------------------------------------------------------------------------------------------- */

static void
bridge_free (nex_nats_t *b)
{
  nex_nats_functions_free (b);
  for (int i = 0; i < b->n_subs; i++)
    natsSubscription_Destroy (b->subs[i]);
  if (b->nc)
    natsConnection_Destroy (b->nc);
  if (b->opts)
    natsOptions_Destroy (b->opts);
  while (b->head)
    {
      nex_nats_out_t *o = b->head;
      b->head = o->next;
      out_free (o);
    }
  while (b->sent_head)
    {
      nex_nats_out_t *o = b->sent_head;
      b->sent_head = o->next;
      out_free (o);
    }
  for (int i = 0; i < NEX_NATS_LOG_CACHE; i++)
    {
      free (b->logrefs[i].ns_token);
      free (b->logrefs[i].name_token);
    }
  free (b->node_token);
  pthread_mutex_destroy (&b->lock);
  pthread_cond_destroy (&b->cond);
  free (b);
}

/* For cleanup_with: a bridge that did not start; a no-op on NULL. */
static void
bridge_freep (nex_nats_t **b)
{
  if (*b)
    bridge_free (*b);
}

nex_nats_t *
nex_nats_start (nex_node_t *node, nex_error_t *err)
{
  if (tags_check (node->cfg->tags, err) < 0)
    return NULL;
  cleanup_with (bridge_freep) nex_nats_t *b = nex_xzalloc (sizeof *b);
  b->node = node;
  b->node_token = nex_nats_token (node->id);
  pthread_mutex_init (&b->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&b->cond, &ca);
  pthread_condattr_destroy (&ca);
  if (make_options (b, err) < 0)
    return NULL;
  /* A first attempt that may fail: an unreachable server is retried in the background (the node runs
   * meanwhile), but a server that answers and refuses us (credentials, TLS) is a configuration error. */
  natsStatus s = natsConnection_Connect (&b->nc, b->opts);
  if (s == NATS_NO_SERVER)
    {
      natsOptions_SetRetryOnFailedConnect (b->opts, true, on_connected, b);
      s = natsConnection_Connect (&b->nc, b->opts);
    }
  if (s == NATS_OK)
    b->connected = 1;
  else if (s == NATS_NOT_YET_CONNECTED)
    nex_warn ("nats: no server of `%s` is reachable yet; retrying in the background", node->cfg->nats);
  else
    {
      cleanup_free char *url = redact_urls (node->cfg->nats);
      const char *detail = nats_GetLastError (NULL);
      nex_error_field (err, "nats", "cannot connect to NATS `%s`: %s%s%s", url, natsStatus_GetText (s),
                       detail && *detail ? ": " : "", detail ? detail : "");
      return NULL;
    }
  int r = pthread_create (&b->publisher, NULL, publisher_main, b);
  if (r != 0)
    {
      nex_error_sys (err, r, "start the NATS publisher thread");
      return NULL;
    }
  b->publisher_started = 1;
  nex_artifact_set_nats (artifact_get, b);
  return NEX_STEAL_PTR (b);
}

int
nex_nats_serve (nex_nats_t *b, nex_error_t *err)
{
  pthread_mutex_lock (&b->lock);
  b->serving = 1;
  pthread_mutex_unlock (&b->lock);
  if (nex_nats_control_subscribe (b, err) < 0)
    return -1;
  return nex_nats_functions_start (b, err);
}

void
nex_nats_quiesce (nex_nats_t *b)
{
  if (b == NULL)
    return;
  /* No callback may touch the supervisor once this returns: stop admitting them, then wait for the ones
   * running.  (Draining the subscriptions would need the server, which may be the thing that is gone.) */
  pthread_mutex_lock (&b->lock);
  b->serving = 0;
  while (b->inflight > 0)
    pthread_cond_wait (&b->cond, &b->lock);
  pthread_mutex_unlock (&b->lock);
  for (int i = 0; i < b->n_subs; i++)
    natsSubscription_Unsubscribe (b->subs[i]);
  nex_nats_functions_quiesce (b);
}

void
nex_nats_close_if_down (nex_nats_t *b)
{
  if (b == NULL || b->nc == NULL || natsConnection_Status (b->nc) == NATS_CONN_STATUS_CONNECTED)
    return;
  nex_info ("nats: not connected at shutdown: the connection is closed now");
  natsConnection_Close (b->nc);
}

void
nex_nats_close (nex_nats_t *b)
{
  if (b == NULL)
    return;
  nex_nats_quiesce (b);
  nex_nats_functions_stop (b); /* its last replies and events, while the publisher still runs */
  nex_artifact_set_nats (NULL, NULL);
  pthread_mutex_lock (&b->lock);
  b->stopping = 1;
  pthread_cond_broadcast (&b->cond);
  pthread_mutex_unlock (&b->lock);
  if (b->drainer_started)
    pthread_join (b->drainer, NULL);
  if (b->publisher_started)
    pthread_join (b->publisher, NULL);
  if (b->connected)
    natsConnection_FlushTimeout (b->nc, 1000);
  if (b->queued > 0 || b->dropped > 0)
    nex_warn ("nats: closing with %lld publications unsent, %lld dropped during the run", (long long)b->queued,
              (long long)b->dropped);
  natsConnection_Close (b->nc);
  /* nats.c reports the close (and a last disconnect) on its own thread, with B as closure: wait for it before
   * B goes away. */
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_sec += 5;
  pthread_mutex_lock (&b->lock);
  while (!b->closed && pthread_cond_timedwait (&b->cond, &b->lock, &ts) == 0)
    ;
  pthread_mutex_unlock (&b->lock);
  for (int i = 0; i < b->n_subs; i++)
    natsSubscription_Destroy (b->subs[i]);
  b->n_subs = 0;
  natsConnection_Destroy (b->nc);
  b->nc = NULL;
  /* nats.c keeps library-wide threads and memory until told to release them; once they are gone no callback
   * can run. */
  nats_CloseAndWait (2000);
  bridge_free (b);
}

struct __natsConnection *
nex_nats_connection (nex_nats_t *b)
{
  return b->nc;
}

json_t *
nex_nats_status (nex_nats_t *b)
{
  cleanup_free char *url = redact_urls (b->node->cfg->nats);
  pthread_mutex_lock (&b->lock);
  json_t *j = json_pack ("{s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "url", url, "connected", b->connected, "reconnects",
                         (json_int_t)b->reconnects, "queued", (json_int_t)b->queued, "dropped", (json_int_t)b->dropped,
                         "published", (json_int_t)b->published, "republished", (json_int_t)b->republished);
  pthread_mutex_unlock (&b->lock);
  return j;
}
