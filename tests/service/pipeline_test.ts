import assert from "node:assert/strict";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { Router } from "../../src/policy/router.ts";
import { PvdCache } from "../../src/cache/cache.ts";
import { validateConfig } from "../../src/config/parse.ts";
import { buildPipeline } from "../../src/service/pipeline.ts";
import { PvdUpstreams } from "../../src/upstream/pool.ts";
import { parseQuery } from "../../src/dns/wire.ts";
import { buildQuery } from "../../testkit/wire.ts";
import { createStub } from "../../src/service/stub.ts";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

Deno.test("a rule's explicit fallback is the only way to a second PvD, counted, and never cached across", async (t) => {
  const homeServer = loopbackAddress();
  const deadServer = loopbackAddress(); // nothing listens there
  const [homeSrc, vpnSrc] = [loopbackAddress({ port: 0 }), loopbackAddress({ port: 0 })];
  const [listen, vpnListen] = [loopbackAddress(), loopbackAddress()];
  const home = await startDnsmasq({
    address: homeServer,
    zones: ["fb.test", "corp.test"],
    records: [
      { name: "www.fb.test", type: "A", value: "192.0.2.80" },
      { name: "www.corp.test", type: "A", value: "192.0.2.81" },
    ],
  });
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`, { address: `${vpnListen}:53`, pvd: "vpn.example" }],
      pvds: [
        { id: "home.example", sourceAddresses: [homeSrc], servers: [homeServer], default: true },
        {
          id: "vpn.example",
          sourceAddresses: [vpnSrc],
          servers: [deadServer],
          dnsZones: ["corp.test"],
        },
      ],
      rules: [{ match: { suffix: "fb.test" }, pvd: "vpn.example", fallback: ["home.example"] }],
      upstream: { timeoutMs: 200, deadlineMs: 400 },
    }),
    { log: () => {} },
  );
  try {
    await t.step("the rule's PvD fails, its fallback answers, and the use is counted", async () => {
      const r = await dig({ server: listen, name: "www.fb.test" });
      assert.equal(r.status, "NOERROR");
      assert.deepEqual(r.answers.map((a) => a.data), ["192.0.2.80"]);
      assert.equal(stub.fallbacks.get("vpn.example->home.example"), 1);
    });
    await t.step("the fallback answer is not served as the first PvD's", async () => {
      const r = await dig({ server: vpnListen, name: "www.fb.test" });
      assert.equal(r.status, "SERVFAIL", "vpn's cache never got home's answer");
    });
    await t.step(
      "without a fallback rule a failing PvD answers SERVFAIL and the other PvD sees nothing",
      async () => {
        const r = await dig({ server: listen, name: "www.corp.test" });
        assert.equal(r.status, "SERVFAIL");
        const log = await home.queryLog();
        assert.deepEqual(
          log.map((q) => q.name),
          ["www.fb.test"],
          "only the fallback query reached home",
        );
        assert.ok(
          log.every((q) => q.from === homeSrc),
          "and it came from home's own source address",
        );
      },
    );
  } finally {
    await stub.close();
    await home.stop();
  }
});

Deno.test("local answers: localhost, rule records, nxdomain and refuse never leave the host", async () => {
  const server = loopbackAddress();
  const src = loopbackAddress({ port: 0 });
  const listen = loopbackAddress();
  const up = await startDnsmasq({ address: server, zones: ["x.test"], records: [] });
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      pvds: [{ id: "home.example", sourceAddresses: [src], servers: [server] }],
      rules: [
        {
          match: { suffix: "printer.x.test" },
          action: "answer",
          answer: { A: ["192.0.2.9"], TXT: ["hi"], ttl: 30 },
        },
        { match: { suffix: "ads.x.test" }, action: "nxdomain" },
        { match: { suffix: "x.test", qtype: "ANY" }, action: "refuse" },
      ],
    }),
    { log: () => {} },
  );
  try {
    const lh = await dig({ server: listen, name: "db.localhost", type: "AAAA" });
    assert.deepEqual(lh.answers.map((a) => a.data), ["::1"]);
    const rec = await dig({ server: listen, name: "Printer.X.test" });
    assert.deepEqual(rec.answers.map((a) => [a.name, a.ttl, a.data]), [[
      "Printer.X.test.",
      30,
      "192.0.2.9",
    ]]);
    const txt = await dig({ server: listen, name: "printer.x.test", type: "TXT", tcp: true });
    assert.deepEqual(txt.answers.map((a) => a.data), ['"hi"']);
    const nodata = await dig({ server: listen, name: "printer.x.test", type: "MX" });
    assert.equal(nodata.status, "NOERROR");
    assert.equal(nodata.answers.length, 0);
    assert.equal((await dig({ server: listen, name: "a.ads.x.test" })).status, "NXDOMAIN");
    assert.equal((await dig({ server: listen, name: "b.x.test", type: "ANY" })).status, "REFUSED");
    assert.deepEqual(await up.queryLog(), [], "nothing was forwarded");
  } finally {
    await stub.close();
    await up.stop();
  }
});

Deno.test("identical misses in one PvD share one upstream query; other PvDs do not share it", async () => {
  const slow = loopbackAddress();
  const [src, src2] = [loopbackAddress({ port: 0 }), loopbackAddress({ port: 0 })];
  const [listen, listen2] = [loopbackAddress(), loopbackAddress()];
  // A real socket that answers every query after 200 ms, so that concurrent misses overlap.
  const server = Deno.listenDatagram({ hostname: slow, port: 53, transport: "udp" });
  const seen: string[] = [];
  const loop = (async () => {
    try {
      for (;;) {
        const [q, from] = await server.receive();
        seen.push((from as Deno.NetAddr).hostname);
        setTimeout(() => {
          const a = new Uint8Array(q.length + 16);
          a.set(q);
          a[2] = 0x81; // QR RD
          a[3] = 0x80; // RA
          a[7] = 1; // ANCOUNT 1
          a[11] = 0; // no OPT in the answer
          const qEnd = q.length - 11; // the query ends with our 11-byte OPT record
          a.set([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1], qEnd);
          server.send(a.subarray(0, qEnd + 16), from).catch(() => {});
        }, 200);
      }
    } catch { /* closed */ }
  })();
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`, { address: `${listen2}:53`, pvd: "b.example" }],
      pvds: [
        { id: "a.example", sourceAddresses: [src], servers: [slow], default: true },
        { id: "b.example", sourceAddresses: [src2], servers: [slow], dnsZones: ["b.test"] },
      ],
    }),
    { log: () => {} },
  );
  try {
    const results = await Promise.all([
      ...Array.from({ length: 5 }, () => dig({ server: listen, name: "same.test" })),
      dig({ server: listen2, name: "same.test" }),
    ]);
    assert.ok(results.every((r) => r.status === "NOERROR" && r.answers[0]?.data === "192.0.2.1"));
    assert.deepEqual(
      seen.sort(),
      [src, src2].sort(),
      "one query per PvD, each from its own source",
    );
  } finally {
    await stub.close();
    server.close();
    await loop;
  }
});

