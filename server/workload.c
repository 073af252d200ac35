/* SPDX-License-Identifier: Apache-2.0 */
/* workload.c — the workload model: state names, strict validation of a client's deploy request into a
 * nex_workload_t, and the workload's public JSON form (see workload.h for the contracts).
 *
 * Validation is the only gate between untrusted request bodies and everything downstream (the registry, the
 * supervisor, the sandbox's argv and environment), so it is strict: every field is type-checked and bounded,
 * strings that end up in C strings may not carry NUL bytes, and unknown fields are refused.  Each failure
 * names the offending field as a JSON path ("argv[2]", "env.PATH") so that clients can point at it. */
#include "server/workload.h"

#include <ctype.h>
#include <signal.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/jsontext.h"
#include "common/xalloc.h"
#include "server/artifacts/image-ref.h"
#include "server/clock.h"
#include "server/id.h"
#include "server/net/spec.h"

/* Bounds on a request; they keep one deploy from pinning unbounded memory or an oversized exec. */
#define NAME_MAX_LEN 63
#define ARTIFACT_MAX_LEN 4096
#define DESCRIPTION_MAX_LEN 1024
#define ARGV_MAX_ENTRIES 4096
#define ENV_MAX_ENTRIES 4096
#define CWD_MAX_LEN 4096
#define USER_MAX_LEN 256
#define MAX_RESTARTS_LIMIT 1000
/* Resource bounds: below the minimums the agent itself cannot run; above the maximums a value is a typo. */
#define VCPUS_MIN 0.01
#define VCPUS_MAX 1024.0
#define MEMORY_MB_MIN 8
#define MEMORY_MB_MAX (16LL << 20) /* 16 TiB */
#define PIDS_MIN 4
#define PIDS_MAX 4194304
#define DISK_MB_MIN 1
#define DISK_MB_MAX (1LL << 20)
#define NET_MBPS_MIN 1
#define NET_MBPS_MAX 100000
#define LABELS_MAX_ENTRIES 64
#define LABEL_VALUE_MAX_LEN 255

static const char *const state_names[NEX_STATE__COUNT] = {
  [NEX_STATE_PENDING] = "pending", [NEX_STATE_STARTING] = "starting", [NEX_STATE_RUNNING] = "running",
  [NEX_STATE_EXITED] = "exited",   [NEX_STATE_FAILED] = "failed",     [NEX_STATE_STOPPED] = "stopped",
  [NEX_STATE_PAUSED] = "paused",
};

const char *
nex_state_name (nex_state_t state)
{
  if ((unsigned)state >= NEX_STATE__COUNT)
    return "unknown";
  return state_names[state];
}

int
nex_state_parse (const char *name, nex_state_t *out, nex_error_t *err)
{
  for (int i = 0; i < NEX_STATE__COUNT; i++)
    if (name != NULL && strcmp (name, state_names[i]) == 0)
      {
        *out = (nex_state_t)i;
        return 0;
      }
  return nex_error_field (err, "state", "unknown state `%s`", name ? name : "(null)");
}

int
nex_state_is_final (nex_state_t state)
{
  return state == NEX_STATE_EXITED || state == NEX_STATE_FAILED || state == NEX_STATE_STOPPED;
}

static const char *const restart_policy_names[] = {
  [NEX_RESTART_NEVER] = "never",
  [NEX_RESTART_ON_FAILURE] = "on-failure",
  [NEX_RESTART_ALWAYS] = "always",
};

const char *
nex_restart_policy_name (nex_restart_policy_t p)
{
  if ((unsigned)p > NEX_RESTART_ALWAYS)
    return "never";
  return restart_policy_names[p];
}

/* Linux capability names by number (linux/capability.h), without the CAP_ prefix. */
static const char *const capability_names[] = {
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_ADMIN",
  "NET_RAW",
  "IPC_LOCK",
  "IPC_OWNER",
  "SYS_MODULE",
  "SYS_RAWIO",
  "SYS_CHROOT",
  "SYS_PTRACE",
  "SYS_PACCT",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_NICE",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "MKNOD",
  "LEASE",
  "AUDIT_WRITE",
  "AUDIT_CONTROL",
  "SETFCAP",
  "MAC_OVERRIDE",
  "MAC_ADMIN",
  "SYSLOG",
  "WAKE_ALARM",
  "BLOCK_SUSPEND",
  "AUDIT_READ",
  "PERFMON",
  "BPF",
  "CHECKPOINT_RESTORE",
};
#define N_CAPABILITIES ((int)(sizeof capability_names / sizeof capability_names[0]))

