/**
 * The one interface every upstream wire implements, the options every wire is created with, and
 * the closed set of reasons a query over it can fail for (used in logs and metric labels).
 *
 * @module
 */

import type { ServerConfig } from "../config/types.ts";

/** Why an exchange failed: a closed set, so that it can label metrics. */
export type FailureReason =
  | "timeout"
  | "refused"
  /** Handshake or certificate failure (wrong name, expired, unknown CA): never a plaintext retry. */
  | "tls"
  /** DoH: an HTTP status other than 2xx, or a body that is not `application/dns-message`. */
  | "http"
  | "bad-answer"
  | "closed"
  /** Refused by the leak guard before sending. */
  | "leak"
  /** Not sent: the kernel would route it through another interface (strictRoutes). */
  | "route";

/** An exchange that failed, with its reason. */
export class TransportError extends Error {
  /** The reason, from a closed set. */
  readonly reason: FailureReason;
  /** Creates the error. */
  constructor(reason: FailureReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransportError";
    this.reason = reason;
  }
}

/**
 * An answer whose question matches the query's only when letter case is ignored, to a query
 * sent with random case (0x20): the server does not keep case, or the answer is forged.
 */
export class CaseMismatchError extends TransportError {
  /** Creates the error (reason `bad-answer`). */
  constructor(message: string) {
    super("bad-answer", message);
    this.name = "CaseMismatchError";
  }
}

/** Options of one exchange. */
export interface ExchangeOptions {
  /** Aborting gives up the exchange and releases what only it used. */
  readonly signal: AbortSignal;
  /**
   * The query's name has random letter case (0x20, `upstream.caseRandomisation`): an answer must
   * repeat it exactly. One whose question differs only in case fails the exchange at once with
   * a {@linkcode CaseMismatchError}. Only the UDP wire checks it: over TCP, DoT and DoH an
   * off-path attacker cannot answer in the server's place. @default false
   */
  readonly exactCase?: boolean;
}

/** One upstream server of one PvD over one wire, bound to one of that PvD's source addresses. */
export interface Transport {
  /** The wire. */
  readonly protocol: ServerConfig["protocol"];
  /** The server. */
  readonly server: ServerConfig;
  /** The local address its sockets bind to. */
  readonly source: string;
  /** Sends `query` and resolves with the matching answer (same ID and question). */
  exchange(query: Uint8Array, options: ExchangeOptions): Promise<Uint8Array>;
  /** Releases every socket; later exchanges fail with reason `closed`. */
  close(): Promise<void>;
}

/**
 * The leak guard as a transport sees it (`src/policy/leak_guard.ts`): called before every send and
 * every connect, it throws (a `LeakBlockedError`) to refuse, and then nothing is sent.
 */
export interface SendGuard {
  /** Allows the send or throws. */
  check(pvd: string, address: string, port: number, source: string): void;
}

/** What every transport is created with. */
export interface TransportOptions {
  /** The PvD this transport serves (checked by the guard on every send and connect). */
  readonly pvd: string;
  /** The server, as parsed from the config. */
  readonly server: ServerConfig;
  /** Local address every socket binds to: one of the PvD's source addresses. */
  readonly source: string;
  /** The leak guard. */
  readonly guard: SendGuard;
  /**
   * Told of each datagram that reached a query's UDP socket and did not answer it: from another
   * address or port, with another ID, or with another question (a forged answer, a late one
   * already given up, or junk). `burstPorts` is 0, except when a warning is due: then the
   * number of ports that took {@linkcode SPOOF_BURST} or more such datagrams since the last
   * warning (the first one warns at once, later ones at most every 10 s).
   */
  readonly onUnexpectedAnswer?: (burstPorts: number) => void;
}

/**
 * Datagrams on one query's port that did not answer it, from which the port counts as sprayed
 * (a sign that someone is forging answers, RFC 5452 §9.1).
 */
export const SPOOF_BURST = 8;

/** Turns an abort into a TransportError (timeout or closed). */
export function abortError(signal: AbortSignal): TransportError {
  const timeout = signal.reason instanceof DOMException && signal.reason.name === "TimeoutError";
  return new TransportError(timeout ? "timeout" : "closed", timeout ? "timed out" : "aborted", {
    cause: signal.reason,
  });
}

/** Node-style error codes of certificate and handshake failures (node:tls, undici). */
const TLS_CODE = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH)/;

/**
 * Maps a socket-level error (node:net, node:tls, undici) onto a {@linkcode FailureReason}:
 * connection refused → `refused`, a certificate or handshake failure → `tls`, a connect timeout
 * → `timeout`, anything else → `closed`.
 */
export function socketErrorReason(e: unknown): FailureReason {
  const err = e as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  const code = typeof err?.code === "string" ? err.code : "";
  const message = typeof err?.message === "string" ? err.message : "";
  if (code === "ECONNREFUSED" || e instanceof Deno.errors.ConnectionRefused) return "refused";
  if (TLS_CODE.test(code) || /certificate|handshake|\btls\b|\bssl\b/i.test(message)) return "tls";
  if (code === "ETIMEDOUT" || code === "UND_ERR_CONNECT_TIMEOUT") return "timeout";
  if (err?.cause !== undefined && err.cause !== e) {
    const inner = socketErrorReason(err.cause);
    if (inner !== "closed") return inner;
  }
  return "closed";
}

/** Wraps a socket-level error as a {@linkcode TransportError} with its reason. */
export function socketError(e: unknown, context: string): TransportError {
  if (e instanceof TransportError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new TransportError(socketErrorReason(e), `${context}: ${message}`, { cause: e });
}

/** The server as `ADDR:PORT` / `[V6]:PORT`, for messages. */
export function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}
