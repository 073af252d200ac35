// SPDX-License-Identifier: Apache-2.0
// cluster-sim.mjs — N simulated cluster nodes in one process, for tests/bench/cluster-scale: each publishes a
// heartbeat document (server/cluster/capacity.c's form) on $NEX.cluster.heartbeat.<id> every second (spread over
// the second) and answers every $NEX.AUCTION with its document (the answer's data.cluster, as our nodes do).  The
// simulated nodes have 1 MiB free, so the real nexd always wins an auction without requirements and deploys
// locally; they never own workloads.  Each simulated node has its own subscription, so that the server's fan-out
// and the reply count are those of N real nodes.
//
// With ENTRIES > 0, the simulated nodes also own that many entries of the desired-state bucket NEX_DESIRED (as
// placement.c writes them, spread over the nodes), written before READY and deleted at the end: the real nexd
// follows them with its watcher and walks them in every failover round, as it would a cluster's workloads.
//
// Usage: node cluster-sim.mjs SERVER N PREFIX [ENTRIES]
// Prints "READY" once every subscription is in place; on stdin's end (or SIGTERM) prints one JSON line
// {nodes, heartbeats, auctions, replies, hb_bytes, entries} and exits.
import { connect, StringCodec } from "nats";

const [server, nArg, prefix, entriesArg] = process.argv.slice(2);
const n = Number(nArg);
const nEntries = Number(entriesArg || 0);
const sc = StringCodec();
const nc = await connect({ servers: server, name: `cluster-sim-${prefix}` });
const docs = [];
for (let i = 0; i < n; i++) {
  const id = `${prefix}${String(i).padStart(5, "0")}`;
  docs.push({
    node_id: id, name: `sim-${i}`, version: "sim", tags: { zone: `sim${i % 10}` }, drivers: ["sandbox"],
    total: { memory_mb: 1024, vcpus: 1 }, free: { memory_mb: 1, vcpus: 0.001 }, workloads: 0, lame_duck: false,
    api: "127.0.0.1:0",
  });
}
const stats = { nodes: n, heartbeats: 0, auctions: 0, replies: 0, hb_bytes: 0, entries: nEntries };
for (const doc of docs) {
  const answer = sc.encode(JSON.stringify({ type: "auction", data: { cluster: doc } }));
  nc.subscribe("$NEX.AUCTION", {
    callback: (err, msg) => {
      if (err) return;
      stats.auctions++;
      if (msg.reply) {
        nc.publish(msg.reply, answer);
        stats.replies++;
      }
    },
  });
}
await nc.flush();
// The heartbeats start first, so that the entries' owners are alive when nexd sees the entries.
const timers = [];
docs.forEach((doc, i) => {
  const beat = () => {
    const body = sc.encode(JSON.stringify(doc));
    nc.publish(`$NEX.cluster.heartbeat.${doc.node_id}`, body);
    stats.heartbeats++;
    stats.hb_bytes += body.length;
  };
  timers.push(setTimeout(() => { beat(); timers.push(setInterval(beat, 1000)); }, Math.floor((1000 * i) / n)));
});
const keys = [];
let kv = null;
if (nEntries > 0) {
  await new Promise((r) => setTimeout(r, 1500));
  kv = await nc.jetstream().views.kv("NEX_DESIRED");
  for (let i = 0; i < nEntries; i++) {
    const key = `${prefix.toLowerCase()}-${String(i).padStart(8, "0")}`;
    const owner = docs[i % n].node_id;
    const value = {
      key, namespace: "default", name: `sim-w${i}`, owner, workload_id: `w-${key}`, restartable: true,
      state: "running", placed_at: Date.now(), placement: null,
      spec: { name: `sim-w${i}`, artifact: "file:///sim/sleeper", restart_policy: "always", namespace: "default",
              labels: { "nex.cluster/key": key } },
    };
    await kv.put(key, sc.encode(JSON.stringify(value)));
    keys.push(key);
  }
}
console.log("READY");
let done = false;
async function finish() {
  if (done) return;
  done = true;
  timers.forEach((t) => clearInterval(t));
  for (const key of keys) await kv.delete(key);
  await nc.flush();
  console.log(JSON.stringify(stats));
  await nc.close();
  process.exit(0);
}
process.stdin.on("end", finish);
process.stdin.resume();
process.on("SIGTERM", finish);
