// Lines in and out of the engine over whatever streams the caller has: Node streams (a child process's stdin and
// stdout), web streams (ReadableStream/WritableStream), or a Bun FileSink (`Bun.spawn`'s stdin). The protocol is
// one JSON value per line (docs/PROTOCOL.md §1).

/** What the SDK reads the engine's messages from, as a Node stream does it (only `on` is used). */
export interface NodeReadableLike {
  on(event: string, listener: (...args: any[]) => void): unknown;
}

/** What the SDK writes messages to, as a Node stream or a Bun FileSink does it. */
export interface NodeWritableLike {
  write(chunk: string): unknown;
  end(): unknown;
  /** Bun's FileSink buffers until flushed. */
  flush?(): unknown;
  on?(event: string, listener: (...args: any[]) => void): unknown;
}

/** The engine's standard input, as the SDK writes to it. */
export type EngineInput = NodeWritableLike | WritableStream<Uint8Array>;

/** The engine's standard output, as the SDK reads it. */
export type EngineOutput = NodeReadableLike | ReadableStream<Uint8Array>;

export interface LineWriter {
  write(line: string): void;
  end(): void;
}

/**
 * Writes lines to `input`. A write that fails (the engine has exited: EPIPE) is reported to `onError` instead of
 * being thrown: the reader sees the end of output and fails every waiting call.
 */
export function lineWriter(input: EngineInput, onError: (error: unknown) => void): LineWriter {
  if (isWebWritable(input)) {
    const writer = input.getWriter();
    const encoder = new TextEncoder();
    // Web writes are asynchronous; chaining them keeps lines whole and in order.
    let last: Promise<void> = Promise.resolve();
    return {
      write(line) {
        last = last.then(() => writer.write(encoder.encode(line))).catch(onError);
      },
      end() {
        last = last.then(() => writer.close()).catch(() => {});
      },
    };
  }
  input.on?.("error", onError);
  return {
    write(line) {
      try {
        input.write(line);
        input.flush?.();
      } catch (error) {
        onError(error);
      }
    },
    end() {
      try {
        input.end();
      } catch {
        // Already closed: nothing to end.
      }
    },
  };
}

/**
 * Calls `onLine` with each non-blank line of `output` (without its `\n` or `\r\n`), then `onEnd` once, when the
 * output ends or fails.
 */
export function readLines(output: EngineOutput, onLine: (line: string) => void, onEnd: () => void): void {
  const decoder = new TextDecoder();
  let buffered = "";
  let ended = false;
  const take = (text: string) => {
    buffered += text;
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim() !== "") onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
      newline = buffered.indexOf("\n");
    }
  };
  const end = () => {
    if (ended) return;
    ended = true;
    take(decoder.decode() + "\n");
    onEnd();
  };
  if (isWebReadable(output)) {
    const reader = output.getReader();
    (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          take(typeof value === "string" ? value : decoder.decode(value, { stream: true }));
        }
      } catch {
        // A failed read ends the output like its end does.
      }
      end();
    })();
    return;
  }
  output.on("data", (chunk: Uint8Array | string) => {
    take(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }));
  });
  output.on("end", end);
  output.on("close", end);
  output.on("error", end);
}

function isWebWritable(input: EngineInput): input is WritableStream<Uint8Array> {
  return typeof (input as { getWriter?: unknown }).getWriter === "function";
}

function isWebReadable(output: EngineOutput): output is ReadableStream<Uint8Array> {
  return typeof (output as { getReader?: unknown }).getReader === "function";
}
