// Ambient declarations of exactly the Node.js and Bun APIs that the SDK, its tests and the examples use.
//
// Why this file: the repository builds without the npm registry, so there is no @types/node and no bun-types.
// `tsc` checks every use below against these declarations instead. They describe only what is called (with the
// overloads used), in the shapes Node 20 and Bun 1.x share; add a member here when code starts to use it. The
// compiled SDK's own declaration files do not depend on this file: its public types are structural (see
// src/streams.ts), so a project with @types/node or lib.dom uses them as they are.

// MARK: Web-standard globals (Bun and Node 20 both have them; TypeScript's es2022 lib does not declare them)

interface Console {
  log(...data: unknown[]): void;
  error(...data: unknown[]): void;
  warn(...data: unknown[]): void;
}
declare var console: Console;

/** A timer handle; `unref` lets the process exit while the timer is pending. */
interface Timer {
  ref(): Timer;
  unref(): Timer;
}
declare function setTimeout(callback: (...args: any[]) => void, ms?: number): Timer;
declare function clearTimeout(timer: Timer | undefined): void;
declare function setInterval(callback: (...args: any[]) => void, ms?: number): Timer;
declare function clearInterval(timer: Timer | undefined): void;

declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  decode(input?: Uint8Array, options?: { stream?: boolean }): string;
}

declare function btoa(data: string): string;
declare function atob(data: string): string;

interface AbortSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}
declare var AbortSignal: {
  prototype: AbortSignal;
  timeout(ms: number): AbortSignal;
};
declare class AbortController {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}

type ReadableStreamReadResult<T> = { done: false; value: T } | { done: true; value?: undefined };
interface ReadableStreamDefaultReader<R = any> {
  read(): Promise<ReadableStreamReadResult<R>>;
  releaseLock(): void;
  cancel(reason?: unknown): Promise<void>;
}
interface ReadableStream<R = any> {
  getReader(): ReadableStreamDefaultReader<R>;
}
interface WritableStreamDefaultWriter<W = any> {
  write(chunk: W): Promise<void>;
  close(): Promise<void>;
  releaseLock(): void;
}
interface WritableStream<W = any> {
  getWriter(): WritableStreamDefaultWriter<W>;
}
declare var ReadableStream: { prototype: ReadableStream };
declare var WritableStream: {
  prototype: WritableStream;
  new <W = any>(sink: { write?(chunk: W): void | Promise<void>; close?(): void | Promise<void> }): WritableStream<W>;
};

declare var performance: { now(): number };

/** `import.meta` as Bun gives it (`dir`, `path`) and as Node 20 and Bun both do (`url`). */
interface ImportMeta {
  url: string;
  /** Bun: the directory of the current file. */
  dir: string;
  /** Bun: the path of the current file. */
  path: string;
  /** Bun: whether this file is the entry point. */
  main: boolean;
}

// MARK: Node globals

declare var process: {
  argv: string[];
  env: Record<string, string | undefined>;
  pid: number;
  platform: string;
  exitCode: number | undefined;
  cwd(): string;
  exit(code?: number): never;
  kill(pid: number, signal?: string | number): boolean;
  stdout: { write(text: string): boolean };
  stderr: { write(text: string): boolean };
};

interface Buffer extends Uint8Array {
  toString(encoding?: "utf8" | "base64" | "hex"): string;
}
declare var Buffer: {
  byteLength(text: string, encoding?: "utf8"): number;
  from(text: string, encoding?: "utf8" | "base64"): Buffer;
};

// MARK: Node modules

declare module "node:child_process" {
  interface Readable {
    on(event: string, listener: (...args: any[]) => void): this;
    setEncoding(encoding: "utf8"): this;
  }
  interface Writable {
    write(chunk: string | Uint8Array, callback?: (error?: Error | null) => void): boolean;
    end(): void;
    on(event: string, listener: (...args: any[]) => void): this;
  }
  /** A child process. Its pipes are typed as present: this code always spawns with `stdio: "pipe"` for them. */
  interface ChildProcess {
    readonly pid: number | undefined;
    readonly exitCode: number | null;
    readonly signalCode: string | null;
    readonly stdin: Writable;
    readonly stdout: Readable;
    readonly stderr: Readable;
    kill(signal?: string | number): boolean;
    on(event: "exit", listener: (code: number | null, signal: string | null) => void): this;
    on(event: "close", listener: (code: number | null, signal: string | null) => void): this;
    on(event: "error", listener: (error: Error) => void): this;
    once(event: "exit", listener: (code: number | null, signal: string | null) => void): this;
  }
  interface SpawnOptions {
    stdio?: "pipe" | "inherit" | "ignore" | Array<"pipe" | "inherit" | "ignore">;
    env?: Record<string, string | undefined>;
    cwd?: string;
  }
  function spawn(command: string, args?: readonly string[], options?: SpawnOptions): ChildProcess;
}

