/* config.h — nexd's settings and where they come from.
 *
 * Every option has a safe default, so `nexd` with no arguments runs a node.  Sources, later overriding earlier:
 * built-in defaults, a JSON config file (--config FILE or NEX_CONFIG), environment variables NEX_<OPTION>,
 * command-line flags --<option>.  One table in config.c names each option once for all three sources and for
 * --help. */
#ifndef NEX_CONFIG_H
#define NEX_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "server/log.h"

typedef struct nex_config
{
  char *listen;           /* "host:port" of the REST API; default 127.0.0.1:8080 */
  char *data_dir;         /* registry, artifact cache, sandbox run dirs; default ./nex-data (made absolute) */
  char *log_level;        /* debug|info|warn|error; default info */
  char *agent;            /* path of nex-agent; default: next to the nexd executable */
  char *nats;             /* NATS URL; NULL (default) runs the node alone */
  char *default_driver;   /* driver for workloads that name none; default sandbox */
  int64_t log_lines;      /* log lines kept per workload (oldest dropped first); default 10000 */
  int64_t max_body_bytes; /* largest request body accepted; default 1 MiB */
  int64_t stop_grace_s;   /* default grace between SIGTERM and SIGKILL on stop; default 10 */
  int64_t api_threads;    /* HTTP worker threads; default 4 */
  char *web_dir;          /* the dashboard's files; default: web/ of the source tree nexd was built from */
} nex_config_t;

/* Fills CFG from defaults, the config file, the environment ENVP and ARGV, in that order.  Returns 0, 1 when
 * --help or --version was handled (printed to OUT; the caller exits 0), or -1 with NEX_ERR_INVALID naming the
 * bad option. */
int nex_config_load (nex_config_t *cfg, int argc, char **argv, char **envp, FILE *out, nex_error_t *err);

/* Releases what CFG owns. */
void nex_config_release (nex_config_t *cfg);

/* Splits cfg->listen into HOST (caller frees) and PORT.  -1 with NEX_ERR_INVALID when malformed. */
int nex_config_listen_addr (const nex_config_t *cfg, char **host, int *port, nex_error_t *err);

#endif
