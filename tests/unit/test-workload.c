/* SPDX-License-Identifier: Apache-2.0 */
/* test-workload.c — unit tests of the workload model (server/workload.c), above all nex_workload_from_request,
 * the one gate between an untrusted deploy body (REST or NATS) and everything downstream.
 *
 * A minimal and two full requests (a service, a function) are accepted and every parsed field is checked; then
 * every rule of the validator is broken once — wrong types, missing and empty required fields, the name rule,
 * environment keys and values, each bound just inside and just outside, resources, the restart policy, the
 * network, capabilities, cwd, labels, function triggers, unknown fields, bodies that are not objects, and values
 * nested thousands deep or megabytes long — and each refusal must be NEX_ERR_INVALID naming the offending field
 * (exact messages only where they are part of the contract clients see).  A refused request leaves the output
 * zeroed.  The small parsers beside it (states, capabilities, signals, label keys, trigger subjects) and the JSON
 * form close the file. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/workload.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

/* The two required fields, to which each request below adds what it tests. */
#define BASE "\"name\":\"a\",\"artifact\":\"file:///x\""
#define DIGEST_UPPER "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
#define DIGEST_LOWER "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

static int dirty_refusals; /* refusals that left something in the output */

/* JSON TEXT (NUL bytes in strings allowed, any top-level value) as a new value; ends the run when it does not
 * parse, as that is a mistake in this file. */
static json_t *
parse (const char *text)
{
  json_error_t jerr;
  json_t *body = json_loads (text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (body == NULL)
    {
      printf ("Bail out! test JSON does not parse (%s): %s\n", jerr.text, text);
      exit (1);
    }
  return body;
}

/* Validates BODY with default driver "sandbox" into *W. */
static int
from_body (const json_t *body, nex_workload_t *w, nex_error_t *err)
{
  return nex_workload_from_request (body, "sandbox", w, err);
}

/* TEXT cut to 100 bytes, to name a request in a TAP line; caller frees. */
static char *
shown (const char *text)
{
  return nex_xasprintf ("%.100s%s", text, strlen (text) > 100 ? "..." : "");
}

/* One TAP line: TEXT is accepted; *W holds the result (release it). */
static int
accepted (const char *text, nex_workload_t *w)
{
  cleanup_json json_t *body = parse (text);
  nex_error_t err = NULL;
  int r = from_body (body, w, &err);
  cleanup_free char *what = shown (text);
  expect_accept (r, &err, what);
  return r;
}

/* One TAP line: BODY is refused as invalid naming FIELD, with a message containing NEEDLE (any when NULL); WHAT
 * describes it.  The output must be left zeroed. */
static void
refused_body (const json_t *body, const char *what, const char *field, const char *needle)
{
  nex_error_t err = NULL;
  nex_workload_t w, zero;
  memset (&w, 0x5a, sizeof w);
  memset (&zero, 0, sizeof zero);
  int r = from_body (body, &w, &err);
  if (r < 0 && memcmp (&w, &zero, sizeof w) != 0)
    {
      printf ("# %s: the output is not zeroed\n", what);
      dirty_refusals++;
    }
  expect_refusal (r, &err, field, needle, what);
  if (r == 0)
    nex_workload_release (&w);
}

/* refused_body for a body given as JSON text. */
static void
refused (const char *text, const char *field, const char *needle)
{
  cleanup_json json_t *body = parse (text);
  cleanup_free char *what = shown (text);
  refused_body (body, what, field, needle);
}

/* A request of BASE plus MEMBERS (JSON object members as text), to be refused naming FIELD with a message
 * containing NEEDLE (any when NULL). */
typedef struct refusal
{
  const char *members, *field, *needle;
} refusal_t;

/* One TAP line per case of CASES (N of them). */
static void
refused_all (const refusal_t *cases, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      cleanup_free char *text = nex_xasprintf ("{" BASE ",%s}", cases[i].members);
      refused (text, cases[i].field, cases[i].needle);
    }
}

/* A request of BASE plus member KEY set to VALUE (stolen). */
static json_t *
base_with (const char *key, json_t *value)
{
  json_t *body = parse ("{" BASE "}");
  json_object_set_new (body, key, value);
  return body;
}

/* A string of N copies of C; caller frees. */
static char *
repeat (char c, size_t n)
{
  char *s = nex_xmalloc (n + 1);
  memset (s, c, n);
  s[n] = '\0';
  return s;
}

/* VALUE (stolen) inside DEPTH nested arrays. */
static json_t *
nested (json_t *value, int depth)
{
  for (int i = 0; i < depth; i++)
    {
      json_t *a = json_array ();
      json_array_append_new (a, value);
      value = a;
    }
  return value;
}

/* An array of N copies of the string S. */
static json_t *
array_of (size_t n, const char *s)
{
  json_t *a = json_array ();
  for (size_t i = 0; i < n; i++)
    json_array_append_new (a, json_string (s));
  return a;
}

/* An object of N members "<prefix><i>": "v". */
static json_t *
object_of (size_t n, const char *prefix)
{
  json_t *o = json_object ();
  for (size_t i = 0; i < n; i++)
    {
      char key[64];
      snprintf (key, sizeof key, "%s%zu", prefix, i);
      json_object_set_new (o, key, json_string ("v"));
    }
  return o;
}

/* One TAP line: BASE plus KEY=VALUE (stolen) is accepted (WANT_OK) or refused naming FIELD. */
static void
bound (const char *key, json_t *value, int want_ok, const char *field, const char *what)
{
  cleanup_json json_t *body = base_with (key, value);
  if (want_ok)
    {
      nex_error_t err = NULL;
      nex_workload_t w;
      expect_accept (from_body (body, &w, &err), &err, what);
      nex_workload_release (&w);
    }
  else
    refused_body (body, what, field, NULL);
}

/* Two TAP lines: BASE plus KEY=INSIDE (stolen) is accepted, KEY=OUTSIDE (stolen, one step over the bound) is
 * refused naming FIELD; WHAT names the bound. */
static void
at_bound (const char *key, json_t *inside, json_t *outside, const char *field, const char *what)
{
  cleanup_free char *in = nex_xasprintf ("%s (at the bound)", what);
  cleanup_free char *over = nex_xasprintf ("%s (one over)", what);
  bound (key, inside, 1, field, in);
  bound (key, outside, 0, field, over);
}

/* --- accepted requests ---------------------------------------------------------------------------------------- */

