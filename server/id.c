/* SPDX-License-Identifier: Apache-2.0 */
/* id.c — see id.h. */
#include "server/id.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void
nex_id_new (char out[37])
{
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b)
    {
      ssize_t r = getrandom (b + got, sizeof b - got, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        abort ();
      got += (size_t)r;
    }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf (out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
            b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

int
nex_id_valid (const char *s)
{
  if (s == NULL || strlen (s) != 36)
    return 0;
  for (int i = 0; i < 36; i++)
    {
      int dash = (i == 8 || i == 13 || i == 18 || i == 23);
      if (dash ? s[i] != '-' : !strchr ("0123456789abcdefABCDEF", s[i]))
        return 0;
    }
  return 1;
}
