/* SPDX-License-Identifier: Apache-2.0 */
/* testutil.h — what Nex's C unit tests share beside tap.h: one scratch directory per program, files written into
 * it, a reproducible random sequence, and the two verdicts most checks spell (accepted; refused as invalid,
 * naming a field).
 *
 * Everything is static inline, so a program pays only for what it calls and links nothing more than common/.
 * The scratch directory is made on first use under /tmp and removed with all it holds when the program exits
 * (by the process that made it: a forked child that calls exit() leaves it alone). */
#ifndef NEX_TESTUTIL_H
#define NEX_TESTUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "tests/unit/tap.h"

/* The scratch directory's path (NULL until made) and the pid that made it. */
typedef struct test_dir_state
{
  char *path;
  pid_t owner;
} test_dir_state_t;

static inline test_dir_state_t *
test_dir_state_ (void)
{
  static test_dir_state_t state;
  return &state;
}

static inline int
test_dir_remove_one_ (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  return remove (path);
}

static inline void
test_dir_remove_ (void)
{
  test_dir_state_t *s = test_dir_state_ ();
  if (s->path && s->owner == getpid () && nftw (s->path, test_dir_remove_one_, 16, FTW_DEPTH | FTW_PHYS) != 0)
    printf ("# could not remove %s: %s\n", s->path, strerror (errno));
}

/* The program's scratch directory, /tmp/nex-<program>-XXXXXX, made on the first call and removed at exit.  A
 * directory that cannot be made ends the run ("Bail out!"). */
static inline const char *
test_dir (void)
{
  test_dir_state_t *s = test_dir_state_ ();
  if (s->path == NULL)
    {
      char *tmpl = nex_xasprintf ("/tmp/nex-%s-XXXXXX", program_invocation_short_name);
      if (mkdtemp (tmpl) == NULL)
        {
          printf ("Bail out! mkdtemp %s: %s\n", tmpl, strerror (errno));
          exit (1);
        }
      s->path = tmpl;
      s->owner = getpid ();
      atexit (test_dir_remove_);
    }
  return s->path;
}

/* NAME inside the scratch directory; caller frees. */
static inline char *
test_path (const char *name)
{
  return nex_xasprintf ("%s/%s", test_dir (), name);
}

/* Writes N bytes of DATA to PATH (atomically, with MODE); 0, or -1 after a "#" line saying why. */
static inline int
test_write (const char *path, const void *data, size_t n, int mode)
{
  nex_error_t err = NULL;
  if (nex_file_write_atomic (path, data, n, mode, &err) < 0)
    {
      printf ("# %s\n", err->msg);
      nex_error_free (&err);
      return -1;
    }
  return 0;
}

/* test_write for a NUL-terminated TEXT. */
static inline int
test_write_text (const char *path, const char *text, int mode)
{
  return test_write (path, text, strlen (text), mode);
}

/* Whether the shell finds the program NAME. */
static inline int
test_have_program (const char *name)
{
  char *cmd = nex_xasprintf ("command -v %s >/dev/null 2>&1", name);
  int found = system (cmd) == 0;
  free (cmd);
  return found;
}

/* Whether /bin/busybox is there and statically linked (Debian's busybox-static). */
static inline int
test_have_static_busybox (void)
{
  return access ("/bin/busybox", R_OK) == 0 && system ("file -L /bin/busybox 2>/dev/null | grep -q 'statically'") == 0;
}

/* The next number of a xorshift64* sequence with a fixed seed: "random" inputs that are the same on every run,
 * so that a failure reproduces. */
static inline uint64_t
test_rng (void)
{
  static uint64_t state = 0x9e3779b97f4a7c15ULL;
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dULL;
}

/* One TAP line: the call that returned R succeeded (R == 0) and left *ERR empty.  Frees *ERR. */
static inline void
expect_accept (int r, nex_error_t *err, const char *what)
{
  TAP_OK (r == 0 && *err == NULL, "%s: accepted%s%s", what, *err ? " -- " : "", *err ? (*err)->msg : "");
  nex_error_free (err);
}

/* One TAP line: the call that returned R failed with NEX_ERR_INVALID naming FIELD, with a message containing
 * NEEDLE (any message when NEEDLE is NULL).  Frees *ERR. */
static inline void
expect_refusal (int r, nex_error_t *err, const char *field, const char *needle, const char *what)
{
  const nex_error_s *e = *err;
  int ok = r < 0 && e != NULL && e->kind == NEX_ERR_INVALID && e->field != NULL && strcmp (e->field, field) == 0
           && (needle == NULL || strstr (e->msg, needle) != NULL);
  TAP_OK (ok, "%s: refused naming `%s` (%s%s%s)", what, field, e && e->field ? e->field : "-", e ? ": " : "",
          e ? e->msg : "accepted");
  nex_error_free (err);
}

#endif
