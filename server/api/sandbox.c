/* SPDX-License-Identifier: Apache-2.0 */
/* api/sandbox.c — routes that reach into a running workload's sandbox: its resource usage (stats), signals,
 * non-interactive exec, and the opener of the interactive (TTY) exec session.
 *
 * Stats are read straight from the workload's cgroup (cgroup.h) by the API thread; signals and exec go through
 * the supervisor, which owns the agent connection.  Exec is the one route that waits for a workload: the API
 * thread blocks until the command ends (bounded by its timeout), see nex_supervisor_exec.  The interactive form
 * (GET .../exec upgraded to a websocket) waits only until its process runs — so that a program the sandbox does
 * not hold is a 422 before the upgrade — and then belongs to the websocket thread (ws.c). */
#include "server/api/api.h"

#include <signal.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "server/drivers/cgroup.h"
#include "server/id.h"
#include "server/net/net.h"
#include "server/supervisor.h"

/* Loads the workload named by the route's {id} and requires it to be running: NEX_ERR_NOT_FOUND, or
 * NEX_ERR_CONFLICT saying which state it is in. */
static int
load_running (nex_api_request_t *req, const char *what, nex_workload_t *w, nex_error_t *err)
{
  if (nex_api_workload_load (req, w, err) < 0)
    return -1;
  if (w->state != NEX_STATE_RUNNING)
    {
      nex_error_set (err, NEX_ERR_CONFLICT, "workload %s is %s: %s needs a running workload", w->id,
                     nex_state_name (w->state), what);
      nex_workload_release (w);
      return -1;
    }
  return 0;
}

/* A count, or null when the host does not know it (-1). */
static json_t *
count_or_null (int64_t v)
{
  return v >= 0 ? json_integer (v) : json_null ();
}

static int
workload_stats (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (load_running (req, "stats", &w, err) < 0)
    return -1;
  if (req->node->cgroups == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this node has no cgroups: %s", req->node->cgroups_error);
  nex_cgroup_stats_t st;
  if (nex_cgroups_stats (req->node->cgroups, w.id, &st, err) < 0)
    {
      /* It ended between the state check and the read. */
      if ((*err)->kind == NEX_ERR_NOT_FOUND)
        {
          nex_error_free (err);
          nex_error_set (err, NEX_ERR_CONFLICT, "workload %s has just ended", w.id);
        }
      return -1;
    }
  json_t *memory
      = json_pack ("{s:o, s:o, s:o, s:o, s:o}", "current_bytes", count_or_null (st.memory_current), "peak_bytes",
                   count_or_null (st.memory_peak), "limit_bytes", count_or_null (st.memory_limit), "limit_hits",
                   count_or_null (st.memory_limit_hits), "oom_kills", count_or_null (st.oom_kills));
  json_t *cpu
      = json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "usage_ns", count_or_null (st.cpu_usage_ns), "user_ns",
                   count_or_null (st.cpu_user_ns), "system_ns", count_or_null (st.cpu_system_ns), "periods",
                   count_or_null (st.cpu_periods), "throttled_periods", count_or_null (st.cpu_throttled_periods),
                   "throttled_ns", count_or_null (st.cpu_throttled_ns), "vcpus",
                   w.resources.vcpus > 0 ? json_real (w.resources.vcpus) : json_null ());
  json_t *pids = json_pack ("{s:o, s:o, s:o}", "current", count_or_null (st.pids_current), "limit",
                            count_or_null (st.pids_limit), "limit_hits", count_or_null (st.pids_limit_hits));
  json_t *logs = json_pack ("{s:I, s:I}", "lines", (json_int_t)w.log_lines, "dropped", (json_int_t)w.log_dropped);
  res->body = json_pack ("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I}", "workload_id", w.id, "state",
                         nex_state_name (w.state), "cgroup_mode", nex_cgroups_mode (req->node->cgroups), "memory",
                         memory, "cpu", cpu, "pids", pids, "logs", logs, "restarts", (json_int_t)w.restarts);
  /* Network bridge: bytes and packets in and out of the workload (its link's counters); null otherwise. */
  nex_net_counters_t nc;
  json_object_set_new (res->body, "network",
                       nex_net_counters (&w, &nc) ? nex_net_counters_to_json (&nc) : json_null ());
  return 0;
}

