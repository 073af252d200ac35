/* SPDX-License-Identifier: Apache-2.0 */
/* test-jsontext.c — common/jsontext: the writer's text against jansson's json_dumps (JSON_COMPACT) byte for byte
 * over seeded random values (strings of random bytes and UTF-8, integers to their limits, reals, nesting), text
 * that is not UTF-8 (written with U+FFFD, always read back), the separators of hand-built objects, and the
 * workload's JSON (server/workload.c) written as text beside its json_t form. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/jsontext.h"
#include "common/utf8.h"
#include "server/workload.h"
#include "tap.h"
#include "testutil.h"

/* A random string of up to 24 characters: ASCII, control characters, quotes, backslashes, 2- to 4-byte UTF-8. */
static json_t *
random_string (void)
{
  static const char *const pieces[] = { "a",
                                        "Z",
                                        " ",
                                        "\"",
                                        "\\",
                                        "/",
                                        "\n",
                                        "\t",
                                        "\x01",
                                        "\x1f",
                                        "\x7f",
                                        "\xc3\xa9",
                                        "\xe2\x82\xac",
                                        "\xf0\x9f\x98\x80",
                                        "\xe2\x80\xa8",
                                        "\b",
                                        "\f" };
  char buf[128] = "";
  size_t n = test_rng () % 24;
  for (size_t i = 0; i < n; i++)
    strcat (buf, pieces[test_rng () % (sizeof pieces / sizeof pieces[0])]);
  return json_string (buf);
}

static json_t *
random_value (int depth)
{
  switch (test_rng () % (depth > 4 ? 6 : 8))
    {
    case 0:
      return random_string ();
    case 1:
      {
        static const json_int_t edges[] = { 0, -1, 1, INT64_MAX, INT64_MIN, 1000000007, -42 };
        return json_integer (test_rng () % 2 ? edges[test_rng () % 7] : (json_int_t)test_rng ());
      }
    case 2:
      {
        static const double reals[]
            = { 0.0, -0.0, 0.5, 0.2, 1.0, -3.25, 1e20, 1e-7, 123456789.125, DBL_MAX, DBL_MIN, 5e-324, 1.0 / 3.0 };
        return json_real (test_rng () % 2 ? reals[test_rng () % 13]
                                          : (double)(int64_t)test_rng () / (double)(1 + test_rng () % 1000000));
      }
    case 3:
      return json_true ();
    case 4:
      return json_false ();
    case 5:
      return json_null ();
    case 6:
      {
        json_t *a = json_array ();
        for (size_t i = test_rng () % 5; i > 0; i--)
          json_array_append_new (a, random_value (depth + 1));
        return a;
      }
    default:
      {
        json_t *o = json_object ();
        for (size_t i = test_rng () % 5; i > 0; i--)
          {
            cleanup_json json_t *key = random_string ();
            json_object_set_new (o, json_string_value (key), random_value (depth + 1));
          }
        return o;
      }
    }
}

static void
test_against_jansson (void)
{
  int same = 0, rounds = 2000;
  for (int i = 0; i < rounds; i++)
    {
      cleanup_json json_t *v = random_value (0);
      cleanup_free char *want = json_dumps (v, JSON_COMPACT | JSON_ENCODE_ANY);
      size_t len = 0;
      cleanup_free char *got = nex_jsontext_dumps (v, &len);
      if (want && strcmp (want, got) == 0 && len == strlen (got))
        same++;
      else if (same == i)
        printf ("# first difference: jansson %s, jsontext %s\n", want ? want : "(null)", got);
    }
  TAP_OK (same == rounds, "jsontext: %d of %d random values written as json_dumps writes them", same, rounds);
}

