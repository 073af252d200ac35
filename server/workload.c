/* workload.c — the workload model: state names, strict validation of a client's deploy request into a
 * nex_workload_t, and the workload's public JSON form (see workload.h for the contracts).
 *
 * Validation is the only gate between untrusted request bodies and everything downstream (the registry, the
 * supervisor, the sandbox's argv and environment), so it is strict: every field is type-checked and bounded,
 * strings that end up in C strings may not carry NUL bytes, and unknown fields are refused.  Each failure
 * names the offending field as a JSON path ("argv[2]", "env.PATH") so that clients can point at it. */
#include "server/workload.h"

#include <ctype.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/id.h"

/* Bounds on a request; they keep one deploy from pinning unbounded memory or an oversized exec. */
#define NAME_MAX_LEN 63
#define ARTIFACT_MAX_LEN 4096
#define DESCRIPTION_MAX_LEN 1024
#define ARGV_MAX_ENTRIES 4096
#define ENV_MAX_ENTRIES 4096
#define LABELS_MAX_ENTRIES 64
#define LABEL_VALUE_MAX_LEN 255

static const char *const state_names[NEX_STATE__COUNT] = {
  [NEX_STATE_PENDING] = "pending", [NEX_STATE_STARTING] = "starting", [NEX_STATE_RUNNING] = "running",
  [NEX_STATE_EXITED] = "exited",   [NEX_STATE_FAILED] = "failed",     [NEX_STATE_STOPPED] = "stopped",
};

const char *
nex_state_name (nex_state_t state)
{
  if ((unsigned) state >= NEX_STATE__COUNT)
    return "unknown";
  return state_names[state];
}

int
nex_state_parse (const char *name, nex_state_t *out, nex_error_t *err)
{
  for (int i = 0; i < NEX_STATE__COUNT; i++)
    if (name != NULL && strcmp (name, state_names[i]) == 0)
      {
        *out = (nex_state_t) i;
        return 0;
      }
  return nex_error_field (err, "state", "unknown state `%s`", name ? name : "(null)");
}

int
nex_state_is_final (nex_state_t state)
{
  return state == NEX_STATE_EXITED || state == NEX_STATE_FAILED || state == NEX_STATE_STOPPED;
}

void
nex_workload_release (nex_workload_t *w)
{
  if (w == NULL)
    return;
  free (w->name);
  free (w->namespace_);
  free (w->description);
  free (w->artifact);
  free (w->sha256);
  free (w->digest);
  json_decref (w->argv);
  json_decref (w->env);
  free (w->driver);
  free (w->reason);
  free (w->endpoint);
  json_decref (w->labels);
  memset (w, 0, sizeof *w);
}

/* True for a name, namespace or driver: [A-Za-z0-9][A-Za-z0-9._-]{0,62}.  The rule keeps these usable as
 * path components and NATS subject tokens (no '/', no '*', no '>', no spaces, no leading dot). */
static int
is_valid_name (const char *s, size_t len)
{
  if (len == 0 || len > NAME_MAX_LEN || !isalnum ((unsigned char) s[0]))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!isalnum ((unsigned char) s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
      return 0;
  return 1;
}

/* True when the JSON string V holds a NUL byte (jansson keeps them when the parser allowed them). */
static int
has_nul (const json_t *v)
{
  return strlen (json_string_value (v)) != json_string_length (v);
}

/* Reads the optional string member KEY of BODY into *OUT (a copy, NULL when absent or null).  The string must
 * hold no NUL and at most MAX_LEN bytes.  REQUIRED makes absence an error. */
static int
read_string (const json_t *body, const char *key, int required, size_t max_len, char **out, nex_error_t *err)
{
  const json_t *v = json_object_get (body, key);
  *out = NULL;
  if (v == NULL || json_is_null (v))
    return required ? nex_error_field (err, key, "is required") : 0;
  if (!json_is_string (v))
    return nex_error_field (err, key, "must be a string");
  if (has_nul (v))
    return nex_error_field (err, key, "must not contain NUL bytes");
  if (json_string_length (v) > max_len)
    return nex_error_field (err, key, "must be at most %zu bytes", max_len);
  *out = nex_xstrdup (json_string_value (v));
  return 0;
}

/* As read_string for a field under the name rule (is_valid_name).  DEFAULT_VALUE when absent; a NULL
 * DEFAULT_VALUE makes the field required. */
static int
read_name (const json_t *body, const char *key, const char *default_value, char **out, nex_error_t *err)
{
  if (read_string (body, key, default_value == NULL, SIZE_MAX, out, err) < 0)
    return -1;
  if (*out == NULL)
    {
      *out = nex_xstrdup (default_value);
      return 0;
    }
  if (!is_valid_name (*out, strlen (*out)))
    return nex_error_field (
        err, key, "must be 1 to %d characters from A-Z a-z 0-9 . _ - starting with a letter or digit", NAME_MAX_LEN);
  return 0;
}

/* sha256: 64 hex digits, kept lower-case so that comparisons with computed digests are plain strcmp. */
static int
read_sha256 (const json_t *body, char **out, nex_error_t *err)
{
  if (read_string (body, "sha256", 0, SIZE_MAX, out, err) < 0)
    return -1;
  if (*out == NULL)
    return 0;
  char *hex = *out;
  int ok = strlen (hex) == 64;
  for (size_t i = 0; ok && hex[i] != '\0'; i++)
    {
      ok = isxdigit ((unsigned char) hex[i]);
      hex[i] = (char) tolower ((unsigned char) hex[i]);
    }
  if (!ok)
    return nex_error_field (err, "sha256", "must be 64 hexadecimal digits");
  return 0;
}

/* argv: an array of strings without NUL, copied into a new array (an empty one when absent). */
static int
read_argv (const json_t *body, json_t **out, nex_error_t *err)
{
  const json_t *v = json_object_get (body, "argv");
  *out = json_array ();
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_array (v))
    return nex_error_field (err, "argv", "must be an array of strings");
  if (json_array_size (v) > ARGV_MAX_ENTRIES)
    return nex_error_field (err, "argv", "must have at most %d entries", ARGV_MAX_ENTRIES);
  size_t i;
  const json_t *arg;
  json_array_foreach (v, i, arg)
  {
    cleanup_free char *field = nex_xasprintf ("argv[%zu]", i);
    if (!json_is_string (arg))
      return nex_error_field (err, field, "must be a string");
    if (has_nul (arg))
      return nex_error_field (err, field, "must not contain NUL bytes");
    json_array_append_new (*out, json_string (json_string_value (arg)));
  }
  return 0;
}

