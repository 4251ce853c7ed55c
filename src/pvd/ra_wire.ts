/**
 * The octets under the RA codec: rejections raised with {@linkcode fail} and turned into values
 * by {@linkcode guard} (decoding never throws), big-endian fields, IPv6 addresses, uncompressed
 * names (letters, digits, `-` and `_` only), the 16-octet RA header, option framing and the
 * ICMPv6 checksum. Every length is checked against the enclosing length before it is used.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import type { Decoded, RaHeader, RejectCode, Rejection } from "./ra_types.ts";

/** A rejection in flight: thrown by {@linkcode fail}, caught only by {@linkcode guard}. */
class Reject extends Error {
  constructor(readonly code: RejectCode, readonly reason: string) {
    super(reason);
  }
}

/** Rejects what is being decoded with `code` and `reason` (inside {@linkcode guard} only). */
export function fail(code: RejectCode, reason: string): never {
  throw new Reject(code, reason);
}

/** Runs a decoder that signals problems with `fail`, turning them (and only them) into values. */
export function guard<T>(fn: () => T, optionType?: number, inPvd?: boolean): Decoded<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof Reject) {
      return {
        ok: false,
        code: e.code,
        reason: e.reason,
        ...(optionType !== undefined ? { optionType } : {}),
        ...(inPvd ? { inPvd } : {}),
      };
    }
    // A bug in the codec, not bad input: still never escapes as an exception.
    return { ok: false, code: "truncated", reason: `decoder error: ${(e as Error).message}` };
  }
}

/** A failed {@linkcode Decoded} as a {@linkcode Rejection} (without `ok`). */
export function withoutOk(d: { ok: false } & Rejection): Rejection {
  const { ok: _, ...rejection } = d;
  return rejection;
}

/** A big-endian view of `b` (no copy). */
export function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// ---------------------------------------------------------------------------------------------
// Addresses and names

