// Capabilities instead of tools: the same task done twice against a real engine, and what each way sends back
// to the model.
//
// The task: "find our three largest gold customers in EMEA and write a short report". The company's CRM holds
// 1,000 customers; the developer hands it to the space as a `crm` capability (answered here, by this program).
//
//   code mode   the agent writes one TypeScript program that imports `crm`, filters the 1,000 records in the
//               space and writes out/report.md; the model sees only what the program prints.
//   tool mode   the agent calls the `crm_search` tool (the same capability, through tools/call) and reads its
//               result: all the records go back to the model, which then writes the report with `write_file`.
//
// Run: bun examples/crm/crm.ts [path to spaces]   (default: .build/debug/spaces, then `spaces` on PATH)
// It exits non-zero if the report is wrong or code mode does not send the model far less.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const REGIONS = ["emea", "amer", "apac"];
const TIERS = ["gold", "silver", "bronze"];
const customers = Array.from({ length: 1000 }, (_, index) => {
  const id = index + 1;
  return {
    id,
    name: `Customer ${String(id).padStart(4, "0")}`,
    tier: TIERS[(id * 7) % 3],
    region: REGIONS[Math.floor(id / 3) % 3],
    annualRevenue: ((id * 7919) % 100_000) * 10,
    contact: `buyer${id}@example.com`,
    notes: "Renewal due next quarter; prefers email; account managed from the regional office.",
  };
});

/** The `crm` capability as the developer declares it. */
const crm = {
  name: "crm",
  description: "The company's customer records",
  methods: {
    search: {
      description: "Customers whose name contains `q` (every customer without it). Returns full records.",
      effect: "read",
      params: {
        type: "object",
        properties: { q: { type: "string" } },
        additionalProperties: false,
      },
      result: {
        type: "array",
        items: {
          type: "object",
          required: ["id", "name", "tier", "region", "annualRevenue"],
          properties: {
            id: { type: "integer" },
            name: { type: "string" },
            tier: { type: "string" },
            region: { type: "string" },
            annualRevenue: { type: "number" },
            contact: { type: "string" },
            notes: { type: "string" },
          },
        },
      },
    },
  },
  handler: { kind: "client" },
};

/** A minimal client of the engine's protocol: requests by id, notifications ignored, capabilities answered. */
class Engine {
  private nextId = 1;
  private waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private child;
  capabilityBytes = 0;

  readonly stateDir = mkdtempSync(join(tmpdir(), "crm-example-"));

