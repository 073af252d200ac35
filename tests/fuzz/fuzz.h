/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz.h — what every libFuzzer harness in tests/fuzz/ shares: the entry point libFuzzer calls and the one way a
 * harness reports a broken invariant (an abort, which libFuzzer records as a crash with the input that caused
 * it).  A harness is one file, fuzz-<what>.c, built by tests/fuzz/build and run by tests/fuzz/run. */
#ifndef NEX_FUZZ_H
#define NEX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Aborts, saying WHAT, when COND is false. */
#define fuzz_check(cond, what)                                                                                         \
  do                                                                                                                   \
    {                                                                                                                  \
      if (!(cond))                                                                                                     \
        {                                                                                                              \
          fprintf (stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, (what));                               \
          abort ();                                                                                                    \
        }                                                                                                              \
    }                                                                                                                  \
  while (0)

/* Where a harness makes its temporary files: /dev/shm when it is there (tmpfs, so that the fsync of the code under
 * test costs nothing and a run stays cheap), else /tmp. */
static inline const char *
fuzz_tmp_base (void)
{
  struct stat st;
  return stat ("/dev/shm", &st) == 0 && S_ISDIR (st.st_mode) ? "/dev/shm" : "/tmp";
}

#endif
