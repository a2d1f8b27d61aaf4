// The Agent Spaces worker: one long-lived Bun program inside a space (see docs/WORKER.md).
//
// Requests arrive as newline-delimited JSON on fd 3, answers leave on fd 4. File operations are synchronous
// (fast, and naturally in arrival order); commands and programs run asynchronously in their own process groups
// while the channel stays responsive. Dependency-free: Bun built-ins and node: modules only.

import * as fs from "node:fs";
import * as nodePath from "node:path";
import * as os from "node:os";
import { isUtf8 } from "node:buffer";

const REQ_FD = 3;
const ANS_FD = 4;
const MAX_LINE = 256 * 1024 * 1024;
const KILL_GRACE_MS = 250;

const ROOT = nodePath.resolve(process.env.SPACES_WORKSPACE || "/workspace");
let ROOT_REAL = ROOT;
try {
  ROOT_REAL = fs.realpathSync(ROOT);
} catch {
  // a missing root (development only): every operation then fails with ENOENT
}
const ROOT_PREFIX = ROOT === "/" ? "/" : ROOT + "/";
const ROOT_REAL_PREFIX = ROOT_REAL === "/" ? "/" : ROOT_REAL + "/";

const BASE_ENV: Record<string, string> = {
  PATH: "/opt/spaces/bin:/usr/local/bin:/usr/bin:/bin",
  HOME: "/tmp",
  TMPDIR: "/tmp",
  LANG: "C.UTF-8",
};

const CODE_DIR = nodePath.join(os.tmpdir(), ".spaces-code");

