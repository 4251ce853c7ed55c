/**
 * The fuzz harness's judge: a strict DNS message parser (RFC 1035 / RFC 6891; stricter than most
 * resolvers) and the checks every reply to a hostile input must pass.
 *
 * Strict means: every count is honoured and the records end exactly at the end of the message;
 * labels are at most 63 bytes and names at most 255; label types 0x40 and 0x80 are refused; a
 * compression pointer must point before the segment that holds it (so it cannot loop); A, AAAA,
 * NS, CNAME, PTR, MX, SOA, TXT and OPT data must fill their RDLENGTH exactly; OPT sits only in the
 * additional section, once, owned by the root.
 *
 * @module
 */

/** Response codes a reply may carry (BADVERS is extended, RFC 6891). */
export const ALLOWED_RCODES: ReadonlyMap<number, string> = new Map([
  [0, "NOERROR"],
  [1, "FORMERR"],
  [2, "SERVFAIL"],
  [3, "NXDOMAIN"],
  [4, "NOTIMP"],
  [5, "REFUSED"],
  [16, "BADVERS"],
]);

/** A message that passed {@linkcode parseStrict}. */
export interface StrictMessage {
  readonly id: number;
  readonly flags: number;
  readonly opcode: number;
  /** The full response code: the header's 4 bits plus OPT's extended bits. */
  readonly rcode: number;
  readonly qdcount: number;
  /** Bytes of the question section when it holds exactly one question. */
  readonly question?: Uint8Array;
  /** Answer-section records: type and data. */
  readonly answers: readonly { readonly type: number; readonly rdata: Uint8Array }[];
  /** The OPT record, when present. */
  readonly opt?: { readonly udpSize: number; readonly version: number };
}

/** Why a message is not well formed. */
export class MalformedError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "MalformedError";
  }
}

function u16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

/** Reads a (possibly compressed) name at `off` strictly; returns the offset just past it. */
export function readNameStrict(b: Uint8Array, off: number): number {
  let pos = off;
  let segmentStart = off; // a pointer must go before this: no loops, no forward pointers
  let end = -1;
  let wire = 1;
  for (;;) {
    if (pos >= b.length) throw new MalformedError(`name at ${off} runs past the end`);
    const len = b[pos]!;
    if (len === 0) return end < 0 ? pos + 1 : end;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= b.length) throw new MalformedError(`pointer at ${pos} cut`);
      const target = ((len & 0x3f) << 8) | b[pos + 1]!;
      if (target >= segmentStart) {
        throw new MalformedError(`pointer at ${pos} to ${target} is not backward`);
      }
      if (end < 0) end = pos + 2;
      pos = segmentStart = target;
      continue;
    }
    if (kind !== 0) throw new MalformedError(`label type 0x${len.toString(16)} at ${pos}`);
    wire += len + 1;
    if (wire > 255) throw new MalformedError(`name at ${off} over 255 bytes`);
    pos += len + 1;
  }
}

function checkRdata(b: Uint8Array, type: number, start: number, end: number): void {
  const need = (n: number) => {
    if (n !== end) throw new MalformedError(`type ${type} data at ${start} is not its RDLENGTH`);
  };
  switch (type) {
    case 1:
      return need(start + 4);
    case 28:
      return need(start + 16);
    case 2:
    case 5:
    case 12:
      return need(readNameStrict(b.subarray(0, end), start));
    case 15:
      return need(readNameStrict(b.subarray(0, end), start + 2));
    case 6: {
      const mname = readNameStrict(b.subarray(0, end), start);
      return need(readNameStrict(b.subarray(0, end), mname) + 20);
    }
    case 16: {
      if (start === end) throw new MalformedError(`empty TXT at ${start}`);
      let p = start;
      while (p < end) p += 1 + b[p]!;
      return need(p);
    }
    case 41: {
      let p = start;
      while (p + 4 <= end) p += 4 + u16(b, p + 2);
      return need(p);
    }
  }
}

/**
 * Parses a whole DNS message strictly.
 *
 * @throws {MalformedError} naming the first thing wrong
 */
export function parseStrict(b: Uint8Array): StrictMessage {
  if (b.length < 12) throw new MalformedError(`${b.length} bytes: shorter than a header`);
  const flags = u16(b, 2);
  const qdcount = u16(b, 4), an = u16(b, 6), ns = u16(b, 8), ar = u16(b, 10);
  let off = 12;
  for (let i = 0; i < qdcount; i++) {
    off = readNameStrict(b, off) + 4;
    if (off > b.length) throw new MalformedError(`question ${i} cut`);
  }
  const question = qdcount === 1 ? b.subarray(12, off) : undefined;
  const answers: { type: number; rdata: Uint8Array }[] = [];
  let opt: StrictMessage["opt"];
  let extRcode = 0;
  for (let i = 0; i < an + ns + ar; i++) {
    const start = off;
    const nameEnd = readNameStrict(b, off);
    if (nameEnd + 10 > b.length) throw new MalformedError(`record ${i} header cut`);
    const type = u16(b, nameEnd);
    const rdStart = nameEnd + 10;
    off = rdStart + u16(b, nameEnd + 8);
    if (off > b.length) throw new MalformedError(`record ${i} data runs past the end`);
    checkRdata(b, type, rdStart, off);
    if (type === 41) {
      if (i < an + ns) throw new MalformedError(`OPT outside the additional section`);
      if (opt) throw new MalformedError(`two OPT records`);
      if (nameEnd !== start + 1) throw new MalformedError(`OPT owner is not the root`);
      opt = { udpSize: u16(b, nameEnd + 2), version: b[nameEnd + 5]! };
      extRcode = b[nameEnd + 4]!;
    } else if (i < an) {
      answers.push({ type, rdata: b.subarray(rdStart, off) });
    }
  }
  if (off !== b.length) throw new MalformedError(`${b.length - off} bytes after the last record`);
  return {
    id: u16(b, 0),
    flags,
    opcode: (flags >> 11) & 0xf,
    rcode: (extRcode << 4) | (flags & 0xf),
    qdcount,
    ...(question ? { question } : {}),
    answers,
    ...(opt ? { opt } : {}),
  };
}

