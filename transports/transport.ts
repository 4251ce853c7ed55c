/**
 * The one interface every upstream wire implements, and the closed set of reasons a query over
 * it can fail for (used in logs and metric labels).
 *
 * @module
 */

import type { ServerConfig } from "../resolver/config_types.ts";

/** Why an exchange failed: a closed set, so that it can label metrics. */
export type FailureReason =
  | "timeout"
  | "refused"
  | "tls"
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

/** Options of one exchange. */
export interface ExchangeOptions {
  /** Aborting gives up the exchange and releases its socket. */
  readonly signal: AbortSignal;
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
  /** Releases every socket. */
  close(): Promise<void>;
}

/** Turns an abort into a TransportError (timeout or closed). */
export function abortError(signal: AbortSignal): TransportError {
  const timeout = signal.reason instanceof DOMException && signal.reason.name === "TimeoutError";
  return new TransportError(timeout ? "timeout" : "closed", timeout ? "timed out" : "aborted", {
    cause: signal.reason,
  });
}
