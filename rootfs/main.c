/* SPDX-License-Identifier: Apache-2.0 */
/* main.c — nex-rootfs: builds what Nex's microVMs boot, from the command line.
 *
 * nexd builds the same images in-process (rootfs.h) when it starts a VM; this command is for people who want to
 * see or boot one by hand, and for scripts/setup, which uses `nex-rootfs vmlinux` to give Firecracker an
 * uncompressed kernel.  Exit status: 0 done, 1 failed (one line on stderr saying why), 2 bad usage. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "rootfs/rootfs.h"
#include "rootfs/vmlinux.h"

#define BZIMAGE_MAX_BYTES (256u << 20)

static void
usage (FILE *out)
{
  fprintf (
      out,
      "Usage: nex-rootfs initramfs|ext4 --agent PATH --workload PATH [--modules DIR] (--output FILE | --cache DIR)\n"
      "       nex-rootfs vmlinux BZIMAGE OUTPUT\n"
      "\n"
      "initramfs  a newc cpio archive with nex-agent as /init, the workload as /workload, a minimal /dev and\n"
      "           the kernel modules of DIR (*.ko, loaded by the agent in name order) in /nex/modules\n"
      "ext4       the same tree as an ext4 image (mkfs.ext4 -d; no root, no loop mount)\n"
      "  --output FILE  write the image there\n"
      "  --cache DIR    write it as DIR/<content hash>.cpio|.ext4 unless it is there already (as nexd does),\n"
      "                 and print its path\n"
      "vmlinux    write the uncompressed kernel (ELF) held by BZIMAGE to OUTPUT (for Firecracker)\n");
}

static int
fail (nex_error_t *err)
{
  fprintf (stderr, "nex-rootfs: %s\n", (*err)->msg);
  return 1;
}

static int
cmd_vmlinux (int argc, char **argv)
{
  if (argc != 3)
    {
      usage (stderr);
      return 2;
    }
  cleanup_error nex_error_t err = NULL;
  size_t len = 0, out_len = 0;
  cleanup_free char *bz = nex_file_read (argv[1], BZIMAGE_MAX_BYTES, &len, &err);
  if (bz == NULL)
    return fail (&err);
  cleanup_free uint8_t *elf = nex_vmlinux_extract ((const uint8_t *)bz, len, &out_len, &err);
  if (elf == NULL || nex_file_write_atomic (argv[2], elf, out_len, 0644, &err) < 0)
    return fail (&err);
  return 0;
}

static int
cmd_image (nex_rootfs_kind_t kind, int argc, char **argv)
{
  static const struct option opts[] = {
    { "agent", required_argument, NULL, 'a' },   { "workload", required_argument, NULL, 'w' },
    { "modules", required_argument, NULL, 'm' }, { "output", required_argument, NULL, 'o' },
    { "cache", required_argument, NULL, 'c' },   { NULL, 0, NULL, 0 },
  };
  nex_rootfs_spec_t spec = { 0 };
  const char *output = NULL, *cache = NULL;
  int c;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    switch (c)
      {
      case 'a':
        spec.agent_path = optarg;
        break;
      case 'w':
        spec.workload_path = optarg;
        break;
      case 'm':
        spec.modules_dir = optarg;
        break;
      case 'o':
        output = optarg;
        break;
      case 'c':
        cache = optarg;
        break;
      default:
        usage (stderr);
        return 2;
      }
  if (optind != argc || !spec.agent_path || !spec.workload_path || (output == NULL) == (cache == NULL))
    {
      usage (stderr);
      return 2;
    }
  cleanup_error nex_error_t err = NULL;
  if (output)
    return nex_rootfs_write (kind, &spec, output, &err) < 0 ? fail (&err) : 0;
  cleanup_free char *path = nex_rootfs_image (cache, kind, &spec, &err);
  if (path == NULL)
    return fail (&err);
  printf ("%s\n", path);
  return 0;
}

int
main (int argc, char **argv)
{
  if (sodium_init () < 0)
    {
      fprintf (stderr, "nex-rootfs: libsodium failed to initialise\n");
      return 1;
    }
  if (argc < 2 || strcmp (argv[1], "--help") == 0)
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  if (strcmp (argv[1], "vmlinux") == 0)
    return cmd_vmlinux (argc - 1, argv + 1);
  if (strcmp (argv[1], "initramfs") == 0)
    return cmd_image (NEX_ROOTFS_INITRAMFS, argc - 1, argv + 1);
  if (strcmp (argv[1], "ext4") == 0)
    return cmd_image (NEX_ROOTFS_EXT4, argc - 1, argv + 1);
  usage (stderr);
  return 2;
}
