// Capabilities instead of tools: the same task done twice against a real engine, and what each way sends back
// to the model.
//
// The task: "find our three largest gold customers in EMEA and write a short report". The company's CRM holds
// 1,000 customers; the developer hands it to the space as a `crm` capability, answered by a plain function of
// this program.
//
//   code mode   the agent writes one TypeScript program that imports `crm`, filters the 1,000 records in the
//               space and writes out/report.md; the model sees only what the program prints.
//   tool mode   the agent calls the `crm_search` tool (the same capability, as a tool) and reads its result:
//               all the records go back to the model, which then writes the report with `write_file`.
//
// Run: bun examples/crm/main.ts
// It exits non-zero if the report is wrong or code mode does not send the model far less.
import { Spaces } from "agent-spaces";
import { join } from "node:path";

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

/** The capability's one method, as the company's CRM client would implement it. */
async function search(params: { q?: string }) {
  const q = (params.q ?? "").toLowerCase();
  return customers.filter((c) => c.name.toLowerCase().includes(q));
}

/** The program the agent writes in code mode. It runs in the space; `crm` calls come back to `search` above. */
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

const utf8Bytes = (text: string) => new TextEncoder().encode(text).length;

const failures: string[] = [];
let engine: Spaces | undefined;

try {
  engine = await Spaces.start({ temporary: true }); // `spaces serve` as a child, its state in a temp dir
  const space = await engine.createSpace({
    name: "crm-example",
    capabilities: {
      crm: {
        description: "The company's customer records",
        methods: {
          search: {
            description: "Customers whose name contains `q` (every customer without it). Returns full records.",
            effect: "read",
            params: { type: "object", properties: { q: { type: "string" } }, additionalProperties: false },
            result: {
              type: "array",
              items: {
                type: "object",
                required: ["id", "name", "tier", "region", "annualRevenue"],
                properties: {
                  id: { type: "integer" }, name: { type: "string" }, tier: { type: "string" },
                  region: { type: "string" }, annualRevenue: { type: "number" },
                  contact: { type: "string" }, notes: { type: "string" },
                },
              },
            },
            handler: search,
          },
        },
      },
    },
  });

  // Code mode: one program, filtered in the space, inside a run whose transcript records what came back.
  const run = await space.startRun("code mode");
  const result = await run.runTypeScript(agentProgram);
  await run.end();
  // The transcript's events are the record of what went back to the model: the program's output, and no records.
  const events = (await run.transcript()).filter((e) => e.kind === "event").map((e) => e.data as any);
  const codeBytes = events
    .filter((e) => e.type === "command.exited")
    .reduce((n, e) => n + utf8Bytes(e.stdout + e.stderr), 0);
  const moved = events.find((e) => e.type === "capability.called")?.bytes ?? 0;

  // Tool mode: the same capability as a tool; its whole result goes back to the model.
  const searchTool = (await space.tools()).find((t) => t.name === "crm_search");
  const found = await space.callTool("crm_search", {});
  // The model now reads all 1,000 records, picks the three and writes the report; the write's answer is small.
  const top = JSON.parse(found.text)
    .filter((c: any) => c.tier === "gold" && c.region === "emea")
    .sort((a: any, b: any) => b.annualRevenue - a.annualRevenue)
    .slice(0, 3);
  const content = top.map((c: any) => c.name).join("\n") + "\n";
  const written = await space.callTool("write_file", { path: "out/report-tools.md", content });
  const toolBytes = utf8Bytes(found.text) + utf8Bytes(written.text);

  const report = await space.readFile("out/report.md");
  await space.destroy();

  console.log(result.stdout.trimEnd());
  console.log("");
  console.log("bytes returned to the model for the same task:");
  console.log(`  code mode (capability called from TypeScript)  ${String(codeBytes).padStart(8)} B`);
  console.log(`  tool mode (crm_search + write_file tool calls) ${String(toolBytes).padStart(8)} B`);
  console.log(`  ratio                                           ${(toolBytes / codeBytes).toFixed(1)}×`);
  console.log(`  (records the capability moved inside the space in code mode: ${moved} B;`);
  console.log(`   the code-mode run's transcript events: ${events.map((e) => e.type).join(", ")})`);
  console.log(`  (tool mode's crm_search tool takes ${JSON.stringify(searchTool?.inputSchema)})`);

  const names = customers
    .filter((c) => c.tier === "gold" && c.region === "emea")
    .sort((a, b) => b.annualRevenue - a.annualRevenue)
    .slice(0, 3)
    .map((c) => c.name);
  if (!names.every((name) => report.includes(name))) failures.push(`the report lacks ${names.join(", ")}`);
  if (!names.every((name) => found.text.includes(name))) failures.push("the tool result lacks the top customers");
  if (codeBytes !== utf8Bytes(result.stdout + result.stderr)) failures.push("the transcript and the result disagree");
  if (!(codeBytes * 20 < toolBytes)) failures.push(`code mode sent ${codeBytes} B, not far less than ${toolBytes} B`);
} finally {
  await engine?.close();
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
