/**
 * What pvdns does not take on faith in an upstream answer, applied once when the answer is
 * indexed (so cached copies, UDP, TCP, the library and the control API all get the same bytes):
 *
 * - **AD** (RFC 4035 §4.9.3): a stub may rely on "authenticated data" only from a resolver it
 *   trusts over a secure path. pvdns clears AD in answers from every PvD whose config does not
 *   say `trustAd: true`. DO and CD pass through, so a validating client validates for itself.
 * - **DNS rebinding** (as dnsmasq's `--stop-dns-rebind`): with `rebind: "block"`, A/AAAA
 *   records in private, loopback, link-local, CGNAT or ULA ranges are dropped from answers for
 *   names outside the PvD's own zones, so a public name cannot be made to point into the LAN.
 *
 * @module
 */

import type { PvdConfig } from "../config/types.ts";
import type { WireRecord } from "../dns/scrub.ts";
import { Type } from "../dns/wire.ts";

/** How one PvD's answers are treated. */
export interface AnswerTrust {
  /** Keep the upstream's AD bit. */
  readonly trustAd: boolean;
  /** Drop private addresses for names outside `ownZones`. */
  readonly blockRebind: boolean;
  /** Zones (lower case, trailing dot) whose names may resolve to private addresses. */
  readonly ownZones: readonly string[];
  /** Called with the number of records a rebinding check dropped from one answer. */
  readonly onRebindBlocked?: (records: number) => void;
}

/** A PvD that trusts nothing (the default): AD cleared, no rebinding check. */
export const DEFAULT_TRUST: AnswerTrust = Object.freeze({
  trustAd: false,
  blockRebind: false,
  ownZones: Object.freeze([]),
});

/**
 * The trust settings of `pvd`: `trustAd`, and `rebind: "block"` with the zones the PvD may
 * answer private addresses for: those of its zone claims that were accepted
 * (`src/policy/zone_claims.ts`; a network's refused `com.` must not exempt every `.com` name), or,
 * for a PvD not judged yet, the zones of a config-file PvD; never `.`.
 */
export function trustOf(
  pvd: Pick<PvdConfig, "trustAd" | "rebind" | "zoneClaims" | "dnsZones" | "origin">,
  onRebindBlocked?: (records: number) => void,
): AnswerTrust {
  const zones = pvd.zoneClaims
    ? pvd.zoneClaims.filter((c) => c.accepted).map((c) => c.zone)
    : pvd.origin === "config"
    ? pvd.dnsZones
    : [];
  // "." would make every name the PvD's own: it is not a zone of its own network.
  const ownZones = zones.filter((z) => z !== ".");
  return Object.freeze({
    trustAd: pvd.trustAd === true,
    blockRebind: pvd.rebind === "block",
    ownZones: Object.freeze([...ownZones]),
    ...(onRebindBlocked ? { onRebindBlocked } : {}),
  });
}

/** True when `name` is `zone` or below it (both lower case, trailing dot). */
function under(name: string, zone: string): boolean {
  return zone === "." || name === zone || name.endsWith(`.${zone}`);
}

/**
 * The record filter of a rebinding check for one answer to `qname`, or undefined when no check
 * applies (off, or the name is inside one of the PvD's own zones).
 */
export function rebindFilter(
  trust: AnswerTrust,
  qname: string,
): ((wire: Uint8Array, record: WireRecord) => boolean) | undefined {
  if (!trust.blockRebind) return undefined;
  for (const zone of trust.ownZones) if (under(qname, zone)) return undefined;
  return (wire, r) => {
    if (r.type === Type.A) return !privateIPv4(wire, r.rdStart);
    if (r.type === Type.AAAA) return !privateIPv6(wire, r.rdStart);
    return true;
  };
}

/**
 * 0/8 (this network), 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16, 172.16/12, 192.168/16: the
 * ranges dnsmasq's rebind check covers, which a public name has no reason to point into.
 */
export function privateIPv4(b: Uint8Array, at: number): boolean {
  const a = b[at]!, c = b[at + 1]!;
  return a === 0 || a === 10 || a === 127 || (a === 100 && (c & 0xc0) === 64) ||
    (a === 169 && c === 254) || (a === 172 && (c & 0xf0) === 16) || (a === 192 && c === 168);
}

/**
 * `::` and `::1`, fe80::/10 (link-local), fec0::/10 (old site-local), fc00::/7 (ULA), and
 * IPv4-mapped (::ffff:0:0/96) addresses in a private IPv4 range.
 */
export function privateIPv6(b: Uint8Array, at: number): boolean {
  const first = b[at]!;
  if ((first & 0xfe) === 0xfc) return true; // ULA
  if (first === 0xfe && (b[at + 1]! & 0x80) === 0x80) return true; // fe80::/10, fec0::/10
  let zeros = true;
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) zeros = false;
  if (!zeros) return false;
  const hi = b[at + 10]! << 8 | b[at + 11]!;
  if (hi === 0xffff) return privateIPv4(b, at + 12);
  if (hi !== 0) return false;
  let rest = 0;
  for (let i = 12; i < 16; i++) rest = rest * 256 + b[at + i]!;
  return rest === 0 || rest === 1; // :: and ::1
}
