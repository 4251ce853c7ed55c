/**
 * A hostile test upstream: one loopback address, UDP and TCP on the same port, and for each
 * query name a behaviour the test picks — answer with a wrong ID, a wrong question, from
 * another address or port, garbage, a message cut in the middle of a record, a compression
 * loop, records for other names (a poisoning attempt), a huge TTL, a 64 KB answer over TCP
 * after TC over UDP, or never. It logs every query it received and what it did with it.
 *
 * Every address a hostile answer carries starts with {@linkcode POISON} (203.0.113.0/24,
 * TEST-NET-3), so a test can tell at a glance whether anything of it reached a client.
 *
 * Messages are built byte by byte here ({@linkcode messageWire}), since the point is to send
 * what no DNS library would encode.
 *
 * @module
 */

import { mulberry32 } from "./prng.ts";

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

/** One query the server received, and what it did. */
export interface HostileEvent {
  readonly wire: "udp" | "tcp";
  /** Question name, lower case, no trailing dot. */
  readonly name: string;
  readonly qtype: number;
  /** Sender address. */
  readonly from: string;
  /** What was done, in words (`silent`, `sent wrong-id …`). */
  readonly action: string;
}

/** Options of {@linkcode startHostileUpstream}. */
export interface HostileUpstreamOptions {
  /** Loopback address for UDP and TCP. */
  readonly address: string;
  /** @default 53 */
  readonly port?: number;
  /** A second address whose same port the `other-address` answers come from. */
  readonly otherAddress?: string;
  /** What is done with names no {@linkcode HostileUpstream.on} call named. @default silent */
  readonly fallback?: HostileBehaviour;
  /** Seed of the garbage bytes. @default 8 */
  readonly seed?: number;
}

/** A running hostile upstream. */
export interface HostileUpstream {
  readonly address: string;
  readonly port: number;
  /** Sets the behaviour for queries of `name` (any type; case and trailing dot ignored). */
  on(name: string, behaviour: HostileBehaviour): void;
  /** Every query received, oldest first. */
  readonly events: readonly HostileEvent[];
  /** Queries received for `name`, over `wire` or both. */
  received(name: string, wire?: "udp" | "tcp"): HostileEvent[];
  /** Stops every socket. */
  close(): Promise<void>;
}

const enc = new TextEncoder();

/** A name in wire form, uncompressed. */
export function nameWire(name: string): number[] {
  const out: number[] = [];
  for (const label of name.replace(/\.$/, "").split(".").filter(Boolean)) {
    const bytes = enc.encode(label);
    out.push(bytes.length, ...bytes);
  }
  out.push(0);
  return out;
}

/** Rdata builders. */
export const rdata = {
  /** An IPv4 address. */
  a: (ip: string): number[] => ip.split(".").map(Number),
  /** A name, uncompressed. */
  name: (n: string): number[] => nameWire(n),
  /** TXT character-strings. */
  txt: (...strings: string[]): number[] =>
    strings.flatMap((s) => [enc.encode(s).length, ...enc.encode(s)]),
};

/** One record; `name` is a presentation name or owner bytes as they go on the wire. */
export interface RecordSpec {
  readonly name: string | readonly number[];
  readonly type: number;
  readonly ttl?: number;
  readonly class?: number;
  readonly rdata: readonly number[];
}

/** The wire form of one record (TTL 300 and class IN unless given). */
export function recordWire(r: RecordSpec): number[] {
  const owner = typeof r.name === "string" ? nameWire(r.name) : [...r.name];
  const ttl = r.ttl ?? 300;
  const cls = r.class ?? 1;
  return [
    ...owner,
    r.type >> 8,
    r.type & 0xff,
    cls >> 8,
    cls & 0xff,
    (ttl >>> 24) & 0xff,
    (ttl >>> 16) & 0xff,
    (ttl >>> 8) & 0xff,
    ttl & 0xff,
    r.rdata.length >> 8,
    r.rdata.length & 0xff,
    ...r.rdata,
  ];
}

/** A message to build. Records may be given as specs or as raw bytes. */
export interface MessageSpec {
  readonly id: number;
  /** The flags word. @default QR RD RA (0x8180) */
  readonly flags?: number;
  /** The question: bytes as they go on the wire (name, type, class). */
  readonly question: readonly number[];
  readonly answer?: readonly (RecordSpec | readonly number[])[];
  readonly authority?: readonly (RecordSpec | readonly number[])[];
  readonly additional?: readonly (RecordSpec | readonly number[])[];
}