int
nex_capability_parse (const char *name)
{
  if (strncasecmp (name, "CAP_", 4) == 0)
    name += 4;
  for (int i = 0; i < N_CAPABILITIES; i++)
    if (strcasecmp (name, capability_names[i]) == 0)
      return i;
  return -1;
}

int
nex_signal_parse (const json_t *v)
{
  if (json_is_integer (v) && json_integer_value (v) >= 1 && json_integer_value (v) < NSIG)
    return (int)json_integer_value (v);
  if (!json_is_string (v))
    return -1;
  const char *name = json_string_value (v);
  if (strncasecmp (name, "SIG", 3) == 0)
    name += 3;
  for (int sig = 1; sig < NSIG; sig++)
    {
      const char *abbrev = sigabbrev_np (sig);
      if (abbrev && strcasecmp (abbrev, name) == 0)
        return sig;
    }
  return -1;
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
  json_decref (w->capabilities);
  free (w->cwd);
  json_decref (w->labels);
  json_decref (w->trigger_subjects);
  free (w->image);
  free (w->image_digest);
  json_decref (w->entrypoint);
  json_decref (w->cmd);
  free (w->user);
  json_decref (w->process);
  json_decref (w->net);
  free (w->from_snapshot);
  memset (w, 0, sizeof *w);
}

/* True for a name, namespace or driver: [A-Za-z0-9][A-Za-z0-9._-]{0,62}.  The rule keeps these usable as
 * path components and NATS subject tokens (no '/', no '*', no '>', no spaces, no leading dot). */
static int
is_valid_name (const char *s, size_t len)
{
  if (len == 0 || len > NAME_MAX_LEN || !isalnum ((unsigned char)s[0]))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!isalnum ((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
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
      ok = isxdigit ((unsigned char)hex[i]);
      hex[i] = (char)tolower ((unsigned char)hex[i]);
    }
  if (!ok)
    return nex_error_field (err, "sha256", "must be 64 hexadecimal digits");
  return 0;
}

/* Member KEY of BODY, an array of at most ARGV_MAX_ENTRIES strings without NUL, appended to OUT (errors name
 * KEY and KEY[i]).  Absent or null appends nothing. */
static int
read_strings (const json_t *body, const char *key, json_t *out, nex_error_t *err)
{
  const json_t *v = json_object_get (body, key);
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_array (v))
    return nex_error_field (err, key, "must be an array of strings");
  if (json_array_size (v) > ARGV_MAX_ENTRIES)
    return nex_error_field (err, key, "must have at most %d entries", ARGV_MAX_ENTRIES);
  size_t i;
  const json_t *arg;
  json_array_foreach (v, i, arg)
  {
    cleanup_free char *field = nex_xasprintf ("%s[%zu]", key, i);
    if (!json_is_string (arg))
      return nex_error_field (err, field, "must be a string");
    if (has_nul (arg))
      return nex_error_field (err, field, "must not contain NUL bytes");
    json_array_append_new (out, json_string (json_string_value (arg)));
  }
  return 0;
}

/* The program's argument vector, by the one rule (README, "argv and args"): `argv` is the whole vector, argv[0]
 * included; `args` is the arguments only (nex's meaning of its `argv`), after an argv[0] the node supplies: the
 * workload's NAME, as when neither is given or argv is empty.  *OUT (a new array) is the vector the program
 * receives, so that the stored record shows what ran. */
static int
read_argv (const json_t *body, const char *name, json_t **out, nex_error_t *err)
{
  const json_t *argv = json_object_get (body, "argv");
  const json_t *args = json_object_get (body, "args");
  int has_args = args != NULL && !json_is_null (args);
  *out = json_array ();
  if (has_args && argv != NULL && !json_is_null (argv))
    return nex_error_field (err, "args",
                            "give either `argv` (the whole vector, argv[0] included) or `args` (the "
                            "arguments after argv[0]), not both");
  if (read_strings (body, has_args ? "args" : "argv", *out, err) < 0)
    return -1;
  if (has_args || json_array_size (*out) == 0)
    json_array_insert_new (*out, 0, json_string (name));
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
  json_object_keylen_foreach ((json_t *)v, key, key_len, value)
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

/* An optional integer member KEY of OBJ in [MIN, MAX] (FIELD names it in errors); *OUT keeps its value when
 * absent or null. */
static int
read_int (const json_t *obj, const char *key, const char *field, long long min, long long max, int64_t *out,
          nex_error_t *err)
{
  const json_t *v = json_object_get (obj, key);
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_integer (v))
    return nex_error_field (err, field, "must be an integer");
  if (json_integer_value (v) < min || json_integer_value (v) > max)
    return nex_error_field (err, field, "must be from %lld to %lld", min, max);
  *out = json_integer_value (v);
  return 0;
}

