/* SPDX-License-Identifier: Apache-2.0 */
/* function.c — persistent function processes (EXEC `persistent`, common/wire.h): one program that answers a
 * function's calls one after another instead of one process per call (see agent.h).
 *
 * A persistent process is an exec session's record that outlives its session.  While it serves a call it is
 * that session (its channel, its deadline); between calls it is idle: still live, so that the loop polls it and
 * the reaper finds it, but on no session (nex_agent_proc_find skips it) and reported to nobody.  The next EXEC
 * with the same request (its key: the request without timeout_ms, warm and subject) takes it instead of a fork.
 *
 * The protocol, on the program's stdin and stdout (the README's "Function workloads" says it for users): each
 * call is a line `<length> <subject>\n` followed by exactly length bytes of payload; the program answers with a
 * line `<status> <length>\n` followed by exactly length bytes.  Status 0 is a reply (the body goes out as the
 * session's stdout), anything else a failure (the body as its stderr); EXIT {code: status, reply: true} ends the
 * session and the process goes idle.  Whatever the program writes on stderr is the workload's log (channel 0).
 * A malformed or oversized header, bytes on stdout between calls or after a reply's body are a broken program:
 * it is killed, and the session (if any) is answered with ERROR {phase: "function"}.  A program that ends while it
 * serves a call ends its session as any exec does (EXIT without `reply`); one that ends idle is forgotten. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "common/xalloc.h"

#define FN_MAX_REPLY (1u << 20) /* a reply's body: what nexd keeps of an exec's output */
#define FN_MAX_STATUS 255

nex_agent_proc_t *
nex_agent_fn_take (nex_agent_t *a, const char *key, uint16_t channel)
{
  for (int i = 1; i < AGENT_MAX_PROCS; i++)
    {
      nex_agent_proc_t *p = &a->procs[i];
      if (p->live && p->idle && !p->ended && p->warm_key && strcmp (p->warm_key, key) == 0)
        {
          p->idle = false;
          p->channel = channel;
          nex_agent_queue_json (a, NEX_WIRE_STARTED, channel, json_pack ("{s:i}", "pid", (int)p->pid), false, false);
          return p;
        }
    }
  return NULL;
}

nex_agent_proc_t *
nex_agent_fn_evict (nex_agent_t *a)
{
  for (int i = 1; i < AGENT_MAX_PROCS; i++)
    {
      nex_agent_proc_t *p = &a->procs[i];
      if (p->live && p->idle)
        {
          kill (-p->pid, SIGKILL);
          if (!p->ended)
            kill (p->pid, SIGKILL);
          nex_agent_proc_release (p); /* the reaper collects it as any orphan */
          return p;
        }
    }
  return NULL;
}

void
nex_agent_fn_begin (nex_agent_proc_t *p, const char *key, const char *subject)
{
  if (p->warm_key == NULL)
    p->warm_key = nex_xstrdup (key);
  p->persistent = true;
  free (p->subject);
  p->subject = nex_xstrdup (subject);
  p->call_sent = false;
  p->call_len = 0;
}

void
nex_agent_fn_feed (nex_agent_proc_t *p, const uint8_t *data, size_t n)
{
  if (p->call_sent || p->idle)
    return; /* this call's payload is complete: anything more has no place in the protocol */
  if (n > 0)
    {
      if (p->call_len + n > AGENT_FN_MAX_PAYLOAD)
        {
          nex_agent_proc_log (p, "call payload beyond %u bytes; the rest is dropped", AGENT_FN_MAX_PAYLOAD);
          return;
        }
      p->call_buf = nex_xrealloc (p->call_buf, p->call_len + n);
      memcpy (p->call_buf + p->call_len, data, n);
      p->call_len += n;
      return;
    }
  /* The host's EOF: the payload is whole; its header and it go to the pipe. */
  char head[64 + AGENT_FN_MAX_SUBJECT];
  int h = snprintf (head, sizeof head, "%zu %s\n", p->call_len, p->subject ? p->subject : "");
  p->in_buf = nex_xrealloc (p->in_buf, p->in_len + (size_t)h + p->call_len);
  memcpy (p->in_buf + p->in_len, head, (size_t)h);
  if (p->call_len)
    memcpy (p->in_buf + p->in_len + h, p->call_buf, p->call_len);
  p->in_len += (size_t)h + p->call_len;
  p->call_len = 0;
  p->call_sent = true;
  nex_agent_proc_write_stdin (p);
}

