/**
 * Responses kept in wire form: an upstream answer is checked and indexed once (where its TTL
 * fields are, how long it may live), then every reply to a client is a copy with the client's
 * ID, question case, decremented TTLs and EDNS record patched in.
 *
 * @module
 */

import {
  rebuildResponse,
  relevantRecords,
  type WalkedResponse,
  walkResponse,
  type WireRecord,
} from "./scrub.ts";
import { buildReply, Flags, Rcode, Type, writeOpt } from "./wire.ts";
import type { Query } from "./wire.ts";

/** Where an answer came from (a low-cardinality label). `stale`: RFC 8767 serve-stale. */
export type AnswerSource = "cache" | "upstream" | "local" | "policy" | "stale";

/** How long one answer lives: the TTL bounds of the config's `cache` section. */
export interface TtlRules {
  /** Shortest TTL a positive answer is kept, seconds. @default 0 */
  readonly minTtl: number;
  /** Longest TTL a positive answer is kept, seconds. @default 86400 */
  readonly maxTtl: number;
  /** Cap for negative answers (RFC 2308). @default 3600 */
  readonly negativeMaxTtl: number;
  /** How long a SERVFAIL is remembered, seconds (0 disables). @default 2 */
  readonly servfailTtl: number;
}

/** A checked response, ready to be served (and cached) for one question in one PvD. */
export interface StoredResponse {
  /**
   * Header + question + records, without any OPT record; ID and question case are placeholders.
   * Each TTL field holds the TTL to serve when fresh (already clamped); replies count it down.
   */
  readonly wire: Uint8Array;
  /** Offsets of every TTL field in `wire`. */
  readonly ttlOffsets: readonly number[];
  /** Response code. */
  readonly rcode: number;
  /** When it was received (clock ms). */
  readonly storedAt: number;
  /** Seconds it may be served from the cache; 0 = do not cache. */
  readonly ttl: number;
  /** Which kind of answer this is, for metrics and logs. */
  readonly kind: "positive" | "negative" | "servfail" | "other";
}

/** Options of {@linkcode indexResponse}: what of the answer is believed (`upstream/answer_trust.ts`). */
export interface IndexOptions {
  /** Keep the upstream's AD bit; otherwise it is cleared. @default false */
  readonly trustAd?: boolean;
  /** A record for which this returns false is dropped (rebinding protection). */
  readonly keepRecord?: (wire: Uint8Array, record: WireRecord) => boolean;
  /** Told how many records `keepRecord` dropped, when it dropped any. */
  readonly onDropped?: (records: number) => void;
}

const NO_INDEX_OPTIONS: IndexOptions = Object.freeze({});

/** Why an upstream response was not accepted. */
export class BadResponseError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "BadResponseError";
  }
}

/**
 * Checks a response already matched to its query (ID and question) and indexes it.
 * Refuses malformed names (compression loops, forward pointers) and drops the records that do
 * not belong to the question (`scrub.ts`); strips the OPT record; clamps TTLs; and computes the
 * cache lifetime: positive answers live for their smallest TTL; NXDOMAIN and NODATA for the
 * SOA's negative TTL (RFC 2308 §5), not at all without an SOA; SERVFAIL for `servfailTtl`.
 *
 * A TTL is read as the unsigned number it is: one with the high bit set is huge, not zero, and
 * is capped to `cache.maxTtl` like any other (RFC 8767 §4, which amends RFC 2181 §8).
 *
 * @throws {BadResponseError} when the message cannot be walked
 */
export function indexResponse(
  wire: Uint8Array,
  now: number,
  cache: TtlRules,
  options: IndexOptions = NO_INDEX_OPTIONS,
): StoredResponse {
  let msg = walkResponse(wire);
  if (typeof msg === "string") throw new BadResponseError(msg);
  const keep = relevantRecords(wire, msg);
  const keepRecord = options.keepRecord;
  if (keepRecord) {
    let dropped = 0;
    for (let i = 0; i < keep.length; i++) {
      if (keep[i] && !keepRecord(wire, msg.records[i]!)) {
        keep[i] = false;
        dropped++;
      }
    }
    if (dropped > 0) options.onDropped?.(dropped);
  }
  let stored: Uint8Array;
  const firstDropped = keep.indexOf(false);
  if (firstDropped < 0 || keep.indexOf(true, firstDropped) < 0) {
    // Only a tail goes (the OPT record, records after it, unrelated additional records): a
    // copy of the head, exactly sized (its TTL fields are rewritten below), with new counts.
    const cut = firstDropped < 0
      ? (msg.optStart >= 0 ? msg.optStart : wire.length)
      : msg.records[firstDropped]!.start;
    stored = wire.slice(0, cut);
    const keptCount = firstDropped < 0 ? msg.records.length : firstDropped;
    let an = 0, ns = 0;
    for (let i = 0; i < keptCount; i++) {
      const section = msg.records[i]!.section;
      if (section === "answer") an++;
      else if (section === "authority") ns++;
    }
    stored[6] = an >> 8;
    stored[7] = an & 0xff;
    stored[8] = ns >> 8;
    stored[9] = ns & 0xff;
    stored[10] = (keptCount - an - ns) >> 8;
    stored[11] = (keptCount - an - ns) & 0xff;
    if (keptCount < msg.records.length) {
      msg = { ...msg, records: msg.records.slice(0, keptCount), optStart: -1 };
    }
  } else {
    stored = rebuildResponse(wire, msg, keep);
    msg = walkResponse(stored) as WalkedResponse;
  }

  // RFC 4035 §4.9.3: AD is worth something only from a resolver the config says it trusts.
  if (!options.trustAd) stored[3]! &= ~Flags.AD;
  const dv = new DataView(stored.buffer);
  const rcode = dv.getUint16(2) & 0xf;
  const an = dv.getUint16(6);
  const ttlOffsets: number[] = new Array(msg.records.length);
  let soaTtl = -1;
  for (let i = 0; i < msg.records.length; i++) {
    const r = msg.records[i]!;
    ttlOffsets[i] = r.typeAt + 4;
    if (r.type === Type.SOA && r.section === "authority" && r.rdEnd - r.rdStart >= 22) {
      // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
      soaTtl = Math.min(dv.getUint32(r.typeAt + 4), dv.getUint32(r.rdEnd - 4));
    }
  }

  let kind: StoredResponse["kind"];
  let ttl: number;
  // Each record's TTL as stored: clamped for a positive answer, capped by the negative TTL for a
  // negative one, 0 otherwise (never cached as such).
  if (rcode === Rcode.SERVFAIL || (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN)) {
    kind = rcode === Rcode.SERVFAIL ? "servfail" : "other";
    ttl = rcode === Rcode.SERVFAIL ? cache.servfailTtl : 0;
    for (const o of ttlOffsets) dv.setUint32(o, 0);
  } else if (rcode === Rcode.NXDOMAIN || an === 0) {
    kind = "negative";
    ttl = soaTtl < 0 ? 0 : Math.min(soaTtl, cache.negativeMaxTtl);
    for (const o of ttlOffsets) dv.setUint32(o, Math.min(dv.getUint32(o), ttl));
  } else {
    kind = "positive";
    ttl = ttlOffsets.length ? Infinity : 0;
    for (const o of ttlOffsets) {
      const t = Math.min(Math.max(dv.getUint32(o), cache.minTtl), cache.maxTtl);
      dv.setUint32(o, t);
      if (t < ttl) ttl = t;
    }
  }
  return { wire: stored, ttlOffsets, rcode, storedAt: now, ttl, kind };
}

