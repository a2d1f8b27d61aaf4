// Approvals: handlers on the space and on the engine, approvals left pending and resolved later, repeated asks in
// one batch, expiry, cancellation while waiting, grants, and approvals of capability calls and tool calls.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  type Approval,
  ApprovalDeniedError,
  type ApprovalHandler,
  OperationFailedError,
  type Space,
} from "agent-spaces";
import { eventually, startEngine, timed, type TestEngine } from "./support.js";

let test_: TestEngine;

beforeAll(async () => {
  test_ = await startEngine();
});

afterAll(async () => {
  await test_.stop();
});

/** A space whose policy asks before any `touch`. */
function askingSpace(onApproval?: ApprovalHandler, approvalTimeoutMs?: number): Promise<Space> {
  return test_.engine.createSpace({
    policy: { commands: { ask: ["touch *"] }, ...(approvalTimeoutMs ? { approvalTimeoutMs } : {}) },
    ...(onApproval ? { onApproval } : {}),
  });
}

async function exists(space: Space, path: string): Promise<boolean> {
  return (await space.listFiles()).some((entry) => entry.path === path);
}

describe("approval handlers", () => {
  test("allow_once: the handler is asked, the command runs, the call resolves once at the end", async () => {
    const asked: Approval[] = [];
    const space = await askingSpace((approval) => {
      asked.push(approval);
      return "allow_once";
    });
    const result = await space.run("touch allowed.txt");
    expect(result.ok).toBe(true);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ spaceId: space.id, options: ["allow_once", "allow_for_space", "deny"] });
    expect(asked[0].approvalId).toMatch(/^ap_/);
    expect(asked[0].what).toContain("touch allowed.txt");
    expect(asked[0].why).toContain("touch *");
    expect(typeof asked[0].title).toBe("string");
    expect(typeof asked[0].impact).toBe("string");
    const types = result.events.map((event) => event.type);
    expect(types.slice(0, 2)).toEqual(["approval.requested", "approval.resolved"]);
    expect(types).toContain("command.exited");
    expect(await exists(space, "allowed.txt")).toBe(true);
    await space.destroy();
  });

  test("deny: ApprovalDeniedError with the approval's id; nothing ran", async () => {
    const space = await askingSpace(async () => ({ decision: "deny", note: "not today" }));
    const error = await space.run("touch denied.txt").catch((e) => e);
    expect(error).toBeInstanceOf(ApprovalDeniedError);
    expect(error.approvalId).toMatch(/^ap_/);
    expect(error.opId).toBe("op_1");
    expect(error.reason).not.toBe("");
    expect(await exists(space, "denied.txt")).toBe(false);
    await space.destroy();
  });

  test("allow_for_space makes a grant: the same command is not asked again until it is revoked", async () => {
    let asked = 0;
    const space = await askingSpace(() => {
      asked++;
      return { decision: "allow_for_space", note: "fine" };
    });
    await space.run("touch granted.txt");
    await space.run("touch granted.txt");
    expect(asked).toBe(1);
    const grants = await space.grants();
    expect(grants).toHaveLength(1);
    expect(grants[0].matcher).toMatchObject({ kind: "command", value: "touch granted.txt" });
    await space.revokeGrant(grants[0].grantId);
    expect(await space.grants()).toEqual([]);
    await space.run("touch granted.txt");
    expect(asked).toBe(2);
    await space.destroy();
  });

  test("the engine's handler decides for spaces without their own; a space's own wins", async () => {
    const calls: string[] = [];
    test_.engine.onApproval = () => {
      calls.push("engine");
      return "allow_once";
    };
    try {
      const plain = await askingSpace();
      await plain.run("touch a.txt");
      const own = await askingSpace(() => {
        calls.push("space");
        return "allow_once";
      });
      await own.run("touch b.txt");
      own.onApproval = undefined; // back to the engine's
      await own.run("touch c.txt");
      expect(calls).toEqual(["engine", "space", "engine"]);
      await plain.destroy();
      await own.destroy();
    } finally {
      test_.engine.onApproval = undefined;
    }
  });

  test("a handler that throws denies", async () => {
    const space = await askingSpace(() => {
      throw new Error("the UI is down");
    });
    const error = await space.run("touch thrown.txt").catch((e) => e);
    expect(error).toBeInstanceOf(ApprovalDeniedError);
    await space.destroy();
  });

  test("a batch that asks twice waits twice, and resolves once with every event", async () => {
    let asked = 0;
    const space = await askingSpace(() => {
      asked++;
      return "allow_once";
    });
    const result = await space.batch([
      { kind: "command.run", command: "touch one.txt" },
      { kind: "file.write", path: "between.txt", content: "x" },
      { kind: "command.run", command: "touch two.txt" },
    ]);
    expect(asked).toBe(2);
    expect(result.status).toBe("completed");
    expect(result.events.filter((event) => event.type === "approval.resolved")).toHaveLength(2);
    expect(result.events.filter((event) => event.type === "operation.completed")).toHaveLength(3);
    expect(await exists(space, "two.txt")).toBe(true);
    await space.destroy();
  });
});

