// The engine: `Spaces.start()` runs `spaces serve` as a child process, `Spaces.attach()` speaks to one over
// given streams. Either way the result is an initialized session that makes and finds spaces.

import type { ApprovalHandler } from "./approvals.js";
import { type CapabilityDefinitions, declareCapabilities } from "./capabilities.js";
import { EngineExitedError, SpacesError } from "./errors.js";
import { type ProcessOptions, SEARCH_ORDER, startProcess } from "./engine-process.js";
import type {
  Approval,
  ApprovalOption,
  AuditEntry,
  BatchResult,
  ClientRequests,
  InitializeResult,
  LimitsInput,
  PolicySpec,
  RunsReplayResult,
  SecretRef,
  SpacesCreateParams,
} from "./protocol.js";
import { type EngineEvents, Session } from "./session.js";
import { Space } from "./space.js";
import { type EngineInput, type EngineOutput, lineWriter, readLines } from "./streams.js";

/** The SDK's version, sent to the engine at `initialize`. */
export const SDK_VERSION = "0.1.0";
/** The protocol this SDK speaks (docs/PROTOCOL.md). */
const PROTOCOL_VERSION = "0.1";

/** How the engine's process ended. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

/** What both `start` and `attach` take. */
export interface EngineOptions {
  /** Decides approvals of spaces that have no handler of their own (see `ApprovalHandler`). */
  onApproval?: ApprovalHandler;
}

export interface StartOptions extends ProcessOptions, EngineOptions {}

/** The streams of an engine started elsewhere, named from the engine's side. */
export interface EngineStreams {
  /** The engine's standard input: the SDK writes its messages here. */
  input: EngineInput;
  /** The engine's standard output: the SDK reads the engine's messages here. */
  output: EngineOutput;
}

export interface CreateSpaceOptions {
  /** 1–63 letters, digits, `_`, `.`, `-`; default the space's id. */
  name?: string;
  /** A preset (`"default"`, `"strict"`, `"open"`) or a partial policy; default `"default"`. */
  policy?: PolicySpec;
  /** Files to create: workspace path → UTF-8 content (written after `copyFrom`). */
  files?: Record<string, string>;
  /** A host directory whose contents are copied into the workspace first. */
  copyFrom?: string;
  /** Overrides of the policy's limits, key by key. */
  limits?: LimitsInput;
  /** Secrets by name: `{ env: "VAR" }` or `{ file: "/host/path" }`, read on the host; never returned. */
  secrets?: Record<string, SecretRef>;
  /** Days an ended run's transcript stays in the audit log. */
  retentionDays?: number;
  /** Code APIs the space's programs import from `spaces:capabilities` (see `CapabilityDefinition`). */
  capabilities?: CapabilityDefinitions;
  /** Decides this space's approvals (else the engine's `onApproval`). */
  onApproval?: ApprovalHandler;
}

/** How long `close()` waits for the engine to exit before it kills it. */
const CLOSE_TIMEOUT_MS = 10_000;
/** How long the last answers on the engine's output may take to arrive after its process exited. */
const OUTPUT_DRAIN_MS = 200;

export class Spaces {
  /** The engine's `initialize` result: its version, Bun's, the isolation it gives, its limits, its state dir. */
  info!: InitializeResult;
  /** Resolves when the engine has exited (or, attached, when its output ended). Never rejects. */
  readonly exited: Promise<ExitStatus>;
  /** The engine's process id, when this SDK started it. */
  readonly pid: number | undefined;
  private readonly session: Session;
  private readonly spaces = new Map<string, Space>();
  private closing: Promise<ExitStatus> | undefined;
  private readonly kill: (signal: string) => void;
  /** Runs once the engine has exited after `close()` (removes a `temporary` state directory). */
  private readonly afterClose: () => void;

  private constructor(
    session: Session,
    exited: Promise<ExitStatus>,
    pid: number | undefined,
    kill: (signal: string) => void,
    afterClose: () => void = () => {},
  ) {
    this.session = session;
    this.exited = exited;
    this.pid = pid;
    this.kill = kill;
    this.afterClose = afterClose;
  }

