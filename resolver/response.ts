/**
 * Responses kept in wire form: an upstream answer is checked and indexed once (where its TTL
 * fields are, how long it may live), then every reply to a client is a copy with the client's
 * ID, question case, decremented TTLs and EDNS record patched in.
 *
 * @module
 */

import type { TtlRules } from "./config_types.ts";
import { buildReply, Flags, Rcode, skipName, Type, writeOpt } from "./wire.ts";
import type { Query } from "./wire.ts";

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
 * Strips the OPT record, clamps TTLs, and computes the cache lifetime: positive answers live
 * for their smallest TTL; NXDOMAIN and NODATA for the SOA's negative TTL (RFC 2308 §5), not at
 * all without an SOA; SERVFAIL for `servfailTtl`.
 *
 * @throws {BadResponseError} when the message cannot be walked
 */
export function indexResponse(wire: Uint8Array, now: number, cache: TtlRules): StoredResponse {
  if (wire.length < 12) throw new BadResponseError("short header");
  const dv = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
  const rcode = dv.getUint16(2) & 0xf;
  const an = dv.getUint16(6), ns = dv.getUint16(8), ar = dv.getUint16(10);
  let off = skipName(wire, 12);
  if (off < 0 || off + 4 > wire.length) throw new BadResponseError("bad question");
  off += 4;
  const ttlOffsets: number[] = [];
  const raw: number[] = [];
  let optStart = -1, cut = -1;
  let soaTtl = -1;
  for (let i = 0; i < an + ns + ar; i++) {
    const start = off;
    const nameEnd = skipName(wire, off);
    if (nameEnd < 0 || nameEnd + 10 > wire.length) throw new BadResponseError("bad record");
    const type = dv.getUint16(nameEnd);
    const rdlen = dv.getUint16(nameEnd + 8);
    off = nameEnd + 10 + rdlen;
    if (off > wire.length) throw new BadResponseError("record overruns message");
    if (type === Type.OPT) {
      if (i < an + ns || optStart >= 0) throw new BadResponseError("misplaced OPT");
      optStart = start;
      cut = i; // records after the OPT are dropped with it (they are optional data)
      continue;
    }
    if (cut >= 0) continue;
    const ttl = dv.getUint32(nameEnd + 4) & 0x7fffffff;
    ttlOffsets.push(nameEnd + 4);
    raw.push(ttl);
    if (type === Type.SOA && i >= an && i < an + ns && rdlen >= 22) {
      // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
      soaTtl = Math.min(ttl, dv.getUint32(nameEnd + 10 + rdlen - 4));
    }
  }
  if (off !== wire.length) throw new BadResponseError("trailing bytes");

  // A copy of its own, exactly sized: the TTL fields are rewritten below.
  const stored = wire.slice(0, optStart >= 0 ? optStart : wire.length);
  if (optStart >= 0) new DataView(stored.buffer).setUint16(10, cut - an - ns);
  let kind: StoredResponse["kind"];
  let ttl: number;
  let ttls: number[];
  if (rcode === Rcode.SERVFAIL) {
    kind = "servfail";
    ttl = cache.servfailTtl;
    ttls = raw.map(() => 0);
  } else if (rcode === Rcode.NXDOMAIN || (rcode === Rcode.NOERROR && an === 0)) {
    kind = "negative";
    ttl = soaTtl < 0 ? 0 : Math.min(soaTtl, cache.negativeMaxTtl);
    ttls = raw.map((t) => Math.min(t, ttl));
  } else if (rcode === Rcode.NOERROR) {
    kind = "positive";
    ttls = raw.map((t) => Math.min(Math.max(t, cache.minTtl), cache.maxTtl));
    ttl = ttls.length ? Math.min(...ttls) : 0;
  } else {
    kind = "other";
    ttl = 0;
    ttls = raw.map(() => 0);
  }
  const sv = new DataView(stored.buffer);
  for (let i = 0; i < ttlOffsets.length; i++) sv.setUint32(ttlOffsets[i]!, ttls[i]!);
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
  out.set(query.raw.subarray(0, 2), 0);
  out.set(query.raw.subarray(12, query.questionEnd), 12);
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
