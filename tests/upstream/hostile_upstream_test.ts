/**
 * Issue 8 part 2: hostile upstreams. One table, one step per case; each step runs a fresh
 * pvdns (so that the hostile server is first in line again) in front of:
 *
 * ```
 *                       ┌─ PvD A (pvd-a.test, default)  src SA ─► 1. hostile server H (this case's behaviour)
 *  dig / dnspython ──► pvdns                                     └► 2. dnsmasq DA (the real answers)
 *                       └─ PvD B (other.test)           src SB ─► dnsmasq DB
 * ```
 *
 * For every case: the hostile server got the query and did its thing; the client got the real
 * answer from DA (the bad answer was discarded and PvD A failed over within itself), or the
 * hostile answer as the rules take it (the chain of a poisoning attempt without its unrelated
 * records, a huge TTL capped to `cache.maxTtl`, a 64 KB answer over TCP and TC over UDP), or
 * SERVFAIL; the victim names of the poisoning attempt are then asked and come from their real
 * servers, never from the cache; and DB never saw a name of PvD A. No reply to any question
 * carries a hostile address that the rules do not allow for that question (poisonings: 0).
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/parse.ts";
import { createStub, type Stub } from "../../src/service/stub.ts";
import { dig } from "../../testkit/dig.ts";
import { type DnsmasqQuery, startDnsmasq } from "../../testkit/dnsmasq.ts";
import { dnspythonQuery } from "../../testkit/dnspython.ts";
import { type HostileBehaviour, POISON } from "../../testkit/hostile_answers.ts";
import { startHostileUpstream } from "../../testkit/hostile_upstream.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

const MAX_TTL = 7200;
const BANK = "bank.pvd-a.test"; // a victim in PvD A's own zone
const VICTIM = "victim.other.test"; // a victim in PvD B's zone
const BANK_REAL = "192.0.2.250";
const VICTIM_REAL = "198.51.100.7";

/** One record of a reply, whoever the client was. */
interface Rec {
  readonly name: string;
  readonly type: string;
  readonly ttl: number;
  readonly data: string;
}

/** A reply, as dig or dnspython saw it. */
interface Reply {
  readonly status: string;
  readonly flags: readonly string[];
  readonly answers: readonly Rec[];
  /** Authority and additional records (dnspython: authority only). */
  readonly others: readonly Rec[];
  /** Bytes received (dig: `MSG SIZE rcvd`). */
  readonly size: number;
  /** Everything the client printed, for the poison scan. */
  readonly raw: string;
}

type Client = "dig" | "dnspython";

/** What a case expects of pvdns. */
type Expect =
  /** The hostile answer is discarded; DA answers with the real address. */
  | { readonly kind: "failover" }
  /** SERVFAIL: the hostile server failed and DA refused (the name is in none of its zones). */
  | { readonly kind: "servfail" }
  /** The hostile answer is taken, as the rules shape it; `check` says how. */
  | {
    readonly kind: "accepted";
    /** Hostile addresses allowed in replies to this question. */
    readonly allowed: readonly string[];
    readonly check: (ctx: CaseContext, first: Reply) => Promise<void>;
    /** Queries DA gets for the name during `check`. @default 0 */
    readonly daQueries?: number;
  };

interface Case {
  readonly title: string;
  /** Query name, unique to the case. */
  readonly name: string;
  readonly type?: string;
  readonly behaviour: HostileBehaviour;
  /** What the hostile server's log must say it did (over UDP and, for TC cases, TCP). */
  readonly did: { readonly udp?: RegExp; readonly tcp?: RegExp };
  readonly client: Client;
  readonly expect: Expect;
}

interface CaseContext {
  readonly listen: string;
  /** The case name's address in DA. */
  readonly realAddress: string;
  readonly stub: Stub;
  /** Moves pvdns's clock forward. */
  advance(ms: number): void;
  ask(name: string, options?: AskOptions): Promise<Reply>;
}

interface AskOptions {
  readonly type?: string;
  readonly client?: Client;
  readonly tcp?: boolean;
  /** EDNS buffer size; false: no EDNS. */
  readonly edns?: number | false;
  /** dig: keep a truncated UDP answer as it is (no retry over TCP). */
  readonly ignoreTc?: boolean;
}

