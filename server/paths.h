/* SPDX-License-Identifier: Apache-2.0 */
/* paths.h — where nexd finds the files it does not carry inside itself, and where it keeps its data by default.
 *
 * nexd needs nex-agent, the microVM kernel directory, the dashboard's files (web/) and the browser libraries it
 * serves under /vendor/, and a data directory.  Where they are depends on how nexd runs; the layout is decided
 * once, from the path of the nexd executable:
 *
 *   build tree  nexd is in the directory it was built in (configure's abs_top_builddir): nex-agent and kernel/
 *               beside nexd, web/ and node_modules/ of the source tree, data in ./nex-data of the current
 *               directory.  What scripts/run-node and the tests have always used.
 *   installed   anywhere else: the directories configure was given (make install put the files there):
 *                 nex-agent   $(pkglibexecdir)/nex-agent       ($(libexecdir)/nex)
 *                 kernel      $(pkglibdir)/kernel              ($(libdir)/nex)
 *                 web         $(pkgdatadir)/web                ($(datadir)/nex)
 *                 vendor      $(pkgdatadir)/vendor             (npm's layout: @xterm/xterm/lib/xterm.js, ...)
 *                 data        $(localstatedir)/lib/nex
 *               each below a relocation root R when nexd is R$(sbindir)/nexd: a tree installed with
 *               `make install DESTDIR=R`, or moved as a whole, runs where it is without any setting.  For a real
 *               install R is empty.
 *
 * The matching options (--agent, --vm-kernel-dir, --web-dir, --vendor-dir, --data-dir) override these defaults
 * in either layout; config.c applies them to options left unset.  The installed directories are compiled in
 * (-D in Makefile.am), so a tree must be built with the --prefix (and friends) it is installed with. */
#ifndef NEX_PATHS_H
#define NEX_PATHS_H

#include "common/error.h"

/* The installed defaults, before the relocation root (config.c shows them in --help). */
#define NEX_PATHS_INSTALLED_AGENT NEX_PKGLIBEXECDIR "/nex-agent"
#define NEX_PATHS_INSTALLED_KERNEL NEX_PKGLIBDIR "/kernel"
#define NEX_PATHS_INSTALLED_WEB NEX_PKGDATADIR "/web"
#define NEX_PATHS_INSTALLED_VENDOR NEX_PKGDATADIR "/vendor"
#define NEX_PATHS_INSTALLED_DATA NEX_LOCALSTATEDIR "/lib/nex"

typedef enum nex_layout
{
  NEX_LAYOUT_BUILD = 1, /* nexd runs from its build directory */
  NEX_LAYOUT_INSTALLED, /* nexd runs from an installed tree (possibly relocated) */
} nex_layout_t;

typedef struct nex_paths
{
  nex_layout_t layout;
  char *root;       /* NEX_LAYOUT_INSTALLED: the relocation root ("" for a real install); NULL in the build tree */
  char *agent;      /* nex-agent */
  char *kernel_dir; /* the microVM kernel directory (vmlinuz, vmlinux, modules/) */
  char *web_dir;    /* the dashboard's files */
  char *vendor_dir; /* the browser libraries, in npm's layout (node_modules/ in the build tree) */
  char *data_dir;   /* the default data directory; relative ("./nex-data") in the build tree */
} nex_paths_t;

/* Fills PATHS (owned by the caller; release with nex_paths_release) with the defaults of the layout the nexd
 * executable at EXE (an absolute path without symbolic links, as /proc/self/exe gives it) runs in.  Never fails:
 * a directory that cannot be resolved is simply not the build tree.  Any thread; touches no global state. */
void nex_paths_init (nex_paths_t *paths, const char *exe);

/* The absolute path of the running executable (caller frees), or NULL with ERR. */
char *nex_paths_self (nex_error_t *err);

/* Frees what PATHS owns and zeroes it.  Safe on a zeroed struct. */
void nex_paths_release (nex_paths_t *paths);

/* "build tree" or "installed", for messages. */
const char *nex_paths_layout_name (nex_layout_t layout);

#endif