Deno.test("the pipeline answers cache hits and local answers synchronously (no promise on the hot path)", async () => {
  const server = loopbackAddress();
  const up = await startDnsmasq({
    address: server,
    zones: ["sync.test"],
    records: [{ name: "www.sync.test", type: "A", value: "192.0.2.90" }],
  });
  const home = pvdOf("home.example", server);
  const state = {
    router: new Router({ pvds: [home], rules: [] }),
    caches: new Map([["home.example", new PvdCache({ maxEntries: 10 })]]),
    upstreams: new Map([[
      "home.example",
      new PvdUpstreams(home, {
        upstream: { timeoutMs: 500, deadlineMs: 1000 },
        cache: { minTtl: 0, maxTtl: 3600, negativeMaxTtl: 60, servfailTtl: 0 },
        guard: new LeakGuard([home]),
      }),
    ]]),
  };
  const pipeline = buildPipeline({ state, servfailTtl: 0, now: Date.now });
  const ctx = (name: string) => {
    const parsed = parseQuery(buildQuery(1, name));
    assert.equal(parsed.kind, "query");
    return {
      query: parsed.query,
      client: { address: "127.0.0.1", port: 1, transport: "udp" as const },
      now: Date.now(),
    };
  };
  try {
    const miss = pipeline(ctx("www.sync.test"));
    assert.ok(miss instanceof Promise, "a miss waits for the upstream");
    const answered = await miss;
    assert.equal(answered.source, "upstream");
    assert.equal(answered.response.kind, "positive");
    const hit = pipeline(ctx("www.sync.test"));
    assert.ok(!(hit instanceof Promise), "a hit is answered at once");
    assert.equal(hit.source, "cache");
    const local = pipeline(ctx("localhost"));
    assert.ok(!(local instanceof Promise), "so is a local answer");
    assert.equal(local.source, "policy");
  } finally {
    await state.upstreams.get("home.example")!.close();
    await up.stop();
  }
});

function pvdOf(id: string, server: string) {
  return validateConfig({
    listen: ["127.0.0.1:0"],
    pvds: [{
      id,
      sourceAddresses: [loopbackAddress({ port: 0 })],
      servers: [server],
      default: true,
    }],
  }).pvds[0]!;
}
