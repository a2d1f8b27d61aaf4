// Hello, space: the smallest complete journey.
//
//   1. start an engine (the `spaces` binary, as a child process of this program)
//   2. create a space: an isolated Linux sandbox with its own /workspace
//   3. write a TypeScript program into it and run it with `bun`, inside the space
//   4. read back the file the program made, and look at the events the engine recorded
//
// Run: bun examples/hello/main.ts [--keep]   (--keep leaves the engine's state directory on disk, to look at)
import { Spaces } from "agent-spaces";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const keep = process.argv.includes("--keep");
const failures: string[] = [];
let engine: Spaces | undefined;

try {
  // `spaces serve` as a child process. Every space and its workspace live in the engine's state directory: a
  // temporary one (removed by close()) keeps this run apart; with --keep, a fresh one that stays.
  const options = keep ? { stateDir: mkdtempSync(join(tmpdir(), "spaces-hello-")) } : { temporary: true };
  engine = await Spaces.start(options);
  const stateDir = engine.info.stateDir;
  const { isolation } = engine.info;
  const layers = (["user", "mount", "pid", "net", "ipc", "uts", "seccomp"] as const).filter((layer) => isolation[layer]);
  console.log(`engine ${engine.info.engine.version} · Bun ${engine.info.runtimes[0]?.version}`
    + ` · isolation: ${isolation.unsafe ? "NONE (--unsafe-no-isolation)" : layers.join(", ")}`);

  const space = await engine.createSpace({ name: "hello" });
  console.log(`space ${space.id} created; its programs see their files under /workspace`);

  // A run groups the operations of one task: the engine counts them and keeps their transcript.
  const run = await space.startRun("hello");

  // The program an agent might write. It runs in the space, so it can only touch the space's files.
  const program = `import { mkdirSync, writeFileSync } from "node:fs";
const greeting = { message: "Hello from a space!", bun: Bun.version, at: new Date().toISOString() };
mkdirSync("out", { recursive: true });
writeFileSync("out/hello.json", JSON.stringify(greeting, null, 2) + "\\n");
console.log("wrote out/hello.json");
`;
  await run.writeFile("hello.ts", program);
  console.log(`wrote hello.ts (${program.length} bytes)`);

  // run() takes an argv (or a shell string) and resolves when the process exits; a non-zero exit is not an error.
  const result = await run.run(["bun", "hello.ts"]);
  console.log(`ran \`bun hello.ts\`: exit ${result.exitCode} in ${result.durationMs} ms, printed "${result.stdout.trim()}"`);

  // The artifact, read through the engine as an agent would.
  const text = await run.readFile("out/hello.json");
  const summary = await run.end();

  // Every operation came back as ordered events; the run's transcript holds them all.
  console.log(`\nrun ${summary.runId}: ${summary.operations.succeeded}/${summary.operations.total} operations succeeded;`
    + " its events:");
  for (const entry of await run.transcript()) {
    if (entry.kind === "event") console.log("  " + describe(entry.data));
  }

  console.log("\nthe artifact, /workspace/out/hello.json in the space:\n" + text.trimEnd());
  // On the host, the workspace is an ordinary directory inside the state directory.
  const onHost = join(stateDir, "spaces", space.id, "workspace", "out", "hello.json");
  console.log(`\nartifact: ${onHost}${keep ? "" : "\n(removed at the end; run with --keep to keep it)"}`);

  if (!result.ok) failures.push(`bun hello.ts exited ${result.exitCode}: ${result.stderr}`);
  if (JSON.parse(text).message !== "Hello from a space!") failures.push(`unexpected artifact: ${text}`);
  if (!existsSync(onHost) || readFileSync(onHost, "utf8") !== text) failures.push(`${onHost} does not hold it`);

  if (!keep) await space.destroy(); // kills every process of the space and removes its workspace
} finally {
  await engine?.close(); // stops the engine; spaces not destroyed stay in the state directory
}

/** One line per event: its sequence number in the space, its type and the detail that matters. */
function describe(event: Record<string, any>): string {
  const detail: Record<string, string> = {
    "operation.started": event.kind,
    "file.written": `${event.path} (${event.bytes} bytes)`,
    "command.exited": `exit ${event.exitCode} in ${event.durationMs} ms`,
    "file.content": `${event.path} (${event.bytes} bytes)`,
    "operation.completed": `in ${event.durationMs} ms`,
  };
  return `#${event.seq} ${event.type.padEnd(20)} ${detail[event.type] ?? ""}`;
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
