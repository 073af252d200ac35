/* SPDX-License-Identifier: Apache-2.0 */
/* nex.c — the `nex` command line client of a Nex node.
 *
 * Each command is one function that parses its own flags (with the global ones: --server, --token, --json,
 * --help), makes REST calls through cli/client.h and prints either a human-readable form or, with --json, the
 * JSON the node answered (one document, or one JSON object per line for streams: logs, events).  The CLI
 * shares no code with nexd except common/; it speaks only the public API (openapi.yaml).
 *
 * Exit status: 0 success, 1 the request failed (the node answered an error, or could not be reached), 2 the
 * command line was wrong.  Every error is one line on stderr: "nex: " and what went wrong (for an API error,
 * the problem's detail).  Output that scripts want (a deployed workload's id) goes alone to stdout. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "autoconfig.h"
#include "cli/client.h"
#include "common/cleanup.h"
#include "common/ws-frame.h"
#include "common/xalloc.h"

#define EXIT_API 1
#define EXIT_USAGE 2
#define DEFAULT_SERVER "http://127.0.0.1:8080"
#define FOLLOW_INTERVAL_MS 250
#define MAX_FLAG_VALUES 4096

/* --- command-line flags ----------------------------------------------------------------------------------------- */

typedef struct flag
{
  const char *name; /* long name, without "--" */
  char short_name;  /* 0: none */
  int takes_value;  /* 1: --name VALUE or --name=VALUE */
  const char *help; /* one line for --help */
  /* results */
  int count;           /* times given */
  const char **values; /* every value given, in order (takes_value) */
} flag_t;

/* The global flags every command takes. */
enum
{
  G_SERVER,
  G_TOKEN,
  G_JSON,
  G_HELP,
  G_CACERT,
  G__COUNT
};

typedef struct cli
{
  flag_t global[G__COUNT + 1]; /* ends with a zeroed entry */
  const char *server;
  const char *token;
  int json;
  nex_client_t *client;
  const char *command; /* "run", "node info", ... for messages */
  flag_t *flags;       /* the command's flags (static storage), freed by main */
} cli_t;

