// Files: write, read (text, bytes, in parts), edit, delete, list, move, and each failure as its typed error.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EngineError, OperationFailedError, PolicyDeniedError, type Space } from "agent-spaces";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEngine, type TestEngine } from "./support.js";

let test_: TestEngine;
let space: Space;

beforeAll(async () => {
  test_ = await startEngine();
  space = await test_.engine.createSpace({ name: "files", files: { "seed/hello.txt": "hello\n" } });
});

afterAll(async () => {
  await test_.stop();
});

describe("files", () => {
  test("createSpace writes `files`; readFile reads them", async () => {
    expect(await space.readFile("seed/hello.txt")).toBe("hello\n");
  });

  test("writeFile answers path, bytes and sha256; readFile returns the text", async () => {
    const written = await space.writeFile("a/b/c.txt", "héllo");
    expect(written.path).toBe("a/b/c.txt");
    expect(written.bytes).toBe(6);
    expect(written.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await space.readFile("/workspace/a/b/c.txt")).toBe("héllo");
  });

  test("Uint8Array content is written as bytes; readBytes returns them", async () => {
    const bytes = new Uint8Array(300).map((_, index) => (index * 7) % 256);
    const written = await space.writeFile("bin/data", bytes);
    expect(written.bytes).toBe(300);
    expect(await space.readBytes("bin/data")).toEqual(bytes);
    expect(await space.readBytes("bin/data", { offset: 10, length: 5 })).toEqual(bytes.subarray(10, 15));
  });

  test("readFile of text that is not UTF-8 throws NOT_UTF8", async () => {
    await space.writeFile("bin/latin1", new Uint8Array([0x68, 0xe9, 0x0a]));
    const error = await space.readFile("bin/latin1").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect((error as OperationFailedError).code).toBe("NOT_UTF8");
  });

  test("files longer than the output bound are read whole, in parts", async () => {
    const small = await test_.engine.createSpace({ limits: { outputBytes: 1000 } });
    const text = "0123456789abcdé\n".repeat(400); // 6,800 bytes; `é` straddles part boundaries
    await small.writeFile("big.txt", text);
    expect(await small.readFile("big.txt")).toBe(text);
    const bytes = new Uint8Array(2500).map((_, index) => index % 251);
    await small.writeFile("big.bin", bytes);
    expect(await small.readBytes("big.bin")).toEqual(bytes);
    await small.destroy();
  });

  test("expectSha256 that does not match throws CONFLICT", async () => {
    const first = await space.writeFile("conflict.txt", "one");
    await space.writeFile("conflict.txt", "two", { expectSha256: first.sha256 });
    const error = await space.writeFile("conflict.txt", "three", { expectSha256: first.sha256 }).catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("CONFLICT");
    expect(error.opId).toBe("op_1");
    expect(error.hint).not.toBe("");
  });

  test("editFile takes one edit or several", async () => {
    await space.writeFile("edit.ts", "let a = 1;\nlet b = 1;\n");
    const one = await space.editFile("edit.ts", { oldText: "a = 1", newText: "a = 2" });
    expect(one.replacements).toBe(1);
    const all = await space.editFile("edit.ts", [
      { oldText: "let", newText: "const", replaceAll: true },
      { oldText: "b = 1", newText: "b = 3" },
    ]);
    expect(all.replacements).toBe(3);
    expect(await space.readFile("edit.ts")).toBe("const a = 2;\nconst b = 3;\n");
  });

  test("an edit that finds nothing throws EDIT_NO_MATCH and changes nothing", async () => {
    const error = await space.editFile("edit.ts", { oldText: "nowhere", newText: "x" }).catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("EDIT_NO_MATCH");
    expect(await space.readFile("edit.ts")).toBe("const a = 2;\nconst b = 3;\n");
  });

  test("listFiles lists a directory, recursively when asked", async () => {
    await space.writeFile("tree/x.txt", "x");
    await space.writeFile("tree/sub/y.txt", "yy");
    const top = await space.listFiles("tree");
    expect(top.map((entry) => entry.path)).toEqual(["tree/sub", "tree/x.txt"]);
    const all = await space.listFiles("tree", { recursive: true });
    expect(all).toEqual([
      { path: "tree/sub", type: "directory", size: 0 },
      { path: "tree/sub/y.txt", type: "file", size: 2 },
      { path: "tree/x.txt", type: "file", size: 1 },
    ]);
    const root = await space.listFiles();
    expect(root.map((entry) => entry.path)).toContain("tree");
  });

  test("moveFile moves; onto an existing file it throws EEXIST", async () => {
    await space.moveFile("tree/x.txt", "moved/x.txt");
    expect(await space.readFile("moved/x.txt")).toBe("x");
    await space.writeFile("tree/z.txt", "z");
    const error = await space.moveFile("tree/z.txt", "moved/x.txt").catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("EEXIST");
  });

  test("deleteFile needs recursive for a non-empty directory", async () => {
    const error = await space.deleteFile("tree").catch((e) => e);
    expect(error.code).toBe("ENOTEMPTY");
    await space.deleteFile("tree", { recursive: true });
    const missing = await space.readFile("tree/z.txt").catch((e) => e);
    expect(missing).toBeInstanceOf(OperationFailedError);
    expect(missing.code).toBe("ENOENT");
  });

  test("a path outside the workspace throws PolicyDeniedError with the rule", async () => {
    const error = await space.readFile("../etc/passwd").catch((e) => e);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(error.rule).toBe("workspace.boundary");
    expect(error.reason).toContain("leaves the workspace");
    expect(error.suggestion).not.toBe("");
    expect(error.opId).toBe("op_1");
    expect(error.events.map((event: { type: string }) => event.type)).toEqual(["policy.denied", "operation.failed"]);
  });

  test("the policy's filesystem rules deny writes", async () => {
    const locked = await test_.engine.createSpace({ policy: { filesystem: { deny: ["secret/**"] } } });
    const error = await locked.writeFile("secret/key", "x").catch((e) => e);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(error.rule).toBe("filesystem.deny: secret/**");
    await locked.destroy();
  });

  test("copyFrom copies a host directory in", async () => {
    const source = mkdtempSync(join(tmpdir(), "spaces-sdk-copy-"));
    mkdirSync(join(source, "src"));
    writeFileSync(join(source, "src/main.ts"), "console.log(1)\n");
    const copied = await test_.engine.createSpace({ copyFrom: source, files: { "extra.txt": "e" } });
    expect(await copied.readFile("src/main.ts")).toBe("console.log(1)\n");
    expect(await copied.readFile("extra.txt")).toBe("e");
    await copied.destroy();
    rmSync(source, { recursive: true, force: true });
  });

  test("an invalid request is an EngineError naming the field", async () => {
    const error = await space.writeFile("", "x").catch((e) => e);
    expect(error).toBeInstanceOf(EngineError);
    expect(error.code).toBe(-32602);
    expect(error.field).toBe("params.operations[0].path");
    expect(error.hint).not.toBe("");
  });
});
