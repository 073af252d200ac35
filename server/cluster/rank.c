/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/rank.c — the placement rule and the requirement check, on heartbeat documents (contract in
 * cluster/internal.h).  Pure: the same functions decide an auction (placement.c), a node's answer to one
 * (the bid), and who takes a dead node's work (failover.c), so every node reaches the same verdict from the same
 * documents. */
#include "server/cluster/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xalloc.h"

#define TAGS_MAX 32

int
nex_cluster_requirements (const json_t *spec, const json_t *placement, nex_requirements_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  const json_t *res = json_object_get (spec, "resources");
  const json_t *mem = json_object_get (res, "memory_mb"), *cpu = json_object_get (res, "vcpus");
  out->memory_mb = json_is_integer (mem) && json_integer_value (mem) > 0 ? json_integer_value (mem) : 0;
  out->vcpus = json_is_number (cpu) && json_number_value (cpu) > 0 ? json_number_value (cpu) : 0;
  out->driver = json_string_value (json_object_get (spec, "driver"));
  if (placement == NULL || json_is_null (placement))
    return 0;
  if (!json_is_object (placement))
    return nex_error_field (err, "placement", "must be an object {tags, driver}");
  const char *key;
  const json_t *v;
  json_object_foreach ((json_t *)placement, key, v)
  {
    if (strcmp (key, "tags") != 0 && strcmp (key, "driver") != 0)
      return nex_error_field (err, "placement", "unknown member `%s` (placement takes tags and driver)", key);
  }
  const json_t *tags = json_object_get (placement, "tags");
  if (tags && !json_is_null (tags))
    {
      if (!json_is_object (tags) || json_object_size (tags) > TAGS_MAX)
        return nex_error_field (err, "placement.tags", "must be an object of at most %d strings", TAGS_MAX);
      json_object_foreach ((json_t *)tags, key, v)
      {
        if (!json_is_string (v) || *key == '\0')
          return nex_error_field (err, "placement.tags", "tag `%s` must have a string value", key);
      }
      out->tags = tags;
    }
  const json_t *driver = json_object_get (placement, "driver");
  if (driver && !json_is_null (driver))
    {
      if (!json_is_string (driver) || json_string_length (driver) == 0)
        return nex_error_field (err, "placement.driver", "must be a driver name");
      if (out->driver && strcmp (out->driver, json_string_value (driver)) != 0)
        return nex_error_field (err, "placement.driver", "the workload asks for driver `%s`", out->driver);
      out->driver = json_string_value (driver);
    }
  return 0;
}

/* Whether array NAMES holds string S. */
static int
has_string (const json_t *names, const char *s)
{
  size_t i;
  const json_t *n;
  json_array_foreach ((json_t *)names, i, n)
  {
    if (json_is_string (n) && strcmp (json_string_value (n), s) == 0)
      return 1;
  }
  return 0;
}

static double
member_number (const json_t *o, const char *outer, const char *inner)
{
  const json_t *v = json_object_get (json_object_get (o, outer), inner);
  return json_is_number (v) ? json_number_value (v) : 0;
}

static int refuse (char **why, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* Sets *WHY (when wanted) and returns 0: the node does not fit. */
static int
refuse (char **why, const char *fmt, ...)
{
  if (why == NULL)
    return 0;
  va_list ap;
  va_start (ap, fmt);
  if (vasprintf (why, fmt, ap) < 0)
    abort ();
  va_end (ap);
  return 0;
}

int
nex_cluster_fits (const json_t *info, const nex_requirements_t *r, char **why)
{
  if (why)
    *why = NULL;
  if (json_is_true (json_object_get (info, "lame_duck")))
    return refuse (why, "is draining (lame duck)");
  const char *key;
  const json_t *want;
  json_object_foreach ((json_t *)r->tags, key, want)
  {
    if (!json_is_string (want))
      return refuse (why, "cannot match tag `%s`: %s", key, "the wanted value is not a string");
    const char *have = json_string_value (json_object_get (json_object_get (info, "tags"), key));
    if (have == NULL)
      return refuse (why, "has no tag `%s` (wanted `%s`)", key, json_string_value (want));
    if (strcasecmp (have, json_string_value (want)) != 0)
      {
        char *pair = nex_xasprintf ("%s=%s", key, have);
        refuse (why, "has tag `%s`, not `%s`", pair, json_string_value (want));
        free (pair);
        return 0;
      }
  }
  if (r->driver && !has_string (json_object_get (info, "drivers"), r->driver))
    return refuse (why, "cannot run driver `%s`", r->driver);
  char need[64], have[64];
  if (r->memory_mb > 0 && member_number (info, "free", "memory_mb") < (double)r->memory_mb)
    {
      snprintf (need, sizeof need, "%lld MiB", (long long)r->memory_mb);
      snprintf (have, sizeof have, "%.0f MiB", member_number (info, "free", "memory_mb"));
      return refuse (why, "has %s of memory free, %s needed", have, need);
    }
  if (r->vcpus > 0 && member_number (info, "free", "vcpus") + 1e-9 < r->vcpus)
    {
      snprintf (need, sizeof need, "%g", r->vcpus);
      snprintf (have, sizeof have, "%g", member_number (info, "free", "vcpus"));
      return refuse (why, "has %s vCPUs free, %s needed", have, need);
    }
  return 1;
}

/* -1, 0 or 1 as X is larger than, equal to or smaller than Y (larger is better). */
static int
more_is_better (double x, double y)
{
  return x > y ? -1 : x < y ? 1 : 0;
}

int
nex_cluster_rank (const json_t *a, const json_t *b)
{
  int r = more_is_better (member_number (a, "free", "memory_mb"), member_number (b, "free", "memory_mb"));
  if (r == 0)
    r = more_is_better (member_number (a, "free", "vcpus"), member_number (b, "free", "vcpus"));
  if (r == 0)
    r = -more_is_better (json_number_value (json_object_get (a, "workloads")),
                         json_number_value (json_object_get (b, "workloads")));
  if (r == 0)
    {
      const char *ia = json_string_value (json_object_get (a, "node_id"));
      const char *ib = json_string_value (json_object_get (b, "node_id"));
      r = strcmp (ia ? ia : "", ib ? ib : "");
    }
  return r;
}

json_t *
nex_cluster_requirements_json (const nex_requirements_t *r)
{
  json_t *body = json_pack ("{s:[s]}", "workload_types", "native");
  if (r->tags)
    json_object_set_new (body, "tags", json_deep_copy (r->tags));
  if (r->driver)
    json_object_set_new (body, "driver", json_string (r->driver));
  if (r->memory_mb > 0)
    json_object_set_new (body, "memory_mb", json_integer (r->memory_mb));
  if (r->vcpus > 0)
    json_object_set_new (body, "vcpus", json_real (r->vcpus));
  return body;
}

void
nex_cluster_requirements_from_json (const json_t *body, nex_requirements_t *out)
{
  memset (out, 0, sizeof *out);
  const json_t *tags = json_object_get (body, "tags");
  out->tags = json_is_object (tags) ? tags : NULL;
  out->driver = json_string_value (json_object_get (body, "driver"));
  const json_t *m = json_object_get (body, "memory_mb"), *v = json_object_get (body, "vcpus");
  out->memory_mb = json_is_integer (m) && json_integer_value (m) > 0 ? json_integer_value (m) : 0;
  out->vcpus = json_is_number (v) && json_number_value (v) > 0 ? json_number_value (v) : 0;
}