static void __attribute__ ((format (printf, 1, 2))) fail_usage (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fputs ("nex: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputs ("\n", stderr);
  va_end (ap);
  exit (EXIT_USAGE);
}

/* Prints ERR as the one line the CLI shows and returns EXIT_API. */
static int
fail_api (nex_error_t err)
{
  fprintf (stderr, "nex: %s\n", err ? err->msg : "the request failed");
  return EXIT_API;
}

static void
flag_add (flag_t *f, const char *value)
{
  if (f->count == MAX_FLAG_VALUES)
    fail_usage ("too many --%s", f->name);
  if (f->takes_value)
    {
      f->values = nex_xrealloc (f->values, (size_t)(f->count + 1) * sizeof *f->values);
      f->values[f->count] = value;
    }
  f->count++;
}

/* The last value of F, or DEF when it was not given. */
static const char *
flag_value (const flag_t *f, const char *def)
{
  return f->count ? f->values[f->count - 1] : def;
}

static flag_t *
flag_find (flag_t *flags, flag_t *global, const char *name, size_t len, char short_name)
{
  for (int pass = 0; pass < 2; pass++)
    for (flag_t *f = pass ? global : flags; f && f->name; f++)
      {
        if (pass && f - global >= G__COUNT)
          break;
        if (short_name ? f->short_name == short_name : strlen (f->name) == len && strncmp (f->name, name, len) == 0)
          return f;
      }
  return NULL;
}

static void print_command_help (cli_t *cli, const char *usage, const flag_t *flags);

/* Parses ARGV (after the command words) against FLAGS and the global flags; positional arguments go to
 * *POS (at most MAX_POS, else a usage error).  "--" ends the flags. */
static int
parse_args (cli_t *cli, int argc, char **argv, flag_t *flags, const char *usage, char **pos, int max_pos)
{
  int n_pos = 0;
  int only_pos = 0;
  cli->flags = flags;
  for (int i = 0; i < argc; i++)
    {
      const char *a = argv[i];
      if (only_pos || a[0] != '-' || a[1] == '\0')
        {
          if (n_pos == max_pos)
            fail_usage ("unexpected argument `%s` (usage: %s)", a, usage);
          pos[n_pos++] = argv[i];
          continue;
        }
      if (strcmp (a, "--") == 0)
        {
          only_pos = 1;
          continue;
        }
      flag_t *f;
      const char *value = NULL;
      if (a[1] == '-')
        {
          const char *eq = strchr (a + 2, '=');
          size_t len = eq ? (size_t)(eq - a - 2) : strlen (a + 2);
          f = flag_find (flags, cli->global, a + 2, len, 0);
          if (f == NULL)
            fail_usage ("unknown option `%.*s` for `nex %s` (see nex %s --help)", (int)(len + 2), a, cli->command,
                        cli->command);
          if (eq && !f->takes_value)
            fail_usage ("option `--%s` takes no value", f->name);
          value = eq ? eq + 1 : NULL;
        }
      else if (a[2] != '\0')
        {
          /* Bundled short options (`-it`): each must take no value. */
          for (const char *c = a + 1; *c; c++)
            {
              f = flag_find (flags, cli->global, NULL, 0, *c);
              if (f == NULL || f->takes_value)
                fail_usage ("unknown option `%s` for `nex %s` (only options without a value can be bundled)", a,
                            cli->command);
              flag_add (f, NULL);
            }
          continue;
        }
      else
        {
          f = flag_find (flags, cli->global, NULL, 0, a[1]);
          if (f == NULL)
            fail_usage ("unknown option `%s` for `nex %s` (see nex %s --help)", a, cli->command, cli->command);
        }
      if (f->takes_value && value == NULL)
        {
          if (i + 1 == argc)
            fail_usage ("option `--%s` needs a value", f->name);
          value = argv[++i];
        }
      flag_add (f, value);
    }
  if (cli->global[G_HELP].count)
    {
      print_command_help (cli, usage, flags);
      exit (0);
    }
  cli->server = flag_value (&cli->global[G_SERVER], getenv ("NEX_SERVER"));
  if (cli->server == NULL || *cli->server == '\0')
    cli->server = DEFAULT_SERVER;
  if (strncmp (cli->server, "http://", 7) != 0 && strncmp (cli->server, "https://", 8) != 0)
    fail_usage ("--server must be an http:// or https:// URL, got `%s`", cli->server);
  cli->token = flag_value (&cli->global[G_TOKEN], getenv ("NEX_TOKEN"));
  cli->json = cli->global[G_JSON].count > 0;
  cli->client = nex_client_new (cli->server, cli->token);
  const char *cacert = flag_value (&cli->global[G_CACERT], getenv ("NEX_CACERT"));
  if (cacert && *cacert)
    nex_client_set_cacert (cli->client, cacert);
  return n_pos;
}

static void
print_flags (const flag_t *flags)
{
  for (const flag_t *f = flags; f && f->name; f++)
    {
      char left[64];
      if (f->short_name)
        snprintf (left, sizeof left, "-%c, --%s%s", f->short_name, f->name, f->takes_value ? " VALUE" : "");
      else
        snprintf (left, sizeof left, "    --%s%s", f->name, f->takes_value ? " VALUE" : "");
      printf ("  %-26s %s\n", left, f->help);
    }
}

static void
print_command_help (cli_t *cli, const char *usage, const flag_t *flags)
{
  printf ("Usage: %s\n\nOptions:\n", usage);
  print_flags (flags);
  print_flags (cli->global);
}

/* --- output helpers --------------------------------------------------------------------------------------------- */

static void
print_json (const json_t *v)
{
  cleanup_free char *text = json_dumps (v, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
  if (text)
    printf ("%s\n", text);
}

static void
print_json_line (const json_t *v)
{
  cleanup_free char *text = json_dumps (v, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (text)
    printf ("%s\n", text);
  fflush (stdout);
}

/* The string member KEY of O, or DEF when absent or not a string. */
static const char *
str (const json_t *o, const char *key, const char *def)
{
  const char *s = json_string_value (json_object_get (o, key));
  return s ? s : def;
}

static int
state_is_final (const char *state)
{
  return strcmp (state, "exited") == 0 || strcmp (state, "failed") == 0 || strcmp (state, "stopped") == 0;
}

static void
sleep_ms (long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* Checks that ID looks like a workload id before it goes into a URL path. */
static const char *
workload_id_arg (const char *id)
{
  if (strlen (id) != 36 || strspn (id, "0123456789abcdefABCDEF-") != 36)
    fail_usage ("`%s` is not a workload id (see nex ls)", id);
  return id;
}

/* --- nex node info ---------------------------------------------------------------------------------------------- */

static int
cmd_node_info (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex node info [--json]", pos, 0);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *node = NULL;
  long status;
  if (nex_client_call (cli->client, "GET", "/v1/node", NULL, &status, &node, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (node);
      return 0;
    }
  printf ("id:             %s\nname:           %s\nversion:        %s\nstarted:        %s\n", str (node, "id", "?"),
          str (node, "name", "?"), str (node, "version", "?"), str (node, "started_at", "?"));
  printf ("uptime:         %.0f s\ndefault driver: %s\n", json_number_value (json_object_get (node, "uptime_s")),
          str (node, "default_driver", "?"));
  size_t i;
  json_t *d;
  json_array_foreach (json_object_get (node, "drivers"), i, d)
  {
    const char *reason = str (d, "reason", NULL);
    printf ("driver:         %s (%s%s%s)\n", str (d, "name", "?"),
            json_is_true (json_object_get (d, "available")) ? "available" : "unavailable", reason ? ": " : "",
            reason ? reason : "");
    /* microVM drivers: the accelerator their next VM gets, and why not KVM */
    const char *accel = str (d, "accel", NULL), *kvm_reason = str (d, "kvm_reason", NULL);
    if (accel)
      printf ("  accel:        %s%s%s%s\n", accel, kvm_reason ? " (KVM: " : "", kvm_reason ? kvm_reason : "",
              kvm_reason ? ")" : "");
  }
  json_t *w = json_object_get (node, "workloads");
  printf ("workloads:      %lld total", (long long)json_integer_value (json_object_get (w, "total")));
  const char *key;
  json_t *v;
  json_object_foreach (w, key, v)
  {
    if (strcmp (key, "total") != 0 && json_integer_value (v) > 0)
      printf (", %lld %s", (long long)json_integer_value (v), key);
  }
  printf ("\n");
  return 0;
}

/* --- nex run ---------------------------------------------------------------------------------------------------- */

/* A workload name made from the last path component of SOURCE: characters outside the name rule become '-',
 * leading ones that cannot start a name are dropped, and it is cut to 63 characters. */
static char *
default_name (const char *source)
{
  const char *base = strrchr (source, '/');
  base = base ? base + 1 : source;
  char *name = nex_xmalloc (64);
  size_t n = 0;
  for (const char *p = base; *p && n < 63; p++)
    {
      char c = *p;
      if (!isalnum ((unsigned char)c) && c != '.' && c != '_' && c != '-')
        c = '-';
      if (n == 0 && !isalnum ((unsigned char)c))
        continue;
      name[n++] = c;
    }
  name[n] = '\0';
  if (n == 0)
    strcpy (name, "workload");
  return name;
}

/* Computes the SHA-256 of the open file F (from its start) into HEX; rewinds F.  0 or -1 (errno). */
static int
file_sha256 (FILE *f, char hex[65])
{
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init (&st);
  unsigned char buf[65536];
  size_t n;
  while ((n = fread (buf, 1, sizeof buf, f)) > 0)
    crypto_hash_sha256_update (&st, buf, n);
  if (ferror (f))
    return -1;
  unsigned char sum[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&st, sum);
  sodium_bin2hex (hex, 65, sum, sizeof sum);
  rewind (f);
  return 0;
}

/* Makes sure the node has the local file PATH as an artifact (uploading it unless the node has its digest
 * already); writes its URL ("artifact://<sha256>") into *URL and its digest into HEX. */
static int
ensure_uploaded (cli_t *cli, const char *path, char **url, char hex[65])
{
  cleanup_file FILE *f = fopen (path, "rb");
  if (f == NULL)
    {
      fprintf (stderr, "nex: cannot read `%s`: %s\n", path, strerror (errno));
      return EXIT_API;
    }
  struct stat st;
  if (fstat (fileno (f), &st) < 0 || !S_ISREG (st.st_mode))
    {
      fprintf (stderr, "nex: `%s` is not a regular file\n", path);
      return EXIT_API;
    }
  if (file_sha256 (f, hex) < 0)
    {
      fprintf (stderr, "nex: cannot read `%s`: %s\n", path, strerror (errno));
      return EXIT_API;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *answer = NULL;
  long status;
  cleanup_free char *probe = nex_xasprintf ("/v1/artifacts/%s", hex);
  int r = nex_client_call (cli->client, "GET", probe, NULL, &status, &answer, &err);
  if (r < 0 && status != 404)
    return fail_api (err);
  if (r < 0)
    {
      nex_error_free (&err);
      cleanup_free char *upload = nex_client_path (cli->client, "/v1/artifacts", "sha256", hex, NULL);
      r = nex_client_upload (cli->client, upload, f, (int64_t)st.st_size, &status, &answer, &err);
      if (r < 0)
        return fail_api (err);
    }
  *url = nex_xasprintf ("artifact://%s", hex);
  return 0;
}

/* GETs every page of the list at PATH (which may carry a query), following `next_cursor` while `has_more`, and
 * appends each page's array MEMBER to ALL.  The command's exit status (0 when every page came). */
static int
get_all_pages (cli_t *cli, const char *path, const char *member, json_t *all)
{
  cleanup_free char *cursor = NULL;
  for (;;)
    {
      cleanup_free char *page_path = nex_client_path (cli->client, path, "cursor", cursor, NULL);
      cleanup_error nex_error_t err = NULL;
      cleanup_json json_t *page = NULL;
      long status;
      if (nex_client_call (cli->client, "GET", page_path, NULL, &status, &page, &err) < 0)
        return fail_api (err);
      json_array_extend (all, json_object_get (page, member));
      const char *next = str (page, "next_cursor", NULL);
      if (!json_is_true (json_object_get (page, "has_more")) || next == NULL)
        return 0;
      free (cursor);
      cursor = nex_xstrdup (next);
    }
}

/* Calls METHOD PATH with BODY (NULL: none) and prints the answer: the JSON with --json, else its member FIELD.
 * The command's exit status. */
static int
call_and_print (cli_t *cli, const char *method, const char *path, json_t *body, const char *field)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *answer = NULL;
  long status;
  if (nex_client_call (cli->client, method, path, body, &status, &answer, &err) < 0)
    return fail_api (err);
  if (cli->json)
    print_json (answer);
  else
    printf ("%s\n", str (answer, field, "?"));
  return 0;
}

/* The value of integer option OPTION (a usage error unless it is a whole number; the API checks the range). */
static json_int_t
int_flag (const char *option, const char *v)
{
  char *end;
  errno = 0;
  long long x = strtoll (v, &end, 10);
  if (errno || end == v || *end != '\0')
    fail_usage ("--%s takes a whole number, got `%s`", option, v);
  return (json_int_t)x;
}

/* Splits "K=V" for --env and --label; a usage error names OPTION otherwise. */
static void
split_pair (const char *option, const char *kv, json_t *into)
{
  const char *eq = strchr (kv, '=');
  if (eq == NULL || eq == kv)
    fail_usage ("--%s takes KEY=VALUE, got `%s`", option, kv);
  cleanup_free char *key = nex_xstrndup (kv, (size_t)(eq - kv));
  if (json_object_set_new (into, key, json_string (eq + 1)) < 0)
    fail_usage ("--%s `%s` is not valid UTF-8", option, kv);
}

/* -p [HOST_IP:]HOST:PORT[/udp] as a ports entry {host, workload, protocol, host_ip}; a malformed one exits 2. */
static json_t *
publish_flag (const char *text)
{
  char buf[96];
  snprintf (buf, sizeof buf, "%s", text);
  const char *protocol = "tcp";
  char *slash = strchr (buf, '/');
  if (slash)
    {
      *slash = '\0';
      protocol = slash + 1;
    }
  char *parts[3] = { NULL, NULL, NULL };
  int n = 0;
  for (char *p = buf; n < 3; n++)
    {
      parts[n] = p;
      char *c = strchr (p, ':');
      if (c == NULL)
        {
          n++;
          break;
        }
      *c = '\0';
      p = c + 1;
    }
  if ((n != 2 && n != 3) || (strcmp (protocol, "tcp") != 0 && strcmp (protocol, "udp") != 0))
    fail_usage ("-p takes [HOST_IP:]HOST:PORT[/udp], got `%s`", text);
  const char *host_ip = n == 3 ? parts[0] : "127.0.0.1";
  long long host = int_flag ("publish", parts[n - 2]), port = int_flag ("publish", parts[n - 1]);
  return json_pack ("{s:I, s:I, s:s, s:s}", "host", (json_int_t)host, "workload", (json_int_t)port, "protocol",
                    protocol, "host_ip", host_ip);
}

static int
cmd_run (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_NAME,
    F_NAMESPACE,
    F_ENV,
    F_ARG,
    F_SHA256,
    F_DESCRIPTION,
    F_LABEL,
    F_MEMORY,
    F_VCPUS,
    F_PIDS,
    F_DISK,
    F_RESTART,
    F_MAX_RESTARTS,
    F_DRIVER,
    F_NETWORK,
    F_IMAGE,
    F_ENTRYPOINT,
    F_USER,
    F_CWD,
    F_PUBLISH,
    F_NATS,
  };
  static flag_t flags[] = {
    [F_NAME] = { "name", 'n', 1, "workload name (default: the file's name)" },
    [F_NAMESPACE] = { "namespace", 0, 1, "namespace (default: default)" },
    [F_ENV] = { "env", 'e', 1, "environment variable K=V (repeatable)" },
    [F_ARG] = { "arg", 'a', 1, "argument after argv[0] (repeatable, in order)" },
    [F_SHA256] = { "sha256", 0, 1, "expected SHA-256 of the artifact" },
    [F_DESCRIPTION] = { "description", 0, 1, "free text" },
    [F_LABEL] = { "label", 'l', 1, "label K=V (repeatable)" },
    [F_MEMORY] = { "memory", 'm', 1, "memory limit in MiB (resources.memory_mb)" },
    [F_VCPUS] = { "vcpus", 0, 1, "CPU limit in CPUs, fractions allowed: 0.5 (resources.vcpus)" },
    [F_PIDS] = { "pids", 0, 1, "processes and threads at once (resources.pids)" },
    [F_DISK] = { "disk", 0, 1, "size of the writable /tmp in MiB (resources.disk_mb)" },
    [F_RESTART] = { "restart", 0, 1, "restart policy: never, on-failure or always" },
    [F_MAX_RESTARTS] = { "max-restarts", 0, 1, "restarts the policy allows" },
    [F_DRIVER] = { "driver", 0, 1, "sandbox (default), qemu or firecracker" },
    [F_NETWORK] = { "network", 0, 1,
                    "none (loopback only; the default for executables), host, or bridge (an address of its own; the "
                    "default for --image on a node that can)" },
    [F_PUBLISH] = { "publish", 'p', 1, "publish a port [HOST_IP:]HOST:PORT[/udp] (HOST 0: any free; implies bridge)" },
    [F_NATS] = { "nats", 0, 0, "give the workload NEX_NATS_URL, the node's NATS server (implies bridge)" },
    [F_IMAGE] = { "image", 0, 1,
                  "run an OCI image (name[:tag][@sha256:...], oci-layout:///path:tag, docker-archive:///path.tar, "
                  "sha256:... of a cached one); the "
                  "arguments after -- replace its Cmd" },
    [F_ENTRYPOINT] = { "entrypoint", 0, 1, "image: replaces the image's Entrypoint (and drops its Cmd)" },
    [F_USER] = { "user", 'u', 1, "image: uid[:gid] or name[:group] to run as" },
    [F_CWD] = { "cwd", 'w', 1, "working directory inside the sandbox" },
    [F_NATS + 1] = { NULL }, /* the end (after the last enumerator, whatever the order above) */
  };
  char *pos[257];
  const char *usage
      = "nex run FILE|URL | --image REF [-- CMD...] [--name NAME] [--namespace NS] [--env K=V]... "
        "[--arg ARG]... [--label K=V]... [--memory MIB] [--vcpus N] [--pids N] [--disk MIB] "
        "[--restart POLICY] [--max-restarts N] [--driver NAME] [--network MODE] [-p [IP:]HOST:PORT[/udp]]... "
        "[--nats] [--sha256 HEX] "
        "[--entrypoint PROG] [--user U] [--cwd DIR] [--json]";
  int n_pos = parse_args (cli, argc, argv, flags, usage, pos, 257);
  const char *image = flag_value (&flags[F_IMAGE], NULL);
  if (!image && n_pos > 1)
    fail_usage ("unexpected argument `%s` (usage: %s)", pos[1], usage);
  if (!image && n_pos != 1)
    fail_usage ("which program? (usage: %s)", usage);
  if (image && flags[F_ARG].count)
    fail_usage ("an image takes its command after --, not --arg (usage: %s)", usage);
  const char *source = image ? image : pos[0];

  cleanup_free char *name = nex_xstrdup (flag_value (&flags[F_NAME], NULL) ?: "");
  if (*name == '\0')
    {
      free (name);
      name = default_name (source);
    }
  cleanup_json json_t *body = json_object ();
  json_object_set_new (body, "name", json_string (name));
  if (flags[F_NAMESPACE].count)
    json_object_set_new (body, "namespace", json_string (flag_value (&flags[F_NAMESPACE], NULL)));
  if (flags[F_DESCRIPTION].count)
    json_object_set_new (body, "description", json_string (flag_value (&flags[F_DESCRIPTION], NULL)));
  if (flags[F_ENV].count)
    {
      json_t *env = json_object ();
      for (int i = 0; i < flags[F_ENV].count; i++)
        split_pair ("env", flags[F_ENV].values[i], env);
      json_object_set_new (body, "env", env);
    }
  if (flags[F_LABEL].count)
    {
      json_t *labels = json_object ();
      for (int i = 0; i < flags[F_LABEL].count; i++)
        split_pair ("label", flags[F_LABEL].values[i], labels);
      json_object_set_new (body, "labels", labels);
    }
  json_t *resources = json_object ();
  if (flags[F_MEMORY].count)
    json_object_set_new (resources, "memory_mb",
                         json_integer (int_flag ("memory", flag_value (&flags[F_MEMORY], NULL))));
  if (flags[F_PIDS].count)
    json_object_set_new (resources, "pids", json_integer (int_flag ("pids", flag_value (&flags[F_PIDS], NULL))));
  if (flags[F_DISK].count)
    json_object_set_new (resources, "disk_mb", json_integer (int_flag ("disk", flag_value (&flags[F_DISK], NULL))));
  if (flags[F_VCPUS].count)
    {
      const char *v = flag_value (&flags[F_VCPUS], NULL);
      char *end;
      errno = 0;
      double x = strtod (v, &end);
      if (errno || end == v || *end != '\0' || !(x > 0))
        fail_usage ("--vcpus takes a positive number of CPUs (0.5, 2), got `%s`", v);
      json_object_set_new (resources, "vcpus", json_real (x));
    }
  if (json_object_size (resources) > 0)
    json_object_set_new (body, "resources", resources);
  else
    json_decref (resources);
  if (flags[F_RESTART].count)
    json_object_set_new (body, "restart_policy", json_string (flag_value (&flags[F_RESTART], NULL)));
  if (flags[F_MAX_RESTARTS].count)
    json_object_set_new (body, "max_restarts",
                         json_integer (int_flag ("max-restarts", flag_value (&flags[F_MAX_RESTARTS], NULL))));
  if (flags[F_DRIVER].count)
    json_object_set_new (body, "driver", json_string (flag_value (&flags[F_DRIVER], NULL)));
  if (flags[F_NETWORK].count)
    json_object_set_new (body, "network", json_string (flag_value (&flags[F_NETWORK], NULL)));
  else if (flags[F_PUBLISH].count || flags[F_NATS].count)
    json_object_set_new (body, "network", json_string ("bridge"));
  if (flags[F_PUBLISH].count)
    {
      json_t *ports = json_array ();
      for (int i = 0; i < flags[F_PUBLISH].count; i++)
        json_array_append_new (ports, publish_flag (flags[F_PUBLISH].values[i]));
      json_object_set_new (body, "ports", ports);
    }
  if (flags[F_NATS].count)
    json_object_set_new (body, "nats", json_true ());
  if (flags[F_ARG].count)
    {
      /* argv[0] is what the program sees as its name. */
      json_t *args = json_pack ("[s]", name);
      for (int i = 0; i < flags[F_ARG].count; i++)
        json_array_append_new (args, json_string (flags[F_ARG].values[i]));
      json_object_set_new (body, "argv", args);
    }

  if (flags[F_USER].count)
    json_object_set_new (body, "user", json_string (flag_value (&flags[F_USER], NULL)));
  if (flags[F_CWD].count)
    json_object_set_new (body, "cwd", json_string (flag_value (&flags[F_CWD], NULL)));
  if (image)
    {
      json_object_set_new (body, "image", json_string (image));
      if (flags[F_ENTRYPOINT].count)
        json_object_set_new (body, "entrypoint", json_pack ("[s]", flag_value (&flags[F_ENTRYPOINT], NULL)));
      if (n_pos > 0)
        {
          json_t *cmd = json_array ();
          for (int i = 0; i < n_pos; i++)
            json_array_append_new (cmd, json_string (pos[i]));
          json_object_set_new (body, "cmd", cmd);
        }
      return call_and_print (cli, "POST", "/v1/workloads", body, "id");
    }
  cleanup_free char *url = NULL;
  const char *sha = flag_value (&flags[F_SHA256], NULL);
  char hex[65];
  if (strstr (source, "://") != NULL)
    url = nex_xstrdup (source);
  else
    {
      int r = ensure_uploaded (cli, source, &url, hex);
      if (r != 0)
        return r;
      if (sha && strcasecmp (sha, hex) != 0)
        {
          fprintf (stderr, "nex: sha256 mismatch: expected %s, `%s` has %s\n", sha, source, hex);
          return EXIT_API;
        }
      sha = hex;
    }
  json_object_set_new (body, "artifact", json_string (url));
  if (sha)
    json_object_set_new (body, "sha256", json_string (sha));

  return call_and_print (cli, "POST", "/v1/workloads", body, "id");
}

/* --- nex ls ----------------------------------------------------------------------------------------------------- */

static int
cmd_ls (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_NAMESPACE,
    F_STATE,
    F_LABEL,
  };
  static flag_t flags[] = {
    [F_NAMESPACE] = { "namespace", 0, 1, "only this namespace" },
    [F_STATE] = { "state", 0, 1, "only workloads in this state" },
    [F_LABEL] = { "label", 'l', 1, "only workloads with label K=V (repeatable: all must match)" },
    { NULL },
  };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex ls [--namespace NS] [--state STATE] [--label K=V]... [--json]", pos, 0);
  for (int i = 0; i < flags[F_LABEL].count; i++)
    if (strchr (flags[F_LABEL].values[i], '=') == NULL)
      fail_usage ("--label takes KEY=VALUE, got `%s`", flags[F_LABEL].values[i]);

  cleanup_free char *path
      = nex_client_path (cli->client, "/v1/workloads", "namespace", flag_value (&flags[F_NAMESPACE], NULL), "state",
                         flag_value (&flags[F_STATE], NULL), NULL);
  for (int i = 0; i < flags[F_LABEL].count; i++)
    {
      char *next = nex_client_path (cli->client, path, "label", flags[F_LABEL].values[i], NULL);
      free (path);
      path = next;
    }
  cleanup_json json_t *all = json_array ();
  int r = get_all_pages (cli, path, "workloads", all);
  if (r != 0)
    return r;
  if (cli->json)
    {
      print_json (all);
      return 0;
    }
  printf ("%-36s  %-20s  %-12s  %-8s  %s\n", "ID", "NAME", "NAMESPACE", "STATE", "CREATED");
  size_t i;
  json_t *w;
  json_array_foreach (all, i, w)
  {
    printf ("%-36s  %-20s  %-12s  %-8s  %s\n", str (w, "id", "?"), str (w, "name", "?"), str (w, "namespace", "?"),
            str (w, "state", "?"), str (w, "created_at", "?"));
  }
  return 0;
}

/* --- nex info --------------------------------------------------------------------------------------------------- */

static void
print_kv_object (const char *title, const json_t *o)
{
  if (json_object_size (o) == 0)
    return;
  printf ("%-13s", title);
  const char *key;
  json_t *v;
  int first = 1;
  json_object_foreach ((json_t *)o, key, v)
  {
    printf ("%s%s=%s", first ? " " : ", ", key, json_string_value (v) ? json_string_value (v) : "");
    first = 0;
  }
  printf ("\n");
}

static int
cmd_info (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex info ID [--json]", pos, 1) != 1)
    fail_usage ("which workload? (usage: nex info ID)");
  cleanup_free char *path = nex_xasprintf ("/v1/workloads/%s", workload_id_arg (pos[0]));
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *w = NULL;
  long status;
  if (nex_client_call (cli->client, "GET", path, NULL, &status, &w, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (w);
      return 0;
    }
  static const char *const fields[]
      = { "id",     "name",   "namespace",  "description", "state",       "reason", "artifact",
          "digest", "driver", "created_at", "started_at",  "finished_at", NULL };
  for (size_t i = 0; fields[i]; i++)
    {
      const char *v = str (w, fields[i], NULL);
      if (v)
        printf ("%-13s %s\n", fields[i], v);
    }
  json_t *code = json_object_get (w, "exit_code");
  json_t *sig = json_object_get (w, "exit_signal");
  if (json_is_integer (code))
    printf ("%-13s %lld\n", "exit_code", (long long)json_integer_value (code));
  if (json_is_integer (sig))
    printf ("%-13s %lld\n", "exit_signal", (long long)json_integer_value (sig));
  print_kv_object ("labels", json_object_get (w, "labels"));
  print_kv_object ("env", json_object_get (w, "env"));
  json_t *logs = json_object_get (w, "logs");
  printf ("%-13s %lld lines, %lld dropped\n", "logs", (long long)json_integer_value (json_object_get (logs, "lines")),
          (long long)json_integer_value (json_object_get (logs, "dropped")));
  size_t i;
  json_t *h;
  json_array_foreach (json_object_get (w, "history"), i, h)
  {
    const char *reason = str (h, "reason", NULL);
    printf ("%-13s %s %s%s%s\n", i == 0 ? "history" : "", str (h, "at", "?"), str (h, "state", "?"), reason ? ": " : "",
            reason ? reason : "");
  }
  return 0;
}

/* --- nex logs --------------------------------------------------------------------------------------------------- */

/* Prints LINES (an array of log lines) and advances *LAST to the last seq printed.  A gap in the numbering
 * means the node dropped lines (it keeps a bounded number): said on stderr. */
static void
print_lines (cli_t *cli, const json_t *lines, long long *last)
{
  size_t i;
  json_t *l;
  json_array_foreach (lines, i, l)
  {
    long long seq = (long long)json_integer_value (json_object_get (l, "seq"));
    if (*last > 0 && seq > *last + 1)
      fprintf (stderr, "nex: %lld lines were dropped by the node (it keeps the most recent ones)\n", seq - *last - 1);
    *last = seq;
    if (cli->json)
      print_json_line (l);
    else
      {
        FILE *out = strcmp (str (l, "stream", "stdout"), "stderr") == 0 ? stderr : stdout;
        fprintf (out, "%s\n", str (l, "text", ""));
        fflush (out);
      }
  }
}

static int
cmd_logs (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_FOLLOW,
    F_TAIL,
  };
  static flag_t flags[] = {
    [F_FOLLOW] = { "follow", 'f', 0, "keep printing new lines until the workload ends" },
    [F_TAIL] = { "tail", 0, 1, "only the last N lines stored so far" },
    { NULL },
  };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex logs [-f] [--tail N] ID [--json]", pos, 1) != 1)
    fail_usage ("which workload? (usage: nex logs [-f] ID)");
  const char *id = workload_id_arg (pos[0]);
  const char *tail = flag_value (&flags[F_TAIL], NULL);
  if (tail && (strspn (tail, "0123456789") != strlen (tail) || atoll (tail) < 1))
    fail_usage ("--tail takes a positive number, got `%s`", tail);

  long long last = 0;
  cleanup_free char *wpath = nex_xasprintf ("/v1/workloads/%s", id);
  cleanup_free char *lpath = nex_xasprintf ("/v1/workloads/%s/logs", id);
  for (int round = 0;; round++)
    {
      cleanup_error nex_error_t err = NULL;
      cleanup_json json_t *w = NULL;
      cleanup_json json_t *page = NULL;
      long status;
      /* The state is read before the lines: once it is final, every line was stored before it. */
      if (flags[F_FOLLOW].count && nex_client_call (cli->client, "GET", wpath, NULL, &status, &w, &err) < 0)
        return fail_api (err);
      char after[32];
      snprintf (after, sizeof after, "%lld", last);
      cleanup_free char *path = nex_client_path (cli->client, lpath, "tail", round == 0 ? tail : NULL, "after",
                                                 round == 0 ? NULL : after, NULL);
      if (nex_client_call (cli->client, "GET", path, NULL, &status, &page, &err) < 0)
        return fail_api (err);
      print_lines (cli, json_object_get (page, "lines"), &last);
      if (!flags[F_FOLLOW].count || state_is_final (str (w, "state", "exited")))
        return 0;
      sleep_ms (FOLLOW_INTERVAL_MS);
    }
}

/* --- nex exec ------------------------------------------------------------------------------------------------- */

static struct termios saved_termios;
static int termios_saved;

/* Gives the local terminal back as it was (raw mode ends with the session, however it ends). */
static void
terminal_restore (void)
{
  if (termios_saved)
    tcsetattr (STDIN_FILENO, TCSADRAIN, &saved_termios);
  termios_saved = 0;
}

/* Puts the local terminal in raw mode: every key goes to the remote terminal, which echoes and interprets it. */
static void
terminal_raw (void)
{
  struct termios t;
  if (tcgetattr (STDIN_FILENO, &saved_termios) < 0)
    return;
  termios_saved = 1;
  atexit (terminal_restore);
  t = saved_termios;
  cfmakeraw (&t);
  tcsetattr (STDIN_FILENO, TCSADRAIN, &t);
}

/* The local terminal's size into ROWS x COLS ("24", "80" when stdin is no terminal). */
static void
terminal_size (char rows[16], char cols[16])
{
  struct winsize ws = { 0 };
  if (ioctl (STDIN_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0 || ws.ws_col == 0)
    ws = (struct winsize){ .ws_row = 24, .ws_col = 80 };
  snprintf (rows, 16, "%u", ws.ws_row);
  snprintf (cols, 16, "%u", ws.ws_col);
}

static volatile sig_atomic_t window_changed;

static void
on_sigwinch (int sig)
{
  (void)sig;
  window_changed = 1;
}

/* Interprets a text message of the session: 1 with *CODE when it is the end, 0 otherwise. */
static int
exec_message (const uint8_t *data, size_t len, int *code)
{
  cleanup_json json_t *m = json_loadb ((const char *)data, len, 0, NULL);
  const char *type = str (m, "type", "");
  if (strcmp (type, "exit") == 0)
    {
      json_t *ec = json_object_get (m, "exit_code"), *sig = json_object_get (m, "signal");
      *code = json_is_integer (ec)    ? (int)json_integer_value (ec)
              : json_is_integer (sig) ? 128 + (int)json_integer_value (sig)
                                      : EXIT_API;
      return 1;
    }
  terminal_restore ();
  fprintf (stderr, "nex: %s\n", str (m, "message", "the node sent an unknown message"));
  if (strcmp (type, "error") == 0)
    *code = EXIT_API;
  return 0;
}

/* The session loop of `nex exec -t`: local input (when INTERACTIVE) and window changes out, the remote terminal's
 * output in; returns the remote exit status (1 when the session was lost). */
static int
exec_session (cli_t *cli, int interactive)
{
  nex_client_t *c = cli->client;
  int in_open = interactive;
  int code = EXIT_API;
  sigset_t block, none;
  sigemptyset (&block);
  sigaddset (&block, SIGWINCH);
  sigprocmask (SIG_BLOCK, &block, &none);
  struct sigaction sa = { .sa_handler = on_sigwinch };
  sigaction (SIGWINCH, &sa, NULL);
  sigdelset (&none, SIGWINCH);
  for (;;)
    {
      cleanup_error nex_error_t err = NULL;
      /* What already arrived first: libcurl (TLS) may hold decoded bytes the socket no longer shows. */
      int opcode;
      const uint8_t *data;
      size_t len;
      int r;
      while ((r = nex_client_ws_recv (c, &opcode, &data, &len, &err)) == 1)
        {
          if (opcode == NEX_WS_BINARY && len > 0 && write (STDOUT_FILENO, data, len) < 0)
            return EXIT_API;
          if (opcode == NEX_WS_TEXT && exec_message (data, len, &code))
            return code;
          if (opcode == NEX_WS_CLOSE)
            return code;
        }
      if (r < 0)
        {
          terminal_restore ();
          return fail_api (err);
        }
      struct pollfd p[2] = { { .fd = nex_client_ws_fd (c), .events = POLLIN },
                             { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN } };
      if (ppoll (p, 2, NULL, &none) < 0 && errno != EINTR)
        return EXIT_API;
      if (window_changed)
        {
          window_changed = 0;
          char rows[16], cols[16];
          terminal_size (rows, cols);
          cleanup_free char *msg = nex_xasprintf ("{\"type\":\"resize\",\"rows\":%s,\"cols\":%s}", rows, cols);
          if (nex_client_ws_send (c, NEX_WS_TEXT, msg, strlen (msg), &err) < 0)
            return fail_api (err);
        }
      if (p[1].revents)
        {
          uint8_t buf[16384];
          ssize_t n = read (STDIN_FILENO, buf, sizeof buf);
          if (n <= 0)
            in_open = 0; /* a terminal session ends when the remote process does */
          else if (nex_client_ws_send (c, NEX_WS_BINARY, buf, (size_t)n, &err) < 0)
            return fail_api (err);
        }
    }
}

static int
cmd_exec (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_INTERACTIVE,
    F_TTY,
    F_ENV,
  };
  static flag_t flags[] = {
    [F_INTERACTIVE] = { "interactive", 'i', 0, "send this terminal's input (without -t: stdin, read to its end)" },
    [F_TTY] = { "tty", 't', 0, "run on a terminal in the sandbox (a websocket session; raw mode here)" },
    [F_ENV] = { "env", 'e', 1, "environment variable K=V (repeatable)" },
    { NULL },
  };
  static const char usage[] = "nex exec [-i] [-t] [-e K=V] ID PROGRAM [ARG...]";
  /* Everything from PROGRAM on is the remote command's, options included: split before parsing ours. */
  int split = argc, n_pos = 0, only_pos = 0;
  for (int i = 0; i < argc; i++)
    {
      const char *a = argv[i];
      if (!only_pos && strcmp (a, "--") == 0)
        only_pos = 1;
      else if (!only_pos && a[0] == '-' && a[1] != '\0')
        {
          if (strcmp (a, "-e") == 0 || strcmp (a, "--env") == 0 || strcmp (a, "--server") == 0
              || strcmp (a, "--token") == 0 || strcmp (a, "--cacert") == 0)
            i++; /* its value */
        }
      else if (++n_pos == 2)
        {
          split = i;
          break;
        }
    }
  char *pos[2];
  if (parse_args (cli, split, argv, flags, usage, pos, 2) != 1 || split == argc)
    fail_usage ("which workload and which program? (usage: %s)", usage);
  const char *id = workload_id_arg (pos[0]);
  cleanup_json json_t *env = json_object ();
  for (int i = 0; i < flags[F_ENV].count; i++)
    {
      const char *kv = flags[F_ENV].values[i];
      const char *eq = strchr (kv, '=');
      if (eq == NULL || eq == kv)
        fail_usage ("--env takes K=V, got `%s`", kv);
      cleanup_free char *k = nex_xstrndup (kv, (size_t)(eq - kv));
      json_object_set_new (env, k, json_string (eq + 1));
    }
  cleanup_error nex_error_t err = NULL;
  long status;
  cleanup_free char *base = nex_xasprintf ("/v1/workloads/%s/exec", id);

  if (!flags[F_TTY].count)
    {
      /* Without a terminal: the plain request, its output printed, its exit status ours. */
      cleanup_json json_t *av = json_array ();
      for (int i = split; i < argc; i++)
        json_array_append_new (av, json_string (argv[i]));
      cleanup_json json_t *body = json_pack ("{s:O, s:O}", "argv", av, "env", env);
      if (flags[F_INTERACTIVE].count)
        {
          cleanup_free char *in = NULL;
          size_t n = 0, cap = 0;
          for (;;)
            {
              if (n == cap)
                in = nex_xrealloc (in, (cap = cap ? cap * 2 : 65536) + 1);
              ssize_t r = read (STDIN_FILENO, in + n, cap - n);
              if (r <= 0)
                break;
              n += (size_t)r;
            }
          json_object_set_new (body, "stdin", json_stringn (in ? in : "", n));
        }
      cleanup_json json_t *out = NULL;
      if (nex_client_call (cli->client, "POST", base, body, &status, &out, &err) < 0)
        return fail_api (err);
      if (cli->json)
        print_json (out);
      else
        {
          fputs (str (out, "stdout", ""), stdout);
          fputs (str (out, "stderr", ""), stderr);
        }
      json_t *ec = json_object_get (out, "exit_code"), *sig = json_object_get (out, "signal");
      return json_is_integer (ec)    ? (int)json_integer_value (ec)
             : json_is_integer (sig) ? 128 + (int)json_integer_value (sig)
                                     : EXIT_API;
    }

  char rows[16], cols[16];
  terminal_size (rows, cols);
  const char *term = getenv ("TERM");
  cleanup_free char *term_env = term && *term ? nex_xasprintf ("TERM=%s", term) : NULL;
  char *path = nex_client_path (cli->client, base, "tty", "1", "cmd", argv[split], "rows", rows, "cols", cols, "env",
                                term_env, NULL);
  for (int i = split + 1; i < argc; i++)
    {
      char *next = nex_client_path (cli->client, path, "arg", argv[i], NULL);
      free (path);
      path = next;
    }
  for (int i = 0; i < flags[F_ENV].count; i++)
    {
      char *next = nex_client_path (cli->client, path, "env", flags[F_ENV].values[i], NULL);
      free (path);
      path = next;
    }
  int r = nex_client_ws_open (cli->client, path, &status, &err);
  free (path);
  if (r < 0)
    return fail_api (err);
  if (flags[F_INTERACTIVE].count && isatty (STDIN_FILENO))
    terminal_raw ();
  int code = exec_session (cli, flags[F_INTERACTIVE].count > 0);
  terminal_restore ();
  return code;
}

/* --- nex events ------------------------------------------------------------------------------------------------- */

static void
print_event (cli_t *cli, const json_t *ev)
{
  if (cli->json)
    {
      print_json_line (ev);
      return;
    }
  const json_t *data = json_object_get (ev, "data");
  printf ("%s  %-18s", str (ev, "time", "?"), str (ev, "type", "?"));
  const char *wid = str (data, "workload_id", NULL);
  if (wid)
    printf ("  %s %s/%s", wid, str (data, "namespace", "?"), str (data, "name", "?"));
  json_t *code = json_object_get (data, "exit_code");
  if (json_is_integer (code))
    printf ("  exit_code=%lld", (long long)json_integer_value (code));
  const char *reason = str (data, "reason", NULL);
  if (reason)
    printf ("  reason=%s", reason);
  printf ("\n");
  fflush (stdout);
}

static int
cmd_events (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_FOLLOW,
    F_NAMESPACE,
    F_WORKLOAD,
    F_TYPE,
  };
  static flag_t flags[] = {
    [F_FOLLOW] = { "follow", 'f', 0, "keep printing new events (until interrupted)" },
    [F_NAMESPACE] = { "namespace", 0, 1, "only events about workloads of this namespace" },
    [F_WORKLOAD] = { "workload", 'w', 1, "only events about this workload" },
    [F_TYPE] = { "type", 't', 1, "only events of this type (e.g. workload_exited)" },
    { NULL },
  };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex events [-f] [--namespace NS] [--workload ID] [--type TYPE] [--json]", pos,
              0);
  const char *workload = flag_value (&flags[F_WORKLOAD], NULL);
  if (workload)
    workload_id_arg (workload);
  cleanup_free char *cursor = NULL;
  for (;;)
    {
      cleanup_free char *path = nex_client_path (
          cli->client, "/v1/events", "namespace", flag_value (&flags[F_NAMESPACE], NULL), "workload", workload, "type",
          flag_value (&flags[F_TYPE], NULL), "cursor", cursor, "limit", "1000", NULL);
      cleanup_error nex_error_t err = NULL;
      cleanup_json json_t *page = NULL;
      long status;
      if (nex_client_call (cli->client, "GET", path, NULL, &status, &page, &err) < 0)
        return fail_api (err);
      size_t i;
      json_t *ev;
      json_array_foreach (json_object_get (page, "events"), i, ev) print_event (cli, ev);
      const char *next = str (page, "next_cursor", NULL);
      if (next)
        {
          free (cursor);
          cursor = nex_xstrdup (next);
        }
      if (json_is_true (json_object_get (page, "has_more")))
        continue;
      if (!flags[F_FOLLOW].count)
        return 0;
      sleep_ms (FOLLOW_INTERVAL_MS * 2);
    }
}

/* --- nex stop --------------------------------------------------------------------------------------------------- */

static int
cmd_stop (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_GRACE,
  };
  static flag_t flags[] = {
    [F_GRACE] = { "grace", 0, 1, "seconds between SIGTERM and SIGKILL (default: the node's)" },
    { NULL },
  };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex stop ID [--grace SECONDS] [--json]", pos, 1) != 1)
    fail_usage ("which workload? (usage: nex stop ID)");
  cleanup_free char *base = nex_xasprintf ("/v1/workloads/%s", workload_id_arg (pos[0]));
  cleanup_free char *path = nex_client_path (cli->client, base, "grace_s", flag_value (&flags[F_GRACE], NULL), NULL);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *w = NULL;
  long status;
  if (nex_client_call (cli->client, "DELETE", path, NULL, &status, &w, &err) < 0)
    return fail_api (err);
  if (cli->json)
    print_json (w);
  else if (status == 202)
    printf ("stopping %s\n", str (w, "id", "?"));
  else
    printf ("%s has already ended (%s)\n", str (w, "id", "?"), str (w, "state", "?"));
  return 0;
}

