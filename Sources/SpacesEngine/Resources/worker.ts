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
  if (!insideReal(real) || (noFollow && !insideReal(link))) {
    throw new WorkerError(
      "OUTSIDE_WORKSPACE",
      `${rel} resolves through a symbolic link to ${real}, outside the workspace`,
      "use a path whose symbolic links stay inside the workspace",
    );
  }
  return { rel, real, link, isRoot };
}

function notRoot(r: Resolved, what: string): void {
  if (r.isRoot || (r.link ? r.link === ROOT_REAL : r.real === ROOT_REAL)) {
    throw new WorkerError("INVALID_PATH", `the workspace root cannot be ${what}`, "name a file or directory inside the workspace");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

function sha256(data: Uint8Array): string {
  return Bun.SHA256.hash(data, "hex") as string;
}

function mkdirParent(real: string): void {
  fs.mkdirSync(nodePath.dirname(real), { recursive: true });
}

/** Reads a regular file whole (refusing directories, FIFOs and devices). */
function readWhole(r: Resolved, action: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(r.real, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw fsError(err, action, r.rel);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw fsError({ code: "EISDIR" }, action, r.rel);
    if (!st.isFile()) throw notRegular(r, action);
    return readRange(fd, 0, st.size);
  } catch (err) {
    throw fsError(err, action, r.rel);
  } finally {
    fs.closeSync(fd);
  }
}

function notRegular(r: Resolved, action: string): WorkerError {
  return new WorkerError("INVALID_PATH", `cannot ${action} ${r.rel}: not a regular file`, "only regular files can be read or edited");
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

function writeFile(r: Resolved, data: Uint8Array, mode: number | undefined): void {
  try {
    try {
      fs.writeFileSync(r.real, data);
    } catch (err: any) {
      if (err?.code !== "ENOENT") throw err;
      mkdirParent(r.real);
      fs.writeFileSync(r.real, data);
    }
    if (mode !== undefined) fs.chmodSync(r.real, mode);
  } catch (err) {
    throw fsError(err, "write", r.rel);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// File operations

function opFileWrite(req: any): unknown {
  const r = resolvePath(req.path, "path", req.op);
  notRoot(r, "written as a file");
  const content = str(req, "content");
  const encoding = encodingOf(req);
  const mode = optInt(req, "mode");
  if (mode !== undefined && mode > 0o7777) throw invalid(`${req.op}: "mode" must be a permission mode ≤ 4095 (0o7777)`);
  const expect = optStr(req, "expectSha256");
  const data = Buffer.from(content, encoding);
  if (expect !== undefined) {
    let current: string | null = null;
    const st = fs.lstatSync(r.real, { throwIfNoEntry: false });
    if (st) current = sha256(readWhole(r, "read"));
    if (current !== expect.toLowerCase()) {
      throw new WorkerError(
        "CONFLICT",
        current === null
          ? `${r.rel} does not exist, so it does not have the expected SHA-256`
          : `${r.rel} has changed: its SHA-256 is ${current}, not the expected ${expect}`,
        "read the file again, reapply your change to its current content, and write with the new sha256",
      );
    }
  }
  writeFile(r, data, mode);
  return { path: r.rel, bytes: data.length, sha256: sha256(data) };
}

function opFileRead(req: any): unknown {
  const r = resolvePath(req.path, "path", req.op);
  const encoding = encodingOf(req);
  const offset = optInt(req, "offset") ?? 0;
  const length = optInt(req, "length");
  const maxBytes = int(req, "maxBytes");
  let fd: number;
  try {
    fd = fs.openSync(r.real, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw fsError(err, "read", r.rel);
  }
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
  const r = resolvePath(req.path, "path", req.op);
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
  const buf = readWhole(r, "edit");
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
  try {
    fs.writeFileSync(r.real, out);
  } catch (err) {
    throw fsError(err, "edit", r.rel);
  }
  return { path: r.rel, replacements, sha256: sha256(out) };
}

function opFileDelete(req: any): unknown {
  const r = resolvePath(req.path, "path", req.op, true);
  notRoot(r, "deleted");
  const recursive = optBool(req, "recursive");
  try {
    const st = fs.lstatSync(r.link);
    if (st.isDirectory()) {
      if (recursive) fs.rmSync(r.link, { recursive: true, force: false });
      else fs.rmdirSync(r.link);
    } else fs.unlinkSync(r.link);
  } catch (err: any) {
    if (err?.code === "EEXIST") err = { code: "ENOTEMPTY" };
    throw fsError(err, "delete", r.rel);
  }
  return { path: r.rel };
}

interface Entry {
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
}

function opFileList(req: any): unknown {
  const r = resolvePath(req.path ?? ".", "path", req.op);
  const recursive = optBool(req, "recursive");
  const maxEntries = int(req, "maxEntries");
  let st: fs.Stats;
  try {
    st = fs.statSync(r.real);
  } catch (err) {
    throw fsError(err, "list", r.rel);
  }
  if (!st.isDirectory()) {
    throw new WorkerError("ENOTDIR", `cannot list ${r.rel}: it is not a directory`, "use file.read to read a file");
  }
  const entries: Entry[] = [];
  let truncated = false;
  const byName = (a: fs.Dirent, b: fs.Dirent) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  // Depth first with siblings sorted by name: entries come out sorted by path, component by component, so the
  // walk can stop as soon as maxEntries is exceeded.
  const walk = (dir: string, prefix: string, top: boolean): boolean => {
    let dirents: fs.Dirent[];
    try {
      dirents = fs.readdirSync(dir, { withFileTypes: true });
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
      const full = dir === "/" ? "/" + d.name : dir + "/" + d.name;
      const path = prefix + d.name;
      if (d.isDirectory()) {
        entries.push({ path, type: "directory", size: 0 });
        if (recursive && !walk(full, path + "/", false)) return false;
        continue;
      }
      const ls = fs.lstatSync(full, { throwIfNoEntry: false });
      if (!ls) continue; // vanished meanwhile
      const type = ls.isFile() ? "file" : ls.isSymbolicLink() ? "symlink" : ls.isDirectory() ? "directory" : "other";
      entries.push({ path, type, size: type === "directory" ? 0 : ls.size });
    }
    return true;
  };
  walk(r.real, r.rel === "." ? "" : r.rel + "/", true);
  return { path: r.rel, entries, truncated };
}

function opFileMove(req: any): unknown {
  const from = resolvePath(req.from, "from", req.op, true);
  const to = resolvePath(req.to, "to", req.op, true);
  notRoot(from, "moved");
  notRoot(to, "replaced by a move");
  try {
    fs.lstatSync(from.link);
  } catch (err) {
    throw fsError(err, "move", from.rel);
  }
  if (fs.lstatSync(to.link, { throwIfNoEntry: false })) {
    throw new WorkerError(
      "EEXIST",
      `cannot move ${from.rel} to ${to.rel}: ${to.rel} already exists`,
      "choose another destination, or delete it first with file.delete",
    );
  }
  try {
    mkdirParent(to.link);
  } catch (err) {
    throw fsError(err, "create the parent directories of", to.rel);
  }
  try {
    try {
      fs.renameSync(from.link, to.link);
    } catch (err: any) {
      if (err?.code !== "EXDEV") throw err;
      fs.cpSync(from.link, to.link, { recursive: true, verbatimSymlinks: true, errorOnExist: true, force: false });
      fs.rmSync(from.link, { recursive: true, force: false });
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
  const r = resolvePath(p, field, req.op);
  notRoot(r, "written as a file");
  try {
    try {
      return { rel: r.rel, fd: fs.openSync(r.real, "a") };
    } catch (err: any) {
      if (err?.code !== "ENOENT") throw err;
      mkdirParent(r.real);
      return { rel: r.rel, fd: fs.openSync(r.real, "a") };
    }
  } catch (err) {
    throw fsError(err, "open for appending", r.rel);
  }
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
  const entry: Running = {
    id,
    pid,
    cancelled: false,
    timedOut: false,
    kill: () => {},
    codeFile: spec.codeFile,
  };
  const readers: any[] = [];
  let exited = false;
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
    killGroup(pid);
    armGrace();
  };
  running.set(id, entry);
  const timer = setTimeout(() => {
    entry.timedOut = true;
    entry.kill();
  }, spec.timeoutMs);
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
    clearTimeout(timer);
    if (graceTimer) clearTimeout(graceTimer);
    running.delete(id);
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

function commonRun(req: any): Pick<RunSpec, "env" | "stdin" | "timeoutMs" | "outputBytes"> {
  return {
    env: buildEnv(req),
    stdin: optStr(req, "stdin"),
    timeoutMs: int(req, "timeoutMs", 1),
    outputBytes: int(req, "outputBytes"),
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
// Dispatch

const syncOps: Record<string, (req: any) => unknown> = {
  "file.write": opFileWrite,
  "file.read": opFileRead,
  "file.edit": opFileEdit,
  "file.delete": opFileDelete,
  "file.list": opFileList,
  "file.move": opFileMove,
  cancel: opCancel,
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

const asyncOps: Record<string, (req: any) => Promise<void>> = {
  "command.run": opCommandRun,
  "code.run": opCodeRun,
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
