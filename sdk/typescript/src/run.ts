// A run: the batches of one piece of work (an agent's turn, a task), counted and recorded together.

import type { Exec } from "./exec.js";
import type {
  AuditEntry,
  BatchResult,
  FileEdit,
  FileEntry,
  Operation,
  Run as RunSummary,
  RunStatus,
  RunsStartResult,
} from "./protocol.js";
import type { RunResult } from "./results.js";
import type { Session } from "./session.js";
import type {
  BatchOptions,
  CallOptions,
  EditedFile,
  RunOptions,
  Space,
  ToolResult,
  TypeScriptOptions,
  WrittenFile,
} from "./space.js";

/** A call's options inside a run: the run is given. */
type InRun<T extends CallOptions> = Omit<T, "runId">;

/**
 * A run of a space, from `space.startRun()`. Its methods are the space's, counted in the run; `end()` says how it
 * went and answers its summary (operations, artifacts), `transcript()` its audit entries.
 */
export class Run {
  readonly id: string;
  readonly spaceId: string;
  readonly label: string | undefined;
  readonly startedAt: string;

  /** Made by `space.startRun()`. */
  constructor(
    private readonly session: Session,
    /** The space the run belongs to. */
    readonly space: Space,
    started: RunsStartResult,
  ) {
    this.id = started.runId;
    this.spaceId = started.spaceId;
    this.label = started.label;
    this.startedAt = started.startedAt;
  }

  /** Ends the run (`succeeded` unless told otherwise) and answers its summary; again, the same summary. */
  end(status?: RunStatus): Promise<RunSummary> {
    return this.session.connection.request("runs/end", { runId: this.id, ...(status ? { status } : {}) });
  }

  /** The run's audit entries in order, secrets redacted: what `engine.replay` takes. */
  async transcript(): Promise<AuditEntry[]> {
    return (await this.session.connection.request("runs/transcript", { runId: this.id })).transcript;
  }

  // The space's calls, in this run.

  writeFile(
    path: string,
    content: string | Uint8Array,
    options: InRun<CallOptions> & { mode?: number; expectSha256?: string } = {},
  ): Promise<WrittenFile> {
    return this.space.writeFile(path, content, { ...options, runId: this.id });
  }

  readFile(path: string, options: InRun<CallOptions> = {}): Promise<string> {
    return this.space.readFile(path, { ...options, runId: this.id });
  }

  readBytes(
    path: string,
    options: InRun<CallOptions> & { offset?: number; length?: number } = {},
  ): Promise<Uint8Array> {
    return this.space.readBytes(path, { ...options, runId: this.id });
  }

  editFile(path: string, edits: FileEdit | FileEdit[], options: InRun<CallOptions> = {}): Promise<EditedFile> {
    return this.space.editFile(path, edits, { ...options, runId: this.id });
  }

  deleteFile(path: string, options: InRun<CallOptions> & { recursive?: boolean } = {}): Promise<void> {
    return this.space.deleteFile(path, { ...options, runId: this.id });
  }

  listFiles(
    path?: string,
    options: InRun<CallOptions> & { recursive?: boolean; maxEntries?: number } = {},
  ): Promise<FileEntry[]> {
    return this.space.listFiles(path, { ...options, runId: this.id });
  }

  moveFile(from: string, to: string, options: InRun<CallOptions> = {}): Promise<void> {
    return this.space.moveFile(from, to, { ...options, runId: this.id });
  }

  run(command: string | string[], options: InRun<RunOptions> = {}): Promise<RunResult> {
    return this.space.run(command, { ...options, runId: this.id });
  }

  runTypeScript(source: string, options: InRun<TypeScriptOptions> = {}): Promise<RunResult> {
    return this.space.runTypeScript(source, { ...options, runId: this.id });
  }

  exec(command: string | string[], options: InRun<RunOptions> = {}): Exec {
    return this.space.exec(command, { ...options, runId: this.id });
  }

  batch(operations: Operation[], options: InRun<BatchOptions> = {}): Promise<BatchResult> {
    return this.space.batch(operations, { ...options, runId: this.id });
  }

  callTool(name: string, args?: Record<string, unknown>): Promise<ToolResult> {
    return this.space.callTool(name, args, { runId: this.id });
  }
}
