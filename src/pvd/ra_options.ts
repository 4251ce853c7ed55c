/**
 * The plain option families of an RA both ways: Prefix Information (RFC 4861 §4.6.2, type 3),
 * RDNSS and DNSSL (RFC 8106, types 25 and 31). Each decoder takes the whole option (from its type
 * octet) and rejects with `fail`; each encoder returns the body after type and length.
 *
 * @module
 */

import type { Dnssl, PrefixInformation, Rdnss } from "./ra_types.ts";
import {
  concat,
  dv,
  encodeName,
  fail,
  ipv6Bytes,
  ipv6Text,
  readName,
  u16,
  u32,
  unusableAddress,
} from "./ra_wire.ts";

/** Decodes a Prefix Information option. */
export function decodePio(o: Uint8Array): PrefixInformation {
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

/** Decodes an RDNSS option; a multicast, unspecified or loopback server rejects it. */
export function decodeRdnss(o: Uint8Array): Rdnss {
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

/** Decodes a DNSSL option. */
export function decodeDnssl(o: Uint8Array): Dnssl {
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

/** The body of a Prefix Information option. @throws {TypeError} on a prefix that does not parse */
export function encodePioBody(o: PrefixInformation): Uint8Array {
  const body = new Uint8Array(30);
  const v = dv(body);
  body[0] = o.prefixLength;
  body[1] = o.flags;
  v.setUint32(2, o.validLifetime);
  v.setUint32(6, o.preferredLifetime);
  v.setUint32(10, o.reserved2);
  body.set(ipv6Bytes(o.prefix), 14);
  return body;
}

/** The body of an RDNSS option. @throws {TypeError} on an address that does not parse */
export function encodeRdnssBody(o: Rdnss): Uint8Array {
  return concat([u16(o.reserved), u32(o.lifetime), ...o.servers.map(ipv6Bytes)]);
}

/** The body of a DNSSL option. @throws {TypeError} on a name that cannot be encoded */
export function encodeDnsslBody(o: Dnssl): Uint8Array {
  // At least 2 units (RFC 8106 §5.2), even with no name.
  const names = o.domains.length ? o.domains.map(encodeName) : [new Uint8Array(8)];
  return concat([u16(o.reserved), u32(o.lifetime), ...names]);
}
