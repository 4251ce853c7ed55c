/**
 * The shapes of the running service ({@linkcode Stub}) and of {@linkcode createStub}'s options;
 * `stub.ts` builds it.
 *
 * @module
 */

import type { LeakGuard } from "../policy/leak_guard.ts";
import type { IpRunner } from "../host/ip_command.ts";
import type { PvdEvent } from "../pvd/registry.ts";
import type { Registry } from "prom-client";
import type { Config, ListenerConfig, PvdConfig } from "../config/types.ts";
import type { ClientInfo } from "../listen/listener.ts";
import type { Answer } from "./pipeline.ts";
import type { PvdChanges } from "./pvd_set.ts";
import type { ResolverMetrics } from "./metrics.ts";
import type { Query } from "../dns/wire.ts";

/** Options of `createStub()`. */
export interface StubOptions {
  /** Clock in ms. @default Date.now */
  readonly now?: () => number;
  /** Where log lines go. @default console.error */
  readonly log?: (line: string) => void;
  /** Runs `ip -j …` for route checks. @default the `ip` command */
  readonly runIp?: IpRunner;
  /** How often strictRoutes PvDs are checked again, ms. @default 10000 */
  readonly routeCheckMs?: number;
  /**
   * Where metrics are registered (a prom-client `Registry`). @default a new Registry
   *
   * @ignore prom-client's own types are not part of pvdns's documented surface
   */
  readonly registry?: Registry;
  /**
   * UDP listener implementation: `mmsg` reads and answers datagrams in batches through FFI
   * (Linux, `--allow-ffi`); `deno` uses `Deno.listenDatagram`; `auto` takes `mmsg` when it can.
   * @default "auto"
   */
  readonly udpListener?: "auto" | "mmsg" | "deno";
  /** The version reported in `pvdns_build_info`. @default "dev" */
  readonly version?: string;
}

/** What a reload did. */
export interface ReloadResult extends PvdChanges {
  /** Listeners opened by the reload. */
  readonly listenersAdded: readonly string[];
  /** Listeners closed by the reload. */
  readonly listenersRemoved: readonly string[];
}

/** A running pvdns. */
export interface Stub {
  /** The configuration in force. */
  readonly config: Config;
  /** The PvDs in force. */
  readonly pvds: readonly PvdConfig[];
  /** Bound DNS listeners (`ADDR:PORT` with the real port). */
  readonly listening: readonly string[];
  /** The leak guard (its counters). */
  readonly guard: LeakGuard;
  /** Queries a rule's fallback sent to a second PvD, keyed `from->to`. */
  readonly fallbacks: ReadonlyMap<string, number>;
  /**
   * The prom-client `Registry` its metrics live on: `await stub.registry.metrics()` is the text
   * exposition (the control API serves it at `/metrics`).
   *
   * @ignore prom-client's own types are not part of pvdns's documented surface
   */
  readonly registry: Registry;
  /**
   * Its metrics (reload outcomes are counted by whoever reloads).
   *
   * @ignore internal: read them through `registry`
   */
  readonly metrics: ResolverMetrics;
  /** Empties the cache of one PvD, or of all; returns how many entries were dropped. */
  flush(pvd?: string): number;
  /** Answers one wire-format query as if it came from `client`; null when it is dropped. */
  handle(raw: Uint8Array, client: ClientInfo, options?: HandleOptions): Promise<Uint8Array | null>;
  /** Runs one parsed query through the pipeline. */
  resolve(query: Query, client: ClientInfo, explicitPvd?: string): Promise<Answer>;
  /**
   * Moves to `config`: only PvDs that changed or vanished lose their cache; listeners are opened
   * and closed as needed. When a new listener cannot be bound, nothing changes and it throws.
   */
  reload(config: Config): Promise<ReloadResult>;
  /** Replaces the PvDs of one discovery origin (host, RA); only those that changed are touched. */
  setDiscovered(origin: "host" | "ra", pvds: readonly PvdConfig[]): Promise<PvdChanges>;
  /** Calls `listener` after every change of the PvD set; returns a function that unsubscribes. */
  onPvdChange(listener: (events: readonly PvdEvent[]) => void): () => void;
  /** Queries waiting for an upstream answer right now. */
  readonly inFlight: number;
  /**
   * Stops: listeners take no new query at once; queries already taken are answered until they
   * are done or `drainMs` has passed; then listeners and upstream sockets are closed.
   */
  close(options?: CloseOptions): Promise<void>;
}

/** Options of {@linkcode Stub.close}. */
export interface CloseOptions {
  /** How long queries in flight may still be answered, ms. @default 0 */
  readonly drainMs?: number;
}

/** Options of {@linkcode Stub.handle}. */
export interface HandleOptions {
  /** The listener the query came in on (listener-bound PvD, listener rules). */
  readonly listener?: ListenerConfig | undefined;
  /** A PvD chosen by the caller: the query goes there (unknown PvD → REFUSED). */
  readonly explicitPvd?: string | undefined;
  /** Told which PvD answered, and how, before the reply is rendered (library, control API). */
  readonly onAnswer?: ((answer: Answer) => void) | undefined;
}
