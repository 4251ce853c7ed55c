/**
 * Which of a PvD's servers a query asks, in what order, under its encryption policy
 * (`PvdConfig.encryption`): `off` orders every server by smoothed RTT; `strict` asks only DoT/DoH
 * servers; `prefer` asks the encrypted ones first and Do53 only while every encrypted server is
 * down. RTT orders servers within a class, never across: a fast cleartext server never wins
 * over a slower encrypted one (RFC 9463 §6 recommends encrypted DNS when both are offered).
 *
 * @module
 */

import type { EncryptionPolicy, ServerConfig } from "../config/types.ts";

/** What the order needs of one server's state. */
export interface OrderedServer {
  readonly server: ServerConfig;
  readonly srtt: number;
  readonly blocked?: string | undefined;
}

/** The servers one query may ask. */
export interface QueryServers<S> {
  /** Asked first, best first (`parallel` at a time). */
  readonly first: S[];
  /**
   * `prefer` only: the PvD's usable Do53 servers, asked in the same query once every encrypted
   * server is down (a try that failed may have just taken the last one down).
   */
  readonly fallback: S[];
  /** True when `first` is the Do53 class of a `prefer` PvD: a fallback to count. */
  readonly plain: boolean;
}

/** True for DoT and DoH. */
export function isEncrypted(server: ServerConfig): boolean {
  return server.protocol === "tls" || server.protocol === "https";
}

/**
 * The servers of one query. Blocked servers (strictRoutes) are never asked; down servers are
 * asked only when no server of the classes the policy allows is up (health checks may be
 * wrong), encrypted ones first.
 *
 * @param states Every server of the PvD, in any order.
 * @param policy The PvD's encryption policy.
 * @param isDown Whether a server is down now.
 */
export function queryServers<S extends OrderedServer>(
  states: readonly S[],
  policy: EncryptionPolicy,
  isDown: (s: S) => boolean,
): QueryServers<S> {
  const byRtt = (a: S, b: S) => a.srtt - b.srtt;
  const usable = states.filter((s) => !s.blocked && (policy !== "strict" || isEncrypted(s.server)));
  const up = usable.filter((s) => !isDown(s)).sort(byRtt);
  if (policy === "off" || policy === "strict") {
    return { first: up.length ? up : usable.sort(byRtt), fallback: [], plain: false };
  }
  const encryptedUp = up.filter((s) => isEncrypted(s.server));
  const plainUp = up.filter((s) => !isEncrypted(s.server));
  if (encryptedUp.length) return { first: encryptedUp, fallback: plainUp, plain: false };
  if (plainUp.length) return { first: plainUp, fallback: [], plain: true };
  const down = usable.sort((a, b) =>
    Number(isEncrypted(b.server)) - Number(isEncrypted(a.server)) || byRtt(a, b)
  );
  return { first: down, fallback: [], plain: false };
}
