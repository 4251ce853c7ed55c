/**
 * DNS wire helpers for the query path: read the header and the question of a query, walk the
 * records of a response, build small replies. The hot path never builds message objects; it
 * works on bytes and offsets (bench/README.md, "What moved the figures", has the measured reason).
 * Full decoding of arbitrary
 * messages, where needed off the hot path, uses `dns-packet`.
 *
 * @module
 */

/** DNS header flag bits (in the 16-bit flags word). */
export const Flags = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

/** Response codes used by pvdns. BADVERS is extended (carried in OPT). */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

/** Record types pvdns treats specially. */
export const Type = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  NAPTR: 35,
  DNAME: 39,
  OPT: 41,
  DS: 43,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  NSEC3: 50,
  TLSA: 52,
  SVCB: 64,
  HTTPS: 65,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
  CAA: 257,
} as const;

/** A record type's mnemonic, as in {@linkcode Type}. */
export type TypeName = keyof typeof Type;

/**
 * The record types a config rule may match (`match.qtype`), which are also the types the metrics
 * count by name (every other type is counted as `other`).
 */
export const QUERY_TYPES: readonly TypeName[] = Object.freeze(
  [
    "A",
    "NS",
    "CNAME",
    "SOA",
    "PTR",
    "MX",
    "TXT",
    "AAAA",
    "SRV",
    "NAPTR",
    "DS",
    "RRSIG",
    "NSEC",
    "DNSKEY",
    "NSEC3",
    "TLSA",
    "SVCB",
    "HTTPS",
    "CAA",
    "ANY",
  ] as const,
);

/** The UDP payload size pvdns advertises and uses upstream (DNS flag day 2020). */
export const EDNS_UDP_SIZE = 1232;

/**
 * The largest UDP reply pvdns sends: an IPv4 datagram carries at most 65,507 bytes (65,535 less
 * the IP and UDP headers). A client advertising more (EDNS allows 65,535) gets TC above this, not
 * a send that fails and leaves it without any answer.
 */
export const MAX_UDP_REPLY = 65_507;

/** A query whose header and question could be read. */
export interface Query {
  /** The bytes as received. */
  readonly raw: Uint8Array;
  /** Message ID. */
  readonly id: number;
  /** The 16-bit flags word of the header. */
  readonly flags: number;
  /** Question name: lower case, presentation form with trailing dot, `\DDD` for odd bytes. */
  readonly qname: string;
  /** Question type. */
  readonly qtype: number;
  /** Question class. */
  readonly qclass: number;
  /** Offset just past QCLASS: `raw.subarray(12, questionEnd)` is the question as the client wrote it. */
  readonly questionEnd: number;
  /**
   * EDNS(0) data, when the query carried an OPT record. `udpSize` is the most a UDP reply may
   * hold: the client's payload size, at least 512 (RFC 6891 §6.2.5), at most
   * {@linkcode MAX_UDP_REPLY}.
   */
  readonly edns?: { readonly udpSize: number; readonly version: number; readonly do: boolean };
}

/** What reading a query gave: a query, an error reply to send, or nothing (drop). */
export type QueryParse =
  | { readonly kind: "query"; readonly query: Query }
  | { readonly kind: "error"; readonly reply: Uint8Array; readonly rcode: number }
  | { readonly kind: "drop"; readonly reason: string };

/** Scratch space for one name in presentation form (255 octets, each at most `\DDD`). */
const nameChars = new Uint8Array(255 * 4 + 1);

/**
 * Appends the label of `len` bytes after `buf[at]` and a dot to the name being gathered in the
 * scratch space from position `n`: lower case, `\DDD` for bytes that are not plain characters.
 * Returns the new length. The characters become one string at the end ({@linkcode scratchName}):
 * concatenating a character at a time would allocate a string per character.
 */
export function appendNameLabel(buf: Uint8Array, at: number, len: number, n: number): number {
  for (let i = at + 1; i <= at + len; i++) {
    let c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) nameChars[n++] = c;
    else {
      nameChars[n++] = 0x5c; // \DDD
      nameChars[n++] = 0x30 + Math.floor(c / 100);
      nameChars[n++] = 0x30 + Math.floor(c / 10) % 10;
      nameChars[n++] = 0x30 + c % 10;
    }
  }
  nameChars[n++] = 0x2e;
  return n;
}

