/**
 * What an upstream response may bring into pvdns. Its names are checked, and only the records
 * that belong to its question are kept; the rest is dropped before the answer is cached or
 * served.
 *
 * **Names.** A compression pointer must point before the start of the name it is in, and each
 * further pointer before the previous one's target (dnspython's rule). Loops, self-references
 * and forward pointers are refused, as are names over 255 octets and reserved label types. The
 * same holds for the names inside the rdata of the types that may carry compressed names
 * (RFC 3597 §4), and those names must fill their rdata exactly.
 *
 * **Records kept** (Unbound's scrubber, as seen by a forwarder). The _chain_ is the question name
 * plus every name its CNAME records lead to (and DNAME substitutions):
 *
 * - answer: records owned by a chain name, and DNAME records owned by an ancestor of one;
 * - authority: records owned by a chain name or an ancestor of one (SOA, NS, DS), and the
 *   DNSSEC denial records (NSEC, NSEC3 and their RRSIGs);
 * - additional: records owned by a name a kept record refers to (the targets of NS, MX, SRV,
 *   SVCB/HTTPS and the like). OPT is the caller's business.
 *
 * Records owned by other names (the classic poisoning attempt: `bank.example A` in the answer
 * to `www.attacker.example`) are dropped, so a client never sees them. pvdns's cache is keyed by
 * the question, so they could never be served for another question anyway.
 *
 * @module
 */

import { appendNameLabel, scratchName, Type } from "./wire.ts";

/** The section a record is in. */
export type Section = "answer" | "authority" | "additional";

/** One record of a walked message: offsets into the wire. */
export interface WireRecord {
  /** The section. */
  readonly section: Section;
  /** Offset of the owner name. */
  readonly start: number;
  /** Offset of TYPE, just past the owner name. */
  readonly typeAt: number;
  /** Record type. */
  readonly type: number;
  /** Offset of the rdata. */
  readonly rdStart: number;
  /** Offset just past the rdata. */
  readonly rdEnd: number;
  /** The owner name: lower case, trailing dot, `\DDD` for odd bytes (as `Query.qname`). */
  readonly owner: string;
}

/** A response whose structure and names were checked. */
export interface WalkedResponse {
  /** The question name, in the form of {@linkcode WireRecord.owner}. */
  readonly qname: string;
  /** The question type. */
  readonly qtype: number;
  /** Offset just past the question. */
  readonly questionEnd: number;
  /** The records before the OPT record (all of them when there is none). */
  readonly records: readonly WireRecord[];
  /** Offset of the OPT record, or -1. Records after it are not listed. */
  readonly optStart: number;
}

/** A name read from a message: where it ends in place, and its text. */
interface ReadName {
  /** Offset just past the name where it was read (past the first pointer when compressed). */
  readonly end: number;
  /** Lower case, trailing dot, `\DDD` for odd bytes. */
  readonly key: string;
}

/**
 * Reads the possibly compressed name at `off`, following pointers that only go backwards, each
 * before the last. `out`, when given, receives the name uncompressed, in its original case.
 * Returns null when the name is malformed.
 */
export function readName(wire: Uint8Array, off: number, out?: number[]): ReadName | null {
  let end = -1;
  let limit = off;
  let pos = off;
  let total = 1;
  let n = 0; // characters of the key gathered so far (wire.ts's scratch space)
  for (;;) {
    if (pos >= wire.length) return null;
    const len = wire[pos]!;
    if (len === 0) {
      out?.push(0);
      return { end: end < 0 ? pos + 1 : end, key: scratchName(n) };
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= wire.length) return null;
      const target = ((len & 0x3f) << 8) | wire[pos + 1]!;
      if (end < 0) end = pos + 2;
      if (target >= limit || target < 12) return null; // forward, self, loop, or into the header
      limit = pos = target;
      continue;
    }
    if (len > 63) return null; // 0x40 and 0x80: reserved label types
    if (pos + 1 + len > wire.length) return null;
    total += len + 1;
    if (total > 255) return null;
    if (out) { for (let i = pos; i <= pos + len; i++) out.push(wire[i]!); }
    n = appendNameLabel(wire, pos, len, n);
    pos += len + 1;
  }
}

/**
 * Where the names are in the rdata of the types that may carry compressed names (RFC 3597 §4,
 * plus DNAME): `before` fixed bytes, `names` names, `after` fixed bytes, nothing else.
 */
const RDATA_NAMES: ReadonlyMap<number, { before: number; names: number; after: number }> = new Map(
  [
    ...[2, 3, 4, 5, 7, 8, 9, 12, 39].map((t) => [t, { before: 0, names: 1, after: 0 }] as const), // NS MD MF CNAME MB MG MR PTR DNAME
    [6, { before: 0, names: 2, after: 20 }], // SOA
    [14, { before: 0, names: 2, after: 0 }], // MINFO
    [17, { before: 0, names: 2, after: 0 }], // RP
    ...[15, 18, 21, 36].map((t) => [t, { before: 2, names: 1, after: 0 }] as const), // MX AFSDB RT KX
    [26, { before: 2, names: 2, after: 0 }], // PX
    [33, { before: 6, names: 1, after: 0 }], // SRV
  ],
);

