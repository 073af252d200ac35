/* SPDX-License-Identifier: Apache-2.0 */
/* wire.h — the host<->agent wire protocol, shared by nexd and nex-agent.
 *
 * One byte stream (a unix socket for the sandbox driver; a serial/virtio console or vsock for VMs) carries
 * length-prefixed frames.  Each frame is an 8-byte header followed by LEN payload bytes:
 *
 *     offset 0  u32  LEN      payload length, big-endian, at most NEX_WIRE_MAX_PAYLOAD
 *     offset 4  u8   TYPE     one of nex_wire_type_t
 *     offset 5  u8   FLAGS    must be 0 (reserved)
 *     offset 6  u16  CHANNEL  big-endian; 0 is the workload itself, other values are exec sessions
 *
 * Control frames carry one JSON object (jansson); STDOUT/STDERR/STDIN frames carry raw bytes.  Every byte that
 * arrives from the other end is treated as hostile: a frame that is oversized, has an unknown type, non-zero
 * flags, or (for control types) a payload that is not a JSON object is a protocol error, and the reader of such
 * a stream reports it and closes the channel — it never crashes and never allocates more than the cap.
 *
 * The agent is the server end: it listens, nexd dials, the agent greets with HELLO.  See ARCHITECTURE.md for
 * the message sequence. */
#ifndef NEX_WIRE_H
#define NEX_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/error.h"

#define NEX_WIRE_HEADER_SIZE 8
#define NEX_WIRE_MAX_PAYLOAD (1u << 20) /* 1 MiB: bounds every allocation made for a peer's frame */
#define NEX_WIRE_VERSION 1

typedef enum nex_wire_type
{
  NEX_WIRE_HELLO = 1,   /* agent->host JSON {version, agent_pid, state, exit?}: sent on every accept */
  NEX_WIRE_START = 2,   /* host->agent JSON {path, argv[], env{}, park?}: start the workload (once); with
                           park: true a hardened placeholder that only waits (a function's idle sandbox) */
  NEX_WIRE_STARTED = 3, /* agent->host JSON {pid}: the workload is running */
  NEX_WIRE_STDOUT = 4,  /* agent->host raw bytes the workload wrote to stdout */
  NEX_WIRE_STDERR = 5,  /* agent->host raw bytes the workload wrote to stderr */
  NEX_WIRE_EXIT = 6,    /* agent->host JSON {code?, signal?, dropped_bytes}: the workload ended */
  NEX_WIRE_STOP = 7,    /* host->agent JSON {signal, grace_ms}: signal, then SIGKILL after the grace */
  NEX_WIRE_ACK = 8,     /* host->agent JSON {}: the exit is recorded; the agent may now exit */
  NEX_WIRE_ERROR = 9,   /* either way JSON {message}: the sender refuses or failed (e.g. exec failed) */
  NEX_WIRE_STDIN = 10,  /* host->agent raw bytes for an exec session's stdin; an empty frame closes it */
  NEX_WIRE_SIGNAL = 11, /* host->agent JSON {signal}: deliver it to the workload's main process (channel 0) or to
                           the process of exec session CHANNEL */
  NEX_WIRE_EXEC = 12,   /* host->agent JSON {path, argv[], env{}, cwd?, timeout_ms?, capabilities?, seccomp?, tty?,
                           rows?, cols?, warm?} on a fresh channel 1..65535: run a process in the sandbox beside the
                           workload (see below) */
  NEX_WIRE_RESIZE = 13, /* host->agent JSON {rows, cols} on a TTY exec session's channel: its new window size */
  NEX_WIRE_LEASE = 14,  /* host->agent JSON {ttl_ms} on channel 0: the workload may run ttl_ms more (see below) */
  NEX_WIRE_STORED = 15, /* host->agent JSON {stdout, stderr} on channel 0: output stored up to these offsets */
} nex_wire_type_t;

#define NEX_WIRE_TYPE_MAX NEX_WIRE_STORED

/* Output that survives a nexd crash.  The workload's own output (channel 0) is numbered per stream: a byte's
 * offset counts the stdout (or stderr) bytes the agent queued before it, from 0 at the agent's start.  HELLO says
 * where the stream goes on: output {stdout, stderr}, the offsets of the first bytes of each stream that follow the
 * greeting.  Once a host has stored lines it answers STORED {stdout, stderr}: every byte before those offsets is
 * stored (a partial line is not).  From the first STORED on, the agent keeps each written output frame until a
 * STORED covers it, and sends what is not covered again after its next HELLO; a host that restarted from its
 * registry knows the offsets it stored and skips what it has, so output read by a nexd that was killed before it
 * stored it is delivered once, not lost.  Kept frames count against the agent's output bound; past it the oldest
 * kept ones go first (a host that comes back then sees a gap and takes what follows). */

/* Leases.  A workload that another node may take over (a restartable cluster workload, ARCHITECTURE.md
 * "Cluster") must not outlive its nexd's hold on the cluster: nexd renews a lease on it with LEASE {ttl_ms}
 * (1 .. 86400000) about every 500 ms while it hears its own heartbeat on NATS.  The first LEASE arms the agent's
 * lease; each one moves the end to ttl_ms after its arrival.  When the end passes without a renewal — nexd is dead,
 * or cut off from NATS, or not renewing for any other reason — the agent sends ERROR {message, phase: "lease"} if a
 * host is connected, kills every process of the workload and exits (status 3; a VM powers off).  The lease
 * belongs to the agent, not to a connection: a nexd that restarts within the lease re-dials and renews it.  A
 * workload never sent LEASE runs as long as it likes, as before. */

