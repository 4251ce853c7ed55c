/**
 * Names that never leave the host (RFC 6761, 6762, 7686, 8375, 9462, 6303): what pvdns answers
 * for them itself, before any PvD is asked.
 *
 * @module
 */

import { cidr, PrefixTable, reverseNameRange, under } from "./prefixes.ts";

/** How a special-use name is answered. */
export type SpecialAnswer =
  | { readonly kind: "localhost"; readonly reason: string }
  | { readonly kind: "nxdomain"; readonly reason: string }
  | { readonly kind: "nodata"; readonly reason: string }
  /** home.arpa: only a PvD that claims it in dnsZones may answer, else NXDOMAIN. */
  | { readonly kind: "claimed-only"; readonly reason: string }
  /** An RFC 6303 reverse zone: only a PvD owning the prefix may answer, else NXDOMAIN. */
  | { readonly kind: "private-reverse"; readonly reason: string };

/** RFC 6303 §4 (and RFC 6598/7793 for 100.64/10): reverse zones served locally by default. */
const PRIVATE_REVERSE = new PrefixTable<string>();
for (
  const p of [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "2001:db8::/32",
  ]
) PRIVATE_REVERSE.add(cidr(p), p);

/**
 * The RFC 6303 prefix (e.g. `"10.0.0.0/8"`) whose reverse zone holds the reverse name `qname`, or
 * undefined.
 */
export function privateReversePrefix(qname: string): string | undefined {
  const range = reverseNameRange(qname);
  return range ? PRIVATE_REVERSE.match(range)?.value : undefined;
}

/**
 * Classifies a lower-case, dot-terminated name; undefined for an ordinary name.
 *
 * @example Usage
 * ```ts
 * import { specialUse } from "./special_use.ts";
 * specialUse("db.localhost.")?.kind; // "localhost"
 * specialUse("example.org."); // undefined
 * ```
 */
export function specialUse(qname: string): SpecialAnswer | undefined {
  if (under(qname, "localhost.")) return { kind: "localhost", reason: "RFC 6761 §6.3 localhost" };
  if (under(qname, "invalid.")) return { kind: "nxdomain", reason: "RFC 6761 §6.4 invalid" };
  if (under(qname, "local.")) {
    return { kind: "nxdomain", reason: "RFC 6762 .local is mDNS, not unicast DNS" };
  }
  if (under(qname, "onion.")) return { kind: "nxdomain", reason: "RFC 7686 .onion" };
  if (under(qname, "resolver.arpa.")) {
    return { kind: "nodata", reason: "RFC 9462 §6.4 resolver.arpa is served locally" };
  }
  if (under(qname, "home.arpa.")) return { kind: "claimed-only", reason: "RFC 8375 home.arpa" };
  const range = reverseNameRange(qname);
  if (range) {
    const p = PRIVATE_REVERSE.match(range);
    if (p) return { kind: "private-reverse", reason: `RFC 6303 reverse zone of ${p.value}` };
  }
  return undefined;
}
