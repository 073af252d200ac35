/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/sandbox-fill.c — giving a warm sandbox its workload's executable and host name from outside.
 *
 * A warm sandbox (sandbox-pool.h) was built before anyone knew what it would run: its /workload is an empty file
 * on a read-only tmpfs root, its host name a placeholder.  nexd (host root) makes a detached copy of the
 * executable's mount with open_tree(OPEN_TREE_CLONE), marks it read-only, nosuid and nodev (mount_setattr), and a
 * helper — a vfork-like clone sharing nexd's memory but not its filesystem context, because setns(CLONE_NEWNS)
 * refuses a caller whose root and cwd are shared — joins the sandbox's mount namespace and moves the copy onto
 * /workload, then joins its UTS namespace and sets the host name.  The helper runs only system calls on data
 * prepared before the clone and writes what failed into that shared data.
 *
 * Why this is safe: the mount is made by host root, outside the sandbox; the sandbox's processes (only the
 * agent, waiting) cannot have changed /workload (the root is read-only and the agent touches nothing there), and
 * a workload that unmounts its own /workload finds the empty file below. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/drivers/sandbox-pool.h"

#define FILL_STACK_SIZE (64 * 1024)

/* What the helper needs and what it reports (shared memory: CLONE_VM). */
typedef struct fill_job
{
  int tree_fd; /* the detached mount of the executable */
  int mnt_fd;  /* /proc/<pid>/ns/mnt */
  int uts_fd;  /* /proc/<pid>/ns/uts */
  const char *hostname;
  const char *failed; /* what failed, NULL when all went well */
  int errnum;
} fill_job_t;

static int
fill_child (void *arg)
{
  fill_job_t *j = arg;
  if (setns (j->mnt_fd, CLONE_NEWNS) < 0)
    j->failed = "join the sandbox's mount namespace";
  else if (move_mount (j->tree_fd, "", AT_FDCWD, "/workload", MOVE_MOUNT_F_EMPTY_PATH) < 0)
    j->failed = "mount the executable on /workload";
  else if (setns (j->uts_fd, CLONE_NEWUTS) < 0)
    j->failed = "join the sandbox's UTS namespace";
  else if (sethostname (j->hostname, strlen (j->hostname)) < 0)
    j->failed = "set the host name";
  j->errnum = errno;
  _exit (j->failed ? 1 : 0);
}

static int
open_ns (pid_t pid, const char *ns, nex_error_t *err)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/ns/%s", (int)pid, ns);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "open `%s`", path);
  return fd;
}

int
nex_sandbox_fill (pid_t pid, const char *artifact_path, const char *hostname, nex_error_t *err)
{
  cleanup_close int tree = open_tree (AT_FDCWD, artifact_path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0)
    return nex_error_sys (err, errno, "open_tree `%s`", artifact_path);
  struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
  if (mount_setattr (tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    return nex_error_sys (err, errno, "make the executable's mount read-only");
  cleanup_close int mnt = open_ns (pid, "mnt", err);
  if (mnt < 0)
    return -1;
  cleanup_close int uts = open_ns (pid, "uts", err);
  if (uts < 0)
    return -1;
  fill_job_t job = { .tree_fd = tree, .mnt_fd = mnt, .uts_fd = uts, .hostname = hostname };
  cleanup_free char *stack = nex_xmalloc (FILL_STACK_SIZE);
  pid_t helper = clone (fill_child, stack + FILL_STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &job);
  if (helper < 0)
    return nex_error_sys (err, errno, "start the sandbox's fill helper");
  int status = 0;
  while (waitpid (helper, &status, 0) < 0 && errno == EINTR)
    ;
  if (job.failed)
    return nex_error_sys (err, job.errnum, "warm sandbox: %s", job.failed);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "warm sandbox: the fill helper ended with status %d", status);
  return 0;
}