/* Exec sessions.  EXEC on channel C (C != 0, not in use) asks the agent to fork PATH with the workload's
 * namespaces, cgroup, root and hardening (the same seccomp profile and capability rules as START).  The agent
 * answers on channel C: STARTED {pid}, or ERROR {message, phase: "exec", errno} when the program could not be
 * run (errno 2: PATH does not exist in the sandbox); then STDOUT/STDERR frames; then EXIT {code | signal,
 * timed_out, dropped_bytes}.  The host feeds stdin with STDIN frames on C and closes it with an empty one; SIGNAL
 * on C signals the session's process.  The agent kills a session when its timeout_ms passes (EXIT then says
 * timed_out) and when the connection that started it closes (sessions do not outlive their host), and refuses
 * EXEC when the workload is not running.  Sessions start side by side (at most 16 at once; beyond, ERROR with errno
 * EAGAIN): the agent never waits for one's execve.
 *
 * Warm processes: EXEC with {warm: N} (0 .. 16; functions' runs) asks the agent to keep up to N processes of this
 * same request (everything but timeout_ms and warm) started ahead, past their execve and blocked reading stdin;
 * the next such EXEC becomes one of them, so its STARTED is immediate and its stdin reaches a running program.
 * Its timeout counts from the EXEC; one that ended before it was taken reports its output and status as its own.
 * The agent starts at most two per EXEC, evicts processes kept for other requests when its 16 slots are full, and
 * kills them all when the workload ends.
 *
 * TTY sessions: EXEC with {tty: true, rows, cols} makes the agent allocate a pseudo-terminal inside the sandbox
 * (on the sandbox's own devpts instance) and give its slave to the process as stdin, stdout, stderr and
 * controlling terminal (a new session).  Everything the terminal prints comes back as STDOUT frames (there is no
 * separate STDERR); STDIN frames are typed into it; RESIZE {rows, cols} sets its window size (the foreground
 * process group gets SIGWINCH); SIGNAL goes to the terminal's foreground process group. */

/* A decoded frame.  PAYLOAD points into the reader's buffer and is valid until the next call on it. */
typedef struct nex_wire_frame
{
  nex_wire_type_t type;
  uint16_t channel;
  uint32_t len;
  const uint8_t *payload;
} nex_wire_frame_t;

/* Incremental decoder for a byte stream.  Not thread-safe; one per connection. */
typedef struct nex_wire_reader
{
  uint8_t *buf;    /* buffered, not yet consumed bytes */
  size_t len;      /* bytes in buf */
  size_t cap;      /* allocated size of buf (never more than header + max payload) */
  size_t consumed; /* bytes of buf already returned as frames, discarded on the next feed/next */
} nex_wire_reader_t;

/* True when TYPE is a type this protocol version defines. */
int nex_wire_type_valid (unsigned type);

/* True when frames of TYPE carry a JSON object (as opposed to raw bytes). */
int nex_wire_type_is_json (nex_wire_type_t type);

/* A short lower-case name for TYPE ("hello", "stdout", ...), "unknown" otherwise.  Static storage. */
const char *nex_wire_type_name (unsigned type);

/* Writes the 8-byte header for a frame into OUT. */
void nex_wire_header_encode (uint8_t out[NEX_WIRE_HEADER_SIZE], nex_wire_type_t type, uint16_t channel, uint32_t len);

/* Initialises / releases a reader. */
void nex_wire_reader_init (nex_wire_reader_t *r);
void nex_wire_reader_release (nex_wire_reader_t *r);

/* Appends N bytes read from the stream.  Fails (NEX_ERR_PROTOCOL) only if the buffered, undecoded data would
 * exceed one maximal frame, which cannot happen when the caller calls nex_wire_reader_next until it returns 0
 * after every feed and never feeds more than nex_wire_reader_room bytes at once. */
int nex_wire_reader_feed (nex_wire_reader_t *r, const void *data, size_t n, nex_error_t *err);

/* How many bytes the next nex_wire_reader_feed accepts: read at most this much from the stream before feeding.
 * Once nex_wire_reader_next has returned 0 it is at least 1 and always enough to complete the pending frame. */
size_t nex_wire_reader_room (const nex_wire_reader_t *r);

/* Decodes the next complete frame into *OUT.  Returns 1 with a frame, 0 when more bytes are needed, -1 with
 * NEX_ERR_PROTOCOL on a malformed header (oversized length, unknown type, non-zero flags).  After -1 the stream
 * is unusable and must be closed.  JSON payloads are not parsed here: see nex_wire_frame_json. */
int nex_wire_reader_next (nex_wire_reader_t *r, nex_wire_frame_t *out, nex_error_t *err);

/* Parses the payload of a JSON-typed frame; it must be a JSON object (depth and size are bounded by the frame
 * cap).  Returns a new reference or NULL with NEX_ERR_PROTOCOL. */
json_t *nex_wire_frame_json (const nex_wire_frame_t *f, nex_error_t *err);

/* Encodes a complete frame (header + payload) into a newly allocated buffer of *OUT_LEN bytes.  DATA may be
 * NULL when LEN is 0.  Fails with NEX_ERR_TOO_LARGE above the cap. */
uint8_t *nex_wire_encode (nex_wire_type_t type, uint16_t channel, const void *data, size_t len, size_t *out_len,
                          nex_error_t *err);

/* As nex_wire_encode for a JSON control frame: serialises OBJ compactly. */
uint8_t *nex_wire_encode_json (nex_wire_type_t type, uint16_t channel, const json_t *obj, size_t *out_len,
                               nex_error_t *err);

/* Encodes and writes one frame to a blocking FD in full.  0 or -1. */
int nex_wire_send (int fd, nex_wire_type_t type, uint16_t channel, const void *data, size_t len, nex_error_t *err);
int nex_wire_send_json (int fd, nex_wire_type_t type, uint16_t channel, const json_t *obj, nex_error_t *err);

#endif