/* A signal given as a number (1..64) or a name ("SIGTERM", "TERM", any case). */
static int
parse_signal (const json_t *v, int *out, nex_error_t *err)
{
  *out = nex_signal_parse (v);
  if (*out > 0)
    return 0;
  return nex_error_field (err, "signal", "must be a signal number from 1 to %d or a name such as SIGTERM", NSIG - 1);
}

static int
workload_signal (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  static const char *const known[] = { "signal", NULL };
  int sig = 0;
  if (nex_api_body_fields (req->body, known, err) < 0)
    return -1;
  const json_t *v = json_object_get (req->body, "signal");
  if (v == NULL)
    return nex_error_field (err, "signal", "is required");
  if (parse_signal (v, &sig, err) < 0)
    return -1;
  nex_workload_t w = { 0 };
  if (load_running (req, "a signal", &w, err) < 0)
    return -1;
  nex_supervisor_signal (req->node->sup, w.id, sig);
  res->status = 202;
  res->body = json_pack ("{s:s, s:i, s:s?}", "workload_id", w.id, "signal", sig, "name", sigabbrev_np (sig));
  nex_workload_release (&w);
  return 0;
}

/* POST .../pause and .../resume (no body): queue the change and answer 202 with the workload as it is now; the state
 * (and the events workload_paused / workload_resumed) follow within the 2 s the freezer may take. */
static int
pause_or_resume (nex_api_request_t *req, nex_api_response_t *res, int pause, nex_error_t *err)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return -1;
  nex_state_t from = pause ? NEX_STATE_RUNNING : NEX_STATE_PAUSED;
  if (w.state != from)
    return nex_error_set (err, NEX_ERR_CONFLICT, "workload %s is %s: only a %s workload can be %s", w.id,
                          nex_state_name (w.state), nex_state_name (from), pause ? "paused" : "resumed");
  if (req->node->cgroups == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this node has no cgroups to freeze workloads with");
  nex_supervisor_pause (req->node->sup, w.id, pause);
  res->status = 202;
  res->body = nex_workload_to_json (&w);
  return 0;
}

static int
workload_pause (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  return pause_or_resume (req, res, 1, err);
}

static int
workload_resume (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  return pause_or_resume (req, res, 0, err);
}

/* Output bytes as a JSON string (invalid UTF-8 replaced with U+FFFD). */
static json_t *
text_of (const char *data, size_t len)
{
  size_t n;
  cleanup_free char *safe = nex_utf8_sanitize (data ? data : "", data ? len : 0, &n);
  return json_stringn (safe, n);
}

#define EXEC_MAX_ARGS 4096

/* argv0 (TEXT of LEN bytes, NULL when it is no string): the name the program sees, 1 to 255 bytes of UTF-8
 * without NUL. */
static int
check_argv0 (const char *text, size_t len, nex_error_t *err)
{
  if (text == NULL || len == 0 || len > 255 || strlen (text) != len)
    return nex_error_field (err, "argv0", "must be a name of 1 to 255 bytes (what the program sees as argv[0])");
  return 0;
}

/* ARGV as the program sees it: with ARGV0 (when not NULL) in place of its path.  A new reference. */
static json_t *
argv_as_seen (const json_t *argv, const char *argv0)
{
  json_t *seen = json_deep_copy (argv);
  if (argv0)
    json_array_set_new (seen, 0, json_string (argv0));
  return seen;
}

/* An exec's argv: a non-empty array of at most EXEC_MAX_ARGS strings without NUL, argv[0] not empty. */
static int
check_argv (const json_t *argv, nex_error_t *err)
{
  if (!json_is_array (argv) || json_array_size (argv) == 0 || json_array_size (argv) > EXEC_MAX_ARGS)
    return nex_error_field (err, "argv",
                            "must be a non-empty array of strings (argv[0]: the program's path in the "
                            "sandbox)");
  size_t i;
  const json_t *arg;
  json_array_foreach (argv, i, arg)
  {
    if (!json_is_string (arg) || strlen (json_string_value (arg)) != json_string_length (arg))
      {
        cleanup_free char *field = nex_xasprintf ("argv[%zu]", i);
        return nex_error_field (err, field, "must be a string without NUL bytes");
      }
  }
  if (json_string_length (json_array_get (argv, 0)) == 0)
    return nex_error_field (err, "argv[0]", "must not be empty");
  return 0;
}

