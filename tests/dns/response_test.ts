import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { indexResponse, renderResponse } from "../../src/dns/response.ts";
import { parseQuery, type Query } from "../../src/dns/wire.ts";
import { cacheKey, PvdCache } from "../../src/cache/cache.ts";
import { MAX_CHAIN } from "../../src/dns/scrub.ts";
import { hostileAnswer, POISON } from "../../testkit/hostile_answers.ts";
import { messageWire, nameWire, questionWire, rdata } from "../../testkit/message_wire.ts";
import { buildQuery } from "../../testkit/wire.ts";

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
  // A PvD whose config trusts its resolver's AD (answer_trust_test.ts covers the default).
  const stored = indexResponse(wire, 10_000, CACHE, { trustAd: true });
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

// ---------------------------------------------------------------------------------------------
// Hostile answers (issue 8): what an upstream answer may bring in.

/** Every address in a decoded message, by section. */
function addresses(wire: Uint8Array) {
  const p = packet.decode(Buffer.from(wire));
  const of = (rs: packet.Answer[] = []) =>
    rs.map((r) => {
      const data = (r as { data?: unknown }).data;
      return `${r.name} ${r.type} ${typeof data === "string" ? data : ""}`.trim();
    });
  return { answer: of(p.answers), authority: of(p.authorities), additional: of(p.additionals) };
}

Deno.test("indexResponse() refuses compression loops and forward pointers, in owner names and in rdata", () => {
  const q = buildQuery(7, "loop.example");
  for (const loop of ["self", "label", "forward", "rdata"] as const) {
    const wire = hostileAnswer(q, { kind: "compression-loop", loop });
    assert.throws(() => indexResponse(wire, 0, CACHE), /bad (owner )?name/, loop);
  }
  // A pointer into the header, and a name over 255 octets made of backward pointers.
  const header = messageWire({
    id: 7,
    question: questionWire("loop.example", 1),
    answer: [{ name: [0xc0, 2], type: 1, rdata: rdata.a("192.0.2.1") }],
  });
  assert.throws(() => indexResponse(header, 0, CACHE), /bad owner name/);
  const label = [63, ...new Array(63).fill(0x61)];
  const chain: number[][] = [];
  let prev = 12 + questionWire("loop.example", 1).length;
  const records = [];
  for (let i = 0; i < 5; i++) {
    // Each owner: a 63-byte label, then a pointer to the previous owner (or the question).
    const name = i === 0 ? [...label, 0xc0, 12] : [...label, 0xc0 | (prev >> 8), prev & 0xff];
    chain.push(name);
    const spec = { name, type: 1, rdata: rdata.a("192.0.2.1") };
    records.push(spec);
    if (i > 0) prev += chain[i - 1]!.length + 14;
  }
  const long = messageWire({ id: 7, question: questionWire("loop.example", 1), answer: records });
  assert.throws(() => indexResponse(long, 0, CACHE), /bad owner name/, "names over 255 octets");
});

Deno.test("indexResponse() reads a TTL with the high bit set as huge and caps it to maxTtl (RFC 8767 §4)", () => {
  for (const huge of [0x7fffffff, 0x80000000, 0xffffffff]) {
    const wire = hostileAnswer(buildQuery(7, "ttl.example"), { kind: "answer", ttl: huge });
    const r = indexResponse(wire, 0, { ...CACHE, maxTtl: 7200 });
    assert.equal(r.ttl, 7200, `TTL ${huge}`);
    const served = dec(renderResponse(r, query("ttl.example"), 0, 512));
    assert.equal(served.answers[0]?.ttl, 7200, `TTL ${huge} as served`);
  }
});

Deno.test("indexResponse() keeps only the records of the question: the CNAME chain, not other names", () => {
  const q = buildQuery(7, "a.pvd-a.test");
  const poisoned = hostileAnswer(q, {
    kind: "poison",
    cname: "victim.other.test",
    unrelated: ["bank.pvd-a.test", "victim2.other.test"],
  });
  const r = indexResponse(poisoned, 0, CACHE);
  assert.deepEqual(addresses(r.wire), {
    answer: ["a.pvd-a.test CNAME victim.other.test", `victim.other.test A ${POISON}2`],
    authority: [],
    additional: [],
  });
  assert.equal(r.ttlOffsets.length, 2);

  // Without a chain: only the A record of the name asked survives.
  const plain = indexResponse(
    hostileAnswer(q, { kind: "poison", unrelated: ["bank.pvd-a.test"] }),
    0,
    CACHE,
  );
  assert.deepEqual(addresses(plain.wire).answer, [`a.pvd-a.test A ${POISON}1`]);
});

