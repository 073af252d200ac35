/* SPDX-License-Identifier: Apache-2.0 */
/* nats-objput.c — test tool: puts a file into a JetStream object store with nexd's own writer
 * (nats/objstore.c), or gets one with its reader, so that the integration tests can check both against
 * nats.js.  Usage: nats-objput URL put|get BUCKET NAME FILE.  Prints the SHA-256 (hex) on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "server/nats/objstore.h"

static int
to_file (void *sink, const void *buf, size_t n, nex_error_t *err)
{
  return fwrite (buf, 1, n, sink) == n ? 0 : nex_error_set (err, NEX_ERR_SYSTEM, "write failed");
}

int
main (int argc, char **argv)
{
  if (argc != 6 || sodium_init () < 0)
    {
      fprintf (stderr, "usage: nats-objput URL put|get BUCKET NAME FILE\n");
      return 2;
    }
  natsConnection *nc = NULL;
  if (natsConnection_ConnectTo (&nc, argv[1]) != NATS_OK)
    {
      fprintf (stderr, "nats-objput: cannot connect to %s\n", argv[1]);
      return 1;
    }
  cleanup_error nex_error_t err = NULL;
  int r;
  char digest[65] = "";
  if (strcmp (argv[2], "put") == 0)
    {
      size_t len = 0;
      cleanup_free char *data = nex_file_read (argv[5], 64 * 1024 * 1024, &len, &err);
      r = data ? nex_objstore_put (nc, argv[3], argv[4], data, len, digest, &err) : -1;
    }
  else
    {
      FILE *f = fopen (argv[5], "wb");
      r = f ? nex_objstore_get (nc, argv[3], argv[4], 1ULL << 30, to_file, f, &err) : -1;
      if (f)
        fclose (f);
    }
  if (r == 0)
    printf ("%s\n", digest);
  else
    fprintf (stderr, "nats-objput: %s\n", err ? err->msg : "cannot open the file");
  natsConnection_Destroy (nc);
  nats_CloseAndWait (2000);
  return r == 0 ? 0 : 1;
}