  /**
   * Starts `spaces serve` and initializes it. The binary is `options.binary`, else the SPACES_BIN environment
   * variable, else `spaces` on the PATH, else `.build/release/spaces` then `.build/debug/spaces` under the
   * current directory.
   */
  static async start(options: StartOptions = {}): Promise<Spaces> {
    const child = startProcess(options);
    const session = new Session(lineWriter(child.stdin, () => {}));
    let status: ExitStatus | undefined;
    let outputEnded = false;
    let engine: Spaces | undefined;
    const closeConnection = () => {
      if (session.connection.isClosed) return;
      const what = engine?.closing ? "the engine was closed" : `the engine (${child.binary}) exited`;
      const { code = null, signal = null } = status ?? {};
      session.connection.close(new EngineExitedError(what, code, signal, child.stderrTail()));
    };
    // The engine's last answers may follow its exit on the pipe: wait for the output's end, but never long.
    const settle = () => {
      if (status && outputEnded) closeConnection();
      else setTimeout(closeConnection, OUTPUT_DRAIN_MS);
    };
    readLines(child.stdout, (line) => session.connection.receive(line), () => ((outputEnded = true), settle()));
    const exited = child.exited.then((ended) => {
      status = { code: ended.code, signal: ended.signal };
      settle();
      return { ...status, error: ended.error };
    });
    engine = new Spaces(
      session,
      exited.then(({ code, signal }) => ({ code, signal })),
      child.pid,
      child.kill,
      child.removeTemporaryState,
    );
    engine.onApproval = options.onApproval;
    try {
      await engine.initialize();
    } catch (error) {
      child.kill("SIGKILL");
      const ended = await exited;
      child.removeTemporaryState();
      if (ended.error) {
        throw new SpacesError(
          `cannot start the engine ${child.binary}: ${ended.error.message}; it is found as ${SEARCH_ORDER}`,
        );
      }
      throw error;
    }
    return engine;
  }

  /**
   * Speaks to an engine over given streams (Node streams, web streams, or a Bun FileSink as `input`), and
   * initializes it. `close()` then shuts it down and waits for its output to end.
   */
  static async attach(streams: EngineStreams, options: EngineOptions = {}): Promise<Spaces> {
    const session = new Session(lineWriter(streams.input, () => {}));
    let ended!: (status: ExitStatus) => void;
    const exited = new Promise<ExitStatus>((resolve) => (ended = resolve));
    readLines(
      streams.output,
      (line) => session.connection.receive(line),
      () => {
        session.connection.close(new EngineExitedError("the engine's output ended", null, null, ""));
        ended({ code: null, signal: null });
      },
    );
    const engine = new Spaces(session, exited, undefined, () => {});
    engine.onApproval = options.onApproval;
    await engine.initialize();
    return engine;
  }

  private async initialize(): Promise<void> {
    this.info = await this.session.connection.request("initialize", {
      protocolVersion: PROTOCOL_VERSION,
      client: { name: "agent-spaces-typescript", version: SDK_VERSION },
      capabilities: { streaming: true, capabilityHandlers: true },
    });
    if (this.info.protocolVersion !== PROTOCOL_VERSION) {
      await this.close();
      throw new SpacesError(
        `the engine speaks protocol ${this.info.protocolVersion} and this SDK ${PROTOCOL_VERSION}; ` +
          "use the SDK from the engine's own repository version",
      );
    }
    this.session.connection.maxLineBytes = this.info.limits.maxLineBytes;
  }

  /** Decides approvals of spaces without their own handler; unset, approvals wait for `resolveApproval`. */
  get onApproval(): ApprovalHandler | undefined {
    return this.session.engineApprovalHandler;
  }

  set onApproval(handler: ApprovalHandler | undefined) {
    this.session.engineApprovalHandler = handler;
  }

  /**
   * Listens to every approval (`"approval"`, answered by a handler or not), every streamed event (`"event"`) or
   * the engine's log messages (`"log"`). Returns a function that stops listening.
   */
  on<K extends keyof EngineEvents>(name: K, listener: (value: EngineEvents[K]) => void): () => void {
    return this.session.on(name, listener);
  }

