// SPDX-License-Identifier: Apache-2.0
// nats-client.mjs — a small NATS client for the integration tests, built on nats.js (npm `nats`) and nkeys.js:
// an independent implementation of the NATS protocol, JetStream object store, nkeys and xkey sealing against
// which nexd's own (nats.c and server/nats/nkeys.c) are checked.
//
// Usage: node nats-client.mjs SERVER COMMAND ARGS...   (SERVER "-" for commands that need no connection)
//   request SUBJECT JSON [TIMEOUT_MS] [HEADERS]
//                                             one request (HEADERS: a JSON object of header names and values),
//                                             prints the reply's data as text
//   collect SUBJECT JSON [TIMEOUT_MS]         publishes with a reply inbox, prints every reply within the time
//                                             as a JSON array of parsed replies
//   sub SUBJECT [MAX] [TIMEOUT_MS]            prints "READY", then each message as a JSON line {subject, data}
//   requests SUBJECT COUNT CONC [echo|nex|upcase]
//                                             COUNT requests with payload "<i>" ("fn-<i>" for upcase), CONC at a
//                                             time; prints {ok, errors, wrong, failures, elapsed_ms, p50_ms,
//                                             p99_ms} (failures: the first 5 Nex-Error values or errors)
//                                             (a reply with a Nex-Error header counts as an error)
//   pub SUBJECT DATA                          publishes DATA without a reply subject
//   fcall SUBJECT B64 [TIMEOUT_MS]            one request with the payload given in base64; prints
//                                             {data (base64), text, headers {name: value}} or {error: code};
//                                             B64 "@FILE": the payload is FILE's bytes
//   echo SUBJECT [TIMEOUT_MS]                 a plain responder that replies with the payload (bench floor)
//   stream-add NAME SUBJECTS                  adds a JetStream stream capturing SUBJECTS (comma-separated)
//   stream-msgs NAME                          prints every message of stream NAME as a JSON array
//   obj-put BUCKET NAME FILE                  puts FILE into object store BUCKET (created if needed)
//   obj-get BUCKET NAME FILE                  gets an object into FILE, prints its info
//   nkey-public SEED                          prints the public key of an nkey seed
//   seal SENDER_SEED RECIPIENT_XKEY TEXT      prints base64 of TEXT sealed from SENDER to RECIPIENT
//   curve                                     prints {seed, public} of a new curve key
//   account | user                            prints {seed, public} of a new account (or user) key
//   jwt ISSUER_SEED CLAIMS_JSON               prints a JWT (ed25519-nkey) of CLAIMS signed by ISSUER
import { connect, headers as natsHeaders, StringCodec } from "nats";
import { readFileSync, writeFileSync } from "node:fs";
import * as nkeys from "nkeys.js";

const [server, command, ...args] = process.argv.slice(2);
const sc = StringCodec();
const enc = new TextEncoder();

