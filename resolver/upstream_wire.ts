/**
 * DNS wire helpers for pvdns's side of an upstream exchange: names in wire form, the upstream
 * query, whether an answer answers it, and the addresses in an answer.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import { Flags, skipName, writeOpt } from "./wire.ts";

/** Encodes a presentation-form name (trailing dot, `\DDD` escapes) as an uncompressed wire name. */
export function encodeName(name: string): Uint8Array {
  return NAME_OUT.slice(0, writeName(name));
}

/** Scratch for {@linkcode writeName}: a name longer than 255 octets is the caller's error. */
const NAME_OUT = new Uint8Array(1024);

/**
 * Writes `name` in wire form into `NAME_OUT` and returns its length: no array per label, no
 * array per name (an upstream query is built for every cache miss).
 */
function writeName(name: string): number {
  let n = 0;
  if (name !== "." && name !== "") {
    let lengthAt = n++;
    for (let i = 0; i < name.length && n < NAME_OUT.length - 2; i++) {
      const c = name.charCodeAt(i);
      if (c === 0x5c) {
        const d = name.slice(i + 1, i + 4);
        if (/^\d{3}$/.test(d)) {
          NAME_OUT[n++] = Number(d);
          i += 3;
        } else {
          NAME_OUT[n++] = name.charCodeAt(++i);
        }
      } else if (c === 0x2e) {
        NAME_OUT[lengthAt] = n - lengthAt - 1;
        lengthAt = n++;
      } else {
        NAME_OUT[n++] = c;
      }
    }
    if (n - lengthAt - 1 > 0) NAME_OUT[lengthAt] = n - lengthAt - 1;
    else n--; // the name ended with a dot: that label slot is the root's
  }
  NAME_OUT[n++] = 0;
  return n;
}

/** Builds an upstream query: fresh ID, RD, the client's CD and DO, our EDNS buffer size. */
export function buildUpstreamQuery(
  o: { id: number; qname: string; qtype: number; qclass: number; do: boolean; cd: boolean },
): Uint8Array {
  const nameLength = writeName(o.qname);
  const out = new Uint8Array(12 + nameLength + 4 + 11);
  const flags = Flags.RD | (o.cd ? Flags.CD : 0);
  out[0] = o.id >> 8;
  out[1] = o.id & 0xff;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  out[5] = 1; // one question
  out[11] = 1; // one additional record: the OPT
  for (let i = 0; i < nameLength; i++) out[12 + i] = NAME_OUT[i]!;
  const at = 12 + nameLength;
  out[at] = o.qtype >> 8;
  out[at + 1] = o.qtype & 0xff;
  out[at + 2] = o.qclass >> 8;
  out[at + 3] = o.qclass & 0xff;
  writeOpt(out, at + 4, o.do);
  return out;
}

/** True when `answer` is a response to `query` (same ID and same question, name case aside). */
export function answersQuery(query: Uint8Array, answer: Uint8Array): boolean {
  if (answer.length < 12 || query.length < 12) return false;
  if (answer[0] !== query[0] || answer[1] !== query[1] || !(answer[2]! & 0x80)) return false;
  if (answer[4] !== 0 || answer[5] !== 1) return false;
  const end = skipName(query, 12) + 4;
  if (end < 16 || end > answer.length) return false;
  for (let i = 12; i < end; i++) {
    let a = answer[i]!, b = query[i]!;
    if (a >= 0x41 && a <= 0x5a) a += 0x20;
    if (b >= 0x41 && b <= 0x5a) b += 0x20;
    if (a !== b) return false;
  }
  return true;
}

/**
 * The addresses in the A (1) or AAAA (28) records of the answer section of `wire` (a DoH server
 * named by host is looked up through its PvD's Do53 servers with this).
 */
export function answerAddresses(wire: Uint8Array, qtype: number): string[] {
  const dv = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
  const an = dv.getUint16(6);
  let off = skipName(wire, 12);
  if (off < 0) return [];
  off += 4;
  const out: string[] = [];
  for (let i = 0; i < an; i++) {
    off = skipName(wire, off);
    if (off < 0 || off + 10 > wire.length) break;
    const type = dv.getUint16(off);
    const rdlength = dv.getUint16(off + 8);
    const rdata = off + 10;
    off = rdata + rdlength;
    if (off > wire.length) break;
    if (type !== qtype) continue;
    if (qtype === 1 && rdlength === 4) out.push([...wire.subarray(rdata, rdata + 4)].join("."));
    if (qtype === 28 && rdlength === 16) {
      const bytes = [...wire.subarray(rdata, rdata + 16)];
      out.push((ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String());
    }
  }
  return out;
}
