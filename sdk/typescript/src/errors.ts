// The errors the SDK throws. Every one extends SpacesError, and every message says what happened and, where
// something can be done about it, what to do.

import type { Event } from "./protocol.js";

/** Every error the SDK throws extends this; `instanceof SpacesError` catches them all. */
export class SpacesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The engine answered a request with a JSON-RPC error: the request was refused, nothing ran. */
export class EngineError extends SpacesError {
  /** The JSON-RPC error code: -32602 invalid params, -32010 space not found, … (docs/PROTOCOL.md §14). */
  readonly code: number;
  /** How to fix the request, in the engine's words. */
  readonly hint: string;
  /** The offending field of the request (`params.operations[0].path`), when one is at fault. */
  readonly field: string | undefined;
  /** The error's whole `data` object. */
  readonly data: unknown;
  /** The method that was refused. */
  readonly method: string;

  constructor(method: string, error: { code: number; message: string; data?: unknown }) {
    const data = error.data as { hint?: unknown; field?: unknown } | undefined;
    const hint = typeof data?.hint === "string" ? data.hint : "";
    super(`${method}: ${error.message}${hint ? ` — ${hint}` : ""}`);
    this.code = error.code;
    this.hint = hint;
    this.field = typeof data?.field === "string" ? data.field : undefined;
    this.data = error.data;
    this.method = method;
  }
}

/** The space's policy refused an operation (its `policy.denied` event); nothing of it ran. */
export class PolicyDeniedError extends SpacesError {
  /** The rule that decided: `commands.deny: curl *`, `workspace.boundary`, … */
  readonly rule: string;
  /** What was refused and why. */
  readonly reason: string;
  /** The smallest policy change (or approval) that would allow it. */
  readonly suggestion: string;
  /** The operation's id in its batch. */
  readonly opId: string;
  /** Every event of the batch. */
  readonly events: Event[];

  constructor(denied: { rule: string; reason: string; suggestion: string; opId: string }, events: Event[]) {
    super(
      `denied by the space's policy: ${denied.reason} (rule ${denied.rule})` +
        (denied.suggestion ? `; ${denied.suggestion}` : ""),
    );
    this.rule = denied.rule;
    this.reason = denied.reason;
    this.suggestion = denied.suggestion;
    this.opId = denied.opId;
    this.events = events;
  }
}

/** The policy asked a person, and the answer was no, or nobody answered in time; the operation did not run. */
export class ApprovalDeniedError extends SpacesError {
  readonly approvalId: string;
  /** Why: the denial's reason, or how it was denied without an answer (timeout, cancel, destroy). */
  readonly reason: string;
  /** The operation's id in its batch, when known. */
  readonly opId: string | undefined;
  /** The events of the batch so far. */
  readonly events: Event[];

  constructor(approvalId: string, reason: string, opId: string | undefined, events: Event[]) {
    super(`approval ${approvalId} was denied: ${reason}`);
    this.approvalId = approvalId;
    this.reason = reason;
    this.opId = opId;
    this.events = events;
  }
}

/** An operation failed: `TIMEOUT`, `CANCELLED`, `ENOENT`, `CONFLICT`, … (docs/PROTOCOL.md, operation error codes). */
export class OperationFailedError extends SpacesError {
  /** The operation error code. */
  readonly code: string;
  /** What to do about it; may be empty when there is nothing to do (as for `CANCELLED`). */
  readonly hint: string;
  /** The operation's id in its batch, when it had begun. */
  readonly opId: string | undefined;
  /** Every event of the batch (for a run: `command.exited` with the output so far). */
  readonly events: Event[];

  constructor(failure: { code: string; message: string; hint: string }, opId: string | undefined, events: Event[]) {
    super(`${failure.code}: ${failure.message}${failure.hint ? ` — ${failure.hint}` : ""}`);
    this.code = failure.code;
    this.hint = failure.hint;
    this.opId = opId;
    this.events = events;
  }
}

/**
 * The engine is gone: its process exited (or was killed), or its output ended. Every call in progress rejects
 * with it at once, and so does every later call on the same engine.
 */
export class EngineExitedError extends SpacesError {
  /** The exit status, null when a signal ended it or it is unknown (an attached engine). */
  readonly code: number | null;
  /** The signal that ended it (`SIGKILL`), else null. */
  readonly signal: string | null;
  /** The last lines it wrote to standard error, when they were captured. */
  readonly stderr: string;

  constructor(what: string, code: number | null, signal: string | null, stderr: string) {
    const status = signal ? ` (killed by ${signal})` : code !== null ? ` (exit status ${code})` : "";
    const tail = stderr.trim() ? `; the last lines of its stderr:\n${stderr.trimEnd()}` : "";
    super(`${what}${status}; start a new engine to go on${tail}`);
    this.code = code;
    this.signal = signal;
    this.stderr = stderr;
  }
}