static void
test_minimal (void)
{
  nex_workload_t w, w2;
  if (accepted ("{" BASE "}", &w) < 0)
    return;
  TAP_OK (strcmp (w.name, "a") == 0 && strcmp (w.artifact, "file:///x") == 0 && strcmp (w.namespace_, "default") == 0
              && strcmp (w.driver, "sandbox") == 0 && w.description == NULL && w.sha256 == NULL && w.digest == NULL,
          "minimal: namespace `default`, the default driver, no description or digest");
  TAP_OK (json_is_array (w.argv) && json_array_size (w.argv) == 1
              && strcmp (json_string_value (json_array_get (w.argv, 0)), "a") == 0 && json_is_object (w.env)
              && json_object_size (w.env) == 0 && json_is_array (w.capabilities)
              && json_array_size (w.capabilities) == 0 && json_is_object (w.labels) && json_object_size (w.labels) == 0,
          "minimal: argv is the name alone; env, capabilities and labels are empty, never NULL");
  TAP_OK (w.resources.vcpus == 0 && w.resources.memory_mb == 0 && w.resources.pids == NEX_RESOURCES_DEFAULT_PIDS
              && w.resources.disk_mb == NEX_RESOURCES_DEFAULT_DISK_MB,
          "minimal: no cpu or memory limit, %d pids, %d MiB of /tmp", NEX_RESOURCES_DEFAULT_PIDS,
          NEX_RESOURCES_DEFAULT_DISK_MB);
  TAP_OK (w.restart_policy == NEX_RESTART_NEVER && w.max_restarts == NEX_MAX_RESTARTS_DEFAULT && w.restarts == 0
              && w.cwd == NULL && w.host_network == 0,
          "minimal: restart never (max %d), no cwd, network none", NEX_MAX_RESTARTS_DEFAULT);
  TAP_OK (w.type == NEX_WORKLOAD_SERVICE && w.trigger_subjects == NULL && w.function_timeout_s == 0
              && w.max_concurrency == 0,
          "minimal: a service, without function fields");
  TAP_OK (w.state == NEX_STATE_PENDING && strlen (w.id) == NEX_ID_LEN && w.created_at > 0
              && w.created_at == w.updated_at && w.started_at == 0 && w.finished_at == 0 && w.pid == 0
              && !w.has_exit_code && w.reason == NULL,
          "minimal: pending, with an id and a creation time, nothing run yet");
  if (accepted ("{" BASE "}", &w2) == 0)
    TAP_OK (strcmp (w.id, w2.id) != 0, "two requests get two ids (%s, %s)", w.id, w2.id);
  nex_workload_release (&w2);
  nex_workload_release (&w);
  TAP_OK (w.name == NULL && w.argv == NULL, "release zeroes the struct");
  nex_workload_release (&w);
  TAP_OK (1, "release of a zeroed struct is safe");

  cleanup_json json_t *with_args = parse ("{\"name\":\"web\",\"artifact\":\"file:///x\",\"args\":[\"--port\",\"80\"]}");
  nex_error_t aerr = NULL;
  cleanup_free char *vector = NULL;
  if (nex_workload_from_request (with_args, "sandbox", &w, &aerr) == 0)
    vector = json_dumps (w.argv, JSON_COMPACT);
  TAP_OK (vector && strcmp (vector, "[\"web\",\"--port\",\"80\"]") == 0, "args follow the name as argv[0] (%s)",
          vector ? vector : aerr->msg);
  nex_error_free (&aerr);
  nex_workload_release (&w);

  cleanup_json json_t *nulls = parse ("{" BASE ",\"namespace\":null,\"sha256\":null,\"argv\":null,\"env\":null,"
                                      "\"description\":null,\"driver\":null,\"resources\":null,"
                                      "\"restart_policy\":null,\"max_restarts\":null,\"essential\":null,"
                                      "\"capabilities\":null,\"cwd\":null,\"network\":null,\"labels\":null,"
                                      "\"type\":null,\"trigger_subjects\":null,\"function_timeout_s\":null,"
                                      "\"max_concurrency\":null}");
  nex_error_t err = NULL;
  int r = nex_workload_from_request (nulls, "qemu", &w, &err);
  TAP_OK (r == 0 && strcmp (w.namespace_, "default") == 0 && strcmp (w.driver, "qemu") == 0
              && json_array_size (w.argv) == 1 && w.resources.pids == NEX_RESOURCES_DEFAULT_PIDS
              && w.type == NEX_WORKLOAD_SERVICE,
          "every optional field null: the defaults, with the caller's default driver%s%s", err ? ": " : "",
          err ? err->msg : "");
  nex_error_free (&err);
  nex_workload_release (&w);
}

