// Repository work: fix a failing test the way a coding agent would, inside a space.
//
//   repo/    a small TypeScript project (kept beside this file) with `bun test` tests; one function has a bug
//
// The harness copies the project into a space, runs its tests (they fail), edits the buggy line with editFile
// (an exact text replacement, as an agent's edit tool makes), runs the tests again (they pass), and checks the
// exit codes. All of it is one run, whose summary lists what changed.
//
// Run: bun examples/repository/main.ts
import { Spaces } from "agent-spaces";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** Every file under a host directory, as workspace path → content. */
function filesOf(root: string, dir = root, files: Record<string, string> = {}): Record<string, string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) filesOf(root, path, files);
    else files[relative(root, path)] = readFileSync(path, "utf8");
  }
  return files;
}

const failures: string[] = [];
let engine: Spaces | undefined;

try {
  engine = await Spaces.start({ temporary: true }); // `spaces serve` as a child, its state in a temp dir
  const space = await engine.createSpace({ name: "repository", files: filesOf(join(import.meta.dir, "repo")) });
  const tree = await space.listFiles(".", { recursive: true });
  console.log(`space ${space.id} holds the project:`);
  for (const entry of tree) if (entry.type === "file") console.log(`  ${entry.path}`);

  // A run groups the operations of one task; its transcript and summary are kept by the engine.
  const run = await space.startRun("fix the failing test");

  // 1. The tests, as the project has them. A failing test suite is an exit code, not an exception.
  const before = await run.run(["bun", "test"]);
  const failed = `${before.stdout}${before.stderr}`.split("\n").filter((l) => l.startsWith("(fail)"));
  console.log(`\n$ bun test   → exit ${before.exitCode}; ${failed.length} failing:`);
  for (const line of failed) console.log("  " + line.replace(/ \[[\d.]+ms\]$/, ""));

  // 2. The agent reads the code under test and finds the bug: 10 units should already get the bulk discount.
  const source = await run.readFile("src/discount.ts");
  const buggy = source.split("\n").find((line) => line.includes("units > 10"));
  console.log(`\nsrc/discount.ts has:   ${buggy?.trim()}`);

  // 3. The fix, as an edit: oldText must occur exactly once in the file, or the edit fails and changes nothing.
  await run.editFile("src/discount.ts", { oldText: "if (units > 10)", newText: "if (units >= 10)" });
  const fixed = (await run.readFile("src/discount.ts")).split("\n").find((line) => line.includes("units >= 10"));
  console.log(`edited it to:          ${fixed?.trim()}`);

  // 4. The tests again, with their output streamed as it comes (exec), as a long command's would be.
  console.log("\n$ bun test");
  const tests = run.exec(["bun", "test"]);
  for await (const chunk of tests) process.stdout.write(chunk.data.replace(/^(?=.)/gm, "  "));
  const after = await tests.result; // the same RunResult as run() answers
  console.log(`  → exit ${after.exitCode}`);

  const ended = await run.end();
  console.log(`\nrun ${ended.runId} "${ended.label}": ${ended.operations.succeeded}/${ended.operations.total}`
    + ` operations succeeded; files it changed: ${ended.artifacts.join(", ")}`);

  if (before.exitCode === 0) failures.push("the tests passed before the fix");
  if (failed.length === 0) failures.push("no failing test was reported before the fix");
  if (after.exitCode !== 0) failures.push(`the tests still fail after the fix:\n${after.stderr}`);
  if (!ended.artifacts.includes("src/discount.ts")) failures.push("the run does not list src/discount.ts");

  await space.destroy();
} finally {
  await engine?.close();
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