Deno.test("indexResponse() rewrites the message when a kept record follows a dropped one, pointers and all", () => {
  const question = questionWire("www.example.org", 1);
  const first = 12 + question.length; // the unrelated owner: bank.example.org
  const zone = first + 5; // "example.org" inside it
  const wire = messageWire({
    id: 7,
    question,
    answer: [
      { name: "bank.example.org", type: 1, rdata: rdata.a(`${POISON}66`) },
      { name: [0xc0, 12], type: 1, ttl: 60, rdata: rdata.a("192.0.2.80") },
    ],
    authority: [
      // example.org NS ns.example.org, both names pointing into the dropped record.
      { name: [0xc0, zone], type: 2, rdata: [2, 0x6e, 0x73, 0xc0, zone] },
      { name: "evil.example", type: 2, rdata: rdata.name("ns.evil.example") },
    ],
    additional: [
      { name: [2, 0x6e, 0x73, 0xc0, zone], type: 1, rdata: rdata.a("192.0.2.53") },
      { name: "ns.evil.example", type: 1, rdata: rdata.a(`${POISON}67`) },
      { type: 41, name: [0], class: 1232, ttl: 0, rdata: [] },
    ],
  });
  const r = indexResponse(wire, 0, CACHE);
  assert.deepEqual(addresses(r.wire), {
    answer: ["www.example.org A 192.0.2.80"],
    authority: ["example.org NS ns.example.org"],
    additional: ["ns.example.org A 192.0.2.53"],
  });
  assert.equal(r.ttl, 60);
  const served = dec(renderResponse(r, query("WWW.example.org", "A", { edns: 1232 }), 0, 1232));
  assert.equal(served.answers[0]?.ttl, 60);
  assert.equal(served.additionals.at(-1)?.type, "OPT");
});

Deno.test("indexResponse() keeps what a question legitimately brings: MX hosts, DNAME, SOA, DNSSEC denial", () => {
  const mx = messageWire({
    id: 7,
    question: questionWire("example.org", 15),
    answer: [{ name: [0xc0, 12], type: 15, rdata: [0, 10, ...nameWire("mail.example.org")] }],
    additional: [
      { name: "mail.example.org", type: 1, rdata: rdata.a("192.0.2.25") },
      { name: "www.example.org", type: 1, rdata: rdata.a(`${POISON}67`) },
    ],
  });
  assert.deepEqual(addresses(indexResponse(mx, 0, CACHE).wire).additional, [
    "mail.example.org A 192.0.2.25",
  ]);
  const dname = messageWire({
    id: 7,
    question: questionWire("www.old.example", 1),
    answer: [
      { name: "old.example", type: 39, rdata: rdata.name("new.example") },
      { name: [0xc0, 12], type: 5, rdata: rdata.name("www.new.example") },
      { name: "www.new.example", type: 1, rdata: rdata.a("192.0.2.9") },
      { name: "bank.new.example", type: 1, rdata: rdata.a(`${POISON}66`) },
    ],
  });
  assert.deepEqual(addresses(indexResponse(dname, 0, CACHE).wire).answer, [
    "old.example DNAME new.example",
    "www.old.example CNAME www.new.example",
    "www.new.example A 192.0.2.9",
  ]);
  const nx = enc({
    type: "response",
    id: 1,
    flags: 3,
    questions: [{ name: "no.example.org", type: "A", class: "IN" }],
    authorities: [
      soa,
      { type: "A", name: "bank.example.org", ttl: 9, data: `${POISON}68` },
      {
        type: "NSEC",
        name: "mail.example.org",
        ttl: 300,
        data: { nextDomain: "www.example.org", rrtypes: ["A"] },
      } as packet.Answer,
    ],
  });
  const negative = indexResponse(nx, 0, CACHE);
  assert.equal(negative.ttl, 300);
  assert.deepEqual(addresses(negative.wire).authority, [
    "example.org SOA",
    "mail.example.org NSEC",
  ]);
});

Deno.test("indexResponse() follows at most MAX_CHAIN names of a CNAME chain, in any order, each once", () => {
  // 2,400 CNAMEs in reverse order (c2399 → c2400 first, c0 → c1 last): about 64 KB over TCP.
  const name = (i: number) => nameWire(`c${i}.x`);
  const answer = [];
  for (let i = 2399; i >= 0; i--) answer.push({ name: name(i), type: 5, rdata: name(i + 1) });
  const wire = messageWire({ id: 1, question: questionWire("c0.x", 1), answer });
  assert.ok(wire.length > 60_000 && wire.length <= 65_535);
  const kept = addresses(indexResponse(wire, 0, CACHE).wire).answer;
  assert.equal(kept.length, MAX_CHAIN);
  assert.deepEqual(kept.slice(-2), ["c1.x CNAME c2.x", "c0.x CNAME c1.x"]);
});
