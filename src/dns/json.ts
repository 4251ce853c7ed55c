/**
 * DNS for the JSON side of pvdns (library and control API): reading a query name and type
 * given as text, and writing a DNS reply in the widely used `application/dns-json` shape
 * (`Status`, `TC`, `RD`, `RA`, `AD`, `CD`, `Question`, `Answer`, `Authority`), plus the PvD that
 * answered and where the answer came from.
 *
 * @module
 */

import * as packet from "dns-packet";
import * as packetTypes from "dns-packet/types.js";
import { Buffer } from "node:buffer";
import type { AnswerSource } from "./response.ts";
import { Flags, skipName, Type, TYPE_NUMBERS } from "./wire.ts";

/** One record in `application/dns-json` form. */
export interface DnsJsonRecord {
  /** Owner name with trailing dot. */
  readonly name: string;
  /** Type number. */
  readonly type: number;
  /** Seconds left. */
  readonly TTL: number;
  /** Presentation form: `192.0.2.1`, `10 mail.example.org.`, `"text"`, `\# 4 c0000201` … */
  readonly data: string;
}

/**
 * A DNS reply in `application/dns-json` shape, with the PvD that answered.
 *
 * @example A reply as the control API's `GET /v1/resolve` returns it
 * ```json
 * { "Status": 0, "TC": false, "RD": true, "RA": true, "AD": false, "CD": false,
 *   "Question": [{ "name": "www.example.org.", "type": 1 }],
 *   "Answer": [{ "name": "www.example.org.", "type": 1, "TTL": 300, "data": "192.0.2.1" }],
 *   "pvd": "home.example.net", "source": "upstream" }
 * ```
 */
export interface DnsJson {
  /** Response code (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED …). */
  readonly Status: number;
  /** Truncated. */
  readonly TC: boolean;
  /** Recursion desired. */
  readonly RD: boolean;
  /** Recursion available. */
  readonly RA: boolean;
  /** Authentic data (as the PvD's server said). */
  readonly AD: boolean;
  /** Checking disabled. */
  readonly CD: boolean;
  /** The question: name with trailing dot, type number. */
  readonly Question: readonly { readonly name: string; readonly type: number }[];
  /** The answer section (may be empty). */
  readonly Answer: readonly DnsJsonRecord[];
  /** Present when the reply has an authority section (e.g. the SOA of a negative answer). */
  readonly Authority?: readonly DnsJsonRecord[];
  /** The PvD that answered; null when pvdns answered itself (special-use name, rule). */
  readonly pvd: string | null;
  /** Where the answer came from: `cache`, `upstream`, `local` or `policy`. */
  readonly source?: AnswerSource;
}

const types = packetTypes as unknown as {
  toString(type: number): string;
  toType(name: string): number;
};

/** The mnemonic of a type number (`1` → `A`), or `TYPE65280` (RFC 3597). */
export function typeName(type: number): string {
  const name = types.toString(type);
  return name.startsWith("UNKNOWN_") ? `TYPE${type}` : name;
}

/** The number of a type as dns-packet names it (`"A"` → 1, `"UNKNOWN_65280"` → 65280). */
function typeNumber(name: string): number {
  const unknown = /^UNKNOWN_(\d+)$/.exec(name);
  return unknown ? Number(unknown[1]) : types.toType(name);
}

/** Names of the response codes, for messages. */
export const RCODE_NAMES: readonly string[] = [
  "NOERROR",
  "FORMERR",
  "SERVFAIL",
  "NXDOMAIN",
  "NOTIMP",
  "REFUSED",
];

/**
 * Reads a query type: a mnemonic (`AAAA`, case-insensitive), `TYPE123`, or a number 1–65535.
 *
 * @throws {RangeError} naming the value when it is none of these, or a meta type pvdns refuses
 */
export function parseQueryType(text: string): number {
  const t = text.trim().toUpperCase();
  let n: number | undefined = TYPE_NUMBERS[t] ?? (types.toType(t) || undefined);
  if (n === undefined && /^(TYPE)?\d{1,5}$/.test(t)) n = Number(t.replace("TYPE", ""));
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new RangeError(`"${text}" is not a DNS record type (use A, AAAA, TXT, … or TYPE123)`);
  }
  if (n === Type.OPT || n === Type.IXFR || n === Type.AXFR) {
    throw new RangeError(`"${text}" cannot be asked for (OPT and zone transfers are refused)`);
  }
  return n;
}

/**
 * Reads a domain name to ask about: printable ASCII without spaces or backslashes, labels of
 * 1–63 bytes, at most 253 characters; the root is `"."`. Returns it with a trailing dot,
 * letter case kept.
 *
 * @throws {RangeError} naming the value when it is not a usable name
 */
