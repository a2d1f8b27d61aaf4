// Finding and starting `spaces serve` as a child process, and watching it: its exit and the tail of its stderr.

import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { SpacesError } from "./errors.js";
import type { NodeReadableLike, NodeWritableLike } from "./streams.js";

/** The engine's log levels (its `--log-level`). */
export type LogLevel = "trace" | "debug" | "info" | "notice" | "warning" | "error" | "critical";

export interface ProcessOptions {
  /** The `spaces` binary; see `findBinary` for where it is looked for without it. */
  binary?: string;
  /** More arguments for `spaces serve` (`["--pool", "0"]`). */
  args?: string[];
  /** The engine's state directory (`--state-dir`); default the engine's own (~/.local/share/agent-spaces). */
  stateDir?: string;
  /**
   * Keep the engine's state (spaces, workspaces, audit logs) in a fresh directory under the system's temporary
   * directory, removed by `close()`: for tests, examples and one-off work. Ignored when `stateDir` is given.
   */
  temporary?: boolean;
  /** Environment variables for the engine, over this process's. */
  env?: Record<string, string | undefined>;
  /** The engine's log level on stderr; default `warning`. */
  logLevel?: LogLevel;
  /**
   * Where the engine's stderr goes: `"inherit"` (default) to this process's stderr, `"ignore"`, or a function
   * called with each line. The last lines are kept either way, for EngineExitedError.
   */
  stderr?: "inherit" | "ignore" | ((line: string) => void);
}

/** The places searched, in order, as the error message and the README say them. */
export const SEARCH_ORDER =
  "options.binary, then the SPACES_BIN environment variable, then `spaces` on the PATH, then " +
  ".build/release/spaces and .build/debug/spaces under the current directory";

/**
 * The `spaces` binary to run: `options.binary`, else `SPACES_BIN`, else `spaces` on the PATH, else
 * `.build/release/spaces` then `.build/debug/spaces` under the current directory (a checkout of the engine).
 */
export function findBinary(binary: string | undefined): string {
  if (binary) return binary;
  const fromEnv = process.env.SPACES_BIN;
  if (fromEnv) return fromEnv;
  for (const directory of (process.env.PATH ?? "").split(delimiter)) {
    if (directory && isExecutable(join(directory, "spaces"))) return join(directory, "spaces");
  }
  for (const build of ["release", "debug"]) {
    const candidate = resolve(".build", build, "spaces");
    if (isExecutable(candidate)) return candidate;
  }
  throw new SpacesError(
    `cannot find the spaces engine binary; looked at ${SEARCH_ORDER}. Build it (swift build) or pass ` +
      `Spaces.start({ binary: "/path/to/spaces" }) or set SPACES_BIN`,
  );
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A started engine process: its pipes, its exit, and the tail of its stderr. */
export interface EngineProcess {
  binary: string;
  pid: number | undefined;
  stdin: NodeWritableLike;
  stdout: NodeReadableLike;
  /** Resolves when the process has exited; `error` is set when it could not be started at all. */
  exited: Promise<{ code: number | null; signal: string | null; error?: Error }>;
  /** The last lines of its stderr. */
  stderrTail(): string;
  kill(signal: string): void;
  /** Removes the state directory when it was made for this engine (`temporary`); does nothing otherwise. */
  removeTemporaryState(): void;
}

const TAIL_LINES = 30;

export function startProcess(options: ProcessOptions): EngineProcess {
  const binary = findBinary(options.binary);
  const args = ["serve", "--log-level", options.logLevel ?? "warning"];
  const temporaryState =
    !options.stateDir && options.temporary ? mkdtempSync(join(tmpdir(), "agent-spaces-")) : undefined;
  const stateDir = options.stateDir ?? temporaryState;
  if (stateDir) args.push("--state-dir", stateDir);
  args.push(...(options.args ?? []));
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...process.env, ...options.env })) {
    if (value !== undefined) env[name] = value;
  }
  const child = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"], env });

  const tail: string[] = [];
  let partial = "";
  const decoder = new TextDecoder();
  const sink = options.stderr ?? "inherit";
  child.stderr.on("data", (chunk: Uint8Array) => {
    const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      if (sink === "inherit") process.stderr.write(line + "\n");
      else if (typeof sink === "function") sink(line);
    }
  });

  const exited = new Promise<{ code: number | null; signal: string | null; error?: Error }>((resolve) => {
    child.on("exit", (code: number | null, signal: string | null) => resolve({ code, signal }));
    child.on("error", (error: Error) => {
      // Spawning failed (ENOENT, EACCES): there will be no exit event.
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
  });

  return {
    binary,
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout,
    exited,
    stderrTail: () => [...tail, ...(partial ? [partial] : [])].join("\n"),
    kill: (signal) => {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
    },
    removeTemporaryState: () => {
      if (temporaryState) rmSync(temporaryState, { recursive: true, force: true });
    },
  };
}
