/* utf8.h — making arbitrary bytes (a workload's output) safe to store as text and to put in JSON strings. */
#ifndef NEX_UTF8_H
#define NEX_UTF8_H

#include <stddef.h>

/* Copies LEN bytes of TEXT, replacing every byte that does not start a well-formed UTF-8 sequence (overlong
 * forms, surrogates and code points above U+10FFFF included) with U+FFFD.  Sets *OUT_LEN; the copy is
 * NUL-terminated and the caller frees it.  Any thread. */
char *nex_utf8_sanitize (const char *text, size_t len, size_t *out_len);

#endif