/* The program broke the protocol: it is killed and its record freed; the call it served, if any, is answered
 * with ERROR {phase: "function"} on its channel. */
static void
violation (nex_agent_t *a, nex_agent_proc_t *p, const char *why)
{
  nex_agent_proc_log (p, "function protocol: %s; ending pid %d", why, (int)p->pid);
  if (!p->idle)
    nex_agent_queue_json (a, NEX_WIRE_ERROR, p->channel,
                          json_pack ("{s:s++, s:s}", "message", "function protocol: ", why,
                                     " (the program was ended; see the README, \"Function workloads\")", "phase",
                                     "function"),
                          false, false);
  kill (-p->pid, SIGKILL);
  if (!p->ended)
    kill (p->pid, SIGKILL);
  nex_agent_proc_release (p);
}

/* The reply's body is complete: EXIT {code: status, reply: true} ends the session and P goes idle. */
static void
call_done (nex_agent_t *a, nex_agent_proc_t *p)
{
  json_t *o = json_pack ("{s:i, s:b, s:b, s:I}", "code", p->reply_status, "reply", 1, "timed_out", 0, "dropped_bytes",
                         (json_int_t)p->dropped_bytes);
  nex_agent_queue_json (a, NEX_WIRE_EXIT, p->channel, o, false, false);
  p->idle = true;
  p->in_body = false;
  p->reply_head_len = 0;
  p->call_sent = false;
  p->in_len = 0; /* a payload it answered without reading is not the next call's */
  p->deadline = 0;
  p->dropped_bytes = 0;
  free (p->subject);
  p->subject = NULL;
}

/* Parses the reply header in P (`<status> <length>`); -1 when it is not one. */
static int
parse_head (nex_agent_proc_t *p)
{
  p->reply_head[p->reply_head_len] = '\0';
  const char *s = p->reply_head;
  char *end;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  unsigned long status = strtoul (s, &end, 10);
  if (errno || *end != ' ' || status > FN_MAX_STATUS)
    return -1;
  s = end + 1;
  if (*s < '0' || *s > '9')
    return -1;
  unsigned long long len = strtoull (s, &end, 10);
  if (errno || *end != '\0' || len > FN_MAX_REPLY)
    return -1;
  p->reply_status = (int)status;
  p->reply_left = (size_t)len;
  return 0;
}

void
nex_agent_fn_stdout (nex_agent_t *a, nex_agent_proc_t *p, const uint8_t *buf, size_t n)
{
  size_t i = 0;
  while (i < n)
    {
      if (p->idle || !p->call_sent)
        {
          violation (a, p, p->idle ? "it wrote on stdout between calls" : "it replied before the call was sent");
          return;
        }
      if (!p->in_body)
        {
          while (i < n && buf[i] != '\n' && p->reply_head_len < sizeof p->reply_head - 1)
            p->reply_head[p->reply_head_len++] = (char)buf[i++];
          if (i == n)
            return; /* the rest of the header is still to come */
          if (buf[i] != '\n' || parse_head (p) < 0)
            {
              violation (a, p, "its reply does not begin with a line `<status> <length>` (length at most 1048576)");
              return;
            }
          i++;
          p->in_body = true;
        }
      size_t take = n - i < p->reply_left ? n - i : p->reply_left;
      if (take > 0)
        nex_agent_queue_output (a, p->reply_status == 0 ? NEX_WIRE_STDOUT : NEX_WIRE_STDERR, p->channel, buf + i, take,
                                &p->dropped_bytes);
      i += take;
      p->reply_left -= take;
      if (p->reply_left == 0)
        call_done (a, p);
    }
}