static void
test_full_service (void)
{
  nex_workload_t w;
  if (accepted ("{\"name\":\"web-1.x_Y\",\"namespace\":\"prod\",\"artifact\":\"https://example.com/web\","
                "\"sha256\":\"" DIGEST_UPPER "\",\"argv\":[\"-v\",\"--port\",\"8080\",\"\"],"
                "\"env\":{\"B\":\"2\",\"A\":\"\",\"PATH\":\"/bin\"},\"description\":\"the front end\","
                "\"driver\":\"qemu\",\"resources\":{\"vcpus\":0.25,\"memory_mb\":128,\"pids\":64,\"disk_mb\":16},"
                "\"restart_policy\":\"always\",\"max_restarts\":1000,\"essential\":true,"
                "\"capabilities\":[\"net_bind_service\",\"CAP_CHOWN\",\"NET_BIND_SERVICE\",\"cap_kill\"],"
                "\"cwd\":\"/srv/web\",\"network\":\"host\",\"labels\":{\"team\":\"web\",\"a.b/c_d-e\":\"\"},"
                "\"type\":\"service\"}",
                &w)
      < 0)
    return;
  TAP_OK (strcmp (w.name, "web-1.x_Y") == 0 && strcmp (w.namespace_, "prod") == 0
              && strcmp (w.artifact, "https://example.com/web") == 0 && strcmp (w.description, "the front end") == 0
              && strcmp (w.driver, "qemu") == 0,
          "full: name, namespace, artifact, description, driver as given");
  TAP_OK (strcmp (w.sha256, DIGEST_LOWER) == 0, "full: sha256 kept lower-case (%s)", w.sha256);
  TAP_OK (json_array_size (w.argv) == 4 && strcmp (json_string_value (json_array_get (w.argv, 2)), "8080") == 0
              && strcmp (json_string_value (json_array_get (w.argv, 3)), "") == 0,
          "full: argv in order, empty strings kept");
  TAP_OK (json_object_size (w.env) == 3 && strcmp (json_string_value (json_object_get (w.env, "A")), "") == 0
              && strcmp (json_string_value (json_object_get (w.env, "PATH")), "/bin") == 0,
          "full: env, empty values kept");
  TAP_OK (w.resources.vcpus == 0.25 && w.resources.memory_mb == 128 && w.resources.pids == 64
              && w.resources.disk_mb == 16,
          "full: resources");
  TAP_OK (w.restart_policy == NEX_RESTART_ALWAYS && w.max_restarts == 1000,
          "full: essential with restart_policy always stays always, max_restarts 1000");
  TAP_OK (json_array_size (w.capabilities) == 3
              && strcmp (json_string_value (json_array_get (w.capabilities, 0)), "CAP_NET_BIND_SERVICE") == 0
              && strcmp (json_string_value (json_array_get (w.capabilities, 1)), "CAP_CHOWN") == 0
              && strcmp (json_string_value (json_array_get (w.capabilities, 2)), "CAP_KILL") == 0,
          "full: capabilities canonical (CAP_ and upper case), each once, in order");
  TAP_OK (strcmp (w.cwd, "/srv/web") == 0 && w.host_network == 1, "full: cwd, network host");
  TAP_OK (json_object_size (w.labels) == 2
              && strcmp (json_string_value (json_object_get (w.labels, "team")), "web") == 0
              && json_object_get (w.labels, "a.b/c_d-e") != NULL,
          "full: labels");
  TAP_OK (w.type == NEX_WORKLOAD_SERVICE && w.trigger_subjects == NULL, "full: type service");

  cleanup_json json_t *j = nex_workload_to_json (&w);
  TAP_OK (strcmp (json_string_value (json_object_get (j, "id")), w.id) == 0
              && strcmp (json_string_value (json_object_get (j, "state")), "pending") == 0
              && strcmp (json_string_value (json_object_get (j, "restart_policy")), "always") == 0
              && strcmp (json_string_value (json_object_get (j, "network")), "host") == 0
              && strcmp (json_string_value (json_object_get (j, "type")), "service") == 0
              && json_is_null (json_object_get (j, "trigger_subjects"))
              && json_is_null (json_object_get (j, "function_timeout_s"))
              && json_is_null (json_object_get (j, "exit_code")) && json_is_null (json_object_get (j, "pid"))
              && json_is_null (json_object_get (j, "started_at")) && json_is_string (json_object_get (j, "created_at"))
              && json_equal (json_object_get (j, "argv"), w.argv) && json_equal (json_object_get (j, "env"), w.env),
          "full: the JSON form (state and policy names, nulls for what has not happened, copies of argv and env)");
  nex_resources_t back;
  nex_resources_from_json (json_object_get (j, "resources"), &back);
  TAP_OK (memcmp (&back, &w.resources, sizeof back) == 0, "full: resources survive their JSON form");
  nex_workload_release (&w);
}

static void
test_full_function (void)
{
  nex_workload_t w;
  if (accepted ("{" BASE ",\"type\":\"function\",\"trigger_subjects\":[\"orders.*\",\"billing.>\",\"$NEXT.x\"],"
                "\"function_timeout_s\":600,\"max_concurrency\":16}",
                &w)
      < 0)
    return;
  TAP_OK (w.type == NEX_WORKLOAD_FUNCTION && json_array_size (w.trigger_subjects) == 3
              && strcmp (json_string_value (json_array_get (w.trigger_subjects, 1)), "billing.>") == 0
              && w.function_timeout_s == 600 && w.max_concurrency == 16,
          "function: subjects (wildcards as whole tokens; $NEXT is not $NEX), timeout and concurrency at their bounds");
  cleanup_json json_t *j = nex_workload_to_json (&w);
  TAP_OK (strcmp (json_string_value (json_object_get (j, "type")), "function") == 0
              && json_equal (json_object_get (j, "trigger_subjects"), w.trigger_subjects)
              && json_integer_value (json_object_get (j, "max_concurrency")) == 16,
          "function: the JSON form shows the function fields");
  nex_workload_release (&w);
  if (accepted ("{" BASE ",\"type\":\"function\",\"trigger_subjects\":[\"a\"]}", &w) == 0)
    TAP_OK (w.function_timeout_s == NEX_FUNCTION_DEFAULT_TIMEOUT_S
                && w.max_concurrency == NEX_FUNCTION_DEFAULT_CONCURRENCY,
            "function: default timeout %d s, concurrency %d", NEX_FUNCTION_DEFAULT_TIMEOUT_S,
            NEX_FUNCTION_DEFAULT_CONCURRENCY);
  nex_workload_release (&w);
}

/* essential is nex's spelling of on-failure; it may not contradict an explicit policy. */
static void
test_restart_policies (void)
{
  static const struct
  {
    const char *members;
    nex_restart_policy_t want;
  } cases[] = {
    { "\"restart_policy\":\"never\"", NEX_RESTART_NEVER },
    { "\"restart_policy\":\"on-failure\"", NEX_RESTART_ON_FAILURE },
    { "\"restart_policy\":\"always\"", NEX_RESTART_ALWAYS },
    { "\"essential\":true", NEX_RESTART_ON_FAILURE },
    { "\"essential\":false", NEX_RESTART_NEVER },
    { "\"essential\":true,\"restart_policy\":\"on-failure\"", NEX_RESTART_ON_FAILURE },
    { "\"essential\":false,\"restart_policy\":\"always\"", NEX_RESTART_ALWAYS },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      cleanup_free char *text = nex_xasprintf ("{" BASE ",%s}", cases[i].members);
      cleanup_json json_t *body = parse (text);
      nex_workload_t w;
      nex_error_t err = NULL;
      int r = from_body (body, &w, &err);
      TAP_OK (r == 0 && w.restart_policy == cases[i].want, "%s: policy %s", cases[i].members,
              nex_restart_policy_name (cases[i].want));
      nex_error_free (&err);
      nex_workload_release (&w);
    }
}

/* --- refused requests ----------------------------------------------------------------------------------------- */

/* Requests of BASE plus MEMBERS that must be refused naming FIELD, with a message containing NEEDLE (any when
 * NULL), by topic.  Bounds, keys built in C and the loops over bad names are in the test functions below. */