function b64url(bytes) {
  return Buffer.from(bytes).toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function main() {
  switch (command) {
    case "nkey-public": {
      console.log(nkeys.fromSeed(enc.encode(args[0])).getPublicKey());
      return;
    }
    case "curve": {
      const kp = nkeys.createCurve();
      console.log(JSON.stringify({ seed: new TextDecoder().decode(kp.getSeed()), public: kp.getPublicKey() }));
      return;
    }
    case "account":
    case "user": {
      const kp = command === "user" ? nkeys.createUser() : nkeys.createAccount();
      console.log(JSON.stringify({ seed: new TextDecoder().decode(kp.getSeed()), public: kp.getPublicKey() }));
      return;
    }
    case "seal": {
      const kp = nkeys.fromCurveSeed(enc.encode(args[0]));
      const sealed = kp.seal(enc.encode(args[2]), args[1]);
      console.log(Buffer.from(sealed).toString("base64"));
      return;
    }
    case "jwt": {
      const kp = nkeys.fromSeed(enc.encode(args[0]));
      const header = b64url(enc.encode(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" })));
      const claims = JSON.parse(args[1]);
      claims.iss = claims.iss ?? kp.getPublicKey();
      const body = b64url(enc.encode(JSON.stringify(claims)));
      const sig = b64url(kp.sign(enc.encode(`${header}.${body}`)));
      console.log(`${header}.${body}.${sig}`);
      return;
    }
  }
  // user:password in the URL become options (nats.js does not read them from the URL).
  const u = new URL(server);
  const opts = { servers: `${u.protocol}//${u.host}`, timeout: 5000 };
  if (u.username) {
    opts.user = decodeURIComponent(u.username);
    opts.pass = decodeURIComponent(u.password);
  }
  const nc = await connect(opts);
  try {
    switch (command) {
      case "request": {
        const opts = { timeout: Number(args[2] ?? 5000) };
        if (args[3]) {
          opts.headers = natsHeaders();
          for (const [k, v] of Object.entries(JSON.parse(args[3]))) opts.headers.set(k, v);
        }
        const m = await nc.request(args[0], sc.encode(args[1] ?? ""), opts);
        console.log(sc.decode(m.data));
        break;
      }
      case "pub": {
        nc.publish(args[0], sc.encode(args[1] ?? ""));
        await nc.flush();
        console.log("{}");
        break;
      }
      case "fcall": {
        try {
          const body = (args[1] ?? "").startsWith("@") ? readFileSync(args[1].slice(1))
                                                        : Buffer.from(args[1] ?? "", "base64");
          const m = await nc.request(args[0], body,
                                     { timeout: Number(args[2] ?? 5000) });
          const headers = {};
          if (m.headers) for (const [k, v] of m.headers) headers[k] = v.join(", ");
          console.log(JSON.stringify({ data: Buffer.from(m.data).toString("base64"), text: sc.decode(m.data),
                                       headers }));
        } catch (e) {
          console.log(JSON.stringify({ error: String(e.code ?? e.message) }));
        }
        break;
      }
      case "collect": {
        const inbox = `_INBOX.${Math.random().toString(36).slice(2)}`;
        const sub = nc.subscribe(inbox);
        const replies = [];
        const done = (async () => {
          for await (const m of sub) if (m.data.length > 0) replies.push(JSON.parse(sc.decode(m.data)));
        })();
        nc.publish(args[0], sc.encode(args[1] ?? ""), { reply: inbox });
        await new Promise((r) => setTimeout(r, Number(args[2] ?? 1000)));
        sub.unsubscribe();
        await done;
        console.log(JSON.stringify(replies));
        break;
      }
      case "sub": {
        const max = Number(args[1] ?? 0);
        const sub = nc.subscribe(args[0], max > 0 ? { max } : {});
        await nc.flush();
        console.log("READY");
        const timer = setTimeout(() => sub.unsubscribe(), Number(args[2] ?? 30000));
        for await (const m of sub) {
          console.log(JSON.stringify({ subject: m.subject, data: sc.decode(m.data) }));
        }
        clearTimeout(timer);
        break;
      }
      case "requests": {
        // CHECK "echo": the reply must hold the payload; "nex": a nex envelope without error.
        const count = Number(args[1]), conc = Number(args[2] ?? 1), check = args[3] ?? "echo";
        let next = 0, ok = 0, errors = 0;
        const wrong = [], failures = [];
        const lat = [];
        async function worker() {
          while (next < count) {
            const i = next++;
            const payload = check === "upcase" ? `fn-${i}` : `${i}`;
            const t0 = process.hrtime.bigint();
            try {
              const m = await nc.request(args[0], sc.encode(payload), { timeout: 10000 });
              lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
              const text = sc.decode(m.data);
              if (m.headers && (m.headers.hasError || m.headers.has("Nex-Error"))) {
                errors++;
                if (failures.length < 5) failures.push(m.headers.get("Nex-Error") || `${m.headers.code}`);
              }
              else if (check === "nex" ? JSON.parse(text).error == null
                       : check === "upcase" ? text === payload.toUpperCase() : text.trim() === `${i}`) ok++;
              else wrong.push([i, text]);
            } catch (e) {
              errors++;
              if (failures.length < 5) failures.push(`${e.message}`);
            }
          }
        }
        const t0 = Date.now();
        await Promise.all(Array.from({ length: conc }, worker));
        lat.sort((a, b) => a - b);
        const q = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null;
        console.log(JSON.stringify({ ok, errors, wrong: wrong.slice(0, 5), failures, elapsed_ms: Date.now() - t0,
                                     p50_ms: q(0.5), p99_ms: q(0.99) }));
        break;
      }
      case "echo": {
        // A plain request/reply responder (the benchmark's floor): replies with the payload.
        const sub = nc.subscribe(args[0], { queue: "echo" });
        await nc.flush();
        console.log("READY");
        const timer = setTimeout(() => sub.unsubscribe(), Number(args[1] ?? 60000));
        for await (const m of sub) m.respond(m.data);
        clearTimeout(timer);
        break;
      }
      case "stream-add": {
        const jsm = await nc.jetstreamManager();
        await jsm.streams.add({ name: args[0], subjects: args[1].split(",") });
        console.log("{}");
        break;
      }
      case "stream-msgs": {
        // Every message of stream NAME, oldest first, as a JSON array of {subject, data}.
        const jsm = await nc.jetstreamManager();
        const si = await jsm.streams.info(args[0]);
        const out = [];
        for (let seq = si.state.first_seq; seq <= si.state.last_seq && si.state.messages > 0; seq++) {
          try {
            const m = await jsm.streams.getMessage(args[0], { seq });
            out.push({ subject: m.subject, data: sc.decode(m.data) });
          } catch (e) {
            // deleted message: skip
          }
        }
        console.log(JSON.stringify(out));
        break;
      }
      case "obj-put": {
        const js = nc.jetstream();
        const os = await js.views.os(args[0]);
        const info = await os.putBlob({ name: args[1] }, readFileSync(args[2]));
        console.log(JSON.stringify(info.info ?? info));
        break;
      }
      case "obj-get": {
        const js = nc.jetstream();
        const os = await js.views.os(args[0]);
        const data = await os.getBlob(args[1]);
        if (data === null) throw new Error(`no object ${args[1]}`);
        writeFileSync(args[2], data);
        const oi = await os.info(args[1]);
        console.log(JSON.stringify(oi.info ?? oi));
        break;
      }
      default:
        throw new Error(`unknown command ${command}`);
    }
  } finally {
    await nc.drain();
  }
}

main().catch((e) => {
  console.error(`nats-client: ${e.message}`);
  process.exit(1);
});
