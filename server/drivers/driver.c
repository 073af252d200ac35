/* driver.c — the table of drivers and what they share (see driver.h). */
#include "server/drivers/driver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
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
  while (connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0)
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
  if (bind (fd, (struct sockaddr *) &sa, sizeof sa) < 0)
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
nex_driver_remove_run_dir (const char *run_dir, const char *const *names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      cleanup_free char *p = nex_xasprintf ("%s/%s", run_dir, names[i]);
      if (unlink (p) < 0 && (errno == EISDIR || errno == EPERM))
        rmdir (p);
    }
  rmdir (run_dir);
}