/* resources: {vcpus, memory_mb, pids, disk_mb, net_mbps}, each optional; unknown members refused. */
static int
read_resources (const json_t *body, nex_resources_t *r, nex_error_t *err)
{
  *r = (nex_resources_t){ .pids = NEX_RESOURCES_DEFAULT_PIDS, .disk_mb = NEX_RESOURCES_DEFAULT_DISK_MB };
  const json_t *v = json_object_get (body, "resources");
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_object (v))
    return nex_error_field (err, "resources", "must be an object {vcpus, memory_mb, pids, disk_mb, net_mbps}");
  const char *key;
  const json_t *member;
  json_object_foreach ((json_t *)v, key, member)
  {
    if (strcmp (key, "vcpus") != 0 && strcmp (key, "memory_mb") != 0 && strcmp (key, "pids") != 0
        && strcmp (key, "disk_mb") != 0 && strcmp (key, "net_mbps") != 0)
      {
        cleanup_free char *field = nex_xasprintf ("resources.%s", key);
        return nex_error_field (err, field, "unknown field");
      }
  }
  const json_t *vcpus = json_object_get (v, "vcpus");
  if (vcpus != NULL && !json_is_null (vcpus))
    {
      if (!json_is_number (vcpus))
        return nex_error_field (err, "resources.vcpus", "must be a number");
      double x = json_number_value (vcpus);
      if (!(x >= VCPUS_MIN && x <= VCPUS_MAX))
        return nex_error_field (err, "resources.vcpus", "must be from %g to %g", VCPUS_MIN, VCPUS_MAX);
      r->vcpus = x;
    }
  if (read_int (v, "memory_mb", "resources.memory_mb", MEMORY_MB_MIN, MEMORY_MB_MAX, &r->memory_mb, err) < 0
      || read_int (v, "pids", "resources.pids", PIDS_MIN, PIDS_MAX, &r->pids, err) < 0
      || read_int (v, "disk_mb", "resources.disk_mb", DISK_MB_MIN, DISK_MB_MAX, &r->disk_mb, err) < 0
      || read_int (v, "net_mbps", "resources.net_mbps", NET_MBPS_MIN, NET_MBPS_MAX, &r->net_mbps, err) < 0)
    return -1;
  return 0;
}

/* restart_policy, max_restarts and essential (nex's name for on-failure). */
static int
read_restart (const json_t *body, nex_workload_t *w, nex_error_t *err)
{
  cleanup_free char *policy = NULL;
  w->restart_policy = NEX_RESTART_NEVER;
  w->max_restarts = NEX_MAX_RESTARTS_DEFAULT;
  if (read_string (body, "restart_policy", 0, SIZE_MAX, &policy, err) < 0)
    return -1;
  if (policy)
    {
      int found = 0;
      for (int i = NEX_RESTART_NEVER; i <= NEX_RESTART_ALWAYS; i++)
        if (strcmp (policy, restart_policy_names[i]) == 0)
          {
            w->restart_policy = (nex_restart_policy_t)i;
            found = 1;
          }
      if (!found)
        return nex_error_field (err, "restart_policy", "must be one of never, on-failure, always");
    }
  const json_t *essential = json_object_get (body, "essential");
  if (essential != NULL && !json_is_null (essential))
    {
      if (!json_is_boolean (essential))
        return nex_error_field (err, "essential", "must be a boolean");
      if (json_is_true (essential))
        {
          if (policy && w->restart_policy == NEX_RESTART_NEVER)
            return nex_error_field (err, "essential", "an essential workload cannot have restart_policy never");
          if (policy == NULL)
            w->restart_policy = NEX_RESTART_ON_FAILURE;
        }
    }
  return read_int (body, "max_restarts", "max_restarts", 0, MAX_RESTARTS_LIMIT, &w->max_restarts, err);
}

