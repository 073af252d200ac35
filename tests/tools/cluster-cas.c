/* SPDX-License-Identifier: Apache-2.0 */
/* cluster-cas.c — test tool: the compare-and-set of the desired-state bucket (nex_desired_update,
 * server/cluster/desired.c) under contention, as failover's claims make it.  One connection per server URL, each
 * its own nex_cluster_t; every round writes a fresh entry, then every connection's thread updates it conditioned
 * on that same revision at the same moment (a barrier), and once more on the stale revision.
 *
 * Usage: cluster-cas URL[,URL...] ROUNDS.  Prints {rounds, won_once, won_twice_or_more, won_never, stale_refused,
 * errors}; a correct compare-and-set has won_once == rounds and stale_refused == rounds. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/cluster/internal.h"

#define MAX_CONNS 8

typedef struct claimer
{
  nex_cluster_t c;
  pthread_barrier_t *go;
  const char *key;
  uint64_t rev;
  int result;
} claimer_t;

static void *
claim_main (void *arg)
{
  claimer_t *k = arg;
  cleanup_json json_t *v = json_pack ("{s:s}", "owner", "cas");
  cleanup_error nex_error_t err = NULL;
  pthread_barrier_wait (k->go);
  k->result = nex_desired_update (&k->c, k->key, v, k->rev, NULL, &err);
  if (k->result < 0)
    fprintf (stderr, "cluster-cas: %s: %s\n", k->key, err->msg);
  return NULL;
}

static int
open_bucket (nex_cluster_t *c, const char *url)
{
  kvConfig cfg;
  kvConfig_Init (&cfg);
  cfg.Bucket = NEX_CLUSTER_BUCKET;
  cfg.History = 1;
  cfg.Replicas = 3;
  pthread_mutex_init (&c->lock, NULL);
  if (natsConnection_ConnectTo (&c->nc, url) != NATS_OK || natsConnection_JetStream (&c->js, c->nc, NULL) != NATS_OK)
    return -1;
  if (js_KeyValue (&c->kv, c->js, NEX_CLUSTER_BUCKET) == NATS_OK)
    return 0;
  return js_CreateKeyValue (&c->kv, c->js, &cfg) == NATS_OK ? 0 : -1;
}

int
main (int argc, char **argv)
{
  if (argc != 3)
    {
      fprintf (stderr, "usage: cluster-cas URL[,URL...] ROUNDS\n");
      return 2;
    }
  claimer_t k[MAX_CONNS];
  memset (k, 0, sizeof k);
  int n = 0;
  cleanup_free char *urls = nex_xstrdup (argv[1]);
  for (char *save = NULL, *u = strtok_r (urls, ",", &save); u && n < MAX_CONNS; u = strtok_r (NULL, ",", &save))
    if (open_bucket (&k[n++].c, u) < 0)
      {
        fprintf (stderr, "cluster-cas: cannot open the bucket through %s\n", u);
        return 1;
      }
  /* A bucket just made has no stream leader for a moment: wait for the first write to go through. */
  for (int i = 0; i < 80 && kvStore_PutString (NULL, k[0].c.kv, "cas-ready", "1") != NATS_OK; i++)
    usleep (250 * 1000);
  int rounds = atoi (argv[2]), once = 0, more = 0, never = 0, stale = 0, errors = 0;
  pthread_barrier_t go;
  pthread_barrier_init (&go, NULL, (unsigned)n);
  for (int r = 0; r < rounds; r++)
    {
      char key[64];
      snprintf (key, sizeof key, "cas-%d-%d", (int)getpid (), r);
      cleanup_json json_t *v = json_pack ("{s:i}", "round", r);
      kvEntry *e = NULL;
      cleanup_error nex_error_t err = NULL;
      if (nex_desired_create (&k[0].c, key, v, &err) < 0 || kvStore_Get (&e, k[0].c.kv, key) != NATS_OK)
        {
          fprintf (stderr, "cluster-cas: round %d: cannot write the entry: %s\n", r, err ? err->msg : "get failed");
          errors++;
          continue;
        }
      uint64_t rev = kvEntry_Revision (e);
      kvEntry_Destroy (e);
      pthread_t t[MAX_CONNS];
      for (int i = 0; i < n; i++)
        {
          k[i].go = &go;
          k[i].key = key;
          k[i].rev = rev;
          pthread_create (&t[i], NULL, claim_main, &k[i]);
        }
      int won = 0;
      for (int i = 0; i < n; i++)
        {
          pthread_join (t[i], NULL);
          won += k[i].result == 0;
          errors += k[i].result < 0;
        }
      once += won == 1;
      more += won > 1;
      never += won == 0;
      int again = nex_desired_update (&k[n - 1].c, key, v, rev, NULL, &err);
      stale += again == 1;
      if (again < 0)
        fprintf (stderr, "cluster-cas: %s (stale): %s\n", key, err->msg);
      kvStore_Delete (k[0].c.kv, key);
    }
  printf ("{\"rounds\": %d, \"won_once\": %d, \"won_twice_or_more\": %d, \"won_never\": %d, \"stale_refused\": %d, "
          "\"errors\": %d}\n",
          rounds, once, more, never, stale, errors);
  for (int i = 0; i < n; i++)
    {
      kvStore_Destroy (k[i].c.kv);
      jsCtx_Destroy (k[i].c.js);
      natsConnection_Destroy (k[i].c.nc);
      pthread_mutex_destroy (&k[i].c.lock);
    }
  pthread_barrier_destroy (&go);
  nats_Close ();
  return 0;
}