/** The first `n` characters gathered by {@linkcode appendNameLabel}, or "." for none. */
export function scratchName(n: number): string {
  return n === 0 ? "." : String.fromCharCode.apply(
    null,
    nameChars.subarray(0, n) as unknown as number[],
  );
}

/** Reads an uncompressed name at `off` into lower-case presentation form. */
function readUncompressedName(
  buf: Uint8Array,
  off: number,
): { end: number; text: string } | null {
  let n = 0;
  let total = 1;
  for (;;) {
    if (off >= buf.length) return null;
    const len = buf[off]!;
    if (len === 0) return { end: off + 1, text: scratchName(n) };
    if (len > 63) return null; // a pointer or a reserved label type: not allowed in a question
    if (off + 1 + len > buf.length) return null;
    total += len + 1;
    if (total > 255) return null;
    n = appendNameLabel(buf, off, len, n);
    off += len + 1;
  }
}

/** Skips a possibly compressed name; returns the offset after it, or -1 when malformed. */
export function skipName(buf: Uint8Array, off: number): number {
  for (let labels = 0; labels < 128; labels++) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if (len > 63) return -1;
    off += len + 1;
  }
  return -1;
}

const view = (buf: Uint8Array) => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

/**
 * Reads and validates a query (RFC 1035 header and question, RFC 6891 OPT).
 *
 * Header unreadable or QR set → drop. Opcode other than QUERY → NOTIMP (with an OPT when the
 * query had one, RFC 6891 §7). Not exactly one
 * question, a malformed name or record, two OPT records → FORMERR. Class other than IN, zone
 * transfers → REFUSED. EDNS version above 0 → BADVERS.
 */
export function parseQuery(raw: Uint8Array): QueryParse {
  if (raw.length < 12) return DROP_SHORT;
  // Read with byte arithmetic, not a DataView: this runs for every query and should allocate
  // nothing but the name and the query object.
  const u16 = (at: number) => raw[at]! << 8 | raw[at + 1]!;
  const id = u16(0);
  const flags = u16(2);
  if (flags & Flags.QR) return DROP_RESPONSE;
  const qdcount = u16(4);
  const opcode = (flags >> 11) & 0xf;
  const name = qdcount >= 1 ? readUncompressedName(raw, 12) : null;
  const questionEnd = name ? name.end + 4 : -1;
  const hasQuestion = name !== null && questionEnd <= raw.length && qdcount === 1;
  const question = () => hasQuestion ? raw.subarray(12, questionEnd) : undefined;
  // Another opcode is NOTIMP whatever follows; its OPT is echoed when it has a readable one.
  const notImplemented = (e?: { do: boolean }) =>
    failure(id, flags, question(), Rcode.NOTIMP, opcode !== 0 ? e : undefined);
  if (opcode !== 0 && !hasQuestion) return notImplemented();
  if (!hasQuestion) return failure(id, flags, question(), Rcode.FORMERR);
  const qtype = u16(questionEnd - 4);
  const qclass = u16(questionEnd - 2);

  // Walk the rest to find the OPT record; anything unreadable is a format error.
  let off = questionEnd;
  const rest = u16(6) + u16(8);
  const arcount = u16(10);
  let edns: Query["edns"];
  for (let i = 0; i < rest + arcount; i++) {
    const nameEnd = skipName(raw, off);
    if (nameEnd < 0 || nameEnd + 10 > raw.length) {
      return opcode !== 0 ? notImplemented() : failure(id, flags, question(), Rcode.FORMERR);
    }
    const type = u16(nameEnd);
    const rdEnd = nameEnd + 10 + u16(nameEnd + 8);
    if (rdEnd > raw.length) {
      return opcode !== 0 ? notImplemented() : failure(id, flags, question(), Rcode.FORMERR);
    }
    if (type === Type.OPT) {
      if (i < rest || edns || nameEnd !== off + 1 || raw[off] !== 0) {
        return opcode !== 0 ? notImplemented() : failure(id, flags, question(), Rcode.FORMERR);
      }
      edns = {
        udpSize: Math.min(Math.max(512, u16(nameEnd + 2)), MAX_UDP_REPLY),
        version: raw[nameEnd + 5]!,
        do: (u16(nameEnd + 6) & 0x8000) !== 0,
      };
    }
    off = rdEnd;
  }
  if (opcode !== 0) return notImplemented(edns);
  const query: Query = {
    raw,
    id,
    flags,
    qname: name!.text,
    qtype,
    qclass,
    questionEnd,
    edns, // always present (maybe undefined): one object shape for every query
  };
  if (edns && edns.version > 0) {
    return { kind: "error", rcode: Rcode.BADVERS, reply: errorReply(query, Rcode.BADVERS) };
  }
  if (qclass !== 1) {
    return { kind: "error", rcode: Rcode.REFUSED, reply: errorReply(query, Rcode.REFUSED) };
  }
  if (qtype === Type.OPT) {
    return { kind: "error", rcode: Rcode.FORMERR, reply: errorReply(query, Rcode.FORMERR) };
  }
  if (qtype === Type.AXFR || qtype === Type.IXFR) {
    return { kind: "error", rcode: Rcode.REFUSED, reply: errorReply(query, Rcode.REFUSED) };
  }
  return { kind: "query", query };
}

