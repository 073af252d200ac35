/* SPDX-License-Identifier: Apache-2.0 */
/* proc.h — facts about host processes read from /proc, used to recognise a sandbox's root process again after
 * nexd restarts (a pid alone can be reused by an unrelated process). */
#ifndef NEX_PROC_H
#define NEX_PROC_H

#include <stdint.h>
#include <sys/types.h>

/* The start time of process PID in clock ticks since boot (field 22 of /proc/PID/stat), or -1 when PID does not
 * exist (or its stat cannot be parsed).  Any thread. */
int64_t nex_proc_start_time (pid_t pid);

#endif