/* capabilities: names of Linux capabilities the workload keeps (all others are dropped), stored as CAP_NAME. */
static int
read_capabilities (const json_t *body, json_t **out, nex_error_t *err)
{
  const json_t *v = json_object_get (body, "capabilities");
  *out = json_array ();
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_array (v) || json_array_size (v) > (size_t)N_CAPABILITIES)
    return nex_error_field (err, "capabilities", "must be an array of at most %d capability names", N_CAPABILITIES);
  size_t i;
  const json_t *name;
  json_array_foreach (v, i, name)
  {
    cleanup_free char *field = nex_xasprintf ("capabilities[%zu]", i);
    int cap = json_is_string (name) && !has_nul (name) ? nex_capability_parse (json_string_value (name)) : -1;
    if (cap < 0)
      return nex_error_field (err, field, "must be a Linux capability name such as CAP_NET_BIND_SERVICE");
    cleanup_free char *canonical = nex_xasprintf ("CAP_%s", capability_names[cap]);
    size_t j;
    const json_t *seen;
    int dup = 0;
    json_array_foreach (*out, j, seen) dup |= strcmp (json_string_value (seen), canonical) == 0;
    if (!dup)
      json_array_append_new (*out, json_string (canonical));
  }
  return 0;
}

int
nex_label_key_valid (const char *key, size_t len)
{
  if (len == 0 || len > NAME_MAX_LEN || !isalnum ((unsigned char)key[0]))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!isalnum ((unsigned char)key[i]) && strchr ("._/-", key[i]) == NULL)
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
  json_object_keylen_foreach ((json_t *)v, key, key_len, value)
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
    for (const unsigned char *c = (const unsigned char *)json_string_value (value); *c; c++)
      if (*c < 0x20 || *c == 0x7f)
        return nex_error_field (err, field, "must not contain control characters");
    if (has_nul (value))
      return nex_error_field (err, field, "must not contain NUL bytes");
    json_object_set_new (*out, key, json_string (json_string_value (value)));
  }
  return 0;
}

/* cwd: an absolute path without `.` or `..` components.  The agent also checks, after chdir, that it is inside
 * the sandbox's root; refusing `..` here keeps the stored spec plain. */
static int
read_cwd (const json_t *body, char **out, nex_error_t *err)
{
  if (read_string (body, "cwd", 0, CWD_MAX_LEN, out, err) < 0)
    return -1;
  if (*out == NULL)
    return 0;
  const char *p = *out;
  if (p[0] != '/')
    return nex_error_field (err, "cwd", "must be an absolute path");
  while (*p)
    {
      while (*p == '/')
        p++;
      size_t n = strcspn (p, "/");
      if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return nex_error_field (err, "cwd", "must not contain `.` or `..` components");
      p += n;
    }
  return 0;
}

/* network: "none" (the default: a network namespace with loopback only), "host", or "bridge" (an address of its
 * own; its fields ports, egress and nats are read by server/net/spec.c, and refused with the other modes). */
static int
read_network (const json_t *body, int *host, json_t **net, nex_error_t *err)
{
  cleanup_free char *mode = NULL;
  *host = 0;
  if (read_string (body, "network", 0, SIZE_MAX, &mode, err) < 0)
    return -1;
  if (mode != NULL && strcmp (mode, "bridge") == 0)
    return nex_net_spec_parse (body, net, err);
  if (nex_net_spec_absent (body, err) < 0)
    return -1;
  if (mode == NULL || strcmp (mode, "none") == 0)
    return 0;
  if (strcmp (mode, "host") == 0)
    {
      *host = 1;
      return 0;
    }
  return nex_error_field (err, "network", "must be none, host or bridge");
}

const char *
nex_workload_type_name (nex_workload_type_t t)
{
  return t == NEX_WORKLOAD_FUNCTION ? "function" : "service";
}

const char *
nex_function_mode_name (nex_function_mode_t m)
{
  return m == NEX_FUNCTION_PERSISTENT ? "persistent" : "per_call";
}

