/**
 * Address prefixes: which of a set of prefixes holds an address (longest match), and what
 * address range a reverse-lookup name (in-addr.arpa / ip6.arpa) stands for.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import type { Cidr } from "../config/types.ts";

/** A prefix as bytes, ready to compare. */
interface Range {
  readonly family: 4 | 6;
  readonly bytes: readonly number[];
  readonly length: number;
}

function toRange(address: string, length: number): Range {
  const ip = ipaddr.process(address);
  return { family: ip.kind() === "ipv4" ? 4 : 6, bytes: ip.toByteArray(), length };
}

function contains(outer: Range, inner: Range): boolean {
  if (outer.family !== inner.family || outer.length > inner.length) return false;
  let bits = outer.length;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((outer.bytes[i]! & mask) !== (inner.bytes[i]! & mask)) return false;
  }
  return true;
}

/**
 * Longest-prefix lookup over a small set of prefixes, each tagged with a value.
 *
 * @example Usage
 * ```ts
 * import { PrefixTable } from "./prefixes.ts";
 * const t = new PrefixTable<string>();
 * t.add({ text: "10.8.0.0/16", family: 4, address: "10.8.0.0", prefixLength: 16 }, "vpn");
 * t.lookup("10.8.1.2"); // "vpn"
 * ```
 */
export class PrefixTable<T> {
  #entries: { range: Range; value: T }[] = [];

  /** Adds a prefix; among equal lengths the first added wins. */
  add(cidr: Cidr, value: T): void {
    this.#entries.push({ range: toRange(cidr.address, cidr.prefixLength), value });
    this.#entries.sort((a, b) => b.range.length - a.range.length);
  }

  /** Number of prefixes. */
  get size(): number {
    return this.#entries.length;
  }

  /** The value of the longest prefix holding `address`, or undefined (also for a non-address). */
  lookup(address: string): T | undefined {
    if (this.#entries.length === 0) return undefined;
    const range = hostRange(address);
    return range ? this.lookupRange(range) : undefined;
  }

  /** The value of the longest prefix that holds the whole of `range`. */
  lookupRange(range: Range): T | undefined {
    for (const e of this.#entries) if (contains(e.range, range)) return e.value;
    return undefined;
  }

  /** The longest prefix holding the whole of `range`, with its value. */
  match(range: Range): { length: number; value: T } | undefined {
    for (const e of this.#entries) {
      if (contains(e.range, range)) return { length: e.range.length, value: e.value };
    }
    return undefined;
  }
}

/** Parsed client addresses (a client asks many times): parsing is the dear part of a lookup. */
const hostRanges = new Map<string, Range | null>();

/** `address` (a zone index ignored) as a single-host range, or null for a non-address. */
function hostRange(address: string): Range | null {
  let range = hostRanges.get(address);
  if (range !== undefined) return range;
  const bare = address.split("%")[0]!;
  if (ipaddr.isValid(bare)) {
    const r = toRange(bare, 0);
    range = { ...r, length: r.family === 4 ? 32 : 128 };
  } else range = null;
  if (hostRanges.size >= 4096) hostRanges.clear();
  hostRanges.set(address, range);
  return range;
}

/** Zone → `.zone`, made once per zone: `under()` runs for several zones on every query. */
const dotted = new Map<string, string>();

/**
 * True when `qname` is `zone` or a name below it (both lower case with a trailing dot; `"."`
 * holds every name).
 */
export function under(qname: string, zone: string): boolean {
  if (zone === "." || qname === zone) return true;
  let suffix = dotted.get(zone);
  if (suffix === undefined) {
    suffix = "." + zone;
    if (dotted.size < 4096) dotted.set(zone, suffix);
  }
  return qname.endsWith(suffix);
}

/**
 * The address range a reverse name stands for: `2.0.192.in-addr.arpa.` is 192.0.2.0/24,
 * `8.b.d.0.1.0.0.2.ip6.arpa.` is 2001:db8::/32. Names above or beside those trees, and labels
 * that are not octets or nibbles, give undefined.
 */
export function reverseNameRange(qname: string): Range | undefined {
  if (qname.endsWith(".in-addr.arpa.")) {
    const labels = qname.slice(0, -".in-addr.arpa.".length).split(".").reverse();
    if (labels.length > 4) return undefined;
    const bytes = [0, 0, 0, 0];
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i]!;
      if (!/^(0|[1-9]\d{0,2})$/.test(l) || Number(l) > 255) return undefined;
      bytes[i] = Number(l);
    }
    return { family: 4, bytes, length: labels.length * 8 };
  }
  if (qname.endsWith(".ip6.arpa.")) {
    const labels = qname.slice(0, -".ip6.arpa.".length).split(".").reverse();
    if (labels.length > 32) return undefined;
    const bytes = new Array<number>(16).fill(0);
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i]!;
      if (!/^[0-9a-f]$/.test(l)) return undefined;
      bytes[i >> 1]! |= parseInt(l, 16) << (i % 2 === 0 ? 4 : 0);
    }
    return { family: 6, bytes, length: labels.length * 4 };
  }
  return undefined;
}

/** Parses `ADDR/LEN` into a {@linkcode Cidr} (for tables built in code). */
export function cidr(text: string): Cidr {
  const [addr, len] = ipaddr.parseCIDR(text);
  return {
    text,
    family: addr.kind() === "ipv4" ? 4 : 6,
    address: addr.toString(),
    prefixLength: len,
  };
}
