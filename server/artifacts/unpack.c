/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/unpack.c — the forked unpack child (see unpack.h). */
#include "server/artifacts/unpack.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

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

int
nex_unpack_tree (int root_fd, const nex_unpack_layer_t *layers, size_t n, nex_layer_budget_t *budget, nex_error_t *err)
{
  cleanup_pipe int p[2] = { -1, -1 };
  if (pipe2 (p, O_CLOEXEC) < 0)
    return nex_error_sys (err, errno, "pipe");
  pid_t pid = fork ();
  if (pid < 0)
    return nex_error_sys (err, errno, "fork the unpack child");
  if (pid == 0)
    child (p[1], root_fd, layers, n, budget);
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