/* --- nex pause | resume ------------------------------------------------------------------------------------------ */

/* POST .../ACTION (pause or resume), then waits (up to 10 s) until the workload is in state WANT; prints it. */
static int
pause_or_resume (cli_t *cli, int argc, char **argv, const char *action, const char *want)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  cleanup_free char *usage = nex_xasprintf ("nex %s ID [--json]", action);
  if (parse_args (cli, argc, argv, flags, usage, pos, 1) != 1)
    fail_usage ("which workload? (usage: nex %s ID)", action);
  const char *id = workload_id_arg (pos[0]);
  cleanup_free char *path = nex_xasprintf ("/v1/workloads/%s/%s", id, action);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *w = NULL;
  long status;
  if (nex_client_call (cli->client, "POST", path, NULL, &status, &w, &err) < 0)
    return fail_api (err);
  cleanup_free char *base = nex_xasprintf ("/v1/workloads/%s/wait", id);
  cleanup_free char *wait = nex_client_path (cli->client, base, "state", want, "timeout_s", "10", NULL);
  return call_and_print (cli, "GET", wait, NULL, "state");
}

static int
cmd_pause (cli_t *cli, int argc, char **argv)
{
  return pause_or_resume (cli, argc, argv, "pause", "paused");
}

static int
cmd_resume (cli_t *cli, int argc, char **argv)
{
  return pause_or_resume (cli, argc, argv, "resume", "running");
}

