/* SPDX-License-Identifier: Apache-2.0 */
/* proc.c — see proc.h. */
#include "server/drivers/proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

int64_t
nex_proc_start_time (pid_t pid)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
  cleanup_free char *text = nex_file_read (path, 4096, NULL, NULL);
  if (text == NULL)
    return -1;
  /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted from the last ')';
   * after it come field 3 (state) onwards, and starttime is field 22. */
  char *p = strrchr (text, ')');
  if (p == NULL)
    return -1;
  p++;
  for (int field = 3; field <= 22; field++)
    {
      while (*p == ' ')
        p++;
      if (*p == '\0')
        return -1;
      if (field == 22)
        {
          char *end;
          long long v = strtoll (p, &end, 10);
          return end == p ? -1 : v;
        }
      p += strcspn (p, " ");
    }
  return -1;
}
