// Hello, space: the smallest complete journey.
//
//   1. start an engine (the `spaces` binary, as a child process of this program)
//   2. create a space: an isolated Linux sandbox with its own /workspace
//   3. write a TypeScript program into it and run it with `bun`, inside the space
//   4. read back the file the program made, and look at the events the engine reported
//
// Run: bun examples/hello/main.ts [--keep]   (--keep leaves the engine's state directory on disk, to look at)
import { Spaces } from "agent-spaces";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const keep = process.argv.includes("--keep");
// Every space and its workspace live in the engine's state directory; a fresh one keeps this run apart.
const stateDir = mkdtempSync(join(tmpdir(), "spaces-hello-"));
const engine = await Spaces.start({ stateDir });
const failures: string[] = [];

try {
  const space = await engine.createSpace({ name: "hello" });
  console.log(`space ${space.id} created; its programs see their files under /workspace`);

  // The program an agent might write: it runs in the space, so it can only touch the space's files.
  await space.writeFile(
    "hello.ts",
    [
      `import { mkdirSync, writeFileSync } from "node:fs";`,
      `const greeting = { message: "Hello from a space!", bun: Bun.version, at: new Date().toISOString() };`,
      `mkdirSync("out", { recursive: true });`,
      `writeFileSync("out/hello.json", JSON.stringify(greeting, null, 2) + "\\n");`,
      `console.log("wrote out/hello.json");`,
    ].join("\n"),
  );
  console.log("wrote hello.ts into the space");

  // run() takes an argv (or a shell string) and resolves when the process exits; a non-zero exit is not an error.
  const result = await space.run(["bun", "hello.ts"]);
  console.log(`ran \`bun hello.ts\`: exit ${result.exitCode} in ${result.durationMs} ms; stdout: ${result.stdout.trim()}`);

  // Every operation comes back as ordered events; these are the ones of the run above.
  console.log("its events:");
  for (const event of result.events) console.log(`  #${event.seq} ${event.type}`);

  // The artifact: read it through the engine, as an agent would...
  const text = await space.readFile("out/hello.json");
  const artifact = JSON.parse(text);
  console.log("\nthe artifact, /workspace/out/hello.json in the space:\n" + text.trimEnd());

  // ...and on the host, where the workspace is an ordinary directory in the state directory.
  const onHost = join(stateDir, "spaces", space.id, "workspace", "out", "hello.json");
  console.log(`\non this machine it is ${onHost}${keep ? "" : " (removed at the end; pass --keep to keep it)"}`);

  if (!result.ok) failures.push(`bun hello.ts exited ${result.exitCode}: ${result.stderr}`);
  if (artifact.message !== "Hello from a space!") failures.push(`unexpected artifact: ${text}`);
  if (!existsSync(onHost) || readFileSync(onHost, "utf8") !== text) failures.push(`${onHost} does not hold it`);

  if (!keep) await space.destroy(); // kills every process of the space and removes its workspace
} finally {
  await engine.close(); // ends the engine; spaces not destroyed stay in the state directory
  if (!keep) rmSync(stateDir, { recursive: true, force: true });
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