const failover = { kind: "failover" } as const;

/** Every case of the table; names are unique, and each has a real address in DA. */
const CASES: readonly Case[] = [
  {
    title: "wrong ID",
    name: "wrong-id.pvd-a.test",
    behaviour: { kind: "wrong-id" },
    did: { udp: /^wrong id/ },
    client: "dig",
    expect: failover,
  },
  ...(["name", "type", "class"] as const).map((change, i): Case => ({
    title: `wrong question (${change})`,
    name: `wrong-${change}.pvd-a.test`,
    behaviour: { kind: "wrong-question", change },
    did: { udp: new RegExp(`^wrong question \\(${change}\\)`) },
    client: i % 2 ? "dig" : "dnspython",
    expect: failover,
  })),
  {
    title: "right answer from another port",
    name: "other-port.pvd-a.test",
    behaviour: { kind: "other-port" },
    did: { udp: /^answered from .*:\d+$/ },
    client: "dig",
    expect: failover,
  },
  {
    title: "right answer from another address",
    name: "other-address.pvd-a.test",
    behaviour: { kind: "other-address" },
    did: { udp: /^answered from .*:53$/ },
    client: "dnspython",
    expect: failover,
  },
  {
    title: "garbage bytes behind the right ID",
    name: "garbage.pvd-a.test",
    behaviour: { kind: "garbage" },
    did: { udp: /^garbage/ },
    client: "dig",
    expect: failover,
  },
  {
    title: "a message cut in the middle of a record",
    name: "truncated.pvd-a.test",
    behaviour: { kind: "truncated" },
    did: { udp: /^truncated to/ },
    client: "dnspython",
    expect: failover,
  },
  ...(["self", "label", "forward", "rdata"] as const).map((loop, i): Case => ({
    title: `compression loop (${loop})`,
    name: `loop-${loop}.pvd-a.test`,
    behaviour: { kind: "compression-loop", loop },
    did: { udp: new RegExp(`^compression loop \\(${loop}\\)`) },
    client: i % 2 ? "dnspython" : "dig",
    expect: failover,
  })),
  {
    title: "never answers",
    name: "silent.pvd-a.test",
    behaviour: { kind: "silent" },
    did: { udp: /^silent$/ },
    client: "dig",
    expect: failover,
  },
  {
    title: "TC over UDP, then a wrong ID over TCP",
    name: "tc-wrong-id.pvd-a.test",
    behaviour: { kind: "tc", tcp: { kind: "wrong-id" } },
    did: { udp: /^tc$/, tcp: /^wrong id/ },
    client: "dig",
    expect: failover,
  },
  {
    title: "TC over UDP, then garbage over TCP",
    name: "tc-garbage.pvd-a.test",
    behaviour: { kind: "tc", tcp: { kind: "garbage", bytes: 300 } },
    did: { udp: /^tc$/, tcp: /^garbage/ },
    client: "dnspython",
    expect: failover,
  },
  {
    title: "TC over UDP, then a compression loop over TCP",
    name: "tc-loop.pvd-a.test",
    behaviour: { kind: "tc", tcp: { kind: "compression-loop", loop: "self" } },
    did: { udp: /^tc$/, tcp: /^compression loop/ },
    client: "dig",
    expect: failover,
  },
  {
    title: "TC over UDP, then a TCP length prefix that lies",
    name: "tc-short.pvd-a.test",
    behaviour: { kind: "tc", tcp: { kind: "short-frame" } },
    did: { udp: /^tc$/, tcp: /^short frame/ },
    client: "dnspython",
    expect: failover,
  },
  {
    title: "poisoning attempt: a CNAME out of the zone plus records for other names",
    name: "a.pvd-a.test",
    behaviour: { kind: "poison", cname: VICTIM, unrelated: [BANK, "victim2.other.test"] },
    did: { udp: /^poison$/ },
    client: "dig",
    expect: {
      kind: "accepted",
      // The chain is the answer to this question (trusted as a stub trusts its resolver).
      allowed: [`${POISON}2`],
      check: async (ctx, first) => {
        assert.deepEqual(recs(first.answers), [
          `a.pvd-a.test. CNAME ${VICTIM}.`,
          `${VICTIM}. A ${POISON}2`,
        ]);
        assert.deepEqual(first.others, [], "no unrelated record in authority or additional");
        const py = await ctx.ask("a.pvd-a.test", { client: "dnspython" });
        assert.deepEqual(recs(py.answers), recs(first.answers), "dnspython sees the same");
      },
    },
  },
  ...([0x7fffffff, 0x80000000, 0xffffffff] as const).map((ttl, i): Case => ({
    title: `huge TTL ${ttl.toString(16)} is capped to cache.maxTtl`,
    name: `ttl-${ttl.toString(16)}.pvd-a.test`,
    behaviour: { kind: "answer", address: `192.0.2.${201 + i}`, ttl },
    did: { udp: new RegExp(`^answered 192\\.0\\.2\\.${201 + i} ttl ${ttl}$`) },
    client: i % 2 ? "dnspython" : "dig",
    expect: {
      kind: "accepted",
      allowed: [],
      daQueries: 1,
      check: async (ctx, first) => {
        const name = `ttl-${ttl.toString(16)}.pvd-a.test`;
        assert.deepEqual(recs(first.answers), [`${name}. A 192.0.2.${201 + i}`]);
        assert.equal(first.answers[0]!.ttl, MAX_TTL);
        ctx.advance((MAX_TTL - 10) * 1000);
        const late = await ctx.ask(name);
        const left = late.answers[0]?.ttl ?? -1;
        assert.ok(left >= 1 && left <= 10, `counted down from maxTtl, still cached: ${left}`);
        assert.equal(hostile.received(name).length, 1, "not asked again while cached");
        // Past maxTtl the entry is gone: PvD A is asked again. The hostile server now refuses,
        // so DA's answer (TTL 300) shows that it was (whichever server pvdns asks first now).
        hostile.on(name, { kind: "rcode", rcode: 5 });
        ctx.advance(20_000);
        const expired = await ctx.ask(name);
        assert.deepEqual(recs(expired.answers), [`${name}. A ${ctx.realAddress}`]);
        assert.equal(expired.answers[0]?.ttl, 300);
      },
    },
  })),
  {
    title: "64 KB answer: TC over UDP, then about 65,000 bytes over TCP",
    name: "big.pvd-a.test",
    type: "TXT",
    behaviour: { kind: "big", size: 65_000 },
    did: { udp: /^tc$/, tcp: /^big 65000 bytes$/ },
    client: "dig",
    expect: {
      kind: "accepted",
      allowed: [],
      check: async (ctx, first) => {
        // dig retried over TCP by itself after pvdns's TC.
        assert.equal(first.answers.length, 243);
        assert.ok(first.size > 65_000 && first.size <= 65_535, `size ${first.size}`);
        const udp = await ctx.ask("big.pvd-a.test", { type: "TXT", ignoreTc: true, edns: 1232 });
        assert.ok(udp.flags.includes("tc"), "a UDP client gets TC");
        assert.equal(udp.answers.length, 0);
        assert.ok(udp.size <= 1232);
        const plain = await ctx.ask("big.pvd-a.test", { type: "TXT", ignoreTc: true, edns: false });
        assert.ok(plain.flags.includes("tc") && plain.size <= 512, "and so does one without EDNS");
        const tcp = await ctx.ask("big.pvd-a.test", {
          type: "TXT",
          client: "dnspython",
          tcp: true,
        });
        assert.equal(tcp.answers.length, 243, "the whole answer over TCP, from the cache");
        assert.equal(hostile.received("big.pvd-a.test", "tcp").length, 1);
      },
    },
  },
  {
    title: "never answers, and the PvD's other server refuses: SERVFAIL",
    name: "lost.nowhere.test",
    behaviour: { kind: "silent" },
    did: { udp: /^silent$/ },
    client: "dnspython",
    expect: { kind: "servfail" },
  },
];