static const refusal_t base_refusals[] = {
  /* unknown fields (checked before anything else) */
  { "\"nmae\":\"b\"", "nmae", "unknown field" },
  { "\"workload_name\":\"a\"", "workload_name", "unknown field" },
  { "\"Name\":\"b\"", "Name", "unknown field" },
  { "\"resources\":{\"cpus\":1}", "resources.cpus", "unknown field" },
  /* names, namespaces, drivers */
  { "\"namespace\":\"a/b\"", "namespace", "must be 1 to 63 characters" },
  { "\"namespace\":\"\"", "namespace", NULL },
  { "\"namespace\":1", "namespace", "must be a string" },
  { "\"driver\":\"\"", "driver", NULL },
  { "\"driver\":\"../qemu\"", "driver", NULL },
  { "\"driver\":true", "driver", "must be a string" },
  /* sha256 */
  { "\"sha256\":\"abc\"", "sha256", "must be 64 hexadecimal digits" },
  { "\"sha256\":\"" DIGEST_LOWER "0\"", "sha256", "must be 64 hexadecimal digits" },
  { "\"sha256\":\"zz" DIGEST_LOWER "\"", "sha256", NULL },
  { "\"sha256\":\"zzcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"", "sha256",
    "must be 64 hexadecimal digits" },
  { "\"sha256\":\"\"", "sha256", NULL },
  { "\"sha256\":64", "sha256", "must be a string" },
  /* argv */
  { "\"argv\":\"ls -l\"", "argv", "must be an array of strings" },
  { "\"argv\":{}", "argv", "must be an array of strings" },
  { "\"argv\":[\"a\",2]", "argv[1]", "must be a string" },
  { "\"argv\":[\"a\",null]", "argv[1]", "must be a string" },
  { "\"argv\":[[\"a\"]]", "argv[0]", "must be a string" },
  { "\"argv\":[\"ok\",\"a\\u0000b\"]", "argv[1]", "must not contain NUL bytes" },
  /* args: the arguments alone (argv[0] is the name), exclusive with argv */
  { "\"args\":[\"a\",2]", "args[1]", "must be a string" },
  { "\"args\":\"-v\"", "args", NULL },
  { "\"argv\":[\"a\"],\"args\":[\"b\"]", "args", NULL },
  /* env */
  { "\"env\":[]", "env", "must be an object of strings" },
  { "\"env\":\"A=1\"", "env", "must be an object of strings" },
  { "\"env\":{\"K\":1}", "env.K", "must be a string" },
  { "\"env\":{\"K\":null}", "env.K", "must be a string" },
  { "\"env\":{\"K\":{\"x\":\"y\"}}", "env.K", "must be a string" },
  { "\"env\":{\"K\":\"v\\u0000w\"}", "env.K", "must not contain NUL bytes" },
  { "\"env\":{\"K=V\":\"1\"}", "env.K=V", "variable names must be non-empty and hold neither '=' nor NUL" },
  { "\"env\":{\"\":\"1\"}", "env.", "variable names must be non-empty" },
  /* description */
  { "\"description\":7", "description", "must be a string" },
  { "\"description\":\"a\\u0000b\"", "description", "must not contain NUL bytes" },
  /* resources */
  { "\"resources\":[]", "resources", "must be an object {vcpus, memory_mb, pids, disk_mb, net_mbps}" },
  { "\"resources\":{\"net_mbps\":10}", "resources.net_mbps", "needs network bridge" },
  { "\"resources\":64", "resources", NULL },
  { "\"resources\":{\"memory\":64}", "resources.memory", "unknown field" },
  { "\"resources\":{\"vcpus\":\"1\"}", "resources.vcpus", "must be a number" },
  { "\"resources\":{\"memory_mb\":\"64\"}", "resources.memory_mb", "must be an integer" },
  { "\"resources\":{\"memory_mb\":64.0}", "resources.memory_mb", "must be an integer" },
  { "\"resources\":{\"memory_mb\":1.5}", "resources.memory_mb", "must be an integer" },
  { "\"resources\":{\"pids\":true}", "resources.pids", "must be an integer" },
  { "\"resources\":{\"disk_mb\":[1]}", "resources.disk_mb", "must be an integer" },
  /* restart policy */
  { "\"restart_policy\":\"sometimes\"", "restart_policy", "must be one of never, on-failure, always" },
  { "\"restart_policy\":\"Always\"", "restart_policy", "must be one of" },
  { "\"restart_policy\":1", "restart_policy", "must be a string" },
  { "\"essential\":\"yes\"", "essential", "must be a boolean" },
  { "\"essential\":1", "essential", "must be a boolean" },
  { "\"essential\":true,\"restart_policy\":\"never\"", "essential",
    "an essential workload cannot have restart_policy never" },
  { "\"max_restarts\":-1", "max_restarts", "must be from 0 to 1000" },
  { "\"max_restarts\":1001", "max_restarts", "must be from 0 to 1000" },
  { "\"max_restarts\":\"3\"", "max_restarts", "must be an integer" },
  { "\"max_restarts\":2.5", "max_restarts", "must be an integer" },
  /* capabilities */
  { "\"capabilities\":\"CAP_CHOWN\"", "capabilities", "must be an array of at most" },
  { "\"capabilities\":[\"CAP_NOPE\"]", "capabilities[0]",
    "must be a Linux capability name such as CAP_NET_BIND_SERVICE" },
  { "\"capabilities\":[\"CHOWN\",\"CAP_\"]", "capabilities[1]", NULL },
  { "\"capabilities\":[\"CHOWN\",7]", "capabilities[1]", NULL },
  { "\"capabilities\":[\"CAP_CHOWN\\u0000X\"]", "capabilities[0]", NULL },
  { "\"capabilities\":[\"ALL\"]", "capabilities[0]", NULL },
  /* cwd */
  { "\"cwd\":\"tmp\"", "cwd", "must be an absolute path" },
  { "\"cwd\":\"\"", "cwd", "must be an absolute path" },
  { "\"cwd\":\"/tmp/../etc\"", "cwd", "must not contain `.` or `..` components" },
  { "\"cwd\":\"/a/.\"", "cwd", "must not contain `.` or `..` components" },
  { "\"cwd\":\"/..\"", "cwd", NULL },
  { "\"cwd\":\"//a//./b\"", "cwd", NULL },
  { "\"cwd\":\"/a\\u0000/..\"", "cwd", "must not contain NUL bytes" },
  { "\"cwd\":3", "cwd", "must be a string" },
  /* network */
  { "\"network\":\"bridged\"", "network", "must be none, host or bridge" },
  { "\"network\":\"HOST\"", "network", "must be none, host or bridge" },
  { "\"network\":\"\"", "network", "must be none, host or bridge" },
  { "\"ports\":[{\"workload\":80}]", "ports", "needs network bridge" },
  { "\"network\":\"bridge\",\"ports\":[{\"workload\":70000}]", "ports[0].workload", "from 1 to 65535" },
  { "\"network\":\"bridge\",\"ports\":[{\"workload\":80,\"proto\":\"tcp\"}]", "ports[0]", "unknown field" },
  { "\"network\":\"bridge\",\"egress\":{\"allow\":[\"10.0.0.0/33\"]}", "egress.allow[0]", "prefix length" },
  { "\"network\":\"bridge\",\"egress\":{\"deny\":[\"1.2.3.4:0\"]}", "egress.deny[0]", "1 to 65535" },
  { "\"network\":\"bridge\",\"nats\":1", "nats", "must be a boolean" },
  { "\"network\":true", "network", "must be a string" },
  /* labels */
  { "\"labels\":[]", "labels", "must be an object of strings" },
  { "\"labels\":{\"k\":1}", "labels.k", "must be a string" },
  { "\"labels\":{\"k\":\"a\\nb\"}", "labels.k", "must not contain control characters" },
  { "\"labels\":{\"k\":\"a\\u007f\"}", "labels.k", "must not contain control characters" },
  { "\"labels\":{\"k\":\"a\\u0000b\"}", "labels.k", "must not contain NUL bytes" },
  /* functions */
  { "\"type\":\"Function\"", "type", "must be service or function" },
  { "\"type\":\"job\"", "type", "must be service or function" },
  { "\"type\":2", "type", "must be a string" },
  { "\"trigger_subjects\":[\"a\"]", "trigger_subjects", "belongs to workloads of type function" },
  { "\"type\":\"service\",\"function_timeout_s\":5", "function_timeout_s", "belongs to workloads of type function" },
  { "\"max_concurrency\":2", "max_concurrency", "belongs to workloads of type function" },
  { "\"type\":\"function\"", "trigger_subjects", "a function needs an array of 1 to 16 subjects" },
  { "\"type\":\"function\",\"trigger_subjects\":[]", "trigger_subjects", NULL },
  { "\"type\":\"function\",\"trigger_subjects\":\"a\"", "trigger_subjects", NULL },
  { "\"type\":\"function\",\"trigger_subjects\":[\"a\",1]", "trigger_subjects[1]",
    "must be a string without NUL bytes" },
  { "\"type\":\"function\",\"trigger_subjects\":[\"a\\u0000b\"]", "trigger_subjects[0]", NULL },
  { "\"type\":\"function\",\"trigger_subjects\":[\"a\",\"b\",\"a\"]", "trigger_subjects[2]", "`a` is given twice" },
  { "\"type\":\"function\",\"trigger_subjects\":[\"a..b\"]", "trigger_subjects[0]",
    "subject tokens must not be empty" },
  { "\"type\":\"function\",\"trigger_subjects\":[\"$SYS.x\"]", "trigger_subjects[0]", "reserved subject space $SYS.>" },
#define FUNCTION "\"type\":\"function\",\"trigger_subjects\":[\"a\"],"
  { FUNCTION "\"function_timeout_s\":0", "function_timeout_s", "must be from 1 to 600" },
  { FUNCTION "\"function_timeout_s\":601", "function_timeout_s", "must be from 1 to 600" },
  { FUNCTION "\"function_timeout_s\":\"5\"", "function_timeout_s", "must be an integer" },
  { FUNCTION "\"max_concurrency\":0", "max_concurrency", "must be from 1 to 16" },
  { FUNCTION "\"max_concurrency\":17", "max_concurrency", "must be from 1 to 16" },
  { FUNCTION "\"max_concurrency\":1.5", "max_concurrency", "must be an integer" },
#undef FUNCTION
};