/**
 * Renders a stored response for one client query: the client's ID and question bytes, RD/CD as
 * the client sent them, AD only for a client that asked for it (RFC 6840 §5.7), TTLs decremented
 * by the time spent in the cache, and OPT when the query had EDNS. When the result exceeds
 * `maxSize`, the reply is the header and question with TC set (RFC 1035 §4.2.1, RFC 6891 §7).
 */
export function renderResponse(
  stored: StoredResponse,
  query: Query,
  now: number,
  maxSize: number,
): Uint8Array {
  const src = stored.wire;
  const edns = query.edns;
  const size = src.length + (edns ? 11 : 0);
  if (size > maxSize) return truncatedReply(stored, query);
  const out = new Uint8Array(size);
  out.set(src);
  // The client's ID and its question as written (letter case): a byte loop, not two subarray
  // views, so that a reply allocates nothing but itself.
  const raw = query.raw;
  out[0] = raw[0]!;
  out[1] = raw[1]!;
  for (let i = 12; i < query.questionEnd; i++) out[i] = raw[i]!;
  const wantsAd = (query.flags & Flags.AD) !== 0 || edns?.do === true;
  let flags = (src[2]! << 8 | src[3]!) & ~(Flags.RD | Flags.CD | Flags.TC);
  if (!wantsAd) flags &= ~Flags.AD;
  flags |= query.flags & (Flags.RD | Flags.CD);
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  const elapsed = Math.floor((now - stored.storedAt) / 1000);
  const offs = stored.ttlOffsets;
  for (let i = 0; i < offs.length; i++) {
    const o = offs[i]!;
    const fresh = (src[o]! << 24 | src[o + 1]! << 16 | src[o + 2]! << 8 | src[o + 3]!) >>> 0;
    const t = Math.max(0, fresh - elapsed);
    out[o] = t >>> 24;
    out[o + 1] = (t >>> 16) & 0xff;
    out[o + 2] = (t >>> 8) & 0xff;
    out[o + 3] = t & 0xff;
  }
  if (edns) {
    writeOpt(out, src.length, edns.do);
    const ar = (out[10]! << 8 | out[11]!) + 1;
    out[10] = ar >> 8;
    out[11] = ar & 0xff;
  }
  return out;
}

function truncatedReply(stored: StoredResponse, query: Query): Uint8Array {
  const q = query.questionEnd - 12;
  const out = new Uint8Array(12 + q + (query.edns ? 11 : 0));
  out.set(query.raw.subarray(0, 2), 0);
  const flags = ((stored.wire[2]! << 8 | stored.wire[3]!) & ~(Flags.RD | Flags.CD | Flags.AD)) |
    (query.flags & (Flags.RD | Flags.CD)) | Flags.TC;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  out[5] = 1;
  out.set(query.raw.subarray(12, query.questionEnd), 12);
  if (query.edns) {
    out[11] = 1;
    writeOpt(out, 12 + q, query.edns.do);
  }
  return out;
}

/** A reply made here (not cached unless the caller says so), echoing the query's question. */
export function localResponse(
  query: Query,
  rcode: number,
  now: number,
  records?: { bytes: Uint8Array; an: number; ns: number },
  setFlags = 0,
): StoredResponse {
  const wire = buildReply({
    id: 0,
    flags: query.flags,
    question: query.raw.subarray(12, query.questionEnd),
    rcode,
    setFlags,
    ...(records ? { records } : {}),
  });
  return { wire, ttlOffsets: [], rcode, storedAt: now, ttl: 0, kind: "other" };
}
