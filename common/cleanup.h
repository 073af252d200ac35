/* SPDX-License-Identifier: Apache-2.0 */
/* cleanup.h — scope-bound ownership with __attribute__((cleanup)).
 *
 * A variable declared `cleanup_free char *s = ...;` is released when it goes out of scope.  Ownership is handed
 * off explicitly by moving the value out and clearing the variable (`ret = fd; fd = -1; return ret;`), which
 * the NEX_STEAL helpers spell in one expression.  Every kind of resource the code opens has its cleanup here —
 * memory, descriptors, pipe pairs, directories, stdio files, child processes, mutex guards, and the library types
 * (jansson, and sqlite3 where its header is available) — so that every file releases them the same way.  A type
 * with a release function of its own (a struct that owns several things) uses `cleanup_with (fn)`: the one
 * spelling of a local cleanup. */
#ifndef NEX_CLEANUP_H
#define NEX_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"

static inline void
nex_cleanup_freep (void *p)
{
  free (*(void **)p);
}

static inline void
nex_cleanup_closep (int *fd)
{
  if (*fd >= 0)
    {
      int saved = errno;
      close (*fd);
      errno = saved;
    }
}

/* Both ends of a pipe(2)/socketpair(2) pair; an end already handed off is -1. */
static inline void
nex_cleanup_pipep (int (*fds)[2])
{
  nex_cleanup_closep (&(*fds)[0]);
  nex_cleanup_closep (&(*fds)[1]);
}

static inline void
nex_cleanup_dirp (DIR **d)
{
  if (*d)
    closedir (*d);
}

static inline void
nex_cleanup_filep (FILE **f)
{
  if (*f)
    fclose (*f);
}

/* A child that must not outlive the scope: SIGKILLed and reaped (so it leaves no zombie).  Hand it off with
 * NEX_STEAL_PID once it is meant to live on; 0 and negative pids are left alone. */
static inline void
nex_cleanup_pidp (pid_t *pid)
{
  if (*pid > 0)
    {
      int saved = errno;
      kill (*pid, SIGKILL);
      while (waitpid (*pid, NULL, 0) < 0 && errno == EINTR)
        ;
      errno = saved;
    }
}

/* A held mutex, released at the end of the scope; NULL when not taken.  The variable is never read. */
static inline void
nex_cleanup_unlockp (pthread_mutex_t **m)
{
  if (*m)
    pthread_mutex_unlock (*m);
}

#define cleanup_with(fn) __attribute__ ((cleanup (fn)))
#define cleanup_free cleanup_with (nex_cleanup_freep)
#define cleanup_close cleanup_with (nex_cleanup_closep)
#define cleanup_pipe cleanup_with (nex_cleanup_pipep)
#define cleanup_dir cleanup_with (nex_cleanup_dirp)
#define cleanup_file cleanup_with (nex_cleanup_filep)
#define cleanup_pid cleanup_with (nex_cleanup_pidp)
#define cleanup_unlock __attribute__ ((cleanup (nex_cleanup_unlockp), unused))
#define cleanup_error cleanup_with (nex_error_free)

/* Moves the pointer out of P and leaves NULL behind. */
#define NEX_STEAL_PTR(p)                                                                                               \
  ({                                                                                                                   \
    __typeof__ (p) stolen_ = (p);                                                                                      \
    (p) = NULL;                                                                                                        \
    stolen_;                                                                                                           \
  })

/* Moves the descriptor out of FD and leaves -1 behind. */
#define NEX_STEAL_FD(fd)                                                                                               \
  ({                                                                                                                   \
    int stolen_ = (fd);                                                                                                \
    (fd) = -1;                                                                                                         \
    stolen_;                                                                                                           \
  })

/* Moves the pid out of PID and leaves 0 behind. */
#define NEX_STEAL_PID(pid)                                                                                             \
  ({                                                                                                                   \
    pid_t stolen_ = (pid);                                                                                             \
    (pid) = 0;                                                                                                         \
    stolen_;                                                                                                           \
  })

static inline void
nex_cleanup_jsonp (json_t **j)
{
  json_decref (*j);
}
#define cleanup_json cleanup_with (nex_cleanup_jsonp)

#if __has_include(<sqlite3.h>)
#include <sqlite3.h>
static inline void
nex_cleanup_stmtp (sqlite3_stmt **stmt)
{
  sqlite3_finalize (*stmt); /* a no-op on NULL */
}
#define cleanup_stmt cleanup_with (nex_cleanup_stmtp)
#endif

#endif