function log(message: string): void {
  try {
    fs.writeSync(2, "worker: " + message + "\n");
  } catch {
    // nowhere left to log
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

class WorkerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

function invalid(message: string, hint = "fix the request; see docs/WORKER.md for the fields of each op"): WorkerError {
  return new WorkerError("INVALID_REQUEST", message, hint);
}

/** Maps a Node/Bun errno error (err.code) of `action` on the workspace path `rel` to a worker error. */
function fsError(err: any, action: string, rel: string): WorkerError {
  if (err instanceof WorkerError) return err;
  const code: string | undefined = err?.code;
  const what = `cannot ${action} ${rel}`;
  switch (code) {
    case "ENOENT":
      return new WorkerError("ENOENT", `${what}: no such file or directory`, "check the path with file.list");
    case "EEXIST":
      return new WorkerError(
        "EEXIST",
        `${what}: it already exists`,
        "choose another path, or delete the existing one first with file.delete",
      );
    case "EISDIR":
      return new WorkerError(
        "EISDIR",
        `${what}: it is a directory`,
        "use a file path; list the directory's contents with file.list",
      );
    case "ENOTDIR":
      return new WorkerError(
        "ENOTDIR",
        `${what}: a component of the path is not a directory`,
        "check the path with file.list; only directories can contain entries",
      );
    case "ENOTEMPTY":
      return new WorkerError(
        "ENOTEMPTY",
        `${what}: the directory is not empty`,
        "pass recursive:true to delete a directory and its contents",
      );
    case "EACCES":
    case "EPERM":
      return new WorkerError(
        "EACCES",
        `${what}: permission denied`,
        "check the permissions with command.run `ls -l`, or choose another path",
      );
    case "EROFS":
      return new WorkerError(
        "EROFS",
        `${what}: read-only file system`,
        "write under /workspace or /tmp; the rest of the file system is read-only",
      );
    case "ENOSPC":
    case "EDQUOT":
      return new WorkerError(
        "ENOSPC",
        `${what}: no space left on device`,
        "free space by deleting files you no longer need, or write less",
      );
    case "ELOOP":
      return new WorkerError(
        "INVALID_PATH",
        `${what}: too many levels of symbolic links`,
        "check the symbolic links on the path with file.list",
      );
    case "ENAMETOOLONG":
      return new WorkerError("INVALID_PATH", `${what}: the name is too long`, "use a shorter path");
    case "ENXIO":
      return new WorkerError(
        "INVALID_PATH",
        `${what}: not a regular file (a FIFO without a reader, or a socket)`,
        "only regular files can be read, written or edited",
      );
    case "EINVAL":
      return new WorkerError("INVALID_PATH", `${what}: invalid argument`, "check the path (a directory cannot be moved into itself)");
    default:
      return new WorkerError(
        "INTERNAL",
        `${what}: ${err?.message ?? String(err)}`,
        "retry; if it keeps failing, report it",
      );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Answers (fd 4): one full line per synchronous write loop

const waitCell = new Int32Array(new SharedArrayBuffer(4));
let channelBroken = false;

function writeLine(line: string): void {
  if (channelBroken) return;
  const buf = Buffer.from(line, "utf8");
  let off = 0;
  let pause = 0.05;
  while (off < buf.length) {
    try {
      off += fs.writeSync(ANS_FD, buf, off, buf.length - off);
      pause = 0.05;
    } catch (err: any) {
      if (err?.code === "EAGAIN" || err?.code === "EWOULDBLOCK") {
        // A non-blocking fd 4 that is full: wait a little for the engine to read, then retry.
        Atomics.wait(waitCell, 0, 0, pause);
        if (pause < 2) pause *= 2;
        continue;
      }
      if (err?.code === "EINTR") continue;
      channelBroken = true;
      log(`answer channel failed (${err?.code ?? err}); shutting down`);
      shutdown();
      return;
    }
  }
}

function idJSON(id: unknown): string {
  return typeof id === "number" && Number.isFinite(id) ? String(id) : typeof id === "string" ? JSON.stringify(id) : "null";
}

function answerOk(id: unknown, result: unknown): void {
  writeLine('{"id":' + idJSON(id) + ',"ok":true,"result":' + JSON.stringify(result) + "}\n");
}

function errorPayload(err: unknown): { code: string; message: string; hint: string } {
  if (err instanceof WorkerError) return { code: err.code, message: err.message, hint: err.hint };
  return { code: "INTERNAL", message: (err as any)?.message ?? String(err), hint: "retry; if it keeps failing, report it" };
}

function answerError(id: unknown, err: unknown): void {
  let code = "INTERNAL";
  let message: string;
  let hint = "retry; if it keeps failing, report it";
  if (err instanceof WorkerError) {
    code = err.code;
    message = err.message;
    hint = err.hint;
  } else {
    message = (err as any)?.message ?? String(err);
  }
  writeLine('{"id":' + idJSON(id) + ',"ok":false,"error":' + JSON.stringify({ code, message, hint }) + "}\n");
}

// ---------------------------------------------------------------------------------------------------------------
// Request fields

function str(req: any, field: string): string {
  const v = req[field];
  if (typeof v !== "string") throw invalid(`${req.op}: "${field}" must be a string`);
  return v;
}

function optStr(req: any, field: string): string | undefined {
  const v = req[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(`${req.op}: "${field}" must be a string`);
  return v;
}

function int(req: any, field: string, min = 0): number {
  const v = req[field];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw invalid(`${req.op}: "${field}" must be an integer ≥ ${min}`);
  }
  return v;
}

function optInt(req: any, field: string, min = 0): number | undefined {
  const v = req[field];
  if (v === undefined || v === null) return undefined;
  return int(req, field, min);
}

function optBool(req: any, field: string): boolean {
  const v = req[field];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw invalid(`${req.op}: "${field}" must be a boolean`);
  return v;
}

function encodingOf(req: any): "utf8" | "base64" {
  const v = req.encoding;
  if (v === undefined || v === null || v === "utf8") return "utf8";
  if (v === "base64") return "base64";
  throw invalid(`${req.op}: "encoding" must be "utf8" or "base64"`);
}

function strArray(req: any, field: string): string[] | undefined {
  const v = req[field];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw invalid(`${req.op}: "${field}" must be an array of strings`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Paths

interface Resolved {
  /** workspace-relative, `/`-separated, `.` for the root */
  rel: string;
  /** the real path, every symlink resolved (the final component too, when it exists) */
  real: string;
  /** the real parent joined with the final component, not followed (only computed for delete and move) */
  link: string;
  isRoot: boolean;
}

function insideReal(p: string): boolean {
  return p === ROOT_REAL || p.startsWith(ROOT_REAL_PREFIX);
}

function outside(rel: string, real: string): WorkerError {
  return new WorkerError(
    "OUTSIDE_WORKSPACE",
    `${rel} resolves through a symbolic link to ${real}, outside the workspace`,
    "use a path whose symbolic links stay inside the workspace",
  );
}

function eloop(): Error {
  const e: any = new Error("too many levels of symbolic links");
  e.code = "ELOOP";
  return e;
}

/** The real path of `abs`: realpath of the longest existing prefix, with the missing rest appended. A final
 * component that is a dangling symlink is followed to where it points. */
function realOf(abs: string, depth: number): string {
  try {
    return fs.realpathSync(abs);
  } catch (err: any) {
    if (err?.code !== "ENOENT" && err?.code !== "ENOTDIR") throw err;
  }
  if (abs === "/") return "/";
  const parent = nodePath.dirname(abs);
  const base = nodePath.basename(abs);
  const realParent = realOf(parent, depth);
  const candidate = realParent === "/" ? "/" + base : realParent + "/" + base;
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(candidate, { throwIfNoEntry: false });
  } catch {
    return candidate; // ENOTDIR: the operation itself reports it
  }
  if (st && st.isSymbolicLink()) {
    if (depth >= 40) throw eloop();
    return realOf(nodePath.resolve(realParent, fs.readlinkSync(candidate)), depth + 1);
  }
  return candidate;
}

/** Resolves a request path per docs/WORKER.md. `link` (the final component not followed) is computed, and
 * checked, only with `noFollow`: the operations that act on a symbolic link itself (delete, move). */
function resolvePath(p: unknown, field: string, op: string, noFollow = false): Resolved {
  if (typeof p !== "string") throw invalid(`${op}: "${field}" must be a string`);
  if (p.length === 0) throw new WorkerError("INVALID_PATH", `${op}: "${field}" is empty`, 'use "." for the workspace root');
  if (p.includes("\0")) {
    throw new WorkerError("INVALID_PATH", `${op}: "${field}" contains a NUL character`, "remove the NUL character");
  }
  const abs = nodePath.resolve(ROOT, p);
  let rel: string;
  if (abs === ROOT) rel = ".";
  else if (abs.startsWith(ROOT_PREFIX)) rel = abs.slice(ROOT_PREFIX.length);
  else {
    throw new WorkerError(
      "OUTSIDE_WORKSPACE",
      `${p} is outside the workspace`,
      `use a path relative to the workspace root, or an absolute path under ${ROOT}`,
    );
  }
  const isRoot = rel === ".";
  let real: string;
  let link = "";
  try {
    real = realOf(abs, 0);
    if (noFollow) {
      if (isRoot) link = ROOT_REAL;
      else {
        const realParent = realOf(nodePath.dirname(abs), 0);
        link = (realParent === "/" ? "/" : realParent + "/") + nodePath.basename(abs);
      }
    }
  } catch (err) {
    throw fsError(err, "resolve", rel);
  }
  if (!insideReal(real) || (noFollow && !insideReal(link))) throw outside(rel, real);
  return { rel, real, link, isRoot };
}

function notRoot(r: Resolved, what: string): void {
  if (r.isRoot || (r.link ? r.link === ROOT_REAL : r.real === ROOT_REAL)) {
    throw new WorkerError("INVALID_PATH", `the workspace root cannot be ${what}`, "name a file or directory inside the workspace");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Descriptors: file operations act through descriptors whose location was checked (docs/WORKER.md, Races)
//
// resolvePath checks where a path leads once; a symlink swapped in afterwards, for any component, would send a
// later open by path elsewhere. So the object itself is opened (the final component with O_NOFOLLOW: resolvePath
// followed its symlinks already) and the descriptor's location, as the kernel reports it in /proc/self/fd/N, is
// checked; from then on the worker reads, writes, truncates and hashes through that descriptor only. Bun and Node
// have no *at() calls: an entry of a checked directory is reached as /proc/self/fd/<dirfd>/<name>, which the
// kernel resolves through the directory's descriptor, so no swapped ancestor can redirect it.

const C = fs.constants;
/** Linux's O_PATH (not in fs.constants): a descriptor that only names a directory, to reach entries under it. */
const O_PATH = 0o10000000;
const DIR_REF = O_PATH | C.O_DIRECTORY;
/** For every open of a file: never follow a final symlink, never block on a FIFO, never acquire a terminal. */
const NOFOLLOW = C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY;
/** How many times in all a path is resolved and opened when an O_NOFOLLOW open meets a symlink swapped in. */
const SWAP_ATTEMPTS = 4;

function fdPath(fd: number): string {
  return "/proc/self/fd/" + fd;
}

/** The entry `name` (one component) of the directory open as `dirFd`, reached through the descriptor. */
function under(dirFd: number, name: string): string {
  return "/proc/self/fd/" + dirFd + "/" + name;
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {}
}

/** Returns `fd` if it is the root or lies under it, as the kernel sees it now; otherwise closes it and fails with
 * OUTSIDE_WORKSPACE. */
function verified(fd: number, rel: string): number {
  let where: string;
  try {
    where = fs.readlinkSync(fdPath(fd));
  } catch (err) {
    closeQuietly(fd);
    throw fsError(err, "resolve", rel);
  }
  if (insideReal(where)) return fd;
  closeQuietly(fd);
  throw outside(rel, where);
}

/** An O_NOFOLLOW open met a symlink where resolvePath had found none: the path changed meanwhile. */
class Swapped {
  constructor(readonly error: WorkerError) {}
}

function fsErrorOrSwap(err: any, action: string, rel: string): WorkerError | Swapped {
  const e = fsError(err, action, rel);
  return err?.code === "ELOOP" ? new Swapped(e) : e;
}

/** Runs `attempt` (resolve a path, open it), again when it failed because of a concurrent swap. */
function retryingSwaps<T>(attempt: () => T): T {
  for (let i = 1; ; i++) {
    try {
      return attempt();
    } catch (err) {
      if (!(err instanceof Swapped)) throw err;
      if (i >= SWAP_ATTEMPTS) throw err.error;
    }
  }
}

/** A checked descriptor (O_PATH) of the directory at the resolved path `real`. With `create`, a missing directory
 * is made first, with its missing parents, each one relative to a checked descriptor of its own parent. Throws
 * errno errors and OUTSIDE_WORKSPACE. */
function openDir(real: string, rel: string, create: boolean): number {
  try {
    return verified(fs.openSync(real, DIR_REF), rel);
  } catch (err: any) {
    if (!create || err?.code !== "ENOENT") throw err;
  }
  let fd = verified(fs.openSync(ROOT_REAL, DIR_REF), rel);
  const rest = real === ROOT_REAL ? "" : real.slice(ROOT_REAL_PREFIX.length);
  for (const name of rest.split("/")) {
    if (name === "") continue;
    let next = -1;
    try {
      const path = under(fd, name);
      try {
        next = fs.openSync(path, DIR_REF);
      } catch (err: any) {
        if (err?.code !== "ENOENT") throw err;
        try {
          fs.mkdirSync(path);
        } catch (e: any) {
          if (e?.code !== "EEXIST") throw e;
        }
        next = fs.openSync(path, DIR_REF);
      }
    } finally {
      fs.closeSync(fd);
    }
    fd = verified(next, rel);
  }
  return fd;
}

/** Resolves `req[field]` and opens the file it names with `flags` (and O_NOFOLLOW), checked. */
function openResolved(
  req: any,
  field: string,
  flags: number,
  action: string,
  p = req[field],
): { r: Resolved; fd: number } {
  return retryingSwaps(() => {
    const r = resolvePath(p, field, req.op);
    let fd: number;
    try {
      fd = fs.openSync(r.real, flags | NOFOLLOW);
    } catch (err) {
      throw fsErrorOrSwap(err, action, r.rel);
    }
    return { r, fd: verified(fd, r.rel) };
  });
}

/** Opens the resolved file `r` for writing with `flags`, checked: an existing file by its real path (O_NOFOLLOW);
 * a missing one, with `create`, by O_CREAT|O_NOFOLLOW relative to a checked descriptor of its parent directory,
 * which is created first when missing. Never truncates. Throws errno errors and OUTSIDE_WORKSPACE. */
function openWritable(r: Resolved, flags: number, create: boolean): number {
  let fd: number;
  try {
    fd = fs.openSync(r.real, flags | NOFOLLOW);
  } catch (err: any) {
    if (!create || err?.code !== "ENOENT") throw err;
    const dir = openDir(nodePath.dirname(r.real), r.rel, true);
    try {
      fd = fs.openSync(under(dir, nodePath.basename(r.real)), flags | C.O_CREAT | NOFOLLOW, 0o666);
    } finally {
      fs.closeSync(dir);
    }
  }
  return verified(fd, r.rel);
}

/** Deletes the entry `name` of the checked directory `dir`: a directory with everything in it. Each level is
 * opened relative to its parent's descriptor without following symlinks: a symlink met anywhere (even one swapped
 * in meanwhile) is deleted itself, never followed. */
export function removeEntry(dir: number, name: string): void {
  const path = under(dir, name);
  let fd: number;
  try {
    fd = fs.openSync(path, DIR_REF | C.O_NOFOLLOW);
  } catch (err: any) {
    if (err?.code !== "ENOTDIR" && err?.code !== "ELOOP") throw err;
    fs.unlinkSync(path); // not a directory
    return;
  }
  try {
    for (const d of fs.readdirSync(fdPath(fd), { withFileTypes: true })) {
      try {
        if (d.isDirectory()) removeEntry(fd, d.name);
        else {
          try {
            fs.unlinkSync(under(fd, d.name));
          } catch (err: any) {
            if (err?.code !== "EISDIR") throw err;
            removeEntry(fd, d.name); // the type was unknown, or a directory took its place
          }
        }
      } catch (err: any) {
        if (err?.code !== "ENOENT") throw err; // vanished meanwhile
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.rmdirSync(path);
}

/** Copies the entry `name` of the directory `srcDir` to `dstName` in `dstDir` (a move across file systems):
 * regular files with their mode, directories recursively, symlinks verbatim. Every level is reached relative to
 * its parent's descriptor and never through a symlink. */
export function copyEntry(srcDir: number, name: string, dstDir: number, dstName: string): void {
  const src = under(srcDir, name);
  const dst = under(dstDir, dstName);
  const st = fs.lstatSync(src);
  const mode = st.mode & 0o7777;
  if (st.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(src), dst);
  } else if (st.isDirectory()) {
    const from = fs.openSync(src, DIR_REF | C.O_NOFOLLOW);
    try {
      fs.mkdirSync(dst, { mode: 0o700 });
      const to = fs.openSync(dst, DIR_REF | C.O_NOFOLLOW);
      try {
        for (const entry of fs.readdirSync(fdPath(from))) copyEntry(from, entry, to, entry);
        fs.chmodSync(fdPath(to), mode); // through the descriptor: the directory itself
      } finally {
        fs.closeSync(to);
      }
    } finally {
      fs.closeSync(from);
    }
  } else if (st.isFile()) {
    const from = fs.openSync(src, C.O_RDONLY | NOFOLLOW);
    try {
      if (!fs.fstatSync(from).isFile()) throw cannotCopy();
      const to = fs.openSync(dst, C.O_WRONLY | C.O_CREAT | C.O_EXCL | NOFOLLOW, 0o600);
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        for (let position = 0; ; ) {
          const n = fs.readSync(from, buf, 0, buf.length, position);
          if (n === 0) break;
          writeAll(to, buf.subarray(0, n), position);
          position += n;
        }
        fs.fchmodSync(to, mode);
      } finally {
        fs.closeSync(to);
      }
    } finally {
      fs.closeSync(from);
    }
  } else throw cannotCopy();
}

function cannotCopy(): WorkerError {
  return new WorkerError(
    "INVALID_PATH",
    "cannot move a FIFO, socket or device to another file system",
    "delete it, or move it within its file system",
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

function sha256(data: Uint8Array): string {
  return Bun.SHA256.hash(data, "hex") as string;
}

function notRegular(r: Resolved, action: string): WorkerError {
  return new WorkerError(
    "INVALID_PATH",
    `cannot ${action} ${r.rel}: not a regular file`,
    "only regular files can be read, written or edited",
  );
}

function readRange(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off, position + off);
}

/** Replaces the whole content of the open regular file `fd` with `data`: written over the old content, then cut
 * to its length. (Truncating to 0 first, like O_TRUNC, makes ext4 flush the file on close: ~100 µs a write.) */
function replaceContent(fd: number, data: Uint8Array): void {
  writeAll(fd, data, 0);
  fs.ftruncateSync(fd, data.length);
}

/** The largest n' ≤ n such that buf[0, n') does not end inside a multi-byte UTF-8 character. */
function utf8Cut(buf: Uint8Array, n: number): number {
  let i = n - 1;
  const stop = Math.max(0, n - 4);
  while (i >= stop && (buf[i] & 0xc0) === 0x80) i--;
  if (i < 0 || i < stop) return n;
  const lead = buf[i];
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return i + need > n ? i : n;
}

// ---------------------------------------------------------------------------------------------------------------
// File operations

function conflict(rel: string, current: string | null, expect: string): WorkerError {
  return new WorkerError(
    "CONFLICT",
    current === null
      ? `${rel} does not exist, so it does not have the expected SHA-256`
      : `${rel} has changed: its SHA-256 is ${current}, not the expected ${expect}`,
    "read the file again, reapply your change to its current content, and write with the new sha256",
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The workspace's disk limit (`diskLimitBytes`, from the policy's limits.diskMiB)

/** Bytes the workspace holds, as last measured and kept up to date by file operations; null: measure again. */
let usageBytes: number | null = null;

function measureUsage(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = dir + "/" + entry.name;
    if (entry.isDirectory()) total += measureUsage(full);
    else {
      try {
        total += fs.lstatSync(full).size;
      } catch {}
    }
  }
  return total;
}

/**
 * Refuses a change that would make the workspace hold more than `limit` bytes (ENOSPC, naming both figures);
 * returns the new total to record once the change is made.
 */
function checkDiskLimit(req: any, rel: string, oldSize: number, newSize: number): number | null {
  const limit = req.diskLimitBytes;
  if (typeof limit !== "number") return null;
  if (usageBytes === null) usageBytes = measureUsage(ROOT);
  const next = usageBytes - oldSize + newSize;
  if (newSize > oldSize && next > limit) {
    throw new WorkerError(
      "ENOSPC",
      `${req.op} ${rel}: the workspace would hold ${next} bytes, over its limit of ${limit} bytes (limits.diskMiB)`,
      "delete files the space no longer needs, or create the space with a larger limits.diskMiB",
    );
  }
  return next;
}

function opFileWrite(req: any): unknown {
  const content = str(req, "content");
  const encoding = encodingOf(req);
  const mode = optInt(req, "mode");
  if (mode !== undefined && mode > 0o7777) throw invalid(`${req.op}: "mode" must be a permission mode ≤ 4095 (0o7777)`);
  const expect = optStr(req, "expectSha256");
  const data = Buffer.from(content, encoding);
  let r!: Resolved;
  // Without expectSha256: O_WRONLY|O_CREAT, no O_TRUNC (truncated once checked). With it: an existing file only
  // (a missing one never matches), read and written through the one descriptor.
  const fd = retryingSwaps(() => {
    r = resolvePath(req.path, "path", req.op);
    notRoot(r, "written as a file");
    try {
      return expect === undefined ? openWritable(r, C.O_WRONLY, true) : openWritable(r, C.O_RDWR, false);
    } catch (err: any) {
      if (expect !== undefined && err?.code === "ENOENT") throw conflict(r.rel, null, expect);
      throw fsErrorOrSwap(err, "write", r.rel);
    }
  });
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw notRegular(r, "write");
    if (expect !== undefined) {
      const current = sha256(readRange(fd, 0, st.size));
      if (current !== expect.toLowerCase()) throw conflict(r.rel, current, expect);
    }
    const next = checkDiskLimit(req, r.rel, st.size, data.length);
    replaceContent(fd, data);
    if (next !== null) usageBytes = next;
    if (mode !== undefined) fs.fchmodSync(fd, mode);
  } catch (err) {
    throw fsError(err, "write", r.rel);
  } finally {
    fs.closeSync(fd);
  }
  return { path: r.rel, bytes: data.length, sha256: sha256(data) };
}

function opFileRead(req: any): unknown {
  const encoding = encodingOf(req);
  const offset = optInt(req, "offset") ?? 0;
  const length = optInt(req, "length");
  const maxBytes = int(req, "maxBytes");
  const { r, fd } = openResolved(req, "path", C.O_RDONLY, "read");
  let buf: Buffer;
  let size: number;
  let truncated: boolean;
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw fsError({ code: "EISDIR" }, "read", r.rel);
    if (!st.isFile()) throw notRegular(r, "read");
    size = st.size;
    const start = Math.min(offset, size);
    const available = length === undefined ? size - start : Math.min(length, size - start);
    const n = Math.min(available, maxBytes);
    truncated = n < available;
    buf = readRange(fd, start, n);
    if (encoding === "utf8" && start + buf.length < size) {
      // never end inside a character: a caller paging with offset += bytes stays on character boundaries
      const cut = utf8Cut(buf, buf.length);
      if (cut < buf.length) {
        buf = buf.subarray(0, cut);
        truncated = true;
      }
    }
  } catch (err) {
    throw fsError(err, "read", r.rel);
  } finally {
    fs.closeSync(fd);
  }
  let content: string;
  if (encoding === "base64") content = buf.toString("base64");
  else {
    if (!isUtf8(buf)) {
      throw new WorkerError(
        "NOT_UTF8",
        `${r.rel} is not valid UTF-8 text`,
        'read it with encoding:"base64" to get its bytes',
      );
    }
    content = buf.toString("utf8");
  }
  return { path: r.rel, content, encoding, bytes: buf.length, size, truncated };
}

function countOf(text: string, needle: string): number {
  let count = 0;
  let i = text.indexOf(needle);
  while (i !== -1) {
    count++;
    i = text.indexOf(needle, i + needle.length);
  }
  return count;
}

function opFileEdit(req: any): unknown {
  const edits = req.edits;
  if (!Array.isArray(edits) || edits.length === 0) throw invalid(`${req.op}: "edits" must be a non-empty array`);
  for (let i = 0; i < edits.length; i++) {
    const e = edits[i];
    if (typeof e !== "object" || e === null || typeof e.oldText !== "string" || typeof e.newText !== "string") {
      throw invalid(`${req.op}: edits[${i}] must be an object with string "oldText" and "newText"`);
    }
    if (e.oldText.length === 0) throw invalid(`${req.op}: edits[${i}].oldText is empty`, "give the exact text to replace");
    if (e.replaceAll !== undefined && e.replaceAll !== null && typeof e.replaceAll !== "boolean") {
      throw invalid(`${req.op}: edits[${i}].replaceAll must be a boolean`);
    }
  }
  // Read and written through one checked descriptor.
  const { r, fd } = openResolved(req, "path", C.O_RDWR, "edit");
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw fsError({ code: "EISDIR" }, "edit", r.rel);
    if (!st.isFile()) throw notRegular(r, "edit");
    const buf = readRange(fd, 0, st.size);
    if (!isUtf8(buf)) {
      throw new WorkerError("NOT_UTF8", `${r.rel} is not valid UTF-8 text, so it cannot be edited`, "rewrite it with file.write");
    }
    let text = buf.toString("utf8");
    let replacements = 0;
    for (let i = 0; i < edits.length; i++) {
      const { oldText, newText } = edits[i];
      const count = countOf(text, oldText);
      if (count === 0) {
        throw new WorkerError(
          "EDIT_NO_MATCH",
          `edits[${i}]: oldText was found 0 times in ${r.rel}${i > 0 ? " (after the earlier edits)" : ""}; nothing was written`,
          "read the file with file.read and copy oldText exactly, including whitespace and line endings",
        );
      }
      if (count > 1 && !edits[i].replaceAll) {
        throw new WorkerError(
          "EDIT_AMBIGUOUS",
          `edits[${i}]: oldText was found ${count} times in ${r.rel}; nothing was written`,
          "include more surrounding text in oldText so that it matches once, or pass replaceAll:true",
        );
      }
      if (count === 1) {
        const at = text.indexOf(oldText);
        text = text.slice(0, at) + newText + text.slice(at + oldText.length);
      } else {
        text = text.split(oldText).join(newText);
      }
      replacements += count;
    }
    const out = Buffer.from(text, "utf8");
    const next = checkDiskLimit(req, r.rel, fs.fstatSync(fd).size, out.length);
    replaceContent(fd, out);
    if (next !== null) usageBytes = next;
    return { path: r.rel, replacements, sha256: sha256(out) };
  } catch (err) {
    throw fsError(err, "edit", r.rel);
  } finally {
    fs.closeSync(fd);
  }
}

/** Resolves a path for the operations that act on the entry itself (delete, move) and opens its parent directory,
 * checked: the entry is then reached as `under(dir, name)`. */
function openEntry(
  req: any,
  field: string,
  action: string,
  what: string,
  alsoResolve?: () => void,
): { r: Resolved; dir: number; name: string } {
  return retryingSwaps(() => {
    const r = resolvePath(req[field], field, req.op, true);
    alsoResolve?.();
    notRoot(r, what);
    let dir: number;
    try {
      dir = openDir(nodePath.dirname(r.link), r.rel, false);
    } catch (err) {
      throw fsErrorOrSwap(err, action, r.rel);
    }
    return { r, dir, name: nodePath.basename(r.link) };
  });
}

function opFileDelete(req: any): unknown {
  usageBytes = null;
  const recursive = optBool(req, "recursive");
  const { r, dir, name } = openEntry(req, "path", "delete", "deleted");
  try {
    const path = under(dir, name);
    const st = fs.lstatSync(path);
    if (st.isDirectory()) {
      if (recursive) removeEntry(dir, name);
      else fs.rmdirSync(path);
    } else fs.unlinkSync(path);
  } catch (err: any) {
    if (err?.code === "EEXIST") err = { code: "ENOTEMPTY" };
    throw fsError(err, "delete", r.rel);
  } finally {
    fs.closeSync(dir);
  }
  return { path: r.rel };
}

interface Entry {
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
}

function opFileList(req: any): unknown {
  const recursive = optBool(req, "recursive");
  const maxEntries = int(req, "maxEntries");
  const { r, fd } = openResolved(req, "path", C.O_RDONLY, "list", req.path ?? ".");
  const entries: Entry[] = [];
  let truncated = false;
  const byName = (a: fs.Dirent, b: fs.Dirent) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  // Depth first with siblings sorted by name: entries come out sorted by path, component by component, so the
  // walk can stop as soon as maxEntries is exceeded. Every directory is read through its descriptor, and each
  // subdirectory opened relative to its parent's descriptor with O_NOFOLLOW: a symlink swapped in is not entered.
  const walk = (dirFd: number, prefix: string, top: boolean): boolean => {
    let dirents: fs.Dirent[];
    try {
      dirents = fs.readdirSync(fdPath(dirFd), { withFileTypes: true });
    } catch (err) {
      if (top) throw fsError(err, "list", r.rel);
      return true; // an unreadable subdirectory is listed, its contents are not
    }
    dirents.sort(byName);
    for (const d of dirents) {
      if (entries.length >= maxEntries) {
        truncated = true;
        return false;
      }
      const path = prefix + d.name;
      if (d.isDirectory()) {
        entries.push({ path, type: "directory", size: 0 });
        if (!recursive) continue;
        let sub: number;
        try {
          sub = fs.openSync(under(dirFd, d.name), C.O_RDONLY | C.O_DIRECTORY | NOFOLLOW);
        } catch {
          continue; // unreadable, or no longer a directory
        }
        try {
          if (!walk(sub, path + "/", false)) return false;
        } finally {
          fs.closeSync(sub);
        }
        continue;
      }
      const ls = fs.lstatSync(under(dirFd, d.name), { throwIfNoEntry: false });
      if (!ls) continue; // vanished meanwhile
      const type = ls.isFile() ? "file" : ls.isSymbolicLink() ? "symlink" : ls.isDirectory() ? "directory" : "other";
      entries.push({ path, type, size: type === "directory" ? 0 : ls.size });
    }
    return true;
  };
  try {
    if (!fs.fstatSync(fd).isDirectory()) {
      throw new WorkerError("ENOTDIR", `cannot list ${r.rel}: it is not a directory`, "use file.read to read a file");
    }
    walk(fd, r.rel === "." ? "" : r.rel + "/", true);
  } finally {
    fs.closeSync(fd);
  }
  return { path: r.rel, entries, truncated };
}

function opFileMove(req: any): unknown {
  usageBytes = null;
  let to!: Resolved;
  const { r: from, dir: fromDir, name: fromName } = openEntry(req, "from", "move", "moved", () => {
    to = resolvePath(req.to, "to", req.op, true);
  });
  let toDir = -1;
  try {
    notRoot(to, "replaced by a move");
    const toName = nodePath.basename(to.link);
    try {
      fs.lstatSync(under(fromDir, fromName));
    } catch (err) {
      throw fsError(err, "move", from.rel);
    }
    try {
      toDir = openDir(nodePath.dirname(to.link), to.rel, true);
    } catch (err) {
      throw fsError(err, "create the parent directories of", to.rel);
    }
    if (fs.lstatSync(under(toDir, toName), { throwIfNoEntry: false })) {
      throw new WorkerError(
        "EEXIST",
        `cannot move ${from.rel} to ${to.rel}: ${to.rel} already exists`,
        "choose another destination, or delete it first with file.delete",
      );
    }
    try {
      try {
        fs.renameSync(under(fromDir, fromName), under(toDir, toName));
      } catch (err: any) {
        if (err?.code !== "EXDEV") throw err;
        copyEntry(fromDir, fromName, toDir, toName);
        removeEntry(fromDir, fromName);
      }
    } catch (err: any) {
      if (err?.code === "EINVAL") {
        throw new WorkerError(
          "INVALID_PATH",
          `cannot move ${from.rel} to ${to.rel}: a directory cannot be moved into itself`,
          "choose a destination outside the directory",
        );
      }
      throw fsError(err, "move", `${from.rel} to ${to.rel}`);
    }
    return { from: from.rel, to: to.rel };
  } finally {
    fs.closeSync(fromDir);
    if (toDir >= 0) fs.closeSync(toDir);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Commands and programs

interface Running {
  id: number;
  pid: number;
  cancelled: boolean;
  timedOut: boolean;
  kill(): void;
  codeFile?: string;
  /** Capability calls of this run's programs that the engine has not answered yet. */
  outstanding: number;
  /** Stops the timeout clock while a capability call is outstanding (it may wait for a person), restarts it after. */
  pauseClock(): void;
  resumeClock(): void;
}

const running = new Map<number, Running>();
/** Process groups whose leader was reaped while members were still alive (background jobs). */
const lingering = new Set<number>();

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // ESRCH: already gone
  }
}

/** Inside a space the worker is pid 2, forked by the space's init (pid 1), and the pid namespace holds only the
 * space's processes: a timeout or a cancel kills all of them (killAllProcesses). Anywhere else (development, the
 * tests) it would reach the host's processes, so only the command's process group is killed. */
const SPACE_WIDE_KILL = process.pid === 2 && process.ppid === 1;

function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return true; // gone
  }
  const state = stat.charCodeAt(stat.lastIndexOf(")") + 2); // "pid (comm) S …"; comm may contain ')'
  return state === 90 /* Z */ || state === 88 /* X */;
}

/**
 * Kills every process listed in /proc, except those in `keep` and zombies (dead already, reaped by their parent
 * or init), with SIGKILL, scan after scan until two scans in a row find none: a process that forked between a
 * scan and its kill shows up in the next one, and a killed one until it has died. Gives up after `limitMs`.
 * `select`, when given, limits the kill to the processes it accepts (the tests reach only their own processes).
 * Returns the number of kills sent.
 */
export function killAllProcesses(keep: ReadonlySet<number>, select?: (pid: number) => boolean, limitMs = 2000): number {
  const end = performance.now() + limitMs;
  let sent = 0;
  let quiet = 0;
  while (quiet < 2 && performance.now() < end) {
    let names: string[];
    try {
      names = fs.readdirSync("/proc");
    } catch {
      return sent;
    }
    let found = 0;
    for (const name of names) {
      const first = name.charCodeAt(0);
      if (first < 48 || first > 57) continue;
      const pid = Number(name);
      if (!Number.isSafeInteger(pid) || keep.has(pid) || isZombie(pid)) continue;
      if (select !== undefined && !select(pid)) continue;
      found++;
      try {
        process.kill(pid, "SIGKILL");
        sent++;
      } catch {
        // ESRCH: gone meanwhile
      }
    }
    if (found === 0) quiet++;
    else {
      quiet = 0;
      Atomics.wait(waitCell, 0, 0, 1); // let the signals land
    }
  }
  return sent;
}

/** What a timeout or a cancel of the command whose process group is `pgid` kills. */
function killForStop(pgid: number): void {
  if (SPACE_WIDE_KILL) killAllProcesses(new Set([1, process.pid]));
  else killGroup(pgid);
}

/** One output stream of a running process: counts every byte, appends them to `stdoutTo`/`stderrTo`, and keeps
 * (and streams) at most `limit` bytes as text. The bound holds both for the process's bytes and for the UTF-8 of
 * the text, which can be longer when invalid bytes are replaced with U+FFFD. */
class StreamState {
  /** every byte the process wrote */
  total = 0;
  /** bytes given to the decoder */
  kept = 0;
  /** UTF-8 bytes of the text kept */
  textBytes = 0;
  /** the bound was reached: later output is counted, not kept */
  full = false;
  parts: string[] = [];
  decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  fd = -1;
  constructor(
    readonly name: "stdout" | "stderr",
    readonly id: number,
    readonly limit: number,
    readonly toRel: string | undefined,
  ) {}

  chunk(bytes: Uint8Array): void {
    this.total += bytes.length;
    if (this.fd >= 0) {
      try {
        let off = 0;
        while (off < bytes.length) off += fs.writeSync(this.fd, bytes, off, bytes.length - off);
      } catch (err: any) {
        log(`cannot append to ${this.toRel}: ${err?.code ?? err}`);
        fs.closeSync(this.fd);
        this.fd = -1;
      }
    }
    if (this.full) return;
    const room = this.limit - this.kept;
    let take = bytes;
    if (bytes.length > room) {
      take = bytes.subarray(0, room);
      this.full = true;
    }
    this.kept += take.length;
    // Streaming decode: a character split across chunks is held back until complete. When the bound cuts a
    // character, the decoder keeps its first bytes pending and they are never flushed.
    this.keep(this.decoder.decode(take, { stream: true }));
  }

  end(): void {
    if (!this.full) this.keep(this.decoder.decode());
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {}
      this.fd = -1;
    }
  }

  private keep(text: string): void {
    if (text.length === 0) return;
    let size = Buffer.byteLength(text, "utf8");
    if (this.textBytes + size > this.limit) {
      // only possible with replacement characters: cut the text itself at a character boundary
      const utf8 = Buffer.from(text, "utf8");
      const cut = utf8Cut(utf8, this.limit - this.textBytes);
      text = utf8.toString("utf8", 0, cut);
      size = cut;
      this.full = true;
      if (text.length === 0) return;
    }
    this.textBytes += size;
    this.parts.push(text);
    writeLine('{"id":' + this.id + ',"stream":"' + this.name + '","data":' + JSON.stringify(text) + "}\n");
  }

  text(): string {
    return this.parts.length === 1 ? this.parts[0] : this.parts.join("");
  }
}

function openAppend(req: any, field: string): { rel: string; fd: number } | undefined {
  const p = req[field];
  if (p === undefined || p === null) return undefined;
  let r!: Resolved;
  const fd = retryingSwaps(() => {
    r = resolvePath(p, field, req.op);
    notRoot(r, "written as a file");
    try {
      return openWritable(r, C.O_WRONLY | C.O_APPEND, true);
    } catch (err) {
      throw fsErrorOrSwap(err, "open for appending", r.rel);
    }
  });
  try {
    if (!fs.fstatSync(fd).isFile()) throw notRegular(r, "append to");
  } catch (err) {
    fs.closeSync(fd);
    throw fsError(err, "open for appending", r.rel);
  }
  return { rel: r.rel, fd };
}

function buildEnv(req: any): Record<string, string> {
  const extra = req.env;
  if (extra === undefined || extra === null) return BASE_ENV;
  if (typeof extra !== "object" || Array.isArray(extra)) throw invalid(`${req.op}: "env" must be an object of strings`);
  const env: Record<string, string> = { ...BASE_ENV };
  for (const k in extra) {
    const v = extra[k];
    if (v === null) delete env[k];
    else if (typeof v === "string") env[k] = v;
    else if (typeof v === "number" || typeof v === "boolean") env[k] = String(v);
    else throw invalid(`${req.op}: env.${k} must be a string`);
  }
  return env;
}

interface RunSpec {
  /** The token that attributes capability calls to this run (see Capabilities below). */
  token?: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  stdin: string | undefined;
  timeoutMs: number;
  outputBytes: number;
  stdoutTo?: { rel: string; fd: number };
  stderrTo?: { rel: string; fd: number };
  codeFile?: string;
}

async function drain(stream: ReadableStream<Uint8Array>, state: StreamState, readers: any[]): Promise<void> {
  const reader = stream.getReader();
  readers.push(reader);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value && value.length > 0) state.chunk(value);
    }
  } catch {
    // cancelled after a kill
  }
}