/* --- nex snapshot | snapshot ls | rm | restore -------------------------------------------------------------- */

/* Snapshots a microVM workload; prints the snapshot's id (its size and artifact with --json). */
static int
cmd_snapshot (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex snapshot ID [--json]", pos, 1) != 1)
    fail_usage ("which workload? (usage: nex snapshot ID; a microVM's)");
  cleanup_free char *path = nex_xasprintf ("/v1/workloads/%s/snapshot", workload_id_arg (pos[0]));
  return call_and_print (cli, "POST", path, NULL, "id");
}

static int
cmd_snapshot_ls (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_WORKLOAD
  };
  static flag_t flags[] = {
    [F_WORKLOAD] = { "workload", 'w', 1, "only the snapshots of this workload" },
    { NULL },
  };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex snapshot ls [--workload ID] [--json]", pos, 0);
  cleanup_free char *path
      = nex_client_path (cli->client, "/v1/snapshots", "workload", flag_value (&flags[F_WORKLOAD], NULL), NULL);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *r = NULL;
  long status;
  if (nex_client_call (cli->client, "GET", path, NULL, &status, &r, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (r);
      return 0;
    }
  printf ("%-36s  %-36s  %-20s  %12s  %s\n", "ID", "WORKLOAD", "NAME", "SIZE", "CREATED");
  size_t i;
  json_t *snap;
  json_array_foreach (json_object_get (r, "snapshots"), i, snap)
  {
    printf ("%-36s  %-36s  %-20s  %12lld  %s\n", str (snap, "id", "?"), str (snap, "workload_id", "?"),
            str (snap, "name", "?"), (long long)json_integer_value (json_object_get (snap, "size_bytes")),
            str (snap, "created_at", "-"));
  }
  return 0;
}