declare module "node:fs" {
  interface Stats {
    size: number;
    isFile(): boolean;
    isDirectory(): boolean;
  }
  const constants: { F_OK: number; R_OK: number; W_OK: number; X_OK: number };
  function accessSync(path: string, mode?: number): void;
  function existsSync(path: string): boolean;
  function statSync(path: string): Stats;
  function readdirSync(path: string): string[];
  function readFileSync(path: string, encoding: "utf8" | { encoding: "utf8" }): string;
  function readFileSync(path: string): Buffer;
  function writeFileSync(path: string, data: string | Uint8Array): void;
  function mkdirSync(path: string, options?: { recursive?: boolean }): string | undefined;
  function mkdtempSync(prefix: string): string;
  function rmSync(path: string, options?: { recursive?: boolean; force?: boolean }): void;
  function chmodSync(path: string, mode: number): void;
}

declare module "node:os" {
  function tmpdir(): string;
}

declare module "node:path" {
  const delimiter: string;
  const sep: string;
  function join(...paths: string[]): string;
  function resolve(...paths: string[]): string;
  function relative(from: string, to: string): string;
  function dirname(path: string): string;
  function basename(path: string, suffix?: string): string;
  function isAbsolute(path: string): boolean;
}

declare module "node:readline" {
  interface Interface {
    on(event: "line", listener: (line: string) => void): this;
    on(event: "close", listener: () => void): this;
    close(): void;
  }
  function createInterface(options: {
    input: { on(event: string, listener: (...args: any[]) => void): unknown };
  }): Interface;
}

// MARK: Bun

declare namespace Bun {
  /** Bun's own writer for a subprocess's stdin. */
  interface FileSink {
    write(chunk: string | Uint8Array): number;
    flush(): number | Promise<number>;
    end(): number | Promise<number>;
  }
  interface Subprocess {
    readonly pid: number;
    readonly stdin: FileSink;
    readonly stdout: ReadableStream<Uint8Array>;
    readonly stderr: ReadableStream<Uint8Array>;
    readonly exited: Promise<number>;
    kill(signal?: string | number): void;
  }
  const version: string;
  type Stdio = "pipe" | "inherit" | "ignore";
  function spawn(
    command: string[],
    options?: { stdin?: Stdio; stdout?: Stdio; stderr?: Stdio; env?: Record<string, string | undefined>; cwd?: string },
  ): Subprocess;
  function write(path: string, data: string | Uint8Array): Promise<number>;
}

declare module "bun:test" {
  interface Matchers<T> {
    not: Matchers<T>;
    resolves: Matchers<Awaited<T>> & PromiseLike<void>;
    rejects: Matchers<unknown> & PromiseLike<void>;
    toBe(expected: unknown): void;
    toEqual(expected: unknown): void;
    toStrictEqual(expected: unknown): void;
    toMatchObject(expected: object): void;
    toContain(expected: unknown): void;
    toMatch(expected: string | RegExp): void;
    toStartWith(prefix: string): void;
    toEndWith(suffix: string): void;
    toHaveLength(length: number): void;
    toHaveProperty(path: string, value?: unknown): void;
    toBeDefined(): void;
    toBeUndefined(): void;
    toBeNull(): void;
    toBeTruthy(): void;
    toBeFalsy(): void;
    toBeInstanceOf(constructor: abstract new (...args: any[]) => unknown): void;
    toBeGreaterThan(value: number): void;
    toBeGreaterThanOrEqual(value: number): void;
    toBeLessThan(value: number): void;
    toBeLessThanOrEqual(value: number): void;
    toThrow(expected?: string | RegExp | (abstract new (...args: any[]) => unknown)): void;
  }
  function expect<T>(actual: T): Matchers<T>;
  type TestFunction = () => void | Promise<unknown>;
  function test(name: string, fn: TestFunction, timeoutMs?: number): void;
  function it(name: string, fn: TestFunction, timeoutMs?: number): void;
  function describe(name: string, fn: () => void): void;
  function beforeAll(fn: TestFunction, timeoutMs?: number): void;
  function afterAll(fn: TestFunction, timeoutMs?: number): void;
  function beforeEach(fn: TestFunction, timeoutMs?: number): void;
  function afterEach(fn: TestFunction, timeoutMs?: number): void;
  function setDefaultTimeout(ms: number): void;
}