async function run(id: number, spec: RunSpec): Promise<void> {
  const started = performance.now();
  const out = new StreamState("stdout", id, spec.outputBytes, spec.stdoutTo?.rel);
  const err = new StreamState("stderr", id, spec.outputBytes, spec.stderrTo?.rel);
  if (spec.stdoutTo) out.fd = spec.stdoutTo.fd;
  if (spec.stderrTo) err.fd = spec.stderrTo.fd;
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(spec.argv, {
      cwd: spec.cwd,
      env: spec.env,
      stdin: spec.stdin === undefined ? "ignore" : Buffer.from(spec.stdin, "utf8"),
      stdout: "pipe",
      stderr: "pipe",
      detached: true,
    });
  } catch (e: any) {
    out.end();
    err.end();
    if (spec.codeFile) fs.rm(spec.codeFile, { force: true }, () => {});
    throw new WorkerError(
      "SPAWN_FAILED",
      `cannot start ${JSON.stringify(spec.argv[0])}: ${e?.message ?? e}`,
      e?.code === "ENOENT"
        ? "check the program name; PATH is /opt/spaces/bin:/usr/local/bin:/usr/bin:/bin"
        : e?.code === "EACCES"
          ? "the program is not executable; run it through an interpreter or chmod it"
          : "check the program and the working directory",
    );
  }
  const pid = proc.pid;
  let exited = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let remainingMs = spec.timeoutMs;
  let armedAt = performance.now();
  const entry: Running = {
    id,
    pid,
    cancelled: false,
    timedOut: false,
    kill: () => {},
    codeFile: spec.codeFile,
    outstanding: 0,
    pauseClock: () => {
      if (timer === undefined) return;
      clearTimeout(timer);
      timer = undefined;
      remainingMs = Math.max(0, remainingMs - (performance.now() - armedAt));
    },
    resumeClock: () => {
      if (timer !== undefined || exited) return;
      armedAt = performance.now();
      timer = setTimeout(onTimeout, remainingMs);
    },
  };
  const readers: any[] = [];
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  let killed = false;
  const armGrace = () => {
    // After a kill, pipes held open by a process that escaped the group must not keep the answer waiting.
    if (!killed || !exited || graceTimer) return;
    graceTimer = setTimeout(() => {
      for (const r of readers) r.cancel().catch(() => {});
    }, KILL_GRACE_MS);
  };
  entry.kill = () => {
    killed = true;
    killForStop(pid);
    armGrace();
  };
  running.set(id, entry);
  if (spec.token) runsByToken.set(spec.token, entry);
  function onTimeout(): void {
    entry.timedOut = true;
    entry.kill();
  }
  timer = setTimeout(onTimeout, spec.timeoutMs);
  const exitedPromise = proc.exited.then(() => {
    exited = true;
    armGrace();
  });
  try {
    await Promise.all([
      drain(proc.stdout as ReadableStream<Uint8Array>, out, readers),
      drain(proc.stderr as ReadableStream<Uint8Array>, err, readers),
      exitedPromise,
    ]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (graceTimer) clearTimeout(graceTimer);
    running.delete(id);
    if (spec.token) runsByToken.delete(spec.token);
    out.end();
    err.end();
    if (spec.codeFile) fs.rm(spec.codeFile, { force: true }, () => {});
  }
  // Members of the group may outlive the leader (background jobs with redirected output): remember the group so
  // that they are killed when the worker exits.
  try {
    process.kill(-pid, 0);
    lingering.add(pid);
  } catch {}
  const signal = proc.signalCode ?? null;
  answerOk(id, {
    exitCode: signal ? null : proc.exitCode,
    signal,
    timedOut: entry.timedOut,
    cancelled: entry.cancelled,
    durationMs: Math.round(performance.now() - started),
    stdout: out.text(),
    stderr: err.text(),
    stdoutBytes: out.total,
    stderrBytes: err.total,
    truncated: out.full || err.full,
  });
}

