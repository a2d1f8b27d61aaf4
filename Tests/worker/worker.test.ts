// Tests of the worker (Sources/SpacesEngine/Resources/worker.ts) against docs/WORKER.md. Run: bun test Tests/worker
//
// The worker is spawned as the engine spawns it: requests on fd 3 and answers on fd 4, both real pipes (FIFOs,
// opened by `sh -c 'exec bun worker.ts 3<req 4>ans'`), with SPACES_WORKSPACE pointing at a temporary directory.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";

import { copyEntry, killAllProcesses, removeEntry } from "../../Sources/SpacesEngine/Resources/worker.ts";

/** SPACES_TEST_WORKER runs these tests against another copy of the worker (e.g. an older one, to see a test fail). */
const WORKER =
  process.env.SPACES_TEST_WORKER ?? nodePath.resolve(import.meta.dir, "../../Sources/SpacesEngine/Resources/worker.ts");

interface Answer {
  id: number | null;
  ok: boolean;
  result?: any;
  error?: { code: string; message: string; hint: string };
  /** stream chunks received for this id before the answer */
  chunks: { stream: string; data: string }[];
}

class WorkerProcess {
  readonly proc: ReturnType<typeof Bun.spawn>;
  reqFd: number;
  readonly ansFd: number;
  readonly ready: Promise<any>;
  private waiting = new Map<number | null, (a: Answer) => void>();
  private chunks = new Map<number, { stream: string; data: string }[]>();
  /** Capability calls forwarded by the worker (`{id, call, capability, method, params}`). */
  onCall: (call: any) => void = () => {};
  /** answers nobody waited for (e.g. id null) */
  readonly unclaimed: Answer[] = [];
  private nextId = 1;
  readonly exited: Promise<number>;
  readonly stderr: Promise<string>;

  constructor(
    readonly workspace: string,
    readonly tmp: string,
    extraEnv: Record<string, string> = {},
  ) {
    const req = nodePath.join(tmp, `req-${process.hrtime.bigint()}`);
    const ans = nodePath.join(tmp, `ans-${process.hrtime.bigint()}`);
    const mk = Bun.spawnSync(["mkfifo", req, ans]);
    if (mk.exitCode !== 0) throw new Error("mkfifo failed");
    this.proc = Bun.spawn(["/bin/sh", "-c", 'exec "$0" "$1" 3<"$2" 4>"$3"', process.execPath, WORKER, req, ans], {
      env: { SPACES_WORKSPACE: workspace, TMPDIR: tmp, PATH: process.env.PATH ?? "/usr/bin:/bin", ...extraEnv },
      stdio: ["ignore", "inherit", "pipe"],
    });
    this.stderr = new Response(this.proc.stderr as ReadableStream).text();
    this.exited = this.proc.exited;
    // Same order as the shell's redirections: the opens pair up without deadlock.
    this.reqFd = fs.openSync(req, "w");
    this.ansFd = fs.openSync(ans, "r");
    let readyResolve!: (v: any) => void;
    this.ready = new Promise((r) => (readyResolve = r));
    this.pump(readyResolve);
  }

  private async pump(readyResolve: (v: any) => void): Promise<void> {
    let carry = "";
    let first = true;
    const decoder = new TextDecoder();
    for await (const chunk of Bun.file(this.ansFd).stream()) {
      carry += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = carry.indexOf("\n")) !== -1) {
        const line = carry.slice(0, nl);
        carry = carry.slice(nl + 1);
        const msg = JSON.parse(line);
        if (first) {
          first = false;
          readyResolve(msg);
          continue;
        }
        if ("call" in msg) {
          this.onCall(msg);
          continue;
        }
        if ("stream" in msg) {
          let list = this.chunks.get(msg.id);
          if (!list) this.chunks.set(msg.id, (list = []));
          list.push({ stream: msg.stream, data: msg.data });
          continue;
        }
        const answer: Answer = { ...msg, chunks: this.chunks.get(msg.id) ?? [] };
        this.chunks.delete(msg.id);
        const w = this.waiting.get(msg.id);
        if (w) {
          this.waiting.delete(msg.id);
          w(answer);
        } else this.unclaimed.push(answer);
      }
    }
  }

  id(): number {
    return this.nextId++;
  }

  /** Writes raw bytes to fd 3 (asynchronously, so that answers keep flowing while a long line is written). */
  async writeRaw(data: string | Uint8Array): Promise<void> {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) {
      off += await new Promise<number>((resolve, reject) =>
        fs.write(this.reqFd, buf, off, buf.length - off, null, (err, n) => (err ? reject(err) : resolve(n))),
      );
    }
  }

  wait(id: number | null): Promise<Answer> {
    return new Promise((resolve) => this.waiting.set(id, resolve));
  }

  async request(op: string, fields: Record<string, unknown> = {}, id = this.id()): Promise<Answer> {
    const answer = this.wait(id);
    await this.writeRaw(JSON.stringify({ id, op, ...fields }) + "\n");
    return answer;
  }

  /** Sends a request and expects ok:true; returns the result. */
  async ok(op: string, fields: Record<string, unknown> = {}): Promise<any> {
    const a = await this.request(op, fields);
    if (!a.ok) throw new Error(`${op} failed: ${JSON.stringify(a.error)}`);
    return a.result;
  }

  /** Sends a request and expects ok:false; returns the error. */
  async fail(op: string, fields: Record<string, unknown> = {}): Promise<{ code: string; message: string; hint: string }> {
    const a = await this.request(op, fields);
    if (a.ok) throw new Error(`${op} unexpectedly succeeded: ${JSON.stringify(a.result)}`);
    expect(typeof a.error!.message).toBe("string");
    expect(a.error!.hint.length).toBeGreaterThan(0);
    return a.error!;
  }

  closeRequests(): void {
    if (this.reqFd >= 0) {
      fs.closeSync(this.reqFd);
      this.reqFd = -1;
    }
  }
}

const tmpRoot = fs.realpathSync(fs.mkdtempSync(nodePath.join(os.tmpdir(), "spaces-worker-test-")));
const ws = nodePath.join(tmpRoot, "workspace");
fs.mkdirSync(ws);
let w: WorkerProcess;

const sha = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");
const at = (p: string) => nodePath.join(ws, p);
const run = (fields: Record<string, unknown>) => w.ok("command.run", { timeoutMs: 10_000, outputBytes: 1 << 20, ...fields });

/** A number for `sleep` that is unique to this test process: its processes can be found by their command line. */
const marker = (n: number) => `${1000 + n}.${process.pid}`;

/** Processes (not zombies) whose command line contains `marker` as a whole number. */
function processesWith(marker: string): number[] {
  const pattern = new RegExp(`(^|[^0-9.])${marker.replace(".", "\\.")}([^0-9]|$)`);
  const found: number[] = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, "utf8");
      if (pattern.test(cmdline)) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

async function until(check: () => boolean, ms = 2000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await Bun.sleep(10);
  }
  return check();
}

beforeAll(async () => {
  w = new WorkerProcess(ws, tmpRoot);
  await w.ready;
});