static void
test_base_refusals (void)
{
  refused_all (base_refusals, sizeof base_refusals / sizeof base_refusals[0]);
}

static void
test_not_objects (void)
{
  refused ("[1]", "", "request body must be a JSON object");
  refused ("\"name\"", "", "request body must be a JSON object");
  refused ("42", "", NULL);
  refused ("null", "", NULL);
  refused_body (NULL, "no body at all (NULL)", "", NULL);
  refused ("{}", "name", "is required");
}

static void
test_unknown_fields (void)
{
  refused ("{\"zzz\":1}", "zzz", "unknown field"); /* checked before anything else */
}

static void
test_names (void)
{
  refused ("{\"artifact\":\"file:///x\"}", "name", "is required");
  refused ("{\"name\":null,\"artifact\":\"file:///x\"}", "name", "is required");
  refused ("{\"name\":7,\"artifact\":\"file:///x\"}", "name", "must be a string");
  refused ("{\"name\":[\"a\"],\"artifact\":\"file:///x\"}", "name", "must be a string");
  refused ("{\"name\":\"a\\u0000b\",\"artifact\":\"file:///x\"}", "name", "must not contain NUL bytes");
  static const char *const bad[] = { "", ".a", "-a", "_a", "a b", "a/b", "a*", "a>", "a:b", "caf\xc3\xa9", "a\\n" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      cleanup_free char *text = nex_xasprintf ("{\"name\":\"%s\",\"artifact\":\"file:///x\"}", bad[i]);
      refused (text, "name", "must be 1 to 63 characters from A-Z a-z 0-9 . _ - starting with a letter or digit");
    }
  cleanup_free char *n63 = repeat ('n', 63);
  cleanup_free char *n64 = repeat ('n', 64);
  at_bound ("name", json_string (n63), json_string (n64), "name", "a name of 63 characters");
}

static void
test_artifact_and_digest (void)
{
  refused ("{\"name\":\"a\"}", "artifact", "is required");
  refused ("{\"name\":\"a\",\"artifact\":null}", "artifact", "is required");
  refused ("{\"name\":\"a\",\"artifact\":\"\"}", "artifact", "must not be empty");
  refused ("{\"name\":\"a\",\"artifact\":5}", "artifact", "must be a string");
  refused ("{\"name\":\"a\",\"artifact\":\"file:///x\\u0000.sh\"}", "artifact", "must not contain NUL bytes");
  cleanup_free char *path = repeat ('p', 4096 - strlen ("file:///"));
  cleanup_free char *at_limit = nex_xasprintf ("file:///%s", path);
  cleanup_free char *over = nex_xasprintf ("file:///%sp", path);
  at_bound ("artifact", json_string (at_limit), json_string (over), "artifact", "an artifact URL of 4096 bytes");
  /* The URL itself is artifact.c's to check (at deploy time, with the node's cache): any string passes here. */
  nex_workload_t w;
  if (accepted ("{\"name\":\"a\",\"artifact\":\"not a URL\"}", &w) == 0)
    nex_workload_release (&w);
}

