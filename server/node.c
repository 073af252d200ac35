/* node.c — see node.h. */
#include "server/node.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/event.h"
#include "server/log.h"
#include "server/nats-bridge.h"

static char *
absolute_path (const char *path, nex_error_t *err)
{
  if (path[0] == '/')
    return nex_xstrdup (path);
  char cwd[PATH_MAX];
  if (getcwd (cwd, sizeof cwd) == NULL)
    {
      nex_error_sys (err, errno, "getcwd");
      return NULL;
    }
  const char *rel = strncmp (path, "./", 2) == 0 ? path + 2 : path;
  return nex_xasprintf ("%s/%s", cwd, rel);
}

static char *
find_agent (const nex_config_t *cfg, nex_error_t *err)
{
  if (cfg->agent)
    {
      char *p = absolute_path (cfg->agent, err);
      if (p && access (p, X_OK) < 0)
        {
          nex_error_field (err, "agent", "nex-agent `%s` is not executable: %s", p, strerror (errno));
          free (p);
          return NULL;
        }
      return p;
    }
  char self[PATH_MAX];
  ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (n < 0)
    {
      nex_error_sys (err, errno, "readlink /proc/self/exe");
      return NULL;
    }
  self[n] = '\0';
  char *slash = strrchr (self, '/');
  *slash = '\0';
  char *p = nex_xasprintf ("%s/nex-agent", self);
  if (access (p, X_OK) < 0)
    {
      nex_error_field (err, "agent", "nex-agent not found beside nexd (`%s`); set --agent", p);
      free (p);
      return NULL;
    }
  return p;
}

nex_node_t *
nex_node_open (const nex_config_t *cfg, nex_error_t *err)
{
  cleanup_free char *db = NULL;
  cleanup_free char *id = NULL;
  nex_node_t *node = nex_xzalloc (sizeof *node);
  node->cfg = cfg;
  node->started_at = nex_clock_now_ms ();
  node->started_mono = nex_clock_mono_ms ();
  char host[256] = "localhost";
  gethostname (host, sizeof host - 1);
  node->hostname = nex_xstrdup (host);

  node->data_dir = absolute_path (cfg->data_dir, err);
  if (node->data_dir == NULL)
    goto fail;
  node->artifacts_dir = nex_xasprintf ("%s/artifacts", node->data_dir);
  node->run_dir = nex_xasprintf ("%s/run", node->data_dir);
  if (nex_mkdir_p (node->artifacts_dir, 0700, err) < 0 || nex_mkdir_p (node->run_dir, 0700, err) < 0)
    goto fail;
  node->agent_path = find_agent (cfg, err);
  if (node->agent_path == NULL)
    goto fail;

  db = nex_xasprintf ("%s/registry.db", node->data_dir);
  node->reg = nex_registry_open (db, err);
  if (node->reg == NULL)
    goto fail;

  if (nex_identity_load (node->data_dir, &node->identity, err) < 0)
    goto fail;
  snprintf (node->id, sizeof node->id, "%s", node->identity.node.public_text);
  /* Kept in the registry too, so that the database says which node wrote it. */
  int found = nex_registry_meta_get (node->reg, "node_id", &id, err);
  if (found < 0 || ((found == 0 || strcmp (id, node->id) != 0) && nex_registry_meta_set (node->reg, "node_id", node->id, err) < 0))
    goto fail;
  return node;

fail:
  nex_node_close (node);
  return NULL;
}

void
nex_node_close (nex_node_t *node)
{
  if (node == NULL)
    return;
  nex_registry_close (node->reg);
  nex_identity_wipe (&node->identity);
  free (node->hostname);
  free (node->data_dir);
  free (node->artifacts_dir);
  free (node->run_dir);
  free (node->agent_path);
  free (node);
}

void
nex_node_emit (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data)
{
  if (data == NULL)
    data = json_object ();
  if (w)
    {
      json_object_set_new (data, "workload_id", json_string (w->id));
      json_object_set_new (data, "name", json_string (w->name));
      json_object_set_new (data, "namespace", json_string (w->namespace_));
    }
  cleanup_json json_t *ev = nex_event_new (node->id, type, w ? w->id : NULL, data);
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_event_append (node->reg, ev, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "event %s not stored", type);
  else
    nex_debug ("event %s %s", type, w ? w->id : "");
  if (node->nats)
    nex_nats_publish_event (node->nats, ev, w ? w->namespace_ : NULL);
}
