/**
 * The Encrypted DNS option (DNR, RFC 9463 §6.1, type 144) both ways, with its SvcParams (RFC 9460
 * §2.1): `alpn`, `port` and `dohpath` decoded, `ipv4hint`/`ipv6hint` forbidden (RFC 9463 §3.1.8),
 * a mandatory key pvdns does not understand rejected. Unusable addresses are dropped; an option
 * left with none is rejected.
 *
 * @module
 */

import { type EncryptedDns, SvcKey, type SvcParam } from "./ra_types.ts";
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

/** Decodes a DNR option (whole, from its type octet); rejects with {@linkcode fail}. */
export function decodeDnr(o: Uint8Array): EncryptedDns {
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

/** The body of a DNR option (after type and length). @throws {TypeError} on a name that cannot be encoded */
export function encodeDnrBody(o: EncryptedDns): Uint8Array {
  const adn = encodeName(o.adn);
  const parts = [u16(o.priority), u32(o.lifetime), u16(adn.length), adn];
  if (o.addresses.length > 0) {
    const params = o.svcParams.map((p) => concat([u16(p.key), u16(p.value.length), p.value]));
    const svc = concat(params);
    parts.push(u16(o.addresses.length * 16), ...o.addresses.map(ipv6Bytes));
    parts.push(u16(svc.length), svc);
  }
  return concat(parts);
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
