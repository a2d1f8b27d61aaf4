// Capabilities as plain functions: each declaration form, errors thrown by handlers, overlapping calls, capabilities
// added later, and capabilities the engine answers itself.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type CapabilityCall, EngineError, SpacesError } from "agent-spaces";
import { sleep, startEngine, type TestEngine } from "./support.js";

let test_: TestEngine;

beforeAll(async () => {
  test_ = await startEngine();
});

afterAll(async () => {
  await test_.stop();
});

const customers = [
  { id: 1, name: "Acme", tier: "gold" },
  { id: 2, name: "Globex", tier: "silver" },
  { id: 3, name: "Initech", tier: "gold" },
];

describe("capabilities", () => {
  test("shorthand: functions become methods (effect write), called from the space's programs", async () => {
    const calls: CapabilityCall[] = [];
    const space = await test_.engine.createSpace({
      capabilities: {
        crm: {
          search: async (params: { tier?: string }, call: CapabilityCall) => {
            calls.push(call);
            return customers.filter((customer) => !params.tier || customer.tier === params.tier);
          },
          nothing: () => undefined,
        },
      },
    });
    expect(space.snapshot.capabilities).toEqual([{ name: "crm", handler: "client", methods: ["nothing", "search"] }]);
    const result = await space.runTypeScript(
      'import { crm } from "spaces:capabilities";\n' +
        'const gold = await crm.search({ tier: "gold" });\n' +
        "console.log(gold.map((c) => c.name).join(','), JSON.stringify(await crm.nothing()));",
    );
    expect(result.stdout).toBe("Acme,Initech null\n");
    expect(calls).toEqual([{ spaceId: space.id, capability: "crm", method: "search" }]);
    const called = result.events.filter((event) => event.type === "capability.called");
    expect(called.map((event) => event.type === "capability.called" && event.ok)).toEqual([true, true]);
    // Declared as `write`: the default policy asks only about destructive methods, so nothing waited.
    const tools = await space.tools();
    expect(tools.find((tool) => tool.name === "crm_search")?.annotations).toMatchObject({ destructiveHint: false });
    await space.destroy();
  });

  test("declared: schemas check params and results, descriptions reach the declarations", async () => {
    const space = await test_.engine.createSpace({
      capabilities: {
        crm: {
          description: "Customer records",
          methods: {
            get: {
              description: "One customer by id.",
              effect: "read",
              params: { type: "object", required: ["id"], properties: { id: { type: "integer" } } },
              result: { type: "object", required: ["name"], properties: { name: { type: "string" } } },
              handler: ({ id }: { id: number }) => customers.find((customer) => customer.id === id) ?? { name: 0 },
            },
          },
        },
      },
    });
    const declarations = await space.readFile(".spaces/capabilities.d.ts");
    expect(declarations).toContain("Customer records");
    expect(declarations).toContain("One customer by id.");
    const result = await space.runTypeScript(
      'import { crm } from "spaces:capabilities";\n' +
        "console.log((await crm.get({ id: 3 })).name);\n" +
        'for (const params of [{ id: "x" }, { id: 99 }]) {\n' +
        "  try { await crm.get(params as any); } catch (error) { console.log(error.code); }\n" +
        "}",
    );
    expect(result.stdout).toBe("Initech\nINVALID_PARAMS\nHANDLER_ERROR\n");
    await space.destroy();
  });

  test("an error thrown by a handler reaches the program as HANDLER_ERROR with its message and hint", async () => {
    const space = await test_.engine.createSpace({
      capabilities: {
        billing: {
          charge: () => {
            throw Object.assign(new Error("card declined"), { hint: "ask for another card" });
          },
          plain: async () => {
            throw new Error("plain failure");
          },
        },
      },
    });
    const result = await space.runTypeScript(
      'import { billing } from "spaces:capabilities";\n' +
        "for (const call of [() => billing.charge({}), () => billing.plain({})]) {\n" +
        "  try { await call(); } catch (error) { console.log(error.code, '|', error.message, '|', error.hint); }\n" +
        "}",
    );
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toStartWith("HANDLER_ERROR | ");
    expect(lines[0]).toContain("card declined");
    expect(lines[0]).toEndWith("| ask for another card");
    expect(lines[1]).toContain("plain failure");
    await space.destroy();
  });

  test("calls may overlap: each is answered when its function settles", async () => {
    let running = 0;
    let most = 0;
    const space = await test_.engine.createSpace({
      capabilities: {
        slow: {
          echo: async ({ value, ms }: { value: number; ms: number }) => {
            running++;
            most = Math.max(most, running);
            await sleep(ms);
            running--;
            return value;
          },
        },
      },
    });
    const result = await space.runTypeScript(
      'import { slow } from "spaces:capabilities";\n' +
        "const values = await Promise.all([5, 4, 3, 2, 1].map((value) => slow.echo({ value, ms: value * 40 })));\n" +
        "console.log(values.join(','));",
    );
    expect(result.stdout).toBe("5,4,3,2,1\n");
    expect(most).toBeGreaterThanOrEqual(2);
    expect(result.durationMs).toBeLessThan(5 * 40 + 4 * 40 + 3 * 40 + 2 * 40 + 40);
    await space.destroy();
  });

  test("addCapability offers one more to programs started afterwards", async () => {
    const space = await test_.engine.createSpace();
    const added = await space.addCapability("clock", { now: () => "2026-01-01" });
    expect(added.declarations).toBe(".spaces/capabilities.d.ts");
    const result = await space.runTypeScript(
      'import { clock } from "spaces:capabilities"; console.log(await clock.now());',
    );
    expect(result.stdout).toBe("2026-01-01\n");
    const again = await space.addCapability("clock", { now: () => "x" }).catch((e) => e);
    expect(again).toBeInstanceOf(EngineError);
    expect(again.field).toBe("params.capability.name");
    await space.destroy();
  });

  test("a capability tool calls the function too", async () => {
    const space = await test_.engine.createSpace({ capabilities: { crm: { count: () => customers.length } } });
    const called = await space.callTool("crm_count", {});
    expect(called.isError).toBe(false);
    expect(called.text).toBe("3");
    await space.destroy();
  });

  test("handlers the engine answers (http, mcp) are passed through as declared", async () => {
    const space = await test_.engine.createSpace({
      capabilities: {
        weather: {
          handler: { kind: "http", baseUrl: "http://127.0.0.1:9" },
          methods: { today: { effect: "read", http: { method: "GET", path: "/today" } } },
        },
      },
    });
    expect(space.snapshot.capabilities).toEqual([{ name: "weather", handler: "http", methods: ["today"] }]);
    await space.destroy();
  });

  test("a protocol declaration with a client handler but no function answers an error, not silence", async () => {
    const space = await test_.engine.createSpace({
      capabilities: [{ name: "raw", handler: { kind: "client" }, methods: { ping: { effect: "read" } } }],
    });
    const result = await space.runTypeScript(
      'import { raw } from "spaces:capabilities";\n' +
        "try { await raw.ping(); } catch (e) { console.log(e.code, e.message); }",
    );
    expect(result.stdout).toStartWith("HANDLER_ERROR");
    expect(result.stdout).toContain("no function for raw.ping");
    await space.destroy();
  });

  test("a definition that is neither functions nor declared methods is refused before anything is sent", async () => {
    const error = await test_.engine
      .createSpace({ capabilities: { bad: { search: "not a function" } as never } })
      .catch((e) => e);
    expect(error).toBeInstanceOf(SpacesError);
    expect(error.message).toContain("bad");
  });
});
