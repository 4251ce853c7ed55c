/**
 * Router Advertisement codec (RFC 4861 §4.2) for the options a PvD-aware host reads: the PvD
 * option (RFC 8801 §3.1, type 21), RDNSS and DNSSL (RFC 8106, types 25 and 31), Prefix
 * Information (RFC 4861 §4.6.2, type 3) and Encrypted DNS / DNR (RFC 9463 §6.1, type 144).
 * Every other option is kept as raw bytes, so that decode → encode gives back the same frame.
 *
 * Decoding never throws: every problem is a returned {@linkcode Rejection} with a code from a
 * closed set and a human reason. Every length is checked against the enclosing length before it
 * is used. The rules:
 *
 * - An option of length 0, or one that runs past the end of the message, makes the whole RA
 *   invalid (RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that contains an option
 *   with length zero"); the same inside a PvD option makes that PvD option invalid.
 * - A PvD option inside a PvD option (RFC 8801 §3.2: they MUST NOT nest) makes the outer one
 *   invalid. An RA whose first PvD option is invalid is rejected whole: what it carried was meant
 *   for the explicit PvD and must not fall to the implicit one.
 * - Any other option that fails its own checks (a compressed or over-long name, an RDNSS of even
 *   length, a DNR option with an IP hint, …) is dropped alone; the RA keeps the rest and lists
 *   the dropped option in `rejected`.
 *
 * Names are decoded to presentation form with a trailing dot, letter case as sent (callers
 * compare case-insensitively). Only letters, digits, `-` and `_` are accepted in labels: a PvD
 * ID or an ADN ends up in a URL and a TLS name, and nothing else belongs in a search domain.
 *
 * Encoding is for tests and the RA sender of the end-to-end test: it throws a `TypeError` on
 * values that cannot be put on the wire (a name too long, an address that does not parse).
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/** Why something was rejected (a closed set, for tests and logs). */
export type RejectCode =
  /** Not an RA: type ≠ 134, code ≠ 0. */
  | "not-ra"
  /** Shorter than its header, or an option/field running past its enclosing length. */
  | "truncated"
  /** An option with length 0. */
  | "zero-length"
  /** An option's length is not the one its type requires (e.g. RDNSS with an even length). */
  | "bad-length"
  /** A PvD option inside a PvD option. */
  | "nested-pvd"
  /** A name with a compression pointer (0xC0). */
  | "compressed-name"
  /** A label length over 63 (0x40–0xBF on the wire). */
  | "label-too-long"
  /** A name over 255 octets on the wire. */
  | "name-too-long"
  /** A name with characters other than letters, digits, `-`, `_`, or an empty name. */
  | "bad-name"
  /** A PvD ID that is not a host name. */
  | "bad-pvd-id"
  /** An address that may not be used (multicast, unspecified, loopback). */
  | "bad-address"
  /** A prefix length over 128. */
  | "bad-prefix"
  /** DNR: SvcParams that do not parse, are out of order, or carry an unknown mandatory key. */
  | "bad-svcparams"
  /** DNR: `ipv4hint` or `ipv6hint` present (RFC 9463 §3.1.8). */
  | "forbidden-svcparam"
  /** DNR: addresses were given but none is usable. */
  | "no-address";

/** One rejected message or option. */
export interface Rejection {
  readonly code: RejectCode;
  /** What was wrong, for a log line. */
  readonly reason: string;
  /** The option type concerned, when an option was rejected. */
  readonly optionType?: number;
  /** True when the option was embedded in a PvD option. */
  readonly inPvd?: boolean;
}

/** The result of a decode. */
export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | (
    { readonly ok: false } & Rejection
  );

/** The 16-octet RA header (RFC 4861 §4.2); also the inner header of a PvD option with R=1. */
export interface RaHeader {
  /** 134 (in an inner header: sent, but ignored on receipt). */
  readonly type: number;
  readonly code: number;
  /** As received (an inner header's is sent as 0 and ignored). */
  readonly checksum: number;
  readonly curHopLimit: number;
  /** The flags octet as sent: M = 0x80, O = 0x40, the rest kept for round trips. */
  readonly flags: number;
  /** Seconds; 0 = not a default router. */
  readonly routerLifetime: number;
  readonly reachableTime: number;
  readonly retransTimer: number;
}