  off<K extends keyof EngineEvents>(name: K, listener: (value: EngineEvents[K]) => void): void {
    this.session.off(name, listener);
  }

  /** Creates a space: an isolated sandbox with its own workspace, policy and capabilities. */
  async createSpace(options: CreateSpaceOptions = {}): Promise<Space> {
    const { files, copyFrom, capabilities, onApproval, ...rest } = options;
    const declared = capabilities ? declareCapabilities(capabilities) : [];
    const params: SpacesCreateParams = { ...rest };
    if (files || copyFrom) params.workspace = { ...(files ? { files } : {}), ...(copyFrom ? { copyFrom } : {}) };
    if (declared.length > 0) params.capabilities = declared.map((capability) => capability.declaration);
    const created = await this.session.connection.request("spaces/create", params);
    this.session.capabilities.add(created.spaceId, declared);
    const space = this.handle(created);
    if (onApproval) space.onApproval = onApproval;
    return space;
  }

  /** Every space the engine keeps, its state directory's included, oldest first. */
  async listSpaces(): Promise<Space[]> {
    const { spaces } = await this.session.connection.request("spaces/list", {});
    return spaces.map((info) => this.handle(info));
  }

  /** The space `spaceId` (EngineError -32010 when there is none). */
  async getSpace(spaceId: string): Promise<Space> {
    return this.handle(await this.session.connection.request("spaces/get", { spaceId }));
  }

  /** Approvals waiting for an answer, of one space or all. */
  async approvals(spaceId?: string): Promise<Approval[]> {
    return (await this.session.connection.request("approvals/list", spaceId ? { spaceId } : {})).approvals;
  }

  /**
   * Answers an approval. The call that waits on it goes on with the rest of its batch; this answers that rest
   * too (the `approvals/resolve` result).
   */
  resolveApproval(approvalId: string, decision: ApprovalOption, note?: string): Promise<BatchResult> {
    return this.session.approvals.resolve(approvalId, decision, note);
  }

  /**
   * Applies a run's requests again (by id, or a transcript from `transcript()`) in a new space (default) or
   * `into` an existing one, and compares the events.
   */
  replay(run: string | AuditEntry[], options: { into?: "new" | string | Space } = {}): Promise<RunsReplayResult> {
    const into = options.into instanceof Space ? options.into.id : options.into;
    return this.session.connection.request("runs/replay", {
      ...(typeof run === "string" ? { runId: run } : { transcript: run }),
      ...(into ? { into } : {}),
    });
  }

  /** Any protocol request, typed by the schema: for what this SDK does not wrap. */
  request<M extends keyof ClientRequests>(
    method: M,
    params: ClientRequests[M]["params"],
  ): Promise<ClientRequests[M]["result"]> {
    return this.session.connection.request(method, params);
  }

  /**
   * Shuts the engine down (`shutdown`: running batches are cancelled, every space's processes stopped; spaces
   * stay in the state directory) and waits for it to exit; killed if it has not within 10 seconds. Calls still
   * in progress reject with EngineExitedError.
   */
  close(): Promise<ExitStatus> {
    this.closing ??= (async () => {
      const connection = this.session.connection;
      if (!connection.isClosed) await within(CLOSE_TIMEOUT_MS, connection.request("shutdown", {}).catch(() => {}));
      // Ends the engine's input too: what shutdown did not stop, the end of input does.
      connection.close(new EngineExitedError("the engine was closed", null, null, ""));
      let status = await within(CLOSE_TIMEOUT_MS, this.exited);
      if (!status) {
        this.kill("SIGKILL");
        status = (await within(CLOSE_TIMEOUT_MS, this.exited)) ?? { code: null, signal: null };
      }
      this.afterClose();
      return status;
    })();
    return this.closing;
  }

  /** One handle per space, kept up to date with the engine's latest answer. */
  private handle(info: Space["snapshot"]): Space {
    const known = this.spaces.get(info.spaceId);
    if (known) {
      known.snapshot = info;
      return known;
    }
    const space = new Space(this.session, info);
    this.spaces.set(info.spaceId, space);
    return space;
  }
}

/** `promise`'s value, or undefined when it takes longer than `ms`. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
