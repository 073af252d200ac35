/* SPDX-License-Identifier: Apache-2.0 */
/* test-paths.c — unit tests for server/paths.c: which layout an executable's path means (the build tree, an
 * installed tree, one staged or moved below a root) and the defaults each gives. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/paths.h"
#include "tests/unit/tap.h"

static int
streq (const char *a, const char *b)
{
  return a && b && strcmp (a, b) == 0;
}

static void
test_build_tree (void)
{
  cleanup_free char *build = realpath (NEX_BUILDDIR, NULL);
  cleanup_free char *exe = nex_xasprintf ("%s/nexd", build);
  cleanup_free char *agent = nex_xasprintf ("%s/nex-agent", build);
  cleanup_free char *kernel = nex_xasprintf ("%s/kernel", build);
  cleanup_with (nex_paths_release) nex_paths_t p;
  nex_paths_init (&p, exe);
  TAP_OK (p.layout == NEX_LAYOUT_BUILD && p.root == NULL, "nexd in the build directory: the build tree");
  TAP_OK (streq (p.agent, agent) && streq (p.kernel_dir, kernel), "build tree: nex-agent and kernel/ beside nexd");
  TAP_OK (streq (p.web_dir, NEX_SRCDIR "/web") && streq (p.vendor_dir, NEX_SRCDIR "/node_modules"),
          "build tree: web/ and node_modules/ of the source tree");
  TAP_OK (streq (p.data_dir, "./nex-data"), "build tree: data in ./nex-data");
}

static void
test_installed (void)
{
  cleanup_with (nex_paths_release) nex_paths_t p;
  nex_paths_init (&p, NEX_SBINDIR "/nexd");
  TAP_OK (p.layout == NEX_LAYOUT_INSTALLED && streq (p.root, ""), "nexd in sbindir: installed, no relocation");
  TAP_OK (streq (p.agent, NEX_PKGLIBEXECDIR "/nex-agent") && streq (p.kernel_dir, NEX_PKGLIBDIR "/kernel")
              && streq (p.web_dir, NEX_PKGDATADIR "/web") && streq (p.vendor_dir, NEX_PKGDATADIR "/vendor")
              && streq (p.data_dir, NEX_LOCALSTATEDIR "/lib/nex"),
          "installed: the configured directories");
  TAP_OK (streq (nex_paths_layout_name (p.layout), "installed"), "layout name");
}

static void
test_relocated (void)
{
  cleanup_with (nex_paths_release) nex_paths_t p;
  nex_paths_init (&p, "/tmp/stage" NEX_SBINDIR "/nexd");
  TAP_OK (p.layout == NEX_LAYOUT_INSTALLED && streq (p.root, "/tmp/stage"), "R$(sbindir)/nexd: relocated below R");
  TAP_OK (streq (p.agent, "/tmp/stage" NEX_PKGLIBEXECDIR "/nex-agent")
              && streq (p.kernel_dir, "/tmp/stage" NEX_PKGLIBDIR "/kernel")
              && streq (p.web_dir, "/tmp/stage" NEX_PKGDATADIR "/web")
              && streq (p.vendor_dir, "/tmp/stage" NEX_PKGDATADIR "/vendor")
              && streq (p.data_dir, "/tmp/stage" NEX_LOCALSTATEDIR "/lib/nex"),
          "relocated: every path below R");
}

static void
test_elsewhere (void)
{
  {
    cleanup_with (nex_paths_release) nex_paths_t p;
    nex_paths_init (&p, "/opt/nex/nexd");
    TAP_OK (p.layout == NEX_LAYOUT_INSTALLED && streq (p.root, "") && streq (p.agent, NEX_PKGLIBEXECDIR "/nex-agent"),
            "nexd anywhere else: installed, the configured directories");
  }
  {
    /* A directory whose name only ends like sbindir's last component is no relocation. */
    cleanup_free char *exe = nex_xasprintf ("%sx/nexd", NEX_SBINDIR);
    cleanup_with (nex_paths_release) nex_paths_t p;
    nex_paths_init (&p, exe);
    TAP_OK (streq (p.root, ""), "a directory merely named like sbindir is not relocated");
  }
  {
    cleanup_with (nex_paths_release) nex_paths_t p;
    nex_paths_init (&p, "/nexd");
    TAP_OK (p.layout == NEX_LAYOUT_INSTALLED && streq (p.root, ""), "nexd in / : installed");
  }
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *self = nex_paths_self (&err);
  TAP_OK (self && self[0] == '/' && strstr (self, "test-paths"), "nex_paths_self names this executable");
}

int
main (void)
{
  test_build_tree ();
  test_installed ();
  test_relocated ();
  test_elsewhere ();
  return tap_done ();
}
