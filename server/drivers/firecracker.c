/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/firecracker.c — the Firecracker driver: each workload in a Firecracker microVM.
 *
 * Start: `firecracker --api-sock run_dir/api.sock --id nex-<workload id>` (binary from firecracker_path), in a
 * session of its own so that it outlives nexd, then configured over its REST API on that unix socket with
 * libcurl (CURLOPT_UNIX_SOCKET_PATH), one request per step:
 *
 *     PUT /machine-config   {vcpu_count, mem_size_mib, smt: false}     the VM's size (vm.h: nex_vm_size)
 *     PUT /boot-source      {kernel_image_path, boot_args, initrd_path?}   vm_kernel_dir/vmlinux (ELF)
 *     PUT /drives/rootfs    {drive_id, path_on_host, is_root_device, is_read_only}   the workload's ext4 image
 *     PUT /vsock            {guest_cid, uds_path}                      the agent's channel
 *     PUT /network-interfaces/eth0  {iface_id, host_dev_name}          network bridge: the persistent tap nexd
 *                                                                      made (net/net.h); eth0 in the guest is
 *                                                                      the agent's, from nex.net= (boot_args)
 *     PUT /actions          {action_type: InstanceStart}
 *
 * The root drive is the ext4 image of rootfs.h (the agent as /init, the workload, the modules of
 * vm_kernel_dir/modules/firecracker).  A kernel that needs modules to reach its disk (Debian's: virtio-blk and
 * virtio-mmio are modules) cannot mount it, so when that module directory is not empty the initramfs of the same
 * tree is passed as well, and the kernel runs /init from it.
 *
 * The agent listens on vsock port NEX_FC_AGENT_PORT.  Firecracker exposes guest vsock ports on the host as the
 * unix socket run_dir/vsock.sock: a host client connects, writes "CONNECT <port>\n" and reads "OK <n>\n", after
 * which the stream is the guest's connection.  That handshake is this driver's connect op; the agent accepts a
 * new connection for every dial, so re-attaching needs no greeting.
 *
 * Kill asks the guest first (PUT /actions {SendCtrlAltDel}, which the agent as init takes as SIGINT: stop the
 * workload) and ends the process after a short wait.  Firecracker needs KVM: without a usable KVM (KVM's verdict,
 * kvm.h: a probe guest ran, or with kvm_probe off the device opens; vm_accel does not apply) or
 * without the binary, probe says so and deploys are refused up front (503, the API's answer to an unavailable
 * driver).  Pause, snapshots and restores (PATCH /vm, PUT /snapshot/create and /snapshot/load instead of the boot
 * configuration) are firecracker-snapshot.c's.  The jailer is not used yet. */
#include "server/drivers/driver.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"
#include "rootfs/rootfs.h"
#include "server/clock.h"
#include "server/drivers/firecracker-internal.h"
#include "server/drivers/kvm.h"
#include "server/drivers/vm-image.h"
#include "server/drivers/vm.h"

#define NEX_FC_AGENT_PORT 1024
#define NEX_FC_GUEST_CID 3
#define FC_MODULES "modules/firecracker"
#define FC_API_WAIT_MS 5000      /* for Firecracker's API socket to appear */
#define FC_CONNECT_WAIT_MS 10000 /* for the agent to listen on vsock (the guest boots first) */
#define FC_REPLY_MAX 65536       /* bytes of an API reply kept (errors are short) */

static const char *const run_files[] = { "api.sock", "vsock.sock", "firecracker.log", NULL };

static int
fc_probe (const nex_driver_t *d, char **reason)
{
  const nex_vm_settings_t *s = nex_vm_settings ();
  cleanup_free char *kvm = NULL;
  cleanup_free char *kernel_why = NULL;
  cleanup_free char *fc = nex_vm_find_program (s->firecracker_path);
  int kvm_ok = nex_kvm_usable (&kvm);
  cleanup_free char *kernel = nex_vm_kernel_file ("vmlinux", &kernel_why);
  if (kvm_ok && fc && kernel)
    return 1;
  cleanup_free char *no_fc = fc ? NULL
                                : nex_xasprintf ("the firecracker binary `%s` was not found (set firecracker_path)",
                                                 s->firecracker_path ? s->firecracker_path : "");
  cleanup_free char *no_kvm = kvm_ok ? NULL : nex_xasprintf ("KVM is not usable: %s", kvm);
  *reason = nex_xasprintf ("%s%s%s%s%s", kvm_ok ? "" : no_kvm, !kvm_ok && no_fc ? "; " : "", no_fc ? no_fc : "",
                           (!kvm_ok || no_fc) && !kernel ? "; " : "", kernel ? "" : kernel_why);
  return 0;
}

