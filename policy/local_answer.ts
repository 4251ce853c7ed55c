/**
 * Replies pvdns makes itself: special-use names, rule actions, refusals. Records are encoded with
 * `dns-packet`; these replies are rare enough that the codec's cost does not matter.
 *
 * @module
 */

import * as packet from "dns-packet";
import type { LocalAnswerConfig } from "../resolver/config_types.ts";
import { localResponse, type StoredResponse } from "../resolver/response.ts";
import { Flags, type Query, Rcode, Type } from "../resolver/wire.ts";
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
  const name = query.qname === "." ? "." : query.qname.slice(0, -1);
  const records: packet.Answer[] = [];
  const t = query.qtype;
  const any = t === 255;
  if (data.CNAME) {
    records.push({ type: "CNAME", name, ttl: data.ttl, data: data.CNAME.replace(/\.$/, "") });
  } else {
    if (t === Type.A || any) {
      for (const a of data.A) records.push({ type: "A", name, ttl: data.ttl, data: a });
    }
    if (t === Type.AAAA || any) {
      for (const a of data.AAAA) records.push({ type: "AAAA", name, ttl: data.ttl, data: a });
    }
    if (t === Type.TXT || any) {
      for (const txt of data.TXT) records.push({ type: "TXT", name, ttl: data.ttl, data: [txt] });
    }
  }
  // Encoded behind the same question name at offset 12, so compression pointers stay valid once
  // the records are placed behind the client's own question.
  const full = packet.encode({
    type: "response",
    questions: [{ name, type: "A", class: "IN" }],
    answers: records,
  });
  const bytes = new Uint8Array(full.subarray(query.questionEnd));
  return localResponse(query, Rcode.NOERROR, now, { bytes, an: records.length, ns: 0 }, Flags.AA);
}
