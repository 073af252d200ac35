/* SPDX-License-Identifier: Apache-2.0 */
/* driver.h — the seam between the supervisor and the ways Nex can isolate a workload.
 *
 * A driver builds an isolated environment (a namespace sandbox, a microVM) whose PID 1 is nex-agent, and gives
 * the supervisor two things: a process to watch (the agent, or the VM monitor) and an endpoint to dial for the
 * wire protocol.  Everything that is the same for every driver — starting the workload, logs, stop with a grace
 * period, exit status, later exec and stats — goes over the wire protocol to the agent and is not a driver
 * operation.  Driver operations are only what differs per isolation technology.
 *
 * Drivers are stateless singletons; everything about one workload's environment lives in nex_instance_t, which
 * the supervisor persists (pid, endpoint) so that a restarted nexd can find it again.
 *
 * Callers go through the nex_driver_* functions below, never the table's pointers: what most drivers do alike
 * (dial the endpoint, SIGKILL the root process, remove the run dir) is the default of a NULL hook, in driver.c. */
#ifndef NEX_DRIVER_H
#define NEX_DRIVER_H

#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "server/workload.h"

#define NEX_SANDBOX_UID_BASE 100000 /* host uid/gid of a sandbox's root (image trees are owned in this range) */
#define NEX_SANDBOX_ID_COUNT 65536  /* ids mapped into each sandbox */

/* What a driver needs to launch one workload's environment. */
typedef struct nex_launch
{
  const char *workload_id;   /* UUID */
  const char *hostname;      /* host name inside the environment (the workload's name) */
  const char *artifact_path; /* verified executable in the artifact cache; appears as /workload (NULL: image) */
  const char *image_tree;    /* an image's flattened tree (artifacts/image-store.h): the root, read-only, with a
                                writable layer of tmp_mb on top; NULL for an executable workload */
  const char *agent_path;    /* static nex-agent binary; appears as /sbin/nex-agent and runs as PID 1 */
  const char *run_dir;     /* the directory this environment may use (nex_driver_start makes it; destroy removes it) */
  int64_t tmp_mb;          /* size of the writable /tmp in MiB (0: the driver's default) */
  int host_network;        /* share the host's network namespace instead of a private one with loopback only */
  const char *net_etc_dir; /* network bridge: a directory whose hosts and resolv.conf appear in /etc (read-only);
                              written by place, before the environment runs anything.  NULL otherwise */
  const char *net_guest;   /* network bridge in a VM: the value of nex.net= for the guest's agent (rootfs/layout.h),
                              and then net_tap_fd is the tap to hand the VMM (the caller keeps and closes it);
                              NULL otherwise */
  int net_tap_fd;
  const char *net_ifname; /* ... and the tap's name (NEX_DRIVER_NET_NAMED_TAP: the VMM opens it by that name) */
  /* Called by start with the host pid of the environment's root process after it exists but before it runs
   * anything of its own (the sandbox's child waits on its sync pipe), so that whatever PLACE does (the
   * supervisor joins it to the workload's cgroup) holds for every process the environment will ever have.  A
   * failure aborts the start.  May be NULL. */
  int (*place) (void *ctx, pid_t pid, nex_error_t *err);
  void *place_ctx;
  int warm; /* sandbox only: made ahead for the warm pool (sandbox-pool.h), with artifact_path and image_tree NULL:
               /workload stays an empty file until nex_sandbox_fill binds the executable on it */
  const char *digest;             /* SHA-256 of the artifact (64 hex digits): names cached VM images */
  const nex_workload_t *workload; /* the whole record, for what only some drivers use (a VM's size) */
  const char *snapshot_path;      /* restore the environment from this file (the driver's snapshot op wrote it,
                                     of a VM launched alike) instead of booting; NULL: boot.  The restored agent
                                     runs the workload already: the supervisor greets it (stream_endpoint) */
} nex_launch_t;

/* One launched environment.  Owned by the supervisor; released with nex_instance_release. */
typedef struct nex_instance
{
  pid_t pid;      /* host pid of the environment's root process (sandbox: nex-agent itself) */
  char *endpoint; /* unix socket path nexd dials to reach the agent */
  char *run_dir;  /* the launch's run_dir */
  /* Set by start, not persisted (a re-adopted environment has booted long ago): */
  int64_t boot_ms;   /* how long the agent may take to greet; 0: the supervisor's default */
  int may_fall_back; /* started on a path this host may turn out not to support (a VM under KVM in vm_accel
                        auto): an end before the agent greets goes to the driver's fall_back op first */
} nex_instance_t;

typedef struct nex_driver nex_driver_t;

#define NEX_DRIVER_NET_VETH 1      /* nex_driver_t.bridge_network */
#define NEX_DRIVER_NET_TAP 2       /* a tap handed to the VMM as net_tap_fd */
#define NEX_DRIVER_NET_NAMED_TAP 3 /* a persistent tap the VMM opens by its name, net_ifname */

