// One `operations/submit` call, from request to final answer: events streamed to the caller as they happen, the
// batch cancelled when the caller's AbortSignal fires, and approvals waited for and continued until the batch
// ends. The caller's promise settles once, with every event of the batch.

import { ApprovalDeniedError, OperationFailedError, SpacesError } from "./errors.js";
import type { StreamClaim } from "./event-router.js";
import type { BatchResult, Event, Operation, OperationsSubmitParams } from "./protocol.js";
import type { Session } from "./session.js";

export interface SubmitOptions {
  signal?: AbortSignal;
  /** Called with each event as it happens (the batch is submitted with `stream: true`). */
  onEvent?: (event: Event) => void;
}

/** Where a call is; each phase says what aborting it means. */
type Phase =
  | { name: "submitting"; requestId: number }
  | { name: "awaitingApproval"; approvalId: string }
  | { name: "done" };

/**
 * Submits a batch and follows it to its end. Resolves with the whole batch (its final status, every event);
 * rejects with OperationFailedError CANCELLED when `signal` aborts, ApprovalDeniedError when an approval was
 * denied without an answer, EngineError when the engine refused the request, EngineExitedError when it died.
 */
export function submit(session: Session, params: OperationsSubmitParams, options: SubmitOptions): Promise<BatchResult> {
  return new BatchCall(session, params, options).run();
}

class BatchCall {
  private phase: Phase = { name: "done" };
  private batchId: string | undefined;
  private readonly events: Event[] = [];
  private claim: StreamClaim | undefined;
  private abortWait!: (error: Error) => void;
  /** Rejects when the caller aborts while the call waits for an approval (no request of its own in flight). */
  private readonly aborted = new Promise<never>((_, reject) => (this.abortWait = reject));

  constructor(
    private readonly session: Session,
    private readonly params: OperationsSubmitParams,
    private readonly options: SubmitOptions,
  ) {
    this.aborted.catch(() => {});
  }

  async run(): Promise<BatchResult> {
    const { signal, onEvent } = this.options;
    if (signal?.aborted) throw this.cancelled();
    const { spaceId } = this.params;
    if (onEvent) {
      this.claim = this.session.router.claim(spaceId, operationIds(this.params.operations), (event) => {
        this.batchId ??= event.batchId;
        onEvent(event);
      });
    }
    const onAbort = () => void this.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const stream = onEvent !== undefined || this.params.stream === true;
      const { id, response } = this.session.connection.send("operations/submit", { ...this.params, stream });
      this.phase = { name: "submitting", requestId: id };
      let result = await response;
      for (;;) {
        this.take(result);
        if (signal?.aborted) throw this.cancelled();
        if (result.status !== "awaiting_approval") {
          this.phase = { name: "done" };
          return { ...result, events: this.events };
        }
        const approvalId = pendingApproval(result);
        this.phase = { name: "awaitingApproval", approvalId };
        result = await this.session.approvals.wait(approvalId, spaceId, this.aborted);
      }
    } catch (error) {
      // An approval denied without an answer ends the call with the events it had.
      if (error instanceof ApprovalDeniedError) {
        throw new ApprovalDeniedError(error.approvalId, error.reason, error.opId, this.events);
      }
      throw error;
    } finally {
      this.phase = { name: "done" };
      signal?.removeEventListener("abort", onAbort);
      if (this.claim) this.session.router.release(this.claim);
    }
  }

  /** One answer: the batch's id, and its events after those of earlier answers. */
  private take(result: BatchResult): void {
    this.batchId = result.batchId;
    if (this.claim) this.session.router.bind(this.claim, result.batchId);
    this.events.push(...result.events);
  }

  /**
   * Cancels the batch. While the submit is in flight its answer (status `cancelled`) still comes and ends the
   * call; while it waits for an approval there is no answer to come, so the wait ends here.
   */
  private async abort(): Promise<void> {
    const connection = this.session.connection;
    const phase = this.phase;
    if (phase.name === "done") return;
    if (this.batchId) {
      await connection.request("operations/cancel", { batchId: this.batchId }).catch(() => {});
    } else if (phase.name === "submitting") {
      connection.notify("notifications/cancelled", { requestId: phase.requestId, reason: "aborted by the caller" });
    }
    if (phase.name === "awaitingApproval") this.abortWait(this.cancelled());
  }

  private cancelled(): OperationFailedError {
    const opId = [...this.events].reverse().find((event) => event.type === "operation.started")?.opId;
    return new OperationFailedError(
      { code: "CANCELLED", message: "the call was aborted, and its batch cancelled", hint: "" },
      opId,
      this.events,
    );
  }
}

/** The ids of a batch's operations, as its events will name them: `id`, else `op_N` by position. */
export function operationIds(operations: Operation[]): Set<string> {
  return new Set(operations.map((operation, index) => operation.id ?? `op_${index + 1}`));
}

/** The approval an `awaiting_approval` answer waits for: its last `approval.requested`. */
function pendingApproval(result: BatchResult): string {
  for (let index = result.events.length - 1; index >= 0; index--) {
    const event = result.events[index];
    if (event.type === "approval.requested") return event.approvalId;
  }
  throw new SpacesError(`batch ${result.batchId} awaits an approval but its answer names none`);
}