/** Prefix Information (type 3). */
export interface PrefixInformation {
  readonly kind: "pio";
  readonly prefixLength: number;
  /** The flags octet: L (on-link) = 0x80, A (autonomous) = 0x40, the rest kept. */
  readonly flags: number;
  /** Seconds; 0xffffffff = infinity. */
  readonly validLifetime: number;
  readonly preferredLifetime: number;
  readonly reserved2: number;
  /** The 128-bit prefix field, canonical text (bits past the length kept as sent). */
  readonly prefix: string;
}

/** Recursive DNS Server (type 25). */
export interface Rdnss {
  readonly kind: "rdnss";
  readonly reserved: number;
  /** Seconds; 0 = stop using; 0xffffffff = infinity. */
  readonly lifetime: number;
  /** Canonical IPv6 texts. */
  readonly servers: readonly string[];
}

/** DNS Search List (type 31). */
export interface Dnssl {
  readonly kind: "dnssl";
  readonly reserved: number;
  readonly lifetime: number;
  /** Presentation form with trailing dot, case as sent. */
  readonly domains: readonly string[];
}

/** One SvcParam (RFC 9460 §2.1), raw. */
export interface SvcParam {
  readonly key: number;
  readonly value: Uint8Array;
}

/** Encrypted DNS / DNR (type 144, RFC 9463 §6.1). */
export interface EncryptedDns {
  readonly kind: "dnr";
  /** SvcPriority: lower is preferred. */
  readonly priority: number;
  readonly lifetime: number;
  /** Authentication domain name, presentation form with trailing dot. */
  readonly adn: string;
  /** Usable addresses (multicast, loopback and unspecified ones are dropped on decode). Empty
   * in ADN-only form. */
  readonly addresses: readonly string[];
  /** SvcParams as sent, keys ascending. */
  readonly svcParams: readonly SvcParam[];
  /** Decoded `alpn` (key 1). */
  readonly alpn?: readonly string[];
  /** Decoded `port` (key 3). */
  readonly port?: number;
  /** Decoded `dohpath` (key 7), a URI template such as `/dns-query{?dns}`. */
  readonly dohpath?: string;
}

/** PvD option (type 21, RFC 8801 §3.1). */
export interface PvdOption {
  readonly kind: "pvd";
  /** H: additional information is available over HTTPS. */
  readonly h: boolean;
  /** L: the PvD owns the DHCPv4 configuration on the link. */
  readonly l: boolean;
  /** R: an RA header follows the ID (`raHeader` is set). */
  readonly r: boolean;
  /** The 9 reserved bits, as sent (ignored on receipt). */
  readonly reserved: number;
  /** 0–15: the random refetch delay after a sequence change is up to 2^(10+delay) ms. */
  readonly delay: number;
  /** Sequence number (0–65535). */
  readonly seq: number;
  /** PvD ID FQDN, presentation form with trailing dot, case as sent. */
  readonly id: string;
  /** Inner RA header (present exactly when `r`). */
  readonly raHeader?: RaHeader;
  /** Embedded options (never a PvD option). */
  readonly options: readonly NdOption[];
}

/** Any other option, kept raw. */
export interface UnknownOption {
  readonly kind: "unknown";
  readonly type: number;
  /** The option's bytes after the type and length octets. */
  readonly data: Uint8Array;
}

/** A decoded ND option. */
export type NdOption =
  | PrefixInformation
  | Rdnss
  | Dnssl
  | EncryptedDns
  | PvdOption
  | UnknownOption;

/** A decoded Router Advertisement. */
export interface RouterAdvertisement {
  readonly header: RaHeader;
  /** Options in wire order, rejected ones left out. */
  readonly options: readonly NdOption[];
  /** Options dropped for their own faults (at top level or inside the PvD option). */
  readonly rejected: readonly Rejection[];
}

/** Option type numbers. */
export const OptionType = { PIO: 3, PVD: 21, RDNSS: 25, DNSSL: 31, DNR: 144 } as const;

/** SvcParamKeys (RFC 9460 §14.3.2, RFC 9461). */
export const SvcKey = {
  MANDATORY: 0,
  ALPN: 1,
  NO_DEFAULT_ALPN: 2,
  PORT: 3,
  IPV4HINT: 4,
  ECH: 5,
  IPV6HINT: 6,
  DOHPATH: 7,
} as const;

