/* SPDX-License-Identifier: Apache-2.0 */
/* sandbox-pool.h — warm sandboxes: namespace sandboxes made ahead, each with its cgroup, tmpfs root and agent
 * waiting for a workload, so that a deploy that fits starts without building one (`--warm-sandboxes N`).
 *
 * A pooled sandbox is an ordinary sandbox (sandbox.c, nex_launch_t.warm) whose /workload is still an empty file,
 * made by the pool's own thread in data/run/warm/<uuid> with a cgroup nex/<uuid> that has no limits yet.  It is
 * not a workload: no registry row, never listed.  A deploy that fits (nex_sandbox_pool_fits) takes one
 * (nex_sandbox_pool_take) and claims it (nex_sandbox_pool_claim): the run dir and the cgroup are renamed after
 * the workload, the cgroup gets the workload's limits, the executable is bound on /workload and the host name
 * set from outside (nex_sandbox_fill), and from then on it is the workload's sandbox exactly as a cold one
 * would be (same paths, same cgroup name, same agent, which answers HELLO {state: idle} and waits for START).
 * The pool's thread makes a new one in the background (niced) once the deploy that took one has its workload
 * running (nex_sandbox_pool_refill), so that it does not compete with that deploy for a small host's CPUs.
 *
 * No leak: nex_sandbox_pool_sweep (node start, before recovery) kills what data/run/warm names through its
 * cgroups and removes it, so a kill -9 of nexd leaves nothing pooled behind after the next start;
 * nex_sandbox_pool_stop (shutdown) destroys every pooled sandbox.
 *
 * Threads: the pool's thread makes sandboxes; take, give_back and stop may be called from any thread (the
 * supervisor's, in practice), claim from the thread that took the slot. */
#ifndef NEX_SANDBOX_POOL_H
#define NEX_SANDBOX_POOL_H

#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "server/drivers/cgroup.h"
#include "server/drivers/driver.h"
#include "server/workload.h"

typedef struct nex_sandbox_pool nex_sandbox_pool_t;
typedef struct nex_sandbox_slot nex_sandbox_slot_t;

/* The /tmp size (MiB) of every pooled sandbox: a workload asking for another disk_mb goes cold. */
#define NEX_SANDBOX_POOL_TMP_MB NEX_RESOURCES_DEFAULT_DISK_MB

/* Kills and removes every pooled sandbox that RUN_DIR/warm names (their processes through their cgroups in CG,
 * which may be NULL), left by an earlier nexd.  Before the node starts any sandbox. */
void nex_sandbox_pool_sweep (const char *run_dir, nex_cgroups_t *cg);

/* Starts a pool of SIZE (>= 1) sandboxes made in RUN_DIR/warm with AGENT_PATH as their PID 1 and cgroups in CG
 * (which must outlive the pool); its thread begins filling it at once.  NULL with *ERR when the thread cannot
 * start. */
nex_sandbox_pool_t *nex_sandbox_pool_start (const char *run_dir, const char *agent_path, nex_cgroups_t *cg, int size,
                                            nex_error_t *err);

/* Destroys every pooled sandbox (SIGKILL, reaped, cgroup and run dir removed), stops the thread and frees POOL.
 * Slots taken and not yet claimed or given back must be none.  Safe on NULL. */
void nex_sandbox_pool_stop (nex_sandbox_pool_t *pool);

/* Whether workload W can start in a pooled sandbox: an executable (not an image), driver `sandbox`, network
 * `none`, /tmp of the pool's size.  Its memory, pids and vcpus limits are set when it claims one. */
int nex_sandbox_pool_fits (const nex_workload_t *w);

/* A ready sandbox taken out of POOL (the caller must claim or give it back), or NULL when none is ready.  Never
 * waits for a sandbox to be made; the pool makes another after nex_sandbox_pool_refill (or a short while). */
nex_sandbox_slot_t *nex_sandbox_pool_take (nex_sandbox_pool_t *pool);

/* Puts SLOT, taken and not claimed, back into POOL. */
void nex_sandbox_pool_give_back (nex_sandbox_pool_t *pool, nex_sandbox_slot_t *slot);

/* Makes SLOT (taken, and freed here whatever happens) workload ID's sandbox: renames its run dir to
 * RUN_DIR_OF_ID (the cold path's run dir of ID) and its cgroup to ID with limits L, binds ARTIFACT_PATH on its
 * /workload and sets HOSTNAME.  Fills OUT (pid, endpoint, run_dir) as nex_driver_start would.  On failure the
 * sandbox is destroyed (nothing of it is left, under either name) and *ERR says why. */
int nex_sandbox_pool_claim (nex_sandbox_pool_t *pool, nex_sandbox_slot_t *slot, const char *id,
                            const char *run_dir_of_id, const char *artifact_path, const char *hostname,
                            const nex_cgroup_limits_t *l, nex_instance_t *out, nex_error_t *err);

/* Lets POOL make good one take now: called once the deploy that took a sandbox has its workload running, so that
 * making the next one does not compete with it for the CPU.  A take not followed by this is made good a short
 * while later all the same.  Any thread. */
void nex_sandbox_pool_refill (nex_sandbox_pool_t *pool);

/* How many sandboxes are ready now, and the size the pool keeps.  Any thread. */
int nex_sandbox_pool_ready (nex_sandbox_pool_t *pool);
int nex_sandbox_pool_size (const nex_sandbox_pool_t *pool);

/* Binds the executable ARTIFACT_PATH read-only on /workload inside the running sandbox whose root process is PID
 * (one made with nex_launch_t.warm), and sets the sandbox's host name to HOSTNAME.  From the host: a detached
 * copy of the file's mount (open_tree) moved into the sandbox's mount namespace by a short-lived helper that
 * joins it (setns), and then its UTS namespace.  0 or -1.  sandbox-fill.c. */
int nex_sandbox_fill (pid_t pid, const char *artifact_path, const char *hostname, nex_error_t *err);

#endif
