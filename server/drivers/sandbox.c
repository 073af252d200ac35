/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/sandbox.c — the namespace sandbox: the default driver, for any Linux host.
 *
 * A workload's sandbox is a process tree in fresh user, pid, mount, uts, ipc and network namespaces whose root
 * is a private tmpfs holding only what the workload needs:
 *
 *     /workload         the verified executable (read-only bind of the artifact cache entry)
 *     /sbin/nex-agent   the agent, PID 1 of the sandbox (read-only bind)
 *     /proc             a proc mount of the sandbox's own pid namespace
 *     /dev              null, zero, full, random, urandom (binds of the host's nodes); pts, a devpts instance of
 *                       the sandbox's own (TTY exec sessions), and ptmx, a link to its multiplexer
 *     /tmp              a small writable tmpfs
 *
 * The root itself is read-only.  An image workload's root is instead an overlay: the image's flattened tree
 * (shared by every workload of the image, never written) below, a writable upper layer of its own in a tmpfs
 * sized by disk_mb above, with /dev (a small tmpfs), /proc, /tmp and the agent (at /.nex-agent) mounted on the
 * mount points the image store made in the tree (where the kernel refuses that overlay in a user namespace, a
 * private copy of the tree that nexd made in the run dir is bound there instead: image-root.h; a probe sandbox at
 * start, nex_sandbox_probe_overlay, finds out).  Nothing of the host's filesystem is reachable: the old root is
 * detached after pivot_root.  Inside, uid/gid 0 map to an unprivileged host range (NEX_SANDBOX_UID_BASE...), so a
 * workload that escapes its namespaces is nobody on the host.  The network namespace has only loopback, brought up
 * here.
 *
 * nexd creates the agent's listening socket in the workload's run dir on the host (outside the sandbox root, so
 * the workload cannot reach it) and passes it as fd 3; nexd dials that path, now and after a restart.
 *
 * Start-up is a fork-like clone() from the supervisor thread.  The child runs only system calls on data
 * prepared by the parent (no allocation), reports a failure as one text message on an error pipe and exits;
 * a successful execve closes that pipe (CLOEXEC), which is how the parent learns the sandbox is up. */
#include "server/drivers/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/layer.h"
#include "server/drivers/image-root.h"

#define CHILD_STACK_SIZE (256 * 1024)

static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom" };
#define N_DEV_NODES (sizeof dev_nodes / sizeof dev_nodes[0])

/* Everything the child needs, computed by the parent before clone(). */
typedef struct sandbox_child
{
  const char *root;     /* mount point of the new root (run_dir/root) */
  const char *artifact; /* host path of the executable */
  const char *agent;    /* host path of nex-agent */
  const char *hostname;
  unsigned long artifact_flags; /* mount flags the artifact's filesystem imposes (kept on remount) */
  unsigned long agent_flags;
  int sync_fd;            /* read end: the parent has written the id maps */
  int error_fd;           /* write end: failure message */
  int listen_fd;          /* the agent's listening socket */
  int log_fd;             /* the agent's stdout/stderr (run_dir/agent.log) */
  char tmp_opts[64];      /* mount options of /tmp (its size) */
  int host_network;       /* no network namespace of its own */
  const char *image;      /* an image's tree (NULL: an executable workload) */
  const char *copy;       /* image: its private copy, bound as the root instead of the overlay (image-root.h) */
  int probe;              /* the overlay probe: end once the image root is built (nex_sandbox_probe_overlay) */
  char upper_opts[64];    /* image: mount options of the tmpfs holding the writable layer (its size) */
  const char *etc_hosts;  /* network bridge: files to bind read-only at /etc/hosts and /etc/resolv.conf, */
  const char *etc_resolv; /* written by the place callback (server/net/etc.c); NULL otherwise */
} sandbox_child_t;

static void __attribute__ ((noreturn)) child_fail (const sandbox_child_t *c, const char *what)
{
  char msg[512];
  int n = snprintf (msg, sizeof msg, "%s: %s", what, strerror (errno));
  if (n > 0)
    (void)!write (c->error_fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  _exit (1);
}

/* Read-only bind mount of SRC on DST.  A remount inside a user namespace must keep the flags the source mount
 * is locked with (nosuid, noexec, atime flags), or the kernel refuses it: FLAGS carries them. */
static int
bind_ro (const char *src, const char *dst, unsigned long flags)
{
  if (mount (src, dst, NULL, MS_BIND, NULL) < 0)
    return -1;
  return mount (NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | flags, NULL);
}

static int
touch (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
  if (fd < 0)
    return -1;
  close (fd);
  return 0;
}

/* Binds the host file at fd FD read-only at DST (created) in the new root. */
static int
bind_etc_file (int fd, const char *dst)
{
  char src[64];
  snprintf (src, sizeof src, "/proc/self/fd/%d", fd);
  if ((mkdir ("etc", 0755) < 0 && errno != EEXIST) || (touch (dst) < 0 && errno != EEXIST))
    return -1;
  return bind_ro (src, dst, 0);
}

static int
loopback_up (void)
{
  int s = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return -1;
  struct ifreq ifr;
  memset (&ifr, 0, sizeof ifr);
  strcpy (ifr.ifr_name, "lo");
  int r = ioctl (s, SIOCGIFFLAGS, &ifr);
  if (r == 0)
    {
      ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
      r = ioctl (s, SIOCSIFFLAGS, &ifr);
    }
  close (s);
  return r;
}

/* /dev in the new root (the current directory): the host's harmless nodes, and a devpts of the sandbox's own. */
static void
populate_dev (const sandbox_child_t *c)
{
  char src[64];
  for (size_t i = 0; i < N_DEV_NODES; i++)
    {
      char dst[32];
      snprintf (src, sizeof src, "/dev/%s", dev_nodes[i]);
      snprintf (dst, sizeof dst, "dev/%s", dev_nodes[i]);
      /* Device nodes cannot be created in a user namespace; binding the host's harmless ones is the only way
       * (and all a static workload needs). */
      if (touch (dst) < 0 || mount (src, dst, NULL, MS_BIND, NULL) < 0)
        child_fail (c, "bind device node");
    }
  /* A devpts of its own (a new instance: the host's terminals are not in it), so that the agent can give TTY exec
   * sessions a terminal.  ptmxmode makes the multiplexer usable by the sandbox's root, which owns the instance. */
  if (mkdir ("dev/pts", 0755) < 0 || symlink ("pts/ptmx", "dev/ptmx") < 0)
    child_fail (c, "populate /dev");
  if (mount ("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
    child_fail (c, "mount devpts");
}

/* An executable workload's root: the tmpfs at c->root (the current directory) with /workload, the agent and the
 * mount points; read-only once pivoted. */
static void
build_elf_root (const sandbox_child_t *c, int artifact_fd, int agent_fd)
{
  if (mkdir ("sbin", 0755) < 0 || mkdir ("proc", 0555) < 0 || mkdir ("dev", 0755) < 0 || mkdir ("tmp", 01777) < 0)
    child_fail (c, "populate root");
  if (touch ("workload") < 0 || touch ("sbin/nex-agent") < 0)
    child_fail (c, "populate root");
  char src[64];
  snprintf (src, sizeof src, "/proc/self/fd/%d", artifact_fd);
  if (bind_ro (src, "workload", c->artifact_flags) < 0)
    child_fail (c, "bind workload");
  snprintf (src, sizeof src, "/proc/self/fd/%d", agent_fd);
  if (bind_ro (src, "sbin/nex-agent", c->agent_flags) < 0)
    child_fail (c, "bind agent");
  populate_dev (c);
}

/* An image workload's root: an overlay whose lower layer is the image's shared tree (read-only, never written)
 * and whose upper layer lives in the tmpfs at c->root (sized by disk_mb), so that each workload writes only its
 * own copy.  The overlay is mounted by the sandbox's root in its user namespace (`userxattr`: overlay's own
 * metadata in user.* xattrs).  The tree's mount points (/dev, /proc, /tmp, /.nex-agent) were made by the store
 * and are directories and a file of its own, never the image's symlinks (layer.h), so the mounts below land
 * inside the root.  Leaves the current directory at the overlay. */
static void
build_image_root (const sandbox_child_t *c, int tree_fd, int agent_fd)
{
  if (mkdir ("upper", 0755) < 0 || mkdir ("work", 0755) < 0 || mkdir ("merged", 0755) < 0)
    child_fail (c, "prepare the image root");
  char opts[128];
  int r;
  if (c->copy)
    {
      /* A private copy (the kernel refuses the overlay here) is the workload's own: bound as it is, writable. */
      snprintf (opts, sizeof opts, "/proc/self/fd/%d", tree_fd);
      r = mount (opts, "merged", NULL, MS_BIND, NULL);
    }
  else
    {
      snprintf (opts, sizeof opts, "lowerdir=/proc/self/fd/%d,upperdir=upper,workdir=work,userxattr", tree_fd);
      r = mount ("nex-image", "merged", "overlay", MS_NOSUID | MS_NODEV, opts);
    }
  if (r < 0)
    child_fail (c, c->copy ? "bind the image's private copy" : "mount the image overlay");
  if (chdir ("merged") < 0)
    child_fail (c, "chdir image root");
  char src[64];
  snprintf (src, sizeof src, "/proc/self/fd/%d", agent_fd);
  if (bind_ro (src, ".nex-agent", c->agent_flags) < 0)
    child_fail (c, "bind agent");
  if (mount ("nex-dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
    child_fail (c, "mount /dev");
  populate_dev (c);
}

static int
sandbox_child (void *arg)
{
  sandbox_child_t *c = arg;
  char go;

  /* A session of its own: a signal to nexd's process group (Ctrl-C on the terminal that started nexd, a service
   * manager signalling the group) must not reach the agent, which would stop the workload on SIGINT/SIGTERM.
   * Workloads outlive nexd on purpose; only nexd's own commands end them. */
  setsid ();

  /* Keep the error pipe clear of the low fds that are about to be rearranged for the agent. */
  int high = fcntl (c->error_fd, F_DUPFD_CLOEXEC, 64);
  if (high < 0)
    _exit (1);
  c->error_fd = high;

  /* Wait until the parent has mapped our ids; before that we are nobody in our own user namespace. */
  if (read (c->sync_fd, &go, 1) != 1)
    child_fail (c, "waiting for id maps");

  /* Our mounts must not propagate back to the host. */
  if (mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    child_fail (c, "make / private");
  /* Until the switch to the sandbox's root below, file access is still checked as host uid 0, which owns the
   * data directory (mode 0700): reach the run dir and pin the executables (or the image tree) now, by
   * descriptor. */
  if (mount ("nex-root", c->root, "tmpfs", MS_NOSUID | MS_NODEV,
             c->image ? c->upper_opts : "mode=0755,uid=0,gid=0,size=1m")
      < 0)
    child_fail (c, "mount root tmpfs");
  int payload_fd = open (c->copy ? c->copy : c->image ? c->image : c->artifact, O_PATH | O_CLOEXEC);
  int agent_fd = open (c->agent, O_PATH | O_CLOEXEC);
  if (payload_fd < 0 || agent_fd < 0)
    child_fail (c, c->image ? "open image tree or agent" : "open workload or agent");
  int hosts_fd = c->etc_hosts ? open (c->etc_hosts, O_PATH | O_CLOEXEC) : -1;
  int resolv_fd = c->etc_resolv ? open (c->etc_resolv, O_PATH | O_CLOEXEC) : -1;
  if (c->etc_hosts && (hosts_fd < 0 || resolv_fd < 0))
    child_fail (c, "open the network's /etc files");
  if (chdir (c->root) < 0)
    child_fail (c, "chdir root");

  /* Become the sandbox's root (host uid NEX_SANDBOX_UID_BASE): files created from here on are owned by it.  Raw
   * system calls, not glibc's wrappers: those apply the change to every thread of the process, which in this
   * child made by clone(2) from a threaded nexd means the parent's threads as glibc's copied list names them, and
   * can wait forever for one that was being created at the moment of the clone (seen: a sandbox stuck in
   * setxid_mark_thread, its workload `starting` for good). */
  if (syscall (SYS_setresgid, 0, 0, 0) < 0 || syscall (SYS_setresuid, 0, 0, 0) < 0)
    child_fail (c, "setresuid");
  if (syscall (SYS_setgroups, 0, NULL) < 0)
    child_fail (c, "setgroups");

  if (c->image)
    build_image_root (c, payload_fd, agent_fd);
  else
    build_elf_root (c, payload_fd, agent_fd);
  if (c->probe)
    _exit (0); /* the image root could be built: that is all the probe asks */
  if (mount ("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    child_fail (c, "mount proc");
  if (mount ("nex-tmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, c->tmp_opts) < 0)
    child_fail (c, "mount tmp");
  if (hosts_fd >= 0 && (bind_etc_file (hosts_fd, "etc/hosts") < 0 || bind_etc_file (resolv_fd, "etc/resolv.conf") < 0))
    child_fail (c, "bind /etc files");

  /* Swap roots and detach the host's: after this no path leads outside the sandbox. */
  if (syscall (SYS_pivot_root, ".", ".") < 0)
    child_fail (c, "pivot_root");
  if (umount2 (".", MNT_DETACH) < 0)
    child_fail (c, "detach old root");
  if (chdir ("/") < 0)
    child_fail (c, "chdir /");
  /* A read-only root for an executable: the workload can write only to /tmp.  An image's root is its overlay,
   * whose writes go to the workload's own upper layer. */
  if (!c->image && mount (NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    child_fail (c, "remount root read-only");

  if (sethostname (c->hostname, strlen (c->hostname)) < 0)
    child_fail (c, "sethostname");
  if (!c->host_network && loopback_up () < 0)
    child_fail (c, "bring up loopback");

  /* fd 0: /dev/null; 1, 2: the agent's log on the host; 3: the listening socket.  Nothing else survives. */
  int null = open ("/dev/null", O_RDWR);
  if (null < 0 || dup2 (null, 0) < 0 || dup2 (c->log_fd, 1) < 0 || dup2 (c->log_fd, 2) < 0 || dup2 (c->listen_fd, 3) < 0
      || fcntl (3, F_SETFD, 0) < 0)
    child_fail (c, "set up agent fds");
  /* Every descriptor nexd had (one or two per live sandbox: thousands with many workloads) is closed, not only
   * the low ones; the error pipe stays (CLOEXEC: execve closes it, and that EOF tells the parent we made it). */
  if (close_range (4, (unsigned)c->error_fd - 1, 0) < 0 || close_range ((unsigned)c->error_fd + 1, ~0u, 0) < 0)
    for (int fd = 4; fd < 65536; fd++) /* kernels before 5.9 */
      if (fd != c->error_fd)
        close (fd);

  sigset_t none;
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  const char *agent = c->image ? "/.nex-agent" : "/sbin/nex-agent";
  char *const argv[] = { (char *)"nex-agent", (char *)"--listen-fd", (char *)"3", NULL };
  char *const envp[] = { (char *)"PATH=/sbin", NULL };
  execve (agent, argv, envp);
  child_fail (c, "exec the agent");
}

static int
write_file (const char *path, const char *text, nex_error_t *err)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "open `%s`", path);
  return nex_fd_write_all (fd, text, strlen (text), err);
}

static unsigned long
locked_mount_flags (const char *path)
{
  struct statvfs sv;
  unsigned long f = 0;
  if (statvfs (path, &sv) < 0)
    return 0;
  if (sv.f_flag & ST_NOEXEC)
    f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME)
    f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME)
    f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME)
    f |= MS_RELATIME;
  return f;
}

static int
sandbox_probe (const nex_driver_t *d, char **reason)
{
  if (geteuid () != 0)
    {
      *reason = nex_xstrdup ("nexd is not running as root (needed to map ids into user namespaces)");
      return 0;
    }
  if (access ("/proc/self/ns/user", F_OK) < 0 || access ("/proc/self/ns/pid", F_OK) < 0)
    {
      *reason = nex_xstrdup ("the kernel lacks user or pid namespaces");
      return 0;
    }
  return 1;
}

static const char *const run_files[]
    = { "agent.sock", "agent.log", "root", "etc/hosts", "etc/resolv.conf", "etc", NULL };

/* Removes the private copy of a start that failed (armed), when the guard goes out of scope. */
typedef struct copy_guard
{
  const char *run_dir;
  int armed;
} copy_guard_t;

static void
copy_guard_release (copy_guard_t *g)
{
  if (g->armed)
    nex_image_root_remove_copy (g->run_dir);
}

/* Starts L's sandbox (PROBE: the overlay probe's, which ends once its image root is built). */
static int
sandbox_launch (const nex_launch_t *l, int probe, nex_instance_t *out, nex_error_t *err)
{
  sandbox_child_t c = { 0 };
  cleanup_free char *stack = NULL;
  cleanup_free char *map = NULL;
  cleanup_free char *uid_map = NULL;
  cleanup_free char *gid_map = NULL;
  cleanup_free char *oom_adj = NULL;
  cleanup_free char *root = nex_xasprintf ("%s/root", l->run_dir);
  cleanup_free char *sock = nex_xasprintf ("%s/agent.sock", l->run_dir);
  cleanup_free char *log = nex_xasprintf ("%s/agent.log", l->run_dir);
  if (nex_mkdir_p (root, 0700, err) < 0)
    return -1;

  cleanup_close int listen_fd = nex_driver_listen_unix (sock, err);
  if (listen_fd < 0)
    return -1;
  cleanup_close int log_fd = open (log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  cleanup_pipe int sync_pipe[2] = { -1, -1 };
  cleanup_pipe int error_pipe[2] = { -1, -1 };
  if (log_fd < 0 || pipe2 (sync_pipe, O_CLOEXEC) < 0 || pipe2 (error_pipe, O_CLOEXEC) < 0)
    return nex_error_sys (err, errno, "sandbox set-up");

  c.root = root;
  c.artifact = l->artifact_path;
  c.agent = l->agent_path;
  c.hostname = l->hostname;
  c.image = l->image_tree;
  c.probe = probe;
  cleanup_free char *copy = NULL;
  if (l->image_tree && !probe && !nex_image_root_overlay (NULL))
    {
      copy = nex_xasprintf ("%s/%s", l->run_dir, NEX_IMAGE_ROOT_COPY_DIR);
      if (nex_image_root_copy (l->image_tree, copy, err) < 0)
        return -1;
    }
  cleanup_with (copy_guard_release) copy_guard_t guard = { .run_dir = l->run_dir, .armed = copy != NULL };
  c.copy = copy;
  c.artifact_flags = l->artifact_path ? locked_mount_flags (l->artifact_path) : 0;
  c.agent_flags = locked_mount_flags (l->agent_path);
  c.sync_fd = sync_pipe[0];
  c.error_fd = error_pipe[1];
  c.listen_fd = listen_fd;
  c.log_fd = log_fd;
  c.host_network = l->host_network;
  cleanup_free char *etc_hosts = l->net_etc_dir ? nex_xasprintf ("%s/hosts", l->net_etc_dir) : NULL;
  cleanup_free char *etc_resolv = l->net_etc_dir ? nex_xasprintf ("%s/resolv.conf", l->net_etc_dir) : NULL;
  c.etc_hosts = etc_hosts;
  c.etc_resolv = etc_resolv;
  snprintf (c.tmp_opts, sizeof c.tmp_opts, "mode=1777,size=%lldm", (long long)(l->tmp_mb > 0 ? l->tmp_mb : 64));
  snprintf (c.upper_opts, sizeof c.upper_opts, "mode=0755,uid=0,gid=0,size=%lldm",
            (long long)(l->tmp_mb > 0 ? l->tmp_mb : 64));

  stack = nex_xmalloc (CHILD_STACK_SIZE);
  /* network "host" keeps the host's network namespace: the workload reaches what the host reaches (and the
   * host's abstract unix sockets, which live in the network namespace); it still cannot reconfigure it, as its
   * capabilities belong to its own user namespace, which does not own the host's network namespace. */
  int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  if (!l->host_network)
    flags |= CLONE_NEWNET;
  /* Until it is handed to OUT, a failure SIGKILLs and reaps the child (cleanup_pid). */
  cleanup_pid pid_t pid = clone (sandbox_child, stack + CHILD_STACK_SIZE, flags, &c);
  if (pid < 0)
    return nex_error_sys (err, errno, "clone sandbox");
  close (NEX_STEAL_FD (sync_pipe[0]));
  close (NEX_STEAL_FD (error_pipe[1]));

  /* Map the sandbox's ids 0..65535 to an unprivileged host range, then let the child go on. */
  map = nex_xasprintf ("0 %d %d\n", NEX_SANDBOX_UID_BASE, NEX_SANDBOX_ID_COUNT);
  uid_map = nex_xasprintf ("/proc/%d/uid_map", (int)pid);
  gid_map = nex_xasprintf ("/proc/%d/gid_map", (int)pid);
  /* The agent is PID 1: if the OOM killer chose it, the sandbox would die with the workload's exit status
   * unreported.  The agent raises every process it starts to the maximum score (which needs no privilege); where
   * nexd holds CAP_SYS_RESOURCE it also exempts the agent outright (best effort: container hosts often drop
   * that capability, and the raised scores suffice). */
  oom_adj = nex_xasprintf ("/proc/%d/oom_score_adj", (int)pid);
  write_file (oom_adj, "-1000", NULL);
  if (write_file (uid_map, map, err) < 0 || write_file (gid_map, map, err) < 0
      || (l->place && l->place (l->place_ctx, pid, err) < 0) || nex_fd_write_all (sync_pipe[1], "g", 1, err) < 0)
    return nex_error_wrap (err, "prepare the sandbox");
  close (NEX_STEAL_FD (sync_pipe[1]));

  /* EOF: the agent was executed.  Bytes: the child's failure message. */
  char msg[512];
  ssize_t n;
  do
    n = read (error_pipe[0], msg, sizeof msg - 1);
  while (n < 0 && errno == EINTR);
  if (n != 0)
    {
      msg[n > 0 ? n : 0] = '\0';
      return nex_error_set (err, NEX_ERR_SYSTEM, "sandbox set-up failed: %s", n > 0 ? msg : "no report");
    }

  out->pid = NEX_STEAL_PID (pid);
  out->endpoint = NEX_STEAL_PTR (sock);
  guard.armed = 0;
  return 0;
}

static int
sandbox_start (const nex_driver_t *d, const nex_launch_t *l, nex_instance_t *out, nex_error_t *err)
{
  return sandbox_launch (l, 0, out, err);
}

/* The run dir goes, with an image workload's private copy in it. */
static int
sandbox_destroy (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  if (i->run_dir)
    {
      nex_image_root_remove_copy (i->run_dir);
      nex_driver_remove_run_dir (d, i->run_dir);
    }
  return 0;
}

/* Makes the probe's tree in DIR: the mount points the sandbox needs, owned by the sandbox's root. */
static int
probe_tree (const char *dir, const char *tree, nex_error_t *err)
{
  static const char *const dirs[] = { "", "/dev", "/proc", "/tmp" };
  if (mkdir (dir, 0700) < 0)
    return nex_error_sys (err, errno, "mkdir `%s`", dir);
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    {
      cleanup_free char *p = nex_xasprintf ("%s%s", tree, dirs[i]);
      if (mkdir (p, 0755) < 0 || chown (p, NEX_SANDBOX_UID_BASE, NEX_SANDBOX_UID_BASE) < 0)
        return nex_error_sys (err, errno, "mkdir `%s`", p);
    }
  cleanup_free char *agent = nex_xasprintf ("%s/.nex-agent", tree);
  if (touch (agent) < 0 || chown (agent, NEX_SANDBOX_UID_BASE, NEX_SANDBOX_UID_BASE) < 0)
    return nex_error_sys (err, errno, "create `%s`", agent);
  return 0;
}

int
nex_sandbox_probe_overlay (const char *run_dir, const char *agent_path, char **reason)
{
  static const char name[] = ".overlay-probe";
  cleanup_close int run_fd = open (run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  nex_layer_remove_tree (run_fd, name); /* a probe's leftovers, from a crash */
  cleanup_free char *dir = nex_xasprintf ("%s/%s", run_dir, name);
  cleanup_free char *tree = nex_xasprintf ("%s/tree", dir);
  cleanup_error nex_error_t err = NULL;
  nex_launch_t l = { .workload_id = name,
                     .hostname = "overlay-probe",
                     .image_tree = tree,
                     .agent_path = agent_path,
                     .run_dir = dir,
                     .tmp_mb = 1 };
  cleanup_with (nex_instance_release) nex_instance_t inst = { 0 };
  int ok = 0;
  if (run_fd >= 0 && probe_tree (dir, tree, &err) == 0 && sandbox_launch (&l, 1, &inst, &err) == 0)
    {
      int status = 0;
      while (waitpid (inst.pid, &status, 0) < 0 && errno == EINTR)
        ;
      ok = WIFEXITED (status) && WEXITSTATUS (status) == 0;
      if (!ok)
        nex_error_set (&err, NEX_ERR_SYSTEM, "the overlay probe ended with status %d", status);
    }
  if (!ok)
    *reason = nex_xstrdup (err ? err->msg : "the overlay probe failed");
  if (run_fd >= 0)
    nex_layer_remove_tree (run_fd, name);
  return ok;
}

const nex_driver_t nex_driver_sandbox = {
  .name = "sandbox",
  .probe = sandbox_probe,
  .start = sandbox_start,
  .destroy = sandbox_destroy,
  .run_files = run_files,
  .bridge_network = NEX_DRIVER_NET_VETH,
};
