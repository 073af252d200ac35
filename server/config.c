/* SPDX-License-Identifier: Apache-2.0 */
/* config.c — see config.h.  The option table below is the single list of nexd's options. */
#include "server/config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/paths.h"
#include "server/workload.h"
#include "autoconfig.h"

typedef enum
{
  OPT_STRING,
  OPT_INT
} opt_type_t;

typedef struct
{
  const char *name; /* config-file key; flag is --name with '_' as '-'; env is NEX_NAME upper-cased */
  opt_type_t type;
  size_t offset;         /* into nex_config_t */
  const char *def;       /* the default; of a path option, only what --help shows: the installed default */
  const char *build_def; /* a path option (the layout decides its default, paths.h): its build-tree default */
  const char *help;
} opt_t;

#define OPT(n, t, d, h)                                                                                                \
  {                                                                                                                    \
#n, t, offsetof(nex_config_t, n), d, NULL, h                                                                       \
  }
#define OPT_PATH(n, installed, build, h)                                                                               \
  {                                                                                                                    \
#n, OPT_STRING, offsetof(nex_config_t, n), installed, build, h                                                     \
  }
static const opt_t options[] = {
  OPT (listen, OPT_STRING, "127.0.0.1:8080", "address of the REST API and dashboard (host:port)"),
  OPT_PATH (data_dir, NEX_PATHS_INSTALLED_DATA, "./nex-data",
            "directory for the registry, artifact cache and sandboxes"),
  OPT (log_level, OPT_STRING, "info", "debug, info, warn or error"),
  OPT_PATH (agent, NEX_PATHS_INSTALLED_AGENT, "nex-agent beside nexd", "path of nex-agent"),
  OPT (nats, OPT_STRING, NULL, "NATS server URL(s), comma-separated (default: none; the node runs alone)"),
  OPT (nats_creds, OPT_STRING, NULL, "NATS credentials file (user JWT and seed)"),
  OPT (nats_nkey, OPT_STRING, NULL, "file holding a NATS user nkey seed (SU...) to authenticate with"),
  OPT (nats_user, OPT_STRING, NULL, "NATS user name (with --nats-password)"),
  OPT (nats_password, OPT_STRING, NULL, "NATS password"),
  OPT (nats_tls_ca, OPT_STRING, NULL, "PEM file of CAs to trust for NATS (turns TLS on)"),
  OPT (nats_tls_cert, OPT_STRING, NULL, "client certificate for NATS TLS (PEM, with --nats-tls-key)"),
  OPT (nats_tls_key, OPT_STRING, NULL, "client key for NATS TLS (PEM)"),
  OPT (nats_buffer, OPT_INT, "10000", "events and log lines kept for NATS while disconnected (oldest dropped)"),
  OPT (heartbeat_s, OPT_INT, "30", "seconds between heartbeat events on NATS"),
  OPT (function_warm, OPT_INT, "16",
       "processes of each function kept started ahead in its sandbox, at most its max_concurrency (0: none)"),
  OPT (tags, OPT_STRING, NULL, "node tags reported over NATS and matched by auctions: k=v,k=v"),
  OPT (node_timeout, OPT_INT, "5",
       "cluster: seconds without a heartbeat after which a peer is dead and its restartable workloads move"),
  OPT (lost_ttl, OPT_INT, "3600",
       "cluster: seconds a `lost` workload of a dead node stays in the desired state (0: until removed by hand)"),
  OPT (valid_issuers, OPT_STRING, NULL, "comma-separated issuer nkeys whose workload JWTs are accepted (default any)"),
  OPT (default_driver, OPT_STRING, "sandbox", "driver for workloads that name none"),
  OPT (log_lines, OPT_INT, "10000", "log lines kept per workload; older ones are dropped and counted"),
  OPT (retain_ended, OPT_STRING, "7d",
       "how long an ended workload is kept (with its logs and events) before a background job deletes it: "
       "N followed by s, m, h or d (0: forever)"),
  OPT (max_body_bytes, OPT_INT, "1048576", "largest request body accepted (larger: 413)"),
  OPT (stop_grace_s, OPT_INT, "10", "default seconds between SIGTERM and SIGKILL when stopping"),
  OPT (api_threads, OPT_INT, "4", "HTTP worker threads"),
  OPT (max_artifact_bytes, OPT_INT, "268435456", "largest artifact upload accepted (larger: 413; at most 512 MiB)"),
  OPT (anonymous, OPT_STRING, "none", "what requests without a token may do: none, read, or read,deploy"),
  OPT (admin_token, OPT_STRING, NULL, "an admin bearer token (default: one is made at first start, in admin.token)"),
  OPT (max_connections, OPT_INT, "1000", "HTTP connections at once (more are refused)"),
  OPT (max_connections_per_ip, OPT_INT, "100", "HTTP connections at once from one client address"),
  OPT (request_timeout_s, OPT_INT, "30", "seconds a request may take to send its headers and body"),
  OPT (header_timeout_s, OPT_INT, "10", "seconds a request may take to send its headers (at most request_timeout_s)"),
  OPT (idle_timeout_s, OPT_INT, "60", "seconds an idle connection is kept open"),
  OPT (tls_cert, OPT_STRING, NULL, "PEM certificate file: serve HTTPS (with tls_key)"),
  OPT (tls_key, OPT_STRING, NULL, "PEM private key file for tls_cert"),
  OPT_PATH (vm_kernel_dir, NEX_PATHS_INSTALLED_KERNEL, "kernel/ beside nexd",
            "microVM kernel directory: vmlinuz, vmlinux, modules/"),
  OPT (qemu_path, OPT_STRING, "qemu-system-x86_64", "QEMU system emulator for the qemu driver"),
  OPT (firecracker_path, OPT_STRING, "firecracker", "Firecracker binary for the firecracker driver"),
  OPT (kvm_device, OPT_STRING, "/dev/kvm", "KVM device (QEMU uses TCG emulation without it; Firecracker needs it)"),
  OPT (kvm_probe, OPT_STRING, "on", "on: KVM is usable once a probe guest ran under it; off: once the device opens"),
  OPT (vm_accel, OPT_STRING, "auto",
       "QEMU's accelerator: auto (KVM when usable; a VM failing under KVM is retried under TCG), kvm or tcg"),
  OPT (kvm_boot_s, OPT_INT, "20", "vm_accel auto: seconds a VM under KVM has to boot before it is retried under TCG"),
  OPT (vm_memory_mib, OPT_INT, "128", "memory of a microVM, MiB, when the workload asks for none"),
  OPT (vm_vcpus, OPT_INT, "1", "vCPUs of a microVM when the workload asks for none"),
  OPT (insecure_registries, OPT_STRING, NULL,
       "image registries (host or host:port, comma-separated) reached over plain http; loopback always is"),
  OPT (registry_auth, OPT_STRING, NULL, "credentials for image registries: a docker config.json (its `auths`)"),
  OPT (image_max_unpacked_mb, OPT_INT, "4096", "largest image accepted, unpacked, MiB (all layers together)"),
  OPT (image_max_files, OPT_INT, "500000", "most files (tar entries) an image may have, all layers together"),
  OPT (image_root, OPT_STRING, "auto",
       "an image sandbox's root: auto (an overlay where the kernel allows it in a user namespace, else a private "
       "copy of the tree) or copy"),
  OPT (image_cache_bytes, OPT_INT, "0",
       "bound of the image cache, bytes as pulled: after each pull the least recently used images no live "
       "workload runs are removed until it fits (0: unbounded)"),
  OPT_PATH (web_dir, NEX_PATHS_INSTALLED_WEB, "web/ of the source tree", "directory of the dashboard served at /"),
  OPT_PATH (vendor_dir, NEX_PATHS_INSTALLED_VENDOR, "node_modules/ of the source tree",
            "browser libraries served at /vendor/, in npm's layout (@xterm/xterm/lib/xterm.js, ...)"),
  OPT (network_cidr, OPT_STRING, NULL,
       "addresses of network-bridge workloads, an IPv4 /12../29 (default: a free /16 in 10/8, checked at start)"),
  OPT (egress_default, OPT_STRING, "allow",
       "what a bridge workload may reach beyond its egress policy: allow (the internet) or deny"),
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static int
opt_set (nex_config_t *cfg, const opt_t *o, const char *value, const char *source, nex_error_t *err)
{
  char *base = (char *)cfg + o->offset;
  if (o->type == OPT_STRING)
    {
      char **slot = (char **)base;
      free (*slot);
      *slot = value ? nex_xstrdup (value) : NULL;
      return 0;
    }
  char *end = NULL;
  errno = 0;
  long long v = strtoll (value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < 0)
    return nex_error_field (err, o->name, "%s: option `%s` must be a non-negative integer, got `%s`", source, o->name,
                            value);
  *(int64_t *)base = v;
  return 0;
}

/* Parses a duration "N" + s|m|h|d (or "0": none) into *MS; -1 when it is not one or exceeds 3650 days. */
static int
config_duration_ms (const char *s, int64_t *ms)
{
  static const struct
  {
    char unit;
    int64_t ms;
  } units[] = { { 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 }, { 'd', 86400000 } };
  char *end = NULL;
  errno = 0;
  long long v = s && *s >= '0' && *s <= '9' ? strtoll (s, &end, 10) : -1;
  if (v < 0 || errno != 0)
    return -1;
  if (v == 0 && *end == '\0')
    return *ms = 0;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (end[0] == units[i].unit && end[1] == '\0' && v <= 3650LL * 86400000 / units[i].ms)
      {
        *ms = v * units[i].ms;
        return *ms > 0 ? 0 : -1;
      }
  return -1;
}

static const opt_t *
opt_find_flag (const char *flag)
{
  for (size_t i = 0; i < N_OPTIONS; i++)
    {
      const char *n = options[i].name;
      size_t j = 0;
      for (; n[j] && flag[j]; j++)
        if (flag[j] != (n[j] == '_' ? '-' : n[j]))
          break;
      if (n[j] == '\0' && (flag[j] == '\0' || flag[j] == '='))
        return &options[i];
    }
  return NULL;
}

static int
config_from_file (nex_config_t *cfg, const char *path, nex_error_t *err)
{
  json_error_t jerr;
  cleanup_json json_t *root = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL)
    return nex_error_field (err, "config", "config file `%s`: %s (line %d)", path, jerr.text, jerr.line);
  if (!json_is_object (root))
    return nex_error_field (err, "config", "config file `%s`: must hold a JSON object", path);
  const char *key;
  json_t *val;
  json_object_foreach (root, key, val)
  {
    const opt_t *o = NULL;
    for (size_t i = 0; i < N_OPTIONS; i++)
      if (strcmp (options[i].name, key) == 0)
        o = &options[i];
    if (o == NULL)
      return nex_error_field (err, key, "config file `%s`: unknown option `%s`", path, key);
    /* Strict types: a number where a string belongs is more likely a mistake than a wish. */
    cleanup_free char *text = NULL;
    if (o->type == OPT_STRING && json_is_string (val))
      text = nex_xstrdup (json_string_value (val));
    else if (o->type == OPT_INT && json_is_integer (val))
      text = nex_xasprintf ("%lld", (long long)json_integer_value (val));
    else if (!(o->type == OPT_STRING && json_is_null (val)))
      return nex_error_field (err, key, "config file `%s`: option `%s` must be %s", path, key,
                              o->type == OPT_STRING ? "a string" : "an integer");
    if (opt_set (cfg, o, text, path, err) < 0)
      return -1;
  }
  return 0;
}

