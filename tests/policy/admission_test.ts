/**
 * Access control (issue 8 part 4): the `allow` list answers REFUSED to clients outside it (real
 * dig clients from different source addresses), and response-rate limiting drops or slips
 * queries per client prefix over its rate (deterministic under an injected clock).
 */
import assert from "node:assert/strict";
import { AdmissionControl } from "../../src/policy/admission.ts";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { Flags } from "../../src/dns/wire.ts";
import { dig } from "../../testkit/dig.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { buildQuery } from "../../testkit/wire.ts";

Deno.test("allow: clients outside the list get REFUSED and nothing is forwarded", async () => {
  const listen = loopbackAddress();
  const inside = loopbackAddress({ port: 0 });
  const outside = loopbackAddress({ port: 0 });
  const upstream = loopbackAddress();
  const seen: string[] = [];
  const sock = Deno.listenDatagram({ hostname: upstream, port: 53, transport: "udp" });
  const serving = (async () => {
    try {
      for (;;) {
        const [q, from] = await sock.receive();
        seen.push(String(q.length));
        const reply = q.slice();
        reply[2] = 0x81;
        reply[3] = 0x83;
        await sock.send(reply, from);
      }
    } catch { /* closed */ }
  })();
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      allow: [`${inside}/32`],
      pvds: [{
        id: "p.example",
        sourceAddresses: [loopbackAddress({ port: 0 })],
        servers: [upstream],
      }],
    }),
    { log: () => {} },
  );
  try {
    const ok = await dig({ server: listen, name: "a.test", source: inside });
    assert.equal(ok.status, "NXDOMAIN", "a client inside the list is answered");
    assert.equal(seen.length, 1);
    for (const tcp of [false, true]) {
      const refused = await dig({ server: listen, name: "b.test", source: outside, tcp });
      assert.equal(refused.status, "REFUSED", `outside the list over ${tcp ? "TCP" : "UDP"}`);
    }
    const local = await dig({ server: listen, name: "localhost", source: outside });
    assert.equal(local.status, "REFUSED", "not even local answers");
    assert.equal(seen.length, 1, "no refused query went upstream");
    assert.equal(stub.metrics.limitsReached.get("acl"), 3);
    // An API query (no client address) is not subject to the DNS allow list.
    const api = await stub.handle(buildQuery(9, "localhost"), {
      address: "",
      port: 0,
      transport: "api",
    });
    assert.equal(api![3]! & 0xf, 0);
  } finally {
    await stub.close();
    sock.close();
    await serving;
  }
});

Deno.test("AdmissionControl: allow list by prefix, IPv4-mapped clients, unknown addresses", () => {
  const config = validateConfig({
    listen: ["127.0.0.53"],
    allow: ["192.0.2.0/24", "2001:db8:1::/48"],
    pvds: [{ id: "p.example", sourceAddresses: ["127.0.0.1"], servers: ["127.0.0.2"] }],
  });
  const a = new AdmissionControl(config);
  const cases: [string, string][] = [
    ["192.0.2.200", "ok"],
    ["::ffff:192.0.2.7", "ok"],
    ["192.0.3.1", "refuse"],
    ["2001:db8:1:ff::1", "ok"],
    ["2001:db8:2::1", "refuse"],
    ["fe80::1%eth0", "refuse"],
    ["not-an-address", "refuse"],
  ];
  for (const [address, verdict] of cases) {
    assert.equal(a.admit(address, "udp", 0), verdict, address);
  }
});

Deno.test("limits.rateLimit: over the rate a prefix's UDP queries are dropped, every slip-th gets TC", async () => {
  let clock = 1_000_000;
  const stub = await createStub(
    validateConfig({
      listen: [`${loopbackAddress()}:53`],
      pvds: [{ id: "p.example", sourceAddresses: ["127.0.0.1"], servers: ["127.0.0.2"] }],
      limits: { rateLimit: { responsesPerSecond: 5, slip: 2 } },
    }),
    { log: () => {}, now: () => clock },
  );
  try {
    const ask = (address: string, transport: "udp" | "tcp" = "udp") =>
      stub.handle(buildQuery(1, "localhost"), { address, port: 1, transport });
    const outcome = (r: Uint8Array | null) =>
      r === null ? "drop" : (r[2]! << 8 | r[3]!) & Flags.TC ? "tc" : "answer";
    const burst: string[] = [];
    for (let i = 0; i < 20; i++) burst.push(outcome(await ask(`192.0.2.${10 + (i % 3)}`)));
    assert.deepEqual(
      burst.reduce((n, o) => ({ ...n, [o]: (n[o] ?? 0) + 1 }), {} as Record<string, number>),
      { answer: 5, tc: 7, drop: 8 },
      "one /24 shares one bucket of 5; of the 15 over it every 2nd slips",
    );
    assert.equal(stub.metrics.limitsReached.get("rate_limit"), 15);
    assert.equal(outcome(await ask("192.0.3.1")), "answer", "another /24 has its own bucket");
    assert.equal(outcome(await ask("192.0.2.10", "tcp")), "answer", "TCP is not rate limited");
    clock += 1000; // a second later: five more
    const later: string[] = [];
    for (let i = 0; i < 6; i++) later.push(outcome(await ask("192.0.2.99")));
    assert.deepEqual(later.slice(0, 5), ["answer", "answer", "answer", "answer", "answer"]);
    assert.notEqual(later[5], "answer");
  } finally {
    await stub.close();
  }
});
