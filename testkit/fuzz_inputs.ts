/**
 * Hostile DNS inputs for fuzzing the listeners: a corpus of valid queries (many types, names of
 * every length, EDNS with and without options, the DO bit) and mutators that break them the ways
 * attackers and broken clients do — bit flips, truncation at every field boundary, lying counts,
 * compression pointers that loop or point forward or out of bounds, label types 0x40-0xBF, names
 * over 255 bytes, huge or lying OPT records, many questions, responses and odd opcodes, garbage —
 * and TCP streams whose length prefixes lie, that are cut, pipelined or written byte by byte.
 *
 * Everything comes from one seeded {@linkcode mulberry32}: the same seed gives the same inputs, so
 * a failure can be replayed. The message ID is left to the caller (it stamps its own to match
 * replies).
 *
 * @module
 */

import { mulberry32 } from "./prng.ts";

/** Names the fuzz bed answers (see fuzz_driver.ts): a local-answer rule and dnsmasq records. */
export const FUZZ_NAMES = {
  /** Answered by a pvdns `answer` rule with {@linkcode FUZZ_NAMES.localA}. */
  local: "local.fuzz.test",
  localA: "192.0.2.53",
  /** Answered by dnsmasq with {@linkcode FUZZ_NAMES.upstreamA}. */
  upstream: "www.fuzz.test",
  upstreamA: "10.9.0.1",
  /** A TXT record over 3 KB at dnsmasq: truncated over UDP. */
  bigTxt: "big.fuzz.test",
  /** Rules: a local CNAME to the upstream name, an NXDOMAIN, a refusal. */
  alias: "alias.fuzz.test",
  blocked: "blocked.fuzz.test",
  refused: "refused.fuzz.test",
} as const;

/** One valid query of the corpus, with the offsets of its field boundaries. */
export interface CorpusEntry {
  readonly bytes: Uint8Array;
  /** Offsets where a field starts or ends (header words, labels, name end, OPT fields, options). */
  readonly boundaries: readonly number[];
  /** Offset just past the question name. */
  readonly nameEnd: number;
  /** Offset of the OPT record, or -1. */
  readonly optAt: number;
}

/** One UDP input: the bytes and the mutators that made it (for the counters and replays). */
export interface FuzzDatagram {
  readonly bytes: Uint8Array;
  readonly mutator: string;
}

/** One TCP connection's worth of input. */
export interface TcpCase {
  readonly kind: string;
  /** DNS messages, in order; the caller stamps IDs into them before {@linkcode tcpStream}. */
  readonly messages: Uint8Array[];
  /** Length prefix to write per message (a lie when it differs from the length). */
  readonly prefixes: readonly number[];
  /** Cut the stream after this many bytes and close the connection (closed mid-message). */
  readonly cutAt?: number;
  /** How the stream is written: whole, one write per frame, random chunks, byte by byte. */
  readonly writes: "one" | "per-message" | "chunks" | "bytewise";
  /** Pause between writes, ms. */
  readonly delayMs: number;
}

/** The bytes of a TCP case: each message after its (possibly lying) 2-byte prefix. */
export function tcpStream(c: TcpCase): Uint8Array {
  const parts: number[] = [];
  c.messages.forEach((m, i) => parts.push(c.prefixes[i]! >> 8, c.prefixes[i]! & 0xff, ...m));
  const all = new Uint8Array(parts);
  return c.cutAt === undefined ? all : all.subarray(0, Math.min(c.cutAt, all.length));
}

const enc = new TextEncoder();
/** Largest input made (the most a UDP datagram can carry is 65,507 bytes). */
const MAX_DATAGRAM = 16_384;
const TYPES = [1, 28, 16, 15, 33, 12, 65, 64, 255, 5, 2, 6, 257, 43, 48, 0, 65535, 252, 251, 41];
const INTERESTING = [0, 1, 0x3f, 0x40, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xfe, 0xff];

interface QuerySpec {
  labels: Uint8Array[];
  qtype: number;
  qclass: number;
  flags: number;
  edns?: { udpSize: number; version: number; do: boolean; options: Uint8Array[] };
}