/* One line of --help: the option column, at least two spaces, its text (or, with LEFT "", a continuation line).
 * build-aux/man-from-help.py reads this form to make nexd(8): keep the two spaces. */
static void
help_line (FILE *out, const char *left, const char *text)
{
  fprintf (out, "  %-28s  %s\n", left, text);
}

static void
print_help (FILE *out)
{
  fprintf (out, "Usage: nexd [OPTION]...\nRun a Nex node: a REST API on top of sandboxed workloads.\n\n");
  help_line (out, "--config FILE",
             "JSON file of options: an object whose keys are the option names, '_' for '-' (log_level)");
  help_line (out, "", "(env NEX_CONFIG; default none)");
  for (size_t i = 0; i < N_OPTIONS; i++)
    {
      char flag[64], env[64];
      size_t j;
      for (j = 0; options[i].name[j] && j < sizeof flag - 1; j++)
        {
          flag[j] = options[i].name[j] == '_' ? '-' : options[i].name[j];
          env[j] = (char)(options[i].name[j] >= 'a' && options[i].name[j] <= 'z' ? options[i].name[j] - 32
                                                                                 : options[i].name[j]);
        }
      flag[j] = env[j] = '\0';
      cleanup_free char *left = nex_xasprintf ("--%s %s", flag, options[i].type == OPT_INT ? "N" : "VALUE");
      help_line (out, left, options[i].help);
      /* An option without a default says in its help what happens without it. */
      const char *def = options[i].def;
      if (options[i].build_def)
        {
          cleanup_free char *installed = nex_xasprintf ("(env NEX_%s; default %s,", env, def);
          cleanup_free char *build = nex_xasprintf ("from the build tree %s)", options[i].build_def);
          help_line (out, "", installed);
          help_line (out, "", build);
          continue;
        }
      cleanup_free char *where = nex_xasprintf ("(env NEX_%s%s%s)", env, def ? "; default " : "", def ? def : "");
      help_line (out, "", where);
    }
  help_line (out, "--help", "print this help");
  help_line (out, "--version", "print the version");
  fprintf (out, "\nFlags override the environment, which overrides the config file.  Run from the directory it was\n"
                "built in, nexd uses the build tree's files; otherwise the installed ones, below R when nexd is\n"
                "R" NEX_SBINDIR "/nexd (an installed tree moved, or staged with make install DESTDIR=R).\n");
}

