/* SPDX-License-Identifier: Apache-2.0 */
/* net/teardown.c — a workload's network taken down off the path of its final state.
 *
 * Taking a bridge workload's network down is an nftables transaction, the deletion of its link (a veth's
 * deletion waits for the kernel's network grace period: tens of ms on a loaded host) and a registry write: about
 * as long as a short workload's whole run.  The supervisor used to do it before storing the final state, so a
 * client waiting for `exited` waited for the teardown too.  Now nex_net_release only queues the id, and one
 * thread of the module's own takes the queue down in order.
 *
 * What must stay true: a lease (address, host ports) is held until its teardown is done, and every deploy that
 * takes a lease first waits for the queue to be empty (nex_net_teardown_wait), so a host port published by a
 * workload that has ended is free again for the next deploy exactly as before.  nex_net_close drains the queue
 * before it returns; after a crash with ids still queued, the start-up restore (net.c) drops their leases, their
 * rules and their links, since their workloads are recorded as ended. */
#include "server/net/internal.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/log.h"

static void *
teardown_main (void *arg)
{
  nex_net_t *net = arg;
  pthread_mutex_lock (&net->lock);
  for (;;)
    {
      while (json_array_size (net->ending) == 0 && !net->ending_stop)
        pthread_cond_wait (&net->ending_cond, &net->lock);
      if (json_array_size (net->ending) == 0)
        break; /* stopped, and nothing left to do */
      cleanup_free char *id = nex_xstrdup (json_string_value (json_array_get (net->ending, 0)));
      json_array_remove (net->ending, 0);
      net->ending_busy = 1;
      pthread_mutex_unlock (&net->lock);
      nex_net_release_now (net, id);
      pthread_mutex_lock (&net->lock);
      net->ending_busy = 0;
      pthread_cond_broadcast (&net->ending_cond);
    }
  pthread_mutex_unlock (&net->lock);
  return NULL;
}

int
nex_net_teardown_start (nex_net_t *net, nex_error_t *err)
{
  net->ending = json_array ();
  pthread_cond_init (&net->ending_cond, NULL);
  int r = pthread_create (&net->ending_thread, NULL, teardown_main, net);
  if (r != 0)
    return nex_error_sys (err, r, "network teardown thread");
  net->ending_started = 1;
  return 0;
}

void
nex_net_teardown_stop (nex_net_t *net)
{
  if (!net->ending_started)
    return;
  pthread_mutex_lock (&net->lock);
  net->ending_stop = 1;
  pthread_cond_broadcast (&net->ending_cond);
  pthread_mutex_unlock (&net->lock);
  pthread_join (net->ending_thread, NULL);
  net->ending_started = 0;
  pthread_cond_destroy (&net->ending_cond);
  json_decref (net->ending);
  net->ending = NULL;
}

void
nex_net_teardown_queue_locked (nex_net_t *net, const char *id)
{
  if (!net->ending_started || net->ending_stop)
    {
      /* No thread (nexd is stopping, or it could not start one): done here, as before. */
      pthread_mutex_unlock (&net->lock);
      nex_net_release_now (net, id);
      pthread_mutex_lock (&net->lock);
      return;
    }
  json_array_append_new (net->ending, json_string (id));
  pthread_cond_broadcast (&net->ending_cond);
}

void
nex_net_teardown_wait (nex_net_t *net)
{
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  while (net->ending_started && (json_array_size (net->ending) > 0 || net->ending_busy))
    pthread_cond_wait (&net->ending_cond, &net->lock);
}