/* An exec's env: an object of strings, named without '=' (which would smuggle another variable in) or NUL. */
static int
check_env (const json_t *env, nex_error_t *err)
{
  if (!json_is_object (env))
    return nex_error_field (err, "env", "must be an object of strings");
  const char *key;
  json_t *value;
  json_object_foreach ((json_t *)env, key, value)
  {
    cleanup_free char *field = nex_xasprintf ("env.%s", key);
    if (key[0] == '\0' || strchr (key, '=') || !json_is_string (value)
        || strlen (json_string_value (value)) != json_string_length (value))
      return nex_error_field (err, field, "must be a string, named without '=' or NUL");
  }
  return 0;
}

int
nex_api_exec_request_parse (const json_t *body, nex_api_exec_request_t *out, nex_error_t *err)
{
  static const char *const known[] = { "argv", "argv0", "env", "stdin", "timeout_s", NULL };
  if (nex_api_body_fields (body, known, err) < 0)
    return -1;
  const json_t *argv = json_object_get (body, "argv");
  if (check_argv (argv, err) < 0)
    return -1;
  const json_t *env = json_object_get (body, "env");
  if (env && !json_is_null (env))
    {
      if (check_env (env, err) < 0)
        return -1;
    }
  else
    env = NULL;
  const json_t *argv0 = json_object_get (body, "argv0");
  if (argv0 && !json_is_null (argv0)
      && check_argv0 (json_is_string (argv0) ? json_string_value (argv0) : NULL,
                      json_is_string (argv0) ? json_string_length (argv0) : 0, err)
             < 0)
    return -1;
  const json_t *in = json_object_get (body, "stdin");
  if (in && !json_is_null (in) && !json_is_string (in))
    return nex_error_field (err, "stdin", "must be a string");
  if (json_is_string (in) && json_string_length (in) > NEX_EXEC_MAX_STDIN)
    return nex_error_field (err, "stdin", "must be at most %u bytes", NEX_EXEC_MAX_STDIN);
  const json_t *t = json_object_get (body, "timeout_s");
  double timeout_s = NEX_EXEC_DEFAULT_TIMEOUT_S;
  if (t && !json_is_null (t))
    {
      if (!json_is_number (t) || json_number_value (t) <= 0 || json_number_value (t) > NEX_EXEC_MAX_TIMEOUT_S)
        return nex_error_field (err, "timeout_s", "must be a number of seconds above 0 and at most %d",
                                NEX_EXEC_MAX_TIMEOUT_S);
      timeout_s = json_number_value (t);
    }
  *out = (nex_api_exec_request_t){ .argv = argv,
                                   .argv0 = json_is_string (argv0) ? json_string_value (argv0) : NULL,
                                   .env = env,
                                   .stdin_data = json_is_string (in) ? json_string_value (in) : NULL,
                                   .stdin_len = json_is_string (in) ? json_string_length (in) : 0,
                                   .timeout_ms = (int64_t)(timeout_s * 1000) > 0 ? (int64_t)(timeout_s * 1000) : 1 };
  return 0;
}

static int
workload_exec (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_api_exec_request_t x;
  if (nex_api_exec_request_parse (req->body, &x, err) < 0)
    return -1;
  nex_workload_t w = { 0 };
  if (load_running (req, "exec", &w, err) < 0)
    return -1;
  cleanup_json json_t *seen = argv_as_seen (x.argv, x.argv0);
  nex_exec_spec_t spec = { .path = json_string_value (json_array_get (x.argv, 0)),
                           .argv = seen,
                           .env = (json_t *)x.env,
                           .stdin_data = x.stdin_data,
                           .stdin_len = x.stdin_len,
                           .timeout_ms = x.timeout_ms };
  nex_exec_result_t out = { 0 };
  int r = nex_supervisor_exec (req->node->sup, w.id, &spec, &out, err);
  if (r == 0)
    {
      res->body = json_pack ("{s:s, s:o, s:o, s:o, s:o, s:b, s:o, s:I, s:I}", "workload_id", w.id, "stdout",
                             text_of (out.out, out.out_len), "stderr", text_of (out.err, out.err_len), "exit_code",
                             out.has_code ? json_integer (out.code) : json_null (), "signal",
                             out.signal ? json_integer (out.signal) : json_null (), "timed_out", out.timed_out, "pid",
                             out.pid ? json_integer (out.pid) : json_null (), "stdout_lost", (json_int_t)out.out_lost,
                             "stderr_lost", (json_int_t)out.err_lost);
      nex_exec_result_release (&out);
    }
  nex_workload_release (&w);
  return r;
}

