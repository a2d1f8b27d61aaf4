// Reading a batch's events: what a single operation produced, and the typed error when it did not succeed.

import { ApprovalDeniedError, OperationFailedError, PolicyDeniedError, SpacesError } from "./errors.js";
import type { BatchResult, CommandExitedEvent, Event } from "./protocol.js";

/** How a command or program ended. A non-zero exit is a result, not an error: look at `exitCode` or `ok`. */
export interface RunResult {
  /** The exit status; null when a signal ended the process. */
  exitCode: number | null;
  /** The signal that ended it (`SIGKILL`), else null. */
  signal: string | null;
  /** Standard output, at most the space's `limits.outputBytes` (see `truncated`). */
  stdout: string;
  stderr: string;
  /** Always false in a result: a run that timed out throws OperationFailedError with code TIMEOUT. */
  timedOut: boolean;
  durationMs: number;
  /** Whether stdout or stderr was cut at the output bound. */
  truncated: boolean;
  /** Every byte written to stdout and stderr, cut or not. */
  stdoutBytes: number;
  stderrBytes: number;
  /** `exitCode === 0`. */
  ok: boolean;
  batchId: string;
  /** Every event of the batch, in order. */
  events: Event[];
}

/** The event of `type` an operation ended with, typed. */
export type EventOf<T extends Event["type"]> = Extract<Event, { type: T }>;

export function findEvent<T extends Event["type"]>(events: Event[], type: T, opId?: string): EventOf<T> | undefined {
  return events.find((event) => event.type === type && (opId === undefined || event.opId === opId)) as
    | EventOf<T>
    | undefined;
}

/**
 * The error for operation `opId` of a batch, or undefined when it did not fail: PolicyDeniedError for a policy
 * denial, ApprovalDeniedError when a person said no, OperationFailedError otherwise (CANCELLED too when the batch
 * was cancelled before the operation began).
 */
export function operationError(result: BatchResult, opId: string): SpacesError | undefined {
  const events = result.events;
  const failed = findEvent(events, "operation.failed", opId);
  if (!failed) {
    if (result.status === "cancelled" && !findEvent(events, "operation.completed", opId)) {
      return new OperationFailedError(
        { code: "CANCELLED", message: "the batch was cancelled before the operation ran", hint: "" },
        opId,
        events,
      );
    }
    return undefined;
  }
  if (failed.error.code === "DENIED") {
    const denied = findEvent(events, "policy.denied", opId);
    if (denied?.rule === "approval.denied") {
      const resolved = events.filter((event) => event.type === "approval.resolved" && event.opId === opId).pop();
      const approvalId = resolved?.type === "approval.resolved" ? resolved.approvalId : "";
      return new ApprovalDeniedError(approvalId, denied.reason, opId, events);
    }
    if (denied) return new PolicyDeniedError(denied, events);
  }
  return new OperationFailedError(failed.error, opId, events);
}

/** The success event of a single-operation batch, or the operation's error thrown. */
export function expectEvent<T extends Event["type"]>(result: BatchResult, opId: string, type: T): EventOf<T> {
  const error = operationError(result, opId);
  if (error) throw error;
  const event = findEvent(result.events, type, opId);
  if (!event) {
    throw new SpacesError(`the engine's answer has no ${type} event for ${opId} (batch status ${result.status})`);
  }
  return event;
}

/** A command's or program's result; throws when it was denied, timed out, was cancelled or could not start. */
export function runResult(result: BatchResult, opId: string): RunResult {
  const exited: CommandExitedEvent = expectEvent(result, opId, "command.exited");
  return {
    exitCode: exited.exitCode,
    signal: exited.signal,
    stdout: exited.stdout,
    stderr: exited.stderr,
    timedOut: exited.timedOut,
    durationMs: exited.durationMs,
    truncated: exited.truncated,
    stdoutBytes: exited.stdoutBytes,
    stderrBytes: exited.stderrBytes,
    ok: exited.exitCode === 0,
    batchId: result.batchId,
    events: result.events,
  };
}
