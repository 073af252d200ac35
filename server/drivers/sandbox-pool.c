/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/sandbox-pool.c — the warm pool of sandboxes (contract and design: sandbox-pool.h).
 *
 * One thread keeps `size` sandboxes ready: it sleeps on a condition variable until a take leaves fewer, then
 * makes one (cgroup without limits, sandbox with nex_launch_t.warm, placed in that cgroup before it runs) outside
 * the lock, so a take never waits for it; a full pool wakes every POOL_CHECK_MS to replace agents that ended.
 * A slot's names are a fresh UUID: its run dir data/run/warm/<uuid>, its cgroup nex/<uuid>.  A failure to make
 * one is logged and retried a second later. */
#include "server/drivers/sandbox-pool.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/id.h"
#include "server/log.h"

#define POOL_RETRY_MS 1000   /* after a sandbox could not be made */
#define POOL_FALLBACK_MS 200 /* a take that no nex_sandbox_pool_refill followed is made good after this */
#define POOL_CHECK_MS 1000   /* how often a full pool looks for agents that ended */
#define POOL_NICE 10         /* the pool's thread yields to the supervisor and the API; sandboxes do not inherit it */

struct nex_sandbox_slot
{
  char name[NEX_ID_LEN + 1]; /* its cgroup's and run dir's name while pooled */
  nex_instance_t inst;       /* pid, endpoint, run_dir */
  nex_sandbox_slot_t *next;
};

struct nex_sandbox_pool
{
  char *warm_dir; /* run_dir/warm */
  char *agent_path;
  nex_cgroups_t *cg;
  int size;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  nex_sandbox_slot_t *ready; /* under lock */
  int n_ready;               /* under lock */
  int refills;               /* under lock: sandboxes the supervisor let the pool make now (nex_sandbox_pool_refill) */
  int64_t last_take;         /* under lock: monotonic ms of the last take */
  int stopping;              /* under lock */
  pthread_t thread;
};

typedef struct placement
{
  nex_cgroups_t *cg;
  const char *name;
} placement_t;

/* nex_launch_t.place: the pooled sandbox's root process joins its cgroup before it runs anything, and gets the
 * usual priority back (the pool's thread runs niced, and a clone inherits that). */
static int
place (void *ctx, pid_t pid, nex_error_t *err)
{
  const placement_t *p = ctx;
  setpriority (PRIO_PROCESS, (id_t)pid, 0);
  return nex_cgroups_attach (p->cg, p->name, pid, err);
}

