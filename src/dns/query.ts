/**
 * DNS wire helpers for pvdns's side of an upstream exchange: names in wire form, the upstream
 * query, whether an answer answers it, and the addresses in an answer.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import { Flags, skipName, Type, writeOpt } from "./wire.ts";

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

/** What {@linkcode buildUpstreamQuery} writes. */
export interface UpstreamQuerySpec {
  /** The query ID: a fresh random one ({@linkcode randomQueryId}). */
  readonly id: number;
  /** Presentation form, trailing dot, `\DDD` escapes. */
  readonly qname: string;
  /** Question type. */
  readonly qtype: number;
  /** Question class. */
  readonly qclass: number;
  /** DNSSEC OK in the OPT record: the client's. */
  readonly do: boolean;
  /** Checking Disabled: the client's. */
  readonly cd: boolean;
  /** 0x20: give each letter of the name a random case (`upstream.caseRandomisation`). */
  readonly randomCase?: boolean;
}

/**
 * Builds an upstream query: fresh ID, RD, the client's CD and DO, our EDNS buffer size; with
 * `randomCase`, each letter of the name in a case drawn from the system's CSPRNG.
 */
export function buildUpstreamQuery(o: UpstreamQuerySpec): Uint8Array {
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
  if (o.randomCase) randomiseCase(out, 12);
  const at = 12 + nameLength;
  out[at] = o.qtype >> 8;
  out[at + 1] = o.qtype & 0xff;
  out[at + 2] = o.qclass >> 8;
  out[at + 3] = o.qclass & 0xff;
  writeOpt(out, at + 4, o.do);
  return out;
}

/** Random query IDs, drawn from the system's CSPRNG 256 at a time (one op call per 256 queries). */
const ids = new Uint16Array(256);
let idsLeft = 0;

/** A random query ID (RFC 5452 §9.2). */
export function randomQueryId(): number {
  if (idsLeft === 0) {
    crypto.getRandomValues(ids);
    idsLeft = ids.length;
  }
  return ids[--idsLeft]!;
}

/** Random bits for 0x20, drawn 2,048 at a time (one op call per ~200 names). */
const caseBits = new Uint8Array(256);
let caseBitsLeft = 0;

/** Gives every ASCII letter of the uncompressed wire name at `off` a random case. */
function randomiseCase(buf: Uint8Array, off: number): void {
  for (let len = buf[off]!; len !== 0 && len < 64; len = buf[off]!) {
    for (let i = off + 1; i <= off + len; i++) {
      const lower = buf[i]! | 0x20;
      if (lower < 0x61 || lower > 0x7a) continue;
      if (caseBitsLeft === 0) {
        crypto.getRandomValues(caseBits);
        caseBitsLeft = caseBits.length * 8;
      }
      caseBitsLeft--;
      const bit = (caseBits[caseBitsLeft >> 3]! >> (caseBitsLeft & 7)) & 1;
      buf[i] = bit ? lower & ~0x20 : lower;
    }
    off += len + 1;
  }
}

/**
 * True when `answer` is a response to `query`: same ID and same question, letter case aside,
 * or exactly (0x20) with `exactCase`.
 */
export function answersQuery(query: Uint8Array, answer: Uint8Array, exactCase = false): boolean {
  if (answer.length < 12 || query.length < 12) return false;
  if (answer[0] !== query[0] || answer[1] !== query[1] || !(answer[2]! & 0x80)) return false;
  if (answer[4] !== 0 || answer[5] !== 1) return false;
  const nameEnd = skipName(query, 12);
  const end = nameEnd + 4;
  if (end < 16 || end > answer.length) return false;
  for (let i = 12; i < end; i++) {
    let a = answer[i]!, b = query[i]!;
    if (a === b) continue;
    if (exactCase || i >= nameEnd) return false; // QTYPE and QCLASS are numbers, not letters

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
    if (qtype === Type.A && rdlength === 4) {
      out.push([...wire.subarray(rdata, rdata + 4)].join("."));
    }
    if (qtype === Type.AAAA && rdlength === 16) {
      const bytes = [...wire.subarray(rdata, rdata + 16)];
      out.push((ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String());
    }
  }
  return out;
}
