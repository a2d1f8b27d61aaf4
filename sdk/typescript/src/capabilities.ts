// Capabilities as plain functions: the SDK declares them to the engine with a `client` handler and answers the
// engine's `capabilities/invoke` requests by calling them.

import { SpacesError } from "./errors.js";
import type { Capability, CapabilityEffect, CapabilityHandler, CapabilityMethod } from "./protocol.js";

/** What a capability method's function is called with besides its params. */
export interface CapabilityCall {
  spaceId: string;
  capability: string;
  method: string;
}

/**
 * A capability method's implementation: takes the params a program passed (already checked against `params`),
 * returns the result (JSON; `undefined` is sent as null). A thrown error reaches the program as a
 * `CapabilityError` with code `HANDLER_ERROR`, its message, and `err.hint` when the error has one.
 */
export type CapabilityFunction = (params: any, call: CapabilityCall) => unknown;

/** A method with its declaration: JSON Schemas for params and result, and its effect (default `write`). */
export interface CapabilityMethodDefinition {
  handler: CapabilityFunction;
  description?: string;
  params?: Record<string, unknown> | boolean;
  result?: Record<string, unknown> | boolean;
  effect?: CapabilityEffect;
}

/**
 * One capability, in any of three forms:
 * - shorthand, methods as functions: `{ search: async (params) => … }` (each declared with effect `write`);
 * - declared: `{ description?, timeoutMs?, methods: { search: { handler, description?, params?, result?, effect? } } }`
 *   (a method may also be a bare function);
 * - answered by the engine itself: `{ handler: { kind: "http" | "mcp", … }, description?, methods? }`, passed
 *   through as the protocol has it.
 */
export type CapabilityDefinition =
  | { [method: string]: CapabilityFunction }
  | {
      description?: string;
      /** How long each call may take before the program gets `TIMEOUT` (default 30,000 ms). */
      timeoutMs?: number;
      methods: { [method: string]: CapabilityMethodDefinition | CapabilityFunction };
    }
  | { handler: CapabilityHandler; description?: string; methods?: { [method: string]: CapabilityMethod } };

/** A space's capabilities: by name, or as the protocol declares them (`Capability[]`). */
export type CapabilityDefinitions = Record<string, CapabilityDefinition> | Capability[];

/** The effect SDK-declared methods get when they do not say: they change something, but nothing destructive. */
const DEFAULT_EFFECT: CapabilityEffect = "write";

/** A capability as `spaces/create` takes it, and the functions that answer its methods. */
export interface DeclaredCapability {
  declaration: Capability;
  functions: Map<string, CapabilityFunction>;
}

export function declareCapability(name: string, definition: CapabilityDefinition): DeclaredCapability {
  const functions = new Map<string, CapabilityFunction>();
  const candidate = definition as Record<string, unknown>;
  if (isObject(candidate.handler)) {
    // Answered by the engine (http, mcp), or a client handler with methods the caller answers some other way.
    const { handler, description, methods } = definition as Capability;
    const declaration: Capability = {
      name,
      handler,
      ...(description ? { description } : {}),
      ...(methods ? { methods } : {}),
    };
    return { declaration, functions };
  }
  const declared = isObject(candidate.methods);
  const methodEntries = Object.entries(declared ? (candidate.methods as object) : candidate);
  if (methodEntries.length === 0) {
    throw new SpacesError(`capability ${name} has no methods; give it at least one function`);
  }
  const methods: Record<string, CapabilityMethod> = {};
  for (const [method, value] of methodEntries) {
    if (typeof value === "function") {
      functions.set(method, value as CapabilityFunction);
      methods[method] = { effect: DEFAULT_EFFECT };
      continue;
    }
    if (!isObject(value) || typeof (value as { handler?: unknown }).handler !== "function") {
      throw new SpacesError(
        `capability ${name}: method ${method} must be a function or { handler: function, … }` +
          (declared ? "" : "; to declare methods with schemas, put them under `methods`"),
      );
    }
    const { handler, effect, ...rest } = value as CapabilityMethodDefinition;
    functions.set(method, handler);
    methods[method] = { ...rest, effect: effect ?? DEFAULT_EFFECT } as CapabilityMethod;
  }
  const { description, timeoutMs }: { description?: string; timeoutMs?: number } = declared ? definition : {};
  const declaration: Capability = {
    name,
    handler: timeoutMs === undefined ? { kind: "client" } : { kind: "client", timeoutMs },
    methods,
    ...(description ? { description } : {}),
  };
  return { declaration, functions };
}

export function declareCapabilities(definitions: CapabilityDefinitions): DeclaredCapability[] {
  if (Array.isArray(definitions)) return definitions.map((declaration) => ({ declaration, functions: new Map() }));
  return Object.entries(definitions).map(([name, definition]) => declareCapability(name, definition));
}

/** The functions of every space's client capabilities, by space, capability and method. */
export class CapabilityRegistry {
  private readonly bySpace = new Map<string, Map<string, Map<string, CapabilityFunction>>>();

  add(spaceId: string, capabilities: DeclaredCapability[]): void {
    let space = this.bySpace.get(spaceId);
    if (!space) this.bySpace.set(spaceId, (space = new Map()));
    for (const { declaration, functions } of capabilities) {
      if (functions.size > 0) space.set(declaration.name, functions);
    }
  }

  forget(spaceId: string): void {
    this.bySpace.delete(spaceId);
  }

  /** Answers one `capabilities/invoke`: the function's result, or its error. */
  async invoke(call: CapabilityCall & { params: unknown }): Promise<unknown> {
    const fn = this.bySpace.get(call.spaceId)?.get(call.capability)?.get(call.method);
    if (!fn) {
      throw Object.assign(new Error(`this client has no function for ${call.capability}.${call.method}`), {
        hint: "declare the capability with functions through this SDK (createSpace or addCapability)",
      });
    }
    return await fn(call.params, { spaceId: call.spaceId, capability: call.capability, method: call.method });
  }
}

function isObject(value: unknown): value is object {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
