// The agent's program: it runs inside the space (`bun render.ts report.md out/report.html`), not on the host.
// A small Markdown-to-HTML converter of its own (the space has no network, so no npm packages): headings,
// paragraphs, bullet and numbered lists, tables, fenced code, and inline bold, italic, code and links.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Inline Markdown: `code` first (its content is left alone), then links, bold and italic. */
function inline(text: string): string {
  return text
    .split(/(`[^`]+`)/)
    .map((part) =>
      part.startsWith("`") && part.endsWith("`") && part.length > 1
        ? `<code>${escape(part.slice(1, -1))}</code>`
        : escape(part)
            .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>')
            .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
            .replace(/\*([^*]+)\*/g, "<em>$1</em>"),
    )
    .join("");
}

const cells = (line: string) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());

function render(markdown: string): { title: string; body: string } {
  const lines = markdown.replace(/\r\n/g, "\n").split("\n");
  const out: string[] = [];
  let title = "";
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (line.trim() === "") {
      i++;
    } else if (line.startsWith("```")) {
      const language = line.slice(3).trim();
      const code: string[] = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      i++; // the closing fence
      const cls = language ? ` class="language-${escape(language)}"` : "";
      out.push(`<pre><code${cls}>${escape(code.join("\n"))}</code></pre>`);
    } else if (heading) {
      const level = heading[1].length;
      if (level === 1 && !title) title = heading[2];
      const id = heading[2].toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
      out.push(`<h${level} id="${id}">${inline(heading[2])}</h${level}>`);
      i++;
    } else if (line.trim().startsWith("|") && /^\s*\|?[\s:|-]+\|?\s*$/.test(lines[i + 1] ?? "")) {
      const head = cells(line);
      const rows: string[][] = [];
      for (i += 2; i < lines.length && lines[i].trim().startsWith("|"); i++) rows.push(cells(lines[i]));
      out.push("<table>", "<thead><tr>" + head.map((h) => `<th>${inline(h)}</th>`).join("") + "</tr></thead>", "<tbody>");
      for (const row of rows) out.push("<tr>" + row.map((c) => `<td>${inline(c)}</td>`).join("") + "</tr>");
      out.push("</tbody>", "</table>");
    } else if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}>`);
      for (; i < lines.length && /^\s*([-*]|\d+\.)\s+/.test(lines[i]); i++) {
        out.push(`<li>${inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""))}</li>`);
      }
      out.push(`</${tag}>`);
    } else {
      const paragraph: string[] = [];
      for (; i < lines.length && lines[i].trim() !== "" && !/^(#|```|\s*\||\s*([-*]|\d+\.)\s)/.test(lines[i]); i++) {
        paragraph.push(lines[i].trim());
      }
      out.push(`<p>${inline(paragraph.join(" "))}</p>`);
    }
  }
  return { title, body: out.join("\n") };
}

const [input, output] = process.argv.slice(2);
const markdown = readFileSync(input, "utf8");
const { title, body } = render(markdown);
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3rem .6rem}pre{background:#f5f5f5;padding:1rem;overflow:auto}</style>
</head>
<body>
${body}
</body>
</html>
`;
mkdirSync(dirname(output), { recursive: true });
writeFileSync(output, html);
console.log(`rendered ${input} (${markdown.length} bytes) to ${output} (${html.length} bytes): "${title}"`);