/** The wire form of a message. */
export function messageWire(m: MessageSpec): Uint8Array {
  const bytes = (rs: MessageSpec["answer"] = []) =>
    rs.flatMap((r) => "type" in r ? recordWire(r as RecordSpec) : [...(r as number[])]);
  const an = m.answer ?? [], ns = m.authority ?? [], ar = m.additional ?? [];
  const flags = m.flags ?? 0x8180;
  const out = [
    m.id >> 8,
    m.id & 0xff,
    flags >> 8,
    flags & 0xff,
    0,
    1,
    an.length >> 8,
    an.length & 0xff,
    ns.length >> 8,
    ns.length & 0xff,
    ar.length >> 8,
    ar.length & 0xff,
    ...m.question,
    ...bytes(an),
    ...bytes(ns),
    ...bytes(ar),
  ];
  return new Uint8Array(out);
}

/** The question bytes of `name type class`. */
export function questionWire(name: string, type: number, cls = 1): number[] {
  return [...nameWire(name), type >> 8, type & 0xff, cls >> 8, cls & 0xff];
}

/** A query as the server read it. */
interface Incoming {
  readonly id: number;
  readonly flags: number;
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  /** The question bytes exactly as received (letter case kept). */
  readonly question: number[];
}

function readQuery(q: Uint8Array): Incoming | null {
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
const replyFlags = (q: Incoming, extra = 0) => 0x8080 | (q.flags & 0x0100) | extra;

/** The ordinary, correct answer: one A record for the name asked. */
function goodAnswer(q: Incoming, address = POISON_ANSWER, ttl = 300): Uint8Array {
  return messageWire({
    id: q.id,
    flags: replyFlags(q),
    question: q.question,
    answer: [{ name: [0xc0, 12], type: 1, ttl, rdata: rdata.a(address) }],
  });
}

/** Startup errors aside, never throws: a failed send is logged as such. */
export function startHostileUpstream(options: HostileUpstreamOptions): HostileUpstream {
  const { address } = options;
  const port = options.port ?? 53;
  const udp = Deno.listenDatagram({ hostname: address, port, transport: "udp" });
  const tcp = Deno.listen({ hostname: address, port, transport: "tcp" });
  const otherPort = Deno.listenDatagram({ hostname: address, port: 0, transport: "udp" });
  const otherAddress = options.otherAddress
    ? Deno.listenDatagram({ hostname: options.otherAddress, port, transport: "udp" })
    : undefined;
  const behaviours = new Map<string, HostileBehaviour>();
  const fallback = options.fallback ?? { kind: "silent" };
  const events: HostileEvent[] = [];
  const random = mulberry32(options.seed ?? 8);
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];

  const behaviourOf = (name: string) => behaviours.get(name) ?? fallback;

  /** What to send for `q` over `wire`: messages (each one datagram or one TCP frame). */
  const respond = (
    b: HostileBehaviour,
    q: Incoming,
    wire: "udp" | "tcp",
  ): { action: string; messages: Uint8Array[]; via?: Deno.DatagramConn; raw?: Uint8Array } => {
    switch (b.kind) {
      case "silent":
        return { action: "silent", messages: [] };
      case "answer":
        return {
          action: `answered ${b.address ?? POISON_ANSWER} ttl ${b.ttl ?? 300}`,
          messages: [goodAnswer(q, b.address, b.ttl)],
        };
      case "rcode":
        return {
          action: `rcode ${b.rcode}`,
          messages: [
            messageWire({ id: q.id, flags: replyFlags(q, b.rcode), question: q.question }),
          ],
        };
      case "wrong-id": {
        const m = goodAnswer({ ...q, id: (q.id + 1) & 0xffff });
        return { action: `wrong id ${(q.id + 1) & 0xffff} for ${q.id}`, messages: [m] };
      }
      case "wrong-question": {
        const other = b.change === "name"
          ? questionWire(`evil-${q.name}`, q.qtype, q.qclass)
          : b.change === "type"
          ? questionWire(q.name, q.qtype === 1 ? 28 : 1, q.qclass)
          : questionWire(q.name, q.qtype, 3); // CH
        return {
          action: `wrong question (${b.change})`,
          messages: [goodAnswer({ ...q, question: other })],
        };
      }
      case "other-port":
      case "other-address": {
        if (wire === "tcp") return { action: `${b.kind}: silent over tcp`, messages: [] };
        const via = b.kind === "other-port" ? otherPort : otherAddress;
        if (!via) throw new Error("other-address needs options.otherAddress");
        const from = via.addr as Deno.NetAddr;
        return {
          action: `answered from ${from.hostname}:${from.port}`,
          messages: [goodAnswer(q)],
          via,
        };
      }
      case "garbage": {
        const m = new Uint8Array(b.bytes ?? 200);
        for (let i = 0; i < m.length; i++) m[i] = Math.floor(random() * 256);
        m[0] = q.id >> 8;
        m[1] = q.id & 0xff;
        m[2]! |= 0x80;
        return { action: `garbage ${m.length} bytes`, messages: [m] };
      }
      case "truncated": {
        const cut = truncatedAnswer(q);
        return { action: `truncated to ${cut.length} bytes`, messages: [cut] };
      }
      case "compression-loop":
        return { action: `compression loop (${b.loop})`, messages: [loopAnswer(q, b.loop)] };
      case "poison":
        return { action: "poison", messages: [poisonAnswer(q, b)] };
      case "big":
      case "tc": {
        if (wire === "udp") {
          const m = messageWire({ id: q.id, flags: replyFlags(q, 0x0200), question: q.question });
          return { action: "tc", messages: [m] };
        }
        if (b.kind === "tc") return respond(b.tcp, q, wire);
        const m = bigAnswer(q, b.size ?? 65_000);
        return { action: `big ${m.length} bytes`, messages: [m] };
      }
      case "short-frame": {
        if (wire === "udp") return { action: "short-frame: silent over udp", messages: [] };
        const raw = new Uint8Array(102);
        raw[0] = 0xff;
        raw[1] = 0xff;
        raw.set(goodAnswer(q).subarray(0, 100), 2);
        return { action: "short frame (65535 promised, 100 sent)", messages: [], raw };
      }
    }
  };

  const udpLoop = (async () => {
    try {
      for (;;) {
        const [data, from] = await udp.receive();
        const q = readQuery(data);
        if (!q) continue;
        const f = from as Deno.NetAddr;
        const r = respond(behaviourOf(q.name), q, "udp");
        events.push({
          wire: "udp",
          name: q.name,
          qtype: q.qtype,
          from: f.hostname,
          action: r.action,
        });
        for (const m of r.messages) {
          await (r.via ?? udp).send(m, from).catch(() => {});
        }
      }
    } catch { /* closed */ }
  })();

  const serveConn = async (conn: Deno.Conn) => {
    const peer = (conn.remoteAddr as Deno.NetAddr).hostname;
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(65_537);
    try {
      for (;;) {
        const n = await conn.read(chunk);
        if (n === null) break;
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        while (buf.length >= 2) {
          const len = (buf[0]! << 8) | buf[1]!;
          if (buf.length < 2 + len) break;
          const q = readQuery(buf.subarray(2, 2 + len));
          buf = buf.slice(2 + len);
          if (!q) continue;
          const r = respond(behaviourOf(q.name), q, "tcp");
          events.push({ wire: "tcp", name: q.name, qtype: q.qtype, from: peer, action: r.action });
          for (const m of r.messages) {
            const frame = new Uint8Array(2 + m.length);
            frame[0] = m.length >> 8;
            frame[1] = m.length & 0xff;
            frame.set(m, 2);
            await writeAll(conn, frame);
          }
          if (r.raw) await writeAll(conn, r.raw);
        }
      }
    } catch { /* reset or closed */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const tcpLoop = (async () => {
    try {
      for await (const conn of tcp) {
        conns.add(conn);
        tasks.push(serveConn(conn));
      }
    } catch { /* closed */ }
  })();

  return {
    address,
    port,
    on(name, behaviour) {
      behaviours.set(name.toLowerCase().replace(/\.$/, ""), behaviour);
    },
    events,
    received(name, wire) {
      const n = name.toLowerCase().replace(/\.$/, "");
      return events.filter((e) => e.name === n && (wire === undefined || e.wire === wire));
    },
    async close() {
      for (const s of [udp, otherPort, otherAddress]) {
        try {
          s?.close();
        } catch { /* closed */ }
      }
      try {
        tcp.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.all([udpLoop, tcpLoop]);
      await Promise.all(tasks);
    },
  };
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

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/**
 * The poisoning attempt: the answer to the question (CNAME chain or A record) and, for each
 * unrelated name, an A record in the answer (`.66`), authority (`.68`) and additional (`.67`)
 * sections.
 */
function poisonAnswer(
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
function truncatedAnswer(q: Incoming): Uint8Array {
  const full = poisonAnswer(q, { unrelated: ["x.invalid"] });
  const firstEnd = 12 + q.question.length + 16; // header, question, `c00c A` record
  return full.slice(0, firstEnd + 9);
}

/** An answer whose names loop (see {@linkcode HostileBehaviour}). */
function loopAnswer(q: Incoming, loop: "self" | "label" | "forward" | "rdata"): Uint8Array {
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
function bigAnswer(q: Incoming, size: number): Uint8Array {
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
