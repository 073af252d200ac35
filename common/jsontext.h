/* SPDX-License-Identifier: Apache-2.0 */
/* jsontext.h — writing JSON text straight into a growing buffer.
 *
 * jansson's json_dumps checks every object and array it writes for loops through a hash table keyed by the
 * pointer printed as text, which made dumping a page of 1000 workloads (900 KB) cost 13 ms, and building a json_t
 * per workload only to dump it costs as much again.  This writer emits the same compact form (`,` and `:` without
 * spaces, keys in their order, strings in UTF-8 with `"`, `\` and control characters escaped, reals with 17
 * significant digits and always a `.` or an exponent) into one buffer: callers write whole values (a json_t with
 * nex_jsontext_value) or build an object field by field.  Text that is not valid UTF-8 is written with each bad
 * byte replaced by U+FFFD, so the output is always valid JSON.  A buffer is used by one thread at a time. */
#ifndef NEX_JSONTEXT_H
#define NEX_JSONTEXT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nex_jsontext
{
  char *data; /* NUL-terminated once anything was written; owned */
  size_t len;
  size_t cap;
  int need_comma; /* the next value or key inside the open object or array follows another */
} nex_jsontext_t;

/* Frees T's text and empties it (a zeroed nex_jsontext_t is an empty buffer). */
void nex_jsontext_release (nex_jsontext_t *t);

/* Takes T's text (never NULL: "" when nothing was written) and empties T; *LEN (when not NULL) gets its length. */
char *nex_jsontext_steal (nex_jsontext_t *t, size_t *len);

/* Appends LEN bytes as they are (no separator): for text already known to be JSON. */
void nex_jsontext_raw (nex_jsontext_t *t, const char *text, size_t len);

/* Opens and closes an object or an array: `{` / `}`, `[` / `]`.  Values written in between are separated by
 * commas; inside an object each value follows a nex_jsontext_key. */
void nex_jsontext_open (nex_jsontext_t *t, char bracket);
void nex_jsontext_close (nex_jsontext_t *t, char bracket);

/* Writes KEY (a NUL-terminated string) and `:` inside an open object; the next call writes its value. */
void nex_jsontext_key (nex_jsontext_t *t, const char *key);

/* Writes one value: a string (NULL writes null), an integer, a real (NaN and infinities write null), a
 * boolean, null, or any json_t (NULL writes null). */
void nex_jsontext_string (nex_jsontext_t *t, const char *s);
void nex_jsontext_stringn (nex_jsontext_t *t, const char *s, size_t len); /* LEN bytes, NUL bytes included */
void nex_jsontext_int (nex_jsontext_t *t, int64_t v);
void nex_jsontext_real (nex_jsontext_t *t, double v);
void nex_jsontext_bool (nex_jsontext_t *t, int v);
void nex_jsontext_null (nex_jsontext_t *t);
void nex_jsontext_value (nex_jsontext_t *t, const json_t *v);

/* Reads T's text back as a json_t (new reference; NULL only if it is not one JSON value, which the writers here
 * never produce) and empties T. */
json_t *nex_jsontext_load (nex_jsontext_t *t);

/* The text of V as one NUL-terminated string (owned by the caller), as json_dumps (V, JSON_COMPACT) would
 * write it, without its cost.  V NULL writes "null". */
char *nex_jsontext_dumps (const json_t *v, size_t *len);

#endif