/** Types whose first rdata name is a host an additional record may be about. */
const REFERS_TO_HOST = new Set([2, 15, 18, 21, 33, 36, 64, 65]); // NS MX AFSDB RT SRV KX SVCB HTTPS

const { NSEC, NSEC3, RRSIG, DNAME, SVCB, HTTPS } = Type;

/**
 * Checks the structure of a response and every name in it, and lists its records. Returns a
 * reason (a string) when the message is malformed.
 */
export function walkResponse(wire: Uint8Array): WalkedResponse | string {
  if (wire.length < 12) return "short header";
  const dv = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
  if (dv.getUint16(4) !== 1) return "not exactly one question";
  const an = dv.getUint16(6), ns = dv.getUint16(8), ar = dv.getUint16(10);
  const q = readName(wire, 12);
  if (!q || q.end + 4 > wire.length) return "bad question";
  const questionEnd = q.end + 4;
  const records: WireRecord[] = [];
  let off = questionEnd;
  let optStart = -1;
  for (let i = 0; i < an + ns + ar; i++) {
    const start = off;
    // Most owners are a pointer to the question's name: its key is known, nothing to read.
    const toQuestion = wire[off] === 0xc0 && wire[off + 1] === 12;
    const owner = toQuestion ? { end: off + 2, key: q.key } : readName(wire, off);
    if (!owner) return "bad owner name";
    const typeAt = owner.end;
    if (typeAt + 10 > wire.length) return "bad record";
    const type = dv.getUint16(typeAt);
    const rdStart = typeAt + 10;
    const rdEnd = rdStart + dv.getUint16(typeAt + 8);
    if (rdEnd > wire.length) return "record overruns message";
    off = rdEnd;
    if (type === Type.OPT) {
      if (i < an + ns || optStart >= 0 || owner.key !== ".") return "misplaced OPT";
      optStart = start;
      continue;
    }
    const bad = checkRdata(wire, type, rdStart, rdEnd);
    if (bad) return bad;
    if (optStart >= 0) continue; // after the OPT: dropped with it (optional data)
    const section = i < an ? "answer" : i < an + ns ? "authority" : "additional";
    records.push({ section, start, typeAt, type, rdStart, rdEnd, owner: owner.key });
  }
  if (off !== wire.length) return "trailing bytes";
  return { qname: q.key, qtype: dv.getUint16(q.end), questionEnd, records, optStart };
}

/** A reason when the rdata of `type` is malformed, else undefined. */
function checkRdata(
  wire: Uint8Array,
  type: number,
  start: number,
  end: number,
): string | undefined {
  const length = end - start;
  if (type === Type.A && length !== 4) return "A record not 4 bytes";
  if (type === Type.AAAA && length !== 16) return "AAAA record not 16 bytes";
  const layout = RDATA_NAMES.get(type);
  if (!layout) return undefined;
  let off = start + layout.before;
  for (let n = 0; n < layout.names; n++) {
    const name = off <= end ? readName(wire, off) : null;
    if (!name || name.end > end) return `bad name in type ${type} rdata`;
    off = name.end;
  }
  return off + layout.after === end ? undefined : `bad type ${type} rdata length`;
}

/** The first name in a record's rdata (the CNAME/DNAME target, the NS/MX/SRV host …). */
function rdataName(wire: Uint8Array, r: WireRecord): string | undefined {
  if (r.type === SVCB || r.type === HTTPS) {
    const target = readName(wire, r.rdStart + 2);
    if (!target || target.end > r.rdEnd) return undefined;
    return target.key === "." ? r.owner : target.key; // "." means the owner (RFC 9460 §2.5)
  }
  const layout = RDATA_NAMES.get(r.type);
  return layout ? readName(wire, r.rdStart + layout.before)?.key : undefined;
}

/** True when `name` is `zone` or below it. */
function isAtOrBelow(name: string, zone: string): boolean {
  return name === zone || zone === "." || name.endsWith("." + zone);
}

/** The proper ancestors of `name` (a key: labels end at `.`, literal dots are escaped). */
function* ancestors(name: string): Generator<string> {
  for (let i = name.indexOf("."); i >= 0 && i < name.length - 1; i = name.indexOf(".", i + 1)) {
    yield name.slice(i + 1);
  }
  if (name !== ".") yield ".";
}

/**
 * The most names a chain may have: far above any real chain (resolvers give up after 8-16
 * links), and a bound on the work a hostile answer of thousands of CNAMEs can cause.
 */
export const MAX_CHAIN = 64;

