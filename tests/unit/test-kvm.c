/* SPDX-License-Identifier: Apache-2.0 */
/* test-kvm.c — unit tests for the KVM probe (server/drivers/kvm.c) and the node's verdict on KVM.
 *
 * The probe is run against what is not KVM — a missing path, /dev/null (opens, answers no KVM ioctl), a regular
 * file — and each reason is checked for naming the step that failed.  Then against this host's /dev/kvm: it
 * must answer within its deadline, one way or the other, and its verdict is printed (a TAP comment) so that a
 * CI log says what this host's KVM is.  Last, the verdict: taken with and without the probe, marked unusable once
 * (the first reason kept). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "server/clock.h"
#include "server/drivers/kvm.h"
#include "tests/unit/tap.h"

static void
test_not_kvm (void)
{
  char *why = NULL;
  TAP_OK (nex_kvm_probe ("/nonexistent/kvm", 2000, &why) == 0, "a missing device is not usable");
  TAP_OK (why && strcmp (why, "cannot open /nonexistent/kvm: No such file or directory") == 0, "reason: %s", why);
  free (why);

  why = NULL;
  TAP_OK (nex_kvm_probe ("/dev/null", 2000, &why) == 0, "/dev/null is not usable");
  TAP_OK (why
              && strcmp (why, "cannot open /dev/null as KVM: not a KVM device (KVM_GET_API_VERSION: Inappropriate "
                              "ioctl for device)")
                     == 0,
          "reason: %s", why);
  free (why);

  char path[] = "/tmp/test-kvm-XXXXXX";
  int fd = mkstemp (path);
  close (fd);
  why = NULL;
  TAP_OK (nex_kvm_probe (path, 2000, &why) == 0, "a regular file is not usable");
  TAP_OK (why && strstr (why, "not a KVM device") && strstr (why, path), "reason: %s", why);
  free (why);
  unlink (path);
}

static void
test_this_host (void)
{
  char *why = NULL;
  int64_t t0 = nex_clock_mono_ms ();
  int ok = nex_kvm_probe ("/dev/kvm", 2000, &why);
  int64_t took = nex_clock_mono_ms () - t0;
  TAP_OK (took < 2500, "the probe of /dev/kvm answered within its deadline (%lld ms)", (long long)took);
  TAP_OK (ok ? why == NULL : why != NULL && why[0] != '\0', "a verdict with a reason when negative");
  printf ("# /dev/kvm on this host: %s%s%s (%lld ms)\n", ok ? "usable" : "not usable", ok ? "" : ": ", ok ? "" : why,
          (long long)took);
  free (why);
}

static void
test_verdict (void)
{
  char *why = NULL;
  TAP_OK (nex_kvm_usable (&why) == 0 && why && strstr (why, "not probed"), "no verdict before configure: %s", why);
  free (why);

  nex_kvm_configure ("/dev/null", 0);
  why = NULL;
  TAP_OK (nex_kvm_usable (&why) == 1 && why == NULL, "unprobed: a device that opens is trusted");
  nex_kvm_configure ("/dev/null", 1);
  TAP_OK (nex_kvm_usable (&why) == 0 && why && strstr (why, "not a KVM device"), "probed: %s", why);
  free (why);

  nex_kvm_configure ("/nonexistent/kvm", 0);
  why = NULL;
  TAP_OK (nex_kvm_usable (&why) == 0 && why && strstr (why, "cannot open /nonexistent/kvm"), "unprobed, missing: %s",
          why);
  free (why);

  nex_kvm_configure ("/dev/null", 0);
  TAP_OK (nex_kvm_mark_unusable ("qemu-system-x86_64: error: failed to set MSR 0x10a") == 1,
          "marking a usable KVM unusable changes the verdict");
  TAP_OK (nex_kvm_mark_unusable ("a second failure") == 0, "marking it again does not");
  why = NULL;
  TAP_OK (nex_kvm_usable (&why) == 0 && why && strcmp (why, "qemu-system-x86_64: error: failed to set MSR 0x10a") == 0,
          "the first reason is kept: %s", why);
  free (why);
  nex_kvm_release ();
}

int
main (void)
{
  test_not_kvm ();
  test_this_host ();
  test_verdict ();
  return tap_done ();
}
