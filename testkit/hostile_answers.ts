/**
 * What the hostile test upstream (hostile_upstream.ts) can do with a query
 * ({@linkcode HostileBehaviour}), and the crafted answers it sends: every address a hostile
 * answer carries starts with {@linkcode POISON} (203.0.113.0/24, TEST-NET-3), so a test can tell
 * at a glance whether anything of it reached a client. {@linkcode hostileAnswer} gives the one
 * message a behaviour sends, for unit tests of what reads upstream answers.
 *
 * @module
 */

import { messageWire, rdata, type RecordSpec } from "./message_wire.ts";

/** The prefix of every address a hostile answer carries. */
export const POISON = "203.0.113.";

/** The main address of a hostile answer (the record for the name asked). */
export const POISON_ANSWER = `${POISON}1`;

/** What the server does with a query. */
export type HostileBehaviour =
  /** Never answers. */
  | { readonly kind: "silent" }
  /** A correct answer: one A record (`address`, default {@linkcode POISON_ANSWER}), `ttl`. */
  | { readonly kind: "answer"; readonly address?: string; readonly ttl?: number }
  /** A reply with this rcode and no records. */
  | { readonly kind: "rcode"; readonly rcode: number }
  /** A correct answer under another ID. */
  | { readonly kind: "wrong-id" }
  /** A correct answer to another question: another name, type or class. */
  | { readonly kind: "wrong-question"; readonly change: "name" | "type" | "class" }
  /** A correct answer, sent from another port of the same address (UDP only). */
  | { readonly kind: "other-port" }
  /** A correct answer, sent from the same port of another address (UDP only). */
  | { readonly kind: "other-address" }
  /** The query's ID and the QR bit, then random bytes. */
  | { readonly kind: "garbage"; readonly bytes?: number }
  /** A correct answer cut in the middle of its second record, TC not set. */
  | { readonly kind: "truncated" }
  /**
   * A compression loop: an owner name pointing at itself (`self`), a label followed by a pointer
   * back to the start of its own name (`label`), a pointer forward to a name that points back
   * (`forward`), or a CNAME whose target points at itself (`rdata`).
   */
  | { readonly kind: "compression-loop"; readonly loop: "self" | "label" | "forward" | "rdata" }
  /**
   * A poisoning attempt: the answer to the question (a CNAME to `cname` with an A record for
   * it when `cname` is given, else an A record) plus A records for each `unrelated` name in the
   * answer, authority and additional sections.
   */
  | { readonly kind: "poison"; readonly cname?: string; readonly unrelated: readonly string[] }
  /** TC over UDP (header and question only); over TCP an answer of `size` bytes (65,000) of TXT. */
  | { readonly kind: "big"; readonly size?: number }
  /** TC over UDP; over TCP, `tcp`. */
  | { readonly kind: "tc"; readonly tcp: HostileBehaviour }
  /** TCP: a length prefix promising 65,535 bytes, then 100 bytes, then nothing. */
  | { readonly kind: "short-frame" };

/** A query as the server read it. */
export interface Incoming {
  readonly id: number;
  readonly flags: number;
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  /** The question bytes exactly as received (letter case kept). */
  readonly question: number[];
}

/** The ID, flags and question of a query; null when they cannot be read. */
export function readQuery(q: Uint8Array): Incoming | null {
  if (q.length < 17) return null;
  const labels: string[] = [];
  let off = 12;
  for (;;) {
    const len = q[off];
    if (len === undefined || len > 63) return null;
    if (len === 0) break;
    labels.push(String.fromCharCode(...q.subarray(off + 1, off + 1 + len)).toLowerCase());
    off += len + 1;
  }
  const end = off + 5;
  if (end > q.length) return null;
  const dv = new DataView(q.buffer, q.byteOffset, q.byteLength);
  return {
    id: dv.getUint16(0),
    flags: dv.getUint16(2),
    name: labels.join("."),
    qtype: dv.getUint16(end - 4),
    qclass: dv.getUint16(end - 2),
    question: [...q.subarray(12, end)],
  };
}

/** Flags of a reply to `q`: QR, RA, the query's RD, and `extra`. */
export function replyFlags(q: Incoming, extra = 0): number {
  return 0x8080 | (q.flags & 0x0100) | extra;
}

/** The ordinary, correct answer: one A record for the name asked. */
export function goodAnswer(q: Incoming, address = POISON_ANSWER, ttl = 300): Uint8Array {
  return messageWire({
    id: q.id,
    flags: replyFlags(q),
    question: q.question,
    answer: [{ name: [0xc0, 12], type: 1, ttl, rdata: rdata.a(address) }],
  });
}

/**
 * The message a behaviour that answers in one message sends for `query` (over TCP for `big`):
 * for unit tests of what reads upstream answers.
 */
