// The agent's program: it runs inside the space (`bun summarize.ts data/sales.csv`), not on the host.
// It parses the CSV, totals the sales by region and by month, and writes two artifacts:
//   out/summary.json  totals, by region, by month, top products
//   out/chart.json    revenue per month, one series per region, ready for a charting library
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

/** Splits CSV text into rows of fields; handles quoted fields with commas and doubled quotes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(field), (field = "");
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field), rows.push(row), (row = []), (field = "");
    } else field += c;
  }
  if (field !== "" || row.length > 0) row.push(field), rows.push(row);
  return rows;
}

type Totals = { orders: number; units: number; revenue: number };
const add = (map: Map<string, Totals>, key: string, units: number, cents: number) => {
  const t = map.get(key) ?? { orders: 0, units: 0, revenue: 0 };
  map.set(key, { orders: t.orders + 1, units: t.units + units, revenue: t.revenue + cents });
};
// Money is summed in cents, so the totals are exact; it becomes dollars only when written out.
const dollars = (map: Map<string, Totals>) =>
  Object.fromEntries([...map].sort().map(([k, t]) => [k, { ...t, revenue: t.revenue / 100 }]));

const [header, ...records] = parseCsv(readFileSync(process.argv[2], "utf8"));
const column = (name: string) => header.indexOf(name);
const [DATE, REGION, PRODUCT, UNITS, PRICE] = ["date", "region", "product", "units", "unit_price"].map(column);

const byRegion = new Map<string, Totals>();
const byMonth = new Map<string, Totals>();
const byProduct = new Map<string, Totals>();
const byRegionMonth = new Map<string, Totals>();
let units = 0;
let cents = 0;
for (const r of records) {
  const u = Number(r[UNITS]);
  const c = u * Math.round(Number(r[PRICE]) * 100);
  const month = r[DATE].slice(0, 7);
  units += u;
  cents += c;
  add(byRegion, r[REGION], u, c);
  add(byMonth, month, u, c);
  add(byProduct, r[PRODUCT], u, c);
  add(byRegionMonth, `${r[REGION]}|${month}`, u, c);
}

const months = [...byMonth.keys()].sort();
const regions = [...byRegion.keys()].sort();
const summary = {
  source: process.argv[2],
  orders: records.length,
  units,
  revenue: cents / 100,
  byRegion: dollars(byRegion),
  byMonth: dollars(byMonth),
  topProducts: [...byProduct]
    .sort((a, b) => b[1].revenue - a[1].revenue)
    .slice(0, 3)
    .map(([product, t]) => ({ product, revenue: t.revenue / 100 })),
};
const chart = {
  title: "Revenue by month and region (USD)",
  type: "bar",
  stacked: true,
  labels: months,
  series: regions.map((region) => ({
    name: region,
    data: months.map((m) => (byRegionMonth.get(`${region}|${m}`)?.revenue ?? 0) / 100),
  })),
};

const usd = (cents: number) => "$" + (cents / 100).toLocaleString("en-US", { minimumFractionDigits: 2 });
mkdirSync("out", { recursive: true });
writeFileSync("out/summary.json", JSON.stringify(summary, null, 2) + "\n");
writeFileSync("out/chart.json", JSON.stringify(chart, null, 2) + "\n");
console.log(`${records.length} orders, ${units} units, ${usd(cents)} in total; by region:`);
for (const region of regions) console.log(`  ${region.padEnd(14)} ${usd(byRegion.get(region)!.revenue).padStart(12)}`);
console.log("wrote out/summary.json and out/chart.json");
