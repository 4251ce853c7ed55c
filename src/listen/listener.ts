/**
 * What every DNS listener shares: the handler it calls, who asked, the slot that holds the
 * config it serves with, its bounds. The service (`src/service/`) implements
 * {@linkcode QueryHandler}; the listeners know nothing of it.
 *
 * @module
 */

import type { LimitsConfig, ListenerConfig } from "../config/types.ts";

/** Who asked, and through what. */
export interface ClientInfo {
  /** Source address; empty for library and control API queries (no client routing). */
  readonly address: string;
  /** Source port (0 for the API). */
  readonly port: number;
  /** How the query arrived. */
  readonly transport: "udp" | "tcp" | "api";
}

/**
 * The config a listener serves with, handed to the handler with every query. A reload replaces
 * `listener` in place (a new PvD binding applies from the next query); the address and port a
 * listener is bound to never change.
 */
export interface ListenerSlot {
  /** The listener's config as of the last reload. */
  listener: ListenerConfig;
}

/** Answers one raw query, at once when it can; null = send nothing. */
export type QueryHandler = (
  raw: Uint8Array,
  client: ClientInfo,
  slot: ListenerSlot,
) => Uint8Array | null | Promise<Uint8Array | null>;

/** A bound listener. */
export interface DnsListener {
  /** `ADDR:PORT` with the port actually bound. */
  readonly text: string;
  readonly port: number;
  /**
   * Stops taking new queries (graceful stop): answers to queries already taken still go out.
   * TCP connections close once their last answer is written; the promise settles when they
   * all have (UDP: at once; its answers are counted by the stub's in-flight queries).
   */
  stop(): Promise<void>;
  /** Stops accepting and closes open connections. */
  close(): Promise<void>;
}

/** Bounds of one TCP listener (a part of `limits` in the config). */
export type TcpLimits = Pick<
  LimitsConfig,
  "tcpConnections" | "tcpIdleMs" | "tcpReadMs" | "tcpPipeline"
>;

/** Told each time a bound is reached, by the bound's name (e.g. `tcp_connections`). */
export type LimitCounter = (limit: string) => void;

/**
 * The largest UDP query taken; bigger ones are dropped. A real query is a few hundred bytes even
 * with EDNS options; both UDP listeners hold to the same bound.
 */
export const MAX_UDP_QUERY = 4096;

/** The client went away, or we are closing: nothing to do. */
export function ignore(): void {}

/** `ADDR:PORT`, with brackets around an IPv6 address. */
export function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}