/* Whether query flag KEY is on: absent gives DEF; 1/true and 0/false, anything else is a 422. */
static int
query_flag (const nex_api_request_t *req, const char *key, int def, int *out, nex_error_t *err)
{
  const char *v = nex_api_query (req, key);
  if (v == NULL)
    *out = def;
  else if (strcmp (v, "1") == 0 || strcmp (v, "true") == 0)
    *out = 1;
  else if (strcmp (v, "0") == 0 || strcmp (v, "false") == 0)
    *out = 0;
  else
    return nex_error_field (err, key, "must be 1 or 0");
  return 0;
}

int
nex_api_exec_open (nex_api_request_t *req, nex_ws_stream_t *out, nex_error_t *err)
{
  int tty = 1;
  long long rows, cols;
  if (query_flag (req, "tty", 1, &tty, err) < 0 || nex_api_query_int (req, "rows", 1, 10000, 24, &rows, err) < 0
      || nex_api_query_int (req, "cols", 1, 10000, 80, &cols, err) < 0)
    return -1;
  if (!tty)
    return nex_error_field (err, "tty",
                            "the websocket form of exec runs on a terminal (tty=1); POST "
                            "/v1/workloads/{id}/exec runs a command without one");
  /* argv = cmd, then every arg; env = NAME=value pairs: checked exactly as the JSON form's. */
  const char *cmd = nex_api_query (req, "cmd");
  if (cmd == NULL)
    return nex_error_field (err, "cmd", "is required: the program's path in the sandbox");
  const char *args[EXEC_MAX_ARGS];
  size_t n_args = nex_api_query_all (req, "arg", args, EXEC_MAX_ARGS);
  if (n_args >= EXEC_MAX_ARGS)
    return nex_error_field (err, "arg", "at most %d arguments", EXEC_MAX_ARGS - 1);
  cleanup_json json_t *argv = json_pack ("[s]", cmd);
  for (size_t i = 0; i < n_args; i++)
    json_array_append_new (argv, json_string (args[i]));
  if (json_array_size (argv) != n_args + 1 || json_string_length (json_array_get (argv, 0)) == 0)
    return nex_error_field (err, "cmd", "must be a non-empty path and every arg UTF-8 text");
  const char *argv0 = nex_api_query (req, "argv0");
  if (argv0 && check_argv0 (argv0, strlen (argv0), err) < 0)
    return -1;
  const char *pairs[256];
  size_t n_env = nex_api_query_all (req, "env", pairs, 256);
  if (n_env > 256)
    return nex_error_field (err, "env", "at most 256 variables");
  cleanup_json json_t *env = json_object ();
  for (size_t i = 0; i < n_env; i++)
    {
      const char *eq = strchr (pairs[i], '=');
      cleanup_free char *name = eq ? nex_xstrndup (pairs[i], (size_t)(eq - pairs[i])) : NULL;
      if (name == NULL || json_object_set_new (env, name, json_string (eq + 1)) < 0)
        return nex_error_field (err, "env", "must be NAME=value (UTF-8), not `%.64s`", pairs[i]);
    }
  if (check_env (env, err) < 0)
    return -1;
  /* A terminal wants to know what it is: the usual default, unless the client says. */
  if (json_object_get (env, "TERM") == NULL)
    json_object_set_new (env, "TERM", json_string ("xterm"));

  nex_workload_t w = { 0 };
  if (load_running (req, "exec", &w, err) < 0)
    return -1;
  cleanup_json json_t *seen = argv_as_seen (argv, argv0);
  nex_exec_spec_t spec
      = { .path = cmd, .argv = seen, .env = env, .interactive = 1, .tty = 1, .rows = (int)rows, .cols = (int)cols };
  int r = nex_supervisor_exec_open (req->node->sup, w.id, &spec, &out->exec, err);
  if (r == 0)
    {
      out->kind = NEX_WS_EXEC;
      memcpy (out->workload_id, w.id, sizeof out->workload_id);
    }
  nex_workload_release (&w);
  return r;
}

const nex_api_route_t nex_api_sandbox_routes[] = {
  { "GET", "/v1/workloads/{id}/stats", workload_stats, 0 },
  { "POST", "/v1/workloads/{id}/signal", workload_signal, 1 },
  { "POST", "/v1/workloads/{id}/pause", workload_pause, NEX_API_BODY_NONE },
  { "POST", "/v1/workloads/{id}/resume", workload_resume, NEX_API_BODY_NONE },
  { "POST", "/v1/workloads/{id}/exec", workload_exec, 1 },
  { NULL, NULL, NULL, 0 },
};
