// The `spaces:capabilities` module inside a space (see docs/PROTOCOL.md, Capabilities).
//
// The worker preloads this file into every Bun program it starts when the space has capabilities
// (BUN_OPTIONS=--preload=…). It registers the virtual module `spaces:capabilities`, whose named exports are the
// space's capabilities: `import { crm } from "spaces:capabilities"; await crm.search({ q: "acme" })`. Each call
// goes as one JSON line over the worker's Unix socket to the engine, which checks, audits and dispatches it; the
// program sees the result, or a CapabilityError. Plain JavaScript, so that no program pays for transpiling it.

import { plugin } from "bun";

const manifest = (() => {
  try {
    const parsed = JSON.parse(process.env.SPACES_CAPABILITIES || "[]");
    return Array.isArray(parsed) ? parsed : [];
  } catch {
    return [];
  }
})();
const socketPath = process.env.SPACES_CAPABILITIES_SOCKET;
const token = process.env.SPACES_CAPABILITY_TOKEN;

/** Thrown by a capability call that failed: `code` says why, `hint` how to fix it. */
class CapabilityError extends Error {
  constructor(code, message, hint, capability, method) {
    super(message);
    this.name = "CapabilityError";
    this.code = code;
    this.hint = hint || "";
    this.capability = capability;
    this.method = method;
  }
}

let socket;
let connecting;
let buffer = "";
let nextCall = 1;
const pending = new Map();
const queue = [];

function settle(message) {
  const entry = pending.get(message.c);
  if (entry === undefined) return;
  pending.delete(message.c);
  if (pending.size === 0 && socket) socket.unref();
  if (message.ok === true) entry.resolve(message.r);
  else {
    const e = message.e || {};
    entry.reject(
      new CapabilityError(e.code || "HANDLER_ERROR", e.message || "the call failed", e.hint, entry.capability, entry.method),
    );
  }
}

function failAll(message) {
  for (const [c, entry] of pending) {
    pending.delete(c);
    entry.reject(
      new CapabilityError("HANDLER_ERROR", message, "run the program again", entry.capability, entry.method),
    );
  }
}

function flush() {
  while (queue.length > 0) {
    const head = queue[0];
    const written = socket.write(head);
    if (written < head.length) {
      queue[0] = head.subarray(Math.max(written, 0));
      return;
    }
    queue.shift();
  }
}

function connect() {
  if (connecting) return connecting;
  connecting = Bun.connect({
    unix: socketPath,
    socket: {
      data(_socket, chunk) {
        let text = buffer + chunk.toString("utf8");
        let nl = text.indexOf("\n");
        while (nl !== -1) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          if (line.length > 0) {
            try {
              settle(JSON.parse(line));
            } catch {}
          }
          nl = text.indexOf("\n");
        }
        buffer = text;
      },
      drain() {
        flush();
      },
      close() {
        socket = undefined;
        connecting = undefined;
        failAll("the space's capability channel closed");
      },
      error() {},
    },
  }).then((s) => {
    socket = s;
    if (pending.size === 0) s.unref();
    return s;
  });
  connecting.catch(() => {
    connecting = undefined;
  });
  return connecting;
}

/** Calls `capability.method(params)` through the engine. */
async function call(capability, method, params) {
  if (!socketPath || !token) {
    throw new CapabilityError(
      "DENIED",
      "capabilities are reachable only from programs that a space's command.run or code.run started",
      "run this program with code.run or command.run in a space that declares the capability",
      capability,
      method,
    );
  }
  let body;
  try {
    body = JSON.stringify(params === undefined ? null : params);
  } catch (err) {
    throw new CapabilityError(
      "INVALID_PARAMS",
      `the params of ${capability}.${method} cannot be sent as JSON: ${err?.message ?? err}`,
      "pass plain objects, arrays, strings, numbers, booleans and null",
      capability,
      method,
    );
  }
  const c = nextCall++;
  const line = Buffer.from(
    '{"t":' + JSON.stringify(token) + ',"c":' + c + ',"cap":' + JSON.stringify(capability) + ',"m":' +
      JSON.stringify(method) + ',"p":' + body + "}\n",
    "utf8",
  );
  const result = new Promise((resolve, reject) => pending.set(c, { resolve, reject, capability, method }));
  let s = socket;
  if (s === undefined) {
    try {
      s = await connect();
    } catch (err) {
      pending.delete(c);
      throw new CapabilityError(
        "HANDLER_ERROR",
        `cannot reach the space's capability channel: ${err?.message ?? err}`,
        "run the program again; the channel belongs to the operation that started it",
        capability,
        method,
      );
    }
  }
  s.ref();
  if (queue.length > 0) queue.push(line);
  else {
    const written = s.write(line);
    if (written < line.length) queue.push(line.subarray(Math.max(written, 0)));
  }
  return result;
}

/** One capability as an object whose every property is a method. */
function capability(name, methods) {
  const known = new Set(methods);
  return new Proxy(Object.create(null), {
    get(_target, method) {
      if (typeof method !== "string") return undefined;
      if (method === "then") return undefined; // not a thenable
      return (params) => call(name, method, params);
    },
    has(_target, method) {
      return typeof method === "string" && known.has(method);
    },
    ownKeys() {
      return [...known];
    },
    getOwnPropertyDescriptor(_target, method) {
      return typeof method === "string" && known.has(method)
        ? { enumerable: true, configurable: true, value: (params) => call(name, method, params) }
        : undefined;
    },
  });
}

const all = Object.create(null);
for (const entry of manifest) {
  if (entry && typeof entry.name === "string") all[entry.name] = capability(entry.name, entry.methods || []);
}
const runtime = { all, CapabilityError, call };
globalThis[Symbol.for("agent-spaces.capabilities")] = runtime;

const source =
  'const rt = globalThis[Symbol.for("agent-spaces.capabilities")];\n' +
  "export const CapabilityError = rt.CapabilityError;\n" +
  Object.keys(all)
    .filter((name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    .map((name) => `export const ${name} = rt.all[${JSON.stringify(name)}];\n`)
    .join("") +
  "export const capabilities = rt.all;\nexport default rt.all;\n";

plugin({
  name: "agent-spaces capabilities",
  setup(build) {
    build.module("spaces:capabilities", () => ({ contents: source, loader: "js" }));
  },
});
