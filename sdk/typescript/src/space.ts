// A space: its files, commands and programs, batches, runs, audit log, policy, capabilities, tools and grants.
// Each method is one protocol call (a batch of one operation for files, commands and programs).

import type { ApprovalHandler } from "./approvals.js";
import { submit } from "./batch.js";
import { type CapabilityDefinition, declareCapability } from "./capabilities.js";
import { decodeBase64, encodeBase64 } from "./base64.js";
import { OperationFailedError } from "./errors.js";
import { type Exec, OutputQueue } from "./exec.js";
import type {
  Approval,
  AuditEntry,
  AuditReadResult,
  AuditVerifyResult,
  BatchResult,
  Event,
  FileEdit,
  FileEntry,
  Grant,
  Operation,
  Policy,
  PolicySpec,
  Space as SpaceInfo,
  SpacesAddCapabilityResult,
  SpacesDestroyResult,
  SpaceWithStats,
  ToolDefinition,
  ToolsCallResult,
} from "./protocol.js";
import { expectEvent, type RunResult, runResult } from "./results.js";
import { Run } from "./run.js";
import type { Session } from "./session.js";

/** What every call of a space may take. */
export interface CallOptions {
  /** Aborting cancels the batch (its processes are killed); the call rejects with OperationFailedError CANCELLED. */
  signal?: AbortSignal;
  /** The run (`space.startRun()`) the call counts in; default the space's implicit run. */
  runId?: string;
}

/** How a command runs (`command.run`). */
export interface RunOptions extends CallOptions {
  /** Working directory in the workspace; default `/workspace`. */
  cwd?: string;
  /** Environment variables added to the process. */
  env?: Record<string, string>;
  /** Text given to the process on standard input. */
  stdin?: string;
  /** Default the policy's `limits.timeoutMs` (120,000 unless changed); past it the call throws TIMEOUT. */
  timeoutMs?: number;
  /** Names of the space's secrets to give the process as environment variables. */
  secrets?: string[];
  /** Workspace files that receive the complete, unbounded stdout and stderr. */
  stdoutTo?: string;
  stderrTo?: string;
}

/** How a TypeScript program runs (`code.run`, in `/workspace`). */
export interface TypeScriptOptions extends CallOptions {
  /** Arguments after the program. */
  args?: string[];
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
  secrets?: string[];
}

/** How a batch is submitted. */
export interface BatchOptions extends CallOptions {
  /** After a failed operation: `stop` (default) or `continue` with the next. */
  onError?: "stop" | "continue";
  /** Run nothing; answer each operation's policy decision in `decisions`. */
  dryRun?: boolean;
  /** A retried batch with the same key answers the first one's result instead of running again. */
  idempotencyKey?: string;
  /** `true` to have the engine stream (and keep `command.output` events); a function is also called with each. */
  stream?: boolean | ((event: Event) => void);
}

/** One file's new state. */
export interface WrittenFile {
  path: string;
  bytes: number;
  sha256: string;
}

/** A tool's answer, and its text joined. */
export interface ToolResult extends ToolsCallResult {
  text: string;
}

export interface EditedFile {
  path: string;
  replacements: number;
  sha256: string;
}

export class Space {
  /** @internal Made by `engine.createSpace`, `getSpace` and `listSpaces`. */
  constructor(
    private readonly session: Session,
    /** The Space object as the engine last answered it (creation, listing, getSpace, updatePolicy). */
    public snapshot: SpaceInfo,
  ) {}

  get id(): string {
    return this.snapshot.spaceId;
  }

  get name(): string {
    return this.snapshot.name;
  }

  /** The space's resolved policy, as the engine last answered it (see `snapshot`). */
  get policy(): Policy {
    return this.snapshot.policy;
  }

  /**
   * Decides this space's approvals; without one, the engine's `onApproval` does, and without that they wait for
   * `engine.resolveApproval`.
   */
  get onApproval(): ApprovalHandler | undefined {
    return this.session.spaceApprovalHandlers.get(this.id);
  }

  set onApproval(handler: ApprovalHandler | undefined) {
    if (handler) this.session.spaceApprovalHandlers.set(this.id, handler);
    else this.session.spaceApprovalHandlers.delete(this.id);
  }

