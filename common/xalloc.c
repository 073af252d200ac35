/* SPDX-License-Identifier: Apache-2.0 */
/* xalloc.c — aborting allocators (see xalloc.h). */
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void __attribute__ ((noreturn)) oom (void)
{
  static const char msg[] = "nex: out of memory\n";
  (void)!write (2, msg, sizeof msg - 1);
  abort ();
}

void *
nex_xmalloc (size_t n)
{
  void *p = malloc (n ? n : 1);
  if (p == NULL)
    oom ();
  return p;
}

void *
nex_xzalloc (size_t n)
{
  void *p = calloc (1, n ? n : 1);
  if (p == NULL)
    oom ();
  return p;
}

void *
nex_xrealloc (void *p, size_t n)
{
  void *q = realloc (p, n ? n : 1);
  if (q == NULL)
    oom ();
  return q;
}

char *
nex_xstrdup (const char *s)
{
  char *p = strdup (s);
  if (p == NULL)
    oom ();
  return p;
}

char *
nex_xstrndup (const char *s, size_t n)
{
  char *p = strndup (s, n);
  if (p == NULL)
    oom ();
  return p;
}

char *
nex_xvasprintf (const char *fmt, va_list ap)
{
  char *p = NULL;
  if (vasprintf (&p, fmt, ap) < 0)
    oom ();
  return p;
}

char *
nex_xasprintf (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *p = nex_xvasprintf (fmt, ap);
  va_end (ap);
  return p;
}
