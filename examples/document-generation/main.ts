// Document generation: Markdown goes in, an agent's program renders it to HTML inside a space.
//
//   report.md    a short report (kept beside this file): headings, a list, a table, a code block
//   render.ts    the program the agent wrote: its own small Markdown converter (a space has no network, so no
//                npm packages); it runs in the space and writes out/report.html
//
// This program (the harness) seeds the space, runs the converter, reads out/report.html back and checks that
// every element of the Markdown made it into the HTML.
//
// Run: bun examples/document-generation/main.ts
import { Spaces } from "agent-spaces";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const here = import.meta.dir;
const markdown = readFileSync(join(here, "report.md"), "utf8");
const converter = readFileSync(join(here, "render.ts"), "utf8");

const failures: string[] = [];
let engine: Spaces | undefined;

try {
  engine = await Spaces.start({ temporary: true }); // `spaces serve` as a child, its state in a temp dir
  const space = await engine.createSpace({ name: "document-generation" });
  // The same thing `files` at creation does, one operation at a time: each write is an operation of the space.
  await space.writeFile("report.md", markdown);
  await space.writeFile("render.ts", converter);
  console.log(`space ${space.id}: report.md (${markdown.length} bytes) and render.ts`);

  const result = await space.run("bun render.ts report.md out/report.html"); // a shell string works too
  console.log(`\n$ bun render.ts report.md out/report.html   (exit ${result.exitCode}, ${result.durationMs} ms)`);
  console.log("  " + result.stdout.trim());
  if (!result.ok) throw new Error(`the converter failed:\n${result.stderr}`);

  const html = await space.readFile("out/report.html");
  console.log(`\nartifact: /workspace/out/report.html, ${html.length} bytes; its body begins:`);
  const body = html.slice(html.indexOf("<body>") + 7).split("\n");
  for (const line of body.slice(0, 6)) console.log("  " + (line.length > 100 ? line.slice(0, 97) + "..." : line));

  // What the Markdown holds, and what the HTML must therefore hold.
  const count = (pattern: RegExp) => (html.match(pattern) ?? []).length;
  const expectations: [string, boolean][] = [
    ["a <title> from the first heading", html.includes("<title>Quarterly engineering report</title>")],
    ["one <h1>", count(/<h1[ >]/g) === 1],
    ["four <h2> (one per ## heading)", count(/<h2[ >]/g) === (markdown.match(/^## /gm) ?? []).length],
    ["a <ul> of 3 items", /<ul>\n(<li>.*<\/li>\n){3}<\/ul>/.test(html)],
    ["an <ol> of 3 items", /<ol>\n(<li>.*<\/li>\n){3}<\/ol>/.test(html)],
    ["a <table> with 3 <th> and 3 rows", count(/<th>/g) === 3 && count(/<tr>/g) === 4],
    ["a table cell", html.includes("<td>doctor command, faster start</td>")],
    ["<strong>, <em> and a link", html.includes("<strong>three releases</strong>") && html.includes("<em>40%</em>")
      && html.includes('<a href="https://example.com/releases">release notes</a>')],
    ["inline <code>", html.includes("<code>spaces doctor</code>")],
    ['a <pre><code class="language-ts"> block', html.includes('<pre><code class="language-ts">const space')],
    ["code escaped (&lt;, &amp;&amp;)", html.includes("&quot;&lt;timeout&gt;&quot;") && html.includes("&amp;&amp;")],
    ["no raw Markdown left", !/^#|\*\*|```|\|---/m.test(html.slice(html.indexOf("<body>")))],
  ];
  console.log("\nchecks:");
  for (const [what, ok] of expectations) {
    console.log(`  ${ok ? "✓" : "✗"} ${what}`);
    if (!ok) failures.push(what);
  }

  await space.destroy();
} finally {
  await engine?.close();
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
