/* SPDX-License-Identifier: Apache-2.0 */
/* test-output.c — the coalescer of workloads' output (server/output.c): order kept, only the newest BOUND lines
 * kept with the rest counted as passed over, the byte bound signalled, texts intact across the arena's
 * compactions and growth, and a take that empties it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/output.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

/* Line I's text: "line I" padded with 'x' to a length that varies with I (0..299 extra bytes). */
static size_t
line_text (long i, char *buf, size_t size)
{
  int n = snprintf (buf, size, "line %ld ", i);
  size_t pad = (size_t)(i * 7919 % 300);
  if ((size_t)n + pad >= size)
    pad = size - (size_t)n - 1;
  memset (buf + n, 'x', pad);
  return (size_t)n + pad;
}

static int
lines_are (const nex_log_line_t *lines, size_t n, long first)
{
  char want[512];
  for (size_t k = 0; k < n; k++)
    {
      size_t len = line_text (first + (long)k, want, sizeof want);
      if (lines[k].len != len || memcmp (lines[k].text, want, len) != 0 || lines[k].ts != first + (long)k
          || lines[k].stream != ((first + (long)k) % 10 == 0 ? NEX_STREAM_STDERR : NEX_STREAM_STDOUT))
        {
          fprintf (stderr, "# line %zu (%ld): %.*s\n", k, first + (long)k, (int)lines[k].len, lines[k].text);
          return 0;
        }
    }
  return 1;
}

static void
add_range (nex_output_t *o, long from, long to, int *full)
{
  char buf[512];
  for (long i = from; i < to; i++)
    {
      size_t len = line_text (i, buf, sizeof buf);
      *full |= nex_output_add (o, i % 10 == 0 ? NEX_STREAM_STDERR : NEX_STREAM_STDOUT, i, buf, len);
    }
}

int
main (void)
{
  /* Fewer lines than the bound: every one, in order, nothing passed over. */
  nex_output_t *o = nex_output_new (1000, 1 << 20);
  int full = 0;
  add_range (o, 0, 700, &full);
  nex_log_line_t *lines;
  int64_t skipped = -1;
  size_t n = nex_output_take (o, &lines, &skipped);
  TAP_OK (n == 700 && skipped == 0 && lines_are (lines, n, 0) && !full,
          "output: 700 lines under a bound of 1000 come out in order, none passed over");
  free (lines);
  TAP_OK (nex_output_pending (o) == 0, "output: a take empties it");

  /* Far more than the bound: the newest 1000, the others counted; the arena compacts and grows meanwhile. */
  add_range (o, 700, 250700, &full);
  n = nex_output_take (o, &lines, &skipped);
  TAP_OK (n == 1000 && skipped == 249000 && lines_are (lines, n, 249700),
          "output: of 250,000 lines the newest 1000 are kept intact, 249,000 counted as passed over");
  free (lines);
  TAP_OK (!full, "output: text passed over does not count towards the byte bound");

  /* A take then more lines: the counts start again. */
  add_range (o, 250700, 250710, &full);
  n = nex_output_take (o, &lines, &skipped);
  TAP_OK (n == 10 && skipped == 0 && lines_are (lines, n, 250700), "output: after a take, counting starts afresh");
  free (lines);
  n = nex_output_take (o, &lines, &skipped);
  TAP_OK (n == 0 && lines == NULL && skipped == 0, "output: an empty take gives nothing");
  nex_output_free (o);

  /* The byte bound: kept text reaching it says "flush now". */
  o = nex_output_new (100000, 64 << 10);
  full = 0;
  long i = 0;
  char buf[512];
  while (!full && i < 100000)
    {
      size_t len = line_text (i, buf, sizeof buf);
      full = nex_output_add (o, NEX_STREAM_STDOUT, i, buf, len);
      i++;
    }
  TAP_OK (full && i > 200 && i < 1000, "output: 64 KiB of kept text asks for a flush (after %ld lines)", i);
  nex_output_free (o);

  /* A bound of one, and empty lines. */
  o = nex_output_new (1, 4096);
  nex_output_add (o, NEX_STREAM_STDOUT, 1, "", 0);
  nex_output_add (o, NEX_STREAM_STDOUT, 2, "b", 1);
  n = nex_output_take (o, &lines, &skipped);
  TAP_OK (n == 1 && skipped == 1 && lines[0].len == 1 && lines[0].text[0] == 'b' && lines[0].ts == 2,
          "output: a bound of 1 keeps the last line");
  free (lines);
  nex_output_free (o);
  nex_output_free (NULL);
  return tap_done ();
}
