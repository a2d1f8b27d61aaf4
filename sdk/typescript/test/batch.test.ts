// Batches, runs, transcripts, replay and the audit log.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Event, type Space } from "agent-spaces";
import { startEngine, type TestEngine } from "./support.js";

let test_: TestEngine;
let space: Space;

beforeAll(async () => {
  test_ = await startEngine();
  space = await test_.engine.createSpace({ name: "batches" });
});

afterAll(async () => {
  await test_.stop();
});

describe("batch", () => {
  test("runs operations in order and answers the protocol's BatchResult", async () => {
    const result = await space.batch([
      { kind: "file.write", id: "write", path: "hi.ts", content: "console.log(6 * 7)" },
      { kind: "code.run", language: "typescript", path: "hi.ts" },
    ]);
    expect(result.status).toBe("completed");
    expect(result.batchId).toMatch(/^b_[0-9a-f]{16}$/);
    expect(result.events[0]).toMatchObject({ type: "operation.started", opId: "write", kind: "file.write" });
    const exited = result.events.find((event) => event.type === "command.exited");
    expect(exited).toMatchObject({ opId: "op_2", exitCode: 0, stdout: "42\n" });
    const seqs = result.events.map((event) => event.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  });

  test("failed and denied operations are events, not errors; onError decides whether the rest runs", async () => {
    const operations = [
      { kind: "file.read" as const, path: "missing.txt" },
      { kind: "file.read" as const, path: "../outside" },
      { kind: "file.write" as const, path: "reached.txt", content: "yes" },
    ];
    const stopped = await space.batch(operations);
    expect(stopped.status).toBe("stopped");
    expect(stopped.events.map((event) => event.type)).toEqual(["operation.started", "operation.failed"]);
    const continued = await space.batch(operations, { onError: "continue" });
    expect(continued.status).toBe("completed");
    expect(continued.events.map((event) => event.type)).toEqual([
      "operation.started",
      "operation.failed",
      "policy.denied",
      "operation.failed",
      "operation.started",
      "file.written",
      "operation.completed",
    ]);
  });

  test("dryRun answers each operation's decision and runs nothing", async () => {
    const result = await space.batch(
      [
        { kind: "command.run", command: "touch dry.txt" },
        { kind: "file.delete", path: "/etc" },
      ],
      { dryRun: true },
    );
    expect(result.events).toEqual([]);
    expect(result.decisions?.map((decision) => decision.decision)).toEqual(["allow", "deny"]);
    expect((await space.listFiles()).some((entry) => entry.path === "dry.txt")).toBe(false);
  });

  test("an idempotency key answers the first result again", async () => {
    const first = await space.batch([{ kind: "command.run", command: "echo $RANDOM" }], { idempotencyKey: "k-1" });
    const again = await space.batch([{ kind: "command.run", command: "echo $RANDOM" }], { idempotencyKey: "k-1" });
    expect(again.batchId).toBe(first.batchId);
    expect(again.events).toEqual(first.events);
  });

  test("stream: a function gets every event as it happens, in seq order", async () => {
    const seen: Event[] = [];
    const result = await space.batch(
      [
        { kind: "command.run", command: "echo one; sleep 0.05; echo two" },
        { kind: "file.list" },
      ],
      { stream: (event) => seen.push(event) },
    );
    expect(seen).toEqual(result.events);
    expect(seen.filter((event) => event.type === "command.output").length).toBeGreaterThanOrEqual(1);
  });

  test("engine.on('event') sees streamed events of every space", async () => {
    const seen: string[] = [];
    const stop = test_.engine.on("event", ({ spaceId, event }) => seen.push(`${spaceId}:${event.type}`));
    await space.batch([{ kind: "file.list" }], { stream: true });
    stop();
    await space.batch([{ kind: "file.list" }], { stream: true });
    expect(seen).toEqual([
      `${space.id}:operation.started`,
      `${space.id}:file.listing`,
      `${space.id}:operation.completed`,
    ]);
  });
});

describe("runs and the audit log", () => {
  test("a run counts its operations; end() answers the summary; transcript() its entries", async () => {
    const run = await space.startRun("task", { ticket: "ENG-1" });
    expect(run.id).toMatch(/^run_/);
    expect(run.label).toBe("task");
    expect(run.space).toBe(space);
    await run.writeFile("run/a.txt", "a");
    await run.run(["cat", "run/a.txt"]);
    await space.writeFile("run/b.txt", "b", { runId: run.id });
    await space.readFile("run/b.txt"); // the implicit run: not counted
    const summary = await run.end();
    expect(summary.status).toBe("succeeded");
    expect(summary.operations).toEqual({ total: 3, succeeded: 3, failed: 0, denied: 0 });
    expect(summary.artifacts).toEqual(["run/a.txt", "run/b.txt"]);
    expect(await run.end("failed")).toEqual(summary);
    const transcript = await run.transcript();
    expect(transcript[0].kind).toBe("run.started");
    expect(transcript[transcript.length - 1].kind).toBe("run.ended");
    expect(await space.transcript(run.id)).toEqual(transcript);
  });

  test("every call made through a run is counted in it", async () => {
    const run = await space.startRun("through the run");
    await run.writeFile("r/a.txt", "one two");
    await run.editFile("r/a.txt", { oldText: "two", newText: "three" });
    expect(await run.readFile("r/a.txt")).toBe("one three");
    expect(await run.readBytes("r/a.txt", { length: 3 })).toEqual(new TextEncoder().encode("one"));
    expect((await run.listFiles("r")).map((entry) => entry.path)).toEqual(["r/a.txt"]);
    await run.moveFile("r/a.txt", "r/b.txt");
    expect((await run.runTypeScript("console.log(1)")).stdout).toBe("1\n");
    const exec = run.exec("echo streamed");
    for await (const _ of exec) {
      // drained
    }
    expect((await exec.result).stdout).toBe("streamed\n");
    expect((await run.batch([{ kind: "file.list" }])).status).toBe("completed");
    expect((await run.callTool("list_files", { path: "r" })).text).toContain("r/b.txt");
    await run.deleteFile("r", { recursive: true });
    const summary = await run.end();
    expect(summary.operations.total).toBe(11);
    expect(summary.operations.succeeded).toBe(11);
  });

  test("replay applies a run again and compares its events", async () => {
    const run = await space.startRun("to replay");
    await run.writeFile("replayed.txt", "same");
    await run.run("cat replayed.txt");
    await run.end();
    const byId = await test_.engine.replay(run.id);
    expect(byId.matched).toBe(true);
    expect(byId.differences).toEqual([]);
    expect(byId.spaceId).not.toBe(space.id);
    const target = await test_.engine.createSpace();
    const byTranscript = await test_.engine.replay(await run.transcript(), { into: target });
    expect(byTranscript).toMatchObject({ matched: true, spaceId: target.id });
    expect(await target.readFile("replayed.txt")).toBe("same");
  });

  test("audit() reads the hash-chained log; verifyAudit() checks it", async () => {
    const first = await space.audit({ limit: 2 });
    expect(first.entries).toHaveLength(2);
    expect(first.entries[0].prevHash).toBe("0".repeat(64));
    expect(first.entries[1].prevHash).toBe(first.entries[0].hash);
    const rest = await space.audit({ afterSeq: 1, limit: 1 });
    expect(rest.entries[0].seq).toBe(2);
    const verified = await space.verifyAudit();
    expect(verified.ok).toBe(true);
    expect(verified.entries).toBeGreaterThan(10);
  });
});
