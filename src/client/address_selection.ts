/**
 * RFC 6724 default address selection, computed with one PvD's source addresses rather than
 * every address of the host: the source address for a destination (§5) and the order of
 * destinations (§6). That is the MIF consistency rule (RFC 7556 §2.2): the DNS answer, the
 * source address and so the next hop all come from one PvD.
 *
 * What pvdns cannot know is left out: deprecated and temporary addresses, home addresses,
 * outgoing interfaces, native versus tunnelled transport (source rules 3, 4, 5, 7; destination
 * rules 3, 4, 7). The policy table is the default one of §2.1.
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/** A destination address with the source address to bind to for it. */
export interface SelectedAddress {
  /** The destination address. */
  readonly address: string;
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** The source address RFC 6724 §5 picks among the PvD's; undefined when it has none of that family. */
  readonly source: string | undefined;
}

/** RFC 6724 §2.1 default policy table: prefix (in the IPv6 space), precedence, label. */
const POLICY: readonly { bytes: number[]; length: number; precedence: number; label: number }[] = [
  ["::1", 128, 50, 0],
  ["::", 0, 40, 1],
  ["::ffff:0:0", 96, 35, 4],
  ["2002::", 16, 30, 2],
  ["2001::", 32, 5, 5],
  ["fc00::", 7, 3, 13],
  ["::", 96, 1, 3],
  ["fec0::", 10, 1, 11],
  ["3ffe::", 16, 1, 12],
].map(([p, length, precedence, label]) => ({
  bytes: ipaddr.IPv6.parse(p as string).toByteArray(),
  length: length as number,
  precedence: precedence as number,
  label: label as number,
})).sort((a, b) => b.length - a.length);

interface Parsed {
  readonly text: string;
  readonly family: 4 | 6;
  /** 16 bytes; IPv4 as IPv4-mapped IPv6. */
  readonly bytes: number[];
  readonly scope: number;
  readonly precedence: number;
  readonly label: number;
}

