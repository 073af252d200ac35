/* SPDX-License-Identifier: Apache-2.0 */
/* envcheck.c — a test workload that proves it received a secret without printing it: for the variable named
 * by argv[1] (default SECRET) it prints "<name> length: N" and "<name> fnv1a: XXXXXXXX" (the 32-bit FNV-1a hash
 * of the value), or "<name> unset".  Exits 0. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main (int argc, char **argv)
{
  const char *name = argc > 1 ? argv[1] : "SECRET";
  const char *v = getenv (name);
  if (v == NULL)
    {
      printf ("%s unset\n", name);
      return 0;
    }
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    h = (h ^ *p) * 16777619u;
  printf ("%s length: %zu\n%s fnv1a: %08x\n", name, strlen (v), name, h);
  return 0;
}
