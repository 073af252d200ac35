/* SPDX-License-Identifier: Apache-2.0 */
/* paths.c — see paths.h.  The configure-time directories arrive as -D defines from Makefile.am:
 * NEX_BUILDDIR and NEX_SRCDIR (abs_top_builddir, abs_top_srcdir), NEX_SBINDIR, NEX_PKGLIBEXECDIR, NEX_PKGLIBDIR,
 * NEX_PKGDATADIR and NEX_LOCALSTATEDIR. */
#include "server/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#if !defined(NEX_BUILDDIR) || !defined(NEX_SRCDIR) || !defined(NEX_SBINDIR) || !defined(NEX_PKGLIBEXECDIR)             \
    || !defined(NEX_PKGLIBDIR) || !defined(NEX_PKGDATADIR) || !defined(NEX_LOCALSTATEDIR)
#error "the install directories must be defined (Makefile.am's AM_CPPFLAGS)"
#endif

/* True when DIR (absolute, no symbolic links) is the build directory.  The configured name may go through
 * symbolic links (it is the shell's idea of the directory), so it is resolved first; a build directory that is
 * gone cannot be the one nexd runs from. */
static int
is_build_dir (const char *dir)
{
  cleanup_free char *build = realpath (NEX_BUILDDIR, NULL);
  return build != NULL && strcmp (dir, build) == 0;
}

/* The relocation root of an installed nexd in DIR: what comes before NEX_SBINDIR at DIR's end, else "". */
static char *
relocation_root (const char *dir)
{
  size_t n = strlen (dir), m = strlen (NEX_SBINDIR);
  if (n >= m && strcmp (dir + n - m, NEX_SBINDIR) == 0)
    return nex_xstrndup (dir, n - m);
  return nex_xstrdup ("");
}

void
nex_paths_init (nex_paths_t *paths, const char *exe)
{
  memset (paths, 0, sizeof *paths);
  const char *slash = strrchr (exe, '/');
  cleanup_free char *dir = nex_xstrndup (exe, slash && slash != exe ? (size_t)(slash - exe) : 1);
  if (is_build_dir (dir))
    {
      paths->layout = NEX_LAYOUT_BUILD;
      paths->agent = nex_xasprintf ("%s/nex-agent", dir);
      paths->kernel_dir = nex_xasprintf ("%s/kernel", dir);
      paths->web_dir = nex_xstrdup (NEX_SRCDIR "/web");
      paths->vendor_dir = nex_xstrdup (NEX_SRCDIR "/node_modules");
      paths->data_dir = nex_xstrdup ("./nex-data");
      return;
    }
  paths->layout = NEX_LAYOUT_INSTALLED;
  paths->root = relocation_root (dir);
  const char *r = paths->root;
  paths->agent = nex_xasprintf ("%s%s", r, NEX_PATHS_INSTALLED_AGENT);
  paths->kernel_dir = nex_xasprintf ("%s%s", r, NEX_PATHS_INSTALLED_KERNEL);
  paths->web_dir = nex_xasprintf ("%s%s", r, NEX_PATHS_INSTALLED_WEB);
  paths->vendor_dir = nex_xasprintf ("%s%s", r, NEX_PATHS_INSTALLED_VENDOR);
  paths->data_dir = nex_xasprintf ("%s%s", r, NEX_PATHS_INSTALLED_DATA);
}

char *
nex_paths_self (nex_error_t *err)
{
  char self[PATH_MAX];
  ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (n < 0)
    {
      nex_error_sys (err, errno, "readlink /proc/self/exe");
      return NULL;
    }
  self[n] = '\0';
  return nex_xstrdup (self);
}

void
nex_paths_release (nex_paths_t *paths)
{
  free (paths->root);
  free (paths->agent);
  free (paths->kernel_dir);
  free (paths->web_dir);
  free (paths->vendor_dir);
  free (paths->data_dir);
  memset (paths, 0, sizeof *paths);
}

const char *
nex_paths_layout_name (nex_layout_t layout)
{
  return layout == NEX_LAYOUT_BUILD ? "build tree" : "installed";
}
