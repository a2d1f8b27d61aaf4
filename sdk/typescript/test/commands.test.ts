// Commands and programs: run, runTypeScript, exec (streaming), timeouts, denials, and AbortSignal cancellation.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type OutputChunk, OperationFailedError, PolicyDeniedError, type Space } from "agent-spaces";
import { startEngine, timed, type TestEngine } from "./support.js";

let test_: TestEngine;
let space: Space;

beforeAll(async () => {
  test_ = await startEngine();
  space = await test_.engine.createSpace({
    name: "commands",
    policy: { commands: { deny: ["curl *"] } },
  });
});

afterAll(async () => {
  await test_.stop();
});

describe("run", () => {
  test("an argv runs directly; a non-zero exit is a result, not an error", async () => {
    const result = await space.run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(result.exitCode).toBe(3);
    expect(result.ok).toBe(false);
    expect(result.stdout).toBe("out\n");
    expect(result.stderr).toBe("err\n");
    expect(result.signal).toBeNull();
    expect(result.timedOut).toBe(false);
    expect(result.truncated).toBe(false);
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    expect(result.events.map((event) => event.type)).toEqual([
      "operation.started",
      "command.exited",
      "operation.completed",
    ]);
  });

  test("a shell string runs with /bin/sh; cwd, env and stdin reach it", async () => {
    await space.writeFile("dir/keep", "");
    const result = await space.run("pwd; echo $GREETING; cat", {
      cwd: "dir",
      env: { GREETING: "hi" },
      stdin: "from stdin",
    });
    expect(result.ok).toBe(true);
    expect(result.stdout).toBe("/workspace/dir\nhi\nfrom stdin");
  });

  test("stdoutTo keeps the whole output in a workspace file", async () => {
    const result = await space.run("seq 1 5", { stdoutTo: "out/seq.txt" });
    expect(result.ok).toBe(true);
    expect(await space.readFile("out/seq.txt")).toBe("1\n2\n3\n4\n5\n");
  });

  test("a denied command throws PolicyDeniedError and does not run", async () => {
    const error = await space.run("curl https://example.com").catch((e) => e);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(error.rule).toBe("commands.deny: curl *");
    expect(error.events.some((event: { type: string }) => event.type === "operation.started")).toBe(false);
  });

  test("a command past timeoutMs throws TIMEOUT with the output so far", async () => {
    const { ms, error } = await timed(space.run("echo started; sleep 10", { timeoutMs: 300 }));
    expect(error).toBeInstanceOf(OperationFailedError);
    const failure = error as OperationFailedError;
    expect(failure.code).toBe("TIMEOUT");
    const exited = failure.events.find((event) => event.type === "command.exited");
    expect(exited?.type === "command.exited" && exited.timedOut).toBe(true);
    expect(exited?.type === "command.exited" && exited.stdout).toBe("started\n");
    expect(ms).toBeLessThan(5000);
  });

  test("a program that cannot start throws SPAWN_FAILED", async () => {
    const error = await space.run(["no-such-program"]).catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("SPAWN_FAILED");
  });

  test("runTypeScript runs a program on Bun in /workspace", async () => {
    const result = await space.runTypeScript(
      "const n: number = 6 * 7; console.log(n, process.cwd(), process.argv.slice(2).join(','), process.env.X);",
      { args: ["a", "b"], env: { X: "y" } },
    );
    expect(result.stdout).toBe("42 /workspace a,b y\n");
    expect(result.ok).toBe(true);
  });
});

describe("exec", () => {
  test("streams output as it comes, then the result", async () => {
    const exec = space.exec("for i in 1 2 3; do echo $i; sleep 0.05; done; echo done >&2");
    const chunks: OutputChunk[] = [];
    for await (const chunk of exec) chunks.push(chunk);
    const result = await exec.result;
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("1\n2\n3\n");
    expect(chunks.filter((chunk) => chunk.stream === "stdout").map((chunk) => chunk.data).join("")).toBe("1\n2\n3\n");
    expect(chunks.some((chunk) => chunk.stream === "stderr" && chunk.data === "done\n")).toBe(true);
    // Streaming keeps the command.output events in the result.
    expect(result.events.filter((event) => event.type === "command.output").length).toBeGreaterThanOrEqual(3);
  });

  test("the first chunk comes before the command ends", async () => {
    const exec = space.exec(["sh", "-c", "echo first; sleep 1; echo second"]);
    const started = Date.now();
    const iterator = exec[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value).toEqual({ stream: "stdout", data: "first\n" });
    expect(Date.now() - started).toBeLessThan(900);
    expect((await exec.result).stdout).toBe("first\nsecond\n");
  });

  test("cancel() kills it: result and iteration reject with CANCELLED", async () => {
    const exec = space.exec("echo going; sleep 30");
    const chunks: string[] = [];
    const iterated = (async () => {
      for await (const chunk of exec) {
        chunks.push(chunk.data);
        exec.cancel();
      }
    })();
    const { ms, error } = await timed(exec.result);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect((error as OperationFailedError).code).toBe("CANCELLED");
    expect(ms).toBeLessThan(5000);
    expect(await iterated.catch((e) => e)).toBe(error);
    expect(chunks).toEqual(["going\n"]);
  });

  test("two streaming commands at once each get their own output", async () => {
    const other = await test_.engine.createSpace();
    const [a, b] = [space.exec("echo a1; sleep 0.1; echo a2"), other.exec("echo b1; sleep 0.1; echo b2")];
    const collect = async (exec: AsyncIterable<OutputChunk>) => {
      let text = "";
      for await (const chunk of exec) text += chunk.data;
      return text;
    };
    expect(await Promise.all([collect(a), collect(b)])).toEqual(["a1\na2\n", "b1\nb2\n"]);
    await other.destroy();
  });
});

describe("cancellation", () => {
  test("aborting run() cancels the batch: OperationFailedError CANCELLED, promptly", async () => {
    const controller = new AbortController();
    const running = space.run("sleep 30", { signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    const { ms, error } = await timed(running);
    expect(error).toBeInstanceOf(OperationFailedError);
    const failure = error as OperationFailedError;
    expect(failure.code).toBe("CANCELLED");
    expect(failure.events.some((event) => event.type === "command.exited" && event.cancelled)).toBe(true);
    expect(ms).toBeLessThan(5000);
    // The space goes on.
    expect((await space.run("echo after")).stdout).toBe("after\n");
  });

  test("aborting runTypeScript() cancels it", async () => {
    const controller = new AbortController();
    const running = space.runTypeScript("await Bun.sleep(30_000)", { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    const error = await running.catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("CANCELLED");
  });

  test("an already aborted signal runs nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await space.run("touch should-not-exist", { signal: controller.signal }).catch((e) => e);
    expect(error.code).toBe("CANCELLED");
    const listing = await space.listFiles();
    expect(listing.some((entry) => entry.path === "should-not-exist")).toBe(false);
  });

  test("aborting a batch cancels it, queued operations included", async () => {
    const controller = new AbortController();
    const running = space.batch(
      [
        { kind: "command.run", command: "sleep 30" },
        { kind: "file.write", path: "after-cancel.txt", content: "x" },
      ],
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 200);
    const error = await running.catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("CANCELLED");
    const listing = await space.listFiles();
    expect(listing.some((entry) => entry.path === "after-cancel.txt")).toBe(false);
  });

  test("an AbortSignal.timeout works as a deadline", async () => {
    const error = await space.run("sleep 30", { signal: AbortSignal.timeout(200) }).catch((e) => e);
    expect(error.code).toBe("CANCELLED");
  });
});
