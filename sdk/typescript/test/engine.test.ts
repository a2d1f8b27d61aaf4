// The engine: starting it (and where its binary is found), attaching to one over streams, its spaces, policies,
// tools, raw requests, and closing it.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EngineError, EngineExitedError, Spaces, SpacesError } from "agent-spaces";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binary, startEngine, type TestEngine } from "./support.js";

let test_: TestEngine;

beforeAll(async () => {
  test_ = await startEngine();
});

afterAll(async () => {
  await test_.stop();
});

describe("the engine", () => {
  test("info is the initialize result", () => {
    const info = test_.engine.info;
    expect(info.protocolVersion).toBe("0.1");
    expect(info.engine.name).toBe("agent-spaces");
    expect(info.stateDir).toBe(test_.stateDir);
    expect(info.limits.maxLineBytes).toBeGreaterThan(0);
    expect(info.runtimes[0].runtime).toBe("bun");
    expect(typeof test_.engine.pid).toBe("number");
  });

  test("createSpace, listSpaces, getSpace and destroy", async () => {
    const space = await test_.engine.createSpace({ name: "listed", policy: "strict" });
    expect(space.id).toMatch(/^sp_[0-9a-f]{16}$/);
    expect(space.name).toBe("listed");
    expect(space.policy.preset).toBe("strict");
    const listed = await test_.engine.listSpaces();
    expect(listed).toContain(space); // one handle per space
    const got = await test_.engine.getSpace(space.id);
    expect(got).toBe(space);
    const info = await space.info();
    expect(info.stats.operations).toBe(0);
    const destroyed = await space.destroy({ keepWorkspace: true });
    expect(destroyed.destroyed).toBe(true);
    expect(destroyed.workspacePath && existsSync(destroyed.workspacePath)).toBe(true);
    const missing = await test_.engine.getSpace(space.id).catch((e) => e);
    expect(missing).toBeInstanceOf(EngineError);
    expect(missing.code).toBe(-32010);
    expect(missing.method).toBe("spaces/get");
    expect(missing.hint).toContain("spaces/list");
    expect(missing.message).toContain(missing.hint);
  });

  test("createSpace takes limits, secrets and retentionDays; start's env reaches the engine", async () => {
    const { engine, stop } = await startEngine({ env: { SDK_TEST_SECRET: "s3cret-value" } });
    const space = await engine.createSpace({
      limits: { timeoutMs: 5000 },
      secrets: { TOKEN: { env: "SDK_TEST_SECRET" } },
      retentionDays: 7,
    });
    expect(space.policy.limits.timeoutMs).toBe(5000);
    const result = await space.run("echo $TOKEN", { secrets: ["TOKEN"] });
    expect(result.stdout).toBe("[REDACTED:TOKEN]\n");
    await stop();
  });

  test("updatePolicy replaces the policy; the new one decides", async () => {
    const space = await test_.engine.createSpace();
    expect((await space.run("echo ok")).ok).toBe(true);
    const updated = await space.updatePolicy({ commands: { deny: ["echo *"] } });
    expect(updated.policy.commands.deny).toEqual(["echo *"]);
    expect(space.policy.commands.deny).toEqual(["echo *"]);
    expect(await space.run("echo no").catch((e) => e.name)).toBe("PolicyDeniedError");
    const invalid = await space.updatePolicy("nonsense" as never).catch((e) => e);
    expect(invalid).toBeInstanceOf(EngineError);
    expect(invalid.code).toBe(-32602);
    await space.destroy();
  });

  test("tools() lists the built-in tools; callTool runs one and answers its text", async () => {
    const space = await test_.engine.createSpace();
    const names = (await space.tools()).map((tool) => tool.name);
    for (const name of ["read_file", "write_file", "run_command", "run_typescript"]) expect(names).toContain(name);
    const written = await space.callTool("write_file", { path: "t.txt", content: "tool" });
    expect(written).toMatchObject({ isError: false, text: "Wrote 4 bytes to t.txt." });
    const ran = await space.callTool("run_command", { command: "cat t.txt; exit 2" });
    expect(ran.isError).toBe(true);
    expect(ran.text).toContain("[exit code 2]");
    const unknown = await space.callTool("no_such_tool").catch((e) => e);
    expect(unknown).toBeInstanceOf(EngineError);
    await space.destroy();
  });

  test("request() sends any protocol request, typed from the schema", async () => {
    const { spaces } = await test_.engine.request("spaces/list", {});
    expect(Array.isArray(spaces)).toBe(true);
  });

  test("a request longer than the engine's line limit is refused before it is sent", async () => {
    const space = await test_.engine.createSpace();
    const huge = "x".repeat(test_.engine.info.limits.maxLineBytes);
    const error = await space.writeFile("huge.txt", huge).catch((e) => e);
    expect(error).toBeInstanceOf(SpacesError);
    expect(error.message).toContain("at most");
    expect((await space.run("echo still here")).stdout).toBe("still here\n");
    await space.destroy();
  });
});