/** What can be read from a hostile input, leniently, to know what its reply must look like. */
export interface InputFacts {
  /** The ID, when the input had 2 bytes of it. */
  readonly id?: number;
  /** The opcode, when the flags were there. */
  readonly opcode?: number;
  /** The question bytes, when there is exactly one question with a plain readable name. */
  readonly question?: Uint8Array;
  /** Every record after the question could be walked. */
  readonly walked: boolean;
  /** Some record of the input is an OPT. */
  readonly hasOpt: boolean;
  /** The UDP payload size of the input's one OPT record (in the additional section). */
  readonly udpSize?: number;
}

/** Reads what the checks need from an input, never throwing. */
export function inputFacts(b: Uint8Array): InputFacts {
  const id = b.length >= 2 ? u16(b, 0) : undefined;
  const opcode = b.length >= 4 ? (u16(b, 2) >> 11) & 0xf : undefined;
  const base = { ...(id === undefined ? {} : { id }), ...(opcode === undefined ? {} : { opcode }) };
  if (b.length < 12 || u16(b, 4) !== 1) return { ...base, walked: false, hasOpt: false };
  let off = 12, wire = 1;
  while (off < b.length && b[off]! !== 0 && b[off]! <= 63 && wire <= 255) {
    wire += b[off]! + 1;
    off += b[off]! + 1;
  }
  if (off >= b.length || b[off] !== 0 || wire > 255 || off + 5 > b.length) {
    return { ...base, walked: false, hasOpt: false };
  }
  const question = b.subarray(12, off + 5);
  off += 5;
  const rest = u16(b, 6) + u16(b, 8), ar = u16(b, 10);
  let hasOpt = false, opts = 0, udpSize: number | undefined;
  for (let i = 0; i < rest + ar; i++) {
    let p = off;
    while (p < b.length && b[p]! !== 0 && (b[p]! & 0xc0) !== 0xc0) p += b[p]! + 1;
    if (p >= b.length) return { ...base, question, walked: false, hasOpt };
    const nameEnd = b[p] === 0 ? p + 1 : p + 2;
    if (nameEnd + 10 > b.length) return { ...base, question, walked: false, hasOpt };
    if (u16(b, nameEnd) === 41) {
      hasOpt = true;
      opts++;
      if (i >= rest && nameEnd === off + 1) udpSize = u16(b, nameEnd + 2);
    }
    off = nameEnd + 10 + u16(b, nameEnd + 8);
    if (off > b.length) return { ...base, question, walked: false, hasOpt };
  }
  return {
    ...base,
    question,
    walked: true,
    hasOpt,
    ...(opts === 1 && udpSize !== undefined ? { udpSize } : {}),
  };
}

/**
 * Checks one reply to one input; returns what is wrong with it, or undefined when it is fine.
 *
 * A reply must be well formed (strictly), a response (QR), with the input's ID and opcode, an
 * allowed rcode, the input's question echoed when it was readable, no OPT when the input had
 * none, at most 512 bytes over UDP unless the input's OPT allowed more, and no TC over TCP.
 */
export function checkReply(
  input: Uint8Array,
  reply: Uint8Array,
  transport: "udp" | "tcp",
): string | undefined {
  let m: StrictMessage;
  try {
    m = parseStrict(reply);
  } catch (e) {
    return `malformed reply: ${(e as Error).message}`;
  }
  const f = inputFacts(input);
  if (!(m.flags & 0x8000)) return "QR not set";
  if (f.id !== undefined && m.id !== f.id) return `ID ${m.id}, the query's is ${f.id}`;
  if (f.opcode !== undefined && m.opcode !== f.opcode) {
    return `opcode ${m.opcode}, the query's is ${f.opcode}`;
  }
  if (!ALLOWED_RCODES.has(m.rcode)) return `rcode ${m.rcode}`;
  if (f.question) {
    if (!m.question) return `question not echoed (QDCOUNT ${m.qdcount})`;
    if (!sameBytes(m.question, f.question)) return "question echoed differently";
  }
  if (m.opt && f.walked && !f.hasOpt) return "OPT in the reply to a query without one";
  if (transport === "udp") {
    const limit = Math.max(512, f.udpSize ?? 512);
    if (reply.length > limit) return `${reply.length} bytes over UDP, limit ${limit}`;
  } else if (m.flags & 0x0200) {
    return "TC set over TCP";
  }
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Hex of the first `max` bytes, for failure reports. */
export function hex(b: Uint8Array, max = 600): string {
  const s = Array.from(b.subarray(0, max), (x) => x.toString(16).padStart(2, "0")).join("");
  return b.length > max ? `${s}…(${b.length} bytes)` : s;
}
