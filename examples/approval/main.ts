// Approvals: the policy asks a person before a sensitive command runs.
//
// The space's policy says `git push *` needs approval. The agent commits a change and pushes it, twice; a
// scripted person (the onApproval handler, standing in for your UI) reads each request — title, what, why,
// impact — and denies the first push, allows the second. The remote is a bare repository inside the space,
// so the push is real and touches nothing outside it. A force push is denied by a rule, without asking.
//
// Run: bun examples/approval/main.ts
import { ApprovalDeniedError, PolicyDeniedError, Spaces } from "agent-spaces";
import type { ApprovalOption, ApprovalRequest } from "agent-spaces";

// The person: says no the first time, yes (this once) the second. The note goes into the audit log.
const asked: ApprovalRequest[] = [];
async function person(request: ApprovalRequest): Promise<{ decision: ApprovalOption; note: string }> {
  asked.push(request);
  console.log(`\n  ┌ approval needed: ${request.title}`);
  console.log(`  │ what:   ${request.what}`);
  console.log(`  │ why:    ${request.why}`);
  console.log(`  │ impact: ${request.impact}`);
  const answer = asked.length === 1
    ? { decision: "deny" as const, note: "not before the release review" }
    : { decision: "allow_once" as const, note: "review done" };
  console.log(`  └ the person answers: ${answer.decision} ("${answer.note}")`);
  return answer;
}

const failures: string[] = [];
let engine: Spaces | undefined;

try {
  engine = await Spaces.start({ temporary: true }); // `spaces serve` as a child, its state in a temp dir
  const space = await engine.createSpace({
    name: "approval",
    // A partial policy: the `default` preset, plus a rule that asks before any `git push` and one that refuses
    // a force push outright.
    policy: { commands: { ask: ["git push *"], deny: ["git push --force *"] } },
    files: { "project/README.md": "# Release notes\n\n- 2.6.0: approvals for risky commands\n" },
    onApproval: person,
  });
  const { ask, deny } = space.policy.commands;
  console.log(`space ${space.id}; its policy asks before ${JSON.stringify(ask)} and denies ${JSON.stringify(deny)}`);

  // Set-up (allowed by the policy without asking): a repository with one commit and a local bare remote.
  const git = { cwd: "project", env: { GIT_AUTHOR_NAME: "Agent", GIT_AUTHOR_EMAIL: "agent@example.com",
    GIT_COMMITTER_NAME: "Agent", GIT_COMMITTER_EMAIL: "agent@example.com" } };
  const setup = await space.run(
    "git init -q --bare ../remote.git && git init -q -b main && git remote add origin ../remote.git"
      + " && git add -A && git commit -q -m 'Release notes for 2.6.0' && git log --oneline",
    git,
  );
  console.log(`committed: ${setup.stdout.trim()}`);

  // First push: the engine stops before running it and asks; the person says no; the SDK throws.
  console.log("\n$ git push origin main");
  try {
    await space.run("git push origin main", git);
    failures.push("the first push ran without approval");
  } catch (error) {
    if (!(error instanceof ApprovalDeniedError)) throw error;
    console.log(`  → ${error.name}: ${error.message}`);
  }
  const remoteAfterDeny = await space.run("git --git-dir remote.git rev-parse --verify -q main");
  console.log(`  the remote's main branch: ${remoteAfterDeny.ok ? remoteAfterDeny.stdout.trim() : "(none: nothing was pushed)"}`);

  // Second push: asked again (allow_once grants nothing for later), allowed this time, and it runs.
  console.log("\n$ git push origin main");
  const pushed = await space.run("git push origin main", git);
  console.log(`  → exit ${pushed.exitCode}\n${(pushed.stdout + pushed.stderr).trimEnd().replace(/^/gm, "    ")}`);
  const head = (await space.run("git rev-parse HEAD", git)).stdout.trim();
  const remote = (await space.run("git --git-dir remote.git rev-parse main")).stdout.trim();
  console.log(`  the remote's main branch: ${remote} (the local HEAD is ${head})`);

  // A force push matches a deny rule: refused at once, nobody is asked, and the error says which rule and why.
  console.log("\n$ git push --force origin main");
  let refused: PolicyDeniedError | undefined;
  try {
    await space.run("git push --force origin main", git);
  } catch (error) {
    if (!(error instanceof PolicyDeniedError)) throw error;
    refused = error;
    console.log(`  → ${error.name}: ${error.reason}\n    rule: ${error.rule}\n    suggestion: ${error.suggestion}`);
  }

  if (!refused) failures.push("the force push was not refused");
  if (asked.length !== 2) failures.push(`the person was asked ${asked.length} times, not 2`);
  if (remoteAfterDeny.ok) failures.push("the denied push reached the remote");
  if (!pushed.ok || remote !== head) failures.push("the allowed push did not reach the remote");

  await space.destroy();
} finally {
  await engine?.close();
}

for (const failure of failures) console.error("FAIL: " + failure);
if (failures.length === 0) console.log("ok");
process.exit(failures.length === 0 ? 0 : 1);
