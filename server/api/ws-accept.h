/* SPDX-License-Identifier: Apache-2.0 */
/* api/ws-accept.h — the server's answer to a websocket opening handshake: Sec-WebSocket-Accept (RFC 6455 4.2.2).
 * Framing itself is common/ws-frame.h, shared with the `nex` CLI. */
#ifndef NEX_WS_ACCEPT_H
#define NEX_WS_ACCEPT_H

#include "common/error.h"

/* Computes the Sec-WebSocket-Accept value for the client's Sec-WebSocket-Key KEY into OUT (28 characters and a
 * NUL).  KEY must be the base64 of 16 bytes (24 characters); anything else is refused with NEX_ERR_MALFORMED. */
int nex_ws_accept_key (const char *key, char out[29], nex_error_t *err);

#endif
