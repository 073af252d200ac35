/* cleanup.h — scope-bound ownership with __attribute__((cleanup)).
 *
 * A variable declared `cleanup_free char *s = ...;` is released when it goes out of scope.  Ownership is handed
 * off explicitly by moving the value out and clearing the variable (`ret = fd; fd = -1; return ret;`), which
 * the NEX_STEAL helpers spell in one expression.  Library types (jansson, sqlite3) have their own cleanups here
 * so that every file releases them the same way. */
#ifndef NEX_CLEANUP_H
#define NEX_CLEANUP_H

#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

#include <jansson.h>

#include "common/error.h"

static inline void
nex_cleanup_freep (void *p)
{
  free (*(void **) p);
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

#define cleanup_free __attribute__ ((cleanup (nex_cleanup_freep)))
#define cleanup_close __attribute__ ((cleanup (nex_cleanup_closep)))
#define cleanup_error __attribute__ ((cleanup (nex_error_free)))

/* Moves the pointer out of P and leaves NULL behind. */
#define NEX_STEAL_PTR(p)                                                                                           \
  ({                                                                                                               \
    __typeof__ (p) stolen_ = (p);                                                                                  \
    (p) = NULL;                                                                                                    \
    stolen_;                                                                                                       \
  })

/* Moves the descriptor out of FD and leaves -1 behind. */
#define NEX_STEAL_FD(fd)                                                                                           \
  ({                                                                                                               \
    int stolen_ = (fd);                                                                                            \
    (fd) = -1;                                                                                                     \
    stolen_;                                                                                                       \
  })

static inline void
nex_cleanup_jsonp (json_t **j)
{
  json_decref (*j);
}
#define cleanup_json __attribute__ ((cleanup (nex_cleanup_jsonp)))

#endif
