/* SPDX-License-Identifier: Apache-2.0 */
/* jsontext.c — see jsontext.h. */
#include "common/jsontext.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "common/xalloc.h"

/* Grows T to hold N more bytes and the NUL after them (the slow side of reserve). */
static void
grow (nex_jsontext_t *t, size_t n)
{
  size_t cap = t->cap ? t->cap : 256;
  while (cap < t->len + n + 1)
    cap *= 2;
  t->data = nex_xrealloc (t->data, cap);
  t->cap = cap;
}

/* Makes room for N more bytes and the NUL after them. */
static inline void
reserve (nex_jsontext_t *t, size_t n)
{
  if (__builtin_expect (t->len + n + 1 > t->cap, 0))
    grow (t, n);
}

static inline void
put (nex_jsontext_t *t, const char *s, size_t n)
{
  if (n == 0)
    return;
  reserve (t, n);
  memcpy (t->data + t->len, s, n);
  t->len += n;
  t->data[t->len] = '\0';
}

static inline void
put_char (nex_jsontext_t *t, char c)
{
  reserve (t, 1);
  t->data[t->len++] = c;
  t->data[t->len] = '\0';
}

/* The comma before a value or key that follows another one at the same level. */
static void
separate (nex_jsontext_t *t)
{
  if (t->need_comma)
    put_char (t, ',');
  t->need_comma = 0;
}

void
nex_jsontext_release (nex_jsontext_t *t)
{
  free (t->data);
  memset (t, 0, sizeof *t);
}

char *
nex_jsontext_steal (nex_jsontext_t *t, size_t *len)
{
  char *text = t->data ? t->data : nex_xstrdup ("");
  if (len)
    *len = t->len;
  memset (t, 0, sizeof *t);
  return text;
}

void
nex_jsontext_raw (nex_jsontext_t *t, const char *text, size_t len)
{
  put (t, text, len);
}

void
nex_jsontext_open (nex_jsontext_t *t, char bracket)
{
  separate (t);
  put_char (t, bracket);
}

void
nex_jsontext_close (nex_jsontext_t *t, char bracket)
{
  put_char (t, bracket);
  t->need_comma = 1;
}

/* Bytes a string's text cannot hold as they are: control characters, `"`, `\\` and everything from 0x80 (which
 * must be checked to be UTF-8). */
static const unsigned char special[256] = {
  [0x00 ... 0x1F] = 1,
  ['"'] = 1,
  ['\\'] = 1,
  [0x80 ... 0xFF] = 1,
};

/* Writes LEN bytes of S as the body of a JSON string (no quotes): runs that need nothing are copied at once. */
static void
put_escaped (nex_jsontext_t *t, const char *s, size_t len)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t run = 0; /* start of the bytes not yet copied */
  size_t i = 0;
  while (i < len)
    {
      if (!special[u[i]])
        {
          i++;
          continue;
        }
      unsigned char c = u[i];
      size_t n = c < 0x80 ? 1 : nex_utf8_sequence (s + i, len - i);
      if (n > 1)
        {
          i += n; /* well-formed UTF-8 is written as it is */
          continue;
        }
      put (t, s + run, i - run);
      char esc[8];
      switch (c)
        {
        case '"':
          put (t, "\\\"", 2);
          break;
        case '\\':
          put (t, "\\\\", 2);
          break;
        case '\b':
          put (t, "\\b", 2);
          break;
        case '\f':
          put (t, "\\f", 2);
          break;
        case '\n':
          put (t, "\\n", 2);
          break;
        case '\r':
          put (t, "\\r", 2);
          break;
        case '\t':
          put (t, "\\t", 2);
          break;
        default:
          if (c < 0x20)
            {
              snprintf (esc, sizeof esc, "\\u%04X", c);
              put (t, esc, 6);
            }
          else
            put (t, NEX_UTF8_REPLACEMENT, 3); /* a byte that starts no well-formed sequence */
        }
      i++;
      run = i;
    }
  put (t, s + run, len - run);
}

static void
put_string (nex_jsontext_t *t, const char *s, size_t len)
{
  reserve (t, len + 2);
  t->data[t->len++] = '"';
  if (s && len)
    put_escaped (t, s, len);
  put_char (t, '"');
}

void
nex_jsontext_key (nex_jsontext_t *t, const char *key)
{
  separate (t);
  put_string (t, key, strlen (key));
  put_char (t, ':');
}