describe("starting and closing", () => {
  test("temporary: the state lives in a fresh directory that close() removes, spaces and workspaces included", async () => {
    const engine = await Spaces.start({ binary, temporary: true, stderr: "ignore" });
    const stateDir = engine.info.stateDir;
    expect(stateDir.startsWith(tmpdir())).toBe(true);
    const space = await engine.createSpace();
    await space.writeFile("kept.txt", "until close");
    expect(existsSync(join(stateDir, "spaces", space.id, "workspace", "kept.txt"))).toBe(true);
    await engine.close();
    expect(existsSync(stateDir)).toBe(false);
  });

  test("the binary comes from SPACES_BIN when not given", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "spaces-sdk-env-"));
    const saved = process.env.SPACES_BIN;
    process.env.SPACES_BIN = binary;
    try {
      const engine = await Spaces.start({ stateDir, stderr: "ignore" });
      expect(engine.info.engine.name).toBe("agent-spaces");
      await engine.close();
    } finally {
      if (saved === undefined) delete process.env.SPACES_BIN;
      else process.env.SPACES_BIN = saved;
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  test("a binary that does not exist: SpacesError saying where the engine is looked for", async () => {
    const error = await Spaces.start({ binary: "/nonexistent/spaces" }).catch((e) => e);
    expect(error).toBeInstanceOf(SpacesError);
    expect(error.message).toContain("/nonexistent/spaces");
    expect(error.message).toContain("SPACES_BIN");
    expect(error.message).toContain(".build/debug/spaces");
  });

  test("a binary that is no engine: EngineExitedError with its exit status and stderr", async () => {
    // `sh serve …` fails to open the script `serve`: a program that exits at once, saying why on stderr.
    const error = await Spaces.start({ binary: "/bin/sh", stderr: "ignore" }).catch((e) => e);
    expect(error).toBeInstanceOf(EngineExitedError);
    expect(error.code).not.toBe(0);
    expect(error.stderr).toContain("serve");
    expect(error.message).toContain(error.stderr.trim());
  });

  test("close() shuts the engine down and waits; later calls reject with EngineExitedError", async () => {
    const { engine, stateDir } = await startEngine();
    const space = await engine.createSpace();
    const status = await engine.close();
    expect(status).toEqual({ code: 0, signal: null });
    expect(await engine.exited).toEqual(status);
    expect(await engine.close()).toEqual(status);
    const error = await space.readFile("x").catch((e) => e);
    expect(error).toBeInstanceOf(EngineExitedError);
    expect(error.message).toContain("closed");
    // The space stays in the state directory for the next engine.
    const next = await Spaces.start({ binary, stateDir, stderr: "ignore" });
    expect((await next.listSpaces()).map((one) => one.id)).toContain(space.id);
    await next.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  test("stderr as a function receives the engine's log lines", async () => {
    const lines: string[] = [];
    const { engine, stateDir } = await startEngine({ logLevel: "info", stderr: (line) => lines.push(line) });
    await engine.close();
    expect(lines.some((line) => line.includes("info"))).toBe(true);
    rmSync(stateDir, { recursive: true, force: true });
  });
});

describe("attach", () => {
  test("over Node streams (a child process's stdin and stdout)", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "spaces-sdk-attach-"));
    const child = spawn(binary, ["serve", "--log-level", "error", "--state-dir", stateDir], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const engine = await Spaces.attach({ input: child.stdin, output: child.stdout });
    expect(engine.pid).toBeUndefined();
    const space = await engine.createSpace();
    expect((await space.run("echo attached")).stdout).toBe("attached\n");
    expect(await engine.close()).toEqual({ code: null, signal: null });
    rmSync(stateDir, { recursive: true, force: true });
  });

  test("over web streams (Bun.spawn: a ReadableStream and a FileSink)", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "spaces-sdk-attach-"));
    const child = Bun.spawn([binary, "serve", "--log-level", "error", "--state-dir", stateDir], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    const engine = await Spaces.attach({ input: child.stdin, output: child.stdout });
    const space = await engine.createSpace({ files: { "a.txt": "web" } });
    expect(await space.readFile("a.txt")).toBe("web");
    await engine.close();
    expect(await child.exited).toBe(0);
    rmSync(stateDir, { recursive: true, force: true });
  });

  test("over a WritableStream for input", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "spaces-sdk-attach-"));
    const child = Bun.spawn([binary, "serve", "--log-level", "error", "--state-dir", stateDir], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    const input = new WritableStream<Uint8Array>({
      write: (chunk) => void child.stdin.write(chunk),
      close: () => void child.stdin.end(),
    });
    const engine = await Spaces.attach({ input, output: child.stdout });
    expect(engine.info.protocolVersion).toBe("0.1");
    await engine.close();
    expect(await child.exited).toBe(0);
    rmSync(stateDir, { recursive: true, force: true });
  });
});
