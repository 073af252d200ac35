-- SPDX-License-Identifier: Apache-2.0
-- 005_secure_launch.sql — what a secure launch (sealed environment, workload JWT) keeps beside its workload.
--
-- workload_secure holds, per workload that came with them: the environment exactly as the client sealed it to
-- the node's xkey (base64 of the xkv1 box; the clear values are never stored, they are opened in memory when the
-- workload starts), the sender's public xkey, and what the node took from a verified workload JWT (issuer,
-- subject, the artifact hash it vouches for).  jwt_seen records every JWT id (jti) the node accepted, so that a
-- JWT is good for one operation only (a stop must bring a fresh one; a replayed one is refused).
CREATE TABLE workload_secure (
  workload_id  TEXT PRIMARY KEY,         -- the workload's id (no foreign key: the row is written first)
  sealed_env   TEXT,                     -- base64 xkv1 box, or NULL
  sender_xkey  TEXT,                     -- X... public key the environment was sealed with, or NULL
  jwt_issuer   TEXT,                     -- public nkey that signed the deploy JWT, or NULL
  jwt_subject  TEXT,
  jwt_hash     TEXT                      -- artifact SHA-256 (hex) the JWT vouches for, or NULL
);

CREATE TABLE jwt_seen (
  jti     TEXT NOT NULL,
  issuer  TEXT NOT NULL,
  at      INTEGER NOT NULL,              -- Unix ms when it was accepted
  PRIMARY KEY (issuer, jti)
) WITHOUT ROWID;
