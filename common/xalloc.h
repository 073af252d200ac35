/* SPDX-License-Identifier: Apache-2.0 */
/* xalloc.h — allocation that never returns NULL.
 *
 * Nex treats running out of memory as fatal (as crun and Redis do): every function here aborts with a message
 * on failure, so callers never check.  Safe from any thread. */
#ifndef NEX_XALLOC_H
#define NEX_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *nex_xmalloc (size_t n);
void *nex_xzalloc (size_t n);
void *nex_xrealloc (void *p, size_t n);
char *nex_xstrdup (const char *s);
char *nex_xstrndup (const char *s, size_t n);
char *nex_xasprintf (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
char *nex_xvasprintf (const char *fmt, va_list ap) __attribute__ ((format (printf, 1, 0)));

#endif