  constructor(binary: string) {
    this.child = spawn(binary, ["serve", "--log-level", "error", "--state-dir", this.stateDir], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = createInterface({ input: this.child.stdout! });
    lines.on("line", (line) => this.receive(JSON.parse(line)));
  }

  private receive(message: any): void {
    if (message.method === "capabilities/invoke") {
      const q: string = message.params.params?.q ?? "";
      const found = customers.filter((c) => c.name.toLowerCase().includes(q.toLowerCase()));
      const answer = JSON.stringify({ jsonrpc: "2.0", id: message.id, result: found });
      this.capabilityBytes += answer.length;
      this.child.stdin!.write(answer + "\n");
      return;
    }
    if (typeof message.id !== "number") return;
    const waiter = this.waiting.get(message.id);
    this.waiting.delete(message.id);
    if (message.error) waiter?.reject(new Error(`${message.error.message} — ${message.error.data?.hint ?? ""}`));
    else waiter?.resolve(message.result);
  }

  call(method: string, params: Json = {}): Promise<any> {
    const id = this.nextId++;
    this.child.stdin!.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    await new Promise((resolve) => this.child.on("exit", resolve));
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

/** The program the agent writes in code mode. */
const agentProgram = `
import { mkdirSync } from "node:fs";
import { crm } from "spaces:capabilities";
const all = await crm.search({});
const gold = all.filter((c) => c.tier === "gold" && c.region === "emea");
const top = gold.sort((a, b) => b.annualRevenue - a.annualRevenue).slice(0, 3);
const lines = top.map((c, i) => \`\${i + 1}. \${c.name} — $\${c.annualRevenue.toLocaleString("en-US")} (\${c.contact})\`);
mkdirSync("out", { recursive: true });
await Bun.write("out/report.md", "# Top gold customers in EMEA\\n\\n" + lines.join("\\n") + "\\n");
console.log(\`\${all.length} customers, \${gold.length} gold in EMEA; wrote out/report.md:\`);
console.log(lines.join("\\n"));
`;

function expected(): string[] {
  return customers
    .filter((c) => c.tier === "gold" && c.region === "emea")
    .sort((a, b) => b.annualRevenue - a.annualRevenue)
    .slice(0, 3)
    .map((c) => c.name);
}

/** What a batch sends back to the model: the text of its programs' output (and file contents read). */
function modelBytes(result: any): number {
  let bytes = 0;
  for (const event of result.events ?? []) {
    if (event.type === "command.exited") bytes += Buffer.byteLength(event.stdout + event.stderr);
    if (event.type === "file.content") bytes += Buffer.byteLength(event.content);
  }
  return bytes;
}

async function main(): Promise<number> {
  const binary =
    process.argv[2] ?? (existsSync(".build/debug/spaces") ? ".build/debug/spaces" : "spaces");
  const engine = new Engine(binary);
  await engine.call("initialize", { protocolVersion: "0.1", capabilities: { capabilityHandlers: true } });
  const space = await engine.call("spaces/create", { name: "crm-example", capabilities: [crm] });
  const spaceId = space.spaceId;

  // Code mode: one program, filtered in the space.
  const run = await engine.call("runs/start", { spaceId, label: "code mode" });
  const result = await engine.call("operations/submit", {
    spaceId,
    runId: run.runId,
    operations: [{ kind: "code.run", language: "typescript", source: agentProgram }],
  });
  await engine.call("runs/end", { runId: run.runId, status: "succeeded" });
  const codeCapabilityBytes = engine.capabilityBytes;
  const transcript = await engine.call("runs/transcript", { runId: run.runId });
  const exited = result.events.find((e: any) => e.type === "command.exited");
  // The run's transcript is the record of what came back: its events carry the program's output only.
  const transcriptEvents = transcript.transcript.filter((e: any) => e.kind === "event").map((e: any) => e.data);
  const codeBytes = modelBytes({ events: transcriptEvents });

  // Tool mode: the same capability as a tool; its whole result goes back to the model.
  const tools = await engine.call("tools/list", { spaceId });
  const searchTool = tools.tools.find((t: any) => t.name === "crm_search");
  const called = await engine.call("tools/call", {
    spaceId,
    name: "crm_search",
    arguments: {},
  });
  const toolText = called.content.map((c: any) => c.text).join("");
  // The model now reads all 1,000 records, picks the three and writes the report; the write's answer is small.
  const top = JSON.parse(toolText)
    .filter((c: any) => c.tier === "gold" && c.region === "emea")
    .sort((a: any, b: any) => b.annualRevenue - a.annualRevenue)
    .slice(0, 3);
  const written = await engine.call("tools/call", {
    spaceId,
    name: "write_file",
    arguments: { path: "out/report-tools.md", content: top.map((c: any) => c.name).join("\n") + "\n" },
  });
  const toolBytes =
    Buffer.byteLength(toolText) + written.content.reduce((n: number, c: any) => n + Buffer.byteLength(c.text), 0);

  const report = await engine.call("operations/submit", {
    spaceId,
    operations: [{ kind: "file.read", path: "out/report.md" }],
  });
  const reportText: string = report.events.find((e: any) => e.type === "file.content")?.content ?? "";
  await engine.call("spaces/destroy", { spaceId });
  await engine.close();

  console.log(exited?.stdout.trimEnd());
  console.log("");
  console.log("bytes returned to the model for the same task:");
  console.log(`  code mode (capability called from TypeScript)  ${String(codeBytes).padStart(8)} B`);
  console.log(`  tool mode (crm_search + write_file tool calls) ${String(toolBytes).padStart(8)} B`);
  console.log(`  ratio                                           ${(toolBytes / codeBytes).toFixed(1)}×`);
  console.log(`  (records the capability moved inside the space in code mode: ${codeCapabilityBytes} B;`);
  console.log(`   the code-mode run's transcript: ${transcript.transcript.length} entries, events ${transcriptEvents.map((e: any) => e.type).join(", ")})`);
  console.log(`  (tool mode's crm_search tool takes ${JSON.stringify(searchTool?.inputSchema)})`);

  const names = expected();
  const failures: string[] = [];
  if (!names.every((name) => reportText.includes(name))) failures.push(`the report lacks ${names.join(", ")}`);
  if (!names.every((name) => toolText.includes(name))) failures.push("the tool result lacks the top customers");
  if (codeBytes !== modelBytes(result)) failures.push("the transcript and the batch's answer disagree");
  if (!(codeBytes * 20 < toolBytes)) failures.push(`code mode sent ${codeBytes} B, not far less than ${toolBytes} B`);
  for (const failure of failures) console.error("FAIL: " + failure);
  return failures.length === 0 ? 0 : 1;
}

process.exit(await main());
