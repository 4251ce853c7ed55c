import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { indexResponse, renderResponse } from "../../resolver/response.ts";
import { parseQuery, type Query } from "../../resolver/wire.ts";
import { cacheKey, PvdCache } from "../../resolver/cache.ts";

const CACHE = { maxEntries: 10, minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };
const enc = (p: packet.Packet) => new Uint8Array(packet.encode(p));
interface Decoded {
  id: number;
  flags: number;
  questions: { name: string }[];
  answers: { type: string; ttl: number }[];
  additionals: { type: string }[];
}
const dec = (b: Uint8Array) => packet.decode(Buffer.from(b)) as unknown as Decoded;

function query(
  name: string,
  type: packet.RecordType = "A",
  opts: { edns?: number; do?: boolean; id?: number } = {},
): Query {
  const r = parseQuery(enc({
    type: "query",
    id: opts.id ?? 1234,
    flags: packet.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
    ...(opts.edns
      ? {
        additionals: [
          {
            type: "OPT",
            name: ".",
            udpPayloadSize: opts.edns,
            flags: opts.do ? packet.DNSSEC_OK : 0,
          } as packet.Answer,
        ],
      }
      : {}),
  }));
  if (r.kind !== "query") throw new Error("test query did not parse");
  return r.query;
}

const soa = {
  type: "SOA",
  name: "example.org",
  ttl: 900,
  data: {
    mname: "ns.example.org",
    rname: "h.example.org",
    serial: 1,
    refresh: 1,
    retry: 1,
    expire: 1,
    minimum: 300,
  },
} as packet.Answer;

Deno.test("indexResponse() takes the smallest TTL, clamps it, and strips OPT", () => {
  const wire = enc({
    type: "response",
    id: 9,
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE,
    questions: [{ name: "www.example.org", type: "A", class: "IN" }],
    answers: [
      { type: "CNAME", name: "www.example.org", ttl: 600, data: "web.example.org" },
      { type: "A", name: "web.example.org", ttl: 120, data: "192.0.2.7" },
    ],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as packet.Answer],
  });
  const r = indexResponse(wire, 1000, CACHE);
  assert.equal(r.kind, "positive");
  assert.equal(r.ttl, 120);
  assert.equal(dec(r.wire).additionals?.length, 0);
  assert.equal(indexResponse(wire, 0, { ...CACHE, minTtl: 300 }).ttl, 300);
  assert.equal(indexResponse(wire, 0, { ...CACHE, maxTtl: 60 }).ttl, 60);
});

Deno.test("indexResponse() caches NXDOMAIN and NODATA for min(SOA TTL, MINIMUM), capped", () => {
  const nx = enc({
    type: "response",
    id: 1,
    flags: 3,
    questions: [{ name: "no.example.org", type: "A", class: "IN" }],
    authorities: [soa],
  });
  const r = indexResponse(nx, 0, CACHE);
  assert.equal(r.kind, "negative");
  assert.equal(r.ttl, 300);
  assert.equal(indexResponse(nx, 0, { ...CACHE, negativeMaxTtl: 30 }).ttl, 30);
  const nodata = enc({
    type: "response",
    id: 1,
    questions: [{ name: "example.org", type: "AAAA", class: "IN" }],
    authorities: [soa],
  });
  assert.equal(indexResponse(nodata, 0, CACHE).ttl, 300);
  const noSoa = enc({
    type: "response",
    id: 1,
    flags: 3,
    questions: [{ name: "no.example.org", type: "A", class: "IN" }],
  });
  assert.equal(indexResponse(noSoa, 0, CACHE).ttl, 0, "RFC 2308: no SOA, no negative caching");
  const servfail = enc({
    type: "response",
    id: 1,
    flags: 2,
    questions: [{ name: "x.example.org", type: "A", class: "IN" }],
  });
  assert.equal(indexResponse(servfail, 0, CACHE).ttl, 2);
});

Deno.test("indexResponse() rejects malformed messages", () => {
  const good = enc({
    type: "response",
    id: 1,
    questions: [{ name: "a.example", type: "A", class: "IN" }],
    answers: [{ type: "A", name: "a.example", ttl: 5, data: "192.0.2.1" }],
  });
  assert.throws(
    () => indexResponse(good.subarray(0, good.length - 2), 0, CACHE),
    /overruns|bad record/,
  );
  const extra = new Uint8Array([...good, 0]);
  assert.throws(() => indexResponse(extra, 0, CACHE), /trailing/);
  assert.throws(() => indexResponse(good.subarray(0, 8), 0, CACHE), /short/);
});

