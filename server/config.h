/* SPDX-License-Identifier: Apache-2.0 */
/* config.h — nexd's settings and where they come from.
 *
 * Every option has a safe default, so `nexd` with no arguments runs a node.  Sources, later overriding earlier:
 * built-in defaults, a JSON config file (--config FILE or NEX_CONFIG), environment variables NEX_<OPTION>,
 * command-line flags --<option>.  One table in config.c names each option once for all three sources, for
 * --help and so for the man page (build-aux/man-from-help.py).  The paths nexd needs (agent, vm_kernel_dir,
 * web_dir, vendor_dir, data_dir) are never NULL after nex_config_load: left unset, they take the defaults of the
 * layout nexd runs in (paths.h). */
#ifndef NEX_CONFIG_H
#define NEX_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "server/log.h"

typedef struct nex_config
{
  char *listen;     /* "host:port" of the REST API; default 127.0.0.1:8080 */
  char *data_dir;   /* registry, artifact cache, sandbox run dirs; default: the layout's (paths.h), made absolute */
  char *log_level;  /* debug|info|warn|error; default info */
  char *agent;      /* path of nex-agent; default: the layout's (paths.h) */
  char *nats;       /* NATS URL(s), comma-separated; NULL (default) runs the node alone */
  char *nats_creds; /* NATS credentials file (user JWT + seed), optional */
  char *nats_nkey;  /* file holding a user nkey seed (SU...) to authenticate with, optional */
  char *nats_user;  /* NATS user name, optional (with nats_password) */
  char *nats_password;
  char *nats_tls_ca;   /* PEM file of CAs to trust; setting any TLS option turns TLS on */
  char *nats_tls_cert; /* client certificate (PEM), with nats_tls_key */
  char *nats_tls_key;
  char *tags;                 /* node tags "k=v,k=v" reported in ping/info and matched by auctions */
  char *valid_issuers;        /* comma-separated issuer nkeys whose workload JWTs are accepted; NULL: any */
  int64_t nats_buffer;        /* events + log lines queued for NATS while disconnected; beyond: oldest dropped */
  int64_t heartbeat_s;        /* seconds between heartbeat events on NATS; default 30 */
  int64_t function_warm;      /* processes of each function kept started ahead (at most its max_concurrency) */
  int64_t node_timeout;       /* cluster: seconds of silence after which a peer is dead; default 5 */
  int64_t lost_ttl;           /* cluster: seconds a `lost` entry of a dead node is kept; 0: forever; default 3600 */
  char *default_driver;       /* driver for workloads that name none; default sandbox */
  int64_t log_lines;          /* log lines kept per workload (oldest dropped first); default 10000 */
  char *retain_ended;         /* how long ended workloads are kept ("7d", "12h", "30s"; "0": forever); retain.h */
  int64_t retain_ended_ms;    /* retain_ended parsed (not an option of its own); 0: forever */
  int64_t max_body_bytes;     /* largest request body accepted; default 1 MiB */
  int64_t stop_grace_s;       /* default grace between SIGTERM and SIGKILL on stop; default 10 */
  int64_t api_threads;        /* HTTP worker threads; default 4 */
  int64_t max_artifact_bytes; /* largest artifact upload accepted (POST /v1/artifacts); default 256 MiB */
  char *anonymous;            /* scopes of requests without a token: none (default) or e.g. "read" (auth.h) */
  char *admin_token;          /* an admin token that lives only here; NULL (default): one is generated at first start */
  int64_t max_connections;    /* HTTP connections at once, in all; default 1000 */
  int64_t max_connections_per_ip; /* HTTP connections at once from one address; default 100 */
  int64_t request_timeout_s;      /* a request's headers and body must arrive within this; default 30 */
  int64_t header_timeout_s;       /* ... and its headers within this (capped by request_timeout_s); default 10 */
  int64_t idle_timeout_s;         /* a connection idle this long is closed; default 60 */
  char *tls_cert;                 /* PEM certificate (chain) file: serve HTTPS; NULL (default): plain HTTP */
  char *tls_key;                  /* PEM private key file of tls_cert */
  /* microVM drivers (server/drivers/vm.h) */
  char *vm_kernel_dir;    /* vmlinuz, vmlinux, modules/<driver>/; default: the layout's (paths.h) */
  char *qemu_path;        /* QEMU system emulator; default qemu-system-x86_64 (searched in PATH) */
  char *firecracker_path; /* Firecracker binary; default firecracker (searched in PATH) */
  char *kvm_device;       /* KVM device node; default /dev/kvm */
  char *kvm_probe;        /* "on" (default): KVM must run a probe guest (drivers/kvm.h); "off": it must open */
  char *vm_accel;         /* QEMU's accelerator: "auto" (default), "kvm" or "tcg" (drivers/vm.h) */
  int64_t kvm_boot_s;     /* in vm_accel auto, a VM under KVM must greet within this; default 20 */
  int64_t vm_memory_mib;  /* a VM's memory when its workload asks for none; default 128 */
  int64_t vm_vcpus;       /* a VM's vCPUs when its workload asks for none; default 1 */
  /* OCI images (server/artifacts/image-store.h) */
  char *insecure_registries;     /* hosts reached with plain http (comma-separated); loopback always is */
  char *registry_auth;           /* docker config.json whose `auths` gives registry credentials; NULL: none */
  int64_t image_max_unpacked_mb; /* an image's unpacked size bound; default 4096 */
  int64_t image_max_files;       /* an image's entry count bound; default 500000 */
  char *image_root;          /* "auto" (default): overlay if the kernel allows, else a copy; "copy" (image-root.h) */
  int64_t image_cache_bytes; /* the image cache's bound (bytes as pulled), LRU eviction; 0: unbounded */
  char *web_dir;             /* the dashboard's files; default: the layout's (paths.h) */
  char *vendor_dir;          /* browser libraries served at /vendor/ (npm's layout); default: the layout's (paths.h) */
  /* workload networking (server/net/net.h) */
  char *network_cidr;   /* address range of bridge workloads; NULL (default): a free /16 in 10/8 */
  char *egress_default; /* what bridge workloads may reach beyond their policy: allow (default) or deny */
} nex_config_t;

/* Fills CFG from defaults, the config file, the environment ENVP and ARGV, in that order, then the unset paths
 * from the layout of the running executable (paths.h).  Returns 0, 1 when
 * --help or --version was handled (printed to OUT; the caller exits 0), or -1 with NEX_ERR_INVALID naming the
 * bad option. */
int nex_config_load (nex_config_t *cfg, int argc, char **argv, char **envp, FILE *out, nex_error_t *err);

/* Releases what CFG owns. */
void nex_config_release (nex_config_t *cfg);

/* Splits cfg->listen into HOST (caller frees) and PORT.  -1 with NEX_ERR_INVALID when malformed. */
int nex_config_listen_addr (const nex_config_t *cfg, char **host, int *port, nex_error_t *err);

#endif
