/* SPDX-License-Identifier: Apache-2.0 */
/* net/etc.c — the /etc/hosts and /etc/resolv.conf a bridge workload sees (the sandbox driver binds them
 * read-only into its root).
 *
 * The resolvers are the host's own, when they can be reached from a workload: a loopback resolver
 * (systemd-resolved's 127.0.0.53, a local dnsmasq) answers only the host's loopback, which a workload cannot
 * reach (and must not: it is the host).  Such resolvers are left out and nexd says so at start; names in
 * /etc/hosts (the workload's own, nex-host) work either way. */
#include "server/net/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

char *
nex_net_etc_resolvers (void)
{
  cleanup_file FILE *f = fopen ("/etc/resolv.conf", "re");
  char *out = NULL;
  size_t len = 0;
  FILE *o = open_memstream (&out, &len);
  char line[256];
  int n = 0;
  while (f && fgets (line, sizeof line, f) && n < 3)
    {
      char addr[64];
      uint32_t a;
      if (sscanf (line, " nameserver %63s", addr) != 1 || nex_net_addr_parse (addr, &a) < 0)
        continue; /* IPv6 resolvers: workloads have no IPv6 */
      if ((a >> 24) == 127)
        continue;
      fprintf (o, "nameserver %s\n", addr);
      n++;
    }
  fclose (o);
  return out;
}

static int
write_text (const char *dir, const char *name, const char *text, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/%s", dir, name);
  cleanup_close int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return nex_error_sys (err, errno, "create %s", path);
  return nex_fd_write_all (fd, text, strlen (text), err);
}

int
nex_net_etc_write (const char *dir, const char *name, uint32_t addr, uint32_t gateway, const char *resolvers,
                   nex_error_t *err)
{
  char a[16], g[16];
  cleanup_free char *hosts = nex_xasprintf ("127.0.0.1\tlocalhost\n%s\t%s\n%s\tnex-host\n", nex_net_addr_text (addr, a),
                                            name, nex_net_addr_text (gateway, g));
  if (nex_mkdir_p (dir, 0755, err) < 0 || write_text (dir, "hosts", hosts, err) < 0
      || write_text (dir, "resolv.conf", resolvers, err) < 0)
    return nex_error_wrap (err, "the workload's /etc");
  return 0;
}
