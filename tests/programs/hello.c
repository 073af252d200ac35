/* SPDX-License-Identifier: Apache-2.0 */
/* hello.c — the simplest test workload: shows what a workload receives and how its exit is reported.
 *
 * On stdout it prints "hello from nex", then "argv: " followed by every argv element (argv[0] included)
 * separated by single spaces, then "greeting: <value>" when the environment holds GREETING.  On stderr it prints
 * "hello on stderr".  It exits with status 3, so that tests can tell a reported exit code from a default 0.
 *
 * Built twice: tests/programs/hello (static, the normal workload) and tests/programs/hello-dynamic (dynamically
 * linked, which nexd must refuse because a sandbox holds no shared libraries). */
#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char **argv)
{
  printf ("hello from nex\n");

  printf ("argv:");
  for (int i = 0; i < argc; i++)
    printf (" %s", argv[i]);
  printf ("\n");

  const char *greeting = getenv ("GREETING");
  if (greeting != NULL)
    printf ("greeting: %s\n", greeting);
  fflush (stdout);

  fprintf (stderr, "hello on stderr\n");
  return 3;
}