/* env: an object of string values, copied.  Keys become NAME=VALUE entries of the workload's environment, so
 * a key may not be empty nor hold '=' (which would smuggle a different variable) or NUL (which would cut it). */
static int
read_env (const json_t *body, json_t **out, nex_error_t *err)
{
  const json_t *v = json_object_get (body, "env");
  *out = json_object ();
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_object (v))
    return nex_error_field (err, "env", "must be an object of strings");
  if (json_object_size (v) > ENV_MAX_ENTRIES)
    return nex_error_field (err, "env", "must have at most %d entries", ENV_MAX_ENTRIES);
  const char *key;
  size_t key_len;
  json_t *value;
  json_object_keylen_foreach ((json_t *) v, key, key_len, value)
  {
    cleanup_free char *field = nex_xasprintf ("env.%s", key);
    if (key_len == 0 || strlen (key) != key_len || strchr (key, '=') != NULL)
      return nex_error_field (err, field, "variable names must be non-empty and hold neither '=' nor NUL");
    if (!json_is_string (value))
      return nex_error_field (err, field, "must be a string");
    if (has_nul (value))
      return nex_error_field (err, field, "must not contain NUL bytes");
    json_object_set_new (*out, key, json_string (json_string_value (value)));
  }
  return 0;
}

int
nex_label_key_valid (const char *key, size_t len)
{
  if (len == 0 || len > NAME_MAX_LEN || !isalnum ((unsigned char) key[0]))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!isalnum ((unsigned char) key[i]) && strchr ("._/-", key[i]) == NULL)
      return 0;
  return 1;
}

/* labels: an object of short string values under keys of the label rule (no quotes, spaces or control
 * characters: keys end up in JSON paths of SQL filters and in CLI output), copied. */
static int
read_labels (const json_t *body, json_t **out, nex_error_t *err)
{
  const json_t *v = json_object_get (body, "labels");
  *out = json_object ();
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_object (v))
    return nex_error_field (err, "labels", "must be an object of strings");
  if (json_object_size (v) > LABELS_MAX_ENTRIES)
    return nex_error_field (err, "labels", "must have at most %d entries", LABELS_MAX_ENTRIES);
  const char *key;
  size_t key_len;
  json_t *value;
  json_object_keylen_foreach ((json_t *) v, key, key_len, value)
  {
    cleanup_free char *field = nex_xasprintf ("labels.%s", key);
    if (!nex_label_key_valid (key, key_len) || strlen (key) != key_len)
      return nex_error_field (
          err, field, "label keys must be 1 to %d characters from A-Z a-z 0-9 . _ / - starting with a letter or digit",
          NAME_MAX_LEN);
    if (!json_is_string (value))
      return nex_error_field (err, field, "must be a string");
    if (json_string_length (value) > LABEL_VALUE_MAX_LEN)
      return nex_error_field (err, field, "must be at most %d bytes", LABEL_VALUE_MAX_LEN);
    for (const unsigned char *c = (const unsigned char *) json_string_value (value); *c; c++)
      if (*c < 0x20 || *c == 0x7f)
        return nex_error_field (err, field, "must not contain control characters");
    if (has_nul (value))
      return nex_error_field (err, field, "must not contain NUL bytes");
    json_object_set_new (*out, key, json_string (json_string_value (value)));
  }
  return 0;
}