/** Encodes a query and records its field boundaries. */
function encode(spec: QuerySpec): CorpusEntry {
  const b: number[] = [];
  const marks = [0, 2, 4, 6, 8, 10, 12];
  const u16 = (v: number) => b.push((v >> 8) & 0xff, v & 0xff);
  u16(0);
  u16(spec.flags);
  u16(1);
  u16(0);
  u16(0);
  u16(spec.edns ? 1 : 0);
  for (const l of spec.labels) {
    marks.push(b.length, b.length + 1);
    b.push(l.length, ...l);
  }
  b.push(0);
  const nameEnd = b.length;
  marks.push(nameEnd, nameEnd + 2, nameEnd + 4);
  u16(spec.qtype);
  u16(spec.qclass);
  let optAt = -1;
  if (spec.edns) {
    optAt = b.length;
    const rdlen = spec.edns.options.reduce((n, o) => n + o.length, 0);
    b.push(0);
    u16(41);
    u16(spec.edns.udpSize);
    b.push(0, spec.edns.version);
    u16(spec.edns.do ? 0x8000 : 0);
    u16(rdlen);
    marks.push(optAt + 1, optAt + 3, optAt + 5, optAt + 7, optAt + 9, optAt + 11);
    for (const o of spec.edns.options) {
      marks.push(b.length, b.length + 2, b.length + 4);
      b.push(...o);
    }
  }
  marks.push(b.length);
  return { bytes: new Uint8Array(b), boundaries: [...new Set(marks)], nameEnd, optAt };
}

function option(code: number, data: Uint8Array | number[]): Uint8Array {
  const d = data instanceof Uint8Array ? data : new Uint8Array(data);
  return new Uint8Array([code >> 8, code & 0xff, d.length >> 8, d.length & 0xff, ...d]);
}

/** A seeded source of hostile inputs. */
export class FuzzInputs {
  readonly #rand: () => number;
  /** The valid queries everything is made from. */
  readonly corpus: readonly CorpusEntry[];