function commonRun(req: any): Pick<RunSpec, "env" | "stdin" | "timeoutMs" | "outputBytes" | "token"> {
  // In a space with capabilities, each run gets a token that attributes its programs' calls to it.
  const token = capabilityManifest.length > 0 ? crypto.randomUUID() : undefined;
  const env = buildEnv(req);
  return {
    env: token === undefined ? env : capabilityEnv(env, token),
    stdin: optStr(req, "stdin"),
    timeoutMs: int(req, "timeoutMs", 1),
    outputBytes: int(req, "outputBytes"),
    token,
  };
}

function checkId(req: any): number {
  const id = req.id;
  if (running.has(id)) throw invalid(`${req.op}: request ${id} is already running`, "use a new id for every request");
  return id;
}

function opCommandRun(req: any): Promise<void> {
  const id = checkId(req);
  const argv = strArray(req, "argv");
  const command = optStr(req, "command");
  let full: string[];
  if (argv !== undefined && command !== undefined) throw invalid(`${req.op}: give "argv" or "command", not both`);
  if (argv !== undefined) {
    if (argv.length === 0) throw invalid(`${req.op}: "argv" is empty`, "give the program and its arguments");
    full = argv;
  } else if (command !== undefined) full = ["/bin/sh", "-c", command];
  else throw invalid(`${req.op}: "argv" or "command" is required`);
  const common = commonRun(req);
  let cwd = ROOT_REAL;
  if (req.cwd !== undefined && req.cwd !== null) {
    const r = resolvePath(req.cwd, "cwd", req.op);
    let st: fs.Stats;
    try {
      st = fs.statSync(r.real);
    } catch (err) {
      throw fsError(err, "use as working directory", r.rel);
    }
    if (!st.isDirectory()) throw fsError({ code: "ENOTDIR" }, "use as working directory", r.rel);
    cwd = r.real;
  }
  const stdoutTo = openAppend(req, "stdoutTo");
  let stderrTo: { rel: string; fd: number } | undefined;
  try {
    stderrTo = openAppend(req, "stderrTo");
  } catch (e) {
    if (stdoutTo) fs.closeSync(stdoutTo.fd);
    throw e;
  }
  return run(id, { argv: full, cwd, ...common, stdoutTo, stderrTo });
}

