// Round-trip benchmark of the worker (docs/WORKER.md), run with: bun Tests/worker/bench.ts [N] [--same-cpu]
//
// The worker is spawned as the engine spawns it: requests on fd 3, answers on fd 4, both real pipes (FIFOs here,
// opened by `sh -c 'exec bun worker.ts 3<req 4>ans'`). The client is fully synchronous (one write, blocking
// reads until the answer line), so the measured time is the worker's share plus two pipe hops.
//
// --same-cpu runs the client and the worker on CPU 0 (taskset): on a VM, waking a process on another idle vCPU
// costs tens of µs per hop, which otherwise dominates the small round trips; pinned, `ping` is the channel's
// floor and the difference to it is the worker's own time.

import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";

const args = process.argv.slice(2);
if (args.includes("--same-cpu") && !process.env.SPACES_BENCH_PINNED) {
  const child = Bun.spawnSync(["taskset", "-c", "0", process.execPath, import.meta.path, ...args], {
    env: { ...process.env, SPACES_BENCH_PINNED: "1" },
    stdio: ["inherit", "inherit", "inherit"],
  });
  process.exit(child.exitCode ?? 1);
}
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 10_000);
const WORKER = nodePath.resolve(import.meta.dir, "../../Sources/SpacesEngine/Resources/worker.ts");

const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "spaces-bench-"));
const workspace = nodePath.join(dir, "ws");
fs.mkdirSync(workspace);
const reqPath = nodePath.join(dir, "req");
const ansPath = nodePath.join(dir, "ans");
Bun.spawnSync(["mkfifo", reqPath, ansPath]);

const worker = Bun.spawn(["/bin/sh", "-c", 'exec "$0" "$1" 3<"$2" 4>"$3"', process.execPath, WORKER, reqPath, ansPath], {
  env: { SPACES_WORKSPACE: workspace, TMPDIR: dir, PATH: process.env.PATH ?? "/usr/bin:/bin" },
  stdio: ["ignore", "inherit", "inherit"],
});
const reqFd = fs.openSync(reqPath, "w");
const ansFd = fs.openSync(ansPath, "r");

const readBuf = Buffer.allocUnsafe(1 << 20);
let carry = "";
function readLine(): string {
  for (;;) {
    const nl = carry.indexOf("\n");
    if (nl !== -1) {
      const line = carry.slice(0, nl);
      carry = carry.slice(nl + 1);
      return line;
    }
    const n = fs.readSync(ansFd, readBuf, 0, readBuf.length, null);
    if (n === 0) throw new Error("worker closed fd 4");
    carry += readBuf.toString("utf8", 0, n);
  }
}

function send(line: string): void {
  const buf = Buffer.from(line + "\n");
  let off = 0;
  while (off < buf.length) off += fs.writeSync(reqFd, buf, off);
}

/** Sends one request and waits for its answer; returns the round trip in µs. */
function roundTrip(id: number, line: string): number {
  const t0 = Bun.nanoseconds();
  send(line);
  for (;;) {
    const answer = readLine();
    if (answer.startsWith(`{"id":${id},"ok":`)) {
      const us = (Bun.nanoseconds() - t0) / 1000;
      if (!answer.startsWith(`{"id":${id},"ok":true`)) throw new Error(`request ${id} failed: ${answer}`);
      return us;
    }
  }
}

function stats(name: string, samples: number[]): void {
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))].toFixed(1);
  console.log(`${name.padEnd(34)} n=${samples.length}  median ${at(0.5)} µs  p90 ${at(0.9)} µs  p99 ${at(0.99)} µs`);
}

console.log(`ready: ${readLine()}${process.env.SPACES_BENCH_PINNED ? " (client and worker on CPU 0)" : ""}`);
const content = "x".repeat(1023) + "\n";
let id = 0;

for (let i = 0; i < 500; i++) roundTrip(++id, JSON.stringify({ id, op: "ping" }));
const ping: number[] = [];
for (let i = 0; i < N; i++) ping.push(roundTrip(++id, JSON.stringify({ id, op: "ping" })));
stats("ping", ping);

for (let i = 0; i < 500; i++) {
  ++id;
  roundTrip(id, JSON.stringify({ id, op: "file.write", path: `bench/f${i % 16}.txt`, content }));
}
const writes: number[] = [];
for (let i = 0; i < N; i++) {
  ++id;
  writes.push(roundTrip(id, JSON.stringify({ id, op: "file.write", path: `bench/f${i % 16}.txt`, content })));
}
stats("file.write 1 KiB", writes);

const reads: number[] = [];
for (let i = 0; i < N; i++) {
  ++id;
  reads.push(roundTrip(id, JSON.stringify({ id, op: "file.read", path: `bench/f${i % 16}.txt`, maxBytes: 65536 })));
}
stats("file.read 1 KiB", reads);

const runs: number[] = [];
const run = (id: number) =>
  JSON.stringify({ id, op: "command.run", argv: ["/bin/true"], timeoutMs: 10_000, outputBytes: 65536 });
for (let i = 0; i < 200; i++) roundTrip(++id, run(id));
for (let i = 0; i < N; i++) {
  ++id;
  runs.push(roundTrip(id, run(id)));
}
stats("command.run /bin/true", runs);

// For comparison: what starting /bin/true costs this machine at all, without the worker.
const floor: number[] = [];
for (let i = 0; i < Math.min(N, 2000); i++) {
  const t0 = Bun.nanoseconds();
  Bun.spawnSync(["/bin/true"], { stdio: ["ignore", "ignore", "ignore"] });
  floor.push((Bun.nanoseconds() - t0) / 1000);
}
stats("(baseline: Bun.spawnSync /bin/true)", floor);

fs.closeSync(reqFd);
await worker.exited;
fs.rmSync(dir, { recursive: true, force: true });
