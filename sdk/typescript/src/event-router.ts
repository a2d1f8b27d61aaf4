// Which call a streamed event (`events/emitted`) belongs to.
//
// A batch's id is in its events but the call learns it only from its answer, after streaming is over. Batches of
// one space run one at a time in the order they were submitted, and this client submits them in order over one
// connection; so the first event of a batch nobody knows belongs to the earliest streaming call of that space
// still waiting for its first event — checked against the call's operation ids, so a batch that streams nothing
// (a dry run, a repeated idempotency key) cannot take another's events.

import type { Event, EventsEmittedParams } from "./protocol.js";

export interface StreamClaim {
  readonly spaceId: string;
  readonly opIds: ReadonlySet<string>;
  readonly listener: (event: Event) => void;
  batchId: string | undefined;
}

export class EventRouter {
  private readonly byBatch = new Map<string, StreamClaim>();
  private readonly unclaimed = new Map<string, StreamClaim[]>();

  /** Registers a streaming call before its request is sent. */
  claim(spaceId: string, opIds: ReadonlySet<string>, listener: (event: Event) => void): StreamClaim {
    const claim: StreamClaim = { spaceId, opIds, listener, batchId: undefined };
    const queue = this.unclaimed.get(spaceId) ?? [];
    queue.push(claim);
    this.unclaimed.set(spaceId, queue);
    return claim;
  }

  /** The call has its batch id from an answer (its batch may have streamed nothing yet). */
  bind(claim: StreamClaim, batchId: string): void {
    if (claim.batchId) return;
    this.removeUnclaimed(claim);
    claim.batchId = batchId;
    this.byBatch.set(batchId, claim);
  }

  release(claim: StreamClaim): void {
    this.removeUnclaimed(claim);
    if (claim.batchId && this.byBatch.get(claim.batchId) === claim) this.byBatch.delete(claim.batchId);
  }

  /** Routes one `events/emitted` notification; an event of no call (another client's batch) is dropped. */
  route({ spaceId, batchId, event }: EventsEmittedParams): void {
    let claim = this.byBatch.get(batchId);
    if (!claim) {
      claim = this.unclaimed.get(spaceId)?.find((candidate) => candidate.opIds.has(event.opId));
      if (claim) this.bind(claim, batchId);
    }
    claim?.listener(event);
  }

  private removeUnclaimed(claim: StreamClaim): void {
    const queue = this.unclaimed.get(claim.spaceId);
    if (!queue) return;
    const index = queue.indexOf(claim);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.unclaimed.delete(claim.spaceId);
  }
}