static void
test_argv (void)
{
  at_bound ("argv", array_of (4096, "x"), array_of (4097, "x"), "argv", "argv of 4096 entries");
}

static void
test_env (void)
{
  json_t *env = json_object ();
  json_object_setn_new (env, "K\0X", 3, json_string ("1"));
  cleanup_json json_t *body = base_with ("env", env);
  refused_body (body, "an env key holding a NUL", "env.K", "neither '=' nor NUL");
  at_bound ("env", object_of (4096, "K"), object_of (4097, "K"), "env", "env of 4096 variables");
}

static void
test_description (void)
{
  cleanup_free char *d1024 = repeat ('d', 1024);
  cleanup_free char *d1025 = repeat ('d', 1025);
  cleanup_free char *huge = repeat ('d', 4 << 20);
  at_bound ("description", json_string (d1024), json_string (d1025), "description", "a description of 1024 bytes");
  bound ("description", json_string (huge), 0, "description", "a description of 4 MiB");
}

static void
test_resources (void)
{
  static const struct
  {
    const char *member;
    int ok;
    const char *field;
  } cases[] = {
    { "\"vcpus\":0.01", 1, NULL },
    { "\"vcpus\":0.009", 0, "resources.vcpus" },
    { "\"vcpus\":0", 0, "resources.vcpus" },
    { "\"vcpus\":-1", 0, "resources.vcpus" },
    { "\"vcpus\":2", 1, NULL },
    { "\"vcpus\":1024", 1, NULL },
    { "\"vcpus\":1024.5", 0, "resources.vcpus" },
    { "\"vcpus\":1e308", 0, "resources.vcpus" },
    { "\"memory_mb\":8", 1, NULL },
    { "\"memory_mb\":7", 0, "resources.memory_mb" },
    { "\"memory_mb\":16777216", 1, NULL },
    { "\"memory_mb\":16777217", 0, "resources.memory_mb" },
    { "\"memory_mb\":-9223372036854775807", 0, "resources.memory_mb" },
    { "\"pids\":4", 1, NULL },
    { "\"pids\":3", 0, "resources.pids" },
    { "\"pids\":1", 0, "resources.pids" },
    { "\"pids\":4194304", 1, NULL },
    { "\"pids\":4194305", 0, "resources.pids" },
    { "\"disk_mb\":1", 1, NULL },
    { "\"disk_mb\":0", 0, "resources.disk_mb" },
    { "\"disk_mb\":1048576", 1, NULL },
    { "\"disk_mb\":1048577", 0, "resources.disk_mb" },
    { "\"net_mbps\":0", 0, "resources.net_mbps" },
    { "\"net_mbps\":100001", 0, "resources.net_mbps" },
    { "\"vcpus\":null,\"memory_mb\":null", 1, NULL },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      cleanup_free char *text = nex_xasprintf ("{" BASE ",\"resources\":{%s}}", cases[i].member);
      if (cases[i].ok)
        {
          nex_workload_t w;
          if (accepted (text, &w) == 0)
            nex_workload_release (&w);
        }
      else
        refused (text, cases[i].field, "must be from ");
    }
}

/* resources.net_mbps with network bridge: kept, shown, read back from the stored JSON; absent, not shown. */
static void
test_net_mbps (void)
{
  nex_workload_t w;
  if (accepted ("{" BASE ",\"network\":\"bridge\",\"resources\":{\"net_mbps\":100000}}", &w) < 0)
    return;
  cleanup_json json_t *shown = nex_resources_to_json (&w.resources);
  nex_resources_t back;
  nex_resources_from_json (shown, &back);
  TAP_OK (w.resources.net_mbps == 100000 && json_integer_value (json_object_get (shown, "net_mbps")) == 100000
              && back.net_mbps == 100000,
          "resources.net_mbps 100000 kept, shown and read back");
  nex_workload_release (&w);
  if (accepted ("{" BASE ",\"network\":\"bridge\"}", &w) < 0)
    return;
  cleanup_json json_t *plain = nex_resources_to_json (&w.resources);
  TAP_OK (w.resources.net_mbps == 0 && json_object_get (plain, "net_mbps") == NULL,
          "no resources.net_mbps: none, and not shown");
  nex_workload_release (&w);
}

static void
test_restart_refusals (void)
{
  bound ("max_restarts", json_integer (0), 1, "max_restarts", "max_restarts 0");
}

static void
test_capabilities (void)
{
  int known = nex_capability_parse ("CAP_CHECKPOINT_RESTORE") + 1; /* the last one in the table */
  nex_workload_t w;
  cleanup_json json_t *body = base_with ("capabilities", array_of ((size_t)known, "chown"));
  nex_error_t err = NULL;
  int r = from_body (body, &w, &err);
  TAP_OK (r == 0 && json_array_size (w.capabilities) == 1, "%d times `chown`: accepted, kept once", known);
  nex_error_free (&err);
  nex_workload_release (&w);
  bound ("capabilities", array_of ((size_t)known + 1, "chown"), 0, "capabilities", "one entry over the bound");
}

static void
test_cwd (void)
{
  static const char *const good[] = { "/", "/a/..b/.c/b..", "//tmp//x/" };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    bound ("cwd", json_string (good[i]), 1, "cwd", good[i]);
  cleanup_free char *tail = repeat ('c', 4095);
  cleanup_free char *c4096 = nex_xasprintf ("/%s", tail);
  cleanup_free char *c4097 = nex_xasprintf ("/%sc", tail);
  at_bound ("cwd", json_string (c4096), json_string (c4097), "cwd", "a cwd of 4096 bytes");
}

static void
test_network (void)
{
  nex_workload_t w;
  if (accepted ("{" BASE ",\"network\":\"none\"}", &w) == 0)
    TAP_OK (w.host_network == 0, "network none: loopback only");
  nex_workload_release (&w);
}

