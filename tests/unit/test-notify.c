/* SPDX-License-Identifier: Apache-2.0 */
/* test-notify.c — unit tests for server/notify.c: the datagram reaches a socket named by a path or by an abstract
 * name ('@'), $NOTIFY_SOCKET leaves the environment, and names the protocol cannot reach are refused. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/notify.h"
#include "tests/unit/tap.h"

/* A datagram socket bound to NAME (a path, or '@' for an abstract name), or -1. */
static int
listener (const char *name)
{
  int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  size_t len = strlen (name);
  memcpy (a.sun_path, name, len);
  if (name[0] == '@')
    a.sun_path[0] = '\0';
  socklen_t alen = (socklen_t)(offsetof (struct sockaddr_un, sun_path) + len + (name[0] == '@' ? 0 : 1));
  if (fd >= 0 && bind (fd, (struct sockaddr *)&a, alen) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

/* What arrives on FD (at most 1 s from now), as a string the caller frees; NULL when nothing does. */
static char *
receive (int fd)
{
  struct timeval tv = { .tv_sec = 1 };
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[512];
  ssize_t n = recv (fd, buf, sizeof buf - 1, 0);
  if (n < 0)
    return NULL;
  buf[n] = '\0';
  return nex_xstrdup (buf);
}

static void
test_reaches (const char *name, const char *what)
{
  cleanup_close int fd = listener (name);
  setenv ("NOTIFY_SOCKET", name, 1);
  cleanup_error nex_error_t err = NULL;
  TAP_OK (fd >= 0 && nex_notify_init (&err) == 0, "%s: accepted", what);
  TAP_OK (getenv ("NOTIFY_SOCKET") == NULL, "%s: taken out of the environment", what);
  TAP_OK (nex_notify_send ("READY=1\nSTATUS=up", &err) == 0, "%s: sent", what);
  cleanup_free char *got = receive (fd);
  TAP_OK (got && strcmp (got, "READY=1\nSTATUS=up") == 0, "%s: the datagram arrives whole", what);
}

static void
test_refused (const char *name, const char *what)
{
  setenv ("NOTIFY_SOCKET", name, 1);
  cleanup_error nex_error_t err = NULL;
  TAP_OK (nex_notify_init (&err) < 0 && err && strstr (err->msg, "NOTIFY_SOCKET"), "%s: refused, saying why", what);
  TAP_OK (getenv ("NOTIFY_SOCKET") == NULL, "%s: taken out of the environment all the same", what);
  cleanup_error nex_error_t serr = NULL;
  TAP_OK (nex_notify_send ("READY=1", &serr) == 0, "%s: later sends do nothing", what);
}

int
main (void)
{
  char dir[] = "/tmp/nex-notify-XXXXXX";
  if (mkdtemp (dir) == NULL)
    {
      printf ("Bail out! mkdtemp\n");
      return 1;
    }
  cleanup_free char *path = nex_xasprintf ("%s/notify", dir);
  cleanup_free char *abstract = nex_xasprintf ("@nex-notify-test-%d", (int)getpid ());
  test_reaches (path, "a socket path");
  test_reaches (abstract, "an abstract name");
  unlink (path);
  rmdir (dir);

  test_refused ("relative/notify", "a relative path");
  /* sun_path holds 108 bytes: a path of 108 leaves no room for its terminator. */
  char longer[109];
  memset (longer, 'x', sizeof longer - 1);
  longer[0] = '/';
  longer[sizeof longer - 1] = '\0';
  test_refused (longer, "a path of 108 bytes (too long for a socket address)");

  unsetenv ("NOTIFY_SOCKET");
  cleanup_error nex_error_t err = NULL;
  TAP_OK (nex_notify_init (&err) == 0 && nex_notify_send ("READY=1", &err) == 0,
          "without NOTIFY_SOCKET: nothing to do, no error");
  return tap_done ();
}