function opCodeRun(req: any): Promise<void> {
  const id = checkId(req);
  const source = optStr(req, "source");
  const args = strArray(req, "args") ?? [];
  const common = commonRun(req);
  let file: string;
  let codeFile: string | undefined;
  if (source !== undefined && req.path !== undefined && req.path !== null) {
    throw invalid(`${req.op}: give "source" or "path", not both`);
  }
  if (source !== undefined) {
    codeFile = nodePath.join(CODE_DIR, `${id}.ts`);
    try {
      try {
        fs.writeFileSync(codeFile, source);
      } catch (err: any) {
        if (err?.code !== "ENOENT") throw err;
        fs.mkdirSync(CODE_DIR, { recursive: true, mode: 0o700 });
        fs.writeFileSync(codeFile, source);
      }
    } catch (err) {
      throw fsError(err, "write the program to", codeFile);
    }
    file = codeFile;
  } else if (req.path !== undefined && req.path !== null) {
    const r = resolvePath(req.path, "path", req.op);
    let st: fs.Stats;
    try {
      st = fs.statSync(r.real);
    } catch (err) {
      throw fsError(err, "run", r.rel);
    }
    if (st.isDirectory()) throw fsError({ code: "EISDIR" }, "run", r.rel);
    file = r.real;
  } else throw invalid(`${req.op}: "source" or "path" is required`);
  return run(id, { argv: [process.execPath, "run", file, ...args], cwd: ROOT_REAL, ...common, codeFile });
}

