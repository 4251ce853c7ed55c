/**
 * The records a `PvdResolver` returns, in the shapes of Node's `dns.promises.Resolver`, and
 * their decoding from the answer section of a DNS reply: every result array is tagged with the
 * PvD that answered ({@linkcode Answered}).
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import type { AnswerSource } from "../dns/response.ts";

/** Tags every result: one query is answered by exactly one PvD. */
export interface Answered {
  /** The PvD that answered; undefined when pvdns answered itself (e.g. `localhost`). */
  readonly pvd: string | undefined;
  /** Where the answer came from: `cache`, `upstream`, `local` or `policy`. */
  readonly source: AnswerSource | undefined;
}

/** An array of records, tagged with the PvD that answered. */
export type PvdRecords<T> = T[] & Answered;

/** An address record with its TTL. */
export interface RecordWithTtl {
  /** The address. */
  readonly address: string;
  /** Seconds it may still be used. */
  readonly ttl: number;
}

/** A mail exchanger (Node's shape). */
export interface MxRecord {
  /** Lower is preferred. */
  readonly priority: number;
  /** The mail server's name, without trailing dot. */
  readonly exchange: string;
}

/** A service record (Node's shape). */
export interface SrvRecord {
  /** Lower is preferred. */
  readonly priority: number;
  /** Share among records of one priority. */
  readonly weight: number;
  /** The service's port. */
  readonly port: number;
  /** The target host, without trailing dot. */
  readonly name: string;
}

/** A zone's SOA record (Node's shape). */
export interface SoaRecord {
  /** Primary name server. */
  readonly nsname: string;
  /** Responsible mailbox, as a name. */
  readonly hostmaster: string;
  /** Zone serial number. */
  readonly serial: number;
  /** Secondary refresh interval, seconds. */
  readonly refresh: number;
  /** Secondary retry interval, seconds. */
  readonly retry: number;
  /** Secondary expiry, seconds. */
  readonly expire: number;
  /** Negative caching TTL, seconds. */
  readonly minttl: number;
}

/** Record types {@linkcode PvdResolver.resolve} accepts, with what each returns. */
export interface RecordTypes {
  /** IPv4 addresses. */
  A: string;
  /** IPv6 addresses. */
  AAAA: string;
  /** Canonical names. */
  CNAME: string;
  /** Mail exchangers. */
  MX: MxRecord;
  /** Name servers. */
  NS: string;
  /** Host names of a reverse name. */
  PTR: string;
  /** The zone's SOA. */
  SOA: SoaRecord;
  /** Services. */
  SRV: SrvRecord;
  /** Texts: each record is its list of strings. */
  TXT: string[];
}

/** Node's `syscall` of a failed resolution, per record type {@linkcode RecordTypes} holds. */
export const RECORD_SYSCALLS: Readonly<Record<string, string>> = {
  A: "queryA",
  AAAA: "queryAaaa",
  CNAME: "queryCname",
  MX: "queryMx",
  NS: "queryNs",
  PTR: "queryPtr",
  SOA: "querySoa",
  SRV: "querySrv",
  TXT: "queryTxt",
};

/** One record of an answer section, as `dns/json.ts` decodes it. */
export interface DecodedRecord {
  /** Record type mnemonic (`A`, `MX`, …). */
  type: string;
  /** Owner name. */
  name: string;
  /** Seconds it may still be used. */
  ttl?: number;
  /** The decoded rdata. */
  data?: unknown;
}

/** The answer section of one reply, with the PvD that answered and where the answer came from. */
export interface DecodedAnswer {
  /** The records of the answer section. */
  readonly records: DecodedRecord[];
  /** The PvD that answered. */
  readonly pvd: string | undefined;
  /** Where the answer came from. */
  readonly source: AnswerSource | undefined;
}

/** `name` without its trailing dot (Node's names have none). */
export function stripDot(name: string): string {
  return name.replace(/\.$/, "");
}

/** The records of `type` in `d`, each mapped by `map`, tagged with who answered. */
export function tagRecords<T>(
  d: DecodedAnswer,
  type: string,
  map: (r: DecodedRecord) => T,
): PvdRecords<T> {
  const out = d.records.filter((r) => r.type === type).map(map) as PvdRecords<T>;
  return Object.assign(out, { pvd: d.pvd, source: d.source });
}

/** Node's shape of one decoded record of `type`. */
export function convertRecord(type: string, r: DecodedRecord): unknown {
  const d = r.data as Record<string, unknown>;
  switch (type) {
    case "MX":
      return { priority: d.preference, exchange: stripDot(String(d.exchange)) };
    case "SRV":
      return {
        priority: d.priority,
        weight: d.weight,
        port: d.port,
        name: stripDot(String(d.target)),
      };
    case "TXT":
      return (Array.isArray(r.data) ? r.data : [r.data]).map((b) =>
        typeof b === "string" ? b : new TextDecoder().decode(b as Uint8Array)
      );
    case "SOA":
      return {
        nsname: stripDot(String(d.mname)),
        hostmaster: stripDot(String(d.rname)),
        serial: d.serial,
        refresh: d.refresh,
        retry: d.retry,
        expire: d.expire,
        minttl: d.minimum,
      };
    default:
      return stripDot(String(r.data));
  }
}

/**
 * The PTR name of an IP address (under in-addr.arpa or ip6.arpa).
 *
 * @throws {TypeError} when `ip` is not an IP address
 */
export function reverseName(ip: string): string {
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) {
    return `${ipaddr.IPv4.parse(ip).octets.slice().reverse().join(".")}.in-addr.arpa`;
  }
  if (ipaddr.IPv6.isValid(ip)) {
    const nibbles = ipaddr.IPv6.parse(ip).toByteArray()
      .flatMap((b) => [b >> 4, b & 0xf].map((n) => n.toString(16)));
    return `${nibbles.reverse().join(".")}.ip6.arpa`;
  }
  throw new TypeError(`"${ip}" is not an IP address`);
}