static void
test_not_utf8 (void)
{
  static const char *const bad[]
      = { "\xff", "a\x80z", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "ok\xe2\x82" };
  int ok = 1;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      nex_jsontext_t t = { 0 };
      nex_jsontext_string (&t, bad[i]);
      cleanup_json json_t *back = nex_jsontext_load (&t);
      size_t n;
      cleanup_free char *want = nex_utf8_sanitize (bad[i], strlen (bad[i]), &n);
      if (!json_is_string (back) || strcmp (json_string_value (back), want) != 0)
        {
          printf ("# case %zu did not read back as its sanitized form\n", i);
          ok = 0;
        }
    }
  TAP_OK (ok, "jsontext: bytes that are not UTF-8 are written as U+FFFD and the text reads back");

  nex_jsontext_t t = { 0 };
  nex_jsontext_stringn (&t, "a\0b", 3);
  cleanup_json json_t *nul = nex_jsontext_load (&t);
  TAP_OK (json_is_string (nul) && json_string_length (nul) == 3 && json_string_value (nul)[1] == '\0',
          "jsontext: a NUL byte is written as \\u0000 and reads back");

  nex_jsontext_t r = { 0 };
  nex_jsontext_open (&r, '[');
  nex_jsontext_real (&r, NAN);
  nex_jsontext_real (&r, INFINITY);
  nex_jsontext_real (&r, -INFINITY);
  nex_jsontext_close (&r, ']');
  cleanup_free char *nan = nex_jsontext_steal (&r, NULL);
  TAP_OK (strcmp (nan, "[null,null,null]") == 0, "jsontext: NaN and infinities are written as null (`%s`)", nan);
}

static void
test_built_by_hand (void)
{
  nex_jsontext_t t = { 0 };
  nex_jsontext_open (&t, '{');
  nex_jsontext_key (&t, "a");
  nex_jsontext_open (&t, '[');
  nex_jsontext_open (&t, '{');
  nex_jsontext_close (&t, '}');
  nex_jsontext_int (&t, -5);
  nex_jsontext_open (&t, '[');
  nex_jsontext_close (&t, ']');
  nex_jsontext_string (&t, NULL);
  nex_jsontext_close (&t, ']');
  nex_jsontext_key (&t, "b\"");
  nex_jsontext_bool (&t, 1);
  nex_jsontext_key (&t, "c");
  nex_jsontext_value (&t, NULL);
  nex_jsontext_close (&t, '}');
  size_t len;
  cleanup_free char *text = nex_jsontext_steal (&t, &len);
  TAP_OK (strcmp (text, "{\"a\":[{},-5,[],null],\"b\\\"\":true,\"c\":null}") == 0 && len == strlen (text),
          "jsontext: commas and colons of a nested object built by hand (`%s`)", text);
  nex_jsontext_t empty = { 0 };
  cleanup_free char *nothing = nex_jsontext_steal (&empty, &len);
  TAP_OK (nothing[0] == '\0' && len == 0, "jsontext: an empty buffer gives \"\"");
}

static void
test_workload_text (void)
{
  cleanup_json json_t *body = json_pack (
      "{s:s, s:s, s:s, s:s, s:[s,s], s:{s:s}, s:{s:f, s:i}, s:{s:s}, s:s}", "name", "web", "description", "w\xc3\xa9\n",
      "namespace", "ns", "artifact", "file:///bin/true", "argv", "a", "\x01", "env", "K", "v\"", "resources", "vcpus",
      0.2, "memory_mb", 64, "labels", "app", "x", "restart_policy", "on-failure");
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  int r = nex_workload_from_request (body, "sandbox", &w, &err);
  TAP_OK (r == 0, "jsontext: a workload from a request (%s)", err ? err->msg : "ok");
  if (r < 0)
    return;
  w.reason = nex_xstrdup ("bad \xff byte");
  nex_jsontext_t t = { 0 };
  nex_workload_write_json (&t, &w);
  cleanup_json json_t *back = json_loadb (t.data, t.len, 0, NULL);
  nex_jsontext_release (&t);
  cleanup_json json_t *j = nex_workload_to_json (&w);
  const json_t *res = json_object_get (back, "resources");
  TAP_OK (back && json_equal (back, j)
              && strcmp (json_string_value (json_object_get (back, "description")), "w\xc3\xa9\n") == 0
              && json_real_value (json_object_get (res, "vcpus")) == 0.2
              && strcmp (json_string_value (json_object_get (back, "reason")), "bad " NEX_UTF8_REPLACEMENT " byte") == 0
              && json_object_size (back) == json_object_size (j) && json_object_size (back) > 40,
          "jsontext: a workload's text reads back as its json_t form (%zu fields, a bad byte in its reason shown "
          "as U+FFFD)",
          back ? json_object_size (back) : 0);
}

int
main (void)
{
  test_against_jansson ();
  test_not_utf8 ();
  test_built_by_hand ();
  test_workload_text ();
  return tap_done ();
}
