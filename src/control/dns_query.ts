/**
 * DNS over the control API: `GET /v1/resolve` (one query as `application/dns-json`, with the
 * answering `pvd` and `source`) and `GET/POST /dns-query` (RFC 8484 DoH, with `pvdns-pvd` and
 * `pvdns-source` response headers). Both go through the stub as the DNS listeners would, from
 * the API client (no client address: client-prefix rules do not apply).
 *
 * @module
 */

import { padMessage, RESPONSE_BLOCK } from "../dns/padding.ts";
import type { Stub } from "../service/stub.ts";
import { parseQueryName, parseQueryType, toDnsJson } from "../dns/json.ts";
import { normalizePvdId } from "../config/values.ts";
import type { Answer } from "../service/pipeline.ts";
import { parseQuery } from "../dns/wire.ts";
import { buildUpstreamQuery } from "../dns/query.ts";
import { flag, json, problem } from "./http_problem.ts";
import { DOH_MAX_BYTES, readBody } from "./http_body.ts";

const DNS_MESSAGE = "application/dns-message";
const API_CLIENT = { address: "", port: 0, transport: "api" as const };

/** What the DNS endpoints ask: one exchange through the stub, and the `pvd` parameter. */
export interface DnsEndpointContext {
  /** One query through the stub, as the DNS listeners would answer it; null reply: dropped. */
  exchange(
    raw: Uint8Array,
    pvd: string | undefined,
  ): Promise<{ reply: Uint8Array | null; answer: Answer | undefined }>;
  /** The `pvd` query parameter: a known PvD (normalized), absent, or a 404 problem. */
  pvdParam(params: URLSearchParams): string | undefined | Response;
}

/** The {@linkcode DnsEndpointContext.exchange} of `stub`. */
export function stubExchange(stub: Stub): DnsEndpointContext["exchange"] {
  return async (raw, pvd) => {
    let answer: Answer | undefined;
    const reply = await stub.handle(raw, API_CLIENT, {
      explicitPvd: pvd === undefined ? undefined : normalizePvdId(pvd),
      onAnswer: (a) => answer = a,
    });
    return { reply, answer };
  };
}

/** `GET /v1/resolve?name=&type=&pvd=&do=&cd=`: one query, answered as `application/dns-json`. */
export async function resolveJson(
  ctx: DnsEndpointContext,
  params: URLSearchParams,
): Promise<Response> {
  const name = params.get("name");
  if (name === null) {
    return problem(400, "bad-name", "Bad domain name", "name: the query parameter is missing");
  }
  let qname: string, qtype: number;
  try {
    qname = parseQueryName(name);
  } catch (e) {
    return problem(400, "bad-name", "Bad domain name", `name: ${(e as Error).message}`);
  }
  try {
    qtype = parseQueryType(params.get("type") ?? "A");
  } catch (e) {
    return problem(400, "bad-type", "Bad record type", `type: ${(e as Error).message}`);
  }
  const pvd = ctx.pvdParam(params);
  if (pvd instanceof Response) return pvd;
  const dnssecOk = flag(params, "do"), cd = flag(params, "cd");
  if (dnssecOk instanceof Response) return dnssecOk;
  if (cd instanceof Response) return cd;
  const query = buildUpstreamQuery({
    id: Math.floor(Math.random() * 0x10000),
    qname,
    qtype,
    qclass: 1,
    do: dnssecOk,
    cd,
  });
  // AD set in the query (RFC 6840 §5.7): the JSON's AD then says what the PvD's answer says
  // (true only for a trustAd PvD whose resolver set it), like any DNS client that asks for it.
  query[3] = query[3]! | 0x20;
  const { reply, answer } = await ctx.exchange(query, pvd);
  if (!reply) return problem(503, "overloaded", "Overloaded", "pvdns dropped the query (busy)");
  return json(
    toDnsJson(reply, { pvd: answer?.pvd, source: answer?.source }),
    "application/dns-json",
  );
}

/** `GET/POST /dns-query?pvd=`: RFC 8484 DoH, the reply as the DNS listeners would send it. */
export async function dnsQuery(
  ctx: DnsEndpointContext,
  req: Request,
  params: URLSearchParams,
): Promise<Response> {
  const pvd = ctx.pvdParam(params);
  if (pvd instanceof Response) return pvd;
  let raw: Uint8Array;
  if (req.method === "GET") {
    const dns = params.get("dns");
    if (dns === null) {
      return problem(400, "bad-request", "Bad request", "dns: the query parameter is missing");
    }
    try {
      raw = base64urlDecode(dns);
    } catch {
      return problem(
        400,
        "bad-request",
        "Bad request",
        `dns: "${dns.slice(0, 40)}" is not base64url`,
      );
    }
  } else {
    const type = req.headers.get("content-type")?.split(";")[0]?.trim();
    if (type !== DNS_MESSAGE) {
      return problem(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        `content-type: "${type ?? ""}" is not ${DNS_MESSAGE}`,
      );
    }
    // Bounded while it streams: a 1.5 GB POST must not be buffered to find it is too big.
    const body = await readBody(req, DOH_MAX_BYTES);
    if (body instanceof Response) return body;
    raw = body;
  }
  const parsed = parseQuery(raw);
  if (parsed.kind === "drop") {
    return problem(400, "bad-request", "Bad request", `not a DNS query: ${parsed.reason}`);
  }
  const { reply, answer } = await ctx.exchange(raw, pvd);
  if (!reply) return problem(503, "overloaded", "Overloaded", "pvdns dropped the query (busy)");
  const headers: Record<string, string> = { "content-type": DNS_MESSAGE };
  if (answer?.pvd) headers["pvdns-pvd"] = answer.pvd;
  if (answer?.source) headers["pvdns-source"] = answer.source;
  try {
    // RFC 8484 §5.1: freshness no longer than the smallest TTL of the answer.
    const j = toDnsJson(reply, {});
    const ttls = [...j.Answer, ...(j.Authority ?? [])].map((r) => r.TTL);
    headers["cache-control"] = `max-age=${ttls.length ? Math.min(...ttls) : 0}`;
  } catch { /* an error reply without records */ }
  // RFC 8467 §4.1: an encrypted answer is padded to a multiple of 468 octets (when the client
  // used EDNS(0): an OPT record is never added to a reply whose query had none).
  const padded = padMessage(reply, RESPONSE_BLOCK);
  return new Response(padded as Uint8Array<ArrayBuffer>, { headers });
}

function base64urlDecode(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new Error("not base64url");
  const b64 = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
