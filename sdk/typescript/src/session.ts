// One protocol session with an engine: the connection, and what the engine's messages are routed to — streamed
// events, approvals, capability calls, and the caller's listeners. Internal: `Spaces` and `Space` are its faces.

import { type ApprovalHandler, Approvals } from "./approvals.js";
import { CapabilityRegistry } from "./capabilities.js";
import { Connection } from "./connection.js";
import { EventRouter } from "./event-router.js";
import type { Approval, EngineNotifications, EventsEmittedParams, LogMessageParams } from "./protocol.js";
import type { LineWriter } from "./streams.js";

/** What `engine.on(name, listener)` can listen to. */
export interface EngineEvents {
  /** Every approval the engine asks for (`approvals/requested`), answered by a handler or not. */
  approval: Approval;
  /** Every streamed event of every space (`events/emitted`, batches submitted with streaming). */
  event: EventsEmittedParams;
  /** The engine's `log/message` notifications: something a person watching should see. */
  log: LogMessageParams;
}

export class Session {
  readonly connection: Connection;
  readonly router = new EventRouter();
  readonly capabilities = new CapabilityRegistry();
  readonly approvals: Approvals;
  /** Approval handlers of spaces that have their own. */
  readonly spaceApprovalHandlers = new Map<string, ApprovalHandler>();
  engineApprovalHandler: ApprovalHandler | undefined;
  private readonly listeners: { [K in keyof EngineEvents]: Set<(value: EngineEvents[K]) => void> } = {
    approval: new Set(),
    event: new Set(),
    log: new Set(),
  };

  constructor(writer: LineWriter) {
    this.connection = new Connection(writer, {
      notification: (method, params) => this.notification(method, params),
      request: (_method, params) => this.capabilities.invoke(params),
    });
    this.approvals = new Approvals(
      this.connection,
      (spaceId) => this.spaceApprovalHandlers.get(spaceId) ?? this.engineApprovalHandler,
      (approval) => this.emit("approval", approval),
    );
  }

  on<K extends keyof EngineEvents>(name: K, listener: (value: EngineEvents[K]) => void): () => void {
    this.listeners[name].add(listener);
    return () => this.off(name, listener);
  }

  off<K extends keyof EngineEvents>(name: K, listener: (value: EngineEvents[K]) => void): void {
    this.listeners[name].delete(listener);
  }

  /** Forgets what the SDK kept for a destroyed space. */
  spaceDestroyed(spaceId: string): void {
    this.approvals.spaceDestroyed(spaceId);
    this.capabilities.forget(spaceId);
    this.spaceApprovalHandlers.delete(spaceId);
  }

  private emit<K extends keyof EngineEvents>(name: K, value: EngineEvents[K]): void {
    for (const listener of this.listeners[name]) {
      try {
        listener(value);
      } catch {
        // A listener's failure is its own; the session goes on.
      }
    }
  }

  private notification<N extends keyof EngineNotifications>(method: N, params: EngineNotifications[N]): void {
    switch (method) {
      case "events/emitted": {
        const emitted = params as EventsEmittedParams;
        this.router.route(emitted);
        this.emit("event", emitted);
        break;
      }
      case "approvals/requested":
        this.approvals.received((params as EngineNotifications["approvals/requested"]).approval);
        break;
      case "log/message":
        this.emit("log", params as LogMessageParams);
        break;
    }
  }
}
