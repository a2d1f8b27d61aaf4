// Data processing: a CSV goes in, an agent's program crunches it inside a space, JSON artifacts come out.
//
//   sales.csv       200 sales orders (kept beside this file): date, region, customer, product, units, price
//   summarize.ts    the program the agent wrote; it runs in the space and writes
//                   out/summary.json (totals, by region, by month) and out/chart.json (chart-ready series)
//
// This program (the harness) seeds the space with both files, runs the agent's program, reads the artifacts
// back and checks every number against its own computation.
//
// Run: bun examples/data-processing/main.ts
import { Spaces } from "agent-spaces";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const here = import.meta.dir;
const csv = readFileSync(join(here, "sales.csv"), "utf8");
const program = readFileSync(join(here, "summarize.ts"), "utf8");

const failures: string[] = [];
const check = (ok: boolean, what: string) => ok || failures.push(what);
let engine: Spaces | undefined;

try {
  engine = await Spaces.start({ temporary: true }); // `spaces serve` as a child, its state in a temp dir
  // `files` seeds the workspace when the space is created: workspace path → content.
  const space = await engine.createSpace({
    name: "data-processing",
    files: { "data/sales.csv": csv, "summarize.ts": program },
  });
  console.log(`space ${space.id}: data/sales.csv (${csv.trim().split("\n").length - 1} rows) and summarize.ts`);

  const result = await space.run(["bun", "summarize.ts", "data/sales.csv"]);
  console.log(`\n$ bun summarize.ts data/sales.csv   (exit ${result.exitCode}, ${result.durationMs} ms)`);
  console.log(result.stdout.trimEnd().replace(/^/gm, "  "));
  if (!result.ok) throw new Error(`the program failed:\n${result.stderr}`);

  const listing = await space.listFiles("out");
  console.log(`\nartifacts: ${listing.map((e) => `/workspace/${e.path} (${e.size} bytes)`).join(", ")}`);
  const summary = JSON.parse(await space.readFile("out/summary.json"));
  const chart = JSON.parse(await space.readFile("out/chart.json"));
  const top = summary.topProducts[0];
  console.log(`summary.json: ${summary.orders} orders, top product ${top.product} ($${top.revenue.toLocaleString("en-US")})`);
  console.log(`chart.json: "${chart.title}", ${chart.series.length} series × ${chart.labels.length} months`);

  // The harness's own computation, in cents, to check the agent's numbers.
  const expected = { orders: 0, units: 0, cents: 0, region: new Map<string, number>(), month: new Map<string, number>() };
  for (const line of csv.trim().split("\n").slice(1)) {
    // Only the customer and product columns may hold quoted commas: the first three and last two never do.
    const fields = line.split(",");
    const [, orderDate, region] = fields;
    const [units, price] = fields.slice(-2).map(Number);
    const cents = units * Math.round(price * 100);
    expected.orders++;
    expected.units += units;
    expected.cents += cents;
    expected.region.set(region, (expected.region.get(region) ?? 0) + cents);
    expected.month.set(orderDate.slice(0, 7), (expected.month.get(orderDate.slice(0, 7)) ?? 0) + cents);
  }
  const cents = (dollars: number) => Math.round(dollars * 100);
  check(summary.orders === expected.orders, `orders: ${summary.orders} ≠ ${expected.orders}`);
  check(summary.units === expected.units, `units: ${summary.units} ≠ ${expected.units}`);
  check(cents(summary.revenue) === expected.cents, `revenue: ${summary.revenue} ≠ ${expected.cents / 100}`);
  for (const [region, total] of expected.region) {
    check(cents(summary.byRegion[region]?.revenue) === total, `revenue of ${region}`);
  }
  for (const [month, total] of expected.month) {
    check(cents(summary.byMonth[month]?.revenue) === total, `revenue of ${month}`);
    // The chart's bars for a month stack up to that month's revenue.
    const column = chart.labels.indexOf(month);
    const stacked = chart.series.reduce((sum: number, s: { data: number[] }) => sum + cents(s.data[column]), 0);
    check(stacked === total, `chart column ${month}: ${stacked / 100} ≠ ${total / 100}`);
  }
  check(chart.series.length === expected.region.size, "one chart series per region");
  check(Object.keys(summary.byMonth).length === expected.month.size, "one summary entry per month");
  console.log(`checked: ${expected.orders} orders, ${expected.region.size} regions, ${expected.month.size} months`);

  await space.destroy();
} finally {
  await engine?.close();
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