static void
test_labels (void)
{
  static const char *const bad_keys[] = { "-a", "/a", "a b", "a\\\"b", "a=b", "a*" };
  for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++)
    {
      cleanup_free char *text = nex_xasprintf ("{" BASE ",\"labels\":{\"%s\":\"v\"}}", bad_keys[i]);
      cleanup_json json_t *body = parse (text);
      const char *key = json_object_iter_key (json_object_iter (json_object_get (body, "labels")));
      cleanup_free char *field = nex_xasprintf ("labels.%s", key);
      refused (text, field, "label keys must be 1 to 63 characters from A-Z a-z 0-9 . _ / -");
    }
  cleanup_free char *k63 = repeat ('k', 63);
  cleanup_free char *k64 = repeat ('k', 64);
  json_t *l63 = json_object ();
  json_object_set_new (l63, k63, json_string ("v"));
  bound ("labels", l63, 1, "labels", "a label key of 63 characters");
  json_t *l64 = json_object ();
  json_object_set_new (l64, k64, json_string ("v"));
  cleanup_free char *f64 = nex_xasprintf ("labels.%s", k64);
  bound ("labels", l64, 0, f64, "a label key of 64 characters");
  cleanup_free char *v255 = repeat ('v', 255);
  cleanup_free char *v256 = repeat ('v', 256);
  at_bound ("labels", json_pack ("{s:s}", "k", v255), json_pack ("{s:s}", "k", v256), "labels.k",
            "a label value of 255 bytes");
  at_bound ("labels", object_of (64, "k"), object_of (65, "k"), "labels", "64 labels");
}

static void
test_functions (void)
{
  json_t *sixteen = json_array (), *seventeen = json_array ();
  for (int i = 0; i < 17; i++)
    {
      char s[16];
      snprintf (s, sizeof s, "s%d", i);
      if (i < 16)
        json_array_append_new (sixteen, json_string (s));
      json_array_append_new (seventeen, json_string (s));
    }
  cleanup_json json_t *b16 = parse ("{" BASE ",\"type\":\"function\"}");
  json_object_set_new (b16, "trigger_subjects", sixteen);
  nex_workload_t w;
  nex_error_t err = NULL;
  expect_accept (from_body (b16, &w, &err), &err, "16 trigger subjects");
  nex_workload_release (&w);
  cleanup_json json_t *b17 = parse ("{" BASE ",\"type\":\"function\"}");
  json_object_set_new (b17, "trigger_subjects", seventeen);
  refused_body (b17, "17 trigger subjects", "trigger_subjects", "1 to 16 subjects");
}

/* Values nested thousands deep, and bodies of millions of bytes: refused by the first rule they break, without
 * recursion or copies on the validator's side. */
static void
test_hostile_shapes (void)
{
  static const struct
  {
    const char *key, *field;
  } deep[] = {
    { "name", "name" },     { "argv", "argv[0]" }, { "env", "env" },   { "resources", "resources" },
    { "labels", "labels" }, { "cwd", "cwd" },      { "type", "type" }, { "deeply_unknown", "deeply_unknown" },
  };
  for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++)
    {
      cleanup_json json_t *body = base_with (deep[i].key, nested (json_string ("x"), 5000));
      cleanup_free char *what = nex_xasprintf ("`%s` nested 5000 arrays deep", deep[i].key);
      refused_body (body, what, deep[i].field, NULL);
    }
  cleanup_json json_t *env = base_with ("env", json_pack ("{s:o}", "K", nested (json_object (), 5000)));
  refused_body (env, "an env value nested 5000 deep", "env.K", "must be a string");
  cleanup_json json_t *labels = base_with ("labels", json_pack ("{s:o}", "k", nested (json_string ("v"), 5000)));
  refused_body (labels, "a label value nested 5000 deep", "labels.k", "must be a string");
  cleanup_json json_t *res = parse ("{" BASE "}");
  json_object_set_new (res, "resources", json_pack ("{s:o}", "vcpus", nested (json_real (1), 5000)));
  refused_body (res, "resources.vcpus nested 5000 deep", "resources.vcpus", "must be a number");

  /* A body as the API's JSON depth bound lets through: 32 levels of objects under an unknown key. */
  cleanup_free char *open = repeat ('[', 31);
  cleanup_free char *close = repeat (']', 31);
  cleanup_free char *text = nex_xasprintf ("{" BASE ",\"x\":%s1%s}", open, close);
  refused (text, "x", "unknown field");

  cleanup_free char *big = repeat ('a', 8 << 20);
  bound ("name", json_string (big), 0, "name", "a name of 8 MiB");
  bound ("artifact", json_string (big), 0, "artifact", "an artifact of 8 MiB");
  bound ("cwd", json_string (big), 0, "cwd", "a cwd of 8 MiB");
  bound ("argv", array_of (100000, "x"), 0, "argv", "argv of 100000 entries");
  bound ("env", object_of (100000, "K"), 0, "env", "env of 100000 variables");
  bound ("labels", object_of (100000, "k"), 0, "labels", "100000 labels");
  bound ("capabilities", array_of (100000, "chown"), 0, "capabilities", "100000 capabilities");
  cleanup_json json_t *many = parse ("{" BASE "}");
  for (int i = 0; i < 1000; i++)
    {
      char key[32];
      snprintf (key, sizeof key, "extra%d", i);
      json_object_set_new (many, key, json_true ());
    }
  refused_body (many, "1000 unknown fields", "extra0", "unknown field"); /* members are seen in their order */
}

/* --- the parsers beside it ------------------------------------------------------------------------------------ */