/* Firecracker has no other accelerator: always "kvm", with why KVM is not usable when it is not. */
static const char *
fc_accel (const nex_driver_t *d, char **kvm_reason)
{
  (void)nex_kvm_usable (kvm_reason);
  return "kvm";
}

/* --- the API ------------------------------------------------------------------------------------------------- */

typedef struct reply
{
  char buf[FC_REPLY_MAX];
  size_t len;
} reply_t;

static size_t
reply_write (char *data, size_t size, size_t nmemb, void *ctx)
{
  reply_t *r = ctx;
  size_t n = size * nmemb;
  size_t take = n < sizeof r->buf - 1 - r->len ? n : sizeof r->buf - 1 - r->len;
  memcpy (r->buf + r->len, data, take);
  r->len += take;
  r->buf[r->len] = '\0';
  return n; /* the rest of an oversized reply is dropped, not an error */
}

int
nex_fc_call (const char *sock, const char *method, const char *path, json_t *body, long timeout_ms, nex_error_t *err)
{
  cleanup_json json_t *b = body;
  cleanup_free char *text = json_dumps (b, JSON_COMPACT);
  cleanup_free char *url = nex_xasprintf ("http://localhost%s", path);
  cleanup_free reply_t *reply = nex_xzalloc (sizeof *reply);
  CURL *c = curl_easy_init ();
  if (c == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "curl_easy_init failed");
  struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
  headers = curl_slist_append (headers, "Accept: application/json");
  curl_easy_setopt (c, CURLOPT_UNIX_SOCKET_PATH, sock);
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt (c, CURLOPT_POSTFIELDS, text);
  curl_easy_setopt (c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, reply_write);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, reply);
  CURLcode rc = curl_easy_perform (c);
  long status = 0;
  curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all (headers);
  curl_easy_cleanup (c);
  if (rc != CURLE_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "firecracker API %s %s: %s", method, path, curl_easy_strerror (rc));
  if (status < 200 || status > 299)
    {
      cleanup_json json_t *j = json_loadb (reply->buf, reply->len, 0, NULL);
      const char *fault = json_string_value (json_object_get (j, "fault_message"));
      return nex_error_set (err, NEX_ERR_SYSTEM, "firecracker API %s %s answered %ld: %.300s", method, path, status,
                            fault ? fault : reply->buf);
    }
  return 0;
}

static int
fc_put (const char *sock, const char *path, json_t *body, long timeout_ms, nex_error_t *err)
{
  return nex_fc_call (sock, "PUT", path, body, timeout_ms, err);
}

/* Waits until the API socket accepts connections (Firecracker creates it at start). */
static int
fc_wait_api (const char *sock, pid_t pid, nex_error_t *err)
{
  int64_t deadline = nex_clock_mono_ms () + FC_API_WAIT_MS;
  for (;;)
    {
      cleanup_close int fd = nex_driver_connect_unix (sock, NULL);
      if (fd >= 0)
        return 0;
      if (waitpid (pid, NULL, WNOHANG) == pid)
        return nex_error_set (err, NEX_ERR_SYSTEM, "firecracker exited before its API socket appeared");
      if (nex_clock_mono_ms () >= deadline)
        return nex_error_set (err, NEX_ERR_SYSTEM, "firecracker's API socket `%s` did not appear within %d ms", sock,
                              FC_API_WAIT_MS);
      usleep (10000);
    }
}

/* True when DIR holds at least one *.ko file. */
static int
has_modules (const char *dir)
{
  cleanup_dir DIR *d = opendir (dir);
  if (d == NULL)
    return 0;
  struct dirent *de;
  int found = 0;
  while (!found && (de = readdir (d)) != NULL)
    {
      size_t len = strlen (de->d_name);
      found = len > 3 && strcmp (de->d_name + len - 3, ".ko") == 0;
    }
  return found;
}

/* An image workload's disk (vm-image.h), read-only, after the root drive: /dev/vdb inside.  0 when there is
 * none. */
static int
fc_put_image_disk (const char *api, const char *disk, nex_error_t *err)
{
  if (disk == NULL)
    return 0;
  return fc_put (api, "/drives/image",
                 json_pack ("{s:s, s:s, s:b, s:b}", "drive_id", "image", "path_on_host", disk, "is_root_device", 0,
                            "is_read_only", 1),
                 10000, err);
}