static int
cmd_snapshot_rm (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex snapshot rm SNAPSHOT [--json]", pos, 1) != 1)
    fail_usage ("which snapshot? (usage: nex snapshot rm SNAPSHOT; see nex snapshot ls)");
  cleanup_free char *path = nex_xasprintf ("/v1/snapshots/%s", pos[0]);
  return call_and_print (cli, "DELETE", path, NULL, "id");
}

/* Deploys a workload from a snapshot; prints its id. */
static int
cmd_snapshot_restore (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_NAME,
  };
  static flag_t flags[] = {
    [F_NAME] = { "name", 'n', 1, "the new workload's name (default: the snapshot's)" },
    { NULL },
  };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex snapshot restore SNAPSHOT [--name NAME] [--json]", pos, 1) != 1)
    fail_usage ("which snapshot? (usage: nex snapshot restore SNAPSHOT; see nex snapshot ls)");
  cleanup_json json_t *body = json_pack ("{s:s}", "from_snapshot", pos[0]);
  const char *name = flag_value (&flags[F_NAME], NULL);
  if (name)
    json_object_set_new (body, "name", json_string (name));
  return call_and_print (cli, "POST", "/v1/workloads", body, "id");
}

/* --- nex wait --------------------------------------------------------------------------------------------------- */