/**
 * Which records of `msg` belong to its question (see the module documentation): one flag per
 * record of `msg.records`. Linear in the records: each chain name is looked up once.
 */
export function relevantRecords(wire: Uint8Array, msg: WalkedResponse): boolean[] {
  const { records, qtype } = msg;
  // The common answer: records of the question's own name, in the answer section, none of which
  // leads elsewhere (a CNAME or DNAME would). All kept, without building the chain.
  let simple = true;
  for (let i = 0; i < records.length && simple; i++) {
    const r = records[i]!;
    simple = r.section === "answer" && r.owner === msg.qname && r.type !== Type.CNAME &&
      r.type !== DNAME;
  }
  if (simple) return new Array<boolean>(records.length).fill(true);
  // A name has at most one CNAME and one DNAME (RFC 2181 §10.1, RFC 6672): the first
  // one counts, so that a thousand copies cost nothing more.
  const cnames = new Map<string, WireRecord>();
  const dnameRecords = new Map<string, WireRecord>();
  for (const r of records) {
    if (r.section !== "answer") continue;
    const by = r.type === Type.CNAME ? cnames : r.type === DNAME ? dnameRecords : undefined;
    if (by && !by.has(r.owner)) by.set(r.owner, r);
  }
  const chain = new Set([msg.qname]);
  const dnames = new Set<string>();
  const work = [msg.qname];
  const add = (name: string | undefined) => {
    if (name !== undefined && !chain.has(name) && chain.size < MAX_CHAIN) {
      chain.add(name);
      work.push(name);
    }
  };
  while (work.length > 0) {
    const name = work.pop()!;
    const cname = cnames.get(name);
    if (cname && qtype !== Type.CNAME) add(rdataName(wire, cname));
    if (qtype === DNAME || dnameRecords.size === 0) continue;
    for (const zone of ancestors(name)) {
      const dname = dnameRecords.get(zone);
      const target = dname && rdataName(wire, dname);
      if (target === undefined) continue;
      // RFC 6672 §2.2: the part of the name above the DNAME's owner, moved under its target.
      dnames.add(zone);
      const prefix = name.slice(0, name.length - (zone === "." ? 0 : zone.length));
      add(target === "." ? prefix : prefix + target);
    }
  }
  const keep = records.map((r) => {
    if (r.section === "answer") return chain.has(r.owner) || dnames.has(r.owner);
    if (r.section !== "authority") return false; // additional: decided below
    if (r.type === NSEC || r.type === NSEC3) return true;
    if (r.type === RRSIG && r.rdEnd - r.rdStart >= 2) {
      const covered = (wire[r.rdStart]! << 8) | wire[r.rdStart + 1]!;
      if (covered === NSEC || covered === NSEC3) return true;
    }
    for (const n of chain) if (isAtOrBelow(n, r.owner)) return true;
    return false;
  });
  const hosts = new Set<string>();
  records.forEach((r, i) => {
    if (keep[i] && REFERS_TO_HOST.has(r.type)) {
      const host = rdataName(wire, r);
      if (host !== undefined) hosts.add(host);
    }
  });
  records.forEach((r, i) => {
    if (r.section === "additional") keep[i] = hosts.has(r.owner);
  });
  return keep;
}

/**
 * The message with only the records flagged in `keep` (and no OPT): header and question as they
 * were, the records rewritten with every name uncompressed (a pointer could point into a record
 * that is gone).
 */
export function rebuildResponse(
  wire: Uint8Array,
  msg: WalkedResponse,
  keep: readonly boolean[],
): Uint8Array {
  const out: number[] = [...wire.subarray(0, msg.questionEnd)];
  const counts = { answer: 0, authority: 0, additional: 0 };
  msg.records.forEach((r, i) => {
    if (!keep[i]) return;
    counts[r.section]++;
    readName(wire, r.start, out);
    for (let k = r.typeAt; k < r.typeAt + 8; k++) out.push(wire[k]!); // type, class, TTL
    const lengthAt = out.length;
    out.push(0, 0);
    const layout = RDATA_NAMES.get(r.type);
    if (layout) {
      let off = r.rdStart;
      for (let k = 0; k < layout.before; k++) out.push(wire[off++]!);
      for (let n = 0; n < layout.names; n++) off = readName(wire, off, out)!.end;
      for (; off < r.rdEnd; off++) out.push(wire[off]!);
    } else {
      for (let k = r.rdStart; k < r.rdEnd; k++) out.push(wire[k]!);
    }
    const rdLength = out.length - lengthAt - 2;
    out[lengthAt] = rdLength >> 8;
    out[lengthAt + 1] = rdLength & 0xff;
  });
  const bytes = new Uint8Array(out);
  const dv = new DataView(bytes.buffer);
  dv.setUint16(6, counts.answer);
  dv.setUint16(8, counts.authority);
  dv.setUint16(10, counts.additional);
  return bytes;
}