void
nex_jsontext_null (nex_jsontext_t *t)
{
  separate (t);
  put (t, "null", 4);
  t->need_comma = 1;
}

void
nex_jsontext_string (nex_jsontext_t *t, const char *s)
{
  if (s == NULL)
    {
      nex_jsontext_null (t);
      return;
    }
  separate (t);
  put_string (t, s, strlen (s));
  t->need_comma = 1;
}

void
nex_jsontext_stringn (nex_jsontext_t *t, const char *s, size_t len)
{
  separate (t);
  put_string (t, s, len);
  t->need_comma = 1;
}

void
nex_jsontext_int (nex_jsontext_t *t, int64_t v)
{
  /* By hand, from the last digit: snprintf was a tenth of writing a page of workloads. */
  char buf[24];
  char *end = buf + sizeof buf, *p = end;
  uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do
    *--p = (char)('0' + mag % 10);
  while ((mag /= 10) != 0);
  if (v < 0)
    *--p = '-';
  separate (t);
  put (t, p, (size_t)(end - p));
  t->need_comma = 1;
}

void
nex_jsontext_real (nex_jsontext_t *t, double v)
{
  if (!isfinite (v))
    {
      nex_jsontext_null (t);
      return;
    }
  /* 17 significant digits read back as the same double; a `.` or an exponent keeps it a real when read. */
  char buf[40];
  int n = snprintf (buf, sizeof buf - 2, "%.17g", v);
  if (strpbrk (buf, ".eE") == NULL)
    {
      memcpy (buf + n, ".0", 3);
      n += 2;
    }
  /* "1e+20" as jansson writes it: "1e20" (no plus sign, no leading zeros in the exponent). */
  char *e = strchr (buf, 'e');
  if (e)
    {
      char *start = e + 1;
      if (*start == '-')
        start++;
      char *end = start;
      if (*end == '+')
        end++;
      while (*end == '0' && end[1] != '\0')
        end++;
      if (end != start)
        {
          memmove (start, end, strlen (end) + 1);
          n = (int)strlen (buf);
        }
    }
  separate (t);
  put (t, buf, (size_t)n);
  t->need_comma = 1;
}

void
nex_jsontext_bool (nex_jsontext_t *t, int v)
{
  separate (t);
  if (v)
    put (t, "true", 4);
  else
    put (t, "false", 5);
  t->need_comma = 1;
}

void
nex_jsontext_value (nex_jsontext_t *t, const json_t *v)
{
  switch (v ? json_typeof (v) : JSON_NULL)
    {
    case JSON_OBJECT:
      {
        nex_jsontext_open (t, '{');
        const char *key;
        json_t *item;
        /* json_object_foreach takes a non-const object; nothing here changes it. */
        json_t *o = (json_t *)v;
        json_object_foreach (o, key, item)
        {
          separate (t);
          put_string (t, key, strlen (key));
          put_char (t, ':');
          nex_jsontext_value (t, item);
        }
        nex_jsontext_close (t, '}');
        return;
      }
    case JSON_ARRAY:
      {
        nex_jsontext_open (t, '[');
        size_t i;
        json_t *item;
        json_array_foreach (v, i, item) nex_jsontext_value (t, item);
        nex_jsontext_close (t, ']');
        return;
      }
    case JSON_STRING:
      separate (t);
      put_string (t, json_string_value (v), json_string_length (v));
      t->need_comma = 1;
      return;
    case JSON_INTEGER:
      nex_jsontext_int (t, json_integer_value (v));
      return;
    case JSON_REAL:
      nex_jsontext_real (t, json_real_value (v));
      return;
    case JSON_TRUE:
      nex_jsontext_bool (t, 1);
      return;
    case JSON_FALSE:
      nex_jsontext_bool (t, 0);
      return;
    case JSON_NULL:
    default:
      nex_jsontext_null (t);
      return;
    }
}

char *
nex_jsontext_dumps (const json_t *v, size_t *len)
{
  nex_jsontext_t t = { 0 };
  nex_jsontext_value (&t, v);
  return nex_jsontext_steal (&t, len);
}

json_t *
nex_jsontext_load (nex_jsontext_t *t)
{
  /* JSON_ALLOW_NUL: a string holding U+0000 (written as \u0000) reads back as it was; any value, not only an
   * object or an array. */
  json_t *v = t->data ? json_loadb (t->data, t->len, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL) : NULL;
  nex_jsontext_release (t);
  return v;
}