static int
cmd_wait (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_STATE,
    F_TIMEOUT,
  };
  static flag_t flags[] = {
    [F_STATE] = { "state", 's', 1, "states to wait for, comma-separated, or final (default)" },
    [F_TIMEOUT] = { "timeout", 't', 1, "seconds to wait at most (default 60, at most 3600)" },
    { NULL },
  };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex wait ID [--state STATES] [--timeout SECONDS] [--json]", pos, 1) != 1)
    fail_usage ("which workload? (usage: nex wait ID)");
  cleanup_free char *base = nex_xasprintf ("/v1/workloads/%s/wait", workload_id_arg (pos[0]));
  cleanup_free char *path = nex_client_path (cli->client, base, "state", flag_value (&flags[F_STATE], NULL),
                                             "timeout_s", flag_value (&flags[F_TIMEOUT], NULL), NULL);
  return call_and_print (cli, "GET", path, NULL, "state");
}

/* --- nex token create|ls|revoke ---------------------------------------------------------------------------------- */

static int
cmd_token_create (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_NAME,
    F_SCOPE,
    F_NAMESPACE,
  };
  static flag_t flags[] = {
    [F_NAME] = { "name", 'n', 1, "what the token is for (required)" },
    [F_SCOPE] = { "scope", 's', 1, "read, deploy or admin (repeatable; deploy includes read, admin both)" },
    [F_NAMESPACE] = { "namespace", 0, 1, "limit the token to this namespace (repeatable; default: all)" },
    { NULL },
  };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex token create --name NAME --scope SCOPE... [--namespace NS]... [--json]", pos,
              0);
  if (!flags[F_NAME].count || !flags[F_SCOPE].count)
    fail_usage ("a token needs --name and at least one --scope");
  cleanup_json json_t *body = json_pack ("{s:s, s:[]}", "name", flag_value (&flags[F_NAME], NULL), "scopes");
  if (body == NULL)
    fail_usage ("--name is not valid UTF-8");
  for (int i = 0; i < flags[F_SCOPE].count; i++)
    json_array_append_new (json_object_get (body, "scopes"), json_string (flags[F_SCOPE].values[i]));
  if (flags[F_NAMESPACE].count)
    {
      json_t *ns = json_array ();
      for (int i = 0; i < flags[F_NAMESPACE].count; i++)
        json_array_append_new (ns, json_string (flags[F_NAMESPACE].values[i]));
      json_object_set_new (body, "namespaces", ns);
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *t = NULL;
  long status;
  if (nex_client_call (cli->client, "POST", "/v1/tokens", body, &status, &t, &err) < 0)
    return fail_api (err);
  if (cli->json)
    print_json (t);
  else
    {
      printf ("%s\n", str (t, "token", "?"));
      fprintf (stderr, "nex: token %s created; its secret (above) is shown only this once\n", str (t, "id", "?"));
    }
  return 0;
}