int
nex_trigger_subject_check (const char *subject, const char *field, nex_error_t *err)
{
  size_t len = strlen (subject);
  if (len == 0 || len > NEX_FUNCTION_SUBJECT_MAX_LEN)
    return nex_error_field (err, field, "must be a subject of 1 to %d bytes", NEX_FUNCTION_SUBJECT_MAX_LEN);
  for (const char *tok = subject;;)
    {
      size_t n = strcspn (tok, ".");
      if (n == 0)
        return nex_error_field (err, field, "`%s`: subject tokens must not be empty", subject);
      for (size_t i = 0; i < n; i++)
        if ((unsigned char)tok[i] <= ' ' || (unsigned char)tok[i] >= 0x7f)
          return nex_error_field (err, field, "`%s`: subjects hold printable ASCII without spaces", subject);
      int wild = memchr (tok, '*', n) || memchr (tok, '>', n);
      if (wild && n != 1)
        return nex_error_field (err, field, "`%s`: `*` and `>` are wildcards only as whole tokens", subject);
      if (tok[n] == '\0')
        break;
      if (tok[0] == '>')
        return nex_error_field (err, field, "`%s`: `>` must be the last token", subject);
      tok += n + 1;
    }
  /* A function answering in the system's own subject spaces could impersonate the server ($SYS), JetStream
   * ($JS) or the nodes' control API ($NEX); a leading wildcard would reach into all of them.  Compared without
   * regard to case, as a client's typo is no excuse either. */
  static const char *const reserved[] = { "$SYS", "$JS", "$NEX" };
  for (size_t k = 0; k < sizeof reserved / sizeof reserved[0]; k++)
    {
      size_t n = strlen (reserved[k]);
      if (subject[0] == '*' || subject[0] == '>'
          || (strncasecmp (subject, reserved[k], n) == 0 && (subject[n] == '.' || subject[n] == '\0')))
        return nex_error_field (err, field, "`%s` is in (or overlaps) the reserved subject space %s.>", subject,
                                reserved[k]);
    }
  return 0;
}

/* type, trigger_subjects, function_timeout_s, max_concurrency, function_mode.  All but type belong to functions
 * only: on a service they are refused rather than ignored. */
static int
read_function (const json_t *body, nex_workload_t *w, nex_error_t *err)
{
  cleanup_free char *type = NULL;
  if (read_string (body, "type", 0, SIZE_MAX, &type, err) < 0)
    return -1;
  if (type == NULL || strcmp (type, "service") == 0)
    w->type = NEX_WORKLOAD_SERVICE;
  else if (strcmp (type, "function") == 0)
    w->type = NEX_WORKLOAD_FUNCTION;
  else
    return nex_error_field (err, "type", "must be service or function");
  static const char *const only[] = { "trigger_subjects", "function_timeout_s", "max_concurrency", "function_mode" };
  if (w->type == NEX_WORKLOAD_SERVICE)
    {
      for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
        {
          const json_t *v = json_object_get (body, only[i]);
          if (v && !json_is_null (v))
            return nex_error_field (err, only[i], "belongs to workloads of type function");
        }
      return 0;
    }
  const json_t *subjects = json_object_get (body, "trigger_subjects");
  if (!json_is_array (subjects) || json_array_size (subjects) == 0
      || json_array_size (subjects) > NEX_FUNCTION_MAX_TRIGGERS)
    return nex_error_field (err, "trigger_subjects", "a function needs an array of 1 to %d subjects",
                            NEX_FUNCTION_MAX_TRIGGERS);
  w->trigger_subjects = json_array ();
  size_t i;
  const json_t *s;
  json_array_foreach (subjects, i, s)
  {
    cleanup_free char *field = nex_xasprintf ("trigger_subjects[%zu]", i);
    if (!json_is_string (s) || has_nul (s))
      return nex_error_field (err, field, "must be a string without NUL bytes");
    if (nex_trigger_subject_check (json_string_value (s), field, err) < 0)
      return -1;
    size_t j;
    const json_t *o;
    json_array_foreach (w->trigger_subjects, j, o)
    {
      if (strcmp (json_string_value (o), json_string_value (s)) == 0)
        return nex_error_field (err, field, "`%s` is given twice", json_string_value (s));
    }
    json_array_append_new (w->trigger_subjects, json_string (json_string_value (s)));
  }
  w->function_timeout_s = NEX_FUNCTION_DEFAULT_TIMEOUT_S;
  w->max_concurrency = NEX_FUNCTION_DEFAULT_CONCURRENCY;
  if (read_int (body, "function_timeout_s", "function_timeout_s", 1, NEX_FUNCTION_MAX_TIMEOUT_S, &w->function_timeout_s,
                err)
          < 0
      || read_int (body, "max_concurrency", "max_concurrency", 1, NEX_FUNCTION_MAX_CONCURRENCY, &w->max_concurrency,
                   err)
             < 0)
    return -1;
  cleanup_free char *mode = NULL;
  if (read_string (body, "function_mode", 0, SIZE_MAX, &mode, err) < 0)
    return -1;
  if (mode == NULL || strcmp (mode, "per_call") == 0)
    w->function_mode = NEX_FUNCTION_PER_CALL;
  else if (strcmp (mode, "persistent") == 0)
    w->function_mode = NEX_FUNCTION_PERSISTENT;
  else
    return nex_error_field (err, "function_mode", "must be per_call or persistent");
  return 0;
}