afterAll(async () => {
  w.closeRequests();
  await w.exited;
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

describe("channel", () => {
  test("ready line, then ping", async () => {
    const ready = await w.ready;
    expect(ready).toEqual({ ready: true, pid: w.proc.pid, bun: Bun.version });
    expect(await w.ok("ping")).toEqual({});
  });

  test("malformed requests answer INVALID_REQUEST and the worker keeps going", async () => {
    let answer = w.wait(null);
    await w.writeRaw("this is not json\n");
    let a = await answer;
    expect(a.ok).toBe(false);
    expect(a.error!.code).toBe("INVALID_REQUEST");

    answer = w.wait(null);
    await w.writeRaw("[1,2]\n");
    expect((await answer).error!.code).toBe("INVALID_REQUEST");

    answer = w.wait(null);
    await w.writeRaw('{"op":"ping"}\n');
    expect((await answer).error!.code).toBe("INVALID_REQUEST");

    a = await w.request("no.such.op");
    expect(a.ok).toBe(false);
    expect(a.error!.code).toBe("INVALID_REQUEST");
    expect(a.error!.message).toContain("no.such.op");

    a = await w.request("toString");
    expect(a.error!.code).toBe("INVALID_REQUEST");

    expect((await w.fail("file.write", { path: "x.txt" })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("file.write", { path: 5, content: "" })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("file.read", { path: "x.txt" })).code).toBe("INVALID_REQUEST"); // no maxBytes
    expect((await w.fail("file.write", { path: "x.txt", content: "", encoding: "latin1" })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("command.run", { timeoutMs: 1000, outputBytes: 10 })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("command.run", { argv: [], timeoutMs: 1000, outputBytes: 10 })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("command.run", { argv: ["/bin/true"], outputBytes: 10 })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("cancel", {})).code).toBe("INVALID_REQUEST");
    expect(await w.ok("ping")).toEqual({});
  });

  test("requests split across writes and several requests in one write", async () => {
    const a = w.id();
    const b = w.id();
    const c = w.id();
    const answers = [w.wait(a), w.wait(b), w.wait(c)];
    const text = [a, b, c].map((id) => JSON.stringify({ id, op: "ping" }) + "\n").join("");
    await w.writeRaw(text.slice(0, 5));
    await Bun.sleep(20);
    await w.writeRaw(text.slice(5, 40));
    await Bun.sleep(20);
    await w.writeRaw(text.slice(40));
    for (const p of answers) expect((await p).ok).toBe(true);
  });
});

describe("paths", () => {
  beforeAll(() => {
    fs.mkdirSync(at("paths/dir"), { recursive: true });
    fs.writeFileSync(at("paths/dir/in.txt"), "inside\n");
    fs.symlinkSync("/etc", at("paths/etc"));
    fs.symlinkSync("/etc/hostname", at("paths/hostname"));
    fs.symlinkSync(nodePath.join(tmpRoot, "nowhere-outside"), at("paths/dangling-out"));
    fs.symlinkSync("dir", at("paths/dirlink"));
    fs.symlinkSync("dir/in.txt", at("paths/filelink"));
  });

  test("result paths are normalised and workspace-relative", async () => {
    const r = await w.ok("file.write", { path: "./paths/dir/../dir//norm.txt", content: "n" });
    expect(r.path).toBe("paths/dir/norm.txt");
    const abs = await w.ok("file.read", { path: at("paths/dir/norm.txt"), maxBytes: 100 });
    expect(abs.path).toBe("paths/dir/norm.txt");
    expect(abs.content).toBe("n");
    const root = await w.ok("file.list", { path: ws, maxEntries: 1 });
    expect(root.path).toBe(".");
  });

  test("`..` and absolute paths outside the root fail with OUTSIDE_WORKSPACE", async () => {
    expect((await w.fail("file.read", { path: "../secret", maxBytes: 10 })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("file.write", { path: "paths/../../x.txt", content: "x" })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("file.read", { path: "/etc/passwd", maxBytes: 10 })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("file.list", { path: "/", maxEntries: 10 })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("file.write", { path: ws + "-sibling/x", content: "x" })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("command.run", { argv: ["pwd"], cwd: "..", timeoutMs: 1000, outputBytes: 10 })).code).toBe(
      "OUTSIDE_WORKSPACE",
    );
    expect(fs.existsSync(nodePath.join(tmpRoot, "x.txt"))).toBe(false);
  });

  test("symlinks leading outside are refused, for reading and writing", async () => {
    expect((await w.fail("file.read", { path: "paths/etc/hostname", maxBytes: 100 })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("file.read", { path: "paths/hostname", maxBytes: 100 })).code).toBe("OUTSIDE_WORKSPACE");
    expect((await w.fail("file.write", { path: "paths/etc/spaces-test.txt", content: "x" })).code).toBe(
      "OUTSIDE_WORKSPACE",
    );
    expect((await w.fail("file.write", { path: "paths/etc/new/dir/file.txt", content: "x" })).code).toBe(
      "OUTSIDE_WORKSPACE",
    );
    expect((await w.fail("file.list", { path: "paths/etc", maxEntries: 10 })).code).toBe("OUTSIDE_WORKSPACE");
    // a dangling symlink whose target is outside: writing through it would create the target
    expect((await w.fail("file.write", { path: "paths/dangling-out", content: "x" })).code).toBe("OUTSIDE_WORKSPACE");
    expect(fs.existsSync(nodePath.join(tmpRoot, "nowhere-outside"))).toBe(false);
    expect((await w.fail("command.run", { argv: ["pwd"], cwd: "paths/etc", timeoutMs: 1000, outputBytes: 10 })).code).toBe(
      "OUTSIDE_WORKSPACE",
    );
  });

  test("symlinks inside the workspace are followed", async () => {
    expect((await w.ok("file.read", { path: "paths/filelink", maxBytes: 100 })).content).toBe("inside\n");
    expect((await w.ok("file.read", { path: "paths/dirlink/in.txt", maxBytes: 100 })).content).toBe("inside\n");
    await w.ok("file.write", { path: "paths/dirlink/new.txt", content: "via link" });
    expect(fs.readFileSync(at("paths/dir/new.txt"), "utf8")).toBe("via link");
  });

  test("root rules: listed, but not deleted, moved or written", async () => {
    expect((await w.ok("file.list", { maxEntries: 1000 })).path).toBe(".");
    expect((await w.fail("file.delete", { path: ".", recursive: true })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.delete", { path: ws, recursive: true })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.move", { from: ".", to: "moved-root" })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.write", { path: ".", content: "x" })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.write", { path: "paths/..", content: "x" })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.read", { path: "", maxBytes: 1 })).code).toBe("INVALID_PATH");
    expect(fs.existsSync(ws)).toBe(true);
  });
});

describe("file.write and file.read", () => {
  test("utf8 write creates parents, answers bytes and sha256", async () => {
    const content = "héllo wörld\n";
    const r = await w.ok("file.write", { path: "rw/a/b/c.txt", content });
    expect(r).toEqual({ path: "rw/a/b/c.txt", bytes: Buffer.byteLength(content), sha256: sha(content) });
    expect(fs.readFileSync(at("rw/a/b/c.txt"), "utf8")).toBe(content);
    const read = await w.ok("file.read", { path: "rw/a/b/c.txt", maxBytes: 1000 });
    expect(read).toEqual({
      path: "rw/a/b/c.txt",
      content,
      encoding: "utf8",
      bytes: Buffer.byteLength(content),
      size: Buffer.byteLength(content),
      truncated: false,
    });
  });

  test("mode", async () => {
    await w.ok("file.write", { path: "rw/script.sh", content: "#!/bin/sh\necho hi\n", mode: 0o755 });
    expect(fs.statSync(at("rw/script.sh")).mode & 0o777).toBe(0o755);
    await w.ok("file.write", { path: "rw/script.sh", content: "#!/bin/sh\n", mode: 0o600 });
    expect(fs.statSync(at("rw/script.sh")).mode & 0o777).toBe(0o600);
  });

  test("base64 round trip of all 256 byte values", async () => {
    const bytes = new Uint8Array(512);
    for (let i = 0; i < 512; i++) bytes[i] = (i * 7 + 3) & 0xff;
    for (let i = 0; i < 256; i++) bytes[i] = i;
    const b64 = Buffer.from(bytes).toString("base64");
    const r = await w.ok("file.write", { path: "rw/bin.dat", content: b64, encoding: "base64" });
    expect(r.bytes).toBe(512);
    expect(r.sha256).toBe(sha(bytes));
    expect(new Uint8Array(fs.readFileSync(at("rw/bin.dat")))).toEqual(bytes);
    const read = await w.ok("file.read", { path: "rw/bin.dat", encoding: "base64", maxBytes: 4096 });
    expect(read.encoding).toBe("base64");
    expect(read.content).toBe(b64);
    expect(read.bytes).toBe(512);
    const part = await w.ok("file.read", { path: "rw/bin.dat", encoding: "base64", offset: 250, length: 10, maxBytes: 4096 });
    expect(new Uint8Array(Buffer.from(part.content, "base64"))).toEqual(bytes.subarray(250, 260));
  });

  test("utf8 read of non-UTF-8 fails with NOT_UTF8", async () => {
    fs.writeFileSync(at("rw/latin1.txt"), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    const e = await w.fail("file.read", { path: "rw/latin1.txt", maxBytes: 100 });
    expect(e.code).toBe("NOT_UTF8");
    expect(e.hint).toContain("base64");
    expect((await w.ok("file.read", { path: "rw/latin1.txt", encoding: "base64", maxBytes: 100 })).bytes).toBe(5);
  });

  test("offset, length and maxBytes", async () => {
    const content = "0123456789abcdefghij";
    fs.writeFileSync(at("rw/range.txt"), content);
    const read = (f: object) => w.ok("file.read", { path: "rw/range.txt", ...f });
    expect(await read({ offset: 5, length: 4, maxBytes: 100 })).toMatchObject({
      content: "5678",
      bytes: 4,
      size: 20,
      truncated: false,
    });
    expect(await read({ maxBytes: 8 })).toMatchObject({ content: "01234567", bytes: 8, size: 20, truncated: true });
    expect(await read({ offset: 10, length: 8, maxBytes: 3 })).toMatchObject({ content: "abc", bytes: 3, truncated: true });
    expect(await read({ offset: 15, maxBytes: 100 })).toMatchObject({ content: "fghij", bytes: 5, truncated: false });
    expect(await read({ offset: 15, length: 100, maxBytes: 100 })).toMatchObject({ content: "fghij", truncated: false });
    expect(await read({ offset: 50, maxBytes: 100 })).toMatchObject({ content: "", bytes: 0, size: 20, truncated: false });
    expect(await read({ maxBytes: 0 })).toMatchObject({ content: "", bytes: 0, truncated: true });
  });

  test("a utf8 read cut by maxBytes never splits a character", async () => {
    fs.writeFileSync(at("rw/multi.txt"), "aé€😀z"); // 1 + 2 + 3 + 4 + 1 bytes
    const read = (maxBytes: number) => w.ok("file.read", { path: "rw/multi.txt", maxBytes });
    expect(await read(2)).toMatchObject({ content: "a", bytes: 1, truncated: true });
    expect(await read(3)).toMatchObject({ content: "aé", bytes: 3, truncated: true });
    expect(await read(8)).toMatchObject({ content: "aé€", bytes: 6, truncated: true });
    expect(await read(10)).toMatchObject({ content: "aé€😀", bytes: 10, truncated: true });
    expect(await read(11)).toMatchObject({ content: "aé€😀z", bytes: 11, truncated: false });
    const ranged = await w.ok("file.read", { path: "rw/multi.txt", offset: 1, length: 3, maxBytes: 100 });
    expect(ranged).toMatchObject({ content: "é", bytes: 2, truncated: true });
    // paging with offset += bytes stays on character boundaries
    let offset = 0;
    let text = "";
    for (;;) {
      const page = await w.ok("file.read", { path: "rw/multi.txt", offset, maxBytes: 4 });
      text += page.content;
      offset += page.bytes;
      if (!page.truncated) break;
    }
    expect(text).toBe("aé€😀z");
  });

  test("expectSha256: match writes, mismatch and missing file fail with CONFLICT", async () => {
    await w.ok("file.write", { path: "rw/cas.txt", content: "v1" });
    const r = await w.ok("file.write", { path: "rw/cas.txt", content: "v2", expectSha256: sha("v1") });
    expect(r.sha256).toBe(sha("v2"));
    const e = await w.fail("file.write", { path: "rw/cas.txt", content: "v3", expectSha256: sha("v1") });
    expect(e.code).toBe("CONFLICT");
    expect(fs.readFileSync(at("rw/cas.txt"), "utf8")).toBe("v2");
    const missing = await w.fail("file.write", { path: "rw/cas-missing.txt", content: "x", expectSha256: sha("") });
    expect(missing.code).toBe("CONFLICT");
    expect(fs.existsSync(at("rw/cas-missing.txt"))).toBe(false);
  });

  test("errors: ENOENT, EISDIR, ENOTDIR, EACCES", async () => {
    const noent = await w.fail("file.read", { path: "rw/nope.txt", maxBytes: 10 });
    expect(noent.code).toBe("ENOENT");
    expect(noent.message).toContain("rw/nope.txt");
    expect(noent.hint).toContain("file.list");
    fs.mkdirSync(at("rw/adir"), { recursive: true });
    expect((await w.fail("file.read", { path: "rw/adir", maxBytes: 10 })).code).toBe("EISDIR");
    expect((await w.fail("file.write", { path: "rw/adir", content: "x" })).code).toBe("EISDIR");
    fs.writeFileSync(at("rw/plain.txt"), "p");
    expect((await w.fail("file.write", { path: "rw/plain.txt/under.txt", content: "x" })).code).toBe("ENOTDIR");
    expect((await w.fail("file.read", { path: "rw/plain.txt/under.txt", maxBytes: 1 })).code).toBe("ENOTDIR");
    if (process.getuid?.() !== 0) {
      fs.writeFileSync(at("rw/locked.txt"), "l");
      fs.chmodSync(at("rw/locked.txt"), 0);
      expect((await w.fail("file.read", { path: "rw/locked.txt", maxBytes: 1 })).code).toBe("EACCES");
    }
  });

  test("a FIFO is refused instead of blocking the worker", async () => {
    Bun.spawnSync(["mkfifo", at("rw/fifo")]);
    expect((await w.fail("file.read", { path: "rw/fifo", maxBytes: 10 })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.write", { path: "rw/fifo", content: "x" })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.edit", { path: "rw/fifo", edits: [{ oldText: "a", newText: "b" }] })).code).toBe(
      "INVALID_PATH",
    );
    const append = await w.fail("command.run", { argv: ["true"], stdoutTo: "rw/fifo", timeoutMs: 1000, outputBytes: 1 });
    expect(append.code).toBe("INVALID_PATH");
  });

  test("a 10 MiB base64 write in one line, read back", async () => {
    const bytes = Buffer.allocUnsafe(10 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2654435761) >>> 0, i);
    const r = await w.ok("file.write", { path: "rw/big.bin", content: bytes.toString("base64"), encoding: "base64" });
    expect(r.bytes).toBe(bytes.length);
    expect(r.sha256).toBe(sha(bytes));
    const read = await w.ok("file.read", { path: "rw/big.bin", encoding: "base64", maxBytes: 16 * 1024 * 1024 });
    expect(read.bytes).toBe(bytes.length);
    expect(read.truncated).toBe(false);
    expect(sha(Buffer.from(read.content, "base64"))).toBe(r.sha256);
  });
});

describe("file.edit", () => {
  test("edits apply in order; replaceAll; $ patterns are literal", async () => {
    fs.writeFileSync(at("edit.txt"), "alpha beta\ngamma beta\n");
    const r = await w.ok("file.edit", {
      path: "edit.txt",
      edits: [
        { oldText: "alpha", newText: "ALPHA" },
        { oldText: "beta", newText: "$&-$1", replaceAll: true },
        { oldText: "ALPHA $&", newText: "first" },
      ],
    });
    const expected = "first-$1\ngamma $&-$1\n";
    expect(fs.readFileSync(at("edit.txt"), "utf8")).toBe(expected);
    expect(r).toEqual({ path: "edit.txt", replacements: 4, sha256: sha(expected) });
  });

  test("a later edit that does not match leaves the file unchanged", async () => {
    fs.writeFileSync(at("atomic.txt"), "one two three\n");
    const e = await w.fail("file.edit", {
      path: "atomic.txt",
      edits: [
        { oldText: "one", newText: "1" },
        { oldText: "four", newText: "4" },
      ],
    });
    expect(e.code).toBe("EDIT_NO_MATCH");
    expect(e.message).toContain("edits[1]");
    expect(e.message).toContain("0 times");
    expect(fs.readFileSync(at("atomic.txt"), "utf8")).toBe("one two three\n");
  });

  test("ambiguous edit names the edit and the count", async () => {
    fs.writeFileSync(at("ambiguous.txt"), "x = 1\nx = 1\nx = 1\n");
    const e = await w.fail("file.edit", { path: "ambiguous.txt", edits: [{ oldText: "x = 1", newText: "x = 2" }] });
    expect(e.code).toBe("EDIT_AMBIGUOUS");
    expect(e.message).toContain("edits[0]");
    expect(e.message).toContain("3 times");
    expect(e.hint).toContain("replaceAll");
    expect(fs.readFileSync(at("ambiguous.txt"), "utf8")).toBe("x = 1\nx = 1\nx = 1\n");
    const r = await w.ok("file.edit", {
      path: "ambiguous.txt",
      edits: [{ oldText: "x = 1", newText: "x = 2", replaceAll: true }],
    });
    expect(r.replacements).toBe(3);
  });

  test("errors: ENOENT, NOT_UTF8, INVALID_REQUEST", async () => {
    expect((await w.fail("file.edit", { path: "nope.txt", edits: [{ oldText: "a", newText: "b" }] })).code).toBe("ENOENT");
    fs.writeFileSync(at("bin-edit"), Buffer.from([0xff, 0xfe, 0x00]));
    expect((await w.fail("file.edit", { path: "bin-edit", edits: [{ oldText: "a", newText: "b" }] })).code).toBe("NOT_UTF8");
    expect((await w.fail("file.edit", { path: "atomic.txt", edits: [] })).code).toBe("INVALID_REQUEST");
    expect((await w.fail("file.edit", { path: "atomic.txt", edits: [{ oldText: "", newText: "b" }] })).code).toBe(
      "INVALID_REQUEST",
    );
  });
});

describe("file.delete, file.list, file.move", () => {
  test("delete a file, an empty directory, a tree", async () => {
    fs.mkdirSync(at("del/tree/sub"), { recursive: true });
    fs.writeFileSync(at("del/tree/sub/f.txt"), "f");
    fs.writeFileSync(at("del/file.txt"), "f");
    fs.mkdirSync(at("del/empty"));
    expect(await w.ok("file.delete", { path: "del/file.txt" })).toEqual({ path: "del/file.txt" });
    expect(fs.existsSync(at("del/file.txt"))).toBe(false);
    await w.ok("file.delete", { path: "del/empty" });
    expect(fs.existsSync(at("del/empty"))).toBe(false);
    const e = await w.fail("file.delete", { path: "del/tree" });
    expect(e.code).toBe("ENOTEMPTY");
    expect(e.hint).toContain("recursive:true");
    await w.ok("file.delete", { path: "del/tree", recursive: true });
    expect(fs.existsSync(at("del/tree"))).toBe(false);
    expect((await w.fail("file.delete", { path: "del/tree" })).code).toBe("ENOENT");
  });

  test("delete a symlink removes the link, not its target", async () => {
    fs.mkdirSync(at("del2/target"), { recursive: true });
    fs.writeFileSync(at("del2/target/keep.txt"), "k");
    fs.symlinkSync("target", at("del2/link"));
    await w.ok("file.delete", { path: "del2/link", recursive: true });
    expect(fs.existsSync(at("del2/link"))).toBe(false);
    expect(fs.readFileSync(at("del2/target/keep.txt"), "utf8")).toBe("k");
  });

  test("list: sorted, types, sizes, recursive, maxEntries", async () => {
    fs.mkdirSync(at("ls/b/c"), { recursive: true });
    fs.mkdirSync(at("ls/a"), { recursive: true });
    fs.writeFileSync(at("ls/z.txt"), "12345");
    fs.writeFileSync(at("ls/a/1.txt"), "1");
    fs.writeFileSync(at("ls/b/c/deep.txt"), "deep");
    fs.writeFileSync(at("ls/b.txt"), "");
    fs.symlinkSync("b", at("ls/link"));
    const flat = await w.ok("file.list", { path: "ls", maxEntries: 100 });
    expect(flat).toEqual({
      path: "ls",
      entries: [
        { path: "ls/a", type: "directory", size: 0 },
        { path: "ls/b", type: "directory", size: 0 },
        { path: "ls/b.txt", type: "file", size: 0 },
        { path: "ls/link", type: "symlink", size: 1 },
        { path: "ls/z.txt", type: "file", size: 5 },
      ],
      truncated: false,
    });
    const deep = await w.ok("file.list", { path: "ls", recursive: true, maxEntries: 100 });
    expect(deep.entries.map((e: any) => e.path)).toEqual([
      "ls/a",
      "ls/a/1.txt",
      "ls/b",
      "ls/b/c",
      "ls/b/c/deep.txt",
      "ls/b.txt",
      "ls/link", // not followed
      "ls/z.txt",
    ]);
    expect(deep.truncated).toBe(false);
    const cut = await w.ok("file.list", { path: "ls", recursive: true, maxEntries: 4 });
    expect(cut.entries.map((e: any) => e.path)).toEqual(["ls/a", "ls/a/1.txt", "ls/b", "ls/b/c"]);
    expect(cut.truncated).toBe(true);
    const exact = await w.ok("file.list", { path: "ls", recursive: true, maxEntries: 8 });
    expect(exact.truncated).toBe(false);
    const sub = await w.ok("file.list", { path: "ls/b/c", maxEntries: 100 });
    expect(sub.entries).toEqual([{ path: "ls/b/c/deep.txt", type: "file", size: 4 }]);
  });

  test("list errors: ENOENT, ENOTDIR", async () => {
    expect((await w.fail("file.list", { path: "ls/none", maxEntries: 10 })).code).toBe("ENOENT");
    expect((await w.fail("file.list", { path: "ls/z.txt", maxEntries: 10 })).code).toBe("ENOTDIR");
  });

  test("move creates parents; an existing destination fails with EEXIST", async () => {
    fs.mkdirSync(at("mv"), { recursive: true });
    fs.writeFileSync(at("mv/a.txt"), "a");
    fs.writeFileSync(at("mv/b.txt"), "b");
    expect(await w.ok("file.move", { from: "mv/a.txt", to: "mv/x/y/a.txt" })).toEqual({
      from: "mv/a.txt",
      to: "mv/x/y/a.txt",
    });
    expect(fs.readFileSync(at("mv/x/y/a.txt"), "utf8")).toBe("a");
    const e = await w.fail("file.move", { from: "mv/x/y/a.txt", to: "mv/b.txt" });
    expect(e.code).toBe("EEXIST");
    expect(fs.readFileSync(at("mv/b.txt"), "utf8")).toBe("b");
    expect(fs.existsSync(at("mv/x/y/a.txt"))).toBe(true);
    expect((await w.fail("file.move", { from: "mv/none", to: "mv/c.txt" })).code).toBe("ENOENT");
    expect((await w.fail("file.move", { from: "mv/x", to: "mv/x/y/inside" })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.move", { from: "mv/b.txt", to: "." })).code).toBe("INVALID_PATH");
    expect((await w.fail("file.move", { from: "mv/b.txt", to: "../b.txt" })).code).toBe("OUTSIDE_WORKSPACE");
    await w.ok("file.move", { from: "mv/x", to: "mv/dir-moved" });
    expect(fs.readFileSync(at("mv/dir-moved/y/a.txt"), "utf8")).toBe("a");
  });
});

describe("command.run", () => {
  test("exit code, stdout and stderr, streamed before the answer", async () => {
    const a = await w.request("command.run", {
      command: "echo out; echo err >&2; exit 3",
      timeoutMs: 5000,
      outputBytes: 1000,
    });
    expect(a.ok).toBe(true);
    expect(a.result).toMatchObject({
      exitCode: 3,
      signal: null,
      timedOut: false,
      cancelled: false,
      stdout: "out\n",
      stderr: "err\n",
      stdoutBytes: 4,
      stderrBytes: 4,
      truncated: false,
    });
    expect(Number.isInteger(a.result.durationMs)).toBe(true);
    const streamed = (s: string) => a.chunks.filter((c) => c.stream === s).map((c) => c.data).join("");
    expect(streamed("stdout")).toBe("out\n");
    expect(streamed("stderr")).toBe("err\n");
  });

  test("argv runs directly (no shell)", async () => {
    const r = await run({ argv: ["printf", "%s|", "a b", "$HOME", "*"] });
    expect(r.stdout).toBe("a b|$HOME|*|");
    expect(r.exitCode).toBe(0);
  });

  test("signal", async () => {
    const r = await run({ command: "kill -KILL $$" });
    expect(r.exitCode).toBe(null);
    expect(r.signal).toBe("SIGKILL");
    const t = await run({ command: "kill -TERM $$" });
    expect(t.signal).toBe("SIGTERM");
  });

  test("stdin text; no stdin reads /dev/null", async () => {
    expect((await run({ argv: ["cat"], stdin: "from stdin\nü\n" })).stdout).toBe("from stdin\nü\n");
    expect((await run({ argv: ["wc", "-c"] })).stdout.trim()).toBe("0");
    expect((await run({ argv: ["readlink", "/proc/self/fd/0"] })).stdout).toBe("/dev/null\n");
  });

  test("environment: the base plus env; nothing else leaks", async () => {
    const r = await run({ argv: ["env"], env: { EXTRA: "x y", LANG: "C" } });
    const env = Object.fromEntries(
      r.stdout
        .trim()
        .split("\n")
        .map((l: string) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    expect(env).toMatchObject({
      PATH: "/opt/spaces/bin:/usr/local/bin:/usr/bin:/bin",
      HOME: "/tmp",
      TMPDIR: "/tmp",
      LANG: "C",
      EXTRA: "x y",
    });
    expect(env.SPACES_WORKSPACE).toBeUndefined();
  });

  test("cwd: the root by default, a workspace directory otherwise", async () => {
    fs.mkdirSync(at("cwd/sub"), { recursive: true });
    expect((await run({ argv: ["pwd"] })).stdout).toBe(ws + "\n");
    expect((await run({ argv: ["pwd"], cwd: "cwd/sub" })).stdout).toBe(at("cwd/sub") + "\n");
    expect((await w.fail("command.run", { argv: ["pwd"], cwd: "cwd/none", timeoutMs: 1000, outputBytes: 10 })).code).toBe(
      "ENOENT",
    );
  });

  test("a program that cannot be started is SPAWN_FAILED", async () => {
    const e = await w.fail("command.run", { argv: ["no-such-program-xyz"], timeoutMs: 1000, outputBytes: 10 });
    expect(e.code).toBe("SPAWN_FAILED");
    expect(e.message).toContain("no-such-program-xyz");
    fs.writeFileSync(at("noexec.sh"), "#!/bin/sh\n");
    fs.chmodSync(at("noexec.sh"), 0o644);
    // not executable (even root needs an x bit to exec)
    expect((await w.fail("command.run", { argv: ["./noexec.sh"], timeoutMs: 1000, outputBytes: 10 })).code).toBe(
      "SPAWN_FAILED",
    );
    expect(await w.ok("ping")).toEqual({});
  });

  test("output over the limit: every byte counted, outputBytes kept", async () => {
    const a = await w.request("command.run", {
      command: "head -c 3145728 /dev/zero | tr '\\0' a; echo tail >&2",
      timeoutMs: 10_000,
      outputBytes: 1048576,
    });
    const r = a.result;
    expect(r.stdoutBytes).toBe(3145728);
    expect(r.stdout.length).toBe(1048576);
    expect(r.truncated).toBe(true);
    expect(r.stderr).toBe("tail\n");
    const streamed = a.chunks.filter((c) => c.stream === "stdout").map((c) => c.data).join("");
    expect(streamed.length).toBe(1048576);
  });

  test("a multibyte character at the cut is dropped whole; split chunks decode; invalid bytes become U+FFFD", async () => {
    const cut = await run({ command: "printf 'a\\303\\251b'", outputBytes: 2 });
    expect(cut).toMatchObject({ stdout: "a", stdoutBytes: 4, truncated: true });
    const split = await run({ command: "printf '\\342\\202'; sleep 0.05; printf '\\254!'", outputBytes: 100 });
    expect(split).toMatchObject({ stdout: "€!", stdoutBytes: 4, truncated: false });
    const bad = await run({ command: "printf 'x\\377y\\342'", outputBytes: 100 });
    expect(bad.stdout).toBe("x\uFFFDy\uFFFD");
    expect(bad.stdoutBytes).toBe(4);
    // the bound also holds for the UTF-8 of the text: each replaced byte takes three
    const garbage = await w.request("command.run", {
      command: "head -c 3000 /dev/zero | tr '\\0' '\\377'",
      timeoutMs: 5000,
      outputBytes: 3000,
    });
    expect(garbage.result).toMatchObject({ stdout: "\uFFFD".repeat(1000), stdoutBytes: 3000, truncated: true });
    expect(garbage.chunks.map((c) => c.data).join("")).toBe("\uFFFD".repeat(1000));
    const exact = await run({ command: "printf 'abc'", outputBytes: 3 });
    expect(exact).toMatchObject({ stdout: "abc", stdoutBytes: 3, truncated: false });
    const none = await run({ command: "printf 'abc'", outputBytes: 0 });
    expect(none).toMatchObject({ stdout: "", stdoutBytes: 3, truncated: true });
  });

  test("stdoutTo and stderrTo receive the full streams, appended", async () => {
    fs.mkdirSync(at("logs"), { recursive: true });
    fs.writeFileSync(at("logs/out.log"), "before\n");
    const r = await run({
      command: "seq 1 1000; echo problem >&2",
      outputBytes: 10,
      stdoutTo: "logs/out.log",
      stderrTo: "logs/new/err.log",
    });
    expect(r.stdout.length).toBe(10);
    expect(r.truncated).toBe(true);
    const expected = Array.from({ length: 1000 }, (_, i) => `${i + 1}\n`).join("");
    expect(fs.readFileSync(at("logs/out.log"), "utf8")).toBe("before\n" + expected);
    expect(fs.readFileSync(at("logs/new/err.log"), "utf8")).toBe("problem\n");
    expect((await w.fail("command.run", { argv: ["true"], stdoutTo: "../x.log", timeoutMs: 1000, outputBytes: 1 })).code).toBe(
      "OUTSIDE_WORKSPACE",
    );
    expect((await w.fail("command.run", { argv: ["true"], stdoutTo: "logs", timeoutMs: 1000, outputBytes: 1 })).code).toBe(
      "EISDIR",
    );
  });

  test("timeout kills the whole process tree", async () => {
    const mark = marker(1);
    const t0 = Date.now();
    const r = await run({ command: `sleep ${mark} & sleep ${mark}; echo never`, timeoutMs: 300 });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r).toMatchObject({ timedOut: true, cancelled: false, exitCode: null, signal: "SIGKILL", stdout: "" });
    expect(r.durationMs).toBeGreaterThanOrEqual(300);
    expect(await until(() => processesWith(mark).length === 0)).toBe(true);
  });

  test("a process that left the group and holds the pipes does not keep the answer waiting after a timeout", async () => {
    const mark = marker(5);
    const t0 = Date.now();
    const r = await run({ command: `setsid sleep ${mark} & echo started`, timeoutMs: 300 });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r).toMatchObject({ timedOut: true, exitCode: 0, signal: null, stdout: "started\n" });
    for (const pid of processesWith(mark)) process.kill(pid, "SIGKILL");
  });

  test("cancel kills the group; the worker stays responsive meanwhile", async () => {
    const mark = marker(2);
    const id = w.id();
    const answer = w.request("command.run", { command: `sleep ${mark} & sleep ${mark}`, timeoutMs: 60_000, outputBytes: 10 }, id);
    expect(await until(() => processesWith(mark).length >= 2)).toBe(true); // the shell and its sleeps
    // other requests are answered while the command runs
    expect(await w.ok("ping")).toEqual({});
    expect((await w.ok("file.write", { path: "during.txt", content: "d" })).bytes).toBe(1);
    expect(await w.ok("cancel", { target: id })).toEqual({ cancelled: true });
    const a = await answer;
    expect(a.result).toMatchObject({ cancelled: true, timedOut: false, signal: "SIGKILL", exitCode: null });
    expect(await until(() => processesWith(mark).length === 0)).toBe(true);
    expect(await w.ok("cancel", { target: id })).toEqual({ cancelled: false });
    expect(await w.ok("cancel", { target: 999_999 })).toEqual({ cancelled: false });
  });

  test("concurrent commands: cancel one while another finishes", async () => {
    const slow = w.id();
    const slowAnswer = w.request("command.run", { argv: ["sleep", marker(3)], timeoutMs: 60_000, outputBytes: 10 }, slow);
    const fast = await run({ command: "echo fast" });
    expect(fast.stdout).toBe("fast\n");
    expect(await w.ok("cancel", { target: slow })).toEqual({ cancelled: true });
    expect((await slowAnswer).result.cancelled).toBe(true);
  });
});

describe("code.run", () => {
  test("source with args, cwd is the workspace, the temporary file is removed", async () => {
    const a = await w.request("code.run", {
      source: "const x: number = 42;\nconsole.log(JSON.stringify({ args: process.argv.slice(2), cwd: process.cwd(), x }));",
      args: ["one", "two words"],
      timeoutMs: 10_000,
      outputBytes: 10_000,
    });
    expect(a.ok).toBe(true);
    expect(a.result.exitCode).toBe(0);
    expect(JSON.parse(a.result.stdout)).toEqual({ args: ["one", "two words"], cwd: ws, x: 42 });
    const codeDir = nodePath.join(tmpRoot, ".spaces-code");
    expect(await until(() => !fs.existsSync(nodePath.join(codeDir, `${a.id}.ts`)))).toBe(true);
  });

  test("a thrown error: exit code 1, the stack on stderr", async () => {
    const r = await w.ok("code.run", {
      source: "function boom() { throw new Error('kaboom-7'); }\nboom();\n",
      timeoutMs: 10_000,
      outputBytes: 10_000,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("kaboom-7");
    expect(r.stderr).toContain("boom");
  });

  test("path runs a workspace file in place; stdin and env", async () => {
    fs.mkdirSync(at("code"), { recursive: true });
    fs.writeFileSync(
      at("code/prog.ts"),
      "const input = await Bun.stdin.text();\nconsole.log(input.toUpperCase() + process.env.GREETING + import.meta.dir);\n",
    );
    const r = await w.ok("code.run", {
      path: "code/prog.ts",
      stdin: "abc",
      env: { GREETING: "-hi-" },
      timeoutMs: 10_000,
      outputBytes: 10_000,
    });
    expect(r.stdout).toBe("ABC-hi-" + at("code") + "\n");
    expect((await w.fail("code.run", { path: "code/none.ts", timeoutMs: 1000, outputBytes: 10 })).code).toBe("ENOENT");
    expect((await w.fail("code.run", { path: "/etc/passwd", timeoutMs: 1000, outputBytes: 10 })).code).toBe(
      "OUTSIDE_WORKSPACE",
    );
    expect((await w.fail("code.run", { timeoutMs: 1000, outputBytes: 10 })).code).toBe("INVALID_REQUEST");
  });

  test("timeout of a program", async () => {
    const r = await w.ok("code.run", { source: "await Bun.sleep(100_000);", timeoutMs: 300, outputBytes: 10 });
    expect(r).toMatchObject({ timedOut: true, signal: "SIGKILL", exitCode: null });
  });
});

describe("end of requests", () => {
  test("EOF on fd 3: the worker kills its children and exits 0", async () => {
    const ws2 = nodePath.join(tmpRoot, "workspace-eof");
    fs.mkdirSync(ws2);
    const w2 = new WorkerProcess(ws2, tmpRoot);
    await w2.ready;
    const mark = marker(4);
    // a running command, and a finished one that left a background job holding no pipe
    w2.request("command.run", { command: `sleep ${mark} & sleep ${mark}`, timeoutMs: 60_000, outputBytes: 10 });
    const bg = await w2.request("command.run", {
      command: `sleep ${mark} >/dev/null 2>&1 & echo started`,
      timeoutMs: 60_000,
      outputBytes: 100,
    });
    expect(bg.result.stdout).toBe("started\n");
    expect(await until(() => processesWith(mark).length >= 3)).toBe(true);
    w2.closeRequests();
    expect(await w2.exited).toBe(0);
    expect(await until(() => processesWith(mark).length === 0)).toBe(true);
    expect(await w2.stderr).toBe("");
  });
});

describe("batch", () => {
  test("file operations run in order in one round trip, as if sent alone", async () => {
    const r = await w.ok("batch", {
      stopOnError: true,
      ops: [
        { op: "file.write", path: "batch/a.txt", content: "one" },
        { op: "file.edit", path: "batch/a.txt", edits: [{ oldText: "one", newText: "two" }] },
        { op: "file.read", path: "batch/a.txt", maxBytes: 100 },
      ],
    });
    expect(r.results.map((x: any) => x.ok)).toEqual([true, true, true]);
    expect(r.results[2].result.content).toBe("two");
    expect(r.results.every((x: any) => Number.isInteger(x.ms))).toBe(true);
  });

  test("stopOnError: the first failure ends the batch and later operations do not run", async () => {
    const r = await w.ok("batch", {
      stopOnError: true,
      ops: [
        { op: "file.read", path: "batch/missing.txt", maxBytes: 100 },
        { op: "file.write", path: "batch/after.txt", content: "x" },
      ],
    });
    expect(r.results.length).toBe(1);
    expect(r.results[0].error.code).toBe("ENOENT");
    expect(fs.existsSync(at("batch/after.txt"))).toBe(false);
  });

  test("without stopOnError every operation runs; commands cannot be batched", async () => {
    const r = await w.ok("batch", {
      stopOnError: false,
      ops: [
        { op: "file.read", path: "batch/missing.txt", maxBytes: 100 },
        { op: "command.run", argv: ["true"] },
        { op: "file.write", path: "batch/after.txt", content: "x" },
      ],
    });
    expect(r.results.map((x: any) => x.ok)).toEqual([false, false, true]);
    expect(r.results[1].error.code).toBe("INVALID_REQUEST");
    expect(fs.readFileSync(at("batch/after.txt"), "utf8")).toBe("x");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Races: a symlink swapped in while the worker works (docs/WORKER.md, "Races")

/** A child process that atomically exchanges two workspace entries (renameat2 RENAME_EXCHANGE) in a tight loop
 * until it is killed. Resolves once it is swapping. */
async function startSwapper(a: string, b: string): Promise<ReturnType<typeof Bun.spawn>> {
  const script = nodePath.join(tmpRoot, "swapper.ts");
  fs.writeFileSync(
    script,
    `import { dlopen, FFIType, ptr } from "bun:ffi";
import * as fs from "node:fs";
const libc = dlopen("libc.so.6", {
  renameat2: { args: [FFIType.i32, FFIType.cstring, FFIType.i32, FFIType.cstring, FFIType.u32], returns: FFIType.i32 },
});
const [a, b] = process.argv.slice(2).map((p) => Buffer.from(p + "\\0"));
const AT_FDCWD = -100, RENAME_EXCHANGE = 2;
if (libc.symbols.renameat2(AT_FDCWD, ptr(a), AT_FDCWD, ptr(b), RENAME_EXCHANGE) !== 0) process.exit(3);
fs.writeSync(1, "swapping\\n");
for (;;) libc.symbols.renameat2(AT_FDCWD, ptr(a), AT_FDCWD, ptr(b), RENAME_EXCHANGE);
`,
  );
  const proc = Bun.spawn([process.execPath, script, a, b], { stdio: ["ignore", "pipe", "inherit"] });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  reader.releaseLock();
  if (new TextDecoder().decode(first.value) !== "swapping\n") throw new Error("the swapper did not start");
  return proc;
}

async function stopSwapper(proc: ReturnType<typeof Bun.spawn>): Promise<void> {
  proc.kill("SIGKILL");
  await proc.exited;
}

/** Codes a racing operation may fail with; anything else (INTERNAL above all) is a bug. */
const RACE_CODES = new Set(["OUTSIDE_WORKSPACE", "INVALID_PATH", "ENOENT", "ENOTDIR", "EDIT_NO_MATCH", "CONFLICT"]);

describe("races: a symlink swapped in during file operations never leads outside", () => {
  const CANARY = "CANARY outside: inside content\n";

  test("the final component: 500 reads and 500 writes and edits through a file swapped with a symlink out", async () => {
    const outside = nodePath.join(tmpRoot, "outside-final");
    fs.mkdirSync(outside);
    fs.writeFileSync(nodePath.join(outside, "canary.txt"), CANARY);
    fs.mkdirSync(at("race1/a"), { recursive: true });
    fs.writeFileSync(at("race1/a/link"), "inside content\n");
    fs.symlinkSync(nodePath.join(outside, "canary.txt"), at("race1/a/other"));
    const swapper = await startSwapper(at("race1/a/link"), at("race1/a/other"));
    const codes = new Map<string, number>();
    const count = (code: string) => codes.set(code, (codes.get(code) ?? 0) + 1);
    let readsInside = 0;
    try {
      // 500 reads, more (up to 5000) until both outcomes were seen: on one CPU the swapper runs in slices
      for (let i = 0; i < 500 || ((readsInside === 0 || !codes.has("OUTSIDE_WORKSPACE")) && i < 5000); i++) {
        const a = await w.request("file.read", { path: "race1/a/link", maxBytes: 1000 });
        if (a.ok) {
          expect(a.result.content).not.toContain("CANARY");
          readsInside++;
        } else count(a.error!.code);
      }
      for (let i = 0; i < 500; i++) {
        const a =
          i % 2 === 0
            ? await w.request("file.write", { path: "race1/a/link", content: `inside content ${i}\n` })
            : await w.request("file.edit", { path: "race1/a/link", edits: [{ oldText: "inside", newText: "edited" }] });
        if (!a.ok) count(a.error!.code);
      }
    } finally {
      await stopSwapper(swapper);
    }
    expect(fs.readFileSync(nodePath.join(outside, "canary.txt"), "utf8")).toBe(CANARY);
    expect(fs.readdirSync(outside)).toEqual(["canary.txt"]);
    expect(readsInside).toBeGreaterThan(0);
    expect(codes.get("OUTSIDE_WORKSPACE") ?? 0).toBeGreaterThan(0); // the race did happen
    if (process.env.SPACES_TEST_VERBOSE) console.log(readsInside, codes);
    for (const code of codes.keys()) expect(RACE_CODES.has(code)).toBe(true);
  });

  test("an ancestor: reads, writes, edits, creations, lists, deletes and moves under a directory swapped with a symlink out", async () => {
    const outside = nodePath.join(tmpRoot, "outside-dir");
    fs.mkdirSync(outside);
    fs.writeFileSync(nodePath.join(outside, "f"), CANARY);
    fs.writeFileSync(nodePath.join(outside, "only-outside"), CANARY);
    fs.writeFileSync(nodePath.join(outside, "victim"), CANARY);
    fs.mkdirSync(at("race2/b/dir"), { recursive: true });
    fs.writeFileSync(at("race2/b/dir/f"), "inside content\n");
    fs.symlinkSync(outside, at("race2/b/other"));
    const swapper = await startSwapper(at("race2/b/dir"), at("race2/b/other"));
    const codes = new Map<string, number>();
    const count = (code: string) => codes.set(code, (codes.get(code) ?? 0) + 1);
    let readsInside = 0;
    try {
      // 500 reads, more (up to 5000) until both outcomes were seen: on one CPU the swapper runs in slices
      for (let i = 0; i < 500 || ((readsInside === 0 || !codes.has("OUTSIDE_WORKSPACE")) && i < 5000); i++) {
        const a = await w.request("file.read", { path: "race2/b/dir/f", maxBytes: 1000 });
        if (a.ok) {
          expect(a.result.content).not.toContain("CANARY");
          readsInside++;
        } else count(a.error!.code);
      }
      for (let i = 0; i < 500; i++) {
        let a: Answer;
        switch (i % 5) {
          case 0:
            a = await w.request("file.write", { path: "race2/b/dir/f", content: `inside content ${i}\n` });
            break;
          case 1:
            a = await w.request("file.edit", { path: "race2/b/dir/f", edits: [{ oldText: "inside", newText: "edited" }] });
            break;
          case 2:
            a = await w.request("file.write", { path: `race2/b/dir/new/deep/${i}.txt`, content: "x" });
            break;
          case 3:
            a = await w.request("file.write", { path: "race2/b/dir/f", content: "x", expectSha256: sha(CANARY) });
            expect(a.ok).toBe(false); // only the canary has that content
            break;
          default:
            a = await w.request("file.list", { path: "race2/b/dir", recursive: true, maxEntries: 1000 });
            if (a.ok) expect(a.result.entries.map((e: any) => e.path)).not.toContain("race2/b/dir/only-outside");
        }
        if (!a.ok) count(a.error!.code);
        // the outside victim must never be deleted or moved in
        const del = await w.request("file.delete", { path: "race2/b/dir/victim" });
        expect(del.ok).toBe(false);
        const mv = await w.request("file.move", { from: "race2/b/dir/victim", to: `race2/stolen-${i}` });
        expect(mv.ok).toBe(false);
        count(del.error!.code);
        count(mv.error!.code);
      }
    } finally {
      await stopSwapper(swapper);
    }
    expect(fs.readdirSync(outside).sort()).toEqual(["f", "only-outside", "victim"]);
    for (const name of ["f", "only-outside", "victim"]) {
      expect(fs.readFileSync(nodePath.join(outside, name), "utf8")).toBe(CANARY);
    }
    expect(fs.readdirSync(at("race2")).filter((n) => n.startsWith("stolen"))).toEqual([]);
    expect(readsInside).toBeGreaterThan(0);
    expect(codes.get("OUTSIDE_WORKSPACE") ?? 0).toBeGreaterThan(0);
    if (process.env.SPACES_TEST_VERBOSE) console.log(readsInside, codes);
    for (const code of codes.keys()) expect(RACE_CODES.has(code)).toBe(true);
  });

  test("recursive delete and list never follow a symlink inside the tree", async () => {
    const outside = nodePath.join(tmpRoot, "outside-tree");
    fs.mkdirSync(nodePath.join(outside, "sub"), { recursive: true });
    fs.writeFileSync(nodePath.join(outside, "sub", "keep"), "k");
    fs.mkdirSync(at("tree/a/b"), { recursive: true });
    fs.writeFileSync(at("tree/a/b/f"), "f");
    fs.symlinkSync(outside, at("tree/a/out"));
    fs.symlinkSync(nodePath.join(outside, "sub", "keep"), at("tree/a/b/keep"));
    const list = await w.ok("file.list", { path: "tree", recursive: true, maxEntries: 100 });
    expect(list.entries.map((e: any) => `${e.path}:${e.type}`)).toEqual([
      "tree/a:directory",
      "tree/a/b:directory",
      "tree/a/b/f:file",
      "tree/a/b/keep:symlink",
      "tree/a/out:symlink",
    ]);
    await w.ok("file.delete", { path: "tree", recursive: true });
    expect(fs.existsSync(at("tree"))).toBe(false);
    expect(fs.readFileSync(nodePath.join(outside, "sub", "keep"), "utf8")).toBe("k");
  });
});

describe("tree helpers (moves across file systems, recursive deletes)", () => {
  const O_PATH = 0o10000000;
  const openRef = (p: string) => fs.openSync(p, O_PATH | fs.constants.O_DIRECTORY);

  test("copyEntry copies files with their mode, directories recursively and symlinks verbatim; removeEntry removes", () => {
    const base = nodePath.join(tmpRoot, "copy");
    const outside = nodePath.join(tmpRoot, "copy-outside");
    fs.mkdirSync(nodePath.join(base, "src/sub/deeper"), { recursive: true });
    fs.mkdirSync(nodePath.join(outside, "x"), { recursive: true });
    fs.writeFileSync(nodePath.join(outside, "x", "keep"), "k");
    fs.writeFileSync(nodePath.join(base, "src/run.sh"), "#!/bin/sh\n");
    fs.chmodSync(nodePath.join(base, "src/run.sh"), 0o751);
    fs.writeFileSync(nodePath.join(base, "src/sub/deeper/data"), Buffer.alloc(3 << 20, 7));
    fs.symlinkSync(outside, nodePath.join(base, "src/sub/out"));
    fs.mkdirSync(nodePath.join(base, "dst"));
    const from = openRef(base);
    const to = openRef(nodePath.join(base, "dst"));
    try {
      copyEntry(from, "src", to, "copied");
      const c = nodePath.join(base, "dst/copied");
      expect(fs.readFileSync(nodePath.join(c, "run.sh"), "utf8")).toBe("#!/bin/sh\n");
      expect(fs.statSync(nodePath.join(c, "run.sh")).mode & 0o7777).toBe(0o751);
      expect(fs.readFileSync(nodePath.join(c, "sub/deeper/data")).equals(Buffer.alloc(3 << 20, 7))).toBe(true);
      expect(fs.readlinkSync(nodePath.join(c, "sub/out"))).toBe(outside);
      removeEntry(from, "src");
      removeEntry(to, "copied");
    } finally {
      fs.closeSync(from);
      fs.closeSync(to);
    }
    expect(fs.readdirSync(base)).toEqual(["dst"]);
    expect(fs.readdirSync(nodePath.join(base, "dst"))).toEqual([]);
    expect(fs.readFileSync(nodePath.join(outside, "x", "keep"), "utf8")).toBe("k");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Killing everything (what a timeout or a cancel does inside a space, where the worker is pid 2)

describe("killAllProcesses", () => {
  const isMarked = (mark: string) => {
    const pattern = new RegExp(`(^|[^0-9.])${mark.replace(".", "\\.")}([^0-9]|$)`);
    return (pid: number) => {
      try {
        return pattern.test(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8"));
      } catch {
        return false;
      }
    };
  };

  test("kills every selected process (detached ones and a forking loop included) except those kept, until none is left", async () => {
    const mark = marker(6);
    const family = Bun.spawn(
      ["/bin/sh", "-c", `setsid sleep ${mark} & sleep ${mark} & while :; do sleep ${mark} & sleep 0.005; done`],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    const kept = Bun.spawn(["sleep", mark], { stdio: ["ignore", "ignore", "ignore"] });
    expect(await until(() => processesWith(mark).length >= 6)).toBe(true);
    const sent = killAllProcesses(new Set([process.pid, kept.pid]), isMarked(mark));
    expect(sent).toBeGreaterThanOrEqual(4);
    expect(processesWith(mark)).toEqual([kept.pid]); // nothing left at once, the forking loop included
    await Bun.sleep(50);
    expect(processesWith(mark)).toEqual([kept.pid]);
    expect(await family.exited).toBe(128 + 9);
    kept.kill("SIGKILL");
    await kept.exited;
  });

  test("returns at once when nothing is selected", () => {
    const t0 = performance.now();
    expect(killAllProcesses(new Set([process.pid]), () => false)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe("disk limit", () => {
  test("file.write and file.edit refuse to grow the workspace past diskLimitBytes with ENOSPC", async () => {
    const usage = (dir: string): number =>
      fs.readdirSync(dir, { withFileTypes: true }).reduce((total, entry) => {
        const full = nodePath.join(dir, entry.name);
        return total + (entry.isDirectory() ? usage(full) : fs.lstatSync(full).size);
      }, 0);
    const limit = usage(ws) + 3000;
    await w.ok("file.write", { path: "disk/a.txt", content: "x".repeat(2000), diskLimitBytes: limit });
    const error = await w.fail("file.write", { path: "disk/b.txt", content: "y".repeat(2000), diskLimitBytes: limit });
    expect(error.code).toBe("ENOSPC");
    expect(error.message).toContain("limits.diskMiB");
    expect(fs.existsSync(at("disk/b.txt")) ? fs.readFileSync(at("disk/b.txt"), "utf8") : "").toBe("");
    // Replacing a file by a smaller one is always allowed; growing it by edit is checked like a write.
    await w.ok("file.write", { path: "disk/a.txt", content: "z", diskLimitBytes: limit });
    const edit = await w.fail("file.edit", {
      path: "disk/a.txt",
      edits: [{ oldText: "z", newText: "q".repeat(5000) }],
      diskLimitBytes: limit,
    });
    expect(edit.code).toBe("ENOSPC");
    expect(fs.readFileSync(at("disk/a.txt"), "utf8")).toBe("z");
    fs.rmSync(at("disk"), { recursive: true });
  });
});

describe("capability calls", () => {
  const RUNTIME = nodePath.resolve(import.meta.dir, "../../Sources/SpacesEngine/Resources/capabilities.js");
  let cw: WorkerProcess;
  const capWs = nodePath.join(tmpRoot, "cap-workspace");

  beforeAll(async () => {
    fs.mkdirSync(capWs, { recursive: true });
    cw = new WorkerProcess(capWs, tmpRoot, { SPACES_CAPABILITIES_RUNTIME: RUNTIME });
    await cw.ready;
  });

  afterAll(async () => {
    cw.closeRequests();
    await cw.exited;
  });

  const program = (source: string, timeoutMs = 10_000) =>
    cw.request("code.run", { source, timeoutMs, outputBytes: 1 << 20, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });

  test("a program's call is forwarded tagged with its request, and the engine's answer returns into it", async () => {
    expect((await cw.ok("capabilities", { manifest: [{ name: "crm", methods: ["search"] }] })).socket).toContain(
      ".spaces-capabilities-",
    );
    const calls: any[] = [];
    cw.onCall = (call) => {
      calls.push(call);
      const ok = call.params?.q === "acme";
      const answer = ok
        ? { op: "capability.answer", call: call.call, ok: true, result: [{ id: 1, name: "Acme" }] }
        : { op: "capability.answer", call: call.call, ok: false, error: { code: "DENIED", message: "no", hint: "h" } };
      cw.writeRaw(JSON.stringify({ id: cw.id(), ...answer }) + "\n");
    };
    const id = cw.id();
    const answer = cw.wait(id);
    await cw.writeRaw(
      JSON.stringify({
        id,
        op: "code.run",
        timeoutMs: 10_000,
        outputBytes: 1 << 20,
        source: `import { crm, CapabilityError } from "spaces:capabilities";
          console.log(JSON.stringify(await crm.search({ q: "acme" })));
          try { await crm.search({ q: "other" }); } catch (e) { console.log(e instanceof CapabilityError, e.code, e.hint); }`,
      }) + "\n",
    );
    const result = (await answer).result;
    expect(result.stdout).toBe('[{"id":1,"name":"Acme"}]\ntrue DENIED h\n');
    expect(calls.map((c) => [c.id, c.capability, c.method, c.params])).toEqual([
      [id, "crm", "search", { q: "acme" }],
      [id, "crm", "search", { q: "other" }],
    ]);
    // The environment carries the socket, a token and the manifest, but no answers were given by the worker itself.
    expect(result.exitCode).toBe(0);
  });

  test("the timeout clock stops while a call is outstanding", async () => {
    cw.onCall = (call) => {
      setTimeout(
        () => cw.writeRaw(JSON.stringify({ id: cw.id(), op: "capability.answer", call: call.call, ok: true, result: 42 }) + "\n"),
        1500,
      );
    };
    const answer = await program(
      `import { crm } from "spaces:capabilities"; console.log(await crm.search({}));`,
      1000,
    );
    expect(answer.result.timedOut).toBe(false);
    expect(answer.result.stdout).toBe("42\n");
  });

  test("a program that outlives its run is refused by the worker, without reaching the engine", async () => {
    const calls: any[] = [];
    cw.onCall = (call) => calls.push(call);
    const script = nodePath.join(capWs, "late.ts");
    fs.writeFileSync(
      script,
      `import { crm } from "spaces:capabilities";
       await Bun.sleep(700);
       try { await crm.search({}); } catch (e: any) { require("node:fs").writeFileSync(${JSON.stringify(nodePath.join(capWs, "late.txt"))}, e.code); }`,
    );
    const started = await program(
      `Bun.spawn([process.execPath, ${JSON.stringify(script)}], { stdio: ["ignore", "ignore", "ignore"] }).unref();`,
    );
    expect(started.ok).toBe(true);
    expect(await until(() => fs.existsSync(nodePath.join(capWs, "late.txt")), 5000)).toBe(true);
    expect(fs.readFileSync(nodePath.join(capWs, "late.txt"), "utf8")).toBe("DENIED");
    expect(calls).toEqual([]);
  });

  test("without capabilities, programs get no socket and the module does not resolve", async () => {
    await cw.ok("capabilities", { manifest: [] });
    const answer = await program(`console.log(process.env.SPACES_CAPABILITIES_SOCKET ?? "none")`);
    expect(answer.result.stdout).toBe("none\n");
  });
});
