/**
 * The shapes around {@linkcode PvdUpstreams} (src/upstream/pool.ts): the question it asks, how a
 * query fails, the shared bound on exchanges, its options, and how healthy and how encrypted a
 * PvD's servers are.
 *
 * @module
 */

import type { LeakGuard } from "../policy/leak_guard.ts";
import type { CreateTransportOptions } from "../transports/create.ts";
import type { FailureReason, Transport } from "../transports/transport.ts";
import type { TtlRules } from "../dns/response.ts";
import type {
  EncryptionPolicy,
  PvdConfig,
  ServerConfig,
  UpstreamOptions,
} from "../config/types.ts";

/** The question an upstream query asks. */
export interface UpstreamQuestion {
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly do: boolean;
  readonly cd: boolean;
}

/** Why one try at a server failed: the transport's reason, an error rcode, or a full budget. */
export type AttemptReason = FailureReason | "rcode" | "limit";

/**
 * Upstream exchanges in flight over every PvD, and the most allowed (`limits.maxUpstreamQueries`).
 * One object is shared by all PvDs: each exchange holds a socket or a stream slot.
 */
export interface UpstreamSlots {
  active: number;
  readonly max: number;
  /** Told when a try is refused because every slot is taken. */
  readonly onFull?: () => void;
}

/** Every server of a PvD failed; carries what happened at each. */
export class UpstreamFailure extends Error {
  /** One entry per attempt. */
  readonly attempts: readonly { server: string; reason: AttemptReason }[];
  /** Creates the error. */
  constructor(pvd: string, attempts: UpstreamFailure["attempts"]) {
    super(
      `every server of PvD ${pvd} failed: ${
        attempts.map((a) => `${a.server} (${a.reason})`).join(", ") || "no server"
      }`,
    );
    this.name = "UpstreamFailure";
    this.attempts = attempts;
  }
}

/** Options of {@linkcode PvdUpstreams}. */
export interface PvdUpstreamsOptions {
  readonly upstream: UpstreamOptions;
  readonly cache: TtlRules;
  readonly guard: LeakGuard;
  /**
   * Told of every exchange with a server: its time, and the reason when it failed (metrics).
   * Exchanges given up because the caller went away are not reported.
   */
  readonly onExchange?: (server: ServerConfig, seconds: number, reason?: string) => void;
  /** The config's top-level `caFile`, trusted for DoT/DoH besides the PvD's own. */
  readonly caFile?: string | undefined;
  /** Clock in ms. @default Date.now */
  readonly now?: () => number;
  /** First wait before probing a server that is down, ms; doubles up to 30 s. @default 1000 */
  readonly probeIntervalMs?: number;
  /**
   * Told of each datagram that reached one of a server's UDP query sockets and answered nothing
   * (metrics); `burstPorts` > 0 when a spoofing warning is due (`TransportOptions`).
   */
  readonly onUnexpectedAnswer?: (server: ServerConfig, burstPorts: number) => void;
  /**
   * Told when a query of a `prefer` PvD goes to Do53 because every encrypted server is down
   * (`"fallback"`, once per query: metrics), and when the PvD turns to Do53 (`"plain"`) or back
   * to its encrypted servers (`"encrypted"`): logs, once per change.
   */
  readonly onEncryption?: (event: "fallback" | "plain" | "encrypted") => void;
  /** Told when a bound is reached: `fds` when a socket could not be made for want of descriptors. */
  readonly onLimit?: (limit: string) => void;
  /** Told how many A/AAAA records a rebinding check dropped from one answer (metrics). */
  readonly onRebindBlocked?: (records: number) => void;
  /** Makes the transport of one server (tests inject fakes). @default createTransport */
  readonly createTransport?: (options: CreateTransportOptions) => Transport;
  /** The bound on upstream exchanges at once, shared by every PvD. @default unbounded */
  readonly slots?: UpstreamSlots;
}

/** How a PvD's servers are reached, as `pvdns doctor` reports it. */
export type EncryptionMode = "strict" | "mixed" | "none";

/**
 * The PvD's encryption policy: its `encryption` when the config gives one, else `strict` when
 * every server is DoT/DoH, `prefer` when some are, `off` when none are.
 */
export function encryptionPolicy(
  pvd: Pick<PvdConfig, "servers" | "encryption">,
): EncryptionPolicy {
  if (pvd.encryption) return pvd.encryption;
  const mode = encryptionMode(pvd);
  return mode === "strict" ? "strict" : mode === "mixed" ? "prefer" : "off";
}

/**
 * `strict` when every server of `pvd` is DoT or DoH (it never downgrades to Do53), `mixed` when
 * some are, `none` when all are Do53.
 */
export function encryptionMode(pvd: Pick<PvdConfig, "servers">): EncryptionMode {
  const encrypted = pvd.servers.filter((s) => s.protocol === "tls" || s.protocol === "https");
  if (encrypted.length === 0) return "none";
  return encrypted.length === pvd.servers.length ? "strict" : "mixed";
}

/** One server's health, as {@linkcode PvdUpstreams.health} reports it. */
export interface ServerHealth {
  readonly server: string;
  /** Consecutive failures. */
  readonly fails: number;
  /** Down: skipped while another server of the PvD is up. */
  readonly down: boolean;
  /** A background probe is running. */
  readonly probing: boolean;
  /** Smoothed RTT, ms. */
  readonly srtt: number;
}