const recs = (rs: readonly Rec[]) => rs.map((r) => `${r.name} ${r.type} ${r.data}`);

/** The real address DA holds for a case name. */
const realAddress = (i: number) => `192.0.2.${10 + i}`;

// Started once for the whole table (see the test below).
let hostile: ReturnType<typeof startHostileUpstream>;

async function ask(listen: string, name: string, o: AskOptions = {}): Promise<Reply> {
  const type = o.type ?? "A";
  if ((o.client ?? "dig") === "dig") {
    const r = await dig({
      server: listen,
      name,
      type,
      tcp: o.tcp ?? false,
      edns: o.edns === undefined ? true : o.edns,
      extra: o.ignoreTc ? ["+ignore"] : [],
    });
    const rec = (d: { name: string; type: string; ttl: number; data: string }) => ({
      name: d.name.toLowerCase(),
      type: d.type,
      ttl: d.ttl,
      data: d.data,
    });
    return {
      status: r.status,
      flags: r.flags,
      answers: r.answers.map(rec),
      others: [...r.authority, ...r.additional].map(rec),
      size: r.msgSize ?? 0,
      raw: r.raw,
    };
  }
  const r = await dnspythonQuery({
    server: listen,
    name,
    type,
    tcp: o.tcp ?? false,
    edns: o.edns === undefined ? true : o.edns,
  });
  const rec = (d: { name: string; type: string; ttl: number; data: string }) => ({
    name: d.name.toLowerCase(),
    type: d.type,
    ttl: d.ttl,
    data: d.data,
  });
  return {
    status: r.rcode,
    flags: r.flags,
    answers: r.answers.map(rec),
    others: r.authority.map(rec),
    size: r.size,
    raw: JSON.stringify(r),
  };
}