static void
test_parsers (void)
{
  nex_error_t err = NULL;
  nex_state_t s;
  TAP_OK (nex_state_parse ("running", &s, &err) == 0 && s == NEX_STATE_RUNNING
              && strcmp (nex_state_name (NEX_STATE_STOPPED), "stopped") == 0 && nex_state_is_final (NEX_STATE_FAILED)
              && nex_state_is_final (NEX_STATE_EXITED) && !nex_state_is_final (NEX_STATE_RUNNING)
              && !nex_state_is_final (NEX_STATE_PENDING),
          "state names, final states");
  TAP_OK (strcmp (nex_state_name ((nex_state_t)99), "unknown") == 0, "an out-of-range state is named `unknown`");
  expect_refusal (nex_state_parse ("sleeping", &s, &err), &err, "state", "unknown state `sleeping`",
                  "an unknown state name");
  expect_refusal (nex_state_parse (NULL, &s, &err), &err, "state", NULL, "a NULL state name");
  TAP_OK (strcmp (nex_restart_policy_name (NEX_RESTART_ON_FAILURE), "on-failure") == 0
              && strcmp (nex_restart_policy_name ((nex_restart_policy_t)9), "never") == 0
              && strcmp (nex_workload_type_name (NEX_WORKLOAD_FUNCTION), "function") == 0
              && strcmp (nex_workload_type_name (NEX_WORKLOAD_SERVICE), "service") == 0,
          "policy and type names");

  TAP_OK (nex_capability_parse ("CAP_CHOWN") == 0 && nex_capability_parse ("chown") == 0
              && nex_capability_parse ("cap_sys_admin") == 21 && nex_capability_parse ("Net_Bind_Service") == 10
              && nex_capability_parse ("CAP_") == -1 && nex_capability_parse ("") == -1
              && nex_capability_parse ("CAP_CAP_CHOWN") == -1 && nex_capability_parse ("CHOWNX") == -1,
          "capability names: with or without CAP_, any case, nothing else");

  static const struct
  {
    const char *json;
    int sig;
  } sigs[] = {
    { "15", SIGTERM },
    { "\"TERM\"", SIGTERM },
    { "\"sigkill\"", SIGKILL },
    { "\"SIGUSR1\"", SIGUSR1 },
    { "64", 64 },
    { "0", -1 },
    { "65", -1 },
    { "-9", -1 },
    { "\"SIGNOPE\"", -1 },
    { "\"\"", -1 },
    { "true", -1 },
    { "9.0", -1 },
    { "null", -1 },
    { "[9]", -1 },
  };
  int all = 1;
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    {
      cleanup_json json_t *v = parse (sigs[i].json);
      int got = nex_signal_parse (v);
      if (got != sigs[i].sig)
        {
          printf ("# signal %s: %d, wanted %d\n", sigs[i].json, got, sigs[i].sig);
          all = 0;
        }
    }
  TAP_OK (all && nex_signal_parse (NULL) == -1, "signals: numbers 1..64, names with or without SIG, nothing else");

  TAP_OK (nex_label_key_valid ("a", 1) && nex_label_key_valid ("9a/b.c_d-e", 10) && !nex_label_key_valid ("", 0)
              && !nex_label_key_valid ("-a", 2) && !nex_label_key_valid ("a b", 3) && !nex_label_key_valid ("a\"", 2),
          "label keys");

  static const struct
  {
    const char *subject, *needle; /* NULL: accepted */
  } subjects[] = {
    { "orders", NULL },
    { "orders.*.eu", NULL },
    { "orders.>", NULL },
    { "$NEXT.x", NULL },
    { "$SYSTEM", NULL },
    { "", "1 to 255 bytes" },
    { ".a", "must not be empty" },
    { "a.", "must not be empty" },
    { "a b", "printable ASCII without spaces" },
    { "a\tb", "printable ASCII without spaces" },
    { "caf\xc3\xa9", "printable ASCII" },
    { "a*", "wildcards only as whole tokens" },
    { "a.b>", "wildcards only as whole tokens" },
    { "a.>.b", "must be the last token" },
    { "$SYS.x", "$SYS.>" },
    { "$sys", "$SYS.>" },
    { "$JS.API.>", "$JS.>" },
    { "$NEX.DEPLOY.x", "$NEX.>" },
    { "*", "reserved subject space" },
    { ">", "reserved subject space" },
    { "*.x", "reserved subject space" },
  };
  for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++)
    {
      int r = nex_trigger_subject_check (subjects[i].subject, "f", &err);
      if (subjects[i].needle == NULL)
        expect_accept (r, &err, subjects[i].subject);
      else
        expect_refusal (r, &err, "f", subjects[i].needle, subjects[i].subject);
    }
  cleanup_free char *s255 = repeat ('s', 255);
  cleanup_free char *s256 = repeat ('s', 256);
  expect_accept (nex_trigger_subject_check (s255, "f", &err), &err, "a subject of 255 bytes");
  expect_refusal (nex_trigger_subject_check (s256, "f", &err), &err, "f", "1 to 255 bytes", "a subject of 256 bytes");

  nex_resources_t none = { 0 }, back;
  cleanup_json json_t *j = nex_resources_to_json (&none);
  TAP_OK (json_is_null (json_object_get (j, "vcpus")) && json_is_null (json_object_get (j, "pids")),
          "resources without limits show null");
  cleanup_json json_t *junk = parse ("{\"vcpus\":\"x\",\"memory_mb\":-5,\"pids\":1.5,\"disk_mb\":null,\"other\":1}");
  nex_resources_from_json (junk, &back);
  TAP_OK (memcmp (&back, &none, sizeof back) == 0, "stored resources: invalid members read as no limit");
}

/* The record's times (nex_clock_format, written by hand) against strftime's form of the same instants. */
static void
test_times_shown (void)
{
  int same = 0, rounds = 1000;
  for (int i = 0; i < rounds; i++)
    {
      int64_t ms = i == 0 ? 0 : i == 1 ? 253402300799999LL : (int64_t)(test_rng () % 253402300800000ULL);
      time_t secs = (time_t)(ms / 1000);
      struct tm tm;
      gmtime_r (&secs, &tm);
      char want[64], date[40];
      strftime (date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
      snprintf (want, sizeof want, "%s.%03dZ", date, (int)(ms % 1000));
      char got[NEX_CLOCK_RFC3339_LEN];
      if (strcmp (nex_clock_format (ms, got, sizeof got), want) == 0)
        same++;
      else if (same == i)
        printf ("# %lld: %s, strftime %s\n", (long long)ms, got, want);
    }
  char far[NEX_CLOCK_RFC3339_LEN];
  TAP_OK (same == rounds && strncmp (nex_clock_format (253402300800000LL, far, sizeof far), "10000-", 6) == 0,
          "times: %d of %d instants from 1970 to 9999 written as strftime writes them; year 10000 too", same, rounds);
}

int
main (void)
{
  test_minimal ();
  test_full_service ();
  test_full_function ();
  test_restart_policies ();
  test_not_objects ();
  test_base_refusals ();
  test_unknown_fields ();
  test_names ();
  test_artifact_and_digest ();
  test_argv ();
  test_env ();
  test_description ();
  test_resources ();
  test_net_mbps ();
  test_restart_refusals ();
  test_capabilities ();
  test_cwd ();
  test_network ();
  test_labels ();
  test_functions ();
  test_hostile_shapes ();
  test_parsers ();
  test_times_shown ();
  TAP_OK (dirty_refusals == 0, "every refusal left the output zeroed (%d did not)", dirty_refusals);
  return tap_done ();
}