/* An optional array of strings KEY (entrypoint, cmd) into *OUT (NULL when absent). */
static int
read_optional_strings (const json_t *body, const char *key, json_t **out, nex_error_t *err)
{
  *out = NULL;
  const json_t *v = json_object_get (body, key);
  if (v == NULL || json_is_null (v))
    return 0;
  *out = json_array ();
  return read_strings (body, key, *out, err);
}

/* user: "uid[:gid]" or "name[:group]" (names resolved in the image's /etc/passwd and /etc/group at start). */
static int
read_user (const json_t *body, char **out, nex_error_t *err)
{
  if (read_string (body, "user", 0, USER_MAX_LEN, out, err) < 0)
    return -1;
  if (*out == NULL)
    return 0;
  const char *u = *out;
  if (u[0] == '\0' || u[0] == ':' || u[strlen (u) - 1] == ':'
      || strchr (strchr (u, ':') ? strchr (u, ':') + 1 : "", ':'))
    return nex_error_field (err, "user", "must be uid[:gid] or name[:group]");
  for (const char *p = u; *p; p++)
    if (!isalnum ((unsigned char)*p) && *p != ':' && *p != '_' && *p != '-' && *p != '.')
      return nex_error_field (err, "user", "must be uid[:gid] or name[:group] of A-Z a-z 0-9 . _ -");
  return 0;
}

/* image, entrypoint, cmd, user: an image workload's fields, exclusive with artifact (and its sha256, argv/args). */
static int
read_image (const json_t *body, nex_workload_t *w, nex_error_t *err)
{
  if (read_string (body, "image", 0, NEX_IMAGE_REF_MAX_LEN, &w->image, err) < 0)
    return -1;
  const json_t *artifact = json_object_get (body, "artifact");
  int has_artifact = artifact && !json_is_null (artifact);
  if (w->image && has_artifact)
    return nex_error_field (err, "image", "give either `artifact` (an executable) or `image` (an OCI image), not both");
  /* Neither: `artifact is required`, as before images (the message is a contract: test-workload). */
  if (!w->image)
    {
      static const char *const only[] = { "entrypoint", "cmd", "user" };
      for (size_t i = 0; i < 3; i++)
        if (json_object_get (body, only[i]) && !json_is_null (json_object_get (body, only[i])))
          return nex_error_field (err, only[i], "belongs to image workloads (`image`)");
      return 0;
    }
  nex_image_ref_t ref;
  if (nex_image_ref_parse (w->image, "image", &ref, err) < 0)
    return -1;
  nex_image_ref_release (&ref);
  static const char *const not_with[] = { "argv", "args", "sha256" };
  for (size_t i = 0; i < 3; i++)
    if (json_object_get (body, not_with[i]) && !json_is_null (json_object_get (body, not_with[i])))
      return nex_error_field (err, not_with[i],
                              "does not apply to image workloads: use `entrypoint` and `cmd` (the "
                              "image's digest pins it: `image` name@sha256:...)");
  if (read_optional_strings (body, "entrypoint", &w->entrypoint, err) < 0
      || read_optional_strings (body, "cmd", &w->cmd, err) < 0 || read_user (body, &w->user, err) < 0)
    return -1;
  return 0;
}