Deno.test("renderResponse() patches ID, question case, TTLs and EDNS", () => {
  const wire = enc({
    type: "response",
    id: 9,
    flags: packet.RECURSION_AVAILABLE | packet.AUTHENTIC_DATA,
    questions: [{ name: "www.example.org", type: "A", class: "IN" }],
    answers: [{ type: "A", name: "www.example.org", ttl: 120, data: "192.0.2.7" }],
  });
  const stored = indexResponse(wire, 10_000, CACHE);
  const q = query("WWW.Example.org", "A", { id: 555, edns: 1232 });
  const out = dec(renderResponse(stored, q, 10_000 + 31_500, 1232));
  assert.equal(out.id, 555);
  assert.equal(out.questions?.[0]?.name, "WWW.Example.org");
  assert.equal(out.answers?.[0]?.ttl, 89, "120 s minus 31 whole seconds");
  assert.equal(out.additionals?.[0]?.type, "OPT");
  assert.equal(
    (out.flags ?? 0) & packet.AUTHENTIC_DATA,
    0,
    "AD cleared for a client that did not ask",
  );
  const withDo = dec(
    renderResponse(stored, query("www.example.org", "A", { edns: 1232, do: true }), 10_000, 1232),
  );
  assert.ok((withDo.flags ?? 0) & packet.AUTHENTIC_DATA);
  const late = dec(renderResponse(stored, q, 10_000 + 500_000, 1232));
  assert.equal(late.answers?.[0]?.ttl, 0, "never negative");
});

Deno.test("renderResponse() truncates to the client's size and sets TC", () => {
  const big = "x".repeat(250);
  const wire = enc({
    type: "response",
    id: 1,
    questions: [{ name: "big.example", type: "TXT", class: "IN" }],
    answers: Array.from(
      { length: 12 },
      () => ({ type: "TXT", name: "big.example", ttl: 60, data: [big] }) as packet.Answer,
    ),
  });
  const stored = indexResponse(wire, 0, CACHE);
  const noEdns = renderResponse(stored, query("big.example", "TXT"), 0, 512);
  const p = dec(noEdns);
  assert.ok(noEdns.length <= 512);
  assert.ok((p.flags ?? 0) & packet.TRUNCATED_RESPONSE);
  assert.equal(p.answers?.length, 0);
  assert.equal(p.questions?.[0]?.name, "big.example");
  const tcp = dec(renderResponse(stored, query("big.example", "TXT"), 0, 65535));
  assert.equal(tcp.answers?.length, 12);
  assert.equal((tcp.flags ?? 0) & packet.TRUNCATED_RESPONSE, 0);
});

Deno.test("PvdCache keeps PvDs, DO bits and TTLs apart", () => {
  const wire = enc({
    type: "response",
    id: 1,
    questions: [{ name: "a.example", type: "A", class: "IN" }],
    answers: [{ type: "A", name: "a.example", ttl: 10, data: "192.0.2.1" }],
  });
  const home = new PvdCache({ maxEntries: 2 });
  const vpn = new PvdCache({ maxEntries: 2 });
  const k = cacheKey("a.example.", 1, 1, false, false);
  home.set(k, indexResponse(wire, 0, CACHE));
  assert.ok(home.get(k, 5_000));
  assert.equal(vpn.get(k, 5_000), undefined, "another PvD's cache never sees it");
  assert.equal(
    home.get(cacheKey("a.example.", 1, 1, true, false), 5_000),
    undefined,
    "DO is part of the key",
  );
  assert.equal(
    home.get(cacheKey("a.example.", 1, 1, false, true), 5_000),
    undefined,
    "CD is part of the key",
  );
  assert.equal(home.get(k, 10_000), undefined, "expired at its TTL");
  assert.equal(home.size, 0, "expired entry dropped");
  for (const n of ["b", "c", "d"]) {
    home.set(cacheKey(`${n}.example.`, 1, 1, false, false), indexResponse(wire, 0, CACHE));
  }
  assert.equal(home.size, 2, "bounded by maxEntries");
  assert.equal(
    home.get(cacheKey("b.example.", 1, 1, false, false), 1),
    undefined,
    "least recent evicted",
  );
  const zero = enc({
    type: "response",
    id: 1,
    flags: 3,
    questions: [{ name: "z.example", type: "A", class: "IN" }],
  });
  home.set("z", indexResponse(zero, 0, CACHE));
  assert.equal(home.get("z", 0), undefined, "TTL 0 is not stored");
});