function opCancel(req: any): unknown {
  const target = req.target;
  if (typeof target !== "number") throw invalid(`${req.op}: "target" must be the numeric id of a running request`);
  const entry = running.get(target);
  if (!entry) return { cancelled: false };
  entry.cancelled = true;
  entry.kill();
  return { cancelled: true };
}

// ---------------------------------------------------------------------------------------------------------------
// Capabilities: calls from programs, forwarded to the engine
//
// When the space has capabilities, every command and program gets, in its environment, the path of a Unix socket
// this worker listens on, a token naming the run that started it, the list of capabilities, and BUN_OPTIONS that
// preload the `spaces:capabilities` module (capabilities.js) into any Bun it starts. A program's call travels as
// one JSON line `{t, c, cap, m, p}` over the socket; the worker forwards it to the engine on fd 4 as
// `{id, call, capability, method, params}` (id: the run's request), and the engine's `capability.answer`
// `{call, ok, result | error}` goes back to the program as `{c, ok, r | e}`. The worker decides nothing: the engine
// checks, audits and dispatches every call. A token whose run has ended is refused here.

const RUNTIME_INSIDE = "/opt/spaces/capabilities.js";
const RUNTIME = process.env.SPACES_CAPABILITIES_RUNTIME || RUNTIME_INSIDE;
const SOCKET_PATH = nodePath.join(os.tmpdir(), `.spaces-capabilities-${process.pid}.sock`);
const MAX_CALL_LINE = 8 * 1024 * 1024;

