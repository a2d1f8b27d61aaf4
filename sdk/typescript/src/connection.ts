// JSON-RPC 2.0 over lines: the SDK's requests matched to their responses by id, the engine's notifications and
// requests (`capabilities/invoke`) handed to the session. Knows framing and ids, not spaces.

import { EngineError, EngineExitedError, SpacesError } from "./errors.js";
import type { ClientNotifications, ClientRequests, EngineNotifications, EngineRequests } from "./protocol.js";
import type { LineWriter } from "./streams.js";

type Method = keyof ClientRequests;
type Params<M extends Method> = ClientRequests[M]["params"];
type Result<M extends Method> = ClientRequests[M]["result"];

/** What the connection hands upward. */
export interface ConnectionHandlers {
  notification<N extends keyof EngineNotifications>(method: N, params: EngineNotifications[N]): void;
  /** A request from the engine; the promise's value is the result, its rejection the error sent back. */
  request<R extends keyof EngineRequests>(method: R, params: EngineRequests[R]["params"]): Promise<unknown>;
}

interface Waiter {
  method: string;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

export class Connection {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();
  private closedWith: EngineExitedError | undefined;
  private rejectClosed!: (error: EngineExitedError) => void;
  /**
   * Rejects with the EngineExitedError once the connection is closed. Waits that are not requests (an approval
   * nobody has answered yet) race it, so that nothing hangs on a dead engine.
   */
  readonly closed: Promise<never>;
  /** The longest line the engine reads (`initialize` reports it); longer requests are refused here. */
  maxLineBytes = 16 * 1024 * 1024;

  constructor(
    private readonly writer: LineWriter,
    private readonly handlers: ConnectionHandlers,
  ) {
    this.closed = new Promise<never>((_, reject) => (this.rejectClosed = reject));
    this.closed.catch(() => {}); // observed by whoever races it; never an unhandled rejection
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Sends a request; `id` is known at once (for `notifications/cancelled`), the result when it comes. */
  send<M extends Method>(method: M, params: Params<M>): { id: number; response: Promise<Result<M>> } {
    const id = this.nextId++;
    const response = new Promise<Result<M>>((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      const line = JSON.stringify({ jsonrpc: "2.0", id, method, params });
      const tooLong = this.tooLong(line);
      if (tooLong) {
        const advice = "send less at once (write a large file in parts, or copy it in with createSpace({ copyFrom }))";
        return reject(new SpacesError(`${method}: ${tooLong}; ${advice}`));
      }
      this.waiting.set(id, { method, resolve: resolve as (result: unknown) => void, reject });
      this.writer.write(line + "\n");
    });
    return { id, response };
  }

  request<M extends Method>(method: M, params: Params<M>): Promise<Result<M>> {
    return this.send(method, params).response;
  }

  notify<N extends keyof ClientNotifications>(method: N, params: ClientNotifications[N]): void {
    if (this.closedWith) return;
    this.writer.write(JSON.stringify({ jsonrpc: "2.0", method, params }) + "\n");
  }

  /** One line from the engine. */
  receive(line: string): void {
    let message: any;
    try {
      message = JSON.parse(line);
    } catch {
      return; // stdout carries only protocol messages; a line that is not one is none of ours
    }
    for (const one of Array.isArray(message) ? message : [message]) this.dispatch(one);
  }

  /** Ends the connection: every waiting request rejects with `error`, and so does every later one. */
  close(error: EngineExitedError): void {
    if (this.closedWith) return;
    this.closedWith = error;
    this.rejectClosed(error);
    for (const waiter of this.waiting.values()) waiter.reject(error);
    this.waiting.clear();
    this.writer.end();
  }

  private dispatch(message: any): void {
    if (typeof message !== "object" || message === null) return;
    if (typeof message.method === "string") {
      if (message.id === undefined || message.id === null) {
        this.handlers.notification(message.method, message.params ?? {});
      } else {
        this.answer(message.id, message.method, message.params ?? {});
      }
      return;
    }
    if (typeof message.id !== "number") return; // -32700/-32600 with id null: a line we never sent
    const waiter = this.waiting.get(message.id);
    if (!waiter) return;
    this.waiting.delete(message.id);
    if (message.error) waiter.reject(new EngineError(waiter.method, message.error));
    else waiter.resolve(message.result);
  }

  /** Answers one engine request; calls may overlap, each answered when its handler settles. */
  private answer(id: string | number, method: string, params: any): void {
    const reply = (body: object) => {
      if (this.closedWith) return;
      let line = JSON.stringify({ jsonrpc: "2.0", id, ...body });
      const tooLong = this.tooLong(line);
      if (tooLong) {
        const message = `the handler's result is too large: ${tooLong}`;
        line = JSON.stringify({ jsonrpc: "2.0", id, error: { code: -32000, message, data: { hint: "return less" } } });
      }
      this.writer.write(line + "\n");
    };
    if (method !== "capabilities/invoke") {
      reply({ error: { code: -32601, message: `this client does not serve ${method}` } });
      return;
    }
    this.handlers
      .request(method, params)
      // A result must be JSON; undefined (a handler that returns nothing) is null. A result JSON cannot hold
      // (a BigInt, a cycle) throws in reply and is answered as the handler's error.
      .then((result) => reply({ result: result === undefined ? null : result }))
      .catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        const hint = (error as { hint?: unknown } | null)?.hint;
        reply({
          error: {
            code: -32000,
            message: message || "the handler failed",
            ...(typeof hint === "string" ? { data: { hint } } : {}),
          },
        });
      });
  }

  /** Why a line cannot be sent, or undefined when it fits the engine's line limit. */
  private tooLong(line: string): string | undefined {
    // A UTF-16 code unit is at most 3 bytes of UTF-8: count exactly only when it could matter.
    if (line.length * 3 < this.maxLineBytes) return undefined;
    const bytes = new TextEncoder().encode(line).length;
    if (bytes < this.maxLineBytes) return undefined;
    return `the message is ${bytes} bytes and the engine reads at most ${this.maxLineBytes} per line`;
  }
}
