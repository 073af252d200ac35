/* SPDX-License-Identifier: Apache-2.0 */
/* upcase.c — a test function (workload type `function`): reads all of stdin (the trigger message's payload) and
 * writes it back upper-cased (ASCII letters only; every other byte, NUL included, unchanged).
 *
 * Some payloads ask for something else, so that the tests can reach every outcome of an invocation:
 *   "fail"     writes "failing on request" to stderr and exits 3;
 *   "sleep"    sleeps 60 s (past any test's function_timeout_s);
 *   "subject"  writes the NEX_TRIGGER_SUBJECT it was given;
 *   "argv"     writes its argv, one argument per line.
 * Started with the argument `--nap`, it sleeps one second before answering (the tests of concurrent runs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
main (int argc, char **argv)
{
  size_t len = 0, cap = 65536;
  char *buf = malloc (cap);
  ssize_t n;
  if (buf == NULL)
    return 1;
  while ((n = read (0, buf + len, cap - len)) > 0)
    {
      len += (size_t)n;
      if (len == cap)
        {
          char *more = realloc (buf, cap *= 2);
          if (more == NULL)
            return 1;
          buf = more;
        }
    }
  if (len == 4 && memcmp (buf, "fail", 4) == 0)
    {
      fputs ("failing on request\n", stderr);
      return 3;
    }
  if (len == 5 && memcmp (buf, "sleep", 5) == 0)
    {
      sleep (60);
      return 0;
    }
  if (len == 7 && memcmp (buf, "subject", 7) == 0)
    {
      const char *s = getenv ("NEX_TRIGGER_SUBJECT");
      fputs (s ? s : "(unset)", stdout);
      return 0;
    }
  if (len == 4 && memcmp (buf, "argv", 4) == 0)
    {
      for (int i = 0; i < argc; i++)
        printf ("%s\n", argv[i]);
      return 0;
    }
  if (argc > 1 && strcmp (argv[1], "--nap") == 0)
    sleep (1);
  for (size_t i = 0; i < len; i++)
    if (buf[i] >= 'a' && buf[i] <= 'z')
      buf[i] = (char)(buf[i] - 'a' + 'A');
  fwrite (buf, 1, len, stdout);
  return 0;
}
