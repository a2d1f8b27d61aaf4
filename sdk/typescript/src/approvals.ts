// Approvals: asking the caller's handler when the engine asks a person, and carrying each answer (whoever gives
// it) to the call that waits on it.
//
// The engine sends `approvals/requested` just before a batch answers `awaiting_approval`. The handler is asked
// then; its answer, or anyone's `engine.resolveApproval`, sends `approvals/resolve`, whose result — the rest of
// the batch — is the waiting call's to continue with. An approval nobody answers is denied by the engine at its
// `expiresAt` without any message, so a waiting call checks for it then.

import type { Connection } from "./connection.js";
import { ApprovalDeniedError, EngineError } from "./errors.js";
import type { Approval, ApprovalOption, BatchResult } from "./protocol.js";

/**
 * What an approval handler is asked: the pending approval as `approvals/requested` gives it — `title` for a prompt,
 * `what` the action, `why` the rule that asks, `impact` what allowing it could do, `options` the answers allowed.
 */
export type ApprovalRequest = Approval;

/** The answer to an approval: a decision, with a note for the audit log if wanted. */
export type ApprovalAnswer = ApprovalOption | { decision: ApprovalOption; note?: string };

/**
 * Decides an approval. Return (or resolve to) a decision, or `undefined` to leave it pending for someone to
 * answer with `engine.resolveApproval`. A handler that throws denies it (the note says why).
 */
export type ApprovalHandler = (
  approval: ApprovalRequest,
) => ApprovalAnswer | undefined | void | Promise<ApprovalAnswer | undefined | void>;

/** An answer's continuation, and whether a call has claimed it. */
interface Outcome {
  promise: Promise<BatchResult>;
  resolve(result: BatchResult): void;
  reject(error: Error): void;
  settled: boolean;
  claimed: boolean;
  createdAt: number;
}

/** How long an answered approval's result waits for a call to claim it (a `tools/call` never does). */
const UNCLAIMED_MS = 5 * 60_000;
/** After `expiresAt`, how long to wait before asking the engine whether the approval is still pending. */
const EXPIRY_GRACE_MS = 500;

export class Approvals {
  private readonly requested = new Map<string, Approval>();
  private readonly outcomes = new Map<string, Outcome>();
  private readonly resolving = new Set<string>();

  constructor(
    private readonly connection: Connection,
    /** The handler for a space: the space's own, else the engine's. */
    private readonly handlerFor: (spaceId: string) => ApprovalHandler | undefined,
    /** Tells the engine's `approval` listeners. */
    private readonly announce: (approval: Approval) => void,
  ) {}

  /** `approvals/requested`: remember it, tell listeners, and ask the handler. */
  received(approval: Approval): void {
    this.sweep();
    this.requested.set(approval.approvalId, approval);
    this.announce(approval);
    const handler = this.handlerFor(approval.spaceId);
    if (handler) void this.ask(handler, approval);
  }

  private async ask(handler: ApprovalHandler, approval: Approval): Promise<void> {
    let answer: ApprovalAnswer | undefined | void;
    try {
      answer = await handler(approval);
    } catch (error) {
      answer = { decision: "deny", note: `the approval handler failed: ${(error as Error)?.message ?? error}` };
    }
    if (answer === undefined) return; // left pending for engine.resolveApproval
    const { decision, note } = typeof answer === "string" ? { decision: answer, note: undefined } : answer;
    try {
      await this.resolve(approval.approvalId, decision, note);
    } catch (error) {
      // -32012: answered meanwhile by someone else, or expired; the waiting call learns either way.
      const gone = error instanceof EngineError && error.code === -32012;
      if (!gone) this.outcome(approval.approvalId).reject(error as Error);
    }
  }

  /** `approvals/resolve`; its result also continues the call waiting on the approval. */
  async resolve(approvalId: string, decision: ApprovalOption, note?: string): Promise<BatchResult> {
    this.resolving.add(approvalId);
    try {
      const result = await this.connection.request("approvals/resolve", {
        approvalId,
        decision,
        ...(note !== undefined ? { note } : {}),
      });
      this.outcome(approvalId).resolve(result);
      return result;
    } finally {
      this.resolving.delete(approvalId);
    }
  }