let capabilityManifest: { name: string; methods: string[] }[] = [];
let capabilityListener: ReturnType<typeof Bun.listen> | undefined;
const runsByToken = new Map<string, Running>();
let nextCall = 1;
/** Calls forwarded to the engine and not yet answered, by worker-wide call number. */
const callsInFlight = new Map<number, { socket: any; c: unknown; run: Running }>();

function capabilityEnv(env: Record<string, string>, token: string): Record<string, string> {
  const result = { ...env };
  result.SPACES_CAPABILITIES = JSON.stringify(capabilityManifest);
  result.SPACES_CAPABILITIES_SOCKET = SOCKET_PATH;
  result.SPACES_CAPABILITY_TOKEN = token;
  const preload = `--preload=${RUNTIME}`;
  result.BUN_OPTIONS = env.BUN_OPTIONS ? `${preload} ${env.BUN_OPTIONS}` : preload;
  return result;
}

/** Writes a line to a program's socket, queueing what the socket does not take at once. */
function socketWrite(socket: any, line: string): void {
  const state = socket.data;
  if (state.closed) return;
  if (state.queue.length > 0) {
    state.queue.push(Buffer.from(line, "utf8"));
    return;
  }
  const bytes = Buffer.from(line, "utf8");
  const written = socket.write(bytes);
  if (written < bytes.length) state.queue.push(bytes.subarray(Math.max(written, 0)));
}

function socketDrain(socket: any): void {
  const state = socket.data;
  while (state.queue.length > 0) {
    const head: Buffer = state.queue[0];
    const written = socket.write(head);
    if (written < head.length) {
      state.queue[0] = head.subarray(Math.max(written, 0));
      return;
    }
    state.queue.shift();
  }
}

function refuseCall(socket: any, c: unknown, code: string, message: string, hint: string): void {
  socketWrite(socket, JSON.stringify({ c, ok: false, e: { code, message, hint } }) + "\n");
}

function onProgramLine(socket: any, line: string): void {
  let msg: any;
  try {
    msg = JSON.parse(line);
  } catch {
    refuseCall(socket, null, "INVALID_PARAMS", "the call is not valid JSON", "pass JSON-serialisable params");
    return;
  }
  const c = msg?.c;
  const run = typeof msg?.t === "string" ? runsByToken.get(msg.t) : undefined;
  if (run === undefined) {
    refuseCall(
      socket,
      c,
      "DENIED",
      "the operation that started this program has ended, so its capability calls are refused",
      "call capabilities while the command.run or code.run that started the program is running",
    );
    return;
  }
  if (typeof msg.cap !== "string" || typeof msg.m !== "string") {
    refuseCall(socket, c, "INVALID_PARAMS", "a call names a capability and a method", "call e.g. crm.search({...})");
    return;
  }
  const call = nextCall++;
  callsInFlight.set(call, { socket, c, run });
  if (run.outstanding++ === 0) run.pauseClock();
  writeLine(
    '{"id":' + run.id + ',"call":' + call + ',"capability":' + JSON.stringify(msg.cap) + ',"method":' +
      JSON.stringify(msg.m) + ',"params":' + JSON.stringify(msg.p === undefined ? null : msg.p) + "}\n",
  );
}

