/* SPDX-License-Identifier: Apache-2.0 */
/* id.h — identifiers Nex hands out: random (version 4) UUIDs in their 36-character text form. */
#ifndef NEX_ID_H
#define NEX_ID_H

/* Writes a new random UUID ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", lower-case) and a NUL into OUT.  Uses the
 * kernel's CSPRNG (getrandom); aborts if it is unavailable, as nothing unique can be made without it. */
void nex_id_new (char out[37]);

/* True when S is a well-formed textual UUID (any version, lower- or upper-case). */
int nex_id_valid (const char *s);

#endif