/* Configures and boots the VM of a started firecracker process. */
static int
fc_configure (const nex_launch_t *l, const char *api, const char *vsock, const char *kernel, const char *rootfs,
              const char *initrd, const char *disk, nex_error_t *err)
{
  int64_t memory_mib, vcpus;
  nex_vm_size (l, &memory_mib, &vcpus);
  /* The workload's name passed the name rule ([A-Za-z0-9._-]), so it cannot add kernel parameters.  reboot=k:
   * the agent ends the VM with a reboot (Firecracker exits on it; it has no power-off). */
  cleanup_free char *net = l->net_guest ? nex_xasprintf (" %s=%s", NEX_VM_PARAM_NET, l->net_guest) : NULL;
  cleanup_free char *image = nex_vm_image_params (l, "/dev/vdb");
  cleanup_free char *args = nex_xasprintf ("console=ttyS0 reboot=k panic=-1 pci=off quiet %s nex.agent=vsock:%d "
                                           "nex.poweroff=reboot nex.hostname=%s%s%s",
                                           initrd ? "rdinit=" NEX_VM_INIT : "root=/dev/vda ro init=" NEX_VM_INIT,
                                           NEX_FC_AGENT_PORT, l->hostname, net ? net : "", image);
  json_t *boot = json_pack ("{s:s, s:s}", "kernel_image_path", kernel, "boot_args", args);
  if (initrd)
    json_object_set_new (boot, "initrd_path", json_string (initrd));
  if (fc_put (api, "/machine-config",
              json_pack ("{s:I, s:I, s:b}", "vcpu_count", (json_int_t)vcpus, "mem_size_mib", (json_int_t)memory_mib,
                         "smt", 0),
              10000, err)
          < 0
      || fc_put (api, "/boot-source", boot, 10000, err) < 0
      || fc_put (api, "/drives/rootfs",
                 json_pack ("{s:s, s:s, s:b, s:b}", "drive_id", "rootfs", "path_on_host", rootfs, "is_root_device", 1,
                            "is_read_only", 1),
                 10000, err)
             < 0
      || fc_put_image_disk (api, disk, err) < 0
      || fc_put (api, "/vsock", json_pack ("{s:i, s:s}", "guest_cid", NEX_FC_GUEST_CID, "uds_path", vsock), 10000, err)
             < 0
      || (l->net_guest
          && fc_put (api, "/network-interfaces/eth0",
                     json_pack ("{s:s, s:s}", "iface_id", "eth0", "host_dev_name", l->net_ifname), 10000, err)
                 < 0)
      || fc_put (api, "/actions", json_pack ("{s:s}", "action_type", "InstanceStart"), 10000, err) < 0)
    return -1;
  return 0;
}

static int
fc_start (const nex_driver_t *d, const nex_launch_t *l, nex_instance_t *out, nex_error_t *err)
{
  const nex_vm_settings_t *s = nex_vm_settings ();
  cleanup_free char *why = NULL;
  if (!fc_probe (d, &why))
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the firecracker driver is unavailable: %s", why);
  cleanup_free char *kernel = nex_vm_kernel_file ("vmlinux", &why);
  cleanup_free char *fc = nex_vm_find_program (s->firecracker_path);
  cleanup_free char *rootfs = nex_vm_image (l, NEX_ROOTFS_EXT4, FC_MODULES, err);
  if (rootfs == NULL)
    return -1;
  cleanup_free char *modules = nex_xasprintf ("%s/%s", s->kernel_dir, FC_MODULES);
  cleanup_free char *initrd = NULL;
  if (has_modules (modules) && (initrd = nex_vm_image (l, NEX_ROOTFS_INITRAMFS, FC_MODULES, err)) == NULL)
    return -1;
  cleanup_free char *disk = l->image_tree ? nex_vm_image_disk (l, err) : NULL;
  if (l->image_tree && disk == NULL)
    return -1;

  cleanup_free char *api = nex_xasprintf ("%s/api.sock", l->run_dir);
  cleanup_free char *vsock = nex_xasprintf ("%s/vsock.sock", l->run_dir);
  cleanup_free char *log = nex_xasprintf ("%s/firecracker.log", l->run_dir);
  cleanup_free char *id = nex_xasprintf ("nex-%s", l->workload_id);
  unlink (api);
  unlink (vsock);
  char *argv[] = { fc, (char *)"--api-sock", api, (char *)"--id", id, NULL };
  /* Until it is handed to OUT, a failure SIGKILLs and reaps the VMM (cleanup_pid). */
  cleanup_pid pid_t pid = nex_vm_spawn (l, fc, argv, log, NULL, 0, err);
  if (pid < 0 || fc_wait_api (api, pid, err) < 0
      || (l->snapshot_path ? nex_fc_restore (l->snapshot_path, api, vsock, err)
                           : fc_configure (l, api, vsock, kernel, rootfs, initrd, disk, err))
             < 0)
    return -1;
  out->pid = NEX_STEAL_PID (pid);
  out->endpoint = NEX_STEAL_PTR (vsock);
  return 0;
}

