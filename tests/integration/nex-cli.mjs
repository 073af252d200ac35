// SPDX-License-Identifier: Apache-2.0
// nex-cli.mjs — what nex's own CLI (synadia-io/nex v0.3: tag 0.3.0-rc1 and the last 0.x commit ec4c2b4, whose
// control-api package is the same) sends over NATS, rebuilt on nats.js and nkeys.js for the compatibility tests.
//
// Each command follows the Go code step by step: nex/runner.go (RunWorkload, StopWorkload), nex/devrunner.go
// (RunDevWorkload) and control-api (NewDeployRequest, NewStopRequest, CreateWorkloadJWT,
// EncryptRequestEnvironment, SanitizeNATSDigest, Client.performRequest).  Requests are the JSON encoding/json
// makes of nex's structs: its field order, its omitempty rules, and `location` as a url.URL, which has no JSON
// form of its own and is therefore marshalled field by field.  Replies are read as nex's client reads them: the
// envelope's `error` fails the request, otherwise `data` is decoded into the response struct, where a member of
// the wrong type is an error as in Go's json.Unmarshal.
//
// Usage: node nex-cli.mjs SERVER COMMAND OPTIONS_JSON; prints one JSON object {sent, reply, response | error}.
//   run     {namespace, node, url, name, argv, env, essential, description, type, trigger_subjects,
//            issuer_seed, publisher_seed}           `nex run nats://bucket/key` (argv: the --argv string)
//   stop    {namespace, node, workload_id, issuer_seed}                       `nex stop`
//   devrun  {namespace, file, argv, env, essential, issuer_seed, publisher_seed}   `nex devrun FILE`
import { connect, createInbox, StringCodec } from "nats";
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import * as nkeys from "nkeys.js";

const [server, command, optionsText] = process.argv.slice(2);
const opts = JSON.parse(optionsText ?? "{}");
const sc = StringCodec();
const enc = new TextEncoder();

// --- Go's encodings ---------------------------------------------------------------------------------------------

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");

// base32.StdEncoding.WithPadding(base32.NoPadding)
function base32 (bytes) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0, out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