/* SCOPES and NAMESPACES of token T as "a,b" text into BUF. */
static const char *
join_strings (const json_t *arr, char *buf, size_t size, const char *if_null)
{
  if (!json_is_array (arr))
    return if_null;
  buf[0] = '\0';
  size_t i;
  json_t *v;
  json_array_foreach ((json_t *)arr, i, v)
  {
    size_t used = strlen (buf);
    snprintf (buf + used, size - used, "%s%s", i ? "," : "", json_string_value (v) ? json_string_value (v) : "?");
  }
  return buf;
}

static int
cmd_token_ls (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex token ls [--json]", pos, 0);
  cleanup_json json_t *all = json_array ();
  int r = get_all_pages (cli, "/v1/tokens", "tokens", all);
  if (r != 0)
    return r;
  if (cli->json)
    {
      print_json (all);
      return 0;
    }
  printf ("%-16s  %-20s  %-18s  %-16s  %-24s  %s\n", "ID", "NAME", "SCOPES", "NAMESPACES", "LAST USED", "REVOKED");
  size_t i;
  json_t *t;
  json_array_foreach (all, i, t)
  {
    char scopes[128], ns[256];
    printf ("%-16s  %-20s  %-18s  %-16s  %-24s  %s\n", str (t, "id", "?"), str (t, "name", "?"),
            join_strings (json_object_get (t, "scopes"), scopes, sizeof scopes, "?"),
            join_strings (json_object_get (t, "namespaces"), ns, sizeof ns, "*"), str (t, "last_used_at", "-"),
            str (t, "revoked_at", "-"));
  }
  return 0;
}

static int
cmd_token_revoke (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex token revoke ID [--json]", pos, 1) != 1)
    fail_usage ("which token? (usage: nex token revoke ID; see nex token ls)");
  if (strlen (pos[0]) != 16 || strspn (pos[0], "0123456789abcdef") != 16)
    fail_usage ("`%s` is not a token id (16 hex digits; see nex token ls)", pos[0]);
  cleanup_free char *path = nex_xasprintf ("/v1/tokens/%s", pos[0]);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *t = NULL;
  long status;
  if (nex_client_call (cli->client, "DELETE", path, NULL, &status, &t, &err) < 0)
    return fail_api (err);
  if (cli->json)
    print_json (t);
  else
    printf ("revoked %s\n", str (t, "id", "?"));
  return 0;
}

/* --- nex image ls | pull | rm ----------------------------------------------------------------------------------- */

