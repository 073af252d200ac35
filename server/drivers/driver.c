/* SPDX-License-Identifier: Apache-2.0 */
/* driver.c — the table of drivers, the one way to call a driver (with the defaults of its NULL hooks: dial the
 * endpoint, SIGKILL the root process, remove the run dir), and the unix-socket helpers drivers share (see
 * driver.h). */
#include "server/drivers/driver.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

static const nex_driver_t *const drivers[] = { &nex_driver_sandbox, &nex_driver_qemu, &nex_driver_firecracker, NULL };

const nex_driver_t *
nex_driver_find (const char *name)
{
  for (size_t i = 0; drivers[i]; i++)
    if (strcmp (drivers[i]->name, name) == 0)
      return drivers[i];
  return NULL;
}

const nex_driver_t *const *
nex_driver_all (void)
{
  return drivers;
}

int
nex_driver_probe (const nex_driver_t *d, char **reason)
{
  return d->probe (d, reason);
}

int
nex_driver_fall_back (const nex_driver_t *d, const nex_instance_t *i, int reaped, int wait_status, int boot_timed_out,
                      char **reason)
{
  if (!i->may_fall_back || d->fall_back == NULL)
    return -1;
  return d->fall_back (d, i, reaped, wait_status, boot_timed_out, reason);
}

const char *
nex_driver_accel (const nex_driver_t *d, char **kvm_reason)
{
  return d->accel ? d->accel (d, kvm_reason) : NULL;
}

int
nex_driver_start (const nex_driver_t *d, const nex_launch_t *l, nex_instance_t *out, nex_error_t *err)
{
  if (l->snapshot_path && d->snapshot == NULL)
    return nex_error_set (err, NEX_ERR_INVALID, "the %s driver cannot restore a snapshot", d->name);
  if (nex_mkdir_p (l->run_dir, 0700, err) < 0)
    return -1;
  if (d->start (d, l, out, err) < 0)
    {
      nex_driver_remove_run_dir (d, l->run_dir);
      return -1;
    }
  out->run_dir = nex_xstrdup (l->run_dir);
  return 0;
}

int
nex_driver_connect (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  return d->connect ? d->connect (d, i, err) : nex_driver_connect_unix (i->endpoint, err);
}

int
nex_driver_kill_default (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  if (i->pid > 0 && kill (i->pid, SIGKILL) < 0 && errno != ESRCH)
    return nex_error_sys (err, errno, "kill %s %d", d->name, (int)i->pid);
  return 0;
}

int
nex_driver_kill (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  return d->kill ? d->kill (d, i, err) : nex_driver_kill_default (d, i, err);
}

int
nex_driver_destroy (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  if (d->destroy)
    return d->destroy (d, i, err);
  if (i->run_dir)
    nex_driver_remove_run_dir (d, i->run_dir);
  return 0;
}

int
nex_driver_connect_console (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  return d->connect_console ? d->connect_console (d, i, err) : -1;
}

char *
nex_driver_describe_end (const nex_driver_t *d, const nex_instance_t *i, int reaped, int wait_status)
{
  if (d->describe_end == NULL || i->run_dir == NULL)
    return NULL;
  return d->describe_end (d, i, reaped, wait_status);
}

int
nex_driver_pause (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err)
{
  return d->pause ? d->pause (d, i, paused, err) : 0;
}

int
nex_driver_snapshot (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused, nex_error_t *err)
{
  if (d->snapshot == NULL)
    return nex_error_set (err, NEX_ERR_INVALID, "snapshots are for microVMs: the %s driver cannot take one", d->name);
  return d->snapshot (d, i, path, was_paused, err);
}

int64_t
nex_driver_snapshot_size (const nex_driver_t *d, const char *path)
{
  struct stat st;
  if (stat (path, &st) < 0)
    return -1;
  int64_t total = (int64_t)st.st_size;
  for (size_t k = 0; d->snapshot_suffixes && d->snapshot_suffixes[k]; k++)
    {
      cleanup_free char *more = nex_xasprintf ("%s%s", path, d->snapshot_suffixes[k]);
      if (stat (more, &st) == 0)
        total += (int64_t)st.st_size;
    }
  return total;
}

int
nex_driver_snapshot_remove (const nex_driver_t *d, const char *path, nex_error_t *err)
{
  for (size_t k = 0; d->snapshot_suffixes && d->snapshot_suffixes[k]; k++)
    {
      cleanup_free char *more = nex_xasprintf ("%s%s", path, d->snapshot_suffixes[k]);
      if (unlink (more) < 0 && errno != ENOENT)
        return nex_error_sys (err, errno, "remove the snapshot file `%s`", more);
    }
  if (unlink (path) < 0 && errno != ENOENT)
    return nex_error_sys (err, errno, "remove the snapshot file `%s`", path);
  return 0;
}

int
nex_driver_unix_socket (const char *path, struct sockaddr_un *sa, nex_error_t *err)
{
  memset (sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen (path) >= sizeof sa->sun_path)
    return nex_error_set (err, NEX_ERR_SYSTEM, "socket path `%s` is too long (use a shorter data_dir)", path);
  strcpy (sa->sun_path, path);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return nex_error_sys (err, errno, "socket");
  return fd;
}

int
nex_driver_connect_unix (const char *path, nex_error_t *err)
{
  struct sockaddr_un sa;
  cleanup_close int fd = nex_driver_unix_socket (path, &sa, err);
  if (fd < 0)
    return -1;
  while (connect (fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    if (errno != EINTR)
      return nex_error_sys (err, errno, "connect `%s`", path);
  return NEX_STEAL_FD (fd);
}

int
nex_driver_listen_unix (const char *path, nex_error_t *err)
{
  struct sockaddr_un sa;
  cleanup_close int fd = nex_driver_unix_socket (path, &sa, err);
  if (fd < 0)
    return -1;
  unlink (path);
  if (bind (fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    return nex_error_sys (err, errno, "bind `%s`", path);
  /* Only nexd (root) may dial the agent. */
  if (chmod (path, 0600) < 0 || listen (fd, 4) < 0)
    return nex_error_sys (err, errno, "listen `%s`", path);
  return NEX_STEAL_FD (fd);
}

void
nex_instance_release (nex_instance_t *i)
{
  free (i->endpoint);
  free (i->run_dir);
  memset (i, 0, sizeof *i);
}

void
nex_driver_remove_run_dir (const nex_driver_t *d, const char *run_dir)
{
  for (const char *const *name = d->run_files; name && *name; name++)
    {
      cleanup_free char *p = nex_xasprintf ("%s/%s", run_dir, *name);
      if (unlink (p) < 0 && (errno == EISDIR || errno == EPERM))
        rmdir (p);
    }
  rmdir (run_dir);
}
