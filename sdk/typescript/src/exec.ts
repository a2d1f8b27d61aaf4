// A command whose output is read as it comes: an async iterable of chunks, the result when it ends, a cancel.

import type { RunResult } from "./results.js";

/** A piece of a running command's output. */
export interface OutputChunk {
  stream: "stdout" | "stderr";
  data: string;
}

/**
 * A running command (`space.exec`). Iterate it for its output as it comes (`for await (const chunk of exec)`);
 * `result` is the RunResult when it ends. A command that is denied, times out or is cancelled rejects `result`,
 * and the iteration throws the same error after the chunks that came.
 */
export interface Exec extends AsyncIterable<OutputChunk> {
  readonly result: Promise<RunResult>;
  /** Cancels the command (its process tree is killed); `result` rejects with OperationFailedError CANCELLED. */
  cancel(): void;
}

/** The chunks of one command, queued until read; the iteration ends when `finish` is called. */
export class OutputQueue implements AsyncIterable<OutputChunk> {
  private readonly chunks: OutputChunk[] = [];
  private wake: (() => void) | undefined;
  private finished = false;
  private failure: { error: unknown } | undefined;

  push(chunk: OutputChunk): void {
    this.chunks.push(chunk);
    this.wakeReader();
  }

  /** No more chunks; the iteration ends, or throws `error` when given. */
  finish(error?: { error: unknown }): void {
    this.finished = true;
    this.failure = error;
    this.wakeReader();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutputChunk> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk) {
        yield chunk;
        continue;
      }
      if (this.finished) {
        if (this.failure) throw this.failure.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private wakeReader(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
