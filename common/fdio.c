/* SPDX-License-Identifier: Apache-2.0 */
/* fdio.c — see fdio.h. */
#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

int
nex_fd_write_all (int fd, const void *buf, size_t n, nex_error_t *err)
{
  const char *p = buf;
  while (n > 0)
    {
      ssize_t w = write (fd, p, n);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          return nex_error_sys (err, errno, "write");
        }
      p += w;
      n -= (size_t)w;
    }
  return 0;
}

char *
nex_file_read (const char *path, size_t max, size_t *len, nex_error_t *err)
{
  cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      nex_error_sys (err, errno, "open `%s`", path);
      return NULL;
    }
  size_t cap = 4096, n = 0;
  cleanup_free char *buf = nex_xmalloc (cap + 1);
  for (;;)
    {
      if (n == cap)
        {
          if (cap > max)
            break;
          cap *= 2;
          buf = nex_xrealloc (buf, cap + 1);
        }
      ssize_t r = read (fd, buf + n, cap - n);
      if (r < 0)
        {
          if (errno == EINTR)
            continue;
          nex_error_sys (err, errno, "read `%s`", path);
          return NULL;
        }
      if (r == 0)
        break;
      n += (size_t)r;
    }
  if (n > max)
    {
      nex_error_set (err, NEX_ERR_TOO_LARGE, "`%s` is larger than %zu bytes", path, max);
      return NULL;
    }
  buf[n] = '\0';
  if (len)
    *len = n;
  return NEX_STEAL_PTR (buf);
}

int
nex_file_write_atomic (const char *path, const void *data, size_t n, int mode, nex_error_t *err)
{
  cleanup_free char *tmp = nex_xasprintf ("%s.tmp.%d", path, (int)getpid ());
  cleanup_close int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return nex_error_sys (err, errno, "create `%s`", tmp);
  if (nex_fd_write_all (fd, data, n, err) < 0 || fsync (fd) < 0)
    {
      if (err && *err == NULL)
        nex_error_sys (err, errno, "fsync `%s`", tmp);
      unlink (tmp);
      return nex_error_wrap (err, "write `%s`", tmp);
    }
  if (rename (tmp, path) < 0)
    {
      int saved = errno;
      unlink (tmp);
      return nex_error_sys (err, saved, "rename `%s`", tmp);
    }
  return 0;
}

int
nex_mkdir_p (const char *path, int mode, nex_error_t *err)
{
  cleanup_free char *p = nex_xstrdup (path);
  for (char *s = p + 1; *s; s++)
    {
      if (*s != '/')
        continue;
      *s = '\0';
      if (mkdir (p, mode) < 0 && errno != EEXIST)
        return nex_error_sys (err, errno, "mkdir `%s`", p);
      *s = '/';
    }
  if (mkdir (p, mode) < 0 && errno != EEXIST)
    return nex_error_sys (err, errno, "mkdir `%s`", p);
  return 0;
}
