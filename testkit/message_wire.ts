/**
 * DNS messages built byte by byte, for tests that must send what no DNS library would encode
 * (wrong IDs, loops of compression pointers, records cut short): names, rdata, records and
 * whole messages, each as the bytes that go on the wire.
 *
 * @module
 */

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