struct nex_driver
{
  const char *name; /* "sandbox", "qemu", "firecracker" */

  /* Whether this driver can run workloads on this host: 1, or 0 with *REASON (caller frees) saying why not.
   * Cheap; called for every node-info request, from any thread. */
  int (*probe) (const nex_driver_t *d, char **reason);

  /* Builds and starts the environment described by L in L->run_dir (which nex_driver_start has created); fills
   * OUT's pid and endpoint.  On failure it ends what it started; nex_driver_start then removes the run dir. */
  int (*start) (const nex_driver_t *d, const nex_launch_t *l, nex_instance_t *out, nex_error_t *err);

  /* The entries start may leave in the run dir (files, sockets, or empty directories), NULL-terminated: what the
   * default destroy (and a failed start) removes before the run dir itself. */
  const char *const *run_files;

  /* --- optional: NULL or 0 in drivers that have no use for them; a NULL hook means the default below ------- */

  /* Dials the agent of I; returns a connected, blocking stream fd (CLOEXEC).  NULL: I's endpoint is the unix
   * socket on which the agent accepts (nex_driver_connect_unix). */
  int (*connect) (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

  /* Ends the environment at once (the agent did not stop it in time, or broke the protocol).  NULL:
   * nex_driver_kill_default. */
  int (*kill) (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

  /* Releases what the environment held on the host after it ended.  NULL: the run dir and its run_files go. */
  int (*destroy) (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

  /* The endpoint is one byte stream for the environment's whole life (a VM's console port), not a socket on
   * which the agent accepts each dial.  Such an agent greets only once, at boot: a nexd that re-attaches must
   * greet first (HELLO with a nonce) and skip whatever it joined in the middle of, up to the agent's answer. */
  int stream_endpoint;
  /* The environment's memory is its guest's size (resources.memory_mb; a microVM): the workload's cgroup then
   * holds no memory limit, which would also count the VM monitor's own memory. */
  int sized_by_guest;
  /* How this driver's environments take network bridge (nex_launch_t): NEX_DRIVER_NET_VETH (a sandbox: the veth
   * through place, net_etc_dir), NEX_DRIVER_NET_TAP (a VM: net_guest and net_tap_fd), NEX_DRIVER_NET_NAMED_TAP
   * (a VM: net_guest and net_ifname), or 0: not at all. */
  int bridge_network;

  /* Connects to the environment's console output (a VM's kernel and agent messages, stored as the `console`
   * log stream); returns a stream fd (CLOEXEC), or -1 (*ERR set) when it cannot.  NULL: there is none. */
  int (*connect_console) (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

  /* Why the environment ended when the workload's fate was not reported (e.g. "qemu exited with status 1:
   * <its last message>"), or NULL to let the supervisor say it generically.  WAIT_STATUS is valid when REAPED.
   * Called only for an instance with a run dir.  The caller frees the text.  NULL: the supervisor says it. */
  char *(*describe_end) (const nex_driver_t *d, const nex_instance_t *i, int reaped, int wait_status);

  /* For I started with may_fall_back, which ended before its agent greeted (BOOT_TIMED_OUT: the supervisor
   * killed it after boot_ms): gives up the path that failed for the whole node (a VM driver marks KVM
   * unusable), so that a new start takes another one.  Returns 1 when this end is what gave the path up, 0 when
   * it had been given up already (either way the workload is worth one more start), with *REASON (caller frees)
   * saying what failed; -1 when the end says nothing about the path (the workload fails as usual). */
  int (*fall_back) (const nex_driver_t *d, const nex_instance_t *i, int reaped, int wait_status, int boot_timed_out,
                    char **reason);

  /* The accelerator the driver's next environment gets ("kvm" or "tcg"), shown in GET /v1/node, with
   * *KVM_REASON (caller frees) saying why KVM is not used or not usable, NULL when it is. */
  const char *(*accel) (const nex_driver_t *d, char **kvm_reason);

  /* Stops (PAUSED 1) or continues (0) everything that runs in I by the VMM's own means (a VM's vCPUs), so that
   * it keeps its memory and uses no CPU.  Returns 1 when done, 0 when I has no such means (a VM from before they
   * existed: the caller freezes its cgroup instead), -1 with *ERR.  NULL: the caller freezes the cgroup. */
  int (*pause) (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err);

  /* Writes I's whole state (memory, devices, vCPUs) to the new file PATH (mode 0600), with the guest stopped
   * meanwhile and continued after unless WAS_PAUSED, so that start with snapshot_path = PATH resumes it there.
   * 0, or -1 with *ERR (PATH then removed).  NULL: the driver cannot snapshot; start refuses snapshot_path. */
  int (*snapshot) (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused, nex_error_t *err);
  /* The files beside PATH that the snapshot op also writes, as suffixes of PATH (".mem": PATH.mem), NULL-terminated;
   * a snapshot is PATH and these, sized and removed together.  NULL: PATH alone. */
  const char *const *snapshot_suffixes;
  /* The file of vm_kernel_dir the driver boots ("vmlinuz", "vmlinux"), recorded with its snapshots; NULL: none. */
  const char *kernel_file;
};

/* Pauses or continues I (see the pause op): 1 when D did it, 0 when the caller must freeze I's cgroup, -1.
 * Supervisor thread. */
int nex_driver_pause (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err);

/* Writes I's state to PATH (see the snapshot op); NEX_ERR_INVALID when D cannot.  Any thread (it may take
 * seconds: the guest's memory is written out). */
int nex_driver_snapshot (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused,
                         nex_error_t *err);

/* The bytes of D's snapshot at PATH (PATH and its snapshot_suffixes files), or -1 when PATH is missing. */
int64_t nex_driver_snapshot_size (const nex_driver_t *d, const char *path);

/* Removes D's snapshot at PATH (PATH and its snapshot_suffixes files; missing ones are no error).  0 or -1. */
int nex_driver_snapshot_remove (const nex_driver_t *d, const char *path, nex_error_t *err);

/* The driver called NAME, or NULL. */
const nex_driver_t *nex_driver_find (const char *name);

/* All compiled-in drivers, NULL-terminated. */
const nex_driver_t *const *nex_driver_all (void);

/* --- calling a driver: every caller goes through these, which apply the defaults of NULL hooks ---------------- */

/* Whether D can run workloads on this host: 1, or 0 with *REASON (caller frees) saying why not.  Any thread. */
int nex_driver_probe (const nex_driver_t *d, char **reason);

/* For I (started with may_fall_back) that ended before its agent greeted: D's fall_back op (see above), or -1
 * when D has none or I was not started so.  Supervisor thread. */
int nex_driver_fall_back (const nex_driver_t *d, const nex_instance_t *i, int reaped, int wait_status,
                          int boot_timed_out, char **reason);

/* The accelerator D's next environment gets ("kvm" or "tcg") with *KVM_REASON (caller frees; NULL when KVM is
 * used), or NULL for a driver without one (the sandbox).  Any thread. */
const char *nex_driver_accel (const nex_driver_t *d, char **kvm_reason);

/* Creates L->run_dir (mode 0700) and starts D's environment in it; fills OUT (pid, endpoint, run_dir).  On
 * failure nothing is left behind: the run dir and D's run_files in it are removed.  Supervisor thread. */
int nex_driver_start (const nex_driver_t *d, const nex_launch_t *l, nex_instance_t *out, nex_error_t *err);

/* Dials the agent of I: a connected, blocking stream fd (CLOEXEC), or -1. */
int nex_driver_connect (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

/* Ends I's environment at once; its end is then seen on its pid.  0, or -1 when the kill failed. */
int nex_driver_kill (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

/* The default kill: SIGKILL to I's pid (a pid of 0 or one already gone is no error).  That ends the whole
 * environment because its root process holds it: a sandbox's agent is PID 1 of its pid namespace (the kernel
 * kills every other process in it), a VM is its monitor's one process.  For a driver's own kill to end with. */
int nex_driver_kill_default (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

/* Releases what I's ended environment held on the host (its run dir, when I has one).  0 or -1. */
int nex_driver_destroy (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

/* Connects to I's console output: a stream fd (CLOEXEC); -1 with *ERR set when it cannot, and -1 with *ERR left
 * alone when D has no console. */
int nex_driver_connect_console (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err);

/* Why I's environment ended when its agent did not say (see describe_end), or NULL; the caller frees it. */
char *nex_driver_describe_end (const nex_driver_t *d, const nex_instance_t *i, int reaped, int wait_status);

/* A new unix stream socket (CLOEXEC) and *SA filled with PATH, for bind or connect.  The fd or -1 (a path too
 * long for sun_path is an error, never truncated). */
struct sockaddr_un;
int nex_driver_unix_socket (const char *path, struct sockaddr_un *sa, nex_error_t *err);

/* Connects to the unix stream socket PATH (the usual connect op).  Returns the fd or -1. */
int nex_driver_connect_unix (const char *path, nex_error_t *err);

/* Creates a listening unix stream socket (CLOEXEC) at PATH, replacing a stale one, with mode 0600 so that only
 * nexd's user can dial it.  Returns the fd or -1. */
int nex_driver_listen_unix (const char *path, nex_error_t *err);

/* Removes RUN_DIR: first D's run_files in it, then itself.  Best effort: what cannot go stays (a later node
 * start removes leftovers). */
void nex_driver_remove_run_dir (const nex_driver_t *d, const char *run_dir);

/* Frees what I owns and zeroes it. */
void nex_instance_release (nex_instance_t *i);

extern const nex_driver_t nex_driver_sandbox;
extern const nex_driver_t nex_driver_qemu;
extern const nex_driver_t nex_driver_firecracker;

#endif
