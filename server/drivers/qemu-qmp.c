/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/qemu-qmp.c — see qemu-qmp.h.  Blocking I/O with poll deadlines: callers are threads that may wait
 * (the supervisor for a pause, an API worker for a snapshot), never a library's callback. */
#include "server/drivers/qemu-qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/drivers/driver.h"

/* Waits up to the deadline AT (monotonic ms) for FD to be readable.  0, or -1 (NEX_ERR_TIMEOUT or failure). */
static int
wait_readable (int fd, int64_t at, nex_error_t *err)
{
  for (;;)
    {
      int64_t left = at - nex_clock_mono_ms ();
      if (left <= 0)
        return nex_error_set (err, NEX_ERR_TIMEOUT, "QEMU did not answer on its QMP socket in %d ms",
                              NEX_QMP_TIMEOUT_MS);
      struct pollfd p = { .fd = fd, .events = POLLIN };
      int r = poll (&p, 1, (int)left);
      if (r > 0)
        return 0;
      if (r < 0 && errno != EINTR)
        return nex_error_sys (err, errno, "poll QMP");
    }
}

/* The next line from QEMU parsed as a JSON object (new reference), or NULL. */
static json_t *
read_message (nex_qmp_t *q, int64_t at, nex_error_t *err)
{
  for (;;)
    {
      char *nl = memchr (q->buf, '\n', q->len);
      if (nl != NULL)
        {
          *nl = '\0';
          json_error_t jerr;
          json_t *msg = json_loads (q->buf, 0, &jerr);
          size_t used = (size_t)(nl - q->buf) + 1;
          memmove (q->buf, q->buf + used, q->len - used);
          q->len -= used;
          if (!json_is_object (msg))
            {
              json_decref (msg);
              nex_error_set (err, NEX_ERR_PROTOCOL, "QEMU sent a QMP line that is not a JSON object");
              return NULL;
            }
          return msg;
        }
      if (q->len == sizeof q->buf)
        {
          nex_error_set (err, NEX_ERR_PROTOCOL, "QEMU sent a QMP line longer than %d bytes", NEX_QMP_MAX_LINE);
          return NULL;
        }
      if (wait_readable (q->fd, at, err) < 0)
        return NULL;
      ssize_t n = read (q->fd, q->buf + q->len, sizeof q->buf - q->len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        nex_error_sys (err, errno, "read QMP");
      else if (n == 0)
        nex_error_set (err, NEX_ERR_PROTOCOL, "QEMU closed its QMP socket");
      if (n <= 0)
        return NULL;
      q->len += (size_t)n;
    }
}

nex_qmp_t *
nex_qmp_open (const char *path, nex_error_t *err)
{
  cleanup_error nex_error_t cerr = NULL;
  int fd = nex_driver_connect_unix (path, &cerr);
  if (fd < 0)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "the VM's QMP socket: %s", cerr->msg);
      return NULL;
    }
  cleanup_with (nex_qmp_closep) nex_qmp_t *q = nex_xzalloc (sizeof *q);
  q->fd = fd;
  cleanup_json json_t *greeting = read_message (q, nex_clock_mono_ms () + NEX_QMP_TIMEOUT_MS, err);
  if (greeting == NULL)
    return NULL;
  if (json_object_get (greeting, "QMP") == NULL)
    {
      nex_error_set (err, NEX_ERR_PROTOCOL, "QEMU's QMP socket did not greet with QMP");
      return NULL;
    }
  cleanup_json json_t *caps = nex_qmp_execute (q, "qmp_capabilities", NULL, err);
  if (caps == NULL)
    return NULL;
  return NEX_STEAL_PTR (q);
}

/* Writes the N bytes of TEXT to Q's socket, with descriptor FD attached (SCM_RIGHTS) to the first byte unless
 * it is -1.  0 or -1. */
static int
send_line (nex_qmp_t *q, const char *text, size_t n, int fd, nex_error_t *err)
{
  if (fd < 0)
    return nex_fd_write_all (q->fd, text, n, err);
  union
  {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } control;
  memset (&control, 0, sizeof control);
  struct iovec iov = { .iov_base = (void *)text, .iov_len = 1 };
  struct msghdr msg
      = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  struct cmsghdr *c = CMSG_FIRSTHDR (&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (c), &fd, sizeof fd);
  ssize_t sent;
  while ((sent = sendmsg (q->fd, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  if (sent != 1)
    return nex_error_sys (err, errno, "send a descriptor to QEMU");
  return nex_fd_write_all (q->fd, text + 1, n - 1, err);
}

json_t *
nex_qmp_execute (nex_qmp_t *q, const char *cmd, json_t *args, nex_error_t *err)
{
  return nex_qmp_execute_fd (q, cmd, args, -1, err);
}

json_t *
nex_qmp_execute_fd (nex_qmp_t *q, const char *cmd, json_t *args, int fd, nex_error_t *err)
{
  cleanup_json json_t *req = json_pack ("{s:s}", "execute", cmd);
  if (args)
    json_object_set_new (req, "arguments", args);
  cleanup_free char *text = json_dumps (req, JSON_COMPACT);
  size_t n = strlen (text);
  text[n] = '\n'; /* json_dumps' NUL becomes the line's end (it is written, not printed) */
  if (send_line (q, text, n + 1, fd, err) < 0)
    return NULL;
  int64_t at = nex_clock_mono_ms () + NEX_QMP_TIMEOUT_MS;
  for (;;)
    {
      cleanup_json json_t *msg = read_message (q, at, err);
      if (msg == NULL)
        {
          nex_error_wrap (err, "QMP %s", cmd);
          return NULL;
        }
      json_t *ret = json_object_get (msg, "return");
      if (ret)
        return json_incref (ret);
      json_t *e = json_object_get (msg, "error");
      if (e)
        {
          const char *cls = json_string_value (json_object_get (e, "class"));
          const char *desc = json_string_value (json_object_get (e, "desc"));
          nex_error_set (err, NEX_ERR_CONFLICT, "QMP %s: %s: %.300s", cmd, cls ? cls : "error", desc ? desc : "");
          return NULL;
        }
      /* An event (or anything else): not the answer. */
    }
}

int
nex_qmp_run (const char *path, const char *cmd, json_t *args, nex_error_t *err)
{
  cleanup_json json_t *owned = args;
  cleanup_with (nex_qmp_closep) nex_qmp_t *q = nex_qmp_open (path, err);
  if (q == NULL)
    return -1;
  cleanup_json json_t *ret = nex_qmp_execute (q, cmd, NEX_STEAL_PTR (owned), err);
  return ret ? 0 : -1;
}

void
nex_qmp_close (nex_qmp_t *q)
{
  if (q == NULL)
    return;
  if (q->fd >= 0)
    close (q->fd);
  free (q);
}

void
nex_qmp_closep (nex_qmp_t **q)
{
  nex_qmp_close (*q);
  *q = NULL;
}
