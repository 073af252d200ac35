/* SPDX-License-Identifier: Apache-2.0 */
/* api/static.c — the dashboard's files: GET of any path outside /v1/ is a file of web/ (config web_dir), and
 * /vendor/<name> one of a fixed list of browser libraries in npm's layout (config vendor_dir: node_modules/ of the
 * source tree, or what `make install` copied of it — Makefile.am's VENDOR_FILES, the same list).  Nothing is
 * fetched from elsewhere at run time: the page works offline.
 *
 * Paths come from the network: only plain segments are accepted (no "..", no hidden files, no empty segments,
 * which the router already refuses), only regular files are served, and their size is bounded. */
#include "server/api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

#define MAX_STATIC_BYTES (16u << 20)

/* Browser libraries the dashboard uses, by the URL it asks for (relative to vendor_dir; Makefile.am's
 * VENDOR_FILES installs the same files). */
static const struct
{
  const char *url;
  const char *file;
} vendor[] = {
  { "/vendor/xterm/xterm.js", "@xterm/xterm/lib/xterm.js" },
  { "/vendor/xterm/xterm.css", "@xterm/xterm/css/xterm.css" },
  { "/vendor/xterm/addon-fit.js", "@xterm/addon-fit/lib/addon-fit.js" },
};

static const struct
{
  const char *ext;
  const char *type;
} types[] = {
  { ".html", "text/html; charset=utf-8" },
  { ".js", "text/javascript; charset=utf-8" },
  { ".css", "text/css; charset=utf-8" },
  { ".svg", "image/svg+xml" },
  { ".png", "image/png" },
  { ".json", "application/json" },
  { ".ico", "image/x-icon" },
  { ".yaml", "application/yaml" },
};

static const char *
content_type (const char *path)
{
  const char *dot = strrchr (path, '.');
  for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
    if (strcmp (dot, types[i].ext) == 0)
      return types[i].type;
  return "application/octet-stream";
}

/* True when URL is made of plain segments: letters, digits, '-', '_', '.', not starting with '.'. */
static int
plain_path (const char *url)
{
  for (const char *s = url; *s; s++)
    {
      if (*s == '/')
        {
          if (s[1] == '.' || s[1] == '/')
            return 0;
          continue;
        }
      if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", *s))
        return 0;
    }
  return url[0] == '/';
}

int
nex_api_static_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  const char *web = req->node->cfg->web_dir;
  const char *url = req->path;
  cleanup_free char *path = NULL;
  for (size_t i = 0; i < sizeof vendor / sizeof vendor[0]; i++)
    if (strcmp (url, vendor[i].url) == 0)
      path = nex_xasprintf ("%s/%s", req->node->cfg->vendor_dir, vendor[i].file);
  if (path == NULL && strcmp (url, "/") == 0)
    path = nex_xasprintf ("%s/index.html", web);
  if (path == NULL && strncmp (url, "/vendor/", 8) != 0 && plain_path (url))
    path = nex_xasprintf ("%s%s", web, url);
  if (path == NULL)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no such file: %s", url);

  struct stat st;
  if (stat (path, &st) < 0 || !S_ISREG (st.st_mode))
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no such file: %s", url);
  size_t len;
  cleanup_error nex_error_t rerr = NULL;
  res->text = nex_file_read (path, MAX_STATIC_BYTES, &len, &rerr);
  if (res->text == NULL)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no such file: %s", url);
  res->text_len = len;
  res->content_type = content_type (path);
  /* Always revalidated: a node upgraded in place must not keep serving an old dashboard. */
  res->cache_control = "no-cache";
  return 0;
}