/* The options naming nexd's files that no source set take the defaults of the layout nexd runs in (paths.h). */
static int
config_fill_paths (nex_config_t *cfg, nex_error_t *err)
{
  cleanup_free char *exe = nex_paths_self (err);
  if (exe == NULL)
    return -1;
  cleanup_with (nex_paths_release) nex_paths_t paths;
  nex_paths_init (&paths, exe);
  struct
  {
    char **option;
    char **def;
  } fill[] = {
    { &cfg->agent, &paths.agent },       { &cfg->vm_kernel_dir, &paths.kernel_dir },
    { &cfg->web_dir, &paths.web_dir },   { &cfg->vendor_dir, &paths.vendor_dir },
    { &cfg->data_dir, &paths.data_dir },
  };
  for (size_t i = 0; i < sizeof fill / sizeof fill[0]; i++)
    if (*fill[i].option == NULL)
      *fill[i].option = NEX_STEAL_PTR (*fill[i].def);
  return 0;
}

int
nex_config_load (nex_config_t *cfg, int argc, char **argv, char **envp, FILE *out, nex_error_t *err)
{
  memset (cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (options[i].def && options[i].build_def == NULL
        && opt_set (cfg, &options[i], options[i].def, "default", err) < 0)
      return -1;

  /* Pass 1: --help, --version and the config file location. */
  const char *config_path = NULL;
  for (char **e = envp; e && *e; e++)
    if (strncmp (*e, "NEX_CONFIG=", 11) == 0)
      config_path = *e + 11;
  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0)
        {
          print_help (out);
          return 1;
        }
      if (strcmp (argv[i], "--version") == 0)
        {
          fprintf (out, "nexd %s\n", PACKAGE_VERSION);
          return 1;
        }
      if (strcmp (argv[i], "--config") == 0 && i + 1 < argc)
        config_path = argv[i + 1];
      else if (strncmp (argv[i], "--config=", 9) == 0)
        config_path = argv[i] + 9;
    }
  if (config_path && config_from_file (cfg, config_path, err) < 0)
    return -1;

  /* Pass 2: the environment. */
  for (char **e = envp; e && *e; e++)
    {
      if (strncmp (*e, "NEX_", 4) != 0)
        continue;
      const char *eq = strchr (*e, '=');
      if (eq == NULL)
        continue;
      for (size_t i = 0; i < N_OPTIONS; i++)
        {
          const char *n = options[i].name;
          size_t len = (size_t)(eq - (*e + 4));
          if (strlen (n) != len)
            continue;
          size_t j = 0;
          for (; j < len; j++)
            if ((*e)[4 + j] != (n[j] >= 'a' && n[j] <= 'z' ? n[j] - 32 : n[j]))
              break;
          if (j == len && opt_set (cfg, &options[i], eq + 1, "environment", err) < 0)
            return -1;
        }
    }

  /* Pass 3: flags. */
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      if (strncmp (a, "--", 2) != 0)
        return nex_error_field (err, a, "unexpected argument `%s` (see --help)", a);
      if (strcmp (a, "--config") == 0)
        {
          i++;
          continue;
        }
      if (strncmp (a, "--config=", 9) == 0)
        continue;
      const opt_t *o = opt_find_flag (a + 2);
      if (o == NULL)
        return nex_error_field (err, a, "unknown option `%s` (see --help)", a);
      const char *eq = strchr (a, '=');
      const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
      if (value == NULL)
        return nex_error_field (err, o->name, "option `%s` needs a value", a);
      if (opt_set (cfg, o, value, "command line", err) < 0)
        return -1;
    }

  if (config_fill_paths (cfg, err) < 0)
    return -1;
  nex_log_level_t lvl;
  if (nex_log_level_parse (cfg->log_level, &lvl, err) < 0)
    return -1;
  if (cfg->image_cache_bytes < 0)
    return nex_error_field (err, "image_cache_bytes", "image_cache_bytes must be 0 (unbounded) or more");
  if (cfg->log_lines < 1)
    return nex_error_field (err, "log_lines", "log_lines must be at least 1");
  if (config_duration_ms (cfg->retain_ended, &cfg->retain_ended_ms) < 0)
    return nex_error_field (err, "retain_ended",
                            "retain_ended must be 0 or a whole number followed by s, m, h or d (at most 3650d), "
                            "got `%s`",
                            cfg->retain_ended);
  if (cfg->nats_buffer < 1)
    return nex_error_field (err, "nats_buffer", "nats_buffer must be at least 1");
  if (cfg->heartbeat_s < 1)
    return nex_error_field (err, "heartbeat_s", "heartbeat_s must be at least 1");
  if (cfg->function_warm < 0 || cfg->function_warm > NEX_FUNCTION_MAX_CONCURRENCY)
    return nex_error_field (err, "function_warm", "function_warm must be from 0 to %d", NEX_FUNCTION_MAX_CONCURRENCY);
  if (cfg->node_timeout < 2 || cfg->node_timeout > 3600)
    return nex_error_field (err, "node_timeout", "node_timeout must be between 2 and 3600 seconds");
  if (cfg->lost_ttl < 0 || cfg->lost_ttl > 31536000)
    return nex_error_field (err, "lost_ttl", "lost_ttl must be between 0 and 31536000 seconds");
  if ((cfg->nats_tls_cert == NULL) != (cfg->nats_tls_key == NULL))
    return nex_error_field (err, cfg->nats_tls_cert ? "nats_tls_key" : "nats_tls_cert",
                            "nats_tls_cert and nats_tls_key go together");
  if ((cfg->nats_user == NULL) != (cfg->nats_password == NULL))
    return nex_error_field (err, cfg->nats_user ? "nats_password" : "nats_user",
                            "nats_user and nats_password go together");
  if (cfg->api_threads < 1 || cfg->api_threads > 256)
    return nex_error_field (err, "api_threads", "api_threads must be between 1 and 256");
  if (cfg->max_connections < 1 || cfg->max_connections > 100000)
    return nex_error_field (err, "max_connections", "max_connections must be between 1 and 100000");
  if (cfg->max_connections_per_ip < 1 || cfg->max_connections_per_ip > cfg->max_connections)
    return nex_error_field (err, "max_connections_per_ip",
                            "max_connections_per_ip must be between 1 and max_connections");
  if (cfg->header_timeout_s < 1)
    return nex_error_field (err, "header_timeout_s", "header_timeout_s must be at least 1");
  if (cfg->request_timeout_s < 1 || cfg->idle_timeout_s < 1)
    return nex_error_field (err, cfg->request_timeout_s < 1 ? "request_timeout_s" : "idle_timeout_s",
                            "timeouts must be at least 1 second");
  if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
    return nex_error_field (err, cfg->tls_cert ? "tls_key" : "tls_cert", "tls_cert and tls_key go together");
  if (cfg->max_artifact_bytes < 1 || cfg->max_artifact_bytes > 512LL * 1024 * 1024)
    return nex_error_field (err, "max_artifact_bytes", "max_artifact_bytes must be between 1 and 536870912");
  if (strcmp (cfg->vm_accel, "auto") != 0 && strcmp (cfg->vm_accel, "kvm") != 0 && strcmp (cfg->vm_accel, "tcg") != 0)
    return nex_error_field (err, "vm_accel", "vm_accel must be auto, kvm or tcg, got `%s`", cfg->vm_accel);
  if (strcmp (cfg->kvm_probe, "on") != 0 && strcmp (cfg->kvm_probe, "off") != 0)
    return nex_error_field (err, "kvm_probe", "kvm_probe must be on or off, got `%s`", cfg->kvm_probe);
  if (strcmp (cfg->image_root, "auto") != 0 && strcmp (cfg->image_root, "copy") != 0)
    return nex_error_field (err, "image_root", "image_root must be auto or copy, got `%s`", cfg->image_root);
  if (cfg->kvm_boot_s < 1 || cfg->kvm_boot_s > 3600)
    return nex_error_field (err, "kvm_boot_s", "kvm_boot_s must be between 1 and 3600");
  char *host = NULL;
  int port;
  if (nex_config_listen_addr (cfg, &host, &port, err) < 0)
    return -1;
  free (host);
  return 0;
}

void
nex_config_release (nex_config_t *cfg)
{
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (options[i].type == OPT_STRING)
      {
        char **slot = (char **)((char *)cfg + options[i].offset);
        free (*slot);
        *slot = NULL;
      }
}

int
nex_config_listen_addr (const nex_config_t *cfg, char **host, int *port, nex_error_t *err)
{
  const char *colon = strrchr (cfg->listen, ':');
  if (colon == NULL || colon == cfg->listen)
    return nex_error_field (err, "listen", "listen address `%s` must be host:port", cfg->listen);
  char *end = NULL;
  long p = strtol (colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535 || end == colon + 1)
    return nex_error_field (err, "listen", "listen address `%s` has a bad port", cfg->listen);
  *host = nex_xstrndup (cfg->listen, (size_t)(colon - cfg->listen));
  *port = (int)p;
  return 0;
}
