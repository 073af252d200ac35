/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/unpack.c — the forked unpack child (see unpack.h). */
#include "server/artifacts/unpack.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

/* What the child reports, in one write. */
typedef struct report
{
  int32_t rc;
  int32_t kind;
  int32_t errnum;
  uint64_t bytes;
  uint64_t entries;
  char field[64];
  char msg[1024];
} report_t;

static void __attribute__ ((noreturn))
child (int out, int root_fd, const nex_unpack_layer_t *layers, size_t n, nex_layer_budget_t *budget)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  signal (SIGXFSZ, SIG_IGN); /* past the limit a write fails with EFBIG instead of killing the child */
  struct rlimit fsize = { .rlim_cur = budget->max_bytes, .rlim_max = budget->max_bytes };
  report_t r = { 0 };
  nex_error_t err = NULL;
  if (budget->max_bytes > 0 && setrlimit (RLIMIT_FSIZE, &fsize) < 0)
    r.rc = nex_error_sys (&err, errno, "limit the unpack's file size");
  for (size_t i = 0; r.rc == 0 && i < n; i++)
    r.rc = nex_layer_apply (root_fd, layers[i].blob_path, layers[i].diff_id, budget, &err);
  if (r.rc == 0)
    r.rc = nex_layer_finish_root (root_fd, budget, &err);
  r.bytes = budget->bytes;
  r.entries = budget->entries;
  if (err)
    {
      r.kind = (int32_t)err->kind;
      r.errnum = err->errnum;
      snprintf (r.field, sizeof r.field, "%s", err->field ? err->field : "");
      snprintf (r.msg, sizeof r.msg, "%s", err->msg ? err->msg : "");
    }
  _exit (write (out, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
}

/* Turns the child's report R into *ERR. */
static int
report_error (const report_t *r, nex_error_t *err)
{
  if (r->field[0])
    nex_error_field (err, r->field, "%s", r->msg);
  else
    nex_error_set (err, (nex_error_kind_t)r->kind, "%s", r->msg);
  if (err && *err)
    {
      (*err)->kind = (nex_error_kind_t)r->kind;
      (*err)->errnum = r->errnum;
    }
  return -1;
}

/* The argv of the unpack child's own image (see unpack.h): "nexd-unpack OUT ROOT MAX_BYTES MAX_ENTRIES BYTES
 * ENTRIES ID_BASE ID_COUNT N BLOB DIFF_ID ...", built before the fork (nothing after it allocates). */
static char **
child_argv (int out, int root_fd, const nex_unpack_layer_t *layers, size_t n, const nex_layer_budget_t *budget)
{
  char **argv = nex_xzalloc ((10 + 2 * n + 1) * sizeof *argv);
  size_t k = 0;
  argv[k++] = nex_xstrdup (NEX_UNPACK_ARGV0);
  argv[k++] = nex_xasprintf ("%d", out);
  argv[k++] = nex_xasprintf ("%d", root_fd);
  argv[k++] = nex_xasprintf ("%llu", (unsigned long long)budget->max_bytes);
  argv[k++] = nex_xasprintf ("%llu", (unsigned long long)budget->max_entries);
  argv[k++] = nex_xasprintf ("%llu", (unsigned long long)budget->bytes);
  argv[k++] = nex_xasprintf ("%llu", (unsigned long long)budget->entries);
  argv[k++] = nex_xasprintf ("%u", budget->id_base);
  argv[k++] = nex_xasprintf ("%u", budget->id_count);
  argv[k++] = nex_xasprintf ("%zu", n);
  for (size_t i = 0; i < n; i++)
    {
      argv[k++] = nex_xstrdup (layers[i].blob_path);
      argv[k++] = nex_xstrdup (layers[i].diff_id ? layers[i].diff_id : "");
    }
  return argv;
}

static void
argv_free (char ***argv)
{
  for (char **a = *argv; a && *a; a++)
    free (*a);
  free (*argv);
}

/* A number of child_argv's, or fails the child. */
static unsigned long long
arg_number (const char *s)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull (s, &end, 10);
  if (errno || end == s || *end)
    _exit (2);
  return v;
}

int
nex_unpack_child_main (int argc, char **argv)
{
  if (argc < 10)
    return 2;
  size_t n = (size_t)arg_number (argv[9]);
  if (n > (size_t)(argc - 10) / 2)
    return 2;
  nex_layer_budget_t budget = {
    .max_bytes = arg_number (argv[3]),
    .max_entries = arg_number (argv[4]),
    .bytes = arg_number (argv[5]),
    .entries = arg_number (argv[6]),
    .id_base = (uint32_t)arg_number (argv[7]),
    .id_count = (uint32_t)arg_number (argv[8]),
  };
  nex_unpack_layer_t *layers = calloc (n ? n : 1, sizeof *layers);
  if (layers == NULL)
    return 1;
  for (size_t i = 0; i < n; i++)
    layers[i] = (nex_unpack_layer_t){ argv[10 + 2 * i], argv[11 + 2 * i][0] ? argv[11 + 2 * i] : NULL };
  child ((int)arg_number (argv[1]), (int)arg_number (argv[2]), layers, n, &budget);
}

int
nex_unpack_tree (int root_fd, const nex_unpack_layer_t *layers, size_t n, nex_layer_budget_t *budget, nex_error_t *err)
{
  cleanup_pipe int p[2] = { -1, -1 };
  if (pipe2 (p, O_CLOEXEC) < 0)
    return nex_error_sys (err, errno, "pipe");
  cleanup_with (argv_free) char **argv = child_argv (p[1], root_fd, layers, n, budget);
  pid_t pid = fork ();
  if (pid < 0)
    return nex_error_sys (err, errno, "fork the unpack child");
  if (pid == 0)
    {
      /* A fresh image of nexd, not a fork's copy: the copy holds every lock another thread held at the fork
       * (under ASan the allocator's own, which its fork does not reset: a child hung on one in CI).  Only
       * async-signal-safe calls until the execve. */
      prctl (PR_SET_PDEATHSIG, SIGKILL);
      if (fcntl (p[1], F_SETFD, 0) < 0 || fcntl (root_fd, F_SETFD, 0) < 0)
        _exit (126);
      execv ("/proc/self/exe", argv);
      _exit (127);
    }
  close (NEX_STEAL_FD (p[1]));
  report_t r;
  size_t got = 0;
  while (got < sizeof r)
    {
      ssize_t k = read (p[0], (char *)&r + got, sizeof r - got);
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        break;
      got += (size_t)k;
    }
  int status = 0;
  while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (got != sizeof r)
    {
      if (WIFSIGNALED (status))
        return nex_error_set (err, NEX_ERR_SYSTEM, "the image's unpack child was killed by signal %d",
                              WTERMSIG (status));
      return nex_error_set (err, NEX_ERR_SYSTEM, "the image's unpack child ended without a report (status %d)",
                            WIFEXITED (status) ? WEXITSTATUS (status) : -1);
    }
  budget->bytes = r.bytes;
  budget->entries = r.entries;
  return r.rc == 0 ? 0 : report_error (&r, err);
}