function startCapabilityListener(): void {
  if (capabilityListener !== undefined) return;
  try {
    fs.rmSync(SOCKET_PATH, { force: true });
  } catch {}
  capabilityListener = Bun.listen({
    unix: SOCKET_PATH,
    socket: {
      open(socket: any) {
        socket.data = { buffer: "", queue: [] as Buffer[], closed: false };
      },
      data(socket: any, chunk: Buffer) {
        const state = socket.data;
        let text = state.buffer + chunk.toString("utf8");
        let nl = text.indexOf("\n");
        while (nl !== -1) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          if (line.length > 0) onProgramLine(socket, line);
          nl = text.indexOf("\n");
        }
        if (text.length > MAX_CALL_LINE) {
          refuseCall(socket, null, "INVALID_PARAMS", `a call is larger than ${MAX_CALL_LINE} bytes`, "pass smaller params");
          state.buffer = "";
          socket.end();
          return;
        }
        state.buffer = text;
      },
      drain(socket: any) {
        socketDrain(socket);
      },
      close(socket: any) {
        socket.data.closed = true;
      },
      error(socket: any) {
        socket.data.closed = true;
      },
    },
  } as any);
  try {
    fs.chmodSync(SOCKET_PATH, 0o666);
  } catch {}
}

/** `capabilities` {manifest}: the space's capabilities, for the programs started from now on. */
function opCapabilities(req: any): unknown {
  if (!Array.isArray(req.manifest)) throw invalid('"manifest" must be an array of {name, methods}');
  capabilityManifest = req.manifest.map((entry: any) => ({
    name: String(entry?.name),
    methods: Array.isArray(entry?.methods) ? entry.methods.map(String) : [],
  }));
  if (capabilityManifest.length > 0) startCapabilityListener();
  return { socket: capabilityManifest.length > 0 ? SOCKET_PATH : null };
}

/** `capability.answer` {call, ok, result | error}: the engine's answer to a forwarded call; never answered. */
function onCapabilityAnswer(req: any): void {
  const entry = callsInFlight.get(req.call);
  if (entry === undefined) return;
  callsInFlight.delete(req.call);
  if (--entry.run.outstanding === 0) entry.run.resumeClock();
  const line =
    req.ok === true
      ? '{"c":' + JSON.stringify(entry.c) + ',"ok":true,"r":' + JSON.stringify(req.result ?? null) + "}\n"
      : JSON.stringify({ c: entry.c, ok: false, e: req.error ?? { code: "HANDLER_ERROR", message: "failed" } }) + "\n";
  socketWrite(entry.socket, line);
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch

const syncOps: Record<string, (req: any) => unknown> = {
  "file.write": opFileWrite,
  "file.read": opFileRead,
  "file.edit": opFileEdit,
  "file.delete": opFileDelete,
  "file.list": opFileList,
  "file.move": opFileMove,
  cancel: opCancel,
  capabilities: opCapabilities,
  ping: () => ({}),
};

/**
 * Several file operations in one round trip: each runs in order, as if sent alone; with `stopOnError`, the
 * first failure ends the batch and the rest do not run. Answers `{results: [{ok, result | error}]}`.
 */
function opBatch(req: any): unknown {
  if (!Array.isArray(req.ops)) throw invalid('"ops" must be an array of file operations');
  const results: unknown[] = [];
  for (const sub of req.ops) {
    const op = sub?.op;
    const run = typeof op === "string" && op.startsWith("file.") ? syncOps[op] : undefined;
    const started = performance.now();
    try {
      if (run === undefined) throw invalid(`"${op}" cannot be batched`, "batch only file operations");
      const result = run(sub);
      results.push({ ok: true, result, ms: Math.round(performance.now() - started) });
    } catch (err) {
      results.push({ ok: false, error: errorPayload(err), ms: Math.round(performance.now() - started) });
      if (req.stopOnError === true) break;
    }
  }
  return { results };
}
syncOps.batch = opBatch;

/** A program may change the workspace in any way: the next disk check measures it again. */
const measuringAfter =
  (op: (req: any) => Promise<void>) =>
  (req: any): Promise<void> =>
    op(req).finally(() => {
      usageBytes = null;
    });

const asyncOps: Record<string, (req: any) => Promise<void>> = {
  "command.run": measuringAfter(opCommandRun),
  "code.run": measuringAfter(opCodeRun),
};

function dispatch(text: string): void {
  let req: any;
  try {
    req = JSON.parse(text);
  } catch (err: any) {
    answerError(null, invalid(`the request is not valid JSON: ${err?.message ?? err}`, "send one JSON object per line"));
    return;
  }
  if (typeof req !== "object" || req === null || Array.isArray(req)) {
    answerError(null, invalid("the request is not a JSON object", "send one JSON object per line"));
    return;
  }
  const id = req.id;
  try {
    if (typeof id !== "number" || !Number.isFinite(id)) throw invalid('the request has no numeric "id"');
    const op = req.op;
    if (op === "capability.answer") {
      onCapabilityAnswer(req);
      return;
    }
    const syncOp = syncOps[op];
    if (syncOp !== undefined && Object.hasOwn(syncOps, op)) {
      answerOk(id, syncOp(req));
      return;
    }
    const asyncOp = asyncOps[op];
    if (asyncOp !== undefined && Object.hasOwn(asyncOps, op)) {
      asyncOp(req).catch((err) => answerError(id, err));
      return;
    }
    throw invalid(`unknown op ${JSON.stringify(op)}`, "use one of the ops listed in docs/WORKER.md");
  } catch (err) {
    answerError(id, err);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Requests (fd 3): a byte stream split into lines

let shuttingDown = false;

function shutdown(): never {
  if (!shuttingDown) {
    shuttingDown = true;
    for (const entry of running.values()) {
      killGroup(entry.pid);
      if (entry.codeFile) {
        try {
          fs.rmSync(entry.codeFile, { force: true });
        } catch {}
      }
    }
    for (const pgid of lingering) killGroup(pgid);
  }
  process.exit(0);
}

async function readRequests(): Promise<void> {
  const stream = Bun.file(REQ_FD).stream();
  const pending: Uint8Array[] = [];
  let pendingLength = 0;
  let discarding = false;
  for await (const chunk of stream as any as AsyncIterable<Uint8Array>) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      if (discarding) {
        discarding = false;
      } else if (pendingLength === 0) {
        if (nl > start) handleLine(chunk, start, nl);
      } else {
        pending.push(chunk.subarray(start, nl));
        const whole = Buffer.concat(pending, pendingLength + nl - start);
        pending.length = 0;
        pendingLength = 0;
        handleLine(whole, 0, whole.length);
      }
      start = nl + 1;
    }
    if (start < chunk.length && !discarding) {
      pending.push(start === 0 ? chunk : chunk.subarray(start));
      pendingLength += chunk.length - start;
      if (pendingLength > MAX_LINE) {
        pending.length = 0;
        pendingLength = 0;
        discarding = true;
        answerError(null, invalid(`a request line is longer than ${MAX_LINE} bytes`, "send smaller requests"));
      }
    }
  }
}

const lineDecoder = new TextDecoder("utf-8");

function handleLine(bytes: Uint8Array, start: number, end: number): void {
  try {
    dispatch(lineDecoder.decode(bytes.subarray(start, end)));
  } catch (err: any) {
    log(`unexpected failure: ${err?.stack ?? err}`);
  }
}

// Run as a program (bun worker.ts, or its bundle), not when the tests import the exported helpers.
if (import.meta.main) {
  process.on("uncaughtException", (err: any) => log(`uncaught exception: ${err?.stack ?? err}`));
  process.on("unhandledRejection", (err: any) => log(`unhandled rejection: ${err?.stack ?? err}`));

  const reading = readRequests();
  writeLine(JSON.stringify({ ready: true, pid: process.pid, bun: Bun.version }) + "\n");
  reading.then(
    () => shutdown(),
    (err: any) => {
      log(`cannot read requests: ${err?.stack ?? err}`);
      shutdown();
    },
  );
}
