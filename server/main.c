/* SPDX-License-Identifier: Apache-2.0 */
/* main.c — nexd: start a node, serve until SIGTERM/SIGINT, shut down cleanly.
 *
 * Start order: configuration, logging, node (data dir, registry, identity), supervisor (re-attaches to
 * sandboxes that outlived the previous nexd), API; then the service manager hears READY=1 (notify.h).  Shutdown
 * (STOPPING=1 first) runs it backwards; running workloads are left running for the next nexd to adopt.  Signals are
 * taken synchronously with sigwait in the main thread, so no other thread is ever interrupted by them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <sodium.h>

#include "autoconfig.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/api/api.h"
#include "server/artifacts/unpack.h"
#include "server/cluster/cluster.h"
#include "server/config.h"
#include "server/log.h"
#include "server/nats/bridge.h"
#include "server/node.h"
#include "server/notify.h"
#include "server/retain.h"
#include "server/supervisor.h"

extern char **environ;

/* Stops what serve () started, in reverse order: the NATS control API, then the supervisor (workloads keep
 * running), then the bridge (publishing what is still queued, node_stopped included: no thread emits any more),
 * then the node. */
static void
node_stopp (nex_node_t **nodep)
{
  nex_node_t *node = *nodep;
  if (node == NULL)
    return;
  nex_cluster_stop (node->cluster);
  nex_nats_quiesce (node->nats);
  nex_supervisor_shutdown (node->sup);
  nex_nats_close (NEX_STEAL_PTR (node->nats));
  nex_cluster_free (NEX_STEAL_PTR (node->cluster));
  nex_node_close (node);
}

static void
retain_stopp (nex_retain_t **r)
{
  nex_retain_stop (*r);
}

static void
api_stopp (nex_api_t **api)
{
  nex_api_stop (*api);
}

/* Tells the service manager STATE (notify.h); a failure is logged: the node goes on either way. */
static void
notify (const char *state)
{
  cleanup_error nex_error_t err = NULL;
  if (nex_notify_send (state, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "cannot notify the service manager");
}

/* Starts the node, its bridge, supervisor and API, serves until SIGTERM or SIGINT arrives in WAIT_SET (SIGHUP is
 * logged and ignored), then shuts down.  0 after a clean shutdown, -1 with ERR when something could not start
 * (what had started is stopped again). */
static int
serve (const nex_config_t *cfg, const sigset_t *wait_set, nex_error_t *err)
{
  cleanup_with (node_stopp) nex_node_t *node = nex_node_open (cfg, err);
  if (node == NULL)
    return -1;
  /* The bridge first, so that what the supervisor reports while recovering reaches NATS too; its control API
   * only once the supervisor exists. */
  if (cfg->nats && (node->nats = nex_nats_start (node, err)) == NULL)
    return -1;
  node->sup = nex_supervisor_start (node, err);
  if (node->sup == NULL)
    return -1;
  if (node->nats && nex_nats_serve (node->nats, err) < 0)
    return -1;
  if (node->nats && (node->cluster = nex_cluster_start (node, err)) == NULL)
    return -1;
  /* Ended workloads older than --retain-ended go in the background (retain.h). */
  cleanup_with (retain_stopp) nex_retain_t *retain = nex_retain_start (node, err);
  if (retain == NULL && *err)
    return -1;
  cleanup_with (api_stopp) nex_api_t *api = nex_api_start (node, err);
  if (api == NULL)
    return -1;
  nex_info ("node %s listening on http://%s (data %s)", node->id, cfg->listen, node->data_dir);
  nex_node_emit (node, "node_started", NULL, NULL);
  /* Only now: the API's socket listens, so whoever waited for READY=1 can connect at once. */
  cleanup_free char *ready = nex_xasprintf ("READY=1\nSTATUS=node %s serving on %s", node->id, cfg->listen);
  notify (ready);

  int sig = 0;
  while (sigwait (wait_set, &sig) == 0 && sig == SIGHUP)
    nex_info ("SIGHUP ignored (reload is not supported yet)");
  nex_info ("signal %d: shutting down", sig);
  notify ("STOPPING=1\nSTATUS=shutting down; workloads keep running for the next nexd");
  nex_nats_close_if_down (node->nats);
  nex_cluster_stop (node->cluster);
  nex_supervisor_quiesce (node->sup);
  nex_api_stop (NEX_STEAL_PTR (api));
  if (node->nats)
    nex_nats_quiesce (node->nats);
  nex_node_emit (node, "node_stopped", NULL, NULL);
  return 0;
}

/* The process-wide libraries first (libsodium; libcurl before any thread uses it — artifact fetches, the
 * Firecracker driver — as its global set-up is not thread-safe), then serve ().  nexd's exit status. */
static int
run (const nex_config_t *cfg, const sigset_t *wait_set)
{
  if (sodium_init () < 0)
    {
      nex_log (NEX_LOG_ERROR, "libsodium failed to initialise");
      return 1;
    }
  if (curl_global_init (CURL_GLOBAL_DEFAULT) != 0)
    {
      nex_log (NEX_LOG_ERROR, "libcurl failed to initialise");
      return 1;
    }
  cleanup_error nex_error_t err = NULL;
  int status = 0;
  if (serve (cfg, wait_set, &err) < 0)
    {
      nex_log_error (NEX_LOG_ERROR, err, "nexd cannot start");
      fprintf (stderr, "nexd: %s\n", err->msg);
      status = 1;
    }
  curl_global_cleanup ();
  return status;
}

int
main (int argc, char **argv)
{
  /* An image's unpack child (artifacts/unpack.h): started by nexd itself under this name. */
  if (argc > 0 && strcmp (argv[0], NEX_UNPACK_ARGV0) == 0)
    return nex_unpack_child_main (argc, argv);
  cleanup_with (nex_config_release) nex_config_t cfg;
  cleanup_error nex_error_t err = NULL;
  int r = nex_config_load (&cfg, argc, argv, environ, stdout, &err);
  if (r != 0)
    {
      if (r < 0)
        fprintf (stderr, "nexd: %s\n", err->msg);
      return r < 0 ? 2 : 0;
    }
  nex_log_level_t level = NEX_LOG_INFO;
  nex_log_level_parse (cfg.log_level, &level, NULL);
  nex_log_set_level (level);
  if (nex_notify_init (&err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "the service manager will not be notified");

  /* Block the signals we wait for before any thread exists, so that every thread inherits the mask. */
  sigset_t wait_set;
  sigemptyset (&wait_set);
  sigaddset (&wait_set, SIGTERM);
  sigaddset (&wait_set, SIGINT);
  sigaddset (&wait_set, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &wait_set, NULL);
  signal (SIGPIPE, SIG_IGN); /* a peer that hangs up is an error return, not a death */
  return run (&cfg, &wait_set);
}
