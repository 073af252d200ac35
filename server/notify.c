/* SPDX-License-Identifier: Apache-2.0 */
/* notify.c — see notify.h. */
#include "server/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/cleanup.h"

static struct sockaddr_un notify_addr; /* the service manager's socket; sun_family 0 when there is none */
static socklen_t notify_len;

int
nex_notify_init (nex_error_t *err)
{
  memset (&notify_addr, 0, sizeof notify_addr);
  notify_len = 0;
  const char *name = getenv ("NOTIFY_SOCKET");
  if (name == NULL)
    return 0;
  size_t len = strlen (name);
  /* A path needs room for its terminator; an abstract name's '@' becomes the leading NUL. */
  size_t room = sizeof notify_addr.sun_path - (name[0] == '@' ? 0 : 1);
  int usable = (name[0] == '/' || name[0] == '@') && len >= 2 && len <= room;
  if (usable)
    {
      notify_addr.sun_family = AF_UNIX;
      memcpy (notify_addr.sun_path, name, len);
      /* An abstract name is the bytes after a leading NUL, as long as the name: no terminator belongs to it. */
      if (name[0] == '@')
        notify_addr.sun_path[0] = '\0';
      notify_len = (socklen_t)(offsetof (struct sockaddr_un, sun_path) + len + (name[0] == '@' ? 0 : 1));
    }
  unsetenv ("NOTIFY_SOCKET");
  if (!usable)
    return nex_error_set (err, NEX_ERR_INVALID,
                          "NOTIFY_SOCKET must be an absolute path (at most %zu bytes) or an abstract name ('@...', at "
                          "most %zu)",
                          sizeof notify_addr.sun_path - 1, sizeof notify_addr.sun_path);
  return 0;
}

int
nex_notify_send (const char *state, nex_error_t *err)
{
  if (notify_addr.sun_family != AF_UNIX)
    return 0;
  cleanup_close int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return nex_error_sys (err, errno, "notify: socket");
  if (sendto (fd, state, strlen (state), MSG_NOSIGNAL, (const struct sockaddr *)&notify_addr, notify_len) < 0)
    return nex_error_sys (err, errno, "notify: sendto $NOTIFY_SOCKET");
  return 0;
}