/* Refuses members other than the deploy fields, so that a misspelt optional field is an error, not a default. */
static int
check_known_fields (const json_t *body, nex_error_t *err)
{
  static const char *const known[] = { "name",
                                       "namespace",
                                       "artifact",
                                       "sha256",
                                       "argv",
                                       "args",
                                       "env",
                                       "description",
                                       "driver",
                                       "resources",
                                       "restart_policy",
                                       "max_restarts",
                                       "essential",
                                       "capabilities",
                                       "cwd",
                                       "network",
                                       "ports",
                                       "egress",
                                       "nats",
                                       "labels",
                                       "type",
                                       "trigger_subjects",
                                       "function_timeout_s",
                                       "max_concurrency",
                                       "function_mode",
                                       "image",
                                       "entrypoint",
                                       "cmd",
                                       "user",
                                       NULL };
  const char *key;
  const json_t *value;
  json_object_foreach ((json_t *)body, key, value)
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
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };

  memset (out, 0, sizeof *out);
  if (!json_is_object (body))
    return nex_error_field (err, "", "request body must be a JSON object");
  if (check_known_fields (body, err) < 0 || read_name (body, "name", NULL, &w.name, err) < 0
      || read_name (body, "namespace", "default", &w.namespace_, err) < 0 || read_image (body, &w, err) < 0
      || read_string (body, "artifact", w.image == NULL, ARTIFACT_MAX_LEN, &w.artifact, err) < 0
      || read_sha256 (body, &w.sha256, err) < 0 || read_argv (body, w.name, &w.argv, err) < 0
      || read_env (body, &w.env, err) < 0
      || read_string (body, "description", 0, DESCRIPTION_MAX_LEN, &w.description, err) < 0
      || read_name (body, "driver", default_driver, &w.driver, err) < 0 || read_resources (body, &w.resources, err) < 0
      || read_restart (body, &w, err) < 0 || read_capabilities (body, &w.capabilities, err) < 0
      || read_cwd (body, &w.cwd, err) < 0 || read_network (body, &w.host_network, &w.net, err) < 0
      || read_labels (body, &w.labels, err) < 0 || read_function (body, &w, err) < 0)
    return -1;
  if (w.artifact && w.artifact[0] == '\0')
    return nex_error_field (err, "artifact", "must not be empty");
  if (w.resources.net_mbps > 0 && w.net == NULL)
    return nex_error_field (err, "resources.net_mbps", "limits a workload's link: it needs network bridge");
  if (w.image)
    {
      /* What runs is resolved from the image at start (supervisor); the stored argv is then the process's. */
      json_array_clear (w.argv);
      if (w.type == NEX_WORKLOAD_FUNCTION)
        return nex_error_field (err, "image", "function workloads run an executable (`artifact`), not an image");
    }

  nex_id_new (w.id);
  w.state = NEX_STATE_PENDING;
  w.created_at = w.updated_at = nex_clock_now_ms ();
  *out = w;
  memset (&w, 0, sizeof w);
  return 0;
}

/* KEY and a time as RFC 3339, or null when it has not happened (0). */
static void
write_time (nex_jsontext_t *t, const char *key, int64_t ms)
{
  char buf[NEX_CLOCK_RFC3339_LEN];
  nex_jsontext_key (t, key);
  nex_jsontext_string (t, ms ? nex_clock_format (ms, buf, sizeof buf) : NULL);
}

/* KEY and an integer, or null when PRESENT is false. */
static void
write_int_or_null (nex_jsontext_t *t, const char *key, int present, int64_t value)
{
  nex_jsontext_key (t, key);
  if (present)
    nex_jsontext_int (t, value);
  else
    nex_jsontext_null (t);
}

/* KEY and a string, or null when S is NULL. */
static void
write_string (nex_jsontext_t *t, const char *key, const char *s)
{
  nex_jsontext_key (t, key);
  nex_jsontext_string (t, s);
}

/* KEY and a stored JSON value; when V is NULL, EMPTY ("[]", "{}" or "null"). */
static void
write_json (nex_jsontext_t *t, const char *key, const json_t *v, const char *empty)
{
  nex_jsontext_key (t, key);
  if (v)
    nex_jsontext_value (t, v);
  else if (empty[0] == 'n')
    nex_jsontext_null (t);
  else
    {
      nex_jsontext_open (t, empty[0]);
      nex_jsontext_close (t, empty[1]);
    }
}