describe("approvals left pending", () => {
  test("without a handler the call waits; listeners see it; resolveApproval continues the call", async () => {
    const space = await askingSpace();
    const seen: Approval[] = [];
    const stop = test_.engine.on("approval", (approval) => seen.push(approval));
    let settled = false;
    const running = space.run("touch later.txt").finally(() => (settled = true));
    await eventually(() => seen.length === 1);
    stop();
    expect(settled).toBe(false);
    const pending = await test_.engine.approvals(space.id);
    expect(pending.map((approval) => approval.approvalId)).toEqual([seen[0].approvalId]);
    expect(await space.approvals()).toEqual(pending);
    const rest = await test_.engine.resolveApproval(seen[0].approvalId, "allow_once", "looked fine");
    expect(rest.events[0]).toMatchObject({ type: "approval.resolved", decision: "allow_once" });
    const result = await running;
    expect(result.ok).toBe(true);
    expect(await exists(space, "later.txt")).toBe(true);
    expect(await test_.engine.approvals(space.id)).toEqual([]);
    await space.destroy();
  });

  test("a handler that returns undefined leaves it pending; a later deny rejects the call", async () => {
    const asked: Approval[] = [];
    const space = await askingSpace((approval) => void asked.push(approval));
    const running = space.run("touch undecided.txt");
    await eventually(() => asked.length === 1);
    await test_.engine.resolveApproval(asked[0].approvalId, "deny");
    const error = await running.catch((e) => e);
    expect(error).toBeInstanceOf(ApprovalDeniedError);
    expect(error.approvalId).toBe(asked[0].approvalId);
    await space.destroy();
  });

  test("an approval nobody answers expires: the call rejects with ApprovalDeniedError", async () => {
    const space = await askingSpace(undefined, 1000);
    const { ms, error } = await timed(space.run("touch expired.txt"));
    expect(error).toBeInstanceOf(ApprovalDeniedError);
    expect((error as ApprovalDeniedError).reason).toContain("expired");
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(5000);
    expect(await exists(space, "expired.txt")).toBe(false);
    await space.destroy();
  });

  test("aborting while waiting cancels the batch and denies the approval", async () => {
    const space = await askingSpace();
    const controller = new AbortController();
    const seen: Approval[] = [];
    const stop = test_.engine.on("approval", (approval) => seen.push(approval));
    const running = space.run("touch aborted.txt", { signal: controller.signal });
    await eventually(() => seen.length === 1);
    stop();
    controller.abort();
    const error = await running.catch((e) => e);
    expect(error).toBeInstanceOf(OperationFailedError);
    expect(error.code).toBe("CANCELLED");
    expect(await test_.engine.approvals(space.id)).toEqual([]);
    await space.destroy();
  });

  test("destroying the space ends a call waiting on its approval", async () => {
    const space = await askingSpace();
    const seen: Approval[] = [];
    const stop = test_.engine.on("approval", (approval) => seen.push(approval));
    const running = space.run("touch destroyed.txt");
    await eventually(() => seen.length === 1);
    stop();
    await space.destroy();
    const error = await running.catch((e) => e);
    expect(error).toBeInstanceOf(ApprovalDeniedError);
    expect(error.reason).toContain("destroyed");
  });
});

describe("approvals of capability and tool calls", () => {
  test("a destructive capability method asks mid-program; allowed, the program goes on", async () => {
    const asked: Approval[] = [];
    const space = await test_.engine.createSpace({
      capabilities: {
        files: {
          methods: { remove: { effect: "destructive", handler: ({ id }: { id: number }) => ({ removed: id }) } },
        },
      },
      onApproval: (approval) => {
        asked.push(approval);
        return "allow_once";
      },
    });
    const result = await space.runTypeScript(
      'import { files } from "spaces:capabilities"; console.log(JSON.stringify(await files.remove({ id: 7 })));',
    );
    expect(result.stdout).toBe('{"removed":7}\n');
    expect(asked).toHaveLength(1);
    expect(asked[0].what).toContain("files.remove");
    await space.destroy();
  });

  test("a denied capability call fails in the program, not in the SDK", async () => {
    const space = await test_.engine.createSpace({
      capabilities: { files: { methods: { remove: { effect: "destructive", handler: () => "gone" } } } },
      onApproval: () => "deny",
    });
    const result = await space.runTypeScript(
      'import { files } from "spaces:capabilities";\n' +
        "try { await files.remove({}); } catch (error) { console.log(error.code); }",
    );
    expect(result.stdout).toBe("APPROVAL_DENIED\n");
    await space.destroy();
  });

  test("a tool call the policy asks about is answered by the handler", async () => {
    const space = await askingSpace(() => "allow_once");
    const called = await space.callTool("run_command", { command: "touch tool.txt" });
    expect(called.isError).toBe(false);
    expect(await exists(space, "tool.txt")).toBe(true);
    await space.destroy();
  });
});
