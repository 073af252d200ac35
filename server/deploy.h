/* SPDX-License-Identifier: Apache-2.0 */
/* deploy.h — accepting a workload: the one path every front door takes (REST today; NATS and the CLI's
 * uploads go through it too), so that validation, storage and the deployed event are the same whichever way a
 * request arrives. */
#ifndef NEX_DEPLOY_H
#define NEX_DEPLOY_H

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"
#include "server/workload.h"

/* Validates REQUEST (the deploy fields, see nex_workload_from_request), checks that its driver exists and is
 * available and that its artifact passes the request-time checks, stores it `pending`, emits
 * `workload_deployed` and queues it to the supervisor.  Fills OUT (caller releases) with the stored workload.
 * On failure nothing is stored: NEX_ERR_INVALID names the field (`trigger_subjects` for a function on a node
 * without NATS), NEX_ERR_UNAVAILABLE says why the driver cannot
 * run here, NEX_ERR_NO_SPACE that the data dir has less than 1 MiB free (or the record could not be stored).  Any
 * thread. */
int nex_deploy_submit (nex_node_t *node, const json_t *request, nex_workload_t *out, nex_error_t *err);

#endif