void
nex_workload_write_json (nex_jsontext_t *t, const nex_workload_t *w)
{
  nex_jsontext_open (t, '{');
  write_string (t, "id", w->id);
  write_string (t, "name", w->name);
  write_string (t, "namespace", w->namespace_);
  write_string (t, "description", w->description);
  write_string (t, "artifact", w->artifact);
  write_string (t, "sha256", w->sha256);
  write_string (t, "digest", w->digest);
  write_json (t, "argv", w->argv, "[]");
  write_json (t, "env", w->env, "{}");
  write_string (t, "driver", w->driver);
  write_string (t, "state", nex_state_name (w->state));
  write_string (t, "reason", w->reason);
  write_int_or_null (t, "exit_code", w->has_exit_code, w->exit_code);
  write_int_or_null (t, "exit_signal", w->exit_signal != 0, w->exit_signal);
  write_int_or_null (t, "pid", w->pid != 0, w->pid);
  write_time (t, "created_at", w->created_at);
  write_time (t, "updated_at", w->updated_at);
  write_time (t, "started_at", w->started_at);
  write_time (t, "finished_at", w->finished_at);
  nex_jsontext_key (t, "logs");
  nex_jsontext_open (t, '{');
  write_int_or_null (t, "lines", 1, w->log_lines);
  write_int_or_null (t, "dropped", 1, w->log_dropped);
  nex_jsontext_close (t, '}');
  nex_jsontext_key (t, "resources");
  nex_resources_write_json (t, &w->resources);
  write_string (t, "restart_policy", nex_restart_policy_name (w->restart_policy));
  write_int_or_null (t, "max_restarts", 1, w->max_restarts);
  write_int_or_null (t, "restarts", 1, w->restarts);
  write_json (t, "capabilities", w->capabilities, "[]");
  write_string (t, "cwd", w->cwd);
  write_string (t, "network", w->net ? "bridge" : w->host_network ? "host" : "none");
  nex_net_spec_write_json (w->net, t);
  write_json (t, "labels", w->labels, "{}");
  int fn = w->type == NEX_WORKLOAD_FUNCTION;
  write_string (t, "type", nex_workload_type_name (w->type));
  write_json (t, "trigger_subjects", fn ? w->trigger_subjects : NULL, "null");
  write_int_or_null (t, "function_timeout_s", fn, w->function_timeout_s);
  write_int_or_null (t, "max_concurrency", fn, w->max_concurrency);
  write_string (t, "function_mode", fn ? nex_function_mode_name (w->function_mode) : NULL);
  write_string (t, "image", w->image);
  write_string (t, "image_digest", w->image_digest);
  write_json (t, "entrypoint", w->entrypoint, "null");
  write_json (t, "cmd", w->cmd, "null");
  write_string (t, "user", w->user);
  write_json (t, "process", w->process, "null");
  write_string (t, "from_snapshot", w->from_snapshot);
  nex_jsontext_close (t, '}');
}

json_t *
nex_workload_to_json (const nex_workload_t *w)
{
  nex_jsontext_t t = { 0 };
  nex_workload_write_json (&t, w);
  json_t *o = nex_jsontext_load (&t);
  if (o == NULL)
    o = json_pack ("{s:s}", "id", w->id); /* cannot happen: the writer's text is valid JSON whatever W holds */
  return o;
}

void
nex_resources_write_json (nex_jsontext_t *t, const nex_resources_t *r)
{
  nex_jsontext_open (t, '{');
  nex_jsontext_key (t, "vcpus");
  if (r->vcpus > 0)
    nex_jsontext_real (t, r->vcpus);
  else
    nex_jsontext_null (t);
  write_int_or_null (t, "memory_mb", r->memory_mb > 0, r->memory_mb);
  write_int_or_null (t, "pids", r->pids > 0, r->pids);
  write_int_or_null (t, "disk_mb", r->disk_mb > 0, r->disk_mb);
  if (r->net_mbps > 0)
    write_int_or_null (t, "net_mbps", 1, r->net_mbps);
  nex_jsontext_close (t, '}');
}

json_t *
nex_resources_to_json (const nex_resources_t *r)
{
  nex_jsontext_t t = { 0 };
  nex_resources_write_json (&t, r);
  json_t *o = nex_jsontext_load (&t);
  return o ? o : json_object (); /* cannot happen: the writer's text is valid JSON */
}

void
nex_resources_from_json (const json_t *o, nex_resources_t *out)
{
  memset (out, 0, sizeof *out);
  const json_t *v = json_object_get (o, "vcpus");
  if (json_is_number (v) && json_number_value (v) > 0)
    out->vcpus = json_number_value (v);
  v = json_object_get (o, "memory_mb");
  out->memory_mb = json_is_integer (v) && json_integer_value (v) > 0 ? json_integer_value (v) : 0;
  v = json_object_get (o, "pids");
  out->pids = json_is_integer (v) && json_integer_value (v) > 0 ? json_integer_value (v) : 0;
  v = json_object_get (o, "disk_mb");
  out->disk_mb = json_is_integer (v) && json_integer_value (v) > 0 ? json_integer_value (v) : 0;
  v = json_object_get (o, "net_mbps");
  out->net_mbps = json_is_integer (v) && json_integer_value (v) > 0 ? json_integer_value (v) : 0;
}
