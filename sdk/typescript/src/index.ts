// Agent Spaces, for TypeScript: `import { Spaces } from "agent-spaces"`. See sdk/typescript/README.md.

export { Spaces, SDK_VERSION } from "./spaces.js";
export type { CreateSpaceOptions, EngineOptions, EngineStreams, ExitStatus, StartOptions } from "./spaces.js";
export { Space } from "./space.js";
export type {
  BatchOptions,
  CallOptions,
  EditedFile,
  RunOptions,
  ToolResult,
  TypeScriptOptions,
  WrittenFile,
} from "./space.js";
export { Run } from "./run.js";
export type { RunResult } from "./results.js";
export type { Exec, OutputChunk } from "./exec.js";
export type { ApprovalAnswer, ApprovalHandler, ApprovalRequest } from "./approvals.js";
export type {
  CapabilityCall,
  CapabilityDefinition,
  CapabilityDefinitions,
  CapabilityFunction,
  CapabilityMethodDefinition,
} from "./capabilities.js";
export type { EngineEvents } from "./session.js";
export type { LogLevel } from "./engine-process.js";
export type { EngineInput, EngineOutput, NodeReadableLike, NodeWritableLike } from "./streams.js";
export {
  ApprovalDeniedError,
  EngineError,
  EngineExitedError,
  OperationFailedError,
  PolicyDeniedError,
  SpacesError,
} from "./errors.js";

// The protocol's types, generated from Schemas/protocol.schema.json: all of them as `protocol.X`, and the ones
// the API above answers or takes by name.
export * as protocol from "./protocol.js";
export type {
  Approval,
  ApprovalOption,
  AuditEntry,
  AuditReadResult,
  AuditVerifyResult,
  BatchResult,
  Capability,
  Event,
  FileEdit,
  FileEntry,
  Grant,
  InitializeResult,
  Operation,
  Policy,
  PolicyInput,
  PolicySpec,
  Run as RunSummary,
  RunsReplayResult,
  Space as SpaceInfo,
  SpaceWithStats,
  ToolDefinition,
  ToolsCallResult,
} from "./protocol.js";