static int
cmd_image_ls (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex image ls [--json]", pos, 0);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *r = NULL;
  long status;
  if (nex_client_call (cli->client, "GET", "/v1/images", NULL, &status, &r, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (r);
      return 0;
    }
  printf ("%-71s  %10s  %-24s  %-9s  %s\n", "DIGEST", "SIZE", "LAST USED", "WORKLOADS", "REFERENCES");
  size_t i;
  json_t *img;
  json_array_foreach (json_object_get (r, "images"), i, img)
  {
    char refs[1024];
    printf ("%-71s  %10lld  %-24s  %-9zu  %s\n", str (img, "digest", "?"),
            (long long)json_integer_value (json_object_get (img, "size")), str (img, "last_used_at", "-"),
            json_array_size (json_object_get (img, "workloads")),
            join_strings (json_object_get (img, "references"), refs, sizeof refs, "-"));
  }
  return 0;
}

static int
cmd_image_pull (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex image pull REF [--json]", pos, 1) != 1)
    fail_usage ("which image? (usage: nex image pull REF)");
  cleanup_json json_t *body = json_pack ("{s:s}", "image", pos[0]);
  return call_and_print (cli, "POST", "/v1/images/pull", body, "digest");
}

/* Uploads the image tar FILE (an OCI layout or a docker-archive): one line per image, its digest and the
 * references it carried. */
static int
cmd_image_load (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex image load FILE [--json]", pos, 1) != 1)
    fail_usage ("which tar? (usage: nex image load FILE, an OCI layout or docker-archive tar)");
  cleanup_file FILE *f = fopen (pos[0], "rb");
  struct stat st;
  if (f == NULL || fstat (fileno (f), &st) < 0 || !S_ISREG (st.st_mode))
    {
      fprintf (stderr, "nex: `%s` is no readable regular file\n", pos[0]);
      return EXIT_API;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *answer = NULL;
  long status;
  if (nex_client_upload (cli->client, "/v1/images", f, (int64_t)st.st_size, &status, &answer, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (answer);
      return 0;
    }
  size_t i, k;
  const json_t *img, *ref;
  json_array_foreach (json_object_get (answer, "images"), i, img)
  {
    printf ("%s", str (img, "digest", "?"));
    json_array_foreach (json_object_get (img, "references"), k, ref) printf (" %s", json_string_value (ref));
    printf ("\n");
  }
  return 0;
}

static int
cmd_image_rm (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex image rm DIGEST [--json]", pos, 1) != 1)
    fail_usage ("which image? (usage: nex image rm sha256:...; see nex image ls)");
  cleanup_free char *path = nex_xasprintf ("/v1/images/%s", pos[0]);
  return call_and_print (cli, "DELETE", path, NULL, "digest");
}

/* --- nex cluster nodes | ps, nex node drain ------------------------------------------------------------------- */

/* A JSON number member as text ("-" when absent). */
static const char *
num (const json_t *o, const char *outer, const char *inner, char *buf, size_t size)
{
  const json_t *v = json_object_get (inner ? json_object_get (o, outer) : o, inner ? inner : outer);
  if (!json_is_number (v))
    return "-";
  snprintf (buf, size, "%g", json_number_value (v));
  return buf;
}

static int
cmd_cluster_nodes (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex cluster nodes [--json]", pos, 0);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *all = NULL;
  long status;
  if (nex_client_call (cli->client, "GET", "/v1/cluster/nodes", NULL, &status, &all, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (all);
      return 0;
    }
  printf ("%-56s  %-12s  %-6s  %9s  %6s  %9s  %7s  %s\n", "ID", "NAME", "STATE", "FREE MiB", "CPUS", "WORKLOADS",
          "AGE ms", "DRIVERS");
  size_t i;
  json_t *n;
  json_array_foreach (json_object_get (all, "nodes"), i, n)
  {
    char mem[32], cpu[32], wl[32], age[32];
    cleanup_free char *drivers = json_dumps (json_object_get (n, "drivers"), JSON_COMPACT);
    const char *state = !json_is_true (json_object_get (n, "alive"))      ? "dead"
                        : json_is_true (json_object_get (n, "lame_duck")) ? "drain"
                                                                          : "alive";
    printf ("%-56s  %-12s  %-6s  %9s  %6s  %9s  %7s  %s%s\n", str (n, "id", "?"), str (n, "name", "?"), state,
            num (n, "free", "memory_mb", mem, sizeof mem), num (n, "free", "vcpus", cpu, sizeof cpu),
            num (n, "workloads", NULL, wl, sizeof wl), num (n, "age_ms", NULL, age, sizeof age),
            drivers ? drivers : "[]", json_is_true (json_object_get (n, "self")) ? "  (this node)" : "");
  }
  return 0;
}

static int
cmd_cluster_ps (cli_t *cli, int argc, char **argv)
{
  enum
  {
    F_NAMESPACE,
    F_STATE,
    F_NODE,
  };
  static flag_t flags[] = {
    [F_NAMESPACE] = { "namespace", 0, 1, "only this namespace" },
    [F_STATE] = { "state", 0, 1, "only workloads in this state (or lost)" },
    [F_NODE] = { "node", 0, 1, "only workloads of this node" },
    { NULL },
  };
  char *pos[1];
  parse_args (cli, argc, argv, flags, "nex cluster ps [--namespace NS] [--state STATE] [--node ID] [--json]", pos, 0);
  cleanup_free char *path
      = nex_client_path (cli->client, "/v1/cluster/workloads", "namespace", flag_value (&flags[F_NAMESPACE], NULL),
                         "state", flag_value (&flags[F_STATE], NULL), "node", flag_value (&flags[F_NODE], NULL), NULL);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *all = NULL;
  long status;
  if (nex_client_call (cli->client, "GET", path, NULL, &status, &all, &err) < 0)
    return fail_api (err);
  if (cli->json)
    {
      print_json (all);
      return 0;
    }
  printf ("%-36s  %-20s  %-12s  %-8s  %s\n", "ID", "NAME", "NAMESPACE", "STATE", "NODE");
  size_t i;
  json_t *w;
  json_array_foreach (json_object_get (all, "workloads"), i, w)
  {
    printf ("%-36s  %-20s  %-12s  %-8s  %s\n", str (w, "id", "-"), str (w, "name", "?"), str (w, "namespace", "?"),
            str (w, "state", "?"), str (w, "node", "?"));
  }
  return 0;
}

static int
cmd_cluster_forget (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  if (parse_args (cli, argc, argv, flags, "nex cluster forget KEY [--json]", pos, 1) != 1)
    fail_usage ("which entry? (usage: nex cluster forget KEY; the key is `key` in nex cluster ps --json)");
  /* The key goes into the path: only a UUID's characters. */
  if (strlen (pos[0]) != 36 || strspn (pos[0], "0123456789abcdefABCDEF-") != 36)
    fail_usage ("`%.64s` is not a desired-state key (a UUID)", pos[0]);
  cleanup_free char *path = nex_xasprintf ("/v1/cluster/workloads/%s", pos[0]);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *r = NULL;
  long status;
  if (nex_client_call (cli->client, "DELETE", path, NULL, &status, &r, &err) < 0)
    return fail_api (err);
  if (cli->json)
    print_json (r);
  else
    printf ("forgot %s (%s, %s on %s)\n", str (r, "key", "?"), str (r, "name", "?"), str (r, "state", "?"),
            str (r, "owner", "?"));
  return 0;
}

static int
cmd_node_drain (cli_t *cli, int argc, char **argv)
{
  static flag_t flags[] = { { NULL } };
  char *pos[1];
  int n = parse_args (cli, argc, argv, flags, "nex node drain [NODE_ID] [--json]", pos, 1);
  cleanup_free char *path = nex_xasprintf ("/v1/cluster/nodes/%s/drain", n == 1 ? pos[0] : "self");
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *r = NULL;
  long status;
  if (nex_client_call (cli->client, "POST", path, NULL, &status, &r, &err) < 0)
    return fail_api (err);
  if (cli->json)
    print_json (r);
  else
    printf ("draining %s\n", str (r, "node_id", "?"));
  return 0;
}

/* --- dispatch --------------------------------------------------------------------------------------------------- */

typedef struct command
{
  const char *words; /* "run", "node info" */
  int (*run) (cli_t *cli, int argc, char **argv);
  const char *summary;
} command_t;

static const command_t commands[] = {
  { "node info", cmd_node_info, "what the node is: id, version, drivers, workloads by state" },
  { "run", cmd_run, "deploy a program (a local file is uploaded first) and print its id" },
  { "ls", cmd_ls, "list workloads" },
  { "info", cmd_info, "show one workload with its state history" },
  { "logs", cmd_logs, "print a workload's output (-f: follow it until it ends)" },
  { "events", cmd_events, "print the node's events (-f: follow them)" },
  { "stop", cmd_stop, "stop a workload (SIGTERM, then SIGKILL after the grace)" },
  { "pause", cmd_pause, "freeze a running workload (cgroup freezer; a QEMU VM's vCPUs); prints its state" },
  { "resume", cmd_resume, "thaw a paused workload; prints its state" },
  { "snapshot ls", cmd_snapshot_ls, "list the node's VM snapshots" },
  { "snapshot rm", cmd_snapshot_rm, "delete a VM snapshot (its file and record)" },
  { "snapshot restore", cmd_snapshot_restore, "deploy a workload from a VM snapshot; prints its id" },
  { "snapshot", cmd_snapshot, "write a microVM workload's state to a snapshot; prints the snapshot's id" },
  { "exec", cmd_exec, "run a command in a workload's sandbox (-it: a shell on a terminal there)" },
  { "wait", cmd_wait, "wait until a workload reaches a state (default: until it ends); print it" },
  { "token create", cmd_token_create, "create an API token (admin); prints its secret, once" },
  { "token ls", cmd_token_ls, "list API tokens (admin)" },
  { "token revoke", cmd_token_revoke, "revoke an API token (admin)" },
  { "image ls", cmd_image_ls, "list the node's cached OCI images" },
  { "image pull", cmd_image_pull, "pull an OCI image into the node's cache (asks the registry again)" },
  { "image load", cmd_image_load, "upload an image tar (OCI layout or docker-archive) into the node's cache" },
  { "image rm", cmd_image_rm, "remove a cached image no live workload uses" },
  { "cluster nodes", cmd_cluster_nodes, "the nodes of the cluster (NATS): free resources, workloads, heartbeats" },
  { "cluster ps", cmd_cluster_ps, "every node's workloads (and those lost with their node)" },
  { "cluster forget", cmd_cluster_forget,
    "remove a desired-state entry by its key (a lost one of a node gone for good)" },
  { "node drain", cmd_node_drain, "drain a node (default: this one): move its work off, then it stops (admin)" },
  { NULL, NULL, NULL },
};

static void
print_help (void)
{
  printf ("Usage: nex COMMAND [OPTIONS] [ARGS]\nThe command line client of a Nex node.\n\nCommands:\n");
  for (const command_t *c = commands; c->words; c++)
    printf ("  %-14s  %s\n", c->words, c->summary);
  printf ("\nGlobal options (every command):\n"
          "  --server URL   the node (env NEX_SERVER; default " DEFAULT_SERVER ")\n"
          "  --token TOKEN  bearer token (env NEX_TOKEN)\n"
          "  --json         print the node's JSON instead of text\n"
          "  --cacert FILE  trust this CA (PEM) for an https:// server (env NEX_CACERT)\n"
          "  -h, --help     help for a command: nex COMMAND --help\n\n"
          "Exit status: 0 success, 1 the request failed (the message says why), 2 wrong usage.\n");
}

int
main (int argc, char **argv)
{
  if (sodium_init () < 0)
    {
      fprintf (stderr, "nex: libsodium failed to initialise\n");
      return EXIT_API;
    }
  if (argc < 2)
    fail_usage ("which command? (see nex --help)");
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      print_help ();
      return 0;
    }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0)
    {
      printf ("nex %s\n", PACKAGE_VERSION);
      return 0;
    }
  cli_t cli = { .global = {
                    [G_SERVER] = { "server", 0, 1, "the node's URL (env NEX_SERVER)" },
                    [G_TOKEN] = { "token", 0, 1, "bearer token (env NEX_TOKEN)" },
                    [G_JSON] = { "json", 0, 0, "print JSON" },
                    [G_HELP] = { "help", 'h', 0, "this help" },
                    [G_CACERT] = { "cacert", 0, 1, "PEM file of the CA to trust for https (env NEX_CACERT)" },
                } };
  /* Global options may also come before the command: they are moved behind its words. */
  cleanup_free char **args = nex_xzalloc ((size_t)(argc + 1) * sizeof *args);
  int n_args = 0, first = 1;
  while (first < argc && argv[first][0] == '-')
    {
      const char *a = argv[first];
      int with_value = strcmp (a, "--server") == 0 || strcmp (a, "--token") == 0 || strcmp (a, "--cacert") == 0;
      if (!with_value && strcmp (a, "--json") != 0 && strncmp (a, "--server=", 9) != 0
          && strncmp (a, "--token=", 8) != 0 && strncmp (a, "--cacert=", 9) != 0)
        fail_usage ("unknown option `%s` before the command (see nex --help)", a);
      if (with_value && first + 1 == argc)
        fail_usage ("option `%s` needs a value", a);
      args[n_args++] = argv[first++];
      if (with_value)
        args[n_args++] = argv[first++];
    }
  if (first == argc)
    fail_usage ("which command? (see nex --help)");
  argv += first - 1;
  argc -= first - 1;

  const command_t *found = NULL;
  int used = 0;
  for (const command_t *c = commands; c->words && !found; c++)
    {
      /* A command is one word ("run") or two ("node info"). */
      const char *space = strchr (c->words, ' ');
      size_t len = space ? (size_t)(space - c->words) : strlen (c->words);
      if (strlen (argv[1]) != len || strncmp (argv[1], c->words, len) != 0)
        continue;
      if (space == NULL)
        found = c, used = 2;
      else if (argc >= 3 && strcmp (argv[2], space + 1) == 0)
        found = c, used = 3;
    }
  if (found == NULL)
    {
      /* The first word of a two-word command alone: say which second words there are. */
      char group[256] = "";
      for (const command_t *c = commands; c->words; c++)
        {
          const char *space = strchr (c->words, ' ');
          if (space && (size_t)(space - c->words) == strlen (argv[1])
              && strncmp (argv[1], c->words, strlen (argv[1])) == 0
              && strlen (group) + strlen (space) + 2 < sizeof group)
            strcat (strcat (group, group[0] ? ", " : ""), space + 1);
        }
      if (group[0])
        fail_usage ("`nex %s` needs a subcommand: %s", argv[1], group);
      fail_usage ("unknown command `%s` (see nex --help)", argv[1]);
    }
  cli.command = found->words;
  for (int i = used; i < argc; i++)
    args[n_args++] = argv[i];
  int r = found->run (&cli, n_args, args);
  nex_client_free (cli.client);
  for (int i = 0; i < G__COUNT; i++)
    free (cli.global[i].values);
  for (flag_t *f = cli.flags; f && f->name; f++)
    free (f->values);
  return r;
}