/* Refuses members other than the deploy fields, so that a misspelt optional field is an error, not a default. */
static int
check_known_fields (const json_t *body, nex_error_t *err)
{
  static const char *const known[]
      = { "name", "namespace", "artifact", "sha256", "argv", "env", "description", "driver", "labels", NULL };
  const char *key;
  const json_t *value;
  json_object_foreach ((json_t *) body, key, value)
  {
    size_t i = 0;
    while (known[i] != NULL && strcmp (known[i], key) != 0)
      i++;
    if (known[i] == NULL)
      return nex_error_field (err, key, "unknown field");
  }
  return 0;
}

int
nex_workload_from_request (const json_t *body, const char *default_driver, nex_workload_t *out, nex_error_t *err)
{
  __attribute__ ((cleanup (nex_workload_release))) nex_workload_t w = { 0 };

  memset (out, 0, sizeof *out);
  if (!json_is_object (body))
    return nex_error_field (err, "", "request body must be a JSON object");
  if (check_known_fields (body, err) < 0 || read_name (body, "name", NULL, &w.name, err) < 0
      || read_name (body, "namespace", "default", &w.namespace_, err) < 0
      || read_string (body, "artifact", 1, ARTIFACT_MAX_LEN, &w.artifact, err) < 0
      || read_sha256 (body, &w.sha256, err) < 0 || read_argv (body, &w.argv, err) < 0
      || read_env (body, &w.env, err) < 0
      || read_string (body, "description", 0, DESCRIPTION_MAX_LEN, &w.description, err) < 0
      || read_name (body, "driver", default_driver, &w.driver, err) < 0 || read_labels (body, &w.labels, err) < 0)
    return -1;
  if (w.artifact[0] == '\0')
    return nex_error_field (err, "artifact", "must not be empty");

  nex_id_new (w.id);
  w.state = NEX_STATE_PENDING;
  w.created_at = w.updated_at = nex_clock_now_ms ();
  *out = w;
  memset (&w, 0, sizeof w);
  return 0;
}

/* A string member, or null when absent. */
static json_t *
string_or_null (const char *s)
{
  return s ? json_string (s) : json_null ();
}

/* A time as RFC 3339, or null when it has not happened (0). */
static json_t *
time_or_null (int64_t ms)
{
  char buf[NEX_CLOCK_RFC3339_LEN];
  return ms ? json_string (nex_clock_format (ms, buf, sizeof buf)) : json_null ();
}

/* An integer, or null when PRESENT is false. */
static json_t *
integer_or_null (int present, json_int_t value)
{
  return present ? json_integer (value) : json_null ();
}

json_t *
nex_workload_to_json (const nex_workload_t *w)
{
  json_t *o = json_object ();
  json_object_set_new (o, "id", json_string (w->id));
  json_object_set_new (o, "name", string_or_null (w->name));
  json_object_set_new (o, "namespace", string_or_null (w->namespace_));
  json_object_set_new (o, "description", string_or_null (w->description));
  json_object_set_new (o, "artifact", string_or_null (w->artifact));
  json_object_set_new (o, "sha256", string_or_null (w->sha256));
  json_object_set_new (o, "digest", string_or_null (w->digest));
  json_object_set_new (o, "argv", w->argv ? json_deep_copy (w->argv) : json_array ());
  json_object_set_new (o, "env", w->env ? json_deep_copy (w->env) : json_object ());
  json_object_set_new (o, "driver", string_or_null (w->driver));
  json_object_set_new (o, "state", json_string (nex_state_name (w->state)));
  json_object_set_new (o, "reason", string_or_null (w->reason));
  json_object_set_new (o, "exit_code", integer_or_null (w->has_exit_code, w->exit_code));
  json_object_set_new (o, "exit_signal", integer_or_null (w->exit_signal != 0, w->exit_signal));
  json_object_set_new (o, "pid", integer_or_null (w->pid != 0, w->pid));
  json_object_set_new (o, "created_at", time_or_null (w->created_at));
  json_object_set_new (o, "updated_at", time_or_null (w->updated_at));
  json_object_set_new (o, "started_at", time_or_null (w->started_at));
  json_object_set_new (o, "finished_at", time_or_null (w->finished_at));
  json_object_set_new (
      o, "logs", json_pack ("{s:I, s:I}", "lines", (json_int_t) w->log_lines, "dropped", (json_int_t) w->log_dropped));
  json_object_set_new (o, "labels", w->labels ? json_deep_copy (w->labels) : json_object ());
  return o;
}
