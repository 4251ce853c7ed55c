/**
 * Micro-benchmarks of the cache-hit path, piece by piece and whole (issue 7, part 2):
 * parse of a query, cache key + lookup, rendering the reply from a stored response, and
 * `Stub.handle` for a cached name (everything in-process but the sockets).
 *
 * Run: `deno bench -A bench/micro_bench.ts` (root: the stub binds a loopback port 53, and a
 * dnsmasq on loopback answers the one miss that fills the cache; it is stopped before the first
 * benchmark, so nothing but the in-process path is measured).
 *
 * The query is what dnsperf sends (RD, one question, no EDNS) and, for the parse, the same with
 * an EDNS OPT record; the stored response is a one-A-record answer as NSD gives it.
 *
 * @module
 */

import { cacheKey, PvdCache } from "../src/cache/cache.ts";
import { validateConfig } from "../src/config/parse.ts";
import { indexResponse, renderResponse } from "../src/dns/response.ts";
import { createStub } from "../src/service/stub.ts";
import { parseQuery, type Query } from "../src/dns/wire.ts";
import { startDnsmasq } from "../testkit/dnsmasq.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import { buildQuery } from "../testkit/wire.ts";

const NAME = "www.bench.test";
const query = buildQuery(0x1234, NAME);
/** The same query with an OPT record (UDP size 1232, DO clear). */
const queryEdns = (() => {
  const opt = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
  const out = new Uint8Array(query.length + opt.length);
  out.set(query);
  out.set(opt, query.length);
  out[11] = 1; // ARCOUNT
  return out;
})();

/** The answer an authoritative server gives: the question, then one A record (name compressed). */
function answerWire(q: Uint8Array): Uint8Array {
  const rr = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1];
  const out = new Uint8Array(q.length + rr.length);
  out.set(q);
  out.set(rr, q.length);
  out[2] = 0x85; // QR AA RD
  out[3] = 0x00;
  out[7] = 1; // ANCOUNT
  return out;
}

function parsed(raw: Uint8Array): Query {
  const p = parseQuery(raw);
  if (p.kind !== "query") throw new Error(`bench query did not parse: ${p.kind}`);
  return p.query;
}

const upstream = loopbackAddress();
const config = validateConfig({
  listen: [`${loopbackAddress()}:53`],
  pvds: [{
    id: "bench.example",
    sourceAddresses: [loopbackAddress({ port: 0 })],
    servers: [upstream],
    default: true,
  }],
});
const q = parsed(query);
const now = Date.now();
const answer = answerWire(query);
const stored = indexResponse(answer, now, config.cache);

const cache = new PvdCache({ maxEntries: 100_000 });
for (let i = 0; i < 10_000; i++) {
  cache.set(cacheKey(`n${i}.bench.test.`, 1, 1, false, false), stored);
}
cache.set(cacheKey(q.qname, q.qtype, q.qclass, false, false), stored);

// The stub, its cache filled by one real miss to a dnsmasq that is gone before the benches run.
const stub = await createStub(config, { log: () => {} });
const client = { address: "127.0.0.1", port: 40000, transport: "udp" as const };
const dns = await startDnsmasq({
  address: upstream,
  zones: ["bench.test"],
  records: [{ name: NAME, type: "A", value: "192.0.2.1" }],
  ttl: 3600,
  logQueries: false,
});
try {
  const reply = await stub.handle(query, client);
  if (!reply || (reply[3]! & 0xf) !== 0 || reply[7] !== 1) {
    throw new Error("warming the stub's cache failed: no NOERROR answer with one record");
  }
} catch (e) {
  await stub.close();
  throw e;
} finally {
  await dns.stop();
}
const hit = await stub.handle(query, client);
if (!hit || hit[7] !== 1) {
  await stub.close();
  throw new Error("the stub did not answer from its cache with the upstream gone");
}
globalThis.addEventListener("unload", () => {
  void stub.close();
  if (sink === Symbol.for("never")) console.log(sink);
});

/** Results go here, so that the compiler cannot drop work whose result is unused. */
let sink: unknown;

Deno.bench("parseQuery (dnsperf's query: RD, no EDNS)", { group: "parse", baseline: true }, () => {
  sink = parseQuery(query);
});

Deno.bench("parseQuery (with an EDNS OPT record)", { group: "parse" }, () => {
  sink = parseQuery(queryEdns);
});

Deno.bench("cacheKey", { group: "cache" }, () => {
  sink = cacheKey(q.qname, q.qtype, q.qclass, q.edns?.do === true, false);
});

Deno.bench("cacheKey + PvdCache.get (hit, 10,001 entries)", { group: "cache" }, () => {
  if (!cache.get(cacheKey(q.qname, q.qtype, q.qclass, false, false), now)) throw new Error();
});

Deno.bench("renderResponse (one A record, no EDNS)", { group: "render" }, () => {
  sink = renderResponse(stored, q, now, 512);
});

Deno.bench("indexResponse (a miss's answer, once per upstream reply)", { group: "render" }, () => {
  sink = indexResponse(answer, now, config.cache);
});

Deno.bench("parse + key + get + render (the hit path without the pipeline)", {
  group: "whole",
  baseline: true,
}, () => {
  const p = parseQuery(query);
  if (p.kind !== "query") throw new Error();
  const r = p.query;
  const s = cache.get(cacheKey(r.qname, r.qtype, r.qclass, false, false), now);
  if (!s) throw new Error();
  sink = renderResponse(s, r, now, 512);
});

Deno.bench("Stub.handle (cache hit, whole in-process pipeline)", { group: "whole" }, async () => {
  sink = await stub.handle(query, client);
});