Deno.test("hostile upstreams: every bad answer is discarded or handled by the rules, nothing poisons the cache, PvD A fails over within itself, PvD B is never asked", async (t) => {
  const [H, H2, DA, DB] = [
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
  ];
  const [SA, SB] = [loopbackAddress({ port: 0 }), loopbackAddress({ port: 0 })];
  hostile = startHostileUpstream({ address: H, otherAddress: H2 });
  hostile.on(BANK, { kind: "rcode", rcode: 5 }); // so that DA is asked for it, at once
  const da = await startDnsmasq({
    address: DA,
    zones: ["pvd-a.test"],
    records: [
      ...CASES.map((c, i) => ({ name: c.name, type: "A" as const, value: realAddress(i) })),
      { name: BANK, type: "A", value: BANK_REAL },
    ],
  });
  const db = await startDnsmasq({
    address: DB,
    zones: ["other.test"],
    records: [{ name: VICTIM, type: "A", value: VICTIM_REAL }],
  });
  /** Every reply any client got, with its question and the hostile addresses allowed in it. */
  const replies: { question: string; allowed: readonly string[]; raw: string }[] = [];
  const config = (listen: string) =>
    JSON.stringify({
      listen: [`${listen}:53`],
      pvds: [
        {
          id: "pvd-a.example",
          sourceAddresses: [SA],
          servers: [H, DA],
          dnsZones: ["pvd-a.test"],
          default: true,
        },
        { id: "pvd-b.example", sourceAddresses: [SB], servers: [DB], dnsZones: ["other.test"] },
      ],
      // The 64 KB answer is cached like any other here (the default cap, 16 KiB, would not).
      cache: { maxTtl: MAX_TTL, maxEntryBytes: 65535 },
      // maxFails 0: the hostile server is never marked down, so no probe muddles its log.
      // 1 s per try: the hostile server runs in this process, and a busy machine (CI, other
      // tests' daemons) once held its answer past 300 ms, so DA answered a case meant for it.
      upstream: { timeoutMs: 1000, deadlineMs: 2500, maxFails: 0 },
    });

  try {
    for (const [i, c] of CASES.entries()) {
      await t.step(c.title, async () => {
        hostile.on(c.name, c.behaviour);
        const listen = loopbackAddress();
        let offset = 0;
        const stub = await createStub(parseConfig(config(listen)), {
          log: () => {},
          now: () => Date.now() + offset,
        });
        const allowed = c.expect.kind === "accepted" ? c.expect.allowed : [];
        const ctx: CaseContext = {
          listen,
          realAddress: realAddress(i),
          stub,
          advance: (ms) => offset += ms,
          ask: async (name, o = {}) => {
            const r = await ask(listen, name, { client: c.client, type: c.type, ...o });
            replies.push({ question: name, allowed: name === c.name ? allowed : [], raw: r.raw });
            return r;
          },
        };
        try {
          const daBefore = await da.queryLog({ settleMs: 0 });
          const dbBefore = await db.queryLog({ settleMs: 0 });
          const first = await ctx.ask(c.name);

          // The hostile server got the query, from PvD A's source, and did its thing.
          for (const wire of ["udp", "tcp"] as const) {
            const seen = hostile.received(c.name, wire);
            const did = c.did[wire];
            if (!did) {
              assert.equal(seen.length, 0, `nothing over ${wire}`);
              continue;
            }
            assert.ok(seen.length >= 1, `the hostile server got the query over ${wire}`);
            assert.ok(seen.every((e) => did.test(e.action)), `${wire}: ${seen[0]?.action}`);
            assert.ok(seen.every((e) => e.from === SA), `${wire}: from PvD A's source`);
          }

          // The client's answer.
          if (c.expect.kind === "failover") {
            assert.equal(first.status, "NOERROR", first.raw);
            assert.deepEqual(recs(first.answers), [`${c.name}. A ${realAddress(i)}`], first.raw);
          } else if (c.expect.kind === "servfail") {
            assert.equal(first.status, "SERVFAIL", first.raw);
          } else {
            assert.equal(first.status, "NOERROR", first.raw);
            await c.expect.check(ctx, first);
          }

          // Asked again: the same answer, from the cache.
          const asked = hostile.received(c.name).length;
          const again = await ctx.ask(c.name);
          assert.equal(again.status, first.status);
          if (c.expect.kind === "failover") {
            assert.deepEqual(recs(again.answers), recs(first.answers));
          }
          assert.equal(hostile.received(c.name).length, asked, "served from the cache");

          // The victims come from their real servers, never from the cache.
          const bank = await ctx.ask(BANK, { type: "A", client: "dig" });
          assert.deepEqual(recs(bank.answers), [`${BANK}. A ${BANK_REAL}`], bank.raw);
          const victim = await ctx.ask(VICTIM, { type: "A", client: "dig" });
          assert.deepEqual(recs(victim.answers), [`${VICTIM}. A ${VICTIM_REAL}`], victim.raw);
          assert.equal(hostile.received(VICTIM).length, 0, "PvD B never asks PvD A's servers");

          // Who asked whom, from the upstreams' own logs.
          const daNew = (await da.queryLog()).slice(daBefore.length);
          const dbNew = (await db.queryLog({ settleMs: 0 })).slice(dbBefore.length);
          const names = (log: DnsmasqQuery[]) => log.map((q) => q.name.toLowerCase());
          const fromDa = names(daNew).filter((n) => n === c.name).length;
          if (c.expect.kind === "accepted") {
            const expected = c.expect.daQueries ?? 0;
            assert.equal(fromDa, expected, "the hostile answer was taken: no failover");
          } else {
            assert.equal(fromDa, 1, "PvD A failed over to its second server, once");
          }
          assert.equal(names(daNew).filter((n) => n === BANK).length, 1, "DA was asked for BANK");
          assert.deepEqual(names(dbNew), [VICTIM], "DB was asked for its victim and nothing else");
          assert.ok(daNew.every((q) => q.from === SA), "DA heard only from PvD A's source");
          assert.ok(dbNew.every((q) => q.from === SB), "DB heard only from PvD B's source");
        } finally {
          await stub.close();
        }
      });
    }

    await t.step("no reply carries a hostile record the rules do not allow (poisonings: 0)", () => {
      const poisoned = replies.filter((r) =>
        [...r.raw.matchAll(/203\.0\.113\.\d+/g)].some((m) => !r.allowed.includes(m[0]))
      );
      assert.deepEqual(poisoned.map((r) => r.question), []);
      assert.ok(replies.length >= CASES.length * 4, `${replies.length} replies checked`);
      console.log(
        `hostile upstreams: ${CASES.length} cases, ${replies.length} replies checked, ` +
          `${hostile.events.length} queries at the hostile server, ${poisoned.length} poisonings`,
      );
    });
  } finally {
    await hostile.close();
    await da.stop();
    await db.stop();
  }
});