/** Canonical text (RFC 5952) of a 16-octet IPv6 address. */
export function ipv6Text(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLen).join(":")}`;
}

/** The 16 octets of an IPv6 address text. @throws {TypeError} when it is not one */
export function ipv6Bytes(text: string): Uint8Array {
  if (!ipaddr.IPv6.isValid(text)) throw new TypeError(`not an IPv6 address: ${text}`);
  return new Uint8Array(ipaddr.IPv6.parse(text).toByteArray());
}

/** Multicast, unspecified or loopback: never a usable server address. */
export function unusableAddress(b: Uint8Array): boolean {
  if (b[0] === 0xff) return true;
  for (let i = 0; i < 15; i++) if (b[i] !== 0) return false;
  return b[15] === 0 || b[15] === 1;
}

const LABEL = /^[A-Za-z0-9_-]+$/;
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;

/**
 * Decodes an uncompressed wire name at `off`, bounded by `end`: the name with a trailing dot and
 * the offset after it. `what` names the field in rejections.
 */
export function readName(
  b: Uint8Array,
  off: number,
  end: number,
  what: string,
): { name: string; next: number } {
  const labels: string[] = [];
  let wire = 0;
  for (;;) {
    if (off >= end) fail("truncated", `${what} runs past the end of its option`);
    const len = b[off]!;
    if (len >= 0xc0) fail("compressed-name", `${what} uses a compression pointer`);
    if (len > 63) fail("label-too-long", `${what} has a label of length ${len} (over 63)`);
    wire += len + 1;
    if (wire > 255) fail("name-too-long", `${what} is over 255 octets`);
    if (len === 0) break;
    if (off + 1 + len > end) fail("truncated", `${what} runs past the end of its option`);
    const label = String.fromCharCode(...b.subarray(off + 1, off + 1 + len));
    if (!LABEL.test(label)) fail("bad-name", `${what} has a label with unusable characters`);
    labels.push(label);
    off += 1 + len;
  }
  if (labels.length === 0) fail("bad-name", `${what} is empty (the root)`);
  return { name: labels.join(".") + ".", next: off + 1 };
}

/** The uncompressed wire form of a name (trailing dot optional). @throws {TypeError} */
export function encodeName(name: string): Uint8Array {
  const labels = name.replace(/\.$/, "").split(".");
  const out: number[] = [];
  for (const l of labels) {
    if (!LABEL.test(l) || l.length > 63) throw new TypeError(`cannot encode name ${name}`);
    out.push(l.length, ...Array.from(l, (c) => c.charCodeAt(0)));
  }
  out.push(0);
  if (out.length > 255) throw new TypeError(`name over 255 octets: ${name}`);
  return new Uint8Array(out);
}

/** True when `name` (presentation form) is a host name: LDH labels, not starting or ending in `-`. */
export function isHostName(name: string): boolean {
  const labels = name.replace(/\.$/, "").split(".");
  return labels.length > 0 && labels.every((l) => l.length <= 63 && HOST_LABEL.test(l)) &&
    name.length <= 254;
}

// ---------------------------------------------------------------------------------------------
// The RA header, option framing, checksum

/** Reads the 16-octet RA header (RFC 4861 §4.2) at `off`; the caller checked the length. */
export function readHeader(b: Uint8Array, off: number): RaHeader {
  const v = dv(b);
  return {
    type: b[off]!,
    code: b[off + 1]!,
    checksum: v.getUint16(off + 2),
    curHopLimit: b[off + 4]!,
    flags: b[off + 5]!,
    routerLifetime: v.getUint16(off + 6),
    reachableTime: v.getUint32(off + 8),
    retransTimer: v.getUint32(off + 12),
  };
}

/** Writes the 16-octet RA header `h` at `off` of `out`. */
export function writeHeader(out: Uint8Array, off: number, h: RaHeader): void {
  const v = dv(out);
  out[off] = h.type;
  out[off + 1] = h.code;
  v.setUint16(off + 2, h.checksum);
  out[off + 4] = h.curHopLimit;
  out[off + 5] = h.flags;
  v.setUint16(off + 6, h.routerLifetime);
  v.setUint32(off + 8, h.reachableTime);
  v.setUint32(off + 12, h.retransTimer);
}

/** Splits an option area into whole options; structural problems reject the whole area. */
export function splitOptions(b: Uint8Array, off: number, end: number, where: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  while (off < end) {
    if (off + 2 > end) fail("truncated", `${where}: option header runs past the end`);
    const type = b[off]!, units = b[off + 1]!;
    if (units === 0) fail("zero-length", `${where}: option type ${type} has length 0`);
    if (off + units * 8 > end) {
      fail("truncated", `${where}: option type ${type} (length ${units * 8}) runs past the end`);
    }
    out.push(b.subarray(off, off + units * 8));
    off += units * 8;
  }
  return out;
}

/** Frames `body` as an option of `type`, zero-padded to 8-octet units. @throws {TypeError} over 2040 octets */
export function option(type: number, body: Uint8Array): Uint8Array {
  const len = (body.length + 2 + 7) & ~7;
  if (len / 8 > 255) throw new TypeError(`option type ${type} over 2040 octets`);
  const out = new Uint8Array(len);
  out[0] = type;
  out[1] = len / 8;
  out.set(body, 2);
  return out;
}

/** The parts one after another, in a new array. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** `n` as 2 octets, big-endian. */
export function u16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

/** `n` as 4 octets, big-endian. */
export function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  dv(out).setUint32(0, n >>> 0);
  return out;
}

/**
 * The ICMPv6 checksum (RFC 4443 §2.3) of `message` sent from `source` to `destination`, with the
 * message's own checksum field counted as zero.
 */
export function icmpv6Checksum(source: string, destination: string, message: Uint8Array): number {
  const pseudo = concat([
    ipv6Bytes(source),
    ipv6Bytes(destination),
    u32(message.length),
    new Uint8Array([0, 0, 0, 58]),
  ]);
  const copy = message.slice();
  copy[2] = copy[3] = 0;
  let sum = 0;
  for (const part of [pseudo, copy]) {
    for (let i = 0; i < part.length; i += 2) sum += (part[i]! << 8) | (part[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
