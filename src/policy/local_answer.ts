/**
 * Replies pvdns makes itself: special-use names, rule actions, refusals. Record owners point at
 * the question (offset 12), so they carry the client's letter case like forwarded answers do.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import type { LocalAnswerConfig } from "../config/types.ts";
import { localResponse, type StoredResponse } from "../dns/response.ts";
import { Flags, type Query, Rcode, Type } from "../dns/wire.ts";
import { encodeName } from "../dns/query.ts";
import type { Route } from "./router.ts";

type LocalKind = Extract<Route, { kind: "local" }>["answer"];

/**
 * Builds the reply for a local route. `localhost` gives 127.0.0.1 / ::1 (RFC 6761 §6.3); a rule's
 * records answer the types they hold, with a CNAME answering every type; other types get NODATA.
 */
export function localAnswer(query: Query, answer: LocalKind, now: number): StoredResponse {
  if (answer === "refuse") return localResponse(query, Rcode.REFUSED, now);
  if (answer === "nxdomain") return localResponse(query, Rcode.NXDOMAIN, now, undefined, Flags.AA);
  if (answer === "nodata") return localResponse(query, Rcode.NOERROR, now, undefined, Flags.AA);
  const data: LocalAnswerConfig = answer === "localhost"
    ? { A: ["127.0.0.1"], AAAA: ["::1"], TXT: [], ttl: 0 }
    : answer;
  const records: Uint8Array[] = [];
  const t = query.qtype;
  const any = t === Type.ANY;
  if (data.CNAME) {
    records.push(record(Type.CNAME, data.ttl, encodeName(data.CNAME)));
  } else {
    if (t === Type.A || any) {
      for (const a of data.A) records.push(record(Type.A, data.ttl, ip(a)));
    }
    if (t === Type.AAAA || any) {
      for (const a of data.AAAA) records.push(record(Type.AAAA, data.ttl, ip(a)));
    }
    if (t === Type.TXT || any) {
      for (const txt of data.TXT) {
        const bytes = new TextEncoder().encode(txt);
        records.push(record(Type.TXT, data.ttl, new Uint8Array([bytes.length, ...bytes])));
      }
    }
  }
  const bytes = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
  records.reduce((off, r) => (bytes.set(r, off), off + r.length), 0);
  return localResponse(query, Rcode.NOERROR, now, { bytes, an: records.length, ns: 0 }, Flags.AA);
}

function ip(address: string): Uint8Array {
  return new Uint8Array(ipaddr.parse(address).toByteArray());
}

/** One record owned by the question name (a pointer to offset 12, so the client's case shows). */
function record(type: number, ttl: number, rdata: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + rdata.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, 0xc00c);
  dv.setUint16(2, type);
  dv.setUint16(4, 1);
  dv.setUint32(6, ttl);
  dv.setUint16(10, rdata.length);
  out.set(rdata, 12);
  return out;
}
