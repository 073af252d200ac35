/* SPDX-License-Identifier: Apache-2.0 */
/* output.h — a workload's output lines waiting to be stored: coalesced, and bounded as the log is.
 *
 * A chatty workload prints faster than SQLite stores lines one batch at a time, and the registry keeps only the
 * last log_lines of them anyway.  So the supervisor does not store what it reads at once: it adds the lines here
 * and flushes them on a short deadline (or before the workload's next state change, or when too many bytes wait).
 * Of what waits, only the newest BOUND lines are kept — the older ones could not outlive the registry's bound —
 * and the number passed over is handed to the flush, which numbers and counts them as dropped (a ring of BOUND
 * lines in one byte arena: no allocation per line, nothing inserted only to be deleted).
 *
 * Not thread-safe: one owner (the supervisor thread). */
#ifndef NEX_OUTPUT_H
#define NEX_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "server/registry.h"

typedef struct nex_output nex_output_t;

/* Lines waiting of one workload, at most BOUND (>= 1) of them and about MAX_BYTES of text. */
nex_output_t *nex_output_new (int64_t bound, size_t max_bytes);

void nex_output_free (nex_output_t *o); /* safe on NULL; what waits is lost: flush first */

/* Adds one line (its text copied).  Returns 1 when the waiting text has reached MAX_BYTES: flush now. */
int nex_output_add (nex_output_t *o, nex_stream_t stream, int64_t ts, const char *text, size_t len);

/* How many lines wait (kept ones; the passed-over ones are not counted here). */
size_t nex_output_pending (const nex_output_t *o);

/* How many lines were passed over since the last take (the bound overflowed: a flood). */
int64_t nex_output_skipped (const nex_output_t *o);

/* The waiting lines, oldest first, in *LINES (N of them; their texts point into O, valid until the next call on
 * O), and in *SKIPPED how many older lines were passed over since the last take.  Empties O.  *LINES is a new
 * array the caller frees (NULL when N is 0). */
size_t nex_output_take (nex_output_t *o, nex_log_line_t **lines, int64_t *skipped);

#endif