  /** Creates the generator; the corpus depends on `seed` too. */
  constructor(seed: number) {
    this.#rand = mulberry32(seed);
    const corpus: CorpusEntry[] = [];
    for (let i = 0; i < 400; i++) corpus.push(encode(this.#spec(i)));
    this.corpus = corpus;
  }

  #int(n: number): number {
    return Math.floor(this.#rand() * n);
  }
  #pick<T>(xs: readonly T[]): T {
    return xs[this.#int(xs.length)]!;
  }
  #bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#int(256);
    return out;
  }
  #label(len: number, odd: boolean): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      out[i] = odd && this.#rand() < 0.2 ? this.#int(256) : 0x61 + this.#int(26);
    }
    return out;
  }

  /** Labels of a name whose wire form is about `total` bytes (at most 255). */
  #longName(total: number, suffix: string[]): Uint8Array[] {
    const tail = suffix.map((s) => enc.encode(s));
    let used = 1 + tail.reduce((n, l) => n + l.length + 1, 0);
    const head: Uint8Array[] = [];
    while (used < total) {
      const len = Math.min(1 + this.#int(63), total - used - 1);
      if (len < 1) break;
      head.push(this.#label(len, this.#rand() < 0.3));
      used += len + 1;
    }
    return [...head, ...tail];
  }

  #spec(i: number): QuerySpec {
    const fixed = [
      FUZZ_NAMES.local,
      FUZZ_NAMES.upstream,
      FUZZ_NAMES.bigTxt,
      FUZZ_NAMES.alias,
      FUZZ_NAMES.blocked,
      FUZZ_NAMES.refused,
      "WwW.FuZz.TeSt",
      "1.0.9.10.in-addr.arpa",
      "999.0.9.10.in-addr.arpa",
      "1.2.3.4.5.in-addr.arpa",
      `${"1.0.".repeat(14)}9.0.d.f.ip6.arpa`,
      "g.9.0.d.f.ip6.arpa",
      "x.home.arpa",
      "localhost",
      "a.localhost",
      "x.invalid",
      "printer.local",
      "1.0.0.127.in-addr.arpa",
      "resolver.arpa",
      "h.home.arpa",
      "x.onion",
    ];
    let labels: Uint8Array[];
    const r = this.#rand();
    const named = i < fixed.length || r < 0.15;
    if (named) labels = fixed[i % fixed.length]!.split(".").map((l) => enc.encode(l));
    else if (r < 0.05) labels = []; // the root
    else if (r < 0.4) labels = [this.#label(1 + this.#int(20), false), enc.encode("fuzz")];
    else if (r < 0.5) labels = [...Array(127)].map(() => enc.encode("a")); // 255 bytes
    else labels = this.#longName(3 + this.#int(253), this.#rand() < 0.5 ? ["fuzz", "test"] : []);
    const flags = (this.#rand() < 0.9 ? 0x0100 : 0) | (this.#rand() < 0.1 ? 0x0010 : 0) |
      (this.#rand() < 0.1 ? 0x0020 : 0);
    const qtype = i < 3 ? [1, 1, 16][i]! : this.#pick(TYPES.slice(0, this.#rand() < 0.8 ? 9 : 20));
    const qclass = this.#rand() < 0.95 ? 1 : this.#pick([3, 4, 254, 255, 0]);
    if (this.#rand() < 0.35) return { labels, qtype, qclass, flags };
    const options: Uint8Array[] = [];
    const nOpts = this.#rand() < 0.5 ? 0 : 1 + this.#int(3);
    for (let k = 0; k < nOpts; k++) {
      options.push(
        this.#pick([
          () => option(10, this.#bytes(8)), // client cookie
          () => option(8, [0, 1, 24, 0, 192, 0, 2]), // client subnet
          () => option(12, new Uint8Array(this.#int(64))), // padding
          () => option(3, []), // NSID
          () => option(0xfde9, this.#bytes(this.#int(20))), // unassigned
        ])(),
      );
    }
    return {
      labels,
      qtype,
      qclass,
      flags,
      edns: {
        udpSize: this.#pick([0, 512, 1232, 1232, 4096, 65535, 100]),
        version: this.#rand() < 0.95 ? 0 : 1 + this.#int(255),
        do: this.#rand() < 0.4,
        options,
      },
    };
  }

  /** One fresh valid query of the corpus (a copy). */
  valid(): CorpusEntry {
    const e = this.#pick(this.corpus);
    return { ...e, bytes: e.bytes.slice() };
  }

  /** The next UDP input: mostly one mutation of a corpus query, sometimes several or none. */
  next(): FuzzDatagram {
    const e = this.valid();
    const r = this.#rand();
    if (r < 0.06) return { bytes: e.bytes, mutator: "valid" };
    const rounds = r < 0.8 ? 1 : 2 + this.#int(3);
    let bytes = e.bytes;
    const names: string[] = [];
    for (let k = 0; k < rounds; k++) {
      const [name, mutate] = this.#pick(this.#mutators);
      bytes = mutate(k === 0 ? e : { ...e, bytes });
      names.push(name);
    }
    // Stacked growth (many questions of a long name, oversize) stays a sendable datagram.
    if (bytes.length > MAX_DATAGRAM) bytes = bytes.slice(0, MAX_DATAGRAM);
    return { bytes, mutator: names.join("+") };
  }

  readonly #mutators: readonly [string, (e: CorpusEntry) => Uint8Array][] = [
    ["bitflip", (e) => {
      const b = e.bytes.slice();
      for (let n = 1 + this.#int(8); n > 0; n--) b[this.#int(b.length)]! ^= 1 << this.#int(8);
      return b;
    }],
    ["byte", (e) => {
      const b = e.bytes.slice();
      for (let n = 1 + this.#int(4); n > 0; n--) {
        b[this.#int(b.length)] = this.#rand() < 0.5 ? this.#pick(INTERESTING) : this.#int(256);
      }
      return b;
    }],
    ["truncate", (e) => {
      const at = this.#pick(e.boundaries) + this.#pick([-1, 0, 0, 1]);
      return e.bytes.slice(0, Math.max(0, Math.min(at, e.bytes.length - 1)));
    }],
    ["counts", (e) => {
      const b = e.bytes.slice();
      const at = this.#pick([4, 6, 8, 10]);
      const v = this.#pick([0, 1, 2, 3, 0xffff, 0x8000, this.#int(65536)]);
      b[at] = v >> 8;
      b[at + 1] = v & 0xff;
      return b;
    }],
    ["pointer", (e) => this.#pointer(e)],
    ["label-type", (e) => {
      const b = e.bytes.slice();
      const starts = e.boundaries.filter((o) => o >= 12 && o < e.nameEnd && b[o]! <= 63);
      const at = starts.length ? this.#pick(starts) : 12;
      b[at] = 0x40 + this.#int(0x80); // 0x40-0xBF: extended / reserved label types
      return b;
    }],
    ["long-label", (e) => this.#withName(e, [this.#label(64 + this.#int(128), true)])],
    ["long-name", (e) => {
      const labels: Uint8Array[] = [];
      for (let total = 1; total < 256 + this.#int(700);) {
        const l = this.#label(1 + this.#int(63), true);
        labels.push(l);
        total += l.length + 1;
      }
      return this.#withName(e, labels);
    }],
    ["opt", (e) => this.#opt(e)],
    ["questions", (e) => {
      const q = e.bytes.subarray(12, e.nameEnd + 4);
      const n = this.#pick([2, 3, 10, 100, 1 + this.#int(300)]);
      const out = new Uint8Array(12 + q.length * n);
      out.set(e.bytes.subarray(0, 12));
      out[4] = n >> 8;
      out[5] = n & 0xff;
      out[10] = out[11] = 0;
      for (let k = 0; k < n; k++) out.set(q, 12 + k * q.length);
      return out;
    }],
    ["header-bits", (e) => {
      const b = e.bytes.slice();
      const flags = this.#pick([
        0x8000, // QR: a response
        (1 + this.#int(15)) << 11, // opcodes other than QUERY (NOTIFY, UPDATE, …)
        0x0200, // TC in a query
        0x0400, // AA
        0x0040, // Z
        1 + this.#int(15), // an rcode in a query
        this.#int(65536),
      ]);
      b[2]! ^= flags >> 8;
      b[3]! ^= flags & 0xff;
      return b;
    }],
    ["garbage", () => this.#bytes(this.#pick([0, 1, 2, 11, 12, 13, this.#int(600)]))],
    ["empty", () => new Uint8Array(0)],
    ["trailing", (e) => new Uint8Array([...e.bytes, ...this.#bytes(1 + this.#int(200))])],
    ["oversize", (e) => {
      // Bigger than any query buffer: a valid query followed by padding, up to 9 KB.
      const out = new Uint8Array(Math.max(e.bytes.length, 4090) + this.#int(5000));
      out.set(e.bytes);
      return out;
    }],
    ["splice", (e) => {
      const other = this.#pick(this.corpus).bytes;
      const cut = 2 + this.#int(Math.max(1, e.bytes.length - 2));
      return new Uint8Array([
        ...e.bytes.subarray(0, cut),
        ...other.subarray(this.#int(other.length)),
      ]);
    }],
  ];

  /** `e` with its question name replaced by raw `labels` (no length checks: may be invalid). */
  #withName(e: CorpusEntry, labels: Uint8Array[]): Uint8Array {
    const name = labels.flatMap((l) => [l.length & 0xff, ...l]);
    return new Uint8Array([
      ...e.bytes.subarray(0, 12),
      ...name,
      0,
      ...e.bytes.subarray(e.nameEnd),
    ]);
  }

  /** Compression pointers in a query: loops, forward, out of bounds, into the header. */
  #pointer(e: CorpusEntry): Uint8Array {
    const rest = e.bytes.subarray(e.nameEnd); // QTYPE, QCLASS, OPT
    const head = e.bytes.subarray(0, 12);
    const ptr = (to: number) => [0xc0 | (to >> 8), to & 0xff];
    const kind = this.#int(7);
    let name: number[];
    if (kind === 0) name = ptr(12); // to itself
    else if (kind === 1) name = [1, 0x61, ...ptr(12)]; // a label, then back to the start: a loop
    else if (kind === 2) name = [...ptr(14), ...ptr(12)]; // two pointers to each other
    else if (kind === 3) name = [1, 0x61, ...ptr(20 + this.#int(200))]; // forward / past the end
    else if (kind === 4) name = ptr(0x3fff); // far out of bounds
    else if (kind === 5) name = ptr(this.#int(12)); // into the header
    else {
      // A valid question, then an extra record whose owner loops (in the additional section).
      const b = new Uint8Array([...e.bytes, ...ptr(e.bytes.length), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
      b[11]! += 1;
      return b;
    }
    return new Uint8Array([...head, ...name, ...rest]);
  }

  /** OPT records that are huge, lie about lengths, come twice, or sit where they must not. */
  #opt(e: CorpusEntry): Uint8Array {
    const q = e.bytes.subarray(0, e.nameEnd + 4);
    const head = (ar: number, an: number) => {
      const b = q.slice();
      b[6] = an >> 8;
      b[7] = an & 0xff;
      b[10] = ar >> 8;
      b[11] = ar & 0xff;
      return b;
    };
    const opt = (rdata: Uint8Array, rdlen = rdata.length, owner = [0], version = 0) =>
      new Uint8Array([
        ...owner,
        0,
        41,
        0x04,
        0xd0,
        0,
        version,
        0x80,
        0,
        rdlen >> 8,
        rdlen & 0xff,
        ...rdata,
      ]);
    const many = () => {
      const parts: number[] = [];
      for (let n = 50 + this.#int(800); n > 0; n--) parts.push(...option(this.#int(20), []));
      return new Uint8Array(parts);
    };
    const kind = this.#int(9);
    let body: Uint8Array[];
    let ar = 1, an = 0;
    if (kind === 0) body = [opt(many())]; // hundreds of options
    else if (kind === 1) body = [opt(option(12, new Uint8Array(1000 + this.#int(3000))))];
    else if (kind === 2) body = [opt(new Uint8Array([0, 10, 0xff, 0xff, 1, 2, 3]))]; // option lies
    else if (kind === 3) body = [opt(option(10, this.#bytes(8)), 0xffff)]; // rdlength lies (long)
    else if (kind === 4) body = [opt(option(10, this.#bytes(8)), 3)]; // rdlength lies (short)
    else if (kind === 5) (body = [opt(new Uint8Array()), opt(new Uint8Array())], ar = 2); // two
    else if (kind === 6) (body = [opt(new Uint8Array())], ar = 0, an = 1); // in the answer section
    else if (kind === 7) body = [opt(new Uint8Array(), 0, [1, 0x61, 0])]; // owner not the root
    else body = [opt(new Uint8Array(), 0, [0], 1 + this.#int(255))]; // EDNS version > 0
    const out = [head(ar, an), ...body];
    return new Uint8Array(out.flatMap((b) => [...b]));
  }

  /** The next TCP case: framed fuzz inputs, honest or lying, written in one of several ways. */
  nextTcp(): TcpCase {
    const n = 1 + this.#int(this.#rand() < 0.3 ? 12 : 3);
    const messages = [...Array(n)].map(() =>
      this.#rand() < 0.4 ? this.valid().bytes : this.next().bytes
    );
    const prefixes = messages.map((m) => m.length);
    const r = this.#rand();
    let kind = "framed";
    let cutAt: number | undefined;
    if (r < 0.1) {
      kind = "prefix-long";
      prefixes[n - 1] = Math.min(0xffff, prefixes[n - 1]! + 1 + this.#int(3000));
    } else if (r < 0.2) {
      kind = "prefix-short";
      const i = this.#int(n);
      prefixes[i] = this.#int(prefixes[i]! + 1);
    } else if (r < 0.27) {
      kind = "zero-length";
      messages.splice(this.#int(n + 1), 0, new Uint8Array(0));
      prefixes.splice(0, prefixes.length, ...messages.map((m) => m.length));
    } else if (r < 0.37) {
      kind = "cut";
      const total = messages.reduce((s, m) => s + 2 + m.length, 0);
      cutAt = 1 + this.#int(total - 1);
    }
    const w = this.#rand();
    const size = messages.reduce((s, m) => s + 2 + m.length, 0);
    let writes: TcpCase["writes"] = w < 0.35 ? "one" : w < 0.65 ? "per-message" : "chunks";
    if (w >= 0.85 && size <= 200) writes = "bytewise"; // at 1-3 ms a byte: under a second
    // A slow client still completes each message within about a second.
    const delayMs = writes === "bytewise" ? 1 + this.#int(3) : writes === "one" ? 0 : this.#int(5);
    return {
      kind: writes === "bytewise" ? `${kind}/bytewise` : kind,
      messages,
      prefixes,
      ...(cutAt === undefined ? {} : { cutAt }),
      writes,
      delayMs,
    };
  }

  /** A random integer below `n` from the same sequence (chunk sizes for the driver). */
  int(n: number): number {
    return this.#int(n);
  }
}
