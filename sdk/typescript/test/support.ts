// What every SDK test shares: a real engine (`.build/debug/spaces`, or SPACES_BIN) on a fresh state directory,
// removed afterwards.

import { Spaces, type StartOptions } from "agent-spaces";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The repository's root, where `.build/debug/spaces` is. */
export const repositoryRoot = resolve(import.meta.dir, "../../..");

/** The engine binary under test: SPACES_BIN, else the debug build of this checkout. */
export const binary = process.env.SPACES_BIN ?? join(repositoryRoot, ".build/debug/spaces");

if (!existsSync(binary)) {
  throw new Error(`no engine binary at ${binary}: run \`swift build\` at the repository's root, or set SPACES_BIN`);
}

export interface TestEngine {
  engine: Spaces;
  stateDir: string;
  /** Closes the engine (if still open) and removes its state directory. */
  stop(): Promise<void>;
}

/** Starts an engine on a new temporary state directory. Its warnings go to a function, not the test output. */
export async function startEngine(options: StartOptions = {}): Promise<TestEngine> {
  const stateDir = mkdtempSync(join(tmpdir(), "spaces-sdk-test-"));
  const engine = await Spaces.start({ binary, stateDir, stderr: () => {}, ...options });
  return {
    engine,
    stateDir,
    async stop() {
      await engine.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `condition` holds, checking every 20 ms, failing after `ms`. */
export async function eventually(condition: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`a condition did not hold within ${ms} ms`);
    await sleep(20);
  }
}

/** How long `promise` takes to settle, and how it settled. */
export async function timed<T>(promise: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = Date.now();
  try {
    const value = await promise;
    return { ms: Date.now() - started, value };
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
}