  /**
   * The rest of the batch once `approvalId` is answered. Rejects with ApprovalDeniedError when the engine denied
   * it without an answer (nobody answered by `expiresAt`), with EngineExitedError when the engine is gone, and
   * with `stop`'s error when it rejects first (the caller aborted).
   */
  async wait(approvalId: string, spaceId: string, stop: Promise<never>): Promise<BatchResult> {
    const outcome = this.outcome(approvalId);
    outcome.claimed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const later = (ms: number) => {
      timer = setTimeout(() => void checkExpiry().catch(() => {}), ms);
    };
    const checkExpiry = async (): Promise<void> => {
      if (outcome.settled) return;
      const known =
        this.requested.get(approvalId) ?? (await this.pending(spaceId)).find((one) => one.approvalId === approvalId);
      const due = known ? Date.parse(known.expiresAt) + EXPIRY_GRACE_MS - Date.now() : 0;
      if (due > 0) return later(due);
      // An answer on its way decides; if it fails (the approval was gone), the next check sees that.
      if (this.resolving.has(approvalId)) return later(1000);
      const stillPending = (await this.pending(spaceId)).some((one) => one.approvalId === approvalId);
      if (outcome.settled) return;
      if (stillPending) return later(1000);
      outcome.reject(
        new ApprovalDeniedError(
          approvalId,
          "nobody answered it before it expired (the policy's approvalTimeoutMs), so the engine denied it",
          known?.opId,
          [],
        ),
      );
    };
    void checkExpiry().catch(() => {});
    try {
      return await Promise.race([outcome.promise, this.connection.closed, stop]);
    } finally {
      if (timer) clearTimeout(timer);
      this.forget(approvalId);
    }
  }

  /** Ends the waits on a destroyed space's approvals: the engine denied them without an answer. */
  spaceDestroyed(spaceId: string): void {
    for (const [approvalId, approval] of this.requested) {
      if (approval.spaceId !== spaceId) continue;
      const outcome = this.outcomes.get(approvalId);
      outcome?.reject(new ApprovalDeniedError(approvalId, "its space was destroyed", approval.opId, []));
      this.forget(approvalId);
    }
  }

  private async pending(spaceId: string): Promise<Approval[]> {
    return (await this.connection.request("approvals/list", { spaceId })).approvals;
  }

  private outcome(approvalId: string): Outcome {
    let outcome = this.outcomes.get(approvalId);
    if (!outcome) {
      let resolve!: (result: BatchResult) => void;
      let reject!: (error: Error) => void;
      const promise = new Promise<BatchResult>((res, rej) => ((resolve = res), (reject = rej)));
      promise.catch(() => {}); // an answer nobody waits for (a tools/call's) must not be an unhandled rejection
      const created: Outcome = {
        promise,
        resolve: (result) => ((created.settled = true), resolve(result)),
        reject: (error) => ((created.settled = true), reject(error)),
        settled: false,
        claimed: false,
        createdAt: Date.now(),
      };
      this.outcomes.set(approvalId, (outcome = created));
    }
    return outcome;
  }

  private forget(approvalId: string): void {
    this.outcomes.delete(approvalId);
    this.requested.delete(approvalId);
  }

  /** Drops what no call will claim: answers to `tools/call` approvals (it answers by itself), long expired ones. */
  private sweep(): void {
    const now = Date.now();
    for (const [approvalId, outcome] of this.outcomes) {
      if (!outcome.claimed && outcome.settled && now - outcome.createdAt > UNCLAIMED_MS) this.forget(approvalId);
    }
    for (const [approvalId, approval] of this.requested) {
      const expired = Date.parse(approval.expiresAt) + UNCLAIMED_MS < now;
      if (expired && !this.outcomes.get(approvalId)?.claimed) this.forget(approvalId);
    }
  }
}
