/* SPDX-License-Identifier: Apache-2.0 */
/* agentlib.h — what the unit tests of the host<->agent protocol share: test-wire.c (the frames) and
 * test-agent.c (the real nex-agent).
 *
 * agentlib_rng() is a seeded pseudo-random generator: both feed hostile "random" bytes (to the decoder, to the
 * agent's socket), and a fixed seed makes every run feed the same, so that a failure can be replayed. */
#ifndef NEX_TESTS_AGENTLIB_H
#define NEX_TESTS_AGENTLIB_H

#include <stdint.h>

/* xorshift64*; each program has its own state, starting from the same seed. */
static inline uint64_t
agentlib_rng (void)
{
  static uint64_t state = 0x9e3779b97f4a7c15ull;
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545f4914f6cdd1dull;
}

#endif