const DROP_SHORT = Object.freeze({ kind: "drop", reason: "short header" } as const);
const DROP_RESPONSE = Object.freeze({ kind: "drop", reason: "response, not a query" } as const);

function failure(
  id: number,
  flags: number,
  question: Uint8Array | undefined,
  rcode: number,
  edns?: { do: boolean },
) {
  return { kind: "error" as const, rcode, reply: buildReply({ id, flags, question, rcode, edns }) };
}

/** Options of {@linkcode buildReply}. */
export interface ReplyOptions {
  readonly id: number;
  /** The query's flags: opcode, RD and CD are echoed. */
  readonly flags: number;
  /** The question bytes to echo, if any. */
  readonly question?: Uint8Array | undefined;
  /** Response code; 16 and above go into the OPT record's extended rcode. */
  readonly rcode: number;
  /** Append an OPT record (when the query had one). */
  readonly edns?: { readonly do: boolean } | undefined;
  /** Extra flag bits to set, e.g. AA. */
  readonly setFlags?: number;
  /** Records already in wire form, with their counts. */
  readonly records?: { readonly bytes: Uint8Array; readonly an: number; readonly ns: number };
}

/** Builds a reply carrying a response code and, optionally, records. */
export function buildReply(o: ReplyOptions): Uint8Array {
  const q = o.question?.length ?? 0;
  const r = o.records?.bytes.length ?? 0;
  const out = new Uint8Array(12 + q + r + (o.edns ? 11 : 0));
  const dv = view(out);
  dv.setUint16(0, o.id);
  const echoed = o.flags & (0x7800 | Flags.RD | Flags.CD);
  dv.setUint16(2, Flags.QR | Flags.RA | echoed | (o.setFlags ?? 0) | (o.rcode & 0xf));
  dv.setUint16(4, q ? 1 : 0);
  dv.setUint16(6, o.records?.an ?? 0);
  dv.setUint16(8, o.records?.ns ?? 0);
  if (o.question) out.set(o.question, 12);
  if (o.records) out.set(o.records.bytes, 12 + q);
  if (o.edns) {
    dv.setUint16(10, 1);
    writeOpt(out, 12 + q + r, o.edns.do, o.rcode >> 4);
  }
  return out;
}

/** A reply to `query` with only a response code (and OPT when the query had EDNS). */
export function errorReply(query: Query, rcode: number): Uint8Array {
  return buildReply({
    id: query.id,
    flags: query.flags,
    question: query.raw.subarray(12, query.questionEnd),
    rcode,
    edns: query.edns,
  });
}

/** Writes an 11-byte OPT record at `off`. */
export function writeOpt(out: Uint8Array, off: number, dnssecOk: boolean, extRcode = 0): void {
  out[off] = 0; // root owner name
  out[off + 1] = 0;
  out[off + 2] = Type.OPT;
  out[off + 3] = EDNS_UDP_SIZE >> 8;
  out[off + 4] = EDNS_UDP_SIZE & 0xff;
  out[off + 5] = extRcode;
  out[off + 6] = 0; // version
  out[off + 7] = dnssecOk ? 0x80 : 0;
  out[off + 8] = 0;
  out[off + 9] = 0; // rdlength
  out[off + 10] = 0;
}

/** Numbers of the record types a config may name (rules' `qtype`), built from {@linkcode Type}. */
export const TYPE_NUMBERS: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(QUERY_TYPES.map((name) => [name, Type[name]])),
);

/** `message` behind its two-byte length, as DNS over TCP carries it (RFC 1035 §4.2.2). */
export function tcpFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(2 + message.length);
  frame[0] = message.length >> 8;
  frame[1] = message.length & 0xff;
  frame.set(message, 2);
  return frame;
}