export function parseQueryName(text: string): string {
  if (text === ".") return ".";
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  const bad = (why: string) => new RangeError(`"${text}" is not a valid domain name: ${why}`);
  if (name.length === 0) throw bad("it is empty");
  if (name.length > 253) throw bad("longer than 253 characters");
  if (!/^[\x21-\x7e]+$/.test(name) || name.includes("\\")) {
    throw bad("only printable ASCII without spaces or backslashes is accepted");
  }
  for (const label of name.split(".")) {
    if (label.length === 0) throw bad("it has an empty label");
    if (label.length > 63) throw bad(`the label "${label.slice(0, 20)}…" is longer than 63 bytes`);
  }
  return `${name}.`;
}

const fqdn = (name: string) => (name === "" || name === "." ? "." : `${name.replace(/\.$/, "")}.`);

function quoteTxt(b: Uint8Array): string {
  let s = '"';
  for (const c of b) {
    if (c === 0x22 || c === 0x5c) s += "\\" + String.fromCharCode(c);
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += "\\" + String(c).padStart(3, "0");
  }
  return s + '"';
}

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** The rdata bytes of every record of `msg`, in order (answer, authority, additional). */
function rdatas(msg: Uint8Array): Uint8Array[] {
  const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  let off = 12;
  for (let i = 0; i < dv.getUint16(4); i++) off = skipName(msg, off) + 4;
  const total = dv.getUint16(6) + dv.getUint16(8) + dv.getUint16(10);
  const out: Uint8Array[] = [];
  for (let i = 0; i < total && off > 0 && off + 10 <= msg.length; i++) {
    const end = skipName(msg, off);
    if (end < 0 || end + 10 > msg.length) break;
    const len = dv.getUint16(end + 8);
    out.push(msg.subarray(end + 10, end + 10 + len));
    off = end + 10 + len;
  }
  return out;
}

/** Presentation form of one decoded record's data; RFC 3597 `\# LEN HEX` when not known here. */
function presentData(a: packet.Answer, raw: Uint8Array | undefined): string {
  const d = (a as { data?: unknown }).data;
  switch (a.type) {
    case "A":
    case "AAAA":
      return String(d);
    case "CNAME":
    case "NS":
    case "PTR":
    case "DNAME":
      return fqdn(String(d));
    case "MX": {
      const mx = d as { preference: number; exchange: string };
      return `${mx.preference} ${fqdn(mx.exchange)}`;
    }
    case "SRV": {
      const s = d as { priority: number; weight: number; port: number; target: string };
      return `${s.priority} ${s.weight} ${s.port} ${fqdn(s.target)}`;
    }
    case "TXT": {
      const parts = Array.isArray(d) ? d : [d];
      return parts.map((p) => quoteTxt(typeof p === "string" ? new TextEncoder().encode(p) : p))
        .join(" ");
    }
    case "SOA": {
      const s = d as {
        mname: string;
        rname: string;
        serial: number;
        refresh: number;
        retry: number;
        expire: number;
        minimum: number;
      };
      return `${fqdn(s.mname)} ${
        fqdn(s.rname)
      } ${s.serial} ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`;
    }
    case "CAA": {
      const c = d as { flags: number; tag: string; value: string };
      return `${c.flags} ${c.tag} ${quoteTxt(new TextEncoder().encode(c.value))}`;
    }
    default:
      return raw ? `\\# ${raw.length}${raw.length ? " " + hex(raw) : ""}` : "";
  }
}

/** Reads a DNS message with dns-packet; throws when it cannot be read. */
export function decodeMessage(msg: Uint8Array): packet.Packet {
  return packet.decode(Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength));
}

/**
 * Turns a DNS reply into `application/dns-json` with the PvD and source that answered.
 *
 * @throws {Error} when the reply cannot be decoded
 */
export function toDnsJson(
  reply: Uint8Array,
  answeredBy: { readonly pvd?: string | undefined; readonly source?: AnswerSource | undefined },
): DnsJson {
  const p = decodeMessage(reply);
  const flags = (reply[2]! << 8) | reply[3]!;
  const raw = rdatas(reply);
  let i = 0;
  const record = (a: packet.Answer): DnsJsonRecord => {
    const r = raw[i++];
    return {
      name: fqdn(a.name),
      type: typeNumber((a as { type: string }).type),
      TTL: (a as { ttl?: number }).ttl ?? 0,
      data: presentData(a, r),
    };
  };
  const answers = (p.answers ?? []).map(record);
  const authority = (p.authorities ?? []).map(record);
  return {
    Status: flags & 0xf,
    TC: (flags & Flags.TC) !== 0,
    RD: (flags & Flags.RD) !== 0,
    RA: (flags & Flags.RA) !== 0,
    AD: (flags & Flags.AD) !== 0,
    CD: (flags & Flags.CD) !== 0,
    Question: (p.questions ?? []).map((q) => ({
      name: fqdn(q.name),
      type: typeNumber(q.type),
    })),
    Answer: answers,
    ...(authority.length ? { Authority: authority } : {}),
    pvd: answeredBy.pvd ?? null,
    ...(answeredBy.source ? { source: answeredBy.source } : {}),
  };
}