/* Reads the handshake's answer line ("OK <n>\n") byte by byte, so that nothing of the agent's stream after it
 * is consumed.  1 for OK, 0 for anything else (the guest does not listen yet), -1 on timeout. */
static int
fc_read_ok (int fd, int64_t deadline)
{
  char line[64];
  size_t len = 0;
  while (len < sizeof line - 1)
    {
      int left = (int)(deadline - nex_clock_mono_ms ());
      struct pollfd p = { .fd = fd, .events = POLLIN };
      if (left <= 0 || poll (&p, 1, left) <= 0)
        return -1;
      ssize_t n = read (fd, line + len, 1);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return 0;
      if (line[len] == '\n')
        {
          line[len] = '\0';
          return strncmp (line, "OK ", 3) == 0;
        }
      len++;
    }
  return 0;
}

static int
fc_connect (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  /* Until the guest has booted and the agent listens, Firecracker answers a CONNECT by closing the stream. */
  int64_t deadline = nex_clock_mono_ms () + FC_CONNECT_WAIT_MS;
  cleanup_free char *hello = nex_xasprintf ("CONNECT %d\n", NEX_FC_AGENT_PORT);
  for (;;)
    {
      cleanup_close int fd = nex_driver_connect_unix (i->endpoint, NULL);
      if (fd >= 0 && nex_fd_write_all (fd, hello, strlen (hello), NULL) == 0 && fc_read_ok (fd, deadline) == 1)
        return NEX_STEAL_FD (fd);
      if (i->pid > 0 && kill (i->pid, 0) < 0)
        return nex_error_set (err, NEX_ERR_SYSTEM, "firecracker (pid %d) is gone", (int)i->pid);
      if (nex_clock_mono_ms () >= deadline)
        return nex_error_set (err, NEX_ERR_SYSTEM, "the agent did not answer on vsock port %d within %d ms",
                              NEX_FC_AGENT_PORT, FC_CONNECT_WAIT_MS);
      usleep (50000);
    }
}

static int
fc_kill (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  if (i->pid <= 0)
    return 0;
  /* Ctrl-Alt-Del first: the agent, as init, stops the workload and ends the VM; a second later, the hard way. */
  if (i->run_dir)
    {
      cleanup_free char *api = nex_xasprintf ("%s/api.sock", i->run_dir);
      if (fc_put (api, "/actions", json_pack ("{s:s}", "action_type", "SendCtrlAltDel"), 1000, NULL) == 0)
        for (int n = 0; n < 20; n++)
          {
            /* WNOWAIT: the supervisor reaps it, and learns how it ended. */
            siginfo_t si = { 0 };
            if (waitid (P_PID, (id_t)i->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == i->pid)
              break;
            usleep (50000);
          }
    }
  return nex_driver_kill_default (d, i, err);
}

static char *
fc_describe_end (const nex_driver_t *d, const nex_instance_t *i, int reaped, int status)
{
  cleanup_free char *log = nex_xasprintf ("%s/firecracker.log", i->run_dir);
  cleanup_free char *line = nex_vm_last_line (log);
  if (reaped && WIFSIGNALED (status))
    return nex_xasprintf ("firecracker was killed by signal %d", WTERMSIG (status));
  return nex_xasprintf ("firecracker exited%s%s", line ? ": " : "", line ? line : "");
}

const nex_driver_t nex_driver_firecracker = {
  .name = "firecracker",
  .probe = fc_probe,
  .start = fc_start,
  .connect = fc_connect,
  .run_files = run_files,
  .bridge_network = NEX_DRIVER_NET_NAMED_TAP,
  .kill = fc_kill,
  .describe_end = fc_describe_end,
  .sized_by_guest = 1,
  .accel = fc_accel,
  .pause = nex_fc_pause,
  .snapshot = nex_fc_snapshot,
  .snapshot_suffixes = nex_fc_snapshot_suffixes,
  .kernel_file = "vmlinux",
};