  /** The space now, with its counters (`spaces/get`). */
  async info(): Promise<SpaceWithStats> {
    const info = await this.session.connection.request("spaces/get", { spaceId: this.id });
    this.snapshot = info;
    return info;
  }

  // MARK: Files

  /** Creates or replaces a file (parent directories too). A Uint8Array is written as its bytes. */
  async writeFile(
    path: string,
    content: string | Uint8Array,
    options: CallOptions & { mode?: number; expectSha256?: string } = {},
  ): Promise<WrittenFile> {
    const { mode, expectSha256, ...call } = options;
    const text = typeof content === "string";
    const written = await this.one(
      {
        kind: "file.write",
        path,
        content: text ? content : encodeBase64(content),
        ...(text ? {} : { encoding: "base64" as const }),
        ...(mode !== undefined ? { mode } : {}),
        ...(expectSha256 !== undefined ? { expectSha256 } : {}),
      },
      "file.written",
      call,
    );
    return { path: written.path, bytes: written.bytes, sha256: written.sha256 };
  }

  /**
   * A UTF-8 file's text, all of it: a file longer than the space's output bound is read in parts. Content that is
   * not UTF-8 throws OperationFailedError NOT_UTF8 (read it with `readBytes`).
   */
  async readFile(path: string, options: CallOptions = {}): Promise<string> {
    const content = await this.one({ kind: "file.read", path }, "file.content", options);
    if (!content.truncated) return content.content;
    const bytes = await this.readBytes(path, options);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new OperationFailedError(
        { code: "NOT_UTF8", message: `${path} is not UTF-8 text`, hint: "read it with readBytes" },
        undefined,
        [],
      );
    }
  }

  /** A file's bytes, all of them or `length` from `offset`, read in parts where the output bound requires. */
  async readBytes(path: string, options: CallOptions & { offset?: number; length?: number } = {}): Promise<Uint8Array> {
    const { offset = 0, length, ...call } = options;
    const parts: Uint8Array[] = [];
    let position = offset;
    let end = length === undefined ? Infinity : offset + length;
    for (;;) {
      const range = end === Infinity ? {} : { length: end - position };
      const part = await this.one(
        { kind: "file.read", path, encoding: "base64", offset: position, ...range },
        "file.content",
        call,
      );
      parts.push(decodeBase64(part.content));
      position += part.bytes;
      end = Math.min(end, part.size);
      if (position >= end || part.bytes === 0) break;
    }
    return concat(parts);
  }

  /** Replaces text in a UTF-8 file: one edit or several, applied in order, written only if all apply. */
  async editFile(path: string, edits: FileEdit | FileEdit[], options: CallOptions = {}): Promise<EditedFile> {
    const edited = await this.one(
      { kind: "file.edit", path, edits: Array.isArray(edits) ? edits : [edits] },
      "file.edited",
      options,
    );
    return { path: edited.path, replacements: edited.replacements, sha256: edited.sha256 };
  }

  /** Deletes a file, or a directory (a non-empty one with `recursive`). */
  async deleteFile(path: string, options: CallOptions & { recursive?: boolean } = {}): Promise<void> {
    const { recursive, ...call } = options;
    await this.one({ kind: "file.delete", path, ...(recursive ? { recursive } : {}) }, "file.deleted", call);
  }

  /**
   * A directory's entries (default the workspace root), sorted by path; with `recursive`, everything below it.
   * At most `maxEntries` (default 10,000) are listed.
   */
  async listFiles(
    path?: string,
    options: CallOptions & { recursive?: boolean; maxEntries?: number } = {},
  ): Promise<FileEntry[]> {
    const { recursive, maxEntries, ...call } = options;
    const listing = await this.one(
      {
        kind: "file.list",
        ...(path !== undefined ? { path } : {}),
        ...(recursive ? { recursive } : {}),
        ...(maxEntries !== undefined ? { maxEntries } : {}),
      },
      "file.listing",
      call,
    );
    return listing.entries;
  }

  /** Moves or renames a file or directory; parent directories of `to` are created, an existing `to` is EEXIST. */
  async moveFile(from: string, to: string, options: CallOptions = {}): Promise<void> {
    await this.one({ kind: "file.move", from, to }, "file.moved", options);
  }

  // MARK: Commands and programs

  /**
   * Runs a command: an argv (`["bun", "main.ts"]`) run directly, or a shell string run by `/bin/sh -c`. Resolves
   * when it exits, whatever its exit code; throws PolicyDeniedError when the policy refuses it, and
   * OperationFailedError when it times out (TIMEOUT), is cancelled (CANCELLED) or cannot start (SPAWN_FAILED).
   */
  async run(command: string | string[], options: RunOptions = {}): Promise<RunResult> {
    const { signal, runId, ...fields } = options;
    const result = await this.submitOne(commandOperation(command, fields), { signal, runId });
    return runResult(result, "op_1");
  }

  /** Runs a TypeScript program on Bun in the space (`code.run`); results and errors as `run`. */
  async runTypeScript(source: string, options: TypeScriptOptions = {}): Promise<RunResult> {
    const { signal, runId, ...fields } = options;
    const operation: Operation = { kind: "code.run", language: "typescript", source, ...fields };
    const result = await this.submitOne(operation, { signal, runId });
    return runResult(result, "op_1");
  }

  /**
   * Starts a command and streams its output: iterate the returned Exec for chunks as they come, await
   * `exec.result` for the RunResult, call `exec.cancel()` to stop it.
   */
  exec(command: string | string[], options: RunOptions = {}): Exec {
    const { signal, runId, ...fields } = options;
    const output = new OutputQueue();
    const controller = new AbortController();
    const forwardAbort = () => controller.abort();
    if (signal?.aborted) controller.abort();
    else signal?.addEventListener("abort", forwardAbort, { once: true });
    const result = this.submitOne(commandOperation(command, fields), {
      signal: controller.signal,
      runId,
      onEvent: (event) => {
        if (event.type === "command.output") output.push({ stream: event.stream, data: event.data });
      },
    }).then((answer) => runResult(answer, "op_1"));
    result.then(
      () => output.finish(),
      (error: unknown) => output.finish({ error }),
    );
    result.catch(() => {}).finally(() => signal?.removeEventListener("abort", forwardAbort));
    return {
      result,
      cancel: () => controller.abort(),
      [Symbol.asyncIterator]: () => output[Symbol.asyncIterator](),
    };
  }

  // MARK: Batches

  /**
   * Runs operations in order, as one batch, and answers the BatchResult as the protocol has it: status and every
   * event. Failed and denied operations are in its events, not thrown; the call throws only when the engine
   * refuses the batch (EngineError), the signal aborts it (OperationFailedError CANCELLED), an approval it waited
   * for was denied without an answer (ApprovalDeniedError), or the engine dies (EngineExitedError). Approvals are
   * waited for and the batch continued, so the status is never `awaiting_approval`.
   */
  batch(operations: Operation[], options: BatchOptions = {}): Promise<BatchResult> {
    const { signal, runId, onError, dryRun, idempotencyKey, stream } = options;
    return submit(
      this.session,
      {
        spaceId: this.id,
        operations,
        ...(runId ? { runId } : {}),
        ...(onError ? { onError } : {}),
        ...(dryRun ? { dryRun } : {}),
        ...(idempotencyKey ? { idempotencyKey } : {}),
        ...(stream === true ? { stream } : {}),
      },
      { signal, onEvent: typeof stream === "function" ? stream : undefined },
    );
  }

  // MARK: Runs and the audit log

  /**
   * Starts a run: the run's own methods (`run.run(…)`, `run.writeFile(…)`) count their work in it, as does
   * `{ runId: run.id }` given to the space's; then `run.end()`.
   */
  async startRun(label?: string, metadata?: Record<string, unknown>): Promise<Run> {
    const started = await this.session.connection.request("runs/start", {
      spaceId: this.id,
      ...(label !== undefined ? { label } : {}),
      ...(metadata !== undefined ? { metadata } : {}),
    });
    return new Run(this.session, this, started);
  }

  /** A run's audit entries in order, secrets redacted (`runs/transcript`). */
  async transcript(runId: string): Promise<AuditEntry[]> {
    return (await this.session.connection.request("runs/transcript", { runId })).transcript;
  }

  /** Entries of the space's hash-chained audit log, after `afterSeq`, at most `limit` (default 1,000). */
  audit(options: { afterSeq?: number; limit?: number } = {}): Promise<AuditReadResult> {
    return this.session.connection.request("audit/read", { spaceId: this.id, ...options });
  }

  /** Re-reads the audit log and checks its hash chain; `ok` false names the first bad entry. */
  verifyAudit(): Promise<AuditVerifyResult> {
    return this.session.connection.request("audit/verify", { spaceId: this.id });
  }

  // MARK: Policy, capabilities, tools, approvals

  /** Replaces the policy (a preset, or a partial policy over the preset it names); answers the space. */
  async updatePolicy(policy: PolicySpec): Promise<SpaceInfo> {
    this.snapshot = await this.session.connection.request("spaces/updatePolicy", { spaceId: this.id, policy });
    return this.snapshot;
  }

  /** Offers programs started from now on one more capability, in any form `createSpace` takes. */
  async addCapability(name: string, definition: CapabilityDefinition): Promise<SpacesAddCapabilityResult> {
    const declared = declareCapability(name, definition);
    const added = await this.session.connection.request("spaces/addCapability", {
      spaceId: this.id,
      capability: declared.declaration,
    });
    this.session.capabilities.add(this.id, [declared]);
    return added;
  }

  /** The space's tools, as the Model Context Protocol's `tools/list` shapes them, ready to hand to a model. */
  async tools(): Promise<ToolDefinition[]> {
    return (await this.session.connection.request("tools/list", { spaceId: this.id })).tools;
  }

  /**
   * Calls a tool as a model would (`tools/call`): `content` and `isError` as the protocol has them, and `text`, the
   * content's text joined: what the model should read. A tool the policy asks about waits for the approval.
   */
  async callTool(name: string, args?: Record<string, unknown>, options: { runId?: string } = {}): Promise<ToolResult> {
    const result = await this.session.connection.request("tools/call", {
      spaceId: this.id,
      name,
      ...(args !== undefined ? { arguments: args } : {}),
      ...(options.runId ? { runId: options.runId } : {}),
    });
    return { ...result, text: result.content.map((part) => part.text).join("") };
  }

  /** The approvals of this space waiting for an answer. */
  async approvals(): Promise<Approval[]> {
    return (await this.session.connection.request("approvals/list", { spaceId: this.id })).approvals;
  }

  /** The grants `allow_for_space` answers made. */
  async grants(): Promise<Grant[]> {
    return (await this.session.connection.request("grants/list", { spaceId: this.id })).grants;
  }

  async revokeGrant(grantId: string): Promise<void> {
    await this.session.connection.request("grants/revoke", { grantId });
  }

  /** Stops every process of the space and removes it (its workspace too, unless `keepWorkspace`). */
  async destroy(options: { keepWorkspace?: boolean } = {}): Promise<SpacesDestroyResult> {
    const destroyed = await this.session.connection.request("spaces/destroy", { spaceId: this.id, ...options });
    this.session.spaceDestroyed(this.id);
    return destroyed;
  }

  // MARK: Submitting

  private submitOne(
    operation: Operation,
    options: CallOptions & { onEvent?: (event: Event) => void },
  ): Promise<BatchResult> {
    const { signal, runId, onEvent } = options;
    return submit(
      this.session,
      { spaceId: this.id, operations: [operation], ...(runId ? { runId } : {}) },
      { signal, onEvent },
    );
  }

  /** Runs one operation and answers its success event, or throws its error. */
  private async one<T extends Event["type"]>(operation: Operation, type: T, options: CallOptions) {
    return expectEvent(await this.submitOne(operation, options), "op_1", type);
  }
}

function commandOperation(command: string | string[], fields: Omit<RunOptions, "signal" | "runId">): Operation {
  return Array.isArray(command)
    ? { kind: "command.run", argv: command as [string, ...string[]], ...fields }
    : { kind: "command.run", command, ...fields };
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const bytes = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}