function commonPrefix(a: readonly number[], b: readonly number[], from: number, to: number) {
  let bits = 0;
  for (let i = from; i < to; i++) {
    const x = a[i]! ^ b[i]!;
    if (x === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(x) - 24;
  }
  return bits;
}

function parse(text: string): Parsed {
  const ip = ipaddr.parse(text.replace(/%.*$/, ""));
  const family = ip.kind() === "ipv4" ? 4 : 6;
  const bytes = family === 4
    ? (ip as ipaddr.IPv4).toIPv4MappedAddress().toByteArray()
    : (ip as ipaddr.IPv6).toByteArray();
  let scope = 14; // global
  if (family === 4) {
    if (bytes[12] === 127 || (bytes[12] === 169 && bytes[13] === 254)) scope = 2; // §3.2
  } else if (bytes[0] === 0xff) scope = bytes[1]! & 0x0f; // multicast: its scope field
  else if (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80) scope = 2; // link-local
  else if (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0xc0) scope = 5; // site-local
  else if (bytes.every((b, i) => b === (i === 15 ? 1 : 0))) scope = 2; // ::1
  const policy = POLICY.find((p) => commonPrefix(p.bytes, bytes, 0, 16) >= p.length)!;
  return {
    text: ip.toString(),
    family,
    bytes,
    scope,
    precedence: policy.precedence,
    label: policy.label,
  };
}

/** Bits `a` and `b` share, as rule 9 counts them: IPv4 over 32 bits, IPv6 over the 64-bit prefix. */
function matchingBits(a: Parsed, b: Parsed): number {
  return a.family === 4
    ? commonPrefix(a.bytes, b.bytes, 12, 16)
    : commonPrefix(a.bytes, b.bytes, 0, 8);
}

/** RFC 6724 §5: the best of `sources` for `dest`, or undefined when none has its family. */
function pickSource(dest: Parsed, sources: readonly Parsed[]): Parsed | undefined {
  const candidates = sources.filter((s) => s.family === dest.family);
  return candidates.reduce<Parsed | undefined>((best, s) => {
    if (!best) return s;
    // Rule 1: prefer the same address.
    if (s.text === dest.text) return s;
    if (best.text === dest.text) return best;
    // Rule 2: prefer appropriate scope.
    if (s.scope !== best.scope) {
      const [small, big] = s.scope < best.scope ? [s, best] : [best, s];
      return small.scope < dest.scope ? big : small;
    }
    // Rule 6: prefer matching label.
    if ((s.label === dest.label) !== (best.label === dest.label)) {
      return s.label === dest.label ? s : best;
    }
    // Rule 8: prefer the longest matching prefix.
    return commonPrefix(s.bytes, dest.bytes, 0, 16) > commonPrefix(best.bytes, dest.bytes, 0, 16)
      ? s
      : best;
  }, undefined);
}

/**
 * The source address RFC 6724 §5 picks among `sources` for `destination`.
 *
 * @example
 * ```ts
 * import { selectSource } from "./address_selection.ts";
 * selectSource("2001:db8:1::1", ["fe80::1", "2001:db8:1::2", "192.0.2.10"]); // "2001:db8:1::2"
 * ```
 */
export function selectSource(destination: string, sources: readonly string[]): string | undefined {
  return pickSource(parse(destination), sources.map(parse))?.text;
}

/**
 * Orders destination addresses by RFC 6724 §6 with the given source addresses (a PvD's), and
 * gives each the source address to bind to. Destinations with no source address of their family
 * come last (rule 1, unusable destination); ties keep their order (rule 10).
 *
 * @param destinations addresses as a DNS answer gave them, with anything else to carry along
 * @param sourcesOf the source addresses to choose from for a destination (e.g. its PvD's)
 *
 * @example
 * ```ts
 * import { sortDestinations } from "./address_selection.ts";
 * const sorted = sortDestinations(
 *   [{ address: "198.51.100.121" }, { address: "2001:db8:1::1" }],
 *   () => ["2001:db8:1::2", "fe80::1", "10.1.2.4"],
 * );
 * // [{ address: "2001:db8:1::1", family: 6, source: "2001:db8:1::2" },
 * //  { address: "198.51.100.121", family: 4, source: "10.1.2.4" }]
 * ```
 */
export function sortDestinations<T extends { readonly address: string }>(
  destinations: readonly T[],
  sourcesOf: (destination: T) => readonly string[],
): (T & SelectedAddress)[] {
  const rows = destinations.map((d, index) => {
    const dest = parse(d.address);
    const src = pickSource(dest, sourcesOf(d).map(parse));
    return { d, dest, src, index };
  });
  rows.sort((a, b) => {
    // Rule 1: avoid unusable destinations.
    if (!a.src !== !b.src) return a.src ? -1 : 1;
    if (a.src && b.src) {
      // Rule 2: prefer matching scope.
      const sa = a.dest.scope === a.src.scope, sb = b.dest.scope === b.src.scope;
      if (sa !== sb) return sa ? -1 : 1;
      // Rule 5: prefer matching label.
      const la = a.dest.label === a.src.label, lb = b.dest.label === b.src.label;
      if (la !== lb) return la ? -1 : 1;
    }
    // Rule 6: prefer higher precedence.
    if (a.dest.precedence !== b.dest.precedence) return b.dest.precedence - a.dest.precedence;
    // Rule 8: prefer smaller scope.
    if (a.dest.scope !== b.dest.scope) return a.dest.scope - b.dest.scope;
    // Rule 9: longest matching prefix, between destinations of one family.
    if (a.src && b.src && a.dest.family === b.dest.family) {
      const pa = matchingBits(a.dest, a.src), pb = matchingBits(b.dest, b.src);
      if (pa !== pb) return pb - pa;
    }
    // Rule 10: otherwise keep the order.
    return a.index - b.index;
  });
  return rows.map(({ d, dest, src }) => ({
    ...d,
    address: dest.text,
    family: dest.family,
    source: src?.text,
  }));
}
