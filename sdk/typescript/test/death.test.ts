// The engine dying under the SDK: every call in progress — a request, a streaming command, a wait for an
// approval — rejects with EngineExitedError at once, and so does every later call. Nothing hangs.

import { describe, expect, test } from "bun:test";
import { EngineExitedError } from "agent-spaces";
import { rmSync } from "node:fs";
import { eventually, startEngine, timed } from "./support.js";

describe("the engine dies", () => {
  test("kill -9 mid-call: every pending call rejects with EngineExitedError promptly", async () => {
    const { engine, stateDir } = await startEngine({ logLevel: "info", stderr: "ignore" });
    // Three spaces: operations of one space run one at a time, and these all wait at once.
    const [space, streaming, asking] = await Promise.all([
      engine.createSpace(),
      engine.createSpace(),
      engine.createSpace({ policy: { commands: { ask: ["touch *"] } } }),
    ]);
    let approvals = 0;
    engine.on("approval", () => approvals++);

    const running = timed(space.run("sleep 30"));
    const exec = streaming.exec("echo streaming; sleep 30");
    const iterated = (async () => {
      for await (const _ of exec) {
        // Reading until the iteration ends or throws.
      }
    })();
    const awaiting = timed(asking.run("touch never.txt")); // waits for an approval nobody gives
    await eventually(() => approvals === 1);

    process.kill(engine.pid!, "SIGKILL");
    const status = await engine.exited;
    expect(status).toEqual({ code: null, signal: "SIGKILL" });

    for (const outcome of [await running, await awaiting]) {
      expect(outcome.error).toBeInstanceOf(EngineExitedError);
      expect(outcome.ms).toBeLessThan(5000);
    }
    const error = (await running).error as EngineExitedError;
    expect(error.signal).toBe("SIGKILL");
    expect(error.code).toBeNull();
    expect(error.message).toContain("SIGKILL");
    expect(error.stderr).toContain("info"); // the tail of its log
    expect(await exec.result.catch((e) => e)).toBeInstanceOf(EngineExitedError);
    expect(await iterated.catch((e) => e)).toBeInstanceOf(EngineExitedError);

    // Later calls fail at once, and close() still answers.
    const later = await timed(space.readFile("x"));
    expect(later.error).toBeInstanceOf(EngineExitedError);
    expect(later.ms).toBeLessThan(100);
    expect(await engine.close()).toEqual(status);
    rmSync(stateDir, { recursive: true, force: true });
  });

  test("an engine that exits by itself (SIGTERM) fails pending calls the same way", async () => {
    const { engine, stateDir } = await startEngine({ stderr: "ignore" });
    const space = await engine.createSpace();
    const running = timed(space.run("sleep 30"));
    await new Promise((resolve) => setTimeout(resolve, 100));
    process.kill(engine.pid!, "SIGTERM");
    const outcome = await running;
    // SIGTERM stops the engine like the end of input: it may answer the cancelled batch first, or not at all.
    expect(outcome.error).toBeDefined();
    expect(outcome.ms).toBeLessThan(5000);
    expect((await engine.exited).code).toBe(0);
    rmSync(stateDir, { recursive: true, force: true });
  });
});