// url.URL as encoding/json writes it (Go 1.22: every exported field, in declaration order).
function goURL (text) {
  const u = new URL(text);
  return { Scheme: u.protocol.replace(/:$/, ""), Opaque: "", User: null, Host: u.host,
           Path: decodeURIComponent(u.pathname), RawPath: "", OmitHost: false, ForceQuery: false,
           RawQuery: u.search.replace(/^\?/, ""), Fragment: u.hash.replace(/^#/, ""), RawFragment: "" };
}

// jwt.NewGenericClaims(subject) with Data, encoded by nats-io/jwt v2: iss and iat set, jti the base32 SHA-512/256
// of the claims' JSON without jti, header {"typ":"JWT","alg":"ed25519-nkey"}.
function genericJWT (subject, data, issuer) {
  const claims = { iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), sub: subject };
  if (data) claims.nats = data;
  const jti = base32(createHash("sha512-256").update(JSON.stringify(claims)).digest());
  const ordered = { jti, ...claims };
  const head = b64url(enc.encode(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" })));
  const body = b64url(enc.encode(JSON.stringify(ordered)));
  return `${head}.${body}.${b64url(issuer.sign(enc.encode(`${head}.${body}`)))}`;
}

// controlapi.SanitizeNATSDigest: "SHA-256=<base64url>" to hex.
function sanitizeDigest (digest) {
  const i = digest.indexOf("=");
  return i < 0 ? digest : Buffer.from(digest.slice(i + 1), "base64url").toString("hex");
}

// controlapi.EncryptRequestEnvironment: json.Marshal(map) (keys sorted), sealed, base64.StdEncoding.
function sealEnv (sender, recipient, env) {
  const sorted = Object.fromEntries(Object.keys(env ?? {}).sort().map((k) => [k, env[k]]));
  return Buffer.from(sender.seal(enc.encode(JSON.stringify(sorted)), recipient)).toString("base64");
}

// A nex response struct's decoding: members of TYPES taken, wrong types refused (null leaves the zero value).
function goDecode (data, types, what) {
  const out = {};
  for (const [k, t] of Object.entries(types)) {
    const v = data?.[k];
    if (v === undefined || v === null) continue;
    const ok = t === "array" ? Array.isArray(v) : t === "object" ? typeof v === "object" && !Array.isArray(v)
             : t === "int" ? Number.isInteger(v) : typeof v === (t === "bool" ? "boolean" : t);
    if (!ok) throw new Error(`json: cannot unmarshal ${JSON.stringify(v)} into Go struct field ${what}.${k} of type ${t}`);
    out[k] = v;
  }
  return out;
}

const RESPONSES = {
  info: { available_agents: "int", allow_duplicate_workloads: "bool", machines: "array", memory: "object",
          public_xkey: "string", supported_workload_types: "array", tags: "object", uptime: "string",
          version: "string" },
  run: { id: "string", issuer: "string", name: "string", started: "bool" },
  stop: { id: "string", issuer: "string", stopped: "bool" },
  auction: { node_id: "string", nexus: "string", version: "string", uptime: "string", target_xkey: "string",
             tags: "object", running_machines: "int" },
};

// --- the CLI's steps ---------------------------------------------------------------------------------------------

const sent = [];
const replies = [];

// Client.performRequest: marshal (nil: empty body), request, envelope, error -> failure, data -> struct.
async function performRequest (nc, subject, request, op, timeout = 5000) {
  const body = request === null ? "" : JSON.stringify(request);
  sent.push({ subject, body: request });
  const m = await nc.request(subject, sc.encode(body), { timeout });
  const env = JSON.parse(sc.decode(m.data));
  replies.push(env);
  if (env.error !== undefined && env.error !== null) throw new Error(String(env.error));
  return goDecode(env.data, RESPONSES[op], op);
}

// controlapi.NewDeployRequest + json.Marshal(DeployRequest): the struct's fields in order, omitempty honoured.
function deployRequest (o, targetXkey) {
  const issuer = nkeys.fromSeed(enc.encode(o.issuer_seed));
  const sender = nkeys.fromCurveSeed(enc.encode(o.publisher_seed));
  const id = randomUUID();
  const r = {};
  if (o.argv && o.argv.length > 0) r.argv = o.argv;
  r.description = o.description ?? "";
  r.hash = o.hash;
  r.location = goURL(o.url);
  r.essential = Boolean(o.essential);
  r.environment = sealEnv(sender, targetXkey, o.env ?? {});
  r.id = id;
  if (o.js_domain) r.jsdomain = o.js_domain;
  r.sender_public_key = sender.getPublicKey();
  r.target_node = o.node;
  if (o.trigger_subjects && o.trigger_subjects.length > 0) r.trigger_subjects = o.trigger_subjects;
  r.workload_name = o.name;
  r.workload_jwt = genericJWT(id, { hash: o.hash, name: o.name }, issuer);
  r.type = o.type ?? "native";
  return r;
}

// The CLI's --argv: one string, split at spaces (an empty one sends no argv).
const splitArgv = (s) => (s && s.length > 0 ? s.split(" ") : []);

async function run (nc) {
  const ns = opts.namespace ?? "default";
  const info = await performRequest(nc, `$NEX.INFO.${ns}.${opts.node}`, null, "info");
  const url = new URL(opts.url);
  const os = await nc.jetstream().views.os(url.hostname);
  const oi = await os.info(url.pathname.slice(1));
  if (oi === null) throw new Error(`failed resolve workload artifact: ${url.pathname.slice(1)}`);
  const request = deployRequest({ ...opts, argv: splitArgv(opts.argv), hash: sanitizeDigest(oi.digest) },
                                info.public_xkey);
  return performRequest(nc, `$NEX.DEPLOY.${ns}.${opts.node}`, request, "run", 25000);
}

async function stop (nc) {
  const issuer = nkeys.fromSeed(enc.encode(opts.issuer_seed));
  const request = { node_id: opts.node, workload_id: opts.workload_id,
                    workload_jwt: genericJWT(opts.workload_id, null, issuer) };
  return performRequest(nc, `$NEX.STOP.${opts.namespace ?? "default"}.${opts.node}`, request, "stop");
}

// RunDevWorkload: auction (arch/os from the ELF header, type native), info of a bidder, upload into NEXCLIFILES
// under the file's base name without dots, deploy with the CLI's placeholder hash.
async function devrun (nc) {
  const ns = opts.namespace ?? "default";
  const bytes = readFileSync(opts.file);
  const arch = bytes[18] === 0x3e ? "amd64" : bytes[18] === 0xb7 ? "arm64" : undefined;
  const inbox = nc.subscribe(createInbox());
  const auction = { arch, os: "linux", workload_types: ["native"] };
  sent.push({ subject: "$NEX.AUCTION", body: auction });
  nc.publish("$NEX.AUCTION", sc.encode(JSON.stringify(auction)), { reply: inbox.getSubject() });
  const bids = [];
  const done = (async () => {
    for await (const m of inbox) {
      const env = JSON.parse(sc.decode(m.data));
      replies.push(env);
      bids.push(goDecode(env.data, RESPONSES.auction, "auction"));
    }
  })();
  await new Promise((r) => setTimeout(r, 750));
  inbox.unsubscribe();
  await done;
  if (bids.length === 0) throw new Error("unable to locate candidate node - no nodes discovered");
  const target = bids[0];
  const info = await performRequest(nc, `$NEX.INFO.${ns}.${target.node_id}`, null, "info");
  const key = basename(opts.file).replaceAll(".", "");
  const os = await nc.jetstream().views.os("NEXCLIFILES", { max_bytes: 100 * 1024 * 1024 });
  await os.putBlob({ name: key }, bytes);
  const request = deployRequest({ ...opts, node: target.node_id, url: `nats://NEXCLIFILES/${key}`, name: key,
                                  argv: splitArgv(opts.argv), hash: "abc12345TODOmakethisreal",
                                  description: "Workload published in devmode" }, info.public_xkey);
  return performRequest(nc, `$NEX.DEPLOY.${ns}.${target.node_id}`, request, "run", 25000);
}

async function main () {
  const commands = { run, stop, devrun };
  if (!commands[command]) throw new Error(`unknown command ${command}`);
  const nc = await connect({ servers: server, timeout: 5000 });
  try {
    const response = await commands[command](nc);
    console.log(JSON.stringify({ sent, reply: replies.at(-1), response }));
  } catch (e) {
    console.log(JSON.stringify({ sent, reply: replies.at(-1) ?? null, error: e.message }));
  } finally {
    await nc.drain();
  }
}

main().catch((e) => {
  console.error(`nex-cli: ${e.message}`);
  process.exit(1);
});