/* Kills the sandbox of INST (its agent, and so its pid namespace), reaps it, removes its run dir. */
static void
end_sandbox (nex_instance_t *inst)
{
  if (inst->pid > 0)
    {
      kill (inst->pid, SIGKILL);
      while (waitpid (inst->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    }
  if (inst->run_dir)
    nex_driver_remove_run_dir (&nex_driver_sandbox, inst->run_dir);
  nex_instance_release (inst);
}

static void
slot_destroy (nex_sandbox_pool_t *pool, nex_sandbox_slot_t *s)
{
  end_sandbox (&s->inst);
  nex_cgroups_destroy (pool->cg, s->name, NULL);
  free (s);
}

/* A new pooled sandbox, or NULL with *ERR. */
static nex_sandbox_slot_t *
slot_make (nex_sandbox_pool_t *pool, nex_error_t *err)
{
  nex_sandbox_slot_t *s = nex_xzalloc (sizeof *s);
  nex_id_new (s->name);
  nex_cgroup_limits_t none = { 0 };
  if (nex_cgroups_create (pool->cg, s->name, &none, err) < 0)
    {
      free (s);
      return NULL;
    }
  cleanup_free char *run_dir = nex_xasprintf ("%s/%s", pool->warm_dir, s->name);
  placement_t where = { .cg = pool->cg, .name = s->name };
  nex_launch_t l = { .workload_id = s->name,
                     .hostname = "nex-warm",
                     .agent_path = pool->agent_path,
                     .run_dir = run_dir,
                     .warm = 1,
                     .tmp_mb = NEX_SANDBOX_POOL_TMP_MB,
                     .place = place,
                     .place_ctx = &where };
  if (nex_driver_start (&nex_driver_sandbox, &l, &s->inst, err) < 0)
    {
      nex_cgroups_destroy (pool->cg, s->name, NULL);
      free (s);
      return NULL;
    }
  return s;
}

/* Whether S's agent has ended while pooled (killed from outside, or out of memory): then it is reaped here. */
static int
slot_gone (nex_sandbox_slot_t *s)
{
  if (waitpid (s->inst.pid, NULL, WNOHANG) != s->inst.pid)
    return 0;
  s->inst.pid = 0; /* reaped: nothing left to kill */
  return 1;
}

/* Takes the ready sandboxes whose agent ended out of the pool (the caller holds the lock) and returns them, for
 * slot_destroy outside the lock. */
static nex_sandbox_slot_t *
take_dead_locked (nex_sandbox_pool_t *pool)
{
  nex_sandbox_slot_t *dead = NULL;
  for (nex_sandbox_slot_t **p = &pool->ready; *p;)
    {
      nex_sandbox_slot_t *s = *p;
      if (!slot_gone (s))
        {
          p = &s->next;
          continue;
        }
      *p = s->next;
      pool->n_ready--;
      s->next = dead;
      dead = s;
    }
  return dead;
}

static void
destroy_dead (nex_sandbox_pool_t *pool, nex_sandbox_slot_t *dead)
{
  while (dead)
    {
      nex_sandbox_slot_t *d = dead;
      dead = d->next;
      nex_warn ("warm pool: the agent of pooled sandbox %s had ended; removed", d->name);
      slot_destroy (pool, d);
    }
}

static void
sleep_ms_locked (nex_sandbox_pool_t *pool, int64_t ms)
{
  struct timespec until;
  clock_gettime (CLOCK_REALTIME, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000)
    {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
  pthread_cond_timedwait (&pool->wake, &pool->lock, &until);
}

static int64_t
mono_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Making a sandbox costs a clone, mounts and cgroup writes: on a small host that would slow the very deploy that
 * took one.  So a take is made good once that deploy's workload runs (nex_sandbox_pool_refill), or after
 * POOL_FALLBACK_MS when nothing says so (its start failed). */
static void *
pool_main (void *arg)
{
  nex_sandbox_pool_t *pool = arg;
  setpriority (PRIO_PROCESS, (id_t)gettid (), POOL_NICE);
  pthread_mutex_lock (&pool->lock);
  while (!pool->stopping)
    {
      nex_sandbox_slot_t *dead = take_dead_locked (pool);
      if (dead)
        {
          pthread_mutex_unlock (&pool->lock);
          destroy_dead (pool, dead);
          pthread_mutex_lock (&pool->lock);
          continue;
        }
      if (pool->n_ready >= pool->size)
        {
          /* Woken by a take, or once in a while to look for pooled agents that ended. */
          sleep_ms_locked (pool, POOL_CHECK_MS);
          continue;
        }
      int64_t due = pool->last_take + POOL_FALLBACK_MS, now = mono_ms ();
      if (pool->refills == 0 && now < due)
        {
          sleep_ms_locked (pool, due - now);
          continue;
        }
      if (pool->refills > 0)
        pool->refills--;
      pthread_mutex_unlock (&pool->lock);
      cleanup_error nex_error_t err = NULL;
      nex_sandbox_slot_t *s = slot_make (pool, &err);
      pthread_mutex_lock (&pool->lock);
      if (s == NULL)
        {
          nex_log_error (NEX_LOG_WARN, err, "warm pool: cannot make a sandbox (trying again in %d ms)", POOL_RETRY_MS);
          sleep_ms_locked (pool, POOL_RETRY_MS);
          continue;
        }
      s->next = pool->ready;
      pool->ready = s;
      pool->n_ready++;
    }
  pthread_mutex_unlock (&pool->lock);
  return NULL;
}

void
nex_sandbox_pool_sweep (const char *run_dir, nex_cgroups_t *cg)
{
  cleanup_free char *warm_dir = nex_xasprintf ("%s/warm", run_dir);
  cleanup_dir DIR *dir = opendir (warm_dir);
  struct dirent *de;
  while (dir && (de = readdir (dir)) != NULL)
    if (nex_id_valid (de->d_name))
      {
        nex_info ("warm pool: removing a pooled sandbox an earlier nexd left (%s)", de->d_name);
        if (cg)
          nex_cgroups_destroy (cg, de->d_name, NULL);
        cleanup_free char *path = nex_xasprintf ("%s/%s", warm_dir, de->d_name);
        nex_driver_remove_run_dir (&nex_driver_sandbox, path);
      }
}

nex_sandbox_pool_t *
nex_sandbox_pool_start (const char *run_dir, const char *agent_path, nex_cgroups_t *cg, int size, nex_error_t *err)
{
  nex_sandbox_pool_t *pool = nex_xzalloc (sizeof *pool);
  pool->warm_dir = nex_xasprintf ("%s/warm", run_dir);
  pool->agent_path = nex_xstrdup (agent_path);
  pool->cg = cg;
  pool->size = size;
  pthread_mutex_init (&pool->lock, NULL);
  pthread_cond_init (&pool->wake, NULL);
  int r = nex_mkdir_p (pool->warm_dir, 0700, err);
  if (r == 0 && (errno = pthread_create (&pool->thread, NULL, pool_main, pool)) != 0)
    r = nex_error_sys (err, errno, "start the warm pool's thread");
  if (r < 0)
    {
      pthread_cond_destroy (&pool->wake);
      pthread_mutex_destroy (&pool->lock);
      free (pool->warm_dir);
      free (pool->agent_path);
      free (pool);
      return NULL;
    }
  return pool;
}

void
nex_sandbox_pool_stop (nex_sandbox_pool_t *pool)
{
  if (pool == NULL)
    return;
  pthread_mutex_lock (&pool->lock);
  pool->stopping = 1;
  pthread_cond_broadcast (&pool->wake);
  pthread_mutex_unlock (&pool->lock);
  pthread_join (pool->thread, NULL);
  while (pool->ready)
    {
      nex_sandbox_slot_t *s = pool->ready;
      pool->ready = s->next;
      slot_destroy (pool, s);
    }
  rmdir (pool->warm_dir);
  pthread_cond_destroy (&pool->wake);
  pthread_mutex_destroy (&pool->lock);
  free (pool->warm_dir);
  free (pool->agent_path);
  free (pool);
}

int
nex_sandbox_pool_fits (const nex_workload_t *w)
{
  int disk = w->resources.disk_mb > 0 ? (int)w->resources.disk_mb : NEX_RESOURCES_DEFAULT_DISK_MB;
  return w->image == NULL && w->artifact != NULL && w->driver && strcmp (w->driver, "sandbox") == 0 && !w->net
         && !w->host_network && disk == NEX_SANDBOX_POOL_TMP_MB;
}

nex_sandbox_slot_t *
nex_sandbox_pool_take (nex_sandbox_pool_t *pool)
{
  pthread_mutex_lock (&pool->lock);
  nex_sandbox_slot_t *dead = take_dead_locked (pool);
  nex_sandbox_slot_t *s = pool->ready;
  if (s)
    {
      pool->ready = s->next;
      pool->n_ready--;
      pool->last_take = mono_ms ();
      pthread_cond_signal (&pool->wake);
    }
  pthread_mutex_unlock (&pool->lock);
  destroy_dead (pool, dead);
  if (s)
    s->next = NULL;
  return s;
}

void
nex_sandbox_pool_give_back (nex_sandbox_pool_t *pool, nex_sandbox_slot_t *slot)
{
  pthread_mutex_lock (&pool->lock);
  if (pool->stopping || pool->n_ready >= pool->size)
    {
      pthread_mutex_unlock (&pool->lock);
      slot_destroy (pool, slot);
      return;
    }
  slot->next = pool->ready;
  pool->ready = slot;
  pool->n_ready++;
  pthread_mutex_unlock (&pool->lock);
}

int
nex_sandbox_pool_claim (nex_sandbox_pool_t *pool, nex_sandbox_slot_t *slot, const char *id, const char *run_dir_of_id,
                        const char *artifact_path, const char *hostname, const nex_cgroup_limits_t *l,
                        nex_instance_t *out, nex_error_t *err)
{
  /* The cgroup first, then the run dir: a crash between the two leaves a run dir under warm/ (swept at the next
   * start) and processes in the workload's cgroup (removed by recovery, the workload never having recorded a
   * pid); see ARCHITECTURE.md, "Warm sandboxes". */
  int r = nex_cgroups_rename (pool->cg, slot->name, id, l, err);
  if (r == 0 && rename (slot->inst.run_dir, run_dir_of_id) < 0)
    r = nex_error_sys (err, errno, "rename `%s` to `%s`", slot->inst.run_dir, run_dir_of_id);
  else if (r == 0)
    {
      free (slot->inst.run_dir);
      slot->inst.run_dir = nex_xstrdup (run_dir_of_id);
      free (slot->inst.endpoint);
      slot->inst.endpoint = nex_xasprintf ("%s/agent.sock", run_dir_of_id);
      r = nex_sandbox_fill (slot->inst.pid, artifact_path, hostname, err);
    }
  if (r < 0)
    {
      end_sandbox (&slot->inst);
      nex_cgroups_destroy (pool->cg, slot->name, NULL);
      nex_cgroups_destroy (pool->cg, id, NULL);
      free (slot);
      return nex_error_wrap (err, "warm sandbox");
    }
  *out = slot->inst;
  free (slot);
  return 0;
}

void
nex_sandbox_pool_refill (nex_sandbox_pool_t *pool)
{
  pthread_mutex_lock (&pool->lock);
  pool->refills++;
  pthread_cond_signal (&pool->wake);
  pthread_mutex_unlock (&pool->lock);
}

int
nex_sandbox_pool_ready (nex_sandbox_pool_t *pool)
{
  pthread_mutex_lock (&pool->lock);
  int n = pool->n_ready;
  pthread_mutex_unlock (&pool->lock);
  return n;
}

int
nex_sandbox_pool_size (const nex_sandbox_pool_t *pool)
{
  return pool->size;
}
