// The compiled SDK (dist/, from `tsc -p sdk/typescript`) on Node.js 20 against the real engine: start, create,
// write, run, read, destroy, close. Run from the repository's root: node sdk/typescript/test/node-smoke.mjs
// (the engine is SPACES_BIN, else .build/debug/spaces).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { EngineError, Spaces } from "../dist/index.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const binary = process.env.SPACES_BIN ?? join(root, ".build/debug/spaces");
const stateDir = mkdtempSync(join(tmpdir(), "spaces-node-smoke-"));
const failures = [];
const check = (condition, what) => condition || failures.push(what);

const engine = await Spaces.start({ binary, stateDir, stderr: "ignore" });
try {
  check(engine.info.protocolVersion === "0.1", `initialize answered ${JSON.stringify(engine.info)}`);
  const space = await engine.createSpace({ name: "node-smoke" });
  const written = await space.writeFile("main.ts", 'console.log("node " + (6 * 7));');
  check(written.bytes === 31, `writeFile answered ${JSON.stringify(written)}`);
  const result = await space.run(["bun", "main.ts"]);
  check(result.ok && result.stdout === "node 42\n", `run answered ${JSON.stringify(result)}`);
  const exec = space.exec("echo streamed");
  let streamed = "";
  for await (const chunk of exec) streamed += chunk.data;
  check(streamed === "streamed\n", `exec streamed ${JSON.stringify(streamed)}`);
  const read = await space.readFile("main.ts");
  check(read === 'console.log("node " + (6 * 7));', `readFile answered ${JSON.stringify(read)}`);
  const bytes = await space.readBytes("main.ts");
  check(bytes instanceof Uint8Array && bytes.length === 31, "readBytes did not answer the file's bytes");
  const missing = await engine.getSpace("sp_0000000000000000").catch((error) => error);
  check(missing instanceof EngineError && missing.code === -32010, `getSpace of nothing threw ${missing}`);
  const destroyed = await space.destroy();
  check(destroyed.destroyed === true, `destroy answered ${JSON.stringify(destroyed)}`);
} finally {
  const status = await engine.close();
  check(status.code === 0, `the engine exited with ${JSON.stringify(status)}`);
  rmSync(stateDir, { recursive: true, force: true });
}

for (const failure of failures) console.error("FAIL: " + failure);
console.log(failures.length === 0 ? `node ${process.version}: ok` : "node smoke test failed");
process.exit(failures.length === 0 ? 0 : 1);