export function hostileAnswer(
  query: Uint8Array,
  behaviour: Extract<
    HostileBehaviour,
    { kind: "answer" | "truncated" | "compression-loop" | "poison" | "big" }
  >,
): Uint8Array {
  const q = readQuery(query);
  if (!q) throw new Error("hostileAnswer: the query cannot be read");
  switch (behaviour.kind) {
    case "answer":
      return goodAnswer(q, behaviour.address, behaviour.ttl);
    case "truncated":
      return truncatedAnswer(q);
    case "compression-loop":
      return loopAnswer(q, behaviour.loop);
    case "poison":
      return poisonAnswer(q, behaviour);
    case "big":
      return bigAnswer(q, behaviour.size ?? 65_000);
  }
}

/**
 * The poisoning attempt: the answer to the question (CNAME chain or A record) and, for each
 * unrelated name, an A record in the answer (`.66`), authority (`.68`) and additional (`.67`)
 * sections.
 */
export function poisonAnswer(
  q: Incoming,
  b: { readonly cname?: string; readonly unrelated: readonly string[] },
): Uint8Array {
  const answer: RecordSpec[] = b.cname
    ? [
      { name: [0xc0, 12], type: 5, rdata: rdata.name(b.cname) },
      { name: b.cname, type: 1, rdata: rdata.a(`${POISON}2`) },
    ]
    : [{ name: [0xc0, 12], type: 1, rdata: rdata.a(POISON_ANSWER) }];
  const at = (n: string, last: number) => ({
    name: n,
    type: 1,
    rdata: rdata.a(`${POISON}${last}`),
  });
  return messageWire({
    id: q.id,
    flags: replyFlags(q),
    question: q.question,
    answer: [...answer, ...b.unrelated.map((n) => at(n, 66))],
    authority: b.unrelated.map((n) => at(n, 68)),
    additional: b.unrelated.map((n) => at(n, 67)),
  });
}

/** A correct answer cut in the middle of its second record (inside the owner name). */
export function truncatedAnswer(q: Incoming): Uint8Array {
  const full = poisonAnswer(q, { unrelated: ["x.invalid"] });
  const firstEnd = 12 + q.question.length + 16; // header, question, `c00c A` record
  return full.slice(0, firstEnd + 9);
}

/** An answer whose names loop (see {@linkcode HostileBehaviour}). */
export function loopAnswer(q: Incoming, loop: "self" | "label" | "forward" | "rdata"): Uint8Array {
  const first = 12 + q.question.length; // offset of the first record
  const a = rdata.a(POISON_ANSWER);
  const hi = (off: number) => 0xc0 | (off >> 8), lo = (off: number) => off & 0xff;
  let answer: (RecordSpec | number[])[];
  switch (loop) {
    case "self":
      answer = [{ name: [hi(first), lo(first)], type: 1, rdata: a }];
      break;
    case "label": // "x" then back to its own start: x.x.x.x… for ever
      answer = [{ name: [1, 0x78, hi(first), lo(first)], type: 1, rdata: a }];
      break;
    case "forward": {
      // The first owner points at the second one, which points back at the first.
      const second = first + 2 + 10 + 4;
      answer = [
        { name: [hi(second), lo(second)], type: 1, rdata: a },
        { name: [hi(first), lo(first)], type: 1, rdata: a },
      ];
      break;
    }
    case "rdata": {
      // A CNAME whose target is a pointer to itself (rdata starts 12 bytes into the record).
      const target = first + 2 + 10;
      answer = [{ name: [0xc0, 12], type: 5, rdata: [hi(target), lo(target)] }];
      break;
    }
  }
  return messageWire({ id: q.id, flags: replyFlags(q), question: q.question, answer });
}

/** An answer of exactly `size` bytes: TXT records of one 255-byte string each, then the rest. */
export function bigAnswer(q: Incoming, size: number): Uint8Array {
  const head = 12 + q.question.length;
  const perRecord = 2 + 10 + 256;
  const records: RecordSpec[] = [];
  let left = size - head;
  for (let i = 0; left - perRecord >= 13; i++, left -= perRecord) {
    records.push({ name: [0xc0, 12], type: 16, rdata: rdata.txt(`big-${i}-`.padEnd(255, "x")) });
  }
  // The last record takes what is left (13 to 280 bytes): 12 of owner and fixed fields, then
  // one or two strings.
  const rdLength = left - 12;
  const last = rdLength <= 256
    ? rdata.txt("z".repeat(rdLength - 1))
    : rdata.txt("z".repeat(255), "z".repeat(rdLength - 257));
  records.push({ name: [0xc0, 12], type: 16, rdata: last });
  return messageWire({ id: q.id, flags: replyFlags(q), question: q.question, answer: records });
}
