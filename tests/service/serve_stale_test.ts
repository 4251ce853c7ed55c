/**
 * Serve-stale (RFC 8767, issue 8 part 6): off by default; when on and every server of a PvD
 * fails, an expired answer of that same PvD is served with TTL 30 — never another PvD's, and
 * not past `cache.staleMaxAge`. Real dnsmasq upstreams, real dig clients, an injected clock.
 */
import assert from "node:assert/strict";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

Deno.test("cache.serveStale: a dead PvD serves its own expired answer with TTL 30, never another PvD's", async (t) => {
  const name = "www.stale.test";
  const upA = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["stale.test"],
    records: [{ name, type: "A", value: "192.0.2.1" }],
    ttl: 2,
  });
  const upB = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["stale.test"],
    records: [{ name, type: "A", value: "198.51.100.1" }],
    ttl: 2,
  });
  const upC = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["stale.test"],
    records: [],
  });
  let clock = Date.parse("2026-11-27T00:00:00Z");
  const now = () => clock;
  // One listener per PvD, so each query goes to the PvD the step names.
  const [la, lb, lc, off] = [
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
  ];
  const pvd = (id: string, server: string) => ({
    id,
    sourceAddresses: [loopbackAddress({ port: 0 })],
    servers: [server],
  });
  const base = {
    pvds: [
      pvd("a.example", upA.hostPort),
      pvd("b.example", upB.hostPort),
      pvd("c.example", upC.hostPort),
    ],
    upstream: { timeoutMs: 200, deadlineMs: 400 },
    cache: { servfailTtl: 0 },
  };
  const stub = await createStub(
    validateConfig({
      ...base,
      listen: [
        { address: la, pvd: "a.example" },
        { address: lb, pvd: "b.example" },
        { address: lc, pvd: "c.example" },
      ],
      cache: { servfailTtl: 0, serveStale: true, staleMaxAge: 60 },
    }),
    { log: () => {}, now },
  );
  // The same PvDs with the default config: serve-stale is off.
  const plain = await createStub(
    validateConfig({ ...base, listen: [{ address: off, pvd: "a.example" }] }),
    { log: () => {}, now },
  );
  const ask = (server: string) => dig({ server, name, timeSeconds: 3 });
  try {
    await t.step("while the servers answer, each PvD caches its own answer", async () => {
      for (const [server, want] of [[la, "192.0.2.1"], [lb, "198.51.100.1"], [off, "192.0.2.1"]]) {
        const r = await ask(server!);
        assert.deepEqual(r.answers.map((a) => a.data), [want]);
      }
      assert.equal((await ask(lc)).status, "NXDOMAIN", "PvD c has no such name");
    });

    clock += 10_000; // every answer has expired (TTL 2)
    for (const up of [upA, upB, upC]) await up.stop();

    await t.step("serve-stale off (the default): SERVFAIL", async () => {
      assert.equal((await ask(off)).status, "SERVFAIL");
    });

    await t.step(
      "serve-stale on: each dead PvD serves its own expired answer, TTL 30",
      async () => {
        const a = await ask(la);
        assert.equal(a.status, "NOERROR");
        assert.deepEqual(a.answers.map((r) => [r.data, r.ttl]), [["192.0.2.1", 30]]);
        const b = await ask(lb);
        assert.deepEqual(b.answers.map((r) => [r.data, r.ttl]), [["198.51.100.1", 30]]);
      },
    );

    await t.step(
      "a PvD that never had the name gets SERVFAIL, not another PvD's stale answer",
      async () => {
        const c = await dig({ server: lc, name, type: "AAAA", timeSeconds: 3 });
        assert.equal(c.status, "SERVFAIL");
        const cA = await ask(lc);
        assert.notEqual(cA.status, "NOERROR", "PvD c's own NXDOMAIN is all it may serve");
        assert.ok(!cA.answers.some((r) => r.data === "198.51.100.1" || r.data === "192.0.2.1"));
      },
    );

    await t.step(
      "the stale answer is not asked for again for 30 s, then served stale again",
      async () => {
        clock += 20_000;
        const cached = await ask(la);
        assert.deepEqual(cached.answers.map((r) => [r.data, r.ttl]), [["192.0.2.1", 10]]);
        clock += 15_000; // 45 s after the original expired, within staleMaxAge (60 s)
        const again = await ask(la);
        assert.deepEqual(again.answers.map((r) => [r.data, r.ttl]), [["192.0.2.1", 30]]);
      },
    );

    await t.step("past staleMaxAge since the original answer expired: SERVFAIL", async () => {
      clock += 31_000; // 76 s after the original expiry; re-serving stale did not extend it
      assert.equal((await ask(la)).status, "SERVFAIL");
    });

    await t.step("stale answers are counted as their own source", async () => {
      const text = await stub.registry.metrics();
      const stale = text.split("\n").filter((l) =>
        l.startsWith("pvdns_dns_responses_total") && l.includes('source="stale"')
      );
      assert.ok(stale.some((l) => l.includes('pvd="a.example"')), stale.join("\n"));
      assert.ok(!stale.some((l) => l.includes('pvd="c.example"')));
    });
  } finally {
    await stub.close();
    await plain.close();
  }
});