const TYPE_OF_KIND = { pio: 3, pvd: 21, rdnss: 25, dnssl: 31, dnr: 144 } as const;

class Reject extends Error {
  constructor(readonly code: RejectCode, readonly reason: string) {
    super(reason);
  }
}

function fail(code: RejectCode, reason: string): never {
  throw new Reject(code, reason);
}

/** Runs a decoder that signals problems with `fail`, turning them (and only them) into values. */
function guard<T>(fn: () => T, optionType?: number, inPvd?: boolean): Decoded<T> {
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
    // A bug in this file, not bad input: still never escapes as an exception.
    return { ok: false, code: "truncated", reason: `decoder error: ${(e as Error).message}` };
  }
}

function withoutOk(d: { ok: false } & Rejection): Rejection {
  const { ok: _, ...rejection } = d;
  return rejection;
}

function dv(b: Uint8Array): DataView {
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
function unusableAddress(b: Uint8Array): boolean {
  if (b[0] === 0xff) return true;
  for (let i = 0; i < 15; i++) if (b[i] !== 0) return false;
  return b[15] === 0 || b[15] === 1;
}

const LABEL = /^[A-Za-z0-9_-]+$/;
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;

/** Decodes an uncompressed wire name at `off`, bounded by `end`. */
function readName(b: Uint8Array, off: number, end: number, what: string) {
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
// Decoding

function readHeader(b: Uint8Array, off: number): RaHeader {
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

/** Splits an option area into whole options; structural problems reject the whole area. */
function splitOptions(b: Uint8Array, off: number, end: number, where: string): Uint8Array[] {
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

function decodePio(o: Uint8Array): PrefixInformation {
  if (o.length !== 32) fail("bad-length", `prefix information has length ${o.length}, not 32`);
  const v = dv(o);
  const prefixLength = o[2]!;
  if (prefixLength > 128) fail("bad-prefix", `prefix length ${prefixLength} is over 128`);
  return {
    kind: "pio",
    prefixLength,
    flags: o[3]!,
    validLifetime: v.getUint32(4),
    preferredLifetime: v.getUint32(8),
    reserved2: v.getUint32(12),
    prefix: ipv6Text(o.subarray(16, 32)),
  };
}

function decodeRdnss(o: Uint8Array): Rdnss {
  const units = o.length / 8;
  if (units < 3 || (units - 1) % 2 !== 0) {
    fail("bad-length", `RDNSS length ${units} is not 1 + 2N with N ≥ 1`);
  }
  const v = dv(o);
  const servers: string[] = [];
  for (let off = 8; off < o.length; off += 16) {
    const a = o.subarray(off, off + 16);
    if (unusableAddress(a)) fail("bad-address", `RDNSS address ${ipv6Text(a)} is not unicast`);
    servers.push(ipv6Text(a));
  }
  return { kind: "rdnss", reserved: v.getUint16(2), lifetime: v.getUint32(4), servers };
}

function decodeDnssl(o: Uint8Array): Dnssl {
  if (o.length < 16) fail("bad-length", `DNSSL length ${o.length / 8} is under 2`);
  const v = dv(o);
  const domains: string[] = [];
  // Names follow one another; the first zero octet where a name would start begins the padding.
  for (let off = 8; off < o.length && o[off] !== 0;) {
    const { name, next } = readName(o, off, o.length, "DNSSL name");
    domains.push(name);
    off = next;
  }
  return { kind: "dnssl", reserved: v.getUint16(2), lifetime: v.getUint32(4), domains };
}

function decodeSvcParams(b: Uint8Array): Pick<
  EncryptedDns,
  "svcParams" | "alpn" | "port" | "dohpath"
> {
  const params: SvcParam[] = [];
  const v = dv(b);
  let off = 0, last = -1;
  while (off < b.length) {
    if (off + 4 > b.length) fail("bad-svcparams", "SvcParam header runs past the end");
    const key = v.getUint16(off), len = v.getUint16(off + 2);
    if (off + 4 + len > b.length) fail("bad-svcparams", `SvcParam ${key} runs past the end`);
    if (key <= last) fail("bad-svcparams", `SvcParam keys not in ascending order (${key})`);
    if (key === SvcKey.IPV4HINT || key === SvcKey.IPV6HINT) {
      fail("forbidden-svcparam", `SvcParam ${key === 4 ? "ipv4hint" : "ipv6hint"} is forbidden`);
    }
    params.push({ key, value: b.slice(off + 4, off + 4 + len) });
    last = key;
    off += 4 + len;
  }
  const out: { -readonly [K in keyof EncryptedDns]?: EncryptedDns[K] } = { svcParams: params };
  for (const p of params) {
    const pv = dv(p.value);
    if (p.key === SvcKey.MANDATORY) {
      if (p.value.length === 0 || p.value.length % 2) fail("bad-svcparams", "bad mandatory list");
      for (let i = 0; i < p.value.length; i += 2) {
        const k = pv.getUint16(i);
        if (![SvcKey.ALPN, SvcKey.PORT, SvcKey.DOHPATH].includes(k as 1)) {
          fail("bad-svcparams", `unsupported mandatory SvcParam ${k}`);
        }
      }
    } else if (p.key === SvcKey.ALPN) {
      const ids: string[] = [];
      for (let i = 0; i < p.value.length;) {
        const n = p.value[i]!;
        if (n === 0 || i + 1 + n > p.value.length) fail("bad-svcparams", "malformed alpn");
        ids.push(new TextDecoder().decode(p.value.subarray(i + 1, i + 1 + n)));
        i += 1 + n;
      }
      if (ids.length === 0) fail("bad-svcparams", "empty alpn");
      out.alpn = ids;
    } else if (p.key === SvcKey.PORT) {
      if (p.value.length !== 2) fail("bad-svcparams", "port is not 2 octets");
      out.port = pv.getUint16(0);
    } else if (p.key === SvcKey.DOHPATH) {
      let path: string;
      try {
        path = new TextDecoder("utf-8", { fatal: true }).decode(p.value);
      } catch {
        fail("bad-svcparams", "dohpath is not UTF-8");
      }
      if (!path.startsWith("/")) fail("bad-svcparams", "dohpath does not start with /");
      out.dohpath = path;
    }
  }
  return out as Pick<EncryptedDns, "svcParams" | "alpn" | "port" | "dohpath">;
}

function decodeDnr(o: Uint8Array): EncryptedDns {
  if (o.length < 16) fail("bad-length", `DNR length ${o.length / 8} is under 2`);
  const v = dv(o);
  const priority = v.getUint16(2), lifetime = v.getUint32(4), adnLen = v.getUint16(8);
  if (adnLen === 0) fail("bad-name", "DNR option without ADN");
  if (10 + adnLen > o.length) fail("truncated", "DNR ADN runs past the end of its option");
  const { name: adn, next } = readName(o, 10, 10 + adnLen, "DNR ADN");
  if (next !== 10 + adnLen) fail("bad-name", "DNR ADN length does not match the name");
  let off = next;
  const base = { kind: "dnr" as const, priority, lifetime, adn };
  // ADN-only form: nothing but zero padding after the ADN.
  if (o.subarray(off).every((x) => x === 0)) return { ...base, addresses: [], svcParams: [] };
  if (off + 2 > o.length) fail("truncated", "DNR address length runs past the end");
  const addrLen = v.getUint16(off);
  off += 2;
  if (addrLen === 0 || addrLen % 16) fail("bad-length", `DNR address length ${addrLen}`);
  if (off + addrLen > o.length) fail("truncated", "DNR addresses run past the end");
  const addresses: string[] = [];
  for (let i = 0; i < addrLen; i += 16) {
    const a = o.subarray(off + i, off + i + 16);
    if (!unusableAddress(a)) addresses.push(ipv6Text(a));
  }
  if (addresses.length === 0) fail("no-address", "DNR option has no usable address");
  off += addrLen;
  if (off + 2 > o.length) fail("truncated", "DNR SvcParams length runs past the end");
  const svcLen = v.getUint16(off);
  off += 2;
  if (off + svcLen > o.length) fail("truncated", "DNR SvcParams run past the end");
  return { ...base, addresses, ...decodeSvcParams(o.subarray(off, off + svcLen)) };
}

function decodePvd(o: Uint8Array, rejected: Rejection[]): PvdOption {
  if (o.length < 8) fail("bad-length", "PvD option shorter than 8 octets");
  const v = dv(o);
  const flags = v.getUint16(2);
  const { name: id, next } = readName(o, 6, o.length, "PvD ID");
  if (!isHostName(id)) fail("bad-pvd-id", `PvD ID ${id} is not a host name`);
  let off = (next + 7) & ~7;
  if (off > o.length) fail("truncated", "PvD ID padding runs past the end of the option");
  const r = (flags & 0x2000) !== 0;
  let raHeader: RaHeader | undefined;
  if (r) {
    if (off + 16 > o.length) fail("truncated", "PvD option has R=1 but no room for an RA header");
    raHeader = readHeader(o, off);
    off += 16;
  }
  const options: NdOption[] = [];
  for (const inner of splitOptions(o, off, o.length, "inside the PvD option")) {
    if (inner[0] === OptionType.PVD) fail("nested-pvd", "a PvD option inside a PvD option");
    const d = decodeOptionBytes(inner, true, rejected);
    if (d.ok) options.push(d.value);
    else rejected.push(withoutOk(d));
  }
  return {
    kind: "pvd",
    h: (flags & 0x8000) !== 0,
    l: (flags & 0x4000) !== 0,
    r,
    reserved: (flags & 0x1ff0) >> 4,
    delay: flags & 0x000f,
    seq: v.getUint16(4),
    id,
    ...(raHeader ? { raHeader } : {}),
    options,
  };
}

/** Decodes one option; rejections of options embedded in a PvD option go to `rejected`. */
function decodeOptionBytes(
  o: Uint8Array,
  inPvd: boolean,
  rejected: Rejection[],
): Decoded<NdOption> {
  const type = o[0]!;
  return guard(
    (): NdOption => {
      switch (type) {
        case OptionType.PIO:
          return decodePio(o);
        case OptionType.RDNSS:
          return decodeRdnss(o);
        case OptionType.DNSSL:
          return decodeDnssl(o);
        case OptionType.DNR:
          return decodeDnr(o);
        case OptionType.PVD:
          return decodePvd(o, rejected);
        default:
          return { kind: "unknown", type, data: o.slice(2) };
      }
    },
    type,
    inPvd,
  );
}

/**
 * Decodes one whole option (type, length, body): `bytes.length` must be the option's length.
 *
 * Rejections of options embedded in a PvD option are not reported here (only by
 * {@linkcode decodeRa}); the PvD option is returned without them.
 */
export function decodeOption(bytes: Uint8Array): Decoded<NdOption> {
  if (bytes.length < 2) return { ok: false, code: "truncated", reason: "option shorter than 2" };
  const type = bytes[0]!, units = bytes[1]!;
  if (units === 0) {
    return {
      ok: false,
      code: "zero-length",
      reason: `option type ${type} has length 0`,
      optionType: type,
    };
  }
  if (units * 8 !== bytes.length) {
    const code = units * 8 > bytes.length ? "truncated" : "bad-length";
    return {
      ok: false,
      code,
      reason: `option type ${type} says ${units * 8} octets, has ${bytes.length}`,
      optionType: type,
    };
  }
  return decodeOptionBytes(bytes, false, []);
}

/** Decodes an ICMPv6 Router Advertisement (the ICMPv6 message, from its type octet). */
export function decodeRa(message: Uint8Array): Decoded<RouterAdvertisement> {
  return guard(() => {
    if (message.length < 16) fail("truncated", `RA of ${message.length} octets (under 16)`);
    if (message[0] !== 134) fail("not-ra", `ICMPv6 type ${message[0]} is not 134`);
    if (message[1] !== 0) fail("not-ra", `RA with code ${message[1]}`);
    const header = readHeader(message, 0);
    const options: NdOption[] = [];
    const rejected: Rejection[] = [];
    let sawPvd = false;
    for (const o of splitOptions(message, 16, message.length, "RA")) {
      const inner: Rejection[] = [];
      const d = decodeOptionBytes(o, false, inner);
      if (d.ok) {
        options.push(d.value);
        rejected.push(...inner);
        if (d.value.kind === "pvd") sawPvd = true;
      } else if (o[0] === OptionType.PVD && !sawPvd) {
        fail(d.code, `first PvD option rejected: ${d.reason}`);
      } else {
        rejected.push(withoutOk(d));
      }
    }
    return { header, options, rejected };
  });
}

// ---------------------------------------------------------------------------------------------
// Encoding

function writeHeader(out: Uint8Array, off: number, h: RaHeader): void {
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

function option(type: number, body: Uint8Array): Uint8Array {
  const len = (body.length + 2 + 7) & ~7;
  if (len / 8 > 255) throw new TypeError(`option type ${type} over 2040 octets`);
  const out = new Uint8Array(len);
  out[0] = type;
  out[1] = len / 8;
  out.set(body, 2);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  dv(out).setUint32(0, n >>> 0);
  return out;
}

/** Encodes one option. @throws {TypeError} on values that cannot be encoded */
export function encodeOption(o: NdOption): Uint8Array {
  switch (o.kind) {
    case "pio": {
      const body = new Uint8Array(30);
      const v = dv(body);
      body[0] = o.prefixLength;
      body[1] = o.flags;
      v.setUint32(2, o.validLifetime);
      v.setUint32(6, o.preferredLifetime);
      v.setUint32(10, o.reserved2);
      body.set(ipv6Bytes(o.prefix), 14);
      return option(OptionType.PIO, body);
    }
    case "rdnss":
      return option(
        OptionType.RDNSS,
        concat([u16(o.reserved), u32(o.lifetime), ...o.servers.map(ipv6Bytes)]),
      );
    case "dnssl": {
      // At least 2 units (RFC 8106 §5.2), even with no name.
      const names = o.domains.length ? o.domains.map(encodeName) : [new Uint8Array(8)];
      return option(OptionType.DNSSL, concat([u16(o.reserved), u32(o.lifetime), ...names]));
    }
    case "dnr": {
      const adn = encodeName(o.adn);
      const parts = [u16(o.priority), u32(o.lifetime), u16(adn.length), adn];
      if (o.addresses.length > 0) {
        const params = o.svcParams.map((p) => concat([u16(p.key), u16(p.value.length), p.value]));
        const svc = concat(params);
        parts.push(u16(o.addresses.length * 16), ...o.addresses.map(ipv6Bytes));
        parts.push(u16(svc.length), svc);
      }
      return option(OptionType.DNR, concat(parts));
    }
    case "pvd": {
      if (o.r !== (o.raHeader !== undefined)) {
        throw new TypeError("PvD option: R must be set exactly when an RA header is given");
      }
      const id = encodeName(o.id);
      const head = new Uint8Array(((6 + id.length + 7) & ~7) - 2);
      const v = dv(head);
      const flags = (o.h ? 0x8000 : 0) | (o.l ? 0x4000 : 0) | (o.r ? 0x2000 : 0) |
        ((o.reserved & 0x1ff) << 4) | (o.delay & 0xf);
      v.setUint16(0, flags);
      v.setUint16(2, o.seq);
      head.set(id, 4);
      const parts: Uint8Array[] = [head];
      if (o.raHeader) {
        const h = new Uint8Array(16);
        writeHeader(h, 0, o.raHeader);
        parts.push(h);
      }
      for (const inner of o.options) {
        if (inner.kind === "pvd") throw new TypeError("PvD options must not nest");
        parts.push(encodeOption(inner));
      }
      return option(OptionType.PVD, concat(parts));
    }
    case "unknown":
      if ((o.data.length + 2) % 8) throw new TypeError("unknown option data not 8n-2 octets");
      return option(o.type, o.data);
  }
}

/** Encodes an RA (the ICMPv6 message; the checksum is written as given in the header). */
export function encodeRa(ra: Pick<RouterAdvertisement, "header" | "options">): Uint8Array {
  const head = new Uint8Array(16);
  writeHeader(head, 0, ra.header);
  return concat([head, ...ra.options.map(encodeOption)]);
}

/** The option type number of a decoded option. */
export function optionType(o: NdOption): number {
  return o.kind === "unknown" ? o.type : TYPE_OF_KIND[o.kind];
}

/** Builds a SvcParam list from the three keys pvdns understands, keys ascending. */
export function svcParams(
  p: { alpn?: readonly string[]; port?: number; dohpath?: string },
): SvcParam[] {
  const out: SvcParam[] = [];
  const enc = new TextEncoder();
  if (p.alpn) {
    out.push({
      key: SvcKey.ALPN,
      value: concat(p.alpn.map((a) => concat([new Uint8Array([a.length]), enc.encode(a)]))),
    });
  }
  if (p.port !== undefined) out.push({ key: SvcKey.PORT, value: u16(p.port) });
  if (p.dohpath !== undefined) out.push({ key: SvcKey.DOHPATH, value: enc.encode(p.dohpath) });
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
