/* SPDX-License-Identifier: Apache-2.0 */
/* utf8.h — making arbitrary bytes safe to store and show as text.
 *
 * Whatever a workload prints ends up in SQLite TEXT columns and JSON strings, which must hold UTF-8; the registry
 * and the live log streams both turn raw output into text with the one function here. */
#ifndef NEX_UTF8_H
#define NEX_UTF8_H

#include <stddef.h>

/* U+FFFD, what every byte that does not start a well-formed sequence becomes (3 bytes). */
#define NEX_UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* The length (1 to 4) of the well-formed UTF-8 sequence TEXT starts within its AVAIL bytes, or 0 when it starts
 * none (a stray continuation byte, an overlong form, a surrogate, a code point above U+10FFFF, a cut sequence).
 * Any thread. */
size_t nex_utf8_sequence (const char *text, size_t avail);

/* Whether LEN bytes of TEXT are all well-formed UTF-8 (what nex_utf8_sanitize would copy unchanged).  Any
 * thread. */
int nex_utf8_valid (const char *text, size_t len);

/* Copies LEN bytes of TEXT, replacing every byte that does not start a well-formed UTF-8 sequence (overlong
 * forms, surrogates and code points above U+10FFFF included) with U+FFFD, so that whatever a workload prints
 * can always be stored as TEXT and turned into a JSON string.  Sets *OUT_LEN; the copy is NUL-terminated.
 * Any thread. */
char *nex_utf8_sanitize (const char *text, size_t len, size_t *out_len);

#endif
